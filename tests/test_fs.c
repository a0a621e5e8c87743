/* test_fs.c: file operations as futures (include/asynckit/fs.h): every op
 * and its error paths, short transfers, the helpers, the forced pool path,
 * registered files and buffers, cancellation with buffer lifetime, ENOSPC. */
#define _GNU_SOURCE
#include <asynckit.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <liburing.h>

#include "helpers.h"

/* ---- Fixture: a loop (plain or forced to the pool) and a scratch dir ---- */

typedef struct fx {
  ak_loop *loop;
  char dir[PATH_MAX];
  int dirfd;
} fx;

static const int64_t T_WAIT = 20LL * 1000000000LL;

static int fx_setup_flags(void **state, unsigned flags)
{
  fx *x = calloc(1, sizeof(*x));
  ak_loop_options opts = {.flags = flags};
  int rc = ak_loop_new(&x->loop, &opts);
  if (rc < 0) {
    fprintf(stderr, "no loop: %s\n", ak_strerror(rc));
    free(x);
    return -1;
  }
  snprintf(x->dir, sizeof(x->dir), "%s/ak-test-fs.XXXXXX",
           getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
  if (!mkdtemp(x->dir))
    return -1;
  x->dirfd = open(x->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  *state = x;
  return 0;
}

static int fx_setup(void **state)
{
  return fx_setup_flags(state, 0);
}
static int fx_setup_pool(void **state)
{
  return fx_setup_flags(state, AK_LOOP_FORCE_POOL);
}

static void rm_tree(const char *path)
{
  char cmd[PATH_MAX + 32];
  snprintf(cmd, sizeof(cmd), "rm -rf '%s'", path);
  if (system(cmd) != 0)
    fprintf(stderr, "could not remove %s\n", path);
}

static int fx_teardown(void **state)
{
  fx *x = *state;
  ak_loop_free(x->loop);
  close(x->dirfd);
  rm_tree(x->dir);
  free(x);
  return 0;
}

/* Waits for f (running the loop), releases it, returns its result. */
/* The process umask, read without changing it for longer than a call. */
static mode_t t_umask(void)
{
  mode_t m = umask(0);
  umask(m);
  return m;
}

static int64_t t_get(ak_future *f)
{
  assert_non_null(f);
  int64_t res = ak_future_get(f, T_WAIT, NULL);
  assert_int_not_equal(res, AK_EWAITTIMEOUT);
  ak_future_release(f);
  return res;
}

static void t_write_file(fx *x, const char *name, const void *data, size_t len)
{
  int fd = openat(x->dirfd, name, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  assert_true(fd >= 0);
  assert_int_equal(write(fd, data, len), (ssize_t)len);
  close(fd);
}

static unsigned char *t_random(size_t len, unsigned seed)
{
  unsigned char *p = malloc(len ? len : 1);
  uint32_t s = seed * 2654435761u + 1;
  for (size_t i = 0; i < len; i++) {
    s ^= s << 13;
    s ^= s >> 17;
    s ^= s << 5;
    p[i] = (unsigned char)s;
  }
  return p;
}

static int t_open(fx *x, const char *name, int flags)
{
  int fd = (int)t_get(ak_openat(x->loop, x->dirfd, name, flags, 0644));
  assert_true(fd >= 0);
  return fd;
}

static int count_fds(void)
{
  DIR *d = opendir("/proc/self/fd");
  int n = 0;
  struct dirent *e;
  while ((e = readdir(d)) != NULL)
    n += e->d_name[0] != '.';
  closedir(d);
  return n;
}

static bool is_root(void)
{
  return geteuid() == 0;
}

/* ---- open, read, write, close ---------------------------------------- */

static void open_write_read_close(void **state)
{
  fx *x = *state;
  int fd = t_open(x, "a.txt", O_RDWR | O_CREAT | O_TRUNC);
  assert_true(fcntl(fd, F_GETFD) & FD_CLOEXEC);
  assert_int_equal(t_get(ak_write(x->loop, fd, "hello world", 11, 0)), 11);
  char buf[32] = {0};
  assert_int_equal(t_get(ak_read(x->loop, fd, buf, sizeof(buf), 0)), 11);
  assert_string_equal(buf, "hello world");
  assert_int_equal(t_get(ak_close(x->loop, fd)), 0);
  assert_int_equal(fcntl(fd, F_GETFD), -1);
}

static void open_errors(void **state)
{
  fx *x = *state;
  t_write_file(x, "file", "x", 1);
  mkdirat(x->dirfd, "sub", 0755);
  assert_int_equal(t_get(ak_openat(x->loop, x->dirfd, "missing", O_RDONLY, 0)), -ENOENT);
  assert_int_equal(t_get(ak_openat(x->loop, x->dirfd, "sub", O_WRONLY, 0)), -EISDIR);
  assert_int_equal(t_get(ak_openat(x->loop, x->dirfd, "file/x", O_RDONLY, 0)), -ENOTDIR);
  assert_int_equal(t_get(ak_openat(x->loop, x->dirfd, "file", O_CREAT | O_EXCL | O_WRONLY, 0644)),
                   -EEXIST);
  assert_int_equal(t_get(ak_openat(x->loop, -1, "file", O_RDONLY, 0)), -EBADF);
  /* A long path goes to the heap copy; ENAMETOOLONG passes through. */
  char longname[600];
  memset(longname, 'n', sizeof(longname) - 1);
  longname[sizeof(longname) - 1] = '\0';
  assert_int_equal(t_get(ak_openat(x->loop, x->dirfd, longname, O_RDONLY, 0)), -ENAMETOOLONG);
  char deep[PATH_MAX + 32];
  snprintf(deep, sizeof(deep), "%s/sub/../file", x->dir);
  int fd = (int)t_get(ak_openat(x->loop, AT_FDCWD, deep, O_RDONLY, 0));
  assert_true(fd >= 0);
  close(fd);
}

static void rw_errors(void **state)
{
  fx *x = *state;
  char buf[16];
  assert_int_equal(t_get(ak_read(x->loop, 9999, buf, sizeof(buf), 0)), -EBADF);
  assert_int_equal(t_get(ak_write(x->loop, 9999, buf, sizeof(buf), 0)), -EBADF);
  assert_int_equal(t_get(ak_read_opt(x->loop, -1, buf, sizeof(buf), 0, NULL)), -EBADF);
  mkdirat(x->dirfd, "d", 0755);
  int dfd = openat(x->dirfd, "d", O_RDONLY | O_CLOEXEC);
  assert_int_equal(t_get(ak_read(x->loop, dfd, buf, sizeof(buf), 0)), -EISDIR);
  assert_int_equal(t_get(ak_read_exact(x->loop, dfd, buf, sizeof(buf), 0, NULL)), -EISDIR);
  close(dfd);
  int ro = t_open(x, "ro", O_RDONLY | O_CREAT);
  assert_int_equal(t_get(ak_write(x->loop, ro, "x", 1, 0)), -EBADF);
  assert_int_equal(t_get(ak_write_all(x->loop, ro, "x", 1, 0, NULL)), -EBADF);
  close(ro);
}

static void short_read_at_eof(void **state)
{
  fx *x = *state;
  t_write_file(x, "ten", "0123456789", 10);
  int fd = t_open(x, "ten", O_RDONLY);
  char buf[64];
  assert_int_equal(t_get(ak_read(x->loop, fd, buf, sizeof(buf), 4)), 6);
  assert_int_equal(t_get(ak_read(x->loop, fd, buf, sizeof(buf), 10)), 0);
  assert_int_equal(t_get(ak_read(x->loop, fd, buf, sizeof(buf), 1000)), 0);
  /* read exactly: fewer than asked only because the end came first */
  assert_int_equal(t_get(ak_read_exact(x->loop, fd, buf, 8, 0, NULL)), 8);
  assert_int_equal(t_get(ak_read_exact(x->loop, fd, buf, 64, 7, NULL)), 3);
  assert_memory_equal(buf, "789", 3);
  assert_int_equal(t_get(ak_read_exact(x->loop, fd, buf, 64, 10, NULL)), 0);
  assert_int_equal(t_get(ak_read_exact(x->loop, fd, buf, 0, 0, NULL)), 0);
  /* the file position (-1) advances */
  assert_int_equal(t_get(ak_read_exact(x->loop, fd, buf, 4, -1, NULL)), 4);
  assert_int_equal(t_get(ak_read_exact(x->loop, fd, buf, 4, -1, NULL)), 4);
  assert_memory_equal(buf, "4567", 4);
  assert_int_equal(t_get(ak_read_exact(x->loop, fd, buf, 4, -1, NULL)), 2);
  close(fd);
}

/* A pipe gives real short reads: read exactly resubmits for the rest. */
static void read_exact_resubmits_short_reads(void **state)
{
  fx *x = *state;
  int p[2];
  assert_int_equal(pipe2(p, O_CLOEXEC), 0);
  char buf[12] = {0};
  ak_future *f = ak_read_exact(x->loop, p[0], buf, 10, -1, NULL);
  ak_loop_run(x->loop, AK_RUN_NOWAIT);
  assert_int_equal(write(p[1], "ab", 2), 2);
  ak_loop_run(x->loop, AK_RUN_ONCE);
  assert_false(ak_future_is_set(f));
  assert_int_equal(write(p[1], "cdefgh", 6), 6);
  ak_loop_run(x->loop, AK_RUN_ONCE);
  assert_false(ak_future_is_set(f));
  assert_int_equal(write(p[1], "ijkl", 4), 4); /* two more than asked: left in the pipe */
  assert_int_equal(t_get(f), 10);
  assert_string_equal(buf, "abcdefghij");
  close(p[1]);
  char rest[8];
  assert_int_equal(read(p[0], rest, sizeof(rest)), 2);
  close(p[0]);
}

static void write_all_and_read_exact_large(void **state)
{
  fx *x = *state;
  size_t len = (8u << 20) + 12345;
  unsigned char *data = t_random(len, 1);
  unsigned char *back = malloc(len);
  int fd = t_open(x, "big", O_RDWR | O_CREAT | O_TRUNC);
  assert_int_equal(t_get(ak_write_all(x->loop, fd, data, len, 0, NULL)), (int64_t)len);
  assert_int_equal(t_get(ak_read_exact(x->loop, fd, back, len, 0, NULL)), (int64_t)len);
  assert_memory_equal(data, back, len);
  /* at the file position */
  int fd2 = t_open(x, "big2", O_RDWR | O_CREAT | O_TRUNC);
  assert_int_equal(t_get(ak_write_all(x->loop, fd2, data, 1000, -1, NULL)), 1000);
  assert_int_equal(t_get(ak_write_all(x->loop, fd2, data + 1000, 1000, -1, NULL)), 1000);
  assert_int_equal(pread(fd2, back, 2000, 0), 2000);
  assert_memory_equal(data, back, 2000);
  close(fd);
  close(fd2);
  free(data);
  free(back);
}

/* RLIMIT_FSIZE makes the kernel write short, then refuse (EFBIG): write all
 * resubmits the rest and passes the error through. In a child: the limit
 * and SIGXFSZ are process-wide. */
static void write_all_short_then_efbig(void **state)
{
  fx *x = *state;
  pid_t pid = fork();
  if (pid == 0) {
    ak_loop *loop;
    if (ak_loop_new(&loop, NULL) < 0)
      _exit(2);
    signal(SIGXFSZ, SIG_IGN);
    struct rlimit rl = {.rlim_cur = 4096, .rlim_max = RLIM_INFINITY};
    setrlimit(RLIMIT_FSIZE, &rl);
    int fd = openat(x->dirfd, "limited", O_WRONLY | O_CREAT | O_TRUNC, 0644);
    static char buf[10000];
    ak_future *f = ak_write_all(loop, fd, buf, sizeof(buf), 0, NULL);
    int64_t res = ak_future_get(f, T_WAIT, NULL);
    ak_future_release(f);
    struct stat st;
    fstat(fd, &st);
    ak_loop_free(loop);
    _exit(res == -EFBIG && st.st_size == 4096 ? 0 : 1);
  }
  int status;
  assert_int_equal(waitpid(pid, &status, 0), pid);
  assert_true(WIFEXITED(status));
  assert_int_equal(WEXITSTATUS(status), 0);
}

static void readv_writev(void **state)
{
  fx *x = *state;
  int fd = t_open(x, "v", O_RDWR | O_CREAT | O_TRUNC);
  /* 20 pieces: more than fit in the op record, so the array is copied to
   * the heap; the caller's array is gone before the op runs. */
  char pieces[20][4];
  struct iovec *iov = calloc(20, sizeof(*iov));
  for (int i = 0; i < 20; i++) {
    memcpy(pieces[i], "abcdefghijklmnopqrstuvwxyz" + i, 4);
    iov[i].iov_base = pieces[i];
    iov[i].iov_len = 4;
  }
  ak_future *w = ak_writev(x->loop, fd, iov, 20, 0, NULL);
  memset(iov, 0, 20 * sizeof(*iov));
  free(iov);
  assert_int_equal(t_get(w), 80);
  char a[3], b[5];
  struct iovec two[2] = {{a, 3}, {b, 5}};
  assert_int_equal(t_get(ak_readv(x->loop, fd, two, 2, 4, NULL)), 8);
  assert_memory_equal(a, "bcd", 3);
  assert_memory_equal(b, "ecdef", 5);
  assert_int_equal(t_get(ak_readv(x->loop, fd, two, 2, 80, NULL)), 0);
  assert_int_equal(t_get(ak_readv(x->loop, 9999, two, 2, 0, NULL)), -EBADF);
  assert_int_equal(t_get(ak_readv(x->loop, fd, two, IOV_MAX + 1, 0, NULL)), -EINVAL);
  ak_rw_opts o = AK_RW_OPTS_INIT;
  o.rw_flags = RWF_APPEND;
  assert_int_equal(t_get(ak_writev(x->loop, fd, two, 1, 0, &o)), 3);
  struct stat st;
  fstat(fd, &st);
  assert_int_equal(st.st_size, 83);
  close(fd);
}

static void fsync_and_fdatasync(void **state)
{
  fx *x = *state;
  int fd = t_open(x, "s", O_RDWR | O_CREAT);
  assert_int_equal(t_get(ak_write(x->loop, fd, "data", 4, 0)), 4);
  assert_int_equal(t_get(ak_fsync(x->loop, fd)), 0);
  assert_int_equal(t_get(ak_fdatasync(x->loop, fd)), 0);
  assert_int_equal(t_get(ak_fsync(x->loop, 9999)), -EBADF);
  assert_int_equal(t_get(ak_fdatasync(x->loop, -1)), -EBADF);
  close(fd);
}

static void fallocate_grows_file(void **state)
{
  fx *x = *state;
  int fd = t_open(x, "f", O_RDWR | O_CREAT);
  assert_int_equal(t_get(ak_fallocate(x->loop, fd, 0, 0, 1 << 20)), 0);
  struct stat st;
  fstat(fd, &st);
  assert_int_equal(st.st_size, 1 << 20);
  assert_true(st.st_blocks * 512 >= (1 << 20));
  assert_int_equal(t_get(ak_fallocate(x->loop, 9999, 0, 0, 4096)), -EBADF);
  assert_int_equal(t_get(ak_fallocate(x->loop, fd, 0, 0, 0)), -EINVAL);
  close(fd);
}

/* ramfs refuses fallocate: the sparse fallback makes that a success, and the
 * first EOPNOTSUPP sends the op to the pool path, counted in the stats. */
static void fallocate_refused_is_sparse(void **state)
{
  fx *x = *state;
  if (!is_root())
    skip();
  char mnt[PATH_MAX + 16];
  snprintf(mnt, sizeof(mnt), "%s/ramfs", x->dir);
  mkdir(mnt, 0755);
  if (mount("ramfs", mnt, "ramfs", 0, NULL) < 0)
    skip();
  char path[PATH_MAX + 32];
  snprintf(path, sizeof(path), "%s/f", mnt);
  int fd = (int)t_get(ak_openat(x->loop, AT_FDCWD, path, O_RDWR | O_CREAT, 0644));
  assert_true(fd >= 0);
  assert_int_equal(fallocate(fd, 0, 0, 4096), -1);
  assert_int_equal(errno, EOPNOTSUPP);
  assert_int_equal(t_get(ak_fallocate(x->loop, fd, 0, 0, 65536)), 0);
  struct stat st;
  fstat(fd, &st);
  assert_int_equal(st.st_size, 65536);
  /* a second one, now on the pool path: size only grows */
  assert_int_equal(t_get(ak_fallocate(x->loop, fd, 0, 0, 100)), 0);
  fstat(fd, &st);
  assert_int_equal(st.st_size, 65536);
  ak_loop_stats s;
  ak_loop_stats_get(x->loop, &s);
  assert_true(s.fallbacks[11] >= 1); /* "fallocate" */
  assert_string_equal(ak_op_kind_name(11), "fallocate");
  /* modes other than 0 pass the refusal through */
  assert_int_equal(t_get(ak_fallocate(x->loop, fd, FALLOC_FL_KEEP_SIZE, 0, 4096)), -EOPNOTSUPP);
  close(fd);
  umount2(mnt, MNT_DETACH);
}

static void statx_sizes_and_errors(void **state)
{
  fx *x = *state;
  t_write_file(x, "seven", "1234567", 7);
  struct statx stx;
  memset(&stx, 0, sizeof(stx));
  assert_int_equal(t_get(ak_statx(x->loop, x->dirfd, "seven", 0, STATX_SIZE | STATX_MODE, &stx)),
                   0);
  assert_int_equal(stx.stx_size, 7);
  assert_true(S_ISREG(stx.stx_mode));
  int fd = t_open(x, "seven", O_RDONLY);
  memset(&stx, 0, sizeof(stx));
  assert_int_equal(t_get(ak_statx(x->loop, fd, "", AT_EMPTY_PATH, STATX_SIZE, &stx)), 0);
  assert_int_equal(stx.stx_size, 7);
  close(fd);
  assert_int_equal(t_get(ak_statx(x->loop, x->dirfd, "nope", 0, STATX_SIZE, &stx)), -ENOENT);
  assert_int_equal(t_get(ak_statx(x->loop, x->dirfd, "seven/x", 0, STATX_SIZE, &stx)), -ENOTDIR);
  assert_int_equal(t_get(ak_statx(x->loop, 9999, "seven", 0, STATX_SIZE, &stx)), -EBADF);
}

static void rename_unlink_mkdir(void **state)
{
  fx *x = *state;
  t_write_file(x, "a", "A", 1);
  t_write_file(x, "b", "B", 1);
  assert_int_equal(t_get(ak_mkdirat(x->loop, x->dirfd, "d", 0755)), 0);
  assert_int_equal(t_get(ak_mkdirat(x->loop, x->dirfd, "d", 0755)), -EEXIST);
  assert_int_equal(t_get(ak_mkdirat(x->loop, x->dirfd, "no/such", 0755)), -ENOENT);
  assert_int_equal(t_get(ak_mkdirat(x->loop, x->dirfd, "a/sub", 0755)), -ENOTDIR);
  assert_int_equal(t_get(ak_renameat(x->loop, x->dirfd, "a", x->dirfd, "d/a2", 0)), 0);
  assert_int_equal(faccessat(x->dirfd, "d/a2", F_OK, 0), 0);
  assert_int_equal(t_get(ak_renameat(x->loop, x->dirfd, "a", x->dirfd, "c", 0)), -ENOENT);
  assert_int_equal(t_get(ak_renameat(x->loop, x->dirfd, "b", x->dirfd, "d/a2", RENAME_NOREPLACE)),
                   -EEXIST);
  assert_int_equal(t_get(ak_renameat(x->loop, x->dirfd, "b", x->dirfd, "b/x", 0)), -ENOTDIR);
  assert_int_equal(t_get(ak_unlinkat(x->loop, x->dirfd, "d", 0)), -EISDIR);
  assert_int_equal(t_get(ak_unlinkat(x->loop, x->dirfd, "d", AT_REMOVEDIR)), -ENOTEMPTY);
  assert_int_equal(t_get(ak_unlinkat(x->loop, x->dirfd, "d/a2", 0)), 0);
  assert_int_equal(t_get(ak_unlinkat(x->loop, x->dirfd, "d/a2", 0)), -ENOENT);
  assert_int_equal(t_get(ak_unlinkat(x->loop, x->dirfd, "b", AT_REMOVEDIR)), -ENOTDIR);
  assert_int_equal(t_get(ak_unlinkat(x->loop, x->dirfd, "d", AT_REMOVEDIR)), 0);
  /* long paths on both sides of a rename (the heap copy) */
  char l1[200], l2[200];
  memset(l1, 'p', 150);
  l1[150] = '\0';
  memset(l2, 'q', 150);
  l2[150] = '\0';
  t_write_file(x, l1, "L", 1);
  assert_int_equal(t_get(ak_renameat(x->loop, x->dirfd, l1, x->dirfd, l2, 0)), 0);
  assert_int_equal(faccessat(x->dirfd, l2, F_OK, 0), 0);
}

/* linkat: a second name for a file; never replaces; and the use it is
 * for, naming an O_TMPFILE file through /proc/self/fd. */
static void linkat_names_files(void **state)
{
  fx *x = *state;
  t_write_file(x, "a", "AAA", 3);
  assert_int_equal(t_get(ak_linkat(x->loop, x->dirfd, "a", x->dirfd, "b", 0)), 0);
  struct stat sa, sb;
  assert_int_equal(fstatat(x->dirfd, "a", &sa, 0), 0);
  assert_int_equal(fstatat(x->dirfd, "b", &sb, 0), 0);
  assert_true(sa.st_ino == sb.st_ino && sb.st_nlink == 2);
  assert_int_equal(t_get(ak_linkat(x->loop, x->dirfd, "a", x->dirfd, "b", 0)), -EEXIST);
  assert_int_equal(t_get(ak_linkat(x->loop, x->dirfd, "nope", x->dirfd, "c", 0)), -ENOENT);
  assert_int_equal(t_get(ak_linkat(x->loop, x->dirfd, "a", x->dirfd, "no/such", 0)), -ENOENT);
  assert_int_equal(t_get(ak_linkat(x->loop, 9999, "a", x->dirfd, "c", 0)), -EBADF);
  assert_int_equal(t_get(ak_linkat(x->loop, x->dirfd, NULL, x->dirfd, "c", 0)), -EFAULT);
  assert_int_equal(t_get(ak_linkat(x->loop, x->dirfd, "a", x->dirfd, NULL, 0)), -EFAULT);

  int fd = openat(x->dirfd, ".", O_TMPFILE | O_RDWR | O_CLOEXEC, 0640);
  if (fd < 0 && (errno == EOPNOTSUPP || errno == EISDIR))
    return; /* this filesystem has no O_TMPFILE */
  assert_true(fd >= 0);
  assert_int_equal(pwrite(fd, "unnamed", 7, 0), 7);
  char proc[64];
  snprintf(proc, sizeof proc, "/proc/self/fd/%d", fd);
  /* Without AT_SYMLINK_FOLLOW the link would be to the /proc entry itself. */
  assert_true(t_get(ak_linkat(x->loop, AT_FDCWD, proc, x->dirfd, "t", 0)) < 0);
  assert_int_equal(faccessat(x->dirfd, "t", F_OK, 0), -1);
  assert_int_equal(t_get(ak_linkat(x->loop, AT_FDCWD, proc, x->dirfd, "t", AT_SYMLINK_FOLLOW)), 0);
  assert_int_equal(t_get(ak_linkat(x->loop, AT_FDCWD, proc, x->dirfd, "a", AT_SYMLINK_FOLLOW)),
                   -EEXIST);
  close(fd);
  char buf[16] = {0};
  int rfd = openat(x->dirfd, "t", O_RDONLY | O_CLOEXEC);
  assert_true(rfd >= 0);
  assert_int_equal(read(rfd, buf, sizeof buf), 7);
  assert_memory_equal(buf, "unnamed", 7);
  struct stat st;
  assert_int_equal(fstat(rfd, &st), 0);
  assert_int_equal(st.st_mode & 0777, 0640 & ~t_umask());
  close(rfd);
}

static void splice_file_pipe_file(void **state)
{
  fx *x = *state;
  size_t len = 100000;
  unsigned char *data = t_random(len, 2);
  t_write_file(x, "src", data, len);
  int in = t_open(x, "src", O_RDONLY);
  int out = t_open(x, "dst", O_RDWR | O_CREAT | O_TRUNC);
  int p[2];
  assert_int_equal(pipe2(p, O_CLOEXEC), 0);
  int64_t off = 0;
  while (off < (int64_t)len) {
    int64_t n = t_get(ak_splice(x->loop, in, off, p[1], -1, 65536, 0));
    assert_true(n > 0);
    int64_t moved = 0;
    while (moved < n) {
      int64_t m = t_get(ak_splice(x->loop, p[0], -1, out, off + moved, (size_t)(n - moved), 0));
      assert_true(m > 0);
      moved += m;
    }
    off += n;
  }
  assert_int_equal(t_get(ak_splice(x->loop, in, (int64_t)len, p[1], -1, 65536, 0)), 0);
  unsigned char *back = malloc(len);
  assert_int_equal(pread(out, back, len, 0), (ssize_t)len);
  assert_memory_equal(data, back, len);
  /* neither end a pipe */
  assert_int_equal(t_get(ak_splice(x->loop, in, 0, out, 0, 100, 0)), -EINVAL);
  assert_int_equal(t_get(ak_splice(x->loop, 9999, -1, p[1], -1, 100, 0)), -EBADF);
  close(in);
  close(out);
  close(p[0]);
  close(p[1]);
  free(data);
  free(back);
}

/* ---- Helpers: whole files and copies ------------------------------------ */

static void read_file_whole(void **state)
{
  fx *x = *state;
  size_t len = 3 * 1000 * 1000 + 7;
  unsigned char *data = t_random(len, 3);
  t_write_file(x, "whole", data, len);
  ak_future *f = ak_read_file(x->loop, x->dirfd, "whole", 0);
  void *value = NULL;
  assert_int_equal(ak_future_get(f, T_WAIT, &value), (int64_t)len);
  assert_non_null(value);
  assert_memory_equal(value, data, len);
  assert_int_equal(((char *)value)[len], '\0');
  ak_future_release(f);
  t_write_file(x, "empty", "", 0);
  f = ak_read_file(x->loop, x->dirfd, "empty", 0);
  assert_int_equal(ak_future_get(f, T_WAIT, &value), 0);
  assert_string_equal(value, "");
  ak_future_release(f);
  /* /proc files say size 0 and still have bytes: the buffer grows */
  f = ak_read_file(x->loop, AT_FDCWD, "/proc/self/status", 0);
  assert_true(ak_future_get(f, T_WAIT, &value) > 100);
  assert_non_null(strstr(value, "Name:"));
  ak_future_release(f);
  assert_int_equal(t_get(ak_read_file(x->loop, x->dirfd, "whole", 1000)), -EFBIG);
  assert_int_equal(t_get(ak_read_file(x->loop, x->dirfd, "whole", len)), (int64_t)len);
  assert_int_equal(t_get(ak_read_file(x->loop, x->dirfd, "nope", 0)), -ENOENT);
  mkdirat(x->dirfd, "dir", 0755);
  int before = count_fds();
  assert_int_equal(t_get(ak_read_file(x->loop, x->dirfd, "dir", 0)), -EISDIR);
  assert_int_equal(count_fds(), before);
  free(data);
}

static void assert_files_equal(fx *x, const char *a, const char *b)
{
  ak_future *fa = ak_read_file(x->loop, x->dirfd, a, 0);
  ak_future *fb = ak_read_file(x->loop, x->dirfd, b, 0);
  void *va, *vb;
  int64_t na = ak_future_get(fa, T_WAIT, &va), nb = ak_future_get(fb, T_WAIT, &vb);
  assert_true(na >= 0);
  assert_int_equal(na, nb);
  assert_memory_equal(va, vb, (size_t)na);
  ak_future_release(fa);
  ak_future_release(fb);
}

static int count_entries(fx *x, const char *sub)
{
  char path[PATH_MAX + 64];
  snprintf(path, sizeof(path), "%s/%s", x->dir, sub);
  DIR *d = opendir(path);
  int n = 0;
  struct dirent *e;
  while ((e = readdir(d)) != NULL)
    n += strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0;
  closedir(d);
  return n;
}

static void copy_file_sizes_and_modes(void **state)
{
  fx *x = *state;
  static const size_t sizes[] = {0, 1, 4095, 4096, 1 << 20, (1 << 20) + 1, 5 * (1 << 20) + 333};
  ak_copy_opts variants[] = {
      {0, 0, 0},
      {65536, 2, AK_COPY_BUFFERS},
      {0, 0, AK_COPY_BUFFERS},
      {100000, 3, AK_COPY_SPLICE | AK_COPY_FSYNC},
      {100000, 3, AK_COPY_DIRECT},
  };
  mkdirat(x->dirfd, "out", 0755);
  for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
    char src[32];
    snprintf(src, sizeof(src), "src%zu", i);
    unsigned char *data = t_random(sizes[i], (unsigned)i + 10);
    t_write_file(x, src, data, sizes[i]);
    fchmodat(x->dirfd, src, 0640, 0);
    free(data);
    for (size_t v = 0; v < sizeof(variants) / sizeof(variants[0]); v++) {
      char dst[48];
      snprintf(dst, sizeof(dst), "out/dst%zu.%zu", i, v);
      assert_int_equal(t_get(ak_copy_file(x->loop, x->dirfd, src, x->dirfd, dst, &variants[v])),
                       (int64_t)sizes[i]);
      assert_files_equal(x, src, dst);
      struct stat st;
      fstatat(x->dirfd, dst, &st, 0);
      assert_int_equal(st.st_mode & 0777, 0640);
    }
  }
  /* only the copies: no temporary names left behind */
  assert_int_equal(count_entries(x, "out"), 7 * 5);
}

static void copy_file_errors_leave_nothing(void **state)
{
  fx *x = *state;
  t_write_file(x, "src", "payload", 7);
  t_write_file(x, "existing", "old", 3);
  mkdirat(x->dirfd, "d", 0755);
  int before = count_fds();
  ak_copy_opts excl = {0, 0, AK_COPY_EXCL};
  assert_int_equal(t_get(ak_copy_file(x->loop, x->dirfd, "src", x->dirfd, "existing", &excl)),
                   -EEXIST);
  char buf[8] = {0};
  int fd = openat(x->dirfd, "existing", O_RDONLY);
  assert_int_equal(read(fd, buf, sizeof(buf)), 3);
  close(fd);
  assert_string_equal(buf, "old");
  assert_int_equal(t_get(ak_copy_file(x->loop, x->dirfd, "nope", x->dirfd, "x", NULL)), -ENOENT);
  assert_int_equal(t_get(ak_copy_file(x->loop, x->dirfd, "src", x->dirfd, "no/dir/x", NULL)),
                   -ENOENT);
  assert_int_equal(t_get(ak_copy_file(x->loop, x->dirfd, "d", x->dirfd, "x", NULL)), -EISDIR);
  assert_int_equal(t_get(ak_copy_file(x->loop, x->dirfd, "src", x->dirfd, "d", NULL)), -EISDIR);
  /* without EXCL an existing destination is replaced */
  assert_int_equal(t_get(ak_copy_file(x->loop, x->dirfd, "src", x->dirfd, "existing", NULL)), 7);
  assert_files_equal(x, "src", "existing");
  assert_int_equal(count_fds(), before);
  assert_int_equal(count_entries(x, "."), 3);
  assert_int_equal(count_entries(x, "d"), 0);
}

static void copy_fd_between_fds(void **state)
{
  fx *x = *state;
  size_t len = 3 * 1000 * 1000;
  unsigned char *data = t_random(len, 4);
  t_write_file(x, "in", data, len);
  int in = t_open(x, "in", O_RDONLY);
  int out = t_open(x, "out", O_WRONLY | O_CREAT | O_TRUNC);
  ak_copy_opts o = {.chunk = 4096, .depth = 16};
  assert_int_equal(t_get(ak_copy_fd(x->loop, in, out, &o)), (int64_t)len);
  assert_files_equal(x, "in", "out");
  o.flags = AK_COPY_BUFFERS;
  assert_int_equal(t_get(ak_copy_fd(x->loop, in, out, &o)), (int64_t)len);
  assert_files_equal(x, "in", "out");
  /* O_APPEND ignores offsets: the default takes buffers... and appends */
  int app = t_open(x, "app", O_WRONLY | O_CREAT | O_TRUNC | O_APPEND);
  assert_int_equal(t_get(ak_copy_fd(x->loop, in, app, &(ak_copy_opts){.depth = 1})), (int64_t)len);
  assert_files_equal(x, "in", "app");
  close(app);
  assert_int_equal(t_get(ak_copy_fd(x->loop, 9999, out, NULL)), -EBADF);
  int ro = t_open(x, "in", O_RDONLY);
  assert_int_equal(t_get(ak_copy_fd(x->loop, in, ro, NULL)), -EBADF);
  close(ro);
  close(in);
  close(out);
  free(data);
}

/* ENOSPC on a 1 MiB tmpfs: write all fails with it, and a copy that runs out
 * of room leaves neither the destination nor a temporary file. */
static void enospc_on_small_tmpfs(void **state)
{
  fx *x = *state;
  if (!is_root())
    skip();
  char mnt[PATH_MAX + 16];
  snprintf(mnt, sizeof(mnt), "%s/small", x->dir);
  mkdir(mnt, 0755);
  if (mount("tmpfs", mnt, "tmpfs", 0, "size=1m") < 0)
    skip();
  int mfd = open(mnt, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  size_t len = 2u << 20;
  unsigned char *data = t_random(len, 5);
  int fd = (int)t_get(ak_openat(x->loop, mfd, "full", O_WRONLY | O_CREAT, 0644));
  assert_true(fd >= 0);
  assert_int_equal(t_get(ak_write_all(x->loop, fd, data, len, 0, NULL)), -ENOSPC);
  close(fd);
  unlinkat(mfd, "full", 0);
  t_write_file(x, "two-mib", data, len);
  char dst[PATH_MAX + 32];
  snprintf(dst, sizeof(dst), "%s/copy", mnt);
  /* DIRECT: tmpfs refuses O_DIRECT, so this also takes that fallback */
  ak_copy_opts variants[] = {
      {0, 0, AK_COPY_BUFFERS}, {0, 0, AK_COPY_SPLICE}, {0, 0, AK_COPY_DIRECT}};
  for (int v = 0; v < 3; v++) {
    assert_int_equal(t_get(ak_copy_file(x->loop, x->dirfd, "two-mib", AT_FDCWD, dst, &variants[v])),
                     -ENOSPC);
    assert_int_equal(count_entries(x, "small"), 0);
  }
  /* a file that fits still copies */
  t_write_file(x, "small-file", data, 1000);
  assert_int_equal(t_get(ak_copy_file(x->loop, x->dirfd, "small-file", AT_FDCWD, dst, NULL)), 1000);
  assert_int_equal(count_entries(x, "small"), 1);
  close(mfd);
  free(data);
  umount2(mnt, MNT_DETACH);
}

/* ---- Registered files and buffers ---------------------------------------- */

static void registered_files_and_buffers(void **state)
{
  fx *x = *state;
  size_t len = 65536;
  unsigned char *data = t_random(len, 6);
  t_write_file(x, "r", data, len);
  int fd = t_open(x, "r", O_RDWR);
  int fds[2] = {-1, fd};
  if (t_loop_is_epoll(x->loop)) {
    /* epoll (fs.h): no table, no registered buffers; plain reads work. */
    assert_int_equal(ak_register_files(x->loop, fds, 2), AK_EBACKEND);
    struct iovec none = {data, len};
    assert_int_equal(ak_register_buffers(x->loop, &none, 1), AK_EBACKEND);
    unsigned char back[64];
    ak_rw_opts by_slot = {.file_index = 1, .buf_index = -1};
    ak_rw_opts by_buf = {.file_index = -1, .buf_index = 0};
    ak_future *f = ak_read_opt(x->loop, fd, back, sizeof(back), 0, &by_slot);
    assert_int_equal(ak_future_get(f, T_WAIT, NULL), AK_EBACKEND);
    ak_future_release(f);
    f = ak_read_opt(x->loop, fd, back, sizeof(back), 0, &by_buf);
    assert_int_equal(ak_future_get(f, T_WAIT, NULL), AK_EBACKEND);
    ak_future_release(f);
    f = ak_read(x->loop, fd, back, sizeof(back), 0);
    assert_int_equal(ak_future_get(f, T_WAIT, NULL), (int64_t)sizeof(back));
    assert_memory_equal(back, data, sizeof(back));
    ak_future_release(f);
    close(fd);
    free(data);
    return;
  }
  assert_int_equal(ak_register_files(x->loop, fds, 2), 0);
  assert_int_equal(ak_register_files(x->loop, fds, 2), -EBUSY);
  void *mem = NULL;
  assert_int_equal(posix_memalign(&mem, 4096, len), 0);
  struct iovec reg = {mem, len};
  assert_int_equal(ak_register_buffers(x->loop, &reg, 1), 0);
  ak_rw_opts o = {.file_index = 1, .buf_index = -1, .rw_flags = 0, .flags = AK_RW_SUBMIT_NOW};
  char small[100];
  assert_int_equal(t_get(ak_read_opt(x->loop, fd, small, 100, 10, &o)), 100);
  assert_memory_equal(small, data + 10, 100);
  o.buf_index = 0;
  assert_int_equal(t_get(ak_read_opt(x->loop, fd, mem, len, 0, &o)), (int64_t)len);
  assert_memory_equal(mem, data, len);
  memset(mem, 'z', 4096);
  assert_int_equal(t_get(ak_write_opt(x->loop, fd, mem, 4096, 8192, &o)), 4096);
  assert_int_equal(t_get(ak_read_exact(x->loop, fd, small, 10, 8192, &o)), -EFAULT);
  o.buf_index = -1;
  assert_int_equal(t_get(ak_read_exact(x->loop, fd, small, 10, 8192, &o)), 10);
  assert_memory_equal(small, "zzzzzzzzzz", 10);
  /* an empty slot: EBADF */
  o.file_index = 0;
  assert_int_equal(t_get(ak_read_opt(x->loop, fd, small, 10, 0, &o)), -EBADF);
  int upd = fd;
  assert_int_equal(ak_register_files_update(x->loop, 0, &upd, 1), 0);
  assert_int_equal(t_get(ak_read_opt(x->loop, fd, small, 10, 0, &o)), 10);
  assert_int_equal(ak_unregister_buffers(x->loop), 0);
  assert_int_equal(ak_unregister_files(x->loop), 0);
  assert_int_equal(ak_unregister_files(x->loop), -ENXIO);
  close(fd);
  free(mem);
  free(data);
}

/* ---- The pool path, forced for every op ----------------------------------- */

static void forced_pool_runs_every_op(void **state)
{
  fx *x = *state;
  ak_loop *loop = x->loop;
  int fd = (int)t_get(ak_openat(loop, x->dirfd, "p", O_RDWR | O_CREAT | O_TRUNC, 0644));
  assert_true(fd >= 0);
  assert_int_equal(t_get(ak_openat(loop, x->dirfd, "missing", O_RDONLY, 0)), -ENOENT);
  assert_int_equal(t_get(ak_write(loop, fd, "0123456789", 10, 0)), 10);
  char buf[16] = {0};
  assert_int_equal(t_get(ak_read(loop, fd, buf, 16, 0)), 10);
  assert_int_equal(t_get(ak_read_opt(loop, fd, buf, 4, 2, NULL)), 4);
  assert_memory_equal(buf, "2345", 4);
  assert_int_equal(t_get(ak_write_opt(loop, fd, "ab", 2, 10, NULL)), 2);
  struct iovec iov[2] = {{buf, 3}, {buf + 3, 3}};
  assert_int_equal(t_get(ak_readv(loop, fd, iov, 2, 6, NULL)), 6);
  assert_memory_equal(buf, "6789ab", 6);
  assert_int_equal(t_get(ak_writev(loop, fd, iov, 2, 12, NULL)), 6);
  assert_int_equal(t_get(ak_fsync(loop, fd)), 0);
  assert_int_equal(t_get(ak_fdatasync(loop, fd)), 0);
  assert_int_equal(t_get(ak_fallocate(loop, fd, 0, 0, 100)), 0);
  struct statx stx;
  assert_int_equal(t_get(ak_statx(loop, fd, "", AT_EMPTY_PATH, STATX_SIZE, &stx)), 0);
  assert_int_equal(stx.stx_size, 100);
  assert_int_equal(t_get(ak_mkdirat(loop, x->dirfd, "dd", 0755)), 0);
  assert_int_equal(t_get(ak_mkdirat(loop, x->dirfd, "dd", 0755)), -EEXIST);
  assert_int_equal(t_get(ak_renameat(loop, x->dirfd, "p", x->dirfd, "dd/p", 0)), 0);
  assert_int_equal(t_get(ak_linkat(loop, x->dirfd, "dd/p", x->dirfd, "dd/p2", 0)), 0);
  assert_int_equal(t_get(ak_linkat(loop, x->dirfd, "dd/p", x->dirfd, "dd/p2", 0)), -EEXIST);
  assert_int_equal(t_get(ak_unlinkat(loop, x->dirfd, "dd/p2", 0)), 0);
  int p[2];
  assert_int_equal(pipe2(p, O_CLOEXEC), 0);
  assert_int_equal(t_get(ak_splice(loop, fd, 0, p[1], -1, 10, 0)), 10);
  assert_int_equal(read(p[0], buf, 16), 10);
  assert_int_equal(t_get(ak_close(loop, fd)), 0);
  assert_int_equal(t_get(ak_unlinkat(loop, x->dirfd, "dd/p", 0)), 0);
  assert_int_equal(t_get(ak_unlinkat(loop, x->dirfd, "dd", AT_REMOVEDIR)), 0);
  assert_int_equal(t_get(ak_read(loop, 9999, buf, 1, 0)), -EBADF);
  /* and the helpers on top */
  t_write_file(x, "h", "helpers", 7);
  assert_int_equal(t_get(ak_read_file(loop, x->dirfd, "h", 0)), 7);
  assert_int_equal(t_get(ak_copy_file(loop, x->dirfd, "h", x->dirfd, "h2", NULL)), 7);
  assert_int_equal(t_get(ak_copy_file(loop, x->dirfd, "h", x->dirfd, "h3",
                                      &(ak_copy_opts){.flags = AK_COPY_SPLICE})),
                   7);
  assert_files_equal(x, "h", "h3");
  close(p[0]);
  close(p[1]);

  ak_loop_stats s;
  ak_loop_stats_get(loop, &s);
  static const char *const kinds[] = {"openat",  "read",      "write", "readv",    "writev",
                                      "fsync",   "fallocate", "statx", "renameat", "unlinkat",
                                      "mkdirat", "splice",    "close", "linkat"};
  for (size_t k = 0; k < sizeof(kinds) / sizeof(kinds[0]); k++) {
    unsigned idx = 0;
    while (ak_op_kind_name(idx) && strcmp(ak_op_kind_name(idx), kinds[k]) != 0)
      idx++;
    assert_non_null(ak_op_kind_name(idx));
    if (s.fallbacks[idx] == 0 || s.submitted[idx] != 0)
      fail_msg("%s: %llu fallbacks, %llu submitted to the ring", kinds[k],
               (unsigned long long)s.fallbacks[idx], (unsigned long long)s.submitted[idx]);
  }
}

/* An SQPOLL loop: every read and write is published to the SQ at once and
 * the loop spins briefly on the CQ before sleeping; the ops still complete,
 * in order of their dependencies, with nothing lost. */
static void sqpoll_loop_runs_file_ops(void **state)
{
  fx *x = *state;
  ak_loop *loop;
  ak_loop_options o = {.flags = AK_LOOP_SQPOLL};
  int rc = ak_loop_new(&loop, &o);
  if (rc < 0)
    skip(); /* SQPOLL refused here (privileges, limits) */
  T_SKIP_ON_EPOLL(loop, "SQPOLL is an io_uring ring's kernel thread");
  ak_features ft;
  ak_loop_features(loop, &ft);
  assert_true(ft.setup_flags & IORING_SETUP_SQPOLL);
  size_t len = (2u << 20) + 17;
  unsigned char *data = t_random(len, 7), *back = malloc(len);
  int fd = (int)t_get(ak_openat(loop, x->dirfd, "sq", O_RDWR | O_CREAT | O_TRUNC, 0644));
  assert_true(fd >= 0);
  assert_int_equal(t_get(ak_write_all(loop, fd, data, len, 0, NULL)), (int64_t)len);
  assert_int_equal(t_get(ak_read_exact(loop, fd, back, len, 0, NULL)), (int64_t)len);
  assert_memory_equal(data, back, len);
  /* many small reads in flight at once */
  enum { N = 64 };
  ak_future *f[N];
  char small[N][16];
  for (int i = 0; i < N; i++)
    f[i] = ak_read(loop, fd, small[i], 16, (int64_t)i * 1000);
  for (int i = 0; i < N; i++) {
    assert_int_equal(t_get(f[i]), 16);
    assert_memory_equal(small[i], data + i * 1000, 16);
  }
  /* an idle spell longer than the spin: the loop sleeps, and wakes */
  ak_future *sl = ak_sleep(loop, 5 * 1000 * 1000);
  assert_int_equal(t_get(sl), 0);
  assert_int_equal(t_get(ak_close(loop, fd)), 0);
  ak_loop_free(loop);
  free(data);
  free(back);
}

/* ---- Cancellation and lifetime ---------------------------------------------- */

/* A read on an empty pipe waits in the kernel. Cancelled, its future stays
 * pending until the kernel's completion, and the buffer is the kernel's
 * until then: the test frees it only in the settle callback (ASan sees any
 * later use by the library), and the data written afterwards is still in
 * the pipe (the cancelled read did not take it). */
typedef struct cancel_probe {
  unsigned char *buf;
  bool settled;
  ak_state state;
} cancel_probe;

static void free_buf_on_settle(ak_future *f, void *arg)
{
  cancel_probe *p = arg;
  p->settled = true;
  p->state = ak_future_state(f);
  free(p->buf);
  p->buf = NULL;
}

static void cancelled_read_keeps_buffer_until_completion(void **state)
{
  fx *x = *state;
  int p[2];
  assert_int_equal(pipe2(p, O_CLOEXEC), 0);
  for (int round = 0; round < 3; round++) {
    cancel_probe probe = {.buf = malloc(4096)};
    ak_future *f = round == 0   ? ak_read(x->loop, p[0], probe.buf, 4096, -1)
                   : round == 1 ? ak_read_exact(x->loop, p[0], probe.buf, 4096, -1, NULL)
                                : ak_read_opt(x->loop, p[0], probe.buf, 4096, -1, NULL);
    assert_int_equal(ak_future_on_settle(f, free_buf_on_settle, &probe), 0);
    ak_loop_run(x->loop, AK_RUN_NOWAIT); /* in the kernel now */
    assert_int_equal(ak_future_cancel(f), 0);
    assert_int_equal(ak_future_state(f), AK_PENDING); /* the kernel still has it */
    assert_false(probe.settled);
    assert_int_equal(ak_future_wait(f, T_WAIT), 0);
    while (!probe.settled)
      ak_loop_run(x->loop, AK_RUN_ONCE);
    assert_int_equal(probe.state, AK_CANCELLED);
    assert_int_equal(ak_future_result(f), -ECANCELED);
    ak_future_release(f);
    assert_int_equal(write(p[1], "late", 4), 4);
    ak_loop_run(x->loop, AK_RUN_NOWAIT);
    char got[8];
    assert_int_equal(read(p[0], got, sizeof(got)), 4);
  }
  close(p[0]);
  close(p[1]);
}

/* ak_read_opt and ak_write_opt once the kernel has done a read and a
 * write on the loop take the direct way (fs.c: the SQE written from the
 * arguments, the record only partly initialised, the plain completion
 * settled inline by the QD1 wait): a cancel, a deadline set after the
 * submission, a release before the CQE, a callback added later, a wait
 * for one of two reads in flight and AK_RW_SUBMIT_NOW all behave as on the
 * general way. */
static void direct_reads_and_writes_keep_promises(void **state)
{
  fx *x = *state;
  ak_loop *loop = x->loop;
  int fd = t_open(x, "direct", O_RDWR | O_CREAT | O_TRUNC);
  char got[16] = {0};
  /* The kernel's first read and write on the loop: the general way. */
  assert_int_equal(t_get(ak_write_opt(loop, fd, "warm", 4, 0, NULL)), 4);
  assert_int_equal(t_get(ak_read_opt(loop, fd, got, 4, 0, NULL)), 4);
  assert_memory_equal(got, "warm", 4);
  /* With options, and submitted at once. */
  ak_rw_opts now = AK_RW_OPTS_INIT;
  now.flags = AK_RW_SUBMIT_NOW;
  assert_int_equal(t_get(ak_write_opt(loop, fd, "0123456789", 10, 4, &now)), 10);
  assert_int_equal(t_get(ak_read_opt(loop, fd, got, 16, 0, &now)), 14);
  assert_memory_equal(got, "warm0123456789", 14);
  /* An error result (a write to a read-only fd) takes op_done's way. */
  int ro = t_open(x, "direct", O_RDONLY);
  assert_int_equal(t_get(ak_write_opt(loop, ro, "x", 1, 0, NULL)), -EBADF);
  close(ro);

  int p[2];
  assert_int_equal(pipe2(p, O_CLOEXEC), 0);
  /* A cancel: the buffer stays the kernel's until the CQE. */
  cancel_probe probe = {.buf = malloc(64)};
  ak_future *f = ak_read_opt(loop, p[0], probe.buf, 64, -1, NULL);
  assert_int_equal(ak_future_on_settle(f, free_buf_on_settle, &probe), 0);
  ak_loop_run(loop, AK_RUN_NOWAIT); /* in the kernel now */
  assert_int_equal(ak_future_cancel(f), 0);
  assert_int_equal(ak_future_wait(f, T_WAIT), 0);
  while (!probe.settled)
    ak_loop_run(loop, AK_RUN_ONCE);
  assert_int_equal(probe.state, AK_CANCELLED);
  assert_int_equal(ak_future_result(f), -ECANCELED);
  ak_future_release(f);

  /* A deadline set after the submission (a linked timeout: the SQE is
   * still the newest unsubmitted one). */
  char tbuf[8];
  int64_t t0 = ak_now_ns();
  ak_future *r = ak_read_opt(loop, p[0], tbuf, sizeof(tbuf), -1, NULL);
  ak_future *d = ak_future_timeout(r, 20 * T_MS);
  assert_non_null(d);
  assert_true(d == r); /* the op itself, with a linked kernel timeout */
  assert_int_equal(ak_future_wait(d, T_WAIT), 0);
  assert_true(ak_now_ns() - t0 >= 20 * T_MS);
  assert_int_equal(ak_future_result(d), -ETIMEDOUT);
  ak_future_release(d);
  ak_future_release(r);

  /* Released before its CQE: the completion still lands in the buffer,
   * and the next reads (their records may be the released one's) work. */
  for (int round = 0; round < 20; round++) {
    char *buf = calloc(1, 16);
    f = ak_read_opt(loop, p[0], buf, 16, -1, NULL);
    if (round % 2 == 0)
      ak_loop_run(loop, AK_RUN_NOWAIT);
    ak_future_release(f);
    char msg[16];
    int n = snprintf(msg, sizeof(msg), "round %d", round);
    assert_int_equal(write(p[1], msg, (size_t)n), n);
    for (int i = 0; i < 1000 && strncmp(buf, msg, (size_t)n) != 0; i++)
      ak_loop_run(loop, AK_RUN_ONCE);
    assert_memory_equal(buf, msg, (size_t)n);
    free(buf);
    assert_int_equal(t_get(ak_read_opt(loop, fd, got, 4, 0, NULL)), 4);
  }

  /* Two reads in flight; the wait for the second while the first is
   * still the kernel's; a callback added to the first after its submit. */
  int q[2];
  assert_int_equal(pipe2(q, O_CLOEXEC), 0);
  char b1[8] = {0}, b2[8] = {0};
  ak_future *f1 = ak_read_opt(loop, p[0], b1, sizeof(b1), -1, NULL);
  ak_future *f2 = ak_read_opt(loop, q[0], b2, sizeof(b2), -1, NULL);
  ak_loop_run(loop, AK_RUN_NOWAIT);
  cancel_probe later = {.buf = malloc(1)};
  assert_int_equal(ak_future_on_settle(f1, free_buf_on_settle, &later), 0);
  assert_int_equal(write(q[1], "two", 3), 3);
  assert_int_equal(ak_future_wait(f2, T_WAIT), 0);
  assert_int_equal(ak_future_result(f2), 3);
  assert_memory_equal(b2, "two", 3);
  assert_false(ak_future_is_set(f1));
  assert_false(later.settled);
  assert_int_equal(write(p[1], "one", 3), 3);
  assert_int_equal(ak_future_wait(f1, T_WAIT), 0);
  assert_int_equal(ak_future_result(f1), 3);
  assert_memory_equal(b1, "one", 3);
  while (!later.settled)
    ak_loop_run(loop, AK_RUN_ONCE);
  assert_int_equal(later.state, AK_DONE);
  ak_future_release(f1);
  ak_future_release(f2);
  close(q[0]);
  close(q[1]);
  close(p[0]);
  close(p[1]);
  close(fd);
}

/* An op's future is its record (core/op.c): a future released before its
 * CQE arrives leaves the record with the op, the buffer the kernel's until
 * the completion, which still lands in it; the next ops reuse the record
 * only after that (ASan: no use after free, no leak). */
static void released_read_still_completes(void **state)
{
  fx *x = *state;
  int p[2];
  assert_int_equal(pipe2(p, O_CLOEXEC), 0);
  for (int round = 0; round < 50; round++) {
    char *buf = calloc(1, 16);
    ak_future *f = ak_read(x->loop, p[0], buf, 16, -1);
    assert_non_null(f);
    if (round % 2 == 0)
      ak_loop_run(x->loop, AK_RUN_NOWAIT); /* in the kernel before the release */
    ak_future_release(f);
    ak_loop_stats st;
    ak_loop_stats_get(x->loop, &st);
    assert_true(st.in_flight >= 1 || st.backend == AK_BACKEND_EPOLL);
    char msg[16];
    int n = snprintf(msg, sizeof(msg), "round %d", round);
    assert_int_equal(write(p[1], msg, (size_t)n), n);
    for (int i = 0; i < 1000 && strncmp(buf, msg, (size_t)n) != 0; i++)
      ak_loop_run(x->loop, AK_RUN_ONCE);
    assert_memory_equal(buf, msg, (size_t)n);
    /* The next read (its record may be the released one's) works. */
    char other[4];
    assert_int_equal(write(p[1], "abcd", 4), 4);
    assert_int_equal(t_get(ak_read(x->loop, p[0], other, sizeof(other), -1)), 4);
    assert_memory_equal(other, "abcd", 4);
    free(buf);
  }
  close(p[0]);
  close(p[1]);
}

/* A settled op future held while many ops run keeps its outcome (its
 * record is not reused under it); released afterwards on another thread,
 * its record goes to that thread's cache, freed when the thread exits
 * (LeakSanitizer). A then-callback on an op future sees the outcome. */
static void *release_on_thread(void *arg)
{
  ak_future *f = arg;
  int64_t r = ak_future_get(f, T_WAIT, NULL);
  ak_future_release(f);
  return (void *)(intptr_t)r;
}

static void count_settle(ak_future *f, void *arg)
{
  *(int64_t *)arg = ak_future_result(f);
}

static void op_future_outlives_later_ops(void **state)
{
  fx *x = *state;
  int fd = openat(x->dirfd, "keep", O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  assert_true(fd >= 0);
  assert_int_equal(pwrite(fd, "0123456789", 10, 0), 10);
  char b[16];
  ak_future *kept = ak_read(x->loop, fd, b, 3, 2);
  int64_t seen = -1;
  assert_int_equal(ak_future_on_settle(kept, count_settle, &seen), 0);
  assert_int_equal(t_get(ak_future_ref(kept)), 3);
  for (int i = 0; i < 100 && seen == -1; i++)
    ak_loop_run(x->loop, AK_RUN_NOWAIT); /* the callback runs from the ready queue */
  assert_int_equal(seen, 3);
  for (int i = 0; i < 200; i++) {
    char c[4];
    assert_int_equal(t_get(ak_read(x->loop, fd, c, 4, i % 7)), 4);
  }
  assert_int_equal(ak_future_state(kept), AK_DONE);
  assert_int_equal(ak_future_result(kept), 3);
  pthread_t t;
  void *r;
  ak_future *f = ak_read(x->loop, fd, b, 5, 0);
  assert_int_equal(ak_future_wait(f, T_WAIT), 0);
  pthread_create(&t, NULL, release_on_thread, kept);
  pthread_join(t, &r);
  assert_int_equal((intptr_t)r, 3);
  pthread_create(&t, NULL, release_on_thread, f);
  pthread_join(t, &r);
  assert_int_equal((intptr_t)r, 5);
  close(fd);
}

/* The same request from another thread: posted to the loop. */
static void *cancel_from_thread(void *arg)
{
  ak_future_cancel(arg);
  return NULL;
}

static void cancel_from_other_thread(void **state)
{
  fx *x = *state;
  int p[2];
  assert_int_equal(pipe2(p, O_CLOEXEC), 0);
  char *buf = malloc(100);
  ak_future *f = ak_read_exact(x->loop, p[0], buf, 100, -1, NULL);
  ak_loop_run(x->loop, AK_RUN_NOWAIT);
  pthread_t t;
  pthread_create(&t, NULL, cancel_from_thread, f);
  pthread_join(t, NULL);
  assert_int_equal(t_get(f), -ECANCELED);
  free(buf);
  close(p[0]);
  close(p[1]);
}

static void cancel_by_fd_before_close(void **state)
{
  fx *x = *state;
  int p[2];
  assert_int_equal(pipe2(p, O_CLOEXEC), 0);
  char a[8], b[8];
  ak_future *r1 = ak_read(x->loop, p[0], a, sizeof(a), -1);
  ak_future *r2 = ak_read(x->loop, p[0], b, sizeof(b), -1);
  ak_loop_run(x->loop, AK_RUN_NOWAIT);
  assert_int_equal(t_get(ak_cancel_fd(x->loop, p[0])), 2);
  assert_int_equal(t_get(r1), -ECANCELED);
  assert_int_equal(t_get(r2), -ECANCELED);
  assert_int_equal(t_get(ak_cancel_fd(x->loop, p[0])), 0);
  assert_int_equal(t_get(ak_close(x->loop, p[0])), 0);
  close(p[1]);
}

/* Ops parked for CQ room are reached too: a tiny ring fills up with reads on
 * a pipe, the rest wait in the admission queue. */
static void cancel_by_fd_reaches_parked_ops(void **state)
{
  (void)state;
  ak_loop *loop;
  ak_loop_options o = {.sq_entries = 4, .cq_entries = 8};
  assert_int_equal(ak_loop_new(&loop, &o), 0);
  int p[2];
  assert_int_equal(pipe2(p, O_CLOEXEC), 0);
  enum { N = 20 };
  char bufs[N][4];
  ak_future *f[N];
  for (int i = 0; i < N; i++)
    f[i] = ak_read(loop, p[0], bufs[i], 4, -1);
  ak_loop_run(loop, AK_RUN_NOWAIT);
  ak_loop_stats s;
  ak_loop_stats_get(loop, &s);
  assert_true(s.queued_now > 0);
  ak_future *c = ak_cancel_fd(loop, p[0]);
  assert_int_equal(ak_future_get(c, T_WAIT, NULL), N);
  ak_future_release(c);
  for (int i = 0; i < N; i++)
    assert_int_equal(t_get(f[i]), -ECANCELED);
  close(p[0]);
  close(p[1]);
  ak_loop_free(loop);
}

/* Whether a thread of this process sits in syscall nr (polls
 * /proc/self/task/<tid>/syscall for up to 10 s). */
static bool wait_for_thread_in_syscall(long nr)
{
  for (int tries = 0; tries < 10000; tries++) {
    DIR *d = opendir("/proc/self/task");
    struct dirent *e;
    bool found = false;
    while (!found && (e = readdir(d)) != NULL) {
      if (e->d_name[0] == '.')
        continue;
      char path[300];
      snprintf(path, sizeof(path), "/proc/self/task/%s/syscall", e->d_name);
      FILE *fp = fopen(path, "re");
      long got = -1;
      if (fp) {
        if (fscanf(fp, "%ld", &got) != 1)
          got = -1;
        fclose(fp);
      }
      found = got == nr;
    }
    closedir(d);
    if (found)
      return true;
    usleep(1000);
  }
  return false;
}

/* An open that completes after its future was cancelled: the library closes
 * the fd. On the pool path the open blocks on a FIFO until a writer comes,
 * so the cancel surely arrives while it runs; on the ring the cancel races
 * the open, and either way nothing may leak. */
static void cancelled_open_closes_its_fd(void **state)
{
  fx *x = *state;
  char fifo[PATH_MAX + 32];
  snprintf(fifo, sizeof(fifo), "%s/fifo", x->dir);
  assert_int_equal(mkfifo(fifo, 0644), 0);
  ak_loop *pool_loop;
  ak_loop_options o = {.flags = AK_LOOP_FORCE_POOL};
  int before = count_fds();
  assert_int_equal(ak_loop_new(&pool_loop, &o), 0);
  int with_loop = count_fds();
  ak_future *f = ak_openat(pool_loop, AT_FDCWD, fifo, O_RDONLY, 0);
  assert_true(wait_for_thread_in_syscall(SYS_openat));
  assert_int_equal(ak_future_cancel(f), 0);
  int w = open(fifo, O_WRONLY | O_CLOEXEC); /* lets the open complete */
  assert_true(w >= 0);
  assert_int_equal(t_get(f), -ECANCELED);
  close(w);
  assert_int_equal(count_fds(), with_loop);
  ak_loop_free(pool_loop);
  assert_int_equal(count_fds(), before);

  t_write_file(x, "plain", "x", 1);
  before = count_fds();
  for (int i = 0; i < 50; i++) {
    ak_future *g = ak_openat(x->loop, x->dirfd, "plain", O_RDONLY, 0);
    ak_future_cancel(g);
    int64_t res = t_get(g);
    assert_true(res == -ECANCELED || res >= 0);
    if (res >= 0)
      close((int)res);
  }
  assert_int_equal(count_fds(), before);
}

/* Cancelling a copy mid-way: CANCELLED, and no file of it is left. */
static void cancelled_copy_leaves_nothing(void **state)
{
  fx *x = *state;
  int p[2];
  assert_int_equal(pipe2(p, O_CLOEXEC), 0);
  /* a FIFO source never ends: the copy is surely in flight when cancelled */
  char fifo[PATH_MAX + 32];
  snprintf(fifo, sizeof(fifo), "%s/src-fifo", x->dir);
  mkfifo(fifo, 0644);
  int keep = open(fifo, O_RDWR | O_CLOEXEC); /* a writer, so opens don't block */
  mkdirat(x->dirfd, "out", 0755);
  ak_future *f = ak_copy_file(x->loop, x->dirfd, "src-fifo", x->dirfd, "out/copy", NULL);
  for (int i = 0; i < 5; i++) {
    assert_int_equal(write(keep, "some bytes", 10), 10);
    ak_loop_run(x->loop, AK_RUN_NOWAIT);
  }
  assert_false(ak_future_is_set(f));
  ak_future_cancel(f);
  assert_int_equal(t_get(f), -ECANCELED);
  assert_int_equal(count_entries(x, "out"), 0);
  close(keep);
  close(p[0]);
  close(p[1]);
}

/* Freeing the loop with helpers in flight cancels and drains them. */
static void loop_free_with_helpers_in_flight(void **state)
{
  (void)state;
  ak_loop *loop;
  assert_int_equal(ak_loop_new(&loop, NULL), 0);
  int p[2];
  assert_int_equal(pipe2(p, O_CLOEXEC), 0);
  char *buf = malloc(64);
  ak_future *f = ak_read_exact(loop, p[0], buf, 64, -1, NULL);
  ak_future *g = ak_read_file(loop, AT_FDCWD, "/proc/self/status", 0);
  ak_loop_run(loop, AK_RUN_NOWAIT);
  ak_loop_free(loop);
  assert_true(ak_future_is_set(f));
  assert_int_equal(ak_future_result(f), -ECANCELED);
  assert_true(ak_future_is_set(g));
  ak_future_release(f);
  ak_future_release(g);
  free(buf);
  close(p[0]);
  close(p[1]);
}

static void *call_from_thread(void *arg)
{
  fx *x = arg;
  char b[4];
  ak_future *f = ak_read_exact(x->loop, 0, b, 4, 0, NULL);
  int64_t r = ak_future_get(f, T_WAIT, NULL);
  ak_future_release(f);
  f = ak_openat(x->loop, AT_FDCWD, "/", O_RDONLY, 0);
  int64_t r2 = ak_future_get(f, T_WAIT, NULL);
  ak_future_release(f);
  return (void *)(intptr_t)(r == AK_ENOTOWNER && r2 == AK_ENOTOWNER);
}

static void wrong_thread_fails(void **state)
{
  pthread_t t;
  void *ok;
  pthread_create(&t, NULL, call_from_thread, *state);
  pthread_join(t, &ok);
  assert_true(ok != NULL);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(open_write_read_close, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(open_errors, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(rw_errors, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(short_read_at_eof, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(read_exact_resubmits_short_reads, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(write_all_and_read_exact_large, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(write_all_short_then_efbig, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(readv_writev, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(fsync_and_fdatasync, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(fallocate_grows_file, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(fallocate_refused_is_sparse, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(statx_sizes_and_errors, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(rename_unlink_mkdir, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(linkat_names_files, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(splice_file_pipe_file, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(read_file_whole, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(copy_file_sizes_and_modes, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(copy_file_errors_leave_nothing, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(copy_fd_between_fds, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(enospc_on_small_tmpfs, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(registered_files_and_buffers, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(forced_pool_runs_every_op, fx_setup_pool, fx_teardown),
      cmocka_unit_test_setup_teardown(sqpoll_loop_runs_file_ops, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(cancelled_read_keeps_buffer_until_completion, fx_setup,
                                      fx_teardown),
      cmocka_unit_test_setup_teardown(released_read_still_completes, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(direct_reads_and_writes_keep_promises, fx_setup,
                                      fx_teardown),
      cmocka_unit_test_setup_teardown(op_future_outlives_later_ops, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(cancel_from_other_thread, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(cancel_by_fd_before_close, fx_setup, fx_teardown),
      cmocka_unit_test(cancel_by_fd_reaches_parked_ops),
      cmocka_unit_test_setup_teardown(cancelled_open_closes_its_fd, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(cancelled_copy_leaves_nothing, fx_setup, fx_teardown),
      cmocka_unit_test(loop_free_with_helpers_in_flight),
      cmocka_unit_test_setup_teardown(wrong_thread_fails, fx_setup, fx_teardown),
  };
  return cmocka_run_group_tests_name("fs", tests, NULL, NULL);
}
