/* iter.c: the completion-order iterator (cs.asynchron's report()): each
 * input's callback appends it to a queue; ak_iter_next takes from the queue,
 * waiting on a condition variable, or, on the thread that owns the inputs'
 * loop, by running that loop. The record is reference counted because input
 * callbacks may still run after the user frees the iterator. */
#define _GNU_SOURCE
#include <pthread.h>
#include <time.h>

#include "combinators/internal.h"

struct ak_iter {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  _Atomic size_t refs;         /* the user's + one per pending callback */
  ak_loop *loop;               /* every input's loop, if they share one */
  size_t n;
  size_t head;                 /* next to return */
  size_t tail;                 /* next free slot in order[] */
  ak_future **inputs;          /* references */
  ak_future **order;           /* inputs in settle order, [head, tail) ready */
};

static void iter_unref(ak_iter *it) {
  if (atomic_fetch_sub(&it->refs, 1) != 1)
    return;
  for (size_t i = 0; i < it->n; i++)
    ak_future_release(it->inputs[i]);
  pthread_mutex_destroy(&it->mu);
  pthread_cond_destroy(&it->cv);
  ak__free(it->inputs);
  ak__free(it->order);
  ak__free(it);
}

static void input_settled(ak_future *f, void *arg) {
  ak_iter *it = arg;
  pthread_mutex_lock(&it->mu);
  it->order[it->tail++] = f;
  pthread_cond_signal(&it->cv);
  pthread_mutex_unlock(&it->mu);
  iter_unref(it);
}

ak_iter *ak_iter_new(ak_future *const *inputs, size_t n) {
  ak_iter *it = ak__calloc(1, sizeof(*it));
  if (!it)
    return NULL;
  it->inputs = ak__calloc(n ? n : 1, sizeof(ak_future *));
  it->order = ak__calloc(n ? n : 1, sizeof(ak_future *));
  if (!it->inputs || !it->order) {
    ak__free(it->inputs);
    ak__free(it->order);
    ak__free(it);
    return NULL;
  }
  pthread_mutex_init(&it->mu, NULL);
  pthread_condattr_t attr;
  pthread_condattr_init(&attr);
  pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
  pthread_cond_init(&it->cv, &attr);
  pthread_condattr_destroy(&attr);
  it->n = n;
  it->loop = n ? inputs[0]->loop : NULL;
  for (size_t i = 0; i < n; i++) {
    it->inputs[i] = ak_future_ref(inputs[i]);
    if (inputs[i]->loop != it->loop)
      it->loop = NULL; /* mixed: wait on the condition variable */
  }
  atomic_init(&it->refs, 1 + n);
  for (size_t i = 0; i < n; i++) {
    if (ak_future_on_settle(it->inputs[i], input_settled, it) < 0) {
      /* ENOMEM: report this input as settled when it is... we cannot; so
       * hand it out at once rather than lose it. */
      pthread_mutex_lock(&it->mu);
      it->order[it->tail++] = it->inputs[i];
      pthread_mutex_unlock(&it->mu);
      iter_unref(it);
    }
  }
  return it;
}

/* Owner thread only, so reading tail without the lock is safe here: the
 * callbacks that move it run on this thread. */
static bool has_ready(void *arg) {
  ak_iter *it = arg;
  return it->head != it->tail;
}

static int64_t deadline_after(int64_t timeout_ns) {
  return timeout_ns < 0 ? AK_FOREVER : ak_now_ns() + timeout_ns;
}

ak_future *ak_iter_next(ak_iter *it, int64_t timeout_ns, int *err) {
  int dummy;
  if (!err)
    err = &dummy;
  *err = 0;
  if (it->head == it->n)
    return NULL;
  int64_t deadline = deadline_after(timeout_ns);
  bool drive_loop = it->loop && ak__loop_owned_by_caller(it->loop);
  pthread_mutex_lock(&it->mu);
  while (it->head == it->tail) {
    int64_t now = ak_now_ns();
    if (deadline != AK_FOREVER && now >= deadline) {
      pthread_mutex_unlock(&it->mu);
      *err = AK_EWAITTIMEOUT;
      return NULL;
    }
    if (drive_loop) {
      /* Callbacks of the inputs run on this thread, inside the loop. */
      pthread_mutex_unlock(&it->mu);
      int rc = ak__loop_iterate(it->loop, deadline, has_ready, it);
      pthread_mutex_lock(&it->mu);
      if (rc < 0) {
        pthread_mutex_unlock(&it->mu);
        *err = rc;
        return NULL;
      }
    } else if (deadline == AK_FOREVER) {
      pthread_cond_wait(&it->cv, &it->mu);
    } else {
      struct timespec ts = {.tv_sec = deadline / 1000000000, .tv_nsec = deadline % 1000000000};
      pthread_cond_timedwait(&it->cv, &it->mu, &ts);
    }
  }
  ak_future *f = it->order[it->head++];
  pthread_mutex_unlock(&it->mu);
  return f;
}

size_t ak_iter_remaining(const ak_iter *it) { return it->n - it->head; }

void ak_iter_free(ak_iter *it) {
  if (it)
    iter_unref(it);
}
