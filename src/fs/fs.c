/* fs.c: file operations as ring ops: read/write with options (registered
 * files and buffers, RWF_ flags), readv/writev, openat, cancel by fd,
 * fsync/fdatasync, fallocate (with its sparse fallback), statx, renameat,
 * linkat, unlinkat, mkdirat and splice. Each op fills its params in the op record,
 * copies what the kernel reads later (paths, iovec arrays) into it, and has a
 * blocking twin for the pool path (op.c runs it when the probe or the
 * kernel's first answer says the ring cannot).
 *
 * Not here: ak_read/ak_write (ring_ops.c), ak_close (net.c: one close for
 * files and sockets, cancelling the fd's ops first), the helpers built from these ops
 * (fs_helpers.c), registering files and buffers (core/register_files.c).
 *
 * Map:
 *   1. Shared bits: the probe check, results, copied paths
 *   2. Reads and writes (plain, fixed, vectored)
 *   3. open, cancel by fd, fsync, fallocate
 *   4. Path ops: statx, renameat, linkat, unlinkat, mkdirat
 *   5. splice
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "core/loop_internal.h" /* ak__op_lean_sqe: the QD1 read's submission */

/* ---- 1. Shared bits ------------------------------------------------------ */

/* The op takes the pool path when the kernel's probe lacks its opcode. */
static void require_opcode(ak__op *op, unsigned opcode)
{
  if (!ak__loop_has_opcode(op->loop, opcode))
    op->flags |= AK__OPF_NO_OPCODE;
}

/* Submits op; with `now` (AK_RW_SUBMIT_NOW), or on an SQPOLL ring, hands
 * the SQ to the kernel right away rather than with the loop's next batch.
 * On SQPOLL that is only a store to the SQ tail while the SQ thread is
 * awake, and it lets the kernel thread work on this op while the loop
 * thread prepares the next: without it the two take turns, a batch at a
 * time. (op may be gone once submitted: only the loop is looked at.) */
static ak_future *submit_op(ak__op *op, bool now)
{
  return ak__op_submit_early(op, now);
}

/* ---- 2. Reads and writes -------------------------------------------------- */

enum { FS_INLINE_IOV = 8 };

/* fd comes first in every fd op's params: ak_cancel_fd reads it there. */
typedef struct fs_rw {
  int fd;         /* the real fd (the pool path uses it) */
  int file_index; /* registered slot, or -1 */
  int buf_index;  /* registered buffer, or -1 */
  int rw_flags;   /* RWF_* */
  int64_t offset; /* -1: the file position */
  void *buf;      /* plain read/write: the buffer */
  size_t len;
  struct iovec *iov; /* vectored: inline_iov or a heap copy */
  unsigned iovcnt;
  struct iovec inline_iov[FS_INLINE_IOV];
} fs_rw;
_Static_assert(sizeof(fs_rw) <= AK__OP_DATA_SIZE, "fs_rw fits the op record");

static int target_fd(const fs_rw *d)
{
  return d->file_index >= 0 ? d->file_index : d->fd;
}

/* One prep per variant, chosen at submission: the SQE is written without
 * a test of the op's params on the way (the QD1 read's path, issue 24). */
static void prep_read_fixed(ak__op *op, struct io_uring_sqe *sqe)
{
  fs_rw *d = AK__OP_DATA(op, fs_rw);
  io_uring_prep_read_fixed(sqe, target_fd(d), d->buf, (unsigned)d->len, (uint64_t)d->offset,
                           d->buf_index);
  sqe->rw_flags = d->rw_flags;
}

static void prep_read_opt(ak__op *op, struct io_uring_sqe *sqe)
{
  fs_rw *d = AK__OP_DATA(op, fs_rw);
  io_uring_prep_read(sqe, target_fd(d), d->buf, (unsigned)d->len, (uint64_t)d->offset);
  sqe->rw_flags = d->rw_flags;
}

static void prep_write_fixed(ak__op *op, struct io_uring_sqe *sqe)
{
  fs_rw *d = AK__OP_DATA(op, fs_rw);
  io_uring_prep_write_fixed(sqe, target_fd(d), d->buf, (unsigned)d->len, (uint64_t)d->offset,
                            d->buf_index);
  sqe->rw_flags = d->rw_flags;
}

static void prep_write_opt(ak__op *op, struct io_uring_sqe *sqe)
{
  fs_rw *d = AK__OP_DATA(op, fs_rw);
  io_uring_prep_write(sqe, target_fd(d), d->buf, (unsigned)d->len, (uint64_t)d->offset);
  sqe->rw_flags = d->rw_flags;
}

static void prep_readv(ak__op *op, struct io_uring_sqe *sqe)
{
  fs_rw *d = AK__OP_DATA(op, fs_rw);
  io_uring_prep_readv2(sqe, target_fd(d), d->iov, d->iovcnt, (uint64_t)d->offset, d->rw_flags);
}

