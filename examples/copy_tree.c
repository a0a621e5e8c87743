/* copy_tree.c: copies a directory tree with at most 16 files in flight.
 * ak_walk lists the source (one directory at a time, on the pool), each
 * directory is made with ak_mkdir_p, files are copied with ak_copy_file
 * (each to a temporary name, renamed when whole) and symbolic links are
 * recreated with ak_readlinkat + ak_symlinkat. A failure names its path
 * and side ("source a/b.txt: Permission denied").
 *
 *   copy_tree SRC DST    copies the directory SRC to DST (DST's parents
 *                        are made)
 *   copy_tree            builds a tree under /tmp, copies it, checks the
 *                        copy byte for byte and exits 0 if all is well
 *                        (the test meson runs) */
#define _GNU_SOURCE
#include <asynckit.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

enum { MAX_IN_FLIGHT = 16 };

typedef struct item {
  char *rel; /* path below the root */
  ak_walk_type type;
} item;

typedef struct job {
  ak_loop *loop;
  const char *src, *dst;
  item *items;
  size_t n, cap;
  size_t next;        /* the next item to start */
  unsigned in_flight; /* copies and links under way */
  unsigned most_in_flight;
  int failures;
  ak_future *finished; /* set when the last copy is done */
} job;

static char *join(const char *a, const char *b)
{
  char *p;
  return asprintf(&p, "%s/%s", a, b) < 0 ? NULL : p;
}

static void report(const char *what, ak_future *f)
{
  const char *detail = ak_future_detail(f);
  fprintf(stderr, "copy_tree: %s%s%s: %s\n", what, detail ? " " : "", detail ? detail : "",
          ak_strerror((int)ak_future_result(f)));
}

/* ---- 1. The walk: what there is to copy ------------------------------------ */

static int on_entry(ak_loop *loop, const ak_walk_entry *e, void *arg)
{
  (void)loop;
  job *j = arg;
  if (e->type == AK_WALK_ERROR) {
    fprintf(stderr, "copy_tree: %s: %s\n", e->path, ak_strerror(e->err));
    j->failures++;
    return AK_WALK_CONTINUE;
  }
  if (e->depth == 0)
    return AK_WALK_CONTINUE; /* the root: DST itself */
  if (e->type == AK_WALK_OTHER) {
    fprintf(stderr, "copy_tree: %s: not a file, skipped\n", e->path);
    return AK_WALK_CONTINUE;
  }
  if (j->n == j->cap) {
    j->cap = j->cap ? 2 * j->cap : 64;
    j->items = realloc(j->items, j->cap * sizeof(*j->items));
  }
  size_t root_len = strlen(j->src);
  const char *rel = e->path + root_len + (e->path[root_len] == '/');
  j->items[j->n].rel = strdup(rel);
  j->items[j->n].type = e->type;
  j->n++;
  return AK_WALK_CONTINUE;
}

/* ---- 2. The copies: at most MAX_IN_FLIGHT at once -------------------------- */

static void start_more(job *j);

static void one_done(ak_future *f, void *arg)
{
  job *j = arg;
  if (ak_future_is_error(f)) {
    report("", f);
    j->failures++;
  }
  j->in_flight--;
  start_more(j);
}

/* A link: read its target, then make the same link on the other side. */
typedef struct link_copy {
  job *j;
  char *to;
} link_copy;

static int64_t make_link(ak_future *target, void *arg, ak_future *self)
{
  link_copy *lc = arg;
  const char *to = ak_future_value(target);
  return ak_future_adopt(self, ak_symlinkat(lc->j->loop, to, AT_FDCWD, lc->to));
}

static void link_done(ak_future *f, void *arg)
{
  link_copy *lc = arg;
  job *j = lc->j;
  free(lc->to);
  free(lc);
  one_done(f, j);
}

static ak_future *copy_link(job *j, const char *from, const char *to)
{
  link_copy *lc = malloc(sizeof(*lc));
  lc->j = j;
  lc->to = strdup(to);
  ak_future *target = ak_readlinkat(j->loop, AT_FDCWD, from);
  ak_future *made = ak_then(target, make_link, lc, NULL);
  ak_future_release(target);
  ak_future_on_settle(made, link_done, lc);
  return made;
}

static void start_more(job *j)
{
  while (j->in_flight < MAX_IN_FLIGHT && j->next < j->n) {
    item *it = &j->items[j->next++];
    if (it->type == AK_WALK_DIR)
      continue; /* made before any copy started */
    char *from = join(j->src, it->rel), *to = join(j->dst, it->rel);
    ak_future *f;
    if (it->type == AK_WALK_LINK) {
      f = copy_link(j, from, to);
    } else {
      f = ak_copy_file(j->loop, AT_FDCWD, from, AT_FDCWD, to, NULL);
      ak_future_on_settle(f, one_done, j);
    }
    ak_future_release(f); /* the callback runs all the same */
    free(from);
    free(to);
    if (++j->in_flight > j->most_in_flight)
      j->most_in_flight = j->in_flight;
  }
  if (j->in_flight == 0 && j->next == j->n)
    ak_future_set(j->finished, 0, NULL, NULL);
}

/* ---- 3. The whole copy ------------------------------------------------------- */

