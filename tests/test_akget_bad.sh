#!/usr/bin/env bash
# test_akget_bad.sh: akget against the project's misbehaving server
# (httpbad): every broken response ends in its documented error and exit
# code within its deadline, leaves no file under its final name (and no
# temporary file), and the good downloads of the same run are unaffected.
#
# Usage: test_akget_bad.sh AKGET HTTPBAD [SECCOMP_LAUNCH]
set -euo pipefail
akget="$1" httpbad="$2" launch="${3:-}"
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/httpbad_env.sh"
work="$(mktemp -d "${TMPDIR:-/tmp}/ak-akget-bad.XXXXXX")"
cleanup() {
  set +e
  httpbad_stop
  rm -rf "$work"
}
trap cleanup EXIT
fail() { printf 'FAIL: %s\n' "$*" >&2; exit 1; }

httpbad_start "$httpbad" "$work" || fail "httpbad did not start"
port="$HTTPBAD_PORT" base="$HTTPBAD_URL"

# path -> expected per-URL exit code (docs/akget.md)
declare -A want=(
  [file/1048576]=0 [chunked/300000]=0 [close/200000]=0 [interim/5000]=0 [file/77]=0
  [reset/1000000]=4 [short/100000]=4 [chunkcut/100000]=4 [trickle]=4 [stall/100000]=4
  [badstatus]=7 [bigheader]=7 [dupcl]=7 [conflictcl]=7 [negcl]=7 [hugecl]=7 [hugechunk]=7
  [redirect/loop]=7 [no/such/file]=8
)
: >"$work/list"
for p in "${!want[@]}"; do echo "$base/$p" >>"$work/list"; done

start=$SECONDS
rc=0
timeout 60 "$akget" -q -j 32 --retries 0 --timeout 1 --connect-timeout 2 -d "$work/out" \
  -i "$work/list" --json "$work/summary.json" || rc=$?
took=$((SECONDS - start))
# The worst exit code decides: 8 (the 404) here.
[[ $rc == 8 ]] || fail "akget exit $rc, want 8"
# The deadlines are 1 s (idle and head); the stall lasts 30 s: nothing waits for it.
((took < 15)) || fail "run took ${took}s: a deadline did not fire"

python3 - "$work/summary.json" "$work/out" "$base" <<'EOF' "${!want[@]}" -- "${want[@]}"
import json, os, sys
summary, out, base = sys.argv[1:4]
rest = sys.argv[4:]
sep = rest.index('--')
paths, codes = rest[:sep], [int(c) for c in rest[sep + 1:]]
want = dict(zip(paths, codes))
d = json.load(open(summary))
assert d["exit"] == 8, d["exit"]
seen = {}
for e in d["downloads"]:
    p = e["url"][len(base) + 1:]
    seen[p] = e
    code = 0 if e["ok"] else e["exit"]
    assert code == want[p], f"{p}: exit {code}, want {want[p]} ({e.get('detail')})"
    exists = os.path.exists(e["file"])
    assert exists == (code == 0), f"{p}: file present={exists}"
    assert not os.path.exists(e["file"] + ".akget-part"), f"{p}: temporary file left"
    if code:
        assert e["error"] and e["detail"], f"{p}: no reason given"
assert set(seen) == set(want), set(want) - set(seen)
# Nothing else in the folder: no temporary file of any name.
names = sorted(os.listdir(out))
good = sorted(os.path.basename(e["file"]) for e in d["downloads"] if e["ok"])
assert names == good, f"files left: {sorted(set(names) - set(good))}"
# The good ones are whole and right.
def body(n):
    return bytes(((i * 131 + (i >> 8)) % 251) for i in range(n))
for p, n in [("file/1048576", 1048576), ("chunked/300000", 300000), ("close/200000", 200000),
             ("interim/5000", 5000), ("file/77", 77)]:
    got = open(seen[p]["file"], "rb").read()
    assert got == body(n), f"{p}: content differs"
# The named errors.
names = {p: seen[p].get("error") for p in seen}
expect = {"reset/1000000": "ECONNRESET", "short/100000": "AK_EHTTPTRUNCATED",
          "chunkcut/100000": "AK_EHTTPTRUNCATED", "trickle": "AK_EHTTPHEADTIMEOUT",
          "stall/100000": "AK_EHTTPIDLETIMEOUT", "badstatus": "AK_EHTTPPROTO",
          "bigheader": "AK_EHTTPHEADSIZE", "dupcl": "AK_EHTTPLENGTH", "conflictcl": "AK_EHTTPLENGTH",
          "negcl": "AK_EHTTPLENGTH", "hugecl": "AK_EHTTPTOOBIG", "hugechunk": "AK_EHTTPCHUNK",
          "redirect/loop": "AK_EHTTPREDIRECTS", "no/such/file": "HTTP_STATUS"}