static void prep_writev(ak__op *op, struct io_uring_sqe *sqe)
{
  fs_rw *d = AK__OP_DATA(op, fs_rw);
  io_uring_prep_writev2(sqe, target_fd(d), d->iov, d->iovcnt, (uint64_t)d->offset, d->rw_flags);
}

/* The pool path: preadv2/pwritev2 take offset -1 as the file position. */
static int64_t blocking_read_opt(ak__op *op)
{
  fs_rw *d = AK__OP_DATA(op, fs_rw);
  struct iovec one = {.iov_base = d->buf, .iov_len = d->len};
  return ak__syscall_result(preadv2(d->fd, &one, 1, d->offset, d->rw_flags));
}

static int64_t blocking_write_opt(ak__op *op)
{
  fs_rw *d = AK__OP_DATA(op, fs_rw);
  struct iovec one = {.iov_base = d->buf, .iov_len = d->len};
  return ak__syscall_result(pwritev2(d->fd, &one, 1, d->offset, d->rw_flags));
}

static int64_t blocking_readv(ak__op *op)
{
  fs_rw *d = AK__OP_DATA(op, fs_rw);
  return ak__syscall_result(preadv2(d->fd, d->iov, (int)d->iovcnt, d->offset, d->rw_flags));
}

static int64_t blocking_writev(ak__op *op)
{
  fs_rw *d = AK__OP_DATA(op, fs_rw);
  return ak__syscall_result(pwritev2(d->fd, d->iov, (int)d->iovcnt, d->offset, d->rw_flags));
}

/* The epoll backend's path (core/backend_epoll.c): a pipe, socket or tty
 * without blocking; a regular file goes to the pool. */
static int64_t try_rw_opt(ak__op *op, bool ready)
{
  fs_rw *d = AK__OP_DATA(op, fs_rw);
  struct iovec one = {.iov_base = d->buf, .iov_len = d->len};
  return ak__ep_try_rw(op, d->fd, &one, 1, &d->offset, d->rw_flags, op->kind == AK_OP_WRITE,
                       ready);
}

/* A registered buffer index on epoll, where nothing can be registered. */
static int64_t try_fixed_buf(ak__op *op, bool ready)
{
  (void)op;
  (void)ready;
  return AK_EBACKEND;
}

static int64_t try_rw_vec(ak__op *op, bool ready)
{
  fs_rw *d = AK__OP_DATA(op, fs_rw);
  return ak__ep_try_rw(op, d->fd, d->iov, (int)d->iovcnt, &d->offset, d->rw_flags,
                       op->kind == AK_OP_WRITEV, ready);
}

/* Frees a heap copy of the iovec array once the kernel is done with it. */
static void vec_complete(ak__op *op, int res, unsigned flags)
{
  (void)flags;
  fs_rw *d = AK__OP_DATA(op, fs_rw);
  if (d->iov != d->inline_iov)
    ak__free(d->iov);
  ak__op_finish(op, res);
}

/* Fills a new read or write record with what every variant shares (the
 * fd, the offset, the options; *now: AK_RW_SUBMIT_NOW); the caller fills
 * the buffer or the iovecs. Inlined: the options are read straight into
 * the record (held across a call they cost spills on the QD1 read's path). */
static inline __attribute__((always_inline)) void
rw_op_fill(ak__op *op, int fd, int64_t offset, const ak_rw_opts *opts, bool *now)
{
  fs_rw *d = AK__OP_DATA(op, fs_rw);
  d->fd = fd;
  d->offset = offset;
  if (opts) {
    d->file_index = opts->file_index;
    d->buf_index = opts->buf_index;
    d->rw_flags = opts->rw_flags;
    *now = (opts->flags & AK_RW_SUBMIT_NOW) != 0;
    if (d->file_index >= 0)
      op->sqe_flags |= IOSQE_FIXED_FILE;
  } else {
    d->file_index = -1;
    d->buf_index = -1;
    d->rw_flags = 0;
    *now = false;
  }
}

/* The general way of a plain or fixed read or write, on a record taken
 * from the cache or the allocator whose loop and kind are set: the record
 * initialised and filled for every way (the vectored fields stay unset:
 * only vectored ops read them), and ak__op_submit's. Out of line, so that
 * rw_submit's direct way saves no registers for it. */
