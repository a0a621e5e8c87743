/* test_loop.c: run modes, post, timers, ring ops, admission, cancel, free, deadlines, stats. */
#define _GNU_SOURCE
#include "helpers.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- Small tools ----------------------------------------------------------- */

static unsigned kind_index(const char *name)
{
  for (unsigned i = 0; i < AK_STATS_KINDS; i++) {
    const char *n = ak_op_kind_name(i);
    if (n && strcmp(n, name) == 0)
      return i;
  }
  fail_msg("no op kind named %s", name);
  return 0;
}

static void count_cb(ak_future *f, void *arg)
{
  (void)f;
  atomic_fetch_add((_Atomic int *)arg, 1);
}

static void set_flag(void *arg)
{
  atomic_store((_Atomic bool *)arg, true);
}

static void stop_loop(void *arg)
{
  ak_loop_stop(arg);
}

/* ---- Creating, running, stopping ------------------------------------------- */

static void test_new_free_and_current(void **state)
{
  (void)state;
  assert_null(ak_loop_current());
  ak_loop *a = t_loop_new();
  assert_true(ak_loop_is_owner(a));
  assert_ptr_equal(ak_loop_current(), a);
  ak_loop *b = t_loop_new();
  assert_ptr_equal(ak_loop_current(), b);
  ak_loop_free(b);
  assert_ptr_equal(ak_loop_current(), a);
  ak_loop_free(a);
  assert_null(ak_loop_current());
  ak_loop_free(NULL);
}

static void test_run_default_idle_returns_zero(void **state)
{
  (void)state;
  ak_loop *loop = t_loop_new();
  int64_t t0 = ak_now_ns();
  assert_int_equal(ak_loop_run(loop, AK_RUN_DEFAULT), 0);
  assert_int_equal(ak_loop_run(loop, AK_RUN_ONCE), 0); /* idle: no block */
  assert_true(ak_now_ns() - t0 < 5 * T_SEC);
  ak_loop_free(loop);
}

static void test_run_nowait_does_not_block(void **state)
{
  (void)state;
  ak_loop *loop = t_loop_new();
  ak_future *s = ak_sleep(loop, 30 * T_SEC);
  int64_t t0 = ak_now_ns();
  for (int i = 0; i < 10; i++)
    assert_true(ak_loop_run(loop, AK_RUN_NOWAIT) >= 1); /* the sleep is alive */
  assert_true(ak_now_ns() - t0 < 5 * T_SEC);
  assert_false(ak_future_is_set(s));
  ak_loop_free(loop);
  assert_int_equal(ak_future_state(s), AK_CANCELLED);
  ak_future_release(s);
}

static void test_run_once_blocks_for_one_event(void **state)
{
  (void)state;
  ak_loop *loop = t_loop_new();
  int64_t t0 = ak_now_ns();
  ak_future *s = ak_sleep(loop, 30 * T_MS);
  ak_future *longer = ak_sleep(loop, 30 * T_SEC);
  int rc = ak_loop_run(loop, AK_RUN_ONCE);
  int64_t elapsed = ak_now_ns() - t0;
  assert_true(ak_future_is_set(s));
  assert_false(ak_future_is_set(longer));
  assert_true(rc >= 1); /* the longer sleep */
  assert_true(elapsed >= 30 * T_MS);
  assert_true(elapsed < 10 * T_SEC);
  ak_loop_free(loop);
  ak_future_release(s);
  ak_future_release(longer);
}

typedef struct stopper {
  ak_loop *loop;
  t_sem go;
} stopper;

static void *stop_when_told(void *arg)
{
  stopper *s = arg;
  if (t_sem_wait(&s->go))
    ak_loop_stop(s->loop);
  return NULL;
}

static void post_sem(void *arg)
{
  t_sem_post(arg);
}

static void test_stop_from_other_thread(void **state)
{
  (void)state;
  ak_loop *loop = t_loop_new();
  stopper s = {.loop = loop};
  t_sem_init(&s.go, 0);
  ak_loop_hold(loop); /* without a stop, DEFAULT would run forever */
  _Atomic bool safety_fired = false;
  ak_timer *safety = ak_call_later(loop, T_HANG_NS, set_flag, &safety_fired);
  ak_timer *safety_stop = ak_call_later(loop, T_HANG_NS, stop_loop, loop);
  ak_call_later(loop, 0, post_sem, &s.go); /* the loop is running now */
  pthread_t t = t_thread_start(stop_when_told, &s, 0);
  int rc = ak_loop_run(loop, AK_RUN_DEFAULT);
  assert_false(atomic_load(&safety_fired));
  assert_true(rc >= 1); /* the hold and the safety timers */
  t_thread_join(t);
  assert_int_equal(ak_timer_cancel(loop, safety), 0);
  assert_int_equal(ak_timer_cancel(loop, safety_stop), 0);
  ak_loop_unhold(loop);
  assert_int_equal(ak_loop_run(loop, AK_RUN_DEFAULT), 0);
  ak_loop_free(loop);
  t_sem_destroy(&s.go);
}

/* ---- Post -------------------------------------------------------------------------- */

enum { POST_THREADS = 8, POSTS_PER_THREAD = 100000 };

typedef struct post_test {
  ak_loop *loop;
  pthread_t owner;
  uint32_t next[POST_THREADS]; /* loop thread only */
  long received;
  long out_of_order;
  long wrong_thread;
  _Atomic int posting;
  _Atomic long post_errors;
} post_test;

typedef struct poster {
  post_test *pt;
  unsigned id;
} poster;

static post_test *g_post;

static void on_post(void *arg)
{
  uintptr_t v = (uintptr_t)arg;
  unsigned id = (unsigned)(v >> 24);
  uint32_t seq = (uint32_t)(v & 0xffffff);
  post_test *pt = g_post;
  if (!pthread_equal(pthread_self(), pt->owner))
    pt->wrong_thread++;
  if (id >= POST_THREADS || seq != pt->next[id])
    pt->out_of_order++;
  else
    pt->next[id]++;
  pt->received++;
}

static void *post_many(void *arg)
{
  poster *p = arg;
  for (uint32_t i = 0; i < POSTS_PER_THREAD; i++) {
    uintptr_t v = ((uintptr_t)p->id << 24) | i;
    if (ak_loop_post(p->pt->loop, on_post, (void *)v) != 0)
      atomic_fetch_add(&p->pt->post_errors, 1);
  }
  if (atomic_fetch_sub(&p->pt->posting, 1) == 1)
    ak_loop_unhold(p->pt->loop); /* the last poster lets the loop go idle */
  return NULL;
}

