/* tls/internal.h: what the tls layer's files share (config.c, pump.c,
 * session_cache.c) and
 * what it offers the layers above: nothing beyond include/asynckit/tls.h
 * (http uses the public calls). The engine seam is tls/engine.h. */
#ifndef AK_TLS_INTERNAL_H
#define AK_TLS_INTERNAL_H

#include "tls/engine.h"

/* A client config's resumption cache (session_cache.c): one session per
 * key, at most a fixed number of keys. Thread-safe (it locks itself). */
typedef struct ak__tls_session_cache ak__tls_session_cache;

/* A cache for nslots (> 0) keys of ops's sessions. Returns 0 and sets *out,
 * or -ENOMEM. */
int ak__tls_session_cache_new(const ak__tls_engine_ops *ops, unsigned nslots,
                              ak__tls_session_cache **out);
/* Frees c and every session in it. NULL does nothing. */
void ak__tls_session_cache_free(ak__tls_session_cache *c);
/* Keys with a session now. */
size_t ak__tls_session_cache_count(ak__tls_session_cache *c);
/* Offers key's session, if there is one, to e (before its handshake) with
 * the engine's eng_offer, which copies what it keeps. True when e took it
 * (the key then counts as just used). */
bool ak__tls_session_cache_offer(ak__tls_session_cache *c, const char *key, ak__tls_eng *e);
/* Keeps sess (taken over: the cache frees it, now if it cannot keep it) as
 * key's session, in place of key's older one; a new key takes an empty slot
 * or the least recently used key's. */
void ak__tls_session_cache_put(ak__tls_session_cache *c, const char *key, ak__tls_sess *sess);

/* A config: the engine's, plus the counters over its sessions. */
struct ak_tls_config {
  _Atomic uint32_t refs;             /* the last reference frees */
  const ak__tls_engine_ops *ops;     /* the engine that made it */
  ak__tls_econf *engine;             /* the engine's config (owned) */
  ak__tls_session_cache *sessions;   /* a resuming client's cache (owned); NULL:
                                        a server, or AK_TLS_NO_RESUMPTION */
  bool server;                       /* made by ak_tls_server_config_new */
  bool insecure;                     /* AK_TLS_INSECURE_NO_VERIFY */
  _Atomic uint64_t handshakes;       /* completed handshakes */
  _Atomic uint64_t handshakes_resumed; /* of those, resumed */
  _Atomic uint64_t handshakes_failed;  /* failed handshakes */
};

/* Counts a handshake's outcome in cfg's statistics (pump.c). */
void ak__tls_config_count(ak_tls_config *cfg, bool ok, bool resumed);

#endif /* AK_TLS_INTERNAL_H */
