/* signal.c: signals as a stream (include/asynckit/signal.h): a signalfd
 * read again and again by ak_read (a ring read; on the epoll backend a
 * read once epoll says the fd is readable, since a signalfd is no regular
 * file) and each signal read handed to the caller's function. The stream
 * is a net task (net/internal.h), like the socket streams beside it, whose
 * one step is the read in flight; cancelling the task cancels that read,
 * and the task settles when the read has come back, so the buffer the
 * kernel fills is never freed under it.
 *
 * It sits in net/ with the other streams because it is one: it shares
 * their task machinery and their callback contract (ak_stream_action).
 *
 * Not here: the multishot socket streams (net_stream.c).
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "net/internal.h"

/* Signals read per ring read: a burst costs one op. */
enum { SIG_BATCH = 8 };

typedef struct ak__sigstream {
  int sfd;             /* the signalfd, -1 once closed */
  ak_signal_fn fn;
  void *arg;
  uint64_t count;      /* signals delivered */
  struct signalfd_siginfo buf[SIG_BATCH]; /* the kernel's while a read is in flight */
} ak__sigstream;

static void sigstream_free(ak_future *task)
{
  ak__sigstream *s = task->data;
  if (s->sfd >= 0) /* defensive, believed never to fire: the end closes it */
    close(s->sfd);
  ak__free(s);
}

static const ak__future_kind sigstream_kind = {
    .name = "signal stream", .cancel = ak__net_task_cancel, .free_data = sigstream_free};

static void sig_read_done(ak_future *step, void *arg);

static int sig_arm(ak_future *task)
{
  ak__sigstream *s = task->data;
  return ak__net_task_await(task, ak_read(task->loop, s->sfd, s->buf, sizeof s->buf, -1),
                            sig_read_done);
}

/* Closes the signalfd (no read is in flight: the last one has come back)
 * and settles the task. */
static void sig_end(ak_future *task, int64_t res)
{
  ak__sigstream *s = task->data;
  close(s->sfd);
  s->sfd = -1;
  ak__future_finish(task, res < 0 ? res : (int64_t)s->count);
}

/* Hands each signal read to fn; false after STOP or a cancel from fn. */
static bool sig_deliver(ak_future *task, size_t n)
{
  ak__sigstream *s = task->data;
  for (size_t i = 0; i < n; i++) {
    s->count++;
    ak_stream_action a = s->fn(task->loop, (int)s->buf[i].ssi_signo, &s->buf[i], s->arg);
    if (a == AK_STREAM_STOP || ak_future_cancel_requested(task))
      return false;
  }
  return true;
}

static void sig_read_done(ak_future *step, void *arg)
{
  ak_future *task = arg;
  ak__net_task_settled(task);
  int64_t res = ak_future_result(step);
  if (ak_future_cancel_requested(task)) {
    sig_end(task, -ECANCELED);
  } else if (res == -EINTR || res == -EAGAIN) {
    int rc = sig_arm(task); /* nothing was read: read again */
    if (rc < 0)
      sig_end(task, rc);
  } else if (res < 0) {
    sig_end(task, res);
  } else if (res == 0 || res % (int64_t)sizeof(struct signalfd_siginfo) != 0) {
    sig_end(task, -EIO); /* defensive, believed never to fire: whole records only */
  } else if (!sig_deliver(task, (size_t)res / sizeof(struct signalfd_siginfo))) {
    sig_end(task, ak_future_cancel_requested(task) ? -ECANCELED : 0);
  } else {
    int rc = sig_arm(task);
    if (rc < 0)
      sig_end(task, rc);
  }
  ak_future_release(task);
}

static bool set_is_empty(const sigset_t *set)
{
  for (int sig = 1; sig < NSIG; sig++)
    if (sigismember(set, sig) == 1)
      return false;
  return true;
}

ak_future *ak_signal_stream(ak_loop *loop, const sigset_t *set, ak_signal_fn fn, void *arg)
{
  AK__REQUIRE_OWNER(loop, "ak_signal_stream");
  if (!set || !fn || set_is_empty(set))
    return ak__future_failed(loop, -EINVAL, "ak_signal_stream: an empty set, or fn is NULL");
  /* Blocked here before the fd exists: a signal sent between the two
   * stays pending and the first read takes it. */
  int rc = pthread_sigmask(SIG_BLOCK, set, NULL);
  if (rc != 0)
    return ak__future_failed(loop, -rc, "pthread_sigmask");
  /* Blocking on io_uring, which answers -EAGAIN for an O_NONBLOCK fd
   * rather than waiting. Non-blocking on epoll: where the kernel's signalfd
   * refuses RWF_NOWAIT (before read_iter came to it) the backend reads
   * after readiness with a plain read, which must not block the loop's
   * thread when another reader took the signal first. */
  int sfd = signalfd(-1, set, SFD_CLOEXEC | (ak__loop_is_epoll(loop) ? SFD_NONBLOCK : 0));
  if (sfd < 0)
    return ak__future_failed(loop, -errno, "signalfd");
  ak__sigstream *s = ak__calloc(1, sizeof(*s));
  if (!s) {
    close(sfd);
    return NULL;
  }
  s->sfd = sfd;
  s->fn = fn;
  s->arg = arg;
  ak_future *task = ak__net_task_new(loop, &sigstream_kind, s);
  if (!task) {
    close(sfd);
    ak__free(s);
    return NULL;
  }
  rc = sig_arm(task);
  if (rc < 0)
    sig_end(task, rc);
  return task;
}
