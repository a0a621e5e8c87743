/* fs_walk.c: the tree walk (ak_walk): a helper future that stats root on
 * the ring, then lists one directory at a time on the pool (names and
 * stats, sorted: fs_dir.c) and hands each entry to the caller's function
 * on the loop's thread, depth first, a directory before its entries. A
 * frame per directory being visited holds its listing; the path buffer
 * holds the path of the entry being visited. Cycles through links are
 * caught by comparing a directory's identity (dev, ino) with its
 * ancestors'. aksum's walker (tools/aksum/walk.c) was the model: same
 * order, same rule for links (AK_WALK_FOLLOW), one directory fd at a time.
 *
 * Not here: the listing itself (fs_dir.c), the helper future
 * (fs_helpers.c).
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include "fs/internal.h"

typedef struct walk_frame {
  ak_future *listing_f; /* owns the listing (its value) */
  ak__dir_listing *l;
  size_t next;          /* the next item to visit */
  size_t path_len;      /* this directory's path is path[0..path_len) */
  unsigned depth;       /* of its entries */
  dev_t dev;            /* its identity, for the loop check */
  ino_t ino;
} walk_frame;

typedef struct fsh_walk {
  fsh base;
  ak_future *step; /* root's statx or a listing in flight */
  int dirfd;
  ak_walk_opts opts;
  ak_walk_fn fn;
  void *arg;
  int64_t count; /* entries given to fn */
  walk_frame *frames;
  size_t nframes, frames_cap;
  char *path; /* the current path, NUL-terminated */
  size_t path_cap;
  /* The directory whose listing is in flight. */
  size_t pending_len;
  unsigned pending_depth;
  dev_t pending_dev;
  ino_t pending_ino;
  struct statx stx; /* root's, written by the kernel */
} fsh_walk;

static void walk_cancel(fsh *base)
{
  ak__fsh_cancel_step(((fsh_walk *)base)->step);
}

static void walk_free_frames(fsh_walk *w)
{
  for (size_t i = 0; i < w->nframes; i++)
    ak_future_release(w->frames[i].listing_f);
  ak__free(w->frames);
  w->frames = NULL;
  w->nframes = 0;
}

/* Ends the walk: result (count or error), detail naming path on failure. */
static void walk_end(fsh_walk *w, int64_t res, const char *failed_path)
{
  walk_free_frames(w);
  char *path = w->path;
  if (res < 0)
    ak__fsh_fail(&w->base, res, failed_path, NULL);
  else
    ak__fsh_finish(&w->base, res, NULL, NULL);
  ak__free(path); /* after: failed_path may point into it */
}

static int path_reserve(fsh_walk *w, size_t need)
{
  if (need <= w->path_cap)
    return 0;
  size_t cap = w->path_cap * 2 > need ? w->path_cap * 2 : need;
  char *p = ak__realloc(w->path, cap);
  if (!p)
    return -ENOMEM;
  w->path = p;
  w->path_cap = cap;
  return 0;
}

static ak_walk_type type_of_mode(mode_t m)
{
  if (S_ISREG(m))
    return AK_WALK_FILE;
  if (S_ISDIR(m))
    return AK_WALK_DIR;
  if (S_ISLNK(m))
    return AK_WALK_LINK;
  return AK_WALK_OTHER;
}

static const char *last_name(const char *path, size_t len)
{
  size_t i = len;
  while (i > 0 && path[i - 1] != '/')
    i--;
  return path + i;
}

/* Whether a directory with this identity is being visited already: the
 * walk would go round in circles through a link. */
static bool is_ancestor(const fsh_walk *w, dev_t dev, ino_t ino)
{
  for (size_t i = 0; i < w->nframes; i++)
    if (w->frames[i].dev == dev && w->frames[i].ino == ino)
      return true;
  return false;
}

static bool may_enter(const fsh_walk *w, unsigned depth)
{
  return w->opts.max_depth == 0 || depth < w->opts.max_depth;
}

static void walk_run(fsh_walk *w);
static void listing_done(ak_future *step, void *arg);

