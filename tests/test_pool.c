/* test_pool.c: the CPU pool: submit, where tasks settle, stop, cancel, adopt, dataflow, order. */
#define _GNU_SOURCE
#include "helpers.h"

#include <errno.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- Tasks the tests submit ------------------------------------------------ */

static int64_t return_arg(void *arg, ak_future *self)
{
  (void)self;
  return (int64_t)(intptr_t)arg;
}

static int64_t count_run(void *arg, ak_future *self)
{
  (void)self;
  atomic_fetch_add((_Atomic int *)arg, 1);
  return 0;
}

/* Blocks its worker until released: started is posted first. */
typedef struct gate {
  t_sem started;
  t_sem release;
  pthread_t worker; /* the last blocker's thread */
} gate;

static void gate_init(gate *g)
{
  t_sem_init(&g->started, 0);
  t_sem_init(&g->release, 0);
}

static void gate_destroy(gate *g)
{
  t_sem_destroy(&g->started);
  t_sem_destroy(&g->release);
}

static int64_t blocker(void *arg, ak_future *self)
{
  (void)self;
  gate *g = arg;
  __atomic_store_n(&g->worker, pthread_self(), __ATOMIC_RELAXED); /* two may race */
  t_sem_post(&g->started);
  return t_sem_wait(&g->release) ? 1 : -ETIMEDOUT;
}

typedef struct thread_rec {
  pthread_t who;
  _Atomic int calls;
} thread_rec;

static void record_thread(ak_future *f, void *arg)
{
  (void)f;
  thread_rec *r = arg;
  r->who = pthread_self();
  atomic_fetch_add(&r->calls, 1);
}

/* ---- Submit and get ------------------------------------------------------------ */

static void test_submit_get(void **state)
{
  (void)state;
  ak_pool *pool = ak_pool_new(2);
  assert_non_null(pool);
  assert_int_equal(ak_pool_size(pool), 2);
  ak_future *fs[16];
  for (intptr_t i = 0; i < 16; i++)
    fs[i] = ak_pool_submit(pool, return_arg, (void *)(i * 3));
  for (int i = 0; i < 16; i++) {
    assert_int_equal(ak_future_get(fs[i], T_HANG_NS, NULL), i * 3);
    assert_int_equal(ak_future_state(fs[i]), AK_DONE);
    assert_null(ak_future_loop(fs[i])); /* submitted from a plain thread */
    ak_future_release(fs[i]);
  }
  ak_pool_free(pool);
}

static void test_pool_default_size(void **state)
{
  (void)state;
  ak_pool *pool = ak_pool_new(0);
  assert_non_null(pool);
  long cpus = sysconf(_SC_NPROCESSORS_ONLN);
  assert_int_equal(ak_pool_size(pool), cpus > 0 ? (unsigned)cpus : 1);
  ak_pool_free(pool);
}

static void post_sem(void *arg)
{
  t_sem_post(arg);
}

static int64_t wait_sem(void *arg, ak_future *self)
{
  (void)self;
  return t_sem_wait(arg) ? 21 : -ETIMEDOUT;
}

static void test_task_from_loop_settles_on_loop(void **state)
{
  (void)state;
  ak_pool *pool = ak_pool_new(2);
  ak_loop *loop = t_loop_new();
  t_sem sem;
  t_sem_init(&sem, 0);
  ak_future *f = ak_pool_submit(pool, wait_sem, &sem);
  assert_ptr_equal(ak_future_loop(f), loop);
  thread_rec rec = {0};
  ak_future_on_settle(f, record_thread, &rec);
  /* The task waits for a timer of the loop; after the timer only the task
   * keeps DEFAULT running, until its settle has reached the loop. */
  ak_call_later(loop, 10 * T_MS, post_sem, &sem);
  assert_int_equal(ak_loop_run(loop, AK_RUN_DEFAULT), 0);
  assert_int_equal(ak_future_state(f), AK_DONE);
  assert_int_equal(ak_future_result(f), 21);
  assert_int_equal(atomic_load(&rec.calls), 1);
  assert_true(pthread_equal(rec.who, pthread_self()));
  ak_future_release(f);
  ak_loop_free(loop);
  ak_pool_free(pool);
  t_sem_destroy(&sem);
}

static void test_task_from_plain_thread_settles_on_worker(void **state)
{
  (void)state;
  ak_pool *pool = ak_pool_new(2);
  gate g;
  gate_init(&g);
  ak_future *f = ak_pool_submit(pool, blocker, &g);
  assert_null(ak_future_loop(f));
  assert_true(t_sem_wait(&g.started));
  /* Registered while the task runs, so it is the settle that runs it. */
  thread_rec rec = {0};
  ak_future_on_settle(f, record_thread, &rec);
  t_sem_post(&g.release);
  assert_int_equal(ak_future_get(f, T_HANG_NS, NULL), 1);
  ak_pool_stop(pool, true); /* the workers are done, callbacks included */
  assert_int_equal(atomic_load(&rec.calls), 1);
  assert_true(pthread_equal(rec.who, __atomic_load_n(&g.worker, __ATOMIC_RELAXED)));
  assert_false(pthread_equal(rec.who, pthread_self()));
  ak_future_release(f);
  ak_pool_free(pool);
  gate_destroy(&g);
}

/* ak_loop_free waits for the pool tasks bound to the loop; the worker that
 * settles one must be done with the loop before the loop is freed (tsan and
 * asan watch the loop's memory and eventfd here). */
static void test_free_loop_right_after_bound_task(void **state)
{
  (void)state;
  ak_pool *pool = ak_pool_new(2);
  int64_t end = ak_now_ns() + 5 * T_SEC;
  int rounds = 0;
  for (; rounds < 200 && ak_now_ns() < end; rounds++) {
    ak_loop *loop = t_loop_new();
    ak_future *f = ak_pool_submit(pool, return_arg, (void *)(intptr_t)rounds);
    ak_future_release(f); /* only the loop's count waits for it now */
    ak_loop_free(loop);   /* returns once the task's settle reached the loop */
  }
  assert_true(rounds >= 20);
  ak_pool_free(pool);
}

