/* future.c: the future itself: the state word and its lock, references, the
 * outcome, callbacks and where they run, waiting, cancellation requests,
 * adoption, and the per-thread recycling of future records and callback
 * nodes (no malloc per future in steady state).
 *
 * Not here: combinators (then.c, join.c, iter.c, deadline.c), the loop's
 * queues (loop.c), ring operations (op.c), pool tasks (pool.c).
 *
 * Locking: every change to the state word goes through its LOCK bit, so a
 * plain store of the new word both publishes and unlocks. The lock guards the
 * callback list and the outcome fields of a pending future; it is held for a
 * few instructions and never across a call out.
 */
#define _GNU_SOURCE
#include <limits.h>
#include <linux/futex.h>
#include <pthread.h>
#include <sched.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "core/loop_internal.h"

/* ---- Per-thread caches ----------------------------------------------------
 * A freed future goes to the freeing thread's cache, whatever thread made it:
 * records are malloc'ed one by one, so any thread may hand them back. The
 * cache is bounded. What a full cache cannot take goes, 32 records at a
 * time, to a shared list that a thread whose cache is empty takes whole
 * before it calls the allocator; only past the shared list's own bound does a
 * record go back to the allocator. Without it a loop's futures released last
 * on a pool worker (an op's and its pool task's, always when both threads
 * share one CPU: the worker's release comes after the loop's callback) left
 * the loop's cache dry and the worker's full: a malloc and a free per future
 * for good. */

enum {
  AK__CACHE_MAX_FUTURES = 8192,
  AK__CACHE_MAX_CBNODES = 8192,
  AK__SHARE_BATCH = 32,          /* records per push to the shared list */
  AK__SHARED_MAX_FUTURES = 65536 /* the shared list's bound (approximate) */
};

typedef struct ak__thread_cache {
  ak_future *futures;   /* linked through ->data */
  size_t room;          /* futures the cache may still take: 0 in a new
                           thread (the exit flush is not registered yet)
                           and in a full cache, so that one test in the
                           common recycle covers both rare cases */
  ak__cbnode *cbnodes;  /* linked through ->next */
  size_t ncbnodes;
  bool exit_hook;       /* the thread-exit flush is registered */
  unsigned noutgoing;   /* a full cache's records on their way to the */
  ak_future *outgoing;  /*   shared list (a chain, its last record kept */
  ak_future *outgoing_last; /* to link it in one step) */
} ak__thread_cache;

static AK__TLS ak__thread_cache ak__cache;
/* The shared list, linked through ->data: pushed a chain at a time, taken
 * whole (an exchange: no ABA). Its count is approximate (a bound only). */
static _Atomic(ak_future *) ak__shared_futures;
static _Atomic size_t ak__shared_count;
static pthread_key_t ak__cache_key;
static pthread_once_t ak__cache_once = PTHREAD_ONCE_INIT;

/* Futures start on a cache line (see struct ak_future). The allocator
 * promises 16 bytes, so a record is allocated with room to align it and
 * keeps the address it was given in the word just before itself. */
enum { AK__LINE = 64 };

static __attribute__((noinline, cold)) ak_future *future_malloc(void) {
  char *base = ak__malloc(sizeof(ak_future) + AK__LINE + sizeof(void *));
  if (AK__UNLIKELY(!base))
    return NULL;
  uintptr_t at = ((uintptr_t)base + sizeof(void *) + AK__LINE - 1) & ~(uintptr_t)(AK__LINE - 1);
  ((void **)at)[-1] = base;
  return (ak_future *)at;
}

static void future_mfree(ak_future *f) { ak__free(((void **)f)[-1]); }

static size_t free_chain(ak_future *f) {
  size_t n = 0;
  for (; f; n++) {
    ak_future *next = f->data;
    future_mfree(f);
    f = next;
  }
  return n;
}

static void cache_flush(ak__thread_cache *c) {
  free_chain(c->futures);
  c->futures = NULL;
  free_chain(c->outgoing);
  c->outgoing = c->outgoing_last = NULL;
  c->noutgoing = 0;
  c->room = c->exit_hook ? AK__CACHE_MAX_FUTURES : 0;
  while (c->cbnodes) {
    ak__cbnode *n = c->cbnodes;
    c->cbnodes = n->next;
    ak__free(n);
  }
  c->ncbnodes = 0;
  ak__op_records_flush(); /* op.c's records (an op's future is its record) */
}

static void flush_with_shared(ak__thread_cache *c);
static void cache_thread_exit(void *arg) { flush_with_shared(arg); }
static void cache_key_create(void) { pthread_key_create(&ak__cache_key, cache_thread_exit); }

/* Until then the cache holds no future and its room is 0 (see room); from
 * then on room is what it may take. A thread's first recycled callback node
 * registers it too: room was left at 0 then, and the thread's cache took no
 * future for good (each freed, each made by malloc; on a pool worker, that
 * was every future of a loop's ops it released last). */
static void cache_register_exit(void) {
  pthread_once(&ak__cache_once, cache_key_create);
  pthread_setspecific(ak__cache_key, &ak__cache);
  ak__cache.exit_hook = true;
  ak__cache.room = AK__CACHE_MAX_FUTURES;
}

void ak__thread_cache_hook(void) {
  if (!ak__cache.exit_hook)
    cache_register_exit();
}

/* The shared list is freed too, at a flush and at a thread's exit:
 * ak_replace_allocator's precondition is that no cache holds records, a
 * thread's records are promised back at its exit (what it handed to the
 * list and no thread took is freed then), and no thread owns that list. */
