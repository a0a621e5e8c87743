/* wl_conns.c: the `conns` workload: 10,000 concurrent connections over
 * loopback (--size sets the count, --quick 1,000), server and client in two
 * processes, each connection moving 1 MiB to the server and getting a
 * one-byte acknowledgement back. The client first opens every connection
 * (at most 256 connects in flight) so all are held at once, then starts
 * every transfer together. Owns asynckit's server and client and the A B
 * alternation against the libuv pair (uv_net.c).
 *
 * Checks: every connection held at once (both sides' peak of open
 * connections), every byte counted and acknowledged, no error, and each
 * process's fd count back to its baseline once the connections are closed
 * (asynckit: counted with the loop alive, before the first connection and
 * after the last close; libuv keeps a reserve fd from its first handle to
 * uv_loop_close, so its count is taken around the loop's life).
 * Figures: the connect phase, the transfer phase, CPU time of each side,
 * and the fd counts (before, after) of the last pair.
 *
 * --variant asynckit / libuv runs one side alone; no ratio.
 */
#include "akb_net.h"

#include <asynckit.h>

#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static void conns_error(akb_conns_report *rep, const char *what, int err)
{
  if (rep->errors++ == 0)
    snprintf(rep->what, sizeof(rep->what), "%s: %s", what, err ? ak_strerror(err) : "failed");
}

static int big_loop(ak_loop **loop)
{
  ak_loop_options lo;
  memset(&lo, 0, sizeof(lo));
  lo.sq_entries = 4096;
  lo.cq_entries = 65536; /* 10,000 streams and as many sends in flight */
  return ak_loop_new(loop, &lo);
}

/* ---- asynckit server -------------------------------------------------------------- */

typedef struct cs {
  ak_loop *loop;
  ak_buf_ring *ring;
  const akb_conns_params *p;
  akb_conns_report *rep;
  uint64_t accepted, open;
} cs;

typedef struct cs_conn {
  cs *srv;
  int fd;
  uint64_t got;
  bool acked;
} cs_conn;

static const unsigned char ack_byte = 'k';

static void cs_ack_sent(ak_future *f, void *arg)
{
  cs *srv = arg;
  if (ak_future_result(f) != 1)
    conns_error(srv->rep, "server ack", (int)ak_future_result(f));
}

static ak_stream_action cs_received(ak_loop *loop, const void *data, size_t len, void *arg)
{
  (void)data;
  cs_conn *c = arg;
  c->got += len;
  if (c->got > c->srv->p->bytes) {
    conns_error(c->srv->rep, "server: more bytes than sent", 0);
    return AK_STREAM_STOP;
  }
  if (c->got == c->srv->p->bytes && !c->acked) {
    c->acked = true;
    ak_future *f = ak_send(loop, c->fd, &ack_byte, 1, 0);
    if (!f || ak_future_on_settle(f, cs_ack_sent, c->srv) < 0)
      conns_error(c->srv->rep, "server: out of memory", 0);
    ak_future_release(f);
  }
  return AK_STREAM_CONTINUE;
}

static void cs_ended(ak_future *f, void *arg)
{
  cs_conn *c = arg;
  cs *srv = c->srv;
  if (ak_future_is_error(f))
    conns_error(srv->rep, "server recv", (int)ak_future_result(f));
  else if (c->acked)
    srv->rep->served++;
  else
    conns_error(srv->rep, "server: connection ended early", 0);
  ak_future_release(ak_close(srv->loop, c->fd));
  srv->open--;
  free(c);
}

static ak_stream_action cs_accepted(ak_loop *loop, int fd, void *arg)
{
  cs *srv = arg;
  if (fd < 0) {
    conns_error(srv->rep, "server accept", fd);
    return AK_STREAM_STOP;
  }
  cs_conn *c = calloc(1, sizeof(*c));
  if (!c) {
    close(fd);
    conns_error(srv->rep, "server: out of memory", 0);
    return AK_STREAM_STOP;
  }
  c->srv = srv;
  c->fd = fd;
  if (++srv->open > srv->rep->held)
    srv->rep->held = srv->open;
  ak_future *st = ak_recv_stream(loop, fd, srv->ring, cs_received, c);
  if (!st || ak_future_on_settle(st, cs_ended, c) < 0)
    conns_error(srv->rep, "server: out of memory", 0);
  ak_future_release(st);
  return ++srv->accepted < srv->p->conns ? AK_STREAM_CONTINUE : AK_STREAM_STOP;
}

