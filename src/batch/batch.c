/* batch/batch.c: the batch builder (include/asynckit/batch.h): ops kept as
 * SQE templates, submitted as a batch or a chain; barriers (a batch in
 * segments, each started when the one before has completed), a chain's
 * deadline (a loop timer that cancels it) and the epoll backend's path (each
 * template decoded into the public op it stands for: a batch as
 * independent ops, a chain one op after another).
 *
 * A plain batch or chain on io_uring goes straight to core's ring path
 * (core/batch_ring.c): one op record, one future. Only barriers, deadlines
 * and epoll take "a run" here, whose state lives in the builder (one run per
 * builder at a time), so nothing is allocated per op.
 *
 * Not here: SQ/CQ handling (core/batch_ring.c); the rules (docs/batch.md).
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>

#include "asynckit/batch.h"
#include "asynckit/net.h"
#include "core/internal.h"

/* An op in flight on the epoll path. */
typedef struct ep_slot {
  ak_batch *b;
  unsigned index;
  ak_future *f;
} ep_slot;

struct ak_batch {
  ak_loop *loop;
  ak__bent *ents;        /* the ops, cap of them */
  ep_slot *slots;        /* the epoll path's futures, cap of them */
  unsigned n;            /* ops added */
  unsigned cap;
  unsigned flags;        /* AK_BATCH_* */
  bool has_barrier;
  bool barrier_next;     /* the next op added starts a segment */
  bool free_when_done;   /* ak_batch_free came while a submission was pending */
  ak_future *last;       /* the newest submission (a reference), or NULL */

  /* The run (barriers, deadline, epoll). */
  ak_future *outer;      /* the caller's future (the run holds a reference) */
  ak_future *inner;      /* the ring segment in flight, or NULL */
  int64_t *results;
  unsigned seg;          /* first op of the segment in flight */
  unsigned seg_end;
  unsigned ep_pending;   /* epoll: ops of the segment still in flight */
  bool chain;
  bool stop;             /* cancelled or timed out: start nothing more */
  bool timed_out;
  ak_timer *timer;       /* the chain's deadline, or NULL */
};

/* ---- The builder ----------------------------------------------------------- */

int ak_batch_new(ak_loop *loop, unsigned capacity, ak_batch **out) {
  *out = NULL;
  if (capacity == 0 || capacity > 65535)
    return -EINVAL;
  ak_batch *b = ak__calloc(1, sizeof(*b));
  if (!b)
    return -ENOMEM;
  b->ents = ak__calloc(capacity, sizeof(*b->ents));
  b->slots = ak__calloc(capacity, sizeof(*b->slots));
  if (!b->ents || !b->slots) {
    ak__free(b->ents);
    ak__free(b->slots);
    ak__free(b);
    return -ENOMEM;
  }
  b->loop = loop;
  b->cap = capacity;
  *out = b;
  return 0;
}

static void batch_destroy(ak_batch *b) {
  ak__free(b->ents);
  ak__free(b->slots);
  ak__free(b);
}

static bool is_pending(const ak_batch *b) { return b->last && !ak_future_is_set(b->last); }

static void free_when_settled(ak_future *f, void *arg) {
  (void)f;
  ak_batch *b = arg;
  if (b->outer) /* a run: it frees the builder when it ends */
    return;
  ak_future_release(b->last);
  batch_destroy(b);
}

void ak_batch_free(ak_batch *b) {
  if (!b)
    return;
  if (b->outer || is_pending(b)) {
    b->free_when_done = true;
    if (!b->outer && ak_future_on_settle(b->last, free_when_settled, b) == 0)
      return;
    if (b->outer)
      return;
    /* ENOMEM for the callback node: leak the builder rather than free what
     * the kernel may still read. Defensive; believed never to happen. */
    return;
  }
  ak_future_release(b->last);
  batch_destroy(b);
}

int ak_batch_reset(ak_batch *b) {
  if (b->outer || is_pending(b))
    return -EBUSY;
  ak_future_release(b->last);
  b->last = NULL;
  b->n = 0;
  b->has_barrier = false;
  b->barrier_next = false;
  return 0;
}

unsigned ak_batch_count(const ak_batch *b) { return b->n; }

void ak_batch_set_flags(ak_batch *b, unsigned flags) { b->flags = flags; }

