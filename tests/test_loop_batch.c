/* test_loop_batch.c: batch waits (ak_loop_options.batch_wait_us), from the
 * caller's side: the feature is reported as the kernel allows; a sleeping
 * loop with many ops in flight takes several completions per wakeup; a lone
 * completion still arrives; a timer due inside the batch window fires on
 * time; a wakeup from another thread gets through; epoll ignores the
 * option. */
#define _GNU_SOURCE
#include "helpers.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

enum { NPIPES = 16 }; /* ops in flight: wait for NPIPES / 4 at a time */

/* The kernel's flag for min-wait (6.12+); liburing 2.3's header lacks it. */
#define T_FEAT_MIN_TIMEOUT (1U << 15)

typedef struct pipes {
  int fds[NPIPES][2];
  char bytes[NPIPES];
  ak_future *reads[NPIPES];
} pipes;

static void sleep_ns(int64_t ns)
{
  struct timespec ts = {.tv_sec = ns / T_SEC, .tv_nsec = ns % T_SEC};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
}

static void set_flag(void *arg)
{
  atomic_store((_Atomic bool *)arg, true);
}

static void pipes_open_and_read(ak_loop *loop, pipes *p)
{
  for (int i = 0; i < NPIPES; i++) {
    t_pipe(p->fds[i]);
    p->reads[i] = ak_read(loop, p->fds[i][0], &p->bytes[i], 1, -1);
    assert_non_null(p->reads[i]);
  }
}

static void pipes_close(ak_loop *loop, pipes *p)
{
  for (int i = 0; i < NPIPES; i++)
    close(p->fds[i][1]); /* end of file: the reads still pending settle 0 */
  int64_t until = ak_now_ns() + T_HANG_NS;
  for (int i = 0; i < NPIPES; i++) {
    while (!ak_future_is_set(p->reads[i]) && ak_now_ns() < until)
      ak_loop_run(loop, AK_RUN_ONCE);
    assert_true(ak_future_is_set(p->reads[i]));
    ak_future_release(p->reads[i]);
    close(p->fds[i][0]);
  }
}

static unsigned settled(pipes *p, int n)
{
  unsigned k = 0;
  for (int i = 0; i < n; i++)
    k += ak_future_is_set(p->reads[i]);
  return k;
}

static ak_loop *batch_loop(unsigned us)
{
  ak_loop_options o = {.batch_wait_us = us};
  return t_loop_new_opts(&o);
}

/* Whether this loop batches: io_uring with the kernel's min-wait. */
static bool batches(ak_loop *loop)
{
  ak_features ft;
  ak_loop_features(loop, &ft);
  return ft.batch_wait;
}

/* The feature is on exactly when asked for and the kernel has min-wait; on
 * epoll it is off (the option is ignored). */
static void test_feature_reported(void **state)
{
  (void)state;
  ak_loop *plain = t_loop_new();
  ak_features ft;
  ak_loop_features(plain, &ft);
  assert_false(ft.batch_wait);
  bool kernel_has = ft.backend == AK_BACKEND_URING && (ft.kernel_features & T_FEAT_MIN_TIMEOUT);
  ak_loop_free(plain);

  ak_loop *loop = batch_loop(500);
  ak_loop_features(loop, &ft);
  assert_int_equal(ft.batch_wait, kernel_has);
  ak_loop_free(loop);
}

typedef struct writer {
  pipes *p;
  int n;
  int64_t gap_ns;
} writer;

static void *write_spaced(void *arg)
{
  writer *w = arg;
  for (int i = 0; i < w->n; i++) {
    if (i > 0)
      sleep_ns(w->gap_ns);
    assert_int_equal(write(w->p->fds[i][1], "x", 1), 1);
  }
  return NULL;
}

/* 16 reads in flight, so the loop waits for 4 completions at a time. Four
 * writes 20 ms apart, well inside a 3 s window: one wakeup takes all four
 * (two at most, should a wakeup come early), where a loop that wakes per
 * completion needs four. */
