#!/usr/bin/env bash
# test_akget_lists.sh: akget's -i lists, streamed and in aria2's input-file
# form, against httpbad: a list on a pipe that a slow writer fills over
# several seconds (the first download ends before the writer goes on: the
# list is read as the downloads go, not first); blank lines, comments and
# CRLF; out= into new directories, dir=, checksum=, header=; out=../x and
# out=/etc/x refused with their line; a repeated out= reported; an unknown
# key with its line number; out=/dir= through a symbolic link beneath -d
# refused (nothing written outside), -d itself a link followed; a
# directory replaced by a link while its download is in flight or queued
# (nothing written outside, exit 3); --shard
# over a streamed list; a long list (URLs
# to a closed port, failing fast) whose RSS is sampled during the run and
# stays under 64 MiB, with --json written as the downloads end.
#
# Usage: test_akget_lists.sh AKGET HTTPBAD [URLS]   (URLS: the long list's
# length, 200000 by default; 2000000 is the figure in docs/akget.md)
set -euo pipefail
akget="$1" httpbad="$2" long_n="${3:-200000}"
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/httpbad_env.sh"
work="$(mktemp -d "${TMPDIR:-/tmp}/ak-akget-lists.XXXXXX")"
cleanup() {
  set +e
  httpbad_stop
  rm -rf "$work"
}
trap cleanup EXIT
fail() { printf 'FAIL: %s\n' "$*" >&2; exit 1; }

httpbad_start "$httpbad" "$work" || fail "httpbad did not start"
base="$HTTPBAD_URL"
# httpbad's body: byte i is (i * 131 + (i >> 8)) % 251.
body() { python3 -c 'import sys; n=int(sys.argv[1]); sys.stdout.buffer.write(bytes(((i * 131 + (i >> 8)) % 251) for i in range(n)))' "$1"; }
sha() { body "$1" | sha256sum | cut -d' ' -f1; }
same() { cmp -s <(body "$2") "$1" || fail "$1: not the body of $2 bytes"; }

# 1. A list on a pipe, filled slowly: the writer waits (up to 20 s) for the
# first file to be downloaded before it writes the rest. akget reading the
# whole list first would never download it: the writer would time out.
out="$work/pipe"
start=$SECONDS
{
  printf '%s\n\n' "$base/file/1000/p1" # the blank line ends the entry: no lookahead wait
  for _ in $(seq 200); do [[ -e "$out/p1" ]] && break; sleep 0.1; done
  if [[ -e "$out/p1" ]]; then echo yes >"$work/p1-seen"; fi
  sleep 1
  echo "$base/file/2000/p2"
  sleep 1
  echo "$base/file/3000/p3"
  sleep 1
} | timeout 60 "$akget" -q -d "$out" -i - || fail "pipe: exit $?"
took=$((SECONDS - start))
[[ -s "$work/p1-seen" ]] || fail "pipe: p1 was not downloaded while the list was still being written"
((took >= 3)) || fail "pipe: the writer took ${took}s, want several"
same "$out/p1" 1000
same "$out/p2" 2000
same "$out/p3" 3000
echo "pipe: the first download ended before the writer went on (${took}s in all)"

# 2. Blank lines, comments (also indented ones), CRLF line ends, a URL
# with a checksum on its line, options after it.
printf '# a mirror list\r\n\r\n%s\r\n   \r\n\t# an indented comment\r\n%s sha-256=%s\r\n\n%s\r\n  out=crlf-named.bin\r\n' \
  "$base/file/100/c1" "$base/file/200/c2" "$(sha 200)" "$base/file/300/c3" >"$work/crlf.list"
"$akget" -q -d "$work/crlf" -i "$work/crlf.list" --json "$work/crlf.json" || fail "crlf: exit $?"
[[ "$(ls "$work/crlf" | sort | tr '\n' ' ')" == "c1 c2 crlf-named.bin " ]] ||
  fail "crlf: files $(ls "$work/crlf" | tr '\n' ' ')"
same "$work/crlf/c1" 100
same "$work/crlf/c2" 200
same "$work/crlf/crlf-named.bin" 300
python3 - "$work/crlf.json" <<'EOF' || fail "crlf: --json"
import json, sys
d = json.load(open(sys.argv[1]))
assert d["exit"] == 0 and d["files"] == 3 and d["failed"] == 0, d
assert len(d["downloads"]) == 3 and all(e["ok"] for e in d["downloads"]), d["downloads"]
EOF

