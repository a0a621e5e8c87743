/* tls/openssl.c: the OpenSSL 3 engine behind tls/engine.h (the default:
 * TLS 1.3 and 1.2). It owns everything OpenSSL: the SSL_CTX of a config (CA
 * store, certificate and key, ALPN, resumption settings), the sessions
 * and the saved sessions to resume, a BIO method whose read and write work
 * on the pump's memory buffers (no socket in OpenSSL: the ring moves the
 * bytes), and the mapping
 * of OpenSSL's errors and verification results to AK_ETLS codes. It does
 * not touch sockets, futures or the loop (pump.c does).
 *
 * Why this engine is the default: OpenSSL's AES-GCM runs on AES-NI and
 * VPCLMULQDQ at several GB/s per core, mbedtls 2.28's at about 0.25 GB/s
 * (docs/architecture.md has the figures). Suites: AES-GCM first, then
 * ChaCha20-Poly1305; TLS 1.2 only with ECDHE and an AEAD; renegotiation off.
 *
 * Verification: the peer's chain against the CA store (the system bundle
 * unless a CA file or directory is given), the host name with SSL_set1_host
 * (no partial wildcards) or, for an address literal, the certificate's
 * iPAddress entries; SNI is sent for DNS names only (RFC 6066).
 *
 * Resumption: the client's cache is session_cache.c's; this file hands it
 * sessions and takes them back. TLS 1.3 sessions arrive after the
 * handshake (NewSessionTicket), so they are caught by the new-session
 * callback whenever OpenSSL sees one; the newest waits in the engine
 * session until the pump takes it (eng_take_session). Both ways are copies:
 * OpenSSL marks the session an SSL ends with as not resumable when the SSL
 * is freed without close_notify, and that must not spoil the cache's.
 */
#include <arpa/inet.h>
#include <dirent.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "tls/direct_rx.h"
#include "tls/engine.h"

#define AK__SYSTEM_CA_FILE "/etc/ssl/certs/ca-certificates.crt"
#define AK__DETAIL_MAX 256

/* TLS 1.2: ECDHE with AES-GCM (AES-NI) first, ChaCha20-Poly1305 after. */
static const char ak__tls12_suites[] =
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305";
/* TLS 1.3: the same order. */
static const char ak__tls13_suites[] =
    "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256";

/* ---- Configs ------------------------------------------------------------------ */

struct ak__tls_econf {
  SSL_CTX *ctx;
  bool server;
  bool insecure;
  unsigned char alpn_wire[256]; /* ALPN as a length-prefixed list */
  size_t alpn_len;              /* 0: none */
  bool direct;                  /* client: TLS 1.3 records read by direct_rx.c
                                   once the handshake is over (unless
                                   AK_TLS_DIRECT_READ=0) */
};

struct ak__tls_eng {
  SSL *ssl;
  ak__tls_econf *c;
  ak__tls_wire *wire;
  SSL_SESSION *fresh; /* the newest session to keep, not yet taken (ours) */
  bool hs_done;       /* the handshake succeeded */
  char suite[96];     /* the suite's name, '-' between words */
  char alpn[256];     /* the agreed protocol, NUL-terminated */
  char detail[AK__DETAIL_MAX];
  /* The direct read path (direct_rx.c): the server's application traffic
   * secret from the key log callback, and the records OpenSSL has read,
   * counted in wire_read by their headers (without read-ahead OpenSSL
   * reads a header, then exactly its body), so the switch happens between
   * two records with the right sequence number. */
  unsigned char srv_secret[EVP_MAX_MD_SIZE];
  size_t srv_secret_len;
  unsigned char hdr[5];
  size_t hdr_have;       /* header bytes of the record being read */
  size_t body_left;      /* its body bytes not yet read */
  uint64_t records;      /* whole records OpenSSL has read */
  uint64_t records_at_hs; /* ... when the handshake ended */
  bool direct_off;       /* never switch (not TLS 1.3, a suite not known,
                            a boundary lost) */
  ak__tls_drx *drx;      /* the switch is made: reads go there */
};

