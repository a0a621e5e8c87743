/* asynckit/tls.h: TLS client and server sessions over a connected ring
 * socket, each step a future: handshake, read, write, close_notify.
 *
 * The TLS engine works on memory; the loop's ring moves the encrypted bytes
 * (ak_recv / ak_send on the session's fd). Two engines are built in, chosen
 * per config at run time (ak_tls_engine below): OpenSSL 3 (TLS 1.2 and 1.3,
 * the default: its AES-GCM is many times faster than mbedtls's) and
 * mbedtls 2.28 (TLS 1.2). No engine type appears here.
 *
 * Safe by default:
 *  - a client config verifies the server's certificate chain against the
 *    system bundle (/etc/ssl/certs/ca-certificates.crt) or the CA file or
 *    directory given;
 *  - a client session always has a host name, used for SNI and for the
 *    certificate name check (an IP address literal is checked against the
 *    certificate's IP entries). Without a host name a client session cannot
 *    be made (AK_ETLSNOHOST), except from a config made with
 *    AK_TLS_INSECURE_NO_VERIFY, a mode that turns verification off and says
 *    so in every session's stats (insecure = true);
 *  - ALPN "http/1.1" is offered; ECDHE with AES-GCM is preferred, then
 *    ECDHE with ChaCha20-Poly1305 (TLS 1.3: AES-128-GCM, AES-256-GCM,
 *    ChaCha20-Poly1305, in that order).
 *
 * Errors: a failed step's future carries an AK_ETLS... code (or the kernel's
 * -errno from the socket) and, where the engine said why, the engine's own
 * message as the future's detail. A stream that ends without close_notify
 * while a read is waiting fails that read with AK_ETLSTRUNCATED: a truncated
 * stream is never reported as a clean end.
 *
 * Steps are queued per session: at most one read and one write are worked
 * on at a time (the engine's rule), others wait in call order. Cancelling a
 * step's future drops the step (a write the engine is half way through
 * still sends its current record whole, so the stream stays valid); for a
 * deadline wrap a step in ak_future_timeout, then free the session. A session and
 * its futures belong to the loop it was made on; every call on a session is
 * made on that loop's thread. Configs are reference counted and may be
 * shared by sessions on several loops: the config calls are thread-safe.
 *
 * Not thread-safe unless a comment says so.
 */
#ifndef ASYNCKIT_TLS_H
#define ASYNCKIT_TLS_H

#include "api.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "future.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ak_tls_config ak_tls_config;
typedef struct ak_tls ak_tls;

/* ---- Configs -------------------------------------------------------------- */

/* Which TLS engine a config uses. AUTO is OpenSSL, unless the environment
 * variable AK_TLS_ENGINE says "openssl" or "mbedtls" (read when the config
 * is made; any other value fails the config with AK_ETLSCONFIG). A config's
 * engine named here wins over the environment. Sessions of a config use
 * its engine; a client of one engine talks to a server of the other. */
typedef enum ak_tls_engine {
  AK_TLS_ENGINE_AUTO = 0,    /* OpenSSL, or what AK_TLS_ENGINE says */
  AK_TLS_ENGINE_OPENSSL = 1, /* OpenSSL 3: TLS 1.3 and 1.2 */
  AK_TLS_ENGINE_MBEDTLS = 2, /* mbedtls 2.28: TLS 1.2 only; in builds
                                with it (meson -Dmbedtls), else a config
                                asking for it fails AK_ETLSCONFIG */
} ak_tls_engine;

/* Client config flags. */
enum {
  /* Insecure mode, asked for by name: no certificate or name verification.
   * Every session made from the config shows insecure = true in its stats,
   * and a client session may then be made without a host name. */
  AK_TLS_INSECURE_NO_VERIFY = 1u << 0,
  /* No session resumption: every handshake is a full one. */
  AK_TLS_NO_RESUMPTION = 1u << 1,
};

typedef struct ak_tls_client_options {
  const char *ca_file; /* PEM bundle to trust; NULL: the system bundle */
  const char *ca_dir;  /* a directory of PEM CA files (every file is tried);
                          with ca_file both are trusted */
  const char *alpn;    /* a protocol to offer; NULL: "http/1.1"; "": none */
  unsigned flags;      /* AK_TLS_... above; 0: verify, resume */
  unsigned session_cache_size; /* sessions kept for resumption; 0: 64 */
  ak_tls_engine engine;        /* 0 (AUTO): OpenSSL unless AK_TLS_ENGINE says */
} ak_tls_client_options;

