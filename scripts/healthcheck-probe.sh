#!/usr/bin/env bash
# The health-check scenario in real time, against `mcp-zt serve` with its default admission
# settings (lockout 10 failures in 60 s for 5 min, handshake burst 64 at 16/s):
#  - 20 plain TCP connects per minute from 127.0.0.1 for PROBE_SECS (120 by default): what a
#    load balancer's health check does;
#  - after a quarter of the time, 16 half-sent ClientHellos left open for 10 s, then closed;
#  - at half time, a revoked certificate presented 50 times in a row;
#  - throughout, a valid client (curl with its certificate) every 5 s.
# Prints what happened and the audit events by kind; exits 1 if the valid client was ever
# refused or the revoked certificate was not locked out. The integration test
# `admission::health_checks_and_half_open_hellos_never_lock_out_a_good_client` runs the same
# scenario faster than real time. MCP_ZT_BIN=path skips the build; MCP_ZT_PROFILE=debug builds
# a debug binary.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=lib.sh
. "$here/lib.sh"
need curl
secs="${PROBE_SECS:-120}"

build_mcp_zt
work="$(mktemp -d)"
home="$work/pki"
"$MCP_ZT" --home "$home" ca init >/dev/null 2>&1
"$MCP_ZT" --home "$home" issue --role viewer --name good >/dev/null 2>&1
bad="$("$MCP_ZT" --home "$home" issue --role viewer --name looping 2>/dev/null)"
start_server "$home" "$work"
echo "server on 127.0.0.1:$PORT (defaults), probing for ${secs}s"

init='{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"probe","version":"1"}}}'
# mcp_post NAME: one fresh mTLS connection and an initialize; prints the HTTP status (000: none).
mcp_post() {
  curl -s -o /dev/null -w '%{http_code}' --max-time 10 \
    --cert "$home/clients/$1.crt" --key "$home/clients/$1.key" --cacert "$home/ca.crt" \
    -H 'Accept: application/json, text/event-stream' -H 'Content-Type: application/json' \
    -d "$init" "https://localhost:$PORT/mcp" || true
}

good_ok=0 good_fail=0 plain=0 bad_refused=0
hellos_opened=0 hellos_closed=0 revoked=0
declare -a held=()
start=$(date +%s)
next_plain=0 next_good=0
while :; do
  t=$(($(date +%s) - start))
  [ "$t" -ge "$secs" ] && break
  if [ "$t" -ge "$next_plain" ]; then
    # A plain TCP connect, closed at once: 20 per minute.
    if exec {fd}<>"/dev/tcp/127.0.0.1/$PORT"; then
      exec {fd}>&-
      plain=$((plain + 1))
    fi
    next_plain=$((next_plain + 3))
  fi
  if [ "$t" -ge "$next_good" ]; then
    code="$(mcp_post good)"
    if [ "$code" = 200 ]; then
      good_ok=$((good_ok + 1))
    else
      good_fail=$((good_fail + 1))
      echo "  t=${t}s: valid client got $code"
    fi
    next_good=$((next_good + 5))
  fi
  if [ "$hellos_opened" = 0 ] && [ "$t" -ge $((secs / 4)) ]; then
    for _ in $(seq 1 16); do
      exec {fd}<>"/dev/tcp/127.0.0.1/$PORT"
      printf '\x16\x03\x01\x02\x00\x01\x00' >&"$fd"
      held+=("$fd")
    done
    hellos_opened=$t
    echo "  t=${t}s: 16 half-sent ClientHellos open"
  fi
  if [ "$hellos_opened" != 0 ] && [ "$hellos_closed" = 0 ] && [ "$t" -ge $((hellos_opened + 10)) ]; then
    for fd in "${held[@]}"; do exec {fd}>&-; done
    hellos_closed=$t
    echo "  t=${t}s: ClientHellos closed"
  fi
  if [ "$revoked" = 0 ] && [ "$t" -ge $((secs / 2)) ]; then
    "$MCP_ZT" --home "$home" revoke "$bad" >/dev/null 2>&1
    revoked=$t
    for _ in $(seq 1 50); do
      [ "$(mcp_post looping)" = 200 ] || bad_refused=$((bad_refused + 1))
    done
    echo "  t=${t}s: revoked certificate presented 50 times, refused $bad_refused times"
    code="$(mcp_post good)"
    echo "  t=${t}s: valid client right after: $code"
    if [ "$code" = 200 ]; then good_ok=$((good_ok + 1)); else good_fail=$((good_fail + 1)); fi
  fi
  sleep 0.5
done

echo
echo "plain TCP connects: $plain"
echo "valid client: $good_ok served, $good_fail refused"
echo "audit events:"
lock_rc=0
python3 - "$home/audit.log" "$bad" <<'PY' || lock_rc=$?
import collections, json, sys
events = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
# A coalesced line stands for `count` identical refusals.
kinds = collections.Counter()
for e in events:
    kinds[e["event"]] += e.get("count", 1)
for k, n in sorted(kinds.items()):
    print(f"  {k:22} {n}")
for e in events:
    if e["event"] in ("lockout", "connection_refused"):
        serial = e.get("claimed_serial") or e.get("serial", "-")
        print(f"  {e['event']}: serial={serial} {e.get('reason', '')}")
locked = sum(e.get("count", 1) for e in events if e["event"] == "handshake_rejected"
             and e.get("reason", "").startswith("locked out"))
print(f"  refused as locked out: {locked}")
# Refused certificates are claims until verified: the lockout line names the claimed serial.
ok = any(e["event"] == "lockout" and e.get("claimed_serial") == sys.argv[2] for e in events)
sys.exit(0 if ok else 2)
PY
[ "$good_fail" = 0 ] || fail "the valid client was refused $good_fail times"
[ "$lock_rc" = 0 ] || fail "the looping revoked certificate was not locked out"
echo "OK: the valid client was served throughout; the revoked certificate locked out itself"
