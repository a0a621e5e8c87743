#!/usr/bin/env bash
# test_aksum_compat.sh: aksum as a drop-in for the coreutils sha*sum family,
# compared with the real tools on this machine: every --hash choice (md5 ..
# blake2b) byte-identical to its tool with and without --tag, and through -c
# both ways; "aksum - -" reads stdin once; a closed stdin is EBADF, not a
# hang; -c lists with CRLF, leading blanks, blank lines, '#' comments and
# the BSD form; --strict/--status/--warn/--quiet/--ignore-missing give
# sha256sum's lines and exit codes, the last of --status/--warn/--quiet
# wins; check-only options without -c; -z; b2sum's -l (every length, and
# -c of lists mixing lengths); several lists in one -c run, their lines and
# messages in sha256sum's order.
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

# ---- 2c. --status, --warn and --quiet: the last one wins --------------------------
# sha256sum turns the other two off with each; so does aksum.
printf '%s  a\n%s  a\nnot a line\n' "$H" "$Z" >order.lst
for o in "--status --warn" "--warn --status" "--quiet --warn" "--warn --quiet" \
  "--status --quiet" "--quiet --status" "--warn --status --quiet" "--status --quiet --warn" \
  "--strict --warn --status" "--status --warn --strict"; do
  # shellcheck disable=SC2086
  sha256sum -c $o order.lst >r.out 2>r.err
  rc_ref=$?
  # shellcheck disable=SC2086
  run -c $o order.lst >a.out 2>a.err
  rc=$?
  check "-c $o: the last of them wins, as sha256sum (lines, messages, exit $rc_ref)" \
    test "$rc" -eq "$rc_ref" -a "$(cat a.out)" = "$(cat r.out)" -a "$(cat a.err)" = "$(unquote r.err)"
done

# ---- 2d. Options that need -c, and ones -c refuses ----------------------------------
# The same complaint in sha256sum's words; the exit status is aksum's 2 for
# every usage error where sha256sum says 1 (docs/aksum.md: Exit status).
for o in --status --warn -w --strict --quiet --ignore-missing "--strict --status --warn" \
  "--quiet --ignore-missing" "-c --tag" "-c -z" "-c -z --tag"; do
  # shellcheck disable=SC2086
  sha256sum $o good.lst >/dev/null 2>r.err
  rc_ref=$?
  # shellcheck disable=SC2086
  run $o good.lst >a.out 2>a.err
  rc=$?
  check "'$o' without/with -c: sha256sum's complaint, exit 2 (sha256sum: $rc_ref), nothing on stdout" \
    test "$rc" -eq 2 -a "$rc_ref" -eq 1 -a ! -s a.out -a \
    "$(head -n1 a.err)" = "$(head -n1 r.err | sed 's/^sha256sum: /aksum: /')"
done

# ---- 3. -z / --zero ---------------------------------------------------------------------
# NUL after each line and names as they are (no escaping), with and without --tag.
for algo in md5 sha256 sha512 blake2b; do
  tool="${algo}sum"
  [[ $algo == blake2b ]] && tool=b2sum
  for tag in "" --tag; do
    # shellcheck disable=SC2086
    run -a "$algo" -z $tag "${files[@]}" >z-ak.bin 2>/dev/null
    # shellcheck disable=SC2086
    "$tool" -z $tag "${files[@]}" >z-ref.bin
    check "-z $algo${tag:+ $tag}: byte-identical to $tool -z (names with \\n, \\r, \\\\ unescaped)" \
      cmp -s z-ak.bin z-ref.bin
  done
done
run -z d/s1 missing d/s55 >z-err.bin 2>z-err.txt
rc=$?
sha256sum -z d/s1 missing d/s55 >z-err-ref.bin 2>/dev/null
check "-z with a missing file: the other records as sha256sum's, exit 1" \
  test "$rc" -eq 1 -a "$(od -c z-err.bin)" = "$(od -c z-err-ref.bin)"

