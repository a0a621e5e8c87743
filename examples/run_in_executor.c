/* run_in_executor.c: asyncio's loop.run_in_executor(None, fn, arg) in C: a
 * blocking function (a checksum) runs on the pool the loop uses when it was
 * given none (ak_loop_pool), and its result comes back on the loop's
 * thread, where a then-step uses it. Exits non-zero if the checksum ran on
 * the loop's thread, the step ran elsewhere, or the sum is wrong. */
#include <asynckit.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>

enum { N = 1000 };

typedef struct blob {
  int data[N];
  pthread_t loop_thread;
  bool sum_on_loop_thread;  /* where checksum ran */
  bool step_on_loop_thread; /* where show ran */
} blob;

static int64_t checksum(void *arg, ak_future *self) { /* blocking work */
  (void)self;
  blob *b = arg;
  b->sum_on_loop_thread = pthread_equal(pthread_self(), b->loop_thread);
  int64_t sum = 0;
  for (int i = 0; i < N; i++)
    sum += b->data[i];
  return sum;
}

static int64_t show(ak_future *sum, void *arg, ak_future *self) {
  (void)self;
  blob *b = arg;
  b->step_on_loop_thread = pthread_equal(pthread_self(), b->loop_thread);
  printf("checksum %lld, seen on the loop's thread: %s\n", (long long)ak_future_result(sum),
         b->step_on_loop_thread ? "yes" : "no");
  return ak_future_result(sum);
}

int main(void) {
  ak_loop *loop;
  int rc = ak_loop_new(&loop, NULL);
  if (rc < 0) {
    fprintf(stderr, "run_in_executor: %s\n", ak_strerror(rc));
    return rc == AK_EURINGDISABLED || rc == AK_EURINGBLOCKED || rc == AK_ENOURING ? 77 : 1;
  }
  static blob b;
  for (int i = 0; i < N; i++)
    b.data[i] = i + 1;
  b.loop_thread = pthread_self();

  ak_pool *pool = ak_loop_pool(loop);           /* the loop's default executor */
  ak_future *sum = ak_pool_submit(pool, checksum, &b); /* run_in_executor(None, ..) */
  ak_future *seen = ak_then(sum, show, &b, NULL);      /* back on the loop's thread */
  ak_future_wait(seen, 5000 * 1000000LL);              /* runs the loop meanwhile */

  int ok = ak_future_result(seen) == (int64_t)N * (N + 1) / 2 && !b.sum_on_loop_thread &&
           b.step_on_loop_thread;
  ak_future_release(sum);
  ak_future_release(seen);
  ak_loop_free(loop); /* the shared pool is not ours to free */
  return ok ? 0 : 1;
}
