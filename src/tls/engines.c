/* tls/engines.c: the library's way to its engines (ak__tls_engine_get,
 * tls/engine.h): the tables of tls/openssl.c and tls/mbedtls.c, linked in.
 * Alone in its file on purpose: akget defines ak__tls_engine_get itself
 * (tls/loader.c, the engines from a module loaded on first use), and the
 * linker then leaves this file, and with it the engines and their
 * libraries, out of akget. Nothing else may live here. */
#include <stdio.h>

#include "tls/engine.h"

const ak__tls_engine_ops *ak__tls_engine_get(ak_tls_engine which, char *detail, size_t n) {
  switch (which) {
  case AK_TLS_ENGINE_OPENSSL:
    return &ak__tls_openssl_ops;
  case AK_TLS_ENGINE_MBEDTLS:
#ifdef AK_HAVE_MBEDTLS
    return &ak__tls_mbedtls_ops;
#else
    snprintf(detail, n, "the mbedtls engine is not in this build (built with -Dmbedtls=disabled)");
    return NULL;
#endif
  default:
    snprintf(detail, n, "unknown TLS engine %d", (int)which);
    return NULL;
  }
}
