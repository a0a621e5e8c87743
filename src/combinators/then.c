/* then.c: then / chain: a step that runs when its input succeeds, inline
 * where the input's callbacks run or on a pool, whose return value settles
 * the chained future or hands it to another future (adoption). Failure and
 * cancellation skip the step and pass through unchanged. Catch is the same
 * step on the other side: it runs when the input fails or is cancelled, and
 * a success passes through.
 *
 * The chained future's fields: fn/fn_arg the step, data the input (a
 * reference, dropped as soon as the step has run so a long chain does not
 * keep every link alive), aux the pool or NULL. */
#include <sched.h>

#include "combinators/internal.h"

/* ->data holds the input; a cancel on another thread borrows it for a
 * moment, marking the slot TAKEN so the step cannot drop it meanwhile. */
#define AK__TAKEN ((void *)1)

static ak_future *borrow_input(ak_future *self) {
  void *input;
  while ((input = __atomic_exchange_n(&self->data, AK__TAKEN, __ATOMIC_ACQ_REL)) == AK__TAKEN)
    sched_yield();
  if (input)
    ak_future_ref(input);
  __atomic_store_n(&self->data, input, __ATOMIC_RELEASE);
  return input;
}

static void drop_input(ak_future *self) {
  void *input;
  while ((input = __atomic_exchange_n(&self->data, NULL, __ATOMIC_ACQ_REL)) == AK__TAKEN)
    sched_yield();
  if (input)
    ak__future_release_inline(input);
}

static void then_cancel(ak_future *f) {
  /* Pairs with ak__future_complete_callable: CANCEL_REQ is set before this
   * runs, so an adoption made after we look is cancelled there. */
  ak_future *adopted = __atomic_load_n(&f->adopted, __ATOMIC_SEQ_CST);
  if (adopted) {
    ak_future_cancel(adopted);
    return;
  }
  ak_future *input = borrow_input(f);
  if (input && !ak_future_is_set(input))
    ak_future_cancel(input); /* its CANCELLED passes on to f */
  ak_future_release(input);
}

static void then_free(ak_future *f) {
  /* No reference is left, so no cancel can be borrowing the input: a plain
   * look first (the step that ran dropped it: the common case). */
  if (__atomic_load_n(&f->data, __ATOMIC_RELAXED) != NULL)
    drop_input(f);
}

static const ak__future_kind then_kind = {
    .name = "then", .cancel = then_cancel, .free_data = then_free};
static const ak__future_kind catch_kind = {
    .name = "catch", .cancel = then_cancel, .free_data = then_free};

/* Whether self's step runs for input's outcome: then on success, catch on
 * failure or cancellation. */
static bool step_wanted(const ak_future *self, const ak_future *input) {
  bool done = ak__state_of(atomic_load_explicit(&((ak_future *)input)->state,
                                                memory_order_acquire)) == AK_DONE;
  return self->kind == &catch_kind ? !done : done;
}

/* The outcome passes through unchanged. A success's value is borrowed, so
 * self keeps input alive as if it had adopted it. */
static void pass_through(ak_future *self, ak_future *input) {
  if (ak_future_state(input) == AK_DONE)
    __atomic_store_n(&self->adopted, ak_future_ref(input), __ATOMIC_SEQ_CST);
  ak__future_settle_like(self, input);
}

static void run_step(ak_future *self, ak_future *input) {
  if (!ak__future_start_running(self)) {
    ak__future_settle(self, AK_CANCELLED, -ECANCELED);
    return;
  }
  ak_then_fn fn = (ak_then_fn)self->fn;
  int64_t ret = fn(input, self->fn_arg, self);
  ak__future_complete_callable(self, ret);
}

static int64_t step_on_pool(void *arg, ak_future *task) {
  (void)task;
  ak_future *self = arg;
  ak_future *input = borrow_input(self);
  run_step(self, input);
  ak_future_release(input);
  drop_input(self);
  ak_future_release(self);
  return 0;
}

/* The common step, inline (no pool): the input is dropped as soon as fn
 * has returned, and the callback's reference to self passes to the settle
 * (to its callbacks' queue): two atomic operations fewer per link than a
 * settle followed by a release. */
static void run_step_owned(ak_future *self, ak_future *input) {
  if (AK__UNLIKELY(!ak__future_start_running(self))) {
    ak__future_settle(self, AK_CANCELLED, -ECANCELED);
    drop_input(self);
    ak_future_release(self);
    return;
  }
  ak_then_fn fn = (ak_then_fn)self->fn;
  int64_t ret = fn(input, self->fn_arg, self);
  drop_input(self); /* input stays alive: its callbacks' queue holds it */
  ak__future_complete_callable_owned(self, ret);
}

static void input_settled(ak_future *input, void *arg) {
  ak_future *self = arg; /* the callback's reference */
  bool wanted = step_wanted(self, input);
  if (AK__LIKELY(wanted && self->aux == NULL)) {
    run_step_owned(self, input);
    return;
  }
  if (!wanted) {
    pass_through(self, input);
  } else {
    ak_future *task = ak_pool_submit(self->aux, step_on_pool, self);
    if (task) {
      ak_future_release(task); /* step_on_pool owns self's reference now */
      return;
    }
    ak_future_fail(self, -ENOMEM, "then: pool submit");
  }
  drop_input(self);
  ak_future_release(self);
}


ak_future *ak_then(ak_future *input, ak_then_fn fn, void *arg, ak_pool *pool) {
  return ak__step_new(&then_kind, input, fn, arg, pool, input_settled);
}

ak_future *ak_catch(ak_future *input, ak_then_fn fn, void *arg, ak_pool *pool) {
  return ak__step_new(&catch_kind, input, fn, arg, pool, input_settled);
}
