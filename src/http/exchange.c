/* exchange.c: one request from start to its future settling: a connection
 * (an idle one of the host's pool, a new one, or a turn in the host's
 * queue), the request sent, the response received into the connection's
 * ring and parsed in place, body spans written to the file straight from
 * that ring (one writev per run of receives, no copy, while the next
 * receive goes on: section 5), redirects followed on the
 * same exchange, and the deadlines (head, idle, total) watched by one timer.
 *
 * Every step is a ring op whose callback runs the next. An abort (a
 * deadline, a cancel) records the error and cancels the op in flight; its
 * callback then ends the exchange, so nothing the kernel still holds (the
 * receive buffer, the iovecs' bytes) is freed early.
 *
 * Pipelined HEADs (ak_http_head_pipeline, section 9) are exchanges linked
 * in request order behind the one that holds the connection: it writes
 * every member's request at once, each member parses its response from
 * the stream in turn, and the connection goes to the next member with the
 * bytes received past the response. With pipeline_depth, a later call's
 * requests join the running pipeline at its tail, and the member that
 * holds the connection writes them before it next waits for bytes.
 *
 * Map: 1. records and helpers  2. connection  3. request  4. response
 *      5. body writes  6. ending  7. deadlines  8. start and cancel
 *      9. pipelined HEADs */
#include "http/internal.h"

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <linux/sockios.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

/* ---- 1. Records and helpers ---------------------------------------------------- */

/* A connection's receive buffer holds this many receives (recv_buffer
 * each): a receive lands in one part while the body of others is written
 * (section 5). */
#define RX_RING 4
/* The receive buffer of a connection that has carried only HEADs (section
 * 3, rx_buffer_ready): a head's worth, never registered. */
#define RX_HEAD_BUF (16 * 1024)
/* Body writes in flight at most. A second one queued behind the first
 * (io-wq runs a file's writes one after the other) keeps the worker busy
 * between them, where one at a time left it asleep until the loop had
 * seen the completion and sent the next; it waits for a full receive's
 * worth, so writes stay large. */
#define WRITES 2
/* A body write on the loop thread that took longer than this (a disk
 * stall, the kernel throttling dirty pages) sends the rest of that body
 * through io-wq: the loop's other exchanges wait while it runs. A page-cache
 * write of a receive's worth takes about 0.1 ms. */
#define INLINE_SLOW_NS (20 * 1000 * 1000)
/* An inline write waits for this many receives' worth (recv_buffer each;
 * at most half the ring, so receives go on meanwhile): 2 GiB over one
 * connection took about 8% less time than writing after each one. */
#define INLINE_GATHER 2
/* A body write on the loop thread goes in calls of at most this many
 * bytes, cut at multiples of it in the file (section 5, write_inline). */
#define WRITE_CALL_MAX ((size_t)256 * 1024)
/* A pipeline whose new connections close this many times in a row before
 * any of its members has an answer fails its members (section 9). */
#define PIPE_DRY_MAX 2u

typedef enum inline_mode {
  INLINE_UNKNOWN, /* the sink not looked at yet */
  INLINE_NOWAIT,  /* a regular file: try pwritev2(RWF_NOWAIT) first */
  INLINE_PLAIN,   /* a regular file whose filesystem refuses RWF_NOWAIT on
                     buffered writes (ext4): plain pwritev, timed */
  INLINE_OFF,     /* not a regular file (a pipe may block for good), or a
                     write was slow: every write through io-wq */
} inline_mode;

typedef enum ex_state {
  EX_WAITING,    /* queued for a connection of its host */
  EX_CONNECTING, /* TCP connect (and the transport's handshake) */
  EX_SENDING,    /* the request going out */
  EX_RECEIVING,  /* a receive in flight (a body write may be too) */
  EX_WRITING,    /* no receive: body writes going to the file first (the
                    ring is full, or the message is all in) */
  EX_THROTTLED,  /* waiting for the rate limit's tokens before a receive */
  EX_PIPED,      /* a pipeline member behind another: its request goes (or
                    went) out with the one ahead, its response comes after
                    that one's (section 9) */
  EX_ENDED,
} ex_state;

/* A body write in flight: spans received, gone to the file as one
 * writev (or WRITE_FIXED). */
typedef struct wbatch {
  ak_future *f;                /* the write in flight, or NULL */
  struct iovec *iov;           /* its spans (kept for short writes) */
  unsigned n, cap;
  size_t len;                  /* their bytes */
  size_t done;                 /* of those, written */
  int64_t off;                 /* entity offset of its first byte */
} wbatch;

struct ak__http_exchange {
  ak_http_client *client;
  ak_future *fut;              /* the request's future (one reference) */
  ak_url *url;                 /* the URL being fetched (changes on redirects) */
  unsigned flags;              /* AK_HTTP_* */
  char *extra;                 /* the user's header lines, joined with CRLFs */
  size_t extra_len;
  bool user_agent_given;       /* extra has a User-Agent */
  bool accept_encoding_given;  /* extra has an Accept-Encoding */
  bool authorization_given;    /* extra has an Authorization: it wins over
                                  the credentials' (curl: a header given
                                  replaces the client's own) */
  int64_t range_start, range_end;
  int fd;                      /* body sink, or -1 */
  int64_t fd_base;
  ak_http_body_fn on_body;
  void *arg;
  int64_t *progress;
  int64_t *size_out;

  char *auth;                  /* "Authorization: Basic ...\r\n" for the
                                  request's origin, or NULL */
  char *origin;                /* "scheme host port" credentials belong to:
                                  the request's, made at its first redirect
                                  (NULL before) */
  const ak__proxy *proxy;      /* the proxy of this URL (the client's), or NULL */
  bool forward;                /* http through an http proxy: absolute form */

  ak__http_host *host;         /* ex->url's pool (with proxy and forward, its
                                  route), NULL until acquire finds it */
  ak__http_conn *conn;         /* the connection in use, or NULL */
  bool conn_reused;            /* conn was kept alive from an earlier request */
  bool retried;                /* a stale kept-alive connection was replaced once */
  ak__http_exchange *next_wait; /* in host's queue */

  bool parser_live;            /* parser is initialized (its own fields
                                  say nothing until then) */
  char *req;                   /* the request's bytes */
  size_t req_len;
  ak_future *pending;          /* the op in flight (one reference), or NULL */
  ex_state state;
  bool got_bytes;              /* a response byte came on this connection;
                                  on a reused one (conn_reused), the answer
                                  has begun: its first 5 bytes are "HTTP/"
                                  (pipe_prefix) */
  bool leftover;               /* bytes after the response: no reuse */
  bool sink_body;              /* this response's body goes to the sink */
  bool redirect;               /* this response is a redirect to follow */
  unsigned redirects;
  int64_t write_pos;           /* entity offset of the first byte of iov */
  struct iovec *iov;           /* body spans received, not yet handed to a
                                  write (consecutive body bytes) */
  unsigned niov, iov_cap;
  size_t write_len;            /* their bytes */
  size_t rx_at;                /* ring offset of the next receive */
  bool rx_ended;               /* the message is all in (or the peer closed):
                                  no more receives */
  wbatch wb[WRITES];           /* body writes in flight, oldest first */
  unsigned nw;                 /* how many */
  bool write_failed;           /* a body write failed: no more are made */
  bool rcvlowat_off;           /* the server was slow under the low-water
                                  mark once: receives take any byte again */
  inline_mode inline_writes;   /* whether body writes may run on the loop
                                  thread (section 5) */
  dev_t sink_dev;              /* the sink's filesystem (a regular file) */
  bool sink_stream;            /* the sink is not a regular file (a pipe):
                                  one write in flight at most, as io-wq
                                  runs two writes to it at once, out of
                                  order (it orders only a regular file's) */
  ak__http_decoder *decoder;   /* AK_HTTP_DECODE on an encoded body, or NULL */
  char *dbuf;                  /* its output, recv_buffer bytes */
  size_t dfill;                /* decoded bytes in dbuf not yet written */
  size_t dwritten;             /* of those, written (short writes) */
  unsigned dec_i;              /* the span being decoded */
  size_t dec_off;              /* bytes of it taken */
  int64_t decoded;             /* decoded bytes so far (this response) */
  ak__http_membody *membody;  /* AK_HTTP_BODY_MEMORY: on_body's sink, or NULL */

  int err;                     /* the first error, 0 while all is well */
  ak_timer *timer;             /* the deadline timer, or NULL */
  ak_timer *throttle;          /* the rate limit's wait, or NULL */
  int64_t timer_at;            /* when it fires */
  int64_t total_deadline;      /* INT64_MAX: none */
  int64_t head_deadline;       /* set when the request has gone out */
  int64_t last_rx;             /* last byte received (or the send's start) */

  /* pipelined HEADs (section 9) */
  ak__http_exchange *pipe_prev; /* the member ahead in its pipeline, or NULL */
  ak__http_exchange *pipe_next; /* the member behind, or NULL */
  bool piped;                  /* a member of a pipeline (till it ends, or
                                  leaves it to follow a redirect) */
  bool pipe_sent;              /* its request went out: with the member
                                  ahead's, as the pipeline's head
                                  (pipe_wire), or after it joined
                                  (pipe_send_joined) */
  bool rx_interrupted;         /* its receive was cancelled so that the
                                  requests that joined go out now
                                  (pipe_wake): on_recv sends them, then
                                  receives again */
  bool send_broken;            /* a send of requests that joined failed:
                                  its connection is not kept after its
                                  answer (those requests go again on
                                  another) */
  bool pipe_turned;            /* the connection came from the member ahead
                                  (its response done): a fresh response is
                                  due from the stream's next byte */
  unsigned char pipe_prefix;   /* conn_reused: bytes of "HTTP/" the stream
                                  began with so far; got_bytes (an answer
                                  begun) once all 5 are in */
  unsigned pipe_dry;           /* new connections that closed before this
                                  pipeline had any answer on them */
  char *wire;                  /* the pipeline's requests, sent as one
                                  write, or NULL */
  size_t wire_len;

  /* Not cleared when the record is recycled (record_get): a fifth of the
   * record, written before they are read. The parser is made anew by
   * ak__http_parser_init (parser_live), and a record is put back only with
   * its parser freed (ak__http_parser_free leaves nothing to free twice);
   * detail is written with err. */
  ak__http_parser parser;
  char detail[240];

  /* Kept when the record is recycled (record_get): everything above parser
   * is cleared for the next exchange, these buffers keep their room. */
  char *req_buf;               /* req points here once built */
  size_t req_cap;
  char *extra_buf;             /* extra points here when there are lines */
  size_t extra_cap;
  char *url_buf;               /* url is made here when plain (url_drop) */
  size_t url_cap;
};

/* Ended exchanges' records a client keeps for its next ones (a free list
 * on the loop's thread, client->spare_ex, linked by next_wait), with their
 * request and header buffers: a record, its request's head and its
 * header lines had been three allocations and frees per request. */
#define SPARE_MAX 128u
/* A kept record keeps its request-head and header-line buffers up to this
 * size each (a request head is some 200 bytes; -H lines add their own). */
#define SPARE_BUF_MAX 4096u

static void acquire(ak__http_exchange *ex, bool allow_idle);

/* A record's kept buffer (req_buf, extra_buf) with room for n bytes: the
 * one kept when it is large enough, else a new one (what it held is not
 * kept: it is written whole). 0 or -ENOMEM (the old buffer kept). */
static int kept_buf_reserve(char **buf, size_t *cap, size_t n)
{
  if (n <= *cap)
    return 0;
  char *g = ak__malloc(n);
  if (!g)
    return -ENOMEM;
  ak__free(*buf);
  *buf = g;
  *cap = n;
  return 0;
}

/* A kept buffer over SPARE_BUF_MAX is not kept with its spare record. */
static void kept_buf_trim(char **buf, size_t *cap)
{
  if (*cap <= SPARE_BUF_MAX)
    return;
  ak__free(*buf);
  *buf = NULL;
  *cap = 0;
}
static void record_put(ak_http_client *c, ak__http_exchange *ex);

