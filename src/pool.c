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
#include <stdlib.h>
#include <unistd.h>

#include "internal.h"

struct ak_pool {
  pthread_mutex_t mu;
  pthread_cond_t work_cv;      /* workers wait here for tasks or stop */
  ak__qnode *head;             /* queued tasks (their futures' qnodes) */
  ak__qnode *tail;
  size_t depth;                /* tasks queued, not started */
  unsigned idle;               /* workers waiting on work_cv */
  unsigned nthreads;
  bool stopping;               /* no new tasks; workers exit when empty */
  bool joined;                 /* workers have been joined */
  pthread_t *threads;
};

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
      pool->head = n->next;
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
  } else if (adopted && f->fn == NULL) {
    ak_future_cancel(adopted); /* it ran and handed over to another future */
  }
  /* RUNNING: cooperative, see ak_future_cancel_requested. */
}

static const ak__future_kind task_kind = {.name = "pool task", .cancel = task_cancel};

/* ---- Workers ----------------------------------------------------------------- */

static void run_task(ak_future *f) {
  if (!ak__future_start_running(f)) {
    ak__future_settle(f, AK_CANCELLED, -ECANCELED); /* no-op if settled */
    return;
  }
  ak_work_fn fn = (ak_work_fn)f->fn;
  int64_t ret = fn(f->fn_arg, f);
  f->fn = NULL; /* ran: a cancel now goes to an adopted future */
  ak__future_complete_callable(f, ret);
}

static void *worker_main(void *arg) {
  ak_pool *pool = arg;
  pthread_mutex_lock(&pool->mu);
  for (;;) {
    while (!pool->head && !pool->stopping) {
      pool->idle++;
      pthread_cond_wait(&pool->work_cv, &pool->mu);
      pool->idle--;
    }
    ak__qnode *node = pool->head;
    if (!node)
      break; /* stopping and nothing left */
    pool->head = node->next;
    if (!pool->head)
      pool->tail = NULL;
    pool->depth--;
    pthread_mutex_unlock(&pool->mu);
    ak_future *f = task_of(node);
    run_task(f);
    ak_future_release(f); /* the queue's reference */
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
  pthread_mutex_init(&pool->mu, NULL);
  pthread_cond_init(&pool->work_cv, NULL);
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

static void loop_task_settled(ak_future *f, void *arg) {
  (void)f;
  ak__loop_alive_add(arg, -1);
}

/* A task future: bound to the caller's loop when the caller owns one. */
static ak_future *task_new(ak_pool *pool, ak_work_fn fn, void *arg) {
  ak_loop *loop = ak_loop_current();
  ak_future *f = ak__future_new(loop, &task_kind, pool);
  if (!f)
    return NULL;
  f->fn = (void *)fn;
  f->fn_arg = arg;
  if (loop) {
    /* The loop stays alive until the task's settle has reached it. */
    if (ak_future_on_settle(f, loop_task_settled, loop) < 0) {
      ak_future_release(f);
      return NULL;
    }
    ak__loop_alive_add(loop, 1);
  }
  return f;
}

/* Queues f (which holds a reference for the queue); false if stopped. */
static bool enqueue(ak_pool *pool, ak_future *f) {
  pthread_mutex_lock(&pool->mu);
  if (pool->stopping) {
    pthread_mutex_unlock(&pool->mu);
    return false;
  }
  f->qnode.next = NULL;
  if (pool->tail)
    pool->tail->next = &f->qnode;
  else
    pool->head = &f->qnode;
  pool->tail = &f->qnode;
  pool->depth++;
  bool wake = pool->idle > 0;
  pthread_mutex_unlock(&pool->mu);
  /* Signal outside the lock: the woken worker does not block on mu. */
  if (wake)
    pthread_cond_signal(&pool->work_cv);
  return true;
}

ak_future *ak_pool_submit(ak_pool *pool, ak_work_fn fn, void *arg) {
  ak_future *f = task_new(pool, fn, arg);
  if (!f)
    return NULL;
  ak_future_ref(f); /* the queue's */
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
  pthread_mutex_lock(&pool->mu);
  pool->stopping = true;
  if (!wait) {
    dropped = pool->head;
    pool->head = pool->tail = NULL;
    pool->depth = 0;
  }
  bool join_now = !pool->joined;
  pool->joined = true;
  pthread_cond_broadcast(&pool->work_cv);
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
  }
}

void ak_pool_free(ak_pool *pool) {
  if (!pool)
    return;
  ak_pool_stop(pool, true);
  pthread_mutex_destroy(&pool->mu);
  pthread_cond_destroy(&pool->work_cv);
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
