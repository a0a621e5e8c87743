/* echo_client.c: a TCP echo client on asynckit: C connections made by host
 * name (resolution on the pool, each address tried with a deadline), each
 * sending M messages of S bytes one after the other and checking every byte
 * that comes back through a multishot recv stream.
 *
 *   echo_client --port P [--host H] [--conns C] [--messages M] [--size S]
 *
 * Prints the round trips per second. Exit status 0 when every byte came back
 * as sent.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <asynckit.h>

typedef struct client {
  ak_loop *loop;
  ak_buf_ring *ring;
  long messages; /* per connection */
  size_t size;   /* bytes per message */
  long done;     /* connections finished */
  long failed;
  long round_trips;
} client;

typedef struct conn {
  client *cl;
  int id;
  int fd;
  long sent;          /* messages sent so far */
  size_t got;         /* bytes of the current echo received */
  unsigned char *msg; /* the current message (the send owns it meanwhile) */
  bool bad;           /* a byte came back wrong */
} conn;

static void fill(conn *c)
{
  for (size_t i = 0; i < c->cl->size; i++)
    c->msg[i] = (unsigned char)(c->id * 131 + c->sent * 7 + (long)i);
}

static void conn_end(conn *c, const char *why, int err)
{
  client *cl = c->cl;
  if (why) {
    fprintf(stderr, "echo_client: connection %d: %s%s%s\n", c->id, why, err ? ": " : "",
            err ? ak_strerror(err) : "");
    cl->failed++;
  }
  if (c->fd >= 0)
    ak_future_release(ak_close(cl->loop, c->fd));
  cl->done++;
  free(c->msg);
  free(c);
}

static void send_next(conn *c)
{
  fill(c);
  c->sent++;
  c->got = 0;
  ak_future_release(ak_send_all(c->cl->loop, c->fd, c->msg, c->cl->size, 0));
}

static ak_stream_action received(ak_loop *loop, const void *data, size_t len, void *arg)
{
  (void)loop;
  conn *c = arg;
  if (c->got + len > c->cl->size || memcmp(data, c->msg + c->got, len) != 0) {
    c->bad = true;
    return AK_STREAM_STOP;
  }
  c->got += len;
  if (c->got < c->cl->size)
    return AK_STREAM_CONTINUE;
  c->cl->round_trips++;
  if (c->sent >= c->cl->messages)
    return AK_STREAM_STOP;
  send_next(c);
  return AK_STREAM_CONTINUE;
}

static void recv_ended(ak_future *f, void *arg)
{
  conn *c = arg;
  if (c->bad)
    conn_end(c, "echo differs from what was sent", 0);
  else if (ak_future_is_error(f))
    conn_end(c, "receive", (int)ak_future_result(f));
  else if (c->sent < c->cl->messages || c->got < c->cl->size)
    conn_end(c, "server closed early", 0);
  else
    conn_end(c, NULL, 0);
}

static void connected(ak_future *f, void *arg)
{
  conn *c = arg;
  if (ak_future_is_error(f)) {
    const char *detail = ak_future_detail(f);
    conn_end(c, detail ? detail : "connect", detail ? 0 : (int)ak_future_result(f));
    return;
  }
  c->fd = (int)ak_future_result(f);
  ak_future *rs = ak_recv_stream(c->cl->loop, c->fd, c->cl->ring, received, c);
  if (!rs || ak_future_on_settle(rs, recv_ended, c) < 0) {
    fprintf(stderr, "echo_client: out of memory\n");
    exit(1);
  }
  ak_future_release(rs);
  send_next(c);
}

int main(int argc, char **argv)
{
  const char *host = "127.0.0.1";
  long port = -1, conns = 4;
  client cl = {.messages = 1000, .size = 64};
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    const char *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!v) {
      port = -1;
      break;
    }
    if (!strcmp(a, "--port"))
      port = strtol(v, NULL, 10);
    else if (!strcmp(a, "--host"))
      host = v;
    else if (!strcmp(a, "--conns"))
      conns = strtol(v, NULL, 10);
    else if (!strcmp(a, "--messages"))
      cl.messages = strtol(v, NULL, 10);
    else if (!strcmp(a, "--size"))
      cl.size = (size_t)strtoul(v, NULL, 10);
    else
      port = -1;
    i++;
  }
  if (port < 0 || port > 65535 || conns < 1 || cl.messages < 1 || cl.size < 1) {
    fprintf(stderr, "usage: echo_client --port P [--host H] [--conns C] [--messages M] "
                    "[--size S]\n");
    return 2;
  }
  int rc = ak_loop_new(&cl.loop, NULL);
  if (rc == 0)
    rc = ak_buf_ring_new(cl.loop, 256, 16384, &cl.ring);
  if (rc < 0) {
    fprintf(stderr, "echo_client: %s\n", ak_strerror(rc));
    return 1;
  }
  int64_t t0 = ak_now_ns();
  for (long i = 0; i < conns; i++) {
    conn *c = calloc(1, sizeof(*c));
    if (c)
      c->msg = malloc(cl.size);
    if (!c || !c->msg) {
      fprintf(stderr, "echo_client: out of memory\n");
      return 1;
    }
    c->cl = &cl;
    c->id = (int)i;
    c->fd = -1;
    ak_future *f = ak_connect_host(cl.loop, host, (uint16_t)port, 5000000000LL);
    if (!f || ak_future_on_settle(f, connected, c) < 0) {
      fprintf(stderr, "echo_client: out of memory\n");
      return 1;
    }
    ak_future_release(f);
  }
  rc = ak_loop_run(cl.loop, AK_RUN_DEFAULT);
  double secs = (double)(ak_now_ns() - t0) / 1e9;
  printf("%ld connections, %ld round trips of %zu bytes in %.3f s: %.0f round trips/s%s\n", conns,
         cl.round_trips, cl.size, secs, (double)cl.round_trips / secs,
         cl.failed ? " (with failures)" : "");
  ak_buf_ring_free(cl.ring);
  ak_loop_free(cl.loop);
  return rc < 0 || cl.failed || cl.round_trips != conns * cl.messages ? 1 : 0;
}