/* ---- Stopping ------------------------------------------------------------------------- */

typedef struct stop_call {
  ak_pool *pool;
  bool wait;
} stop_call;

static void *stop_pool(void *arg)
{
  stop_call *s = arg;
  ak_pool_stop(s->pool, s->wait);
  return NULL;
}

static bool pool_refuses_work(void *arg)
{
  ak_future *probe = ak_pool_submit(arg, return_arg, NULL);
  bool refused = ak_future_is_set(probe) && ak_future_result(probe) == AK_ESHUTDOWN;
  ak_future_release(probe); /* accepted before the stop: it runs in the stop */
  return refused;
}

static void test_stop_wait_runs_queued(void **state)
{
  (void)state;
  ak_pool *pool = ak_pool_new(1);
  gate g;
  gate_init(&g);
  _Atomic int ran = 0;
  ak_future *b = ak_pool_submit(pool, blocker, &g);
  assert_true(t_sem_wait(&g.started));
  enum { N = 20 };
  ak_future *fs[N];
  for (int i = 0; i < N; i++)
    fs[i] = ak_pool_submit(pool, count_run, (void *)&ran);
  stop_call sc = {pool, true};
  pthread_t t = t_thread_start(stop_pool, &sc, 0);
  /* Once the pool refuses new work, the stop is under way; only then let
   * the worker go. */
  assert_true(t_spin_until(pool_refuses_work, pool));
  assert_int_equal(atomic_load(&ran), 0);
  t_sem_post(&g.release);
  t_thread_join(t);
  assert_int_equal(atomic_load(&ran), N);
  for (int i = 0; i < N; i++) {
    assert_int_equal(ak_future_state(fs[i]), AK_DONE);
    ak_future_release(fs[i]);
  }
  assert_int_equal(ak_future_state(b), AK_DONE);
  ak_future_release(b);
  ak_pool_free(pool);
  gate_destroy(&g);
}

static void test_stop_nowait_cancels_queued(void **state)
{
  (void)state;
  ak_pool *pool = ak_pool_new(2);
  gate g;
  gate_init(&g);
  ak_future *running[2];
  for (int i = 0; i < 2; i++)
    running[i] = ak_pool_submit(pool, blocker, &g);
  assert_true(t_sem_wait(&g.started));
  assert_true(t_sem_wait(&g.started)); /* both workers are busy */
  _Atomic int ran = 0;
  enum { N = 10 };
  ak_future *queued[N];
  for (int i = 0; i < N; i++)
    queued[i] = ak_pool_submit(pool, count_run, (void *)&ran);
  assert_int_equal(ak_pool_queue_depth(pool), N);
  stop_call sc = {pool, false};
  pthread_t t = t_thread_start(stop_pool, &sc, 0);
  /* The queued tasks settle CANCELLED while the running ones still run. */
  for (int i = 0; i < N; i++) {
    assert_int_equal(ak_future_wait(queued[i], T_HANG_NS), 0);
    assert_int_equal(ak_future_state(queued[i]), AK_CANCELLED);
  }
  assert_false(ak_future_is_set(running[0]));
  assert_false(ak_future_is_set(running[1]));
  t_sem_post(&g.release);
  t_sem_post(&g.release);
  t_thread_join(t); /* returns once the workers exited */
  for (int i = 0; i < 2; i++) {
    assert_int_equal(ak_future_state(running[i]), AK_DONE);
    assert_int_equal(ak_future_result(running[i]), 1);
    ak_future_release(running[i]);
  }
  assert_int_equal(atomic_load(&ran), 0);
  assert_int_equal(ak_pool_queue_depth(pool), 0);
  for (int i = 0; i < N; i++)
    ak_future_release(queued[i]);
  ak_pool_stop(pool, true); /* idempotent */
  ak_pool_free(pool);
  gate_destroy(&g);
}

static void test_submit_after_stop(void **state)
{
  (void)state;
  ak_pool *pool = ak_pool_new(1);
  ak_pool_stop(pool, true);
  _Atomic int ran = 0;
  ak_future *f = ak_pool_submit(pool, count_run, (void *)&ran);
  assert_non_null(f);
  assert_int_equal(ak_future_state(f), AK_FAILED);
  assert_int_equal(ak_future_result(f), AK_ESHUTDOWN);
  assert_non_null(ak_future_detail(f));
  ak_future *dep = ak_future_new(NULL);
  ak_future *after = ak_pool_submit_after(pool, count_run, (void *)&ran, &dep, 1);
  ak_future_set(dep, 0, NULL, NULL);
  assert_int_equal(ak_future_get(after, T_HANG_NS, NULL), AK_ESHUTDOWN);
  assert_int_equal(atomic_load(&ran), 0);
  ak_future_release(f);
  ak_future_release(after);
  ak_future_release(dep);
  ak_pool_free(pool);
}

/* ---- Cancellation ------------------------------------------------------------------------ */

static void test_cancel_queued_task(void **state)
{
  (void)state;
  ak_pool *pool = ak_pool_new(1);
  gate g;
  gate_init(&g);
  ak_future *b = ak_pool_submit(pool, blocker, &g);
  assert_true(t_sem_wait(&g.started));
  _Atomic int ran = 0;
  ak_future *f = ak_pool_submit(pool, count_run, (void *)&ran);
  ak_future *next = ak_pool_submit(pool, count_run, (void *)&ran);
  assert_int_equal(ak_pool_queue_depth(pool), 2);
  assert_int_equal(ak_future_cancel(f), 0);
  assert_int_equal(ak_future_state(f), AK_CANCELLED); /* at once */
  assert_int_equal(ak_future_result(f), -ECANCELED);
  assert_int_equal(ak_pool_queue_depth(pool), 1);
  t_sem_post(&g.release);
  assert_int_equal(ak_future_wait(next, T_HANG_NS), 0);
  ak_pool_stop(pool, true);
  assert_int_equal(atomic_load(&ran), 1); /* next only */
  assert_int_equal(ak_future_state(f), AK_CANCELLED);
  ak_future_release(f);
  ak_future_release(next);
  ak_future_release(b);
  ak_pool_free(pool);
  gate_destroy(&g);
}

