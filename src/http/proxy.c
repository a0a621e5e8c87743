/* proxy.c: what the client knows of proxies: proxy URLs
 * ([scheme://][user[:password]@]host[:port]), no_proxy lists (names and
 * their subdomains, IP addresses, CIDR ranges, ports, "*"), which proxy a
 * URL goes through, and the handshake that turns a socket connected to a
 * proxy into a tunnel to the origin: an HTTP CONNECT here, SOCKS5's steps
 * in socks.c. The handshake is a future of its own kind on the loop, one
 * ring op at a time (send all, then receive), so an exchange awaits it as
 * it awaits a connect, and a cancel stops the op in flight.
 *
 * Not here: the absolute-form request to an http proxy and its
 * Proxy-Authorization line (exchange.c's request building), base64
 * (auth.c). Nothing here prints a password: details name a proxy by its
 * display form, scheme://host:port. */
#define _GNU_SOURCE
#include "http/internal.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ---- Proxy URLs ------------------------------------------------------------------ */

static int hexval(int c)
{
  if (c >= '0' && c <= '9')
    return c - '0';
  c = tolower(c);
  return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* n bytes of s percent-decoded (owned); NULL on ENOMEM or a bad escape. */
static char *decode_part(const char *s, size_t n, int *err)
{
  char *out = ak__malloc(n + 1);
  if (!out) {
    *err = -ENOMEM;
    return NULL;
  }
  size_t o = 0;
  for (size_t i = 0; i < n; i++) {
    if (s[i] == '%') {
      int hi = i + 2 < n ? hexval(s[i + 1]) : -1, lo = hi >= 0 ? hexval(s[i + 2]) : -1;
      if (lo < 0 || (hi == 0 && lo == 0)) {
        ak__free(out);
        *err = AK_EPROXYURL;
        return NULL;
      }
      out[o++] = (char)(hi * 16 + lo);
      i += 2;
    } else {
      out[o++] = s[i];
    }
  }
  out[o] = '\0';
  return out;
}

static bool is_name_char(char c)
{
  return isalnum((unsigned char)c) || c == '-' || c == '.' || c == '_';
}

void ak__proxy_free(ak__proxy *p)
{
  if (!p)
    return;
  if (p->password)
    memset(p->password, 0, strlen(p->password));
  if (p->auth_line)
    memset(p->auth_line, 0, strlen(p->auth_line));
  ak__free(p->host);
  ak__free(p->user);
  ak__free(p->password);
  ak__free(p->auth_line);
  ak__free(p->display);
  ak__free(p);
}

/* The scheme of text (http when it has none): sets *kind and returns where
 * the authority starts, or NULL for a scheme that is not a proxy's. */
static const char *parse_scheme(const char *text, ak__proxy_kind *kind)
{
  const char *sep = strstr(text, "://");
  if (!sep) {
    *kind = AK__PROXY_HTTP;
    return text;
  }
  size_t n = (size_t)(sep - text);
  if (n == 4 && strncasecmp(text, "http", 4) == 0)
    *kind = AK__PROXY_HTTP;
  else if (n == 6 && strncasecmp(text, "socks5", 6) == 0)
    *kind = AK__PROXY_SOCKS5;
  else if (n == 7 && strncasecmp(text, "socks5h", 7) == 0)
    *kind = AK__PROXY_SOCKS5H;
  else
    return NULL;
  return sep + 3;
}

/* host[:port] or [v6][:port] (n bytes) into p. */
static int parse_hostport(ak__proxy *p, const char *s, size_t n)
{
  const char *end = s + n, *host = s, *host_end, *port = NULL;
  if (n > 0 && s[0] == '[') {
    host = s + 1;
    host_end = memchr(host, ']', (size_t)(end - host));
    if (!host_end)
      return AK_EPROXYURL;
    if (host_end + 1 < end) {
      if (host_end[1] != ':')
        return AK_EPROXYURL;
      port = host_end + 2;
    }
  } else {
    host_end = memchr(s, ':', n);
    if (host_end)
      port = host_end + 1;
    else
      host_end = end;
  }
  size_t hl = (size_t)(host_end - host);
  if (hl == 0 || hl > 253)
    return AK_EPROXYURL;
  if (!(p->host = ak__malloc(hl + 1)))
    return -ENOMEM;
  memcpy(p->host, host, hl);
  p->host[hl] = '\0';
  bool v6 = host != s;
  unsigned char buf[16];
  if (v6 && inet_pton(AF_INET6, p->host, buf) != 1)
    return AK_EPROXYURL;
  for (size_t i = 0; !v6 && i < hl; i++)
    if (!is_name_char(p->host[i]))
      return AK_EPROXYURL;
  for (char *c = p->host; *c; c++)
    *c = (char)tolower((unsigned char)*c);
  p->port = 1080; /* curl's default for every proxy scheme */
  if (port) {
    unsigned v = 0;
    if (port == end || end - port > 5)
      return AK_EPROXYURL;
    for (const char *c = port; c < end; c++) {
      if (*c < '0' || *c > '9')
        return AK_EPROXYURL;
      v = v * 10 + (unsigned)(*c - '0');
    }
    if (v == 0 || v > 65535)
      return AK_EPROXYURL;
    p->port = (uint16_t)v;
  }
  return 0;
}

static int parse_userinfo(ak__proxy *p, const char *s, size_t n)
{
  int err = 0;
  const char *colon = memchr(s, ':', n);
  size_t ul = colon ? (size_t)(colon - s) : n;
  if (!(p->user = decode_part(s, ul, &err)))
    return err;
  if (colon && !(p->password = decode_part(colon + 1, n - ul - 1, &err)))
    return err;
  /* RFC 1929 carries each in one length byte. */
  if (p->kind != AK__PROXY_HTTP &&
      (strlen(p->user) > 255 || (p->password && strlen(p->password) > 255)))
    return AK_EPROXYURL;
  return 0;
}

static int parse_proxy(ak__proxy *p, const char *text)
{
  for (const char *c = text; *c; c++)
    if ((unsigned char)*c <= 0x20 || (unsigned char)*c >= 0x7f)
      return AK_EPROXYURL; /* blanks, controls, non-ASCII: not a URL */
  const char *auth = parse_scheme(text, &p->kind);
  if (!auth)
    return AK_EPROXYURL;
  size_t alen = strcspn(auth, "/?#");
  const char *rest = auth + alen;
  if (rest[0] && strcmp(rest, "/") != 0)
    return AK_EPROXYURL; /* a path, query or fragment means something we do not do */
  const char *at = NULL;
  for (const char *c = auth; c < auth + alen; c++)
    if (*c == '@')
      at = c;
  int rc = 0;
  if (at)
    rc = parse_userinfo(p, auth, (size_t)(at - auth));
  const char *hp = at ? at + 1 : auth;
  if (rc == 0)
    rc = parse_hostport(p, hp, (size_t)(auth + alen - hp));
  if (rc < 0)
    return rc;
  if (p->kind == AK__PROXY_HTTP && p->user &&
      !(p->auth_line = ak__http_basic_line("Proxy-Authorization", p->user, p->password)))
    return -ENOMEM;
  static const char *const names[] = {"http", "socks5", "socks5h"};
  size_t dn = strlen(p->host) + 32;
  if (!(p->display = ak__malloc(dn)))
    return -ENOMEM;
  bool v6 = strchr(p->host, ':') != NULL;
  snprintf(p->display, dn, "%s://%s%s%s:%u", names[p->kind], v6 ? "[" : "", p->host,
           v6 ? "]" : "", p->port);
  return 0;
}

int ak__proxy_parse(const char *text, ak__proxy **out)
{
  *out = NULL;
  if (!text || !text[0])
    return 0;
  if (strlen(text) > 4096)
    return AK_EPROXYURL;
  ak__proxy *p = ak__calloc(1, sizeof *p);
  if (!p)
    return -ENOMEM;
  int rc = parse_proxy(p, text);
  if (rc < 0) {
    ak__proxy_free(p);
    return rc;
  }
  *out = p;
  return 0;
}

int ak_http_proxy_check(const char *proxy)
{
  ak__proxy *p = NULL;
  int rc = ak__proxy_parse(proxy, &p);
  ak__proxy_free(p);
  return rc;
}

/* ---- no_proxy lists ------------------------------------------------------------------ */

typedef struct np_entry {
  bool any;                    /* "*" */
  bool is_ip;                  /* an address or CIDR range */
  int family;                  /* AF_INET or AF_INET6 */
  unsigned char ip[16];
  unsigned prefix;             /* bits that must match */
  char name[256];              /* a host name, lower case, no leading dot */
  unsigned port;               /* 0: any port */
} np_entry;

static bool parse_port(const char *s, size_t n, unsigned *out)
{
  if (n == 0 || n > 5)
    return false;
  unsigned v = 0;
  for (size_t i = 0; i < n; i++) {
    if (s[i] < '0' || s[i] > '9')
      return false;
    v = v * 10 + (unsigned)(s[i] - '0');
  }
  if (v == 0 || v > 65535)
    return false;
  *out = v;
  return true;
}

/* addr[/prefix] (n bytes, no brackets, no port) into e as an IP entry;
 * false if it is not one. */
static bool parse_ip(np_entry *e, const char *s, size_t n)
{
  char buf[64];
  if (n == 0 || n >= sizeof buf)
    return false;
  memcpy(buf, s, n);
  buf[n] = '\0';
  char *slash = strchr(buf, '/');
  if (slash)
    *slash = '\0';
  if (inet_pton(AF_INET, buf, e->ip) == 1)
    e->family = AF_INET;
  else if (inet_pton(AF_INET6, buf, e->ip) == 1)
    e->family = AF_INET6;
  else
    return false;
  unsigned max = e->family == AF_INET ? 32 : 128;
  e->prefix = max;
  if (slash) {
    const char *d = slash + 1;
    if (!*d || strlen(d) > 3)
      return false;
    unsigned v = 0;
    for (; *d; d++) {
      if (*d < '0' || *d > '9')
        return false;
      v = v * 10 + (unsigned)(*d - '0');
    }
    if (v > max)
      return false;
    e->prefix = v;
  }
  e->is_ip = true;
  return true;
}

/* One entry (n bytes, trimmed, not empty). false: it does not parse. */
static bool parse_entry(np_entry *e, const char *s, size_t n)
{
  memset(e, 0, sizeof *e);
  if (n == 1 && s[0] == '*') {
    e->any = true;
    return true;
  }
  if (s[0] == '[') {
    const char *close = memchr(s, ']', n);
    if (!close)
      return false;
    size_t after = n - (size_t)(close + 1 - s);
    if (after > 0 && (close[1] != ':' || !parse_port(close + 2, after - 1, &e->port)))
      return false;
    return parse_ip(e, s + 1, (size_t)(close - s - 1)) && e->family == AF_INET6;
  }
  const char *colon = memchr(s, ':', n);
  if (colon && memchr(colon + 1, ':', n - (size_t)(colon + 1 - s)))
    return parse_ip(e, s, n); /* two colons: an IPv6 address, no port */
  size_t hn = colon ? (size_t)(colon - s) : n;
  if (colon && !parse_port(colon + 1, n - hn - 1, &e->port))
    return false;
  if (hn == 0)
    return false;
  if (memchr(s, '/', hn))
    return parse_ip(e, s, hn) && e->family == AF_INET;
  if (parse_ip(e, s, hn))
    return true;
  /* A name: ".example.com" and "example.com" alike (curl). */
  while (hn > 0 && *s == '.') {
    s++;
    hn--;
  }
  while (hn > 0 && s[hn - 1] == '.')
    hn--;
  if (hn == 0 || hn >= sizeof e->name)
    return false;
  for (size_t i = 0; i < hn; i++) {
    if (!is_name_char(s[i]))
      return false;
    e->name[i] = (char)tolower((unsigned char)s[i]);
  }
  e->name[hn] = '\0';
  return true;
}

/* Calls fn on each entry of list (commas and blanks separate); stops at the
 * first fn that returns true (the result) or an entry that does not parse
 * (bad set). */
static bool each_entry(const char *list, bool (*fn)(const np_entry *e, void *arg), void *arg,
                       bool *bad)
{
  const char *s = list;
  while (s && *s) {
    while (*s == ',' || *s == ' ' || *s == '\t')
      s++;
    size_t n = strcspn(s, ", \t");
    if (n == 0)
      break;
    np_entry e;
    if (!parse_entry(&e, s, n)) {
      if (bad)
        *bad = true;
    } else if (fn(&e, arg)) {
      return true;
    }
    s += n;
  }
  return false;
}

static bool never(const np_entry *e, void *arg)
{
  (void)e;
  (void)arg;
  return false;
}

int ak_http_no_proxy_check(const char *list)
{
  bool bad = false;
  each_entry(list, never, NULL, &bad);
  return bad ? AK_EPROXYURL : 0;
}

typedef struct np_target {
  const char *host;            /* lower case */
  size_t host_len;
  unsigned port;
  int family;                  /* the host as an IP, or 0 for a name */
  unsigned char ip[16];
} np_target;

static bool prefix_matches(const unsigned char *a, const unsigned char *b, unsigned bits)
{
  unsigned whole = bits / 8, rest = bits % 8;
  if (memcmp(a, b, whole) != 0)
    return false;
  if (rest == 0)
    return true;
  unsigned char mask = (unsigned char)(0xff << (8 - rest));
  return (a[whole] & mask) == (b[whole] & mask);
}

static bool entry_matches(const np_entry *e, void *arg)
{
  const np_target *t = arg;
  if (e->any)
    return true;
  if (e->port && e->port != t->port)
    return false;
  if (e->is_ip)
    return t->family == e->family && prefix_matches(t->ip, e->ip, e->prefix);
  if (t->family)
    return false; /* a name never matches an address */
  size_t n = strlen(e->name);
  if (t->host_len == n)
    return memcmp(t->host, e->name, n) == 0;
  return t->host_len > n && t->host[t->host_len - n - 1] == '.' &&
         memcmp(t->host + t->host_len - n, e->name, n) == 0;
}

bool ak_http_no_proxy_match(const char *list, const char *host, uint16_t port)
{
  if (!list || !host)
    return false;
  char lower[256];
  size_t n = strlen(host);
  while (n > 0 && host[n - 1] == '.')
    n--;
  if (n >= sizeof lower)
    return false;
  for (size_t i = 0; i < n; i++)
    lower[i] = (char)tolower((unsigned char)host[i]);
  lower[n] = '\0';
  np_target t = {.host = lower, .host_len = n, .port = port};
  if (inet_pton(AF_INET, lower, t.ip) == 1)
    t.family = AF_INET;
  else if (inet_pton(AF_INET6, lower, t.ip) == 1)
    t.family = AF_INET6;
  return each_entry(list, entry_matches, &t, NULL);
}

const ak__proxy *ak__http_proxy_for(const ak_http_client *c, const ak_url *url)
{
  const ak__proxy *p = strcmp(url->scheme, "https") == 0 ? c->https_proxy : c->http_proxy;
  if (p && c->no_proxy && ak_http_no_proxy_match(c->no_proxy, url->host, url->port))
    return NULL;
  return p;
}

/* ---- The handshake future ---------------------------------------------------------------
 * One ring op at a time: send h->out whole, then receive into h->in and
 * let the protocol's step decide (more bytes, another send, done). */

typedef struct tunnel {
  ak__handshake h;
  ak_loop *loop;
  int fd;
  ak_future *fut;              /* the handshake's future (one reference) */
  ak_future *pending;          /* the op in flight, or NULL */
  bool cancelled;
} tunnel;

static void tunnel_send(tunnel *t);
static void tunnel_recv(tunnel *t);

static void tunnel_end(tunnel *t, int rc)
{
  ak_future *fut = t->fut;
  fut->data = NULL;
  if (rc < 0)
    ak_future_fail(fut, rc, t->h.detail[0] ? t->h.detail : NULL);
  else
    ak_future_set(fut, 0, NULL, NULL);
  ak__free(t->h.host);
  ak__free(t);
  ak_future_release(fut);
}

/* The op's result, or -ECANCELED after a cancel. */
static int64_t step_result(tunnel *t, ak_future *f)
{
  t->pending = NULL;
  int64_t res = ak_future_result(f);
  ak_future_release(f); /* the callback's borrow outlives this: the loop holds one */
  return t->cancelled ? -ECANCELED : res;
}

static void await_op(tunnel *t, ak_future *f, ak_callback cb)
{
  if (!f || ak_future_on_settle(f, cb, t) < 0) {
    if (f) {
      ak_future_cancel(f);
      ak_future_release(f);
    }
    tunnel_end(t, -ENOMEM);
    return;
  }
  t->pending = f;
}

static void fail_io(tunnel *t, int64_t res, const char *what)
{
  if (res == -ECANCELED) {
    tunnel_end(t, -ECANCELED);
    return;
  }
  snprintf(t->h.detail, sizeof t->h.detail, "proxy %s: %s: %s", t->h.proxy->display, what,
           res == 0 ? "the proxy closed the connection" : ak_strerror((int)res));
  tunnel_end(t, res == 0 ? AK_EPROXYPROTO : (int)res);
}

/* The status line of a CONNECT reply, in h->in (the head is complete). */
static int connect_status(ak__handshake *h, size_t head_len)
{
  const char *in = (const char *)h->in;
  int major = 0, minor = 0, status = 0;
  size_t line = strcspn(in, "\r\n");
  if (sscanf(in, "HTTP/%d.%d %3d", &major, &minor, &status) != 3 || status < 100 || status > 599) {
    snprintf(h->detail, sizeof h->detail, "proxy %s: not an HTTP reply to CONNECT",
             h->proxy->display);
    return AK_EPROXYPROTO;
  }
  char shown[96];
  snprintf(shown, sizeof shown, "%.*s", (int)(line < 80 ? line : 80), in);
  for (char *c = shown; *c; c++)
    if ((unsigned char)*c < 0x20 || (unsigned char)*c >= 0x7f)
      *c = '?';
  if (status >= 200 && status < 300) {
    if (head_len != h->in_len) {
      snprintf(h->detail, sizeof h->detail, "proxy %s: bytes after its CONNECT reply",
               h->proxy->display);
      return AK_EPROXYPROTO;
    }
    return AK__HS_DONE;
  }
  snprintf(h->detail, sizeof h->detail, "proxy %s refused CONNECT %s:%u: %s", h->proxy->display,
           h->host, h->port, shown);
  return status == 407 ? AK_EPROXYAUTH : AK_EPROXYREFUSED;
}

static int connect_step(ak__handshake *h)
{
  /* The proxy says nothing after its reply until the client's TLS hello,
   * so a head never shares a receive with tunnel bytes. */
  const unsigned char *end = memmem(h->in, h->in_len, "\r\n\r\n", 4);
  if (!end) {
    if (h->in_len >= sizeof h->in - 1) {
      snprintf(h->detail, sizeof h->detail, "proxy %s: CONNECT reply head too large",
               h->proxy->display);
      return AK_EPROXYPROTO;
    }
    return AK__HS_MORE;
  }
  h->in[h->in_len] = '\0';
  return connect_status(h, (size_t)(end + 4 - h->in));
}

static int connect_begin(ak__handshake *h)
{
  bool v6 = strchr(h->host, ':') != NULL;
  char authority[300];
  snprintf(authority, sizeof authority, "%s%s%s:%u", v6 ? "[" : "", h->host, v6 ? "]" : "",
           h->port);
  const char *auth = h->proxy->auth_line ? h->proxy->auth_line : "";
  int n = snprintf((char *)h->out, sizeof h->out, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n%s\r\n",
                   authority, authority, auth);
  if (n < 0 || (size_t)n >= sizeof h->out) {
    snprintf(h->detail, sizeof h->detail, "proxy %s: CONNECT request too long",
             h->proxy->display);
    return AK_EPROXYURL;
  }
  h->out_len = (size_t)n;
  h->want = 0;
  return AK__HS_SEND;
}

static int run_step(tunnel *t)
{
  return t->h.proxy->kind == AK__PROXY_HTTP ? connect_step(&t->h) : ak__socks_step(&t->h);
}

static void after(tunnel *t, int rc)
{
  if (rc == AK__HS_SEND)
    tunnel_send(t);
  else if (rc == AK__HS_MORE)
    tunnel_recv(t);
  else
    tunnel_end(t, rc);
}

static void on_recv(ak_future *f, void *arg)
{
  tunnel *t = arg;
  int64_t res = step_result(t, f);
  if (res <= 0) {
    fail_io(t, res, "receiving its reply");
    return;
  }
  t->h.in_len += (size_t)res;
  after(t, run_step(t));
}

static void tunnel_recv(tunnel *t)
{
  size_t room = sizeof t->h.in - 1 - t->h.in_len;
  size_t len = t->h.want ? t->h.want - t->h.in_len : room;
  if (len == 0 || len > room) {
    snprintf(t->h.detail, sizeof t->h.detail, "proxy %s: reply too large", t->h.proxy->display);
    tunnel_end(t, AK_EPROXYPROTO);
    return;
  }
  await_op(t, ak_recv(t->loop, t->fd, t->h.in + t->h.in_len, len, 0), on_recv);
}

static void on_sent(ak_future *f, void *arg)
{
  tunnel *t = arg;
  int64_t res = step_result(t, f);
  if (res < 0) {
    fail_io(t, res, "sending");
    return;
  }
  t->h.out_len = 0;
  t->h.in_len = 0;
  tunnel_recv(t);
}

static void tunnel_send(tunnel *t)
{
  await_op(t, ak_send_all(t->loop, t->fd, t->h.out, t->h.out_len, 0), on_sent);
}

static void begin(tunnel *t)
{
  after(t, t->h.proxy->kind == AK__PROXY_HTTP ? connect_begin(&t->h) : ak__socks_begin(&t->h));
}

static void on_resolved(ak_future *f, void *arg)
{
  tunnel *t = arg;
  const struct addrinfo *ai = ak_future_result(f) > 0 ? ak_future_value(f) : NULL;
  if (ai && !t->cancelled) {
    memcpy(&t->h.addr, ai->ai_addr, ai->ai_addrlen);
    t->h.have_addr = true;
  }
  char why[120];
  snprintf(why, sizeof why, "%s", ak_future_detail(f) ? ak_future_detail(f) : "no address");
  int64_t res = step_result(t, f); /* f is released: ai is gone */
  if (!t->h.have_addr) {
    if (res == -ECANCELED) {
      tunnel_end(t, -ECANCELED);
      return;
    }
    snprintf(t->h.detail, sizeof t->h.detail, "resolving %s for SOCKS5 proxy %s: %s", t->h.host,
             t->h.proxy->display, why);
    tunnel_end(t, res < 0 ? (int)res : AK_ERESOLVE);
    return;
  }
  begin(t);
}

static void tunnel_cancel_on_loop(ak_future *fut)
{
  tunnel *t = fut->data;
  if (!t || t->cancelled)
    return;
  t->cancelled = true;
  if (t->pending)
    ak_future_cancel(t->pending);
}

static void tunnel_cancel_posted(void *arg)
{
  ak_future *fut = arg;
  tunnel_cancel_on_loop(fut);
  ak_future_release(fut);
}

static void tunnel_cancel(ak_future *fut)
{
  if (ak_loop_is_owner(fut->loop)) {
    tunnel_cancel_on_loop(fut);
    return;
  }
  ak_future_ref(fut);
  if (ak_loop_post(fut->loop, tunnel_cancel_posted, fut) < 0)
    ak_future_release(fut); /* ENOMEM: the handshake runs to its end */
}

static const ak__future_kind tunnel_kind = {
    .name = "proxy_tunnel", .cancel = tunnel_cancel, .free_data = NULL};

ak_future *ak__http_proxy_tunnel(ak_loop *loop, int fd, const ak__proxy *proxy, const ak_url *origin)
{
  tunnel *t = ak__calloc(1, sizeof *t);
  if (!t)
    return NULL;
  t->loop = loop;
  t->fd = fd;
  t->h.proxy = proxy;
  t->h.port = origin->port;
  t->h.host_is_ip = origin->ipv6 || inet_pton(AF_INET, origin->host, t->h.in) == 1;
  if (!(t->h.host = ak__strdup(origin->host)) ||
      !(t->fut = ak__future_new(loop, &tunnel_kind, t))) {
    ak__free(t->h.host);
    ak__free(t);
    return NULL;
  }
  ak_future *ret = ak_future_ref(t->fut);
  if (proxy->kind == AK__PROXY_SOCKS5 && !t->h.host_is_ip) {
    /* socks5://: the name is resolved here and the proxy gets an address. */
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    await_op(t, ak_getaddrinfo(loop, origin->host, NULL, &hints), on_resolved);
  } else {
    begin(t);
  }
  return ret;
}
