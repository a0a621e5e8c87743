/* fs_dir.c: directories and links: listing a directory (on the pool: there
 * is no getdents opcode), the listing with stats the tree walk reads,
 * symlinkat (a ring op, the pool where the kernel lacks it), readlinkat (the
 * pool: no readlink opcode) and mkdir -p (a helper whose steps are ring
 * mkdirat and statx ops).
 *
 * Not here: the walk that reads the listings (fs_walk.c), the plain path ops
 * (fs.c), the helper future itself (fs_helpers.c).
 *
 * Map:
 *   1. Path ops of this file: copied paths, completion, failure detail
 *   2. Listing a directory (pool)
 *   3. symlinkat, readlinkat
 *   4. mkdir -p
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fs/internal.h"

/* ---- 1. Path ops of this file -------------------------------------------------- */

typedef struct dir_op {
  int dirfd;
  unsigned flags;      /* AK__LIST_* / AK_DIR_* */
  char *path;          /* heap copy (path, then path2, one block) */
  char *path2;         /* symlinkat: the link's path; path is the target */
  void *out;           /* made on the pool: a listing, a link's target */
  ak_destructor dtor;  /* frees out */
} dir_op;
_Static_assert(sizeof(dir_op) <= AK__OP_DATA_SIZE, "dir_op fits the op record");

/* Failure detail: the path that failed (the link's own path for symlinkat:
 * the target is only content). Set before the settle, as op.c allows. */
static void set_path_detail(ak_future *f, const char *path)
{
  char *copy = ak__strdup(path);
  if (copy) {
    ak__free(f->detail);
    f->detail = copy;
  }
}

static void dir_op_complete(ak__op *op, int res, unsigned flags)
{
  (void)flags;
  dir_op *d = AK__OP_DATA(op, dir_op);
  if (res >= 0 && d->out) {
    op->fut->value = d->out;
    op->fut->dtor = d->dtor;
  } else {
    if (d->out && d->dtor) /* defensive, believed never to fire: out comes with res >= 0 */
      d->dtor(d->out);
    if (res < 0 && res != -ECANCELED)
      set_path_detail(op->fut, d->path2 ? d->path2 : d->path);
  }
  ak__free(d->path);
  ak__op_finish(op, res);
}

/* An op of kind with path (and path2) copied; NULL on ENOMEM. */
static ak__op *dir_op_new(ak_loop *loop, unsigned kind, int dirfd, const char *path,
                          const char *path2)
{
  size_t n1 = strlen(path) + 1, n2 = path2 ? strlen(path2) + 1 : 0;
  char *mem = ak__malloc(n1 + n2);
  if (!mem)
    return NULL;
  ak__op *op = ak__op_new(loop, kind);
  if (!op) {
    ak__free(mem);
    return NULL;
  }
  dir_op *d = AK__OP_DATA(op, dir_op);
  memset(d, 0, sizeof(*d));
  d->dirfd = dirfd;
  d->path = memcpy(mem, path, n1);
  if (path2)
    d->path2 = memcpy(mem + n1, path2, n2);
  op->complete = dir_op_complete;
  return op;
}

/* ---- 2. Listing a directory ----------------------------------------------------- */

/* A name while the directory is read: offsets, since the blob moves. */
typedef struct raw_ent {
  size_t off;
  uint64_t ino;
  unsigned char type;
} raw_ent;

typedef struct reader {
  char *names;
  size_t names_len, names_cap;
  raw_ent *ents;
  size_t count, cap;
} reader;

static int reader_add(reader *r, const char *name, uint64_t ino, unsigned char type)
{
  size_t n = strlen(name) + 1;
  if (r->names_len + n > r->names_cap) {
    size_t cap = r->names_cap ? r->names_cap * 2 : 1024;
    while (cap < r->names_len + n)
      cap *= 2;
    char *more = ak__realloc(r->names, cap);
    if (!more)
      return -ENOMEM;
    r->names = more;
    r->names_cap = cap;
  }
  if (r->count == r->cap) {
    size_t cap = r->cap ? r->cap * 2 : 32;
    raw_ent *more = ak__realloc(r->ents, cap * sizeof(*more));
    if (!more)
      return -ENOMEM;
    r->ents = more;
    r->cap = cap;
  }
  memcpy(r->names + r->names_len, name, n);
  r->ents[r->count++] = (raw_ent){.off = r->names_len, .ino = ino, .type = type};
  r->names_len += n;
  return 0;
}

static bool is_dot_or_dotdot(const char *name)
{
  return name[0] == '.' && (name[1] == '\0' || (name[1] == '.' && name[2] == '\0'));
}

