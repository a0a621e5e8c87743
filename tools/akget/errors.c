/* errors.c: what an error means to akget: its exit code (docs/akget.md),
 * whether a retry may help, and how long to wait before it. */
#include "akget.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* Errors of the local file system, as opposed to the network's. */
static bool is_local_io(int err)
{
  switch (-err) {
  case ENOSPC: case EDQUOT: case EIO: case EACCES: case EPERM: case EROFS: case EFBIG:
  case ENOENT: case ENOTDIR: case EISDIR: case EEXIST: case ENAMETOOLONG: case EMFILE:
  case ENFILE: case EBADF: case ENOMEM: case EXDEV: case ELOOP:
    return true;
  default:
    return false;
  }
}

int akg_exit_code(int err, int status)
{
  if (err == 0)
    return AKG_EXIT_OK;
  if (err == AKG_EHTTPSTATUS)
    return status >= 400 ? AKG_EXIT_HTTP_STATUS : AKG_EXIT_PROTOCOL;
  if (err == AKG_ECHECKSUM)
    return AKG_EXIT_CHECKSUM;
  if (err <= -10101 && err <= -10101 && err >= -10199)
    return AKG_EXIT_TLS; /* AK_ETLS...: tls.h's range */
  switch (err) {
  case AK_EPROXYURL:
  case AK_EPROXYCONNECT:
  case AK_EPROXYAUTH:
  case AK_EPROXYREFUSED:
  case AK_EPROXYPROTO:
    return AKG_EXIT_PROXY;
  case AK_EHTTPSNOTSUP:
    return AKG_EXIT_TLS;
  case AK_ERESOLVE:
  case AK_EHTTPTRUNCATED:
  case AK_EHTTPHEADTIMEOUT:
  case AK_EHTTPIDLETIMEOUT:
  case AK_EHTTPTOTALTIMEOUT:
  case AK_EHTTPCLOSED:
    return AKG_EXIT_NETWORK;
  case AK_EURL:
  case AK_EURLSCHEME:
  case AK_EHTTPPROTO:
  case AK_EHTTPHEADSIZE:
  case AK_EHTTPLENGTH:
  case AK_EHTTPREDIRECTS:
  case AK_EHTTPCHUNK:
  case AK_EHTTPRANGE:
  case AK_EHTTPTOOBIG:
  case AK_EHTTPDECODE:
    return AKG_EXIT_PROTOCOL;
  default:
    break;
  }
  if (err > -4096 && is_local_io(err))
    return AKG_EXIT_LOCAL_IO;
  return AKG_EXIT_NETWORK; /* -ECONNREFUSED, -ECONNRESET, -ETIMEDOUT, ... */
}

bool akg_should_retry(int err, int status)
{
  if (err == AKG_EHTTPSTATUS)
    return status >= 500 || status == 408 || status == 429;
  /* A proxy that is down may come back; one that refuses will not. */
  return akg_exit_code(err, status) == AKG_EXIT_NETWORK || err == AK_EPROXYCONNECT;
}

int64_t akg_backoff_ns(const akg_opts *o, unsigned attempt, int64_t retry_after_s)
{
  if (retry_after_s >= 0)
    return (retry_after_s > 60 ? 60 : retry_after_s) * INT64_C(1000000000);
  int64_t base = o->retry_base_ns > 0 ? o->retry_base_ns : INT64_C(500000000);
  int64_t cap = INT64_C(30000000000);
  int64_t wait = base;
  for (unsigned i = 1; i < attempt && wait < cap; i++)
    wait *= 2;
  if (wait > cap)
    wait = cap;
  /* Full jitter between half and the whole: retries of many clients spread. */
  uint64_t r = (uint64_t)ak_now_ns() * 6364136223846793005u + attempt;
  return wait / 2 + (int64_t)((r >> 33) % (uint64_t)(wait / 2 + 1));
}

const char *akg_err_text(int err)
{
  if (err == AKG_ECHECKSUM)
    return "checksum mismatch";
  if (err == AKG_EHTTPSTATUS)
    return "HTTP error status";
  return ak_strerror(err);
}
