/* transport_tls.c: the transport seam's TLS side (https): a client session
 * of the TLS layer (tls.h) over the connection's socket, made and
 * handshaken when the TCP connect is done, with the host name of the URL for
 * SNI and the certificate check. The client's one TLS config (CA bundle or
 * --cacert, insecure only when asked) is made at the first https request
 * and shared by its connections, so sessions resume. */
#include "http/internal.h"

bool ak__http_tls_available(void)
{
  return true;
}

int ak__http_tls_config(ak_http_client *c, ak_tls_config **out)
{
  if (!c->tls_config) {
    ak_tls_client_options o = {
        .ca_file = c->opts.cacert,
        .flags = c->opts.insecure ? AK_TLS_INSECURE_NO_VERIFY : 0,
    };
    int rc = ak_tls_client_config_new(&o, &c->tls_config);
    if (rc < 0)
      return rc;
  }
  *out = c->tls_config;
  return 0;
}

static ak_future *tls_start(ak__http_conn *conn)
{
  ak_tls_config *cfg;
  ak_loop *loop = conn->client->loop;
  int rc = ak__http_tls_config(conn->client, &cfg);
  if (rc == 0)
    rc = ak_tls_client_new(loop, cfg, conn->fd, conn->tls_host, (ak_tls **)&conn->tls);
  if (rc < 0)
    return ak__future_failed(loop, rc, rc == AK_ETLSCONFIG ? ak_tls_config_error() : NULL);
  return ak_tls_handshake(conn->tls);
}

static ak_future *tls_recv(ak__http_conn *conn, void *buf, size_t len)
{
  return ak_tls_read(conn->tls, buf, len);
}

static ak_future *tls_send_all(ak__http_conn *conn, const void *buf, size_t len)
{
  return ak_tls_write(conn->tls, buf, len);
}

static ak_future *tls_close(ak__http_conn *conn)
{
  ak_tls_free(conn->tls); /* ops in flight fail with AK_ETLSCLOSED */
  conn->tls = NULL;
  return ak_close(conn->client->loop, conn->fd);
}

const ak__http_transport ak__http_tls = {
    .name = "tls",
    .start = tls_start,
    .recv = tls_recv,
    .send_all = tls_send_all,
    .close = tls_close,
};
