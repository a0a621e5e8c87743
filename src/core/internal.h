/* core/internal.h: what the core layer offers the layers above it
 * (combinators, fs, net, and later tls, http): the future's layout and settle
 * machinery, the loop's queues and iteration, the operation record every ring
 * operation is built on, and the pool's internal calls. Nothing here is
 * public; the public contracts are in include/asynckit/. The layout of the
 * loop itself is private to core (core/loop_internal.h).
 *
 * Map:
 *   1. The future's layout and internal calls (future.c)
 *   2. The loop's internal calls (loop.c, timer.c)
 *   3. Operation records (op.c): how fs.c, net.c... submit ring operations
 *   4. The pool's internal calls (pool.c)
 */
#ifndef AK_CORE_INTERNAL_H
#define AK_CORE_INTERNAL_H

#include <liburing.h>
#include <string.h>
#include <sys/uio.h>

#include "base/internal.h"

/* ---- 1. The future -------------------------------------------------------- */

/* A node in a loop's ready queue or inbox, or a thread's trampoline. */
typedef struct ak__qnode {
  struct ak__qnode *next;
  void (*run)(struct ak__qnode *node); /* called on the queue's thread */
} ak__qnode;

/* What kind of future this is: the hooks its owner needs. */
typedef struct ak__future_kind {
  const char *name;
  /* Asked to cancel (never NULL for a kind that can be cancelled). Called
   * once, on any thread, after the CANCEL_REQ flag was set. */
  void (*cancel)(ak_future *f);
  /* Frees kind-specific data when the future is freed; may be NULL. */
  void (*free_data)(ak_future *f);
  /* The library settles it on its loop's thread only (an op's future,
   * ak__op_finish): a wait on that thread need not mark LOOP_WAITER (a
   * locked change of the state word) for a settle elsewhere to wake it. */
  bool settles_on_loop;
} ak__future_kind;

/* A callback beyond the first. One added after the future settled runs on
 * its own through qnode (the settle-time list is closed by then). */
typedef struct ak__cbnode {
  ak_callback cb;
  void *arg;
  struct ak__cbnode *next;
  ak__qnode qnode;
  ak_future *f;
} ak__cbnode;

/* state word: the ak_state in the low bits, flags above. */
enum {
  AK__STATE_MASK = 0x7u,
  AK__F_LOCK = 1u << 3,       /* guards callbacks and outcome fields */
  AK__F_WAITERS = 1u << 4,    /* a thread sleeps on the futex */
  AK__F_CANCEL_REQ = 1u << 5, /* cancellation was requested */
  AK__F_BOUND = 1u << 6,      /* a pool task keeping its loop alive: the
                                 settle always reaches the loop, which then
                                 drops the task from its alive count */
  AK__F_COMPUTE = 1u << 7,    /* a promise was handed a callable
                                 (ak_pool_compute): once only */
  AK__F_LOOP_WAITER = 1u << 8, /* the loop's own thread waits for it in its
                                 ring (not the futex): a settle from another
                                 thread wakes the loop, one from the loop's
                                 thread needs no syscall at all */
};

/* Fields marked (kind) are not initialised by ak__future_new: the kinds that
 * use them set them. The callback list is closed when the future settles:
 * from then on only the dispatcher reads cb/cb_arg/more_head. */
struct ak_future {
  /* The first cache line (futures are 64-byte aligned, future.c): all that
   * a pool worker reads and writes (start, run, settle, hand-over), and
   * what the loop's dispatch reads first. The second line is the loop's
   * alone on that path, so a task moves one line to the worker and back. */
  _Atomic uint32_t state;           /* ak_state | AK__F_* flags */
  _Atomic uint32_t refs;            /* references; the last frees */
  ak__qnode qnode;                  /* link while its callbacks are queued */
  ak_loop *loop;                    /* owner loop, or NULL */
  ak_callback cb;                   /* first callback, inline (NULL at creation) */
  int64_t result;                   /* outcome, once settled */
  void *fn;                         /* (kind) a pool task's or step's callable */
  void *fn_arg;                     /* (kind) its argument */
  /* The second line. */
  void *cb_arg;                     /* with cb */
  const ak__future_kind *kind;      /* hooks, or NULL for a plain promise */
  /* From value to adopted: zeroed together at creation (keep contiguous). */
  void *value;                      /* product, owned by the future */
  ak_destructor dtor;               /* frees value, or NULL */
  char *detail;                     /* failure detail, owned, or NULL */
  void *data;                       /* kind-specific record */
  ak__cbnode *more_head;            /* further callbacks, in order */
  ak_future *adopted;               /* set by ak_future_adopt */
  /* Not initialised at creation: */
  ak__cbnode *more_tail;            /* valid while more_head != NULL */
  void *aux;                        /* (kind) a second kind-specific field */
};

/* The run of a future's callback node (its qnode, queued at the settle). */
void ak__future_run_callbacks(ak__qnode *node);

/* A future of the given kind on loop (or NULL), one reference. */
ak_future *ak__future_new(ak_loop *loop, const ak__future_kind *kind, void *data);

/* Initialises a future record: what every path reads, one reference, no
 * kind; (kind) fields are the kinds' to set. Inline for the records that
 * embed their future (an op's, ak__op_new). */
