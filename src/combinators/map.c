/* map.c: ak_map, a bounded map: starts the work for n items through a
 * caller's function with at most `limit` of them in flight, and gives one
 * join over all of them (ak_join_count / ak_join_input read it as a join's).
 * A settled item starts the next; fail-fast stops starting and cancels the
 * ones in flight; a cancel of the map does the same. Like a join that
 * cancels, the map settles only once every item it started has settled.
 *
 * Items settle on any thread (pool tasks) and may settle inside the start
 * function or at once, so the counts live under a mutex and the start
 * function is never called under it. Starting never recurses: an item that
 * is settled when its callback is added has that callback queued (the
 * loop's ready queue, or the thread's trampoline), so a million items that
 * settle at once start in a flat loop. The map future's data is the record
 * below. */
#include <pthread.h>

#include "combinators/internal.h"

typedef struct ak__map {
  ak_map_fn start;
  void *arg;
  size_t n;
  size_t limit;
  unsigned flags;
  pthread_mutex_t mu;       /* guards the counts below */
  size_t next;              /* the next item to start */
  size_t in_flight;         /* started, not yet settled */
  size_t succeeded;
  bool stopping;            /* failed fast or cancelled: start no more */
  bool finished;            /* the map has been settled (once) */
  bool failed;              /* first_* hold the first failure */
  int first_err;            /* its error when it had no future (NULL start) */
  size_t first_index;
  ak_future *self;          /* the map's future (no reference of its own) */
  struct ak__map_item {
    _Atomic(ak_future *) f; /* a reference once started, else NULL */
    struct ak__map *map;    /* so an item's callback finds map and index */
  } items[];
} ak__map;

static void map_cancel(ak_future *f);
static void map_free(ak_future *f);

const ak__future_kind ak__map_kind = {.name = "map", .cancel = map_cancel, .free_data = map_free};

static void map_free(ak_future *f) {
  ak__map *m = f->data;
  for (size_t i = 0; i < m->n; i++)
    ak_future_release(atomic_load(&m->items[i].f));
  pthread_mutex_destroy(&m->mu);
  ak__free(m);
}

size_t ak__map_count(const ak_future *f) { return ((const ak__map *)f->data)->n; }

ak_future *ak__map_input(const ak_future *f, size_t i) {
  ak__map *m = f->data;
  return i < m->n ? atomic_load(&m->items[i].f) : NULL;
}

static void cancel_started(ak__map *m) {
  pthread_mutex_lock(&m->mu);
  size_t started = m->next;
  pthread_mutex_unlock(&m->mu);
  for (size_t i = 0; i < started; i++) {
    ak_future *item = atomic_load(&m->items[i].f);
    if (item && !ak_future_is_set(item))
      ak_future_cancel(item);
  }
}

static void map_cancel(ak_future *f) {
  ak__map *m = f->data;
  pthread_mutex_lock(&m->mu);
  m->stopping = true;
  pthread_mutex_unlock(&m->mu);
  cancel_started(m);
}

/* Every started item has settled and no more will start: the outcome. */
static void settle_map(ak_future *f, ak__map *m) {
  if (ak_future_cancel_requested(f))
    ak__future_settle(f, AK_CANCELLED, -ECANCELED);
  else if (!m->failed || !(m->flags & AK_JOIN_FAIL_FAST))
    ak__future_settle(f, AK_DONE, (int64_t)m->succeeded);
  else if (atomic_load(&m->items[m->first_index].f))
    ak__future_settle_like(f, atomic_load(&m->items[m->first_index].f));
  else
    ak_future_fail(f, m->first_err, "map: start"); /* it returned NULL */
}

/* Under the lock: whether the map is over (and now marked so). */
static bool over_locked(ak__map *m) {
  if (m->finished || m->in_flight > 0 || (m->next < m->n && !m->stopping))
    return false;
  m->finished = true;
  return true;
}

