/* measure.c: how akbench measures. Owns the clocks (wall and CPU time of the
 * whole process, every thread included, since pool workers do the work), the
 * resident-set readings, medians, and running a case in a forked child so its
 * peak RSS is its own. Does not know any workload.
 */
#include "akbench.h"

#include <asynckit.h>

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

uint64_t akb_size(const akb_opts *opts, uint64_t full, uint64_t quick)
{
  if (opts->size)
    return opts->size;
  return opts->quick ? quick : full;
}

static int64_t timeval_ns(const struct timeval *tv)
{
  return (int64_t)tv->tv_sec * 1000000000 + (int64_t)tv->tv_usec * 1000;
}

int akb_usage_now(akb_usage *u)
{
  struct timespec ts;
  struct rusage ru;
  if (clock_gettime(CLOCK_MONOTONIC, &ts) != 0)
    return -errno;
  if (getrusage(RUSAGE_SELF, &ru) != 0)
    return -errno;
  u->wall_ns = (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
  u->user_ns = timeval_ns(&ru.ru_utime);
  u->sys_ns = timeval_ns(&ru.ru_stime);
  u->maxrss_kb = ru.ru_maxrss;
  return 0;
}

akb_span akb_span_between(const akb_usage *before, const akb_usage *after)
{
  akb_span s;
  s.wall_s = (double)(after->wall_ns - before->wall_ns) / 1e9;
  s.user_s = (double)(after->user_ns - before->user_ns) / 1e9;
  s.sys_s = (double)(after->sys_ns - before->sys_ns) / 1e9;
  return s;
}

static int cmp_double(const void *a, const void *b)
{
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

double akb_median(double *values, size_t n)
{
  qsort(values, n, sizeof(values[0]), cmp_double);
  return n % 2 ? values[n / 2] : (values[n / 2 - 1] + values[n / 2]) / 2;
}

long akb_rss_now_kb(void)
{
  FILE *f = fopen("/proc/self/statm", "r");
  if (!f)
    return -1;
  long size = 0, resident = 0;
  int got = fscanf(f, "%ld %ld", &size, &resident);
  fclose(f);
  if (got != 2)
    return -1;
  return resident * (sysconf(_SC_PAGESIZE) / 1024);
}

/* Reads exactly size bytes unless the writer goes away first. */
static ssize_t read_full(int fd, void *buf, size_t size)
{
  size_t got = 0;
  while (got < size) {
    ssize_t n = read(fd, (char *)buf + got, size - got);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0)
      return -1;
    if (n == 0)
      break;
    got += (size_t)n;
  }
  return (ssize_t)got;
}

static int write_full(int fd, const void *buf, size_t size)
{
  size_t put = 0;
  while (put < size) {
    ssize_t n = write(fd, (const char *)buf + put, size - put);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      return -1;
    put += (size_t)n;
  }
  return 0;
}

int akb_run_child(int (*fn)(void *arg, void *out), void *arg, void *out, size_t out_size,
                  int *status, struct rusage *child_ru)
{
  int fds[2];
  if (pipe(fds) != 0)
    return -errno;
  /* Whatever is buffered would otherwise be printed twice. */
  fflush(stdout);
  fflush(stderr);
  pid_t pid = fork();
  if (pid < 0) {
    int err = -errno;
    close(fds[0]);
    close(fds[1]);
    return err;
  }
  if (pid == 0) {
    close(fds[0]);
    memset(out, 0, out_size);
    int rc = fn(arg, out);
    /* 126 and up are the shell's; keep the child's codes below. */
    if (rc < 0 || rc > 125)
      rc = 125;
    if (write_full(fds[1], out, out_size) != 0)
      _exit(126);
    _exit(rc);
  }
  close(fds[1]);
  ssize_t got = read_full(fds[0], out, out_size);
  int read_err = got < 0 ? errno : 0;
  close(fds[0]);

  int wstatus = 0;
  pid_t w;
  do
    w = wait4(pid, &wstatus, 0, child_ru);
  while (w < 0 && errno == EINTR);
  if (w < 0)
    return -errno;
  if (read_err)
    return -read_err;
  if (WIFSIGNALED(wstatus)) {
    fprintf(stderr, "akbench: child died of signal %d (%s)\n", WTERMSIG(wstatus),
            strsignal(WTERMSIG(wstatus)));
    return -ECHILD;
  }
  if (!WIFEXITED(wstatus) || (size_t)got != out_size)
    return -ECHILD;
  *status = WEXITSTATUS(wstatus);
  return 0;
}

bool akb_backend_is_epoll(void)
{
  ak_loop *loop = NULL;
  if (ak_loop_new(&loop, NULL) < 0)
    return false;
  ak_features ft;
  ak_loop_features(loop, &ft);
  ak_loop_free(loop);
  return ft.backend == AK_BACKEND_EPOLL;
}
