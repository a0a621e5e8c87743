/* op.c: operation records, the thing every ring operation is built on:
 * allocation (a per-loop free list), admission (in-flight CQEs never exceed
 * the CQ; extra ops wait in FIFO order), SQE preparation with an optional
 * linked kernel timeout, CQE accounting (an op settles only when the kernel
 * has posted every CQE it owes), cancellation requests, resources created
 * after a cancel, and the pool path for ops the kernel lacks.
 *
 * Not here: what each op does (ring_ops.c, fs.c, net.c fill in prep and
 * params), the iteration that reaps CQEs (loop.c).
 */
#define _GNU_SOURCE
#include <string.h>

#include "core/loop_internal.h"
#include "core/valgrind.h"

static const char *const ak__op_kind_names[AK_OP_KIND_COUNT] = {
    [AK_OP_NOP] = "nop",         [AK_OP_TIMEOUT] = "timeout",   [AK_OP_READ] = "read",
    [AK_OP_WRITE] = "write",     [AK_OP_CANCEL] = "cancel",     [AK_OP_WAKEUP] = "wakeup",
    [AK_OP_OPENAT] = "openat",   [AK_OP_CLOSE] = "close",       [AK_OP_READV] = "readv",
    [AK_OP_WRITEV] = "writev",   [AK_OP_FSYNC] = "fsync",       [AK_OP_FALLOCATE] = "fallocate",
    [AK_OP_STATX] = "statx",     [AK_OP_RENAMEAT] = "renameat", [AK_OP_UNLINKAT] = "unlinkat",
    [AK_OP_MKDIRAT] = "mkdirat", [AK_OP_SPLICE] = "splice",     [AK_OP_SOCKET] = "socket",
    [AK_OP_CONNECT] = "connect", [AK_OP_ACCEPT] = "accept",     [AK_OP_RECV] = "recv",
    [AK_OP_SEND] = "send",       [AK_OP_SENDMSG] = "sendmsg",   [AK_OP_RECVMSG] = "recvmsg",
    [AK_OP_SHUTDOWN] = "shutdown", [AK_OP_POLL] = "poll",     [AK_OP_LINKAT] = "linkat",
    [AK_OP_SYMLINKAT] = "symlinkat", [AK_OP_READLINKAT] = "readlinkat", [AK_OP_DIRLIST] = "dirlist",
    [AK_OP_BATCH] = "batch",
};

const char *ak_op_kind_name(unsigned kind) {
  return kind < AK_OP_KIND_COUNT ? ak__op_kind_names[kind] : NULL;
}

/* ---- The op future's hooks ------------------------------------------------- */

static void op_cancel(ak__op *op);

static void op_cancel_on_loop(ak_future *f) {
  /* In flight exactly while its future is pending: ak__op_finish settles
   * it, on this thread. The record itself lives while f has references. */
  if (!ak_future_is_set(f))
    op_cancel(AK__CONTAINER_OF(f, ak__op, future));
}

static void op_cancel_posted(void *arg) {
  ak_future *f = arg;
  op_cancel_on_loop(f);
  ak_future_release(f);
}

static void op_future_cancel(ak_future *f) {
  if (ak__loop_owned_by_caller(f->loop)) {
    op_cancel_on_loop(f);
    return;
  }
  ak_future_ref(f);
  if (ak_loop_post(f->loop, op_cancel_posted, f) < 0)
    ak_future_release(f); /* ENOMEM: the request is lost, the op completes */
}

const ak__future_kind ak__op_future_kind = {
    .name = "op",
    .cancel = op_future_cancel,
    .free_data = NULL,
    .settles_on_loop = true, /* ak__op_finish, on the loop's thread */
};

ak__op *ak__op_of(ak_future *f) {
  return f->kind == &ak__op_future_kind ? AK__CONTAINER_OF(f, ak__op, future) : NULL;
}

/* ---- Records ------------------------------------------------------------------ */

enum { AK__OP_CACHE_MAX = 4096 };

AK__TLS ak__op_record_cache ak__op_records;

/* The rare recycles: a thread's first (registers the exit flush) or a full
 * cache's (to the allocator). */
