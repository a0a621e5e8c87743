#!/usr/bin/env bash
# test_akget_pipelining.sh: akget -N --enable-http-pipelining: the
# conditional HEADs written several at once on a connection (HTTP/1.1
# pipelining), against a real nginx started here (tests/nginx_env.sh; its
# $pipe log field says which requests came pipelined) and a scripted server
# in this test: pipelined 304s leave every file as it is; a changed file in
# the middle is fetched and the others kept; without the flag no request
# is pipelined; a server that closes after k answers has the rest asked
# again and every file right; a HEAD answered with a body fails that HEAD
# alone (its file then fetched by GET) and the other answers stay their
# own; nginx closing connections after 3 requests (keepalive_requests)
# costs no failure; a bad flag value is exit 2. Exit 77 (skip) when nginx is not
# installed.
#
# Usage: test_akget_pipelining.sh AKGET
set -euo pipefail
akget="$1"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$here/nginx_env.sh"
work="$(mktemp -d "${TMPDIR:-/tmp}/ak-akget-pipe.XXXXXX")"
chmod 755 "$work"
spid=""
cleanup() {
  set +e
  nginx_stop
  [[ -n "$spid" ]] && kill "$spid" 2>/dev/null && wait "$spid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT
fail() { printf 'FAIL: %s\n' "$*" >&2; tail -n 5 "$work/state/access.log" >&2 2>/dev/null; exit 1; }

[[ -n "$(nginx_bin)" ]] || { echo "nginx not installed: skipped"; exit 77; }

"$akget" --enable-http-pipelining=0 http://127.0.0.1:1/x 2>/dev/null && fail "depth 0 accepted"
[[ $? == 2 ]] || fail "depth 0: exit $? (want 2)"
"$akget" --enable-http-pipelining=33 http://127.0.0.1:1/x 2>/dev/null && fail "depth 33 accepted"
[[ $? == 2 ]] || fail "depth 33: exit $? (want 2)"

root="$work/root"
mkdir -p "$root/m"
n=40
for i in $(seq 1 $n); do head -c $((i * 1000)) /dev/urandom >"$root/m/f$i.bin"; done
touch -d '2011-12-13 14:15:16 UTC' "$root/m"/f*.bin
chmod -R a+rX "$root"
NGINX_LOG_EXTRA='$pipe $request_method'
# /ka/ serves the same files on connections nginx closes after 3 requests.
NGINX_EXTRA_LOCATIONS="location /ka/ { alias $root/m/; keepalive_requests 3; }"
nginx_start "$work/state" "$root" || fail "nginx did not start"
base="http://127.0.0.1:$NGINX_PORT"
log="$work/state/access.log"
for i in $(seq 1 $n); do echo "$base/m/f$i.bin"; done >"$work/list"
out="$work/out"
"$akget" -q -j 8 -d "$out" -i "$work/list" || fail "first run: exit $?"
stamp() { stat -c '%n %i %Y %s' "$out"/f*.bin; }
before=$(stamp)

# 1. Pipelined 304s: every file asked by one HEAD, answered 304, left as
# it is; nginx saw pipelined requests ($pipe "p") on fewer connections
# than files.
: >"$log"
"$akget" -N -j 8 -x 8 --enable-http-pipelining -d "$out" -i "$work/list" --json "$work/p.json" \
  2>"$work/p.err" || fail "pipelined -N: exit $?"
[[ "$(stamp)" == "$before" ]] || fail "pipelined -N rewrote a file"
[[ "$(awk '{print $3, $NF}' "$log" | sort | uniq -c | awk '{print $1, $2, $3}')" == "$n 304 HEAD" ]] ||
  fail "pipelined -N: nginx answered $(awk '{print $3, $NF}' "$log" | sort | uniq -c | tr '\n' ' ')"
grep -q "0 of $n downloaded, $n unchanged, 0 failed" "$work/p.err" ||
  fail "summary: $(tail -n 1 "$work/p.err")"
(($(awk '$(NF-1) == "p"' "$log" | wc -l) > 0)) || fail "no request came pipelined"
(($(awk '{print $1}' "$log" | sort -u | wc -l) < n)) || fail "a connection per file"

# 2. Without the flag: the same answers, none pipelined (as before).
: >"$log"
"$akget" -q -N -j 8 -x 8 -d "$out" -i "$work/list" || fail "-N without the flag: exit $?"
[[ "$(stamp)" == "$before" ]] || fail "-N without the flag rewrote a file"
[[ "$(awk '{print $3, $NF}' "$log" | sort | uniq -c | awk '{print $1, $2, $3}')" == "$n 304 HEAD" ]] ||
  fail "-N without the flag: $(awk '{print $3, $NF}' "$log" | sort | uniq -c | tr '\n' ' ')"
(($(awk '$(NF-1) == "p"' "$log" | wc -l) == 0)) || fail "pipelined without the flag"
"$akget" -q -N -j 8 -x 8 --enable-http-pipelining=false -d "$out" -i "$work/list" ||
  fail "=false: exit $?"
(($(awk '$(NF-1) == "p"' "$log" | wc -l) == 0)) || fail "pipelined with =false"

# 2b. nginx closes each connection after 3 answers (keepalive_requests 3),
# with pipelined requests still unanswered on it: those are asked again on
# other connections, none fails, every file is left as it is.
sed "s|$base/m/|$base/ka/|" "$work/list" >"$work/ka.list"
: >"$log"
"$akget" -N -j 8 -x 8 --enable-http-pipelining -d "$out" -i "$work/ka.list" 2>"$work/ka.err" ||
  fail "keepalive_requests 3: exit $? ($(tail -n 2 "$work/ka.err"))"
[[ "$(stamp)" == "$before" ]] || fail "keepalive_requests 3: a file rewritten"
grep -q "0 of $n downloaded, $n unchanged, 0 failed" "$work/ka.err" ||
  fail "keepalive_requests 3: $(tail -n 1 "$work/ka.err")"
[[ "$(awk '{print $3, $NF}' "$log" | sort | uniq -c | awk '{print $1, $2, $3}')" == "$n 304 HEAD" ]] ||
  fail "keepalive_requests 3: $(awk '{print $3, $NF}' "$log" | sort | uniq -c | tr '\n' ' ')"
(($(awk '{print $1}' "$log" | sort -u | wc -l) >= n / 3)) || fail "keepalive_requests 3 not applied"

# 3. Mixed 304 and 200: three files changed among the others (at the
# start, in the middle, at the end of the list) are fetched (HEAD, then
# GET) and replaced; the others stay as they were.
for i in 1 17 $n; do
  head -c 7777 /dev/urandom >"$root/m/f$i.bin"
  touch -d '2020-01-01 00:00:00 UTC' "$root/m/f$i.bin"
done
chmod -R a+rX "$root"
: >"$log"
"$akget" -q -N -j 8 -x 8 --enable-http-pipelining=4 -d "$out" -i "$work/list" --json "$work/m.json" ||
  fail "mixed: exit $?"
for i in $(seq 1 $n); do
  cmp -s "$root/m/f$i.bin" "$out/f$i.bin" || fail "mixed: f$i differs"
done
[[ "$(grep -c ' 200 .* GET$' "$log")" == 3 && "$(grep -c ' 304 .* HEAD$' "$log")" == $((n - 3)) ]] ||
  fail "mixed: $(awk '{print $3, $NF}' "$log" | sort | uniq -c | tr '\n' ' ')"
[[ "$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["unchanged"])' "$work/m.json")" == $((n - 3)) ]] ||
  fail "mixed: --json unchanged"

# 4. A scripted server (bounded: every wait 10 s, the server killed at
# exit): connection c answers CLOSE_AFTER[c] requests and then closes
# (FIN, after which what comes is read and dropped); its log has a line
# per request answered, and "DROP" before each one read and not answered. HEAD /sNN with the
# file's date unchanged: 304; /changed: 200 and its body to a GET; /body: a
# 200 to HEAD sent with its body (the server bug), its GET the same body.
cat >"$work/server.py" <<'PY'
import os, socket, sys, threading
script = [int(x) for x in sys.argv[2].split(',')] if sys.argv[2] else []
lst = socket.socket(); lst.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
lst.bind(('127.0.0.1', 0)); lst.listen(64)
with open(sys.argv[1], 'w') as f: f.write(str(lst.getsockname()[1]))
lst.settimeout(30)
body = b'changed body\n'
log = open(sys.argv[3], 'a', buffering=1)
def answer(c, method, path):
    if path.startswith('/changed'):
        c.sendall(b'HTTP/1.1 200 OK\r\nContent-Length: %d\r\nLast-Modified: Mon, 01 Jan 2024 00:00:00 GMT\r\n\r\n' % len(body) + (body if method == 'GET' else b''))
    elif path.startswith('/body'):
        c.sendall(b'HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n' % len(body) + body)
    else:
        c.sendall(b'HTTP/1.1 304 Not Modified\r\n\r\n')
def serve(c, limit):
    c.settimeout(10); buf = b''; done = 0
    try:
        while limit < 0 or done < limit:
            d = c.recv(65536)
            if not d: return
            buf += d
            while b'\r\n\r\n' in buf:
                head, buf = buf.split(b'\r\n\r\n', 1)
                method, path = head.split(b' ')[:2]
                if limit >= 0 and done >= limit:
                    log.write('DROP %s %s\n' % (method.decode(), path.decode()))
                    continue
                log.write('%s %s\n' % (method.decode(), path.decode()))
                answer(c, method.decode(), path.decode()); done += 1
        c.shutdown(socket.SHUT_WR)
        while c.recv(65536): pass
    except OSError: pass
    finally: c.close()
n = 0
while True:
    try: c, _ = lst.accept()
    except OSError: break
    limit = script[n] if n < len(script) else -1; n += 1
    threading.Thread(target=serve, args=(c, limit), daemon=True).start()
PY
start_server() { # CLOSE_AFTER list
  rm -f "$work/port"
  python3 "$work/server.py" "$work/port" "$1" "$work/slog" &
  spid=$!
  for _ in $(seq 100); do [[ -s "$work/port" ]] && break; sleep 0.05; done
  [[ -s "$work/port" ]] || fail "the scripted server did not start"
  sbase="http://127.0.0.1:$(cat "$work/port")"
}
stop_server() { kill "$spid" 2>/dev/null; wait "$spid" 2>/dev/null || true; spid=""; }

sout="$work/sout"
mkdir -p "$sout"
m=12
: >"$work/slist"
for i in $(seq -w 1 $m); do
  echo "unchanged $i" >"$sout/s$i"
  touch -d '2011-12-13 14:15:16 UTC' "$sout/s$i"
done
echo "old" >"$sout/changed"
echo "old" >"$sout/body"
touch -d '2011-12-13 14:15:16 UTC' "$sout/changed" "$sout/body"
sbefore=$(stat -c '%n %i %Y %s' "$sout"/s*)

# 4a. Connection 1 answers 3, connection 2 answers 4, connection 3 closes
# before answering, then all: every HEAD answered, files right, exit 0.
start_server "3,4,0"
: >"$work/slist"
for i in $(seq -w 1 $m); do echo "$sbase/s$i"; done >>"$work/slist"
echo "$sbase/changed" >>"$work/slist"
: >"$work/slog"
timeout -k 5 60 "$akget" -N -j 16 -x 1 --enable-http-pipelining=16 -d "$sout" -i "$work/slist" \
  --json "$work/s.json" 2>"$work/s.err" || fail "close after k: exit $? ($(tail -n 3 "$work/s.err"))"
stop_server
[[ "$(stat -c '%n %i %Y %s' "$sout"/s*)" == "$sbefore" ]] || fail "close after k: a kept file changed"
[[ "$(cat "$sout/changed")" == "changed body" ]] || fail "close after k: /changed not fetched"
grep -q "1 of $((m + 1)) downloaded, $m unchanged, 0 failed" "$work/s.err" ||
  fail "close after k: summary $(tail -n 1 "$work/s.err")"
# Every request dropped by a close was asked again and answered; each
# file's HEAD was answered once.
[[ "$(grep -c '^HEAD' "$work/slog")" == $((m + 1)) ]] ||
  fail "close after k: answered $(grep '^HEAD' "$work/slog" | tr '\n' ' ')"
(($(grep -c '^DROP' "$work/slog") > 0)) || fail "close after k: the closes dropped nothing (no pipeline)"
[[ "$(grep -c '^GET' "$work/slog")" == 1 ]] || fail "close after k: GETs $(grep '^GET' "$work/slog")"

# 4b. A HEAD answered with a body (the server bug): that HEAD fails, its
# file is fetched by the GET that follows; the answers after it are their
# own (all 304: nothing else rewritten).
start_server ""
: >"$work/slist"
for i in $(seq -f %02g 1 5); do echo "$sbase/s$i"; done >>"$work/slist"
echo "$sbase/body" >>"$work/slist"
for i in $(seq -f %02g 6 $m); do echo "$sbase/s$i"; done >>"$work/slist"
: >"$work/slog"
timeout -k 5 60 "$akget" -N -v -j 16 -x 1 --enable-http-pipelining=16 -d "$sout" -i "$work/slist" \
  2>"$work/b.err" || fail "HEAD with a body: exit $? ($(cat "$work/b.err"))"
stop_server
[[ "$(stat -c '%n %i %Y %s' "$sout"/s*)" == "$sbefore" ]] || fail "HEAD with a body: a kept file changed"
[[ "$(cat "$sout/body")" == "changed body" ]] || fail "HEAD with a body: /body not fetched"
grep -q "0 failed" "$work/b.err" || fail "HEAD with a body: $(tail -n 1 "$work/b.err")"
[[ "$(grep -c '^GET /body' "$work/slog")" == 1 && "$(grep -c '^GET' "$work/slog")" == 1 ]] ||
  fail "HEAD with a body: GETs $(grep '^GET' "$work/slog" | tr '\n' ' ')"
echo "ok"
