/* test_akget_input_list.c: akget's -i list reader (tools/akget/input_list.c)
 * from its caller's side, through akg_list_*, over a stream whose stdio
 * buffer is tiny (setvbuf, 1 to 64 bytes, and 4096): every line end, CRLF
 * included, falls across a buffer refill at some size. A comment, blank
 * lines, a URL with an option (CRLF), a line longer than the line limit
 * with a NUL after the cut, one longer without a NUL, an indented comment
 * and a last line without LF: the entries, their errors and their line
 * numbers. Built twice by tests/meson.build: with the in-place read of
 * FILE's buffer (AKG_FILE_READ_PTR, where FILE has it) and without. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "akget.h"

/* The list's text (its length: it holds NULs). */
static char *make_list(size_t *len)
{
  size_t cap = 3 * (size_t)AKG_LIST_LINE_MAX + 256, n = 0;
  char *s = malloc(cap);
  assert_non_null(s);
#define PUT(str) (memcpy(s + n, str, sizeof str - 1), n += sizeof str - 1)
  PUT("# a comment\r\n");             /* line 1 */
  PUT("\r\n");                        /* 2 */
  PUT("http://h/crlf-url\r\n");       /* 3: an entry */
  PUT("  out=o1.bin\r\n");            /* 4: its option */
  PUT("\n");                          /* 5 */
  PUT("   \t\n");                     /* 6: blank */
  PUT("http://h/");                   /* 7: past the limit, a NUL after the cut */
  memset(s + n, 'x', AKG_LIST_LINE_MAX);
  n += AKG_LIST_LINE_MAX;
  PUT("\0tail\r\n");
  PUT("http://h/");                   /* 8: past the limit, no NUL */
  memset(s + n, 'y', AKG_LIST_LINE_MAX);
  n += AKG_LIST_LINE_MAX;
  PUT("\n");
  PUT("\t# an indented comment\r\n"); /* 9 */
  PUT("http://h/last");               /* 10: no LF */
#undef PUT
  assert_true(n <= cap);
  *len = n;
  return s;
}

static void read_with_buffer(const char *text, size_t len, size_t bufsize)
{
  FILE *f = tmpfile();
  assert_non_null(f);
  assert_int_equal(fwrite(text, 1, len, f), len);
  rewind(f);
  static char buf[4096];
  assert_int_equal(setvbuf(f, buf, _IOFBF, bufsize), 0);
  akg_list_reader *r = akg_list_from_file(f, true);
  assert_non_null(r);
  akg_list_entry e;

  assert_int_equal(akg_list_next(r, &e), 1);
  assert_null(e.error);
  assert_string_equal(e.url, "http://h/crlf-url"); /* the CR dropped */
  assert_int_equal(e.line, 3);
  assert_string_equal(e.out, "o1.bin");
  assert_int_equal(e.out_line, 4);
  akg_list_entry_clear(&e);

  assert_int_equal(akg_list_next(r, &e), 1);
  assert_non_null(e.error);
  assert_string_equal(e.error, "line 7: a NUL byte");
  assert_int_equal(e.line, 7);
  akg_list_entry_clear(&e);

  assert_int_equal(akg_list_next(r, &e), 1);
  assert_non_null(e.error);
  assert_string_equal(e.error, "line 8: longer than " AKG_LIST_LINE_MAX_TEXT " bytes");
  assert_int_equal(e.line, 8);
  akg_list_entry_clear(&e);

  assert_int_equal(akg_list_next(r, &e), 1);
  assert_null(e.error);
  assert_string_equal(e.url, "http://h/last");
  assert_int_equal(e.line, 10);
  assert_null(e.out);
  akg_list_entry_clear(&e);

  assert_int_equal(akg_list_next(r, &e), 0);
  akg_list_entry_clear(&e);
  akg_list_close(r);
}

static void test_tiny_buffers(void **state)
{
  (void)state;
  size_t len;
  char *text = make_list(&len);
  for (size_t b = 1; b <= 64; b++)
    read_with_buffer(text, len, b);
  read_with_buffer(text, len, 4096);
  free(text);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_tiny_buffers),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
