#!/usr/bin/env bash
# Conformance under CPU load, the long form of a flakiness hunt. The official MCP conformance
# suite (server scenarios, requirements of REVISION) runs N times through mcp-zt as a gateway
# (the vendored reference server as an upstream of `mcp-zt serve`, reached through
# `mcp-zt connect --listen`, as in scripts/interop-conformance.sh), alternately with
# `serve --transport rmcp` and `serve --transport native` (a fresh serve and connect for each
# run, one reference server for all), while a CPU load runs beside it. It prints each run's
# counts and, at the end, every check that failed at least once: per transport, in how many
# runs, and the suite's message of its first failure. It reports and does not gate: the exit
# status is 0 unless the suite could not run at all.
#
# Usage: scripts/conformance-stress.sh [N] [REVISION]
#   N           runs per transport (default 10)
#   REVISION    2025-11-25 (default), 2026-07-28, or both: 2025-11-25,2026-07-28
# Environment:
#   LOAD        one (default): one core busy; all: every core busy; none: no load
#   LOAD_TOOL   stress-ng, stress or yes; by default stress-ng or stress if installed, else
#               stress-ng from Debian (as root, with apt), else `yes >/dev/null`. One process
#               per busy core, pinned to it with taskset.
#   DIRECT=1    in each round also runs the suite against the reference server directly
#               (transport "direct"): a check that fails there too fails in the suite or the
#               reference server, not in mcp-zt
#   MCP_ZT_BIN  an already built mcp-zt (else it is built, see lib.sh)
# Node 22, the suite and the reference server are set up as for interop-conformance.sh and
# reused. Everything a run leaves (the suite's folder per scenario, its output, serve's and
# connect's logs) stays in the folder printed at the end.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=lib.sh
. "$here/lib.sh"
# shellcheck source=lib-interop.sh
. "$here/lib-interop.sh"

runs="${1:-10}"
revisions="${2:-2025-11-25}"
LOAD="${LOAD:-one}"
DIRECT="${DIRECT:-0}"
usage="usage: scripts/conformance-stress.sh [N] [REVISION[,REVISION]]  (LOAD=none|one|all)"
[[ "$runs" =~ ^[1-9][0-9]*$ ]] || { echo "$usage" >&2; exit 2; }
IFS=, read -r -a revs <<<"$revisions"
for rev in "${revs[@]}"; do
  [[ "$rev" =~ ^[0-9]{4}-[0-9]{2}-[0-9]{2}$ ]] || { echo "$usage" >&2; exit 2; }
done
case "$LOAD" in none | one | all) ;; *) echo "$usage" >&2; exit 2 ;; esac
transports=(rmcp native)
[ "$DIRECT" = 1 ] && transports+=(direct)

prefix="${MCP_ZT_NODE22_PREFIX:-$here/.node22}"
setup_conformance "$prefix"
build_mcp_zt
"$MCP_ZT" upstream --help >/dev/null 2>&1 ||
  fail "this mcp-zt has no 'upstream' command: there is no gateway to run the suite through"

# The CPU load: one process per busy core, each in a session of its own (setsid) so that
# stopping its process group also stops the workers stress-ng and stress fork.
load_tool=
if [ "$LOAD" != none ]; then
  load_tool="${LOAD_TOOL:-}"
  if [ -z "$load_tool" ]; then
    if command -v stress-ng >/dev/null; then
      load_tool=stress-ng
    elif command -v stress >/dev/null; then
      load_tool=stress
    elif [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null && need stress-ng; then
      load_tool=stress-ng
    else
      load_tool=yes
    fi
  fi
  case "$load_tool" in
    stress-ng | stress) need "$load_tool" ;;
    yes) ;;
    *) fail "LOAD_TOOL=$load_tool: stress-ng, stress or yes" ;;
  esac
  read -r -a cpus <<<"$(python3 -c 'import os; print(*sorted(os.sched_getaffinity(0)))')"
  [ "$LOAD" = all ] || cpus=("${cpus[0]}")
