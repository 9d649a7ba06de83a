#!/usr/bin/env bash
# The test command: formatting, lints, every test, and the interop scripts.
# Usage: scripts/test.sh        (from the repository root or anywhere)
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n== %s ==\n' "$*" >&2; }

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy (warnings denied)"
cargo clippy --all-targets --locked -- -D warnings

step "one crypto provider (no ring in the tree)"
if cargo tree --locked --target all -i ring 2>/dev/null | grep -q '^ring v'; then
  echo "ring is in the dependency tree; mcp-zt uses aws-lc-rs only:" >&2
  cargo tree --locked --target all -i ring >&2
  exit 1
fi

step "dependency advisories and licenses (xtask/, offline RustSec snapshot, dependency-policy.toml)"
# The advisory database is a folder of plain files beside the checkout (no git, no network);
# MCP_ZT_ADVISORY_DB points elsewhere (a relative path is taken from the repository root).
advisory_db="${MCP_ZT_ADVISORY_DB:-../shared/advisory-db}"
if [ ! -d "$advisory_db/crates" ]; then
  echo "no advisory database at $advisory_db: put a copy of rustsec/advisory-db there (plain" \
    "files are enough: crates/, rust/), or point MCP_ZT_ADVISORY_DB at one" >&2
  exit 1
fi
if [ -r "$advisory_db/SNAPSHOT" ]; then
  # "rustsec/advisory-db <commit> (<date>), <license>"
  read -r db_name db_commit db_date _ <"$advisory_db/SNAPSHOT" || true
  db_date="${db_date%,}" db_date="${db_date#(}" db_date="${db_date%)}"
  age=""
  if db_secs="$(date -u -d "$db_date" +%s 2>/dev/null)"; then
    age=", $(( ($(date -u +%s) - db_secs) / 86400 )) days old"
  fi
  echo "advisory database: $db_name $db_commit ($db_date$age)" >&2
else
  echo "advisory database: $advisory_db (no SNAPSHOT file: its commit and date are unknown)" >&2
fi
# Its own workspace and target dir; a debug build (about 25 s from scratch on 2 cores).
started=$SECONDS
xtask=(--locked --quiet --manifest-path xtask/Cargo.toml --target-dir "${CARGO_TARGET_DIR:-$PWD/target}/xtask")
cargo fmt --manifest-path xtask/Cargo.toml -- --check
cargo test "${xtask[@]}"
cargo run "${xtask[@]}" -- check --db "$advisory_db"
echo "dependency check: $((SECONDS - started)) s (xtask build and tests included)" >&2

step "cargo test"
cargo test --locked

step "cargo test --test integration, every serve on the native transport (MCP_ZT_TRANSPORT=native)"
# The same integration tests with `serve --transport native` wherever they start a server (the
# variable is serve's --transport; a test that names a transport keeps its own). First proof
# that serve takes it from the environment:
home_native="$(mktemp -d)"
bin_native="${CARGO_TARGET_DIR:-$PWD/target}/debug/mcp-zt"
"$bin_native" --home "$home_native" ca init >/dev/null 2>&1
MCP_ZT_TRANSPORT=native timeout 3 "$bin_native" --home "$home_native" serve --listen 127.0.0.1:0 \
  >/dev/null 2>"$home_native/serve.err" || true
grep -q "transport native" "$home_native/serve.err" || {
  cat "$home_native/serve.err" >&2
  echo "serve did not take MCP_ZT_TRANSPORT=native" >&2
  exit 1
}
rm -rf "$home_native"
MCP_ZT_TRANSPORT=native cargo test --locked --test integration

# The scripts use the binary `cargo test` just built (same features, no second build).
export MCP_ZT_BIN="${CARGO_TARGET_DIR:-$PWD/target}/debug/mcp-zt"

step "scripts/quickstart.sh (the README's first command, checked end to end with curl)"
log="$(mktemp)"
bash scripts/quickstart.sh >"$log" 2>&1 || {
  cat "$log" >&2
  exit 1
}
echo "quickstart: ok" >&2

step "scripts/quickstart-gateway.sh (the gateway quickstart, checked end to end with curl)"
bash scripts/quickstart-gateway.sh >"$log" 2>&1 || {
  cat "$log" >&2
  exit 1
}
echo "quickstart-gateway: ok" >&2

step "scripts/docs-check.sh (every runnable command block of the docs, links, docs/reference.md)"
bash scripts/docs-check.sh --bin "$MCP_ZT_BIN"

step "scripts/arch-check.sh (the invariants ARCHITECTURE.md claims)"
bash scripts/arch-check.sh

step "scripts/crash-test.sh 6 (short form: SIGKILL during issue/revoke bursts, then doctor)"
bash scripts/crash-test.sh 6 2>/dev/null

step "scripts/bench.sh smoke (the benchmark still works; figures are meaningless in debug)"
bash scripts/bench.sh smoke >/dev/null

step "scripts/soak.sh 10 16 (short form of the 120 s, 64-client soak)"
MCP_ZT_PROFILE=debug bash scripts/soak.sh 10 16

step "scripts/fleet-test.sh short (PostgreSQL ledger, 3 replicas behind HAProxy with PROXY v2)"
bash scripts/fleet-test.sh short

step "scripts/packaging-check.sh (systemd unit, man page, completions)"
bash scripts/packaging-check.sh

step "scripts/tls-scan.sh (sslyze with a client certificate, testssl.sh without)"
bash scripts/tls-scan.sh

for script in scripts/interop-*.sh; do
  [ -e "$script" ] || continue
  step "$script"
  bash "$script"
done
