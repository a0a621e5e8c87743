/* checksum.c: --checksum sha-256=HEX: parsing the option, and verifying a
 * finished download on the pool (the file is read back from the page cache
 * with 1 MiB reads and hashed by libcrypto's EVP digest, SHA-256 for
 * --checksum, the list's algorithm for --checksums: the one aksum uses,
 * SHA-NI where the CPU has it), so the loop never blocks on it. libcrypto
 * is reached through akget's TLS module (src/tls/digest.h), loaded at the
 * first checksum, so that a run without one never maps it; a module that
 * cannot be loaded fails the check with -ELIBACC, its words on stderr
 * once. */
#include "akget.h"

#include <ctype.h>
#include <stdatomic.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <stdio.h>

#include "tls/digest.h"

int akg_parse_checksum(const char *spec, unsigned char out[32])
{
  const char *hex;
  if (strncasecmp(spec, "sha-256=", 8) == 0)
    hex = spec + 8;
  else if (strncasecmp(spec, "sha256=", 7) == 0)
    hex = spec + 7;
  else
    return -EINVAL;
  if (strlen(hex) != 64)
    return -EINVAL;
  for (int i = 0; i < 32; i++) {
    char b[3] = {hex[2 * i], hex[2 * i + 1], 0};
    if (!isxdigit((unsigned char)b[0]) || !isxdigit((unsigned char)b[1]))
      return -EINVAL;
    out[i] = (unsigned char)strtoul(b, NULL, 16);
  }
  return 0;
}

typedef struct verify {
  char *path;
  const char *md_name;       /* libcrypto's name: "SHA256", "MD5"... */
  size_t len;                /* bytes of want */
  unsigned char want[64];
} verify;

static void verify_free(verify *x)
{
  free(x->path);
  free(x);
}

static void verify_settled(ak_future *f, void *arg)
{
  (void)f;
  verify_free(arg);
}

/* One pool for the whole run (hashing is rare next to downloading). */
static ak_pool *pool;
static pthread_once_t pool_once = PTHREAD_ONCE_INIT;
static void pool_make(void)
{
  pool = ak_pool_new(1);
}

void akg_checksum_shutdown(void)
{
  if (pool) {
    ak_pool_stop(pool, true);
    ak_pool_free(pool);
    pool = NULL;
  }
}

/* The module's digests, or NULL: then its words on stderr, once a run. */
static const ak__tls_digest_ops *digests(void)
{
  static _Atomic int told;
  char detail[1024];
  const ak__tls_digest_ops *dg = ak__tls_module_digests(detail, sizeof detail);
  if (!dg && !atomic_exchange(&told, 1))
    fprintf(stderr, "akget: checksums cannot be verified: %s\n", detail);
  return dg;
}

static int64_t verify_run(void *arg, ak_future *self)
{
  (void)self;
  verify *x = arg;
  int fd = open(x->path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return -errno;
  enum { CHUNK = 1 << 20 };
  unsigned char *buf = malloc(CHUNK);
  if (!buf) {
    close(fd);
    return -ENOMEM;
  }
  const ak__tls_digest_ops *dg = digests();
  ak__tls_digest *ctx = dg ? dg->make(x->md_name) : NULL;
  int64_t rc = !dg ? -ELIBACC : ctx ? 0 : -ENOMEM;
  while (rc == 0) {
    ssize_t n = read(fd, buf, CHUNK);
    if (n < 0) {
      rc = -errno;
      break;
    }
    if (n == 0)
      break;
    if (!dg->update(ctx, buf, (size_t)n))
      rc = -ENOMEM;
  }
  unsigned char got[AK__TLS_DIGEST_MAX];
  if (rc == 0 && dg->final(ctx, got) != x->len)
    rc = -ENOMEM;
  if (dg)
    dg->free(ctx);
  free(buf);
  close(fd);
  if (rc == 0 && memcmp(got, x->want, x->len) != 0)
    rc = AKG_ECHECKSUM;
  return rc;
}

ak_future *akg_checksum_verify(ak_loop *loop, const char *path, const unsigned char want[32])
{
  return akg_checksum_verify_md(loop, path, "SHA256", want, 32);
}

ak_future *akg_checksum_verify_md(ak_loop *loop, const char *path, const char *md_name,
                                  const unsigned char *want, size_t len)
{
  (void)loop;
  verify *x = len <= sizeof x->want ? calloc(1, sizeof *x) : NULL;
  if (!x || !(x->path = strdup(path))) {
    free(x);
    return NULL;
  }
  x->md_name = md_name;
  x->len = len;
  memcpy(x->want, want, len);
  pthread_once(&pool_once, pool_make);
  ak_future *f = pool ? ak_pool_submit(pool, verify_run, x) : NULL;
  if (!f || ak_future_on_settle(f, verify_settled, x) < 0) {
    ak_future_release(f); /* (a queued task still holds x: ENOMEM here is not expected) */
    if (!f)
      verify_free(x);
    return NULL;
  }
  return f;
}
