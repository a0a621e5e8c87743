/* test_epoll.c: the epoll backend's own promises (docs/backends.md): pipes and sockets wait for readiness without a pool worker, deadlines and cancels settle waiting ops at once, the user's fds stay blocking, fd numbers reused behind the loop's back work, timers and posts bound and end the wait, accept streams take bursts, regular files go to the pool, an op moved to the pool keeps its deadline, freeing drains everything. Every loop here is made with backend = AK_BACKEND_EPOLL, whatever AK_BACKEND says. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "helpers.h"

static ak_loop *epoll_loop(void)
{
  ak_loop_options o = {.backend = AK_BACKEND_EPOLL};
  ak_loop *loop = t_loop_new_opts(&o);
  ak_features ft;
  ak_loop_features(loop, &ft);
  assert_int_equal(ft.backend, AK_BACKEND_EPOLL);
  return loop;
}

static int64_t get(ak_future *f) { return ak_future_get(f, T_HANG_NS, NULL); }

static int64_t get_release(ak_future *f)
{
  int64_t r = get(f);
  ak_future_release(f);
  return r;
}

static unsigned kind(const char *name)
{
  for (unsigned i = 0; i < AK_STATS_KINDS; i++)
    if (ak_op_kind_name(i) && strcmp(ak_op_kind_name(i), name) == 0)
      return i;
  fail_msg("no kind %s", name);
  return 0;
}

static void run_nowait(ak_loop *loop, int times)
{
  for (int i = 0; i < times; i++)
    ak_loop_run(loop, AK_RUN_NOWAIT);
}

static bool is_blocking(int fd) { return (fcntl(fd, F_GETFL) & O_NONBLOCK) == 0; }

/* A read of an empty pipe waits for readiness, not on a pool worker. */
static void test_pipe_read_waits_for_readiness(void **state)
{
  (void)state;
  ak_loop *loop = epoll_loop();
  int p[2];
  t_pipe(p);
  char buf[16] = {0};
  ak_future *r = ak_read(loop, p[0], buf, sizeof(buf), 0);
  run_nowait(loop, 3);
  assert_false(ak_future_is_set(r));
  ak_loop_stats st;
  ak_loop_stats_get(loop, &st);
  assert_int_equal(st.backend, AK_BACKEND_EPOLL);
  assert_int_equal(st.fallbacks[kind("read")], 0);
  assert_true(st.readiness_waits >= 1);
  assert_int_equal(write(p[1], "ready", 5), 5);
  assert_int_equal(get_release(r), 5); /* the offset of a pipe is ignored, as on io_uring */
  assert_memory_equal(buf, "ready", 5);
  close(p[0]);
  close(p[1]);
  ak_loop_free(loop);
}

/* A deadline on a waiting read is the op's own: it fails -ETIMEDOUT no
 * sooner than asked, and bytes written later never reach its buffer. */
static void test_pipe_read_deadline(void **state)
{
  (void)state;
  ak_loop *loop = epoll_loop();
  int p[2];
  t_pipe(p);
  char buf[8];
  memset(buf, 'A', sizeof(buf));
  ak_future *r = ak_read(loop, p[0], buf, sizeof(buf), -1);
  run_nowait(loop, 1);
  int64_t t0 = ak_now_ns();
  ak_future *d = ak_future_timeout(r, 50 * T_MS);
  assert_ptr_equal(d, r);
  assert_int_equal(get(d), -ETIMEDOUT);
  assert_int_equal(ak_future_state(d), AK_FAILED);
  int64_t took = ak_now_ns() - t0;
  assert_true(took >= 50 * T_MS);
  assert_true(took < 10 * T_SEC);
  assert_int_equal(write(p[1], "late", 4), 4);
  run_nowait(loop, 3);
  assert_int_equal(buf[0], 'A');
  ak_future_release(d);
  ak_future_release(r);
  close(p[0]);
  close(p[1]);
  ak_loop_free(loop);
}

/* Cancelling a waiting recv settles it at the next iteration; the bytes
 * sent afterwards go to the next recv, not the cancelled one's buffer. */
