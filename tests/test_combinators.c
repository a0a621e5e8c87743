/* test_combinators.c: then/chain, join all/any, completion-order iterator, timeouts. */
#define _GNU_SOURCE
#include "helpers.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* ---- then ------------------------------------------------------------------ */

typedef struct step_rec {
  _Atomic int runs;
  pthread_t who;
  int64_t input_result;
  ak_future *adopt;   /* if set: adopt it */
  int64_t ret;        /* otherwise return this */
  const char *detail; /* set as detail when ret < 0 */
  void *value;        /* set as value when ret >= 0 */
} step_rec;

static int64_t step(ak_future *input, void *arg, ak_future *self)
{
  step_rec *r = arg;
  r->who = pthread_self();
  r->input_result = ak_future_result(input);
  atomic_fetch_add(&r->runs, 1);
  if (r->adopt)
    return ak_future_adopt(self, ak_future_ref(r->adopt));
  if (r->ret < 0 && r->detail)
    ak_future_set_detail(self, r->detail);
  if (r->ret >= 0 && r->value)
    ak_future_set_value(self, r->value, NULL);
  return r->ret;
}

static void test_then_inline_loopless(void **state)
{
  (void)state;
  ak_future *in = ak_future_new(NULL);
  int token;
  step_rec r = {.ret = 7, .value = &token};
  ak_future *out = ak_then(in, step, &r, NULL);
  assert_non_null(out);
  assert_null(ak_future_loop(out));
  assert_int_equal(atomic_load(&r.runs), 0);
  assert_false(ak_future_is_set(out));
  ak_future_set(in, 5, NULL, NULL);
  /* No loop, no pool: the step ran on this (the settling) thread. */
  assert_int_equal(atomic_load(&r.runs), 1);
  assert_true(pthread_equal(r.who, pthread_self()));
  assert_int_equal(r.input_result, 5);
  assert_int_equal(ak_future_state(out), AK_DONE);
  assert_int_equal(ak_future_result(out), 7);
  assert_ptr_equal(ak_future_value(out), &token);
  ak_future_release(in);
  ak_future_release(out);
}

typedef struct set_later {
  ak_future *f;
  int64_t result;
} set_later;

static void *set_from_thread(void *arg)
{
  set_later *s = arg;
  ak_future_set(s->f, s->result, NULL, NULL);
  return NULL;
}

static void test_then_on_loop(void **state)
{
  (void)state;
  ak_loop *loop = t_loop_new();
  ak_future *in = ak_future_new(loop);
  step_rec r = {.ret = 1};
  ak_future *out = ak_then(in, step, &r, NULL);
  assert_ptr_equal(ak_future_loop(out), loop);
  ak_loop_hold(loop);
  set_later s = {in, 10};
  pthread_t t = t_thread_start(set_from_thread, &s, 0);
  t_thread_join(t);
  assert_int_equal(atomic_load(&r.runs), 0); /* not on the settling thread */
  ak_loop_unhold(loop);
  assert_int_equal(ak_future_wait(out, T_HANG_NS), 0);
  assert_int_equal(atomic_load(&r.runs), 1);
  assert_true(pthread_equal(r.who, pthread_self()));
  assert_int_equal(r.input_result, 10);
  assert_int_equal(ak_future_result(out), 1);
  ak_future_release(in);
  ak_future_release(out);
  ak_loop_free(loop);
}

static void test_then_on_pool(void **state)
{
  (void)state;
  ak_pool *pool = ak_pool_new(2);
  ak_future *in = ak_future_new(NULL);
  step_rec r = {.ret = 33};
  ak_future *out = ak_then(in, step, &r, pool);
  ak_future_set(in, 3, NULL, NULL);
  assert_int_equal(ak_future_get(out, T_HANG_NS, NULL), 33);
  assert_int_equal(atomic_load(&r.runs), 1);
  assert_false(pthread_equal(r.who, pthread_self())); /* a worker */
  assert_int_equal(r.input_result, 3);
  ak_future_release(in);
  ak_future_release(out);
  ak_pool_free(pool);
}

