#!/usr/bin/env bash
# tests/test_fault_akget.sh AKGET: the Nth-hit loop (tests/test_fault.c's)
# over akget as a child process against a private nginx (tests/nginx_env.sh):
# a list of three small files and one fetched in three segments, over http
# and https (by the name localhost, so getaddrinfo runs). For each point and
# N = 1, 2, ... until the run no longer reaches the Nth hit (AK_FAULT_REPORT
# says): no crash (sanitizer reports make the exit status other than the
# documented ones), exit 0 only with every file right, a failure exits with
# a documented network, file, TLS or protocol code (3, 4, 5, 7), and no file
# under its final name differs from the server's. Exit 77 without nginx.
# Needs a -Dfault_injection=true build.
set -u
akget="$(realpath "$1")"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$here/nginx_env.sh"
work="$(mktemp -d /tmp/ak-fault-akget.XXXXXX)"
chmod 755 "$work"
cleanup() { nginx_stop; rm -rf "$work"; }
trap cleanup EXIT
fail() { printf 'fault-akget: %s\n' "$*" >&2; exit 1; }
[[ -n "$(nginx_bin)" ]] || { echo "nginx not installed: skipped"; exit 77; }

root="$work/root"
mkdir -p "$root/files"
head -c 0 /dev/urandom >"$root/files/empty.bin"
head -c 5000 /dev/urandom >"$root/files/small.bin"
head -c 70000 /dev/urandom >"$root/files/mid.bin"
head -c $((768 << 10)) /dev/urandom >"$root/files/seg.bin"
chmod -R a+rX "$root"
sh "$here/tls_certs.sh" "$work/pki" >/dev/null || fail "could not make test certificates"
chmod -R a+rX "$work/pki"
NGINX_TLS_DIR="$work/pki"
nginx_start "$work/state" "$root" || fail "nginx did not start"

max_n=5000
grand=0
for scheme in http https; do
  if [[ $scheme == http ]]; then base="http://localhost:$NGINX_PORT"; else base="https://localhost:$NGINX_TLS_PORT"; fi
  printf '%s\n' "$base/files/empty.bin" "$base/files/small.bin" "$base/files/mid.bin" \
    "$base/files/seg.bin" >"$work/list"
  # AK_FAULT_AKGET_POINTS: a subset (by hand, to see past a point that fails).
  points="${AK_FAULT_AKGET_POINTS:-op_res op_short ep_wait submit sqe alloc pool_task resolve tls_read tls_write}"
  [[ $scheme == http ]] && points="${points/tls_read/}" && points="${points/tls_write/}"
  total=0
  line=""
  for point in $points; do
    n=1
    while ((n <= max_n)); do
      rm -rf "$work/out" "$work/rep"
      AK_FAULT_POINT=$point AK_FAULT_N=$n AK_FAULT_REPORT="$work/rep" \
        timeout -k 5 60 "$akget" -q -j 4 -s 3 --min-segment 256K --retries 1 --retry-wait 0.01 \
        --cacert "$work/pki/ca.pem" -d "$work/out" -i "$work/list" 2>"$work/err"
      rc=$?
      fired="$(sed -n "s/^$point hits=[0-9]* fired=\([0-9]*\)$/\1/p" "$work/rep" 2>/dev/null)"
      [[ -n "$fired" ]] || fail "$scheme $point N=$n: no fault report (exit $rc): $(head -c 500 "$work/err")"
      what="$scheme $point N=$n (exit $rc, fired $fired)"
      case $rc in
        0|3|4|5|7) ;;
        *) fail "$what: not a documented failure: $(head -c 2000 "$work/err")" ;;
      esac
      ((fired > 0 || rc == 0)) || fail "$what: failed without a fault: $(head -c 500 "$work/err")"
      for f in empty.bin small.bin mid.bin seg.bin; do
        if [[ -e "$work/out/$f" ]]; then
          cmp -s "$root/files/$f" "$work/out/$f" || fail "$what: $f under its final name differs"
        elif ((rc == 0)); then
          fail "$what: exit 0 without $f"
        fi
      done
      ((fired > 0)) || break
      n=$((n + 1))
    done
    ((n <= max_n)) || fail "$scheme $point: still reached at N=$max_n"
    total=$((total + n - 1))
    line+=" $point=$((n - 1))"
  done
  grand=$((grand + total))
  echo "fault: scenario akget-$scheme: $total (point, N) pairs, all passed:$line"
done
