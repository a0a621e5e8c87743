/* client.c: the client object (its options with defaults applied, its host
 * pools, its counters), the public entry points of http.h, and how a
 * finished response settles its request's future (AK_HTTP_FAIL_ON_STATUS).
 * The work of a request is exchange.c's. */
#include "http/internal.h"

#include <stdio.h>
#include <string.h>

static int64_t or_default(int64_t v, int64_t dflt)
{
  return v == 0 ? dflt : v;
}

int ak_http_client_new(ak_loop *loop, const ak_http_options *opts, ak_http_client **out)
{
  if (!loop || !out)
    return -EINVAL;
  ak_http_options none = {0};
  if (!opts)
    opts = &none;
  ak_http_client *c = ak__calloc(1, sizeof *c);
  if (!c)
    return -ENOMEM;
  c->loop = loop;
  c->idle_trust_ns = AK__HTTP_IDLE_TRUST_NS;
  ak__http_opts *o = &c->opts;
  o->max_conns_per_host = opts->max_conns_per_host ? opts->max_conns_per_host : 6;
  o->connect_timeout_ns = or_default(opts->connect_timeout_ns, INT64_C(30000000000));
  o->idle_timeout_ns = or_default(opts->idle_timeout_ns, INT64_C(60000000000));
  o->head_timeout_ns = or_default(opts->head_timeout_ns, INT64_C(60000000000));
  o->total_timeout_ns = or_default(opts->total_timeout_ns, AK_FOREVER);
  o->keepalive_timeout_ns = or_default(opts->keepalive_timeout_ns, INT64_C(30000000000));
  o->max_redirects = opts->max_redirects == 0 ? 10 : opts->max_redirects;
  o->max_head_bytes = opts->max_head_bytes ? opts->max_head_bytes : 64 * 1024;
  o->max_body_bytes = opts->max_body_bytes > 0 ? opts->max_body_bytes : INT64_C(1) << 44;
  o->recv_buffer = opts->recv_buffer ? opts->recv_buffer : 256 * 1024;
  o->max_rate = opts->max_rate > 0 ? opts->max_rate : 0;
  o->pipeline_depth =
      opts->pipeline_depth < AK_HTTP_PIPELINE_MAX ? opts->pipeline_depth : AK_HTTP_PIPELINE_MAX;
  c->rate_tokens = (double)o->max_rate;
  c->rate_at = ak_now_ns();
  char ua[64];
  snprintf(ua, sizeof ua, "asynckit/%s", ak_version_string());
  o->user_agent = ak__strdup(opts->user_agent ? opts->user_agent : ua);
  o->cacert = opts->cacert ? ak__strdup(opts->cacert) : NULL;
  o->insecure = opts->insecure;
  o->ip_family = opts->ip_family;
  int prc = ak__proxy_parse(opts->http_proxy, &c->http_proxy);
  if (prc == 0)
    prc = ak__proxy_parse(opts->https_proxy, &c->https_proxy);
  if (prc == 0 && opts->no_proxy && opts->no_proxy[0]) {
    prc = ak_http_no_proxy_check(opts->no_proxy);
    if (prc == 0 && !(c->no_proxy = ak__strdup(opts->no_proxy)))
      prc = -ENOMEM;
  }
  if (prc < 0) {
    ak__proxy_free(c->http_proxy);
    ak__proxy_free(c->https_proxy);
    ak__free(c->no_proxy);
    ak__free(o->user_agent);
    ak__free(o->cacert);
    ak__free(c);
    return prc;
  }
  bool bad = (opts->user_agent && strpbrk(opts->user_agent, "\r\n")) || o->connect_timeout_ns < -1 ||
             o->idle_timeout_ns < -1 || o->head_timeout_ns < -1 || o->total_timeout_ns < -1 ||
             (o->ip_family != AF_UNSPEC && o->ip_family != AF_INET && o->ip_family != AF_INET6) ||
             o->keepalive_timeout_ns < -1;
  if (!o->user_agent || (opts->cacert && !o->cacert) || bad) {
    ak__proxy_free(c->http_proxy);
    ak__proxy_free(c->https_proxy);
    ak__free(c->no_proxy);
    ak__free(o->user_agent);
    ak__free(o->cacert);
    ak__free(c);
    return bad ? -EINVAL : -ENOMEM;
  }
  *out = c;
  return 0;
}

int ak_http_client_free(ak_http_client *c)
{
  if (!c)
    return 0;
  if (c->active > 0)
    return -EBUSY;
  ak__http_sweep_stop(c);
  ak__http_close_idle(c);
  ak__http_spares_free(c);
  ak__http_host *h = c->hosts;
  while (h) {
    ak__http_host *next = h->next;
    ak__free(h->key);
    ak__free(h);
    h = next;
  }
  ak_tls_config_release(c->tls_config);
  ak__free(c->opts.user_agent);
  ak__free(c->opts.cacert);
  ak__proxy_free(c->http_proxy);
  ak__proxy_free(c->https_proxy);
  ak__free(c->no_proxy);
  ak__free(c);
  return 0;
}

size_t ak_http_client_open_conns(const ak_http_client *c)
{
  return c->open_conns;
}

uint64_t ak_http_client_reused(const ak_http_client *c)
{
  return c->reused;
}

ak_future *ak_http_get(ak_http_client *c, const ak_http_request *req)
{
  if (!ak_loop_is_owner(c->loop))
    return ak__future_failed(c->loop, AK_ENOTOWNER, NULL);
  return ak__http_exchange_start(c, req);
}

void ak__http_settle_response(ak_future *fut, ak_http_response *r, unsigned flags)
{
  if ((flags & AK_HTTP_FAIL_ON_STATUS) && r->status >= 400) {
    /* FAILED, with the response kept as the value: ak_future_value shows
     * only a DONE future's value, ak_http_response_of shows this one. */
    char detail[240];
    snprintf(detail, sizeof detail, "%.150s: %d %.60s", r->url ? r->url : "", r->status,
             r->reason ? r->reason : "");
    if (ak_future_set_value(fut, r, ak__http_response_dtor) < 0)
      ak__http_response_free(r); /* NEVER: only the exchange settles fut */
    ak_future_fail(fut, AK_EHTTPSTATUS, detail);
    return;
  }
  if (ak_future_set(fut, r->status, r, ak__http_response_dtor) < 0)
    ak__http_response_free(r);
}

int ak_http_head_pipeline(ak_http_client *c, const ak_http_request *reqs, size_t n,
                          ak_future **out)
{
  if (!c || !reqs || !out || n == 0)
    return -EINVAL;
  if (!ak_loop_is_owner(c->loop))
    return AK_ENOTOWNER;
  return ak__http_pipeline_start(c, reqs, n, out);
}

const ak_http_response *ak_http_response_of(const ak_future *f)
{
  if (!f)
    return NULL;
  ak_state st = ak_future_state(f);
  /* The destructor says the value is a response: a then-step or promise
   * failing with AK_EHTTPSTATUS and a value of its own gets NULL. */
  bool ours = f->dtor == ak__http_response_dtor;
  if (st == AK_DONE || (st == AK_FAILED && ak_future_result(f) == AK_EHTTPSTATUS))
    return ours ? f->value : NULL;
  return NULL;
}
