/* dataflow.c: futures as arguments (AsyncKit): work given two unset futures
 * runs only after both are set, here from another thread; it fails without
 * running when one of them fails. */
#include <asynckit.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>

typedef struct {
  ak_future *x, *y;
} inputs;

static int64_t add(void *arg, ak_future *self) {
  (void)self;
  inputs *in = arg;
  return ak_future_result(in->x) + ak_future_result(in->y);
}

static void *setter(void *arg) {
  inputs *in = arg;
  ak_future_set(in->x, 2, NULL, NULL);
  ak_future_set(in->y, 3, NULL, NULL);
  return NULL;
}

int main(void) {
  ak_pool *pool = ak_pool_new(2);
  inputs in = {ak_future_new(NULL), ak_future_new(NULL)};
  ak_future *deps[2] = {in.x, in.y};
  ak_future *sum = ak_pool_submit_after(pool, add, &in, deps, 2);
  printf("before: %s\n", ak_future_is_set(sum) ? "set" : "waiting for x and y");

  pthread_t t;
  pthread_create(&t, NULL, setter, &in);
  int64_t v = ak_future_get(sum, AK_FOREVER, NULL);
  pthread_join(t, NULL);
  printf("x + y = %lld\n", (long long)v);

  inputs bad = {ak_future_new(NULL), ak_future_new(NULL)};
  ak_future *bad_deps[2] = {bad.x, bad.y};
  ak_future *never = ak_pool_submit_after(pool, add, &bad, bad_deps, 2);
  ak_future_fail(bad.x, -ENOENT, "x could not be read");
  int64_t err = ak_future_get(never, AK_FOREVER, NULL);
  printf("with x failed: %s\n", ak_err_name((int)err));

  int ok = v == 5 && err == -ENOENT;
  /* y is still pending and the work's wait on it still holds a reference:
   * a promise nobody settles is never freed. It is ours to end. */
  ak_future_cancel(bad.y);
  ak_future *all[] = {in.x, in.y, sum, bad.x, bad.y, never};
  for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
    ak_future_release(all[i]);
  ak_pool_free(pool);
  return ok ? 0 : 1;
}