static void test_then_on_pool_from_loop(void **state)
{
  (void)state;
  ak_pool *pool = ak_pool_new(2);
  ak_loop *loop = t_loop_new();
  ak_future *in = ak_sleep(loop, T_MS);
  step_rec r = {.ret = 4};
  ak_future *out = ak_then(in, step, &r, pool);
  assert_ptr_equal(ak_future_loop(out), loop);
  assert_int_equal(ak_loop_run(loop, AK_RUN_DEFAULT), 0);
  assert_int_equal(ak_future_state(out), AK_DONE);
  assert_int_equal(ak_future_result(out), 4);
  assert_false(pthread_equal(r.who, pthread_self()));
  ak_future_release(in);
  ak_future_release(out);
  ak_loop_free(loop);
  ak_pool_free(pool);
}

static void test_then_step_error_fails_chain(void **state)
{
  (void)state;
  ak_future *in = ak_future_new(NULL);
  step_rec r = {.ret = -EPROTO, .detail = "unexpected token"};
  step_rec r2 = {.ret = 1};
  ak_future *mid = ak_then(in, step, &r, NULL);
  ak_future *out = ak_then(mid, step, &r2, NULL);
  ak_future_set(in, 0, NULL, NULL);
  assert_int_equal(ak_future_state(mid), AK_FAILED);
  assert_int_equal(ak_future_result(mid), -EPROTO);
  assert_string_equal(ak_future_detail(mid), "unexpected token");
  /* ... and the failure passes down the chain without running r2. */
  assert_int_equal(ak_future_state(out), AK_FAILED);
  assert_int_equal(ak_future_result(out), -EPROTO);
  assert_string_equal(ak_future_detail(out), "unexpected token");
  assert_int_equal(atomic_load(&r2.runs), 0);
  ak_future_release(in);
  ak_future_release(mid);
  ak_future_release(out);
}

static void test_then_input_failure_skips_step(void **state)
{
  (void)state;
  ak_future *in = ak_future_new(NULL);
  step_rec r = {.ret = 1};
  ak_future *out = ak_then(in, step, &r, NULL);
  ak_future_fail(in, -EIO, "disk");
  assert_int_equal(atomic_load(&r.runs), 0);
  assert_int_equal(ak_future_state(out), AK_FAILED);
  assert_int_equal(ak_future_result(out), -EIO);
  assert_string_equal(ak_future_detail(out), "disk");
  ak_future_release(in);
  ak_future_release(out);
}

static void test_then_input_cancel_skips_step(void **state)
{
  (void)state;
  ak_pool *pool = ak_pool_new(1);
  ak_future *in = ak_future_new(NULL);
  step_rec r = {.ret = 1};
  ak_future *out = ak_then(in, step, &r, pool);
  ak_future_cancel(in);
  assert_int_equal(ak_future_wait(out, T_HANG_NS), 0);
  assert_int_equal(ak_future_state(out), AK_CANCELLED);
  assert_int_equal(ak_future_result(out), -ECANCELED);
  ak_pool_stop(pool, true);
  assert_int_equal(atomic_load(&r.runs), 0);
  ak_future_release(in);
  ak_future_release(out);
  ak_pool_free(pool);
}

