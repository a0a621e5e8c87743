/* echo_server.c: a TCP echo server on asynckit: a multishot accept stream
 * hands out connections; each connection is a multishot recv stream on one
 * shared provided-buffer ring, and what arrives goes back with send all.
 *
 *   echo_server [--port P] [--host IP] [--max-conns N]
 *
 * Prints "listening on PORT" (P = 0: the kernel picks) and serves until
 * interrupted, or until N connections have come and gone (--max-conns),
 * then prints how many bytes it echoed. Exit status 0 when every connection
 * ended cleanly.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <asynckit.h>

typedef struct server {
  ak_loop *loop;
  ak_buf_ring *ring;    /* shared by every connection's recv stream */
  ak_future *accepting; /* the accept stream */
  long max_conns;       /* stop accepting after this many (0: never) */
  long accepted;
  long finished;
  long failed; /* connections that ended with an error */
  unsigned long long echoed;
} server;

/* One connection: bytes wait in `pending` while a send is in flight; the
 * send owns `out` until its future settles. */
typedef struct conn {
  server *srv;
  int fd;
  unsigned char *pending, *out;
  size_t npending, cap_pending, cap_out;
  bool sending; /* a send all is in flight */
  bool ended;   /* the recv stream has settled */
  int error;    /* the first error seen */
} conn;

static bool grow(unsigned char **buf, size_t *cap, size_t need)
{
  if (need <= *cap)
    return true;
  size_t n = *cap ? *cap : 4096;
  while (n < need)
    n *= 2;
  unsigned char *p = realloc(*buf, n);
  if (!p)
    return false;
  *buf = p;
  *cap = n;
  return true;
}

static void conn_finish(conn *c)
{
  server *srv = c->srv;
  ak_future_release(ak_close(srv->loop, c->fd)); /* settles on its own */
  srv->finished++;
  if (c->error)
    srv->failed++;
  free(c->pending);
  free(c->out);
  free(c);
  if (srv->max_conns && srv->finished >= srv->max_conns)
    ak_future_cancel(srv->accepting); /* the loop runs dry and returns */
}

static void send_pending(conn *c);

static void sent(ak_future *f, void *arg)
{
  conn *c = arg;
  c->sending = false;
  int64_t res = ak_future_result(f);
  if (res < 0 && !c->error)
    c->error = (int)res;
  else if (res > 0)
    c->srv->echoed += (unsigned long long)res;
  if (c->npending && !c->error)
    send_pending(c);
  else if (c->ended)
    conn_finish(c);
}

static void send_pending(conn *c)
{
  /* Swap the buffers: the send owns `out` until it settles. */
  unsigned char *tmp = c->out;
  size_t tmp_cap = c->cap_out;
  c->out = c->pending;
  c->cap_out = c->cap_pending;
  c->pending = tmp;
  c->cap_pending = tmp_cap;
  size_t n = c->npending;
  c->npending = 0;
  ak_future *f = ak_send_all(c->srv->loop, c->fd, c->out, n, 0);
  c->sending = true;
  if (!f || ak_future_on_settle(f, sent, c) < 0) {
    fprintf(stderr, "echo_server: out of memory\n");
    exit(1);
  }
  ak_future_release(f);
}

static ak_stream_action received(ak_loop *loop, const void *data, size_t len, void *arg)
{
  (void)loop;
  conn *c = arg;
  if (c->error)
    return AK_STREAM_STOP;
  if (!grow(&c->pending, &c->cap_pending, c->npending + len)) {
    c->error = -12; /* -ENOMEM */
    return AK_STREAM_STOP;
  }
  memcpy(c->pending + c->npending, data, len); /* the ring wants its buffer back */
  c->npending += len;
  if (!c->sending)
    send_pending(c);
  return AK_STREAM_CONTINUE;
}

static void recv_ended(ak_future *f, void *arg)
{
  conn *c = arg;
  c->ended = true;
  if (ak_future_is_error(f) && !c->error)
    c->error = (int)ak_future_result(f);
  if (!c->sending)
    conn_finish(c);
}

static ak_stream_action accepted(ak_loop *loop, int fd, void *arg)
{
  server *srv = arg;
  if (fd < 0) {
    fprintf(stderr, "echo_server: accept: %s\n", ak_strerror(fd));
    return AK_STREAM_CONTINUE; /* EMFILE and the like pass */
  }
  conn *c = calloc(1, sizeof(*c));
  if (!c) {
    fprintf(stderr, "echo_server: out of memory\n");
    exit(1);
  }
  c->srv = srv;
  c->fd = fd;
  srv->accepted++;
  ak_future *rs = ak_recv_stream(loop, fd, srv->ring, received, c);
  if (!rs || ak_future_on_settle(rs, recv_ended, c) < 0) {
    fprintf(stderr, "echo_server: out of memory\n");
    exit(1);
  }
  ak_future_release(rs);
  bool more = !srv->max_conns || srv->accepted < srv->max_conns;
  return more ? AK_STREAM_CONTINUE : AK_STREAM_STOP;
}

int main(int argc, char **argv)
{
  const char *host = "127.0.0.1";
  long port = 0;
  server srv = {0};
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--port") && i + 1 < argc) {
      port = strtol(argv[++i], NULL, 10);
    } else if (!strcmp(argv[i], "--host") && i + 1 < argc) {
      host = argv[++i];
    } else if (!strcmp(argv[i], "--max-conns") && i + 1 < argc) {
      srv.max_conns = strtol(argv[++i], NULL, 10);
    } else {
      fprintf(stderr, "usage: echo_server [--port P] [--host IP] [--max-conns N]\n");
      return 2;
    }
  }
  int rc = ak_loop_new(&srv.loop, NULL);
  if (rc < 0) {
    fprintf(stderr, "echo_server: loop: %s\n", ak_strerror(rc));
    return 1;
  }
  rc = ak_buf_ring_new(srv.loop, 256, 16384, &srv.ring);
  int lfd = rc < 0 ? rc : ak_tcp_listen(host, (uint16_t)port, 1024);
  if (lfd < 0) {
    fprintf(stderr, "echo_server: listen on %s:%ld: %s\n", host, port, ak_strerror(lfd));
    return 1;
  }
  printf("listening on %d\n", ak_socket_port(lfd));
  fflush(stdout);

  srv.accepting = ak_accept_stream(srv.loop, lfd, 0, accepted, &srv);
  rc = ak_loop_run(srv.loop, AK_RUN_DEFAULT); /* until every connection is done */
  if (ak_future_is_error(srv.accepting) && !ak_future_is_cancelled(srv.accepting))
    fprintf(stderr, "echo_server: accept stream: %s\n",
            ak_strerror((int)ak_future_result(srv.accepting)));
  ak_future_release(srv.accepting);
  printf("served %ld connections (%ld failed), echoed %llu bytes\n", srv.finished, srv.failed,
         srv.echoed);
  ak_buf_ring_free(srv.ring);
  ak_loop_free(srv.loop);
  return rc < 0 || srv.failed ? 1 : 0;
}
