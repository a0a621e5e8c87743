/* test_http.c: the HTTP client and URLs of http.h, from the caller's side,
 * against the project's misbehaving server (httpbad.c) on 127.0.0.1. */
#include <errno.h>
#include <malloc.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <signal.h>
#include <string.h>
#include <sys/resource.h>
#include <pthread.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include <asynckit.h>

#include "helpers.h"
#include "httpbad.h"

static uint16_t port;
static const int64_t WAIT = INT64_C(20000000000); /* every wait: 20 s at most */

static char *url_of(const char *path)
{
  static char buf[8][256];
  static int i;
  char *u = buf[i++ % 8];
  snprintf(u, sizeof buf[0], "http://127.0.0.1:%u%s", port, path);
  return u;
}

/* ---- URLs ---------------------------------------------------------------------------- */

static void test_url_parse_parts(void **state)
{
  (void)state;
  ak_url *u;
  assert_int_equal(ak_url_parse("HTTP://Example.COM/a/b?x=1#frag", &u), 0);
  assert_string_equal(u->scheme, "http");
  assert_string_equal(u->host, "example.com");
  assert_int_equal(u->port, 80);
  assert_string_equal(u->target, "/a/b?x=1");
  assert_string_equal(u->authority, "example.com");
  assert_string_equal(u->text, "http://example.com/a/b?x=1");
  ak_url_free(u);

  assert_int_equal(ak_url_parse("https://h:8443", &u), 0);
  assert_int_equal(u->port, 8443);
  assert_string_equal(u->target, "/");
  assert_string_equal(u->authority, "h:8443");
  ak_url_free(u);

  assert_int_equal(ak_url_parse("https://h:443/x", &u), 0);
  assert_string_equal(u->authority, "h"); /* the default port is not repeated */
  ak_url_free(u);
}

static void test_url_ipv6(void **state)
{
  (void)state;
  ak_url *u;
  assert_int_equal(ak_url_parse("http://[::1]:8080/p", &u), 0);
  assert_true(u->ipv6);
  assert_string_equal(u->host, "::1");
  assert_int_equal(u->port, 8080);
  assert_string_equal(u->authority, "[::1]:8080");
  assert_null(u->zone);
  ak_url_free(u);

  assert_int_equal(ak_url_parse("http://[fe80::1%25eth0]/", &u), 0);
  assert_string_equal(u->host, "fe80::1");
  assert_string_equal(u->zone, "eth0");
  ak_url_free(u);

  assert_int_equal(ak_url_parse("http://[fe80::1%eth0]/", &u), AK_EURL); /* "%25" is required */
  assert_int_equal(ak_url_parse("http://[::1/", &u), AK_EURL);
}

static void test_url_percent_encoding(void **state)
{
  (void)state;
  ak_url *u;
  assert_int_equal(ak_url_parse("http://h/a%20b/c%2Fd?q=%41", &u), 0);
  assert_string_equal(u->target, "/a%20b/c%2Fd?q=%41"); /* kept, not decoded */
  ak_url_free(u);
  assert_int_equal(ak_url_parse("http://h/with space/\xc3\xa9", &u), 0);
  assert_string_equal(u->target, "/with%20space/%C3%A9"); /* made sendable */
  ak_url_free(u);
  assert_int_equal(ak_url_parse("http://h/a/./b/../c", &u), 0);
  assert_string_equal(u->target, "/a/c");
  ak_url_free(u);
}

static void test_url_rejects(void **state)
{
  (void)state;
  ak_url *u = NULL;
  assert_int_equal(ak_url_parse("ftp://h/x", &u), AK_EURLSCHEME);
  assert_int_equal(ak_url_parse("/just/a/path", &u), AK_EURL);
  assert_int_equal(ak_url_parse("http:///nohost", &u), AK_EURL);
  assert_int_equal(ak_url_parse("http://h:0/", &u), AK_EURL);
  assert_int_equal(ak_url_parse("http://h:65536/", &u), AK_EURL);
  assert_int_equal(ak_url_parse("http://h:12x/", &u), AK_EURL);
  assert_int_equal(ak_url_parse("", &u), AK_EURL);
  assert_null(u);
}

/* The plain URLs of a list are parsed without uriparser (url.c's
 * parse_plain); what they give must be what the full parse gives, and
 * every URL just outside that form must still reach the full parse. */
static void test_url_plain_form(void **state)
{
  (void)state;
  static const struct {
    const char *in, *host, *target, *authority, *text;
    uint16_t port;
  } cases[] = {
      {"http://127.0.0.1:8080/root/m/f00001", "127.0.0.1", "/root/m/f00001", "127.0.0.1:8080",
       "http://127.0.0.1:8080/root/m/f00001", 8080},
      {"http://h", "h", "/", "h", "http://h/", 80},
      {"http://h?q=1/2?3", "h", "/?q=1/2?3", "h", "http://h/?q=1/2?3", 80},
      {"http://h:080/A//b/", "h", "/A//b/", "h", "http://h/A//b/", 80},
      {"https://h:80/x", "h", "/x", "h:80", "https://h:80/x", 80},
      /* a port with a leading zero, or the scheme's own given: the text is
       * made, not copied as it stands */
      {"http://h:08080/x", "h", "/x", "h:8080", "http://h:8080/x", 8080},
      {"https://h:443/x?y", "h", "/x?y", "h", "https://h/x?y", 443},
      {"http://h:8080?q", "h", "/?q", "h:8080", "http://h:8080/?q", 8080},
      {"http://h/.a/a..b/~u/(x);p=1,2@c:d", "h", "/.a/a..b/~u/(x);p=1,2@c:d", "h",
       "http://h/.a/a..b/~u/(x);p=1,2@c:d", 80},
      /* outside the plain form: the full parse's answer */
      {"http://h/a/./b/../c", "h", "/a/c", "h", "http://h/a/c", 80},
      {"http://h/a/..", "h", "/", "h", "http://h/", 80},
      {"http://H.example/x#frag", "h.example", "/x", "h.example", "http://h.example/x", 80},
      {"  http://h/x \r\n", "h", "/x", "h", "http://h/x", 80},
      {"http://u@h/x", "h", "/x", "h", "http://h/x", 80},
      {"http://h:/x", "h", "/x", "h", "http://h/x", 80},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    ak_url *u = NULL;
    assert_int_equal(ak_url_parse(cases[i].in, &u), 0);
    assert_string_equal(u->host, cases[i].host);
    assert_string_equal(u->target, cases[i].target);
    assert_string_equal(u->authority, cases[i].authority);
    assert_string_equal(u->text, cases[i].text);
    assert_int_equal(u->port, cases[i].port);
    assert_false(u->ipv6);
    assert_null(u->zone);
    assert_null(u->password);
    ak_url_free(u);
  }
  ak_url *u = NULL;
  assert_int_equal(ak_url_parse("http://h:123456/", &u), AK_EURL);
  assert_int_equal(ak_url_parse("http://h:00000/", &u), AK_EURL);
  assert_int_equal(ak_url_parse("http://h/a[b]", &u), AK_EURL);
  assert_int_equal(ak_url_parse("http://h:1x", &u), AK_EURL);
  assert_int_equal(ak_url_parse("http:/", &u), AK_EURL); /* shorter than the prefix */
  assert_int_equal(ak_url_parse("ftp://h/", &u), AK_EURLSCHEME);
  assert_null(u);
}