static void test_then_adopts_future(void **state)
{
  (void)state;
  ak_future *in = ak_future_new(NULL);
  ak_future *other = ak_future_new(NULL);
  step_rec r = {.adopt = other};
  ak_future *out = ak_then(in, step, &r, NULL);
  ak_future_set(in, 0, NULL, NULL);
  assert_int_equal(atomic_load(&r.runs), 1);
  assert_false(ak_future_is_set(out)); /* waits for other */
  int token;
  ak_future_set(other, 12, &token, NULL);
  assert_int_equal(ak_future_state(out), AK_DONE);
  assert_int_equal(ak_future_result(out), 12);
  assert_ptr_equal(ak_future_value(out), &token);
  ak_future_release(other); /* out keeps what it adopted alive */
  assert_ptr_equal(ak_future_value(out), &token);
  ak_future_release(in);
  ak_future_release(out);

  /* Adopting a failure. */
  in = ak_future_new(NULL);
  other = ak_future_new(NULL);
  step_rec r2 = {.adopt = other};
  out = ak_then(in, step, &r2, NULL);
  ak_future_set(in, 0, NULL, NULL);
  ak_future_fail(other, -ECONNRESET, "peer went away");
  assert_int_equal(ak_future_state(out), AK_FAILED);
  assert_int_equal(ak_future_result(out), -ECONNRESET);
  assert_string_equal(ak_future_detail(out), "peer went away");
  ak_future_release(other);
  ak_future_release(in);
  ak_future_release(out);
}

static void test_then_cancel_cancels_pending_input(void **state)
{
  (void)state;
  ak_future *in = ak_future_new(NULL);
  step_rec r = {.ret = 1};
  ak_future *out = ak_then(in, step, &r, NULL);
  assert_int_equal(ak_future_cancel(out), 0);
  assert_int_equal(ak_future_state(in), AK_CANCELLED);
  assert_int_equal(ak_future_state(out), AK_CANCELLED);
  assert_int_equal(atomic_load(&r.runs), 0);
  ak_future_release(in);
  ak_future_release(out);
}

static void test_then_cancel_on_loop_cancels_op(void **state)
{
  (void)state;
  ak_loop *loop = t_loop_new();
  ak_future *in = ak_sleep(loop, 30 * T_SEC);
  step_rec r = {.ret = 1};
  ak_future *out = ak_then(in, step, &r, NULL);
  assert_int_equal(ak_future_cancel(out), 0);
  int64_t t0 = ak_now_ns();
  assert_int_equal(ak_future_wait(out, T_HANG_NS), 0);
  assert_int_equal(ak_loop_run(loop, AK_RUN_DEFAULT), 0);
  assert_true(ak_now_ns() - t0 < 10 * T_SEC);
  assert_int_equal(ak_future_state(in), AK_CANCELLED);
  assert_int_equal(ak_future_state(out), AK_CANCELLED);
  assert_int_equal(atomic_load(&r.runs), 0);
  ak_future_release(in);
  ak_future_release(out);
  ak_loop_free(loop);
}

static void test_then_cancel_cancels_adopted(void **state)
{
  (void)state;
  ak_future *in = ak_future_new(NULL);
  ak_future *other = ak_future_new(NULL);
  step_rec r = {.adopt = other};
  ak_future *out = ak_then(in, step, &r, NULL);
  ak_future_set(in, 0, NULL, NULL);
  assert_false(ak_future_is_set(out));
  assert_int_equal(ak_future_cancel(out), 0);
  assert_int_equal(ak_future_state(other), AK_CANCELLED);
  assert_int_equal(ak_future_state(out), AK_CANCELLED);
  assert_int_equal(ak_future_state(in), AK_DONE); /* done already: untouched */
  ak_future_release(other);
  ak_future_release(in);
  ak_future_release(out);
}

/* ---- join all / any ----------------------------------------------------------- */

static void test_join_all(void **state)
{
  (void)state;
  ak_future *in[3];
  for (int i = 0; i < 3; i++)
    in[i] = ak_future_new(NULL);
  ak_future *j = ak_join_all(in, 3, 0);
  assert_non_null(j);
  assert_int_equal(ak_join_count(j), 3);
  for (size_t i = 0; i < 3; i++)
    assert_ptr_equal(ak_join_input(j, i), in[i]);
  assert_null(ak_join_input(j, 3));
  ak_future_set(in[2], 20, NULL, NULL);
  ak_future_fail(in[1], -EIO, NULL);
  assert_false(ak_future_is_set(j));
  ak_future_set(in[0], 0, NULL, NULL);
  assert_int_equal(ak_future_state(j), AK_DONE);
  assert_int_equal(ak_future_result(j), 2); /* two succeeded */
  assert_int_equal(ak_future_result(ak_join_input(j, 1)), -EIO);
  assert_int_equal(ak_future_result(ak_join_input(j, 2)), 20);
  /* Not a join. */
  assert_int_equal(ak_join_count(in[0]), 0);
  assert_null(ak_join_input(in[0], 0));
  for (int i = 0; i < 3; i++)
    ak_future_release(in[i]);
  /* The join keeps its inputs alive. */
  assert_int_equal(ak_future_result(ak_join_input(j, 2)), 20);
  ak_future_release(j);
}

