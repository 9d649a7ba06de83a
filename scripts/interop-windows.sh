#!/usr/bin/env bash
# Interop with a Windows holder: mcp-zt.exe, cross-built here for x86_64-pc-windows-gnu and run
# under Wine, is the stdio bridge the official MCP Python SDK launches; through it the SDK lists
# the tools and calls whoami against the Linux server, then the certificate is revoked on the
# server and the next call through the Windows bridge must fail saying so. Also checks that
# `serve` on Windows refuses with its message instead of half-starting.
#
# Installs what it needs when missing and run as root: the rustup target, Debian's MinGW gcc
# (links the .exe and builds aws-lc-sys's C for Windows) and wine64. Wine 8 (Debian 12) lacks
# bcryptprimitives.dll, which Rust's std imports on Windows for its random numbers: when the
# .exe does not start for that reason, a stand-in DLL built here is put next to it (test only;
# Windows 10 and later have the real one).
#
# Time on 2 cores: the release cross-build takes 5-6 min from scratch and ~1 min after a change
# to mcp-zt alone. A debug build is no faster (dependencies are optimized in dev builds too) and
# makes a ~400 MB .exe instead of ~35 MB, so the script tests the release build, which is what
# holders get. Wine's first start in the fresh prefix ~10 s; the session itself ~3 s.
# MCP_ZT_WIN_EXE names an already built mcp-zt.exe instead of building one.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
# shellcheck source=lib.sh
. "$here/lib.sh"

target=x86_64-pc-windows-gnu
need python3
need x86_64-w64-mingw32-gcc gcc-mingw-w64-x86-64

# Debian puts the 64-bit loader outside PATH (/usr/lib/wine/wine64); `wine` picks it as well.
wine_loader() {
  local w
  for w in "$(command -v wine64 || true)" /usr/lib/wine/wine64 "$(command -v wine || true)"; do
    if [ -n "$w" ] && [ -x "$w" ]; then
      echo "$w"
      return 0
    fi
  done
  return 1
}
wine="$(wine_loader)" || {
  need wine64
  wine="$(wine_loader)" || fail "wine64 is installed but no Wine loader was found"
}
wineserver="$(dirname "$wine")/wineserver"
[ -x "$wineserver" ] || wineserver="$(command -v wineserver)" || fail "no wineserver next to $wine"

if ! rustup target list --installed 2>/dev/null | grep -qx "$target"; then
  command -v rustup >/dev/null || fail "rustup is required to add the Rust target $target"
  echo "adding the Rust target $target ..." >&2
  rustup target add "$target" >/dev/null
fi

build_mcp_zt
work="$(mktemp -d)"
home="$work/pki"
win="$work/win"
mkdir -p "$win"

if [ -n "${MCP_ZT_WIN_EXE:-}" ] && [ -f "$MCP_ZT_WIN_EXE" ]; then
  cp "$MCP_ZT_WIN_EXE" "$win/mcp-zt.exe"
else
  # The linker, MinGW's gcc, is named in .cargo/config.toml.
  started=$SECONDS
  (cd "$root" && cargo build --release --locked --quiet --target "$target")
  echo "cross-built mcp-zt.exe ($target, release) in $((SECONDS - started)) s"
  cp "${CARGO_TARGET_DIR:-$root/target}/$target/release/mcp-zt.exe" "$win/mcp-zt.exe"
fi

# A private prefix, and no Mono or Gecko installers at its first start.
export WINEPREFIX="$work/wineprefix" WINEDEBUG=-all WINEDLLOVERRIDES="mscoree,mshtml="
export WINELOADER="$wine"
stop_wine() {
  "$wineserver" -k 2>/dev/null || true
  rm -rf "$WINEPREFIX" "$win"
}
trap 'stop_wine; rm -rf "$work"' EXIT

# runexe ARGS...: mcp-zt.exe under Wine; stderr (Wine's messages included) to $work/wine.err.
runexe() {
  (cd "$win" && timeout 300 "$wine" mcp-zt.exe "$@") 2>"$work/wine.err"
}

# Stands in for Windows 10's bcryptprimitives.dll where Wine lacks it: Rust's std imports
# ProcessPrng from it; this one asks the system RNG through BCryptGenRandom.
prng_stand_in() {
  cat >"$win/prng.c" <<'C'
#include <windows.h>
#include <bcrypt.h>

__declspec(dllexport) BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T len)
{
    while (len > 0) {
        ULONG chunk = len > 0x40000000 ? 0x40000000 : (ULONG)len;
        if (BCryptGenRandom(NULL, data, chunk, BCRYPT_USE_SYSTEM_PREFERRED_RNG) != 0)
            return FALSE;
        data += chunk;
        len -= chunk;
    }
    return TRUE;
}
C
  x86_64-w64-mingw32-gcc -shared -O2 -s -o "$win/bcryptprimitives.dll" "$win/prng.c" -lbcrypt
}

started=$SECONDS
version="$(runexe --version)" || {
  WINEDEBUG=err+module runexe --version >/dev/null || true
  grep -q 'bcryptprimitives.dll.*not found' "$work/wine.err" || {
    cat "$work/wine.err" >&2
    fail "mcp-zt.exe does not start under $wine"
  }
  echo "this Wine has no bcryptprimitives.dll: using a stand-in built with MinGW"
  prng_stand_in
  version="$(runexe --version)" || {
    cat "$work/wine.err" >&2
    fail "mcp-zt.exe does not start under $wine, even with the bcryptprimitives.dll stand-in"
  }
}
version="${version%$'\r'}"
echo "$("$wine" --version 2>/dev/null) started $version in $((SECONDS - started)) s (with the prefix setup)"
linux_version="$("$MCP_ZT" --version)"
[ "$version" = "$linux_version" ] || fail "mcp-zt.exe says '$version', the Linux build '$linux_version'"

# serve is unix-only: on Windows it must refuse at once, saying why.
if runexe --home 'Z:\nowhere' serve >/dev/null; then
  fail "serve started on Windows"
fi
grep -q 'mcp-zt serve needs Linux or macOS' "$work/wine.err" || {
  cat "$work/wine.err" >&2
  fail "serve on Windows did not say why it refuses"
}
echo "windows: serve refuses (needs Linux or macOS)"

venv="${MCP_ZT_VENV:-$here/.venv}"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
"$venv/bin/python" -c 'import mcp, httpx2' 2>/dev/null ||
  "$venv/bin/pip" install --quiet --disable-pip-version-check 'mcp>=2.3,<3'

"$MCP_ZT" --home "$home" ca init >/dev/null 2>&1
"$MCP_ZT" --home "$home" issue --role editor --name wendy >/dev/null 2>&1
start_server "$home" "$work" || { stop_wine; exit 1; }
trap 'stop_server; stop_wine; rm -rf "$work"' EXIT

started=$SECONDS
# Bounded as a whole: a Wine that hangs must not hold up the run.
timeout 600 "$venv/bin/python" "$here/interop_python_windows.py" "$wine" "$win/mcp-zt.exe" \
  "$home/clients/wendy.crt" "$home/clients/wendy.key" "$home/ca.crt" \
  "https://localhost:$PORT/mcp" wendy editor "$MCP_ZT" "$home" "$work/bridge.err" || {
  echo "the Windows bridge's stderr (Wine's messages included):" >&2
  cat "$work/bridge.err" >&2
  fail "the MCP Python SDK through mcp-zt.exe connect"
}
echo "windows bridge session: $((SECONDS - started)) s"
echo "interop-windows: ok"