/* "<what><name>: <the words of the oldest error OpenSSL queued on this
 * thread>" into detail; name may be NULL. Formatted straight into detail,
 * so a long file name is cut only by the caller's buffer. */
static void put_detail_named(char *detail, size_t n, const char *what, const char *name) {
  if (!detail || n == 0)
    return;
  unsigned long code = ERR_peek_error();
  char msg[200] = "";
  if (code)
    ERR_error_string_n(code, msg, sizeof(msg));
  snprintf(detail, n, "%s%s%s%s", what, name ? name : "", msg[0] ? ": " : "", msg);
  ERR_clear_error();
}

static void put_detail(char *detail, size_t n, const char *what) {
  put_detail_named(detail, n, what, NULL);
}

static void os_econf_free(ak__tls_econf *c) {
  if (!c)
    return;
  SSL_CTX_free(c->ctx);
  ak__free(c);
}

/* ALPN "proto" as OpenSSL's wire list (one length byte, then the name). */
static int set_alpn(ak__tls_econf *c, const char *alpn, char *detail, size_t n) {
  if (!alpn)
    alpn = "http/1.1";
  size_t len = strlen(alpn);
  if (len == 0)
    return 0;
  if (len > 255) {
    snprintf(detail, n, "ALPN protocol longer than 255 bytes");
    return AK_ETLSCONFIG;
  }
  c->alpn_wire[0] = (unsigned char)len;
  memcpy(c->alpn_wire + 1, alpn, len);
  c->alpn_len = len + 1;
  return 0;
}

/* What both sides share: versions, suites, modes. */
static ak__tls_econf *econf_new(bool server, const char *alpn, char *detail, size_t n, int *rc) {
  ak__tls_econf *c = ak__calloc(1, sizeof(*c));
  if (!c) {
    *rc = -ENOMEM;
    return NULL;
  }
  c->server = server;
  ERR_clear_error();
  c->ctx = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());
  if (!c->ctx) {
    put_detail(detail, n, "SSL_CTX_new");
    *rc = AK_ETLSCONFIG;
    goto fail;
  }
  if (!SSL_CTX_set_min_proto_version(c->ctx, TLS1_2_VERSION) ||
      !SSL_CTX_set_cipher_list(c->ctx, ak__tls12_suites) ||
      !SSL_CTX_set_ciphersuites(c->ctx, ak__tls13_suites)) {
    put_detail(detail, n, "protocol settings");
    *rc = AK_ETLSCONFIG;
    goto fail;
  }
  SSL_CTX_set_options(c->ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION |
                                  (server ? SSL_OP_CIPHER_SERVER_PREFERENCE : 0));
  /* A write returns after each record, so the pump sees progress record by
   * record and a cancelled write stops at a record's end. */
  SSL_CTX_set_mode(c->ctx, SSL_MODE_ENABLE_PARTIAL_WRITE);
  *rc = set_alpn(c, alpn, detail, n);
  if (*rc < 0)
    goto fail;
  return c;
fail:
  os_econf_free(c);
  return NULL;
}

/* Adds every certificate of the PEM file path to store; counts them. */
static int load_pem_certs(X509_STORE *store, const char *path, unsigned *count, char *detail,
                          size_t n) {
  BIO *b = BIO_new_file(path, "r");
  if (!b) {
    put_detail_named(detail, n, "CA file ", path);
    return AK_ETLSCONFIG;
  }
  X509 *x;
  while ((x = PEM_read_bio_X509_AUX(b, NULL, NULL, NULL)) != NULL) {
    if (X509_STORE_add_cert(store, x))
      (*count)++;
    X509_free(x);
  }
  ERR_clear_error(); /* the end of the file reads as "no start line" */
  BIO_free(b);
  return 0;
}

/* Every file in dir (its certificates), as mbedtls's parse_path does: no
 * hashed names needed (OpenSSL's own directory lookup wants c_rehash). */
