/* fuzz_tls.h: what the two TLS client fuzz targets share (fuzz_tls.c):
 * the set-up (a loop, a client config for one engine against the system
 * bundle) and one run (the input as the server's side of a handshake
 * through the whole pump, with the checks every run makes). */
#ifndef AK_FUZZ_TLS_H
#define AK_FUZZ_TLS_H

#include <stddef.h>
#include <stdint.h>

#include <asynckit.h>

/* Makes the loop and a client config for engine; exits on failure. */
void fuzz_tls_setup(ak_tls_engine engine);

/* One input as everything the server sends, then its end of stream; aborts
 * when the handshake hangs, succeeds or fails with something that is not an
 * error code of the library. */
void fuzz_tls_handshake(const uint8_t *data, size_t size);

#endif /* AK_FUZZ_TLS_H */
