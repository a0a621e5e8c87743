/* fs_helpers.c: file helpers that finish the job, each one future built from
 * several ring ops: read exactly / write all (short transfers resubmitted),
 * read a whole file, copy an fd (a pipeline of a bounded number of chunks in
 * flight, through pipes or buffers) and copy a file (to a temporary name,
 * renamed when complete).
 *
 * Every helper is a future of the "fs helper" kind whose cancel hook cancels
 * the ops in flight; the helper settles only after the kernel has given all
 * of them back, so buffers stay valid until then. Steps run as callbacks on
 * the loop's thread.
 *
 * Not here: the ops themselves (fs.c, ring_ops.c).
 *
 * Map:
 *   1. The helper future: creation, cancel hook, finishing
 *   2. read exactly / write all
 *   3. read a whole file
 *   4. copy an fd: the chunk pipeline
 *   5. copy a file: temporary name, rename, cleanup
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fs/internal.h"

/* ---- 1. The helper future ---------------------------------------------------
 * (fs/internal.h: shared with fs_dir.c and fs_walk.c) */

static void fsh_cancel_on_loop(ak_future *f)
{
  /* f->data is the helper exactly while f is pending (both change on the
   * loop's thread). */
  fsh *h = f->data;
  if (h && !ak_future_is_set(f))
    h->cancel(h);
}

static void fsh_cancel_posted(void *arg)
{
  ak_future *f = arg;
  fsh_cancel_on_loop(f);
  ak_future_release(f);
}

static void fsh_future_cancel(ak_future *f)
{
  if (ak__loop_owned_by_caller(f->loop)) {
    fsh_cancel_on_loop(f);
    return;
  }
  ak_future_ref(f);
  if (ak_loop_post(f->loop, fsh_cancel_posted, f) < 0)
    ak_future_release(f); /* ENOMEM: the request is lost; the steps finish */
}

static const ak__future_kind fsh_kind = {.name = "fs helper", .cancel = fsh_future_cancel};

void *ak__fsh_new(ak_loop *loop, size_t size, void (*cancel)(fsh *h), ak_future **out)
{
  fsh *h = ak__calloc(1, size);
  if (!h)
    return NULL;
  h->self = ak__future_new(loop, &fsh_kind, h);
  if (!h->self) {
    ak__free(h);
    return NULL;
  }
  h->loop = loop;
  h->cancel = cancel;
  *out = ak_future_ref(h->self); /* the caller's; fsh keeps the first */
  return h;
}

void ak__fsh_finish(fsh *h, int64_t res, void *value, ak_destructor dtor)
{
  ak_future *self = h->self;
  self->data = NULL;
  if (res >= 0 && value)
    ak_future_set(self, res, value, dtor);
  else
    ak__future_finish(self, res);
  ak_future_release(self);
  ak__free(h);
}

void ak__fsh_fail(fsh *h, int64_t err, const char *what, const char *path)
{
  ak_future *self = h->self;
  if (err < 0 && err != -ECANCELED && what) {
    size_t n = strlen(what) + (path ? strlen(path) + 1 : 0) + 1;
    char *detail = ak__malloc(n);
    if (detail) {
      snprintf(detail, n, "%s%s%s", what, path ? " " : "", path ? path : "");
      ak__free(self->detail); /* not settled yet: nobody else reads it */
      self->detail = detail;
    }
  }
  ak__fsh_finish(h, err, NULL, NULL);
}

void ak__fsh_await(ak_future *step, ak_callback cb, void *arg)
{
  int rc = ak_future_on_settle(step, cb, arg);
  assert(rc == 0);
  (void)rc;
}

int64_t ak__fsh_step_result(ak_future **slot)
{
  int64_t res = ak_future_result(*slot);
  ak_future_release(*slot);
  *slot = NULL;
  return res;
}

/* ---- 2. read exactly / write all -------------------------------------------- */

typedef struct fsh_rw {
  fsh base;
  ak_future *step; /* the read or write in flight */
  int fd;
  bool write;
  char *buf;
  size_t len;
  size_t done;    /* bytes transferred so far */
  int64_t offset; /* -1: the file position */
  ak_rw_opts opts;
} fsh_rw;

static void rw_cancel(fsh *base)
{
  ak__fsh_cancel_step(((fsh_rw *)base)->step);
}

static void rw_submit_rest(fsh_rw *h);

