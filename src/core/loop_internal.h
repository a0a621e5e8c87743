/* core/loop_internal.h: the layout of struct ak_loop, private to core:
 * shared by the files that make up the loop (loop.c, loop_lane.c, op.c,
 * timer.c, register_*.c) and by future.c and pool.c for their inline fast
 * paths, and by fs.c's reads and writes for the lean submission
 * (ak__loop_submits_lean, ak__loop_sq_take, ak__op_lean_account: the
 * QD1 read writes its SQE from its arguments). Other files outside core/
 * use the calls in core/internal.h instead. */
#ifndef AK_LOOP_INTERNAL_H
#define AK_LOOP_INTERNAL_H

#include <pthread.h>

#include "core/internal.h"

typedef struct ak__lane ak__lane;
typedef struct ak__epoll ak__epoll;

struct ak_loop {
  ak__loop_head head;             /* first: the owner, read inline by every
                                     layer (core/internal.h) */
  struct io_uring ring;           /* unused (zero) on the epoll backend */
  /* The backend seam: NULL on io_uring. The few places where the backends
   * differ (starting an op, submit-and-wait, reap, cancel, set-up and
   * free) test it once, predicted for io_uring (docs/architecture.md). */
  ak__epoll *ep;
  ak_loop *prev_current;          /* the thread's live loops, in creation */
  ak_loop *next_current;          /*   order (loop.c: the current loop) */
  ak_loop *live_next;             /* every live loop (loop.c's registry) */
  ak_loop_options opts;
  ak_features features;
  int64_t now;                    /* CLOCK_MONOTONIC, read lazily: see ak__loop_now */
  bool now_fresh;                 /* now was read in this phase of the iteration */
  /* The four flags the QD1 wait tests first, one word (direct_gate) so
   * that it tests them with one compare (loop.c's direct_gate_open). */
  union {
    struct {
      bool direct_wait;           /* a waiter may enter the ring directly (loop.c's
                                     wait_direct): io_uring, no SQPOLL, no valgrind */
      bool wakeup_armed;          /* the eventfd read is in the ring */
      bool closing;               /* ak_loop_free is draining */
      bool batch_waits;           /* features.batch_wait, as it is now */
    };
    uint32_t direct_gate;
  };
  bool latency_stats;             /* AK_LOOP_LATENCY_STATS: ops read the clock */
  /* The flags a direct read or write (fs.c) tests first, one word
   * (submit_gate) so that it tests them with one compare
   * (ak__loop_rw_direct_open). */
  union {
    struct {
      bool lean_submit;           /* ops may take op.c's lean submission
                                     (ak__loop_submits_lean): io_uring, no
                                     forced pool, valgrind or latency
                                     histogram */
      bool drain_mode;            /* a drain went in and the ring has not been
                                     idle at a submit since (batch_ring.c) */
      bool rw_opcodes;            /* the probe has READ, READ_FIXED, WRITE and
                                     WRITE_FIXED */
      bool submit_zero;           /* never set */
    };
    uint32_t submit_gate;
  };
  unsigned enter_flags;           /* IORING_ENTER_REGISTERED_RING when the ring
                                     fd is registered (ring.enter_ring_fd) */

  /* Admission: CQEs the kernel may still post must fit the CQ. */
  unsigned cq_capacity;           /* CQ entries usable by ops */
  unsigned in_flight;             /* CQ slots reserved by ops in the ring */
  unsigned reserved_inflight;     /* cancel requests, wait timeouts (tagged IGNORE) */
  unsigned ops_active;            /* ops from submit to free, any path */
  ak__op *queued_head;            /* ops waiting for CQ room, FIFO */
  ak__op *queued_tail;
  unsigned queued_count;
  unsigned sq_unsubmitted;        /* SQEs written since the last submit */
  ak__sq_stage *stage;            /* a builder's SQEs staged past the SQ's
                                     tail, or NULL (ak__sq_stage) */
  ak__op *last_sqe_op;            /* op owning the newest unsubmitted SQE */
  unsigned char opcode_state[AK_OP_KIND_COUNT]; /* 0 unknown, 1 works, 2 pool */

