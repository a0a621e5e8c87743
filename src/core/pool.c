/* pool.c: the CPU thread pool: a lock-free submission queue that workers
 * take from under one mutex, workers that sleep on a condition variable only
 * when there is nothing to do, cancellation of queued tasks, stop with or without the queued work, and the
 * shared pool loops use for what the ring cannot do.
 *
 * A task is its future: the callable and its argument live in the future's
 * fn/fn_arg fields and the queue links through qnode.next (free while a
 * future is pending), so a submit allocates nothing in steady state.
 *
 * Submitting takes no lock (a ring of cells, an overflow queue behind it:
 * see "The incoming queue"), so the thread that submits a batch never waits
 * for a worker that holds the lock, and a worker never waits for the
 * submitter; profiles of the mutex queue this replaced showed a third of the
 * time in futex waits and wakes on that lock. Workers (and cancel, stop and
 * queue depth, which are rare) take from it under mu; cancel first moves
 * what has arrived into a FIFO under mu, where a task can be unlinked.
 *
 * Lock order: pool->mu, then a future's state lock (inside ak__future_*).
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <unistd.h>

#include "core/loop_internal.h"

struct ak_pool {
  /* The producers' cache line: every submit writes it, workers only read
   * it now and then. Padded on both sides rather than aligned: the
   * allocator only promises 16 bytes. */
  char pad_before_[64];
  uint64_t ring_tail;              /* next ring position to claim (atomic) */
  unsigned overflowed;             /* tasks in the overflow queue (atomic) */
  char pad_after_[64];
  ak__qnode *in_tail;              /* the overflow queue's newest node */
  char pad_tail_[64];
  struct ak__pool_cell *ring;      /* AK__RING_CELLS cells */
  pthread_mutex_t mu;              /* everything below */
  uint64_t ring_head;              /* next ring position to take */
  ak__qnode *in_head;              /* the overflow's oldest node, or &anchor */
  ak__qnode anchor;                /* the overflow's permanent node: the queue
                                      is never empty of nodes */
  ak__qnode *head;                 /* FIFO of tasks moved out of the incoming */
  ak__qnode *tail;                 /*   queue so they can be unlinked (cancel) */
  size_t depth;                    /*   and counted; workers take from it first */
  unsigned idle;                   /* workers in work_cv (atomic: producers peek) */
  bool wake_sent;                  /* a signal is on its way (atomic, likewise) */
  bool stopping;                   /* no new tasks (atomic, likewise) */
  bool discard;                    /* stop without the queued work */
  bool joining;                    /* a stop is joining the workers */
  bool joined;                     /* ... and has: late tasks fail at once */
  unsigned nthreads;               /* workers started (ak_pool_new, joins) */
  unsigned planned;                /* workers asked for: sizes the chunks */
  pthread_cond_t work_cv;          /* workers wait here for tasks or stop */
  pthread_cond_t joined_cv;        /* other stops wait here for joined */
  pthread_t *threads;
};

static ak_future *task_of(ak__qnode *node) { return AK__CONTAINER_OF(node, ak_future, qnode); }

/* ---- The incoming queue ----------------------------------------------------- *
 * Submitted tasks arrive in a ring of cells (a bounded multi-producer queue
 * with a sequence number per cell): a producer claims a position with one
 * compare-and-swap and fills its cell, four cells to a cache line, and a
 * worker reads the pointers of a whole chunk from consecutive cells and
 * prefetches the tasks together, instead of chasing a linked list one miss
 * at a time (profiles put 84% of a worker's own time in that chase).
 *
 * When the ring is full, tasks go to the overflow: an intrusive linked
 * queue that always holds at least one node, its anchor (a producer swaps
 * itself in as the tail, then links its predecessor to it), unbounded, so a submit never waits or
 * fails for room. Workers take from the ring first. A producer uses the
 * ring only while the overflow is empty (the count says so), so each
 * thread's tasks are taken in the order it submitted them. */

enum { AK__RING_CELLS = 4096 }; /* a power of two */

struct ak__pool_cell {
  uint64_t seq;       /* pos: free for position pos; pos + 1: filled */
  ak__qnode *node;
};

static void ring_init(ak_pool *pool) {
  for (uint64_t i = 0; i < AK__RING_CELLS; i++)
    pool->ring[i].seq = i;
}

