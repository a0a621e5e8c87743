#!/usr/bin/env bash
# test_akget_mirror.sh: akget as a mirror's tool, against a real nginx started
# here (tests/nginx_env.sh) and httpbad: -N's conditional requests (a HEAD
# first, before any file is made; 304 keeps the file, inode and mtime; a
# changed file is replaced by the GET that follows; If-None-Match from
# the user.akget.etag xattr, a stale one refetching; If-Modified-Since alone
# without it), the
# server's Last-Modified as mtime and --no-remote-time, a server with no
# Last-Modified and no ETag (downloaded each time, -v says why), a HEAD that
# fails or hangs (the file left as it is), a changed file fetched by -c -s
# ranges that stall and are retried (the reason and the ranges kept), and the
# "unchanged" count in the summary line and --json; 120 URLs of 40, 300
# and 3000 bytes through -j 2 and again with -N (feed.c's item blocks,
# recycled). Exit 77 (skip) when
# nginx is not installed.
#
# Usage: test_akget_mirror.sh AKGET HTTPBAD
set -euo pipefail
akget="$1" httpbad="$2"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$here/nginx_env.sh"
source "$here/httpbad_env.sh"
work="$(mktemp -d "${TMPDIR:-/tmp}/ak-akget-mirror.XXXXXX")"
chmod 755 "$work"
cleanup() {
  set +e
  nginx_stop
  httpbad_stop
  rm -rf "$work"
}
trap cleanup EXIT
fail() { printf 'FAIL: %s\n' "$*" >&2; tail -n 5 "$work/state/access.log" >&2 2>/dev/null; exit 1; }

[[ -n "$(nginx_bin)" ]] || { echo "nginx not installed: skipped"; exit 77; }