void ak__op_record_put_slow(ak__op *op) {
  if (ak__op_records.registered) {
    ak__free(op);
    return;
  }
  ak__thread_cache_hook();
  ak__op_records.registered = true;
  op->next = ak__op_records.head;
  ak__op_records.head = op;
  ak__op_records.room = AK__OP_CACHE_MAX - 1;
}

void ak__op_records_flush(void) {
  while (ak__op_records.head) {
    ak__op *op = ak__op_records.head;
    ak__op_records.head = op->next;
    ak__free(op);
  }
  ak__op_records.room = ak__op_records.registered ? AK__OP_CACHE_MAX : 0;
}

__attribute__((noinline, cold)) ak__op *ak__op_new_slow(ak_loop *loop, unsigned kind) {
  ak__op *op = ak__malloc(sizeof(*op));
  if (!op)
    return NULL;
  ak__op_record_made(op);
  return ak__op_init(op, loop, kind);
}

/* The op is done: its reference on its future goes to the callbacks (or is
 * dropped, which may recycle the record: the loop's count goes first). */
void ak__op_finish(ak__op *op, int64_t res) {
  op->loop->ops_active--;
  ak__future_finish_owned(&op->future, res);
}

/* ---- The pool path ---------------------------------------------------------- */

static int64_t op_blocking_work(void *arg, ak_future *self) {
  (void)self;
  ak__op *op = arg;
  return op->blocking(op);
}

static void op_done(ak__op *op, int res);

/* Back from the pool: what the epoll backend still holds for op goes. */
static void pool_returned(ak__op *op) {
  op->pool_fut = NULL;
  if (AK__UNLIKELY(op->flags & AK__OPF_POOL_DEADLINE))
    ak__ep_pool_returned(op);
}

static void op_pool_settled(ak_future *pf, void *arg) {
  ak__op *op = arg;
  int64_t res = ak_future_result(pf);
  pool_returned(op);
  ak_future_release(pf);
  op_done(op, (int)res);
}

static void run_on_pool(ak__op *op) {
  ak_loop *loop = op->loop;
  loop->stats.fallbacks[op->kind]++;
  op->flags |= AK__OPF_ON_POOL;
  /* Submitted from the loop's thread, so it settles on the loop. */
  ak_future *pf = ak_pool_submit(ak__loop_pool(loop), op_blocking_work, op);
  if (!pf || ak_future_on_settle(pf, op_pool_settled, op) < 0) {
    /* ENOMEM; a task already queued still runs and its settle is dropped. */
    ak_future_release(pf);
    pool_returned(op);
    op_done(op, -ENOMEM);
    return;
  }
  op->pool_fut = pf;
}

void ak__op_run_on_pool(ak__op *op) { run_on_pool(op); }

static bool must_use_pool(const ak__op *op) {
  const ak_loop *loop = op->loop;
  if (!op->blocking)
    return false;
  return (loop->opts.flags & AK_LOOP_FORCE_POOL) || loop->opcode_state[op->kind] == 2 ||
         (op->flags & AK__OPF_NO_OPCODE);
}

/* ---- Submission and admission ----------------------------------------------- */

static void prep_linked_deadline(ak__op *op, struct io_uring_sqe *sqe) {
  sqe->flags |= IOSQE_IO_LINK;
  struct io_uring_sqe *tsqe = ak__loop_get_sqe(op->loop);
  io_uring_prep_link_timeout(tsqe, &op->deadline, 0);
  io_uring_sqe_set_data64(tsqe, (uint64_t)(uintptr_t)op | AK__TAG_DEADLINE);
  op->owed++;
}

/* Inlined into ak__op_submit (and the admission queue): no call and no
 * registers saved for it on a QD1 read's submission. */
