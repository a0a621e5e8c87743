/* test_http_proxy.c: the HTTP client's proxies and credentials (http.h),
 * from the caller's side, against scripted servers on 127.0.0.1 run in a
 * thread of this test: proxy URLs and no_proxy lists, absolute-form
 * requests and Basic lines, CONNECT and SOCKS5 handshakes byte for byte,
 * each refusal's error code, a proxy that is down, a cancel mid-handshake,
 * Authorization and Cookie kept to their origin on redirects. Real proxies
 * are tests/test_akget_proxy.sh's. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
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

static const int64_t WAIT = INT64_C(20000000000);

/* ---- The scripted server ------------------------------------------------------------ */

typedef struct server server;
typedef void (*serve_fn)(server *s, int fd);

struct server {
  int lfd;
  uint16_t port;
  serve_fn serve;
  int arg;                     /* the script's parameter (a status, a code) */
  pthread_t thread;
  pthread_mutex_t lock;
  char seen[8192];             /* what the clients sent, all connections */
  size_t seen_len;
  int conns;
  volatile int stop;
};

static void record(server *s, const void *data, size_t n)
{
  pthread_mutex_lock(&s->lock);
  if (s->seen_len + n > sizeof s->seen - 1)
    n = sizeof s->seen - 1 - s->seen_len;
  memcpy(s->seen + s->seen_len, data, n);
  s->seen_len += n;
  s->seen[s->seen_len] = '\0';
  pthread_mutex_unlock(&s->lock);
}

/* Reads exactly n bytes (5 s at most); false on EOF or timeout. */
static bool read_n(int fd, unsigned char *buf, size_t n)
{
  size_t got = 0;
  while (got < n) {
    struct pollfd p = {.fd = fd, .events = POLLIN};
    if (poll(&p, 1, 5000) <= 0)
      return false;
    ssize_t r = recv(fd, buf + got, n - got, 0);
    if (r <= 0)
      return false;
    got += (size_t)r;
  }
  return true;
}

/* Reads a request head (to its blank line), recorded. */
static bool read_head(server *s, int fd)
{
  char buf[4096];
  size_t n = 0;
  while (n < sizeof buf - 1) {
    if (!read_n(fd, (unsigned char *)buf + n, 1))
      return false;
    n++;
    if (n >= 4 && memcmp(buf + n - 4, "\r\n\r\n", 4) == 0)
      break;
  }
  record(s, buf, n);
  return true;
}

static void say(int fd, const char *text)
{
  (void)!send(fd, text, strlen(text), MSG_NOSIGNAL);
}

