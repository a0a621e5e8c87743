#!/usr/bin/env bash
# test_install.sh: asynckit as its users meet it once installed.
#
#   A. This build, installed with `meson install --destdir`: the library
#      (shared and static), every public header, asynckit.pc under the
#      build's libdir (lib/x86_64-linux-gnu on Debian: the multiarch path
#      README's "Using it" gives), and akget, aksum, akprobe in bin/ when
#      the tools are built. The installed tools run (LD_LIBRARY_PATH, as
#      README says for a prefix without an rpath); the installed headers
#      compile as C99 -Wpedantic -Werror and as C++17; tests/install/
#      outside.c builds with pkg-config alone (PKG_CONFIG_SYSROOT_DIR for
#      the staged tree) and runs.
#   B. A fresh library-only build (-Dtests=false -Dtools=false
#      -Dexamples=false -Dmbedtls=disabled) installed into a temporary
#      --prefix, then outside.c built with PKG_CONFIG_PATH and an rpath,
#      as README's "Using it" tells, and linked statically from the same
#      .pc (pkg-config --static): both run. Skipped under the epoll and
#      sanitizer setups (AK_BACKEND set, b_sanitize): the plain run covers
#      it and it rebuilds the library.
#
# Usage: test_install.sh BUILD_DIR SOURCE_DIR
set -euo pipefail

build="$(cd "$1" && pwd)"
src="$(cd "$2" && pwd)"
work="$build/tests/install-test"
rm -rf "$work"
mkdir -p "$work"

fail() { printf 'test_install: FAIL: %s\n' "$*" >&2; exit 1; }
say() { printf 'test_install: %s\n' "$*"; }

cc="${CC:-cc}"
# An option's value in a meson build folder.
option() {
  meson introspect "$1" --buildoptions |
    python3 -c 'import json, sys; print(next(str(o["value"]).lower() for o in json.load(sys.stdin) if o["name"] == sys.argv[1]))' "$2"
}
prefix="$(option "$build" prefix)"
libdir="$(option "$build" libdir)"
tools="$(option "$build" tools)"
sanitize="$(option "$build" b_sanitize)"
version="$(meson introspect "$build" --projectinfo |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["version"])')"
say "prefix $prefix, libdir $libdir, version $version, tools $tools, b_sanitize $sanitize"

# ---- A. This build, staged -----------------------------------------------------
dest="$work/dest"
meson install -C "$build" --no-rebuild --quiet --destdir "$dest" >"$work/install.log" 2>&1 ||
  { cat "$work/install.log" >&2; fail "meson install --destdir failed"; }
