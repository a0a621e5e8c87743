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
  ak__sq_stage st;       /* first: where the ops' SQEs go (staged in the SQ
                            or templates), the count and the add's limit */
  ak__bent *ents;        /* the ops, cap of them */
  ep_slot *slots;        /* the epoll path's futures, cap of them */
  ak_loop *loop;
  unsigned flags;        /* AK_BATCH_* */
  bool has_barrier;
  bool has_socket;       /* some op is a send or recv */
  bool free_when_done;   /* ak_batch_free came while a submission was pending */
  ak_future *last;       /* the submission since the last reset (a
                            reference), or NULL */

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
  b->st.tmpl = ak__calloc(capacity, sizeof(*b->st.tmpl));
  if (!b->ents || !b->slots || !b->st.tmpl) {
    ak__free(b->ents);
    ak__free(b->slots);
    ak__free(b->st.tmpl);
    ak__free(b);
    return -ENOMEM;
  }
  b->loop = loop;
  b->st.loop = loop;
  b->st.base = b->st.tmpl;
  b->st.mask = ~0u;
  b->st.cap = capacity;
  *out = b;
  return 0;
}

static void batch_destroy(ak_batch *b) {
  ak__sq_stage_end(&b->st, false); /* a submission parked and cancelled */
  ak__free(b->ents);
  ak__free(b->slots);
  ak__free(b->st.tmpl);
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
  ak__sq_stage_end(&b->st, false); /* added, never submitted: given up */
  b->st.n = 0;
  ak__sq_stage_begin(&b->st); /* here, not in the first add: one call less */
  b->has_barrier = false;
  b->has_socket = false;
  return 0;
}

unsigned ak_batch_count(const ak_batch *b) { return b->st.n; }

void ak_batch_set_flags(ak_batch *b, unsigned flags) { b->flags = flags; }

/* An add past the limit: a submission not reset yet, a full builder, a
 * new builder's first add (which stages; a reset stages at once) or one
 * past the SQ room the stage found (the staged SQEs go to the templates,
 * and the ops after them). 0 or the add's error. */
static __attribute__((noinline)) int add_slow(ak_batch *b) {
  if (b->last || b->outer)
    return -EBUSY;
  if (b->st.n >= b->st.cap)
    return -ENOSPC;
  if (b->st.limit == 0)
    ak__sq_stage_begin(&b->st);
  else
    ak__sq_stage_end(&b->st, true);
  return 0;
}

/* The next op's SQE to fill (in the SQ while staged, else its template),
 * its entry cleared (fd set), once the count is below the limit. */
static inline struct io_uring_sqe *next_sqe(ak_batch *b, int fd) {
  unsigned n = b->st.n;
  /* The entry in one go: full 0, no flags (ak__bent's layout). */
  b->ents[n] = (ak__bent){.full = 0, .fd = fd};
  /* The SQE needs no clearing: liburing's prep helpers write every field
   * of it (io_uring_prep_rw). */
  return &b->st.base[(b->st.pos0 + n) & b->st.mask];
}

/* Whether the add must take add_slow first. One compare in steady state:
 * every case but a plain add is past the limit. */
static inline bool add_is_slow(const ak_batch *b) { return AK__UNLIKELY(b->st.n >= b->st.limit); }

/* The start of an add that is not one of the hot ones below. */
#define ADD_OR_RETURN(e, sqe, b, fd)        \
  if (add_is_slow(b)) {                     \
    int err_ = add_slow(b);                 \
    if (err_ < 0)                           \
      return err_;                          \
  }                                         \
  struct io_uring_sqe *sqe = next_sqe((b), (fd)); \
  ak__bent *e = &(b)->ents[(b)->st.n]

static int added(ak_batch *b) { return (int)b->st.n++; }

/* The hot adds (nop, read, write) take add_slow in a twin of their own
 * that is then called again: their common path makes no call, so it needs
 * no stack frame (a few instructions per op of a 32-op batch). */
static int add_nop(ak_batch *b);
static __attribute__((noinline)) int add_nop_slow(ak_batch *b) {
  int err = add_slow(b);
  return err < 0 ? err : add_nop(b);
}

static inline int add_nop(ak_batch *b) {
  if (add_is_slow(b))
    return add_nop_slow(b);
  io_uring_prep_nop(next_sqe(b, -1));
  return added(b);
}

int ak_batch_nop(ak_batch *b) { return add_nop(b); }