# 3. Per-URL options: out= into directories that do not exist yet, dir=,
# both, checksum= (right), header= (repeatable), aria2's form.
cat >"$work/opts.list" <<EOF
$base/file/1500/o1
  out=new/deeper/still/one.bin
$base/file/2500/o2
	dir=sub/dir
$base/file/3500/o3
  dir=sub
  out=two/three.bin
  checksum=sha-256=$(sha 3500)
  header=X-Akget-Test: 1
  header=X-Other: two
EOF
"$akget" -q -d "$work/opts" -i "$work/opts.list" || fail "options: exit $?"
same "$work/opts/new/deeper/still/one.bin" 1500
same "$work/opts/sub/dir/o2" 2500
same "$work/opts/sub/two/three.bin" 3500
echo "options: out= and dir= into new directories"

# A wrong checksum= is exit 6, the file not linked in.
printf '%s\n  checksum=sha-256=%s\n' "$base/file/700/bad" "$(sha 701)" >"$work/sum.list"
rc=0; "$akget" -q -d "$work/sum" -i "$work/sum.list" 2>/dev/null || rc=$?
[[ $rc == 6 ]] || fail "checksum= mismatch: exit $rc, want 6"
[[ ! -e "$work/sum/bad" ]] || fail "checksum= mismatch: the file was linked in"

# 4. List errors: each bad entry is said with its line, not downloaded,
# exit 2; the good entries of the same list are downloaded all the same.
cat >"$work/bad.list" <<EOF
$base/file/100/g1
$base/file/100/e1
  out=../escaped.bin
$base/file/100/e2
  out=/etc/akget-escaped.bin
$base/file/100/g2
  out=dup.bin
$base/file/100/e3
  out=dup.bin
$base/file/100/e4
  split=4
$base/file/100/e5
  dir=a/../../x
$base/file/100/e6
  header=no colon here
$base/file/100/e7 sha-256=1234
not-a-url
$base/file/100/g3
EOF
mkdir -p "$work/errs"
rc=0; "$akget" -d "$work/errs/d" -i "$work/bad.list" --json "$work/bad.json" 2>"$work/bad.err" || rc=$?
[[ $rc == 2 ]] || fail "list errors: exit $rc, want 2"
expect() { grep -qF -- "$1" "$work/bad.err" || fail "list errors: no '$1' in: $(cat "$work/bad.err")"; }
expect "bad.list: line 3: out=../escaped.bin has a '..' component"
expect "bad.list: line 5: out=/etc/akget-escaped.bin is absolute"
expect "bad.list: line 9: out=dup.bin: the same output path as an earlier entry"
expect "bad.list: line 11: unknown key 'split'"
expect "bad.list: line 13: dir=a/../../x has a '..' component"
expect "bad.list: line 15: header=no colon here is not 'Name: value'"
expect "bad.list: line 16: checksum sha-256=1234 is not sha-256=HEX"
expect "bad.list: line 17: not-a-url: "
[[ ! -e "$work/errs/escaped.bin" && ! -e /etc/akget-escaped.bin && ! -e "$work/x" ]] ||
  fail "list errors: a refused out= was written"
[[ "$(ls "$work/errs/d" | sort | tr '\n' ' ')" == "dup.bin g1 g3 " ]] ||
  fail "list errors: files $(ls "$work/errs/d" | tr '\n' ' ')"
