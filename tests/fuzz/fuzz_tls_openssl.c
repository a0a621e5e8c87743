/* fuzz_tls_openssl.c: a libFuzzer target: arbitrary bytes as the server's
 * side of a TLS client handshake with the OpenSSL engine (the default); the
 * run itself, and what it checks, is fuzz_tls.c's, shared with
 * fuzz_tls_client.c (mbedtls). No fixed RNG: OpenSSL's randomness makes a
 * replay differ in the client's own bytes, but this target looks for
 * crashes, leaks and hangs in the pump and the BIO glue (openssl.c), and
 * those do not depend on the random bytes. OpenSSL itself is Debian's, not
 * instrumented. */
#include "fuzz_tls.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc;
  (void)argv;
  fuzz_tls_setup(AK_TLS_ENGINE_OPENSSL);
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  fuzz_tls_handshake(data, size);
  return 0;
}