static void flush_with_shared(ak__thread_cache *c) {
  cache_flush(c);
  size_t n = free_chain(atomic_exchange_explicit(&ak__shared_futures, NULL, memory_order_acquire));
  atomic_fetch_sub_explicit(&ak__shared_count, n, memory_order_relaxed);
}

void ak_thread_cache_flush(void) { flush_with_shared(&ak__cache); }

/* A full cache's record: to the shared list, a chain of AK__SHARE_BATCH
 * at a time (one CAS per chain), or to the allocator past the list's bound. */
static void share(ak_future *f) {
  f->data = ak__cache.outgoing;
  if (!ak__cache.outgoing)
    ak__cache.outgoing_last = f;
  ak__cache.outgoing = f;
  if (++ak__cache.noutgoing < AK__SHARE_BATCH)
    return;
  ak_future *chain = ak__cache.outgoing, *last = ak__cache.outgoing_last;
  ak__cache.outgoing = ak__cache.outgoing_last = NULL;
  ak__cache.noutgoing = 0;
  if (atomic_load_explicit(&ak__shared_count, memory_order_relaxed) >= AK__SHARED_MAX_FUTURES) {
    free_chain(chain);
    return;
  }
  atomic_fetch_add_explicit(&ak__shared_count, AK__SHARE_BATCH, memory_order_relaxed);
  ak_future *head = atomic_load_explicit(&ak__shared_futures, memory_order_relaxed);
  do {
    last->data = head;
  } while (!atomic_compare_exchange_weak_explicit(&ak__shared_futures, &head, chain,
                                                  memory_order_release, memory_order_relaxed));
}

/* An empty cache's refill from the shared list, before the allocator: one
 * record returned, the rest kept as far as the cache has room. */
static ak_future *take_shared(void) {
  if (!atomic_load_explicit(&ak__shared_futures, memory_order_relaxed))
    return NULL;
  ak_future *f = atomic_exchange_explicit(&ak__shared_futures, NULL, memory_order_acquire);
  if (!f)
    return NULL;
  if (!ak__cache.exit_hook)
    cache_register_exit();
  size_t taken = 0;
  for (ak_future *r = f->data; r; taken++) {
    ak_future *next = r->data;
    if (ak__cache.room > 0) {
      r->data = ak__cache.futures;
      ak__cache.futures = r;
      ak__cache.room--;
    } else {
      future_mfree(r);
    }
    r = next;
  }
  atomic_fetch_sub_explicit(&ak__shared_count, taken + 1, memory_order_relaxed);
  return f;
}

/* The rare cases of future_recycle, whole: an empty cache (register the
 * thread-exit flush once) or a full one (to the shared list). A call the
 * common path makes last (a jump), so that path needs no frame. */
static __attribute__((noinline)) void recycle_slow(ak_future *f) {
  if (ak__cache.exit_hook) {
    share(f); /* full */
    return;
  }
  cache_register_exit(); /* the thread's first recycle */
  f->data = ak__cache.futures;
  ak__cache.futures = f;
  ak__cache.room = AK__CACHE_MAX_FUTURES - 1;
}

static inline void future_recycle_plain(ak_future *f) {
  size_t room = ak__cache.room;
  if (AK__UNLIKELY(room == 0)) {
    recycle_slow(f);
    return;
  }
  f->data = ak__cache.futures;
  ak__cache.futures = f;
  ak__cache.room = room - 1;
}

/* A future's record back to its cache: an op's is its op record (op.c). */
static inline void future_recycle(ak_future *f) {
  if (f->kind == &ak__op_future_kind) {
    ak__op_record_put(AK__CONTAINER_OF(f, ak__op, future));
    return;
  }
  future_recycle_plain(f);
}

static ak__cbnode *cbnode_alloc(void) {
  ak__cbnode *n = ak__cache.cbnodes;
  if (n) {
    ak__cache.cbnodes = n->next;
    ak__cache.ncbnodes--;
    return n;
  }
  return ak__malloc(sizeof(*n));
}

static void cbnode_recycle(ak__cbnode *n) {
  if (ak__cache.ncbnodes >= AK__CACHE_MAX_CBNODES) {
    ak__free(n);
    return;
  }
  if (!ak__cache.exit_hook)
    cache_register_exit();
  n->next = ak__cache.cbnodes;
  ak__cache.cbnodes = n;
  ak__cache.ncbnodes++;
}

/* ---- The state word's lock ---------------------------------------------- */

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

/* The contended path, out of line so the common one stays small. */
static __attribute__((noinline)) uint32_t word_lock_slow(ak_future *f) {
  uint32_t old = atomic_load_explicit(&f->state, memory_order_relaxed);
  unsigned spins = 0;
  for (;;) {
    if (!(old & AK__F_LOCK)) {
      if (atomic_compare_exchange_weak_explicit(&f->state, &old, old | AK__F_LOCK,
                                                memory_order_acquire, memory_order_relaxed))
        return old;
      continue;
    }
    /* Held for a few instructions; but on two vCPUs the holder may be
     * preempted, so stop burning the core after a while. */
    if (++spins > 64)
      sched_yield();
    else
      cpu_relax();
    old = atomic_load_explicit(&f->state, memory_order_relaxed);
  }
}

/* Takes the lock; returns the word as it was (without LOCK). */
static inline uint32_t word_lock(ak_future *f) {
  uint32_t old = atomic_load_explicit(&f->state, memory_order_relaxed) & ~AK__F_LOCK;
  if (AK__LIKELY(atomic_compare_exchange_weak_explicit(&f->state, &old, old | AK__F_LOCK,
                                                       memory_order_acquire, memory_order_relaxed)))
    return old;
  return word_lock_slow(f);
}