static int ak_conns_server(void *arg, void *report)
{
  const akb_conns_params *p = arg;
  akb_conns_report *rep = report;
  akb_raise_nofile();
  cs srv = {.p = p, .rep = rep};
  int rc = big_loop(&srv.loop);
  if (rc == 0)
    rc = ak_buf_ring_new(srv.loop, 2048, 32768, &srv.ring);
  if (rc < 0) {
    conns_error(rep, "server setup", rc);
    return 1;
  }
  rep->fds_before = akb_count_fds();
  double t0 = akb_now_s();
  ak_future *acc = ak_accept_stream(srv.loop, p->listen_fd, 0, cs_accepted, &srv);
  rc = ak_loop_run(srv.loop, AK_RUN_DEFAULT);
  if (rc < 0)
    conns_error(rep, "server loop", rc);
  if (ak_future_is_error(acc))
    conns_error(rep, "server accept stream", (int)ak_future_result(acc));
  ak_future_release(acc);
  rep->transfer_s = akb_now_s() - t0;
  rep->fds_after = akb_count_fds();
  ak_buf_ring_free(srv.ring);
  ak_loop_free(srv.loop);
  close(p->listen_fd);
  return rep->errors || rep->served != p->conns ? 1 : 0;
}

/* ---- asynckit client ------------------------------------------------------------------ */

typedef struct cc {
  ak_loop *loop;
  const akb_conns_params *p;
  akb_conns_report *rep;
  struct sockaddr_in addr;
  struct cc_conn **conns;
  unsigned next;    /* the next connection to start connecting */
  unsigned started; /* connections whose transfer has started */
  unsigned connected, open;
  unsigned char *payload; /* what every connection sends (shared, read-only) */
  double t0, t_connected;
} cc;

typedef struct cc_conn {
  cc *cl;
  int fd;
  unsigned char ack;
} cc_conn;

static void cc_connect_next(cc *cl);
static void cc_start_transfers(cc *cl);

static void cc_acked(ak_future *f, void *arg)
{
  cc_conn *c = arg;
  cc *cl = c->cl;
  if (ak_future_result(f) != 1 || c->ack != ack_byte)
    conns_error(cl->rep, "client: no ack", (int)ak_future_result(f));
  else
    cl->rep->served++;
  ak_future_release(ak_close(cl->loop, c->fd));
  cl->open--;
  free(c);
}

static void cc_sent(ak_future *f, void *arg)
{
  cc *cl = arg;
  if (ak_future_result(f) != (int64_t)cl->p->bytes)
    conns_error(cl->rep, "client send", (int)ak_future_result(f));
}

static void cc_connected(ak_future *f, void *arg)
{
  cc_conn *c = arg;
  cc *cl = c->cl;
  if (ak_future_is_error(f)) {
    conns_error(cl->rep, "client connect", (int)ak_future_result(f));
    close(c->fd);
    free(c);
    return;
  }
  cl->connected++;
  if (++cl->open > cl->rep->held)
    cl->rep->held = cl->open;
  if (cl->next < cl->p->conns)
    cc_connect_next(cl);
  else if (cl->connected == cl->p->conns)
    cc_start_transfers(cl);
}

static void cc_connect_next(cc *cl)
{
  unsigned i = cl->next++;
  cc_conn *c = calloc(1, sizeof(*c));
  if (!c) {
    conns_error(cl->rep, "client: out of memory", 0);
    return;
  }
  c->cl = cl;
  c->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (c->fd < 0) {
    conns_error(cl->rep, "client socket", -errno);
    free(c);
    return;
  }
  cl->conns[i] = c;
  ak_future *f =
      ak_connect(cl->loop, c->fd, (struct sockaddr *)&cl->addr, sizeof(cl->addr), 10000000000LL);
  if (!f || ak_future_on_settle(f, cc_connected, c) < 0)
    conns_error(cl->rep, "client: out of memory", 0);
  ak_future_release(f);
}

/* Transfers start a slice at a time, one slice per loop iteration: 10,000
 * sends of 1 MiB handed to the kernel in one io_uring_enter copy 10 GB into
 * cold socket buffers at once (about twice the client's CPU time, measured);
 * paced, the memory stays warm. The libuv client is paced the same way. */
