/* test_net.c: sockets as futures over loopback: ops, deadlines, resets, EPIPE, streams, buffer-ring
 * exhaustion, EMFILE, names. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/capability.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include <asynckit.h>

#include "helpers.h"

#define SEC INT64_C(1000000000)
#define MS INT64_C(1000000)

/* ---- Helpers --------------------------------------------------------------------- */

static ak_loop *new_loop(unsigned flags)
{
  ak_loop_options opts = {0};
  opts.flags = flags;
  ak_loop *loop = NULL;
  int rc = ak_loop_new(&loop, &opts);
  if (rc == AK_ENOURING || rc == AK_EURINGDISABLED || rc == AK_EURINGBLOCKED)
    skip();
  assert_int_equal(rc, 0);
  return loop;
}

/* Waits (running the loop) at most 10 s and returns the result. */
static int64_t get(ak_future *f)
{
  assert_non_null(f);
  assert_int_equal(ak_future_wait(f, 10 * SEC), 0);
  return ak_future_result(f);
}

static int64_t get_release(ak_future *f)
{
  int64_t r = get(f);
  ak_future_release(f);
  return r;
}

static struct sockaddr_in loopback4(int port)
{
  struct sockaddr_in a;
  memset(&a, 0, sizeof(a));
  a.sin_family = AF_INET;
  a.sin_port = htons((uint16_t)port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return a;
}

/* A connected pair made with plain blocking calls: *c the client side. */
static void tcp_pair(int *c, int *s)
{
  int lfd = ak_tcp_listen("127.0.0.1", 0, 16);
  assert_true(lfd >= 0);
  struct sockaddr_in a = loopback4(ak_socket_port(lfd));
  *c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  assert_true(*c >= 0);
  assert_int_equal(connect(*c, (struct sockaddr *)&a, sizeof(a)), 0);
  *s = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
  assert_true(*s >= 0);
  close(lfd);
}

/* The peer's next read is end of stream (a blocking recv bounded by 2 s). */
static void assert_reads_eof(int fd)
{
  struct timeval tv = {.tv_sec = 2};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  char b[64];
  assert_int_equal(recv(fd, b, sizeof(b), 0), 0);
}

static int count_fds(void)
{
  int n = 0;
  for (int fd = 0; fd < 4096; fd++)
    if (fcntl(fd, F_GETFD) >= 0)
      n++;
  return n;
}

static void fill_pattern(unsigned char *buf, size_t len, uint64_t offset)
{
  for (size_t i = 0; i < len; i++)
    buf[i] = (unsigned char)((offset + i) * 2654435761u >> 13);
}

/* ---- Single operations --------------------------------------------------------------- */

static void test_socket_connect_accept_send_recv(void **state)
{
  (void)state;
  ak_loop *loop = new_loop(0);
  int lfd = ak_tcp_listen("127.0.0.1", 0, 16);
  assert_true(lfd >= 0);
  int fd = (int)get_release(ak_socket(loop, AF_INET, SOCK_STREAM, 0));
  assert_true(fd >= 0);
  assert_true(fcntl(fd, F_GETFD) & FD_CLOEXEC);
  assert_false(fcntl(fd, F_GETFL) & O_NONBLOCK);

  struct sockaddr_storage peer;
  socklen_t peer_len = sizeof(peer);
  ak_future *acc = ak_accept(loop, lfd, (struct sockaddr *)&peer, &peer_len, 0);
  struct sockaddr_in a = loopback4(ak_socket_port(lfd));
  ak_future *con = ak_connect(loop, fd, (struct sockaddr *)&a, sizeof(a), 5 * SEC);
  assert_int_equal(get_release(con), 0);
  int sfd = (int)get_release(acc);
  assert_true(sfd >= 0);
  assert_int_equal(peer_len, sizeof(struct sockaddr_in));
  assert_int_equal(((struct sockaddr_in *)&peer)->sin_family, AF_INET);

  char buf[64] = {0};
  ak_future *r = ak_recv(loop, sfd, buf, sizeof(buf), 0);
  assert_int_equal(get_release(ak_send(loop, fd, "hello", 5, 0)), 5);
  assert_int_equal(get_release(r), 5);
  assert_memory_equal(buf, "hello", 5);

  /* send all: 8 MiB through a socket buffer far smaller, read by a blocking
   * reader on the pool's behalf (a plain thread would do as well). */
  size_t big = 8u << 20;
  unsigned char *out = malloc(big), *in = malloc(big);
  fill_pattern(out, big, 0);
  ak_future *sa = ak_send_all(loop, fd, out, big, 0);
  size_t got = 0;
  while (got < big) {
    int64_t n = get_release(ak_recv(loop, sfd, in + got, big - got, 0));
    assert_true(n > 0);
    got += (size_t)n;
  }
  assert_int_equal(get_release(sa), (int64_t)big);
  assert_memory_equal(in, out, big);
  free(out);
  free(in);

  /* shutdown(SHUT_WR): the peer reads end of stream. */
  assert_int_equal(get_release(ak_shutdown(loop, fd, SHUT_WR)), 0);
  assert_int_equal(get_release(ak_recv(loop, sfd, buf, sizeof(buf), 0)), 0);

  assert_int_equal(get_release(ak_close(loop, fd)), 0);
  assert_int_equal(get_release(ak_close(loop, sfd)), 0);
  assert_true(fcntl(fd, F_GETFD) < 0);
  close(lfd);
  ak_loop_free(loop);
}

static void test_ipv6_loopback(void **state)
{
  (void)state;
  int lfd = ak_tcp_listen("::1", 0, 4);
  if (lfd == -EADDRNOTAVAIL || lfd == -EAFNOSUPPORT)
    skip();
  assert_true(lfd >= 0);
  ak_loop *loop = new_loop(0);
  int fd = (int)get_release(ak_socket(loop, AF_INET6, SOCK_STREAM, 0));
  struct sockaddr_in6 a;
  memset(&a, 0, sizeof(a));
  a.sin6_family = AF_INET6;
  a.sin6_port = htons((uint16_t)ak_socket_port(lfd));
  a.sin6_addr = in6addr_loopback;
  ak_future *acc = ak_accept(loop, lfd, NULL, NULL, 0);
  assert_int_equal(get_release(ak_connect(loop, fd, (struct sockaddr *)&a, sizeof(a), AK_FOREVER)),
                   0);
  int sfd = (int)get_release(acc);
  assert_true(sfd >= 0);
  close(sfd);
  close(fd);
  close(lfd);
  ak_loop_free(loop);
}

static void test_sendmsg_recvmsg(void **state)
{
  (void)state;
  ak_loop *loop = new_loop(0);
  int c, s;
  tcp_pair(&c, &s);
  char a[] = "scatter ", b[] = "gather";
  struct iovec iov[2] = {{a, 8}, {b, 6}};
  struct msghdr m;
  memset(&m, 0, sizeof(m));
  m.msg_iov = iov;
  m.msg_iovlen = 2;
  char r1[4], r2[32];
  memset(r2, 0, sizeof(r2));
  struct iovec riov[2] = {{r1, 4}, {r2, 10}};
  struct msghdr rm;
  memset(&rm, 0, sizeof(rm));
  rm.msg_iov = riov;
  rm.msg_iovlen = 2;
  rm.msg_flags = -1;
  ak_future *rf = ak_recvmsg(loop, s, &rm, MSG_WAITALL);
  assert_int_equal(get_release(ak_sendmsg(loop, c, &m, 0)), 14);
  assert_int_equal(get_release(rf), 14);
  assert_memory_equal(r1, "scat", 4);
  assert_memory_equal(r2, "ter gather", 10);
  assert_int_equal(rm.msg_flags, 0); /* stored back from the op's copy */
  close(c);
  close(s);
  ak_loop_free(loop);
}

static void test_nonblock_refused(void **state)
{
  (void)state;
  ak_loop *loop = new_loop(0);
  assert_int_equal(get_release(ak_socket(loop, AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0)), -EINVAL);
  assert_int_equal(get_release(ak_accept(loop, 0, NULL, NULL, SOCK_NONBLOCK)), -EINVAL);
  ak_loop_free(loop);
}

/* Every op once more on the pool path (AK_LOOP_FORCE_POOL). */
static void test_pool_path(void **state)
{
  (void)state;
  ak_loop *loop = new_loop(AK_LOOP_FORCE_POOL);
  int lfd = ak_tcp_listen("127.0.0.1", 0, 16);
  int fd = (int)get_release(ak_socket(loop, AF_INET, SOCK_STREAM, 0));
  assert_true(fd >= 0);
  ak_future *acc = ak_accept(loop, lfd, NULL, NULL, 0);
  struct sockaddr_in a = loopback4(ak_socket_port(lfd));
  assert_int_equal(get_release(ak_connect(loop, fd, (struct sockaddr *)&a, sizeof(a), 5 * SEC)), 0);
  int sfd = (int)get_release(acc);
  assert_true(sfd >= 0);
  char buf[8];
  ak_future *r = ak_recv(loop, sfd, buf, sizeof(buf), MSG_WAITALL);
  assert_int_equal(get_release(ak_send_all(loop, fd, "12345678", 8, 0)), 8);
  assert_int_equal(get_release(r), 8);
  assert_int_equal(get_release(ak_shutdown(loop, fd, SHUT_RDWR)), 0);
  assert_int_equal(get_release(ak_close(loop, fd)), 0);
  assert_int_equal(get_release(ak_close(loop, sfd)), 0);
  ak_loop_stats st;
  ak_loop_stats_get(loop, &st);
  const char *kinds[] = {"socket", "connect", "accept", "recv", "send", "shutdown", "close"};
  for (size_t k = 0; k < sizeof(kinds) / sizeof(kinds[0]); k++) {
    unsigned i = 0;
    while (ak_op_kind_name(i) && strcmp(ak_op_kind_name(i), kinds[k]) != 0)
      i++;
    assert_non_null(ak_op_kind_name(i));
    assert_true(st.fallbacks[i] > 0);
  }
  close(lfd);
  ak_loop_free(loop);
}

/* ---- Connect failures --------------------------------------------------------------------- */

static void test_connect_refused(void **state)
{
  (void)state;
  ak_loop *loop = new_loop(0);
  int lfd = ak_tcp_listen("127.0.0.1", 0, 1);
  int port = ak_socket_port(lfd);
  close(lfd); /* nothing listens there now */
  int fd = (int)get_release(ak_socket(loop, AF_INET, SOCK_STREAM, 0));
  struct sockaddr_in a = loopback4(port);
  assert_int_equal(get_release(ak_connect(loop, fd, (struct sockaddr *)&a, sizeof(a), 5 * SEC)),
                   -ECONNREFUSED);
  close(fd);
  ak_loop_free(loop);
}

/* A listener whose accept queue is full drops SYNs: the connect hangs until
 * the deadline, a linked kernel timeout, fires. Loopback, no privileges. */
static void test_connect_deadline_full_backlog(void **state)
{
  (void)state;
  ak_loop *loop = new_loop(0);
  int lfd = ak_tcp_listen("127.0.0.1", 0, 0);
  struct sockaddr_in a = loopback4(ak_socket_port(lfd));
  int fillers[8];
  int nfill = 0;
  /* Fill the queue with connects that never get accepted (bounded: 8). */
  for (; nfill < 8; nfill++) {
    fillers[nfill] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int rc = connect(fillers[nfill], (struct sockaddr *)&a, sizeof(a));
    assert_true(rc == 0 || errno == EINPROGRESS);
    usleep(20000); /* let the handshake finish or be dropped */
    struct sockaddr_in peer;
    socklen_t len = sizeof(peer);
    if (getpeername(fillers[nfill], (struct sockaddr *)&peer, &len) < 0) {
      nfill++; /* this one hangs: the queue is full */
      break;
    }
  }
  int fd = (int)get_release(ak_socket(loop, AF_INET, SOCK_STREAM, 0));
  int64_t t0 = ak_now_ns();
  int64_t res = get_release(ak_connect(loop, fd, (struct sockaddr *)&a, sizeof(a), 200 * MS));
  int64_t took = ak_now_ns() - t0;
  assert_int_equal(res, -ETIMEDOUT);
  assert_true(took >= 190 * MS);
  assert_true(took < 5 * SEC);
  close(fd);
  for (int i = 0; i < nfill; i++)
    close(fillers[i]);
  close(lfd);
  ak_loop_free(loop);
}

/* In a network namespace of our own (forked child, unshare), a route sends
 * 10.77.0.0/16 into lo where no host answers: SYNs vanish and the connect
 * hangs until its deadline. Skipped without root or ip(8). */
static void test_connect_deadline_netns(void **state)
{
  (void)state;
  if (geteuid() != 0 || (access("/usr/sbin/ip", X_OK) != 0 && access("/sbin/ip", X_OK) != 0))
    skip();
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    if (unshare(CLONE_NEWNET) != 0)
      _exit(77);
    if (system("ip link set lo up && ip route add 10.77.0.0/16 dev lo") != 0)
      _exit(77);
    ak_loop *loop = NULL;
    if (ak_loop_new(&loop, NULL) != 0)
      _exit(77);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = loopback4(80);
    a.sin_addr.s_addr = htonl(0x0a4d0001); /* 10.77.0.1 */
    int64_t t0 = ak_now_ns();
    ak_future *f = ak_connect(loop, fd, (struct sockaddr *)&a, sizeof(a), 300 * MS);
    if (ak_future_wait(f, 10 * SEC) != 0)
      _exit(2);
    int64_t took = ak_now_ns() - t0;
    int64_t res = ak_future_result(f);
    ak_future_release(f);
    ak_loop_free(loop);
    _exit(res == -ETIMEDOUT && took >= 290 * MS && took < 5 * SEC ? 0 : 1);
  }
  int status = 0;
  assert_int_equal(waitpid(pid, &status, 0), pid);
  assert_true(WIFEXITED(status));
  if (WEXITSTATUS(status) == 77)
    skip();
  assert_int_equal(WEXITSTATUS(status), 0);
}