static void test_join_all_empty(void **state)
{
  (void)state;
  ak_future *j = ak_join_all(NULL, 0, 0);
  assert_non_null(j);
  assert_int_equal(ak_future_state(j), AK_DONE);
  assert_int_equal(ak_future_result(j), 0);
  assert_int_equal(ak_join_count(j), 0);
  ak_future_release(j);
}

static void test_join_all_fail_fast(void **state)
{
  (void)state;
  ak_future *in[3];
  for (int i = 0; i < 3; i++)
    in[i] = ak_future_new(NULL);
  ak_future *j = ak_join_all(in, 3, AK_JOIN_FAIL_FAST);
  ak_future_set(in[0], 1, NULL, NULL);
  assert_false(ak_future_is_set(j));
  ak_future_fail(in[1], -EACCES, "no permission");
  assert_int_equal(ak_future_state(j), AK_FAILED);
  assert_int_equal(ak_future_result(j), -EACCES);
  assert_string_equal(ak_future_detail(j), "no permission");
  assert_int_equal(ak_future_state(in[2]), AK_CANCELLED); /* the rest */
  assert_int_equal(ak_future_state(in[0]), AK_DONE);
  for (int i = 0; i < 3; i++)
    ak_future_release(in[i]);
  ak_future_release(j);

  /* A cancelled input makes the join CANCELLED. */
  for (int i = 0; i < 3; i++)
    in[i] = ak_future_new(NULL);
  j = ak_join_all(in, 3, AK_JOIN_FAIL_FAST);
  ak_future_cancel(in[2]);
  assert_int_equal(ak_future_state(j), AK_CANCELLED);
  assert_int_equal(ak_future_state(in[0]), AK_CANCELLED);
  assert_int_equal(ak_future_state(in[1]), AK_CANCELLED);
  for (int i = 0; i < 3; i++)
    ak_future_release(in[i]);
  ak_future_release(j);
}

static void test_join_all_without_fail_fast_waits(void **state)
{
  (void)state;
  ak_future *in[2] = {ak_future_new(NULL), ak_future_new(NULL)};
  ak_future *j = ak_join_all(in, 2, 0);
  ak_future_fail(in[0], -EIO, NULL);
  assert_false(ak_future_is_set(j));
  assert_int_equal(ak_future_state(in[1]), AK_PENDING); /* nothing cancelled */
  ak_future_set(in[1], 0, NULL, NULL);
  assert_int_equal(ak_future_result(j), 1);
  ak_future_release(in[0]);
  ak_future_release(in[1]);
  ak_future_release(j);
}

static void test_join_any(void **state)
{
  (void)state;
  ak_future *in[4];
  for (int i = 0; i < 4; i++)
    in[i] = ak_future_new(NULL);
  ak_future *j = ak_join_any(in, 4, 0);
  assert_false(ak_future_is_set(j));
  ak_future_set(in[2], 5, NULL, NULL);
  assert_int_equal(ak_future_state(j), AK_DONE);
  assert_int_equal(ak_future_result(j), 2);
  ak_future_set(in[0], 5, NULL, NULL);
  assert_int_equal(ak_future_result(j), 2); /* the first stays */
  assert_int_equal(ak_future_state(in[1]), AK_PENDING);
  assert_int_equal(ak_future_state(in[3]), AK_PENDING);
  assert_null(ak_join_any(in, 0, 0));
  /* A join holds its inputs until each has settled: settle the rest (a
   * promise nobody can settle any more would keep the join alive). */
  ak_future_set(in[1], 0, NULL, NULL);
  ak_future_set(in[3], 0, NULL, NULL);
  assert_int_equal(ak_future_result(j), 2);
  for (int i = 0; i < 4; i++)
    ak_future_release(in[i]);
  ak_future_release(j);
}

