/* names.c: where each download goes. A URL's own name (its last path
 * segment, made safe), or out=/dir= of an -i entry, under -d; a repeated
 * own name takes the next free ".1", ".2"... (wget's numbering), a
 * repeated out= is refused. The names used so far are remembered as 64-bit
 * fingerprints, not strings: the only memory akget keeps per URL of a
 * streamed list (about 10 bytes; 2,000,000 URLs: about 20 MiB).
 * And the directory each download writes in, held while it runs
 * (akg_dir_open: resolved beneath -d with no link followed; see "the
 * directory a download writes in" below). It does not open files;
 * download.c does, relative to that directory. */
#define _GNU_SOURCE /* O_PATH */
#include "akget.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

uint64_t akg_str_hash(const char *s)
{
  uint64_t h = 1469598103934665603u; /* FNV-1a */
  for (; *s; s++) {
    h ^= (unsigned char)*s;
    h *= 1099511628211u;
  }
  return h;
}

/* Folds the 128-bit product of a and b (wyhash's mix). */
static uint64_t mix(uint64_t a, uint64_t b)
{
  unsigned __int128 m = (unsigned __int128)a * b;
  return (uint64_t)m ^ (uint64_t)(m >> 64);
}

/* The name's fingerprint: eight bytes at a time, each word mixed in by a
 * 64x64->128-bit product (FNV-1a's byte at a time, hashed twice a name,
 * was a tenth of the list reader's instructions). Only in memory: free
 * to change, unlike akg_str_hash (--shard's). Unkeyed, so a list could
 * be built to clash; a clash (false or crafted) only makes a name take
 * a .N suffix or refuses an out=/dir= entry as a repeat: never a file
 * overwritten. */
static uint64_t fingerprint(const char *s)
{
  size_t n = strlen(s);
  uint64_t h = mix(n ^ 0xa0761d6478bd642fu, 0xe7037ed1a0b428dbu);
  for (; n >= 8; s += 8, n -= 8) {
    uint64_t w;
    memcpy(&w, s, 8);
    h = mix(w ^ 0xa0761d6478bd642fu, h ^ 0xe7037ed1a0b428dbu);
  }
  uint64_t w = 0;
  for (size_t i = 0; i < n; i++)
    w |= (uint64_t)(unsigned char)s[i] << (8 * i);
  h = mix(w ^ 0x8ebc6af09c88c6e3u, h ^ 0x589965cc75374cc3u);
  h = mix(h ^ 0x1d8e4e27c47d124fu, 0xe7037ed1a0b428dbu);
  return h ? h : 1; /* 0 marks a free slot */
}

/* The set of fingerprints: 256 tables picked by the top byte, each grown
 * alone by half again when 7/8 full (linear probing), so growing never
 * copies more than a 256th of the set at once and the tables stay between
 * about 58% and 88% full: a power-of-two table doubling at 3/4 would hold
 * 2,000,000 names in 32 MiB, this in about 20 MiB. */
enum { SHARDS = 256 };

typedef struct shard {
  uint64_t *slot;
  size_t cap, used;
} shard;

struct akg_names {
  shard s[SHARDS];
  char *last_dir;            /* the directory made last (lists are often sorted) */
};

akg_names *akg_names_new(void)
{
  return calloc(1, sizeof(akg_names));
}

void akg_names_free(akg_names *n)
{
  if (!n)
    return;
  for (int i = 0; i < SHARDS; i++)
    free(n->s[i].slot);
  free(n->last_dir);
  free(n);
}

/* Slot of h in a table of cap slots: the high bits scaled (cap need not
 * be a power of two). */
static size_t home(uint64_t h, size_t cap)
{
  return (size_t)(((unsigned __int128)(h << 8) * cap) >> 64);
}

static bool shard_has(const shard *t, uint64_t h)
{
  if (!t->cap)
    return false;
  for (size_t i = home(h, t->cap); t->slot[i]; i = i + 1 == t->cap ? 0 : i + 1)
    if (t->slot[i] == h)
      return true;
  return false;
}

static void shard_put(shard *t, uint64_t h)
{
  size_t i = home(h, t->cap);
  while (t->slot[i])
    i = i + 1 == t->cap ? 0 : i + 1;
  t->slot[i] = h;
  t->used++;
}