/* Frees url, one of ex's, unless it was made in ex's kept buffer. */
static void url_drop(ak__http_exchange *ex, ak_url *url)
{
  if (url != (ak_url *)ex->url_buf)
    ak_url_free(url);
}
static void send_request(ak__http_exchange *ex);
static void post_recv(ak__http_exchange *ex);
static void finish(ak__http_exchange *ex);
static void stop(ak__http_exchange *ex);
static void arm_timer(ak__http_exchange *ex);
static void submit_writes(ak__http_exchange *ex, wbatch *b);
static void flush_held(ak__http_exchange *ex);
static int pipe_wire(ak__http_exchange *ex);
static bool pipe_send_joined(ak__http_exchange *ex);
static bool pipe_retry(ak__http_exchange *ex);
static bool stray(ak__http_exchange *ex, const char *data, size_t len);
/* What a response starts with: a turned member's stream is its answer
 * once these 5 bytes are in (section 9). */
static const char status_prefix[] = "HTTP/";
#define STATUS_PREFIX_LEN (sizeof status_prefix - 1)
static void pipe_carry(ak__http_exchange *ex, char *data, size_t len);
static void pipe_hand_on(ak__http_exchange *next, ak__http_conn *conn, bool keep,
                         unsigned dry, int err);

/* Records the first error and its detail. */
static void set_error(ak__http_exchange *ex, int err, const char *detail)
{
  if (ex->err)
    return;
  ex->err = err;
  snprintf(ex->detail, sizeof ex->detail, "%s%s%s", ex->url ? ex->url->text : "",
           detail && detail[0] ? ": " : "", detail ? detail : "");
}

/* Waits for f (taking the caller's reference) and runs cb(f, ex) after. */
static void await(ak__http_exchange *ex, ak_future *f, ak_callback cb)
{
  if (!f) {
    set_error(ex, -ENOMEM, "out of memory");
    stop(ex);
    return;
  }
  ex->pending = f;
  if (ak_future_on_settle(f, cb, ex) < 0) {
    ak_future_cancel(f);
    ak_future_release(f);
    ex->pending = NULL;
    set_error(ex, -ENOMEM, "out of memory");
    stop(ex);
  }
}

/* First thing in an op's callback: the op is no longer pending. Returns its
 * result, or the exchange's error if it was aborted meanwhile. */
static int64_t op_done(ak__http_exchange *ex, ak_future *f)
{
  ex->pending = NULL;
  int64_t res = ak_future_result(f);
  ak_future_release(f); /* the callback's borrow outlives this: the loop holds one */
  return ex->err ? ex->err : res;
}

static void add_progress(ak__http_exchange *ex, size_t n)
{
  if (ex->progress)
    __atomic_fetch_add(ex->progress, (int64_t)n, __ATOMIC_RELAXED);
}

/* ---- 2. Connection -------------------------------------------------------------------- */

ak__http_exchange *ak__http_host_pop_waiter(ak__http_host *host)
{
  ak__http_exchange *ex = host->wait_head;
  if (ex) {
    host->wait_head = ex->next_wait;
    if (!host->wait_head)
      host->wait_tail = NULL;
    ex->next_wait = NULL;
  }
  return ex;
}

static void remove_waiter(ak__http_exchange *ex)
{
  ak__http_host *h = ex->host;
  ak__http_exchange **pp = &h->wait_head, *prev = NULL;
  while (*pp && *pp != ex) {
    prev = *pp;
    pp = &(*pp)->next_wait;
  }
  if (*pp) {
    *pp = ex->next_wait;
    if (h->wait_tail == ex)
      h->wait_tail = prev;
  }
}

static void use_conn(ak__http_exchange *ex, ak__http_conn *conn, bool reused)
{
  ex->conn = conn;
  ex->conn_reused = reused;
  if (reused)
    ex->client->reused++;
  send_request(ex);
}

static void on_started(ak_future *f, void *arg)
{
  ak__http_exchange *ex = arg;
  int64_t res = op_done(ex, f);
  if (res < 0) {
    set_error(ex, (int)res, ak_future_detail(f) ? ak_future_detail(f) : "handshake failed");
    stop(ex);
    return;
  }
  send_request(ex);
}

/* The socket reaches the origin (directly or through a tunnel): TLS, if
 * https, then the request. */
static void start_transport(ak__http_exchange *ex)
{
  ak_future *hs = ex->conn->tr->start(ex->conn);
  if (hs)
    await(ex, hs, on_started);
  else
    send_request(ex);
}

static void on_tunneled(ak_future *f, void *arg)
{
  ak__http_exchange *ex = arg;
  const char *d = ak_future_detail(f);
  char why[200];
  snprintf(why, sizeof why, "%s", d ? d : "proxy handshake failed");
  int64_t res = op_done(ex, f);
  if (res < 0) {
    set_error(ex, (int)res, why);
    finish(ex);
    return;
  }
  start_transport(ex);
}

static void on_connected(ak_future *f, void *arg)
{
  ak__http_exchange *ex = arg;
  ex->pending = NULL;
  int64_t res = ak_future_result(f);
  if (res >= 0 && ex->err) {
    close((int)res); /* aborted while connecting: the socket is ours to drop */
    res = ex->err;
  }
  const char *d = ak_future_detail(f);
  char why[200];
  snprintf(why, sizeof why, "connect: %s", d ? d : ak_strerror((int)res));
  ak_future_release(f);
  if (res < 0 && ex->proxy && res != -ECANCELED && res != ex->err) {
    /* The proxy, not the origin, could not be reached: say so. */
    char pwhy[200];
    snprintf(pwhy, sizeof pwhy, "proxy %.60s: %.130s", ex->proxy->display, why);
    set_error(ex, AK_EPROXYCONNECT, pwhy);
    finish(ex);
    return;
  }
  if (res < 0) {
    set_error(ex, (int)res, why);
    stop(ex);
    return;
  }
  ex->conn->fd = (int)res;
  if (ex->proxy && !ex->forward) {
    await(ex, ak__http_proxy_tunnel(ex->client->loop, ex->conn->fd, ex->proxy, ex->url),
          on_tunneled);
    return;
  }
  start_transport(ex);
}

static void connect_new(ak__http_exchange *ex)
{
  ak_http_client *c = ex->client;
  ex->conn = ak__http_conn_new(c, ex->host);
  if (!ex->conn) {
    set_error(ex, -ENOMEM, "out of memory");
    stop(ex);
    return;
  }
  ex->conn_reused = false;
  ex->state = EX_CONNECTING;
  if (strcmp(ex->url->scheme, "https") == 0) {
    ex->conn->tr = &ak__http_tls;
    if (!(ex->conn->tls_host = ak__strdup(ex->url->host))) {
      set_error(ex, -ENOMEM, "out of memory");
      stop(ex);
      return;
    }
  }
  char name[300];
  uint16_t port = ex->url->port;
  if (ex->proxy) {
    snprintf(name, sizeof name, "%s", ex->proxy->host); /* the proxy is who we dial */
    port = ex->proxy->port;
  } else if (ex->url->zone) {
    snprintf(name, sizeof name, "%s%%%s", ex->url->host, ex->url->zone);
  } else {
    snprintf(name, sizeof name, "%s", ex->url->host);
  }
  ak_connect_options co = {.family = c->opts.ip_family,
                           .attempt_timeout_ns = c->opts.connect_timeout_ns};
  await(ex, ak_connect_name(c->loop, name, port, &co), on_connected);
}

/* Whether a kept-alive plain connection has bytes waiting or was closed
 * by the server while idle: bytes that came while no request was out are
 * no answer to the next one (a body sent late after a HEAD, a response
 * nobody asked for), and the next request would read them as its own
 * response. TLS connections are not looked at: a record (a session ticket)
 * may wait there rightly. Nor is one idle for less than the client's
 * trust window (AK__HTTP_IDLE_TRUST_NS unless a test set another):
 * what the look finds there is found after the send (internal.h). */
static bool idle_stale(const ak__http_conn *conn, bool forward)
{
  /* A forward proxy's connection carries every origin's requests: an
   * answer nobody asked for there could be taken for another origin's,
   * so it is always looked at. */
  if (conn->tr != &ak__http_plain || conn->fd < 0)
    return false;
  ak_http_client *c = conn->client;
  if (!forward && ak_now_ns() - conn->idle_since < c->idle_trust_ns) {
    c->reuse.looks_skipped++;
    return false;
  }
  c->reuse.looks++;
  char b;
  ssize_t r = recv(conn->fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
  return r >= 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR);
}

void ak__http_client_set_idle_trust(ak_http_client *c, int64_t ns)
{
  c->idle_trust_ns = ns;
}

ak__http_reuse_counts ak__http_client_reuse_counts(const ak_http_client *c)
{
  return c->reuse;
}

static void acquire(ak__http_exchange *ex, bool allow_idle)
{
  ak_http_client *c = ex->client;
  if (!ex->host) {
    /* The route of ex->url: known already when acquiring again for the
     * same URL (a retry, a pipeline sent again) or when the pipeline
     * found it (section 9); a redirect clears it. */
    ex->proxy = ak__http_proxy_for(c, ex->url);
    ex->forward = ex->proxy && ex->proxy->kind == AK__PROXY_HTTP &&
                  strcmp(ex->url->scheme, "http") == 0;
    ex->host = ak__http_host_of(c, ex->url, ex->proxy);
  }
  if (!ex->host) {
    set_error(ex, -ENOMEM, "out of memory");
    stop(ex);
    return;
  }
  ak__http_conn *idle = allow_idle ? ak__http_conn_take_idle(ex->host) : NULL;
  while (idle && idle_stale(idle, ex->forward)) {
    ak__http_conn_release(idle, false); /* a waiter may take the free slot */
    idle = ak__http_conn_take_idle(ex->host);
  }
  if (idle) {
    use_conn(ex, idle, true);
  } else if (ex->host->open < c->opts.max_conns_per_host) {
    connect_new(ex);
  } else {
    ex->state = EX_WAITING;
    if (ex->host->wait_tail)
      ex->host->wait_tail->next_wait = ex;
    else
      ex->host->wait_head = ex;
    ex->host->wait_tail = ex;
  }
}

void ak__http_exchange_resume(ak__http_exchange *ex, ak__http_conn *conn)
{
  if (conn)
    use_conn(ex, conn, true);
  else
    connect_new(ex);
}

/* A kept-alive connection turned out closed before any response byte (the
 * server timed it out, or closed it after its last answer without saying
 * so): once per request, try again on a new one. Only GET and HEAD are
 * sent, so a request sent again repeats nothing the server acted on; a
 * request with a body would need the caller's say. A pipeline's members
 * go again as pipe_retry says. */
static bool retry_on_fresh_conn(ak__http_exchange *ex)
{
  if (ex->piped)
    return pipe_retry(ex);
  if (!ex->conn_reused || ex->retried || ex->got_bytes || ex->err)
    return false;
  ex->retried = true;
  ex->client->reuse.resent++;
  ak__http_conn *conn = ex->conn;
  ex->conn = NULL;
  ak__http_conn_release(conn, false);
  ak__http_parser_free(&ex->parser);
  ex->parser_live = false;
  acquire(ex, false);
  return true;
}

/* ---- 3. Request ------------------------------------------------------------------------ */

/* Copies n bytes of s to o; returns the end. */
static inline char *put_n(char *o, const char *s, size_t n)
{
  memcpy(o, s, n);
  return o + n;
}

/* The request's head into req_buf (kept from an earlier exchange when it
 * is large enough). Each string's length is taken once (the head's size,
 * then its copy): strlen twice per string was a tenth of the making. */
