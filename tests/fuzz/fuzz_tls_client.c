/* fuzz_tls_client.c: a libFuzzer target: arbitrary bytes as the server's
 * side of a TLS client handshake with the mbedtls engine and a fixed RNG
 * (the run itself, and what it checks, is fuzz_tls.c's, shared with
 * fuzz_tls_openssl.c).
 *
 * mbedtls itself comes from Debian and is not instrumented: coverage
 * guidance sees the pump and the engine file, and mbedtls through what they
 * do. The time mbedtls reads (gmt_unix_time, certificate validity) is the
 * real clock: Debian's build has no MBEDTLS_PLATFORM_TIME_ALT to fix it. */
#include "fuzz_tls.h"

#include "tls/engine.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc;
  (void)argv;
  /* The mbedtls engine by name: the fixed RNG is its hook, set before the
   * config is made (fuzz_tls_openssl.c fuzzes the other engine). */
  ak__tls_test_fixed_rng(true);
  fuzz_tls_setup(AK_TLS_ENGINE_MBEDTLS);
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  fuzz_tls_handshake(data, size);
  return 0;
}