  /* Callbacks and cross-thread hand-over. */
  ak__qnode *ready_head;          /* owner thread only */
  ak__qnode **ready_tailp;        /* &ready_head when empty, else the last
                                     node's next (so a push tests nothing) */
  /* Written by other threads: a cache line of their own, so that workers
   * pushing completions do not fight the loop's writes to its own fields. */
  _Alignas(64) _Atomic(ak__qnode *) inbox; /* any thread pushes; LIFO, reversed on drain */
  _Atomic int wake_pending;       /* an eventfd write is on its way */
  _Atomic int sleeping;           /* the loop blocks (or is about to) in the ring */
  _Atomic unsigned remote_enqueuers; /* threads inside ak__loop_enqueue_remote */
  char inbox_pad[64 - sizeof(void *) - 3 * sizeof(int)];
  int eventfd;
  uint64_t eventfd_buf;           /* the kernel writes the wakeup read here */
  bool wakeup_cancel_sent;
  bool drain_probed;              /* the probe NOP of leave_drain_mode came */
  uint64_t drain_probe_tail;      /* the SQ tail just after that probe; its
                                     address is the probe's user_data */
  struct __kernel_timespec wait_ts; /* the wait's timeout on non-EXT_ARG kernels */

  _Atomic bool stop;
  _Atomic int holds;              /* ak_loop_hold */
  int alive_other;                /* pool tasks bound to the loop */
  unsigned dispatch_depth;        /* > 0 while callbacks run (run_ready) */
  unsigned ready_budget;          /* nodes the running batch may still run;
                                     left at 1 by each batch (run_ready) */
  ak__qnode *pool_pend_head;      /* pool tasks submitted by callbacks, not */
  ak__qnode *pool_pend_tail;      /*   yet handed to the pool: they go in */
  unsigned pool_pend_n;           /*   one batch per dispatch (pool.c) */
  ak_pool *pool_pend_pool;

  ak__timer_heap timers;
  ak_loop_stats stats;

  /* The ring's file table (register_sockets.c, register_files.c): either the
   * caller's files (ak_register_files) or registered sockets, slot == fd. */
  bool files_by_user;
  unsigned sock_table;            /* slots; 0: no socket table yet */
  unsigned char *sock_registered; /* per fd below sock_table: 1 if registered */

  /* The ring's buffer table (register_buffers.c, register_files.c): either
   * the caller's buffers (ak_register_buffers) or registered receive
   * buffers, a slot each. */
  bool buffers_by_user;
  unsigned buf_table;             /* slots; 0: no table of registered buffers yet */
  unsigned char *buf_registered;  /* per slot: 1 if taken */

  /* Lanes from pool workers (loop_lane.c). */
  uint64_t id;                    /* unique per loop ever made */
  ak__lane *lanes;                /* list, prepended under lanes_mu (atomic) */
  pthread_mutex_t lanes_mu;
};

/* The ready queue: owner thread only. Inline because every settle of a loop
 * future on its own thread comes through here. */
static inline void ak__ready_push(ak_loop *loop, ak__qnode *node) {
  node->next = NULL;
  *loop->ready_tailp = node;
  loop->ready_tailp = &node->next;
}

/* The ready queue's last node (the queue must not be empty): next is its
 * node's first field, so the tail's link is the node. */
static inline ak__qnode *ak__ready_last(const ak_loop *loop) {
  _Static_assert(offsetof(ak__qnode, next) == 0, "ready_tailp points at a node's first field");
  return (ak__qnode *)(void *)loop->ready_tailp;
}

/* The loop's clock for timers and the latency histogram (when asked for:
 * ak__loop_latency_now): read at most once
 * per phase of an iteration (before its wait, after it), and only by a phase
 * that needs it (a timer to run, an op submitted or completed), so an
 * iteration with only ready work reads no clock at all. Owner thread. */
static inline int64_t ak__loop_now(ak_loop *loop) {
  if (!loop->now_fresh) {
    loop->now = ak_now_ns();
    loop->now_fresh = true;
  }
  return loop->now;
}

