/* test_loop_iteration.c: what one loop iteration promises its callers: a
 * timer of any kind made from inside an iteration (a then-step, a post from
 * the owner thread, a post from another thread) bounds that iteration's
 * wait, with and without EXT_ARG; callbacks queued by a callback run in the
 * next batch (asyncio's call_soon), so a self-reposting callback starves
 * neither IO nor timers; after ak_loop_stop the stopping batch's callbacks
 * wait for the next run; a callback may wait (the nested iteration runs
 * the rest of its batch, each callback once); iterations with only ready
 * work enter no syscall. */
#include "helpers.h"
#include "seccomp_filter.h"

#include <errno.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

/* Each timer fires after DELAY; each must be seen within BOUND (10x DELAY,
 * the acceptance), and a test that would hang fails at BOUND. */
#define DELAY (50 * T_MS)
#define BOUND (10 * DELAY)

/* ---- Timers of every kind --------------------------------------------------- */

typedef enum timer_kind {
  TK_CALL_LATER,     /* ak_call_later settling a promise */
  TK_SLEEP,          /* ak_sleep */
  TK_FUTURE_TIMEOUT, /* ak_future_timeout on a promise: the loop timer */
  TK_OP_DEADLINE,    /* ak_future_timeout on a fresh read: a linked timeout */
  TK_COUNT
} timer_kind;

static const char *kind_name[TK_COUNT] = {"call_later", "sleep", "future_timeout",
                                          "op_deadline"};

typedef struct timer_run {
  ak_loop *loop;
  timer_kind kind;
  int pipefd[2];     /* TK_OP_DEADLINE reads the empty end */
  char buf[8];
  int64_t started;   /* when the timer was made */
  int64_t fired;     /* when its future settled, or 0 */
  ak_state state;
  int64_t result;
  t_sem done;        /* posted when the future settles */
  bool remote;       /* the run is driven from another thread */
} timer_run;

static void settle_promise(void *arg)
{
  ak_future *p = arg;
  ak_future_set(p, 7, NULL, NULL);
  ak_future_release(p);
}

/* Makes the timer of run->kind on run->loop (owner thread); returns a future
 * that settles when it fires, with one reference for the caller. */
static ak_future *start_timer(timer_run *run)
{
  ak_loop *loop = run->loop;
  run->started = ak_now_ns();
  switch (run->kind) {
  case TK_CALL_LATER: {
    ak_future *p = ak_future_new(loop);
    ak_future_ref(p); /* the timer's */
    assert_non_null(ak_call_later(loop, DELAY, settle_promise, p));
    return p;
  }
  case TK_SLEEP:
    return ak_sleep(loop, DELAY);
  case TK_FUTURE_TIMEOUT: {
    ak_future *p = ak_future_new(loop);
    ak_future *t = ak_future_timeout(p, DELAY);
    ak_future_release(p); /* the timeout holds it */
    return t;
  }
  case TK_OP_DEADLINE: {
    ak_future *r = ak_read(loop, run->pipefd[0], run->buf, sizeof(run->buf), -1);
    ak_future *t = ak_future_timeout(r, DELAY);
    ak_future_release(r);
    return t;
  }
  default:
    fail();
    return NULL;
  }
}

static void expect_fired(const timer_run *run)
{
  assert_true(run->fired > 0);
  int64_t took = run->fired - run->started;
  if (took > BOUND)
    fail_msg("%s: fired after %lld ms, more than 10x its %lld ms delay", kind_name[run->kind],
             (long long)(took / T_MS), (long long)(DELAY / T_MS));
  assert_true(took >= DELAY - T_MS); /* not early */
  switch (run->kind) {
  case TK_CALL_LATER:
    assert_int_equal(run->state, AK_DONE);
    assert_int_equal(run->result, 7);
    break;
  case TK_SLEEP:
    assert_int_equal(run->state, AK_DONE);
    assert_int_equal(run->result, 0);
    break;
  case TK_FUTURE_TIMEOUT:
  case TK_OP_DEADLINE:
    assert_int_equal(run->state, AK_FAILED);
    assert_int_equal(run->result, -ETIMEDOUT);
    break;
  default:
    fail();
  }
}