static __attribute__((noinline)) ak_future *
rw_submit_general(ak__op *op, int fd, void *buf, size_t len, int64_t offset,
                  const ak_rw_opts *opts)
{
  bool write = op->kind == AK_OP_WRITE;
  ak__op_init(op, op->loop, op->kind);
  bool now;
  rw_op_fill(op, fd, offset, opts, &now);
  fs_rw *d = AK__OP_DATA(op, fs_rw);
  d->buf = buf;
  d->len = ak__clamp_len(len);
  bool fixed = d->buf_index >= 0;
  if (write) {
    op->prep = fixed ? prep_write_fixed : prep_write_opt;
    op->blocking = blocking_write_opt;
    require_opcode(op, fixed ? IORING_OP_WRITE_FIXED : IORING_OP_WRITE);
  } else {
    op->prep = fixed ? prep_read_fixed : prep_read_opt;
    op->blocking = blocking_read_opt;
    require_opcode(op, fixed ? IORING_OP_READ_FIXED : IORING_OP_READ);
  }
  ak__op_set_try(op, fixed ? try_fixed_buf : try_rw_opt, fd,
                 (write ? AK__EP_OUT : AK__EP_IN) | AK__EP_NOW);
  return submit_op(op, now);
}

/* A plain or fixed read or write on op, a record just taken from the
 * thread's cache (not yet initialised). The direct way first: when it
 * goes the lean way (ak__loop_submits_lean, a free SQ slot) with an opcode
 * the kernel has done before on this loop, its SQE is written from the
 * arguments, then the record initialised, with no prep call and no params
 * in the record, which nothing reads once the op is in the SQ (the pool
 * path, the epoll backend's attempt and the admission queue are the
 * general way's, and a refusal (EINVAL) takes the pool only while the
 * opcode's state is unknown). Else rw_submit_general. Inlined into
 * ak_read_opt and ak_write_opt, where write is a constant: the QD1 read's
 * submission, straight-line, and its arguments go into the SQE before the
 * record's stores (issue 24). */
static inline __attribute__((always_inline)) ak_future *
rw_submit(ak_loop *loop, ak__op *op, bool write, int fd, void *buf, size_t len, int64_t offset,
          const ak_rw_opts *opts)
{
  static const ak_rw_opts defaults = AK_RW_OPTS_INIT;
  if (!opts)
    opts = &defaults; /* one test, not one per option */
  unsigned kind = write ? AK_OP_WRITE : AK_OP_READ;
  /* ak__loop_submits_lean's tests, the loop's flags as one word (with the
   * probe's answer for the four opcodes: a kernel without one of them
   * takes the general way) and its pointers or'ed. */
  if (AK__UNLIKELY(!ak__loop_rw_direct_open(loop) || loop->opcode_state[kind] != 1 ||
                   ((uintptr_t)loop->queued_head | (uintptr_t)loop->stage) != 0 ||
                   loop->in_flight >= loop->cq_capacity || !ak__loop_sq_has_room(loop))) {
    op->loop = loop;
    op->kind = (uint8_t)kind;
    return rw_submit_general(op, fd, buf, len, offset, opts);
  }
  struct io_uring_sqe *sqe = ak__loop_sq_take(loop);
  /* io_uring_prep_rw's fields, each written once: the arguments first,
   * then the options (read after the tests: held across them, or across
   * the arguments' stores, they took registers saved for it). */
  sqe->off = (uint64_t)offset;
  sqe->addr = (uint64_t)(uintptr_t)buf;
  sqe->len = (unsigned)ak__clamp_len(len);
  int buf_index = opts->buf_index;
  bool fixed = buf_index >= 0;
  unsigned opcode = write ? (fixed ? IORING_OP_WRITE_FIXED : IORING_OP_WRITE)
                          : (fixed ? IORING_OP_READ_FIXED : IORING_OP_READ);
  int file_index = opts->file_index;
  sqe->opcode = (__u8)opcode;
  sqe->flags = file_index >= 0 ? IOSQE_FIXED_FILE : 0;
  sqe->ioprio = 0;
  sqe->fd = file_index >= 0 ? file_index : fd;
  sqe->rw_flags = opts->rw_flags;
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
  /* buf_index, personality (0) and file_index (0): one store. */
  _Static_assert(offsetof(struct io_uring_sqe, personality) ==
                         offsetof(struct io_uring_sqe, buf_index) + 2 &&
                     offsetof(struct io_uring_sqe, file_index) ==
                         offsetof(struct io_uring_sqe, buf_index) + 4,
                 "the SQE's buf_index, personality and file_index are one 8-byte word");
  uint64_t index_word = fixed ? (uint16_t)buf_index : 0;
  memcpy(&sqe->buf_index, &index_word, sizeof(index_word));
#else
  sqe->buf_index = fixed ? (__u16)buf_index : 0;
  sqe->personality = 0;
  sqe->file_index = 0;
#endif
  sqe->addr3 = 0;
  sqe->__pad2[0] = 0;
  bool now = (opts->flags & AK_RW_SUBMIT_NOW) != 0;
  ak__op_init_direct(op, loop, kind);
  /* Plain (AK__OPF_PLAIN): no complete hook, the opcode's state 1, and
   * the lean way has no latency histogram. */
  ak__op_lean_account(loop, op, sqe, kind, 1, AK__OPF_PLAIN);
  loop->ops_active++;
  if (AK__UNLIKELY(now || ((const ak__loop_head *)(const void *)loop)->sqpoll))
    return ak__op_flush_early(op);
  return &op->future;
}