fi
LOAD_PIDS=()
start_load() {
  local cpu cmd pin=() sess=()
  [ "$LOAD" != none ] || return 0
  case "$load_tool" in
    stress-ng) cmd=(stress-ng --cpu 1 --quiet) ;;
    stress) cmd=(stress --cpu 1 --quiet) ;;
    yes) cmd=(yes) ;;
  esac
  command -v setsid >/dev/null && sess=(setsid)
  for cpu in "${cpus[@]}"; do
    pin=()
    command -v taskset >/dev/null && pin=(taskset -c "$cpu")
    "${sess[@]}" "${pin[@]}" "${cmd[@]}" >/dev/null 2>&1 &
    LOAD_PIDS+=("$!")
  done
  LOAD_STARTED=$SECONDS
  sleep 1
  for cpu in "${LOAD_PIDS[@]}"; do
    kill -0 "$cpu" 2>/dev/null || fail "the CPU load (${cmd[*]}) did not start"
  done
  echo "CPU load: LOAD=$LOAD, ${cmd[*]} $([ ${#pin[@]} = 0 ] && echo unpinned || echo pinned) on" \
    "core(s) ${cpus[*]} of $(nproc) (pids ${LOAD_PIDS[*]})"
}
LOAD_STARTED=
# load_cpu: the CPU seconds the load's processes used so far, and the seconds since it started.
load_cpu() {
  local pids="${LOAD_PIDS[*]}"
  ps -e -o pgid=,pid=,times= | awk -v pids=" $pids " -v wall=$((SECONDS - LOAD_STARTED)) '
    index(pids, " " $1 " ") || index(pids, " " $2 " ") { cpu += $3 }
    END { printf "%d s of CPU in %d s", cpu, wall }'
}
stop_load() {
  local pid
  for pid in "${LOAD_PIDS[@]}"; do
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  LOAD_PIDS=()
}

