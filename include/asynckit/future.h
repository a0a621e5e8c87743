/* asynckit/future.h: the one future type shared by ring operations, pool
 * tasks and combinators, and the combinators themselves.
 *
 * A future is opaque and reference counted. A function that returns a future
 * gives the caller one reference, which the caller releases with
 * ak_future_release(). Releasing a pending future does not cancel it: the
 * operation or task runs on and its outcome is dropped.
 *
 * States: PENDING -> (RUNNING, pool tasks only) -> exactly one of DONE,
 * FAILED, CANCELLED. A future settles exactly once.
 *
 * Outcome: a signed 64-bit result (bytes, fd, count; a negative error when
 * FAILED or CANCELLED) and a void * value with an optional destructor, run
 * when the last reference goes. A failed future may also carry a detail
 * string (mbedtls's message, an HTTP status line).
 *
 * Callbacks run exactly once, after the future settles:
 *  - a future created on a loop belongs to it, and its callbacks run on that
 *    loop's thread from the loop's ready queue, never inside the call that
 *    settled it, so chains of any length do not grow the stack;
 *  - a future with no loop runs its callbacks on the thread that settles it,
 *    after the settling call has returned to the outermost settle on that
 *    thread (a trampoline: again no stack growth);
 *  - a loop runs, in one batch, the callbacks queued when the batch starts:
 *    what they queue runs in the next batch (asyncio's call_soon), so a
 *    callback that keeps re-queueing itself cannot starve IO or timers.
 *
 * Releasing and cancelling also run in constant stack, whatever the length
 * of a chain of then-steps, adoptions or joins nested in joins: frees and
 * cancel hooks reached from inside another are queued on the calling
 * thread and run by the outermost call before it returns.
 *
 * Thread safety: every function in this header is thread-safe, except that
 * one reference must not be released twice. Callbacks of loop futures run on
 * the loop's thread; see above for the others.
 */
#ifndef ASYNCKIT_FUTURE_H
#define ASYNCKIT_FUTURE_H

#include "api.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ak_future ak_future;
typedef struct ak_loop ak_loop;
typedef struct ak_pool ak_pool;

typedef enum ak_state {
  AK_PENDING = 0,   /* not settled; an IO op in flight, a task queued */
  AK_RUNNING = 1,   /* a pool task whose callable is running now */
  AK_DONE = 2,      /* settled with success */
  AK_FAILED = 3,    /* settled with an error */
  AK_CANCELLED = 4, /* settled by a cancellation; result is -ECANCELED */
} ak_state;

/* Runs when a value's future is freed. */
typedef void (*ak_destructor)(void *value);

/* A notification: f is settled; the reference is borrowed for the call. */
typedef void (*ak_callback)(ak_future *f, void *arg);

/* Timeouts for waits are in nanoseconds; AK_FOREVER waits without limit. */
#define AK_FOREVER INT64_C(-1)

/* Durations in nanoseconds, as every timeout and delay of the library takes
 * them: AK_SEC(2), AK_MS(250), AK_US(50), AK_NS(1). x may be an integer or
 * a floating-point value (AK_SEC(1.5) is 1500000000, truncated towards
 * zero); the result is an int64_t constant expression when x is one. The
 * result must fit int64_t (about 292 years). */
#define AK_NS(x) ((int64_t)(x))
#define AK_US(x) ((int64_t)((x) * INT64_C(1000)))
#define AK_MS(x) ((int64_t)((x) * INT64_C(1000000)))
#define AK_SEC(x) ((int64_t)((x) * INT64_C(1000000000)))

/* ---- Creating and releasing ------------------------------------------- */

/* A future that the caller settles with ak_future_set / ak_future_fail (a
 * promise). With a loop it belongs to that loop (callbacks on its thread);
 * with NULL it has no loop. Returns NULL only when memory runs out. */
AK_API ak_future *ak_future_new(ak_loop *loop);

/* Takes one more reference; returns f. */
AK_API ak_future *ak_future_ref(ak_future *f);

/* Gives back one reference; the last one frees the future and runs the
 * value's destructor. NULL is allowed and does nothing. */
