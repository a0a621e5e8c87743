/* dataflow.c: AsyncKit's futures as arguments: ak_pool_submit_after, a pool
 * task that is queued only once every future it was given has succeeded,
 * and fails without running when one fails or is cancelled. A fail-fast join
 * of the dependencies (that does not cancel them) followed by an enqueue.
 * The pool itself is core/pool.c. */
#include "combinators/internal.h"

static void deps_settled(ak_future *join, void *arg) {
  ak_future *f = arg; /* holds the reference meant for the queue */
  ak_pool *pool = f->data;
  if (ak_future_state(join) != AK_DONE) {
    ak__future_settle_like(f, join);
    ak_future_release(f);
  } else if (ak_future_cancel_requested(f) || ak_future_is_set(f)) {
    ak__future_settle(f, AK_CANCELLED, -ECANCELED);
    ak_future_release(f);
  } else if (!ak__pool_enqueue(pool, f)) {
    ak_future_fail(f, AK_ESHUTDOWN, "the pool has been stopped");
    ak_future_release(f);
  }
  ak_future_release(join);
}

ak_future *ak_pool_submit_after(ak_pool *pool, ak_work_fn fn, void *arg,
                                ak_future *const *deps, size_t ndeps) {
  ak_future *f = ak__pool_task_new(pool, fn, arg);
  if (!f)
    return NULL;
  /* Settle at the first failure, but leave the user's other dependencies
   * alone: they are not ours to cancel. */
  ak_future *join = ak_join_all(deps, ndeps, AK_JOIN_FAIL_FAST | AK__JOIN_NO_CANCEL);
  if (!join) {
    ak_future_fail(f, -ENOMEM, NULL);
    return f;
  }
  ak_future_ref(f); /* the queue's, once the deps are in */
  if (ak_future_on_settle(join, deps_settled, f) < 0) {
    ak_future_release(join);
    ak_future_release(f);
    ak_future_fail(f, -ENOMEM, NULL);
  }
  return f;
}

