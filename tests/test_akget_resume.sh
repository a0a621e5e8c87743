#!/usr/bin/env bash
# test_akget_resume.sh: akget -c never leaves a wrong byte on disk. Against
# a private nginx (tests/nginx_env.sh) and httpbad: downloads interrupted
# by SIGTERM and SIGKILL at several points with -s 1, 4 and 32, resumed
# with the same and another -s; files changed on the server between two
# runs (ETag, Last-Modified, size); a server without validators, one that
# answers a Range with a 200, one whose 206 is not the range asked; ENOSPC
# in the middle of a segment (a small tmpfs, as root); a control record
# truncated, garbage, of another URL, or listing more than the part file
# holds; part files without a record. Every run that exits 0 must leave the
# served file byte for byte; every other must leave nothing under the
# final name. Exit 77 (skip) without nginx.
#
# Usage: test_akget_resume.sh AKGET HTTPBAD
set -euo pipefail
akget="$1" httpbad="$2"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$here/nginx_env.sh"
source "$here/httpbad_env.sh"
work="$(mktemp -d "${TMPDIR:-/tmp}/ak-akget-resume.XXXXXX")"
chmod 755 "$work" # nginx's worker (nobody, when run as root) walks into it
small_mounted=0
cleanup() {
  set +e
  nginx_stop
  httpbad_stop
  ((small_mounted)) && umount "$work/small"
  rm -rf "$work"
}
trap cleanup EXIT
# AKGET_TEST_KEEP_GOING=1: report every failure and go on (to see which
# cases an older akget fails), exit 1 at the end.
failures=0
fail() {
  printf 'FAIL: %s\n' "$*" >&2
  [[ -n "${AKGET_TEST_KEEP_GOING:-}" ]] || exit 1
  failures=$((failures + 1))
}

[[ -n "$(nginx_bin)" ]] || { echo "nginx not installed: skipped"; exit 77; }

root="$work/root"
mkdir -p "$root/files" "$root/nl"
size=$((64 << 20))
head -c "$size" /dev/urandom >"$root/files/big.bin"
chmod -R a+rX "$root"
# The If-Range each request carried, last on each log line; /nl/ serves
# without ETag (Last-Modified only).
NGINX_LOG_EXTRA='"$http_if_range"'
NGINX_EXTRA_LOCATIONS='location /nl/ { etag off; }'
nginx_start "$work/state" "$root" || fail "nginx did not start"
base="http://127.0.0.1:$NGINX_PORT"
log="$work/state/access.log"

httpbad_start "$httpbad" "$work" || fail "httpbad did not start"
hb="$HTTPBAD_URL"

# Runs akget (with its arguments, -o among them) in the background,
# rate-limited so that the signal lands mid-download, and kills it with SIG
# SECONDS after its part file appeared (a slow start, as under ASan, does
# not move the point).
interrupt() {
  local sig="$1" after="$2" out="" prev=""
  shift 2
  for a in "$@"; do [[ "$prev" == -o ]] && out="$a"; prev="$a"; done
  "$akget" -q --limit-rate 16M "$@" & local pid=$!
  for _ in $(seq 100); do [[ -e "$out.akget-part" ]] && break; sleep 0.05; done
  sleep "$after"
  kill "-$sig" "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  sleep 0.3 # nginx logs the cut request once it sees the close
}
# Body bytes nginx sent since the log was last emptied.
sent() { awk '{ n += $5 } END { print n + 0 }' "$log"; }
# Runs akget -c to the end: exit 0 and the file byte-exact, or fail.
must_finish() {
  local want="$1" out="$2" what="$3"
  shift 3
  local rc=0
  timeout 60 "$akget" -v -c "$@" 2>"$work/last.err" || rc=$?
  ((rc == 0)) || { cat "$work/last.err" >&2; fail "$what: exit $rc"; }
  cmp -s "$want" "$out" || { cat "$work/last.err" >&2; fail "$what: the file differs from the server's"; }
  [[ ! -e "$out.akget-part" && ! -e "$out.akget-part.ctl" ]] || fail "$what: part file or record left"
}

