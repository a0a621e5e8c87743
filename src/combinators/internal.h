/* combinators/internal.h: what the combinator files share among themselves
 * (the layers above use only the public combinators of future.h). */
#ifndef AK_COMBINATORS_INTERNAL_H
#define AK_COMBINATORS_INTERNAL_H

#include "core/internal.h"

/* A process-wide timer thread for futures with no loop (timer_thread.c).
 * fn runs on that thread. Returns an id for cancel, or 0 on ENOMEM. */
uint64_t ak__tt_add(int64_t deadline_ns, void (*fn)(void *arg), void *arg);
/* Returns true if the timer was removed before it ran. */
bool ak__tt_cancel(uint64_t id);

/* Internal join flag: fail fast without cancelling the other inputs. */
enum { AK__JOIN_NO_CANCEL = 1 << 16 };

/* ak_map's future (map.c) is a join too: join.c's accessors read it
 * through these. */
extern const ak__future_kind ak__map_kind;
size_t ak__map_count(const ak_future *map);
ak_future *ak__map_input(const ak_future *map, size_t i);

/* A step on input: a future of kind with fn, arg and pool in
 * place, on_input registered on input (called with the step). Takes one
 * reference to input; NULL when memory runs out. ak_then, ak_catch and
 * ak_finally differ only in kind and in what on_input runs. Inline, as the
 * static builder it replaces was: a chain makes one per step. */
static inline ak_future *ak__step_new(const ak__future_kind *kind, ak_future *input,
                                       ak_then_fn fn, void *arg, ak_pool *pool,
                                       ak_callback on_input) {
  ak_future *self = ak__future_new(input->loop, kind, ak_future_ref(input));
  if (!self) {
    ak_future_release(input);
    return NULL;
  }
  self->fn = (void *)fn;
  self->fn_arg = arg;
  self->aux = pool;
  ak__future_ref_unshared(self); /* the callback's (nobody else has self yet) */
  if (ak_future_on_settle(input, on_input, self) < 0) {
    ak_future_release(self);
    ak_future_release(self);
    return NULL;
  }
  return self;
}

#endif /* AK_COMBINATORS_INTERNAL_H */
