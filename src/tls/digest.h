/* tls/digest.h: libcrypto's digests (EVP: SHA-256 and the others
 * --checksums names, SHA-NI where the CPU has it) as akget reaches them
 * through its TLS module (tls/module.c), so that akget's start maps no
 * libcrypto: akget's checksum.c hashes with these, loading the module at
 * the first checksum (tls/loader.c). Plain C types only: akget includes
 * this and nothing else of the library's insides. */
#ifndef AK_TLS_DIGEST_H
#define AK_TLS_DIGEST_H

#include <stdbool.h>
#include <stddef.h>

#define AK__TLS_DIGEST_MAX 64 /* the longest digest (SHA-512) */

typedef struct ak__tls_digest ak__tls_digest; /* an EVP_MD_CTX */

typedef struct ak__tls_digest_ops {
  /* A digest by libcrypto's name ("SHA256", "MD5"...), or NULL (unknown
   * name, or no memory). */
  ak__tls_digest *(*make)(const char *name);
  bool (*update)(ak__tls_digest *d, const void *data, size_t len);
  /* The digest into out (AK__TLS_DIGEST_MAX bytes): its length, 0 on
   * failure. */
  size_t (*final)(ak__tls_digest *d, unsigned char *out);
  void (*free)(ak__tls_digest *d); /* NULL does nothing */
} ak__tls_digest_ops;

/* The module's digests, loading it at the first call of this or of the
 * engines' (tls/loader.c; thread-safe, the load is tried once). NULL when
 * it cannot be loaded, with detail (n bytes) naming its path and dlerror's
 * words. */
const ak__tls_digest_ops *ak__tls_module_digests(char *detail, size_t n);

#endif /* AK_TLS_DIGEST_H */
