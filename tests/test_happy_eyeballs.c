/* test_happy_eyeballs.c: connect by name racing the families (net.h,
 * ak_connect_name / ak_connect_addrinfo, RFC 8305) from the caller's side:
 * a server on ::1 only, on 127.0.0.1 only, on both; an address whose SYNs
 * are dropped (a loopback listener made with listen(fd, 0) whose queue is
 * full: the machines' bench notes) costs the stagger, not the connect
 * timeout; interleaving; -4/-6; the per-attempt deadline; cancel. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include <asynckit.h>

#include "helpers.h"

static const int64_t MS = INT64_C(1000000);
static const int64_t WAIT = INT64_C(20000000000);

/* A listening socket on the loopback address of family; its port in *port.
 * backlog 0 with fill: its queue is filled so further SYNs are dropped. */
typedef struct listener {
  int fd;
  uint16_t port;
  int fillers[4];
  int nfill;
} listener;

static void addr_of(int family, uint16_t port, struct sockaddr_storage *ss, socklen_t *len)
{
  memset(ss, 0, sizeof *ss);
  if (family == AF_INET) {
    struct sockaddr_in *in = (void *)ss;
    in->sin_family = AF_INET;
    in->sin_port = htons(port);
    in->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    *len = sizeof *in;
  } else {
    struct sockaddr_in6 *in6 = (void *)ss;
    in6->sin6_family = AF_INET6;
    in6->sin6_port = htons(port);
    in6->sin6_addr = in6addr_loopback;
    *len = sizeof *in6;
  }
}

