#!/usr/bin/env bash
# test_akget_checksums.sh: akget --checksums against a real nginx started
# here: a sha256sum list (match; a file not in the list reported in -v and
# --json), a mismatch (exit 6, the file not linked in, no part file left),
# malformed lists (exit 2 before any request: the access log stays empty),
# the BSD tag form with md5/sha1/sha512 lines, the list fetched by URL, and
# -N: an unchanged (304) file is not hashed again (a wrong sum for it does
# not fail the run; --json says "not_hashed"), a changed one is. Exit 77
# (skip) when nginx is not installed.
#
# Usage: test_akget_checksums.sh AKGET
set -euo pipefail
akget="$1"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$here/nginx_env.sh"
nginx_test_work akget-sums
fail() { printf 'FAIL: %s\n' "$*" >&2; tail -n 5 "$work/state/access.log" >&2 2>/dev/null; exit 1; }

# The "checksum" field of the download whose file ends with $2.
json_sum() { python3 -c 'import json,sys
for d in json.load(open(sys.argv[1]))["downloads"]:
    if d["file"].endswith("/" + sys.argv[2]): print(d.get("checksum", "-"))' "$1" "$2"; }

root="$work/root"
mkdir -p "$root/m"
for f in a b c; do head -c $((RANDOM * 10 + 1000)) /dev/urandom >"$root/m/$f.bin"; done
touch -d '2011-12-13 14:15:16 UTC' "$root/m/"*.bin
chmod -R a+rX "$root"
nginx_start "$work/state" "$root" || fail "nginx did not start"
base="http://127.0.0.1:$NGINX_PORT"
log="$work/state/access.log"
printf '%s\n' "$base/m/a.bin" "$base/m/b.bin" "$base/m/c.bin" >"$work/list"
(cd "$root/m" && sha256sum a.bin b.bin) >"$work/SUMS" # c.bin left out
rc=0

# 1. Match: a and b verified, c downloaded and reported as not listed.
"$akget" -v -d "$work/o1" -i "$work/list" --checksums "$work/SUMS" --json "$work/1.json" \
  2>"$work/1.err" || fail "match: exit $? ($(cat "$work/1.err"))"
for f in a b c; do cmp -s "$root/m/$f.bin" "$work/o1/$f.bin" || fail "$f differs"; done
[[ "$(json_sum "$work/1.json" a.bin) $(json_sum "$work/1.json" b.bin)" == "verified verified" ]] ||
  fail "--json: a, b: $(json_sum "$work/1.json" a.bin) $(json_sum "$work/1.json" b.bin)"
[[ "$(json_sum "$work/1.json" c.bin)" == not_listed ]] || fail "--json: c: $(json_sum "$work/1.json" c.bin)"
grep -q "c.bin: not in the --checksums list" "$work/1.err" || fail "-v does not name c.bin as unlisted"

# 2. Mismatch: b's sum is wrong: exit 6, b not linked in under any name, a
# and c still saved.
sed "s/^[0-9a-f]\{8\}/00000000/" "$work/SUMS" | grep ' b.bin$' >"$work/BAD"
grep ' a.bin$' "$work/SUMS" >>"$work/BAD"
"$akget" -q -d "$work/o2" -i "$work/list" --checksums "$work/BAD" --json "$work/2.json" || rc=$?
[[ $rc == 6 ]] || fail "mismatch: exit $rc, want 6"
[[ ! -e "$work/o2/b.bin" ]] || fail "a file that does not match was linked in"
[[ "$(ls -A "$work/o2" | sort | tr '\n' ' ')" == "a.bin c.bin " ]] ||
  fail "mismatch: left in -d: $(ls -A "$work/o2")"
[[ "$(json_sum "$work/2.json" b.bin)" == mismatch ]] || fail "--json: b: $(json_sum "$work/2.json" b.bin)"

# 3. Malformed lists: exit 2 before anything starts (no request, no -d).
printf 'not a checksum line\n' >"$work/M1"
{ cat "$work/SUMS"; printf '%s  b.bin\n' "$(printf '1%.0s' {1..64})"; } >"$work/M2" # b twice
printf '# only a comment\n\n' >"$work/M3"
printf '%s  a.bin\n' "$(printf 'a%.0s' {1..63})" >"$work/M4" # 63 digits
: >"$log"
for m in M1 M2 M3 M4 missing; do
  rc=0
  "$akget" -q -d "$work/o3" -i "$work/list" --checksums "$work/$m" 2>"$work/3.err" || rc=$?
  [[ $rc == 2 ]] || fail "malformed list $m: exit $rc, want 2"
  grep -q -- "--checksums" "$work/3.err" || fail "malformed list $m: no message"
done
grep -q ":1: not a checksum line" <(
  "$akget" -q -d "$work/o3" -i "$work/list" --checksums "$work/M1" 2>&1 || true) ||
  fail "the message does not give the line number"
[[ ! -s "$log" ]] || fail "a malformed list still let requests out: $(cat "$log")"
[[ ! -e "$work/o3" ]] || fail "a malformed list still made -d"

# 4. The BSD tag form, and other algorithms in one list: md5 (tagged),
# sha1 (untagged, "./name"), sha512 (tagged).
(cd "$root/m" && md5sum --tag a.bin && sha1sum ./b.bin && sha512sum --tag c.bin) >"$work/BSD"
"$akget" -q -d "$work/o4" -i "$work/list" --checksums "$work/BSD" --json "$work/4.json" ||
  fail "BSD form: exit $?"
for f in a b c; do
  [[ "$(json_sum "$work/4.json" $f.bin)" == verified ]] || fail "BSD: $f: $(json_sum "$work/4.json" $f.bin)"
done
md5line=$(grep '^MD5' "$work/BSD")
md5hex=${md5line##*= }
[[ ${md5hex:0:1} == 0 ]] && flip=1 || flip=0
printf '%s= %s%s\n' "${md5line%%= *}" "$flip" "${md5hex:1}" >"$work/BSDBAD" # a's md5, one digit off
rc=0
"$akget" -q -d "$work/o4b" -i "$work/list" --checksums "$work/BSDBAD" || rc=$?
[[ $rc == 6 && ! -e "$work/o4b/a.bin" ]] || fail "BSD md5 mismatch: exit $rc"

# 5. The list by URL (fetched first, with the run's own options).
cp "$work/SUMS" "$root/SUMS" && chmod a+r "$root/SUMS"
"$akget" -q -d "$work/o5" -i "$work/list" --checksums "$base/SUMS" --json "$work/5.json" ||
  fail "list by URL: exit $?"
[[ "$(json_sum "$work/5.json" a.bin)" == verified ]] || fail "list by URL: a not verified"
: >"$log"
rc=0
"$akget" -q -d "$work/o5b" -i "$work/list" --checksums "$base/NOSUCH" 2>/dev/null || rc=$?
[[ $rc == 8 ]] || fail "a list URL answering 404: exit $rc, want 8"
[[ "$(wc -l <"$log")" == 1 ]] || fail "a list that could not be fetched still let downloads out"

# 6. -N over the unchanged tree with BAD (a WRONG sum for b, a right one for
# a): the 304s keep a and b as they are and do not hash them (exit 0,
# --json "not_hashed" for both); c is not listed.
before=$(stat -c '%i %Y' "$work/o1"/*.bin)
"$akget" -N -q -d "$work/o1" -i "$work/list" --checksums "$work/BAD" --json "$work/6.json" ||
  fail "-N unchanged with a wrong sum for b: exit $? (was it hashed?)"
[[ "$(stat -c '%i %Y' "$work/o1"/*.bin)" == "$before" ]] || fail "-N rewrote an unchanged file"
[[ "$(json_sum "$work/6.json" a.bin) $(json_sum "$work/6.json" b.bin) $(json_sum "$work/6.json" c.bin)" == \
   "not_hashed not_hashed not_listed" ]] ||
  fail "-N --json: $(json_sum "$work/6.json" a.bin) $(json_sum "$work/6.json" b.bin) $(json_sum "$work/6.json" c.bin)"
# b changes on the server: fetched (200) and hashed against the wrong sum:
# exit 6, and the old b stays as it was.
old_b=$(sha256sum <"$work/o1/b.bin")
head -c 5000 /dev/urandom >"$root/m/b.bin"
touch -d '2012-01-01 00:00:00 UTC' "$root/m/b.bin"
rc=0
"$akget" -N -q -d "$work/o1" -i "$work/list" --checksums "$work/BAD" --json "$work/7.json" || rc=$?
[[ $rc == 6 ]] || fail "-N changed file with a wrong sum: exit $rc, want 6"
[[ "$(sha256sum <"$work/o1/b.bin")" == "$old_b" ]] || fail "the mismatching b replaced the old one"
[[ "$(json_sum "$work/7.json" b.bin)" == mismatch ]] || fail "-N changed: b: $(json_sum "$work/7.json" b.bin)"
echo "akget --checksums: all cases passed"