/* ---- Peers that go away -------------------------------------------------------------------------
 */

typedef struct recv_count {
  uint64_t bytes;
  uint64_t items;
  bool stop_after_first;
} recv_count;

static ak_stream_action count_cb(ak_loop *loop, const void *data, size_t len, void *arg)
{
  (void)loop;
  (void)data;
  recv_count *rc = arg;
  rc->bytes += len;
  rc->items++;
  return rc->stop_after_first ? AK_STREAM_STOP : AK_STREAM_CONTINUE;
}

static void linger_zero_close(int fd)
{
  struct linger lg = {.l_onoff = 1, .l_linger = 0};
  assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)), 0);
  close(fd);
}

static void test_peer_reset_mid_stream(void **state)
{
  (void)state;
  ak_loop *loop = new_loop(0);
  ak_buf_ring *br = NULL;
  assert_int_equal(ak_buf_ring_new(loop, 64, 4096, &br), 0);
  int c, s;
  tcp_pair(&c, &s);
  recv_count rc = {0};
  ak_future *st = ak_recv_stream(loop, c, br, count_cb, &rc);
  /* Some bytes, then an abortive close: SO_LINGER 0 sends RST. */
  char chunk[1000];
  memset(chunk, 'x', sizeof(chunk));
  assert_int_equal(send(s, chunk, sizeof(chunk), 0), (ssize_t)sizeof(chunk));
  int64_t until = ak_now_ns() + 10 * SEC; /* bounded: the bytes arrive at once */
  while (rc.bytes < sizeof(chunk) && ak_now_ns() < until)
    ak_loop_run(loop, AK_RUN_ONCE);
  assert_int_equal(rc.bytes, sizeof(chunk));
  linger_zero_close(s);
  assert_int_equal(get(st), -ECONNRESET);
  assert_int_equal(ak_future_state(st), AK_FAILED);
  assert_int_equal(rc.bytes, sizeof(chunk));
  ak_future_release(st);
  /* The socket stays in error; a single recv reports end or the reset. */
  char b[8];
  int64_t r = get_release(ak_recv(loop, c, b, sizeof(b), 0));
  assert_true(r == 0 || r == -ECONNRESET);
  close(c);
  ak_buf_ring_free(br);
  ak_loop_free(loop);
}

