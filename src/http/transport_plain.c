/* transport_plain.c: the transport seam's plain-socket side: a connection's
 * bytes go straight to the socket by ring sends and receives (into the
 * connection's registered buffer, a READ_FIXED, where it has one). The TLS
 * side (https) has the same four calls over a TLS session. */
#include "http/internal.h"

static ak_future *plain_start(ak__http_conn *c)
{
  (void)c;
  return NULL; /* no handshake */
}

static ak_future *plain_recv(ak__http_conn *c, void *buf, size_t len)
{
  /* Into the connection's registered buffer where it has one (buf_slot is
   * -1 otherwise, and ak_recv_registered is then a plain recv). */
  bool inside = (char *)buf >= c->buf && (char *)buf + len <= c->buf + c->buf_size;
  int slot = inside ? c->buf_slot : -1;
  return ak_recv_registered(c->client->loop, c->fd, buf, len, slot);
}

static ak_future *plain_send_all(ak__http_conn *c, const void *buf, size_t len)
{
  return ak_send_all(c->client->loop, c->fd, buf, len, 0);
}

static ak_future *plain_close(ak__http_conn *c)
{
  return ak_close(c->client->loop, c->fd);
}

const ak__http_transport ak__http_plain = {
    .name = "plain",
    .start = plain_start,
    .recv = plain_recv,
    .send_all = plain_send_all,
    .close = plain_close,
};
