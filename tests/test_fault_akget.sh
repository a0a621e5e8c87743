#!/usr/bin/env bash
# tests/test_fault_akget.sh AKGET: the Nth-hit loop (tests/test_fault.c's)
# over akget as a child process against a private nginx (tests/nginx_env.sh):
# a list of three small files and one fetched in three segments, over http
# and https (by the name localhost, so getaddrinfo runs). For each point and
# N = 1, 2, ... until the run no longer reaches the Nth hit (AK_FAULT_REPORT
# says): no crash (sanitizer reports make the exit status other than the
# documented ones), exit 0 only with every file right, a failure exits with
# a documented network, file, TLS or protocol code (3, 4, 5, 7), no file
# under its final name differs from the server's, and nothing is saved under
# any other name. Exit 77 without nginx. Needs a -Dfault_injection=true build.
#
# Every N of every point is ~1,500 runs (7 minutes under ASan on two shared
# vCPUs), past tools/check's budget, so by default each point runs at most
# about AK_FAULT_AKGET_CAP (24) of its N per scheme: a census run without
# faults counts the point's hits H, and the sweep takes every k-th N,
# k = ceil(H / cap), from the offset AK_FAULT_AKGET_OFFSET mod k (default:
# the day number since 1970, printed), so k consecutive days cover every N.
# AK_FAULT_AKGET_FULL=1 runs every N (k = 1); AK_FAULT_AKGET_POINTS="a b"
# only those points. A failure prints the one akget run that replays it.
#
# First, direct cases that always run: memory running out at akget's first
# allocation exits 3 (not 2, usage) and saves nothing; allocations 2..8.
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
files=(empty.bin small.bin mid.bin seg.bin)
head -c 0 /dev/urandom >"$root/files/empty.bin"
head -c 5000 /dev/urandom >"$root/files/small.bin"
head -c 70000 /dev/urandom >"$root/files/mid.bin"
head -c $((768 << 10)) /dev/urandom >"$root/files/seg.bin"
chmod -R a+rX "$root"
sh "$here/tls_certs.sh" "$work/pki" >/dev/null || fail "could not make test certificates"
chmod -R a+rX "$work/pki"
NGINX_TLS_DIR="$work/pki"
nginx_start "$work/state" "$root" || fail "nginx did not start"

akget_args=(-q -j 4 -s 3 --min-segment 256K --retries 1 --retry-wait 0.01
  --cacert "$work/pki/ca.pem" -d "$work/out" -i "$work/list")

# run_akget POINT N: one run with POINT's Nth hit failing; sets rc, and
# fired and hits (of POINT, from the report; hits of every point in $work/rep).
run_akget() {
  rm -rf "$work/out" "$work/rep"
  AK_FAULT_POINT=$1 AK_FAULT_N=$2 AK_FAULT_REPORT="$work/rep" \
    timeout -k 5 60 "$akget" "${akget_args[@]}" 2>"$work/err"
  rc=$?
  fired="$(sed -n "s/^$1 hits=[0-9]* fired=\([0-9]*\)$/\1/p" "$work/rep" 2>/dev/null)"
  [[ -n "$fired" ]] || fail "$scheme $1 N=$2: no fault report (exit $rc): $(head -c 500 "$work/err")"
}

replay() {
  printf 'replay: AK_FAULT_POINT=%s AK_FAULT_N=%s %s %s (with %s served)' "$1" "$2" "$akget" \
    "${akget_args[*]}" "$(tr '\n' ' ' <"$work/list")"
}