static void test_peer_reset_single_recv(void **state)
{
  (void)state;
  ak_loop *loop = new_loop(0);
  int c, s;
  tcp_pair(&c, &s);
  char b[64];
  ak_future *r = ak_recv(loop, c, b, sizeof(b), 0);
  ak_loop_run(loop, AK_RUN_NOWAIT); /* in the kernel, waiting */
  linger_zero_close(s);
  assert_int_equal(get_release(r), -ECONNRESET);
  close(c);
  ak_loop_free(loop);
}

/* SIGPIPE keeps its default action (it would kill us): MSG_NOSIGNAL. */
static void test_send_after_peer_closed_epipe(void **state)
{
  (void)state;
  struct sigaction sa;
  sigaction(SIGPIPE, NULL, &sa);
  assert_true(sa.sa_handler == SIG_DFL);
  ak_loop *loop = new_loop(0);
  int c, s;
  tcp_pair(&c, &s);
  close(s);
  char buf[4096];
  memset(buf, 'y', sizeof(buf));
  bool saw_epipe = false;
  /* The first send may go out; the peer answers RST; then EPIPE. Bounded. */
  for (int i = 0; i < 200 && !saw_epipe; i++) {
    int64_t r = get_release(ak_send(loop, c, buf, sizeof(buf), 0));
    assert_true(r == (int64_t)sizeof(buf) || r == -EPIPE || r == -ECONNRESET);
    saw_epipe = r == -EPIPE;
    if (!saw_epipe)
      usleep(1000);
  }
  assert_true(saw_epipe);
  assert_int_equal(get_release(ak_send_all(loop, c, buf, sizeof(buf), 0)), -EPIPE);
  struct iovec iov = {buf, 16};
  struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1};
  assert_int_equal(get_release(ak_sendmsg(loop, c, &m, 0)), -EPIPE);
  close(c);
  ak_loop_free(loop);
}

/* ak_close cancels the recv pending on the fd first: it settles at once
 * (CANCELLED), and the peer sees the FIN. */
static void test_close_with_pending_recv(void **state)
{
  (void)state;
  ak_loop *loop = new_loop(0);
  int c, s;
  tcp_pair(&c, &s);
  char b[64];
  ak_future *r = ak_recv(loop, c, b, sizeof(b), 0);
  recv_count rc = {0};
  int c2, s2;
  tcp_pair(&c2, &s2);
  ak_future *st = ak_recv_stream(loop, c2, NULL, count_cb, &rc);
  ak_loop_run(loop, AK_RUN_NOWAIT);
  assert_false(ak_future_is_set(r));
  int64_t t0 = ak_now_ns();
  assert_int_equal(get_release(ak_close(loop, c)), 0);
  assert_int_equal(get_release(ak_close(loop, c2)), 0);
  assert_int_equal(get(r), -ECANCELED);
  assert_int_equal(ak_future_state(r), AK_CANCELLED);
  assert_int_equal(get(st), -ECANCELED);
  assert_true(ak_now_ns() - t0 < 2 * SEC);
  ak_future_release(r);
  ak_future_release(st);
  assert_reads_eof(s);
  assert_reads_eof(s2);
  close(s);
  close(s2);
  ak_loop_free(loop);
}

/* ---- Receive streams ------------------------------------------------------------------------ */

typedef struct verify {
  uint64_t offset;
  bool bad;
} verify;

static ak_stream_action verify_cb(ak_loop *loop, const void *data, size_t len, void *arg)
{
  (void)loop;
  verify *v = arg;
  const unsigned char *p = data;
  unsigned char expect[4096];
  size_t done = 0;
  while (done < len) {
    size_t n = len - done < sizeof(expect) ? len - done : sizeof(expect);
    fill_pattern(expect, n, v->offset + done);
    if (memcmp(expect, p + done, n) != 0)
      v->bad = true;
    done += n;
  }
  v->offset += len;
  return AK_STREAM_CONTINUE;
}

typedef struct sender_arg {
  int fd;
  size_t total;
} sender_arg;