/* A table's first size: 8 slots (64 bytes). Most runs name a few
 * thousand files, four to a table or so at 1000, and the tables are
 * allocated on the list reader's thread, each page of them faulted in
 * fresh (7-15 us here): 16 slots made 1000 names cost 36 KiB of tables. */
enum { SHARD_FIRST = 8 };

static int shard_add(shard *t, uint64_t h)
{
  if ((t->used + 1) * 8 > t->cap * 7) {
    size_t cap = t->cap ? t->cap + t->cap / 2 : SHARD_FIRST;
    shard g = {calloc(cap, sizeof(uint64_t)), cap, 0};
    if (!g.slot)
      return -ENOMEM;
    for (size_t i = 0; i < t->cap; i++)
      if (t->slot[i])
        shard_put(&g, t->slot[i]);
    free(t->slot);
    *t = g;
  }
  shard_put(t, h);
  return 0;
}

static bool names_has(const akg_names *n, uint64_t h)
{
  return shard_has(&n->s[h >> 56], h);
}

static int names_add(akg_names *n, uint64_t h)
{
  return shard_add(&n->s[h >> 56], h);
}

static int hexval(int c)
{
  return isdigit(c) ? c - '0' : tolower(c) - 'a' + 10;
}

/* The file name a URL (parsed: u) saves as: its last path segment,
 * percent-decoded, made safe; "index.html" when there is none. Written
 * into room (room_len bytes) when it fits, else malloc'd: *name says
 * which (room, or a string to free), NULL for want of memory. */
static void name_of(const ak_url *u, char *room, size_t room_len, char **name)
{
  const char *t = u->target;
  size_t end = strcspn(t, "?");
  const char *slash = memrchr(t, '/', end);
  size_t start = slash ? (size_t)(slash - t) + 1 : 0;
  size_t need = end - start + 16;
  char *out = need <= room_len ? room : malloc(need);
  *name = out;
  if (!out)
    return;
  size_t o = 0;
  /* No '%' (most names): nothing to decode, and the segment holds no '/'
   * nor NUL to replace. */
  if (!memchr(t + start, '%', end - start)) {
    memcpy(out, t + start, end - start);
    o = end - start;
    start = end;
  }
  for (size_t i = start; i < end; i++) {
    char c = t[i];
    if (c == '%' && i + 2 < end && isxdigit((unsigned char)t[i + 1]) &&
        isxdigit((unsigned char)t[i + 2])) {
      c = (char)(hexval(t[i + 1]) * 16 + hexval(t[i + 2]));
      i += 2;
    }
    out[o++] = c == '/' || c == '\0' ? '_' : c;
  }
  out[o] = '\0';
  if (o == 0 || strcmp(out, ".") == 0 || strcmp(out, "..") == 0)
    strcpy(out, "index.html");
}

/* name_of for a URL to parse (u NULL), or parsed already. */
static void name_for(const char *url, const ak_url *u, char *room, size_t room_len, char **name)
{
  if (u) {
    name_of(u, room, room_len, name);
    return;
  }
  ak_url *own;
  int rc = ak_url_parse(url, &own);
  if (rc == -ENOMEM) {
    *name = NULL; /* not a URL without a name: the caller fails with ENOMEM */
    return;
  }
  if (rc < 0) {
    *name = strcpy(room, "index.html"); /* room: a caller's of 256 */
    return;
  }
  name_of(own, room, room_len, name);
  ak_url_free(own);
}

/* a/b/c from the parts that are not NULL. */
static char *join3(const char *a, const char *b, const char *c)
{
  size_t n = (a ? strlen(a) + 1 : 0) + (b ? strlen(b) + 1 : 0) + strlen(c) + 1;
  char *p = malloc(n);
  if (!p)
    return NULL;
  /* By hand, not snprintf: made for every URL of a list. */
  char *e = p;
  const char *dirs[2] = {a, b};
  for (int i = 0; i < 2; i++) {
    if (!dirs[i])
      continue;
    size_t l = strlen(dirs[i]);
    memcpy(e, dirs[i], l);
    e[l] = '/';
    e += l + 1;
  }
  strcpy(e, c);
  return p;
}