static int load_pem_dir(X509_STORE *store, const char *dir, unsigned *count, char *detail,
                        size_t n) {
  DIR *d = opendir(dir);
  if (!d) {
    snprintf(detail, n, "CA directory %s: %s", dir, strerror(errno));
    return AK_ETLSCONFIG;
  }
  struct dirent *de;
  while ((de = readdir(d)) != NULL) {
    char path[4096];
    struct stat st;
    if (snprintf(path, sizeof(path), "%s/%s", dir, de->d_name) >= (int)sizeof(path))
      continue;
    if (stat(path, &st) != 0 || !S_ISREG(st.st_mode))
      continue;
    (void)load_pem_certs(store, path, count, NULL, 0); /* unreadable files are skipped */
  }
  closedir(d);
  return 0;
}

static int new_session_cb(SSL *ssl, SSL_SESSION *sess);

/* The key log line "SERVER_TRAFFIC_SECRET_0 <client random> <secret>"
 * carries what the direct read path needs; OpenSSL 3.0 has no other way to
 * it. The other lines are ignored, nothing is written anywhere. */
static void keylog_cb(const SSL *ssl, const char *line) {
  static const char tag[] = "SERVER_TRAFFIC_SECRET_0 ";
  ak__tls_eng *e = SSL_get_app_data(ssl);
  if (!e || strncmp(line, tag, sizeof(tag) - 1) != 0)
    return;
  const char *hex = strrchr(line, ' ');
  size_t len = hex ? strlen(hex + 1) : 0;
  if (len == 0 || len % 2 || len / 2 > sizeof(e->srv_secret))
    return;
  for (size_t i = 0; i < len / 2; i++) {
    int hi = OPENSSL_hexchar2int((unsigned char)hex[1 + 2 * i]);
    int lo = OPENSSL_hexchar2int((unsigned char)hex[2 + 2 * i]);
    if (hi < 0 || lo < 0)
      return;
    e->srv_secret[i] = (unsigned char)(hi << 4 | lo);
  }
  e->srv_secret_len = len / 2;
}