static int build_request(ak__http_exchange *ex)
{
  const ak__http_opts *o = &ex->client->opts;
  bool head = ex->flags & AK_HTTP_HEAD;
  static const char gzip_line[] = "Accept-Encoding: gzip, deflate\r\n";
  size_t accept_len = (ex->flags & AK_HTTP_DECODE) && !ex->accept_encoding_given
                          ? sizeof gzip_line - 1
                          : 0;
  /* Through an http proxy (not a tunnel) the target is the whole URL
   * (absolute form, RFC 9112 3.2.2) and the proxy's credentials go along. */
  const char *target = ex->forward ? ex->url->text : ex->url->target;
  const char *proxy_auth = ex->forward && ex->proxy->auth_line ? ex->proxy->auth_line : "";
  const char *auth = ex->auth && !ex->authorization_given ? ex->auth : "";
  const char *extra = ex->extra ? ex->extra : "";
  const char *ua = ex->user_agent_given ? "" : o->user_agent;
  size_t target_len = strlen(target), authority_len = strlen(ex->url->authority),
         ua_len = strlen(ua), extra_len = ex->extra ? ex->extra_len : 0,
         proxy_auth_len = strlen(proxy_auth), auth_len = strlen(auth);
  size_t n = target_len + authority_len + ua_len + extra_len + 128 + 80 /* Range */ +
             accept_len + proxy_auth_len + auth_len;
  if (kept_buf_reserve(&ex->req_buf, &ex->req_cap, n) < 0)
    return -ENOMEM;
  char *r = ex->req_buf;
  char *e = head ? ak__put(r, "HEAD ") : ak__put(r, "GET ");
  e = put_n(e, target, target_len);
  e = ak__put(e, " HTTP/1.1\r\nHost: ");
  e = put_n(e, ex->url->authority, authority_len);
  e = ak__put(e, "\r\n");
  if (!ex->user_agent_given) {
    e = ak__put(e, "User-Agent: ");
    e = put_n(e, ua, ua_len);
    e = ak__put(e, "\r\n");
  }
  e = ak__put(e, "Accept: */*\r\n");
  e = put_n(e, gzip_line, accept_len);
  if (ex->range_start >= 0) {
    e = ak__put(e, "Range: bytes=");
    e = ak__put_u64(e, (uint64_t)ex->range_start);
    *e++ = '-';
    if (ex->range_end >= 0)
      e = ak__put_u64(e, (uint64_t)ex->range_end);
    e = ak__put(e, "\r\n");
  }
  e = put_n(e, auth, auth_len);
  e = put_n(e, proxy_auth, proxy_auth_len);
  e = put_n(e, extra, extra_len);
  e = ak__put(e, "\r\n");
  *e = '\0';
  ex->req = r;
  ex->req_len = (size_t)(e - r);
  return 0;
}

static int on_head(ak__http_parser *p, void *arg);
static int on_body_bytes(ak__http_parser *p, const char *data, size_t len, void *arg);

/* The connection's receive buffer for this exchange. A body gets the ring:
 * RX_RING receives, so that receives go on while the body of earlier ones
 * is written (section 5). A HEAD's answer has no body: RX_HEAD_BUF bytes
 * take its head (the parser copies what it keeps, so a head of any size
 * passes through them), and a connection that only carries HEADs (akget
 * -N over an unchanged tree) never makes the ring. Between exchanges the
 * buffer holds nothing (a connection with bytes left over is not reused),
 * so a small one is replaced by the ring when a GET comes. */
static int rx_buffer_ready(ak__http_exchange *ex)
{
  ak__http_conn *conn = ex->conn;
  size_t ring = ex->client->opts.recv_buffer * RX_RING;
  size_t size = (ex->flags & AK_HTTP_HEAD) && ring > RX_HEAD_BUF ? RX_HEAD_BUF : ring;
  if (conn->buf && conn->buf_size >= size)
    return 0;
  assert(conn->buf_slot < 0); /* only the ring is registered, and it is never replaced */
  ak__free(conn->buf);
  conn->buf_size = 0;
  if (!(conn->buf = ak__malloc(size)))
    return -ENOMEM;
  conn->buf_size = size;
  return 0;
}

/* A body is coming into the ring: register it now, not when the
 * connection was made. Receives into a registered buffer skip the kernel's
 * per-receive page walk and copy checks (net.h), but registering pins, and
 * so faults in, the whole ring (1 MiB at akget's 256 KiB receives): on
 * akget -N -j32 over an unchanged tree, where every answer is a head, that
 * was about a quarter of the run's CPU. Where registering fails (epoll,
 * RLIMIT_MEMLOCK, a table of the user's, every slot taken) receives stay
 * plain; it is tried once per connection. */
static void rx_buffer_register(ak__http_exchange *ex)
{
  ak__http_conn *conn = ex->conn;
  if (conn->buf_slot >= 0 || conn->buf_reg_tried || conn->tr != &ak__http_plain ||
      conn->buf_size < ex->client->opts.recv_buffer * RX_RING)
    return;
  conn->buf_reg_tried = true;
  conn->buf_slot = ak_buffer_register(ex->client->loop, conn->buf, conn->buf_size);
}

static void on_sent(ak_future *f, void *arg)
{
  ak__http_exchange *ex = arg;
  int64_t res = op_done(ex, f);
  ak__free(ex->wire);
  ex->wire = NULL;
  if (res < 0) {
    if (retry_on_fresh_conn(ex))
      return;
    set_error(ex, (int)res, "sending the request");
    stop(ex);
    return;
  }
  ex->state = EX_RECEIVING;
  post_recv(ex);
}

/* What a request needs before its response can come, on the connection it
 * has: its bytes, a parser (a new one when fresh, as a pipeline member's
 * turn needs), the receive buffer, the deadlines. false: failed and stopped. */
static bool begin_exchange(ak__http_exchange *ex, bool fresh, bool head_only, ex_state state)
{
  const ak__http_opts *o = &ex->client->opts;
  int rc = ex->req ? 0 : build_request(ex);
  if (rc == 0 && fresh && ex->parser_live) {
    ak__http_parser_free(&ex->parser);
    ex->parser_live = false;
  }
  if (rc == 0 && !ex->parser_live) {
    rc = ak__http_parser_init(&ex->parser, o->max_head_bytes, o->max_body_bytes, head_only);
    ex->parser_live = rc == 0;
  }
  if (rc == 0)
    rc = rx_buffer_ready(ex);
  if (rc < 0) {
    set_error(ex, rc, "out of memory");
    stop(ex);
    return false;
  }
  ex->parser.on_head = on_head;
  ex->parser.on_body = on_body_bytes;
  ex->parser.hook_arg = ex;
  ex->got_bytes = false;
  ex->pipe_prefix = 0;
  ex->leftover = false;
  ex->rx_ended = false;
  ex->rx_at = 0;
  ex->state = state;
  int64_t now = ak_now_ns();
  ex->last_rx = now;
  ex->head_deadline = o->head_timeout_ns == AK_FOREVER ? INT64_MAX : now + o->head_timeout_ns;
  arm_timer(ex);
  return true;
}

static void send_request(ak__http_exchange *ex)
{
  if (!begin_exchange(ex, false, ex->flags & AK_HTTP_HEAD, EX_SENDING))
    return;
  if (ex->piped) {
    assert(!ex->pipe_sent); /* a head sends its own request and every member's */
    int rc = pipe_wire(ex);
    if (rc < 0) {
      set_error(ex, rc, "out of memory");
      stop(ex);
      return;
    }
    await(ex, ex->conn->tr->send_all(ex->conn, ex->wire, ex->wire_len), on_sent);
    return;
  }
  await(ex, ex->conn->tr->send_all(ex->conn, ex->req, ex->req_len), on_sent);
}

/* ---- 4. Response ----------------------------------------------------------------------- */

static bool is_redirect(int status)
{
  return status == 301 || status == 302 || status == 303 || status == 307 || status == 308;
}

/* The final head is in: where its body goes. */
static int on_head(ak__http_parser *p, void *arg)
{
  ak__http_exchange *ex = arg;
  ak_http_response *r = p->resp;
  ex->redirect = false;
  ex->sink_body = false;
  ak__http_decoder_free(ex->decoder);
  ex->decoder = NULL;
  ex->decoded = 0;
  /* Looked up only when a decoded body was asked for (not a HEAD's). */
  const char *enc = (ex->flags & AK_HTTP_DECODE) && !(ex->flags & AK_HTTP_HEAD)
                        ? ak_http_response_header(r, "content-encoding")
                        : NULL;
  bool decode = enc && !ak__http_encoding_is_identity(enc);
  if (decode)
    r->entity_size = -1; /* the encoded length is not the decoded file's size */
  if (ex->forward && r->status == 407) {
    snprintf(p->detail, sizeof p->detail, "proxy %s answered 407 %.60s", ex->proxy->display,
             r->reason ? r->reason : "");
    return AK_EPROXYAUTH;
  }
  if (ex->size_out && r->status < 300)
    __atomic_store_n(ex->size_out, r->entity_size, __ATOMIC_RELAXED);
  if (is_redirect(r->status) && ak_http_response_header(r, "location") &&
      ex->client->opts.max_redirects >= 0) {
    ex->redirect = true;
    return 0;
  }
  if (r->status >= 300 && !(ex->flags & AK_HTTP_KEEP_ERROR_BODY))
    return 0;
  ex->sink_body = ex->fd >= 0 || ex->on_body;
  if (ex->sink_body)
    rx_buffer_register(ex);
  ex->write_pos = 0;
  if (r->status == 206) {
    if (ex->range_start < 0) {
      snprintf(p->detail, sizeof p->detail, "206 Partial Content to a request without Range");
      return AK_EHTTPPROTO;
    }
    if (r->range_start != ex->range_start || (ex->range_end >= 0 && r->range_end > ex->range_end)) {
      snprintf(p->detail, sizeof p->detail,
               "asked bytes %" PRId64 "-%" PRId64 ", got %" PRId64 "-%" PRId64, ex->range_start,
               ex->range_end, r->range_start, r->range_end);
      return AK_EHTTPRANGE;
    }
    ex->write_pos = r->range_start;
  } else if (ex->range_start >= 0 && r->status < 300 && (ex->flags & AK_HTTP_REQUIRE_RANGE)) {
    snprintf(p->detail, sizeof p->detail, "asked a Range, the server sent status %d", r->status);
    return AK_EHTTPRANGE;
  }
  if (decode && ex->sink_body) {
    int rc = ak__http_decoder_new(enc, &ex->decoder, p->detail, sizeof p->detail);
    if (rc == 0 && !ex->dbuf && !(ex->dbuf = ak__malloc(ex->client->opts.recv_buffer)))
      rc = -ENOMEM;
    if (rc < 0)
      return rc;
    r->decoded = true;
  }
  return 0;
}

/* Counts n more decoded bytes against the body limit (a gzip bomb ends
 * here). */
static int count_decoded(ak__http_exchange *ex, ak__http_parser *p, size_t n)
{
  ex->decoded += (int64_t)n;
  if (ex->decoded > ex->client->opts.max_body_bytes) {
    snprintf(p->detail, sizeof p->detail, "decoded body over the limit of %lld bytes",
             (long long)ex->client->opts.max_body_bytes);
    return AK_EHTTPTOOBIG;
  }
  return 0;
}

/* The no-fd sink with a decoder: inflate in place, hand each piece over. */
static int decode_to_callback(ak__http_exchange *ex, ak__http_parser *p, const char *data,
                              size_t len)
{
  size_t cap = ex->client->opts.recv_buffer;
  while (len > 0) {
    size_t used = 0;
    int64_t made = ak__http_decoder_run(ex->decoder, data, len, &used, ex->dbuf, cap, p->detail,
                                        sizeof p->detail);
    if (made < 0)
      return (int)made;
    data += used;
    len -= used;
    if (made > 0) {
      int rc = count_decoded(ex, p, (size_t)made);
      if (rc == 0)
        rc = ex->on_body(ex->dbuf, (size_t)made, ex->write_pos, ex->arg);
      if (rc < 0)
        return rc;
      ex->write_pos += made;
      add_progress(ex, (size_t)made);
    } else if (used == 0) {
      break; /* cannot happen: with room out, zlib takes input or fails */
    }
  }
  return 0;
}

static int on_body_bytes(ak__http_parser *p, const char *data, size_t len, void *arg)
{
  ak__http_exchange *ex = arg;
  (void)p;
  if (!ex->sink_body)
    return 0;
  if (ex->fd < 0 && ex->decoder)
    return decode_to_callback(ex, p, data, len);
  if (ex->fd < 0) {
    int rc = ex->on_body(data, len, ex->write_pos, ex->arg);
    ex->write_pos += (int64_t)len;
    add_progress(ex, len);
    return rc < 0 ? rc : 0;
  }
  /* Spans of one receive are consecutive in the body: merge adjacent ones. */
  if (ex->niov > 0) {
    struct iovec *last = &ex->iov[ex->niov - 1];
    if ((const char *)last->iov_base + last->iov_len == data) {
      last->iov_len += len;
      ex->write_len += len;
      return 0;
    }
  }
  if (ex->niov == ex->iov_cap) {
    /* A span per chunk: a receive of tiny chunks (a 1-byte chunk takes 6
     * bytes) can hold buf_size / 6 of them, which bounds the array. */
    unsigned cap = ex->iov_cap ? ex->iov_cap * 2 : 8;
    if (cap > ex->conn->buf_size / 4 + 8)
      return -E2BIG; /* NEVER: more spans than a receive can hold */
    struct iovec *g = ak__realloc(ex->iov, cap * sizeof *g);
    if (!g)
      return -ENOMEM;
    ex->iov = g;
    ex->iov_cap = cap;
  }
  ex->iov[ex->niov].iov_base = (void *)data;
  ex->iov[ex->niov].iov_len = len;
  ex->niov++;
  ex->write_len += len;
  return 0;
}

