/* test_signal.c: signal streams (include/asynckit/signal.h): delivery with
 * the kernel's siginfo, a signal sent while the loop waits, real-time
 * signals queued in order, STOP, cancel (from outside, from the callback,
 * by freeing the loop) with the signalfd closed, the mask, and the errors.
 * meson test --setup epoll runs it on the epoll backend. */
#define _GNU_SOURCE
#include <asynckit.h>
#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cmocka.h>

#include "helpers.h"

typedef struct got {
  int signo[16];
  int value[16];
  pid_t pid[16];
  size_t n;
  size_t stop_at;    /* STOP after this many; 0: never */
  ak_future *cancel; /* cancel this from the first callback */
} got;

static ak_stream_action on_signal(ak_loop *loop, int signo, const struct signalfd_siginfo *info,
                                  void *arg)
{
  (void)loop;
  got *g = arg;
  assert_true(g->n < 16);
  assert_int_equal((int)info->ssi_signo, signo);
  g->signo[g->n] = signo;
  g->value[g->n] = info->ssi_int;
  g->pid[g->n] = (pid_t)info->ssi_pid;
  g->n++;
  if (g->cancel)
    ak_future_cancel(g->cancel);
  return g->stop_at && g->n == g->stop_at ? AK_STREAM_STOP : AK_STREAM_CONTINUE;
}

static bool got_one(void *arg)
{
  return ((got *)arg)->n >= 1;
}

static int count_fds(void)
{
  DIR *d = opendir("/proc/self/fd");
  int n = 0;
  struct dirent *e;
  while ((e = readdir(d)) != NULL)
    n += e->d_name[0] != '.';
  closedir(d);
  return n;
}

static sigset_t set_of(int a, int b)
{
  sigset_t s;
  sigemptyset(&s);
  sigaddset(&s, a);
  if (b)
    sigaddset(&s, b);
  return s;
}

/* Signals sent before the loop runs: delivered in order with the sender's
 * pid; STOP settles DONE with the count; the signalfd is closed. */
static void delivers_and_stops(void **state)
{
  (void)state;
  ak_loop *loop = t_loop_new();
  int fds = count_fds();
  got g = {.stop_at = 2};
  sigset_t s = set_of(SIGUSR1, SIGUSR2);
  ak_future *f = ak_signal_stream(loop, &s, on_signal, &g);
  assert_non_null(f);
  assert_int_equal(count_fds(), fds + 1);
  assert_int_equal(kill(getpid(), SIGUSR1), 0);
  /* Merged by the kernel if both came before a read; send one at a time. */
  assert_true(t_run_until(loop, got_one, &g, T_HANG_NS));
  assert_int_equal(kill(getpid(), SIGUSR2), 0);
  assert_int_equal(ak_future_get(f, T_HANG_NS, NULL), 2);
  assert_true(ak_future_state(f) == AK_DONE);
  assert_int_equal(g.signo[0], SIGUSR1);
  assert_int_equal(g.signo[1], SIGUSR2);
  assert_int_equal(g.pid[0], getpid());
  ak_future_release(f);
  assert_int_equal(count_fds(), fds);
  ak_loop_free(loop);
}

static void *send_later(void *arg)
{
  (void)arg;
  usleep(100 * 1000);
  kill(getpid(), SIGUSR1);
  return NULL;
}

/* The loop sleeps in its wait; a signal from another thread wakes it. */
static void wakes_a_waiting_loop(void **state)
{
  (void)state;
  ak_loop *loop = t_loop_new();
  got g = {.stop_at = 1};
  sigset_t s = set_of(SIGUSR1, 0);
  ak_future *f = ak_signal_stream(loop, &s, on_signal, &g);
  pthread_t th;
  int64_t t0 = ak_now_ns();
  assert_int_equal(pthread_create(&th, NULL, send_later, NULL), 0);
  assert_int_equal(ak_future_get(f, T_HANG_NS, NULL), 1);
  assert_true(ak_now_ns() - t0 >= 90 * T_MS);
  pthread_join(th, NULL);
  assert_int_equal(g.signo[0], SIGUSR1);
  ak_future_release(f);
  ak_loop_free(loop);
}

/* Real-time signals are queued, each with its value, in order. */
static void realtime_signals_queue(void **state)
{
  (void)state;
  ak_loop *loop = t_loop_new();
  got g = {.stop_at = 3};
  sigset_t s = set_of(SIGRTMIN, 0);
  for (int i = 1; i <= 3; i++)
    assert_int_equal(sigqueue(getpid(), SIGRTMIN, (union sigval){.sival_int = i}), 0);
  ak_future *f = ak_signal_stream(loop, &s, on_signal, &g);
  assert_int_equal(ak_future_get(f, T_HANG_NS, NULL), 3);
  for (int i = 0; i < 3; i++) {
    assert_int_equal(g.signo[i], SIGRTMIN);
    assert_int_equal(g.value[i], i + 1);
  }
  ak_future_release(f);
  ak_loop_free(loop);
}