static void test_cancel_waiting_recv(void **state)
{
  (void)state;
  ak_loop *loop = epoll_loop();
  int sv[2];
  assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
  char first[8], second[8];
  memset(first, 'A', sizeof(first));
  ak_future *r = ak_recv(loop, sv[0], first, sizeof(first), 0);
  run_nowait(loop, 2);
  ak_future_cancel(r);
  ak_loop_run(loop, AK_RUN_NOWAIT);
  assert_true(ak_future_is_set(r));
  assert_int_equal(ak_future_state(r), AK_CANCELLED);
  ak_future_release(r);
  assert_int_equal(send(sv[1], "next", 4, 0), 4);
  assert_int_equal(get_release(ak_recv(loop, sv[0], second, sizeof(second), 0)), 4);
  assert_memory_equal(second, "next", 4);
  assert_int_equal(first[0], 'A');
  close(sv[0]);
  close(sv[1]);
  ak_loop_free(loop);
}

/* ak_close cancels what waits on the fd, closes it, and the peer sees EOF. */
static void test_close_cancels_waiting_ops(void **state)
{
  (void)state;
  ak_loop *loop = epoll_loop();
  int sv[2];
  assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
  char buf[8];
  ak_future *r = ak_recv(loop, sv[0], buf, sizeof(buf), 0);
  run_nowait(loop, 2);
  assert_int_equal(get_release(ak_close(loop, sv[0])), 0);
  assert_int_equal(get(r), -ECANCELED);
  ak_future_release(r);
  assert_int_equal(recv(sv[1], buf, sizeof(buf), 0), 0); /* EOF: it is closed */
  close(sv[1]);
  ak_loop_free(loop);
}

/* An fd the loop waited on, closed with plain close() and its number given
 * to a new socket, works at once (the old registration is not trusted). */
static void test_fd_number_reused_behind_our_back(void **state)
{
  (void)state;
  ak_loop *loop = epoll_loop();
  for (int round = 0; round < 3; round++) {
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    char buf[8];
    ak_future *r = ak_recv(loop, sv[0], buf, sizeof(buf), 0);
    run_nowait(loop, 2); /* armed in the epoll set */
    ak_future_cancel(r);
    assert_int_equal(get(r), -ECANCELED);
    ak_future_release(r);
    int old = sv[0];
    close(sv[0]);
    close(sv[1]);
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    assert_int_equal(sv[0], old); /* the lowest free number, again */
    r = ak_recv(loop, sv[0], buf, sizeof(buf), 0);
    run_nowait(loop, 2);
    assert_int_equal(send(sv[1], "again", 5, 0), 5);
    assert_int_equal(get_release(r), 5);
    close(sv[0]);
    close(sv[1]);
  }
  /* The same with no iteration between the cancel and the new recv. */
  int sv[2];
  assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
  char buf[8];
  ak_future *r = ak_recv(loop, sv[0], buf, sizeof(buf), 0);
  run_nowait(loop, 2);
  ak_future_cancel(r);
  int old = sv[0];
  close(sv[0]);
  close(sv[1]);
  assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
  assert_int_equal(sv[0], old);
  ak_future *r2 = ak_recv(loop, sv[0], buf, sizeof(buf), 0);
  assert_int_equal(send(sv[1], "fresh", 5, 0), 5);
  assert_int_equal(get_release(r2), 5);
  assert_int_equal(get_release(r), -ECANCELED);
  close(sv[0]);
  close(sv[1]);
  ak_loop_free(loop);
}

/* TCP: connect (refused and accepted), accept, send, recv: the sockets stay
 * blocking throughout (their file description is the user's). */
static void test_tcp_sockets_stay_blocking(void **state)
{
  (void)state;
  ak_loop *loop = epoll_loop();
  int lfd = ak_tcp_listen("127.0.0.1", 0, 16);
  assert_true(lfd >= 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)ak_socket_port(lfd))};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);

  /* A port nobody listens on: refused. */
  int probe = ak_tcp_listen("127.0.0.1", 0, 1);
  struct sockaddr_in dead = a;
  dead.sin_port = htons((uint16_t)ak_socket_port(probe));
  close(probe);
  int c0 = (int)get_release(ak_socket(loop, AF_INET, SOCK_STREAM, 0));
  assert_true(c0 >= 0);
  assert_int_equal(get_release(ak_connect(loop, c0, (struct sockaddr *)&dead, sizeof(dead),
                                          5 * T_SEC)),
                   -ECONNREFUSED);
  assert_true(is_blocking(c0));
  close(c0);

  int c = (int)get_release(ak_socket(loop, AF_INET, SOCK_STREAM, 0));
  ak_future *acc = ak_accept(loop, lfd, NULL, NULL, 0);
  assert_int_equal(get_release(ak_connect(loop, c, (struct sockaddr *)&a, sizeof(a), 5 * T_SEC)), 0);
  int s = (int)get_release(acc);
  assert_true(s >= 0);
  char out[100000], in[100000];
  for (size_t i = 0; i < sizeof(out); i++)
    out[i] = (char)(i * 7);
  ak_future *rf = ak_recv(loop, s, in, sizeof(in), MSG_WAITALL); /* gathers every byte */
  assert_int_equal(get_release(ak_send_all(loop, c, out, sizeof(out), 0)), (int64_t)sizeof(out));
  assert_int_equal(get_release(rf), (int64_t)sizeof(in));
  assert_memory_equal(in, out, sizeof(out));
  assert_true(is_blocking(c));
  assert_true(is_blocking(s));
  assert_true(is_blocking(lfd));
  close(c);
  close(s);
  close(lfd);
  ak_loop_free(loop);
}

