/* happy_eyeballs.c: connect by name in the manner of RFC 8305 (Happy
 * Eyeballs v2): the name's A and AAAA records come from one getaddrinfo
 * (AF_UNSPEC: glibc asks both at once, and sorts the answers by RFC 6724,
 * which puts the preferred family first); the addresses are interleaved
 * by family, starting with the first answer's; one attempt starts, and the
 * next starts when the stagger (250 ms by default, RFC 8305's Connection
 * Attempt Delay) passes or as soon as an attempt fails, whichever is
 * first; the first connection made wins and every other attempt is
 * cancelled, its socket closed once the kernel has let it go. Each attempt
 * keeps its own deadline (a linked kernel timeout on its connect).
 *
 * The record lives until its future has settled and the last attempt's
 * completion is in: a cancelled attempt still owns its socket until then.
 *
 * Not here: the ring ops (net.c), getaddrinfo on the pool (net_resolve.c). */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netdb.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "net/internal.h"

enum { HE_MAX_ADDRS = 64 }; /* a name with more is cut here (RFC 8305 asks no bound) */

typedef struct he_attempt {
  struct sockaddr_storage addr;
  socklen_t addr_len;
  int family;
  int fd;                      /* the socket being connected, or -1 */
  ak_future *op;               /* its connect in flight, or NULL */
} he_attempt;

typedef struct he {
  ak_loop *loop;
  ak_future *fut;              /* the connect's future (one reference), NULL once settled */
  ak_future *resolve;          /* the lookup in flight, or NULL */
  ak_connect_options o;
  char port[8];
  he_attempt *a;               /* in the order they are tried: cap of them,
                                  made when the addresses are known (64 in
                                  the struct were 9.7 KiB zeroed for every
                                  connection, three fresh pages each, where
                                  a numeric host has one address) */
  size_t cap;
  size_t n;
  size_t next;                 /* the next attempt to start */
  unsigned in_flight;          /* connects not yet completed */
  ak_timer *stagger;           /* starts the next attempt, or NULL */
  bool cancelled;
  int last_err;
  char detail[128];
} he;

static void describe(he *h, const he_attempt *at, int err)
{
  char ip[INET6_ADDRSTRLEN] = "?";
  unsigned port = 0;
  if (at->family == AF_INET) {
    const struct sockaddr_in *in = (const void *)&at->addr;
    inet_ntop(AF_INET, &in->sin_addr, ip, sizeof ip);
    port = ntohs(in->sin_port);
  } else {
    const struct sockaddr_in6 *in6 = (const void *)&at->addr;
    inet_ntop(AF_INET6, &in6->sin6_addr, ip, sizeof ip);
    port = ntohs(in6->sin6_port);
  }
  bool v6 = at->family == AF_INET6;
  snprintf(h->detail, sizeof h->detail, "connect to %s%s%s:%u: %s", v6 ? "[" : "", ip, v6 ? "]" : "",
           port, ak_strerror(err));
  h->last_err = err;
}

/* Frees h once nothing refers to it: settled, no lookup, no connect, no
 * timer. */
static void maybe_free(he *h)
{
  if (h->fut || h->resolve || h->in_flight || h->stagger)
    return;
  ak__free(h->a);
  ak__free(h);
}

static void settle(he *h, int64_t result)
{
  ak_future *fut = h->fut;
  h->fut = NULL;
  fut->data = NULL;
  if (result < 0 && result != -ECANCELED)
    ak_future_fail(fut, (int)result, h->detail[0] ? h->detail : NULL);
  else
    ak__future_finish(fut, result);
  ak_future_release(fut);
}

/* Stops what is left: the timer, and every attempt in flight (their
 * completions close their sockets). */
static void stop_rest(he *h)
{
  if (h->stagger) {
    ak_timer_cancel(h->loop, h->stagger);
    h->stagger = NULL;
  }
  for (size_t i = 0; i < h->n; i++)
    if (h->a[i].op)
      ak_future_cancel(h->a[i].op);
}

static void launch_next(he *h);

static void on_stagger(void *arg)
{
  he *h = arg;
  h->stagger = NULL;
  if (h->fut && !h->cancelled)
    launch_next(h);
  else
    maybe_free(h);
}