root="$dest$prefix"
[[ "$libdir" == /* ]] && lib="$dest$libdir" || lib="$root/$libdir"
for f in "$lib/libasynckit.so" "$lib/libasynckit.so.0" "$lib/libasynckit.a" \
         "$lib/pkgconfig/asynckit.pc" "$root/include/asynckit.h"; do
  [[ -e "$f" ]] || fail "not installed: ${f#"$dest"}"
done
for h in "$src"/include/asynckit/*.h; do
  [[ -f "$root/include/asynckit/$(basename "$h")" ]] || fail "header not installed: $(basename "$h")"
done
if [[ "$tools" == true ]]; then
  for t in akget aksum akprobe; do
    [[ -x "$root/bin/$t" ]] || fail "not installed: bin/$t"
  done
  [[ ! -e "$root/bin/akbench" ]] || fail "akbench installed (it runs from the build only)"
  # Installed programs carry no build rpath: LD_LIBRARY_PATH finds the library.
  export_lib=(env "LD_LIBRARY_PATH=$lib")
  "${export_lib[@]}" "$root/bin/akprobe" >"$work/akprobe.out" 2>&1 ||
    { cat "$work/akprobe.out" >&2; fail "installed akprobe failed"; }
  printf 'asynckit\n' >"$work/hello.txt"
  got="$("${export_lib[@]}" "$root/bin/aksum" "$work/hello.txt")"
  [[ "$got" == "$(sha256sum "$work/hello.txt")" ]] || fail "installed aksum: '$got'"
  "${export_lib[@]}" "$root/bin/akget" --help >/dev/null || fail "installed akget --help"
  say "A: akget, aksum, akprobe installed in bin/ and run"
fi

# The installed headers, alone, in strict C99 and in C++17.
printf '#include <asynckit.h>\nint main(void) { return ak_version_string() == 0; }\n' >"$work/c99.c"
"$cc" -std=c99 -Wall -Wextra -Wpedantic -Werror -I"$root/include" -c "$work/c99.c" -o "$work/c99.o" ||
  fail "installed <asynckit.h> does not compile as C99 -Wpedantic -Werror"
if command -v c++ >/dev/null 2>&1; then
  cp "$work/c99.c" "$work/cxx.cc"
  c++ -std=c++17 -Wall -Wextra -Wpedantic -Werror -I"$root/include" -c "$work/cxx.cc" \
    -o "$work/cxx.o" || fail "installed <asynckit.h> does not compile as C++17"
fi

# pkg-config alone: the staged .pc still says prefix=$prefix, which the
# sysroot maps into the staged tree.
san=()
[[ "$sanitize" != none ]] && san=("-fsanitize=$sanitize")
(
  export PKG_CONFIG_PATH="$lib/pkgconfig" PKG_CONFIG_SYSROOT_DIR="$dest"
  [[ "$(pkg-config --modversion asynckit)" == "$version" ]] || fail "pkg-config --modversion"
  # shellcheck disable=SC2046
  "$cc" "${san[@]}" "$src/tests/install/outside.c" -o "$work/outside-staged" \
    $(pkg-config --cflags --libs asynckit) || fail "outside.c does not build from the staged .pc"
)
LD_LIBRARY_PATH="$lib" "$work/outside-staged" "$version" || fail "outside-staged did not run"
say "A: headers compile alone; outside.c built with pkg-config and run"

# ---- B. A fresh prefix, as README tells ----------------------------------------------------
if [[ -n "${AK_BACKEND:-}" || "$sanitize" != none ]]; then
  say "B skipped (AK_BACKEND or b_sanitize set: the plain run does it)"
  exit 0
fi
pfx="$work/prefix"
llhttp=()
[[ -n "$(option "$build" llhttp_dir)" ]] && llhttp=("-Dllhttp_dir=$(option "$build" llhttp_dir)")
meson setup "$work/b" "$src" --prefix "$pfx" -Dtests=false -Dtools=false -Dexamples=false \
  -Dmbedtls=disabled -Dllhttp_fetch=false "${llhttp[@]}" >"$work/setup.log" 2>&1 ||
  { cat "$work/setup.log" >&2; fail "meson setup --prefix failed"; }
ninja -C "$work/b" -j2 >"$work/ninja.log" 2>&1 || { tail -n 30 "$work/ninja.log" >&2; fail "build failed"; }
meson install -C "$work/b" --quiet >"$work/install-b.log" 2>&1 ||
  { cat "$work/install-b.log" >&2; fail "meson install --prefix failed"; }
[[ ! -e "$pfx/bin" ]] || fail "-Dtools=false installed programs: $(ls "$pfx/bin")"
plibdir="$(option "$work/b" libdir)"
export PKG_CONFIG_PATH="$pfx/$plibdir/pkgconfig"
[[ -f "$PKG_CONFIG_PATH/asynckit.pc" ]] || fail "no asynckit.pc in $PKG_CONFIG_PATH"
! grep -q -e "-lmbed" "$PKG_CONFIG_PATH/asynckit.pc" || fail "-Dmbedtls=disabled .pc still names mbedtls"
libpath="$(pkg-config --variable=libdir asynckit)"
# shellcheck disable=SC2046
"$cc" "$src/tests/install/outside.c" -o "$work/outside-rpath" $(pkg-config --cflags --libs asynckit) \
  -Wl,-rpath,"$libpath" || fail "outside.c does not build with PKG_CONFIG_PATH"
env -u LD_LIBRARY_PATH "$work/outside-rpath" "$version" || fail "outside-rpath did not run"
ldd "$work/outside-rpath" | grep -q "$libpath/libasynckit.so.0" ||
  fail "outside-rpath did not load the prefix's library"
# Static: the .pc's private requirements must be complete.
# shellcheck disable=SC2046
static_libs="$(pkg-config --static --libs asynckit | sed "s|-lasynckit|$libpath/libasynckit.a|")"
# shellcheck disable=SC2086
"$cc" "$src/tests/install/outside.c" -o "$work/outside-static" \
  $(pkg-config --cflags asynckit) $static_libs || fail "outside.c does not link statically"
"$work/outside-static" "$version" || fail "outside-static did not run"
say "B: prefix $pfx, PKG_CONFIG_PATH=$PKG_CONFIG_PATH; rpath and static builds run"
rm -rf "$work"
