/* tls/module.h: the contract between akget's TLS module (akget-tls.so:
 * tls/module.c with the engines tls/openssl.c, tls/direct_rx.c and
 * tls/mbedtls.c, linked with the archives of libssl, libcrypto and mbed TLS; their
 * shared libraries with -Dakget_link=dynamic)
 * and its loader in akget (tls/loader.c). The module exports one symbol,
 * AK__TLS_MODULE_SYMBOL; the loader calls it once with the host's
 * allocator (so ak_set_allocator and fault injection reach the engines'
 * allocations as when they are linked in) and the layout it was built with;
 * the module answers its tables, or NULL when its layout differs (a module
 * from another build). */
#ifndef AK_TLS_MODULE_H
#define AK_TLS_MODULE_H

#include "tls/digest.h"
#include "tls/engine.h"

#define AK__TLS_MODULE_SYMBOL "ak__tls_module_open"
#define AK__TLS_MODULE_NAME "akget-tls.so"

/* What both sides must agree on: the contract's version and the sizes of
 * the structures that cross it. */
typedef struct ak__tls_module_abi {
  uint32_t version; /* AK__TLS_MODULE_VERSION */
  uint32_t ops_size, wire_size, client_opts_size, server_opts_size, digest_ops_size;
} ak__tls_module_abi;
#define AK__TLS_MODULE_VERSION 1u
#define AK__TLS_MODULE_ABI_INIT                                                                    \
  {AK__TLS_MODULE_VERSION,        sizeof(ak__tls_engine_ops),    sizeof(ak__tls_wire),             \
   sizeof(ak_tls_client_options), sizeof(ak_tls_server_options), sizeof(ak__tls_digest_ops)}

/* The host's allocator: the library's ak__malloc and the others. */
typedef struct ak__tls_module_host {
  void *(*malloc)(size_t size);
  void *(*calloc)(size_t count, size_t size);
  void *(*realloc)(void *ptr, size_t size);
  void (*free)(void *ptr);
} ak__tls_module_host;

typedef struct ak__tls_module {
  const ak__tls_engine_ops *openssl;
  const ak__tls_engine_ops *mbedtls; /* NULL in a build without it */
  const ak__tls_digest_ops *digests;
} ak__tls_module;

/* AK__TLS_MODULE_SYMBOL's type. host is kept (it must outlive the
 * module: the loader's is static). */
typedef const ak__tls_module *ak__tls_module_open_fn(const ak__tls_module_abi *abi,
                                                     const ak__tls_module_host *host);

#endif /* AK_TLS_MODULE_H */
