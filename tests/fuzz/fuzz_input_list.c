/* fuzz_input_list.c: libFuzzer target for akget's -i list parser
 * (tools/akget/input_list.c): any bytes, read entry by entry from a memory
 * stream, then every out=/dir= judged by akg_list_path_problem. Asserts:
 * the reading ends; entries come in line order; a URL is not empty and
 * holds no blank, CR or LF; an error names its line ("line N: "); an entry
 * without error has a URL; a path judged fine is relative, with no ".."
 * and no empty component. */
#include <assert.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "akget.h"

static void check_path(const char *p)
{
  if (!p || akg_list_path_problem(p))
    return;
  assert(p[0] != '/' && p[0] != '\0');
  assert(!strstr(p, "//"));
  size_t n = strlen(p);
  assert(p[n - 1] != '/');
  assert(strcmp(p, "..") != 0 && strncmp(p, "../", 3) != 0);
  assert(!strstr(p, "/../") && (n < 3 || strcmp(p + n - 3, "/..") != 0));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  if (size == 0)
    return 0;
  FILE *f = fmemopen((void *)data, size, "r");
  if (!f)
    return 0;
  akg_list_reader *r = akg_list_from_file(f, true);
  if (!r) {
    fclose(f);
    return 0;
  }
  akg_list_entry e;
  unsigned long last = 0;
  size_t entries = 0;
  int rc;
  while ((rc = akg_list_next(r, &e)) == 1) {
    assert(e.line > last);
    last = e.line;
    assert(++entries <= size); /* at least a byte per entry: the reading ends */
    if (e.url) {
      assert(e.url[0] != '\0');
      assert(!strpbrk(e.url, " \t\r\n"));
    }
    if (e.error)
      assert(strncmp(e.error, "line ", 5) == 0);
    else
      assert(e.url || e.oom);
    check_path(e.out);
    check_path(e.dir);
    for (size_t i = 0; i < e.header_count; i++)
      assert(strchr(e.headers[i], ':'));
    akg_list_entry_clear(&e);
  }
  assert(rc == 0);
  akg_list_close(r);
  return 0;
}