static void cc_start_slice(void *arg)
{
  cc *cl = arg;
  unsigned end = cl->started + AKB_CONNS_SLICE;
  for (; cl->started < end && cl->started < cl->p->conns; cl->started++) {
    cc_conn *c = cl->conns[cl->started];
    ak_future *r = ak_recv(cl->loop, c->fd, &c->ack, 1, 0);
    ak_future *s = ak_send_all(cl->loop, c->fd, cl->payload, cl->p->bytes, 0);
    if (!r || !s || ak_future_on_settle(r, cc_acked, c) < 0 ||
        ak_future_on_settle(s, cc_sent, cl) < 0)
      conns_error(cl->rep, "client: out of memory", 0);
    ak_future_release(r);
    ak_future_release(s);
  }
  if (cl->started < cl->p->conns && !ak_call_later(cl->loop, 0, cc_start_slice, cl))
    conns_error(cl->rep, "client: out of memory", 0);
}

static void cc_start_transfers(cc *cl)
{
  cl->t_connected = akb_now_s();
  cl->rep->connect_s = cl->t_connected - cl->t0;
  cc_start_slice(cl);
}

static int ak_conns_client(void *arg, void *report)
{
  const akb_conns_params *p = arg;
  akb_conns_report *rep = report;
  close(p->listen_fd);
  akb_raise_nofile();
  cc cl = {.p = p, .rep = rep};
  cl.addr.sin_family = AF_INET;
  cl.addr.sin_port = htons((uint16_t)p->port);
  cl.addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  cl.conns = calloc(p->conns, sizeof(*cl.conns));
  cl.payload = malloc(p->bytes);
  int rc = cl.conns && cl.payload ? big_loop(&cl.loop) : -ENOMEM;
  if (rc < 0) {
    conns_error(rep, "client setup", rc);
    return 1;
  }
  memset(cl.payload, 'p', p->bytes);
  rep->fds_before = akb_count_fds();
  cl.t0 = akb_now_s();
  for (unsigned i = 0; i < p->connect_window && cl.next < p->conns; i++)
    cc_connect_next(&cl);
  rc = ak_loop_run(cl.loop, AK_RUN_DEFAULT);
  if (rc < 0)
    conns_error(rep, "client loop", rc);
  rep->transfer_s = akb_now_s() - cl.t_connected;
  rep->fds_after = akb_count_fds();
  ak_loop_free(cl.loop);
  free(cl.conns);
  free(cl.payload);
  return rep->errors || rep->served != p->conns ? 1 : 0;
}

/* ---- The workload ------------------------------------------------------------------------ */

typedef struct series {
  double connect_s[1000];
  double transfer_s[1000];
  double server_cpu[1000];
  double client_cpu[1000];
  double held[1000];
  int fds[4];                   /* last pair: client before, after; server before, after */
  unsigned n;
} series;

static int run_pair(int (*server)(void *, void *), int (*client)(void *, void *),
                    akb_conns_params *p, series *st, akb_result *res, const char *name)
{
  _Static_assert(sizeof(akb_conns_report) <= AKB_NET_REPORT, "the report fits the pipe record");
  int lfd = akb_listen_loopback(4096, &p->port);
  if (lfd < 0) {
    akb_fail(res, "%s: listen: %s", name, strerror(-lfd));
    return -1;
  }
  p->listen_fd = lfd;
  akb_child srv, cli;
  int rc = akb_child_start(&srv, server, p);
  if (rc == 0 && (rc = akb_child_start(&cli, client, p)) < 0)
    akb_child_kill(&srv);
  close(lfd);
  if (rc < 0) {
    akb_fail(res, "%s: fork: %s", name, strerror(-rc));
    return -1;
  }
  union {
    akb_conns_report r;
    unsigned char raw[AKB_NET_REPORT];
  } cbuf, sbuf;
  double cu = 0, cs_ = 0, su = 0, ss = 0;
  int crc = akb_child_finish(&cli, cbuf.raw, &cu, &cs_);
  if (crc != 0)
    akb_child_kill(&srv);
  int src = srv.pid ? akb_child_finish(&srv, sbuf.raw, &su, &ss) : -ECHILD;
  akb_conns_report *c = &cbuf.r, *s = &sbuf.r;
  if (crc != 0 || src != 0) {
    akb_fail(res, "%s: client %d (%.80s), server %d (%.80s)", name, crc, crc > 0 ? c->what : "",
             src, src > 0 ? s->what : "");
    return -1;
  }
  if (c->held != p->conns || s->held != p->conns)
    akb_fail(res, "%s: held %llu (client) and %llu (server) of %u at once", name,
             (unsigned long long)c->held, (unsigned long long)s->held, p->conns);
  if (c->fds_after != c->fds_before || s->fds_after != s->fds_before)
    akb_fail(res, "%s: fds %d -> %d (client), %d -> %d (server)", name, c->fds_before, c->fds_after,
             s->fds_before, s->fds_after);
  st->connect_s[st->n] = c->connect_s;
  st->transfer_s[st->n] = c->transfer_s;
  st->client_cpu[st->n] = cu + cs_;
  st->server_cpu[st->n] = su + ss;
  st->held[st->n] = (double)(c->held < s->held ? c->held : s->held);
  st->fds[0] = c->fds_before;
  st->fds[1] = c->fds_after;
  st->fds[2] = s->fds_before;
  st->fds[3] = s->fds_after;
  st->n++;
  return 0;
}

