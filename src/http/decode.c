/* decode.c: the body decoder for AK_HTTP_DECODE: a gzip or deflate
 * (zlib-wrapped, RFC 9110) Content-Encoding inflated by zlib as the body
 * streams, in bounded steps (the caller's output buffer), with every error
 * of the stream (corrupt data, a wrong CRC or length trailer, a stream that
 * ends early, bytes after its end that are not another gzip member) an
 * AK_EHTTPDECODE. It owns only the zlib state: where the input comes from
 * and where the output goes is exchange.c's. No IO. */
#include "http/internal.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <zlib.h>

struct ak__http_decoder {
  z_stream z;                  /* zlib's state (inflateInit2 done) */
  bool gzip;                   /* gzip: another member may follow the end */
  bool ended;                  /* the stream (its last member so far) ended */
};

/* A Content-Encoding value the decoder takes (the token, blanks trimmed). */
static int encoding_kind(const char *enc, bool *gzip)
{
  while (*enc == ' ' || *enc == '\t')
    enc++;
  size_t n = strlen(enc);
  while (n > 0 && (enc[n - 1] == ' ' || enc[n - 1] == '\t'))
    n--;
  if ((n == 4 && strncasecmp(enc, "gzip", 4) == 0) || (n == 6 && strncasecmp(enc, "x-gzip", 6) == 0)) {
    *gzip = true;
    return 0;
  }
  if (n == 7 && strncasecmp(enc, "deflate", 7) == 0) {
    *gzip = false;
    return 0;
  }
  return AK_EHTTPDECODE;
}

bool ak__http_encoding_is_identity(const char *enc)
{
  while (*enc == ' ' || *enc == '\t')
    enc++;
  return *enc == '\0' || strncasecmp(enc, "identity", 8) == 0;
}

int ak__http_decoder_new(const char *encoding, ak__http_decoder **out, char *detail, size_t n)
{
  bool gzip = false;
  if (encoding_kind(encoding, &gzip) < 0) {
    snprintf(detail, n, "Content-Encoding '%.60s' was not asked for (gzip, deflate)", encoding);
    return AK_EHTTPDECODE;
  }
  ak__http_decoder *d = ak__calloc(1, sizeof *d);
  if (!d)
    return -ENOMEM;
  d->gzip = gzip;
  /* 15 + 32: a gzip or a zlib header, detected (and each one's trailer
   * checked: CRC-32 and length for gzip, Adler-32 for zlib). */
  if (inflateInit2(&d->z, 15 + 32) != Z_OK) {
    ak__free(d);
    return -ENOMEM;
  }
  *out = d;
  return 0;
}

void ak__http_decoder_free(ak__http_decoder *d)
{
  if (!d)
    return;
  inflateEnd(&d->z);
  ak__free(d);
}

bool ak__http_decoder_ended(const ak__http_decoder *d)
{
  return d->ended;
}

int64_t ak__http_decoder_run(ak__http_decoder *d, const void *in, size_t in_len, size_t *used,
                             void *out, size_t out_cap, char *detail, size_t n)
{
  /* zlib counts in uInt: steps of at most 1 GiB (the caller's are far smaller). */
  size_t give = in_len < (1u << 30) ? in_len : (1u << 30);
  d->z.next_in = (Bytef *)(uintptr_t)in;
  d->z.next_out = out;
  d->z.avail_in = (uInt)give;
  d->z.avail_out = (uInt)(out_cap < (1u << 30) ? out_cap : (1u << 30));
  int64_t made = 0;
  int rc = Z_OK;
  while (d->z.avail_in > 0 && d->z.avail_out > 0) {
    if (d->ended) {
      /* Bytes after the end: another gzip member (RFC 1952 allows several),
       * or garbage. */
      if (!d->gzip) {
        snprintf(detail, n, "bytes after the end of the deflate stream");
        return AK_EHTTPDECODE;
      }
      inflateReset(&d->z);
      d->ended = false;
    }
    uInt before_out = d->z.avail_out;
    rc = inflate(&d->z, Z_NO_FLUSH);
    made += before_out - d->z.avail_out;
    if (rc == Z_STREAM_END) {
      d->ended = true;
      continue;
    }
    if (rc == Z_BUF_ERROR)
      break; /* no progress possible with what is here: more input needed */
    if (rc != Z_OK) {
      snprintf(detail, n, "%s body: %s", d->gzip ? "gzip" : "deflate",
               d->z.msg ? d->z.msg : "corrupt data");
      return rc == Z_MEM_ERROR ? -ENOMEM : AK_EHTTPDECODE;
    }
  }
  *used = give - d->z.avail_in;
  return made;
}
