/* url.c: http(s) URLs: parsing and reference resolution with uriparser
 * (RFC 3986), and what the client needs from a URL: host, port, request
 * target and Host header value. Owns the ak_url record; knows nothing of
 * connections or requests.
 *
 * Two things uriparser does not do are done here: bytes that may not appear
 * in a URL (spaces, non-ASCII, as found in real Location headers) are
 * percent-encoded before parsing, and an IPv6 zone id ([fe80::1%25eth0]),
 * which uriparser rejects, is cut out before parsing and kept aside.
 * User information is kept apart (decoded) and left out of the URL's text,
 * so credentials never reach a log line or an error detail. */
#include "http/internal.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <uriparser/Uri.h>

/* Longest URL accepted: a bound on what a Location header can make us
 * allocate and parse. */
enum { URL_MAX = 16384 };

static bool needs_escape(unsigned char c)
{
  return c <= 0x20 || c >= 0x7f || c == '"' || c == '<' || c == '>' || c == '\\' || c == '^' ||
         c == '`' || c == '{' || c == '|' || c == '}';
}

/* text with unsafe bytes percent-encoded, leading and trailing blanks
 * dropped; NULL on ENOMEM or a text longer than URL_MAX (*err says). */
static char *escape_unsafe(const char *text, int *err)
{
  while (*text == ' ' || *text == '\t')
    text++;
  size_t n = strlen(text);
  while (n > 0 && (text[n - 1] == ' ' || text[n - 1] == '\t' || text[n - 1] == '\r' ||
                   text[n - 1] == '\n'))
    n--;
  if (n > URL_MAX) {
    *err = AK_EURL;
    return NULL;
  }
  char *out = ak__malloc(n * 3 + 1);
  if (!out) {
    *err = -ENOMEM;
    return NULL;
  }
  static const char hex[] = "0123456789ABCDEF";
  size_t o = 0;
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)text[i];
    if (needs_escape(c)) {
      out[o++] = '%';
      out[o++] = hex[c >> 4];
      out[o++] = hex[c & 15];
    } else {
      out[o++] = (char)c;
    }
  }
  out[o] = '\0';
  return out;
}

