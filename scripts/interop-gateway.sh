#!/usr/bin/env bash
# The gateway (`mcp-zt upstream`, `serve` in front of other MCP servers) with servers and
# clients nobody here wrote, clients being the official MCP Python SDK over mTLS:
#  A. the conformance reference server (HTTP): a viewer sees exactly what the policy allows;
#     hidden tools, resources and prompts answer like missing ones, and are audited;
#  B. @modelcontextprotocol/server-everything (stdio): progress and sampling reach the one
#     client that caused them, not another one connected at the same time;
#  C. a per-identity stdio upstream: one child per certificate, stopped at revocation;
#  D. an HTTP upstream killed with -9 mid-call, then restarted: the call fails in time and
#     the client is told (tools/list_changed) when the tools are back;
#  E. two upstreams offering the same name without prefixes: `upstream check` and `serve`
#     refuse to run.
# Node 22 and the reference server come as in interop-conformance.sh (scripts/.node22,
# MCP_ZT_NODE22_PREFIX); server-everything is installed into scripts/.node-everything
# (MCP_ZT_EVERYTHING_PREFIX); the Python SDK into scripts/.venv (MCP_ZT_VENV).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=lib.sh
. "$here/lib.sh"
# shellcheck source=lib-interop.sh
. "$here/lib-interop.sh"

fixture="$(cd "$here/../tests/conformance/reference-server" && pwd)"
prefix="${MCP_ZT_NODE22_PREFIX:-$here/.node22}"
everything_prefix="${MCP_ZT_EVERYTHING_PREFIX:-$here/.node-everything}"
everything_version=2026.8.31
gw_py="$here/interop_python_gateway.py"
started=$SECONDS

need python3
need npm

# The Python SDK.
setup_python_sdk
PY="$venv/bin/python"

# Node 22 (the reference server needs it) and the reference server.
setup_node22 "$prefix"
setup_ref_server "$prefix" "$fixture"

# server-everything, pinned (runs on the same Node 22).
every_pkg="$everything_prefix/node_modules/@modelcontextprotocol/server-everything"
installed=$("$NODE" -p "require('$every_pkg/package.json').version" 2>/dev/null || true)
if [ "$installed" != "$everything_version" ]; then
  mkdir -p "$everything_prefix"
  [ -f "$everything_prefix/package.json" ] || echo '{ "private": true }' >"$everything_prefix/package.json"
  (cd "$everything_prefix" && npm install --no-audit --no-fund --loglevel=error \
    "@modelcontextprotocol/server-everything@$everything_version" >/dev/null)
fi
[ -f "$every_pkg/dist/index.js" ] || fail "server-everything has no dist/index.js under $every_pkg"

build_mcp_zt
echo "== installs ready after $((SECONDS - started)) s"
started=$SECONDS
work="$(mktemp -d)"
home="$work/pki"

REF_PID=
FLAKY_PIDFILE="$work/flaky.pid"
cleanup() {
  stop_server
  stop_pid "$REF_PID"
  [ -s "$FLAKY_PIDFILE" ] && kill -9 "$(cat "$FLAKY_PIDFILE")" 2>/dev/null || true
}
trap cleanup EXIT

# wait_port PORT PID WHAT LOG: waits until something listens on PORT.
wait_port() {
  for _ in $(seq 1 200); do
    if python3 -c 'import socket,sys; socket.create_connection(("127.0.0.1", int(sys.argv[1])), 0.2)' "$1" 2>/dev/null; then
      return 0
    fi
    kill -0 "$2" 2>/dev/null || break
    sleep 0.05
  done
  cat "$4" >&2
  fail "$3 did not start on port $1"
}

# --- the upstreams
port=$(free_port)
(cd "$ref" && PORT="$port" exec "$NODE" --import tsx everything-server.ts) >"$work/ref.out" 2>"$work/ref.err" &
REF_PID=$!
wait_port "$port" "$REF_PID" "the reference server" "$work/ref.err"
ref_url="http://127.0.0.1:$port/mcp"

flaky_port=$(free_port)
"$PY" "$gw_py" http-server "$flaky_port" >"$FLAKY_PIDFILE.log" 2>&1 &
echo $! >"$FLAKY_PIDFILE"
disown  # killed with -9 on purpose in D: no job notice
wait_port "$flaky_port" "$(cat "$FLAKY_PIDFILE")" "the flaky HTTP upstream" "$FLAKY_PIDFILE.log"