static void *sender_thread(void *arg)
{
  sender_arg *sa = arg;
  unsigned char buf[65536];
  size_t sent = 0;
  while (sent < sa->total) {
    size_t n = sa->total - sent < sizeof(buf) ? sa->total - sent : sizeof(buf);
    fill_pattern(buf, n, sent);
    ssize_t w = send(sa->fd, buf, n, MSG_NOSIGNAL);
    if (w <= 0)
      break;
    sent += (size_t)w;
  }
  shutdown(sa->fd, SHUT_WR);
  return NULL;
}

/* A tiny ring (4 x 256 bytes) against 16 MiB: the kernel runs dry again and
 * again; every byte must still arrive, in order. */
static void test_bufring_exhaustion_no_loss(void **state)
{
  (void)state;
  ak_loop *loop = new_loop(0);
  ak_buf_ring *br = NULL;
  assert_int_equal(ak_buf_ring_new(loop, 4, 256, &br), 0);
  int c, s;
  tcp_pair(&c, &s);
  verify v = {0};
  sender_arg sa = {.fd = s, .total = 16u << 20};
  pthread_t th;
  assert_int_equal(pthread_create(&th, NULL, sender_thread, &sa), 0);
  ak_future *st = ak_recv_stream(loop, c, br, verify_cb, &v);
  assert_non_null(st);
  assert_int_equal(ak_future_wait(st, 60 * SEC), 0);
  pthread_join(th, NULL);
  assert_int_equal(ak_future_result(st), (int64_t)sa.total);
  assert_int_equal(v.offset, sa.total);
  assert_false(v.bad);
  ak_loop_stats stats;
  ak_loop_stats_get(loop, &stats);
  if (ak_buf_ring_provided(br)) {
    print_message("buf_exhausted = %llu\n", (unsigned long long)stats.buf_exhausted);
    assert_true(stats.buf_exhausted > 0);
  }
  ak_future_release(st);
  close(c);
  close(s);
  ak_buf_ring_free(br);
  ak_loop_free(loop);
}

/* The same transfer without a ring (single-shot recvs into the stream's own
 * buffer: the path of kernels without buffer rings). */
static void test_recv_stream_fallback(void **state)
{
  (void)state;
  ak_loop *loop = new_loop(0);
  int c, s;
  tcp_pair(&c, &s);
  verify v = {0};
  sender_arg sa = {.fd = s, .total = 4u << 20};
  pthread_t th;
  assert_int_equal(pthread_create(&th, NULL, sender_thread, &sa), 0);
  ak_future *st = ak_recv_stream(loop, c, NULL, verify_cb, &v);
  assert_int_equal(ak_future_wait(st, 60 * SEC), 0);
  pthread_join(th, NULL);
  assert_int_equal(ak_future_result(st), (int64_t)sa.total);
  assert_false(v.bad);
  ak_future_release(st);
  close(c);
  close(s);
  ak_loop_free(loop);
}

static void test_recv_stream_stop_and_cancel(void **state)
{
  (void)state;
  ak_loop *loop = new_loop(0);
  ak_buf_ring *br = NULL;
  assert_int_equal(ak_buf_ring_new(loop, 16, 1024, &br), 0);
  int c, s;
  tcp_pair(&c, &s);
  recv_count rc = {.stop_after_first = true};
  ak_future *st = ak_recv_stream(loop, c, br, count_cb, &rc);
  assert_int_equal(send(s, "abc", 3, 0), 3);
  assert_int_equal(get(st), 3); /* STOP: DONE with the bytes delivered */
  assert_int_equal(ak_future_state(st), AK_DONE);
  assert_int_equal(rc.items, 1);
  ak_future_release(st);
  /* Cancel an idle stream. */
  recv_count rc2 = {0};
  st = ak_recv_stream(loop, c, br, count_cb, &rc2);
  ak_loop_run(loop, AK_RUN_NOWAIT);
  assert_int_equal(ak_future_cancel(st), 0);
  assert_int_equal(get(st), -ECANCELED);
  assert_int_equal(ak_future_state(st), AK_CANCELLED);
  ak_future_release(st);
  close(c);
  close(s);
  ak_buf_ring_free(br);
  ak_loop_free(loop);
}

/* ---- Accept streams -------------------------------------------------------------------------- */

typedef struct accept_count {
  int accepted;
  int errors;
  int last_error;
  int stop_at;
} accept_count;

static ak_stream_action accept_cb(ak_loop *loop, int fd, void *arg)
{
  (void)loop;
  accept_count *ac = arg;
  if (fd < 0) {
    ac->errors++;
    ac->last_error = fd;
    return AK_STREAM_CONTINUE;
  }
  close(fd);
  ac->accepted++;
  return ac->stop_at && ac->accepted >= ac->stop_at ? AK_STREAM_STOP : AK_STREAM_CONTINUE;
}

typedef struct burst_arg {
  int port;
  int n;
  int ok;
} burst_arg;

static void *burst_thread(void *arg)
{
  burst_arg *b = arg;
  struct sockaddr_in a = loopback4(b->port);
  for (int i = 0; i < b->n; i++) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
      continue;
    if (connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0)
      b->ok++;
    close(fd);
  }
  return NULL;
}

static void test_accept_stream_burst_1000(void **state)
{
  (void)state;
  ak_loop *loop = new_loop(0);
  int lfd = ak_tcp_listen("127.0.0.1", 0, 4096);
  int base = count_fds();
  accept_count ac = {.stop_at = 1000};
  ak_future *st = ak_accept_stream(loop, lfd, 0, accept_cb, &ac);
  burst_arg b = {.port = ak_socket_port(lfd), .n = 1000};
  pthread_t th;
  assert_int_equal(pthread_create(&th, NULL, burst_thread, &b), 0);
  assert_int_equal(ak_future_wait(st, 60 * SEC), 0);
  pthread_join(th, NULL);
  assert_int_equal(b.ok, 1000);
  assert_int_equal(ac.accepted, 1000);
  assert_int_equal(ac.errors, 0);
  assert_int_equal(ak_future_state(st), AK_DONE);
  assert_int_equal(ak_future_result(st), 1000);
  ak_future_release(st);
  assert_int_equal(count_fds(), base);
  close(lfd);
  ak_loop_free(loop);
}

static void test_accept_stream_cancel(void **state)
{
  (void)state;
  ak_loop *loop = new_loop(0);
  int lfd = ak_tcp_listen("127.0.0.1", 0, 16);
  accept_count ac = {0};
  ak_future *st = ak_accept_stream(loop, lfd, 0, accept_cb, &ac);
  ak_loop_run(loop, AK_RUN_NOWAIT);
  ak_future_cancel(st);
  assert_int_equal(get(st), -ECANCELED);
  assert_int_equal(ak_future_state(st), AK_CANCELLED);
  ak_future_release(st);
  close(lfd);
  ak_loop_free(loop);
}

/* The lowest fd number not open: an RLIMIT_NOFILE of exactly this leaves no
 * fd to hand out. */
static int lowest_free_fd(void)
{
  int fd = 0;
  while (fcntl(fd, F_GETFD) >= 0)
    fd++;
  return fd;
}

