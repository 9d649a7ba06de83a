#!/usr/bin/env bash
# The differential test of mcp-zt's two transports: one corpus (scripts/differential.py: the
# stateless calls the native direct path takes, the same with every header it checks changed,
# calls of an upstream's tools the native path relays and those it leaves to rmcp, hostile
# bodies, the fuzz corpus of jsonrpc_ingress, a 2025-11-25 session, the conformance suite's
# requests as recorded in tests/conformance/recorded-requests.json) is sent once to
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
# The gateway's share: an upstream (a second mcp-zt, its own CA, served by rmcp) whose tools
# the front exposes twice: as up__* over HTTP, and as st__* through a stdio child (`mcp-zt
# connect`, a session of the older revision on its pipes); both as the certificate "gw"
# (admin there).
up="$work/up"
"$MCP_ZT" --home "$up" ca init >/dev/null 2>&1
"$MCP_ZT" --home "$up" issue --role admin --name gw >/dev/null 2>&1
cat >>"$base/policy.toml" <<'TOML'

[tools.up__whoami]
roles = ["*"]

[tools.up__read_data]
roles = ["viewer"]

[tools.up__write_data]
roles = ["editor"]

[tools.up__list_certs]
roles = ["admin"]

[tools.up__delete_data]
roles = ["admin"]

[tools.st__whoami]
roles = ["*"]

[tools.st__read_data]
roles = ["viewer"]

[tools.st__write_data]
roles = ["editor"]
TOML
# One start makes the server certificates, so that both copies serve the same ones.
mkdir -p "$work/first-logs" "$work/up-first-logs"
start_server "$base" "$work/first-logs"
stop_server
start_server "$up" "$work/up-first-logs"
stop_server

UP_PID=
trap 'stop_server; stop_pid "$UP_PID"; rm -rf "$work"' EXIT
for t in rmcp native; do
  # Each transport gets its own copy of the upstream too (its rate limits and data start equal).
  cp -a "$up" "$work/$t-up"
  mkdir -p "$work/$t-up-logs"
  start_server "$work/$t-up" "$work/$t-up-logs"
  UP_PID=$SERVER_PID
  up_port=$PORT
  SERVER_PID=
  cp -a "$base" "$work/$t"
  cat >"$work/$t/upstreams.toml" <<TOML
[upstreams.up]
url = "https://localhost:$up_port/mcp"
ca = "$work/$t-up/ca.crt"
client_cert = { cert = "$work/$t-up/clients/gw.crt", key = "$work/$t-up/clients/gw.key" }
timeout = "10s"

[upstreams.st]
command = "$MCP_ZT"
args = ["--home", "$work/$t-up", "connect", "--name", "gw", "https://localhost:$up_port/mcp"]
timeout = "10s"
TOML
  chmod 600 "$work/$t/upstreams.toml"
  mkdir -p "$work/$t-logs"
  ops=$(free_port)
  start_server "$work/$t" "$work/$t-logs" --transport "$t" --ops-listen "127.0.0.1:$ops"
  trap 'stop_server; stop_pid "$UP_PID"; rm -rf "$work"' EXIT
  python3 "$here/differential.py" record --port "$PORT" --home "$work/$t" \
    --out "$work/$t.json" --fuzz "$here/../fuzz/corpus/jsonrpc_ingress" \
    --recorded "$here/../tests/conformance/recorded-requests.json"
  # DIFF_KEEP=DIR keeps the recordings and audit logs there, to look at a failure.
  [ -z "${DIFF_KEEP:-}" ] || cp "$work/$t.json" "$work/$t/audit.log" "$DIFF_KEEP/" 2>/dev/null || true
  [ -z "${DIFF_KEEP:-}" ] || cp "$work/$t/audit.log" "$DIFF_KEEP/$t-audit.log"
  direct=$(curl -s "http://127.0.0.1:$ops/metrics" | sed -n 's/^mcpzt_direct_requests_total //p')
  echo "$t: ${direct:-0} requests answered by the direct path"
  stop_server
  stop_pid "$UP_PID"
  UP_PID=
  case "$t" in
    rmcp) [ "${direct:-0}" = 0 ] || fail "the rmcp transport answered $direct requests directly" ;;
    native) [ "${direct:-0}" -ge 75 ] || fail "the native transport answered only ${direct:-0} requests directly" ;;
  esac
done
python3 "$here/differential.py" compare "$work/rmcp.json" "$work/native.json" \
  "$work/rmcp/audit.log" "$work/native/audit.log" || fail "the transports answered differently"
echo "ok: the rmcp and native transports answered the corpus and audited it alike"
