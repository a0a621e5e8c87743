/* bounded_map.c: "run this over N items, at most K in flight" (ak_map):
 * 40 pool tasks, never more than 4 at once on a pool of 8 threads, one
 * join over all of them, each item's result read by its index. Exits
 * non-zero if more than 4 ran at once or a result is wrong. */
#include <asynckit.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <time.h>

static ak_pool *pool;
static atomic_int running, most; /* tasks running now, and the most at once */

static int64_t square(void *arg, ak_future *self) {
  (void)self;
  int64_t i = (int64_t)(intptr_t)arg;
  int now = atomic_fetch_add(&running, 1) + 1;
  int seen = atomic_load(&most);
  while (now > seen && !atomic_compare_exchange_weak(&most, &seen, now))
    ;
  struct timespec pause = {0, AK_MS(2)}; /* some work */
  nanosleep(&pause, NULL);
  atomic_fetch_sub(&running, 1);
  return i * i;
}

/* Starts item i; the map takes the future. */
static ak_future *start(void *arg, size_t i) {
  (void)arg;
  return ak_pool_submit(pool, square, (void *)(intptr_t)i);
}

int main(void) {
  pool = ak_pool_new(8);
  ak_future *all = ak_map(40, 4, start, NULL, AK_JOIN_FAIL_FAST); /* at most 4 in flight */
  int64_t ok = ak_future_get(all, AK_SEC(10), NULL);              /* 40: all succeeded */
  int64_t last = ak_future_result(ak_join_input(all, 39));        /* 39 * 39 */
  printf("%lld of %zu items done, at most %d at once; item 39 gave %lld\n", (long long)ok,
         ak_join_count(all), atomic_load(&most), (long long)last);
  int good = ok == 40 && atomic_load(&most) <= 4 && last == 39 * 39;
  ak_future_release(all);
  ak_pool_free(pool);
  return good ? 0 : 1;
}
