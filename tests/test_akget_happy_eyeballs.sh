#!/usr/bin/env bash
# test_akget_happy_eyeballs.sh: akget racing the address families (RFC 8305)
# against an address whose SYNs are dropped, inside a network and mount
# namespace this test makes (unshare -n -m, as root): a veth pair whose
# peer has no address takes the packets sent to 2001:db8:9::2 and
# 10.99.0.2 (static neighbour entries, so not even neighbour discovery
# answers) and drops them; /etc/hosts (bind-mounted in the namespace only)
# gives dual.test the black-holed IPv6 address and 127.0.0.1, and
# dual4.test the black-holed IPv4 address and fd00:9::1 (on lo), with a
# gai.conf that prefers IPv4. Each download completes within the stagger
# plus the good connect, not --connect-timeout (10 s); -4 / -6 restrict
# the family (-6 to dual.test meets only the black hole: exit 4 after the
# per-connect deadline, 1 s). Exit 77 (skip) without root, unshare, ip,
# veth or python3. The library's own cases are test_happy_eyeballs.c's.
#
# Usage: test_akget_happy_eyeballs.sh AKGET
set -euo pipefail
akget="$(readlink -f "$1")"
skip() { echo "$*: skipped"; exit 77; }
fail() { printf 'FAIL: %s\n' "$*" >&2; exit 1; }

if [[ -z "${AK_HE_IN_NETNS:-}" ]]; then
  [[ $(id -u) == 0 ]] || skip "not root"
  for p in unshare ip python3; do command -v "$p" >/dev/null || skip "$p not installed"; done
  unshare -n -m true 2>/dev/null || skip "unshare -n -m not allowed"
  # Mounts made inside stay inside (util-linux makes them private).
  exec unshare -n -m env AK_HE_IN_NETNS=1 bash "${BASH_SOURCE[0]}" "$akget"
fi

work="$(mktemp -d "${TMPDIR:-/tmp}/ak-akget-he.XXXXXX")"
chmod 755 "$work"
spid=""
cleanup() {
  set +e
  [[ -n "$spid" ]] && { kill "$spid"; wait "$spid"; } 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

ip link set lo up
ip -6 addr add fd00:9::1/128 dev lo nodad
ip link add he0 type veth peer name he1 2>/dev/null || skip "no veth"
ip link set he0 up
ip link set he1 up
ip addr add 10.99.0.1/24 dev he0
ip -6 addr add 2001:db8:9::1/64 dev he0 nodad
ip neigh add 10.99.0.2 lladdr 02:00:00:00:00:02 dev he0 nud permanent
ip -6 neigh add 2001:db8:9::2 lladdr 02:00:00:00:00:02 dev he0 nud permanent
printf '127.0.0.1 localhost\n::1 localhost\n2001:db8:9::2 dual.test\n127.0.0.1 dual.test\n' >"$work/hosts"
printf '10.99.0.2 dual4.test\nfd00:9::1 dual4.test\n' >>"$work/hosts"
mount --bind "$work/hosts" /etc/hosts

mkdir -p "$work/root"
head -c 300000 /dev/urandom >"$work/root/f.bin"
port=18000
(cd "$work/root" && exec python3 -m http.server --bind :: "$port") >/dev/null 2>&1 &
spid=$!
for _ in $(seq 100); do
  (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
  kill -0 "$spid" 2>/dev/null || fail "the server did not start"
  sleep 0.05
done

first_address() { getent ahosts "$1" | awk 'NR == 1 {print $1}'; }
# Runs akget; sets RC and MS (its wall time in milliseconds).
timed() {
  local t0 t1
  t0=$(date +%s%N)
  set +e
  "$akget" -q --retries 0 "$@" 2>"$work/err"
  RC=$?
  set -e
  t1=$(date +%s%N)
  MS=$(((t1 - t0) / 1000000))
}
# A download that meets the black hole first: completes, byte for byte,
# after the stagger (250 ms: a lower bound shows the bad address was tried
# first) and well before the connect timeout (10 s).
raced() { # NAME
  local name="$1"
  rm -f "$work/out.bin"
  timed --connect-timeout 10 -o "$work/out.bin" "http://$name:$port/f.bin"
  ((RC == 0)) || { cat "$work/err" >&2; fail "$name: exit $RC"; }
  cmp -s "$work/root/f.bin" "$work/out.bin" || fail "$name: the file differs"
  ((MS >= 200)) || fail "$name: done in $MS ms: the black-holed address was not tried first"
  ((MS < 4000)) || fail "$name: $MS ms: waited for the connect timeout, not the stagger"
  echo "$name: first $(first_address "$name") (black hole), done in $MS ms"
}

[[ "$(first_address dual.test)" == 2001:db8:9::2 ]] || fail "dual.test: IPv6 is not tried first"
raced dual.test

# IPv4 first: the preference an administrator sets in gai.conf.
printf 'precedence ::ffff:0:0/96 100\n' >"$work/gai.conf"
if [[ -e /etc/gai.conf ]] && mount --bind "$work/gai.conf" /etc/gai.conf; then
  [[ "$(first_address dual4.test)" == 10.99.0.2 ]] || fail "dual4.test: IPv4 is not tried first"
  raced dual4.test
  umount /etc/gai.conf
else
  echo "no /etc/gai.conf to replace: the IPv4-first case skipped"
fi

# -4 goes to 127.0.0.1 alone (no stagger to wait out).
rm -f "$work/out.bin"
timed -4 --connect-timeout 10 -o "$work/out.bin" "http://dual.test:$port/f.bin"
((RC == 0)) || { cat "$work/err" >&2; fail "-4: exit $RC"; }
cmp -s "$work/root/f.bin" "$work/out.bin" || fail "-4: the file differs"
echo "-4: done in $MS ms"
# -6 meets only the black hole: the per-connect deadline still holds.
timed -6 --connect-timeout 1 -o "$work/out6.bin" "http://dual.test:$port/f.bin"
((RC == 4)) || { cat "$work/err" >&2; fail "-6 to the black hole: exit $RC, want 4"; }
((MS >= 900 && MS < 6000)) || fail "-6 to the black hole: $MS ms, want about the 1 s deadline"
grep -qi "timed out" "$work/err" || { cat "$work/err" >&2; fail "-6: not a connect timeout"; }
[[ ! -e "$work/out6.bin" ]] || fail "-6: a failed download left a file"
echo "-6 to the black hole: exit 4 after $MS ms (--connect-timeout 1)"