static void test_post_many_threads(void **state)
{
  (void)state;
  post_test *pt = calloc(1, sizeof(*pt));
  g_post = pt;
  pt->loop = t_loop_new();
  pt->owner = pthread_self();
  atomic_init(&pt->posting, POST_THREADS);
  ak_loop_hold(pt->loop);
  poster ps[POST_THREADS];
  pthread_t threads[POST_THREADS];
  for (unsigned i = 0; i < POST_THREADS; i++) {
    ps[i] = (poster){pt, i};
    threads[i] = t_thread_start(post_many, &ps[i], 0);
  }
  /* DEFAULT returns once every post ran and the hold is gone. */
  assert_int_equal(ak_loop_run(pt->loop, AK_RUN_DEFAULT), 0);
  for (unsigned i = 0; i < POST_THREADS; i++)
    t_thread_join(threads[i]);
  assert_int_equal(atomic_load(&pt->post_errors), 0);
  assert_int_equal(pt->received, (long)POST_THREADS * POSTS_PER_THREAD);
  assert_int_equal(pt->out_of_order, 0);
  assert_int_equal(pt->wrong_thread, 0);
  for (unsigned i = 0; i < POST_THREADS; i++)
    assert_int_equal(pt->next[i], POSTS_PER_THREAD);
  ak_loop_stats st;
  ak_loop_stats_get(pt->loop, &st);
  assert_int_equal(st.posts, (uint64_t)POST_THREADS * POSTS_PER_THREAD);
  ak_loop_free(pt->loop);
  free(pt);
}

/* A post made (with the hold released) while the loop runs its last
 * callback of an iteration still runs before DEFAULT returns. */
typedef struct last_post {
  ak_loop *loop;
  t_sem go, done;
  _Atomic int ran;
} last_post;

static void count_post(void *arg)
{
  atomic_fetch_add((_Atomic int *)arg, 1);
}

static void *post_then_unhold(void *arg)
{
  last_post *lp = arg;
  if (t_sem_wait(&lp->go)) {
    ak_loop_post(lp->loop, count_post, &lp->ran);
    ak_loop_unhold(lp->loop);
  }
  t_sem_post(&lp->done);
  return NULL;
}

static void hand_over_in_callback(ak_future *f, void *arg)
{
  (void)f;
  last_post *lp = arg;
  t_sem_post(&lp->go);
  t_sem_wait(&lp->done); /* the post and unhold happen now */
}

static void test_post_during_last_callback_then_unhold(void **state)
{
  (void)state;
  last_post lp = {.loop = t_loop_new()};
  t_sem_init(&lp.go, 0);
  t_sem_init(&lp.done, 0);
  ak_loop_hold(lp.loop);
  pthread_t t = t_thread_start(post_then_unhold, &lp, 0);
  ak_future *f = ak_nop(lp.loop);
  ak_future_on_settle(f, hand_over_in_callback, &lp);
  assert_int_equal(ak_loop_run(lp.loop, AK_RUN_DEFAULT), 0);
  t_thread_join(t);
  assert_int_equal(atomic_load(&lp.ran), 1);
  ak_future_release(f);
  ak_loop_free(lp.loop);
  t_sem_destroy(&lp.go);
  t_sem_destroy(&lp.done);
}

static void test_post_from_owner_runs_on_next_iteration(void **state)
{
  (void)state;
  ak_loop *loop = t_loop_new();
  _Atomic int ran = 0;
  assert_int_equal(ak_loop_post(loop, count_post, (void *)&ran), 0);
  assert_int_equal(atomic_load(&ran), 0);
  assert_int_equal(ak_loop_run(loop, AK_RUN_DEFAULT), 0);
  assert_int_equal(atomic_load(&ran), 1);
  ak_loop_free(loop);
}

/* ---- Timers ------------------------------------------------------------------------------ */

typedef struct fire_log {
  int order[64];
  int n;
  int64_t at[64];
} fire_log;

typedef struct fire_arg {
  fire_log *log;
  int id;
} fire_arg;

static void log_fire(void *arg)
{
  fire_arg *a = arg;
  if (a->log->n < 64) {
    a->log->at[a->log->n] = ak_now_ns();
    a->log->order[a->log->n++] = a->id;
  }
}

static void test_timers_fire_in_deadline_order(void **state)
{
  (void)state;
  ak_loop *loop = t_loop_new();
  /* id: delay (ms). Two of 10 ms, in creation order 1 then 5. */
  const int64_t delays[6] = {50, 10, 30, 0, 20, 10};
  const int expect[6] = {3, 1, 5, 4, 2, 0};
  fire_log log = {0};
  fire_arg args[6];
  int64_t t0 = ak_now_ns();
  for (int i = 0; i < 6; i++) {
    args[i] = (fire_arg){&log, i};
    assert_non_null(ak_call_later(loop, delays[i] * T_MS, log_fire, &args[i]));
  }
  assert_int_equal(ak_loop_run(loop, AK_RUN_DEFAULT), 0);
  assert_int_equal(log.n, 6);
  for (int i = 0; i < 6; i++) {
    assert_int_equal(log.order[i], expect[i]);
    assert_true(log.at[i] - t0 >= delays[expect[i]] * T_MS);
  }
  assert_true(ak_now_ns() - t0 < 10 * T_SEC);
  ak_loop_stats st;
  ak_loop_stats_get(loop, &st);
  assert_int_equal(st.timers_fired, 6);
  ak_loop_free(loop);
}

static void test_timers_equal_delay_creation_order(void **state)
{
  (void)state;
  ak_loop *loop = t_loop_new();
  fire_log log = {0};
  fire_arg args[64];
  for (int i = 0; i < 64; i++) {
    args[i] = (fire_arg){&log, i};
    ak_call_later(loop, i % 2 ? 0 : -5, log_fire, &args[i]); /* negative: 0 */
  }
  assert_int_equal(ak_loop_run(loop, AK_RUN_DEFAULT), 0);
  assert_int_equal(log.n, 64);
  for (int i = 0; i < 64; i++)
    assert_int_equal(log.order[i], i);
  ak_loop_free(loop);
}