static void rw_step_done(ak_future *step, void *arg)
{
  (void)step;
  fsh_rw *h = arg;
  int64_t n = ak__fsh_step_result(&h->step);
  if (n < 0) {
    ak__fsh_finish(&h->base, n, NULL, NULL);
  } else if (n == 0) {
    /* EOF for a read; a write of nothing would loop forever: EIO. */
    ak__fsh_finish(&h->base, h->write ? -EIO : (int64_t)h->done, NULL, NULL);
  } else if ((h->done += (size_t)n) == h->len) {
    ak__fsh_finish(&h->base, (int64_t)h->done, NULL, NULL);
  } else if (ak__fsh_cancelled(&h->base)) {
    ak__fsh_finish(&h->base, -ECANCELED, NULL, NULL);
  } else {
    rw_submit_rest(h);
  }
}

static void rw_submit_rest(fsh_rw *h)
{
  int64_t off = h->offset < 0 ? -1 : h->offset + (int64_t)h->done;
  ak_loop *loop = h->base.loop;
  char *at = h->buf + h->done;
  size_t left = h->len - h->done;
  h->step = h->write ? ak_write_opt(loop, h->fd, at, left, off, &h->opts)
                     : ak_read_opt(loop, h->fd, at, left, off, &h->opts);
  if (!h->step) {
    ak__fsh_finish(&h->base, -ENOMEM, NULL, NULL);
    return;
  }
  ak__fsh_await(h->step, rw_step_done, h);
}

static ak_future *rw_helper(ak_loop *loop, bool write, int fd, void *buf, size_t len,
                            int64_t offset, const ak_rw_opts *opts)
{
  ak_future *out;
  fsh_rw *h = ak__fsh_new(loop, sizeof(*h), rw_cancel, &out);
  if (!h)
    return NULL;
  h->fd = fd;
  h->write = write;
  h->buf = buf;
  h->len = len;
  h->offset = offset < 0 ? -1 : offset;
  h->opts = opts ? *opts : (ak_rw_opts)AK_RW_OPTS_INIT;
  if (len == 0)
    ak__fsh_finish(&h->base, 0, NULL, NULL);
  else
    rw_submit_rest(h);
  return out;
}

ak_future *ak_read_exact(ak_loop *loop, int fd, void *buf, size_t len, int64_t offset,
                         const ak_rw_opts *opts)
{
  AK__REQUIRE_OWNER(loop, "ak_read_exact");
  return rw_helper(loop, false, fd, buf, len, offset, opts);
}

ak_future *ak_write_all(ak_loop *loop, int fd, const void *buf, size_t len, int64_t offset,
                        const ak_rw_opts *opts)
{
  AK__REQUIRE_OWNER(loop, "ak_write_all");
  return rw_helper(loop, true, fd, (void *)buf, len, offset, opts);
}

/* ---- 3. read a whole file --------------------------------------------------- */

enum rf_phase { RF_OPEN, RF_STAT, RF_READ, RF_CLOSE };

typedef struct fsh_file {
  fsh base;
  ak_future *step;
  enum rf_phase phase;
  int fd;
  int64_t err; /* the first error; the fd is closed before it shows */
  char *buf;
  size_t cap; /* bytes buf holds before its NUL */
  size_t done;
  size_t max;       /* 0: no limit */
  struct statx stx; /* written by the kernel during RF_STAT */
  char path[];      /* for a failure's detail */
} fsh_file;

static void rf_cancel(fsh *base)
{
  fsh_file *h = (fsh_file *)base;
  if (h->phase != RF_CLOSE) /* the close always runs: no fd is left open */
    ak__fsh_cancel_step(h->step);
}

static void rf_step_done(ak_future *step, void *arg);

static void rf_submit(fsh_file *h, ak_future *step)
{
  h->step = step;
  if (!step) {
    /* ENOMEM: nothing is in flight; close what is open right here. */
    if (h->phase != RF_OPEN)
      close(h->fd);
    ak__free(h->buf);
    ak__fsh_fail(&h->base, h->err < 0 ? h->err : -ENOMEM, h->path, NULL);
    return;
  }
  ak__fsh_await(step, rf_step_done, h);
}

static void rf_close(fsh_file *h, int64_t err)
{
  if (err < 0 && h->err == 0)
    h->err = err;
  h->phase = RF_CLOSE;
  rf_submit(h, ak_close(h->base.loop, h->fd));
}

/* Grows the buffer when a read filled it: the file was larger than statx
 * said (growing, or /proc-like files that report 0). */
