/* test_loop_calls.c: ak_loop_call (asyncio's run_coroutine_threadsafe) from
 * a plain thread, from another loop's thread and from the owner itself,
 * with results, adoptions, errors, cancellation and no memory; and ak_loop_pool (the
 * shared pool by default, the one given in the options otherwise, and
 * run_in_executor settling on the loop). */
#define _GNU_SOURCE
#include "helpers.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

/* ---- What a called function records ------------------------------------------ */

typedef struct call_rec {
  ak_loop *loop;        /* the loop the call targets */
  _Atomic int calls;    /* times fn ran */
  bool on_owner;        /* ak_loop_is_owner(loop) inside fn */
  pthread_t thread;     /* the thread fn ran on */
  int64_t ret;          /* what fn returns */
  const char *detail;   /* set as fn's detail when not NULL */
  int64_t sleep_ns;     /* > 0: fn adopts ak_sleep(loop, sleep_ns) */
} call_rec;

static int g_value_token;

static int64_t recording_fn(void *arg, ak_future *self)
{
  call_rec *r = arg;
  r->on_owner = ak_loop_is_owner(r->loop);
  r->thread = pthread_self();
  atomic_fetch_add(&r->calls, 1);
  if (r->sleep_ns > 0)
    return ak_future_adopt(self, ak_sleep(r->loop, r->sleep_ns));
  if (r->detail)
    ak_future_set_detail(self, r->detail);
  else if (r->ret >= 0)
    ak_future_set_value(self, &g_value_token, NULL);
  return r->ret;
}

/* ---- A plain thread calls and waits ------------------------------------------- */

typedef struct caller {
  call_rec *rec;
  bool cancel_first;  /* cancel the future at once, then stop */
  int64_t got;        /* ak_future_get's return */
  void *value;
  ak_state state;
  char detail[64];
  int cancel_rc;
  int64_t took;       /* ns from the call to the result */
  _Atomic bool done;
  t_sem finished;
} caller;

static void *call_from_plain_thread(void *arg)
{
  caller *c = arg;
  int64_t t0 = ak_now_ns();
  ak_future *f = ak_loop_call(c->rec->loop, recording_fn, c->rec);
  if (c->cancel_first)
    c->cancel_rc = ak_future_cancel(f);
  c->got = ak_future_get(f, T_HANG_NS, &c->value);
  c->took = ak_now_ns() - t0;
  c->state = ak_future_state(f);
  const char *d = ak_future_detail(f);
  if (d)
    snprintf(c->detail, sizeof(c->detail), "%s", d);
  ak_future_release(f);
  atomic_store(&c->done, true);
  t_sem_post(&c->finished);
  return NULL;
}

static bool caller_done(void *arg)
{
  return atomic_load(&((caller *)arg)->done);
}

/* Runs the caller on a plain thread while this thread (the loop's owner)
 * runs the loop; both bounded. */
static void run_plain_caller(caller *c)
{
  t_sem_init(&c->finished, 0);
  pthread_t t = t_thread_start(call_from_plain_thread, c, 0);
  if (c->cancel_first) {
    /* The loop does not run until the call was made and cancelled. */
    assert_true(t_sem_wait(&c->finished));
    for (int i = 0; i < 3; i++)
      assert_true(ak_loop_run(c->rec->loop, AK_RUN_NOWAIT) >= 0);
  } else {
    assert_true(t_run_until(c->rec->loop, caller_done, c, T_HANG_NS));
  }
  t_thread_join(t);
  t_sem_destroy(&c->finished);
}

static void test_call_from_plain_thread(void **state)
{
  (void)state;
  ak_loop *loop = t_loop_new();
  call_rec rec = {.loop = loop, .ret = 42};
  caller c = {.rec = &rec};
  run_plain_caller(&c);
  assert_int_equal(atomic_load(&rec.calls), 1);
  assert_true(rec.on_owner); /* fn ran on the loop's thread */
  assert_true(pthread_equal(rec.thread, pthread_self()));
  assert_int_equal(c.got, 42);
  assert_int_equal(c.state, AK_DONE);
  assert_ptr_equal(c.value, &g_value_token); /* the value fn set */
  ak_loop_free(loop);
}