/* The clock for an op's latency: only with AK_LOOP_LATENCY_STATS (a clock
 * read is 50 ns on a VM's kvm-clock), else 0 and nothing read. */
static inline int64_t ak__loop_latency_now(ak_loop *loop) {
  return AK__UNLIKELY(loop->latency_stats) ? ak__loop_now(loop) : 0;
}

/* Any thread: the inbox (or a pool worker's lane), then a wakeup. Returns
 * 0 (a settle ends in a jump to it). */
int ak__loop_enqueue_remote(ak_loop *loop, ak__qnode *node);

/* For a future that may outlive its loop (held past ak_loop_free), slow
 * paths only: whether loop is a live loop of the calling thread, and an
 * enqueue from another thread that does nothing and returns -ENOENT once
 * loop's free has begun. Neither reads loop unless it is live. */
bool ak__loop_is_callers_live(const ak_loop *loop);
int ak__loop_enqueue_if_live(ak_loop *loop, ak__qnode *node);

/* ---- Lanes (loop_lane.c) ---- */

/* Gives the loop its id and an empty list of lanes. */
void ak__lanes_init(ak_loop *loop);
/* Marks the calling thread as a pool worker: its hand-overs use lanes. */
void ak__lane_thread_enable(void);
/* A pool worker's hand-over of node (then a wakeup); false: use the inbox. */
bool ak__lane_push(ak_loop *loop, ak__qnode *node);
/* Owner thread: moves every lane's nodes to the ready queue. */
void ak__lanes_drain(ak_loop *loop);
/* Owner thread: whether a lane holds nodes (sequentially consistent loads,
 * for the check before sleeping). */
bool ak__lanes_pending(const ak_loop *loop);
/* Owner thread, at free: waits out pushers, frees every lane. */
void ak__lanes_free(ak_loop *loop);

static inline void ak__loop_enqueue_inline(ak_loop *loop, ak__qnode *node) {
  if (AK__LIKELY(loop->head.owner == ak__thread_token()))
    ak__ready_push(loop, node);
  else
    ak__loop_enqueue_remote(loop, node);
}

/* ---- Registered sockets (register_sockets.c) ---- */

static inline bool ak__socket_is_registered(const ak_loop *loop, int fd) {
  return (unsigned)fd < loop->sock_table && loop->sock_registered[fd];
}
void ak__sockets_free(ak_loop *loop);
void ak__buffers_free(ak_loop *loop); /* register_buffers.c */

/* ---- The epoll backend (backend_epoll.c) ----
 * Ops keep their records, admission, statistics and futures (op.c); the
 * backend replaces the ring: ak__ep_start where op.c would write an SQE,
 * ak__ep_wait and ak__ep_reap where loop.c enters the ring and reaps CQEs.
 * Completions are collected during the wait and dispatched by the reap, as
 * CQEs are, so no user code runs inside a submit or a cancel. */

/* Creates the epoll set with the loop's eventfd in it. 0 or -errno. */
int ak__ep_init(ak_loop *loop);
/* Closes the epoll set and frees the backend (everything has settled). */
void ak__ep_free(ak_loop *loop);
/* Starts op (admitted, not on the pool): completes it at once, waits for
 * readiness, arms its timer or hands it to the pool. */
void ak__ep_start(ak__op *op);
/* Re-arms fds, then waits in epoll_wait (if block and nothing completed)
 * until wait_until (AK_FOREVER: no limit), collecting completions. */
int ak__ep_wait(ak_loop *loop, bool block, int64_t wait_until);
/* Dispatches the completions collected so far (as reap does CQEs). */
void ak__ep_reap(ak_loop *loop);
/* Cancels a started op that waits (readiness or timer): it completes
 * -ECANCELED at the next reap. No-op for one already complete. */
void ak__ep_cancel(ak__op *op);
/* Cancels every waiting op (ak_loop_free, before timers are dropped). */
void ak__ep_cancel_all(ak_loop *loop);
/* ak__op_set_deadline on epoll: a loop timer that cancels the op, which
 * then settles -ETIMEDOUT. 0 or -EBUSY (finished, or on the pool). */