static int rf_grow(fsh_file *h)
{
  if (h->max && h->cap >= h->max + 1)
    return -EFBIG;
  size_t cap = h->cap < 4096 ? 4096 : h->cap * 2;
  if (h->max && cap > h->max + 1)
    cap = h->max + 1;
  char *buf = ak__realloc(h->buf, cap + 1);
  if (!buf)
    return -ENOMEM;
  h->buf = buf;
  h->cap = cap;
  return 0;
}

static void rf_read_more(fsh_file *h)
{
  if (h->done == h->cap) {
    int rc = rf_grow(h);
    if (rc < 0) {
      rf_close(h, rc);
      return;
    }
  }
  rf_submit(h, ak_read(h->base.loop, h->fd, h->buf + h->done, h->cap - h->done, (int64_t)h->done));
}

static void rf_after_stat(fsh_file *h)
{
  uint64_t size = h->stx.stx_size;
  if (h->max && size > h->max) {
    rf_close(h, -EFBIG);
    return;
  }
  /* One byte more than the size: a full file reads short, then 0. */
  h->cap = (size_t)size + 1;
  h->buf = ak__malloc(h->cap + 1);
  if (!h->buf) {
    rf_close(h, -ENOMEM);
    return;
  }
  h->phase = RF_READ;
  rf_read_more(h);
}

static void rf_step_done(ak_future *step, void *arg)
{
  (void)step;
  fsh_file *h = arg;
  int64_t res = ak__fsh_step_result(&h->step);
  switch (h->phase) {
  case RF_OPEN:
    if (res < 0) {
      ak__fsh_fail(&h->base, res, h->path, NULL);
      return;
    }
    h->fd = (int)res;
    if (ak__fsh_cancelled(&h->base)) {
      rf_close(h, -ECANCELED);
      return;
    }
    h->phase = RF_STAT;
    rf_submit(h, ak_statx(h->base.loop, h->fd, "", AT_EMPTY_PATH, STATX_SIZE, &h->stx));
    return;
  case RF_STAT:
    if (res < 0 || ak__fsh_cancelled(&h->base))
      rf_close(h, res < 0 ? res : -ECANCELED);
    else
      rf_after_stat(h);
    return;
  case RF_READ:
    if (res <= 0) {
      rf_close(h, res); /* 0: the end of the file */
      return;
    }
    h->done += (size_t)res;
    if (ak__fsh_cancelled(&h->base))
      rf_close(h, -ECANCELED);
    else
      rf_read_more(h);
    return;
  case RF_CLOSE:
    if (res < 0 && h->err == 0)
      h->err = res;
    if (h->err < 0) {
      ak__free(h->buf);
      ak__fsh_fail(&h->base, h->err, h->path, NULL);
    } else {
      h->buf[h->done] = '\0';
      ak__fsh_finish(&h->base, (int64_t)h->done, h->buf, ak__free);
    }
    return;
  }
}

ak_future *ak_read_file(ak_loop *loop, int dirfd, const char *path, size_t max_size)
{
  AK__REQUIRE_OWNER(loop, "ak_read_file");
  if (!path)
    return ak__future_failed(loop, -EFAULT, "ak_read_file: path is NULL");
  ak_future *out;
  size_t n = strlen(path) + 1;
  fsh_file *h = ak__fsh_new(loop, sizeof(*h) + n, rf_cancel, &out);
  if (!h)
    return NULL;
  memcpy(h->path, path, n);
  h->fd = -1;
  h->max = max_size;
  h->phase = RF_OPEN;
  rf_submit(h, ak_openat(loop, dirfd, path, O_RDONLY, 0));
  return out;
}

/* O_DIRECT's alignment: the page size covers every logical block size in
 * use (512 and 4096). */
enum { DIRECT_ALIGN = 4096 };

/* ---- 4. copy an fd: the chunk pipeline ----------------------------------------
 * Each slot owns a buffer (or a pipe) and copies one chunk-sized range at a
 * time: read what the range still holds, write all of it at the same offset,
 * repeat until the range is done or the input ends, then take the next range.
 * At most `depth` slots have an op in flight. */

typedef struct fsh_copy fsh_copy;

typedef struct copy_slot {
  fsh_copy *c;
  ak_future *step;    /* the read or write in flight */
  char *buf;          /* buffer mode (aligned for O_DIRECT) */
  char *mem;          /* what was allocated for buf */
  int pipe_r, pipe_w; /* splice mode */
  int64_t pos;        /* first byte of the range not yet written */
  int64_t hi;         /* the range's end */
  size_t have;        /* bytes read from pos, to be written at pos */
  size_t put;         /* of the bytes to write, written */
  bool writing;
  bool at_end; /* a read found the end after these bytes */
} copy_slot;

