#!/usr/bin/env bash
# Benchmarks mcp-zt against peers in one run, on 127.0.0.1 only, every loop bounded:
#   nginx (Debian, OpenSSL) with client certificates and a CRL, static JSON reply on POST /mcp;
#   the official MCP TypeScript SDK on node:https with client certificates;
#   a bare rmcp server (examples/bare_rmcp.rs: the same rmcp, transport settings and whoami-sized
#   answer as mcp-zt, over TLS 1.3 without client certificates), the reference for mcp-zt's own
#   tools/call;
#   the floor server (examples/floor.rs: hyper and rustls with mcp-zt's TLS settings and client
#   certificates verified, a fixed whoami-sized answer to every POST, no MCP): what this stack
#   costs before any MCP;
#   the gateway: mcp-zt (mTLS) in front of bare_rmcp over plain HTTP, against calling that
#   upstream directly (only mcp-zt's CPU counts: the cost it adds per forwarded call, and the
#   p50 it adds); and mcp-zt in front of `bare_rmcp --stdio`, against npm mcp-proxy (plain
#   HTTP, no authentication) in front of the same stdio server (only the proxy's own process
#   counts, not the stdio child).
# Rates are per CPU-second of the server process(es) (user+system time from /proc/PID/stat
# over the measured window, which leaves out children), because the load generator shares the
# machine's cores. Every reply counted is checked (status, id, a non-error result); any error
# or a measurement with no operations fails the run.
# The handshake cost of a big revoked set is measured as interleaved A/B repetitions (0 and
# N revoked, both servers running, measured alternately), medians compared.
#
# Usage: scripts/bench.sh [full|smoke|oauth]  (smoke: a few seconds per section, proves every
#                                               section still works; debug build, figures
#                                               meaningless; oauth: only the OAuth section, full)
# Output: tables on stdout, JSON in bench-results/latest.json (git-ignored).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
# shellcheck source=lib.sh
. "$here/lib.sh"
# shellcheck source=lib-interop.sh
. "$here/lib-interop.sh"

# concs: concurrencies against mcp-zt, nginx and the TS SDK; gconcs: against the bare rmcp
# server and the gateways (c=1 for latency, c=16 for throughput); pairs: A/B repetitions of the
# revoked-set handshake measurement.
mode="${1:-full}"
case "$mode" in
  full) dur=5; runs=3; concs="1 16 64"; gconcs="1 16"; pairs=5; big=100000; trials=50; issues=20; idle=5000 ;;
  oauth) dur=5; runs=5; gconcs="1 16" ;;
  smoke) dur=1; runs=1; concs="16"; gconcs="16"; pairs=1; big=2000; trials=3; issues=3; idle=100 ;;
  *) echo "usage: $0 [full|smoke|oauth]" >&2; exit 2 ;;
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
BARE="$TOOLS/examples/bare_rmcp"
FLOOR="$TOOLS/examples/floor"

# One install for every package of the prefix (interop-node.sh shares it): a later `npm install
# --no-save` of only some of them would remove the others.
prefix="${MCP_ZT_NODE_PREFIX:-$here/.node}"
proxy_version=6.7.19
proxy_js="$prefix/node_modules/mcp-proxy/dist/bin/mcp-proxy.mjs"
installed_proxy=$(node -p "require('$prefix/node_modules/mcp-proxy/package.json').version" 2>/dev/null || true)
if [ ! -d "$prefix/node_modules/@modelcontextprotocol/sdk" ] || [ "$installed_proxy" != "$proxy_version" ]; then
  mkdir -p "$prefix"
  (cd "$prefix" && npm install --no-audit --no-fund --loglevel=error --no-save \
    @modelcontextprotocol/inspector@1.0.3 '@modelcontextprotocol/sdk@^1.32.0' \
    "mcp-proxy@$proxy_version" >/dev/null)
