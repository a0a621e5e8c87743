/* seccomp_filter.c: the raw-BPF seccomp filter the tests install
 * (seccomp_filter.h). Written once: test_unavailable.c calls it in forked
 * children, seccomp_launch.c before execve. */
#define _GNU_SOURCE
#include "seccomp_filter.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <sys/prctl.h>
#include <sys/syscall.h>

#if defined(__x86_64__)
#define T_AUDIT_ARCH AUDIT_ARCH_X86_64
#elif defined(__aarch64__)
#define T_AUDIT_ARCH AUDIT_ARCH_AARCH64
#endif

enum { MAX_DENIED = 32 };

#ifdef T_AUDIT_ARCH
/* Installs a filter of len instructions for this thread and what it starts
 * (no_new_privs first, so no privilege is needed). 0 or -errno. */
static int install(struct sock_filter *filter, size_t len)
{
  struct sock_fprog prog = {.len = (unsigned short)len, .filter = filter};
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
    return -errno;
  if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) != 0)
    return -errno;
  return 0;
}
#endif

int t_seccomp_deny(const unsigned *nrs, size_t n, int err)
{
  if (n == 0 || n > MAX_DENIED)
    return -EINVAL;
#ifdef T_AUDIT_ARCH
  /* Load arch: another ABI is allowed (its numbers mean other calls). Load
   * nr: each denied number jumps to the last instruction, the errno. */
  struct sock_filter filter[3 + 1 + MAX_DENIED + 2];
  size_t k = 0;
  filter[k++] =
      (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch));
  filter[k++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, T_AUDIT_ARCH, 1, 0);
  filter[k++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW);
  filter[k++] =
      (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr));
  for (size_t i = 0; i < n; i++) {
    /* Instructions after this one up to the errno return: the remaining
     * compares, then the allow. */
    unsigned char to_deny = (unsigned char)(n - i);
    filter[k++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, nrs[i], to_deny, 0);
  }
  filter[k++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW);
  filter[k++] = (struct sock_filter)BPF_STMT(
      BPF_RET | BPF_K, SECCOMP_RET_ERRNO | ((unsigned)err & SECCOMP_RET_DATA));
  return install(filter, k);
#else
  (void)nrs;
  (void)err;
  return -ENOSYS;
#endif
}

int t_seccomp_block_uring(int err)
{
  static const unsigned uring[] = {T_NR_URING_SETUP, T_NR_URING_ENTER, T_NR_URING_REGISTER};
  return t_seccomp_deny(uring, sizeof(uring) / sizeof(uring[0]), err);
}

int t_seccomp_deny_tmpfile(int err)
{
#if defined(T_AUDIT_ARCH) && defined(__NR_openat)
  /* openat's flags are its third argument; the low 32 bits hold them (a
   * little-endian load of args[2]). The bit tested is the one O_TMPFILE
   * adds to O_DIRECTORY (glibc's __O_TMPFILE includes O_DIRECTORY, which
   * every directory open has). */
  struct sock_filter filter[] = {
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, T_AUDIT_ARCH, 1, 0),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_openat, 0, 2),
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, args[2])),
      BPF_JUMP(BPF_JMP | BPF_JSET | BPF_K, O_TMPFILE & ~O_DIRECTORY, 1, 0),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | ((unsigned)err & SECCOMP_RET_DATA)),
  };
  return install(filter, sizeof(filter) / sizeof(filter[0]));
#else
  (void)err;
  return -ENOSYS;
#endif
}
