/* asynckit/error.h: error numbers and their names.
 *
 * Every fallible call returns 0 or a value >= 0, or a negative error. A
 * kernel error is the kernel's -errno, passed through unchanged (a CQE's res
 * reaches the user untouched). The library's own errors live below
 * AK_ERR_BASE, a range no errno reaches. Numbers are never reused: a retired
 * error keeps its slot in the table as AK_E_OBSOLETE_n.
 *
 * Not thread-safe unless a comment says so; both functions here are.
 */
#ifndef ASYNCKIT_ERROR_H
#define ASYNCKIT_ERROR_H

#include "api.h"

#ifdef __cplusplus
extern "C" {
#endif

/* errno values stay far below 4096; ours start at -10000. */
#define AK_ERR_BASE (-10000)

/* XX(name, number, message). The one table the enum and both lookup
 * functions are generated from. */
#define AK_ERRNO_MAP(XX)                                                        \
  XX(AK_EWAITTIMEOUT, -10001, "wait timed out; the future is still pending")    \
  XX(AK_ENOURING, -10002, "io_uring is not available on this kernel")           \
  XX(AK_EURINGDISABLED, -10003,                                                 \
     "io_uring is disabled by the sysctl kernel.io_uring_disabled")             \
  XX(AK_EURINGBLOCKED, -10004,                                                  \
     "io_uring is blocked by a seccomp filter on this process")                 \
  XX(AK_EURINGOLD, -10005,                                                      \
     "the kernel's io_uring is too old (no IORING_FEAT_NODROP; need 5.5+)")    \
  XX(AK_ESHUTDOWN, -10006, "the pool or loop has been stopped")                 \
  XX(AK_EBACKEND, -10030,                                                       \
     "not available on the loop's backend (epoll: no io_uring ring)")          \
  XX(AK_ENOTOWNER, -10007, "called from a thread that does not own the loop")  \
  XX(AK_EDEPFAILED, -10008, "a future this work depended on did not succeed")  \
  XX(AK_ESETTLED, -10009, "the future has already settled")                     \
  XX(AK_EINVALFUTURE, -10010, "the future is not in a state that allows this")  \
  XX(AK_ERESOLVE, -10011, "name resolution failed")                              \
  /* TLS (tls.h): -10101 and up, so other layers' codes do not collide. */     \
  XX(AK_ETLSUNKNOWNCA, -10101,                                                  \
     "TLS: the certificate is not signed by a trusted CA")                      \
  XX(AK_ETLSNAMEMISMATCH, -10102,                                               \
     "TLS: the certificate does not match the host name")                       \
  XX(AK_ETLSEXPIRED, -10103, "TLS: the certificate has expired")                \
  XX(AK_ETLSNOTYETVALID, -10104, "TLS: the certificate is not valid yet")       \
  XX(AK_ETLSSELFSIGNED, -10105,                                                 \
     "TLS: the certificate is self-signed and not trusted")                     \
  XX(AK_ETLSKEYUSAGE, -10106,                                                   \
     "TLS: the certificate's key usage does not allow TLS server use")         \
  XX(AK_ETLSBADCERT, -10107, "TLS: the certificate failed verification")        \
  XX(AK_ETLSHANDSHAKE, -10108,                                                  \
     "TLS handshake failed (no common cipher or version, or the peer refused)") \
  XX(AK_ETLSTRUNCATED, -10109,                                                  \
     "TLS: the peer closed the connection without close_notify (truncated)")    \
  XX(AK_ETLSPROTOCOL, -10110,                                                   \
     "TLS: the peer sent data that is not valid TLS (bad or oversized record)") \
  XX(AK_ETLSCONFIG, -10111,                                                     \
     "TLS: the configuration could not be loaded (CA, certificate or key)")     \
  XX(AK_ETLSNOHOST, -10112,                                                     \
     "TLS: a client session needs a host name unless insecure mode is asked")   \
  XX(AK_ETLSCLOSED, -10113, "TLS: the session is closed")                       \
  /* HTTP and URLs (http.h): -10200 and up. */                                 \
  XX(AK_EURL, -10200, "malformed URL")                                          \
  XX(AK_EURLSCHEME, -10201, "URL scheme not supported (http and https only)")  \
  XX(AK_EHTTPPROTO, -10202, "malformed HTTP response")                          \
  XX(AK_EHTTPHEADSIZE, -10203, "HTTP response head larger than the limit")      \
  XX(AK_EHTTPLENGTH, -10204, "invalid, negative or conflicting Content-Length") \
  XX(AK_EHTTPTRUNCATED, -10205, "HTTP body ended before its announced end")     \
  XX(AK_EHTTPREDIRECTS, -10206, "too many HTTP redirects")                      \
  XX(AK_EHTTPCHUNK, -10207, "invalid chunk in a chunked HTTP body")             \
  XX(AK_EHTTPRANGE, -10208, "the server ignored or mismatched the Range asked") \
  XX(AK_EHTTPSNOTSUP, -10209, "https not supported in this build")              \
  XX(AK_EHTTPTOOBIG, -10210, "HTTP body larger than the limit")                 \
  XX(AK_EHTTPHEADTIMEOUT, -10211, "HTTP response head not complete in time")    \
  XX(AK_EHTTPIDLETIMEOUT, -10212, "no HTTP data received within the idle timeout") \
  XX(AK_EHTTPTOTALTIMEOUT, -10213, "HTTP request not complete within its total time") \
  XX(AK_EHTTPCLOSED, -10214, "connection closed before an HTTP response")    \
  XX(AK_EHTTPDECODE, -10215,                                                    \
     "HTTP body's Content-Encoding could not be decoded (corrupt or truncated)") \
  XX(AK_EHTTPSTATUS, -10220,                                                    \
     "HTTP status 400 or above (the request asked AK_HTTP_FAIL_ON_STATUS)")     \
  /* Proxies (http.h's proxy options): -10300 and up. */                       \
  XX(AK_EPROXYURL, -10300, "malformed proxy URL or no_proxy list")             \
  XX(AK_EPROXYCONNECT, -10301, "could not connect to the proxy")               \
  XX(AK_EPROXYAUTH, -10302,                                                     \
     "the proxy wants credentials, or refused the ones given (407)")            \
  XX(AK_EPROXYREFUSED, -10303,                                                  \
     "the proxy refused the connection (CONNECT status or SOCKS reply)")        \
  XX(AK_EPROXYPROTO, -10304, "malformed reply from the proxy")

enum ak_errno {
#define AK__ERR_ENUM(name, num, msg) name = (num),
  AK_ERRNO_MAP(AK__ERR_ENUM)
#undef AK__ERR_ENUM
};

/* A message for err: the library's own text, or the C library's for a
 * -errno. Never NULL; a static string. Thread-safe. */
AK_API const char *ak_strerror(int err);

/* The symbolic name: "AK_ESHUTDOWN", "ENOENT", or "UNKNOWN". Thread-safe. */
AK_API const char *ak_err_name(int err);

#ifdef __cplusplus
}
#endif
#endif /* ASYNCKIT_ERROR_H */
