/* compute.c: cs.asynchron's "an incomplete Asynchron can be told to call a
 * function to compute its value": a promise that a waiter already holds is
 * handed a callable and a pool; it is RUNNING while the callable runs, and
 * the value reaches a waiter on another thread, get() and the notify
 * callback (which runs on the worker that settled it). Exits
 * non-zero if any of them saw something else. */
#include <asynckit.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>

static _Atomic int running_seen; /* the callable saw its promise RUNNING */

static int64_t fib(void *arg, ak_future *self) {
  atomic_store(&running_seen, ak_future_state(self) == AK_RUNNING);
  int64_t n = (int64_t)(intptr_t)arg, a = 0, b = 1;
  for (int64_t i = 0; i < n; i++) {
    int64_t next = a + b;
    a = b;
    b = next;
  }
  return a;
}

static _Atomic int64_t notified = -1;

static void notify(ak_future *f, void *arg) {
  (void)arg;
  atomic_store(&notified, ak_future_result(f));
}

static int64_t waited = -1;

static void *waiter(void *arg) {
  waited = ak_future_get(arg, 5000 * 1000000LL, NULL); /* blocks until computed */
  return NULL;
}

int main(void) {
  ak_pool *pool = ak_pool_new(2);
  ak_future *p = ak_future_new(NULL);  /* Asynchron(): incomplete */
  ak_future_on_settle(p, notify, NULL); /* notify when it completes */
  pthread_t t;
  if (pthread_create(&t, NULL, waiter, p) != 0)
    return 1;

  int rc = ak_pool_compute(pool, p, fib, (void *)50); /* told to compute fib(50) */
  int64_t v = ak_future_get(p, 5000 * 1000000LL, NULL); /* 12586269025 */
  int again = ak_pool_compute(pool, p, fib, (void *)10); /* AK_ESETTLED: once only */
  pthread_join(t, NULL);
  ak_pool_free(pool); /* joins the worker: notify, run there after the settle, is done */

  printf("fib(50) = %lld (waiter %lld, notify %lld); computed while RUNNING: %s\n",
         (long long)v, (long long)waited, (long long)atomic_load(&notified),
         atomic_load(&running_seen) ? "yes" : "no");
  printf("a second compute: %s\n", ak_err_name(again));
  int ok = rc == 0 && v == 12586269025LL && waited == v && atomic_load(&notified) == v &&
           atomic_load(&running_seen) && again == AK_ESETTLED;
  ak_future_release(p);
  return ok ? 0 : 1;
}
