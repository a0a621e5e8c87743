/* test_future.c: states, settle-once, refs, waits, callbacks (where, order, stack), races. */
#define _GNU_SOURCE
#include "helpers.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* ---- Small tools ----------------------------------------------------------- */

typedef struct counter {
  _Atomic int calls;
  _Atomic int dtor_calls;
} counter;

static void count_cb(ak_future *f, void *arg)
{
  (void)f;
  atomic_fetch_add(&((counter *)arg)->calls, 1);
}

static _Atomic int g_dtor_calls;
static void count_dtor(void *value)
{
  (void)value;
  atomic_fetch_add(&g_dtor_calls, 1);
}

static int64_t block_on_sem(void *arg, ak_future *self);

/* ---- States ---------------------------------------------------------------- */

static void test_new_is_pending(void **state)
{
  (void)state;
  ak_future *f = ak_future_new(NULL);
  assert_non_null(f);
  assert_int_equal(ak_future_state(f), AK_PENDING);
  assert_false(ak_future_is_set(f));
  assert_false(ak_future_is_error(f));
  assert_false(ak_future_is_cancelled(f));
  assert_int_equal(ak_future_result(f), 0);
  assert_null(ak_future_value(f));
  assert_null(ak_future_detail(f));
  assert_null(ak_future_loop(f));
  ak_future_release(f);
}

static void test_pending_to_done(void **state)
{
  (void)state;
  ak_future *f = ak_future_new(NULL);
  int token;
  assert_int_equal(ak_future_set(f, 42, &token, NULL), 0);
  assert_int_equal(ak_future_state(f), AK_DONE);
  assert_true(ak_future_is_set(f));
  assert_false(ak_future_is_error(f));
  assert_int_equal(ak_future_result(f), 42);
  assert_ptr_equal(ak_future_value(f), &token);
  void *v = NULL;
  assert_int_equal(ak_future_get(f, 0, &v), 42);
  assert_ptr_equal(v, &token);
  ak_future_release(f);
}

static void test_pending_to_failed(void **state)
{
  (void)state;
  ak_future *f = ak_future_new(NULL);
  assert_int_equal(ak_future_fail(f, -EIO, "disk on fire"), 0);
  assert_int_equal(ak_future_state(f), AK_FAILED);
  assert_true(ak_future_is_set(f));
  assert_true(ak_future_is_error(f));
  assert_false(ak_future_is_cancelled(f));
  assert_int_equal(ak_future_result(f), -EIO);
  assert_null(ak_future_value(f));
  assert_int_equal(ak_future_get(f, AK_FOREVER, NULL), -EIO);
  ak_future_release(f);
}

static void test_pending_to_cancelled(void **state)
{
  (void)state;
  /* By a cancel request on a promise... */
  ak_future *f = ak_future_new(NULL);
  assert_int_equal(ak_future_cancel(f), 0);
  assert_int_equal(ak_future_state(f), AK_CANCELLED);
  assert_true(ak_future_is_error(f));
  assert_true(ak_future_is_cancelled(f));
  assert_true(ak_future_cancel_requested(f));
  assert_int_equal(ak_future_result(f), -ECANCELED);
  ak_future_release(f);
  /* ...and by failing with -ECANCELED. */
  f = ak_future_new(NULL);
  assert_int_equal(ak_future_fail(f, -ECANCELED, NULL), 0);
  assert_int_equal(ak_future_state(f), AK_CANCELLED);
  assert_int_equal(ak_future_result(f), -ECANCELED);
  ak_future_release(f);
}

typedef struct running_probe {
  t_sem started, release;
  _Atomic int seen_state;
} running_probe;

static int64_t report_state(void *arg, ak_future *self)
{
  running_probe *p = arg;
  atomic_store(&p->seen_state, (int)ak_future_state(self));
  t_sem_post(&p->started);
  if (!t_sem_wait(&p->release))
    return -ETIMEDOUT;
  return 5;
}

static void test_pool_task_running(void **state)
{
  (void)state;
  ak_pool *pool = ak_pool_new(1);
  running_probe p;
  t_sem_init(&p.started, 0);
  t_sem_init(&p.release, 0);
  atomic_init(&p.seen_state, -1);
  ak_future *f = ak_pool_submit(pool, report_state, &p);
  assert_true(t_sem_wait(&p.started));
  assert_int_equal(atomic_load(&p.seen_state), AK_RUNNING);
  assert_int_equal(ak_future_state(f), AK_RUNNING);
  assert_false(ak_future_is_set(f));
  assert_int_equal(ak_future_wait(f, 0), AK_EWAITTIMEOUT);
  t_sem_post(&p.release);
  assert_int_equal(ak_future_get(f, T_HANG_NS, NULL), 5);
  assert_int_equal(ak_future_state(f), AK_DONE);
  ak_future_release(f);
  ak_pool_free(pool);
  t_sem_destroy(&p.started);
  t_sem_destroy(&p.release);
}

