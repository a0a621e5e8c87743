/* batch_ring.c: a batch or chain of ring operations as one op record and one
 * future: its SQEs written into the SQ together (never split by a submission
 * boundary), linked with IOSQE_IO_LINK / HARDLINK for a chain, one CQE per
 * chain with IOSQE_CQE_SKIP_SUCCESS where the kernel rules allow it, each
 * CQE's result written into the caller's array, and cancellation of every
 * SQE still in flight.
 *
 * It lives in core because it is the loop's hot path: it writes the SQ, keeps
 * the CQ admission count and is reached from the loop's CQE dispatch by its
 * own tag (AK__TAG_MULTI, the op's index in the user_data's top 16 bits), so
 * a batch of N costs one op record and one future, not N.
 *
 * Not here: the builder, barriers, deadlines and the epoll path
 * (src/batch/batch.c); the rules themselves (docs/batch.md).
 */
#define _GNU_SOURCE
#include <assert.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/loop_internal.h"

typedef ak__batch_data batch_data;
#define CANCEL_BIT AK__BATCH_CANCEL_BIT
_Static_assert(sizeof(batch_data) <= AK__OP_DATA_SIZE, "batch params fit");

bool ak__loop_drains_barriers(const ak_loop *loop) {
  return loop->ep == NULL && (loop->opts.flags & AK_LOOP_DRAIN_BARRIERS);
}

unsigned ak__batch_ring_max(const ak_loop *loop) {
  /* The epoll backend has no SQ but the same admission bound: the same
   * sizes are refused on both. */
  unsigned max = loop->ep ? loop->opts.sq_entries : loop->ring.sq.ring_entries;
  if (loop->cq_capacity < max)
    max = loop->cq_capacity;
  return max < 65535 ? max : 65535;
}

/* Whether a link's success in full has a result known in advance, so its
 * CQE may be skipped: every read, write, fsync, nop, close, statx (0) and,
 * with MSG_WAITALL, send and recv. Not openat (the fd is the answer). */
static bool skippable(const ak__bent *e) { return e->full >= 0 && !e->creates; }

/* One CQE per chain (docs/batch.md): every link but the last gets
 * CQE_SKIP_SUCCESS. A link that fails (or is cancelled) then posts its CQE
 * and the kernel skips the CQEs of the links it cancels (it sets
 * REQ_F_SKIP_LINK_CQES), so the chain still posts exactly one. Not with a
 * hard link: a hard link's failure does not end the chain, which would post
 * more than one. */
static bool chain_can_skip(const ak_loop *loop, const batch_data *bd) {
  if (!(bd->mode & AK__BATCH_CHAIN) || (bd->mode & AK__BATCH_NO_SKIP) || bd->n < 2)
    return false;
  /* A ring that drains never skips: once an SQE with CQE_SKIP_SUCCESS has
   * been submitted, the kernel fails every IOSQE_IO_DRAIN on the ring. */
  if (loop->opts.flags & AK_LOOP_DRAIN_BARRIERS)
    return false;
  for (unsigned i = 0; i + 1 < bd->n; i++)
    if (bd->ents[i].hard || !skippable(&bd->ents[i]))
      return false;
  return true;
}

/* ---- Settling ---------------------------------------------------------------- */

/* What a chain's one CQE (at index k, result res) says about the others:
 * the links before k succeeded in full, the ones after were cancelled. */
static __attribute__((noinline)) void fill_from_skip_cqe(const batch_data *bd, unsigned k, int res) {
  for (unsigned i = 0; i < k; i++)
    bd->results[i] = bd->ents[i].full;
  bd->results[k] = res;
  for (unsigned i = k + 1; i < bd->n; i++)
    bd->results[i] = -ECANCELED;
}

static void batch_finish_slow(ak__op *op);