AK_API void ak_future_release(ak_future *f);

/* ---- Settling (for promises, and for a pool task's own future) --------- */

/* Settles DONE with result and value (dtor may be NULL). Returns 0, or
 * AK_ESETTLED if the future had settled already (nothing changes then: the
 * caller still owns value). */
AK_API int ak_future_set(ak_future *f, int64_t result, void *value, ak_destructor dtor);

/* Settles FAILED with err (< 0) and an optional detail string (copied).
 * err == -ECANCELED settles CANCELLED. Returns 0 or AK_ESETTLED. */
AK_API int ak_future_fail(ak_future *f, int err, const char *detail);

/* Inside a running pool callable or then-step, sets the value the future
 * will settle with (dtor may be NULL) or the detail of its failure (copied).
 * Returns 0, or AK_EINVALFUTURE if the future is not pending or running. */
AK_API int ak_future_set_value(ak_future *f, void *value, ak_destructor dtor);
AK_API int ak_future_set_detail(ak_future *f, const char *detail);

/* ---- Inspecting --------------------------------------------------------- */

AK_API ak_state ak_future_state(const ak_future *f);
AK_API bool ak_future_is_set(const ak_future *f);   /* DONE, FAILED or CANCELLED */
AK_API bool ak_future_is_error(const ak_future *f); /* FAILED or CANCELLED */
AK_API bool ak_future_is_cancelled(const ak_future *f);

/* The result once settled (negative error when FAILED/CANCELLED); 0 while
 * pending. */
AK_API int64_t ak_future_result(const ak_future *f);

/* The value once DONE (borrowed: it lives as long as the future), else NULL. */
AK_API void *ak_future_value(const ak_future *f);

/* The detail string of a failure (borrowed), or NULL. */
AK_API const char *ak_future_detail(const ak_future *f);

/* The loop the future belongs to, or NULL. */
AK_API ak_loop *ak_future_loop(const ak_future *f);

/* ---- Waiting ------------------------------------------------------------ */

/* Waits until f settles or timeout_ns passes (AK_FOREVER: no limit; 0: just
 * look). Returns 0 when settled, AK_EWAITTIMEOUT when the time ran out and f
 * is still pending: never to be confused with an operation that failed with
 * -ETIMEDOUT, which returns 0 here and shows in the result. Works from any
 * thread. On the thread that owns f's loop it runs that loop until f
 * settles (asyncio's run_until_complete). */
AK_API int ak_future_wait(ak_future *f, int64_t timeout_ns);

/* AsyncKit's get(): waits as ak_future_wait, then returns the result (or the
 * negative error of a failure), or AK_EWAITTIMEOUT. If value is not NULL it
 * receives the borrowed value. */
AK_API int64_t ak_future_get(ak_future *f, int64_t timeout_ns, void **value);

/* ---- Callbacks (cs.asynchron's notify) ---------------------------------- */

/* Adds a callback that runs exactly once after f settles: on f's loop thread
 * from the ready queue, or for a loopless future on the settling thread (at
 * once, on the calling thread, if f has settled already). Callbacks run in
 * the order they were added. Returns 0 or -ENOMEM. */
AK_API int ak_future_on_settle(ak_future *f, ak_callback cb, void *arg);

/* ---- Cancellation ------------------------------------------------------- */

/* Requests cancellation. A pool task not yet started settles CANCELLED at
 * once (asked from a thread other than its loop's, possibly only at that
 * loop's next iteration); an IO operation settles when the kernel's
 * completion arrives (its buffers stay the kernel's until then): CANCELLED
 * if the kernel cancelled it, or with its real outcome if it had completed
 * anyway, except that an operation creating a resource (open, accept,
 * socket, connect) that completes after the request has that resource
 * closed and settles CANCELLED. A combinator passes the request to the
 * step it waits on. Returns 0 if the request was made, AK_ESETTLED if f had settled. */
AK_API int ak_future_cancel(ak_future *f);

/* Inside a pool callable: whether cancellation was requested (cooperative). */
AK_API bool ak_future_cancel_requested(const ak_future *f);

