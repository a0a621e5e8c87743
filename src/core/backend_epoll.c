/* backend_epoll.c: the second backend, for where io_uring cannot be used
 * (a seccomp filter, kernel.io_uring_disabled, an old kernel) or is not
 * wanted (AK_BACKEND=epoll). It takes the ring's place behind the seam in
 * op.c and loop.c and keeps everything else: op records, admission,
 * futures, timers, the ready queue, lanes, statistics.
 *
 * How an op runs here:
 *   - nop completes at once; ak_timeout is a loop timer; a cancel by fd
 *     cancels the ops waiting on the fd;
 *   - an op with an attempt function (sockets, pipes, ttys: ak__op_set_try)
 *     tries its syscall without blocking (MSG_DONTWAIT, RWF_NOWAIT) and, on
 *     EAGAIN, waits for readiness: it joins its fd's list of readers or
 *     writers, and the fd is armed in the epoll set with EPOLLONESHOT;
 *   - everything else (regular files, names, fsync...) runs its blocking
 *     twin on the pool (op.c's pool path).
 * The user's fds stay as they are: never O_NONBLOCK (the file description
 * is shared with whoever else holds it), except for the instant a connect
 * is started (net.c says why).
 *
 * Completions are collected in a list while the backend waits and
 * dispatched by ak__ep_reap, as io_uring's CQEs are: no user code runs
 * inside a submit, a cancel or the wait.
 *
 * Wakeups are never lost: EPOLLONESHOT disarms the fd when it reports, and
 * the fd is re-armed (EPOLL_CTL_MOD, which reports at once a condition that
 * already holds) before the next wait whenever ops still wait on it. Armed
 * state is trusted only while waiters exist without a break: an fd left
 * without waiters is re-armed from scratch next time (MOD, ENOENT -> ADD),
 * so an fd closed behind our back and its number reused cannot hang an op.
 *
 * Deadlines: a loop timer per op cancels it; op.c then turns the op's
 * -ECANCELED into -ETIMEDOUT as it does for a linked timeout.
 *
 * Not here: choosing the backend (loop.c), what each op's attempt does
 * (ring_ops.c, fs/fs.c, net/net.c, net/net_stream.c).
 *
 * Map: set-up and free; completions (done list, multishot items, reap);
 * fds and their waiters (arming, readiness); starting an op (timeouts,
 * cancel by fd, deadlines); cancel; the wait; reads and writes of any fd.
 */
#define _GNU_SOURCE
#include <poll.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/loop_internal.h"

/* op->ep_state */
enum {
  EP_IDLE = 0, /* not in the backend (new, on the pool, dispatched) */
  EP_WAITING,  /* on its fd's list of readers or writers */
  EP_TIMER,    /* ak_timeout: waiting for its own timer */
  EP_DONE,     /* on the done list, res in op->res */
};

#define EP_WAKE_KEY UINT64_MAX /* the eventfd's epoll_data */

/* epoll_pwait2 (5.11+, nanosecond timeouts) is missing or refused here. */
static _Atomic bool ak__ep_no_pwait2;

/* One result of a multishot op (an accept stream's connection): delivered
 * before the op's own end, which always comes in a later or the same batch
 * (ak__ep_reap dispatches items first). */
typedef struct ep_item {
  struct ep_item *next;
  ak__op *op;
  int res;
} ep_item;

/* An fd with ops waiting on it (indexed by fd). */
typedef struct ak__ep_fd {
  ak__op *in_head, *in_tail;   /* waiting for readable, FIFO */
  ak__op *out_head, *out_tail; /* waiting for writable, FIFO */
  uint32_t armed;              /* events armed since waiters appeared; 0:
                                  re-arm from scratch */
  int next_dirty;              /* link on the re-arm list, -1 last */
  bool dirty;                  /* on the re-arm list */
  bool drained;                /* a read found it empty: wait before trying */
} ak__ep_fd;

struct ak__epoll {
  int epfd;
  ak__ep_fd *fds;              /* by fd number, grown on demand */
  size_t nfds;
  int dirty_head;              /* fds whose armed events must be checked */
  ak__op *done_head;           /* completions not yet dispatched, FIFO */
  ak__op *done_tail;
  ak__op *timed;               /* ak_timeout ops waiting for their timer */
  ak__op *pooled;              /* ops moved to the pool with their deadline */
  struct ep_item *items_head;  /* multishot items not yet dispatched, FIFO */
  struct ep_item *items_tail;
  unsigned waiting;            /* ops on fd lists */
};

