/* test_deadline.c: combinators that cancel their inputs, from the caller's
 * side: ak_future_timeout settles only once its input has (the buffer is the
 * caller's again), with -ETIMEDOUT when the deadline ended it, on every path
 * (linked kernel timeout, loop timer, timer thread, an op run on the pool);
 * joins that cancel (fail-fast, cancel-rest, cancel), then-chains and
 * dataflow keep the same rule. */
#define _GNU_SOURCE
#include "helpers.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define BUF_LEN 64
#define SENTINEL 0xA5

/* A peer that writes `len` bytes to fd once `delay_ns` have passed. */
typedef struct late_writer {
  int fd;
  int64_t delay_ns;
  const char *data;
  size_t len;
  pthread_t thread;
} late_writer;

static void *late_write_main(void *arg)
{
  late_writer *w = arg;
  struct timespec ts = {.tv_sec = w->delay_ns / T_SEC, .tv_nsec = w->delay_ns % T_SEC};
  nanosleep(&ts, NULL);
  ssize_t n = send(w->fd, w->data, w->len, MSG_NOSIGNAL);
  (void)n; /* checked by the reader */
  return NULL;
}

static void late_write_start(late_writer *w, int fd, int64_t delay_ns, const char *data)
{
  w->fd = fd;
  w->delay_ns = delay_ns;
  w->data = data;
  w->len = strlen(data);
  w->thread = t_thread_start(late_write_main, w, 0);
}

static void pair(int sv[2])
{
  assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
}

/* What the deadline's first callback saw of its input. */
typedef struct settle_view {
  ak_future *input;
  bool input_was_set;
  int runs;
} settle_view;

static void note_input_state(ak_future *f, void *arg)
{
  (void)f;
  settle_view *v = arg;
  v->input_was_set = ak_future_is_set(v->input);
  v->runs++;
}

static bool all_sentinel(const unsigned char *buf, size_t len)
{
  for (size_t i = 0; i < len; i++)
    if (buf[i] != SENTINEL)
      return false;
  return true;
}

/* Runs the loop for about ns (a sleep future), so late completions arrive. */
static void run_for(ak_loop *loop, int64_t ns)
{
  ak_future *s = ak_sleep(loop, ns);
  assert_int_equal(ak_future_wait(s, T_HANG_NS), 0);
  ak_future_release(s);
}

/* The next recv gets the data the timed-out recv did not take: nothing was
 * consumed into a buffer the caller had given up. */
static void expect_next_recv(ak_loop *loop, int fd, const char *want)
{
  char buf[BUF_LEN] = {0};
  ak_future *r = ak_recv(loop, fd, buf, sizeof(buf), 0);
  assert_int_equal(ak_future_get(r, T_HANG_NS, NULL), (int64_t)strlen(want));
  assert_memory_equal(buf, want, strlen(want));
  ak_future_release(r);
}

/* One recv timing out while the peer's data arrives just after the
 * deadline. submit_first: the recv reaches the kernel before the deadline
 * is set (the loop timer path on io_uring) rather than with it (a linked
 * timeout). After the deadline future settles the buffer is filled with a
 * sentinel, the peer's bytes arrive, and the sentinel must still be there. */
