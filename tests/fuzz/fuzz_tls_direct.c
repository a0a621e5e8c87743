/* fuzz_tls_direct.c: libFuzzer target for the direct TLS 1.3 record reader
 * (src/tls/direct_rx.c) on untrusted network bytes. Random bytes would
 * never get past the AEAD tag, so the input is a script of records that
 * this file builds and ENCRYPTS itself with the reader's key (a fixed
 * secret; HKDF-Expand-Label "key"/"iv", nonce = iv XOR seq, AAD = the
 * header; a KeyUpdate it puts in moves its key to "traffic upd" too), then
 * corrupts as told. The wire bytes reach ak__tls_drx_read through an
 * ak__tls_wire in chunks of chosen sizes, into read buffers of chosen sizes
 * (heap, exact: ASan sees a write past them; the wire's bytes outside
 * [in_start, in_end) are poisoned: ASan sees a read outside them).
 *
 * Input: byte 0 the suite (AES-128-GCM, AES-256-GCM, ChaCha20-Poly1305),
 * byte 1 the first sequence number, byte 2 how the stream ends (bit 0:
 * -ECONNRESET instead of a clean FIN). Then records of 7 control bytes:
 *   c0: bits 0-2 kind (app data x2, alert, raw handshake bytes, KeyUpdate,
 *       NewSessionTicket, another inner type, no inner type at all);
 *       bits 3-5 corruption (5 tag, 6 header type/version, 7 length field;
 *       else none)
 *   c1: padding length (for "another type": the type, one not 0, 21-23)
 *   c2 c3: content length (mod 17000: records over the limits too)
 *   c4: how many content bytes come from the input (the rest a pattern)
 *   c5: the wire chunk size of this step, c6: the read size of this step
 * followed by those content bytes; what is left (under 7 bytes) is put on
 * the wire raw after the records.
 * Asserts: the bytes handed out are the application data built, in order,
 * up to the first record that must fail; the result is 0 after
 * close_notify, else the error the first bad record or the end of the
 * stream calls for (one of a known set where raw handshake bytes make it
 * open); update_asked as the KeyUpdates said; WANT_READ only with a
 * partial record and room to take the rest. */
