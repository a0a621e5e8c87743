/* finally.c: a pipeline that closes its fd on every path (ak_finally), a
 * failure turned into a fallback (ak_catch), and durations written as
 * AK_MS. Each run reads a pipe with a 20 ms deadline: once with data
 * waiting, once with none (the read times out). The fd is closed both
 * times; the timeout becomes "0 bytes". Exits non-zero if an outcome is
 * not that, or an fd was left open. */
#include <asynckit.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>

/* The clean-up: an ak_close, adopted, so the outcome waits for it. */
static int64_t close_fd(ak_future *input, void *arg, ak_future *self) {
  (void)input;
  return ak_future_adopt(self, ak_close(ak_future_loop(self), *(int *)arg));
}

/* Runs only on failure: a timeout is "nothing came", anything else stays. */
static int64_t nothing_on_timeout(ak_future *input, void *arg, ak_future *self) {
  (void)arg;
  (void)self;
  int64_t err = ak_future_result(input);
  return err == -ETIMEDOUT ? 0 : err;
}

/* Reads what the pipe has within 20 ms; returns the count or an error and
 * whether the read end was closed. */
static int64_t read_pipe(ak_loop *loop, const char *put, bool *closed) {
  int fds[2];
  if (pipe(fds) != 0)
    return -errno;
  if (put && write(fds[1], put, 5) != 5)
    return -EIO;
  char buf[64];
  ak_future *r = ak_read(loop, fds[0], buf, sizeof(buf), -1);
  ak_future *bounded = ak_future_timeout(r, AK_MS(20));
  ak_future *closing = ak_finally(bounded, close_fd, &fds[0], NULL);
  ak_future *out = ak_catch(closing, nothing_on_timeout, NULL, NULL);
  int64_t n = ak_future_get(out, AK_SEC(5), NULL); /* runs the loop */
  *closed = fcntl(fds[0], F_GETFD) == -1 && errno == EBADF;
  int64_t before = ak_future_result(closing);
  printf("%s: read %lld (before the catch: %s)\n", put ? "data" : "none", (long long)n,
         before < 0 ? ak_err_name((int)before) : "ok");
  ak_future_release(out);
  ak_future_release(closing);
  ak_future_release(bounded);
  ak_future_release(r);
  close(fds[1]);
  return n;
}

int main(void) {
  ak_loop *loop;
  int rc = ak_loop_new(&loop, NULL);
  if (rc < 0) {
    fprintf(stderr, "finally: %s\n", ak_strerror(rc));
    return 1;
  }
  bool closed1 = false, closed2 = false;
  int64_t got = read_pipe(loop, "hello", &closed1);
  int64_t none = read_pipe(loop, NULL, &closed2);
  ak_loop_free(loop);
  return got == 5 && none == 0 && closed1 && closed2 ? 0 : 1;
}
