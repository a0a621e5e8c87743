/* test_asynckit_usage.c: the seeds' usage (AsyncKit, cs.asynchron), read naturally in C. */
#define _GNU_SOURCE
#include "helpers.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Work functions in AsyncKit's style: plain callables with an argument. */

static int64_t square(void *arg, ak_future *self)
{
  (void)self;
  int64_t x = (int64_t)(intptr_t)arg;
  return x * x;
}

static int64_t parse_number(void *arg, ak_future *self)
{
  const char *text = arg;
  char *end = NULL;
  long v = strtol(text, &end, 10);
  if (end == text || *end != '\0') {
    ak_future_set_detail(self, "not a number");
    return -EINVAL; /* AsyncKit: the exception, recorded */
  }
  return v;
}

static int64_t wait_then_answer(void *arg, ak_future *self)
{
  (void)self;
  return t_sem_wait(arg) ? 42 : -ETIMEDOUT;
}

static int64_t greeting(void *arg, ak_future *self)
{
  char *s = malloc(32);
  snprintf(s, 32, "hello %s", (const char *)arg);
  ak_future_set_value(self, s, free);
  return (int64_t)strlen(s);
}

/* ---- (1) Pool(4), do, get, is_error ------------------------------------------ */

static void test_pool_do_get_forever(void **state)
{
  (void)state;
  ak_pool *pool = ak_pool_new(4); /* Pool(4) */
  assert_int_equal(ak_pool_size(pool), 4);
  ak_future *v = ak_pool_submit(pool, square, (void *)7);   /* pool.do(square, 7) */
  assert_int_equal(ak_future_get(v, AK_FOREVER, NULL), 49); /* v.get() */
  assert_true(ak_future_is_set(v));
  assert_false(ak_future_is_error(v));
  ak_future_release(v);
  ak_pool_free(pool);
}

static void test_pool_get_with_timeout_not_yet(void **state)
{
  (void)state;
  ak_pool *pool = ak_pool_new(4);
  t_sem go;
  t_sem_init(&go, 0);
  ak_future *v = ak_pool_submit(pool, wait_then_answer, &go);
  int64_t t0 = ak_now_ns();
  assert_int_equal(ak_future_get(v, 20 * T_MS, NULL), AK_EWAITTIMEOUT); /* "not yet" */
  assert_true(ak_now_ns() - t0 >= 20 * T_MS);
  assert_false(ak_future_is_set(v));
  t_sem_post(&go);
  assert_int_equal(ak_future_get(v, T_HANG_NS, NULL), 42);
  ak_future_release(v);
  ak_pool_free(pool);
  t_sem_destroy(&go);
}

static void test_pool_error_comes_back_from_get(void **state)
{
  (void)state;
  ak_pool *pool = ak_pool_new(4);
  ak_future *good = ak_pool_submit(pool, parse_number, "123");
  ak_future *bad = ak_pool_submit(pool, parse_number, "12x");
  assert_int_equal(ak_future_get(good, AK_FOREVER, NULL), 123);
  assert_false(ak_future_is_error(good));
  assert_int_equal(ak_future_get(bad, AK_FOREVER, NULL), -EINVAL); /* re-raised */
  assert_true(ak_future_is_error(bad));
  assert_string_equal(ak_future_detail(bad), "not a number");
  ak_future_release(good);
  ak_future_release(bad);
  ak_pool_free(pool);
}

static void test_pool_value_from_work(void **state)
{
  (void)state;
  ak_pool *pool = ak_pool_new(4);
  ak_future *v = ak_pool_submit(pool, greeting, "world");
  void *value = NULL;
  assert_int_equal(ak_future_get(v, AK_FOREVER, &value), 11);
  assert_string_equal(value, "hello world");
  ak_future_release(v); /* frees the string (asan would see a leak) */
  ak_pool_free(pool);
}

/* ---- (2) AsyncList: wait for all, read each in input order -------------------- */

