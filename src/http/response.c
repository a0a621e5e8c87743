/* response.c: the response parser. llhttp reads the status line, headers
 * and body framing (Content-Length, chunked, close-delimited); this file
 * keeps what llhttp leaves to its user bounded and checked: the head's size
 * and header count, the body's size against a limit, Content-Range,
 * Retry-After, interim 1xx responses, and the mapping of llhttp's errors to
 * the library's. No IO: bytes in, a response record and body spans out,
 * which is what the fuzz target drives. */
#define _GNU_SOURCE 1 /* strptime, timegm */
#include "http/internal.h"

#include <ctype.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

enum { MAX_HEADERS = 200 };

static ak__http_parser *parser_of(llhttp_t *ll)
{
  return ll->data;
}

/* Records the first error; llhttp gets HPE_USER back and stops. */
static int fail(ak__http_parser *p, int err, const char *fmt, const char *arg)
{
  if (p->err == 0) {
    p->err = err;
    snprintf(p->detail, sizeof p->detail, fmt, arg ? arg : "");
  }
  return HPE_USER;
}

/* A hook said stop with rc (it may have written p->detail itself). */
static int hook_failed(ak__http_parser *p, int rc)
{
  if (p->err == 0)
    p->err = rc;
  return HPE_USER;
}

/* Counts n more head bytes against the limit. */
static bool head_over_limit(ak__http_parser *p, size_t n)
{
  p->head_bytes += n;
  return p->head_bytes > p->max_head;
}

/* A response record with room for its reason and URL after it, and for
 * a first headers block (header_room: HDR_FIRST headers, HDR_TEXT bytes
 * of names and values, a 304's head three times over): one allocation
 * where there were four (akget -N: a thousand 304s). Each is allocated on
 * its own when its room is used up. The whole stays under glibc's largest
 * per-thread cached size (1032 bytes): at 1136 bytes its malloc and free
 * went through the bins, 480 instructions a response. */
enum { RESP_ROOM = 192, HDR_FIRST = 16, HDR_TEXT = 384 };
typedef struct resp_box {
  ak_http_response r;
  size_t used;                 /* bytes of room taken */
  char room[RESP_ROOM];
  ak_http_header hdr_room[HDR_FIRST + HDR_TEXT / sizeof(ak_http_header)];
} resp_box;
/* header_room writes HDR_FIRST headers and HDR_TEXT bytes into hdr_room. */
_Static_assert(sizeof(((resp_box *)0)->hdr_room) >= HDR_FIRST * sizeof(ak_http_header) + HDR_TEXT,
               "hdr_room holds the first headers and their text");
_Static_assert(sizeof(resp_box) <= 1032, "a response record is a tcache-sized allocation");

static bool in_room(const ak_http_response *r, const char *s)
{
  const resp_box *b = (const resp_box *)r;
  return (uintptr_t)s >= (uintptr_t)b->room && (uintptr_t)s < (uintptr_t)(b->room + RESP_ROOM);
}

/* Frees a string of r's (reason, url) unless it is in r's room. */
static void free_text(ak_http_response *r, char *s)
{
  if (s && !in_room(r, s))
    ak__free(s);
}

/* Appends n bytes at at to *s (len bytes, NUL-terminated), one of r's
 * strings: in r's room while it is the last thing there and fits, else
 * in an allocation. Returns 0 or -ENOMEM. */
static int text_append(ak_http_response *r, char **s, size_t len, const char *at, size_t n)
{
  resp_box *b = (resp_box *)r;
  char *o = *s;
  bool room_end = o ? in_room(r, o) && o + len + 1 == b->room + b->used : true;
  if (room_end && b->used + n + (o ? 0 : 1) <= RESP_ROOM) {
    if (!o)
      o = b->room + b->used;
    b->used += n + (*s ? 0 : 1);
  } else {
    char *g = in_room(r, o) || !o ? ak__malloc(len + n + 1) : ak__realloc(o, len + n + 1);
    if (!g)
      return -ENOMEM;
    if (o && in_room(r, o))
      memcpy(g, o, len);
    o = g;
  }
  memcpy(o + len, at, n);
  o[len + n] = '\0';
  *s = o;
  return 0;
}

