/* test_loop_lifetime.c: what outlives a loop's free, from the caller's side:
 * the thread's current loop when loops are freed out of creation order, and
 * futures (plain and op) held past their loop's free, given callbacks,
 * waited on and released. Under ASan a read of a freed loop fails here. */
#define _GNU_SOURCE
#include "helpers.h"

#include <errno.h>
#include <pthread.h>
#include <unistd.h>

/* A loopless promise nobody settles: its timed wait reads the current loop
 * (ak_future_wait flushes the current loop's pool tasks first), so a freed
 * loop left current is read here. */
static void wait_reads_current_loop(void)
{
  ak_future *p = ak_future_new(NULL);
  assert_non_null(p);
  assert_int_equal(ak_future_wait(p, AK_MS(1)), AK_EWAITTIMEOUT);
  ak_future_release(p);
}

/* ---- The current loop ------------------------------------------------------- */

static void test_free_oldest_first_leaves_no_freed_loop_current(void **state)
{
  (void)state;
  ak_loop *a = t_loop_new();
  ak_loop *b = t_loop_new();
  ak_loop_free(a);
  assert_ptr_equal(ak_loop_current(), b);
  wait_reads_current_loop();
  ak_loop_free(b);
  assert_null(ak_loop_current()); /* not a, freed before */
  wait_reads_current_loop();
}

static void test_free_newest_first(void **state)
{
  (void)state;
  ak_loop *a = t_loop_new();
  ak_loop *b = t_loop_new();
  ak_loop_free(b);
  assert_ptr_equal(ak_loop_current(), a);
  wait_reads_current_loop();
  ak_loop_free(a);
  assert_null(ak_loop_current());
  wait_reads_current_loop();
}

/* A, B, C; B freed from the middle: C then A stay current in turn, and the
 * current loop still works (an op on it). */
static void test_free_from_the_middle(void **state)
{
  (void)state;
  ak_loop *a = t_loop_new();
  ak_loop *b = t_loop_new();
  ak_loop *c = t_loop_new();
  ak_loop_free(b);
  assert_ptr_equal(ak_loop_current(), c);
  ak_loop_free(c);
  assert_ptr_equal(ak_loop_current(), a);
  ak_future *nop = ak_nop(ak_loop_current());
  assert_non_null(nop);
  assert_int_equal(ak_future_wait(nop, AK_SEC(5)), 0);
  assert_int_equal(ak_future_result(nop), 0);
  ak_future_release(nop);
  wait_reads_current_loop();
  ak_loop_free(a);
  assert_null(ak_loop_current());
  wait_reads_current_loop();
}

/* ---- Futures held past their loop's free ----------------------------------- */

typedef struct late_seen {
  int calls;
  int64_t result;
  pthread_t thread;
} late_seen;

static void note_late(ak_future *f, void *arg)
{
  late_seen *seen = arg;
  seen->calls++;
  seen->result = ak_future_result(f);
  seen->thread = pthread_self();
}

/* f's loop is freed: a callback added now runs at once on the calling
 * thread (the loop that would run it is gone), the wait returns at once,
 * and the release frees f; none of them reads the loop. */
static void check_held_past_free(ak_future *f, ak_state state, int64_t result)
{
  late_seen seen = {0};
  assert_int_equal(ak_future_state(f), state);
  assert_int_equal(ak_future_on_settle(f, note_late, &seen), 0);
  assert_int_equal(seen.calls, 1);
  assert_int_equal(seen.result, result);
  assert_true(pthread_equal(seen.thread, pthread_self()));
  assert_int_equal(ak_future_wait(f, AK_FOREVER), 0);
  assert_int_equal(ak_future_wait(f, AK_MS(1)), 0);
  assert_int_equal(ak_future_get(f, 0, NULL), result);
  ak_future_release(f);
}

static void test_plain_future_held_past_free(void **state)
{
  (void)state;
  ak_loop *loop = t_loop_new();
  ak_future *f = ak_future_new(loop);
  assert_non_null(f);
  assert_int_equal(ak_future_set(f, 7, NULL, NULL), 0);
  ak_loop_free(loop);
  check_held_past_free(f, AK_DONE, 7);
}

static void test_op_future_held_past_free(void **state)
{
  (void)state;
  ak_loop *loop = t_loop_new();
  ak_future *f = ak_nop(loop);
  assert_non_null(f);
  assert_int_equal(ak_future_wait(f, AK_SEC(5)), 0);
  ak_loop_free(loop);
  check_held_past_free(f, AK_DONE, 0);
}

/* A read still in flight at the free: the free cancels it; the future,
 * held on, behaves as a settled one. */
static void test_pending_op_future_held_past_free(void **state)
{
  (void)state;
  int fds[2];
  assert_int_equal(pipe(fds), 0);
  ak_loop *loop = t_loop_new();
  char buf[16];
  ak_future *f = ak_read(loop, fds[0], buf, sizeof buf, -1);
  assert_non_null(f);
  ak_loop_free(loop);
  check_held_past_free(f, AK_CANCELLED, -ECANCELED);
  close(fds[0]);
  close(fds[1]);
}