/* Reads every name of the open directory fd. */
static int read_all_names(int fd, reader *r)
{
  enum { GETDENTS_BUF = 32768 };
  char *buf = ak__malloc(GETDENTS_BUF);
  if (!buf)
    return -ENOMEM;
  int rc = 0;
  for (;;) {
    ssize_t n = getdents64(fd, buf, GETDENTS_BUF);
    if (n < 0) {
      rc = -errno;
      break;
    }
    if (n == 0)
      break;
    for (ssize_t pos = 0; pos < n && rc == 0;) {
      struct dirent64 *e = (struct dirent64 *)(void *)(buf + pos);
      pos += e->d_reclen;
      if (!is_dot_or_dotdot(e->d_name))
        rc = reader_add(r, e->d_name, e->d_ino, e->d_type);
    }
    if (rc < 0)
      break;
  }
  ak__free(buf);
  return rc;
}

static unsigned char dt_of_mode(mode_t m)
{
  return (unsigned char)IFTODT(m);
}

static int cmp_dirent(const void *a, const void *b)
{
  return strcmp(((const ak_dirent *)a)->name, ((const ak_dirent *)b)->name);
}

/* Names in byte order, a directory the walk enters compared as if its name
 * ended in '/': then every path below it sorts where "name/" does among
 * its siblings, and the files of a walk come in whole-path byte order. */
static int cmp_item(const void *pa, const void *pb)
{
  const ak__dir_item *a = pa, *b = pb;
  const unsigned char *x = (const unsigned char *)a->ent.name;
  const unsigned char *y = (const unsigned char *)b->ent.name;
  while (*x && *x == *y) {
    x++;
    y++;
  }
  int cx = *x ? *x : (a->descend ? '/' : 0);
  int cy = *y ? *y : (b->descend ? '/' : 0);
  if (cx != cy || cx == 0)
    return cx - cy;
  /* One name ended where the other has '/': names hold no '/', so both
   * ended and both are directories (equal names cannot happen). */
  return 0;
}

/* The walk's view of one name: lstat, then stat through a link. */
static void stat_item(int fd, ak__dir_item *it, unsigned flags)
{
  struct stat lst;
  if (fstatat(fd, it->ent.name, &lst, AT_SYMLINK_NOFOLLOW) < 0) {
    it->err = -errno; /* gone since getdents */
    return;
  }
  it->ent.type = dt_of_mode(lst.st_mode);
  it->is_link = S_ISLNK(lst.st_mode);
  it->st = lst;
  if (it->is_link && (flags & (AK__LIST_FOLLOW | AK__LIST_FOLLOW_DIRS))) {
    if (fstatat(fd, it->ent.name, &it->st, 0) < 0)
      it->err = -errno; /* dangling (ENOENT) or a loop of links (ELOOP) */
  }
  it->descend = it->err == 0 && S_ISDIR(it->st.st_mode) &&
                (!it->is_link || (flags & AK__LIST_FOLLOW_DIRS));
}

/* Builds the listing from what was read (fd still open for the stats). */
static int make_listing(int fd, reader *r, unsigned flags, ak__dir_listing **out)
{
  ak__dir_listing *l = ak__calloc(1, sizeof(*l));
  if (!l)
    return -ENOMEM;
  l->names = r->names;
  r->names = NULL;
  l->pub.count = r->count;
  if (flags & AK__LIST_STAT) {
    l->items = ak__calloc(r->count ? r->count : 1, sizeof(*l->items));
    if (!l->items)
      goto nomem;
    for (size_t i = 0; i < r->count; i++) {
      ak__dir_item *it = &l->items[i];
      it->ent = (ak_dirent){l->names + r->ents[i].off, r->ents[i].ino, r->ents[i].type};
      stat_item(fd, it, flags);
    }
    qsort(l->items, r->count, sizeof(*l->items), cmp_item);
  } else {
    ak_dirent *ents = ak__calloc(r->count ? r->count : 1, sizeof(*ents));
    if (!ents)
      goto nomem;
    for (size_t i = 0; i < r->count; i++) {
      ents[i] = (ak_dirent){l->names + r->ents[i].off, r->ents[i].ino, r->ents[i].type};
      struct stat st;
      if (ents[i].type == DT_UNKNOWN && fstatat(fd, ents[i].name, &st, AT_SYMLINK_NOFOLLOW) == 0)
        ents[i].type = dt_of_mode(st.st_mode);
    }
    if (!(flags & AK_DIR_UNSORTED))
      qsort(ents, r->count, sizeof(*ents), cmp_dirent);
    l->pub.entries = ents;
  }
  *out = l;
  return 0;
nomem:
  ak__dir_listing_free(l);
  return -ENOMEM;
}

void ak__dir_listing_free(void *listing)
{
  ak__dir_listing *l = listing;
  if (!l)
    return;
  ak__free((void *)l->pub.entries);
  ak__free(l->items);
  ak__free(l->names);
  ak__free(l);
}

