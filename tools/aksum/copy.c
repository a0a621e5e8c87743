/* copy.c: --copy DEST: where each file's copy goes and how it gets its name.
 * A file's copy is DEST/PATH, PATH being the path as given or walked made
 * relative (leading "/" and "." / ".." components dropped), so
 * `aksum -r --copy /backup src` writes /backup/src/... (rsync -R's rule).
 * A copy never appears under DEST/PATH before it is complete. Two ways:
 *
 * - O_TMPFILE (the normal path): the bytes go to an unnamed file opened in
 *   DEST/PATH's directory; nothing exists under any name while it is
 *   written, so a signal, a crash or a failure leaves nothing behind. When
 *   complete it is given its name (aks_copy_link_into_place) with the fatal
 *   signals blocked.
 * - A named temporary (".NAME.aksum-XXXXXXXX", the fallback where the
 *   filesystem or kernel has no O_TMPFILE, or /proc is missing), renamed
 *   over DEST/PATH when complete; guard.c removes such names on a fatal
 *   signal.
 *
 * Before the run, aks_copy_plan refuses a copy onto its own source and a
 * second source for one destination. */
#define _GNU_SOURCE
#include "aksum.h"

#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

char *aks_copy_dest_path(const aks_run *run, const aks_item *it)
{
  const char *dest = run->opts.copy_dest;
  size_t dl = strlen(dest), pl = strlen(it->path);
  char *out = malloc(dl + pl + 2);
  if (!out)
    return NULL;
  memcpy(out, dest, dl);
  size_t w = dl;
  while (w > 1 && out[w - 1] == '/')
    w--;
  /* Append each component of the path that names something. */
  const char *p = it->path;
  while (*p) {
    while (*p == '/')
      p++;
    const char *end = strchr(p, '/');
    size_t n = end ? (size_t)(end - p) : strlen(p);
    bool skip = n == 0 || (n == 1 && p[0] == '.') || (n == 2 && p[0] == '.' && p[1] == '.');
    if (!skip) {
      out[w++] = '/';
      memcpy(out + w, p, n);
      w += n;
    }
    p += n;
  }
  out[w] = '\0';
  return out;
}

/* mkdir -p of dest_path's directory. A cache of the last directory made
 * saves the syscalls for the files of one directory. */
int aks_copy_make_dirs(const char *dest_path)
{
  static char *last;
  const char *slash = strrchr(dest_path, '/');
  if (!slash || slash == dest_path)
    return 0;
  size_t n = (size_t)(slash - dest_path);
  if (last && strlen(last) == n && memcmp(last, dest_path, n) == 0)
    return 0;
  char *dir = strndup(dest_path, n);
  if (!dir)
    return -ENOMEM;
  int rc = 0;
  for (char *p = dir + 1;; p++) {
    if (*p != '/' && *p != '\0')
      continue;
    char c = *p;
    *p = '\0';
    if (mkdir(dir, 0777) < 0 && errno != EEXIST) {
      rc = -errno;
      *p = c;
      break;
    }
    *p = c;
    if (c == '\0')
      break;
  }
  if (rc == 0) {
    struct stat st;
    if (stat(dir, &st) < 0)
      rc = -errno;
    else if (!S_ISDIR(st.st_mode))
      rc = -ENOTDIR;
  }
  if (rc == 0) {
    free(last);
    last = dir;
  } else {
    free(dir);
  }
  return rc;
}

char *aks_copy_temp_path(const char *dest_path)
{
  static _Atomic unsigned counter;
  const char *slash = strrchr(dest_path, '/');
  int dirlen = slash ? (int)(slash - dest_path + 1) : 0;
  const char *base = slash ? slash + 1 : dest_path;
  unsigned salt;
  if (getrandom(&salt, sizeof(salt), GRND_NONBLOCK) != sizeof(salt))
    salt = (unsigned)time(NULL) ^ (unsigned)getpid() * 2654435761u;
  salt ^= atomic_fetch_add(&counter, 1);
  size_t len = strlen(dest_path) + 32;
  char *out = malloc(len);
  if (out)
    snprintf(out, len, "%.*s.%s.aksum-%08x", dirlen, dest_path, base, salt);
  return out;
}

char *aks_copy_dir_path(const char *dest_path)
{
  const char *slash = strrchr(dest_path, '/');
  if (!slash)
    return strdup(".");
  if (slash == dest_path)
    return strdup("/");
  return strndup(dest_path, (size_t)(slash - dest_path));
}