/* A client config: trusted CAs, verification mode, and a cache of sessions
 * for resumption (tickets and session ids), keyed by host name and peer
 * port: one session per key, the newest replacing the older, at most
 * session_cache_size keys (when full, the key used least recently, by a
 * resumption or a new session, gives way). With TLS 1.3 the server sends
 * the session to resume after the handshake: a client session keeps it
 * once it has read past the handshake (a session that never reads leaves
 * nothing to resume).
 * opts may be NULL (all defaults). Loads the CA files now. Returns 0
 * and sets *out (the caller's reference), AK_ETLSCONFIG with nothing loaded
 * (a missing or unreadable CA file, a file with no certificate), or -ENOMEM.
 * The strings in opts are copied. Thread-safe. */
AK_API int ak_tls_client_config_new(const ak_tls_client_options *opts, ak_tls_config **out);

typedef struct ak_tls_server_options {
  const char *cert_file; /* PEM: the server's certificate, then its chain */
  const char *key_file;  /* PEM: its private key (unencrypted) */
  const char *alpn;      /* a protocol to accept; NULL: "http/1.1"; "": none */
  unsigned flags;        /* AK_TLS_NO_RESUMPTION, or 0 (tickets and ids) */
  ak_tls_engine engine;  /* 0 (AUTO): OpenSSL unless AK_TLS_ENGINE says */
} ak_tls_server_options;

/* A server config: certificate and key, session tickets (a key made now)
 * and a session-id cache. Returns 0 and sets *out, AK_ETLSCONFIG (file
 * missing, unreadable, or key not matching the certificate), -EINVAL
 * (opts or a file name NULL) or -ENOMEM. Thread-safe. */
AK_API int ak_tls_server_config_new(const ak_tls_server_options *opts, ak_tls_config **out);

/* Why the last ak_tls_client_config_new / ak_tls_server_config_new on the
 * calling thread failed, in the engine's words ("" after a success). A
 * per-thread static string. Thread-safe. */
AK_API const char *ak_tls_config_error(void);

/* Takes one more reference; returns cfg. Thread-safe. */
AK_API ak_tls_config *ak_tls_config_ref(ak_tls_config *cfg);

/* Gives back one reference (sessions hold their own). NULL does nothing.
 * Thread-safe. */
AK_API void ak_tls_config_release(ak_tls_config *cfg);

typedef struct ak_tls_config_stats {
  uint64_t handshakes;         /* completed handshakes, full and resumed */
  uint64_t handshakes_resumed; /* of those, resumed (abbreviated) */
  uint64_t handshakes_failed;  /* handshakes that failed */
  uint64_t cached_sessions;    /* sessions in the client cache now */
  bool insecure;               /* made with AK_TLS_INSECURE_NO_VERIFY */
  bool server;                 /* a server config */
  const char *engine;          /* "openssl" or "mbedtls" (static string) */
} ak_tls_config_stats;

/* Counters over every session made from cfg. Thread-safe. */
AK_API void ak_tls_config_stats_get(const ak_tls_config *cfg, ak_tls_config_stats *out);

/* ---- Sessions ---------------------------------------------------------------- */

/* A client session over fd, a connected stream socket (blocking: see net.h),
 * for host: the name the user connected to, sent as SNI and checked against
 * the certificate. host NULL or "" gives AK_ETLSNOHOST unless cfg is
 * insecure. A cached session for (host, fd's peer port) is offered for
 * resumption. Nothing is sent until the first step. Returns 0 and sets
 * *out, or AK_ETLSNOHOST, -EINVAL (cfg a server config, fd < 0), -ENOMEM.
 * The session takes a reference to cfg and copies host; fd stays the
 * caller's (the session never closes it), but gets TCP_NODELAY: each send
 * is a whole record or flight, and Nagle would hold the next one behind a
 * delayed ACK (40 ms). On the loop's thread. */
AK_API int ak_tls_client_new(ak_loop *loop, ak_tls_config *cfg, int fd, const char *host,
                             ak_tls **out);

/* A server session over fd, an accepted connection. Returns 0 and sets
 * *out, -EINVAL (cfg a client config, fd < 0) or -ENOMEM. */
AK_API int ak_tls_server_new(ak_loop *loop, ak_tls_config *cfg, int fd, ak_tls **out);