/* An origin (or an http proxy in absolute form): "hello" to each request. */
static void serve_hello(server *s, int fd)
{
  while (read_head(s, fd))
    say(fd, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello");
}

/* An http proxy or origin answering every request with status s->arg. */
static void serve_status(server *s, int fd)
{
  char reply[128];
  snprintf(reply, sizeof reply, "HTTP/1.1 %d Scripted\r\nContent-Length: 0\r\n\r\n", s->arg);
  if (read_head(s, fd))
    say(fd, reply);
}

static void serve_garbage(server *s, int fd)
{
  if (read_head(s, fd))
    say(fd, "SSH-2.0-OpenSSH\r\n\r\n");
}

static void serve_silent(server *s, int fd)
{
  unsigned char b[1];
  read_head(s, fd);
  read_n(fd, b, 1); /* holds the connection until the client goes */
}

/* SOCKS5: arg 0 accepts, 0xFF refuses every method, 2 wants "su"/"spw",
 * 100 + code answers the CONNECT with that failure code. */
static void serve_socks(server *s, int fd)
{
  unsigned char b[600];
  if (!read_n(fd, b, 2) || !read_n(fd, b + 2, b[1]))
    return;
  record(s, b, 2u + b[1]);
  unsigned char method = s->arg == 0xFF ? 0xFF : s->arg == 2 ? 2 : 0;
  unsigned char m[2] = {5, method};
  (void)!send(fd, m, 2, MSG_NOSIGNAL);
  if (method == 0xFF)
    return;
  if (method == 2) {
    if (!read_n(fd, b, 2) || !read_n(fd, b + 2, b[1] + 1u) || !read_n(fd, b + 3 + b[1], b[2 + b[1]]))
      return;
    size_t n = 3u + b[1] + b[2 + b[1]];
    record(s, b, n);
    bool ok = n == 3 + 2 + 3 && memcmp(b + 2, "su", 2) == 0 && memcmp(b + 5, "spw", 3) == 0;
    unsigned char r[2] = {1, ok ? 0 : 1};
    (void)!send(fd, r, 2, MSG_NOSIGNAL);
    if (!ok)
      return;
  }
  if (!read_n(fd, b, 4))
    return;
  size_t alen = b[3] == 1 ? 4 : b[3] == 4 ? 16 : 0;
  if (b[3] == 3) {
    if (!read_n(fd, b + 4, 1))
      return;
    alen = 1u + b[4];
    if (!read_n(fd, b + 5, b[4] + 2u))
      return;
  } else if (!read_n(fd, b + 4, alen + 2)) {
    return;
  }
  record(s, b, 4 + alen + 2);
  unsigned char rep[10] = {5, s->arg >= 100 ? (unsigned char)(s->arg - 100) : 0, 0, 1, 127, 0, 0, 1, 0, 80};
  (void)!send(fd, rep, sizeof rep, MSG_NOSIGNAL);
  if (s->arg < 100)
    serve_hello(s, fd);
}

static void *server_main(void *arg)
{
  server *s = arg;
  while (!s->stop) {
    struct pollfd p = {.fd = s->lfd, .events = POLLIN};
    if (poll(&p, 1, 50) <= 0)
      continue;
    int fd = accept(s->lfd, NULL, NULL);
    if (fd < 0)
      continue;
    s->conns++;
    s->serve(s, fd);
    close(fd);
  }
  return NULL;
}

static server *server_start(serve_fn serve, int arg)
{
  server *s = calloc(1, sizeof *s);
  s->serve = serve;
  s->arg = arg;
  pthread_mutex_init(&s->lock, NULL);
  s->lfd = ak_tcp_listen("127.0.0.1", 0, 16);
  assert_true(s->lfd >= 0);
  s->port = (uint16_t)ak_socket_port(s->lfd);
  s->thread = t_thread_start(server_main, s, 0);
  return s;
}

static void server_stop(server *s)
{
  s->stop = 1;
  t_thread_join(s->thread);
  close(s->lfd);
  pthread_mutex_destroy(&s->lock);
  free(s);
}

/* ---- Helpers -------------------------------------------------------------------------- */

typedef struct body {
  char data[256];
  size_t len;
} body;

static int to_body(const void *data, size_t len, int64_t offset, void *arg)
{
  body *b = arg;
  (void)offset;
  if (b->len + len < sizeof b->data) {
    memcpy(b->data + b->len, data, len);
    b->len += len;
  }
  return 0;
}

/* GETs url through a client made with opts; returns the settled future. */
static ak_future *get(ak_loop *loop, ak_http_client *c, const char *url, const char *userpwd,
                      unsigned flags, const char *const *headers, size_t nh, body *b)
{
  ak_http_request rq = AK_HTTP_REQUEST_INIT(url);
  rq.on_body = to_body;
  rq.arg = b;
  rq.userpwd = userpwd;
  rq.flags = flags;
  rq.headers = headers;
  rq.header_count = nh;
  ak_future *f = ak_http_get(c, &rq);
  assert_non_null(f);
  assert_int_equal(ak_future_wait(f, WAIT), 0);
  (void)loop;
  return f;
}

static void expect_fail(ak_future *f, int err, const char *in_detail)
{
  if (ak_future_result(f) != err)
    fail_msg("got %s (%s), want %s", ak_err_name((int)ak_future_result(f)),
             ak_future_detail(f) ? ak_future_detail(f) : "", ak_err_name(err));
  const char *d = ak_future_detail(f);
  assert_non_null(d);
  if (in_detail && !strstr(d, in_detail))
    fail_msg("detail '%s' lacks '%s'", d, in_detail);
}

static ak_http_client *client_with(ak_loop *loop, const char *http_proxy, const char *https_proxy,
                                   const char *no_proxy)
{
  ak_http_options o = {0};
  o.http_proxy = http_proxy;
  o.https_proxy = https_proxy;
  o.no_proxy = no_proxy;
  o.head_timeout_ns = INT64_C(5000000000);
  o.connect_timeout_ns = INT64_C(5000000000);
  ak_http_client *c = NULL;
  assert_int_equal(ak_http_client_new(loop, &o, &c), 0);
  return c;
}

static void client_done(ak_loop *loop, ak_http_client *c)
{
  assert_int_equal(ak_http_client_free(c), 0);
  ak_loop_run(loop, AK_RUN_NOWAIT);
}

/* ---- Parsing ---------------------------------------------------------------------------- */

static void test_proxy_url_check(void **state)
{
  (void)state;
  const char *good[] = {"http://127.0.0.1:3128", "127.0.0.1:3128", "proxy.example", "http://p/",
                        "socks5://[::1]:1080", "socks5h://u:p%40ss@h:9", "HTTP://H:1",
                        "http://user@h", ""};
  for (size_t i = 0; i < sizeof good / sizeof *good; i++)
    if (ak_http_proxy_check(good[i]) != 0)
      fail_msg("'%s' refused", good[i]);
  assert_int_equal(ak_http_proxy_check(NULL), 0);
  const char *bad[] = {"ftp://h", "https://h:1", "socks4://h", "http://h:0", "http://h:65536",
                       "http://h:12x", "http://[::1", "http://[zz]:1", "http://h/path",
                       "http://h b", "http://", "http://:80", "socks5://u%zz@h",
                       "http://h?x", "http://ü"};
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
    if (ak_http_proxy_check(bad[i]) != AK_EPROXYURL)
      fail_msg("'%s' accepted", bad[i]);
  /* SOCKS5 carries a user in one length byte. */
  char longuser[400] = "socks5://";
  memset(longuser + 9, 'a', 300);
  strcpy(longuser + 309, "@h");
  assert_int_equal(ak_http_proxy_check(longuser), AK_EPROXYURL);
  longuser[5] = 'x'; /* "socksx": not a scheme */
  assert_int_equal(ak_http_proxy_check(longuser), AK_EPROXYURL);
}

static void test_no_proxy_lists(void **state)
{
  (void)state;
  struct { const char *list, *host; unsigned port; bool match; } t[] = {
      {"*", "anything.example", 80, true},
      {"example.com", "example.com", 80, true},
      {"example.com", "a.b.example.com", 80, true},
      {".example.com", "a.example.com", 443, true},
      {".example.com", "example.com", 443, true},
      {"example.com", "badexample.com", 80, false},
      {"example.com", "example.com.evil", 80, false},
      {"EXAMPLE.com", "www.Example.COM", 80, true},
      {"example.com:8080", "example.com", 8080, true},
      {"example.com:8080", "example.com", 80, false},
      {"10.0.0.0/8", "10.1.2.3", 80, true},
      {"10.0.0.0/8", "11.1.2.3", 80, false},
      {"192.168.1.5", "192.168.1.5", 80, true},
      {"192.168.1.5", "192.168.1.50", 80, false},
      {"127.0.0.1:9", "127.0.0.1", 9, true},
      {"127.0.0.1:9", "127.0.0.1", 10, false},
      {"fd00::/8", "fd12::1", 80, true},
      {"fd00::/8", "fe80::1", 80, false},
      {"::1", "::1", 443, true},
      {"[::1]:443", "::1", 443, true},
      {"[::1]:443", "::1", 80, false},
      {"a.example, 10.0.0.0/8 ,b.example", "b.example", 1, true},
      {"10.0.0.0/8", "ten.example", 1, false}, /* an address range never matches a name */
      {"", "example.com", 80, false},
      {"10.0.0.0/33, example.com", "example.com", 80, true}, /* a bad entry matches nothing */
  };
  for (size_t i = 0; i < sizeof t / sizeof *t; i++)
    if (ak_http_no_proxy_match(t[i].list, t[i].host, (uint16_t)t[i].port) != t[i].match)
      fail_msg("'%s' vs %s:%u: want %d", t[i].list, t[i].host, t[i].port, t[i].match);
  assert_false(ak_http_no_proxy_match(NULL, "h", 1));
  assert_int_equal(ak_http_no_proxy_check("*, .a.b, 1.2.3.4, 10.0.0.0/8, ::1, [::1]:80, h:1"), 0);
  const char *bad[] = {"10.0.0.0/33", "fd00::/129", "h:0", "h:x", "[::1", "a/b", "h:70000",
                       "[1.2.3.4]", "we!rd"};
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
    if (ak_http_no_proxy_check(bad[i]) != AK_EPROXYURL)
      fail_msg("'%s' accepted", bad[i]);
}

static void test_url_userinfo(void **state)
{
  (void)state;
  ak_url *u;
  assert_int_equal(ak_url_parse("http://us%40er:p%3Aw@h:81/x", &u), 0);
  assert_string_equal(u->user, "us@er");
  assert_string_equal(u->password, "p:w");
  assert_string_equal(u->text, "http://h:81/x"); /* no credentials in the text */
  assert_string_equal(u->authority, "h:81");
  ak_url_free(u);
  assert_int_equal(ak_url_parse("http://solo@h/", &u), 0);
  assert_string_equal(u->user, "solo");
  assert_null(u->password);
  ak_url_free(u);
  assert_int_equal(ak_url_parse("http://h/", &u), 0);
  assert_null(u->user);
  ak_url_free(u);
}

static void test_client_rejects_bad_proxy(void **state)
{
  (void)state;
  ak_loop *loop = t_loop_new();
  ak_http_client *c = NULL;
  ak_http_options o = {0};
  o.http_proxy = "ftp://nope";
  assert_int_equal(ak_http_client_new(loop, &o, &c), AK_EPROXYURL);
  o.http_proxy = NULL;
  o.https_proxy = "http://h:0";
  assert_int_equal(ak_http_client_new(loop, &o, &c), AK_EPROXYURL);
  o.https_proxy = NULL;
  o.no_proxy = "10.0.0.0/99";
  assert_int_equal(ak_http_client_new(loop, &o, &c), AK_EPROXYURL);
  assert_null(c);
  ak_loop_free(loop);
}

/* ---- HTTP proxies ------------------------------------------------------------------------- */

static void test_forward_absolute_form_and_basic(void **state)
{
  (void)state;
  ak_loop *loop = t_loop_new();
  server *px = server_start(serve_hello, 0);
  char proxy[128];
  snprintf(proxy, sizeof proxy, "http://pu:p%%20w@127.0.0.1:%u", px->port);
  ak_http_client *c = client_with(loop, proxy, NULL, NULL);
  body b = {0};
  ak_future *f = get(loop, c, "http://origin.invalid:8080/a?b=1", "au:ap", 0, NULL, 0, &b);
  assert_int_equal(ak_future_result(f), 200);
  assert_int_equal(b.len, 5);
  ak_future_release(f);
  /* A second request, to another origin, reuses the connection to the proxy. */
  body b2 = {0};
  f = get(loop, c, "http://other.invalid/z", NULL, 0, NULL, 0, &b2);
  assert_int_equal(ak_future_result(f), 200);
  assert_true(((ak_http_response *)ak_future_value(f))->reused);
  ak_future_release(f);
  client_done(loop, c);
  /* Absolute form, the Host of the origin, both Basic lines. */
  assert_non_null(strstr(px->seen, "GET http://origin.invalid:8080/a?b=1 HTTP/1.1\r\n"
                                   "Host: origin.invalid:8080\r\n"));
  assert_non_null(strstr(px->seen, "Authorization: Basic YXU6YXA=\r\n"));       /* au:ap */
  assert_non_null(strstr(px->seen, "Proxy-Authorization: Basic cHU6cCB3\r\n")); /* pu:p w */
  assert_non_null(strstr(px->seen, "GET http://other.invalid/z HTTP/1.1\r\n"));
  assert_int_equal(px->conns, 1);
  server_stop(px);
  ak_loop_free(loop);
}

static void test_forward_407(void **state)
{
  (void)state;
  ak_loop *loop = t_loop_new();
  server *px = server_start(serve_status, 407);
  char proxy[64];
  snprintf(proxy, sizeof proxy, "127.0.0.1:%u", px->port);
  ak_http_client *c = client_with(loop, proxy, proxy, NULL);
  body b = {0};
  ak_future *f = get(loop, c, "http://origin.invalid/", NULL, 0, NULL, 0, &b);
  expect_fail(f, AK_EPROXYAUTH, "407");
  ak_future_release(f);
  f = get(loop, c, "https://origin.invalid/", NULL, 0, NULL, 0, &b);
  expect_fail(f, AK_EPROXYAUTH, "407");
  assert_non_null(strstr(ak_future_detail(f), "CONNECT origin.invalid:443"));
  ak_future_release(f);
  client_done(loop, c);
  assert_non_null(strstr(px->seen, "CONNECT origin.invalid:443 HTTP/1.1\r\nHost: origin.invalid:443\r\n"));
  assert_non_null(strstr(px->seen, "GET http://origin.invalid/ HTTP/1.1\r\n"));
  server_stop(px);
  ak_loop_free(loop);
}

static void test_connect_refusals(void **state)
{
  (void)state;
  struct { serve_fn fn; int arg; int err; const char *text; } t[] = {
      {serve_status, 403, AK_EPROXYREFUSED, "403"},
      {serve_status, 502, AK_EPROXYREFUSED, "502"},
      {serve_garbage, 0, AK_EPROXYPROTO, "not an HTTP reply"},
  };
  for (size_t i = 0; i < sizeof t / sizeof *t; i++) {
    ak_loop *loop = t_loop_new();
    server *px = server_start(t[i].fn, t[i].arg);
    char proxy[64];
    snprintf(proxy, sizeof proxy, "http://127.0.0.1:%u", px->port);
    ak_http_client *c = client_with(loop, NULL, proxy, NULL);
    body b = {0};
    ak_future *f = get(loop, c, "https://origin.invalid:8443/x", NULL, 0, NULL, 0, &b);
    expect_fail(f, t[i].err, t[i].text);
    ak_future_release(f);
    client_done(loop, c);
    server_stop(px);
    ak_loop_free(loop);
  }
}

static void test_proxy_basic_line(void **state)
{
  (void)state;
  ak_loop *loop = t_loop_new();
  server *px = server_start(serve_status, 407);
  char proxy[128];
  /* RFC 7617's example: Aladdin / open sesame. */
  snprintf(proxy, sizeof proxy, "http://Aladdin:open%%20sesame@127.0.0.1:%u", px->port);
  ak_http_client *c = client_with(loop, NULL, proxy, NULL);
  body b = {0};
  ak_future *f = get(loop, c, "https://o.invalid/", NULL, 0, NULL, 0, &b);
  expect_fail(f, AK_EPROXYAUTH, NULL);
  /* The password is in no detail. */
  assert_null(strstr(ak_future_detail(f), "sesame"));
  ak_future_release(f);
  client_done(loop, c);
  assert_non_null(strstr(px->seen, "Proxy-Authorization: Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==\r\n"));
  server_stop(px);
  ak_loop_free(loop);
}

static void test_proxy_down(void **state)
{
  (void)state;
  ak_loop *loop = t_loop_new();
  int lfd = ak_tcp_listen("127.0.0.1", 0, 1);
  int port = ak_socket_port(lfd);
  close(lfd); /* nobody listens there now */
  char proxy[64];
  snprintf(proxy, sizeof proxy, "http://127.0.0.1:%d", port);
  ak_http_client *c = client_with(loop, proxy, proxy, NULL);
  body b = {0};
  ak_future *f = get(loop, c, "http://o.invalid/", NULL, 0, NULL, 0, &b);
  expect_fail(f, AK_EPROXYCONNECT, proxy);
  ak_future_release(f);
  char socks[64];
  snprintf(socks, sizeof socks, "socks5h://127.0.0.1:%d", port);
  ak_http_client *c2 = client_with(loop, socks, NULL, NULL);
  f = get(loop, c2, "http://o.invalid/", NULL, 0, NULL, 0, &b);
  expect_fail(f, AK_EPROXYCONNECT, "socks5h://");
  ak_future_release(f);
  client_done(loop, c);
  client_done(loop, c2);
  ak_loop_free(loop);
}

static void test_cancel_mid_handshake(void **state)
{
  (void)state;
  ak_loop *loop = t_loop_new();
  server *px = server_start(serve_silent, 0);
  char proxy[64];
  snprintf(proxy, sizeof proxy, "http://127.0.0.1:%u", px->port);
  ak_http_client *c = client_with(loop, NULL, proxy, NULL);
  ak_http_request rq = AK_HTTP_REQUEST_INIT("https://o.invalid/");
  ak_future *f = ak_http_get(c, &rq);
  int64_t t0 = ak_now_ns();
  /* Run until the proxy has the CONNECT, then cancel. */
  while (px->seen_len == 0 && ak_now_ns() - t0 < WAIT)
    ak_loop_run(loop, AK_RUN_NOWAIT);
  assert_true(px->seen_len > 0);
  ak_future_cancel(f);
  assert_int_equal(ak_future_wait(f, WAIT), 0);
  assert_true(ak_future_is_error(f) || ak_future_state(f) == AK_CANCELLED);
  assert_true(ak_now_ns() - t0 < INT64_C(4000000000)); /* not the head timeout */
  ak_future_release(f);
  client_done(loop, c);
  server_stop(px);
  ak_loop_free(loop);
}

static void test_no_proxy_goes_direct(void **state)
{
  (void)state;
  ak_loop *loop = t_loop_new();
  server *origin = server_start(serve_hello, 0);
  /* The proxy is dead: only a direct connection can succeed. */
  ak_http_client *c = client_with(loop, "http://127.0.0.1:1", NULL, "localhost, 127.0.0.0/8");
  char url[64];
  snprintf(url, sizeof url, "http://127.0.0.1:%u/x", origin->port);
  body b = {0};
  ak_future *f = get(loop, c, url, NULL, 0, NULL, 0, &b);
  assert_int_equal(ak_future_result(f), 200);
  ak_future_release(f);
  client_done(loop, c);
  assert_non_null(strstr(origin->seen, "GET /x HTTP/1.1\r\n")); /* origin form: no proxy */
  server_stop(origin);
  ak_loop_free(loop);
}

/* ---- SOCKS5 --------------------------------------------------------------------------------- */

static void socks_case(int arg, const char *scheme, const char *userinfo, const char *host,
                       int want_err, const char *want_text, const void *want_bytes, size_t want_len)
{
  ak_loop *loop = t_loop_new();
  server *px = server_start(serve_socks, arg);
  char proxy[128], url[128];
  snprintf(proxy, sizeof proxy, "%s://%s127.0.0.1:%u", scheme, userinfo, px->port);
  snprintf(url, sizeof url, "http://%s:8081/s", host);
  ak_http_client *c = client_with(loop, proxy, proxy, NULL);
  body b = {0};
  ak_future *f = get(loop, c, url, NULL, 0, NULL, 0, &b);
  if (want_err) {
    expect_fail(f, want_err, want_text);
  } else {
    if (ak_future_result(f) != 200)
      fail_msg("%s via %s: %s (%s)", url, proxy, ak_err_name((int)ak_future_result(f)),
               ak_future_detail(f) ? ak_future_detail(f) : "");
    assert_int_equal(b.len, 5);
    assert_memory_equal(b.data, "hello", 5);
  }
  ak_future_release(f);
  client_done(loop, c);
  if (want_bytes) {
    assert_true(px->seen_len >= want_len);
    if (!memmem(px->seen, px->seen_len, want_bytes, want_len))
      fail_msg("the proxy did not see the expected bytes");
  }
  server_stop(px);
  ak_loop_free(loop);
}

static void test_socks5h_sends_the_name(void **state)
{
  (void)state;
  /* greeting: no-auth only; CONNECT to the name, port 8081 (0x1f91). */
  static const unsigned char want[] = {5, 1, 0, 5, 1, 0, 3, 10, 'o', 'r', 'i', 'g', 'i', 'n', '.',
                                       't', 's', 't', 0x1f, 0x91};
  socks_case(0, "socks5h", "", "origin.tst", 0, NULL, want, sizeof want);
}

static void test_socks5_resolves_here(void **state)
{
  (void)state;
  /* 127.0.0.1 resolved here: an IPv4 address goes to the proxy. */
  static const unsigned char want[] = {5, 1, 0, 1, 127, 0, 0, 1, 0x1f, 0x91};
  socks_case(0, "socks5", "", "127.0.0.1", 0, NULL, want, sizeof want);
  /* A name resolved here ("localhost"): no name goes to the proxy. */
  ak_loop *loop = t_loop_new();
  server *px = server_start(serve_socks, 0);
  char proxy[64];
  snprintf(proxy, sizeof proxy, "socks5://127.0.0.1:%u", px->port);
  ak_http_client *c = client_with(loop, proxy, NULL, NULL);
  body b = {0};
  ak_future *f = get(loop, c, "http://localhost:8081/", NULL, 0, NULL, 0, &b);
  assert_int_equal(ak_future_result(f), 200);
  ak_future_release(f);
  client_done(loop, c);
  /* After the 3-byte greeting, the CONNECT's address type: IPv4 or IPv6. */
  assert_true(px->seen_len > 7);
  assert_int_equal((unsigned char)px->seen[3], 5);
  assert_true(px->seen[6] == 1 || px->seen[6] == 4);
  server_stop(px);
  ak_loop_free(loop);
  /* A name that does not resolve fails here, before the proxy hears of it. */
  socks_case(0, "socks5", "", "no-such-host.invalid", AK_ERESOLVE, "no-such-host.invalid", NULL, 0);
}

static void test_socks5_password(void **state)
{
  (void)state;
  /* Offers no-auth and username/password; sends RFC 1929's sub-negotiation. */
  static const unsigned char want[] = {5, 2, 0, 2, 1, 2, 's', 'u', 3, 's', 'p', 'w'};
  socks_case(2, "socks5h", "su:spw@", "o.tst", 0, NULL, want, sizeof want);
  socks_case(2, "socks5h", "su:bad@", "o.tst", AK_EPROXYAUTH, "rejected", NULL, 0);
  socks_case(2, "socks5h", "", "o.tst", AK_EPROXYAUTH, "password", NULL, 0);
  socks_case(0xFF, "socks5", "su:spw@", "127.0.0.1", AK_EPROXYAUTH, "no authentication", NULL, 0);
}

static void test_socks5_failure_codes(void **state)
{
  (void)state;
  socks_case(100 + 5, "socks5h", "", "o.tst", AK_EPROXYREFUSED, "connection refused", NULL, 0);
  socks_case(100 + 2, "socks5h", "", "o.tst", AK_EPROXYREFUSED, "not allowed by ruleset", NULL, 0);
  socks_case(100 + 4, "socks5h", "", "o.tst", AK_EPROXYREFUSED, "host unreachable", NULL, 0);
}

/* ---- Credentials and redirects ------------------------------------------------------------- */

/* An origin that redirects its first request to s->arg's port, then hellos. */
static void serve_redirect(server *s, int fd)
{
  if (!read_head(s, fd))
    return;
  char reply[160];
  snprintf(reply, sizeof reply,
           "HTTP/1.1 302 Found\r\nLocation: http://127.0.0.1:%d/after\r\nContent-Length: 0\r\n\r\n",
           s->arg);
  say(fd, reply);
  serve_hello(s, fd);
}

static void redirect_case(bool trusted, bool same_origin)
{
  ak_loop *loop = t_loop_new();
  server *b = server_start(serve_hello, 0);
  server *a = server_start(serve_redirect, 0);
  a->arg = same_origin ? a->port : b->port;
  ak_http_client *c = client_with(loop, NULL, NULL, NULL);
  char url[96];
  snprintf(url, sizeof url, "http://u:pw@127.0.0.1:%u/first", a->port);
  const char *hdrs[] = {"Cookie: sid=1", "X-Keep: yes"};
  body bd = {0};
  ak_future *f = get(loop, c, url, NULL, trusted ? AK_HTTP_LOCATION_TRUSTED : 0, hdrs, 2, &bd);
  assert_int_equal(ak_future_result(f), 200);
  ak_future_release(f);
  client_done(loop, c);
  const char *auth = "Authorization: Basic dTpwdw==\r\n"; /* u:pw */
  assert_non_null(strstr(a->seen, auth)); /* the first request has them */
  assert_non_null(strstr(a->seen, "Cookie: sid=1\r\n"));
  server *second = same_origin ? a : b;
  const char *after = strstr(second->seen, "GET /after");
  assert_non_null(after);
  bool keeps = trusted || same_origin;
  assert_int_equal(strstr(after, auth) != NULL, keeps);
  assert_int_equal(strstr(after, "Cookie: sid=1") != NULL, keeps);
  assert_non_null(strstr(after, "X-Keep: yes")); /* other headers go along */
  server_stop(a);
  server_stop(b);
  ak_loop_free(loop);
}

static void test_redirect_drops_credentials(void **state)
{
  (void)state;
  redirect_case(false, false);
}

static void test_redirect_same_origin_keeps(void **state)
{
  (void)state;
  redirect_case(false, true);
}

static void test_redirect_location_trusted(void **state)
{
  (void)state;
  redirect_case(true, false);
}

static void test_userpwd_wins_and_is_checked(void **state)
{
  (void)state;
  ak_loop *loop = t_loop_new();
  server *o = server_start(serve_hello, 0);
  ak_http_client *c = client_with(loop, NULL, NULL, NULL);
  char url[96];
  snprintf(url, sizeof url, "http://url:user@127.0.0.1:%u/", o->port);
  body b = {0};
  ak_future *f = get(loop, c, url, "opt:pw", 0, NULL, 0, &b);
  assert_int_equal(ak_future_result(f), 200);
  ak_future_release(f);
  f = get(loop, c, url, "inj:ect\r\nX: y", 0, NULL, 0, &b);
  assert_int_equal(ak_future_result(f), -EINVAL); /* header injection refused */
  ak_future_release(f);
  client_done(loop, c);
  assert_non_null(strstr(o->seen, "Authorization: Basic b3B0OnB3\r\n")); /* opt:pw */
  assert_null(strstr(o->seen, "dXJsOnVzZXI=")); /* url:user: not sent */
  server_stop(o);
  ak_loop_free(loop);
}

int main(void)
{
  t_require_uring();
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_proxy_url_check),
      cmocka_unit_test(test_no_proxy_lists),
      cmocka_unit_test(test_url_userinfo),
      cmocka_unit_test(test_client_rejects_bad_proxy),
      cmocka_unit_test(test_forward_absolute_form_and_basic),
      cmocka_unit_test(test_forward_407),
      cmocka_unit_test(test_connect_refusals),
      cmocka_unit_test(test_proxy_basic_line),
      cmocka_unit_test(test_proxy_down),
      cmocka_unit_test(test_cancel_mid_handshake),
      cmocka_unit_test(test_no_proxy_goes_direct),
      cmocka_unit_test(test_socks5h_sends_the_name),
      cmocka_unit_test(test_socks5_resolves_here),
      cmocka_unit_test(test_socks5_password),
      cmocka_unit_test(test_socks5_failure_codes),
      cmocka_unit_test(test_redirect_drops_credentials),
      cmocka_unit_test(test_redirect_same_origin_keeps),
      cmocka_unit_test(test_redirect_location_trusted),
      cmocka_unit_test(test_userpwd_wins_and_is_checked),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
