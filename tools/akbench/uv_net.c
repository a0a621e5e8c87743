/* uv_net.c: the libuv peers of akbench's network workloads: the echo server
 * and client (wl_echo.c) and the 10,000-connection server and client
 * (wl_conns.c), written the way a libuv user would and the same way as the
 * asynckit sides: one loop per process, TCP_NODELAY, the server echoing
 * what arrives and queueing behind a write in flight, every byte checked.
 * Built only with libuv (AKBENCH_HAVE_UV). Each entry point runs in a child
 * process (net_common.c) and fills its report.
 */
#include "akb_net.h"

#include <uv.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void uv_note(uint64_t *errors, char *what, size_t size, const char *msg, int err)
{
  if ((*errors)++ == 0)
    snprintf(what, size, "%s: %s", msg, err ? uv_strerror(err) : "failed");
}

#define ECHO_ERR(rep, msg, err) uv_note(&(rep)->errors, (rep)->what, sizeof((rep)->what), msg, err)

/* ---- echo server --------------------------------------------------------------------- */

typedef struct ues {
  uv_loop_t loop;
  uv_tcp_t listener;
  unsigned expect, accepted, ended;
  akb_echo_report *rep;
} ues;

typedef struct ues_conn {
  uv_tcp_t tcp; /* first: the handle's address is the conn's */
  uv_write_t req;
  ues *srv;
  bool writing, eof;
  char inbuf[65536]; /* uv_read_start's buffer, reused */
  char *out, *pend;
  size_t nout, npend, cap_out, cap_pend;
} ues_conn;

static bool uv_reserve(char **buf, size_t *cap, size_t need)
{
  if (need <= *cap)
    return true;
  size_t n = *cap ? *cap * 2 : 4096;
  while (n < need)
    n *= 2;
  char *p = realloc(*buf, n);
  if (!p)
    return false;
  *buf = p;
  *cap = n;
  return true;
}

static void ues_closed(uv_handle_t *h)
{
  ues_conn *c = (ues_conn *)h;
  ues *srv = c->srv;
  free(c->out);
  free(c->pend);
  free(c);
  if (++srv->ended == srv->expect)
    uv_close((uv_handle_t *)&srv->listener, NULL);
}

static void ues_write(ues_conn *c);

static void ues_written(uv_write_t *req, int status)
{
  ues_conn *c = req->data;
  c->writing = false;
  if (status < 0) {
    ECHO_ERR(c->srv->rep, "server write", status);
  } else if (c->npend) {
    char *t = c->out;
    size_t tc = c->cap_out;
    c->out = c->pend;
    c->cap_out = c->cap_pend;
    c->pend = t;
    c->cap_pend = tc;
    c->nout = c->npend;
    c->npend = 0;
    ues_write(c);
  }
  if (!c->writing && c->eof)
    uv_close((uv_handle_t *)&c->tcp, ues_closed);
}

static void ues_write(ues_conn *c)
{
  uv_buf_t b = uv_buf_init(c->out, (unsigned)c->nout);
  c->req.data = c;
  int rc = uv_write(&c->req, (uv_stream_t *)&c->tcp, &b, 1, ues_written);
  if (rc < 0)
    ECHO_ERR(c->srv->rep, "server uv_write", rc);
  else
    c->writing = true;
}

static void ues_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
  (void)suggested;
  ues_conn *c = (ues_conn *)h;
  *buf = uv_buf_init(c->inbuf, sizeof(c->inbuf));
}

static void ues_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
  ues_conn *c = (ues_conn *)s;
  if (n < 0) {
    if (n != UV_EOF)
      ECHO_ERR(c->srv->rep, "server read", (int)n);
    uv_read_stop(s);
    c->eof = true;
    if (!c->writing)
      uv_close((uv_handle_t *)s, ues_closed);
    return;
  }
  if (n == 0)
    return;
  if (c->writing) {
    if (uv_reserve(&c->pend, &c->cap_pend, c->npend + (size_t)n)) {
      memcpy(c->pend + c->npend, buf->base, (size_t)n);
      c->npend += (size_t)n;
    }
    return;
  }
  if (!uv_reserve(&c->out, &c->cap_out, (size_t)n))
    return;
  memcpy(c->out, buf->base, (size_t)n);
  c->nout = (size_t)n;
  ues_write(c);
}