static void test_async_list(void **state)
{
  (void)state;
  ak_pool *pool = ak_pool_new(4);
  const char *names[3] = {"ada", "bob", "cy"};
  ak_future *items[3];
  for (int i = 0; i < 3; i++)
    items[i] = ak_pool_submit(pool, greeting, (void *)names[i]);
  ak_future *list = ak_join_all(items, 3, 0); /* AsyncList(items) */
  for (int i = 0; i < 3; i++)
    ak_future_release(items[i]);                              /* the list holds them */
  assert_int_equal(ak_future_get(list, AK_FOREVER, NULL), 3); /* all succeeded */
  const char *expect[3] = {"hello ada", "hello bob", "hello cy"};
  for (size_t i = 0; i < ak_join_count(list); i++) {
    ak_future *item = ak_join_input(list, i);
    assert_true(ak_future_is_set(item));
    assert_string_equal(ak_future_value(item), expect[i]);
  }
  ak_future_release(list);
  ak_pool_free(pool);
}

/* ---- (3) Futures as arguments -------------------------------------------------- */

typedef struct pair {
  ak_future *a, *b;
  _Atomic int runs;
} pair;

static int64_t add_pair(void *arg, ak_future *self)
{
  (void)self;
  pair *p = arg;
  atomic_fetch_add(&p->runs, 1);
  return ak_future_result(p->a) + ak_future_result(p->b);
}

typedef struct later {
  pair *p;
  t_sem go;
} later;

static void *set_both_later(void *arg)
{
  later *l = arg;
  if (t_sem_wait(&l->go)) {
    ak_future_set(l->p->a, 2, NULL, NULL);
    ak_future_set(l->p->b, 3, NULL, NULL);
  }
  return NULL;
}

static void test_futures_as_arguments(void **state)
{
  (void)state;
  ak_pool *pool = ak_pool_new(4);
  pair p = {.a = ak_future_new(NULL), .b = ak_future_new(NULL)};
  ak_future *args[2] = {p.a, p.b};
  ak_future *sum = ak_pool_submit_after(pool, add_pair, &p, args, 2);
  assert_int_equal(ak_future_get(sum, 10 * T_MS, NULL), AK_EWAITTIMEOUT);
  assert_int_equal(atomic_load(&p.runs), 0); /* waits for both */
  later l = {.p = &p};
  t_sem_init(&l.go, 0);
  pthread_t t = t_thread_start(set_both_later, &l, 0);
  t_sem_post(&l.go);
  assert_int_equal(ak_future_get(sum, AK_FOREVER, NULL), 5);
  assert_int_equal(atomic_load(&p.runs), 1);
  t_thread_join(t);
  ak_future_release(sum);
  ak_future_release(p.a);
  ak_future_release(p.b);
  ak_pool_free(pool);
  t_sem_destroy(&l.go);
}

static void test_futures_as_arguments_one_fails(void **state)
{
  (void)state;
  ak_pool *pool = ak_pool_new(4);
  pair p = {.a = ak_future_new(NULL), .b = ak_future_new(NULL)};
  ak_future *args[2] = {p.a, p.b};
  ak_future *sum = ak_pool_submit_after(pool, add_pair, &p, args, 2);
  ak_future_fail(p.a, -ENOENT, "a could not be read");
  assert_int_equal(ak_future_get(sum, AK_FOREVER, NULL), -ENOENT);
  assert_true(ak_future_is_error(sum));
  ak_future_set(p.b, 1, NULL, NULL);
  ak_pool_stop(pool, true);
  assert_int_equal(atomic_load(&p.runs), 0); /* never ran */
  ak_future_release(sum);
  ak_future_release(p.a);
  ak_future_release(p.b);
  ak_pool_free(pool);
}

/* ---- (4) chain: do(a).chain(b) ------------------------------------------------------ */

typedef struct chain_log {
  _Atomic int a_done;
  _Atomic int b_runs;
  _Atomic int b_saw_a_done;
} chain_log;

static chain_log g_chain;

static int64_t work_a(void *arg, ak_future *self)
{
  (void)self;
  int64_t x = (int64_t)(intptr_t)arg;
  if (x < 0)
    return -EDOM;
  atomic_store(&g_chain.a_done, 1);
  return x + 1;
}

static int64_t work_b(ak_future *a, void *arg, ak_future *self)
{
  (void)arg;
  atomic_fetch_add(&g_chain.b_runs, 1);
  atomic_store(&g_chain.b_saw_a_done, atomic_load(&g_chain.a_done) && ak_future_is_set(a));
  char *s = malloc(24);
  snprintf(s, 24, "b(%lld)", (long long)ak_future_result(a));
  ak_future_set_value(self, s, free);
  return ak_future_result(a) * 10;
}

