/* test_tls_direct.c: the OpenSSL engine's direct read path (src/tls/direct_rx.c): a client
 * session reading TLS 1.3 records decrypted straight from the receive buffer, against a
 * plain OpenSSL server on a thread that can do what asynckit's server does not (records of
 * any size, a KeyUpdate, a late ticket, a forged record, an end without close_notify).
 * Checks the bytes, the end of the stream and every error from the caller's side, and that
 * the path is taken (ak_tls_stats.direct_records) only where it should be. */
#define _GNU_SOURCE
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/ssl.h>

#include <asynckit.h>

#define SEC INT64_C(1000000000)

static char certs[256];
static ak_loop *loop;

static const char *cert(const char *name) {
  static char paths[4][320];
  static unsigned next;
  char *p = paths[next++ % 4];
  snprintf(p, sizeof(paths[0]), "%s/%s", certs, name);
  return p;
}

static int64_t get_release(ak_future *f) {
  assert_non_null(f);
  assert_int_equal(ak_future_wait(f, 20 * SEC), 0);
  int64_t r = ak_future_result(f);
  ak_future_release(f);
  return r;
}

/* The byte at offset i of the server's stream. */
static unsigned char pattern(uint64_t i) { return (unsigned char)(i * 7 + (i >> 11)); }

/* ---- The server: plain OpenSSL, blocking, on its own thread ---------------------------- */

/* END_EMPTY_HANDSHAKE: after the pattern, one more byte of it and then an
 * empty handshake record, both sealed here under the server's key (the
 * keylog's secret; no tickets, so the sequence is the records written),
 * then a FIN. */
typedef enum { END_CLOSE_NOTIFY, END_FIN, END_FORGED_RECORD, END_EMPTY_HANDSHAKE } server_end;

typedef struct server {
  int fd;
  int max_version;     /* TLS1_3_VERSION or TLS1_2_VERSION */
  const char *suite;   /* the one TLS 1.3 suite offered, or NULL: OpenSSL's */
  size_t total;        /* pattern bytes to send */
  bool key_update;     /* a KeyUpdate (update_requested) half way */
  bool late_ticket;    /* a NewSessionTicket at a quarter */
  bool small_records;  /* records of 512 bytes at most, tickets of about 3 KiB:
                          a ticket comes split over records */
  server_end end;
  char got[16];        /* what the client wrote after reading everything */
  int got_len;
  bool ok;             /* every server step worked */
  int key_updates_in;  /* KeyUpdate messages the client sent */
  unsigned char secret[32]; /* END_EMPTY_HANDSHAKE: the server's traffic secret (SHA-256) */
  bool have_secret;
} server;

/* Makes each ticket about 3 KiB (its session carries this much data). */
static int big_ticket_cb(SSL *ssl, void *arg) {
  (void)arg;
  static unsigned char blob[3000];
  memset(blob, 0x5a, sizeof(blob));
  return SSL_SESSION_set1_ticket_appdata(SSL_get_session(ssl), blob, sizeof(blob));
}

static SSL_TICKET_RETURN keep_ticket_cb(SSL *ssl, SSL_SESSION *ss, const unsigned char *keyname,
                                        size_t keyname_len, SSL_TICKET_STATUS status, void *arg) {
  (void)ssl, (void)ss, (void)keyname, (void)keyname_len, (void)status, (void)arg;
  return SSL_TICKET_RETURN_IGNORE_RENEW;
}

/* Counts the client's KeyUpdates (the answer a KeyUpdate asking for one
 * must bring). */
static void server_msg_cb(int write_p, int version, int content_type, const void *buf, size_t len,
                          SSL *ssl, void *arg) {
  (void)version;
  (void)ssl;
  server *sv = arg;
  if (!write_p && content_type == SSL3_RT_HANDSHAKE && len > 0 &&
      ((const unsigned char *)buf)[0] == SSL3_MT_KEY_UPDATE)
    sv->key_updates_in++;
}

/* Keeps the server's application traffic secret (END_EMPTY_HANDSHAKE). */
static void keylog_cb(const SSL *ssl, const char *line) {
  server *sv = SSL_get_app_data(ssl);
  const char *tag = "SERVER_TRAFFIC_SECRET_0 ";
  if (strncmp(line, tag, strlen(tag)) != 0)
    return;
  const char *hex = strchr(line + strlen(tag), ' ');
  if (!hex || strlen(hex + 1) != 2 * sizeof(sv->secret))
    return;
  for (size_t i = 0; i < sizeof(sv->secret); i++) {
    unsigned v = 0;
    if (sscanf(hex + 1 + 2 * i, "%2x", &v) != 1)
      return;
    sv->secret[i] = (unsigned char)v;
  }
  sv->have_secret = true;
}