static int add_rw(ak_batch *b, int fd, const void *buf, size_t len, int64_t offset,
                  const ak_rw_opts *opts, bool write);
static __attribute__((noinline)) int add_rw_slow(ak_batch *b, int fd, const void *buf, size_t len,
                                                 int64_t offset, const ak_rw_opts *opts,
                                                 bool write) {
  int err = add_slow(b);
  return err < 0 ? err : add_rw(b, fd, buf, len, offset, opts, write);
}

static inline int add_rw(ak_batch *b, int fd, const void *buf, size_t len, int64_t offset,
                         const ak_rw_opts *opts, bool write) {
  if (len > UINT32_MAX)
    return -EINVAL;
  if (add_is_slow(b))
    return add_rw_slow(b, fd, buf, len, offset, opts, write);
  struct io_uring_sqe *sqe = next_sqe(b, fd);
  int sfd = opts && opts->file_index >= 0 ? opts->file_index : fd;
  bool fixed_buf = opts && opts->buf_index >= 0;
  if (write) {
    if (fixed_buf)
      io_uring_prep_write_fixed(sqe, sfd, buf, (unsigned)len, (uint64_t)offset, opts->buf_index);
    else
      io_uring_prep_write(sqe, sfd, buf, (unsigned)len, (uint64_t)offset);
  } else {
    if (fixed_buf)
      io_uring_prep_read_fixed(sqe, sfd, (void *)buf, (unsigned)len, (uint64_t)offset,
                               opts->buf_index);
    else
      io_uring_prep_read(sqe, sfd, (void *)buf, (unsigned)len, (uint64_t)offset);
  }
  if (opts) {
    sqe->rw_flags = opts->rw_flags;
    if (opts->file_index >= 0)
      sqe->flags |= IOSQE_FIXED_FILE;
  }
  b->ents[b->st.n].full = (int64_t)len;
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
  ADD_OR_RETURN(e, sqe, b, fd);
  int64_t total = 0;
  for (unsigned i = 0; i < iovcnt; i++)
    total += (int64_t)iov[i].iov_len;
  if (write)
    io_uring_prep_writev(sqe, fd, iov, iovcnt, (uint64_t)offset);
  else
    io_uring_prep_readv(sqe, fd, iov, iovcnt, (uint64_t)offset);
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
  ADD_OR_RETURN(e, sqe, b, fd);
  (void)e;
  io_uring_prep_fsync(sqe, fd, datasync ? IORING_FSYNC_DATASYNC : 0);
  return added(b);
}

int ak_batch_send(ak_batch *b, int fd, const void *buf, size_t len, int flags) {
  if (len > UINT32_MAX)
    return -EINVAL;
  ADD_OR_RETURN(e, sqe, b, fd);
  io_uring_prep_send(sqe, fd, buf, len, flags | MSG_NOSIGNAL);
  e->full = (int64_t)len;
  e->socket = 1;
  b->has_socket = true;
  return added(b);
}

int ak_batch_recv(ak_batch *b, int fd, void *buf, size_t len, int flags) {
  if (len > UINT32_MAX)
    return -EINVAL;
  ADD_OR_RETURN(e, sqe, b, fd);
  io_uring_prep_recv(sqe, fd, buf, len, flags);
  e->full = (int64_t)len;
  e->socket = 1;
  b->has_socket = true;
  return added(b);
}

int ak_batch_openat(ak_batch *b, int dirfd, const char *path, int flags, unsigned mode) {
  ADD_OR_RETURN(e, sqe, b, dirfd);
  io_uring_prep_openat(sqe, dirfd, path, flags | O_CLOEXEC, mode);
  e->full = -1;
  e->creates = 1;
  return added(b);
}

int ak_batch_close(ak_batch *b, int fd) {
  ADD_OR_RETURN(e, sqe, b, fd);
  (void)e;
  io_uring_prep_close(sqe, fd);
  return added(b);
}

int ak_batch_statx(ak_batch *b, int dirfd, const char *path, int flags, unsigned mask,
                   struct statx *out) {
  ADD_OR_RETURN(e, sqe, b, dirfd);
  (void)e;
  io_uring_prep_statx(sqe, dirfd, path, flags, mask, out);
  return added(b);
}

int ak_batch_hard(ak_batch *b) {
  if (b->st.n == 0)
    return -EINVAL;
  b->ents[b->st.n - 1].hard = 1;
  return 0;
}

