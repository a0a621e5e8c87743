/* hash.c: the hash algorithms aksum offers, behind one small table:
 * SHA-256 from mbedtls (the _ret functions: the others are deprecated in
 * 2.28) and XXH3 (64-bit, printed as xxhsum prints its canonical form) from
 * libxxhash when the build found it. Contexts are used by one pool thread at
 * a time. */
#include "aksum.h"

#include <stdlib.h>
#include <string.h>

#include <mbedtls/sha256.h>
#ifdef AKSUM_HAVE_XXHASH
#include <xxhash.h>
#endif

static void *sha256_new(void)
{
  mbedtls_sha256_context *c = malloc(sizeof(*c));
  if (!c)
    return NULL;
  mbedtls_sha256_init(c);
  mbedtls_sha256_starts_ret(c, 0);
  return c;
}

static void sha256_update(void *ctx, const void *data, size_t len)
{
  mbedtls_sha256_update_ret(ctx, data, len);
}

static void sha256_finish(void *ctx, unsigned char *out)
{
  mbedtls_sha256_finish_ret(ctx, out);
}

static void sha256_free(void *ctx)
{
  mbedtls_sha256_free(ctx);
  free(ctx);
}

#ifdef AKSUM_HAVE_XXHASH
static void *xxh3_new(void)
{
  XXH3_state_t *s = XXH3_createState();
  if (s)
    XXH3_64bits_reset(s);
  return s;
}

static void xxh3_update(void *ctx, const void *data, size_t len)
{
  XXH3_64bits_update(ctx, data, len);
}

static void xxh3_finish(void *ctx, unsigned char *out)
{
  XXH64_canonical_t canon;
  XXH64_canonicalFromHash(&canon, XXH3_64bits_digest(ctx));
  memcpy(out, canon.digest, 8);
}

static void xxh3_free(void *ctx)
{
  XXH3_freeState(ctx);
}
#endif

static const aks_algo algos[] = {
    [AKS_SHA256] = {"sha256", 32, true, sha256_new, sha256_update, sha256_finish, sha256_free},
#ifdef AKSUM_HAVE_XXHASH
    [AKS_XXH3] = {"xxh3", 8, true, xxh3_new, xxh3_update, xxh3_finish, xxh3_free},
#else
    [AKS_XXH3] = {"xxh3", 8, false, NULL, NULL, NULL, NULL},
#endif
};

const aks_algo *aks_algo_get(aks_algo_id id)
{
  return &algos[id];
}

const aks_algo *aks_algo_by_name(const char *name)
{
  for (size_t i = 0; i < sizeof(algos) / sizeof(algos[0]); i++)
    if (strcmp(algos[i].name, name) == 0)
      return &algos[i];
  return NULL;
}
