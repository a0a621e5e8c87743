/* hash.c: the hash algorithms aksum offers, behind one small table: the
 * coreutils family (md5, sha1, sha224, sha256, sha384, sha512, blake2b) from
 * OpenSSL 3's libcrypto through EVP, and XXH3 (64-bit, printed as xxhsum
 * prints its canonical form) from libxxhash when the build found it.
 *
 * Why libcrypto: it runs SHA-1 and SHA-256 on the CPU's SHA-NI instructions
 * and SHA-512 on AVX2, and it has BLAKE2b-512, which nettle 3.8 (the other
 * SHA-NI library in Debian 12) lacks. BLAKE2b of another length than 512
 * bits (b2sum -l, or any -c run of BLAKE2b, whose lists say each line's
 * length) runs on blake2b.c: libcrypto 3.0 cannot set the length. Measured on these machines, 1 MiB
 * updates, medians of 9 alternated runs: SHA-256 EVP 1588 MiB/s against
 * nettle 1406, SHA-512 773 against 491 (docs/aksum.md). mbedtls 2.28 has no
 * SHA-NI path.
 *
 * Except SHA-256 and SHA-224 where the CPU has SHA-NI: those run on
 * sha256ni.c, which hashes up to four files at once on one thread (one
 * message alone leaves the SHA unit idle between dependent rounds; four
 * interleaved hash about 1.7x as many bytes per core as libcrypto's
 * one-message code). The test-only environment variable
 * AKSUM_TEST_NO_SHANI=1 keeps libcrypto for them (the tests compare both).
 *
 * The run's EVP_MD is fetched once (aks_algo_prepare, before any thread
 * starts) and then only read; a context is used by one pool thread at a
 * time. */
#include "aksum.h"

#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#ifdef AKSUM_HAVE_XXHASH
#include <xxhash.h>
#endif

/* ---- libcrypto (EVP) ------------------------------------------------------ */

static void *evp_new(const aks_algo *a, size_t out_len)
{
  (void)out_len; /* always a->digest_len: only BLAKE2b has other lengths (below) */
  EVP_MD_CTX *c = EVP_MD_CTX_new();
  if (c && EVP_DigestInit_ex2(c, a->md, NULL) != 1) {
    EVP_MD_CTX_free(c);
    return NULL;
  }
  return c;
}

static void evp_update(void *ctx, const void *data, size_t len)
{
  /* Cannot fail for a started software digest: the providers' update
   * only adds bytes to a buffer and runs the compression function. */
  EVP_DigestUpdate(ctx, data, len);
}

static void evp_finish(void *ctx, unsigned char *out)
{
  unsigned int len;
  EVP_DigestFinal_ex(ctx, out, &len);
}

static void evp_free(void *ctx)
{
  EVP_MD_CTX_free(ctx);
}

/* ---- SHA-256 and SHA-224 on SHA-NI (sha256ni.c) ------------------------- */

static void *ni_new(const aks_algo *a, size_t out_len)
{
  (void)out_len;
  aks_sha256 *c = malloc(sizeof(*c));
  if (c)
    aks_sha256ni_init(c, a->digest_len == 28);
  return c;
}

static void ni_update(void *ctx, const void *data, size_t len)
{
  aks_sha256 *c[1] = {ctx};
  const unsigned char *d[1] = {data};
  aks_sha256ni_update_lanes(c, d, &len, 1);
}

static void ni_update_lanes(void *const ctx[], const void *const data[], const size_t len[],
                            unsigned n)
{
  aks_sha256ni_update_lanes((aks_sha256 *const *)ctx, (const unsigned char *const *)data, len, n);
}

static void ni_finish(void *ctx, unsigned char *out)
{
  aks_sha256ni_final(ctx, out);
}

static void ni_free(void *ctx)
{
  free(ctx);
}

static void use_shani(aks_algo *a)
{
  a->ctx_new = ni_new;
  a->update = ni_update;
  a->finish = ni_finish;
  a->ctx_free = ni_free;
  a->lanes = AKS_SHA256_LANES;
  a->update_lanes = ni_update_lanes;
  a->available = true;
}

/* ---- BLAKE2b of any length (blake2b.c) ----------------------------------- */

static void *b2_new(const aks_algo *a, size_t out_len)
{
  (void)a;
  aks_blake2b *c = malloc(sizeof(*c));
  if (c)
    aks_blake2b_init(c, out_len);
  return c;
}