static inline __attribute__((always_inline)) void prep_into_sq(ak__op *op) {
  ak_loop *loop = op->loop;
  if (AK__UNLIKELY(op->flags & AK__OPF_MULTI)) {
    ak__batch_ring_start(op);
    return;
  }
  bool deadline = (op->flags & AK__OPF_DEADLINE) != 0;
  /* The op and its linked timeout must reach the kernel in one submit. */
  if (deadline && io_uring_sq_space_left(&loop->ring) < 2)
    ak__loop_flush(loop);
  struct io_uring_sqe *sqe = ak__loop_get_sqe(loop);
  op->prep(op, sqe);
  AK_FAULT_SHORT_SQE(sqe);
  sqe->flags |= op->sqe_flags;
  if ((op->flags & AK__OPF_SOCKET) && ak__socket_is_registered(loop, sqe->fd))
    sqe->flags |= IOSQE_FIXED_FILE; /* slot == fd (register_sockets.c) */
  io_uring_sqe_set_data64(sqe, (uint64_t)(uintptr_t)op);
  if (AK__UNLIKELY(ak__vg_running))
    ak__vg_note_sqe(op, sqe); /* memcheck cannot see the kernel write */
  op->owed = 1;
  op->sqe = sqe;
  if (deadline)
    prep_linked_deadline(op, sqe);
  op->flags = (uint16_t)((op->flags & ~AK__OPF_QUEUED) | AK__OPF_SUBMITTED |
                         (ak__op_goes_plain(loop, op) ? AK__OPF_PLAIN : 0));
  op->submit_ns = ak__loop_latency_now(loop);
  loop->in_flight += op->slots;
  loop->last_sqe_op = op;
  loop->stats.submitted[op->kind]++;
}

/* The seam: the ring's SQ, or the epoll backend. */
static inline void op_start(ak__op *op) {
  if (AK__UNLIKELY(op->loop->ep != NULL))
    ak__ep_start(op);
  else
    prep_into_sq(op);
}

/* Room in the CQ, and not a ring that may still be in the kernel's drain
 * mode with none of the loop's ops in flight: an SQE that goes in then may
 * be the kernel's "first after the drain" while it is not idle yet, and
 * leave the ring in that mode (loop.c, leave_drain_mode); held until the
 * loop has ended the mode. */
static bool has_room(const ak_loop *loop, const ak__op *op) {
  return loop->in_flight + op->slots <= loop->cq_capacity &&
         !(AK__UNLIKELY(loop->drain_mode) && loop->in_flight == 0);
}

/* A cancel request (ak_cancel_fd, ak_close's first step) must not wait for
 * CQ room: the ops filling the CQ may be the very ones it is to cancel. Like
 * send_cancel's requests it goes straight in; NODROP keeps its CQE if the
 * CQ is momentarily full. */
static bool is_cancel_request(const ak__op *op) { return op->kind == AK_OP_CANCEL; }

/* The general submission: the pool path, the admission queue, or the SQ
 * (prep_into_sq) or the epoll backend. Out of line, so that the lean one
 * saves only the registers it needs. */
static __attribute__((noinline)) void op_submit_general(ak__op *op) {
  ak_loop *loop = op->loop;
  if (must_use_pool(op)) {
    run_on_pool(op);
  } else if (!is_cancel_request(op) && (loop->queued_head || !has_room(loop, op))) {
    op->flags |= AK__OPF_QUEUED;
    if (loop->queued_tail)
      loop->queued_tail->next = op;
    else
      loop->queued_head = op;
    loop->queued_tail = op;
    loop->queued_count++;
    loop->stats.queue_waits++;
  } else {
    op_start(op);
  }
}

/* Submits op: the lean way (straight into the SQ) when it can. */
static inline __attribute__((always_inline)) void op_submit(ak__op *op) {
  ak_loop *loop = op->loop;
  loop->ops_active++;
  struct io_uring_sqe *sqe = ak__op_lean_sqe(loop, op);
  if (AK__LIKELY(sqe != NULL)) {
    op->prep(op, sqe);
    sqe->flags |= op->sqe_flags;
    return;
  }
  op_submit_general(op);
}

/* The caller's reference is the one ak__op_new made. */
ak_future *ak__op_submit(ak__op *op) {
  op_submit(op);
  return &op->future;
}

ak_future *ak__op_submit_early(ak__op *op, bool now) {
  op_submit(op);
  ak__loop_submit_early(op->loop, now); /* the record stays: the op holds it */
  return &op->future;
}