static int hexval(int c)
{
  if (c >= '0' && c <= '9')
    return c - '0';
  c = tolower(c);
  return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* Cuts "%25zone" out of an IPv6 literal "[...%25zone]" in s (in place) and
 * returns the decoded zone (owned), NULL if there is none. *err is set
 * (AK_EURL, -ENOMEM) when the zone is malformed. */
static char *cut_zone(char *s, int *err)
{
  char *auth = strstr(s, "://");
  if (!auth)
    return NULL;
  auth += 3;
  char *open = auth;
  while (*open && *open != '[' && *open != '/' && *open != '?' && *open != '#')
    open++;
  if (*open != '[')
    return NULL;
  char *close = strchr(open, ']');
  if (!close)
    return NULL;
  char *pct = memchr(open, '%', (size_t)(close - open));
  if (!pct)
    return NULL;
  if (strncmp(pct, "%25", 3) != 0 || pct + 3 == close) {
    *err = AK_EURL;
    return NULL;
  }
  size_t zlen = 0;
  char *zone = ak__malloc((size_t)(close - pct));
  if (!zone) {
    *err = -ENOMEM;
    return NULL;
  }
  for (char *p = pct + 3; p < close; p++) {
    if (*p == '%') {
      int hi = p + 2 < close ? hexval(p[1]) : -1, lo = hi >= 0 ? hexval(p[2]) : -1;
      if (lo < 0) {
        ak__free(zone);
        *err = AK_EURL;
        return NULL;
      }
      zone[zlen++] = (char)(hi * 16 + lo);
      p += 2;
    } else if (isalnum((unsigned char)*p) || strchr("-._~", *p)) {
      zone[zlen++] = *p;
    } else {
      ak__free(zone);
      *err = AK_EURL;
      return NULL;
    }
  }
  zone[zlen] = '\0';
  memmove(pct, close, strlen(close) + 1);
  return zone;
}

/* n bytes of s percent-decoded (owned), or NULL on ENOMEM. A '%' not
 * followed by two hex digits stays as it is. */
static char *pct_decode(const char *s, size_t n)
{
  char *out = ak__malloc(n + 1);
  if (!out)
    return NULL;
  size_t o = 0;
  for (size_t i = 0; i < n; i++) {
    int hi = s[i] == '%' && i + 2 < n ? hexval(s[i + 1]) : -1;
    int lo = hi >= 0 ? hexval(s[i + 2]) : -1;
    if (lo >= 0) {
      out[o++] = (char)(hi * 16 + lo);
      i += 2;
    } else {
      out[o++] = s[i];
    }
  }
  out[o] = '\0';
  return out;
}

/* "user[:password]" into url->user and url->password (NULL when there is
 * no colon). */
static int split_userinfo(ak_url *url, const char *s, size_t n)
{
  const char *colon = memchr(s, ':', n);
  size_t ulen = colon ? (size_t)(colon - s) : n;
  url->user = pct_decode(s, ulen);
  if (!url->user)
    return -ENOMEM;
  if (colon && !(url->password = pct_decode(colon + 1, n - ulen - 1)))
    return -ENOMEM;
  return 0;
}

static char *range_dup(const UriTextRangeA *r)
{
  size_t n = r->first ? (size_t)(r->afterLast - r->first) : 0;
  char *s = ak__malloc(n + 1);
  if (s) {
    if (n)
      memcpy(s, r->first, n);
    s[n] = '\0';
  }
  return s;
}

static size_t range_len(const UriTextRangeA *r)
{
  return r->first ? (size_t)(r->afterLast - r->first) : 0;
}

void ak_url_free(ak_url *url)
{
  if (!url)
    return;
  if (url->scheme == (char *)(url + 1)) {
    ak__free(url); /* parse_plain's: one block, strings after the record */
    return;
  }
  ak__free(url->scheme);
  ak__free(url->host);
  ak__free(url->zone);
  ak__free(url->target);
  ak__free(url->authority);
  ak__free(url->text);
  if (url->password)
    memset(url->password, 0, strlen(url->password)); /* not left in freed memory */
  ak__free(url->user);
  ak__free(url->password);
  ak__free(url);
}

/* The request target: "/" segments joined, then "?query". */
static char *build_target(const UriUriA *u)
{
  size_t n = 2 + range_len(&u->query) + 1;
  for (const UriPathSegmentA *s = u->pathHead; s; s = s->next)
    n += 1 + range_len(&s->text);
  char *t = ak__malloc(n);
  if (!t)
    return NULL;
  size_t o = 0;
  for (const UriPathSegmentA *s = u->pathHead; s; s = s->next) {
    t[o++] = '/';
    memcpy(t + o, s->text.first ? s->text.first : "", range_len(&s->text));
    o += range_len(&s->text);
  }
  if (o == 0)
    t[o++] = '/';
  if (u->query.first) {
    t[o++] = '?';
    memcpy(t + o, u->query.first, range_len(&u->query));
    o += range_len(&u->query);
  }
  t[o] = '\0';
  return t;
}

/* Fills url from a parsed absolute URI. */
static int fill_from_uri(ak_url *url, UriUriA *u)
{
  if (!u->scheme.first || !u->hostText.first)
    return AK_EURL;
  url->scheme = range_dup(&u->scheme);
  if (!url->scheme)
    return -ENOMEM;
  for (char *p = url->scheme; *p; p++)
    *p = (char)tolower((unsigned char)*p);
  uint16_t default_port;
  if (strcmp(url->scheme, "http") == 0)
    default_port = 80;
  else if (strcmp(url->scheme, "https") == 0)
    default_port = 443;
  else
    return AK_EURLSCHEME;
  if (u->userInfo.first) {
    int rc = split_userinfo(url, u->userInfo.first, range_len(&u->userInfo));
    if (rc < 0)
      return rc;
  }
  if (u->hostData.ipFuture.first)
    return AK_EURL;
  url->ipv6 = u->hostData.ip6 != NULL;
  url->host = range_dup(&u->hostText);
  if (!url->host)
    return -ENOMEM;
  if (url->host[0] == '\0' || strchr(url->host, '%'))
    return AK_EURL; /* an empty or percent-encoded host name: not a name we can resolve */
  for (char *p = url->host; *p; p++)
    *p = (char)tolower((unsigned char)*p);
  url->port = default_port;
  size_t plen = range_len(&u->portText);
  if (plen > 0) {
    if (plen > 5)
      return AK_EURL;
    unsigned v = 0;
    for (size_t i = 0; i < plen; i++) {
      char c = u->portText.first[i];
      if (c < '0' || c > '9')
        return AK_EURL;
      v = v * 10 + (unsigned)(c - '0');
    }
    if (v == 0 || v > 65535)
      return AK_EURL;
    url->port = (uint16_t)v;
  }
  url->target = build_target(u);
  if (!url->target)
    return -ENOMEM;
  /* Host header and the URL's text. */
  size_t alen = strlen(url->host) + 16;
  url->authority = ak__malloc(alen);
  if (!url->authority)
    return -ENOMEM;
  const char *lb = url->ipv6 ? "[" : "", *rb = url->ipv6 ? "]" : "";
  if (url->port == default_port)
    snprintf(url->authority, alen, "%s%s%s", lb, url->host, rb);
  else
    snprintf(url->authority, alen, "%s%s%s:%u", lb, url->host, rb, url->port);
  size_t tlen = strlen(url->scheme) + 3 + strlen(url->authority) + strlen(url->target) + 1;
  url->text = ak__malloc(tlen);
  if (!url->text)
    return -ENOMEM;
  snprintf(url->text, tlen, "%s://%s%s", url->scheme, url->authority, url->target);
  return 0;
}

/* Parses the escaped text s (zone already cut out) into *out. */
static int parse_escaped(const char *s, char *zone, ak_url **out)
{
  UriUriA u;
  const char *errpos = NULL;
  if (uriParseSingleUriA(&u, s, &errpos) != URI_SUCCESS) {
    ak__free(zone);
    return AK_EURL;
  }
  int rc = 0;
  if (uriNormalizeSyntaxExA(&u, URI_NORMALIZE_SCHEME | URI_NORMALIZE_HOST | URI_NORMALIZE_PATH) !=
      URI_SUCCESS)
    rc = -ENOMEM;
  ak_url *url = rc == 0 ? ak__calloc(1, sizeof *url) : NULL;
  if (rc == 0 && !url)
    rc = -ENOMEM;
  if (rc == 0)
    rc = fill_from_uri(url, &u);
  uriFreeUriMembersA(&u);
  if (rc == 0 && zone && !url->ipv6)
    rc = AK_EURL;
  if (rc < 0) {
    ak_url_free(url);
    ak__free(zone);
    return rc;
  }
  url->zone = zone;
  *out = url;
  return 0;
}

/* The bytes parse_plain lets through, by class: a lower-case host name's
 * or IPv4 address's (HOST_CH), a path segment's as it may stand, RFC 3986
 * pchar without '%' (SEG_CH: unreserved, sub-delims, ':' and '@'), and a
 * query's (QUERY_CH: those, '/' and '?'). A table look per byte where a
 * chain of comparisons had been (ak_url_parse runs twice per URL in akget,
 * on the list reader and on the loop). */
enum { HOST_CH = 1, SEG_CH = 2, QUERY_CH = 4 };
static const unsigned char url_class[256] = {
#define SEGQ (SEG_CH | QUERY_CH)
    ['a' ... 'z'] = HOST_CH | SEGQ, ['0' ... '9'] = HOST_CH | SEGQ, ['A' ... 'Z'] = SEGQ,
    ['.'] = HOST_CH | SEGQ, ['-'] = HOST_CH | SEGQ, ['_'] = SEGQ, ['~'] = SEGQ, ['!'] = SEGQ,
    ['$'] = SEGQ, ['&'] = SEGQ, ['\''] = SEGQ, ['('] = SEGQ, [')'] = SEGQ, ['*'] = SEGQ,
    ['+'] = SEGQ, [','] = SEGQ, [';'] = SEGQ, ['='] = SEGQ, [':'] = SEGQ, ['@'] = SEGQ,
    ['/'] = QUERY_CH, ['?'] = QUERY_CH,
#undef SEGQ
};

/* What parse_plain found in a URL's text: its parts' places and the size
 * of the record that holds them (plain_size). */
typedef struct plain_url {
  const char *text, *host, *target, *end;
  size_t hlen, tlen, slen, alen;
  uint16_t port, default_port;
  bool tls;
  bool as_given; /* the text is the URL's text as it stands (authority
                    host[:port] and target both given so), copied whole */
} plain_url;

/* Whether s begins with the n bytes of pre (s may be shorter: its NUL
 * differs). */
static inline bool has_prefix(const char *s, const char *pre, size_t n)
{
  for (size_t i = 0; i < n; i++)
    if (s[i] != pre[i])
      return false;
  return true;
}

/* The common URL in a list, "http[s]://host[:port][/path][?query]" with a
 * lower-case name or IPv4 host and nothing to escape, decode, normalize or
 * cut, read into *pu: what uriparser and the normalization would give,
 * field for field, without their allocations and passes (ak_url_parse ran
 * a third of akget's -N CPU, three parses per URL). Returns 1 when the
 * text is not of that form (the full parse then decides), 0 when it is. */
static int plain_scan(const char *text, plain_url *pu)
{
  const char *p;
  bool tls;
  if (has_prefix(text, "http://", 7)) {
    tls = false;
    p = text + 7;
  } else if (has_prefix(text, "https://", 8)) {
    tls = true;
    p = text + 8;
  } else {
    return 1;
  }
  const char *host = p;
  while (url_class[(unsigned char)*p] & HOST_CH)
    p++;
  size_t hlen = (size_t)(p - host);
  uint16_t default_port = tls ? 443 : 80, port = default_port;
  if (hlen == 0)
    return 1;
  bool as_given = true;
  if (*p == ':') {
    const char *digits = ++p;
    unsigned v = 0;
    while (*p >= '0' && *p <= '9' && p - digits < 6)
      v = v * 10 + (unsigned)(*p++ - '0');
    if (p == digits || p - digits > 5 || v == 0 || v > 65535)
      return 1; /* empty, too long or out of range: the full parse says */
    port = (uint16_t)v;
    as_given = port != default_port && digits[0] != '0';
  }
  if (*p != '/' && *p != '?' && *p != '\0')
    return 1;
  const char *target = p;
  /* The path: its segments plain, none "." or ".." (normalization would
   * remove them). */
  while (*p == '/') {
    const char *seg = ++p;
    while (url_class[(unsigned char)*p] & SEG_CH)
      p++;
    size_t n = (size_t)(p - seg);
    if (n <= 2 && n > 0 && seg[0] == '.' && (n == 1 || seg[1] == '.'))
      return 1;
  }
  if (*p == '?') {
    p++;
    while (url_class[(unsigned char)*p] & QUERY_CH)
      p++;
  }
  if (*p != '\0' || p - text > URL_MAX)
    return 1; /* a fragment, a byte to escape or decode, blanks, or too long */
  pu->text = text;
  pu->host = host;
  pu->hlen = hlen;
  pu->target = target;
  pu->tlen = (size_t)(p - target);
  pu->end = p;
  pu->tls = tls;
  pu->slen = tls ? 5 : 4;
  pu->port = port;
  pu->default_port = default_port;
  pu->alen = hlen + (port != default_port ? 6 : 0);
  pu->as_given = as_given && pu->tlen > 0 && target[0] == '/';
  return 0;
}

/* The bytes of the record plain_fill makes. */
static size_t plain_size(const plain_url *pu)
{
  return sizeof(ak_url) + (pu->slen + 1) + (pu->hlen + 1) + (pu->tlen + 2) + (pu->alen + 1) +
         (pu->slen + 3 + pu->alen + pu->tlen + 2);
}

/* The record for pu in mem (plain_size bytes, aligned for an ak_url): the
 * record, then scheme, host, target, authority and text (ak_url_free
 * knows it by the scheme right after the record). */
static ak_url *plain_fill(const plain_url *pu, void *mem)
{
  ak_url *url = mem;
  size_t slen = pu->slen, hlen = pu->hlen, tlen = pu->tlen;
  memset(url, 0, sizeof *url);
  url->port = pu->port;
  url->scheme = (char *)(url + 1);
  memcpy(url->scheme, pu->tls ? "https" : "http", slen + 1);
  url->host = url->scheme + slen + 1;
  memcpy(url->host, pu->host, hlen);
  url->host[hlen] = '\0';
  url->target = url->host + hlen + 1;
  size_t o = 0;
  if (tlen == 0 || pu->target[0] == '?')
    url->target[o++] = '/'; /* no path: "/" */
  memcpy(url->target + o, pu->target, tlen);
  url->target[o + tlen] = '\0';
  size_t target_len = o + tlen;
  url->authority = url->target + tlen + 2;
  url->text = url->authority + pu->alen + 1;
  if (pu->as_given) {
    /* "host[:port]" and the whole text as they stand. */
    size_t alen = (size_t)(pu->target - pu->host);
    memcpy(url->authority, pu->host, alen);
    url->authority[alen] = '\0';
    memcpy(url->text, pu->text, (size_t)(pu->end - pu->text) + 1);
    return url;
  }
  memcpy(url->authority, pu->host, hlen);
  o = hlen;
  if (pu->port != pu->default_port) {
    char digits[6];
    size_t d = 0;
    for (unsigned v = pu->port; v; v /= 10)
      digits[d++] = (char)('0' + v % 10);
    url->authority[o++] = ':';
    while (d)
      url->authority[o++] = digits[--d];
  }
  url->authority[o] = '\0';
  char *t = url->text;
  memcpy(t, url->scheme, slen);
  memcpy(t + slen, "://", 3);
  memcpy(t + slen + 3, url->authority, o);
  memcpy(t + slen + 3 + o, url->target, target_len + 1);
  return url;
}

/* parse_plain's form into one allocation: 0, 1 (not of that form) or
 * -ENOMEM. */
static int parse_plain(const char *text, ak_url **out)
{
  plain_url pu;
  if (plain_scan(text, &pu))
    return 1;
  void *mem = ak__malloc(plain_size(&pu));
  if (!mem)
    return -ENOMEM;
  *out = plain_fill(&pu, mem);
  return 0;
}

int ak__url_parse_kept(const char *text, char **buf, size_t *cap, ak_url **out)
{
  plain_url pu;
  if (!text || plain_scan(text, &pu))
    return ak_url_parse(text, out);
  size_t n = plain_size(&pu);
  if (n > *cap) {
    char *g = ak__malloc(n);
    if (!g)
      return -ENOMEM;
    ak__free(*buf);
    *buf = g;
    *cap = n;
  }
  *out = plain_fill(&pu, *buf);
  return 0;
}

int ak_url_parse(const char *text, ak_url **out)
{
  if (!text || !out)
    return -EINVAL;
  int fast = parse_plain(text, out);
  if (fast <= 0)
    return fast;
  int err = 0;
  char *s = escape_unsafe(text, &err);
  if (!s)
    return err;
  char *zone = cut_zone(s, &err);
  if (err < 0) {
    ak__free(s);
    return err;
  }
  int rc = parse_escaped(s, zone, out);
  ak__free(s);
  return rc;
}

int ak_url_resolve(const ak_url *base, const char *ref, ak_url **out)
{
  if (!base || !ref || !out)
    return -EINVAL;
  int err = 0;
  char *s = escape_unsafe(ref, &err);
  if (!s)
    return err;
  /* An absolute reference stands on its own (zone ids included). */
  char *zone = cut_zone(s, &err);
  if (err < 0) {
    ak__free(s);
    return err;
  }
  UriUriA rel, abs, res;
  const char *errpos = NULL;
  if (uriParseSingleUriA(&rel, s, &errpos) != URI_SUCCESS) {
    ak__free(s);
    ak__free(zone);
    return AK_EURL;
  }
  if (rel.scheme.first) {
    uriFreeUriMembersA(&rel);
    int rc = parse_escaped(s, zone, out);
    ak__free(s);
    return rc;
  }
  ak__free(zone);
  bool own_host = rel.hostText.first != NULL; /* "//host/path": a host of its own */
  /* base->text never holds a zone id (it is kept in base->zone). */
  if (uriParseSingleUriA(&abs, base->text, &errpos) != URI_SUCCESS) {
    uriFreeUriMembersA(&rel);
    ak__free(s);
    return AK_EURL;
  }
  int rc = 0;
  if (uriAddBaseUriA(&res, &rel, &abs) != URI_SUCCESS)
    rc = AK_EURL;
  char *joined = NULL;
  if (rc == 0) {
    int chars = 0;
    if (uriToStringCharsRequiredA(&res, &chars) != URI_SUCCESS || chars > URL_MAX * 2) {
      rc = AK_EURL;
    } else if (!(joined = ak__malloc((size_t)chars + 1))) {
      rc = -ENOMEM;
    } else if (uriToStringA(joined, &res, chars + 1, NULL) != URI_SUCCESS) {
      rc = AK_EURL;
    }
    uriFreeUriMembersA(&res);
  }
  uriFreeUriMembersA(&rel);
  uriFreeUriMembersA(&abs);
  ak__free(s);
  if (rc == 0) {
    char *z = NULL;
    if (base->zone && !own_host && !(z = ak__strdup(base->zone)))
      rc = -ENOMEM;
    else
      rc = parse_escaped(joined, z, out); /* same host: the base's zone holds */
  }
  ak__free(joined);
  return rc;
}