static inline __attribute__((always_inline)) void ak__future_init_use(ak_future *f,
                                                                     ak_loop *loop,
                                                                     uint32_t refs);
static inline __attribute__((always_inline)) void ak__future_init_refs(ak_future *f,
                                                                      ak_loop *loop,
                                                                      uint32_t refs) {
  ak__future_init_use(f, loop, refs);
  f->kind = NULL;
  f->qnode.run = ak__future_run_callbacks;
}
/* ak__future_init_refs but the kind and qnode.run: for a record whose
 * kind and run never change while it is recycled (an op's, ak__op_init). */
static inline __attribute__((always_inline)) void ak__future_init_use(ak_future *f,
                                                                     ak_loop *loop,
                                                                     uint32_t refs) {
  atomic_init(&f->state, AK_PENDING);
  atomic_init(&f->refs, refs);
  f->loop = loop;
  f->cb = NULL;
  /* value .. adopted are contiguous: a few vector stores. */
  memset(&f->value, 0, offsetof(ak_future, adopted) + sizeof(f->adopted) -
                           offsetof(ak_future, value));
}
static inline __attribute__((always_inline)) void ak__future_init(ak_future *f, ak_loop *loop) {
  ak__future_init_refs(f, loop, 1);
}

/* Settles f: state is AK_DONE, AK_FAILED or AK_CANCELLED. Does not touch
 * value/dtor/detail, which the caller set before (ak__future_lock is not
 * needed for a future only the caller can settle). Returns 0 or AK_ESETTLED. */
int ak__future_settle(ak_future *f, ak_state state, int64_t result);

/* Settles with a result that may be an error: >= 0 DONE, -ECANCELED
 * CANCELLED, other negatives FAILED. */
int ak__future_finish(ak_future *f, int64_t result);
/* As ak__future_finish, consuming one of the caller's references: it passes
 * to the callbacks' queue (or is dropped when there are none), two atomic
 * operations fewer than finish then release. */
void ak__future_finish_owned(ak_future *f, int64_t result);

/* A reference on a future no other thread has seen yet (only its maker
 * holds it): nobody else can move the count, so no atomic add is needed. */
static inline void ak__future_ref_unshared(ak_future *f) {
  atomic_store_explicit(&f->refs, atomic_load_explicit(&f->refs, memory_order_relaxed) + 1,
                        memory_order_relaxed);
}

/* Marks a future nobody else has seen yet as a pool task bound to its loop
 * (AK__F_BOUND): its settle always reaches the loop. */
void ak__future_bind_to_loop(ak_future *f);

/* Marks a plain promise as handed a callable (AK__F_COMPUTE). Returns 0,
 * AK_ESETTLED if it settled already, -EBUSY if it was handed one before. */
int ak__future_claim_compute(ak_future *f);

/* PENDING -> RUNNING; false if cancelled or settled already. */
bool ak__future_start_running(ak_future *f);

/* What ak_future_adopt returns: a callable's "settle me like that future". */
#define AK__ADOPT_SENTINEL INT64_MIN

/* Runs a then-step's or pool callable's return protocol: settles self from
 * ret, or hooks self to the adopted future. */
void ak__future_complete_callable(ak_future *self, int64_t ret);
/* The same, consuming one reference the caller holds. */
void ak__future_complete_callable_owned(ak_future *self, int64_t ret);

/* Settles dst as src settled (state, result, detail; the value too when DONE,
 * borrowed: dst must keep src alive). Returns false if dst had settled. */
bool ak__future_settle_like(ak_future *dst, const ak_future *src);

static inline ak_state ak__state_of(uint32_t word) {
  return (ak_state)(word & AK__STATE_MASK);
}
static inline bool ak__is_settled_word(uint32_t word) {
  return ak__state_of(word) >= AK_DONE;
}

/* The per-thread trampoline for loopless futures. Returns 0 (a settle
 * ends in a jump to it). */
int ak__trampoline_push(ak__qnode *node);

/* Frees a future whose last reference went (future.c). */
void ak__future_free(ak_future *f);

/* ak_future_release for the library's own calls: inline, no PLT call. */
static inline void ak__future_release_inline(ak_future *f) {
  /* acq_rel: the freeing thread sees every write made under other refs. */
  if (atomic_fetch_sub_explicit(&f->refs, 1, memory_order_acq_rel) == 1)
    ak__future_free(f);
}

/* The rest of ak__future_finish_owned with f's lock taken (old: the word
 * before, without LOCK): ak__future_done_owned's uncommon cases. */
void ak__future_finish_owned_locked(ak_future *f, uint32_t old, int64_t result);

/* What ak__future_done_try left to do (AK__DONE_*). */
enum {
  AK__DONE_OK = 0,     /* settled, and the reference released */
  AK__DONE_RETRY = 1,  /* the lock was taken: nothing done, finish the locked way */
  AK__DONE_LOCKED = 2, /* the lock is held (*old: the word before): a waiter, a
                          callback, a binding or a settled future, for
                          ak__future_finish_owned_locked */
  AK__DONE_FREE = 3,   /* settled; the reference released was the last: free f */
};

/* The common settle of ak__future_finish_owned for a result >= 0 (DONE):
 * pending, nobody waiting on the futex or marked as a loop waiter, no
 * callback, not a bound pool task: the lock, the result, the unlocking
 * store and the release of the caller's reference, with no call. Returns
 * what is left (AK__DONE_*), so that a caller can make that call its last
 * act (loop.c's QD1 wait). */