static void batch_finish(ak__op *op) {
  batch_data *bd = AK__OP_DATA(op, batch_data);
  uint32_t word = atomic_load_explicit(&op->fut->state, memory_order_acquire);
  if (AK__LIKELY(!(bd->mode & AK__BATCH_CHAIN) && !(word & AK__F_CANCEL_REQ))) {
    /* A batch nobody cancelled: every result came; count the successes
     * only when one failed. */
    int64_t value = bd->n;
    if (bd->res_or < 0)
      for (unsigned i = 0; i < bd->n; i++)
        value -= bd->results[i] < 0;
    op->flags &= (uint16_t)~AK__OPF_SUBMITTED;
    ak__op_finish(op, value);
    return;
  }
  batch_finish_slow(op);
}

static void batch_finish_slow(ak__op *op) {
  batch_data *bd = AK__OP_DATA(op, batch_data);
  bool cancel_req = ak_future_cancel_requested(op->fut);
  bool any_cancelled = false;
  int64_t value = 0;
  bool chain = (bd->mode & AK__BATCH_CHAIN) != 0;
  bool failed = false;
  for (unsigned i = 0; i < bd->n; i++) {
    int64_t r = bd->results[i];
    if (cancel_req && bd->ents[i].creates && r >= 0) {
      close((int)r); /* nobody will take the fd, as for a single openat */
      r = bd->results[i] = -ECANCELED;
    }
    if (r == -ECANCELED)
      any_cancelled = true;
    if (chain) {
      if (!failed && ak__bent_failed(&bd->ents[i], r)) {
        failed = true;
        value = i;
      }
    } else if (r >= 0) {
      value++;
    }
  }
  if (chain && !failed)
    value = bd->n;
  op->flags &= (uint16_t)~AK__OPF_SUBMITTED;
  ak__op_finish(op, cancel_req && any_cancelled ? -ECANCELED : value);
}

/* op.c's complete hook: reached only through op_done, for a batch parked
 * for CQ room and cancelled there (nothing reached the kernel). */
static void batch_complete_parked(ak__op *op, int res, unsigned flags) {
  (void)res;
  (void)flags;
  batch_data *bd = AK__OP_DATA(op, batch_data);
  for (unsigned i = 0; i < bd->n; i++)
    bd->results[i] = -ECANCELED;
  batch_finish_slow(op);
}

/* Whether the results array says which ops are still to come
 * (AK__BATCH_PENDING): a chain's links and a drained op may not be issued
 * yet when a cancel comes, and the kernel cannot find those (-ENOENT), so
 * their cancel is sent again while they are pending. A plain batch's ops
 * are all issued at the submit: -ENOENT says the op is done, and every op
 * is sent a cancel without a look (no mark written per op). */
static bool tracks_pending(const batch_data *bd) {
  return (bd->mode & (AK__BATCH_CHAIN | AK__BATCH_DRAIN)) != 0;
}

static void send_cancel_for(ak__op *op, unsigned i);

/* A reply to one of our cancel requests (out of line: rare). */
static __attribute__((noinline)) void batch_cancel_reply(ak__op *op, unsigned i, int res) {
  ak_loop *loop = op->loop;
  batch_data *bd = AK__OP_DATA(op, batch_data);
  loop->reserved_inflight--;
  bd->cancels_out--;
  /* -ENOENT: not found. Either its CQE is on its way, or it is a link not
   * issued yet (the one before it was still running, or had just
   * completed): the kernel cannot find those, so ask again until it is
   * running or done. */
  if (res == -ENOENT && op->owed > 0 && tracks_pending(bd) &&
      (bd->skip || bd->results[i] == AK__BATCH_PENDING))
    send_cancel_for(op, i);
  else if (op->owed == 0 && bd->cancels_out == 0)
    batch_finish(op);
}

/* The last CQE came: statistics, then the settle (out of line, once per
 * batch, so that the per-CQE path keeps no registers). */