/* Puts node in the ring; false if it is full. Any thread, no lock. The
 * claim is sequentially consistent: it pairs with the worker that counts
 * itself idle and then looks at the queue (wake_for_push, sleep_for_work). */
static bool ring_push(ak_pool *pool, ak__qnode *node) {
  uint64_t pos = __atomic_load_n(&pool->ring_tail, __ATOMIC_RELAXED);
  for (;;) {
    struct ak__pool_cell *cell = &pool->ring[pos & (AK__RING_CELLS - 1)];
    uint64_t seq = __atomic_load_n(&cell->seq, __ATOMIC_ACQUIRE);
    int64_t lag = (int64_t)(seq - pos);
    if (lag == 0) {
      if (__atomic_compare_exchange_n(&pool->ring_tail, &pos, pos + 1, true, __ATOMIC_SEQ_CST,
                                      __ATOMIC_RELAXED)) {
        cell->node = node;
        __atomic_store_n(&cell->seq, pos + 1, __ATOMIC_RELEASE);
        return true;
      }
    } else if (lag < 0) {
      return false; /* the cell still holds a task from a lap ago: full */
    } else {
      pos = __atomic_load_n(&pool->ring_tail, __ATOMIC_RELAXED);
    }
  }
}

/* Takes the oldest task of the ring (mu held). NULL when there is none, or
 * when a producer has claimed the cell and not filled it yet: *busy then
 * says to come back. */
static ak__qnode *ring_pop(ak_pool *pool, bool *busy) {
  uint64_t pos = pool->ring_head;
  struct ak__pool_cell *cell = &pool->ring[pos & (AK__RING_CELLS - 1)];
  if (__atomic_load_n(&cell->seq, __ATOMIC_ACQUIRE) != pos + 1) {
    *busy = __atomic_load_n(&pool->ring_tail, __ATOMIC_SEQ_CST) != pos;
    return NULL;
  }
  ak__qnode *node = cell->node;
  __atomic_store_n(&cell->seq, pos + AK__RING_CELLS, __ATOMIC_RELEASE); /* free again */
  pool->ring_head = pos + 1;
  return node;
}

/* Appends the chain first..last (already linked) to the overflow. Any
 * thread, no lock; n is the chain's length. */
static void overflow_push(ak_pool *pool, ak__qnode *first, ak__qnode *last, unsigned n) {
  if (n)
    __atomic_add_fetch(&pool->overflowed, n, __ATOMIC_SEQ_CST);
  __atomic_store_n(&last->next, NULL, __ATOMIC_RELAXED);
  ak__qnode *prev = __atomic_exchange_n(&pool->in_tail, last, __ATOMIC_SEQ_CST);
  /* Between the exchange and this store the queue is cut in two: a consumer
   * that reaches prev sees no next yet ("busy") and comes back. */
  __atomic_store_n(&prev->next, first, __ATOMIC_RELEASE);
}

static bool overflow_in_use(ak_pool *pool) {
  return __atomic_load_n(&pool->overflowed, __ATOMIC_SEQ_CST) != 0;
}

/* Takes the overflow's oldest node (mu held), as ring_pop. */
static ak__qnode *overflow_pop(ak_pool *pool, bool *busy) {
  ak__qnode *head = pool->in_head;
  ak__qnode *next = __atomic_load_n(&head->next, __ATOMIC_ACQUIRE);
  *busy = false;
  if (head == &pool->anchor) {
    if (!next) {
      *busy = __atomic_load_n(&pool->in_tail, __ATOMIC_ACQUIRE) != &pool->anchor;
      return NULL;
    }
    pool->in_head = head = next;
    next = __atomic_load_n(&head->next, __ATOMIC_ACQUIRE);
  }
  if (!next) {
    /* head may be the last node: put the anchor behind it, so that taking
     * head never leaves the producers a node to link that is gone. */
    if (head != __atomic_load_n(&pool->in_tail, __ATOMIC_ACQUIRE)) {
      *busy = true;
      return NULL;
    }
    overflow_push(pool, &pool->anchor, &pool->anchor, 0);
    next = __atomic_load_n(&head->next, __ATOMIC_ACQUIRE);
    if (!next) {
      *busy = true; /* a producer came in between */
      return NULL;
    }
  }
  pool->in_head = next;
  __atomic_sub_fetch(&pool->overflowed, 1, __ATOMIC_SEQ_CST);
  return head;
}

