#!/usr/bin/env bash
# Checks what the docs tell a reader to run (scripts/docs_check.py: every `sh` block is marked
# runnable or not, with a reason; the runnable ones run against the built binary in a throwaway
# folder and HOME), every relative link and `scripts/...` path, and that docs/reference.md is
# what the binary's own `mcp-zt man --markdown` prints (the reference is generated, not kept by
# hand: regenerate it with `mcp-zt man --markdown > docs/reference.md`).
#
# Usage: scripts/docs-check.sh [--bin MCP_ZT] [FILE.md ...]   (default: target/debug/mcp-zt,
#        built if missing; every doc: README.md, ARCHITECTURE.md, SECURITY.md, docs/*.md)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
bin=""
if [ "${1:-}" = --bin ]; then
  bin="$2"
  shift 2
fi
if [ -z "$bin" ]; then
  bin="$root/target/debug/mcp-zt"
  [ -x "$bin" ] || (cd "$root" && cargo build --quiet --bin mcp-zt)
fi
status=0
if [ "$#" -eq 0 ]; then
  if ! diff -u "$root/docs/reference.md" <("$bin" man --markdown) >/tmp/docs-reference.$$.diff; then
    echo "FAIL: docs/reference.md is not what 'mcp-zt man --markdown' prints; regenerate it:" >&2
    echo "  mcp-zt man --markdown > docs/reference.md" >&2
    head -40 /tmp/docs-reference.$$.diff >&2
    status=1
  else
    echo "ok: docs/reference.md is the binary's own reference"
  fi
  rm -f /tmp/docs-reference.$$.diff
fi
python3 "$here/docs_check.py" --bin "$bin" --root "$root" "$@" || status=1
exit "$status"
