/* http/reuse_probe.h: what the reuse of kept-alive connections did, and how
 * requests joined running pipelines, counted per client, and the trust
 * window (internal.h AK__HTTP_IDLE_TRUST_NS) set per client. Internal, for
 * tests (tests/test_http_pipeline.c links the static library): which of the
 * two paths caught a connection that went bad while idle, the look before
 * the send (idle_stale) or the catch after it (the request sent again after
 * a close, stray bytes refused), is not visible from the public API, where
 * both end in the same answer. */
#ifndef AK_HTTP_REUSE_PROBE_H
#define AK_HTTP_REUSE_PROBE_H

#include <stdint.h>

#include <asynckit/http.h>

typedef struct ak__http_reuse_counts {
  uint64_t looks;         /* idle_stale's recv(MSG_PEEK) made */
  uint64_t looks_skipped; /* not made: the connection idle for less than
                             the trust window (would have been looked at
                             otherwise: plain, not a forward proxy's) */
  uint64_t resent;        /* a reused connection closed before any answer
                             byte: its request (a pipeline: the members
                             left) sent again on another; once a close */
  uint64_t strays;        /* a reused connection's first bytes did not
                             start a status line: refused, the request
                             sent on another */
  /* Pipelines joined (exchange.c section 9, pipeline_depth): */
  uint64_t joined;       /* requests that joined a running pipeline */
  uint64_t joined_sends; /* sends of joined requests by the member reading
                            (pipe_send_joined) */
  uint64_t wakes;        /* receives cancelled so that joined requests go
                            out at once (pipe_wake) */
} ak__http_reuse_counts;

/* Sets c's trust window: kept-alive connections idle for less than ns
 * are reused without a look (0: always looked at). The default is
 * AK__HTTP_IDLE_TRUST_NS (internal.h). */
void ak__http_client_set_idle_trust(ak_http_client *c, int64_t ns);
/* c's counts since it was made. */
ak__http_reuse_counts ak__http_client_reuse_counts(const ak_http_client *c);

#endif