static void test_chain_b_after_a(void **state)
{
  (void)state;
  memset(&g_chain, 0, sizeof(g_chain));
  ak_pool *pool = ak_pool_new(4);
  ak_future *a = ak_pool_submit(pool, work_a, (void *)4);
  ak_future *final = ak_then(a, work_b, NULL, pool); /* do(a).chain(b) */
  ak_future_release(a);
  void *value = NULL;
  assert_int_equal(ak_future_get(final, AK_FOREVER, &value), 50);
  assert_string_equal(value, "b(5)");
  assert_int_equal(atomic_load(&g_chain.b_runs), 1);
  assert_int_equal(atomic_load(&g_chain.b_saw_a_done), 1);
  ak_future_release(final);
  ak_pool_free(pool);
}

static void test_chain_failure_in_a_skips_b(void **state)
{
  (void)state;
  memset(&g_chain, 0, sizeof(g_chain));
  ak_pool *pool = ak_pool_new(4);
  ak_future *a = ak_pool_submit(pool, work_a, (void *)-1);
  ak_future *final = ak_then(a, work_b, NULL, pool);
  ak_future_release(a);
  assert_int_equal(ak_future_get(final, AK_FOREVER, NULL), -EDOM);
  assert_true(ak_future_is_error(final));
  ak_pool_stop(pool, true);
  assert_int_equal(atomic_load(&g_chain.b_runs), 0);
  ak_future_release(final);
  ak_pool_free(pool);
}

/* ---- (5) report(): completion order ---------------------------------------------------- */

static void test_report_completion_order(void **state)
{
  (void)state;
  ak_pool *pool = ak_pool_new(4);
  t_sem go[4];
  ak_future *jobs[4];
  for (int i = 0; i < 4; i++) {
    t_sem_init(&go[i], 0);
    jobs[i] = ak_pool_submit(pool, wait_then_answer, &go[i]);
  }
  ak_iter *report = ak_iter_new(jobs, 4);
  const int finish_order[4] = {3, 1, 0, 2};
  for (int k = 0; k < 4; k++) {
    t_sem_post(&go[finish_order[k]]); /* this job finishes next */
    ak_future *done = ak_iter_next(report, AK_FOREVER, NULL);
    assert_ptr_equal(done, jobs[finish_order[k]]);
    assert_int_equal(ak_future_result(done), 42);
  }
  assert_null(ak_iter_next(report, AK_FOREVER, NULL));
  ak_iter_free(report);
  for (int i = 0; i < 4; i++) {
    ak_future_release(jobs[i]);
    t_sem_destroy(&go[i]);
  }
  ak_pool_free(pool);
}

/* ---- (6) pool.stop(True) ---------------------------------------------------------------- */

static int64_t slow_count(void *arg, ak_future *self)
{
  (void)self;
  for (volatile int i = 0; i < 20000; i++)
    ;
  atomic_fetch_add((_Atomic int *)arg, 1);
  return 0;
}

static void test_pool_stop_true_blocks_until_done(void **state)
{
  (void)state;
  ak_pool *pool = ak_pool_new(4);
  _Atomic int ran = 0;
  enum { N = 64 };
  ak_future *fs[N];
  for (int i = 0; i < N; i++)
    fs[i] = ak_pool_submit(pool, slow_count, (void *)&ran);
  ak_pool_stop(pool, true); /* pool.stop(True) */
  assert_int_equal(atomic_load(&ran), N);
  assert_int_equal(ak_pool_queue_depth(pool), 0);
  for (int i = 0; i < N; i++) {
    assert_int_equal(ak_future_state(fs[i]), AK_DONE);
    ak_future_release(fs[i]);
  }
  ak_future *late = ak_pool_submit(pool, slow_count, (void *)&ran);
  assert_int_equal(ak_future_get(late, 0, NULL), AK_ESHUTDOWN);
  ak_future_release(late);
  ak_pool_free(pool);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_pool_do_get_forever),
      cmocka_unit_test(test_pool_get_with_timeout_not_yet),
      cmocka_unit_test(test_pool_error_comes_back_from_get),
      cmocka_unit_test(test_pool_value_from_work),
      cmocka_unit_test(test_async_list),
      cmocka_unit_test(test_futures_as_arguments),
      cmocka_unit_test(test_futures_as_arguments_one_fails),
      cmocka_unit_test(test_chain_b_after_a),
      cmocka_unit_test(test_chain_failure_in_a_skips_b),
      cmocka_unit_test(test_report_completion_order),
      cmocka_unit_test(test_pool_stop_true_blocks_until_done),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
