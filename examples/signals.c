/* signals.c: a graceful shutdown. A loop does its work (here a ticking
 * timer) until SIGINT or SIGTERM arrives, read by a signal stream on the
 * loop's thread, where it is safe to stop timers, close sockets and free.
 * Run it and press Ctrl-C; as a test it sends itself SIGHUP (logged, the
 * work goes on) and then SIGTERM (the end), and exits 0 when both came. */
#define _GNU_SOURCE
#include <asynckit.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

typedef struct app {
  ak_loop *loop;
  ak_timer *tick;
  int ticks;
  int hups;
  bool stopping;
} app;

static void on_tick(void *arg)
{
  app *a = arg;
  a->ticks++;
  if (a->ticks == 3)
    kill(getpid(), SIGHUP); /* the test's first signal */
  if (a->ticks == 6)
    kill(getpid(), SIGTERM); /* and its last */
  a->tick = ak_call_later(a->loop, 10 * 1000000LL, on_tick, a);
}

static ak_stream_action on_signal(ak_loop *loop, int signo, const struct signalfd_siginfo *info,
                                  void *arg)
{
  app *a = arg;
  printf("%s from pid %u\n", strsignal(signo), info->ssi_pid);
  if (signo == SIGHUP) {
    a->hups++; /* reload a configuration, reopen logs... */
    return AK_STREAM_CONTINUE;
  }
  ak_timer_cancel(loop, a->tick); /* nothing keeps the loop alive now */
  a->stopping = true;
  return AK_STREAM_STOP;
}

int main(void)
{
  /* First thing, before any thread exists: every thread inherits it. */
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &set, NULL);

  app a = {0};
  if (ak_loop_new(&a.loop, NULL) < 0)
    return 1;
  ak_future *signals = ak_signal_stream(a.loop, &set, on_signal, &a);
  a.tick = ak_call_later(a.loop, 10 * 1000000LL, on_tick, &a);
  ak_loop_run(a.loop, AK_RUN_DEFAULT); /* until nothing is left to do */

  int64_t n = ak_future_result(signals); /* signals delivered: 2 */
  printf("stopped after %d ticks and %lld signals\n", a.ticks, (long long)n);
  ak_future_release(signals);
  ak_loop_free(a.loop);
  return a.stopping && a.hups == 1 && n == 2 ? 0 : 1;
}