ak_future *ak__op_flush_early(ak__op *op) {
  ak__loop_flush_early(op->loop); /* the record stays: the op holds it */
  return &op->future;
}

void ak__op_admit_queued(ak_loop *loop) {
  while (loop->queued_head && has_room(loop, loop->queued_head)) {
    ak__op *op = loop->queued_head;
    loop->queued_head = op->next;
    if (!loop->queued_head)
      loop->queued_tail = NULL;
    loop->queued_count--;
    op->next = NULL;
    op_start(op);
  }
}

static void unqueue(ak__op *op) {
  ak_loop *loop = op->loop;
  ak__op **link = &loop->queued_head;
  ak__op *prev = NULL;
  while (*link && *link != op) {
    prev = *link;
    link = &(*link)->next;
  }
  if (!*link)
    return;
  *link = op->next;
  if (loop->queued_tail == op)
    loop->queued_tail = prev;
  loop->queued_count--;
  op->flags &= (uint16_t)~AK__OPF_QUEUED;
}

int ak__op_set_deadline(ak__op *op, int64_t timeout_ns) {
  ak_loop *loop = op->loop;
  if (timeout_ns < 0)
    timeout_ns = 0;
  op->deadline.tv_sec = timeout_ns / 1000000000;
  op->deadline.tv_nsec = timeout_ns % 1000000000;
  if (op->flags & AK__OPF_DEADLINE)
    return -EBUSY;
  if (op->flags & AK__OPF_QUEUED) {
    op->flags |= AK__OPF_DEADLINE;
    op->slots = 2;
    return 0;
  }
  if (AK__UNLIKELY(loop->ep != NULL))
    return ak__ep_set_deadline(op, timeout_ns);
  /* Linkable only while its SQE is the newest one not yet submitted. */
  bool newest_unsubmitted = (op->flags & AK__OPF_SUBMITTED) && loop->last_sqe_op == op &&
                            loop->sq_unsubmitted > 0 && io_uring_sq_space_left(&loop->ring) >= 1;
  if (!newest_unsubmitted || !has_room(loop, op))
    return -EBUSY;
  op->flags |= AK__OPF_DEADLINE;
  op->slots = 2;
  loop->in_flight += 1;
  prep_linked_deadline(op, op->sqe);
  loop->last_sqe_op = NULL;
  return 0;
}

/* ---- Completion -------------------------------------------------------------- */

static void note_latency(ak_loop *loop, const ak__op *op) {
  if (!loop->latency_stats)
    return;
  int64_t ns = ak__loop_now(loop) - op->submit_ns;
  unsigned bucket = ns > 0 ? 63u - (unsigned)__builtin_clzll((unsigned long long)ns) : 0;
  if (bucket >= AK_STATS_LATENCY_BUCKETS)
    bucket = AK_STATS_LATENCY_BUCKETS - 1;
  loop->stats.latency[bucket]++;
}

/* Whether res says the kernel cannot do this op at all (first use only). */
static bool kernel_refused(const ak__op *op, int res) {
  return (res == -EINVAL || res == -EOPNOTSUPP) && op->blocking &&
         op->loop->opcode_state[op->kind] == 0;
}

/* The kernel is finished with op (or the pool path returned). */
static void op_done(ak__op *op, int res) {
  AK_FAULT_OP_RES(op, res);
  ak_loop *loop = op->loop;
  bool from_pool = (op->flags & AK__OPF_ON_POOL) != 0;
  op->flags &= (uint16_t)~AK__OPF_ON_POOL;
  if (!from_pool && kernel_refused(op, res) && !ak_future_cancel_requested(op->fut)) {
    /* libuv does the same for ops a filesystem refuses (EINVAL/EOPNOTSUPP). */
    loop->opcode_state[op->kind] = 2;
    run_on_pool(op);
    return;
  }
  if (!from_pool && res >= 0 && loop->opcode_state[op->kind] == 0)
    loop->opcode_state[op->kind] = 1;
  if ((op->flags & AK__OPF_TIMED_OUT) && res == -ECANCELED)
    res = -ETIMEDOUT;
  if ((op->flags & AK__OPF_CREATES) && res >= 0 && ak_future_cancel_requested(op->fut)) {
    /* Nobody will take the fd: close it, as design.md promises. */
    if (op->discard)
      op->discard(op, res);
    res = -ECANCELED;
  }
  op->res = res;
  if (op->complete)
    op->complete(op, res, 0);
  else
    ak__op_finish(op, res);
}