/* ---- Settling exactly once ---------------------------------------------------- */

static void test_settle_once(void **state)
{
  (void)state;
  atomic_store(&g_dtor_calls, 0);
  int first, second;
  ak_future *f = ak_future_new(NULL);
  assert_int_equal(ak_future_set(f, 1, &first, count_dtor), 0);
  /* A second set changes nothing, and the caller still owns its value. */
  assert_int_equal(ak_future_set(f, 2, &second, count_dtor), AK_ESETTLED);
  assert_int_equal(ak_future_fail(f, -EIO, "late"), AK_ESETTLED);
  assert_int_equal(ak_future_cancel(f), AK_ESETTLED);
  assert_int_equal(ak_future_set_value(f, &second, NULL), AK_EINVALFUTURE);
  assert_int_equal(ak_future_set_detail(f, "late"), AK_EINVALFUTURE);
  assert_int_equal(ak_future_state(f), AK_DONE);
  assert_int_equal(ak_future_result(f), 1);
  assert_ptr_equal(ak_future_value(f), &first);
  assert_null(ak_future_detail(f));
  assert_false(ak_future_cancel_requested(f));
  assert_int_equal(atomic_load(&g_dtor_calls), 0);
  ak_future_release(f);
  assert_int_equal(atomic_load(&g_dtor_calls), 1); /* the first value's only */

  f = ak_future_new(NULL);
  assert_int_equal(ak_future_fail(f, -ENOENT, "first"), 0);
  assert_int_equal(ak_future_set(f, 3, NULL, NULL), AK_ESETTLED);
  assert_int_equal(ak_future_fail(f, -EIO, "second"), AK_ESETTLED);
  assert_int_equal(ak_future_state(f), AK_FAILED);
  assert_int_equal(ak_future_result(f), -ENOENT);
  assert_string_equal(ak_future_detail(f), "first");
  ak_future_release(f);
}

static void test_settle_once_callbacks_once(void **state)
{
  (void)state;
  counter c = {0};
  ak_future *f = ak_future_new(NULL);
  assert_int_equal(ak_future_on_settle(f, count_cb, &c), 0);
  assert_int_equal(ak_future_set(f, 1, NULL, NULL), 0);
  assert_int_equal(ak_future_set(f, 2, NULL, NULL), AK_ESETTLED);
  assert_int_equal(ak_future_fail(f, -EIO, NULL), AK_ESETTLED);
  assert_int_equal(atomic_load(&c.calls), 1);
  ak_future_release(f);
}

/* ---- References ---------------------------------------------------------------- */

static void test_value_destructor_on_last_release(void **state)
{
  (void)state;
  atomic_store(&g_dtor_calls, 0);
  ak_future *f = ak_future_new(NULL);
  char *value = strdup("payload"); /* freed by the future (asan checks) */
  assert_int_equal(ak_future_set(f, 0, value, free), 0);
  ak_future_release(f);

  f = ak_future_new(NULL);
  int token;
  assert_int_equal(ak_future_set(f, 0, &token, count_dtor), 0);
  assert_ptr_equal(ak_future_ref(f), f);
  assert_ptr_equal(ak_future_ref(f), f);
  ak_future_release(f);
  assert_int_equal(atomic_load(&g_dtor_calls), 0);
  ak_future_release(f);
  assert_int_equal(atomic_load(&g_dtor_calls), 0);
  assert_ptr_equal(ak_future_value(f), &token); /* still alive: one ref left */
  ak_future_release(f);
  assert_int_equal(atomic_load(&g_dtor_calls), 1);
  ak_future_release(NULL); /* allowed */
}

static void test_failed_future_value_destructor(void **state)
{
  (void)state;
  /* A value set by a task that then fails is still freed once. */
  atomic_store(&g_dtor_calls, 0);
  ak_future *f = ak_future_new(NULL);
  int token;
  assert_int_equal(ak_future_set_value(f, &token, count_dtor), 0);
  assert_int_equal(ak_future_fail(f, -EIO, NULL), 0);
  assert_null(ak_future_value(f)); /* only DONE shows a value */
  ak_future_release(f);
  assert_int_equal(atomic_load(&g_dtor_calls), 1);
}

