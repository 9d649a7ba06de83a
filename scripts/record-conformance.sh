#!/usr/bin/env bash
# Records the official conformance suite's requests (server scenarios of 2025-11-25 and
# 2026-07-28) into tests/conformance/recorded-requests.json, a part of the differential test's
# corpus (scripts/interop-differential.sh replays it through both transports). The suite talks
# to a recording proxy (scripts/conformance_record.py) in front of `mcp-zt connect --listen`,
# in front of mcp-zt alone (`serve --diagnostic-tools`, the default transport), as run 1 of
# scripts/interop-conformance.sh. Run it again when the pinned suite version changes, and
# commit the result.
#
# Usage: scripts/record-conformance.sh [OUT]   (default tests/conformance/recorded-requests.json)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=lib.sh
. "$here/lib.sh"
# shellcheck source=lib-interop.sh
. "$here/lib-interop.sh"

out="${1:-$here/../tests/conformance/recorded-requests.json}"
setup_conformance "${MCP_ZT_NODE22_PREFIX:-$here/.node22}"
build_mcp_zt
work="$(mktemp -d)"
PROXY_PID=
trap 'stop_pid "$PROXY_PID"; stop_bridge; stop_server; rm -rf "$work"' EXIT
home="$work/alone"
zt ca init
zt issue --role admin --name conformance
grant "$home/policy.toml" admin '["tool:*", "prompt:*", "resource:*"]'
start_server "$home" "$work" --diagnostic-tools
start_bridge "$home" "$work" conformance "https://localhost:$PORT/mcp"
trap 'stop_pid "$PROXY_PID"; stop_bridge; stop_server; rm -rf "$work"' EXIT
logs=()
for rev in 2025-11-25 2026-07-28; do
  rm -f "$work/proxy.port"
  python3 "$here/conformance_record.py" proxy --target "$BRIDGE_URL" --port-file "$work/proxy.port" \
    --log "$work/$rev.jsonl" --tag "$rev" &
  PROXY_PID=$!
  for _ in $(seq 1 100); do [ -s "$work/proxy.port" ] && break; sleep 0.05; done
  [ -s "$work/proxy.port" ] || fail "the recording proxy did not start"
  echo "== conformance suite $conformance_suite_version (requirements $rev) -> recording proxy -> mcp-zt alone"
  run_suite "http://127.0.0.1:$(cat "$work/proxy.port")/mcp" "record-$rev" "$rev"
  stop_pid "$PROXY_PID"
  PROXY_PID=
  logs+=("$work/$rev.jsonl")
done
python3 "$here/conformance_record.py" finish --out "$out" "${logs[@]}"
