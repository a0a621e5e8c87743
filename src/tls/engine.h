/* tls/engine.h: the seam between the engine-neutral files (pump.c,
 * config.c, session_cache.c) and a TLS engine: openssl.c (OpenSSL 3, TLS 1.2 and 1.3, the
 * default) and mbedtls.c (mbedtls 2.28, TLS 1.2), each a table of calls
 * (ak__tls_engine_ops) chosen per config at run time. The engine encrypts and decrypts over two memory buffers the
 * pump owns (ak__tls_wire); the pump moves those bytes with the ring. An
 * engine step never blocks and never touches the socket: it answers
 * AK__TLS_WANT_READ when it needs bytes not yet received and
 * AK__TLS_WANT_WRITE when the outgoing buffer is full.
 *
 * What the engine promises the pump:
 *  - after AK__TLS_WANT_WRITE from a write, the pump calls the write again
 *    with the same buffer and length (mbedtls's and OpenSSL's rule; the pump keeps them);
 *  - pending() says whether plaintext or whole records are
 *    buffered inside the engine, so the pump reads those before the socket;
 *  - errors come back as AK_ETLS... codes or, when the wire failed, the
 *    wire's -errno; detail() then holds the engine's own words.
 * Not thread-safe: a session's engine is used on its loop's thread; an
 * engine config may be shared (and the client's session cache, kept by
 * session_cache.c, locks itself).
 */
#ifndef AK_TLS_ENGINE_H
#define AK_TLS_ENGINE_H

#include "base/internal.h"

/* Step outcomes besides bytes and errors (below every errno and AK_E code). */
#define AK__TLS_WANT_READ (-20001)
#define AK__TLS_WANT_WRITE (-20002)

/* The pump's buffers, seen by the engine's I/O callbacks.
 * in[in_start, in_end): received, not yet taken by the engine.
 * out[0, out_len): made by the engine, not yet sent; the bytes a send in
 * flight covers are a prefix of it, so the engine only appends. */
typedef struct ak__tls_wire {
  unsigned char *in;  /* the receive buffer */
  size_t in_start;    /* the engine's next byte */
  size_t in_end;      /* end of received bytes */
  size_t in_cap;      /* its size */
  int in_status;      /* 0 open, 1 end of stream seen, < 0 the recv's -errno */
  unsigned char *out; /* the send buffer */
  size_t out_len;     /* bytes waiting to be sent */
  size_t out_cap;     /* its size */
  int out_status;     /* 0, or the send's -errno (the engine gives up) */
} ak__tls_wire;

typedef struct ak__tls_econf ak__tls_econf; /* an engine config (the engine's type) */
typedef struct ak__tls_eng ak__tls_eng;     /* an engine session (the engine's type) */
typedef struct ak__tls_sess ak__tls_sess;   /* a saved session to resume (the engine's type) */

/* One engine: its calls, as a table, so two engines live in one library
 * and a config picks one at run time (config.c). Every session and config
 * an engine made goes back to the same engine's calls. */
