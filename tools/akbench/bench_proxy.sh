#!/usr/bin/env bash
# bench_proxy.sh: 1000 x 1 MiB over HTTP through one proxy, akget against
# curl, each in every mode listed (akget's -jN -xN; curl serial and
# --parallel --parallel-max N: curl's best mode for a workload is found by
# measuring its modes, bench-notes), through the same squid (or tinyproxy)
# started here in front of the same nginx (tests/proxy_env.sh,
# tests/nginx_env.sh). Each round runs every mode once, akget's and curl's
# interleaved, the order rotated by one each round so no mode always runs
# first. Prints each run's wall time, client CPU (user + sys), the proxy's
# CPU over the run (from /proc: a proxy near one CPU second per second is
# the bottleneck) and the client's context switches, then a table of
# medians per mode, each tool's best mode (lowest median wall) and the
# ratio curl best / akget best.
# Every file of every run is compared with the served one outside the
# timed window; each run writes a new directory (see wl_download.c for why
# nothing is deleted mid-benchmark).
#
# Usage: bench_proxy.sh AKGET [ROUNDS (3)] [squid|tinyproxy] [COUNT (1000)]
# Environment: AKGET_MODES ("16 32"): akget's -j (and -x) values;
# CURL_MODES ("serial 4 8 16 32 64"): "serial" (one transfer at a time over
# one kept-alive connection) or a --parallel-max; AKGET_ARGS: more akget
# options; AKGET_BASE: another akget build (the one before a change), run
# in the same rounds in AKGET_MODES as "akget (base)", left out of the
# choice of the best; SQUID_EXTRA: more squid.conf lines, SQUID_WORKERS:
# squid SMP workers (tests/proxy_env.sh).
# Run it alone on the machine (nothing else building or testing).
set -euo pipefail
akget="$(readlink -f "$1")"
akget_base="${AKGET_BASE:+$(readlink -f "$AKGET_BASE")}"
rounds="${2:-3}"
which_proxy="${3:-squid}"
count="${4:-1000}"
read -r -a ak_modes <<<"${AKGET_MODES:-16 32}"
read -r -a cu_modes <<<"${CURL_MODES:-serial 4 8 16 32 64}"
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

# CPU seconds (user + sys, all threads) a process and its descendants (a
# squid's SMP workers) have used so far.
proc_cpu() { # PID
  # (a process that ends between the glob and cat fails cat: not ours)
  { cat /proc/[0-9]*/stat 2>/dev/null || true; } | awk -v root="$1" -v hz="$(getconf CLK_TCK)" '
    { c = index($0, ") "); split(substr($0, c + 2), f, " ")  # f[2] ppid, f[12] utime
      pid = $1; parent[pid] = f[2]; cpu[pid] = f[12] + f[13] }
    END { for (p in cpu) { q = p; while (q != "" && q != root && q > 1) q = parent[q]
                           if (q == root) t += cpu[p] }
          print t / hz }'
}