/* Lists the directory path[0..len) whose entries are at depth. */
static void walk_list(fsh_walk *w, size_t len, unsigned depth, dev_t dev, ino_t ino)
{
  w->path[len] = '\0';
  w->pending_len = len;
  w->pending_depth = depth;
  w->pending_dev = dev;
  w->pending_ino = ino;
  unsigned flags = 0;
  if (w->opts.flags & AK_WALK_FOLLOW)
    flags |= AK__LIST_FOLLOW;
  if (w->opts.flags & AK_WALK_FOLLOW_DIRS)
    flags |= AK__LIST_FOLLOW | AK__LIST_FOLLOW_DIRS;
  else if (depth > 1)
    flags |= AK__LIST_NOFOLLOW_DIR; /* not through a link swapped in since */
  w->step = ak__dir_list_op(w->base.loop, w->dirfd, w->path, flags);
  if (!w->step) {
    walk_end(w, -ENOMEM, NULL);
    return;
  }
  ak__fsh_await(w->step, listing_done, w);
}

/* Gives e to fn; false when the walk is over (STOP, or a cancel from fn). */
static bool deliver(fsh_walk *w, const ak_walk_entry *e, int *action)
{
  w->count++;
  *action = w->fn(w->base.loop, e, w->arg);
  if (ak__fsh_cancelled(&w->base)) {
    walk_end(w, -ECANCELED, NULL);
    return false;
  }
  if (*action == AK_WALK_STOP) {
    walk_end(w, w->count, NULL);
    return false;
  }
  return true;
}

static void listing_done(ak_future *step, void *arg)
{
  fsh_walk *w = arg;
  int64_t res = ak_future_result(step);
  if (ak__fsh_cancelled(&w->base)) {
    ak__fsh_step_result(&w->step);
    walk_end(w, -ECANCELED, NULL);
    return;
  }
  if (res < 0) {
    ak__fsh_step_result(&w->step);
    /* The directory's entry came already: its failure is an entry too. */
    w->path[w->pending_len] = '\0';
    ak_walk_entry e = {.path = w->path,
                       .name = last_name(w->path, w->pending_len),
                       .depth = w->pending_depth - 1,
                       .type = AK_WALK_ERROR,
                       .err = (int)res};
    int action;
    if (deliver(w, &e, &action))
      walk_run(w);
    return;
  }
  if (w->nframes == w->frames_cap) {
    size_t cap = w->frames_cap ? w->frames_cap * 2 : 8;
    walk_frame *more = ak__realloc(w->frames, cap * sizeof(*more));
    if (!more) {
      ak__fsh_step_result(&w->step);
      walk_end(w, -ENOMEM, NULL);
      return;
    }
    w->frames = more;
    w->frames_cap = cap;
  }
  walk_frame *fr = &w->frames[w->nframes++];
  fr->listing_f = w->step; /* the frame takes the step's reference */
  w->step = NULL;
  fr->l = ak_future_value(fr->listing_f);
  fr->next = 0;
  fr->path_len = w->pending_len;
  fr->depth = w->pending_depth;
  fr->dev = w->pending_dev;
  fr->ino = w->pending_ino;
  walk_run(w);
}

/* Visits entries until a directory must be listed or the walk ends. */
static void walk_run(fsh_walk *w)
{
  while (w->nframes > 0) {
    walk_frame *fr = &w->frames[w->nframes - 1];
    if (fr->next == fr->l->pub.count) {
      ak_future_release(fr->listing_f);
      w->nframes--;
      continue;
    }
    const ak__dir_item *it = &fr->l->items[fr->next++];
    size_t dl = fr->path_len, nl = strlen(it->ent.name);
    bool slash = dl > 0 && w->path[dl - 1] != '/';
    if (path_reserve(w, dl + 1 + nl + 1) < 0) {
      walk_end(w, -ENOMEM, NULL);
      return;
    }
    size_t at = dl + (slash ? 1 : 0);
    if (slash)
      w->path[dl] = '/';
    memcpy(w->path + at, it->ent.name, nl + 1);
    ak_walk_entry e = {.path = w->path,
                       .name = w->path + at,
                       .depth = fr->depth,
                       .err = it->err,
                       .is_link = it->is_link,
                       .st = it->err ? NULL : &it->st};
    bool enter = it->descend;
    if (it->err) {
      e.type = AK_WALK_ERROR;
    } else if (enter && is_ancestor(w, it->st.st_dev, it->st.st_ino)) {
      e.type = AK_WALK_ERROR; /* a link back up the tree */
      e.err = -ELOOP;
      e.st = NULL;
      enter = false;
    } else {
      e.type = type_of_mode(it->st.st_mode);
    }
    dev_t dev = it->st.st_dev;
    ino_t ino = it->st.st_ino;
    unsigned depth = fr->depth;
    int action;
    if (!deliver(w, &e, &action)) /* fr may be gone after this */
      return;
    if (enter && action == AK_WALK_CONTINUE && may_enter(w, depth)) {
      walk_list(w, at + nl, depth + 1, dev, ino);
      return;
    }
  }
  walk_end(w, w->count, NULL);
}