/* Takes the lock if nobody holds it, with one CAS: true and *old set to
 * the word as it was (without LOCK). The public calls' fast paths use it
 * and hand the contended case whole to an out-of-line twin, so that their
 * common path keeps nothing alive across a call. */
static inline bool word_trylock(ak_future *f, uint32_t *old) {
  *old = atomic_load_explicit(&f->state, memory_order_relaxed) & ~AK__F_LOCK;
  return atomic_compare_exchange_weak_explicit(&f->state, old, *old | AK__F_LOCK,
                                               memory_order_acquire, memory_order_relaxed);
}

/* Publishes word (which must not have LOCK) and unlocks. Pairs with the
 * acquire in word_lock and in the loads of ak_future_state & co. */
static inline void word_unlock(ak_future *f, uint32_t word) {
  atomic_store_explicit(&f->state, word, memory_order_release);
}

static long futex_call(_Atomic uint32_t *addr, int op, uint32_t val, const struct timespec *ts) {
  return syscall(SYS_futex, (uint32_t *)addr, op, val, ts, NULL, FUTEX_BITSET_MATCH_ANY);
}

/* ---- Creating, references, freeing --------------------------------------- */

static inline __attribute__((always_inline)) ak_future *future_init(ak_future *f, ak_loop *loop) {
  ak__future_init(f, loop);
  return f;
}

/* An empty cache: the shared list, else the allocator (a jump from
 * ak_future_new, which so needs no frame). */
static __attribute__((noinline, cold)) ak_future *future_new_slow(ak_loop *loop) {
  ak_future *f = take_shared();
  if (!f)
    f = future_malloc();
  return f ? future_init(f, loop) : NULL;
}

ak_future *ak_future_new(ak_loop *loop) {
  ak_future *f = ak__cache.futures;
  if (AK__UNLIKELY(f == NULL))
    return future_new_slow(loop);
  ak__cache.futures = f->data;
  ak__cache.room++;
  return future_init(f, loop);
}

ak_future *ak__future_new(ak_loop *loop, const ak__future_kind *kind, void *data) {
  ak_future *f = ak_future_new(loop);
  if (AK__LIKELY(f != NULL)) {
    f->kind = kind;
    f->data = data;
  }
  return f;
}

ak_future *ak_future_ref(ak_future *f) {
  atomic_fetch_add_explicit(&f->refs, 1, memory_order_relaxed);
  return f;
}

/* What a plain future does not have: kept out of the common free path. */
static __attribute__((noinline)) void free_extras(ak_future *f) {
  if (f->kind && f->kind->free_data)
    f->kind->free_data(f);
  if (f->dtor)
    f->dtor(f->value);
  if (f->detail)
    ak__free(f->detail);
  /* Callbacks of a future that never settled (nobody could settle it). */
  while (f->more_head) {
    ak__cbnode *n = f->more_head;
    f->more_head = n->next;
    cbnode_recycle(n);
  }
  if (f->adopted)
    ak_future_release(f->adopted);
}

/* Frees made while a free_extras runs on this thread (a then-step's input,
 * an adopted future, a join's inputs): linked through qnode.next, which a
 * future with no references left no longer uses, and freed by the outermost
 * call in a loop. So releasing a chain of any length runs in constant
 * stack, as the header promises. */
static AK__TLS struct {
  ak_future *head;
  bool active;
} ak__free_work;

static __attribute__((noinline)) void free_with_extras(ak_future *f) {
  if (ak__free_work.active) {
    f->qnode.next = (ak__qnode *)(void *)ak__free_work.head;
    ak__free_work.head = f;
    return;
  }
  ak__free_work.active = true;
  for (;;) {
    free_extras(f);
    future_recycle(f);
    f = ak__free_work.head;
    if (!f)
      break;
    ak__free_work.head = (ak_future *)(void *)f->qnode.next;
  }
  ak__free_work.active = false;
}

/* ak__future_free's body: inline in ak_future_release too, so that the
 * common frees (an op's record back to the thread's cache, a plain
 * future recycled) make no call. */
static inline __attribute__((always_inline)) void future_free_body(ak_future *f) {
  /* Most kinds (every ring op) have no free_data: they skip the call. The
   * four pointers are or-ed, one branch for all. */
  uintptr_t extras = (uintptr_t)f->dtor | (uintptr_t)f->detail | (uintptr_t)f->more_head |
                     (uintptr_t)(void *)f->adopted;
  const ak__future_kind *kind = f->kind;
  if (AK__UNLIKELY(extras != 0)) {
    free_with_extras(f);
    return;
  }
  if (kind) {
    /* An op's record is its future's (op.c): back to the op records. A
     * plain promise (no kind) does not pay for the test. */
    if (kind == &ak__op_future_kind) {
      ak__op_record_put(AK__CONTAINER_OF(f, ak__op, future));
      return;
    }
    if (AK__UNLIKELY(kind->free_data != NULL)) {
      free_with_extras(f);
      return;
    }
  }
  future_recycle_plain(f);
}

__attribute__((noinline)) void ak__future_free(ak_future *f) { future_free_body(f); }

void ak_future_release(ak_future *f) {
  /* acq_rel: the freeing thread sees every write made under other refs. */
  if (f && atomic_fetch_sub_explicit(&f->refs, 1, memory_order_acq_rel) == 1)
    future_free_body(f);
}

/* ---- Settling -------------------------------------------------------------- */

/* Queues node (whose run callback holds a reference to its future) where
 * f's callbacks run. Returns 0: a settle's last act, so that the settle can
 * end in a jump (no stack frame on its common path). */