/* ---- Combinators --------------------------------------------------------
 * Each returns a new future (one reference for the caller) or NULL when
 * memory runs out. Inputs are referenced by the combinator; the caller keeps
 * its own references. A combinator's future belongs to the loop of its first
 * input that has one. */

/* A then-step: runs after input succeeds. Return >= 0 for the step's result
 * (set a value with ak_future_set_value(self, ...)), a negative error to fail
 * (optionally with ak_future_set_detail(self, ...)), or
 * ak_future_adopt(self, other) to settle self as other settles. */
typedef int64_t (*ak_then_fn)(ak_future *input, void *arg, ak_future *self);

/* Makes self settle as other settles (the chain adopts a future). Takes over
 * the caller's reference to other. Returns the value a then-step or pool
 * callable returns to say so. Only valid inside such a callable, for its own
 * future. */
AK_API int64_t ak_future_adopt(ak_future *self, ak_future *other);

/* then / chain: fn(input, arg, self) runs when input succeeds: on the pool if
 * pool is not NULL, otherwise where input's callbacks run (its loop's thread,
 * or the settling thread). Failure and cancellation of input skip fn and pass
 * to the result unchanged. Cancelling the result cancels the pending step:
 * the input while it is pending, the adopted future after. */
AK_API ak_future *ak_then(ak_future *input, ak_then_fn fn, void *arg, ak_pool *pool);

/* catch: fn(input, arg, self) runs when input fails or is cancelled (see
 * ak_future_state/result/detail of input), where ak_then's step would run;
 * its return settles the result as a then-step's does (a value, an error,
 * or ak_future_adopt), so it can recover from the error or replace it. A
 * success passes through unchanged (the value borrowed). Cancelling the
 * result cancels input while it is pending, and then fn does not run (the
 * result is CANCELLED), nor after, as for ak_then. */
AK_API ak_future *ak_catch(ak_future *input, ak_then_fn fn, void *arg, ak_pool *pool);

/* finally: fn(input, arg, self) runs once input has settled, whatever the
 * outcome (DONE, FAILED or CANCELLED), where ak_then's step would run. The
 * result then settles as input did (state, result, detail, the value
 * borrowed), unless fn fails: a negative return is the result instead, and
 * fn may return ak_future_adopt(self, other) for a clean-up that is itself
 * a future (an ak_close): the result waits for other and settles as input
 * did if other succeeds, else with other's error. Cancelling the result
 * cancels input while it is pending; fn still runs (a clean-up is never
 * skipped) and its future is not cancelled. Closing an fd on every path
 * of a pipeline is one ak_finally at its end. */
AK_API ak_future *ak_finally(ak_future *input, ak_then_fn fn, void *arg, ak_pool *pool);

/* Join flags. */
enum {
  AK_JOIN_FAIL_FAST = 1 << 0,   /* all: at the first failure, cancel the rest */
  AK_JOIN_CANCEL_REST = 1 << 1, /* any: cancel the others once one settles */
};

/* A join that cancels inputs (AK_JOIN_FAIL_FAST, AK_JOIN_CANCEL_REST, or a
 * cancel of the join itself) settles only once every input has settled, so
 * no input's buffer is still the kernel's (or a worker's) when the join is
 * over; the inputs it cancelled settle as cancellation allows (at once for
 * a promise or a task not started, at the kernel's completion for IO, at
 * the return of a running callable). A cancelled join settles CANCELLED. */

/* join all (AsyncList): settles when every input has settled, DONE with the
 * number of inputs that succeeded as result. With AK_JOIN_FAIL_FAST the
 * first input that fails or is cancelled makes it cancel the inputs still
 * pending, and it settles, once they have, with that first input's error
 * (FAILED, or CANCELLED). The inputs in input order: ak_join_input(). n may
 * be 0 (settles at once). The join holds its inputs (and they hold it,
 * through their callbacks) until every input has settled: an input nobody
 * will ever settle keeps the join's memory alive. */
AK_API ak_future *ak_join_all(ak_future *const *inputs, size_t n, unsigned flags);

