/* pool_do.c: AsyncKit's Pool and pool.do in C: a pool of 4 workers, do()
 * gives a future, get() waits forever or with a timeout, an error inside the
 * work comes back from get(), is_error says so. Exits non-zero if anything
 * differs from what the comments promise. */
#include <asynckit.h>
#include <errno.h>
#include <stdio.h>
#include <time.h>

static int64_t square(void *arg, ak_future *self) {
  (void)self;
  int64_t x = (int64_t)(intptr_t)arg;
  return x * x;
}

static int64_t slow(void *arg, ak_future *self) {
  (void)self;
  struct timespec ts = {0, 200 * 1000 * 1000};
  nanosleep(&ts, NULL);
  return (int64_t)(intptr_t)arg;
}

static int64_t broken(void *arg, ak_future *self) {
  (void)arg;
  ak_future_set_detail(self, "the input file was empty");
  return -EINVAL; /* a negative result is the work's error */
}

int main(void) {
  ak_pool *pool = ak_pool_new(4);                        /* Pool(4) */
  ak_future *f = ak_pool_submit(pool, square, (void *)7); /* pool.do(square, 7) */
  int64_t v = ak_future_get(f, AK_FOREVER, NULL);         /* f.get() */
  printf("square(7) = %lld\n", (long long)v);

  ak_future *s = ak_pool_submit(pool, slow, (void *)1);
  int64_t early = ak_future_get(s, 1000000, NULL); /* f.get(timeout=1ms): not yet */
  printf("slow after 1 ms: %s\n", early == AK_EWAITTIMEOUT ? "not yet" : "done?");
  int64_t late = ak_future_get(s, AK_FOREVER, NULL);

  ak_future *e = ak_pool_submit(pool, broken, NULL);
  int64_t err = ak_future_get(e, AK_FOREVER, NULL);
  printf("broken: is_error=%d %s (%s)\n", ak_future_is_error(e), ak_err_name((int)err),
         ak_future_detail(e));

  int ok = v == 49 && early == AK_EWAITTIMEOUT && late == 1 && ak_future_is_error(e) &&
           err == -EINVAL;
  ak_future_release(f);
  ak_future_release(s);
  ak_future_release(e);
  ak_pool_stop(pool, true); /* pool.stop(True): blocks until stopped */
  ak_pool_free(pool);
  return ok ? 0 : 1;
}