static inline __attribute__((always_inline)) int ak__future_done_try(ak_future *f, int64_t result,
                                                                     uint32_t *old) {
  *old = atomic_load_explicit(&f->state, memory_order_relaxed) & ~AK__F_LOCK;
  if (AK__UNLIKELY(!atomic_compare_exchange_weak_explicit(&f->state, old, *old | AK__F_LOCK,
                                                          memory_order_acquire,
                                                          memory_order_relaxed)))
    return AK__DONE_RETRY;
  if (AK__UNLIKELY((*old & (AK__STATE_MASK | AK__F_WAITERS | AK__F_LOOP_WAITER | AK__F_BOUND)) ||
                   f->cb != NULL))
    return AK__DONE_LOCKED;
  f->result = result;
  /* Publishes the result and unlocks (pairs with the acquire of the
   * state's readers). */
  atomic_store_explicit(&f->state, *old | AK_DONE, memory_order_release);
  /* acq_rel, as ak__future_release_inline. */
  if (atomic_fetch_sub_explicit(&f->refs, 1, memory_order_acq_rel) == 1)
    return AK__DONE_FREE;
  return AK__DONE_OK;
}

/* Does what ak__future_done_try left (how: its answer). */
static inline void ak__future_done_rest(ak_future *f, int64_t result, int how, uint32_t old) {
  if (how == AK__DONE_RETRY)
    ak__future_finish_owned(f, result); /* contended: the locked way */
  else if (how == AK__DONE_LOCKED)
    ak__future_finish_owned_locked(f, old, result);
  else if (how == AK__DONE_FREE)
    ak__future_free(f);
}

/* ak__future_finish_owned for a result >= 0, inline (ak__future_done_try,
 * then what it left). An op's plain completion (op.c) settles so. */
static inline __attribute__((always_inline)) void ak__future_done_owned(ak_future *f,
                                                                        int64_t result) {
  uint32_t old;
  int how = ak__future_done_try(f, result, &old);
  if (AK__UNLIKELY(how != AK__DONE_OK))
    ak__future_done_rest(f, result, how, old);
}

/* Runs a queued node (the ready queue, the trampoline). The common node,
 * a future with one callback, is run here: the dispatching loop's
 * registers hold what the call needs, where a call to its run would build
 * a frame of its own to keep the future across the callback. */
static inline void ak__qnode_run(ak__qnode *node) {
  if (AK__LIKELY(node->run == ak__future_run_callbacks)) {
    ak_future *f = AK__CONTAINER_OF(node, ak_future, qnode);
    if (AK__LIKELY(f->more_head == NULL)) {
      f->cb(f, f->cb_arg);
      ak__future_release_inline(f);
      return;
    }
  }
  node->run(node);
}

/* ---- 2. The loop ---------------------------------------------------------- */

/* The calling thread's identity token (compared with a loop's owner): the
 * thread pointer where the compiler gives it (one load from %fs:0 on
 * x86-64, where a thread-local's address costs a GOT load and an add: the
 * owner check is on every loop settle), else the address of a thread-local
 * byte. Either is unique among live threads. */
extern AK__TLS char ak__token;
#if defined(__x86_64__) && defined(__has_builtin)
#if __has_builtin(__builtin_thread_pointer)
#define AK__HAVE_THREAD_POINTER 1
#endif
#endif
static inline const void *ak__thread_token(void) {
#ifdef AK__HAVE_THREAD_POINTER
  return __builtin_thread_pointer();
#else
  return &ak__token;
#endif
}

/* Queues node on loop: to the ready queue on the owner thread, else to the
 * inbox, waking the loop. Thread-safe. */
void ak__loop_enqueue(ak_loop *loop, ak__qnode *node);

/* Wakes the loop if it sleeps. Thread-safe. */
void ak__loop_wake(ak_loop *loop);

/* One iteration for a waiter on the owner thread: blocks at most until
 * deadline_ns (AK_FOREVER: no limit, 0: do not block), and not at all once
 * done(arg) is true (checked after the callbacks that ran before the wait,
 * which may have satisfied it). Returns 0 or a negative ring error. */
int ak__loop_iterate(ak_loop *loop, int64_t deadline_ns, bool (*done)(void *arg), void *arg);
/* Runs the loop (owner thread) until f, a future only this thread settles
 * (an op's) and pending just before the call, has settled, without a
 * deadline (ak_future_wait's for an op). The QD1 wait then skips its
 * second look at f before it blocks: f was pending just before, and only
 * what the loop runs can settle it. 0 or a negative ring error. */
int ak__loop_wait_local(ak_future *f, ak_loop *loop);

/* Hands the SQ to the kernel now rather than with the loop's next batch,
 * when `now` or on an SQPOLL ring (where that is only a store to the SQ
 * tail while the SQ thread is awake). Owner thread only. Inline (the
 * loop's head says whether it is SQPOLL): every op asks, and nearly every
 * answer is "not now". */
void ak__loop_flush_early(ak_loop *loop);
static inline void ak__loop_submit_early(ak_loop *loop, bool now);

