/* net.c: socket operations as futures: socket, connect (with a linked kernel
 * timeout), accept, recv, send, sendmsg, recvmsg, shutdown, each one ring
 * op with a blocking pool path; the multi-step tasks built from them (send
 * all; close, which cancels the fd's pending ops first); and the plain
 * listening-socket helpers.
 *
 * Not here: multishot streams (net_stream.c), the provided-buffer ring
 * (net_bufring.c), name resolution and connect by host (net_resolve.c).
 *
 * Sockets stay blocking: io_uring answers -EAGAIN for O_NONBLOCK sockets
 * instead of arming a poll, so SOCK_NONBLOCK is refused where we create
 * sockets. MSG_NOSIGNAL is added to every send: a dead peer is -EPIPE, not a
 * SIGPIPE that kills the process.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "net/internal.h"

/* ---- Op params ------------------------------------------------------------------ */

typedef struct ak__sock_data {
  int domain;
  int type;
  int protocol;
} ak__sock_data;

typedef struct ak__connect_data {
  int fd;
  int started; /* epoll backend: the non-blocking connect is under way */
  socklen_t len;
  struct sockaddr_storage addr; /* the kernel reads it after the call returns */
} ak__connect_data;

typedef struct ak__accept_data {
  int fd;
  int flags;
  socklen_t len;          /* the kernel reads and writes it */
  struct sockaddr *uaddr; /* the caller's, filled when DONE */
  socklen_t *ulen;
  struct sockaddr_storage addr; /* the kernel writes the peer here */
} ak__accept_data;

typedef struct ak__xfer_data {
  int fd;
  int flags;
  void *buf;
  size_t len;
  size_t done; /* epoll backend: bytes a MSG_WAITALL recv has so far */
  int buf_slot; /* a registered receive buffer's slot, or -1 */
} ak__xfer_data;

typedef struct ak__msg_data {
  int fd;
  int flags;
  struct msghdr msg;   /* our copy: the kernel may read it late */
  struct msghdr *user; /* recvmsg: where the lengths go back */
} ak__msg_data;

typedef struct ak__fd_data {
  int fd;
  int how; /* shutdown only */
} ak__fd_data;

_Static_assert(sizeof(ak__sock_data) <= AK__OP_DATA_SIZE, "socket params fit");
_Static_assert(sizeof(ak__connect_data) <= AK__OP_DATA_SIZE, "connect params fit");
_Static_assert(sizeof(ak__accept_data) <= AK__OP_DATA_SIZE, "accept params fit");
_Static_assert(sizeof(ak__xfer_data) <= AK__OP_DATA_SIZE, "xfer params fit");
_Static_assert(sizeof(ak__msg_data) <= AK__OP_DATA_SIZE, "msg params fit");
_Static_assert(sizeof(ak__fd_data) <= AK__OP_DATA_SIZE, "fd params fit");
/* fd_op_complete reads the fd at the start of every fd op's params. */
_Static_assert(offsetof(ak__connect_data, fd) == 0 && offsetof(ak__accept_data, fd) == 0 &&
                   offsetof(ak__xfer_data, fd) == 0 && offsetof(ak__msg_data, fd) == 0 &&
                   offsetof(ak__fd_data, fd) == 0,
               "the fd comes first");

/* An op that made an fd nobody will take (its future was cancelled). */
static void discard_fd(ak__op *op, int res)
{
  (void)op;
  close(res);
}

/* ---- Ops pending per fd ------------------------------------------------------------ */

/* Owner-thread only, like the ops: a table per thread, indexed by fd, freed
 * when the thread exits. */
typedef struct ak__fd_counts {
  uint32_t *count;
  size_t cap;
} ak__fd_counts;

static AK__TLS ak__fd_counts ak__fdops;
static pthread_key_t ak__fdops_key;
static pthread_once_t ak__fdops_once = PTHREAD_ONCE_INIT;

static void fdops_thread_exit(void *arg)
{
  ak__fd_counts *t = arg;
  ak__free(t->count);
  t->count = NULL;
  t->cap = 0;
}

static void fdops_key_create(void)
{
  pthread_key_create(&ak__fdops_key, fdops_thread_exit);
}

