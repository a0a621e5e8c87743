/* fuzz_content_disposition.c: libFuzzer target for akget's
 * Content-Disposition parser (tools/akget/content_disposition.c): any
 * bytes as the header's value. Asserts what akget relies on when it names
 * a file: a name given is one path component (no '/' or '\'), not empty,
 * not "." or "..", no leading dot, no control byte, at most 255 bytes; a
 * refusal says why; nothing else comes back. */
#include "akget.h"

#include <assert.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  char *s = malloc(size + 1);
  if (!s)
    return 0;
  memcpy(s, data, size);
  s[size] = '\0';
  char *name = NULL, why[160];
  int rc = akg_cd_filename(s, &name, why, sizeof why);
  assert(rc == 1 || rc == 0 || rc == -1 || rc == -ENOMEM);
  if (rc == 1) {
    size_t n = strlen(name);
    assert(n > 0 && n <= 255);
    assert(name[0] != '.');
    assert(!strchr(name, '/') && !strchr(name, '\\'));
    for (size_t i = 0; i < n; i++)
      assert((unsigned char)name[i] >= 0x20 && (unsigned char)name[i] != 0x7f);
  } else {
    assert(name == NULL);
  }
  if (rc == -1)
    assert(why[0] != '\0');
  free(name);
  free(s);
  return 0;
}