# One run: prints "wall user+sys proxy-user+sys switches" (ms, seconds,
# seconds, the client's context switches: voluntary + involuntary).
run_one() { # akget|curl MODE DIR
  local tool="$1" mode="$2" dir="$3"
  mkdir -p "$dir"
  if [[ "$tool" == curl ]]; then
    sed "s|^$base/\(.*\)$|url = \"$base/\1\"\noutput = \"$dir/\1\"|" "$work/list" >"$work/curl.cfg"
  fi
  cat "$work/root/files"/* >/dev/null # the served files in the page cache for both
  local t0 t1 p0 p1
  p0=$(proc_cpu "$ppid_")
  t0=$(date +%s%N)
  if [[ "$tool" == akget || "$tool" == base ]]; then
    local bin="$akget"
    [[ "$tool" == base ]] && bin="$akget_base"
    # shellcheck disable=SC2086
    /usr/bin/time -f "%U %S %w %c" -o "$work/time" "$bin" -q -j"$mode" -x"$mode" ${AKGET_ARGS:-} \
      --proxy "$proxy" -d "$dir" -i "$work/list"
  else
    local how=(--parallel --parallel-max "$mode")
    [[ "$mode" == serial ]] && how=()
    /usr/bin/time -f "%U %S %w %c" -o "$work/time" curl -sS --no-progress-meter --fail "${how[@]}" \
      --proxy "$proxy" -K "$work/curl.cfg"
  fi
  t1=$(date +%s%N)
  p1=$(proc_cpu "$ppid_")
  read -r u s vcs ics <"$work/time"
  echo "$(( (t1 - t0) / 1000000 )) $(echo "$u + $s" | bc) $(echo "$p1 - $p0" | bc) $((vcs + ics))"
  # Every file there, of the served size, and the same bytes (one cmp of
  # both sets in name order: a thousand cmp processes took longer than
  # the run).
  local whole
  whole=$(find "$dir" -type f -size $((1 << 20))c | wc -l)
  ((whole == count)) || { echo "$tool $mode: $whole of $count files whole" >&2; exit 1; }
  cmp -s <(cd "$work/root/files" && cat -- *) <(cd "$dir" && cat -- *) ||
    { echo "$tool $mode: the files differ from the served ones" >&2; exit 1; }
  for f in "$dir"/*; do : >"$f"; done # blocks freed, inodes kept (wl_download.c)
}

# The modes of one round, akget's and curl's interleaved while both last.
configs=()
for ((i = 0; i < ${#ak_modes[@]} || i < ${#cu_modes[@]}; i++)); do
  ((i < ${#ak_modes[@]})) && configs+=("akget:${ak_modes[i]}")
  ((i < ${#ak_modes[@]})) && [[ -n "$akget_base" ]] && configs+=("base:${ak_modes[i]}")
  ((i < ${#cu_modes[@]})) && configs+=("curl:${cu_modes[i]}")
done
n=${#configs[@]}
declare -A walls cpus pxs css
for r in $(seq "$rounds"); do
  for ((k = 0; k < n; k++)); do
    c="${configs[(k + r - 1) % n]}"
    run_one "${c%%:*}" "${c#*:}" "$work/out/r$r-${c/:/-}" >"$work/res"
    read -r w cp x cs <"$work/res"
    walls[$c]+="$w "; cpus[$c]+="$cp "; pxs[$c]+="$x "; css[$c]+="$cs "
    printf 'round %s %-12s %6s ms, CPU %s s, %s CPU %s s, %s switches\n' "$r" "$c" "$w" "$cp" \
      "$which_proxy" "$x" "$cs"
  done
done
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
name_of() { # akget:N | curl:MODE
  case "$1" in
    akget:*) echo "akget -j${1#*:} -x${1#*:} ${AKGET_ARGS:-}" ;;
    base:*) echo "akget (base) -j${1#*:} -x${1#*:} ${AKGET_ARGS:-}" ;;
    curl:serial) echo "curl serial" ;;
    curl:*) echo "curl --parallel --parallel-max ${1#*:}" ;;
  esac
}
echo "through $which_proxy, $count x 1 MiB, $rounds rounds, medians:"
printf '  %-36s %9s %9s %11s %9s\n' mode "wall ms" "CPU s" "proxy CPU s" switches
best_ak="" best_cu="" bw_ak=0 bw_cu=0 bc_ak=0 bc_cu=0
for c in "${configs[@]}"; do
  # shellcheck disable=SC2086
  mw=$(median ${walls[$c]}); mc=$(median ${cpus[$c]}); mx=$(median ${pxs[$c]})
  printf '  %-36s %9s %9s %11s %9s\n' "$(name_of "$c")" "$mw" "$mc" "$mx" "$(median ${css[$c]})"
  if [[ "$c" == akget:* ]]; then
    if [[ -z "$best_ak" ]] || (($(echo "$mw < $bw_ak" | bc))); then best_ak=$c; bw_ak=$mw; bc_ak=$mc; fi
  elif [[ "$c" == curl:* ]]; then
    if [[ -z "$best_cu" ]] || (($(echo "$mw < $bw_cu" | bc))); then best_cu=$c; bw_cu=$mw; bc_cu=$mc; fi
  fi
done
echo "  akget's best: $(name_of "$best_ak") ($bw_ak ms); curl's best: $(name_of "$best_cu") ($bw_cu ms)"
echo "  akget best over curl best (curl wall / akget wall): $(echo "scale=2; $bw_cu / $bw_ak" | bc)x"
echo "  akget best CPU relative to curl best: $(echo "scale=2; $bc_ak / $bc_cu" | bc)x"
