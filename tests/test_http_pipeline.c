/* test_http_pipeline.c: ak_http_head_pipeline (HTTP/1.1 pipelining of
 * HEADs) from the caller's side, against a scripted server in a thread of
 * this test: every answer is matched to its own request (the server echoes
 * each request's path in X-Path), a server that closes after k answers has
 * the rest sent again, a HEAD answered with a body fails clearly without
 * touching the answers after it, a body that comes late is not taken for
 * the next answer (also when its first bytes look like the start of one),
 * a server that closes at once fails the requests after
 * bounded attempts, and cancels and refusals. Also requests on a
 * kept-alive connection that went bad while idle (the server closed it
 * after its answer, a body came late after a HEAD's answer), with the
 * client's trust window (internal.h AK__HTTP_IDLE_TRUST_NS) forced long, caught
 * after the send (sent again, stray bytes refused), and 0, caught by the
 * look at the socket, the client's counts saying which path ran
 * (src/http/reuse_probe.h: this test links the static library); a
 * forward proxy's kept connection looked at whatever the window; heads
 * past the response record's rooms (src/http/response.c: its reason and
 * URL room, its first headers block), a reason split over
 * two receives; two origins interleaved in one call. With pipeline_depth
 * (ak_http_options), a later call's requests join the running pipeline:
 * before its requests went out (one write for all) and after (written by
 * the member reading, with the answers still to come), never past the
 * depth, a joined request cancelled before it went out, and joined
 * requests on a connection the server closes or resets. */
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
#include "http/reuse_probe.h"

static const int64_t WAIT = INT64_C(20000000000); /* every wait: 20 s at most */
enum { MAX_CONNS = 16, IO_WAIT_MS = 10000 };

/* The script: connection c (0, 1...) answers close_after[c] requests and
 * then closes (-1: answers all; 0: closes before answering). Paths:
 * "/changed..." is a 200, "/body..." a 200 sent with a 5-byte body to HEAD
 * too (the server bug), "/late..." the same with the body written 100 ms
 * after the head, "/carryN..." a 200 with the body "HTTPS!" to HEAD too,
 * its first N bytes (a prefix of "HTTP/") written with the head and the
 * rest 100 ms later, "/cutcarry..." the same with "HT" and then a close,
 * "/slow..." a 304 after 100 ms, "/reset..." a 304 after 100 ms and then,
 * on the first connection, a reset (the requests read after it dropped),
 * anything else a 304. A request in absolute form (to a forward proxy)
 * goes by its path; X-Path echoes the whole target. */
typedef struct server {
  int lfd;
  uint16_t port;
  int close_after[MAX_CONNS];
  int conns;     /* connections accepted */
  int requests;  /* requests read, all connections */
  int max_batch; /* most requests found in one read */
  int shut;      /* the script's closes done (FIN sent) */
  int late;      /* late bodies and unasked responses sent */
  pthread_t thread;
} server;

static bool send_all(int fd, const char *p, size_t n)
{
  while (n) {
    ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
    if (w <= 0)
      return false;
    p += w;
    n -= (size_t)w;
  }
  return true;
}

/* Answers one request (method and target); false when the connection broke. */
static bool answer(server *s, int fd, const char *method, const char *target)
{
  char out[512];
  bool head = strcmp(method, "HEAD") == 0;
  const char *path = target;
  if (strncmp(path, "http://", 7) == 0 && !(path = strchr(target + 7, '/')))
    path = "/";
  if (strncmp(path, "/changed", 8) == 0) {
    snprintf(out, sizeof out,
             "HTTP/1.1 200 OK\r\nX-Path: %s\r\nContent-Length: 5\r\n"
             "Last-Modified: Sat, 03 Feb 2001 04:05:06 GMT\r\n\r\n%s",
             target, head ? "" : "hello");
    return send_all(fd, out, strlen(out));
  }
  if (strncmp(path, "/body", 5) == 0) { /* head and body in one write */
    snprintf(out, sizeof out, "HTTP/1.1 200 OK\r\nX-Path: %s\r\nContent-Length: 5\r\n\r\nhello",
             target);
    return send_all(fd, out, strlen(out));
  }
  if (strncmp(path, "/unasked", 8) == 0) { /* then a response nobody asked for */
    snprintf(out, sizeof out, "HTTP/1.1 304 Not Modified\r\nX-Path: %s\r\n\r\n", target);
    if (!send_all(fd, out, strlen(out)))
      return false;
    usleep(50 * 1000); /* after a pause: it reaches the connection when idle */
    snprintf(out, sizeof out, "HTTP/1.1 200 OK\r\nX-Path: /nobody\r\n\r\n");
    bool ok = send_all(fd, out, strlen(out));
    __atomic_fetch_add(&s->late, 1, __ATOMIC_RELEASE);
    return ok;
  }
  if (strncmp(path, "/longhead", 9) == 0) { /* a 100, then a head past the record's rooms */
    char big[2048];
    char name[101], value[401], reason[301];
    memset(name, 'n', 100);
    name[100] = '\0';
    memset(value, 'v', 400);
    value[400] = '\0';
    memset(reason, 'r', 300);
    reason[300] = '\0';
    snprintf(big, sizeof big,
             "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 %s\r\nX-Path: %s\r\nX-%s: %s\r\n"
             "Content-Length: 0\r\n\r\n",
             reason, target, name, value);
    return send_all(fd, big, strlen(big));
  }
  if (strncmp(path, "/splitreason", 12) == 0) { /* the reason in two receives */
    if (!send_all(fd, "HTTP/1.1 200 Fi", 15))
      return false;
    usleep(30 * 1000);
    snprintf(out, sizeof out, "ne Thanks\r\nX-Path: %s\r\nContent-Length: 0\r\n\r\n", target);
    return send_all(fd, out, strlen(out));
  }
  if (strncmp(path, "/cutcarry", 9) == 0) { /* "HT" of its body, then a close */
    snprintf(out, sizeof out, "HTTP/1.1 200 OK\r\nX-Path: %s\r\nContent-Length: 6\r\n\r\nHT",
             target);
    send_all(fd, out, strlen(out));
    return false;
  }
  unsigned carry;
  if (sscanf(path, "/carry%u", &carry) == 1 && carry <= 6) {
    static const char body[] = "HTTPS!";
    snprintf(out, sizeof out, "HTTP/1.1 200 OK\r\nX-Path: %s\r\nContent-Length: 6\r\n\r\n%.*s",
             target, (int)carry, body);
    if (!send_all(fd, out, strlen(out)))
      return false;
    usleep(100 * 1000); /* the rest after a pause: a receive of its own */
    return send_all(fd, body + carry, 6 - carry);
  }
  if (strncmp(path, "/slow", 5) == 0 || strncmp(path, "/reset", 6) == 0) {
    usleep(100 * 1000); /* later requests are read meanwhile */
    snprintf(out, sizeof out, "HTTP/1.1 304 Not Modified\r\nX-Path: %s\r\n\r\n", target);
    if (!send_all(fd, out, strlen(out)))
      return false;
    if (strncmp(path, "/reset", 6) != 0 || __atomic_load_n(&s->conns, __ATOMIC_RELAXED) > 1)
      return true;
    struct linger now = {.l_onoff = 1, .l_linger = 0}; /* the close is a reset */
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &now, sizeof now);
    return false;
  }
  if (strncmp(path, "/late", 5) == 0) {
    snprintf(out, sizeof out, "HTTP/1.1 200 OK\r\nX-Path: %s\r\nContent-Length: 5\r\n\r\n", target);
    if (!send_all(fd, out, strlen(out)))
      return false;
    usleep(100 * 1000); /* the body after a pause: a receive of its own */
    bool ok = send_all(fd, "hello", 5);
    __atomic_fetch_add(&s->late, 1, __ATOMIC_RELEASE);
    return ok;
  }
  snprintf(out, sizeof out, "HTTP/1.1 304 Not Modified\r\nX-Path: %s\r\nETag: \"e\"\r\n\r\n",
           target);
  return send_all(fd, out, strlen(out));
}

