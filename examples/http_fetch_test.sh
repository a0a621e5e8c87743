#!/bin/sh
# http_fetch_test.sh: runs examples/http_fetch against a local HTTP server
# it starts (python3 -m http.server on 127.0.0.1, a port the kernel picks):
# two files fetched at once come out whole and in order; a missing one
# fails with its 404; a body over --max fails AK_EHTTPTOOBIG. Exit 77
# (skip) without python3.
#   http_fetch_test.sh HTTP_FETCH
set -eu
fetch=$1
command -v python3 >/dev/null 2>&1 || { echo "http_fetch_test: no python3"; exit 77; }
dir=$(mktemp -d)
trap 'kill "$spid" 2>/dev/null || true; rm -rf "$dir"' EXIT
mkdir "$dir/www"
head -c 300000 /dev/urandom >"$dir/www/a.bin"
printf 'second file\n' >"$dir/www/b.txt"
python3 -u -m http.server 0 --bind 127.0.0.1 --directory "$dir/www" >"$dir/server.log" 2>&1 &
spid=$!
port=
i=0
while [ -z "$port" ] && [ $i -lt 300 ]; do   # at most 30 s for the port (python starts slowly on a busy machine)
  port=$(sed -n 's/^Serving HTTP on .* port \([0-9]*\) .*/\1/p' "$dir/server.log")
  [ -n "$port" ] || sleep 0.1
  i=$((i + 1))
done
[ -n "$port" ] || { echo "http_fetch_test: server did not start" >&2; cat "$dir/server.log" >&2; exit 1; }
base=http://127.0.0.1:$port

"$fetch" "$base/a.bin" "$base/b.txt" >"$dir/out" 2>"$dir/err" || { cat "$dir/err" >&2; exit 1; }
cat "$dir/www/a.bin" "$dir/www/b.txt" | cmp - "$dir/out"
grep -q "^200 300000 $base/a.bin$" "$dir/err"
grep -q "^200 12 $base/b.txt$" "$dir/err"

rc=0
"$fetch" "$base/b.txt" "$base/missing" >"$dir/out" 2>"$dir/err" || rc=$?
[ "$rc" = 1 ] || { echo "http_fetch_test: a 404 exited $rc" >&2; exit 1; }
grep -q "^404 failed: $base/missing: 404" "$dir/err" || { cat "$dir/err" >&2; exit 1; }
cmp "$dir/www/b.txt" "$dir/out"   # the good one still printed

rc=0
"$fetch" --max 1000 "$base/a.bin" >"$dir/out" 2>"$dir/err" || rc=$?
[ "$rc" = 1 ] || { echo "http_fetch_test: over --max exited $rc" >&2; exit 1; }
grep -q "AK_EHTTPTOOBIG" "$dir/err" || { cat "$dir/err" >&2; exit 1; }
[ ! -s "$dir/out" ]
echo "http_fetch_test: ok"