int ak__http_response_set_url(ak_http_response *r, const char *url)
{
  free_text(r, r->url);
  r->url = NULL;
  return text_append(r, &r->url, 0, url, strlen(url));
}

/* A response's headers are one block: the array, then the names and
 * values it points to ("name\0value\0" each), grown together. A block
 * per header, and the array's own, had been six allocations and frees of
 * a 304's head (a fifth of akget -N's loop instructions with llhttp's). */
static void free_headers(ak_http_response *r)
{
  if (r->headers != ((resp_box *)r)->hdr_room)
    ak__free(r->headers);
  r->headers = NULL;
  r->header_count = 0;
}

/* Room in p->resp's block for one header more with text bytes of name and
 * value: a larger block, its headers moved and their pointers with them,
 * when there is none. Returns 0 or -ENOMEM. */
static int header_grow(ak__http_parser *p, size_t text);
static inline int header_room(ak__http_parser *p, size_t text)
{
  if (__builtin_expect(p->resp->header_count < p->header_cap && p->text_len + text <= p->text_cap,
                       1))
    return 0;
  return header_grow(p, text);
}

static __attribute__((noinline)) int header_grow(ak__http_parser *p, size_t text)
{
  ak_http_response *r = p->resp;
  size_t cap = r->header_count < p->header_cap ? p->header_cap
                                                : (p->header_cap ? p->header_cap * 2 : HDR_FIRST);
  size_t text_cap = p->text_cap ? p->text_cap : HDR_TEXT;
  while (text_cap < p->text_len + text)
    text_cap *= 2;
  resp_box *box = (resp_box *)r;
  if (!r->headers && cap == HDR_FIRST && text_cap == HDR_TEXT) {
    r->headers = box->hdr_room; /* the first block: the record's own */
    p->header_cap = cap;
    p->text_cap = text_cap;
    return 0;
  }
  ak_http_header *h = ak__malloc(cap * sizeof *h + text_cap);
  if (!h)
    return -ENOMEM;
  char *to = (char *)(h + cap);
  if (r->headers) {
    const char *from = (const char *)(r->headers + p->header_cap);
    memcpy(to, from, p->text_len);
    for (size_t i = 0; i < r->header_count; i++) {
      h[i].name = to + (r->headers[i].name - from);
      h[i].value = to + (r->headers[i].value - from);
    }
    if (r->headers != box->hdr_room)
      ak__free(r->headers);
  }
  r->headers = h;
  p->header_cap = cap;
  p->text_cap = text_cap;
  return 0;
}

void ak__http_response_free(ak_http_response *r)
{
  if (!r)
    return;
  free_headers(r);
  free_text(r, r->reason);
  free_text(r, r->url);
  ak__free(r->body); /* AK_HTTP_BODY_MEMORY's, given at the end (body_memory.c) */
  ak__free(r);
}

void ak__http_response_dtor(void *resp)
{
  ak__http_response_free(resp);
}

static void reset_response(ak_http_response *r)
{
  free_headers(r);
  free_text(r, r->reason);
  free_text(r, r->url);
  memset(r, 0, sizeof *r);
  ((resp_box *)r)->used = 0;
  r->content_length = -1;
  r->range_start = r->range_end = -1;
  r->entity_size = -1;
  r->retry_after_s = -1;
}

static int on_message_begin(llhttp_t *ll)
{
  ak__http_parser *p = parser_of(ll);
  free_text(p->resp, p->resp->reason); /* an interim 1xx's head is forgotten */
  p->resp->reason = NULL;
  ((resp_box *)p->resp)->used = 0; /* the room held the reason only (the URL comes at the end) */
  free_headers(p->resp);
  p->header_cap = p->text_len = p->text_cap = 0;
  p->content_length_count = 0;
  p->at_content_range = p->at_retry_after = p->at_accept_ranges = 0;
  return 0;
}