static void test_release_pending_does_not_cancel(void **state)
{
  (void)state;
  ak_pool *pool = ak_pool_new(1);
  t_sem gate;
  t_sem_init(&gate, 0);
  ak_future *f = ak_pool_submit(pool, block_on_sem, &gate);
  ak_future *watch = ak_join_all(&f, 1, 0); /* keeps an eye on f */
  ak_future_release(f);                     /* pending: the task runs on */
  t_sem_post(&gate);
  assert_int_equal(ak_future_wait(watch, T_HANG_NS), 0);
  ak_future *input = ak_join_input(watch, 0);
  assert_int_equal(ak_future_state(input), AK_DONE);
  assert_int_equal(ak_future_result(input), 11);
  assert_int_equal(ak_future_result(watch), 1);
  ak_future_release(watch);
  ak_pool_free(pool);
  t_sem_destroy(&gate);
}

static int64_t block_on_sem(void *arg, ak_future *self)
{
  (void)self;
  return t_sem_wait(arg) ? 11 : -ETIMEDOUT;
}

/* ---- Details ------------------------------------------------------------------------ */

static void test_detail_strings(void **state)
{
  (void)state;
  char buf[32];
  strcpy(buf, "status 404");
  ak_future *f = ak_future_new(NULL);
  assert_null(ak_future_detail(f));
  /* set_detail on a pending future is kept but not shown until it settles. */
  assert_int_equal(ak_future_set_detail(f, "early"), 0);
  assert_null(ak_future_detail(f));
  assert_int_equal(ak_future_fail(f, -EPROTO, buf), 0);
  strcpy(buf, "overwritten");
  assert_string_equal(ak_future_detail(f), "status 404"); /* a copy */
  ak_future_release(f);

  f = ak_future_new(NULL);
  assert_int_equal(ak_future_set_detail(f, "why it failed"), 0);
  assert_int_equal(ak_future_fail(f, -EINVAL, NULL), 0); /* keeps the earlier */
  assert_string_equal(ak_future_detail(f), "why it failed");
  ak_future_release(f);

  f = ak_future_new(NULL);
  assert_int_equal(ak_future_fail(f, -EINVAL, NULL), 0);
  assert_null(ak_future_detail(f));
  ak_future_release(f);
}

/* ---- Waiting ------------------------------------------------------------------------- */

static void test_wait_timeout_stays_pending(void **state)
{
  (void)state;
  ak_future *f = ak_future_new(NULL);
  int64_t t0 = ak_now_ns();
  assert_int_equal(ak_future_wait(f, 30 * T_MS), AK_EWAITTIMEOUT);
  int64_t elapsed = ak_now_ns() - t0;
  assert_true(elapsed >= 30 * T_MS);
  assert_true(elapsed < 10 * T_SEC);
  assert_int_equal(ak_future_state(f), AK_PENDING);
  void *v = &v;
  assert_int_equal(ak_future_get(f, 10 * T_MS, &v), AK_EWAITTIMEOUT);
  assert_null(v);
  /* Still settles normally afterwards. */
  assert_int_equal(ak_future_set(f, 3, NULL, NULL), 0);
  assert_int_equal(ak_future_wait(f, 30 * T_MS), 0);
  ak_future_release(f);
}

static void test_wait_timeout_vs_etimedout(void **state)
{
  (void)state;
  ak_future *f = ak_future_new(NULL);
  assert_int_equal(ak_future_fail(f, -ETIMEDOUT, "deadline"), 0);
  assert_int_equal(ak_future_wait(f, 10 * T_MS), 0);
  assert_int_equal(ak_future_result(f), -ETIMEDOUT);
  assert_int_equal(ak_future_get(f, 10 * T_MS, NULL), -ETIMEDOUT);
  assert_int_not_equal(AK_EWAITTIMEOUT, -ETIMEDOUT);
  ak_future_release(f);
}

static void test_wait_zero_timeout(void **state)
{
  (void)state;
  ak_future *f = ak_future_new(NULL);
  int64_t t0 = ak_now_ns();
  assert_int_equal(ak_future_wait(f, 0), AK_EWAITTIMEOUT);
  assert_true(ak_now_ns() - t0 < 2 * T_SEC);
  ak_future_set(f, 0, NULL, NULL);
  assert_int_equal(ak_future_wait(f, 0), 0);
  ak_future_release(f);
}

typedef struct delayed_set {
  ak_future *f;
  t_sem go;
} delayed_set;

