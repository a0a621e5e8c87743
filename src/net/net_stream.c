/* net_stream.c: streams of results: multishot accept and multishot recv on a
 * provided-buffer ring, each a callback per item plus a future that settles
 * when the stream ends. Owns arming and re-arming: when the kernel ends a
 * multishot op for its own reasons (ENOBUFS, CQ pressure: a last CQE without
 * IORING_CQE_F_MORE) the stream re-arms it; after a lack of fds or memory
 * (accept) it re-arms after a short sleep; kernels without the multishot
 * opcode flags (EINVAL on the first arm) get single-shot ops re-armed after
 * each item, and loops without buffer rings single-shot recvs into a buffer
 * of the stream's own.
 *
 * A stream is a net task (net/internal.h): its pending step is the armed
 * op's future or the backoff sleep. Items are delivered from the op's
 * complete function, called for every CQE (no trip through the ready
 * queue); the op's end goes through its future's callback (stream_step),
 * which also sees ends that never reach complete (an op cancelled while it
 * waited for CQ room, loop teardown).
 *
 * Not here: the buffer ring itself (net_bufring.c), single ops (net.c).
 */
#define _GNU_SOURCE
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "net/internal.h"

enum { AK__STREAM_OWN_BUF = 16384, AK__ACCEPT_BACKOFF_NS = 10 * 1000 * 1000 };

typedef struct ak__stream {
  int fd;            /* the listening or connected socket */
  bool is_accept;    /* accept stream, else recv stream */
  bool multishot;    /* arm multishot ops (else single-shot) */
  bool tried_single; /* multishot was refused once: single-shot now */
  bool stopping;     /* the callback said STOP */
  bool end_seen;     /* the armed op's last CQE came through complete */
  int end_res;       /* ... and what it said: 1 go on, 0 EOF, < 0 error */
  int accept_flags;  /* SOCK_CLOEXEC | ... */
  ak_accept_fn accept_fn;
  ak_recv_fn recv_fn;
  void *arg;
  ak_buf_ring *br;        /* provided buffers, or NULL */
  unsigned char *own_buf; /* single-shot recv buffer when br is not provided */
  size_t own_size;
  uint64_t count; /* connections or bytes delivered */
} ak__stream;

typedef struct ak__stream_op_data {
  ak_future *task; /* borrowed: stream_step's reference covers the op */
} ak__stream_op_data;
_Static_assert(sizeof(ak__stream_op_data) <= AK__OP_DATA_SIZE, "stream op params fit");

static void stream_free(ak_future *task)
{
  ak__stream *s = task->data;
  ak__free(s->own_buf);
  ak__free(s);
}

static const ak__future_kind stream_kind = {
    .name = "stream", .cancel = ak__net_task_cancel, .free_data = stream_free};

static bool uses_provided(const ak__stream *s)
{
  return s->br && s->br->provided;
}

/* Whether items should still reach the callback. */
static bool is_delivering(const ak__stream *s, ak_future *task)
{
  return !s->stopping && !ak_future_cancel_requested(task);
}

/* ---- Items -------------------------------------------------------------------- */

static void deliver_accept(ak_future *task, ak__stream *s, int fd)
{
  if (!is_delivering(s, task)) {
    close(fd); /* nobody will take it */
    return;
  }
  s->count++;
  if (s->accept_fn(task->loop, fd, s->arg) == AK_STREAM_STOP)
    s->stopping = true;
}

static void deliver_recv(ak_future *task, ak__stream *s, int res, unsigned flags)
{
  bool has_buf = (flags & IORING_CQE_F_BUFFER) != 0;
  unsigned bid = flags >> IORING_CQE_BUFFER_SHIFT;
  /* Defensive, believed never to fire: a provided-buffer recv always names
   * its buffer. */
  bool has_data = has_buf || !uses_provided(s);
  if (res > 0 && has_data && is_delivering(s, task)) {
    const unsigned char *data = has_buf ? ak__buf_ring_data(s->br, bid) : s->own_buf;
    s->count += (uint64_t)res;
    if (s->recv_fn(task->loop, data, (size_t)res, s->arg) == AK_STREAM_STOP)
      s->stopping = true;
  }
  if (has_buf)
    ak__buf_ring_recycle(s->br, bid); /* back to the kernel after the callback */
}

