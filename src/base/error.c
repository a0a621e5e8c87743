/* error.c: ak_strerror and ak_err_name, generated from AK_ERRNO_MAP for the
 * library's own errors and from glibc's tables for -errno. */
#define _GNU_SOURCE
#include <string.h>

#include "asynckit/error.h"

const char *ak_strerror(int err) {
  switch (err) {
#define AK__ERR_MSG(name, num, msg) \
  case num:                         \
    return msg;
    AK_ERRNO_MAP(AK__ERR_MSG)
#undef AK__ERR_MSG
  case 0:
    return "success";
  default:
    break;
  }
  if (err < 0 && err > -4096) {
    /* strerrordesc_np, unlike strerror, is thread-safe and never formats. */
    const char *desc = strerrordesc_np(-err);
    if (desc)
      return desc;
  }
  return "unknown error";
}

const char *ak_err_name(int err) {
  switch (err) {
#define AK__ERR_NAME(name, num, msg) \
  case num:                          \
    return #name;
    AK_ERRNO_MAP(AK__ERR_NAME)
#undef AK__ERR_NAME
  case 0:
    return "OK";
  default:
    break;
  }
  if (err < 0 && err > -4096) {
    const char *name = strerrorname_np(-err);
    if (name)
      return name;
  }
  return "UNKNOWN";
}
