/* conn.c: connections and the per-host keep-alive pools. A host pool (one
 * per scheme, host, port and zone) counts its open connections against the
 * client's cap, keeps the idle ones for reuse (most recent first: the one
 * least likely to have been closed by the server), closes those idle
 * longer than keepalive_timeout_ns, and queues the requests that found the
 * cap reached. What a connection carries is exchange.c's.
 *
 * Idle expiry costs one timer per client, not one per connection: the
 * sweep is armed for the oldest idle connection's expiry while the client
 * has requests (a timer is work that keeps a loop running, and a client
 * with nothing to do must let its loop go idle); a request taking an idle
 * connection also drops the expired ones first, so a client that was
 * quiet for a while never reuses a connection past its time. */
#include "http/internal.h"

#include <stdio.h>
#include <string.h>

/* The pool's key: the origin, and the proxy it is reached through. http
 * through an http proxy: the proxy alone (one pool carries every origin's
 * requests, as curl's connections to a proxy do). Written into room (room
 * bytes) when it fits, else into a new buffer (the caller frees what is
 * not room): every request looks its pool up, and a key made for the
 * look-up alone was an allocation per request. */
static char *host_key(const ak_url *url, const ak__proxy *proxy, char *room, size_t room_len)
{
  const char *via = proxy ? proxy->display : "";
  const char *who = proxy && proxy->user ? proxy->user : "";
  size_t n = strlen(url->scheme) + strlen(url->host) + (url->zone ? strlen(url->zone) : 0) +
             strlen(via) + strlen(who) + 32;
  char *k = n <= room_len ? room : ak__malloc(n);
  if (!k)
    return NULL;
  char *e = k;
  if (proxy && proxy->kind == AK__PROXY_HTTP && strcmp(url->scheme, "http") == 0) {
    e = ak__put(e, "forward ");
  } else {
    e = ak__put(e, url->scheme);
    *e++ = ' ';
    e = ak__put(e, url->host);
    *e++ = ' ';
    e = ak__put_u64(e, url->port);
    *e++ = ' ';
    e = ak__put(e, url->zone ? url->zone : "");
    *e++ = ' ';
  }
  e = ak__put(e, via);
  *e++ = ' ';
  *ak__put(e, who) = '\0';
  return k;
}

ak__http_host *ak__http_host_of(ak_http_client *c, const ak_url *url, const ak__proxy *proxy)
{
  char room[256];
  char *key = host_key(url, proxy, room, sizeof room);
  if (!key)
    return NULL;
  ak__http_host **prev = &c->hosts;
  for (ak__http_host *h = c->hosts; h; prev = &h->next, h = h->next) {
    if (strcmp(h->key, key) == 0) {
      if (key != room)
        ak__free(key);
      /* To the front: downloads come in runs of one host. */
      *prev = h->next;
      h->next = c->hosts;
      c->hosts = h;
      return h;
    }
  }
  if (key == room && !(key = ak__strdup(room)))
    return NULL;
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
  conn->buf_slot = -1;
  conn->tr = &ak__http_plain;
  host->open++;
  c->open_conns++;
  return conn;
}

static void conn_close(ak__http_conn *conn);

static bool is_expired(const ak__http_conn *conn, int64_t now)
{
  int64_t t = conn->client->opts.keepalive_timeout_ns;
  return t != AK_FOREVER && now - conn->idle_since >= t;
}

/* Closes host's idle connections past their time: the list is most recent
 * first, so the expired ones are a tail. */
static void expire_host(ak__http_host *host, int64_t now)
{
  ak__http_conn **pp = &host->idle;
  while (*pp && !is_expired(*pp, now))
    pp = &(*pp)->next_idle;
  ak__http_conn *conn = *pp;
  *pp = NULL;
  while (conn) {
    ak__http_conn *next = conn->next_idle;
    conn_close(conn);
    conn = next;
  }
}

static void sweep_fire(void *arg)
{
  ak_http_client *c = arg;
  c->sweep = NULL;
  int64_t now = ak_now_ns();
  for (ak__http_host *h = c->hosts; h; h = h->next)
    expire_host(h, now);
  ak__http_sweep_arm(c);
}

void ak__http_sweep_arm(ak_http_client *c)
{
  int64_t t = c->opts.keepalive_timeout_ns;
  if (c->sweep || c->active == 0 || t == AK_FOREVER)
    return;
  int64_t oldest = INT64_MAX;
  for (ak__http_host *h = c->hosts; h; h = h->next)
    for (ak__http_conn *conn = h->idle; conn; conn = conn->next_idle)
      if (conn->idle_since < oldest)
        oldest = conn->idle_since;
  if (oldest == INT64_MAX)
    return;
  int64_t wait = oldest + t - ak_now_ns();
  c->sweep = ak_call_later(c->loop, wait > 0 ? wait : 0, sweep_fire, c);
  /* NULL (ENOMEM): expired connections go at the next take instead. */
}

void ak__http_sweep_stop(ak_http_client *c)
{
  if (c->sweep) {
    ak_timer_cancel(c->loop, c->sweep);
    c->sweep = NULL;
  }
}

ak__http_conn *ak__http_conn_take_idle(ak__http_host *host)
{
  if (host->idle)
    expire_host(host, ak_now_ns());
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
  if (conn->buf_slot >= 0)
    ak_buffer_unregister(c->loop, conn->buf_slot);
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
    conn->idle_since = ak_now_ns();
    conn->next_idle = host->idle;
    host->idle = conn;
    ak__http_sweep_arm(conn->client);
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
