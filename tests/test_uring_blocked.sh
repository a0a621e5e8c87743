#!/usr/bin/env bash
# test_uring_blocked.sh: the programs run where io_uring cannot be used, on
# the epoll backend, with correct output: akprobe names the backend and the
# reason; aksum hashes a tree (checked by sha256sum), checks it (-c) and
# copies it; the echo example serves its client; akget (when built)
# downloads a file from a local server, byte for byte.
#
#   test_uring_blocked.sh seccomp LAUNCHER AKPROBE AKSUM ECHO_SERVER ECHO_CLIENT [AKGET]
#     every program runs under LAUNCHER (tests/seccomp_launch.c): a seccomp
#     filter making io_uring_setup/enter/register fail with EPERM, as
#     Docker's default profile does.
#   test_uring_blocked.sh sysctl - AKPROBE AKSUM ECHO_SERVER ECHO_CLIENT [AKGET]
#     sets kernel.io_uring_disabled=2 for the run and restores it after.
#     That switches io_uring off for every process on the machine, so it
#     runs only with AK_TEST_SYSCTL=1 (and as root, on a kernel with the
#     sysctl); otherwise it exits 77 (SKIP) saying why.
#
# Every step is bounded (timeout); exit 0 all passed, 1 a step failed, 77 skip.
set -u

mode="${1:?usage: test_uring_blocked.sh seccomp|sysctl LAUNCHER AKPROBE AKSUM ECHO_SERVER ECHO_CLIENT [AKGET]}"
launcher="$2"
akprobe="$(realpath "$3")"
aksum="$(realpath "$4")"
echo_server="$(realpath "$5")"
echo_client="$(realpath "$6")"
akget="${7:-}"
[[ -n "$akget" && -x "$akget" ]] && akget="$(realpath "$akget")" || akget=""

sysctl=/proc/sys/kernel/io_uring_disabled
work="$(mktemp -d "${TMPDIR:-/tmp}/ak-test-blocked.XXXXXX")"
old_sysctl=""
server_pid=""
cleanup() {
  [[ -n "$server_pid" ]] && kill "$server_pid" 2>/dev/null
  if [[ -n "$old_sysctl" ]]; then
    echo "$old_sysctl" >"$sysctl" && printf '# restored kernel.io_uring_disabled=%s\n' "$old_sysctl"
  fi
  rm -rf "$work"
}
trap cleanup EXIT
cd "$work" || exit 1

run=()
case "$mode" in
  seccomp)
    run=("$(realpath "$launcher")")
    "${run[@]}" true
    rc=$?
    ((rc == 77)) && { echo "# skip: a seccomp filter cannot be installed here"; exit 77; }
    ((rc == 0)) || { echo "seccomp_launch does not run: $rc"; exit 1; }
    want_reason="seccomp"
    ;;
  sysctl)
    if [[ "${AK_TEST_SYSCTL:-0}" != 1 ]]; then
      echo "# skip: kernel.io_uring_disabled=2 would switch io_uring off for every process" \
           "on the machine; set AK_TEST_SYSCTL=1 to run this"
      exit 77
    fi
    if [[ ! -w "$sysctl" ]]; then
      echo "# skip: cannot write $sysctl (not root, or a kernel before 6.6)"
      exit 77
    fi
    old_sysctl="$(cat "$sysctl")"
    if ! echo 2 >"$sysctl"; then
      old_sysctl=""
      echo "# skip: the kernel refused kernel.io_uring_disabled=2"
      exit 77
    fi
    want_reason="io_uring_disabled"
    ;;
  *) echo "unknown mode $mode"; exit 2 ;;
esac
# The library's own choice is under test: no AK_BACKEND from the caller.
unset AK_BACKEND

failures=0
n=0
ok() { n=$((n + 1)); printf 'ok %d - %s\n' "$n" "$1"; }
not_ok() { n=$((n + 1)); failures=$((failures + 1)); printf 'not ok %d - %s\n' "$n" "$1"; }
check() { # check DESCRIPTION COMMAND...
  local what="$1"
  shift
  if "$@"; then ok "$what"; else not_ok "$what"; fi
}
T() { timeout 120 "${run[@]}" "$@"; }

# akprobe: a loop runs (exit 0), on epoll, and the reason is named.
T "$akprobe" >probe.out 2>&1
probe_rc=$?
cat probe.out | head -4
check "akprobe exits 0 (a loop runs)" test "$probe_rc" -eq 0
check "akprobe says epoll" grep -q "backend epoll" probe.out
check "akprobe names the reason ($want_reason)" grep -q "$want_reason" probe.out

# aksum: a tree of files of awkward sizes, hashed, checked, copied.
mkdir -p tree/a/b tree/c
i=0
for s in 0 1 4095 4096 4097 65536 1048577 3000000; do
  for dir in tree tree/a/b tree/c; do
    i=$((i + 1))
    head -c "$s" /dev/urandom >"$dir/f$i.bin"
  done