/* A regular file is read on the pool: it is never "not ready". */
static void test_regular_file_on_pool(void **state)
{
  (void)state;
  ak_loop *loop = epoll_loop();
  int fd = t_tmpfile(O_RDWR);
  assert_int_equal(pwrite(fd, "file bytes", 10, 0), 10);
  char buf[16] = {0};
  assert_int_equal(get_release(ak_read(loop, fd, buf, sizeof(buf), 5)), 5);
  assert_memory_equal(buf, "bytes", 5);
  ak_loop_stats st;
  ak_loop_stats_get(loop, &st);
  assert_int_equal(st.fallbacks[kind("read")], 1);
  close(fd);
  ak_loop_free(loop);
}

/* The loop's timers bound epoll_wait: a sleep ends a wait that only an
 * empty pipe's read would otherwise end. ak_timeout and ak_nop work. */
static void test_timers_bound_the_wait(void **state)
{
  (void)state;
  ak_loop *loop = epoll_loop();
  int p[2];
  t_pipe(p);
  char buf[4];
  ak_future *r = ak_read(loop, p[0], buf, sizeof(buf), -1);
  int64_t t0 = ak_now_ns();
  ak_future *sl = ak_sleep(loop, 30 * T_MS);
  ak_future *to = ak_timeout(loop, 40 * T_MS);
  assert_int_equal(get_release(sl), 0);
  assert_int_equal(get_release(to), 0);
  int64_t took = ak_now_ns() - t0;
  assert_true(took >= 40 * T_MS);
  assert_true(took < 10 * T_SEC);
  assert_false(ak_future_is_set(r));
  assert_int_equal(get_release(ak_nop(loop)), 0);
  ak_future *cancelled = ak_timeout(loop, 10 * T_SEC);
  ak_future_cancel(cancelled);
  assert_int_equal(get_release(cancelled), -ECANCELED);
  ak_future_cancel(r);
  assert_int_equal(get_release(r), -ECANCELED);
  close(p[0]);
  close(p[1]);
  ak_loop_free(loop);
}

/* A post from another thread wakes a loop blocked in epoll_wait. */
typedef struct poster {
  ak_loop *loop;
  t_sem started;
  int ran;
} poster;

static void posted(void *arg)
{
  poster *p = arg;
  p->ran++;
  ak_loop_unhold(p->loop);
}

static void *post_later(void *arg)
{
  poster *p = arg;
  t_sem_wait(&p->started);
  usleep(20000); /* let the loop go to sleep (not asserted: either way works) */
  ak_loop_post(p->loop, posted, p);
  return NULL;
}

static void test_post_wakes_the_wait(void **state)
{
  (void)state;
  poster p = {.loop = epoll_loop()};
  t_sem_init(&p.started, 0);
  ak_loop_hold(p.loop);
  pthread_t t = t_thread_start(post_later, &p, 0);
  t_sem_post(&p.started);
  int64_t t0 = ak_now_ns();
  while (p.ran == 0 && ak_now_ns() - t0 < T_HANG_NS)
    ak_loop_run(p.loop, AK_RUN_ONCE);
  t_thread_join(t);
  assert_int_equal(p.ran, 1);
  assert_int_equal(ak_loop_run(p.loop, AK_RUN_NOWAIT), 0);
  t_sem_destroy(&p.started);
  ak_loop_free(p.loop);
}

/* An accept stream takes a burst of connections, each once, then STOP. */
typedef struct acc_count {
  int n;
  int fds[32];
} acc_count;

static ak_stream_action on_conn(ak_loop *loop, int fd, void *arg)
{
  (void)loop;
  acc_count *a = arg;
  if (fd < 0)
    return AK_STREAM_STOP;
  a->fds[a->n++] = fd;
  return a->n < 20 ? AK_STREAM_CONTINUE : AK_STREAM_STOP;
}