/* ---- Set-up and free ----------------------------------------------------- */

int ak__ep_init(ak_loop *loop) {
  ak__epoll *ep = ak__calloc(1, sizeof(*ep));
  if (!ep)
    return -ENOMEM;
  ep->dirty_head = -1;
  ep->epfd = epoll_create1(EPOLL_CLOEXEC);
  if (ep->epfd < 0) {
    int err = -errno;
    ak__free(ep);
    return err;
  }
  /* Level-triggered: a wakeup not yet read keeps the loop from sleeping. */
  struct epoll_event ev = {.events = EPOLLIN, .data.u64 = EP_WAKE_KEY};
  if (epoll_ctl(ep->epfd, EPOLL_CTL_ADD, loop->eventfd, &ev) < 0) {
    int err = -errno;
    close(ep->epfd);
    ak__free(ep);
    return err;
  }
  loop->ep = ep;
  return 0;
}

void ak__ep_free(ak_loop *loop) {
  ak__epoll *ep = loop->ep;
  close(ep->epfd);
  ak__free(ep->fds);
  ak__free(ep);
  loop->ep = NULL;
}

/* ---- Completions --------------------------------------------------------- */

static void push_done(ak__op *op, int64_t res) {
  ak_loop *loop = op->loop;
  ak__epoll *ep = loop->ep;
  if (op->ep_timer) {
    /* The deadline's timer (ak_timeout's own is gone when it fires). */
    ak_timer_cancel(loop, op->ep_timer);
    op->ep_timer = NULL;
  }
  op->res = (int)res;
  op->ep_state = EP_DONE;
  op->ep_next = NULL;
  if (ep->done_tail)
    ep->done_tail->ep_next = op;
  else
    ep->done_head = op;
  ep->done_tail = op;
}

static bool push_item(ak__op *op, int64_t res) {
  ak__epoll *ep = op->loop->ep;
  ep_item *it = ak__malloc(sizeof(*it));
  if (!it)
    return false;
  it->next = NULL;
  it->op = op;
  it->res = (int)res;
  if (ep->items_tail)
    ep->items_tail->next = it;
  else
    ep->items_head = it;
  ep->items_tail = it;
  return true;
}

void ak__ep_reap(ak_loop *loop) {
  ak__epoll *ep = loop->ep;
  ep_item *it = ep->items_head;
  ep->items_head = ep->items_tail = NULL;
  while (it) {
    ep_item *next = it->next;
    ak__op_cqe(it->op, it->res, IORING_CQE_F_MORE, AK__TAG_OP);
    ak__free(it);
    it = next;
  }
  /* This batch only: what its completions start completes in the next. */
  ak__op *op = ep->done_head;
  ep->done_head = ep->done_tail = NULL;
  while (op) {
    ak__op *next = op->ep_next; /* op may be recycled by its completion */
    op->ep_state = EP_IDLE;
    ak__op_cqe(op, op->res, 0, AK__TAG_OP);
    op = next;
  }
}

/* Undoes a start's accounting and hands op to the pool (a fd epoll cannot
 * watch, such as /dev/full: its blocking call is made there). A deadline
 * goes with it: a device without poll can still block (/dev/hwrng), and a
 * busy pool can hold the task past the deadline, so the timer stays and, if
 * it fires first, cancels the task that has not started, as a linked
 * timeout cancels an io-wq request on the ring. The op sits on ep->pooled
 * until the pool returns it (ak__ep_pool_returned). */
static void move_to_pool(ak__op *op) {
  ak_loop *loop = op->loop;
  ak__epoll *ep = loop->ep;
  loop->in_flight -= op->slots;
  op->flags &= (uint16_t)~AK__OPF_SUBMITTED;
  op->ep_state = EP_IDLE;
  if (op->ep_timer) {
    op->flags |= AK__OPF_POOL_DEADLINE;
    op->ep_prev = NULL;
    op->ep_next = ep->pooled;
    if (ep->pooled)
      ep->pooled->ep_prev = op;
    ep->pooled = op;
  }
  ak__op_run_on_pool(op);
}

