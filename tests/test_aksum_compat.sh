#!/usr/bin/env bash
# test_aksum_compat.sh: aksum as a drop-in for the coreutils sha*sum family,
# compared with the real tools on this machine: every --hash choice (md5 ..
# blake2b) byte-identical to its tool with and without --tag, and through -c
# both ways; "aksum - -" reads stdin once; a closed stdin is EBADF, not a
# hang; -c lists with CRLF, leading blanks, blank lines, '#' comments and
# the BSD form; --strict/--status/--warn/--quiet/--ignore-missing give
# sha256sum's lines and exit codes.
#
# Usage: tests/test_aksum_compat.sh PATH/TO/aksum     (exit 77: io_uring unusable)
set -u

aksum="$(realpath "${1:?usage: test_aksum_compat.sh PATH/TO/aksum}")"
work="$(mktemp -d "${TMPDIR:-/tmp}/ak-test-aksum-compat.XXXXXX")"
trap 'rm -rf "$work"' EXIT
cd "$work" || exit 1

failures=0
n=0
ok() { n=$((n + 1)); printf 'ok %d - %s\n' "$n" "$1"; }
not_ok() { n=$((n + 1)); failures=$((failures + 1)); printf 'not ok %d - %s\n' "$n" "$1"; }
check() { # check DESCRIPTION COMMAND...
  local what="$1"
  shift
  if "$@"; then ok "$what"; else not_ok "$what"; fi
}
# Every wait is bounded: a hang is a failure, not a stuck test.
run() { timeout 60 "$aksum" "$@"; }

printf 'x' >probe
if ! "$aksum" probe >/dev/null 2>probe.err && grep -q 'io_uring' probe.err; then
  cat probe.err
  exit 77
fi

# ---- Files: assorted sizes and awkward names -------------------------------------
mkdir d
for s in 0 1 55 56 63 64 65 111 112 127 128 129 4096 1048575 1048577 2500000; do
  head -c "$s" /dev/urandom >"d/s$s"
done
printf 'back' >'d/back\slash'
printf 'nl' >$'d/new\nline'
printf 'cr' >$'d/carriage\rreturn'
printf 'sp' >'d/ space first'
mapfile -d '' files < <(find d -type f -print0 | LC_ALL=C sort -z)

# ---- 1. Each hash as its coreutils tool, with and without --tag, -c both ways ---
for algo in md5 sha1 sha224 sha256 sha384 sha512 blake2b; do
  tool="${algo}sum"
  [[ $algo == blake2b ]] && tool=b2sum
  for tag in "" --tag; do
    label="$algo${tag:+ $tag}"
    # shellcheck disable=SC2086
    run -a "$algo" $tag "${files[@]}" >"ak-$algo$tag.txt" 2>/dev/null
    # shellcheck disable=SC2086
    "$tool" $tag "${files[@]}" >"ref-$algo$tag.txt"
    check "$label: byte-identical to $tool" cmp -s "ak-$algo$tag.txt" "ref-$algo$tag.txt"
    check "$label: $tool -c accepts aksum's list" "$tool" -c --quiet "ak-$algo$tag.txt"
    run -a "$algo" -c "ref-$algo$tag.txt" >chk-ak.txt 2>&1
    rc=$?
    "$tool" -c "ref-$algo$tag.txt" >chk-ref.txt 2>&1
    check "$label: aksum -c accepts $tool's list, same lines, exit 0" \
      test "$rc" -eq 0 -a "$(cat chk-ak.txt)" = "$(cat chk-ref.txt)"
  done
  # A wrong digest is FAILED by both, exit 1 by both.
  sed '1s/^\(\\\{0,1\}\)./\10/; 1s/^\(\\\{0,1\}\)00/\11/' "ref-$algo.txt" >bad.txt
  run -a "$algo" -c bad.txt >bad-ak.txt 2>/dev/null
  rc=$?
  "$tool" -c bad.txt >bad-ref.txt 2>/dev/null
  rc_ref=$?
  check "$algo: a corrupted digest fails as $tool says ($rc_ref)" \
    test "$rc" -eq "$rc_ref" -a "$rc" -eq 1 -a "$(cat bad-ak.txt)" = "$(cat bad-ref.txt)"
done
run --hash sha256 d/s0 | grep -q '^e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855  d/s0$'
check "sha256 of nothing is the known constant (not only equal to the peer)" test $? -eq 0
run -a sha256 -c ref-md5.txt >/dev/null 2>wrong-algo.err
check "a list for another hash is improperly formatted, exit 1" \
  grep -q 'no properly formatted checksum lines found' wrong-algo.err

# ---- 1b. SHA-256/224 several files at once (SHA-NI lanes) -------------------------
# Where the CPU has SHA-NI, aksum hashes up to four files at once on a
# thread: files of every size around the block and chunk edges, read in
# 4 KiB chunks (a file's batch then ends mid-block and carries over), with
# one and two threads, must still print exactly what sha256sum/sha224sum
# print; and the same as libcrypto's path (AKSUM_TEST_NO_SHANI=1).
mkdir lanes
for s in 0 1 63 64 65 4095 4096 4097 8191 8192 12345 65536 100000 262143; do
  for copy in a b c; do
    head -c "$s" /dev/urandom >"lanes/$copy$s"
  done