/* RFC 3986 section 5.4's examples (normal and abnormal). */
static void test_url_resolve_rfc3986(void **state)
{
  (void)state;
  static const char *cases[][2] = {
      {"g", "http://a/b/c/g"},         {"./g", "http://a/b/c/g"},
      {"g/", "http://a/b/c/g/"},       {"/g", "http://a/g"},
      {"//g", "http://g/"},            {"?y", "http://a/b/c/d;p?y"},
      {"g?y", "http://a/b/c/g?y"},     {"#s", "http://a/b/c/d;p?q"},
      {";x", "http://a/b/c/;x"},       {"", "http://a/b/c/d;p?q"},
      {".", "http://a/b/c/"},          {"..", "http://a/b/"},
      {"../g", "http://a/b/g"},        {"../..", "http://a/"},
      {"../../g", "http://a/g"},       {"../../../g", "http://a/g"},
      {"/./g", "http://a/g"},          {"g.", "http://a/b/c/g."},
      {"g;x=1/../y", "http://a/b/c/y"}, {"https://other:9/z", "https://other:9/z"},
  };
  ak_url *base;
  assert_int_equal(ak_url_parse("http://a/b/c/d;p?q", &base), 0);
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    ak_url *r = NULL;
    int rc = ak_url_resolve(base, cases[i][0], &r);
    if (rc != 0 || strcmp(r->text, cases[i][1]) != 0)
      fail_msg("resolve '%s': rc %d, got '%s', want '%s'", cases[i][0], rc, r ? r->text : "",
               cases[i][1]);
    ak_url_free(r);
  }
  ak_url *r;
  assert_int_equal(ak_url_resolve(base, "gopher://x/", &r), AK_EURLSCHEME);
  ak_url_free(base);
}

/* ---- The client against httpbad -------------------------------------------------------------- */

typedef struct fixture {
  ak_loop *loop;
  ak_http_client *client;
} fixture;

static int setup_client(void **state, const ak_http_options *opts)
{
  fixture *fx = calloc(1, sizeof *fx);
  fx->loop = t_loop_new();
  assert_int_equal(ak_http_client_new(fx->loop, opts, &fx->client), 0);
  *state = fx;
  return 0;
}

static int setup(void **state)
{
  ak_http_options o = {0};
  o.head_timeout_ns = INT64_C(2000000000);
  o.idle_timeout_ns = INT64_C(2000000000);
  return setup_client(state, &o);
}

static int teardown(void **state)
{
  fixture *fx = *state;
  assert_int_equal(ak_http_client_free(fx->client), 0);
  ak_loop_free(fx->loop);
  free(fx);
  return 0;
}

/* The body into memory (checked against the pattern at its offsets). */
typedef struct sink {
  size_t bytes;
  bool mismatch;
  size_t max_open;
  ak_http_client *client;
} sink;

static int to_sink(const void *data, size_t len, int64_t offset, void *arg)
{
  sink *s = arg;
  const unsigned char *d = data;
  for (size_t i = 0; i < len; i++)
    if (d[i] != t_body_byte((uint64_t)offset + i))
      s->mismatch = true;
  s->bytes += len;
  if (s->client && ak_http_client_open_conns(s->client) > s->max_open)
    s->max_open = ak_http_client_open_conns(s->client);
  return 0;
}

/* GETs path into s; returns the settled future (the caller releases it). */
static ak_future *get_to_sink(fixture *fx, const char *path, sink *s, unsigned flags)
{
  ak_http_request rq = AK_HTTP_REQUEST_INIT(url_of(path));
  rq.on_body = to_sink;
  rq.arg = s;
  rq.flags = flags;
  ak_future *f = ak_http_get(fx->client, &rq);
  assert_non_null(f);
  assert_int_equal(ak_future_wait(f, WAIT), 0);
  return f;
}

static void expect_error(void **state, const char *path, int err)
{
  fixture *fx = *state;
  sink s = {0};
  int64_t t0 = ak_now_ns();
  ak_future *f = get_to_sink(fx, path, &s, 0);
  if (ak_future_result(f) != err)
    fail_msg("%s: got %lld (%s: %s), want %s", path, (long long)ak_future_result(f),
             ak_err_name((int)ak_future_result(f)), ak_future_detail(f) ? ak_future_detail(f) : "",
             ak_err_name(err));
  assert_true(ak_future_is_error(f));
  assert_non_null(ak_future_detail(f));
  assert_true(ak_now_ns() - t0 < INT64_C(10000000000));
  ak_future_release(f);
}

static void test_get_body_to_memory(void **state)
{
  fixture *fx = *state;
  sink s = {0};
  ak_future *f = get_to_sink(fx, "/file/1000000", &s, 0);
  assert_int_equal(ak_future_result(f), 200);
  ak_http_response *r = ak_future_value(f);
  assert_int_equal(r->status, 200);
  assert_int_equal(r->content_length, 1000000);
  assert_int_equal(r->body_bytes, 1000000);
  assert_int_equal(r->entity_size, 1000000);
  assert_true(r->accept_ranges);
  assert_string_equal(ak_http_response_header(r, "CONTENT-length"), "1000000");
  assert_null(ak_http_response_header(r, "x-none"));
  assert_int_equal(s.bytes, 1000000);
  assert_false(s.mismatch);
  ak_future_release(f);
}

/* The file at fd is httpbad's body of size bytes, exactly. */
static void check_file(int fd, int64_t size)
{
  assert_int_equal(t_body_file_differs(fd, size), -1);
}

static void test_get_to_file_and_progress(void **state)
{
  fixture *fx = *state;
  int fd = t_tmpfile(O_RDWR);
  int64_t progress = 0, size = -2;
  ak_http_request rq = AK_HTTP_REQUEST_INIT(url_of("/file/3000000"));
  rq.fd = fd;
  rq.progress = &progress;
  rq.size_out = &size;
  ak_future *f = ak_http_get(fx->client, &rq);
  assert_int_equal(ak_future_wait(f, WAIT), 0);
  assert_int_equal(ak_future_result(f), 200);
  assert_int_equal(progress, 3000000);
  assert_int_equal(size, 3000000);
  check_file(fd, 3000000);
  ak_future_release(f);
  close(fd);
}

/* Body write ops (write, writev) the loop has handed to the ring or the
 * pool so far. */
static uint64_t write_ops(ak_loop *loop)
{
  ak_loop_stats st;
  ak_loop_stats_get(loop, &st);
  uint64_t n = 0;
  for (unsigned k = 0; k < AK_STATS_KINDS; k++) {
    const char *name = ak_op_kind_name(k);
    if (name && (!strcmp(name, "write") || !strcmp(name, "writev")))
      n += st.submitted[k] + st.fallbacks[k];
  }
  return n;
}

/* Reads a pipe to its end, checking each byte against the pattern. */
typedef struct pipe_reader {
  int fd;
  int64_t bytes;
  bool mismatch;
} pipe_reader;

static void *read_pipe(void *arg)
{
  pipe_reader *r = arg;
  unsigned char buf[65536];
  ssize_t n;
  while ((n = read(r->fd, buf, sizeof buf)) > 0) {
    for (ssize_t i = 0; i < n; i++)
      if (buf[i] != t_body_byte((uint64_t)r->bytes + (uint64_t)i))
        r->mismatch = true;
    r->bytes += n;
  }
  return NULL;
}

/* Into a regular file the body is written on the loop thread (exchange.c,
 * section 5): no write op goes to the ring or the pool, and the file is
 * byte-exact, progress exact, for an identity body and a chunked one.
 * Into anything else (a pipe, whose reader could stop the loop) every
 * write is an op, and the reader gets every byte in order. */
static void test_body_written_inline_into_files_only(void **state)
{
  fixture *fx = *state;
  const char *paths[] = {"/file/3000000", "/chunked/1000003"};
  const int64_t sizes[] = {3000000, 1000003};
  for (int i = 0; i < 2; i++) {
    int fd = t_tmpfile(O_RDWR);
    int64_t progress = 0;
    uint64_t ops = write_ops(fx->loop);
    ak_http_request rq = AK_HTTP_REQUEST_INIT(url_of(paths[i]));
    rq.fd = fd;
    rq.progress = &progress;
    ak_future *f = ak_http_get(fx->client, &rq);
    assert_int_equal(ak_future_wait(f, WAIT), 0);
    assert_int_equal(ak_future_result(f), 200);
    assert_int_equal(write_ops(fx->loop), ops);
    assert_int_equal(progress, sizes[i]);
    check_file(fd, sizes[i]);
    ak_future_release(f);
    close(fd);
  }

  int p[2];
  assert_int_equal(pipe(p), 0);
  pipe_reader r = {.fd = p[0]};
  pthread_t t;
  assert_int_equal(pthread_create(&t, NULL, read_pipe, &r), 0);
  uint64_t ops = write_ops(fx->loop);
  int64_t progress = 0;
  ak_http_request rq = AK_HTTP_REQUEST_INIT(url_of("/file/3000000"));
  rq.fd = p[1];
  rq.progress = &progress;
  ak_future *f = ak_http_get(fx->client, &rq);
  assert_int_equal(ak_future_wait(f, WAIT), 0);
  assert_int_equal(ak_future_result(f), 200);
  ak_future_release(f);
  close(p[1]);
  assert_int_equal(pthread_join(t, NULL), 0);
  close(p[0]);
  assert_true(write_ops(fx->loop) > ops);
  assert_int_equal(progress, 3000000);
  assert_int_equal(r.bytes, 3000000);
  assert_false(r.mismatch);
}

