/* tls/internal.h: what the tls layer's files share (config.c, pump.c) and
 * what it offers the layers above: nothing beyond include/asynckit/tls.h
 * (http uses the public calls). The engine seam is tls/engine.h. */
#ifndef AK_TLS_INTERNAL_H
#define AK_TLS_INTERNAL_H

#include "tls/engine.h"

/* A config: the engine's, plus the counters over its sessions. */
struct ak_tls_config {
  _Atomic uint32_t refs;             /* the last reference frees */
  const ak__tls_engine_ops *ops;     /* the engine that made it */
  ak__tls_econf *engine;             /* the engine's config (owned) */
  bool server;                       /* made by ak_tls_server_config_new */
  bool insecure;                     /* AK_TLS_INSECURE_NO_VERIFY */
  _Atomic uint64_t handshakes;       /* completed handshakes */
  _Atomic uint64_t handshakes_resumed; /* of those, resumed */
  _Atomic uint64_t handshakes_failed;  /* failed handshakes */
};

/* Counts a handshake's outcome in cfg's statistics (pump.c). */
void ak__tls_config_count(ak_tls_config *cfg, bool ok, bool resumed);

#endif /* AK_TLS_INTERNAL_H */