/* A read or write with the thread's op records empty: the allocator, and
 * the general way. Out of line and cold. */
static __attribute__((noinline, cold)) ak_future *
rw_submit_cold(ak_loop *loop, bool write, int fd, void *buf, size_t len, int64_t offset,
               const ak_rw_opts *opts)
{
  ak__op *op = ak__op_new(loop, write ? AK_OP_WRITE : AK_OP_READ);
  if (!op)
    return NULL;
  return rw_submit_general(op, fd, buf, len, offset, opts);
}

/* A record from the thread's op records (the caller saw them non-empty),
 * not yet initialised (rw_submit does that). */
static inline __attribute__((always_inline)) ak__op *op_record_take(void)
{
  ak__op *op = ak__op_records.head;
  ak__op_records.head = op->next;
  ak__op_records.room++;
  return op;
}

ak_future *ak_read_opt(ak_loop *loop, int fd, void *buf, size_t len, int64_t offset,
                       const ak_rw_opts *opts)
{
  AK__REQUIRE_OWNER(loop, "ak_read_opt");
  if (AK__UNLIKELY(ak__op_records.head == NULL))
    return rw_submit_cold(loop, false, fd, buf, len, offset, opts);
  return rw_submit(loop, op_record_take(), false, fd, buf, len, offset, opts);
}

ak_future *ak_write_opt(ak_loop *loop, int fd, const void *buf, size_t len, int64_t offset,
                        const ak_rw_opts *opts)
{
  AK__REQUIRE_OWNER(loop, "ak_write_opt");
  if (AK__UNLIKELY(ak__op_records.head == NULL))
    return rw_submit_cold(loop, true, fd, (void *)buf, len, offset, opts);
  return rw_submit(loop, op_record_take(), true, fd, (void *)buf, len, offset, opts);
}

static ak_future *vec_submit(ak_loop *loop, bool write, int fd, const struct iovec *iov,
                             unsigned iovcnt, int64_t offset, const ak_rw_opts *opts)
{
  if (iovcnt > IOV_MAX || (iovcnt > 0 && !iov))
    return ak__future_failed(loop, -EINVAL, "iovcnt exceeds IOV_MAX");
  struct iovec *heap = NULL;
  if (iovcnt > FS_INLINE_IOV) {
    heap = ak__malloc(iovcnt * sizeof(*iov));
    if (!heap)
      return NULL;
  }
  bool now;
  ak__op *op = ak__op_new(loop, write ? AK_OP_WRITEV : AK_OP_READV);
  if (!op) {
    ak__free(heap);
    return NULL;
  }
  rw_op_fill(op, fd, offset, opts, &now);
  fs_rw *d = AK__OP_DATA(op, fs_rw);
  d->buf_index = -1; /* no fixed vectored ops before 6.x; not offered */
  d->buf = NULL;
  d->len = 0;
  d->iov = heap ? heap : d->inline_iov;
  if (iovcnt)
    memcpy(d->iov, iov, iovcnt * sizeof(*iov));
  d->iovcnt = iovcnt;
  op->prep = write ? prep_writev : prep_readv;
  op->blocking = write ? blocking_writev : blocking_readv;
  op->complete = vec_complete;
  require_opcode(op, write ? IORING_OP_WRITEV : IORING_OP_READV);
  ak__op_set_try(op, try_rw_vec, fd, (write ? AK__EP_OUT : AK__EP_IN) | AK__EP_NOW);
  return submit_op(op, now);
}

ak_future *ak_readv(ak_loop *loop, int fd, const struct iovec *iov, unsigned iovcnt, int64_t offset,
                    const ak_rw_opts *opts)
{
  AK__REQUIRE_OWNER(loop, "ak_readv");
  return vec_submit(loop, false, fd, iov, iovcnt, offset, opts);
}

ak_future *ak_writev(ak_loop *loop, int fd, const struct iovec *iov, unsigned iovcnt,
                     int64_t offset, const ak_rw_opts *opts)
{
  AK__REQUIRE_OWNER(loop, "ak_writev");
  return vec_submit(loop, true, fd, iov, iovcnt, offset, opts);
}

/* ---- 3. open, cancel by fd, fsync, fallocate ---------------------------------- */

/* Paths are copied into the record when they fit, else to the heap. */
enum { FS_PATH_INLINE = 128 };