/* A plain connection's receive buffer is registered with the loop (the
 * table is then the client's: the caller's ak_register_buffers is refused),
 * and where the caller holds the table first, the client falls back to
 * plain receives and the body is the same. */
static void test_receive_buffer_registered_or_not(void **state)
{
  fixture *fx = *state;
  sink s = {0};
  ak_future *f = get_to_sink(fx, "/file/1000000", &s, 0);
  assert_int_equal(ak_future_result(f), 200);
  assert_int_equal(s.bytes, 1000000);
  assert_false(s.mismatch);
  ak_future_release(f);
  char mine[4096];
  struct iovec iov = {.iov_base = mine, .iov_len = sizeof(mine)};
  ak_features ft;
  ak_loop_features(fx->loop, &ft);
  if (ft.backend == AK_BACKEND_EPOLL) {
    assert_int_equal(ak_register_buffers(fx->loop, &iov, 1), AK_EBACKEND);
    return;
  }
  assert_int_equal(ak_register_buffers(fx->loop, &iov, 1), -EBUSY);

  ak_loop *loop = t_loop_new();
  assert_int_equal(ak_register_buffers(loop, &iov, 1), 0);
  ak_http_options o = {0};
  ak_http_client *client;
  assert_int_equal(ak_http_client_new(loop, &o, &client), 0);
  fixture other = {.loop = loop, .client = client};
  sink s2 = {0};
  f = get_to_sink(&other, "/file/1000000", &s2, 0);
  assert_int_equal(ak_future_result(f), 200);
  assert_int_equal(s2.bytes, 1000000);
  assert_false(s2.mismatch);
  ak_future_release(f);
  assert_int_equal(ak_http_client_free(client), 0);
  assert_int_equal(ak_unregister_buffers(loop), 0);
  ak_loop_free(loop);
}

/* Whether the loop's buffer table is free: the caller's registration is
 * taken (and given back) only while the client has not made its table. */
static bool buffer_table_free(ak_loop *loop)
{
  char mine[4096];
  struct iovec iov = {.iov_base = mine, .iov_len = sizeof(mine)};
  int rc = ak_register_buffers(loop, &iov, 1);
  if (rc == 0)
    assert_int_equal(ak_unregister_buffers(loop), 0);
  else
    assert_int_equal(rc, -EBUSY);
  return rc == 0;
}

/* Answers with no body (a HEAD's, a 304) leave the connection's receive
 * buffer unregistered (registering pins and faults in the whole ring); the
 * first body on the same kept-alive connection registers it, and arrives
 * byte-exact after the heads. On epoll (no table) the bodies alike. */
static void test_receive_buffer_registered_at_first_body(void **state)
{
  fixture *fx = *state;
  ak_features ft;
  ak_loop_features(fx->loop, &ft);
  bool uring = ft.backend != AK_BACKEND_EPOLL;
  sink s = {0};
  ak_future *f = get_to_sink(fx, "/file/4096", &s, AK_HTTP_HEAD);
  assert_int_equal(ak_future_result(f), 200);
  assert_int_equal(s.bytes, 0);
  ak_future_release(f);
  if (uring)
    assert_true(buffer_table_free(fx->loop));
  const char *cond[] = {"If-None-Match: \"v1\""};
  ak_http_request rq = AK_HTTP_REQUEST_INIT(url_of("/notmod/5000"));
  rq.on_body = to_sink;
  rq.arg = &s;
  rq.headers = cond;
  rq.header_count = 1;
  f = ak_http_get(fx->client, &rq);
  assert_non_null(f);
  assert_int_equal(ak_future_wait(f, WAIT), 0);
  assert_int_equal(ak_future_result(f), 304);
  assert_true(((ak_http_response *)ak_future_value(f))->reused);
  ak_future_release(f);
  assert_int_equal(s.bytes, 0);
  if (uring)
    assert_true(buffer_table_free(fx->loop));
  for (int i = 0; i < 2; i++) { /* the ring made, then reused */
    f = get_to_sink(fx, "/file/1000000", &s, 0);
    assert_int_equal(ak_future_result(f), 200);
    assert_true(((ak_http_response *)ak_future_value(f))->reused);
    ak_future_release(f);
    f = get_to_sink(fx, "/file/4096", &s, AK_HTTP_HEAD);
    assert_int_equal(ak_future_result(f), 200);
    assert_true(((ak_http_response *)ak_future_value(f))->reused);
    ak_future_release(f);
  }
  assert_int_equal(s.bytes, 2000000);
  assert_false(s.mismatch);
  if (uring)
    assert_false(buffer_table_free(fx->loop)); /* the body's ring is registered */
  assert_int_equal(ak_http_client_reused(fx->client), 5);
}

/* GETs /file/1000000 into fd and expects err from the body's write, with
 * the cause in the detail; the client serves the next request as before. */
static void expect_write_error(fixture *fx, int fd, int err)
{
  ak_http_request rq = AK_HTTP_REQUEST_INIT(url_of("/file/1000000"));
  rq.fd = fd;
  ak_future *f = ak_http_get(fx->client, &rq);
  assert_non_null(f);
  assert_int_equal(ak_future_wait(f, WAIT), 0);
  if (ak_future_result(f) != err)
    fail_msg("got %lld (%s), want %s", (long long)ak_future_result(f),
             ak_err_name((int)ak_future_result(f)), ak_err_name(err));
  assert_non_null(ak_future_detail(f));
  assert_non_null(strstr(ak_future_detail(f), "writing the body"));
  ak_future_release(f);
  sink s = {0};
  f = get_to_sink(fx, "/file/300000", &s, 0);
  assert_int_equal(ak_future_result(f), 200);
  assert_int_equal(s.bytes, 300000);
  assert_false(s.mismatch);
  ak_future_release(f);
}

/* The body's file write failing, on the registered-buffer path and the
 * plain one alike: a full disk (/dev/full: ENOSPC), a file opened
 * read-only (EBADF), a file size limit (RLIMIT_FSIZE: EFBIG, SIGXFSZ
 * ignored). Each is the request's error. */
static void test_body_write_errors(void **state)
{
  fixture *fx = *state;
  int full = open("/dev/full", O_WRONLY | O_CLOEXEC);
  assert_true(full >= 0);
  expect_write_error(fx, full, -ENOSPC);
  close(full);

  int rw = t_tmpfile(O_RDWR);
  char path[64];
  snprintf(path, sizeof path, "/proc/self/fd/%d", rw);
  int ro = open(path, O_RDONLY | O_CLOEXEC);
  assert_true(ro >= 0);
  expect_write_error(fx, ro, -EBADF);
  close(ro);

  struct rlimit old, small;
  assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
  small = old;
  small.rlim_cur = 100000;
  void (*was)(int) = signal(SIGXFSZ, SIG_IGN);
  assert_int_equal(setrlimit(RLIMIT_FSIZE, &small), 0);
  expect_write_error(fx, rw, -EFBIG);
  assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
  signal(SIGXFSZ, was);
  struct stat st;
  assert_int_equal(fstat(rw, &st), 0);
  assert_true(st.st_size <= 100000); /* nothing past the limit */
  close(rw);
}