typedef struct canceller {
  ak_loop *loop;
  ak_timer *victim;
  int rc;
} canceller;

static void cancel_victim(void *arg)
{
  canceller *c = arg;
  c->rc = ak_timer_cancel(c->loop, c->victim);
}

static void test_timer_cancel(void **state)
{
  (void)state;
  ak_loop *loop = t_loop_new();
  _Atomic bool a_fired = false, b_fired = false, c_fired = false;
  ak_timer *a = ak_call_later(loop, 10 * T_MS, set_flag, (void *)&a_fired);
  ak_timer *b = ak_call_later(loop, 20 * T_MS, set_flag, (void *)&b_fired);
  ak_call_later(loop, 30 * T_MS, set_flag, (void *)&c_fired);
  assert_int_equal(ak_timer_cancel(loop, a), 0);
  /* A timer cancelled from another timer's callback. */
  canceller cx = {loop, b, 1};
  ak_call_later(loop, 5 * T_MS, cancel_victim, &cx);
  assert_int_equal(ak_timer_cancel(loop, NULL), AK_ESETTLED);
  assert_int_equal(ak_loop_run(loop, AK_RUN_DEFAULT), 0);
  assert_false(atomic_load(&a_fired));
  assert_false(atomic_load(&b_fired));
  assert_true(atomic_load(&c_fired));
  assert_int_equal(cx.rc, 0);
  ak_loop_free(loop);
}

static void test_sleep_settles_after_delay(void **state)
{
  (void)state;
  ak_loop *loop = t_loop_new();
  int64_t t0 = ak_now_ns();
  ak_future *s = ak_sleep(loop, 40 * T_MS);
  assert_non_null(s);
  assert_ptr_equal(ak_future_loop(s), loop);
  assert_int_equal(ak_future_state(s), AK_PENDING);
  assert_int_equal(ak_loop_run(loop, AK_RUN_DEFAULT), 0);
  int64_t elapsed = ak_now_ns() - t0;
  assert_int_equal(ak_future_state(s), AK_DONE);
  assert_int_equal(ak_future_result(s), 0);
  assert_true(elapsed >= 40 * T_MS);
  assert_true(elapsed < 10 * T_SEC);
  ak_future_release(s);
  ak_loop_free(loop);
}

static void test_sleep_cancel(void **state)
{
  (void)state;
  ak_loop *loop = t_loop_new();
  ak_future *s = ak_sleep(loop, 30 * T_SEC);
  assert_int_equal(ak_future_cancel(s), 0);
  assert_int_equal(ak_future_state(s), AK_CANCELLED);
  int64_t t0 = ak_now_ns();
  assert_int_equal(ak_loop_run(loop, AK_RUN_DEFAULT), 0); /* its timer is gone */
  assert_true(ak_now_ns() - t0 < 5 * T_SEC);
  ak_future_release(s);
  ak_loop_free(loop);
}

enum { MANY_SLEEPS = 10000 };

typedef struct sleep_log {
  long settled;
  int64_t last_deadline;
  long out_of_order;
} sleep_log;

static void test_many_sleeps(void **state)
{
  (void)state;
  ak_loop *loop = t_loop_new();
  ak_future **fs = calloc(MANY_SLEEPS, sizeof(*fs));
  _Atomic int calls = 0;
  unsigned seed = 12345;
  int64_t t0 = ak_now_ns(), longest = 0;
  for (int i = 0; i < MANY_SLEEPS; i++) {
    int64_t d = (int64_t)(rand_r(&seed) % 50) * T_MS;
    if (d > longest)
      longest = d;
    fs[i] = ak_sleep(loop, d);
    assert_non_null(fs[i]);
    ak_future_on_settle(fs[i], count_cb, (void *)&calls);
  }
  assert_int_equal(ak_loop_run(loop, AK_RUN_DEFAULT), 0);
  assert_true(ak_now_ns() - t0 >= longest);
  assert_int_equal(atomic_load(&calls), MANY_SLEEPS);
  for (int i = 0; i < MANY_SLEEPS; i++) {
    assert_int_equal(ak_future_state(fs[i]), AK_DONE);
    ak_future_release(fs[i]);
  }
  /* One kernel timeout for all: sleeps submit no timeout ops. */
  ak_loop_stats st;
  ak_loop_stats_get(loop, &st);
  assert_int_equal(st.submitted[kind_index("timeout")], 0);
  assert_int_equal(st.timers_fired, MANY_SLEEPS);
  free(fs);
  ak_loop_free(loop);
}

/* ---- Ring ops --------------------------------------------------------------------------- */

static void test_nop(void **state)
{
  (void)state;
  ak_loop *loop = t_loop_new();
  ak_future *f = ak_nop(loop);
  assert_non_null(f);
  assert_ptr_equal(ak_future_loop(f), loop);
  assert_int_equal(ak_future_state(f), AK_PENDING); /* settles in the loop */
  assert_int_equal(ak_future_wait(f, T_HANG_NS), 0);
  assert_int_equal(ak_future_state(f), AK_DONE);
  assert_int_equal(ak_future_result(f), 0);
  ak_future_release(f);
  ak_loop_free(loop);
}

static void test_timeout_op(void **state)
{
  (void)state;
  ak_loop *loop = t_loop_new();
  int64_t t0 = ak_now_ns();
  ak_future *f = ak_timeout(loop, 25 * T_MS);
  assert_int_equal(ak_loop_run(loop, AK_RUN_DEFAULT), 0);
  int64_t elapsed = ak_now_ns() - t0;
  assert_int_equal(ak_future_state(f), AK_DONE);
  assert_int_equal(ak_future_result(f), 0);
  assert_true(elapsed >= 25 * T_MS);
  assert_true(elapsed < 10 * T_SEC);
  ak_loop_stats st;
  ak_loop_stats_get(loop, &st);
  assert_int_equal(st.submitted[kind_index("timeout")], 1);
  assert_int_equal(st.completed[kind_index("timeout")], 1);
  ak_future_release(f);
  ak_loop_free(loop);
}

