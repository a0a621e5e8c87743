/* asynckit/http.h: URLs and an HTTP/1.1 client (GET and HEAD) whose every
 * step is a ring operation on a loop: keep-alive connections reused per host
 * (with a cap), responses parsed by llhttp, bodies delimited by
 * Content-Length, chunked encoding or the connection's close, redirects,
 * Range requests, deadlines, and the body streamed to a file at its offsets
 * by ring writes.
 *
 * Nothing the network says is trusted: every length is checked against the
 * limits in ak_http_options, and a body that ends before its announced end
 * (a short Content-Length body, a chunked body cut short, a close in the
 * middle) is an error, never a success.
 *
 * Errors: the kernel's -errno (-ECONNREFUSED, -ECONNRESET, -ETIMEDOUT for a
 * connect that timed out...), AK_ERESOLVE, and the AK_EURL... / AK_EHTTP...
 * codes of error.h. A failed request's future carries a detail string (the
 * offending header, the deadline that fired).
 *
 * Not thread-safe: a client and its requests belong to the loop's thread,
 * except ak_future_cancel on a request's future (thread-safe, as for every
 * future) and the URL functions (thread-safe, no loop).
 */
#ifndef ASYNCKIT_HTTP_H
#define ASYNCKIT_HTTP_H

#include "api.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "loop.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- URLs ---------------------------------------------------------------------
 * RFC 3986 parsing and reference resolution (uriparser), for http and https.
 * IPv6 literals ([::1], with a zone id as [fe80::1%25eth0]), explicit ports,
 * and percent-encoding (kept as given; bytes that may not appear in a request
 * target, such as spaces or non-ASCII, are percent-encoded). The fragment is
 * dropped. User information (user:pass@) is taken out of the URL: it is
 * kept (percent-decoded) in user and password, sent as Basic authorization
 * to that URL's origin only, and never part of text or authority (so it
 * appears in no error detail). */

typedef struct ak_url {
  char *scheme;    /* "http" or "https", lower case */
  char *host;      /* name or IP literal, without brackets or zone id */
  char *zone;      /* an IPv6 literal's zone id (decoded), or NULL */
  uint16_t port;   /* given, or the scheme's default (80, 443) */
  bool ipv6;       /* host is an IPv6 literal */
  char *target;    /* the request target: path and query, "/" at least */
  char *authority; /* the Host header's value: host, [v6] and ":port"
                      unless the port is the scheme's default */
  char *text;      /* the whole URL as the client uses it (without
                      user information) */
  char *user;      /* user information's name (decoded), or NULL */
  char *password;  /* its password (decoded), or NULL */
} ak_url;

/* Parses an absolute http or https URL. Returns 0 and sets *out (the
 * caller's, freed with ak_url_free), or AK_EURL (malformed, no host, a port
 * outside 1-65535), AK_EURLSCHEME (another scheme) or
 * -ENOMEM. Thread-safe. */
AK_API int ak_url_parse(const char *text, ak_url **out);

/* Resolves ref (absolute or relative, as in a Location header) against base
 * (RFC 3986 section 5). Returns and owns as ak_url_parse. Thread-safe. */
AK_API int ak_url_resolve(const ak_url *base, const char *ref, ak_url **out);

/* Frees a URL; NULL does nothing. Thread-safe. The strings of an ak_url
 * are the URL's: read them, never free or replace one (a parsed URL may
 * hold them all in one allocation with its record). */
AK_API void ak_url_free(ak_url *url);

/* ---- The client ------------------------------------------------------------------ */

typedef struct ak_http_client ak_http_client;

/* Options; zero means "the default" for every field. Times in nanoseconds,
 * AK_FOREVER for none. */