static void test_join_any_cancel_rest(void **state)
{
  (void)state;
  ak_future *in[3];
  for (int i = 0; i < 3; i++)
    in[i] = ak_future_new(NULL);
  ak_future *j = ak_join_any(in, 3, AK_JOIN_CANCEL_REST);
  ak_future_fail(in[1], -ENOENT, NULL); /* a failure also wins */
  assert_int_equal(ak_future_state(j), AK_DONE);
  assert_int_equal(ak_future_result(j), 1);
  assert_int_equal(ak_future_state(in[0]), AK_CANCELLED);
  assert_int_equal(ak_future_state(in[2]), AK_CANCELLED);
  assert_int_equal(ak_future_result(ak_join_input(j, 1)), -ENOENT);
  for (int i = 0; i < 3; i++)
    ak_future_release(in[i]);
  ak_future_release(j);
}

static void test_join_cancel_cancels_inputs(void **state)
{
  (void)state;
  ak_future *in[2] = {ak_future_new(NULL), ak_future_new(NULL)};
  ak_future_set(in[0], 0, NULL, NULL);
  ak_future *j = ak_join_all(in, 2, 0);
  assert_int_equal(ak_future_cancel(j), 0);
  assert_int_equal(ak_future_state(j), AK_CANCELLED);
  assert_int_equal(ak_future_state(in[1]), AK_CANCELLED);
  assert_int_equal(ak_future_state(in[0]), AK_DONE);
  ak_future_release(in[0]);
  ak_future_release(in[1]);
  ak_future_release(j);
}

static void test_join_on_loop(void **state)
{
  (void)state;
  ak_loop *loop = t_loop_new();
  int64_t t0 = ak_now_ns();
  /* The sleeps are long enough that a loaded machine (tsan, two vCPUs shared
   * with builds) cannot stall the loop past the first one before the nop's
   * completion is reaped: timers run before CQEs in an iteration. */
  ak_future *in[3] = {ak_sleep(loop, 200 * T_MS), ak_nop(loop), ak_sleep(loop, 250 * T_MS)};
  ak_future *all = ak_join_all(in, 3, 0);
  ak_future *any = ak_join_any(in, 3, 0);
  assert_ptr_equal(ak_future_loop(all), loop);
  assert_int_equal(ak_future_wait(all, T_HANG_NS), 0);
  assert_true(ak_now_ns() - t0 >= 250 * T_MS);
  assert_int_equal(ak_future_result(all), 3);
  assert_int_equal(ak_future_state(any), AK_DONE);
  assert_int_equal(ak_future_result(any), 1); /* the nop, before any sleep */
  for (int i = 0; i < 3; i++)
    ak_future_release(in[i]);
  ak_future_release(all);
  ak_future_release(any);
  ak_loop_free(loop);
}

/* ---- The completion-order iterator ------------------------------------------------ */

static int index_in(ak_future *const *fs, int n, const ak_future *f)
{
  for (int i = 0; i < n; i++)
    if (fs[i] == f)
      return i;
  return -1;
}