static void ues_connection(uv_stream_t *l, int status)
{
  ues *srv = l->data;
  if (status < 0) {
    ECHO_ERR(srv->rep, "server accept", status);
    return;
  }
  ues_conn *c = calloc(1, sizeof(*c));
  uv_tcp_init(&srv->loop, &c->tcp);
  c->srv = srv;
  if (uv_accept(l, (uv_stream_t *)&c->tcp) != 0) {
    ECHO_ERR(srv->rep, "server uv_accept", 0);
    uv_close((uv_handle_t *)&c->tcp, NULL);
    return;
  }
  uv_tcp_nodelay(&c->tcp, 1);
  srv->accepted++;
  uv_read_start((uv_stream_t *)&c->tcp, ues_alloc, ues_read);
}

int akb_uv_echo_server(void *arg, void *report)
{
  const akb_echo_params *p = arg;
  akb_echo_report *rep = report;
  ues srv;
  memset(&srv, 0, sizeof(srv));
  srv.expect = p->conns;
  srv.rep = rep;
  uv_loop_init(&srv.loop);
  uv_tcp_init(&srv.loop, &srv.listener);
  srv.listener.data = &srv;
  int rc = uv_tcp_open(&srv.listener, p->listen_fd);
  if (rc == 0)
    rc = uv_listen((uv_stream_t *)&srv.listener, 1024, ues_connection);
  if (rc < 0) {
    ECHO_ERR(rep, "server listen", rc);
    return 1;
  }
  uv_run(&srv.loop, UV_RUN_DEFAULT);
  if (srv.ended != p->conns)
    ECHO_ERR(rep, "server: connections did not all end", 0);
  uv_loop_close(&srv.loop);
  return rep->errors ? 1 : 0;
}

/* ---- echo client ----------------------------------------------------------------------- */

typedef struct uec {
  uv_loop_t loop;
  uv_timer_t window;
  const akb_echo_params *p;
  akb_echo_report *rep;
  bool running;
  unsigned connected;
  double t0;
  struct uec_conn **conns;
} uec;

typedef struct uec_conn {
  uv_tcp_t tcp;
  uv_connect_t creq;
  uv_write_t wreq;
  uec *cl;
  unsigned got;
  char *msg;
  char inbuf[65536];
} uec_conn;

static void uec_closed(uv_handle_t *h)
{
  uec_conn *c = (uec_conn *)h;
  free(c->msg);
  free(c);
}

static void uec_written(uv_write_t *req, int status)
{
  uec_conn *c = req->data;
  if (status < 0)
    ECHO_ERR(c->cl->rep, "client write", status);
}

static void uec_send(uec_conn *c)
{
  c->got = 0;
  uv_buf_t b = uv_buf_init(c->msg, c->cl->p->msg_size);
  c->wreq.data = c;
  int rc = uv_write(&c->wreq, (uv_stream_t *)&c->tcp, &b, 1, uec_written);
  if (rc < 0)
    ECHO_ERR(c->cl->rep, "client uv_write", rc);
}

static void uec_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
  (void)suggested;
  uec_conn *c = (uec_conn *)h;
  *buf = uv_buf_init(c->inbuf, sizeof(c->inbuf));
}

static void uec_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
  uec_conn *c = (uec_conn *)s;
  uec *cl = c->cl;
  if (n < 0) {
    ECHO_ERR(cl->rep, "client read", (int)n);
    uv_close((uv_handle_t *)s, uec_closed);
    return;
  }
  if (n == 0)
    return;
  if (c->got + (size_t)n > cl->p->msg_size || memcmp(c->msg + c->got, buf->base, (size_t)n)) {
    ECHO_ERR(cl->rep, "client: the echo differs", 0);
    uv_close((uv_handle_t *)s, uec_closed);
    return;
  }
  c->got += (unsigned)n;
  if (c->got < cl->p->msg_size)
    return;
  if (!cl->running) {
    uv_read_stop(s);
    uv_close((uv_handle_t *)s, uec_closed);
    return;
  }
  cl->rep->round_trips++;
  uec_send(c);
}