static void message_complete(ak__http_exchange *ex);
static void start_decode(ak__http_exchange *ex);
static void advance(ak__http_exchange *ex);

static void on_recv(ak_future *f, void *arg)
{
  ak__http_exchange *ex = arg;
  int64_t res = op_done(ex, f);
  if (ex->rx_interrupted) {
    ex->rx_interrupted = false;
    if (res == -ECANCELED) { /* pipe_wake's cancel, not an abort (op_done: ex->err) */
      post_recv(ex);         /* the joined requests go out, then the receive */
      return;
    }
    /* Bytes came first (or an error): taken as any receive's; the joined
     * requests go with the next post_recv. */
  }
  ex->last_rx = ak_now_ns();
  if (res < 0) {
    if ((res == -ECONNRESET || res == -EPIPE) && retry_on_fresh_conn(ex))
      return;
    set_error(ex, (int)res, ex->parser.head_done ? "receiving the body" : "receiving the response");
    stop(ex);
    return;
  }
  if (res == 0) {
    int rc = ak__http_parser_eof(&ex->parser, ex->got_bytes);
    if (rc == AK_EHTTPCLOSED && retry_on_fresh_conn(ex))
      return;
    if (rc < 0) {
      set_error(ex, rc, ex->parser.detail);
      stop(ex);
      return;
    }
    ex->leftover = true; /* closed: not reusable */
    ex->rx_ended = true;
  } else {
    ex->client->rate_tokens -= (double)res;
    char *data = ex->conn->buf + ex->rx_at;
    if (ex->conn_reused && !ex->got_bytes && stray(ex, data, (size_t)res))
      return;
    ex->got_bytes = !ex->conn_reused || ex->pipe_prefix == STATUS_PREFIX_LEN;
    ex->rx_at += (size_t)res;
    int64_t used = ak__http_parser_feed(&ex->parser, data, (size_t)res);
    if (used < 0) {
      set_error(ex, (int)used, ex->parser.detail);
      stop(ex);
      return;
    }
    if (used < res && ex->piped)
      pipe_carry(ex, data + used, (size_t)(res - used));
    else if (used < res)
      ex->leftover = true;
    ex->rx_ended = ex->parser.message_done;
    if (ex->err) {
      stop(ex);
      return;
    }
  }
  if (ex->decoder && ex->niov)
    start_decode(ex);
  else
    advance(ex);
}

/* Where the next receive goes in the connection's ring (conn->buf,
 * conn->buf_size bytes), and how much it may take; 0 when the ring is too
 * full (the receive waits for a write). The bytes still needed are those
 * from the first span not yet written (the write in flight's, else the
 * first one waiting) up to rx_at, in ring order: receives land one after
 * the other, so the body spans of several receives merge into one write,
 * and wrap to the start when the end has too little room. */
static size_t rx_room(ak__http_exchange *ex)
{
  size_t cap = ex->conn->buf_size, want = ex->client->opts.recv_buffer;
  size_t least = want / 4 ? want / 4 : 1; /* a smaller receive is not worth it */
  const struct iovec *first = ex->nw      ? &ex->wb[0].iov[0]
                              : ex->niov ? &ex->iov[0]
                                         : NULL;
  if (!first) {
    ex->rx_at = 0; /* nothing held: the whole ring */
    return cap < want ? cap : want;
  }
  size_t held = (size_t)((char *)first->iov_base - ex->conn->buf);
  size_t room;
  if (ex->rx_at > held) {
    room = cap - ex->rx_at;
    if (room < least && held > least) {
      ex->rx_at = 0; /* wrap */
      room = held - 1;
    }
  } else {
    room = held - ex->rx_at - 1; /* never up to held: equal means empty */
  }
  if (room < least)
    return 0;
  return room < want ? room : want;
}

/* The receive low-water mark. A server (squid) that writes its body in
 * small pieces would complete a receive per piece: 54,000 completions for
 * 200 MiB where a peer reading when it gets round to it makes 4,000, a
 * wakeup each on both sides. When the rest of the body is known
 * (Content-Length), the socket's SO_RCVLOWAT asks for the smaller of that
 * rest, the receive's room and RCVLOWAT_MAX before the socket reads as
 * ready (io_uring's armed receive and epoll both wait on tcp_poll, which
 * honours it; a receive that finds bytes at once still takes them). It is
 * never above the rest, so the last receive completes; lowered to 1 for
 * a head or a body of unknown length; set only when it must go down or
 * would double (a setsockopt is a syscall). A server that stops with
 * fewer bytes waiting: the deadline timer looks RCVLOWAT_WAIT_NS after the
 * last receive (at the idle deadline if that is sooner), and bytes waiting
 * in the socket (SIOCINQ) are taken at once (the mark back to 1, and off
 * for the rest of the exchange: a slow server gains nothing from it) and
 * count as progress, not idleness. */
#define RCVLOWAT_MAX (64 * 1024)
#define RCVLOWAT_MIN (16 * 1024) /* below this, raising is not worth a syscall */
#define RCVLOWAT_WAIT_NS INT64_C(100000000)

static int rcvlowat_want(const ak__http_exchange *ex, size_t len)
{
  const llhttp_t *ll = &ex->parser.ll;
  if (ex->conn->tr != &ak__http_plain || ex->rcvlowat_off || ex->client->opts.max_rate > 0 ||
      !ex->parser_live || !ex->parser.head_done || ex->parser.message_done ||
      !(ll->flags & F_CONTENT_LENGTH) || (ll->flags & (F_CHUNKED | F_TRANSFER_ENCODING)))
    return 1;
  uint64_t want = ll->content_length; /* llhttp counts it down: the rest */
  if (want > len)
    want = len;
  if (want > RCVLOWAT_MAX)
    want = RCVLOWAT_MAX;
  return want ? (int)want : 1;
}

static void rcvlowat_set(ak__http_conn *conn, int v)
{
  if (setsockopt(conn->fd, SOL_SOCKET, SO_RCVLOWAT, &v, sizeof v) == 0)
    conn->rcvlowat = v;
}

static void rcvlowat_update(ak__http_exchange *ex, size_t len)
{
  int want = rcvlowat_want(ex, len);
  int cur = ex->conn->rcvlowat > 1 ? ex->conn->rcvlowat : 1;
  if (want < cur || (want >= 2 * cur && want >= RCVLOWAT_MIN)) {
    rcvlowat_set(ex->conn, want);
    if (want > 1)
      arm_timer(ex); /* the look at RCVLOWAT_WAIT_NS (section 7) */
  }
}

/* The deadline timer's look (section 7): bytes under the mark waiting in
 * the socket are taken now (the mark's change wakes the receive) and are
 * progress. Returns whether there were any. */
static bool rcvlowat_flush(ak__http_exchange *ex, int64_t now)
{
  int queued = 0;
  if (ioctl(ex->conn->fd, SIOCINQ, &queued) < 0 || queued <= 0)
    return false;
  ex->rcvlowat_off = true;
  rcvlowat_set(ex->conn, 1);
  ex->last_rx = now;
  return true;
}

static void recv_now(ak__http_exchange *ex)
{
  size_t len = rx_room(ex);
  if (len == 0) {
    ex->state = EX_WRITING; /* the write in flight frees room (advance) */
    return;
  }
  ex->state = EX_RECEIVING;
  if (!ex->timer)
    arm_timer(ex); /* a timer that fired while the body was being written
                      found no deadline to watch then */
  if (ex->client->opts.max_rate > 0) {
    /* A receive takes no more than the bucket holds (at least 16 KiB), so
     * one large receive cannot spend seconds' worth at once: with 256 KiB
     * receives a 250 KB body at 100 KiB/s came in one go. */
    double tokens = ex->client->rate_tokens;
    size_t budget = tokens < 16384 ? 16384 : (size_t)tokens;
    if (budget < len)
      len = budget;
  }
  rcvlowat_update(ex, len);
  await(ex, ex->conn->tr->recv(ex->conn, ex->conn->buf + ex->rx_at, len), on_recv);
}

static void throttle_over(void *arg)
{
  ak__http_exchange *ex = arg;
  ex->throttle = NULL;
  ex->last_rx = ak_now_ns(); /* the wait was ours, not the server's */
  recv_now(ex);
}

/* With a rate limit, the client's bucket refills at max_rate bytes a second
 * (up to one second's worth) and each receive spends what it got; a receive
 * waits while the bucket is empty, and asks for no more than it holds
 * (recv_now). */
static void post_recv(ak__http_exchange *ex)
{
  if (ex->piped && pipe_send_joined(ex))
    return; /* its callback comes back here */
  ak_http_client *c = ex->client;
  if (c->opts.max_rate > 0) {
    int64_t now = ak_now_ns();
    c->rate_tokens += (double)c->opts.max_rate * (double)(now - c->rate_at) / 1e9;
    if (c->rate_tokens > (double)c->opts.max_rate)
      c->rate_tokens = (double)c->opts.max_rate;
    c->rate_at = now;
    if (c->rate_tokens < 0) {
      int64_t wait = (int64_t)(-c->rate_tokens / (double)c->opts.max_rate * 1e9) + 1;
      ex->state = EX_THROTTLED;
      ex->throttle = ak_call_later(c->loop, wait, throttle_over, ex);
      if (ex->throttle)
        return;
    }
  }
  recv_now(ex);
}

/* ---- 5. Body writes ----------------------------------------------------------------------- */
/* Into a regular file, the body is written on the loop thread as soon as a
 * receive's worth is in (write_inline): a buffered write to the page cache
 * is a copy, and handing it to an io-wq worker cost a thread wakeup per
 * write and the copy's source out of this CPU's cache (2 GiB over one
 * connection: perf showed a third of the time in wakeups, and the same
 * transfer as recv + pwrite on one thread took about 0.85 s against 1.5 s).
 * A write that finds the filesystem able to say "would block"
 * (RWF_NOWAIT: xfs, btrfs) and hears it, or one that took longer than
 * INLINE_SLOW_NS (ext4 cannot say it: a disk stall shows only as time),
 * goes through io-wq instead, as does every write to anything but a
 * regular file (a pipe whose reader stops would stop the loop).
 *
 * Each inline call writes at most WRITE_CALL_MAX (256 KiB), cut at
 * multiples of it in the file. ext4 (6.16 on) sizes a buffered write's
 * page-cache folios by the call's length: 2 GiB written in 512 KiB calls
 * took 0.23-1.5 s (the copy into the new folios slow in most runs, on these
 * VMs), in 256 KiB calls 0.24-0.26 s in every run (a throwaway program,
 * alternated, the file truncated between runs; 1 MiB calls 0.24-1.1 s).
 *
 * Through io-wq a receive and a body write run at once: the write takes
 * every span received while the one before it ran (one write per run of
 * receives, not one per receive: each is an io-wq wakeup), and the next
 * receive lands in the ring's free part meanwhile. Writes go out in body
 * order, WRITES at most in flight. */

static void on_written(ak_future *f, void *arg);

/* The last filesystem (st_dev) that refused RWF_NOWAIT on a buffered
 * write: its files go straight to plain pwritev, saving a refused call per
 * body (10,000 files of 16 KiB: 10,000 calls). Any thread may read or set
 * it; a stale value costs one refused call. */
static dev_t nowait_refused_dev = (dev_t)-1;

/* Drops the first n bytes of the waiting spans (written inline). */
static void consume_spans(ak__http_exchange *ex, size_t n)
{
  unsigned i = 0;
  while (i < ex->niov && n >= ex->iov[i].iov_len)
    n -= ex->iov[i++].iov_len;
  if (i < ex->niov) {
    ex->iov[i].iov_base = (char *)ex->iov[i].iov_base + n;
    ex->iov[i].iov_len -= n;
  }
  memmove(ex->iov, ex->iov + i, (ex->niov - i) * sizeof *ex->iov);
  ex->niov -= i;
}

/* Writes the waiting spans on the loop thread (section comment). What
 * was written counts as progress at once (it is in the file). Returns
 * whether what is left, if anything, stays for a later inline write; false
 * hands it to io-wq (the filesystem said it would block, or a write was
 * slow). A failed write records the error and stops further writes. */
