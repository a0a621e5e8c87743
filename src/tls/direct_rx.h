/* tls/direct_rx.h: TLS 1.3 application records decrypted by asynckit from
 * the pump's receive buffer into the reader's buffer (tls/direct_rx.c).
 * The OpenSSL engine (tls/openssl.c) switches a client session to it once
 * OpenSSL has read the handshake and the records right after it. */
#ifndef AK_TLS_DIRECT_RX_H
#define AK_TLS_DIRECT_RX_H

#include "tls/engine.h"

typedef struct ak__tls_drx ak__tls_drx;

/* A reader for suite (OpenSSL's standard name, "TLS_AES_128_GCM_SHA256";
 * -ENOTSUP for others) from the server's application traffic secret, the
 * next record being number seq under it. */
int ak__tls_drx_new(const char *suite, const unsigned char *secret, size_t secret_len,
                    uint64_t seq, ak__tls_drx **out);
void ak__tls_drx_free(ak__tls_drx *d);

/* As the engine's read: plaintext bytes (> 0), 0 after close_notify,
 * AK__TLS_WANT_READ, or an error with detail set. Takes whole records from
 * w->in. *update_asked becomes true when the peer's KeyUpdate asked for
 * ours (the caller sends it). */
int64_t ak__tls_drx_read(ak__tls_drx *d, ak__tls_wire *w, void *buf, size_t len,
                         bool *update_asked, char *detail, size_t n);

/* Plaintext of a record decrypted but not yet handed out. */
bool ak__tls_drx_pending(const ak__tls_drx *d);

/* Records decrypted here (0 for NULL). */
uint64_t ak__tls_drx_records(const ak__tls_drx *d);

#endif /* AK_TLS_DIRECT_RX_H */