int ak__ep_set_deadline(ak__op *op, int64_t timeout_ns);
/* The pool returned op, which went there with its deadline timer
 * (AK__OPF_POOL_DEADLINE): the timer goes. */
void ak__ep_pool_returned(ak__op *op);
/* Hands op to the pool (op.c's pool path). */
void ak__op_run_on_pool(ak__op *op);

void ak__loop_flush(ak_loop *loop);

/* The next SQE, flushing a full SQ to the kernel first (never the user's
 * error). Inline: every op on the ring takes one. */
void ak__sq_stage_evict(ak_loop *loop);
static inline struct io_uring_sqe *ak__loop_get_sqe(ak_loop *loop)
{
  if (AK__UNLIKELY(loop->stage != NULL))
    ak__sq_stage_evict(loop); /* the slot we take may hold a staged SQE */
  struct io_uring_sqe *sqe = AK_FAULT_NULL(AK_FAULT_SQE, io_uring_get_sqe(&loop->ring));
  while (AK__UNLIKELY(!sqe)) {
    ak__loop_flush(loop);
    sqe = io_uring_get_sqe(&loop->ring);
  }
  loop->sq_unsubmitted++;
  return sqe;
}
void ak__timers_cancel_all(ak_loop *loop);

/* A batch op's params (op->data; batch_ring.c), here because the loop's
 * reap records a batch's results itself (ak__batch_cqe_record). */
typedef struct ak__batch_data {
  const ak__bent *ents; /* the builder's, read until the future settles */
  const struct io_uring_sqe *tmpl; /* the builder's SQE templates */
  ak__sq_stage *stage;  /* the builder's stage, or NULL (segments) */
  int64_t *results;     /* the caller's */
  unsigned n;
  unsigned mode;        /* AK__BATCH_* */
  bool skip;            /* CQE_SKIP_SUCCESS on every link but the last */
  unsigned cancels_out; /* our cancel requests whose CQE has not come: the
                           op stays until they have */
  int res_or;           /* the results recorded so far OR-ed (not with skip) */
} ak__batch_data;

/* The step every CQE of a batch op takes once its result is in the
 * caller's array (loop.c's reap, for a run of k CQEs that does not end
 * the batch; batch_ring.c's ak__batch_ring_cqe, for one CQE and then the
 * settle): their CQ slots given back, k fewer owed, their results OR-ed
 * (negative once any failed: a batch nobody cancelled and nothing failed
 * settles with n uncounted). Not for a chain's one CQE (bd->skip), which
 * stands for every link. */
static inline void ak__batch_cqes_recorded(ak_loop *loop, ak__op *op, ak__batch_data *bd,
                                           unsigned k, int res_or) {
  loop->in_flight -= k;
  op->owed = (uint16_t)(op->owed - k);
  bd->res_or |= res_or;
}

/* A batch's cancel request's own CQE (user-space pointers leave bit 47
 * free). */
#define AK__BATCH_CANCEL_BIT (UINT64_C(1) << 47)

/* Batches (batch_ring.c): writes a MULTI op's SQEs (op.c's prep_into_sq),
 * takes one of its CQEs (loop.c's dispatch), cancels what is in flight. */
void ak__batch_ring_start(ak__op *op);
void ak__batch_ring_cqe(uint64_t data, int res);
void ak__batch_ring_cancel(ak__op *op);
/* A cancel request for user_data (op.c). */
void ak__op_send_cancel(ak_loop *loop, uint64_t user_data);

/* ---- Op completion (op.c) ---- */

/* What op_done may have to act on: a linked timeout, a multishot stream,
 * the pool path, a resource to discard on cancel. */
#define AK__OPF_DONE_SLOW                                                                          \
  (AK__OPF_MULTISHOT | AK__OPF_DEADLINE | AK__OPF_TIMED_OUT | AK__OPF_ON_POOL | AK__OPF_CREATES)