for p, n in expect.items():
    assert names[p] == n, f"{p}: error {names[p]}, want {n}"
print("per-URL outcomes as documented:", len(seen), "URLs")
EOF

# Retries: a 503 with Retry-After: 1 is retried after about a second, then works.
start_ns=$(date +%s%N)
"$akget" -q --retries 2 -d "$work/retry" "$base/retry/k1/4096" || fail "503 then 200: exit $?"
elapsed_ms=$(( ($(date +%s%N) - start_ns) / 1000000 ))
((elapsed_ms >= 900)) || fail "Retry-After not honoured (${elapsed_ms} ms)"
[[ $(stat -c %s "$work/retry/4096") == 4096 ]] || fail "retried download incomplete"

# --max-time bounds the whole download, retries and their waits included: a
# server that always answers 503 + Retry-After: 1, with 5 retries allowed,
# ends at 2 s (not after 5 retries) with a timeout: exit 4, no file. The
# upper bound leaves room for a loaded machine (an ASan build beside other
# tests): ignoring --max-time would take 5 s or more, the five 1 s waits.
start_ns=$(date +%s%N)
rc=0; "$akget" -q --retries 5 --max-time 2 -d "$work/mt" --json "$work/mt.json" "$base/busy" || rc=$?
elapsed_ms=$(( ($(date +%s%N) - start_ns) / 1000000 ))
[[ $rc == 4 ]] || fail "--max-time over retries: exit $rc, want 4"
((elapsed_ms >= 1900 && elapsed_ms < 4700)) || fail "--max-time 2 ended after ${elapsed_ms} ms"
[[ ! -e "$work/mt/busy" && ! -e "$work/mt/busy.akget-part" ]] || fail "--max-time left a file"
python3 - "$work/mt.json" <<'EOF'
import json, sys
e = json.load(open(sys.argv[1]))["downloads"][0]
assert e["error"] == "AK_EHTTPTOTALTIMEOUT", e
assert e["retries"] >= 1 and "503" in e["detail"], e
EOF
# ... and a body that stalls (no retry waiting): the same deadline (the
# stall lasts far longer than the bound's room for load).
start_ns=$(date +%s%N)
rc=0; "$akget" -q --retries 5 --max-time 1.5 -d "$work/mt2" "$base/stall/100000" || rc=$?
elapsed_ms=$(( ($(date +%s%N) - start_ns) / 1000000 ))
[[ $rc == 4 ]] && ((elapsed_ms >= 1400 && elapsed_ms < 4500)) ||
  fail "--max-time on a stall: exit $rc after ${elapsed_ms} ms"

# --compressed against broken gzip: each a protocol error (exit 7) or, for a
# body shorter than its Content-Length, a network one (exit 4); no file left;
# the good compressed download of the same run is whole and decoded.
rc=0
"$akget" -q --compressed --retries 0 -d "$work/z" --json "$work/z.json" "$base/z/gzip/300000" \
  "$base/z/deflate/300001" "$base/z/gzipbad/300002" "$base/z/gzipisize/300003" \
  "$base/z/gziptrunc/300004" "$base/z/gzipcl/300005" "$base/z/br/300006" || rc=$?
[[ $rc == 7 ]] || fail "--compressed broken gzip: exit $rc, want 7"
python3 - "$work/z.json" "$base" <<'EOF'
import json, os, sys
d = json.load(open(sys.argv[1]))
want = {"gzip/300000": (0, None), "deflate/300001": (0, None),
        "gzipbad/300002": (7, "AK_EHTTPDECODE"), "gzipisize/300003": (7, "AK_EHTTPDECODE"),
        "gziptrunc/300004": (7, "AK_EHTTPDECODE"), "gzipcl/300005": (4, "AK_EHTTPTRUNCATED"),
        "br/300006": (7, "AK_EHTTPDECODE")}
def body(n):
    return bytes(((i * 131 + (i >> 8)) % 251) for i in range(n))
