/* test_akget_record.c: akget's control record (tools/akget/resume_record.c):
 * what it stores comes back; a truncated, garbage, torn, foreign or lying
 * record is never used; the extent arithmetic merges, finds gaps, and
 * forgets rather than claims when it runs out of room. */
#define _GNU_SOURCE /* memfd_create */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cmocka.h>

#include "akget.h"

static const char *url = "http://example.test/big.bin";

static int new_fd(void)
{
  int fd = memfd_create("ctl", 0);
  assert_true(fd >= 0);
  return fd;
}

static akg_record *new_record(void)
{
  akg_record *r = calloc(1, sizeof *r);
  assert_non_null(r);
  akg_record_clear(r);
  return r;
}

/* A record of two ranges with both validators, stored twice (both slots). */
static void store_sample(int fd, akg_record *r)
{
  r->size = 1000000;
  snprintf(r->etag, sizeof r->etag, "\"abc-123\"");
  snprintf(r->last_modified, sizeof r->last_modified, "Sun, 06 Dec 2026 17:00:00 GMT");
  akg_extents_add(r, 0, 1000);
  akg_extents_add(r, 500000, 2000);
  assert_int_equal(akg_record_store(fd, url, r), 0);
  assert_int_equal(akg_record_store(fd, url, r), 0);
}

static void test_round_trip(void **state)
{
  (void)state;
  int fd = new_fd();
  akg_record *r = new_record(), *back = new_record();
  store_sample(fd, r);
  char why[200];
  assert_int_equal(akg_record_load(fd, url, back, why, sizeof why), 1);
  assert_int_equal(back->seq, r->seq);
  assert_int_equal(back->size, 1000000);
  assert_string_equal(back->etag, "\"abc-123\"");
  assert_string_equal(back->last_modified, "Sun, 06 Dec 2026 17:00:00 GMT");
  assert_int_equal(back->n, 2);
  assert_int_equal(back->ext[1].start, 500000);
  assert_int_equal(back->ext[1].len, 2000);
  assert_int_equal(akg_extents_bytes(back), 3000);
  close(fd);
  free(r);
  free(back);
}

static void test_empty_is_none(void **state)
{
  (void)state;
  int fd = new_fd();
  akg_record *r = new_record();
  char why[200];
  assert_int_equal(akg_record_load(fd, url, r, why, sizeof why), 0);
  close(fd);
  free(r);
}

static void test_truncated(void **state)
{
  (void)state;
  int fd = new_fd();
  akg_record *r = new_record();
  store_sample(fd, r);
  assert_int_equal(ftruncate(fd, AKG_REC_SLOT + 100), 0);
  char why[200];
  assert_int_equal(akg_record_load(fd, url, r, why, sizeof why), -1);
  assert_non_null(strstr(why, "truncated"));
  close(fd);
  free(r);
}

static void test_garbage(void **state)
{
  (void)state;
  int fd = new_fd();
  akg_record *r = new_record();
  unsigned char junk[2 * AKG_REC_SLOT];
  for (size_t i = 0; i < sizeof junk; i++)
    junk[i] = (unsigned char)(i * 7919 + 13);
  assert_int_equal(pwrite(fd, junk, sizeof junk, 0), (ssize_t)sizeof junk);
  char why[200];
  assert_int_equal(akg_record_load(fd, url, r, why, sizeof why), -1);
  close(fd);
  free(r);
}

static void test_other_url(void **state)
{
  (void)state;
  int fd = new_fd();
  akg_record *r = new_record();
  store_sample(fd, r);
  char why[200];
  assert_int_equal(akg_record_load(fd, "http://example.test/big.bin?v=2", r, why, sizeof why), -1);
  assert_non_null(strstr(why, "another URL"));
  close(fd);
  free(r);
}

/* A store torn by a crash: the newest slot is damaged, the older one is
 * used (the record lags, never leads). */