typedef struct fs_path {
  int dirfd;
  int dirfd2; /* renameat's new dirfd */
  int flags;
  unsigned mode;     /* openat/mkdirat mode, statx mask */
  struct statx *out; /* statx: the caller's buffer */
  char *path;        /* into inline_buf or heap */
  char *path2;       /* renameat's new path */
  char *heap;        /* both paths, when they did not fit */
  char inline_buf[FS_PATH_INLINE];
} fs_path;
_Static_assert(sizeof(fs_path) <= AK__OP_DATA_SIZE, "fs_path fits the op record");

/* A failure's detail names the path ("old -> new" for two), so a caller
 * several calls away can say which file failed. Only failures pay. */
static void set_path_detail(ak__op *op, const fs_path *d)
{
  size_t n = strlen(d->path) + (d->path2 ? strlen(d->path2) + 4 : 0) + 1;
  char *detail = ak__malloc(n);
  if (!detail)
    return;
  if (d->path2)
    snprintf(detail, n, "%s -> %s", d->path, d->path2);
  else
    memcpy(detail, d->path, n);
  ak__free(op->fut->detail); /* not settled yet: nobody else reads it */
  op->fut->detail = detail;
}

static void path_complete(ak__op *op, int res, unsigned flags)
{
  (void)flags;
  fs_path *d = AK__OP_DATA(op, fs_path);
  if (res < 0 && res != -ECANCELED)
    set_path_detail(op, d);
  ak__free(d->heap);
  d->heap = NULL;
  ak__op_finish(op, res);
}

/* A path op with its path(s) copied; NULL on ENOMEM. */
static ak__op *path_op_new(ak_loop *loop, unsigned kind, const char *path, const char *path2)
{
  size_t n1 = strlen(path) + 1, n2 = path2 ? strlen(path2) + 1 : 0;
  char *heap = NULL;
  if (n1 + n2 > FS_PATH_INLINE) {
    heap = ak__malloc(n1 + n2);
    if (!heap)
      return NULL;
  }
  ak__op *op = ak__op_new(loop, kind);
  if (!op) {
    ak__free(heap);
    return NULL;
  }
  fs_path *d = AK__OP_DATA(op, fs_path);
  memset(d, 0, offsetof(fs_path, inline_buf));
  char *mem = heap ? heap : d->inline_buf;
  d->heap = heap;
  memcpy(mem, path, n1);
  d->path = mem;
  if (path2) {
    memcpy(mem + n1, path2, n2);
    d->path2 = mem + n1;
  }
  op->complete = path_complete;
  return op;
}

static void prep_openat(ak__op *op, struct io_uring_sqe *sqe)
{
  fs_path *d = AK__OP_DATA(op, fs_path);
  io_uring_prep_openat(sqe, d->dirfd, d->path, d->flags, d->mode);
}

static int64_t blocking_openat(ak__op *op)
{
  fs_path *d = AK__OP_DATA(op, fs_path);
  return ak__syscall_result(openat(d->dirfd, d->path, d->flags, d->mode));
}

/* An open that completed after its future was cancelled: nobody takes it. */
static void discard_fd(ak__op *op, int res)
{
  (void)op;
  close(res);
}

ak_future *ak_openat(ak_loop *loop, int dirfd, const char *path, int flags, unsigned mode)
{
  AK__REQUIRE_OWNER(loop, "ak_openat");
  if (!path)
    return ak__future_failed(loop, -EFAULT, "ak_openat: path is NULL");
  ak__op *op = path_op_new(loop, AK_OP_OPENAT, path, NULL);
  if (!op)
    return NULL;
  fs_path *d = AK__OP_DATA(op, fs_path);
  d->dirfd = dirfd;
  d->flags = flags | O_CLOEXEC;
  d->mode = mode;
  op->prep = prep_openat;
  op->blocking = blocking_openat;
  op->discard = discard_fd;
  op->flags |= AK__OPF_CREATES;
  require_opcode(op, IORING_OP_OPENAT);
  return ak__op_submit(op);
}

/* fd ops without a buffer: cancel by fd, fsync, fallocate. fd comes first. */
typedef struct fs_fd {
  int fd;
  int mode; /* fallocate mode; fsync: IORING_FSYNC_DATASYNC or 0 */
  int64_t offset;
  int64_t len;
} fs_fd;
_Static_assert(sizeof(fs_fd) <= AK__OP_DATA_SIZE, "fs_fd fits the op record");

static ak__op *fd_op_new(ak_loop *loop, unsigned kind, int fd)
{
  ak__op *op = ak__op_new(loop, kind);
  if (!op)
    return NULL;
  fs_fd *d = AK__OP_DATA(op, fs_fd);
  d->fd = fd;
  d->mode = 0;
  d->offset = 0;
  d->len = 0;
  return op;
}