static void test_iter_settle_order(void **state)
{
  (void)state;
  ak_future *in[3];
  for (int i = 0; i < 3; i++)
    in[i] = ak_future_new(NULL);
  ak_iter *it = ak_iter_new(in, 3);
  assert_int_equal(ak_iter_remaining(it), 3);
  ak_future_set(in[2], 0, NULL, NULL);
  ak_future_fail(in[0], -EIO, NULL);
  ak_future_cancel(in[1]);
  int err = 1;
  const int expect[3] = {2, 0, 1};
  for (int k = 0; k < 3; k++) {
    ak_future *f = ak_iter_next(it, T_HANG_NS, &err);
    assert_int_equal(err, 0);
    assert_int_equal(index_in(in, 3, f), expect[k]);
    assert_int_equal(ak_iter_remaining(it), 2 - k);
  }
  assert_null(ak_iter_next(it, T_HANG_NS, &err));
  assert_int_equal(err, 0);
  ak_iter_free(it);
  for (int i = 0; i < 3; i++)
    ak_future_release(in[i]);
}

static void test_iter_timeout(void **state)
{
  (void)state;
  ak_future *in[2] = {ak_future_new(NULL), ak_future_new(NULL)};
  ak_iter *it = ak_iter_new(in, 2);
  int err = 0;
  int64_t t0 = ak_now_ns();
  assert_null(ak_iter_next(it, 30 * T_MS, &err));
  int64_t elapsed = ak_now_ns() - t0;
  assert_int_equal(err, AK_EWAITTIMEOUT);
  assert_true(elapsed >= 30 * T_MS);
  assert_true(elapsed < 10 * T_SEC);
  assert_null(ak_iter_next(it, 0, &err));
  assert_int_equal(err, AK_EWAITTIMEOUT);
  assert_int_equal(ak_iter_remaining(it), 2);
  ak_future_set(in[1], 0, NULL, NULL);
  assert_ptr_equal(ak_iter_next(it, 0, NULL), in[1]);
  /* Freed with an input still pending: its later settle is harmless. */
  ak_iter_free(it);
  ak_future_set(in[0], 0, NULL, NULL);
  ak_future_release(in[0]);
  ak_future_release(in[1]);
}

typedef struct ordered_release {
  t_sem sems[3];
  t_sem next_wanted; /* main is about to block in ak_iter_next */
  int order[3];
} ordered_release;

static int64_t wait_own_sem(void *arg, ak_future *self)
{
  (void)self;
  return t_sem_wait(arg) ? 0 : -ETIMEDOUT;
}

static void *release_in_order(void *arg)
{
  ordered_release *o = arg;
  for (int k = 0; k < 3; k++) {
    /* One task at a time, each once the previous one was handed out. */
    if (!t_sem_wait(&o->next_wanted))
      return NULL;
    t_sem_post(&o->sems[o->order[k]]);
  }
  return NULL;
}

static void test_iter_blocking_pool_futures(void **state)
{
  (void)state;
  ak_pool *pool = ak_pool_new(3);
  ordered_release o = {.order = {1, 2, 0}};
  ak_future *tasks[3];
  t_sem_init(&o.next_wanted, 0);
  for (int i = 0; i < 3; i++) {
    t_sem_init(&o.sems[i], 0);
    tasks[i] = ak_pool_submit(pool, wait_own_sem, &o.sems[i]);
  }
  ak_iter *it = ak_iter_new(tasks, 3);
  pthread_t t = t_thread_start(release_in_order, &o, 0);
  for (int k = 0; k < 3; k++) {
    int err = 1;
    t_sem_post(&o.next_wanted);
    ak_future *f = ak_iter_next(it, T_HANG_NS, &err); /* blocks */
    assert_int_equal(err, 0);
    assert_int_equal(index_in(tasks, 3, f), o.order[k]);
    assert_true(ak_future_is_set(f));
  }
  t_thread_join(t);
  ak_iter_free(it);
  for (int i = 0; i < 3; i++) {
    ak_future_release(tasks[i]);
    t_sem_destroy(&o.sems[i]);
  }
  t_sem_destroy(&o.next_wanted);
  ak_pool_free(pool);
}