static void uec_window_closed(uv_timer_t *t)
{
  uec *cl = t->data;
  cl->running = false;
  cl->rep->wall_s = akb_now_s() - cl->t0;
  uv_close((uv_handle_t *)t, NULL);
}

static void uec_connected(uv_connect_t *req, int status)
{
  uec_conn *c = req->data;
  uec *cl = c->cl;
  if (status < 0) {
    ECHO_ERR(cl->rep, "client connect", status);
    uv_close((uv_handle_t *)&c->tcp, uec_closed);
    return;
  }
  uv_tcp_nodelay(&c->tcp, 1);
  uv_read_start((uv_stream_t *)&c->tcp, uec_alloc, uec_read);
  if (++cl->connected < cl->p->conns)
    return;
  cl->t0 = akb_now_s();
  cl->running = true;
  uv_timer_init(&cl->loop, &cl->window);
  cl->window.data = cl;
  uv_timer_start(&cl->window, uec_window_closed, (uint64_t)(cl->p->seconds * 1000), 0);
  for (unsigned i = 0; i < cl->p->conns; i++)
    uec_send(cl->conns[i]);
}

int akb_uv_echo_client(void *arg, void *report)
{
  const akb_echo_params *p = arg;
  akb_echo_report *rep = report;
  uec cl;
  memset(&cl, 0, sizeof(cl));
  cl.p = p;
  cl.rep = rep;
  uv_loop_init(&cl.loop);
  struct sockaddr_in a;
  uv_ip4_addr("127.0.0.1", p->port, &a);
  cl.conns = calloc(p->conns, sizeof(*cl.conns));
  for (unsigned i = 0; i < p->conns; i++) {
    uec_conn *c = calloc(1, sizeof(*c));
    c->msg = malloc(p->msg_size);
    for (unsigned j = 0; j < p->msg_size; j++)
      c->msg[j] = (char)(i * 31 + j);
    c->cl = &cl;
    cl.conns[i] = c;
    uv_tcp_init(&cl.loop, &c->tcp);
    c->creq.data = c;
    int rc = uv_tcp_connect(&c->creq, &c->tcp, (struct sockaddr *)&a, uec_connected);
    if (rc < 0) {
      ECHO_ERR(rep, "client uv_tcp_connect", rc);
      return 1;
    }
  }
  uv_run(&cl.loop, UV_RUN_DEFAULT);
  uv_loop_close(&cl.loop);
  free(cl.conns);
  return rep->errors ? 1 : 0;
}

/* libuv keeps a reserve fd (/dev/null, for EMFILE) from the first handle
 * to uv_loop_close, and a process-wide signal pipe from the first
 * uv_loop_init on: a throwaway loop makes the pipe, and the baseline is
 * taken around the real loop's life. */
static int uv_fd_baseline(void)
{
  uv_loop_t scratch;
  if (uv_loop_init(&scratch) == 0)
    uv_loop_close(&scratch);
  return akb_count_fds();
}

/* ---- conns server ------------------------------------------------------------------------ */

#define CONNS_ERR(rep, msg, err) uv_note(&(rep)->errors, (rep)->what, sizeof((rep)->what), msg, err)

typedef struct ucs {
  uv_loop_t loop;
  uv_tcp_t listener;
  const akb_conns_params *p;
  akb_conns_report *rep;
  uint64_t accepted, open;
  char inbuf[65536]; /* every connection reads into it: bytes are only counted */
} ucs;

typedef struct ucs_conn {
  uv_tcp_t tcp;
  uv_write_t wreq;
  ucs *srv;
  uint64_t got;
  bool acked;
} ucs_conn;

static char uv_ack_byte = 'k';

static void ucs_closed(uv_handle_t *h)
{
  ucs_conn *c = (ucs_conn *)h;
  ucs *srv = c->srv;
  free(c);
  if (--srv->open == 0 && srv->accepted == srv->p->conns)
    uv_close((uv_handle_t *)&srv->listener, NULL);
}

static void ucs_ack_written(uv_write_t *req, int status)
{
  ucs_conn *c = req->data;
  if (status < 0)
    CONNS_ERR(c->srv->rep, "server ack", status);
}

static void ucs_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
  (void)suggested;
  ucs_conn *c = (ucs_conn *)h;
  *buf = uv_buf_init(c->srv->inbuf, sizeof(c->srv->inbuf));
}