/* join any: settles DONE when the first input settles; the result is that
 * input's index (the input may itself have failed). The others run on, the
 * caller's to wait for or cancel. With AK_JOIN_CANCEL_REST the others are
 * cancelled and the join settles (with the first one's index) once they
 * have settled. n must be > 0. */
AK_API ak_future *ak_join_any(ak_future *const *inputs, size_t n, unsigned flags);

/* A bounded map's step: starts the work for item i of a map and returns its
 * future (the map takes over that reference), or NULL when it cannot (the
 * item then counts as failed with -ENOMEM). */
typedef ak_future *(*ak_map_fn)(void *arg, size_t i);

/* map: runs start(arg, i) for i = 0 .. n-1 in order, with never more than
 * limit (> 0) of the futures it returned pending at once: the first ones
 * at once on the calling thread, then each time one settles, where its
 * callbacks run (its loop's thread; for a loopless future the thread that
 * settled it, so start may run on several threads, never two at once for
 * the same i). Returns one join over the items (ak_join_count is n,
 * ak_join_input(map, i) item i's future, NULL while not started) that
 * settles as ak_join_all's once every item has: DONE with the number that
 * succeeded. With AK_JOIN_FAIL_FAST the first failure stops the starting,
 * cancels the items in flight and, once they have settled, is the map's
 * outcome; items never started stay NULL. Cancelling the map does the same
 * and settles it CANCELLED. Either way the map settles only after every
 * item it started has. Items settling at once (a settled future, a failed
 * op) start the next without growing the stack. The map belongs to the
 * calling thread's loop (ak_loop_current()), if any. It keeps every item
 * until it is freed. NULL when memory runs out, start is NULL or limit 0. */
AK_API ak_future *ak_map(size_t n, size_t limit, ak_map_fn start, void *arg, unsigned flags);

/* A join's inputs, in input order (borrowed; NULL if i is out of range or
 * join is not a join or a map). */
AK_API size_t ak_join_count(const ak_future *join);
AK_API ak_future *ak_join_input(const ak_future *join, size_t i);

/* timeout: a future that settles as input does, or, once timeout_ns have
 * passed, cancels input and settles FAILED with -ETIMEDOUT. It never
 * settles before input has: after the deadline it waits for the cancel to
 * be acknowledged (an IO op's completion from the kernel, a running pool
 * callable's return), so once it has settled every buffer of input is the
 * caller's again. If input finishes anyway (the bytes arrived as the
 * cancel went in, a pool callable that ignores the request returns its
 * result), the result is input's own, not -ETIMEDOUT: nothing is lost.
 * Cancelling the returned future cancels input and settles CANCELLED.
 * For an IO operation not yet handed to the kernel the deadline becomes a
 * linked kernel timeout and the operation itself is returned (one more
 * reference), settling with -ETIMEDOUT on the same terms. Works from any
 * thread; the timer is the loop's on its owner thread, else a process-wide
 * timer thread. */
AK_API ak_future *ak_future_timeout(ak_future *input, int64_t timeout_ns);

/* ---- Completion order (cs.asynchron's report()) -------------------------- */

typedef struct ak_iter ak_iter;

/* An iterator over inputs in the order they settle, as their callbacks see
 * it: for loop futures the order the loop learns of them; for loopless ones
 * settled on several threads at once, the order their callbacks ran. */
AK_API ak_iter *ak_iter_new(ak_future *const *inputs, size_t n);

/* The next input to settle (borrowed; lives while the iterator does), waiting
 * up to timeout_ns; on the thread owning the inputs' loop it runs the loop.
 * NULL when all have been returned (*err = 0) or on timeout (*err =
 * AK_EWAITTIMEOUT); err may be NULL. */
AK_API ak_future *ak_iter_next(ak_iter *it, int64_t timeout_ns, int *err);

/* How many inputs have not been returned yet. */
AK_API size_t ak_iter_remaining(const ak_iter *it);

AK_API void ak_iter_free(ak_iter *it);

#ifdef __cplusplus
}
#endif
#endif /* ASYNCKIT_FUTURE_H */
