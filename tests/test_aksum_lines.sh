#!/usr/bin/env bash
# test_aksum_lines.sh: aksum's output lines stay whole when several aksum
# processes write one pipe or one file at once (`find | xargs -P4 aksum`,
# many rounds: every line well-formed, one per file, the same sums as
# md5sum), and the output stays batched: on a pipe a few writes of at most
# PIPE_BUF bytes each ending at a line's end, on a terminal a write per line.
#
# Usage: tests/test_aksum_lines.sh PATH/TO/aksum [ROUNDS]   (exit 77: io_uring unusable)
set -u

aksum="$(realpath "${1:?usage: test_aksum_lines.sh PATH/TO/aksum [ROUNDS]}")"
rounds="${2:-10}"
work="$(mktemp -d "${TMPDIR:-/tmp}/ak-test-aksum-lines.XXXXXX")"
trap 'rm -rf "$work"' EXIT
cd "$work" || exit 1

failures=0
n=0
ok() { n=$((n + 1)); printf 'ok %d - %s\n' "$n" "$1"; }
not_ok() { n=$((n + 1)); failures=$((failures + 1)); printf 'not ok %d - %s\n' "$n" "$1"; }
check() { # check DESCRIPTION COMMAND...
  local what="$1"
  shift
  if "$@"; then ok "$what"; else not_ok "$what"; fi
}

printf 'x' >probe
if ! "$aksum" probe >/dev/null 2>probe.err && grep -q 'io_uring' probe.err; then
  cat probe.err
  exit 77
fi

# 3000 small files in 10 directories, names of 1 to 40 characters, so that
# lines are of many lengths and a 4096-byte cut falls anywhere in a line.
pad=xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx
for d in 0 1 2 3 4 5 6 7 8 9; do
  mkdir "t$d"
  for ((i = 0; i < 300; i++)); do
    printf '%s %s\n' "$d" "$i" >"t$d/f$i${pad:0:$(((i * 7 + d) % 40))}"
  done
done
find t? -type f | LC_ALL=C sort >names.txt
total=$(wc -l <names.txt)
xargs md5sum <names.txt | LC_ALL=C sort >ref.txt

# One round: 4 aksum processes at once, 500 files each, all writing the
# same pipe (| cat) or the same file (> out: one open file shared by all).
# Every line is "32 hex digits, two blanks, a name", there is one per file,
# and sorted they are md5sum's lines.
line_re='^[0-9a-f]{32}  t[0-9]/f[0-9]+x*$'
one_round() { # one_round pipe|file
  if [[ $1 == pipe ]]; then
    timeout 120 xargs -n500 -P4 "$aksum" -a md5 <names.txt | cat >out.txt
  else
    timeout 120 xargs -n500 -P4 "$aksum" -a md5 <names.txt >out.txt
  fi
  local good
  good=$(grep -cE "$line_re" out.txt)
  [[ $good -eq $total && $(wc -l <out.txt) -eq $total ]] || return 1
  LC_ALL=C sort out.txt | cmp -s - ref.txt
}
for target in pipe file; do
  bad=0
  for r in $(seq 1 "$rounds"); do
    one_round "$target" || bad=$((bad + 1))
  done
  check "4 aksum processes writing one $target: every line whole in $rounds rounds ($bad bad)" \
    test "$bad" -eq 0
done

# The same with -c: "name: OK" lines from 4 checkers at once.
split -n l/4 ref.txt part.
bad=0
for r in $(seq 1 "$rounds"); do
  printf '%s\n' part.* | timeout 120 xargs -n1 -P4 "$aksum" -a md5 -c | cat >chk.txt
  good=$(grep -cE '^t[0-9]/f[0-9]+x*: OK$' chk.txt)
  [[ $good -eq $total && $(wc -l <chk.txt) -eq $total ]] || bad=$((bad + 1))
done
check "4 aksum -c writing one pipe: every OK line whole in $rounds rounds ($bad bad)" \
  test "$bad" -eq 0

# ---- Batched, not a write per line ------------------------------------------------
if command -v strace >/dev/null; then
  # writes_to_stdout TRACE: the sizes of the writes to fd 1, one a line.
  writes_to_stdout() { sed -n 's/^[0-9]* *write(1, .*) = \([0-9]*\)$/\1/p' "$1"; }
  mapfile -t all <names.txt
  timeout 120 strace -qq -e trace=write -o pipe.trace "$aksum" -a md5 "${all[@]}" | cat >pipe.txt
  writes_to_stdout pipe.trace >pipe.sizes
  nw=$(wc -l <pipe.sizes)
  max=$(sort -n pipe.sizes | tail -n1)
  check "to a pipe: $nw writes for $total lines (batched: at most one per 20 lines)" \
    test "$nw" -ge 1 -a "$nw" -le $((total / 20))
  check "to a pipe: no write longer than PIPE_BUF (largest $max)" test "${max:-0}" -le 4096
  # Each write ends at a line's end: the writes' sizes add up to whole
  # lines in order (the output cut at each write's end is a newline).
  cuts_ok=1
  at=0
  while read -r sz; do
    at=$((at + sz))
    [[ $(head -c "$at" pipe.txt | tail -c 1 | od -An -tx1 | tr -d ' ') == 0a ]] || cuts_ok=0
  done <pipe.sizes
  [[ $at -eq $(wc -c <pipe.txt) ]] || cuts_ok=0
  check "to a pipe: every write ends at a line's end" test "$cuts_ok" -eq 1
  timeout 120 strace -qq -e trace=write -o file.trace "$aksum" -a md5 "${all[@]}" >file.txt
  nwf=$(writes_to_stdout file.trace | wc -l)
  check "to a file: $nwf writes for $total lines (64 KiB batches)" test "$nwf" -le 4
  if command -v script >/dev/null; then
    # A terminal: lines show as they come, one write each (as sha256sum).
    mapfile -t three < <(head -n3 names.txt)
    timeout 120 script -qec "strace -qq -e trace=write -o tty.trace '$aksum' -a md5 ${three[*]}" \
      /dev/null >/dev/null
    ntty=$(writes_to_stdout tty.trace | wc -l)
    check "to a terminal: a write per line (3 lines: $ntty writes)" test "$ntty" -eq 3
  else
    echo "# script(1) missing: the terminal check is skipped"
  fi
else
  echo "# strace missing (tools/bootstrap installs it): the write-count checks are skipped"
fi

# An error message on stderr comes between the lines around it with 2>&1,
# where sha256sum puts it (stdout's batch is written before it).
mapfile -t some < <(head -n 200 names.txt)
timeout 60 "$aksum" -a md5 "${some[@]:0:100}" missing "${some[@]:100}" >mixed.txt 2>&1
md5sum "${some[@]:0:100}" missing "${some[@]:100}" >mixed-ref.txt 2>&1
check "2>&1: the message for a missing file sits between the lines, as md5sum's" \
  cmp -s <(grep -v '^aksum: WARNING' mixed.txt | sed 's/^aksum: /md5sum: /') mixed-ref.txt

printf '1..%d\n' "$n"
if ((failures > 0)); then
  printf '%d of %d checks failed (work dir kept: %s)\n' "$failures" "$n" "$work"
  trap - EXIT
  exit 1
fi
exit 0