static void *set_after_go(void *arg)
{
  delayed_set *d = arg;
  if (t_sem_wait(&d->go))
    ak_future_set(d->f, 77, NULL, NULL);
  return NULL;
}

static void test_wait_from_other_thread_settles(void **state)
{
  (void)state;
  delayed_set d = {.f = ak_future_new(NULL)};
  t_sem_init(&d.go, 0);
  pthread_t t = t_thread_start(set_after_go, &d, 0);
  t_sem_post(&d.go);
  assert_int_equal(ak_future_wait(d.f, T_HANG_NS), 0);
  assert_int_equal(ak_future_result(d.f), 77);
  t_thread_join(t);
  ak_future_release(d.f);
  t_sem_destroy(&d.go);
}

/* ---- Callbacks ----------------------------------------------------------------------- */

typedef struct order_log {
  int seen[16];
  _Atomic int n;
} order_log;

typedef struct order_arg {
  order_log *log;
  int id;
} order_arg;

static void log_cb(ak_future *f, void *arg)
{
  order_arg *a = arg;
  assert_true(ak_future_is_set(f));
  int i = atomic_fetch_add(&a->log->n, 1);
  if (i < 16)
    a->log->seen[i] = a->id;
}

static void test_callbacks_in_order(void **state)
{
  (void)state;
  order_log log = {0};
  order_arg args[8];
  ak_future *f = ak_future_new(NULL);
  for (int i = 0; i < 8; i++) {
    args[i] = (order_arg){&log, i};
    assert_int_equal(ak_future_on_settle(f, log_cb, &args[i]), 0);
  }
  assert_int_equal(atomic_load(&log.n), 0); /* nothing before the settle */
  ak_future_set(f, 0, NULL, NULL);
  assert_int_equal(atomic_load(&log.n), 8);
  for (int i = 0; i < 8; i++)
    assert_int_equal(log.seen[i], i);
  ak_future_release(f);
}

static void test_callback_after_settle_runs(void **state)
{
  (void)state;
  counter c = {0};
  ak_future *f = ak_future_new(NULL);
  ak_future_fail(f, -EIO, NULL);
  /* Loopless and settled: runs at once, on this thread. */
  assert_int_equal(ak_future_on_settle(f, count_cb, &c), 0);
  assert_int_equal(atomic_load(&c.calls), 1);
  assert_int_equal(ak_future_on_settle(f, count_cb, &c), 0);
  assert_int_equal(atomic_load(&c.calls), 2);
  ak_future_release(f);

  /* On a loop: from the ready queue at the next iteration. */
  ak_loop *loop = t_loop_new();
  counter d = {0};
  f = ak_future_new(loop);
  ak_future_set(f, 1, NULL, NULL);
  assert_int_equal(ak_loop_run(loop, AK_RUN_DEFAULT), 0);
  assert_int_equal(ak_future_on_settle(f, count_cb, &d), 0);
  assert_int_equal(atomic_load(&d.calls), 0);
  assert_int_equal(ak_future_on_settle(f, count_cb, &d), 0);
  assert_int_equal(ak_loop_run(loop, AK_RUN_DEFAULT), 0);
  assert_int_equal(atomic_load(&d.calls), 2);
  ak_future_release(f);
  ak_loop_free(loop);
}

static void test_mixed_order_before_and_after_settle(void **state)
{
  (void)state;
  ak_loop *loop = t_loop_new();
  order_log log = {0};
  order_arg args[6];
  for (int i = 0; i < 6; i++)
    args[i] = (order_arg){&log, i};
  ak_future *f = ak_future_new(loop);
  ak_future_on_settle(f, log_cb, &args[0]);
  ak_future_on_settle(f, log_cb, &args[1]);
  ak_future_set(f, 0, NULL, NULL);
  /* Added after the settle but before the callbacks ran: still after 0, 1. */
  ak_future_on_settle(f, log_cb, &args[2]);
  ak_future_on_settle(f, log_cb, &args[3]);
  assert_int_equal(ak_loop_run(loop, AK_RUN_DEFAULT), 0);
  ak_future_on_settle(f, log_cb, &args[4]);
  ak_future_on_settle(f, log_cb, &args[5]);
  assert_int_equal(ak_loop_run(loop, AK_RUN_DEFAULT), 0);
  assert_int_equal(atomic_load(&log.n), 6);
  for (int i = 0; i < 6; i++)
    assert_int_equal(log.seen[i], i);
  ak_future_release(f);
  ak_loop_free(loop);
}