/* The next free entry, cleared, or NULL with *err set. */
static ak__bent *add(ak_batch *b, int fd, int *err) {
  /* After ak_batch_reset last is NULL: one compare per op in steady state. */
  if (AK__UNLIKELY(b->last != NULL) && (b->outer || is_pending(b))) {
    *err = -EBUSY;
    return NULL;
  }
  if (b->n >= b->cap) {
    *err = -ENOSPC;
    return NULL;
  }
  ak__bent *e = &b->ents[b->n];
  /* The SQE template needs no clearing: liburing's prep helpers write every
   * field of it (io_uring_prep_rw). */
  e->full = 0;
  e->fd = fd;
  e->hard = 0;
  e->creates = 0;
  e->barrier = b->barrier_next;
  e->socket = 0;
  b->barrier_next = false;
  return e;
}

#define ADD_OR_RETURN(e, b, fd)   \
  int err_;                       \
  ak__bent *e = add((b), (fd), &err_); \
  if (!e)                         \
    return err_

static int added(ak_batch *b) { return (int)b->n++; }

int ak_batch_nop(ak_batch *b) {
  ADD_OR_RETURN(e, b, -1);
  io_uring_prep_nop(&e->sqe);
  return added(b);
}

static int add_rw(ak_batch *b, int fd, const void *buf, size_t len, int64_t offset,
                  const ak_rw_opts *opts, bool write) {
  if (len > UINT32_MAX)
    return -EINVAL;
  ADD_OR_RETURN(e, b, fd);
  int sfd = opts && opts->file_index >= 0 ? opts->file_index : fd;
  bool fixed_buf = opts && opts->buf_index >= 0;
  if (write) {
    if (fixed_buf)
      io_uring_prep_write_fixed(&e->sqe, sfd, buf, (unsigned)len, (uint64_t)offset, opts->buf_index);
    else
      io_uring_prep_write(&e->sqe, sfd, buf, (unsigned)len, (uint64_t)offset);
  } else {
    if (fixed_buf)
      io_uring_prep_read_fixed(&e->sqe, sfd, (void *)buf, (unsigned)len, (uint64_t)offset,
                               opts->buf_index);
    else
      io_uring_prep_read(&e->sqe, sfd, (void *)buf, (unsigned)len, (uint64_t)offset);
  }
  if (opts) {
    e->sqe.rw_flags = opts->rw_flags;
    if (opts->file_index >= 0)
      e->sqe.flags |= IOSQE_FIXED_FILE;
  }
  e->full = (int64_t)len;
  return added(b);
}

int ak_batch_read(ak_batch *b, int fd, void *buf, size_t len, int64_t offset,
                  const ak_rw_opts *opts) {
  return add_rw(b, fd, buf, len, offset, opts, false);
}

int ak_batch_write(ak_batch *b, int fd, const void *buf, size_t len, int64_t offset,
                   const ak_rw_opts *opts) {
  return add_rw(b, fd, buf, len, offset, opts, true);
}

static int add_rwv(ak_batch *b, int fd, const struct iovec *iov, unsigned iovcnt, int64_t offset,
                   bool write) {
  ADD_OR_RETURN(e, b, fd);
  int64_t total = 0;
  for (unsigned i = 0; i < iovcnt; i++)
    total += (int64_t)iov[i].iov_len;
  if (write)
    io_uring_prep_writev(&e->sqe, fd, iov, iovcnt, (uint64_t)offset);
  else
    io_uring_prep_readv(&e->sqe, fd, iov, iovcnt, (uint64_t)offset);
  e->full = total;
  return added(b);
}

int ak_batch_readv(ak_batch *b, int fd, const struct iovec *iov, unsigned iovcnt, int64_t offset) {
  return add_rwv(b, fd, iov, iovcnt, offset, false);
}

int ak_batch_writev(ak_batch *b, int fd, const struct iovec *iov, unsigned iovcnt,
                    int64_t offset) {
  return add_rwv(b, fd, iov, iovcnt, offset, true);
}

int ak_batch_fsync(ak_batch *b, int fd, int datasync) {
  ADD_OR_RETURN(e, b, fd);
  io_uring_prep_fsync(&e->sqe, fd, datasync ? IORING_FSYNC_DATASYNC : 0);
  return added(b);
}

int ak_batch_send(ak_batch *b, int fd, const void *buf, size_t len, int flags) {
  if (len > UINT32_MAX)
    return -EINVAL;
  ADD_OR_RETURN(e, b, fd);
  io_uring_prep_send(&e->sqe, fd, buf, len, flags | MSG_NOSIGNAL);
  e->full = (int64_t)len;
  e->socket = 1;
  return added(b);
}