/* Appends a chain of n task nodes: the ring while it has room and the
 * overflow is empty, the overflow from then on. */
static void incoming_push(ak_pool *pool, ak__qnode *first, ak__qnode *last, size_t n) {
  ak__qnode *node = first;
  while (n > 0 && !overflow_in_use(pool)) {
    ak__qnode *next = node->next; /* read first: a worker may take node at once */
    if (!ring_push(pool, node))
      break;
    n--;
    node = next;
  }
  if (n > 0)
    overflow_push(pool, node, last, (unsigned)n);
}

/* Whether a task has arrived that is not yet taken (mu held); true also
 * while a producer is between its steps. Sequentially consistent loads:
 * see sleep_for_work. */
static bool incoming_nonempty(ak_pool *pool) {
  /* The overflow's count covers every node not yet taken from it. */
  return __atomic_load_n(&pool->ring_tail, __ATOMIC_SEQ_CST) != pool->ring_head ||
         overflow_in_use(pool);
}

/* Takes the oldest arrived task (mu held): the ring's, then the overflow's. */
static ak__qnode *incoming_pop(ak_pool *pool, bool *busy) {
  ak__qnode *node = ring_pop(pool, busy);
  if (node || *busy)
    return node;
  return overflow_pop(pool, busy);
}

/* Moves every task that has arrived to the FIFO (mu held), waiting out a
 * producer between its two steps (it holds no lock, so it will finish). */
static void incoming_drain_locked(ak_pool *pool) {
  for (;;) {
    bool busy;
    ak__qnode *node = incoming_pop(pool, &busy);
    if (node) {
      node->next = NULL;
      if (pool->tail)
        pool->tail->next = node;
      else
        pool->head = node;
      pool->tail = node;
      pool->depth++;
    } else if (busy) {
      sched_yield(); /* on two vCPUs the producer may be preempted */
    } else {
      return;
    }
  }
}

/* Tasks queued and not started (mu held), give or take the producers
 * between their steps. */
static size_t queued_estimate_locked(ak_pool *pool) {
  uint64_t claimed = __atomic_load_n(&pool->ring_tail, __ATOMIC_RELAXED);
  return pool->depth + (size_t)(claimed - pool->ring_head) +
         __atomic_load_n(&pool->overflowed, __ATOMIC_RELAXED);
}

/* Takes the whole FIFO (mu held). */
static ak__qnode *fifo_take_all_locked(ak_pool *pool) {
  ak__qnode *all = pool->head;
  pool->head = pool->tail = NULL;
  pool->depth = 0;
  return all;
}

/* ---- The task future's hooks ------------------------------------------------ */

/* Removes f from the FIFO if it is there (pool->mu held). */
static bool unqueue_locked(ak_pool *pool, ak_future *f) {
  ak__qnode *prev = NULL;
  for (ak__qnode *n = pool->head; n; prev = n, n = n->next) {
    if (n != &f->qnode)
      continue;
    if (prev)
      prev->next = n->next;
    else
      pool->head = n->next;
    if (pool->tail == n)
      pool->tail = prev;
    pool->depth--;
    return true;
  }
  return false;
}

static void task_cancel(ak_future *f);

/* task_cancel again, on the loop's thread (posted by a cancel from another
 * thread); the post's hold and reference go. */
static void task_cancel_on_owner(void *arg) {
  ak_future *f = arg;
  ak_loop *loop = f->loop;
  task_cancel(f);
  ak_future_release(f);
  ak_loop_unhold(loop);
}