/* Cancel with the read in flight: CANCELLED once it is back, fd closed,
 * nothing delivered; the loop then has nothing to run. */
static void cancel_from_outside(void **state)
{
  (void)state;
  ak_loop *loop = t_loop_new();
  int fds = count_fds();
  got g = {0};
  sigset_t s = set_of(SIGUSR1, 0);
  ak_future *f = ak_signal_stream(loop, &s, on_signal, &g);
  assert_true(ak_loop_run(loop, AK_RUN_NOWAIT) >= 1); /* the read keeps it alive */
  assert_false(ak_future_is_set(f));
  assert_int_equal(ak_future_cancel(f), 0);
  assert_int_equal(ak_future_get(f, T_HANG_NS, NULL), -ECANCELED);
  assert_true(ak_future_is_cancelled(f));
  assert_int_equal(g.n, 0);
  assert_int_equal(count_fds(), fds);
  ak_future_release(f);
  assert_int_equal(ak_loop_run(loop, AK_RUN_DEFAULT), 0); /* returns: nothing alive */
  ak_loop_free(loop);
}

/* Cancelled by its own callback: no further signal reaches it. */
static void cancel_from_callback(void **state)
{
  (void)state;
  ak_loop *loop = t_loop_new();
  got g = {0};
  sigset_t s = set_of(SIGRTMIN + 1, 0);
  for (int i = 1; i <= 3; i++)
    assert_int_equal(sigqueue(getpid(), SIGRTMIN + 1, (union sigval){.sival_int = i}), 0);
  ak_future *f = ak_signal_stream(loop, &s, on_signal, &g);
  g.cancel = f;
  assert_int_equal(ak_future_get(f, T_HANG_NS, NULL), -ECANCELED);
  assert_int_equal(g.n, 1); /* three were read together; one delivered */
  ak_future_release(f);
  ak_loop_free(loop);
}

static bool either_got_one(void *arg)
{
  got *g = arg;
  return g[0].n + g[1].n >= 1;
}

/* Two streams for one signal: one of them gets it, the other keeps
 * waiting without holding the loop's thread (the loop still serves a
 * timer), and both end on cancel. */
static void two_streams_one_signal(void **state)
{
  (void)state;
  ak_loop *loop = t_loop_new();
  got g[2];
  memset(g, 0, sizeof g);
  sigset_t s = set_of(SIGUSR2, 0);
  ak_future *f0 = ak_signal_stream(loop, &s, on_signal, &g[0]);
  ak_future *f1 = ak_signal_stream(loop, &s, on_signal, &g[1]);
  assert_true(ak_loop_run(loop, AK_RUN_NOWAIT) >= 2);
  assert_int_equal(kill(getpid(), SIGUSR2), 0);
  assert_true(t_run_until(loop, either_got_one, g, T_HANG_NS));
  ak_future *nap = ak_sleep(loop, 50 * T_MS);
  assert_int_equal(ak_future_get(nap, T_HANG_NS, NULL), 0);
  ak_future_release(nap);
  assert_int_equal(g[0].n + g[1].n, 1);
  ak_future_cancel(f0);
  ak_future_cancel(f1);
  assert_int_equal(ak_future_get(f0, T_HANG_NS, NULL), -ECANCELED);
  assert_int_equal(ak_future_get(f1, T_HANG_NS, NULL), -ECANCELED);
  ak_future_release(f0);
  ak_future_release(f1);
  ak_loop_free(loop);
}

/* Freeing the loop ends an armed stream (CANCELLED) and closes its fd. */
static void loop_free_ends_the_stream(void **state)
{
  (void)state;
  int fds = count_fds();
  ak_loop *loop = t_loop_new();
  got g = {0};
  sigset_t s = set_of(SIGUSR2, 0);
  ak_future *f = ak_signal_stream(loop, &s, on_signal, &g);
  assert_true(ak_loop_run(loop, AK_RUN_NOWAIT) >= 1);
  ak_loop_free(loop);
  assert_true(ak_future_is_cancelled(f));
  assert_int_equal(count_fds(), fds);
  ak_future_release(f);
}

/* The stream blocks its set in the calling thread (SIGWINCH, left
 * unblocked by main), and a thread-directed signal reaches it. */