/* Runs the handshake. Result 0. Failures: AK_ETLSUNKNOWNCA,
 * AK_ETLSSELFSIGNED, AK_ETLSNAMEMISMATCH, AK_ETLSEXPIRED,
 * AK_ETLSNOTYETVALID, AK_ETLSKEYUSAGE, AK_ETLSBADCERT (another verification
 * failure), AK_ETLSHANDSHAKE (no common cipher or version, an alert from the
 * peer), AK_ETLSPROTOCOL (bytes that are not TLS, a record too long),
 * AK_ETLSTRUNCATED (the peer closed mid-handshake), or the socket's -errno
 * (-ECONNRESET...). A read or write made before the handshake is done
 * waits for it (and runs it if nobody asked). Calling it again after it
 * succeeded gives a future DONE at once. */
AK_API ak_future *ak_tls_handshake(ak_tls *s);

/* Reads up to len (> 0) bytes of plaintext into buf, which must live until
 * the future settles. Result: bytes read (> 0), or 0 when the peer sent
 * close_notify (a clean end). Plaintext the engine has decrypted already,
 * and every whole record already received, is handed out before the socket
 * is read again: one read fills buf from all the records buffered (a bulk
 * reader gets many records per call), and never waits on the socket once it
 * has bytes to give. Failures: AK_ETLSTRUNCATED
 * (the stream ended without close_notify), AK_ETLSPROTOCOL, the socket's
 * -errno, AK_ETLSCLOSED (the session was freed). */
AK_API ak_future *ak_tls_read(ak_tls *s, void *buf, size_t len);

/* Writes all len bytes of buf (which must live until the future settles),
 * as many records as it takes. Result len. Failures: the socket's -errno
 * (-EPIPE, -ECONNRESET), AK_ETLSCLOSED (after close_notify). */
AK_API ak_future *ak_tls_write(ak_tls *s, const void *buf, size_t len);

/* Sends close_notify once the writes queued before it are out. Result 0.
 * Writes made after it fail with AK_ETLSCLOSED; reads still work (the peer
 * may answer with its own close_notify: a read then gives 0). With TLS 1.3
 * a server sends tickets after the handshake: a client that never read
 * them and closes its socket makes the kernel send a reset, which can cut
 * off the peer's last reads; read until the peer's end (0, or
 * AK_ETLSTRUNCATED) before closing when the peer must see every byte. */
AK_API ak_future *ak_tls_close_notify(ak_tls *s);

/* Frees the session. Steps still queued or running fail with AK_ETLSCLOSED
 * (a ring op in flight is cancelled; the memory goes when it completes).
 * fd is not closed: close it after this. NULL does nothing. */
AK_API void ak_tls_free(ak_tls *s);

typedef struct ak_tls_stats {
  bool handshake_done;     /* the handshake succeeded */
  bool resumed;            /* it resumed a cached session */
  bool insecure;           /* verification off (AK_TLS_INSECURE_NO_VERIFY) */
  bool server;             /* a server session */
  const char *engine;      /* "openssl" or "mbedtls": the engine that ran */
  const char *version;     /* "TLSv1.2", "TLSv1.3", or NULL before the handshake */
  const char *ciphersuite; /* IANA name with '-' between words
                              ("TLS-AES-128-GCM-SHA256"), or NULL before */
  const char *alpn;        /* the protocol agreed, or NULL */
  uint64_t plain_in;       /* plaintext bytes handed to reads */
  uint64_t plain_out;      /* plaintext bytes taken by writes */
  uint64_t wire_in;        /* encrypted bytes received from the socket */
  uint64_t wire_out;       /* encrypted bytes sent on the socket */
  uint64_t recv_ops;       /* ring recvs made */
  uint64_t send_ops;       /* ring sends made */
  uint64_t want_read;      /* engine steps that asked for more input */
  uint64_t want_write;     /* engine steps that waited for the socket to take output */
  uint64_t direct_records; /* TLS 1.3 records a client read on the direct path
                              (OpenSSL engine: decrypted from the receive
                              buffer straight into the read's buffer) */
} ak_tls_stats;

/* The session's state and counters. The strings are borrowed and live as
 * long as the session. */
AK_API void ak_tls_stats_get(const ak_tls *s, ak_tls_stats *out);

/* The socket the session runs on. */
AK_API int ak_tls_fd(const ak_tls *s);

#ifdef __cplusplus
}
#endif
#endif /* ASYNCKIT_TLS_H */