static void task_cancel(ak_future *f) {
  ak_pool *pool = f->data;
  /* Submitted during this dispatch, f may wait in the loop's batch (linked
   * through the qnode its settle would put on the ready queue, cutting both
   * lists: the loop then crashed in run_ready and the task ran anyway). Send
   * the batch now, so f is in the pool's queue and unqueued below. */
  bool elsewhere = f->loop && !ak_loop_is_owner(f->loop);
  if (f->loop && !elsewhere)
    ak__pool_flush_loop(f->loop);
  pthread_mutex_lock(&pool->mu);
  incoming_drain_locked(pool); /* f may have just arrived */
  bool was_queued = unqueue_locked(pool, f);
  pthread_mutex_unlock(&pool->mu);
  if (was_queued) {
    ak__future_settle(f, AK_CANCELLED, -ECANCELED);
    ak_future_release(f); /* the queue's reference */
    return;
  }
  ak_future *adopted = __atomic_load_n(&f->adopted, __ATOMIC_SEQ_CST);
  if (ak_future_state(f) == AK_PENDING && elsewhere) {
    /* From another thread f may also wait in the loop's batch, which only
     * the loop's thread may touch (nor settle f in: the batch would be cut
     * as above): the loop's thread settles it. Either way it never runs, as
     * the request is set: without memory for the post, the worker that
     * takes f settles it (ak__future_start_running), or the dependencies'
     * join does. */
    ak_loop_hold(f->loop);
    if (ak_loop_post(f->loop, task_cancel_on_owner, ak_future_ref(f)) < 0) {
      ak_future_release(f);
      ak_loop_unhold(f->loop);
    }
  } else if (ak_future_state(f) == AK_PENDING) {
    /* Waiting for dependencies, or taken by a worker that will see the
     * request in ak__future_start_running: either way it never runs. */
    ak__future_settle(f, AK_CANCELLED, -ECANCELED);
  } else if (adopted && __atomic_load_n(&f->fn, __ATOMIC_ACQUIRE) == NULL) {
    ak_future_cancel(adopted); /* it ran and handed over to another future */
  }
  /* RUNNING: cooperative, see ak_future_cancel_requested. */
}

static const ak__future_kind task_kind = {.name = "pool task", .cancel = task_cancel};

/* Claims the right to wake a sleeping worker (mu held): one signal per idle
 * spell, not one per task (each is a futex syscall and, on two vCPUs, a
 * context switch). Signal once the lock is dropped, which spares the woken
 * worker a block on mu. */
static bool want_wake_locked(ak_pool *pool) {
  bool wake = pool->idle > 0 && !pool->wake_sent;
  if (wake)
    __atomic_store_n(&pool->wake_sent, true, __ATOMIC_SEQ_CST);
  return wake;
}

/* After a push: wakes a worker if one sleeps and no signal is on its way.
 * Costs two loads while the workers are busy. The loads are sequentially
 * consistent, like the push and the worker's idle count: either we see the
 * worker idle, or it sees our task before it sleeps. A wake_sent seen true
 * means a worker is waking and will look at the queue after clearing it. */
static void wake_for_push(ak_pool *pool) {
  if (__atomic_load_n(&pool->idle, __ATOMIC_SEQ_CST) == 0 ||
      __atomic_load_n(&pool->wake_sent, __ATOMIC_SEQ_CST))
    return;
  pthread_mutex_lock(&pool->mu);
  bool wake = want_wake_locked(pool);
  pthread_mutex_unlock(&pool->mu);
  if (wake)
    pthread_cond_signal(&pool->work_cv);
}

/* ---- Workers ----------------------------------------------------------------- */

/* Runs a task and settles it; consumes the queue's reference. */
static void run_task(ak_future *f) {
  if (!ak__future_start_running(f)) {
    ak__future_settle(f, AK_CANCELLED, -ECANCELED); /* no-op if settled */
    ak_future_release(f);
    return;
  }
  ak_work_fn fn = (ak_work_fn)f->fn;
  int64_t ret = fn(f->fn_arg, f);
  AK_FAULT_POOL_RESULT(ret);
  /* Ran and handed over: a cancel now goes to the adopted future. Atomic:
   * task_cancel reads it from the cancelling thread while this runs. Only
   * then: any other result settles f at once, and the store would make the
   * loop thread's next use of the future's memory miss. */
  if (AK__UNLIKELY(ret == AK__ADOPT_SENTINEL))
    __atomic_store_n(&f->fn, NULL, __ATOMIC_RELEASE);
  ak__future_complete_callable_owned(f, ret);
}

/* A worker takes at most this many tasks per lock from a deep queue. Each
 * completion is reported to its loop at once: a task may block on an event
 * that the report of the one before it causes, so holding reports back
 * could deadlock. */
enum { AK__CHUNK_MAX = 16 };

/* Takes up to a fair share of the queued tasks into chunk (mu held): FIFO
 * first, it is older. Returns how many; sets *busy when a producer is
 * between its two steps and nothing could be taken. */