done
(cd tree && find . -type f -print0 | sort -z | xargs -0 sha256sum) | sed 's#  \./#  #' | sort -k2 >want.sum
(cd tree && T "$aksum" -r .) >got.raw 2>aksum.err
aksum_rc=$?
sed 's#  \./#  #' got.raw | sort -k2 >got.sum
check "aksum -r exits 0" test "$aksum_rc" -eq 0
check "aksum's sums are sha256sum's" cmp -s want.sum got.sum
(cd tree && T "$aksum" -c ../got.raw) >check.out 2>&1
check "aksum -c passes its own sums" test $? -eq 0
T "$aksum" -r --copy copy tree >copy.out 2>&1
copy_rc=$?
check "aksum --copy exits 0" test "$copy_rc" -eq 0
check "aksum --copy copies byte for byte" diff -r tree copy/tree -q
[[ -s aksum.err ]] && head -3 aksum.err
if [[ "$mode" == seccomp ]]; then
  # A filesystem without O_TMPFILE, as the kernel answers for one
  # (EOPNOTSUPP: vfat; EISDIR: kernels before 3.11; EINVAL): the copies
  # take named temporaries instead and are whole, with nothing left over.
  # Any other error of that open is the copy's error.
  for e in 95 21 22; do
    rm -rf "copy-$e"
    "${run[@]}" --tmpfile-errno "$e" "$aksum" -r --copy "copy-$e" tree >/dev/null 2>"copy-$e.err"
    check "aksum --copy where O_TMPFILE fails with errno $e: exit 0 (named temporaries)" \
      test $? -eq 0
    check "... byte for byte, no temporary left" \
      bash -c 'diff -rq "$1" "$2/tree" && test -z "$(find "$2" -name ".*.aksum-*")"' _ tree "copy-$e"
  done
  "${run[@]}" --tmpfile-errno 13 "$aksum" --copy copy-13 tree/c/f3.bin >/dev/null 2>copy-13.err
  rc=$?
  check "... where it fails with EACCES: exit 1, the copy's error, nothing copied" \
    test "$rc" -eq 1 -a -n "$(grep 'copy to copy-13/tree/c/f3.bin: Permission denied' copy-13.err)" \
    -a -z "$(find copy-13 -type f)"
fi
T "$aksum" -v tree/c/f3.bin >verbose.out 2>verbose.err
check "aksum -v says epoll" grep -q "aksum: backend: epoll" verbose.err
check "aksum -v names the reason ($want_reason)" grep -q "$want_reason" verbose.err

# The echo example: 8 connections, 2000 messages each.
T sh -c '"$0" --port 0 --max-conns 8 >server.out 2>&1 & echo $! >server.pid; wait' "$echo_server" &
waiter=$!
port=""
for _ in $(seq 1 100); do
  port="$(sed -n 's/^listening on \([0-9]*\)$/\1/p' server.out 2>/dev/null)"
  [[ -n "$port" ]] && break
  sleep 0.1
done
server_pid="$(cat server.pid 2>/dev/null)"
if [[ -n "$port" ]]; then
  T "$echo_client" --port "$port" --host localhost --conns 8 --messages 2000 --size 100 >client.out 2>&1
  check "echo client exits 0" test $? -eq 0
  wait "$waiter"
  check "echo server exits 0 after its 8 connections" test $? -eq 0
else
  not_ok "echo server did not start"
  cat server.out
fi
server_pid=""

# akget, when this build has it: a file from a local HTTP server.
if [[ -n "$akget" ]]; then
  mkdir -p www
  head -c 3000001 /dev/urandom >www/blob
  python3 -m http.server 0 --bind 127.0.0.1 --directory www >http.out 2>&1 &
  server_pid=$!
  hport=""
  for _ in $(seq 1 100); do
    hport="$(sed -n 's/.* port \([0-9]*\).*/\1/p' http.out | head -n 1)"
    [[ -n "$hport" ]] && break
    sleep 0.1
  done
  if [[ -n "$hport" ]]; then
    T "$akget" -v -o got.blob "http://127.0.0.1:$hport/blob" >akget.out 2>&1
    check "akget exits 0" test $? -eq 0
    check "akget's file is the server's" cmp -s www/blob got.blob
    check "akget -v says epoll" grep -q "akget: backend: epoll" akget.out
    check "akget -v names the reason ($want_reason)" grep -q "$want_reason" akget.out
  else
    not_ok "the HTTP server for akget did not start"
  fi
  kill "$server_pid" 2>/dev/null
  server_pid=""
else
  echo "# akget: not in this build (skipped)"
fi

printf '1..%d\n' "$n"
((failures == 0))