/* The receive ring (exchange.c, section 5): with a receive buffer of a few
 * KiB, a body many times the ring's size goes through every case of it
 * (receives landing while the write before runs, wrapping to the start,
 * waiting for room, spans split by chunk heads and by the wrap, an odd
 * buffer size) and ends byte-exact, progress counting every byte once. */
static void test_ring_keeps_order(void **state)
{
  (void)state;
  const size_t bufs[] = {4096, 1000, 65536};
  const char *paths[] = {"/file/3000000", "/chunked/1000003", "/tinychunks/100000"};
  const int64_t sizes[] = {3000000, 1000003, 100000};
  for (int b = 0; b < 3; b++) {
    ak_http_options o = {.recv_buffer = bufs[b]};
    void *st;
    setup_client(&st, &o);
    fixture *fx = st;
    for (int i = 0; i < 3; i++) {
      int fd = t_tmpfile(O_RDWR);
      int64_t progress = 0;
      ak_http_request rq = AK_HTTP_REQUEST_INIT(url_of(paths[i]));
      rq.fd = fd;
      rq.progress = &progress;
      ak_future *f = ak_http_get(fx->client, &rq);
      assert_int_equal(ak_future_wait(f, WAIT), 0);
      if (ak_future_result(f) != 200)
        fail_msg("buffer %zu, %s: %s: %s", bufs[b], paths[i], ak_err_name((int)ak_future_result(f)),
                 ak_future_detail(f) ? ak_future_detail(f) : "");
      check_file(fd, sizes[i]);
      assert_int_equal(progress, sizes[i]);
      ak_future_release(f);
      close(fd);
    }
    teardown(&st);
  }
}

/* A body write that fails while the next receive waits on a server that
 * sends nothing more (/stall: half the body, then 30 s of silence): the
 * request ends with the write's error at once, the receive cancelled, not
 * after the idle deadline. */
static void test_write_error_while_receiving(void **state)
{
  (void)state;
  ak_http_options o = {.idle_timeout_ns = INT64_C(10000000000), .recv_buffer = 16384};
  void *st;
  setup_client(&st, &o);
  fixture *fx = st;
  int full = open("/dev/full", O_WRONLY | O_CLOEXEC);
  assert_true(full >= 0);
  ak_http_request rq = AK_HTTP_REQUEST_INIT(url_of("/stall/400000"));
  rq.fd = full;
  int64_t t0 = ak_now_ns();
  ak_future *f = ak_http_get(fx->client, &rq);
  assert_int_equal(ak_future_wait(f, WAIT), 0);
  int64_t took = ak_now_ns() - t0;
  assert_int_equal(ak_future_result(f), -ENOSPC);
  assert_true(took < INT64_C(5000000000)); /* the idle deadline is 10 s */
  ak_future_release(f);
  close(full);
  teardown(&st);
}

/* A receive that fails (the peer closes mid-body) while body writes are
 * in flight or waiting: every byte received before it is still written,
 * in place, before the request ends (a resume counts on them). */
static void truncated_body_kept(fixture *fx)
{
  int fd = t_tmpfile(O_RDWR);
  int64_t progress = 0;
  ak_http_request rq = AK_HTTP_REQUEST_INIT(url_of("/short/2000000"));
  rq.fd = fd;
  rq.progress = &progress;
  ak_future *f = ak_http_get(fx->client, &rq);
  assert_int_equal(ak_future_wait(f, WAIT), 0);
  assert_int_equal(ak_future_result(f), AK_EHTTPTRUNCATED);
  ak_future_release(f);
  check_file(fd, 1000000);
  assert_int_equal(progress, 1000000);
  close(fd);
}

static void test_receive_error_keeps_received_bytes(void **state)
{
  truncated_body_kept(*state);
}

/* The same with receives larger than the whole body: every byte is held
 * back for an inline write (it waits for two receives' worth) when the
 * peer closes, and the ending writes them all before the error settles. */
static void test_receive_error_writes_held_bytes(void **state)
{
  (void)state;
  ak_http_options o = {.recv_buffer = 4u << 20};
  void *st;
  setup_client(&st, &o);
  truncated_body_kept(st);
  teardown(&st);
}

/* A write cut short by RLIMIT_FSIZE in the middle of a gathered write:
 * the bytes below the limit are in the file, exactly, and the rest of the
 * write, sent again, fails with EFBIG. */
static void test_short_write_then_limit(void **state)
{
  fixture *fx = *state;
  int fd = t_tmpfile(O_RDWR);
  struct rlimit old, small;
  assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
  small = old;
  small.rlim_cur = 1234567;
  void (*was)(int) = signal(SIGXFSZ, SIG_IGN);
  assert_int_equal(setrlimit(RLIMIT_FSIZE, &small), 0);
  ak_http_request rq = AK_HTTP_REQUEST_INIT(url_of("/file/3000000"));
  rq.fd = fd;
  ak_future *f = ak_http_get(fx->client, &rq);
  assert_int_equal(ak_future_wait(f, WAIT), 0);
  assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
  signal(SIGXFSZ, was);
  assert_int_equal(ak_future_result(f), -EFBIG);
  ak_future_release(f);
  check_file(fd, 1234567);
  close(fd);
}

static void test_chunked_and_close_delimited(void **state)
{
  fixture *fx = *state;
  const char *paths[] = {"/chunked/123457", "/close/99999", "/interim/5000", "/interimcl/7000"};
  const size_t sizes[] = {123457, 99999, 5000, 7000};
  for (int i = 0; i < 4; i++) {
    sink s = {0};
    ak_future *f = get_to_sink(fx, paths[i], &s, 0);
    assert_int_equal(ak_future_result(f), 200);
    assert_int_equal(s.bytes, sizes[i]);
    assert_false(s.mismatch);
    ak_http_response *r = ak_future_value(f);
    assert_int_equal(r->body_bytes, (int64_t)sizes[i]);
    assert_int_equal(r->content_length, i >= 2 ? (int64_t)sizes[i] : -1);
    ak_future_release(f);
  }
}

/* Thousands of tiny chunks in one receive go to the file (more spans than
 * one writev takes). */
static void test_tiny_chunks_to_file(void **state)
{
  fixture *fx = *state;
  int fd = t_tmpfile(O_RDWR);
  ak_http_request rq = AK_HTTP_REQUEST_INIT(url_of("/tinychunks/300000"));
  rq.fd = fd;
  ak_future *f = ak_http_get(fx->client, &rq);
  assert_int_equal(ak_future_wait(f, WAIT), 0);
  if (ak_future_result(f) != 200)
    fail_msg("got %s: %s", ak_err_name((int)ak_future_result(f)),
             ak_future_detail(f) ? ak_future_detail(f) : "");
  check_file(fd, 300000);
  ak_future_release(f);
  close(fd);
}

static void test_keepalive_reuse(void **state)
{
  fixture *fx = *state;
  for (int i = 0; i < 10; i++) {
    sink s = {0};
    ak_future *f = get_to_sink(fx, "/file/777", &s, 0);
    assert_int_equal(ak_future_result(f), 200);
    assert_int_equal(((ak_http_response *)ak_future_value(f))->reused, i > 0);
    ak_future_release(f);
  }
  assert_int_equal(ak_http_client_reused(fx->client), 9);
  assert_int_equal(ak_http_client_open_conns(fx->client), 1);
}

/* keepalive_timeout_ns: an idle kept-alive connection is closed after it,
 * by the sweep while requests are active, and at the next request after a
 * quiet spell; a quiet client keeps no timer, so its loop goes idle. */