static void b2_update(void *ctx, const void *data, size_t len)
{
  aks_blake2b_update(ctx, data, len);
}

static void b2_finish(void *ctx, unsigned char *out)
{
  aks_blake2b_final(ctx, out);
}

static void b2_free(void *ctx)
{
  free(ctx);
}

/* ---- XXH3 ------------------------------------------------------------------ */

#ifdef AKSUM_HAVE_XXHASH
static void *xxh3_new(const aks_algo *a, size_t out_len)
{
  (void)a;
  (void)out_len;
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

/* ---- The table ---------------------------------------------------------------- */

#define EVP_ALGO(name, tag, tool, evp, len)                                                        \
  {                                                                                                \
    name, tag, tool, evp, len, false, NULL, evp_new, evp_update, evp_finish, evp_free, 1, NULL     \
  }

static aks_algo algos[] = {
    [AKS_MD5] = EVP_ALGO("md5", "MD5", "md5sum", "MD5", 16),
    [AKS_SHA1] = EVP_ALGO("sha1", "SHA1", "sha1sum", "SHA1", 20),
    [AKS_SHA224] = EVP_ALGO("sha224", "SHA224", "sha224sum", "SHA224", 28),
    [AKS_SHA256] = EVP_ALGO("sha256", "SHA256", "sha256sum", "SHA256", 32),
    [AKS_SHA384] = EVP_ALGO("sha384", "SHA384", "sha384sum", "SHA384", 48),
    [AKS_SHA512] = EVP_ALGO("sha512", "SHA512", "sha512sum", "SHA512", 64),
    [AKS_BLAKE2B] = EVP_ALGO("blake2b", "BLAKE2b", "b2sum", "BLAKE2B-512", 64),
#ifdef AKSUM_HAVE_XXHASH
    [AKS_XXH3] = {"xxh3", "XXH3", "xxhsum -H3", NULL, 8, true, NULL, xxh3_new, xxh3_update,
                  xxh3_finish, xxh3_free, 1, NULL},
#else
    [AKS_XXH3] = {"xxh3", "XXH3", "xxhsum -H3", NULL, 8, false, NULL, NULL, NULL, NULL, NULL, 1,
                  NULL},
#endif
};

enum { N_ALGOS = sizeof(algos) / sizeof(algos[0]) };

void aks_algo_init(void)
{
  const char *no_shani = getenv("AKSUM_TEST_NO_SHANI");
  if (aks_sha256ni_usable() && !(no_shani && *no_shani && strcmp(no_shani, "0") != 0)) {
    use_shani(&algos[AKS_SHA256]);
    use_shani(&algos[AKS_SHA224]);
  }
}

void aks_algo_blake2b_any_length(void)
{
  aks_algo *m = &algos[AKS_BLAKE2B];
  m->ctx_new = b2_new;
  m->update = b2_update;
  m->finish = b2_finish;
  m->ctx_free = b2_free;
  m->available = true;
}

bool aks_algo_prepare(const aks_algo *a)
{
  aks_algo *m = &algos[a - algos];
  /* Only the digest a run uses is fetched: the first fetch sets up
   * libcrypto's providers and reads openssl.cnf (about 5 M instructions),
   * which a run on SHA-NI's SHA-256 does not need at all. */
  if (m->evp_name && m->ctx_new == evp_new && !m->md) {
    m->md = EVP_MD_fetch(NULL, m->evp_name, NULL);
    m->available = m->md != NULL;
  }
  return m->available;
}

void aks_algo_cleanup(void)
{
  for (size_t i = 0; i < N_ALGOS; i++) {
    EVP_MD_free(algos[i].md);
    algos[i].md = NULL;
    if (algos[i].ctx_new == evp_new)
      algos[i].available = false;
  }
}

const aks_algo *aks_algo_get(aks_algo_id id)
{
  return &algos[id];
}

const aks_algo *aks_algo_by_name(const char *name)
{
  for (size_t i = 0; i < N_ALGOS; i++)
    if (strcmp(algos[i].name, name) == 0)
      return &algos[i];
  /* cksum -a spells BLAKE2b "blake2b"; b2sum's own name is accepted too. */
  if (strcmp(name, "b2") == 0 || strcmp(name, "blake2b512") == 0)
    return &algos[AKS_BLAKE2B];
  return NULL;
}

void *aks_algo_ctx_new(const aks_algo *a, size_t out_len)
{
  return a->ctx_new(a, out_len);
}
