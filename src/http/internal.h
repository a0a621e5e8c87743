/* http/internal.h: what the HTTP client's files share. The layer sits on
 * core (futures, loop, timers), fs (ring writes) and net (sockets, connect
 * by name); TLS plugs in under the transport seam below. It offers nothing
 * to a layer above: tools use include/asynckit/http.h.
 *
 * Files:
 *   url.c             URLs (uriparser), public
 *   response.c        the response parser: llhttp plus the client's own
 *                     checks of sizes and framing, no IO (fuzzed alone)
 *   transport_plain.c the transport seam's plain-socket side
 *   conn.c            connections and the per-host keep-alive pools
 *   exchange.c        one request: send, receive, parse, write the body,
 *                     deadlines, redirects
 *   decode.c          gzip / deflate bodies (zlib) for AK_HTTP_DECODE
 *   body_memory.c     AK_HTTP_BODY_MEMORY: the body collected in memory
 *   client.c          the client object, the public entry points, and how
 *                     a finished response settles (AK_HTTP_FAIL_ON_STATUS)
 *   auth.c            Basic credentials (base64), and dropping them from
 *                     a request redirected to another origin
 *   proxy.c           proxy URLs, no_proxy lists, the proxy handshake
 *                     (HTTP CONNECT) as a future on the socket
 *   socks.c           SOCKS5's steps (RFC 1928/1929) inside that handshake
 *   reuse_probe.h     what reusing kept connections did, counted, and the
 *                     trust window per client: for tests
 */
#ifndef AK_HTTP_INTERNAL_H
#define AK_HTTP_INTERNAL_H

#include "core/internal.h"
#include "http/reuse_probe.h"

#include <llhttp.h>
#include <string.h>
#include <sys/socket.h>

/* ---- Building strings ----------------------------------------------------------
 * What is formatted for every request (its head, its pool's key, its
 * origin) is put together with these rather than snprintf, whose parsing
 * of the format cost more than the rest of the request's making (akget -N,
 * a thousand HEADs). The caller has sized the buffer. */

/* Copies s to o; returns the end (no NUL written). */
static inline char *ak__put(char *o, const char *s)
{
  size_t n = strlen(s);
  memcpy(o, s, n);
  return o + n;
}

/* Writes v in decimal at o; returns the end (no NUL written). */
static inline char *ak__put_u64(char *o, uint64_t v)
{
  char digits[20];
  size_t n = 0;
  do {
    digits[n++] = (char)('0' + v % 10);
    v /= 10;
  } while (v);
  while (n)
    *o++ = digits[--n];
  return o;
}

/* ---- URLs (url.c) ---------------------------------------------------------------
 * ak_url_parse into a buffer the caller keeps (*buf, *cap bytes, a malloc
 * block or NULL, replaced by a larger one when the URL needs more): the
 * common plain form is made there, with no allocation, and *out points to
 * the buffer's start; any other form is parsed as ak_url_parse does, into
 * its own allocation. So *out == (ak_url *)*buf says which: only the other
 * is given to ak_url_free. Returns as ak_url_parse. */
int ak__url_parse_kept(const char *text, char **buf, size_t *cap, ak_url **out);

/* ---- The response parser (response.c) ----------------------------------------
 * Feeds bytes through llhttp and checks what llhttp leaves to its user: the
 * head's total size, the number of headers, the body's size against a
 * limit, the 206's Content-Range. It builds an ak_http_response and hands
 * body bytes to a sink in place (no copy). 1xx interim responses are
 * skipped. */

typedef struct ak__http_parser ak__http_parser;

/* Called once the final response's head is complete; returns 0, or a
 * negative error that stops the parse (the parser's error then). */
typedef int (*ak__http_head_hook)(ak__http_parser *p, void *arg);
/* Body bytes (borrowed, inside the fed buffer). Returns 0 or an error. */
typedef int (*ak__http_body_hook)(ak__http_parser *p, const char *data, size_t len, void *arg);

