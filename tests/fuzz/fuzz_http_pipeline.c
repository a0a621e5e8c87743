/* fuzz_http_pipeline.c: libFuzzer target for pipelined HEADs
 * (ak_http_head_pipeline, src/http/exchange.c section 9) over a real loop
 * and real sockets: n HEADs to a loopback server in a thread of this file
 * that answers each connection with a byte stream the input scripts,
 * written in chunks of chosen sizes, cut at a chosen byte, ended by a FIN
 * or a reset. Connections past the script close before answering, so the
 * pipeline's own bound (new connections closed before any answer, three in
 * a row) ends every run: retries are modelled, not configured away.
 *
 * The stream is self-describing: the server reads the requests (paths
 * /r<k>) and each response it writes says in X-Seq which request it
 * answers at that place on that connection (-1: none was sent there).
 * Junk bytes (a body after HEAD, stray text) can carry neither an X-Seq
 * nor "HTTP/" ('x' and '/' are rewritten), so junk can never pass for a
 * response. Input:
 *   byte 0: n - 1 (mod 12); byte 1: flags (bit 0 FAIL_ON_STATUS, bit 1 no
 *   redirects followed, bit 2 joins: the client's pipeline_depth is 2 +
 *   bits 3-5 (mod 7), the first half of the requests (at least one) go
 *   in one call and the rest in a second call after the loop has run
 *   bits 6-7 times 2 iterations without blocking, joining the first call's
 *   pipeline while it runs); then per connection a header of 5 bytes
 *     c0: bit 0 reset (else FIN) at the end, c1: chunk size (1..256),
 *     c2 c3: cut after this many bytes (0xffff: not cut), c4: item count
 *     (mod 16)
 *   and its items, each a type byte then its bytes:
 *     0,1: a response: status index, header bits (0x01 Content-Length,
 *          0x02 Transfer-Encoding: chunked, 0x04 Connection: close,
 *          0x08 Location (a 3xx is followed), 0x10 a bad Content-Length,
 *          0x20 a header over the head limit), 4 bytes Content-Length
 *     2:   junk: length (mod 48) and that many bytes
 *     3:   a pause (what was written is received alone)
 * Asserts (abort): every request settles, exactly once, in bounded time;
 * one that is DONE (or failed on its status) holds a response whose X-Seq
 * is its own index and whose status the server sent with that X-Seq; one
 * that failed has a library error (no timeout: the server never stalls);
 * a request is sent no more times than there were connections. */