static bool write_inline(ak__http_exchange *ex)
{
  while (ex->niov > 0 && ex->inline_writes != INLINE_OFF) {
    off_t off = (off_t)(ex->fd_base + ex->write_pos);
    /* Up to the next WRITE_CALL_MAX boundary of the file (IOV_MAX spans at
     * most); the last span is cut for the call and restored after it. */
    size_t max = WRITE_CALL_MAX - (size_t)off % WRITE_CALL_MAX, bytes = 0, whole = 0;
    unsigned n = 0;
    while (n < ex->niov && n < 1024 && bytes < max)
      bytes += ex->iov[n++].iov_len;
    if (bytes > max) {
      whole = ex->iov[n - 1].iov_len;
      ex->iov[n - 1].iov_len -= bytes - max;
    }
    bool nowait = ex->inline_writes == INLINE_NOWAIT;
    int64_t t0 = ak_now_ns();
    ssize_t w = nowait ? pwritev2(ex->fd, ex->iov, (int)n, off, RWF_NOWAIT)
                       : pwritev(ex->fd, ex->iov, (int)n, off);
    int err = w < 0 ? errno : 0;
    if (whole)
      ex->iov[n - 1].iov_len = whole;
    if (nowait && (err == EOPNOTSUPP || err == EINVAL)) {
      ex->inline_writes = INLINE_PLAIN; /* ext4, or a kernel without it */
      __atomic_store_n(&nowait_refused_dev, ex->sink_dev, __ATOMIC_RELAXED);
      continue;
    }
    if (nowait && err == EAGAIN)
      return false;
    if (!nowait && ak_now_ns() - t0 > INLINE_SLOW_NS)
      ex->inline_writes = INLINE_OFF;
    if (err == EINTR)
      continue;
    if (w <= 0) {
      ex->write_failed = true;
      set_error(ex, w == 0 ? -EIO : -err, "writing the body to the file");
      return false;
    }
    consume_spans(ex, (size_t)w);
    ex->write_pos += w;
    ex->write_len -= (size_t)w;
    add_progress(ex, (size_t)w);
  }
  return ex->inline_writes != INLINE_OFF;
}

/* The waiting spans become a write through io-wq (wb[nw]). Returns false
 * if it could not be sent (the error is recorded). */
static bool queue_write(ak__http_exchange *ex)
{
  wbatch *b = &ex->wb[ex->nw];
  struct iovec *t = b->iov; /* the waiting spans become the write's */
  unsigned tcap = b->cap;
  b->iov = ex->iov;
  b->cap = ex->iov_cap;
  b->n = ex->niov;
  b->len = ex->write_len;
  b->done = 0;
  b->off = ex->write_pos;
  ex->iov = t;
  ex->iov_cap = tcap;
  ex->niov = 0;
  ex->write_pos += (int64_t)ex->write_len;
  ex->write_len = 0;
  ex->nw++;
  submit_writes(ex, b);
  if (!b->f) {
    ex->nw--;
    return false;
  }
  return true;
}

/* The exchange is ending with spans held back for an inline write (an
 * error or a cancel came before the next receive's worth): they go to the
 * file first, as every body byte received before an error does (a resume
 * counts on them), inline where the sink allows it, else through io-wq
 * (stop then waits for that write). */
static void flush_held(ak__http_exchange *ex)
{
  if (ex->inline_writes != INLINE_OFF && ex->inline_writes != INLINE_UNKNOWN)
    write_inline(ex);
  if (ex->niov > 0 && !ex->write_failed)
    queue_write(ex);
}

/* After any op: the next write, the next receive, or the end. */
static void advance(ak__http_exchange *ex)
{
  /* Inline only behind every write in flight (progress counts bytes in
   * body order), and once INLINE_GATHER receives' worth is in (or the
   * body is). */
  bool held = false; /* the waiting spans stay for an inline write */
  if (ex->nw == 0 && ex->niov > 0 && !ex->decoder && !ex->write_failed && !ex->err) {
    if (ex->inline_writes == INLINE_UNKNOWN) {
      struct stat st;
      bool regular = fstat(ex->fd, &st) == 0 && S_ISREG(st.st_mode);
      ex->inline_writes = !regular                                  ? INLINE_OFF
                          : st.st_dev == __atomic_load_n(&nowait_refused_dev, __ATOMIC_RELAXED)
                              ? INLINE_PLAIN
                              : INLINE_NOWAIT;
      ex->sink_dev = st.st_dev;
      ex->sink_stream = !regular;
    }
    if (ex->inline_writes != INLINE_OFF)
      held = ex->write_len < INLINE_GATHER * ex->client->opts.recv_buffer && !ex->rx_ended ? true
                                                                           : write_inline(ex);
  }
  while (!held && ex->nw < (ex->sink_stream ? 1u : WRITES) && ex->niov > 0 && !ex->decoder && !ex->write_failed &&
         (ex->nw == 0 || ex->write_len >= ex->client->opts.recv_buffer || ex->rx_ended)) {
    if (!queue_write(ex))
      break;
  }
  if (ex->err) {
    stop(ex);
    return;
  }
  if (ex->pending || ex->throttle)
    return; /* a receive (or a decoded write) in flight, or a rate wait */
  if (!ex->rx_ended) {
    post_recv(ex);
    return;
  }
  if (ex->nw) {
    ex->state = EX_WRITING;
    return;
  }
  message_complete(ex);
}

/* Sends the write's spans not yet written (all, or the rest after a short
 * write). On failure the error is recorded (advance ends the exchange). */
static void submit_writes(ak__http_exchange *ex, wbatch *b)
{
  size_t skip = b->done;
  unsigned i = 0;
  while (i < b->n && skip >= b->iov[i].iov_len)
    skip -= b->iov[i++].iov_len;
  struct iovec first = b->iov[i];
  b->iov[i].iov_base = (char *)b->iov[i].iov_base + skip;
  b->iov[i].iov_len -= skip;
  int64_t off = ex->fd_base + b->off + (int64_t)b->done;
  /* writev takes IOV_MAX (1024) spans at most: the rest goes as after a
   * short write. */
  unsigned n = b->n - i < 1024 ? b->n - i : 1024;
  ak_future *w;
  if (n == 1 && ex->conn->buf_slot >= 0) {
    /* One span, in the registered receive buffer: a WRITE_FIXED, whose
     * copy into the page cache reads pinned pages (no fault-in pass, no
     * user-copy) on the io-wq worker. */
    ak_rw_opts o = AK_RW_OPTS_INIT;
    o.buf_index = ex->conn->buf_slot;
    w = ak_write_opt(ex->client->loop, ex->fd, b->iov[i].iov_base, b->iov[i].iov_len, off, &o);
  } else {
    w = ak_writev(ex->client->loop, ex->fd, b->iov + i, n, off, NULL);
  }
  b->iov[i] = first; /* ak_writev copied the array */
  b->f = NULL;
  if (!w || ak_future_on_settle(w, on_written, ex) < 0) {
    if (w) {
      ak_future_cancel(w);
      ak_future_release(w);
    }
    set_error(ex, -ENOMEM, "out of memory");
    return;
  }
  b->f = w;
}

/* The oldest write is done: it leaves the array, and so does each later
 * one already done (its bytes count only now: progress never counts bytes
 * past one not yet written). */
static void drop_written(ak__http_exchange *ex)
{
  do {
    wbatch done = ex->wb[0];
    for (unsigned k = 1; k < ex->nw; k++)
      ex->wb[k - 1] = ex->wb[k];
    ex->wb[--ex->nw] = done; /* its iovec array is kept for reuse */
    if (ex->nw)
      add_progress(ex, ex->wb[0].done); /* the new oldest: what it has written so far */
  } while (ex->nw && !ex->wb[0].f && ex->wb[0].done == ex->wb[0].len);
}

static void on_written(ak_future *f, void *arg)
{
  ak__http_exchange *ex = arg;
  unsigned k = 0;
  while (k + 1 < ex->nw && ex->wb[k].f != f)
    k++;
  wbatch *b = &ex->wb[k];
  b->f = NULL;
  int64_t res = ak_future_result(f);
  ak_future_release(f);
  if (res <= 0) {
    ex->write_failed = true;
    set_error(ex, res == 0 ? -EIO : (int)res, "writing the body to the file");
  } else {
    b->done += (size_t)res;
    if (k == 0)
      add_progress(ex, (size_t)res);
    if (b->done < b->len && !ex->write_failed) {
      submit_writes(ex, b);
      if (b->f)
        return;
      ex->write_failed = true;
    }
  }
  if (ex->write_failed) {
    /* No more writes: the exchange ends when the last one in flight has. */
    bool busy = false;
    for (unsigned i = 0; i < ex->nw; i++)
      busy |= ex->wb[i].f != NULL;
    if (!busy)
      ex->nw = 0;
    stop(ex);
    return;
  }
  if (k == 0)
    drop_written(ex);
  advance(ex);
}

/* With a decoder (AK_HTTP_DECODE): the spans are inflated into dbuf; each
 * time it fills (and once at the end of the spans) it is written at the
 * decoded offset, and decoding goes on from where it stopped when the write
 * is done. The spans stay in the receive buffer until then: the next
 * receive is posted only after the last write. */
static void on_decoded_written(ak_future *f, void *arg);

static void write_decoded(ak__http_exchange *ex)
{
  ex->state = EX_WRITING;
  int64_t off = ex->fd_base + ex->write_pos + (int64_t)ex->dwritten;
  await(ex, ak_write(ex->client->loop, ex->fd, ex->dbuf + ex->dwritten, ex->dfill - ex->dwritten, off),
        on_decoded_written);
}

static void decode_more(ak__http_exchange *ex)
{
  size_t cap = ex->client->opts.recv_buffer;
  while (ex->dec_i < ex->niov && ex->dfill < cap) {
    const struct iovec *v = &ex->iov[ex->dec_i];
    size_t used = 0;
    int64_t made = ak__http_decoder_run(ex->decoder, (const char *)v->iov_base + ex->dec_off,
                                        v->iov_len - ex->dec_off, &used, ex->dbuf + ex->dfill,
                                        cap - ex->dfill, ex->parser.detail,
                                        sizeof ex->parser.detail);
    int rc = made < 0 ? (int)made : count_decoded(ex, &ex->parser, (size_t)made);
    if (rc < 0) {
      set_error(ex, rc, ex->parser.detail);
      stop(ex);
      return;
    }
    ex->dfill += (size_t)made;
    ex->dec_off += used;
    if (ex->dec_off == v->iov_len) {
      ex->dec_i++;
      ex->dec_off = 0;
    } else if (made == 0 && used == 0) {
      break; /* cannot happen: with room out, zlib takes input or fails */
    }
  }
  if (ex->dfill > 0) {
    ex->dwritten = 0;
    write_decoded(ex);
    return;
  }
  ex->niov = 0; /* every span decoded and written */
  ex->write_len = 0;
  advance(ex);
}

static void start_decode(ak__http_exchange *ex)
{
  ex->dec_i = 0;
  ex->dec_off = 0;
  ex->dfill = 0;
  decode_more(ex);
}

static void on_decoded_written(ak_future *f, void *arg)
{
  ak__http_exchange *ex = arg;
  int64_t res = op_done(ex, f);
  if (res <= 0) {
    set_error(ex, res == 0 ? -EIO : (int)res, "writing the decoded body to the file");
    stop(ex);
    return;
  }
  ex->dwritten += (size_t)res;
  add_progress(ex, (size_t)res);
  if (ex->dwritten < ex->dfill) {
    write_decoded(ex);
    return;
  }
  ex->write_pos += (int64_t)ex->dfill;
  ex->dfill = 0;
  decode_more(ex);
}

/* ---- 6. Ending ------------------------------------------------------------------------------ */

/* "scheme host port": what credentials are bound to (curl's rule). */
static char *origin_of(const ak_url *u)
{
  size_t n = strlen(u->scheme) + strlen(u->host) + 16;
  char *o = ak__malloc(n);
  if (o) {
    char *e = ak__put(o, u->scheme);
    *e++ = ' ';
    e = ak__put(e, u->host);
    *e++ = ' ';
    *ak__put_u64(e, u->port) = '\0';
  }
  return o;
}

/* Credentials go along a redirect only to the same scheme, host and port,
 * unless AK_HTTP_LOCATION_TRUSTED; a Location with user information of its
 * own brings that. */