/* RFC 8446 7.1 HKDF-Expand-Label, empty context, one SHA-256 block. */
static void expand_label(const unsigned char *secret, const char *label, unsigned char *out,
                         size_t out_len) {
  unsigned char info[64], block[32];
  size_t n = 0, l = strlen(label);
  info[n++] = 0;
  info[n++] = (unsigned char)out_len;
  info[n++] = (unsigned char)(6 + l);
  memcpy(info + n, "tls13 ", 6);
  memcpy(info + n + 6, label, l);
  n += 6 + l;
  info[n++] = 0;
  info[n++] = 1;
  unsigned bl = 0;
  HMAC(EVP_sha256(), secret, 32, info, n, block, &bl);
  memcpy(out, block, out_len);
}

/* Sends one TLS_AES_128_GCM_SHA256 record (content, inner type) sealed
 * under sv's secret as record number seq. */
static bool send_sealed(server *sv, uint64_t seq, const unsigned char *content, size_t len,
                        unsigned char type) {
  unsigned char key[16], nonce[12], pt[64], rec[5 + 64 + 16];
  size_t inner = len + 1, body = inner + 16;
  if (!sv->have_secret || inner > sizeof(pt))
    return false;
  expand_label(sv->secret, "key", key, sizeof(key));
  expand_label(sv->secret, "iv", nonce, sizeof(nonce));
  for (int i = 0; i < 8; i++)
    nonce[11 - i] ^= (unsigned char)(seq >> (8 * i));
  if (len > 0)
    memcpy(pt, content, len); /* content may be NULL when empty */
  pt[len] = type;
  rec[0] = 23, rec[1] = 3, rec[2] = 3;
  rec[3] = (unsigned char)(body >> 8), rec[4] = (unsigned char)body;
  EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
  int outl = 0, fin = 0;
  bool ok = c && EVP_EncryptInit_ex(c, EVP_aes_128_gcm(), NULL, key, nonce) == 1 &&
            EVP_EncryptUpdate(c, NULL, &outl, rec, 5) == 1 &&
            EVP_EncryptUpdate(c, rec + 5, &outl, pt, (int)inner) == 1 &&
            EVP_EncryptFinal_ex(c, rec + 5 + outl, &fin) == 1 &&
            EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_AEAD_GET_TAG, 16, rec + 5 + inner) == 1;
  EVP_CIPHER_CTX_free(c);
  return ok && send(sv->fd, rec, 5 + body, MSG_NOSIGNAL) == (ssize_t)(5 + body);
}