static void test_emfile_reported_and_recovered(void **state)
{
  (void)state;
  ak_loop *loop = new_loop(0);
  int lfd = ak_tcp_listen("127.0.0.1", 0, 64);
  struct sockaddr_in a = loopback4(ak_socket_port(lfd));
  enum { N = 4 };
  int clients[N];
  for (int i = 0; i < N; i++)
    clients[i] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  struct rlimit old, low;
  assert_int_equal(getrlimit(RLIMIT_NOFILE, &old), 0);
  low = old;
  low.rlim_cur = (rlim_t)lowest_free_fd();
  assert_int_equal(setrlimit(RLIMIT_NOFILE, &low), 0);

  /* The ring's own socket op reports it too. */
  assert_int_equal(get_release(ak_socket(loop, AF_INET, SOCK_STREAM, 0)), -EMFILE);

  accept_count ac = {.stop_at = N};
  ak_future *st = ak_accept_stream(loop, lfd, 0, accept_cb, &ac);
  for (int i = 0; i < N; i++)
    assert_int_equal(connect(clients[i], (struct sockaddr *)&a, sizeof(a)), 0);
  /* Bounded: the error reaches the callback well within 5 s. */
  int64_t until = ak_now_ns() + 5 * SEC;
  while (ac.errors == 0 && ak_now_ns() < until)
    ak_loop_run(loop, AK_RUN_ONCE);
  assert_true(ac.errors > 0);
  assert_int_equal(ac.last_error, -EMFILE);
  assert_int_equal(ac.accepted, 0);
  assert_false(ak_future_is_set(st));
  /* Room again: the stream re-arms after its backoff and takes them all. */
  assert_int_equal(setrlimit(RLIMIT_NOFILE, &old), 0);
  assert_int_equal(ak_future_wait(st, 10 * SEC), 0);
  assert_int_equal(ac.accepted, N);
  assert_int_equal(ak_future_result(st), N);
  ak_future_release(st);
  for (int i = 0; i < N; i++)
    close(clients[i]);
  close(lfd);
  ak_loop_free(loop);
}

/* ---- Registered sockets ----------------------------------------------------------------- */

/* Registers fd, or skips on a kernel without sparse file tables. */
static void register_or_skip(ak_loop *loop, int fd)
{
  int rc = ak_socket_register(loop, fd);
  if (rc == -EINVAL)
    skip();
  assert_int_equal(rc, 0);
}

/* Ops on a registered socket go through the ring's table: after a plain
 * close() of the fd number they still reach the socket (the table holds it),
 * and the peer sees end of stream only once the ring lets go. */
static void test_registered_socket_used_by_slot(void **state)
{
  (void)state;
  ak_loop *loop = new_loop(0);
  T_SKIP_ON_EPOLL(loop, "the ring's file table holds the socket; epoll has none");
  int c, s;
  tcp_pair(&c, &s);
  register_or_skip(loop, c);
  register_or_skip(loop, c); /* again: no change */
  char out[16] = "through the slot", in[32];
  assert_int_equal(get_release(ak_send(loop, c, out, sizeof(out), 0)), (int64_t)sizeof(out));
  assert_int_equal(recv(s, in, sizeof(in), 0), (ssize_t)sizeof(out));
  assert_memory_equal(in, out, sizeof(out));

  assert_int_equal(close(c), 0); /* behind the library's back */
  assert_int_equal(get_release(ak_send(loop, c, out, 4, 0)), 4);
  assert_int_equal(recv(s, in, sizeof(in), 0), 4);
  struct pollfd pfd = {.fd = s, .events = POLLIN};
  assert_int_equal(poll(&pfd, 1, 200), 0); /* no FIN: still open */

  assert_int_equal(ak_socket_unregister(loop, c), 0);
  assert_int_equal(ak_socket_unregister(loop, c), -ENOENT);
  assert_reads_eof(s); /* now the FIN */
  close(s);
  ak_loop_free(loop);
}

/* A registered socket under a multishot recv: data flows both ways, and
 * ak_close cancels the pending stream, drops the ring's reference and closes,
 * so the peer reads end of stream. */
static void test_registered_socket_stream_and_close(void **state)
{
  (void)state;
  ak_loop *loop = new_loop(0);
  T_SKIP_ON_EPOLL(loop, "registered sockets and provided buffers are io_uring's");
  ak_buf_ring *br = NULL;
  assert_int_equal(ak_buf_ring_new(loop, 8, 4096, &br), 0);
  int c, s;
  tcp_pair(&c, &s);
  register_or_skip(loop, c);
  recv_count rc = {0};
  ak_future *st = ak_recv_stream(loop, c, br, count_cb, &rc);
  unsigned char msg[1000];
  fill_pattern(msg, sizeof(msg), 0);
  assert_int_equal(send(s, msg, sizeof(msg), 0), (ssize_t)sizeof(msg));
  int64_t until = ak_now_ns() + 5 * SEC;
  while (rc.bytes < sizeof(msg) && ak_now_ns() < until)
    ak_loop_run(loop, AK_RUN_ONCE);
  assert_int_equal(rc.bytes, sizeof(msg));
  assert_false(ak_future_is_set(st));

  int64_t t0 = ak_now_ns();
  assert_int_equal(get_release(ak_close(loop, c)), 0);
  assert_int_equal(get(st), -ECANCELED);
  assert_true(ak_now_ns() - t0 < 2 * SEC);
  ak_future_release(st);
  assert_int_equal(ak_socket_unregister(loop, c), -ENOENT); /* ak_close did it */
  assert_reads_eof(s);
  close(s);
  ak_buf_ring_free(br);
  ak_loop_free(loop);
}

/* Bad input: a bad fd, an fd past the table, a table already taken by
 * ak_register_files (and the other way round), another thread. */
static void *register_from_thread(void *arg)
{
  ak_loop *loop = arg;
  return (void *)(intptr_t)ak_socket_register(loop, 0);
}

