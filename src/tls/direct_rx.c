/* tls/direct_rx.c: TLS 1.3 records read by asynckit itself, straight from
 * the pump's receive buffer into the reader's buffer (the OpenSSL engine's
 * fast read path, tls/openssl.c decides when it takes over). It owns the
 * server's application traffic key (derived from the secret the handshake
 * made), the record sequence number, and the records' decryption,
 * authentication and inner-type handling: application data is handed out,
 * close_notify ends the stream, another alert fails the session, a
 * NewSessionTicket is dropped and a KeyUpdate moves to the next key (the
 * caller sends ours when the peer asked).
 *
 * Why: OpenSSL's SSL_read copies each record from the receive buffer into
 * its own (the BIO read), decrypts there and copies the plaintext out; a
 * record here is decrypted once, from where the ring put it into where
 * the reader wants it. perf of akget on 1000 x 1 MiB over HTTPS: the two
 * copies and SSL_read's per-record work were about a third of SSL_read,
 * the decryption the rest (docs/tls.md, "The direct read path").
 * Only libcrypto's EVP AEADs and HMAC are used; nothing here touches a
 * socket or an SSL. */
#include <stdio.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "tls/direct_rx.h"

#define REC_HDR 5
#define TAG_LEN 16
#define IV_LEN 12
#define MAX_PLAIN 16384                      /* RFC 8446 5.1 */
#define MAX_CIPHER (MAX_PLAIN + 256)         /* RFC 8446 5.2 */
#define CT_ALERT 21
#define CT_HANDSHAKE 22
#define CT_APPDATA 23
#define HS_NEW_SESSION_TICKET 4
#define HS_KEY_UPDATE 24
#define HS_HELD_MAX (64 * 1024) /* a post-handshake message bigger than this: refused */

struct ak__tls_drx {
  EVP_CIPHER_CTX *ctx;
  const EVP_MD *md;      /* the suite's hash (HKDF) */
  size_t key_len;
  unsigned char secret[EVP_MAX_MD_SIZE];
  size_t secret_len;
  unsigned char iv[IV_LEN];
  uint64_t seq;          /* the next record's sequence number */
  uint64_t records;      /* records decrypted here */
  unsigned char *spare;  /* a record too big for the reader's buffer */
  size_t spare_at, spare_end;
  unsigned char *held;   /* handshake bytes of a message split over records */
  size_t held_len;
  bool closed;           /* close_notify received */
};

/* HKDF-Expand-Label(secret, label, "", out_len) of RFC 8446 7.1, for
 * out_len no longer than the hash: one HMAC block. */
static bool expand_label(const EVP_MD *md, const unsigned char *secret, size_t secret_len,
                         const char *label, unsigned char *out, size_t out_len) {
  unsigned char info[2 + 1 + 6 + 32 + 1 + 1];
  size_t label_len = strlen(label), n = 0;
  if (label_len > 32 || out_len > (size_t)EVP_MD_get_size(md))
    return false;
  info[n++] = (unsigned char)(out_len >> 8);
  info[n++] = (unsigned char)out_len;
  info[n++] = (unsigned char)(6 + label_len);
  memcpy(info + n, "tls13 ", 6);
  n += 6;
  memcpy(info + n, label, label_len);
  n += label_len;
  info[n++] = 0;    /* empty context */
  info[n++] = 0x01; /* HKDF-Expand's block counter */
  unsigned char block[EVP_MAX_MD_SIZE];
  unsigned block_len = 0;
  if (!HMAC(md, secret, (int)secret_len, info, n, block, &block_len) || block_len < out_len)
    return false;
  memcpy(out, block, out_len);
  OPENSSL_cleanse(block, sizeof(block));
  return true;
}

/* Key and IV from the current secret; the sequence starts again. */
static bool install_key(ak__tls_drx *d) {
  unsigned char key[32];
  bool ok = expand_label(d->md, d->secret, d->secret_len, "key", key, d->key_len) &&
            expand_label(d->md, d->secret, d->secret_len, "iv", d->iv, IV_LEN) &&
            EVP_DecryptInit_ex(d->ctx, NULL, NULL, key, NULL) == 1;
  OPENSSL_cleanse(key, sizeof(key));
  return ok;
}