struct fsh_copy {
  fsh base;
  int in_fd, out_fd;
  size_t chunk;
  size_t cap; /* bytes a slot moves per read (chunk, or the pipe's) */
  unsigned depth;
  bool splice;
  bool direct;       /* out_fd is O_DIRECT: whole aligned blocks only */
  int64_t next_off;  /* the next range to hand out */
  int64_t size_hint; /* fstat size at the start */
  int64_t reached;   /* the furthest byte a read reached */
  int64_t eof_at;    /* where a read found the end; INT64_MAX: not yet */
  int64_t err;       /* first error */
  const char *side;  /* where it came from: "source", "destination", NULL */
  unsigned active;   /* slots with an op in flight */
  uint64_t total;    /* bytes written */
  copy_slot slots[];
};

static void copy_cancel(fsh *base)
{
  fsh_copy *c = (fsh_copy *)base;
  for (unsigned i = 0; i < c->depth; i++)
    ak__fsh_cancel_step(c->slots[i].step);
}

static void copy_release(fsh_copy *c)
{
  for (unsigned i = 0; i < c->depth; i++) {
    copy_slot *s = &c->slots[i];
    ak__free(s->mem);
    if (s->pipe_r >= 0)
      close(s->pipe_r);
    if (s->pipe_w >= 0)
      close(s->pipe_w);
  }
}

static const char COPY_SOURCE[] = "source", COPY_DESTINATION[] = "destination";

static void copy_fail(fsh_copy *c, int64_t err, const char *side)
{
  if (c->err == 0) {
    c->err = err;
    c->side = side;
  }
}

static void copy_drop_active(fsh_copy *c)
{
  if (--c->active > 0)
    return;
  /* O_DIRECT wrote the last block whole, padded with zeros: cut it back.
   * A metadata change, done here (io_uring has no ftruncate before 6.9). */
  if (c->direct && c->err == 0 && c->total % DIRECT_ALIGN != 0 &&
      ftruncate(c->out_fd, (off_t)c->total) < 0)
    copy_fail(c, -errno, COPY_DESTINATION);
  copy_release(c);
  if (c->err < 0 && c->side) {
    /* "source fd 5": ak_copy_file turns it into the path on that side. */
    char fd[24];
    snprintf(fd, sizeof fd, "fd %d", c->side[0] == 's' ? c->in_fd : c->out_fd);
    ak__fsh_fail(&c->base, c->err, c->side, fd);
    return;
  }
  ak__fsh_finish(&c->base, c->err < 0 ? c->err : (int64_t)c->total, NULL, NULL);
}

static void copy_slot_idle(copy_slot *s)
{
  copy_drop_active(s->c);
}


/* Whether another range may be handed out: no error, no end seen, and the
 * range starts within what the file is known to hold (the range at the size
 * itself is the probe that finds the end). */
static bool copy_has_more(const fsh_copy *c)
{
  int64_t known = c->size_hint > c->reached ? c->size_hint : c->reached;
  return c->err == 0 && !ak__fsh_cancelled(&c->base) && c->next_off < c->eof_at && c->next_off <= known;
}

static void copy_step_done(ak_future *step, void *arg);

static void copy_await(copy_slot *s, ak_future *step)
{
  s->step = step;
  if (!step) {
    copy_fail(s->c, -ENOMEM, NULL);
    copy_slot_idle(s);
    return;
  }
  ak__fsh_await(step, copy_step_done, s);
}

static size_t round_up(size_t n, size_t a)
{
  return (n + a - 1) / a * a;
}

static void copy_read(copy_slot *s)
{
  fsh_copy *c = s->c;
  size_t want = (size_t)(s->hi - s->pos);
  if (want > c->cap)
    want = c->cap;
  s->writing = false;
  int64_t at = s->pos + (int64_t)s->have;
  if (c->splice)
    copy_await(s, ak_splice(c->base.loop, c->in_fd, at, s->pipe_w, -1, want - s->have, 0));
  else
    copy_await(s, ak_read(c->base.loop, c->in_fd, s->buf + s->have, want - s->have, at));
}

