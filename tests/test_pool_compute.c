/* test_pool_compute.c: ak_pool_compute, cs.asynchron's "an incomplete
 * Asynchron can be told to call a function to compute its value": RUNNING
 * while the callable runs, its result or error reaching every waiter and
 * callback, the refusals (not a plain promise, settled, handed one before,
 * pool stopped), a loop kept alive until the promise settled, and a cancel
 * or set while the work is queued or running winning over the callable. */
#define _GNU_SOURCE
#include "helpers.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

/* ---- A callable driven by semaphores ---------------------------------------------- */

typedef struct gate {
  t_sem started;        /* posted when fn starts */
  t_sem go;             /* fn waits for it (bounded) */
  bool wait_for_go;     /* else fn returns at once */
  _Atomic int calls;
  _Atomic bool go_timed_out;
  int64_t ret;          /* what fn returns */
  const char *detail;   /* fn's detail, when failing */
  void *value;          /* fn's value, when succeeding */
  pthread_t thread;
  ak_state state_inside; /* the promise's state seen by fn */
  int64_t linger_ns;    /* after go, fn takes this long to return */
} gate;

static void gate_init(gate *g, bool wait_for_go, int64_t ret)
{
  memset(g, 0, sizeof(*g));
  t_sem_init(&g->started, 0);
  t_sem_init(&g->go, 0);
  g->wait_for_go = wait_for_go;
  g->ret = ret;
}

static void gate_destroy(gate *g)
{
  t_sem_destroy(&g->started);
  t_sem_destroy(&g->go);
}

static int64_t gated_fn(void *arg, ak_future *self)
{
  gate *g = arg;
  g->thread = pthread_self();
  g->state_inside = ak_future_state(self);
  atomic_fetch_add(&g->calls, 1);
  t_sem_post(&g->started);
  if (g->wait_for_go && !t_sem_wait(&g->go))
    atomic_store(&g->go_timed_out, true);
  if (g->linger_ns > 0) {
    struct timespec ts = {0, (long)g->linger_ns};
    nanosleep(&ts, NULL);
  }
  if (g->ret < 0 && g->detail)
    ak_future_set_detail(self, g->detail);
  if (g->ret >= 0 && g->value)
    ak_future_set_value(self, g->value, NULL);
  return g->ret;
}

/* ---- Waiters on other threads, and a callback ------------------------------------- */

typedef struct waiter {
  ak_future *f;
  t_sem waiting;      /* posted just before the wait */
  int64_t got;
  void *value;
  ak_state state;
  char detail[64];
} waiter;

static void *wait_on_promise(void *arg)
{
  waiter *w = arg;
  t_sem_post(&w->waiting);
  w->got = ak_future_get(w->f, T_HANG_NS, &w->value);
  w->state = ak_future_state(w->f);
  const char *d = ak_future_detail(w->f);
  snprintf(w->detail, sizeof(w->detail), "%s", d ? d : "");
  return NULL;
}

typedef struct cb_rec {
  _Atomic int calls;
  ak_state state;
  int64_t result;
  pthread_t thread;
  t_sem ran;
} cb_rec;

static void record_cb(ak_future *f, void *arg)
{
  cb_rec *c = arg;
  c->state = ak_future_state(f);
  c->result = ak_future_result(f);
  c->thread = pthread_self();
  atomic_fetch_add(&c->calls, 1);
  t_sem_post(&c->ran);
}

/* Two waiters and a callback on p while gated_fn computes it: the promise is
 * RUNNING while fn runs, and every one of them sees fn's outcome. */
