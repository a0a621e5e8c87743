/* test_map.c: ak_map, a bounded map: never more than K in flight, one join
 * over the items, fail-fast and cancel reaching the items in flight and
 * settling after them, loopless (any thread) and on a loop, and a long run
 * of items that settle at once in constant stack. */
#define _GNU_SOURCE
#include "helpers.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* ---- Items the test settles by hand ---------------------------------------------------- */

enum { MAXN = 16 };

typedef struct manual {
  ak_future *items[MAXN]; /* the test's own references */
  int started;
  int null_at;            /* start returns NULL for this i (or -1) */
} manual;

static ak_future *start_manual(void *arg, size_t i)
{
  manual *m = arg;
  m->started++;
  if ((int)i == m->null_at)
    return NULL;
  m->items[i] = ak_future_new(NULL);
  return ak_future_ref(m->items[i]);
}

static void manual_release(manual *m)
{
  for (int i = 0; i < MAXN; i++)
    ak_future_release(m->items[i]);
}

static void test_map_never_more_than_limit(void **state)
{
  (void)state;
  manual m = {.null_at = -1};
  ak_future *map = ak_map(10, 3, start_manual, &m, 0);
  assert_non_null(map);
  assert_int_equal(ak_join_count(map), 10);
  assert_int_equal(m.started, 3); /* only three at first */
  assert_ptr_equal(ak_join_input(map, 2), m.items[2]);
  assert_null(ak_join_input(map, 3)); /* not started */
  assert_null(ak_join_input(map, 10));
  for (int i = 0; i < 10; i++) {
    /* Settling one starts the next (here, on this thread). */
    if (i == 4)
      ak_future_fail(m.items[i], -EIO, NULL); /* counted, not stopping */
    else
      ak_future_set(m.items[i], i, NULL, NULL);
    int expect = i + 4 < 10 ? i + 4 : 10;
    assert_int_equal(m.started, expect);
    int pending = 0;
    for (int k = 0; k < m.started; k++)
      pending += !ak_future_is_set(m.items[k]);
    assert_true(pending <= 3);
    assert_int_equal(ak_future_is_set(map), i == 9);
  }
  assert_int_equal(ak_future_state(map), AK_DONE);
  assert_int_equal(ak_future_result(map), 9); /* one failed */
  for (int i = 0; i < 10; i++)
    assert_ptr_equal(ak_join_input(map, (size_t)i), m.items[i]);
  manual_release(&m);
  ak_future_release(map);
}

static void test_map_fail_fast_cancels_in_flight(void **state)
{
  (void)state;
  manual m = {.null_at = -1};
  ak_future *map = ak_map(10, 3, start_manual, &m, AK_JOIN_FAIL_FAST);
  ak_future_set(m.items[0], 0, NULL, NULL); /* starts item 3 */
  assert_int_equal(m.started, 4);
  ak_future_fail(m.items[2], -EACCES, "denied");
  assert_int_equal(m.started, 4); /* no more starts */
  assert_int_equal(ak_future_state(m.items[1]), AK_CANCELLED);
  assert_int_equal(ak_future_state(m.items[3]), AK_CANCELLED);
  assert_int_equal(ak_future_state(map), AK_FAILED);
  assert_int_equal(ak_future_result(map), -EACCES);
  assert_string_equal(ak_future_detail(map), "denied");
  assert_null(ak_join_input(map, 4));
  manual_release(&m);
  ak_future_release(map);
}

static void test_map_start_returning_null(void **state)
{
  (void)state;
  manual m = {.null_at = 1};
  ak_future *map = ak_map(3, 2, start_manual, &m, 0);
  assert_int_equal(m.started, 3); /* the NULL freed its slot at once */
  ak_future_set(m.items[0], 0, NULL, NULL);
  ak_future_set(m.items[2], 0, NULL, NULL);
  assert_int_equal(ak_future_result(map), 2);
  assert_null(ak_join_input(map, 1));
  manual_release(&m);
  ak_future_release(map);

  memset(&m, 0, sizeof(m));
  m.null_at = 0;
  map = ak_map(3, 2, start_manual, &m, AK_JOIN_FAIL_FAST);
  assert_int_equal(m.started, 1);
  assert_int_equal(ak_future_state(map), AK_FAILED);
  assert_int_equal(ak_future_result(map), -ENOMEM);
  manual_release(&m);
  ak_future_release(map);
}

static void test_map_arguments(void **state)
{
  (void)state;
  manual m = {.null_at = -1};
  assert_null(ak_map(3, 0, start_manual, &m, 0));
  assert_null(ak_map(3, 1, NULL, &m, 0));
  ak_future *map = ak_map(0, 4, start_manual, &m, 0);
  assert_int_equal(ak_future_state(map), AK_DONE);
  assert_int_equal(ak_future_result(map), 0);
  assert_int_equal(m.started, 0);
  ak_future_release(map);
}

