/* register_sockets.c: registered sockets. A socket registered with its loop sits
 * in the ring's file table at the slot of its own fd number, and every ring
 * op on that fd then carries IOSQE_FIXED_FILE: the kernel skips the fd-table
 * lookup and the reference count it takes and drops on every op (liburing's
 * fixed files; about 1% of the CPU of a 64-byte ping-pong). The fd stays the
 * caller's handle, so no call changes; op.c adds the flag when it prepares an
 * op marked AK__OPF_SOCKET.
 *
 * Slot == fd keeps the lookup one byte read and needs no map: the table is
 * sized once, at the first registration, to RLIMIT_NOFILE's soft limit
 * (which bounds every fd the process can have), at most AK__SOCK_TABLE_MAX.
 *
 * The ring holds its own reference to a registered socket. ak_close drops it
 * first; a socket closed any other way must be unregistered first, or the
 * ring keeps it open (the peer sees no FIN) and a new fd of that number
 * would be sent to the old socket.
 *
 * On the epoll backend, registering is a no-op (0 for an open fd, -EBADF
 * otherwise) and so is unregistering (0): nothing changes for the caller,
 * as nothing does on the ring, and there is no fd lookup to skip.
 *
 * Not here: the file table for file ops (register_files.c, which refuses to
 * share the table), the ops themselves (net/net.c, net/net_stream.c).
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <sys/resource.h>

#include "core/loop_internal.h"

enum { AK__SOCK_TABLE_MAX = 65536 };

static int table_create(ak_loop *loop)
{
  struct rlimit rl;
  rlim_t n = AK__SOCK_TABLE_MAX;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < n)
    n = rl.rlim_cur;
  unsigned char *registered = ak__calloc((size_t)n, 1);
  if (!registered)
    return -ENOMEM;
  /* 5.19+: a table of empty slots. Older kernels answer -EINVAL. */
  int rc = io_uring_register_files_sparse(&loop->ring, (unsigned)n);
  if (rc < 0) {
    ak__free(registered);
    return rc;
  }
  loop->sock_registered = registered;
  loop->sock_table = (unsigned)n;
  return 0;
}

int ak_socket_register(ak_loop *loop, int fd)
{
  if (!ak__loop_owned_by_caller(loop))
    return AK_ENOTOWNER;
  if (fd < 0)
    return -EBADF;
  if (loop->ep)
    return fcntl(fd, F_GETFD) < 0 ? -errno : 0;
  if (loop->files_by_user)
    return -EBUSY; /* ak_register_files owns the table */
  if (loop->sock_table == 0) {
    int rc = table_create(loop);
    if (rc < 0)
      return rc;
  }
  if ((unsigned)fd >= loop->sock_table)
    return -ERANGE;
  /* The kernel takes its reference now: a bad fd is -EBADF here. */
  int rc = io_uring_register_files_update(&loop->ring, (unsigned)fd, &fd, 1);
  if (rc < 0)
    return rc;
  loop->sock_registered[fd] = 1;
  return 0;
}

int ak_socket_unregister(ak_loop *loop, int fd)
{
  if (!ak__loop_owned_by_caller(loop))
    return AK_ENOTOWNER;
  if (loop->ep)
    return 0;
  if (!ak__socket_is_registered(loop, fd))
    return -ENOENT;
  /* Ops still in flight keep the file until they complete (the kernel
   * counts them per table generation), so unregistering never pulls a
   * socket from under its ops. */
  int empty = -1;
  int rc = io_uring_register_files_update(&loop->ring, (unsigned)fd, &empty, 1);
  if (rc < 0)
    return rc;
  loop->sock_registered[fd] = 0;
  return 0;
}

void ak__sockets_free(ak_loop *loop)
{
  ak__free(loop->sock_registered); /* the kernel's table goes with the ring */
  loop->sock_registered = NULL;
  loop->sock_table = 0;
}