static void test_read_write_pipe(void **state)
{
  (void)state;
  ak_loop *loop = t_loop_new();
  int p[2];
  t_pipe(p);
  char out[] = "hello, ring";
  char in[32];
  memset(in, 0, sizeof(in));
  ak_future *r = ak_read(loop, p[0], in, sizeof(in), -1);
  ak_future *w = ak_write(loop, p[1], out, strlen(out), -1);
  assert_int_equal(ak_future_get(w, T_HANG_NS, NULL), (int64_t)strlen(out));
  assert_int_equal(ak_future_get(r, T_HANG_NS, NULL), (int64_t)strlen(out));
  assert_memory_equal(in, out, strlen(out));
  /* End of file once the write end is closed. */
  close(p[1]);
  ak_future *eof = ak_read(loop, p[0], in, sizeof(in), -1);
  assert_int_equal(ak_future_get(eof, T_HANG_NS, NULL), 0);
  assert_int_equal(ak_future_state(eof), AK_DONE);
  ak_future_release(r);
  ak_future_release(w);
  ak_future_release(eof);
  close(p[0]);
  ak_loop_free(loop);
}

static void test_read_write_file(void **state)
{
  (void)state;
  ak_loop *loop = t_loop_new();
  int fd = t_tmpfile(O_RDWR);
  ak_future *w1 = ak_write(loop, fd, "abcdef", 6, 0);
  ak_future *w2 = ak_write(loop, fd, "XYZ", 3, 10);
  assert_int_equal(ak_future_get(w1, T_HANG_NS, NULL), 6);
  assert_int_equal(ak_future_get(w2, T_HANG_NS, NULL), 3);
  char buf[64];
  memset(buf, '?', sizeof(buf));
  ak_future *r = ak_read(loop, fd, buf, sizeof(buf), 0);
  assert_int_equal(ak_future_get(r, T_HANG_NS, NULL), 13);
  assert_memory_equal(buf, "abcdef\0\0\0\0XYZ", 13);
  assert_int_equal(buf[13], '?');
  ak_future *r2 = ak_read(loop, fd, buf, 2, 11);
  assert_int_equal(ak_future_get(r2, T_HANG_NS, NULL), 2);
  assert_memory_equal(buf, "YZ", 2);
  ak_future *eof = ak_read(loop, fd, buf, sizeof(buf), 13);
  assert_int_equal(ak_future_get(eof, T_HANG_NS, NULL), 0);
  /* Offset -1: the file position, which the positioned ops left at 0. */
  ak_future *cur = ak_read(loop, fd, buf, 3, -1);
  assert_int_equal(ak_future_get(cur, T_HANG_NS, NULL), 3);
  assert_memory_equal(buf, "abc", 3);
  assert_int_equal(lseek(fd, 0, SEEK_CUR), 3);
  ak_future *all[] = {w1, w2, r, r2, eof, cur};
  for (size_t i = 0; i < 6; i++)
    ak_future_release(all[i]);
  close(fd);
  ak_loop_free(loop);
}

static void test_bad_fd_ebadf(void **state)
{
  (void)state;
  ak_loop *loop = t_loop_new();
  int p[2];
  t_pipe(p);
  close(p[0]);
  close(p[1]); /* now surely not open */
  char buf[8] = {0};
  ak_future *r = ak_read(loop, p[0], buf, sizeof(buf), -1);
  ak_future *w = ak_write(loop, p[1], buf, sizeof(buf), -1);
  assert_int_equal(ak_future_get(r, T_HANG_NS, NULL), -EBADF);
  assert_int_equal(ak_future_state(r), AK_FAILED);
  assert_int_equal(ak_future_get(w, T_HANG_NS, NULL), -EBADF);
  assert_int_equal(ak_future_state(w), AK_FAILED);
  ak_future_release(r);
  ak_future_release(w);
  ak_loop_free(loop);
}

static void test_read_write_only_fd_ebadf(void **state)
{
  (void)state;
  ak_loop *loop = t_loop_new();
  int fd = t_tmpfile(O_WRONLY);
  char buf[8] = {0};
  ak_future *r = ak_read(loop, fd, buf, sizeof(buf), 0);
  assert_int_equal(ak_future_get(r, T_HANG_NS, NULL), -EBADF);
  assert_int_equal(ak_future_state(r), AK_FAILED);
  /* And the other way: writing the read end of a pipe. */
  int p[2];
  t_pipe(p);
  ak_future *w = ak_write(loop, p[0], "x", 1, -1);
  assert_int_equal(ak_future_get(w, T_HANG_NS, NULL), -EBADF);
  ak_future_release(r);
  ak_future_release(w);
  close(fd);
  close(p[0]);
  close(p[1]);
  ak_loop_free(loop);
}

/* ---- Admission ------------------------------------------------------------------------------ */

static ak_loop *small_loop(unsigned flags)
{
  ak_loop_options opts = {.sq_entries = 4, .cq_entries = 8, .flags = flags};
  return t_loop_new_opts(&opts);
}

static void test_admission_many_nops(void **state)
{
  (void)state;
  ak_loop *loop = small_loop(0);
  enum { N = 1000 };
  ak_future **fs = calloc(N, sizeof(*fs));
  _Atomic int calls = 0;
  for (int i = 0; i < N; i++) {
    fs[i] = ak_nop(loop);
    assert_non_null(fs[i]);
    ak_future_on_settle(fs[i], count_cb, (void *)&calls);
  }
  ak_loop_stats st;
  ak_loop_stats_get(loop, &st);
  assert_true(st.queued_now > 0);
  assert_true(st.in_flight <= 8);
  assert_int_equal(ak_loop_run(loop, AK_RUN_DEFAULT), 0);
  assert_int_equal(atomic_load(&calls), N);
  for (int i = 0; i < N; i++) {
    assert_int_equal(ak_future_state(fs[i]), AK_DONE);
    ak_future_release(fs[i]);
  }
  ak_loop_stats_get(loop, &st);
  assert_true(st.queue_waits > 0);
  assert_int_equal(st.cq_overflows, 0);
  assert_int_equal(st.submitted[kind_index("nop")], N);
  assert_int_equal(st.completed[kind_index("nop")], N);
  assert_int_equal(st.queued_now, 0);
  assert_int_equal(st.in_flight, 0);
  free(fs);
  ak_loop_free(loop);
}