/* A task submitted from a callback waits in the loop's batch until the
 * dispatch ends, linked through the qnode that its settle puts on the ready
 * queue. Cancelling it there settled it in place: both lists were cut, the
 * loop crashed in run_ready, the task ran anyway on a request its callback
 * had freed, and the tasks behind it in the batch were lost (akget over http,
 * tests/test_fault_akget.sh alloc N=109: ak_connect_name cancels its lookup
 * when it cannot attach its callback). */
typedef struct cancel_in_batch {
  ak_pool *pool;
  _Atomic int ran;
  thread_rec settled; /* the cancelled task's callback */
  ak_future *first, *second, *third;
} cancel_in_batch;

/* Both cancel tests end alike: the first task settles CANCELLED, its callback
 * runs once on the loop, the two behind it run. */
static void assert_batch_settled(ak_loop *loop, cancel_in_batch *b)
{
  assert_non_null(b->first);
  assert_non_null(b->second);
  assert_non_null(b->third);
  assert_int_equal(ak_future_wait(b->first, T_HANG_NS), 0);
  assert_int_equal(ak_future_wait(b->second, T_HANG_NS), 0);
  assert_int_equal(ak_future_wait(b->third, T_HANG_NS), 0);
  assert_int_equal(ak_loop_run(loop, AK_RUN_DEFAULT), 0);
  assert_int_equal(ak_future_state(b->first), AK_CANCELLED);
  assert_int_equal(ak_future_result(b->first), -ECANCELED);
  assert_int_equal(atomic_load(&b->settled.calls), 1); /* once, on the loop */
  assert_true(pthread_equal(b->settled.who, pthread_self()));
  assert_int_equal(ak_future_state(b->second), AK_DONE);
  assert_int_equal(ak_future_state(b->third), AK_DONE);
}

/* Stops the pool; only the two tasks not cancelled ever ran. */
static void stop_pool_release_batch(cancel_in_batch *b)
{
  ak_pool_stop(b->pool, true);
  assert_int_equal(atomic_load(&b->ran), 2); /* never the cancelled one */
  ak_future_release(b->first);
  ak_future_release(b->second);
  ak_future_release(b->third);
}

static void submit_then_cancel(ak_future *f, void *arg)
{
  (void)f;
  cancel_in_batch *c = arg;
  c->first = ak_pool_submit(c->pool, count_run, (void *)&c->ran);
  c->second = ak_pool_submit(c->pool, count_run, (void *)&c->ran);
  assert_non_null(c->first);
  assert_non_null(c->second);
  assert_int_equal(ak_future_on_settle(c->first, record_thread, &c->settled), 0);
  assert_int_equal(ak_future_cancel(c->first), 0);
  assert_int_equal(ak_future_state(c->first), AK_CANCELLED); /* at once, as from the queue */
  c->third = ak_pool_submit(c->pool, count_run, (void *)&c->ran);
  assert_non_null(c->third);
}

static void test_cancel_task_submitted_in_callback(void **state)
{
  (void)state;
  ak_pool *pool = ak_pool_new(1);
  ak_loop *loop = t_loop_new();
  cancel_in_batch c = {.pool = pool};
  ak_future *nop = ak_nop(loop);
  assert_int_equal(ak_future_on_settle(nop, submit_then_cancel, &c), 0);
  assert_int_equal(ak_future_wait(nop, T_HANG_NS), 0);
  assert_batch_settled(loop, &c);
  stop_pool_release_batch(&c);
  ak_future_release(nop);
  ak_loop_free(loop);
  ak_pool_free(pool);
}

/* The same batch, cancelled from another thread while the callback that
 * submitted the task still runs: only the loop's thread may touch its batch,
 * so the cancel must not settle the task in place there (which queued its
 * callback through the qnode that links the batch, losing the tasks behind
 * it). It settles CANCELLED all the same, once, on the loop, and never runs. */
typedef struct cancel_elsewhere {
  cancel_in_batch b;
  t_sem go, cancelled;
  int cancel_rc;
  bool cancel_returned; /* within T_HANG_NS, while the callback waited */
} cancel_elsewhere;

static void *cancel_first_task(void *arg)
{
  cancel_elsewhere *c = arg;
  if (!t_sem_wait(&c->go))
    return NULL;
  c->cancel_rc = ak_future_cancel(c->b.first);
  t_sem_post(&c->cancelled);
  return NULL;
}

static void submit_then_cancel_elsewhere(ak_future *f, void *arg)
{
  (void)f;
  cancel_elsewhere *c = arg;
  cancel_in_batch *b = &c->b;
  b->first = ak_pool_submit(b->pool, count_run, (void *)&b->ran);
  b->second = ak_pool_submit(b->pool, count_run, (void *)&b->ran);
  if (!b->first || !b->second || ak_future_on_settle(b->first, record_thread, &b->settled) < 0)
    return; /* the test's asserts say so */
  t_sem_post(&c->go);
  c->cancel_returned = t_sem_wait(&c->cancelled); /* the batch is still unsent */
  b->third = ak_pool_submit(b->pool, count_run, (void *)&b->ran);
}