int ak_batch_recv(ak_batch *b, int fd, void *buf, size_t len, int flags) {
  if (len > UINT32_MAX)
    return -EINVAL;
  ADD_OR_RETURN(e, b, fd);
  io_uring_prep_recv(&e->sqe, fd, buf, len, flags);
  e->full = (int64_t)len;
  e->socket = 1;
  return added(b);
}

int ak_batch_openat(ak_batch *b, int dirfd, const char *path, int flags, unsigned mode) {
  ADD_OR_RETURN(e, b, dirfd);
  io_uring_prep_openat(&e->sqe, dirfd, path, flags | O_CLOEXEC, mode);
  e->full = -1;
  e->creates = 1;
  return added(b);
}

int ak_batch_close(ak_batch *b, int fd) {
  ADD_OR_RETURN(e, b, fd);
  io_uring_prep_close(&e->sqe, fd);
  return added(b);
}

int ak_batch_statx(ak_batch *b, int dirfd, const char *path, int flags, unsigned mask,
                   struct statx *out) {
  ADD_OR_RETURN(e, b, dirfd);
  io_uring_prep_statx(&e->sqe, dirfd, path, flags, mask, out);
  return added(b);
}

int ak_batch_hard(ak_batch *b) {
  if (b->n == 0)
    return -EINVAL;
  b->ents[b->n - 1].hard = 1;
  return 0;
}

int ak_batch_barrier(ak_batch *b) {
  if (b->n == 0)
    return -EINVAL;
  b->barrier_next = true;
  b->has_barrier = true;
  return 0;
}

/* ---- The run: barriers, deadline, epoll ------------------------------------ */

static void next_segment(ak_batch *b);

static bool run_is_chain_failed_at(const ak_batch *b, unsigned i) {
  return ak__bent_failed(&b->ents[i], b->results[i]) && !b->ents[i].hard;
}

static void run_end(ak_batch *b) {
  int64_t *res = b->results;
  if (b->timer) {
    ak_timer_cancel(b->loop, b->timer);
    b->timer = NULL;
  }
  int64_t value = 0;
  bool any_cancelled = false;
  if (b->chain) {
    value = b->n;
    for (unsigned i = 0; i < b->n; i++)
      if (ak__bent_failed(&b->ents[i], res[i])) {
        value = i;
        break;
      }
    if (b->timed_out && value < b->n && res[value] == -ECANCELED)
      res[value] = -ETIMEDOUT; /* the op the deadline cut */
  } else {
    for (unsigned i = 0; i < b->n; i++) {
      if (b->timed_out && res[i] == -ECANCELED)
        res[i] = -ETIMEDOUT;
      value += res[i] >= 0;
    }
  }
  for (unsigned i = 0; i < b->n; i++)
    any_cancelled |= res[i] == -ECANCELED;
  ak_future *outer = b->outer;
  b->outer = NULL;
  outer->data = NULL;
  bool user_cancel = ak_future_cancel_requested(outer) && !b->timed_out;
  ak__future_finish(outer, user_cancel && any_cancelled ? -ECANCELED : value);
  ak_future_release(outer); /* the run's reference */
  if (b->free_when_done) {
    ak_future_release(b->last);
    batch_destroy(b);
  }
}

/* Everything from `from` on will not run. */
static void cancel_rest(ak_batch *b, unsigned from) {
  for (unsigned i = from; i < b->n; i++)
    b->results[i] = -ECANCELED;
}

static void ring_segment_done(ak_future *f, void *arg) {
  ak_batch *b = arg;
  if (ak_future_state(f) == AK_FAILED && b->results[b->seg] == AK__BATCH_PENDING) {
    /* Refused whole (ENOMEM): nothing of it ran. */
    for (unsigned i = b->seg; i < b->seg_end; i++)
      b->results[i] = ak_future_result(f);
  }
  ak_future_release(b->inner);
  b->inner = NULL;
  b->seg = b->seg_end;
  next_segment(b);
}

/* ---- The epoll path: each template as the public op it stands for ---- */

