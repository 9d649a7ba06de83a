#!/usr/bin/env bash
# Crash safety: SIGKILL mcp-zt (CLI processes, and the server in every other round) at random
# moments during bursts of issuances and revocations, then check with `mcp-zt doctor` and
# openssl that nothing the CLI reported as done was lost:
#   every certificate file has a ledger record; no serial was issued twice; every revocation the
#   CLI reported is in the ledger and in the CRL; the CRL number never went down; the server
#   starts and refuses the revoked certificates.
#
# Usage: scripts/crash-test.sh [ROUNDS]    (default 20; CI runs a short form)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=lib.sh
. "$here/lib.sh"
rounds="${1:-20}"
need openssl
need curl
build_mcp_zt
work="$(mktemp -d)"
home="$work/pki"
ops="$work/ops.log"
: >"$ops"
"$MCP_ZT" --home "$home" ca init >/dev/null 2>&1

crl_number() {
  openssl crl -in "$home/crl.pem" -noout -crlnumber 2>/dev/null | sed 's/crlNumber=0x//' |
    python3 -c 'import sys; print(int(sys.stdin.read().strip() or "0", 16))'
}

burst() {
  # Issue and revoke in a loop; a line goes to the log only after the CLI reported success.
  local r="$1" i serial
  for i in $(seq 1 40); do
    if serial=$("$MCP_ZT" --home "$home" issue --role viewer --name "r${r}n$i" 2>/dev/null); then
      echo "issued $serial" >>"$ops"
      if [ $((i % 2)) -eq 0 ] && "$MCP_ZT" --home "$home" revoke "$serial" >/dev/null 2>&1; then
        echo "revoked $serial" >>"$ops"
      fi
    fi
  done
}

kills=0
inconsistent=0
last_crl=$(crl_number)
for r in $(seq 1 "$rounds"); do
  server=""
  if [ $((r % 2)) -eq 0 ]; then
    "$MCP_ZT" --home "$home" serve --listen 127.0.0.1:0 --lockout-threshold 0 \
      >"$work/serve.out" 2>/dev/null &
    server=$!
    for _ in $(seq 1 400); do grep -q listening "$work/serve.out" 2>/dev/null && break; sleep 0.01; done
  fi
  burst "$r" &
  loop=$!
  sleep "0.$(printf '%03d' $((RANDOM % 400 + 50)))"
  # SIGKILL every mcp-zt process of this HOME, mid-operation.
  victims=$(pgrep -f -- "--home $home" || true)
  for p in $victims; do kill -9 "$p" 2>/dev/null && kills=$((kills + 1)) || true; done
  echo "round $r: SIGKILLed $(echo $victims | wc -w) process(es)$([ -n "$server" ] && echo ', the server among them')" >&2
  kill -9 "$loop" 2>/dev/null || true
  wait "$loop" 2>/dev/null || true
  [ -n "$server" ] && { wait "$server" 2>/dev/null || true; }
  rm -f "$home/ctl.sock"

  # An interrupted revocation may be in the ledger but not yet in the CRL: doctor repairs that
  # (and would report anything else).
  "$MCP_ZT" --home "$home" doctor --repair >"$work/doctor.out" 2>&1 || {
    cat "$work/doctor.out" >&2
    inconsistent=$((inconsistent + 1))
  }
  "$MCP_ZT" --home "$home" list --json >"$work/list.json"
  openssl crl -in "$home/crl.pem" -noout -text >"$work/crl.txt"
  found=$(python3 "$here/crash_check.py" "$work/ops.log" "$work/list.json" "$work/crl.txt" "$r")
  inconsistent=$((inconsistent + found))
  now_crl=$(crl_number)
  [ "$now_crl" -ge "$last_crl" ] || { echo "round $r: CRL number went down $last_crl -> $now_crl" >&2; inconsistent=$((inconsistent + 1)); }
  last_crl=$now_crl
done

# The server starts on the crashed-and-repaired HOME and enforces the revocations.
start_server "$home" "$work"
"$MCP_ZT" --home "$home" list --json >"$work/list.json"
revoked_name=$(python3 -c 'import json,sys; d=[c["name"] for c in json.load(open(sys.argv[1])) if c["status"]=="revoked"]; print(d[-1] if d else "")' "$work/list.json")
"$MCP_ZT" --home "$home" issue --role viewer --name final >/dev/null 2>&1
probe() {
  curl -sS -o /dev/null -w '%{http_code}' --cacert "$home/ca.crt" --cert "$home/clients/$1.crt" \
    --key "$home/clients/$1.key" -H 'Accept: application/json, text/event-stream' \
    -H 'Content-Type: application/json' "https://localhost:$PORT/mcp" \
    -d '{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"c","version":"1"}}}' 2>/dev/null || true
}
[ "$(probe final)" = 200 ] || { echo "a valid certificate was refused after the crashes" >&2; inconsistent=$((inconsistent + 1)); }
if [ -n "$revoked_name" ] && [ -f "$home/clients/$revoked_name.crt" ]; then
  [ "$(probe "$revoked_name")" = 200 ] && { echo "revoked $revoked_name was accepted" >&2; inconsistent=$((inconsistent + 1)); }
fi
stop_server
"$MCP_ZT" --home "$home" doctor >/dev/null 2>&1 || { echo "doctor reports errors at the end" >&2; inconsistent=$((inconsistent + 1)); }

issued=$(grep -c '^issued' "$ops" || true)
revoked=$(grep -c '^revoked' "$ops" || true)
echo "crash-test: $rounds rounds, $kills processes SIGKILLed, $issued issuances and $revoked revocations reported done, $inconsistent inconsistencies"
[ "$inconsistent" = 0 ]