/* One connection: requests parsed off the stream as they come, answered
 * in order, until the script's count or the peer's close. */
static void serve_conn(server *s, int fd, int limit)
{
  char buf[65536];
  size_t have = 0;
  int answered = 0;
  while (limit < 0 || answered < limit) {
    struct pollfd p = {.fd = fd, .events = POLLIN};
    if (poll(&p, 1, IO_WAIT_MS) <= 0)
      return;
    ssize_t r = recv(fd, buf + have, sizeof buf - 1 - have, 0);
    if (r <= 0)
      return;
    have += (size_t)r;
    buf[have] = '\0';
    int batch = 0;
    char *end;
    while ((end = strstr(buf, "\r\n\r\n")) && (limit < 0 || answered < limit)) {
      char method[16] = "", path[256] = "";
      sscanf(buf, "%15s %255s", method, path);
      __atomic_fetch_add(&s->requests, 1, __ATOMIC_RELAXED);
      batch++;
      if (!answer(s, fd, method, path))
        return;
      answered++;
      size_t used = (size_t)(end + 4 - buf);
      memmove(buf, end + 4, have - used + 1);
      have -= used;
    }
    if (batch > __atomic_load_n(&s->max_batch, __ATOMIC_RELAXED))
      __atomic_store_n(&s->max_batch, batch, __ATOMIC_RELAXED);
  }
  /* The script's close: FIN, then what the client still sends is read
   * and dropped until it closes too (a close with unread bytes would be
   * an RST, which may take the answers already sent with it). */
  shutdown(fd, SHUT_WR);
  __atomic_fetch_add(&s->shut, 1, __ATOMIC_RELEASE);
  for (;;) {
    struct pollfd p = {.fd = fd, .events = POLLIN};
    if (poll(&p, 1, IO_WAIT_MS) <= 0 || recv(fd, buf, sizeof buf, 0) <= 0)
      return;
  }
}

static void *server_main(void *arg)
{
  server *s = arg;
  for (;;) {
    struct pollfd p = {.fd = s->lfd, .events = POLLIN};
    if (poll(&p, 1, IO_WAIT_MS) <= 0)
      return NULL;
    int fd = accept(s->lfd, NULL, NULL);
    if (fd < 0)
      return NULL;
    int c = __atomic_fetch_add(&s->conns, 1, __ATOMIC_RELAXED);
    serve_conn(s, fd, c < MAX_CONNS ? s->close_after[c] : -1);
    close(fd);
  }
}