static void unlink_pooled(ak__op *op) {
  ak__epoll *ep = op->loop->ep;
  if (op->ep_prev)
    op->ep_prev->ep_next = op->ep_next;
  else
    ep->pooled = op->ep_next;
  if (op->ep_next)
    op->ep_next->ep_prev = op->ep_prev;
  op->ep_prev = op->ep_next = NULL;
  op->flags &= (uint16_t)~AK__OPF_POOL_DEADLINE;
}

void ak__ep_pool_returned(ak__op *op) {
  unlink_pooled(op);
  if (op->ep_timer) {
    ak_timer_cancel(op->loop, op->ep_timer);
    op->ep_timer = NULL;
  }
}

/* ---- Fds and their waiters ------------------------------------------------ */

static ak__ep_fd *fd_slot(ak__epoll *ep, int fd) {
  if (fd < 0)
    return NULL;
  if ((size_t)fd >= ep->nfds) {
    size_t n = ep->nfds ? ep->nfds : 64;
    while (n <= (size_t)fd)
      n *= 2;
    ak__ep_fd *grown = ak__realloc(ep->fds, n * sizeof(*grown));
    if (!grown)
      return NULL;
    memset(grown + ep->nfds, 0, (n - ep->nfds) * sizeof(*grown));
    ep->fds = grown;
    ep->nfds = n;
  }
  return &ep->fds[fd];
}

static void mark_dirty(ak__epoll *ep, int fd) {
  ak__ep_fd *rec = &ep->fds[fd];
  if (rec->dirty)
    return;
  rec->dirty = true;
  rec->next_dirty = ep->dirty_head;
  ep->dirty_head = fd;
}

static bool waits_for_in(const ak__op *op) { return (op->ep_dir & AK__EP_IN) != 0; }

static void list_append(ak__op **head, ak__op **tail, ak__op *op) {
  op->ep_next = NULL;
  op->ep_prev = *tail;
  if (*tail)
    (*tail)->ep_next = op;
  else
    *head = op;
  *tail = op;
}

static void list_unlink(ak__op **head, ak__op **tail, ak__op *op) {
  if (op->ep_prev)
    op->ep_prev->ep_next = op->ep_next;
  else
    *head = op->ep_next;
  if (op->ep_next)
    op->ep_next->ep_prev = op->ep_prev;
  else
    *tail = op->ep_prev;
  op->ep_prev = op->ep_next = NULL;
}

static void wait_on_fd(ak__op *op) {
  ak_loop *loop = op->loop;
  ak__epoll *ep = loop->ep;
  ak__ep_fd *rec = fd_slot(ep, op->ep_fd);
  if (!rec) {
    push_done(op, op->ep_fd < 0 ? -EBADF : -ENOMEM);
    return;
  }
  if (waits_for_in(op))
    list_append(&rec->in_head, &rec->in_tail, op);
  else
    list_append(&rec->out_head, &rec->out_tail, op);
  op->ep_state = EP_WAITING;
  ep->waiting++;
  loop->stats.readiness_waits++;
  mark_dirty(ep, op->ep_fd);
}

static void unwait(ak__op *op) {
  ak__epoll *ep = op->loop->ep;
  ak__ep_fd *rec = &ep->fds[op->ep_fd];
  if (waits_for_in(op))
    list_unlink(&rec->in_head, &rec->in_tail, op);
  else
    list_unlink(&rec->out_head, &rec->out_tail, op);
  ep->waiting--;
  op->ep_state = EP_IDLE;
  /* No waiters left: forget what is armed now, not at the next re-arm. The
   * caller may close the fd and get its number back for another file before
   * the loop runs again; that file is not in the epoll set. */
  if (!rec->in_head && !rec->out_head)
    rec->armed = 0;
  mark_dirty(ep, op->ep_fd);
}

/* Every waiter of rec ends with err (the fd cannot be watched), or goes to
 * the pool when epoll refuses the fd (EPERM: it is always ready). */
static void fail_waiters(ak__epoll *ep, ak__ep_fd *rec, int err) {
  ak__op **lists[2] = {&rec->in_head, &rec->out_head};
  for (int i = 0; i < 2; i++) {
    while (*lists[i]) {
      ak__op *op = *lists[i];
      unwait(op);
      if (err == -EPERM && op->blocking)
        move_to_pool(op);
      else
        push_done(op, err);
    }
  }
  (void)ep;
}