/* On a pool thread: open, read, stat, sort, close. */
static int64_t blocking_dirlist(ak__op *op)
{
  dir_op *d = AK__OP_DATA(op, dir_op);
  bool nofollow = d->flags & (AK_DIR_NOFOLLOW | AK__LIST_NOFOLLOW_DIR);
  int fd = openat(d->dirfd, d->path, O_RDONLY | O_DIRECTORY | O_CLOEXEC | (nofollow ? O_NOFOLLOW : 0));
  if (fd < 0)
    return -errno;
  reader r = {0};
  ak__dir_listing *l = NULL;
  int rc = read_all_names(fd, &r);
  if (rc == 0)
    rc = make_listing(fd, &r, d->flags, &l);
  close(fd);
  ak__free(r.names);
  ak__free(r.ents);
  if (rc < 0)
    return rc;
  d->out = l;
  return (int64_t)l->pub.count;
}

static ak_future *dir_list_submit(ak_loop *loop, int dirfd, const char *path, unsigned flags)
{
  ak__op *op = dir_op_new(loop, AK_OP_DIRLIST, dirfd, path, NULL);
  if (!op)
    return NULL;
  dir_op *d = AK__OP_DATA(op, dir_op);
  d->flags = flags;
  d->dtor = ak__dir_listing_free;
  op->blocking = blocking_dirlist;
  op->flags |= AK__OPF_NO_OPCODE; /* no getdents opcode: always the pool */
  return ak__op_submit(op);
}

ak_future *ak__dir_list_op(ak_loop *loop, int dirfd, const char *dir, unsigned flags)
{
  return dir_list_submit(loop, dirfd, dir, flags | AK__LIST_STAT);
}

ak_future *ak_dir_list(ak_loop *loop, int dirfd, const char *path, unsigned flags)
{
  AK__REQUIRE_OWNER(loop, "ak_dir_list");
  if (!path)
    return ak__future_failed(loop, -EFAULT, "ak_dir_list: path is NULL");
  return dir_list_submit(loop, dirfd, path, flags & (AK_DIR_UNSORTED | AK_DIR_NOFOLLOW));
}

/* ---- 3. symlinkat, readlinkat --------------------------------------------------- */

static void prep_symlinkat(ak__op *op, struct io_uring_sqe *sqe)
{
  dir_op *d = AK__OP_DATA(op, dir_op);
  io_uring_prep_symlinkat(sqe, d->path, d->dirfd, d->path2);
}

static int64_t blocking_symlinkat(ak__op *op)
{
  dir_op *d = AK__OP_DATA(op, dir_op);
  return ak__syscall_result(symlinkat(d->path, d->dirfd, d->path2));
}

ak_future *ak_symlinkat(ak_loop *loop, const char *target, int newdirfd, const char *linkpath)
{
  AK__REQUIRE_OWNER(loop, "ak_symlinkat");
  if (!target || !linkpath)
    return ak__future_failed(loop, -EFAULT, "ak_symlinkat: a path is NULL");
  ak__op *op = dir_op_new(loop, AK_OP_SYMLINKAT, newdirfd, target, linkpath);
  if (!op)
    return NULL;
  op->prep = prep_symlinkat;
  op->blocking = blocking_symlinkat;
  if (!ak__loop_has_opcode(loop, IORING_OP_SYMLINKAT))
    op->flags |= AK__OPF_NO_OPCODE;
  return ak__op_submit(op);
}

/* On a pool thread; the buffer grows until the target fits with room to
 * spare (readlink truncates silently). */
static int64_t blocking_readlinkat(ak__op *op)
{
  dir_op *d = AK__OP_DATA(op, dir_op);
  size_t cap = 256;
  for (;;) {
    char *buf = ak__malloc(cap);
    if (!buf)
      return -ENOMEM;
    ssize_t n = readlinkat(d->dirfd, d->path, buf, cap);
    if (n < 0) {
      int err = -errno;
      ak__free(buf);
      return err;
    }
    if ((size_t)n < cap) {
      buf[n] = '\0';
      d->out = buf;
      return n;
    }
    ak__free(buf);
    if (cap >= ((size_t)1 << 24)) /* defensive: no link is this long */
      return -ENAMETOOLONG;
    cap *= 2;
  }
}

ak_future *ak_readlinkat(ak_loop *loop, int dirfd, const char *path)
{
  AK__REQUIRE_OWNER(loop, "ak_readlinkat");
  if (!path)
    return ak__future_failed(loop, -EFAULT, "ak_readlinkat: path is NULL");
  ak__op *op = dir_op_new(loop, AK_OP_READLINKAT, dirfd, path, NULL);
  if (!op)
    return NULL;
  AK__OP_DATA(op, dir_op)->dtor = ak__free;
  op->blocking = blocking_readlinkat;
  op->flags |= AK__OPF_NO_OPCODE; /* no readlink opcode: always the pool */
  return ak__op_submit(op);
}