static void test_admission_pending_pipe_reads(void **state)
{
  (void)state;
  ak_loop *loop = small_loop(0);
  enum { N = 100 };
  int p[2];
  t_pipe(p);
  unsigned char bufs[N];
  memset(bufs, 0, sizeof(bufs));
  ak_future *fs[N];
  for (int i = 0; i < N; i++)
    fs[i] = ak_read(loop, p[0], &bufs[i], 1, -1);
  ak_loop_run(loop, AK_RUN_NOWAIT);
  ak_loop_stats st;
  ak_loop_stats_get(loop, &st);
  assert_true(st.queued_now > 0);
  assert_true(st.in_flight <= 8);
  /* Nothing completes without data. */
  for (int i = 0; i < N; i++)
    assert_false(ak_future_is_set(fs[i]));
  unsigned char data[N];
  unsigned sum = 0;
  for (int i = 0; i < N; i++) {
    data[i] = (unsigned char)(i + 1);
    sum += data[i];
  }
  assert_int_equal(write(p[1], data, N), N);
  assert_int_equal(ak_loop_run(loop, AK_RUN_DEFAULT), 0);
  unsigned got = 0;
  for (int i = 0; i < N; i++) {
    assert_int_equal(ak_future_state(fs[i]), AK_DONE);
    assert_int_equal(ak_future_result(fs[i]), 1);
    got += bufs[i];
    ak_future_release(fs[i]);
  }
  assert_int_equal(got, sum); /* every byte, once */
  ak_loop_stats_get(loop, &st);
  assert_true(st.queue_waits > 0);
  assert_int_equal(st.cq_overflows, 0);
  close(p[0]);
  close(p[1]);
  ak_loop_free(loop);
}

/* ---- Cancellation --------------------------------------------------------------------------- */

static void test_cancel_pending_read(void **state)
{
  (void)state;
  ak_loop *loop = t_loop_new();
  int p[2];
  t_pipe(p);
  char buf[16];
  memset(buf, 'A', sizeof(buf));
  ak_future *r = ak_read(loop, p[0], buf, sizeof(buf), -1);
  ak_loop_run(loop, AK_RUN_NOWAIT); /* in the kernel now */
  assert_false(ak_future_is_set(r));
  assert_int_equal(ak_future_cancel(r), 0);
  assert_int_equal(ak_future_cancel(r), 0); /* asked again: harmless */
  assert_int_equal(ak_future_wait(r, T_HANG_NS), 0);
  assert_int_equal(ak_future_state(r), AK_CANCELLED);
  assert_int_equal(ak_future_result(r), -ECANCELED);
  assert_int_equal(ak_future_cancel(r), AK_ESETTLED);
  /* The kernel is done with buf: data written now stays in the pipe. */
  assert_int_equal(write(p[1], "XYZ", 3), 3);
  ak_loop_run(loop, AK_RUN_NOWAIT);
  ak_loop_run(loop, AK_RUN_NOWAIT);
  for (size_t i = 0; i < sizeof(buf); i++)
    assert_int_equal(buf[i], 'A');
  char check[8];
  assert_int_equal(read(p[0], check, sizeof(check)), 3);
  assert_memory_equal(check, "XYZ", 3);
  ak_future_release(r);
  close(p[0]);
  close(p[1]);
  ak_loop_free(loop);
}

typedef struct cancel_from_thread {
  ak_future *f;
  int rc;
} cancel_from_thread;

static void *cancel_it(void *arg)
{
  cancel_from_thread *c = arg;
  c->rc = ak_future_cancel(c->f);
  return NULL;
}

static void test_cancel_read_from_other_thread(void **state)
{
  (void)state;
  ak_loop *loop = t_loop_new();
  int p[2];
  t_pipe(p);
  char buf[16];
  ak_future *r = ak_read(loop, p[0], buf, sizeof(buf), -1);
  ak_loop_run(loop, AK_RUN_NOWAIT);
  cancel_from_thread c = {r, 1};
  pthread_t t = t_thread_start(cancel_it, &c, 0);
  t_thread_join(t);
  assert_int_equal(c.rc, 0);
  assert_int_equal(ak_future_wait(r, T_HANG_NS), 0); /* the loop runs the request */
  assert_int_equal(ak_future_state(r), AK_CANCELLED);
  ak_future_release(r);
  close(p[0]);
  close(p[1]);
  ak_loop_free(loop);
}

static void test_cancel_queued_op_settles_at_once(void **state)
{
  (void)state;
  ak_loop *loop = small_loop(0);
  int p[2];
  t_pipe(p);
  char bufs[20];
  ak_future *fs[20];
  for (int i = 0; i < 20; i++)
    fs[i] = ak_read(loop, p[0], &bufs[i], 1, -1);
  ak_loop_stats st;
  ak_loop_stats_get(loop, &st);
  assert_true(st.queued_now > 0);
  /* The last one waits for CQ room: no kernel round trip needed. */
  assert_int_equal(ak_future_cancel(fs[19]), 0);
  assert_int_equal(ak_future_state(fs[19]), AK_CANCELLED);
  ak_loop_stats st2;
  ak_loop_stats_get(loop, &st2);
  assert_int_equal(st2.queued_now, st.queued_now - 1);
  for (int i = 0; i < 19; i++)
    ak_future_cancel(fs[i]);
  assert_int_equal(ak_loop_run(loop, AK_RUN_DEFAULT), 0);
  for (int i = 0; i < 20; i++) {
    assert_int_equal(ak_future_state(fs[i]), AK_CANCELLED);
    ak_future_release(fs[i]);
  }
  close(p[0]);
  close(p[1]);
  ak_loop_free(loop);
}

/* ---- Freeing a loop with work in flight -------------------------------------------------------
 */