#include <asynckit.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define CHECK(c)                                                                                \
  do {                                                                                          \
    if (!(c)) {                                                                                 \
      fprintf(stderr, "fuzz_http_pipeline.c:%d: %s\n", __LINE__, #c);                           \
      abort();                                                                                  \
    }                                                                                           \
  } while (0)

enum {
  MAXN = 12,
  MAX_SCRIPT_CONNS = 8,
  MAX_ITEMS = 16,
  FIRST_REQ_MS = 3000, /* the client sends at once after connecting */
  MORE_REQ_MS = 30,    /* a pipeline is one write: the rest comes with the first */
  DRAIN_MS = 20,
  ACCEPT_MS = 5,
  MAX_HEAD = 4096,
};
static const int64_t WAIT_NS = INT64_C(15000000000);

static const int statuses[16] = {200, 304, 204, 404, 500, 301, 302, 307,
                                 100, 103, 101, 206, 999, 199, 600, 418};

typedef struct item {
  uint8_t type, status, hdr;
  uint32_t cl;
  uint8_t junk[48];
  uint8_t junk_len;
} item;

typedef struct conn_script {
  bool reset;
  size_t chunk;
  size_t cut; /* SIZE_MAX: not cut */
  int nitems;
  item items[MAX_ITEMS];
} conn_script;

typedef struct server {
  int lfd;
  uint16_t port;
  int nscript;
  conn_script script[MAX_SCRIPT_CONNS];
  volatile int stop;
  pthread_t thread;
  /* seen by the oracle after the join */
  int conns;
  int sent_count[MAXN];     /* times request k was read off a connection */
  uint32_t statuses[MAXN];  /* bit i: statuses[i] sent complete with X-Seq k */
} server;

/* ---- Input ------------------------------------------------------------------ */

typedef struct reader {
  const uint8_t *p;
  size_t left;
} reader;

static uint8_t take(reader *r)
{
  if (!r->left)
    return 0;
  r->left--;
  return *r->p++;
}

static void parse_script(server *s, reader *r)
{
  s->nscript = 0;
  while (r->left && s->nscript < MAX_SCRIPT_CONNS) {
    conn_script *c = &s->script[s->nscript++];
    c->reset = take(r) & 1;
    c->chunk = 1 + take(r);
    unsigned cut = take(r);
    cut = cut << 8 | take(r);
    c->cut = cut == 0xffff ? SIZE_MAX : cut;
    c->nitems = take(r) % MAX_ITEMS;
    for (int i = 0; i < c->nitems; i++) {
      item *it = &c->items[i];
      memset(it, 0, sizeof *it);
      it->type = take(r) % 4;
      if (it->type <= 1) {
        it->status = take(r) % 16;
        it->hdr = take(r);
        for (int b = 0; b < 4; b++)
          it->cl = it->cl << 8 | take(r);
      } else if (it->type == 2) {
        it->junk_len = take(r) % 48;
        for (int b = 0; b < it->junk_len; b++) {
          uint8_t ch = take(r);
          /* never an X-Seq, never "HTTP/": junk cannot pass for a response */
          if (ch == 'x' || ch == 'X')
            ch = 'y';
          if (ch == '/')
            ch = '_';
          it->junk[b] = ch;
        }
      }
    }
  }
}

/* ---- Server ------------------------------------------------------------------- */

typedef struct wire {
  int fd;
  const conn_script *cs;
  size_t written; /* bytes of the stream so far (the cut counts them) */
  bool broken;
  char in[16384];
  size_t in_len;
  int reqs[64]; /* k of each request read on this connection, in order */
  int nreqs;
  bool peer_closed;
} wire;

/* Reads what the client sent, waiting up to ms for the first bytes; parses
 * whole requests into w->reqs. */
static void read_requests(server *s, wire *w, int ms)
{
  for (;;) {
    struct pollfd p = {.fd = w->fd, .events = POLLIN};
    if (w->peer_closed || poll(&p, 1, ms) <= 0)
      return;
    ssize_t r = recv(w->fd, w->in + w->in_len, sizeof w->in - 1 - w->in_len, MSG_DONTWAIT);
    if (r <= 0) {
      w->peer_closed = true;
      return;
    }
    w->in_len += (size_t)r;
    w->in[w->in_len] = '\0';
    char *end;
    while ((end = strstr(w->in, "\r\n\r\n"))) {
      int k = -1;
      const char *path = strstr(w->in, " /r");
      if (path && path < end)
        k = atoi(path + 3);
      if (k >= 0 && k < MAXN) {
        s->sent_count[k]++;
      } else {
        k = -1;
      }
      if (w->nreqs < (int)(sizeof w->reqs / sizeof w->reqs[0]))
        w->reqs[w->nreqs++] = k;
      size_t used = (size_t)(end + 4 - w->in);
      memmove(w->in, end + 4, w->in_len - used + 1);
      w->in_len -= used;
    }
    if (w->in_len == sizeof w->in - 1)
      w->in_len = 0; /* a request that large is not ours */
    ms = 0; /* then only what is there already */
  }
}

/* Writes bytes in the script's chunks, up to its cut. Returns the bytes
 * written (fewer: the cut, or the peer gone). */
static size_t put(wire *w, const char *p, size_t n)
{
  size_t done = 0;
  while (done < n && !w->broken) {
    if (w->written >= w->cs->cut) {
      w->broken = true;
      break;
    }
    size_t k = n - done;
    if (k > w->cs->chunk)
      k = w->cs->chunk;
    if (w->cs->cut != SIZE_MAX && k > w->cs->cut - w->written)
      k = w->cs->cut - w->written;
    ssize_t r = send(w->fd, p + done, k, MSG_NOSIGNAL);
    if (r <= 0) {
      w->broken = true;
      break;
    }
    done += (size_t)r;
    w->written += (size_t)r;
  }
  return done;
}

static void serve_conn(server *s, int fd, const conn_script *cs)
{
  wire w = {.fd = fd, .cs = cs};
  read_requests(s, &w, FIRST_REQ_MS);
  int next_req = 0; /* the request the next final response answers */
  for (int i = 0; cs && i < cs->nitems && !w.broken; i++) {
    const item *it = &cs->items[i];
    if (it->type == 2) {
      put(&w, (const char *)it->junk, it->junk_len);
      continue;
    }
    if (it->type == 3) {
      usleep(1000);
      continue;
    }
    if (next_req >= w.nreqs)
      read_requests(s, &w, MORE_REQ_MS);
    int k = next_req < w.nreqs ? w.reqs[next_req] : -1;
    int st = statuses[it->status];
    bool interim = st >= 100 && st < 200 && st != 101;
    char out[MAX_HEAD + 1024];
    int len = snprintf(out, sizeof out, "HTTP/1.1 %d Fuzz\r\nX-Seq: %d\r\n", st, k);
    if (it->hdr & 0x01)
      len += snprintf(out + len, sizeof out - (size_t)len, "Content-Length: %u\r\n", it->cl);
    if (it->hdr & 0x02)
      len += snprintf(out + len, sizeof out - (size_t)len, "Transfer-Encoding: chunked\r\n");
    if (it->hdr & 0x04)
      len += snprintf(out + len, sizeof out - (size_t)len, "Connection: close\r\n");
    if (it->hdr & 0x08)
      len += snprintf(out + len, sizeof out - (size_t)len, "Location: /r%d/again\r\n", k);
    if (it->hdr & 0x10)
      len += snprintf(out + len, sizeof out - (size_t)len, "Content-Length: 1, 2\r\n");
    if (it->hdr & 0x20) {
      len += snprintf(out + len, sizeof out - (size_t)len, "Big: ");
      memset(out + len, 'b', MAX_HEAD);
      len += MAX_HEAD;
      len += snprintf(out + len, sizeof out - (size_t)len, "\r\n");
    }
    len += snprintf(out + len, sizeof out - (size_t)len, "\r\n");
    if (put(&w, out, (size_t)len) == (size_t)len && k >= 0 && st >= 0)
      s->statuses[k] |= 1u << it->status;
    if (!interim)
      next_req++;
  }
  if (cs && cs->reset) {
    struct linger l = {.l_onoff = 1, .l_linger = 0};
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
    return;
  }
  /* A FIN, then what the client still sends is read and dropped a while
   * (a close with unread bytes would be a reset). */
  shutdown(fd, SHUT_WR);
  char sink[4096];
  for (int spins = 0; spins < 64; spins++) {
    struct pollfd p = {.fd = fd, .events = POLLIN};
    if (poll(&p, 1, DRAIN_MS) <= 0 || recv(fd, sink, sizeof sink, 0) <= 0)
      return;
  }
}

static void *server_main(void *arg)
{
  server *s = arg;
  while (!__atomic_load_n(&s->stop, __ATOMIC_ACQUIRE)) {
    struct pollfd p = {.fd = s->lfd, .events = POLLIN};
    if (poll(&p, 1, ACCEPT_MS) <= 0)
      continue;
    int fd = accept(s->lfd, NULL, NULL);
    if (fd < 0)
      continue;
    int c = s->conns++;
    /* Past the script: closed before any answer. */
    serve_conn(s, fd, c < s->nscript ? &s->script[c] : NULL);
    close(fd);
  }
  return NULL;
}

/* ---- The run ------------------------------------------------------------------- */

static void on_settle(ak_future *f, void *arg)
{
  (void)f;
  __atomic_fetch_add((int *)arg, 1, __ATOMIC_RELAXED);
}

static int seq_of(const ak_http_response *r)
{
  const char *v = ak_http_response_header(r, "x-seq");
  if (!v)
    return -2;
  char *end;
  long k = strtol(v, &end, 10);
  return *end ? -2 : (int)k;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  static int verbose = -1; /* AK_FUZZ_VERBOSE=1: each request's outcome */
  if (verbose < 0)
    verbose = getenv("AK_FUZZ_VERBOSE") != NULL;
  if (size < 2)
    return 0;
  reader rd = {data, size};
  size_t n = 1 + take(&rd) % MAXN;
  uint8_t flags = take(&rd);
  static server s;
  memset(&s, 0, sizeof s);
  parse_script(&s, &rd);

  s.lfd = socket(AF_INET, SOCK_STREAM, 0);
  CHECK(s.lfd >= 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t al = sizeof a;
  CHECK(bind(s.lfd, (struct sockaddr *)&a, sizeof a) == 0);
  CHECK(listen(s.lfd, 64) == 0);
  CHECK(getsockname(s.lfd, (struct sockaddr *)&a, &al) == 0);
  s.port = ntohs(a.sin_port);
  CHECK(pthread_create(&s.thread, NULL, server_main, &s) == 0);

  ak_loop *loop = NULL;
  CHECK(ak_loop_new(&loop, NULL) == 0);
  ak_http_options o = {
      .max_conns_per_host = 2,
      .connect_timeout_ns = INT64_C(5000000000),
      .idle_timeout_ns = INT64_C(8000000000),
      .head_timeout_ns = INT64_C(8000000000),
      .max_redirects = (flags & 2) ? -1 : 3,
      .max_head_bytes = MAX_HEAD,
      .pipeline_depth = (flags & 4) ? 2u + (unsigned)((flags >> 3) & 7) % 7u : 0,
  };
  ak_http_client *client = NULL;
  CHECK(ak_http_client_new(loop, &o, &client) == 0);

  char urls[MAXN][64];
  ak_http_request rq[MAXN];
  for (size_t i = 0; i < n; i++) {
    snprintf(urls[i], sizeof urls[i], "http://127.0.0.1:%u/r%zu", s.port, i);
    rq[i] = (ak_http_request)AK_HTTP_REQUEST_INIT(urls[i]);
    rq[i].flags = AK_HTTP_HEAD | ((flags & 1) ? AK_HTTP_FAIL_ON_STATUS : 0);
  }
  uint32_t got_status[MAXN] = {0}; /* checked against the server's after its join */
  ak_future *out[MAXN] = {0};
  int settled[MAXN] = {0};
  /* With joins, two calls: the second while the first's pipeline runs
   * (sent or not yet, as the loop got to it). */
  size_t first = (flags & 4) && n > 1 ? n / 2 : n;
  CHECK(ak_http_head_pipeline(client, rq, first, out) == 0);
  if (first < n) {
    for (int i = 0; i < 2 * (flags >> 6); i++)
      ak_loop_run(loop, AK_RUN_NOWAIT);
    CHECK(ak_http_head_pipeline(client, rq + first, n - first, out + first) == 0);
  }
  for (size_t i = 0; i < n; i++) {
    CHECK(out[i] != NULL);
    CHECK(ak_future_on_settle(out[i], on_settle, &settled[i]) == 0);
  }
  for (size_t i = 0; i < n; i++) {
    if (ak_future_wait(out[i], WAIT_NS) != 0) {
      fprintf(stderr, "request %zu not settled in %lld s: a hang\n", i,
              (long long)(WAIT_NS / 1000000000));
      abort();
    }
  }
  ak_loop_run(loop, AK_RUN_NOWAIT); /* a second settle would show now */

  for (size_t i = 0; i < n; i++) {
    ak_future *f = out[i];
    CHECK(settled[i] == 1);
    ak_state st = ak_future_state(f);
    int64_t res = ak_future_result(f);
    const ak_http_response *r = ak_http_response_of(f);
    if (verbose)
      fprintf(stderr, "req %zu: %s %s seq %d status %d sent %d conns %d (%s)\n", i,
              st == AK_DONE ? "DONE" : "FAILED", st == AK_DONE ? "" : ak_err_name((int)res),
              r ? seq_of(r) : -3, r ? r->status : 0, s.sent_count[i], s.conns,
              ak_future_detail(f) ? ak_future_detail(f) : "");
    if (st == AK_DONE || (st == AK_FAILED && res == AK_EHTTPSTATUS)) {
      CHECK(r != NULL);
      int k = seq_of(r);
      if (k != (int)i) {
        fprintf(stderr, "request %zu took the response of %d (status %d)\n", i, k, r->status);
        abort();
      }
      for (int j = 0; j < 16; j++)
        if (statuses[j] == r->status)
          got_status[i] = 1u << j;
      CHECK(got_status[i] != 0);
    } else {
      CHECK(st == AK_FAILED);
      CHECK(res < 0);
      CHECK(strcmp(ak_err_name((int)res), "UNKNOWN") != 0);
      /* The server never stalls: a timeout is the client waiting for
       * nothing. */
      if (res == AK_EHTTPHEADTIMEOUT || res == AK_EHTTPIDLETIMEOUT || res == -ETIMEDOUT) {
        fprintf(stderr, "request %zu: %s (%s)\n", i, ak_err_name((int)res),
                ak_future_detail(f) ? ak_future_detail(f) : "");
        abort();
      }
    }
  }
  CHECK(ak_http_client_free(client) == 0);
  ak_loop_run(loop, AK_RUN_DEFAULT);
  for (size_t i = 0; i < n; i++) {
    CHECK(settled[i] == 1);
    ak_future_release(out[i]);
  }
  ak_loop_free(loop);
  __atomic_store_n(&s.stop, 1, __ATOMIC_RELEASE);
  CHECK(pthread_join(s.thread, NULL) == 0);
  close(s.lfd);
  /* A response taken was one the server wrote whole, with that X-Seq. */
  for (size_t i = 0; i < n; i++)
    CHECK(!got_status[i] || (s.statuses[i] & got_status[i]));
  /* Retries bounded: each sending of a request went on a connection of
   * its own, and the connections past the script close at once, so the
   * pipeline gives up after a few. */
  CHECK(s.conns <= s.nscript + 4 * (int)(n + 1) * 4);
  for (size_t i = 0; i < n; i++)
    CHECK(s.sent_count[i] <= 4 * s.conns); /* a redirect may reuse one */
  return 0;
}