/* Provided-buffer rings (register_files.c, for net/net_bufring.c): register
 * and unregister one with the ring, whether the kernel has them, and the
 * statistic counting a multishot receive that ran out of buffers. */
int ak__loop_register_buf_ring(ak_loop *loop, struct io_uring_buf_reg *reg);
void ak__loop_unregister_buf_ring(ak_loop *loop, int bgid);
bool ak__loop_has_buf_ring(const ak_loop *loop);
void ak__loop_count_buf_exhausted(ak_loop *loop);

/* Things other than ops that keep the loop alive (owner thread only). */
void ak__loop_alive_add(ak_loop *loop, int delta);

/* The loop's pool (created on first use). */
ak_pool *ak__loop_pool(ak_loop *loop);

/* The start of every struct ak_loop (core/loop_internal.h), visible to all
 * layers so that the owner check, made by every op and most combinators, is
 * one compare inline instead of a call. */
typedef struct ak__loop_head {
  const void *owner; /* token of the owning thread */
  bool sqpoll;       /* the ring has an SQ thread: every op is flushed early */
  /* Bit n: opcode n is in the kernel's probe, or the backend is epoll (its
   * own path for every op); what ak__loop_has_opcode answers for n < 64
   * without a call, since every op asks at submission. */
  uint64_t opcode_mask;
} ak__loop_head;

static inline bool ak__loop_owned_by_caller(const ak_loop *loop)
{
  return ((const ak__loop_head *)(const void *)loop)->owner == ak__thread_token();
}

static inline void ak__loop_submit_early(ak_loop *loop, bool now)
{
  if (AK__UNLIKELY(now || ((const ak__loop_head *)(const void *)loop)->sqpoll))
    ak__loop_flush_early(loop);
}

/* Timer internals (timer.c). */
typedef struct ak__timer_heap {
  ak_timer **items;
  size_t count;
  size_t cap;
  uint64_t seq;
} ak__timer_heap;
void ak__timers_free_all(ak_loop *loop);
/* Runs due timers; returns the earliest deadline left or -1. */
int64_t ak__timers_run(ak_loop *loop, int64_t now);
/* The earliest deadline in the heap now, or -1 (what bounds the wait). */
int64_t ak__timers_next(const ak_loop *loop);

/* ---- 3. Operation records -------------------------------------------------
 *
 * Every ring operation is an ak__op. Lifecycle, all on the loop's thread:
 *   op = ak__op_new(loop, kind);        its future is part of the record
 *   fill op->data (the op's own params, which the kernel may read later)
 *   op->prep = fn that fills the SQE;   op->complete = fn per CQE (optional)
 *   op->blocking = fn for the pool path (optional)
 *   f = ak__op_submit(op);              returns the caller's reference
 * The op stays in flight until the kernel has posted every CQE it owes (the
 * op's own, a linked timeout's); only then does its future settle
 * (ak__op_finish), and the op's reference on it goes. The record is the
 * future's: it is recycled when the future's last reference goes, before
 * or after the settle, on any thread (op.c's per-thread record cache), so a
 * plain op costs one record, not a record and a future.
 */

enum ak__op_kind {
  AK_OP_NOP = 0,
  AK_OP_TIMEOUT,
  AK_OP_READ,
  AK_OP_WRITE,
  AK_OP_CANCEL,    /* internal cancel requests */
  AK_OP_WAKEUP,    /* the loop's eventfd read */
  /* fs.c, net.c... append their kinds below; the names go in op.c. */
  AK_OP_OPENAT,
  AK_OP_CLOSE,
  AK_OP_READV,
  AK_OP_WRITEV,
  AK_OP_FSYNC,
  AK_OP_FALLOCATE,
  AK_OP_STATX,
  AK_OP_RENAMEAT,
  AK_OP_UNLINKAT,
  AK_OP_MKDIRAT,
  AK_OP_SPLICE,
  AK_OP_SOCKET,
  AK_OP_CONNECT,
  AK_OP_ACCEPT,
  AK_OP_RECV,
  AK_OP_SEND,
  AK_OP_SENDMSG,
  AK_OP_RECVMSG,
  AK_OP_SHUTDOWN,
  AK_OP_POLL,
  AK_OP_LINKAT,
  AK_OP_SYMLINKAT,
  AK_OP_READLINKAT, /* the pool only: io_uring has no readlink */
  AK_OP_DIRLIST,    /* the pool only: io_uring has no getdents */
  AK_OP_BATCH,     /* a batch or chain of SQEs as one op (batch_ring.c) */
  AK_OP_KIND_COUNT
};

typedef struct ak__op ak__op;

/* Fills sqe for op (everything but user_data, which op.c sets). */
typedef void (*ak__op_prep_fn)(ak__op *op, struct io_uring_sqe *sqe);

/* The kernel is done with op (every CQE it owed has come; res is the op's
 * own). The function settles the future and frees the op, usually through
 * ak__op_finish. For a multishot op it is called for every CQE, with
 * IORING_CQE_F_MORE in flags while more will come. When NULL, the future
 * settles with res. */
typedef void (*ak__op_complete_fn)(ak__op *op, int res, unsigned flags);

/* The pool path: does the operation with a blocking syscall on a worker and
 * returns its result (>= 0 or -errno). Runs on a pool thread: it may read
 * op->data but touches nothing of the loop. */