static int os_econf_client(const ak_tls_client_options *opts, ak__tls_econf **out, char *detail,
                           size_t n) {
  int rc;
  ak__tls_econf *c = econf_new(false, opts->alpn, detail, n, &rc);
  if (!c)
    return rc;
  if (c->alpn_len && SSL_CTX_set_alpn_protos(c->ctx, c->alpn_wire, (unsigned)c->alpn_len) != 0) {
    put_detail(detail, n, "ALPN");
    rc = AK_ETLSCONFIG;
    goto fail;
  }
  c->insecure = (opts->flags & AK_TLS_INSECURE_NO_VERIFY) != 0;
  const char *direct = getenv("AK_TLS_DIRECT_READ");
  c->direct = !direct || strcmp(direct, "0") != 0;
  if (c->direct)
    SSL_CTX_set_keylog_callback(c->ctx, keylog_cb);
  if (c->insecure) {
    SSL_CTX_set_verify(c->ctx, SSL_VERIFY_NONE, NULL);
  } else {
    X509_STORE *store = SSL_CTX_get_cert_store(c->ctx);
    const char *file = opts->ca_file;
    if (!file && !opts->ca_dir)
      file = AK__SYSTEM_CA_FILE;
    unsigned count = 0;
    if (file && (rc = load_pem_certs(store, file, &count, detail, n)) < 0)
      goto fail;
    if (opts->ca_dir && (rc = load_pem_dir(store, opts->ca_dir, &count, detail, n)) < 0)
      goto fail;
    if (count == 0) {
      snprintf(detail, n, "no CA certificate loaded from %s", file ? file : opts->ca_dir);
      rc = AK_ETLSCONFIG;
      goto fail;
    }
    SSL_CTX_set_verify(c->ctx, SSL_VERIFY_PEER, NULL);
  }
  if (!(opts->flags & AK_TLS_NO_RESUMPTION)) {
    /* Sessions go to our cache (session_cache.c, keyed by host:port), not
     * OpenSSL's. */
    SSL_CTX_set_session_cache_mode(c->ctx,
                                   SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
    SSL_CTX_sess_set_new_cb(c->ctx, new_session_cb);
  } else {
    SSL_CTX_set_session_cache_mode(c->ctx, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_options(c->ctx, SSL_OP_NO_TICKET);
  }
  *out = c;
  return 0;
fail:
  os_econf_free(c);
  return rc;
}

/* The server's ALPN choice: its one protocol, or a fatal alert
 * (no_application_protocol) when the client offers others only. */
static int alpn_select(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                       const unsigned char *in, unsigned inlen, void *arg) {
  (void)ssl;
  ak__tls_econf *c = arg;
  unsigned char *sel = NULL;
  if (SSL_select_next_proto(&sel, outlen, c->alpn_wire, (unsigned)c->alpn_len, in, inlen) !=
      OPENSSL_NPN_NEGOTIATED)
    return SSL_TLSEXT_ERR_ALERT_FATAL;
  *out = sel;
  return SSL_TLSEXT_ERR_OK;
}

static int os_econf_server(const ak_tls_server_options *opts, ak__tls_econf **out, char *detail,
                           size_t n) {
  int rc;
  ak__tls_econf *c = econf_new(true, opts->alpn, detail, n, &rc);
  if (!c)
    return rc;
  if (SSL_CTX_use_certificate_chain_file(c->ctx, opts->cert_file) != 1) {
    put_detail_named(detail, n, "certificate ", opts->cert_file);
    rc = AK_ETLSCONFIG;
    goto fail;
  }
  if (SSL_CTX_use_PrivateKey_file(c->ctx, opts->key_file, SSL_FILETYPE_PEM) != 1 ||
      SSL_CTX_check_private_key(c->ctx) != 1) {
    put_detail_named(detail, n, "key ", opts->key_file);
    rc = AK_ETLSCONFIG;
    goto fail;
  }
  if (c->alpn_len)
    SSL_CTX_set_alpn_select_cb(c->ctx, alpn_select, c);
  SSL_CTX_set_verify(c->ctx, SSL_VERIFY_NONE, NULL); /* no client certificates */
  static const unsigned char sid_ctx[] = "asynckit";
  SSL_CTX_set_session_id_context(c->ctx, sid_ctx, sizeof(sid_ctx) - 1);
  if (opts->flags & AK_TLS_NO_RESUMPTION) {
    SSL_CTX_set_session_cache_mode(c->ctx, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_options(c->ctx, SSL_OP_NO_TICKET);
    SSL_CTX_set_num_tickets(c->ctx, 0);
  }
  /* Else OpenSSL's defaults: tickets (keys made with the SSL_CTX) and a
   * session-id cache. */
  *out = c;
  return 0;
fail:
  os_econf_free(c);
  return rc;
}

/* ---- Sessions to resume (the cache itself is session_cache.c) ------------------- */

/* An ak__tls_sess is an SSL_SESSION (one reference). */
static SSL_SESSION *as_ssl_session(const ak__tls_sess *s) { return (SSL_SESSION *)s; }

static void os_sess_free(ak__tls_sess *s) { SSL_SESSION_free(as_ssl_session(s)); }

/* Offers a copy of s (see the top of the file). */
static bool os_eng_offer(ak__tls_eng *e, const ak__tls_sess *s) {
  SSL_SESSION *copy = SSL_SESSION_dup(as_ssl_session(s));
  if (!copy)
    return false;
  int ok = SSL_set_session(e->ssl, copy); /* takes its own reference */
  SSL_SESSION_free(copy);
  return ok == 1;
}

static ak__tls_sess *os_eng_take_session(ak__tls_eng *e) {
  SSL_SESSION *sess = e->fresh;
  e->fresh = NULL;
  return (ak__tls_sess *)sess;
}

/* OpenSSL made a session to keep (after a TLS 1.2 handshake, or at each
 * TLS 1.3 NewSessionTicket): a copy of it replaces the one not yet taken.
 * Returns 0: OpenSSL keeps its reference. */
static int new_session_cb(SSL *ssl, SSL_SESSION *orig) {
  ak__tls_eng *e = SSL_get_app_data(ssl);
  if (!e || !SSL_SESSION_is_resumable(orig))
    return 0;
  SSL_SESSION *sess = SSL_SESSION_dup(orig);
  if (!sess)
    return 0;
  SSL_SESSION_free(e->fresh);
  e->fresh = sess;
  return 0;
}

/* ---- The BIO: the pump's memory buffers ------------------------------------------- */

static int wire_write(BIO *b, const char *buf, int len) {
  ak__tls_wire *w = ((ak__tls_eng *)BIO_get_data(b))->wire;
  BIO_clear_retry_flags(b);
  if (w->out_status < 0)
    return -1; /* the socket refused: no retry */
  size_t room = w->out_cap - w->out_len;
  if (room == 0) {
    BIO_set_retry_write(b);
    return -1;
  }
  size_t n = (size_t)len < room ? (size_t)len : room;
  memcpy(w->out + w->out_len, buf, n);
  w->out_len += n;
  return (int)n;
}

/* Follows the record boundaries in the bytes OpenSSL reads (count_records'
 * caller: wire_read). */
static void count_records(ak__tls_eng *e, const unsigned char *p, size_t n) {
  while (n > 0) {
    if (e->hdr_have < sizeof(e->hdr)) {
      e->hdr[e->hdr_have++] = *p++;
      n--;
      if (e->hdr_have == sizeof(e->hdr)) {
        e->body_left = (size_t)e->hdr[3] << 8 | e->hdr[4];
        if (e->body_left == 0) {
          e->hdr_have = 0;
          e->records++;
        }
      }
      continue;
    }
    size_t k = n < e->body_left ? n : e->body_left;
    e->body_left -= k;
    p += k;
    n -= k;
    if (e->body_left == 0) {
      e->hdr_have = 0;
      e->records++;
    }
  }
}

static int wire_read(BIO *b, char *buf, int len) {
  ak__tls_eng *e = BIO_get_data(b);
  ak__tls_wire *w = e->wire;
  BIO_clear_retry_flags(b);
  if (e->drx) {
    BIO_set_retry_read(b); /* the records are direct_rx.c's now */
    return -1;
  }
  size_t have = w->in_end - w->in_start;
  if (have == 0) {
    if (w->in_status == 1)
      return 0; /* end of stream: OpenSSL says "unexpected eof" unless close_notify came */
    if (w->in_status < 0)
      return -1; /* the recv failed: no retry */
    BIO_set_retry_read(b);
    return -1;
  }
  size_t n = (size_t)len < have ? (size_t)len : have;
  memcpy(buf, w->in + w->in_start, n);
  if (!e->direct_off)
    count_records(e, w->in + w->in_start, n);
  w->in_start += n;
  return (int)n;
}

static long wire_ctrl(BIO *b, int cmd, long num, void *ptr) {
  (void)b;
  (void)num;
  (void)ptr;
  return cmd == BIO_CTRL_FLUSH ? 1 : 0; /* the ring sends; nothing to flush */
}

static int wire_create(BIO *b) {
  BIO_set_init(b, 1);
  return 1;
}

static BIO_METHOD *wire_method;
static pthread_once_t wire_once = PTHREAD_ONCE_INIT;

static void wire_method_init(void) {
  BIO_METHOD *m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "asynckit wire");
  if (m && BIO_meth_set_write(m, wire_write) && BIO_meth_set_read(m, wire_read) &&
      BIO_meth_set_ctrl(m, wire_ctrl) && BIO_meth_set_create(m, wire_create))
    wire_method = m; /* lives as long as the process (one per process) */
  else
    BIO_meth_free(m);
}

/* ---- Sessions ------------------------------------------------------------------------- */

static int os_eng_new(ak__tls_econf *c, ak__tls_wire *wire, const char *host,
                      ak__tls_eng **out) {
  if (!c->server && !c->insecure && (!host || !host[0]))
    return AK_ETLSNOHOST; /* never a verifying client without a name */
  pthread_once(&wire_once, wire_method_init);
  if (!wire_method)
    return -ENOMEM;
  ak__tls_eng *e = ak__calloc(1, sizeof(*e));
  if (!e)
    return -ENOMEM;
  e->c = c;
  e->wire = wire;
  int rc = -ENOMEM;
  ERR_clear_error();
  e->ssl = SSL_new(c->ctx);
  BIO *bio = e->ssl ? BIO_new(wire_method) : NULL;
  if (!bio)
    goto fail;
  BIO_set_data(bio, e);
  SSL_set_bio(e->ssl, bio, bio); /* the SSL owns the one BIO */
  SSL_set_app_data(e->ssl, e);
  if (c->server) {
    SSL_set_accept_state(e->ssl);
  } else {
    SSL_set_connect_state(e->ssl);
    if (host && host[0]) {
      unsigned char addr[16];
      bool literal = inet_pton(AF_INET, host, addr) == 1 || inet_pton(AF_INET6, host, addr) == 1;
      bool ok;
      if (literal) {
        /* Checked against the certificate's iPAddress entries; no SNI. */
        ok = X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(e->ssl), host) == 1;
      } else {
        SSL_set_hostflags(e->ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
        ok = SSL_set_tlsext_host_name(e->ssl, host) == 1 && SSL_set1_host(e->ssl, host) == 1;
      }
      if (!ok) {
        put_detail(e->detail, sizeof(e->detail), "host name");
        rc = AK_ETLSCONFIG;
        goto fail;
      }
    }
  }
  *out = e;
  return 0;
fail:
  SSL_free(e->ssl);
  ak__free(e);
  return rc;
}

static void os_eng_free(ak__tls_eng *e) {
  if (!e)
    return;
  SSL_free(e->ssl);
  SSL_SESSION_free(e->fresh);
  ak__tls_drx_free(e->drx);
  OPENSSL_cleanse(e->srv_secret, sizeof(e->srv_secret));
  ak__free(e);
}

/* The AK_ETLS code for a failed verification, OpenSSL's words in the detail. */
static int verify_error(ak__tls_eng *e, long v) {
  snprintf(e->detail, sizeof(e->detail), "certificate verification failed: %s (%ld)",
           X509_verify_cert_error_string(v), v);
  switch (v) {
  case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
    return AK_ETLSSELFSIGNED;
  case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
  case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
  case X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE:
  case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
  case X509_V_ERR_CERT_UNTRUSTED:
    return AK_ETLSUNKNOWNCA;
  case X509_V_ERR_CERT_HAS_EXPIRED:
    return AK_ETLSEXPIRED;
  case X509_V_ERR_CERT_NOT_YET_VALID:
    return AK_ETLSNOTYETVALID;
  case X509_V_ERR_HOSTNAME_MISMATCH:
  case X509_V_ERR_IP_ADDRESS_MISMATCH:
    return AK_ETLSNAMEMISMATCH;
  case X509_V_ERR_INVALID_PURPOSE:
  case X509_V_ERR_KEYUSAGE_NO_CERTSIGN:
  case X509_V_ERR_KEYUSAGE_NO_DIGITAL_SIGNATURE:
    return AK_ETLSKEYUSAGE;
  default:
    return AK_ETLSBADCERT;
  }
}

/* Whether reason (an SSL library reason) says the two sides could not agree. */
static bool is_disagreement(int reason) {
  switch (reason) {
  case SSL_R_NO_SHARED_CIPHER:
  case SSL_R_NO_CIPHERS_AVAILABLE:
  case SSL_R_NO_PROTOCOLS_AVAILABLE:
  case SSL_R_UNSUPPORTED_PROTOCOL:
  case SSL_R_VERSION_TOO_LOW:
  case SSL_R_NO_APPLICATION_PROTOCOL:
  case SSL_R_NO_SUITABLE_KEY_SHARE:
  case SSL_R_NO_SHARED_SIGNATURE_ALGORITHMS:
  case SSL_R_WRONG_CIPHER_RETURNED:
    return true;
  default:
    return reason >= SSL_AD_REASON_OFFSET; /* an alert from the peer */
  }
}

/* An SSL call's failure (ret <= 0) as the pump's outcome, detail set.
 * SSL_ERROR_ZERO_RETURN (close_notify) comes back as 0. */
static int map_error(ak__tls_eng *e, int ret, const char *what) {
  int err = SSL_get_error(e->ssl, ret);
  switch (err) {
  case SSL_ERROR_WANT_READ:
    return AK__TLS_WANT_READ;
  case SSL_ERROR_WANT_WRITE:
    return AK__TLS_WANT_WRITE;
  case SSL_ERROR_ZERO_RETURN:
    return 0;
  default:
    break;
  }
  unsigned long code = ERR_peek_error();
  int reason = ERR_GET_REASON(code);
  put_detail(e->detail, sizeof(e->detail), what);
  if (e->wire->in_status < 0)
    return e->wire->in_status; /* the socket's -errno */
  if (e->wire->out_status < 0)
    return e->wire->out_status;
  long v = SSL_get_verify_result(e->ssl);
  if (!e->hs_done && v != X509_V_OK && !e->c->server && !e->c->insecure)
    return verify_error(e, v);
  if (reason == ERR_R_MALLOC_FAILURE)
    return -ENOMEM;
  if (err == SSL_ERROR_SYSCALL || reason == SSL_R_UNEXPECTED_EOF_WHILE_READING) {
    /* SYSCALL with nothing queued: the BIO ended (no socket error). */
    snprintf(e->detail, sizeof(e->detail),
             "%s: the peer closed the connection without close_notify", what);
    return AK_ETLSTRUNCATED;
  }
  if (is_disagreement(reason))
    return AK_ETLSHANDSHAKE;
  return AK_ETLSPROTOCOL;
}

static int os_eng_handshake(ak__tls_eng *e) {
  ERR_clear_error();
  int ret = SSL_do_handshake(e->ssl);
  if (ret == 1) {
    e->hs_done = true;
    e->records_at_hs = e->records;
    if (e->c->server || !e->c->direct || e->hdr_have || SSL_version(e->ssl) != TLS1_3_VERSION)
      e->direct_off = true;
    return 0;
  }
  int r = map_error(e, ret, "handshake");
  return r == 0 ? AK_ETLSPROTOCOL : r; /* close_notify mid-handshake */
}

/* After OpenSSL has handed out application data: between two records,
 * nothing buffered in OpenSSL, the server's secret known, hand the next
 * records to direct_rx.c. Waiting for the first application data lets
 * OpenSSL take the tickets a server sends right after the handshake. */
static void maybe_switch(ak__tls_eng *e) {
  if (e->direct_off || e->hdr_have || SSL_pending(e->ssl) > 0 || SSL_has_pending(e->ssl))
    return;
  const SSL_CIPHER *cipher = SSL_get_current_cipher(e->ssl);
  const char *suite = cipher ? SSL_CIPHER_standard_name(cipher) : NULL;
  e->direct_off = true; /* one try */
  if (!suite || e->srv_secret_len == 0)
    return;
  (void)ak__tls_drx_new(suite, e->srv_secret, e->srv_secret_len, e->records - e->records_at_hs,
                        &e->drx); /* else OpenSSL goes on reading */
  OPENSSL_cleanse(e->srv_secret, sizeof(e->srv_secret));
}

static int64_t direct_read(ak__tls_eng *e, void *buf, size_t len) {
  bool update_asked = false;
  int64_t r = ak__tls_drx_read(e->drx, e->wire, buf, len, &update_asked, e->detail,
                               sizeof(e->detail));
  if (update_asked) {
    /* The peer's KeyUpdate asked for ours: OpenSSL keeps the sending side,
     * so it makes and queues the message (the pump sends it). */
    ERR_clear_error();
    if (SSL_key_update(e->ssl, SSL_KEY_UPDATE_NOT_REQUESTED) == 1)
      (void)SSL_do_handshake(e->ssl);
    ERR_clear_error();
  }
  return r;
}

static int64_t os_eng_read(ak__tls_eng *e, void *buf, size_t len) {
  if (e->drx)
    return direct_read(e, buf, len);
  ERR_clear_error();
  size_t n = 0;
  int ret = SSL_read_ex(e->ssl, buf, len, &n);
  if (ret == 1) {
    maybe_switch(e);
    return (int64_t)n;
  }
  return map_error(e, ret, "read"); /* 0: close_notify, the clean end */
}

static int64_t os_eng_write(ak__tls_eng *e, const void *buf, size_t len) {
  ERR_clear_error();
  size_t n = 0;
  int ret = SSL_write_ex(e->ssl, buf, len, &n);
  if (ret == 1)
    return (int64_t)n;
  int r = map_error(e, ret, "write");
  return r == 0 ? AK_ETLSCLOSED : r;
}

static int os_eng_close_notify(ak__tls_eng *e) {
  ERR_clear_error();
  int ret = SSL_shutdown(e->ssl);
  if (ret >= 0)
    return 0; /* 0: ours sent, theirs not yet seen; 1: both */
  return map_error(e, ret, "close_notify");
}

static bool os_eng_pending(ak__tls_eng *e) {
  if (e->drx)
    return ak__tls_drx_pending(e->drx);
  return SSL_pending(e->ssl) > 0 || SSL_has_pending(e->ssl);
}

static uint64_t os_eng_direct_records(const ak__tls_eng *e) { return ak__tls_drx_records(e->drx); }

static const char *os_eng_detail(const ak__tls_eng *e) { return e->detail; }

static bool os_eng_resumed(const ak__tls_eng *e) {
  return e->hs_done && SSL_session_reused(e->ssl) == 1;
}

static void os_eng_names(const ak__tls_eng *e, const char **version, const char **suite,
                         const char **alpn) {
  *version = *suite = *alpn = NULL;
  if (!e->hs_done)
    return;
  ak__tls_eng *m = (ak__tls_eng *)e; /* the names are filled on first ask */
  *version = SSL_get_version(e->ssl);
  const SSL_CIPHER *cipher = SSL_get_current_cipher(e->ssl);
  const char *name = cipher ? SSL_CIPHER_standard_name(cipher) : NULL;
  if (name) {
    size_t i = 0;
    for (; name[i] && i + 1 < sizeof(m->suite); i++)
      m->suite[i] = name[i] == '_' ? '-' : name[i];
    m->suite[i] = '\0';
    *suite = m->suite;
  }
  const unsigned char *proto = NULL;
  unsigned proto_len = 0;
  SSL_get0_alpn_selected(e->ssl, &proto, &proto_len);
  if (proto && proto_len > 0 && proto_len < sizeof(m->alpn)) {
    memcpy(m->alpn, proto, proto_len);
    m->alpn[proto_len] = '\0';
    *alpn = m->alpn;
  }
}

const ak__tls_engine_ops ak__tls_openssl_ops = {
    .name = "openssl",
    .econf_client = os_econf_client,
    .econf_server = os_econf_server,
    .econf_free = os_econf_free,
    .eng_new = os_eng_new,
    .eng_free = os_eng_free,
    .eng_offer = os_eng_offer,
    .eng_take_session = os_eng_take_session,
    .sess_free = os_sess_free,
    .handshake = os_eng_handshake,
    .read = os_eng_read,
    .write = os_eng_write,
    .close_notify = os_eng_close_notify,
    .pending = os_eng_pending,
    .detail = os_eng_detail,
    .resumed = os_eng_resumed,
    .names = os_eng_names,
    .direct_records = os_eng_direct_records,
};