typedef struct where {
  _Atomic bool in_set; /* true while ak_future_set runs */
  _Atomic int calls;
  _Atomic int ran_inside_set;
  pthread_t expected;
  _Atomic int wrong_thread;
} where;

static void where_cb(ak_future *f, void *arg)
{
  (void)f;
  where *w = arg;
  if (atomic_load(&w->in_set))
    atomic_fetch_add(&w->ran_inside_set, 1);
  if (!pthread_equal(pthread_self(), w->expected))
    atomic_fetch_add(&w->wrong_thread, 1);
  atomic_fetch_add(&w->calls, 1);
}

static void test_loop_callbacks_from_ready_queue(void **state)
{
  (void)state;
  ak_loop *loop = t_loop_new();
  where w = {.expected = pthread_self()};
  ak_future *f = ak_future_new(loop);
  assert_ptr_equal(ak_future_loop(f), loop);
  ak_future_on_settle(f, where_cb, &w);
  atomic_store(&w.in_set, true);
  assert_int_equal(ak_future_set(f, 1, NULL, NULL), 0);
  atomic_store(&w.in_set, false);
  assert_int_equal(atomic_load(&w.calls), 0); /* queued, not run */
  assert_int_equal(ak_loop_run(loop, AK_RUN_NOWAIT), 0);
  assert_int_equal(atomic_load(&w.calls), 1);
  assert_int_equal(atomic_load(&w.ran_inside_set), 0);
  assert_int_equal(atomic_load(&w.wrong_thread), 0);
  ak_future_release(f);
  ak_loop_free(loop);
}

typedef struct settle_from_thread {
  ak_future *f;
  where *w;
} settle_from_thread;

static void *settle_thread(void *arg)
{
  settle_from_thread *s = arg;
  atomic_store(&s->w->in_set, true);
  ak_future_set(s->f, 9, NULL, NULL);
  atomic_store(&s->w->in_set, false);
  return NULL;
}

static void test_loop_callbacks_on_loop_thread(void **state)
{
  (void)state;
  ak_loop *loop = t_loop_new();
  where w = {.expected = pthread_self()};
  ak_future *f = ak_future_new(loop);
  ak_future_on_settle(f, where_cb, &w);
  settle_from_thread s = {f, &w};
  ak_loop_hold(loop);
  pthread_t t = t_thread_start(settle_thread, &s, 0);
  t_thread_join(t);
  assert_int_equal(atomic_load(&w.calls), 0);
  ak_loop_unhold(loop);
  /* The wait on the owner thread runs the loop; the callback comes too. */
  assert_int_equal(ak_future_wait(f, T_HANG_NS), 0);
  assert_int_equal(ak_loop_run(loop, AK_RUN_DEFAULT), 0);
  assert_int_equal(atomic_load(&w.calls), 1);
  assert_int_equal(atomic_load(&w.wrong_thread), 0);
  ak_future_release(f);
  ak_loop_free(loop);
}

static void test_loopless_callbacks_inside_outermost_settle(void **state)
{
  (void)state;
  where w = {.expected = pthread_self()};
  ak_future *g = ak_future_new(NULL);
  ak_future_on_settle(g, where_cb, &w);
  atomic_store(&w.in_set, true);
  ak_future_set(g, 0, NULL, NULL);
  atomic_store(&w.in_set, false);
  /* No loop: the callback ran before the settling call returned, here. */
  assert_int_equal(atomic_load(&w.calls), 1);
  assert_int_equal(atomic_load(&w.wrong_thread), 0);
  assert_int_equal(atomic_load(&w.ran_inside_set), 1);
  ak_future_release(g);
}

typedef struct thread_rec {
  pthread_t who;
  _Atomic int calls;
} thread_rec;

static void record_thread_cb(ak_future *f, void *arg)
{
  (void)f;
  thread_rec *r = arg;
  r->who = pthread_self();
  atomic_fetch_add(&r->calls, 1);
}

typedef struct settle_and_report {
  ak_future *f;
  pthread_t self;
} settle_and_report;

static void *settle_reporting(void *arg)
{
  settle_and_report *s = arg;
  s->self = pthread_self();
  ak_future_set(s->f, 1, NULL, NULL);
  return NULL;
}

static void test_loopless_callback_thread_identity(void **state)
{
  (void)state;
  thread_rec r = {0};
  ak_future *f = ak_future_new(NULL);
  ak_future_on_settle(f, record_thread_cb, &r);
  settle_and_report s = {f, 0};
  pthread_t t = t_thread_start(settle_reporting, &s, 0);
  t_thread_join(t);
  assert_int_equal(atomic_load(&r.calls), 1);
  assert_true(pthread_equal(r.who, s.self));
  assert_false(pthread_equal(r.who, pthread_self()));
  ak_future_release(f);
}