static void record_fired(ak_future *f, void *arg)
{
  timer_run *run = arg;
  run->fired = ak_now_ns();
  run->state = ak_future_state(f);
  run->result = ak_future_result(f);
  if (run->remote)
    ak_loop_unhold(run->loop);
  t_sem_post(&run->done);
}

static ak_loop *loop_for(bool ext_arg)
{
  ak_loop_options opts = {0};
  if (!ext_arg)
    opts.flags = AK_LOOP_NO_EXT_ARG;
  ak_loop *loop = t_loop_new_opts(&opts);
  ak_features ft;
  ak_loop_features(loop, &ft);
  if (!ext_arg)
    assert_false(ft.ext_arg); /* the option reached the wait path */
  return loop;
}

static void run_init(timer_run *run, ak_loop *loop, timer_kind kind)
{
  memset(run, 0, sizeof(*run));
  run->loop = loop;
  run->kind = kind;
  assert_int_equal(pipe(run->pipefd), 0);
  t_sem_init(&run->done, 0);
}

static void run_fini(timer_run *run)
{
  close(run->pipefd[0]);
  close(run->pipefd[1]);
  t_sem_destroy(&run->done);
}

/* ---- Entry path 1: a then-step on the loop adopts the timer ------------------ */

static int64_t step_adopts_timer(ak_future *input, void *arg, ak_future *self)
{
  (void)input;
  return ak_future_adopt(self, start_timer(arg));
}

static void then_step_case(bool ext_arg, timer_kind kind)
{
  ak_loop *loop = loop_for(ext_arg);
  timer_run run;
  run_init(&run, loop, kind);
  ak_future *p0 = ak_future_new(loop);
  ak_future *step = ak_then(p0, step_adopts_timer, &run, NULL);
  ak_future_set(p0, 0, NULL, NULL);
  /* The step runs inside this wait's first iteration and makes the timer
   * there; the wait must not block past it. Bounded: a hang fails. */
  int rc = ak_future_wait(step, BOUND);
  if (rc == AK_EWAITTIMEOUT)
    fail_msg("%s (ext_arg %d): the step's timer did not bound the wait", kind_name[kind],
             ext_arg);
  assert_int_equal(rc, 0);
  run.fired = ak_now_ns();
  run.state = ak_future_state(step);
  run.result = ak_future_result(step);
  expect_fired(&run);
  ak_future_release(step);
  ak_future_release(p0);
  ak_loop_free(loop);
  run_fini(&run);
}

static void test_timer_from_then_step_bounds_wait(void **state)
{
  (void)state;
  for (int ext = 1; ext >= 0; ext--)
    for (int k = 0; k < TK_COUNT; k++)
      then_step_case(ext, (timer_kind)k);
}

/* ---- Entry path 2: a post from the owner thread makes the timer -------------- */

static void post_starts_timer(void *arg)
{
  timer_run *run = arg;
  ak_future *f = start_timer(run);
  assert_int_equal(ak_future_on_settle(f, record_fired, run), 0);
  ak_future_release(f);
}

/* Stops the loop if the timer has not fired within BOUND: the test then
 * fails on its assertions instead of hanging. */
typedef struct watchdog {
  ak_loop *loop;
  t_sem *done;
  bool expired;
} watchdog;

static void *watch(void *arg)
{
  watchdog *w = arg;
  if (!t_sem_timedwait(w->done, BOUND)) {
    w->expired = true;
    ak_loop_stop(w->loop);
  } else {
    t_sem_post(w->done); /* leave it posted for the test */
  }
  return NULL;
}

