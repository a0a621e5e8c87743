/* finally.c: ak_finally, a clean-up step that runs whatever its input's
 * outcome (success, failure, cancellation) and then passes that outcome on
 * unchanged, unless the clean-up itself failed. The step may return a
 * future (ak_future_adopt: an ak_close, say); the outcome passes on once
 * that has settled. A cancel reaches the input while it is pending; the
 * clean-up is never skipped nor cancelled, since it is what the caller
 * relies on when things go wrong.
 *
 * The future's fields: fn/fn_arg the step, data the input (a reference kept
 * until the future is freed: a success's value is borrowed from it), aux
 * the pool or NULL, adopted the clean-up's future while it runs. */
#include "combinators/internal.h"

static void finally_cancel(ak_future *f) {
  ak_future *input = f->data;
  if (!ak_future_is_set(input))
    ak_future_cancel(input); /* the step runs all the same */
}

static void finally_free(ak_future *f) { ak_future_release(f->data); }

static const ak__future_kind finally_kind = {
    .name = "finally", .cancel = finally_cancel, .free_data = finally_free};

/* The clean-up's future settled: a failure of it is the outcome, else the
 * input's. */
static void cleanup_settled(ak_future *cleanup, void *arg) {
  ak_future *self = arg; /* the callback's reference */
  if (ak_future_state(cleanup) == AK_DONE)
    ak__future_settle_like(self, self->data);
  else
    ak__future_settle_like(self, cleanup);
  ak_future_release(self);
}

static void run_cleanup(ak_future *self) {
  ak_future *input = self->data;
  int64_t ret = ((ak_then_fn)self->fn)(input, self->fn_arg, self);
  ak_future *cleanup = __atomic_load_n(&self->adopted, __ATOMIC_SEQ_CST);
  if (ret == AK__ADOPT_SENTINEL && cleanup) {
    /* self->adopted keeps it alive; this callback holds self. */
    ak_future_ref(self);
    if (ak_future_on_settle(cleanup, cleanup_settled, self) < 0) {
      ak_future_release(self);
      ak_future_fail(self, -ENOMEM, "finally: callback");
    }
  } else if (ret == AK__ADOPT_SENTINEL) {
    ak_future_fail(self, -EINVAL, "finally: adopt without a future");
  } else if (ret < 0) {
    ak__future_finish(self, ret); /* the clean-up's own failure */
  } else {
    ak__future_settle_like(self, input);
  }
}

static int64_t cleanup_on_pool(void *arg, ak_future *task) {
  (void)task;
  ak_future *self = arg; /* the submitter's reference */
  run_cleanup(self);
  ak_future_release(self);
  return 0;
}

static void input_settled(ak_future *input, void *arg) {
  (void)input;
  ak_future *self = arg; /* the callback's reference */
  if (self->aux) {
    ak_future *task = ak_pool_submit(self->aux, cleanup_on_pool, self);
    if (task) {
      ak_future_release(task); /* cleanup_on_pool owns self's reference now */
      return;
    }
    ak_future_fail(self, -ENOMEM, "finally: pool submit");
  } else {
    run_cleanup(self);
  }
  ak_future_release(self);
}

ak_future *ak_finally(ak_future *input, ak_then_fn fn, void *arg, ak_pool *pool) {
  return ak__step_new(&finally_kind, input, fn, arg, pool, input_settled);
}