/* Every CQE of the armed op: multishot items (F_MORE), then its last. */
static void stream_op_complete(ak__op *op, int res, unsigned flags)
{
  ak_future *task = AK__OP_DATA(op, ak__stream_op_data)->task;
  ak__stream *s = task->data;
  bool more = (op->flags & AK__OPF_MULTISHOT) && (flags & IORING_CQE_F_MORE);
  bool was_stopping = s->stopping;
  if (s->is_accept) {
    if (res >= 0)
      deliver_accept(task, s, res);
  } else {
    deliver_recv(task, s, res, flags);
    if (res == -ENOBUFS)
      ak__net_note_exhausted(task->loop);
  }
  if (more) {
    if (s->stopping && !was_stopping)
      ak_future_cancel(op->fut); /* the last CQE (-ECANCELED) ends the stream */
    return;
  }
  s->end_seen = true;
  ak__net_fd_idle(s->fd);
  if (s->is_accept)
    s->end_res = res >= 0 ? 1 : res;
  else
    s->end_res = res > 0 ? 1 : res;
  ak__op_finish(op, res); /* stream_step decides what follows */
}

/* ---- Arming ------------------------------------------------------------------- */

static void prep_stream_op(ak__op *op, struct io_uring_sqe *sqe)
{
  ak__stream *s = AK__OP_DATA(op, ak__stream_op_data)->task->data;
  bool multi = (op->flags & AK__OPF_MULTISHOT) != 0;
  if (s->is_accept) {
    if (multi)
      io_uring_prep_multishot_accept(sqe, s->fd, NULL, NULL, s->accept_flags);
    else
      io_uring_prep_accept(sqe, s->fd, NULL, NULL, s->accept_flags);
    return;
  }
  if (!uses_provided(s)) {
    io_uring_prep_recv(sqe, s->fd, s->own_buf, s->own_size, 0);
    return;
  }
  if (multi)
    io_uring_prep_recv_multishot(sqe, s->fd, NULL, 0, 0);
  else
    io_uring_prep_recv(sqe, s->fd, NULL, s->br->size, 0);
  sqe->flags |= IOSQE_BUFFER_SELECT;
  sqe->buf_group = s->br->bgid;
}

/* The epoll backend: accept after readiness (the backend keeps a multishot
 * accept armed and takes what poll says is waiting); recv into the
 * stream's own buffer with MSG_DONTWAIT (no provided buffers there). */
static int64_t try_stream_op(ak__op *op, bool ready)
{
  ak__stream *s = AK__OP_DATA(op, ak__stream_op_data)->task->data;
  if (s->is_accept)
    return ready ? ak__syscall_result(accept4(s->fd, NULL, NULL, s->accept_flags))
                 : AK__OP_TRY_WAIT;
  ssize_t n = recv(s->fd, s->own_buf, s->own_size, MSG_DONTWAIT);
  if (n >= 0 && (size_t)n < s->own_size)
    op->ep_dir |= AK__EP_DRAINED;
  return ak__try_result(n, false);
}

static void stream_step(ak_future *step, void *arg);

static int stream_arm(ak_future *task)
{
  ak__stream *s = task->data;
  ak__op *op = ak__op_new(task->loop, s->is_accept ? AK_OP_ACCEPT : AK_OP_RECV);
  if (!op)
    return -ENOMEM;
  AK__OP_DATA(op, ak__stream_op_data)->task = task;
  op->prep = prep_stream_op;
  op->complete = stream_op_complete;
  ak__op_set_try(op, try_stream_op, s->fd, s->is_accept ? AK__EP_IN | AK__EP_ONCE : AK__EP_IN);
  if (s->multishot)
    op->flags |= AK__OPF_MULTISHOT;
  s->end_seen = false;
  ak__net_op_on_fd(op, s->fd);
  /* The first callback of a new future needs no allocation: this cannot
   * fail, and if it did the extra reference keeps the op's task alive. */
  ak_future_ref(task);
  if (ak__net_task_await(task, ak__op_submit(op), stream_step) < 0)
    return -ENOMEM;
  ak_future_release(task);
  return 0;
}

static void stream_end(ak_future *task, int res)
{
  ak__stream *s = task->data;
  ak__future_finish(task, res < 0 ? res : (int64_t)s->count);
}

/* The sleep after a lack of fds or memory has passed (or was cancelled). */
static void backoff_done(ak_future *step, void *arg)
{
  ak_future *task = arg;
  ak__net_task_settled(task);
  int rc;
  if (ak_future_is_error(step) || ak_future_cancel_requested(task))
    stream_end(task, -ECANCELED);
  else if ((rc = stream_arm(task)) < 0)
    stream_end(task, rc);
  ak_future_release(task);
}

