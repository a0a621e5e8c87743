/* timer.c: a loop's timers: a binary min-heap by (deadline, creation order),
 * call_later, cancel, and sleep futures. All timers of a loop cost one kernel
 * timeout: the iteration's wait is bounded by the earliest deadline. Owner
 * thread only. */
#include "core/loop_internal.h"

static void sleep_fired(void *arg);
static void sleep_dropped(void *arg);

struct ak_timer {
  int64_t deadline;
  uint64_t seq;            /* creation order breaks ties */
  size_t index;            /* position in the heap */
  void (*fn)(void *arg);
  void *arg;
};

static bool earlier(const ak_timer *a, const ak_timer *b) {
  return a->deadline < b->deadline || (a->deadline == b->deadline && a->seq < b->seq);
}

static void heap_set(ak__timer_heap *h, size_t i, ak_timer *t) {
  h->items[i] = t;
  t->index = i;
}

static void sift_up(ak__timer_heap *h, size_t i) {
  ak_timer *t = h->items[i];
  while (i > 0) {
    size_t parent = (i - 1) / 2;
    if (!earlier(t, h->items[parent]))
      break;
    heap_set(h, i, h->items[parent]);
    i = parent;
  }
  heap_set(h, i, t);
}

static void sift_down(ak__timer_heap *h, size_t i) {
  ak_timer *t = h->items[i];
  for (;;) {
    size_t child = 2 * i + 1;
    if (child >= h->count)
      break;
    if (child + 1 < h->count && earlier(h->items[child + 1], h->items[child]))
      child++;
    if (!earlier(h->items[child], t))
      break;
    heap_set(h, i, h->items[child]);
    i = child;
  }
  heap_set(h, i, t);
}

static void heap_remove(ak__timer_heap *h, ak_timer *t) {
  size_t i = t->index;
  ak_timer *last = h->items[--h->count];
  if (i == h->count)
    return;
  heap_set(h, i, last);
  if (i > 0 && earlier(last, h->items[(i - 1) / 2]))
    sift_up(h, i);
  else
    sift_down(h, i);
}

ak_timer *ak_call_later(ak_loop *loop, int64_t delay_ns, void (*fn)(void *arg), void *arg) {
  ak__timer_heap *h = &loop->timers;
  if (h->count == h->cap) {
    size_t cap = h->cap ? 2 * h->cap : 16;
    ak_timer **items = ak__realloc(h->items, cap * sizeof(*items));
    if (!items)
      return NULL;
    h->items = items;
    h->cap = cap;
  }
  ak_timer *t = ak__malloc(sizeof(*t));
  if (!t)
    return NULL;
  if (delay_ns < 0)
    delay_ns = 0;
  t->deadline = ak_now_ns() + delay_ns;
  t->seq = h->seq++;
  t->fn = fn;
  t->arg = arg;
  h->items[h->count] = t;
  sift_up(h, h->count++);
  return t;
}

int ak_timer_cancel(ak_loop *loop, ak_timer *timer) {
  ak__timer_heap *h = &loop->timers;
  if (!timer || timer->index >= h->count || h->items[timer->index] != timer)
    return AK_ESETTLED;
  heap_remove(h, timer);
  ak__free(timer);
  return 0;
}

int64_t ak__timers_run(ak_loop *loop, int64_t now) {
  ak__timer_heap *h = &loop->timers;
  /* Only timers due now; one that a callback adds with delay 0 waits for the
   * next iteration, so a timer loop cannot starve IO. */
  uint64_t seq_limit = h->seq;
  while (h->count > 0 && h->items[0]->deadline <= now && h->items[0]->seq < seq_limit) {
    ak_timer *t = h->items[0];
    heap_remove(h, t);
    loop->stats.timers_fired++;
    void (*fn)(void *) = t->fn;
    void *arg = t->arg;
    ak__free(t);
    fn(arg);
  }
  return h->count > 0 ? h->items[0]->deadline : -1;
}

int64_t ak__timers_next(const ak_loop *loop) {
  return loop->timers.count > 0 ? loop->timers.items[0]->deadline : -1;
}

void ak__timers_cancel_all(ak_loop *loop) {
  /* Sleep futures settle CANCELLED; plain call_later timers are dropped. */
  ak__timer_heap *h = &loop->timers;
  while (h->count > 0) {
    ak_timer *t = h->items[h->count - 1];
    h->count--;
    if (t->fn == sleep_fired)
      sleep_dropped(t->arg);
    ak__free(t);
  }
}

void ak__timers_free_all(ak_loop *loop) {
  ak__timers_cancel_all(loop);
  ak__free(loop->timers.items);
  loop->timers.items = NULL;
  loop->timers.cap = 0;
}

/* ---- Sleep futures ------------------------------------------------------------ */

static void sleep_fired(void *arg) {
  ak_future *f = arg;
  f->aux = NULL;
  ak__future_settle(f, AK_DONE, 0);
  ak_future_release(f);
}

static void sleep_dropped(void *arg) {
  ak_future *f = arg;
  f->aux = NULL;
  ak__future_settle(f, AK_CANCELLED, -ECANCELED);
  ak_future_release(f);
}

static void sleep_cancel_on_loop(void *arg) {
  ak_future *f = arg;
  if (f->aux && ak_timer_cancel(f->loop, f->aux) == 0) {
    f->aux = NULL;
    ak__future_settle(f, AK_CANCELLED, -ECANCELED);
    ak_future_release(f); /* the timer's reference */
  }
  ak_future_release(f);   /* the hook's reference */
}

static void sleep_cancel(ak_future *f) {
  ak_future_ref(f);
  if (ak__loop_owned_by_caller(f->loop))
    sleep_cancel_on_loop(f);
  else if (ak_loop_post(f->loop, sleep_cancel_on_loop, f) < 0)
    ak_future_release(f);
}

static const ak__future_kind sleep_kind = {.name = "sleep", .cancel = sleep_cancel};

ak_future *ak_sleep(ak_loop *loop, int64_t delay_ns) {
  if (!ak__loop_owned_by_caller(loop))
    return ak__future_failed(loop, AK_ENOTOWNER, "ak_sleep");
  ak_future *f = ak__future_new(loop, &sleep_kind, NULL);
  if (!f)
    return NULL;
  ak_timer *t = ak_call_later(loop, delay_ns, sleep_fired, f);
  if (!t) {
    ak_future_release(f);
    return NULL;
  }
  f->aux = t;
  return ak_future_ref(f); /* one for the timer, one for the caller */
}