static ak_future *start_one(ak_batch *b, unsigned i) {
  const ak__bent *e = &b->ents[i];
  const struct io_uring_sqe *s = &e->sqe;
  ak_loop *loop = b->loop;
  void *addr = (void *)(uintptr_t)s->addr;
  int64_t off = (int64_t)s->off;
  switch (s->opcode) {
  case IORING_OP_NOP:
    return ak_nop(loop);
  case IORING_OP_READ:
  case IORING_OP_READ_FIXED: {
    ak_rw_opts o = AK_RW_OPTS_INIT;
    o.rw_flags = (int)s->rw_flags;
    return ak_read_opt(loop, e->fd, addr, s->len, off, &o);
  }
  case IORING_OP_WRITE:
  case IORING_OP_WRITE_FIXED: {
    ak_rw_opts o = AK_RW_OPTS_INIT;
    o.rw_flags = (int)s->rw_flags;
    return ak_write_opt(loop, e->fd, addr, s->len, off, &o);
  }
  case IORING_OP_READV:
    return ak_readv(loop, e->fd, addr, s->len, off, NULL);
  case IORING_OP_WRITEV:
    return ak_writev(loop, e->fd, addr, s->len, off, NULL);
  case IORING_OP_FSYNC:
    return (s->fsync_flags & IORING_FSYNC_DATASYNC) ? ak_fdatasync(loop, e->fd)
                                                    : ak_fsync(loop, e->fd);
  case IORING_OP_SEND:
    /* In a chain the ring's MSG_WAITALL sends it all; so does send_all. */
    if (b->chain)
      return ak_send_all(loop, e->fd, addr, s->len, (int)(s->msg_flags & ~MSG_NOSIGNAL));
    return ak_send(loop, e->fd, addr, s->len, (int)s->msg_flags);
  case IORING_OP_RECV:
    return ak_recv(loop, e->fd, addr, s->len, (int)s->msg_flags | (b->chain ? MSG_WAITALL : 0));
  case IORING_OP_OPENAT:
    return ak_openat(loop, e->fd, addr, (int)s->open_flags, s->len);
  case IORING_OP_CLOSE:
    return ak_close(loop, e->fd);
  case IORING_OP_STATX:
    return ak_statx(loop, e->fd, addr, (int)s->statx_flags, s->len,
                    (struct statx *)(uintptr_t)s->addr2);
  default:
    return NULL; /* not a template this file makes */
  }
}

static void ep_start(ak_batch *b, unsigned i);

static void ep_one_done(ak_future *f, void *arg) {
  ep_slot *slot = arg;
  ak_batch *b = slot->b;
  unsigned i = slot->index;
  b->results[i] = ak_future_result(f);
  ak_future_release(f);
  slot->f = NULL;
  if (b->chain) {
    if (run_is_chain_failed_at(b, i)) {
      cancel_rest(b, i + 1);
      run_end(b);
    } else if (i + 1 < b->n && !b->stop) {
      ep_start(b, i + 1);
    } else {
      cancel_rest(b, i + 1);
      run_end(b);
    }
    return;
  }
  if (--b->ep_pending == 0) {
    b->seg = b->seg_end;
    next_segment(b);
  }
}

/* Starts op i; false if it failed at once (its result is then set). */
static bool ep_start_one(ak_batch *b, unsigned i) {
  ak_future *f = start_one(b, i);
  ep_slot *slot = &b->slots[i];
  slot->b = b;
  slot->index = i;
  if (!f) {
    b->results[i] = -ENOMEM;
    return false;
  }
  slot->f = f;
  if (ak_future_on_settle(f, ep_one_done, slot) < 0) {
    ak_future_cancel(f);
    ak_future_release(f);
    slot->f = NULL;
    b->results[i] = -ENOMEM;
    return false;
  }
  return true;
}

static void ep_start(ak_batch *b, unsigned i) {
  if (!ep_start_one(b, i)) { /* a chain: a failure at once breaks it */
    cancel_rest(b, i + 1);
    run_end(b);
  }
}

static void next_segment(ak_batch *b) {
  if (b->stop)
    cancel_rest(b, b->seg);
  if (b->stop || b->seg >= b->n) {
    run_end(b);
    return;
  }
  unsigned end = b->n;
  if (!b->chain)
    for (unsigned j = b->seg + 1; j < b->n; j++)
      if (b->ents[j].barrier) {
        end = j;
        break;
      }
  b->seg_end = end;
  if (!ak__loop_is_epoll(b->loop)) {
    unsigned mode = (b->chain ? AK__BATCH_CHAIN : 0) |
                    ((b->flags & AK_BATCH_NO_SKIP_SUCCESS) ? AK__BATCH_NO_SKIP : 0);
    ak_future *f =
        ak__batch_ring_submit(b->loop, b->ents + b->seg, end - b->seg, b->results + b->seg, mode);
    if (!f) {
      for (unsigned i = b->seg; i < end; i++)
        b->results[i] = -ENOMEM;
      b->seg = end;
      next_segment(b);
      return;
    }
    b->inner = f;
    if (ak_future_on_settle(f, ring_segment_done, b) < 0) {
      /* Defensive: no node for the callback. Wait for it here. */
      ak_future_wait(f, AK_FOREVER);
      ring_segment_done(f, b);
    }
    return;
  }
  if (b->chain) {
    ep_start(b, b->seg);
    return;
  }
  b->ep_pending = 0;
  for (unsigned i = b->seg; i < end; i++)
    if (ep_start_one(b, i))
      b->ep_pending++;
  if (b->ep_pending == 0) {
    b->seg = end;
    next_segment(b);
  }
}