static bool fdops_reserve(int fd)
{
  ak__fd_counts *t = &ak__fdops;
  if ((size_t)fd < t->cap)
    return true;
  size_t cap = t->cap ? t->cap : 256;
  while (cap <= (size_t)fd)
    cap *= 2;
  uint32_t *grown = ak__realloc(t->count, cap * sizeof(*grown));
  if (!grown)
    return false;
  memset(grown + t->cap, 0, (cap - t->cap) * sizeof(*grown));
  if (!t->count) {
    pthread_once(&ak__fdops_once, fdops_key_create);
    pthread_setspecific(ak__fdops_key, t);
  }
  t->count = grown;
  t->cap = cap;
  return true;
}

/* Without room to count (ENOMEM) the fd is marked as always busy. */
static AK__TLS uint32_t ak__fd_unknown;

void ak__net_op_on_fd(ak__op *op, int fd)
{
  op->flags |= AK__OPF_SOCKET;
  if (fd < 0)
    return;
  if (fdops_reserve(fd))
    ak__fdops.count[fd]++;
  else
    ak__fd_unknown++;
}

void ak__net_fd_idle(int fd)
{
  if (fd >= 0 && (size_t)fd < ak__fdops.cap && ak__fdops.count[fd] > 0)
    ak__fdops.count[fd]--;
}

static bool fd_has_ops(int fd)
{
  return ak__fd_unknown > 0 || ((size_t)fd < ak__fdops.cap && ak__fdops.count[fd] > 0);
}

/* ---- socket ------------------------------------------------------------------------ */

static void prep_socket(ak__op *op, struct io_uring_sqe *sqe)
{
  ak__sock_data *d = AK__OP_DATA(op, ak__sock_data);
  io_uring_prep_socket(sqe, d->domain, d->type, d->protocol, 0);
}

static int64_t blocking_socket(ak__op *op)
{
  ak__sock_data *d = AK__OP_DATA(op, ak__sock_data);
  return ak__syscall_result(socket(d->domain, d->type, d->protocol));
}

/* The epoll backend: socket(2) never blocks; no trip to the pool. */
static int64_t try_socket(ak__op *op, bool ready)
{
  (void)ready;
  return blocking_socket(op);
}

ak_future *ak_socket(ak_loop *loop, int domain, int type, int protocol)
{
  AK__REQUIRE_OWNER(loop, "ak_socket");
  if (type & SOCK_NONBLOCK)
    return ak__future_failed(loop, -EINVAL, "ak_socket: ring sockets stay blocking");
  ak__op *op = ak__op_new(loop, AK_OP_SOCKET);
  if (!op)
    return NULL;
  ak__sock_data *d = AK__OP_DATA(op, ak__sock_data);
  d->domain = domain;
  d->type = type | SOCK_CLOEXEC;
  d->protocol = protocol;
  op->prep = prep_socket;
  op->blocking = blocking_socket;
  ak__op_set_try(op, try_socket, -1, AK__EP_NOW);
  op->discard = discard_fd;
  op->flags |= AK__OPF_CREATES;
  return ak__op_submit(op);
}

/* ---- connect ------------------------------------------------------------------------ */

static void prep_connect(ak__op *op, struct io_uring_sqe *sqe)
{
  ak__connect_data *d = AK__OP_DATA(op, ak__connect_data);
  io_uring_prep_connect(sqe, d->fd, (struct sockaddr *)&d->addr, d->len);
}

static void fd_op_complete(ak__op *op, int res, unsigned flags)
{
  (void)flags;
  ak__net_fd_idle(*AK__OP_DATA(op, int)); /* every fd op's params start with the fd */
  ak__op_finish(op, res);
}

static int64_t blocking_connect(ak__op *op)
{
  ak__connect_data *d = AK__OP_DATA(op, ak__connect_data);
  return ak__syscall_result(connect(d->fd, (struct sockaddr *)&d->addr, d->len));
}

/* The epoll backend. A connect cannot be started without blocking on a
 * blocking socket (there is no MSG_DONTWAIT for it), and on the pool it
 * could not be cancelled or bounded by its deadline: so O_NONBLOCK is set
 * for the one connect call and cleared at once. The socket is being
 * connected by this op, so nobody else can be using it meanwhile; the
 * connection goes on in the kernel whatever the flag, and the op waits for
 * the socket to become writable, then reads the outcome (SO_ERROR, then
 * getpeername, since a report may come early). */
