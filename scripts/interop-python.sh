#!/usr/bin/env bash
# Interop: the official MCP Python SDK (pip package `mcp`) lists and calls tools over mTLS,
# through `mcp-zt connect --listen` (its streamable HTTP client at the URL from --url-file),
# and through `mcp-zt connect` on stdio.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=lib.sh
. "$here/lib.sh"
# shellcheck source=lib-interop.sh
. "$here/lib-interop.sh"

setup_python_sdk

build_mcp_zt
work="$(mktemp -d)"
home="$work/pki"
"$MCP_ZT" --home "$home" ca init 2>/dev/null >/dev/null
"$MCP_ZT" --home "$home" issue --role viewer --name vic 2>/dev/null >/dev/null
"$MCP_ZT" --home "$home" issue --role admin --name ada 2>/dev/null >/dev/null
start_server "$home" "$work"
for pair in vic:viewer ada:admin; do
  name="${pair%%:*}"
  role="${pair##*:}"
  "$venv/bin/python" "$here/interop_python_client.py" "https://localhost:$PORT/mcp" \
    "$home/ca.crt" "$home/clients/$name.crt" "$home/clients/$name.key" "$role"
done
grep -q '"event":"tool_denied".*"name":"vic".*"tool":"delete_data"' "$home/audit.log" ||
  fail "the denied delete_data call is not in the audit log"

# The SDK's streamable HTTP client at the bridge's secret URL, read from the url file.
start_bridge "$home" "$work" vic "https://localhost:$PORT/mcp"
[ "$(stat -c %a "$work/bridge.url")" = 600 ] || fail "the url file is not mode 0600"
echo "python sdk: through connect --listen at the URL from --url-file"
"$venv/bin/python" "$here/interop_python_client.py" "$BRIDGE_URL" - - - viewer
stop_bridge
[ ! -e "$work/bridge.url" ] || fail "the url file outlived the bridge"

# The SDK's stdio client launches `mcp-zt connect`; the bridge's certificate is revoked while
# connected and the next call must fail naming the revocation within 2 s.
"$MCP_ZT" --home "$home" issue --role editor --name sid 2>/dev/null >/dev/null
"$venv/bin/python" "$here/interop_python_stdio.py" "$MCP_ZT" "$home" sid "https://localhost:$PORT/mcp"
echo "interop-python: ok"