static void recv_times_out(ak_loop *loop, bool submit_first)
{
  int sv[2];
  pair(sv);
  unsigned char *buf = malloc(BUF_LEN);
  memset(buf, 0, BUF_LEN);
  ak_future *r = ak_recv(loop, sv[0], buf, BUF_LEN, 0);
  if (submit_first)
    assert_true(ak_loop_run(loop, AK_RUN_NOWAIT) >= 0); /* the recv is in the kernel */
  int64_t t0 = ak_now_ns();
  ak_future *d = ak_future_timeout(r, 30 * T_MS);
  settle_view v = {.input = r};
  assert_int_equal(ak_future_on_settle(d, note_input_state, &v), 0);
  late_writer w;
  late_write_start(&w, sv[1], 40 * T_MS, "late");
  assert_int_equal(ak_future_wait(d, T_HANG_NS), 0);
  assert_true(ak_now_ns() - t0 >= 30 * T_MS);
  assert_true(ak_future_is_set(r)); /* at once, from the caller's side */
  if (v.runs == 0)
    run_for(loop, T_MS); /* the callback runs in the next batch */
  assert_int_equal(v.runs, 1);
  assert_true(v.input_was_set); /* and from the deadline's own callback */
  /* The deadline caused it (the data came later): -ETIMEDOUT. A recv the
   * data reached before the cancel did gives the bytes instead. */
  if (ak_future_state(r) == AK_DONE) {
    assert_int_equal(ak_future_result(d), 4);
    assert_memory_equal(buf, "late", 4);
  } else {
    assert_int_equal(ak_future_state(d), AK_FAILED);
    assert_int_equal(ak_future_result(d), -ETIMEDOUT);
  }
  bool timed_out = ak_future_result(d) == -ETIMEDOUT;
  /* The buffer is the caller's again: whatever the peer sends now must not
   * reach it. */
  memset(buf, SENTINEL, BUF_LEN);
  t_thread_join(w.thread);
  run_for(loop, 20 * T_MS);
  assert_true(all_sentinel(buf, BUF_LEN));
  free(buf);
  if (timed_out)
    expect_next_recv(loop, sv[0], "late");
  ak_future_release(d);
  ak_future_release(r);
  close(sv[0]);
  close(sv[1]);
}

static void test_recv_deadline_with_submit(void **state)
{
  (void)state;
  ak_loop *loop = t_loop_new();
  recv_times_out(loop, false);
  ak_loop_free(loop);
}

static void test_recv_deadline_after_submit(void **state)
{
  (void)state;
  ak_loop *loop = t_loop_new();
  recv_times_out(loop, true);
  ak_loop_free(loop);
}

/* Whether a thread of this process sits in recv on fd (a pool worker that
 * took the op): /proc/self/task/N/syscall gives the syscall number and its
 * arguments in hex. Where the kernel does not show them, true: the caller
 * then relies on the worker having started soon enough. */
static bool thread_in_recv(void *arg)
{
  long fd = *(int *)arg;
  DIR *dir = opendir("/proc/self/task");
  if (!dir)
    return true;
  bool found = false, readable = false;
  for (struct dirent *e; !found && (e = readdir(dir)) != NULL;) {
    if (e->d_name[0] == '.')
      continue;
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/self/task/%.20s/syscall", e->d_name);
    FILE *f = fopen(path, "r");
    if (!f)
      continue;
    long nr, a0;
    if (fgets(line, sizeof line, f)) {
      readable = true;
      found = sscanf(line, "%ld %lx", &nr, &a0) == 2 && a0 == fd &&
              (nr == SYS_recvfrom || nr == SYS_recvmsg);
    }
    fclose(f);
  }
  closedir(dir);
  return found || !readable;
}

/* A recv the loop runs on the pool (a blocking recv that no cancel can
 * interrupt): the deadline must wait for the peer's late bytes, and
 * report them, rather than hand back a buffer a worker is still inside. */
static void test_pool_recv_deadline_waits_for_the_op(void **state)
{
  (void)state;
  ak_loop_options opts = {.flags = AK_LOOP_FORCE_POOL};
  ak_loop *loop = t_loop_new_opts(&opts);
  int sv[2];
  pair(sv);
  unsigned char *buf = malloc(BUF_LEN);
  memset(buf, 0, BUF_LEN);
  ak_future *r = ak_recv(loop, sv[0], buf, BUF_LEN, 0);
  /* A worker is inside the recv before the deadline is made: on a loaded
   * machine it may start later than 20 ms, and an op cancelled before it
   * starts never runs (the deadline then settles at once, rightly). */
  assert_true(t_spin_until(thread_in_recv, &sv[0]));
  int64_t t0 = ak_now_ns();
  ak_future *d = ak_future_timeout(r, 20 * T_MS);
  settle_view v = {.input = r};
  assert_int_equal(ak_future_on_settle(d, note_input_state, &v), 0);
  late_writer w;
  late_write_start(&w, sv[1], 120 * T_MS, "after");
  assert_int_equal(ak_future_wait(d, T_HANG_NS), 0);
  /* Not at the deadline: when the worker's recv returned. */
  assert_true(ak_now_ns() - t0 >= 100 * T_MS);
  assert_true(ak_future_is_set(r));
  assert_int_equal(ak_future_state(d), AK_DONE); /* the bytes are not lost */
  assert_int_equal(ak_future_result(d), 5);
  assert_memory_equal(buf, "after", 5);
  free(buf);
  t_thread_join(w.thread);
  run_for(loop, 10 * T_MS);
  assert_int_equal(v.runs, 1);
  assert_true(v.input_was_set);
  ak_future_release(d);
  ak_future_release(r);
  close(sv[0]);
  close(sv[1]);
  ak_loop_free(loop);
}

