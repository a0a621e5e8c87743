/* version.c: the run-time version query. */
#include "asynckit/version.h"

#define AK__STR2(x) #x
#define AK__STR(x) AK__STR2(x)

unsigned ak_version(void) { return AK_VERSION_HEX; }

const char *ak_version_string(void) {
  return AK__STR(AK_VERSION_MAJOR) "." AK__STR(AK_VERSION_MINOR) "." AK__STR(AK_VERSION_PATCH);
}
