#!/usr/bin/env bash
# test_akbench_mirror_floor.sh: akbench mirror's reference client
# (tools/akbench/mirror_floor.c) against a real nginx started here: over a
# copy akget made (mtimes from Last-Modified, ETags in user.akget.etag)
# every answer is a 304 at N = 1, 5 and 32, each request carries the
# file's If-Modified-Since and If-None-Match (nginx's log), and the
# connections are the ones asked for; a stale ETag, a touched file, a
# server that closes, one that never answers, a closed port and bad
# arguments each fail with their cause named. Exit 77 (skip) when nginx is
# not installed.
#
# Usage: test_akbench_mirror_floor.sh FLOOR AKGET
set -euo pipefail
floor="$1" akget="$2"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$here/nginx_env.sh"
nginx_test_work akbench-mirror-floor
fail() { printf 'FAIL: %s\n' "$*" >&2; exit 1; }

root="$work/root"
mkdir -p "$root/m"
for i in $(seq -w 1 40); do head -c $((RANDOM % 3000 + 1)) /dev/urandom >"$root/m/f$i"; done
touch -d '2011-12-13 14:15:16 UTC' "$root/m"/f*
chmod -R a+rX "$root"
NGINX_LOG_EXTRA='"$http_if_modified_since" "$http_if_none_match" $request_method'
nginx_start "$work/state" "$root" || fail "nginx did not start"
log="$work/state/access.log"
for i in $(seq -w 1 40); do echo "http://127.0.0.1:$NGINX_PORT/m/f$i"; done >"$work/list"
out="$work/out"
"$akget" -q -d "$out" -i "$work/list" || fail "akget's copy: exit $?"
etag_of() { python3 -c 'import os,sys
try: print(os.getxattr(sys.argv[1], "user.akget.etag").decode())
except OSError: print("")' "$1"; }
have_etag=1
[[ -n "$(etag_of "$out/f01")" ]] || have_etag=0 # a filesystem without user xattrs

# 1. Every file unchanged: 304s, at N = 1, 5 and 32 (default connections:
# one per 8 of N), and 5 over 5 connections.
# The log's lines of one run (its first field the connection, its third
# the status).
for args in "1" "5" "32" "5 5"; do
  before="$(wc -l <"$log")"
  line="$("$floor" "$NGINX_PORT" "$out" /m $args)" || fail "N/CONNS $args: exit $?"
  [[ "$line" == "40 answers, all 304, "* ]] || fail "N/CONNS $args: said '$line'"
  tail -n +"$((before + 1))" "$log" >"$work/run.log"
  [[ "$(awk '$3 == 304 && / HEAD$/' "$work/run.log" | wc -l)" == 40 ]] ||
    fail "N/CONNS $args: not 40 HEADs answered 304 in the log"
  # Each request asked with the file's date (and its ETag where kept).
  n_ims="$(grep -c '"Tue, 13 Dec 2011 14:15:16 GMT"' "$work/run.log" || true)"
  [[ "$n_ims" == 40 ]] || fail "N/CONNS $args: $n_ims of 40 with the file's If-Modified-Since"
  if ((have_etag)); then
    # (nginx logs the ETag's own quotes as \x22)
    tag="$(etag_of "$out/f07" | tr -d '"')"
    grep -q "^[0-9]* [0-9]* 304 /m/f07 .*$tag.* HEAD\$" "$work/run.log" ||
      fail "N/CONNS $args: f07's ETag was not sent"
    ! grep -q '"-" HEAD$' "$work/run.log" || fail "N/CONNS $args: a HEAD without If-None-Match"
  fi
  set -- $args
  want_conns="${2:-$(( ($1 + 7) / 8 ))}"
  conns="$(awk '{print $1}' "$work/run.log" | sort -u | wc -l)"
  [[ "$conns" == "$want_conns" ]] || fail "N/CONNS $args: $conns connections, not $want_conns"
done

# 2. A stale ETag: nginx sends the file (200), the client says which.
if ((have_etag)); then
  python3 -c 'import os,sys; os.setxattr(sys.argv[1], "user.akget.etag", b"\"stale\"")' "$out/f13"
  if err="$("$floor" "$NGINX_PORT" "$out" /m 5 2>&1)"; then fail "a stale ETag passed"; fi
  [[ "$err" == *"f13: answered \"HTTP/1.1 200 OK\", not 304"* ]] || fail "stale ETag: said '$err'"
  "$akget" -q -N -d "$out" -i "$work/list" || fail "akget -N to mend f13: exit $?"
fi

# 3. A local file with another mtime: not 304 either.
touch -d '2012-01-01 00:00:00 UTC' "$out/f21"
if err="$("$floor" "$NGINX_PORT" "$out" /m 32 2>&1)"; then fail "a touched file passed"; fi
[[ "$err" == *"f21: answered \"HTTP/1.1 200 OK\", not 304"* ]] || fail "touched: said '$err'"
touch -d '2011-12-13 14:15:16 UTC' "$out/f21"
"$floor" "$NGINX_PORT" "$out" /m 32 >/dev/null || fail "after the mend: exit $?"

# 4. Bad arguments and a directory that cannot be read: exit 2 before any
# request.
mkdir "$work/empty"
for args in "$NGINX_PORT $out /m 0" "$NGINX_PORT $out /m 5 6" "0 $out /m 5" "$NGINX_PORT $out /m x" \
            "$NGINX_PORT $work/none /m 5" "$NGINX_PORT $work/empty /m 5" "$NGINX_PORT $out"; do
  set +e
  "$floor" $args >/dev/null 2>"$work/err"
  rc=$?
  set -e
  [[ "$rc" == 2 ]] || fail "'$args': exit $rc, not 2"
  [[ -s "$work/err" ]] || fail "'$args': no message"
done
AKBENCH_FLOOR_WAIT_MS=0 "$floor" "$NGINX_PORT" "$out" /m 5 >/dev/null 2>&1 && fail "a wait of 0 ms taken"

# 5. Servers that fail it: one that closes each connection it accepts, one
# that reads and never answers (bounded by AKBENCH_FLOOR_WAIT_MS), and a
# port nobody listens on. Each is exit 1 with its cause.
python3 - "$work" <<'EOF' &
import socket, sys, threading, time
def serve(name, handle):
    s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen(16)
    open(sys.argv[1] + '/' + name, 'w').write(str(s.getsockname()[1]))
    s.settimeout(20)
    try:
        while True:
            c, _ = s.accept()
            handle(c)
    except OSError:
        pass
def closer(c):
    c.recv(4096); c.close()
held = []
def silent(c):
    held.append(c)  # read nothing, answer nothing, keep it open
threading.Thread(target=serve, args=('closer.port', closer), daemon=True).start()
threading.Thread(target=serve, args=('silent.port', silent), daemon=True).start()
time.sleep(20)
EOF
servers=$!
trap 'set +e; kill "$servers" 2>/dev/null; nginx_stop; rm -rf "$work"' EXIT
for _ in $(seq 50); do [[ -s "$work/closer.port" && -s "$work/silent.port" ]] && break; sleep 0.1; done
[[ -s "$work/silent.port" ]] || fail "the python servers did not start"
set +e
err="$("$floor" "$(cat "$work/closer.port")" "$out" /m 5 2>&1)"; rc=$?
[[ "$rc" == 1 && "$err" == *"closed a connection with 5 requests unanswered"* ]] ||
  fail "closing server: exit $rc, '$err'"
start=$(date +%s%N)
err="$(AKBENCH_FLOOR_WAIT_MS=300 "$floor" "$(cat "$work/silent.port")" "$out" /m 5 2>&1)"; rc=$?
took_ms=$(( ($(date +%s%N) - start) / 1000000 ))
[[ "$rc" == 1 && "$err" == *"no answer for 300 ms after 0 of 40 answers"* ]] ||
  fail "silent server: exit $rc, '$err'"
((took_ms < 5000)) || fail "silent server: took $took_ms ms"
nginx_stop
err="$("$floor" "$NGINX_PORT" "$out" /m 5 2>&1)"; rc=$?
set -e
[[ "$rc" == 1 && "$err" == *"Connection refused"* ]] || fail "closed port: exit $rc, '$err'"
kill "$servers" 2>/dev/null || true
echo "ok"