/* ---- The timer thread (futures with no loop) ------------------------------------ */

typedef struct slow_copy {
  t_sem go;            /* posted after the deadline */
  unsigned char *dst;  /* written by the task once go is posted */
  bool cooperative;    /* return -ECANCELED when cancel was requested */
  t_sem *started;      /* posted when the task starts, if not NULL */
} slow_copy;

static int64_t slow_copy_task(void *arg, ak_future *self)
{
  slow_copy *c = arg;
  if (c->started)
    t_sem_post(c->started);
  if (!t_sem_wait(&c->go))
    return -EDEADLK;
  if (c->cooperative && ak_future_cancel_requested(self))
    return -ECANCELED;
  memcpy(c->dst, "task", 4);
  return 4;
}

static bool cancel_requested(void *task) { return ak_future_cancel_requested(task); }

static void loopless_deadline(bool cooperative)
{
  ak_pool *pool = ak_pool_new(1);
  t_sem started;
  t_sem_init(&started, 0);
  slow_copy c = {.dst = calloc(1, BUF_LEN), .cooperative = cooperative, .started = &started};
  t_sem_init(&c.go, 0);
  ak_future *task = ak_pool_submit(pool, slow_copy_task, &c);
  /* Running before the deadline is made: on a loaded machine the worker may
   * start later than 10 ms, and a task cancelled before it starts never
   * runs (that settles the deadline at once, a different promise). */
  assert_true(t_sem_wait(&started));
  ak_future *d = ak_future_timeout(task, 10 * T_MS);
  assert_null(ak_future_loop(d));
  /* The timer fires at 10 ms and cancels the task, which runs on until
   * it is let go: the deadline stays unsettled for as long as we look. */
  assert_true(t_spin_until(cancel_requested, task));
  assert_int_equal(ak_future_wait(d, 20 * T_MS), AK_EWAITTIMEOUT);
  assert_false(ak_future_is_set(task));
  t_sem_post(&c.go);
  assert_int_equal(ak_future_wait(d, T_HANG_NS), 0);
  assert_true(ak_future_is_set(task));
  if (cooperative) {
    assert_int_equal(ak_future_state(task), AK_CANCELLED);
    assert_int_equal(ak_future_state(d), AK_FAILED);
    assert_int_equal(ak_future_result(d), -ETIMEDOUT);
    assert_string_equal(ak_future_detail(d), "deadline passed");
  } else {
    assert_int_equal(ak_future_result(d), 4); /* it finished anyway */
    assert_memory_equal(c.dst, "task", 4);
  }
  free(c.dst); /* the task is done with it */
  ak_future_release(d);
  ak_future_release(task);
  ak_pool_free(pool);
  t_sem_destroy(&c.go);
  t_sem_destroy(&started);
}

static void test_loopless_deadline_waits_for_running_task(void **state)
{
  (void)state;
  loopless_deadline(false);
}

static void test_loopless_deadline_cooperative_task(void **state)
{
  (void)state;
  loopless_deadline(true);
}

/* A deadline made on another thread for a loop future: the timer thread
 * fires it, the loop's thread settles it. */