static void owner_post_case(bool ext_arg, timer_kind kind)
{
  ak_loop *loop = loop_for(ext_arg);
  timer_run run;
  run_init(&run, loop, kind);
  watchdog w = {.loop = loop, .done = &run.done};
  pthread_t th = t_thread_start(watch, &w, 0);
  assert_int_equal(ak_loop_post(loop, post_starts_timer, &run), 0);
  int alive = ak_loop_run(loop, AK_RUN_DEFAULT);
  t_thread_join(th);
  if (w.expired)
    fail_msg("%s (ext_arg %d): a timer made in a post did not bound the wait", kind_name[kind],
             ext_arg);
  assert_int_equal(alive, 0);
  expect_fired(&run);
  ak_loop_free(loop);
  run_fini(&run);
}

static void test_timer_from_owner_post_bounds_wait(void **state)
{
  (void)state;
  for (int ext = 1; ext >= 0; ext--)
    for (int k = 0; k < TK_COUNT; k++)
      owner_post_case(ext, (timer_kind)k);
}

/* ---- Entry path 3: a post from another thread makes the timer ---------------- */

typedef struct remote {
  timer_run *run;
  t_sem running; /* the loop has started its run */
  t_sem posted;  /* (early) the post is in the inbox */
  bool early;    /* post before the loop runs: drained in the first half of
                    an iteration, before its wait */
  bool expired;
} remote;

static void signal_running(void *arg)
{
  t_sem_post(arg);
}

static void *post_from_thread(void *arg)
{
  remote *r = arg;
  if (r->early) {
    if (ak_loop_post(r->run->loop, post_starts_timer, r->run) != 0)
      return NULL;
    t_sem_post(&r->posted);
  } else {
    if (!t_sem_wait(&r->running))
      return NULL;
    /* Let the loop go to sleep in the kernel first. */
    usleep(20 * 1000);
    if (ak_loop_post(r->run->loop, post_starts_timer, r->run) != 0)
      return NULL;
  }
  if (!t_sem_timedwait(&r->run->done, BOUND + DELAY)) {
    r->expired = true;
    ak_loop_stop(r->run->loop);
  }
  return NULL;
}

static void remote_post_case(bool ext_arg, timer_kind kind, bool early)
{
  ak_loop *loop = loop_for(ext_arg);
  timer_run run;
  run_init(&run, loop, kind);
  run.remote = true; /* record_fired unholds */
  remote r = {.run = &run, .early = early};
  t_sem_init(&r.running, 0);
  t_sem_init(&r.posted, 0);
  ak_loop_hold(loop);
  assert_int_equal(ak_loop_post(loop, signal_running, &r.running), 0);
  pthread_t th = t_thread_start(post_from_thread, &r, 0);
  if (early)
    assert_true(t_sem_wait(&r.posted));
  int alive = ak_loop_run(loop, AK_RUN_DEFAULT);
  t_thread_join(th);
  if (r.expired)
    fail_msg("%s (ext_arg %d): a timer made by a remote post waited for another wakeup",
             kind_name[kind], ext_arg);
  assert_int_equal(alive, 0);
  expect_fired(&run);
  ak_loop_free(loop);
  t_sem_destroy(&r.running);
  t_sem_destroy(&r.posted);
  run_fini(&run);
}

static void test_timer_from_remote_post_bounds_wait(void **state)
{
  (void)state;
  for (int early = 1; early >= 0; early--)
    for (int ext = 1; ext >= 0; ext--)
      for (int k = 0; k < TK_COUNT; k++)
        remote_post_case(ext, (timer_kind)k, early);
}

/* A timer made by a timer callback, and by a settle callback of a pool
 * task, also bounds the next wait (the other ways code runs in an
 * iteration). */
typedef struct nested {
  ak_loop *loop;
  timer_run *run;
} nested;

static void timer_starts_timer(void *arg)
{
  post_starts_timer(arg);
}

