#!/usr/bin/env bash
# test_akget_proxy.sh: akget through real proxies started here with their
# own configuration files on 127.0.0.1 (tests/proxy_env.sh): tinyproxy and
# squid (http in absolute form, https through CONNECT), microsocks (SOCKS5
# with socks5:// and socks5h://, with and without a password), in front of
# a private nginx (tests/nginx_env.sh). Plain and TLS downloads, segmented
# and resumed, byte for byte; the TLS in a tunnel checked against the
# origin's name, not the proxy's (an openssl s_server origin with a
# certificate for one name only); keep-alive to the proxy; the proxy
# variables as curl reads them; no_proxy bypasses; a bad variable (exit 2,
# named, before anything starts); a proxy that answers 407 or 403, one
# whose SOCKS password is wrong, one that is down (exit 9); the proxy's
# password in no output. Exit 77 (skip) when nginx or a proxy is missing.
#
# Usage: test_akget_proxy.sh AKGET
set -euo pipefail
akget="$1"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$here/nginx_env.sh"
source "$here/proxy_env.sh"
work="$(mktemp -d "${TMPDIR:-/tmp}/ak-akget-proxy.XXXXXX")"
chmod 755 "$work"
pids=()
cleanup() {
  set +e
  for p in "${pids[@]}"; do proxy_stop "$p"; done
  nginx_stop
  rm -rf "$work"
}
trap cleanup EXIT
fail() { printf 'FAIL: %s\n' "$*" >&2; exit 1; }
for p in tinyproxy squid microsocks; do
  command -v "$p" >/dev/null || [[ -x /usr/sbin/$p ]] || { echo "$p not installed: skipped"; exit 77; }
done
[[ -n "$(nginx_bin)" ]] || { echo "nginx not installed: skipped"; exit 77; }
# No proxy variable of the caller's leaks into the cases below.
unset http_proxy https_proxy HTTPS_PROXY all_proxy ALL_PROXY no_proxy NO_PROXY HTTP_PROXY

