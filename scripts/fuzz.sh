#!/usr/bin/env bash
# Runs every fuzz target for SECONDS (default 60) with cargo-fuzz (libFuzzer).
# Usage: scripts/fuzz.sh [SECONDS] [TARGET...]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
secs="${1:-60}"
shift || true
cd "$here/../fuzz"
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked --quiet
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(role_ext identity policy audit_line jsonrpc_ingress sse crl_loader uri_template)
export RUSTC_BOOTSTRAP=1
status=0
for t in "${targets[@]}"; do
  mkdir -p "corpus-work/$t"
  cp -n corpus/"$t"/* "corpus-work/$t/" 2>/dev/null || true
  log="$(mktemp)"
  if cargo fuzz run "$t" "corpus-work/$t" -- -max_total_time="$secs" -print_final_stats=1 >"$log" 2>&1; then
    runs=$(grep -m1 'stat::number_of_executed_units' "$log" | awk '{print $2}')
    echo "fuzz $t: ${secs}s, ${runs:-?} executions, no crash"
  else
    echo "fuzz $t: FAILED (see artifacts/$t)"
    tail -30 "$log"
    status=1
  fi
done
exit $status