static void *server_main(void *arg) {
  server *sv = arg;
  SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
  SSL_CTX_set_max_proto_version(ctx, sv->max_version);
  if (sv->suite)
    SSL_CTX_set_ciphersuites(ctx, sv->suite);
  if (sv->small_records) {
    SSL_CTX_set_max_send_fragment(ctx, 512);
    SSL_CTX_set_session_ticket_cb(ctx, big_ticket_cb, keep_ticket_cb, NULL);
  }
  bool ok = SSL_CTX_use_certificate_chain_file(ctx, cert("server.pem")) == 1 &&
            SSL_CTX_use_PrivateKey_file(ctx, cert("server.key"), SSL_FILETYPE_PEM) == 1;
  if (sv->end == END_EMPTY_HANDSHAKE) {
    SSL_CTX_set_num_tickets(ctx, 0);
    SSL_CTX_set_keylog_callback(ctx, keylog_cb);
  }
  SSL *ssl = SSL_new(ctx);
  SSL_set_app_data(ssl, sv);
  SSL_set_msg_callback(ssl, server_msg_cb);
  SSL_set_msg_callback_arg(ssl, sv);
  ok = ok && SSL_set_fd(ssl, sv->fd) == 1 && SSL_accept(ssl) == 1;
  char req[8];
  ok = ok && SSL_read(ssl, req, sizeof(req)) > 0; /* the client's "GO" */
  /* Records of every size from 1 byte to a full one, the next size each time. */
  unsigned char rec[16384];
  size_t sent = 0, size = 1;
  uint64_t records = 0; /* written under the first traffic key (one per SSL_write) */
  bool updated = false, ticketed = false;
  while (ok && sent < sv->total) {
    size_t n = size < sv->total - sent ? size : sv->total - sent;
    for (size_t i = 0; i < n; i++)
      rec[i] = pattern(sent + i);
    ok = SSL_write(ssl, rec, (int)n) == (int)n;
    sent += n;
    records++;
    size = size * 3 + 1 > sizeof(rec) ? size % 97 + 1 : size * 3 + 1;
    if (ok && sv->late_ticket && !ticketed && sent >= sv->total / 4) {
      ticketed = true;
      ok = SSL_new_session_ticket(ssl) == 1 && SSL_do_handshake(ssl) == 1;
    }
    if (ok && sv->key_update && !updated && sent >= sv->total / 2) {
      updated = true;
      ok = SSL_key_update(ssl, SSL_KEY_UPDATE_REQUESTED) == 1 && SSL_do_handshake(ssl) == 1;
    }
  }
  if (ok && sv->end == END_CLOSE_NOTIFY) {
    /* The client writes after reading all (under its updated key when a
     * KeyUpdate asked for it: OpenSSL here checks that). */
    sv->got_len = SSL_read(ssl, sv->got, sizeof(sv->got));
    ok = sv->got_len > 0 && SSL_shutdown(ssl) >= 0;
  } else if (ok && sv->end == END_FORGED_RECORD) {
    unsigned char forged[5 + 64] = {23, 3, 3, 0, 64};
    memset(forged + 5, 0xab, 64);
    ok = send(sv->fd, forged, sizeof(forged), MSG_NOSIGNAL) == (ssize_t)sizeof(forged);
  } else if (ok && sv->end == END_EMPTY_HANDSHAKE) {
    unsigned char one = pattern(sv->total);
    ok = send_sealed(sv, records, &one, 1, SSL3_RT_APPLICATION_DATA) &&
         send_sealed(sv, records + 1, NULL, 0, SSL3_RT_HANDSHAKE);
  }
  shutdown(sv->fd, SHUT_WR); /* END_FIN: no close_notify before it */
  sv->ok = ok;
  SSL_free(ssl);
  SSL_CTX_free(ctx);
  ERR_clear_error();
  return NULL;
}

/* ---- The client: asynckit's session ---------------------------------------------------- */

typedef struct outcome {
  uint64_t bytes;      /* matching pattern bytes read */
  int64_t last;        /* the read that ended it: 0 or an error */
  ak_tls_stats st;     /* its strings are NULL: they die with the session */
  char version[16], suite[64];
} outcome;

/* Runs sv against a client session reading with buffers of the sizes in
 * sizes (cycled), writing "DONE" after total bytes when the server waits
 * for it. */