static int on_status(llhttp_t *ll, const char *at, size_t n)
{
  ak__http_parser *p = parser_of(ll);
  if (head_over_limit(p, n))
    return fail(p, AK_EHTTPHEADSIZE, "status line longer than the head limit%s", NULL);
  size_t len = p->resp->reason ? strlen(p->resp->reason) : 0;
  if (text_append(p->resp, &p->resp->reason, len, at, n) < 0)
    return fail(p, -ENOMEM, "out of memory%s", NULL);
  return 0;
}

/* Whether a and b may be equal ignoring case, by their first bytes: a
 * letter's two cases differ only in bit 0x20, other bytes are compared as
 * they are (strcasecmp in the C locale), so differing first bytes with that
 * bit set are differing names. Most names a lookup meets differ there
 * (a 304's head was looked up five times a response, a strcasecmp for
 * each of its headers each time). */
static inline bool same_first_letter(const char *a, const char *b)
{
  return (a[0] | 0x20) == (b[0] | 0x20);
}

/* The headers final_head reads, noted as they are stored (the first of
 * each name, as ak_http_response_header finds): three lookups of a
 * response's headers had been a strcasecmp per header each. at: the
 * header's place plus one. */
static void note_header(ak__http_parser *p, const char *name, size_t len, unsigned short at)
{
  switch (name[0] | 0x20) {
  case 'c':
    if (len == 14 && strcasecmp(name, "content-length") == 0)
      p->content_length_count++;
    else if (len == 13 && !p->at_content_range && strcasecmp(name, "content-range") == 0)
      p->at_content_range = at;
    break;
  case 'r':
    if (len == 11 && !p->at_retry_after && strcasecmp(name, "retry-after") == 0)
      p->at_retry_after = at;
    break;
  case 'a':
    if (len == 13 && !p->at_accept_ranges && strcasecmp(name, "accept-ranges") == 0)
      p->at_accept_ranges = at;
    break;
  }
}

/* The value of the header noted at at (note_header), or NULL. */
static const char *noted(const ak__http_parser *p, unsigned short at)
{
  return at ? p->resp->headers[at - 1].value : NULL;
}

/* The headers' text: after the header_cap entries of resp->headers. */
static char *header_text(ak__http_parser *p)
{
  return (char *)(p->resp->headers + p->header_cap);
}

/* Appends n bytes of the header being received to the headers' text, with
 * room for one byte more (a NUL). The pieces llhttp hands over go straight
 * where the response keeps them: gathered in the parser's buffers and
 * copied out at the header's end, they had been two copies a header (a
 * fifth of akget -N's parsing with llhttp's). */
static int header_put(ak__http_parser *p, const char *at, size_t n)
{
  if (header_room(p, n + 1) < 0)
    return fail(p, -ENOMEM, "out of memory%s", NULL);
  memcpy(header_text(p) + p->text_len, at, n);
  p->text_len += n;
  return 0;
}

/* Ends the header being received, "name\0value\0" at the end of the
 * headers' text (name_at, value_at), the value trimmed of blanks on both
 * sides (llhttp drops the leading ones already). */
static int commit_header(ak__http_parser *p)
{
  if (!p->have_field)
    return 0;
  ak_http_response *r = p->resp;
  if (r->header_count >= MAX_HEADERS)
    return fail(p, AK_EHTTPHEADSIZE, "more than 200 headers%s", NULL);
  if (!p->in_value) {
    /* No value came: the name's NUL, then an empty value. */
    if (header_room(p, 2) < 0)
      return fail(p, -ENOMEM, "out of memory%s", NULL);
    header_text(p)[p->text_len++] = '\0';
    p->value_at = p->text_len;
  } else if (header_room(p, 1) < 0) {
    return fail(p, -ENOMEM, "out of memory%s", NULL);
  }
  char *t = header_text(p);
  char *v = t + p->value_at;
  size_t vl = p->text_len - p->value_at;
  while (vl > 0 && (v[vl - 1] == ' ' || v[vl - 1] == '\t'))
    vl--;
  size_t lead = 0;
  while (lead < vl && (v[lead] == ' ' || v[lead] == '\t'))
    lead++;
  if (lead) {
    vl -= lead;
    memmove(v, v + lead, vl);
  }
  v[vl] = '\0';
  p->text_len = p->value_at + vl + 1;
  char *name = t + p->name_at;
  r->headers[r->header_count].name = name;
  r->headers[r->header_count].value = v;
  r->header_count++;
  note_header(p, name, p->value_at - 1 - p->name_at, (unsigned short)r->header_count);
  p->have_field = false;
  p->in_value = false;
  return 0;
}

