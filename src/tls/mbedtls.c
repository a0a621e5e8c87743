/* tls/mbedtls.c: the mbedtls 2.28 engine behind tls/engine.h. It owns
 * everything mbedtls: configs (CA chain, certificate and key, RNG, tickets,
 * the server's session-id cache), sessions whose BIO
 * callbacks read and write the pump's memory buffers, and the mapping of
 * mbedtls's errors and verification flags to AK_ETLS codes, and the saved
 * sessions the client's cache (session_cache.c) keeps. It does not touch
 * sockets, futures or the loop (pump.c does).
 *
 * Debian 12's mbedtls 2.28.3 speaks TLS 1.2 only. Its default suite list
 * puts ChaCha20 first; ours puts ECDHE with AES-GCM first (the CPUs here
 * have AES-NI), ChaCha20-Poly1305 after, and nothing without forward
 * secrecy or AEAD. Renegotiation stays off (mbedtls's default).
 *
 * CVE-2025-27809: mbedtls 2.28.3 skips the name check when no host name was
 * set. mb_eng_new refuses a verifying client without one, and
 * config.c / pump.c never reach it without one unless the config is
 * insecure (verification off by name).
 */
#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>

#include <mbedtls/asn1.h>
#include <mbedtls/ctr_drbg.h>
#include <mbedtls/entropy.h>
#include <mbedtls/error.h>
#include <mbedtls/net_sockets.h>
#include <mbedtls/oid.h>
#include <mbedtls/pk.h>
#include <mbedtls/ssl.h>
#include <mbedtls/ssl_cache.h>
#include <mbedtls/ssl_internal.h>
#include <mbedtls/ssl_ticket.h>
#include <mbedtls/x509_crt.h>

#include "tls/engine.h"

#define AK__SYSTEM_CA_FILE "/etc/ssl/certs/ca-certificates.crt"
#define AK__DETAIL_MAX 256

/* Preference order: AES-GCM (AES-NI) first, then ChaCha20-Poly1305. */
static const int ak__suites[] = {
    MBEDTLS_TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
    MBEDTLS_TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
    MBEDTLS_TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
    MBEDTLS_TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
    MBEDTLS_TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
    MBEDTLS_TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
    0,
};

struct ak__tls_econf {
  mbedtls_ssl_config conf;
  mbedtls_entropy_context entropy;
  mbedtls_ctr_drbg_context drbg;
  mbedtls_x509_crt ca;          /* trusted CAs (client) */
  mbedtls_x509_crt own_cert;    /* certificate chain (server) */
  mbedtls_pk_context own_key;   /* its key (server) */
  mbedtls_ssl_ticket_context tickets; /* ticket keys (server) */
  mbedtls_ssl_cache_context id_cache; /* session ids (server) */
  const char *alpn_list[2];     /* { alpn, NULL } */
  char *alpn;                   /* owned copy */
  bool server;
  bool insecure;
  bool fixed_rng;               /* ak__tls_test_fixed_rng was on */
  uint64_t rng_state;           /* the fixed RNG's state */
};

struct ak__tls_eng {
  mbedtls_ssl_context ssl;
  ak__tls_econf *c;
  ak__tls_wire *wire;
  bool session_taken;   /* eng_take_session has copied the session */
  bool resumed;         /* the handshake resumed a session */
  bool leaf_self_issued; /* the peer's certificate names itself as issuer */
  unsigned char ip[16];  /* the host as an address, when it is a literal */
  size_t ip_len;         /* 4 or 16; 0: a DNS name */
  char detail[AK__DETAIL_MAX];
};

static bool ak__fixed_rng_on;

void ak__tls_test_fixed_rng(bool on) { ak__fixed_rng_on = on; }

