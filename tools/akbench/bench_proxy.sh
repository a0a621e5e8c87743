#!/usr/bin/env bash
# bench_proxy.sh: 1000 x 1 MiB over HTTP through one proxy, akget against
# curl --parallel (the fastest peer for many files, docs/akget.md), both
# with a parallelism of 32, through the same squid (or tinyproxy) started
# here in front of the same nginx (tests/proxy_env.sh, tests/nginx_env.sh),
# in alternating runs (akget, curl, akget, ...). Prints each run's wall
# time, client CPU (user + sys) and the proxy's CPU over the run (from
# /proc: a proxy near one CPU second per second is the bottleneck), then
# the medians and the ratio
# curl / akget. Every file of every run is compared with the served one
# outside the timed window; each run writes a new directory (see
# wl_download.c for why nothing is deleted mid-benchmark).
#
# Usage: bench_proxy.sh AKGET [ROUNDS (5)] [squid|tinyproxy] [COUNT (1000)]
# Environment, for measuring each tool's modes: PAR (32): akget's -j and -x
# and curl's --parallel-max; CURL_MODE (parallel): parallel, or serial (one
# transfer at a time over one kept-alive connection); AKGET_ARGS: more akget
# options; SQUID_EXTRA: more squid.conf lines, SQUID_WORKERS: squid SMP
# workers (tests/proxy_env.sh).
# Run it alone on the machine (nothing else building or testing).
set -euo pipefail
akget="$(readlink -f "$1")"
rounds="${2:-5}"
which_proxy="${3:-squid}"
count="${4:-1000}"
par="${PAR:-32}"
curl_mode="${CURL_MODE:-parallel}"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/../../tests" && pwd)"
source "$here/nginx_env.sh"
source "$here/proxy_env.sh"
work="$(mktemp -d "${TMPDIR:-/tmp}/ak-bench-proxy.XXXXXX")"
chmod 755 "$work"
ppid_=""
cleanup() { set +e; proxy_stop "$ppid_"; nginx_stop; rm -rf "$work"; }
trap cleanup EXIT
unset http_proxy https_proxy HTTPS_PROXY all_proxy ALL_PROXY no_proxy NO_PROXY

mkdir -p "$work/root/files"
for i in $(seq -w 1 "$count"); do head -c $((1 << 20)) /dev/urandom >"$work/root/files/f$i.bin"; done
chmod -R a+rX "$work/root"
nginx_start "$work/state" "$work/root"
if [[ "$which_proxy" == squid ]]; then
  squid_start "$work/proxy"
  ppid_=$SQUID_PID
  proxy="http://127.0.0.1:$SQUID_PORT"
else
  tinyproxy_start "$work/proxy"
  ppid_=$TINYPROXY_PID
  proxy="http://127.0.0.1:$TINYPROXY_PORT"
fi
base="http://127.0.0.1:$NGINX_PORT/files"
ls "$work/root/files" | sed "s|^|$base/|" >"$work/list"
mkdir -p "$work/out"
chattr +T "$work/out" 2>/dev/null || true

# CPU seconds (user + sys, all threads) a process has used so far.
proc_cpu() { # PID
  awk -v hz="$(getconf CLK_TCK)" '{print ($14 + $15) / hz}' "/proc/$1/stat"
}

# One run: prints "wall user+sys proxy-user+sys" (ms, seconds, seconds).
run_one() { # TOOL DIR
  local tool="$1" dir="$2"
  mkdir -p "$dir"
  if [[ "$tool" == curl ]]; then
    sed "s|^$base/\(.*\)$|url = \"$base/\1\"\noutput = \"$dir/\1\"|" "$work/list" >"$work/curl.cfg"
  fi
  cat "$work/root/files"/* >/dev/null # the served files in the page cache for both
  local t0 t1 p0 p1
  p0=$(proc_cpu "$ppid_")
  t0=$(date +%s%N)
  if [[ "$tool" == akget ]]; then
    # shellcheck disable=SC2086
    /usr/bin/time -f "%U %S" -o "$work/time" "$akget" -q -j$par -x$par ${AKGET_ARGS:-} \
      --proxy "$proxy" -d "$dir" -i "$work/list"
  else
    local mode=(--parallel --parallel-max "$par")
    [[ "$curl_mode" == serial ]] && mode=()
    /usr/bin/time -f "%U %S" -o "$work/time" curl -sS --no-progress-meter --fail "${mode[@]}" \
      --proxy "$proxy" -K "$work/curl.cfg"
  fi
  t1=$(date +%s%N)
  p1=$(proc_cpu "$ppid_")
  read -r u s <"$work/time"
  echo "$(( (t1 - t0) / 1000000 )) $(echo "$u + $s" | bc) $(echo "$p1 - $p0" | bc)"
  for f in "$work/root/files"/*; do
    cmp -s "$f" "$dir/$(basename "$f")" || { echo "$tool: $(basename "$f") differs" >&2; exit 1; }
  done
  for f in "$dir"/*; do : >"$f"; done # blocks freed, inodes kept (wl_download.c)
}

declare -a ak_wall ak_cpu cu_wall cu_cpu ak_px cu_px
for r in $(seq "$rounds"); do
  run_one akget "$work/out/a$r" >"$work/res"
  read -r w c x <"$work/res"
  ak_wall+=("$w"); ak_cpu+=("$c"); ak_px+=("$x")
  echo "round $r akget: $w ms, CPU $c s, $which_proxy CPU $x s"
  run_one curl "$work/out/c$r" >"$work/res"
  read -r w c x <"$work/res"
  cu_wall+=("$w"); cu_cpu+=("$c"); cu_px+=("$x")
  echo "round $r curl:  $w ms, CPU $c s, $which_proxy CPU $x s"
done
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
maw=$(median "${ak_wall[@]}"); mac=$(median "${ak_cpu[@]}")
mcw=$(median "${cu_wall[@]}"); mcc=$(median "${cu_cpu[@]}")
cmode="--parallel --parallel-max $par"
[[ "$curl_mode" == serial ]] && cmode="serial"
echo "through $which_proxy, $count x 1 MiB, $rounds rounds (medians):"
echo "  akget -j$par -x$par ${AKGET_ARGS:-}: $maw ms wall, $mac s CPU, $which_proxy CPU $(median "${ak_px[@]}") s"
echo "  curl $cmode: $mcw ms wall, $mcc s CPU, $which_proxy CPU $(median "${cu_px[@]}") s"
echo "  akget speed-up over curl (curl wall / akget wall): $(echo "scale=2; $mcw / $maw" | bc)x"
echo "  akget CPU relative to curl: $(echo "scale=2; $mac / $mcc" | bc)x"