static void test_iter_driven_by_loop(void **state)
{
  (void)state;
  ak_loop *loop = t_loop_new();
  const int64_t delays[4] = {40, 10, 30, 20};
  ak_future *in[4];
  for (int i = 0; i < 4; i++)
    in[i] = ak_sleep(loop, delays[i] * T_MS);
  ak_iter *it = ak_iter_new(in, 4);
  const int expect[4] = {1, 3, 2, 0};
  for (int k = 0; k < 4; k++) {
    int err = 1;
    ak_future *f = ak_iter_next(it, T_HANG_NS, &err); /* runs the loop */
    assert_int_equal(err, 0);
    assert_int_equal(index_in(in, 4, f), expect[k]);
  }
  int err = 1;
  assert_null(ak_iter_next(it, T_HANG_NS, &err));
  assert_int_equal(err, 0);
  ak_iter_free(it);
  for (int i = 0; i < 4; i++)
    ak_future_release(in[i]);
  ak_loop_free(loop);
}

/* ---- ak_future_timeout --------------------------------------------------------------- */

static void test_timeout_loopless_fires(void **state)
{
  (void)state;
  ak_future *in = ak_future_new(NULL);
  int64_t t0 = ak_now_ns();
  ak_future *d = ak_future_timeout(in, 30 * T_MS);
  assert_ptr_not_equal(d, in);
  assert_null(ak_future_loop(d));
  assert_int_equal(ak_future_wait(d, T_HANG_NS), 0);
  int64_t elapsed = ak_now_ns() - t0;
  assert_int_equal(ak_future_state(d), AK_FAILED);
  assert_int_equal(ak_future_result(d), -ETIMEDOUT);
  assert_true(elapsed >= 30 * T_MS);
  assert_true(elapsed < 10 * T_SEC);
  assert_int_equal(ak_future_wait(in, T_HANG_NS), 0);
  assert_int_equal(ak_future_state(in), AK_CANCELLED);
  ak_future_release(in);
  ak_future_release(d);
}

static void test_timeout_loop_promise_fires(void **state)
{
  (void)state;
  ak_loop *loop = t_loop_new();
  ak_future *in = ak_future_new(loop);
  int64_t t0 = ak_now_ns();
  ak_future *d = ak_future_timeout(in, 30 * T_MS);
  assert_ptr_equal(ak_future_loop(d), loop);
  assert_int_equal(ak_future_wait(d, T_HANG_NS), 0); /* runs the loop */
  int64_t elapsed = ak_now_ns() - t0;
  assert_int_equal(ak_future_result(d), -ETIMEDOUT);
  assert_int_equal(ak_future_state(d), AK_FAILED);
  assert_true(elapsed >= 30 * T_MS);
  assert_true(elapsed < 10 * T_SEC);
  assert_int_equal(ak_future_state(in), AK_CANCELLED);
  ak_future_release(in);
  ak_future_release(d);
  assert_int_equal(ak_loop_run(loop, AK_RUN_DEFAULT), 0);
  ak_loop_free(loop);
}

static void test_timeout_not_fired_when_input_first(void **state)
{
  (void)state;
  /* Loopless: the timer thread's entry goes away. */
  ak_future *in = ak_future_new(NULL);
  ak_future *d = ak_future_timeout(in, 30 * T_SEC);
  int token;
  ak_future_set(in, 4, &token, NULL);
  int64_t t0 = ak_now_ns();
  assert_int_equal(ak_future_get(d, T_HANG_NS, NULL), 4);
  assert_true(ak_now_ns() - t0 < 10 * T_SEC);
  assert_int_equal(ak_future_state(d), AK_DONE);
  assert_ptr_equal(ak_future_value(d), &token);
  ak_future_release(in);
  ak_future_release(d);

  /* On a loop: the loop timer is cancelled, so DEFAULT returns at once. */
  ak_loop *loop = t_loop_new();
  in = ak_future_new(loop);
  d = ak_future_timeout(in, 30 * T_SEC);
  ak_future_fail(in, -EPIPE, "closed");
  t0 = ak_now_ns();
  assert_int_equal(ak_loop_run(loop, AK_RUN_DEFAULT), 0);
  assert_true(ak_now_ns() - t0 < 10 * T_SEC);
  assert_int_equal(ak_future_state(d), AK_FAILED);
  assert_int_equal(ak_future_result(d), -EPIPE);
  assert_string_equal(ak_future_detail(d), "closed");
  ak_future_release(in);
  ak_future_release(d);
  ak_loop_free(loop);
}