typedef struct ak_http_options {
  unsigned max_conns_per_host; /* connections open to one host:port at once
                                  (busy + idle); 0: 6. Requests beyond it
                                  wait for one to come free. */
  int64_t connect_timeout_ns;  /* per connection attempt; 0: 30 s */
  int64_t idle_timeout_ns;     /* no byte received for this long while a
                                  response is due; 0: 60 s */
  int64_t head_timeout_ns;     /* the whole response head, from the request
                                  sent to its last header; 0: 60 s */
  int64_t total_timeout_ns;    /* one request from start to end, redirects
                                  included; 0: none */
  int64_t keepalive_timeout_ns; /* a kept-alive connection unused for this
                                  long is closed; 0: 30 s; AK_FOREVER: kept
                                  until the client is freed. Checked by a
                                  timer while the client has requests, and
                                  at the next request otherwise (a client
                                  with nothing to do keeps no timer that
                                  would keep its loop from going idle) */
  int max_redirects;           /* 0: 10; < 0: follow none (a 3xx is the
                                  response) */
  size_t max_head_bytes;       /* status line plus headers; 0: 64 KiB */
  int64_t max_body_bytes;      /* a larger announced or received body is
                                  AK_EHTTPTOOBIG; 0: 2^44 (16 TiB) */
  size_t recv_buffer;          /* bytes per receive; 0: 256 KiB. Each
                                  connection has a ring of four (1 MiB),
                                  so receives go on while earlier bodies
                                  are written (a connection that has
                                  carried only HEADs: 16 KiB). A plain
                                  connection's ring is registered with
                                  the loop (ak_buffer_register, net.h)
                                  when a body first comes into it, and
                                  so pinned while the connection lives;
                                  where that fails (epoll, RLIMIT_MEMLOCK,
                                  a buffer table of the caller's, 256 in
                                  use) it receives as before */
  int64_t max_rate;            /* bytes per second received over all the
                                  client's requests (a token bucket, one
                                  second of burst); 0: no limit */
  const char *user_agent;      /* NULL: "asynckit/VERSION"; copied */
  const char *cacert;          /* https: a CA bundle file (NULL: the
                                  system's); copied */
  bool insecure;               /* https: skip certificate verification */
  /* Proxies (copied; NULL or "": none). A proxy URL is
   * [scheme://][user[:password]@]host[:port][/]: scheme http (the default),
   * socks5 (the origin's name resolved here) or socks5h (resolved by the
   * proxy); port 1080 by default; user and password percent-decoded, sent
   * as Basic (http) or RFC 1929 (SOCKS5). An http URL goes through an http
   * proxy in absolute form on kept-alive connections to the proxy (shared
   * by every origin); an https URL through a CONNECT tunnel, TLS inside it
   * to the origin, its certificate checked against the origin's name.
   * A malformed one: ak_http_client_new fails AK_EPROXYURL. Requests that
   * a proxy refuses fail AK_EPROXYAUTH (407, a SOCKS authentication
   * failure), AK_EPROXYREFUSED (another CONNECT status, a SOCKS failure
   * reply), AK_EPROXYCONNECT (the proxy cannot be reached) or
   * AK_EPROXYPROTO; their detail names the proxy without its password. */
  const char *http_proxy;      /* for http:// URLs */
  const char *https_proxy;     /* for https:// URLs */
  const char *no_proxy;        /* hosts reached directly, as curl's
                                  NO_PROXY: see ak_http_no_proxy_match */
  int ip_family;               /* AF_UNSPEC (0): IPv6 and IPv4 raced as
                                  RFC 8305 says (ak_connect_name, net.h:
                                  250 ms stagger, connect_timeout_ns per
                                  attempt); AF_INET or AF_INET6: that one
                                  only. Applies to the host dialled (the
                                  proxy's, through a proxy) */
  unsigned pipeline_depth;     /* ak_http_head_pipeline: 0 (default):
                                  each call's requests make pipelines of
                                  their own. N (1 to AK_HTTP_PIPELINE_MAX,
                                  larger taken as that): a call's first
                                  requests to an origin join the newest
                                  pipeline to it that is still running,
                                  while its connection has fewer than N
                                  requests unanswered, and the rest make
                                  pipelines of at most N; a request that
                                  joins after the pipeline's requests went
                                  out is written by the connection's next
                                  send, made just before it waits for the
                                  next answer (a sliding window) */
} ak_http_options;

/* Makes a client on loop (owner thread). opts may be NULL. Returns 0 and
 * sets *out (the caller's, freed with ak_http_client_free), or -ENOMEM,
 * -EINVAL, AK_EPROXYURL (a proxy URL or no_proxy list that does not
 * parse). */
