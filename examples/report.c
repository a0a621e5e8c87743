/* report.c: cs.asynchron's report() in C: iterate futures in the order
 * they complete, here sleeps of different lengths on a loop. */
#include <asynckit.h>
#include <stdio.h>

int main(void) {
  ak_loop *loop;
  int rc = ak_loop_new(&loop, NULL);
  if (rc < 0) {
    fprintf(stderr, "report: %s\n", ak_strerror(rc));
    return rc == AK_EURINGDISABLED || rc == AK_EURINGBLOCKED || rc == AK_ENOURING ? 77 : 1;
  }
  const int64_t ms = 1000000;
  int64_t delays[4] = {40 * ms, 10 * ms, 30 * ms, 20 * ms};
  ak_future *fs[4];
  for (int i = 0; i < 4; i++)
    fs[i] = ak_sleep(loop, delays[i]);

  ak_iter *it = ak_iter_new(fs, 4);
  ak_future *f;
  int expect[4] = {1, 3, 2, 0}, k = 0, ok = 1;
  while ((f = ak_iter_next(it, AK_FOREVER, NULL)) != NULL) { /* runs the loop */
    int which = 0;
    while (fs[which] != f)
      which++;
    printf("sleep %d (%lld ms) finished\n", which, (long long)(delays[which] / ms));
    ok = ok && which == expect[k++];
  }
  ak_iter_free(it);
  for (int i = 0; i < 4; i++)
    ak_future_release(fs[i]);
  ak_loop_free(loop);
  return ok && k == 4 ? 0 : 1;
}