# check_run POINT N: the checks after each run.
check_run() {
  local what="$scheme $1 N=$2 (exit $rc, fired $fired)" f name
  case $rc in
    0|3|4|5|7) ;;
    *) fail "$what: not a documented failure: $(head -c 2000 "$work/err"); $(replay "$1" "$2")" ;;
  esac
  ((fired > 0 || rc == 0)) || fail "$what: failed without a fault: $(head -c 500 "$work/err")"
  for f in "${files[@]}"; do
    if [[ -e "$work/out/$f" ]]; then
      cmp -s "$root/files/$f" "$work/out/$f" ||
        fail "$what: $f under its final name differs; $(replay "$1" "$2")"
    elif ((rc == 0)); then
      fail "$what: exit 0 without $f; $(replay "$1" "$2")"
    fi
  done
  # Nothing under another name (a name that could not be made once saved
  # the download as index.html); a failed file's .akget-part may stay.
  if [[ -d "$work/out" ]]; then
    for name in $(ls -A "$work/out"); do
      case " ${files[*]} " in *" $name "*) continue ;; esac
      if ((rc != 0)) && [[ $name == *.akget-part ]]; then continue; fi
      fail "$what: saved $name; $(replay "$1" "$2")"
    done
  fi
}

full="${AK_FAULT_AKGET_FULL:-0}"
cap="${AK_FAULT_AKGET_CAP:-24}"
offset="${AK_FAULT_AKGET_OFFSET:-$(($(date +%s) / 86400))}"
if [[ $full == 1 ]]; then
  echo "fault-akget: every N of every point (AK_FAULT_AKGET_FULL=1)"
else
  echo "fault-akget: at most ~$cap N per point and scheme, offset $offset" \
    "(AK_FAULT_AKGET_OFFSET=$offset replays this sweep; AK_FAULT_AKGET_FULL=1 runs every N)"
fi
max_n=5000
for scheme in http https; do
  if [[ $scheme == http ]]; then base="http://localhost:$NGINX_PORT"; else base="https://localhost:$NGINX_TLS_PORT"; fi
  printf "$base/files/%s\n" "${files[@]}" >"$work/list"

  # The direct case: no memory at all.
  run_akget alloc 1
  ((rc == 3)) || fail "$scheme alloc N=1: exit $rc, not 3 (out of memory): $(head -c 500 "$work/err")"
  check_run alloc 1
  [[ -z "$(ls -A "$work/out" 2>/dev/null)" ]] || fail "$scheme alloc N=1: saved $(ls -A "$work/out")"

  # The census: no fault fires; every point's hits.
  run_akget alloc $((1 << 40))
  ((rc == 0)) || fail "$scheme: the run without a fault exited $rc: $(head -c 500 "$work/err")"
  check_run alloc $((1 << 40))
  cp "$work/rep" "$work/census"

  # Every day, whatever the sweep's offset: the first allocations, where
  # the worker's loop fails while the list reader is still making items
  # (a reader that outlived main read main's stack, and the exit hung).
  for n in 2 3 4 5 6 7 8; do
    run_akget alloc $n
    check_run alloc $n
  done

  # AK_FAULT_AKGET_POINTS: a subset (by hand, to see past a point that fails).
  points="${AK_FAULT_AKGET_POINTS:-op_res op_short ep_wait submit sqe alloc pool_task resolve tls_read tls_write}"
  [[ $scheme == http ]] && points="${points/tls_read/}" && points="${points/tls_write/}"
  total=0
  every=0
  line=""
  for point in $points; do
    hits="$(sed -n "s/^$point hits=\([0-9]*\) .*$/\1/p" "$work/census")"
    [[ -n "$hits" ]] || fail "$scheme: no point $point in the fault report"
    k=1
    if [[ $full != 1 ]] && ((hits > cap)); then k=$(((hits + cap - 1) / cap)); fi
    n=$((1 + offset % k))
    ran=0
    while ((n <= max_n)); do
      run_akget "$point" "$n"
      check_run "$point" "$n"
      ((fired > 0)) || break
      ran=$((ran + 1))
      n=$((n + k))
    done
    ((n <= max_n)) || fail "$scheme $point: still reached at N=$max_n"
    total=$((total + ran))
    every=$((every + hits))
    if ((k == 1)); then line+=" $point=$ran"; else line+=" $point=$ran(1 in $k of $hits)"; fi
  done
  echo "fault: scenario akget-$scheme: $total (point, N) pairs (of about $every), all passed:$line"
done