static void test_free_with_ops_in_flight(void **state)
{
  (void)state;
  ak_loop *loop = small_loop(0); /* some reads wait for CQ room too */
  enum { NREADS = 10 };
  int p[2];
  t_pipe(p);
  char bufs[NREADS][8];
  memset(bufs, 'A', sizeof(bufs));
  ak_future *fs[NREADS + 2];
  _Atomic int calls = 0;
  for (int i = 0; i < NREADS; i++)
    fs[i] = ak_read(loop, p[0], bufs[i], sizeof(bufs[i]), -1);
  fs[NREADS] = ak_sleep(loop, 30 * T_SEC);
  fs[NREADS + 1] = ak_timeout(loop, 30 * T_SEC);
  for (int i = 0; i < NREADS + 2; i++)
    ak_future_on_settle(fs[i], count_cb, (void *)&calls);
  _Atomic bool timer_ran = false;
  ak_call_later(loop, 30 * T_SEC, set_flag, (void *)&timer_ran);
  ak_loop_run(loop, AK_RUN_NOWAIT);
  ak_loop_stats st;
  ak_loop_stats_get(loop, &st);
  assert_true(st.in_flight > 0);
  assert_true(st.queued_now > 0);

  int64_t t0 = ak_now_ns();
  ak_loop_free(loop);
  assert_true(ak_now_ns() - t0 < 10 * T_SEC);
  for (int i = 0; i < NREADS + 2; i++)
    assert_int_equal(ak_future_state(fs[i]), AK_CANCELLED);
  assert_int_equal(atomic_load(&calls), NREADS + 2); /* callbacks ran in free */
  assert_false(atomic_load(&timer_ran));
  /* Nothing written after free: the pipe's data stays unread. */
  assert_int_equal(write(p[1], "ZZZZ", 4), 4);
  char check[8];
  assert_int_equal(read(p[0], check, sizeof(check)), 4);
  for (int i = 0; i < NREADS; i++)
    for (int j = 0; j < 8; j++)
      assert_int_equal(bufs[i][j], 'A');
  for (int i = 0; i < NREADS + 2; i++)
    ak_future_release(fs[i]);
  close(p[0]);
  close(p[1]);
}

/* ak_loop_free with a bound pool task whose settle is already in the inbox:
 * the free's first iteration takes it, and must not then block waiting for a
 * wakeup nobody sends. A watchdog stops the loop if it does (and says so). */
typedef struct watchdog {
  ak_loop *loop;
  t_sem done;
  _Atomic bool fired;
} watchdog;

static void *watch_free(void *arg)
{
  watchdog *w = arg;
  if (!t_sem_timedwait(&w->done, 5 * T_SEC)) {
    atomic_store(&w->fired, true);
    ak_loop_stop(w->loop); /* wakes the blocked free */
    t_sem_wait(&w->done);
  }
  return NULL;
}

static int64_t quick_task(void *arg, ak_future *self)
{
  (void)arg;
  (void)self;
  return 1;
}

static bool spin_settled(void *f)
{
  return ak_future_is_set(f);
}

static void test_free_with_settled_bound_task_does_not_hang(void **state)
{
  (void)state;
  ak_pool *pool = ak_pool_new(1);
  for (int round = 0; round < 5; round++) {
    ak_loop *loop = t_loop_new();
    ak_future *f = ak_pool_submit(pool, quick_task, NULL);
    assert_true(t_spin_until(spin_settled, f));
    int64_t settle_seen = ak_now_ns();
    while (ak_now_ns() - settle_seen < 2 * T_MS)
      sched_yield(); /* and its settle handed to the loop's inbox */
    ak_future_release(f);
    watchdog w = {.loop = loop};
    t_sem_init(&w.done, 0);
    pthread_t t = t_thread_start(watch_free, &w, 0);
    ak_loop_free(loop);
    t_sem_post(&w.done);
    t_thread_join(t);
    t_sem_destroy(&w.done);
    assert_false(atomic_load(&w.fired));
  }
  ak_pool_free(pool);
}

/* ---- Deadlines on ops ------------------------------------------------------------------------ */

static void test_op_timeout_linked(void **state)
{
  (void)state;
  ak_loop *loop = t_loop_new();
  int p[2];
  t_pipe(p);
  char buf[8];
  int64_t t0 = ak_now_ns();
  ak_future *r = ak_read(loop, p[0], buf, sizeof(buf), -1);
  ak_future *d = ak_future_timeout(r, 30 * T_MS);
  assert_ptr_equal(d, r); /* the deadline is the op's own linked timeout */
  assert_int_equal(ak_future_wait(r, T_HANG_NS), 0);
  int64_t elapsed = ak_now_ns() - t0;
  assert_int_equal(ak_future_state(r), AK_FAILED);
  assert_int_equal(ak_future_result(r), -ETIMEDOUT);
  assert_true(elapsed >= 30 * T_MS);
  assert_true(elapsed < 10 * T_SEC);
  ak_future_release(d);
  ak_future_release(r);
  assert_int_equal(ak_loop_run(loop, AK_RUN_DEFAULT), 0);
  ak_loop_stats st;
  ak_loop_stats_get(loop, &st);
  assert_int_equal(st.in_flight, 0);
  close(p[0]);
  close(p[1]);
  ak_loop_free(loop);
}

static void test_op_timeout_linked_not_reached(void **state)
{
  (void)state;
  ak_loop *loop = t_loop_new();
  int p[2];
  t_pipe(p);
  char buf[8];
  ak_future *r = ak_read(loop, p[0], buf, sizeof(buf), -1);
  ak_future *d = ak_future_timeout(r, 30 * T_SEC);
  assert_ptr_equal(d, r);
  ak_loop_run(loop, AK_RUN_NOWAIT);
  assert_int_equal(write(p[1], "ok", 2), 2);
  int64_t t0 = ak_now_ns();
  assert_int_equal(ak_future_get(r, T_HANG_NS, NULL), 2);
  assert_int_equal(ak_loop_run(loop, AK_RUN_DEFAULT), 0); /* the link is gone too */
  assert_true(ak_now_ns() - t0 < 10 * T_SEC);
  assert_memory_equal(buf, "ok", 2);
  ak_future_release(d);
  ak_future_release(r);
  close(p[0]);
  close(p[1]);
  ak_loop_free(loop);
}