static inline int schedule_node(ak_future *f, ak__qnode *node) {
  ak_loop *loop = f->loop;
  if (!loop)
    return ak__trampoline_push(node);
  if (AK__UNLIKELY(!ak__loop_owned_by_caller(loop)))
    return ak__loop_enqueue_remote(loop, node);
  ak__ready_push(loop, node);
  return 0;
}

static int trampoline_push_future(ak_future *f);

/* Queues f's own callbacks (its qnode, holding a reference); as
 * schedule_node, but a loopless one goes to the trampoline knowing what
 * its node is. */
static inline int schedule_future(ak_future *f) {
  ak_loop *loop = f->loop;
  if (!loop)
    return trampoline_push_future(f);
  return schedule_node(f, &f->qnode);
}

static inline int schedule_callbacks(ak_future *f) {
  /* The queue holds a reference until the callbacks have run. */
  atomic_fetch_add_explicit(&f->refs, 1, memory_order_relaxed);
  return schedule_future(f);
}

/* old: the word before the settle, with WAITERS and/or LOOP_WAITER. */
static __attribute__((noinline)) void wake_waiters(ak_future *f, uint32_t old) {
  if (old & AK__F_WAITERS)
    futex_call(&f->state, FUTEX_WAKE_PRIVATE, INT_MAX, NULL);
  /* A waiter on the loop's own thread sleeps in the ring, not the futex: a
   * settle on that thread is seen by the wait's "done" predicate without a
   * syscall (before, every QD1 op paid a FUTEX_WAKE nobody waited on). From
   * another thread the loop must be woken; the fence orders the settled
   * word before ak__loop_wake's load of `sleeping`, pairing with may_sleep's
   * store-then-recheck (the futex call used to be that barrier). */
  if ((old & AK__F_LOOP_WAITER) && f->loop && !ak__loop_owned_by_caller(f->loop)) {
    atomic_thread_fence(memory_order_seq_cst);
    ak__loop_wake(f->loop);
  }
}

/* What follows a settle's unlock: its callbacks queued (with a reference
 * of their own, or the caller's when ref_given), or the caller's reference
 * dropped. Every call here is the settle's last act, so the paths that end
 * in one keep nothing in registers across it. */
static inline __attribute__((always_inline)) int after_settle(ak_future *f, bool has_callbacks,
                                                              bool ref_given) {
  if (has_callbacks) {
    if (ref_given)
      return schedule_future(f); /* the caller's reference goes to the queue */
    return schedule_callbacks(f);
  }
  if (ref_given)
    ak__future_release_inline(f);
  return 0;
}

/* A settle with a waiter to wake: out of line, so the common settle (no
 * waiter) keeps no values alive across the wake. */
static __attribute__((noinline)) int after_settle_waking(ak_future *f, uint32_t waiters,
                                                         bool has_callbacks, bool ref_given) {
  wake_waiters(f, waiters);
  return after_settle(f, has_callbacks, ref_given);
}

/* Settles a locked, pending future; unlocks; returns 0 (every call it makes
 * is its last act: see schedule_node). The caller holds a reference. The
 * callback list is closed from here on (ak_future_on_settle sees the
 * settled state under the lock and queues late callbacks on their own). */
static inline __attribute__((always_inline)) int settle_locked_ref(ak_future *f, uint32_t old,
                                                                    ak_state state, int64_t result,
                                                                    bool ref_given) {
  bool has_callbacks = f->cb != NULL || (old & AK__F_BOUND);
  uint32_t word = (old & ~(AK__STATE_MASK | AK__F_WAITERS | AK__F_LOOP_WAITER)) | (uint32_t)state;
  /* Only the waiter bits travel past the unlock, so old need not stay live
   * in a register of its own (one instruction per settle). */
  uint32_t waiters = old & (AK__F_WAITERS | AK__F_LOOP_WAITER);
  f->result = result;
  word_unlock(f, word);
  /* LOOP_WAITER alone, settled on the loop's own thread (a QD1 op's wait):
   * the waiter sees it when the iteration returns; nothing to call. */
  if (AK__UNLIKELY(waiters) &&
      ((waiters & AK__F_WAITERS) || !ak__loop_owned_by_caller(f->loop)))
    return after_settle_waking(f, waiters, has_callbacks, ref_given);
  return after_settle(f, has_callbacks, ref_given);
}

static inline __attribute__((always_inline)) int settle_locked(ak_future *f, uint32_t old,
                                                               ak_state state, int64_t result) {
  return settle_locked_ref(f, old, state, result, false);
}

static __attribute__((noinline)) void drop_value(ak_future *f, void *replacement) {
  if (f->value != replacement)
    f->dtor(f->value);
}

int ak__future_settle(ak_future *f, ak_state state, int64_t result) {
  uint32_t old = word_lock(f);
  if (ak__is_settled_word(old)) {
    word_unlock(f, old);
    return AK_ESETTLED;
  }
  return settle_locked(f, old, state, result);
}

static ak_state state_for_result(int64_t result) {
  if (result >= 0)
    return AK_DONE;
  return result == -ECANCELED ? AK_CANCELLED : AK_FAILED;
}

int ak__future_finish(ak_future *f, int64_t result) {
  return ak__future_settle(f, state_for_result(result), result);
}

/* As ak__future_finish, consuming one reference of the caller's: a worker's
 * queue reference passes straight to the callbacks' queue (two atomic
 * operations fewer on a line other threads want). */
void ak__future_finish_owned(ak_future *f, int64_t result) {
  uint32_t old = word_lock(f);
  if (ak__is_settled_word(old)) {
    word_unlock(f, old);
    ak_future_release(f);
    return;
  }
  settle_locked_ref(f, old, state_for_result(result), result, true);
}