static __attribute__((noinline)) void batch_all_came(ak__op *op) {
  ak_loop *loop = op->loop;
  loop->stats.completed[AK_OP_BATCH]++;
  if (loop->latency_stats) {
    int64_t ns = ak__loop_now(loop) - op->submit_ns;
    unsigned bucket = ns > 0 ? 63u - (unsigned)__builtin_clzll((unsigned long long)ns) : 0;
    loop->stats.latency[bucket < AK_STATS_LATENCY_BUCKETS ? bucket : AK_STATS_LATENCY_BUCKETS - 1]++;
  }
  batch_finish(op);
}

void ak__batch_ring_cqe(uint64_t data, int res) {
  ak__op *op = (ak__op *)(uintptr_t)(data & AK__TAG_PTR_MASK & ~CANCEL_BIT);
  unsigned i = (unsigned)(data >> AK__TAG_INDEX_SHIFT);
  if (AK__UNLIKELY(data & CANCEL_BIT)) {
    batch_cancel_reply(op, i, res);
    return;
  }
  batch_data *bd = AK__OP_DATA(op, batch_data);
  if (AK__UNLIKELY(bd->skip)) {
    op->loop->in_flight--;
    fill_from_skip_cqe(bd, i, res);
    op->owed--;
  } else {
    bd->results[i] = res;
    ak__batch_cqes_recorded(op->loop, op, bd, 1, res);
  }
  if (op->owed > 0 || bd->cancels_out > 0)
    return;
  batch_all_came(op);
}

/* ---- Submission ---------------------------------------------------------------- */

/* Room for n SQEs, so that all of them go to the kernel in one
 * io_uring_enter (and a chain is never cut by a submission boundary). On an
 * SQPOLL ring the kernel thread frees the space asynchronously. */
static void sq_make_room(ak_loop *loop, unsigned n) {
  while (io_uring_sq_space_left(&loop->ring) < n) {
    ak__loop_flush(loop);
    if (io_uring_sq_space_left(&loop->ring) < n)
      io_uring_sqring_wait(&loop->ring); /* SQPOLL only; returns at once otherwise */
  }
}

/* A drain waits for everything in flight on the ring, and the loop's own
 * eventfd read (its wakeup) is in flight until another thread writes the
 * eventfd: a drained op would wait for the next post. So the loop completes
 * its read itself (one eventfd write) before the first drain goes in, and
 * the ring is in the kernel's drain mode from then on: the read is re-armed
 * only once the loop's ops have all completed (loop.c, leave_drain_mode),
 * so until then a post from another thread is seen when an op completes,
 * not at once (docs/batch.md). */
static void enter_drain_mode(ak_loop *loop, const ak__bent *ents, unsigned n) {
  for (unsigned i = 0; i + 1 < n; i++)
    if (ents[i].barrier) {
      loop->drain_mode = true;
      if (loop->wakeup_armed) {
        uint64_t one = 1;
        ssize_t w = write(loop->eventfd, &one, sizeof(one));
        (void)w; /* EAGAIN only near 2^64: the read completes all the same */
      }
      return;
    }
}

/* The flags a plain batch's SQEs do not need: a chain's links (and
 * CQE_SKIP_SUCCESS, MSG_WAITALL for its socket ops), barriers as drains,
 * a registered socket's slot. */
static void link_and_fix(ak_loop *loop, const batch_data *bd, unsigned tail) {
  struct io_uring_sq *sq = &loop->ring.sq;
  unsigned n = bd->n;
  bool chain = (bd->mode & AK__BATCH_CHAIN) != 0;
  for (unsigned i = 0; i < n; i++) {
    const ak__bent *e = &bd->ents[i];
    struct io_uring_sqe *sqe = &sq->sqes[(tail + i) & sq->ring_mask];
    if (chain) {
      if (i + 1 < n) {
        sqe->flags |= e->hard ? IOSQE_IO_HARDLINK : IOSQE_IO_LINK;
        if (bd->skip)
          sqe->flags |= IOSQE_CQE_SKIP_SUCCESS;
      }
      if (e->socket) /* a short send/recv breaks a link only with WAITALL */
        sqe->msg_flags |= MSG_WAITALL;
    }
    else if (i > 0 && e[-1].barrier && (bd->mode & AK__BATCH_DRAIN))
      sqe->flags |= IOSQE_IO_DRAIN; /* after everything before it on the ring */
    if (e->socket && !(sqe->flags & IOSQE_FIXED_FILE) && ak__socket_is_registered(loop, sqe->fd))
      sqe->flags |= IOSQE_FIXED_FILE; /* slot == fd (register_sockets.c) */
  }
}