/* ---- A 1,000,000-step chain does not grow the stack ---------------------------------- */

enum { CHAIN_STEPS = 1000000 };

typedef struct chain {
  bool on_loop;  /* a loop future chain, else loopless */
  ak_loop *loop; /* the thread's loop when on_loop */
  long steps;
  uintptr_t sp_min, sp_max;
  int failures;
} chain;

static void chain_step(ak_future *f, void *arg)
{
  chain *c = arg;
  volatile char marker = 0;
  uintptr_t sp = (uintptr_t)&marker;
  if (sp < c->sp_min)
    c->sp_min = sp;
  if (sp > c->sp_max)
    c->sp_max = sp;
  if (ak_future_result(f) != c->steps)
    c->failures++;
  c->steps++;
  if (c->steps >= CHAIN_STEPS)
    return;
  ak_future *next = ak_future_new(c->loop);
  if (!next || ak_future_on_settle(next, chain_step, c) != 0) {
    c->failures++;
    ak_future_release(next);
    return;
  }
  ak_future_set(next, c->steps, NULL, NULL); /* would recurse if run inline */
  ak_future_release(next);                   /* the queue keeps it alive */
}

static void *run_chain(void *arg)
{
  chain *c = arg;
  c->sp_min = UINTPTR_MAX;
  c->sp_max = 0;
  if (!c->on_loop) {
    ak_future *first = ak_future_new(NULL);
    ak_future_on_settle(first, chain_step, c);
    ak_future_set(first, 0, NULL, NULL);
    ak_future_release(first);
    return NULL;
  }
  ak_loop *loop = NULL;
  if (ak_loop_new(&loop, NULL) != 0) {
    c->failures = -1;
    return NULL;
  }
  c->loop = loop;
  ak_future *first = ak_future_new(loop);
  ak_future_on_settle(first, chain_step, c);
  ak_future_set(first, 0, NULL, NULL);
  ak_future_release(first);
  int64_t end = ak_now_ns() + 60 * T_SEC;
  while (c->steps < CHAIN_STEPS && ak_now_ns() < end) {
    if (ak_loop_run(loop, AK_RUN_DEFAULT) < 0)
      break;
  }
  ak_loop_free(loop);
  return NULL;
}

static void check_chain(bool on_loop)
{
  chain c = {.on_loop = on_loop};
  /* 256 KiB: a recursive chain would overflow it after a few thousand steps. */
  pthread_t t = t_thread_start(run_chain, &c, (size_t)256 * 1024);
  t_thread_join(t);
  assert_int_equal(c.failures, 0);
  assert_int_equal(c.steps, CHAIN_STEPS);
  assert_true(c.sp_max - c.sp_min < (uintptr_t)16 * 1024);
}

static void test_chain_million_loopless(void **state)
{
  (void)state;
  check_chain(false);
}

static void test_chain_million_loop(void **state)
{
  (void)state;
  check_chain(true);
}

/* ---- Races: settle, cancel, wait and add callbacks at once --------------------------- */

enum { RACE_THREADS = 8, RACE_CBS = 4, RACE_ROUNDS = 20000 };

typedef struct race {
  pthread_barrier_t start, end;
  ak_future *f;
  _Atomic bool quit;
  _Atomic int set_ok, fail_ok;
  _Atomic int set_by; /* which setter won */
  _Atomic int cb_calls[RACE_THREADS][RACE_CBS];
  _Atomic int cb_saw_pending;
  _Atomic int wait_bad;
  _Atomic int dtor_calls;
} race;

typedef struct race_arg {
  race *r;
  int id;
} race_arg;

static race *g_race; /* for the dtor */
static int race_tokens[RACE_THREADS];

static void race_dtor(void *value)
{
  (void)value;
  atomic_fetch_add(&g_race->dtor_calls, 1);
}

static void race_cb(ak_future *f, void *arg)
{
  _Atomic int *slot = arg;
  if (!ak_future_is_set(f))
    atomic_fetch_add(&g_race->cb_saw_pending, 1);
  atomic_fetch_add(slot, 1);
}