/* Starts the server; close_after: the script's counts, the rest -1. */
static void server_start(server *s, const int *close_after, size_t n)
{
  memset(s, 0, sizeof *s);
  for (int i = 0; i < MAX_CONNS; i++)
    s->close_after[i] = i < (int)n ? close_after[i] : -1;
  s->lfd = socket(AF_INET, SOCK_STREAM, 0);
  assert_true(s->lfd >= 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t al = sizeof a;
  assert_int_equal(bind(s->lfd, (struct sockaddr *)&a, sizeof a), 0);
  assert_int_equal(listen(s->lfd, 64), 0);
  assert_int_equal(getsockname(s->lfd, (struct sockaddr *)&a, &al), 0);
  s->port = ntohs(a.sin_port);
  s->thread = t_thread_start(server_main, s, 0);
}

static void server_stop(server *s)
{
  shutdown(s->lfd, SHUT_RDWR); /* its poll returns; accept fails */
  t_thread_join(s->thread);
  close(s->lfd);
}

typedef struct fixture {
  ak_loop *loop;
  ak_http_client *client;
  server srv;
} fixture;

static void fixture_open(fixture *fx, const int *close_after, size_t n)
{
  server_start(&fx->srv, close_after, n);
  fx->loop = t_loop_new();
  ak_http_options o = {.max_conns_per_host = 4, .idle_timeout_ns = INT64_C(5000000000)};
  assert_int_equal(ak_http_client_new(fx->loop, &o, &fx->client), 0);
}

static void fixture_close(fixture *fx)
{
  assert_int_equal(ak_http_client_free(fx->client), 0);
  ak_loop_run(fx->loop, AK_RUN_DEFAULT);
  ak_loop_free(fx->loop);
  server_stop(&fx->srv);
}

/* The trust window (internal.h AK__HTTP_IDLE_TRUST_NS) forced, per client: long,
 * no kept connection is looked at before reuse (a close or stray bytes
 * are caught after the send); 0, every one is. */
static const int64_t TRUST_LONG = INT64_C(3600000000000);

/* The client's counts of what reusing kept connections did. */
static void assert_reuse(fixture *fx, uint64_t looks, uint64_t skipped, uint64_t resent,
                         uint64_t strays)
{
  ak__http_reuse_counts n = ak__http_client_reuse_counts(fx->client);
  if (n.looks != looks || n.looks_skipped != skipped || n.resent != resent || n.strays != strays)
    fail_msg("looks %llu skipped %llu resent %llu strays %llu; wanted %llu %llu %llu %llu",
             (unsigned long long)n.looks, (unsigned long long)n.looks_skipped,
             (unsigned long long)n.resent, (unsigned long long)n.strays, (unsigned long long)looks,
             (unsigned long long)skipped, (unsigned long long)resent, (unsigned long long)strays);
}

/* Waits (bounded) until the server's counter *v reaches n, and a moment
 * more: what it sent then (bytes, a FIN) is in the client's socket. */
static void wait_server(int *v, int n)
{
  for (int ms = 0; __atomic_load_n(v, __ATOMIC_ACQUIRE) < n; ms++) {
    if (ms >= IO_WAIT_MS)
      fail_msg("the server's count stayed under %d", n);
    usleep(1000);
  }
  usleep(5 * 1000);
}

enum { MAXN = 32 };

/* Sends HEADs of paths as one pipeline and waits for them all. */
static void run_pipeline(fixture *fx, const char *const *paths, size_t n, ak_future **out)
{
  static char urls[MAXN][300];
  ak_http_request rq[MAXN];
  for (size_t i = 0; i < n; i++) {
    snprintf(urls[i], sizeof urls[i], "http://127.0.0.1:%u%s", fx->srv.port, paths[i]);
    rq[i] = (ak_http_request)AK_HTTP_REQUEST_INIT(urls[i]);
    rq[i].flags = AK_HTTP_HEAD;
  }
  assert_int_equal(ak_http_head_pipeline(fx->client, rq, n, out), 0);
  for (size_t i = 0; i < n; i++) {
    assert_non_null(out[i]);
    assert_int_equal(ak_future_wait(out[i], WAIT), 0);
  }
}

/* out's response is DONE with status and its own path. */
static void assert_answer(ak_future *f, int status, const char *path)
{
  if (ak_future_state(f) != AK_DONE)
    fail_msg("%s: %s (%s)", path, ak_err_name((int)ak_future_result(f)),
             ak_future_detail(f) ? ak_future_detail(f) : "");
  const ak_http_response *r = ak_http_response_of(f);
  assert_non_null(r);
  assert_int_equal(r->status, status);
  const char *xp = ak_http_response_header(r, "x-path");
  assert_non_null(xp);
  assert_string_equal(xp, path);
}

static void release_all(ak_future **f, size_t n)
{
  for (size_t i = 0; i < n; i++)
    ak_future_release(f[i]);
}

static void make_paths(char (*buf)[32], const char **paths, size_t n, const char *prefix)
{
  for (size_t i = 0; i < n; i++) {
    snprintf(buf[i], sizeof buf[i], "%s%zu", prefix, i);
    paths[i] = buf[i];
  }
}

/* Twenty 304s: one connection, the requests found together by the server,
 * each answer its own request's. */
static void test_pipelined_304s_in_order(void **state)
{
  (void)state;
  fixture fx;
  fixture_open(&fx, NULL, 0);
  char buf[20][32];
  const char *paths[20];
  make_paths(buf, paths, 20, "/f");
  ak_future *f[20];
  run_pipeline(&fx, paths, 20, f);
  for (size_t i = 0; i < 20; i++)
    assert_answer(f[i], 304, paths[i]);
  assert_int_equal(__atomic_load_n(&fx.srv.conns, __ATOMIC_RELAXED), 1);
  assert_int_equal(__atomic_load_n(&fx.srv.requests, __ATOMIC_RELAXED), 20);
  assert_true(__atomic_load_n(&fx.srv.max_batch, __ATOMIC_RELAXED) > 1); /* pipelined */
  release_all(f, 20);
  /* The connection is kept alive after the last answer: a GET reuses it. */
  char u[300];
  snprintf(u, sizeof u, "http://127.0.0.1:%u/changed/x", fx.srv.port);
  ak_http_request rq = AK_HTTP_REQUEST_INIT(u);
  rq.flags = AK_HTTP_BODY_MEMORY;
  ak_future *g = ak_http_get(fx.client, &rq);
  assert_int_equal(ak_future_wait(g, WAIT), 0);
  assert_answer(g, 200, "/changed/x");
  assert_string_equal(ak_http_response_of(g)->body, "hello");
  assert_true(ak_http_response_of(g)->reused);
  ak_future_release(g);
  fixture_close(&fx);
}

/* 304s and 200s mixed: each status is its own request's. */
static void test_mixed_304_200(void **state)
{
  (void)state;
  fixture fx;
  fixture_open(&fx, NULL, 0);
  const char *paths[] = {"/a", "/changed/b", "/c", "/changed/d", "/changed/e", "/f"};
  ak_future *f[6];
  run_pipeline(&fx, paths, 6, f);
  for (size_t i = 0; i < 6; i++)
    assert_answer(f[i], strncmp(paths[i], "/changed", 8) == 0 ? 200 : 304, paths[i]);
  assert_int_equal(__atomic_load_n(&fx.srv.conns, __ATOMIC_RELAXED), 1);
  release_all(f, 6);
  fixture_close(&fx);
}

/* The server closes after 3 answers, then after 4, then after 0 (a fresh
 * connection closed before any answer), then keeps the rest: every request
 * is answered, none failed for the closes, none asked twice after its
 * answer. */
static void test_close_after_k_retries_the_rest(void **state)
{
  (void)state;
  fixture fx;
  const int script[] = {3, 4, 0, -1};
  fixture_open(&fx, script, 4);
  char buf[12][32];
  const char *paths[12];
  make_paths(buf, paths, 12, "/k");
  ak_future *f[12];
  run_pipeline(&fx, paths, 12, f);
  for (size_t i = 0; i < 12; i++)
    assert_answer(f[i], 304, paths[i]);
  assert_int_equal(__atomic_load_n(&fx.srv.conns, __ATOMIC_RELAXED), 4);
  release_all(f, 12);
  fixture_close(&fx);
}

/* A server that closes every connection before answering: the requests
 * fail (AK_EHTTPCLOSED) after a bounded number of connections. */
static void test_server_that_never_answers_fails_bounded(void **state)
{
  (void)state;
  fixture fx;
  int script[MAX_CONNS];
  for (int i = 0; i < MAX_CONNS; i++)
    script[i] = 0;
  fixture_open(&fx, script, MAX_CONNS);
  char buf[5][32];
  const char *paths[5];
  make_paths(buf, paths, 5, "/n");
  ak_future *f[5];
  run_pipeline(&fx, paths, 5, f);
  for (size_t i = 0; i < 5; i++) {
    assert_int_equal(ak_future_state(f[i]), AK_FAILED);
    assert_int_equal(ak_future_result(f[i]), AK_EHTTPCLOSED);
    if (i > 0) /* the ones behind say why they were never asked again */
      assert_non_null(strstr(ak_future_detail(f[i]), "not answered"));
  }
  int conns = __atomic_load_n(&fx.srv.conns, __ATOMIC_RELAXED);
  assert_true(conns >= 2 && conns <= 4);
  release_all(f, 5);
  fixture_close(&fx);
}

/* A HEAD answered with a body (a server bug) fails clearly; the answers
 * after it are their own requests', on another connection. */
static void test_head_with_body_fails_clearly(void **state)
{
  (void)state;
  fixture fx;
  fixture_open(&fx, NULL, 0);
  const char *paths[] = {"/a", "/body/b", "/c", "/d"};
  ak_future *f[4];
  run_pipeline(&fx, paths, 4, f);
  assert_answer(f[0], 304, "/a");
  assert_int_equal(ak_future_state(f[1]), AK_FAILED);
  assert_int_equal(ak_future_result(f[1]), AK_EHTTPPROTO);
  assert_non_null(ak_future_detail(f[1]));
  assert_non_null(strstr(ak_future_detail(f[1]), "HEAD"));
  assert_answer(f[2], 304, "/c");
  assert_answer(f[3], 304, "/d");
  assert_int_equal(__atomic_load_n(&fx.srv.conns, __ATOMIC_RELAXED), 2);
  release_all(f, 4);
  fixture_close(&fx);
}

/* The body after a HEAD's answer comes in a later receive: it is not
 * taken for the next answer; the requests behind go to another
 * connection and are answered there. */
static void test_late_body_not_taken_for_next_answer(void **state)
{
  (void)state;
  fixture fx;
  fixture_open(&fx, NULL, 0);
  const char *paths[] = {"/late/a", "/b", "/c"};
  ak_future *f[3];
  run_pipeline(&fx, paths, 3, f);
  assert_answer(f[0], 200, "/late/a"); /* settled before its body came */
  assert_answer(f[1], 304, "/b");
  assert_answer(f[2], 304, "/c");
  assert_int_equal(__atomic_load_n(&fx.srv.conns, __ATOMIC_RELAXED), 2);
  release_all(f, 3);
  fixture_close(&fx);
}

/* The same when the body's first bytes came with the head and look like
 * the start of the next answer ("HTTP", "H": a prefix of "HTTP/"), the
 * rest later: not taken for the next answer either, nor a failure of it;
 * the requests behind go to another connection, as with any late body.
 * (They failed with AK_EHTTPPROTO when the rest came.) */
static void test_late_body_after_status_prefix_resent(void **state)
{
  (void)state;
  fixture fx;
  fixture_open(&fx, NULL, 0);
  const char *paths[] = {"/carry4/a", "/b", "/carry1/c", "/d"};
  ak_future *f[4];
  run_pipeline(&fx, paths, 4, f);
  assert_answer(f[0], 200, "/carry4/a");
  assert_answer(f[1], 304, "/b");
  assert_answer(f[2], 200, "/carry1/c");
  assert_answer(f[3], 304, "/d");
  /* /b and what is behind it on a second connection, /d on a third. */
  assert_int_equal(__atomic_load_n(&fx.srv.conns, __ATOMIC_RELAXED), 3);
  release_all(f, 4);
  fixture_close(&fx);
}

/* The connection closes after such a prefix: the request behind had no
 * answer begun, so it is sent again, as after a close before any byte
 * (it failed AK_EHTTPPROTO, "closed inside the response head"). */
static void test_close_after_status_prefix_resent(void **state)
{
  (void)state;
  fixture fx;
  fixture_open(&fx, NULL, 0);
  const char *paths[] = {"/cutcarry/a", "/b", "/c"};
  ak_future *f[3];
  run_pipeline(&fx, paths, 3, f);
  assert_answer(f[0], 200, "/cutcarry/a");
  assert_answer(f[1], 304, "/b");
  assert_answer(f[2], 304, "/c");
  assert_int_equal(__atomic_load_n(&fx.srv.conns, __ATOMIC_RELAXED), 2);
  release_all(f, 3);
  fixture_close(&fx);
}

/* A member cancelled before the pipeline is written leaves it (CANCELLED);
 * the others are answered, each with its own. */
/* Found by fuzz_http_pipeline: a response that reaches a kept-alive
 * connection while it is idle (nobody asked for it) was read by the next
 * pipeline sent on it as its first answer, the answers after it shifted by
 * one. The idle connection with bytes waiting is not reused: every answer
 * is its own request's. */
static void test_unasked_response_on_idle_conn_not_taken(void **state)
{
  (void)state;
  fixture fx;
  fixture_open(&fx, NULL, 0);
  char u[300];
  snprintf(u, sizeof u, "http://127.0.0.1:%u/unasked", fx.srv.port);
  ak_http_request rq = AK_HTTP_REQUEST_INIT(u);
  rq.flags = AK_HTTP_HEAD;
  ak_future *g = ak_http_get(fx.client, &rq);
  assert_int_equal(ak_future_wait(g, WAIT), 0);
  assert_answer(g, 304, "/unasked");
  ak_future_release(g);
  usleep(200 * 1000); /* the unasked response is in the idle connection now */
  const char *paths[] = {"/a", "/b", "/c"};
  ak_future *f[3];
  run_pipeline(&fx, paths, 3, f);
  for (size_t i = 0; i < 3; i++)
    assert_answer(f[i], 304, paths[i]);
  /* Caught by the look: the default window is shorter than 200 ms. */
  assert_reuse(&fx, 1, 0, 0, 0);
  release_all(f, 3);
  fixture_close(&fx);
}

/* One request (HEAD or a GET into memory), waited for. */
static ak_future *get_one(fixture *fx, const char *path, unsigned flags)
{
  char u[300];
  snprintf(u, sizeof u, "http://127.0.0.1:%u%s", fx->srv.port, path);
  ak_http_request rq = AK_HTTP_REQUEST_INIT(u);
  rq.flags = flags;
  ak_future *f = ak_http_get(fx->client, &rq);
  assert_non_null(f);
  assert_int_equal(ak_future_wait(f, WAIT), 0);
  return f;
}

/* The server closes each connection right after its first answer, without
 * saying so (no Connection: close), and the next request comes once the
 * close has reached the client. trust: the client's window. Either way
 * the request is answered on a new connection, neither failed nor
 * slowed by a timeout; a GET as well as a HEAD. */
static void close_after_answer(fixture *fx, int64_t trust)
{
  const int script[] = {1, 1, 1, 1};
  fixture_open(fx, script, 4);
  ak__http_client_set_idle_trust(fx->client, trust);
  int64_t t0 = ak_now_ns();
  ak_future *a = get_one(fx, "/a", AK_HTTP_HEAD);
  assert_answer(a, 304, "/a");
  wait_server(&fx->srv.shut, 1);
  ak_future *b = get_one(fx, "/b", AK_HTTP_HEAD);
  assert_answer(b, 304, "/b");
  assert_false(ak_http_response_of(b)->reused); /* answered on a new connection */
  wait_server(&fx->srv.shut, 2);
  ak_future *c = get_one(fx, "/changed/c", AK_HTTP_BODY_MEMORY);
  assert_answer(c, 200, "/changed/c");
  assert_string_equal(ak_http_response_of(c)->body, "hello");
  assert_false(ak_http_response_of(c)->reused);
  assert_true(ak_now_ns() - t0 < INT64_C(2000000000)); /* no timeout waited for */
  assert_int_equal(__atomic_load_n(&fx->srv.conns, __ATOMIC_RELAXED), 3);
  /* Each request answered once (one sent on a closed connection is
   * dropped unread). */
  assert_int_equal(__atomic_load_n(&fx->srv.requests, __ATOMIC_RELAXED), 3);
  ak_future_release(a);
  ak_future_release(b);
  ak_future_release(c);
}

/* Inside the window: b and c sent on the closed connection without a look,
 * then sent again on a new one (retry_on_fresh_conn). */
static void test_close_after_answer_request_sent_again(void **state)
{
  (void)state;
  fixture fx;
  close_after_answer(&fx, TRUST_LONG);
  assert_reuse(&fx, 0, 2, 2, 0);
  fixture_close(&fx);
}

/* Past the window: the look finds each closed connection; nothing is
 * sent on it. */
static void test_close_after_answer_found_by_look(void **state)
{
  (void)state;
  fixture fx;
  close_after_answer(&fx, 0);
  assert_reuse(&fx, 2, 0, 0, 0);
  fixture_close(&fx);
}

/* The same under a pipeline: its connection closed after the answers of
 * the one before, the next pipeline goes to a new connection, and the
 * kept-alive connection's close is not counted against it: two new
 * connections that close before answering are still allowed after it
 * (PIPE_DRY_MAX), and the third answers. trust: the client's window. */
static void pipeline_on_closed_kept_conn(fixture *fx, int64_t trust)
{
  const int script[] = {3, 0, 0, -1};
  fixture_open(fx, script, 4);
  ak__http_client_set_idle_trust(fx->client, trust);
  const char *first[] = {"/a", "/b", "/c"};
  const char *second[] = {"/d", "/e", "/f"};
  ak_future *f[3], *g[3];
  run_pipeline(fx, first, 3, f);
  for (size_t i = 0; i < 3; i++)
    assert_answer(f[i], 304, first[i]);
  wait_server(&fx->srv.shut, 1);
  run_pipeline(fx, second, 3, g);
  for (size_t i = 0; i < 3; i++)
    assert_answer(g[i], 304, second[i]);
  assert_int_equal(__atomic_load_n(&fx->srv.conns, __ATOMIC_RELAXED), 4);
  release_all(f, 3);
  release_all(g, 3);
}

/* Inside the window: the second pipeline is sent on the closed connection
 * and sent again (pipe_retry), not counted as a dry connection. */
static void test_pipeline_on_closed_kept_conn_not_counted(void **state)
{
  (void)state;
  fixture fx;
  pipeline_on_closed_kept_conn(&fx, TRUST_LONG);
  assert_reuse(&fx, 0, 1, 1, 0);
  fixture_close(&fx);
}

/* Past the window: the look finds the closed connection first. */
static void test_pipeline_closed_kept_conn_found_by_look(void **state)
{
  (void)state;
  fixture fx;
  pipeline_on_closed_kept_conn(&fx, 0);
  assert_reuse(&fx, 1, 0, 0, 0);
  fixture_close(&fx);
}

/* A HEAD's answer, its body (a server bug) 100 ms later: a request sent
 * at once on that connection gets the body first, which is no answer
 * (it does not start a status line): the request goes to a new
 * connection and gets its own answer (it failed AK_EHTTPPROTO). No look
 * could have seen the body: it came after the send (the window forced
 * long, so that the path is the same on a slow run, where it may not). */
static void test_late_body_on_kept_conn_not_taken(void **state)
{
  (void)state;
  fixture fx;
  fixture_open(&fx, NULL, 0);
  ak__http_client_set_idle_trust(fx.client, TRUST_LONG);
  ak_future *a = get_one(&fx, "/late/a", AK_HTTP_HEAD);
  assert_answer(a, 200, "/late/a");
  ak_future *b = get_one(&fx, "/b", AK_HTTP_HEAD);
  assert_answer(b, 304, "/b");
  ak_future *c = get_one(&fx, "/c", AK_HTTP_HEAD); /* the new one is kept */
  assert_answer(c, 304, "/c");
  assert_true(ak_http_response_of(c)->reused);
  assert_int_equal(__atomic_load_n(&fx.srv.conns, __ATOMIC_RELAXED), 2);
  assert_reuse(&fx, 0, 2, 0, 1);
  ak_future_release(a);
  ak_future_release(b);
  ak_future_release(c);
  fixture_close(&fx);
}

/* The same with the late body in the idle connection before the next
 * request (or pipeline, piped) is sent. trust: the client's window. The
 * requests are answered, each its own, and the new connection is kept. */
static void late_body_before_send(fixture *fx, int64_t trust, bool piped)
{
  fixture_open(fx, NULL, 0);
  ak__http_client_set_idle_trust(fx->client, trust);
  ak_future *a = get_one(fx, "/late/a", AK_HTTP_HEAD);
  assert_answer(a, 200, "/late/a");
  ak_future_release(a);
  wait_server(&fx->srv.late, 1);
  if (piped) {
    const char *paths[] = {"/b", "/c"};
    ak_future *f[2];
    run_pipeline(fx, paths, 2, f);
    assert_answer(f[0], 304, "/b");
    assert_answer(f[1], 304, "/c");
    release_all(f, 2);
  } else {
    ak_future *b = get_one(fx, "/b", AK_HTTP_HEAD);
    assert_answer(b, 304, "/b");
    ak_future_release(b);
  }
  ak_future *d = get_one(fx, "/d", AK_HTTP_HEAD);
  assert_answer(d, 304, "/d");
  assert_true(ak_http_response_of(d)->reused);
  ak_future_release(d);
  assert_int_equal(__atomic_load_n(&fx->srv.conns, __ATOMIC_RELAXED), 2);
}

/* Inside the window: sent without a look, the body refused as stray, the
 * request sent on a new connection; that one reused without a look. */
static void test_late_body_in_window_refused_as_stray(void **state)
{
  (void)state;
  fixture fx;
  late_body_before_send(&fx, TRUST_LONG, false);
  assert_reuse(&fx, 0, 2, 0, 1);
  fixture_close(&fx);
  late_body_before_send(&fx, TRUST_LONG, true);
  assert_reuse(&fx, 0, 2, 0, 1);
  fixture_close(&fx);
}

/* Past the window: the look finds the body; the connection is not used. */
static void test_late_body_past_window_found_by_look(void **state)
{
  (void)state;
  fixture fx;
  late_body_before_send(&fx, 0, false);
  assert_reuse(&fx, 2, 0, 0, 0);
  fixture_close(&fx);
  late_body_before_send(&fx, 0, true);
  assert_reuse(&fx, 2, 0, 0, 0);
  fixture_close(&fx);
}

/* A forward proxy's kept connection is looked at before reuse whatever the
 * window (it carries every origin's requests): a response nobody asked
 * for that reached it while idle is not taken for another origin's
 * answer. */
static void test_forward_proxy_conn_always_looked_at(void **state)
{
  (void)state;
  fixture fx;
  server_start(&fx.srv, NULL, 0);
  fx.loop = t_loop_new();
  char proxy[64];
  snprintf(proxy, sizeof proxy, "http://127.0.0.1:%u", fx.srv.port);
  ak_http_options o = {
      .max_conns_per_host = 4, .idle_timeout_ns = INT64_C(5000000000), .http_proxy = proxy};
  assert_int_equal(ak_http_client_new(fx.loop, &o, &fx.client), 0);
  ak__http_client_set_idle_trust(fx.client, TRUST_LONG);
  ak_http_request rq = AK_HTTP_REQUEST_INIT("http://one.invalid/unasked");
  rq.flags = AK_HTTP_HEAD;
  ak_future *a = ak_http_get(fx.client, &rq);
  assert_int_equal(ak_future_wait(a, WAIT), 0);
  assert_answer(a, 304, "http://one.invalid/unasked");
  ak_future_release(a);
  wait_server(&fx.srv.late, 1);
  ak_http_request rq2 = AK_HTTP_REQUEST_INIT("http://two.invalid/b");
  rq2.flags = AK_HTTP_HEAD;
  ak_future *b = ak_http_get(fx.client, &rq2);
  assert_int_equal(ak_future_wait(b, WAIT), 0);
  assert_answer(b, 304, "http://two.invalid/b");
  assert_false(ak_http_response_of(b)->reused);
  ak_future_release(b);
  assert_int_equal(__atomic_load_n(&fx.srv.conns, __ATOMIC_RELAXED), 2);
  assert_reuse(&fx, 1, 0, 0, 0);
  fixture_close(&fx);
}

/* The response record keeps its reason and URL in its own room
 * (response.c RESP_ROOM, 192 bytes) and its first headers' names and
 * values in its headers block (HDR_TEXT, 384 bytes) when they fit: a head
 * past every room (a 300-byte reason after a 100, a 100-byte name, a
 * 400-byte value, a URL of about 250 bytes) and a reason received in two
 * pieces come out whole; a record made after them (recycled memory) is
 * right too. */
static void test_long_and_split_heads(void **state)
{
  (void)state;
  fixture fx;
  fixture_open(&fx, NULL, 0);
  char path[240] = "/longhead/";
  memset(path + 10, 'p', 220);
  path[230] = '\0';
  for (int round = 0; round < 2; round++) {
    ak_future *a = get_one(&fx, path, AK_HTTP_HEAD);
    assert_answer(a, 200, path);
    const ak_http_response *r = ak_http_response_of(a);
    assert_int_equal(strlen(r->reason), 300);
    assert_int_equal(strspn(r->reason, "r"), 300);
    char want[300];
    snprintf(want, sizeof want, "http://127.0.0.1:%u%s", fx.srv.port, path);
    assert_string_equal(r->url, want);
    char name[103] = "x-";
    memset(name + 2, 'n', 100);
    name[102] = '\0';
    const char *v = ak_http_response_header(r, name);
    assert_non_null(v);
    assert_int_equal(strlen(v), 400);
    assert_int_equal(strspn(v, "v"), 400);
    ak_future *b = get_one(&fx, "/splitreason", 0);
    assert_answer(b, 200, "/splitreason");
    assert_string_equal(ak_http_response_of(b)->reason, "Fine Thanks");
    snprintf(want, sizeof want, "http://127.0.0.1:%u/splitreason", fx.srv.port);
    assert_string_equal(ak_http_response_of(b)->url, want);
    ak_future *c = get_one(&fx, "/c", AK_HTTP_HEAD);
    assert_answer(c, 304, "/c");
    assert_string_equal(ak_http_response_of(c)->reason, "Not Modified");
    ak_future_release(a);
    ak_future_release(b);
    ak_future_release(c);
  }
  fixture_close(&fx);
}

/* Requests to two origins interleaved in one call: a pipeline per run of
 * one origin (a member's pool is its neighbour's only when their origins
 * are the same), each answer its own request's, on its own server. */
static void test_two_origins_interleaved(void **state)
{
  (void)state;
  fixture fx;
  fixture_open(&fx, NULL, 0);
  /* One connection per origin: the scripted server serves one at a time. */
  assert_int_equal(ak_http_client_free(fx.client), 0);
  ak_http_options o = {.max_conns_per_host = 1, .idle_timeout_ns = INT64_C(5000000000)};
  assert_int_equal(ak_http_client_new(fx.loop, &o, &fx.client), 0);
  server other;
  server_start(&other, NULL, 0);
  static char urls[6][300];
  const uint16_t ports[6] = {fx.srv.port, fx.srv.port, other.port, other.port, fx.srv.port,
                             other.port};
  ak_http_request rq[6];
  for (int i = 0; i < 6; i++) {
    snprintf(urls[i], sizeof urls[i], "http://127.0.0.1:%u/o%d", ports[i], i);
    rq[i] = (ak_http_request)AK_HTTP_REQUEST_INIT(urls[i]);
    rq[i].flags = AK_HTTP_HEAD;
  }
  ak_future *f[6];
  assert_int_equal(ak_http_head_pipeline(fx.client, rq, 6, f), 0);
  for (int i = 0; i < 6; i++) {
    assert_int_equal(ak_future_wait(f[i], WAIT), 0);
    char path[16];
    snprintf(path, sizeof path, "/o%d", i);
    assert_answer(f[i], 304, path);
  }
  assert_int_equal(__atomic_load_n(&fx.srv.requests, __ATOMIC_RELAXED), 3);
  assert_int_equal(__atomic_load_n(&other.requests, __ATOMIC_RELAXED), 3);
  release_all(f, 6);
  fixture_close(&fx);
  server_stop(&other);
}

static void test_cancel_before_send(void **state)
{
  (void)state;
  fixture fx;
  fixture_open(&fx, NULL, 0);
  static char urls[5][300];
  ak_http_request rq[5];
  for (int i = 0; i < 5; i++) {
    snprintf(urls[i], sizeof urls[i], "http://127.0.0.1:%u/x%d", fx.srv.port, i);
    rq[i] = (ak_http_request)AK_HTTP_REQUEST_INIT(urls[i]);
    rq[i].flags = AK_HTTP_HEAD;
  }
  ak_future *f[5];
  assert_int_equal(ak_http_head_pipeline(fx.client, rq, 5, f), 0);
  ak_future_cancel(f[2]);
  for (int i = 0; i < 5; i++)
    assert_int_equal(ak_future_wait(f[i], WAIT), 0);
  assert_int_equal(ak_future_state(f[2]), AK_CANCELLED);
  const char *want[] = {"/x0", "/x1", NULL, "/x3", "/x4"};
  for (int i = 0; i < 5; i++)
    if (want[i])
      assert_answer(f[i], 304, want[i]);
  assert_int_equal(__atomic_load_n(&fx.srv.requests, __ATOMIC_RELAXED), 4);
  release_all(f, 5);
  fixture_close(&fx);
}

/* A member cancelled while it waits for its answer on the connection (its
 * request on the wire) ends CANCELLED; the members behind it still get
 * their own answers (on another connection). */
static void test_cancel_after_send(void **state)
{
  (void)state;
  fixture fx;
  fixture_open(&fx, NULL, 0);
  const char *paths[] = {"/late/a", "/b", "/c", "/d"};
  static char urls[4][300];
  ak_http_request rq[4];
  for (int i = 0; i < 4; i++) {
    snprintf(urls[i], sizeof urls[i], "http://127.0.0.1:%u%s", fx.srv.port, paths[i]);
    rq[i] = (ak_http_request)AK_HTTP_REQUEST_INIT(urls[i]);
    rq[i].flags = AK_HTTP_HEAD;
  }
  ak_future *f[4];
  assert_int_equal(ak_http_head_pipeline(fx.client, rq, 4, f), 0);
  /* The first answer's head settles it; its body comes 100 ms later, so
   * /b is still waiting behind it when it is cancelled. */
  assert_int_equal(ak_future_wait(f[0], WAIT), 0);
  ak_future_cancel(f[1]);
  for (int i = 1; i < 4; i++)
    assert_int_equal(ak_future_wait(f[i], WAIT), 0);
  assert_answer(f[0], 200, "/late/a");
  assert_int_equal(ak_future_state(f[1]), AK_CANCELLED);
  assert_answer(f[2], 304, "/c");
  assert_answer(f[3], 304, "/d");
  release_all(f, 4);
  fixture_close(&fx);
}

/* ---- Joining a running pipeline (ak_http_options.pipeline_depth) ---- */

static void fixture_open_depth(fixture *fx, const int *close_after, size_t n, unsigned depth,
                               unsigned max_conns)
{
  server_start(&fx->srv, close_after, n);
  fx->loop = t_loop_new();
  ak_http_options o = {.max_conns_per_host = max_conns,
                       .idle_timeout_ns = INT64_C(5000000000),
                       .pipeline_depth = depth};
  assert_int_equal(ak_http_client_new(fx->loop, &o, &fx->client), 0);
}

/* Starts HEADs of paths as one call, without waiting. */
static void start_pipeline(fixture *fx, const char *const *paths, size_t n, ak_future **out)
{
  static char urls[MAXN][300];
  ak_http_request rq[MAXN];
  for (size_t i = 0; i < n; i++) {
    snprintf(urls[i], sizeof urls[i], "http://127.0.0.1:%u%s", fx->srv.port, paths[i]);
    rq[i] = (ak_http_request)AK_HTTP_REQUEST_INIT(urls[i]);
    rq[i].flags = AK_HTTP_HEAD;
  }
  assert_int_equal(ak_http_head_pipeline(fx->client, rq, n, out), 0);
  for (size_t i = 0; i < n; i++)
    assert_non_null(out[i]);
}

/* Runs the loop, never blocking in it, until the server has read the
 * first call's first request (its requests went in one write), and 10 ms
 * more (the send's completion taken): the pipeline's requests are out and
 * its head waits for that request's answer, sent 100 ms after it was read
 * (the server takes the next request after that). A blocking run would
 * wait for the answer. */
static void run_until_sent(fixture *fx)
{
  int64_t until = ak_now_ns() + WAIT, more = 0;
  for (;;) {
    ak_loop_run(fx->loop, AK_RUN_NOWAIT);
    int64_t now = ak_now_ns();
    if (!more && __atomic_load_n(&fx->srv.requests, __ATOMIC_ACQUIRE) >= 1)
      more = now + INT64_C(10000000);
    if (more && now >= more)
      break;
    if (now > until)
      fail_msg("the server did not read the first requests");
    usleep(500);
  }
  assert_int_equal(__atomic_load_n(&fx->srv.requests, __ATOMIC_ACQUIRE), 1);
}

/* The client's counts of requests that joined, their sends by the member
 * reading, and the receives cancelled so that they went out at once. */
static void assert_joins(fixture *fx, uint64_t joined, uint64_t sends, uint64_t wakes)
{
  ak__http_reuse_counts n = ak__http_client_reuse_counts(fx->client);
  if (n.joined != joined || n.joined_sends != sends || n.wakes != wakes)
    fail_msg("joined %llu sends %llu wakes %llu; wanted %llu %llu %llu",
             (unsigned long long)n.joined, (unsigned long long)n.joined_sends,
             (unsigned long long)n.wakes, (unsigned long long)joined, (unsigned long long)sends,
             (unsigned long long)wakes);
}

static void wait_all(ak_future **f, size_t n)
{
  for (size_t i = 0; i < n; i++)
    assert_int_equal(ak_future_wait(f[i], WAIT), 0);
}

/* The first call's HEADs (a, the first of them answered 100 ms after it
 * is read: "/slow..." or "/reset..."), its requests sent and its head
 * waiting for that answer (run_until_sent), then the second call's (b):
 * their futures in f, a's first. */
static void call_then_join(fixture *fx, const char *const *a, size_t na, const char *const *b,
                           size_t nb, ak_future **f)
{
  start_pipeline(fx, a, na, f);
  run_until_sent(fx);
  start_pipeline(fx, b, nb, f + na);
}

/* Every future DONE with its own path's answer: a 200 for "/changed...",
 * else a 304 (NULL in paths: not looked at). */
static void assert_own_answers(ak_future **f, const char *const *paths, size_t n)
{
  for (size_t i = 0; i < n; i++)
    if (paths[i])
      assert_answer(f[i], strncmp(paths[i], "/changed", 8) == 0 ? 200 : 304, paths[i]);
}

/* A second call before the first one's requests went out (its connection
 * still being made): its requests join, and all four go in one write. */
static void test_join_before_send(void **state)
{
  (void)state;
  fixture fx;
  fixture_open_depth(&fx, NULL, 0, 8, 4);
  const char *want[] = {"/slow0", "/f1", "/g0", "/g1"};
  ak_future *f[4];
  start_pipeline(&fx, want, 2, f);
  start_pipeline(&fx, want + 2, 2, f + 2);
  wait_all(f, 4);
  assert_own_answers(f, want, 4);
  assert_int_equal(__atomic_load_n(&fx.srv.conns, __ATOMIC_RELAXED), 1);
  assert_int_equal(__atomic_load_n(&fx.srv.requests, __ATOMIC_RELAXED), 4);
  assert_int_equal(__atomic_load_n(&fx.srv.max_batch, __ATOMIC_RELAXED), 4); /* one write */
  assert_joins(&fx, 2, 0, 0); /* they went with the head's own write */
  release_all(f, 4);
  fixture_close(&fx);
}

/* A second call while the first pipeline's head waits for its answer:
 * its requests join and go out on the same connection, written by the
 * member reading before it next waits for bytes, each answer its own
 * request's (a 200 among the 304s). */
static void test_join_after_send(void **state)
{
  (void)state;
  fixture fx;
  fixture_open_depth(&fx, NULL, 0, 8, 4);
  const char *want[] = {"/slow0", "/f1", "/g0", "/g1", "/changed/g2"};
  ak_future *f[5];
  call_then_join(&fx, want, 2, want + 2, 3, f);
  wait_all(f, 5);
  assert_own_answers(f, want, 5);
  assert_int_equal(__atomic_load_n(&fx.srv.conns, __ATOMIC_RELAXED), 1);
  assert_int_equal(__atomic_load_n(&fx.srv.requests, __ATOMIC_RELAXED), 5);
  for (int i = 2; i < 5; i++)
    assert_true(ak_http_response_of(f[i])->reused);
  /* The head's receive was cancelled and the three went out in one send,
   * before "/slow0"'s answer came. */
  assert_joins(&fx, 3, 1, 1);
  release_all(f, 5);
  fixture_close(&fx);
}

/* Depth 3: a call's first request joins the running pipeline of two
 * (three unanswered on its connection then), and the next three make a
 * pipeline of their own, which waits for the one connection allowed: the
 * server finds them in one read, never four (g0 went alone, joined). */
static void test_join_bounded_by_depth(void **state)
{
  (void)state;
  fixture fx;
  fixture_open_depth(&fx, NULL, 0, 3, 1);
  const char *want[] = {"/slow0", "/f1", "/g0", "/g1", "/g2", "/g3"};
  ak_future *f[6];
  call_then_join(&fx, want, 2, want + 2, 4, f);
  wait_all(f, 6);
  assert_own_answers(f, want, 6);
  assert_int_equal(__atomic_load_n(&fx.srv.requests, __ATOMIC_RELAXED), 6);
  assert_int_equal(__atomic_load_n(&fx.srv.conns, __ATOMIC_RELAXED), 1);
  assert_int_equal(__atomic_load_n(&fx.srv.max_batch, __ATOMIC_RELAXED), 3);
  assert_joins(&fx, 1, 1, 1); /* g0 alone */
  release_all(f, 6);
  fixture_close(&fx);
}

/* A joined request cancelled before its request went out leaves without
 * being sent; the others are answered, each its own. */
static void test_join_cancel_before_sent(void **state)
{
  (void)state;
  fixture fx;
  fixture_open_depth(&fx, NULL, 0, 8, 4);
  const char *paths[] = {"/slow0", "/f1", "/g0", "/g1", "/g2"};
  ak_future *f[5];
  call_then_join(&fx, paths, 2, paths + 2, 3, f);
  ak_future_cancel(f[3]); /* g1: still waiting for the next send */
  wait_all(f, 5);
  assert_int_equal(ak_future_state(f[3]), AK_CANCELLED);
  const char *want[] = {"/slow0", "/f1", "/g0", NULL, "/g2"};
  assert_own_answers(f, want, 5);
  assert_int_equal(__atomic_load_n(&fx.srv.requests, __ATOMIC_RELAXED), 4); /* g1 never sent */
  assert_int_equal(__atomic_load_n(&fx.srv.conns, __ATOMIC_RELAXED), 1);
  assert_joins(&fx, 3, 1, 1);
  release_all(f, 5);
  fixture_close(&fx);
}

/* The server answers the first request and then closes (FIN) with the
 * joined requests unanswered: they, and the one behind the first, are
 * sent again on another connection and answered there, each its own. */
static void test_join_conn_closes(void **state)
{
  (void)state;
  const int close_after[] = {1};
  fixture fx;
  fixture_open_depth(&fx, close_after, 1, 8, 4);
  const char *want[] = {"/slow0", "/f1", "/g0", "/g1"};
  ak_future *f[4];
  call_then_join(&fx, want, 2, want + 2, 2, f);
  wait_all(f, 4);
  assert_own_answers(f, want, 4);
  assert_int_equal(__atomic_load_n(&fx.srv.conns, __ATOMIC_RELAXED), 2);
  release_all(f, 4);
  fixture_close(&fx);
}

/* The server resets the connection after its first answer, the joined
 * requests written to it or about to be (the send or the receive fails,
 * whichever comes first): every request is still answered, each its own,
 * the unanswered ones on another connection. */
static void test_join_conn_reset(void **state)
{
  (void)state;
  fixture fx;
  fixture_open_depth(&fx, NULL, 0, 8, 4);
  const char *want[] = {"/reset0", "/f1", "/g0", "/g1"};
  ak_future *f[4];
  call_then_join(&fx, want, 2, want + 2, 2, f);
  wait_all(f, 4);
  assert_own_answers(f, want, 4);
  assert_true(__atomic_load_n(&fx.srv.conns, __ATOMIC_RELAXED) >= 2);
  release_all(f, 4);
  fixture_close(&fx);
}

/* A long run of calls of one or two requests each, every call made as
 * answers come (a sliding window of 5, as akget -N -j5 keeps): every
 * answer is its own request's, and the window rides one connection. */
static void test_join_sliding_window(void **state)
{
  (void)state;
  fixture fx;
  fixture_open_depth(&fx, NULL, 0, 8, 4);
  enum { TOTAL = 200, WINDOW = 5 };
  static char names[TOTAL][32];
  ak_future *f[TOTAL];
  size_t started = 0, done = 0;
  while (done < TOTAL) {
    while (started < TOTAL && started - done < WINDOW) {
      size_t k = started % 3 == 0 && started + 2 <= TOTAL && started - done + 2 <= WINDOW ? 2 : 1;
      const char *p[2];
      for (size_t i = 0; i < k; i++) {
        snprintf(names[started + i], sizeof names[0], "%s%zu",
                 (started + i) % 7 == 3 ? "/changed/w" : "/w", started + i);
        p[i] = names[started + i];
      }
      start_pipeline(&fx, p, k, f + started);
      started += k;
    }
    assert_true(t_run_until(fx.loop, t_is_set, f[done], WAIT));
    done++;
    while (done < started && ak_future_state(f[done]) != AK_PENDING)
      done++;
  }
  for (size_t i = 0; i < TOTAL; i++)
    assert_answer(f[i], i % 7 == 3 ? 200 : 304, names[i]);
  assert_int_equal(__atomic_load_n(&fx.srv.requests, __ATOMIC_RELAXED), TOTAL);
  assert_int_equal(__atomic_load_n(&fx.srv.conns, __ATOMIC_RELAXED), 1);
  release_all(f, TOTAL);
  fixture_close(&fx);
}

static void test_refusals(void **state)
{
  (void)state;
  fixture fx;
  fixture_open(&fx, NULL, 0);
  char u[300];
  snprintf(u, sizeof u, "http://127.0.0.1:%u/r", fx.srv.port);
  ak_http_request rq[2] = {AK_HTTP_REQUEST_INIT(u), AK_HTTP_REQUEST_INIT(u)};
  ak_future *f[2] = {NULL, NULL};
  rq[0].flags = AK_HTTP_HEAD;
  assert_int_equal(ak_http_head_pipeline(fx.client, rq, 2, f), -EINVAL); /* a GET */
  rq[1].flags = AK_HTTP_HEAD;
  rq[1].fd = 1;
  assert_int_equal(ak_http_head_pipeline(fx.client, rq, 2, f), -EINVAL); /* a sink */
  rq[1].fd = -1;
  rq[1].range_start = 0;
  assert_int_equal(ak_http_head_pipeline(fx.client, rq, 2, f), -EINVAL); /* a range */
  assert_int_equal(ak_http_head_pipeline(fx.client, rq, 0, f), -EINVAL);
  assert_null(f[0]);
  assert_null(f[1]);
  assert_int_equal(__atomic_load_n(&fx.srv.conns, __ATOMIC_RELAXED), 0);
  fixture_close(&fx);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_pipelined_304s_in_order),
      cmocka_unit_test(test_mixed_304_200),
      cmocka_unit_test(test_close_after_k_retries_the_rest),
      cmocka_unit_test(test_server_that_never_answers_fails_bounded),
      cmocka_unit_test(test_head_with_body_fails_clearly),
      cmocka_unit_test(test_late_body_not_taken_for_next_answer),
      cmocka_unit_test(test_late_body_after_status_prefix_resent),
      cmocka_unit_test(test_close_after_status_prefix_resent),
      cmocka_unit_test(test_unasked_response_on_idle_conn_not_taken),
      cmocka_unit_test(test_close_after_answer_request_sent_again),
      cmocka_unit_test(test_close_after_answer_found_by_look),
      cmocka_unit_test(test_pipeline_on_closed_kept_conn_not_counted),
      cmocka_unit_test(test_pipeline_closed_kept_conn_found_by_look),
      cmocka_unit_test(test_late_body_on_kept_conn_not_taken),
      cmocka_unit_test(test_late_body_in_window_refused_as_stray),
      cmocka_unit_test(test_late_body_past_window_found_by_look),
      cmocka_unit_test(test_forward_proxy_conn_always_looked_at),
      cmocka_unit_test(test_long_and_split_heads),
      cmocka_unit_test(test_two_origins_interleaved),
      cmocka_unit_test(test_cancel_before_send),
      cmocka_unit_test(test_cancel_after_send),
      cmocka_unit_test(test_join_before_send),
      cmocka_unit_test(test_join_after_send),
      cmocka_unit_test(test_join_bounded_by_depth),
      cmocka_unit_test(test_join_cancel_before_sent),
      cmocka_unit_test(test_join_conn_closes),
      cmocka_unit_test(test_join_conn_reset),
      cmocka_unit_test(test_join_sliding_window),
      cmocka_unit_test(test_refusals),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