void ak__op_cqe(ak__op *op, int res, unsigned flags, int tag) {
  ak_loop *loop = op->loop;
  if (AK__LIKELY(tag == AK__TAG_OP) && ak__op_cqe_plain(loop, op, res))
    return;
  if (tag == AK__TAG_DEADLINE) {
    loop->in_flight--;
    if (res == -ETIME)
      op->flags |= AK__OPF_TIMED_OUT;
    if (--op->owed == 0)
      op_done(op, op->res);
    return;
  }
  bool more = (op->flags & AK__OPF_MULTISHOT) && (flags & IORING_CQE_F_MORE);
  loop->stats.completed[op->kind]++;
  if (more) {
    /* A multishot item: the op stays armed; its slot stays reserved. */
    op->complete(op, res, flags);
    return;
  }
  note_latency(loop, op);
  loop->in_flight--;
  op->res = res;
  if (--op->owed > 0)
    return; /* the linked timeout's CQE is still to come */
  if (op->flags & AK__OPF_MULTISHOT) {
    op->complete(op, res, flags); /* the stream's last CQE */
    return;
  }
  op_done(op, res);
}

/* ---- Cancellation --------------------------------------------------------------- */

static void send_cancel(ak_loop *loop, uint64_t user_data, int cancel_flags) {
  struct io_uring_sqe *sqe = ak__loop_get_sqe(loop);
  io_uring_prep_cancel64(sqe, user_data, cancel_flags);
  io_uring_sqe_set_data64(sqe, AK__TAG_IGNORE);
  /* Cancel requests bypass admission: NODROP keeps their CQE if the CQ is
   * momentarily full. */
  loop->reserved_inflight++;
  loop->stats.submitted[AK_OP_CANCEL]++;
}

static void op_cancel(ak__op *op) {
  if (op->flags & AK__OPF_QUEUED) {
    unqueue(op);
    op_done(op, -ECANCELED); /* through complete: it may own memory to free */
    return;
  }
  if (op->flags & AK__OPF_ON_POOL) {
    if (op->pool_fut)
      ak_future_cancel(op->pool_fut); /* settles at once if not started */
    return;
  }
  if ((op->flags & AK__OPF_SUBMITTED) && !(op->flags & AK__OPF_CANCEL_SENT)) {
    op->flags |= AK__OPF_CANCEL_SENT;
    if (AK__UNLIKELY(op->loop->ep != NULL))
      ak__ep_cancel(op);
    else if (AK__UNLIKELY(op->flags & AK__OPF_MULTI))
      ak__batch_ring_cancel(op);
    else
      send_cancel(op->loop, (uint64_t)(uintptr_t)op, 0);
  }
}

void ak__op_send_cancel(ak_loop *loop, uint64_t user_data) { send_cancel(loop, user_data, 0); }

void ak__op_cancel_all(ak_loop *loop) {
  while (loop->queued_head) {
    ak__op *op = loop->queued_head;
    unqueue(op);
    op_done(op, -ECANCELED);
  }
  if (loop->ep)
    return; /* ak_loop_free called ak__ep_cancel_all before the timers went */
  if (loop->in_flight == 0)
    return;
  /* 5.19+: one request cancels every op, whatever its user_data. The wakeup
   * read is cancelled too; loop.c does not re-arm it while closing. */
  send_cancel(loop, 0, IORING_ASYNC_CANCEL_ANY | IORING_ASYNC_CANCEL_ALL);
}

unsigned ak__op_cancel_parked(ak_loop *loop, bool (*uses)(const ak__op *op, int fd), int fd) {
  unsigned n = 0;
  ak__op *op = loop->queued_head;
  while (op) {
    ak__op *next = op->next; /* cancelling unlinks and frees op */
    if (uses(op, fd)) {
      ak_future_cancel(op->fut);
      n++;
    }
    op = next;
  }
  return n;
}
