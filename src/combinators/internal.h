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

#endif /* AK_COMBINATORS_INTERNAL_H */
