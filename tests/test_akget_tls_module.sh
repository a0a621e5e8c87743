#!/usr/bin/env bash
# test_akget_tls_module.sh: akget's TLS module (akget-tls.so, loaded at the
# first https request or checksum: src/tls/loader.c, docs/tls.md) against
# a nginx started here (tests/nginx_env.sh), http and https:
#  - a plain-http run maps no libssl, libcrypto, mbed TLS nor the module
#    (read in /proc/PID/maps while akget downloads a rate-limited file),
#    and an https run maps the module (so the check can see it); nor are
#    those libraries linked into akget (their strings are not in it);
#  - the module missing, not a shared object, from another build (its
#    build mark not the one akget was built with) or without a mark:
#    https fails with exit 5
#    (a TLS config error) and a message naming the path, the run's plain
#    URLs are still downloaded; --checksum fails and says why.
# Exit 77 (skip) when nginx is not installed.
#
# Usage: test_akget_tls_module.sh AKGET
set -euo pipefail
akget="$1"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$here/nginx_env.sh"
nginx_test_work akget-tls-module
fail() { printf 'FAIL: %s\n' "$*" >&2; exit 1; }

root="$work/root"
mkdir -p "$root/files"
head -c 100000 /dev/urandom >"$root/files/small.bin"
head -c $((4 << 20)) /dev/urandom >"$root/files/big.bin"
chmod -R a+rX "$root"
sh "$here/tls_certs.sh" "$work/pki" >/dev/null || fail "could not make test certificates"
chmod -R a+rX "$work/pki"
NGINX_TLS_DIR="$work/pki"
# /slow/: 4 MiB at 1 MB/s: akget runs for seconds, time to read its maps.
NGINX_EXTRA_LOCATIONS="location /slow/ { alias $root/files/; limit_rate 1m; }"
nginx_start "$work/state" "$root" || fail "nginx did not start"
base="http://127.0.0.1:$NGINX_PORT"
tbase="https://localhost:$NGINX_TLS_PORT"
libs='libssl|libcrypto|libmbed|akget-tls'

# maps_during NAME URL...: starts akget on the URLs into $work/NAME, waits
# (at most 10 s) until it has the output file open (O_TMPFILE: seen in
# /proc/PID/fd, not in the folder), that is until a response is being
# written, copies its maps to $work/NAME.maps, ends it.
maps_during() {
  local name="$1"; shift
  "$akget" -q --cacert "$work/pki/ca.pem" -d "$work/$name" "$@" 2>"$work/$name.err" &
  local pid=$! i
  for i in $(seq 200); do
    kill -0 "$pid" 2>/dev/null || break
    if ls -l "/proc/$pid/fd" 2>/dev/null | grep -q -F -- "-> $work/$name/"; then
      cp "/proc/$pid/maps" "$work/$name.maps" || true
      break
    fi
    sleep 0.05
  done
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  [[ -s "$work/$name.maps" ]] ||
    { cat "$work/$name.err" >&2; fail "$name: akget's maps not read while it wrote a response"; }
  grep -q 'akget' "$work/$name.maps" || fail "$name: those are not akget's maps"
}

maps_during plain "$base/slow/big.bin"
if grep -E "$libs" "$work/plain.maps" >&2; then
  fail "a plain-http run maps TLS libraries (above)"
fi
echo "plain http: no TLS library mapped"

maps_during tls "$tbase/slow/big.bin"
grep -q 'akget-tls' "$work/tls.maps" || fail "an https run has no akget-tls.so mapped"
echo "https: $(grep -o -E "[^/]*($libs)[^ ]*" "$work/tls.maps" | sort -u | tr '\n' ' ')"

# Nor are OpenSSL and mbed TLS linked into akget itself (maps would not
# show that): their source-file names and error texts, which survive
# stripping, are in the module only.
# A mark counts only where the module has it (an mbed TLS built without
# its error texts has not that one); OpenSSL's must be there.
marks=('ssl/ssl_lib.c' 'crypto/evp/digest.c' 'SSL - The requested feature is not available')
module="$(dirname "$akget")/akget-tls.so"
grep -a -q -F -- 'ssl/ssl_lib.c' "$module" || fail "the marks are not where the libraries are (module)"
for m in "${marks[@]}"; do
  if ! grep -a -q -F -- "$m" "$module"; then
    echo "mark \"$m\" not in the module: not looked for"
    continue
  fi
  ! grep -a -q -F -- "$m" "$akget" || fail "akget has \"$m\" in it: OpenSSL or mbed TLS linked in again"
done