work="$(mktemp -d)"
REF_PID=
cleanup() {
  stop_bridge
  stop_server
  stop_load
  stop_ref
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

start_ref || fail "the reference server did not start"
home="$work/pki"
zt ca init
zt issue --role admin --name conformance
zt upstream add ref --url "$REF_URL" --prefix ""
grant "$home/policy.toml" admin '["tool:*", "prompt:*", "resource:*"]'

# ensure_ref ROUND: starts the reference server anew (and points the upstream at it) if it
# exited since the last run; its output is kept as ref-ROUND.err.
ensure_ref() {
  kill -0 "$REF_PID" 2>/dev/null && return 0
  cp "$work/ref.err" "$work/ref-$1.err" 2>/dev/null || true
  echo "the reference server exited before round $1 (its stderr: $work/ref-$1.err); started anew"
  start_ref || fail "the reference server did not start again"
  zt upstream remove ref
  zt upstream add ref --url "$REF_URL" --prefix ""
}

# one_run URL TRANSPORT ROUND REVISION: one run of the suite (run_suite, in a subshell: a run
# whose results do not add up is recorded as incomplete, not fatal); prints its counts and
# records it in runs.tsv, its failed checks in NAME.failures.
one_run() {
  local url="$1" transport="$2" round="$3" rev="$4" name line rc=0 status=complete started=$SECONDS
  name=$(printf 'run%02d-%s-%s' "$round" "$transport" "$rev")
  line=$(run_suite "$url" "$name" "$rev" 2>"$work/$name.err") || rc=$?
  [ "$rc" = 0 ] || status=incomplete
  python3 "$here/conformance_checks.py" --failures "$work/$name" 2>/dev/null |
    grep '^FAILURE ' >"$work/$name.failures" || true
  printf '%s\t%s\t%s\t%s\t%s\n' "$rev" "$transport" "$round" "$status" "$name" >>"$work/runs.tsv"
  printf 'run %*d/%d %-6s %s: %s, %d s, load average %s\n' "${#runs}" "$round" "$runs" \
    "$transport" "$rev" "${line#"$name": }" $((SECONDS - started)) "$(cut -d' ' -f1 /proc/loadavg)"
  if [ "$status" = incomplete ]; then
    echo "  incomplete: $(grep -h '^FAIL: ' "$work/$name.err" | head -n 1)"
  fi
  local n
  n=$(wc -l <"$work/$name.failures")
  if [ "$n" -gt 0 ] && [ "$n" -le 6 ]; then
    echo "  failed: $(sed 's/^FAILURE \([^:]*\):.*/\1/' "$work/$name.failures" | paste -sd' ')"
  fi
}

# no_run TRANSPORT ROUND WHY: a round in which serve or connect did not start.
no_run() {
  local rev
  for rev in "${revs[@]}"; do
    printf '%s\t%s\t%s\tnorun\t-\n' "$rev" "$1" "$2" >>"$work/runs.tsv"
    printf 'run %*d/%d %-6s %s: not run: %s\n' "${#runs}" "$2" "$runs" "$1" "$rev" "$3"
  done
}

echo "== conformance suite $conformance_suite_version (requirements ${revs[*]}), $runs runs per" \
  "transport (${transports[*]}): connect --listen -> mcp-zt serve -> upstream 'ref' $REF_URL"
: >"$work/runs.tsv"
start_load
for round in $(seq 1 "$runs"); do
  ensure_ref "$round"
  for transport in "${transports[@]}"; do
    if [ "$transport" = direct ]; then
      for rev in "${revs[@]}"; do one_run "$REF_URL" direct "$round" "$rev"; done
      continue
    fi
    logs="$work/$(printf 'run%02d-%s' "$round" "$transport")"
    mkdir -p "$logs"
    if ! start_server "$home" "$logs" --transport "$transport" >/dev/null 2>&1; then
      trap cleanup EXIT
      no_run "$transport" "$round" "serve did not start (see $logs/serve.err)"
      stop_server
      continue
    fi
    if ! start_bridge "$home" "$logs" conformance "https://localhost:$PORT/mcp" >/dev/null 2>&1; then
      trap cleanup EXIT
      no_run "$transport" "$round" "connect --listen did not start (see $logs/bridge.err)"
      stop_bridge
      stop_server
      continue
    fi
    trap cleanup EXIT
    for rev in "${revs[@]}"; do one_run "$BRIDGE_URL" "$transport" "$round" "$rev"; done
    stop_bridge
    stop_server
  done
done
[ "$LOAD" = none ] || echo "CPU load ($load_tool, LOAD=$LOAD): $(load_cpu)"
stop_load

# The table: every check that failed at least once, one row per transport (also those where it
# never failed), the flaky ones first. A run counts when it left results (complete or not).
python3 - "$work" "$runs" "${transports[*]}" <<'PY'
import collections, sys
work, runs, transports = sys.argv[1], int(sys.argv[2]), sys.argv[3].split()
ran = collections.Counter()  # (rev, transport) -> runs with results
incomplete, fails, first = [], collections.Counter(), {}
for line in open(f"{work}/runs.tsv"):
    rev, transport, rnd, status, name = line.rstrip("\n").split("\t")
    if status == "norun":
        continue
    ran[rev, transport] += 1
    if status == "incomplete":
        incomplete.append(f"{name} (see {work}/{name}.err)")
    seen = set()
    for failure in open(f"{work}/{name}.failures"):
        check, _, message = failure.removeprefix("FAILURE ").rstrip("\n").partition(": ")
        if check in seen:
            continue
        seen.add(check)
        fails[rev, check, transport] += 1
        first.setdefault((rev, check, transport), f"run {rnd}: {message}")
if not ran:
    print("no run of the suite left results", file=sys.stderr)
    sys.exit(1)
checks = sorted({(rev, check) for rev, check, _ in fails})
def kind(rev, check):
    counts = [(fails[rev, check, t], ran[rev, t]) for t in transports if ran[rev, t]]
    if any(0 < k < n for k, n in counts):
        return "flaky"
    return "always" if all(k == n for k, n in counts) else "by transport"
rows = []
for rev, check in sorted(checks, key=lambda rc: (kind(*rc) != "flaky", rc)):
    for t in transports:
        if ran[rev, t]:
            k = fails[rev, check, t]
            rows.append((rev, check, t, f"{k}/{ran[rev, t]}", kind(rev, check),
                         first.get((rev, check, t), "-")))
print()
if not rows:
    print(f"No check failed in any run ({runs} runs per transport).")
else:
    head = ("revision", "check", "transport", "failed", "kind", "first failure")
    width = [max(len(r[i]) for r in rows + [head]) for i in range(5)]
    print(f"Checks that failed at least once ({runs} runs per transport):")
    for r in [head] + rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, width)) + "  " + r[5])
if incomplete:
    print("\nIncomplete runs (the suite's results do not add up to its summary):")
    for name in incomplete:
        print(f"  {name}")
PY
echo
echo "conformance-stress: the results of every run are in $work"
