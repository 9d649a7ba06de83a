#!/usr/bin/env bash
# Soak: 64 concurrent clients for SECONDS (default 120) against `mcp-zt serve`, mixing valid
# admins/editors/viewers with revoked, expired and rogue-CA certificates, and revoking two
# identities from another process during the run. Checks: zero errors for valid clients, zero
# accepted invalid ones, server RSS growth under 5% after warm-up, no file descriptor growth.
# Loopback only, bounded in time. Usage: scripts/soak.sh [SECONDS] [CLIENTS]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=lib.sh
. "$here/lib.sh"
secs="${1:-120}"
clients="${2:-64}"
[ "$clients" -ge 8 ] || { echo "soak: at least 8 clients, so that every kind of certificate is used" >&2; exit 2; }
build_tools "${MCP_ZT_PROFILE:-release}"
ulimit -n 65536 2>/dev/null || true

work="$(mktemp -d)"
home="$work/pki"
rogue="$work/rogue"
z() { "$MCP_ZT" --home "$home" "$@" >/dev/null 2>&1; }
z ca init
for n in admin0 admin1; do z issue --role admin --name "$n"; done
for n in editor0 editor1; do z issue --role editor --name "$n"; done
for n in viewer0 viewer1 mid0 mid1 revoked0; do z issue --role viewer --name "$n"; done
z issue --role admin --name expired0 --ttl 1s
z revoke revoked0
"$MCP_ZT" --home "$rogue" ca init >/dev/null 2>&1
"$MCP_ZT" --home "$rogue" issue --role admin --name admin0 >/dev/null 2>&1
mkdir -p "$home/rogue"
cp "$rogue/clients/admin0.crt" "$rogue/clients/admin0.key" "$home/rogue/"
sleep 2 # expired0 is now past its notAfter

start_server "$home" "$work" --lockout-threshold 0 --max-connections 4096
sample() { printf '%s %s %s\n' "$(date +%s)" "$(awk '/VmRSS/ {print $2}' "/proc/$SERVER_PID/status")" "$(ls "/proc/$SERVER_PID/fd" | wc -l)"; }
sample >"$work/samples"
fd_start=$(ls "/proc/$SERVER_PID/fd" | wc -l)
( while kill -0 "$SERVER_PID" 2>/dev/null; do sleep 2; sample >>"$work/samples" 2>/dev/null || true; done ) &
sampler=$!
"$TOOLS/examples/loadgen" soak --addr "127.0.0.1:$PORT" --ca "$home/ca.crt" --cert "$home/clients/admin0.crt" \
  --key "$home/clients/admin0.key" --home "$home" --mcp-zt "$MCP_ZT" --concurrency "$clients" \
  --duration "$secs" >"$work/soak.json"
sleep 3 # connections close, buffers are returned
sample >>"$work/samples"
fd_end=$(ls "/proc/$SERVER_PID/fd" | wc -l)
kill "$sampler" 2>/dev/null || true
stop_server
python3 - "$work/soak.json" "$work/samples" "$fd_start" "$fd_end" "$secs" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
samples = [tuple(map(int, l.split())) for l in open(sys.argv[2]) if len(l.split()) == 3]
fd_start, fd_end, secs = int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
t0 = samples[0][0]
warm = [s for s in samples if s[0] - t0 >= secs * 0.25]
rss_warm = warm[0][1] if warm else samples[0][1]
rss_end = samples[-1][1]
rss_peak = max(s[1] for s in samples)
growth = 100.0 * (rss_end - rss_warm) / rss_warm
print(f"soak: {r['clients']} clients, {r['seconds']:.0f} s: {r['valid_calls_ok']} valid calls ok, "
      f"{r['valid_errors']} valid errors; {r['invalid_refused']} invalid attempts refused, "
      f"{r['invalid_accepted']} accepted; revoked mid-run: {r['revoked_mid_run_calls_before']} calls before, "
      f"{r['revoked_mid_run_accepted_after']} accepted after")
print(f"soak: RSS after warm-up {rss_warm} KiB, at the end {rss_end} KiB ({growth:+.1f}%), peak {rss_peak} KiB; "
      f"file descriptors {fd_start} -> {fd_end}")
bad = []
if r["valid_errors"]: bad.append("valid clients saw errors")
if r["invalid_accepted"] or r["revoked_mid_run_accepted_after"]: bad.append("invalid certificates were accepted")
if r["invalid_refused"] == 0: bad.append("no invalid attempt was made")
if growth >= 5: bad.append(f"RSS grew {growth:.1f}% after warm-up")
if fd_end > fd_start: bad.append(f"file descriptors grew {fd_start} -> {fd_end}")
if bad:
    raise SystemExit("soak: FAILED: " + "; ".join(bad))
print("soak: ok")
PY