static void test_cancel_task_in_batch_from_other_thread(void **state)
{
  (void)state;
  ak_pool *pool = ak_pool_new(1);
  ak_loop *loop = t_loop_new();
  cancel_elsewhere c = {.b = {.pool = pool}, .cancel_rc = 1};
  t_sem_init(&c.go, 0);
  t_sem_init(&c.cancelled, 0);
  pthread_t th;
  assert_int_equal(pthread_create(&th, NULL, cancel_first_task, &c), 0);
  ak_future *nop = ak_nop(loop);
  assert_int_equal(ak_future_on_settle(nop, submit_then_cancel_elsewhere, &c), 0);
  assert_int_equal(ak_future_wait(nop, T_HANG_NS), 0);
  assert_true(c.cancel_returned);
  assert_int_equal(c.cancel_rc, 0);
  assert_int_equal(pthread_join(th, NULL), 0);
  assert_batch_settled(loop, &c.b);
  /* The loop and the pool still work. */
  ak_future *after = ak_pool_submit(pool, return_arg, (void *)7);
  assert_int_equal(ak_future_get(after, T_HANG_NS, NULL), 7);
  ak_future_release(after);
  stop_pool_release_batch(&c.b);
  ak_future_release(nop);
  ak_loop_free(loop);
  ak_pool_free(pool);
  t_sem_destroy(&c.go);
  t_sem_destroy(&c.cancelled);
}

typedef struct coop {
  t_sem started;
  _Atomic bool saw_request;
} coop;

static int64_t until_cancelled(void *arg, ak_future *self)
{
  coop *c = arg;
  bool before = ak_future_cancel_requested(self);
  t_sem_post(&c->started);
  int64_t end = ak_now_ns() + T_HANG_NS;
  while (!ak_future_cancel_requested(self) && ak_now_ns() < end)
    sched_yield();
  atomic_store(&c->saw_request, !before && ak_future_cancel_requested(self));
  return -ECANCELED; /* gives up, as asked */
}

static void test_cancel_running_task_is_cooperative(void **state)
{
  (void)state;
  ak_pool *pool = ak_pool_new(1);
  coop c = {0};
  t_sem_init(&c.started, 0);
  ak_future *f = ak_pool_submit(pool, until_cancelled, &c);
  assert_true(t_sem_wait(&c.started));
  assert_int_equal(ak_future_state(f), AK_RUNNING);
  assert_int_equal(ak_future_cancel(f), 0);
  assert_int_equal(ak_future_wait(f, T_HANG_NS), 0);
  assert_true(atomic_load(&c.saw_request));
  assert_int_equal(ak_future_state(f), AK_CANCELLED);
  ak_future_release(f);
  ak_pool_free(pool);
  t_sem_destroy(&c.started);
}

/* ---- Results, values, details --------------------------------------------------------------- */

static int64_t fail_with_detail(void *arg, ak_future *self)
{
  (void)arg;
  ak_future_set_detail(self, "input line 3: bad number");
  return -EINVAL;
}

static void test_task_error_and_detail(void **state)
{
  (void)state;
  ak_pool *pool = ak_pool_new(1);
  ak_future *f = ak_pool_submit(pool, fail_with_detail, NULL);
  assert_int_equal(ak_future_get(f, T_HANG_NS, NULL), -EINVAL);
  assert_int_equal(ak_future_state(f), AK_FAILED);
  assert_true(ak_future_is_error(f));
  assert_string_equal(ak_future_detail(f), "input line 3: bad number");
  ak_future_release(f);
  ak_pool_free(pool);
}

static _Atomic int g_dtor_calls;
static void free_counting(void *value)
{
  atomic_fetch_add(&g_dtor_calls, 1);
  free(value);
}

static int64_t make_value(void *arg, ak_future *self)
{
  (void)arg;
  char *s = strdup("computed");
  if (ak_future_set_value(self, s, free_counting) != 0) {
    free(s);
    return -EIO;
  }
  return 8;
}

static void test_set_value_with_destructor(void **state)
{
  (void)state;
  atomic_store(&g_dtor_calls, 0);
  ak_pool *pool = ak_pool_new(1);
  ak_future *f = ak_pool_submit(pool, make_value, NULL);
  void *v = NULL;
  assert_int_equal(ak_future_get(f, T_HANG_NS, &v), 8);
  assert_non_null(v);
  assert_string_equal(v, "computed");
  assert_ptr_equal(ak_future_value(f), v);
  ak_pool_stop(pool, true); /* no worker holds f any more */
  assert_int_equal(atomic_load(&g_dtor_calls), 0);
  ak_future_release(f);
  assert_int_equal(atomic_load(&g_dtor_calls), 1);
  ak_pool_free(pool);
}

typedef struct adopt_arg {
  ak_future *other;
  t_sem adopted;
} adopt_arg;

static int64_t adopt_other(void *arg, ak_future *self)
{
  adopt_arg *a = arg;
  int64_t ret = ak_future_adopt(self, ak_future_ref(a->other));
  t_sem_post(&a->adopted);
  return ret;
}

static void test_adopt_from_pool_task(void **state)
{
  (void)state;
  ak_pool *pool = ak_pool_new(1);
  adopt_arg a = {.other = ak_future_new(NULL)};
  t_sem_init(&a.adopted, 0);
  ak_future *f = ak_pool_submit(pool, adopt_other, &a);
  assert_true(t_sem_wait(&a.adopted));
  ak_pool_stop(pool, true);          /* the task has returned */
  assert_false(ak_future_is_set(f)); /* waits for other */
  int token;
  ak_future_set(a.other, 99, &token, NULL);
  assert_int_equal(ak_future_get(f, T_HANG_NS, NULL), 99);
  assert_int_equal(ak_future_state(f), AK_DONE);
  assert_ptr_equal(ak_future_value(f), &token);
  ak_future_release(a.other);
  ak_future_release(f);

  /* A failure of the adopted future, with its detail. */
  ak_pool *pool2 = ak_pool_new(1);
  a.other = ak_future_new(NULL);
  f = ak_pool_submit(pool2, adopt_other, &a);
  assert_true(t_sem_wait(&a.adopted));
  ak_future_fail(a.other, -ENOENT, "not there");
  assert_int_equal(ak_future_get(f, T_HANG_NS, NULL), -ENOENT);
  assert_string_equal(ak_future_detail(f), "not there");
  ak_future_release(a.other);
  ak_future_release(f);
  ak_pool_free(pool2);
  ak_pool_free(pool);
  t_sem_destroy(&a.adopted);
}