int ak__tls_drx_new(const char *suite, const unsigned char *secret, size_t secret_len,
                    uint64_t seq, ak__tls_drx **out) {
  *out = NULL;
  const EVP_CIPHER *cipher;
  const EVP_MD *md;
  if (strcmp(suite, "TLS_AES_128_GCM_SHA256") == 0) {
    cipher = EVP_aes_128_gcm();
    md = EVP_sha256();
  } else if (strcmp(suite, "TLS_AES_256_GCM_SHA384") == 0) {
    cipher = EVP_aes_256_gcm();
    md = EVP_sha384();
  } else if (strcmp(suite, "TLS_CHACHA20_POLY1305_SHA256") == 0) {
    cipher = EVP_chacha20_poly1305();
    md = EVP_sha256();
  } else {
    return -ENOTSUP;
  }
  if (secret_len != (size_t)EVP_MD_get_size(md))
    return -EINVAL;
  ak__tls_drx *d = ak__calloc(1, sizeof(*d));
  if (!d)
    return -ENOMEM;
  d->md = md;
  d->key_len = (size_t)EVP_CIPHER_get_key_length(cipher);
  memcpy(d->secret, secret, secret_len);
  d->secret_len = secret_len;
  d->seq = seq;
  d->ctx = EVP_CIPHER_CTX_new();
  if (!d->ctx || EVP_DecryptInit_ex(d->ctx, cipher, NULL, NULL, NULL) != 1 ||
      EVP_CIPHER_CTX_ctrl(d->ctx, EVP_CTRL_AEAD_SET_IVLEN, IV_LEN, NULL) != 1 ||
      !install_key(d)) {
    ak__tls_drx_free(d);
    return -ENOMEM;
  }
  *out = d;
  return 0;
}

void ak__tls_drx_free(ak__tls_drx *d) {
  if (!d)
    return;
  EVP_CIPHER_CTX_free(d->ctx);
  OPENSSL_cleanse(d->secret, sizeof(d->secret));
  ak__free(d->spare);
  ak__free(d->held);
  ak__free(d);
}

bool ak__tls_drx_pending(const ak__tls_drx *d) { return d->spare_at < d->spare_end; }

uint64_t ak__tls_drx_records(const ak__tls_drx *d) { return d ? d->records : 0; }

/* Decrypts the record rec (header and len bytes of body) into dst (room
 * for len - TAG_LEN bytes). Returns the inner plaintext's length with its
 * content type in *type, or an error with detail set. */
static int64_t open_record(ak__tls_drx *d, const unsigned char *rec, size_t len, unsigned char *dst,
                           int *type, char *detail, size_t n) {
  unsigned char nonce[IV_LEN];
  memcpy(nonce, d->iv, IV_LEN);
  for (int i = 0; i < 8; i++)
    nonce[IV_LEN - 1 - i] ^= (unsigned char)(d->seq >> (8 * i));
  size_t ct = len - TAG_LEN;
  int outl = 0, fin = 0;
  bool ok = EVP_DecryptInit_ex(d->ctx, NULL, NULL, NULL, nonce) == 1 &&
            EVP_DecryptUpdate(d->ctx, NULL, &outl, rec, REC_HDR) == 1 &&
            EVP_DecryptUpdate(d->ctx, dst, &outl, rec + REC_HDR, (int)ct) == 1 &&
            EVP_CIPHER_CTX_ctrl(d->ctx, EVP_CTRL_AEAD_SET_TAG, TAG_LEN,
                                (void *)(rec + REC_HDR + ct)) == 1 &&
            EVP_DecryptFinal_ex(d->ctx, dst + outl, &fin) == 1;
  if (!ok) {
    memset(dst, 0, ct); /* never leave unauthenticated bytes behind */
    snprintf(detail, n, "read: bad record MAC (record %llu)", (unsigned long long)d->seq);
    return AK_ETLSPROTOCOL;
  }
  d->seq++;
  d->records++;
  size_t end = ct;
  while (end > 0 && dst[end - 1] == 0)
    end--; /* padding */
  if (end == 0) {
    snprintf(detail, n, "read: a record with no content type");
    return AK_ETLSPROTOCOL;
  }
  *type = dst[end - 1];
  if (end - 1 > MAX_PLAIN) {
    snprintf(detail, n, "read: record overflow");
    return AK_ETLSPROTOCOL;
  }
  return (int64_t)(end - 1);
}

/* Handshake messages after the handshake: tickets are dropped (the
 * session cache keeps the ones OpenSSL read before the switch), a
 * KeyUpdate moves to the next key. A message split over records is held
 * until its last part (up to HS_HELD_MAX); p, len: one record's content. */