python3 - "$work/bad.json" <<'EOF' || fail "list errors: --json"
import json, sys
d = json.load(open(sys.argv[1]))
assert d["exit"] == 2 and d["files"] == 11 and d["failed"] == 8, d
bad = [e for e in d["downloads"] if not e["ok"]]
assert all(e["error"] == "LIST" and e["exit"] == 2 and "line" in e["detail"] for e in bad), bad
EOF
# Options before any URL: an entry of its own, in error.
printf '  out=x\n%s\n' "$base/file/10/after" >"$work/orphan.list"
rc=0; "$akget" -q -d "$work/orphan" -i "$work/orphan.list" 2>"$work/orphan.err" || rc=$?
[[ $rc == 2 && -e "$work/orphan/after" ]] || fail "orphan option: exit $rc"
grep -q "line 1: .*no URL line above it" "$work/orphan.err" || fail "orphan option: $(cat "$work/orphan.err")"
# A list that cannot be opened: exit 3 before anything.
rc=0; "$akget" -q -d "$work/none" -i "$work/no-such.list" "$base/file/10/x" 2>/dev/null || rc=$?
[[ $rc == 3 && ! -e "$work/none/x" ]] || fail "missing list: exit $rc"
# A control byte inside a URL (a lone CR mid-line, found by fuzz_input_list):
# an error with its line, never a URL that holds it; the next entry runs.
printf '%s\r%s\n%s\n' "$base/file/10/cr" "tail" "$base/file/10/next" >"$work/cr.list"
rc=0; "$akget" -q -d "$work/cr" -i "$work/cr.list" 2>"$work/cr.err" || rc=$?
[[ $rc == 2 && -e "$work/cr/next" ]] || fail "control byte: exit $rc"
grep -q "line 1: a control byte in the URL" "$work/cr.err" || fail "control byte: $(cat "$work/cr.err")"
echo "list errors: said with their lines, the rest downloaded"

# 4b. Symbolic links beneath -d are not followed: out= and dir= through a
# link to a directory outside -d (at the first level, deeper, or the last
# directory of the path) are refused with the URL and the path, exit 3, and
# nothing is written outside; a plain nested out= and the other entries
# still download. A -d that is itself a link is followed (the user's own
# choice, as with wget and curl).
outside="$work/outside"
mkdir -p "$outside" "$work/sym/real"
ln -s "$outside" "$work/sym/sub"
ln -s "$outside" "$work/sym/real/link"
cat >"$work/sym.list" <<EOF
$base/file/100/s1
  out=sub/s1.bin
$base/file/100/s2
  out=real/link/deeper/s2.bin
$base/file/100/s3
  dir=sub
$base/file/100/s4
  dir=real/link
$base/file/200/ok1
  out=nested/ok/ok1.bin
$base/file/300/ok2
  dir=real
EOF
rc=0; "$akget" -d "$work/sym" -i "$work/sym.list" 2>"$work/sym.err" || rc=$?
[[ $rc == 3 ]] || fail "symlinks: exit $rc, want 3: $(cat "$work/sym.err")"
sym_expect() { grep -qF -- "$1" "$work/sym.err" || fail "symlinks: no '$1' in: $(cat "$work/sym.err")"; }
sym_expect "sym.list: line 2: $base/file/100/s1: refused to save as $work/sym/sub/s1.bin: $work/sym/sub is a symbolic link"
sym_expect "sym.list: line 4: $base/file/100/s2: refused to save as $work/sym/real/link/deeper/s2.bin: $work/sym/real/link is a symbolic link"
sym_expect "sym.list: line 6: $base/file/100/s3: refused to save as $work/sym/sub/s3: $work/sym/sub is a symbolic link"
sym_expect "sym.list: line 8: $base/file/100/s4: refused to save as $work/sym/real/link/s4: $work/sym/real/link is a symbolic link"
[[ -z "$(ls -A "$outside")" ]] || fail "symlinks: written outside -d: $(ls -AR "$outside")"
same "$work/sym/nested/ok/ok1.bin" 200
same "$work/sym/real/ok2" 300
# -d itself a link: followed, and what is beneath it made as usual.
mkdir -p "$work/dreal"
ln -s "$work/dreal" "$work/dlink"
printf '%s\n  out=a/b/d1.bin\n%s\n' "$base/file/400/d1" "$base/file/500/d2" >"$work/dlink.list"
"$akget" -q -d "$work/dlink" -i "$work/dlink.list" || fail "-d a link: exit $?"
same "$work/dreal/a/b/d1.bin" 400
same "$work/dreal/d2" 500
# A link planted at a part file's name (named files, as with -c or without
# O_TMPFILE) is not written through: that download fails, the target stays.
mkdir -p "$work/part"
echo keep >"$outside/victim"
ln -s "$outside/victim" "$work/part/p1.akget-part"
rc=0; AKGET_TEST_NO_TMPFILE=1 "$akget" -q -d "$work/part" "$base/file/100/p1" 2>"$work/part.err" || rc=$?
[[ $rc == 3 ]] || fail "part-file link: exit $rc, want 3: $(cat "$work/part.err")"
[[ "$(cat "$outside/victim")" == keep ]] || fail "part-file link: written through the link"
rm -f "$outside/victim"
echo "symlinks: links beneath -d refused with their URL and path, nothing written outside; -d a link works"