void ak__batch_ring_start(ak__op *op) {
  ak_loop *loop = op->loop;
  batch_data *bd = AK__OP_DATA(op, batch_data);
  unsigned n = bd->n;
  uint64_t tag = (uint64_t)(uintptr_t)op | AK__TAG_MULTI;
  /* The ring has 64-byte SQEs (no IORING_SETUP_SQE128). */
  struct io_uring_sq *sq = &loop->ring.sq;
  struct io_uring_sqe *sqes = sq->sqes;
  unsigned mask = sq->ring_mask;
  unsigned tail = sq->sqe_tail;
  if (bd->stage != NULL && loop->stage == bd->stage) {
    /* The builder wrote them in place, from the tail on (nothing took an
     * SQE since: that would have evicted them). */
    assert(bd->stage->pos0 == tail && bd->stage->n == n);
    ak__sq_stage_end(bd->stage, false);
    if (AK__UNLIKELY(bd->mode & AK__BATCH_DRAIN))
      enter_drain_mode(loop, bd->ents, n);
    /* Tagged in (at most) two runs of slots, up to the SQ's end and from
     * its start: a store and an add per SQE. */
    unsigned first = tail & mask, run = mask + 1 - first;
    if (run > n)
      run = n;
    for (struct io_uring_sqe *p = &sqes[first], *end = p + run; p != end; p++) {
      p->user_data = tag;
      tag += UINT64_C(1) << AK__TAG_INDEX_SHIFT;
    }
    for (struct io_uring_sqe *p = sqes, *end = p + (n - run); p != end; p++) {
      p->user_data = tag;
      tag += UINT64_C(1) << AK__TAG_INDEX_SHIFT;
    }
  } else {
    if (loop->stage) /* another builder's: the slots are ours now */
      ak__sq_stage_end(loop->stage, true);
    sq_make_room(loop, n);
    if (AK__UNLIKELY(bd->mode & AK__BATCH_DRAIN))
      enter_drain_mode(loop, bd->ents, n);
    /* Room for all n was made above: index the SQ directly rather than
     * ask io_uring_get_sqe (a load of the kernel's head) n times. */
    tail = sq->sqe_tail;
    for (unsigned i = 0; i < n; i++) {
      struct io_uring_sqe *sqe = &sqes[(tail + i) & mask];
      memcpy(sqe, &bd->tmpl[i], sizeof(*sqe));
      io_uring_sqe_set_data64(sqe, tag | ((uint64_t)i << AK__TAG_INDEX_SHIFT));
    }
  }
  if (bd->mode & (AK__BATCH_CHAIN | AK__BATCH_DRAIN | AK__BATCH_SOCKETS))
    link_and_fix(loop, bd, tail);
  sq->sqe_tail = tail + n;
  loop->sq_unsubmitted += n;
  loop->last_sqe_op = NULL; /* nothing may link a deadline to our last SQE */
  op->owed = bd->skip ? 1 : (uint16_t)n;
  op->flags = (uint16_t)((op->flags & ~AK__OPF_QUEUED) | AK__OPF_SUBMITTED);
  op->submit_ns = ak__loop_latency_now(loop);
  loop->in_flight += op->slots;
  loop->stats.submitted[AK_OP_BATCH]++;
  ak__loop_submit_early(loop, false); /* SQPOLL: publish the tail once, whole */
}

/* ---- Staging: a builder's SQEs written straight into the SQ ------------------ */

