/* asynckit/batch.h: batches, linked chains and barriers: several operations
 * as one future (the low-latency use). docs/batch.md has the kernel rules.
 *
 * A builder (ak_batch) collects operations; it is then submitted as
 *   - a batch: every op handed to the kernel with one io_uring_enter, each
 *     independent; the future's result is how many succeeded (result >= 0);
 *   - a chain: each op starts only if the one before succeeded in full
 *     (IOSQE_IO_LINK: an error, or a read/write/send/recv shorter than
 *     asked, breaks it; socket ops get MSG_WAITALL); the future's result is
 *     the index of the first failure (the op count if none), and every op
 *     after a break has -ECANCELED. A hard link (ak_batch_hard) does not
 *     break on a result, only on the kernel refusing the next op.
 * Every op's own result (bytes, fd, 0, or -errno) goes into the caller's
 * array, valid once the future has settled. The caller's buffers, iovecs,
 * paths and the results array must stay valid until then, cancelled or not
 * (as for single ops). All or nothing at submission: the SQ is flushed
 * first if it cannot take every op; more ops than the ring can hold fail
 * the future with -E2BIG.
 *
 * A barrier (ak_batch_barrier) in a batch makes the ops added after it start
 * once every op before it has completed, in user space (no ring-wide
 * IOSQE_IO_DRAIN, unless the loop was made with AK_LOOP_DRAIN_BARRIERS:
 * asynckit/loop.h). Cancelling the future cancels every op in flight and
 * starts no more; it settles CANCELLED when one was cancelled. A chain's
 * deadline (ak_chain_submit) bounds the whole chain: the op running then
 * has -ETIMEDOUT, the rest -ECANCELED, and the future settles DONE with
 * that op's index.
 *
 * The epoll backend runs the same calls with the same results: a batch as
 * independent ops, a chain one op after another.
 *
 * Not thread-safe: a builder belongs to its loop's thread.
 */
#ifndef ASYNCKIT_BATCH_H
#define ASYNCKIT_BATCH_H

#include "api.h"

#include <stddef.h>
#include <stdint.h>

#include "fs.h"
#include "loop.h"

#ifdef __cplusplus
extern "C" {
#endif

struct iovec;
struct statx;

typedef struct ak_batch ak_batch;

/* A builder for up to capacity ops on loop (owner thread). 0, -EINVAL
 * (capacity 0) or -ENOMEM. The builder allocates nothing more while it is
 * reused. */
AK_API int ak_batch_new(ak_loop *loop, unsigned capacity, ak_batch **out);

/* Frees the builder. If its last submission is still in flight, the builder
 * is freed when that settles (the submission is not cancelled). */
AK_API void ak_batch_free(ak_batch *b);

/* Empties the builder for reuse: needed after every submission, which
 * takes the ops with it. -EBUSY while its last submission has not settled
 * (the kernel may still read it). */
AK_API int ak_batch_reset(ak_batch *b);

/* Ops added so far. */
AK_API unsigned ak_batch_count(const ak_batch *b);

enum {
  /* ak_batch_set_flags: count every CQE of a chain instead of asking for
   * one per chain (IOSQE_CQE_SKIP_SUCCESS). The results are the same. */
  AK_BATCH_NO_SKIP_SUCCESS = 1u << 0,
};
AK_API void ak_batch_set_flags(ak_batch *b, unsigned flags);

/* Adding ops: each returns the op's index (its slot in the results array),
 * -ENOSPC when the builder is full, -EBUSY after a submission until
 * ak_batch_reset (the ops are written into the loop's SQ as they are
 * added, where the submission takes them).
 * What is passed by pointer is read by the kernel later: keep it valid until
 * the submission's future settles. */
AK_API int ak_batch_nop(ak_batch *b);
/* opts: NULL, or a registered file (file_index) and/or buffer (buf_index:
 * READ_FIXED / WRITE_FIXED) as for ak_read_opt; rw_flags as RWF_*. On
 * epoll the plain fd and buffer are used. A full transfer is len bytes. */
AK_API int ak_batch_read(ak_batch *b, int fd, void *buf, size_t len, int64_t offset,
                         const ak_rw_opts *opts);
AK_API int ak_batch_write(ak_batch *b, int fd, const void *buf, size_t len, int64_t offset,
                          const ak_rw_opts *opts);
AK_API int ak_batch_readv(ak_batch *b, int fd, const struct iovec *iov, unsigned iovcnt,
                          int64_t offset);
AK_API int ak_batch_writev(ak_batch *b, int fd, const struct iovec *iov, unsigned iovcnt,
                           int64_t offset);
/* fsync, or fdatasync when datasync is non-zero. */
AK_API int ak_batch_fsync(ak_batch *b, int fd, int datasync);
/* send (MSG_NOSIGNAL added) and recv; in a chain MSG_WAITALL is added. */
AK_API int ak_batch_send(ak_batch *b, int fd, const void *buf, size_t len, int flags);
AK_API int ak_batch_recv(ak_batch *b, int fd, void *buf, size_t len, int flags);
/* openat: the result is the new fd, the caller's to close (closed by the
 * library if the submission was cancelled). O_CLOEXEC is added. */
AK_API int ak_batch_openat(ak_batch *b, int dirfd, const char *path, int flags, unsigned mode);
AK_API int ak_batch_close(ak_batch *b, int fd);
AK_API int ak_batch_statx(ak_batch *b, int dirfd, const char *path, int flags, unsigned mask,
                          struct statx *out);

/* Makes the link from the last op added to the next one hard
 * (IOSQE_IO_HARDLINK): in a chain the next op runs whatever the result.
 * -EINVAL if no op was added. */
AK_API int ak_batch_hard(ak_batch *b);

/* A barrier after the last op added: in a batch, the ops added after it
 * start once every op before it has completed. (A chain is ordered already;
 * barriers do not change it.) -EINVAL if no op was added. */
AK_API int ak_batch_barrier(ak_batch *b);

/* Submits the ops as a batch; results has room for ak_batch_count(b)
 * results. The future's result: how many ops succeeded. NULL on ENOMEM.
 * A second submission without ak_batch_reset fails -EBUSY (so does one
 * with no ops, -EINVAL). */
AK_API ak_future *ak_batch_submit(ak_batch *b, int64_t *results);

/* Submits the ops as a chain; deadline_ns (< 0: none) bounds the whole
 * chain. The future's result: the index of the first failure, or the count.
 * NULL on ENOMEM. */
AK_API ak_future *ak_chain_submit(ak_batch *b, int64_t *results, int64_t deadline_ns);

#ifdef __cplusplus
}
#endif

#endif /* ASYNCKIT_BATCH_H */