struct ak__http_parser {
  llhttp_t ll;                 /* llhttp's state; ll.data points back here */
  ak_http_response *resp;      /* being built; owned until taken */
  size_t max_head;             /* head bytes allowed */
  int64_t max_body;            /* body bytes allowed */
  size_t head_bytes;           /* head bytes seen so far (interim heads too) */
  bool have_field;             /* a header is being received: its name
                                  from name_at in the headers' text */
  bool in_value;               /* its value has begun, at value_at (after
                                  the name's NUL) */
  size_t name_at, value_at;
  size_t header_cap;           /* room in resp->headers */
  size_t text_len, text_cap;   /* the headers' names and values: bytes used
                                  and room in the text after resp->headers'
                                  header_cap entries (one block, response.c) */
  bool head_request;           /* HEAD: no body follows */
  bool head_done;              /* the final head is complete */
  bool message_done;           /* the final message is complete */
  int content_length_count;    /* Content-Length headers seen */
  unsigned short at_content_range, at_retry_after, at_accept_ranges;
                               /* where the first of each is in
                                  resp->headers, plus one; 0: none */
  int err;                     /* first error, 0 if none */
  ak__http_head_hook on_head;  /* may be NULL */
  ak__http_body_hook on_body;  /* may be NULL (body dropped) */
  void *hook_arg;
  /* Not cleared by ak__http_parser_init: written before it is read. */
  char detail[160];            /* what was wrong, for the future's detail */
};

/* Makes p ready for one response. head_request: the request was HEAD.
 * Returns 0 or -ENOMEM. */
int ak__http_parser_init(ak__http_parser *p, size_t max_head, int64_t max_body,
                         bool head_request);
/* Frees what p holds (the response too, unless taken). */
void ak__http_parser_free(ak__http_parser *p);
/* Feeds len bytes. Returns the bytes consumed (less than len only when the
 * message completed before the end: the rest belongs to no request), or a
 * negative error (p->err, with p->detail). */
int64_t ak__http_parser_feed(ak__http_parser *p, const char *data, size_t len);
/* The peer closed: completes a close-delimited body, else returns the
 * error for a message cut short (AK_EHTTPTRUNCATED in a body,
 * AK_EHTTPCLOSED before any byte, AK_EHTTPPROTO inside the head). */
int ak__http_parser_eof(ak__http_parser *p, bool got_bytes);
/* Whether the connection may carry another request after this response. */
bool ak__http_parser_keep_alive(const ak__http_parser *p);
/* Takes the response (the caller frees it with ak__http_response_free). */
ak_http_response *ak__http_parser_take(ak__http_parser *p);

/* Sets resp->url to a copy of url (in the record's room when it fits).
 * Returns 0 or -ENOMEM. */
int ak__http_response_set_url(ak_http_response *resp, const char *url);
void ak__http_response_free(ak_http_response *resp);
/* As ak_destructor. */
void ak__http_response_dtor(void *resp);

/* ---- The body decoder (decode.c) ---------------------------------------------
 * AK_HTTP_DECODE's gzip / deflate inflater, in bounded steps. */

typedef struct ak__http_decoder ak__http_decoder;

/* Whether a Content-Encoding value means no encoding ("identity", empty). */
bool ak__http_encoding_is_identity(const char *encoding);
/* A decoder for encoding (gzip, x-gzip, deflate). Returns 0 and sets *out,
 * AK_EHTTPDECODE for another encoding (detail says which), or -ENOMEM. */
int ak__http_decoder_new(const char *encoding, ak__http_decoder **out, char *detail, size_t n);
void ak__http_decoder_free(ak__http_decoder *d);
/* Inflates from in (in_len bytes) into out (out_cap bytes): returns the
 * bytes made (0 when more input is needed) and sets *used to the input
 * taken; stops when out is full or in is used up. AK_EHTTPDECODE (detail
 * filled) for a corrupt stream, a bad trailer, or junk after the end. */
int64_t ak__http_decoder_run(ak__http_decoder *d, const void *in, size_t in_len, size_t *used,
                             void *out, size_t out_cap, char *detail, size_t n);
/* Whether the stream has reached its end (a body that stops before is
 * truncated). */
bool ak__http_decoder_ended(const ak__http_decoder *d);

/* ---- Bodies in memory (body_memory.c) -----------------------------------------
 * AK_HTTP_BODY_MEMORY: a sink with the shape of ak_http_body_fn that grows
 * one buffer up to the request's cap. The exchange hands it the body's
 * bytes as it would a user's on_body (decoded ones too), and at the end
 * moves the buffer into the response. */

typedef struct ak__http_membody ak__http_membody;

