/* timer_thread.c: one process-wide thread that fires deadlines for futures
 * with no loop (ak_future_timeout on a pool future used from a plain
 * thread). Started on first use. Timers are kept in a list sorted by
 * deadline: loopless deadlines are few; loops use their own heap. */
#define _GNU_SOURCE
#include <pthread.h>
#include <time.h>

#include "combinators/internal.h"

typedef struct ak__tt_entry {
  struct ak__tt_entry *next;
  int64_t deadline;
  uint64_t id;
  void (*fn)(void *arg);
  void *arg;
} ak__tt_entry;

static pthread_mutex_t tt_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t tt_cv;
static ak__tt_entry *tt_list;
static uint64_t tt_next_id = 1;
static bool tt_started;

static void *tt_main(void *arg) {
  (void)arg;
  pthread_mutex_lock(&tt_mu);
  for (;;) {
    if (!tt_list) {
      pthread_cond_wait(&tt_cv, &tt_mu);
      continue;
    }
    int64_t now = ak_now_ns();
    if (tt_list->deadline > now) {
      struct timespec ts = {.tv_sec = tt_list->deadline / 1000000000,
                            .tv_nsec = tt_list->deadline % 1000000000};
      pthread_cond_timedwait(&tt_cv, &tt_mu, &ts);
      continue;
    }
    ak__tt_entry *e = tt_list;
    tt_list = e->next;
    pthread_mutex_unlock(&tt_mu);
    e->fn(e->arg);
    ak__free(e);
    pthread_mutex_lock(&tt_mu);
  }
  return NULL;
}

static bool tt_start_locked(void) {
  if (tt_started)
    return true;
  pthread_condattr_t attr;
  pthread_condattr_init(&attr);
  pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
  pthread_cond_init(&tt_cv, &attr);
  pthread_condattr_destroy(&attr);
  pthread_t thread;
  pthread_attr_t tattr;
  pthread_attr_init(&tattr);
  pthread_attr_setdetachstate(&tattr, PTHREAD_CREATE_DETACHED);
  tt_started = pthread_create(&thread, &tattr, tt_main, NULL) == 0;
  pthread_attr_destroy(&tattr);
  return tt_started;
}

uint64_t ak__tt_add(int64_t deadline_ns, void (*fn)(void *arg), void *arg) {
  ak__tt_entry *e = ak__malloc(sizeof(*e));
  if (!e)
    return 0;
  e->deadline = deadline_ns;
  e->fn = fn;
  e->arg = arg;
  pthread_mutex_lock(&tt_mu);
  if (!tt_start_locked()) {
    pthread_mutex_unlock(&tt_mu);
    ak__free(e);
    return 0;
  }
  e->id = tt_next_id++;
  ak__tt_entry **link = &tt_list;
  while (*link && (*link)->deadline <= deadline_ns)
    link = &(*link)->next;
  e->next = *link;
  *link = e;
  uint64_t id = e->id;
  pthread_cond_signal(&tt_cv);
  pthread_mutex_unlock(&tt_mu);
  return id;
}

bool ak__tt_cancel(uint64_t id) {
  bool removed = false;
  pthread_mutex_lock(&tt_mu);
  for (ak__tt_entry **link = &tt_list; *link; link = &(*link)->next) {
    if ((*link)->id == id) {
      ak__tt_entry *e = *link;
      *link = e->next;
      ak__free(e);
      removed = true;
      break;
    }
  }
  pthread_mutex_unlock(&tt_mu);
  return removed;
}