static size_t take_chunk_locked(ak_pool *pool, ak__qnode **chunk, bool *busy) {
  /* Never more than half of a fair share, so no worker hoards what others
   * could run. */
  size_t want = queued_estimate_locked(pool) / (2 * (size_t)pool->planned);
  want = want < 1 ? 1 : want > AK__CHUNK_MAX ? AK__CHUNK_MAX : want;
  size_t n = 0;
  *busy = false;
  while (n < want && pool->head) {
    chunk[n++] = pool->head;
    pool->head = pool->head->next;
    pool->depth--;
  }
  if (!pool->head)
    pool->tail = NULL;
  while (n < want) {
    ak__qnode *node = incoming_pop(pool, busy);
    if (!node)
      break;
    chunk[n++] = node;
  }
  if (n)
    *busy = false;
  return n;
}

/* Whether a worker may leave (mu held): stopping and, unless the queued
 * work is discarded, nothing left to run. */
static bool may_exit_locked(ak_pool *pool) {
  return pool->stopping && (pool->discard || (!pool->head && !incoming_nonempty(pool)));
}

/* Sleeps until a producer or a stop signals (mu held). Counting ourselves
 * idle before the last look at the queue pairs with wake_for_push.
 *
 * No spinning first: with submits lock-free, a worker that watched the
 * queue for a few microseconds only took a CPU from the thread submitting
 * (two vCPUs, three threads): akbench pool ran 1.3x slower with a 12 us spin
 * and no faster with a short one. One wake per idle spell is cheap enough. */
static void sleep_for_work(ak_pool *pool) {
  __atomic_add_fetch(&pool->idle, 1, __ATOMIC_SEQ_CST);
  if (!pool->head && !incoming_nonempty(pool) && !pool->stopping)
    pthread_cond_wait(&pool->work_cv, &pool->mu);
  __atomic_sub_fetch(&pool->idle, 1, __ATOMIC_SEQ_CST);
  /* Cleared before we look at the queue: see wake_for_push. */
  __atomic_store_n(&pool->wake_sent, false, __ATOMIC_SEQ_CST);
}

static void *worker_main(void *arg) {
  ak_pool *pool = arg;
  ak__qnode *chunk[AK__CHUNK_MAX];
  ak__lane_thread_enable(); /* settles reach loops through lanes */
  pthread_mutex_lock(&pool->mu);
  for (;;) {
    if (pool->stopping && pool->discard)
      break;
    bool busy;
    size_t n = take_chunk_locked(pool, chunk, &busy);
    if (n == 0) {
      if (busy) {
        pthread_mutex_unlock(&pool->mu);
        sched_yield(); /* a producer is between its two steps */
        pthread_mutex_lock(&pool->mu);
      } else if (may_exit_locked(pool)) {
        break;
      } else {
        sleep_for_work(pool);
      }
      continue;
    }
    /* Wake the next idle worker only if work is left for it. */
    bool wake_next = (pool->head || incoming_nonempty(pool)) && want_wake_locked(pool);
    pthread_mutex_unlock(&pool->mu);
    if (wake_next)
      pthread_cond_signal(&pool->work_cv);
    /* The tasks' first lines, all at once: the misses overlap. */
    for (size_t i = 0; i < n; i++)
      __builtin_prefetch(task_of(chunk[i]), 1, 3);
    for (size_t i = 0; i < n; i++)
      run_task(task_of(chunk[i]));
    pthread_mutex_lock(&pool->mu);
  }
  pthread_mutex_unlock(&pool->mu);
  return NULL;
}