for e in d["downloads"]:
    p = e["url"][len(sys.argv[2]) + 3:]
    code, err = want.pop(p)
    assert (0 if e["ok"] else e["exit"]) == code, (p, e)
    assert os.path.exists(e["file"]) == (code == 0), (p, "file")
    assert not os.path.exists(e["file"] + ".akget-part"), (p, "temporary file left")
    if code:
        assert e["error"] == err, (p, e)
    else:
        assert e["decoded"], (p, e)
        assert open(e["file"], "rb").read() == body(int(p.split("/")[1])), (p, "content")
assert not want, want
EOF
# Without --compressed nothing is asked and a gzip body is saved as sent.
"$akget" -q -d "$work/z2" "$base/z/gzip/5000" "$base/echo-ae" || fail "no --compressed: exit $?"
[[ $(cat "$work/z2/echo-ae") == "(none)" ]] || fail "Accept-Encoding sent without --compressed"
python3 -c 'import gzip,sys; d=gzip.decompress(open(sys.argv[1],"rb").read()); assert d == bytes(((i*131+(i>>8))%251) for i in range(5000))' \
  "$work/z2/5000" || fail "a gzip body without --compressed is not kept as sent"
"$akget" -q --compressed -d "$work/z3" "$base/echo-ae" || fail "--compressed echo: exit $?"
[[ $(cat "$work/z3/echo-ae") == "gzip, deflate" ]] || fail "--compressed: Accept-Encoding $(cat "$work/z3/echo-ae")"
# A gzip bomb (64 MiB of zeros, about 64 KiB sent) with --max-filesize 1M:
# stopped at the limit, exit 7, no file; and --max-filesize refuses an
# announced Content-Length over it before the body.
rc=0; "$akget" -q --compressed --max-filesize 1M -d "$work/bomb" --json "$work/bomb.json" \
  "$base/z/gzipbomb/67108864" "$base/file/2000000" || rc=$?
[[ $rc == 7 && ! -e "$work/bomb/67108864" && ! -e "$work/bomb/2000000" ]] ||
  fail "--max-filesize: exit $rc"
[[ $(grep -o "\"error\": \"AK_EHTTPTOOBIG\"" "$work/bomb.json" | wc -l) == 2 ]] || fail "--max-filesize: $(cat "$work/bomb.json")"

# --limit-rate: 250,000 bytes at 100 KiB/s: after one second of burst (each
# receive asks for no more than the bucket holds, 16 KiB at least), about
# 1.4 s of waiting; 0.75 s at least. (It failed on epoll with 256 KiB
# receives that took the whole body at once.)
start_ns=$(date +%s%N)
"$akget" -q --limit-rate 100k -d "$work/slow" "$base/file/250000" || fail "--limit-rate: exit $?"
elapsed_ms=$(( ($(date +%s%N) - start_ns) / 1000000 ))
((elapsed_ms >= 750)) || fail "--limit-rate not applied (${elapsed_ms} ms)"
cmp -s <(python3 -c 'import sys; sys.stdout.buffer.write(bytes(((i * 131 + (i >> 8)) % 251) for i in range(250000)))') \
  "$work/slow/250000" || fail "--limit-rate content"

# A reset mid-body is retried (and fails again: exit 4, no file); with -c the
# partial file stays for a later resume, under the temporary name only.
rc=0; "$akget" -q --retries 1 --retry-wait 0.1 -d "$work/r1" "$base/reset/400000" || rc=$?
[[ $rc == 4 && ! -e "$work/r1/400000" && ! -e "$work/r1/400000.akget-part" ]] || fail "reset: exit $rc"
rc=0; "$akget" -q -c --retries 0 -d "$work/r2" "$base/short/400000" || rc=$?
[[ $rc == 4 && ! -e "$work/r2/400000" ]] || fail "short with -c: exit $rc"
[[ $(stat -c %s "$work/r2/400000.akget-part") == 200000 ]] || fail "-c did not keep the partial file"