static void test_registered_socket_errors(void **state)
{
  (void)state;
  int c, s;
  tcp_pair(&c, &s);

  /* A table sized by a low RLIMIT_NOFILE: an fd above it is out of range. */
  int high = fcntl(c, F_DUPFD_CLOEXEC, 200);
  assert_true(high >= 200);
  struct rlimit old, low;
  assert_int_equal(getrlimit(RLIMIT_NOFILE, &old), 0);
  low = old;
  low.rlim_cur = 128;
  assert_int_equal(setrlimit(RLIMIT_NOFILE, &low), 0);
  ak_loop *loop = new_loop(0);
  int rc = ak_socket_register(loop, c);
  assert_int_equal(setrlimit(RLIMIT_NOFILE, &old), 0);
  if (t_loop_is_epoll(loop)) {
    /* epoll (net.h): registering is a no-op for an open fd, files and
     * buffers have no table to go in. */
    assert_int_equal(rc, 0);
    assert_int_equal(ak_socket_register(loop, high), 0);
    assert_int_equal(ak_socket_register(loop, -1), -EBADF);
    assert_int_equal(ak_socket_register(loop, lowest_free_fd()), -EBADF);
    assert_int_equal(ak_socket_unregister(loop, c), 0);
    assert_int_equal(ak_register_files(loop, &s, 1), AK_EBACKEND);
    assert_int_equal(ak_unregister_files(loop), AK_EBACKEND);
    char b[16];
    struct iovec iov = {.iov_base = b, .iov_len = sizeof(b)};
    assert_int_equal(ak_register_buffers(loop, &iov, 1), AK_EBACKEND);
    pthread_t t;
    void *trc;
    assert_int_equal(pthread_create(&t, NULL, register_from_thread, loop), 0);
    pthread_join(t, &trc);
    assert_int_equal((int)(intptr_t)trc, AK_ENOTOWNER);
    /* The socket works as before. */
    assert_int_equal(get_release(ak_send(loop, c, "x", 1, 0)), 1);
    assert_int_equal(recv(s, b, 1, 0), 1);
    ak_loop_free(loop);
    close(high);
    close(c);
    close(s);
    return;
  }
  if (rc == -EINVAL)
    skip();
  assert_int_equal(rc, 0);
  assert_int_equal(ak_socket_register(loop, high), -ERANGE);
  assert_int_equal(ak_socket_register(loop, -1), -EBADF);
  int unused = lowest_free_fd();
  assert_int_equal(ak_socket_register(loop, unused), -EBADF);
  assert_int_equal(ak_socket_unregister(loop, s), -ENOENT);
  pthread_t t;
  void *trc;
  assert_int_equal(pthread_create(&t, NULL, register_from_thread, loop), 0);
  pthread_join(t, &trc);
  assert_int_equal((int)(intptr_t)trc, AK_ENOTOWNER);
  /* Sockets hold the table: no files of the caller's now. */
  assert_int_equal(ak_register_files(loop, &s, 1), -EBUSY);
  assert_int_equal(ak_unregister_files(loop), -ENXIO);
  ak_loop_free(loop);

  loop = new_loop(0);
  assert_int_equal(ak_register_files(loop, &s, 1), 0);
  assert_int_equal(ak_socket_register(loop, c), -EBUSY);
  assert_int_equal(ak_unregister_files(loop), 0);
  ak_loop_free(loop);
  close(high);
  close(c);
  close(s);
}

/* ---- Registered receive buffers --------------------------------------------------------- */

/* Registers buf, or skips on a kernel without sparse buffer tables. On epoll
 * there is no table: AK_EBACKEND, and the caller goes on with slot -1. */
static int buffer_register_or_skip(ak_loop *loop, void *buf, size_t len)
{
  int slot = ak_buffer_register(loop, buf, len);
  if (t_loop_is_epoll(loop)) {
    assert_int_equal(slot, AK_EBACKEND);
    return -1;
  }
  if (slot == -EINVAL)
    skip();
  assert_true(slot >= 0);
  return slot;
}

/* Receives into a registered buffer, anywhere inside it and in pieces
 * (short receives are normal), get the bytes sent; end of stream is 0, an
 * abortive close -ECONNRESET. On epoll the same calls work as plain recvs. */
static void test_registered_buffer_receives(void **state)
{
  (void)state;
  ak_loop *loop = new_loop(0);
  enum { BUF = 64 * 1024, MSG = 40000 };
  unsigned char *buf = malloc(BUF);
  assert_non_null(buf);
  int slot = buffer_register_or_skip(loop, buf, BUF);
  int c, s;
  tcp_pair(&c, &s);
  unsigned char *msg = malloc(MSG);
  fill_pattern(msg, MSG, 7);
  assert_int_equal(send(s, msg, MSG, 0), MSG);
  size_t got = 0;
  while (got < MSG) {
    /* At offset 1000 in the buffer, at most 7000 bytes at a time. */
    size_t want = MSG - got < 7000 ? MSG - got : 7000;
    int64_t r = get_release(ak_recv_registered(loop, c, buf + 1000, want, slot));
    assert_true(r > 0 && (size_t)r <= want);
    assert_memory_equal(buf + 1000, msg + got, (size_t)r);
    got += (size_t)r;
  }
  close(s);
  assert_int_equal(get_release(ak_recv_registered(loop, c, buf, BUF, slot)), 0);
  close(c);

  tcp_pair(&c, &s);
  ak_future *r = ak_recv_registered(loop, c, buf, BUF, slot);
  ak_loop_run(loop, AK_RUN_NOWAIT); /* in the kernel, waiting */
  linger_zero_close(s);
  assert_int_equal(get_release(r), -ECONNRESET);
  close(c);
  if (slot >= 0)
    assert_int_equal(ak_buffer_unregister(loop, slot), 0);
  free(msg);
  free(buf);
  ak_loop_free(loop);
}

/* The header's promises about a slot's life: a receive in flight when its
 * slot is unregistered still lands in the buffer (the pages stay pinned for
 * it); a cancelled one settles CANCELLED; a range past the buffer fails
 * -EFAULT; an unregistered slot is refused; slots are reused. */
static void test_registered_buffer_lifetime(void **state)
{
  (void)state;
  ak_loop *loop = new_loop(0);
  T_SKIP_ON_EPOLL(loop, "no buffer table on epoll");
  enum { BUF = 16 * 1024 };
  char *buf = malloc(BUF);
  assert_non_null(buf);
  int slot = buffer_register_or_skip(loop, buf, BUF);
  int c, s;
  tcp_pair(&c, &s);

  ak_future *r = ak_recv_registered(loop, c, buf, 100, slot);
  ak_loop_run(loop, AK_RUN_NOWAIT);
  assert_int_equal(ak_buffer_unregister(loop, slot), 0);
  assert_int_equal(send(s, "after unregistering", 19, 0), 19);
  assert_int_equal(get_release(r), 19);
  assert_memory_equal(buf, "after unregistering", 19);
  assert_int_equal(ak_buffer_unregister(loop, slot), -ENOENT);
  assert_true(get_release(ak_recv_registered(loop, c, buf, 100, slot)) < 0); /* an empty slot */

  int again = ak_buffer_register(loop, buf, BUF);
  assert_int_equal(again, slot); /* the lowest free slot */
  r = ak_recv_registered(loop, c, buf, 100, again);
  ak_loop_run(loop, AK_RUN_NOWAIT);
  assert_int_equal(ak_future_cancel(r), 0);
  assert_int_equal(get(r), -ECANCELED);
  assert_true(ak_future_is_cancelled(r));
  ak_future_release(r);
  /* Past the registered bytes: the kernel refuses, nothing is written. */
  assert_int_equal(get_release(ak_recv_registered(loop, c, buf + BUF - 10, 100, again)), -EFAULT);
  /* The socket is fine afterwards. */
  assert_int_equal(send(s, "ok", 2, 0), 2);
  assert_int_equal(get_release(ak_recv_registered(loop, c, buf, 100, again)), 2);
  assert_int_equal(ak_buffer_unregister(loop, again), 0);
  close(c);
  close(s);
  free(buf);
  ak_loop_free(loop);
}