# ---- interrupted and resumed: -s 1, 4, 32, the same and another -s -----------------
etag=$(curl -sI "$base/files/big.bin" | tr -d '\r' | sed -n 's/^[Ee][Tt]ag: //p')
[[ -n "$etag" ]] || fail "nginx sent no ETag"
inner="${etag//\"/}"
cases=(
  "TERM 1 0.2 1" "KILL 1 1.5 4" "KILL 4 0.6 4" "TERM 4 1.5 32" "KILL 4 1.5 1"
  "TERM 32 0.9 32" "KILL 32 1.5 4" "KILL 32 1.5 1"
)
n=0
for c in "${cases[@]}"; do
  read -r sig s1 t s2 <<<"$c"
  n=$((n + 1))
  out="$work/int$n/big.bin"
  mkdir -p "$work/int$n"
  interrupt "$sig" "$t" -c -s "$s1" --all-segments -x 32 --min-segment 1M -o "$out" "$base/files/big.bin"
  [[ -e "$out.akget-part" ]] || fail "case $c: no part file after the $sig"
  : >"$log"
  must_finish "$root/files/big.bin" "$out" "SIG$sig after ${t}s at -s $s1, resumed at -s $s2" \
    -s "$s2" -x 32 --min-segment 1M -o "$out" "$base/files/big.bin"
  got=$(sent)
  # The record was used: killed after 1.5 s (three checkpoints), less than
  # the whole file is fetched again.
  if [[ "$t" == 1.5 ]]; then
    ((got < size)) || fail "case $c: $got bytes fetched again, the record was not used"
  fi
  # Every Range of the resume carried If-Range with the ETag (nginx logs
  # its quotes as \x22).
  if grep ' 206 ' "$log" | grep -qvF "\x22${inner}\x22\""; then
    grep ' 206 ' "$log" >&2
    fail "case $c: a Range without If-Range $etag"
  fi
  echo "SIG$sig after ${t}s at -s $s1, resumed at -s $s2: byte-exact, $got bytes fetched again (${SECONDS}s)"
done
# Interrupted twice with different -s, then finished with a third.
out="$work/twice/big.bin"
mkdir -p "$work/twice"
interrupt KILL 0.8 -c -s 4 --all-segments -x 32 --min-segment 1M -o "$out" "$base/files/big.bin"
interrupt TERM 0.7 -c -s 32 --all-segments -x 32 --min-segment 1M -o "$out" "$base/files/big.bin"
interrupt KILL 0.5 -c -s 7 -x 32 --min-segment 1M -o "$out" "$base/files/big.bin"
must_finish "$root/files/big.bin" "$out" "three interruptions (-s 4, 32, 7), then -s 1" \
  -o "$out" "$base/files/big.bin"
echo "three interruptions, then -s 1: byte-exact"

# ---- the file changes on the server between two runs -------------------------------------
# changed PATH NEWSIZE WHAT: a -s 4 run killed, the file replaced (a new
# mtime), and the resume must start over and end byte-exact.
changed() {
  local path="$1" newsize="$2" what="$3" word="$4"
  local f="$root/$path" out="$work/chg-$what/file"
  mkdir -p "$work/chg-$what"
  head -c "$size" /dev/urandom >"$f"
  touch -d "@$(($(date +%s) - 100))" "$f"
  chmod a+r "$f"
  interrupt KILL 1.2 -c -s 4 --all-segments --min-segment 1M -o "$out" "$base/$path"
  [[ -s "$out.akget-part.ctl" ]] || fail "changed $what: no record after the first run"
  head -c "$newsize" /dev/urandom >"$f.new"
  touch -d "@$(($(date +%s) - 50))" "$f.new"
  chmod a+r "$f.new"
  mv "$f.new" "$f"
  must_finish "$f" "$out" "changed $what" -s 4 --min-segment 1M -o "$out" "$base/$path"
  grep -q "start over.*$word" "$work/last.err" || { cat "$work/last.err" >&2; fail "changed $what: not said"; }
  echo "changed $what: started over, byte-exact (${SECONDS}s)"
}
changed files/chg1.bin "$size" etag ETag
changed nl/chg2.bin "$size" last-modified Last-Modified
changed files/chg3.bin $((size - 12345)) size size