/* For req (AK_HTTP_BODY_MEMORY set): -EINVAL when req also names an fd or
 * an on_body, else 0 and *out, or -ENOMEM. parser is the exchange's: the
 * sink reads the final head's Content-Length from it and writes its
 * detail there when the cap is passed. */
int ak__http_membody_new(const ak_http_request *req, ak__http_parser *parser,
                         ak__http_membody **out);
/* The sink (arg: the ak__http_membody). AK_EHTTPTOOBIG past the cap,
 * -ENOMEM. */
int ak__http_membody_sink(const void *data, size_t len, int64_t offset, void *arg);
/* Moves the body into r->body / r->body_len ("" if none came). Returns 0
 * or -ENOMEM. */
int ak__http_membody_give(ak__http_membody *m, ak_http_response *r);
void ak__http_membody_free(ak__http_membody *m);

/* ---- How a finished response settles (client.c) ---------------------------------
 * DONE with the status as result and r as value; with AK_HTTP_FAIL_ON_STATUS
 * and a status >= 400, FAILED AK_EHTTPSTATUS with r kept as the value
 * (ak_http_response_of). Takes r over. */
void ak__http_settle_response(ak_future *fut, ak_http_response *r, unsigned flags);

/* ---- Connections and the transport seam (conn.c, transport_*.c) ---------------
 * A connection reads and writes through a transport: the plain socket now,
 * a TLS session later (https), with the same three calls, each a future on
 * the client's loop. */

typedef struct ak__http_conn ak__http_conn;
typedef struct ak__proxy ak__proxy; /* a parsed proxy URL (below) */
typedef struct ak__http_host ak__http_host;

typedef struct ak__http_transport {
  const char *name;
  /* After the TCP connect: a handshake future (result 0), or NULL when the
   * transport has none (plain). */
  ak_future *(*start)(ak__http_conn *c);
  ak_future *(*recv)(ak__http_conn *c, void *buf, size_t len);
  ak_future *(*send_all)(ak__http_conn *c, const void *buf, size_t len);
  /* Closes the connection (the socket too); result 0. */
  ak_future *(*close)(ak__http_conn *c);
} ak__http_transport;

extern const ak__http_transport ak__http_plain;
extern const ak__http_transport ak__http_tls; /* transport_tls.c */

/* Whether this build can speak https (a TLS transport is compiled in). */
bool ak__http_tls_available(void);
/* The client's TLS config, made at the first https request. Returns 0, or
 * the TLS layer's error (AK_ETLSCONFIG: a --cacert that cannot be loaded). */
int ak__http_tls_config(ak_http_client *c, ak_tls_config **out);

struct ak__http_conn {
  ak_http_client *client;
  ak__http_host *host;         /* the pool it belongs to */
  int fd;                      /* the socket */
  const ak__http_transport *tr;
  void *tls;                   /* the transport's session, or NULL */
  char *tls_host;              /* https: the name for SNI and the check */
  ak__http_conn *next_idle;    /* in host->idle */
  unsigned uses;               /* requests it has carried */
  int64_t idle_since;          /* when it went idle (in host->idle) */
  char *buf;                   /* receive ring, buf_size bytes (exchange.c) */
  size_t buf_size;
  int buf_slot;                /* buf's registered slot (plain connections), or -1 */
  bool buf_reg_tried;          /* registering buf was tried (once, when a body
                                  first came: exchange.c) */
  int rcvlowat;                /* SO_RCVLOWAT set on fd (exchange.c), 0: none */
  size_t carry_off, carry_len; /* pipelined HEADs: bytes in buf received past
                                  a response, the next member's (exchange.c,
                                  section 9); carry_len 0 otherwise */
};

typedef struct ak__http_exchange ak__http_exchange;

struct ak__http_host {
  char *key;                   /* "scheme host port zone" */
  ak__http_host *next;         /* in client->hosts */
  unsigned open;               /* connections open or connecting */
  ak__http_conn *idle;         /* kept-alive connections, most recent first */
  ak__http_exchange *wait_head; /* requests waiting for a connection */
  ak__http_exchange *wait_tail;
  ak__http_exchange *pipe_tail; /* the last member of the newest pipeline
                                   to this host, while it runs, or NULL:
                                   where requests join (exchange.c
                                   section 9, pipeline_depth) */
};