static void test_accept_stream_burst(void **state)
{
  (void)state;
  ak_loop *loop = epoll_loop();
  int lfd = ak_tcp_listen("127.0.0.1", 0, 64);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)ak_socket_port(lfd))};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  int clients[20];
  for (int i = 0; i < 20; i++) {
    clients[i] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_int_equal(connect(clients[i], (struct sockaddr *)&a, sizeof(a)), 0);
  }
  acc_count ac = {0};
  ak_future *st = ak_accept_stream(loop, lfd, 0, on_conn, &ac);
  assert_int_equal(get(st), 20);
  assert_int_equal(ak_future_state(st), AK_DONE);
  ak_future_release(st);
  assert_int_equal(ac.n, 20);
  for (int i = 0; i < 20; i++) {
    assert_true(ac.fds[i] >= 0 && is_blocking(ac.fds[i]));
    close(ac.fds[i]);
    close(clients[i]);
  }
  close(lfd);
  ak_loop_free(loop);
}

/* Freeing a loop settles what still waits (readiness, a timeout op, a
 * sleep) CANCELLED before it returns. */
static void test_free_settles_waiting_ops(void **state)
{
  (void)state;
  ak_loop *loop = epoll_loop();
  int sv[2];
  assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
  char buf[8];
  ak_future *r = ak_recv(loop, sv[0], buf, sizeof(buf), 0);
  ak_future *w = ak_timeout(loop, 10 * T_SEC);
  ak_future *s = ak_sleep(loop, 10 * T_SEC);
  run_nowait(loop, 2);
  ak_loop_free(loop);
  assert_int_equal(ak_future_state(r), AK_CANCELLED);
  assert_int_equal(ak_future_state(w), AK_CANCELLED);
  assert_int_equal(ak_future_state(s), AK_CANCELLED);
  ak_future_release(r);
  ak_future_release(w);
  ak_future_release(s);
  close(sv[0]);
  close(sv[1]);
}

/* A user's MSG_DONTWAIT is honoured as io_uring honours it: -EAGAIN. */
static void test_user_dontwait(void **state)
{
  (void)state;
  ak_loop *loop = epoll_loop();
  int sv[2];
  assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
  char buf[8];
  assert_int_equal(get_release(ak_recv(loop, sv[0], buf, sizeof(buf), MSG_DONTWAIT)), -EAGAIN);
  close(sv[0]);
  close(sv[1]);
  ak_loop_free(loop);
}

/* ---- A deadline that goes to the pool with its op ----------------------- */

/* Occupies a pool thread until its pipe is written to (or 10 s pass). */
static int64_t block_until_written(void *arg, ak_future *self)
{
  (void)self;
  struct pollfd p = {.fd = *(int *)arg, .events = POLLIN};
  return poll(&p, 1, 10000);
}

typedef struct busy_pool {
  ak_pool *pool;
  int gate[2];
  ak_future *blocker;
} busy_pool;

static void busy_pool_start(busy_pool *b)
{
  b->pool = ak_pool_new(1);
  assert_non_null(b->pool);
  t_pipe(b->gate);
  b->blocker = ak_pool_submit(b->pool, block_until_written, &b->gate[0]);
  assert_non_null(b->blocker);
}

static void busy_pool_release(busy_pool *b)
{
  if (b->gate[1] >= 0) {
    assert_int_equal(write(b->gate[1], "go", 2), 2);
    close(b->gate[1]);
    b->gate[1] = -1;
  }
}

static void busy_pool_end(busy_pool *b)
{
  busy_pool_release(b);
  assert_int_equal(get_release(b->blocker), 1);
  close(b->gate[0]);
  ak_pool_free(b->pool);
}

static ak_loop *epoll_loop_on(ak_pool *pool)
{
  ak_loop_options o = {.backend = AK_BACKEND_EPOLL, .pool = pool};
  return t_loop_new_opts(&o);
}

/* /dev/full has no poll and no RWF_NOWAIT, as a hardware RNG's device may
 * not: its read waits, then epoll refuses the fd and the op moves to the
 * pool. The deadline set while it waited goes with it: with the pool busy,
 * the read fails -ETIMEDOUT when asked, and never writes the buffer. */