static int64_t pool_noop(void *arg, ak_future *self)
{
  (void)arg;
  (void)self;
  return 1;
}

static void task_settled_starts_timer(ak_future *task, void *arg)
{
  (void)task;
  post_starts_timer(arg);
}

static void test_timer_from_timer_and_pool_callbacks(void **state)
{
  (void)state;
  for (int via_pool = 0; via_pool < 2; via_pool++) {
    ak_loop *loop = loop_for(true);
    timer_run run;
    run_init(&run, loop, TK_SLEEP);
    watchdog w = {.loop = loop, .done = &run.done};
    pthread_t th = t_thread_start(watch, &w, 0);
    if (via_pool) {
      ak_future *task = ak_pool_submit(ak_loop_pool(loop), pool_noop, NULL);
      assert_int_equal(ak_future_on_settle(task, task_settled_starts_timer, &run), 0);
      ak_future_release(task);
    } else {
      assert_non_null(ak_call_later(loop, 0, timer_starts_timer, &run));
    }
    assert_int_equal(ak_loop_run(loop, AK_RUN_DEFAULT), 0);
    t_thread_join(th);
    assert_false(w.expired);
    expect_fired(&run);
    ak_loop_free(loop);
    run_fini(&run);
  }
}

/* ---- asyncio's call_soon: the next batch, not this one ------------------------ */

typedef struct starve {
  ak_loop *loop;
  uint64_t reposts;        /* runs of the self-reposting callback */
  uint64_t iter_start;     /* stats.iterations when the run began */
  uint64_t read_at;        /* reposts seen when the read completed */
  uint64_t timer_at;       /* reposts seen when the timer fired */
  uint64_t read_iter;      /* iterations taken until the read was served */
  uint64_t timer_iter;
  bool read_done, timer_done;
  int64_t read_res;
} starve;

static uint64_t iterations(ak_loop *loop)
{
  ak_loop_stats st;
  ak_loop_stats_get(loop, &st);
  return st.iterations;
}

static void repost(void *arg)
{
  starve *s = arg;
  s->reposts++;
  /* Bounded: 100,000 runs without the read and the timer is a failure. */
  if ((s->read_done && s->timer_done) || s->reposts > 100000)
    return;
  assert_int_equal(ak_loop_post(s->loop, repost, s), 0);
}

static void read_served(ak_future *f, void *arg)
{
  starve *s = arg;
  s->read_done = true;
  s->read_res = ak_future_result(f);
  s->read_at = s->reposts;
  s->read_iter = iterations(s->loop) - s->iter_start;
}

static void timer_served(void *arg)
{
  starve *s = arg;
  s->timer_done = true;
  s->timer_at = s->reposts;
  s->timer_iter = iterations(s->loop) - s->iter_start;
}

static void test_self_reposting_callback_starves_nothing(void **state)
{
  (void)state;
  ak_loop *loop = t_loop_new();
  starve s = {.loop = loop};
  int fds[2];
  assert_int_equal(pipe(fds), 0);
  assert_int_equal(write(fds[1], "ready", 5), 5); /* the read is ready at once */
  char buf[8];
  s.iter_start = iterations(loop);
  assert_int_equal(ak_loop_post(loop, repost, &s), 0);
  ak_future *r = ak_read(loop, fds[0], buf, sizeof(buf), -1);
  assert_int_equal(ak_future_on_settle(r, read_served, &s), 0);
  assert_non_null(ak_call_later(loop, 0, timer_served, &s)); /* due now */
  assert_int_equal(ak_loop_run(loop, AK_RUN_DEFAULT), 0);
  assert_true(s.read_done);
  assert_true(s.timer_done);
  assert_int_equal(s.read_res, 5);
  /* Within 2 iterations each, so the reposting callback ran at most twice
   * per iteration (once before the wait, once after the reap). */
  assert_in_range(s.read_iter, 0, 2);
  assert_in_range(s.timer_iter, 0, 2);
  assert_in_range(s.read_at, 0, 4);
  assert_in_range(s.timer_at, 0, 4);
  ak_future_release(r);
  ak_loop_free(loop);
  close(fds[0]);
  close(fds[1]);
}