/* In a child without CAP_IPC_LOCK and with RLIMIT_MEMLOCK at 64 KiB (the
 * ring decides at setup whether it accounts pinned pages): a 1 MiB buffer
 * is -ENOMEM, a 16 KiB one fits, and a receive with slot -1 still works.
 * Exit 0 when all held; 77: no sparse tables or epoll; else which step. */
static int memlock_child(void *arg)
{
  (void)arg;
  struct __user_cap_header_struct h = {.version = _LINUX_CAPABILITY_VERSION_3, .pid = 0};
  struct __user_cap_data_struct d[2];
  if (syscall(SYS_capget, &h, d) != 0)
    return 10;
  d[CAP_IPC_LOCK / 32].effective &= ~(1u << (CAP_IPC_LOCK % 32));
  if (syscall(SYS_capset, &h, d) != 0)
    return 11;
  struct rlimit rl = {.rlim_cur = 64 * 1024, .rlim_max = 64 * 1024};
  if (setrlimit(RLIMIT_MEMLOCK, &rl) != 0)
    return 12;
  ak_loop *loop;
  if (ak_loop_new(&loop, NULL) < 0)
    return 13;
  if (t_loop_is_epoll(loop))
    return 77;
  char *big = aligned_alloc(4096, 1 << 20);
  char *small = aligned_alloc(4096, 16384);
  int rc = ak_buffer_register(loop, big, 1 << 20);
  if (rc == -EINVAL)
    return 77;
  if (rc != -ENOMEM)
    return 20;
  if (ak_buffer_register(loop, small, 16384) != 0)
    return 21;
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0 || send(sv[1], "hi", 2, 0) != 2)
    return 22;
  ak_future *f = ak_recv_registered(loop, sv[0], big, 100, -1);
  if (!f || ak_future_wait(f, 10 * SEC) != 0 || ak_future_result(f) != 2 || memcmp(big, "hi", 2))
    return 23;
  ak_future_release(f);
  ak_loop_free(loop);
  return 0;
}

static void test_registered_buffer_memlock(void **state)
{
  (void)state;
  int rc = t_run_in_child(memlock_child, NULL);
  if (rc == 77)
    skip();
  assert_int_equal(rc, 0);
}

static void *buffer_register_from_thread(void *arg)
{
  static char b[64];
  return (void *)(intptr_t)ak_buffer_register(arg, b, sizeof(b));
}

/* Bad input: no buffer, no length, every slot taken, the table held by
 * ak_register_buffers (and the other way round), another thread, bad slots. */
static void test_registered_buffer_errors(void **state)
{
  (void)state;
  ak_loop *loop = new_loop(0);
  T_SKIP_ON_EPOLL(loop, "no buffer table on epoll (AK_EBACKEND: see receives)");
  enum { SMALL = 4096 };
  char *mem = malloc((size_t)AK_BUFFER_SLOTS * SMALL);
  assert_non_null(mem);
  assert_int_equal(ak_buffer_register(loop, NULL, 10), -EINVAL);
  assert_int_equal(ak_buffer_register(loop, mem, 0), -EINVAL);
  assert_int_equal(ak_buffer_unregister(loop, 0), -ENOENT); /* no table yet */
  int first = buffer_register_or_skip(loop, mem, SMALL);
  assert_int_equal(first, 0);
  for (int i = 1; i < AK_BUFFER_SLOTS; i++)
    assert_int_equal(ak_buffer_register(loop, mem + (size_t)i * SMALL, SMALL), i);
  assert_int_equal(ak_buffer_register(loop, mem, SMALL), -ENOSPC);
  assert_int_equal(ak_buffer_unregister(loop, 17), 0);
  assert_int_equal(ak_buffer_register(loop, mem, SMALL), 17);
  assert_int_equal(ak_buffer_unregister(loop, -1), -ENOENT);
  assert_int_equal(ak_buffer_unregister(loop, AK_BUFFER_SLOTS), -ENOENT);
  pthread_t t;
  void *trc;
  assert_int_equal(pthread_create(&t, NULL, buffer_register_from_thread, loop), 0);
  pthread_join(t, &trc);
  assert_int_equal((int)(intptr_t)trc, AK_ENOTOWNER);
  /* The table is taken: not the caller's buffers now. */
  struct iovec iov = {.iov_base = mem, .iov_len = SMALL};
  assert_int_equal(ak_register_buffers(loop, &iov, 1), -EBUSY);
  assert_int_equal(ak_unregister_buffers(loop), -ENXIO);
  ak_loop_free(loop); /* with every slot still registered */

  loop = new_loop(0);
  assert_int_equal(ak_register_buffers(loop, &iov, 1), 0);
  assert_int_equal(ak_buffer_register(loop, mem, SMALL), -EBUSY);
  assert_int_equal(ak_unregister_buffers(loop), 0);
  assert_int_equal(ak_buffer_register(loop, mem, SMALL), 0); /* free again */
  ak_loop_free(loop);
  free(mem);
}

/* ---- Names
 * ----------------------------------------------------------------------------------------- */

static void test_getaddrinfo(void **state)
{
  (void)state;
  ak_loop *loop = new_loop(0);
  ak_future *f = ak_getaddrinfo(loop, "127.0.0.1", "8080", NULL);
  assert_true(get(f) >= 1);
  struct addrinfo *ai = ak_future_value(f);
  assert_non_null(ai);
  assert_int_equal(ai->ai_family, AF_INET);
  assert_int_equal(ntohs(((struct sockaddr_in *)ai->ai_addr)->sin_port), 8080);
  ak_future_release(f);
  ak_loop_free(loop);
}

/* A numeric host and port need no resolver: the lookup is settled when
 * ak_getaddrinfo returns (no pool round trip), with the same answers and
 * failures as on the pool: the address, a family the hints exclude
 * (AK_ERESOLVE with the resolver's text), an IPv6 literal. */