static int64_t try_connect(ak__op *op, bool ready)
{
  ak__connect_data *d = AK__OP_DATA(op, ak__connect_data);
  if (d->started) {
    if (!ready)
      return AK__OP_TRY_WAIT;
    int err = 0;
    socklen_t len = sizeof(err);
    if (getsockopt(d->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
      return -errno;
    if (err)
      return -err;
    struct sockaddr_storage peer;
    socklen_t plen = sizeof(peer);
    if (getpeername(d->fd, (struct sockaddr *)&peer, &plen) == 0)
      return 0;
    return errno == ENOTCONN ? AK__OP_TRY_WAIT : -errno;
  }
  int fl = fcntl(d->fd, F_GETFL);
  if (fl < 0)
    return -errno;
  if (!(fl & O_NONBLOCK))
    (void)fcntl(d->fd, F_SETFL, fl | O_NONBLOCK);
  int rc = connect(d->fd, (struct sockaddr *)&d->addr, d->len);
  int err = rc < 0 ? errno : 0;
  if (!(fl & O_NONBLOCK))
    (void)fcntl(d->fd, F_SETFL, fl);
  if (rc == 0)
    return 0;
  if (err == EINPROGRESS && !(fl & O_NONBLOCK)) {
    d->started = 1;
    return AK__OP_TRY_WAIT;
  }
  return -err;
}

ak_future *ak_connect(ak_loop *loop, int fd, const struct sockaddr *addr, socklen_t addrlen,
                      int64_t timeout_ns)
{
  AK__REQUIRE_OWNER(loop, "ak_connect");
  if (!addr || addrlen == 0 || addrlen > sizeof(struct sockaddr_storage))
    return ak__future_failed(loop, -EINVAL, "ak_connect: address");
  ak__op *op = ak__op_new(loop, AK_OP_CONNECT);
  if (!op)
    return NULL;
  ak__connect_data *d = AK__OP_DATA(op, ak__connect_data);
  d->fd = fd;
  d->started = 0;
  d->len = addrlen;
  memcpy(&d->addr, addr, addrlen);
  op->prep = prep_connect;
  op->complete = fd_op_complete;
  op->blocking = blocking_connect;
  ak__op_set_try(op, try_connect, fd, AK__EP_OUT | AK__EP_NOW);
  ak__net_op_on_fd(op, fd);
  ak_future *f = ak__op_submit(op);
  if (timeout_ns < 0)
    return f;
  /* A linked kernel timeout while the op has not reached the kernel (the
   * usual case: it sits in the SQ until the iteration ends); else a timer. */
  ak_future *bounded = ak_future_timeout(f, timeout_ns);
  if (!bounded) {
    ak_future_cancel(f);
    ak_future_release(f);
    return NULL;
  }
  ak_future_release(f);
  return bounded;
}

/* ---- accept ------------------------------------------------------------------------- */

static void prep_accept(ak__op *op, struct io_uring_sqe *sqe)
{
  ak__accept_data *d = AK__OP_DATA(op, ak__accept_data);
  io_uring_prep_accept(sqe, d->fd, (struct sockaddr *)&d->addr, &d->len, d->flags);
}

static int64_t blocking_accept(ak__op *op)
{
  ak__accept_data *d = AK__OP_DATA(op, ak__accept_data);
  return ak__syscall_result(accept4(d->fd, (struct sockaddr *)&d->addr, &d->len, d->flags));
}

/* The epoll backend: accept4 has no MSG_DONTWAIT either, so it is called
 * only after epoll reported a connection waiting, one per report. */
static int64_t try_accept(ak__op *op, bool ready)
{
  if (!ready)
    return AK__OP_TRY_WAIT;
  return blocking_accept(op);
}

static void accept_complete(ak__op *op, int res, unsigned flags)
{
  (void)flags;
  ak__accept_data *d = AK__OP_DATA(op, ak__accept_data);
  ak__net_fd_idle(d->fd);
  if (res >= 0 && d->uaddr && d->ulen) {
    socklen_t room = *d->ulen;
    memcpy(d->uaddr, &d->addr, d->len < room ? d->len : room);
    *d->ulen = d->len;
  }
  ak__op_finish(op, res);
}

ak_future *ak_accept(ak_loop *loop, int fd, struct sockaddr *addr, socklen_t *addrlen, int flags)
{
  AK__REQUIRE_OWNER(loop, "ak_accept");
  if (flags & SOCK_NONBLOCK)
    return ak__future_failed(loop, -EINVAL, "ak_accept: ring sockets stay blocking");
  ak__op *op = ak__op_new(loop, AK_OP_ACCEPT);
  if (!op)
    return NULL;
  ak__accept_data *d = AK__OP_DATA(op, ak__accept_data);
  d->fd = fd;
  d->flags = flags | SOCK_CLOEXEC;
  d->len = sizeof(d->addr);
  d->uaddr = addr;
  d->ulen = addrlen;
  op->prep = prep_accept;
  op->complete = accept_complete;
  op->blocking = blocking_accept;
  ak__op_set_try(op, try_accept, fd, AK__EP_IN | AK__EP_ONCE);
  op->discard = discard_fd;
  op->flags |= AK__OPF_CREATES;
  ak__net_op_on_fd(op, fd);
  return ak__op_submit(op);
}

/* ---- recv, send -------------------------------------------------------------------- */

static void prep_recv(ak__op *op, struct io_uring_sqe *sqe)
{
  ak__xfer_data *d = AK__OP_DATA(op, ak__xfer_data);
  if (d->buf_slot >= 0) {
    /* A socket's read is its recv with no flags; offset -1: a stream has no
     * position (an offset of its own would be -ESPIPE). */
    io_uring_prep_read_fixed(sqe, d->fd, d->buf, (unsigned)d->len, (uint64_t)-1, d->buf_slot);
    return;
  }
  io_uring_prep_recv(sqe, d->fd, d->buf, d->len, d->flags);
}

static void prep_send(ak__op *op, struct io_uring_sqe *sqe)
{
  ak__xfer_data *d = AK__OP_DATA(op, ak__xfer_data);
  io_uring_prep_send(sqe, d->fd, d->buf, d->len, d->flags);
}

static int64_t blocking_recv(ak__op *op)
{
  ak__xfer_data *d = AK__OP_DATA(op, ak__xfer_data);
  return ak__syscall_result(recv(d->fd, d->buf, d->len, d->flags));
}

static int64_t blocking_send(ak__op *op)
{
  ak__xfer_data *d = AK__OP_DATA(op, ak__xfer_data);
  return ak__syscall_result(send(d->fd, d->buf, d->len, d->flags));
}

/* The epoll backend: MSG_DONTWAIT. A MSG_WAITALL recv on a stream socket
 * gathers until it has len bytes, EOF or an error, as io_uring does. */
static int64_t try_recv(ak__op *op, bool ready)
{
  (void)ready;
  ak__xfer_data *d = AK__OP_DATA(op, ak__xfer_data);
  bool waitall = (d->flags & MSG_WAITALL) && !(d->flags & MSG_PEEK);
  bool user_nowait = (d->flags & MSG_DONTWAIT) != 0;
  for (;;) {
    ssize_t n = recv(d->fd, (char *)d->buf + d->done, d->len - d->done,
                     (d->flags & ~MSG_WAITALL) | MSG_DONTWAIT);
    if (n < 0) {
      bool again = errno == EAGAIN || errno == EWOULDBLOCK;
      if (again && !user_nowait) {
        op->ep_dir |= AK__EP_DRAINED;
        return AK__OP_TRY_WAIT;
      }
      return d->done > 0 ? (int64_t)d->done : -errno; /* what came stands */
    }
    d->done += (size_t)n;
    if (!waitall || n == 0 || d->done == d->len) {
      if (d->done < d->len)
        op->ep_dir |= AK__EP_DRAINED;
      return (int64_t)d->done;
    }
  }
}

/* MSG_WAITALL on a send: io_uring resends the rest of a short send itself
 * (send all counts on it), so the attempt does too. */
static int64_t try_send(ak__op *op, bool ready)
{
  (void)ready;
  ak__xfer_data *d = AK__OP_DATA(op, ak__xfer_data);
  bool waitall = (d->flags & MSG_WAITALL) != 0;
  bool user_nowait = (d->flags & MSG_DONTWAIT) != 0;
  for (;;) {
    ssize_t n = send(d->fd, (const char *)d->buf + d->done, d->len - d->done,
                     (d->flags & ~MSG_WAITALL) | MSG_DONTWAIT);
    if (n < 0) {
      bool again = errno == EAGAIN || errno == EWOULDBLOCK;
      if (again && !user_nowait)
        return AK__OP_TRY_WAIT;
      return d->done > 0 ? (int64_t)d->done : -errno;
    }
    d->done += (size_t)n;
    if (!waitall || n == 0 || d->done == d->len)
      return (int64_t)d->done;
  }
}

static ak_future *xfer_submit(ak_loop *loop, unsigned kind, int fd, void *buf, size_t len,
                              int flags, int buf_slot)
{
  ak__op *op = ak__op_new(loop, kind);
  if (!op)
    return NULL;
  ak__xfer_data *d = AK__OP_DATA(op, ak__xfer_data);
  d->fd = fd;
  d->flags = kind == AK_OP_SEND ? flags | MSG_NOSIGNAL : flags;
  d->buf = buf;
  d->len = ak__clamp_len(len);
  d->done = 0;
  d->buf_slot = buf_slot;
  op->prep = kind == AK_OP_SEND ? prep_send : prep_recv;
  op->complete = fd_op_complete;
  op->blocking = kind == AK_OP_SEND ? blocking_send : blocking_recv;
  if (kind == AK_OP_SEND)
    ak__op_set_try(op, try_send, fd, AK__EP_OUT | AK__EP_NOW);
  else
    ak__op_set_try(op, try_recv, fd, AK__EP_IN);
  ak__net_op_on_fd(op, fd);
  return ak__op_submit(op);
}

ak_future *ak_recv(ak_loop *loop, int fd, void *buf, size_t len, int flags)
{
  AK__REQUIRE_OWNER(loop, "ak_recv");
  return xfer_submit(loop, AK_OP_RECV, fd, buf, len, flags, -1);
}

ak_future *ak_recv_registered(ak_loop *loop, int fd, void *buf, size_t len, int slot)
{
  AK__REQUIRE_OWNER(loop, "ak_recv_registered");
  if (ak__loop_is_epoll(loop))
    slot = -1; /* no table there: the plain recv, as documented */
  /* READ_FIXED's 32-bit length is no limit: xfer_submit cuts every
   * transfer to AK__MAX_TRANSFER (a short receive is normal). */
  return xfer_submit(loop, AK_OP_RECV, fd, buf, len, 0, slot < 0 ? -1 : slot);
}

ak_future *ak_send(ak_loop *loop, int fd, const void *buf, size_t len, int flags)
{
  AK__REQUIRE_OWNER(loop, "ak_send");
  return xfer_submit(loop, AK_OP_SEND, fd, (void *)buf, len, flags, -1);
}

/* ---- sendmsg, recvmsg ----------------------------------------------------------------- */

static void prep_sendmsg(ak__op *op, struct io_uring_sqe *sqe)
{
  ak__msg_data *d = AK__OP_DATA(op, ak__msg_data);
  io_uring_prep_sendmsg(sqe, d->fd, &d->msg, (unsigned)d->flags);
}

static void prep_recvmsg(ak__op *op, struct io_uring_sqe *sqe)
{
  ak__msg_data *d = AK__OP_DATA(op, ak__msg_data);
  io_uring_prep_recvmsg(sqe, d->fd, &d->msg, (unsigned)d->flags);
}

static int64_t blocking_sendmsg(ak__op *op)
{
  ak__msg_data *d = AK__OP_DATA(op, ak__msg_data);
  return ak__syscall_result(sendmsg(d->fd, &d->msg, d->flags));
}

static int64_t blocking_recvmsg(ak__op *op)
{
  ak__msg_data *d = AK__OP_DATA(op, ak__msg_data);
  return ak__syscall_result(recvmsg(d->fd, &d->msg, d->flags));
}

/* The epoll backend: MSG_DONTWAIT (a MSG_WAITALL recvmsg returns what the
 * first ready read gives). */
static int64_t try_msg(ak__op *op, bool ready)
{
  (void)ready;
  ak__msg_data *d = AK__OP_DATA(op, ak__msg_data);
  int flags = d->flags | MSG_DONTWAIT;
  ssize_t n = op->kind == AK_OP_SENDMSG ? sendmsg(d->fd, &d->msg, flags & ~MSG_WAITALL)
                                        : recvmsg(d->fd, &d->msg, flags & ~MSG_WAITALL);
  return ak__try_result(n, (d->flags & MSG_DONTWAIT) != 0);
}

static void recvmsg_complete(ak__op *op, int res, unsigned flags)
{
  (void)flags;
  ak__msg_data *d = AK__OP_DATA(op, ak__msg_data);
  ak__net_fd_idle(d->fd);
  if (res >= 0) {
    d->user->msg_namelen = d->msg.msg_namelen;
    d->user->msg_controllen = d->msg.msg_controllen;
    d->user->msg_flags = d->msg.msg_flags;
  }
  ak__op_finish(op, res);
}

static ak_future *msg_submit(ak_loop *loop, unsigned kind, int fd, const struct msghdr *msg,
                             int flags)
{
  if (!msg)
    return ak__future_failed(loop, -EINVAL, "msghdr is NULL");
  ak__op *op = ak__op_new(loop, kind);
  if (!op)
    return NULL;
  ak__msg_data *d = AK__OP_DATA(op, ak__msg_data);
  bool is_send = kind == AK_OP_SENDMSG;
  d->fd = fd;
  d->flags = is_send ? flags | MSG_NOSIGNAL : flags;
  d->msg = *msg;
  d->user = (struct msghdr *)msg;
  op->prep = is_send ? prep_sendmsg : prep_recvmsg;
  op->blocking = is_send ? blocking_sendmsg : blocking_recvmsg;
  op->complete = is_send ? fd_op_complete : recvmsg_complete;
  ak__op_set_try(op, try_msg, fd, is_send ? AK__EP_OUT | AK__EP_NOW : AK__EP_IN);
  ak__net_op_on_fd(op, fd);
  return ak__op_submit(op);
}

ak_future *ak_sendmsg(ak_loop *loop, int fd, const struct msghdr *msg, int flags)
{
  AK__REQUIRE_OWNER(loop, "ak_sendmsg");
  return msg_submit(loop, AK_OP_SENDMSG, fd, msg, flags);
}

ak_future *ak_recvmsg(ak_loop *loop, int fd, struct msghdr *msg, int flags)
{
  AK__REQUIRE_OWNER(loop, "ak_recvmsg");
  return msg_submit(loop, AK_OP_RECVMSG, fd, msg, flags);
}

/* ---- shutdown ------------------------------------------------------------------------- */

static void prep_shutdown(ak__op *op, struct io_uring_sqe *sqe)
{
  ak__fd_data *d = AK__OP_DATA(op, ak__fd_data);
  io_uring_prep_shutdown(sqe, d->fd, d->how);
}

static int64_t blocking_shutdown(ak__op *op)
{
  ak__fd_data *d = AK__OP_DATA(op, ak__fd_data);
  return ak__syscall_result(shutdown(d->fd, d->how));
}

/* The epoll backend: shutdown(2) never blocks. */
static int64_t try_shutdown(ak__op *op, bool ready)
{
  (void)ready;
  return blocking_shutdown(op);
}

ak_future *ak_shutdown(ak_loop *loop, int fd, int how)
{
  AK__REQUIRE_OWNER(loop, "ak_shutdown");
  ak__op *op = ak__op_new(loop, AK_OP_SHUTDOWN);
  if (!op)
    return NULL;
  ak__fd_data *d = AK__OP_DATA(op, ak__fd_data);
  d->fd = fd;
  d->how = how;
  op->prep = prep_shutdown;
  op->complete = fd_op_complete;
  op->blocking = blocking_shutdown;
  ak__op_set_try(op, try_shutdown, fd, AK__EP_NOW);
  ak__net_op_on_fd(op, fd);
  return ak__op_submit(op);
}

/* ---- Multi-step tasks ------------------------------------------------------------------ */

static void task_cancel_on_loop(ak_future *task)
{
  ak_future *step = task->aux;
  if (step)
    ak_future_cancel(step); /* its callback sees the request and winds up */
}

static void task_cancel_posted(void *arg)
{
  ak_future *task = arg;
  if (!ak_future_is_set(task))
    task_cancel_on_loop(task);
  ak_future_release(task);
}

void ak__net_task_cancel(ak_future *task)
{
  /* ->aux is the loop thread's: another thread hands the request over. */
  if (ak__loop_owned_by_caller(task->loop)) {
    task_cancel_on_loop(task);
    return;
  }
  ak_future_ref(task);
  if (ak_loop_post(task->loop, task_cancel_posted, task) < 0)
    ak_future_release(task); /* ENOMEM: the request is lost; the task ends anyway */
}

ak_future *ak__net_task_new(ak_loop *loop, const ak__future_kind *kind, void *data)
{
  ak_future *task = ak__future_new(loop, kind, data);
  if (task) {
    task->aux = NULL;
    task->fn = NULL;
    task->fn_arg = NULL;
  }
  return task;
}

int ak__net_task_await(ak_future *task, ak_future *step, ak_callback cb)
{
  if (!step)
    return -ENOMEM;
  task->aux = step;
  ak_future_ref(task);
  if (ak_future_on_settle(step, cb, task) < 0) {
    task->aux = NULL;
    ak_future_cancel(step);
    ak_future_release(step);
    ak_future_release(task);
    return -ENOMEM;
  }
  return 0;
}

void ak__net_task_settled(ak_future *task)
{
  ak_future *step = task->aux;
  task->aux = NULL;
  ak_future_release(step);
}

/* ---- send all ----------------------------------------------------------------------------- */

typedef struct ak__send_all {
  int fd;
  int flags;
  const unsigned char *buf;
  size_t len;
  size_t done;
} ak__send_all;

static void send_all_free(ak_future *task)
{
  ak__free(task->data);
}

static const ak__future_kind send_all_kind = {
    .name = "send_all", .cancel = ak__net_task_cancel, .free_data = send_all_free};

static void send_all_step(ak_future *step, void *arg);

/* MSG_WAITALL: on a stream socket io_uring resends a partial send itself, so
 * the usual case is one op; we loop only after a signal or a datagram. */
static int send_all_next(ak_future *task)
{
  ak__send_all *s = task->data;
  ak_future *step =
      ak_send(task->loop, s->fd, s->buf + s->done, s->len - s->done, s->flags | MSG_WAITALL);
  return ak__net_task_await(task, step, send_all_step);
}

static void send_all_step(ak_future *step, void *arg)
{
  ak_future *task = arg;
  ak__send_all *s = task->data;
  ak__net_task_settled(task);
  int64_t res = ak_future_result(step);
  if (res > 0)
    s->done += (size_t)res;
  if (ak_future_cancel_requested(task) && s->done < s->len) {
    ak__future_finish(task, -ECANCELED);
  } else if (res < 0) {
    ak__future_finish(task, res);
  } else if (res == 0 && s->done < s->len) {
    ak__future_finish(task, -EPIPE); /* the socket took nothing: never spin */
  } else if (s->done < s->len) {
    int rc = send_all_next(task);
    if (rc < 0)
      ak__future_finish(task, rc);
  } else {
    ak__future_finish(task, (int64_t)s->len);
  }
  ak_future_release(task);
}

ak_future *ak_send_all(ak_loop *loop, int fd, const void *buf, size_t len, int flags)
{
  AK__REQUIRE_OWNER(loop, "ak_send_all");
  ak__send_all *s = ak__calloc(1, sizeof(*s));
  if (!s)
    return NULL;
  ak_future *task = ak__net_task_new(loop, &send_all_kind, s);
  if (!task) {
    ak__free(s);
    return NULL;
  }
  s->fd = fd;
  s->flags = flags;
  s->buf = buf;
  s->len = len;
  if (len == 0) {
    ak__future_finish(task, 0);
    return task;
  }
  int rc = send_all_next(task);
  if (rc < 0)
    ak__future_finish(task, rc);
  return task;
}

/* ---- close ---------------------------------------------------------------------------------- */

static void prep_cancel_fd(ak__op *op, struct io_uring_sqe *sqe)
{
  ak__fd_data *d = AK__OP_DATA(op, ak__fd_data);
  io_uring_prep_cancel_fd(sqe, d->fd, IORING_ASYNC_CANCEL_ALL);
}

static void prep_close(ak__op *op, struct io_uring_sqe *sqe)
{
  ak__fd_data *d = AK__OP_DATA(op, ak__fd_data);
  io_uring_prep_close(sqe, d->fd);
}

static int64_t blocking_close(ak__op *op)
{
  ak__fd_data *d = AK__OP_DATA(op, ak__fd_data);
  return close(d->fd) < 0 && errno != EINTR ? -errno : 0;
}

/* The epoll backend: close(2) on the loop's thread, as the ring would do
 * it at once too (a socket's close does not wait for its peer). */
static int64_t try_close(ak__op *op, bool ready)
{
  (void)ready;
  return blocking_close(op);
}

static ak_future *fd_op(ak_loop *loop, unsigned kind, int fd)
{
  ak__op *op = ak__op_new(loop, kind);
  if (!op)
    return NULL;
  AK__OP_DATA(op, ak__fd_data)->fd = fd;
  if (kind == AK_OP_CLOSE) {
    op->prep = prep_close;
    op->blocking = blocking_close;
    ak__op_set_try(op, try_close, fd, AK__EP_NOW);
  } else {
    op->prep = prep_cancel_fd;
  }
  return ak__op_submit(op);
}

static const ak__future_kind close_kind = {
    .name = "close", .cancel = ak__net_task_cancel, .free_data = NULL};

static void close_closed(ak_future *step, void *arg)
{
  ak_future *task = arg;
  ak__net_task_settled(task);
  ak__future_finish(task, ak_future_result(step));
  ak_future_release(task);
}

/* The fd's ops are cancelled (or there were none: -ENOENT, or -EINVAL before
 * 5.19, which lacks CANCEL_FD). A cancel of the close task itself is not
 * honoured here: an fd half closed is worse than one closed. */
static void close_cancelled(ak_future *step, void *arg)
{
  ak_future *task = arg;
  ak__net_task_settled(task);
  (void)step;
  int fd = (int)(intptr_t)task->fn_arg;
  int rc = ak__net_task_await(task, fd_op(task->loop, AK_OP_CLOSE, fd), close_closed);
  if (rc < 0) {
    close(fd);
    ak__future_finish(task, 0);
  }
  ak_future_release(task);
}

ak_future *ak_close(ak_loop *loop, int fd)
{
  AK__REQUIRE_OWNER(loop, "ak_close");
  if (fd < 0)
    return ak__future_failed(loop, -EBADF, "ak_close");
  ak_future *task = ak__net_task_new(loop, &close_kind, NULL);
  if (!task)
    return NULL;
  /* The ring's own reference first, or the close would leave the socket
   * open. Ops in flight keep it until the cancel below ends them. */
  (void)ak_socket_unregister(loop, fd); /* -ENOENT: it was not */
  task->fn_arg = (void *)(intptr_t)fd;
  /* Nothing of ours pending on fd: straight to the close. */
  bool busy = fd_has_ops(fd);
  ak_future *step = fd_op(loop, busy ? AK_OP_CANCEL : AK_OP_CLOSE, fd);
  if (ak__net_task_await(task, step, busy ? close_cancelled : close_closed) < 0) {
    close(fd);
    ak__future_finish(task, 0);
  }
  return task;
}

/* ---- Plain helpers -----------------------------------------------------------------------------
 */

int ak_tcp_listen(const char *ip, uint16_t port, int backlog)
{
  struct sockaddr_storage ss;
  socklen_t len;
  memset(&ss, 0, sizeof(ss));
  struct sockaddr_in *in4 = (struct sockaddr_in *)&ss;
  struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
  if (!ip || inet_pton(AF_INET, ip, &in4->sin_addr) == 1) {
    in4->sin_family = AF_INET;
    in4->sin_port = htons(port);
    if (!ip)
      in4->sin_addr.s_addr = htonl(INADDR_ANY);
    len = sizeof(*in4);
  } else if (inet_pton(AF_INET6, ip, &in6->sin6_addr) == 1) {
    in6->sin6_family = AF_INET6;
    in6->sin6_port = htons(port);
    len = sizeof(*in6);
  } else {
    return -EINVAL;
  }
  int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return -errno;
  int one = 1;
  if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
      bind(fd, (struct sockaddr *)&ss, len) < 0 || listen(fd, backlog) < 0) {
    int err = -errno;
    close(fd);
    return err;
  }
  return fd;
}

int ak_socket_port(int fd)
{
  struct sockaddr_storage ss;
  socklen_t len = sizeof(ss);
  if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0)
    return -errno;
  if (ss.ss_family == AF_INET)
    return ntohs(((struct sockaddr_in *)&ss)->sin_port);
  if (ss.ss_family == AF_INET6)
    return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
  return -EAFNOSUPPORT;
}