typedef struct ak__tls_engine_ops {
  const char *name; /* "openssl", "mbedtls": what the stats say */

  /* Engine configs. detail (n bytes) receives the engine's words on
   * failure. Return 0 or AK_ETLSCONFIG / -ENOMEM / -EINVAL. */
  int (*econf_client)(const ak_tls_client_options *opts, ak__tls_econf **out, char *detail,
                      size_t n);
  int (*econf_server)(const ak_tls_server_options *opts, ak__tls_econf **out, char *detail,
                      size_t n);
  void (*econf_free)(ak__tls_econf *c);

  /* A session on wire. host: the verified name (NULL only for an insecure
   * client, or a server). Returns 0, -ENOMEM, AK_ETLSNOHOST or
   * AK_ETLSCONFIG. */
  int (*eng_new)(ak__tls_econf *c, ak__tls_wire *wire, const char *host, ak__tls_eng **out);
  void (*eng_free)(ak__tls_eng *e);

  /* Resumption, for a client config made without AK_TLS_NO_RESUMPTION.
   * The cache of saved sessions is engine-neutral (session_cache.c, keyed
   * by the pump); these are the engine's parts of it.
   * eng_offer: before the first handshake step, offers s to resume; the
   * engine copies what it keeps (s stays the caller's and may be freed
   * once this returns). False if it could not (a full handshake then).
   * eng_take_session: a copy of a resumable session e has made since the
   * last call (the caller's, for sess_free), or NULL; the pump asks after
   * each run of steps. OpenSSL makes one after a TLS 1.2 handshake and at
   * each TLS 1.3 NewSessionTicket (read after the handshake), mbedtls one
   * at the end of the handshake.
   * sess_free: frees a session from eng_take_session. */
  bool (*eng_offer)(ak__tls_eng *e, const ak__tls_sess *s);
  ak__tls_sess *(*eng_take_session)(ak__tls_eng *e);
  void (*sess_free)(ak__tls_sess *s);

  /* One step each. handshake: 0 when done. read: bytes (> 0), 0 at the
   * peer's close_notify (never at an end without it: that is
   * AK_ETLSTRUNCATED). write: bytes of buf taken (> 0; one record's worth
   * or less). close_notify: 0 when the alert is in the wire's out buffer.
   * Else AK__TLS_WANT_READ, AK__TLS_WANT_WRITE or an error. */
  int (*handshake)(ak__tls_eng *e);
  int64_t (*read)(ak__tls_eng *e, void *buf, size_t len);
  int64_t (*write)(ak__tls_eng *e, const void *buf, size_t len);
  int (*close_notify)(ak__tls_eng *e);

  /* Plaintext or records buffered in the engine (read before the socket). */
  bool (*pending)(ak__tls_eng *e);

  /* The engine's words on the last error ("" if none). Lives with e. */
  const char *(*detail)(const ak__tls_eng *e);

  /* After a successful handshake: whether it resumed a session, and the
   * negotiated names (borrowed, living with e; NULL if unknown). The suite
   * is the IANA name with '-' between words ("TLS-AES-128-GCM-SHA256"). */
  bool (*resumed)(const ak__tls_eng *e);
  void (*names)(const ak__tls_eng *e, const char **version, const char **suite,
                const char **alpn);

  /* Records read by the engine's direct path (OpenSSL: direct_rx.c), or
   * NULL when it has none. */
  uint64_t (*direct_records)(const ak__tls_eng *e);
} ak__tls_engine_ops;

extern const ak__tls_engine_ops ak__tls_mbedtls_ops; /* tls/mbedtls.c */
extern const ak__tls_engine_ops ak__tls_openssl_ops; /* tls/openssl.c */

/* The engine for which (AK_TLS_ENGINE_OPENSSL or _MBEDTLS), or NULL with
 * detail (n bytes) saying why. config.c's one way to an engine; two files
 * define it:
 *  - tls/engines.c, in the library: the tables above, linked in;
 *  - tls/loader.c, compiled into a program (akget) that must not pay
 *    OpenSSL's and mbed TLS's start: the tables of a module
 *    (akget-tls.so) loaded at the first call. The program's own definition
 *    comes first in its link, so the linker never takes engines.o out of
 *    libasynckit.a, nor, through it, openssl.o, mbedtls.o and their
 *    libraries. */
const ak__tls_engine_ops *ak__tls_engine_get(ak_tls_engine which, char *detail, size_t n);

/* Test hook (not exported): mbedtls configs made after this call use a
 * fixed deterministic RNG instead of the entropy source, so a fuzz input
 * replays the same handshake. Never for real use. The OpenSSL engine has
 * no such hook (its fuzz target looks for crashes, not replays). */
void ak__tls_test_fixed_rng(bool on);

#endif /* AK_TLS_ENGINE_H */
