/* seccomp_filter.h: the tests' one seccomp helper: make chosen syscalls fail
 * with a chosen errno, as a container's profile does (Docker's default
 * profile answers io_uring_setup, io_uring_enter and io_uring_register with
 * EPERM). Used by test_unavailable.c and by the seccomp_launch program, so
 * it depends on nothing but libc (no cmocka, no asynckit). */
#ifndef T_SECCOMP_FILTER_H
#define T_SECCOMP_FILTER_H

#include <stddef.h>

/* The io_uring syscalls: the same numbers on every architecture (the
 * unified syscall table). */
enum { T_NR_URING_SETUP = 425, T_NR_URING_ENTER = 426, T_NR_URING_REGISTER = 427 };

/* Makes each of the n syscalls in nrs fail with err (1..4095) for the
 * calling thread and whatever it creates or executes from now on; other
 * syscalls, and calls from other architectures' ABIs, are allowed.
 * Sets no_new_privs. Returns 0, -EINVAL for n == 0 or n > 32, -ENOSYS on an
 * architecture this file does not know, or prctl's -errno. */
int t_seccomp_deny(const unsigned *nrs, size_t n, int err);

/* t_seccomp_deny of io_uring_setup, io_uring_enter and io_uring_register. */
int t_seccomp_block_uring(int err);

/* Makes openat with O_TMPFILE in its flags fail with err, as on a
 * filesystem without O_TMPFILE (EOPNOTSUPP: vfat) or a kernel before 3.11
 * (EISDIR); other opens are allowed. Only syscalls are filtered: an openat
 * run by io_uring is not, so use it with io_uring blocked (the epoll
 * backend opens on the pool with the syscall). Returns as t_seccomp_deny. */
int t_seccomp_deny_tmpfile(int err);

#endif /* T_SECCOMP_FILTER_H */
