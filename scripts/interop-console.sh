#!/usr/bin/env bash
# The console (`serve --console`) end to end in headless Chromium (Debian's `chromium`, driven
# by Playwright for Python) with client certificates: every page as an admin (screenshots),
# issuing a certificate and its one-time PKCS#12, revoking a holder while the console watches
# her sessions and the live audit, a checked and applied policy change seen by a viewer's
# official Python SDK client, hostile names and descriptions rendered as text, cross-origin
# posts and frames refused, the role x page x action matrix, and a revoked admin shut out.
#
# Screenshots go to $MCP_ZT_SHOTS (default: a temporary folder, printed at the end). The
# ones in docs/console.md are made with: MCP_ZT_SHOTS=docs/console bash scripts/interop-console.sh
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=lib.sh
. "$here/lib.sh"
# shellcheck source=lib-interop.sh
. "$here/lib-interop.sh"

setup_browser
need openssl openssl
need curl curl
build_mcp_zt
work="$(mktemp -d)"
home="$work/pki"
shots="${MCP_ZT_SHOTS:-$work/shots}"
mkdir -p "$shots"

zt ca init
cat >>"$home/policy.toml" <<'TOML'

[roles.auditor]
inherits = ["viewer"]
console = "read"
TOML
zt issue --role admin --name adm
zt issue --role admin --name adm2
zt issue --role auditor --name aud
zt issue --role viewer --name vic
zt upstream add hostile -- "$venv/bin/python" "$here/gateway/hostile_upstream.py"

python3 "$here/console_evil.py" "$work/evil.port" &
evil_pid=$!
for _ in $(seq 1 100); do [ -s "$work/evil.port" ] && break; sleep 0.05; done

PORT=$(free_port)
"$MCP_ZT" --home "$home" serve --listen "127.0.0.1:$PORT" --console --oauth \
  --public-url "https://localhost:$PORT/mcp" --login-url "https://127.0.0.1:$PORT" \
  >"$work/serve.out" 2>"$work/serve.err" &
SERVER_PID=$!
trap 'stop_server; kill "$evil_pid" 2>/dev/null || true' EXIT
for _ in $(seq 1 600); do
  grep -q '^listening ' "$work/serve.out" 2>/dev/null && break
  kill -0 "$SERVER_PID" 2>/dev/null || { cat "$work/serve.err" >&2; fail "serve --console did not start"; }
  sleep 0.05
done

# Handshakes with hostile names, for the audit pages: certificates of no CA mcp-zt trusts.
for cn in '<img src=x onerror=alert(1)>' "$(printf 'ctl-evil\033[31mred')"; do
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj "/CN=$cn" \
    -keyout "$work/evil.key" -out "$work/evil.crt" 2>/dev/null
  curl -s -o /dev/null --cacert "$home/ca.crt" --cert "$work/evil.crt" --key "$work/evil.key" \
    "https://127.0.0.1:$PORT/console/" || true
done

"$venv/bin/python" "$here/console_e2e.py" "$MCP_ZT" "$home" "https://127.0.0.1:$PORT" \
  "https://localhost:$PORT/mcp" "http://127.0.0.1:$(cat "$work/evil.port")" "$shots"
grep -q '"event":"certificate_revoked".*"via":"console"' "$home/audit.log" ||
  fail "the console's revocation is not audited with via console"
echo "ok: console actions are audited as the admin, via console"
echo "interop-console: all checks passed (screenshots in $shots)"