static void test_keepalive_idle_timeout(void **state)
{
  (void)state;
  ak_http_options o = {.keepalive_timeout_ns = INT64_C(200000000),
                       .idle_timeout_ns = INT64_C(1000000000)};
  void *st;
  setup_client(&st, &o);
  fixture *fx = st;
  sink s = {0};
  ak_future *f = get_to_sink(fx, "/file/777", &s, 0);
  assert_int_equal(ak_future_result(f), 200);
  ak_future_release(f);
  assert_int_equal(ak_http_client_open_conns(fx->client), 1);
  /* Nothing in flight: the loop runs dry at once, the connection still open
   * (a sweep timer would have kept the loop running until it closed it). */
  assert_int_equal(ak_loop_run(fx->loop, AK_RUN_DEFAULT), 0);
  assert_int_equal(ak_http_client_open_conns(fx->client), 1);
  /* After a quiet spell longer than the timeout, the next request does not
   * reuse the expired connection: it is closed, a new one made. */
  ak_future *nap = ak_sleep(fx->loop, 300000000);
  assert_int_equal(ak_future_wait(nap, WAIT), 0);
  ak_future_release(nap);
  f = get_to_sink(fx, "/file/777", &s, 0);
  assert_int_equal(ak_future_result(f), 200);
  assert_false(((ak_http_response *)ak_future_value(f))->reused);
  ak_future_release(f);
  assert_int_equal(ak_http_client_reused(fx->client), 0);
  assert_int_equal(ak_http_client_open_conns(fx->client), 1);
  /* While another request runs (a stalled body on another host key, ended
   * by the 1 s idle deadline), the sweep closes the idle connection. */
  char other[256];
  snprintf(other, sizeof other, "http://localhost:%u/stall/100000", port);
  ak_http_request rq = AK_HTTP_REQUEST_INIT(other);
  rq.on_body = to_sink;
  rq.arg = &s;
  f = ak_http_get(fx->client, &rq);
  nap = ak_sleep(fx->loop, 500000000);
  assert_int_equal(ak_future_wait(nap, WAIT), 0);
  ak_future_release(nap);
  assert_int_equal(ak_future_state(f), AK_PENDING);
  assert_int_equal(ak_http_client_open_conns(fx->client), 1); /* the stalled one only */
  assert_int_equal(ak_future_wait(f, WAIT), 0);
  assert_int_equal(ak_future_result(f), AK_EHTTPIDLETIMEOUT);
  ak_future_release(f);
  assert_int_equal(ak_http_client_open_conns(fx->client), 0);
  teardown(&st);
}

/* AK_HTTP_DECODE: gzip and deflate bodies decoded to memory and to a file;
 * every broken stream an error; a bomb stopped at the body limit; nothing
 * asked or decoded without the flag. */
static void test_decode_gzip_deflate(void **state)
{
  fixture *fx = *state;
  sink s = {0};
  ak_future *f = get_to_sink(fx, "/z/gzip/3000000", &s, AK_HTTP_DECODE);
  assert_int_equal(ak_future_result(f), 200);
  ak_http_response *r = ak_future_value(f);
  assert_true(r->decoded);
  assert_int_equal(r->decoded_bytes, 3000000);
  assert_true(r->content_length > 0 && r->content_length < 3000000); /* encoded */
  assert_int_equal(r->body_bytes, r->content_length);
  assert_int_equal(r->entity_size, -1);
  assert_int_equal(s.bytes, 3000000);
  assert_false(s.mismatch);
  ak_future_release(f);

  memset(&s, 0, sizeof s);
  f = get_to_sink(fx, "/z/deflate/100000", &s, AK_HTTP_DECODE);
  assert_int_equal(ak_future_result(f), 200);
  assert_int_equal(s.bytes, 100000);
  assert_false(s.mismatch);
  ak_future_release(f);

  /* To a file by ring writes, at decoded offsets; progress counts them. */
  int fd = t_tmpfile(O_RDWR);
  int64_t progress = 0, size = -2;
  ak_http_request rq = AK_HTTP_REQUEST_INIT(url_of("/z/gzip/2500000"));
  rq.flags = AK_HTTP_DECODE;
  rq.fd = fd;
  rq.progress = &progress;
  rq.size_out = &size;
  f = ak_http_get(fx->client, &rq);
  assert_int_equal(ak_future_wait(f, WAIT), 0);
  assert_int_equal(ak_future_result(f), 200);
  assert_int_equal(progress, 2500000);
  assert_int_equal(size, -1); /* the decoded size is not announced */
  check_file(fd, 2500000);
  ak_future_release(f);
  close(fd);

  /* An identity body with the flag: as it is. */
  memset(&s, 0, sizeof s);
  f = get_to_sink(fx, "/file/5000", &s, AK_HTTP_DECODE);
  assert_int_equal(ak_future_result(f), 200);
  assert_false(((ak_http_response *)ak_future_value(f))->decoded);
  assert_int_equal(s.bytes, 5000);
  assert_false(s.mismatch);
  ak_future_release(f);
}

/* The Accept-Encoding sent: none without the flag, gzip and deflate with it. */
static int to_text(const void *data, size_t len, int64_t offset, void *arg)
{
  char *t = arg;
  if (offset + (int64_t)len < 200)
    memcpy(t + offset, data, len);
  return 0;
}

/* An ended request's record is kept by the client for its next request
 * (with its request and header-line buffers): each request sends its own
 * header lines, none of an earlier one's, whether it has more lines than
 * the one before, none, or fewer; and a redirected request's record too. */
static void test_recycled_records_send_their_own_headers(void **state)
{
  fixture *fx = *state;
  char long_ae[180] = "Accept-Encoding: ";
  memset(long_ae + 17, 'l', 100); /* httpbad keeps 127 bytes of it */
  long_ae[117] = '\0';
  const char *lines[][2] = {{long_ae, "X-One: 1"}, {NULL, NULL}, {"Accept-Encoding: s", NULL},
                            {"X-Two: 2", NULL}};
  const char *want[] = {long_ae + 17, "(none)", "s", "(none)"};
  for (int round = 0; round < 2; round++) {
    for (int i = 0; i < 4; i++) {
      char text[200] = "";
      ak_http_request rq = AK_HTTP_REQUEST_INIT(url_of("/echo-ae"));
      rq.headers = lines[i];
      rq.header_count = lines[i][1] ? 2 : lines[i][0] ? 1 : 0;
      rq.on_body = to_text;
      rq.arg = text;
      ak_future *f = ak_http_get(fx->client, &rq);
      assert_int_equal(ak_future_wait(f, WAIT), 0);
      assert_int_equal(ak_future_result(f), 200);
      assert_string_equal(text, want[i]);
      ak_future_release(f);
    }
    /* A redirect: the request made again, for the new URL, in the kept
     * buffer. */
    sink s = {0};
    ak_future *f = get_to_sink(fx, "/redirect/rel", &s, 0);
    assert_int_equal(ak_future_result(f), 200);
    assert_int_equal(((ak_http_response *)ak_future_value(f))->redirects, 1);
    assert_false(s.mismatch);
    ak_future_release(f);
  }
}

/* A kept record does not keep a long request's buffers: a request with a
 * 6 KiB header line leaves none of its head behind once it has ended
 * (else up to 128 kept records could hold such buffers for the client's
 * life). In-use bytes from glibc's mallinfo2, over all arenas; an
 * allocator that does not report them (a sanitizer's) leaves it unchecked. */
static void test_recycled_records_drop_long_buffers(void **state)
{
  fixture *fx = *state;
  static char big[6200];
  memcpy(big, "X-Big: ", 7);
  memset(big + 7, 'b', 6000);
  big[6007] = '\0';
  const char *lines[] = {big};
  for (int round = 0; round < 3; round++) {
    /* round 0: a short request first, so the connection and a kept
     * record exist before the count */
    size_t before = mallinfo2().uordblks;
    char text[200] = "";
    ak_http_request rq = AK_HTTP_REQUEST_INIT(url_of("/echo-ae"));
    if (round > 0) {
      rq.headers = lines;
      rq.header_count = 1;
    }
    rq.on_body = to_text;
    rq.arg = text;
    ak_future *f = ak_http_get(fx->client, &rq);
    assert_int_equal(ak_future_wait(f, WAIT), 0);
    assert_int_equal(ak_future_result(f), 200);
    ak_future_release(f);
    size_t after = mallinfo2().uordblks;
    if (round == 0 || before == 0)
      continue;
    if (after > before + 4096)
      fail_msg("a request with a 6 KiB header line left %zu bytes in use", after - before);
  }
}