# 4c. A directory beneath -d replaced while akget runs: the links refused
# above are checked when the list is read, the downloads come later. sub
# is replaced (moved away, a link to a directory outside -d put at its
# name) while its download's body trickles in (2 s): the file is not
# written outside, the download fails with exit 3 saying so, and the other
# entries download. late/ is made when the list is read and replaced the
# same way before its download starts (-j 1: it waits behind the slow
# one): refused at the start. Both with unnamed files and openat2, and with
# named part files and the O_NOFOLLOW walk; sub replaced by another
# directory instead of a link (refused too: not the directory written
# in); and the directory above sub (top/sub/slow.bin) replaced by a link
# to one that has a sub too, so the path still leads to a directory.
# after.bin, queued into sub behind them, finds sub's old directory still
# held (the cache of directories used last), not there any more: refused
# at its start as late is (a link), or saved in the new sub.
swap_run() { # $1: a label, $2: link, dir or uplink; the environment given to akget after them
  local label="$1" with="$2"; shift 2
  local d="$work/swap-$label" far="$work/far-$label" sd=sub swapped=sub
  [[ $with == uplink ]] && sd=top/sub swapped=top
  mkdir -p "$d/$sd" "$far"
  printf '%s\n  out=%s/slow.bin\n%s\n  dir=late\n%s\n  out=kept/other.bin\n%s\n  out=%s/after.bin\n' \
    "$base/drip/20000/1000/100000" "$sd" "$base/file/300/late" "$base/file/400/other" \
    "$base/file/500/after" "$sd" >"$work/swap-$label.list"
  env "$@" "$akget" -j 1 -d "$d" -i "$work/swap-$label.list" 2>"$work/swap-$label.err" &
  local pid=$! rc=0 seen=
  # The slow body is coming in once the unnamed file (or the part file) is
  # open in its directory: then that and late (made by then) are replaced.
  for _ in $(seq 100); do
    if [[ -e "$d/$sd/slow.bin.akget-part" ]] || ls -l "/proc/$pid/fd" 2>/dev/null | grep -qF "$d/$sd/#"; then
      seen=1
      break
    fi
    sleep 0.05
  done
  if [[ -z "$seen" || ! -d "$d/late" ]]; then
    kill "$pid"
    fail "swap $label: the slow download did not start: $(cat "$work/swap-$label.err")"
  fi
  mv "$d/$swapped" "$d/$swapped.moved"
  case $with in
    link) ln -s "$far" "$d/sub" ;;
    dir) mkdir "$d/sub" ;;
    uplink) mkdir "$far/sub" && ln -s "$far" "$d/top" ;;
  esac
  mv "$d/late" "$d/late.moved" && ln -s "$far" "$d/late"
  for _ in $(seq 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill "$pid" 2>/dev/null && fail "swap $label: akget still running after 30 s"
  wait "$pid" || rc=$?
  [[ $rc == 3 ]] || fail "swap $label: exit $rc, want 3: $(cat "$work/swap-$label.err")"
  [[ -z "$(find "$far" ! -type d)" ]] || fail "swap $label: written outside -d: $(ls -AR "$far")"
  local said="refused to save as $d/$sd/slow.bin: a directory of it ($d/$sd) was replaced by a symbolic link during the download"
  [[ $with != dir ]] || said="not saved as $d/sub/slow.bin: its directory $d/sub was moved, removed or replaced during the download"
  grep -qF "$said" "$work/swap-$label.err" || fail "swap $label: the in-flight one not said: $(cat "$work/swap-$label.err")"
  if [[ $with == dir ]]; then # the new sub is a directory like any: after.bin goes there, alone
    [[ "$(ls -A "$d/sub")" == after.bin ]] || fail "swap $label: the new sub has: $(ls -A "$d/sub")"
    same "$d/sub/after.bin" 500
  else
    grep -qF "$base/file/500/after: refused to save as $d/$sd/after.bin: $d/$swapped is a symbolic link" "$work/swap-$label.err" ||
      fail "swap $label: after.bin not said: $(cat "$work/swap-$label.err")"
  fi
  grep -qF "$base/file/300/late: refused to save as $d/late/late: $d/late is a symbolic link" "$work/swap-$label.err" ||
    fail "swap $label: the queued one not said: $(cat "$work/swap-$label.err")"
  [[ -z "$(find "$d/$swapped.moved" "$d/late.moved" ! -type d)" ]] ||
    fail "swap $label: files left in the moved directories: $(ls -AR "$d/$swapped.moved" "$d/late.moved")"
  same "$d/kept/other.bin" 400
}
swap_run unnamed link AKGET_TEST_NONE=1
swap_run walk link AKGET_TEST_NO_TMPFILE=1 AKGET_TEST_NO_OPENAT2=1
swap_run redir dir AKGET_TEST_NONE=1
swap_run up uplink AKGET_TEST_NONE=1
swap_run upwalk uplink AKGET_TEST_NO_TMPFILE=1 AKGET_TEST_NO_OPENAT2=1
echo "swapped directories: nothing written outside, exit 3 with why, the other entries kept"