ak_pool *ak_pool_new(unsigned n) {
  if (n == 0) {
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    n = cpus > 0 ? (unsigned)cpus : 1;
  }
  ak_pool *pool = ak__calloc(1, sizeof(*pool));
  if (!pool) {
    errno = ENOMEM;
    return NULL;
  }
  pool->threads = ak__calloc(n, sizeof(pthread_t));
  if (!pool->threads) {
    ak__free(pool);
    errno = ENOMEM;
    return NULL;
  }
  pool->in_tail = pool->in_head = &pool->anchor;
  pool->ring = ak__calloc(AK__RING_CELLS, sizeof(*pool->ring));
  if (!pool->ring) {
    ak__free(pool->threads);
    ak__free(pool);
    errno = ENOMEM;
    return NULL;
  }
  ring_init(pool);
  pool->planned = n; /* before the first worker reads it */
  /* Adaptive: the lock is held for a few instructions, so a short spin
   * beats sleeping in the kernel (a context switch on two vCPUs). */
  pthread_mutexattr_t mattr;
  pthread_mutexattr_init(&mattr);
  pthread_mutexattr_settype(&mattr, PTHREAD_MUTEX_ADAPTIVE_NP);
  pthread_mutex_init(&pool->mu, &mattr);
  pthread_mutexattr_destroy(&mattr);
  pthread_cond_init(&pool->work_cv, NULL);
  pthread_cond_init(&pool->joined_cv, NULL);
  for (unsigned i = 0; i < n; i++) {
    int rc = pthread_create(&pool->threads[i], NULL, worker_main, pool);
    if (rc != 0) {
      pool->nthreads = i;
      ak_pool_free(pool);
      errno = rc;
      return NULL;
    }
    pool->nthreads = i + 1;
  }
  return pool;
}

/* ---- Submitting ------------------------------------------------------------- */

ak_future *ak__callable_future_new(const ak__future_kind *kind, void *data, ak_work_fn fn,
                                   void *arg) {
  ak_loop *loop = ak_loop_current();
  ak_future *f = ak__future_new(loop, kind, data);
  if (!f)
    return NULL;
  f->fn = (void *)fn;
  f->fn_arg = arg;
  if (loop) {
    /* The loop stays alive until the settle has reached it (AK__F_BOUND). */
    ak__future_bind_to_loop(f);
    ak__loop_alive_add(loop, 1);
  }
  return f;
}

ak_future *ak__pool_task_new(ak_pool *pool, ak_work_fn fn, void *arg) {
  if (AK__UNLIKELY(!pool))
    return NULL; /* ak_loop_pool when the shared pool could not be made */
  return ak__callable_future_new(&task_kind, pool, fn, arg);
}

static void fail_stopped(ak__qnode *node) {
  while (node) {
    ak__qnode *next = node->next;
    ak_future *f = task_of(node);
    ak_future_fail(f, AK_ESHUTDOWN, "the pool has been stopped");
    ak_future_release(f); /* the queue's */
    node = next;
  }
}

/* A submit that raced a stop (mu not held): once the stop has joined the
 * workers, what arrived is ours to fail; before, wake the workers so they
 * see it (they run it, or the stop fails it with the rest). */
static void settle_race_with_stop(ak_pool *pool) {
  pthread_mutex_lock(&pool->mu);
  ak__qnode *late = NULL;
  if (pool->joined) {
    incoming_drain_locked(pool);
    late = fifo_take_all_locked(pool);
  }
  pthread_cond_broadcast(&pool->work_cv);
  pthread_mutex_unlock(&pool->mu);
  fail_stopped(late);
}

/* Appends a chain of n task nodes (each holding a reference for the queue);
 * false if the pool has stopped (nothing was queued then). */
static bool enqueue_chain(ak_pool *pool, ak__qnode *head, ak__qnode *tail, size_t n) {
  if (__atomic_load_n(&pool->stopping, __ATOMIC_ACQUIRE))
    return false;
  incoming_push(pool, head, tail, n);
  /* A stop that began since the check above: until it has joined the
   * workers it sees our tasks (they run, or fail with the rest); after, it
   * is up to us. Sequentially consistent like the stop's store. */
  if (AK__UNLIKELY(__atomic_load_n(&pool->stopping, __ATOMIC_SEQ_CST))) {
    settle_race_with_stop(pool);
    return true;
  }
  wake_for_push(pool);
  return true;
}

void ak__pool_flush_loop(ak_loop *loop) {
  if (AK__LIKELY(loop->pool_pend_n == 0))
    return;
  ak__qnode *head = loop->pool_pend_head;
  ak__qnode *tail = loop->pool_pend_tail;
  size_t n = loop->pool_pend_n;
  ak_pool *pool = loop->pool_pend_pool;
  loop->pool_pend_head = loop->pool_pend_tail = NULL;
  loop->pool_pend_n = 0;
  loop->pool_pend_pool = NULL;
  if (!enqueue_chain(pool, head, tail, n)) {
    tail->next = NULL;
    fail_stopped(head);
  }
}