static void test_decode_asks_only_when_told(void **state)
{
  fixture *fx = *state;
  for (int with = 0; with < 2; with++) {
    char text[200] = "";
    ak_http_request rq = AK_HTTP_REQUEST_INIT(url_of("/echo-ae"));
    rq.flags = with ? AK_HTTP_DECODE : 0;
    rq.on_body = to_text;
    rq.arg = text;
    ak_future *f = ak_http_get(fx->client, &rq);
    assert_int_equal(ak_future_wait(f, WAIT), 0);
    assert_int_equal(ak_future_result(f), 200);
    assert_string_equal(text, with ? "gzip, deflate" : "(none)");
    ak_future_release(f);
  }
  /* A gzip body sent without being asked: kept as sent (curl's way). */
  sink s = {0};
  ak_future *f = get_to_sink(fx, "/z/gzip/50000", &s, 0);
  assert_int_equal(ak_future_result(f), 200);
  ak_http_response *r = ak_future_value(f);
  assert_false(r->decoded);
  assert_int_equal((int64_t)s.bytes, r->content_length);
  assert_int_equal(r->decoded_bytes, r->body_bytes);
  assert_true(s.mismatch); /* the bytes are gzip's, not the pattern */
  ak_future_release(f);
  /* A Range with the flag is refused. */
  ak_http_request rq = AK_HTTP_REQUEST_INIT(url_of("/z/gzip/50000"));
  rq.flags = AK_HTTP_DECODE;
  rq.range_start = 10;
  f = ak_http_get(fx->client, &rq);
  assert_int_equal(ak_future_wait(f, WAIT), 0);
  assert_int_equal(ak_future_result(f), -EINVAL);
  ak_future_release(f);
}

static void expect_decode_error(fixture *fx, const char *path, int err)
{
  for (int to_file = 0; to_file < 2; to_file++) {
    sink s = {0};
    int fd = to_file ? t_tmpfile(O_RDWR) : -1;
    ak_http_request rq = AK_HTTP_REQUEST_INIT(url_of(path));
    rq.flags = AK_HTTP_DECODE;
    rq.fd = fd;
    rq.on_body = to_file ? NULL : to_sink;
    rq.arg = &s;
    ak_future *f = ak_http_get(fx->client, &rq);
    assert_int_equal(ak_future_wait(f, WAIT), 0);
    if (ak_future_result(f) != err)
      fail_msg("%s (%s): got %s (%s), want %s", path, to_file ? "file" : "memory",
               ak_err_name((int)ak_future_result(f)),
               ak_future_detail(f) ? ak_future_detail(f) : "", ak_err_name(err));
    assert_non_null(ak_future_detail(f));
    ak_future_release(f);
    if (fd >= 0)
      close(fd);
  }
}

static void test_decode_errors(void **state)
{
  fixture *fx = *state;
  expect_decode_error(fx, "/z/gzipbad/200000", AK_EHTTPDECODE);
  expect_decode_error(fx, "/z/gzipisize/200000", AK_EHTTPDECODE);
  expect_decode_error(fx, "/z/gziptrunc/200000", AK_EHTTPDECODE);
  expect_decode_error(fx, "/z/gzipcl/200000", AK_EHTTPTRUNCATED);
  expect_decode_error(fx, "/z/br/20000", AK_EHTTPDECODE);
}

/* A gzip bomb (32 MiB of zeros in about 32 KiB) against a 1 MiB body limit:
 * stopped there, whichever the sink. */
static void test_decode_bomb_bounded(void **state)
{
  (void)state;
  ak_http_options o = {.max_body_bytes = 1 << 20};
  void *st;
  setup_client(&st, &o);
  expect_decode_error(st, "/z/gzipbomb/33554432", AK_EHTTPTOOBIG);
  teardown(&st);
}

static void test_per_host_cap(void **state)
{
  (void)state;
  ak_http_options o = {.max_conns_per_host = 3};
  void *st;
  setup_client(&st, &o);
  fixture *fx = st;
  enum { N = 24 };
  ak_future *fs[N];
  sink s[N];
  memset(s, 0, sizeof s);
  for (int i = 0; i < N; i++) {
    s[i].client = fx->client;
    ak_http_request rq = AK_HTTP_REQUEST_INIT(url_of("/file/200000"));
    rq.on_body = to_sink;
    rq.arg = &s[i];
    fs[i] = ak_http_get(fx->client, &rq);
  }
  ak_future *all = ak_join_all(fs, N, 0);
  assert_int_equal(ak_future_wait(all, WAIT), 0);
  size_t max_open = 0;
  for (int i = 0; i < N; i++) {
    assert_int_equal(ak_future_result(fs[i]), 200);
    assert_int_equal(s[i].bytes, 200000);
    if (s[i].max_open > max_open)
      max_open = s[i].max_open;
    ak_future_release(fs[i]);
  }
  ak_future_release(all);
  assert_true(max_open >= 2 && max_open <= 3);
  assert_true(ak_http_client_reused(fx->client) >= N - 3);
  teardown(&st);
}

static void test_range_206(void **state)
{
  fixture *fx = *state;
  int fd = t_tmpfile(O_RDWR);
  /* Two halves by Range into one file, the second first. */
  ak_http_request rq = AK_HTTP_REQUEST_INIT(url_of("/file/100000"));
  rq.fd = fd;
  rq.flags = AK_HTTP_REQUIRE_RANGE;
  rq.range_start = 60000;
  ak_future *b = ak_http_get(fx->client, &rq);
  rq.range_start = 0;
  rq.range_end = 59999;
  ak_future *a = ak_http_get(fx->client, &rq);
  assert_int_equal(ak_future_wait(a, WAIT), 0);
  assert_int_equal(ak_future_wait(b, WAIT), 0);
  assert_int_equal(ak_future_result(a), 206);
  assert_int_equal(ak_future_result(b), 206);
  ak_http_response *ra = ak_future_value(a), *rb = ak_future_value(b);
  assert_int_equal(ra->range_start, 0);
  assert_int_equal(ra->range_end, 59999);
  assert_int_equal(rb->range_start, 60000);
  assert_int_equal(rb->entity_size, 100000);
  check_file(fd, 100000);
  ak_future_release(a);
  ak_future_release(b);
  close(fd);
}

static void test_range_ignored_200(void **state)
{
  fixture *fx = *state;
  int fd = t_tmpfile(O_RDWR);
  ak_http_request rq = AK_HTTP_REQUEST_INIT(url_of("/norange/50000"));
  rq.fd = fd;
  rq.range_start = 20000;
  /* Without REQUIRE_RANGE the whole entity lands at its own offsets. */
  ak_future *f = ak_http_get(fx->client, &rq);
  assert_int_equal(ak_future_wait(f, WAIT), 0);
  assert_int_equal(ak_future_result(f), 200);
  check_file(fd, 50000);
  ak_future_release(f);
  /* With it, the 200 is an error before any byte is written. */
  assert_int_equal(ftruncate(fd, 0), 0);
  rq.flags = AK_HTTP_REQUIRE_RANGE;
  f = ak_http_get(fx->client, &rq);
  assert_int_equal(ak_future_wait(f, WAIT), 0);
  assert_int_equal(ak_future_result(f), AK_EHTTPRANGE);
  struct stat st;
  fstat(fd, &st);
  assert_int_equal(st.st_size, 0);
  ak_future_release(f);
  close(fd);
}

static void test_redirects(void **state)
{
  fixture *fx = *state;
  sink s = {0};
  ak_future *f = get_to_sink(fx, "/redirect/rel", &s, 0);
  assert_int_equal(ak_future_result(f), 200);
  ak_http_response *r = ak_future_value(f);
  assert_int_equal(r->redirects, 1);
  assert_string_equal(r->url, url_of("/file/1000"));
  assert_int_equal(s.bytes, 1000);
  ak_future_release(f);

  sink s2 = {0};
  f = get_to_sink(fx, "/redirect/abs", &s2, 0);
  assert_int_equal(ak_future_result(f), 200);
  assert_int_equal(s2.bytes, 2000); /* the redirect's own body ("moved") is not kept */
  assert_false(s2.mismatch);
  ak_future_release(f);

  expect_error(state, "/redirect/loop", AK_EHTTPREDIRECTS);
}

