#!/usr/bin/env bash
# test_akget_credentials.sh: akget's credentials against servers that want
# Basic and record what they were sent (tests/authserver.py, two of them on
# different ports): --user, user:password@ in the URL, --netrc-file and
# --netrc (entries chosen by host, default last); Authorization and Cookie
# (from credentials or -H) not carried by a redirect to another port or
# host, kept on the same origin and with --location-trusted; passwords in
# no output (-v, --json, errors).
#
# Usage: test_akget_credentials.sh AKGET
set -euo pipefail
akget="$1"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
work="$(mktemp -d "${TMPDIR:-/tmp}/ak-akget-cred.XXXXXX")"
spids=()
cleanup() {
  set +e
  for p in "${spids[@]}"; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
  rm -rf "$work"
}
trap cleanup EXIT
fail() { printf 'FAIL: %s\n' "$*" >&2; exit 1; }
command -v python3 >/dev/null || { echo "python3 not installed: skipped"; exit 77; }
unset http_proxy https_proxy HTTPS_PROXY all_proxy ALL_PROXY no_proxy NO_PROXY

start_server() { # NAME -> sets PORT_<NAME>
  python3 "$here/authserver.py" --port-file "$work/$1.port" --log "$work/$1.log" \
    --want 'user:s3cr:et' --max-seconds 240 &
  spids+=($!)
  for _ in $(seq 100); do [[ -s "$work/$1.port" ]] && break; sleep 0.05; done
  [[ -s "$work/$1.port" ]] || fail "authserver $1 did not start"
  eval "PORT_$1=$(cat "$work/$1.port")"
}
start_server a
start_server b
A="http://127.0.0.1:$PORT_a"
B="http://127.0.0.1:$PORT_b"
expect_body() { # FILE N: the server's body of N bytes
  python3 -c "import sys; sys.stdout.buffer.write(bytes((i*7+3)&255 for i in range($2)))" >"$work/want"
  cmp -s "$work/want" "$1" || fail "$1 is not the server's body"
}
# The last record for PATH in server LOG: its authorization and cookie.
seen() { # LOG PATH FIELD
  python3 - "$1" "$2" "$3" <<'PY'
import json, sys
last = None
for line in open(sys.argv[1]):
    r = json.loads(line)
    if r["path"] == sys.argv[2]:
        last = r
print("MISSING" if last is None else (last[sys.argv[3]] or "NONE"))
PY
}
run() { set +e; "$akget" "$@"; local rc=$?; set -e; return $rc; }
basic=$(printf 'user:s3cr:et' | base64)

# --user, and user:password@ (the password holds a ':' percent-encoded).
"$akget" -q --user 'user:s3cr:et' -o "$work/u1" "$A/basic/1000" || fail "--user: exit $?"
expect_body "$work/u1" 1000
[[ "$(seen "$work/a.log" /basic/1000 authorization)" == "Basic $basic" ]] || fail "--user: no Basic"
"$akget" -v -o "$work/u2" --json "$work/u2.json" "http://user:s3cr%3Aet@127.0.0.1:$PORT_a/basic/2000" \
  2>"$work/u2.err" || fail "user:password@: exit $?"
expect_body "$work/u2" 2000
rc=0; run -q --retries 0 -o "$work/u3" "$A/basic/3000" 2>/dev/null || rc=$?
((rc == 8)) || fail "no credentials: exit $rc, want 8 (401)"
rc=0; run -v --retries 0 -o "$work/u4" --json "$work/u4.json" "http://user:wrong-pw@127.0.0.1:$PORT_a/basic/3000" \
  2>"$work/u4.err" || rc=$?
((rc == 8)) || fail "wrong password: exit $rc, want 8"
for f in "$work"/u2.err "$work"/u2.json "$work"/u4.err "$work"/u4.json; do
  ! grep -q -e "s3cr" -e "wrong-pw" -e "$basic" "$f" || fail "a password in $f"
done
grep -q "127.0.0.1:$PORT_a/basic/2000" "$work/u2.json" || fail "--json lost the URL"
echo "--user and user:password@: ok, no password in -v or --json"

# netrc: the entry of the URL's host; default when none matches.
cat >"$work/netrc" <<NETRC
machine localhost login user password wrong
machine 127.0.0.1
  login user
  password "s3cr:et"
macdef init
machine 127.0.0.1 login x password y