done
mapfile -d '' lane_files < <(find lanes -type f -print0 | LC_ALL=C sort -z)
grep -qw sha_ni /proc/cpuinfo || echo "# no sha_ni in /proc/cpuinfo: the lanes below run on libcrypto"
for algo in sha256 sha224; do
  "${algo}sum" "${lane_files[@]}" >"lanes-ref-$algo.txt"
  for j in 1 2; do
    run -a "$algo" -j "$j" --chunk 4K --buffers 8 "${lane_files[@]}" >"lanes-ak.txt" 2>/dev/null
    check "$algo lanes, -j $j, 4 KiB chunks: byte-identical to ${algo}sum" \
      cmp -s lanes-ak.txt "lanes-ref-$algo.txt"
  done
  AKSUM_TEST_NO_SHANI=1 run -a "$algo" "${lane_files[@]}" >"lanes-evp.txt" 2>/dev/null
  check "$algo on libcrypto (AKSUM_TEST_NO_SHANI=1): byte-identical to ${algo}sum" \
    cmp -s lanes-evp.txt "lanes-ref-$algo.txt"
done

# ---- 2a. Standard input ----------------------------------------------------------
head -c 200000 /dev/urandom >in.bin
cat in.bin | run - - >twice.txt 2>&1
cat in.bin | sha256sum - - >twice-ref.txt
check "aksum - - from a pipe: the whole input, then the empty input" cmp -s twice.txt twice-ref.txt
run - - <in.bin >twice-file.txt 2>&1
sha256sum - - <in.bin >twice-file-ref.txt
check "aksum - - from a file: as sha256sum" cmp -s twice-file.txt twice-file-ref.txt
run d/s1 - d/s55 - <in.bin >mixed.txt 2>&1
sha256sum d/s1 - d/s55 - <in.bin >mixed-ref.txt
check "files between two - keep their order" cmp -s mixed.txt mixed-ref.txt

run - <&- >closed.txt 2>closed.err
rc=$?
check "- with stdin closed: exit 1 (not a hang: rc $rc)" test "$rc" -eq 1
check "- with stdin closed: EBADF names -" grep -q '^aksum: -: Bad file descriptor$' closed.err
check "- with stdin closed: no checksum line" test ! -s closed.txt
run d/s1 <&- >closed2.txt 2>&1
check "files with stdin closed still hash" cmp -s closed2.txt <(sha256sum d/s1)
run d/s1 >&- 2>closed-out.err
check "stdout closed: a write error, exit 1" test $? -eq 1
run d/s1 2>&- >/dev/null
check "stderr closed: still exit 0" test $? -eq 0

# ---- 2b. -c lists as sha256sum reads them ------------------------------------------
printf 'abc' >a
printf 'hello' >b
H=$(sha256sum a | cut -c1-64)
Hb=$(sha256sum b | cut -c1-64)
Z=0000000000000000000000000000000000000000000000000000000000000000
printf '%s  a\r\n\n  %s  b\n# a comment\n\t%s  a\n%s  b\n' "$H" "$Z" "$H" "$Hb" >crlf.lst
printf '%s  a\n  # not a comment\n' "$H" >improper.lst
printf '%s  a\n%s  missing\n' "$H" "$H" >missing.lst
printf '%s  missing\n' "$H" >allmissing.lst
printf '%s a\n%s\tb\n%s \tb\n%s *b\n' "$H" "$Hb" "$Hb" "$Hb" >bsd.lst
printf 'SHA256 (a) = %s\n  SHA256 (b) = %s\nSHA1 (a) = %s\n' "$H" "$Hb" "$H" >tag.lst
printf '%s  a\n%s  a\n' "$H" "$Z" >mismatch.lst
printf '  %s  b\n' "$H" >blanks-corrupt.lst
printf '%s  a\n' "$H" >good.lst
: >empty.lst

# sha256sum quotes odd names in its messages ('...', $'\t'); aksum prints
# them raw: compare stderr after removing that quoting.
unquote() { sed "s/^sha256sum: /aksum: /; s/\\\$'\\\\t'/\t/g; s/'//g" "$1"; }
for lst in crlf improper missing allmissing bsd tag mismatch blanks-corrupt good empty; do
  for o in "" --strict --warn --status --quiet --ignore-missing "--ignore-missing --status" \
    "--strict --quiet"; do
    # shellcheck disable=SC2086
    sha256sum -c $o "$lst.lst" >r.out 2>r.err
    rc_ref=$?
    # shellcheck disable=SC2086
    run -c $o "$lst.lst" >a.out 2>a.err
    rc=$?
    same=1
    [[ $rc -eq $rc_ref ]] || same=0
    cmp -s r.out a.out || same=0
    cmp -s <(unquote r.err) a.err || same=0
    check "-c $o $lst.lst: lines, messages and exit code ($rc_ref) as sha256sum" test $same -eq 1
  done
done
run -c blanks-corrupt.lst >bc.out 2>/dev/null
rc=$?
check "a corrupted file listed with leading blanks is FAILED, exit 1" \
  test "$rc" -eq 1 -a "$(cat bc.out)" = "b: FAILED"
run --strict -c <good.lst >stdin-list.out
check "-c with the list on stdin, options before -c" test $? -eq 0 -a "$(cat stdin-list.out)" = "a: OK"
run -c --warn - <improper.lst >/dev/null 2>warn.err
check "--warn names standard input and the line" \
  grep -q '^aksum: standard input: 2: improperly formatted SHA256 checksum line$' warn.err
run --status d/s1 >/dev/null 2>&1
check "--status without -c is a usage error (2)" test $? -eq 2

printf '1..%d\n' "$n"
if ((failures > 0)); then
  printf '%d of %d checks failed (work dir kept: %s)\n' "$failures" "$n" "$work"
  trap - EXIT
  exit 1
fi
exit 0