static int on_header_field(llhttp_t *ll, const char *at, size_t n)
{
  ak__http_parser *p = parser_of(ll);
  if (head_over_limit(p, n))
    return fail(p, AK_EHTTPHEADSIZE, "response head larger than the limit%s", NULL);
  if (p->in_value) {
    int rc = commit_header(p);
    if (rc)
      return rc;
  }
  if (!p->have_field) {
    p->have_field = true;
    p->name_at = p->text_len;
  }
  return header_put(p, at, n);
}

static int on_header_value(llhttp_t *ll, const char *at, size_t n)
{
  ak__http_parser *p = parser_of(ll);
  if (head_over_limit(p, n))
    return fail(p, AK_EHTTPHEADSIZE, "response head larger than the limit%s", NULL);
  if (!p->in_value) {
    /* The name is whole: its NUL, and the value after it. */
    if (header_room(p, n + 2) < 0)
      return fail(p, -ENOMEM, "out of memory%s", NULL);
    header_text(p)[p->text_len++] = '\0';
    p->value_at = p->text_len;
    p->in_value = true;
  }
  return header_put(p, at, n);
}

/* A non-negative decimal that fits in int64_t, all of s; -1 otherwise. */
static int64_t parse_count(const char *s, const char **end)
{
  if (!isdigit((unsigned char)*s))
    return -1;
  int64_t v = 0;
  while (isdigit((unsigned char)*s)) {
    int d = *s++ - '0';
    if (v > (INT64_MAX - d) / 10)
      return -1;
    v = v * 10 + d;
  }
  *end = s;
  return v;
}

/* "bytes a-b/N", or with an unknown size "bytes a-b/" and a star. */
static bool parse_content_range(const char *v, ak_http_response *r)
{
  if (strncasecmp(v, "bytes ", 6) != 0)
    return false;
  const char *s = v + 6;
  while (*s == ' ')
    s++;
  int64_t a = parse_count(s, &s);
  if (a < 0 || *s++ != '-')
    return false;
  int64_t b = parse_count(s, &s);
  if (b < a || *s++ != '/')
    return false;
  int64_t n = -1;
  if (*s == '*') {
    s++;
  } else {
    n = parse_count(s, &s);
    if (n <= b)
      return false;
  }
  if (*s != '\0')
    return false;
  r->range_start = a;
  r->range_end = b;
  r->entity_size = n;
  return true;
}

/* Retry-After: delay-seconds or an HTTP-date (then the delay from now). */
static int64_t parse_retry_after(const char *v)
{
  const char *end;
  int64_t s = parse_count(v, &end);
  if (s >= 0 && *end == '\0')
    return s;
  struct tm tm = {0};
  const char *rest = strptime(v, "%a, %d %b %Y %H:%M:%S GMT", &tm);
  if (!rest || *rest != '\0')
    return -1;
  time_t when = timegm(&tm), now = time(NULL);
  return when > now ? (int64_t)(when - now) : 0;
}

