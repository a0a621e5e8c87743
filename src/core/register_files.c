/* register_files.c: registered files and buffers on a loop's ring (fio's
 * registerfiles and fixedbufs): thin, synchronous wrappers over
 * io_uring_register_*, checked to run on the loop's thread. Using a slot or
 * buffer in an op is ak_rw_opts (fs/fs.c). Also the registration of a
 * provided-buffer ring for net/net_bufring.c, so that the layers above core
 * never touch the ring itself.
 *
 * The ring has one file table: while registered sockets
 * (register_sockets.c) hold it, ak_register_files answers -EBUSY; and one
 * buffer table: while registered receive buffers (register_buffers.c) hold
 * it, ak_register_buffers answers -EBUSY.
 *
 * On the epoll backend there is no ring to register with: every call here
 * answers AK_EBACKEND (so a caller's fallback, plain buffers and fds, is
 * taken, as where the kernel refuses).
 *
 * Not here: the ops themselves (fs/fs.c), the ring's setup (loop.c).
 */
#define _GNU_SOURCE
#include <sys/uio.h>

#include "core/loop_internal.h" /* the ring itself */

int ak_register_files(ak_loop *loop, const int *fds, unsigned n)
{
  if (!ak__loop_owned_by_caller(loop))
    return AK_ENOTOWNER;
  if (loop->ep)
    return AK_EBACKEND;
  if (loop->sock_table)
    return -EBUSY; /* registered sockets own the table (register_sockets.c) */
  int rc = io_uring_register_files(&loop->ring, fds, n);
  if (rc == 0)
    loop->files_by_user = true;
  return rc;
}

int ak_register_files_update(ak_loop *loop, unsigned off, const int *fds, unsigned n)
{
  if (!ak__loop_owned_by_caller(loop))
    return AK_ENOTOWNER;
  if (loop->ep)
    return AK_EBACKEND;
  /* liburing returns how many slots changed; the contract is 0 or -errno. */
  int rc = io_uring_register_files_update(&loop->ring, off, fds, n);
  return rc < 0 ? rc : 0;
}

int ak_unregister_files(ak_loop *loop)
{
  if (!ak__loop_owned_by_caller(loop))
    return AK_ENOTOWNER;
  if (loop->ep)
    return AK_EBACKEND;
  if (!loop->files_by_user)
    return -ENXIO; /* none of the caller's: the kernel's answer for no table */
  int rc = io_uring_unregister_files(&loop->ring);
  if (rc == 0)
    loop->files_by_user = false;
  return rc;
}

int ak_register_buffers(ak_loop *loop, const struct iovec *iov, unsigned n)
{
  if (!ak__loop_owned_by_caller(loop))
    return AK_ENOTOWNER;
  if (loop->ep)
    return AK_EBACKEND;
  if (loop->buf_table)
    return -EBUSY; /* registered receive buffers own the table (register_buffers.c) */
  int rc = io_uring_register_buffers(&loop->ring, iov, n);
  if (rc == 0)
    loop->buffers_by_user = true;
  return rc;
}

int ak_unregister_buffers(ak_loop *loop)
{
  if (!ak__loop_owned_by_caller(loop))
    return AK_ENOTOWNER;
  if (loop->ep)
    return AK_EBACKEND;
  if (!loop->buffers_by_user)
    return -ENXIO; /* none of the caller's: the kernel's answer for no table */
  int rc = io_uring_unregister_buffers(&loop->ring);
  if (rc == 0)
    loop->buffers_by_user = false;
  return rc;
}

int ak__loop_register_buf_ring(ak_loop *loop, struct io_uring_buf_reg *reg)
{
  return io_uring_register_buf_ring(&loop->ring, reg, 0);
}

void ak__loop_unregister_buf_ring(ak_loop *loop, int bgid)
{
  io_uring_unregister_buf_ring(&loop->ring, bgid);
}

bool ak__loop_has_buf_ring(const ak_loop *loop)
{
  return loop->features.buf_ring;
}

void ak__loop_count_buf_exhausted(ak_loop *loop)
{
  loop->stats.buf_exhausted++;
}