default login user password nope
NETRC
"$akget" -q --netrc-file "$work/netrc" -o "$work/n1" "$A/basic/1500" || fail "netrc 127.0.0.1: exit $?"
expect_body "$work/n1" 1500
rc=0; run -q --retries 0 --netrc-file "$work/netrc" -o "$work/n2" "http://localhost:$PORT_a/basic/1500" \
  2>/dev/null || rc=$?
((rc == 8)) || fail "netrc localhost entry (wrong password) was not the one used: exit $rc"
[[ "$(seen "$work/a.log" /basic/1500 authorization)" == "Basic $(printf user:wrong | base64)" ]] ||
  fail "netrc: localhost's entry not sent for localhost"
cp "$work/netrc" "$work/.netrc"
HOME="$work" "$akget" -q --netrc -o "$work/n3" "$A/basic/1600" || fail "--netrc (~/.netrc): exit $?"
rc=0; run -q --netrc-file "$work/absent" -o "$work/n4" "$A/basic/1600" 2>/dev/null || rc=$?
((rc == 2)) || fail "a missing --netrc-file: exit $rc, want 2"
printf 'default login user password s3cr:et\n' >"$work/netrc2"
"$akget" -q --netrc-file "$work/netrc2" -o "$work/n5" "$A/basic/1700" || fail "netrc default: exit $?"
echo "netrc: ok"

# Redirects: credentials and cookies stay with their origin.
enc() { python3 -c 'import sys, urllib.parse; print(urllib.parse.quote(sys.argv[1], safe=""))' "$1"; }
# To another port: dropped (the --user credentials, -H Cookie, -H Authorization).
"$akget" -q --user 'user:s3cr:et' -H 'Cookie: sid=42' -o "$work/r1" "$A/to?url=$(enc "$B/open/100")" ||
  fail "redirect to another port: exit $?"
expect_body "$work/r1" 100
[[ "$(seen "$work/a.log" "/to?url=$(enc "$B/open/100")" authorization)" == "Basic $basic" ]] ||
  fail "the first server did not get the credentials"
[[ "$(seen "$work/b.log" /open/100 authorization)" == NONE ]] || fail "Authorization went to another port"
[[ "$(seen "$work/b.log" /open/100 cookie)" == NONE ]] || fail "Cookie went to another port"
"$akget" -q -H 'Authorization: Bearer tok' -o "$work/r2" "$A/to?url=$(enc "$B/open/101")" ||
  fail "redirect with -H Authorization: exit $?"
[[ "$(seen "$work/b.log" /open/101 authorization)" == NONE ]] || fail "-H Authorization went to another port"
# To another host on the same port: dropped too.
"$akget" -q --user 'user:s3cr:et' -H 'Cookie: sid=42' -o "$work/r3" \
  "$A/to?url=$(enc "http://localhost:$PORT_a/open/102")" || fail "redirect to another host: exit $?"
[[ "$(seen "$work/a.log" /open/102 authorization)" == NONE ]] || fail "Authorization went to another host"
[[ "$(seen "$work/a.log" /open/102 cookie)" == NONE ]] || fail "Cookie went to another host"
# The same origin: kept.
"$akget" -q --user 'user:s3cr:et' -H 'Cookie: sid=42' -o "$work/r4" "$A/to?url=$(enc "$A/basic/103")" ||
  fail "redirect to the same origin: exit $?"
[[ "$(seen "$work/a.log" /basic/103 cookie)" == "sid=42" ]] || fail "Cookie lost on the same origin"
# --location-trusted: kept everywhere.
"$akget" -q --location-trusted --user 'user:s3cr:et' -H 'Cookie: sid=42' -o "$work/r5" \
  "$A/to?url=$(enc "$B/basic/104")" || fail "--location-trusted: exit $?"
expect_body "$work/r5" 104
[[ "$(seen "$work/b.log" /basic/104 authorization)" == "Basic $basic" ]] ||
  fail "--location-trusted did not keep Authorization"
[[ "$(seen "$work/b.log" /basic/104 cookie)" == "sid=42" ]] || fail "--location-trusted did not keep Cookie"
# URL credentials follow the same rule.
"$akget" -q -o "$work/r6" "http://user:s3cr%3Aet@127.0.0.1:$PORT_a/to?url=$(enc "$B/open/105")" ||
  fail "URL credentials, redirect: exit $?"
[[ "$(seen "$work/b.log" /open/105 authorization)" == NONE ]] || fail "URL credentials went to another port"
echo "redirects: Authorization and Cookie dropped off-origin, kept on-origin and with --location-trusted: ok"
