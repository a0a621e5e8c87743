/* test_steps.c: ak_catch and ak_finally (steps on failure, steps on any
 * outcome) and the duration macros AK_NS/US/MS/SEC. */
#define _GNU_SOURCE
#include "helpers.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- Duration macros ---------------------------------------------------------- */

_Static_assert(AK_MS(250) == INT64_C(250000000), "AK_MS is a constant expression");
_Static_assert(AK_SEC(3) == INT64_C(3000000000), "AK_SEC does not overflow int");

static void test_duration_macros(void **state)
{
  (void)state;
  assert_true(AK_NS(7) == 7);
  assert_true(AK_US(3) == 3000);
  assert_true(AK_MS(2) == 2000000);
  assert_true(AK_SEC(2) == INT64_C(2000000000));
  assert_true(AK_SEC(5) == 5 * T_SEC); /* int * 1e9 computed in 64 bits */
  assert_true(AK_SEC(1.5) == INT64_C(1500000000));
  assert_true(AK_MS(0.25) == 250000);
  assert_true(AK_US(1.9) == 1900);
  assert_true(AK_SEC(-1) == -T_SEC);
  assert_true(AK_SEC(9000000000LL / 1000) == INT64_C(9000000000000000)); /* 104 days */
  assert_int_equal(_Generic(AK_MS(1), int64_t: 1, default: 0), 1);
  assert_int_equal(_Generic(AK_SEC(1.5), int64_t: 1, default: 0), 1);
  /* As the library takes them. */
  ak_loop *loop = t_loop_new();
  int64_t t0 = ak_now_ns();
  ak_future *s = ak_sleep(loop, AK_MS(20));
  assert_int_equal(ak_future_wait(s, AK_SEC(20)), 0);
  assert_true(ak_now_ns() - t0 >= AK_MS(20));
  ak_future_release(s);
  ak_loop_free(loop);
}

/* ---- A step that records how it was called --------------------------------------- */

typedef struct step_rec {
  _Atomic int runs;
  pthread_t who;
  ak_state input_state;
  int64_t input_result;
  ak_future *adopt;   /* if set: adopt it */
  int64_t ret;        /* otherwise return this */
  const char *detail; /* set when ret < 0 */
  void *value;        /* set when ret >= 0 */
} step_rec;