typedef struct remote_deadline {
  ak_future *input;
  ak_future *d;
  t_sem made;
} remote_deadline;

static void *make_remote_deadline(void *arg)
{
  remote_deadline *rd = arg;
  rd->d = ak_future_timeout(rd->input, 20 * T_MS);
  t_sem_post(&rd->made);
  return NULL;
}

static void test_deadline_made_off_the_loop_thread(void **state)
{
  (void)state;
  ak_loop *loop = t_loop_new();
  remote_deadline rd = {.input = ak_future_new(loop)};
  t_sem_init(&rd.made, 0);
  ak_loop_hold(loop);
  pthread_t t = t_thread_start(make_remote_deadline, &rd, 0);
  assert_true(t_sem_wait(&rd.made));
  t_thread_join(t);
  ak_loop_unhold(loop);
  assert_ptr_equal(ak_future_loop(rd.d), loop);
  assert_int_equal(ak_future_wait(rd.d, T_HANG_NS), 0);
  assert_int_equal(ak_future_result(rd.d), -ETIMEDOUT);
  assert_int_equal(ak_future_state(rd.input), AK_CANCELLED);
  ak_future_release(rd.d);
  ak_future_release(rd.input);
  t_sem_destroy(&rd.made);
  ak_loop_free(loop);
}

/* Cancelling the deadline future itself gives CANCELLED, not -ETIMEDOUT,
 * even when its timer has fired meanwhile. */
static void test_cancel_after_fire_is_cancelled(void **state)
{
  (void)state;
  ak_pool *pool = ak_pool_new(1);
  t_sem started;
  t_sem_init(&started, 0);
  slow_copy c = {.dst = calloc(1, BUF_LEN), .cooperative = true, .started = &started};
  t_sem_init(&c.go, 0);
  ak_future *task = ak_pool_submit(pool, slow_copy_task, &c);
  assert_true(t_sem_wait(&started)); /* running: the deadline must wait for it */
  ak_future *d = ak_future_timeout(task, 5 * T_MS);
  assert_true(t_spin_until(cancel_requested, task)); /* fired */
  assert_int_equal(ak_future_wait(d, 30 * T_MS), AK_EWAITTIMEOUT); /* waits */
  assert_int_equal(ak_future_cancel(d), 0);
  t_sem_post(&c.go);
  assert_int_equal(ak_future_wait(d, T_HANG_NS), 0);
  assert_int_equal(ak_future_state(d), AK_CANCELLED);
  free(c.dst);
  ak_future_release(d);
  ak_future_release(task);
  ak_pool_free(pool);
  t_sem_destroy(&c.go);
  t_sem_destroy(&started);
}


/* ---- Other combinators that cancel inputs ---------------------------------------- */

/* What a combinator's first callback saw of several inputs. */
typedef struct inputs_view {
  ak_future **inputs;
  size_t n;
  bool all_set;
  int runs;
} inputs_view;

static void note_inputs_state(ak_future *f, void *arg)
{
  (void)f;
  inputs_view *v = arg;
  v->all_set = true;
  for (size_t i = 0; i < v->n; i++)
    v->all_set = v->all_set && ak_future_is_set(v->inputs[i]);
  v->runs++;
}

/* A recv on a socketpair nobody writes to: pending until cancelled. */
typedef struct idle_recv {
  int sv[2];
  unsigned char buf[BUF_LEN];
  ak_future *f;
} idle_recv;

static void idle_recv_start(ak_loop *loop, idle_recv *r, bool submit)
{
  pair(r->sv);
  memset(r->buf, 0, sizeof(r->buf));
  r->f = ak_recv(loop, r->sv[0], r->buf, sizeof(r->buf), 0);
  if (submit)
    assert_true(ak_loop_run(loop, AK_RUN_NOWAIT) >= 0);
}

