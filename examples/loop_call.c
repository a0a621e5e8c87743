/* loop_call.c: asyncio's run_coroutine_threadsafe in C: a second thread asks
 * the loop to start a timer (ring work may be made only on the loop's own
 * thread) and waits on the future it gets back, while the loop's thread
 * runs the loop. Exits non-zero if the work did not run on the loop's
 * thread, or its answer came back early or different. */
#include <asynckit.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>

static const int64_t ms = 1000000;

static int64_t answer(ak_future *sleep, void *arg, ak_future *self) {
  (void)sleep;
  (void)arg;
  (void)self;
  return 42;
}

/* Runs on the loop's thread: a 20 ms sleep, then the answer. */
static int64_t sleep_then_answer(void *arg, ak_future *self) {
  ak_loop *loop = arg;
  if (!ak_loop_is_owner(loop))
    return -EPERM; /* would mean it ran on the caller's thread */
  ak_future *sleep = ak_sleep(loop, 20 * ms);
  ak_future *then = ak_then(sleep, answer, NULL, NULL);
  ak_future_release(sleep);
  return ak_future_adopt(self, then); /* self settles as the answer does */
}

typedef struct job {
  ak_loop *loop;
  int64_t result;
  int64_t took;
} job;

static void unhold(void *loop) { ak_loop_unhold(loop); }

static void *other_thread(void *arg) {
  job *j = arg;
  ak_loop *loop = j->loop;
  int64_t t0 = ak_now_ns();
  ak_future *f = ak_loop_call(loop, sleep_then_answer, loop); /* run_coroutine_threadsafe */
  int64_t v = ak_future_get(f, 5000 * ms, NULL);              /* f.result(timeout=5) */
  j->took = ak_now_ns() - t0;
  j->result = v;
  ak_future_release(f);
  ak_loop_post(loop, unhold, loop); /* done: the loop may go idle */
  return NULL;
}

int main(void) {
  ak_loop *loop;
  int rc = ak_loop_new(&loop, NULL);
  if (rc < 0) {
    fprintf(stderr, "loop_call: %s\n", ak_strerror(rc));
    return rc == AK_EURINGDISABLED || rc == AK_EURINGBLOCKED || rc == AK_ENOURING ? 77 : 1;
  }
  job j = {.loop = loop};
  ak_loop_hold(loop); /* work will come from the other thread */
  pthread_t t;
  if (pthread_create(&t, NULL, other_thread, &j) != 0)
    return 1;
  int left = ak_loop_run(loop, AK_RUN_DEFAULT); /* until unheld and idle */
  pthread_join(t, NULL);
  printf("the other thread got %lld after %lld ms\n", (long long)j.result,
         (long long)(j.took / ms));
  int ok = left == 0 && j.result == 42 && j.took >= 20 * ms;
  ak_loop_free(loop);
  return ok ? 0 : 1;
}