static outcome run(server *sv, const size_t *sizes, size_t nsizes) {
  int sp[2];
  assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp), 0);
  struct timeval tv = {.tv_sec = 20};
  setsockopt(sp[1], SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  setsockopt(sp[1], SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  sv->fd = sp[1];
  pthread_t th;
  assert_int_equal(pthread_create(&th, NULL, server_main, sv), 0);
  ak_tls_client_options o = {.ca_file = cert("ca.pem"), .engine = AK_TLS_ENGINE_OPENSSL};
  ak_tls_config *cfg = NULL;
  assert_int_equal(ak_tls_client_config_new(&o, &cfg), 0);
  ak_tls *t = NULL;
  assert_int_equal(ak_tls_client_new(loop, cfg, sp[0], "localhost", &t), 0);
  assert_int_equal(get_release(ak_tls_handshake(t)), 0);
  assert_int_equal(get_release(ak_tls_write(t, "GO", 2)), 2);
  outcome out = {0};
  unsigned char *buf = malloc(65536);
  assert_non_null(buf);
  for (size_t k = 0;; k++) {
    size_t want = sizes[k % nsizes];
    int64_t r = get_release(ak_tls_read(t, buf, want));
    if (r <= 0) {
      out.last = r;
      break;
    }
    assert_true((size_t)r <= want);
    for (int64_t i = 0; i < r; i++)
      if (buf[i] != pattern(out.bytes + (uint64_t)i))
        fail_msg("byte %llu differs", (unsigned long long)(out.bytes + (uint64_t)i));
    out.bytes += (uint64_t)r;
    if (out.bytes == sv->total && sv->end == END_CLOSE_NOTIFY)
      assert_int_equal(get_release(ak_tls_write(t, "DONE", 4)), 4);
  }
  free(buf);
  ak_tls_stats_get(t, &out.st);
  snprintf(out.version, sizeof(out.version), "%s", out.st.version ? out.st.version : "");
  snprintf(out.suite, sizeof(out.suite), "%s", out.st.ciphersuite ? out.st.ciphersuite : "");
  out.st.version = out.st.ciphersuite = out.st.alpn = out.st.engine = NULL;
  pthread_join(th, NULL);
  ak_tls_free(t);
  close(sp[0]);
  close(sp[1]);
  ak_tls_config_release(cfg);
  return out;
}

static const size_t mixed[] = {65536, 100, 16384, 1, 20000, 7};

/* Records of every size, reads bigger and smaller than a record: every
 * byte right, close_notify a clean end, and the direct path did the work. */
static void test_direct_bytes_and_close(void **state) {
  (void)state;
  server sv = {.max_version = TLS1_3_VERSION, .total = 8u << 20, .end = END_CLOSE_NOTIFY};
  outcome o = run(&sv, mixed, sizeof(mixed) / sizeof(mixed[0]));
  assert_true(sv.ok);
  assert_int_equal(o.bytes, sv.total);
  assert_int_equal(o.last, 0);
  assert_string_equal(o.version, "TLSv1.3");
  assert_true(o.st.direct_records > 500); /* all but the first few */
  assert_int_equal(sv.got_len, 4);
  assert_memory_equal(sv.got, "DONE", 4);
  assert_int_equal(sv.key_updates_in, 0);
}

/* Each TLS 1.3 suite (the key, IV and hash each takes), with a KeyUpdate. */
static void test_direct_every_suite(void **state) {
  (void)state;
  static const char *const suites[] = {"TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384",
                                       "TLS_CHACHA20_POLY1305_SHA256"};
  for (size_t i = 0; i < 3; i++) {
    server sv = {.max_version = TLS1_3_VERSION,
                 .suite = suites[i],
                 .total = 1u << 20,
                 .key_update = true,
                 .end = END_CLOSE_NOTIFY};
    outcome o = run(&sv, mixed, sizeof(mixed) / sizeof(mixed[0]));
    assert_true(sv.ok);
    assert_int_equal(o.bytes, sv.total);
    assert_int_equal(o.last, 0);
    char want[64];
    snprintf(want, sizeof(want), "%s", suites[i]);
    for (char *c = want; *c; c++)
      *c = *c == '_' ? '-' : *c;
    assert_string_equal(o.suite, want);
    assert_true(o.st.direct_records > 50);
    assert_int_equal(sv.key_updates_in, 1);
  }
}

/* A KeyUpdate asking for ours and a ticket, both after the switch: the
 * read key moves on, the server reads our next write under our new key. */
static void test_direct_key_update_and_late_ticket(void **state) {
  (void)state;
  server sv = {.max_version = TLS1_3_VERSION,
               .total = 4u << 20,
               .key_update = true,
               .late_ticket = true,
               .end = END_CLOSE_NOTIFY};
  outcome o = run(&sv, mixed, sizeof(mixed) / sizeof(mixed[0]));
  assert_true(sv.ok);
  assert_int_equal(o.bytes, sv.total);
  assert_int_equal(o.last, 0);
  assert_true(o.st.direct_records > 200);
  assert_int_equal(sv.got_len, 4);
  assert_memory_equal(sv.got, "DONE", 4);
  assert_int_equal(sv.key_updates_in, 1); /* ours, asked for, sent */
}

/* A ticket split over records after the switch: its parts are put
 * together and dropped, the records around it read. */
static void test_direct_split_ticket(void **state) {
  (void)state;
  server sv = {.max_version = TLS1_3_VERSION,
               .total = 1u << 20,
               .late_ticket = true,
               .small_records = true,
               .key_update = true,
               .end = END_CLOSE_NOTIFY};
  outcome o = run(&sv, mixed, sizeof(mixed) / sizeof(mixed[0]));
  assert_true(sv.ok);
  assert_int_equal(o.bytes, sv.total);
  assert_int_equal(o.last, 0);
  assert_true(o.st.direct_records > 2000); /* 512-byte records */
  assert_int_equal(sv.key_updates_in, 1);
}

/* An end without close_notify is a truncation, not a clean end. */
static void test_direct_truncated(void **state) {
  (void)state;
  server sv = {.max_version = TLS1_3_VERSION, .total = 1u << 20, .end = END_FIN};
  outcome o = run(&sv, mixed, sizeof(mixed) / sizeof(mixed[0]));
  assert_int_equal(o.bytes, sv.total);
  assert_int_equal(o.last, AK_ETLSTRUNCATED);
  assert_true(o.st.direct_records > 0);
}

/* A record that does not authenticate fails the read: AK_ETLSPROTOCOL,
 * after every good byte before it. */
static void test_direct_forged_record(void **state) {
  (void)state;
  server sv = {.max_version = TLS1_3_VERSION, .total = 1u << 20, .end = END_FORGED_RECORD};
  outcome o = run(&sv, mixed, sizeof(mixed) / sizeof(mixed[0]));
  assert_int_equal(o.bytes, sv.total);
  assert_int_equal(o.last, AK_ETLSPROTOCOL);
  assert_true(o.st.direct_records > 0);
}

/* An empty handshake record fails the read (RFC 8446 5.1; OpenSSL's reads
 * refuse it too): it was dropped, and the FIN after it read as a
 * truncation. The byte sealed before it shows the sealing is right. */
static void test_direct_empty_handshake_record(void **state) {
  (void)state;
  server sv = {.max_version = TLS1_3_VERSION, .suite = "TLS_AES_128_GCM_SHA256",
               .total = 100000, .end = END_EMPTY_HANDSHAKE};
  outcome o = run(&sv, mixed, sizeof(mixed) / sizeof(mixed[0]));
  assert_true(sv.ok);
  assert_int_equal(o.bytes, sv.total + 1);
  assert_int_equal(o.last, AK_ETLSPROTOCOL);
  assert_true(o.st.direct_records > 0);
}

/* TLS 1.2 stays with OpenSSL's own reads. */
static void test_direct_not_tls12(void **state) {
  (void)state;
  server sv = {.max_version = TLS1_2_VERSION, .total = 1u << 20, .end = END_CLOSE_NOTIFY};
  outcome o = run(&sv, mixed, sizeof(mixed) / sizeof(mixed[0]));
  assert_true(sv.ok);
  assert_int_equal(o.bytes, sv.total);
  assert_int_equal(o.last, 0);
  assert_string_equal(o.version, "TLSv1.2");
  assert_int_equal(o.st.direct_records, 0);
}

/* AK_TLS_DIRECT_READ=0 (read when a config is made) turns the path off. */
static void test_direct_off_by_env(void **state) {
  (void)state;
  setenv("AK_TLS_DIRECT_READ", "0", 1);
  server sv = {.max_version = TLS1_3_VERSION, .total = 1u << 20, .end = END_CLOSE_NOTIFY};
  outcome o = run(&sv, mixed, sizeof(mixed) / sizeof(mixed[0]));
  unsetenv("AK_TLS_DIRECT_READ");
  assert_true(sv.ok);
  assert_int_equal(o.bytes, sv.total);
  assert_int_equal(o.last, 0);
  assert_int_equal(o.st.direct_records, 0);
}

static int setup(void **state) {
  (void)state;
  ak_loop_options opts = {0};
  int rc = ak_loop_new(&loop, &opts);
  if (rc == AK_ENOURING || rc == AK_EURINGDISABLED || rc == AK_EURINGBLOCKED)
    exit(77);
  return rc;
}

static int teardown(void **state) {
  (void)state;
  ak_loop_free(loop);
  return 0;
}

int main(void) {
  signal(SIGPIPE, SIG_IGN);
  snprintf(certs, sizeof(certs), "/tmp/ak-tls-direct-XXXXXX");
  if (!mkdtemp(certs)) {
    perror("mkdtemp");
    return 1;
  }
  char cmd[600];
  snprintf(cmd, sizeof(cmd), "sh %s %s >/dev/null", T_TLS_CERTS_SH, certs);
  if (system(cmd) != 0) {
    fprintf(stderr, "test_tls_direct: making certificates failed\n");
    return 1;
  }
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_direct_bytes_and_close),
      cmocka_unit_test(test_direct_key_update_and_late_ticket),
      cmocka_unit_test(test_direct_every_suite),
      cmocka_unit_test(test_direct_split_ticket),
      cmocka_unit_test(test_direct_truncated),
      cmocka_unit_test(test_direct_forged_record),
      cmocka_unit_test(test_direct_empty_handshake_record),
      cmocka_unit_test(test_direct_not_tls12),
      cmocka_unit_test(test_direct_off_by_env),
  };
  int failed = cmocka_run_group_tests(tests, setup, teardown);
  snprintf(cmd, sizeof(cmd), "rm -rf %s", certs);
  if (system(cmd) != 0)
    fprintf(stderr, "test_tls_direct: could not remove %s\n", certs);
  return failed;
}
