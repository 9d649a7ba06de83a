#!/usr/bin/env bash
# Benchmarks mcp-zt against peers in one run, on 127.0.0.1 only, every loop bounded:
#   nginx (Debian, OpenSSL) with client certificates and a CRL, static JSON reply on POST /mcp;
#   the official MCP TypeScript SDK on node:https with client certificates.
# Rates are per CPU-second of the server process(es) (user+system time from /proc/PID/stat
# over the measured window), because the load generator shares the machine's cores.
#
# Usage: scripts/bench.sh [full|smoke]     (smoke: a few seconds, proves the bench still works)
# Output: a table on stdout, JSON in bench-results/latest.json (git-ignored).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
# shellcheck source=lib.sh
. "$here/lib.sh"

mode="${1:-full}"
case "$mode" in
  full) dur=5; runs=3; concs="1 16 64"; big=100000; trials=50; issues=20; idle=5000 ;;
  smoke) dur=1; runs=1; concs="16"; big=2000; trials=3; issues=3; idle=100 ;;
  *) echo "usage: $0 [full|smoke]" >&2; exit 2 ;;
esac
profile=release
[ "$mode" = smoke ] && profile=debug
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

need nginx nginx-light
need openssl
need node nodejs
need npm
build_tools "$profile"
LOADGEN="$TOOLS/examples/loadgen"
SEED="$TOOLS/examples/seed_ledger"

prefix="${MCP_ZT_NODE_PREFIX:-$here/.node}"
if [ ! -d "$prefix/node_modules/@modelcontextprotocol/sdk" ]; then
  mkdir -p "$prefix"
  (cd "$prefix" && npm install --no-audit --no-fund --loglevel=error --no-save \
    @modelcontextprotocol/inspector@1.0.3 '@modelcontextprotocol/sdk@^1.32.0' >/dev/null)
fi
cp "$here/bench/ts_server.mjs" "$prefix/ts_server.mjs"

work="$(mktemp -d)"
results="$work/results.jsonl"
: >"$results"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  [ -f "$work/nginx.pid" ] && kill "$(cat "$work/nginx.pid")" 2>/dev/null || true
}
trap cleanup EXIT

# record NAME JSON: appends a measurement.
record() { printf '{"name":"%s","data":%s}\n' "$1" "$2" >>"$results"; }

# new_home DIR REVOKED: a CA with a client certificate "bench" and REVOKED revoked entries.
new_home() {
  "$MCP_ZT" --home "$1" ca init >/dev/null 2>&1
  "$MCP_ZT" --home "$1" issue --role viewer --name bench >/dev/null 2>&1
  [ "$2" -gt 0 ] && "$SEED" "$1" "$2" 2>/dev/null
  return 0
}