typedef int64_t (*ak__op_blocking_fn)(ak__op *op);

/* Closes a resource (fd) an op created after its future was cancelled. */
typedef void (*ak__op_discard_fn)(ak__op *op, int res);

/* The epoll backend's path (core/backend_epoll.c): one attempt at the
 * operation that never blocks (MSG_DONTWAIT, RWF_NOWAIT...). ready is true
 * when epoll has just reported the fd ready in the op's direction. Returns
 * the result (>= 0 or -errno), AK__OP_TRY_WAIT to wait for readiness in
 * op->ep_dir's direction (the function may change it), or AK__OP_TRY_POOL
 * to run op->blocking on the pool instead (a regular file). Runs on the
 * loop's thread. */
typedef int64_t (*ak__op_try_fn)(ak__op *op, bool ready);
#define AK__OP_TRY_WAIT (INT64_MIN + 1)
#define AK__OP_TRY_POOL (INT64_MIN + 2)

/* op->ep_dir: the direction an attempt waits for, and how to attempt. */
enum {
  AK__EP_IN = 1 << 0,      /* readable (recv, accept, read) */
  AK__EP_OUT = 1 << 1,     /* writable (send, connect, write) */
  AK__EP_NOW = 1 << 2,     /* attempt at submission whatever the fd's hint */
  AK__EP_ONCE = 1 << 3,    /* the attempt may block unless ready: one per
                              readiness report (accept, tty reads) */
  AK__EP_DRAINED = 1 << 4, /* set by an attempt that read less than asked:
                              the next read on the fd waits first */
  AK__EP_CHECKED = 1 << 5, /* ak__ep_try_rw: the fd is not a regular file */
  AK__EP_PLAIN = 1 << 6,   /* ak__ep_try_rw: no RWF_NOWAIT here (tty) */
};

enum {
  AK__OP_DATA_SIZE = 192,
};

enum {
  AK__OPF_QUEUED = 1 << 0,      /* waiting for CQ room (not yet in the SQ) */
  AK__OPF_NO_OPCODE = 1 << 1,   /* the probe says the kernel lacks the opcode:
                                   take the pool path (needs op->blocking) */
  AK__OPF_SUBMITTED = 1 << 2,   /* in the SQ or the kernel */
  AK__OPF_MULTISHOT = 1 << 3,   /* completes several times (F_MORE) */
  AK__OPF_CANCEL_SENT = 1 << 4,
  AK__OPF_DEADLINE = 1 << 5,    /* a linked timeout follows the SQE */
  AK__OPF_TIMED_OUT = 1 << 6,   /* the linked timeout fired */
  AK__OPF_ON_POOL = 1 << 7,     /* running on the pool path */
  AK__OPF_CREATES = 1 << 8,     /* result is a resource (fd) to discard */
  AK__OPF_SOCKET = 1 << 9,      /* the SQE's fd is a socket the op uses: a
                                   registered one goes by its slot */
  AK__OPF_POOL_DEADLINE = 1 << 10, /* epoll: moved to the pool with its
                                     deadline timer (backend_epoll.c) */
  AK__OPF_MULTI = 1 << 11,      /* a batch or chain: writes its own SQEs
                                   (batch_ring.c), tagged AK__TAG_MULTI */
  AK__OPF_PLAIN = 1 << 12,      /* set when it went into the SQ with no
                                   complete hook, an opcode the kernel has
                                   done before on the loop (its state never
                                   leaves 1) and no latency histogram: its
                                   CQE may settle it inline (loop_internal.h,
                                   ak__op_done_is_plain) */
};

struct ak__op {
  ak_future future;               /* first: the op's future is the record's
                                     (ak__op_of); the op holds a reference
                                     until it finishes */
  ak_loop *loop;
  ak_future *fut;                 /* &future */
  ak__op *next;                   /* admission queue link */
  ak__op_prep_fn prep;
  ak__op_complete_fn complete;    /* NULL: settle with res */
  ak__op_blocking_fn blocking;    /* NULL: no pool path */
  ak__op_discard_fn discard;      /* with AK__OPF_CREATES */
  ak__op_try_fn attempt;          /* epoll backend: non-blocking try; NULL:
                                     the pool (ak__op_set_try sets it) */
  ak_future *pool_fut;            /* the pool path's task, while ON_POOL */
  int64_t submit_ns;              /* for the latency histogram */
  struct io_uring_sqe *sqe;       /* while IN_SQ: where it sits */
  int res;                        /* the op's own CQE res, once it came */
  uint16_t flags;                 /* AK__OPF_* */
  uint8_t kind;                   /* enum ak__op_kind */
  uint8_t sqe_flags;              /* IOSQE_* to add (fixed file...) */
  uint16_t owed;                  /* CQEs still owed by the kernel */
  uint16_t slots;                 /* CQ slots reserved (1, 2 with deadline,
                                     a batch's op count) */
  struct __kernel_timespec deadline; /* read by the kernel for the link */
  /* The epoll backend's (core/backend_epoll.c); unused on io_uring. */
  ak__op *ep_prev;                /* an fd's waiters, the timed or done list */
  ak__op *ep_next;
  ak_timer *ep_timer;             /* deadline, or ak_timeout's own timer */
  int ep_fd;                      /* the fd the attempt waits on */
  uint8_t ep_dir;                 /* AK__EP_* */
  uint8_t ep_state;               /* where the op is (backend_epoll.c) */
  _Alignas(16) unsigned char data[AK__OP_DATA_SIZE]; /* the op's params */
};

