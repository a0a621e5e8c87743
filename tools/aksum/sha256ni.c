/* sha256ni.c: SHA-256 and SHA-224 on the CPU's SHA-NI instructions, several
 * messages at once on one thread (multi-buffer): the context, padding, and a
 * compression function that runs up to AKS_SHA256_LANES independent
 * messages' blocks interleaved.
 *
 * Why aksum hashes these two itself instead of through libcrypto (hash.c):
 * one SHA-256 is a chain of 32 SHA256RNDS2 per 64-byte block, each waiting
 * for the one before, so a single message runs at the instruction's latency
 * and leaves the unit idle most of the time. libcrypto's SHA-NI code hashes
 * one message (about 1600 MiB/s per core here); four messages interleaved
 * fill the gaps: 2700 to 2900 MiB/s per core on these machines (EPYC,
 * docs/aksum.md), against about 2000 for two. aksum has many files to hash
 * at once, so the pipeline gives one pool task several files (pipeline.c).
 *
 * Not here: which algorithm a run uses and the libcrypto ones (hash.c), the
 * grouping of files into tasks (pipeline.c). Used only where the CPU has
 * SHA-NI, SSSE3 and SSE4.1 (aks_sha256ni_usable); elsewhere hash.c keeps
 * libcrypto. The output is checked against libcrypto and sha256sum by the
 * tests (tests/test_aksum_compat.sh, "lanes").
 */
#include "aksum.h"

#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#include <immintrin.h>
#define HAVE_SHANI_CODE 1
#else
#define HAVE_SHANI_CODE 0
#endif

