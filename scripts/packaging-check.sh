#!/usr/bin/env bash
# Packaging: the systemd unit passes `systemd-analyze verify` (with ExecStart pointing at the
# binary just built and the man page generated from the CLI definitions on MANPATH) and its
# sandbox exposure score is printed; the generated completions load in bash and the man page
# renders. Skips the systemd part, saying so, where systemd-analyze is missing.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=lib.sh
. "$here/lib.sh"

build_mcp_zt
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

mkdir -p "$work/man/man1"
"$MCP_ZT" man >"$work/man/man1/mcp-zt.1"
grep -q '^\.TH mcp-zt 1' "$work/man/man1/mcp-zt.1" || fail "mcp-zt man did not print a man page"
for cmd in serve revoke ledger completions; do
  grep -q "$cmd" "$work/man/man1/mcp-zt.1" || fail "the man page does not mention $cmd"
done
"$MCP_ZT" completions bash >"$work/mcp-zt.bash"
bash -c ". '$work/mcp-zt.bash' && complete -p mcp-zt" >/dev/null || fail "bash completions do not load"
for sh in zsh fish; do
  "$MCP_ZT" completions "$sh" | grep -q 'serve' || fail "$sh completions lack serve"
done
echo "ok: man page and bash/zsh/fish completions generated from the CLI" >&2

if ! command -v systemd-analyze >/dev/null; then
  echo "skip: systemd-analyze not installed" >&2
  exit 0
fi
unit="$work/mcp-zt.service"
sed "s#/usr/local/bin/mcp-zt#$MCP_ZT#" "$here/../packaging/mcp-zt.service" >"$unit"
if command -v man >/dev/null; then
  MANPATH="$work/man:" systemd-analyze verify "$unit" || fail "systemd-analyze verify"
else
  systemd-analyze verify --man=no "$unit" || fail "systemd-analyze verify"
fi
echo "ok: systemd-analyze verify packaging/mcp-zt.service" >&2
systemd-analyze security --offline=true "$unit" 2>/dev/null | tail -1 | sed 's/^/   /' >&2
