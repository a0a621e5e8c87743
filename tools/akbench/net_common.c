/* net_common.c: the plumbing akbench's network workloads share: a server
 * and a client as two child processes running at once (so each side's CPU
 * time is its own, from wait4), their reports through pipes, a loopback
 * listening socket, the fd limit and count. Knows no workload.
 */
#include "akb_net.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

int akb_child_start(akb_child *c, int (*fn)(void *arg, void *report), void *arg)
{
  int fds[2];
  if (pipe(fds) != 0)
    return -errno;
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
    static unsigned char report[AKB_NET_REPORT];
    memset(report, 0, sizeof(report));
    int rc = fn(arg, report);
    if (rc < 0 || rc > 125)
      rc = 125;
    size_t put = 0;
    while (put < sizeof(report)) {
      ssize_t n = write(fds[1], report + put, sizeof(report) - put);
      if (n < 0 && errno == EINTR)
        continue;
      if (n <= 0)
        _exit(126);
      put += (size_t)n;
    }
    _exit(rc);
  }
  close(fds[1]);
  c->pid = pid;
  c->pipe_fd = fds[0];
  return 0;
}

static double tv_s(const struct timeval *tv)
{
  return (double)tv->tv_sec + (double)tv->tv_usec / 1e6;
}

int akb_child_finish(akb_child *c, void *report, double *user_s, double *sys_s)
{
  size_t got = 0;
  unsigned char *out = report;
  while (got < AKB_NET_REPORT) {
    ssize_t n = read(c->pipe_fd, out + got, AKB_NET_REPORT - got);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      break;
    got += (size_t)n;
  }
  close(c->pipe_fd);
  c->pipe_fd = -1;
  int status = 0;
  struct rusage ru;
  memset(&ru, 0, sizeof(ru));
  pid_t w;
  do
    w = wait4(c->pid, &status, 0, &ru);
  while (w < 0 && errno == EINTR);
  c->pid = 0;
  if (w < 0)
    return -errno;
  *user_s = tv_s(&ru.ru_utime);
  *sys_s = tv_s(&ru.ru_stime);
  if (WIFSIGNALED(status)) {
    fprintf(stderr, "akbench: child died of signal %d (%s)\n", WTERMSIG(status),
            strsignal(WTERMSIG(status)));
    return -ECHILD;
  }
  if (!WIFEXITED(status) || got != AKB_NET_REPORT)
    return -ECHILD;
  return WEXITSTATUS(status);
}

void akb_child_kill(akb_child *c)
{
  if (c->pid <= 0)
    return;
  kill(c->pid, SIGKILL); /* our own child, by its pid */
  if (c->pipe_fd >= 0)
    close(c->pipe_fd);
  c->pipe_fd = -1;
  waitpid(c->pid, NULL, 0);
  c->pid = 0;
}

int akb_listen_loopback(int backlog, int *port)
{
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return -errno;
  struct sockaddr_in a;
  memset(&a, 0, sizeof(a));
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(a);
  int one = 1;
  if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
      bind(fd, (struct sockaddr *)&a, sizeof(a)) != 0 || listen(fd, backlog) != 0 ||
      getsockname(fd, (struct sockaddr *)&a, &len) != 0) {
    int err = -errno;
    close(fd);
    return err;
  }
  *port = ntohs(a.sin_port);
  return fd;
}

long akb_raise_nofile(void)
{
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
    return -1;
  rl.rlim_cur = rl.rlim_max;
  setrlimit(RLIMIT_NOFILE, &rl);
  getrlimit(RLIMIT_NOFILE, &rl);
  return (long)rl.rlim_cur;
}

int akb_count_fds(void)
{
  DIR *d = opendir("/proc/self/fd");
  if (!d)
    return -1;
  int n = 0;
  struct dirent *e;
  while ((e = readdir(d)) != NULL)
    if (e->d_name[0] != '.')
      n++;
  closedir(d);
  return n - 1; /* the directory's own fd */
}

double akb_now_s(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}