static int handshake_msgs(ak__tls_drx *d, const unsigned char *p, size_t len, bool *update_asked,
                          char *detail, size_t n) {
  if (d->held_len > 0) {
    if (len > HS_HELD_MAX - d->held_len) {
      snprintf(detail, n, "read: a handshake message over %d bytes", HS_HELD_MAX);
      return AK_ETLSPROTOCOL;
    }
    memcpy(d->held + d->held_len, p, len);
    d->held_len += len;
    p = d->held;
    len = d->held_len;
  }
  while (len > 0) {
    size_t mlen = len >= 4 ? (size_t)p[1] << 16 | (size_t)p[2] << 8 | p[3] : 0;
    if (len < 4 || mlen > len - 4) {
      /* The rest comes in the next record(s). */
      if (len > HS_HELD_MAX || (len >= 4 && mlen > HS_HELD_MAX - 4)) {
        snprintf(detail, n, "read: a handshake message over %d bytes", HS_HELD_MAX);
        return AK_ETLSPROTOCOL;
      }
      if (!d->held && !(d->held = ak__malloc(HS_HELD_MAX)))
        return -ENOMEM;
      memmove(d->held, p, len);
      d->held_len = len;
      return 0;
    }
    if (p[0] == HS_KEY_UPDATE) {
      if (mlen != 1 || p[4] > 1 || len != 5) {
        /* RFC 8446 5.1: a KeyUpdate ends its record (the key changes). */
        snprintf(detail, n, "read: a bad KeyUpdate");
        return AK_ETLSPROTOCOL;
      }
      unsigned char next[EVP_MAX_MD_SIZE];
      if (!expand_label(d->md, d->secret, d->secret_len, "traffic upd", next, d->secret_len)) {
        snprintf(detail, n, "read: KeyUpdate: deriving the next key failed");
        return -ENOMEM;
      }
      memcpy(d->secret, next, d->secret_len);
      OPENSSL_cleanse(next, sizeof(next));
      if (!install_key(d)) {
        snprintf(detail, n, "read: KeyUpdate: deriving the next key failed");
        return -ENOMEM;
      }
      d->seq = 0;
      if (p[4] == 1)
        *update_asked = true;
    } else if (p[0] != HS_NEW_SESSION_TICKET) {
      snprintf(detail, n, "read: unexpected handshake message %u after the handshake", p[0]);
      return AK_ETLSPROTOCOL;
    }
    p += 4 + mlen;
    len -= 4 + mlen;
  }
  d->held_len = 0;
  return 0;
}

int64_t ak__tls_drx_read(ak__tls_drx *d, ak__tls_wire *w, void *buf, size_t len,
                         bool *update_asked, char *detail, size_t n) {
  for (;;) {
    if (d->spare_at < d->spare_end) {
      size_t k = d->spare_end - d->spare_at;
      if (k > len)
        k = len;
      memcpy(buf, d->spare + d->spare_at, k);
      d->spare_at += k;
      return (int64_t)k;
    }
    if (d->closed)
      return 0;
    size_t have = w->in_end - w->in_start;
    const unsigned char *rec = w->in + w->in_start;
    size_t body = have >= REC_HDR ? (size_t)rec[3] << 8 | rec[4] : 0;
    if (have >= REC_HDR) {
      if (rec[0] != CT_APPDATA || rec[1] != 0x03 || rec[2] != 0x03) {
        snprintf(detail, n, "read: not a TLS 1.3 record (type %u)", rec[0]);
        return AK_ETLSPROTOCOL;
      }
      if (body > MAX_CIPHER || body <= TAG_LEN) {
        snprintf(detail, n, "read: a record of %zu bytes", body);
        return AK_ETLSPROTOCOL;
      }
    }
    if (have < REC_HDR || have < REC_HDR + body) {
      if (w->in_status < 0)
        return w->in_status;
      if (w->in_status == 1) {
        snprintf(detail, n, "read: the peer closed the connection without close_notify");
        return AK_ETLSTRUNCATED;
      }
      return AK__TLS_WANT_READ;
    }
    /* Into the reader's buffer when the whole record fits, else into
     * spare, handed out over the next reads. */
    unsigned char *dst = buf;
    if (len < body - TAG_LEN) {
      if (!d->spare && !(d->spare = ak__malloc(MAX_CIPHER)))
        return -ENOMEM;
      dst = d->spare;
    }
    int type = 0;
    int64_t r = open_record(d, rec, body, dst, &type, detail, n);
    if (r < 0)
      return r;
    w->in_start += REC_HDR + body;
    if (type != CT_HANDSHAKE && d->held_len > 0) {
      /* RFC 8446 5.1: nothing between the parts of a handshake message. */
      snprintf(detail, n, "read: a record inside a split handshake message");
      return AK_ETLSPROTOCOL;
    }
    if (type == CT_APPDATA) {
      if (r == 0)
        continue;
      if (dst == buf)
        return r;
      d->spare_at = 0;
      d->spare_end = (size_t)r;
      continue;
    }
    if (type == CT_ALERT) {
      if (r != 2) {
        snprintf(detail, n, "read: a bad alert");
        return AK_ETLSPROTOCOL;
      }
      if (dst[1] == 0) { /* close_notify */
        d->closed = true;
        return 0;
      }
      snprintf(detail, n, "read: alert %u from the peer", dst[1]);
      return AK_ETLSHANDSHAKE; /* as map_error in openssl.c */
    }
    if (type == CT_HANDSHAKE) {
      if (r == 0) {
        /* RFC 8446 5.1: handshake records are never empty (OpenSSL's
         * record layer refuses them too). */
        snprintf(detail, n, "read: an empty handshake record");
        return AK_ETLSPROTOCOL;
      }
      int rc = handshake_msgs(d, dst, (size_t)r, update_asked, detail, n);
      if (rc < 0)
        return rc;
      continue;
    }
    snprintf(detail, n, "read: unexpected record type %d", type);
    return AK_ETLSPROTOCOL;
  }
}