static void test_call_adopts_a_sleep_on_the_loop(void **state)
{
  (void)state;
  ak_loop *loop = t_loop_new();
  call_rec rec = {.loop = loop, .sleep_ns = 20 * T_MS};
  caller c = {.rec = &rec};
  run_plain_caller(&c);
  assert_int_equal(atomic_load(&rec.calls), 1);
  assert_true(rec.on_owner);
  assert_int_equal(c.state, AK_DONE);
  assert_int_equal(c.got, 0); /* the sleep's result */
  assert_true(c.took >= 20 * T_MS - T_MS); /* settled as the sleep did, not before */
  ak_loop_free(loop);
}

static void test_call_error_keeps_detail(void **state)
{
  (void)state;
  ak_loop *loop = t_loop_new();
  call_rec rec = {.loop = loop, .ret = -ENOENT, .detail = "no such table"};
  caller c = {.rec = &rec};
  run_plain_caller(&c);
  assert_int_equal(atomic_load(&rec.calls), 1);
  assert_int_equal(c.state, AK_FAILED);
  assert_int_equal(c.got, -ENOENT);
  assert_string_equal(c.detail, "no such table");
  assert_null(c.value);
  ak_loop_free(loop);
}

static void test_cancel_before_fn_runs(void **state)
{
  (void)state;
  ak_loop *loop = t_loop_new();
  call_rec rec = {.loop = loop, .ret = 1};
  caller c = {.rec = &rec, .cancel_first = true};
  run_plain_caller(&c); /* the loop runs only after the cancel */
  assert_int_equal(c.cancel_rc, 0);
  assert_int_equal(c.state, AK_CANCELLED);
  assert_int_equal(c.got, -ECANCELED);
  assert_int_equal(atomic_load(&rec.calls), 0); /* the post ran, fn did not */
  assert_int_equal(ak_loop_run(loop, AK_RUN_NOWAIT), 0); /* nothing left behind */
  ak_loop_free(loop);
}

/* ---- Out of memory ------------------------------------------------------------------ */

typedef struct oom_call {
  call_rec *rec;
  uint64_t fail_nth;  /* which allocation of the call fails */
  bool fired;
  bool was_null;
  ak_state state;
  int64_t result;
} oom_call;

/* On a fresh thread (its record cache empty) the call's first allocation is
 * the future's record, the second the post's. */
static void *call_with_failing_alloc(void *arg)
{
  oom_call *o = arg;
  t_alloc_fail_nth(o->fail_nth);
  ak_future *f = ak_loop_call(o->rec->loop, recording_fn, o->rec);
  o->fired = t_alloc_fail_fired();
  t_alloc_fail_nth(0);
  o->was_null = f == NULL;
  if (f) {
    o->state = ak_future_state(f);
    o->result = ak_future_result(f);
    ak_future_release(f);
  }
  return NULL;
}

static void test_call_out_of_memory(void **state)
{
  (void)state;
  ak_loop *loop = t_loop_new();
  call_rec rec = {.loop = loop, .ret = 1};
  /* No record for the future: NULL, as the header says. */
  oom_call a = {.rec = &rec, .fail_nth = 1};
  t_thread_join(t_thread_start(call_with_failing_alloc, &a, 0));
  assert_true(a.fired);
  assert_true(a.was_null);
  /* No record for the post: the call cannot reach the loop; the caller
   * learns it at once (NULL, or a future already FAILED with -ENOMEM). */
  oom_call b = {.rec = &rec, .fail_nth = 2};
  t_thread_join(t_thread_start(call_with_failing_alloc, &b, 0));
  assert_true(b.fired);
  if (!b.was_null) {
    assert_int_equal(b.state, AK_FAILED);
    assert_int_equal(b.result, -ENOMEM);
  }
  for (int i = 0; i < 3; i++)
    assert_true(ak_loop_run(loop, AK_RUN_NOWAIT) >= 0);
  assert_int_equal(atomic_load(&rec.calls), 0); /* fn never ran */
  ak_loop_free(loop);
}

/* ---- The owner thread calls its own loop ---------------------------------------- */

static void test_call_from_owner_runs_next_iteration(void **state)
{
  (void)state;
  ak_loop *loop = t_loop_new();
  call_rec rec = {.loop = loop, .ret = 5};
  ak_future *f = ak_loop_call(loop, recording_fn, &rec);
  assert_non_null(f);
  assert_int_equal(atomic_load(&rec.calls), 0); /* not inside the call */
  assert_int_equal(ak_future_state(f), AK_PENDING);
  assert_ptr_equal(ak_future_loop(f), loop); /* it settles on the caller's loop */
  assert_true(ak_loop_run(loop, AK_RUN_NOWAIT) >= 0);
  assert_int_equal(atomic_load(&rec.calls), 1); /* at the next iteration */
  assert_true(rec.on_owner);
  assert_int_equal(ak_future_wait(f, T_HANG_NS), 0);
  assert_int_equal(ak_future_result(f), 5);
  assert_int_equal(ak_future_state(f), AK_DONE);
  ak_future_release(f);
  ak_loop_free(loop);
}