static void prep_cancel_fd(ak__op *op, struct io_uring_sqe *sqe)
{
  fs_fd *d = AK__OP_DATA(op, fs_fd);
  io_uring_prep_cancel_fd(sqe, d->fd, IORING_ASYNC_CANCEL_ALL);
}

static void cancel_fd_complete(ak__op *op, int res, unsigned flags)
{
  (void)flags;
  fs_fd *d = AK__OP_DATA(op, fs_fd);
  if (res == -ENOENT)
    res = 0; /* nothing in the kernel used fd */
  ak__op_finish(op, res < 0 ? res : res + d->len);
}

/* Whether a parked op's params start with fd (the kinds laid out so). */
static bool queued_op_uses_fd(const ak__op *op, int fd)
{
  switch (op->kind) {
  case AK_OP_READ:
  case AK_OP_WRITE:
  case AK_OP_READV:
  case AK_OP_WRITEV:
  case AK_OP_FSYNC:
  case AK_OP_FALLOCATE:
    return *(const int *)(const void *)op->data == fd;
  case AK_OP_SPLICE: /* fd_in, then fd_out */
    return ((const int *)(const void *)op->data)[0] == fd ||
           ((const int *)(const void *)op->data)[1] == fd;
  default:
    return false;
  }
}

ak_future *ak_cancel_fd(ak_loop *loop, int fd)
{
  AK__REQUIRE_OWNER(loop, "ak_cancel_fd");
  unsigned parked = ak__op_cancel_parked(loop, queued_op_uses_fd, fd);
  ak__op *op = fd_op_new(loop, AK_OP_CANCEL, fd);
  if (!op)
    return NULL;
  AK__OP_DATA(op, fs_fd)->len = parked;
  op->prep = prep_cancel_fd;
  op->complete = cancel_fd_complete;
  /* No pool path: there is nothing to cancel synchronously. */
  return ak__op_submit(op);
}

static void prep_fsync(ak__op *op, struct io_uring_sqe *sqe)
{
  fs_fd *d = AK__OP_DATA(op, fs_fd);
  io_uring_prep_fsync(sqe, d->fd, (unsigned)d->mode);
}

static int64_t blocking_fsync(ak__op *op)
{
  fs_fd *d = AK__OP_DATA(op, fs_fd);
  return ak__syscall_result(d->mode ? fdatasync(d->fd) : fsync(d->fd));
}

static ak_future *fsync_submit(ak_loop *loop, int fd, unsigned fsync_flags)
{
  ak__op *op = fd_op_new(loop, AK_OP_FSYNC, fd);
  if (!op)
    return NULL;
  AK__OP_DATA(op, fs_fd)->mode = (int)fsync_flags;
  op->prep = prep_fsync;
  op->blocking = blocking_fsync;
  require_opcode(op, IORING_OP_FSYNC);
  return ak__op_submit(op);
}

ak_future *ak_fsync(ak_loop *loop, int fd)
{
  AK__REQUIRE_OWNER(loop, "ak_fsync");
  return fsync_submit(loop, fd, 0);
}

ak_future *ak_fdatasync(ak_loop *loop, int fd)
{
  AK__REQUIRE_OWNER(loop, "ak_fdatasync");
  return fsync_submit(loop, fd, IORING_FSYNC_DATASYNC);
}

/* A filesystem that refuses fallocate: leave the file sparse, with the size
 * fallocate(mode 0) would have given it. */
static int64_t fallocate_sparse(const fs_fd *d)
{
  struct stat st;
  if (fstat(d->fd, &st) < 0)
    return -errno;
  if (st.st_size >= d->offset + d->len)
    return 0;
  return ak__syscall_result(ftruncate(d->fd, d->offset + d->len));
}

static bool is_refused_fallocate(const fs_fd *d, int64_t res)
{
  return res == -EOPNOTSUPP && d->mode == 0;
}

static void prep_fallocate(ak__op *op, struct io_uring_sqe *sqe)
{
  fs_fd *d = AK__OP_DATA(op, fs_fd);
  io_uring_prep_fallocate(sqe, d->fd, d->mode, (uint64_t)d->offset, (uint64_t)d->len);
}

static int64_t blocking_fallocate(ak__op *op)
{
  fs_fd *d = AK__OP_DATA(op, fs_fd);
  int64_t res = ak__syscall_result(fallocate(d->fd, d->mode, d->offset, d->len));
  return is_refused_fallocate(d, res) ? fallocate_sparse(d) : res;
}

static void fallocate_complete(ak__op *op, int res, unsigned flags)
{
  (void)flags;
  fs_fd *d = AK__OP_DATA(op, fs_fd);
  /* Reached when this loop has seen fallocate work on another file (else
   * op.c takes the first EOPNOTSUPP as "the kernel lacks it" and the pool
   * path above handles it). ftruncate is a metadata change: done here. */
  ak__op_finish(op, is_refused_fallocate(d, res) ? fallocate_sparse(d) : res);
}

