/* net_resolve.c: names: getaddrinfo(3) on the loop's pool as a future whose
 * value is the address list, and connect by host name and port: resolve,
 * then try each address in turn with a per-attempt deadline (a linked kernel
 * timeout on each connect). A resolution failure is AK_ERESOLVE with the
 * resolver's own text (gai_strerror) as the future's detail.
 *
 * Not here: the ring ops it uses (net.c), the task machinery (net.c).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netdb.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "net/internal.h"

/* ---- getaddrinfo on the pool ------------------------------------------------------ */

typedef struct ak__gai_req {
  char *host; /* owned copies: the caller's strings may go */
  char *service;
  struct addrinfo hints;
} ak__gai_req;

static void gai_req_free(ak__gai_req *req)
{
  ak__free(req->host);
  ak__free(req->service);
  ak__free(req);
}

static void addrinfo_dtor(void *value)
{
  freeaddrinfo(value);
}

/* The lookup itself: the number of addresses (*list set), or an error
 * (*detail set, but for -ENOMEM). */
static int64_t gai_run(const ak__gai_req *req, struct addrinfo **list, const char **detail)
{
  *list = NULL;
  int rc = AK_FAULT_CALL(AK_FAULT_RESOLVE, getaddrinfo(req->host, req->service, &req->hints, list));
  if (rc != 0) {
    if (rc == EAI_MEMORY)
      return -ENOMEM;
    /* EAI_SYSTEM: the resolver's text alone says "System error". */
    int err = errno;
    *detail = rc == EAI_SYSTEM ? ak_strerror(-err) : gai_strerror(rc);
    return AK_ERESOLVE;
  }
  int64_t n = 0;
  for (struct addrinfo *ai = *list; ai; ai = ai->ai_next)
    n++;
  return n;
}

static int64_t gai_work(void *arg, ak_future *self)
{
  struct addrinfo *list;
  const char *detail = NULL;
  int64_t n = gai_run(arg, &list, &detail);
  if (n < 0) {
    if (detail)
      ak_future_set_detail(self, detail);
    return n;
  }
  ak_future_set_value(self, list, addrinfo_dtor);
  return n;
}

/* An IPv4 or IPv6 literal (no scope: "fe80::1%eth0" may need the
 * interface table) and a numeric port or none. */
static bool is_numeric(const char *host, const char *service)
{
  unsigned char addr[sizeof(struct in6_addr)];
  if (!host || (inet_pton(AF_INET, host, addr) != 1 && inet_pton(AF_INET6, host, addr) != 1))
    return false;
  if (service)
    for (const char *c = service; *c; c++)
      if (*c < '0' || *c > '9')
        return false;
  return true;
}

/* A numeric host and port (127.0.0.1, [::1]: a local server, a test)
 * need no resolver: getaddrinfo with AI_NUMERICHOST and AI_NUMERICSERV
 * reads no file and asks no server, so it runs here, settled before this
 * returns, and the pool (whose threads start on first use: two stacks and
 * malloc arenas, measurable in a short akget run) is not woken for it. */
static ak_future *gai_inline(ak_loop *loop, ak__gai_req *req)
{
  ak_future *f = ak_future_new(loop);
  if (!f) {
    gai_req_free(req);
    return NULL;
  }
  req->hints.ai_flags |= AI_NUMERICHOST | AI_NUMERICSERV;
  struct addrinfo *list;
  const char *detail = NULL;
  int64_t n = gai_run(req, &list, &detail);
  gai_req_free(req);
  if (n < 0)
    ak_future_fail(f, (int)n, detail);
  else
    ak_future_set(f, n, list, addrinfo_dtor);
  return f;
}

/* The request outlives the task (it settles after the callable returns), and
 * a task cancelled before it started never runs: free it here, either way. */
static void gai_settled(ak_future *f, void *arg)
{
  (void)f;
  gai_req_free(arg);
}

ak_future *ak_getaddrinfo(ak_loop *loop, const char *host, const char *service,
                          const struct addrinfo *hints)
{
  AK__REQUIRE_OWNER(loop, "ak_getaddrinfo");
  if (!host && !service)
    return ak__future_failed(loop, -EINVAL, "ak_getaddrinfo: host and service are NULL");
  ak__gai_req *req = ak__calloc(1, sizeof(*req));
  if (!req)
    return NULL;
  req->host = host ? ak__strdup(host) : NULL;
  req->service = service ? ak__strdup(service) : NULL;
  if ((host && !req->host) || (service && !req->service)) {
    gai_req_free(req);
    return NULL;
  }
  if (hints) {
    req->hints = *hints;
    req->hints.ai_addr = NULL; /* only flags, family, type, protocol count */
    req->hints.ai_canonname = NULL;
    req->hints.ai_next = NULL;
  } else {
    req->hints.ai_family = AF_UNSPEC;
    req->hints.ai_socktype = SOCK_STREAM;
  }
  if (is_numeric(host, service))
    return gai_inline(loop, req);
  /* Submitted from the loop's thread, so it settles on the loop. */
  ak_future *f = ak_pool_submit(ak__loop_pool(loop), gai_work, req);
  if (!f) {
    gai_req_free(req);
    return NULL;
  }
  if (ak_future_on_settle(f, gai_settled, req) < 0) {
    /* Only a callback added after the settle needs memory (the first one
     * has its slot in the future), and a settled task's callable has
     * returned, or never runs: nothing uses req any more. (It leaked here
     * when a worker settled the task first: test_fault's random mode.) */
    if (ak_future_is_set(f))
      gai_req_free(req);
    else
      ak_future_cancel(f); /* NEVER: leaking beats a use after free */
  }
  return f;
}