/* The common completion (a QD1 read's): an op that went into the SQ
 * plain (AK__OPF_PLAIN: no complete hook, an opcode the kernel has done
 * before, no latency histogram), none of what op_done acts on since
 * (AK__OPF_DONE_SLOW: a linked timeout, the only second CQE an op that is
 * not a batch owes, among them), a result that is not a refusal (res >=
 * 0), no fault injection. op_done would test each of these and then
 * settle: settled here without the call. */
static inline bool ak__op_done_is_plain(const ak_loop *loop, const ak__op *op, int res) {
  (void)loop;
#ifdef AK_FAULT_INJECTION
  (void)op;
  (void)res;
  return false;
#else
  return (op->flags & (AK__OPF_DONE_SLOW | AK__OPF_PLAIN)) == AK__OPF_PLAIN && res >= 0;
#endif
}

/* Whether op, going into the SQ now, is AK__OPF_PLAIN. */
static inline bool ak__op_goes_plain(const ak_loop *loop, const ak__op *op) {
  return !op->complete && loop->opcode_state[op->kind] == 1 && !loop->latency_stats;
}

/* A plain completion's bookkeeping, before its settle: the loop's counts
 * (ak__op_finish's ops_active among them, dropped before the settle may
 * recycle op). op->res and op->owed are left as they are: after a plain
 * completion nothing reads them (res waits there for a linked timeout's
 * CQE, owed counts the CQEs still to come), and the record's next use
 * initialises both. ak__op_cqe_plain and the QD1 wait's own settle
 * (loop.c) share it. */
static inline __attribute__((always_inline)) void ak__op_plain_account(ak_loop *loop,
                                                                        ak__op *op) {
  loop->stats.completed[op->kind]++;
  loop->in_flight--;
  loop->ops_active--;
}

/* op's own CQE (tag AK__TAG_OP) with result res: settles op here and
 * returns true when that is its plain completion (ak__op_done_is_plain),
 * else false and nothing done (ak__op_cqe decides). Inline, so that the
 * QD1 wait's reap (loop.c's reap_direct) settles its op without a call. */
static inline __attribute__((always_inline)) bool ak__op_cqe_plain(ak_loop *loop, ak__op *op,
                                                                    int res) {
  if (!ak__op_done_is_plain(loop, op, res))
    return false;
  ak__op_plain_account(loop, op);
  ak__future_done_owned(&op->future, res);
  return true;
}

/* Whether an op of kind taking slots CQ slots, with none of
 * AK__OPF_NOT_LEAN, goes straight into the SQ with nothing else to decide
 * (a QD1 read's submission): a loop that neither forces the pool, runs on
 * epoll, under valgrind nor keeps the latency histogram (loop->lean_submit,
 * fixed at its start), an opcode the kernel has not refused, no op parked
 * before it, CQ room, no drain mode to leave and no builder's SQEs staged
 * where it would write. Anything else takes op.c's general path, which
 * decides each of these in turn. */
static inline bool ak__loop_submits_lean(const ak_loop *loop, unsigned kind, unsigned slots) {
  return loop->lean_submit && loop->opcode_state[kind] != 2 && !loop->queued_head &&
         loop->in_flight + slots <= loop->cq_capacity && !loop->drain_mode && !loop->stage;
}

/* Whether a plain or fixed read or write may go fs.c's direct way as far
 * as the loop's flags say (its submit_gate): the lean submission, no drain
 * mode, the four opcodes in the probe. */
static inline bool ak__loop_rw_direct_open(const ak_loop *loop) {
  union gate { /* the layout of the loop's */
    struct {
      bool lean_submit, drain_mode, rw_opcodes, submit_zero;
    } flags;
    uint32_t word;
  };
  return loop->submit_gate == ((union gate){.flags = {true, false, true, false}}).word;
}

/* Whether the SQ has a free slot for the lean submission (else the
 * general path flushes it), and that slot taken (ak__loop_sq_has_room
 * true just before): io_uring_get_sqe for the loop's rings, which are
 * never SQE128 (loop.c's set-up), in two, so that a caller's test of the
 * room is not followed by one of the SQE's address. */