static void test_cancel_task_after_adoption_cancels_adopted(void **state)
{
  (void)state;
  ak_pool *pool = ak_pool_new(1);
  adopt_arg a = {.other = ak_future_new(NULL)};
  t_sem_init(&a.adopted, 0);
  ak_future *f = ak_pool_submit(pool, adopt_other, &a);
  assert_true(t_sem_wait(&a.adopted)); /* the task is returning its adoption */
  assert_int_equal(ak_future_cancel(f), 0);
  /* Whether the request met the task before or after it returned, it
   * reaches the adopted future. */
  assert_int_equal(ak_future_wait(a.other, T_HANG_NS), 0);
  assert_int_equal(ak_future_state(a.other), AK_CANCELLED);
  assert_int_equal(ak_future_wait(f, T_HANG_NS), 0);
  assert_int_equal(ak_future_state(f), AK_CANCELLED);
  ak_future_release(a.other);
  ak_future_release(f);
  ak_pool_free(pool);
  t_sem_destroy(&a.adopted);
}

/* ---- Dataflow ---------------------------------------------------------------------------------
 */

typedef struct sum_arg {
  ak_future *x, *y;
  _Atomic int runs;
} sum_arg;

static int64_t sum_deps(void *arg, ak_future *self)
{
  (void)self;
  sum_arg *s = arg;
  atomic_fetch_add(&s->runs, 1);
  if (!ak_future_is_set(s->x) || !ak_future_is_set(s->y))
    return -EDEADLK; /* ran too early */
  return ak_future_result(s->x) + ak_future_result(s->y);
}

typedef struct setter {
  sum_arg *s;
  t_sem go;
} setter;

static void *set_both(void *arg)
{
  setter *st = arg;
  if (t_sem_wait(&st->go)) {
    ak_future_set(st->s->x, 20, NULL, NULL);
    ak_future_set(st->s->y, 22, NULL, NULL);
  }
  return NULL;
}

static void test_dataflow_runs_after_deps(void **state)
{
  (void)state;
  ak_pool *pool = ak_pool_new(2);
  sum_arg s = {.x = ak_future_new(NULL), .y = ak_future_new(NULL)};
  ak_future *deps[2] = {s.x, s.y};
  ak_future *f = ak_pool_submit_after(pool, sum_deps, &s, deps, 2);
  assert_int_equal(ak_future_wait(f, 20 * T_MS), AK_EWAITTIMEOUT);
  assert_int_equal(atomic_load(&s.runs), 0);
  setter st = {.s = &s};
  t_sem_init(&st.go, 0);
  pthread_t t = t_thread_start(set_both, &st, 0);
  t_sem_post(&st.go);
  assert_int_equal(ak_future_get(f, T_HANG_NS, NULL), 42);
  t_thread_join(t);
  assert_int_equal(atomic_load(&s.runs), 1);
  ak_future_release(f);
  ak_future_release(s.x);
  ak_future_release(s.y);
  ak_pool_free(pool);
  t_sem_destroy(&st.go);
}

static void test_dataflow_dep_fails(void **state)
{
  (void)state;
  ak_pool *pool = ak_pool_new(2);
  sum_arg s = {.x = ak_future_new(NULL), .y = ak_future_new(NULL)};
  ak_future *deps[2] = {s.x, s.y};
  ak_future *f = ak_pool_submit_after(pool, sum_deps, &s, deps, 2);
  ak_future_fail(s.y, -ENOENT, "y could not be read");
  assert_int_equal(ak_future_get(f, T_HANG_NS, NULL), -ENOENT);
  assert_int_equal(ak_future_state(f), AK_FAILED);
  assert_string_equal(ak_future_detail(f), "y could not be read");
  assert_int_equal(ak_future_state(s.x), AK_PENDING); /* not ours to cancel */
  ak_future_set(s.x, 1, NULL, NULL);
  ak_pool_stop(pool, true);
  assert_int_equal(atomic_load(&s.runs), 0);
  ak_future_release(f);
  ak_future_release(s.x);
  ak_future_release(s.y);
  ak_pool_free(pool);
}

static void test_dataflow_dep_cancelled(void **state)
{
  (void)state;
  ak_pool *pool = ak_pool_new(2);
  sum_arg s = {.x = ak_future_new(NULL), .y = ak_future_new(NULL)};
  ak_future *deps[2] = {s.x, s.y};
  ak_future *f = ak_pool_submit_after(pool, sum_deps, &s, deps, 2);
  ak_future_cancel(s.x);
  assert_int_equal(ak_future_wait(f, T_HANG_NS), 0);
  assert_int_equal(ak_future_state(f), AK_CANCELLED);
  assert_int_equal(ak_future_result(f), -ECANCELED);
  assert_int_equal(ak_future_state(s.y), AK_PENDING);
  ak_future_set(s.y, 1, NULL, NULL);
  ak_pool_stop(pool, true);
  assert_int_equal(atomic_load(&s.runs), 0);
  ak_future_release(f);
  ak_future_release(s.x);
  ak_future_release(s.y);
  ak_pool_free(pool);
}