/* A callback's post runs after the batch, never inside the call that made
 * it, and one batch never runs a post made in it. */
typedef struct order {
  ak_loop *loop;
  int log[8];
  int n;
} order;

static void log_two(void *arg)
{
  order *o = arg;
  o->log[o->n++] = 2;
}

static void log_three(void *arg)
{
  order *o = arg;
  o->log[o->n++] = 3;
}

static void log_one_and_post(void *arg)
{
  order *o = arg;
  o->log[o->n++] = 1;
  assert_int_equal(ak_loop_post(o->loop, log_two, o), 0);
  o->log[o->n++] = 11; /* the post has not run inside ak_loop_post */
  assert_non_null(ak_call_later(o->loop, 0, log_three, o)); /* due at once */
}

static void test_post_from_callback_runs_next_batch(void **state)
{
  (void)state;
  ak_loop *loop = t_loop_new();
  order o = {.loop = loop};
  assert_int_equal(ak_loop_post(loop, log_one_and_post, &o), 0);
  /* One NOWAIT iteration runs two batches (before and after the reap,
   * with due timers between): the first runs log_one_and_post, then the
   * timer it made is due, then the second batch runs the post it made. Had
   * the post joined the first batch, it would come before the timer. */
  ak_loop_run(loop, AK_RUN_NOWAIT);
  assert_int_equal(o.n, 4);
  assert_int_equal(o.log[0], 1);
  assert_int_equal(o.log[1], 11);
  assert_int_equal(o.log[2], 3);
  assert_int_equal(o.log[3], 2);
  ak_loop_free(loop);
}

/* ak_loop_stop: callbacks the stopping batch scheduled wait for the next
 * run (asyncio's stop), and none is lost. */
typedef struct stopper {
  ak_loop *loop;
  int after_ran;
} stopper;

static void after_stop(void *arg)
{
  ((stopper *)arg)->after_ran++;
}

static void stop_and_post(void *arg)
{
  stopper *s = arg;
  ak_loop_stop(s->loop);
  assert_int_equal(ak_loop_post(s->loop, after_stop, s), 0);
}

static void test_stop_leaves_scheduled_callbacks_for_next_run(void **state)
{
  (void)state;
  ak_loop *loop = t_loop_new();
  stopper s = {.loop = loop};
  assert_int_equal(ak_loop_post(loop, stop_and_post, &s), 0);
  int alive = ak_loop_run(loop, AK_RUN_DEFAULT);
  assert_int_equal(s.after_ran, 0); /* not in the stopping run */
  assert_true(alive > 0);           /* it is still queued */
  assert_int_equal(ak_loop_run(loop, AK_RUN_DEFAULT), 0);
  assert_int_equal(s.after_ran, 1); /* the next run has it */
  ak_loop_free(loop);
}

/* ---- A callback that waits ---------------------------------------------------- */

/* ak_future_wait on the owner thread runs the loop, also from inside a
 * callback (future.h promises it from any thread). The nested iteration
 * runs the rest of the waiting callback's batch: the outer batch must then
 * end when the callback returns, not walk a list the nested run emptied
 * (it read a NULL node: SEGV before the fix), and each callback runs once. */
typedef struct waiter {
  ak_loop *loop;
  ak_future *awaited;   /* waited for by wait_inside */
  int64_t sleep_ns;     /* > 0: wait_inside waits for ak_sleep instead */
  int wait_rc;
  ak_state awaited_state;
  int depth;            /* nested waits left for wait_inside to make */
  int waits_done;
  int counts[4];        /* runs of count_0 .. count_3 */
} waiter;

