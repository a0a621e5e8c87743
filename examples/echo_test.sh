#!/bin/sh
# echo_test.sh: runs examples/echo_server and examples/echo_client against
# each other on loopback: the server serves exactly as many connections as
# the client makes, then exits; both must exit 0.
#   echo_test.sh SERVER CLIENT
set -eu
server=$1
client=$2
out=$(mktemp)
trap 'rm -f "$out"; [ -n "${spid:-}" ] && kill "$spid" 2>/dev/null || true' EXIT
"$server" --port 0 --max-conns 8 >"$out" &
spid=$!
port=
i=0
while [ -z "$port" ] && [ $i -lt 100 ]; do   # at most 10 s for "listening on"
  port=$(sed -n 's/^listening on \([0-9]*\)$/\1/p' "$out")
  [ -n "$port" ] || sleep 0.1
  i=$((i + 1))
done
[ -n "$port" ] || { echo "echo_test: server did not start" >&2; exit 1; }
"$client" --port "$port" --host localhost --conns 8 --messages 2000 --size 100
wait "$spid"
spid=
cat "$out"
