/* asynckit/version.h: the library's version, at compile time and at run time.
 *
 * ABI promise: within one major version, symbols are only added, never
 * removed or changed; the shared library's soname carries the major version.
 */
#ifndef ASYNCKIT_VERSION_H
#define ASYNCKIT_VERSION_H

#include "api.h"

#ifdef __cplusplus
extern "C" {
#endif

#define AK_VERSION_MAJOR 0
#define AK_VERSION_MINOR 1
#define AK_VERSION_PATCH 0

/* 0xMMmmpp: compare with >= in #if to test for a feature's release. */
#define AK_VERSION_HEX \
  ((AK_VERSION_MAJOR << 16) | (AK_VERSION_MINOR << 8) | AK_VERSION_PATCH)

/* The version of the library actually loaded, as AK_VERSION_HEX. */
AK_API unsigned ak_version(void);

/* The same as "major.minor.patch"; a static string. */
AK_API const char *ak_version_string(void);

#ifdef __cplusplus
}
#endif
#endif /* ASYNCKIT_VERSION_H */