static void compute_with_waiters(gate *g, waiter w[2], cb_rec *cb)
{
  ak_pool *pool = ak_pool_new(2);
  assert_non_null(pool);
  ak_future *p = ak_future_new(NULL);
  t_sem_init(&cb->ran, 0);
  assert_int_equal(ak_future_on_settle(p, record_cb, cb), 0);
  pthread_t t[2];
  for (int i = 0; i < 2; i++) {
    w[i].f = p;
    t_sem_init(&w[i].waiting, 0);
    t[i] = t_thread_start(wait_on_promise, &w[i], 0);
    assert_true(t_sem_wait(&w[i].waiting));
  }
  assert_int_equal(ak_future_state(p), AK_PENDING);
  assert_int_equal(ak_pool_compute(pool, p, gated_fn, g), 0);
  assert_true(t_sem_wait(&g->started));
  assert_int_equal(ak_future_state(p), AK_RUNNING); /* while fn runs */
  assert_int_equal(g->state_inside, AK_RUNNING);
  assert_int_equal(ak_future_wait(p, 0), AK_EWAITTIMEOUT);
  t_sem_post(&g->go);
  for (int i = 0; i < 2; i++) {
    t_thread_join(t[i]);
    t_sem_destroy(&w[i].waiting);
  }
  assert_true(t_sem_wait(&cb->ran));
  assert_false(atomic_load(&g->go_timed_out));
  assert_int_equal(atomic_load(&g->calls), 1);
  assert_false(pthread_equal(g->thread, pthread_self())); /* on a worker */
  ak_future_release(p); /* the waiters and the callback are done with it */
  ak_pool_free(pool);
  t_sem_destroy(&cb->ran);
}

static void test_compute_running_then_done_reaches_every_waiter(void **state)
{
  (void)state;
  static int token;
  gate g;
  gate_init(&g, true, 99);
  g.value = &token;
  waiter w[2] = {0};
  cb_rec cb = {0};
  compute_with_waiters(&g, w, &cb);
  for (int i = 0; i < 2; i++) {
    assert_int_equal(w[i].got, 99);
    assert_int_equal(w[i].state, AK_DONE);
    assert_ptr_equal(w[i].value, &token);
  }
  assert_int_equal(atomic_load(&cb.calls), 1);
  assert_int_equal(cb.state, AK_DONE);
  assert_int_equal(cb.result, 99);
  gate_destroy(&g);
}

static void test_compute_error_reaches_every_waiter(void **state)
{
  (void)state;
  gate g;
  gate_init(&g, true, -EIO);
  g.detail = "disk on fire";
  waiter w[2] = {0};
  cb_rec cb = {0};
  compute_with_waiters(&g, w, &cb);
  for (int i = 0; i < 2; i++) {
    assert_int_equal(w[i].got, -EIO);
    assert_int_equal(w[i].state, AK_FAILED);
    assert_string_equal(w[i].detail, "disk on fire");
    assert_null(w[i].value);
  }
  assert_int_equal(atomic_load(&cb.calls), 1);
  assert_int_equal(cb.state, AK_FAILED);
  assert_int_equal(cb.result, -EIO);
  gate_destroy(&g);
}

/* ---- Refusals ------------------------------------------------------------------------ */

static int64_t quick_fn(void *arg, ak_future *self)
{
  (void)self;
  atomic_fetch_add((_Atomic int *)arg, 1);
  return 3;
}

static int64_t plus_one(ak_future *input, void *arg, ak_future *self)
{
  (void)arg;
  (void)self;
  return ak_future_result(input) + 1;
}

static void test_compute_rejects_what_is_not_a_plain_promise(void **state)
{
  (void)state;
  ak_loop *loop = t_loop_new();
  ak_pool *pool = ak_pool_new(1);
  _Atomic int calls = 0;

  ak_future *task = ak_pool_submit(pool, quick_fn, &calls); /* a pool task */
  assert_int_equal(ak_future_wait(task, T_HANG_NS), 0);
  ak_future *sleep = ak_sleep(loop, 60 * T_SEC); /* a ring timer's future */
  ak_future *promise = ak_future_new(NULL);
  ak_future *step = ak_then(promise, plus_one, NULL, NULL); /* a then-step */

  atomic_store(&calls, 0);
  assert_int_equal(ak_pool_compute(pool, task, quick_fn, &calls), -EINVAL);
  assert_int_equal(ak_pool_compute(pool, sleep, quick_fn, &calls), -EINVAL);
  assert_int_equal(ak_pool_compute(pool, step, quick_fn, &calls), -EINVAL);
  assert_int_equal(ak_pool_compute(NULL, promise, quick_fn, &calls), -EINVAL);
  assert_int_equal(ak_pool_compute(pool, NULL, quick_fn, &calls), -EINVAL);
  assert_int_equal(ak_pool_compute(pool, promise, NULL, &calls), -EINVAL);
  /* Nothing changed: the sleep is still pending, the promise too. */
  assert_int_equal(ak_future_state(sleep), AK_PENDING);
  assert_int_equal(ak_future_state(promise), AK_PENDING);
  assert_int_equal(ak_future_result(task), 3);

  /* The promise refused for a NULL pool or fn can still be handed one. */
  assert_int_equal(ak_pool_compute(pool, promise, quick_fn, &calls), 0);
  assert_int_equal(ak_future_get(promise, T_HANG_NS, NULL), 3);
  assert_int_equal(ak_future_get(step, T_HANG_NS, NULL), 4); /* and its chain goes on */
  ak_pool_free(pool); /* every task has ended */
  assert_int_equal(atomic_load(&calls), 1);

  ak_future_cancel(sleep);
  ak_future_release(step);
  ak_future_release(promise);
  ak_future_release(sleep);
  ak_future_release(task);
  ak_loop_free(loop);
}

