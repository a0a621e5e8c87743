/* deadline.c: ak_future_timeout, a deadline on any future. For an IO op the
 * kernel has not seen yet the deadline becomes a linked kernel timeout on
 * the op itself (no extra future, no loop timer). Otherwise a new future
 * races the input against a timer: the loop's heap for loop futures on the
 * owner thread, the process timer thread for the rest.
 *
 * The deadline future never settles before its input: when the timer fires
 * it only cancels the input and notes that it fired; the input's own settle
 * (once the kernel has acknowledged the cancel and let go of its buffers)
 * settles the deadline, FAILED -ETIMEDOUT if the input ended CANCELLED, or
 * as the input did if it finished anyway (bytes read are not lost).
 *
 * The deadline future's fields: data the input (a reference); aux the loop
 * timer while armed, then FIRED once a timer (either kind) has fired; fn
 * marks which timer (NULL: the loop's); fn_arg the timer thread's id. */
#include "combinators/internal.h"

/* aux once the timer has fired. Read and written with atomics: the timer
 * thread sets it while the input may settle on another thread. */
#define FIRED ((void *)1)

static void deadline_cancel(ak_future *f) {
  ak_future_cancel(f->data); /* its CANCELLED passes on to f */
}

static void deadline_free(ak_future *f) { ak_future_release(f->data); }

static const ak__future_kind deadline_kind = {
    .name = "deadline", .cancel = deadline_cancel, .free_data = deadline_free};

static bool uses_loop_timer(const ak_future *f) { return f->loop && f->fn == NULL; }

static void expired(void *arg) {
  ak_future *f = arg; /* the timer's reference */
  /* Seq_cst store, then the cancel's RMW on the input's word: an input
   * settled by this cancel runs input_settled after both, and sees FIRED. */
  __atomic_store_n(&f->aux, FIRED, __ATOMIC_SEQ_CST);
  if (!ak_future_is_set(f))
    ak_future_cancel(f->data); /* f settles when the input does */
  ak_future_release(f);
}

/* Whether the deadline, not the input or the user, ended it: the timer fired
 * and the input came back CANCELLED without anyone cancelling f itself. */
static bool timed_out(ak_future *f, const ak_future *input) {
  return __atomic_load_n(&f->aux, __ATOMIC_SEQ_CST) == FIRED &&
         ak_future_state(input) == AK_CANCELLED && !ak_future_cancel_requested(f);
}

static void input_settled(ak_future *input, void *arg) {
  ak_future *f = arg; /* the callback's reference */
  if (timed_out(f, input))
    ak_future_fail(f, -ETIMEDOUT, "deadline passed");
  else
    ak__future_settle_like(f, input);
  if (uses_loop_timer(f)) {
    /* Same thread as expired(): the loop's. */
    if (f->aux && f->aux != FIRED && ak_timer_cancel(f->loop, f->aux) == 0) {
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
  f->aux = NULL; /* not FIRED: the timer thread may fire at once */
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