/* One item ended (ok, or failed with err; index i). Returns whether the map
 * must cancel what is in flight. Under the lock. */
static bool count_end_locked(ak__map *m, size_t i, bool ok, int err) {
  m->in_flight--;
  if (ok) {
    m->succeeded++;
    return false;
  }
  if (m->failed)
    return false;
  m->failed = true;
  m->first_index = i;
  m->first_err = err;
  if (!(m->flags & AK_JOIN_FAIL_FAST))
    return false;
  m->stopping = true;
  return true;
}

static void item_settled(ak_future *item, void *arg);

/* Starts items while there is room. The map future f is held by the
 * caller. */
static void pump(ak_future *f) {
  ak__map *m = f->data;
  for (;;) {
    pthread_mutex_lock(&m->mu);
    if (m->stopping || m->next == m->n || m->in_flight == m->limit) {
      bool over = over_locked(m);
      pthread_mutex_unlock(&m->mu);
      if (over)
        settle_map(f, m);
      return;
    }
    size_t i = m->next++;
    m->in_flight++;
    pthread_mutex_unlock(&m->mu);

    ak_future *item = m->start(m->arg, i);
    if (!item) {
      pthread_mutex_lock(&m->mu);
      bool cancel = count_end_locked(m, i, false, -ENOMEM);
      pthread_mutex_unlock(&m->mu);
      if (cancel)
        cancel_started(m);
      continue; /* the top of the loop decides whether it is over */
    }
    atomic_store(&m->items[i].f, item); /* the map's reference */
    ak_future_ref(f);                   /* the item callback's */
    if (ak_future_on_settle(item, item_settled, &m->items[i]) < 0) {
      ak_future_release(f);
      ak_future_cancel(item); /* no callback: it counts as failed now */
      pthread_mutex_lock(&m->mu);
      bool cancel = count_end_locked(m, i, false, -ENOMEM);
      pthread_mutex_unlock(&m->mu);
      if (cancel)
        cancel_started(m);
      continue;
    }
    /* Pairs with map_cancel: it sets stopping and then reads items[]; this
     * stored the item and now reads stopping, under the same lock. */
    pthread_mutex_lock(&m->mu);
    bool stopping = m->stopping;
    pthread_mutex_unlock(&m->mu);
    if (stopping)
      ak_future_cancel(item);
  }
}

static void item_settled(ak_future *item, void *arg) {
  struct ak__map_item *slot = arg;
  ak__map *m = slot->map;
  size_t i = (size_t)(slot - m->items);
  ak_future *f = m->self; /* the callback's reference */
  bool ok = ak_future_state(item) == AK_DONE;
  pthread_mutex_lock(&m->mu);
  bool cancel = count_end_locked(m, i, ok, (int)ak_future_result(item));
  pthread_mutex_unlock(&m->mu);
  if (cancel)
    cancel_started(m);
  pump(f);
  ak_future_release(f);
}

ak_future *ak_map(size_t n, size_t limit, ak_map_fn start, void *arg, unsigned flags) {
  if (!start || limit == 0 || n > (SIZE_MAX - sizeof(ak__map)) / sizeof(struct ak__map_item))
    return NULL;
  ak__map *m = ak__calloc(1, sizeof(*m) + n * sizeof(struct ak__map_item));
  if (!m)
    return NULL;
  m->start = start;
  m->arg = arg;
  m->n = n;
  m->limit = limit;
  m->flags = flags;
  pthread_mutex_init(&m->mu, NULL);
  for (size_t i = 0; i < n; i++) {
    atomic_init(&m->items[i].f, NULL);
    m->items[i].map = m;
  }
  ak_future *f = ak__future_new(ak_loop_current(), &ak__map_kind, m);
  if (!f) {
    pthread_mutex_destroy(&m->mu);
    ak__free(m);
    return NULL;
  }
  m->self = f;
  ak_future_ref(f); /* held while the first items start */
  pump(f);
  ak_future_release(f);
  return f;
}