root="$work/root"
mkdir -p "$root/files"
for i in $(seq -w 1 40); do head -c $((10#$i * 5003)) /dev/urandom >"$root/files/f$i.bin"; done
head -c $((6 << 20)) /dev/urandom >"$root/files/big.bin"
chmod -R a+rX "$root"
sh "$here/tls_certs.sh" "$work/pki" >/dev/null || fail "could not make test certificates"
chmod -R a+rX "$work/pki"
NGINX_TLS_DIR="$work/pki" nginx_start "$work/state" "$root" || fail "nginx did not start"
http="http://127.0.0.1:$NGINX_PORT"
https="https://localhost:$NGINX_TLS_PORT"
nlog="$work/state/access.log"
ca=(--cacert "$work/pki/ca.pem")
same() { cmp -s "$root/files/$1" "$2" || fail "$3: $2 differs from $1"; }

tinyproxy_start "$work/tiny" || fail "tinyproxy did not start"
pids+=("$TINYPROXY_PID")
tiny="http://127.0.0.1:$TINYPROXY_PORT"
# CONNECT to the plain port is refused (403): a proxy's policy saying no.
SQUID_EXTRA="acl plainport port $NGINX_PORT
http_access deny CONNECT plainport" squid_start "$work/squid" || fail "squid did not start"
pids+=("$SQUID_PID")
squid="http://127.0.0.1:$SQUID_PORT"
slog="$work/squid/access.log"
squid_start "$work/squid-auth" pxuser 'px:pa ss' || fail "squid (auth) did not start"
pids+=("$SQUID_PID")
asquid_port=$SQUID_PORT
microsocks_start || fail "microsocks did not start"
pids+=("$SOCKS_PID")
socks_port=$SOCKS_PORT
microsocks_start suser 'sock-pw' || fail "microsocks (auth) did not start"
pids+=("$SOCKS_PID")
asocks_port=$SOCKS_PORT

# ---- http proxies: plain and TLS, through each.
for px in "$tiny" "$squid"; do
  "$akget" -q --proxy "$px" -o "$work/p.bin" "$http/files/big.bin" || fail "$px plain: exit $?"
  same big.bin "$work/p.bin" "$px plain"
  "$akget" -q "${ca[@]}" --proxy "$px" -o "$work/t.bin" "$https/files/big.bin" ||
    fail "$px TLS: exit $?"
  same big.bin "$work/t.bin" "$px TLS"
  rm -f "$work/p.bin" "$work/t.bin"
done
# Inside the tunnel the certificate is checked against the origin's name:
# without the test CA it fails as TLS (exit 5), not as the proxy's.
set +e
"$akget" -q --retries 0 --proxy "$squid" -o "$work/t.bin" "$https/files/f01.bin" 2>"$work/tls.err"
rc=$?
set -e
((rc == 5)) || fail "an unverifiable origin through the tunnel: exit $rc, want 5"
[[ ! -e "$work/t.bin" ]] || fail "an unverified download left a file"
grep -q "GET $http/files/big.bin 200" "$slog" || fail "squid did not carry the plain request"
grep -q "CONNECT localhost:$NGINX_TLS_PORT 200" "$slog" || fail "squid did not carry the tunnel"
echo "plain and TLS through tinyproxy and squid: ok"

# The TLS inside a tunnel is checked against the origin's name, never the
# proxy's. The proxies here are all named 127.0.0.1; the origin (openssl
# s_server, serving $root) is https://localhost. A certificate for the name
# localhost only is accepted through each proxy; one for 127.0.0.1 only
# (the proxy's name, and the address socks5:// connects the tunnel to) is
# refused as a name mismatch (exit 5). Direct, each certificate is first
# shown valid for its own name and refused for the other, so only the name
# checked decides.
origin_start() { # CERT: sets ORIGIN_PORT and ORIGIN_PID
  ORIGIN_PORT=$(free_port) || return 1
  (cd "$root" && exec openssl s_server -quiet -WWW -accept "127.0.0.1:$ORIGIN_PORT" \
    -cert "$work/pki/$1" -key "$work/pki/server.key") >"$work/origin.out" 2>&1 &
  ORIGIN_PID=$!
  pids+=("$ORIGIN_PID")
  wait_port "$ORIGIN_PORT" "$ORIGIN_PID" || { cat "$work/origin.out" >&2; return 1; }
}
tls_case() { # WANT(ok|mismatch) NAME URL AKGET_ARGS...
  local want="$1" name="$2" url="$3" rc
  shift 3
  rm -f "$work/o.bin"
  set +e
  "$akget" -q --retries 0 "${ca[@]}" "$@" -o "$work/o.bin" "$url" 2>"$work/o.err"
  rc=$?
  set -e
  if [[ "$want" == ok ]]; then
    ((rc == 0)) || { cat "$work/o.err" >&2; fail "$name: exit $rc, want 0"; }
    same f05.bin "$work/o.bin" "$name"
  else
    ((rc == 5)) || { cat "$work/o.err" >&2; fail "$name: exit $rc, want 5"; }
    grep -q "AK_ETLSNAMEMISMATCH" "$work/o.err" ||
      { cat "$work/o.err" >&2; fail "$name: not a name mismatch"; }
    [[ ! -e "$work/o.bin" ]] || fail "$name: a refused download left a file"
  fi
}
tunnels=("$squid" "$tiny" "socks5://127.0.0.1:$socks_port" "socks5h://127.0.0.1:$socks_port")
origin_start nameonly.pem || fail "s_server (nameonly) did not start"
tls_case ok "localhost-only cert, direct" "https://localhost:$ORIGIN_PORT/files/f05.bin"
tls_case mismatch "localhost-only cert, direct to 127.0.0.1" \
  "https://127.0.0.1:$ORIGIN_PORT/files/f05.bin"
for px in "${tunnels[@]}"; do
  tls_case ok "localhost-only cert through $px" "https://localhost:$ORIGIN_PORT/files/f05.bin" \
    --proxy "$px"
done
proxy_stop "$ORIGIN_PID"
origin_start iponly.pem || fail "s_server (iponly) did not start"
tls_case ok "127.0.0.1-only cert, direct" "https://127.0.0.1:$ORIGIN_PORT/files/f05.bin"
tls_case mismatch "127.0.0.1-only cert, direct to localhost" \
  "https://localhost:$ORIGIN_PORT/files/f05.bin"
for px in "${tunnels[@]}"; do
  tls_case mismatch "127.0.0.1-only cert through $px" \
    "https://localhost:$ORIGIN_PORT/files/f05.bin" --proxy "$px"
done
proxy_stop "$ORIGIN_PID"
grep -q "CONNECT localhost:$ORIGIN_PORT 200" "$slog" || fail "squid did not carry the tunnel to s_server"
echo "TLS through a tunnel checks the origin's name (localhost), not the proxy's (127.0.0.1): ok"

# Segmented, plain and TLS, through squid.
"$akget" -q -s 4 --min-segment 256k --proxy "$squid" -o "$work/s.bin" "$http/files/big.bin" ||
  fail "segmented plain: exit $?"
same big.bin "$work/s.bin" "segmented plain"
"$akget" -q -s 4 --min-segment 256k "${ca[@]}" --proxy "$squid" -o "$work/st.bin" \
  "$https/files/big.bin" || fail "segmented TLS: exit $?"
same big.bin "$work/st.bin" "segmented TLS"
echo "segmented through squid: ok"

# Resumed: a download stopped half way (rate-limited, then killed) is
# finished with -c through the proxy, plain and TLS.
for u in "$http" "$https"; do
  rm -f "$work/r.bin" "$work/r.bin.akget-part"
  "$akget" -q -c "${ca[@]}" --limit-rate 1M --proxy "$squid" -o "$work/r.bin" "$u/files/big.bin" &
  apid=$!
  sleep 1.5
  kill -TERM "$apid" 2>/dev/null || true
  wait "$apid" 2>/dev/null || true
  [[ -f "$work/r.bin" ]] && fail "an interrupted download left its final name"
  "$akget" -q -c "${ca[@]}" --proxy "$squid" -o "$work/r.bin" "$u/files/big.bin" ||
    fail "resume through the proxy ($u): exit $?"
  same big.bin "$work/r.bin" "resumed ($u)"
done
echo "resumed through squid: ok"

# Keep-alive to the proxy: 40 files from one origin, 4 at a time, come over
# at most 4 client connections to squid (its log shows the client ports).
ls "$root/files" | grep '^f' | sed "s|^|$http/files/|" >"$work/list"
: >"$slog"
"$akget" -q -j 4 -x 4 --proxy "$squid" -d "$work/many" -i "$work/list" || fail "many: exit $?"
for f in "$root"/files/f*.bin; do same "$(basename "$f")" "$work/many/$(basename "$f")" many; done
conns=$(grep -c " GET " "$slog")
ports=$(grep " GET " "$slog" | awk '{print $1}' | sort -u | wc -l)
((conns == 40)) || fail "squid saw $conns requests, want 40"
((ports <= 4)) || fail "$ports connections to the proxy for 40 requests: no keep-alive"
echo "40 files over $ports connections to squid: ok"

# ---- The variables, as curl reads them.
: >"$slog"
http_proxy="$squid" "$akget" -q -o "$work/e1.bin" "$http/files/f01.bin" || fail "http_proxy: exit $?"
grep -q "GET $http/files/f01.bin" "$slog" || fail "http_proxy was not used"
# HTTP_PROXY (upper case) is not read for http (curl: it can come from a
# CGI request's Proxy: header): a dead proxy there changes nothing.
dead="http://127.0.0.1:$(free_port)"
HTTP_PROXY="$dead" "$akget" -q -o "$work/e2.bin" "$http/files/f01.bin" || fail "HTTP_PROXY was read"
HTTPS_PROXY="$squid" "$akget" -q "${ca[@]}" -o "$work/e3.bin" "$https/files/f02.bin" ||
  fail "HTTPS_PROXY: exit $?"
grep -q "CONNECT localhost:$NGINX_TLS_PORT" "$slog" || fail "HTTPS_PROXY was not used"
: >"$slog"
ALL_PROXY="$squid" "$akget" -q -o "$work/e4.bin" "$http/files/f03.bin" || fail "ALL_PROXY: exit $?"
grep -q "GET $http/files/f03.bin" "$slog" || fail "ALL_PROXY was not used"
# The scheme's own variable wins over all_proxy; --proxy over both.
http_proxy="$squid" all_proxy="$dead" "$akget" -q -o "$work/e5.bin" "$http/files/f04.bin" ||
  fail "http_proxy over all_proxy: exit $?"
http_proxy="$dead" "$akget" -q --proxy "$squid" -o "$work/e6.bin" "$http/files/f05.bin" ||
  fail "--proxy over http_proxy: exit $?"
http_proxy="$squid" "$akget" -q --proxy "" -o "$work/e7.bin" "$http/files/f06.bin" ||
  fail "--proxy '' (none): exit $?"
same f06.bin "$work/e7.bin" "--proxy ''"
echo "proxy variables: ok"

# no_proxy: names, *, IPs, CIDR, ports, with a dead proxy set: a bypassed
# URL is fetched directly; one not bypassed fails on the proxy (exit 9).
for np in 127.0.0.1 '*' 127.0.0.0/8 "127.0.0.1:$NGINX_PORT" "example.org, 127.0.0.1"; do
  no_proxy="$np" http_proxy="$dead" "$akget" -q -o "$work/n.bin" "$http/files/f07.bin" ||
    fail "no_proxy='$np' did not bypass: exit $?"
  rm -f "$work/n.bin"
done
NO_PROXY=localhost https_proxy="$dead" "$akget" -q "${ca[@]}" -o "$work/n.bin" \
  "$https/files/f08.bin" || fail "NO_PROXY=localhost did not bypass: exit $?"
set +e
no_proxy="127.0.0.1:1" http_proxy="$dead" "$akget" -q --retries 0 -o "$work/n2.bin" \
  "$http/files/f07.bin" 2>"$work/n2.err"
rc=$?
set -e
((rc == 9)) || fail "another port in no_proxy bypassed (exit $rc)"
grep -q "proxy" "$work/n2.err" || fail "a dead proxy's error does not say proxy"
"$akget" -q --noproxy 127.0.0.1 --proxy "$dead" -o "$work/n3.bin" "$http/files/f09.bin" ||
  fail "--noproxy: exit $?"
echo "no_proxy: ok"

# A value that does not parse: exit 2 naming the variable, before any
# request (nginx sees none).
for bad in "https_proxy=http://[::1" "http_proxy=ftp://h:1" "all_proxy=http://h:99999" \
  "no_proxy=10.0.0.0/99" "NO_PROXY=a b/c"; do
  : >"$nlog"
  set +e
  env "$bad" "$akget" -q -o "$work/b.bin" "$http/files/f01.bin" "$https/files/f02.bin" 2>"$work/b.err"
  rc=$?
  set -e
  ((rc == 2)) || fail "$bad: exit $rc, want 2"
  grep -q "${bad%%=*}" "$work/b.err" || fail "$bad: the error does not name the variable"
  [[ ! -s "$nlog" ]] || fail "$bad: a request was made anyway"
done
set +e
"$akget" -q --proxy "socks4://h" -o "$work/b.bin" "$http/files/f01.bin" 2>"$work/b.err"
rc=$?
set -e
((rc == 2)) && grep -q -- "--proxy" "$work/b.err" || fail "--proxy socks4:// not refused (exit $rc)"
echo "bad proxy values: ok"

# ---- Refusals: exit 9 with a clear message per URL.
refused() { # NAME WANT_TEXT AKGET_ARGS...
  local name="$1" want="$2"
  shift 2
  set +e
  "$akget" -q --retries 0 "$@" 2>"$work/ref.err"
  local rc=$?
  set -e
  ((rc == 9)) || { cat "$work/ref.err" >&2; fail "$name: exit $rc, want 9"; }
  grep -qi -- "$want" "$work/ref.err" || { cat "$work/ref.err" >&2; fail "$name: no '$want' in the error"; }
}
asquid="http://127.0.0.1:$asquid_port"
refused "407 (no credentials, plain)" "407" --proxy "$asquid" -o "$work/x.bin" "$http/files/f01.bin"
refused "407 (no credentials, CONNECT)" "407" "${ca[@]}" --proxy "$asquid" -o "$work/x.bin" \
  "$https/files/f01.bin"
refused "407 (wrong password)" "407" --proxy "http://pxuser:nope@127.0.0.1:$asquid_port" \
  -o "$work/x.bin" "$http/files/f01.bin"
refused "403 to CONNECT" "403" --proxy "$squid" -o "$work/x.bin" "https://127.0.0.1:$NGINX_PORT/"
refused "proxy down" "proxy" --proxy "$dead" -o "$work/x.bin" "$http/files/f01.bin"
refused "SOCKS5 wants a password" "password" --proxy "socks5://127.0.0.1:$asocks_port" \
  -o "$work/x.bin" "$http/files/f01.bin"
refused "SOCKS5 wrong password" "rejected" --proxy "socks5://suser:bad@127.0.0.1:$asocks_port" \
  -o "$work/x.bin" "$http/files/f01.bin"
[[ ! -e "$work/x.bin" ]] || fail "a refused download left a file"
echo "407, 403, SOCKS refusals, proxy down: exit 9: ok"

# Proxy credentials from the URL (percent-encoded ':' and ' '), plain and
# TLS; the password is in no output (-v, --json).
pw_url="http://pxuser:px%3Apa%20ss@127.0.0.1:$asquid_port"
"$akget" -v --proxy "$pw_url" -o "$work/c1.bin" --json "$work/c1.json" "$http/files/f10.bin" \
  2>"$work/c1.err" || fail "proxy credentials (plain): exit $?"
same f10.bin "$work/c1.bin" "proxy credentials plain"
"$akget" -v "${ca[@]}" --proxy "$pw_url" -o "$work/c2.bin" --json "$work/c2.json" \
  "$https/files/f11.bin" 2>"$work/c2.err" || fail "proxy credentials (TLS): exit $?"
same f11.bin "$work/c2.bin" "proxy credentials TLS"
set +e
"$akget" -v --retries 0 --proxy "http://pxuser:wrongpass@127.0.0.1:$asquid_port" -o "$work/c3.bin" \
  --json "$work/c3.json" "$http/files/f10.bin" 2>"$work/c3.err"
set -e
for f in "$work"/c[123].err "$work"/c[123].json; do
  ! grep -q -e "pa ss" -e "px%3Apa" -e "px:pa" -e "wrongpass" "$f" || fail "a proxy password in $f"
done
echo "proxy credentials: ok, no password in -v or --json"

# ---- SOCKS5: names resolved here (socks5) or by the proxy (socks5h), with
# and without a password, plain and TLS, segmented.
for px in "socks5://127.0.0.1:$socks_port" "socks5h://127.0.0.1:$socks_port" \
  "socks5h://suser:sock-pw@127.0.0.1:$asocks_port" "socks5://suser:sock-pw@127.0.0.1:$asocks_port"; do
  "$akget" -q --proxy "$px" -o "$work/k1.bin" "$http/files/big.bin" || fail "$px plain: exit $?"
  same big.bin "$work/k1.bin" "$px plain"
  "$akget" -q -s 3 --min-segment 1M "${ca[@]}" --proxy "$px" -o "$work/k2.bin" \
    "$https/files/big.bin" || fail "$px TLS: exit $?"
  same big.bin "$work/k2.bin" "$px TLS"
  rm -f "$work/k1.bin" "$work/k2.bin"
done
echo "SOCKS5 (socks5, socks5h, no-auth and password; plain, TLS, segmented): ok"

# ---- Address families: -4 and -6 (nginx listens on 127.0.0.1 only).
"$akget" -q -4 -o "$work/a4.bin" "$http/files/f12.bin" || fail "-4: exit $?"
same f12.bin "$work/a4.bin" "-4"
set +e
"$akget" -q -6 --retries 0 -o "$work/a6.bin" "$http/files/f12.bin" 2>"$work/a6.err"
rc=$?
set -e
((rc == 4)) || fail "-6 to an IPv4 address: exit $rc, want 4"
grep -qi "IPv6" "$work/a6.err" || fail "-6: the error does not say no IPv6 address"
# Through a proxy the family applies to the proxy's address.
"$akget" -q -4 --proxy "$squid" -o "$work/a7.bin" "$http/files/f13.bin" || fail "-4 via proxy: exit $?"
echo "-4 / -6: ok"