fi
[ -f "$proxy_js" ] || fail "mcp-proxy $proxy_version has no $proxy_js"
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
# A single CA (`ca init --single`): nginx's ssl_crl checks revocation at every level of the
# chain and mcp-zt publishes no root CRL for its intermediates, so with a single CA the
# baseline verifies the same chain and CRL as mcp-zt, and figures compare with earlier runs.
new_home() {
  "$MCP_ZT" --home "$1" ca init --single >/dev/null 2>&1
  "$MCP_ZT" --home "$1" issue --role viewer --name bench >/dev/null 2>&1
  [ "$2" -gt 0 ] && "$SEED" "$1" "$2" 2>/dev/null
  return 0
}

# wait_listening FILE PID WHAT: waits until FILE says "listening 127.0.0.1:PORT"; sets LPORT.
wait_listening() {
  local i
  LPORT=
  for i in $(seq 1 4000); do
    LPORT=$(sed -n 's/^listening 127\.0\.0\.1://p' "$1")
    [ -n "$LPORT" ] && return 0
    # Checked now and then only: the startup time is measured through this loop.
    if [ $((i % 50)) = 0 ] && ! kill -0 "$2" 2>/dev/null; then break; fi
    sleep 0.002
  done
  cat "$1.err" >&2 2>/dev/null || true
  fail "$3 did not start"
}

