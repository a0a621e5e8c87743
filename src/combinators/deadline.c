/* deadline.c: ak_future_timeout, a deadline on any future. For an IO op the
 * kernel has not seen yet the deadline becomes a linked kernel timeout on
 * the op itself (no extra future, no loop timer). Otherwise a new future
 * races the input against a timer: the loop's heap for loop futures on the
 * owner thread, the process timer thread for the rest.
 *
 * The deadline future's fields: data the input (a reference), aux the loop
 * timer while armed, fn_arg the timer thread's id while armed. */
#include "combinators/internal.h"

static void deadline_cancel(ak_future *f) {
  ak_future_cancel(f->data); /* its CANCELLED passes on to f */
}

static void deadline_free(ak_future *f) { ak_future_release(f->data); }

static const ak__future_kind deadline_kind = {
    .name = "deadline", .cancel = deadline_cancel, .free_data = deadline_free};

static bool uses_loop_timer(const ak_future *f) { return f->loop && f->fn == NULL; }

static void expired(void *arg) {
  ak_future *f = arg; /* the timer's reference */
  if (uses_loop_timer(f))
    f->aux = NULL;
  if (ak_future_fail(f, -ETIMEDOUT, "deadline passed") == 0)
    ak_future_cancel(f->data);
  ak_future_release(f);
}

static void input_settled(ak_future *input, void *arg) {
  ak_future *f = arg; /* the callback's reference */
  ak__future_settle_like(f, input);
  if (uses_loop_timer(f)) {
    /* Same thread as expired(): the loop's. */
    if (f->aux && ak_timer_cancel(f->loop, f->aux) == 0) {
      f->aux = NULL;
      ak_future_release(f); /* the timer's reference */
    }
  } else if (ak__tt_cancel((uint64_t)(uintptr_t)f->fn_arg)) {
    ak_future_release(f);
  }
  ak_future_release(f);
}

ak_future *ak_future_timeout(ak_future *input, int64_t timeout_ns) {
  if (ak_future_is_set(input))
    return ak_future_ref(input);
  ak__op *op = ak__op_of(input);
  if (op && ak__loop_owned_by_caller(input->loop) && ak__op_set_deadline(op, timeout_ns) == 0)
    return ak_future_ref(input);

  bool loop_timer = input->loop && ak__loop_owned_by_caller(input->loop);
  ak_future *f = ak__future_new(input->loop, &deadline_kind, ak_future_ref(input));
  if (!f) {
    ak_future_release(input);
    return NULL;
  }
  f->fn = loop_timer ? NULL : (void *)expired; /* marks which timer */
  ak_future_ref(f); /* the timer's */
  if (loop_timer) {
    f->aux = ak_call_later(input->loop, timeout_ns, expired, f);
    if (!f->aux)
      goto fail;
  } else {
    uint64_t id = ak__tt_add(ak_now_ns() + (timeout_ns < 0 ? 0 : timeout_ns), expired, f);
    if (id == 0)
      goto fail;
    f->fn_arg = (void *)(uintptr_t)id;
  }
  ak_future_ref(f); /* the input callback's */
  if (ak_future_on_settle(input, input_settled, f) < 0) {
    ak_future_release(f);
    ak_future_fail(f, -ENOMEM, "timeout: callback");
  }
  return f;

fail:
  ak_future_release(f); /* the timer's */
  ak_future_release(f);
  return NULL;
}
