/* fuzz_response.c: libFuzzer target for the response path: status line,
 * headers and body framing (Content-Length, chunked, close-delimited, 1xx)
 * through llhttp and the client's own checks (response.c), fed in pieces
 * whose sizes the input chooses, then the peer's close. Asserts what the
 * client promises: the head and body limits hold whatever the bytes say,
 * body spans lie inside what was fed, a completed message accounts for
 * every body byte, and an error is one of the library's codes. */
#include "http/internal.h"

#include <assert.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct seen {
  const char *lo, *hi; /* the piece being fed */
  int64_t body;
  int heads;
} seen;

static int on_head(ak__http_parser *p, void *arg)
{
  seen *s = arg;
  s->heads++;
  assert(p->resp->status >= 200 && p->resp->status <= 999);
  return 0;
}

static int on_body(ak__http_parser *p, const char *data, size_t len, void *arg)
{
  (void)p;
  seen *s = arg;
  assert(data >= s->lo && data + len <= s->hi); /* in place, no copy */
  s->body += (int64_t)len;
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  if (size < 2)
    return 0;
  bool head_request = data[0] & 1;
  size_t piece = 1 + data[1] % 64; /* bytes per feed */
  data += 2;
  size -= 2;
  enum { MAX_HEAD = 2048, MAX_BODY = 100000 };
  ak__http_parser p;
  if (ak__http_parser_init(&p, MAX_HEAD, MAX_BODY, head_request) < 0)
    return 0;
  seen s = {0};
  p.on_head = on_head;
  p.on_body = on_body;
  p.hook_arg = &s;
  size_t off = 0;
  int64_t rc = 0;
  /* A copy per piece, so that a read past the piece is caught by ASan. */
  while (off < size && rc >= 0 && !p.message_done) {
    size_t n = size - off < piece ? size - off : piece;
    char *buf = malloc(n);
    memcpy(buf, data + off, n);
    s.lo = buf;
    s.hi = buf + n;
    rc = ak__http_parser_feed(&p, buf, n);
    free(buf);
    assert(rc < 0 || (size_t)rc <= n);
    off += n;
  }
  if (rc >= 0 && !p.message_done)
    rc = ak__http_parser_eof(&p, size > 0);
  assert(p.head_bytes <= MAX_HEAD + piece); /* counted up to the piece that crossed it */
  assert(s.body <= MAX_BODY);
  assert(s.heads <= 1);
  if (rc < 0) {
    assert(rc <= AK_ERR_BASE || rc == -ENOMEM);
    assert(strcmp(ak_err_name((int)rc), "UNKNOWN") != 0);
  } else if (p.message_done) {
    ak_http_response *r = ak__http_parser_take(&p);
    assert(r->body_bytes == s.body);
    if (r->content_length >= 0 && !head_request && r->status != 204 && r->status != 304)
      assert(r->body_bytes == r->content_length || r->content_length == 0);
    ak__http_response_free(r);
  }
  ak__http_parser_free(&p);
  return 0;
}
