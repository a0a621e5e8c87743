#!/usr/bin/env bash
# test_aksum_safety.sh: what aksum must never do to files and limits:
# copies (a second source for one destination fails, a copy onto its own
# source is refused, the mode is kept exactly whatever the umask, nothing
# but whole copies is left after SIGINT/SIGTERM/SIGHUP/SIGPIPE, an existing
# destination is replaced, each on both the O_TMPFILE path and the
# named-temporary fallback; a source that shrinks while copied never gives a
# copy longer than what was hashed);
# RLIMIT_NOFILE (ulimit -n 20 with 1000 files, a tree 300 levels deep under
# ulimit -n 12); --json that parses whatever bytes the names hold; a read
# aksum cannot make (AKSUM_TEST_FAIL_READ) fails its file without a hang.
#
# Usage: tests/test_aksum_safety.sh PATH/TO/aksum     (exit 77: io_uring unusable)
set -u

aksum="$(realpath "${1:?usage: test_aksum_safety.sh PATH/TO/aksum}")"
work="$(mktemp -d "${TMPDIR:-/tmp}/ak-test-aksum-safety.XXXXXX")"
bg=""
cleanup() {
  [[ -n "$bg" ]] && kill "$bg" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT
cd "$work" || exit 1

failures=0
n=0
ok() { n=$((n + 1)); printf 'ok %d - %s\n' "$n" "$1"; }
not_ok() { n=$((n + 1)); failures=$((failures + 1)); printf 'not ok %d - %s\n' "$n" "$1"; }
skip() { n=$((n + 1)); printf 'ok %d - # SKIP %s\n' "$n" "$1"; }
check() { # check DESCRIPTION COMMAND...
  local what="$1"
  shift
  if "$@"; then ok "$what"; else not_ok "$what"; fi
}
run() { timeout 120 "$aksum" "$@"; }

printf 'x' >probe
if ! "$aksum" probe >/dev/null 2>probe.err && grep -q 'io_uring' probe.err; then
  cat probe.err
  exit 77
fi

# ---- Copies: one destination, one source --------------------------------------------
mkdir -p src/sub
printf 'one' >src/sub/x
printf 'two' >src/y
run --copy out src/sub/x ./src/sub/x src/y >dup.out 2>dup.err
rc=$?
check "two sources for one destination: exit 1" test "$rc" -eq 1
check "... the second is named with the reason" \
  grep -q '^aksum: ./src/sub/x: copy to out/src/sub/x: another file of this run is copied there$' dup.err
check "... the first is copied, and the other file too" \
  test "$(cat out/src/sub/x)" = one -a "$(cat out/src/y)" = two
check "... only the copied files' lines are printed" test "$(wc -l <dup.out)" -eq 2

(cd src && run --copy . y >self.out 2>self.err)
rc=$?
check "a copy onto itself: exit 1" test "$rc" -eq 1
check "... refused by name, as cp refuses" \
  grep -q '^aksum: y: copy to ./y: source and destination are the same file$' src/self.err
check "... the source is intact" test "$(cat src/y)" = two
ln src/y src/y-link
mkdir -p lnk/src && ln src/y lnk/src/y
run --copy lnk src/y >/dev/null 2>link.err
check "a destination that is a hard link of the source is refused too" \
  grep -q 'same file' link.err
check "... and the file is intact" test "$(cat src/y)" = two

mkdir -p modes
for m in 600 604 640 644 700 711 750 755 777 400; do
  printf '%s' "$m" >"modes/m$m"
  chmod "$m" "modes/m$m"
done
(umask 077 && run -r --copy modecopy modes >/dev/null)
same=1
for f in modes/*; do
  [[ "$(stat -c %a "$f")" == "$(stat -c %a "modecopy/$f")" ]] || { same=0; echo "# $f: $(stat -c %a "$f") -> $(stat -c %a "modecopy/$f")"; }
done
check "modes kept exactly under umask 077 (600 .. 777)" test "$same" -eq 1
(umask 077 && AKSUM_TEST_NO_TMPFILE=1 run -r --copy modecopy-named modes >/dev/null)
same=1
for f in modes/*; do
  [[ "$(stat -c %a "$f")" == "$(stat -c %a "modecopy-named/$f")" ]] || same=0
done
check "... and by the named-temporary fallback (AKSUM_TEST_NO_TMPFILE)" test "$same" -eq 1
(umask 000 && run --copy modecopy2 modes/m600 >/dev/null)
check "... and under umask 000 (no wider than the source)" test "$(stat -c %a modecopy2/modes/m600)" = 600

# ---- Copies: nothing left behind on fatal signals -------------------------------------
# Many files copied in 4 KiB reads: slow enough to be caught mid-copy. Two
# paths: the normal one (each copy an unnamed O_TMPFILE file, linked to its
# name when complete: while it is written it shows in /proc/PID/fd as
# "DIR/#INODE (deleted)") and the fallback for filesystems without
# O_TMPFILE, forced here with AKSUM_TEST_NO_TMPFILE=1 (a hook read by
# aksum's copy.c for tests only), whose named temporaries ".NAME.aksum-*"
# the signal handler removes. The signal is sent once K copies are complete
# and another is being written (polled, bounded), with env --default-signal
# so a background job's SIGINT is not ignored. Each signal, 3 rounds, each
# path.
mkdir -p sig
for k in $(seq -w 1 300); do head -c 1048576 /dev/urandom >"sig/f$k"; done
temps_in() { find "$1" -name '.*.aksum-*' 2>/dev/null | wc -l; }
finals_in() { find "$1" -type f ! -name '.*' 2>/dev/null | wc -l; }
tmpfiles_open() { # O_TMPFILE copies open in process $1 under directory $2 (one find: cheap to poll)
  find "/proc/$1/fd" -lname "$work/$2/*#*(deleted)" 2>/dev/null | wc -l
}
for path in tmpfile named; do
  for sig in INT TERM HUP PIPE; do
    for round in 1 2 3; do
      d="dsig-$path-$sig-$round"
      rm -rf "$d"
      want=$((round * 4 - 3)) # complete copies before the signal: 1, 5, 9
      if [[ $path == named ]]; then hook=1; else hook=; fi
      AKSUM_TEST_NO_TMPFILE=$hook env --default-signal="SIG$sig" "$aksum" -j 1 --chunk 4K \
        --buffers 8 -r --copy "$d" sig >/dev/null 2>"$d.err" &
      bg=$!
      seen=0
      for _ in $(seq 1 1000); do # at most about 20 s
        if (($(finals_in "$d") >= want)); then
          if [[ $path == named ]]; then inflight=$(temps_in "$d"); else inflight=$(tmpfiles_open "$bg" "$d"); fi
          if ((inflight > 0)); then seen=1; break; fi
        fi
        kill -0 "$bg" 2>/dev/null || break
        sleep 0.02
      done
      if ((seen == 0)); then
        kill -s KILL "$bg" 2>/dev/null
        wait "$bg"
        bg=""
        not_ok "$path SIG$sig round $round: no copy caught in flight after $want complete ones"
        continue
      fi
      kill -s "$sig" "$bg"
      timeout 20 tail --pid="$bg" -f /dev/null
      wait "$bg"
      rc=$?
      bg=""
      num=$(kill -l "$sig")
      what="$path copies, SIG$sig mid-copy (round $round)"
      check "$what: the process dies of the signal (status $rc)" test "$rc" -eq $((128 + num))
      check "$what: no temporary file left" test "$(temps_in "$d")" -eq 0
      nfin=$(finals_in "$d")
      check "$what: some copies were unfinished ($nfin of 300 under final names)" \
        test "$nfin" -ge "$want" -a "$nfin" -lt 300
      bad=0 other=0
      while IFS= read -r -d '' f; do
        [[ -f "${f#"$d"/}" ]] || { other=1; echo "# not a copy: $f"; continue; }
        cmp -s "$f" "${f#"$d"/}" || { bad=1; echo "# partial under its final name: $f"; }
      done < <(find "$d" -type f -print0)
      check "$what: every final name holds a whole copy" test "$bad" -eq 0
      check "$what: no other name exists" test "$other" -eq 0
      rm -rf "$d"
    done
  done
done

# A reader that goes away: SIGPIPE from a real write into a closed pipe.
for path in tmpfile named; do
  if [[ $path == named ]]; then hook=1; else hook=; fi
  rm -rf dpipe
  AKSUM_TEST_NO_TMPFILE=$hook timeout 120 "$aksum" -j 1 --chunk 4K --buffers 8 -r --copy dpipe sig sig \
    2>/dev/null | head -c 1 >/dev/null
  rc=${PIPESTATUS[0]}
  check "$path copies, stdout closed by the reader: SIGPIPE (status $rc)" test "$rc" -eq 141
  check "... and no temporary file left" test "$(temps_in dpipe)" -eq 0
done

# ---- Copies: over an existing destination, both paths -------------------------------
printf 'new contents' >src/over
chmod 640 src/over
for path in tmpfile named; do
  if [[ $path == named ]]; then hook=1; else hook=; fi
  rm -rf "over-$path"
  mkdir -p "over-$path/src"
  printf 'old, longer contents that must go' >"over-$path/src/over"
  chmod 666 "over-$path/src/over"
  ln "over-$path/src/over" "over-$path/keep"
  AKSUM_TEST_NO_TMPFILE=$hook run --copy "over-$path" src/over >/dev/null 2>"over-$path.err"
  check "$path copy over an existing destination: exit 0" test $? -eq 0
  check "... the destination holds the new bytes" test "$(cat "over-$path/src/over")" = "new contents"
  check "... with the source's mode" test "$(stat -c %a "over-$path/src/over")" = 640
  check "... replaced (a new inode), not written into: a hard link to the old one keeps the old bytes" \
    test "$(cat "over-$path/keep")" = "old, longer contents that must go"
  check "... no temporary left" test "$(temps_in "over-$path")" -eq 0
  mkdir -p "over-$path/d/src/over"
  AKSUM_TEST_NO_TMPFILE=$hook run --copy "over-$path/d" src/over >/dev/null 2>"over-$path-dir.err"
  rc=$?
  check "$path copy onto a directory: exit 1, the copy named in the error" \
    test "$rc" -eq 1 -a -n "$(grep -F 'copy to over-'"$path"'/d/src/over' "over-$path-dir.err")"
  check "... the directory is left as it was, and no temporary" \
    test -d "over-$path/d/src/over" -a "$(find "over-$path/d" -mindepth 2 | wc -l)" -eq 1
done

# ---- Copies: a source that shrinks while it is read ----------------------------------
# 128 MiB read in 4 KiB chunks, cut to 3 MiB as soon as its copy exists. Out
# of order reads may complete past the new end: the copy must still be
# exactly what was hashed (the printed digest is the copy's), and a prefix of
# the original.
head -c $((128 << 20)) /dev/urandom >orig.bin
shrunk=0
for round in 1 2 3; do
  cp orig.bin shrink.bin
  rm -rf dshr
  "$aksum" -j 1 --chunk 4K --buffers 64 --copy dshr shrink.bin >shr.out 2>shr.err &
  bg=$!
  for _ in $(seq 1 500); do # the copy is open (an O_TMPFILE file), at most 5 s
    (($(tmpfiles_open "$bg" dshr) > 0)) && break
    sleep 0.01
  done
  truncate -s 3M shrink.bin
  timeout 60 tail --pid="$bg" -f /dev/null
  wait "$bg"
  rc=$?
  bg=""
  if [[ $rc -ne 0 || ! -f dshr/shrink.bin ]]; then
    not_ok "shrinking source (round $round): exit 0 with a copy (rc $rc: $(cat shr.err))"
    continue
  fi
  size=$(stat -c %s dshr/shrink.bin)
  ((size < 128 << 20)) && shrunk=$((shrunk + 1))
  check "shrinking source (round $round, copy $size bytes): the printed digest is the copy's" \
    test "$(cut -c1-64 shr.out)" = "$(sha256sum <dshr/shrink.bin | cut -c1-64)"
  check "shrinking source (round $round): the copy is a prefix of the original" \
    cmp -s dshr/shrink.bin <(head -c "$size" orig.bin)
done
if ((shrunk == 0)); then
  skip "shrinking source: the cut came after every copy had finished (no round shrank)"
fi
rm -f orig.bin shrink.bin dshr/shrink.bin

# ---- RLIMIT_NOFILE ---------------------------------------------------------------------
mkdir -p many
for k in $(seq 1 1000); do printf '%s' "$k" >"many/f$k"; done
find many -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum >many-ref.txt
(ulimit -n 20 && run -r many >many.out 2>many.err)
rc=$?
check "ulimit -n 20, 1000 files: exit 0" test "$rc" -eq 0
check "ulimit -n 20, 1000 files: every line as sha256sum's" cmp -s many.out many-ref.txt
check "ulimit -n 20: no EMFILE" test ! -s many.err
(ulimit -n 20 && run -r --copy manycopy many >/dev/null 2>manycp.err)
check "ulimit -n 20, 1000 files copied: exit 0, all copied" \
  test $? -eq 0 -a "$(find manycopy -type f | wc -l)" -eq 1000
(ulimit -n 20 && run -c many-ref.txt >/dev/null 2>&1)
check "ulimit -n 20, -c of 1000 files: exit 0" test $? -eq 0

p=deep
for _ in $(seq 1 300); do p="$p/d"; done
mkdir -p "$p"
printf 'bottom' >"$p/f"
printf 'top' >deep/g
(ulimit -n 12 && run -r deep >deep.out 2>deep.err)
rc=$?
check "a tree 300 levels deep under ulimit -n 12: exit 0" test "$rc" -eq 0
check "... both files hashed" test "$(wc -l <deep.out)" -eq 2

# ---- --json: whatever the names ------------------------------------------------------------
if command -v python3 >/dev/null; then
  names=($'bad\xff\xfeutf8' $'half\xe2\x82' 'q"uote' 'back\slash' $'tab\there' $'nl\nname' \
    $'del\x7f' $'ctl\x01' 'ünïcødé' $'\xed\xa0\x80surrogate' $'\xc0\xafoverlong')
  mkdir -p jdir
  for f in "${names[@]}"; do printf 'z' >"jdir/$f"; chmod 000 "jdir/$f"; done
  args=()
  for f in "${names[@]}"; do args+=("gone/$f"); done
  run --json j.json "${args[@]}" >/dev/null 2>&1
  check "--json with invalid UTF-8 and control bytes in names: python3 -m json.tool parses it" \
    python3 -m json.tool j.json /dev/null
  printf '%s\0' "${args[@]}" >names.bin
  check "... every name comes back byte for byte (surrogateescape)" python3 -c '
import json, os, sys
doc = json.load(open(sys.argv[1]))
want = open(sys.argv[2], "rb").read().split(b"\0")[:-1]
got = [os.fsencode(f["path"]) for f in doc["failures"]]
sys.exit(0 if got == want else 1)' j.json names.bin
  run -r --json - jdir >jout.txt 2>/dev/null
  # The checksum lines before it hold the raw names (as sha256sum's do).
  check "--json - after lines with odd names (readable or not): the JSON part parses" \
    python3 -c 'import json,sys; t=open(sys.argv[1],"rb").read(); json.loads(t[t.index(b"{\n"):])' jout.txt
else
  skip "--json checks need python3 (tools/bootstrap installs it)"
fi

# ---- A read that cannot be made (no memory) -----------------------------------------
# A file whose read fails to be made while nothing else of it is in flight
# (its first read: both opens are done by then) must still be finished:
# it once was not, and the progress timer kept aksum waiting for good
# (fault-aksum's hang at alloc N about 42..53). AKSUM_TEST_FAIL_READ=K fails
# aksum's K-th read as out of memory. Bounded: a hang is exit 124.
mkdir -p nomem/src
head -c 300000 /dev/urandom >nomem/src/big
head -c 5000 /dev/urandom >nomem/src/small
(cd nomem && AKSUM_TEST_FAIL_READ=1 timeout -k 5 20 "$aksum" --chunk 4K --buffers 4 -r --copy dst1 src/big \
  >one.out 2>one.err)
rc=$?
check "the only file's first read cannot be made: exit 1, no hang (exit $rc)" test "$rc" -eq 1
check "... the failure is named, the file has no line and no copy" \
  eval 'grep -q "src/big.*Cannot allocate memory" nomem/one.err && ! test -s nomem/one.out && ! test -e nomem/dst1/src/big'
bad=""
for k in 1 2 3 4 5 6 7 8; do
  (cd nomem && rm -rf dst && AKSUM_TEST_FAIL_READ=$k timeout -k 5 20 "$aksum" --chunk 4K --buffers 4 -r \
    --copy dst src >k.out 2>k.err)
  rc=$?
  ((rc == 0 || rc == 1)) || bad+=" K=$k:exit $rc"
  for f in big small; do
    if [[ -e nomem/dst/src/$f ]] && ! cmp -s nomem/src/$f nomem/dst/src/$f; then bad+=" K=$k:$f differs"; fi
  done
done
check "two files, each of the first 8 reads failing in turn: no hang, no copy that differs${bad}" \
  test -z "$bad"

printf '1..%d\n' "$n"
if ((failures > 0)); then
  printf '%d of %d checks failed (work dir kept: %s)\n' "$failures" "$n" "$work"
  trap - EXIT
  exit 1
fi
exit 0