/* A splitmix64 stream: deterministic bytes for fuzzing only. */
static int fixed_rng(void *arg, unsigned char *out, size_t len) {
  ak__tls_econf *c = arg;
  for (size_t i = 0; i < len; i++) {
    uint64_t z = (c->rng_state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    out[i] = (unsigned char)(z ^ (z >> 31));
  }
  return 0;
}

static void put_detail(char *detail, size_t n, const char *what, int mbed_err) {
  if (!detail || n == 0)
    return;
  char msg[160];
  mbedtls_strerror(mbed_err, msg, sizeof(msg));
  snprintf(detail, n, "%s: %s (-0x%04x)", what, msg, (unsigned)-mbed_err);
}

/* ---- Configs ----------------------------------------------------------------- */

static ak__tls_econf *econf_alloc(bool server) {
  ak__tls_econf *c = ak__calloc(1, sizeof(*c));
  if (!c)
    return NULL;
  mbedtls_ssl_config_init(&c->conf);
  mbedtls_entropy_init(&c->entropy);
  mbedtls_ctr_drbg_init(&c->drbg);
  mbedtls_x509_crt_init(&c->ca);
  mbedtls_x509_crt_init(&c->own_cert);
  mbedtls_pk_init(&c->own_key);
  mbedtls_ssl_ticket_init(&c->tickets);
  mbedtls_ssl_cache_init(&c->id_cache);
  c->server = server;
  return c;
}

static void mb_econf_free(ak__tls_econf *c) {
  if (!c)
    return;
  mbedtls_ssl_cache_free(&c->id_cache);
  mbedtls_ssl_ticket_free(&c->tickets);
  mbedtls_pk_free(&c->own_key);
  mbedtls_x509_crt_free(&c->own_cert);
  mbedtls_x509_crt_free(&c->ca);
  mbedtls_ctr_drbg_free(&c->drbg);
  mbedtls_entropy_free(&c->entropy);
  mbedtls_ssl_config_free(&c->conf);
  ak__free(c->alpn);
  ak__free(c);
}

/* The RNG, the protocol bounds, the suites and ALPN: what both sides share. */
static int econf_common(ak__tls_econf *c, int endpoint, const char *alpn, char *detail,
                        size_t n) {
  int ret = mbedtls_ssl_config_defaults(&c->conf, endpoint, MBEDTLS_SSL_TRANSPORT_STREAM,
                                        MBEDTLS_SSL_PRESET_DEFAULT);
  if (ret != 0) {
    put_detail(detail, n, "ssl_config_defaults", ret);
    return AK_ETLSCONFIG;
  }
  if (ak__fixed_rng_on) {
    c->fixed_rng = true;
    c->rng_state = 0x5eed;
    mbedtls_ssl_conf_rng(&c->conf, fixed_rng, c);
  } else {
    static const char pers[] = "asynckit tls";
    ret = mbedtls_ctr_drbg_seed(&c->drbg, mbedtls_entropy_func, &c->entropy,
                                (const unsigned char *)pers, sizeof(pers) - 1);
    if (ret != 0) {
      put_detail(detail, n, "ctr_drbg_seed", ret);
      return AK_ETLSCONFIG;
    }
    mbedtls_ssl_conf_rng(&c->conf, mbedtls_ctr_drbg_random, &c->drbg);
  }
  mbedtls_ssl_conf_min_version(&c->conf, MBEDTLS_SSL_MAJOR_VERSION_3, MBEDTLS_SSL_MINOR_VERSION_3);
  mbedtls_ssl_conf_ciphersuites(&c->conf, ak__suites);
  mbedtls_ssl_conf_renegotiation(&c->conf, MBEDTLS_SSL_RENEGOTIATION_DISABLED);
  if (!alpn)
    alpn = "http/1.1";
  if (alpn[0]) {
    c->alpn = ak__strdup(alpn);
    if (!c->alpn)
      return -ENOMEM;
    c->alpn_list[0] = c->alpn;
    c->alpn_list[1] = NULL;
    ret = mbedtls_ssl_conf_alpn_protocols(&c->conf, c->alpn_list);
    if (ret != 0) {
      put_detail(detail, n, "ALPN", ret);
      return AK_ETLSCONFIG;
    }
  }
  return 0;
}

static int mb_econf_client(const ak_tls_client_options *opts, ak__tls_econf **out, char *detail,
                         size_t n) {
  ak__tls_econf *c = econf_alloc(false);
  if (!c)
    return -ENOMEM;
  int rc = econf_common(c, MBEDTLS_SSL_IS_CLIENT, opts->alpn, detail, n);
  if (rc < 0)
    goto fail;
  c->insecure = (opts->flags & AK_TLS_INSECURE_NO_VERIFY) != 0;
  if (c->insecure) {
    mbedtls_ssl_conf_authmode(&c->conf, MBEDTLS_SSL_VERIFY_NONE);
  } else {
    const char *file = opts->ca_file;
    if (!file && !opts->ca_dir)
      file = AK__SYSTEM_CA_FILE;
    int ret;
    if (file && (ret = mbedtls_x509_crt_parse_file(&c->ca, file)) != 0) {
      /* > 0: some certificates of the bundle did not parse; the rest load. */
      if (ret < 0 || c->ca.version == 0) {
        char what[200];
        snprintf(what, sizeof(what), "CA file %s", file);
        put_detail(detail, n, what, ret < 0 ? ret : MBEDTLS_ERR_X509_INVALID_FORMAT);
        rc = AK_ETLSCONFIG;
        goto fail;
      }
    }
    if (opts->ca_dir && (ret = mbedtls_x509_crt_parse_path(&c->ca, opts->ca_dir)) != 0) {
      if (ret < 0 || c->ca.version == 0) {
        char what[200];
        snprintf(what, sizeof(what), "CA directory %s", opts->ca_dir);
        put_detail(detail, n, what, ret < 0 ? ret : MBEDTLS_ERR_X509_INVALID_FORMAT);
        rc = AK_ETLSCONFIG;
        goto fail;
      }
    }
    if (c->ca.version == 0) {
      if (detail && n)
        snprintf(detail, n, "no CA certificate loaded");
      rc = AK_ETLSCONFIG;
      goto fail;
    }
    mbedtls_ssl_conf_authmode(&c->conf, MBEDTLS_SSL_VERIFY_REQUIRED);
    mbedtls_ssl_conf_ca_chain(&c->conf, &c->ca, NULL);
  }
  if (!(opts->flags & AK_TLS_NO_RESUMPTION)) {
    mbedtls_ssl_conf_session_tickets(&c->conf, MBEDTLS_SSL_SESSION_TICKETS_ENABLED);
  } else {
    mbedtls_ssl_conf_session_tickets(&c->conf, MBEDTLS_SSL_SESSION_TICKETS_DISABLED);
  }
  *out = c;
  return 0;
fail:
  mb_econf_free(c);
  return rc;
}

static int mb_econf_server(const ak_tls_server_options *opts, ak__tls_econf **out, char *detail,
                         size_t n) {
  ak__tls_econf *c = econf_alloc(true);
  if (!c)
    return -ENOMEM;
  int rc = econf_common(c, MBEDTLS_SSL_IS_SERVER, opts->alpn, detail, n);
  if (rc < 0)
    goto fail;
  int ret = mbedtls_x509_crt_parse_file(&c->own_cert, opts->cert_file);
  if (ret != 0) {
    char what[200];
    snprintf(what, sizeof(what), "certificate %s", opts->cert_file);
    put_detail(detail, n, what, ret < 0 ? ret : MBEDTLS_ERR_X509_INVALID_FORMAT);
    rc = AK_ETLSCONFIG;
    goto fail;
  }
  ret = mbedtls_pk_parse_keyfile(&c->own_key, opts->key_file, NULL);
  if (ret == 0)
    ret = mbedtls_pk_check_pair(&c->own_cert.pk, &c->own_key);
  if (ret == 0)
    ret = mbedtls_ssl_conf_own_cert(&c->conf, &c->own_cert, &c->own_key);
  if (ret != 0) {
    char what[200];
    snprintf(what, sizeof(what), "key %s", opts->key_file);
    put_detail(detail, n, what, ret);
    rc = AK_ETLSCONFIG;
    goto fail;
  }
  mbedtls_ssl_conf_authmode(&c->conf, MBEDTLS_SSL_VERIFY_NONE); /* no client certificates */
  if (!(opts->flags & AK_TLS_NO_RESUMPTION)) {
    ret = mbedtls_ssl_ticket_setup(&c->tickets, c->conf.f_rng, c->conf.p_rng,
                                   MBEDTLS_CIPHER_AES_256_GCM, 86400);
    if (ret != 0) {
      put_detail(detail, n, "ticket keys", ret);
      rc = AK_ETLSCONFIG;
      goto fail;
    }
    mbedtls_ssl_conf_session_tickets_cb(&c->conf, mbedtls_ssl_ticket_write,
                                        mbedtls_ssl_ticket_parse, &c->tickets);
    mbedtls_ssl_conf_session_cache(&c->conf, &c->id_cache, mbedtls_ssl_cache_get,
                                   mbedtls_ssl_cache_set);
  }
  *out = c;
  return 0;
fail:
  mb_econf_free(c);
  return rc;
}

/* ---- Sessions to resume (the cache itself is session_cache.c) ----------------- */

struct ak__tls_sess {
  mbedtls_ssl_session s; /* a deep copy (its own ticket and peer certificate) */
};

static void mb_sess_free(ak__tls_sess *s) {
  if (!s)
    return;
  mbedtls_ssl_session_free(&s->s);
  ak__free(s);
}

/* mbedtls_ssl_set_session copies s into the handshake. */
static bool mb_eng_offer(ak__tls_eng *e, const ak__tls_sess *s) {
  return mbedtls_ssl_set_session(&e->ssl, &s->s) == 0;
}

/* A copy of the session the handshake made, once, when it is over. */
static ak__tls_sess *mb_eng_take_session(ak__tls_eng *e) {
  if (e->c->server || e->session_taken || e->ssl.state != MBEDTLS_SSL_HANDSHAKE_OVER)
    return NULL;
  e->session_taken = true;
  ak__tls_sess *s = ak__malloc(sizeof(*s));
  if (!s)
    return NULL;
  mbedtls_ssl_session_init(&s->s);
  if (mbedtls_ssl_get_session(&e->ssl, &s->s) != 0) {
    mb_sess_free(s);
    return NULL;
  }
  return s;
}

/* ---- The BIO callbacks: the pump's memory buffers ----------------------------- */

static int bio_send(void *ctx, const unsigned char *buf, size_t len) {
  ak__tls_wire *w = ctx;
  if (w->out_status < 0)
    return MBEDTLS_ERR_NET_SEND_FAILED;
  size_t room = w->out_cap - w->out_len;
  if (room == 0)
    return MBEDTLS_ERR_SSL_WANT_WRITE;
  if (len > room)
    len = room;
  memcpy(w->out + w->out_len, buf, len);
  w->out_len += len;
  return (int)len;
}

static int bio_recv(void *ctx, unsigned char *buf, size_t len) {
  ak__tls_wire *w = ctx;
  size_t have = w->in_end - w->in_start;
  if (have == 0) {
    if (w->in_status == 1)
      return 0; /* end of stream: mbedtls says CONN_EOF */
    if (w->in_status < 0)
      return MBEDTLS_ERR_NET_RECV_FAILED;
    return MBEDTLS_ERR_SSL_WANT_READ;
  }
  if (len > have)
    len = have;
  memcpy(buf, w->in + w->in_start, len);
  w->in_start += len;
  return (int)len;
}

/* ---- Sessions -------------------------------------------------------------- */

static int note_chain(void *arg, mbedtls_x509_crt *crt, int depth, uint32_t *flags);

static int mb_eng_new(ak__tls_econf *c, ak__tls_wire *wire, const char *host,
                      ak__tls_eng **out) {
  if (!c->server && !c->insecure && (!host || !host[0]))
    return AK_ETLSNOHOST; /* never a verifying client without a name (CVE-2025-27809) */
  ak__tls_eng *e = ak__calloc(1, sizeof(*e));
  if (!e)
    return -ENOMEM;
  mbedtls_ssl_init(&e->ssl);
  e->c = c;
  e->wire = wire;
  int ret = mbedtls_ssl_setup(&e->ssl, &c->conf);
  if (ret == 0 && host && host[0]) {
    /* An address literal is checked against the certificate's iPAddress
     * entries (note_chain). mbedtls also sends it as SNI, which RFC 6066
     * does not allow; servers ignore it. */
    if (inet_pton(AF_INET, host, e->ip) == 1)
      e->ip_len = 4;
    else if (inet_pton(AF_INET6, host, e->ip) == 1)
      e->ip_len = 16;
    ret = mbedtls_ssl_set_hostname(&e->ssl, host);
  }
  if (ret != 0) {
    int rc = ret == MBEDTLS_ERR_SSL_ALLOC_FAILED ? -ENOMEM : AK_ETLSCONFIG;
    mbedtls_ssl_free(&e->ssl);
    ak__free(e);
    return rc;
  }
  if (c->fixed_rng)
    c->rng_state = 0x5eed; /* each session replays the same bytes */
  mbedtls_ssl_set_bio(&e->ssl, wire, bio_send, bio_recv, NULL);
  mbedtls_ssl_set_verify(&e->ssl, note_chain, e);
  *out = e;
  return 0;
}

static void mb_eng_free(ak__tls_eng *e) {
  if (!e)
    return;
  mbedtls_ssl_free(&e->ssl);
  ak__free(e);
}

/* Whether crt's subjectAltName extension lists the address ip (iPAddress
 * entries, [7] OCTET STRING). mbedtls 2.28 keeps only DNS names and
 * otherNames of the SAN, so the extension is read here from the raw DER of
 * the v3 extensions; any malformed length ends the search with false. */
static bool san_has_ip(const mbedtls_x509_crt *crt, const unsigned char *ip, size_t ip_len) {
  unsigned char *p = crt->v3_ext.p;
  if (!p)
    return false;
  const unsigned char *end = p + crt->v3_ext.len;
  size_t len;
  if (mbedtls_asn1_get_tag(&p, end, &len, MBEDTLS_ASN1_CONSTRUCTED | MBEDTLS_ASN1_SEQUENCE) != 0)
    return false;
  end = p + len;
  while (p < end) {
    if (mbedtls_asn1_get_tag(&p, end, &len, MBEDTLS_ASN1_CONSTRUCTED | MBEDTLS_ASN1_SEQUENCE) != 0)
      return false;
    const unsigned char *ext_end = p + len;
    size_t oid_len;
    if (mbedtls_asn1_get_tag(&p, ext_end, &oid_len, MBEDTLS_ASN1_OID) != 0)
      return false;
    bool is_san = oid_len == MBEDTLS_OID_SIZE(MBEDTLS_OID_SUBJECT_ALT_NAME) &&
                  memcmp(p, MBEDTLS_OID_SUBJECT_ALT_NAME, oid_len) == 0;
    p += oid_len;
    int critical;
    if (p < ext_end && *p == MBEDTLS_ASN1_BOOLEAN && mbedtls_asn1_get_bool(&p, ext_end, &critical))
      return false;
    if (mbedtls_asn1_get_tag(&p, ext_end, &len, MBEDTLS_ASN1_OCTET_STRING) != 0)
      return false;
    if (is_san) {
      const unsigned char *names_end = p + len;
      if (mbedtls_asn1_get_tag(&p, names_end, &len,
                               MBEDTLS_ASN1_CONSTRUCTED | MBEDTLS_ASN1_SEQUENCE) != 0)
        return false;
      names_end = p + len;
      while (p < names_end) {
        unsigned char tag = *p++;
        if (mbedtls_asn1_get_len(&p, names_end, &len) != 0)
          return false;
        if (tag == (MBEDTLS_ASN1_CONTEXT_SPECIFIC | 7) && len == ip_len && memcmp(p, ip, len) == 0)
          return true;
        p += len;
      }
      return false;
    }
    p = (unsigned char *)ext_end;
  }
  return false;
}

/* Called by mbedtls for each certificate of the chain it built, the leaf
 * last (depth 0), with the name check's verdict already in the leaf's
 * flags. Notes whether the leaf is self-issued (its issuer is its subject),
 * which tells a self-signed certificate from one of an unknown CA when the
 * chain is not trusted. For a host given as an IP address, clears the name
 * mismatch when the certificate lists that address (RFC 6125 iPAddress),
 * which mbedtls 2.28 does not check. */
static int note_chain(void *arg, mbedtls_x509_crt *crt, int depth, uint32_t *flags) {
  ak__tls_eng *e = arg;
  if (depth != 0)
    return 0;
  e->leaf_self_issued = crt->issuer_raw.len == crt->subject_raw.len &&
                        memcmp(crt->issuer_raw.p, crt->subject_raw.p, crt->subject_raw.len) == 0;
  if (e->ip_len && (*flags & MBEDTLS_X509_BADCERT_CN_MISMATCH) && san_has_ip(crt, e->ip, e->ip_len))
    *flags &= ~(uint32_t)MBEDTLS_X509_BADCERT_CN_MISMATCH;
  return 0;
}

/* The AK_ETLS code for the verification flags (the first reason that
 * applies, most fundamental first), with mbedtls's words in the detail. */
static int verify_error(ak__tls_eng *e) {
  uint32_t flags = mbedtls_ssl_get_verify_result(&e->ssl);
  char info[200];
  int n = mbedtls_x509_crt_verify_info(info, sizeof(info), "", flags);
  if (n > 0 && info[n - 1] == '\n')
    info[n - 1] = '\0';
  snprintf(e->detail, sizeof(e->detail), "certificate verification failed: %s", info);
  if (flags & MBEDTLS_X509_BADCERT_NOT_TRUSTED)
    return e->leaf_self_issued ? AK_ETLSSELFSIGNED : AK_ETLSUNKNOWNCA;
  if (flags & MBEDTLS_X509_BADCERT_EXPIRED)
    return AK_ETLSEXPIRED;
  if (flags & MBEDTLS_X509_BADCERT_FUTURE)
    return AK_ETLSNOTYETVALID;
  if (flags & (MBEDTLS_X509_BADCERT_KEY_USAGE | MBEDTLS_X509_BADCERT_EXT_KEY_USAGE |
               MBEDTLS_X509_BADCERT_NS_CERT_TYPE))
    return AK_ETLSKEYUSAGE;
  if (flags & MBEDTLS_X509_BADCERT_CN_MISMATCH)
    return AK_ETLSNAMEMISMATCH;
  return AK_ETLSBADCERT;
}

/* mbedtls's return (< 0) as the pump's outcome, with the detail set. */
static int map_error(ak__tls_eng *e, int ret, const char *what) {
  switch (ret) {
  case MBEDTLS_ERR_SSL_WANT_READ:
    return AK__TLS_WANT_READ;
  case MBEDTLS_ERR_SSL_WANT_WRITE:
    return AK__TLS_WANT_WRITE;
  default:
    break;
  }
  put_detail(e->detail, sizeof(e->detail), what, ret);
  switch (ret) {
  case MBEDTLS_ERR_X509_CERT_VERIFY_FAILED:
    return verify_error(e);
  case MBEDTLS_ERR_SSL_BAD_HS_CERTIFICATE: {
    /* A key usage that forbids serving TLS is found before the chain is
     * verified, and reported this way with the flag set. */
    uint32_t flags = mbedtls_ssl_get_verify_result(&e->ssl);
    return flags != 0 && flags != UINT32_MAX ? verify_error(e) : AK_ETLSPROTOCOL;
  }
  case MBEDTLS_ERR_NET_RECV_FAILED:
    return e->wire->in_status < 0 ? e->wire->in_status : -EIO;
  case MBEDTLS_ERR_NET_SEND_FAILED:
    return e->wire->out_status < 0 ? e->wire->out_status : -EIO;
  case MBEDTLS_ERR_SSL_CONN_EOF:
    snprintf(e->detail, sizeof(e->detail), "%s: the peer closed the connection without "
             "close_notify", what);
    return AK_ETLSTRUNCATED;
  case MBEDTLS_ERR_SSL_ALLOC_FAILED:
    return -ENOMEM;
  case MBEDTLS_ERR_SSL_FATAL_ALERT_MESSAGE:
  case MBEDTLS_ERR_SSL_NO_CIPHER_CHOSEN:
  case MBEDTLS_ERR_SSL_NO_USABLE_CIPHERSUITE:
  case MBEDTLS_ERR_SSL_BAD_HS_PROTOCOL_VERSION:
  case MBEDTLS_ERR_SSL_PEER_VERIFY_FAILED:
  case MBEDTLS_ERR_SSL_PK_TYPE_MISMATCH:
    return AK_ETLSHANDSHAKE;
  default:
    return AK_ETLSPROTOCOL;
  }
}

static int mb_eng_handshake(ak__tls_eng *e) {
  /* Stepped by hand so the resume flag can be read before mbedtls frees
   * its handshake state (2.28 has no call that reports it afterwards). */
  while (e->ssl.state != MBEDTLS_SSL_HANDSHAKE_OVER) {
    if (e->ssl.handshake)
      e->resumed = e->ssl.handshake->resume != 0;
    int ret = mbedtls_ssl_handshake_step(&e->ssl);
    if (ret != 0)
      return map_error(e, ret, "handshake");
  }
  return 0;
}

static int64_t mb_eng_read(ak__tls_eng *e, void *buf, size_t len) {
  if (len > INT32_MAX)
    len = INT32_MAX;
  int ret = mbedtls_ssl_read(&e->ssl, buf, len);
  if (ret > 0)
    return ret;
  if (ret == MBEDTLS_ERR_SSL_PEER_CLOSE_NOTIFY)
    return 0; /* the clean end */
  /* mbedtls 2.28 answers 0 when the transport ended without close_notify
   * (it maps CONN_EOF to 0): that is a truncation, never a clean end. */
  return map_error(e, ret == 0 ? MBEDTLS_ERR_SSL_CONN_EOF : ret, "read");
}

static int64_t mb_eng_write(ak__tls_eng *e, const void *buf, size_t len) {
  if (len > INT32_MAX)
    len = INT32_MAX;
  int ret = mbedtls_ssl_write(&e->ssl, buf, len);
  if (ret > 0)
    return ret;
  if (ret == 0)
    return AK__TLS_WANT_WRITE; /* not documented to happen; treat as "again" */
  return map_error(e, ret, "write");
}

static int mb_eng_close_notify(ak__tls_eng *e) {
  int ret = mbedtls_ssl_close_notify(&e->ssl);
  return ret == 0 ? 0 : map_error(e, ret, "close_notify");
}

static bool mb_eng_pending(ak__tls_eng *e) {
  return mbedtls_ssl_get_bytes_avail(&e->ssl) > 0 || mbedtls_ssl_check_pending(&e->ssl);
}

static const char *mb_eng_detail(const ak__tls_eng *e) { return e->detail; }

static bool mb_eng_resumed(const ak__tls_eng *e) { return e->resumed; }

static void mb_eng_names(const ak__tls_eng *e, const char **version, const char **suite,
                       const char **alpn) {
  bool done = e->ssl.state == MBEDTLS_SSL_HANDSHAKE_OVER;
  *version = done ? mbedtls_ssl_get_version(&e->ssl) : NULL;
  *suite = done ? mbedtls_ssl_get_ciphersuite(&e->ssl) : NULL;
  *alpn = done ? mbedtls_ssl_get_alpn_protocol(&e->ssl) : NULL;
}

const ak__tls_engine_ops ak__tls_mbedtls_ops = {
    .name = "mbedtls",
    .econf_client = mb_econf_client,
    .econf_server = mb_econf_server,
    .econf_free = mb_econf_free,
    .eng_new = mb_eng_new,
    .eng_free = mb_eng_free,
    .eng_offer = mb_eng_offer,
    .eng_take_session = mb_eng_take_session,
    .sess_free = mb_sess_free,
    .handshake = mb_eng_handshake,
    .read = mb_eng_read,
    .write = mb_eng_write,
    .close_notify = mb_eng_close_notify,
    .pending = mb_eng_pending,
    .detail = mb_eng_detail,
    .resumed = mb_eng_resumed,
    .names = mb_eng_names,
};