/* The bytes to write: what was read, padded to whole blocks for O_DIRECT. */
static size_t copy_write_len(const copy_slot *s)
{
  return s->c->direct ? round_up(s->have, DIRECT_ALIGN) : s->have;
}

static void copy_write(copy_slot *s)
{
  fsh_copy *c = s->c;
  size_t left = copy_write_len(s) - s->put;
  int64_t at = s->pos + (int64_t)s->put;
  s->writing = true;
  if (c->splice)
    copy_await(s, ak_splice(c->base.loop, s->pipe_r, -1, c->out_fd, at, left, 0));
  else
    copy_await(s, ak_write(c->base.loop, c->out_fd, s->buf + s->put, left, at));
}

static void copy_take(copy_slot *s)
{
  fsh_copy *c = s->c;
  if (!copy_has_more(c)) {
    copy_slot_idle(s);
    return;
  }
  s->pos = c->next_off;
  s->hi = s->pos + (int64_t)c->chunk;
  s->have = s->put = 0;
  s->at_end = false;
  c->next_off = s->hi;
  copy_read(s);
}

static void copy_start_write(copy_slot *s)
{
  if (s->have == 0) {
    copy_slot_idle(s); /* the end came first: nothing to write */
    return;
  }
  if (s->c->direct)
    memset(s->buf + s->have, 0, copy_write_len(s) - s->have);
  s->put = 0;
  copy_write(s);
}

static void copy_read_done(copy_slot *s, int64_t n)
{
  fsh_copy *c = s->c;
  if (n < 0) {
    copy_fail(c, n, COPY_SOURCE);
    copy_slot_idle(s);
    return;
  }
  if (n == 0) {
    int64_t end = s->pos + (int64_t)s->have;
    if (end < c->eof_at)
      c->eof_at = end;
    s->at_end = true;
    copy_start_write(s);
    return;
  }
  s->have += (size_t)n;
  int64_t end = s->pos + (int64_t)s->have;
  if (end > c->reached)
    c->reached = end;
  /* O_DIRECT writes whole blocks: a short read is completed (or the end
   * found) before the write; otherwise what came is written at once. */
  size_t want = (size_t)(s->hi - s->pos) < c->cap ? (size_t)(s->hi - s->pos) : c->cap;
  if (c->direct && s->have < want && !c->err && !ak__fsh_cancelled(&c->base))
    copy_read(s);
  else
    copy_start_write(s);
}

static void copy_write_done(copy_slot *s, int64_t n)
{
  fsh_copy *c = s->c;
  if (n <= 0) {
    copy_fail(c, n < 0 ? n : -EIO, COPY_DESTINATION); /* a write of nothing would loop */
    copy_slot_idle(s);
    return;
  }
  s->put += (size_t)n;
  if (s->put < copy_write_len(s)) {
    copy_write(s);
    return;
  }
  c->total += s->have;
  s->pos += (int64_t)s->have;
  s->have = s->put = 0;
  if (s->at_end || c->err != 0 || ak__fsh_cancelled(&c->base))
    copy_slot_idle(s);
  else if (s->pos < s->hi && s->pos < c->eof_at)
    copy_read(s); /* the range is not done: a short read */
  else
    copy_take(s);
}

static void copy_step_done(ak_future *step, void *arg)
{
  (void)step;
  copy_slot *s = arg;
  int64_t n = ak__fsh_step_result(&s->step);
  if (s->writing)
    copy_write_done(s, n);
  else
    copy_read_done(s, n);
}

/* Sets up each slot's buffer or pipe; returns 0 or -errno. */
static int copy_setup(fsh_copy *c)
{
  for (unsigned i = 0; i < c->depth; i++) {
    copy_slot *s = &c->slots[i];
    s->c = c;
    s->pipe_r = s->pipe_w = -1;
  }
  for (unsigned i = 0; i < c->depth; i++) {
    copy_slot *s = &c->slots[i];
    if (!c->splice) {
      /* Page-aligned (O_DIRECT needs block alignment) from the library's
       * allocator: one page more, and the buffer starts at the boundary. */
      s->mem = ak__malloc(c->chunk + DIRECT_ALIGN);
      if (!s->mem)
        return -ENOMEM;
      s->buf = (char *)(((uintptr_t)s->mem + DIRECT_ALIGN - 1) & ~(uintptr_t)(DIRECT_ALIGN - 1));
      continue;
    }
    int p[2];
    if (pipe2(p, O_CLOEXEC) < 0)
      return -errno;
    s->pipe_r = p[0];
    s->pipe_w = p[1];
    /* A pipe as large as a chunk moves a chunk per splice; where the limit
     * (/proc/sys/fs/pipe-max-size) refuses, reads shrink to the pipe. */
    int got = fcntl(s->pipe_w, F_SETPIPE_SZ, (int)c->chunk);
    if (got < 0)
      got = fcntl(s->pipe_w, F_GETPIPE_SZ);
    if (got > 0 && (size_t)got < c->cap)
      c->cap = (size_t)got;
  }
  return 0;
}

