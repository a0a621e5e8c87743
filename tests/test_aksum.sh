#!/usr/bin/env bash
# test_aksum.sh: aksum end to end on a generated tree, compared with
# sha256sum: identical lines (escaped names too), sha256sum -c accepts them,
# aksum -c matches sha256sum -c (OK, FAILED, unreadable, improper lines),
# errors name the file and the rest goes on, --copy copies byte for byte and
# leaves no partial file (ENOSPC on a 1 MiB tmpfs when root), usage errors.
#
# Usage: tests/test_aksum.sh PATH/TO/aksum     (exit 77: io_uring unusable)
set -u

aksum="$(realpath "${1:?usage: test_aksum.sh PATH/TO/aksum}")"
work="$(mktemp -d "${TMPDIR:-/tmp}/ak-test-aksum.XXXXXX")"
mnt=""
cleanup() {
  [[ -n "$mnt" ]] && umount "$mnt" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT
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

# io_uring may be unusable here (sysctl, seccomp): that is a skip.
printf 'x' >probe
if ! "$aksum" probe >/dev/null 2>probe.err; then
  if grep -q 'io_uring' probe.err; then
    cat probe.err
    exit 77
  fi
fi

# ---- A tree: nested directories, assorted sizes, awkward names -------------
sizes=(0 1 100 4095 4096 4097 65536 100000 1048575 1048576 1048577 3000000)
mkdir -p tree/a/b/c tree/d tree/e/f
i=0
for dir in tree tree/a tree/a/b tree/a/b/c tree/d tree/e/f; do
  for s in "${sizes[@]}"; do
    i=$((i + 1))
    head -c "$s" /dev/urandom >"$dir/file-$i.bin"
  done
done
for k in $(seq 1 120); do head -c $((k * 997)) /dev/urandom >"tree/d/small-$k"; done
printf 'space' >'tree/e/with space'
printf 'backslash' >'tree/e/back\slash'
printf 'newline' >$'tree/e/new\nline'
printf 'cr' >$'tree/e/carriage\rreturn'
printf 'star' >'tree/e/*star'
count=$(find tree -type f -printf . | wc -c)

ref() { find "$@" -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum; }

# ---- Hashing: the same bytes as sha256sum ------------------------------------
"$aksum" -r tree >out.txt 2>err.txt
rc=$?
ref tree >ref.txt
check "aksum -r over $count files exits 0" test "$rc" -eq 0
check "aksum -r prints what sha256sum prints (escaped names too)" cmp -s out.txt ref.txt
check "sha256sum -c accepts aksum's lines" sha256sum -c --quiet out.txt
check "nothing on stderr for a clean run" test ! -s err.txt

"$aksum" -j 1 --chunk 4K --buffers 2 -r tree >out-small.txt
check "tiny chunks and two buffers give the same lines" cmp -s out-small.txt ref.txt
"$aksum" -j 3 --chunk 64K --buffers 64 -r tree/a tree/d >out-many.txt
ref tree/a >ref-many.txt
ref tree/d >>ref-many.txt
check "several trees, in argument order" cmp -s out-many.txt ref-many.txt

"$aksum" tree/a/file-19.bin tree/d/small-5 >out-files.txt
sha256sum tree/a/file-19.bin tree/d/small-5 >ref-files.txt
check "files given as arguments" cmp -s out-files.txt ref-files.txt

head -c 300000 /dev/urandom >stdin.bin
"$aksum" <stdin.bin >out-stdin.txt
sha256sum <stdin.bin >ref-stdin.txt
check "no PATH reads standard input" cmp -s out-stdin.txt ref-stdin.txt
cat stdin.bin | "$aksum" - >out-pipe.txt
check "- reads standard input from a pipe" cmp -s out-pipe.txt ref-stdin.txt

# ---- Errors: a message naming the file, the rest goes on, exit 1 -------------
"$aksum" tree/a tree/d/small-1 missing-file >out-err.txt 2>err-err.txt
rc=$?
check "a directory without -r and a missing file: exit 1" test "$rc" -eq 1
check "the directory is named" grep -q '^aksum: tree/a: Is a directory$' err-err.txt
check "the missing file is named" grep -q '^aksum: missing-file: No such file or directory$' err-err.txt
check "the good file is still hashed" cmp -s out-err.txt <(sha256sum tree/d/small-1)

# Run as nobody: that user must reach aksum (the build sits in the checkout)
# and the work dir. A checkout inside a private folder (a clone in a mktemp -d
# folder, mode 0700) is out of nobody's reach: skip, saying so.
as_nobody() { setpriv --reuid=65534 --regid=65534 --clear-groups "$@"; }
nobody_blocked=""
if [[ $EUID -eq 0 ]] && command -v setpriv >/dev/null; then
  chmod 755 "$work"
  if ! as_nobody test -x "$aksum"; then
    nobody_blocked="user nobody cannot reach $aksum (a folder above it is closed to others)"
  elif ! as_nobody test -x "$work"; then
    nobody_blocked="user nobody cannot reach the work dir $work"
  fi
fi
if [[ -n "$nobody_blocked" ]]; then
  printf 'ok - # SKIP unreadable files: %s\n' "$nobody_blocked"
elif [[ $EUID -eq 0 ]] && command -v setpriv >/dev/null; then
  mkdir -p perm && chmod 755 perm "$work"
  printf 'secret' >perm/locked && chmod 000 perm/locked
  printf 'open' >perm/open && chmod 644 perm/open
  as_nobody "$aksum" -r perm >out-perm.txt 2>err-perm.txt
  rc=$?
  check "an unreadable file: exit 1" test "$rc" -eq 1
  check "the unreadable file is named" grep -q '^aksum: perm/locked: Permission denied$' err-perm.txt
  check "the readable one is hashed" cmp -s out-perm.txt <(sha256sum perm/open)
else
  printf 'ok - # SKIP unreadable files (needs root to drop to another user)\n'
fi

# A file that vanishes between the walk and its turn: the reader of aksum's
# output deletes it when the first lines arrive, long before aksum reaches it.
mkdir -p vanish
for k in $(seq -w 1 300); do head -c 262144 /dev/urandom >"vanish/f$k"; done
"$aksum" -j 1 --buffers 2 -r vanish 2>err-van.txt | {
  IFS= read -r first
  rm -f vanish/f300
  printf '%s\n' "$first"
  cat
} >out-van.txt
rc=${PIPESTATUS[0]}
if grep -q 'vanish/f300$' out-van.txt; then
  printf 'ok - # SKIP vanishing file (aksum got to it before it was deleted)\n'
else
  check "a vanished file: exit 1" test "$rc" -eq 1
  check "the vanished file is named" grep -q '^aksum: vanish/f300: No such file or directory$' err-van.txt
  check "the others are hashed" test "$(wc -l <out-van.txt)" -eq 299
fi

# ---- -c: like sha256sum -c ------------------------------------------------------
"$aksum" -c ref.txt >chk.txt 2>chk-err.txt
rc=$?
sha256sum -c ref.txt >chk-ref.txt 2>/dev/null
check "aksum -c of a good list exits 0" test "$rc" -eq 0
check "aksum -c prints what sha256sum -c prints" cmp -s chk.txt chk-ref.txt

cp ref.txt bad.txt
printf 'not a checksum line\n' >>bad.txt
sed -i '1s/^\(.\)/0/' bad.txt  # first line: a wrong digest (or the same, 1 in 16)
printf 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855  gone-file\n' >>bad.txt
"$aksum" -c bad.txt >chk2.txt 2>chk2-err.txt
rc=$?
sha256sum -c bad.txt >chk2-ref.txt 2>chk2-ref-err.txt
check "aksum -c with failures exits 1" test "$rc" -eq 1
check "aksum -c failure lines match sha256sum -c" cmp -s chk2.txt chk2-ref.txt
check "aksum -c warnings match sha256sum -c" cmp -s chk2-err.txt <(sed 's/^sha256sum:/aksum:/' chk2-ref-err.txt)
"$aksum" -c - <ref.txt >chk3.txt
check "-c - reads the list from stdin" cmp -s chk3.txt chk-ref.txt
printf 'junk\n' >junk.txt
"$aksum" -c junk.txt >/dev/null 2>junk-err.txt
rc=$?
check "a list without checksum lines: exit 1" test "$rc" -eq 1
check "... and says so" grep -q 'no properly formatted checksum lines found' junk-err.txt

# ---- --copy: byte for byte, nothing partial --------------------------------------
"$aksum" -r --copy dest tree >out-copy.txt 2>err-copy.txt
rc=$?
check "--copy exits 0" test "$rc" -eq 0
check "--copy prints the same lines" cmp -s out-copy.txt ref.txt
check "the copy is byte-identical" diff -r tree dest/tree
check "no temporary names are left" test -z "$(find dest -name '.*.aksum-*')"
check "modes are kept" test "$(stat -c %a tree/d/small-3)" = "$(stat -c %a dest/tree/d/small-3)"
"$aksum" --copy dest2 "$work/tree/a/file-19.bin" >/dev/null
check "an absolute path is copied below DEST" cmp -s tree/a/file-19.bin "dest2$work/tree/a/file-19.bin"

if [[ $EUID -eq 0 ]]; then
  mnt="$work/small"
  mkdir -p "$mnt" && mount -t tmpfs -o size=1m tmpfs "$mnt"
  mkdir -p nospace
  head -c 100 /dev/urandom >nospace/a-small
  head -c 2500000 /dev/urandom >nospace/b-big
  head -c 100 /dev/urandom >nospace/c-small
  "$aksum" -r --copy "$mnt" nospace >out-ns.txt 2>err-ns.txt
  rc=$?
  check "ENOSPC while copying: exit 1" test "$rc" -eq 1
  check "ENOSPC names the file and the copy" \
    grep -q "^aksum: nospace/b-big: copy to $mnt/nospace/b-big: No space left on device$" err-ns.txt
  check "no partial copy under the final name" test ! -e "$mnt/nospace/b-big"
  check "no temporary file left" test -z "$(find "$mnt" -name '.*.aksum-*')"
  # The small files ran alongside: each is copied whole with its line
  # printed, or failed by name (the big one may have filled the disk then).
  small_ok=1
  for f in a-small c-small; do
    if grep -q " nospace/$f\$" out-ns.txt; then
      cmp -s "nospace/$f" "$mnt/nospace/$f" || small_ok=0
    else
      grep -q "^aksum: nospace/$f: copy to .*: No space left on device$" err-ns.txt || small_ok=0
      test ! -e "$mnt/nospace/$f" || small_ok=0
    fi
  done
  check "the other files are copied whole or failed by name" test "$small_ok" -eq 1
  rm nospace/b-big
  "$aksum" -r --copy "$mnt" nospace >/dev/null 2>&1
  check "with room again, the rest copies" diff -r nospace "$mnt/nospace"
  umount "$mnt" && mnt=""
else
  printf 'ok - # SKIP ENOSPC (needs root to mount a tmpfs)\n'
fi

# ---- --json, --hash, usage ---------------------------------------------------------
"$aksum" -r --json sum.json tree >/dev/null
check "--json writes a summary" grep -q "\"files\": $count," sum.json
if command -v python3 >/dev/null; then
  check "--json is valid JSON" python3 -c 'import json,sys; json.load(open(sys.argv[1]))' sum.json
fi
"$aksum" tree/a missing --json - >json-out.txt 2>/dev/null
check "--json - lists the failures" grep -q '"error": "ENOENT"' json-out.txt

if "$aksum" --hash xxh3 probe >xxh.txt 2>/dev/null; then
  check "xxh3: 16 hex digits" grep -Eq '^[0-9a-f]{16}  probe$' xxh.txt
  "$aksum" --hash xxh3 -c xxh.txt >/dev/null
  check "xxh3 lists check" test $? -eq 0
else
  "$aksum" --hash xxh3 probe >/dev/null 2>xxh-err.txt
  check "xxh3 unavailable is a usage error that says so" grep -q 'not available' xxh-err.txt
fi

for bad in "--bogus" "-j 0" "--hash md4" "--chunk 1" "-c ref.txt --copy d" "-c -z ref.txt" "-l 256" "-a blake2b -l 7"; do
  # shellcheck disable=SC2086
  "$aksum" $bad tree >/dev/null 2>&1
  rc=$?
  check "usage error ($bad) exits 2" test "$rc" -eq 2
done
"$aksum" --help >/dev/null
check "--help exits 0" test $? -eq 0

printf '1..%d\n' "$n"
if ((failures > 0)); then
  printf '%d of %d checks failed (work dir kept: %s)\n' "$failures" "$n" "$work"
  trap - EXIT
  exit 1
fi
exit 0