bool aks_copy_tmpfile_wanted(void)
{
  /* AKSUM_TEST_NO_TMPFILE (tests only: tests/test_aksum_safety.sh) forces
   * the named-temporary path, so that path is exercised on filesystems that
   * have O_TMPFILE. The link goes through /proc/self/fd (linkat with
   * AT_EMPTY_PATH needs CAP_DAC_READ_SEARCH), so without /proc the named
   * path is the only one. */
  const char *force = getenv("AKSUM_TEST_NO_TMPFILE");
  if (force && *force && strcmp(force, "0") != 0)
    return false;
  return access("/proc/self/fd", X_OK) == 0;
}

bool aks_copy_tmpfile_unsupported(int err)
{
  /* open(2): EOPNOTSUPP where the filesystem has no O_TMPFILE (vfat, some
   * network filesystems); EISDIR from kernels before 3.11, which see
   * O_DIRECTORY|O_WRONLY; EINVAL where the flag combination is refused. */
  return err == -EOPNOTSUPP || err == -EISDIR || err == -EINVAL;
}

int aks_copy_link_into_place(int fd, const char *dest_path)
{
  char proc[64];
  snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
  /* With the fatal signals blocked: the handler never runs between the
   * link and the rename, when a second name exists for the copy; a signal
   * that comes meanwhile is handled once both are done. */
  sigset_t old;
  aks_guard_block_fatal(&old);
  int rc = 0;
  /* Nothing there yet (the usual case): the link itself is atomic. */
  if (linkat(AT_FDCWD, proc, AT_FDCWD, dest_path, AT_SYMLINK_FOLLOW) < 0) {
    rc = -errno;
    if (rc == -EEXIST) {
      /* An existing destination is replaced atomically: link to a fresh
       * name next to it, then rename that over it (linkat cannot replace). */
      char *tmp = aks_copy_temp_path(dest_path);
      if (!tmp) {
        rc = -ENOMEM;
      } else if (linkat(AT_FDCWD, proc, AT_FDCWD, tmp, AT_SYMLINK_FOLLOW) < 0) {
        rc = -errno;
      } else if (renameat(AT_FDCWD, tmp, AT_FDCWD, dest_path) < 0) {
        rc = -errno;
        unlink(tmp);
      } else {
        rc = 0;
      }
      free(tmp);
    }
  }
  aks_guard_restore(&old);
  return rc;
}

/* ---- Refusals made before anything is copied --------------------------------- */

typedef struct dest_ref {
  char *dest;   /* the final path (malloc'ed) */
  size_t index; /* the item's place in the run */
} dest_ref;

static int cmp_dest(const void *a, const void *b)
{
  const dest_ref *x = a, *y = b;
  int c = strcmp(x->dest, y->dest);
  if (c)
    return c;
  return x->index < y->index ? -1 : x->index > y->index;
}

static void refuse(aks_item *it, char *dest, int err, const char *msg)
{
  it->err = err;
  it->err_step = "copy";
  it->err_msg = msg;
  free(it->err_path);
  it->err_path = dest;
}

int aks_copy_plan(aks_run *run)
{
  dest_ref *refs = calloc(run->n ? run->n : 1, sizeof(*refs));
  if (!refs)
    return -ENOMEM;
  size_t n = 0;
  int rc = 0;
  for (size_t i = 0; i < run->n; i++) {
    aks_item *it = &run->items[i];
    if (it->err)
      continue;
    char *dest = aks_copy_dest_path(run, it);
    if (!dest) {
      rc = -ENOMEM;
      break;
    }
    /* The same file (the same inode: the path itself, or a hard link to
     * it) as source and destination: the copy would truncate the source
     * as it reads it. cp refuses the same way. */
    struct stat st;
    if (stat(dest, &st) == 0 && (uint64_t)st.st_dev == it->dev && (uint64_t)st.st_ino == it->ino) {
      refuse(it, dest, -EINVAL, "source and destination are the same file");
      continue;
    }
    refs[n].dest = dest;
    refs[n].index = i;
    n++;
  }
  if (rc == 0) {
    /* Two sources with one destination (a/x and ./a/x, or a file named
     * twice): the first in run order is copied, each later one fails. */
    qsort(refs, n, sizeof(*refs), cmp_dest);
    const char *first = NULL; /* the destination of the run of equal ones */
    for (size_t k = 0; k < n; k++) {
      if (!first || strcmp(refs[k].dest, first) != 0) {
        first = refs[k].dest;
        continue;
      }
      refuse(&run->items[refs[k].index], refs[k].dest, -EEXIST,
             "another file of this run is copied there");
      refs[k].dest = NULL; /* now the item's */
    }
  }
  for (size_t k = 0; k < n; k++)
    free(refs[k].dest);
  free(refs);
  return rc;
}
