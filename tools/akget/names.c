/* names.c: where each download goes. A URL's own name (its last path
 * segment, made safe), or out=/dir= of an -i entry, under -d; a repeated
 * own name takes the next free ".1", ".2"... (wget's numbering), a
 * repeated out= is refused. The names used so far are remembered as 64-bit
 * fingerprints, not strings: the only memory akget keeps per URL of a
 * streamed list (about 10 bytes; 2,000,000 URLs: about 20 MiB).
 * It does not open files; download.c does. */
#define _GNU_SOURCE /* O_PATH */
#include "akget.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
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

/* A second, independent mix of the name for the fingerprint: FNV-1a alone
 * spreads short, similar names poorly in its low bits. */
static uint64_t fingerprint(const char *s)
{
  uint64_t h = akg_str_hash(s);
  h ^= h >> 33;
  h *= 0xff51afd7ed558ccdu;
  h ^= h >> 33;
  h *= 0xc4ceb9fe1a85ec53u;
  h ^= h >> 33;
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

static int shard_add(shard *t, uint64_t h)
{
  if ((t->used + 1) * 8 > t->cap * 7) {
    shard g = {calloc(t->cap ? t->cap + t->cap / 2 : 16, sizeof(uint64_t)),
               t->cap ? t->cap + t->cap / 2 : 16, 0};
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

static bool names_has(const akg_names *n, const char *path)
{
  uint64_t h = fingerprint(path);
  return shard_has(&n->s[h >> 56], h);
}

static int names_add(akg_names *n, const char *path)
{
  uint64_t h = fingerprint(path);
  return shard_add(&n->s[h >> 56], h);
}

static int hexval(int c)
{
  return isdigit(c) ? c - '0' : tolower(c) - 'a' + 10;
}

/* The file name a URL saves as: its last path segment, percent-decoded,
 * made safe; "index.html" when there is none. */
static char *name_for(const char *url)
{
  ak_url *u;
  int rc = ak_url_parse(url, &u);
  if (rc == -ENOMEM)
    return NULL; /* not a URL without a name: the caller fails with ENOMEM */
  if (rc < 0)
    return strdup("index.html");
  const char *t = u->target;
  size_t end = strcspn(t, "?");
  size_t start = end;
  while (start > 0 && t[start - 1] != '/')
    start--;
  char *name = malloc(end - start + 16);
  size_t o = 0;
  for (size_t i = start; name && i < end; i++) {
    char c = t[i];
    if (c == '%' && i + 2 < end && isxdigit((unsigned char)t[i + 1]) &&
        isxdigit((unsigned char)t[i + 2])) {
      c = (char)(hexval(t[i + 1]) * 16 + hexval(t[i + 2]));
      i += 2;
    }
    name[o++] = c == '/' || c == '\0' ? '_' : c;
  }
  if (name) {
    name[o] = '\0';
    if (o == 0 || strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
      strcpy(name, "index.html");
  }
  ak_url_free(u);
  return name;
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

/* Makes the directories of rel beneath base ("." for none), one component
 * at a time, each opened relative to the one above it with O_NOFOLLOW: a
 * symbolic link already inside -d (sub -> /etc) is refused, not followed,
 * so out=sub/f cannot write outside -d. base itself is followed (a -d that
 * is a link is the user's own choice, as with wget and curl). rel was
 * checked as text before (akg_list_path_problem: not absolute, no '..', no
 * empty component). Returns 0 or -errno; -ELOOP: a link, whose path within
 * rel is its first *link_len bytes. */
static int mkdir_beneath(const char *base, const char *rel, size_t *link_len)
{
  int cur = open(base, O_PATH | O_DIRECTORY | O_CLOEXEC);
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
    if (next < 0 && errno == ENOENT) {
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
  close(cur);
  return rc;
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
    rc = mkdir_beneath(o->dir, len > base_len ? dir + base_len + 1 : "", &link_len);
  else
    rc = mkdir_beneath(".", dir, &link_len);
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

int akg_names_assign(akg_names *n, const akg_opts *o, akg_item *it, const char *dir,
                     const char *out, char *why, size_t why_len)
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
    char *own = out ? NULL : name_for(it->url);
    path = out || own ? join3(o->dir, dir, out ? out : own) : NULL;
    free(own);
  }
  if (!path)
    return -ENOMEM;
  if (names_has(n, path)) {
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
    for (unsigned k = 1; path && names_has(n, path); k++) {
      size_t len = strlen(path) + 16;
      char *alt = malloc(len);
      if (alt) {
        int cut = k == 1 ? (int)strlen(path) : (int)(strrchr(path, '.') - path);
        snprintf(alt, len, "%.*s.%u", cut, path, k);
      }
      free(path);
      path = alt;
    }
    if (!path)
      return -ENOMEM;
  }
  int rc = names_add(n, path);
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
    it->tmp = malloc(plen + sizeof part_suffix);
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