/* Whether splice can write into fd at offsets like write does: a regular
 * file opened without O_APPEND (offsets ignored) or O_DIRECT (splice
 * refuses it on some filesystems). */
static bool splices_well_into(int fd)
{
  struct stat st;
  int fl = fcntl(fd, F_GETFL);
  return fl >= 0 && !(fl & (O_APPEND | O_DIRECT)) && fstat(fd, &st) == 0 && S_ISREG(st.st_mode);
}

ak_future *ak_copy_fd(ak_loop *loop, int in_fd, int out_fd, const ak_copy_opts *opts)
{
  AK__REQUIRE_OWNER(loop, "ak_copy_fd");
  size_t chunk = opts && opts->chunk ? opts->chunk : (size_t)1 << 20;
  unsigned depth = opts && opts->depth ? opts->depth : 4;
  if (chunk > 0x40000000u)
    chunk = 0x40000000u;
  ak_future *out;
  fsh_copy *c = ak__fsh_new(loop, sizeof(*c) + depth * sizeof(copy_slot), copy_cancel, &out);
  if (!c)
    return NULL;
  c->in_fd = in_fd;
  c->out_fd = out_fd;
  c->chunk = c->cap = chunk;
  c->depth = depth;
  c->eof_at = INT64_MAX;
  struct stat st;
  bool in_regular = fstat(in_fd, &st) == 0 && S_ISREG(st.st_mode);
  /* A hint only (the file may change): which ranges to start at once. */
  c->size_hint = in_regular ? st.st_size : INT64_MAX;
  unsigned flags = opts ? opts->flags : 0;
  int out_fl = fcntl(out_fd, F_GETFL);
  c->direct = out_fl >= 0 && (out_fl & O_DIRECT);
  c->splice = !c->direct && ((flags & AK_COPY_SPLICE) || (!(flags & AK_COPY_BUFFERS) &&
                                                          in_regular && splices_well_into(out_fd)));
  if (c->direct)
    c->chunk = c->cap = round_up(chunk, DIRECT_ALIGN);
  int rc = copy_setup(c);
  if (rc < 0) {
    copy_release(c);
    ak__fsh_finish(&c->base, rc, NULL, NULL);
    return out;
  }
  /* One count more while starting: no slot may finish c under the loop. */
  c->active = depth + 1;
  for (unsigned i = 0; i < depth; i++)
    copy_take(&c->slots[i]);
  copy_drop_active(c);
  return out;
}

/* ---- 5. copy a file -------------------------------------------------------------- */

enum cf_phase {
  CF_OPEN_SRC,
  CF_STAT,
  CF_OPEN_TMP,
  CF_COPY,
  CF_SYNC,
  CF_CLOSE_TMP,
  CF_RENAME,
  /* cleanup after a failure, then the common end */
  CF_FAIL_CLOSE_TMP,
  CF_FAIL_UNLINK,
  CF_CLOSE_SRC,
};

typedef struct fsh_cpfile {
  fsh base;
  ak_future *step;
  enum cf_phase phase;
  int src_dirfd, dst_dirfd;
  int src_fd, tmp_fd;
  bool tmp_exists; /* the temporary name is on disk */
  bool direct;     /* opening the temporary file with O_DIRECT */
  unsigned tries;  /* temporary names tried */
  int64_t err;
  const char *err_side; /* COPY_SOURCE, COPY_DESTINATION or NULL */
  int64_t total;
  ak_copy_opts opts;
  struct statx stx;
  char *src; /* copies of the paths, in names[] */
  char *dst;
  char *tmp; /* dst's directory + "/." + base + ".akcp-XXXXXXXX" */
  char names[];
} fsh_cpfile;

static bool cf_in_cleanup(const fsh_cpfile *h)
{
  return h->phase >= CF_FAIL_CLOSE_TMP || h->phase == CF_CLOSE_TMP;
}

