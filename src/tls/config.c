/* tls/config.c: the public TLS configs (tls.h): client and server configs
 * as reference-counted wrappers around an engine config and, for a resuming
 * client, its session cache (tls/session_cache.c), the choice of engine
 * (the options' engine, else AK_TLS_ENGINE, else OpenSSL), and their
 * statistics. Engine-neutral: what an engine config holds is the engine's
 * business (tls/openssl.c, tls/mbedtls.c), and how an engine is reached
 * (linked in, or loaded on first use in akget) is ak__tls_engine_get's
 * (tls/engine.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tls/internal.h"

/* Why the last config_new on this thread failed, in the engine's words
 * (or the loader's, naming a path or two: tls/loader.c). */
static AK__TLS char last_error[512];

const char *ak_tls_config_error(void) { return last_error; }

/* The engine for a config asked to use want; NULL (detail set) when the
 * environment names no engine we have, or the engine cannot be had
 * (ak__tls_engine_get: not in this build, or, in akget, its module not
 * loaded). */
static const ak__tls_engine_ops *pick_engine(ak_tls_engine want) {
  if (want == AK_TLS_ENGINE_AUTO) {
    const char *env = getenv("AK_TLS_ENGINE");
    if (!env || !env[0] || strcmp(env, "openssl") == 0) {
      want = AK_TLS_ENGINE_OPENSSL;
    } else if (strcmp(env, "mbedtls") == 0) {
      want = AK_TLS_ENGINE_MBEDTLS;
    } else {
      snprintf(last_error, sizeof(last_error), "AK_TLS_ENGINE=%.64s: not openssl or mbedtls", env);
      return NULL;
    }
  }
  return ak__tls_engine_get(want, last_error, sizeof(last_error));
}

/* The session cache a client config made with opts keeps: NULL in *out
 * when resumption is off. */
static int cache_for(const ak__tls_engine_ops *ops, const ak_tls_client_options *opts,
                     ak__tls_session_cache **out) {
  *out = NULL;
  if (opts->flags & AK_TLS_NO_RESUMPTION)
    return 0;
  return ak__tls_session_cache_new(ops, opts->session_cache_size ? opts->session_cache_size : 64,
                                   out);
}

/* Takes engine and sessions over (freed on failure). */
static int config_wrap(const ak__tls_engine_ops *ops, ak__tls_econf *engine,
                       ak__tls_session_cache *sessions, bool server, bool insecure,
                       ak_tls_config **out) {
  ak_tls_config *cfg = ak__calloc(1, sizeof(*cfg));
  if (!cfg) {
    ak__tls_session_cache_free(sessions);
    ops->econf_free(engine);
    return -ENOMEM;
  }
  atomic_init(&cfg->refs, 1);
  cfg->ops = ops;
  cfg->engine = engine;
  cfg->sessions = sessions;
  cfg->server = server;
  cfg->insecure = insecure;
  *out = cfg;
  return 0;
}

int ak_tls_client_config_new(const ak_tls_client_options *opts, ak_tls_config **out) {
  static const ak_tls_client_options defaults = {0};
  if (!out)
    return -EINVAL;
  *out = NULL;
  if (!opts)
    opts = &defaults;
  last_error[0] = '\0';
  const ak__tls_engine_ops *ops = pick_engine(opts->engine);
  if (!ops)
    return AK_ETLSCONFIG;
  ak__tls_econf *engine = NULL;
  int rc = ops->econf_client(opts, &engine, last_error, sizeof(last_error));
  if (rc < 0)
    return rc;
  ak__tls_session_cache *sessions;
  rc = cache_for(ops, opts, &sessions);
  if (rc < 0) {
    ops->econf_free(engine);
    return rc;
  }
  return config_wrap(ops, engine, sessions, false,
                     (opts->flags & AK_TLS_INSECURE_NO_VERIFY) != 0, out);
}

int ak_tls_server_config_new(const ak_tls_server_options *opts, ak_tls_config **out) {
  if (!out)
    return -EINVAL;
  *out = NULL;
  if (!opts || !opts->cert_file || !opts->key_file)
    return -EINVAL;
  last_error[0] = '\0';
  const ak__tls_engine_ops *ops = pick_engine(opts->engine);
  if (!ops)
    return AK_ETLSCONFIG;
  ak__tls_econf *engine = NULL;
  int rc = ops->econf_server(opts, &engine, last_error, sizeof(last_error));
  if (rc < 0)
    return rc;
  return config_wrap(ops, engine, NULL, true, false, out);
}

ak_tls_config *ak_tls_config_ref(ak_tls_config *cfg) {
  atomic_fetch_add_explicit(&cfg->refs, 1, memory_order_relaxed);
  return cfg;
}

void ak_tls_config_release(ak_tls_config *cfg) {
  if (!cfg)
    return;
  /* acq_rel: every session's last use happens before the free. */
  if (atomic_fetch_sub_explicit(&cfg->refs, 1, memory_order_acq_rel) != 1)
    return;
  ak__tls_session_cache_free(cfg->sessions);
  cfg->ops->econf_free(cfg->engine);
  ak__free(cfg);
}

void ak__tls_config_count(ak_tls_config *cfg, bool ok, bool resumed) {
  if (!ok) {
    atomic_fetch_add_explicit(&cfg->handshakes_failed, 1, memory_order_relaxed);
    return;
  }
  atomic_fetch_add_explicit(&cfg->handshakes, 1, memory_order_relaxed);
  if (resumed)
    atomic_fetch_add_explicit(&cfg->handshakes_resumed, 1, memory_order_relaxed);
}

void ak_tls_config_stats_get(const ak_tls_config *cfg, ak_tls_config_stats *out) {
  ak_tls_config *c = (ak_tls_config *)cfg; /* the counters are atomics */
  out->handshakes = atomic_load_explicit(&c->handshakes, memory_order_relaxed);
  out->handshakes_resumed = atomic_load_explicit(&c->handshakes_resumed, memory_order_relaxed);
  out->handshakes_failed = atomic_load_explicit(&c->handshakes_failed, memory_order_relaxed);
  out->cached_sessions = c->sessions ? ak__tls_session_cache_count(c->sessions) : 0;
  out->engine = c->ops->name;
  out->insecure = c->insecure;
  out->server = c->server;
}
