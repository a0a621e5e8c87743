#!/usr/bin/env bash
# test_akget_nginx.sh: akget against a real nginx started here on 127.0.0.1
# (tests/nginx_env.sh): many files checked byte for byte, keep-alive reuse
# (nginx's log counts the connections), redirects (relative, absolute, a
# loop), Range and segmented downloads, resume after an interrupted
# download, 404, and a 503 with Retry-After retried. Exit 77 (skip) when
# nginx is not installed.
#
# Usage: test_akget_nginx.sh AKGET
set -euo pipefail
akget="$1"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$here/nginx_env.sh"
nginx_test_work akget-nginx
fail() { printf 'FAIL: %s\n' "$*" >&2; tail -n 20 "$work/state/error.log" >&2 2>/dev/null; exit 1; }

root="$work/root"
mkdir -p "$root/files"
# 300 files of assorted sizes (0 bytes to 300 KiB) and one of 24 MiB.
for i in $(seq -w 1 300); do
  head -c $(( (10#$i * 7919) % 307200 )) /dev/urandom >"$root/files/f$i.bin"
done
head -c $((24 << 20)) /dev/urandom >"$root/files/big.bin"
# Text that compresses, and its .gz for gzip_static.
mkdir -p "$root/text"
seq 1 400000 | sed 's/$/ some words that repeat/' >"$root/text/words.txt"
gzip -k -6 "$root/text/words.txt"
chmod -R a+rX "$root"
# https with a test CA made now (tests/tls_certs.sh, openssl).
sh "$here/tls_certs.sh" "$work/pki" >/dev/null || fail "could not make test certificates"
chmod -R a+rX "$work/pki"
NGINX_TLS_DIR="$work/pki"
# /slow/: the same files at 1 MB/s per connection (a server or link that
# limits each connection), for -s's growing.
NGINX_EXTRA_LOCATIONS="location /slow/ { alias $root/files/; limit_rate 1m; }"
nginx_start "$work/state" "$root" || fail "nginx did not start"
base="http://127.0.0.1:$NGINX_PORT"
log="$work/state/access.log"

# Many files, 8 at once over at most 4 connections: all right, and the
# connections reused (nginx's $connection numbers: at most a few distinct).
ls "$root/files" | grep '^f' | sed "s|^|$base/files/|" >"$work/list"
: >"$log"
"$akget" -q -j 8 -x 4 -d "$work/many" -i "$work/list" --json "$work/many.json" ||
  fail "many files: exit $?"
for f in "$root"/files/f*.bin; do
  cmp -s "$f" "$work/many/$(basename "$f")" || fail "$(basename "$f") differs"
done
conns=$(awk '{print $1}' "$log" | sort -u | wc -l)
reqs=$(wc -l <"$log")
((reqs == 300)) || fail "nginx saw $reqs requests, want 300"
((conns <= 4)) || fail "$conns connections for 300 requests with -x 4: no keep-alive reuse"
echo "300 files over $conns connections"

# Repeated names: the same name from several URLs gets .1, .2 (wget's
# numbering); nothing is written twice under one name.
"$akget" -q -d "$work/names" "$base/files/f001.bin" "$base/files/f002.bin?x" \
  "$base/files/f001.bin?y" "$base/files/f001.bin" || fail "repeated names: exit $?"
ls "$work/names" | sort | tr '\n' ' ' >"$work/names.ls"
echo "repeated names: $(cat "$work/names.ls")"
[[ "$(cat "$work/names.ls")" == "f001.bin f001.bin.1 f001.bin.2 f002.bin " ]] ||
  fail "repeated names gave: $(cat "$work/names.ls")"
for f in f001.bin f001.bin.1 f001.bin.2; do
  cmp -s "$root/files/f001.bin" "$work/names/$f" || fail "repeated names: $f differs"
done

# Redirects: relative and absolute are followed; a loop is exit 7.
"$akget" -q -d "$work/redir" "$base/redirect/rel" "$base/redirect/abs" || fail "redirects: exit $?"
cmp -s "$root/files/f001.bin" "$work/redir/rel" || fail "relative redirect content"
cmp -s "$root/files/f002.bin" "$work/redir/abs" || fail "absolute redirect content"
rc=0; "$akget" -q -d "$work/loop" "$base/redirect/loop" || rc=$?
[[ $rc == 7 && ! -e "$work/loop/loop" ]] || fail "redirect loop: exit $rc"

# Segmented: 4 Range requests into one file.
: >"$log"
"$akget" -q -s 4 --min-segment 1M -d "$work/seg" "$base/files/big.bin" || fail "segmented: exit $?"
cmp -s "$root/files/big.bin" "$work/seg/big.bin" || fail "segmented content"
ranged=$(grep -c '^.* 206 /files/big.bin' "$log" || true)
((ranged == 4)) || fail "$ranged ranged requests, want 4"
# --all-segments: the 4 parts at once, over 4 connections.
: >"$log"
"$akget" -q -s 4 --all-segments --min-segment 1M -d "$work/segall" "$base/files/big.bin" ||
  fail "--all-segments: exit $?"
cmp -s "$root/files/big.bin" "$work/segall/big.bin" || fail "--all-segments content"
conns=$(grep ' 206 /files/big.bin' "$log" | awk '{print $1}' | sort -u | wc -l)
((conns == 4)) || fail "--all-segments: $conns connections, want 4"
# Growing: where each connection is held to 1 MB/s, -s 4 adds parts while
# each raises the rate (one connection alone would take 24 s). All four:
# nginx sends a limited connection's bytes in one burst a second, and a
# window that held one burst or two read 2.5 MB/s for two parts and 2.7
# for three, which stopped the growing at three (or two, under load).
: >"$log"
"$akget" -v -s 4 --min-segment 1M -d "$work/grow" "$base/slow/big.bin" 2>"$work/grow.err" ||
  fail "growing: exit $?"
cmp -s "$root/files/big.bin" "$work/grow/big.bin" || fail "growing: content"
conns=$(grep ' 206 /slow/big.bin' "$log" | awk '{print $1}' | sort -u | wc -l)
((conns == 4)) || { cat "$work/grow.err" >&2; fail "growing: $conns connections, want 4"; }
grep -q 'segment 4 added' "$work/grow.err" || fail "growing: -v does not say the segments were added"
echo "growing at 1 MB/s per connection: $conns connections"
grep 'segment' "$work/grow.err" || true

# Resume after an interrupted download: a partial file (as an interrupted
# akget -c leaves it) is completed by a Range request for the rest only.
mkdir -p "$work/resume"
head -c 10000000 "$root/files/big.bin" >"$work/resume/big.bin.akget-part"
: >"$log"
"$akget" -q -c -d "$work/resume" "$base/files/big.bin" || fail "resume: exit $?"
cmp -s "$root/files/big.bin" "$work/resume/big.bin" || fail "resumed content"
grep -q ' 206 /files/big.bin 15165824 "bytes=10000000-"' "$log" || fail "resume did not ask for the rest only"
# And a real interruption: kill akget -c mid-download, then resume.
mkdir -p "$work/killed"
"$akget" -q -c -d "$work/killed" "$base/files/big.bin" & apid=$!
for _ in $(seq 100); do
  [[ -s "$work/killed/big.bin.akget-part" ]] && break
  sleep 0.01
done
kill -KILL "$apid" 2>/dev/null || true
wait "$apid" 2>/dev/null || true
"$akget" -q -c -d "$work/killed" "$base/files/big.bin" || fail "resume after kill: exit $?"
cmp -s "$root/files/big.bin" "$work/killed/big.bin" || fail "content after kill and resume"

# 404: exit 8, no file, and the JSON says which URL failed and why; the
# other URL of the run is unaffected.
rc=0
"$akget" -q -d "$work/nf" --json "$work/nf.json" "$base/files/f003.bin" "$base/files/none" || rc=$?
[[ $rc == 8 ]] || fail "404: exit $rc"
[[ ! -e "$work/nf/none" && ! -e "$work/nf/none.akget-part" ]] || fail "404 left a file"
cmp -s "$root/files/f003.bin" "$work/nf/f003.bin" || fail "the good download of the 404 run"
python3 - "$work/nf.json" "$base" <<'EOF' || fail "404 JSON"
import json, sys
d = json.load(open(sys.argv[1]))
bad = [e for e in d["downloads"] if not e["ok"]]
assert d["exit"] == 8 and len(bad) == 1, d
assert bad[0]["url"] == sys.argv[2] + "/files/none" and bad[0]["status"] == 404, bad
assert bad[0]["exit"] == 8 and "404" in bad[0]["detail"], bad
EOF

# 503 with Retry-After: 1, until a file appears: akget waits and retries.
rm -f "$root/flaky-ready"
(sleep 0.5; touch "$root/flaky-ready"; chmod a+r "$root/flaky-ready") & toucher=$!
"$akget" -q --retries 3 -d "$work/flaky" --json "$work/flaky.json" "$base/flaky/f004.bin" ||
  fail "503 retried: exit $?"
wait "$toucher"
cmp -s "$root/files/f004.bin" "$work/flaky/f004.bin" || fail "flaky content"
grep -q '"retries": 1' "$work/flaky.json" || fail "want exactly one retry"

# Checksums: right (exit 0), wrong (exit 6, no file).
sum=$(sha256sum "$root/files/f005.bin" | cut -d' ' -f1)
"$akget" -q -d "$work/ck" --checksum "sha-256=$sum" "$base/files/f005.bin" || fail "checksum ok: exit $?"
bad=$(printf '%s' "$sum" | tr '0-9a-f' '1-9a-f0')
rc=0; "$akget" -q -o "$work/ck/bad.bin" --checksum "sha-256=$bad" "$base/files/f005.bin" || rc=$?
[[ $rc == 6 && ! -e "$work/ck/bad.bin" && ! -e "$work/ck/bad.bin.akget-part" ]] ||
  fail "checksum mismatch: exit $rc"

# --shard: two shards of the list together are the whole list, apart.
"$akget" -q --shard 1/2 -d "$work/s1" -i "$work/list"
"$akget" -q --shard 2/2 -d "$work/s2" -i "$work/list"
n1=$(ls "$work/s1" | wc -l) n2=$(ls "$work/s2" | wc -l)
((n1 + n2 == 300 && n1 > 0 && n2 > 0)) || fail "shards $n1 + $n2"
[[ -z "$(comm -12 <(ls "$work/s1") <(ls "$work/s2"))" ]] || fail "shards overlap"

# --threads 2: the same files, spread over two loops.
"$akget" -q --threads 2 -j 8 -d "$work/t2" -i "$work/list" || fail "--threads 2: exit $?"
for f in "$root"/files/f*.bin; do
  cmp -s "$f" "$work/t2/$(basename "$f")" || fail "--threads: $(basename "$f") differs"
done
# HTTPS: verified against the test CA (--cacert), many files and a
# segmented one; without the CA it is exit 5 and no file; -k is insecure
# but works.
# (by name: mbedtls 2.28 checks DNS names, and the certificate's IP entry
# for 127.0.0.1 is not matched by the TLS layer today)
tbase="https://localhost:$NGINX_TLS_PORT"
sed -n "1,100s|^$base|$tbase|p" "$work/list" >"$work/tlist" # no "| head": with pipefail its SIGPIPE to sed failed the script
"$akget" -q -j 8 -x 4 --cacert "$work/pki/ca.pem" -d "$work/tls" -i "$work/tlist" ||
  fail "https many files: exit $?"
for f in $(sed 's|.*/||' "$work/tlist"); do
  cmp -s "$root/files/$f" "$work/tls/$f" || fail "https: $f differs"
done
"$akget" -q -s 4 --min-segment 1M --cacert "$work/pki/ca.pem" -d "$work/tls" "$tbase/files/big.bin" ||
  fail "https segmented: exit $?"
cmp -s "$root/files/big.bin" "$work/tls/big.bin" || fail "https segmented content"
rc=0; "$akget" -q -d "$work/tls2" "$tbase/files/f001.bin" 2>"$work/tls2.err" || rc=$?
[[ $rc == 5 && ! -e "$work/tls2/f001.bin" && ! -e "$work/tls2/f001.bin.akget-part" ]] ||
  fail "https with an unknown CA: exit $rc"
"$akget" -q -k -d "$work/tls3" "$tbase/files/f001.bin" 2>"$work/tls3.err" || fail "https -k: exit $?"
grep -q 'NOT verified' "$work/tls3.err" || fail "https -k does not say it is insecure (even with -q)"
cmp -s "$root/files/f001.bin" "$work/tls3/f001.bin" || fail "https -k content"
rc=0; "$akget" -q --cacert "$work/nonexistent.pem" -d "$work/tls4" "$tbase/files/f001.bin" 2>/dev/null || rc=$?
[[ $rc == 5 ]] || fail "https with a missing --cacert: exit $rc"

# --compressed: nginx's gzip (chunked) and gzip_static (a Content-Length of
# the .gz): the files saved decoded, byte-exact, with fewer bytes on the wire.
words="$root/text/words.txt"
wsize=$(stat -c %s "$words")
: >"$log"
"$akget" -q --compressed -d "$work/gz" --json "$work/gz.json" "$base/gz/words.txt" ||
  fail "--compressed (gzip on): exit $?"
cmp -s "$words" "$work/gz/words.txt" || fail "--compressed (gzip on) content"
sent=$(awk '$4 == "/gz/words.txt" {print $5}' "$log")
((sent > 0 && sent < wsize / 2)) || fail "gzip on: $sent bytes sent for $wsize"
grep -q '"decoded": true' "$work/gz.json" || fail "--compressed: JSON does not say decoded"
"$akget" -q --compressed -o "$work/gz/static.txt" "$base/gzs/words.txt" || fail "gzip_static: exit $?"
cmp -s "$words" "$work/gz/static.txt" || fail "gzip_static content"
# --checksum checks the decoded file.
sum=$(sha256sum "$words" | cut -d' ' -f1)
"$akget" -q --compressed --checksum "sha-256=$sum" -o "$work/gz/ck.txt" "$base/gz/words.txt" ||
  fail "--compressed --checksum: exit $?"
# Without --compressed nothing is asked: nginx sends the identity body.
: >"$log"
"$akget" -q -o "$work/gz/plain.txt" --json "$work/gzp.json" "$base/gz/words.txt" || fail "identity: exit $?"
cmp -s "$words" "$work/gz/plain.txt" || fail "identity content"
sent=$(awk '$4 == "/gz/words.txt" {print $5}' "$log")
((sent == wsize)) || fail "without --compressed nginx sent $sent bytes, want $wsize (identity)"
grep -q '"decoded": false' "$work/gzp.json" || fail "identity: JSON says decoded"
# -s with --compressed: one connection, no HEAD and no Range (-v says why).
: >"$log"
"$akget" -v --compressed -s 4 --min-segment 64K -o "$work/gz/seg.txt" "$base/gz/words.txt" \
  2>"$work/gzseg.err" || fail "--compressed -s 4: exit $?"
cmp -s "$words" "$work/gz/seg.txt" || fail "--compressed -s 4 content"
[[ $(wc -l <"$log") == 1 ]] && grep -q ' 200 /gz/words.txt [0-9]* "-"$' "$log" || fail "--compressed -s 4: $(cat "$log")"
grep -q 'no segments' "$work/gzseg.err" || fail "--compressed -s 4: -v does not say why"
# -c with --compressed: the rest asked by Range, uncompressed (a range of a
# gzip stream cannot be decoded alone); the file ends up whole.
head -c 1000000 "$words" >"$work/gz/res.txt.akget-part"
: >"$log"
"$akget" -q -c --compressed -o "$work/gz/res.txt" "$base/gz/words.txt" || fail "--compressed -c: exit $?"
cmp -s "$words" "$work/gz/res.txt" || fail "--compressed -c content"
grep -q ' 206 /gz/words.txt [0-9]* "bytes=1000000-"' "$log" || fail "--compressed -c: $(cat "$log")"
echo "akget against nginx: ok"