static void test_op_timeout_timer_path(void **state)
{
  (void)state;
  ak_loop *loop = t_loop_new();
  int p[2];
  t_pipe(p);
  char buf[8];
  memset(buf, 'A', sizeof(buf));
  ak_future *r = ak_read(loop, p[0], buf, sizeof(buf), -1);
  ak_loop_run(loop, AK_RUN_NOWAIT); /* submitted: too late for a link */
  int64_t t0 = ak_now_ns();
  ak_future *d = ak_future_timeout(r, 30 * T_MS);
  /* On epoll a waiting op takes a deadline of its own at any time (a loop
   * timer cancels it): d is r, and r itself fails -ETIMEDOUT. */
  bool epoll = t_loop_is_epoll(loop);
  if (epoll)
    assert_ptr_equal(d, r);
  else
    assert_ptr_not_equal(d, r);
  assert_int_equal(ak_future_wait(d, T_HANG_NS), 0);
  int64_t elapsed = ak_now_ns() - t0;
  assert_int_equal(ak_future_state(d), AK_FAILED);
  assert_int_equal(ak_future_result(d), -ETIMEDOUT);
  assert_true(elapsed >= 30 * T_MS);
  assert_true(elapsed < 10 * T_SEC);
  /* The read was cancelled. */
  assert_int_equal(ak_future_wait(r, T_HANG_NS), 0);
  assert_int_equal(ak_future_state(r), epoll ? AK_FAILED : AK_CANCELLED);
  assert_int_equal(write(p[1], "late", 4), 4);
  ak_loop_run(loop, AK_RUN_NOWAIT);
  assert_int_equal(buf[0], 'A');
  ak_future_release(d);
  ak_future_release(r);
  close(p[0]);
  close(p[1]);
  ak_loop_free(loop);
}

/* ---- The pool fallback path -------------------------------------------------------------------
 */

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

static void test_force_pool_fallback(void **state)
{
  (void)state;
  ak_pool *pool = ak_pool_new(2);
  ak_loop_options opts = {.flags = AK_LOOP_FORCE_POOL, .pool = pool};
  ak_loop *loop = t_loop_new_opts(&opts);
  int p[2];
  t_pipe(p);
  char in[16] = {0};
  ak_future *w = ak_write(loop, p[1], "fallback", 8, -1);
  assert_int_equal(ak_future_get(w, T_HANG_NS, NULL), 8);
  ak_future *r = ak_read(loop, p[0], in, sizeof(in), -1);
  thread_rec rec = {0};
  ak_future_on_settle(r, record_thread, &rec);
  assert_int_equal(ak_future_get(r, T_HANG_NS, NULL), 8);
  assert_memory_equal(in, "fallback", 8);
  assert_int_equal(ak_loop_run(loop, AK_RUN_DEFAULT), 0);
  assert_int_equal(atomic_load(&rec.calls), 1);
  assert_true(pthread_equal(rec.who, pthread_self())); /* settled on the loop */
  /* Errors come back the same way. */
  int fd = t_tmpfile(O_WRONLY);
  ak_future *bad = ak_read(loop, fd, in, sizeof(in), 0);
  assert_int_equal(ak_future_get(bad, T_HANG_NS, NULL), -EBADF);
  ak_loop_stats st;
  ak_loop_stats_get(loop, &st);
  unsigned kr = kind_index("read"), kw = kind_index("write");
  assert_int_equal(kr, 2);
  assert_int_equal(kw, 3);
  assert_int_equal(st.fallbacks[kr], 2);
  assert_int_equal(st.fallbacks[kw], 1);
  assert_int_equal(st.submitted[kr], 0);
  assert_int_equal(st.submitted[kw], 0);
  ak_future_release(w);
  ak_future_release(r);
  ak_future_release(bad);
  close(fd);
  close(p[0]);
  close(p[1]);
  ak_loop_free(loop);
  ak_pool_free(pool);
}

static void test_force_pool_nop_stays_on_ring(void **state)
{
  (void)state;
  ak_loop_options opts = {.flags = AK_LOOP_FORCE_POOL};
  ak_loop *loop = t_loop_new_opts(&opts);
  ak_future *f = ak_nop(loop); /* no pool path: the ring does it */
  assert_int_equal(ak_future_get(f, T_HANG_NS, NULL), 0);
  ak_loop_stats st;
  ak_loop_stats_get(loop, &st);
  assert_int_equal(st.fallbacks[kind_index("nop")], 0);
  assert_int_equal(st.submitted[kind_index("nop")], 1);
  ak_future_release(f);
  ak_loop_free(loop);
}

/* ---- Statistics and features -------------------------------------------------------------------
 */

static void test_stats_counts(void **state)
{
  (void)state;
  ak_loop_options opts = {.flags = AK_LOOP_LATENCY_STATS};
  ak_loop *loop = t_loop_new_opts(&opts);
  enum { N = 50 };
  ak_future *fs[N];
  for (int i = 0; i < N; i++)
    fs[i] = ak_nop(loop);
  ak_loop_stats st;
  ak_loop_stats_get(loop, &st);
  unsigned kn = kind_index("nop");
  assert_int_equal(st.submitted[kn], N);
  assert_int_equal(st.completed[kn], 0);
  assert_int_equal(st.in_flight, N);
  assert_int_equal(ak_loop_run(loop, AK_RUN_DEFAULT), 0);
  ak_loop_stats_get(loop, &st);
  assert_int_equal(st.submitted[kn], N);
  assert_int_equal(st.completed[kn], N);
  assert_int_equal(st.in_flight, 0);
  assert_true(st.iterations >= 1);
  if (!t_loop_is_epoll(loop))
    assert_true(st.submits >= 1); /* io_uring_enter calls; epoll has none */
  uint64_t lat = 0, submitted = 0, completed = 0;
  for (int i = 0; i < AK_STATS_LATENCY_BUCKETS; i++)
    lat += st.latency[i];
  for (int i = 0; i < AK_STATS_KINDS; i++) {
    submitted += st.submitted[i];
    completed += st.completed[i];
  }
  assert_int_equal(lat, N);
  assert_int_equal(submitted, N);
  assert_int_equal(completed, N);
  for (int i = 0; i < N; i++)
    ak_future_release(fs[i]);
  ak_loop_free(loop);
  /* Without AK_LOOP_LATENCY_STATS no op reads the clock for it: the
   * histogram stays zero, the counts are kept. */
  loop = t_loop_new();
  for (int i = 0; i < N; i++)
    fs[i] = ak_nop(loop);
  assert_int_equal(ak_loop_run(loop, AK_RUN_DEFAULT), 0);
  ak_loop_stats_get(loop, &st);
  for (int i = 0; i < AK_STATS_LATENCY_BUCKETS; i++)
    assert_int_equal(st.latency[i], 0);
  assert_int_equal(st.completed[kn], N);
  for (int i = 0; i < N; i++)
    ak_future_release(fs[i]);
  ak_loop_free(loop);
}