static inline bool ak__loop_sq_has_room(const ak_loop *loop) {
  const struct io_uring_sq *sq = &loop->ring.sq;
  return sq->sqe_tail - io_uring_smp_load_acquire(sq->khead) < sq->ring_entries;
}
static inline __attribute__((always_inline)) struct io_uring_sqe *ak__loop_sq_take(ak_loop *loop) {
  struct io_uring_sq *sq = &loop->ring.sq;
  unsigned tail = sq->sqe_tail;
  sq->sqe_tail = tail + 1;
  return &sq->sqes[tail & sq->ring_mask];
}

/* The lean submission's bookkeeping once op's SQE is taken (kind, slots,
 * flags: op's, read by the caller before its stores, which the compiler
 * cannot tell apart from op's own; flags may add AK__OPF_PLAIN): op in
 * the SQ as prep_into_sq leaves it, the record's stores before the loop's
 * (so that the compiler merges them with an initialisation just before).
 * The caller counts op in loop->ops_active. */
static inline __attribute__((always_inline)) void
ak__op_lean_account(ak_loop *loop, ak__op *op, struct io_uring_sqe *sqe, unsigned kind,
                    unsigned slots, unsigned flags) {
  op->owed = 1;
  op->sqe = sqe;
  op->flags = (uint16_t)(flags | AK__OPF_SUBMITTED);
  io_uring_sqe_set_data64(sqe, (uint64_t)(uintptr_t)op);
  loop->sq_unsubmitted++;
  loop->in_flight += slots;
  loop->last_sqe_op = op;
  loop->stats.submitted[kind]++;
}

/* What makes an op's submission more than an SQE filled in place: a
 * missing opcode (the pool path), a batch, a linked timeout, a registered
 * socket to look up. */
#define AK__OPF_NOT_LEAN (AK__OPF_NO_OPCODE | AK__OPF_MULTI | AK__OPF_DEADLINE | AK__OPF_SOCKET)

/* The lean submission's SQE (ak__loop_submits_lean, op without
 * AK__OPF_NOT_LEAN, and a free SQ slot): op is in the SQ, as prep_into_sq
 * leaves it, except for the SQE's own fields (all but user_data) and
 * op->sqe_flags, which the caller writes; NULL and nothing done when op
 * must take the general way (ak__op_submit). The caller counts op in
 * loop->ops_active. */
static inline __attribute__((always_inline)) struct io_uring_sqe *ak__op_lean_sqe(ak_loop *loop,
                                                                                 ak__op *op) {
  unsigned kind = op->kind, slots = op->slots, flags = op->flags;
  if (AK__UNLIKELY((flags & AK__OPF_NOT_LEAN) || !ak__loop_submits_lean(loop, kind, slots)))
    return NULL;
  if (AK__UNLIKELY(!ak__loop_sq_has_room(loop)))
    return NULL;
  struct io_uring_sqe *sqe = ak__loop_sq_take(loop);
  /* (The lean way has no latency histogram.) */
  if (!op->complete && loop->opcode_state[kind] == 1)
    flags |= AK__OPF_PLAIN;
  ak__op_lean_account(loop, op, sqe, kind, slots, flags);
  return sqe;
}

/* ---- Op records (op.c; the cache is in core/internal.h) ---- */
void ak__op_record_put_slow(ak__op *op);
/* Takes back the record of an op future whose last reference went (future.c's
 * ak__future_free): inline, every plain op comes here. */
static inline void ak__op_record_put(ak__op *op) {
  unsigned room = ak__op_records.room;
  if (AK__UNLIKELY(room == 0)) {
    ak__op_record_put_slow(op);
    return;
  }
  op->next = ak__op_records.head;
  ak__op_records.head = op;
  ak__op_records.room = room - 1;
}
/* Frees the calling thread's op records (ak_thread_cache_flush, thread exit). */
void ak__op_records_flush(void);
/* Registers the calling thread's cache flush at its exit (future.c). */
void ak__thread_cache_hook(void);

#endif /* AK_LOOP_INTERNAL_H */
