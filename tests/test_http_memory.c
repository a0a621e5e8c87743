/* test_http_memory.c: the HTTP client's AK_HTTP_BODY_MEMORY (the body in
 * memory, with a cap) and AK_HTTP_FAIL_ON_STATUS (a status >= 400 fails
 * AK_EHTTPSTATUS, the response kept: ak_http_response_of), from the
 * caller's side, against the project's misbehaving server (httpbad.c). */
#include <errno.h>
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
  static char buf[8][256];
  static int i;
  char *u = buf[i++ % 8];
  snprintf(u, sizeof buf[0], "http://127.0.0.1:%u%s", port, path);
  return u;
}

typedef struct fixture {
  ak_loop *loop;
  ak_http_client *client;
} fixture;

static int setup(void **state)
{
  fixture *fx = calloc(1, sizeof *fx);
  fx->loop = t_loop_new();
  ak_http_options o = {0};
  o.head_timeout_ns = INT64_C(2000000000);
  o.idle_timeout_ns = INT64_C(2000000000);
  assert_int_equal(ak_http_client_new(fx->loop, &o, &fx->client), 0);
  *state = fx;
  return 0;
}

static int teardown(void **state)
{
  fixture *fx = *state;
  assert_int_equal(ak_http_client_free(fx->client), 0);
  ak_loop_free(fx->loop);
  free(fx);
  return 0;
}

/* GETs path with flags (and a cap), waits; the caller releases. */
static ak_future *get(fixture *fx, const char *path, unsigned flags, size_t cap)
{
  ak_http_request rq = AK_HTTP_REQUEST_INIT(url_of(path));
  rq.flags = flags;
  rq.body_cap = cap;
  ak_future *f = ak_http_get(fx->client, &rq);
  assert_non_null(f);
  assert_int_equal(ak_future_wait(f, WAIT), 0);
  return f;
}

/* The body holds the server's pattern from entity offset start. */
static void check_pattern(const ak_http_response *r, size_t len, uint64_t start)
{
  assert_non_null(r->body);
  assert_int_equal(r->body_len, len);
  for (size_t i = 0; i < len; i++)
    if ((unsigned char)r->body[i] != t_body_byte(start + i))
      fail_msg("body byte %zu differs", i);
  assert_int_equal(r->body[len], '\0'); /* terminated, for text */
}

static void expect_fail(fixture *fx, const char *path, unsigned flags, size_t cap, int err,
                        const char *in_detail)
{
  ak_future *f = get(fx, path, flags, cap);
  if (ak_future_result(f) != err)
    fail_msg("%s: got %s (%s), want %s", path, ak_err_name((int)ak_future_result(f)),
             ak_future_detail(f) ? ak_future_detail(f) : "", ak_err_name(err));
  assert_int_equal(ak_future_state(f), AK_FAILED);
  if (in_detail && !strstr(ak_future_detail(f), in_detail))
    fail_msg("%s: detail '%s' lacks '%s'", path, ak_future_detail(f), in_detail);
  assert_null(ak_http_response_of(f)); /* only AK_EHTTPSTATUS keeps a response */
  ak_future_release(f);
}

/* ---- The body in memory ------------------------------------------------------------------ */

/* Content-Length, chunked and close-delimited bodies, whole and in order;
 * the value and ak_http_response_of agree. */
static void test_memory_bodies(void **state)
{
  fixture *fx = *state;
  const char *paths[] = {"/file/1000000", "/chunked/300001", "/close/300000", "/tinychunks/5000"};
  const size_t lens[] = {1000000, 300001, 300000, 5000};
  for (int i = 0; i < 4; i++) {
    ak_future *f = get(fx, paths[i], AK_HTTP_BODY_MEMORY, 0);
    assert_int_equal(ak_future_result(f), 200);
    const ak_http_response *r = ak_future_value(f);
    assert_ptr_equal(ak_http_response_of(f), r);
    check_pattern(r, lens[i], 0);
    assert_int_equal(r->body_bytes, (int64_t)lens[i]);
    ak_future_release(f);
  }
}

/* Without the flag there is no body field; HEAD and a dropped error body
 * give "" (never NULL with the flag). */
static void test_memory_empty_and_absent(void **state)
{
  fixture *fx = *state;
  ak_future *f = get(fx, "/file/1000", 0, 0);
  assert_null(((ak_http_response *)ak_future_value(f))->body);
  ak_future_release(f);

  f = get(fx, "/file/4096", AK_HTTP_BODY_MEMORY | AK_HTTP_HEAD, 0);
  const ak_http_response *r = ak_future_value(f);
  assert_int_equal(r->content_length, 4096);
  assert_string_equal(r->body, "");
  assert_int_equal(r->body_len, 0);
  ak_future_release(f);

  f = get(fx, "/no/such", AK_HTTP_BODY_MEMORY, 0);
  assert_int_equal(ak_future_result(f), 404); /* DONE: no FAIL_ON_STATUS */
  assert_string_equal(((ak_http_response *)ak_future_value(f))->body, "");
  ak_future_release(f);

  f = get(fx, "/no/such", AK_HTTP_BODY_MEMORY | AK_HTTP_KEEP_ERROR_BODY, 0);
  assert_string_equal(((ak_http_response *)ak_future_value(f))->body, "not found");
  ak_future_release(f);
}