#include "tls/direct_rx.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <sanitizer/asan_interface.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHECK(c)                                                                                \
  do {                                                                                          \
    if (!(c)) {                                                                                 \
      fprintf(stderr, "fuzz_tls_direct.c:%d: %s\n", __LINE__, #c);                              \
      abort();                                                                                  \
    }                                                                                           \
  } while (0)

#define REC_HDR 5
#define TAG_LEN 16
#define IV_LEN 12
#define MAX_PLAIN 16384
#define MAX_CIPHER (MAX_PLAIN + 256)
#define WIRE_CAP (REC_HDR + MAX_CIPHER) /* the biggest record the reader may wait for */
#define MAX_RECORDS 64
#define MAX_STEPS 64

enum { K_APP0, K_APP1, K_ALERT, K_RAW_HS, K_KEY_UPDATE, K_TICKET, K_OTHER, K_NO_TYPE };

/* Which results the run may end with (bits), once the script is read. */
enum {
  R_CLOSE = 1,     /* 0: close_notify */
  R_PROTOCOL = 2,  /* AK_ETLSPROTOCOL */
  R_HANDSHAKE = 4, /* AK_ETLSHANDSHAKE: an alert */
  R_END = 8,       /* AK_ETLSTRUNCATED or the wire's error: the stream ended */
};

typedef struct sender {
  const EVP_CIPHER *cipher;
  const EVP_MD *md;
  EVP_CIPHER_CTX *ctx;
  unsigned char secret[EVP_MAX_MD_SIZE];
  size_t secret_len;
  unsigned char key[32], iv[IV_LEN];
  uint64_t seq;
} sender;

typedef struct bytes {
  unsigned char *p;
  size_t len, cap;
} bytes;

static void put(bytes *b, const void *p, size_t n) {
  if (n == 0)
    return;
  if (b->len + n > b->cap) {
    b->cap = (b->len + n) * 2;
    b->p = realloc(b->p, b->cap);
    CHECK(b->p);
  }
  memcpy(b->p + b->len, p, n);
  b->len += n;
}

/* RFC 8446 7.1 HKDF-Expand-Label with an empty context, one HMAC block. */
static void expand_label(sender *s, const char *label, unsigned char *out, size_t out_len) {
  unsigned char info[64], block[EVP_MAX_MD_SIZE];
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
  CHECK(HMAC(s->md, s->secret, (int)s->secret_len, info, n, block, &bl));
  memcpy(out, block, out_len);
}

static void sender_keys(sender *s) {
  expand_label(s, "key", s->key, (size_t)EVP_CIPHER_get_key_length(s->cipher));
  expand_label(s, "iv", s->iv, IV_LEN);
}

/* One record: header, inner plaintext (content, type, padding) encrypted,
 * tag; type < 0: no type byte (the content is all zeros then). */
static void seal(sender *s, bytes *wire, const unsigned char *content, size_t clen, int type,
                 size_t pad) {
  size_t inner = clen + (type >= 0) + pad, body = inner + TAG_LEN;
  unsigned char *rec = calloc(1, REC_HDR + body);
  CHECK(rec);
  rec[0] = 23;
  rec[1] = 3;
  rec[2] = 3;
  rec[3] = (unsigned char)(body >> 8);
  rec[4] = (unsigned char)body;
  unsigned char *pt = calloc(1, inner + 1);
  CHECK(pt);
  memcpy(pt, content, clen);
  if (type >= 0)
    pt[clen] = (unsigned char)type;
  unsigned char nonce[IV_LEN];
  memcpy(nonce, s->iv, IV_LEN);
  for (int i = 0; i < 8; i++)
    nonce[IV_LEN - 1 - i] ^= (unsigned char)(s->seq >> (8 * i));
  int outl = 0, fin = 0;
  CHECK(EVP_EncryptInit_ex(s->ctx, s->cipher, NULL, NULL, NULL) == 1);
  CHECK(EVP_CIPHER_CTX_ctrl(s->ctx, EVP_CTRL_AEAD_SET_IVLEN, IV_LEN, NULL) == 1);
  CHECK(EVP_EncryptInit_ex(s->ctx, NULL, NULL, s->key, nonce) == 1);
  CHECK(EVP_EncryptUpdate(s->ctx, NULL, &outl, rec, REC_HDR) == 1);
  CHECK(EVP_EncryptUpdate(s->ctx, rec + REC_HDR, &outl, pt, (int)inner) == 1);
  CHECK(EVP_EncryptFinal_ex(s->ctx, rec + REC_HDR + outl, &fin) == 1);
  CHECK(EVP_CIPHER_CTX_ctrl(s->ctx, EVP_CTRL_AEAD_GET_TAG, TAG_LEN, rec + REC_HDR + inner) == 1);
  s->seq++;
  put(wire, rec, REC_HDR + body);
  free(rec);
  free(pt);
}

/* A size from one byte: small ones (1..16) often, then up to past a
 * record, then powers of two up to 128 KiB. */
static size_t size_of(unsigned char v) {
  if (v < 64)
    return (size_t)(v % 16) + 1;
  if (v < 192)
    return (size_t)(v - 63) * 137;
  return (size_t)1 << (v % 18);
}

static unsigned char pattern(size_t i) { return (unsigned char)(i * 7 + 1 + (i >> 8)); }

typedef struct script {
  bytes wire;       /* the records, encrypted, as sent */
  bytes app;        /* application data the reader may hand out, in order */
  size_t app_sure;  /* how much of it must be handed out */
  unsigned ends;    /* R_* the run may end with */
  bool asked;       /* a KeyUpdate before the end asked for ours */
  bool open;        /* raw handshake bytes before the end: only prefix checks */
  size_t chunk[MAX_STEPS], rsize[MAX_STEPS];
  size_t nsteps;
} script;

/* Reads the input into s; the sender's state follows the records built. */
static void build(sender *snd, const uint8_t *data, size_t size, script *s) {
  bool ended = false; /* a record that ends the reader's stream was built */
  size_t nrec = 0;
  static unsigned char content[17004 + 4];
  while (size >= 7 && nrec < MAX_RECORDS) {
    unsigned kind = data[0] & 7, corrupt = (data[0] >> 3) & 7;
    size_t pad = data[1], clen = ((size_t)data[2] << 8 | data[3]) % 17000, from_input = data[4];
    if (s->nsteps < MAX_STEPS) {
      s->chunk[s->nsteps] = size_of(data[5]);
      s->rsize[s->nsteps++] = size_of(data[6]);
    }
    unsigned char c1 = data[1], c2 = data[2], c4 = data[4];
    data += 7;
    size -= 7;
    int type = 23;
    size_t off = 0; /* where the input's bytes go in content */
    if (kind == K_OTHER) {
      /* Only types the reader does not know (the others have kinds); 0
       * would make the last nonzero content byte the type. */
      type = c1 == 0 || (c1 >= 21 && c1 <= 23) ? c1 + 100 : c1;
      pad = 0;
      from_input = 0;
    }
    if (kind == K_KEY_UPDATE) {
      clen = 5;
      from_input = 0;
    }
    if (kind == K_TICKET)
      off = 4;
    if (from_input > clen)
      from_input = clen;
    if (from_input > size)
      from_input = size;
    for (size_t i = 0; i < clen; i++)
      content[off + i] = kind == K_NO_TYPE ? 0 : pattern(i);
    if (kind != K_NO_TYPE)
      memcpy(content + off, data, from_input);
    data += from_input;
    size -= from_input;
    switch (kind) {
    case K_ALERT:
      type = 21;
      break;
    case K_RAW_HS:
      type = 22;
      break;
    case K_KEY_UPDATE:
      type = 22;
      memcpy(content, (unsigned char[]){24, 0, 0, 1, c2 & 1}, 5);
      break;
    case K_TICKET:
      type = 22;
      content[0] = 4;
      content[1] = (unsigned char)(clen >> 16);
      content[2] = (unsigned char)(clen >> 8);
      content[3] = (unsigned char)clen;
      clen += 4;
      break;
    case K_NO_TYPE:
      type = -1;
      break;
    default:
      break;
    }
    size_t at = s->wire.len, body = clen + (type >= 0) + pad + TAG_LEN;
    seal(snd, &s->wire, content, clen, type, pad);
    if (kind == K_KEY_UPDATE) {
      unsigned char next[EVP_MAX_MD_SIZE];
      expand_label(snd, "traffic upd", next, snd->secret_len);
      memcpy(snd->secret, next, snd->secret_len);
      sender_keys(snd);
      snd->seq = 0;
    }
    nrec++;
    if (corrupt == 5) {
      s->wire.p[s->wire.len - 1 - c4 % TAG_LEN] ^= (unsigned char)(c1 | 1);
    } else if (corrupt == 6) {
      s->wire.p[at + c4 % 3] ^= (unsigned char)(c1 | 1);
    } else if (corrupt == 7) {
      s->wire.p[at + 3] ^= c1;
      s->wire.p[at + 4] ^= (unsigned char)(c4 | 1);
    }
    if (ended)
      continue;
    /* What the reader must make of this record. */
    ended = true;
    if (corrupt == 7) {
      s->ends = R_PROTOCOL | R_END;
    } else if (corrupt >= 5 || body > MAX_CIPHER || body <= TAG_LEN ||
               (type >= 0 && clen > MAX_PLAIN)) {
      s->ends = R_PROTOCOL;
    } else if (kind == K_NO_TYPE) {
      s->ends = R_PROTOCOL;
    } else if (type == 23) {
      put(&s->app, content, clen);
      if (!s->open)
        s->app_sure = s->app.len;
      ended = false;
    } else if (kind == K_ALERT) {
      s->ends = clen != 2 ? R_PROTOCOL : content[1] == 0 ? R_CLOSE : R_HANDSHAKE;
    } else if (kind == K_RAW_HS && clen == 0) {
      s->ends = R_PROTOCOL; /* RFC 8446 5.1: never empty */
    } else if (kind == K_RAW_HS) {
      s->open = true; /* dropped, held, a KeyUpdate or refused: the reader's call */
      ended = false;
    } else if (kind == K_KEY_UPDATE || kind == K_TICKET) {
      if (kind == K_KEY_UPDATE && (c2 & 1))
        s->asked = true;
      ended = false;
    } else {
      s->ends = R_PROTOCOL; /* an unknown inner type */
    }
  }
  if (size > 0) {
    put(&s->wire, data, size); /* raw bytes after the records */
    if (!ended) {
      ended = true;
      s->ends = R_PROTOCOL | R_END;
    }
  }
  if (!ended)
    s->ends = R_END;
  if (s->open)
    s->ends |= R_CLOSE | R_PROTOCOL | R_HANDSHAKE | R_END;
  if (s->nsteps == 0) {
    s->chunk[0] = WIRE_CAP;
    s->rsize[0] = 4096;
    s->nsteps = 1;
  }
}

static const char *const suites[] = {"TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384",
                                     "TLS_CHACHA20_POLY1305_SHA256"};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 3)
    return 0;
  unsigned which = data[0] % 3;
  uint64_t seq0 = data[1];
  int end_status = (data[2] & 1) ? -ECONNRESET : 1;
  sender snd = {0};
  snd.cipher = which == 0   ? EVP_aes_128_gcm()
               : which == 1 ? EVP_aes_256_gcm()
                            : EVP_chacha20_poly1305();
  snd.md = which == 1 ? EVP_sha384() : EVP_sha256();
  snd.secret_len = (size_t)EVP_MD_get_size(snd.md);
  for (size_t i = 0; i < snd.secret_len; i++)
    snd.secret[i] = (unsigned char)(0xa5 ^ i);
  snd.ctx = EVP_CIPHER_CTX_new();
  CHECK(snd.ctx);
  snd.seq = seq0;
  sender_keys(&snd);
  ak__tls_drx *d = NULL;
  CHECK(ak__tls_drx_new(suites[which], snd.secret, snd.secret_len, seq0, &d) == 0);

  script s = {0};
  build(&snd, data + 3, size - 3, &s);

  unsigned char *in = malloc(WIRE_CAP);
  CHECK(in);
  ak__tls_wire w = {.in = in, .in_cap = WIRE_CAP};
  size_t sent = 0, out = 0, step = 0;
  bool asked = false;
  int64_t r;
  char detail[256];
  for (;;) {
    size_t rlen = s.rsize[step % s.nsteps];
    unsigned char *buf = malloc(rlen);
    CHECK(buf);
    /* Only [in_start, in_end) is the reader's to read. */
    ASAN_POISON_MEMORY_REGION(in, w.in_start);
    ASAN_POISON_MEMORY_REGION(in + w.in_end, WIRE_CAP - w.in_end);
    detail[0] = '\0';
    r = ak__tls_drx_read(d, &w, buf, rlen, &asked, detail, sizeof(detail));
    ASAN_UNPOISON_MEMORY_REGION(in, WIRE_CAP);
    CHECK(w.in_start <= w.in_end);
    if (r > 0) {
      CHECK((size_t)r <= rlen);
      CHECK(out + (size_t)r <= s.app.len);
      CHECK(memcmp(buf, s.app.p + out, (size_t)r) == 0);
      out += (size_t)r;
    }
    free(buf);
    if (r > 0) {
      step++;
      continue;
    }
    if (r != AK__TLS_WANT_READ)
      break;
    CHECK(w.in_status == 0); /* after the end: an error, never WANT_READ */
    if (sent == s.wire.len) {
      w.in_status = end_status;
      continue;
    }
    /* The pump's refill: the unread bytes to the front, then a chunk. */
    if (w.in_start > 0) {
      memmove(in, in + w.in_start, w.in_end - w.in_start);
      w.in_end -= w.in_start;
      w.in_start = 0;
    }
    size_t k = s.chunk[step % s.nsteps], room = WIRE_CAP - w.in_end;
    CHECK(room > 0); /* WANT_READ with a full buffer: a record bigger than allowed */
    if (k > room)
      k = room;
    if (k > s.wire.len - sent)
      k = s.wire.len - sent;
    memcpy(in + w.in_end, s.wire.p + sent, k);
    w.in_end += k;
    sent += k;
    step++;
  }

  unsigned got = r == 0                  ? R_CLOSE
                 : r == AK_ETLSPROTOCOL  ? R_PROTOCOL
                 : r == AK_ETLSHANDSHAKE ? R_HANDSHAKE
                 : (r == AK_ETLSTRUNCATED && end_status == 1) || r == end_status ? R_END
                                                                               : 0;
  if (!got || !(got & s.ends)) {
    fprintf(stderr, "result %lld (%s), allowed mask %u\n", (long long)r, detail, s.ends);
    abort();
  }
  CHECK(r == 0 || detail[0] != '\0' || r == end_status);
  if (!s.open) {
    CHECK(out == s.app_sure);
    CHECK(asked == s.asked);
  }
  CHECK(!asked || s.asked || s.open);
  if (r == 0) {
    /* The stream stays ended. */
    unsigned char b[16];
    CHECK(ak__tls_drx_read(d, &w, b, sizeof(b), &asked, detail, sizeof(detail)) == 0);
  }
  ak__tls_drx_free(d);
  EVP_CIPHER_CTX_free(snd.ctx);
  free(in);
  free(s.wire.p);
  free(s.app.p);
  return 0;
}