ak_future *ak_fallocate(ak_loop *loop, int fd, int mode, int64_t offset, int64_t len)
{
  AK__REQUIRE_OWNER(loop, "ak_fallocate");
  ak__op *op = fd_op_new(loop, AK_OP_FALLOCATE, fd);
  if (!op)
    return NULL;
  fs_fd *d = AK__OP_DATA(op, fs_fd);
  d->mode = mode;
  d->offset = offset;
  d->len = len;
  op->prep = prep_fallocate;
  op->blocking = blocking_fallocate;
  op->complete = fallocate_complete;
  require_opcode(op, IORING_OP_FALLOCATE);
  return ak__op_submit(op);
}

/* ---- 4. Path ops ------------------------------------------------------------- */

static void prep_statx(ak__op *op, struct io_uring_sqe *sqe)
{
  fs_path *d = AK__OP_DATA(op, fs_path);
  io_uring_prep_statx(sqe, d->dirfd, d->path, d->flags, d->mode, d->out);
}

static int64_t blocking_statx(ak__op *op)
{
  fs_path *d = AK__OP_DATA(op, fs_path);
  return ak__syscall_result(statx(d->dirfd, d->path, d->flags, d->mode, d->out));
}

ak_future *ak_statx(ak_loop *loop, int dirfd, const char *path, int flags, unsigned mask,
                    struct statx *out)
{
  AK__REQUIRE_OWNER(loop, "ak_statx");
  if (!path || !out)
    return ak__future_failed(loop, -EFAULT, "ak_statx: path or out is NULL");
  ak__op *op = path_op_new(loop, AK_OP_STATX, path, NULL);
  if (!op)
    return NULL;
  fs_path *d = AK__OP_DATA(op, fs_path);
  d->dirfd = dirfd;
  d->flags = flags;
  d->mode = mask;
  d->out = out;
  op->prep = prep_statx;
  op->blocking = blocking_statx;
  require_opcode(op, IORING_OP_STATX);
  return ak__op_submit(op);
}

static void prep_renameat(ak__op *op, struct io_uring_sqe *sqe)
{
  fs_path *d = AK__OP_DATA(op, fs_path);
  io_uring_prep_renameat(sqe, d->dirfd, d->path, d->dirfd2, d->path2, (unsigned)d->flags);
}

static int64_t blocking_renameat(ak__op *op)
{
  fs_path *d = AK__OP_DATA(op, fs_path);
  return ak__syscall_result(renameat2(d->dirfd, d->path, d->dirfd2, d->path2, (unsigned)d->flags));
}

/* renameat and linkat: two paths, two dirfds, flags. */
static ak_future *two_path_op(ak_loop *loop, enum ak__op_kind kind, int olddirfd,
                              const char *oldpath, int newdirfd, const char *newpath, int flags,
                              ak__op_prep_fn prep, ak__op_blocking_fn blocking, unsigned opcode)
{
  ak__op *op = path_op_new(loop, kind, oldpath, newpath);
  if (!op)
    return NULL;
  fs_path *d = AK__OP_DATA(op, fs_path);
  d->dirfd = olddirfd;
  d->dirfd2 = newdirfd;
  d->flags = flags;
  op->prep = prep;
  op->blocking = blocking;
  require_opcode(op, opcode);
  return ak__op_submit(op);
}

ak_future *ak_renameat(ak_loop *loop, int olddirfd, const char *oldpath, int newdirfd,
                       const char *newpath, unsigned flags)
{
  AK__REQUIRE_OWNER(loop, "ak_renameat");
  if (!oldpath || !newpath)
    return ak__future_failed(loop, -EFAULT, "ak_renameat: a path is NULL");
  return two_path_op(loop, AK_OP_RENAMEAT, olddirfd, oldpath, newdirfd, newpath, (int)flags,
                     prep_renameat, blocking_renameat, IORING_OP_RENAMEAT);
}

static void prep_linkat(ak__op *op, struct io_uring_sqe *sqe)
{
  fs_path *d = AK__OP_DATA(op, fs_path);
  io_uring_prep_linkat(sqe, d->dirfd, d->path, d->dirfd2, d->path2, d->flags);
}

static int64_t blocking_linkat(ak__op *op)
{
  fs_path *d = AK__OP_DATA(op, fs_path);
  return ak__syscall_result(linkat(d->dirfd, d->path, d->dirfd2, d->path2, d->flags));
}