static void on_attempt(ak_future *f, void *arg)
{
  he *h = arg;
  he_attempt *at = NULL;
  for (size_t i = 0; i < h->n && !at; i++)
    if (h->a[i].op == f)
      at = &h->a[i];
  int64_t res = ak_future_result(f);
  ak_future_release(f);
  at->op = NULL;
  h->in_flight--;
  if (!h->fut || h->cancelled) {
    /* Lost the race, or cancelled: the socket goes. */
    close(at->fd);
    at->fd = -1;
    if (h->fut && h->in_flight == 0 && !h->resolve)
      settle(h, -ECANCELED);
    maybe_free(h);
    return;
  }
  if (res == 0) {
    int fd = at->fd;
    at->fd = -1;
    stop_rest(h);
    settle(h, fd);
    maybe_free(h);
    return;
  }
  describe(h, at, (int)res);
  close(at->fd);
  at->fd = -1;
  if (h->next < h->n) {
    /* A failure starts the next attempt at once (RFC 8305 section 5). */
    if (h->stagger) {
      ak_timer_cancel(h->loop, h->stagger);
      h->stagger = NULL;
    }
    launch_next(h);
  } else if (h->in_flight == 0) {
    settle(h, h->last_err);
    maybe_free(h);
  }
}

/* Starts the next attempt that can start (a socket that cannot be made is
 * a failed attempt), and the timer for the one after. */
