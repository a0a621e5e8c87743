#!/usr/bin/env bash
# tests/test_fault_aksum.sh AKSUM: the Nth-hit loop (tests/test_fault.c's)
# over aksum as a child process: `aksum -r --copy DST src` of a small tree,
# with AK_FAULT_POINT / AK_FAULT_N for each point and N = 1, 2, ... until
# the run no longer reaches the Nth hit (AK_FAULT_REPORT says). After each
# run: no crash (exit 0 or 1, sanitizers quiet: their reports make the exit
# status >= 2 here), every line printed is the right hash, exit 0 prints them
# all, exit 1 names the failure on stderr, and no file under its final name
# in DST differs from its source. Needs a -Dfault_injection=true build.
set -u
aksum="$(realpath "$1")"
tmp="$(mktemp -d /tmp/ak-fault-aksum.XXXXXX)"
trap 'rm -rf "$tmp"' EXIT
cd "$tmp" || exit 1

mkdir -p src/a/b
: >src/empty
head -c 1 /dev/urandom >src/one
head -c 4097 /dev/urandom >src/a/page
head -c 300000 /dev/urandom >src/a/b/big
head -c 70000 /dev/urandom >src/a/b/mid
sha256sum src/empty src/one src/a/page src/a/b/big src/a/b/mid | sort >ref

fail() { printf 'fault-aksum: %s\n' "$*" >&2; exit 1; }
max_n=3000
total=0
line=""
for point in op_res op_short ep_wait submit sqe alloc pool_task; do
  n=1
  while ((n <= max_n)); do
    rm -rf dst out err rep
    AK_FAULT_POINT=$point AK_FAULT_N=$n AK_FAULT_REPORT="$tmp/rep" \
      timeout -k 5 60 "$aksum" -r --copy dst src >out 2>err
    rc=$?
    fired="$(sed -n "s/^$point hits=[0-9]* fired=\([0-9]*\)$/\1/p" rep 2>/dev/null)"
    [[ -n "$fired" ]] || fail "$point N=$n: no fault report (exit $rc): $(head -c 500 err)"
    what="$point N=$n (exit $rc, fired $fired)"
    ((rc == 0 || rc == 1)) || fail "$what: crashed or hung: $(head -c 2000 err)"
    ((fired > 0 || rc == 0)) || fail "$what: failed without a fault: $(head -c 500 err)"
    sort out >got
    # Every hash printed is right; all of them when the run says so.
    extra="$(comm -13 ref got)"
    [[ -z "$extra" ]] || fail "$what: wrong lines: $extra"
    if ((rc == 0)); then
      cmp -s ref got || fail "$what: exit 0 with lines missing"
    else
      [[ -s err ]] || fail "$what: exit 1 with nothing on stderr"
    fi
    # No copy under its final name differs from its source; on exit 0 all
    # of them are there.
    while read -r _ f; do
      if [[ -e "dst/$f" ]]; then
        cmp -s "$f" "dst/$f" || fail "$what: dst/$f differs from $f"
      elif ((rc == 0)); then
        fail "$what: exit 0 without dst/$f"
      fi
    done <ref
    ((fired > 0)) || break
    n=$((n + 1))
  done
  ((n <= max_n)) || fail "$point: still reached at N=$max_n"
  total=$((total + n - 1))
  line+=" $point=$((n - 1))"
done
echo "fault: scenario aksum-copy: $total (point, N) pairs, all passed:$line"