static void test_dataflow_cancel_while_waiting(void **state)
{
  (void)state;
  ak_pool *pool = ak_pool_new(1);
  sum_arg s = {.x = ak_future_new(NULL), .y = ak_future_new(NULL)};
  ak_future *deps[2] = {s.x, s.y};
  ak_future *f = ak_pool_submit_after(pool, sum_deps, &s, deps, 2);
  assert_int_equal(ak_future_cancel(f), 0);
  assert_int_equal(ak_future_state(f), AK_CANCELLED);
  ak_future_set(s.x, 1, NULL, NULL);
  ak_future_set(s.y, 2, NULL, NULL);
  ak_pool_stop(pool, true);
  assert_int_equal(atomic_load(&s.runs), 0);
  assert_int_equal(ak_future_state(s.x), AK_DONE); /* deps untouched */
  ak_future_release(f);
  ak_future_release(s.x);
  ak_future_release(s.y);
  ak_pool_free(pool);
}

static void test_dataflow_no_deps_and_settled_deps(void **state)
{
  (void)state;
  ak_pool *pool = ak_pool_new(1);
  ak_future *f = ak_pool_submit_after(pool, return_arg, (void *)5, NULL, 0);
  assert_int_equal(ak_future_get(f, T_HANG_NS, NULL), 5);
  ak_future *d = ak_future_new(NULL);
  ak_future_set(d, 0, NULL, NULL);
  ak_future *g = ak_pool_submit_after(pool, return_arg, (void *)6, &d, 1);
  assert_int_equal(ak_future_get(g, T_HANG_NS, NULL), 6);
  ak_future_release(f);
  ak_future_release(g);
  ak_future_release(d);
  ak_pool_free(pool);
}

/* ---- Queue depth and order ---------------------------------------------------------------------
 */

static void test_queue_depth(void **state)
{
  (void)state;
  ak_pool *pool = ak_pool_new(1);
  gate g;
  gate_init(&g);
  assert_int_equal(ak_pool_queue_depth(pool), 0);
  ak_future *b = ak_pool_submit(pool, blocker, &g);
  assert_true(t_sem_wait(&g.started));
  assert_int_equal(ak_pool_queue_depth(pool), 0); /* running is not queued */
  _Atomic int ran = 0;
  ak_future *fs[5];
  for (int i = 0; i < 5; i++) {
    fs[i] = ak_pool_submit(pool, count_run, (void *)&ran);
    assert_int_equal(ak_pool_queue_depth(pool), (size_t)i + 1);
  }
  /* A loop given this pool reports the depth in its statistics. */
  ak_loop_options opts = {.pool = pool};
  ak_loop *loop = t_loop_new_opts(&opts);
  ak_loop_stats st;
  ak_loop_stats_get(loop, &st);
  assert_int_equal(st.pool_queue_depth, 5);
  ak_loop_free(loop);
  t_sem_post(&g.release);
  for (int i = 0; i < 5; i++) {
    assert_int_equal(ak_future_wait(fs[i], T_HANG_NS), 0);
    ak_future_release(fs[i]);
  }
  assert_int_equal(ak_pool_queue_depth(pool), 0);
  ak_future_release(b);
  ak_pool_free(pool);
  gate_destroy(&g);
}

/* The order tasks ran in: each appends its id. */
typedef struct fifo {
  int *order; /* room for every task */
  _Atomic int n;
} fifo;

typedef struct fifo_arg {
  fifo *log;
  int id;
} fifo_arg;

static int64_t log_order(void *arg, ak_future *self)
{
  (void)self;
  fifo_arg *a = arg;
  int i = atomic_fetch_add(&a->log->n, 1);
  a->log->order[i] = a->id;
  return 0;
}

static void test_single_thread_fifo(void **state)
{
  (void)state;
  ak_pool *pool = ak_pool_new(1);
  gate g;
  gate_init(&g);
  ak_future *b = ak_pool_submit(pool, blocker, &g);
  assert_true(t_sem_wait(&g.started)); /* queue them all before any runs */
  int order[200];
  fifo log = {.order = order};
  fifo_arg args[200];
  ak_future *fs[200];
  for (int i = 0; i < 200; i++) {
    args[i] = (fifo_arg){&log, i};
    fs[i] = ak_pool_submit(pool, log_order, &args[i]);
  }
  t_sem_post(&g.release);
  ak_pool_stop(pool, true);
  assert_int_equal(atomic_load(&log.n), 200);
  for (int i = 0; i < 200; i++) {
    assert_int_equal(log.order[i], i);
    ak_future_release(fs[i]);
  }
  ak_future_release(b);
  ak_pool_free(pool);
  gate_destroy(&g);
}

/* More tasks than the submission ring holds (4096): the rest go to the
 * overflow queue, and still run in order; a task cancelled in the ring and
 * one cancelled in the overflow never run, and the depth counts both
 * parts. */
enum { PAST_RING = 10000 };

static void test_fifo_past_the_ring(void **state)
{
  (void)state;
  ak_pool *pool = ak_pool_new(1);
  gate g;
  gate_init(&g);
  ak_future *b = ak_pool_submit(pool, blocker, &g);
  assert_true(t_sem_wait(&g.started));
  fifo *log = calloc(1, sizeof(*log));
  log->order = calloc(PAST_RING, sizeof(int));
  fifo_arg *args = calloc(PAST_RING, sizeof(*args));
  ak_future **fs = calloc(PAST_RING, sizeof(*fs));
  for (int i = 0; i < PAST_RING; i++) {
    args[i] = (fifo_arg){log, i};
    fs[i] = ak_pool_submit(pool, log_order, &args[i]);
  }
  assert_int_equal(ak_pool_queue_depth(pool), PAST_RING);
  assert_int_equal(ak_future_cancel(fs[10]), 0);   /* in the ring */
  assert_int_equal(ak_future_cancel(fs[7000]), 0); /* in the overflow */
  assert_int_equal(ak_future_state(fs[10]), AK_CANCELLED);
  assert_int_equal(ak_future_state(fs[7000]), AK_CANCELLED);
  assert_int_equal(ak_pool_queue_depth(pool), PAST_RING - 2);
  /* Submitted after the cancels, when part of the queue sits in the FIFO
   * the cancels made: still after everything before it. */
  fifo_arg last = {log, PAST_RING};
  ak_future *tail = ak_pool_submit(pool, log_order, &last);
  t_sem_post(&g.release);
  assert_int_equal(ak_future_wait(tail, T_HANG_NS), 0);
  ak_pool_stop(pool, true);
  assert_int_equal(atomic_load(&log->n), PAST_RING - 1);
  int expect = 0;
  for (int i = 0; i < PAST_RING - 1; i++) {
    if (expect == 10 || expect == 7000)
      expect++;
    assert_int_equal(log->order[i], expect);
    expect++;
  }
  for (int i = 0; i < PAST_RING; i++) {
    if (i != 10 && i != 7000)
      assert_int_equal(ak_future_state(fs[i]), AK_DONE);
    ak_future_release(fs[i]);
  }
  ak_future_release(tail);
  ak_future_release(b);
  ak_pool_free(pool);
  free(fs);
  free(args);
  free(log->order);
  free(log);
  gate_destroy(&g);
}