/* ---- 4. mkdir -p ------------------------------------------------------------------
 * path[] is a working copy: while a parent is made, a NUL stands at the
 * slash after it (cur). Up on ENOENT, down again after each success. */

typedef struct fsh_mkdir {
  fsh base;
  ak_future *step;
  int dirfd;
  unsigned mode;
  bool checking;    /* step is the statx after an EEXIST */
  unsigned retries; /* mkdirat again after EEXIST then ENOENT */
  unsigned made;    /* directories made */
  size_t len;       /* the whole path's length */
  size_t cur;       /* the prefix being made ends here */
  struct statx stx; /* written by the kernel while checking */
  char path[];
} fsh_mkdir;

static void mk_cancel(fsh *base)
{
  ak__fsh_cancel_step(((fsh_mkdir *)base)->step);
}

static void mk_step_done(ak_future *step, void *arg);

static void mk_go(fsh_mkdir *h, ak_future *step)
{
  h->step = step;
  if (!step) {
    ak__fsh_finish(&h->base, -ENOMEM, NULL, NULL);
    return;
  }
  ak__fsh_await(step, mk_step_done, h);
}

static void mk_make(fsh_mkdir *h)
{
  h->checking = false;
  mk_go(h, ak_mkdirat(h->base.loop, h->dirfd, h->path, h->mode));
}

/* The prefix exists as a directory: the next component down, or done. */
static void mk_down(fsh_mkdir *h)
{
  if (h->cur >= h->len) {
    ak__fsh_finish(&h->base, h->made, NULL, NULL);
    return;
  }
  h->path[h->cur] = '/';
  size_t i = h->cur;
  while (i < h->len && h->path[i] == '/')
    i++;
  while (i < h->len && h->path[i] != '/')
    i++;
  h->cur = i;
  h->path[i] = '\0';
  mk_make(h);
}

/* The parent of the prefix is missing: end the prefix one component up.
 * false when there is no parent left to make. */
static bool mk_up(fsh_mkdir *h)
{
  size_t i = h->cur;
  while (i > 0 && h->path[i - 1] != '/')
    i--;
  while (i > 0 && h->path[i - 1] == '/')
    i--;
  if (i == 0)
    return false;
  if (h->cur < h->len)
    h->path[h->cur] = '/';
  h->cur = i;
  h->path[i] = '\0';
  return true;
}

static void mk_step_done(ak_future *step, void *arg)
{
  (void)step;
  fsh_mkdir *h = arg;
  int64_t res = ak__fsh_step_result(&h->step);
  if (ak__fsh_cancelled(&h->base)) {
    ak__fsh_finish(&h->base, -ECANCELED, NULL, NULL);
    return;
  }
  if (h->checking) {
    if (res == 0 && S_ISDIR(h->stx.stx_mode))
      mk_down(h);
    else if (res == -ENOENT && h->retries++ == 0)
      mk_make(h); /* removed between the two: make it again, once */
    else if (res < 0 && res != -ENOENT)
      ak__fsh_fail(&h->base, res, h->path, NULL);
    else /* not a directory, or a dangling link (ENOENT again) */
      ak__fsh_fail(&h->base, h->cur == h->len ? -EEXIST : -ENOTDIR, h->path, NULL);
    return;
  }
  if (res == 0) {
    h->made++;
    mk_down(h);
  } else if (res == -EEXIST) {
    /* A directory, or a link to one, is what we want; anything else not. */
    h->checking = true;
    mk_go(h, ak_statx(h->base.loop, h->dirfd, h->path, 0, STATX_TYPE, &h->stx));
  } else if (res == -ENOENT && mk_up(h)) {
    mk_make(h);
  } else {
    ak__fsh_fail(&h->base, res, h->path, NULL);
  }
}

ak_future *ak_mkdir_p(ak_loop *loop, int dirfd, const char *path, unsigned mode)
{
  AK__REQUIRE_OWNER(loop, "ak_mkdir_p");
  if (!path)
    return ak__future_failed(loop, -EFAULT, "ak_mkdir_p: path is NULL");
  size_t len = strlen(path);
  while (len > 1 && path[len - 1] == '/') /* "a/b/" is "a/b"; "/" stays */
    len--;
  ak_future *out;
  fsh_mkdir *h = ak__fsh_new(loop, sizeof(*h) + len + 1, mk_cancel, &out);
  if (!h)
    return NULL;
  memcpy(h->path, path, len);
  h->path[len] = '\0';
  h->len = h->cur = len;
  h->dirfd = dirfd;
  h->mode = mode;
  if (len == 0)
    ak__fsh_fail(&h->base, -ENOENT, "(empty path)", NULL);
  else
    mk_make(h);
  return out;
}