static void *race_thread(void *arg)
{
  race_arg *a = arg;
  race *r = a->r;
  for (;;) {
    pthread_barrier_wait(&r->start);
    if (atomic_load(&r->quit))
      return NULL;
    ak_future *f = r->f;
    switch (a->id) {
    case 0:
    case 1:
      if (ak_future_set(f, 100 + a->id, &race_tokens[a->id], race_dtor) == 0) {
        atomic_fetch_add(&r->set_ok, 1);
        atomic_store(&r->set_by, a->id);
      }
      break;
    case 2:
      if (ak_future_fail(f, -EIO, "race") == 0)
        atomic_fetch_add(&r->fail_ok, 1);
      break;
    case 3:
      ak_future_cancel(f);
      break;
    case 4:
    case 5:
      if (ak_future_wait(f, T_HANG_NS) != 0 || !ak_future_is_set(f))
        atomic_fetch_add(&r->wait_bad, 1);
      break;
    default:
      for (int i = 0; i < RACE_CBS; i++)
        ak_future_on_settle(f, race_cb, &r->cb_calls[a->id][i]);
      break;
    }
    pthread_barrier_wait(&r->end);
  }
}

static void test_race_settle_cancel_wait_callbacks(void **state)
{
  (void)state;
  race *r = calloc(1, sizeof(*r));
  g_race = r;
  pthread_barrier_init(&r->start, NULL, RACE_THREADS + 1);
  pthread_barrier_init(&r->end, NULL, RACE_THREADS + 1);
  race_arg args[RACE_THREADS];
  pthread_t threads[RACE_THREADS];
  for (int i = 0; i < RACE_THREADS; i++) {
    args[i] = (race_arg){r, i};
    threads[i] = t_thread_start(race_thread, &args[i], 0);
  }
  int rounds = 0, done = 0, failed = 0, cancelled = 0;
  int64_t end = ak_now_ns() + 4 * T_SEC;
  for (; rounds < RACE_ROUNDS && ak_now_ns() < end; rounds++) {
    r->f = ak_future_new(NULL);
    atomic_store(&r->set_ok, 0);
    atomic_store(&r->fail_ok, 0);
    atomic_store(&r->set_by, -1);
    atomic_store(&r->dtor_calls, 0);
    for (int i = 0; i < RACE_THREADS; i++)
      for (int j = 0; j < RACE_CBS; j++)
        atomic_store(&r->cb_calls[i][j], 0);
    pthread_barrier_wait(&r->start);
    pthread_barrier_wait(&r->end);

    ak_future *f = r->f;
    ak_state st = ak_future_state(f);
    int set_ok = atomic_load(&r->set_ok), fail_ok = atomic_load(&r->fail_ok);
    assert_true(ak_future_is_set(f));
    switch (st) {
    case AK_DONE:
      done++;
      assert_int_equal(set_ok, 1);
      assert_int_equal(fail_ok, 0);
      assert_int_equal(ak_future_result(f), 100 + atomic_load(&r->set_by));
      assert_ptr_equal(ak_future_value(f), &race_tokens[atomic_load(&r->set_by)]);
      break;
    case AK_FAILED:
      failed++;
      assert_int_equal(set_ok, 0);
      assert_int_equal(fail_ok, 1);
      assert_int_equal(ak_future_result(f), -EIO);
      assert_string_equal(ak_future_detail(f), "race");
      break;
    case AK_CANCELLED:
      cancelled++;
      assert_int_equal(set_ok, 0);
      assert_int_equal(fail_ok, 0);
      assert_int_equal(ak_future_result(f), -ECANCELED);
      break;
    default:
      fail_msg("round %d: state %d", rounds, st);
    }
    for (int i = 6; i < RACE_THREADS; i++)
      for (int j = 0; j < RACE_CBS; j++)
        assert_int_equal(atomic_load(&r->cb_calls[i][j]), 1);
    assert_int_equal(atomic_load(&r->cb_saw_pending), 0);
    assert_int_equal(atomic_load(&r->wait_bad), 0);
    ak_future_release(f);
    assert_int_equal(atomic_load(&r->dtor_calls), st == AK_DONE ? 1 : 0);
  }
  atomic_store(&r->quit, true);
  pthread_barrier_wait(&r->start);
  for (int i = 0; i < RACE_THREADS; i++)
    t_thread_join(threads[i]);
  pthread_barrier_destroy(&r->start);
  pthread_barrier_destroy(&r->end);
  free(r);
  print_message("rounds %d done %d failed %d cancelled %d\n", rounds, done, failed, cancelled);
  assert_true(rounds >= 100);
  assert_int_equal(done + failed + cancelled, rounds);
}

