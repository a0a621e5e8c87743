/* walk.c: turns the command line's paths into items. A file is an item; a
 * directory is an error without -r, and with -r every regular file below it
 * is one, in the byte order of their paths (as `find DIR -type f | LC_ALL=C
 * sort` lists them). Symbolic links to files are followed; links to
 * directories are not descended (no loops); other special files met in a
 * tree are skipped with a note. "-" is standard input. The stat done here
 * gives each file a size hint, its mode and its identity (for copies).
 * A directory's names are read (and its files looked at, relative to it)
 * and the directory closed before any of them is visited, so a deep tree
 * costs one descriptor, not one per level. Each directory's entries are
 * sorted so that the depth-first walk lists paths in byte order. */
#define _GNU_SOURCE
#include "aksum.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <linux/magic.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

aks_item *aks_item_add(aks_run *run, const char *path)
{
  if (run->n == run->cap) {
    size_t cap = run->cap ? run->cap * 2 : 256;
    aks_item *items = realloc(run->items, cap * sizeof(*items));
    if (!items)
      return NULL;
    run->items = items;
    run->cap = cap;
  }
  aks_item *it = &run->items[run->n];
  memset(it, 0, sizeof(*it));
  it->path = strdup(path);
  if (!it->path)
    return NULL;
  it->size_hint = -1;
  it->digest_len = run->opts.digest_len;
  run->n++;
  return it;
}

void aks_run_free(aks_run *run)
{
  for (size_t i = 0; i < run->n; i++) {
    free(run->items[i].path);
    free(run->items[i].expect);
    free(run->items[i].err_path);
  }
  free(run->items);
  run->items = NULL;
  run->n = run->cap = 0;
  for (size_t i = 0; i < run->n_lists; i++)
    free(run->lists[i].improper_at);
  free(run->lists);
  run->lists = NULL;
  run->n_lists = 0;
}

static void fill_from_stat(aks_item *it, const struct stat *st)
{
  it->mode = st->st_mode;
  it->size_hint = S_ISREG(st->st_mode) ? st->st_size : -1;
  it->stream = !S_ISREG(st->st_mode);
  it->dev = (uint64_t)st->st_dev;
  it->ino = (uint64_t)st->st_ino;
}

/* One name of a directory, as read_entries found it. */
typedef struct entry {
  char *name;
  struct stat st; /* when looked at (files, links) */
  int err;        /* the stat failed: -errno */
  bool descend;   /* a directory (not through a link): walked */
  bool skip;      /* a link to a directory: not walked, not listed */
  bool unstated;  /* a regular file (d_type) not looked at: size unknown */
  bool short_end; /* on a filesystem where a short read is the end */
} entry;

/* Every SAMPLE_EVERY-th file that is not looked at is, so that the run
 * still knows whether its files are small (main.c's geometry). */
enum { SAMPLE_EVERY = 16 };

/* Filesystems on which a read of a regular file is short only at its end
 * (local ones, whose reads io_uring and read(2) complete in full): there a
 * short read is the end and the walk need not stat each file for its size
 * (pipeline.c). Elsewhere (procfs, network and FUSE filesystems) every
 * file is looked at and read until a read of 0. */
static bool short_read_is_end(int dfd)
{
  struct statfs sf;
  if (fstatfs(dfd, &sf) < 0)
    return false;
  switch ((unsigned long)sf.f_type) {
  case EXT4_SUPER_MAGIC: /* ext2 and ext3 too */
  case XFS_SUPER_MAGIC:
  case BTRFS_SUPER_MAGIC:
  case TMPFS_MAGIC:
  case F2FS_SUPER_MAGIC:
    return true;
  default:
    return false;
  }
}

static char *join_path(const char *dir, const char *name)
{
  size_t dl = strlen(dir), nl = strlen(name);
  bool slash = dl > 0 && dir[dl - 1] == '/';
  char *p = malloc(dl + nl + 2);
  if (!p)
    return NULL;
  memcpy(p, dir, dl);
  if (!slash)
    p[dl++] = '/';
  memcpy(p + dl, name, nl + 1);
  return p;
}

/* Adds a failed item: the message comes out in its turn. */
static int add_failed(aks_run *run, const char *path, int err)
{
  aks_item *it = aks_item_add(run, path);
  if (!it)
    return -ENOMEM;
  it->err = err;
  return 0;
}

/* Sorts a directory's entries so that walking them in turn, depth first,
 * lists the paths below it in byte order of the whole paths (what
 * `find DIR -type f | LC_ALL=C sort` prints): a directory compares as its
 * name followed by '/', since every path below it continues that way. No
 * sort of the whole list is needed afterwards. */
static int cmp_entries(const void *a, const void *b)
{
  const entry *x = a, *y = b;
  const unsigned char *p = (const unsigned char *)x->name, *q = (const unsigned char *)y->name;
  for (;; p++, q++) {
    int c = *p ? *p : x->descend ? '/' : 0;
    int d = *q ? *q : y->descend ? '/' : 0;
    if (c != d)
      return c - d;
    if (!*p || !*q)
      return 0; /* both ended (a name has no '/'): the same name */
  }
}

/* A directory's entries, each looked at (fstatat relative to the open
 * directory: a lookup of one name, not of the whole path) before the
 * directory is closed and before any of them is visited: a walk holds one
 * descriptor at a time whatever the depth of the tree. readdir's d_type
 * saves the stat of subdirectories; a link is followed, but a link to a
 * directory is not descended (no loops). */