static void stat_of_statx(struct stat *st, const struct statx *sx)
{
  memset(st, 0, sizeof(*st));
  st->st_dev = makedev(sx->stx_dev_major, sx->stx_dev_minor);
  st->st_ino = sx->stx_ino;
  st->st_mode = sx->stx_mode;
  st->st_nlink = sx->stx_nlink;
  st->st_uid = sx->stx_uid;
  st->st_gid = sx->stx_gid;
  st->st_rdev = makedev(sx->stx_rdev_major, sx->stx_rdev_minor);
  st->st_size = (off_t)sx->stx_size;
  st->st_blksize = sx->stx_blksize;
  st->st_blocks = (blkcnt_t)sx->stx_blocks;
  st->st_atim = (struct timespec){sx->stx_atime.tv_sec, sx->stx_atime.tv_nsec};
  st->st_mtim = (struct timespec){sx->stx_mtime.tv_sec, sx->stx_mtime.tv_nsec};
  st->st_ctim = (struct timespec){sx->stx_ctime.tv_sec, sx->stx_ctime.tv_nsec};
}

static void root_done(ak_future *step, void *arg)
{
  (void)step;
  fsh_walk *w = arg;
  int64_t res = ak__fsh_step_result(&w->step);
  if (ak__fsh_cancelled(&w->base)) {
    walk_end(w, -ECANCELED, NULL);
    return;
  }
  if (res < 0) {
    walk_end(w, res, w->path);
    return;
  }
  struct stat st;
  stat_of_statx(&st, &w->stx);
  size_t len = strlen(w->path);
  ak_walk_entry e = {.path = w->path,
                     .name = last_name(w->path, len),
                     .depth = 0,
                     .type = type_of_mode(st.st_mode),
                     .st = &st};
  int action;
  if (!deliver(w, &e, &action))
    return;
  if (S_ISDIR(st.st_mode) && action == AK_WALK_CONTINUE && may_enter(w, 0))
    walk_list(w, len, 1, st.st_dev, st.st_ino);
  else
    walk_end(w, w->count, NULL);
}

ak_future *ak_walk(ak_loop *loop, int dirfd, const char *root, const ak_walk_opts *opts,
                   ak_walk_fn fn, void *arg)
{
  AK__REQUIRE_OWNER(loop, "ak_walk");
  if (!root || !fn)
    return ak__future_failed(loop, -EFAULT, "ak_walk: root or fn is NULL");
  ak_future *out;
  fsh_walk *w = ak__fsh_new(loop, sizeof(*w), walk_cancel, &out);
  if (!w)
    return NULL;
  w->dirfd = dirfd;
  w->fn = fn;
  w->arg = arg;
  if (opts)
    w->opts = *opts;
  size_t len = strlen(root);
  if (path_reserve(w, len + 256) < 0) {
    ak__fsh_finish(&w->base, -ENOMEM, NULL, NULL);
    return out;
  }
  memcpy(w->path, root, len + 1);
  w->step = ak_statx(loop, dirfd, root, 0, STATX_BASIC_STATS, &w->stx);
  if (!w->step) {
    walk_end(w, -ENOMEM, NULL);
    return out;
  }
  ak__fsh_await(w->step, root_done, w);
  return out;
}
