#!/usr/bin/env bash
# The official MCP TypeScript SDK's OAuth client against `mcp-zt serve --oauth`, with mcp-zt as a
# gateway in front of an upstream (the stdio document server of the gateway quickstart,
# scripts/gateway/demo_upstream.py). The SDK registers itself (DCR), the holder approves with
# their client certificate on the login name (interop_ts_oauth.mjs plays the browser), and the
# SDK's token lists and calls the upstream's tool; the audit log must show that call as made
# with a token ("via":"oauth").
#
# The SDK is installed as in interop-node.sh (scripts/.node, MCP_ZT_NODE_PREFIX); the upstream
# runs on the Python SDK in scripts/.venv (MCP_ZT_VENV). MCP_ZT_BIN names the mcp-zt binary.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=lib.sh
. "$here/lib.sh"
# shellcheck source=lib-interop.sh
. "$here/lib-interop.sh"

need node nodejs
need npm
need python3
prefix="${MCP_ZT_NODE_PREFIX:-$here/.node}"
if [ ! -d "$prefix/node_modules/@modelcontextprotocol/sdk" ]; then
  mkdir -p "$prefix"
  (cd "$prefix" && npm install --no-audit --no-fund --loglevel=error --no-save \
    '@modelcontextprotocol/sdk@^1.32.0' >/dev/null)
fi
echo "typescript sdk: $(node -p "require('$prefix/node_modules/@modelcontextprotocol/sdk/package.json').version") on node $(node --version)"

# The upstream's Python SDK.
setup_python_sdk

build_mcp_zt
work="$(mktemp -d)"
home="$work/pki"

zt ca init
zt issue --role admin --name ada
zt upstream add docs -- "$venv/bin/python" "$here/gateway/demo_upstream.py"
grant "$home/policy.toml" admin '["tool:docs__search"]'

PORT=$(free_port)
mcp_url="https://localhost:$PORT/mcp"
login_url="https://127.0.0.1:$PORT"
"$MCP_ZT" --home "$home" serve --listen "127.0.0.1:$PORT" --oauth \
  --public-url "$mcp_url" --login-url "$login_url" >"$work/serve.out" 2>"$work/serve.err" &
SERVER_PID=$!
trap stop_server EXIT
for _ in $(seq 1 1200); do
  grep -q "^listening 127\.0\.0\.1:$PORT\$" "$work/serve.out" 2>/dev/null && break
  kill -0 "$SERVER_PID" 2>/dev/null || { cat "$work/serve.err" >&2; fail "mcp-zt serve --oauth did not start"; }
  sleep 0.05
done
grep -q "^listening 127\.0\.0\.1:$PORT\$" "$work/serve.out" ||
  { cat "$work/serve.err" >&2; fail "mcp-zt serve --oauth is not listening on $PORT"; }
echo "== TypeScript SDK (OAuth, DCR) -> mcp-zt serve --oauth ($mcp_url, login $login_url) -> upstream docs (stdio)"

# ES modules resolve packages next to the script file: run a copy inside the prefix.
cp "$here/interop_ts_oauth.mjs" "$prefix/interop_ts_oauth.mjs"
NODE_EXTRA_CA_CERTS="$home/ca.crt" node "$prefix/interop_ts_oauth.mjs" "$mcp_url" "$login_url" \
  "$home/ca.crt" "$home/clients/ada.crt" "$home/clients/ada.key" ada admin docs__search ||
  { tail -n 20 "$work/serve.err" >&2; fail "TypeScript SDK OAuth client"; }

echo "== audit log"
calls=$(grep '"event":"upstream_call"' "$home/audit.log" | grep '"upstream":"docs"' | grep '"tool":"docs__search"') ||
  fail "no upstream_call line for docs__search in the audit log"
oauth_calls=$(grep '"via":"oauth"' <<<"$calls") ||
  fail "the upstream call is not audited as made with a token: $calls"
grep -q '"name":"ada"' <<<"$oauth_calls" || fail "the token's call is not audited as ada's: $oauth_calls"
grep -q '"client_id":"' <<<"$oauth_calls" || fail "the token's call is audited without its client: $oauth_calls"
echo "audit: $(head -n 1 <<<"$oauth_calls")"
for ev in authorization_shown authorization_approved; do
  grep -q "\"event\":\"$ev\"" "$home/audit.log" || fail "no $ev line in the audit log"
done
stop_server
echo "interop-ts-oauth: ok"