# ---- 4. -l / --length (BLAKE2b) -----------------------------------------------------------
# Every length b2sum takes, on files around BLAKE2b's 128-byte block and
# aksum's chunk edges; and the 512-bit default both ways (-l 0 and 512).
mkdir b2
for s in 0 1 127 128 129 255 256 1048576 1048577; do
  head -c "$s" /dev/urandom >"b2/s$s"
done
mapfile -d '' b2_files < <(find b2 -type f -print0 | LC_ALL=C sort -z)
bad_lengths=""
for ((bits = 8; bits <= 512; bits += 8)); do
  run -a blake2b -l "$bits" "${b2_files[@]}" >l-ak.txt 2>/dev/null
  b2sum -l "$bits" "${b2_files[@]}" >l-ref.txt
  cmp -s l-ak.txt l-ref.txt || bad_lengths+=" $bits"
done
check "-l 8 .. 512 (all 64 lengths): byte-identical to b2sum -l (wrong:${bad_lengths:- none})" \
  test -z "$bad_lengths"
for l in 0 512; do
  run -a blake2b -l "$l" "${b2_files[@]}" >l-ak.txt 2>/dev/null
  check "-l $l is the 512-bit BLAKE2b, as b2sum without -l" cmp -s l-ak.txt <(b2sum "${b2_files[@]}")
done
for l in 8 160 256 504; do
  for tag in --tag -z "--tag -z"; do
    # shellcheck disable=SC2086
    run -a blake2b -l "$l" $tag "${files[@]}" >l-ak.bin 2>/dev/null
    # shellcheck disable=SC2086
    b2sum -l "$l" $tag "${files[@]}" >l-ref.bin
    check "-l $l $tag: byte-identical to b2sum (BLAKE2b-$l in the tag)" cmp -s l-ak.bin l-ref.bin
  done
done
# Checking: each line says its own length (b2sum ignores -l with -c), in a
# list that mixes lengths and forms.
{
  b2sum -l 8 "${b2_files[@]}"
  b2sum -l 256 --tag "${b2_files[@]}"
  b2sum "${b2_files[@]}"
  b2sum -l 504 "${files[@]}"
} >b2mix.lst
for o in "" "-l 128" --quiet; do
  # shellcheck disable=SC2086
  b2sum -c $o b2mix.lst >r.out 2>r.err
  rc_ref=$?
  # shellcheck disable=SC2086
  run -a blake2b -c $o b2mix.lst >a.out 2>a.err
  rc=$?
  check "-c $o of a list mixing 8, 256 (tagged), 512 and 504 bits: as b2sum -c (exit $rc_ref)" \
    test "$rc" -eq "$rc_ref" -a "$rc" -eq 0 -a "$(cat a.out)" = "$(cat r.out)"
done
run -a blake2b -l 256 "${b2_files[@]}" >ak256.lst 2>/dev/null
check "b2sum -c accepts aksum -l 256's list" b2sum -c --quiet ak256.lst
# Lines b2sum refuses or fails: a tag's length that is not the digest's, a
# tag without length (512) on a short digest, odd lengths, 0, 520, a
# length written "0x8", " 8", "+8" (taken), "008" and "-8" (not), a digest
# of 62 hex digits (248 bits: taken, and FAILED).
A256=$(b2sum -l 256 a | cut -d' ' -f1)
A512=$(b2sum a | cut -d' ' -f1)
A8=$(b2sum -l 8 a | cut -d' ' -f1)
{
  printf 'BLAKE2b-256 (a) = %s\n' "$A512"
  printf 'BLAKE2b (a) = %s\n' "$A256"
  printf 'BLAKE2b-7 (a) = %s\nBLAKE2b-0 (a) = %s\nBLAKE2b-520 (a) = %s\n' "$A8" "$A8" "$A8"
  printf 'BLAKE2b-0x8 (a) = %s\nBLAKE2b- 8 (a) = %s\nBLAKE2b-+8 (a) = %s\n' "$A8" "$A8" "$A8"
  printf 'BLAKE2b-008 (a) = %s\nBLAKE2b--8 (a) = %s\nBLAKE2b-8(a) =%s\n' "$A8" "$A8" "$A8"
  printf '6  a\n%s00  a\n%s  a\n%s  a\n' "$A512" "${A256:0:62}" "${A8^^}"
  printf 'BLAKE2b-99999999999999999999999 (a) = %s\n' "$A512"
} >b2edge.lst
b2sum -c --warn b2edge.lst >r.out 2>r.err
rc_ref=$?
run -a blake2b -c --warn b2edge.lst >a.out 2>a.err
rc=$?
check "-c --warn of BLAKE2b lines b2sum takes or refuses: same lines, messages, exit ($rc_ref)" \
  test "$rc" -eq "$rc_ref" -a "$(cat a.out)" = "$(cat r.out)" -a \
  "$(cat a.err)" = "$(sed 's/^b2sum: /aksum: /' r.err)"