static int redirect_credentials(ak__http_exchange *ex, const ak_url *next)
{
  /* The request's origin, made at its first redirect (ex->url is still
   * the request's own then): most requests are never redirected. */
  if (!ex->origin && !(ex->origin = origin_of(ex->url)))
    return -ENOMEM;
  char *o = origin_of(next);
  if (!o)
    return -ENOMEM;
  bool same = strcmp(o, ex->origin) == 0;
  ak__free(o);
  if (!same && !(ex->flags & AK_HTTP_LOCATION_TRUSTED)) {
    ak__free(ex->auth);
    ex->auth = NULL;
    ak__http_drop_credential_headers(ex->extra);
    if (ex->extra)
      ex->extra_len = strlen(ex->extra); /* shorter by the lines dropped */
  }
  if (next->user) {
    char *line = ak__http_basic_line("Authorization", next->user, next->password);
    if (!line)
      return -ENOMEM;
    ak__free(ex->auth);
    ex->auth = line;
  }
  return 0;
}

static void follow_redirect(ak__http_exchange *ex)
{
  const char *loc = ak_http_response_header(ex->parser.resp, "location");
  if (++ex->redirects > (unsigned)ex->client->opts.max_redirects) {
    char d[64];
    snprintf(d, sizeof d, "more than %d redirects", ex->client->opts.max_redirects);
    set_error(ex, AK_EHTTPREDIRECTS, d);
    stop(ex);
    return;
  }
  ak_url *next = NULL;
  int rc = ak_url_resolve(ex->url, loc, &next);
  if (rc == 0 && strcmp(next->scheme, "https") == 0 && !ak__http_tls_available())
    rc = AK_EHTTPSNOTSUP;
  if (rc < 0) {
    ak_url_free(next);
    char d[200];
    snprintf(d, sizeof d, "redirect to %.150s", loc);
    set_error(ex, rc, d);
    stop(ex);
    return;
  }
  rc = redirect_credentials(ex, next);
  if (rc < 0) {
    ak_url_free(next);
    set_error(ex, rc, "out of memory");
    finish(ex);
    return;
  }
  ak__http_conn *conn = ex->conn;
  ex->conn = NULL;
  bool keep = ak__http_parser_keep_alive(&ex->parser) && !ex->leftover && !ex->send_broken;
  if (ex->pipe_next) {
    /* The redirect is followed alone; the connection goes on to the
     * member behind. */
    ak__http_exchange *behind = ex->pipe_next;
    ex->pipe_next = NULL;
    behind->pipe_prev = NULL;
    ex->piped = false;
    pipe_hand_on(behind, conn, keep, 0, 0);
  } else {
    ex->piped = false;
    ak__http_conn_release(conn, keep);
  }
  if (ex->host && ex->host->pipe_tail == ex)
    ex->host->pipe_tail = NULL; /* it was the last: nothing left to join */
  url_drop(ex, ex->url);
  ex->url = next;
  ex->host = NULL; /* the new URL's route is found by acquire */
  ak__http_parser_free(&ex->parser);
  ex->parser_live = false;
  ex->req = NULL; /* made again for the new URL, in req_buf */
  ex->retried = false;
  acquire(ex, true);
}

static void message_complete(ak__http_exchange *ex)
{
  if (ex->redirect) {
    follow_redirect(ex);
    return;
  }
  if (ex->decoder && !ak__http_decoder_ended(ex->decoder))
    set_error(ex, AK_EHTTPDECODE, "the compressed body ends before its stream does (truncated)");
  finish(ex);
}

static void finish(ak__http_exchange *ex)
{
  ak_http_client *c = ex->client;
  /* A member ends with one ahead of it only before its request went out
   * (abort_exchange, pipe_wire): the one ahead still has the stream. */
  assert(!ex->pipe_prev || (ex->state == EX_PIPED && !ex->pipe_sent));
  ex->state = EX_ENDED;
  if (ex->timer) {
    ak_timer_cancel(c->loop, ex->timer);
    ex->timer = NULL;
  }
  /* A pipeline member: the connection, and the members behind, go on
   * after this one has settled (section 9). */
  ak__http_exchange *next = ex->pipe_next;
  ak__http_conn *pass = NULL;
  bool pass_keep = false;
  unsigned dry = ex->got_bytes ? 0 : ex->pipe_dry; /* an answer came: not a dry connection */
  int pass_err = 0;
  /* The newest pipeline's last member ends: the one ahead (a cancel before
   * its request went out) is the last now, or, answered, the pipeline has
   * nothing left to join. */
  if (ex->host && ex->host->pipe_tail == ex)
    ex->host->pipe_tail = ex->pipe_prev;
  if (ex->piped) {
    if (ex->pipe_prev) {
      /* Taken out of its pipeline before its request went out (a cancel):
       * the members around it close up. */
      ex->pipe_prev->pipe_next = next;
      if (next)
        next->pipe_prev = ex->pipe_prev;
      next = NULL;
    } else if (next) {
      next->pipe_prev = NULL;
      pass = ex->conn;
      pass_keep = pass && !ex->err && ex->parser_live && ak__http_parser_keep_alive(&ex->parser) &&
                  !ex->leftover && !ex->send_broken;
      ex->conn = NULL;
      if (ex->pipe_dry > PIPE_DRY_MAX) /* pipe_retry gave up: no answer will come */
        pass_err = ex->err;
    }
    ex->pipe_next = NULL;
    ex->piped = false;
  }
  if (ex->conn) {
    bool keep = !ex->err && ex->parser_live && ak__http_parser_keep_alive(&ex->parser) &&
                !ex->leftover && !ex->send_broken;
    ak__http_conn *conn = ex->conn;
    ex->conn = NULL;
    ak__http_conn_release(conn, keep);
  }
  ak_future *fut = ex->fut;
  fut->data = NULL;
  if (ex->err) {
    ak_future_fail(fut, ex->err, ex->detail);
  } else {
    ak_http_response *r = ak__http_parser_take(&ex->parser);
    ak__http_response_set_url(r, ex->url->text); /* NULL on ENOMEM, as before */
    r->redirects = ex->redirects;
    r->reused = ex->conn_reused;
    r->decoded_bytes = r->decoded ? ex->decoded : r->body_bytes;
    if (ex->membody && ak__http_membody_give(ex->membody, r) < 0) {
      ak__http_response_free(r);
      ak_future_fail(fut, -ENOMEM, "out of memory");
    } else {
      ak__http_settle_response(fut, r, ex->flags);
    }
  }
  if (ex->parser_live)
    ak__http_parser_free(&ex->parser);
  c->active--;
  if (c->active == 0)
    ak__http_sweep_stop(c); /* the loop may go idle: no timer keeps it */
  ak_loop_unhold(c->loop);
  url_drop(ex, ex->url);
  ak__free(ex->auth);
  ak__free(ex->origin);
  ak__free(ex->iov);
  for (unsigned i = 0; i < WRITES; i++)
    ak__free(ex->wb[i].iov);
  ak__http_decoder_free(ex->decoder);
  ak__free(ex->dbuf);
  ak__http_membody_free(ex->membody);
  ak__free(ex->wire);
  record_put(c, ex);
  ak_future_release(fut);
  if (next)
    pipe_hand_on(next, pass, pass_keep, dry, pass_err);
}

/* Stops the exchange with err: the op in flight is cancelled and its
 * callback ends it; a queued exchange ends at once. */
static void abort_exchange(ak__http_exchange *ex, int err, const char *detail)
{
  if (ex->state == EX_ENDED)
    return;
  set_error(ex, err, detail);
  if (ex->throttle) {
    ak_timer_cancel(ex->client->loop, ex->throttle);
    ex->throttle = NULL;
  }
  if (ex->state == EX_WAITING) {
    remove_waiter(ex);
    finish(ex);
    return;
  }
  if (ex->state == EX_PIPED) {
    /* Behind another member: one whose request has not gone out leaves
     * now; one whose request is on the wire ends at its turn, as its
     * response must still be read off the stream (section 9). */
    if (!ex->pipe_sent && ex->pipe_prev)
      finish(ex);
    return;
  }
  stop(ex);
}

/* Ends the exchange once no op is in flight: cancels the one that is (its
 * callback comes back here), or finishes now. A body write is not
 * cancelled: the body bytes received before the error still go to the
 * file (advance), as a resume counts on what is there. */
static void stop(ak__http_exchange *ex)
{
  if (ex->pending) {
    ak_future_cancel(ex->pending);
    return;
  }
  if (!ex->nw && ex->niov > 0 && !ex->decoder && !ex->write_failed)
    flush_held(ex); /* spans held for an inline write (section 5) */
  if (!ex->nw)
    finish(ex);
}

/* ---- 7. Deadlines ---------------------------------------------------------------------------
 * One timer per exchange, armed for the earliest deadline that applies; when
 * it fires it checks them all against the clock and re-arms for the next.
 * The idle deadline moves with every receive, which costs a store, not a
 * timer: the timer finds it has moved and sleeps again. */

static bool is_talking(const ak__http_exchange *ex)
{
  return ex->state == EX_SENDING || ex->state == EX_RECEIVING;
}

/* When a receive in flight waits for more than one byte (section 4), the
 * time to look for bytes under the mark: RCVLOWAT_WAIT_NS after the last
 * receive, or the idle deadline if that is sooner; else INT64_MAX. */
static int64_t rcvlowat_look_at(const ak__http_exchange *ex)
{
  if (ex->state != EX_RECEIVING || !ex->conn || ex->conn->rcvlowat <= 1)
    return INT64_MAX;
  int64_t wait = ex->client->opts.idle_timeout_ns;
  if (wait == AK_FOREVER || wait > RCVLOWAT_WAIT_NS)
    wait = RCVLOWAT_WAIT_NS;
  return ex->last_rx + wait;
}

static int64_t next_deadline(const ak__http_exchange *ex)
{
  const ak__http_opts *o = &ex->client->opts;
  int64_t next = ex->total_deadline;
  if (is_talking(ex)) {
    if (!(ex->parser_live && ex->parser.head_done) && ex->head_deadline < next)
      next = ex->head_deadline;
    if (o->idle_timeout_ns != AK_FOREVER && ex->last_rx + o->idle_timeout_ns < next)
      next = ex->last_rx + o->idle_timeout_ns;
    if (rcvlowat_look_at(ex) < next)
      next = rcvlowat_look_at(ex);
  }
  return next;
}

static void on_deadline(void *arg)
{
  ak__http_exchange *ex = arg;
  ex->timer = NULL;
  int64_t now = ak_now_ns();
  const ak__http_opts *o = &ex->client->opts;
  char d[96];
  if (now >= ex->total_deadline) {
    snprintf(d, sizeof d, "not complete within --max-time (%.3f s)", o->total_timeout_ns / 1e9);
    abort_exchange(ex, AK_EHTTPTOTALTIMEOUT, d);
    return;
  }
  if (is_talking(ex)) {
    if (now >= rcvlowat_look_at(ex) && rcvlowat_flush(ex, now)) {
      arm_timer(ex);
      return;
    }
    if (!(ex->parser_live && ex->parser.head_done) && now >= ex->head_deadline) {
      snprintf(d, sizeof d, "response head not complete within %.3f s", o->head_timeout_ns / 1e9);
      abort_exchange(ex, AK_EHTTPHEADTIMEOUT, d);
      return;
    }
    if (o->idle_timeout_ns != AK_FOREVER && now >= ex->last_rx + o->idle_timeout_ns) {
      snprintf(d, sizeof d, "nothing received for %.3f s", o->idle_timeout_ns / 1e9);
      abort_exchange(ex, AK_EHTTPIDLETIMEOUT, d);
      return;
    }
  }
  arm_timer(ex);
}

/* Arms the timer for the next deadline if it would fire later than that. */
static void arm_timer(ak__http_exchange *ex)
{
  int64_t next = next_deadline(ex);
  if (next == INT64_MAX)
    return;
  if (ex->timer && ex->timer_at <= next)
    return;
  if (ex->timer)
    ak_timer_cancel(ex->client->loop, ex->timer);
  int64_t now = ak_now_ns();
  ex->timer = ak_call_later(ex->client->loop, next > now ? next - now : 0, on_deadline, ex);
  ex->timer_at = next;
}

/* ---- 8. Start and cancel ----------------------------------------------------------------------- */

static void cancel_on_loop(ak_future *fut)
{
  ak__http_exchange *ex = fut->data;
  if (ex)
    abort_exchange(ex, -ECANCELED, "cancelled");
}