zt ca init
zt issue --role viewer --name vic
for n in ada abe alice bob; do zt issue --role admin --name "$n"; done
zt upstream add ref --url "$ref_url" --prefix ""
zt upstream add every -- "$NODE" "$every_pkg/dist/index.js" stdio
zt upstream add pid --share per-identity -- "$PY" "$gw_py" stdio-server
zt upstream add flaky --url "http://127.0.0.1:$flaky_port/mcp" --timeout 10s
grant "$home/policy.toml" viewer '["tool:test_simple_text", "resource:test://static-text"]'
grant "$home/policy.toml" admin '["tool:*", "prompt:*", "resource:*"]'
start_server "$home" "$work" || fail "mcp-zt serve did not start (upstreams: ref, every, pid, flaky)"
trap cleanup EXIT
url="https://localhost:$PORT/mcp"

step() { printf '== %s\n' "$*"; }

step "A. reference server as an HTTP upstream, seen by a viewer"
"$PY" "$gw_py" ref "$url" "$home" vic || fail "A (reference server, viewer policy)"

step "B. server-everything as a stdio upstream: progress and sampling go to their caller only"
"$PY" "$gw_py" every "$url" "$home" ada abe || fail "B (server-everything: progress, sampling)"
grep -q '"event":"upstream_call".*"upstream":"every"' "$home/audit.log" ||
  fail "B: no upstream_call line for 'every' in the audit log"
relayed=$(grep '"event":"upstream_request_relayed"' "$home/audit.log" | grep '"item":"upstream:every"' |
  grep 'sampling request') || fail "B: the relayed sampling request is not in the audit log"
grep -q '"name":"ada"' <<<"$relayed" || fail "B: the sampling request was audited for another caller: $relayed"
echo "B: audit: $(head -n 1 <<<"$relayed")"

step "C. per-identity stdio children, one stopped at revocation"
"$PY" "$gw_py" pid "$url" "$home" "$MCP_ZT" alice bob || fail "C (per-identity children, revocation)"
grep -q '"event":"upstream_child_stopped"' "$home/audit.log" ||
  fail "C: no upstream_child_stopped line in the audit log"

step "D. an HTTP upstream killed mid-call, then back"
"$PY" "$gw_py" flaky "$url" "$home" ada "$flaky_port" "$FLAKY_PIDFILE" ||
  fail "D (HTTP upstream killed and restarted)"
for ev in upstream_down upstream_up list_changed_sent; do
  grep -q "\"event\":\"$ev\"" "$home/audit.log" || fail "D: no $ev line in the audit log"
done
stop_server

step "E. the same tool name from two upstreams without prefixes"
home="$work/clash"
zt ca init
zt upstream add one --prefix "" -- "$PY" "$gw_py" stdio-server
zt upstream add two --prefix "" -- "$PY" "$gw_py" stdio-server
rc=0
"$MCP_ZT" --home "$home" upstream check >"$work/check.out" 2>&1 || rc=$?
[ "$rc" != 0 ] || { cat "$work/check.out" >&2; fail "E: upstream check accepted the clash"; }
for word in one two whoami_env; do
  grep -q "$word" "$work/check.out" || { cat "$work/check.out" >&2; fail "E: upstream check does not name '$word'"; }
done
echo "E: upstream check exit $rc: $(grep -m1 whoami_env "$work/check.out")"
rc=0
timeout 20 "$MCP_ZT" --home "$home" serve --listen 127.0.0.1:0 >"$work/clash.out" 2>&1 || rc=$?
[ "$rc" != 124 ] || fail "E: serve with clashing names was still running after 20 s"
[ "$rc" != 0 ] || { cat "$work/clash.out" >&2; fail "E: serve with clashing names exited 0"; }
for word in one two whoami_env; do
  grep -q "$word" "$work/clash.out" || { cat "$work/clash.out" >&2; fail "E: serve's error does not name '$word'"; }
done
echo "E: serve exit $rc: $(grep -m1 whoami_env "$work/clash.out")"
zt upstream remove one
zt upstream remove two
zt upstream add one -- "$PY" "$gw_py" stdio-server
zt upstream add two -- "$PY" "$gw_py" stdio-server
grant "$home/policy.toml" admin '["tool:*"]'
"$MCP_ZT" --home "$home" upstream check >"$work/check.out" 2>&1 ||
  { cat "$work/check.out" >&2; fail "E: upstream check with default prefixes failed"; }
{ grep -q one__whoami_env "$work/check.out" && grep -q two__whoami_env "$work/check.out"; } ||
  { cat "$work/check.out" >&2; fail "E: one__whoami_env and two__whoami_env not both offered"; }
echo "E: with default prefixes: upstream check exit 0 (one__whoami_env, two__whoami_env)"

echo "interop-gateway: ok ($((SECONDS - started)) s after installs)"