/* A task submitted while the loop's callbacks run waits for the end of the
 * dispatch and goes to the pool with the others (one push and at most one
 * wakeup per batch, as SQEs go to the kernel once per iteration). Outside
 * callbacks, or from other threads, a task is queued at once. */
static bool defer_to_loop(ak_pool *pool, ak_loop *loop, ak_future *f) {
  if (!loop || loop->dispatch_depth == 0)
    return false;
  if (loop->pool_pend_pool != pool || loop->pool_pend_n >= 256)
    ak__pool_flush_loop(loop);
  f->qnode.next = NULL;
  if (loop->pool_pend_tail)
    loop->pool_pend_tail->next = &f->qnode;
  else
    loop->pool_pend_head = &f->qnode;
  loop->pool_pend_tail = &f->qnode;
  loop->pool_pend_n++;
  loop->pool_pend_pool = pool;
  return true;
}

bool ak__pool_enqueue(ak_pool *pool, ak_future *f) {
  return enqueue_chain(pool, &f->qnode, &f->qnode, 1);
}

ak_future *ak_pool_submit(ak_pool *pool, ak_work_fn fn, void *arg) {
  ak_future *f = ak__pool_task_new(pool, fn, arg);
  if (!f)
    return NULL;
  atomic_store_explicit(&f->refs, 2, memory_order_relaxed); /* + the queue's */
  if (defer_to_loop(pool, f->loop, f))
    return f;
  if (!ak__pool_enqueue(pool, f)) {
    ak_future_release(f);
    ak_future_fail(f, AK_ESHUTDOWN, "the pool has been stopped");
  }
  return f;
}

/* ---- A promise told to compute ---------------------------------------------- */

/* The promise's loop was held while the callable was on its way: a loop
 * running until idle must not stop before the result reaches it. */
static void compute_settled(ak_future *promise, void *arg) {
  (void)promise;
  ak_loop_unhold(arg);
}

/* The promise is not queued itself: its qnode carries its callbacks when it
 * settles, and its holder may set or cancel it at any moment, also while
 * the work waits in the queue, which links tasks through that same qnode (a
 * settle there cut the queue, losing the tasks behind). A carrier task goes
 * instead: it runs fn with the promise as self, and passes a stop's
 * CANCELLED or AK_ESHUTDOWN on to the promise when it never ran. */
static int64_t run_compute(void *arg, ak_future *carrier) {
  (void)carrier;
  ak_future *promise = arg;
  if (ak__future_start_running(promise)) {
    ak_work_fn fn = (ak_work_fn)promise->fn;
    ak__future_complete_callable(promise, fn(promise->fn_arg, promise));
  }
  return 0;
}

static void carrier_settled(ak_future *carrier, void *arg) {
  ak_future *promise = arg; /* the carrier's reference */
  if (ak_future_state(carrier) != AK_DONE)
    ak__future_settle_like(promise, carrier); /* discarded or refused by a stop */
  ak_future_release(promise);
}

int ak_pool_compute(ak_pool *pool, ak_future *promise, ak_work_fn fn, void *arg) {
  if (!pool || !promise || !fn)
    return -EINVAL;
  if (promise->kind)
    return -EINVAL; /* an op, task or combinator computes itself already */
  int rc = ak__future_claim_compute(promise);
  if (rc < 0)
    return rc;
  promise->fn = (void *)fn;
  promise->fn_arg = arg;
  ak_loop *loop = promise->loop;
  if (loop) {
    ak_loop_hold(loop);
    if (ak_future_on_settle(promise, compute_settled, loop) < 0) {
      ak_loop_unhold(loop);
      ak_future_fail(promise, -ENOMEM, "ak_pool_compute");
      return -ENOMEM;
    }
  }
  ak_future *carrier = ak__future_new(NULL, &task_kind, pool);
  if (!carrier) {
    ak_future_fail(promise, -ENOMEM, "ak_pool_compute");
    return -ENOMEM;
  }
  carrier->fn = (void *)run_compute;
  carrier->fn_arg = ak_future_ref(promise); /* released by carrier_settled */
  ak_future_on_settle(carrier, carrier_settled, promise); /* the inline slot: cannot fail */
  ak_future_ref(carrier); /* the queue's, consumed by the worker */
  int ret = 0;
  if (!ak__pool_enqueue(pool, carrier)) {
    ak_future_release(carrier);
    ak_future_fail(carrier, AK_ESHUTDOWN, "the pool has been stopped"); /* passes on */
    ret = AK_ESHUTDOWN;
  }
  ak_future_release(carrier);
  return ret;
}