# wait_port PORT PID WHAT LOG: waits until something accepts connections on PORT.
wait_port() {
  local i
  for i in $(seq 1 400); do
    (: <"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    kill -0 "$2" 2>/dev/null || break
    sleep 0.05
  done
  cat "$4" >&2
  fail "$3 did not start on port $1"
}

# start_mcp HOME [ARGS...]: starts mcp-zt serve without the per-address and per-certificate caps (the load
# generator is one address with one certificate); sets MCP_PID, MCP_PORT, STARTUP_MS.
start_mcp() {
  local out="$work/serve.$RANDOM.out" t0 t1
  t0=$(date +%s%N)
  "$MCP_ZT" --home "$1" serve --listen 127.0.0.1:0 --lockout-threshold 0 --max-connections 20000 \
    --max-connections-per-cert 0 --max-handshakes-per-address 0 "${@:2}" >"$out" 2>"$out.err" &
  MCP_PID=$!
  pids+=("$MCP_PID")
  wait_listening "$out" "$MCP_PID" "mcp-zt serve (home $1)"
  t1=$(date +%s%N)
  MCP_PORT=$LPORT
  STARTUP_MS=$(( (t1 - t0) / 1000000 ))
}
stop_pid() { kill "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }

# start_bare ARGS...: starts examples/bare_rmcp in an HTTP mode; sets BARE_PID, BARE_PORT.
start_bare() {
  local out="$work/bare.$RANDOM.out"
  "$BARE" "$@" >"$out" 2>"$out.err" &
  BARE_PID=$!
  pids+=("$BARE_PID")
  wait_listening "$out" "$BARE_PID" "bare_rmcp $*"
  BARE_PORT=$LPORT
}

# start_floor HOME: starts examples/floor (hyper + rustls, client certificates of HOME's CA
# verified, no MCP) with HOME's server certificate; sets FLOOR_PID, FLOOR_PORT.
start_floor() {
  local out="$work/floor.$RANDOM.out"
  "$FLOOR" --listen 127.0.0.1:0 --tls "$1/server/server.crt" "$1/server/server.key" \
    --client-ca "$1/ca.crt" >"$out" 2>"$out.err" &
  FLOOR_PID=$!
  pids+=("$FLOOR_PID")
  wait_listening "$out" "$FLOOR_PID" "floor"
  FLOOR_PORT=$LPORT
}

# gateway_home DIR ARGS...: a CA home with the client certificate "bench" (role viewer) and the
# upstream "bare" added with ARGS (`--url URL` or `-- COMMAND...`), whose whoami the viewer may
# call as bare__whoami.
gateway_home() {
  local h="$1"
  shift
  new_home "$h" 0
  "$MCP_ZT" --home "$h" upstream add bare "$@" >"$work/upstream-add.out" 2>&1 || {
    cat "$work/upstream-add.out" >&2
    fail "mcp-zt upstream add bare $*"
  }
  grant "$h/policy.toml" viewer '["tool:bare__whoami"]'
}

# measure NAME HOME PORT PIDS MODE CONC [extra]: runs the load generator once (mTLS with the
# client certificate "bench" of HOME; HOME "-" for plain HTTP) and records the result.
measure() {
  local name="$1" home="$2" port="$3" pidargs="$4" m="$5" c="$6" out
  shift 6
  local conn=(--plain)
  [ "$home" = - ] ||
    conn=(--ca "$home/ca.crt" --cert "$home/clients/bench.crt" --key "$home/clients/bench.key")
  # shellcheck disable=SC2086 # pidargs is a list of --pid flags
  out=$("$LOADGEN" "$m" --addr "127.0.0.1:$port" "${conn[@]}" $pidargs \
    --concurrency "$c" --duration "$dur" "$@") || fail "loadgen $m for $name"
  record "$name" "$out"
}

# gen NAME HOME PORT PIDS MODE CONC [extra]: measure, $runs times.
gen() {
  local i
  for i in $(seq 1 "$runs"); do measure "$@"; done
}

# alternate PEER PEER_HOME PEER_PORT PEER_PID GATEWAY GATEWAY_HOME: calls at each gateway
# concurrency, the peer (whoami) and mcp-zt (bare__whoami, at MCP_PORT) run by run in turn, so
# their ratio compares the same moments of the machine.
alternate() {
  local c
  for c in $gconcs; do
    for _ in $(seq 1 "$runs"); do
      measure "$1 calls c=$c" "$2" "$3" "--pid $4" calls "$c"
      measure "$5 calls c=$c" "$6" "$MCP_PORT" "--pid $MCP_PID" calls "$c" --tool bare__whoami
    done
  done
}

# oauth_section: tools/call with an access token against the same call with the certificate,
# on one server with --oauth, alternated run by run: the CPU a token costs per call (its check,
# the grant) against the certificate path.
oauth_section() {
  echo "== OAuth: tools/call with an access token, and with the certificate, on one server" >&2
  # The same server process, the same holder, alternated run by run: the CPU an access token
  # costs per call (its lookup in the ledger, the grant check) against the certificate path.
  oh="$work/oauth"
  new_home "$oh" 0
  printf 'access_ttl = "1h"\n' >"$oh/oauth.toml"
  oport=$(free_port)
  "$MCP_ZT" --home "$oh" serve --listen "127.0.0.1:$oport" --lockout-threshold 0 \
    --max-connections 20000 --max-connections-per-cert 0 --max-handshakes-per-address 0 \
    --oauth --public-url "https://localhost:$oport/mcp" --login-url "https://127.0.0.1:$oport" \
    >"$work/oauth.out" 2>"$work/oauth.out.err" &
  opid=$!
  pids+=("$opid")
  wait_listening "$work/oauth.out" "$opid" "mcp-zt serve --oauth"
  token=$(python3 "$here/bench/oauth_token.py" "$oh/ca.crt" "$oh/clients/bench.crt" \
    "$oh/clients/bench.key" "$oport") || fail "no OAuth token for the benchmark"
  for c in $gconcs; do
    for _ in $(seq 1 "$runs"); do
      measure "oauth-cert calls c=$c" "$oh" "$oport" "--pid $opid" calls "$c"
      out=$("$LOADGEN" calls --addr "127.0.0.1:$oport" --ca "$oh/ca.crt" --bearer "$token" \
        --pid "$opid" --concurrency "$c" --duration "$dur") || fail "loadgen calls with a token"
      record "oauth-token calls c=$c" "$out"
    done
  done
  stop_pid "$opid"
}

if [ "$mode" = oauth ]; then
  oauth_section
  python3 - "$results" <<'PY'
import json, statistics, sys
runs = {}
for line in open(sys.argv[1]):
    r = json.loads(line)
    runs.setdefault(r["name"], []).append(r["data"]["ops_per_server_cpu_sec"])
for c in sorted({int(n.split("c=")[1]) for n in runs}):
    cert = statistics.median(runs[f"oauth-cert calls c={c}"])
    tok = statistics.median(runs[f"oauth-token calls c={c}"])
    print(f"c={c}: calls/CPU-s certificate {cert:,.0f}, access token {tok:,.0f}, "
          f"extra CPU per call with a token {100 * (cert / tok - 1):+.1f}%")
PY
  exit 0
fi

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
# The native transport (serve --transport native) on a copy of the same home, alternating too.
cp -a "$home" "$home-native"
start_mcp "$home-native" --transport native
NATIVE_PID=$MCP_PID NATIVE_PORT=$MCP_PORT
start_mcp "$home"
# The bare rmcp reference runs beside it: its calls alternate with mcp-zt's, run by run, so the
# ratio of the two compares the same moments of this (noisy, shared) machine.
echo "   with the bare rmcp reference server (TLS 1.3, no client certificates), alternating" >&2
start_bare --listen 127.0.0.1:0 --tls "$home/server/server.crt" "$home/server/server.key"
# The stack's floor too: the same TLS and client-certificate verification with no MCP at all.
echo "   and the floor server (hyper + rustls, client certificates verified, a fixed answer), alternating" >&2
start_floor "$home"
for c in $concs; do
  for _ in $(seq 1 "$runs"); do
    measure "mcp-zt handshake c=$c" "$home" "$MCP_PORT" "--pid $MCP_PID" handshake "$c"
    measure "stack-floor handshake c=$c" "$home" "$FLOOR_PORT" "--pid $FLOOR_PID" handshake "$c" --static
  done
  for _ in $(seq 1 "$runs"); do
    measure "mcp-zt calls c=$c" "$home" "$MCP_PORT" "--pid $MCP_PID" calls "$c"
    measure "mcp-zt-native calls c=$c" "$home-native" "$NATIVE_PORT" "--pid $NATIVE_PID" calls "$c"
    measure "stack-floor calls c=$c" "$home" "$FLOOR_PORT" "--pid $FLOOR_PID" calls "$c" --static
    case " $gconcs " in
      *" $c "*) measure "bare-rmcp calls c=$c" "$home" "$BARE_PORT" "--pid $BARE_PID" calls "$c" ;;
    esac
  done
done
stop_pid "$BARE_PID"
stop_pid "$FLOOR_PID"
stop_pid "$NATIVE_PID"

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

echo "== handshake cost vs revoked serials (0 / $big): $pairs interleaved A/B pair(s)" >&2
new_home "$work/pki-0" 0
new_home "$work/pki-$big" "$big"
start_mcp "$work/pki-0"
a_pid=$MCP_PID a_port=$MCP_PORT
start_mcp "$work/pki-$big"
b_pid=$MCP_PID b_port=$MCP_PORT
record "startup with $big records" "{\"ms\":$STARTUP_MS}"
for _ in $(seq 1 "$pairs"); do
  measure "mcp-zt handshake c=16 revoked=0" "$work/pki-0" "$a_port" "--pid $a_pid" handshake 16
  measure "mcp-zt handshake c=16 revoked=$big" "$work/pki-$big" "$b_port" "--pid $b_pid" handshake 16
done
stop_pid "$a_pid"
stop_pid "$b_pid"
# Restarts of a big ledger: startup time measured again, median of three.
for i in 1 2 3; do
  start_mcp "$work/pki-$big"
  record "startup with $big records" "{\"ms\":$STARTUP_MS}"
  stop_pid "$MCP_PID"
done

echo "== nginx $(nginx -v 2>&1 | cut -d/ -f2) with client certificates and the same CRL" >&2
nport=$(free_port)
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
# Port 0: the server picks a free one and prints it (a guessed port can be taken).
node "$prefix/ts_server.mjs" "$home/server/server.crt" "$home/server/server.key" "$home/ca.crt" 0 \
  >"$work/ts.out" 2>&1 &
tpid=$!
pids+=("$tpid")
tport=""
for _ in $(seq 1 400); do
  tport=$(sed -n 's/^listening 127\.0\.0\.1://p' "$work/ts.out")
  [ -n "$tport" ] && break
  kill -0 "$tpid" 2>/dev/null || break
  sleep 0.05
done
[ -n "$tport" ] || { cat "$work/ts.out" >&2; fail "the TypeScript SDK server did not start"; }
for c in $concs; do
  gen "ts-sdk handshake c=$c" "$home" "$tport" "--pid $tpid" handshake "$c" --legacy
  kill -0 "$tpid" 2>/dev/null || { cat "$work/ts.out" >&2; fail "the TypeScript SDK server died"; }
  gen "ts-sdk calls c=$c" "$home" "$tport" "--pid $tpid" calls "$c"
done
stop_pid "$tpid"

echo "== gateway, HTTP upstream: bare_rmcp (plain HTTP) called directly and through mcp-zt" >&2
start_bare --listen 127.0.0.1:0
up_pid=$BARE_PID up_port=$BARE_PORT
gw="$work/gw-http"
gateway_home "$gw" --url "http://127.0.0.1:$up_port/mcp"
start_mcp "$gw"
alternate "upstream-direct" - "$up_port" "$up_pid" "gateway-http" "$gw"
rmcp_pid=$MCP_PID rmcp_port=$MCP_PORT
# The same gateway with --transport native, on a copy of its home: 2026-07-28 calls (no
# session), which the native transport relays without rmcp's client. Upstream, rmcp gateway
# and native gateway in turn, run by run.
cp -a "$gw" "$gw-native"
start_mcp "$gw-native" --transport native
for c in $gconcs; do
  for _ in $(seq 1 "$runs"); do
    measure "upstream-direct-stateless calls c=$c" - "$up_port" "--pid $up_pid" calls "$c" --stateless
    measure "gateway-http-stateless calls c=$c" "$gw" "$rmcp_port" "--pid $rmcp_pid" calls "$c" \
      --stateless --tool bare__whoami
    measure "gateway-http-native calls c=$c" "$gw-native" "$MCP_PORT" "--pid $MCP_PID" calls "$c" \
      --stateless --tool bare__whoami
  done
done
stop_pid "$MCP_PID"
stop_pid "$rmcp_pid"
stop_pid "$up_pid"

echo "== gateway, stdio upstream: bare_rmcp --stdio behind npm mcp-proxy $proxy_version (node $(node --version)) and behind mcp-zt" >&2
pport=$(free_port)
node "$proxy_js" --host 127.0.0.1 --port "$pport" --server stream -- "$BARE" --stdio \
  >"$work/proxy.out" 2>&1 &
proxy_pid=$!
pids+=("$proxy_pid")
wait_port "$pport" "$proxy_pid" "mcp-proxy" "$work/proxy.out"
gs="$work/gw-stdio"
gateway_home "$gs" -- "$BARE" --stdio
start_mcp "$gs"
alternate "mcp-proxy" - "$pport" "$proxy_pid" "gateway-stdio" "$gs"
stop_pid "$MCP_PID"
# The same with --transport native: 2026-07-28 calls relayed on the child's pipes, against
# mcp-proxy's own best (session calls), run by run in turn.
cp -a "$gs" "$gs-native"
start_mcp "$gs-native" --transport native
for c in $gconcs; do
  for _ in $(seq 1 "$runs"); do
    measure "mcp-proxy-2 calls c=$c" - "$pport" "--pid $proxy_pid" calls "$c"
    measure "gateway-stdio-native calls c=$c" "$gs-native" "$MCP_PORT" "--pid $MCP_PID" calls "$c" \
      --stateless --tool bare__whoami
  done
done
stop_pid "$MCP_PID"
stop_pid "$proxy_pid"
record "peers" "{\"mcp_proxy\":\"$proxy_version\",\"node\":\"$(node --version)\"}"

oauth_section

mkdir -p "$root/bench-results"
python3 "$here/bench/report.py" "$results" "$mode" "$root/bench-results/latest.json"