static void cancel_posted(void *arg)
{
  ak_future *fut = arg;
  cancel_on_loop(fut);
  ak_future_release(fut);
}

static void exchange_cancel(ak_future *fut)
{
  if (ak_loop_is_owner(fut->loop)) {
    cancel_on_loop(fut);
    return;
  }
  ak_future_ref(fut);
  if (ak_loop_post(fut->loop, cancel_posted, fut) < 0)
    ak_future_release(fut); /* ENOMEM: the request runs to its end */
}

static const ak__future_kind exchange_kind = {
    .name = "http_get", .cancel = exchange_cancel, .free_data = NULL};

/* The user's header lines joined; -EINVAL for a line with CR or LF or no
 * colon (header injection), -ENOMEM. */
static int join_headers(ak__http_exchange *ex, const ak_http_request *req)
{
  /* The lines' lengths, kept for the copy below (most requests have a
   * few lines; more are measured again). */
  enum { LENS = 8 };
  size_t lens[LENS];
  size_t n = 1;
  for (size_t i = 0; i < req->header_count; i++) {
    const char *h = req->headers[i];
    if (!h || h[0] == ':')
      return -EINVAL;
    /* The length up to a CR or LF (none allowed) gives the line's length
     * too, and the colon is looked for inside it: two scans of the line
     * where there were three (every request of akget -N carries its
     * If-Modified-Since this way). */
    size_t len = strcspn(h, "\r\n");
    if (h[len] || !memchr(h, ':', len))
      return -EINVAL;
    if (i < LENS)
      lens[i] = len;
    n += len + 2;
    /* The names the client would send itself; most lines' first letter
     * rules them out before a strncasecmp. */
    char first = (char)(h[0] | 0x20);
    if (first == 'u' && strncasecmp(h, "user-agent:", 11) == 0)
      ex->user_agent_given = true;
    if (first == 'a' && strncasecmp(h, "accept-encoding:", 16) == 0)
      ex->accept_encoding_given = true;
    if (first == 'a' && strncasecmp(h, "authorization:", 14) == 0)
      ex->authorization_given = true;
  }
  if (req->header_count == 0)
    return 0;
  if (kept_buf_reserve(&ex->extra_buf, &ex->extra_cap, n) < 0)
    return -ENOMEM;
  ex->extra = ex->extra_buf;
  char *o = ex->extra;
  for (size_t i = 0; i < req->header_count; i++) {
    size_t l = i < LENS ? lens[i] : strlen(req->headers[i]);
    memcpy(o, req->headers[i], l);
    o += l;
    *o++ = '\r';
    *o++ = '\n';
  }
  *o = '\0';
  ex->extra_len = (size_t)(o - ex->extra);
  return 0;
}

/* The request's own credentials: userpwd, else the URL's user
 * information (the origin they belong to is made at the first redirect,
 * redirect_credentials). -EINVAL for a userpwd with CR or
 * LF, -ENOMEM. */
static int start_credentials(ak__http_exchange *ex, const ak_http_request *req)
{
  if (req->userpwd) {
    if (strpbrk(req->userpwd, "\r\n"))
      return -EINVAL;
    ex->auth = ak__http_basic_line_userpwd("Authorization", req->userpwd);
  } else if (ex->url->user) {
    ex->auth = ak__http_basic_line("Authorization", ex->url->user, ex->url->password);
  } else {
    return 0;
  }
  return ex->auth ? 0 : -ENOMEM;
}

/* A cleared record: a spare one of c's, or a new one. NULL on ENOMEM. */
static ak__http_exchange *record_get(ak_http_client *c)
{
  ak__http_exchange *ex = c->spare_ex;
  if (!ex)
    return ak__calloc(1, sizeof *ex);
  c->spare_ex = ex->next_wait;
  c->spare_count--;
  memset(ex, 0, offsetof(ak__http_exchange, parser));
  ex->detail[0] = '\0';
  return ex;
}

/* ex is done with (what it owned besides its kept buffers is freed):
 * kept for c's next exchange, or freed when c keeps enough. */
static void record_put(ak_http_client *c, ak__http_exchange *ex)
{
  /* A request with long header lines leaves long buffers: not kept, or
   * SPARE_MAX records could hold megabytes for the client's life. */
  kept_buf_trim(&ex->req_buf, &ex->req_cap);
  kept_buf_trim(&ex->extra_buf, &ex->extra_cap);
  kept_buf_trim(&ex->url_buf, &ex->url_cap);
  if (c->spare_count < SPARE_MAX) {
    ex->next_wait = c->spare_ex;
    c->spare_ex = ex;
    c->spare_count++;
    return;
  }
  ak__free(ex->req_buf);
  ak__free(ex->extra_buf);
  ak__free(ex->url_buf);
  ak__free(ex);
}

void ak__http_spares_free(ak_http_client *c)
{
  while (c->spare_ex) {
    ak__http_exchange *ex = c->spare_ex;
    c->spare_ex = ex->next_wait;
    ak__free(ex->req_buf);
    ak__free(ex->extra_buf);
    ak__free(ex->url_buf);
    ak__free(ex);
  }
  c->spare_count = 0;
}

/* A new exchange for req, counted active, its future's reference in
 * *out; nothing sent yet (the caller arms its timer and acquires). NULL
 * with *out a failed future (a bad request) or NULL (out of memory). */
static ak__http_exchange *exchange_new(ak_http_client *c, const ak_http_request *req,
                                       ak_future **out)
{
  *out = NULL;
  ak__http_exchange *ex = record_get(c);
  if (!ex)
    return NULL;
  /* The URL is parsed into the record's kept buffer (the list reader of
   * akget has parsed it once already; this parse then allocates nothing). */
  ak_url *url = NULL;
  int rc = req && req->url ? ak__url_parse_kept(req->url, &ex->url_buf, &ex->url_cap, &url)
                           : -EINVAL;
  if (rc == 0 && url->scheme[4] == 's' /* "https", not "http" */ && !ak__http_tls_available())
    rc = AK_EHTTPSNOTSUP;
  if (rc < 0) {
    url_drop(ex, url);
    record_put(c, ex);
    char d[200];
    snprintf(d, sizeof d, "%.190s", req && req->url ? req->url : "(no URL)");
    *out = ak__future_failed(c->loop, rc, d);
    return NULL;
  }
  ex->client = c;
  ex->url = url;
  ex->flags = req->flags;
  ex->range_start = req->range_start;
  ex->range_end = req->range_start >= 0 ? req->range_end : -1;
  ex->fd = req->fd;
  ex->fd_base = req->fd_base;
  ex->on_body = req->on_body;
  ex->arg = req->arg;
  ex->progress = req->progress;
  ex->size_out = req->size_out;
  rc = join_headers(ex, req);
  if (rc == 0)
    rc = start_credentials(ex, req);
  if (rc == 0 && (ex->flags & AK_HTTP_BODY_MEMORY)) {
    /* The body in memory: the sink takes on_body's place. */
    rc = ak__http_membody_new(req, &ex->parser, &ex->membody);
    ex->on_body = ak__http_membody_sink;
    ex->arg = ex->membody;
  }
  if (rc < 0 || (ex->range_end >= 0 && ex->range_end < ex->range_start) ||
      ((ex->flags & AK_HTTP_DECODE) && ex->range_start >= 0)) {
    url_drop(ex, url);
    ak__free(ex->auth);
    ak__free(ex->origin);
    ak__http_membody_free(ex->membody);
    record_put(c, ex);
    *out = ak__future_failed(c->loop, rc < 0 ? rc : -EINVAL,
                             "bad header line or range, or a second body sink");
    return NULL;
  }
  ex->fut = ak__future_new(c->loop, &exchange_kind, ex);
  if (!ex->fut) {
    url_drop(ex, url);
    ak__free(ex->auth);
    ak__free(ex->origin);
    ak__http_membody_free(ex->membody);
    record_put(c, ex);
    return NULL;
  }
  *out = ak_future_ref(ex->fut);
  c->active++;
  ak_loop_hold(c->loop);
  ak__http_sweep_arm(c); /* idle connections kept while the client was quiet */
  ex->total_deadline = c->opts.total_timeout_ns == AK_FOREVER
                           ? INT64_MAX
                           : ak_now_ns() + c->opts.total_timeout_ns;
  return ex;
}

ak_future *ak__http_exchange_start(ak_http_client *c, const ak_http_request *req)
{
  ak_future *ret;
  ak__http_exchange *ex = exchange_new(c, req, &ret);
  if (!ex)
    return ret;
  arm_timer(ex);
  acquire(ex, true);
  return ret;
}

/* ---- 9. Pipelined HEADs ---------------------------------------------------------------------
 * Up to AK_HTTP_PIPELINE_MAX HEADs to one origin (plain http, no proxy) are
 * linked in request order (pipe_prev, pipe_next). The first acquires a
 * connection as any exchange does and writes every member's request in one
 * send (pipe_wire); the others wait in EX_PIPED. Each response is parsed by
 * its own member, in order: when one ends, the bytes received past it (the
 * connection's carry) go to the member behind, which takes the connection
 * (pipe_turn) and reads on. So a response can only be the one of the
 * request at its place in the stream, and nothing is guessed:
 *
 * - bytes after a HEAD's response that do not start as a status line (a
 *   body, which HEAD must not have) fail that member with AK_EHTTPPROTO;
 *   bytes a member receives first that do not (a body that came late)
 *   are not its response: it and those behind go to a new connection.
 *   Bytes past a response that are a prefix of "HTTP/" only (the carry
 *   "HT") are judged with the bytes after them: a response has begun
 *   (got_bytes) once its first five are "HTTP/" (pipe_prefix), and a
 *   body that began so goes to a new connection as any late body;
 * - when the connection closes, resets or fails a send before a member's
 *   first byte, that member and those behind are sent again on another
 *   connection, not failed (pipe_retry); a member whose response was cut
 *   fails as any exchange does and the rest go on another connection.
 *   Only new connections that close before any member has an answer
 *   count, PIPE_DRY_MAX in a row, after which the members fail with the
 *   error that closed the last;
 * - a member cancelled (or past its total deadline) before its request
 *   went out leaves at once; after, it ends at its turn and the connection
 *   is closed behind it (its response may still come), the rest going to
 *   another;
 * - a redirect is followed by its member alone, the connection going on
 *   to the member behind;
 * - a response that closes the connection (Connection: close) sends the
 *   members behind to another. */

/* Whether data (len bytes) can go on a stream that began with the first
 * at bytes of "HTTP/": the next status line, as far as they go. */
static bool continues_status(size_t at, const char *data, size_t len)
{
  size_t n = STATUS_PREFIX_LEN - at;
  return memcmp(data, status_prefix + at, len < n ? len : n) == 0;
}

static bool looks_like_status(const char *data, size_t len)
{
  return continues_status(0, data, len);
}

/* The requests of ex and of the members behind it that have not gone out,
 * in order, as one buffer (ex->wire), each marked sent; a member that ended
 * before its request went out (a cancel) is dropped. Those not sent are
 * always the last ones: a pipeline's head sends every member's, and the
 * members that join later come after them. Returns 1, 0 (nothing to send)
 * or -ENOMEM. */
static int pipe_wire(ak__http_exchange *ex)
{
  size_t total = 1;
  bool any = false;
  for (ak__http_exchange *m = ex, *after; m; m = after) {
    after = m->pipe_next;
    if (m->pipe_sent)
      continue;
    if (m != ex && m->err) {
      finish(m); /* out of the pipeline, settled with its error */
      continue;
    }
    if (!m->req && build_request(m) < 0)
      return -ENOMEM;
    total += m->req_len;
    any = true;
  }
  if (!any)
    return 0;
  ak__free(ex->wire);
  if (!(ex->wire = ak__malloc(total)))
    return -ENOMEM;
  char *o = ex->wire;
  for (ak__http_exchange *m = ex; m; m = m->pipe_next) {
    if (m->pipe_sent)
      continue;
    memcpy(o, m->req, m->req_len);
    o += m->req_len;
    m->pipe_sent = true;
  }
  *o = '\0';
  ex->wire_len = (size_t)(o - ex->wire);
  return 1;
}