static void test_status_404_is_a_response(void **state)
{
  fixture *fx = *state;
  sink s = {0};
  ak_future *f = get_to_sink(fx, "/no/such", &s, 0);
  assert_int_equal(ak_future_state(f), AK_DONE);
  assert_int_equal(ak_future_result(f), 404);
  assert_int_equal(s.bytes, 0); /* the error page is not the file */
  ak_future_release(f);
}

static void test_retry_after(void **state)
{
  fixture *fx = *state;
  sink s = {0};
  ak_future *f = get_to_sink(fx, "/retry/t1/10", &s, 0);
  assert_int_equal(ak_future_result(f), 503);
  assert_int_equal(((ak_http_response *)ak_future_value(f))->retry_after_s, 1);
  ak_future_release(f);
  f = get_to_sink(fx, "/retry/t1/10", &s, 0);
  assert_int_equal(ak_future_result(f), 200);
  ak_future_release(f);
}

static void test_head_request(void **state)
{
  fixture *fx = *state;
  sink s = {0};
  ak_future *f = get_to_sink(fx, "/file/4096", &s, AK_HTTP_HEAD);
  assert_int_equal(ak_future_result(f), 200);
  assert_int_equal(((ak_http_response *)ak_future_value(f))->content_length, 4096);
  assert_int_equal(s.bytes, 0);
  ak_future_release(f);
  /* The connection is still good for a GET after the bodiless HEAD. */
  f = get_to_sink(fx, "/file/4096", &s, 0);
  assert_int_equal(s.bytes, 4096);
  assert_true(((ak_http_response *)ak_future_value(f))->reused);
  ak_future_release(f);
}

/* A 304 (a conditional request's "not modified") is a response with no
 * body even with a Content-Length: nothing is written to the fd, the
 * future is DONE at once (not waiting for N bytes), and the connection
 * serves the next request. */
static void test_not_modified_304(void **state)
{
  fixture *fx = *state;
  int fd = t_tmpfile(O_RDWR);
  int64_t progress = 0;
  const char *cond[] = {"If-None-Match: \"v1\""};
  ak_http_request rq = AK_HTTP_REQUEST_INIT(url_of("/notmod/5000"));
  rq.fd = fd;
  rq.progress = &progress;
  rq.headers = cond;
  rq.header_count = 1;
  int64_t t0 = ak_now_ns();
  ak_future *f = ak_http_get(fx->client, &rq);
  assert_int_equal(ak_future_wait(f, WAIT), 0);
  if (ak_future_state(f) != AK_DONE)
    fail_msg("304 failed: %s (%s)", ak_err_name((int)ak_future_result(f)),
             ak_future_detail(f) ? ak_future_detail(f) : "");
  assert_int_equal(ak_future_result(f), 304);
  const ak_http_response *r = ak_future_value(f);
  assert_int_equal(r->body_bytes, 0);
  assert_string_equal(ak_http_response_header(r, "etag"), "\"v1\"");
  assert_true(ak_now_ns() - t0 < INT64_C(1500000000)); /* not the idle deadline (2 s) */
  assert_int_equal(progress, 0);
  struct stat st;
  assert_int_equal(fstat(fd, &st), 0);
  assert_int_equal(st.st_size, 0);
  ak_future_release(f);
  sink s = {0};
  f = get_to_sink(fx, "/file/4096", &s, 0);
  assert_int_equal(ak_future_result(f), 200);
  assert_int_equal(s.bytes, 4096);
  assert_false(s.mismatch);
  assert_true(((ak_http_response *)ak_future_value(f))->reused);
  ak_future_release(f);
  close(fd);
}

/* Every header of a head is kept, whatever their number and size (the
 * response's one block of headers grows past its first 16 and 384
 * bytes), and an interim head's are not among them. */
static void test_many_headers(void **state)
{
  fixture *fx = *state;
  sink s = {0};
  ak_future *f = get_to_sink(fx, "/manyheaders/150", &s, 0);
  assert_int_equal(ak_future_result(f), 200);
  const ak_http_response *r = ak_future_value(f);
  assert_int_equal(r->header_count, 151); /* and Content-Length */
  assert_null(ak_http_response_header(r, "link"));
  for (int i = 0; i < 150; i++) {
    char name[16], want[100];
    snprintf(name, sizeof name, "x-h%d", i);
    snprintf(want, sizeof want, "v%d-%0*d", i, i % 64, 0);
    const char *v = ak_http_response_header(r, name);
    assert_non_null(v);
    assert_string_equal(v, want);
  }
  assert_string_equal(ak_http_response_header(r, "content-length"), "2");
  ak_future_release(f);
}

static void test_broken_bodies(void **state)
{
  expect_error(state, "/reset/1000000", -ECONNRESET);
  expect_error(state, "/short/100000", AK_EHTTPTRUNCATED);
  expect_error(state, "/chunkcut/100000", AK_EHTTPTRUNCATED);
}

static void test_broken_heads(void **state)
{
  expect_error(state, "/badstatus", AK_EHTTPPROTO);
  expect_error(state, "/bigheader", AK_EHTTPHEADSIZE);
  expect_error(state, "/dupcl", AK_EHTTPLENGTH);
  expect_error(state, "/conflictcl", AK_EHTTPLENGTH);
  expect_error(state, "/negcl", AK_EHTTPLENGTH);
  expect_error(state, "/hugecl", AK_EHTTPTOOBIG);
  expect_error(state, "/hugechunk", AK_EHTTPCHUNK);
}

static void test_head_deadline_not_idle(void **state)
{
  (void)state;
  /* Bytes keep coming (every 100 ms), so only the head deadline can fire. */
  ak_http_options o = {.head_timeout_ns = INT64_C(700000000), .idle_timeout_ns = INT64_C(5000000000)};
  void *st;
  setup_client(&st, &o);
  int64_t t0 = ak_now_ns();
  expect_error(&st, "/trickle", AK_EHTTPHEADTIMEOUT);
  int64_t took = ak_now_ns() - t0;
  assert_true(took >= INT64_C(600000000) && took < INT64_C(4000000000));
  teardown(&st);
}

static void test_idle_and_total_deadlines(void **state)
{
  (void)state;
  ak_http_options o = {.idle_timeout_ns = INT64_C(400000000)};
  void *st;
  setup_client(&st, &o);
  expect_error(&st, "/stall/100000", AK_EHTTPIDLETIMEOUT);
  teardown(&st);
  ak_http_options o2 = {.total_timeout_ns = INT64_C(400000000)};
  setup_client(&st, &o2);
  expect_error(&st, "/stall/100000", AK_EHTTPTOTALTIMEOUT);
  teardown(&st);
}

static void test_rate_limit(void **state)
{
  (void)state;
  /* 1.5 MB at 1 MB/s with one second of burst: at least about 0.4 s. */
  ak_http_options o = {.max_rate = 1000000, .recv_buffer = 65536};
  void *st;
  setup_client(&st, &o);
  fixture *fx = st;
  sink s = {0};
  int64_t t0 = ak_now_ns();
  ak_future *f = get_to_sink(fx, "/file/1500000", &s, 0);
  int64_t took = ak_now_ns() - t0;
  assert_int_equal(ak_future_result(f), 200);
  assert_int_equal(s.bytes, 1500000);
  assert_false(s.mismatch);
  assert_true(took >= INT64_C(350000000));
  ak_future_release(f);
  /* Cancelled while it waits for tokens: ends promptly, CANCELLED. */
  ak_http_request rq = AK_HTTP_REQUEST_INIT(url_of("/file/3000000"));
  f = ak_http_get(fx->client, &rq);
  ak_future *nap = ak_sleep(fx->loop, 300000000);
  ak_future_wait(nap, WAIT);
  ak_future_release(nap);
  ak_future_cancel(f);
  assert_int_equal(ak_future_wait(f, INT64_C(2000000000)), 0);
  assert_true(ak_future_is_cancelled(f));
  ak_future_release(f);
  teardown(&st);
}