static void test_cancel_after_fn_adopted_cancels_adopted(void **state)
{
  (void)state;
  ak_loop *loop = t_loop_new();
  call_rec rec = {.loop = loop, .sleep_ns = 60 * T_SEC}; /* only a cancel ends it */
  ak_future *f = ak_loop_call(loop, recording_fn, &rec);
  assert_true(ak_loop_run(loop, AK_RUN_NOWAIT) >= 0);
  assert_int_equal(atomic_load(&rec.calls), 1); /* fn ran and adopted the sleep */
  assert_false(ak_future_is_set(f));
  assert_int_equal(ak_future_cancel(f), 0);
  assert_int_equal(ak_future_wait(f, T_HANG_NS), 0); /* the sleep's cancel reached it */
  assert_int_equal(ak_future_state(f), AK_CANCELLED);
  assert_int_equal(ak_future_result(f), -ECANCELED);
  ak_future_release(f);
  ak_loop_free(loop);
}

/* ---- One loop asks another ------------------------------------------------------ */

typedef struct other_loop {
  call_rec *rec;           /* the target is rec->loop, run by the test thread */
  ak_loop *own;            /* this thread's loop */
  int run_rc;
  bool settled_after_run;  /* the future had settled when ak_loop_run returned */
  ak_state state;
  int64_t result;
  ak_loop *future_loop;
  _Atomic int cb_calls;
  pthread_t cb_thread;
  bool cb_on_own;          /* ak_loop_is_owner(own) inside the callback */
  pthread_t self;
  _Atomic bool done;
  t_sem running;           /* posted just before ak_loop_run */
} other_loop;

static void record_cb(ak_future *f, void *arg)
{
  other_loop *o = arg;
  (void)f;
  o->cb_thread = pthread_self();
  o->cb_on_own = ak_loop_is_owner(o->own);
  atomic_fetch_add(&o->cb_calls, 1);
}

static void *call_from_other_loop(void *arg)
{
  other_loop *o = arg;
  o->self = pthread_self();
  if (ak_loop_new(&o->own, NULL) != 0) {
    o->run_rc = -1;
    atomic_store(&o->done, true);
    t_sem_post(&o->running);
    return NULL;
  }
  ak_future *f = ak_loop_call(o->rec->loop, recording_fn, o->rec);
  o->future_loop = ak_future_loop(f);
  ak_future_on_settle(f, record_cb, o);
  t_sem_post(&o->running);
  /* Nothing else is alive on this loop: only the call keeps it running
   * until the result has come and its callback has run. */
  o->run_rc = ak_loop_run(o->own, AK_RUN_DEFAULT);
  o->settled_after_run = ak_future_is_set(f);
  o->state = ak_future_state(f);
  o->result = ak_future_result(f);
  ak_future_release(f);
  ak_loop_free(o->own);
  atomic_store(&o->done, true);
  return NULL;
}

static bool other_done(void *arg)
{
  return atomic_load(&((other_loop *)arg)->done);
}

static void test_call_from_another_loop(void **state)
{
  (void)state;
  ak_loop *target = t_loop_new();
  call_rec rec = {.loop = target, .ret = 77};
  other_loop o = {.rec = &rec};
  t_sem_init(&o.running, 0);
  pthread_t t = t_thread_start(call_from_other_loop, &o, 0);
  /* The target runs only once the caller's loop is (about to be) running. */
  assert_true(t_sem_wait(&o.running));
  bool finished = t_run_until(target, other_done, &o, T_HANG_NS);
  if (!finished && o.own)
    ak_loop_stop(o.own); /* a hang: end it before failing */
  t_thread_join(t);
  t_sem_destroy(&o.running);
  assert_true(finished);
  assert_int_equal(o.run_rc, 0); /* returned idle, not stopped or failed */
  assert_int_equal(atomic_load(&rec.calls), 1);
  assert_true(rec.on_owner); /* fn ran on the target's thread */
  assert_true(pthread_equal(rec.thread, pthread_self()));
  assert_ptr_equal(o.future_loop, o.own); /* the future belongs to the caller's loop */
  assert_true(o.settled_after_run);
  assert_int_equal(o.state, AK_DONE);
  assert_int_equal(o.result, 77);
  assert_int_equal(atomic_load(&o.cb_calls), 1); /* before ak_loop_run returned */
  assert_true(pthread_equal(o.cb_thread, o.self)); /* on the caller's loop thread */
  assert_true(o.cb_on_own);
  ak_loop_free(target);
}

