#!/usr/bin/env bash
# Interop with Node clients nobody here wrote:
#  - the MCP Inspector's CLI mode launches `mcp-zt connect` as its stdio server, lists the
#    tools and calls one;
#  - the official TypeScript SDK's streamable HTTP client talks to `mcp-zt connect --listen`.
# Node 20 is what the machines have: Inspector 1.0.3 is the last line that runs on it.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=lib.sh
. "$here/lib.sh"

need node nodejs
need npm
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
"$MCP_ZT" --home "$home" connect --name erin --listen 127.0.0.1:0 "$url" \
  >"$work/bridge.out" 2>"$work/bridge.err" &
bridge=$!
for _ in $(seq 1 200); do
  local_addr=$(sed -n 's/^listening //p' "$work/bridge.out")
  [ -n "$local_addr" ] && break
  sleep 0.05
done
[ -n "${local_addr:-}" ] || { kill "$bridge" 2>/dev/null; fail "connect --listen did not start: $(cat "$work/bridge.err")"; }
# ES modules resolve packages next to the script file: run a copy inside the prefix.
cp "$here/interop_ts_client.mjs" "$prefix/interop_ts_client.mjs"
node "$prefix/interop_ts_client.mjs" "http://$local_addr/mcp" erin ||
  { kill "$bridge" 2>/dev/null; fail "TypeScript SDK client"; }
kill "$bridge" 2>/dev/null || true
echo "interop-node: ok"