static int64_t step(ak_future *input, void *arg, ak_future *self)
{
  step_rec *r = arg;
  r->who = pthread_self();
  r->input_state = ak_future_state(input);
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

/* ---- ak_catch ------------------------------------------------------------------------ */

static void test_catch_recovers_a_failure(void **state)
{
  (void)state;
  ak_future *in = ak_future_new(NULL);
  int token;
  step_rec r = {.ret = 5, .value = &token};
  ak_future *out = ak_catch(in, step, &r, NULL);
  assert_non_null(out);
  assert_false(ak_future_is_set(out));
  ak_future_fail(in, -EIO, "disk");
  assert_int_equal(atomic_load(&r.runs), 1);
  assert_true(pthread_equal(r.who, pthread_self())); /* the settling thread */
  assert_int_equal(r.input_state, AK_FAILED);
  assert_int_equal(r.input_result, -EIO);
  assert_int_equal(ak_future_state(out), AK_DONE);
  assert_int_equal(ak_future_result(out), 5);
  assert_ptr_equal(ak_future_value(out), &token);
  ak_future_release(in);
  ak_future_release(out);
}

static void test_catch_passes_success_through(void **state)
{
  (void)state;
  ak_future *in = ak_future_new(NULL);
  step_rec r = {.ret = 5};
  ak_future *out = ak_catch(in, step, &r, NULL);
  char *value = strdup("kept");
  ak_future_set(in, 9, value, free);
  ak_future_release(in); /* out keeps the value alive */
  assert_int_equal(atomic_load(&r.runs), 0);
  assert_int_equal(ak_future_state(out), AK_DONE);
  assert_int_equal(ak_future_result(out), 9);
  assert_string_equal(ak_future_value(out), "kept");
  ak_future_release(out);
}

static void test_catch_sees_cancellation_and_can_fail(void **state)
{
  (void)state;
  ak_future *in = ak_future_new(NULL);
  step_rec r = {.ret = -EPIPE, .detail = "replaced"};
  ak_future *out = ak_catch(in, step, &r, NULL);
  ak_future_cancel(in); /* cancelled by someone else: the step runs */
  assert_int_equal(atomic_load(&r.runs), 1);
  assert_int_equal(r.input_state, AK_CANCELLED);
  assert_int_equal(r.input_result, -ECANCELED);
  assert_int_equal(ak_future_state(out), AK_FAILED);
  assert_int_equal(ak_future_result(out), -EPIPE);
  assert_string_equal(ak_future_detail(out), "replaced");
  ak_future_release(in);
  ak_future_release(out);
}

static void test_catch_adopts_a_future(void **state)
{
  (void)state;
  ak_future *in = ak_future_new(NULL);
  ak_future *other = ak_future_new(NULL);
  step_rec r = {.adopt = other};
  ak_future *out = ak_catch(in, step, &r, NULL);
  ak_future_fail(in, -ENOENT, NULL);
  assert_false(ak_future_is_set(out));
  ak_future_set(other, 3, NULL, NULL);
  assert_int_equal(ak_future_result(out), 3);
  ak_future_release(other);
  ak_future_release(in);
  ak_future_release(out);
}

static void test_catch_cancel_cancels_input_and_skips_step(void **state)
{
  (void)state;
  ak_future *in = ak_future_new(NULL);
  step_rec r = {.ret = 1};
  ak_future *out = ak_catch(in, step, &r, NULL);
  assert_int_equal(ak_future_cancel(out), 0);
  assert_int_equal(ak_future_state(in), AK_CANCELLED);
  assert_int_equal(ak_future_state(out), AK_CANCELLED);
  assert_int_equal(atomic_load(&r.runs), 0);
  ak_future_release(in);
  ak_future_release(out);
}

static void test_catch_on_pool_and_on_loop(void **state)
{
  (void)state;
  ak_pool *pool = ak_pool_new(1);
  ak_future *in = ak_future_new(NULL);
  step_rec r = {.ret = 2};
  ak_future *out = ak_catch(in, step, &r, pool);
  ak_future_fail(in, -EIO, NULL);
  assert_int_equal(ak_future_get(out, T_HANG_NS, NULL), 2);
  assert_false(pthread_equal(r.who, pthread_self())); /* a worker */
  ak_future_release(in);
  ak_future_release(out);
  ak_pool_free(pool);

  /* On a loop: the step runs on the loop's thread, not the settler's. */
  ak_loop *loop = t_loop_new();
  char junk[4];
  in = ak_recv(loop, -1, junk, sizeof(junk), 0); /* EBADF */
  step_rec r2 = {.ret = 0};
  out = ak_catch(in, step, &r2, NULL);
  assert_ptr_equal(ak_future_loop(out), loop);
  assert_int_equal(ak_future_get(out, T_HANG_NS, NULL), 0);
  assert_int_equal(r2.input_result, -EBADF);
  assert_true(pthread_equal(r2.who, pthread_self()));
  ak_future_release(in);
  ak_future_release(out);
  ak_loop_free(loop);
}

/* ---- ak_finally ---------------------------------------------------------------------- */

static void test_finally_passes_every_outcome_through(void **state)
{
  (void)state;
  for (int kind = 0; kind < 3; kind++) {
    ak_future *in = ak_future_new(NULL);
    step_rec r = {.ret = 0};
    ak_future *out = ak_finally(in, step, &r, NULL);
    assert_false(ak_future_is_set(out));
    char *value = strdup("v");
    if (kind == 0)
      ak_future_set(in, 7, value, free);
    else if (kind == 1)
      ak_future_fail(in, -ECONNRESET, "peer");
    else
      ak_future_cancel(in);
    if (kind != 0)
      free(value);
    assert_int_equal(atomic_load(&r.runs), 1); /* always, once */
    assert_int_equal(ak_future_state(out), ak_future_state(in));
    assert_int_equal(ak_future_result(out), ak_future_result(in));
    if (kind == 0) {
      ak_future_release(in); /* out keeps the borrowed value alive */
      assert_string_equal(ak_future_value(out), "v");
    } else {
      if (kind == 1)
        assert_string_equal(ak_future_detail(out), "peer");
      ak_future_release(in);
    }
    ak_future_release(out);
  }
}

static void test_finally_failure_replaces_outcome(void **state)
{
  (void)state;
  ak_future *in = ak_future_new(NULL);
  step_rec r = {.ret = -EBADF, .detail = "close failed"};
  ak_future *out = ak_finally(in, step, &r, NULL);
  ak_future_set(in, 1, NULL, NULL);
  assert_int_equal(ak_future_state(out), AK_FAILED);
  assert_int_equal(ak_future_result(out), -EBADF);
  assert_string_equal(ak_future_detail(out), "close failed");
  ak_future_release(in);
  ak_future_release(out);
}

static void test_finally_waits_for_adopted_cleanup(void **state)
{
  (void)state;
  /* The clean-up succeeds: the input's failure is the outcome, after it. */
  ak_future *in = ak_future_new(NULL);
  ak_future *cleanup = ak_future_new(NULL);
  step_rec r = {.adopt = cleanup};
  ak_future *out = ak_finally(in, step, &r, NULL);
  ak_future_fail(in, -EIO, "read");
  assert_false(ak_future_is_set(out));
  ak_future_set(cleanup, 0, NULL, NULL);
  assert_int_equal(ak_future_state(out), AK_FAILED);
  assert_int_equal(ak_future_result(out), -EIO);
  assert_string_equal(ak_future_detail(out), "read");
  ak_future_release(cleanup);
  ak_future_release(in);
  ak_future_release(out);

  /* The clean-up fails: its error is the outcome. */
  in = ak_future_new(NULL);
  cleanup = ak_future_new(NULL);
  step_rec r2 = {.adopt = cleanup};
  out = ak_finally(in, step, &r2, NULL);
  ak_future_set(in, 4, NULL, NULL);
  ak_future_fail(cleanup, -ENOSPC, "flush");
  assert_int_equal(ak_future_result(out), -ENOSPC);
  assert_string_equal(ak_future_detail(out), "flush");
  ak_future_release(cleanup);
  ak_future_release(in);
  ak_future_release(out);
}

static void test_finally_cancel_still_runs_cleanup(void **state)
{
  (void)state;
  ak_future *in = ak_future_new(NULL);
  ak_future *cleanup = ak_future_new(NULL);
  step_rec r = {.adopt = cleanup};
  ak_future *out = ak_finally(in, step, &r, NULL);
  assert_int_equal(ak_future_cancel(out), 0);
  assert_int_equal(ak_future_state(in), AK_CANCELLED);
  assert_int_equal(atomic_load(&r.runs), 1);
  assert_int_equal(r.input_state, AK_CANCELLED);
  assert_false(ak_future_is_set(out)); /* waits for its clean-up */
  assert_int_equal(ak_future_state(cleanup), AK_PENDING); /* not cancelled */
  ak_future_set(cleanup, 0, NULL, NULL);
  assert_int_equal(ak_future_state(out), AK_CANCELLED);
  ak_future_release(cleanup);
  ak_future_release(in);
  ak_future_release(out);
}

/* The use from issue 21: a pipeline whose fd must be closed on every path. */
static int64_t close_fd(ak_future *input, void *arg, ak_future *self)
{
  (void)input;
  ak_loop *loop = ak_future_loop(self);
  return ak_future_adopt(self, ak_close(loop, *(int *)arg));
}

static void test_finally_closes_fd_on_loop(void **state)
{
  (void)state;
  ak_loop *loop = t_loop_new();
  int fds[2];
  t_pipe(fds);
  char buf[4];
  ak_future *rd = ak_read(loop, fds[0], buf, sizeof(buf), -1);
  ak_future *bounded = ak_future_timeout(rd, 10 * T_MS);
  ak_future *out = ak_finally(bounded, close_fd, &fds[0], NULL);
  assert_int_equal(ak_future_get(out, T_HANG_NS, NULL), -ETIMEDOUT);
  assert_int_equal(ak_future_state(out), AK_FAILED);
  assert_true(ak_future_is_set(rd));
  errno = 0;
  assert_int_equal(fcntl(fds[0], F_GETFD), -1); /* closed */
  assert_int_equal(errno, EBADF);
  close(fds[1]);
  ak_future_release(out);
  ak_future_release(bounded);
  ak_future_release(rd);
  ak_loop_free(loop);
}

static void test_finally_on_pool(void **state)
{
  (void)state;
  ak_pool *pool = ak_pool_new(1);
  ak_future *in = ak_future_new(NULL);
  step_rec r = {.ret = 0};
  ak_future *out = ak_finally(in, step, &r, pool);
  ak_future_fail(in, -EINTR, NULL);
  assert_int_equal(ak_future_get(out, T_HANG_NS, NULL), -EINTR);
  assert_false(pthread_equal(r.who, pthread_self()));
  ak_future_release(in);
  ak_future_release(out);
  ak_pool_free(pool);
}

/* ---- A million steps in constant stack ------------------------------------------------ */

enum { CHAIN = 1000000 };

static int64_t count_step(ak_future *input, void *arg, ak_future *self)
{
  (void)input;
  (void)self;
  (*(long *)arg)++;
  return 0;
}

static void *long_chains(void *arg)
{
  (void)arg;
  long ran = 0;
  ak_future *head = ak_future_new(NULL);
  ak_future *tail = ak_future_ref(head);
  for (int i = 0; i < CHAIN; i++) {
    ak_future *next = (i & 1) ? ak_finally(tail, count_step, &ran, NULL)
                              : ak_catch(tail, count_step, &ran, NULL);
    ak_future_release(tail);
    tail = next;
  }
  /* head fails: the first catch recovers, then every finally runs and every
   * later catch passes the success through. */
  ak_future_fail(head, -EIO, NULL);
  bool ok = ak_future_state(tail) == AK_DONE && ran == 1 + CHAIN / 2;
  ak_future_release(tail); /* frees the whole chain */
  ak_future_release(head);

  /* Cancelling the tail of a pending chain of finally steps. */
  ran = 0;
  head = ak_future_new(NULL);
  tail = ak_future_ref(head);
  for (int i = 0; i < CHAIN; i++) {
    ak_future *next = ak_finally(tail, count_step, &ran, NULL);
    ak_future_release(tail);
    tail = next;
  }
  ak_future_cancel(tail);
  ok = ok && ak_future_state(head) == AK_CANCELLED && ak_future_state(tail) == AK_CANCELLED &&
       ran == CHAIN;
  ak_future_release(tail);
  ak_future_release(head);
  return ok ? (void *)1 : NULL;
}

static void test_million_steps_constant_stack(void **state)
{
  (void)state;
  /* 256 KiB of stack: a step per frame would need far more. */
  pthread_t t = t_thread_start(long_chains, NULL, 256 * 1024);
  assert_ptr_equal(t_thread_join(t), (void *)1);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_duration_macros),
      cmocka_unit_test(test_catch_recovers_a_failure),
      cmocka_unit_test(test_catch_passes_success_through),
      cmocka_unit_test(test_catch_sees_cancellation_and_can_fail),
      cmocka_unit_test(test_catch_adopts_a_future),
      cmocka_unit_test(test_catch_cancel_cancels_input_and_skips_step),
      cmocka_unit_test(test_catch_on_pool_and_on_loop),
      cmocka_unit_test(test_finally_passes_every_outcome_through),
      cmocka_unit_test(test_finally_failure_replaces_outcome),
      cmocka_unit_test(test_finally_waits_for_adopted_cleanup),
      cmocka_unit_test(test_finally_cancel_still_runs_cleanup),
      cmocka_unit_test(test_finally_closes_fd_on_loop),
      cmocka_unit_test(test_finally_on_pool),
      cmocka_unit_test(test_million_steps_constant_stack),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