/* ---- Connect by host ------------------------------------------------------------------ */

typedef struct ak__conn_host {
  char port[8];
  int64_t timeout_ns;         /* per attempt; AK_FOREVER: none */
  ak_future *names;           /* the resolution, holding the list */
  const struct addrinfo *cur; /* the address being tried */
  int fd;                     /* the socket being connected, or -1 */
  int last_err;
  char detail[96]; /* which address failed last */
} ak__conn_host;

static void conn_host_free(ak_future *task)
{
  ak__conn_host *c = task->data;
  if (c->fd >= 0)
    close(c->fd);
  ak_future_release(c->names);
  ak__free(c);
}

static const ak__future_kind conn_host_kind = {
    .name = "connect_host", .cancel = ak__net_task_cancel, .free_data = conn_host_free};

static void describe(char *out, size_t size, const struct addrinfo *ai, int err)
{
  char ip[INET6_ADDRSTRLEN] = "?";
  int port = 0;
  if (ai->ai_family == AF_INET) {
    const struct sockaddr_in *in = (const void *)ai->ai_addr;
    inet_ntop(AF_INET, &in->sin_addr, ip, sizeof(ip));
    port = ntohs(in->sin_port);
  } else if (ai->ai_family == AF_INET6) {
    const struct sockaddr_in6 *in6 = (const void *)ai->ai_addr;
    inet_ntop(AF_INET6, &in6->sin6_addr, ip, sizeof(ip));
    port = ntohs(in6->sin6_port);
  }
  snprintf(out, size, "connect to %s%s%s:%d: %s", ai->ai_family == AF_INET6 ? "[" : "", ip,
           ai->ai_family == AF_INET6 ? "]" : "", port, ak_strerror(err));
}

static void attempt_done(ak_future *step, void *arg);

/* Tries addresses from c->cur on until one is in flight; settles the task
 * when none is left. */
static void try_next(ak_future *task)
{
  ak__conn_host *c = task->data;
  for (; c->cur; c->cur = c->cur->ai_next) {
    const struct addrinfo *ai = c->cur;
    /* A plain socket(2): it does not block, and a ring op would cost an
     * iteration per address. */
    c->fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
    if (c->fd < 0) {
      c->last_err = -errno;
      describe(c->detail, sizeof(c->detail), ai, c->last_err);
      continue;
    }
    ak_future *step = ak_connect(task->loop, c->fd, ai->ai_addr, ai->ai_addrlen, c->timeout_ns);
    if (ak__net_task_await(task, step, attempt_done) == 0)
      return;
    close(c->fd);
    c->fd = -1;
    c->last_err = -ENOMEM;
  }
  ak_future_fail(task, c->last_err, c->detail[0] ? c->detail : NULL);
}

static void attempt_done(ak_future *step, void *arg)
{
  ak_future *task = arg;
  ak__conn_host *c = task->data;
  ak__net_task_settled(task);
  int64_t res = ak_future_result(step);
  if (ak_future_cancel_requested(task)) {
    ak_future_fail(task, -ECANCELED, NULL); /* c->fd is closed with the task */
  } else if (res == 0) {
    int fd = c->fd;
    c->fd = -1; /* the caller's now */
    ak__future_finish(task, fd);
  } else {
    c->last_err = (int)res;
    describe(c->detail, sizeof(c->detail), c->cur, c->last_err);
    close(c->fd);
    c->fd = -1;
    c->cur = c->cur->ai_next;
    try_next(task);
  }
  ak_future_release(task);
}

static void resolved(ak_future *step, void *arg)
{
  ak_future *task = arg;
  ak__conn_host *c = task->data;
  ak__net_task_settled(task);
  if (ak_future_cancel_requested(task)) {
    ak_future_fail(task, -ECANCELED, NULL);
  } else if (ak_future_is_error(step)) {
    ak_future_fail(task, (int)ak_future_result(step), ak_future_detail(step));
  } else {
    c->names = ak_future_ref(step);
    c->cur = ak_future_value(step);
    c->last_err = AK_ERESOLVE; /* an empty list: nothing to try */
    try_next(task);
  }
  ak_future_release(task);
}

ak_future *ak_connect_host(ak_loop *loop, const char *host, uint16_t port,
                           int64_t attempt_timeout_ns)
{
  AK__REQUIRE_OWNER(loop, "ak_connect_host");
  if (!host)
    return ak__future_failed(loop, -EINVAL, "ak_connect_host: host is NULL");
  ak__conn_host *c = ak__calloc(1, sizeof(*c));
  if (!c)
    return NULL;
  c->fd = -1;
  c->timeout_ns = attempt_timeout_ns;
  snprintf(c->port, sizeof(c->port), "%u", (unsigned)port);
  ak_future *task = ak__net_task_new(loop, &conn_host_kind, c);
  if (!task) {
    ak__free(c);
    return NULL;
  }
  struct addrinfo hints;
  memset(&hints, 0, sizeof(hints));
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV;
  if (ak__net_task_await(task, ak_getaddrinfo(loop, host, c->port, &hints), resolved) < 0)
    ak_future_fail(task, -ENOMEM, "ak_connect_host: resolve");
  return task;
}