static void launch_next(he *h)
{
  while (h->next < h->n) {
    he_attempt *at = &h->a[h->next++];
    /* A plain socket(2): it does not block, and a ring op would cost an
     * iteration. */
    at->fd = socket(at->family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (at->fd < 0) {
      describe(h, at, -errno);
      continue;
    }
    ak_future *op = ak_connect(h->loop, at->fd, (const struct sockaddr *)&at->addr, at->addr_len,
                               h->o.attempt_timeout_ns);
    if (!op || ak_future_on_settle(op, on_attempt, h) < 0) {
      if (op) {
        ak_future_cancel(op);
        ak_future_release(op);
      }
      close(at->fd);
      at->fd = -1;
      h->last_err = -ENOMEM;
      continue;
    }
    at->op = op;
    h->in_flight++;
    if (h->next < h->n)
      h->stagger = ak_call_later(h->loop, h->o.stagger_ns, on_stagger, h);
    /* NULL (ENOMEM): the next attempt waits for this one to fail. */
    return;
  }
  if (h->in_flight == 0) {
    settle(h, h->last_err);
    maybe_free(h);
  }
}

/* Orders list into h->a: families alternating, the first answer's first. */
static void order(he *h, const struct addrinfo *list)
{
  const struct addrinfo *first = NULL;
  for (const struct addrinfo *ai = list; ai && !first; ai = ai->ai_next)
    if ((ai->ai_family == AF_INET || ai->ai_family == AF_INET6) &&
        (h->o.family == AF_UNSPEC || ai->ai_family == h->o.family))
      first = ai;
  if (!first)
    return;
  int fam[2] = {first->ai_family, first->ai_family == AF_INET ? AF_INET6 : AF_INET};
  const struct addrinfo *cur[2] = {list, list};
  for (bool any = true; any && h->n < h->cap;) {
    any = false;
    for (int k = 0; k < 2 && h->n < h->cap; k++) {
      while (cur[k] && (cur[k]->ai_family != fam[k] ||
                        (h->o.family != AF_UNSPEC && cur[k]->ai_family != h->o.family) ||
                        cur[k]->ai_addrlen > sizeof h->a[0].addr))
        cur[k] = cur[k]->ai_next;
      if (!cur[k])
        continue;
      he_attempt *at = &h->a[h->n++];
      memcpy(&at->addr, cur[k]->ai_addr, cur[k]->ai_addrlen);
      at->addr_len = cur[k]->ai_addrlen;
      at->family = cur[k]->ai_family;
      at->fd = -1;
      cur[k] = cur[k]->ai_next;
      any = true;
    }
  }
}

static void start_with(he *h, const struct addrinfo *list)
{
  size_t cap = 0;
  for (const struct addrinfo *ai = list; ai && cap < HE_MAX_ADDRS; ai = ai->ai_next)
    cap += ai->ai_family == AF_INET || ai->ai_family == AF_INET6;
  if (cap) {
    h->a = ak__calloc(cap, sizeof *h->a);
    if (!h->a) {
      snprintf(h->detail, sizeof h->detail, "out of memory");
      settle(h, -ENOMEM);
      maybe_free(h);
      return;
    }
    h->cap = cap;
  }
  order(h, list);
  if (h->n == 0) {
    snprintf(h->detail, sizeof h->detail, "no %s address",
             h->o.family == AF_INET ? "IPv4" : h->o.family == AF_INET6 ? "IPv6" : "usable");
    settle(h, AK_ERESOLVE);
    maybe_free(h);
    return;
  }
  launch_next(h);
}

static void on_resolved(ak_future *f, void *arg)
{
  he *h = arg;
  h->resolve = NULL;
  if (h->cancelled) {
    settle(h, -ECANCELED);
  } else if (ak_future_is_error(f)) {
    const char *why = ak_future_detail(f) ? ak_future_detail(f) : "";
    if (h->o.family == AF_UNSPEC)
      snprintf(h->detail, sizeof h->detail, "%s", why);
    else /* say which family was asked: the resolver's text does not */
      snprintf(h->detail, sizeof h->detail, "no %s address: %s",
               h->o.family == AF_INET ? "IPv4" : "IPv6", why);
    settle(h, ak_future_result(f));
  } else {
    start_with(h, ak_future_value(f));
    ak_future_release(f);
    return;
  }
  ak_future_release(f);
  maybe_free(h);
}

static void cancel_on_loop(ak_future *fut)
{
  he *h = fut->data;
  if (!h || h->cancelled)
    return;
  h->cancelled = true;
  if (h->resolve)
    ak_future_cancel(h->resolve);
  bool any = h->in_flight > 0;
  stop_rest(h);
  if (!any && !h->resolve) {
    settle(h, -ECANCELED); /* between steps: nothing in the kernel */
    maybe_free(h);
  }
}

static void cancel_posted(void *arg)
{
  ak_future *fut = arg;
  if (!ak_future_is_set(fut))
    cancel_on_loop(fut);
  ak_future_release(fut);
}

static void he_cancel(ak_future *fut)
{
  if (ak_loop_is_owner(fut->loop)) {
    cancel_on_loop(fut);
    return;
  }
  ak_future_ref(fut);
  if (ak_loop_post(fut->loop, cancel_posted, fut) < 0)
    ak_future_release(fut); /* ENOMEM: the connect runs to its end */
}

static const ak__future_kind he_kind = {.name = "connect_name", .cancel = he_cancel, .free_data = NULL};

static he *he_new(ak_loop *loop, const ak_connect_options *opts)
{
  he *h = ak__calloc(1, sizeof *h);
  if (!h)
    return NULL;
  h->loop = loop;
  if (opts)
    h->o = *opts;
  if (h->o.attempt_timeout_ns == 0)
    h->o.attempt_timeout_ns = INT64_C(30000000000);
  if (h->o.stagger_ns <= 0)
    h->o.stagger_ns = INT64_C(250000000);
  h->last_err = AK_ERESOLVE;
  h->fut = ak__future_new(loop, &he_kind, h);
  if (!h->fut) {
    ak__free(h);
    return NULL;
  }
  return h;
}

static bool family_ok(const ak_connect_options *opts)
{
  return !opts || opts->family == AF_UNSPEC || opts->family == AF_INET || opts->family == AF_INET6;
}

ak_future *ak_connect_name(ak_loop *loop, const char *host, uint16_t port,
                           const ak_connect_options *opts)
{
  AK__REQUIRE_OWNER(loop, "ak_connect_name");
  if (!host || !family_ok(opts))
    return ak__future_failed(loop, -EINVAL, "ak_connect_name: no host, or a bad family");
  he *h = he_new(loop, opts);
  if (!h)
    return NULL;
  ak_future *ret = ak_future_ref(h->fut);
  snprintf(h->port, sizeof h->port, "%u", (unsigned)port);
  struct addrinfo hints;
  memset(&hints, 0, sizeof hints);
  hints.ai_family = h->o.family;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV;
  ak_future *r = ak_getaddrinfo(loop, host, h->port, &hints);
  if (!r || ak_future_on_settle(r, on_resolved, h) < 0) {
    if (r) {
      ak_future_cancel(r);
      ak_future_release(r);
    }
    snprintf(h->detail, sizeof h->detail, "out of memory");
    settle(h, -ENOMEM);
    maybe_free(h);
    return ret;
  }
  h->resolve = r;
  return ret;
}

ak_future *ak_connect_addrinfo(ak_loop *loop, const struct addrinfo *list,
                               const ak_connect_options *opts)
{
  AK__REQUIRE_OWNER(loop, "ak_connect_addrinfo");
  if (!list || !family_ok(opts))
    return ak__future_failed(loop, -EINVAL, "ak_connect_addrinfo: no address, or a bad family");
  he *h = he_new(loop, opts);
  if (!h)
    return NULL;
  ak_future *ret = ak_future_ref(h->fut);
  start_with(h, list); /* copies what it uses: list may go now */
  return ret;
}