static void ucs_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
  (void)buf;
  ucs_conn *c = (ucs_conn *)s;
  ucs *srv = c->srv;
  if (n < 0) {
    if (n != UV_EOF)
      CONNS_ERR(srv->rep, "server read", (int)n);
    else if (c->acked)
      srv->rep->served++;
    else
      CONNS_ERR(srv->rep, "server: connection ended early", 0);
    uv_close((uv_handle_t *)s, ucs_closed);
    return;
  }
  c->got += (uint64_t)n;
  if (c->got > srv->p->bytes) {
    CONNS_ERR(srv->rep, "server: more bytes than sent", 0);
    return;
  }
  if (c->got == srv->p->bytes && !c->acked) {
    c->acked = true;
    uv_buf_t b = uv_buf_init(&uv_ack_byte, 1);
    c->wreq.data = c;
    int rc = uv_write(&c->wreq, s, &b, 1, ucs_ack_written);
    if (rc < 0)
      CONNS_ERR(srv->rep, "server uv_write", rc);
  }
}

static void ucs_connection(uv_stream_t *l, int status)
{
  ucs *srv = l->data;
  if (status < 0) {
    CONNS_ERR(srv->rep, "server accept", status);
    return;
  }
  ucs_conn *c = calloc(1, sizeof(*c));
  uv_tcp_init(&srv->loop, &c->tcp);
  c->srv = srv;
  if (uv_accept(l, (uv_stream_t *)&c->tcp) != 0) {
    CONNS_ERR(srv->rep, "server uv_accept", 0);
    uv_close((uv_handle_t *)&c->tcp, NULL);
    return;
  }
  srv->accepted++;
  if (++srv->open > srv->rep->held)
    srv->rep->held = srv->open;
  uv_read_start((uv_stream_t *)&c->tcp, ucs_alloc, ucs_read);
}

int akb_uv_conns_server(void *arg, void *report)
{
  const akb_conns_params *p = arg;
  akb_conns_report *rep = report;
  akb_raise_nofile();
  static ucs srv;
  memset(&srv, 0, sizeof(srv));
  srv.p = p;
  srv.rep = rep;
  rep->fds_before = uv_fd_baseline();
  uv_loop_init(&srv.loop);
  uv_tcp_init(&srv.loop, &srv.listener);
  srv.listener.data = &srv;
  double t0 = akb_now_s();
  int rc = uv_tcp_open(&srv.listener, p->listen_fd);
  if (rc == 0)
    rc = uv_listen((uv_stream_t *)&srv.listener, 4096, ucs_connection);
  if (rc < 0) {
    CONNS_ERR(rep, "server listen", rc);
    return 1;
  }
  uv_run(&srv.loop, UV_RUN_DEFAULT);
  rep->transfer_s = akb_now_s() - t0;
  uv_loop_close(&srv.loop);
  /* The inherited listening socket was closed with its handle. */
  rep->fds_after = akb_count_fds() + 1;
  return rep->errors || rep->served != p->conns ? 1 : 0;
}

/* ---- conns client -------------------------------------------------------------------------- */

typedef struct ucc {
  uv_loop_t loop;
  const akb_conns_params *p;
  akb_conns_report *rep;
  struct sockaddr_in addr;
  struct ucc_conn **conns;
  unsigned next, connected;
  unsigned started; /* transfers started */
  uv_idle_t pacer;  /* starts them a slice per iteration */
  uint64_t open;
  char *payload;
  double t0, t_connected;
} ucc;

typedef struct ucc_conn {
  uv_tcp_t tcp;
  uv_connect_t creq;
  uv_write_t wreq;
  ucc *cl;
  char ack;
  bool got_ack;
} ucc_conn;

static void ucc_connect_next(ucc *cl);

static void ucc_closed(uv_handle_t *h)
{
  ucc_conn *c = (ucc_conn *)h;
  c->cl->open--;
  free(c);
}

static void ucc_written(uv_write_t *req, int status)
{
  ucc_conn *c = req->data;
  if (status < 0)
    CONNS_ERR(c->cl->rep, "client write", status);
}