AK_API int ak_http_client_new(ak_loop *loop, const ak_http_options *opts, ak_http_client **out);

/* Closes the idle connections and frees the client. Every request's future
 * must have settled first (else -EBUSY and nothing is freed). Returns 0.
 * The closes are ring ops: run the loop afterwards to finish them. */
AK_API int ak_http_client_free(ak_http_client *client);

/* Connections open now (busy and idle), and how many requests reused a
 * kept-alive connection since the client was made. */
AK_API size_t ak_http_client_open_conns(const ak_http_client *client);
AK_API uint64_t ak_http_client_reused(const ak_http_client *client);

/* ---- Proxy settings (thread-safe, no loop) -------------------------------------- */

/* Whether proxy parses as ak_http_options' proxy URLs: 0, AK_EPROXYURL or
 * -ENOMEM. "" and NULL are 0 (no proxy). */
AK_API int ak_http_proxy_check(const char *proxy);

/* Whether list parses as a no_proxy list: 0 or AK_EPROXYURL. The list is
 * comma (or blank) separated entries: "*" (every host); a host name, which
 * matches itself and its subdomains ("example.com" and ".example.com" both
 * match "a.example.com" and "example.com"); an IP address; a CIDR range
 * ("10.0.0.0/8", "fd00::/8"); each optionally with ":port" ("[v6]:port"
 * for an IPv6 address) to match that port only. */
AK_API int ak_http_no_proxy_check(const char *list);

/* Whether host (a name or an IP literal, without brackets) at port is
 * reached directly according to list (NULL or "": no host is). Entries
 * that do not parse match nothing. */
AK_API bool ak_http_no_proxy_match(const char *list, const char *host, uint16_t port);

/* ---- Requests ------------------------------------------------------------------ */

/* Body bytes as they arrive, when the request has no fd: data is borrowed
 * for the call, offset is its position in the entity (the whole resource:
 * a 206 body starts at its range's first byte). Return 0 to go on or a
 * negative error to abort the request with it. */
typedef int (*ak_http_body_fn)(const void *data, size_t len, int64_t offset, void *arg);

enum {
  AK_HTTP_HEAD = 1u << 0,          /* HEAD instead of GET */
  AK_HTTP_REQUIRE_RANGE = 1u << 1, /* with a Range: a 200 (the whole entity)
                                      fails AK_EHTTPRANGE before its body,
                                      instead of being taken from offset 0 */
  AK_HTTP_KEEP_ERROR_BODY = 1u << 2, /* write the body of a status >= 300
                                        too (default: read and dropped) */
  AK_HTTP_DECODE = 1u << 3,        /* ask for a compressed body ("Accept-
                                      Encoding: gzip, deflate", unless the
                                      request's headers carry their own) and
                                      decode a gzip or deflate (zlib) body as
                                      it streams: the sink gets the decoded
                                      bytes at decoded offsets. Another
                                      Content-Encoding, a corrupt stream, a
                                      bad trailer, or a stream that ends
                                      before its end fail AK_EHTTPDECODE; more
                                      decoded bytes than max_body_bytes fail
                                      AK_EHTTPTOOBIG (a gzip bomb stops
                                      there: memory is one buffer of
                                      recv_buffer bytes per request). With a
                                      Range (range_start >= 0) the request is
                                      refused, -EINVAL: a range of an encoded
                                      body cannot be decoded alone. Without
                                      the flag nothing is asked and a body
                                      sent encoded anyway is kept as sent. */
  AK_HTTP_FAIL_ON_STATUS = 1u << 4, /* a final status >= 400 FAILS the
                                      future with AK_EHTTPSTATUS (detail:
                                      "URL: 404 Not Found") instead of
                                      settling DONE; the response (status,
                                      headers, the body if kept) stays
                                      readable with ak_http_response_of.
                                      The error body is still read to its
                                      end (dropped unless
                                      AK_HTTP_KEEP_ERROR_BODY), so the
                                      connection is kept alive. Redirects
                                      are followed first: only the final
                                      status counts. */
  AK_HTTP_BODY_MEMORY = 1u << 5,   /* collect the body in memory: the
                                      response's body / body_len. fd must
                                      be -1 and on_body NULL (else the
                                      request fails -EINVAL). At most
                                      body_cap bytes: a larger announced
                                      Content-Length fails AK_EHTTPTOOBIG
                                      before the body is read, and so does
                                      a body that grows past the cap
                                      (chunked, close-delimited, decoded
                                      by AK_HTTP_DECODE); the detail names
                                      the cap. */
  AK_HTTP_LOCATION_TRUSTED = 1u << 6, /* keep Authorization, Cookie and the
                                      credentials on redirects to another
                                      scheme, host or port (curl's
                                      --location-trusted); by default they
                                      go only to the request's own origin */
};