void ak__sq_stage_begin(ak__sq_stage *st) {
  ak_loop *loop = st->loop;
  st->limit = st->cap;
  if (loop->ep != NULL)
    return; /* no SQ: templates */
  if (loop->stage) /* one builder stages at a time: the last to start */
    ak__sq_stage_end(loop->stage, true);
  /* The kernel's head only moves on: the room found now stays. */
  unsigned room = io_uring_sq_space_left(&loop->ring);
  if (room == 0)
    return;
  struct io_uring_sq *sq = &loop->ring.sq;
  st->base = sq->sqes;
  st->pos0 = sq->sqe_tail;
  st->mask = sq->ring_mask;
  st->limit = room < st->cap ? room : st->cap;
  loop->stage = st;
}

void ak__sq_stage_end(ak__sq_stage *st, bool keep) {
  if (st->base == st->tmpl)
    return;
  if (keep)
    for (unsigned i = 0; i < st->n; i++)
      memcpy(&st->tmpl[i], &st->base[(st->pos0 + i) & st->mask], sizeof(*st->tmpl));
  st->loop->stage = NULL;
  st->base = st->tmpl;
  st->pos0 = 0;
  st->mask = ~0u;
  if (st->limit > 0)
    st->limit = st->cap;
}

/* ak__loop_get_sqe's: the slot it takes may hold a staged SQE. */
__attribute__((noinline)) void ak__sq_stage_evict(ak_loop *loop) {
  ak__sq_stage_end(loop->stage, true);
}

static void send_cancel_for(ak__op *op, unsigned i) {
  ak_loop *loop = op->loop;
  batch_data *bd = AK__OP_DATA(op, batch_data);
  uint64_t target = (uint64_t)(uintptr_t)op | AK__TAG_MULTI | ((uint64_t)i << AK__TAG_INDEX_SHIFT);
  struct io_uring_sqe *sqe = ak__loop_get_sqe(loop);
  io_uring_prep_cancel64(sqe, target, 0);
  io_uring_sqe_set_data64(sqe, target | CANCEL_BIT);
  /* As op.c's cancel requests: outside admission, NODROP keeps the CQE. */
  loop->reserved_inflight++;
  loop->stats.submitted[AK_OP_CANCEL]++;
  bd->cancels_out++;
}

void ak__batch_ring_cancel(ak__op *op) {
  batch_data *bd = AK__OP_DATA(op, batch_data);
  /* Every SQE whose CQE has not come (with skipped CQEs, any of them may be
   * the running one); cancelling the running link ends the chain. */
  for (unsigned i = 0; i < bd->n; i++)
    if (!tracks_pending(bd) || bd->skip || bd->results[i] == AK__BATCH_PENDING)
      send_cancel_for(op, i);
}

ak_future *ak__batch_ring_submit(ak_loop *loop, const ak__bent *ents,
                                 const struct io_uring_sqe *tmpl, ak__sq_stage *stage,
                                 unsigned n, int64_t *results, unsigned mode) {
  if (n == 0 || n > ak__batch_ring_max(loop))
    return ak__future_failed(loop, n == 0 ? -EINVAL : -E2BIG, "batch size");
  ak__op *op = ak__op_new(loop, AK_OP_BATCH);
  if (!op)
    return NULL;
  batch_data *bd = AK__OP_DATA(op, batch_data);
  bd->ents = ents;
  bd->tmpl = tmpl;
  bd->stage = stage;
  bd->results = results;
  bd->n = n;
  bd->mode = mode;
  bd->skip = chain_can_skip(loop, bd);
  bd->cancels_out = 0;
  bd->res_or = 0;
  if (tracks_pending(bd))
    for (unsigned i = 0; i < n; i++)
      results[i] = AK__BATCH_PENDING;
  op->flags |= AK__OPF_MULTI;
  op->slots = bd->skip ? 1 : (uint16_t)n;
  op->complete = batch_complete_parked;
  return ak__op_submit(op);
}
