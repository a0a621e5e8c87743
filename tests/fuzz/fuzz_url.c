/* fuzz_url.c: libFuzzer target for URL handling (url.c over uriparser):
 * parsing any bytes, and resolving them as a reference (a Location header)
 * against a fixed base. Asserts: a parsed URL has an http(s) scheme, a host,
 * a port in range and a target starting with "/" and free of bytes that may
 * not be sent; its text parses again to the same text (a fixed point); an
 * error is one of the library's codes. */
#include "http/internal.h"

#include <assert.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static void check(const ak_url *u)
{
  assert(strcmp(u->scheme, "http") == 0 || strcmp(u->scheme, "https") == 0);
  assert(u->host[0] != '\0' && u->port > 0);
  assert(u->target[0] == '/');
  for (const unsigned char *p = (const unsigned char *)u->target; *p; p++)
    assert(*p > 0x20 && *p < 0x7f);
  ak_url *again = NULL;
  int rc = ak_url_parse(u->text, &again);
  if (!u->zone) {
    assert(rc == 0);
    assert(strcmp(again->text, u->text) == 0);
  }
  ak_url_free(again);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  char *s = malloc(size + 1);
  memcpy(s, data, size);
  s[size] = '\0';
  ak_url *u = NULL;
  int rc = ak_url_parse(s, &u);
  if (rc == 0)
    check(u);
  else
    assert(rc == AK_EURL || rc == AK_EURLSCHEME || rc == -ENOMEM);
  ak_url_free(u);
  static ak_url *base;
  if (!base)
    ak_url_parse("http://a.example:8080/b/c/d;p?q", &base);
  u = NULL;
  rc = ak_url_resolve(base, s, &u);
  if (rc == 0)
    check(u);
  else
    assert(rc == AK_EURL || rc == AK_EURLSCHEME || rc == -ENOMEM);
  ak_url_free(u);
  free(s);
  return 0;
}
