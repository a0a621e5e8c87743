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

#endif /* AK_COMBINATORS_INTERNAL_H */
