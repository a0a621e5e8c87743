/* blake2b.c: BLAKE2b with any output length from 1 to 64 bytes (RFC 7693),
 * for b2sum's -l/--length. The output length is a parameter of the hash
 * (it is in the first word of the state), not a cut of the 64-byte digest,
 * and libcrypto 3.0's BLAKE2B-512 has no way to set it; so aksum has its
 * own. Written from the RFC's description; unkeyed only. libcrypto's
 * BLAKE2b is portable C too, so this runs at about its speed; the full
 * 512-bit hash without -l still comes from libcrypto (hash.c).
 *
 * Checked against b2sum -l for every length from 8 to 512 bits
 * (tests/test_aksum_compat.sh) and against libcrypto at 512.
 */
#include "aksum.h"

#include <string.h>

static const uint64_t blake2b_iv[8] = {
    0x6a09e667f3bcc908ULL, 0xbb67ae8584caa73bULL, 0x3c6ef372fe94f82bULL, 0xa54ff53a5f1d36f1ULL,
    0x510e527fade682d1ULL, 0x9b05688c2b3e6c1fULL, 0x1f83d9abfb41bd6bULL, 0x5be0cd19137e2179ULL,
};

/* The message word each G of a round takes (RFC 7693, 2.7); rounds 10 and
 * 11 use the permutations of rounds 0 and 1 again. */
static const uint8_t sigma[12][16] = {
    {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15},
    {14, 10, 4, 8, 9, 15, 13, 6, 1, 12, 0, 2, 11, 7, 5, 3},
    {11, 8, 12, 0, 5, 2, 15, 13, 10, 14, 3, 6, 7, 1, 9, 4},
    {7, 9, 3, 1, 13, 12, 11, 14, 2, 6, 5, 10, 4, 0, 15, 8},
    {9, 0, 5, 7, 2, 4, 10, 15, 14, 1, 11, 12, 6, 8, 3, 13},
    {2, 12, 6, 10, 0, 11, 8, 3, 4, 13, 7, 5, 15, 14, 1, 9},
    {12, 5, 1, 15, 14, 13, 4, 10, 0, 7, 6, 3, 9, 2, 8, 11},
    {13, 11, 7, 14, 12, 1, 3, 9, 5, 0, 15, 4, 8, 6, 2, 10},
    {6, 15, 14, 9, 11, 3, 0, 8, 12, 2, 13, 7, 1, 4, 10, 5},
    {10, 2, 8, 4, 7, 6, 1, 5, 15, 11, 9, 14, 3, 12, 13, 0},
    {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15},
    {14, 10, 4, 8, 9, 15, 13, 6, 1, 12, 0, 2, 11, 7, 5, 3},
};

static inline uint64_t rotr64(uint64_t x, unsigned n)
{
  return (x >> n) | (x << (64 - n));
}

static inline uint64_t load64_le(const unsigned char *p)
{
  uint64_t v = 0;
  for (int i = 7; i >= 0; i--)
    v = v << 8 | p[i];
  return v;
}

#define G(a, b, c, d, x, y)                                                                        \
  do {                                                                                             \
    v[a] = v[a] + v[b] + (x);                                                                      \
    v[d] = rotr64(v[d] ^ v[a], 32);                                                                \
    v[c] = v[c] + v[d];                                                                            \
    v[b] = rotr64(v[b] ^ v[c], 24);                                                                \
    v[a] = v[a] + v[b] + (y);                                                                      \
    v[d] = rotr64(v[d] ^ v[a], 16);                                                                \
    v[c] = v[c] + v[d];                                                                            \
    v[b] = rotr64(v[b] ^ v[c], 63);                                                                \
  } while (0)

/* F: one 128-byte block into the state; last marks the final block. */
static void compress(aks_blake2b *c, const unsigned char *block, bool last)
{
  uint64_t v[16], m[16];
  for (int i = 0; i < 16; i++)
    m[i] = load64_le(block + 8 * i);
  for (int i = 0; i < 8; i++) {
    v[i] = c->h[i];
    v[i + 8] = blake2b_iv[i];
  }
  v[12] ^= c->t[0];
  v[13] ^= c->t[1];
  if (last)
    v[14] = ~v[14];
  for (int r = 0; r < 12; r++) {
    const uint8_t *s = sigma[r];
    G(0, 4, 8, 12, m[s[0]], m[s[1]]);
    G(1, 5, 9, 13, m[s[2]], m[s[3]]);
    G(2, 6, 10, 14, m[s[4]], m[s[5]]);
    G(3, 7, 11, 15, m[s[6]], m[s[7]]);
    G(0, 5, 10, 15, m[s[8]], m[s[9]]);
    G(1, 6, 11, 12, m[s[10]], m[s[11]]);
    G(2, 7, 8, 13, m[s[12]], m[s[13]]);
    G(3, 4, 9, 14, m[s[14]], m[s[15]]);
  }
  for (int i = 0; i < 8; i++)
    c->h[i] ^= v[i] ^ v[i + 8];
}

/* The byte counter is 128 bits: t[1] takes the carry. */
static void count(aks_blake2b *c, uint64_t n)
{
  c->t[0] += n;
  if (c->t[0] < n)
    c->t[1]++;
}

void aks_blake2b_init(aks_blake2b *c, size_t out_len)
{
  memset(c, 0, sizeof(*c));
  memcpy(c->h, blake2b_iv, sizeof(c->h));
  /* The parameter block's first word: digest length, key length 0,
   * fanout 1, depth 1 (sequential mode). */
  c->h[0] ^= 0x01010000ULL ^ (uint64_t)out_len;
  c->out_len = out_len;
}

void aks_blake2b_update(aks_blake2b *c, const void *data, size_t len)
{
  const unsigned char *in = data;
  /* The last block is compressed by final with the "last" flag, so a
   * full buffer is compressed only once more bytes are known to follow. */
  while (len > 0) {
    if (c->buf_len == sizeof(c->buf)) {
      count(c, sizeof(c->buf));
      compress(c, c->buf, false);
      c->buf_len = 0;
    }
    if (c->buf_len == 0) {
      while (len > sizeof(c->buf)) { /* whole blocks straight from the input */
        count(c, sizeof(c->buf));
        compress(c, in, false);
        in += sizeof(c->buf);
        len -= sizeof(c->buf);
      }
    }
    size_t take = sizeof(c->buf) - c->buf_len;
    if (take > len)
      take = len;
    memcpy(c->buf + c->buf_len, in, take);
    c->buf_len += take;
    in += take;
    len -= take;
  }
}

void aks_blake2b_final(aks_blake2b *c, unsigned char *out)
{
  count(c, c->buf_len);
  memset(c->buf + c->buf_len, 0, sizeof(c->buf) - c->buf_len);
  compress(c, c->buf, true);
  for (size_t i = 0; i < c->out_len; i++)
    out[i] = (unsigned char)(c->h[i / 8] >> (8 * (i % 8)));
}
