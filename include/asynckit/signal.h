/* asynckit/signal.h: POSIX signals as a stream on a loop (libuv's
 * uv_signal, asyncio's add_signal_handler), read from a signalfd(2) by the
 * loop's ring (by epoll on that backend): a callback per signal on the
 * loop's thread, where any library call may be made, and a future that
 * settles when the stream ends.
 *
 * The signals must be blocked in every thread of the process, or one that
 * does not block them takes them the old way (their default action:
 * SIGINT and SIGTERM kill the process). ak_signal_stream blocks them in
 * the calling thread; threads inherit the mask of the thread that starts
 * them, so block them at the top of main, before any thread (pool workers
 * included) is started:
 *
 *     sigset_t set;
 *     sigemptyset(&set);
 *     sigaddset(&set, SIGINT);
 *     pthread_sigmask(SIG_BLOCK, &set, NULL);
 *
 * The mask is left as it is when the stream ends (unblocking would run the
 * default action of a signal that came meanwhile). Each signal is taken by
 * one reader only: with two streams for one signal, one of them sees it.
 * Standard signals of one number that arrive before the stream reads them
 * are merged by the kernel into one (real-time signals are queued).
 *
 * Not thread-safe: ak_signal_stream belongs to the loop's thread (the
 * future is thread-safe as every future is).
 */
#ifndef ASYNCKIT_SIGNAL_H
#define ASYNCKIT_SIGNAL_H

#include "api.h"

#include <signal.h>       /* sigemptyset, sigaddset, pthread_sigmask */
#include <sys/signalfd.h> /* sigset_t, struct signalfd_siginfo (also for C99) */

#include "loop.h"
#include "net.h" /* ak_stream_action */

#ifdef __cplusplus
extern "C" {
#endif

/* One signal: signo, and what the kernel says of it (<sys/signalfd.h>:
 * ssi_pid, ssi_uid, ssi_code, ssi_int...; borrowed for the call). Return
 * AK_STREAM_CONTINUE for more, AK_STREAM_STOP to end the stream. */
typedef ak_stream_action (*ak_signal_fn)(ak_loop *loop, int signo,
                                         const struct signalfd_siginfo *info, void *arg);

/* Delivers every signal of set (SIGKILL and SIGSTOP cannot be caught and
 * are ignored by the kernel) to fn on the loop's thread, in the order they
 * are read, until fn says STOP or the future is cancelled. Blocks set in
 * the calling thread (see above). The future settles DONE with the number
 * of signals delivered after STOP, CANCELLED after a cancel (signals read
 * by then but not yet delivered are dropped), FAILED with -EINVAL for an
 * empty set or a NULL fn, or the kernel's error (-EMFILE...). The stream
 * keeps its loop running while it is armed. */
AK_API ak_future *ak_signal_stream(ak_loop *loop, const sigset_t *set, ak_signal_fn fn, void *arg);

#ifdef __cplusplus
}
#endif
#endif /* ASYNCKIT_SIGNAL_H */