# start_mcp HOME: starts mcp-zt serve; sets MCP_PID, MCP_PORT; prints startup ms.
start_mcp() {
  local out="$work/serve.$RANDOM.out" t0 t1
  t0=$(date +%s%N)
  "$MCP_ZT" --home "$1" serve --listen 127.0.0.1:0 --lockout-threshold 0 --max-connections 20000 \
    >"$out" 2>/dev/null &
  MCP_PID=$!
  pids+=("$MCP_PID")
  for _ in $(seq 1 2000); do
    MCP_PORT=$(sed -n 's/^listening 127\.0\.0\.1://p' "$out")
    [ -n "$MCP_PORT" ] && break
    sleep 0.002
  done
  t1=$(date +%s%N)
  [ -n "$MCP_PORT" ] || fail "mcp-zt did not start"
  STARTUP_MS=$(( (t1 - t0) / 1000000 ))
}
stop_pid() { kill "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }

# gen NAME HOME PORT PIDS MODE CONC [extra]: runs the load generator $runs times.
gen() {
  local name="$1" home="$2" port="$3" pidargs="$4" m="$5" c="$6"
  shift 6
  local i
  for i in $(seq 1 "$runs"); do
    local out
    out=$("$LOADGEN" "$m" --addr "127.0.0.1:$port" --ca "$home/ca.crt" \
      --cert "$home/clients/bench.crt" --key "$home/clients/bench.key" $pidargs \
      --concurrency "$c" --duration "$dur" "$@")
    record "$name" "$out"
  done
}

echo "== machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)" >&2

echo "== physical floor: openssl speed" >&2
speed=$(openssl speed -seconds 1 ecdsap256 ecdhx25519 2>/dev/null)
sign=$(echo "$speed" | awk '/256 bits ecdsa \(nistp256\)/ {print $(NF-1); exit}')
verify=$(echo "$speed" | awk '/256 bits ecdsa \(nistp256\)/ {print $NF; exit}')
derive=$(echo "$speed" | awk '/253 bits ecdh \(X25519\)/ {print $NF; exit}')
record floor "{\"sign_per_s\":$sign,\"verify_per_s\":$verify,\"derive_per_s\":$derive}"

echo "== mcp-zt (1,000 revoked serials)" >&2
home="$work/pki"
new_home "$home" 1000
start_mcp "$home"
for c in $concs; do
  gen "mcp-zt handshake c=$c" "$home" "$MCP_PORT" "--pid $MCP_PID" handshake "$c"
  gen "mcp-zt calls c=$c" "$home" "$MCP_PORT" "--pid $MCP_PID" calls "$c"
done

echo "== mcp-zt revocation propagation ($trials trials)" >&2
for i in $(seq 0 $((trials - 1))); do
  "$MCP_ZT" --home "$home" issue --role viewer --name "rv$i" >/dev/null 2>&1
done
out=$("$LOADGEN" revocation --addr "127.0.0.1:$MCP_PORT" --ca "$home/ca.crt" \
  --cert "$home/clients/bench.crt" --key "$home/clients/bench.key" \
  --trials "$trials" --mcp-zt "$MCP_ZT" --home "$home" --prefix rv)
record "revocation propagation" "$out"

echo "== mcp-zt idle connections ($idle)" >&2
rss0=$(awk '/VmRSS/ {print $2}' "/proc/$MCP_PID/status")
"$LOADGEN" idle --addr "127.0.0.1:$MCP_PORT" --ca "$home/ca.crt" --cert "$home/clients/bench.crt" \
  --key "$home/clients/bench.key" --count "$idle" --hold 4 >"$work/idle.out" &
lg=$!
for _ in $(seq 1 600); do [ -s "$work/idle.out" ] && break; sleep 0.1; done
sleep 1
rss1=$(awk '/VmRSS/ {print $2}' "/proc/$MCP_PID/status")
wait "$lg" || true
record "idle connections" "{\"open\":$(python3 -c 'import json,sys;print(json.load(open(sys.argv[1]))["open"])' "$work/idle.out"),\"rss_before_kib\":$rss0,\"rss_after_kib\":$rss1}"

echo "== issue latency, with the server running" >&2
t0=$(date +%s%N)
for i in $(seq 1 "$issues"); do "$MCP_ZT" --home "$home" issue --role viewer --name "is$i" >/dev/null 2>&1; done
t1=$(date +%s%N)
record "issue with server" "{\"count\":$issues,\"ms_each\":$(( (t1 - t0) / 1000000 / issues ))}"
stop_pid "$MCP_PID"

echo "== issue latency, without a server" >&2
t0=$(date +%s%N)
for i in $(seq 1 "$issues"); do "$MCP_ZT" --home "$home" issue --role viewer --name "in$i" >/dev/null 2>&1; done
t1=$(date +%s%N)
record "issue without server" "{\"count\":$issues,\"ms_each\":$(( (t1 - t0) / 1000000 / issues ))}"

echo "== handshake cost vs revoked serials (0 / 1,000 / $big)" >&2
for n in 0 "$big"; do
  h="$work/pki-$n"
  new_home "$h" "$n"
  start_mcp "$h"
  [ "$n" = "$big" ] && record "startup with $big records" "{\"ms\":$STARTUP_MS}"
  gen "mcp-zt handshake c=16 revoked=$n" "$h" "$MCP_PORT" "--pid $MCP_PID" handshake 16
  stop_pid "$MCP_PID"
done
# Restarts of a big ledger: startup time measured again, median of three.
for i in 1 2 3; do
  start_mcp "$work/pki-$big"
  record "startup with $big records" "{\"ms\":$STARTUP_MS}"
  stop_pid "$MCP_PID"
done

echo "== nginx $(nginx -v 2>&1 | cut -d/ -f2) with client certificates and the same CRL" >&2
nport=$((20000 + RANDOM % 20000))
mkdir -p "$work/nginx"
cat >"$work/nginx/nginx.conf" <<CONF
worker_processes 1;
pid $work/nginx.pid;
error_log $work/nginx/error.log;
events { worker_connections 20000; }
http {
  access_log off;
  client_body_temp_path $work/nginx;
  server {
    listen 127.0.0.1:$nport ssl;
    ssl_protocols TLSv1.3;
    ssl_certificate $home/server/server.crt;
    ssl_certificate_key $home/server/server.key;
    ssl_client_certificate $home/ca.crt;
    ssl_verify_client on;
    ssl_crl $home/crl.pem;
    ssl_session_cache off;
    ssl_session_tickets off;
    keepalive_requests 1000000;
    location = /mcp {
      default_type application/json;
      return 200 '{"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":"static"}]}}';
    }
  }
}
CONF
nginx -c "$work/nginx/nginx.conf"
for _ in $(seq 1 100); do [ -s "$work/nginx.pid" ] && break; sleep 0.05; done
npids=$(pgrep -d' ' -f "nginx.*$work/nginx/nginx.conf" || true)
npids="$npids $(pgrep -P "$(cat "$work/nginx.pid")" | xargs)"
nargs=""
for p in $npids; do nargs="$nargs --pid $p"; done
for c in $concs; do
  gen "nginx handshake c=$c" "$home" "$nport" "$nargs" handshake "$c" --static
  gen "nginx calls c=$c" "$home" "$nport" "$nargs" calls "$c" --static
done
kill "$(cat "$work/nginx.pid")" 2>/dev/null || true

echo "== TypeScript SDK $(node -p "require('$prefix/node_modules/@modelcontextprotocol/sdk/package.json').version") on node:https" >&2
tport=$((20000 + RANDOM % 20000))
node "$prefix/ts_server.mjs" "$home/server/server.crt" "$home/server/server.key" "$home/ca.crt" "$tport" \
  >"$work/ts.out" 2>&1 &
tpid=$!
pids+=("$tpid")
for _ in $(seq 1 200); do grep -q listening "$work/ts.out" && break; sleep 0.05; done
for c in $concs; do
  gen "ts-sdk handshake c=$c" "$home" "$tport" "--pid $tpid" handshake "$c" --legacy
  gen "ts-sdk calls c=$c" "$home" "$tport" "--pid $tpid" calls "$c"
done
stop_pid "$tpid"

mkdir -p "$root/bench-results"
python3 "$here/bench/report.py" "$results" "$mode" "$root/bench-results/latest.json"