# While a download runs, its bytes are in an unnamed file (O_TMPFILE): the
# folder shows nothing, and a killed akget (SIGKILL: no clean-up at all)
# leaves nothing. With named temporaries (AKGET_TEST_NO_TMPFILE, the path
# for -c and for filesystems without O_TMPFILE) the .akget-part is there.
for mode in unnamed named; do
  dir="$work/kill-$mode"
  mkdir -p "$dir"
  if [[ $mode == named ]]; then export AKGET_TEST_NO_TMPFILE=1; fi
  "$akget" -q --retries 0 --timeout 20 -d "$dir" "$base/stall/100000" &
  kpid=$!
  unset AKGET_TEST_NO_TMPFILE
  # Wait (5 s at most) for the file's descriptor to show in /proc.
  open=""
  for _ in $(seq 50); do
    open=$(ls -l /proc/$kpid/fd 2>/dev/null | grep -F "$dir" || true)
    [[ -n "$open" ]] && break
    sleep 0.1
  done
  [[ -n "$open" ]] || { kill -9 $kpid; fail "$mode: no file opened in 5 s"; }
  listing=$(ls -A "$dir")
  kill -9 $kpid
  wait $kpid 2>/dev/null || true
  if [[ $mode == unnamed ]]; then
    [[ -z "$listing" ]] || fail "unnamed: the folder shows '$listing' mid-download"
    [[ -z "$(ls -A "$dir")" ]] || fail "unnamed: a killed akget left '$(ls -A "$dir")'"
  else
    [[ "$listing" == "100000.akget-part" ]] || fail "named: mid-download listing '$listing'"
  fi
done
echo "mid-download: an unnamed file, nothing left after SIGKILL"

# The final name exists already: the download replaces it (through a spare
# name renamed over it), and no spare name is left.
mkdir -p "$work/exists"
echo "old contents, longer than the new file is" >"$work/exists/77"
"$akget" -q -d "$work/exists" "$base/file/77" || fail "over an existing file: exit $?"
cmp -s <(python3 -c 'import sys; sys.stdout.buffer.write(bytes(((i * 131 + (i >> 8)) % 251) for i in range(77)))') \
  "$work/exists/77" || fail "over an existing file: content"
[[ "$(ls -A "$work/exists")" == "77" ]] || fail "over an existing file: left $(ls -A "$work/exists")"

# A filesystem without O_TMPFILE (seccomp makes openat with O_TMPFILE fail
# EOPNOTSUPP, and blocks io_uring so the opens are syscalls akget makes on
# its pool): akget says so and uses named temporaries; all files right.
if [[ -n "$launch" ]]; then
  rc=0
  "$launch" --tmpfile-errno 95 "$akget" -v -j 4 -d "$work/notmp" "$base/file/1048576" \
    "$base/file/77" 2>"$work/notmp.err" || rc=$?
  if [[ $rc == 77 ]]; then
    echo "seccomp not available: the O_TMPFILE fallback is not tested here"
  else
    [[ $rc == 0 ]] || { cat "$work/notmp.err" >&2; fail "without O_TMPFILE: exit $rc"; }
    grep -q "no unnamed files (O_TMPFILE)" "$work/notmp.err" || fail "without O_TMPFILE: not said"
    cmp -s <(python3 -c 'import sys; sys.stdout.buffer.write(bytes(((i * 131 + (i >> 8)) % 251) for i in range(1048576)))') \
      "$work/notmp/1048576" || fail "without O_TMPFILE: content"
    [[ "$(ls -A "$work/notmp" | tr '\n' ' ')" == "1048576 77 " ]] ||
      fail "without O_TMPFILE: left $(ls -A "$work/notmp")"
    echo "without O_TMPFILE: named temporaries, all files right"
  fi
fi

# Usage errors: exit 2.
rc=0; "$akget" -q "ftp://x/y" 2>/dev/null || rc=$?; [[ $rc == 2 ]] || fail "bad scheme: exit $rc"
rc=0; "$akget" -q -j 0 "$base/file/1" 2>/dev/null || rc=$?; [[ $rc == 2 ]] || fail "-j 0: exit $rc"
rc=0; "$akget" -q 2>/dev/null || rc=$?; [[ $rc == 2 ]] || fail "no URL: exit $rc"
# https to a port that answers in plain HTTP: a TLS failure, exit 5.
rc=0; "$akget" -q -d "$work/tls" "https://localhost:$port/file/10" 2>"$work/err" || rc=$?
[[ $rc == 5 && ! -e "$work/tls/10" ]] || fail "https to plain HTTP: exit $rc"
# A local IO error: -d names a file, so the temporary file cannot be made
# (ENOTDIR, even for root): exit 3.
: >"$work/afile"
rc=0; "$akget" -q -d "$work/afile" "$base/file/10" 2>/dev/null || rc=$?
[[ $rc == 3 ]] || fail "unwritable directory: exit $rc"
echo "akget against httpbad: ok"