static void test_op_kind_names_and_features(void **state)
{
  (void)state;
  assert_string_equal(ak_op_kind_name(0), "nop");
  assert_string_equal(ak_op_kind_name(kind_index("read")), "read");
  assert_null(ak_op_kind_name(AK_STATS_KINDS));
  assert_null(ak_op_kind_name(100000));
  ak_loop *loop = t_loop_new();
  ak_features ft;
  ak_loop_features(loop, &ft);
  if (ft.backend == AK_BACKEND_EPOLL) {
    /* No ring to probe: the io_uring fields stay zero, the reason is said. */
    assert_int_equal(ft.probed_ops, 0);
    assert_int_equal(ft.kernel_features, 0);
    assert_true(strlen(ft.backend_reason) > 0);
    ak_loop_free(loop);
    return;
  }
  assert_int_equal(ft.backend, AK_BACKEND_URING);
  assert_non_null(strstr(ft.backend_reason, "io_uring"));
  assert_true(ft.probed_ops > 0);
  assert_int_equal(ft.opcodes[0], 1); /* IORING_OP_NOP */
  assert_true(ft.kernel_features != 0);
  ak_loop_free(loop);
}

/* ---- Ownership
 * ------------------------------------------------------------------------------------ */

typedef struct foreign {
  ak_loop *loop;
  int run_rc;
  bool is_owner;
  ak_loop *current;
  ak_future *nop, *read, *sleep;
} foreign;

static void *use_from_other_thread(void *arg)
{
  foreign *fo = arg;
  static char buf[4];
  fo->run_rc = ak_loop_run(fo->loop, AK_RUN_NOWAIT);
  fo->is_owner = ak_loop_is_owner(fo->loop);
  fo->current = ak_loop_current();
  fo->nop = ak_nop(fo->loop);
  fo->read = ak_read(fo->loop, 0, buf, sizeof(buf), -1);
  fo->sleep = ak_sleep(fo->loop, T_MS);
  return NULL;
}

static void test_non_owner_thread(void **state)
{
  (void)state;
  ak_loop *loop = t_loop_new();
  foreign fo = {.loop = loop};
  pthread_t t = t_thread_start(use_from_other_thread, &fo, 0);
  t_thread_join(t);
  assert_int_equal(fo.run_rc, AK_ENOTOWNER);
  assert_false(fo.is_owner);
  assert_null(fo.current);
  ak_future *fs[3] = {fo.nop, fo.read, fo.sleep};
  for (int i = 0; i < 3; i++) {
    assert_non_null(fs[i]);
    assert_int_equal(ak_future_state(fs[i]), AK_FAILED);
    assert_int_equal(ak_future_result(fs[i]), AK_ENOTOWNER);
    ak_future_release(fs[i]);
  }
  assert_int_equal(ak_loop_run(loop, AK_RUN_DEFAULT), 0);
  ak_loop_stats st;
  ak_loop_stats_get(loop, &st);
  assert_int_equal(st.submitted[kind_index("nop")], 0);
  ak_loop_free(loop);
}

static void test_wait_on_owner_runs_loop(void **state)
{
  (void)state;
  ak_loop *loop = t_loop_new();
  int64_t t0 = ak_now_ns();
  ak_future *s = ak_sleep(loop, 20 * T_MS);
  ak_future *n = ak_nop(loop);
  assert_int_equal(ak_future_wait(s, T_HANG_NS), 0); /* no ak_loop_run */
  assert_true(ak_now_ns() - t0 >= 20 * T_MS);
  assert_int_equal(ak_future_state(s), AK_DONE);
  assert_int_equal(ak_future_state(n), AK_DONE);
  /* A bounded wait on the owner thread times out while running the loop. */
  ak_future *never = ak_future_new(loop);
  ak_future *later = ak_sleep(loop, 10 * T_MS);
  t0 = ak_now_ns();
  assert_int_equal(ak_future_wait(never, 40 * T_MS), AK_EWAITTIMEOUT);
  assert_true(ak_now_ns() - t0 >= 40 * T_MS);
  assert_int_equal(ak_future_state(later), AK_DONE); /* the loop ran meanwhile */
  ak_future_release(never);
  ak_future_release(later);
  ak_future_release(s);
  ak_future_release(n);
  ak_loop_free(loop);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_new_free_and_current),
      cmocka_unit_test(test_run_default_idle_returns_zero),
      cmocka_unit_test(test_run_nowait_does_not_block),
      cmocka_unit_test(test_run_once_blocks_for_one_event),
      cmocka_unit_test(test_stop_from_other_thread),
      cmocka_unit_test(test_post_many_threads),
      cmocka_unit_test(test_post_during_last_callback_then_unhold),
      cmocka_unit_test(test_post_from_owner_runs_on_next_iteration),
      cmocka_unit_test(test_timers_fire_in_deadline_order),
      cmocka_unit_test(test_timers_equal_delay_creation_order),
      cmocka_unit_test(test_timer_cancel),
      cmocka_unit_test(test_sleep_settles_after_delay),
      cmocka_unit_test(test_sleep_cancel),
      cmocka_unit_test(test_many_sleeps),
      cmocka_unit_test(test_nop),
      cmocka_unit_test(test_timeout_op),
      cmocka_unit_test(test_read_write_pipe),
      cmocka_unit_test(test_read_write_file),
      cmocka_unit_test(test_bad_fd_ebadf),
      cmocka_unit_test(test_read_write_only_fd_ebadf),
      cmocka_unit_test(test_admission_many_nops),
      cmocka_unit_test(test_admission_pending_pipe_reads),
      cmocka_unit_test(test_cancel_pending_read),
      cmocka_unit_test(test_cancel_read_from_other_thread),
      cmocka_unit_test(test_cancel_queued_op_settles_at_once),
      cmocka_unit_test(test_free_with_ops_in_flight),
      cmocka_unit_test(test_free_with_settled_bound_task_does_not_hang),
      cmocka_unit_test(test_op_timeout_linked),
      cmocka_unit_test(test_op_timeout_linked_not_reached),
      cmocka_unit_test(test_op_timeout_timer_path),
      cmocka_unit_test(test_force_pool_fallback),
      cmocka_unit_test(test_force_pool_nop_stays_on_ring),
      cmocka_unit_test(test_stats_counts),
      cmocka_unit_test(test_op_kind_names_and_features),
      cmocka_unit_test(test_non_owner_thread),
      cmocka_unit_test(test_wait_on_owner_runs_loop),
  };
  t_require_uring();
  return cmocka_run_group_tests(tests, NULL, NULL);
}