typedef struct ak__http_opts {
  unsigned max_conns_per_host;
  int64_t connect_timeout_ns, idle_timeout_ns, head_timeout_ns, total_timeout_ns;
  int64_t keepalive_timeout_ns; /* AK_FOREVER: none */
  int max_redirects;
  size_t max_head_bytes;
  int64_t max_body_bytes;
  size_t recv_buffer;
  int64_t max_rate;            /* bytes/s, 0: none */
  char *user_agent;            /* owned */
  char *cacert;                /* owned, or NULL */
  bool insecure;
  int ip_family;               /* AF_UNSPEC, AF_INET, AF_INET6 */
  unsigned pipeline_depth;     /* 0: pipelines are not joined (exchange.c
                                  section 9); else at most
                                  AK_HTTP_PIPELINE_MAX */
} ak__http_opts;

/* A kept-alive plain connection idle for less than this is reused without
 * looking at its socket first (exchange.c section 2, idle_stale): on akget -N -j32
 * over an unchanged tree a connection waits about 60 us (at most 16 ms)
 * between one pipeline and the next, and the look (a recv(MSG_PEEK) that
 * finds nothing) was a syscall per pipeline. What the look would have
 * caught is caught after the send instead: a close by the server sends the
 * request again on a new connection (retry_on_fresh_conn, pipe_retry),
 * and bytes that do not start a status line are not taken for the answer
 * (stray). Only a whole response nobody asked for that reaches the
 * connection inside this window, as it can reach one handed straight to
 * a waiting request, is taken for the next request's answer. Tests set
 * the window per client and count which path ran (reuse_probe.h). */
#define AK__HTTP_IDLE_TRUST_NS (20 * 1000 * 1000)

struct ak_http_client {
  ak_loop *loop;
  ak__http_opts opts;
  ak__http_host *hosts;        /* one per scheme/host/port seen */
  size_t open_conns;           /* connections open or connecting */
  uint64_t reused;             /* requests sent on a kept-alive connection */
  ak__http_reuse_counts reuse; /* what reusing them did (reuse_probe.h) */
  int64_t idle_trust_ns;       /* the trust window: AK__HTTP_IDLE_TRUST_NS,
                                  or a test's (reuse_probe.h) */
  size_t active;               /* requests not yet settled */
  ak_tls_config *tls_config;   /* https: made at first use, or NULL */
  ak_timer *sweep;             /* closes idle connections past their time,
                                  armed only while requests are active */
  double rate_tokens;          /* --limit-rate's bucket: bytes allowed now */
  int64_t rate_at;             /* when it was last filled */
  ak__proxy *http_proxy;       /* for http URLs, or NULL */
  ak__proxy *https_proxy;      /* for https URLs, or NULL */
  char *no_proxy;              /* hosts reached directly, or NULL */
  ak__http_exchange *spare_ex; /* ended exchanges' records kept for the next
                                  ones (exchange.c, record_get), loop thread */
  unsigned spare_count;
};

/* The host pool for url reached through proxy (NULL: directly), made on
 * first use; NULL on ENOMEM. http URLs through an http proxy share one pool
 * per proxy (its connections carry every origin's requests); a tunnel
 * (CONNECT, SOCKS) belongs to its origin and proxy. */
ak__http_host *ak__http_host_of(ak_http_client *c, const ak_url *url, const ak__proxy *proxy);
/* A new connection record of host, counted open (the socket comes later;
 * plain transport until the caller says otherwise). NULL on ENOMEM. */
ak__http_conn *ak__http_conn_new(ak_http_client *c, ak__http_host *host);
/* Takes an idle connection of host, or NULL. */
ak__http_conn *ak__http_conn_take_idle(ak__http_host *host);
/* The request is done with c: keep it for reuse, or close it. Either way a
 * request waiting for host gets its turn (the idle connection, or room to
 * connect). */
void ak__http_conn_release(ak__http_conn *c, bool keep);
/* Closes every idle connection of the client. */
void ak__http_close_idle(ak_http_client *c);
/* The idle sweep: armed when the client has requests and idle
 * connections, stopped when its last request settles. */
void ak__http_sweep_arm(ak_http_client *c);
void ak__http_sweep_stop(ak_http_client *c);

/* ---- Credentials (auth.c) ------------------------------------------------------- */

/* Base64 of len bytes into out (room for 4 * ceil(len / 3) + 1); returns
 * the characters written (NUL not counted). */
