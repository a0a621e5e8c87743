#!/bin/sh
# tests/fuzz/run_fuzz.sh FUZZER CORPUS SECONDS: runs a libFuzzer target for
# a bounded time on the committed corpus (read only: new inputs go to a
# temp dir, removed after) and prints the execution count. Exits non-zero
# when the fuzzer finds a crash, a leak or a hang.
set -eu
fuzzer="$1" corpus="$2" secs="$3"
work="$(mktemp -d "${TMPDIR:-/tmp}/ak-fuzz.XXXXXX")"
trap 'rm -rf "$work"' EXIT
mkdir "$work/new"
cd "$work"
rc=0
# libFuzzer's own exit code for a crash is 77, which meson reads as SKIP:
# name another one, so a finding fails the test.
"$fuzzer" -max_total_time="$secs" -error_exitcode=1 -timeout_exitcode=1 -timeout=20 -rss_limit_mb=4096 -max_len=16384 \
  -print_final_stats=1 -artifact_prefix="$work/" "$work/new" "$corpus" >"$work/log" 2>&1 || rc=$?
grep -E '^(stat::number_of_executed_units|stat::average_exec_per_sec|#[0-9]+.*DONE)' "$work/log" || true
if [ "$rc" -ne 0 ]; then
  tail -n 60 "$work/log"
  for a in "$work"/crash-* "$work"/leak-* "$work"/timeout-*; do
    [ -e "$a" ] && { echo "artifact: $a"; od -An -tx1 "$a" | head -n 20; }
  done
  exit "$rc"
fi