/* Four threads submit at once, past the ring's size, to one blocked
 * worker: every thread's tasks run in the order that thread submitted
 * them, across the switches between ring and overflow. */
enum { PRODUCERS = 4, PER_PRODUCER = 3000 };

/* A task's id is producer * PER_PRODUCER + its place in that producer's
 * sequence. */
typedef struct producer {
  ak_pool *pool;
  fifo *log;
  int index;
  fifo_arg tasks[PER_PRODUCER];
  ak_future *fs[PER_PRODUCER];
  t_sem *go;
} producer;

static void *produce(void *arg)
{
  producer *p = arg;
  t_sem_wait(p->go);
  for (int i = 0; i < PER_PRODUCER; i++) {
    p->tasks[i] = (fifo_arg){p->log, p->index * PER_PRODUCER + i};
    p->fs[i] = ak_pool_submit(p->pool, log_order, &p->tasks[i]);
  }
  return NULL;
}

static void test_per_thread_order_across_overflow(void **state)
{
  (void)state;
  ak_pool *pool = ak_pool_new(1);
  gate g;
  gate_init(&g);
  ak_future *b = ak_pool_submit(pool, blocker, &g);
  assert_true(t_sem_wait(&g.started));
  fifo *log = calloc(1, sizeof(*log));
  log->order = calloc(PRODUCERS * PER_PRODUCER, sizeof(int));
  producer *ps = calloc(PRODUCERS, sizeof(*ps));
  t_sem go;
  t_sem_init(&go, 0);
  pthread_t threads[PRODUCERS];
  for (int i = 0; i < PRODUCERS; i++) {
    ps[i] = (producer){.pool = pool, .log = log, .index = i, .go = &go};
    threads[i] = t_thread_start(produce, &ps[i], 0);
  }
  for (int i = 0; i < PRODUCERS; i++)
    t_sem_post(&go);
  /* Let the worker run while the producers still submit: the ring drains
   * and fills again under them. */
  t_sem_post(&g.release);
  for (int i = 0; i < PRODUCERS; i++)
    t_thread_join(threads[i]);
  ak_pool_stop(pool, true);
  assert_int_equal(atomic_load(&log->n), PRODUCERS * PER_PRODUCER);
  int next[PRODUCERS] = {0};
  for (int i = 0; i < PRODUCERS * PER_PRODUCER; i++) {
    int who = log->order[i] / PER_PRODUCER;
    assert_int_equal(log->order[i] % PER_PRODUCER, next[who]);
    next[who]++;
  }
  for (int i = 0; i < PRODUCERS; i++)
    for (int j = 0; j < PER_PRODUCER; j++)
      ak_future_release(ps[i].fs[j]);
  ak_future_release(b);
  ak_pool_free(pool);
  t_sem_destroy(&go);
  free(ps);
  free(log->order);
  free(log);
  gate_destroy(&g);
}

/* Workers hand settles to a loop through lanes, arrays that grow by
 * segments of 254: many tasks from one worker reach the loop's callbacks in
 * the order the worker finished them, and a post made inside a task is seen
 * before that task's own settle. */
enum { LANE_TASKS = 2000 };

typedef struct lane_log {
  int seen[2 * LANE_TASKS];
  int n;
  int posted_before_settle; /* posts that ran before their task's callback */
  int pending_post[LANE_TASKS];
} lane_log;

typedef struct lane_task {
  lane_log *log;
  ak_loop *loop;
  int id;
} lane_task;

static void lane_post_ran(void *arg)
{
  lane_task *t = arg;
  t->log->pending_post[t->id] = 1;
  t->log->seen[t->log->n++] = -1 - t->id;
}

static int64_t lane_work(void *arg, ak_future *self)
{
  (void)self;
  lane_task *t = arg;
  if (t->id % 100 == 0)
    return ak_loop_post(t->loop, lane_post_ran, t) == 0 ? t->id : -EIO;
  return t->id;
}

static void lane_settled(ak_future *f, void *arg)
{
  lane_task *t = arg;
  assert_int_equal(ak_future_state(f), AK_DONE);
  if (t->id % 100 == 0 && t->log->pending_post[t->id])
    t->log->posted_before_settle++;
  t->log->seen[t->log->n++] = t->id;
}