static void count_0(void *arg) { ((waiter *)arg)->counts[0]++; }
static void count_1(void *arg) { ((waiter *)arg)->counts[1]++; }
static void count_2(void *arg) { ((waiter *)arg)->counts[2]++; }

static void settle_awaited(void *arg)
{
  waiter *w = arg;
  w->counts[3]++;
  assert_int_equal(ak_future_set(w->awaited, 7, NULL, NULL), 0);
}

static void wait_inside(void *arg)
{
  waiter *w = arg;
  if (w->depth > 0) {
    /* One more level: a callback queued behind this one waits as well. */
    w->depth--;
    assert_int_equal(ak_loop_post(w->loop, wait_inside, w), 0);
    ak_future *s = ak_sleep(w->loop, 2 * T_MS);
    assert_non_null(s);
    assert_int_equal(ak_future_wait(s, T_HANG_NS), 0);
    ak_future_release(s);
    w->waits_done++;
    return;
  }
  ak_future *f = w->awaited;
  if (w->sleep_ns > 0)
    f = ak_sleep(w->loop, w->sleep_ns);
  assert_non_null(f);
  w->wait_rc = ak_future_wait(f, T_HANG_NS);
  w->awaited_state = ak_future_state(f);
  if (f != w->awaited)
    ak_future_release(f);
  w->waits_done++;
}

static void test_callback_may_wait(void **state)
{
  (void)state;
  /* A wait for a sleep with callbacks queued behind it: they run (in the
   * nested iteration) exactly once, and the loop goes on afterwards. */
  ak_loop *loop = t_loop_new();
  waiter w = {.loop = loop, .sleep_ns = 2 * T_MS};
  assert_int_equal(ak_loop_post(loop, wait_inside, &w), 0);
  assert_int_equal(ak_loop_post(loop, count_0, &w), 0);
  assert_int_equal(ak_loop_post(loop, count_1, &w), 0);
  assert_int_equal(ak_loop_run(loop, AK_RUN_DEFAULT), 0);
  assert_int_equal(w.waits_done, 1);
  assert_int_equal(w.wait_rc, 0);
  assert_int_equal(w.awaited_state, AK_DONE);
  assert_int_equal(w.counts[0], 1);
  assert_int_equal(w.counts[1], 1);
  assert_int_equal(ak_loop_post(loop, count_2, &w), 0);
  assert_int_equal(ak_loop_run(loop, AK_RUN_DEFAULT), 0);
  assert_int_equal(w.counts[2], 1);
  ak_loop_free(loop);

  /* A wait for a future that a callback queued behind the waiting one
   * settles: the nested iteration must run it (else the wait never ends). */
  loop = t_loop_new();
  w = (waiter){.loop = loop, .awaited = ak_future_new(loop)};
  assert_non_null(w.awaited);
  assert_int_equal(ak_loop_post(loop, wait_inside, &w), 0);
  assert_int_equal(ak_loop_post(loop, settle_awaited, &w), 0);
  assert_int_equal(ak_loop_post(loop, count_0, &w), 0);
  assert_int_equal(ak_loop_run(loop, AK_RUN_DEFAULT), 0);
  assert_int_equal(w.wait_rc, 0);
  assert_int_equal(w.awaited_state, AK_DONE);
  assert_int_equal(ak_future_result(w.awaited), 7);
  assert_int_equal(w.counts[3], 1);
  assert_int_equal(w.counts[0], 1);
  ak_future_release(w.awaited);
  ak_loop_free(loop);

  /* Waits nested three deep, each from a callback the one before queued,
   * with other callbacks behind them. */
  loop = t_loop_new();
  w = (waiter){.loop = loop, .sleep_ns = 1 * T_MS, .depth = 2};
  assert_int_equal(ak_loop_post(loop, wait_inside, &w), 0);
  assert_int_equal(ak_loop_post(loop, count_0, &w), 0);
  assert_int_equal(ak_loop_post(loop, count_1, &w), 0);
  assert_int_equal(ak_loop_run(loop, AK_RUN_DEFAULT), 0);
  assert_int_equal(w.waits_done, 3);
  assert_int_equal(w.wait_rc, 0);
  assert_int_equal(w.counts[0], 1);
  assert_int_equal(w.counts[1], 1);
  ak_loop_free(loop);
}