static void test_compute_settled_promise(void **state)
{
  (void)state;
  ak_pool *pool = ak_pool_new(1);
  _Atomic int calls = 0;
  ak_future *done = ak_future_new(NULL);
  ak_future_set(done, 11, NULL, NULL);
  ak_future *cancelled = ak_future_new(NULL);
  ak_future_cancel(cancelled);
  ak_future *failed = ak_future_new(NULL);
  ak_future_fail(failed, -EPIPE, NULL);
  assert_int_equal(ak_pool_compute(pool, done, quick_fn, &calls), AK_ESETTLED);
  assert_int_equal(ak_pool_compute(pool, cancelled, quick_fn, &calls), AK_ESETTLED);
  assert_int_equal(ak_pool_compute(pool, failed, quick_fn, &calls), AK_ESETTLED);
  ak_pool_free(pool);
  assert_int_equal(atomic_load(&calls), 0);
  assert_int_equal(ak_future_result(done), 11); /* outcomes kept */
  assert_int_equal(ak_future_state(cancelled), AK_CANCELLED);
  assert_int_equal(ak_future_result(failed), -EPIPE);
  ak_future_release(done);
  ak_future_release(cancelled);
  ak_future_release(failed);
}

static void test_compute_twice_is_busy(void **state)
{
  (void)state;
  ak_pool *pool = ak_pool_new(2);
  gate g;
  gate_init(&g, true, 21);
  _Atomic int second_calls = 0;
  ak_future *p = ak_future_new(NULL);
  assert_int_equal(ak_pool_compute(pool, p, gated_fn, &g), 0);
  /* Before and while the first runs. */
  assert_int_equal(ak_pool_compute(pool, p, quick_fn, &second_calls), -EBUSY);
  assert_true(t_sem_wait(&g.started));
  assert_int_equal(ak_pool_compute(pool, p, quick_fn, &second_calls), -EBUSY);
  t_sem_post(&g.go);
  assert_int_equal(ak_future_get(p, T_HANG_NS, NULL), 21); /* the first one's */
  /* Settled now: that is said first. */
  assert_int_equal(ak_pool_compute(pool, p, quick_fn, &second_calls), AK_ESETTLED);
  ak_pool_free(pool);
  assert_int_equal(atomic_load(&second_calls), 0);
  assert_int_equal(atomic_load(&g.calls), 1);
  ak_future_release(p);
  gate_destroy(&g);
}

static void test_compute_after_stop_fails_promise(void **state)
{
  (void)state;
  ak_pool *pool = ak_pool_new(1);
  ak_pool_stop(pool, true);
  _Atomic int calls = 0;
  ak_future *p = ak_future_new(NULL);
  assert_int_equal(ak_pool_compute(pool, p, quick_fn, &calls), AK_ESHUTDOWN);
  assert_int_equal(ak_future_state(p), AK_FAILED);
  assert_int_equal(ak_future_result(p), AK_ESHUTDOWN);
  ak_pool_free(pool);
  assert_int_equal(atomic_load(&calls), 0);
  ak_future_release(p);
}

/* ---- A promise on a loop ------------------------------------------------------------ */

typedef struct watchdog {
  ak_loop *loop;
  t_sem finished;
  _Atomic bool fired;
} watchdog;

/* Stops the loop if the test's run has not finished within T_HANG_NS. */
static void *watch_run(void *arg)
{
  watchdog *w = arg;
  if (!t_sem_wait(&w->finished)) {
    atomic_store(&w->fired, true);
    ak_loop_stop(w->loop);
  }
  return NULL;
}

static void post_go(void *arg)
{
  t_sem_post(arg);
}