/* The buffer is the caller's: the peer's bytes now must not reach it. */
static void idle_recv_end(ak_loop *loop, idle_recv *r)
{
  memset(r->buf, SENTINEL, sizeof(r->buf));
  assert_int_equal(send(r->sv[1], "x", 1, MSG_NOSIGNAL), 1);
  run_for(loop, 10 * T_MS);
  assert_true(all_sentinel(r->buf, sizeof(r->buf)));
  ak_future_release(r->f);
  close(r->sv[0]);
  close(r->sv[1]);
}

static void wait_and_check(ak_loop *loop, ak_future *combo, inputs_view *v)
{
  assert_int_equal(ak_future_on_settle(combo, note_inputs_state, v), 0);
  assert_int_equal(ak_future_wait(combo, T_HANG_NS), 0);
  for (size_t i = 0; i < v->n; i++)
    assert_true(ak_future_is_set(v->inputs[i]));
  run_for(loop, T_MS); /* the callback runs from the ready queue */
  assert_int_equal(v->runs, 1);
  assert_true(v->all_set);
}

static void test_join_any_cancel_rest_settles_after_losers(void **state)
{
  (void)state;
  ak_loop *loop = t_loop_new();
  idle_recv a, b;
  idle_recv_start(loop, &a, true);
  idle_recv_start(loop, &b, true);
  ak_future *in[3] = {a.f, ak_sleep(loop, 5 * T_MS), b.f};
  ak_future *j = ak_join_any(in, 3, AK_JOIN_CANCEL_REST);
  inputs_view v = {.inputs = in, .n = 3};
  wait_and_check(loop, j, &v);
  assert_int_equal(ak_future_state(j), AK_DONE);
  assert_int_equal(ak_future_result(j), 1);
  assert_int_equal(ak_future_state(a.f), AK_CANCELLED);
  assert_int_equal(ak_future_state(b.f), AK_CANCELLED);
  idle_recv_end(loop, &a);
  idle_recv_end(loop, &b);
  ak_future_release(in[1]);
  ak_future_release(j);
  ak_loop_free(loop);
}

static void test_join_all_fail_fast_settles_after_the_rest(void **state)
{
  (void)state;
  ak_loop *loop = t_loop_new();
  idle_recv a;
  idle_recv_start(loop, &a, true);
  char junk[8];
  ak_future *in[2] = {a.f, ak_recv(loop, -1, junk, sizeof(junk), 0)}; /* EBADF */
  ak_future *j = ak_join_all(in, 2, AK_JOIN_FAIL_FAST);
  inputs_view v = {.inputs = in, .n = 2};
  wait_and_check(loop, j, &v);
  assert_int_equal(ak_future_state(j), AK_FAILED);
  assert_int_equal(ak_future_result(j), -EBADF); /* the first failure's */
  assert_int_equal(ak_future_state(a.f), AK_CANCELLED);
  idle_recv_end(loop, &a);
  ak_future_release(in[1]);
  ak_future_release(j);
  ak_loop_free(loop);
}

static void test_join_cancel_settles_after_inputs(void **state)
{
  (void)state;
  ak_loop *loop = t_loop_new();
  idle_recv a, b;
  idle_recv_start(loop, &a, true);
  idle_recv_start(loop, &b, false); /* b still in the SQ */
  ak_future *in[2] = {a.f, b.f};
  ak_future *j = ak_join_all(in, 2, 0);
  assert_int_equal(ak_future_cancel(j), 0);
  inputs_view v = {.inputs = in, .n = 2};
  wait_and_check(loop, j, &v);
  assert_int_equal(ak_future_state(j), AK_CANCELLED);
  idle_recv_end(loop, &a);
  idle_recv_end(loop, &b);
  ak_future_release(j);
  ak_loop_free(loop);
}

