/* fuzz_http_decode.c: libFuzzer target for the body decoder (decode.c,
 * AK_HTTP_DECODE): arbitrary bytes as a gzip or deflate body, fed in pieces
 * into output buffers whose sizes the input chooses, as exchange.c does.
 * Asserts what the decoder promises: it never takes more input than given
 * nor writes past the output it was given, it always makes progress while
 * both have room, the output stays bounded (a bomb is the caller's limit to
 * stop, here 4 MiB), and an error is AK_EHTTPDECODE or -ENOMEM with a
 * detail. */
#include "http/internal.h"

#include <assert.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  if (size < 3)
    return 0;
  const char *enc = data[0] & 1 ? "deflate" : "gzip";
  size_t piece = 1 + data[1] % 200;          /* input bytes per call */
  size_t out_cap = 1 + (size_t)data[2] * 37; /* output buffer size */
  data += 3;
  size -= 3;
  ak__http_decoder *d = NULL;
  char detail[160];
  if (ak__http_decoder_new(enc, &d, detail, sizeof detail) < 0)
    return 0;
  /* A guard byte after the output: a write past out_cap is caught. */
  char *out = malloc(out_cap + 1);
  int64_t total = 0;
  size_t off = 0;
  int64_t rc = 0;
  while (off < size && rc >= 0 && total < (4 << 20)) {
    size_t n = size - off < piece ? size - off : piece;
    char *in = malloc(n); /* a copy per piece: a read past it is caught */
    memcpy(in, data + off, n);
    size_t taken = 0;
    while (taken < n && rc >= 0 && total < (4 << 20)) {
      out[out_cap] = 0x5a;
      size_t used = 0;
      detail[0] = '\0';
      rc = ak__http_decoder_run(d, in + taken, n - taken, &used, out, out_cap, detail,
                                sizeof detail);
      assert(out[out_cap] == 0x5a);
      if (rc < 0) {
        assert(rc == AK_EHTTPDECODE || rc == -ENOMEM);
        assert(rc == -ENOMEM || detail[0] != '\0');
        break;
      }
      assert((size_t)rc <= out_cap);
      assert(used <= n - taken);
      assert(rc > 0 || used > 0); /* progress whenever both sides have room */
      taken += used;
      total += rc;
    }
    free(in);
    off += n;
  }
  (void)ak__http_decoder_ended(d);
  ak__http_decoder_free(d);
  free(out);
  return 0;
}
