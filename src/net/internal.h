/* net/internal.h: what the socket files share (net.c, net_bufring.c,
 * net_stream.c, net_resolve.c): the provided-buffer ring's internals and the
 * multi-step task future that send all, close and connect by host are made
 * of. Nothing here is public; the contract is include/asynckit/net.h.
 * The layers above net (tls, http) use only the public socket calls. */
#ifndef AK_NET_INTERNAL_H
#define AK_NET_INTERNAL_H

#include "core/internal.h"

/* ---- The provided-buffer ring (net_bufring.c) ------------------------------ */

struct ak_buf_ring {
  ak_loop *loop;                  /* registered with this loop's ring */
  struct io_uring_buf_ring *ring; /* shared with the kernel (mmap), or NULL */
  size_t ring_bytes;              /* its mapping's length */
  unsigned char *bufs;            /* count * size bytes: buffer i at i*size */
  size_t bufs_bytes;              /* their mapping's length */
  size_t size;                    /* bytes per buffer */
  unsigned count;                 /* buffers (a power of two) */
  int mask;                       /* io_uring_buf_ring_mask(count) */
  uint16_t bgid;                  /* the buffer group id streams select */
  bool provided;                  /* the kernel owns the ring (else fallback) */
};

/* The bytes of buffer bid. */
static inline unsigned char *ak__buf_ring_data(const ak_buf_ring *br, unsigned bid)
{
  return br->bufs + (size_t)bid * br->size;
}

/* Gives buffer bid back to the kernel. */
void ak__buf_ring_recycle(ak_buf_ring *br, unsigned bid);

/* Counts one exhaustion (ENOBUFS) in the loop's statistics. */
void ak__net_note_exhausted(ak_loop *loop);

/* ---- Socket ops pending per fd (net.c) -----------------------------------------
 * A count per fd of this thread's socket ops in flight, so that ak_close
 * cancels by fd only when something is pending: the kernel's cancel by fd
 * walks every pending request, which with 10,000 connections made each close
 * cost a scan of 20,000 (measured: a quarter of the CPU time of akbench
 * conns). Counting errs on the side of "busy": an op whose end bypasses its
 * complete function (cancelled while queued for CQ room) leaves its count, and
 * the close then cancels for nothing. */
/* Marks op as using socket fd: counted busy, and by its slot if the socket
 * is registered (core/register_sockets.c). */
void ak__net_op_on_fd(ak__op *op, int fd);
void ak__net_fd_idle(int fd);

/* ---- Multi-step tasks (net.c) --------------------------------------------------
 * A task is a future of its own kind whose work is a sequence of steps, each
 * a future (an op, a pool task). The task's aux field holds the pending step
 * (one reference); cancelling the task cancels that step, and the step's
 * callback sees ak_future_cancel_requested(task) and winds up. data is the
 * task's state, freed by the kind's free_data. */

/* A new task future of kind on loop with state data (aux, fn, fn_arg
 * cleared). NULL on ENOMEM. */
ak_future *ak__net_task_new(ak_loop *loop, const ak__future_kind *kind, void *data);

/* The cancel hook every task kind uses. */
void ak__net_task_cancel(ak_future *task);

/* Makes step the task's pending step (takes over the caller's reference to
 * step) and runs cb(step, task) on the loop when it settles, holding a
 * reference to task for cb. cb starts with ak__net_task_settled(task) and
 * ends with ak_future_release(task). Returns 0, or -ENOMEM (step is
 * released, nothing is registered). */
int ak__net_task_await(ak_future *task, ak_future *step, ak_callback cb);

/* First thing in a step callback: the task no longer has a pending step
 * (its reference is dropped; the callback still borrows the step). */
void ak__net_task_settled(ak_future *task);

#endif /* AK_NET_INTERNAL_H */