static void test_one_wakeup_takes_a_batch(void **state)
{
  (void)state;
  ak_loop *loop = batch_loop(3 * 1000 * 1000);
  if (!batches(loop)) {
    ak_loop_free(loop);
    skip(); /* epoll, or a kernel before 6.12 */
  }
  pipes p;
  pipes_open_and_read(loop, &p);
  ak_loop_run(loop, AK_RUN_NOWAIT); /* the reads reach the kernel */
  writer w = {.p = &p, .n = 4, .gap_ns = 20 * T_MS};
  pthread_t t;
  assert_int_equal(pthread_create(&t, NULL, write_spaced, &w), 0);
  unsigned wakeups = 0;
  int64_t until = ak_now_ns() + T_HANG_NS;
  while (settled(&p, 4) < 4 && ak_now_ns() < until) {
    ak_loop_run(loop, AK_RUN_ONCE);
    wakeups++;
  }
  pthread_join(t, NULL);
  assert_int_equal(settled(&p, 4), 4);
  assert_true(wakeups <= 2);
  for (int i = 0; i < 4; i++) {
    assert_int_equal(ak_future_result(p.reads[i]), 1);
    assert_int_equal(p.bytes[i], 'x');
  }
  assert_int_equal(settled(&p, NPIPES), 4); /* the others still wait */
  pipes_close(loop, &p);
  ak_loop_free(loop);
}

/* A lone completion, short of the batch, arrives once the window has passed
 * (here 100 ms), not never. */
static void test_lone_completion_arrives(void **state)
{
  (void)state;
  ak_loop *loop = batch_loop(100 * 1000);
  pipes p;
  pipes_open_and_read(loop, &p);
  ak_loop_run(loop, AK_RUN_NOWAIT);
  assert_int_equal(write(p.fds[5][1], "y", 1), 1);
  int64_t until = ak_now_ns() + T_HANG_NS;
  while (!ak_future_is_set(p.reads[5]) && ak_now_ns() < until)
    ak_loop_run(loop, AK_RUN_ONCE);
  assert_int_equal(ak_future_result(p.reads[5]), 1);
  assert_int_equal(p.bytes[5], 'y');
  assert_int_equal(settled(&p, NPIPES), 1);
  pipes_close(loop, &p);
  ak_loop_free(loop);
}

/* A timer due well inside a 10 s window fires on time: the kernel would
 * sleep the whole minimum, so the loop shortens the window to the timer. */
static void test_timer_keeps_its_time(void **state)
{
  (void)state;
  ak_loop *loop = batch_loop(10 * 1000 * 1000);
  pipes p;
  pipes_open_and_read(loop, &p);
  _Atomic bool fired = false;
  int64_t t0 = ak_now_ns();
  ak_timer *tm = ak_call_later(loop, 20 * T_MS, set_flag, (void *)&fired);
  assert_non_null(tm);
  int64_t until = t0 + T_HANG_NS;
  while (!atomic_load(&fired) && ak_now_ns() < until)
    ak_loop_run(loop, AK_RUN_ONCE);
  assert_true(atomic_load(&fired));
  assert_true(ak_now_ns() - t0 < 5 * T_SEC); /* not the 10 s window */

  ak_future *s = ak_sleep(loop, 30 * T_MS); /* a ring timeout, the same */
  t0 = ak_now_ns();
  while (!ak_future_is_set(s) && ak_now_ns() < until)
    ak_loop_run(loop, AK_RUN_ONCE);
  assert_int_equal(ak_future_result(s), 0);
  assert_true(ak_now_ns() - t0 < 5 * T_SEC);
  ak_future_release(s);
  pipes_close(loop, &p);
  ak_loop_free(loop);
}

static void *stop_after(void *arg)
{
  sleep_ns(50 * T_MS);
  ak_loop_stop(arg);
  return NULL;
}

/* ak_loop_stop from another thread ends a run that sleeps in a batch wait
 * with nothing else to wake it. Like every completion, the wakeup may wait
 * out the window (here 1 s), not longer. */
static void test_stop_from_other_thread(void **state)
{
  (void)state;
  ak_loop *loop = batch_loop(1000 * 1000);
  pipes p;
  pipes_open_and_read(loop, &p);
  pthread_t t;
  assert_int_equal(pthread_create(&t, NULL, stop_after, loop), 0);
  int64_t t0 = ak_now_ns();
  ak_loop_run(loop, AK_RUN_DEFAULT);
  pthread_join(t, NULL);
  assert_true(ak_now_ns() - t0 < T_HANG_NS);
  assert_int_equal(settled(&p, NPIPES), 0);
  pipes_close(loop, &p);
  ak_loop_free(loop);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_feature_reported),
      cmocka_unit_test(test_one_wakeup_takes_a_batch),
      cmocka_unit_test(test_lone_completion_arrives),
      cmocka_unit_test(test_timer_keeps_its_time),
      cmocka_unit_test(test_stop_from_other_thread),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