static void test_getaddrinfo_numeric_at_once(void **state)
{
  (void)state;
  ak_loop *loop = new_loop(0);
  ak_future *f = ak_getaddrinfo(loop, "127.0.0.1", "8080", NULL);
  assert_true(ak_future_is_set(f));
  assert_int_equal(ak_future_result(f), 1);
  struct addrinfo *ai = ak_future_value(f);
  assert_int_equal(ai->ai_family, AF_INET);
  assert_int_equal(ai->ai_socktype, SOCK_STREAM);
  assert_int_equal(ntohs(((struct sockaddr_in *)ai->ai_addr)->sin_port), 8080);
  ak_future_release(f);
  struct addrinfo hints = {.ai_family = AF_INET6, .ai_socktype = SOCK_STREAM};
  f = ak_getaddrinfo(loop, "127.0.0.1", "80", &hints);
  assert_true(ak_future_is_set(f));
  assert_int_equal(ak_future_result(f), AK_ERESOLVE);
  assert_non_null(ak_future_detail(f));
  ak_future_release(f);
  f = ak_getaddrinfo(loop, "::1", NULL, NULL);
  assert_true(ak_future_is_set(f));
  assert_int_equal(get(f), 1);
  assert_int_equal(((struct addrinfo *)ak_future_value(f))->ai_family, AF_INET6);
  ak_future_release(f);
  /* A name still goes to the pool. */
  f = ak_getaddrinfo(loop, "localhost", "80", &(struct addrinfo){.ai_family = AF_INET});
  assert_true(get(f) >= 1);
  ak_future_release(f);
  ak_loop_free(loop);
}

static void test_resolution_failure(void **state)
{
  (void)state;
  ak_loop *loop = new_loop(0);
  /* Numeric-only lookup of a name: fails at once, no DNS involved. */
  struct addrinfo hints;
  memset(&hints, 0, sizeof(hints));
  hints.ai_flags = AI_NUMERICHOST;
  hints.ai_socktype = SOCK_STREAM;
  ak_future *f = ak_getaddrinfo(loop, "not-a-number.invalid", "80", &hints);
  assert_int_equal(get(f), AK_ERESOLVE);
  assert_int_equal(ak_future_state(f), AK_FAILED);
  assert_non_null(ak_future_detail(f));
  assert_string_equal(ak_future_detail(f), gai_strerror(EAI_NONAME));
  ak_future_release(f);
  /* Connect by a name that cannot exist (RFC 2606 .invalid). */
  f = ak_connect_host(loop, "no-such-host.invalid", 80, SEC);
  assert_non_null(f);
  assert_int_equal(ak_future_wait(f, 30 * SEC), 0);
  assert_int_equal(ak_future_result(f), AK_ERESOLVE);
  assert_non_null(ak_future_detail(f));
  ak_future_release(f);
  ak_loop_free(loop);
}

static void test_connect_host(void **state)
{
  (void)state;
  ak_loop *loop = new_loop(0);
  int lfd = ak_tcp_listen("127.0.0.1", 0, 16);
  int port = ak_socket_port(lfd);
  /* "localhost" may list ::1 first, where nobody listens: the next address
   * is tried. */
  ak_future *f = ak_connect_host(loop, "localhost", (uint16_t)port, 2 * SEC);
  int fd = (int)get(f);
  assert_true(fd >= 0);
  ak_future_release(f);
  int sfd = accept(lfd, NULL, NULL);
  assert_true(sfd >= 0);
  assert_int_equal(get_release(ak_send(loop, fd, "hi", 2, 0)), 2);
  char b[2];
  assert_int_equal(recv(sfd, b, 2, MSG_WAITALL), 2);
  close(sfd);
  close(fd);
  close(lfd);
  /* Every address refuses: the last error, with a detail naming it. */
  f = ak_connect_host(loop, "127.0.0.1", (uint16_t)port, 2 * SEC);
  assert_int_equal(get(f), -ECONNREFUSED);
  assert_non_null(ak_future_detail(f));
  assert_non_null(strstr(ak_future_detail(f), "127.0.0.1"));
  ak_future_release(f);
  ak_loop_free(loop);
}

/* ---- Teardown
 * ------------------------------------------------------------------------------------------ */

/* Freeing a loop with streams, recvs and a connect pending settles them all
 * CANCELLED and leaves no fd behind. */
static void test_loop_free_with_pending(void **state)
{
  (void)state;
  int base = count_fds();
  ak_loop *loop = new_loop(0);
  ak_buf_ring *br = NULL;
  assert_int_equal(ak_buf_ring_new(loop, 8, 512, &br), 0);
  int lfd = ak_tcp_listen("127.0.0.1", 0, 16);
  int c, s;
  tcp_pair(&c, &s);
  accept_count ac = {0};
  recv_count rc = {0};
  char b[16];
  ak_future *fs[4] = {
      ak_accept_stream(loop, lfd, 0, accept_cb, &ac),
      ak_recv_stream(loop, c, br, count_cb, &rc),
      ak_recv(loop, s, b, sizeof(b), 0),
      ak_accept(loop, lfd, NULL, NULL, 0),
  };
  ak_loop_run(loop, AK_RUN_NOWAIT);
  /* The buffer ring must go before the loop, once its streams have ended:
   * cancel that one first. */
  ak_future_cancel(fs[1]);
  assert_int_equal(ak_future_wait(fs[1], 5 * SEC), 0);
  ak_buf_ring_free(br);
  ak_loop_free(loop);
  for (int i = 0; i < 4; i++) {
    assert_true(ak_future_is_set(fs[i]));
    assert_int_equal(ak_future_state(fs[i]), AK_CANCELLED);
    ak_future_release(fs[i]);
  }
  close(c);
  close(s);
  close(lfd);
  assert_int_equal(count_fds(), base);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_socket_connect_accept_send_recv),
      cmocka_unit_test(test_ipv6_loopback),
      cmocka_unit_test(test_sendmsg_recvmsg),
      cmocka_unit_test(test_nonblock_refused),
      cmocka_unit_test(test_pool_path),
      cmocka_unit_test(test_connect_refused),
      cmocka_unit_test(test_connect_deadline_full_backlog),
      cmocka_unit_test(test_connect_deadline_netns),
      cmocka_unit_test(test_peer_reset_mid_stream),
      cmocka_unit_test(test_peer_reset_single_recv),
      cmocka_unit_test(test_send_after_peer_closed_epipe),
      cmocka_unit_test(test_close_with_pending_recv),
      cmocka_unit_test(test_bufring_exhaustion_no_loss),
      cmocka_unit_test(test_recv_stream_fallback),
      cmocka_unit_test(test_recv_stream_stop_and_cancel),
      cmocka_unit_test(test_accept_stream_burst_1000),
      cmocka_unit_test(test_accept_stream_cancel),
      cmocka_unit_test(test_emfile_reported_and_recovered),
      cmocka_unit_test(test_registered_socket_used_by_slot),
      cmocka_unit_test(test_registered_socket_stream_and_close),
      cmocka_unit_test(test_registered_socket_errors),
      cmocka_unit_test(test_registered_buffer_receives),
      cmocka_unit_test(test_registered_buffer_lifetime),
      cmocka_unit_test(test_registered_buffer_errors),
      cmocka_unit_test(test_registered_buffer_memlock),
      cmocka_unit_test(test_getaddrinfo),
      cmocka_unit_test(test_getaddrinfo_numeric_at_once),
      cmocka_unit_test(test_resolution_failure),
      cmocka_unit_test(test_connect_host),
      cmocka_unit_test(test_loop_free_with_pending),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
