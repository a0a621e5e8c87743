/* fs/internal.h: what the files of src/fs share among themselves: the
 * helper future (a future whose work is a sequence of ring ops, made in
 * fs_helpers.c) and the directory listing done on the pool (fs_dir.c) that
 * the tree walk (fs_walk.c) reads. Nothing here is offered to the layers
 * above: they use include/asynckit/fs.h. */
#ifndef AK_FS_INTERNAL_H
#define AK_FS_INTERNAL_H

#include <sys/stat.h>

#include "core/internal.h"

/* ---- The helper future (fs_helpers.c) ---------------------------------------
 * A helper is a struct that starts with fsh; its future's cancel hook calls
 * h->cancel on the loop's thread while the helper is pending, which cancels
 * the step in flight. The helper settles only after that step has come back,
 * so the kernel never holds its memory past the settle. */

typedef struct fsh fsh;
struct fsh {
  ak_future *self;        /* the helper's future; fsh holds a ref */
  ak_loop *loop;
  void (*cancel)(fsh *h); /* cancels what is in flight (loop thread) */
};

/* Allocates a zeroed helper of size bytes (fsh first) with its future;
 * *out gets the caller's reference. NULL on ENOMEM. */
void *ak__fsh_new(ak_loop *loop, size_t size, void (*cancel)(fsh *h), ak_future **out);

/* Settles the helper's future with res (and value, owned by the future from
 * here, when res >= 0) and frees the helper. */
void ak__fsh_finish(fsh *h, int64_t res, void *value, ak_destructor dtor);

/* Fails the helper with err, its detail naming what failed: "what path"
 * ("source top.txt", "mkdir a/b"); no detail for a cancel. Frees h. */
void ak__fsh_fail(fsh *h, int64_t err, const char *what, const char *path);

/* Runs cb(step, arg) once step settles. A fresh op future has no callback
 * yet, so the first one takes the inline slot and cannot fail. */
void ak__fsh_await(ak_future *step, ak_callback cb, void *arg);

/* Takes the result of a settled step and drops the reference to it. */
int64_t ak__fsh_step_result(ak_future **slot);

static inline bool ak__fsh_cancelled(const fsh *h)
{
  return ak_future_cancel_requested(h->self);
}

static inline void ak__fsh_cancel_step(ak_future *step)
{
  if (step)
    ak_future_cancel(step);
}

/* ---- Directory listings (fs_dir.c) -------------------------------------------- */

/* One entry of a listing made for the walk: the public entry plus what the
 * walk needs to know of it, all found on the pool. */
typedef struct ak__dir_item {
  ak_dirent ent;     /* name, ino, type */
  struct stat st;    /* lstat, or stat through a link when following */
  int err;           /* 0, or why st could not be had (-ENOENT, -ELOOP) */
  bool is_link;      /* the name is a symbolic link */
  bool descend;      /* a directory the walk would enter */
} ak__dir_item;

/* A listing: the public view first, so the value of ak_dir_list is one. */
typedef struct ak__dir_listing {
  ak_dir_listing pub;  /* count, entries (ak_dir_list only) */
  ak__dir_item *items; /* the walk's entries (NULL for ak_dir_list) */
  char *names;         /* every name, NUL-terminated, back to back */
} ak__dir_listing;

/* Above the public AK_DIR_* flags, which share the word. */
enum {
  AK__LIST_STAT = 1 << 8,         /* fill items (the walk) instead of entries */
  AK__LIST_FOLLOW = 1 << 9,       /* stat through links */
  AK__LIST_FOLLOW_DIRS = 1 << 10, /* links to directories are descended */
  AK__LIST_NOFOLLOW_DIR = 1 << 11, /* open the directory with O_NOFOLLOW */
};

/* Lists dir (relative to dirfd) on a pool thread of loop's, with a stat of
 * every name (AK__LIST_STAT is implied). Result: the count, or -errno (the
 * detail: dir); value: the ak__dir_listing, items sorted (names in byte
 * order, a directory the walk enters as if its name ended in '/'), owned
 * by the future. */
ak_future *ak__dir_list_op(ak_loop *loop, int dirfd, const char *dir, unsigned flags);

void ak__dir_listing_free(void *listing);

#endif /* AK_FS_INTERNAL_H */