xattr_get() { python3 -c 'import os,sys
try: print(os.getxattr(sys.argv[1], "user.akget.etag").decode())
except OSError: print("")' "$1"; }
xattr_rm() { python3 -c 'import os,sys; os.removexattr(sys.argv[1], "user.akget.etag")' "$1"; }
json_field() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$1" "$2"; }

root="$work/root"
mkdir -p "$root/m"
for i in 1 2 3; do head -c $((i * 100000)) /dev/urandom >"$root/m/f$i.bin"; done
# Times in the past, so a file's mtime cannot be "now" by accident.
touch -d '2001-02-03 04:05:06 UTC' "$root/m/f1.bin"
touch -d '2011-12-13 14:15:16 UTC' "$root/m/f2.bin" "$root/m/f3.bin"
chmod -R a+rX "$root"
NGINX_LOG_EXTRA='"$http_if_modified_since" "$http_if_none_match" $request_method'
nginx_start "$work/state" "$root" || fail "nginx did not start"
base="http://127.0.0.1:$NGINX_PORT"
log="$work/state/access.log"
printf '%s\n' "$base/m/f1.bin" "$base/m/f2.bin" "$base/m/f3.bin" >"$work/list"
out="$work/out"

# 1. A first run: the files take the server's Last-Modified as mtime, and
# their ETag is kept in user.akget.etag (where the filesystem has xattrs).
"$akget" -q -d "$out" -i "$work/list" || fail "first run: exit $?"
for i in 1 2 3; do
  cmp -s "$root/m/f$i.bin" "$out/f$i.bin" || fail "f$i differs"
  [[ "$(stat -c %Y "$out/f$i.bin")" == "$(stat -c %Y "$root/m/f$i.bin")" ]] ||
    fail "f$i: mtime $(stat -c %Y "$out/f$i.bin"), the server's is $(stat -c %Y "$root/m/f$i.bin")"
done
have_xattr=1
if [[ -z "$(xattr_get "$out/f1.bin")" ]]; then
  have_xattr=0
  echo "no user xattrs under $out: the If-None-Match cases are skipped"
fi
if ((have_xattr)); then
  etag=$(xattr_get "$out/f1.bin")
  [[ "$etag" == \"*\" ]] || fail "f1's kept ETag is '$etag'"
fi

# 2. -N over the unchanged tree: three 304s to three HEADs (no GET), nothing
# rewritten (same inode, same mtime), "unchanged" in the summary line and in
# --json, exit 0.
before=$(stat -c '%i %Y %s' "$out"/f*.bin)
: >"$log"
"$akget" -N -d "$out" -i "$work/list" --json "$work/n.json" 2>"$work/n.err" ||
  fail "-N unchanged: exit $?"
[[ "$(stat -c '%i %Y %s' "$out"/f*.bin)" == "$before" ]] || fail "-N rewrote an unchanged file"
[[ "$(awk '{print $3}' "$log" | sort | uniq -c | awk '{print $1, $2}')" == "3 304" ]] ||
  fail "-N unchanged: nginx answered $(awk '{print $3}' "$log" | tr '\n' ' '), want three 304s"
[[ "$(awk '{print $NF}' "$log" | sort | uniq -c | awk '{print $1, $2}')" == "3 HEAD" ]] ||
  fail "-N unchanged: asked by $(awk '{print $NF}' "$log" | tr '\n' ' '), want three HEADs"
grep -q "0 of 3 downloaded, 3 unchanged, 0 failed" "$work/n.err" ||
  fail "summary line: $(tail -n 1 "$work/n.err")"
[[ "$(json_field "$work/n.json" unchanged)" == 3 ]] || fail "--json unchanged != 3"
[[ "$(json_field "$work/n.json" bytes)" == 0 ]] || fail "--json counts kept files as bytes fetched"
grep -q '"unchanged": true' "$work/n.json" || fail "--json: no per-file unchanged"
grep -q '"Sat, 03 Feb 2001 04:05:06 GMT"' "$log" ||
  fail "no If-Modified-Since with f1's date in nginx's log"
if ((have_xattr)); then
  # nginx's log writes a '"' as \x22.
  grep -F -q "${etag//\"/\\x22}" "$log" ||
    fail "no If-None-Match $etag in nginx's log"
  # The same where the kernel has no getxattrat (before 6.13): the ETag is
  # read by the whole path.
  : >"$log"
  AKGET_TEST_NO_GETXATTRAT=1 "$akget" -q -N -d "$out" -i "$work/list" ||
    fail "-N unchanged, ETag read by path: exit $?"
  [[ "$(awk '{print $3}' "$log" | sort | uniq -c | awk '{print $1, $2}')" == "3 304" ]] ||
    fail "-N, ETag read by path: nginx answered $(awk '{print $3}' "$log" | tr '\n' ' ')"
  grep -F -q "${etag//\"/\\x22}" "$log" ||
    fail "ETag read by path: no If-None-Match $etag in nginx's log"
fi

# 2b. With -s (and -c) the conditions go with the first HEAD: a 304 to it
# keeps the file, and nothing else is asked. With -c a part file and its
# record left by an earlier run go too (the 304 says they are not needed).
for opt in "-s 4 --min-segment 16K" "-c"; do
  : >"$log"
  if [[ "$opt" == -c ]]; then
    head -c 1000 /dev/urandom >"$out/f1.bin.akget-part"
    head -c 100 /dev/urandom >"$out/f1.bin.akget-part.ctl"
  fi
  # shellcheck disable=SC2086
  "$akget" -q -N $opt -d "$out" -i "$work/list" --json "$work/s.json" || fail "-N $opt: exit $?"
  [[ "$(stat -c '%i %Y %s' "$out"/f*.bin)" == "$before" ]] || fail "-N $opt rewrote a file"
  [[ "$(awk '{print $3}' "$log" | sort | uniq -c | awk '{print $1, $2}')" == "3 304" ]] ||
    fail "-N $opt: nginx answered $(awk '{print $3}' "$log" | tr '\n' ' ')"
  [[ "$(json_field "$work/s.json" unchanged)" == 3 ]] || fail "-N $opt: --json unchanged != 3"
  ! ls "$out" | grep -q akget-part || fail "-N $opt left a part file: $(ls "$out")"
done

# 3. One file changed on the server: it alone is fetched (its HEAD's 200,
# then a GET's 200) and replaced, with the new mtime; the others stay 304.
head -c 123457 /dev/urandom >"$root/m/f2.bin"
touch -d '2020-01-01 00:00:00 UTC' "$root/m/f2.bin"
chmod a+r "$root/m/f2.bin"
: >"$log"
"$akget" -q -N -d "$out" -i "$work/list" --json "$work/c.json" || fail "-N changed: exit $?"
cmp -s "$root/m/f2.bin" "$out/f2.bin" || fail "changed f2 was not replaced"
[[ "$(stat -c %Y "$out/f2.bin")" == "$(stat -c %Y "$root/m/f2.bin")" ]] || fail "new f2's mtime"
[[ "$(grep -c ' 200 /m/f2.bin .* GET$' "$log")" == 1 && "$(grep -c ' 200 /m/f2.bin .* HEAD$' "$log")" == 1 &&
   "$(grep -c ' 304 .* HEAD$' "$log")" == 2 && "$(wc -l <"$log")" == 4 ]] ||
  fail "changed f2: nginx log: $(awk '{print $3, $4, $NF}' "$log" | tr '\n' ' ')"
[[ "$(json_field "$work/c.json" unchanged)" == 2 ]] || fail "--json unchanged != 2 after a change"

if ((have_xattr)); then
  # 4. If-None-Match is sent and counts: the date still matches but the
  # kept ETag is another (as after the entity changed within a second):
  # nginx answers 200, the file is fetched and the right ETag kept.
  python3 -c 'import os,sys; os.setxattr(sys.argv[1], "user.akget.etag", b"\"stale-1\"")' "$out/f3.bin"
  : >"$log"
  "$akget" -q -N -d "$out" "$base/m/f3.bin" || fail "-N by ETag: exit $?"
  grep -q ' 200 /m/f3.bin .*"\\x22stale-1\\x22" GET$' "$log" || fail "a stale ETag did not bring a 200: $(cat "$log")"
  [[ "$(xattr_get "$out/f3.bin")" != '"stale-1"' && -n "$(xattr_get "$out/f3.bin")" ]] ||
    fail "f3's ETag was not renewed"
  [[ "$(stat -c %Y "$out/f3.bin")" == "$(stat -c %Y "$root/m/f3.bin")" ]] || fail "f3's mtime"
  touch -d '2015-05-05 05:05:05 UTC' "$out/f3.bin" # the date no longer matches
  # 5. Without the xattr (as on a filesystem without user xattrs): the date
  # alone is asked (no If-None-Match sent); the date does not match: 200.
  xattr_rm "$out/f3.bin"
  : >"$log"
  "$akget" -q -N -d "$out" "$base/m/f3.bin" || fail "-N without the xattr: exit $?"
  grep -q ' 200 /m/f3.bin .* "-" GET$' "$log" || fail "without the xattr: $(cat "$log")"
  [[ -n "$(xattr_get "$out/f3.bin")" ]] || fail "the new f3 has no ETag kept"
  # ... and the date alone brings a 304 when it matches.
  xattr_rm "$out/f3.bin"
  : >"$log"
  "$akget" -q -N -d "$out" "$base/m/f3.bin" || fail "-N by date alone: exit $?"
  grep -q ' 304 /m/f3.bin .* "-" HEAD$' "$log" || fail "the date alone did not bring a 304: $(cat "$log")"
fi

# 6. A filesystem without user xattrs (ramfs), where one can be mounted:
# the download works, -v says the ETag is not kept, -N asks by date.
if mkdir -p "$work/ramfs" && mount -t ramfs none "$work/ramfs" 2>/dev/null; then
  trap 'umount "$work/ramfs" 2>/dev/null || true; cleanup' EXIT
  "$akget" -v -d "$work/ramfs" "$base/m/f1.bin" 2>"$work/r.err" || fail "ramfs: exit $?"
  grep -q "ETag is not kept" "$work/r.err" || fail "ramfs: -v did not say the ETag is not kept"
  : >"$log"
  "$akget" -q -N -d "$work/ramfs" "$base/m/f1.bin" || fail "ramfs -N: exit $?"
  grep -q ' 304 /m/f1.bin .* "-" HEAD$' "$log" || fail "ramfs -N: $(cat "$log")"
  umount "$work/ramfs"
  trap cleanup EXIT
else
  echo "no ramfs mount here: its case is skipped"
fi

# 7. --no-remote-time: the file's mtime is the download's, not 2001's.
rm -f "$out/f1.bin"
t0=$(date +%s)
"$akget" -q --no-remote-time -d "$out" "$base/m/f1.bin" || fail "--no-remote-time: exit $?"
(($(stat -c %Y "$out/f1.bin") >= t0 - 1)) || fail "--no-remote-time kept the server's time"

# 8. A server with neither Last-Modified nor ETag (httpbad): -N downloads
# every time, and -v says why.
httpbad_start "$httpbad" "$work" 60 || fail "httpbad did not start"
bad="$HTTPBAD_URL"
"$akget" -q -N -d "$work/nv" "$bad/file/5000" || fail "no validators, first: exit $?"
"$akget" -v -N -d "$work/nv" "$bad/file/5000" --json "$work/nv.json" 2>"$work/nv.err" ||
  fail "no validators, second: exit $?"
grep -q "no Last-Modified and no ETag" "$work/nv.err" || fail "-v did not say why: $(cat "$work/nv.err")"
[[ "$(json_field "$work/nv.json" unchanged)" == 0 ]] || fail "no validators: counted unchanged"
grep -q "1 of 1 downloaded" "$work/nv.err" || fail "no validators: not downloaded again"

# 9. -N's HEAD fails (nothing listens there): the GET after it fails too
# (exit 4) and the file on disk is left as it is.
closed=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
before=$(stat -c '%i %Y %s' "$out/f1.bin")
rc=0
"$akget" -q -N --retries 0 -d "$out" "http://127.0.0.1:$closed/m/f1.bin" 2>"$work/h.err" || rc=$?
((rc == 4)) || fail "-N, HEAD refused: exit $rc, want 4: $(cat "$work/h.err")"
[[ "$(stat -c '%i %Y %s' "$out/f1.bin")" == "$before" ]] || fail "-N, HEAD refused: f1 changed"

# 10. -N's HEAD hangs (a server that accepts and never answers): --max-time
# ends the download there, exit 4, the file left as it is, no file made.
python3 -c '
import socket, sys, time
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(8)
print(s.getsockname()[1], flush=True)
conns = []
end = time.time() + 30
s.settimeout(1)
while time.time() < end:
    try: conns.append(s.accept()[0])
    except OSError: pass
' >"$work/mute.port" &
mute_pid=$!
for _ in $(seq 50); do [[ -s "$work/mute.port" ]] && break; sleep 0.1; done
[[ -s "$work/mute.port" ]] || fail "the silent server did not start"
rc=0
t0=$(date +%s%N)
"$akget" -N --max-time 1 -d "$out" "http://127.0.0.1:$(cat "$work/mute.port")/m/f1.bin" \
  2>"$work/m.err" || rc=$?
t1=$(date +%s%N)
kill "$mute_pid" 2>/dev/null; wait "$mute_pid" 2>/dev/null || true
((rc == 4)) || fail "-N, HEAD hangs: exit $rc, want 4: $(cat "$work/m.err")"
(((t1 - t0) / 1000000 < 10000)) || fail "-N, HEAD hangs: --max-time 1 took $(((t1 - t0) / 1000000)) ms"
grep -q "max-time" "$work/m.err" || fail "-N, HEAD hangs: $(cat "$work/m.err")"
[[ "$(stat -c '%i %Y %s' "$out/f1.bin")" == "$before" ]] || fail "-N, HEAD hangs: f1 changed"
! ls -a "$out" | grep -q akget || fail "-N, HEAD hangs: left $(ls -a "$out")"

# 11. -N whose HEAD finds the file changed, then a -c -s 2 GET by ranges
# whose parts stall and are retried: the download's transfer state
# (download.c's dl_get, made only once a GET is needed: a 304 never has
# one) must carry the ranges and the retry's reason. --max-time's message
# names the last retry's reason; the part file's record lists the bytes of
# both ranges, which the next run (the server well-behaved again) resumes
# from and completes byte for byte; the old file stays until then.
m=2000000
"$akget" -q -o "$work/mref" "$bad/file/$m" || fail "reference download from httpbad"
mkdir -p "$work/nr"
printf 'old copy\n' >"$work/nr/$m"
touch -d '2001-01-01 00:00:00 UTC' "$work/nr/$m"
curl -sf "$bad/setmode/stall" >/dev/null || fail "setmode stall"
rc=0
"$akget" -N -c -s 2 --all-segments --min-segment 100000 --retries 5 --retry-wait 0.2 \
  --timeout 0.4 --max-time 2.5 -d "$work/nr" --json "$work/nr.json" "$bad/m/$m" \
  2>"$work/nr.err" || rc=$?
((rc == 4)) || fail "-N, then ranges that stall: exit $rc, want 4: $(cat "$work/nr.err")"
grep -q "retry 1/5" "$work/nr.err" || fail "-N, then ranges that stall: no retry: $(cat "$work/nr.err")"
python3 - "$work/nr.json" <<'PY' || fail "-N, then ranges that stall: --json: $(cat "$work/nr.json")"
import json, sys
e = json.load(open(sys.argv[1]))["downloads"][0]
assert e["error"] == "AK_EHTTPTOTALTIMEOUT", e
assert e["retries"] >= 1, e
# the reason kept by the retry (the stalled range's idle timeout)
assert "; last retry was for: " in e["detail"] and "IDLE" in e["detail"].upper(), e
PY
[[ "$(cat "$work/nr/$m")" == "old copy" ]] || fail "-N, then ranges that stall: the old file changed"
[[ -s "$work/nr/$m.akget-part.ctl" ]] || fail "-N, then ranges that stall: no control record"
curl -sf "$bad/setmode/ok" >/dev/null || fail "setmode ok"
rc=0
"$akget" -v -N -c -s 2 --min-segment 100000 -d "$work/nr" "$bad/m/$m" 2>"$work/nr2.err" || rc=$?
((rc == 0)) || fail "-N, resumed: exit $rc: $(cat "$work/nr2.err")"
grep -q "bytes on disk in 2 ranges" "$work/nr2.err" ||
  fail "-N, resumed: not from both ranges: $(cat "$work/nr2.err")"
cmp -s "$work/mref" "$work/nr/$m" || fail "-N, resumed: the file differs from the server's"
[[ ! -e "$work/nr/$m.akget-part" && ! -e "$work/nr/$m.akget-part.ctl" ]] ||
  fail "-N, resumed: part file or record left"

# 12. Item blocks (feed.c): each item is one block with room for its URL,
# temporary name and -N question; a URL longer than the room (about 260
# bytes) gets a block of its own size, its temporary name and -N question
# allocated apart; ended items' blocks are kept for later items. A list of
# 120 entries, short URLs and URLs of about 300 and 3000 bytes in turn,
# with -j 2 (a queue of 32): blocks, big ones too, are recycled. Then -N
# over the same list: 120 304s, every file untouched, exit 0.
d300="$(printf 'd%.0s' $(seq 132))/$(printf 'd%.0s' $(seq 132))"
d3000=""
for _ in $(seq 12); do d3000+="/$(printf 'e%.0s' $(seq 246))"; done
mkdir -p "$root/blk/$d300" "$root/blk$d3000"
: >"$work/blk.list"
for i in $(seq -w 1 120); do
  case $((10#$i % 3)) in
    0) rel="blk/s$i.bin" ;;
    1) rel="blk/$d300/l$i.bin" ;;
    2) rel="blk$d3000/b$i.bin" ;;
  esac
  head -c $((1000 + 10#$i * 37)) /dev/urandom >"$root/$rel"
  echo "$base/$rel" >>"$work/blk.list"
  echo "$rel" >>"$work/blk.rel"
done
touch -d '2011-12-13 14:15:16 UTC' "$root"/blk/s*.bin "$root/blk/$d300"/*.bin "$root/blk$d3000"/*.bin
chmod -R a+rX "$root/blk"
len300=$(sed -n 1p "$work/blk.list" | wc -c) len3000=$(sed -n 2p "$work/blk.list" | wc -c)
len50=$(sed -n 3p "$work/blk.list" | wc -c)
((len300 > 280 && len300 < 330 && len3000 > 2950 && len3000 < 3100)) ||
  fail "item blocks: URLs of $len300 and $len3000 bytes"
: >"$log"
timeout 60 "$akget" -q -j 2 -d "$work/blk" -i "$work/blk.list" || fail "item blocks: exit $?"
while read -r rel; do
  cmp -s "$root/$rel" "$work/blk/$(basename "$rel")" || fail "item blocks: $(basename "$rel") differs"
done <"$work/blk.rel"
[[ "$(ls "$work/blk" | wc -l)" == 120 ]] || fail "item blocks: $(ls "$work/blk" | wc -l) files, want 120"
before=$(stat -c '%n %i %Y %s' "$work/blk"/*)
: >"$log"
rc=0
timeout 60 "$akget" -q -N -j 2 -d "$work/blk" -i "$work/blk.list" --json "$work/blk.json" || rc=$?
((rc == 0)) || fail "item blocks, -N: exit $rc"
[[ "$(stat -c '%n %i %Y %s' "$work/blk"/*)" == "$before" ]] || fail "item blocks, -N: a file changed"
[[ "$(awk '{print $3}' "$log" | sort | uniq -c | awk '{print $1, $2}')" == "120 304" ]] ||
  fail "item blocks, -N: statuses $(awk '{print $3}' "$log" | sort | uniq -c | tr '\n' ' ')"
[[ "$(json_field "$work/blk.json" unchanged)" == 120 ]] ||
  fail "item blocks, -N: unchanged $(json_field "$work/blk.json" unchanged)"
echo "item blocks: 120 URLs of $len50, $len300 and $len3000 bytes, -j 2, then -N: 120 304s"

echo "akget mirror (-N, remote time): ok"