int ak_batch_barrier(ak_batch *b) {
  if (b->st.n == 0)
    return -EINVAL;
  b->ents[b->st.n - 1].barrier = 1; /* what comes after waits for it */
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
    value = b->st.n;
    for (unsigned i = 0; i < b->st.n; i++)
      if (ak__bent_failed(&b->ents[i], res[i])) {
        value = i;
        break;
      }
    if (b->timed_out && value < b->st.n && res[value] == -ECANCELED)
      res[value] = -ETIMEDOUT; /* the op the deadline cut */
  } else {
    for (unsigned i = 0; i < b->st.n; i++) {
      if (b->timed_out && res[i] == -ECANCELED)
        res[i] = -ETIMEDOUT;
      value += res[i] >= 0;
    }
  }
  for (unsigned i = 0; i < b->st.n; i++)
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
  for (unsigned i = from; i < b->st.n; i++)
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
  const struct io_uring_sqe *s = &b->st.tmpl[i];
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
    } else if (i + 1 < b->st.n && !b->stop) {
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
  if (b->stop || b->seg >= b->st.n) {
    run_end(b);
    return;
  }
  unsigned end = b->st.n;
  if (!b->chain)
    for (unsigned j = b->seg + 1; j < b->st.n; j++)
      if (b->ents[j - 1].barrier) {
        end = j;
        break;
      }
  b->seg_end = end;
  if (!ak__loop_is_epoll(b->loop)) {
    unsigned mode = (b->chain ? AK__BATCH_CHAIN : 0) |
                    ((b->flags & AK_BATCH_NO_SKIP_SUCCESS) ? AK__BATCH_NO_SKIP : 0) |
                    (b->has_socket ? AK__BATCH_SOCKETS : 0);
    ak_future *f =
        ak__batch_ring_submit(b->loop, b->ents + b->seg, b->st.tmpl + b->seg, NULL, end - b->seg,
                              b->results + b->seg, mode);
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
  for (unsigned i = b->seg; i < b->st.n; i++)
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

/* The fast path: one op record, one future, core's ring path, in place
 * when the SQEs are staged (barriers too, as the kernel's drains, when the
 * loop asks for that). */
static ak_future *submit_to_ring(ak_batch *b, int64_t *results, unsigned mode) {
  ak_future *f =
      ak__batch_ring_submit(b->loop, b->ents, b->st.tmpl, &b->st, b->st.n, results, mode);
  /* A future that failed at once (-E2BIG) took nothing. */
  if (f && ak__state_of(atomic_load_explicit(&f->state, memory_order_relaxed)) != AK_FAILED) {
    b->last = ak_future_ref(f);
    b->st.limit = 0; /* adds: -EBUSY until a reset */
  }
  return f;
}

static ak_future *submit(ak_batch *b, int64_t *results, bool chain, int64_t deadline_ns) {
  ak_loop *loop = b->loop;
  AK__REQUIRE_OWNER(loop, "ak_batch_submit: not the loop's thread");
  if (b->outer || b->last) /* its ops went with it (their SQEs too) */
    return ak__future_failed(loop, -EBUSY, "ak_batch_submit: submitted already; reset first");
  if (b->st.n == 0)
    return ak__future_failed(loop, -EINVAL, "ak_batch_submit: no ops");
  unsigned mode = (chain ? AK__BATCH_CHAIN : 0) |
                  ((b->flags & AK_BATCH_NO_SKIP_SUCCESS) ? AK__BATCH_NO_SKIP : 0) |
                  (b->has_socket ? AK__BATCH_SOCKETS : 0);
  if (b->st.base != b->st.tmpl && deadline_ns < 0 && !b->has_barrier)
    return submit_to_ring(b, results, mode); /* staged: a ring loop, sizes checked there */
  bool epoll = ak__loop_is_epoll(loop);
  if (b->st.n > ak__batch_ring_max(loop))
    return ak__future_failed(loop, -E2BIG, "ak_batch_submit: more ops than the ring holds");
  bool drain = !epoll && ak__loop_drains_barriers(loop);
  if (!epoll && deadline_ns < 0 && (chain || !b->has_barrier || drain))
    return submit_to_ring(b, results, mode | (drain && !chain ? AK__BATCH_DRAIN : 0));
  ak__sq_stage_end(&b->st, true); /* segments, or epoll: from the templates */
  b->st.limit = 0;
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
  for (unsigned i = 0; i < b->st.n; i++) {
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