/* Arms fd for what its waiters need, unless it is armed so already. */
static void rearm(ak__epoll *ep, int fd) {
  ak__ep_fd *rec = &ep->fds[fd];
  uint32_t want = (rec->in_head ? EPOLLIN : 0u) | (rec->out_head ? EPOLLOUT : 0u);
  if (want == 0) {
    rec->armed = 0; /* nobody waits: trust nothing about it next time */
    return;
  }
  if (rec->armed == want)
    return;
  struct epoll_event ev = {.events = want | EPOLLONESHOT, .data.u64 = (uint64_t)fd};
  int rc = epoll_ctl(ep->epfd, EPOLL_CTL_MOD, fd, &ev);
  if (rc < 0 && errno == ENOENT)
    rc = epoll_ctl(ep->epfd, EPOLL_CTL_ADD, fd, &ev);
  if (rc < 0) {
    rec->armed = 0;
    fail_waiters(ep, rec, -errno);
    return;
  }
  rec->armed = want;
}

static void rearm_dirty(ak__epoll *ep) {
  while (ep->dirty_head >= 0) {
    int fd = ep->dirty_head;
    ak__ep_fd *rec = &ep->fds[fd];
    ep->dirty_head = rec->next_dirty;
    rec->dirty = false;
    rearm(ep, fd);
  }
}

/* Tries op after readiness: true if it finished (completed or moved). */
static bool attempt_ready(ak__op *op) {
  int64_t r = op->attempt(op, true);
  if (r == AK__OP_TRY_WAIT)
    return false;
  unwait(op);
  if (r == AK__OP_TRY_POOL)
    move_to_pool(op);
  else
    push_done(op, r);
  return true;
}

/* Whether poll(2) says fd is ready in dir now (no wait). */
static bool poll_ready(int fd, unsigned dir) {
  struct pollfd pfd = {.fd = fd, .events = (dir & AK__EP_IN) ? POLLIN : POLLOUT};
  return poll(&pfd, 1, 0) == 1 && (pfd.revents & pfd.events);
}

/* A multishot op (accept stream) stays armed: one readiness report gives
 * as many items as poll says are waiting, up to a batch. */
static void run_multishot(ak__op *op) {
  for (int i = 0; i < 64; i++) {
    if (i > 0 && !poll_ready(op->ep_fd, op->ep_dir))
      return;
    int64_t r = op->attempt(op, true);
    if (r == AK__OP_TRY_WAIT)
      return;
    if (r < 0 || r == AK__OP_TRY_POOL || !push_item(op, r)) {
      unwait(op);
      push_done(op, r >= 0 ? -ENOMEM : r == AK__OP_TRY_POOL ? -EOPNOTSUPP : r);
      return;
    }
  }
}

/* Runs the waiters of one direction in order until one must wait again.
 * An attempt that could block without readiness (AK__EP_ONCE) ends the
 * round: the re-arm reports at once if the fd is still ready. For readers,
 * rec->drained remembers whether the last read came back short, so that
 * the next read waits for readiness before it tries (one syscall fewer in
 * a request-response exchange). */
static void run_waiters(ak__ep_fd *rec, ak__op **head, bool readers) {
  if (*head && ((*head)->flags & AK__OPF_MULTISHOT)) {
    run_multishot(*head);
    return;
  }
  while (*head) {
    ak__op *op = *head;
    bool once = (op->ep_dir & AK__EP_ONCE) != 0;
    bool finished = attempt_ready(op);
    if (readers)
      rec->drained = !finished || (op->ep_dir & AK__EP_DRAINED); /* op lives until the reap */
    if (!finished || once)
      break;
  }
}

static void fd_ready(ak__epoll *ep, int fd, uint32_t events) {
  if (fd < 0 || (size_t)fd >= ep->nfds)
    return; /* defensive, believed never to fire: we only arm known fds */
  ak__ep_fd *rec = &ep->fds[fd];
  rec->armed = 0; /* EPOLLONESHOT: disarmed until re-armed */
  mark_dirty(ep, fd);
  bool error = (events & (EPOLLERR | EPOLLHUP)) != 0;
  if (events & (EPOLLIN | EPOLLRDHUP) || error) {
    rec->drained = false;
    run_waiters(rec, &rec->in_head, true);
  }
  if (events & EPOLLOUT || error)
    run_waiters(rec, &rec->out_head, false);
}