/* Stops the run: cancels what is in flight, starts nothing more. */
static void run_stop(ak_batch *b) {
  b->stop = true;
  if (b->inner) {
    ak_future_cancel(b->inner);
    return;
  }
  for (unsigned i = b->seg; i < b->n; i++)
    if (b->slots[i].f)
      ak_future_cancel(b->slots[i].f);
}

static void run_cancel_on_loop(void *arg) {
  ak_future *outer = arg;
  if (!ak_future_is_set(outer)) { /* else the builder may be gone */
    ak_batch *b = outer->data;
    if (b && b->outer == outer)
      run_stop(b);
  }
  ak_future_release(outer);
}

static void run_cancel(ak_future *outer) {
  ak_future_ref(outer);
  if (ak__loop_owned_by_caller(outer->loop)) {
    run_cancel_on_loop(outer);
    return;
  }
  if (ak_loop_post(outer->loop, run_cancel_on_loop, outer) < 0)
    ak_future_release(outer); /* ENOMEM: the request is lost */
}

static const ak__future_kind run_kind = {.name = "batch", .cancel = run_cancel, .free_data = NULL};

static void run_deadline(void *arg) {
  ak_batch *b = arg;
  b->timer = NULL;
  if (!b->outer)
    return;
  b->timed_out = true;
  run_stop(b);
}

static ak_future *submit(ak_batch *b, int64_t *results, bool chain, int64_t deadline_ns) {
  ak_loop *loop = b->loop;
  AK__REQUIRE_OWNER(loop, "ak_batch_submit: not the loop's thread");
  if (b->outer || is_pending(b))
    return ak__future_failed(loop, -EBUSY, "ak_batch_submit: a submission is in flight");
  if (b->n == 0)
    return ak__future_failed(loop, -EINVAL, "ak_batch_submit: no ops");
  bool epoll = ak__loop_is_epoll(loop);
  if (b->n > ak__batch_ring_max(loop))
    return ak__future_failed(loop, -E2BIG, "ak_batch_submit: more ops than the ring holds");
  ak_future_release(b->last);
  b->last = NULL;
  bool drain = !epoll && ak__loop_drains_barriers(loop);
  if (!epoll && deadline_ns < 0 && (chain || !b->has_barrier || drain)) {
    /* The fast path: one op record, one future, core's ring path (barriers
     * too, as the kernel's drains, when the loop asks for that). */
    unsigned mode = (chain ? AK__BATCH_CHAIN : 0) |
                    ((b->flags & AK_BATCH_NO_SKIP_SUCCESS) ? AK__BATCH_NO_SKIP : 0) |
                    (drain && !chain ? AK__BATCH_DRAIN : 0);
    ak_future *f = ak__batch_ring_submit(loop, b->ents, b->n, results, mode);
    if (f)
      b->last = ak_future_ref(f);
    return f;
  }
  ak_future *outer = ak__future_new(loop, &run_kind, b);
  if (!outer)
    return NULL;
  b->outer = ak_future_ref(outer); /* the run's reference */
  b->last = ak_future_ref(outer);
  b->results = results;
  b->chain = chain;
  b->stop = false;
  b->timed_out = false;
  b->seg = 0;
  b->inner = NULL;
  for (unsigned i = 0; i < b->n; i++) {
    results[i] = AK__BATCH_PENDING;
    b->slots[i].f = NULL;
  }
  if (deadline_ns >= 0) {
    b->timer = ak_call_later(loop, deadline_ns, run_deadline, b);
    if (!b->timer) {
      b->outer = NULL;
      ak_future_release(outer);
      ak_future_fail(outer, -ENOMEM, "ak_chain_submit: deadline timer");
      return outer;
    }
  }
  next_segment(b);
  return outer;
}

ak_future *ak_batch_submit(ak_batch *b, int64_t *results) {
  return submit(b, results, false, -1);
}

ak_future *ak_chain_submit(ak_batch *b, int64_t *results, int64_t deadline_ns) {
  return submit(b, results, true, deadline_ns);
}
