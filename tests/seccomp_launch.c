/* seccomp_launch.c: runs a command with io_uring blocked as Docker's default
 * seccomp profile blocks it: io_uring_setup, io_uring_enter and
 * io_uring_register fail with EPERM (every other syscall is allowed). A
 * filter survives execve and is inherited by children, so the command and
 * everything it starts run without io_uring.
 *
 *   seccomp_launch [--errno N] [--tmpfile-errno N] COMMAND [ARG...]
 *
 * --tmpfile-errno N also makes openat with O_TMPFILE fail with N, as a
 * filesystem without O_TMPFILE answers (aksum's --copy fallback).
 *
 * Exit status: the command's (execvp), 77 when a filter cannot be installed
 * here (meson's SKIP), 126/127 when the command cannot be run. */
#define _GNU_SOURCE
#include "seccomp_filter.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv)
{
  int err = EPERM;
  int tmpfile_err = 0;
  int first = 1;
  for (;;) {
    if (first + 1 < argc && strcmp(argv[first], "--errno") == 0) {
      err = atoi(argv[first + 1]);
      first += 2;
    } else if (first + 1 < argc && strcmp(argv[first], "--tmpfile-errno") == 0) {
      tmpfile_err = atoi(argv[first + 1]);
      first += 2;
    } else {
      break;
    }
  }
  if (first >= argc) {
    fprintf(stderr, "usage: seccomp_launch [--errno N] [--tmpfile-errno N] COMMAND [ARG...]\n");
    return 2;
  }
  int rc = t_seccomp_block_uring(err);
  if (rc == 0 && tmpfile_err > 0)
    rc = t_seccomp_deny_tmpfile(tmpfile_err);
  if (rc < 0) {
    fprintf(stderr, "seccomp_launch: cannot install the filter: %s\n", strerror(-rc));
    return 77;
  }
  execvp(argv[first], argv + first);
  fprintf(stderr, "seccomp_launch: %s: %s\n", argv[first], strerror(errno));
  return errno == ENOENT ? 127 : 126;
}