# ---- httpbad: no validators, a 200 to a Range, a 206 of another range --------------------
m=$((8 << 20))
"$akget" -q -o "$work/mref" "$hb/file/$m" || fail "reference download from httpbad"
# bad_first SEGMENTS: the first run of /m/N gets half its answer, then a stall.
bad_first() {
  curl -sf "$hb/setmode/stall" >/dev/null || fail "setmode stall"
  interrupt KILL 1.5 -c -s "$1" --min-segment 1M -o "$2" "$hb/m/$m"
}
mkdir -p "$work/hb"
bad_first 1 "$work/hb/none"
curl -sf "$hb/setmode/ok" >/dev/null
must_finish "$work/mref" "$work/hb/none" "no validators" -o "$work/hb/none" "$hb/m/$m"
grep -q "could not be checked" "$work/last.err" || fail "no validators: -v does not say so"
grep -q "resuming" "$work/last.err" || fail "no validators: not resumed"
echo "no validators: resumed, -v says it could not be checked, byte-exact"
bad_first 4 "$work/hb/norange"
curl -sf "$hb/setmode/norange" >/dev/null
must_finish "$work/mref" "$work/hb/norange" "a 200 to a Range" -s 4 --min-segment 1M \
  -o "$work/hb/norange" "$hb/m/$m"
grep -q "start over" "$work/last.err" || fail "a 200 to a Range: not said"
echo "a 200 to a Range: started over, byte-exact"
# The same over one connection: the start over began while no other part
# was busy, so it ran inside the part's callback, which then took the
# download for done (0 bytes) and crashed (exit 139).
bad_first 1 "$work/hb/norange1"
curl -sf "$hb/setmode/norange" >/dev/null
must_finish "$work/mref" "$work/hb/norange1" "a 200 to a Range, one connection" \
  -o "$work/hb/norange1" "$hb/m/$m"
grep -q "start over" "$work/last.err" || fail "a 200 to a Range, one connection: not said"
echo "a 200 to a Range, one connection: started over, byte-exact"
bad_first 4 "$work/hb/badcr"
curl -sf "$hb/setmode/badcr" >/dev/null
must_finish "$work/mref" "$work/hb/badcr" "a 206 of another range" -s 4 --min-segment 1M \
  -o "$work/hb/badcr" "$hb/m/$m"
grep -q "start over" "$work/last.err" || fail "a 206 of another range: not said"
echo "a 206 of another range: started over, byte-exact (${SECONDS}s)"

# ---- the record's own corruption, and part files without one ------------------------------
# killed_s4 OUT [URL]: a -s 4 download killed after 1.2 s (a record listing
# four partial segments, a part file with holes).
killed_s4() {
  interrupt KILL 1.2 -c -s 4 --all-segments --min-segment 1M -o "$1" "${2:-$base/files/big.bin}"
  [[ -s "$1.akget-part.ctl" ]] || fail "no record after a killed run ($1)"
}
started_over() {
  local what="$1" out="$2" word="$3"
  shift 3
  : >"$log"
  must_finish "$root/files/big.bin" "$out" "$what" -s 4 --min-segment 1M -o "$out" "$@"
  grep -q "start over.*$word" "$work/last.err" || { cat "$work/last.err" >&2; fail "$what: not said"; }
  local got
  got=$(sent)
  ((got >= size)) || fail "$what: only $got bytes fetched, the record was used"
  echo "$what: started over, byte-exact (${SECONDS}s)"
}
mkdir -p "$work/rec"
killed_s4 "$work/rec/trunc"
truncate -s 100 "$work/rec/trunc.akget-part.ctl"
started_over "record truncated" "$work/rec/trunc" truncated "$base/files/big.bin"
killed_s4 "$work/rec/garbage"
head -c 16384 /dev/urandom >"$work/rec/garbage.akget-part.ctl"
started_over "record of garbage" "$work/rec/garbage" "not used" "$base/files/big.bin"
killed_s4 "$work/rec/other" "$base/files/big.bin?first"
started_over "record of another URL" "$work/rec/other" "another URL" "$base/files/big.bin?second"
killed_s4 "$work/rec/short"
truncate -s 1000000 "$work/rec/short.akget-part"
started_over "record past the part file's end" "$work/rec/short" "lists bytes up to" \
  "$base/files/big.bin"