int akg_mkdir_p(const char *dir)
{
  char *p = strdup(dir);
  if (!p)
    return -ENOMEM;
  for (char *s = p + 1; *s; s++) {
    if (*s == '/') {
      *s = '\0';
      if (mkdir(p, 0755) < 0 && errno != EEXIST) {
        free(p);
        return -errno;
      }
      *s = '/';
    }
  }
  int rc = mkdir(p, 0755) < 0 && errno != EEXIST ? -errno : 0;
  free(p);
  return rc;
}

/* Walks rel beneath the directory base, one component at a time, each
 * opened relative to the one above it with O_NOFOLLOW (made first when
 * make and missing): a symbolic link (sub -> /etc) is refused, not
 * followed. rel was checked as text before (akg_list_path_problem: not
 * absolute, no '..', no empty component). Returns an O_PATH descriptor of
 * the last directory, or -errno; -ELOOP: a link, whose path within rel is
 * its first *link_len bytes. */
static int walk_beneath(int base, const char *rel, bool make, size_t *link_len)
{
  int cur = openat(base, ".", O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (cur < 0)
    return -errno;
  int rc = 0;
  for (const char *c = rel; *c && rc == 0;) {
    size_t len = strcspn(c, "/");
    char name[NAME_MAX + 1];
    if (len > NAME_MAX) {
      rc = -ENAMETOOLONG;
      break;
    }
    memcpy(name, c, len);
    name[len] = '\0';
    c += len;
    if (*c == '/')
      c++;
    if (strcmp(name, ".") == 0)
      continue;
    int next = openat(cur, name, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (next < 0 && errno == ENOENT && make) {
      if (mkdirat(cur, name, 0755) < 0 && errno != EEXIST)
        rc = -errno;
      else
        next = openat(cur, name, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    }
    if (rc == 0 && next < 0) {
      rc = -errno;
      /* O_PATH | O_NOFOLLOW | O_DIRECTORY on a link fails with ENOTDIR: say
       * which it was. */
      struct stat st;
      if (fstatat(cur, name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISLNK(st.st_mode)) {
        rc = -ELOOP;
        *link_len = (size_t)(c - rel) - (c[-1] == '/');
      }
    }
    if (next >= 0) {
      close(cur);
      cur = next;
    }
  }
  if (rc < 0) {
    close(cur);
    return rc;
  }
  return cur;
}

/* -d, resolved once for the run and held: every path beneath it is
 * resolved from this descriptor, so what -d names is settled at the first
 * use (a -d that is a link is followed then: the user's own choice, as
 * with wget and curl). Without -d, the working directory (AT_FDCWD: a
 * reference to the directory, not a path, already). */
static pthread_mutex_t base_lock = PTHREAD_MUTEX_INITIALIZER;
static int base_fd = -1;     /* -d's O_PATH descriptor, once opened */

/* Sets *fd to the base's descriptor. Returns 0 or -errno. */
static int base_dir(const akg_opts *o, int *fd)
{
  if (!o->dir) {
    *fd = AT_FDCWD;
    return 0;
  }
  int rc = 0;
  *fd = __atomic_load_n(&base_fd, __ATOMIC_ACQUIRE); /* pairs with the store below */
  if (*fd >= 0)
    return 0;
  pthread_mutex_lock(&base_lock);
  if (base_fd < 0) {
    int b = open(o->dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (b < 0)
      rc = -errno;
    else
      __atomic_store_n(&base_fd, b, __ATOMIC_RELEASE);
  }
  *fd = base_fd;
  pthread_mutex_unlock(&base_lock);
  return rc;
}

const char *akg_path_at(const akg_opts *o, const char *path, int *dirfd)
{
  *dirfd = AT_FDCWD;
  size_t base_len = o->dir ? strlen(o->dir) : 0;
  /* A path of akg_names_assign's under -d is "-d/rest" (join3). */
  if (o->output || !o->dir || strncmp(path, o->dir, base_len) != 0 || path[base_len] != '/' ||
      !path[base_len + 1] || base_dir(o, dirfd) < 0) {
    *dirfd = AT_FDCWD;
    return path;
  }
  return path + base_len + 1;
}

/* The directories of rel beneath the base (-d), made where missing.
 * Returns 0 or -errno (-ELOOP: a link, see walk_beneath). */
static int mkdir_beneath(const akg_opts *o, const char *rel, size_t *link_len)
{
  int base, rc = base_dir(o, &base);
  if (rc < 0)
    return rc;
  int fd = walk_beneath(base, rel, true, link_len);
  if (fd < 0)
    return fd;
  close(fd);
  return 0;
}

/* ---- the directory a download writes in -------------------------------------------------
 * names.c made the directories of an out=/dir= path when the entry was
 * read, refusing links; the download starts later (thousands of entries
 * may be queued), and another process may replace one of those
 * directories with a link to anywhere in between, or while the body comes
 * in. So download.c never opens, links, renames or removes by path: it
 * holds the directory's descriptor, resolved beneath -d with no link
 * followed (openat2 RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS, or the
 * O_NOFOLLOW walk where the kernel has no openat2), does every call
 * relative to it, and before the file gets its name checks that the path
 * still leads to that same directory (akg_dir_still).
 *
 * Descriptors: the run's -d (or the working directory) for a download
 * straight into it; else one per directory, shared by the downloads in
 * flight there and kept by a cache of the DIR_CACHE used last (lists are
 * often sorted: an openat2, an fstat and a close per download saved, for
 * an fstatat that checks the cached one is still there), so at most
 * DIR_CACHE plus one per download in flight are open, none per queued
 * entry. */
enum { DIR_CACHE = 8 };

struct akg_dir {
  int fd;                    /* O_PATH descriptor of the directory (not
                                base's) */
  dev_t dev;                 /* its identity when resolved */
  ino_t ino;
  unsigned refs;             /* downloads holding it, plus one while cached
                                (dir_lock) */
  bool base;                 /* -d's (or AT_FDCWD): never closed */
  char *rel;                 /* its path below -d; NULL with -o */
};

static pthread_mutex_t dir_lock = PTHREAD_MUTEX_INITIALIZER; /* the cache and refs */
static akg_dir *dir_cache[DIR_CACHE]; /* [0]: used last */
static akg_dir base_held = {.fd = -1, .base = true}; /* fd: see akg_dir_fd */

/* rel of path's directory below the base: "" when it is the base itself.
 * Not with -o. Returns a string to free, or NULL (memory). */
static char *rel_dir(const akg_opts *o, const char *path)
{
  const char *slash = strrchr(path, '/');
  size_t base_len = o->dir ? strlen(o->dir) : 0;
  if (!slash || (size_t)(slash - path) <= base_len)
    return strdup("");
  const char *from = o->dir ? path + base_len + 1 : path;
  return strndup(from, (size_t)(slash - from));
}

/* An O_PATH descriptor of rel beneath base, no link followed. Returns it
 * or -errno (-ELOOP: a link on the way). */
static int open_beneath(int base, const char *rel)
{
  static int no_openat2 = -1; /* the same answer for every thread */
  int no = __atomic_load_n(&no_openat2, __ATOMIC_RELAXED);
  if (no < 0) {
    no = getenv("AKGET_TEST_NO_OPENAT2") != NULL; /* tests of the walk */
    __atomic_store_n(&no_openat2, no, __ATOMIC_RELAXED);
  }
  for (int tries = 0; !no && tries < 4; tries++) {
    struct open_how how = {.flags = O_PATH | O_DIRECTORY | O_CLOEXEC,
                           .resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS |
                                      RESOLVE_NO_MAGICLINKS};
    long fd = syscall(SYS_openat2, base, rel, &how, sizeof how);
    if (fd >= 0)
      return (int)fd;
    if (errno == ENOSYS || errno == EPERM) { /* before Linux 5.6; a seccomp filter */
      __atomic_store_n(&no_openat2, 1, __ATOMIC_RELAXED);
      break;
    }
    if (errno != EAGAIN) /* EAGAIN: a rename raced the lookup; asked again */
      return -errno;
  }
  size_t link_len;
  return walk_beneath(base, rel, false, &link_len);
}

static void dir_free(akg_dir *h)
{
  close(h->fd);
  free(h->rel);
  free(h);
}

/* A held directory of fd (taken), or NULL with fd closed. */
static akg_dir *dir_new(int fd, char *rel)
{
  struct stat st;
  akg_dir *h = fstat(fd, &st) == 0 ? malloc(sizeof *h) : NULL;
  if (!h) {
    close(fd);
    free(rel);
    return NULL;
  }
  *h = (akg_dir){.fd = fd, .dev = st.st_dev, .ino = st.st_ino, .refs = 1, .rel = rel};
  return h;
}

/* Drops one hold of h (dir_lock held): the last one closes it. */
static void dir_put_locked(akg_dir *h)
{
  if (!h->base && --h->refs == 0)
    dir_free(h);
}

/* The cached directory of rel, held once more, or NULL; moved to the
 * front. */
static akg_dir *cache_get(const char *rel)
{
  akg_dir *h = NULL;
  pthread_mutex_lock(&dir_lock);
  for (int i = 0; i < DIR_CACHE && dir_cache[i]; i++) {
    if (strcmp(dir_cache[i]->rel, rel) == 0) {
      h = dir_cache[i];
      memmove(&dir_cache[1], &dir_cache[0], (size_t)i * sizeof dir_cache[0]);
      dir_cache[0] = h;
      h->refs++;
      break;
    }
  }
  pthread_mutex_unlock(&dir_lock);
  return h;
}

/* Whether h is still what rel leads to beneath base: one fstatat (a link
 * at its end seen as one, a link further up leading elsewhere). */
static bool dir_is_at(const akg_dir *h, int base)
{
  struct stat st;
  return fstatat(base, h->rel, &st, AT_SYMLINK_NOFOLLOW) == 0 && !S_ISLNK(st.st_mode) &&
         st.st_dev == h->dev && st.st_ino == h->ino;
}

/* h leaves the cache (replaced at its path since it was resolved). */
static void cache_drop(akg_dir *h)
{
  pthread_mutex_lock(&dir_lock);
  for (int i = 0; i < DIR_CACHE && dir_cache[i]; i++) {
    if (dir_cache[i] == h) {
      memmove(&dir_cache[i], &dir_cache[i + 1], (size_t)(DIR_CACHE - 1 - i) * sizeof h);
      dir_cache[DIR_CACHE - 1] = NULL;
      dir_put_locked(h);
      break;
    }
  }
  pthread_mutex_unlock(&dir_lock);
}

/* h (held once by the caller) goes in front of the cache, the one used
 * longest ago out. */
static void cache_put(akg_dir *h)
{
  pthread_mutex_lock(&dir_lock);
  if (dir_cache[DIR_CACHE - 1])
    dir_put_locked(dir_cache[DIR_CACHE - 1]);
  memmove(&dir_cache[1], &dir_cache[0], (DIR_CACHE - 1) * sizeof dir_cache[0]);
  dir_cache[0] = h;
  h->refs++;
  pthread_mutex_unlock(&dir_lock);
}

int akg_dir_open(const akg_opts *o, const akg_item *it, akg_dir **out, char *why, size_t why_len)
{
  why[0] = '\0';
  const char *path = it->path;
  if (o->output) {
    /* -o names the path whole: followed as given, as wget and curl do;
     * held all the same, so the download's files stay together. */
    const char *slash = strrchr(path, '/');
    char *dir = slash ? strndup(path, slash == path ? 1 : (size_t)(slash - path)) : strdup(".");
    if (!dir)
      return -ENOMEM;
    int fd = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
    int rc = fd < 0 ? -errno : 0;
    free(dir);
    if (rc < 0) {
      snprintf(why, why_len, "cannot open the directory of %.300s: %s", path, strerror(-rc));
      return rc;
    }
    return (*out = dir_new(fd, NULL)) ? 0 : -ENOMEM;
  }
  int base, rc = base_dir(o, &base);
  if (rc < 0) {
    snprintf(why, why_len, "-d %.300s: %s", o->dir, strerror(-rc));
    return rc;
  }
  char *rel = rel_dir(o, path);
  if (!rel)
    return -ENOMEM;
  if (!rel[0]) {
    *out = &base_held;
    free(rel);
    return 0;
  }
  akg_dir *h = cache_get(rel);
  if (h && dir_is_at(h, base)) {
    *out = h;
    free(rel);
    return 0;
  }
  if (h) { /* replaced since: resolved anew (and refused if a link now) */
    cache_drop(h);
    akg_dir_close(h);
  }
  rc = open_beneath(base, rel);
  if (rc >= 0) {
    if (!(*out = dir_new(rc, rel)))
      return -ENOMEM;
    cache_put(*out);
    return 0;
  }
  size_t link_len = 0;
  if (rc == -ELOOP) { /* which component: the walk says */
    int w = walk_beneath(base, rel, false, &link_len);
    if (w >= 0)
      close(w); /* a link no more: said as one all the same */
  }
  size_t skip = o->dir ? strlen(o->dir) + 1 : 0;
  if (rc == -ELOOP && link_len)
    snprintf(why, why_len,
             "refused to save as %.300s: %.*s is a symbolic link, and akget follows none "
             "beneath -d (the file could land outside it; made a link after its entry was "
             "read)",
             path, (int)(skip + link_len), path);
  else
    snprintf(why, why_len, "cannot open the directory of %.300s: %s", path, strerror(-rc));
  free(rel);
  return rc;
}

int akg_dir_fd(const akg_dir *h)
{
  if (!h->base)
    return h->fd;
  int b = __atomic_load_n(&base_fd, __ATOMIC_ACQUIRE); /* set by base_dir if -d */
  return b >= 0 ? b : AT_FDCWD;
}

int akg_dir_still(const akg_opts *o, const akg_item *it, const akg_dir *h, char *why,
                  size_t why_len)
{
  why[0] = '\0';
  if (o->output || h->base)
    return 0; /* a path the user named; the run's own -d */
  int base, rc = base_dir(o, &base);
  if (rc == 0) {
    /* One call where all is well (dir_is_at): a link further up is
     * followed, and leads to another directory than the held one, or to
     * the same one (then the name lands where the bytes are, beneath
     * -d). Whether a link is why is asked only when it failed. */
    if (!dir_is_at(h, base)) {
      rc = open_beneath(base, h->rel);
      if (rc >= 0)
        close(rc);
      if (rc != -ELOOP)
        rc = -ENOENT; /* the directory written in is no longer at its path */
    }
  }
  const char *slash = strrchr(it->path, '/');
  int dlen = slash ? (int)(slash - it->path) : 0;
  if (rc == -ELOOP)
    snprintf(why, why_len,
             "refused to save as %.300s: a directory of it (%.*s) was replaced by a symbolic "
             "link during the download, and akget follows none beneath -d",
             it->path, dlen, it->path);
  else if (rc == -ENOENT || rc == -ENOTDIR)
    snprintf(why, why_len,
             "not saved as %.300s: its directory %.*s was moved, removed or replaced during "
             "the download",
             it->path, dlen, it->path);
  else if (rc < 0)
    snprintf(why, why_len, "cannot look at the directory of %.300s again: %s", it->path,
             strerror(-rc));
  return rc;
}

void akg_dir_close(akg_dir *h)
{
  if (!h || h->base)
    return;
  pthread_mutex_lock(&dir_lock);
  dir_put_locked(h);
  pthread_mutex_unlock(&dir_lock);
}

const char *akg_leaf(const char *path)
{
  const char *slash = strrchr(path, '/');
  return slash ? slash + 1 : path;
}

/* The directories of path below -d (out=a/b/f, dir=a/b), once per
 * directory in a row; beneath -d (mkdir_beneath) unless -o named the
 * path. Returns 0, -ENOMEM, or an exit code with why filled. */
static int make_parent(akg_names *n, const akg_opts *o, const akg_item *it, const char *path,
                       char *why, size_t why_len)
{
  const char *slash = strrchr(path, '/');
  if (!slash || slash == path)
    return 0;
  size_t len = (size_t)(slash - path);
  if (n->last_dir && strlen(n->last_dir) == len && memcmp(n->last_dir, path, len) == 0)
    return 0;
  char *dir = strndup(path, len);
  if (!dir)
    return -ENOMEM;
  int rc;
  size_t link_len = 0;
  size_t base_len = o->dir ? strlen(o->dir) : 0;
  if (o->output)
    rc = akg_mkdir_p(dir);
  else if (o->dir) /* path is join3's "-d/rel"; dir is -d itself when rel has no '/' */
    rc = mkdir_beneath(o, len > base_len ? dir + base_len + 1 : "", &link_len);
  else
    rc = mkdir_beneath(o, dir, &link_len);
  free(n->last_dir);
  n->last_dir = rc == 0 ? dir : NULL;
  if (rc == -ELOOP && link_len) {
    size_t skip = o->output || !o->dir ? 0 : base_len + 1;
    snprintf(why, why_len,
             "%.300s: refused to save as %.300s: %.*s is a symbolic link, and akget follows "
             "none beneath -d (the file could land outside it)",
             it->url, path, (int)(skip + link_len), dir);
  } else if (rc < 0 && rc != -ENOMEM) {
    snprintf(why, why_len, "cannot make the directory of %.300s: %s", path, strerror(-rc));
  }
  if (rc < 0)
    free(dir);
  return rc == -ENOMEM || rc == 0 ? rc : AKG_EXIT_LOCAL_IO;
}

int akg_names_assign(akg_names *n, const akg_opts *o, akg_item *it, const ak_url *u,
                     const char *dir, const char *out, char *tmp_room, size_t tmp_room_len,
                     char *why, size_t why_len)
{
  why[0] = '\0';
  const char *bad = NULL, *what = NULL;
  if (dir && (bad = akg_list_path_problem(dir)) != NULL)
    what = "dir=";
  else if (out && (bad = akg_list_path_problem(out)) != NULL)
    what = "out=";
  if (bad) {
    snprintf(why, why_len, "%s%.300s %s", what, what[0] == 'd' ? dir : out, bad);
    return AKG_EXIT_USAGE;
  }
  char *path;
  if (o->output) {
    path = strdup(o->output);
  } else {
    /* The URL's own name on the stack: a malloc and a free a URL less. */
    char room[256], *own = NULL;
    if (!out)
      name_for(it->url, u, room, sizeof room, &own);
    path = out || own ? join3(o->dir, dir, out ? out : own) : NULL;
    if (own != room)
      free(own);
  }
  if (!path)
    return -ENOMEM;
  uint64_t h = fingerprint(path); /* once: looked up, then added */
  if (names_has(n, h)) {
    if (out || dir) {
      /* Named on purpose: a second file of that name would overwrite the
       * first one's; refused (the first stays). */
      snprintf(why, why_len, "%s%.300s: the same output path as an earlier entry (%.300s)",
               out ? "out=" : "dir=", out ? out : dir, path);
      free(path);
      return AKG_EXIT_USAGE;
    }
    /* A clash with an earlier name (or an earlier alternative) takes the
     * next free number. */
    for (unsigned k = 1; path && names_has(n, h); k++) {
      size_t len = strlen(path) + 16;
      char *alt = malloc(len);
      if (alt) {
        int cut = k == 1 ? (int)strlen(path) : (int)(strrchr(path, '.') - path);
        snprintf(alt, len, "%.*s.%u", cut, path, k);
      }
      free(path);
      path = alt;
      if (path)
        h = fingerprint(path);
    }
    if (!path)
      return -ENOMEM;
  }
  int rc = names_add(n, h);
  if (rc == 0 && (out || dir)) {
    rc = make_parent(n, o, it, path, why, why_len);
    if (rc > 0) {
      free(path);
      return rc;
    }
  }
  if (rc == 0) {
    static const char part_suffix[] = ".akget-part";
    size_t plen = strlen(path);
    it->tmp = plen + sizeof part_suffix <= tmp_room_len ? tmp_room
                                                          : malloc(plen + sizeof part_suffix);
    if (it->tmp) {
      memcpy(it->tmp, path, plen);
      memcpy(it->tmp + plen, part_suffix, sizeof part_suffix);
    } else {
      rc = -ENOMEM;
    }
  }
  if (rc < 0) {
    free(path);
    return rc;
  }
  it->path = path;
  return 0;
}
