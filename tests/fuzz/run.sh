#!/usr/bin/env bash
# tests/fuzz/run.sh: builds the libFuzzer targets with clang (ASan + UBSan)
# and runs each for a bounded time over its corpus in the repository (read
# only: new inputs go to a temporary folder). Exit 77 when clang cannot
# build fuzzers here; non-zero when a target crashes or asserts.
#
# Usage: tests/fuzz/run.sh [SECONDS per target, default 20] [OUT_DIR]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
secs="${1:-20}"
out="${2:-$(mktemp -d "${TMPDIR:-/tmp}/ak-fuzz.XXXXXX")}"
mkdir -p "$out"
cc=""
for c in clang clang-14; do command -v "$c" >/dev/null 2>&1 && { cc="$c"; break; }; done
[[ -n "$cc" ]] || { echo "fuzz: clang not installed: skipped"; exit 77; }
"$root/tools/fetch-llhttp" >/dev/null
ll="$root/.deps/llhttp"
common=(-g -O1 -std=gnu11 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined
        -I"$root/include" -I"$root/src" -isystem "$ll" -DAK_BUILDING)
# llhttp compiled once, without the fuzzer's coverage of our own checks
# diluted by warnings.
objs=()
for f in llhttp api http; do
  "$cc" -g -O1 -fsanitize=address,undefined -fsanitize-coverage=inline-8bit-counters,pc-table \
    -w -c "$ll/$f.c" -I"$ll" -o "$out/ll_$f.o"
  objs+=("$out/ll_$f.o")
done
lib=("$root/src/http/response.c" "$root/src/http/url.c" "$root/src/base/alloc.c"
     "$root/src/base/error.c")
for t in response url; do
  if ! "$cc" "${common[@]}" "$root/tests/fuzz/fuzz_$t.c" "${lib[@]}" "${objs[@]}" \
       -luriparser -o "$out/fuzz_$t" 2>"$out/build_$t.log"; then
    if grep -q "fuzzer" "$out/build_$t.log" && ! "$cc" -fsanitize=fuzzer -x c - -o /dev/null \
         <<<'int LLVMFuzzerTestOneInput(const char *d, unsigned long n){return 0;}' 2>/dev/null; then
      echo "fuzz: $cc cannot link libFuzzer here: skipped"; exit 77
    fi
    cat "$out/build_$t.log" >&2; exit 1
  fi
done
for t in response url; do
  mkdir -p "$out/new_$t"
  echo "fuzz: $t for ${secs}s"
  "$out/fuzz_$t" -max_total_time="$secs" -rss_limit_mb=1024 -max_len=4096 -timeout=10 \
    -print_final_stats=1 -artifact_prefix="$out/" "$out/new_$t" "$root/tests/fuzz/corpus/$t" >"$out/$t.log" 2>&1 || {
    tail -n 40 "$out/$t.log" >&2; echo "fuzz: $t FAILED (log: $out/$t.log)" >&2; exit 1; }
  grep -E '^stat::number_of_executed_units|^Done' "$out/$t.log" | tr '\n' ' '; echo
done
echo "fuzz: ok"