/* Gives op a non-blocking attempt on fd for the epoll backend (dir: the
 * AK__EP_* flags). Harmless on io_uring, which never calls it. */
static inline void ak__op_set_try(ak__op *op, ak__op_try_fn fn, int fd, unsigned dir)
{
  op->attempt = fn;
  op->ep_fd = fd;
  op->ep_dir = (uint8_t)dir;
}

/* The result of a non-blocking syscall as an attempt's answer: EAGAIN means
 * wait, unless the caller asked for MSG_DONTWAIT itself (then it is the
 * answer, as io_uring gives it). */
static inline int64_t ak__try_result(ssize_t n, bool user_nowait)
{
  if (n >= 0)
    return n;
  if ((errno == EAGAIN || errno == EWOULDBLOCK) && !user_nowait)
    return AK__OP_TRY_WAIT;
  return -errno;
}

/* The epoll backend's attempt for reads and writes of any fd: a regular
 * file or block device goes to the pool (AK__OP_TRY_POOL); a pipe, socket
 * or tty is read with RWF_NOWAIT at offset -1 (io_uring ignores the offset
 * of a stream file too, and *offset is set so), or after readiness where
 * RWF_NOWAIT is not supported. */
int64_t ak__ep_try_rw(ak__op *op, int fd, const struct iovec *iov, int iovcnt, int64_t *offset,
                      int rw_flags, bool write, bool ready);

/* Whether the loop runs on the epoll backend (no io_uring). */
bool ak__loop_is_epoll(const ak_loop *loop);

/* The params of an op, as the file's own struct (each file asserts once
 * that its struct fits AK__OP_DATA_SIZE). */
#define AK__OP_DATA(op, type) ((type *)(void *)(op)->data)

/* A thread's recycled op records: an op's future is its record's (struct
 * ak__op), so the record goes back when that future's last reference goes,
 * on whatever thread drops it, and after its loop may be gone: a cache per
 * thread, not per loop, bounded (op.c). Its room starts at 0 in a new
 * thread, so that the one test of the common recycle also catches the
 * first (which registers the thread-exit flush, future.c) and a full cache
 * (the record goes to the allocator). Here, not in core, for ak__op_new. */
typedef struct ak__op_record_cache {
  ak__op *head;                   /* linked through ->next */
  unsigned room;                  /* records it may still take */
  bool registered;                /* the thread-exit flush is registered */
} ak__op_record_cache;
extern AK__TLS ak__op_record_cache ak__op_records;
extern const ak__future_kind ak__op_future_kind;

/* What never changes in an op record while the thread's cache recycles it
 * (its future's kind and qnode.run, op->fut): set once, when the
 * allocator makes it (ak__op_new_slow). */
static inline void ak__op_record_made(ak__op *op) {
  op->future.kind = &ak__op_future_kind;
  op->future.qnode.run = ak__future_run_callbacks;
  op->fut = &op->future;
}

/* Initialises an op record for its next op (ak__op_record_made was done
 * when it was made). */
static inline __attribute__((always_inline)) ak__op *ak__op_init(ak__op *op, ak_loop *loop,
                                                                 unsigned kind) {
  ak_future *f = &op->future;
  ak__future_init_use(f, loop, 2); /* the op's and the caller's (ak__op_submit) */
  op->loop = loop;
  op->next = NULL;
  op->prep = NULL;
  op->complete = NULL;
  op->blocking = NULL;
  op->discard = NULL;
  op->attempt = NULL;
  op->pool_fut = NULL;
  op->sqe = NULL;
  op->res = 0;
  op->flags = 0;
  op->kind = (uint8_t)kind;
  op->owed = 0;
  op->slots = 1;
  op->sqe_flags = 0;
  return op;
}

/* ak__op_init for an op that goes into the SQ with its SQE written by its
 * maker (fs.c's direct read or write: no prep, no pool path, no epoll
 * attempt, never parked): complete is NULL, but its other hooks (prep,
 * blocking, discard, attempt), next and pool_fut are left from the
 * record's last use, as nothing reads them for such an op (prep at a
 * general submission or admission, blocking only while the opcode's state
 * is unknown, discard with AK__OPF_CREATES, attempt on epoll, next while
 * parked, pool_fut while AK__OPF_ON_POOL), and its caller's
 * ak__op_lean_account sets owed, sqe and flags. */
static inline __attribute__((always_inline)) void ak__op_init_direct(ak__op *op, ak_loop *loop,
                                                                     unsigned kind) {
  ak__future_init_use(&op->future, loop, 2);
  op->loop = loop;
  op->complete = NULL;
  op->res = 0;
  op->kind = (uint8_t)kind;
  op->slots = 1;
  op->sqe_flags = 0;
}

/* ak__op_new with an empty cache: the allocator. */
ak__op *ak__op_new_slow(ak_loop *loop, unsigned kind);

/* A new op of kind on loop, its future pending with two references (the
 * op's, and the caller's, which ak__op_submit hands out). NULL on ENOMEM.
 * Must be called on the owner thread. Inline: with the submission a tail
 * call, a read's submission then makes no call before it (no registers
 * saved for one). */