void ak__future_finish_owned_locked(ak_future *f, uint32_t old, int64_t result) {
  if (ak__is_settled_word(old)) {
    word_unlock(f, old);
    ak_future_release(f);
    return;
  }
  settle_locked_ref(f, old, state_for_result(result), result, true);
}

/* ak_future_set on a future whose value has a destructor already (set by
 * ak_future_set_value): the old value is dropped first, never leaked. Out
 * of line, so the common set makes no call before its last act. */
static __attribute__((noinline)) int set_replacing(ak_future *f, uint32_t old, int64_t result,
                                                   void *value, ak_destructor dtor) {
  drop_value(f, value);
  f->value = value;
  f->dtor = dtor;
  return settle_locked(f, old, AK_DONE, result);
}

static inline __attribute__((always_inline)) int set_locked(ak_future *f, uint32_t old,
                                                           int64_t result, void *value,
                                                           ak_destructor dtor) {
  if (ak__is_settled_word(old)) {
    word_unlock(f, old);
    return AK_ESETTLED;
  }
  if (AK__UNLIKELY(f->dtor != NULL))
    return set_replacing(f, old, result, value, dtor);
  f->value = value;
  f->dtor = dtor;
  return settle_locked(f, old, AK_DONE, result);
}

static __attribute__((noinline)) int set_contended(ak_future *f, int64_t result, void *value,
                                                   ak_destructor dtor) {
  return set_locked(f, word_lock_slow(f), result, value, dtor);
}

int ak_future_set(ak_future *f, int64_t result, void *value, ak_destructor dtor) {
  uint32_t old;
  if (AK__UNLIKELY(!word_trylock(f, &old)))
    return set_contended(f, result, value, dtor);
  return set_locked(f, old, result, value, dtor);
}

int ak_future_fail(ak_future *f, int err, const char *detail) {
  char *copy = detail ? ak__strdup(detail) : NULL;
  if (err >= 0)
    err = -EINVAL; /* a failure needs an error; do not settle DONE by mistake */
  uint32_t old = word_lock(f);
  if (ak__is_settled_word(old)) {
    word_unlock(f, old);
    ak__free(copy);
    return AK_ESETTLED;
  }
  if (copy) {
    ak__free(f->detail);
    f->detail = copy;
  }
  return settle_locked(f, old, state_for_result(err), err);
}

int ak_future_set_value(ak_future *f, void *value, ak_destructor dtor) {
  uint32_t old = word_lock(f);
  if (ak__is_settled_word(old)) {
    word_unlock(f, old);
    return AK_EINVALFUTURE;
  }
  if (f->dtor)
    drop_value(f, value);
  f->value = value;
  f->dtor = dtor;
  word_unlock(f, old);
  return 0;
}

int ak_future_set_detail(ak_future *f, const char *detail) {
  char *copy = detail ? ak__strdup(detail) : NULL;
  uint32_t old = word_lock(f);
  if (ak__is_settled_word(old)) {
    word_unlock(f, old);
    ak__free(copy);
    return AK_EINVALFUTURE;
  }
  char *previous = f->detail;
  f->detail = copy;
  word_unlock(f, old);
  ak__free(previous);
  return 0;
}

int ak__future_claim_compute(ak_future *f) {
  uint32_t old = word_lock(f);
  int rc = ak__is_settled_word(old) ? AK_ESETTLED : (old & AK__F_COMPUTE) ? -EBUSY : 0;
  word_unlock(f, rc == 0 ? old | AK__F_COMPUTE : old);
  return rc;
}

bool ak__future_start_running(ak_future *f) {
  /* One CAS when nobody holds the lock; the locked way otherwise. */
  uint32_t seen = atomic_load_explicit(&f->state, memory_order_relaxed) & ~AK__F_LOCK;
  if (ak__state_of(seen) == AK_PENDING && !(seen & AK__F_CANCEL_REQ) &&
      atomic_compare_exchange_strong_explicit(&f->state, &seen,
                                              (seen & ~AK__STATE_MASK) | AK_RUNNING,
                                              memory_order_acquire, memory_order_relaxed))
    return true;
  uint32_t old = word_lock(f);
  if (ak__state_of(old) != AK_PENDING || (old & AK__F_CANCEL_REQ)) {
    word_unlock(f, old);
    return false;
  }
  word_unlock(f, (old & ~AK__STATE_MASK) | AK_RUNNING);
  return true;
}

bool ak__future_settle_like(ak_future *dst, const ak_future *src) {
  uint32_t src_word = atomic_load_explicit(&src->state, memory_order_acquire);
  char *copy = src->detail ? ak__strdup(src->detail) : NULL;
  uint32_t old = word_lock(dst);
  if (ak__is_settled_word(old)) {
    word_unlock(dst, old);
    ak__free(copy);
    return false;
  }
  if (copy) {
    ak__free(dst->detail);
    dst->detail = copy;
  }
  if (ak__state_of(src_word) == AK_DONE && !dst->dtor) {
    /* The value stays src's; dst keeps src alive through ->adopted. */
    dst->value = src->value;
  }
  settle_locked(dst, old, ak__state_of(src_word), src->result);
  return true;
}

/* ---- Inspecting ------------------------------------------------------------ */

static inline uint32_t word_of(const ak_future *f) {
  return atomic_load_explicit(&((ak_future *)f)->state, memory_order_acquire);
}

ak_state ak_future_state(const ak_future *f) { return ak__state_of(word_of(f)); }
bool ak_future_is_set(const ak_future *f) { return ak__is_settled_word(word_of(f)); }