/* ---- Pool tasks: items settle on other threads ------------------------------------------- */

typedef struct concurrency {
  ak_pool *pool;
  _Atomic int running;
  _Atomic int max_running;
  _Atomic int started;
  t_sem release_one;   /* when not cooperative: each task waits for a post */
  bool wait_for_post;
  t_sem *task_started; /* posted by each task as it starts, if set */
} concurrency;

static int64_t measured_task(void *arg, ak_future *self)
{
  (void)self;
  concurrency *c = arg;
  int now = atomic_fetch_add(&c->running, 1) + 1;
  int max = atomic_load(&c->max_running);
  while (now > max && !atomic_compare_exchange_weak(&c->max_running, &max, now))
    ;
  if (c->task_started)
    t_sem_post(c->task_started);
  if (c->wait_for_post)
    t_sem_wait(&c->release_one);
  else
    usleep(1000);
  atomic_fetch_sub(&c->running, 1);
  return 0;
}

static ak_future *start_task(void *arg, size_t i)
{
  (void)i;
  concurrency *c = arg;
  atomic_fetch_add(&c->started, 1);
  return ak_pool_submit(c->pool, measured_task, c);
}

static void test_map_pool_tasks_any_thread(void **state)
{
  (void)state;
  concurrency c = {.pool = ak_pool_new(8)};
  ak_future *map = ak_map(60, 4, start_task, &c, 0);
  assert_null(ak_future_loop(map));
  assert_int_equal(ak_future_get(map, T_HANG_NS, NULL), 60);
  assert_int_equal(atomic_load(&c.started), 60);
  assert_true(atomic_load(&c.max_running) <= 4); /* 8 workers, 4 allowed */
  assert_true(atomic_load(&c.max_running) >= 1);
  for (size_t i = 0; i < 60; i++)
    assert_int_equal(ak_future_state(ak_join_input(map, i)), AK_DONE);
  ak_future_release(map);
  ak_pool_free(c.pool);
}

/* Cancelling the map: running tasks cannot stop, so the map waits for them;
 * nothing new starts. */
static void test_map_cancel_waits_for_running(void **state)
{
  (void)state;
  t_sem started;
  t_sem_init(&started, 0);
  concurrency c = {.pool = ak_pool_new(2), .wait_for_post = true, .task_started = &started};
  t_sem_init(&c.release_one, 0);
  ak_future *map = ak_map(10, 2, start_task, &c, 0);
  assert_true(t_sem_wait(&started));
  assert_true(t_sem_wait(&started)); /* both running */
  assert_int_equal(ak_future_cancel(map), 0);
  assert_int_equal(ak_future_wait(map, 20 * T_MS), AK_EWAITTIMEOUT);
  t_sem_post(&c.release_one);
  t_sem_post(&c.release_one);
  assert_int_equal(ak_future_wait(map, T_HANG_NS), 0);
  assert_int_equal(ak_future_state(map), AK_CANCELLED);
  assert_int_equal(atomic_load(&c.started), 2);
  assert_true(ak_future_is_set(ak_join_input(map, 0)));
  assert_true(ak_future_is_set(ak_join_input(map, 1)));
  assert_null(ak_join_input(map, 2));
  ak_future_release(map);
  ak_pool_free(c.pool);
  t_sem_destroy(&c.release_one);
  t_sem_destroy(&started);
}

/* ---- On a loop: ring ops ------------------------------------------------------------------ */

typedef struct loop_items {
  ak_loop *loop;
  int sv[4][2];
  char buf[4][8];
  bool off_thread; /* start ran off the loop's thread */
  int started;
} loop_items;

static ak_future *start_sleep(void *arg, size_t i)
{
  loop_items *l = arg;
  l->started++;
  if (!ak_loop_is_owner(l->loop))
    l->off_thread = true;
  return ak_sleep(l->loop, (int64_t)(i % 3 + 1) * T_MS);
}

static void test_map_on_loop(void **state)
{
  (void)state;
  ak_loop *loop = t_loop_new();
  loop_items l = {.loop = loop};
  ak_future *map = ak_map(12, 3, start_sleep, &l, 0);
  assert_ptr_equal(ak_future_loop(map), loop);
  assert_int_equal(l.started, 3);
  assert_int_equal(ak_future_get(map, T_HANG_NS, NULL), 12); /* runs the loop */
  assert_false(l.off_thread);
  assert_int_equal(l.started, 12);
  ak_future_release(map);
  ak_loop_free(loop);
}

static ak_future *start_recv(void *arg, size_t i)
{
  loop_items *l = arg;
  l->started++;
  return ak_recv(l->loop, l->sv[i][0], l->buf[i], sizeof(l->buf[i]), 0);
}