static void on_joined_sent(ak_future *f, void *arg)
{
  ak__http_exchange *ex = arg;
  int64_t res = op_done(ex, f);
  ak__free(ex->wire);
  ex->wire = NULL;
  if (ex->err) {
    stop(ex);
    return;
  }
  if (res < 0) {
    /* Before any byte of ex's answer: ex and every member behind go to
     * another connection (pipe_retry). After: ex reads on, and the members
     * behind go to another connection once it has its answer. */
    if (retry_on_fresh_conn(ex))
      return;
    ex->send_broken = true;
  }
  ex->state = EX_RECEIVING;
  post_recv(ex);
}

/* ex holds the connection and is about to wait for bytes: the requests of
 * the members that joined after the pipeline's went out (pipeline_depth)
 * are written now (pipe_wire), so they ride with the answers still to
 * come. Returns whether a send was started; its callback receives after. */
static bool pipe_send_joined(ak__http_exchange *ex)
{
  if (ex->err)
    return false; /* stopping: nothing more goes out */
  int rc = pipe_wire(ex);
  if (rc == 0)
    return false;
  if (rc < 0) {
    set_error(ex, rc, "out of memory");
    stop(ex);
    return true;
  }
  ex->state = EX_SENDING;
  ex->client->reuse.joined_sends++;
  await(ex, ex->conn->tr->send_all(ex->conn, ex->wire, ex->wire_len), on_joined_sent);
  return true;
}

/* Bytes received past ex's response: the next member's, or a body. */
static void pipe_carry(ak__http_exchange *ex, char *data, size_t len)
{
  /* A member that joined and has not been written yet has no answer. */
  if (!ex->pipe_next || !ex->pipe_next->pipe_sent || !looks_like_status(data, len)) {
    ex->leftover = true;
    set_error(ex, AK_EHTTPPROTO,
              "the server sent bytes after its response to HEAD that are not the next "
              "response (a body, which HEAD must not have)");
    return;
  }
  ex->conn->carry_off = (size_t)(data - ex->conn->buf);
  ex->conn->carry_len = len;
}

/* Sends ex (the head member now) and the members behind it on another
 * connection. */
static void pipe_resend(ak__http_exchange *ex, bool allow_idle)
{
  for (ak__http_exchange *m = ex; m; m = m->pipe_next)
    m->pipe_sent = false;
  ex->pipe_turned = false;
  if (ex->parser_live) {
    ak__http_parser_free(&ex->parser);
    ex->parser_live = false;
  }
  acquire(ex, allow_idle);
}

/* ex is on a reused connection (kept alive, or from the member ahead)
 * and these are its first bytes, or the first after the few that began
 * the stream (pipe_prefix: the carry, or an earlier receive, held a
 * prefix of "HTTP/" only): if they do not start a response, they are the
 * end of an earlier one (a body after HEAD that came late, whose first
 * bytes looked like a status line's; bytes that reached an idle
 * connection reused without a look, idle_stale), and ex has had no
 * answer: the connection is dropped and ex (with the members behind) goes
 * to another, not counted as a retry. Returns whether that happened. */
static bool stray(ak__http_exchange *ex, const char *data, size_t len)
{
  if (continues_status(ex->pipe_prefix, data, len)) {
    size_t n = STATUS_PREFIX_LEN - ex->pipe_prefix;
    ex->pipe_prefix += (unsigned char)(len < n ? len : n);
    return false;
  }
  ex->client->reuse.strays++;
  ak__http_conn *conn = ex->conn;
  ex->conn = NULL;
  ak__http_conn_release(conn, false);
  if (ex->piped) {
    pipe_resend(ex, true);
  } else {
    ak__http_parser_free(&ex->parser);
    ex->parser_live = false;
    acquire(ex, true);
  }
  return true;
}

/* The head member's connection failed before its first response byte:
 * it and the members behind are sent again (returns true), unless new
 * connections closed PIPE_DRY_MAX times in a row without an answer. */
static bool pipe_retry(ak__http_exchange *ex)
{
  if (ex->got_bytes || ex->err)
    return false;
  /* A kept-alive connection closed is no sign the server will not
   * answer: only new connections count. */
  if (!ex->conn_reused) {
    if (ex->pipe_dry >= PIPE_DRY_MAX) {
      ex->pipe_dry = PIPE_DRY_MAX + 1; /* finish fails the members behind */
      return false;
    }
    ex->pipe_dry++;
  } else {
    ex->client->reuse.resent++;
  }
  ak__http_conn *conn = ex->conn;
  ex->conn = NULL;
  ak__http_conn_release(conn, false);
  pipe_resend(ex, false);
  return true;
}

/* next takes conn from the member ahead (its response done, the
 * connection kept alive) and reads its response, starting with the bytes
 * already received past the one ahead. */
static void pipe_turn(ak__http_exchange *ex, ak__http_conn *conn)
{
  ex->conn = conn;
  ex->conn_reused = true;
  ex->client->reused++;
  ex->pipe_turned = true;
  ex->pipe_dry = 0;
  /* Its request is built (or kept) for a resend elsewhere. */
  if (!begin_exchange(ex, true, true, EX_RECEIVING))
    return;
  size_t n = conn->carry_len;
  char *data = conn->buf + conn->carry_off;
  conn->carry_len = 0;
  if (n == 0) {
    post_recv(ex);
    return;
  }
  /* pipe_carry saw these start as a status line; fewer than 5 bytes are
   * a prefix of "HTTP/" only, which the next receive confirms or shows to
   * be the late end of a body (stray). */
  ex->pipe_prefix = (unsigned char)(n < STATUS_PREFIX_LEN ? n : STATUS_PREFIX_LEN);
  ex->got_bytes = ex->pipe_prefix == STATUS_PREFIX_LEN;
  int64_t used = ak__http_parser_feed(&ex->parser, data, n);
  if (used < 0) {
    set_error(ex, (int)used, ex->parser.detail);
    stop(ex);
    return;
  }
  if ((size_t)used < n)
    pipe_carry(ex, data + used, n - (size_t)used);
  ex->rx_ended = ex->parser.message_done;
  if (ex->err) {
    stop(ex);
    return;
  }
  advance(ex);
}

/* The member ahead of next has ended (or left for a redirect), done with
 * conn (NULL if it had none), which may carry next's response if keep;
 * dry: new connections closed without an answer so far. err: the pipeline
 * gave up (pipe_retry): next and those behind fail with it. */
static void pipe_hand_on(ak__http_exchange *next, ak__http_conn *conn, bool keep,
                         unsigned dry, int err)
{
  if (err) {
    if (conn)
      ak__http_conn_release(conn, false);
    while (next) {
      ak__http_exchange *after = next->pipe_next;
      next->pipe_next = NULL;
      next->piped = false;
      if (after)
        after->pipe_prev = NULL;
      char d[120];
      snprintf(d, sizeof d,
               "not answered: %u new connections in a row closed before any answer (%s)",
               PIPE_DRY_MAX + 1, ak_err_name(err));
      set_error(next, err, d);
      finish(next);
      next = after;
    }
    return;
  }
  if (conn && keep && !next->err) {
    pipe_turn(next, conn);
    return;
  }
  if (conn)
    ak__http_conn_release(conn, false); /* next's response may still be on it */
  next->pipe_dry = dry;
  if (next->err) {
    finish(next); /* cancelled at its turn: the members behind go on */
    return;
  }
  pipe_resend(next, true);
}

/* Whether a and b have the same scheme, host, port and zone: the same
 * pool when neither goes through a proxy (whether one does depends on
 * the host and port alone, no_proxy). */
static bool same_origin(const ak_url *a, const ak_url *b)
{
  return a->port == b->port && strcmp(a->host, b->host) == 0 &&
         strcmp(a->scheme, b->scheme) == 0 &&
         (a->zone ? b->zone && strcmp(a->zone, b->zone) == 0 : !b->zone);
}

/* The length of the pipeline that tail ends, when requests may join it:
 * it runs (its head has a connection coming or in hand, or is reading its
 * answer) and nothing in it has failed; else 0. *head_out: its head. */
static unsigned pipe_open_length(ak__http_exchange *tail, ak__http_exchange **head_out)
{
  if (!tail || !tail->piped || tail->err || tail->pipe_next)
    return 0;
  unsigned n = 1;
  ak__http_exchange *head = tail;
  for (; head->pipe_prev; head = head->pipe_prev)
    n++;
  *head_out = head;
  if (head->err)
    return 0;
  switch (head->state) {
  case EX_WAITING: /* its pipe_wire will take the members that joined */
  case EX_CONNECTING:
  case EX_SENDING: /* the send after this one (pipe_send_joined) will */
  case EX_RECEIVING:
  case EX_THROTTLED:
    return n;
  default:
    return 0;
  }
}

/* Requests joined the pipeline that head reads the answers of: when it
 * waits in a receive, the receive is cancelled (on_recv then sends them and
 * receives again), so they go out now and the server has them while it
 * answers the ones before, not after head's next answer. */
static void pipe_wake(ak__http_exchange *head)
{
  if (head->state != EX_RECEIVING || !head->pending || head->rx_interrupted || head->err)
    return;
  head->rx_interrupted = true;
  head->client->reuse.wakes++;
  ak_future_cancel(head->pending);
}

int ak__http_pipeline_start(ak_http_client *c, const ak_http_request *reqs, size_t n,
                            ak_future **out)
{
  for (size_t i = 0; i < n; i++) {
    const ak_http_request *r = &reqs[i];
    if (!(r->flags & AK_HTTP_HEAD) || r->fd >= 0 || r->on_body ||
        (r->flags & AK_HTTP_BODY_MEMORY) || r->range_start >= 0)
      return -EINVAL;
  }
  /* This call's new pipelines' heads, then the heads of the running
   * pipelines it joined. */
  ak__http_exchange **heads = ak__calloc(2 * n, sizeof *heads), **woken = heads + n;
  if (!heads)
    return -ENOMEM;
  size_t nheads = 0, nwoken = 0;
  ak__http_exchange *prev = NULL;
  ak__http_host *prev_host = NULL;
  unsigned depth = 0;
  unsigned joins = c->opts.pipeline_depth; /* 0: pipelines are not joined */
  unsigned max_depth = joins ? joins : AK_HTTP_PIPELINE_MAX;
  bool joined = false; /* prev's pipeline was running before this call */
  for (size_t i = 0; i < n; i++) {
    ak__http_exchange *ex = exchange_new(c, &reqs[i], &out[i]);
    if (!ex)
      continue; /* out[i]: failed, or NULL (memory) */
    ak__http_host *h = NULL;
    if (prev && same_origin(prev->url, ex->url))
      h = prev_host; /* prev's: plain http, no proxy */
    else if (strcmp(ex->url->scheme, "http") == 0 && !ak__http_proxy_for(c, ex->url))
      h = ak__http_host_of(c, ex->url, NULL);
    if (h) {
      /* Its route, which acquire would look up again. */
      ex->host = h;
      ex->proxy = NULL;
      ex->forward = false;
    }
    if (h && joins && !(prev && h == prev_host)) {
      /* The first of this call's requests to h: behind the newest running
       * pipeline to h, while its connection has room. Its request goes
       * with that pipeline's (not sent yet) or by the next send of the
       * member reading (pipe_send_joined). */
      ak__http_exchange *head = NULL;
      unsigned len = pipe_open_length(h->pipe_tail, &head);
      if (len && len < max_depth) {
        prev = h->pipe_tail; /* linked below, as this call's own members are */
        prev_host = h;
        depth = len;
        joined = true;
        woken[nwoken++] = head;
      }
    }
    if (h && prev && h == prev_host && depth < max_depth) {
      prev->pipe_next = ex;
      ex->pipe_prev = prev;
      ex->piped = true;
      ex->state = EX_PIPED;
      ex->pipe_sent = false;
      depth++;
      prev = ex;
      if (joins)
        h->pipe_tail = ex;
      if (joined) {
        arm_timer(ex); /* not reached from heads[] below */
        c->reuse.joined++;
      }
      continue;
    }
    ex->piped = h != NULL;
    prev = h ? ex : NULL;
    prev_host = h;
    depth = 1;
    joined = false;
    heads[nheads++] = ex;
    if (h && joins)
      h->pipe_tail = ex;
  }
  for (size_t i = 0; i < nwoken; i++)
    pipe_wake(woken[i]);
  /* Linked first, started after: a head may send at once (an idle
   * connection), and sends its members with it. */
  for (size_t i = 0; i < nheads; i++) {
    for (ak__http_exchange *m = heads[i]->pipe_next; m; m = m->pipe_next)
      arm_timer(m);
    arm_timer(heads[i]);
    acquire(heads[i], true);
  }
  ak__free(heads);
  return 0;
}