/* ---- ak_loop_pool ------------------------------------------------------------------ */

static void test_loop_pool_default_is_shared(void **state)
{
  (void)state;
  ak_loop *a = t_loop_new();
  ak_pool *p = ak_loop_pool(a);
  assert_non_null(p);
  assert_ptr_equal(ak_loop_pool(a), p); /* the same each call */
  assert_true(ak_pool_size(p) >= 1);
  ak_loop *b = t_loop_new();
  assert_ptr_equal(ak_loop_pool(b), p); /* process-wide */
  ak_loop_free(b);
  ak_loop_free(a);
}

static void test_loop_pool_from_options(void **state)
{
  (void)state;
  ak_pool *mine = ak_pool_new(1);
  assert_non_null(mine);
  ak_loop_options opts = {.pool = mine};
  ak_loop *loop = t_loop_new_opts(&opts);
  assert_ptr_equal(ak_loop_pool(loop), mine);
  ak_loop *other = t_loop_new();
  assert_true(ak_loop_pool(other) != mine); /* the others keep the shared one */
  ak_loop_free(other);
  ak_loop_free(loop);
  ak_pool_free(mine);
}

typedef struct executor_rec {
  pthread_t worker;        /* where the callable ran */
  _Atomic int cb_calls;
  pthread_t cb_thread;
  int64_t cb_result;
} executor_rec;

static int64_t blocking_work(void *arg, ak_future *self)
{
  (void)self;
  executor_rec *e = arg;
  e->worker = pthread_self();
  return 1234;
}

static void executor_cb(ak_future *f, void *arg)
{
  executor_rec *e = arg;
  e->cb_thread = pthread_self();
  e->cb_result = ak_future_result(f);
  atomic_fetch_add(&e->cb_calls, 1);
}

static bool executor_cb_ran(void *arg)
{
  return atomic_load(&((executor_rec *)arg)->cb_calls) > 0;
}

static void test_run_in_executor_settles_on_loop(void **state)
{
  (void)state;
  ak_loop *loop = t_loop_new();
  executor_rec e = {0};
  /* asyncio's loop.run_in_executor(None, blocking_work, &e) */
  ak_future *f = ak_pool_submit(ak_loop_pool(loop), blocking_work, &e);
  assert_non_null(f);
  assert_ptr_equal(ak_future_loop(f), loop);
  assert_int_equal(ak_future_on_settle(f, executor_cb, &e), 0);
  assert_true(t_run_until(loop, executor_cb_ran, &e, T_HANG_NS));
  assert_int_equal(ak_future_result(f), 1234);
  assert_false(pthread_equal(e.worker, pthread_self())); /* ran on a worker */
  assert_true(pthread_equal(e.cb_thread, pthread_self())); /* settled on the loop */
  assert_int_equal(e.cb_result, 1234);
  assert_int_equal(atomic_load(&e.cb_calls), 1);
  ak_future_release(f);
  ak_loop_free(loop);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_call_from_plain_thread),
      cmocka_unit_test(test_call_adopts_a_sleep_on_the_loop),
      cmocka_unit_test(test_call_error_keeps_detail),
      cmocka_unit_test(test_cancel_before_fn_runs),
      cmocka_unit_test(test_call_out_of_memory),
      cmocka_unit_test(test_call_from_owner_runs_next_iteration),
      cmocka_unit_test(test_cancel_after_fn_adopted_cancels_adopted),
      cmocka_unit_test(test_call_from_another_loop),
      cmocka_unit_test(test_loop_pool_default_is_shared),
      cmocka_unit_test(test_loop_pool_from_options),
      cmocka_unit_test(test_run_in_executor_settles_on_loop),
  };
  t_alloc_install(); /* before any other ak_ call: lets a test fail an allocation */
  t_require_uring();
  return cmocka_run_group_tests(tests, NULL, NULL);
}