bool ak_future_is_error(const ak_future *f) {
  ak_state s = ak__state_of(word_of(f));
  return s == AK_FAILED || s == AK_CANCELLED;
}

bool ak_future_is_cancelled(const ak_future *f) {
  return ak__state_of(word_of(f)) == AK_CANCELLED;
}

int64_t ak_future_result(const ak_future *f) {
  return ak__is_settled_word(word_of(f)) ? f->result : 0;
}

void *ak_future_value(const ak_future *f) {
  return ak__state_of(word_of(f)) == AK_DONE ? f->value : NULL;
}

const char *ak_future_detail(const ak_future *f) {
  return ak__is_settled_word(word_of(f)) ? f->detail : NULL;
}

ak_loop *ak_future_loop(const ak_future *f) { return f->loop; }

bool ak_future_cancel_requested(const ak_future *f) {
  return (word_of(f) & AK__F_CANCEL_REQ) != 0;
}

/* ---- Callbacks ------------------------------------------------------------- */

/* The callbacks beyond the first (out of line: the common run keeps
 * nothing in registers but the future across its one call). */
static __attribute__((noinline)) void run_more_callbacks(ak_future *f) {
  ak__cbnode *more = f->more_head;
  f->more_head = NULL;
  while (more) {
    ak__cbnode *next = more->next;
    more->cb(f, more->arg);
    cbnode_recycle(more);
    more = next;
  }
}

/* Runs the callbacks registered before the future settled. No lock: the
 * list is closed, and the queue hand-over orders these reads after the
 * settle's writes. */
static __attribute__((noinline)) void run_all_callbacks(ak_future *f) {
  f->cb(f, f->cb_arg);
  run_more_callbacks(f);
  ak_future_release(f);
}

void ak__future_run_callbacks(ak__qnode *node) {
  ak_future *f = AK__CONTAINER_OF(node, ak_future, qnode);
  /* The list was closed at the settle (a callback added since runs on its
   * own), so whether there are more is known before the first runs; the
   * common case then keeps only f across its call. */
  if (AK__UNLIKELY(f->more_head != NULL)) {
    run_all_callbacks(f);
    return;
  }
  f->cb(f, f->cb_arg);
  ak_future_release(f);
}

/* A pool task bound to its loop (AK__F_BOUND) reaches the loop even with no
 * callbacks: the loop drops it from its alive count here, on its thread. */
static void run_callbacks_bound(ak__qnode *node) {
  ak_future *f = AK__CONTAINER_OF(node, ak_future, qnode);
  ak__loop_alive_add(f->loop, -1);
  if (f->cb)
    ak__future_run_callbacks(node);
  else
    ak_future_release(f);
}

void ak__future_bind_to_loop(ak_future *f) {
  /* Plain stores: only for a future nobody else has seen yet. */
  atomic_store_explicit(&f->state, AK_PENDING | AK__F_BOUND, memory_order_relaxed);
  f->qnode.run = run_callbacks_bound;
}

/* A callback added after the future settled: it runs alone, queued where
 * the future's callbacks run, never inside ak_future_on_settle itself on a
 * loop thread. */
static void run_late_callback(ak__qnode *node) {
  ak__cbnode *late = AK__CONTAINER_OF(node, ak__cbnode, qnode);
  ak_future *f = late->f;
  late->cb(f, late->arg);
  cbnode_recycle(late);
  ak_future_release(f);
}

/* A callback added after the settle: queued where f's callbacks run; but a
 * future held past its loop's free (settled: the free settled or drained
 * all it knew of) must not reach the freed loop, so then it runs as a
 * loopless future's late callback does, at once on the calling thread. The
 * loop is looked up among live loops before it is read. (A new loop that
 * the allocator placed at the freed one's address counts as live: the
 * callback then runs on that loop; memory-safe, not the contract's word.) */
static int schedule_late(ak_future *f, ak__qnode *node) {
  ak_loop *loop = f->loop;
  if (loop) {
    if (ak__loop_is_callers_live(loop)) {
      ak__ready_push(loop, node);
      return 0;
    }
    if (ak__loop_enqueue_if_live(loop, node) == 0)
      return 0;
  }
  return ak__trampoline_push(node);
}

/* Beyond the inline slot, or after the settle: out of line. old: the word
 * seen under the lock (whether it had settled is worked out here, so that
 * the common path tests it without keeping it). */
static __attribute__((noinline)) int on_settle_slow(ak_future *f, ak_callback cb, void *arg,
                                                    uint32_t old_word) {
  if (!ak__is_settled_word(old_word)) {
    /* Allocate outside the lock, then look again. */
    ak__cbnode *node = cbnode_alloc();
    if (!node)
      return -ENOMEM;
    node->cb = cb;
    node->arg = arg;
    node->next = NULL;
    uint32_t old = word_lock(f);
    if (!ak__is_settled_word(old)) {
      if (f->more_head)
        f->more_tail->next = node;
      else
        f->more_head = node;
      f->more_tail = node;
      word_unlock(f, old);
      return 0;
    }
    word_unlock(f, old);
    cbnode_recycle(node); /* settled meanwhile: take the late path */
  }
  ak__cbnode *late = cbnode_alloc();
  if (!late)
    return -ENOMEM;
  late->cb = cb;
  late->arg = arg;
  late->f = ak_future_ref(f);
  late->qnode.run = run_late_callback;
  return schedule_late(f, &late->qnode);
}

static inline __attribute__((always_inline)) int on_settle_locked(ak_future *f, uint32_t old,
                                                                 ak_callback cb, void *arg) {
  if (AK__LIKELY(!ak__is_settled_word(old) && f->cb == NULL)) {
    f->cb = cb;
    f->cb_arg = arg;
    word_unlock(f, old);
    return 0;
  }
  word_unlock(f, old);
  return on_settle_slow(f, cb, arg, old);
}

