/* fs_common.c: the helpers akbench's file workloads share (akb_fs.h): the
 * data-set directory and files, warming the page cache, running peer
 * programs with their output captured and their own CPU time, and reading a
 * number out of fio's JSON. Knows no workload.
 */
#define _GNU_SOURCE
#include "akb_fs.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

const char *akb_fs_dir(void)
{
  static char dir[PATH_MAX];
  if (dir[0])
    return dir;
  const char *env = getenv("AKBENCH_DIR");
  snprintf(dir, sizeof(dir), "%s", env && *env ? env : "/var/tmp/akbench");
  for (char *p = dir + 1;; p++) {
    if (*p != '/' && *p != '\0')
      continue;
    char c = *p;
    *p = '\0';
    if (mkdir(dir, 0755) < 0 && errno != EEXIST) {
      fprintf(stderr, "akbench: mkdir %s: %s\n", dir, strerror(errno));
      dir[0] = '\0';
      return NULL;
    }
    *p = c;
    if (!c)
      break;
  }
  return dir;
}

int akb_fs_make_file(const char *path, uint64_t size)
{
  struct stat st;
  if (stat(path, &st) == 0 && S_ISREG(st.st_mode) && (uint64_t)st.st_size == size)
    return 0;
  char tmp[PATH_MAX + 16];
  snprintf(tmp, sizeof(tmp), "%s.part", path);
  int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0)
    return -errno;
  enum { BUF = 1 << 20 };
  uint64_t *buf = malloc(BUF);
  if (!buf) {
    close(fd);
    return -ENOMEM;
  }
  /* xorshift64: random enough that no filesystem compresses or dedups it,
   * and far faster than /dev/urandom for gigabytes. */
  uint64_t s = 0x9e3779b97f4a7c15u ^ size;
  int rc = 0;
  for (uint64_t done = 0; rc == 0 && done < size;) {
    for (size_t i = 0; i < BUF / 8; i++) {
      s ^= s << 13;
      s ^= s >> 7;
      s ^= s << 17;
      buf[i] = s;
    }
    size_t n = size - done < BUF ? (size_t)(size - done) : BUF;
    size_t put = 0;
    while (put < n) {
      ssize_t w = write(fd, (char *)buf + put, n - put);
      if (w < 0) {
        rc = -errno;
        break;
      }
      put += (size_t)w;
    }
    done += n;
  }
  free(buf);
  if (close(fd) < 0 && rc == 0)
    rc = -errno;
  if (rc == 0 && rename(tmp, path) < 0)
    rc = -errno;
  if (rc < 0)
    unlink(tmp);
  return rc;
}

int akb_fs_open_hot(const char *stem, unsigned mib)
{
  const char *dir = akb_fs_dir();
  if (!dir)
    return -ENOENT;
  char path[4096];
  snprintf(path, sizeof(path), "%s/%s-%um.dat", dir, stem, mib);
  int rc = akb_fs_make_file(path, (uint64_t)mib << 20);
  if (rc < 0)
    return rc;
  akb_fs_warm(path);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  return fd < 0 ? -errno : fd;
}

int akb_fs_warm(const char *path)
{
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return -errno;
  enum { BUF = 1 << 20 };
  char *buf = malloc(BUF);
  int rc = buf ? 0 : -ENOMEM;
  while (rc == 0) {
    ssize_t n = read(fd, buf, BUF);
    if (n < 0)
      rc = -errno;
    if (n <= 0)
      break;
  }
  free(buf);
  close(fd);
  return rc;
}

static double tv_s(const struct timeval *tv)
{
  return (double)tv->tv_sec + tv->tv_usec / 1e6;
}

static double now_s(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

int akb_fs_run(char *const argv[], char **out, size_t *out_len, bool keep_stderr, akb_span *span)
{
  int p[2];
  if (pipe2(p, O_CLOEXEC) < 0)
    return -errno;
  double t0 = now_s();
  pid_t pid = fork();
  if (pid < 0) {
    int err = -errno;
    close(p[0]);
    close(p[1]);
    return err;
  }
  if (pid == 0) {
    dup2(p[1], STDOUT_FILENO);
    if (!keep_stderr) {
      int null = open("/dev/null", O_WRONLY);
      if (null >= 0)
        dup2(null, STDERR_FILENO);
    }
    execvp(argv[0], argv);
    _exit(127);
  }
  close(p[1]);
  size_t cap = 1 << 16, len = 0;
  char *buf = malloc(cap);
  for (;;) {
    if (buf && len + 4096 > cap) {
      char *more = realloc(buf, cap * 2);
      if (!more) {
        free(buf);
        buf = NULL;
      } else {
        buf = more;
        cap *= 2;
      }
    }
    char sink[4096];
    ssize_t n = buf ? read(p[0], buf + len, cap - len - 1) : read(p[0], sink, sizeof(sink));
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      break;
    if (buf)
      len += (size_t)n;
  }
  close(p[0]);
  int status;
  struct rusage ru;
  while (wait4(pid, &status, 0, &ru) < 0) {
    if (errno != EINTR) {
      free(buf);
      return -errno;
    }
  }
  double t1 = now_s();
  if (span) {
    span->wall_s = t1 - t0;
    span->user_s = tv_s(&ru.ru_utime);
    span->sys_s = tv_s(&ru.ru_stime);
  }
  if (buf)
    buf[len] = '\0';
  if (out)
    *out = buf;
  else
    free(buf);
  if (out_len)
    *out_len = len;
  if (WIFEXITED(status))
    return WEXITSTATUS(status);
  return 128 + (WIFSIGNALED(status) ? WTERMSIG(status) : 0);
}

bool akb_fs_have(const char *prog)
{
  const char *path = getenv("PATH");
  if (!path)
    path = "/usr/bin:/bin";
  char buf[PATH_MAX];
  while (*path) {
    const char *end = strchr(path, ':');
    size_t n = end ? (size_t)(end - path) : strlen(path);
    snprintf(buf, sizeof(buf), "%.*s/%s", (int)n, path, prog);
    if (access(buf, X_OK) == 0)
      return true;
    path += n + (end ? 1 : 0);
  }
  return false;
}

const char *akb_fs_sibling(const char *name)
{
  static char buf[PATH_MAX + 256];
  char self[PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
  if (n <= 0)
    return NULL;
  self[n] = '\0';
  char *slash = strrchr(self, '/');
  if (!slash)
    return NULL;
  *slash = '\0';
  snprintf(buf, sizeof(buf), "%s/%s", self, name);
  return access(buf, X_OK) == 0 ? buf : NULL;
}

const char *akb_need_akget_nginx(akb_result *res)
{
  const char *akget = akb_fs_sibling("akget");
  if (!akget) {
    akb_fail(res, "akget is not built next to akbench (build/tools/akget)");
    return NULL;
  }
  if (!akb_fs_have("nginx") && access("/usr/sbin/nginx", X_OK) != 0) {
    akb_fail(res, "nginx: not installed (tools/bootstrap)");
    return NULL;
  }
  return akget;
}

double akb_fs_json_number(const char *text, const char *after, const char *key)
{
  if (!text)
    return NAN;
  const char *p = text;
  if (after) {
    p = strstr(p, after);
    if (!p)
      return NAN;
    p += strlen(after);
  }
  char quoted[64];
  snprintf(quoted, sizeof(quoted), "\"%s\"", key);
  p = strstr(p, quoted);
  if (!p)
    return NAN;
  p += strlen(quoted);
  while (*p == ' ' || *p == ':' || *p == '\t')
    p++;
  char *end;
  double v = strtod(p, &end);
  return end == p ? NAN : v;
}