ak_future *ak_linkat(ak_loop *loop, int olddirfd, const char *oldpath, int newdirfd,
                     const char *newpath, int flags)
{
  AK__REQUIRE_OWNER(loop, "ak_linkat");
  if (!oldpath || !newpath)
    return ak__future_failed(loop, -EFAULT, "ak_linkat: a path is NULL");
  return two_path_op(loop, AK_OP_LINKAT, olddirfd, oldpath, newdirfd, newpath, flags, prep_linkat,
                     blocking_linkat, IORING_OP_LINKAT);
}

static void prep_unlinkat(ak__op *op, struct io_uring_sqe *sqe)
{
  fs_path *d = AK__OP_DATA(op, fs_path);
  io_uring_prep_unlinkat(sqe, d->dirfd, d->path, d->flags);
}

static int64_t blocking_unlinkat(ak__op *op)
{
  fs_path *d = AK__OP_DATA(op, fs_path);
  return ak__syscall_result(unlinkat(d->dirfd, d->path, d->flags));
}

ak_future *ak_unlinkat(ak_loop *loop, int dirfd, const char *path, int flags)
{
  AK__REQUIRE_OWNER(loop, "ak_unlinkat");
  if (!path)
    return ak__future_failed(loop, -EFAULT, "ak_unlinkat: path is NULL");
  ak__op *op = path_op_new(loop, AK_OP_UNLINKAT, path, NULL);
  if (!op)
    return NULL;
  fs_path *d = AK__OP_DATA(op, fs_path);
  d->dirfd = dirfd;
  d->flags = flags;
  op->prep = prep_unlinkat;
  op->blocking = blocking_unlinkat;
  require_opcode(op, IORING_OP_UNLINKAT);
  return ak__op_submit(op);
}

static void prep_mkdirat(ak__op *op, struct io_uring_sqe *sqe)
{
  fs_path *d = AK__OP_DATA(op, fs_path);
  io_uring_prep_mkdirat(sqe, d->dirfd, d->path, d->mode);
}

static int64_t blocking_mkdirat(ak__op *op)
{
  fs_path *d = AK__OP_DATA(op, fs_path);
  return ak__syscall_result(mkdirat(d->dirfd, d->path, d->mode));
}

ak_future *ak_mkdirat(ak_loop *loop, int dirfd, const char *path, unsigned mode)
{
  AK__REQUIRE_OWNER(loop, "ak_mkdirat");
  if (!path)
    return ak__future_failed(loop, -EFAULT, "ak_mkdirat: path is NULL");
  ak__op *op = path_op_new(loop, AK_OP_MKDIRAT, path, NULL);
  if (!op)
    return NULL;
  fs_path *d = AK__OP_DATA(op, fs_path);
  d->dirfd = dirfd;
  d->mode = mode;
  op->prep = prep_mkdirat;
  op->blocking = blocking_mkdirat;
  require_opcode(op, IORING_OP_MKDIRAT);
  return ak__op_submit(op);
}

/* ---- 5. splice ----------------------------------------------------------------- */

typedef struct fs_splice {
  int fd_in; /* first two: ak_cancel_fd matches either */
  int fd_out;
  int64_t off_in; /* -1: the fd's position */
  int64_t off_out;
  size_t len;
  unsigned flags;
} fs_splice;
_Static_assert(sizeof(fs_splice) <= AK__OP_DATA_SIZE, "fs_splice fits the op record");

static void prep_splice(ak__op *op, struct io_uring_sqe *sqe)
{
  fs_splice *d = AK__OP_DATA(op, fs_splice);
  io_uring_prep_splice(sqe, d->fd_in, d->off_in, d->fd_out, d->off_out, (unsigned)d->len, d->flags);
}

static int64_t blocking_splice(ak__op *op)
{
  fs_splice *d = AK__OP_DATA(op, fs_splice);
  loff_t in = d->off_in, out = d->off_out;
  return ak__syscall_result(splice(d->fd_in, d->off_in < 0 ? NULL : &in, d->fd_out,
                          d->off_out < 0 ? NULL : &out, d->len, d->flags));
}

ak_future *ak_splice(ak_loop *loop, int fd_in, int64_t off_in, int fd_out, int64_t off_out,
                     size_t len, unsigned flags)
{
  AK__REQUIRE_OWNER(loop, "ak_splice");
  ak__op *op = ak__op_new(loop, AK_OP_SPLICE);
  if (!op)
    return NULL;
  fs_splice *d = AK__OP_DATA(op, fs_splice);
  d->fd_in = fd_in;
  d->fd_out = fd_out;
  d->off_in = off_in < 0 ? -1 : off_in;
  d->off_out = off_out < 0 ? -1 : off_out;
  d->len = ak__clamp_len(len);
  d->flags = flags;
  op->prep = prep_splice;
  op->blocking = blocking_splice;
  require_opcode(op, IORING_OP_SPLICE);
  return ak__op_submit(op);
}
