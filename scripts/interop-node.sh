#!/usr/bin/env bash
# Interop with Node clients nobody here wrote:
#  - the MCP Inspector's CLI mode launches `mcp-zt connect` as its stdio server, lists the
#    tools and calls one;
#  - the official TypeScript SDK's streamable HTTP client and the Inspector's CLI (HTTP
#    transport) talk to `mcp-zt connect --listen` at the URL from its --url-file.
# Node 20 is what the machines have: Inspector 1.0.3 is the last line that runs on it.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=lib.sh
. "$here/lib.sh"

need node nodejs
need npm
need curl
prefix="${MCP_ZT_NODE_PREFIX:-$here/.node}"
if [ ! -x "$prefix/node_modules/.bin/mcp-inspector" ] || [ ! -d "$prefix/node_modules/@modelcontextprotocol/sdk" ]; then
  mkdir -p "$prefix"
  (cd "$prefix" && npm install --no-audit --no-fund --loglevel=error --no-save \
    @modelcontextprotocol/inspector@1.0.3 '@modelcontextprotocol/sdk@^1.32.0' >/dev/null)
fi
inspector="$prefix/node_modules/.bin/mcp-inspector"

build_mcp_zt
work="$(mktemp -d)"
home="$work/pki"
"$MCP_ZT" --home "$home" ca init >/dev/null 2>&1
"$MCP_ZT" --home "$home" issue --role editor --name erin >/dev/null 2>&1
start_server "$home" "$work"
url="https://localhost:$PORT/mcp"

echo "== MCP Inspector CLI -> mcp-zt connect (stdio) -> $url"
"$inspector" --cli "$MCP_ZT" --home "$home" connect --name erin "$url" --method tools/list \
  >"$work/list.json" 2>"$work/inspector.err" || { cat "$work/inspector.err" >&2; fail "tools/list"; }
grep -q '"name": "write_data"' "$work/list.json" || fail "write_data missing from $(cat "$work/list.json")"
grep -q '"name": "delete_data"' "$work/list.json" && fail "an editor must not see delete_data"
echo "inspector: tools/list ok ($(grep -c '"name":' "$work/list.json") tools)"
"$inspector" --cli "$MCP_ZT" --home "$home" connect --name erin "$url" --method tools/call \
  --tool-name write_data --tool-arg key=inspector --tool-arg value=hello \
  >"$work/call.json" 2>>"$work/inspector.err" || { cat "$work/inspector.err" >&2; fail "tools/call"; }
grep -q '"written": true' "$work/call.json" || fail "write_data: $(cat "$work/call.json")"
echo "inspector: tools/call write_data ok"

echo "== TypeScript SDK streamable HTTP client -> mcp-zt connect --listen -> $url"
start_bridge "$home" "$work" erin "$url"
echo "bridge: $(sed -n 's/^mcp-zt connect: MCP clients connect to http:\/\/\([^/]*\)\/.*/local endpoint on \1 at a secret path/p' "$work/bridge.err")"
[ "$(stat -c %a "$work/bridge.url")" = 600 ] || fail "the url file is not mode 0600"
origin="${BRIDGE_URL%/*/mcp}"
code=$(curl -s -o /dev/null -w '%{http_code}' -X POST -H 'Content-Type: application/json' \
  -d '{"jsonrpc":"2.0","id":1,"method":"ping"}' "$origin/mcp")
[ "$code" = 404 ] || fail "POST $origin/mcp without the secret answered $code, not 404"
echo "bridge: without the secret path: HTTP $code"
# ES modules resolve packages next to the script file: run a copy inside the prefix.
cp "$here/interop_ts_client.mjs" "$prefix/interop_ts_client.mjs"
node "$prefix/interop_ts_client.mjs" "$BRIDGE_URL" erin || fail "TypeScript SDK client"

echo "== MCP Inspector CLI (streamable HTTP) -> mcp-zt connect --listen -> $url"
"$inspector" --cli "$BRIDGE_URL" --transport http --method tools/list \
  >"$work/http-list.json" 2>"$work/inspector-http.err" || { cat "$work/inspector-http.err" >&2; fail "tools/list over HTTP"; }
grep -q '"name": "write_data"' "$work/http-list.json" || fail "write_data missing from $(cat "$work/http-list.json")"
echo "inspector: tools/list over the secret URL ok ($(grep -c '"name":' "$work/http-list.json") tools)"
"$inspector" --cli "$BRIDGE_URL" --transport http --method tools/call --tool-name whoami \
  >"$work/http-who.json" 2>>"$work/inspector-http.err" || { cat "$work/inspector-http.err" >&2; fail "tools/call over HTTP"; }
grep -q 'erin' "$work/http-who.json" || fail "whoami: $(cat "$work/http-who.json")"
echo "inspector: tools/call whoami over the secret URL ok"
stop_bridge
[ ! -e "$work/bridge.url" ] || fail "the url file outlived the bridge"
echo "interop-node: ok"
