#!/usr/bin/env bash
# test_akget_content_disposition.sh: akget --content-disposition against a
# real nginx whose locations send Content-Disposition headers: a good name,
# filename*= (RFC 8187, UTF-8, preferred over filename=), a path in the name
# (its last component only, nothing written outside -d), "..", a leading
# dot and control bytes (refused with a message, the URL's name kept), no
# header (the URL's name), and the option off (the URL's name). Exit 77
# (skip) when nginx is not installed.
#
# Usage: test_akget_content_disposition.sh AKGET
set -euo pipefail
akget="$1"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$here/nginx_env.sh"
nginx_test_work akget-cd
fail() { printf 'FAIL: %s\n' "$*" >&2; exit 1; }

root="$work/root"
mkdir -p "$root/cd"
for f in good ext trav trav2 dotdot dot ctl ctl2 none; do
  printf 'body of %s\n' "$f" >"$root/cd/$f"
done
chmod -R a+rX "$root"
# One location per case; the header's value in an nginx double-quoted
# string (its own double quotes escaped).
cd_loc() { printf 'location = /cd/%s { root %s; add_header Content-Disposition "%s"; }\n' \
  "$1" "$root" "${2//\"/\\\"}"; }
NGINX_EXTRA_LOCATIONS="$(
  cd_loc good 'attachment; filename="report 2024.txt"'
  cd_loc ext "attachment; filename=\"plain.txt\"; filename*=UTF-8''%E2%82%AC%20rates.txt"
  cd_loc trav 'attachment; filename="../../etc/passwd-x"'
  cd_loc trav2 "attachment; filename*=UTF-8''..%2F..%2Fdeep.txt"
  cd_loc dotdot 'attachment; filename=".."'
  cd_loc dot 'attachment; filename=".bashrc"'
  cd_loc ctl "attachment; filename*=UTF-8''a%0Ab.txt"
  cd_loc ctl2 "attachment; filename*=UTF-8''a%00b.txt"
)"
export NGINX_EXTRA_LOCATIONS
nginx_start "$work/state" "$root" || { cat "$work/state/error.log" >&2; fail "nginx did not start"; }
base="http://127.0.0.1:$NGINX_PORT"
curl -sI "$base/cd/ext" | grep -qi '^content-disposition:.*filename\*' ||
  fail "nginx does not send the header: $(curl -sI "$base/cd/ext")"

# Each URL alone into its own -d: what name it got, what was said.
get() { # NAME [options]: runs akget on /cd/NAME into $work/out-NAME
  local n="$1"
  shift
  "$akget" "$@" -d "$work/out-$n" "$base/cd/$n" 2>"$work/$n.err" || fail "$n: exit $?"
}
only_file() { ls -A "$work/out-$1"; }

get good --content-disposition
[[ "$(only_file good)" == "report 2024.txt" ]] || fail "good: saved as '$(only_file good)'"
grep -q "body of good" "$work/out-good/report 2024.txt" || fail "good: wrong body"

get ext --content-disposition
[[ "$(only_file ext)" == "€ rates.txt" ]] || fail "filename*=: saved as '$(only_file ext)'"

get trav --content-disposition -v
[[ "$(only_file trav)" == "passwd-x" ]] || fail "../../etc/passwd-x: saved as '$(only_file trav)'"
[[ ! -e "$work/etc" && ! -e "$work/out-trav/../etc" ]] || fail "a name with .. wrote outside -d"
grep -q "last path component" "$work/trav.err" || fail "-v does not say the path was cut"
get trav2 --content-disposition
[[ "$(only_file trav2)" == "deep.txt" ]] || fail "..%2F..%2Fdeep.txt: saved as '$(only_file trav2)'"

# Refused: the URL's name, and a warning without -v.
for n in dotdot dot ctl ctl2; do
  get $n --content-disposition
  [[ "$(only_file $n)" == "$n" ]] || fail "$n: saved as '$(only_file $n)', want the URL's name"
  grep -q "Content-Disposition name is refused" "$work/$n.err" || fail "$n: no message: $(cat "$work/$n.err")"
done
grep -q "starts with a dot" "$work/dot.err" || fail "dot: the reason is not given"
grep -q "control byte" "$work/ctl.err" || fail "ctl: the reason is not given"

get none --content-disposition
[[ "$(only_file none)" == none ]] || fail "no header: saved as '$(only_file none)'"

# Off by default (as wget's): the URL's name.
rm -rf "$work/out-good"
get good
[[ "$(only_file good)" == good ]] || fail "without the option: saved as '$(only_file good)'"
echo "akget --content-disposition: all cases passed"