static void test_deadline_follows_op_to_pool(void **state)
{
  (void)state;
  busy_pool b;
  busy_pool_start(&b);
  ak_loop *loop = epoll_loop_on(b.pool);
  int fd = open("/dev/full", O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    busy_pool_end(&b);
    ak_loop_free(loop);
    skip(); /* no /dev/full in this container */
  }
  char buf[8];
  memset(buf, 'A', sizeof(buf));
  ak_future *r = ak_read(loop, fd, buf, sizeof(buf), 0);
  int64_t t0 = ak_now_ns();
  ak_future *d = ak_future_timeout(r, 50 * T_MS);
  assert_ptr_equal(d, r); /* the op's own deadline: it was waiting */
  assert_int_equal(get(d), -ETIMEDOUT);
  int64_t took = ak_now_ns() - t0;
  assert_true(took >= 50 * T_MS);
  assert_true(took < 5 * T_SEC); /* long before the blocker would end */
  ak_loop_stats st;
  ak_loop_stats_get(loop, &st);
  assert_int_equal(st.fallbacks[kind("read")], 1); /* it did go to the pool */
  busy_pool_end(&b);
  run_nowait(loop, 3);
  assert_int_equal(buf[0], 'A'); /* the cancelled task never ran */
  ak_future_release(d);
  ak_future_release(r);
  close(fd);
  ak_loop_free(loop);
}

/* The same move with the pool free: the read completes (zeros), and its
 * timer is gone with it (the loop runs past the deadline; asan would see a
 * timer that fired on a recycled op). */
static void test_moved_op_completes_before_deadline(void **state)
{
  (void)state;
  ak_loop *loop = epoll_loop();
  int fd = open("/dev/full", O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    ak_loop_free(loop);
    skip();
  }
  char buf[8];
  memset(buf, 'A', sizeof(buf));
  ak_future *r = ak_read(loop, fd, buf, sizeof(buf), 0);
  ak_future *d = ak_future_timeout(r, 100 * T_MS);
  assert_ptr_equal(d, r);
  assert_int_equal(get(d), (int64_t)sizeof(buf));
  assert_int_equal(buf[0], 0);
  /* Past the deadline: a nop keeps each iteration short. */
  assert_int_equal(get_release(ak_sleep(loop, 200 * T_MS)), 0);
  for (int i = 0; i < 3; i++)
    assert_int_equal(get_release(ak_nop(loop)), 0);
  ak_future_release(d);
  ak_future_release(r);
  close(fd);
  ak_loop_free(loop);
}

static void *release_later(void *arg)
{
  usleep(200 * 1000);
  busy_pool_release(arg);
  return NULL;
}

/* Freeing the loop while a moved op still waits for the busy pool: its
 * timer goes before the timer heap does, and the free returns once the
 * pool has run the task. */
static void test_free_with_moved_op_on_busy_pool(void **state)
{
  (void)state;
  busy_pool b;
  busy_pool_start(&b);
  ak_loop *loop = epoll_loop_on(b.pool);
  int fd = open("/dev/full", O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    busy_pool_end(&b);
    ak_loop_free(loop);
    skip();
  }
  char buf[8];
  ak_future *r = ak_read(loop, fd, buf, sizeof(buf), 0);
  ak_future *d = ak_future_timeout(r, 10 * T_SEC);
  assert_ptr_equal(d, r);
  run_nowait(loop, 2); /* now on the pool's queue, behind the blocker */
  assert_false(ak_future_is_set(r));
  pthread_t th;
  assert_int_equal(pthread_create(&th, NULL, release_later, &b), 0);
  int64_t t0 = ak_now_ns();
  ak_loop_free(loop);
  assert_true(ak_now_ns() - t0 < 5 * T_SEC);
  assert_int_equal(pthread_join(th, NULL), 0);
  assert_true(ak_future_is_set(r));
  ak_future_release(d);
  ak_future_release(r);
  busy_pool_end(&b);
  close(fd);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_pipe_read_waits_for_readiness),
      cmocka_unit_test(test_pipe_read_deadline),
      cmocka_unit_test(test_cancel_waiting_recv),
      cmocka_unit_test(test_close_cancels_waiting_ops),
      cmocka_unit_test(test_fd_number_reused_behind_our_back),
      cmocka_unit_test(test_tcp_sockets_stay_blocking),
      cmocka_unit_test(test_regular_file_on_pool),
      cmocka_unit_test(test_timers_bound_the_wait),
      cmocka_unit_test(test_post_wakes_the_wait),
      cmocka_unit_test(test_accept_stream_burst),
      cmocka_unit_test(test_free_settles_waiting_ops),
      cmocka_unit_test(test_user_dontwait),
      cmocka_unit_test(test_deadline_follows_op_to_pool),
      cmocka_unit_test(test_moved_op_completes_before_deadline),
      cmocka_unit_test(test_free_with_moved_op_on_busy_pool),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