static void test_compute_keeps_loop_alive_until_settled(void **state)
{
  (void)state;
  ak_loop *loop = t_loop_new();
  ak_pool *pool = ak_pool_new(1);
  gate g;
  gate_init(&g, true, 8);
  /* Not for ordering (the semaphores do that): it keeps fn running well
   * past the iteration that let it go, so a loop that did not count the
   * promise as alive would be seen returning early. */
  g.linger_ns = 20 * T_MS;
  cb_rec cb = {0};
  t_sem_init(&cb.ran, 0);
  ak_future *p = ak_future_new(loop);
  assert_int_equal(ak_future_on_settle(p, record_cb, &cb), 0);
  assert_int_equal(ak_pool_compute(pool, p, gated_fn, &g), 0);
  /* fn finishes only once the run has started (the post runs inside it):
   * only the compute keeps the loop from being idle after that. */
  assert_int_equal(ak_loop_post(loop, post_go, &g.go), 0);
  watchdog w = {.loop = loop};
  t_sem_init(&w.finished, 0);
  pthread_t t = t_thread_start(watch_run, &w, 0);
  int rc = ak_loop_run(loop, AK_RUN_DEFAULT);
  t_sem_post(&w.finished);
  t_thread_join(t);
  t_sem_destroy(&w.finished);
  assert_false(atomic_load(&w.fired));
  assert_int_equal(rc, 0);
  assert_int_equal(atomic_load(&cb.calls), 1); /* before the run returned */
  assert_true(pthread_equal(cb.thread, pthread_self())); /* on the loop's thread */
  assert_int_equal(cb.state, AK_DONE);
  assert_int_equal(cb.result, 8);
  assert_int_equal(ak_future_state(p), AK_DONE);
  assert_false(atomic_load(&g.go_timed_out));
  ak_future_release(p);
  ak_pool_free(pool);
  ak_loop_free(loop);
  t_sem_destroy(&cb.ran);
  gate_destroy(&g);
}

/* ---- A cancel or set wins over the callable ------------------------------------------ */

static void test_cancel_while_computing_drops_result(void **state)
{
  (void)state;
  ak_pool *pool = ak_pool_new(1);
  gate g;
  gate_init(&g, true, 5);
  cb_rec cb = {0};
  t_sem_init(&cb.ran, 0);
  ak_future *p = ak_future_new(NULL);
  assert_int_equal(ak_future_on_settle(p, record_cb, &cb), 0);
  assert_int_equal(ak_pool_compute(pool, p, gated_fn, &g), 0);
  assert_true(t_sem_wait(&g.started));
  assert_int_equal(ak_future_cancel(p), 0);
  assert_int_equal(ak_future_state(p), AK_CANCELLED); /* at once: a promise */
  t_sem_post(&g.go);
  ak_pool_stop(pool, true); /* fn has returned and its outcome was offered */
  assert_int_equal(atomic_load(&g.calls), 1);
  assert_int_equal(ak_future_state(p), AK_CANCELLED);
  assert_int_equal(ak_future_result(p), -ECANCELED); /* fn's 5 dropped */
  assert_true(t_sem_wait(&cb.ran));
  assert_int_equal(atomic_load(&cb.calls), 1);
  assert_int_equal(cb.state, AK_CANCELLED);
  ak_future_release(p);
  ak_pool_free(pool);
  t_sem_destroy(&cb.ran);
  gate_destroy(&g);
}

static int64_t return_seven(void *arg, ak_future *self)
{
  (void)arg;
  (void)self;
  return 7;
}

/* The work waits in the queue behind a busy worker; the user cancels the
 * promise (or sets it) meanwhile. That outcome stays, the callable never
 * runs, and the tasks queued with it still run. */