# refused CASE DIR MODULE WORDS: with AKGET_TLS_MODULE=MODULE, an https
# URL and a plain one in one run: exit 5 (a TLS config error) with WORDS
# (grep -i) on stderr, the plain URL downloaded all the same, the https
# file absent.
refused() {
  local what="$1" dir="$2" module="$3" words="$4" rc=0
  AKGET_TLS_MODULE="$module" "$akget" -d "$dir" --cacert "$work/pki/ca.pem" \
    "$tbase/files/small.bin" "$base/files/big.bin" 2>"$dir.err" || rc=$?
  cat "$dir.err"
  [[ $rc == 5 ]] || fail "$what: exit $rc, want 5"
  grep -q -i -e "$words" "$dir.err" || fail "$what: the message lacks \"$words\""
  cmp -s "$root/files/big.bin" "$dir/big.bin" || fail "$what: the plain URL was not downloaded"
  [[ ! -e "$dir/small.bin" ]] || fail "$what: the https file exists"
}

# The module missing: the message names the path.
missing="$work/nowhere/akget-tls.so"
refused "module missing" "$work/m1" "$missing" "$missing"

# Not a shared object: the same, named, with dlopen's words.
head -c 4096 /dev/zero >"$work/bogus.so" # (not yes | head: SIGPIPE fails the script)
refused "bogus module" "$work/m2" "$work/bogus.so" "$work/bogus.so"
grep -q -i 'elf\|too short' "$work/m2.err" || fail "bogus module: dlerror's words are missing"

# A bare name (no slash): refused with a message, not looked up in the
# system's folders.
refused "bare module name" "$work/m2b" "akget-tls.so" "not a path"

# A module from another build: the same module with its build mark changed
# (so every structure's size agrees, as a stale module's may): refused by
# its mark, before its entry is called. And one without the mark (its
# exported name changed in the dynamic symbol table): refused too.
# (The mark is in the header the build wrote beside akget.)
mark=$(sed -n 's/^#define AK__TLS_MODULE_BUILD "\([0-9a-f]*\)"$/\1/p' \
  "$(dirname "$akget")/akget-tls-build.h")
[[ "$mark" =~ ^[0-9a-f]{32}$ ]] || fail "akget-tls-build.h names no mark"
python3 - "$module" "$work" "$mark" <<'PY' || fail "could not make the altered modules"
import sys
src, work, mark = sys.argv[1:]
data = open(src, "rb").read()
old = mark.encode()
assert data.count(old) == 1, "the mark is not in the module exactly once"
other = bytes(b"0123456789abcdef"[(b"0123456789abcdef".index(c) + 1) % 16] for c in old)
open(work + "/other.so", "wb").write(data.replace(old, other))
name = b"ak__tls_module_build\0"
assert data.count(name) >= 1, "the mark's symbol name is not in the module"
open(work + "/nomark.so", "wb").write(data.replace(name, b"ak__tls_module_bvild\0"))
PY
refused "module from another build" "$work/m2c" "$work/other.so" "is from another build"
grep -q -F "akget's ${mark:0:12}" "$work/m2c.err" || fail "another build: akget's mark not named"
# Under AddressSanitizer the module also exports ASan's __odr_asan.<name>
# for the mark, renamed with it, and now undefined: dlopen (RTLD_NOW)
# refuses the module itself, a refusal all the same.
nomark_words="has no build mark"
if grep -a -q -F "__odr_asan." "$module"; then
  nomark_words="has no build mark\|undefined symbol: __odr_asan.ak__tls_module_bvild"
fi
refused "module without a mark" "$work/m2d" "$work/nomark.so" "$nomark_words"

# --checksum without the module: the check fails (not a crash, not a pass)
# and says why.
sum=$(sha256sum "$root/files/small.bin" | cut -d' ' -f1)
rc=0
AKGET_TLS_MODULE="$missing" "$akget" -q -d "$work/m3" --checksum "sha-256=$sum" \
  "$base/files/small.bin" 2>"$work/m3.err" || rc=$?
cat "$work/m3.err"
[[ $rc != 0 ]] || fail "--checksum without the module passed"
grep -q "$missing" "$work/m3.err" || fail "--checksum without the module: the message does not name it"
# ... and with it, the same check passes (the digest comes from the module).
"$akget" -q -d "$work/m4" --checksum "sha-256=$sum" "$base/files/small.bin" ||
  fail "--checksum with the module: exit $?"

# A copy of akget with no module next to it and none installed: the message
# says where it looked.
installed=$(grep -a -o -m1 '/[[:graph:]]*/asynckit/akget-tls\.so' "$akget" | head -n1 || true)
if [[ -n "$installed" && ! -e "$installed" ]]; then
  mkdir -p "$work/bin"
  cp "$akget" "$work/bin/akget"
  rc=0
  "$work/bin/akget" -d "$work/m5" "$tbase/files/small.bin" 2>"$work/m5.err" || rc=$?
  cat "$work/m5.err"
  [[ $rc == 5 ]] || fail "no module beside nor installed: exit $rc, want 5"
  grep -q "akget-tls.so is not in $work/bin (akget's folder)" "$work/m5.err" ||
    fail "no module beside nor installed: the message does not say where it looked"
  grep -q "$installed" "$work/m5.err" || fail "the message does not name $installed"
else
  echo "installed module present (or path not found): the relocated-copy case skipped"
fi
echo "ok"
