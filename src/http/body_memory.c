/* body_memory.c: AK_HTTP_BODY_MEMORY, the body collected in one growing
 * buffer with a cap. Owns the buffer until the exchange moves it into the
 * response (ak_http_response.body); knows nothing of connections or
 * receives: exchange.c calls the sink exactly as it calls a user's on_body
 * (after decoding, when AK_HTTP_DECODE decodes). */
#include "http/internal.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

/* The default cap: a body this large belongs in a file (the fd sink). */
#define MEMBODY_DEFAULT_CAP ((size_t)16 << 20)
/* The first allocation when the length is not announced. */
#define MEMBODY_FIRST ((size_t)16 << 10)

struct ak__http_membody {
  char *buf;                /* the body so far, plus room for a '\0' */
  size_t len;               /* bytes in buf */
  size_t room;              /* buf's size */
  size_t cap;               /* the most body bytes allowed */
  ak__http_parser *parser;  /* the exchange's: Content-Length, detail */
  bool checked;             /* the announced length was compared already */
};

int ak__http_membody_new(const ak_http_request *req, ak__http_parser *parser,
                         ak__http_membody **out)
{
  *out = NULL;
  if (req->fd >= 0 || req->on_body)
    return -EINVAL; /* one sink per request */
  ak__http_membody *m = ak__calloc(1, sizeof *m);
  if (!m)
    return -ENOMEM;
  m->cap = req->body_cap ? req->body_cap : MEMBODY_DEFAULT_CAP;
  if (m->cap > SIZE_MAX / 4)
    m->cap = SIZE_MAX / 4; /* room doubling and cap + 1 stay in range */
  m->parser = parser;
  *out = m;
  return 0;
}

static int over_cap(ak__http_membody *m, const char *what, uint64_t n)
{
  snprintf(m->parser->detail, sizeof m->parser->detail,
           "%s %llu bytes, over the in-memory body cap of %zu bytes (body_cap)", what,
           (unsigned long long)n, m->cap);
  return AK_EHTTPTOOBIG;
}

/* Room for need bytes (+1 for the '\0'), growing by doubling but never
 * past cap + 1. */
static int reserve(ak__http_membody *m, size_t need)
{
  if (need + 1 <= m->room)
    return 0;
  size_t room = m->room ? m->room : MEMBODY_FIRST < m->cap + 1 ? MEMBODY_FIRST : m->cap + 1;
  while (room < need + 1)
    room = room > (m->cap + 1) / 2 ? m->cap + 1 : room * 2;
  char *g = ak__realloc(m->buf, room);
  if (!g)
    return -ENOMEM;
  m->buf = g;
  m->room = room;
  return 0;
}

int ak__http_membody_sink(const void *data, size_t len, int64_t offset, void *arg)
{
  (void)offset; /* consecutive: a 206's body starts at its range, kept from 0 */
  ak__http_membody *m = arg;
  if (!m->checked) {
    /* First bytes of the body: an announced length over the cap fails now,
     * before the rest is read; one within it is the first allocation. A
     * decoded body's length is not known ahead. */
    m->checked = true;
    const ak_http_response *r = m->parser->resp;
    if (r && !r->decoded && r->content_length >= 0) {
      if ((uint64_t)r->content_length > m->cap)
        return over_cap(m, "Content-Length", (uint64_t)r->content_length);
      int rc = reserve(m, (size_t)r->content_length);
      if (rc < 0)
        return rc;
    }
  }
  if (len > m->cap - m->len)
    return over_cap(m, "body of at least", (uint64_t)m->len + len);
  int rc = reserve(m, m->len + len);
  if (rc < 0)
    return rc;
  memcpy(m->buf + m->len, data, len);
  m->len += len;
  return 0;
}

int ak__http_membody_give(ak__http_membody *m, ak_http_response *r)
{
  if (reserve(m, m->len) < 0)
    return -ENOMEM;
  m->buf[m->len] = '\0';
  r->body = m->buf;
  r->body_len = m->len;
  m->buf = NULL;
  m->len = m->room = 0;
  return 0;
}

void ak__http_membody_free(ak__http_membody *m)
{
  if (!m)
    return;
  ak__free(m->buf);
  ak__free(m);
}
