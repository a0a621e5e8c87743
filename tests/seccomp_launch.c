/* seccomp_launch.c: runs a command with io_uring blocked as Docker's default
 * seccomp profile blocks it: io_uring_setup, io_uring_enter and
 * io_uring_register fail with EPERM (every other syscall is allowed). A
 * filter survives execve and is inherited by children, so the command and
 * everything it starts run without io_uring.
 *
 *   seccomp_launch [--errno N] COMMAND [ARG...]
 *
 * Exit status: the command's (execvp), 77 when a filter cannot be installed
 * here (meson's SKIP), 126/127 when the command cannot be run. */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

#if defined(__x86_64__)
#define SL_AUDIT_ARCH AUDIT_ARCH_X86_64
#elif defined(__aarch64__)
#define SL_AUDIT_ARCH AUDIT_ARCH_AARCH64
#endif

/* The same numbers on every architecture (the unified syscall table). */
enum { NR_URING_SETUP = 425, NR_URING_ENTER = 426, NR_URING_REGISTER = 427 };

static int block_uring(int err)
{
#ifdef SL_AUDIT_ARCH
  unsigned ret_errno = SECCOMP_RET_ERRNO | ((unsigned)err & SECCOMP_RET_DATA);
  struct sock_filter filter[] = {
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SL_AUDIT_ARCH, 1, 0),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, NR_URING_SETUP, 3, 0),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, NR_URING_ENTER, 2, 0),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, NR_URING_REGISTER, 1, 0),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
      BPF_STMT(BPF_RET | BPF_K, ret_errno),
  };
  struct sock_fprog prog = {.len = (unsigned short)(sizeof(filter) / sizeof(filter[0])),
                            .filter = filter};
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
    return -errno;
  if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) != 0)
    return -errno;
  return 0;
#else
  (void)err;
  return -ENOSYS;
#endif
}

int main(int argc, char **argv)
{
  int err = EPERM;
  int first = 1;
  if (argc > 2 && strcmp(argv[1], "--errno") == 0) {
    err = atoi(argv[2]);
    first = 3;
  }
  if (first >= argc) {
    fprintf(stderr, "usage: seccomp_launch [--errno N] COMMAND [ARG...]\n");
    return 2;
  }
  int rc = block_uring(err);
  if (rc < 0) {
    fprintf(stderr, "seccomp_launch: cannot install the filter: %s\n", strerror(-rc));
    return 77;
  }
  execvp(argv[first], argv + first);
  fprintf(stderr, "seccomp_launch: %s: %s\n", argv[first], strerror(errno));
  return errno == ENOENT ? 127 : 126;
}