/* The cap: exactly at it is fine; an announced length over it fails
 * before the body, a chunked or close-delimited one as it passes it. */
static void test_memory_cap(void **state)
{
  fixture *fx = *state;
  ak_future *f = get(fx, "/file/50000", AK_HTTP_BODY_MEMORY, 50000);
  assert_int_equal(ak_future_result(f), 200);
  check_pattern(ak_future_value(f), 50000, 0);
  ak_future_release(f);
  f = get(fx, "/chunked/50000", AK_HTTP_BODY_MEMORY, 50000);
  assert_int_equal(ak_future_result(f), 200);
  check_pattern(ak_future_value(f), 50000, 0);
  ak_future_release(f);

  expect_fail(fx, "/file/50001", AK_HTTP_BODY_MEMORY, 50000, AK_EHTTPTOOBIG,
              "Content-Length 50001 bytes, over the in-memory body cap of 50000");
  expect_fail(fx, "/chunked/1000000", AK_HTTP_BODY_MEMORY, 50000, AK_EHTTPTOOBIG,
              "over the in-memory body cap of 50000");
  expect_fail(fx, "/close/1000000", AK_HTTP_BODY_MEMORY, 50000, AK_EHTTPTOOBIG, "body_cap");
  /* The default cap (16 MiB) lets a 1 MB body through (above) but not a
   * 20 MB one. */
  expect_fail(fx, "/file/20000000", AK_HTTP_BODY_MEMORY, 0, AK_EHTTPTOOBIG,
              "cap of 16777216 bytes");
  /* The client's max_body_bytes still applies under a larger cap. */
  ak_http_client *small;
  ak_http_options o = {0};
  o.max_body_bytes = 1000;
  assert_int_equal(ak_http_client_new(fx->loop, &o, &small), 0);
  ak_http_request rq = AK_HTTP_REQUEST_INIT(url_of("/chunked/5000"));
  rq.flags = AK_HTTP_BODY_MEMORY;
  f = ak_http_get(small, &rq);
  assert_int_equal(ak_future_wait(f, WAIT), 0);
  assert_int_equal(ak_future_result(f), AK_EHTTPTOOBIG);
  ak_future_release(f);
  assert_int_equal(ak_http_client_free(small), 0);
}

/* Decoded bodies are collected decoded and capped decoded: a gzip bomb
 * stops at the cap. */
static void test_memory_decoded(void **state)
{
  fixture *fx = *state;
  ak_future *f = get(fx, "/z/gzip/200000", AK_HTTP_BODY_MEMORY | AK_HTTP_DECODE, 0);
  assert_int_equal(ak_future_result(f), 200);
  const ak_http_response *r = ak_future_value(f);
  assert_true(r->decoded);
  check_pattern(r, 200000, 0);
  assert_int_equal(r->decoded_bytes, 200000);
  ak_future_release(f);
  expect_fail(fx, "/z/gzipbomb/10000000", AK_HTTP_BODY_MEMORY | AK_HTTP_DECODE, 100000,
              AK_EHTTPTOOBIG, "body of at least");
  expect_fail(fx, "/z/gzipbad/200000", AK_HTTP_BODY_MEMORY | AK_HTTP_DECODE, 0, AK_EHTTPDECODE,
              NULL);
}

/* Ranges, redirects: the kept body is the final response's. */
static void test_memory_range_and_redirect(void **state)
{
  fixture *fx = *state;
  ak_http_request rq = AK_HTTP_REQUEST_INIT(url_of("/file/10000"));
  rq.flags = AK_HTTP_BODY_MEMORY;
  rq.range_start = 100;
  rq.range_end = 199;
  ak_future *f = ak_http_get(fx->client, &rq);
  assert_int_equal(ak_future_wait(f, WAIT), 0);
  assert_int_equal(ak_future_result(f), 206);
  check_pattern(ak_future_value(f), 100, 100);
  ak_future_release(f);

  f = get(fx, "/redirect/abs", AK_HTTP_BODY_MEMORY, 0);
  assert_int_equal(ak_future_result(f), 200);
  check_pattern(ak_future_value(f), 2000, 0); /* not the redirect's own "moved" */
  ak_future_release(f);
}

