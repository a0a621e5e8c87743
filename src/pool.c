/* pool.c: the CPU thread pool: a FIFO of task futures under one mutex,
 * workers that sleep on a condition variable only when there is nothing to
 * do, cancellation of queued tasks, dataflow (tasks that wait for futures),
 * stop with or without the queued work, and the shared pool loops use for
 * what the ring cannot do.
 *
 * A task is its future: the callable and its argument live in the future's
 * fn/fn_arg fields and the queue links through qnode.next (free while a
 * future is pending), so a submit allocates nothing in steady state.
 *
 * Lock order: pool->mu, then a future's state lock (inside ak__future_*).
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <unistd.h>

#include "loop_internal.h"

struct ak_pool {
  pthread_mutex_t mu;
  pthread_cond_t work_cv;      /* workers wait here for tasks or stop */
  ak__qnode *head;             /* queued tasks (their futures' qnodes) */
  ak__qnode *tail;
  size_t depth;                /* tasks queued, not started */
  unsigned idle;               /* workers waiting on work_cv */
  bool wake_sent;              /* a signal is on its way to an idle worker */
  unsigned nthreads;
  bool stopping;               /* no new tasks; workers exit when empty */
  bool joining;                /* a stop is joining the workers */
  bool joined;                 /* ... and has: later stops return at once */
  pthread_cond_t joined_cv;    /* other stops wait here for joined */
  pthread_t *threads;
};

/* pool->head and pool->stopping change only under mu, but spin_for_work
 * reads them without it as a hint: so every write is an atomic store. */
static void set_head(ak_pool *pool, ak__qnode *head) {
  __atomic_store_n(&pool->head, head, __ATOMIC_RELAXED);
}

static ak_future *task_of(ak__qnode *node) { return AK__CONTAINER_OF(node, ak_future, qnode); }

/* ---- The task future's hooks ------------------------------------------------ */

/* Removes f from the queue if it is there (pool->mu held). */
static bool unqueue_locked(ak_pool *pool, ak_future *f) {
  ak__qnode *prev = NULL;
  for (ak__qnode *n = pool->head; n; prev = n, n = n->next) {
    if (n != &f->qnode)
      continue;
    if (prev)
      prev->next = n->next;
    else
      set_head(pool, n->next);
    if (pool->tail == n)
      pool->tail = prev;
    pool->depth--;
    return true;
  }
  return false;
}

static void task_cancel(ak_future *f) {
  ak_pool *pool = f->data;
  pthread_mutex_lock(&pool->mu);
  bool was_queued = unqueue_locked(pool, f);
  pthread_mutex_unlock(&pool->mu);
  if (was_queued) {
    ak__future_settle(f, AK_CANCELLED, -ECANCELED);
    ak_future_release(f); /* the queue's reference */
    return;
  }
  ak_future *adopted = __atomic_load_n(&f->adopted, __ATOMIC_SEQ_CST);
  if (ak_future_state(f) == AK_PENDING) {
    /* Waiting for dependencies, or popped by a worker that will see the
     * request in ak__future_start_running: either way it never runs. */
    ak__future_settle(f, AK_CANCELLED, -ECANCELED);
  } else if (adopted && __atomic_load_n(&f->fn, __ATOMIC_ACQUIRE) == NULL) {
    ak_future_cancel(adopted); /* it ran and handed over to another future */
  }
  /* RUNNING: cooperative, see ak_future_cancel_requested. */
}

static const ak__future_kind task_kind = {.name = "pool task", .cancel = task_cancel};

/* Wakes a worker if one sleeps and no signal is on its way (pool->mu held);
 * returns whether to signal once the lock is dropped. Signalling outside the
 * lock spares the woken worker a block on mu. */
static bool want_wake_locked(ak_pool *pool) {
  bool wake = pool->idle > 0 && !pool->wake_sent;
  if (wake)
    pool->wake_sent = true;
  return wake;
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
  /* Ran: a cancel now goes to an adopted future. Atomic: task_cancel reads
   * it from the cancelling thread while this runs. */
  __atomic_store_n(&f->fn, NULL, __ATOMIC_RELEASE);
  ak__future_complete_callable_owned(f, ret);
}