static void test_cancel(void **state)
{
  fixture *fx = *state;
  sink s = {0};
  ak_http_request rq = AK_HTTP_REQUEST_INIT(url_of("/stall/100000"));
  rq.on_body = to_sink;
  rq.arg = &s;
  ak_future *f = ak_http_get(fx->client, &rq);
  ak_future *nap = ak_sleep(fx->loop, 200000000);
  ak_future_wait(nap, WAIT);
  ak_future_release(nap);
  assert_int_equal(s.bytes, 50000);
  assert_int_equal(ak_future_cancel(f), 0);
  assert_int_equal(ak_future_wait(f, WAIT), 0);
  assert_true(ak_future_is_cancelled(f));
  ak_future_release(f);
}

static void test_refusals(void **state)
{
  fixture *fx = *state;
  /* https to a port that speaks plain HTTP: a TLS error, promptly. */
  char https[64];
  snprintf(https, sizeof https, "https://localhost:%u/file/10", port);
  ak_http_request rq = AK_HTTP_REQUEST_INIT(https);
  ak_future *f = ak_http_get(fx->client, &rq);
  assert_int_equal(ak_future_wait(f, WAIT), 0);
  assert_int_equal(ak_future_result(f), AK_ETLSPROTOCOL);
  ak_future_release(f);

  rq.url = "http://127.0.0.1:1/"; /* nothing listens on port 1 */
  f = ak_http_get(fx->client, &rq);
  ak_future_wait(f, WAIT);
  assert_int_equal(ak_future_result(f), -ECONNREFUSED);
  ak_future_release(f);

  const char *bad[] = {"X-Evil: a\r\nInjected: b"};
  rq.url = url_of("/file/1");
  rq.headers = bad;
  rq.header_count = 1;
  f = ak_http_get(fx->client, &rq);
  ak_future_wait(f, WAIT);
  assert_int_equal(ak_future_result(f), -EINVAL);
  ak_future_release(f);

  rq.url = "not a url";
  rq.headers = NULL;
  rq.header_count = 0;
  f = ak_http_get(fx->client, &rq);
  ak_future_wait(f, WAIT);
  assert_int_equal(ak_future_result(f), AK_EURL);
  ak_future_release(f);
}

static void test_free_with_active_request_is_busy(void **state)
{
  fixture *fx = *state;
  ak_http_request rq = AK_HTTP_REQUEST_INIT(url_of("/file/100"));
  ak_future *f = ak_http_get(fx->client, &rq);
  assert_int_equal(ak_http_client_free(fx->client), -EBUSY);
  ak_future_wait(f, WAIT);
  assert_int_equal(ak_future_result(f), 200);
  ak_future_release(f);
}

/* Others going on at the same time are unaffected by one that breaks. */
static void test_failures_are_isolated(void **state)
{
  fixture *fx = *state;
  const char *paths[] = {"/file/300000", "/reset/300000", "/chunked/300000", "/short/300000",
                         "/file/300001", "/negcl"};
  enum { N = 6 };
  ak_future *fs[N];
  sink s[N];
  memset(s, 0, sizeof s);
  for (int i = 0; i < N; i++) {
    ak_http_request rq = AK_HTTP_REQUEST_INIT(url_of(paths[i]));
    rq.on_body = to_sink;
    rq.arg = &s[i];
    fs[i] = ak_http_get(fx->client, &rq);
  }
  ak_future *all = ak_join_all(fs, N, 0);
  assert_int_equal(ak_future_wait(all, WAIT), 0);
  assert_int_equal(ak_future_result(fs[0]), 200);
  assert_int_equal(ak_future_result(fs[2]), 200);
  assert_int_equal(ak_future_result(fs[4]), 200);
  assert_int_equal(s[4].bytes, 300001);
  assert_true(ak_future_is_error(fs[1]) && ak_future_is_error(fs[3]) && ak_future_is_error(fs[5]));
  for (int i = 0; i < N; i++)
    ak_future_release(fs[i]);
  ak_future_release(all);
}

int main(void)
{
  t_require_uring();
  if (t_httpbad_start(&port) < 0)
    return 1;
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_url_parse_parts),
      cmocka_unit_test(test_url_ipv6),
      cmocka_unit_test(test_url_percent_encoding),
      cmocka_unit_test(test_url_rejects),
      cmocka_unit_test(test_url_plain_form),
      cmocka_unit_test(test_url_resolve_rfc3986),
      cmocka_unit_test_setup_teardown(test_get_body_to_memory, setup, teardown),
      cmocka_unit_test_setup_teardown(test_get_to_file_and_progress, setup, teardown),
      cmocka_unit_test_setup_teardown(test_receive_buffer_registered_or_not, setup, teardown),
      cmocka_unit_test_setup_teardown(test_body_written_inline_into_files_only, setup, teardown),
      cmocka_unit_test_setup_teardown(test_body_write_errors, setup, teardown),
      cmocka_unit_test(test_ring_keeps_order),
      cmocka_unit_test(test_write_error_while_receiving),
      cmocka_unit_test_setup_teardown(test_receive_error_keeps_received_bytes, setup, teardown),
      cmocka_unit_test(test_receive_error_writes_held_bytes),
      cmocka_unit_test_setup_teardown(test_short_write_then_limit, setup, teardown),
      cmocka_unit_test_setup_teardown(test_chunked_and_close_delimited, setup, teardown),
      cmocka_unit_test_setup_teardown(test_tiny_chunks_to_file, setup, teardown),
      cmocka_unit_test_setup_teardown(test_receive_buffer_registered_at_first_body, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_keepalive_reuse, setup, teardown),
      cmocka_unit_test(test_per_host_cap),
      cmocka_unit_test_setup_teardown(test_decode_gzip_deflate, setup, teardown),
      cmocka_unit_test_setup_teardown(test_decode_asks_only_when_told, setup, teardown),
      cmocka_unit_test_setup_teardown(test_decode_errors, setup, teardown),
      cmocka_unit_test(test_decode_bomb_bounded),
      cmocka_unit_test(test_keepalive_idle_timeout),
      cmocka_unit_test_setup_teardown(test_range_206, setup, teardown),
      cmocka_unit_test_setup_teardown(test_range_ignored_200, setup, teardown),
      cmocka_unit_test_setup_teardown(test_redirects, setup, teardown),
      cmocka_unit_test_setup_teardown(test_status_404_is_a_response, setup, teardown),
      cmocka_unit_test_setup_teardown(test_retry_after, setup, teardown),
      cmocka_unit_test_setup_teardown(test_recycled_records_send_their_own_headers, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_recycled_records_drop_long_buffers, setup, teardown),
      cmocka_unit_test_setup_teardown(test_head_request, setup, teardown),
      cmocka_unit_test_setup_teardown(test_not_modified_304, setup, teardown),
      cmocka_unit_test_setup_teardown(test_many_headers, setup, teardown),
      cmocka_unit_test_setup_teardown(test_broken_bodies, setup, teardown),
      cmocka_unit_test_setup_teardown(test_broken_heads, setup, teardown),
      cmocka_unit_test(test_head_deadline_not_idle),
      cmocka_unit_test(test_idle_and_total_deadlines),
      cmocka_unit_test_setup_teardown(test_cancel, setup, teardown),
      cmocka_unit_test(test_rate_limit),
      cmocka_unit_test_setup_teardown(test_refusals, setup, teardown),
      cmocka_unit_test_setup_teardown(test_free_with_active_request_is_busy, setup, teardown),
      cmocka_unit_test_setup_teardown(test_failures_are_isolated, setup, teardown),
  };
  int rc = cmocka_run_group_tests(tests, NULL, NULL);
  t_httpbad_stop();
  return rc;
}