static void test_timeout_cancel_cancels_input(void **state)
{
  (void)state;
  ak_future *in = ak_future_new(NULL);
  ak_future *d = ak_future_timeout(in, 30 * T_SEC);
  assert_int_equal(ak_future_cancel(d), 0);
  assert_int_equal(ak_future_state(in), AK_CANCELLED);
  assert_int_equal(ak_future_wait(d, T_HANG_NS), 0);
  assert_int_equal(ak_future_state(d), AK_CANCELLED);
  ak_future_release(in);
  ak_future_release(d);

  ak_loop *loop = t_loop_new();
  in = ak_sleep(loop, 30 * T_SEC);
  d = ak_future_timeout(in, 20 * T_SEC);
  assert_int_equal(ak_future_cancel(d), 0);
  assert_int_equal(ak_future_wait(d, T_HANG_NS), 0);
  assert_int_equal(ak_future_state(d), AK_CANCELLED);
  assert_int_equal(ak_future_state(in), AK_CANCELLED);
  int64_t t0 = ak_now_ns();
  assert_int_equal(ak_loop_run(loop, AK_RUN_DEFAULT), 0); /* both timers gone */
  assert_true(ak_now_ns() - t0 < 10 * T_SEC);
  ak_future_release(in);
  ak_future_release(d);
  ak_loop_free(loop);
}

static void test_timeout_on_settled_input(void **state)
{
  (void)state;
  ak_future *in = ak_future_new(NULL);
  ak_future_set(in, 2, NULL, NULL);
  ak_future *d = ak_future_timeout(in, T_MS);
  assert_non_null(d);
  assert_int_equal(ak_future_state(d), AK_DONE);
  assert_int_equal(ak_future_result(d), 2);
  ak_future_release(d);
  ak_future_release(in);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_then_inline_loopless),
      cmocka_unit_test(test_then_on_loop),
      cmocka_unit_test(test_then_on_pool),
      cmocka_unit_test(test_then_on_pool_from_loop),
      cmocka_unit_test(test_then_step_error_fails_chain),
      cmocka_unit_test(test_then_input_failure_skips_step),
      cmocka_unit_test(test_then_input_cancel_skips_step),
      cmocka_unit_test(test_then_adopts_future),
      cmocka_unit_test(test_then_cancel_cancels_pending_input),
      cmocka_unit_test(test_then_cancel_on_loop_cancels_op),
      cmocka_unit_test(test_then_cancel_cancels_adopted),
      cmocka_unit_test(test_join_all),
      cmocka_unit_test(test_join_all_empty),
      cmocka_unit_test(test_join_all_fail_fast),
      cmocka_unit_test(test_join_all_without_fail_fast_waits),
      cmocka_unit_test(test_join_any),
      cmocka_unit_test(test_join_any_cancel_rest),
      cmocka_unit_test(test_join_cancel_cancels_inputs),
      cmocka_unit_test(test_join_on_loop),
      cmocka_unit_test(test_iter_settle_order),
      cmocka_unit_test(test_iter_timeout),
      cmocka_unit_test(test_iter_blocking_pool_futures),
      cmocka_unit_test(test_iter_driven_by_loop),
      cmocka_unit_test(test_timeout_loopless_fires),
      cmocka_unit_test(test_timeout_loop_promise_fires),
      cmocka_unit_test(test_timeout_not_fired_when_input_first),
      cmocka_unit_test(test_timeout_cancel_cancels_input),
      cmocka_unit_test(test_timeout_on_settled_input),
  };
  t_require_uring();
  return cmocka_run_group_tests(tests, NULL, NULL);
}