static void cf_cancel(fsh *base)
{
  fsh_cpfile *h = (fsh_cpfile *)base;
  if (!cf_in_cleanup(h))
    ak__fsh_cancel_step(h->step);
}

static void cf_step_done(ak_future *step, void *arg);

/* Settles with h->err, the detail naming the side and its path ("source
 * top.txt", "destination out/top.txt"): the same error text means
 * different things on either side. */
static void cf_end_failed(fsh_cpfile *h)
{
  const char *side = h->err_side;
  ak__fsh_fail(&h->base, h->err, side, side == COPY_SOURCE ? h->src : h->dst);
}

static void cf_go(fsh_cpfile *h, enum cf_phase phase, ak_future *step)
{
  h->phase = phase;
  h->step = step;
  if (!step) {
    /* ENOMEM: give back what is held synchronously; nothing is in flight. */
    if (h->tmp_fd >= 0)
      close(h->tmp_fd);
    if (h->tmp_exists)
      unlinkat(h->dst_dirfd, h->tmp, 0);
    if (h->src_fd >= 0)
      close(h->src_fd);
    if (h->err == 0)
      h->err = -ENOMEM;
    cf_end_failed(h);
    return;
  }
  ak__fsh_await(step, cf_step_done, h);
}

/* dst "a/b/c" -> "a/b/.c.akcp-XXXXXXXX" (a fresh suffix each try). */
static void cf_make_tmp_name(fsh_cpfile *h)
{
  static _Atomic unsigned counter;
  const char *slash = strrchr(h->dst, '/');
  int dirlen = slash ? (int)(slash - h->dst + 1) : 0;
  const char *base = slash ? slash + 1 : h->dst;
  unsigned salt = (unsigned)getpid() * 2654435761u ^ (unsigned)ak_now_ns() ^
                  atomic_fetch_add(&counter, 1) * 40503u;
  sprintf(h->tmp, "%.*s.%s.akcp-%08x", dirlen, h->dst, base, salt);
}

static void cf_fail(fsh_cpfile *h, int64_t err, const char *side)
{
  if (h->err == 0) {
    h->err = err;
    h->err_side = side;
  }
  ak_loop *loop = h->base.loop;
  if (h->tmp_fd >= 0) {
    int fd = h->tmp_fd;
    h->tmp_fd = -1;
    cf_go(h, CF_FAIL_CLOSE_TMP, ak_close(loop, fd));
  } else if (h->tmp_exists) {
    h->tmp_exists = false;
    cf_go(h, CF_FAIL_UNLINK, ak_unlinkat(loop, h->dst_dirfd, h->tmp, 0));
  } else if (h->src_fd >= 0) {
    int fd = h->src_fd;
    h->src_fd = -1;
    cf_go(h, CF_CLOSE_SRC, ak_close(loop, fd));
  } else {
    cf_end_failed(h);
  }
}

static void cf_open_tmp(fsh_cpfile *h)
{
  cf_make_tmp_name(h);
  h->tries++;
  int flags = O_WRONLY | O_CREAT | O_EXCL | (h->direct ? O_DIRECT : 0);
  cf_go(h, CF_OPEN_TMP,
        ak_openat(h->base.loop, h->dst_dirfd, h->tmp, flags, h->stx.stx_mode & 07777));
}

/* The forward path, one phase per finished step. */
static void cf_advance(fsh_cpfile *h, int64_t res)
{
  ak_loop *loop = h->base.loop;
  switch (h->phase) {
  case CF_OPEN_SRC:
    h->src_fd = (int)res;
    cf_go(h, CF_STAT, ak_statx(loop, h->src_fd, "", AT_EMPTY_PATH, STATX_MODE, &h->stx));
    return;
  case CF_STAT:
    if (S_ISDIR(h->stx.stx_mode)) {
      cf_fail(h, -EISDIR, COPY_SOURCE);
      return;
    }
    cf_open_tmp(h);
    return;
  case CF_OPEN_TMP:
    h->tmp_fd = (int)res;
    h->tmp_exists = true;
    cf_go(h, CF_COPY, ak_copy_fd(loop, h->src_fd, h->tmp_fd, &h->opts));
    return;
  case CF_COPY:
    h->total = res;
    if (h->opts.flags & AK_COPY_FSYNC) {
      cf_go(h, CF_SYNC, ak_fdatasync(loop, h->tmp_fd));
      return;
    }
    __attribute__((fallthrough)); /* nothing to sync */
  case CF_SYNC: {
    int fd = h->tmp_fd;
    h->tmp_fd = -1;
    cf_go(h, CF_CLOSE_TMP, ak_close(loop, fd));
    return;
  }
  case CF_CLOSE_TMP:
    cf_go(h, CF_RENAME,
          ak_renameat(loop, h->dst_dirfd, h->tmp, h->dst_dirfd, h->dst,
                      (h->opts.flags & AK_COPY_EXCL) ? RENAME_NOREPLACE : 0));
    return;
  case CF_RENAME: {
    h->tmp_exists = false;
    int fd = h->src_fd;
    h->src_fd = -1;
    cf_go(h, CF_CLOSE_SRC, ak_close(loop, fd));
    return;
  }
  default:
    assert(!"not a forward phase");
  }
}