/* The same on a loop future: settlers on other threads, callbacks on the loop
 * thread exactly once each. */
typedef struct loop_race {
  pthread_barrier_t start, end;
  ak_future *f;
  _Atomic int set_ok;
  _Atomic bool quit;
} loop_race;

static void *loop_race_thread(void *arg)
{
  loop_race *r = arg;
  for (;;) {
    pthread_barrier_wait(&r->start);
    if (atomic_load(&r->quit))
      return NULL;
    if (ak_future_set(r->f, 1, NULL, NULL) == 0)
      atomic_fetch_add(&r->set_ok, 1);
    ak_future_cancel(r->f);
    pthread_barrier_wait(&r->end);
  }
}

static void test_race_loop_future_settle(void **state)
{
  (void)state;
  ak_loop *loop = t_loop_new();
  loop_race r = {0};
  pthread_barrier_init(&r.start, NULL, 3);
  pthread_barrier_init(&r.end, NULL, 3);
  pthread_t a = t_thread_start(loop_race_thread, &r, 0);
  pthread_t b = t_thread_start(loop_race_thread, &r, 0);
  int rounds = 0;
  int64_t end = ak_now_ns() + 5 * T_SEC;
  for (; rounds < 1000 && ak_now_ns() < end; rounds++) {
    thread_rec rec = {0};
    r.f = ak_future_new(loop);
    atomic_store(&r.set_ok, 0);
    ak_future_on_settle(r.f, record_thread_cb, &rec);
    pthread_barrier_wait(&r.start);
    /* The owner's wait runs the loop, so the callback comes with it. */
    assert_int_equal(ak_future_wait(r.f, T_HANG_NS), 0);
    int64_t cb_end = ak_now_ns() + T_HANG_NS;
    while (atomic_load(&rec.calls) == 0 && ak_now_ns() < cb_end)
      ak_loop_run(loop, AK_RUN_ONCE);
    assert_int_equal(atomic_load(&rec.calls), 1);
    assert_true(pthread_equal(rec.who, pthread_self()));
    /* Both threads are done with f after this. */
    pthread_barrier_wait(&r.end);
    ak_state st = ak_future_state(r.f);
    assert_true(st == AK_DONE || st == AK_CANCELLED);
    assert_int_equal(atomic_load(&r.set_ok), st == AK_DONE ? 1 : 0);
    ak_future_release(r.f);
    ak_loop_run(loop, AK_RUN_NOWAIT);
    assert_int_equal(atomic_load(&rec.calls), 1);
  }
  atomic_store(&r.quit, true);
  pthread_barrier_wait(&r.start);
  t_thread_join(a);
  t_thread_join(b);
  pthread_barrier_destroy(&r.start);
  pthread_barrier_destroy(&r.end);
  ak_loop_free(loop);
  assert_true(rounds >= 50);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_new_is_pending),
      cmocka_unit_test(test_pending_to_done),
      cmocka_unit_test(test_pending_to_failed),
      cmocka_unit_test(test_pending_to_cancelled),
      cmocka_unit_test(test_pool_task_running),
      cmocka_unit_test(test_settle_once),
      cmocka_unit_test(test_settle_once_callbacks_once),
      cmocka_unit_test(test_value_destructor_on_last_release),
      cmocka_unit_test(test_failed_future_value_destructor),
      cmocka_unit_test(test_release_pending_does_not_cancel),
      cmocka_unit_test(test_detail_strings),
      cmocka_unit_test(test_wait_timeout_stays_pending),
      cmocka_unit_test(test_wait_timeout_vs_etimedout),
      cmocka_unit_test(test_wait_zero_timeout),
      cmocka_unit_test(test_wait_from_other_thread_settles),
      cmocka_unit_test(test_callbacks_in_order),
      cmocka_unit_test(test_callback_after_settle_runs),
      cmocka_unit_test(test_mixed_order_before_and_after_settle),
      cmocka_unit_test(test_loop_callbacks_from_ready_queue),
      cmocka_unit_test(test_loop_callbacks_on_loop_thread),
      cmocka_unit_test(test_loopless_callbacks_inside_outermost_settle),
      cmocka_unit_test(test_loopless_callback_thread_identity),
      cmocka_unit_test(test_chain_million_loopless),
      cmocka_unit_test(test_chain_million_loop),
      cmocka_unit_test(test_race_settle_cancel_wait_callbacks),
      cmocka_unit_test(test_race_loop_future_settle),
  };
  t_require_uring();
  return cmocka_run_group_tests(tests, NULL, NULL);
}