killed_s4 "$work/rec/holes"
rm -f "$work/rec/holes.akget-part.ctl"
started_over "segmented part file without record" "$work/rec/holes" "hole" "$base/files/big.bin"
# One stream without record: taken as written in order, resumed.
interrupt KILL 1.2 -c -o "$work/rec/one" "$base/files/big.bin"
rm -f "$work/rec/one.akget-part.ctl"
: >"$log"
must_finish "$root/files/big.bin" "$work/rec/one" "one stream without record" -s 4 --min-segment 1M \
  -o "$work/rec/one" "$base/files/big.bin"
got=$(sent)
((got < size)) || fail "one stream without record: $got bytes fetched, not resumed"
echo "one stream without record: resumed, byte-exact"

# ---- the last check: a range never fetched (a test hook drops one from the
# plan) fails the download with exit 7, nothing under the name, the part
# file and its record kept; -c then fetches that range only.
mkdir -p "$work/gap"
rc=0
AKGET_TEST_DROP_RANGE=1 "$akget" -q -c -s 4 --min-segment 1M -o "$work/gap/big.bin" \
  "$base/files/big.bin" 2>"$work/gap.err" || rc=$?
[[ $rc == 7 ]] || { cat "$work/gap.err" >&2; fail "a range missing: exit $rc, want 7"; }
grep -q "missing" "$work/gap.err" || fail "a range missing: not said"
[[ ! -e "$work/gap/big.bin" && -s "$work/gap/big.bin.akget-part.ctl" ]] ||
  fail "a range missing: want nothing under the name, the part file and its record kept"
: >"$log"
must_finish "$root/files/big.bin" "$work/gap/big.bin" "a range missing, then -c" -s 4 \
  --min-segment 1M -o "$work/gap/big.bin" "$base/files/big.bin"
got=$(sent)
((got == size / 4)) || fail "a range missing, then -c: $got bytes fetched, want $((size / 4))"
echo "a range missing: exit 7, kept; -c fetched that range only, byte-exact"

# ---- ENOSPC in the middle of a segment, then -c with space -------------------------------
mkdir -p "$work/small"
if mount -t tmpfs -o size=24m tmpfs "$work/small" 2>/dev/null; then
  small_mounted=1
  rc=0
  "$akget" -q -c -s 4 --all-segments --min-segment 1M -o "$work/small/big.bin" "$base/files/big.bin" 2>"$work/nospc.err" || rc=$?
  [[ $rc == 3 ]] || { cat "$work/nospc.err" >&2; fail "ENOSPC: exit $rc, want 3"; }
  grep -q "ENOSPC" "$work/nospc.err" || fail "ENOSPC: not said"
  [[ ! -e "$work/small/big.bin" && -e "$work/small/big.bin.akget-part.ctl" ]] ||
    fail "ENOSPC: want the part file and its record kept, nothing under the name"
  mount -o remount,size=100m "$work/small" || fail "tmpfs remount"
  : >"$log"
  must_finish "$root/files/big.bin" "$work/small/big.bin" "ENOSPC, then -c with space" -s 4 \
    --min-segment 1M -o "$work/small/big.bin" "$base/files/big.bin"
  got=$(sent)
  ((got < size - (16 << 20))) || fail "ENOSPC: $got bytes fetched again, want the 24 MiB on disk kept"
  echo "ENOSPC mid-segment, then -c with space: byte-exact, $got bytes fetched again"
else
  echo "ENOSPC case skipped: no tmpfs mount (not root?)"
fi
((failures == 0)) || { echo "$failures failures"; exit 1; }
echo "akget resume: ok (${SECONDS}s)"