static __attribute__((noinline)) int on_settle_contended(ak_future *f, ak_callback cb, void *arg) {
  return on_settle_locked(f, word_lock_slow(f), cb, arg);
}

int ak_future_on_settle(ak_future *f, ak_callback cb, void *arg) {
  uint32_t old;
  if (AK__UNLIKELY(!word_trylock(f, &old)))
    return on_settle_contended(f, cb, arg);
  return on_settle_locked(f, old, cb, arg);
}

/* ---- The trampoline for loopless futures ------------------------------------
 * Callbacks of a future with no loop run on the settling thread; when a
 * callback settles another future, that one's callbacks queue here and run
 * after it returns, so a chain of any length runs in a flat loop. */

static AK__TLS struct {
  ak__qnode *head;
  ak__qnode *tail;
  bool draining;
} ak__tramp;

/* What the outermost node's run queued: out of line, so that a settle
 * whose callbacks settle nothing keeps few registers. */
static __attribute__((noinline)) void trampoline_drain(void) {
  ak__qnode *node;
  while ((node = ak__tramp.head) != NULL) {
    ak__tramp.head = node->next;
    if (!ak__tramp.head)
      ak__tramp.tail = NULL;
    ak__qnode_run(node);
  }
}

static void trampoline_link(ak__qnode *node) {
  node->next = NULL;
  if (ak__tramp.tail)
    ak__tramp.tail->next = node;
  else
    ak__tramp.head = node;
  ak__tramp.tail = node;
}

/* A settling future's own callbacks (with the queue's reference): the
 * common trampoline push, whose node's run is known, so that its one
 * callback is called at once. */
static __attribute__((noinline)) int trampoline_push_future(ak_future *f) {
  if (AK__UNLIKELY(ak__tramp.draining)) {
    trampoline_link(&f->qnode);
    return 0;
  }
  ak__tramp.draining = true;
  if (AK__LIKELY(f->more_head == NULL)) {
    f->cb(f, f->cb_arg);
    ak__future_release_inline(f);
  } else {
    run_all_callbacks(f);
  }
  if (AK__UNLIKELY(ak__tramp.head != NULL))
    trampoline_drain();
  ak__tramp.draining = false;
  return 0;
}

__attribute__((noinline)) int ak__trampoline_push(ak__qnode *node) {
  if (AK__UNLIKELY(ak__tramp.draining)) {
    trampoline_link(node);
    return 0;
  }
  /* The outermost settle: the trampoline is empty (the drain leaves it
   * so), and node runs at once without being linked. */
  ak__tramp.draining = true;
  ak__qnode_run(node);
  if (AK__UNLIKELY(ak__tramp.head != NULL))
    trampoline_drain();
  ak__tramp.draining = false;
  return 0;
}

/* ---- Waiting ------------------------------------------------------------------ */

static int64_t deadline_after(int64_t timeout_ns) {
  return timeout_ns < 0 ? AK_FOREVER : ak_now_ns() + timeout_ns;
}

/* Marks f as waited on (flag: WAITERS for a futex sleeper, LOOP_WAITER for
 * the loop's own thread); returns the word with it, or 0 if f settled. */
static uint32_t mark_waiter(ak_future *f, uint32_t flag) {
  uint32_t old = word_lock(f);
  if (ak__is_settled_word(old)) {
    word_unlock(f, old);
    return 0;
  }
  word_unlock(f, old | flag);
  return old | flag;
}

static bool is_settled_pred(void *arg) { return ak_future_is_set(arg); }

/* The flag already set (an earlier turn of the wait), or a kind that only
 * this thread settles (an op's): no need to lock. */
static inline bool still_waiting_loop(ak_future *f) {
  uint32_t word = word_of(f);
  if (ak__is_settled_word(word))
    return false;
  return (word & AK__F_LOOP_WAITER) || (f->kind && f->kind->settles_on_loop) ||
         mark_waiter(f, AK__F_LOOP_WAITER) != 0;
}

static int wait_running_loop(ak_future *f, int64_t deadline) {
  while (still_waiting_loop(f)) {
    if (deadline != AK_FOREVER && ak_now_ns() >= deadline)
      return AK_EWAITTIMEOUT;
    /* (Without a deadline, a kind only this thread settles takes
     * ak__loop_wait_local instead: ak_future_wait.) */
    int rc = ak__loop_iterate(f->loop, deadline, is_settled_pred, f);
    if (rc < 0)
      return rc;
  }
  return 0;
}

/* Out of line: the loop thread's wait (the QD1 path) then saves no registers
 * for this one's timespec and futex call. */
static __attribute__((noinline)) int wait_futex(ak_future *f, int64_t deadline) {
  ak_loop *own = ak_loop_current();
  if (own)
    ak__pool_flush_loop(own); /* what we wait for may be among them */
  for (;;) {
    uint32_t seen = mark_waiter(f, AK__F_WAITERS);
    if (seen == 0)
      return 0;
    struct timespec ts, *tsp = NULL;
    if (deadline != AK_FOREVER) {
      if (ak_now_ns() >= deadline)
        return AK_EWAITTIMEOUT;
      ts.tv_sec = deadline / 1000000000;
      ts.tv_nsec = deadline % 1000000000;
      tsp = &ts;
    }
    /* Absolute CLOCK_MONOTONIC deadline: FUTEX_WAIT_BITSET takes one. A
     * changed word (EAGAIN) or a signal (EINTR) just loops. */
    futex_call(&f->state, FUTEX_WAIT_BITSET_PRIVATE, seen, tsp);
  }
}