/* ---- Stopping ---------------------------------------------------------------- */

void ak_pool_stop(ak_pool *pool, bool wait) {
  ak__qnode *dropped = NULL;
  ak_loop *own = ak_loop_current();
  if (own)
    ak__pool_flush_loop(own); /* tasks this thread's callbacks submitted */
  pthread_mutex_lock(&pool->mu);
  /* Sequentially consistent: pairs with enqueue_chain's second look. */
  __atomic_store_n(&pool->stopping, true, __ATOMIC_SEQ_CST);
  if (!wait) {
    pool->discard = true;
    incoming_drain_locked(pool);
    dropped = fifo_take_all_locked(pool);
  }
  /* One stop joins the workers; a concurrent one waits until that is done,
   * so every stop returns with the workers gone, as the header promises. */
  bool join_now = !pool->joining;
  pool->joining = true;
  pthread_cond_broadcast(&pool->work_cv);
  while (!join_now && !pool->joined)
    pthread_cond_wait(&pool->joined_cv, &pool->mu);
  pthread_mutex_unlock(&pool->mu);

  while (dropped) {
    ak_future *f = task_of(dropped);
    dropped = dropped->next;
    ak__future_settle(f, AK_CANCELLED, -ECANCELED);
    ak_future_release(f);
  }
  if (join_now) {
    for (unsigned i = 0; i < pool->nthreads; i++)
      pthread_join(pool->threads[i], NULL);
    pthread_mutex_lock(&pool->mu);
    pool->joined = true;
    /* Tasks that raced with the stop and that no worker took. */
    incoming_drain_locked(pool);
    ak__qnode *late = fifo_take_all_locked(pool);
    pthread_cond_broadcast(&pool->joined_cv);
    pthread_mutex_unlock(&pool->mu);
    fail_stopped(late);
  }
}

void ak_pool_free(ak_pool *pool) {
  if (!pool)
    return;
  ak_pool_stop(pool, true);
  pthread_mutex_destroy(&pool->mu);
  pthread_cond_destroy(&pool->work_cv);
  pthread_cond_destroy(&pool->joined_cv);
  ak__free(pool->threads);
  ak__free(pool->ring);
  ak__free(pool);
}

size_t ak_pool_queue_depth(const ak_pool *pool) {
  ak_pool *p = (ak_pool *)pool;
  pthread_mutex_lock(&p->mu);
  incoming_drain_locked(p);
  size_t depth = p->depth;
  pthread_mutex_unlock(&p->mu);
  return depth;
}

unsigned ak_pool_size(const ak_pool *pool) { return pool->nthreads; }

/* ---- The shared pool ------------------------------------------------------------ */

/* Made on first use. A child made by fork() has none of the parent's
 * worker threads, so its first use makes a pool of its own (the parent's
 * record is left alone: its locks may have been held at the fork). That
 * matters most on the epoll backend, where every file op runs on the pool. */
static _Atomic(ak_pool *) ak__shared;
static pthread_mutex_t ak__shared_mu = PTHREAD_MUTEX_INITIALIZER;
static bool ak__shared_atfork;

static void shared_pool_forget(void) {
  atomic_store_explicit(&ak__shared, NULL, memory_order_relaxed);
  pthread_mutex_init(&ak__shared_mu, NULL);
}

ak_pool *ak__shared_pool(void) {
  ak_pool *pool = atomic_load_explicit(&ak__shared, memory_order_acquire);
  if (AK__LIKELY(pool != NULL))
    return pool;
  pthread_mutex_lock(&ak__shared_mu);
  pool = atomic_load_explicit(&ak__shared, memory_order_relaxed);
  if (!pool) {
    if (!ak__shared_atfork)
      ak__shared_atfork = pthread_atfork(NULL, NULL, shared_pool_forget) == 0;
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    unsigned n = cpus < 2 ? 2 : cpus > 4 ? 4 : (unsigned)cpus;
    pool = ak_pool_new(n);
    atomic_store_explicit(&ak__shared, pool, memory_order_release);
  }
  pthread_mutex_unlock(&ak__shared_mu);
  return pool;
}
