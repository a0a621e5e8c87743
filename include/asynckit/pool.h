/* asynckit/pool.h: a small pool of CPU threads running plain callables as
 * futures (AsyncKit's Pool and pool.do).
 *
 * A task submitted from a thread that owns a loop settles its future on that
 * loop (its callbacks run there, as libuv's after-work callback does); one
 * submitted from elsewhere settles on the worker.
 *
 * Thread-safe: every function here, except ak_pool_free.
 */
#ifndef ASYNCKIT_POOL_H
#define ASYNCKIT_POOL_H

#include "api.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "future.h"

#ifdef __cplusplus
extern "C" {
#endif

/* A pool callable. Runs on a worker with its own future, which is RUNNING.
 * Return >= 0 for the result (set a value with ak_future_set_value(self,..)),
 * a negative error to fail (detail with ak_future_set_detail), or
 * ak_future_adopt(self, other) to settle as another future does. */
typedef int64_t (*ak_work_fn)(void *arg, ak_future *self);

/* Starts a pool of n worker threads (n == 0: the number of CPUs). Returns
 * NULL and sets errno when threads or memory cannot be had. */
AK_API ak_pool *ak_pool_new(unsigned n);

/* pool.do(fn, arg): queues fn(arg) and returns its future. After the pool
 * has stopped, the future fails with AK_ESHUTDOWN. NULL when memory runs
 * out. */
AK_API ak_future *ak_pool_submit(ak_pool *pool, ak_work_fn fn, void *arg);

/* Dataflow (AsyncKit's futures passed as arguments): fn runs once every
 * future in deps has succeeded. If one fails or is cancelled, fn never runs
 * and the future settles with that dependency's error (CANCELLED if it was
 * cancelled). deps are referenced; the caller keeps its references. */
AK_API ak_future *ak_pool_submit_after(ak_pool *pool, ak_work_fn fn, void *arg,
                                ak_future *const *deps, size_t ndeps);

/* cs.asynchron's "an incomplete Asynchron can be told to call a function to
 * compute its value": hands the plain promise (made by ak_future_new) a
 * callable to run on pool. The promise is RUNNING while fn runs and settles
 * with its outcome (fn's protocol as for ak_pool_submit, with the promise
 * as self), which reaches every waiter and callback. The caller keeps its
 * reference. If the promise has a loop, the loop stays alive until the
 * promise settles. The first settle wins: a promise set or cancelled
 * meanwhile keeps that outcome (a running fn still runs to its end).
 * Returns 0; -EINVAL for a future that is not a plain promise;
 * AK_ESETTLED if it has settled; -EBUSY if it was handed a callable before;
 * AK_ESHUTDOWN (and the promise fails so) if the pool has stopped. */
AK_API int ak_pool_compute(ak_pool *pool, ak_future *promise, ak_work_fn fn, void *arg);

/* Stops the pool: with wait, runs every queued task first; without, queued
 * tasks that have not started settle CANCELLED. Either way blocks until the
 * workers have exited (pool.stop(True)); running tasks always finish.
 * Idempotent. Must not be called from one of the pool's own workers. */
AK_API void ak_pool_stop(ak_pool *pool, bool wait);

/* Stops (waiting for queued work) if not stopped, and frees the pool. */
AK_API void ak_pool_free(ak_pool *pool);

/* Tasks queued and not yet started. */
AK_API size_t ak_pool_queue_depth(const ak_pool *pool);

/* Number of worker threads. */
AK_API unsigned ak_pool_size(const ak_pool *pool);

#ifdef __cplusplus
}
#endif
#endif /* ASYNCKIT_POOL_H */