/* ---- Starting an op ------------------------------------------------------- */

static void timeout_fired(void *arg) {
  ak__op *op = arg;
  ak__epoll *ep = op->loop->ep;
  op->ep_timer = NULL; /* the heap has let go of it */
  if (op->ep_prev)
    op->ep_prev->ep_next = op->ep_next;
  else
    ep->timed = op->ep_next;
  if (op->ep_next)
    op->ep_next->ep_prev = op->ep_prev;
  push_done(op, -ETIME); /* ring_ops.c's complete makes it success */
}

static void start_timeout(ak__op *op) {
  ak__epoll *ep = op->loop->ep;
  const struct __kernel_timespec *ts = AK__OP_DATA(op, struct __kernel_timespec);
  int64_t ns = (int64_t)ts->tv_sec * 1000000000 + ts->tv_nsec;
  op->ep_timer = ak_call_later(op->loop, ns, timeout_fired, op);
  if (!op->ep_timer) {
    push_done(op, -ENOMEM);
    return;
  }
  op->ep_state = EP_TIMER;
  op->ep_prev = NULL;
  op->ep_next = ep->timed;
  if (ep->timed)
    ep->timed->ep_prev = op;
  ep->timed = op;
}

/* IORING_OP_ASYNC_CANCEL by fd: every op of ours waiting on fd. Returns
 * how many, or -ENOENT (as the kernel does) for none. Ops on the pool are
 * not the ring's to cancel there either. */
static int64_t cancel_fd(ak__epoll *ep, int fd) {
  if (fd < 0 || (size_t)fd >= ep->nfds)
    return -ENOENT;
  ak__ep_fd *rec = &ep->fds[fd];
  int64_t n = 0;
  ak__op **lists[2] = {&rec->in_head, &rec->out_head};
  for (int i = 0; i < 2; i++) {
    while (*lists[i]) {
      ak__op *op = *lists[i];
      op->flags |= AK__OPF_CANCEL_SENT;
      unwait(op);
      push_done(op, -ECANCELED);
      n++;
    }
  }
  return n > 0 ? n : -ENOENT;
}

static void ep_deadline_fired(void *arg) {
  ak__op *op = arg;
  op->ep_timer = NULL;
  op->flags |= AK__OPF_TIMED_OUT; /* op.c: -ECANCELED becomes -ETIMEDOUT */
  if (op->ep_state == EP_WAITING) {
    op->flags |= AK__OPF_CANCEL_SENT;
    unwait(op);
    push_done(op, -ECANCELED);
  } else if ((op->flags & AK__OPF_POOL_DEADLINE) && op->pool_fut) {
    /* Settles at once (-ECANCELED, made -ETIMEDOUT) if the task has not
     * started; a started one finishes and gives its own result. */
    ak_future_cancel(op->pool_fut);
  }
}

static int arm_deadline(ak__op *op, int64_t timeout_ns) {
  if (timeout_ns < 0)
    timeout_ns = 0;
  op->ep_timer = ak_call_later(op->loop, timeout_ns, ep_deadline_fired, op);
  return op->ep_timer ? 0 : -ENOMEM;
}

int ak__ep_set_deadline(ak__op *op, int64_t timeout_ns) {
  if (op->ep_state != EP_WAITING || op->ep_timer)
    return -EBUSY; /* done, on the pool, a timer op: deadline.c's own timer */
  if (arm_deadline(op, timeout_ns) < 0)
    return -EBUSY;
  op->flags |= AK__OPF_DEADLINE;
  return 0;
}

