/* ring_ops.c: the first ring operations, enough to prove the machinery:
 * nop, a kernel timeout of its own, and read/write on an fd (with a pool
 * path for kernels that lack them). File-specific ops live in fs.c. */
#define _GNU_SOURCE
#include <unistd.h>

#include "core/internal.h"

typedef struct ak__rw_data {
  int fd;
  void *buf;
  size_t len;
  int64_t offset;
} ak__rw_data;
_Static_assert(sizeof(ak__rw_data) <= AK__OP_DATA_SIZE, "rw params fit");

static void prep_nop(ak__op *op, struct io_uring_sqe *sqe) {
  (void)op;
  io_uring_prep_nop(sqe);
}

ak_future *ak_nop(ak_loop *loop) {
  AK__REQUIRE_OWNER(loop, "ak_nop");
  ak__op *op = ak__op_new(loop, AK_OP_NOP);
  if (!op)
    return NULL;
  op->prep = prep_nop;
  return ak__op_submit(op);
}

static void prep_timeout(ak__op *op, struct io_uring_sqe *sqe) {
  /* The timespec lives in the op record: the kernel reads it later. */
  struct __kernel_timespec *ts = AK__OP_DATA(op, struct __kernel_timespec);
  io_uring_prep_timeout(sqe, ts, 0, 0);
}

static void timeout_complete(ak__op *op, int res, unsigned flags) {
  (void)flags;
  ak__op_finish(op, res == -ETIME ? 0 : res); /* expiry is success here */
}

ak_future *ak_timeout(ak_loop *loop, int64_t delay_ns) {
  AK__REQUIRE_OWNER(loop, "ak_timeout");
  ak__op *op = ak__op_new(loop, AK_OP_TIMEOUT);
  if (!op)
    return NULL;
  if (delay_ns < 0)
    delay_ns = 0;
  struct __kernel_timespec *ts = AK__OP_DATA(op, struct __kernel_timespec);
  ts->tv_sec = delay_ns / 1000000000;
  ts->tv_nsec = delay_ns % 1000000000;
  op->prep = prep_timeout;
  op->complete = timeout_complete;
  return ak__op_submit(op);
}

static void prep_read(ak__op *op, struct io_uring_sqe *sqe) {
  ak__rw_data *d = AK__OP_DATA(op, ak__rw_data);
  io_uring_prep_read(sqe, d->fd, d->buf, (unsigned)d->len, (uint64_t)d->offset);
}

static void prep_write(ak__op *op, struct io_uring_sqe *sqe) {
  ak__rw_data *d = AK__OP_DATA(op, ak__rw_data);
  io_uring_prep_write(sqe, d->fd, d->buf, (unsigned)d->len, (uint64_t)d->offset);
}

static int64_t blocking_read(ak__op *op) {
  ak__rw_data *d = AK__OP_DATA(op, ak__rw_data);
  if (d->offset < 0)
    return ak__syscall_result(read(d->fd, d->buf, d->len));
  return ak__syscall_result(pread(d->fd, d->buf, d->len, d->offset));
}

static int64_t blocking_write(ak__op *op) {
  ak__rw_data *d = AK__OP_DATA(op, ak__rw_data);
  if (d->offset < 0)
    return ak__syscall_result(write(d->fd, d->buf, d->len));
  return ak__syscall_result(pwrite(d->fd, d->buf, d->len, d->offset));
}

/* The epoll backend's path: a pipe or socket without blocking; a regular
 * file goes to the pool (ak__ep_try_rw). */
static int64_t try_rw(ak__op *op, bool ready) {
  ak__rw_data *d = AK__OP_DATA(op, ak__rw_data);
  struct iovec one = {.iov_base = d->buf, .iov_len = d->len};
  return ak__ep_try_rw(op, d->fd, &one, 1, &d->offset, 0, op->kind == AK_OP_WRITE, ready);
}

static ak_future *rw_submit(ak_loop *loop, unsigned kind, int fd, void *buf, size_t len,
                            int64_t offset) {
  ak__op *op = ak__op_new(loop, kind);
  if (!op)
    return NULL;
  ak__rw_data *d = AK__OP_DATA(op, ak__rw_data);
  d->fd = fd;
  d->buf = buf;
  d->len = ak__clamp_len(len);
  d->offset = offset;
  op->prep = kind == AK_OP_READ ? prep_read : prep_write;
  op->blocking = kind == AK_OP_READ ? blocking_read : blocking_write;
  ak__op_set_try(op, try_rw, fd, (kind == AK_OP_READ ? AK__EP_IN : AK__EP_OUT) | AK__EP_NOW);
  return ak__op_submit(op);
}

ak_future *ak_read(ak_loop *loop, int fd, void *buf, size_t len, int64_t offset) {
  AK__REQUIRE_OWNER(loop, "ak_read");
  return rw_submit(loop, AK_OP_READ, fd, buf, len, offset);
}

ak_future *ak_write(ak_loop *loop, int fd, const void *buf, size_t len, int64_t offset) {
  AK__REQUIRE_OWNER(loop, "ak_write");
  return rw_submit(loop, AK_OP_WRITE, fd, (void *)buf, len, offset);
}
