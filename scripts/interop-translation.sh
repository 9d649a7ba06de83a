#!/usr/bin/env bash
# Clients of two MCP revisions in front of an upstream of the older one, through mcp-zt:
# the upstream (scripts/translation/legacy_upstream.py, official Python SDK 1.26, protocol
# 2025-11-25), once on stdio (tool `haiku`) and once on streamable HTTP (`h_haiku`), asks the
# client for a sample in the middle of its tool call.
#  1. a 2026-07-28 client (official Python SDK 2.x, through `connect --listen`) gets
#     `input_required` with the upstream's request, answers, and gets the tool's result;
#  2. a 2025-11-25 client (official Python SDK 1.26) gets the classic sampling request;
#  3. a requestState that was tampered with, is replayed by another certificate, belongs to a
#     certificate revoked since, or has expired is refused (and audited); an untouched one works
#     once (brought again, it is refused: the call it named is over).
# The SDKs are installed into scripts/.venv (2.x, MCP_ZT_VENV) and scripts/.venv-legacy (1.26).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=lib.sh
. "$here/lib.sh"
# shellcheck source=lib-interop.sh
. "$here/lib-interop.sh"

need python3
venv="${MCP_ZT_VENV:-$here/.venv}"
legacy="${MCP_ZT_LEGACY_VENV:-$here/.venv-legacy}"
for v in "$venv" "$legacy"; do
  [ -x "$v/bin/python" ] || python3 -m venv "$v"
done
"$venv/bin/python" -c 'import mcp, httpx2' 2>/dev/null ||
  "$venv/bin/pip" install --quiet --disable-pip-version-check 'mcp>=2.3,<3'
"$legacy/bin/python" -c 'import importlib.metadata as m; assert m.version("mcp") == "1.26.0"' 2>/dev/null ||
  "$legacy/bin/pip" install --quiet --disable-pip-version-check 'mcp==1.26.0'

build_mcp_zt
work="$(mktemp -d)"
home="$work/pki"
ttl=3
zt ca init
for n in alice bob carol; do zt issue --role admin --name "$n"; done
zt upstream add old --prefix "" -- "$legacy/bin/python" "$here/translation/legacy_upstream.py"
old_port=$(free_port)
"$legacy/bin/python" "$here/translation/legacy_upstream.py" http "$old_port" >"$work/old.out" 2>&1 &
OLD_PID=$!
for _ in $(seq 1 100); do
  curl -s -o /dev/null "http://127.0.0.1:$old_port/mcp" && break
  sleep 0.1
done
zt upstream add oldhttp --prefix "h_" --url "http://127.0.0.1:$old_port/mcp"
grant "$home/policy.toml" admin '["tool:*"]'
start_server "$home" "$work" --request-state-ttl "${ttl}s"
start_bridge "$home" "$work" alice "https://localhost:$PORT/mcp"
trap 'stop_bridge; stop_server; stop_pid "$OLD_PID"' EXIT
url="https://localhost:$PORT/mcp"
drive() { "$venv/bin/python" "$here/interop_python_translation.py" "$@"; }

for tool in haiku h_haiku; do
  echo "== 1. a 2026-07-28 client (Python SDK 2.x) -> connect --listen -> mcp-zt -> $tool (2025-11-25)"
  TOOL=$tool drive modern "$BRIDGE_URL"
  echo "== 2. a 2025-11-25 client (Python SDK 1.26) -> connect --listen -> mcp-zt -> $tool"
  TOOL=$tool "$legacy/bin/python" "$here/interop_python_translation.py" legacy "$BRIDGE_URL"
done
echo "== 3. requestState (on h_haiku): tampered, another certificate's, expired, revoked"
export TOOL=h_haiku
drive states "$url" "$home/ca.crt" "$home"
drive expired "$url" "$home/ca.crt" "$home" "$((ttl + 2))"
drive take "$url" "$home/ca.crt" "$home" carol "$work/carol.json"
zt revoke carol
drive replay "$url" "$home/ca.crt" "$home" bob "$work/carol.json"

# Each refusal is in the audit log with its real reason (the client was told only "invalid").
for why in "altered" "another certificate" "revoked certificate" "expired" "no longer held"; do
  grep '"event":"request_state_refused"' "$home/audit.log" | grep -q "$why" ||
    fail "no request_state_refused line saying '$why' in the audit log"
done
echo "audit: request_state_refused lines:"
grep '"event":"request_state_refused"' "$home/audit.log" | sed 's/^/  /'
echo "interop-translation: ok"
