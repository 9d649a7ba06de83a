#!/usr/bin/env bash
# What the console costs the MCP request path: tools/call throughput (session mode, 16
# connections) and full mTLS handshakes, per server CPU-second, of `serve`, of
# `serve --console` with nobody on the console, and of `serve --console` with an admin
# watching the live audit tail (every audit line is then formatted for the feed as well as
# written, and streamed; the watcher, curl, shares the machine). Rounds in one run, release
# build.
#
# Usage: scripts/bench-console.sh [ROUNDS] [SECONDS]   (default 3 rounds of 8 s)
# Output: one line per measurement and the medians; nothing is written to the repository.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=lib.sh
. "$here/lib.sh"
pairs="${1:-3}"
dur="${2:-8}"
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
need curl curl
build_tools "${MCP_ZT_PROFILE:-release}"
LOADGEN="$TOOLS/examples/loadgen"
work="$(mktemp -d)"
home="$work/pki"
"$MCP_ZT" --home "$home" ca init >/dev/null 2>&1
"$MCP_ZT" --home "$home" issue --role viewer --name bench --ttl 2h >/dev/null 2>&1
"$MCP_ZT" --home "$home" issue --role admin --name adm --ttl 2h >/dev/null 2>&1

tail_pid=""
results="$work/results.jsonl"
run() { # run LABEL [serve args]
  local label="$1"
  shift
  start_server "$home" "$work" --lockout-threshold 0 --max-handshakes-per-address 0 \
    --max-connections-per-cert 0 "$@"
  if [ "$label" = watched ]; then
    curl -sN --cacert "$home/ca.crt" --cert "$home/clients/adm.crt" --key "$home/clients/adm.key" \
      "https://127.0.0.1:$PORT/console/audit/stream" >"$work/tail.out" &
    tail_pid=$!
    sleep 0.5
  fi
  local m
  for m in calls handshake; do
    "$LOADGEN" "$m" --addr "127.0.0.1:$PORT" --ca "$home/ca.crt" --cert "$home/clients/bench.crt" \
      --key "$home/clients/bench.key" --pid "$SERVER_PID" --concurrency 16 --duration "$dur" |
      python3 -c 'import json,sys; d=json.load(sys.stdin); d["label"]=sys.argv[1]; print(json.dumps(d))' "$label" |
      tee -a "$results"
  done
  [ -n "$tail_pid" ] && kill "$tail_pid" 2>/dev/null || true
  tail_pid=""
  stop_server
}
for _ in $(seq 1 "$pairs"); do
  run plain
  run console --console
  run watched --console
done
[ -s "$work/tail.out" ] || fail "the live audit tail received nothing"
python3 - "$results" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
med = lambda mode, label: statistics.median(  # noqa: E731
    r["ops_per_server_cpu_sec"] for r in rows if r["mode"] == mode and r["label"] == label)
print("\nper server CPU-second   serve    --console (idle)   --console + live tail")
for mode in ("calls", "handshake"):
    a, b, c = med(mode, "plain"), med(mode, "console"), med(mode, "watched")
    print(f"{mode:<20} {a:>8,.0f}   {b:>8,.0f} ({b / a:.3f})   {c:>8,.0f} ({c / a:.3f})")
PY