/* One sink per request: with an fd or an on_body the request is refused. */
static int never(const void *d, size_t n, int64_t off, void *arg)
{
  (void)d, (void)n, (void)off, (void)arg;
  return 0;
}

static void test_memory_refusals(void **state)
{
  fixture *fx = *state;
  ak_http_request rq = AK_HTTP_REQUEST_INIT(url_of("/file/10"));
  rq.flags = AK_HTTP_BODY_MEMORY;
  rq.fd = 1;
  ak_future *f = ak_http_get(fx->client, &rq);
  assert_int_equal(ak_future_wait(f, WAIT), 0);
  assert_int_equal(ak_future_result(f), -EINVAL);
  ak_future_release(f);
  rq.fd = -1;
  rq.on_body = never;
  f = ak_http_get(fx->client, &rq);
  assert_int_equal(ak_future_wait(f, WAIT), 0);
  assert_int_equal(ak_future_result(f), -EINVAL);
  ak_future_release(f);
}

/* A body cut short, reset, or cancelled halfway: the future says so and
 * what was collected is freed (ASan's leak check). */
static void test_memory_broken_and_cancelled(void **state)
{
  fixture *fx = *state;
  expect_fail(fx, "/short/100000", AK_HTTP_BODY_MEMORY, 0, AK_EHTTPTRUNCATED, NULL);
  expect_fail(fx, "/chunkcut/100000", AK_HTTP_BODY_MEMORY, 0, AK_EHTTPTRUNCATED, NULL);
  ak_future *f = get(fx, "/reset/1000000", AK_HTTP_BODY_MEMORY, 0);
  assert_true(ak_future_is_error(f));
  ak_future_release(f);

  ak_http_request rq = AK_HTTP_REQUEST_INIT(url_of("/stall/100000"));
  rq.flags = AK_HTTP_BODY_MEMORY;
  f = ak_http_get(fx->client, &rq);
  ak_future *nap = ak_sleep(fx->loop, 200000000); /* the first half comes at once */
  ak_future_wait(nap, WAIT);
  ak_future_release(nap);
  assert_false(ak_future_is_set(f));
  assert_int_equal(ak_future_cancel(f), 0);
  assert_int_equal(ak_future_wait(f, WAIT), 0);
  assert_true(ak_future_is_cancelled(f));
  assert_null(ak_http_response_of(f));
  ak_future_release(f);
}

/* ---- Fail on status ----------------------------------------------------------------------- */

/* A 404 fails AK_EHTTPSTATUS; the response stays readable (not through
 * ak_future_value, which shows DONE values only); its body only when
 * asked to keep it. */
static void test_fail_on_status_404(void **state)
{
  fixture *fx = *state;
  ak_future *f = get(fx, "/no/such", AK_HTTP_FAIL_ON_STATUS, 0);
  assert_int_equal(ak_future_state(f), AK_FAILED);
  assert_int_equal(ak_future_result(f), AK_EHTTPSTATUS);
  assert_string_equal(ak_err_name(AK_EHTTPSTATUS), "AK_EHTTPSTATUS");
  assert_non_null(strstr(ak_strerror(AK_EHTTPSTATUS), "400"));
  char want[300];
  snprintf(want, sizeof want, "%s: 404 Not Found", url_of("/no/such"));
  assert_string_equal(ak_future_detail(f), want);
  assert_null(ak_future_value(f));
  const ak_http_response *r = ak_http_response_of(f);
  assert_non_null(r);
  assert_int_equal(r->status, 404);
  assert_string_equal(r->reason, "Not Found");
  assert_string_equal(ak_http_response_header(r, "content-length"), "9");
  assert_null(r->body); /* no BODY_MEMORY */
  int64_t v = ak_future_get(f, 0, NULL);
  assert_int_equal(v, AK_EHTTPSTATUS);
  ak_future_release(f);

  f = get(fx, "/no/such", AK_HTTP_FAIL_ON_STATUS | AK_HTTP_BODY_MEMORY, 0);
  assert_string_equal(ak_http_response_of(f)->body, ""); /* dropped */
  ak_future_release(f);
  f = get(fx, "/no/such",
          AK_HTTP_FAIL_ON_STATUS | AK_HTTP_BODY_MEMORY | AK_HTTP_KEEP_ERROR_BODY, 0);
  assert_int_equal(ak_future_result(f), AK_EHTTPSTATUS);
  assert_string_equal(ak_http_response_of(f)->body, "not found");
  ak_future_release(f);
}

/* Below 400 nothing fails: 200, a 206, and a 3xx not followed. A 503
 * fails with its Retry-After readable. */