static bool is_accept_transient(int err)
{
  return err == -EMFILE || err == -ENFILE || err == -ENOMEM || err == -ENOBUFS ||
         err == -ECONNABORTED || err == -EPROTO || err == -EPERM || err == -EINTR ||
         err == -EAGAIN || err == -ENETDOWN || err == -EHOSTUNREACH || err == -ENETUNREACH;
}

static bool needs_backoff(int err)
{
  return err == -EMFILE || err == -ENFILE || err == -ENOMEM || err == -ENOBUFS;
}

/* The armed op has ended: re-arm, back off, or end the stream. */
static void stream_step(ak_future *step, void *arg)
{
  ak_future *task = arg;
  ak__stream *s = task->data;
  ak__net_task_settled(task);
  int res = s->end_seen ? s->end_res : (int)ak_future_result(step);
  int next = 0; /* 1: re-arm now, 2: a sleep is pending, 0: end with res */
  if (s->stopping) {
    res = 0;
  } else if (ak_future_cancel_requested(task)) {
    res = res == 0 && !s->is_accept ? 0 : -ECANCELED; /* an EOF that won the race stands */
  } else if (res > 0) {
    next = 1; /* an item ended the op (single-shot, CQ pressure) */
  } else if (res == -ENOBUFS && !s->is_accept) {
    next = 1; /* every buffer delivered so far is back: this batch is done */
  } else if (res == -EINVAL && s->multishot && !s->tried_single && s->count == 0) {
    s->multishot = false; /* a kernel without the multishot flag */
    s->tried_single = true;
    next = 1;
  } else if (s->is_accept && is_accept_transient(res)) {
    /* The callback hears of the error and decides. */
    if (s->accept_fn(task->loop, res, s->arg) == AK_STREAM_STOP) {
      s->stopping = true;
      res = 0;
    } else if (!needs_backoff(res)) {
      next = 1;
    } else if ((res = ak__net_task_await(task, ak_sleep(task->loop, AK__ACCEPT_BACKOFF_NS),
                                         backoff_done)) == 0) {
      next = 2;
    }
  }
  if (next == 1) {
    int rc = stream_arm(task);
    if (rc < 0)
      stream_end(task, rc);
  } else if (next != 2) {
    stream_end(task, res);
  }
  ak_future_release(task);
}

/* ---- Public entry points -------------------------------------------------------- */

static ak_future *stream_start(ak_loop *loop, ak__stream *s)
{
  ak_future *task = ak__net_task_new(loop, &stream_kind, s);
  if (!task) {
    ak__free(s->own_buf);
    ak__free(s);
    return NULL;
  }
  int rc = stream_arm(task);
  if (rc < 0)
    ak__future_finish(task, rc);
  return task;
}

ak_future *ak_accept_stream(ak_loop *loop, int fd, int flags, ak_accept_fn fn, void *arg)
{
  AK__REQUIRE_OWNER(loop, "ak_accept_stream");
  if (!fn || (flags & SOCK_NONBLOCK))
    return ak__future_failed(loop, -EINVAL, "ak_accept_stream: fn, or SOCK_NONBLOCK");
  ak__stream *s = ak__calloc(1, sizeof(*s));
  if (!s)
    return NULL;
  s->fd = fd;
  s->is_accept = true;
  s->multishot = true; /* on epoll too: backend_epoll.c keeps the op armed */
  s->accept_flags = flags | SOCK_CLOEXEC;
  s->accept_fn = fn;
  s->arg = arg;
  return stream_start(loop, s);
}

ak_future *ak_recv_stream(ak_loop *loop, int fd, ak_buf_ring *br, ak_recv_fn fn, void *arg)
{
  AK__REQUIRE_OWNER(loop, "ak_recv_stream");
  if (!fn || (br && br->loop != loop))
    return ak__future_failed(loop, -EINVAL, "ak_recv_stream: fn, or a ring of another loop");
  ak__stream *s = ak__calloc(1, sizeof(*s));
  if (!s)
    return NULL;
  s->fd = fd;
  s->recv_fn = fn;
  s->arg = arg;
  s->br = br;
  s->multishot = br && br->provided;
  if (!s->multishot) {
    s->own_size = br ? br->size : AK__STREAM_OWN_BUF;
    s->own_buf = ak__malloc(s->own_size);
    if (!s->own_buf) {
      ak__free(s);
      return NULL;
    }
  }
  return stream_start(loop, s);
}