void ak__ep_start(ak__op *op) {
  ak_loop *loop = op->loop;
  ak__epoll *ep = loop->ep;
  int64_t r = AK__OP_TRY_WAIT;
  op->ep_timer = NULL;
  op->ep_state = EP_IDLE;
  op->ep_prev = op->ep_next = NULL;
  bool special = op->kind == AK_OP_NOP || op->kind == AK_OP_TIMEOUT || op->kind == AK_OP_CANCEL;
  if (!special && !(op->sqe_flags & IOSQE_FIXED_FILE)) {
    if (!op->attempt) {
      if (op->blocking) {
        ak__op_run_on_pool(op);
        return;
      }
    } else {
      ak__ep_fd *rec = op->ep_fd >= 0 && (size_t)op->ep_fd < ep->nfds ? &ep->fds[op->ep_fd] : NULL;
      bool hint_empty = (rec && rec->drained && (op->ep_dir & AK__EP_IN)) ||
                        (op->flags & AK__OPF_MULTISHOT); /* items come from readiness */
      if ((op->ep_dir & AK__EP_NOW) || !hint_empty) {
        /* An attempt that may block (accept) is made only if poll says it
         * will not: a burst of connections is taken two syscalls each,
         * not an epoll round each. */
        bool ready = (op->ep_dir & AK__EP_ONCE) && rec && poll_ready(op->ep_fd, op->ep_dir);
        r = AK_FAULT_EP_ATTEMPT(op, op->attempt(op, ready));
        if (r == AK__OP_TRY_POOL) {
          ak__op_run_on_pool(op);
          return;
        }
        if (rec && (op->ep_dir & AK__EP_IN))
          rec->drained = r == AK__OP_TRY_WAIT || (op->ep_dir & AK__EP_DRAINED);
      }
    }
  }
  /* Started: accounted as an SQE would be (one CQ slot, no linked one). */
  bool deadline = (op->flags & AK__OPF_DEADLINE) != 0;
  op->owed = 1;
  op->slots = 1;
  op->flags = (uint16_t)((op->flags & ~AK__OPF_QUEUED) | AK__OPF_SUBMITTED);
  op->submit_ns = ak__loop_latency_now(loop);
  loop->in_flight += 1;
  loop->stats.submitted[op->kind]++;
  if (op->sqe_flags & IOSQE_FIXED_FILE) {
    push_done(op, AK_EBACKEND); /* a registered file slot: epoll has none */
    return;
  }
  switch (op->kind) {
  case AK_OP_NOP:
    push_done(op, 0);
    return;
  case AK_OP_TIMEOUT:
    start_timeout(op);
    return;
  case AK_OP_CANCEL:
    push_done(op, cancel_fd(ep, *AK__OP_DATA(op, int))); /* fd first in its params */
    return;
  default:
    break;
  }
  if (!op->attempt) {
    push_done(op, -EOPNOTSUPP); /* neither an attempt nor a pool path */
    return;
  }
  if (r != AK__OP_TRY_WAIT) {
    push_done(op, r);
    return;
  }
  wait_on_fd(op);
  if (deadline && op->ep_state == EP_WAITING) {
    /* Set while the op waited for admission: the timespec is its own. */
    int64_t ns = (int64_t)op->deadline.tv_sec * 1000000000 + op->deadline.tv_nsec;
    (void)arm_deadline(op, ns); /* ENOMEM: no deadline, as when none fits */
  }
}

/* ---- Cancel ---------------------------------------------------------------- */

void ak__ep_cancel(ak__op *op) {
  ak__epoll *ep = op->loop->ep;
  switch (op->ep_state) {
  case EP_WAITING:
    unwait(op);
    push_done(op, -ECANCELED);
    break;
  case EP_TIMER:
    if (op->ep_prev)
      op->ep_prev->ep_next = op->ep_next;
    else
      ep->timed = op->ep_next;
    if (op->ep_next)
      op->ep_next->ep_prev = op->ep_prev;
    push_done(op, -ECANCELED); /* cancels its timer */
    break;
  default:
    break; /* complete already: the outcome stands, as on the ring */
  }
}

void ak__ep_cancel_all(ak_loop *loop) {
  ak__epoll *ep = loop->ep;
  while (ep->pooled) {
    /* The timers go with the heap next; the pool tasks finish as ever. */
    ak__op *op = ep->pooled;
    ak__ep_pool_returned(op);
  }
  while (ep->timed)
    ak__ep_cancel(ep->timed);
  for (size_t fd = 0; fd < ep->nfds && ep->waiting > 0; fd++) {
    ak__ep_fd *rec = &ep->fds[fd];
    while (rec->in_head)
      ak__ep_cancel(rec->in_head);
    while (rec->out_head)
      ak__ep_cancel(rec->out_head);
  }
}

