/* wl_echo.c: the `echo` workload: C connections (64) ping-ponging M-byte
 * messages (64) over loopback for a fixed time (10 s; --size sets it in
 * milliseconds, --quick 1 s). Owns asynckit's server and client and the
 * A B alternation against the libuv pair (uv_net.c): each pair is a server
 * process and a client process running at once, so each side's CPU time is
 * its own. Figures: round trips per second (client's count over its timed
 * window), CPU seconds of each side, and the lowest and highest of the
 * pairs' own ratios beside the ratio of the medians.
 *
 * Fairness: both implementations are single-threaded loops built the same
 * way: the server echoes what arrives (queueing behind a send in flight),
 * the client sends the next message when the whole echo is back and checks
 * every byte; TCP_NODELAY on every socket on both; the same listening
 * socket settings; a send callback on every send on both sides (libuv's
 * write_cb, asynckit's on_settle). asynckit receives through multishot recv
 * on a provided-buffer ring, libuv through uv_read_start; asynckit sends
 * with one ak_send(MSG_WAITALL) per message (the kernel itself resends a
 * partial send on a stream socket), libuv with uv_write. asynckit registers
 * its sockets with the ring (ak_socket_register), as a user of the library
 * who wants its speed would; libuv has no such thing.
 *
 * --variant asynckit / libuv runs one side alone (for profiling); no ratio.
 */
#include "akb_net.h"

#include <asynckit.h>

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* Provided buffers per side: few enough to stay in cache (they are used
 * round-robin), enough for every connection's message in flight. */
#define AKB_ECHO_RING 256u

