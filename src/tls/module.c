/* tls/module.c: the entry of akget's TLS module (akget-tls.so, see
 * tls/module.h): ak__tls_module_open, which hands the loader the engines'
 * tables and libcrypto's digests, and the library's allocator calls as the
 * engines see them inside the module (forwarded to the host's, so a
 * session's memory is the host's whichever side frees it), and the
 * module's build mark. Built only into the module, never into the
 * library. */
#include <string.h>

#include <openssl/evp.h>

#include "tls/module.h"
#include "akget-tls-build.h" /* AK__TLS_MODULE_BUILD */

static const ak__tls_module_host *host;

void *ak__malloc(size_t size) { return host->malloc(size); }
void *ak__calloc(size_t count, size_t size) { return host->calloc(count, size); }
void *ak__realloc(void *ptr, size_t size) { return host->realloc(ptr, size); }
void ak__free(void *ptr) { host->free(ptr); }
char *ak__strdup(const char *s) {
  size_t n = strlen(s) + 1;
  char *copy = ak__malloc(n);
  if (copy)
    memcpy(copy, s, n);
  return copy;
}

/* ---- digests: an ak__tls_digest is an EVP_MD_CTX ---- */

static ak__tls_digest *digest_make(const char *name) {
  const EVP_MD *md = EVP_get_digestbyname(name);
  EVP_MD_CTX *ctx = md ? EVP_MD_CTX_new() : NULL;
  if (ctx && EVP_DigestInit_ex(ctx, md, NULL) != 1) {
    EVP_MD_CTX_free(ctx);
    ctx = NULL;
  }
  return (ak__tls_digest *)ctx;
}

static bool digest_update(ak__tls_digest *d, const void *data, size_t len) {
  return EVP_DigestUpdate((EVP_MD_CTX *)d, data, len) == 1;
}

static size_t digest_final(ak__tls_digest *d, unsigned char *out) {
  _Static_assert(AK__TLS_DIGEST_MAX <= EVP_MAX_MD_SIZE, "a digest fits EVP's largest");
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (EVP_DigestFinal_ex((EVP_MD_CTX *)d, md, &len) != 1 || len > AK__TLS_DIGEST_MAX)
    return 0;
  memcpy(out, md, len);
  return len;
}

static void digest_free(ak__tls_digest *d) { EVP_MD_CTX_free((EVP_MD_CTX *)d); }

static const ak__tls_digest_ops digests = {
    .make = digest_make,
    .update = digest_update,
    .final = digest_final,
    .free = digest_free,
};

static const ak__tls_module module = {
    .openssl = &ak__tls_openssl_ops,
#ifdef AK_HAVE_MBEDTLS
    .mbedtls = &ak__tls_mbedtls_ops,
#endif
    .digests = &digests,
};

/* The exported symbols (the module is built with hidden visibility): its
 * mark, read by the loader before anything is called, and its entry. */
__attribute__((visibility("default"))) extern const char ak__tls_module_build[];
const char ak__tls_module_build[] = AK__TLS_MODULE_BUILD;
__attribute__((visibility("default"))) ak__tls_module_open_fn ak__tls_module_open;

const ak__tls_module *ak__tls_module_open(const ak__tls_module_abi *abi,
                                          const ak__tls_module_host *h) {
  static const ak__tls_module_abi mine = AK__TLS_MODULE_ABI_INIT;
  if (memcmp(abi, &mine, sizeof(mine)) != 0 || !h)
    return NULL;
  host = h;
  return &module;
}