static void test_torn_newest_slot(void **state)
{
  (void)state;
  int fd = new_fd();
  akg_record *r = new_record(), *back = new_record();
  store_sample(fd, r); /* seq 1 in slot 1, seq 2 in slot 0 */
  akg_extents_add(r, 1000, 5000);
  assert_int_equal(akg_record_store(fd, url, r), 0); /* seq 3: slot 1 */
  unsigned char b = 0x5a;
  assert_int_equal(pwrite(fd, &b, 1, AKG_REC_SLOT + 700), 1); /* tear it */
  char why[200];
  assert_int_equal(akg_record_load(fd, url, back, why, sizeof why), 1);
  assert_int_equal(back->seq, 2);
  assert_int_equal(akg_extents_bytes(back), 3000);
  /* Both slots damaged: nothing is used. */
  assert_int_equal(pwrite(fd, &b, 1, 700), 1);
  assert_int_equal(akg_record_load(fd, url, back, why, sizeof why), -1);
  assert_non_null(strstr(why, "checksum"));
  close(fd);
  free(r);
  free(back);
}

/* A record whose checksum is right but whose extents pass its size is not
 * akget's: rejected. */
static void test_extents_past_size(void **state)
{
  (void)state;
  int fd = new_fd();
  akg_record *r = new_record();
  r->size = 100;
  akg_extents_add(r, 50, 100);
  assert_int_equal(akg_record_store(fd, url, r), 0);
  assert_int_equal(akg_record_store(fd, url, r), 0);
  char why[200];
  assert_int_equal(akg_record_load(fd, url, r, why, sizeof why), -1);
  close(fd);
  free(r);
}

static void test_extents_merge_and_gaps(void **state)
{
  (void)state;
  akg_record *r = new_record();
  akg_extents_add(r, 10, 10);
  akg_extents_add(r, 30, 10);
  akg_extents_add(r, 0, 0); /* nothing */
  assert_int_equal(r->n, 2);
  akg_extent g[8];
  unsigned n = akg_extents_gaps(r, 50, g, 8);
  assert_int_equal(n, 3);
  assert_int_equal(g[0].start, 0);
  assert_int_equal(g[0].len, 10);
  assert_int_equal(g[1].start, 20);
  assert_int_equal(g[1].len, 10);
  assert_int_equal(g[2].start, 40);
  assert_int_equal(g[2].len, 10);
  akg_extents_add(r, 20, 10); /* touching both: one extent */
  assert_int_equal(r->n, 1);
  assert_int_equal(r->ext[0].start, 10);
  assert_int_equal(r->ext[0].len, 30);
  akg_extents_add(r, 5, 40); /* overlapping */
  assert_int_equal(r->n, 1);
  assert_int_equal(r->ext[0].start, 5);
  assert_int_equal(r->ext[0].len, 40);
  assert_int_equal(akg_extents_gaps(r, 45, g, 8), 1);
  akg_extents_add(r, 0, 5);
  assert_int_equal(akg_extents_gaps(r, 45, g, 8), 0);
  free(r);
}

/* More ranges than the record holds: the shortest are forgotten (fetched
 * again), never merged into a claim of bytes not written. */
static void test_extents_overflow_forgets(void **state)
{
  (void)state;
  akg_record *r = new_record();
  int64_t added = 0;
  for (int i = 0; i < AKG_REC_MAX_EXTENTS + 10; i++) {
    int64_t len = i == 3 ? 1 : 100 + i;
    akg_extents_add(r, (int64_t)i * 1000, len);
    added += len;
  }
  assert_int_equal(r->n, AKG_REC_MAX_EXTENTS);
  assert_true(akg_extents_bytes(r) < added);
  for (unsigned i = 0; i < r->n; i++) {
    assert_int_equal(r->ext[i].start % 1000, 0);
    assert_true(r->ext[i].len >= 100); /* the 1-byte one went first */
  }
  free(r);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_round_trip),
      cmocka_unit_test(test_empty_is_none),
      cmocka_unit_test(test_truncated),
      cmocka_unit_test(test_garbage),
      cmocka_unit_test(test_other_url),
      cmocka_unit_test(test_torn_newest_slot),
      cmocka_unit_test(test_extents_past_size),
      cmocka_unit_test(test_extents_merge_and_gaps),
      cmocka_unit_test(test_extents_overflow_forgets),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