static listener listen_on(int family, uint16_t port, bool black_hole)
{
  listener l = {.fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0)};
  assert_true(l.fd >= 0);
  int one = 1;
  setsockopt(l.fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (family == AF_INET6)
    setsockopt(l.fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
  struct sockaddr_storage ss;
  socklen_t len;
  addr_of(family, port, &ss, &len);
  if (bind(l.fd, (struct sockaddr *)&ss, len) < 0) {
    if (family == AF_INET6 && errno == EADDRNOTAVAIL) {
      fprintf(stderr, "no ::1 here: skipped\n");
      exit(T_EXIT_SKIP);
    }
    fail_msg("bind: %s", strerror(errno));
  }
  assert_int_equal(listen(l.fd, black_hole ? 0 : 64), 0);
  l.port = (uint16_t)ak_socket_port(l.fd);
  if (black_hole) {
    /* Connections nobody accepts fill the queue; then SYNs are dropped. */
    addr_of(family, l.port, &ss, &len);
    for (l.nfill = 0; l.nfill < 4; l.nfill++) {
      l.fillers[l.nfill] = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
      (void)connect(l.fillers[l.nfill], (struct sockaddr *)&ss, len);
    }
    usleep(20000);
  }
  return l;
}

static void listener_close(listener *l)
{
  for (int i = 0; i < l->nfill; i++)
    close(l->fillers[i]);
  close(l->fd);
}

/* An addrinfo list of (family, port) pairs on loopback. */
typedef struct alist {
  struct addrinfo ai[8];
  struct sockaddr_storage ss[8];
} alist;

static const struct addrinfo *make_list(alist *a, int n, const int *family, const uint16_t *port)
{
  memset(a, 0, sizeof *a);
  for (int i = 0; i < n; i++) {
    socklen_t len;
    addr_of(family[i], port[i], &a->ss[i], &len);
    a->ai[i].ai_family = family[i];
    a->ai[i].ai_socktype = SOCK_STREAM;
    a->ai[i].ai_addr = (struct sockaddr *)&a->ss[i];
    a->ai[i].ai_addrlen = len;
    a->ai[i].ai_next = i + 1 < n ? &a->ai[i + 1] : NULL;
  }
  return &a->ai[0];
}

/* A port with nobody listening on either family (refused at once). */
static uint16_t dead_port(void)
{
  listener a = listen_on(AF_INET, 0, false);
  uint16_t p = a.port;
  listener_close(&a);
  return p;
}

static int peer_family(int fd)
{
  struct sockaddr_storage ss;
  socklen_t len = sizeof ss;
  assert_int_equal(getpeername(fd, (struct sockaddr *)&ss, &len), 0);
  return ss.ss_family;
}

static int open_fds(void)
{
  int n = 0;
  DIR *d = opendir("/proc/self/fd");
  while (d && readdir(d))
    n++;
  if (d)
    closedir(d);
  return n;
}

/* Connects over list; returns the settled future, *elapsed set. */
static ak_future *race(ak_loop *loop, const struct addrinfo *list, const ak_connect_options *o,
                       int64_t *elapsed)
{
  int64_t t0 = ak_now_ns();
  ak_future *f = ak_connect_addrinfo(loop, list, o);
  assert_non_null(f);
  assert_int_equal(ak_future_wait(f, WAIT), 0);
  *elapsed = ak_now_ns() - t0;
  return f;
}

static void expect_winner(ak_future *f, int family)
{
  if (ak_future_is_error(f))
    fail_msg("failed: %s (%s)", ak_err_name((int)ak_future_result(f)),
             ak_future_detail(f) ? ak_future_detail(f) : "");
  int fd = (int)ak_future_result(f);
  assert_true(fd >= 0);
  assert_int_equal(peer_family(fd), family);
  close(fd);
}

/* A server on one family only, the other address first: the refusal starts
 * the next attempt at once, well before the stagger. */
static void one_family_case(int server_family)
{
  ak_loop *loop = t_loop_new();
  listener l = listen_on(server_family, 0, false);
  int other = server_family == AF_INET ? AF_INET6 : AF_INET;
  /* The same port on the other family: nobody listens there. */
  int fam[2] = {other, server_family};
  uint16_t port[2] = {l.port, l.port};
  alist a;
  ak_connect_options o = {.stagger_ns = 2000 * MS};
  int64_t el;
  ak_future *f = race(loop, make_list(&a, 2, fam, port), &o, &el);
  expect_winner(f, server_family);
  assert_true(el < 1500 * MS); /* not the 2 s stagger: the refusal moved on */
  ak_future_release(f);
  listener_close(&l);
  ak_loop_free(loop);
}

static void test_server_on_v6_only(void **state)
{
  (void)state;
  one_family_case(AF_INET6);
}

static void test_server_on_v4_only(void **state)
{
  (void)state;
  one_family_case(AF_INET);
}

static void test_server_on_both_first_family_wins(void **state)
{
  (void)state;
  ak_loop *loop = t_loop_new();
  listener l6 = listen_on(AF_INET6, 0, false);
  listener l4 = listen_on(AF_INET, l6.port, false);
  alist a;
  int64_t el;
  for (int k = 0; k < 2; k++) {
    int fam[2] = {k ? AF_INET : AF_INET6, k ? AF_INET6 : AF_INET};
    uint16_t port[2] = {l6.port, l6.port};
    ak_future *f = race(loop, make_list(&a, 2, fam, port), NULL, &el);
    expect_winner(f, fam[0]);
    ak_future_release(f);
  }
  listener_close(&l6);
  listener_close(&l4);
  ak_loop_free(loop);
}

/* The first address drops SYNs: the other family's attempt starts after
 * the stagger and wins; nothing waits for the connect timeout. */
static void black_hole_case(int bad_family)
{
  ak_loop *loop = t_loop_new();
  int good_family = bad_family == AF_INET ? AF_INET6 : AF_INET;
  listener bad = listen_on(bad_family, 0, true);
  listener good = listen_on(good_family, 0, false);
  int fam[2] = {bad_family, good_family};
  uint16_t port[2] = {bad.port, good.port};
  alist a;
  ak_connect_options o = {.attempt_timeout_ns = 10000 * MS}; /* default 250 ms stagger */
  int64_t el;
  int fds0 = open_fds();
  ak_future *f = race(loop, make_list(&a, 2, fam, port), &o, &el);
  expect_winner(f, good_family);
  assert_true(el >= 240 * MS);  /* the first attempt had its 250 ms */
  assert_true(el < 3000 * MS);  /* stagger plus a loopback connect, not 10 s */
  ak_future_release(f);
  /* The losing attempt is cancelled and its socket closed. */
  for (int i = 0; i < 100 && open_fds() > fds0; i++)
    ak_loop_run(loop, AK_RUN_NOWAIT), usleep(10000);
  assert_int_equal(open_fds(), fds0);
  listener_close(&bad);
  listener_close(&good);
  ak_loop_free(loop);
}

static void test_black_hole_v6_falls_back_to_v4(void **state)
{
  (void)state;
  black_hole_case(AF_INET6);
}

static void test_black_hole_v4_falls_back_to_v6(void **state)
{
  (void)state;
  black_hole_case(AF_INET);
}

/* Two IPv6 black holes, then IPv4: interleaved, IPv4 is the second
 * attempt (one stagger), not the third (two). */
static void test_families_interleaved(void **state)
{
  (void)state;
  ak_loop *loop = t_loop_new();
  listener b1 = listen_on(AF_INET6, 0, true);
  listener b2 = listen_on(AF_INET6, 0, true);
  listener good = listen_on(AF_INET, 0, false);
  int fam[3] = {AF_INET6, AF_INET6, AF_INET};
  uint16_t port[3] = {b1.port, b2.port, good.port};
  alist a;
  ak_connect_options o = {.stagger_ns = 600 * MS};
  int64_t el;
  ak_future *f = race(loop, make_list(&a, 3, fam, port), &o, &el);
  expect_winner(f, AF_INET);
  assert_true(el >= 590 * MS);
  assert_true(el < 1150 * MS); /* two staggers would be 1.2 s */
  ak_future_release(f);
  listener_close(&b1);
  listener_close(&b2);
  listener_close(&good);
  ak_loop_free(loop);
}

static void test_family_restriction(void **state)
{
  (void)state;
  ak_loop *loop = t_loop_new();
  listener l6 = listen_on(AF_INET6, 0, false);
  int fam[2] = {AF_INET6, AF_INET};
  uint16_t port[2] = {l6.port, l6.port};
  alist a;
  int64_t el;
  ak_connect_options o = {.family = AF_INET}; /* -4: the v6 server is not tried */
  ak_future *f = race(loop, make_list(&a, 2, fam, port), &o, &el);
  assert_int_equal(ak_future_result(f), -ECONNREFUSED);
  assert_non_null(strstr(ak_future_detail(f), "127.0.0.1"));
  ak_future_release(f);
  o.family = AF_INET6;
  f = race(loop, make_list(&a, 2, fam, port), &o, &el);
  expect_winner(f, AF_INET6);
  ak_future_release(f);
  /* By name: an IPv4 literal with -6 has no address. */
  f = ak_connect_name(loop, "127.0.0.1", l6.port, &o);
  assert_int_equal(ak_future_wait(f, WAIT), 0);
  assert_int_equal(ak_future_result(f), AK_ERESOLVE);
  ak_future_release(f);
  o.family = 12345;
  f = ak_connect_name(loop, "::1", l6.port, &o);
  assert_int_equal(ak_future_wait(f, WAIT), 0);
  assert_int_equal(ak_future_result(f), -EINVAL);
  ak_future_release(f);
  listener_close(&l6);
  ak_loop_free(loop);
}

static void test_by_name(void **state)
{
  (void)state;
  ak_loop *loop = t_loop_new();
  listener l6 = listen_on(AF_INET6, 0, false);
  listener l4 = listen_on(AF_INET, l6.port, false);
  struct { const char *name; int family; } t[] = {
      {"127.0.0.1", AF_INET}, {"::1", AF_INET6}, {"localhost", 0}};
  for (size_t i = 0; i < sizeof t / sizeof *t; i++) {
    ak_future *f = ak_connect_name(loop, t[i].name, l6.port, NULL);
    assert_int_equal(ak_future_wait(f, WAIT), 0);
    if (ak_future_is_error(f))
      fail_msg("%s: %s", t[i].name, ak_future_detail(f) ? ak_future_detail(f) : "");
    int fd = (int)ak_future_result(f);
    if (t[i].family)
      assert_int_equal(peer_family(fd), t[i].family);
    close(fd);
    ak_future_release(f);
  }
  ak_future *f = ak_connect_name(loop, "no-such-host.invalid", 80, NULL);
  assert_int_equal(ak_future_wait(f, WAIT), 0);
  assert_int_equal(ak_future_result(f), AK_ERESOLVE);
  ak_future_release(f);
  f = ak_connect_name(loop, "127.0.0.1", dead_port(), NULL);
  assert_int_equal(ak_future_wait(f, WAIT), 0);
  assert_int_equal(ak_future_result(f), -ECONNREFUSED);
  ak_future_release(f);
  listener_close(&l6);
  listener_close(&l4);
  ak_loop_free(loop);
}

/* Every address drops SYNs: each attempt ends at its own deadline. */
static void test_attempt_deadline_holds(void **state)
{
  (void)state;
  ak_loop *loop = t_loop_new();
  listener b6 = listen_on(AF_INET6, 0, true);
  listener b4 = listen_on(AF_INET, 0, true);
  int fam[2] = {AF_INET6, AF_INET};
  uint16_t port[2] = {b6.port, b4.port};
  alist a;
  ak_connect_options o = {.attempt_timeout_ns = 400 * MS, .stagger_ns = 100 * MS};
  int64_t el;
  int fds0 = open_fds();
  ak_future *f = race(loop, make_list(&a, 2, fam, port), &o, &el);
  assert_int_equal(ak_future_result(f), -ETIMEDOUT);
  assert_true(el >= 490 * MS); /* the second attempt started at 100 ms */
  assert_true(el < 3000 * MS);
  ak_future_release(f);
  assert_int_equal(open_fds(), fds0);
  listener_close(&b6);
  listener_close(&b4);
  ak_loop_free(loop);
}

static void test_cancel_closes_everything(void **state)
{
  (void)state;
  ak_loop *loop = t_loop_new();
  listener b6 = listen_on(AF_INET6, 0, true);
  listener b4 = listen_on(AF_INET, 0, true);
  int fam[2] = {AF_INET6, AF_INET};
  uint16_t port[2] = {b6.port, b4.port};
  alist a;
  ak_connect_options o = {.stagger_ns = 50 * MS};
  int fds0 = open_fds();
  ak_future *f = ak_connect_addrinfo(loop, make_list(&a, 2, fam, port), &o);
  ak_future *nap = ak_sleep(loop, 150 * MS); /* both attempts in flight */
  assert_int_equal(ak_future_wait(nap, WAIT), 0);
  ak_future_release(nap);
  int64_t t0 = ak_now_ns();
  ak_future_cancel(f);
  assert_int_equal(ak_future_wait(f, WAIT), 0);
  assert_int_equal(ak_future_state(f), AK_CANCELLED);
  assert_true(ak_now_ns() - t0 < 2000 * MS);
  ak_future_release(f);
  assert_int_equal(open_fds(), fds0);
  listener_close(&b6);
  listener_close(&b4);
  ak_loop_free(loop);
}

int main(void)
{
  t_require_uring();
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_server_on_v6_only),
      cmocka_unit_test(test_server_on_v4_only),
      cmocka_unit_test(test_server_on_both_first_family_wins),
      cmocka_unit_test(test_black_hole_v6_falls_back_to_v4),
      cmocka_unit_test(test_black_hole_v4_falls_back_to_v6),
      cmocka_unit_test(test_families_interleaved),
      cmocka_unit_test(test_family_restriction),
      cmocka_unit_test(test_by_name),
      cmocka_unit_test(test_attempt_deadline_holds),
      cmocka_unit_test(test_cancel_closes_everything),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