/* Two callbacks, the first added while the loop lived (it ran from the
 * loop), the second after its free (it runs at once). */
static void test_callback_before_and_after_free(void **state)
{
  (void)state;
  ak_loop *loop = t_loop_new();
  ak_future *f = ak_future_new(loop);
  late_seen before = {0};
  assert_int_equal(ak_future_on_settle(f, note_late, &before), 0);
  assert_int_equal(ak_future_set(f, 3, NULL, NULL), 0);
  assert_int_equal(before.calls, 0); /* from the loop's ready queue */
  ak_loop_free(loop);                /* runs it */
  assert_int_equal(before.calls, 1);
  check_held_past_free(f, AK_DONE, 3);
}

static int64_t add_one(ak_future *input, void *arg, ak_future *self)
{
  (void)arg;
  (void)self;
  return ak_future_result(input) + 1;
}

/* A then-step on such a future (its callback is a late one): it runs at
 * once; a cancel says it had settled. */
static void test_then_on_future_held_past_free(void **state)
{
  (void)state;
  ak_loop *loop = t_loop_new();
  ak_future *f = ak_future_new(loop);
  assert_int_equal(ak_future_set(f, 4, NULL, NULL), 0);
  ak_loop_free(loop);
  assert_int_equal(ak_future_cancel(f), AK_ESETTLED);
  ak_future *step = ak_then(f, add_one, NULL, NULL);
  assert_non_null(step);
  assert_int_equal(ak_future_wait(step, 0), 0);
  assert_int_equal(ak_future_result(step), 5);
  ak_future_release(step);
  ak_future_release(f);
}

typedef struct other_thread_job {
  ak_future *f;
  late_seen seen;
  int rc;
} other_thread_job;

static void *add_callback_on_other_thread(void *arg)
{
  other_thread_job *job = arg;
  job->rc = ak_future_on_settle(job->f, note_late, &job->seen);
  return NULL;
}

/* Another thread adds the callback: it runs on that thread, at once. */
static void test_callback_from_other_thread_after_free(void **state)
{
  (void)state;
  ak_loop *loop = t_loop_new();
  other_thread_job job = {.f = ak_future_new(loop)};
  assert_int_equal(ak_future_fail(job.f, -EIO, "gone"), 0);
  ak_loop_free(loop);
  pthread_t t;
  assert_int_equal(pthread_create(&t, NULL, add_callback_on_other_thread, &job), 0);
  assert_int_equal(pthread_join(t, NULL), 0);
  assert_int_equal(job.rc, 0);
  assert_int_equal(job.seen.calls, 1);
  assert_int_equal(job.seen.result, -EIO);
  assert_true(pthread_equal(job.seen.thread, t));
  assert_string_equal(ak_future_detail(job.f), "gone");
  ak_future_release(job.f);
}

/* A late callback on a live loop of another thread still goes to that loop
 * (the liveness test does not send everything inline). */
typedef struct live_owner {
  ak_loop *loop;
  ak_future *f;
  t_sem made, added;
  late_seen seen;
} live_owner;

static bool seen_once(void *arg) { return ((late_seen *)arg)->calls == 1; }

static void *own_a_loop(void *arg)
{
  live_owner *o = arg;
  o->loop = t_loop_new();
  o->f = ak_future_new(o->loop);
  ak_future_set(o->f, 5, NULL, NULL);
  t_sem_post(&o->made);
  assert_true(t_sem_wait(&o->added));
  assert_true(t_run_until(o->loop, seen_once, &o->seen, AK_SEC(5)));
  ak_future_release(o->f);
  ak_loop_free(o->loop);
  return NULL;
}

static void test_late_callback_on_live_remote_loop(void **state)
{
  (void)state;
  live_owner o = {0};
  t_sem_init(&o.made, 0);
  t_sem_init(&o.added, 0);
  pthread_t t;
  assert_int_equal(pthread_create(&t, NULL, own_a_loop, &o), 0);
  assert_true(t_sem_wait(&o.made));
  assert_int_equal(ak_future_on_settle(o.f, note_late, &o.seen), 0);
  assert_int_equal(o.seen.calls, 0); /* queued on its loop, not run here */
  t_sem_post(&o.added);
  assert_int_equal(pthread_join(t, NULL), 0);
  assert_int_equal(o.seen.calls, 1);
  assert_true(pthread_equal(o.seen.thread, t));
  t_sem_destroy(&o.made);
  t_sem_destroy(&o.added);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_free_oldest_first_leaves_no_freed_loop_current),
      cmocka_unit_test(test_free_newest_first),
      cmocka_unit_test(test_free_from_the_middle),
      cmocka_unit_test(test_plain_future_held_past_free),
      cmocka_unit_test(test_op_future_held_past_free),
      cmocka_unit_test(test_pending_op_future_held_past_free),
      cmocka_unit_test(test_callback_before_and_after_free),
      cmocka_unit_test(test_then_on_future_held_past_free),
      cmocka_unit_test(test_callback_from_other_thread_after_free),
      cmocka_unit_test(test_late_callback_on_live_remote_loop),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