static void *mask_thread(void *arg)
{
  (void)arg;
  sigset_t cur;
  pthread_sigmask(SIG_BLOCK, NULL, &cur);
  if (sigismember(&cur, SIGWINCH))
    return (void *)"SIGWINCH blocked already";
  ak_loop *loop = t_loop_new();
  got g = {.stop_at = 1};
  sigset_t s = set_of(SIGWINCH, 0);
  ak_future *f = ak_signal_stream(loop, &s, on_signal, &g);
  pthread_sigmask(SIG_BLOCK, NULL, &cur);
  const char *err = NULL;
  if (!sigismember(&cur, SIGWINCH))
    err = "not blocked by the stream";
  else if (syscall(SYS_tgkill, getpid(), gettid(), SIGWINCH) != 0)
    err = "tgkill";
  else if (ak_future_get(f, T_HANG_NS, NULL) != 1 || g.signo[0] != SIGWINCH)
    err = "not delivered";
  ak_future_release(f);
  ak_loop_free(loop);
  return (void *)err;
}

static void blocks_the_set_in_the_caller(void **state)
{
  (void)state;
  pthread_t th;
  void *err = NULL;
  assert_int_equal(pthread_create(&th, NULL, mask_thread, NULL), 0);
  pthread_join(th, &err);
  if (err)
    fail_msg("%s", (const char *)err);
}

static void errors(void **state)
{
  (void)state;
  ak_loop *loop = t_loop_new();
  got g = {0};
  sigset_t empty;
  sigemptyset(&empty);
  sigset_t s = set_of(SIGUSR1, 0);
  ak_future *f = ak_signal_stream(loop, &empty, on_signal, &g);
  assert_int_equal(ak_future_get(f, 0, NULL), -EINVAL);
  assert_true(ak_future_state(f) == AK_FAILED);
  ak_future_release(f);
  f = ak_signal_stream(loop, &s, NULL, &g);
  assert_int_equal(ak_future_get(f, 0, NULL), -EINVAL);
  ak_future_release(f);
  f = ak_signal_stream(loop, NULL, on_signal, &g);
  assert_int_equal(ak_future_get(f, 0, NULL), -EINVAL);
  ak_future_release(f);
  /* No fd left: the kernel's EMFILE. */
  struct rlimit old, low;
  getrlimit(RLIMIT_NOFILE, &old);
  low = old;
  int lowest_free = dup(0);
  close(lowest_free);
  low.rlim_cur = (rlim_t)lowest_free; /* every fd below the limit is taken */
  assert_int_equal(setrlimit(RLIMIT_NOFILE, &low), 0);
  f = ak_signal_stream(loop, &s, on_signal, &g);
  setrlimit(RLIMIT_NOFILE, &old);
  assert_int_equal(ak_future_get(f, 0, NULL), -EMFILE);
  ak_future_release(f);
  assert_int_equal(g.n, 0);
  ak_loop_free(loop);
}

/* Made on another thread than the loop's: AK_ENOTOWNER. */
static void *foreign(void *arg)
{
  sigset_t s = set_of(SIGUSR1, 0);
  got g = {0};
  return ak_signal_stream(arg, &s, on_signal, &g);
}

static void not_owner(void **state)
{
  (void)state;
  ak_loop *loop = t_loop_new();
  pthread_t th;
  void *f = NULL;
  assert_int_equal(pthread_create(&th, NULL, foreign, loop), 0);
  pthread_join(th, &f);
  assert_non_null(f);
  assert_int_equal(ak_future_get(f, 0, NULL), AK_ENOTOWNER);
  ak_future_release(f);
  ak_loop_free(loop);
}

int main(void)
{
  /* Before any thread exists, so that every thread inherits the mask (as
   * signal.h asks of a program). SIGWINCH stays unblocked on purpose. */
  sigset_t s;
  sigemptyset(&s);
  sigaddset(&s, SIGUSR1);
  sigaddset(&s, SIGUSR2);
  sigaddset(&s, SIGRTMIN);
  sigaddset(&s, SIGRTMIN + 1);
  pthread_sigmask(SIG_BLOCK, &s, NULL);
  t_require_uring();
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(delivers_and_stops),
      cmocka_unit_test(wakes_a_waiting_loop),
      cmocka_unit_test(realtime_signals_queue),
      cmocka_unit_test(cancel_from_outside),
      cmocka_unit_test(cancel_from_callback),
      cmocka_unit_test(two_streams_one_signal),
      cmocka_unit_test(loop_free_ends_the_stream),
      cmocka_unit_test(blocks_the_set_in_the_caller),
      cmocka_unit_test(errors),
      cmocka_unit_test(not_owner),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