/* A running pool task in a fail-fast join: the join waits for its return. */
static void test_join_fail_fast_waits_for_running_task(void **state)
{
  (void)state;
  ak_pool *pool = ak_pool_new(1);
  t_sem started;
  t_sem_init(&started, 0);
  slow_copy c = {.dst = calloc(1, BUF_LEN), .started = &started};
  t_sem_init(&c.go, 0);
  ak_future *in[2] = {ak_pool_submit(pool, slow_copy_task, &c), ak_future_new(NULL)};
  ak_future *j = ak_join_all(in, 2, AK_JOIN_FAIL_FAST);
  assert_true(t_sem_wait(&started)); /* running: a cancel cannot stop it */
  ak_future_fail(in[1], -EPIPE, "broken");
  assert_int_equal(ak_future_wait(j, 20 * T_MS), AK_EWAITTIMEOUT); /* the task may still write */
  t_sem_post(&c.go);
  assert_int_equal(ak_future_wait(j, T_HANG_NS), 0);
  assert_true(ak_future_is_set(in[0]));
  assert_int_equal(ak_future_result(j), -EPIPE);
  assert_string_equal(ak_future_detail(j), "broken");
  free(c.dst);
  for (int i = 0; i < 2; i++)
    ak_future_release(in[i]);
  ak_future_release(j);
  ak_pool_free(pool);
  t_sem_destroy(&c.go);
  t_sem_destroy(&started);
}

static int64_t never_runs(ak_future *input, void *arg, ak_future *self)
{
  (void)input;
  (void)self;
  (*(int *)arg)++;
  return 0;
}

static void test_then_cancel_settles_after_input(void **state)
{
  (void)state;
  ak_loop *loop = t_loop_new();
  idle_recv a;
  idle_recv_start(loop, &a, true);
  int runs = 0;
  ak_future *out = ak_then(a.f, never_runs, &runs, NULL);
  assert_int_equal(ak_future_cancel(out), 0);
  ak_future *in[1] = {a.f};
  inputs_view v = {.inputs = in, .n = 1};
  wait_and_check(loop, out, &v);
  assert_int_equal(ak_future_state(out), AK_CANCELLED);
  assert_int_equal(runs, 0);
  idle_recv_end(loop, &a);
  ak_future_release(out);
  ak_loop_free(loop);
}

/* Dataflow cancels nothing: a failed dependency fails the task at once and
 * the other dependencies, the caller's, run on untouched. */
static int64_t count_run(void *arg, ak_future *self)
{
  (void)self;
  atomic_fetch_add((_Atomic int *)arg, 1);
  return 0;
}

static void test_dataflow_leaves_other_deps_alone(void **state)
{
  (void)state;
  ak_pool *pool = ak_pool_new(1);
  ak_future *deps[2] = {ak_future_new(NULL), ak_future_new(NULL)};
  _Atomic int runs = 0;
  ak_future *f = ak_pool_submit_after(pool, count_run, (void *)&runs, deps, 2);
  ak_future_fail(deps[1], -ENOENT, NULL);
  assert_int_equal(ak_future_wait(f, T_HANG_NS), 0);
  assert_int_equal(ak_future_result(f), -ENOENT);
  assert_int_equal(ak_future_state(deps[0]), AK_PENDING); /* not ours to cancel */
  ak_future_set(deps[0], 1, NULL, NULL);
  ak_pool_stop(pool, true);
  assert_int_equal(atomic_load(&runs), 0);
  for (int i = 0; i < 2; i++)
    ak_future_release(deps[i]);
  ak_future_release(f);
  ak_pool_free(pool);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_recv_deadline_with_submit),
      cmocka_unit_test(test_recv_deadline_after_submit),
      cmocka_unit_test(test_pool_recv_deadline_waits_for_the_op),
      cmocka_unit_test(test_loopless_deadline_waits_for_running_task),
      cmocka_unit_test(test_loopless_deadline_cooperative_task),
      cmocka_unit_test(test_deadline_made_off_the_loop_thread),
      cmocka_unit_test(test_cancel_after_fire_is_cancelled),
      cmocka_unit_test(test_join_any_cancel_rest_settles_after_losers),
      cmocka_unit_test(test_join_all_fail_fast_settles_after_the_rest),
      cmocka_unit_test(test_join_cancel_settles_after_inputs),
      cmocka_unit_test(test_join_fail_fast_waits_for_running_task),
      cmocka_unit_test(test_then_cancel_settles_after_input),
      cmocka_unit_test(test_dataflow_leaves_other_deps_alone),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