static const uint32_t iv256[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                                  0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
static const uint32_t iv224[8] = {0xc1059ed8, 0x367cd507, 0x3070dd17, 0xf70e5939,
                                  0xffc00b31, 0x68581511, 0x64f98fa7, 0xbefa4fa4};

bool aks_sha256ni_usable(void)
{
#if HAVE_SHANI_CODE
  unsigned a, b, c, d;
  if (!__get_cpuid(1, &a, &b, &c, &d))
    return false;
  bool ssse3 = c & (1u << 9), sse41 = c & (1u << 19);
  if (!__get_cpuid_count(7, 0, &a, &b, &c, &d))
    return false;
  bool sha = b & (1u << 29);
  return ssse3 && sse41 && sha;
#else
  return false;
#endif
}

void aks_sha256ni_init(aks_sha256 *c, bool is224)
{
  memcpy(c->h, is224 ? iv224 : iv256, sizeof(c->h));
  c->bytes = 0;
  c->out_len = is224 ? 28 : 32;
}

#if HAVE_SHANI_CODE

static const uint32_t K[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
};

#define SHANI __attribute__((target("sha,sse4.1,ssse3")))
#define SHANI_INLINE SHANI __attribute__((always_inline)) static inline

/* SHA256RNDS2 wants the state as ABEF and CDGH; h[] is A..H. */
SHANI_INLINE void state_load(const uint32_t h[8], __m128i *abef, __m128i *cdgh)
{
  __m128i dcba = _mm_loadu_si128((const __m128i *)&h[0]);
  __m128i hgfe = _mm_loadu_si128((const __m128i *)&h[4]);
  __m128i cdab = _mm_shuffle_epi32(dcba, 0xB1);
  __m128i efgh = _mm_shuffle_epi32(hgfe, 0x1B);
  *abef = _mm_alignr_epi8(cdab, efgh, 8);
  *cdgh = _mm_blend_epi16(efgh, cdab, 0xF0);
}

SHANI_INLINE void state_store(uint32_t h[8], __m128i abef, __m128i cdgh)
{
  __m128i feba = _mm_shuffle_epi32(abef, 0x1B);
  __m128i dchg = _mm_shuffle_epi32(cdgh, 0xB1);
  _mm_storeu_si128((__m128i *)&h[0], _mm_blend_epi16(feba, dchg, 0xF0)); /* DCBA */
  _mm_storeu_si128((__m128i *)&h[4], _mm_alignr_epi8(dchg, feba, 8));    /* HGFE */
}

/* nblocks 64-byte blocks of each of `lanes` messages (a constant where this
 * is inlined, so the loops unroll and the lanes' instructions interleave:
 * while one lane's SHA256RNDS2 waits for its previous round, the others'
 * run). Message schedule, four words at a time: W[t] = sigma1(W[t-2]) +
 * W[t-7] + sigma0(W[t-15]) + W[t-16], as MSG1 (sigma0 part), an add of the
 * W[t-7] words (ALIGNR of the last two groups), and MSG2 (sigma1 part). */
SHANI_INLINE void blocks_lanes(unsigned lanes, uint32_t *const h[], const unsigned char *const in[],
                               size_t nblocks)
{
  const __m128i bswap = _mm_set_epi64x(0x0c0d0e0f08090a0bULL, 0x0405060700010203ULL);
  __m128i abef[AKS_SHA256_LANES], cdgh[AKS_SHA256_LANES];
  const unsigned char *p[AKS_SHA256_LANES];
#pragma GCC unroll 4
  for (unsigned x = 0; x < lanes; x++) {
    state_load(h[x], &abef[x], &cdgh[x]);
    p[x] = in[x];
  }
  for (; nblocks; nblocks--) {
    __m128i abef0[AKS_SHA256_LANES], cdgh0[AKS_SHA256_LANES], w[AKS_SHA256_LANES][4];
#pragma GCC unroll 4
    for (unsigned x = 0; x < lanes; x++) {
      abef0[x] = abef[x];
      cdgh0[x] = cdgh[x];
    }
#pragma GCC unroll 16
    for (unsigned g = 0; g < 16; g++) {
      __m128i k4 = _mm_loadu_si128((const __m128i *)&K[4 * g]);
#pragma GCC unroll 4
      for (unsigned x = 0; x < lanes; x++) {
        __m128i m;
        if (g < 4) {
          m = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(p[x] + 16 * g)), bswap);
        } else {
          m = _mm_sha256msg1_epu32(w[x][g & 3], w[x][(g + 1) & 3]);
          m = _mm_add_epi32(m, _mm_alignr_epi8(w[x][(g + 3) & 3], w[x][(g + 2) & 3], 4));
          m = _mm_sha256msg2_epu32(m, w[x][(g + 3) & 3]);
        }
        w[x][g & 3] = m;
        __m128i wk = _mm_add_epi32(m, k4);
        cdgh[x] = _mm_sha256rnds2_epu32(cdgh[x], abef[x], wk);
        abef[x] = _mm_sha256rnds2_epu32(abef[x], cdgh[x], _mm_shuffle_epi32(wk, 0x0E));
      }
    }
#pragma GCC unroll 4
    for (unsigned x = 0; x < lanes; x++) {
      abef[x] = _mm_add_epi32(abef[x], abef0[x]);
      cdgh[x] = _mm_add_epi32(cdgh[x], cdgh0[x]);
      p[x] += 64;
    }
  }
#pragma GCC unroll 4
  for (unsigned x = 0; x < lanes; x++)
    state_store(h[x], abef[x], cdgh[x]);
}

/* One function per lane count, so each is unrolled for its count. */
_Static_assert(AKS_SHA256_LANES == 4, "blocks1..blocks4 below cover 1 to 4 lanes");

SHANI static void blocks1(uint32_t *const h[], const unsigned char *const in[], size_t n)
{
  blocks_lanes(1, h, in, n);
}
SHANI static void blocks2(uint32_t *const h[], const unsigned char *const in[], size_t n)
{
  blocks_lanes(2, h, in, n);
}
SHANI static void blocks3(uint32_t *const h[], const unsigned char *const in[], size_t n)
{
  blocks_lanes(3, h, in, n);
}
SHANI static void blocks4(uint32_t *const h[], const unsigned char *const in[], size_t n)
{
  blocks_lanes(4, h, in, n);
}