/* Which side a failed step was on; the copy's own detail says for it. */
static const char *cf_side_of(const fsh_cpfile *h, ak_future *step)
{
  switch (h->phase) {
  case CF_OPEN_SRC:
  case CF_STAT:
    return COPY_SOURCE;
  case CF_COPY: {
    const char *d = ak_future_detail(step);
    if (!d)
      return NULL; /* ENOMEM: neither */
    return strncmp(d, COPY_SOURCE, sizeof COPY_SOURCE - 1) == 0 ? COPY_SOURCE : COPY_DESTINATION;
  }
  default:
    return COPY_DESTINATION;
  }
}

static void cf_step_done(ak_future *step, void *arg)
{
  fsh_cpfile *h = arg;
  /* step stays alive for this call (the callback borrows it). */
  int64_t res = ak__fsh_step_result(&h->step);
  switch (h->phase) {
  case CF_FAIL_CLOSE_TMP:
  case CF_FAIL_UNLINK:
    cf_fail(h, h->err, h->err_side); /* the next cleanup step */
    return;
  case CF_CLOSE_SRC:
    if (res < 0 && h->err == 0) {
      h->err = res;
      h->err_side = COPY_SOURCE;
    }
    if (h->err < 0)
      cf_end_failed(h);
    else
      ak__fsh_finish(&h->base, h->total, NULL, NULL);
    return;
  case CF_OPEN_TMP:
    if (res == -EEXIST && h->tries < 16) { /* a temporary name in use */
      cf_open_tmp(h);
      return;
    }
    if (res == -EINVAL && h->direct) {
      /* The filesystem refuses O_DIRECT (tmpfs). The refusal may come after
       * the name was made: remove it (rare; done here) and go without. */
      unlinkat(h->dst_dirfd, h->tmp, 0);
      h->direct = false;
      cf_open_tmp(h);
      return;
    }
    break;
  case CF_CLOSE_TMP:
    if (res < 0) {
      cf_fail(h, res, COPY_DESTINATION); /* the fd is gone either way; unlink the name */
      return;
    }
    break;
  default:
    break;
  }
  if (res < 0) {
    cf_fail(h, res, cf_side_of(h, step));
    return;
  }
  if (ak__fsh_cancelled(&h->base) && h->phase < CF_RENAME) {
    cf_fail(h, -ECANCELED, NULL);
    return;
  }
  cf_advance(h, res);
}

ak_future *ak_copy_file(ak_loop *loop, int src_dirfd, const char *src, int dst_dirfd,
                        const char *dst, const ak_copy_opts *opts)
{
  AK__REQUIRE_OWNER(loop, "ak_copy_file");
  if (!src || !dst)
    return ak__future_failed(loop, -EFAULT, "ak_copy_file: a path is NULL");
  size_t ns = strlen(src) + 1, nd = strlen(dst) + 1;
  size_t nt = nd + sizeof("/..akcp-XXXXXXXX");
  ak_future *out;
  fsh_cpfile *h = ak__fsh_new(loop, sizeof(*h) + ns + nd + nt, cf_cancel, &out);
  if (!h)
    return NULL;
  h->src = h->names;
  h->dst = h->src + ns;
  h->tmp = h->dst + nd;
  memcpy(h->src, src, ns);
  memcpy(h->dst, dst, nd);
  h->src_dirfd = src_dirfd;
  h->dst_dirfd = dst_dirfd;
  h->src_fd = h->tmp_fd = -1;
  if (opts)
    h->opts = *opts;
  h->direct = (h->opts.flags & AK_COPY_DIRECT) != 0;
  cf_go(h, CF_OPEN_SRC, ak_openat(loop, src_dirfd, src, O_RDONLY, 0));
  return out;
}