static inline __attribute__((always_inline)) ak__op *ak__op_new(ak_loop *loop, unsigned kind) {
  ak__op *op = ak__op_records.head;
  if (AK__UNLIKELY(op == NULL))
    return ak__op_new_slow(loop, kind);
  ak__op_records.head = op->next;
  ak__op_records.room++;
  return ak__op_init(op, loop, kind);
}

/* Hands op to the ring (or the admission queue, or the pool path) and
 * returns the future with a reference for the caller. */
ak_future *ak__op_submit(ak__op *op);
/* ak__op_submit, then the SQ handed to the kernel at once when now or on
 * an SQPOLL ring (ak__loop_submit_early): one call, which a caller can
 * make last. */
ak_future *ak__op_submit_early(ak__op *op, bool now);

/* Hands op's loop's SQ to the kernel now (ak__loop_flush_early) and returns
 * op's future: the last call of an op submitted with AK_RW_SUBMIT_NOW or on
 * an SQPOLL ring, made as a jump. */
ak_future *ak__op_flush_early(ak__op *op);

/* A future that failed at once with err on loop (bad arguments, wrong
 * thread). NULL on ENOMEM. */
ak_future *ak__future_failed(ak_loop *loop, int err, const char *detail);

/* Public op functions start with this: ops are made on the owner thread. */
#define AK__REQUIRE_OWNER(loop, what)                         \
  do {                                                        \
    if (!ak__loop_owned_by_caller(loop))                      \
      return ak__future_failed((loop), AK_ENOTOWNER, (what)); \
  } while (0)

/* Settles op's future with res and frees op (for complete fns). */
void ak__op_finish(ak__op *op, int64_t res);

/* Whether the kernel supports an opcode (probed at loop start). */
bool ak__loop_has_opcode_slow(const ak_loop *loop, unsigned opcode);
static inline bool ak__loop_has_opcode(const ak_loop *loop, unsigned opcode)
{
  if (AK__LIKELY(opcode < 64))
    return (((const ak__loop_head *)(const void *)loop)->opcode_mask >> opcode) & 1;
  return ak__loop_has_opcode_slow(loop, opcode);
}

/* Adds a linked kernel timeout to an op not yet handed to the kernel.
 * Returns 0, or -EBUSY if it is too late for a linked timeout. */
int ak__op_set_deadline(ak__op *op, int64_t timeout_ns);

/* The op behind a future, or NULL if f is not an op future. */
ak__op *ak__op_of(ak_future *f);

/* Called by loop.c for each CQE whose user_data is an op. */
void ak__op_cqe(ak__op *op, int res, unsigned flags, int tag);

/* Submits parked ops while CQ room allows (loop.c calls it after reaping). */
void ak__op_admit_queued(ak_loop *loop);

/* Cancels the ops parked for CQ room for which uses(op, fd) is true;
 * returns how many (ak_cancel_fd). */
unsigned ak__op_cancel_parked(ak_loop *loop, bool (*uses)(const ak__op *op, int fd), int fd);

/* Cancels everything in flight (ak_loop_free). */
void ak__op_cancel_all(ak_loop *loop);

/* user_data tags in the low bits (records are 8-byte aligned). */
enum {
  AK__TAG_OP = 0,       /* the op's own CQE */
  AK__TAG_DEADLINE = 1, /* the op's linked timeout CQE */
  AK__TAG_IGNORE = 2,   /* a cancel request's own CQE */
  AK__TAG_WAKEUP = 3,   /* the eventfd read */
  AK__TAG_MULTI = 4,    /* one SQE of a batch op; its index in bits 48..63
                           (user-space pointers have 47 bits); the only
                           tag with bit 2 set (loop.c's reap tests it) */
  AK__TAG_MASK = 7,
};
#define AK__TAG_INDEX_SHIFT 48
#define AK__TAG_PTR_MASK ((UINT64_C(1) << AK__TAG_INDEX_SHIFT) - 1 - AK__TAG_MASK)

/* ---- 3b. Batches and chains on the ring (batch_ring.c) ----------------------
 * N SQEs as one op and one future: written into the SQ together (the SQ is
 * flushed first if it cannot take them all, so a chain is never split by a
 * submission boundary), linked for a chain, one CQE per chain where
 * IOSQE_CQE_SKIP_SUCCESS may be used. The builder and the epoll path are
 * src/batch's; the kernel rules are docs/batch.md's. */

/* One operation of a batch: what success in full is and what the SQE
 * (written apart, see ak__sq_stage) does not say. */
typedef struct ak__bent {
  int64_t full;                   /* the result of success in full; -1: any >= 0 */
  int fd;                         /* the real fd (the SQE may hold a slot) */
  uint8_t hard;                   /* link to the next is a HARDLINK */
  uint8_t creates;                /* the result is an fd (openat): closed if cancelled */
  uint8_t barrier;                /* the ops after it start once it and all
                                     before it have completed */
  uint8_t socket;                 /* send/recv: MSG_WAITALL in a chain */
} ak__bent;