static int final_head(ak__http_parser *p)
{
  ak_http_response *r = p->resp;
  llhttp_t *ll = &p->ll;
  if (p->content_length_count > 0) {
    /* llhttp has checked the number (digits, no overflow, one header). */
    r->content_length = (int64_t)ll->content_length;
    if (ll->content_length > (uint64_t)p->max_body || r->content_length < 0) {
      const char *cl = ak_http_response_header(r, "content-length");
      return fail(p, AK_EHTTPTOOBIG, "Content-Length %s is over the body limit", cl);
    }
  }
  if (r->status == 206) {
    const char *cr = noted(p, p->at_content_range);
    if (!cr || !parse_content_range(cr, r))
      return fail(p, AK_EHTTPPROTO, "206 with a missing or malformed Content-Range: %s", cr);
    if (r->content_length >= 0 && r->content_length != r->range_end - r->range_start + 1)
      return fail(p, AK_EHTTPPROTO, "206 whose Content-Length does not match its Content-Range %s",
                  cr);
  } else if (r->status == 200 && r->content_length >= 0) {
    r->entity_size = r->content_length;
  }
  const char *ra = noted(p, p->at_retry_after);
  if (ra)
    r->retry_after_s = parse_retry_after(ra);
  const char *ar = noted(p, p->at_accept_ranges);
  r->accept_ranges = ar && strcasecmp(ar, "bytes") == 0;
  p->head_done = true;
  if (p->on_head) {
    int rc = p->on_head(p, p->hook_arg);
    if (rc < 0)
      return hook_failed(p, rc);
  }
  /* 1: no body follows: a HEAD's answer, and a 204 or 304 whatever its
   * headers say (RFC 9110 6.4.1; a 304's Content-Length is the entity's
   * size, and a client that waited for those bytes would stall on the
   * kept-alive connection until its idle deadline). */
  return p->head_request || r->status == 204 || r->status == 304 ? 1 : 0;
}

static int on_headers_complete(llhttp_t *ll)
{
  ak__http_parser *p = parser_of(ll);
  if (p->in_value || p->have_field) {
    int rc = commit_header(p);
    if (rc)
      return rc;
  }
  int status = llhttp_get_status_code(ll);
  p->resp->status = status;
  if (status < 100 || status > 999)
    return fail(p, AK_EHTTPPROTO, "status code not of three digits%s", NULL);
  if (status == 101)
    return fail(p, AK_EHTTPPROTO, "101 Switching Protocols to a request that asked for none%s",
                NULL);
  if (status >= 100 && status < 200)
    return 1; /* interim: no body, whatever its headers say (RFC 9110
                 15.2); the real response follows. A Content-Length on a
                 1xx would otherwise have its bytes taken as body (found by
                 the fuzzer). */
  return final_head(p);
}

static int on_body(llhttp_t *ll, const char *at, size_t n)
{
  ak__http_parser *p = parser_of(ll);
  ak_http_response *r = p->resp;
  if (!p->head_done) /* NEVER: interim responses have no body (above) */
    return fail(p, AK_EHTTPPROTO, "a body before the final response%s", NULL);
  if ((int64_t)n > p->max_body - r->body_bytes)
    return fail(p, AK_EHTTPTOOBIG, "body larger than the limit%s", NULL);
  r->body_bytes += (int64_t)n;
  if (p->on_body) {
    int rc = p->on_body(p, at, n, p->hook_arg);
    if (rc < 0)
      return hook_failed(p, rc);
  }
  return 0;
}

static int on_chunk_header(llhttp_t *ll)
{
  ak__http_parser *p = parser_of(ll);
  /* llhttp has checked the hex number for overflow of 64 bits; our limit
   * is the body's. */
  if (ll->content_length > (uint64_t)(p->max_body - p->resp->body_bytes))
    return fail(p, AK_EHTTPTOOBIG, "chunk larger than the body limit%s", NULL);
  return 0;
}

static int on_message_complete(llhttp_t *ll)
{
  ak__http_parser *p = parser_of(ll);
  int status = p->resp->status;
  if (status >= 100 && status < 200)
    return 0; /* go on to the next message: the final response */
  p->message_done = true;
  return HPE_PAUSED; /* stop here: what follows is not this request's */
}

static const llhttp_settings_t settings = {
    .on_message_begin = on_message_begin,
    .on_status = on_status,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
    .on_chunk_header = on_chunk_header,
};

