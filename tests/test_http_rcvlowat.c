/* test_http_rcvlowat.c: the HTTP client's receive low-water mark
 * (exchange.c, section 4), from the caller's side against httpbad: a body
 * dripped in small pieces (as squid writes) arrives whole and byte-exact in
 * far fewer receives than pieces; a server that stops with fewer bytes
 * than the mark waiting still trips the idle deadline, with exactly the
 * bytes it sent counted; a server slow but steady under the mark is not
 * declared idle, whether the idle deadline is longer or shorter than the
 * mark's own look at the socket. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include <asynckit.h>

#include "helpers.h"
#include "httpbad.h"

static uint16_t port;
static const int64_t WAIT = INT64_C(20000000000); /* every wait: 20 s at most */

static char *url_of(const char *path)
{
  static char buf[4][256];
  static int i;
  char *u = buf[i++ % 4];
  snprintf(u, sizeof buf[0], "http://127.0.0.1:%u%s", port, path);
  return u;
}

/* The body handed over receive by receive (one call per receive's span). */
typedef struct sink {
  size_t bytes;
  unsigned calls;
  bool mismatch;
} sink;

static int to_sink(const void *data, size_t len, int64_t offset, void *arg)
{
  sink *s = arg;
  const unsigned char *d = data;
  for (size_t i = 0; i < len; i++)
    if (d[i] != t_body_byte((uint64_t)offset + i))
      s->mismatch = true;
  s->bytes += len;
  s->calls++;
  return 0;
}

typedef struct run {
  int64_t result;
  int64_t took_ns;
  int64_t progress;
} run;

/* GETs path with an idle deadline of idle_ns, into s (fd < 0) or fd. */
static run get(int64_t idle_ns, const char *path, sink *s, int fd)
{
  ak_loop *loop = t_loop_new();
  ak_http_options o = {.idle_timeout_ns = idle_ns, .head_timeout_ns = INT64_C(5000000000)};
  ak_http_client *client;
  assert_int_equal(ak_http_client_new(loop, &o, &client), 0);
  run r = {0};
  ak_http_request rq = AK_HTTP_REQUEST_INIT(url_of(path));
  if (fd >= 0) {
    rq.fd = fd;
  } else {
    rq.on_body = to_sink;
    rq.arg = s;
  }
  rq.progress = &r.progress;
  int64_t t0 = ak_now_ns();
  ak_future *f = ak_http_get(client, &rq);
  assert_non_null(f);
  assert_int_equal(ak_future_wait(f, WAIT), 0);
  r.took_ns = ak_now_ns() - t0;
  r.result = ak_future_result(f);
  if (ak_future_is_error(f))
    assert_non_null(ak_future_detail(f));
  ak_future_release(f);
  assert_int_equal(ak_http_client_free(client), 0);
  ak_loop_free(loop);
  return r;
}

/* The file at fd is httpbad's body of size bytes, exactly. */
static void check_file(int fd, int64_t size)
{
  assert_int_equal(t_body_file_differs(fd, size), -1);
}

/* 512 KiB in 4 KiB pieces 2 ms apart: 128 pieces, each its own segment,
 * each arriving while the client's receive waits. Without the mark every
 * piece completes a receive (about 128); with it a receive waits for 64
 * KiB (about 8, plus the head's and a few the ring splits). */
static void test_dripped_body_fewer_receives(void **state)
{
  (void)state;
  sink s = {0};
  run r = get(INT64_C(5000000000), "/drip/524288/4096/2000", &s, -1);
  assert_int_equal(r.result, 200);
  assert_int_equal(s.bytes, 524288);
  assert_false(s.mismatch);
  assert_int_equal(r.progress, 524288);
  print_message("%u receives for 128 pieces\n", s.calls);
  if (s.calls > 40)
    fail_msg("%u receives for 128 pieces: the low-water mark did not hold", s.calls);

  /* To a file (the ring's write path): whole and byte-exact, and a body
   * whose length is not a multiple of the piece (the last piece short, the
   * mark lowered to the rest). */
  int fd = t_tmpfile(O_RDWR);
  r = get(INT64_C(5000000000), "/drip/300001/4096/1000", NULL, fd);
  assert_int_equal(r.result, 200);
  assert_int_equal(r.progress, 300001);
  check_file(fd, 300001);
  close(fd);
}

/* The head, 5000 body bytes of 200000 (under the 64 KiB mark), then
 * silence: the bytes are taken (progress: exactly 5000, in the file) and
 * the idle deadline still fires, not the 30 s of the stall. */
static void test_stall_under_mark_is_idle(void **state)
{
  (void)state;
  int fd = t_tmpfile(O_RDWR);
  run r = get(INT64_C(400000000), "/stallsome/200000/5000", NULL, fd);
  assert_int_equal(r.result, AK_EHTTPIDLETIMEOUT);
  assert_int_equal(r.progress, 5000);
  check_file(fd, 5000);
  assert_true(r.took_ns >= INT64_C(400000000) && r.took_ns < INT64_C(5000000000));
  close(fd);

  /* The same through the callback sink, with an idle deadline shorter
   * than the mark's look (the look then happens at the idle deadline). */
  sink s = {0};
  r = get(INT64_C(60000000), "/stallsome/200000/5000", &s, -1);
  assert_int_equal(r.result, AK_EHTTPIDLETIMEOUT);
  assert_int_equal(s.bytes, 5000);
  assert_false(s.mismatch);
  assert_true(r.took_ns < INT64_C(5000000000));
}

/* 40,000 bytes in 1000-byte pieces, 50 ms apart (2 s), idle deadline 1 s:
 * a mark of the rest (39 KB) would hold the receive for the whole body;
 * the look at 100 ms takes what waits, and the download completes. */
static void test_slow_steady_not_idle(void **state)
{
  (void)state;
  sink s = {0};
  run r = get(INT64_C(1000000000), "/drip/40000/1000/50000", &s, -1);
  assert_int_equal(r.result, 200);
  assert_int_equal(s.bytes, 40000);
  assert_false(s.mismatch);
}

/* The same with the idle deadline (80 ms) shorter than the look (100 ms)
 * and pieces 10 ms apart: the bytes under the mark found at the idle
 * deadline are progress, not idleness. */
static void test_idle_shorter_than_look_not_idle(void **state)
{
  (void)state;
  sink s = {0};
  run r = get(INT64_C(80000000), "/drip/40000/1000/10000", &s, -1);
  assert_int_equal(r.result, 200);
  assert_int_equal(s.bytes, 40000);
  assert_false(s.mismatch);
}

int main(void)
{
  t_require_uring();
  if (t_httpbad_start(&port) != 0)
    return 1;
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_dripped_body_fewer_receives),
      cmocka_unit_test(test_stall_under_mark_is_idle),
      cmocka_unit_test(test_slow_steady_not_idle),
      cmocka_unit_test(test_idle_shorter_than_look_not_idle),
  };
  int rc = cmocka_run_group_tests(tests, NULL, NULL);
  t_httpbad_stop();
  return rc;
}