/* A worker takes at most this many tasks per lock from a deep queue. Each
 * completion is reported to its loop at once: a task may block on an event
 * that the report of the one before it causes, so holding reports back
 * could deadlock. */
enum { AK__CHUNK_MAX = 16 };

/* Before sleeping, a worker that just ran out of work watches the queue for
 * a few microseconds (mu released): a producer submitting task after task
 * would otherwise put a futex wake and a context switch between every pair
 * of tasks on two vCPUs. Returns true (mu held again) if work came. */
enum { AK__SPIN_ROUNDS = 256 };

static bool spin_for_work(ak_pool *pool) {
  pthread_mutex_unlock(&pool->mu);
  for (unsigned i = 0; i < AK__SPIN_ROUNDS; i++) {
    /* A hint read without the lock; the decision is made under it. */
    if (__atomic_load_n(&pool->head, __ATOMIC_RELAXED) ||
        __atomic_load_n(&pool->stopping, __ATOMIC_RELAXED))
      break;
    ak__cpu_relax();
  }
  pthread_mutex_lock(&pool->mu);
  return pool->head != NULL;
}

static void *worker_main(void *arg) {
  ak_pool *pool = arg;
  pthread_mutex_lock(&pool->mu);
  for (;;) {
    if (!pool->head && !pool->stopping && spin_for_work(pool))
      continue;
    while (!pool->head && !pool->stopping) {
      pool->idle++;
      pthread_cond_wait(&pool->work_cv, &pool->mu);
      pool->idle--;
      pool->wake_sent = false;
    }
    ak__qnode *node = pool->head;
    if (!node)
      break; /* stopping and nothing left */
    /* Take a share of a deep queue per lock (never more than half of a
     * fair share, so no worker hoards what others could run). */
    size_t take = pool->depth / (2 * (size_t)pool->nthreads);
    take = take < 1 ? 1 : take > AK__CHUNK_MAX ? AK__CHUNK_MAX : take;
    ak__qnode *last = node;
    for (size_t i = 1; i < take; i++)
      last = last->next;
    set_head(pool, last->next);
    if (!pool->head)
      pool->tail = NULL;
    pool->depth -= take;
    last->next = NULL;
    /* Wake the next idle worker only if work is left for it: one signal per
     * idle spell instead of one per task (each is a futex syscall and, on two
     * vCPUs, a context switch). */
    bool wake_next = pool->head && want_wake_locked(pool);
    pthread_mutex_unlock(&pool->mu);
    if (wake_next)
      pthread_cond_signal(&pool->work_cv);
    while (node) {
      ak__qnode *next = node->next;
      run_task(task_of(node));
      node = next;
    }
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

/* A task future: bound to the caller's loop when the caller owns one. */
static ak_future *task_new(ak_pool *pool, ak_work_fn fn, void *arg) {
  ak_loop *loop = ak_loop_current();
  ak_future *f = ak__future_new(loop, &task_kind, pool);
  if (!f)
    return NULL;
  f->fn = (void *)fn;
  f->fn_arg = arg;
  if (loop) {
    /* The loop stays alive until the task's settle has reached it
     * (AK__F_BOUND). */
    ak__future_bind_to_loop(f);
    ak__loop_alive_add(loop, 1);
  }
  return f;
}

/* Appends a chain of n task nodes (each holding a reference for the queue);
 * false if the pool has stopped (nothing was queued then). */
static bool enqueue_chain(ak_pool *pool, ak__qnode *head, ak__qnode *tail, size_t n) {
  pthread_mutex_lock(&pool->mu);
  if (pool->stopping) {
    pthread_mutex_unlock(&pool->mu);
    return false;
  }
  tail->next = NULL;
  if (pool->tail)
    pool->tail->next = head;
  else
    set_head(pool, head);
  pool->tail = tail;
  pool->depth += n;
  bool wake = want_wake_locked(pool);
  pthread_mutex_unlock(&pool->mu);
  if (wake)
    pthread_cond_signal(&pool->work_cv);
  return true;
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
 * dispatch and goes to the pool with the others (one lock and at most one
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

static bool enqueue(ak_pool *pool, ak_future *f) {
  return enqueue_chain(pool, &f->qnode, &f->qnode, 1);
}

ak_future *ak_pool_submit(ak_pool *pool, ak_work_fn fn, void *arg) {
  ak_future *f = task_new(pool, fn, arg);
  if (!f)
    return NULL;
  atomic_store_explicit(&f->refs, 2, memory_order_relaxed); /* + the queue's */
  if (defer_to_loop(pool, f->loop, f))
    return f;
  if (!enqueue(pool, f)) {
    ak_future_release(f);
    ak_future_fail(f, AK_ESHUTDOWN, "the pool has been stopped");
  }
  return f;
}

/* ---- Dataflow ------------------------------------------------------------------ */

static void deps_settled(ak_future *join, void *arg) {
  ak_future *f = arg; /* holds the reference meant for the queue */
  ak_pool *pool = f->data;
  if (ak_future_state(join) != AK_DONE) {
    ak__future_settle_like(f, join);
    ak_future_release(f);
  } else if (ak_future_cancel_requested(f) || ak_future_is_set(f)) {
    ak__future_settle(f, AK_CANCELLED, -ECANCELED);
    ak_future_release(f);
  } else if (!enqueue(pool, f)) {
    ak_future_fail(f, AK_ESHUTDOWN, "the pool has been stopped");
    ak_future_release(f);
  }
  ak_future_release(join);
}

ak_future *ak_pool_submit_after(ak_pool *pool, ak_work_fn fn, void *arg,
                                ak_future *const *deps, size_t ndeps) {
  ak_future *f = task_new(pool, fn, arg);
  if (!f)
    return NULL;
  /* Settle at the first failure, but leave the user's other dependencies
   * alone: they are not ours to cancel. */
  ak_future *join = ak_join_all(deps, ndeps, AK_JOIN_FAIL_FAST | AK__JOIN_NO_CANCEL);
  if (!join) {
    ak_future_fail(f, -ENOMEM, NULL);
    return f;
  }
  ak_future_ref(f); /* the queue's, once the deps are in */
  if (ak_future_on_settle(join, deps_settled, f) < 0) {
    ak_future_release(join);
    ak_future_release(f);
    ak_future_fail(f, -ENOMEM, NULL);
  }
  return f;
}

/* ---- Stopping ---------------------------------------------------------------- */

void ak_pool_stop(ak_pool *pool, bool wait) {
  ak__qnode *dropped = NULL;
  ak_loop *own = ak_loop_current();
  if (own)
    ak__pool_flush_loop(own); /* tasks this thread's callbacks submitted */
  pthread_mutex_lock(&pool->mu);
  __atomic_store_n(&pool->stopping, true, __ATOMIC_RELAXED); /* see spin_for_work */
  if (!wait) {
    dropped = pool->head;
    set_head(pool, NULL);
    pool->tail = NULL;
    pool->depth = 0;
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
    pthread_cond_broadcast(&pool->joined_cv);
    pthread_mutex_unlock(&pool->mu);
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
  ak__free(pool);
}

size_t ak_pool_queue_depth(const ak_pool *pool) {
  ak_pool *p = (ak_pool *)pool;
  pthread_mutex_lock(&p->mu);
  size_t depth = p->depth;
  pthread_mutex_unlock(&p->mu);
  return depth;
}

unsigned ak_pool_size(const ak_pool *pool) { return pool->nthreads; }

/* ---- The shared pool ------------------------------------------------------------ */

static ak_pool *ak__shared;
static pthread_once_t ak__shared_once = PTHREAD_ONCE_INIT;

static void shared_pool_create(void) {
  long cpus = sysconf(_SC_NPROCESSORS_ONLN);
  unsigned n = cpus < 2 ? 2 : cpus > 4 ? 4 : (unsigned)cpus;
  ak__shared = ak_pool_new(n);
}

ak_pool *ak__shared_pool(void) {
  pthread_once(&ak__shared_once, shared_pool_create);
  return ak__shared;
}