typedef struct ak_http_request {
  const char *url;             /* absolute http(s) URL; copied */
  unsigned flags;              /* AK_HTTP_* */
  const char *const *headers;  /* extra "Name: value" lines (copied), or
                                  NULL; they replace the client's own
                                  User-Agent / Accept-Encoding */
  size_t header_count;
  int64_t range_start;         /* first byte wanted; < 0: no Range header */
  int64_t range_end;           /* last byte wanted (inclusive); < 0: to end */
  int fd;                      /* the body goes here by ring writes, entity
                                  byte p at file offset fd_base + p; -1: none */
  int64_t fd_base;
  ak_http_body_fn on_body;     /* with fd == -1: the body's bytes */
  void *arg;                   /* for on_body */
  int64_t *progress;           /* if not NULL, body bytes are added here
                                  (__atomic relaxed adds) as they are
                                  written: another thread may read it so.
                                  A prefix: once it has grown by n, the
                                  body's first n bytes are all written
                                  (their writes completed), so a resume
                                  may trust it (akget -c's record) */
  int64_t *size_out;           /* if not NULL, the entity's size (see
                                  ak_http_response.entity_size) is stored
                                  here (__atomic) when the final head
                                  arrives, for progress displays */
  size_t body_cap;             /* AK_HTTP_BODY_MEMORY: the most body bytes
                                  kept; 0: 16 MiB. max_body_bytes still
                                  applies too */
  const char *userpwd;         /* "user:password" (copied; the password
                                  may be empty), sent as Basic
                                  authorization to the URL's origin; it
                                  wins over the URL's own user information.
                                  NULL: the URL's, if any */
} ak_http_request;

/* The request defaults: no flags, no headers, no range, no sink. */
#define AK_HTTP_REQUEST_INIT(u)                                                                    \
  {                                                                                                \
    (u), 0, NULL, 0, -1, -1, -1, 0, NULL, NULL, NULL, NULL, 0, NULL                                \
  }

typedef struct ak_http_header {
  char *name;  /* as received */
  char *value; /* leading and trailing blanks removed */
} ak_http_header;

/* What a request's future holds as its value when DONE. */
typedef struct ak_http_response {
  int status;                /* 200, 206, 404... (also the future's result) */
  char *reason;              /* the status line's text */
  char *url;                 /* the URL answered, after redirects */
  unsigned redirects;        /* redirects followed */
  int64_t content_length;    /* announced, or -1 (chunked, close-delimited) */
  int64_t body_bytes;        /* body bytes received (and written) */
  int64_t range_start;       /* 206: the Content-Range the server sent */
  int64_t range_end;         /*      (inclusive), else -1 */
  int64_t entity_size;       /* the whole resource's size if known (200 with
                                a Content-Length, 206's "/N"), else -1 */
  int64_t retry_after_s;     /* Retry-After in seconds (a date converted to a
                                delay from now), or -1 */
  bool accept_ranges;        /* "Accept-Ranges: bytes" */
  bool reused;               /* sent on a kept-alive connection */
  size_t header_count;
  ak_http_header *headers;   /* in order received */
  bool decoded;              /* AK_HTTP_DECODE and the body was encoded:
                                it was decoded. Then content_length and
                                body_bytes count the encoded bytes,
                                decoded_bytes the bytes given to the sink,
                                and entity_size is -1 */
  int64_t decoded_bytes;     /* bytes given to the sink (body_bytes when
                                nothing was decoded) */
  char *body;                /* AK_HTTP_BODY_MEMORY: the body (decoded
                                with AK_HTTP_DECODE), body_len bytes and a
                                '\0' after them (for text; the body may hold
                                NULs too); "" when there was none (HEAD,
                                204, an error status's body not kept).
                                NULL without the flag. Owned by the
                                response */
  size_t body_len;
} ak_http_response;