size_t ak__base64_encode(const void *data, size_t len, char *out);
/* "HEADER: Basic base64(user:password)\r\n" (owned), NULL on ENOMEM.
 * password may be NULL (empty). */
char *ak__http_basic_line(const char *header, const char *user, const char *password);
/* The same from "user:password" (no colon: an empty password). */
char *ak__http_basic_line_userpwd(const char *header, const char *userpwd);
/* Removes the Authorization and Cookie lines from joined header lines (in
 * place; NULL does nothing). */
void ak__http_drop_credential_headers(char *lines);

/* ---- Proxies (proxy.c, socks.c) ------------------------------------------------- */

typedef enum ak__proxy_kind {
  AK__PROXY_HTTP,   /* absolute form for http, CONNECT for https */
  AK__PROXY_SOCKS5, /* the origin's name resolved here */
  AK__PROXY_SOCKS5H /* the origin's name resolved by the proxy */
} ak__proxy_kind;

struct ak__proxy {
  ak__proxy_kind kind;
  char *host;                  /* name or IP literal, no brackets */
  uint16_t port;
  char *user, *password;       /* decoded, or NULL */
  char *auth_line;             /* http with a user: "Proxy-Authorization:
                                  Basic ...\r\n", else NULL */
  char *display;               /* "scheme://host:port": no credentials */
};

/* Parses a proxy URL (http.h). NULL or "": 0 and *out NULL. Returns 0,
 * AK_EPROXYURL or -ENOMEM. */
int ak__proxy_parse(const char *text, ak__proxy **out);
void ak__proxy_free(ak__proxy *p);
/* The proxy url goes through, or NULL (none, or no_proxy says direct). */
const ak__proxy *ak__http_proxy_for(const ak_http_client *c, const ak_url *url);

/* The handshake with a proxy on a connected socket that makes it a tunnel
 * to the origin: CONNECT (http proxies, https URLs) or SOCKS5. A future on
 * loop: result 0 once the tunnel is open (the socket then carries the
 * origin's bytes), or AK_EPROXY... with a detail naming the proxy. Cancel
 * stops it. proxy must outlive it (the client owns it). */
ak_future *ak__http_proxy_tunnel(ak_loop *loop, int fd, const ak__proxy *proxy, const ak_url *origin);

enum { AK__HS_DONE = 0, AK__HS_MORE = 1, AK__HS_SEND = 2 };

typedef struct ak__handshake {
  const ak__proxy *proxy;      /* borrowed from the client */
  char *host;                  /* the origin's host (owned) */
  uint16_t port;
  bool host_is_ip;             /* host is an IP literal */
  struct sockaddr_storage addr; /* SOCKS5 (local resolve): the origin's address */
  bool have_addr;
  int phase;                   /* the protocol's step */
  unsigned char out[640];      /* the next bytes to send */
  size_t out_len;
  unsigned char in[4096];      /* bytes received for this step */
  size_t in_len;
  size_t want;                 /* SOCKS: receive up to exactly this many (no
                                  byte past the reply); 0: what fits */
  char detail[240];
} ak__handshake;

/* socks.c: the greeting into h->out (returns AK__HS_SEND), and each step
 * on the bytes received: AK__HS_MORE, AK__HS_SEND (h->out filled, h->in
 * emptied), AK__HS_DONE, or an AK_EPROXY... error with h->detail. */
int ak__socks_begin(ak__handshake *h);
int ak__socks_step(ak__handshake *h);

/* ---- Exchanges (exchange.c) ----------------------------------------------------- */

/* Called by conn.c when host has room for the waiting exchange ex: with a
 * connection (idle, to reuse) or NULL (connect a new one). */
void ak__http_exchange_resume(ak__http_exchange *ex, ak__http_conn *conn);
/* The next waiter of host, dequeued, or NULL. */
ak__http_exchange *ak__http_host_pop_waiter(ak__http_host *host);

ak_future *ak__http_exchange_start(ak_http_client *c, const ak_http_request *req);
/* Frees the exchange records c keeps for reuse (ak_http_client_free). */
void ak__http_spares_free(ak_http_client *c);
/* ak_http_head_pipeline's work (exchange.c, section 9): -EINVAL before
 * anything starts, -ENOMEM, or 0 and out[] filled. */
int ak__http_pipeline_start(ak_http_client *c, const ak_http_request *reqs, size_t n,
                            ak_future **out);

#endif /* AK_HTTP_INTERNAL_H */