static int copy_tree(ak_loop *loop, const char *src, const char *dst, unsigned *most)
{
  job j = {.loop = loop, .src = src, .dst = dst};
  *most = 0;
  ak_future *f = ak_walk(loop, AT_FDCWD, src, NULL, on_entry, &j);
  bool walked = ak_future_get(f, AK_FOREVER, NULL) >= 0;
  if (!walked)
    report("walk", f); /* "walk SRC: No such file or directory" */
  ak_future_release(f);
  if (!walked)
    return 1;

  /* Directories first, all at once: ak_mkdir_p copes with two of them
   * making a shared parent at the same moment. */
  ak_future **mk = calloc(j.n + 1, sizeof(*mk));
  size_t nmk = 0;
  mk[nmk++] = ak_mkdir_p(loop, AT_FDCWD, dst, 0755);
  for (size_t i = 0; i < j.n; i++) {
    if (j.items[i].type != AK_WALK_DIR)
      continue;
    char *path = join(dst, j.items[i].rel);
    mk[nmk++] = ak_mkdir_p(loop, AT_FDCWD, path, 0755);
    free(path);
  }
  ak_future *dirs = ak_join_all(mk, nmk, AK_JOIN_FAIL_FAST);
  if (ak_future_get(dirs, AK_FOREVER, NULL) < 0) {
    report("mkdir", dirs);
    j.failures++;
  }
  ak_future_release(dirs);
  for (size_t i = 0; i < nmk; i++)
    ak_future_release(mk[i]);
  free(mk);

  if (j.failures == 0) {
    j.finished = ak_future_new(loop);
    start_more(&j);
    ak_future_get(j.finished, AK_FOREVER, NULL); /* runs the loop */
    ak_future_release(j.finished);
  }
  for (size_t i = 0; i < j.n; i++)
    free(j.items[i].rel);
  free(j.items);
  *most = j.most_in_flight;
  return j.failures;
}

/* ---- 4. The self-test: a tree, its copy, a byte-for-byte check ------------- */

static void put(const char *root, const char *rel, size_t size)
{
  char *path = join(root, rel);
  FILE *fp = fopen(path, "wb");
  for (size_t i = 0; i < size; i++)
    fputc((int)((i * 31 + strlen(rel)) & 0xff), fp);
  fclose(fp);
  free(path);
}

static char *slurp(const char *path, size_t *len)
{
  FILE *fp = fopen(path, "rb");
  if (!fp)
    return NULL;
  char *buf = NULL;
  size_t cap = 0;
  *len = 0;
  for (;;) {
    if (*len == cap)
      buf = realloc(buf, cap = cap ? 2 * cap : 4096);
    size_t n = fread(buf + *len, 1, cap - *len, fp);
    if (n == 0)
      break;
    *len += n;
  }
  fclose(fp);
  return buf;
}

static bool same_file(const char *a, const char *b)
{
  size_t la, lb;
  char *x = slurp(a, &la), *y = slurp(b, &lb);
  bool same = x && y && la == lb && memcmp(x, y, la) == 0;
  free(x);
  free(y);
  return same;
}

static int self_test(ak_loop *loop)
{
  char base[] = "/tmp/ak-copy-tree.XXXXXX";
  if (!mkdtemp(base))
    return 1;
  char *src = join(base, "src"), *dst = join(base, "out/deeper/dst");
  mkdir(src, 0755);
  const char *dirs[] = {"a", "a/b", "a/b/c", "empty", "d"};
  for (size_t i = 0; i < 5; i++) {
    char *p = join(src, dirs[i]);
    mkdir(p, 0755);
    free(p);
  }
  enum { FILES = 48 };
  char rel[FILES][32];
  for (int i = 0; i < FILES; i++) {
    snprintf(rel[i], sizeof rel[i], "%s/f%02d", i % 3 == 0 ? "a" : i % 3 == 1 ? "a/b/c" : "d", i);
    put(src, rel[i], (size_t)(i * 4099) % 300000);
  }
  char *l1 = join(src, "d/link"), *l2 = join(src, "dangling");
  if (symlink("f02", l1) != 0 || symlink("no/such/file", l2) != 0)
    return 1;

  unsigned most = 0;
  int failures = copy_tree(loop, src, dst, &most);
  bool ok = failures == 0;
  for (int i = 0; i < FILES && ok; i++) {
    char *a = join(src, rel[i]), *b = join(dst, rel[i]);
    if (!same_file(a, b)) {
      fprintf(stderr, "copy_tree: %s differs\n", rel[i]);
      ok = false;
    }
    free(a);
    free(b);
  }
  char buf[64];
  char *cl = join(dst, "d/link"), *cd = join(dst, "dangling"), *ce = join(dst, "empty");
  ssize_t n = readlink(cl, buf, sizeof buf);
  ok = ok && n == 3 && memcmp(buf, "f02", 3) == 0;
  n = readlink(cd, buf, sizeof buf);
  ok = ok && n == 12 && memcmp(buf, "no/such/file", 12) == 0;
  struct stat st;
  ok = ok && stat(ce, &st) == 0 && S_ISDIR(st.st_mode);
  printf("copied %d files and 2 links, at most %u in flight\n", FILES, most);
  ok = ok && most == MAX_IN_FLIGHT;

  /* A missing source is one clear error, and nothing is copied. */
  char *missing = join(base, "missing");
  ok = ok && copy_tree(loop, missing, dst, &most) != 0 && most == 0;
  free(missing);

  free(l1);
  free(l2);
  free(cl);
  free(cd);
  free(ce);
  free(src);
  free(dst);
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", base);
  if (system(cmd) != 0)
    ok = false;
  return ok ? 0 : 1;
}

int main(int argc, char **argv)
{
  ak_loop *loop;
  int rc = ak_loop_new(&loop, NULL);
  if (rc < 0) {
    fprintf(stderr, "copy_tree: no loop: %s\n", ak_strerror(rc));
    return 1;
  }
  unsigned most;
  if (argc == 3)
    rc = copy_tree(loop, argv[1], argv[2], &most) == 0 ? 0 : 1;
  else if (argc == 1)
    rc = self_test(loop);
  else {
    fprintf(stderr, "usage: copy_tree SRC DST\n");
    rc = 2;
  }
  ak_loop_free(loop);
  return rc;
}