for l in 7 520 -8 abc 1e ""; do
  LC_ALL=C b2sum -l "$l" a >/dev/null 2>r.err
  run -a blake2b -l "$l" a >a.out 2>a.err
  rc=$?
  check "-l '$l': b2sum's complaint, exit 2, no line" \
    test "$rc" -eq 2 -a ! -s a.out -a "$(cat a.err)" = "$(sed 's/^b2sum: /aksum: /' r.err)"
done
run -l 256 a >/dev/null 2>l-sha.err
check "-l without -a blake2b is a usage error (2)" test $? -eq 2

# ---- 5. Several lists in one -c run ----------------------------------------------------------
# Each list in its turn: its lines, then its warnings (or its error: cannot
# be read, no checksum line), then the next list's; the exit status fails
# if any list fails. Compared with sha256sum's stdout and stderr, and both
# through one pipe (2>&1), where the order of messages and lines shows.
for args in "good.lst mismatch.lst" "mismatch.lst missing.lst allmissing.lst good.lst" \
  "--warn improper.lst crlf.lst improper.lst" "--ignore-missing allmissing.lst good.lst" \
  "--ignore-missing good.lst allmissing.lst" "--strict improper.lst good.lst" \
  "good.lst nolist good.lst" "empty.lst good.lst" "--status mismatch.lst good.lst" \
  "--quiet missing.lst mismatch.lst good.lst" "good.lst - good.lst" "good.lst - -" \
  "good.lst ." "--warn --strict blanks-corrupt.lst order.lst tag.lst"; do
  # shellcheck disable=SC2086
  sha256sum -c $args <mismatch.lst >r.out 2>r.err
  rc_ref=$?
  # shellcheck disable=SC2086
  run -c $args <mismatch.lst >a.out 2>a.err
  rc=$?
  # shellcheck disable=SC2086
  sha256sum -c $args <mismatch.lst >r.both 2>&1
  # shellcheck disable=SC2086
  run -c $args <mismatch.lst >a.both 2>&1
  same=1
  [[ $rc -eq $rc_ref ]] || same=0
  cmp -s r.out a.out || same=0
  cmp -s <(unquote r.err) a.err || same=0
  cmp -s <(unquote r.both) a.both || same=0
  check "-c $args: lines, messages, their order and exit ($rc_ref) as sha256sum" test $same -eq 1
done
# One departure, on purpose: sha256sum fixes the GNU or BSD form of untagged
# lines by the first line of the whole run, so a BSD list after a GNU one
# is all improper lines (and the other way, names gain a leading blank);
# aksum fixes it per list, so each list reads as it does alone.
run -c bsd.lst >alone.out 2>&1
run -c good.lst bsd.lst >after.out 2>&1
check "a BSD-form list after a GNU-form one reads as it does alone" \
  test "$(tail -n +2 after.out)" = "$(cat alone.out)" -a "$(head -n1 after.out)" = "a: OK"

printf '1..%d\n' "$n"
if ((failures > 0)); then
  printf '%d of %d checks failed (work dir kept: %s)\n' "$failures" "$n" "$work"
  trap - EXIT
  exit 1
fi
exit 0