/* ---- Iterations with only ready work ---------------------------------------- */

enum { READY_STEPS = 2000 };

static int64_t add_one(ak_future *input, void *arg, ak_future *self)
{
  (void)arg;
  (void)self;
  return ak_future_result(input) + 1;
}

#if !defined(__SANITIZE_THREAD__)
/* In a child: the loop's syscalls that an iteration could make (entering
 * the ring, a futex wake, the eventfd, epoll) fail with EPERM once the
 * loop is set up; a then-chain READY_STEPS long, set and waited for on the
 * loop's thread, must still run to its end, since an iteration with only
 * ready work has nothing to ask the kernel. Exit 0 when it did. */
static int ready_chain_child(void *arg)
{
  (void)arg;
  ak_loop *loop;
  if (ak_loop_new(&loop, NULL) < 0)
    return 10;
  ak_loop_run(loop, AK_RUN_NOWAIT); /* the wakeup read goes to the kernel now */
  const unsigned nrs[] = {T_NR_URING_ENTER, SYS_futex,      SYS_write,       SYS_read,
                          SYS_epoll_wait,   SYS_epoll_pwait, SYS_epoll_pwait2, SYS_epoll_ctl,
                          SYS_poll,         SYS_ppoll,       SYS_eventfd2};
  if (t_seccomp_deny(nrs, sizeof(nrs) / sizeof(nrs[0]), EPERM) < 0)
    return 11;
  ak_future *first = ak_future_new(loop);
  if (!first)
    return 12;
  ak_future *last = ak_future_ref(first);
  for (int i = 0; i < READY_STEPS; i++) {
    ak_future *next = ak_then(last, add_one, NULL, NULL);
    if (!next)
      return 13;
    ak_future_release(last);
    last = next;
  }
  if (ak_future_set(first, 0, NULL, NULL) != 0)
    return 14;
  int rc = ak_future_wait(last, 10000 * T_MS);
  if (rc != 0)
    return rc == AK_EWAITTIMEOUT ? 15 : 16; /* 16: an iteration entered the kernel */
  if (ak_future_state(last) != AK_DONE || ak_future_result(last) != READY_STEPS)
    return 17;
  ak_loop_stats st;
  ak_loop_stats_get(loop, &st);
  /* Two batches an iteration: about one iteration per two steps. */
  if (st.iterations < READY_STEPS / 2)
    return 18;
  return 0; /* the loop is not freed: its free would need the ring */
}
#endif

static void test_ready_work_makes_no_syscall(void **state)
{
  (void)state;
#if defined(__SANITIZE_THREAD__)
  skip(); /* TSan's runtime makes futex calls of its own */
#else
  assert_int_equal(t_run_in_child(ready_chain_child, NULL), 0);
#endif
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_timer_from_then_step_bounds_wait),
      cmocka_unit_test(test_timer_from_owner_post_bounds_wait),
      cmocka_unit_test(test_timer_from_remote_post_bounds_wait),
      cmocka_unit_test(test_timer_from_timer_and_pool_callbacks),
      cmocka_unit_test(test_self_reposting_callback_starves_nothing),
      cmocka_unit_test(test_post_from_callback_runs_next_batch),
      cmocka_unit_test(test_stop_leaves_scheduled_callbacks_for_next_run),
      cmocka_unit_test(test_callback_may_wait),
      cmocka_unit_test(test_ready_work_makes_no_syscall),
  };
  t_require_uring();
  return cmocka_run_group_tests(tests, NULL, NULL);
}