/* ---- The wait -------------------------------------------------------------- */

/* The eventfd said a waker wrote: read it empty, then let the next waker
 * write again (the same order as loop.c's wakeup_arrived). */
static void wakeup_arrived(ak_loop *loop) {
  uint64_t value;
  ssize_t n = read(loop->eventfd, &value, sizeof(value));
  (void)n; /* EAGAIN cannot happen on a blocking eventfd that reported */
  atomic_store_explicit(&loop->wake_pending, 0, memory_order_seq_cst);
}

int ak__ep_wait(ak_loop *loop, bool block, int64_t wait_until) {
  ak__epoll *ep = loop->ep;
  enum { BATCH = 256 };
  struct epoll_event events[BATCH];
  rearm_dirty(ep);
  if (ep->done_head)
    block = false; /* completions to dispatch: do not sleep */
  if (!block && ep->waiting == 0)
    return 0; /* nothing to poll: posts arrive through the inbox anyway */
  struct timespec ts = {0, 0};
  const struct timespec *timeout = &ts;
  if (block) {
    if (wait_until == AK_FOREVER) {
      timeout = NULL;
    } else {
      int64_t left = wait_until - ak_now_ns();
      if (left < 0)
        left = 0;
      ts.tv_sec = left / 1000000000;
      ts.tv_nsec = left % 1000000000;
    }
  }
  int n = -1;
  if (!ak__ep_no_pwait2) {
    n = epoll_pwait2(ep->epfd, events, BATCH, timeout, NULL);
    if (n < 0 && (errno == ENOSYS || errno == EPERM))
      ak__ep_no_pwait2 = true; /* before 5.11, or a filter that lacks it */
  }
  if (ak__ep_no_pwait2) {
    /* Milliseconds, rounded up so a timer is never early. */
    int ms = -1;
    if (timeout)
      ms = (int)(ts.tv_sec * 1000 + (ts.tv_nsec + 999999) / 1000000);
    n = epoll_wait(ep->epfd, events, BATCH, ms);
  }
  if (n < 0)
    return errno == EINTR ? 0 : -errno;
  for (int i = 0; i < n; i++) {
    if (events[i].data.u64 == EP_WAKE_KEY)
      wakeup_arrived(loop);
    else
      fd_ready(ep, (int)events[i].data.u64, events[i].events);
  }
  return 0;
}

/* ---- Reads and writes of any fd -------------------------------------------- */

int64_t ak__ep_try_rw(ak__op *op, int fd, const struct iovec *iov, int iovcnt, int64_t *offset,
                      int rw_flags, bool write, bool ready) {
  if (!(op->ep_dir & AK__EP_CHECKED)) {
    struct stat st;
    if (fstat(fd, &st) < 0)
      return -errno;
    if (S_ISREG(st.st_mode) || S_ISBLK(st.st_mode) || S_ISDIR(st.st_mode))
      return AK__OP_TRY_POOL; /* never "not ready": the pool's blocking call */
    op->ep_dir |= AK__EP_CHECKED;
    *offset = -1; /* a stream: io_uring ignores the offset too */
  }
  ssize_t n;
  if (!(op->ep_dir & AK__EP_PLAIN)) {
    n = write ? pwritev2(fd, iov, iovcnt, -1, rw_flags | RWF_NOWAIT)
              : preadv2(fd, iov, iovcnt, -1, rw_flags | RWF_NOWAIT);
    if (n >= 0 || errno != EOPNOTSUPP) {
      if (!write && n >= 0) {
        size_t want = 0;
        for (int i = 0; i < iovcnt; i++)
          want += iov[i].iov_len;
        if ((size_t)n < want)
          op->ep_dir |= AK__EP_DRAINED;
      }
      return ak__try_result(n, false);
    }
    /* A tty and the like: the plain call, and only once it is ready. */
    op->ep_dir |= AK__EP_PLAIN | AK__EP_ONCE;
  }
  if (!ready)
    return AK__OP_TRY_WAIT;
  n = write ? pwritev2(fd, iov, iovcnt, -1, rw_flags) : preadv2(fd, iov, iovcnt, -1, rw_flags);
  return ak__try_result(n, false);
}
