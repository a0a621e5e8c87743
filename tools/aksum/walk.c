/* walk.c: turns the command line's paths into items. A file is an item; a
 * directory is an error without -r, and with -r every regular file below it
 * is one, in the byte order of their paths (as `find DIR -type f | LC_ALL=C
 * sort` lists them). Symbolic links to files are followed; links to
 * directories are not descended (no loops); other special files met in a
 * tree are skipped with a note. "-" is standard input. The stat done here
 * gives each file a size hint, its mode and its identity (for copies).
 * A directory's names are read and the directory closed before any of them
 * is visited, so a deep tree costs one descriptor, not one per level. */
#define _GNU_SOURCE
#include "aksum.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
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

static int cmp_items(const void *a, const void *b)
{
  return strcmp(((const aks_item *)a)->path, ((const aks_item *)b)->path);
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

/* The names in a directory (malloc'ed array of malloc'ed names), read with
 * the directory open and closed before any of them is looked at: a walk
 * holds one descriptor at a time whatever the depth of the tree. */
static int read_names(const char *dir, char ***names_out, size_t *n_out)
{
  DIR *d = opendir(dir);
  if (!d)
    return -errno;
  char **names = NULL;
  size_t n = 0, cap = 0;
  int rc = 0;
  struct dirent *e;
  errno = 0;
  while ((e = readdir(d)) != NULL) {
    if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
      continue;
    if (n == cap) {
      cap = cap ? cap * 2 : 16;
      char **more = realloc(names, cap * sizeof(*names));
      if (!more) {
        rc = -ENOMEM;
        break;
      }
      names = more;
    }
    if (!(names[n] = strdup(e->d_name))) {
      rc = -ENOMEM;
      break;
    }
    n++;
    errno = 0;
  }
  if (rc == 0 && errno != 0)
    rc = -errno;
  closedir(d);
  if (rc < 0) {
    for (size_t i = 0; i < n; i++)
      free(names[i]);
    free(names);
    return rc;
  }
  *names_out = names;
  *n_out = n;
  return 0;
}

/* Walks the tree below dir (by path: no descriptor is held across levels). */
static int walk_dir(aks_run *run, const char *dir)
{
  char **names = NULL;
  size_t n = 0;
  int rc = read_names(dir, &names, &n);
  if (rc < 0)
    return rc == -ENOMEM ? rc : add_failed(run, dir, rc);
  for (size_t i = 0; i < n; i++) {
    char *path = rc == 0 ? join_path(dir, names[i]) : NULL;
    free(names[i]);
    if (rc < 0)
      continue;
    if (!path) {
      rc = -ENOMEM;
      continue;
    }
    struct stat st;
    /* Follow links, but never into a directory through one. */
    if (stat(path, &st) < 0) {
      rc = add_failed(run, path, -errno);
    } else if (S_ISDIR(st.st_mode)) {
      struct stat lst;
      bool is_link = lstat(path, &lst) == 0 && S_ISLNK(lst.st_mode);
      if (!is_link)
        rc = walk_dir(run, path);
    } else if (S_ISREG(st.st_mode)) {
      aks_item *it = aks_item_add(run, path);
      if (!it)
        rc = -ENOMEM;
      else
        fill_from_stat(it, &st);
    } else {
      fprintf(stderr, "aksum: %s: not a regular file, skipped\n", path);
    }
    free(path);
  }
  free(names);
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
  size_t first = run->n;
  int rc = walk_dir(run, path);
  /* This argument's files in byte order of their paths. */
  qsort(run->items + first, run->n - first, sizeof(aks_item), cmp_items);
  return rc;
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
