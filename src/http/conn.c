/* conn.c: connections and the per-host keep-alive pools. A host pool (one
 * per scheme, host, port and zone) counts its open connections against the
 * client's cap, keeps the idle ones for reuse (most recent first: the one
 * least likely to have been closed by the server), and queues the requests
 * that found the cap reached. What a connection carries is exchange.c's. */
#include "http/internal.h"

#include <stdio.h>
#include <string.h>

static char *host_key(const ak_url *url)
{
  size_t n = strlen(url->scheme) + strlen(url->host) + (url->zone ? strlen(url->zone) : 0) + 16;
  char *k = ak__malloc(n);
  if (k)
    snprintf(k, n, "%s %s %u %s", url->scheme, url->host, url->port, url->zone ? url->zone : "");
  return k;
}

ak__http_host *ak__http_host_of(ak_http_client *c, const ak_url *url)
{
  char *key = host_key(url);
  if (!key)
    return NULL;
  ak__http_host **prev = &c->hosts;
  for (ak__http_host *h = c->hosts; h; prev = &h->next, h = h->next) {
    if (strcmp(h->key, key) == 0) {
      ak__free(key);
      /* To the front: downloads come in runs of one host. */
      *prev = h->next;
      h->next = c->hosts;
      c->hosts = h;
      return h;
    }
  }
  ak__http_host *h = ak__calloc(1, sizeof *h);
  if (!h) {
    ak__free(key);
    return NULL;
  }
  h->key = key;
  h->next = c->hosts;
  c->hosts = h;
  return h;
}

ak__http_conn *ak__http_conn_new(ak_http_client *c, ak__http_host *host)
{
  ak__http_conn *conn = ak__calloc(1, sizeof *conn);
  if (!conn)
    return NULL;
  conn->client = c;
  conn->host = host;
  conn->fd = -1;
  conn->tr = &ak__http_plain;
  host->open++;
  c->open_conns++;
  return conn;
}

ak__http_conn *ak__http_conn_take_idle(ak__http_host *host)
{
  ak__http_conn *conn = host->idle;
  if (conn) {
    host->idle = conn->next_idle;
    conn->next_idle = NULL;
  }
  return conn;
}

static void conn_close(ak__http_conn *conn)
{
  ak_http_client *c = conn->client;
  if (conn->fd >= 0) {
    ak_future *f = conn->tr->close(conn);
    ak_future_release(f); /* the close runs on; nothing waits for it */
  }
  conn->host->open--;
  c->open_conns--;
  ak__free(conn->tls_host);
  ak__free(conn->buf);
  ak__free(conn);
}

void ak__http_conn_release(ak__http_conn *conn, bool keep)
{
  ak__http_host *host = conn->host;
  if (keep) {
    ak__http_exchange *ex = ak__http_host_pop_waiter(host);
    if (ex) {
      ak__http_exchange_resume(ex, conn);
      return;
    }
    conn->next_idle = host->idle;
    host->idle = conn;
    return;
  }
  conn_close(conn);
  ak__http_exchange *ex = ak__http_host_pop_waiter(host);
  if (ex)
    ak__http_exchange_resume(ex, NULL);
}

void ak__http_close_idle(ak_http_client *c)
{
  for (ak__http_host *h = c->hosts; h; h = h->next) {
    ak__http_conn *conn;
    while ((conn = ak__http_conn_take_idle(h)))
      conn_close(conn);
  }
}