/* ak_future_wait's every wait but the QD1 one: out of line, so that the
 * QD1 wait's dispatch saves no registers for these. */
static __attribute__((noinline)) int wait_other(ak_future *f, int64_t timeout_ns) {
  if (timeout_ns == 0)
    return AK_EWAITTIMEOUT;
  ak_loop *loop = f->loop;
  if (loop && ak__loop_owned_by_caller(loop))
    return wait_running_loop(f, deadline_after(timeout_ns));
  return wait_futex(f, deadline_after(timeout_ns));
}

int ak_future_wait(ak_future *f, int64_t timeout_ns) {
  if (ak__is_settled_word(word_of(f)))
    return 0;
  /* An op's future (always on a loop) waited for without a deadline on
   * its loop's thread (the QD1 wait): the loop's own wait for a future
   * only this thread settles, a jump. */
  if (AK__LIKELY(f->kind == &ak__op_future_kind && timeout_ns < 0) &&
      ak__loop_owned_by_caller(f->loop))
    return ak__loop_wait_local(f, f->loop);
  return wait_other(f, timeout_ns);
}

int64_t ak_future_get(ak_future *f, int64_t timeout_ns, void **value) {
  int rc = ak_future_wait(f, timeout_ns);
  if (value)
    *value = rc == 0 ? ak_future_value(f) : NULL;
  if (rc < 0)
    return rc;
  return f->result;
}

/* ---- Cancellation ------------------------------------------------------------ */

/* Cancel hooks asked for while another hook runs on this thread (a
 * then-step cancels its input, a join its inputs, an adopter what it
 * adopted): kept here with a reference and run by the outermost
 * ak_future_cancel in a loop, so cancelling the tail of a chain of any
 * length runs in constant stack. */
static AK__TLS struct {
  ak_future **items;
  size_t count;
  size_t cap;
  bool active;
} ak__cancel_work;

static bool cancel_work_push(ak_future *f) {
  if (ak__cancel_work.count == ak__cancel_work.cap) {
    size_t cap = ak__cancel_work.cap ? 2 * ak__cancel_work.cap : 64;
    ak_future **items = ak__realloc(ak__cancel_work.items, cap * sizeof(*items));
    if (!items)
      return false;
    ak__cancel_work.items = items;
    ak__cancel_work.cap = cap;
  }
  ak__cancel_work.items[ak__cancel_work.count++] = ak_future_ref(f);
  return true;
}

static void run_cancel_hooks(ak_future *f) {
  if (ak__cancel_work.active && cancel_work_push(f))
    return; /* the outermost call runs it */
  if (ak__cancel_work.active) {
    f->kind->cancel(f); /* no memory for the work list: recurse this once */
    return;
  }
  ak__cancel_work.active = true;
  f->kind->cancel(f);
  while (ak__cancel_work.count > 0) {
    ak_future *next = ak__cancel_work.items[--ak__cancel_work.count];
    next->kind->cancel(next);
    ak_future_release(next);
  }
  ak__free(ak__cancel_work.items); /* a long chain's list is not kept */
  ak__cancel_work.items = NULL;
  ak__cancel_work.cap = 0;
  ak__cancel_work.active = false;
}

int ak_future_cancel(ak_future *f) {
  uint32_t old = word_lock(f);
  if (ak__is_settled_word(old)) {
    word_unlock(f, old);
    return AK_ESETTLED;
  }
  word_unlock(f, old | AK__F_CANCEL_REQ);
  if (old & AK__F_CANCEL_REQ)
    return 0; /* asked before; the hook runs once */
  if (f->kind && f->kind->cancel)
    run_cancel_hooks(f);
  else if (!f->kind)
    ak__future_settle(f, AK_CANCELLED, -ECANCELED); /* a promise: nothing runs */
  return 0;
}

/* ---- Adoption ---------------------------------------------------------------- */

int64_t ak_future_adopt(ak_future *self, ak_future *other) {
  __atomic_store_n(&self->adopted, other, __ATOMIC_SEQ_CST);
  return AK__ADOPT_SENTINEL;
}

static void adopted_settled(ak_future *other, void *arg) {
  ak_future *self = arg;
  ak__future_settle_like(self, other);
  ak_future_release(self);
}

void ak__future_complete_callable_owned(ak_future *self, int64_t ret) {
  if (AK__LIKELY(ret != AK__ADOPT_SENTINEL)) {
    ak__future_finish_owned(self, ret);
    return;
  }
  ak__future_complete_callable(self, ret);
  ak_future_release(self);
}

void ak__future_complete_callable(ak_future *self, int64_t ret) {
  ak_future *other = __atomic_load_n(&self->adopted, __ATOMIC_SEQ_CST);
  if (ret != AK__ADOPT_SENTINEL) {
    ak__future_finish(self, ret);
    return;
  }
  if (!other) {
    ak__future_finish(self, -EINVAL);
    return;
  }
  ak_future_ref(self);
  if (ak_future_on_settle(other, adopted_settled, self) < 0) {
    ak__future_finish(self, -ENOMEM);
    ak_future_release(self);
    return;
  }
  /* Pairs with the cancel hooks, which set CANCEL_REQ and then read
   * ->adopted: one of the two sides sees the other. */
  if (ak_future_cancel_requested(self))
    ak_future_cancel(other);
}

/* A future failed from the start (bad arguments, wrong thread). */
ak_future *ak__future_failed(ak_loop *loop, int err, const char *detail) {
  ak_future *f = ak__future_new(loop, NULL, NULL);
  if (f)
    ak_future_fail(f, err, detail);
  return f;
}