int ak__http_parser_init(ak__http_parser *p, size_t max_head, int64_t max_body, bool head_request)
{
  /* Cleared up to detail, a third of the parser (akget -N clears one a
   * response). */
  memset(p, 0, offsetof(ak__http_parser, detail));
  p->detail[0] = '\0';
  resp_box *box = ak__malloc(sizeof *box);
  if (!box)
    return -ENOMEM;
  memset(&box->r, 0, sizeof box->r); /* the room needs no clearing */
  box->used = 0;
  p->resp = &box->r;
  reset_response(p->resp);
  p->max_head = max_head;
  p->max_body = max_body;
  p->head_request = head_request;
  llhttp_init(&p->ll, HTTP_RESPONSE, &settings);
  p->ll.data = p;
  return 0;
}

void ak__http_parser_free(ak__http_parser *p)
{
  ak__http_response_free(p->resp);
  p->resp = NULL;
  p->have_field = p->in_value = false;
}

ak_http_response *ak__http_parser_take(ak__http_parser *p)
{
  ak_http_response *r = p->resp;
  p->resp = NULL;
  return r;
}

/* The library's error for llhttp's. */
static int map_llhttp_error(llhttp_errno_t e)
{
  switch (e) {
  case HPE_INVALID_CONTENT_LENGTH:
  case HPE_UNEXPECTED_CONTENT_LENGTH:
    return AK_EHTTPLENGTH;
  case HPE_INVALID_CHUNK_SIZE:
    return AK_EHTTPCHUNK;
  default:
    return AK_EHTTPPROTO;
  }
}

int64_t ak__http_parser_feed(ak__http_parser *p, const char *data, size_t len)
{
  if (p->err)
    return p->err;
  if (p->message_done)
    return 0;
  llhttp_errno_t e = llhttp_execute(&p->ll, data, len);
  if (e == HPE_OK)
    return (int64_t)len;
  if (e == HPE_PAUSED && p->message_done)
    return (int64_t)(llhttp_get_error_pos(&p->ll) - data);
  if (p->err == 0) {
    p->err = map_llhttp_error(e);
    snprintf(p->detail, sizeof p->detail, "%s: %s", llhttp_errno_name(e),
             llhttp_get_error_reason(&p->ll) ? llhttp_get_error_reason(&p->ll) : "");
  }
  return p->err;
}

int ak__http_parser_eof(ak__http_parser *p, bool got_bytes)
{
  if (p->err)
    return p->err;
  if (p->message_done)
    return 0;
  if (p->head_done && llhttp_message_needs_eof(&p->ll)) {
    llhttp_errno_t e = llhttp_finish(&p->ll);
    if (e == HPE_OK || (e == HPE_PAUSED && p->message_done)) {
      p->message_done = true;
      return 0;
    }
  }
  if (p->head_done) {
    p->err = AK_EHTTPTRUNCATED;
    if (p->ll.flags & F_CHUNKED)
      snprintf(p->detail, sizeof p->detail,
               "connection closed inside a chunked body after %" PRId64 " bytes",
               p->resp->body_bytes);
    else
      snprintf(p->detail, sizeof p->detail,
               "connection closed after %" PRId64 " of %" PRId64 " body bytes",
               p->resp->body_bytes, p->resp->content_length);
  } else if (!got_bytes) {
    p->err = AK_EHTTPCLOSED;
    snprintf(p->detail, sizeof p->detail, "connection closed before any response byte");
  } else {
    p->err = AK_EHTTPPROTO;
    snprintf(p->detail, sizeof p->detail, "connection closed inside the response head");
  }
  return p->err;
}

bool ak__http_parser_keep_alive(const ak__http_parser *p)
{
  return p->message_done && llhttp_should_keep_alive(&p->ll);
}

const char *ak_http_response_header(const ak_http_response *resp, const char *name)
{
  if (!resp || !name)
    return NULL;
  for (size_t i = 0; i < resp->header_count; i++)
    if (same_first_letter(resp->headers[i].name, name) && strcasecmp(resp->headers[i].name, name) == 0)
      return resp->headers[i].value;
  return NULL;
}