static void blocks(unsigned lanes, uint32_t *const h[], const unsigned char *const in[], size_t n)
{
  static void (*const by_lanes[AKS_SHA256_LANES + 1])(
      uint32_t *const[], const unsigned char *const[], size_t) = {NULL, blocks1, blocks2, blocks3,
                                                                  blocks4};
  by_lanes[lanes](h, in, n);
}

#else /* no SHA-NI code on this architecture: aks_sha256ni_usable() is false */

static void blocks(unsigned lanes, uint32_t *const h[], const unsigned char *const in[], size_t n)
{
  (void)lanes, (void)h, (void)in, (void)n;
  abort();
}

#endif

static size_t buffered(const aks_sha256 *c)
{
  return (size_t)(c->bytes % 64);
}

static void block1(aks_sha256 *c, const unsigned char *block)
{
  uint32_t *h[1] = {c->h};
  const unsigned char *in[1] = {block};
  blocks(1, h, in, 1);
}

void aks_sha256ni_update_lanes(aks_sha256 *const c[], const unsigned char *const data[],
                               const size_t len[], unsigned n)
{
  const unsigned char *p[AKS_SHA256_LANES];
  size_t left[AKS_SHA256_LANES];
  /* First each lane's partial block, so the rest starts on a block. */
  for (unsigned i = 0; i < n; i++) {
    p[i] = data[i];
    left[i] = len[i];
    size_t have = buffered(c[i]);
    if (have && left[i]) {
      size_t take = 64 - have < left[i] ? 64 - have : left[i];
      memcpy(c[i]->buf + have, p[i], take);
      p[i] += take;
      left[i] -= take;
      c[i]->bytes += take;
      if (have + take == 64)
        block1(c[i], c[i]->buf);
    }
  }
  /* Then the whole blocks, the lanes that have some together, as many
   * blocks at a time as the shortest of them has. */
  for (;;) {
    uint32_t *h[AKS_SHA256_LANES];
    const unsigned char *in[AKS_SHA256_LANES];
    unsigned idx[AKS_SHA256_LANES], k = 0;
    size_t common = SIZE_MAX;
    for (unsigned i = 0; i < n; i++) {
      if (left[i] < 64)
        continue;
      idx[k] = i;
      h[k] = c[i]->h;
      in[k] = p[i];
      k++;
      if (left[i] / 64 < common)
        common = left[i] / 64;
    }
    if (k == 0)
      break;
    blocks(k, h, in, common);
    for (unsigned j = 0; j < k; j++) {
      unsigned i = idx[j];
      p[i] += common * 64;
      left[i] -= common * 64;
      c[i]->bytes += common * 64;
    }
  }
  /* The tails wait in the buffer for the next update or the final. */
  for (unsigned i = 0; i < n; i++) {
    if (left[i]) {
      memcpy(c[i]->buf + buffered(c[i]), p[i], left[i]);
      c[i]->bytes += left[i];
    }
  }
}

void aks_sha256ni_final(aks_sha256 *c, unsigned char *out)
{
  uint64_t bits = c->bytes * 8;
  size_t have = buffered(c);
  c->buf[have++] = 0x80;
  if (have > 56) {
    memset(c->buf + have, 0, 64 - have);
    block1(c, c->buf);
    have = 0;
  }
  memset(c->buf + have, 0, 56 - have);
  for (int i = 0; i < 8; i++)
    c->buf[63 - i] = (unsigned char)(bits >> (8 * i));
  block1(c, c->buf);
  for (unsigned i = 0; i < c->out_len / 4; i++) {
    out[4 * i] = (unsigned char)(c->h[i] >> 24);
    out[4 * i + 1] = (unsigned char)(c->h[i] >> 16);
    out[4 * i + 2] = (unsigned char)(c->h[i] >> 8);
    out[4 * i + 3] = (unsigned char)c->h[i];
  }
}
