# Shared helpers for the scripts in this folder. Source it; do not run it.

# Builds mcp-zt (profile from MCP_ZT_PROFILE: release by default) and sets MCP_ZT to the
# binary. MCP_ZT_BIN names an already built binary instead (the test run uses the one
# `cargo test` built).
build_mcp_zt() {
  local root profile
  if [ -n "${MCP_ZT_BIN:-}" ] && [ -x "$MCP_ZT_BIN" ]; then
    MCP_ZT="$MCP_ZT_BIN"
    return 0
  fi
  root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
  profile="${MCP_ZT_PROFILE:-release}"
  if [ "$profile" = release ]; then
    (cd "$root" && cargo build --release --locked --quiet)
  else
    (cd "$root" && cargo build --locked --quiet)
  fi
  MCP_ZT="${CARGO_TARGET_DIR:-$root/target}/$profile/mcp-zt"
}

# build_tools PROFILE: builds mcp-zt and the benchmark tools (examples/) with PROFILE (release or
# debug); sets MCP_ZT and TOOLS (the folder holding loadgen and seed_ledger).
build_tools() {
  local root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)" flag=""
  [ "$1" = release ] && flag="--release"
  (cd "$root" && cargo build $flag --locked --quiet --bin mcp-zt --examples)
  TOOLS="${CARGO_TARGET_DIR:-$root/target}/$1"
  MCP_ZT="$TOOLS/mcp-zt"
}

# start_server HOME LOGDIR [args...]: runs `mcp-zt serve` on a free port in the background;
# sets SERVER_PID and PORT. Stops it on exit.
start_server() {
  local home="$1" logs="$2"
  shift 2
  "$MCP_ZT" --home "$home" serve --listen 127.0.0.1:0 "$@" >"$logs/serve.out" 2>"$logs/serve.err" &
  SERVER_PID=$!
  trap 'stop_server' EXIT
  local i
  # Up to 60 s: with upstreams configured, serve first waits (each up to its timeout) for
  # them to list what they offer, to refuse clashing names before it listens.
  for i in $(seq 1 1200); do
    PORT=$(sed -n 's/^listening 127\.0\.0\.1://p' "$logs/serve.out" 2>/dev/null)
    [ -n "$PORT" ] && return 0
    kill -0 "$SERVER_PID" 2>/dev/null || break
    sleep 0.05
  done
  echo "server did not start:" >&2
  cat "$logs/serve.err" >&2
  return 1
}

# stop_pid PID: SIGTERM (both serve and connect exit cleanly on it) and wait, if it still runs.
stop_pid() {
  if [ -n "${1:-}" ] && kill -0 "$1" 2>/dev/null; then
    kill -TERM "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
  fi
}

stop_server() {
  stop_pid "${SERVER_PID:-}"
  SERVER_PID=
}

# start_bridge HOME LOGDIR NAME URL: runs `mcp-zt connect --listen 127.0.0.1:0 --url-file` as
# NAME in the background and reads the local endpoint's URL (a secret path made anew at each
# launch) from the url file; sets BRIDGE_PID and BRIDGE_URL. Stops it (and the server) on exit.
start_bridge() {
  local home="$1" logs="$2" name="$3" url="$4"
  rm -f "$logs/bridge.url"
  "$MCP_ZT" --home "$home" connect --name "$name" --listen 127.0.0.1:0 \
    --url-file "$logs/bridge.url" "$url" >"$logs/bridge.out" 2>"$logs/bridge.err" &
  BRIDGE_PID=$!
  trap 'stop_bridge; stop_server' EXIT
  local i
  for i in $(seq 1 200); do
    # The file appears complete (written aside, then renamed) before the bridge answers.
    if [ -s "$logs/bridge.url" ]; then
      BRIDGE_URL=$(cat "$logs/bridge.url")
      return 0
    fi
    kill -0 "$BRIDGE_PID" 2>/dev/null || break
    sleep 0.05
  done
  echo "connect --listen did not start:" >&2
  cat "$logs/bridge.err" >&2
  return 1
}

stop_bridge() {
  stop_pid "${BRIDGE_PID:-}"
  BRIDGE_PID=
}

# need CMD [apt-package]: installs a missing tool from Debian when running as root, else fails.
need() {
  command -v "$1" >/dev/null 2>&1 && return 0
  local pkg="${2:-$1}"
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "installing $pkg ..." >&2
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$pkg" >/dev/null
  else
    echo "$1 is required: install the $pkg package" >&2
    return 1
  fi
}

fail() {
  echo "FAIL: $*" >&2
  exit 1
}

# The quickstarts' curl client. mcp NAME ARGS...: curl presenting NAME's certificate from
# $home/clients and trusting only $home/ca.crt. session NAME: initializes a session at $url as
# NAME and prints its id.
MCP_INIT='{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"curl","version":"1"}}}'
mcp() {
  local who="$1"
  shift
  curl -sS --cacert "$home/ca.crt" --cert "$home/clients/$who.crt" --key "$home/clients/$who.key" \
    -H 'Accept: application/json, text/event-stream' -H 'Content-Type: application/json' "$@"
}
session() {
  local sid
  sid=$(mcp "$1" -D - -o /dev/null "$url" -d "$MCP_INIT" | tr -d '\r' | sed -n 's/^mcp-session-id: //Ip')
  [ -n "$sid" ] || fail "initialize as $1 gave no session"
  mcp "$1" "$url" -H "Mcp-Session-Id: $sid" -d '{"jsonrpc":"2.0","method":"notifications/initialized"}'
  echo "$sid"
}