static void test_lane_order_and_segments(void **state)
{
  (void)state;
  ak_pool *pool = ak_pool_new(1);
  ak_loop_options opts = {.pool = pool};
  for (int round = 0; round < 2; round++) {
    /* Two loops one after the other: the worker's cached lane belongs to
     * the first, freed, and the second may sit at the same address. */
    ak_loop *loop = t_loop_new_opts(&opts);
    lane_log *log = calloc(1, sizeof(*log));
    lane_task *tasks = calloc(LANE_TASKS, sizeof(*tasks));
    gate g;
    gate_init(&g);
    ak_future *b = ak_pool_submit(pool, blocker, &g);
    assert_true(t_sem_wait(&g.started)); /* all queued before any runs */
    for (int i = 0; i < LANE_TASKS; i++) {
      tasks[i] = (lane_task){log, loop, i};
      ak_future *f = ak_pool_submit(pool, lane_work, &tasks[i]);
      assert_int_equal(ak_future_on_settle(f, lane_settled, &tasks[i]), 0);
      ak_future_release(f);
    }
    t_sem_post(&g.release);
    assert_int_equal(ak_loop_run(loop, AK_RUN_DEFAULT), 0);
    assert_int_equal(log->n, LANE_TASKS + LANE_TASKS / 100);
    assert_int_equal(log->posted_before_settle, LANE_TASKS / 100);
    int expect = 0;
    for (int i = 0; i < log->n; i++) {
      if (log->seen[i] < 0) {
        assert_int_equal(-1 - log->seen[i], expect); /* the post, then its task */
        continue;
      }
      assert_int_equal(log->seen[i], expect);
      expect++;
    }
    ak_future_release(b);
    ak_loop_free(loop);
    free(tasks);
    free(log);
    gate_destroy(&g);
  }
  ak_pool_free(pool);
}

/* Two threads stopping the pool at once both return only after the workers
 * are gone: here, after the task that was running has finished. */
typedef struct stop_race {
  ak_pool *pool;
  t_sem started, release, stopped;
  atomic_int finished;
  atomic_int seen_unfinished;
} stop_race;

static int64_t stop_race_task(void *arg, ak_future *self) {
  (void)self;
  stop_race *r = arg;
  t_sem_post(&r->started);
  t_sem_wait(&r->release);
  atomic_store(&r->finished, 1);
  return 0;
}

static void *stop_race_stopper(void *arg) {
  stop_race *r = arg;
  ak_pool_stop(r->pool, true);
  if (!atomic_load(&r->finished))
    atomic_store(&r->seen_unfinished, 1);
  t_sem_post(&r->stopped);
  return NULL;
}

static void test_concurrent_stops_both_wait(void **state) {
  (void)state;
  stop_race r;
  memset(&r, 0, sizeof(r));
  t_sem_init(&r.started, 0);
  t_sem_init(&r.release, 0);
  t_sem_init(&r.stopped, 0);
  r.pool = ak_pool_new(1);
  assert_non_null(r.pool);
  ak_future *f = ak_pool_submit(r.pool, stop_race_task, &r);
  assert_true(t_sem_wait(&r.started));
  pthread_t a = t_thread_start(stop_race_stopper, &r, 0);
  pthread_t b = t_thread_start(stop_race_stopper, &r, 0);
  /* Neither stop may return while the task runs. */
  assert_false(t_sem_timedwait(&r.stopped, 50 * 1000 * 1000));
  t_sem_post(&r.release);
  pthread_join(a, NULL);
  pthread_join(b, NULL);
  assert_int_equal(atomic_load(&r.seen_unfinished), 0);
  assert_int_equal(ak_future_get(f, AK_FOREVER, NULL), 0);
  ak_future_release(f);
  ak_pool_free(r.pool);
  t_sem_destroy(&r.started);
  t_sem_destroy(&r.release);
  t_sem_destroy(&r.stopped);
}

/* No pool (ak_loop_pool is NULL when the shared pool could not be made):
 * a submit says "out of memory" with NULL, as documented, instead of
 * queueing on nothing (akget crashed on the loop's next flush; found by
 * tests/test_fault_akget.sh, alloc N=87). */
static void test_submit_without_pool(void **state) {
  (void)state;
  assert_null(ak_pool_submit(NULL, return_arg, (void *)1));
  ak_loop *loop = t_loop_new();
  assert_null(ak_pool_submit(NULL, return_arg, (void *)1));
  ak_future *dep = ak_nop(loop);
  assert_null(ak_pool_submit_after(NULL, return_arg, (void *)1, &dep, 1));
  assert_int_equal(ak_future_get(dep, AK_FOREVER, NULL), 0);
  ak_future_release(dep);
  ak_loop_free(loop);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_submit_get),
      cmocka_unit_test(test_pool_default_size),
      cmocka_unit_test(test_task_from_loop_settles_on_loop),
      cmocka_unit_test(test_task_from_plain_thread_settles_on_worker),
      cmocka_unit_test(test_free_loop_right_after_bound_task),
      cmocka_unit_test(test_stop_wait_runs_queued),
      cmocka_unit_test(test_stop_nowait_cancels_queued),
      cmocka_unit_test(test_submit_after_stop),
      cmocka_unit_test(test_cancel_queued_task),
      cmocka_unit_test(test_cancel_task_submitted_in_callback),
      cmocka_unit_test(test_cancel_task_in_batch_from_other_thread),
      cmocka_unit_test(test_cancel_running_task_is_cooperative),
      cmocka_unit_test(test_task_error_and_detail),
      cmocka_unit_test(test_set_value_with_destructor),
      cmocka_unit_test(test_adopt_from_pool_task),
      cmocka_unit_test(test_cancel_task_after_adoption_cancels_adopted),
      cmocka_unit_test(test_dataflow_runs_after_deps),
      cmocka_unit_test(test_dataflow_dep_fails),
      cmocka_unit_test(test_dataflow_dep_cancelled),
      cmocka_unit_test(test_dataflow_cancel_while_waiting),
      cmocka_unit_test(test_dataflow_no_deps_and_settled_deps),
      cmocka_unit_test(test_queue_depth),
      cmocka_unit_test(test_fifo_past_the_ring),
      cmocka_unit_test(test_per_thread_order_across_overflow),
      cmocka_unit_test(test_lane_order_and_segments),
      cmocka_unit_test(test_single_thread_fifo),
      cmocka_unit_test(test_concurrent_stops_both_wait),
      cmocka_unit_test(test_submit_without_pool),
  };
  t_require_uring();
  return cmocka_run_group_tests(tests, NULL, NULL);
}
