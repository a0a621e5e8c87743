/* chain.c: do(a).chain(b) in C: b runs after a with a's result; the final
 * future carries b's result; a failure in a skips b and surfaces at the end. */
#include <asynckit.h>
#include <errno.h>
#include <stdio.h>

static int64_t fetch_count(void *arg, ak_future *self) {
  (void)self;
  return arg ? -EIO : 20; /* arg != NULL: pretend the fetch failed */
}

static int b_ran;

static int64_t double_it(ak_future *input, void *arg, ak_future *self) {
  (void)arg;
  (void)self;
  b_ran++;
  return 2 * ak_future_result(input);
}

int main(void) {
  ak_pool *pool = ak_pool_new(2);

  ak_future *a = ak_pool_submit(pool, fetch_count, NULL);
  ak_future *b = ak_then(a, double_it, NULL, pool); /* a.chain(double_it) */
  int64_t v = ak_future_get(b, AK_FOREVER, NULL);
  printf("chain: %lld\n", (long long)v);

  ak_future *bad = ak_pool_submit(pool, fetch_count, (void *)1);
  ak_future *skipped = ak_then(bad, double_it, NULL, pool);
  int64_t err = ak_future_get(skipped, AK_FOREVER, NULL);
  printf("failed chain: %s, step ran %d time(s) in all\n", ak_err_name((int)err), b_ran);

  int ok = v == 40 && err == -EIO && b_ran == 1;
  ak_future_release(a);
  ak_future_release(b);
  ak_future_release(bad);
  ak_future_release(skipped);
  ak_pool_free(pool);
  return ok ? 0 : 1;
}