/* Where a builder writes its ops' SQEs (src/batch's builder, batch_ring.c):
 * op i's is base[(pos0 + i) & mask], everything but user_data and the
 * link flags, filled by liburing's prep helpers.
 *
 * Staged, base is the loop's SQ and op 0's slot is the SQ's tail: the
 * builder writes straight into the free slots past the tail, and the
 * submission only tags, links and publishes them (no 64-byte copy per op).
 * The builder stages when its first op is added on a ring loop whose SQ
 * has room, for as many ops as that room (limit). Nothing else may take
 * those slots meanwhile: anything that takes an SQE from the loop
 * (ak__loop_get_sqe, another batch's submission) first moves the staged
 * SQEs into the builder's templates (the stage is evicted), and so does
 * the builder when its ops outgrow the room, or when it goes a way other
 * than one ring submission (barriers, a deadline). Not staged, base is
 * the templates (pos0 0, mask ~0): on the epoll backend always. */
typedef struct ak__sq_stage {
  struct io_uring_sqe *base;      /* the SQ's SQEs (staged), or tmpl */
  unsigned pos0;                  /* op 0's SQ position (staged), or 0 */
  unsigned mask;                  /* the SQ's ring mask (staged), or ~0 */
  unsigned n;                     /* ops added (the builder's count) */
  unsigned limit;                 /* adds stay on the builder's fast path while
                                     n < limit; 0 before the first add and
                                     after a submission */
  unsigned cap;                   /* the builder's capacity */
  struct io_uring_sqe *tmpl;      /* cap templates */
  ak_loop *loop;
} ak__sq_stage;

/* The builder's first add (n == 0, not staged): stages in the SQ where the
 * loop allows, and sets limit. Owner thread. */
void ak__sq_stage_begin(ak__sq_stage *st);
/* Ends staging (no-op when not staged): the staged SQEs are copied into
 * the templates (keep) or given up (a submission took them in place, a
 * reset); base goes back to the templates; a limit > 0 becomes cap. */
void ak__sq_stage_end(ak__sq_stage *st, bool keep);

enum {
  AK__BATCH_CHAIN = 1u << 0,   /* IOSQE_IO_LINK between the ops */
  AK__BATCH_NO_SKIP = 1u << 1, /* never IOSQE_CQE_SKIP_SUCCESS (tests) */
  AK__BATCH_DRAIN = 1u << 2,   /* barriers as IOSQE_IO_DRAIN (the loop's
                                  AK_LOOP_DRAIN_BARRIERS; batch_ring.c) */
  AK__BATCH_SOCKETS = 1u << 3, /* some op is a send or recv (a registered
                                  socket goes by its slot) */
};

/* Whether loop takes barriers as IOSQE_IO_DRAIN (AK_LOOP_DRAIN_BARRIERS on
 * the ring backend). */
bool ak__loop_drains_barriers(const ak_loop *loop);

/* A result still to come: results[] of a chain or a drained batch while in
 * flight (batch_ring.c: a plain batch does not mark them), and of a run
 * (src/batch). */
#define AK__BATCH_PENDING INT64_MIN

/* Whether result res of e broke a chain (an error, or short of full). */
static inline bool ak__bent_failed(const ak__bent *e, int64_t res)
{
  return res < 0 || (e->full >= 0 && res != e->full);
}

/* Submits ents[0..n) with their SQEs (read until the future settles) as
 * one op on loop (io_uring only, owner thread): in place when stage (may
 * be NULL) still holds them in the SQ, else copied from tmpl[0..n).
 * results[i] receives op i's result. The
 * future's value: a batch, how many results are >= 0; a chain, the index of
 * the first failure (n if none), with -ECANCELED after it. Cancelled with
 * some op cancelled: CANCELLED. n larger than the SQ or the CQ: fails -E2BIG. */
ak_future *ak__batch_ring_submit(ak_loop *loop, const ak__bent *ents,
                                 const struct io_uring_sqe *tmpl, ak__sq_stage *stage,
                                 unsigned n, int64_t *results, unsigned mode);
/* The largest n ak__batch_ring_submit takes on loop (on epoll, what it
 * would take on the ring the loop was asked for). */
unsigned ak__batch_ring_max(const ak_loop *loop);

/* ---- 4. The pool -------------------------------------------------------- */

/* Hands the pool tasks that loop's callbacks submitted to their pool, in one
 * batch (owner thread). Cheap when there are none. */
void ak__pool_flush_loop(ak_loop *loop);

/* A future of kind (with data) for a callable fn(arg, self) that will run
 * elsewhere (a pool task, ak_loop_call): bound to the calling thread's loop
 * when it owns one, which then stays alive until the settle reaches it.
 * One reference. NULL on ENOMEM. */
ak_future *ak__callable_future_new(const ak__future_kind *kind, void *data, ak_work_fn fn,
                                   void *arg);
/* A task future for fn(arg) on pool, not yet queued (one reference): bound
 * to the caller's loop when the caller owns one. NULL on ENOMEM. */
ak_future *ak__pool_task_new(ak_pool *pool, ak_work_fn fn, void *arg);
/* Queues a task made by ak__pool_task_new, handing over one reference.
 * false if the pool has stopped (the reference stays the caller's). */
bool ak__pool_enqueue(ak_pool *pool, ak_future *f);

/* The process-wide pool for loops given none (created on first use, with
 * 2..4 threads; freed at exit). */
ak_pool *ak__shared_pool(void);

#endif /* AK_CORE_INTERNAL_H */