static int read_entries(const aks_run *run, const char *dir, entry **out, size_t *n_out)
{
  static unsigned files_seen;
  DIR *d = opendir(dir);
  if (!d)
    return -errno;
  int dfd = dirfd(d);
  /* Without --copy (which needs each file's mode and identity), a regular
   * file on a local filesystem is not looked at: its end is the short read
   * that finds it. One stat per file was a third of a tree's walk, which
   * runs before the first file is read. */
  bool no_stat = !run->opts.copy_dest && short_read_is_end(dfd);
  entry *es = NULL;
  size_t n = 0, cap = 0;
  int rc = 0;
  struct dirent *e;
  errno = 0;
  while ((e = readdir(d)) != NULL) {
    if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
      continue;
    if (n == cap) {
      cap = cap ? cap * 2 : 16;
      entry *more = realloc(es, cap * sizeof(*es));
      if (!more) {
        rc = -ENOMEM;
        break;
      }
      es = more;
    }
    entry *en = &es[n];
    memset(en, 0, sizeof(*en));
    if (!(en->name = strdup(e->d_name))) {
      rc = -ENOMEM;
      break;
    }
    n++;
    en->short_end = no_stat;
    unsigned char type = e->d_type;
    if (type == DT_DIR) {
      en->descend = true;
    } else if (type == DT_REG && no_stat && files_seen++ % SAMPLE_EVERY != 0) {
      en->unstated = true;
      en->st.st_mode = S_IFREG | 0644;
    } else if (type == DT_REG) {
      if (fstatat(dfd, en->name, &en->st, AT_SYMLINK_NOFOLLOW) < 0)
        en->err = -errno;
      else if (S_ISDIR(en->st.st_mode))
        en->descend = true; /* replaced since readdir: visit it as a directory */
    } else if (type == DT_LNK || type == DT_UNKNOWN) {
      /* Follow links, but never into a directory through one. */
      if (fstatat(dfd, en->name, &en->st, 0) < 0) {
        en->err = -errno;
      } else if (S_ISDIR(en->st.st_mode)) {
        struct stat lst;
        bool is_link = type == DT_LNK ||
                       (fstatat(dfd, en->name, &lst, AT_SYMLINK_NOFOLLOW) == 0 && S_ISLNK(lst.st_mode));
        en->descend = !is_link;
        en->skip = is_link;
      }
    } else {
      en->st.st_mode = S_IFIFO; /* a FIFO, socket or device: not a regular file */
    }
    errno = 0;
  }
  if (rc == 0 && errno != 0)
    rc = -errno;
  closedir(d);
  if (rc < 0) {
    for (size_t i = 0; i < n; i++)
      free(es[i].name);
    free(es);
    return rc;
  }
  qsort(es, n, sizeof(*es), cmp_entries);
  *out = es;
  *n_out = n;
  return 0;
}

/* Walks the tree below dir (by path: no descriptor is held across levels). */
static int walk_dir(aks_run *run, const char *dir)
{
  entry *es = NULL;
  size_t n = 0;
  int rc = read_entries(run, dir, &es, &n);
  if (rc < 0)
    return rc == -ENOMEM ? rc : add_failed(run, dir, rc);
  for (size_t i = 0; i < n; i++) {
    entry *en = &es[i];
    char *path = rc == 0 ? join_path(dir, en->name) : NULL;
    free(en->name);
    if (rc < 0)
      continue;
    if (!path) {
      rc = -ENOMEM;
      continue;
    }
    if (en->err) {
      rc = add_failed(run, path, en->err);
    } else if (en->descend) {
      rc = walk_dir(run, path);
    } else if (en->skip) {
      /* a link to a directory */
    } else if (S_ISREG(en->st.st_mode)) {
      aks_item *it = aks_item_add(run, path);
      if (!it) {
        rc = -ENOMEM;
      } else if (en->unstated) {
        it->mode = en->st.st_mode;
        it->short_is_end = true; /* size_hint stays -1: unknown */
      } else {
        fill_from_stat(it, &en->st);
        it->short_is_end = en->short_end;
      }
    } else {
      fprintf(stderr, "aksum: %s: not a regular file, skipped\n", path);
    }
    free(path);
  }
  free(es);
  return rc;
}

static int walk_arg(aks_run *run, const char *path)
{
  if (strcmp(path, "-") == 0) {
    aks_item *it = aks_item_add(run, path);
    if (!it)
      return -ENOMEM;
    it->stream = true;
    it->is_stdin = true;
    return 0;
  }
  struct stat st;
  if (stat(path, &st) < 0)
    return add_failed(run, path, -errno);
  if (!S_ISDIR(st.st_mode)) {
    aks_item *it = aks_item_add(run, path);
    if (!it)
      return -ENOMEM;
    fill_from_stat(it, &st);
    return 0;
  }
  if (!run->opts.recursive)
    return add_failed(run, path, -EISDIR);
  /* This argument's files come in byte order of their paths (cmp_entries). */
  return walk_dir(run, path);
}

int aks_walk(aks_run *run, char *const *paths, size_t n)
{
  if (n == 0)
    return walk_arg(run, "-");
  for (size_t i = 0; i < n; i++) {
    int rc = walk_arg(run, paths[i]);
    if (rc < 0)
      return rc;
  }
  return 0;
}