static double total_s(series *s)
{
  double t[1000];
  for (unsigned i = 0; i < s->n; i++)
    t[i] = s->connect_s[i] + s->transfer_s[i];
  return akb_median(t, s->n);
}

static void add_row(akb_result *res, const char *name, series *s, const akb_conns_params *p)
{
  akb_row *row = akb_row_add(res, name);
  double total = total_s(s);
  akb_fig_add(row, "held", "", akb_median(s->held, s->n), true);
  akb_fig_add(row, "connect_s", "", akb_median(s->connect_s, s->n), false);
  akb_fig_add(row, "transfer_s", "", akb_median(s->transfer_s, s->n), false);
  akb_fig_add(row, "GB_per_s", "", (double)p->conns * (double)p->bytes / total / 1e9, false);
  akb_fig_add(row, "server_cpu_s", "", akb_median(s->server_cpu, s->n), false);
  akb_fig_add(row, "client_cpu_s", "", akb_median(s->client_cpu, s->n), false);
  akb_fig_add(row, "client_fds", "", s->fds[0], true);
  akb_fig_add(row, "client_fds_after", "", s->fds[1], true);
  akb_fig_add(row, "server_fds", "", s->fds[2], true);
  akb_fig_add(row, "server_fds_after", "", s->fds[3], true);
  akb_fig_add(row, "pairs", "", s->n, true);
}

int akb_wl_conns(const akb_opts *opts, akb_result *res)
{
  static series ak, uv;
  memset(&ak, 0, sizeof(ak));
  memset(&uv, 0, sizeof(uv));
  akb_conns_params p = {.bytes = 1u << 20, .connect_window = 256};
  p.conns = (unsigned)akb_size(opts, 10000, 1000);
  long limit = akb_raise_nofile();
  if (limit < (long)p.conns + 64) {
    akb_fail(res, "RLIMIT_NOFILE allows %ld fds; %u connections need more", limit, p.conns);
    return -1;
  }
  akb_title(res, "%u connections held at once, each moving %llu bytes, %u A B pairs", p.conns,
            (unsigned long long)p.bytes, opts->rounds);
  akb_param(res, "connections", "", p.conns, true);
  akb_param(res, "bytes_each", "", (double)p.bytes, true);
  akb_param(res, "connect_window", "", p.connect_window, true);
  bool run_ak = strcmp(opts->variant, "libuv") != 0;
  bool run_uv = strcmp(opts->variant, "asynckit") != 0;
  for (unsigned r = 0; r < opts->rounds; r++) {
    if (run_ak && run_pair(ak_conns_server, ak_conns_client, &p, &ak, res, "asynckit") < 0)
      return -1;
#ifdef AKBENCH_HAVE_UV
    if (run_uv && run_pair(akb_uv_conns_server, akb_uv_conns_client, &p, &uv, res, "libuv") < 0)
      return -1;
#else
    (void)run_uv;
#endif
  }
  if (ak.n)
    add_row(res, "asynckit", &ak, &p);
#ifdef AKBENCH_HAVE_UV
  if (uv.n)
    add_row(res, "libuv", &uv, &p);
  if (ak.n && uv.n) {
    akb_ratio(res, total_s(&uv) / total_s(&ak),
              "median time to connect all and move every byte, libuv %s / asynckit",
              akb_uv_version());
    double ak_cpu = akb_median(ak.server_cpu, ak.n) + akb_median(ak.client_cpu, ak.n);
    double uv_cpu = akb_median(uv.server_cpu, uv.n) + akb_median(uv.client_cpu, uv.n);
    akb_param(res, "cpu_ratio", "", uv_cpu / ak_cpu, false);
  }
#else
  akb_note(res, "%s", AKB_UV_MISSING);
#endif
  return 0;
}