typedef struct settle_view {
  ak_future *map;
  bool items_set;
  int runs;
} settle_view;

static void note_items(ak_future *map, void *arg)
{
  settle_view *v = arg;
  v->items_set = true;
  for (size_t i = 0; i < ak_join_count(map); i++) {
    ak_future *item = ak_join_input(map, i);
    v->items_set = v->items_set && (!item || ak_future_is_set(item));
  }
  v->runs++;
}

/* Cancel reaches the recvs in flight; the map settles after them. */
static void test_map_cancel_reaches_ops_in_flight(void **state)
{
  (void)state;
  ak_loop *loop = t_loop_new();
  loop_items l = {.loop = loop};
  for (int i = 0; i < 4; i++)
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, l.sv[i]), 0);
  ak_future *map = ak_map(4, 2, start_recv, &l, 0);
  assert_true(ak_loop_run(loop, AK_RUN_NOWAIT) >= 0); /* the recvs are in the kernel */
  settle_view v = {.map = map};
  assert_int_equal(ak_future_on_settle(map, note_items, &v), 0);
  assert_int_equal(ak_future_cancel(map), 0);
  assert_int_equal(ak_future_wait(map, T_HANG_NS), 0);
  assert_int_equal(ak_future_state(map), AK_CANCELLED);
  ak_future *s = ak_sleep(loop, T_MS); /* the callback runs from the queue */
  assert_int_equal(ak_future_wait(s, T_HANG_NS), 0);
  ak_future_release(s);
  assert_int_equal(v.runs, 1);
  assert_true(v.items_set);
  assert_int_equal(l.started, 2);
  assert_int_equal(ak_future_state(ak_join_input(map, 0)), AK_CANCELLED);
  assert_int_equal(ak_future_state(ak_join_input(map, 1)), AK_CANCELLED);
  ak_future_release(map);
  for (int i = 0; i < 4; i++) {
    close(l.sv[i][0]);
    close(l.sv[i][1]);
  }
  ak_loop_free(loop);
}

/* Fail-fast on a loop: an EBADF recv ends the map once the other is back. */
static ak_future *start_bad_second(void *arg, size_t i)
{
  loop_items *l = arg;
  l->started++;
  int fd = i == 1 ? -1 : l->sv[i][0];
  return ak_recv(l->loop, fd, l->buf[i], sizeof(l->buf[i]), 0);
}

static void test_map_fail_fast_on_loop(void **state)
{
  (void)state;
  ak_loop *loop = t_loop_new();
  loop_items l = {.loop = loop};
  for (int i = 0; i < 4; i++)
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, l.sv[i]), 0);
  ak_future *map = ak_map(4, 2, start_bad_second, &l, AK_JOIN_FAIL_FAST);
  assert_int_equal(ak_future_get(map, T_HANG_NS, NULL), -EBADF);
  assert_true(ak_future_is_set(ak_join_input(map, 0)));
  assert_int_equal(ak_future_state(ak_join_input(map, 0)), AK_CANCELLED);
  assert_int_equal(l.started, 2);
  ak_future_release(map);
  for (int i = 0; i < 4; i++) {
    close(l.sv[i][0]);
    close(l.sv[i][1]);
  }
  ak_loop_free(loop);
}

/* ---- Many items that settle at once: constant stack ---------------------------------------- */

enum { MANY = 200000 };

static ak_future *start_settled(void *arg, size_t i)
{
  (void)arg;
  ak_future *f = ak_future_new(NULL);
  ak_future_set(f, (int64_t)i, NULL, NULL);
  return f;
}

static void *many_items(void *arg)
{
  (void)arg;
  ak_future *map = ak_map(MANY, 4, start_settled, NULL, 0);
  bool ok = map && ak_future_state(map) == AK_DONE && ak_future_result(map) == MANY &&
            ak_future_result(ak_join_input(map, MANY - 1)) == MANY - 1;
  ak_future_release(map);
  return ok ? (void *)1 : NULL;
}

static void test_map_many_settled_items_constant_stack(void **state)
{
  (void)state;
  pthread_t t = t_thread_start(many_items, NULL, 128 * 1024);
  assert_ptr_equal(t_thread_join(t), (void *)1);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_map_never_more_than_limit),
      cmocka_unit_test(test_map_fail_fast_cancels_in_flight),
      cmocka_unit_test(test_map_start_returning_null),
      cmocka_unit_test(test_map_arguments),
      cmocka_unit_test(test_map_pool_tasks_any_thread),
      cmocka_unit_test(test_map_cancel_waits_for_running),
      cmocka_unit_test(test_map_on_loop),
      cmocka_unit_test(test_map_cancel_reaches_ops_in_flight),
      cmocka_unit_test(test_map_fail_fast_on_loop),
      cmocka_unit_test(test_map_many_settled_items_constant_stack),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