static void set_nodelay(int fd)
{
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

static void note_error(akb_echo_report *rep, const char *what, int err)
{
  if (rep->errors++ == 0)
    snprintf(rep->what, sizeof(rep->what), "%s: %s", what, err ? ak_strerror(err) : "failed");
}

/* ---- asynckit server --------------------------------------------------------------- */

typedef struct es {
  ak_loop *loop;
  ak_buf_ring *ring;
  ak_future *accepting;
  unsigned expect; /* connections to serve, then exit */
  unsigned accepted, ended;
  akb_echo_report *rep;
} es;

typedef struct es_conn {
  es *srv;
  int fd;
  bool sending;              /* a send owns `out` */
  bool ended;                /* the recv stream has settled */
  unsigned char *out, *pend; /* in flight; waiting behind it */
  size_t nout, npend, cap_out, cap_pend;
} es_conn;

static bool reserve(unsigned char **buf, size_t *cap, size_t need)
{
  if (need <= *cap)
    return true;
  size_t n = *cap ? *cap * 2 : 4096;
  while (n < need)
    n *= 2;
  unsigned char *p = realloc(*buf, n);
  if (!p)
    return false;
  *buf = p;
  *cap = n;
  return true;
}

static void es_conn_done(es_conn *c)
{
  es *srv = c->srv;
  ak_future_release(ak_close(srv->loop, c->fd));
  free(c->out);
  free(c->pend);
  free(c);
  srv->ended++;
}

static void es_send(es_conn *c);

static void es_sent(ak_future *f, void *arg)
{
  es_conn *c = arg;
  c->sending = false;
  int64_t res = ak_future_result(f);
  if (res != (int64_t)c->nout) {
    note_error(c->srv->rep, "server send", res < 0 ? (int)res : 0);
  } else if (c->npend) {
    unsigned char *t = c->out;
    size_t tc = c->cap_out;
    c->out = c->pend;
    c->cap_out = c->cap_pend;
    c->pend = t;
    c->cap_pend = tc;
    c->nout = c->npend;
    c->npend = 0;
    es_send(c);
  }
  if (!c->sending && c->ended)
    es_conn_done(c);
}

static void es_send(es_conn *c)
{
  /* MSG_WAITALL: on a stream socket the kernel resends a partial send
   * itself, so one op sends all (a short result is an error below). */
  ak_future *f = ak_send(c->srv->loop, c->fd, c->out, c->nout, MSG_WAITALL);
  c->sending = true;
  if (!f || ak_future_on_settle(f, es_sent, c) < 0) {
    note_error(c->srv->rep, "server: out of memory", 0);
    c->sending = false;
  }
  ak_future_release(f);
}

static ak_stream_action es_received(ak_loop *loop, const void *data, size_t len, void *arg)
{
  (void)loop;
  es_conn *c = arg;
  if (c->sending) {
    if (!reserve(&c->pend, &c->cap_pend, c->npend + len))
      return AK_STREAM_STOP;
    memcpy(c->pend + c->npend, data, len);
    c->npend += len;
    return AK_STREAM_CONTINUE;
  }
  if (!reserve(&c->out, &c->cap_out, len))
    return AK_STREAM_STOP;
  memcpy(c->out, data, len); /* the ring wants its buffer back */
  c->nout = len;
  es_send(c);
  return AK_STREAM_CONTINUE;
}

static void es_recv_ended(ak_future *f, void *arg)
{
  es_conn *c = arg;
  c->ended = true;
  if (ak_future_is_error(f))
    note_error(c->srv->rep, "server recv", (int)ak_future_result(f));
  if (!c->sending)
    es_conn_done(c);
}

static ak_stream_action es_accepted(ak_loop *loop, int fd, void *arg)
{
  es *srv = arg;
  if (fd < 0) {
    note_error(srv->rep, "server accept", fd);
    return AK_STREAM_STOP;
  }
  es_conn *c = calloc(1, sizeof(*c));
  if (!c) {
    close(fd);
    note_error(srv->rep, "server: out of memory", 0);
    return AK_STREAM_STOP;
  }
  c->srv = srv;
  c->fd = fd;
  set_nodelay(fd);
  (void)ak_socket_register(loop, fd); /* only an optimization: fine without */
  ak_future *rs = ak_recv_stream(loop, fd, srv->ring, es_received, c);
  if (!rs || ak_future_on_settle(rs, es_recv_ended, c) < 0)
    note_error(srv->rep, "server: out of memory", 0);
  ak_future_release(rs);
  return ++srv->accepted < srv->expect ? AK_STREAM_CONTINUE : AK_STREAM_STOP;
}

static int ak_echo_server(void *arg, void *report)
{
  const akb_echo_params *p = arg;
  akb_echo_report *rep = report;
  es srv = {.expect = p->conns, .rep = rep};
  int rc = ak_loop_new(&srv.loop, NULL);
  if (rc == 0)
    rc = ak_buf_ring_new(srv.loop, AKB_ECHO_RING, 2048, &srv.ring);
  if (rc < 0) {
    note_error(rep, "server setup", rc);
    return 1;
  }
  srv.accepting = ak_accept_stream(srv.loop, p->listen_fd, 0, es_accepted, &srv);
  rc = ak_loop_run(srv.loop, AK_RUN_DEFAULT);
  if (rc < 0)
    note_error(rep, "server loop", rc);
  if (srv.ended != p->conns)
    note_error(rep, "server: connections did not all end", 0);
  ak_future_release(srv.accepting);
  ak_buf_ring_free(srv.ring);
  ak_loop_free(srv.loop);
  close(p->listen_fd);
  return rep->errors ? 1 : 0;
}

/* ---- asynckit client ---------------------------------------------------------------- */

typedef struct ec {
  ak_loop *loop;
  ak_buf_ring *ring;
  const akb_echo_params *p;
  akb_echo_report *rep;
  bool running; /* inside the timed window */
  unsigned connected;
  double t0;
  struct ec_conn **conns; /* every connection, for the first sends */
} ec;

typedef struct ec_conn {
  ec *cl;
  int fd;
  unsigned got;       /* bytes of the current echo back */
  unsigned char *msg; /* what this connection sends, every time */
} ec_conn;

static void ec_sent(ak_future *f, void *arg)
{
  ec_conn *c = arg;
  if (ak_future_result(f) != (int64_t)c->cl->p->msg_size)
    note_error(c->cl->rep, "client send", (int)ak_future_result(f));
}

static void ec_send(ec_conn *c)
{
  c->got = 0;
  ak_future *f = ak_send(c->cl->loop, c->fd, c->msg, c->cl->p->msg_size, MSG_WAITALL);
  if (!f || ak_future_on_settle(f, ec_sent, c) < 0)
    note_error(c->cl->rep, "client: out of memory", 0);
  ak_future_release(f);
}

static ak_stream_action ec_received(ak_loop *loop, const void *data, size_t len, void *arg)
{
  (void)loop;
  ec_conn *c = arg;
  ec *cl = c->cl;
  if (c->got + len > cl->p->msg_size || memcmp(c->msg + c->got, data, len) != 0) {
    note_error(cl->rep, "client: the echo differs", 0);
    return AK_STREAM_STOP;
  }
  c->got += (unsigned)len;
  if (c->got < cl->p->msg_size)
    return AK_STREAM_CONTINUE;
  if (!cl->running)
    return AK_STREAM_STOP; /* the window closed: this connection is done */
  cl->rep->round_trips++;
  ec_send(c);
  return AK_STREAM_CONTINUE;
}

static void ec_recv_ended(ak_future *f, void *arg)
{
  ec_conn *c = arg;
  if (ak_future_is_error(f))
    note_error(c->cl->rep, "client recv", (int)ak_future_result(f));
  ak_future_release(ak_close(c->cl->loop, c->fd));
  free(c->msg);
  free(c);
}

static void ec_window_closed(void *arg)
{
  ec *cl = arg;
  cl->running = false;
  cl->rep->wall_s = akb_now_s() - cl->t0;
}

static void ec_connected(ak_future *f, void *arg)
{
  ec_conn *c = arg;
  ec *cl = c->cl;
  if (ak_future_is_error(f)) {
    note_error(cl->rep, "client connect", (int)ak_future_result(f));
    return;
  }
  set_nodelay(c->fd);
  (void)ak_socket_register(cl->loop, c->fd); /* only an optimization */
  ak_future *rs = ak_recv_stream(cl->loop, c->fd, cl->ring, ec_received, c);
  if (!rs || ak_future_on_settle(rs, ec_recv_ended, c) < 0)
    note_error(cl->rep, "client: out of memory", 0);
  ak_future_release(rs);
  if (++cl->connected < cl->p->conns)
    return;
  /* Everyone is connected: the window opens. */
  cl->t0 = akb_now_s();
  cl->running = true;
  ak_call_later(cl->loop, (int64_t)(cl->p->seconds * 1e9), ec_window_closed, cl);
  for (unsigned i = 0; i < cl->p->conns; i++)
    ec_send(cl->conns[i]);
}

static int ak_echo_client(void *arg, void *report)
{
  const akb_echo_params *p = arg;
  akb_echo_report *rep = report;
  ec cl = {.p = p, .rep = rep};
  int rc = ak_loop_new(&cl.loop, NULL);
  if (rc == 0)
    rc = ak_buf_ring_new(cl.loop, AKB_ECHO_RING, 2048, &cl.ring);
  if (rc < 0) {
    note_error(rep, "client setup", rc);
    return 1;
  }
  struct sockaddr_in a;
  memset(&a, 0, sizeof(a));
  a.sin_family = AF_INET;
  a.sin_port = htons((uint16_t)p->port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ec_conn **conns = calloc(p->conns, sizeof(*conns));
  cl.conns = conns;
  for (unsigned i = 0; conns && i < p->conns; i++) {
    ec_conn *c = calloc(1, sizeof(*c));
    if (!c || !(c->msg = malloc(p->msg_size)))
      return 1;
    c->cl = &cl;
    for (unsigned j = 0; j < p->msg_size; j++)
      c->msg[j] = (unsigned char)(i * 31 + j);
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    conns[i] = c;
    ak_future *f = ak_connect(cl.loop, c->fd, (struct sockaddr *)&a, sizeof(a), 5000000000LL);
    if (!f || ak_future_on_settle(f, ec_connected, c) < 0)
      return 1;
    ak_future_release(f);
  }
  rc = ak_loop_run(cl.loop, AK_RUN_DEFAULT);
  if (rc < 0)
    note_error(rep, "client loop", rc);
  free(conns);
  ak_buf_ring_free(cl.ring);
  ak_loop_free(cl.loop);
  return rep->errors ? 1 : 0;
}

/* ---- The workload ------------------------------------------------------------------- */

typedef struct side_stats {
  double rtps[1000];
  double server_cpu[1000];
  double client_cpu[1000];
  unsigned n;
} side_stats;

/* One pair: server and client processes of one implementation. */
static int run_pair(int (*server)(void *, void *), int (*client)(void *, void *),
                    akb_echo_params *p, side_stats *st, akb_result *res, const char *name)
{
  int lfd = akb_listen_loopback(1024, &p->port);
  if (lfd < 0) {
    akb_fail(res, "%s: listen: %s", name, strerror(-lfd));
    return -1;
  }
  p->listen_fd = lfd;
  akb_child srv, cli;
  int rc = akb_child_start(&srv, server, p);
  if (rc == 0) {
    rc = akb_child_start(&cli, client, p);
    if (rc < 0)
      akb_child_kill(&srv);
  }
  close(lfd);
  if (rc < 0) {
    akb_fail(res, "%s: fork: %s", name, strerror(-rc));
    return -1;
  }
  _Static_assert(sizeof(akb_echo_report) <= AKB_NET_REPORT, "the report fits the pipe record");
  union {
    akb_echo_report r;
    unsigned char raw[AKB_NET_REPORT];
  } cbuf, sbuf;
  akb_echo_report *crep = &cbuf.r, *srep = &sbuf.r;
  double cu = 0, cs = 0, su = 0, ss = 0;
  int crc = akb_child_finish(&cli, cbuf.raw, &cu, &cs);
  if (crc != 0)
    akb_child_kill(&srv); /* a client that failed may leave it waiting */
  int src = srv.pid ? akb_child_finish(&srv, sbuf.raw, &su, &ss) : -ECHILD;
  if (crc != 0 || src != 0) {
    akb_fail(res, "%s: client %d (%s), server %d (%s)", name, crc, crc > 0 ? crep->what : "", src,
             src > 0 ? srep->what : "");
    return -1;
  }
  st->rtps[st->n] = (double)crep->round_trips / crep->wall_s;
  st->client_cpu[st->n] = cu + cs;
  st->server_cpu[st->n] = su + ss;
  st->n++;
  return 0;
}

static void add_row(akb_result *res, const char *name, side_stats *st, double seconds)
{
  akb_row *row = akb_row_add(res, name);
  akb_fig_add(row, "round_trips_per_s", "", akb_median(st->rtps, st->n), true);
  double sc = akb_median(st->server_cpu, st->n), cc = akb_median(st->client_cpu, st->n);
  akb_fig_add(row, "server_cpu_s", "", sc, false);
  akb_fig_add(row, "client_cpu_s", "", cc, false);
  double rt = akb_median(st->rtps, st->n) * seconds;
  akb_fig_add(row, "cpu_us_per_rt", "", (sc + cc) * 1e6 / rt, false);
  akb_fig_add(row, "pairs", "", st->n, true);
}

int akb_wl_echo(const akb_opts *opts, akb_result *res)
{
  static side_stats ak, uv;
  memset(&ak, 0, sizeof(ak));
  memset(&uv, 0, sizeof(uv));
  akb_echo_params p = {.conns = 64, .msg_size = 64};
  p.seconds = (double)akb_size(opts, 10000, 1000) / 1000.0;
  akb_title(res, "%u connections ping-ponging %u-byte messages for %.1f s, %u A B pairs", p.conns,
            p.msg_size, p.seconds, opts->rounds);
  akb_param(res, "connections", "", p.conns, true);
  akb_param(res, "message_bytes", "", p.msg_size, true);
  akb_param(res, "seconds", "", p.seconds, false);

  /* --variant asynckit / libuv runs one side alone (profiling). */
  bool run_ak = strcmp(opts->variant, "libuv") != 0;
  bool run_uv = strcmp(opts->variant, "asynckit") != 0;
  for (unsigned r = 0; r < opts->rounds; r++) {
    if (run_ak && run_pair(ak_echo_server, ak_echo_client, &p, &ak, res, "asynckit") < 0)
      return -1;
#ifdef AKBENCH_HAVE_UV
    if (run_uv && run_pair(akb_uv_echo_server, akb_uv_echo_client, &p, &uv, res, "libuv") < 0)
      return -1;
#endif
  }
  if (!run_ak || !run_uv) {
    if (run_ak)
      add_row(res, "asynckit", &ak, p.seconds);
    if (run_uv)
      add_row(res, "libuv", &uv, p.seconds);
    return 0;
  }
#ifdef AKBENCH_HAVE_UV
  /* The spread of the pairs' own ratios, to judge the median's ratio by
   * (taken before add_row: the medians sort the arrays in place). */
  double lo = ak.rtps[0] / uv.rtps[0], hi = lo;
  for (unsigned i = 1; i < ak.n; i++) {
    double r = ak.rtps[i] / uv.rtps[i];
    lo = r < lo ? r : lo;
    hi = r > hi ? r : hi;
  }
  akb_param(res, "pair_ratio_min", "", lo, false);
  akb_param(res, "pair_ratio_max", "", hi, false);
#endif
  add_row(res, "asynckit", &ak, p.seconds);
#ifdef AKBENCH_HAVE_UV
  add_row(res, "libuv", &uv, p.seconds);
  double ak_rt = akb_median(ak.rtps, ak.n), uv_rt = akb_median(uv.rtps, uv.n);
  akb_ratio(res, ak_rt / uv_rt, "median round trips/s, asynckit / libuv %s", akb_uv_version());
  double ak_cpu = akb_median(ak.server_cpu, ak.n) + akb_median(ak.client_cpu, ak.n);
  double uv_cpu = akb_median(uv.server_cpu, uv.n) + akb_median(uv.client_cpu, uv.n);
  /* CPU per round trip, libuv's over ours: > 1 when we spend less. */
  akb_param(res, "cpu_per_rt_ratio", "",
            (uv_cpu / (uv_rt * p.seconds)) / (ak_cpu / (ak_rt * p.seconds)), false);
#else
  akb_note(res, "%s", AKB_UV_MISSING);
#endif
  return 0;
}
