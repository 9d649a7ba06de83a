#!/usr/bin/env bash
# The differential test of mcp-zt's two transports: one corpus (scripts/differential.py: the
# stateless calls the native direct path takes, the same with every header it checks changed,
# hostile bodies, the fuzz corpus of jsonrpc_ingress, a 2025-11-25 session) is sent once to
# `serve --transport rmcp` and once to `serve --transport native`, each on its own copy of one
# HOME (same CA, certificates, ledger and policy). Every answer (status, content type, body)
# and every audit line must be equal after normalising session ids, times and client ports,
# and the native server must have answered the direct path's share itself (its metrics).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=lib.sh
. "$here/lib.sh"
# shellcheck source=lib-interop.sh
. "$here/lib-interop.sh"

need python3
need curl
build_mcp_zt
work="$(mktemp -d)"
trap 'stop_server; rm -rf "$work"' EXIT
base="$work/base"
"$MCP_ZT" --home "$base" ca init >/dev/null 2>&1
"$MCP_ZT" --home "$base" issue --role admin --name alice >/dev/null 2>&1
"$MCP_ZT" --home "$base" issue --role viewer --name bob >/dev/null 2>&1
"$MCP_ZT" --home "$base" issue --role editor --name carol >/dev/null 2>&1
# One start makes the server certificate, so that both copies serve the same one.
mkdir -p "$work/first-logs"
start_server "$base" "$work/first-logs"
stop_server

for t in rmcp native; do
  cp -a "$base" "$work/$t"
  mkdir -p "$work/$t-logs"
  ops=$(free_port)
  start_server "$work/$t" "$work/$t-logs" --transport "$t" --ops-listen "127.0.0.1:$ops"
  python3 "$here/differential.py" record --port "$PORT" --home "$work/$t" \
    --out "$work/$t.json" --fuzz "$here/../fuzz/corpus/jsonrpc_ingress"
  direct=$(curl -s "http://127.0.0.1:$ops/metrics" | sed -n 's/^mcpzt_direct_requests_total //p')
  echo "$t: ${direct:-0} requests answered by the direct path"
  stop_server
  case "$t" in
    rmcp) [ "${direct:-0}" = 0 ] || fail "the rmcp transport answered $direct requests directly" ;;
    native) [ "${direct:-0}" -ge 40 ] || fail "the native transport answered only ${direct:-0} requests directly" ;;
  esac
done
python3 "$here/differential.py" compare "$work/rmcp.json" "$work/native.json" \
  "$work/rmcp/audit.log" "$work/native/audit.log" || fail "the transports answered differently"
echo "ok: the rmcp and native transports answered the corpus and audited it alike"
