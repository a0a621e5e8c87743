/* test_aksum_sha256ni.c: aksum's SHA-NI SHA-256/224 (tools/aksum/sha256ni.c), one and several
 * messages at once, against known digests and libcrypto. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/evp.h>

#include "aksum.h"

/* Where the CPU lacks SHA-NI the code must not run; meson shows SKIP. */
#define NEED_SHANI()                                                                               \
  do {                                                                                             \
    if (!aks_sha256ni_usable())                                                                    \
      skip();                                                                                      \
  } while (0)

static void hex(const unsigned char *d, size_t n, char *out)
{
  for (size_t i = 0; i < n; i++)
    sprintf(out + 2 * i, "%02x", d[i]);
}

static void one_shot(const void *msg, size_t len, bool is224, char *out_hex)
{
  aks_sha256 c;
  aks_sha256ni_init(&c, is224);
  aks_sha256 *cs[1] = {&c};
  const unsigned char *d[1] = {msg};
  aks_sha256ni_update_lanes(cs, d, &len, 1);
  unsigned char out[32];
  aks_sha256ni_final(&c, out);
  hex(out, is224 ? 28 : 32, out_hex);
}

static void reference(const void *msg, size_t len, bool is224, unsigned char *out)
{
  unsigned int n;
  assert_int_equal(EVP_Digest(msg, len, out, &n, is224 ? EVP_sha224() : EVP_sha256(), NULL), 1);
  assert_int_equal(n, is224 ? 28 : 32);
}

/* FIPS 180-2's examples, so the code is right on its own, not only equal
 * to libcrypto. */
static void test_known_digests(void **state)
{
  (void)state;
  NEED_SHANI();
  char h[65];
  one_shot("", 0, false, h);
  assert_string_equal(h, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  one_shot("abc", 3, false, h);
  assert_string_equal(h, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  const char *two = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"; /* 56: two blocks */
  one_shot(two, strlen(two), false, h);
  assert_string_equal(h, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  one_shot("abc", 3, true, h);
  assert_string_equal(h, "23097d223405d8228642a477bda255b32aadbce4bda0b3f7e36c9da7");
  size_t mlen = 1000000;
  char *a = malloc(mlen);
  assert_non_null(a);
  memset(a, 'a', mlen);
  one_shot(a, mlen, false, h);
  assert_string_equal(h, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
  free(a);
}

/* Every length around the block and padding edges, one message. */
static void test_lengths_against_libcrypto(void **state)
{
  (void)state;
  NEED_SHANI();
  unsigned char msg[300], ref[32];
  for (size_t i = 0; i < sizeof(msg); i++)
    msg[i] = (unsigned char)(i * 131 + 7);
  for (int is224 = 0; is224 <= 1; is224++) {
    for (size_t len = 0; len <= sizeof(msg); len++) {
      char h[65], r[65];
      one_shot(msg, len, is224, h);
      reference(msg, len, is224, ref);
      hex(ref, is224 ? 28 : 32, r);
      assert_string_equal(h, r);
    }
  }
}

/* Up to four messages of different lengths fed together in pieces of
 * random sizes (0 included), in calls that give some lanes nothing: each
 * message's digest is libcrypto's. Lanes drop out of the interleaved part
 * as they run out of whole blocks, and partial blocks carry over calls. */
static void test_lanes_in_random_pieces(void **state)
{
  (void)state;
  NEED_SHANI();
  enum { MAXLEN = 20000, TRIALS = 300 };
  unsigned char *msg[AKS_SHA256_LANES];
  for (unsigned i = 0; i < AKS_SHA256_LANES; i++) {
    msg[i] = malloc(MAXLEN);
    assert_non_null(msg[i]);
    for (size_t k = 0; k < MAXLEN; k++)
      msg[i][k] = (unsigned char)rand();
  }
  srand(12345);
  for (int t = 0; t < TRIALS; t++) {
    unsigned n = 1 + (unsigned)rand() % AKS_SHA256_LANES;
    bool is224 = rand() % 4 == 0;
    aks_sha256 ctx[AKS_SHA256_LANES];
    size_t len[AKS_SHA256_LANES], done[AKS_SHA256_LANES];
    for (unsigned i = 0; i < n; i++) {
      aks_sha256ni_init(&ctx[i], is224);
      /* Short, block-sized and long messages, some equal. */
      int kind = rand() % 4;
      len[i] = kind == 0   ? (size_t)rand() % 130
               : kind == 1 ? 64 * (size_t)(rand() % 40)
                           : (size_t)rand() % MAXLEN;
      done[i] = 0;
    }
    for (;;) {
      aks_sha256 *cs[AKS_SHA256_LANES];
      const unsigned char *d[AKS_SHA256_LANES];
      size_t l[AKS_SHA256_LANES];
      unsigned k = 0;
      bool left = false;
      for (unsigned i = 0; i < n; i++) {
        if (done[i] < len[i])
          left = true;
        if (done[i] == len[i] || rand() % 5 == 0)
          continue; /* this lane sits this call out */
        size_t piece = (size_t)rand() % 3000;
        if (piece > len[i] - done[i])
          piece = len[i] - done[i];
        cs[k] = &ctx[i];
        d[k] = msg[i] + done[i];
        l[k] = piece;
        done[i] += piece;
        k++;
      }
      if (!left)
        break;
      if (k)
        aks_sha256ni_update_lanes(cs, d, l, k);
    }
    for (unsigned i = 0; i < n; i++) {
      unsigned char out[32], ref[32];
      aks_sha256ni_final(&ctx[i], out);
      reference(msg[i], len[i], is224, ref);
      assert_memory_equal(out, ref, is224 ? 28 : 32);
    }
  }
  for (unsigned i = 0; i < AKS_SHA256_LANES; i++)
    free(msg[i]);
}

/* Four 1 MiB chunks at once, as the pipeline gives them, one lane's chunk
 * shorter (the last of a file): the long run of interleaved blocks. */
static void test_four_chunks(void **state)
{
  (void)state;
  NEED_SHANI();
  size_t mib = 1u << 20;
  unsigned char *buf = malloc(4 * mib);
  assert_non_null(buf);
  for (size_t k = 0; k < 4 * mib; k++)
    buf[k] = (unsigned char)(k * 2654435761u >> 13);
  aks_sha256 ctx[4];
  aks_sha256 *cs[4];
  const unsigned char *d[4];
  size_t l[4] = {mib, mib, mib - 1000, mib};
  for (unsigned i = 0; i < 4; i++) {
    aks_sha256ni_init(&ctx[i], false);
    cs[i] = &ctx[i];
    d[i] = buf + i * mib;
  }
  aks_sha256ni_update_lanes(cs, d, l, 4);
  for (unsigned i = 0; i < 4; i++) {
    unsigned char out[32], ref[32];
    aks_sha256ni_final(&ctx[i], out);
    reference(d[i], l[i], false, ref);
    assert_memory_equal(out, ref, 32);
  }
  free(buf);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_known_digests),
      cmocka_unit_test(test_lengths_against_libcrypto),
      cmocka_unit_test(test_lanes_in_random_pieces),
      cmocka_unit_test(test_four_chunks),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