/* Starts a GET (or HEAD) of req->url. The future settles DONE with the final
 * response's status as its result and an ak_http_response as its value
 * (owned by the future) once the whole body is received and written; a
 * status >= 300 that is not a followed redirect is a DONE response too (its
 * body dropped unless AK_HTTP_KEEP_ERROR_BODY; a 204 or 304 has no body,
 * whatever its Content-Length says, and settles at its head), unless
 * AK_HTTP_FAIL_ON_STATUS makes a status >= 400 fail AK_EHTTPSTATUS. It
 * FAILS with the codes at the top of this header, and with
 * AK_EHTTPREDIRECTS when redirects exceed the limit. Cancelling it stops
 * the request: it settles CANCELLED once the ring has given back the
 * operation in flight (a write to fd among them), so fd may be closed after
 * that. req is copied; fd must stay open until the future settles. Returns
 * NULL only when memory runs out. */
AK_API ak_future *ak_http_get(ak_http_client *client, const ak_http_request *req);

/* HTTP/1.1 pipelining of HEAD requests (aria2's --enable-http-pipelining):
 * starts n requests, each an ak_http_get in what it asks and how its future
 * settles, out[i] being reqs[i]'s future (the caller's; NULL where memory
 * ran out; a failed future for a request that cannot start, as
 * ak_http_get's). Consecutive requests to the same origin over plain http
 * without a proxy, up to AK_HTTP_PIPELINE_MAX of them, share one
 * connection: their requests go out in one write and their responses are
 * read from the connection in request order, each by its own request (an
 * https URL, one through a proxy, or one after another origin's starts its
 * own pipeline; a pipeline of one is sent alone). With
 * ak_http_options.pipeline_depth the first requests join the running
 * pipeline to their origin instead (see there). Matching is by position
 * only, and what could shift it is refused:
 * - bytes after a response to HEAD that are not the next response (a
 *   body, which HEAD must not have) fail that request AK_EHTTPPROTO; the
 *   requests behind it are sent again on another connection;
 * - a connection that closes, resets or fails a send before a request's
 *   response has begun has that request and those behind it sent again on
 *   another connection, not failed; only new connections that close before
 *   any answer count, and after three in a row the requests left fail
 *   with that error (a response cut in its middle fails its own request
 *   as ak_http_get's would);
 * - a request cancelled after its request went out ends when its turn
 *   comes, and the connection is closed behind it;
 * - a redirect is followed by its request alone.
 * Returns 0, AK_ENOTOWNER (not the loop's thread), or -EINVAL before
 * anything starts: n is 0, or a request is not AK_HTTP_HEAD or has a body
 * sink (fd, on_body, AK_HTTP_BODY_MEMORY) or a range. */
#define AK_HTTP_PIPELINE_MAX 32
AK_API int ak_http_head_pipeline(ak_http_client *client, const ak_http_request *reqs, size_t n,
                                 ak_future **out);

/* The response a request's future holds: its value when DONE, and also,
 * when it FAILED with AK_EHTTPSTATUS (AK_HTTP_FAIL_ON_STATUS), the response
 * whose status failed it. NULL for any other outcome, a pending future, or
 * a future that is not a request's. Borrowed: lives as long as the future.
 * Thread-safe once the future has settled. */
AK_API const ak_http_response *ak_http_response_of(const ak_future *request);

/* A header's value (the first of that name, case-insensitive), or NULL.
 * Borrowed from resp. */
AK_API const char *ak_http_response_header(const ak_http_response *resp, const char *name);

#ifdef __cplusplus
}
#endif
#endif /* ASYNCKIT_HTTP_H */