# 5. --shard K/N over a list on a pipe: the shards split it, none twice.
for i in $(seq 60); do echo "$base/file/50/s$i"; done >"$work/shard.list"
for k in 1 2 3; do
  cat "$work/shard.list" | "$akget" -q --shard "$k/3" -d "$work/shard$k" -i - ||
    fail "--shard $k/3: exit $?"
done
n1=$(ls "$work/shard1" | wc -l) n2=$(ls "$work/shard2" | wc -l) n3=$(ls "$work/shard3" | wc -l)
[[ $((n1 + n2 + n3)) == 60 && $n1 -gt 0 && $n2 -gt 0 && $n3 -gt 0 ]] ||
  fail "--shard: $n1 + $n2 + $n3 files, want 60 in three non-empty shards"
[[ "$(ls "$work/shard1" "$work/shard2" "$work/shard3" | grep '^s' | sort | uniq -d)" == "" ]] ||
  fail "--shard: a URL in two shards"
echo "--shard: $n1 + $n2 + $n3 of 60 from a pipe"

# 6. A long list on a pipe, every URL to a closed port (fails fast):
# akget's RSS sampled every 0.2 s stays under 64 MiB, --json included.
closed=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
start=$SECONDS
awk -v n="$long_n" -v b="http://127.0.0.1:$closed" 'BEGIN { for (i = 1; i <= n; i++) print b "/d" int(i / 1000) "/f" i }' |
  timeout 300 "$akget" -q --retries 0 -j 32 -d "$work/long" -i - --json "$work/long.json" \
    2>"$work/long.err" &
pid=$!
# $! is timeout's pid: akget is its child.
apid=""
for _ in $(seq 100); do
  apid=$(pgrep -P "$pid" -x akget || true)
  [[ -n "$apid" ]] && break
  sleep 0.05
done
peak=0 samples=0
while kill -0 "$pid" 2>/dev/null; do
  if [[ -n "$apid" ]]; then
    hwm=$(awk '/^VmHWM:/ { print $2 }' "/proc/$apid/status" 2>/dev/null || true)
    if [[ -n "$hwm" ]]; then
      ((hwm > peak)) && peak=$hwm
      samples=$((samples + 1))
    fi
  fi
  sleep 0.2
done
rc=0; wait "$pid" || rc=$?
took=$((SECONDS - start))
[[ $rc == 4 ]] || fail "long list: exit $rc, want 4 (every URL refused); $(tail -n 3 "$work/long.err")"
python3 - "$work/long.json" "$long_n" <<'EOF' || fail "long list: --json"
import json, sys
d = json.load(open(sys.argv[1]))
n = int(sys.argv[2])
assert d["files"] == n and d["failed"] == n and len(d["downloads"]) == n, (d["files"], d["failed"])
assert all(e["error"] == "ECONNREFUSED" for e in d["downloads"][:100]), d["downloads"][0]
EOF
((samples >= 3)) || fail "long list: RSS sampled $samples times only"
echo "long list: $long_n URLs in ${took}s, peak RSS $((peak / 1024)) MiB ($samples samples)"
# Under AddressSanitizer the RSS is its quarantine (256 MiB) and shadow,
# not akget's: the bound is checked on builds without it.
if grep -q __asan_init "$akget"; then
  echo "long list: RSS bound not checked (an ASan build)"
else
  ((peak < 64 * 1024)) || fail "long list: peak RSS ${peak} kB, over 64 MiB"
fi
echo "all list cases passed"
