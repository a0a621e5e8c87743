/* register_buffers.c: registered receive buffers. A buffer registered with
 * its loop takes a slot of the ring's buffer table (a sparse table made at
 * the first registration), its pages pinned by the kernel; a receive into it
 * (net/net.c, ak_recv_registered) is then a READ_FIXED: the kernel copies
 * into those pages through a bvec, with no page walk, no page fault and no
 * user-copy check per receive. The HTTP client lends each plain
 * connection's receive buffer this way (http/exchange.c).
 *
 * The ring has one buffer table: the caller's (ak_register_buffers, in
 * register_files.c) or this one. Each refuses while the other holds it.
 *
 * On the epoll backend there is no ring: registering answers AK_EBACKEND,
 * and a receive into slot -1 is a plain recv, so callers keep one path.
 *
 * Not here: the ops (net/net.c), the caller's table (register_files.c).
 */
#define _GNU_SOURCE
#include <sys/uio.h>

#include "core/loop_internal.h"

/* The kernel's own limit for one registered buffer. */
#define AK__BUFFER_MAX ((size_t)1 << 30)

static int table_create(ak_loop *loop)
{
  unsigned char *registered = ak__calloc(AK_BUFFER_SLOTS, 1);
  if (!registered)
    return -ENOMEM;
  /* 5.19+: a table of empty slots. Older kernels answer -EINVAL. */
  int rc = io_uring_register_buffers_sparse(&loop->ring, AK_BUFFER_SLOTS);
  if (rc < 0) {
    ak__free(registered);
    return rc;
  }
  loop->buf_registered = registered;
  loop->buf_table = AK_BUFFER_SLOTS;
  return 0;
}

int ak_buffer_register(ak_loop *loop, void *buf, size_t len)
{
  if (!ak__loop_owned_by_caller(loop))
    return AK_ENOTOWNER;
  if (loop->ep)
    return AK_EBACKEND;
  if (!buf || len == 0 || len > AK__BUFFER_MAX)
    return -EINVAL;
  if (loop->buffers_by_user)
    return -EBUSY; /* ak_register_buffers owns the table */
  if (loop->buf_table == 0) {
    int rc = table_create(loop);
    if (rc < 0)
      return rc;
  }
  unsigned slot = 0;
  while (slot < loop->buf_table && loop->buf_registered[slot])
    slot++;
  if (slot == loop->buf_table)
    return -ENOSPC;
  /* The kernel pins the pages now: past RLIMIT_MEMLOCK this is -ENOMEM. */
  struct iovec iov = {.iov_base = buf, .iov_len = len};
  int rc = io_uring_register_buffers_update_tag(&loop->ring, slot, &iov, NULL, 1);
  if (rc < 0)
    return rc;
  loop->buf_registered[slot] = 1;
  return (int)slot;
}

int ak_buffer_unregister(ak_loop *loop, int slot)
{
  if (!ak__loop_owned_by_caller(loop))
    return AK_ENOTOWNER;
  if (loop->ep || slot < 0 || (unsigned)slot >= loop->buf_table || !loop->buf_registered[slot])
    return -ENOENT;
  /* An empty iovec empties the slot. Ops in flight keep the old buffer's
   * pages until they complete (the kernel counts them per table node). */
  struct iovec empty = {.iov_base = NULL, .iov_len = 0};
  int rc = io_uring_register_buffers_update_tag(&loop->ring, (unsigned)slot, &empty, NULL, 1);
  if (rc < 0)
    return rc;
  loop->buf_registered[slot] = 0;
  return 0;
}

void ak__buffers_free(ak_loop *loop)
{
  ak__free(loop->buf_registered); /* the kernel's table goes with the ring */
  loop->buf_registered = NULL;
  loop->buf_table = 0;
}
