/* test_fs_dirs.c: directories and links (include/asynckit/fs.h): listing,
 * mkdir -p, symlinkat, readlinkat, the tree walk (order, links, loops,
 * skip/stop/depth, error entries, cancel), and failure details that name
 * the path and the side (ak_copy_file, ak_read_file, the path ops). Each
 * case runs on the ring and with the pool forced; meson test --setup epoll
 * runs them on the epoll backend. */
#define _GNU_SOURCE
#include <asynckit.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
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

static int fx_setup_flags(void **state, unsigned flags)
{
  fx *x = calloc(1, sizeof(*x));
  ak_loop_options opts = {.flags = flags};
  x->loop = t_loop_new_opts(&opts);
  snprintf(x->dir, sizeof(x->dir), "%s/ak-test-fsdirs.XXXXXX",
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

static int fx_teardown(void **state)
{
  fx *x = *state;
  ak_loop_free(x->loop);
  close(x->dirfd);
  char cmd[PATH_MAX + 32];
  snprintf(cmd, sizeof(cmd), "rm -rf '%s'", x->dir);
  if (system(cmd) != 0)
    fprintf(stderr, "could not remove %s\n", x->dir);
  free(x);
  return 0;
}

/* Waits for f (running the loop); keeps f (the caller releases it). */
static int64_t t_wait_keep(ak_future *f)
{
  assert_non_null(f);
  int64_t res = ak_future_get(f, T_HANG_NS, NULL);
  assert_int_not_equal(res, AK_EWAITTIMEOUT);
  return res;
}

static int64_t t_get(ak_future *f)
{
  int64_t res = t_wait_keep(f);
  ak_future_release(f);
  return res;
}

static void mkfile(fx *x, const char *name, const char *data)
{
  int fd = openat(x->dirfd, name, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  assert_true(fd >= 0);
  size_t n = strlen(data);
  assert_int_equal(write(fd, data, n), (ssize_t)n);
  close(fd);
}

static void mkdir_at(fx *x, const char *name)
{
  assert_int_equal(mkdirat(x->dirfd, name, 0755), 0);
}

static void symlink_at(fx *x, const char *target, const char *name)
{
  assert_int_equal(symlinkat(target, x->dirfd, name), 0);
}

static bool is_dir_at(fx *x, const char *name)
{
  struct stat st;
  return fstatat(x->dirfd, name, &st, 0) == 0 && S_ISDIR(st.st_mode);
}

/* The index of an op kind by name in the loop's statistics. */
static unsigned kind_index(const char *name)
{
  for (unsigned i = 0; i < AK_STATS_KINDS; i++)
    if (ak_op_kind_name(i) && strcmp(ak_op_kind_name(i), name) == 0)
      return i;
  fail_msg("no op kind %s", name);
  return 0;
}

/* ---- symlinkat, readlinkat ------------------------------------------------ */

static void symlink_and_readlink(void **state)
{
  fx *x = *state;
  mkfile(x, "file", "data");
  assert_int_equal(t_get(ak_symlinkat(x->loop, "file", x->dirfd, "link")), 0);
  char buf[64];
  ssize_t n = readlinkat(x->dirfd, "link", buf, sizeof buf);
  assert_int_equal(n, 4);
  assert_memory_equal(buf, "file", 4);

  ak_future *f = ak_readlinkat(x->loop, x->dirfd, "link");
  assert_int_equal(t_wait_keep(f), 4);
  assert_string_equal((const char *)ak_future_value(f), "file");
  ak_future_release(f);

  /* A target that need not exist, longer than the first buffer tried. */
  char target[3000];
  memset(target, 'x', sizeof target - 1);
  target[sizeof target - 1] = '\0';
  assert_int_equal(t_get(ak_symlinkat(x->loop, target, x->dirfd, "long")), 0);
  f = ak_readlinkat(x->loop, x->dirfd, "long");
  assert_int_equal(t_wait_keep(f), (int64_t)strlen(target));
  assert_string_equal((const char *)ak_future_value(f), target);
  ak_future_release(f);
}

static void symlink_errors(void **state)
{
  fx *x = *state;
  mkfile(x, "file", "data");
  /* EEXIST: a name is never replaced; the detail names the link's path. */
  ak_future *f = ak_symlinkat(x->loop, "anything", x->dirfd, "file");
  assert_int_equal(t_wait_keep(f), -EEXIST);
  assert_string_equal(ak_future_detail(f), "file");
  ak_future_release(f);
  /* ENOENT: the link's directory is missing. */
  assert_int_equal(t_get(ak_symlinkat(x->loop, "t", x->dirfd, "nodir/l")), -ENOENT);
  /* ENOTDIR: a parent is a file. */
  assert_int_equal(t_get(ak_symlinkat(x->loop, "t", x->dirfd, "file/l")), -ENOTDIR);
  f = ak_symlinkat(x->loop, NULL, x->dirfd, "l");
  assert_int_equal(t_get(f), -EFAULT);
}

static void readlink_errors(void **state)
{
  fx *x = *state;
  mkfile(x, "file", "data");
  ak_future *f = ak_readlinkat(x->loop, x->dirfd, "file");
  assert_int_equal(t_wait_keep(f), -EINVAL); /* not a link */
  assert_string_equal(ak_future_detail(f), "file");
  assert_null(ak_future_value(f));
  ak_future_release(f);
  f = ak_readlinkat(x->loop, x->dirfd, "missing");
  assert_int_equal(t_wait_keep(f), -ENOENT);
  assert_string_equal(ak_future_detail(f), "missing");
  ak_future_release(f);
  assert_int_equal(t_get(ak_readlinkat(x->loop, x->dirfd, "file/x")), -ENOTDIR);
  assert_int_equal(t_get(ak_readlinkat(x->loop, -1, "rel")), -EBADF);
}

/* symlinkat goes through the ring where the kernel has the opcode;
 * readlinkat and listings always run on the pool (counted as fallbacks). */
static void links_take_the_promised_path(void **state)
{
  fx *x = *state;
  ak_loop_stats st;
  unsigned sym = kind_index("symlinkat"), rl = kind_index("readlinkat");
  unsigned dl = kind_index("dirlist");
  assert_int_equal(t_get(ak_symlinkat(x->loop, "t", x->dirfd, "l")), 0);
  assert_int_equal(t_get(ak_readlinkat(x->loop, x->dirfd, "l")), 1);
  assert_true(t_get(ak_dir_list(x->loop, x->dirfd, ".", 0)) == 1);
  ak_loop_stats_get(x->loop, &st);
  assert_int_equal(st.fallbacks[rl], 1);
  assert_int_equal(st.fallbacks[dl], 1);
  ak_features feat;
  ak_loop_features(x->loop, &feat);
  if (feat.backend == AK_BACKEND_URING && IORING_OP_SYMLINKAT < feat.probed_ops &&
      feat.opcodes[IORING_OP_SYMLINKAT])
    assert_int_equal(st.fallbacks[sym], 0);
  else
    assert_int_equal(st.fallbacks[sym], 1);
}

/* ---- ak_dir_list ------------------------------------------------------------ */

static void dir_list_sorted_with_types(void **state)
{
  fx *x = *state;
  mkfile(x, "b", "");
  mkfile(x, "a", "");
  mkfile(x, "c.txt", "");
  mkdir_at(x, "d");
  symlink_at(x, "a", "l");
  assert_int_equal(mkfifoat(x->dirfd, "p", 0600), 0);
  ak_future *f = ak_dir_list(x->loop, x->dirfd, ".", 0);
  assert_int_equal(t_wait_keep(f), 6);
  const ak_dir_listing *l = ak_future_value(f);
  assert_non_null(l);
  assert_int_equal(l->count, 6);
  const char *names[] = {"a", "b", "c.txt", "d", "l", "p"};
  unsigned char types[] = {DT_REG, DT_REG, DT_REG, DT_DIR, DT_LNK, DT_FIFO};
  for (size_t i = 0; i < 6; i++) {
    assert_string_equal(l->entries[i].name, names[i]);
    assert_int_equal(l->entries[i].type, types[i]);
    struct stat st;
    assert_int_equal(fstatat(x->dirfd, names[i], &st, AT_SYMLINK_NOFOLLOW), 0);
    assert_int_equal(l->entries[i].ino, st.st_ino);
  }
  ak_future_release(f);

  /* Unsorted: the same names, each once, no "." or "..". */
  f = ak_dir_list(x->loop, x->dirfd, ".", AK_DIR_UNSORTED);
  assert_int_equal(t_wait_keep(f), 6);
  l = ak_future_value(f);
  unsigned seen = 0;
  for (size_t i = 0; i < l->count; i++)
    for (unsigned j = 0; j < 6; j++)
      if (strcmp(l->entries[i].name, names[j]) == 0)
        seen |= 1u << j;
  assert_int_equal(seen, 0x3f);
  ak_future_release(f);

  /* An empty directory: 0 entries, a listing all the same. */
  f = ak_dir_list(x->loop, x->dirfd, "d", 0);
  assert_int_equal(t_wait_keep(f), 0);
  assert_non_null(ak_future_value(f));
  assert_int_equal(((const ak_dir_listing *)ak_future_value(f))->count, 0);
  ak_future_release(f);
}

/* Many names: several getdents64 calls, all there, sorted. */
static void dir_list_large(void **state)
{
  fx *x = *state;
  mkdir_at(x, "big");
  enum { N = 3000 };
  for (int i = 0; i < N; i++) {
    char name[64];
    snprintf(name, sizeof name, "big/file-with-a-longish-name-%05d", (i * 7919) % N);
    mkfile(x, name, "");
  }
  ak_future *f = ak_dir_list(x->loop, x->dirfd, "big", 0);
  assert_int_equal(t_wait_keep(f), N);
  const ak_dir_listing *l = ak_future_value(f);
  for (int i = 0; i < N; i++) {
    char name[64];
    snprintf(name, sizeof name, "file-with-a-longish-name-%05d", i);
    assert_string_equal(l->entries[i].name, name);
  }
  ak_future_release(f);
}

static void dir_list_errors(void **state)
{
  fx *x = *state;
  mkfile(x, "file", "");
  mkdir_at(x, "d");
  symlink_at(x, "d", "ld");
  ak_future *f = ak_dir_list(x->loop, x->dirfd, "missing", 0);
  assert_int_equal(t_wait_keep(f), -ENOENT);
  assert_string_equal(ak_future_detail(f), "missing");
  assert_null(ak_future_value(f));
  ak_future_release(f);
  f = ak_dir_list(x->loop, x->dirfd, "file", 0);
  assert_int_equal(t_wait_keep(f), -ENOTDIR);
  assert_string_equal(ak_future_detail(f), "file");
  ak_future_release(f);
  /* A link to a directory is followed, unless NOFOLLOW. */
  assert_int_equal(t_get(ak_dir_list(x->loop, x->dirfd, "ld", 0)), 0);
  int64_t r = t_get(ak_dir_list(x->loop, x->dirfd, "ld", AK_DIR_NOFOLLOW));
  assert_true(r == -ELOOP || r == -ENOTDIR);
  assert_int_equal(t_get(ak_dir_list(x->loop, -1, "rel", 0)), -EBADF);
  assert_int_equal(t_get(ak_dir_list(x->loop, x->dirfd, NULL, 0)), -EFAULT);
}

/* ---- ak_mkdir_p ----------------------------------------------------------------- */

static void mkdir_p_makes_parents(void **state)
{
  fx *x = *state;
  assert_int_equal(t_get(ak_mkdir_p(x->loop, x->dirfd, "a/b/c", 0755)), 3);
  assert_true(is_dir_at(x, "a/b/c"));
  struct stat st;
  assert_int_equal(fstatat(x->dirfd, "a/b", &st, 0), 0);
  mode_t um = umask(0);
  umask(um);
  assert_int_equal(st.st_mode & 0777, 0755 & ~um);
  /* All there: nothing made, no error; a trailing slash is the same. */
  assert_int_equal(t_get(ak_mkdir_p(x->loop, x->dirfd, "a/b/c", 0755)), 0);
  assert_int_equal(t_get(ak_mkdir_p(x->loop, x->dirfd, "a/b/c/", 0755)), 0);
  /* Repeated slashes; only the missing ones are made. */
  assert_int_equal(t_get(ak_mkdir_p(x->loop, x->dirfd, "a//b2///c2//", 0755)), 2);
  assert_true(is_dir_at(x, "a/b2/c2"));
  /* A link to a directory is a directory. */
  symlink_at(x, "a", "la");
  assert_int_equal(t_get(ak_mkdir_p(x->loop, x->dirfd, "la/b3", 0755)), 1);
  assert_true(is_dir_at(x, "a/b3"));
  assert_int_equal(t_get(ak_mkdir_p(x->loop, x->dirfd, "la", 0755)), 0);
  /* An absolute path with AT_FDCWD. */
  char abs[PATH_MAX + 16];
  snprintf(abs, sizeof abs, "%s/x/y", x->dir);
  assert_int_equal(t_get(ak_mkdir_p(x->loop, AT_FDCWD, abs, 0700)), 2);
  assert_true(is_dir_at(x, "x/y"));
  assert_int_equal(t_get(ak_mkdir_p(x->loop, AT_FDCWD, "/", 0700)), 0);
}

/* Two at once sharing missing parents: each parent made once, both done. */
static void mkdir_p_concurrent(void **state)
{
  fx *x = *state;
  ak_future *f[4];
  f[0] = ak_mkdir_p(x->loop, x->dirfd, "p/q/r1", 0755);
  f[1] = ak_mkdir_p(x->loop, x->dirfd, "p/q/r2", 0755);
  f[2] = ak_mkdir_p(x->loop, x->dirfd, "p/q/r3/s", 0755);
  f[3] = ak_mkdir_p(x->loop, x->dirfd, "p", 0755);
  int64_t made = 0;
  for (int i = 0; i < 4; i++) {
    int64_t r = t_get(f[i]);
    assert_true(r >= 0);
    made += r;
  }
  assert_int_equal(made, 6); /* p, q, r1, r2, r3, s */
  assert_true(is_dir_at(x, "p/q/r1") && is_dir_at(x, "p/q/r2") && is_dir_at(x, "p/q/r3/s"));
}

static void mkdir_p_errors(void **state)
{
  fx *x = *state;
  mkfile(x, "f", "data");
  /* Over a file: EEXIST, naming it. */
  ak_future *f = ak_mkdir_p(x->loop, x->dirfd, "f", 0755);
  assert_int_equal(t_wait_keep(f), -EEXIST);
  assert_string_equal(ak_future_detail(f), "f");
  ak_future_release(f);
  /* A parent that is a file: ENOTDIR, naming the component reached. */
  f = ak_mkdir_p(x->loop, x->dirfd, "f/x/y", 0755);
  assert_int_equal(t_wait_keep(f), -ENOTDIR);
  assert_non_null(ak_future_detail(f));
  assert_non_null(strstr(ak_future_detail(f), "f/x"));
  ak_future_release(f);
  mkdir_at(x, "d");
  mkfile(x, "d/g", "");
  f = ak_mkdir_p(x->loop, x->dirfd, "d/g/h", 0755);
  assert_int_equal(t_wait_keep(f), -ENOTDIR);
  ak_future_release(f);
  /* A dangling link in the way: EEXIST (it exists, not as a directory). */
  symlink_at(x, "nowhere", "dl");
  assert_int_equal(t_get(ak_mkdir_p(x->loop, x->dirfd, "dl", 0755)), -EEXIST);
  assert_int_equal(t_get(ak_mkdir_p(x->loop, x->dirfd, "", 0755)), -ENOENT);
  assert_int_equal(t_get(ak_mkdir_p(x->loop, -1, "rel/x", 0755)), -EBADF);
  /* Nothing was left half made under the file. */
  assert_false(is_dir_at(x, "f/x"));
}

static void mkdir_p_cancel(void **state)
{
  fx *x = *state;
  ak_future *f = ak_mkdir_p(x->loop, x->dirfd, "c1/c2/c3/c4/c5/c6", 0755);
  assert_int_equal(ak_future_cancel(f), 0);
  int64_t r = t_wait_keep(f);
  /* The step in flight may finish; what follows does not run. */
  assert_true(r == -ECANCELED);
  assert_true(ak_future_is_cancelled(f));
  assert_false(is_dir_at(x, "c1/c2/c3/c4/c5/c6"));
  ak_future_release(f);
}

/* ---- ak_walk ---------------------------------------------------------------------- */

typedef struct seen {
  char line[64][160];
  int err[64];
  size_t n;
  int stop_after; /* STOP after this many entries; 0: never */
  const char *skip; /* SKIP this path */
  ak_future *cancel; /* cancel this future from the callback */
} seen;

static const char *type_name(ak_walk_type t)
{
  switch (t) {
  case AK_WALK_FILE: return "f";
  case AK_WALK_DIR: return "d";
  case AK_WALK_LINK: return "l";
  case AK_WALK_OTHER: return "o";
  case AK_WALK_ERROR: return "E";
  }
  return "?";
}

/* Records "depth type[@] path [err]" for each entry. */
static int record(ak_loop *loop, const ak_walk_entry *e, void *arg)
{
  (void)loop;
  seen *s = arg;
  assert_true(s->n < 64);
  /* name is the last component of path, inside it. */
  assert_true(e->name >= e->path && strchr(e->name, '/') == NULL);
  assert_true((e->type == AK_WALK_ERROR) == (e->st == NULL));
  assert_true((e->type == AK_WALK_ERROR) == (e->err != 0));
  s->err[s->n] = e->err;
  if (e->err)
    snprintf(s->line[s->n++], 160, "%u E %s %s", e->depth, e->path, ak_err_name(e->err));
  else
    snprintf(s->line[s->n++], 160, "%u %s%s %s", e->depth, type_name(e->type),
             e->is_link ? "@" : "", e->path);
  if (s->cancel && s->n == 2)
    ak_future_cancel(s->cancel);
  if (s->stop_after && (int)s->n == s->stop_after)
    return AK_WALK_STOP;
  if (s->skip && strcmp(e->path, s->skip) == 0)
    return AK_WALK_SKIP;
  return AK_WALK_CONTINUE;
}

static void expect_lines(const seen *s, const char *const *want, size_t n)
{
  for (size_t i = 0; i < s->n && i < n; i++)
    if (strcmp(s->line[i], want[i]) != 0)
      fail_msg("entry %zu: got '%s', want '%s'", i, s->line[i], want[i]);
  assert_int_equal(s->n, n);
}

/* root/{a.txt, b.txt, b/{x, y/z}, dangling -> nowhere, fifo, la -> a.txt,
 * lb -> b} */
static void make_tree(fx *x)
{
  mkdir_at(x, "root");
  mkfile(x, "root/a.txt", "a");
  mkfile(x, "root/b.txt", "b");
  mkdir_at(x, "root/b");
  mkfile(x, "root/b/x", "x");
  mkdir_at(x, "root/b/y");
  mkfile(x, "root/b/y/z", "z");
  symlink_at(x, "nowhere", "root/dangling");
  assert_int_equal(mkfifoat(x->dirfd, "root/fifo", 0600), 0);
  symlink_at(x, "a.txt", "root/la");
  symlink_at(x, "b", "root/lb");
}

static int64_t walk(fx *x, const char *root, unsigned flags, unsigned max_depth, seen *s)
{
  ak_walk_opts o = {.flags = flags, .max_depth = max_depth};
  return t_get(ak_walk(x->loop, x->dirfd, root, &o, record, s));
}

/* Default: links are entries of their own; "b.txt" before "b/" as in
 * find | LC_ALL=C sort; a directory before its entries. */
static void walk_order_and_types(void **state)
{
  fx *x = *state;
  make_tree(x);
  seen s = {0};
  const char *want[] = {"0 d root",       "1 f root/a.txt",   "1 f root/b.txt",
                        "1 d root/b",     "2 f root/b/x",     "2 d root/b/y",
                        "3 f root/b/y/z", "1 l@ root/dangling", "1 o root/fifo",
                        "1 l@ root/la",   "1 l@ root/lb"};
  assert_int_equal(walk(x, "root", 0, 0, &s), 11);
  expect_lines(&s, want, 11);
  /* A root given with a trailing slash: paths joined without doubling. */
  memset(&s, 0, sizeof s);
  assert_int_equal(walk(x, "root/b/", 0, 0, &s), 4);
  assert_string_equal(s.line[1], "1 f root/b/x");
  /* A file as root: one entry. */
  memset(&s, 0, sizeof s);
  assert_int_equal(walk(x, "root/a.txt", 0, 0, &s), 1);
  assert_string_equal(s.line[0], "0 f root/a.txt");
}

/* FOLLOW (aksum -r's rule): links are what they point to, a link to a
 * directory is not entered, a dangling one is an error entry. */
static void walk_follow(void **state)
{
  fx *x = *state;
  make_tree(x);
  seen s = {0};
  const char *want[] = {"0 d root",       "1 f root/a.txt",     "1 f root/b.txt",
                        "1 d root/b",     "2 f root/b/x",       "2 d root/b/y",
                        "3 f root/b/y/z", "1 E root/dangling ENOENT", "1 o root/fifo",
                        "1 f@ root/la",   "1 d@ root/lb"};
  assert_int_equal(walk(x, "root", AK_WALK_FOLLOW, 0, &s), 11);
  expect_lines(&s, want, 11);
}

/* FOLLOW_DIRS (find -L): a link to a directory is entered; one back up the
 * tree is an ELOOP entry, not entered; a loop of links is ELOOP too. */
static void walk_follow_dirs_loops(void **state)
{
  fx *x = *state;
  mkdir_at(x, "r");
  mkdir_at(x, "r/d");
  mkfile(x, "r/d/f", "");
  symlink_at(x, "..", "r/d/up");   /* back to r */
  symlink_at(x, "d", "r/ld");      /* a second way into d */
  symlink_at(x, "m2", "r/m1");     /* m1 -> m2 -> m1 */
  symlink_at(x, "m1", "r/m2");
  seen s = {0};
  const char *want[] = {"0 d r",          "1 d r/d",         "2 f r/d/f",
                        "2 E r/d/up ELOOP", "1 d@ r/ld",     "2 f r/ld/f",
                        "2 E r/ld/up ELOOP", "1 E r/m1 ELOOP", "1 E r/m2 ELOOP"};
  assert_int_equal(walk(x, "r", AK_WALK_FOLLOW_DIRS, 0, &s), 9);
  expect_lines(&s, want, 9);
  /* Without following, none of it is a loop. */
  memset(&s, 0, sizeof s);
  assert_int_equal(walk(x, "r", 0, 0, &s), 7);
  assert_string_equal(s.line[3], "2 l@ r/d/up");
}

/* The files of a walk come in the byte order of their whole paths. */
static int cmp_str(const void *a, const void *b)
{
  return strcmp(*(char *const *)a, *(char *const *)b);
}

static int collect_files(ak_loop *loop, const ak_walk_entry *e, void *arg)
{
  (void)loop;
  seen *s = arg;
  if (e->type == AK_WALK_FILE)
    snprintf(s->line[s->n++], 160, "%s", e->path);
  return AK_WALK_CONTINUE;
}

static void walk_files_in_path_order(void **state)
{
  fx *x = *state;
  const char *dirs[] = {"t", "t/a", "t/a-b", "t/a.b", "t/a/c", "t/a0", "t/A", "t/a/c-"};
  for (size_t i = 0; i < sizeof dirs / sizeof *dirs; i++)
    mkdir_at(x, dirs[i]);
  const char *files[] = {"t/a/1",  "t/a-b/1", "t/a.b/1", "t/a/c/1", "t/a0/1", "t/A/1",
                         "t/a/c-/1", "t/a/c.", "t/a/c0", "t/a!", "t/a-", "t/b"};
  size_t nf = sizeof files / sizeof *files;
  for (size_t i = 0; i < nf; i++)
    mkfile(x, files[i], "");
  seen s = {0};
  assert_true(t_get(ak_walk(x->loop, x->dirfd, "t", NULL, collect_files, &s)) > 0);
  const char *sorted[16];
  memcpy(sorted, files, sizeof files);
  qsort(sorted, nf, sizeof *sorted, cmp_str);
  assert_int_equal(s.n, nf);
  for (size_t i = 0; i < nf; i++)
    assert_string_equal(s.line[i], sorted[i]);
}

static void walk_skip_stop_depth(void **state)
{
  fx *x = *state;
  make_tree(x);
  seen s = {.skip = "root/b"};
  assert_int_equal(walk(x, "root", 0, 0, &s), 8); /* b's 3 entries left out */
  assert_string_equal(s.line[3], "1 d root/b");
  assert_string_equal(s.line[4], "1 l@ root/dangling");

  memset(&s, 0, sizeof s);
  s.stop_after = 5;
  assert_int_equal(walk(x, "root", 0, 0, &s), 5);
  assert_int_equal(s.n, 5);

  memset(&s, 0, sizeof s);
  assert_int_equal(walk(x, "root", 0, 1, &s), 8); /* root's entries only */
  for (size_t i = 0; i < s.n; i++)
    assert_true(s.line[i][0] == '0' || s.line[i][0] == '1');

  memset(&s, 0, sizeof s);
  s.skip = "root"; /* SKIP on root: just root */
  assert_int_equal(walk(x, "root", 0, 0, &s), 1);
}

static void walk_root_errors(void **state)
{
  fx *x = *state;
  mkfile(x, "file", "");
  seen s = {0};
  ak_future *f = ak_walk(x->loop, x->dirfd, "missing", NULL, record, &s);
  assert_int_equal(t_wait_keep(f), -ENOENT);
  assert_true(ak_future_state(f) == AK_FAILED);
  assert_string_equal(ak_future_detail(f), "missing");
  ak_future_release(f);
  assert_int_equal(s.n, 0);
  f = ak_walk(x->loop, x->dirfd, "file/sub", NULL, record, &s);
  assert_int_equal(t_wait_keep(f), -ENOTDIR);
  assert_string_equal(ak_future_detail(f), "file/sub");
  ak_future_release(f);
  assert_int_equal(t_get(ak_walk(x->loop, x->dirfd, "", NULL, record, &s)), -ENOENT);
  assert_int_equal(t_get(ak_walk(x->loop, x->dirfd, "x", NULL, NULL, &s)), -EFAULT);
  assert_int_equal(s.n, 0);
}

/* A directory that cannot be listed is an error entry after its own entry,
 * and the walk goes on: here its path is past PATH_MAX (root cannot be
 * denied access, so a long path stands in for EACCES). */
static void walk_unlistable_dir_is_an_entry(void **state)
{
  fx *x = *state;
  mkdir_at(x, "deep");
  int fd = openat(x->dirfd, "deep", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  char name[201];
  memset(name, 'n', 200);
  name[200] = '\0';
  for (int i = 0; i < 22; i++) { /* 22 * 201 bytes: past 4096 */
    assert_int_equal(mkdirat(fd, name, 0755), 0);
    int next = openat(fd, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    close(fd);
    fd = next;
  }
  close(fd);
  mkfile(x, "deep/z", "");
  int64_t entries = 0, errors = 0, after = 0;
  struct {
    int64_t *entries, *errors, *after;
  } c = {&entries, &errors, &after};
  (void)c;
  seen s = {0};
  ak_walk_opts o = {0};
  ak_future *f = ak_walk(x->loop, x->dirfd, "deep", &o, record, &s);
  int64_t r = t_wait_keep(f);
  assert_true(ak_future_state(f) == AK_DONE);
  ak_future_release(f);
  assert_int_equal(r, (int64_t)s.n);
  /* Some directory's listing failed with ENAMETOOLONG, reported right
   * after that directory's own entry at the same depth; deep/z, which
   * sorts after the chain, still came. */
  size_t err_at = 0;
  for (size_t i = 0; i < s.n; i++)
    if (getenv("T_VERBOSE"))
      fprintf(stderr, "%.60s\n", s.line[i]);
  for (size_t i = 0; i < s.n; i++)
    if (strstr(s.line[i], " E ")) /* the line is cut before the error's name */
      err_at = i;
  assert_true(err_at > 1);
  assert_int_equal(s.err[err_at], -ENAMETOOLONG);
  assert_int_equal(strncmp(s.line[err_at], s.line[err_at - 1], 3), 0); /* same depth */
  assert_string_equal(strrchr(s.line[err_at], '/'), strrchr(s.line[err_at - 1], '/'));
  assert_string_equal(s.line[s.n - 1], "1 f deep/z");
}

static void walk_cancel(void **state)
{
  fx *x = *state;
  make_tree(x);
  /* From outside, at once. */
  seen s = {0};
  ak_future *f = ak_walk(x->loop, x->dirfd, "root", NULL, record, &s);
  assert_int_equal(ak_future_cancel(f), 0);
  assert_int_equal(t_wait_keep(f), -ECANCELED);
  assert_true(ak_future_is_cancelled(f));
  ak_future_release(f);
  assert_true(s.n <= 1);
  /* From the callback, at the second entry: no third. */
  memset(&s, 0, sizeof s);
  f = ak_walk(x->loop, x->dirfd, "root", NULL, record, &s);
  s.cancel = f;
  assert_int_equal(t_wait_keep(f), -ECANCELED);
  assert_int_equal(s.n, 2);
  ak_future_release(f);
}

static bool seen_one(void *arg)
{
  return ((seen *)arg)->n >= 1;
}

/* Cancelled while a listing is in flight (root delivered, its listing on
 * the pool): CANCELLED once it is back, nothing more delivered, and the
 * listing, if it was made, freed with it (ASan would see a leak). */
static void walk_cancel_during_listing(void **state)
{
  fx *x = *state;
  make_tree(x);
  for (int i = 0; i < 20; i++) {
    seen s = {0};
    ak_future *f = ak_walk(x->loop, x->dirfd, "root", NULL, record, &s);
    assert_true(t_run_until(x->loop, seen_one, &s, T_HANG_NS));
    assert_false(ak_future_is_set(f));
    assert_int_equal(ak_future_cancel(f), 0);
    assert_int_equal(t_wait_keep(f), -ECANCELED);
    assert_int_equal(s.n, 1);
    ak_future_release(f);
  }
}

/* fn may start other ops: here a statx per file, all waited for after. */
typedef struct side_ops {
  ak_future *f[16];
  struct statx stx[16];
  size_t n;
  int dirfd;
} side_ops;

static int start_statx(ak_loop *loop, const ak_walk_entry *e, void *arg)
{
  side_ops *o = arg;
  if (e->type == AK_WALK_FILE && o->n < 16) {
    o->f[o->n] = ak_statx(loop, o->dirfd, e->path, 0, STATX_SIZE, &o->stx[o->n]);
    o->n++;
  }
  return AK_WALK_CONTINUE;
}

static void walk_fn_starts_ops(void **state)
{
  fx *x = *state;
  make_tree(x);
  side_ops o = {.dirfd = x->dirfd};
  assert_int_equal(t_get(ak_walk(x->loop, x->dirfd, "root", NULL, start_statx, &o)), 11);
  assert_int_equal(o.n, 4); /* a.txt, b.txt, b/x, b/y/z */
  for (size_t i = 0; i < o.n; i++) {
    assert_int_equal(t_get(o.f[i]), 0);
    assert_int_equal(o.stx[i].stx_size, 1);
  }
}

/* A root that is a link is followed (is_link false for root itself). */
static void walk_root_through_a_link(void **state)
{
  fx *x = *state;
  make_tree(x);
  seen s = {0};
  const char *want[] = {"0 d root/lb", "1 f root/lb/x", "1 d root/lb/y", "2 f root/lb/y/z"};
  assert_int_equal(walk(x, "root/lb", 0, 0, &s), 4);
  expect_lines(&s, want, 4);
}

/* The walk keeps no fd open after it ends, whatever happened. */
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

static void walk_leaves_no_fds(void **state)
{
  fx *x = *state;
  make_tree(x);
  seen s = {0};
  assert_int_equal(walk(x, "root", AK_WALK_FOLLOW_DIRS, 0, &s), 14);
  int before = count_fds();
  for (int i = 0; i < 5; i++) {
    memset(&s, 0, sizeof s);
    s.stop_after = 4;
    assert_int_equal(walk(x, "root", 0, 0, &s), 4);
  }
  assert_int_equal(count_fds(), before);
}

/* ---- Failure details name the path and the side ------------------------------ */

static void copy_file_names_the_side(void **state)
{
  fx *x = *state;
  mkdir_at(x, "top.txt"); /* a directory named like a file */
  mkfile(x, "src.txt", "hello");
  mkdir_at(x, "out");
  /* The source is a directory. */
  ak_future *f = ak_copy_file(x->loop, x->dirfd, "top.txt", x->dirfd, "out/top.txt", NULL);
  assert_int_equal(t_wait_keep(f), -EISDIR);
  assert_string_equal(ak_future_detail(f), "source top.txt");
  ak_future_release(f);
  /* The source is missing. */
  f = ak_copy_file(x->loop, x->dirfd, "nope.txt", x->dirfd, "out/nope.txt", NULL);
  assert_int_equal(t_wait_keep(f), -ENOENT);
  assert_string_equal(ak_future_detail(f), "source nope.txt");
  ak_future_release(f);
  /* The destination's directory is missing. */
  f = ak_copy_file(x->loop, x->dirfd, "src.txt", x->dirfd, "nodir/src.txt", NULL);
  assert_int_equal(t_wait_keep(f), -ENOENT);
  assert_string_equal(ak_future_detail(f), "destination nodir/src.txt");
  ak_future_release(f);
  /* The destination is a directory: the rename fails. */
  f = ak_copy_file(x->loop, x->dirfd, "src.txt", x->dirfd, "top.txt", NULL);
  assert_int_equal(t_wait_keep(f), -EISDIR);
  assert_string_equal(ak_future_detail(f), "destination top.txt");
  ak_future_release(f);
  /* AK_COPY_EXCL over an existing file. */
  ak_copy_opts o = {.flags = AK_COPY_EXCL};
  f = ak_copy_file(x->loop, x->dirfd, "src.txt", x->dirfd, "src.txt", &o);
  assert_int_equal(t_wait_keep(f), -EEXIST);
  assert_string_equal(ak_future_detail(f), "destination src.txt");
  ak_future_release(f);
  /* Success carries no detail. */
  f = ak_copy_file(x->loop, x->dirfd, "src.txt", x->dirfd, "out/ok.txt", NULL);
  assert_int_equal(t_wait_keep(f), 5);
  assert_null(ak_future_detail(f));
  ak_future_release(f);
}

/* ak_copy_fd: a read error is the source's, a write error the destination's. */
static void copy_fd_names_the_side(void **state)
{
  fx *x = *state;
  mkfile(x, "src.txt", "hello");
  int in = openat(x->dirfd, "src.txt", O_RDONLY | O_CLOEXEC);
  int wronly = openat(x->dirfd, "src.txt", O_WRONLY | O_CLOEXEC);
  int out = openat(x->dirfd, "dst.txt", O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
  int ro_out = openat(x->dirfd, "dst.txt", O_RDONLY | O_CLOEXEC);
  char want[32];
  ak_copy_opts bufs = {.flags = AK_COPY_BUFFERS};
  ak_future *f = ak_copy_fd(x->loop, wronly, out, &bufs); /* source not readable */
  assert_int_equal(t_wait_keep(f), -EBADF);
  snprintf(want, sizeof want, "source fd %d", wronly);
  assert_string_equal(ak_future_detail(f), want);
  ak_future_release(f);
  f = ak_copy_fd(x->loop, in, ro_out, &bufs); /* destination not writable */
  assert_int_equal(t_wait_keep(f), -EBADF);
  snprintf(want, sizeof want, "destination fd %d", ro_out);
  assert_string_equal(ak_future_detail(f), want);
  ak_future_release(f);
  close(in);
  close(wronly);
  close(out);
  close(ro_out);
}

static void path_ops_name_the_path(void **state)
{
  fx *x = *state;
  ak_future *f = ak_openat(x->loop, x->dirfd, "no/such", O_RDONLY, 0);
  assert_int_equal(t_wait_keep(f), -ENOENT);
  assert_string_equal(ak_future_detail(f), "no/such");
  ak_future_release(f);
  f = ak_renameat(x->loop, x->dirfd, "gone", x->dirfd, "new", 0);
  assert_int_equal(t_wait_keep(f), -ENOENT);
  assert_string_equal(ak_future_detail(f), "gone -> new");
  ak_future_release(f);
  f = ak_unlinkat(x->loop, x->dirfd, "gone", 0);
  assert_int_equal(t_wait_keep(f), -ENOENT);
  assert_string_equal(ak_future_detail(f), "gone");
  ak_future_release(f);
  f = ak_read_file(x->loop, x->dirfd, "gone.txt", 0);
  assert_int_equal(t_wait_keep(f), -ENOENT);
  assert_string_equal(ak_future_detail(f), "gone.txt");
  ak_future_release(f);
  mkfile(x, "big", "0123456789");
  f = ak_read_file(x->loop, x->dirfd, "big", 4);
  assert_int_equal(t_wait_keep(f), -EFBIG);
  assert_string_equal(ak_future_detail(f), "big");
  ak_future_release(f);
  /* Success: no detail. */
  f = ak_openat(x->loop, x->dirfd, "big", O_RDONLY, 0);
  int fd = (int)t_wait_keep(f);
  assert_true(fd >= 0);
  assert_null(ak_future_detail(f));
  ak_future_release(f);
  close(fd);
}

#define BOTH(fn)                                                                                   \
  cmocka_unit_test_setup_teardown(fn, fx_setup, fx_teardown),                                      \
      cmocka_unit_test_setup_teardown(fn, fx_setup_pool, fx_teardown)

int main(void)
{
  t_require_uring();
  const struct CMUnitTest tests[] = {
      BOTH(symlink_and_readlink),
      BOTH(symlink_errors),
      BOTH(readlink_errors),
      cmocka_unit_test_setup_teardown(links_take_the_promised_path, fx_setup, fx_teardown),
      BOTH(dir_list_sorted_with_types),
      BOTH(dir_list_large),
      BOTH(dir_list_errors),
      BOTH(mkdir_p_makes_parents),
      BOTH(mkdir_p_concurrent),
      BOTH(mkdir_p_errors),
      BOTH(mkdir_p_cancel),
      BOTH(walk_order_and_types),
      BOTH(walk_follow),
      BOTH(walk_follow_dirs_loops),
      BOTH(walk_files_in_path_order),
      BOTH(walk_skip_stop_depth),
      BOTH(walk_root_errors),
      BOTH(walk_unlistable_dir_is_an_entry),
      BOTH(walk_cancel),
      BOTH(walk_cancel_during_listing),
      BOTH(walk_fn_starts_ops),
      BOTH(walk_root_through_a_link),
      BOTH(walk_leaves_no_fds),
      BOTH(copy_file_names_the_side),
      BOTH(copy_fd_names_the_side),
      BOTH(path_ops_name_the_path),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