static void settle_while_queued(bool by_cancel)
{
  ak_pool *pool = ak_pool_new(1);
  gate busy;
  gate_init(&busy, true, 0);
  ak_future *blocker = ak_pool_submit(pool, gated_fn, &busy);
  assert_true(t_sem_wait(&busy.started)); /* the one worker is taken */

  _Atomic int calls = 0;
  cb_rec cb = {0};
  t_sem_init(&cb.ran, 0);
  ak_future *p = ak_future_new(NULL);
  assert_int_equal(ak_future_on_settle(p, record_cb, &cb), 0);
  assert_int_equal(ak_pool_compute(pool, p, quick_fn, &calls), 0);
  ak_future *after = ak_pool_submit(pool, return_seven, NULL);
  ak_future *dropped = ak_pool_submit(pool, return_seven, NULL);
  /* Cancelling a queued task sorts the queue (the pool moves what has
   * arrived to the list it unlinks from). */
  assert_int_equal(ak_future_cancel(dropped), 0);
  assert_int_equal(ak_future_state(dropped), AK_CANCELLED);

  if (by_cancel)
    assert_int_equal(ak_future_cancel(p), 0);
  else
    assert_int_equal(ak_future_set(p, 40, NULL, NULL), 0);
  t_sem_post(&busy.go);

  int64_t got = ak_future_get(after, T_HANG_NS, NULL);
  assert_int_equal(ak_future_wait(blocker, T_HANG_NS), 0);
  ak_pool_stop(pool, true);
  assert_int_equal(got, 7); /* the task queued behind the promise ran */
  assert_int_equal(atomic_load(&calls), 0); /* the callable never ran */
  assert_true(t_sem_wait(&cb.ran));
  assert_int_equal(atomic_load(&cb.calls), 1);
  if (by_cancel) {
    assert_int_equal(ak_future_state(p), AK_CANCELLED);
  } else {
    assert_int_equal(ak_future_state(p), AK_DONE);
    assert_int_equal(ak_future_result(p), 40);
  }
  ak_future_release(p);
  ak_future_release(after);
  ak_future_release(dropped);
  ak_future_release(blocker);
  ak_pool_free(pool);
  t_sem_destroy(&cb.ran);
  gate_destroy(&busy);
}

static void test_cancel_while_queued_keeps_the_queue(void **state)
{
  (void)state;
  settle_while_queued(true);
}

static void test_set_while_queued_keeps_the_queue(void **state)
{
  (void)state;
  settle_while_queued(false);
}

/* ---- A stop without waiting -------------------------------------------------------- */

typedef struct stop_call {
  ak_pool *pool;
  bool wait;
} stop_call;

static void *stop_pool(void *arg)
{
  stop_call *sc = arg;
  ak_pool_stop(sc->pool, sc->wait);
  return NULL;
}

static void test_stop_nowait_cancels_queued_compute(void **state)
{
  (void)state;
  ak_pool *pool = ak_pool_new(1);
  gate busy;
  gate_init(&busy, true, 0);
  ak_future *blocker = ak_pool_submit(pool, gated_fn, &busy);
  assert_true(t_sem_wait(&busy.started)); /* the one worker is taken */
  _Atomic int calls = 0;
  ak_future *p = ak_future_new(NULL);
  assert_int_equal(ak_pool_compute(pool, p, quick_fn, &calls), 0);
  stop_call sc = {pool, false};
  pthread_t t = t_thread_start(stop_pool, &sc, 0);
  /* The queued work is discarded while the running task still runs: the
   * promise settles CANCELLED, as queued tasks do, and is not left pending. */
  assert_int_equal(ak_future_wait(p, T_HANG_NS), 0);
  assert_int_equal(ak_future_state(p), AK_CANCELLED);
  assert_false(ak_future_is_set(blocker));
  t_sem_post(&busy.go);
  t_thread_join(t);
  assert_int_equal(atomic_load(&calls), 0);
  assert_int_equal(ak_future_state(blocker), AK_DONE);
  ak_future_release(p);
  ak_future_release(blocker);
  ak_pool_free(pool);
  gate_destroy(&busy);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_compute_running_then_done_reaches_every_waiter),
      cmocka_unit_test(test_compute_error_reaches_every_waiter),
      cmocka_unit_test(test_compute_rejects_what_is_not_a_plain_promise),
      cmocka_unit_test(test_compute_settled_promise),
      cmocka_unit_test(test_compute_twice_is_busy),
      cmocka_unit_test(test_compute_after_stop_fails_promise),
      cmocka_unit_test(test_compute_keeps_loop_alive_until_settled),
      cmocka_unit_test(test_cancel_while_computing_drops_result),
      cmocka_unit_test(test_cancel_while_queued_keeps_the_queue),
      cmocka_unit_test(test_set_while_queued_keeps_the_queue),
      cmocka_unit_test(test_stop_nowait_cancels_queued_compute),
  };
  t_require_uring();
  return cmocka_run_group_tests(tests, NULL, NULL);
}