static void ucc_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
  (void)suggested;
  ucc_conn *c = (ucc_conn *)h;
  *buf = uv_buf_init(&c->ack, 1);
}

static void ucc_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
  (void)buf;
  ucc_conn *c = (ucc_conn *)s;
  if (n == 0)
    return;
  if (n == 1 && c->ack == uv_ack_byte)
    c->cl->rep->served++;
  else
    CONNS_ERR(c->cl->rep, "client: no ack", n < 0 ? (int)n : 0);
  uv_read_stop(s);
  uv_close((uv_handle_t *)s, ucc_closed);
}

/* A slice of transfers per loop iteration, as the asynckit client does
 * (wl_conns.c says why). */
static void ucc_start_slice(uv_idle_t *idle)
{
  ucc *cl = idle->data;
  unsigned end = cl->started + AKB_CONNS_SLICE;
  for (; cl->started < end && cl->started < cl->p->conns; cl->started++) {
    ucc_conn *c = cl->conns[cl->started];
    uv_read_start((uv_stream_t *)&c->tcp, ucc_alloc, ucc_read);
    uv_buf_t b = uv_buf_init(cl->payload, (unsigned)cl->p->bytes);
    c->wreq.data = c;
    int rc = uv_write(&c->wreq, (uv_stream_t *)&c->tcp, &b, 1, ucc_written);
    if (rc < 0)
      CONNS_ERR(cl->rep, "client uv_write", rc);
  }
  if (cl->started >= cl->p->conns)
    uv_close((uv_handle_t *)idle, NULL);
}

static void ucc_start_transfers(ucc *cl)
{
  cl->t_connected = akb_now_s();
  cl->rep->connect_s = cl->t_connected - cl->t0;
  uv_idle_init(&cl->loop, &cl->pacer);
  cl->pacer.data = cl;
  uv_idle_start(&cl->pacer, ucc_start_slice);
}

static void ucc_connected(uv_connect_t *req, int status)
{
  ucc_conn *c = req->data;
  ucc *cl = c->cl;
  if (status < 0) {
    CONNS_ERR(cl->rep, "client connect", status);
    uv_close((uv_handle_t *)&c->tcp, ucc_closed);
    return;
  }
  cl->connected++;
  if (cl->open > cl->rep->held)
    cl->rep->held = cl->open;
  if (cl->next < cl->p->conns)
    ucc_connect_next(cl);
  else if (cl->connected == cl->p->conns)
    ucc_start_transfers(cl);
}

static void ucc_connect_next(ucc *cl)
{
  ucc_conn *c = calloc(1, sizeof(*c));
  c->cl = cl;
  cl->conns[cl->next++] = c;
  uv_tcp_init(&cl->loop, &c->tcp);
  cl->open++;
  c->creq.data = c;
  int rc = uv_tcp_connect(&c->creq, &c->tcp, (struct sockaddr *)&cl->addr, ucc_connected);
  if (rc < 0) {
    CONNS_ERR(cl->rep, "client uv_tcp_connect", rc);
    uv_close((uv_handle_t *)&c->tcp, ucc_closed);
  }
}

int akb_uv_conns_client(void *arg, void *report)
{
  const akb_conns_params *p = arg;
  akb_conns_report *rep = report;
  close(p->listen_fd);
  akb_raise_nofile();
  static ucc cl;
  memset(&cl, 0, sizeof(cl));
  cl.p = p;
  cl.rep = rep;
  uv_ip4_addr("127.0.0.1", p->port, &cl.addr);
  cl.conns = calloc(p->conns, sizeof(*cl.conns));
  cl.payload = malloc(p->bytes);
  memset(cl.payload, 'p', p->bytes);
  rep->fds_before = uv_fd_baseline();
  uv_loop_init(&cl.loop);
  cl.t0 = akb_now_s();
  for (unsigned i = 0; i < p->connect_window && cl.next < p->conns; i++)
    ucc_connect_next(&cl);
  uv_run(&cl.loop, UV_RUN_DEFAULT);
  rep->transfer_s = akb_now_s() - cl.t_connected;
  uv_loop_close(&cl.loop);
  rep->fds_after = akb_count_fds();
  free(cl.conns);
  free(cl.payload);
  return rep->errors || rep->served != p->conns ? 1 : 0;
}