static void test_fail_on_status_boundaries(void **state)
{
  fixture *fx = *state;
  ak_future *f = get(fx, "/file/100", AK_HTTP_FAIL_ON_STATUS, 0);
  assert_int_equal(ak_future_result(f), 200);
  assert_ptr_equal(ak_http_response_of(f), ak_future_value(f));
  ak_future_release(f);
  f = get(fx, "/redirect/rel", AK_HTTP_FAIL_ON_STATUS, 0);
  assert_int_equal(ak_future_result(f), 200); /* followed: only the final status counts */
  ak_future_release(f);

  ak_http_client *nofollow;
  ak_http_options o = {0};
  o.max_redirects = -1;
  assert_int_equal(ak_http_client_new(fx->loop, &o, &nofollow), 0);
  ak_http_request rq = AK_HTTP_REQUEST_INIT(url_of("/redirect/rel"));
  rq.flags = AK_HTTP_FAIL_ON_STATUS;
  f = ak_http_get(nofollow, &rq);
  assert_int_equal(ak_future_wait(f, WAIT), 0);
  assert_true(ak_future_result(f) >= 300 && ak_future_result(f) < 400);
  ak_future_release(f);
  assert_int_equal(ak_http_client_free(nofollow), 0);

  f = get(fx, "/busy", AK_HTTP_FAIL_ON_STATUS, 0);
  assert_int_equal(ak_future_result(f), AK_EHTTPSTATUS);
  assert_int_equal(ak_http_response_of(f)->status, 503);
  assert_int_equal(ak_http_response_of(f)->retry_after_s, 1);
  ak_future_release(f);
}

/* The error body is read to its end: the connection is reused. */
static void test_fail_on_status_keeps_connection(void **state)
{
  fixture *fx = *state;
  ak_future *f = get(fx, "/no/such", AK_HTTP_FAIL_ON_STATUS, 0);
  assert_int_equal(ak_future_result(f), AK_EHTTPSTATUS);
  ak_future_release(f);
  uint64_t before = ak_http_client_reused(fx->client);
  f = get(fx, "/file/10", AK_HTTP_BODY_MEMORY, 0);
  assert_int_equal(ak_future_result(f), 200);
  assert_true(ak_http_response_of(f)->reused);
  assert_int_equal(ak_http_client_reused(fx->client), before + 1);
  ak_future_release(f);
}

/* ak_http_response_of answers for request futures only. */
static void test_response_of_other_futures(void **state)
{
  fixture *fx = *state;
  assert_null(ak_http_response_of(NULL));
  ak_future *p = ak_future_new(fx->loop);
  assert_null(ak_http_response_of(p)); /* pending */
  ak_future_fail(p, AK_EHTTPSTATUS, "not a request");
  assert_null(ak_http_response_of(p));
  ak_future_release(p);
  p = ak_future_new(NULL);
  static int x;
  ak_future_set(p, 200, &x, NULL);
  assert_null(ak_http_response_of(p)); /* DONE, but its value is not a response */
  ak_future_release(p);
  /* Pending, then a failure that is not the status's. */
  ak_http_request rq = AK_HTTP_REQUEST_INIT(url_of("/file/1000"));
  rq.flags = AK_HTTP_FAIL_ON_STATUS;
  ak_future *f = ak_http_get(fx->client, &rq);
  assert_null(ak_http_response_of(f));
  assert_int_equal(ak_future_wait(f, WAIT), 0);
  assert_non_null(ak_http_response_of(f));
  ak_future_release(f);
  expect_fail(fx, "/badstatus", AK_HTTP_FAIL_ON_STATUS, 0, AK_EHTTPPROTO, NULL);
}

int main(void)
{
  t_require_uring();
  if (t_httpbad_start(&port) < 0)
    return 1;
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_memory_bodies, setup, teardown),
      cmocka_unit_test_setup_teardown(test_memory_empty_and_absent, setup, teardown),
      cmocka_unit_test_setup_teardown(test_memory_cap, setup, teardown),
      cmocka_unit_test_setup_teardown(test_memory_decoded, setup, teardown),
      cmocka_unit_test_setup_teardown(test_memory_range_and_redirect, setup, teardown),
      cmocka_unit_test_setup_teardown(test_memory_refusals, setup, teardown),
      cmocka_unit_test_setup_teardown(test_memory_broken_and_cancelled, setup, teardown),
      cmocka_unit_test_setup_teardown(test_fail_on_status_404, setup, teardown),
      cmocka_unit_test_setup_teardown(test_fail_on_status_boundaries, setup, teardown),
      cmocka_unit_test_setup_teardown(test_fail_on_status_keeps_connection, setup, teardown),
      cmocka_unit_test_setup_teardown(test_response_of_other_futures, setup, teardown),
  };
  int rc = cmocka_run_group_tests(tests, NULL, NULL);
  t_httpbad_stop();
  return rc;
}
