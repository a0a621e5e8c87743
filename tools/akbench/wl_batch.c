/* wl_batch.c: the `batch` workload: 32-op batches, asynckit's ak_batch_submit
 * + ak_future_wait on the loop's thread against a raw liburing loop (32
 * get_sqe + prep, one submit_and_wait(32), a CQE walk) with the same ring
 * flags (SUBMIT_ALL | SINGLE_ISSUER | DEFER_TASKRUN) in the same process,
 * alternated round by round. Two cases: NOPs, and 4 KiB READ_FIXED of a hot
 * page-cache file through a registered file and buffer. Reports ops/s and
 * CPU ns per op (this process's user + system time); the ratio is asynckit's
 * ops/s over raw liburing's (the median of the rounds' ratios).
 * --variant count-nop|count-read --iterations N: N batches by asynckit
 * alone, nothing else (rawcount-nop|rawcount-read: the raw loop's), for
 * callgrind's user-space instructions per op by the difference of two N.
 */
#define _GNU_SOURCE
#include "akb_fs.h"
#include "akbench.h"

#include <asynckit.h>
#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

enum { N = 32, BLOCK = 4096, FILE_MIB = 64, ROUNDS = 9 };

typedef struct bench {
  ak_loop *loop;
  ak_batch *b;
  struct io_uring ring;
  int fd;
  char *buf; /* N blocks for each side, registered */
  uint64_t blocks;
  uint64_t rng;
} bench;

static uint64_t next_rand(bench *x) {
  x->rng ^= x->rng << 13;
  x->rng ^= x->rng >> 7;
  x->rng ^= x->rng << 17;
  return x->rng;
}

static int ak_round(bench *x, bool reads) {
  int64_t results[N];
  ak_batch_reset(x->b);
  ak_rw_opts o = AK_RW_OPTS_INIT;
  o.file_index = 0;
  o.buf_index = 0;
  for (int i = 0; i < N; i++) {
    if (reads)
      ak_batch_read(x->b, x->fd, x->buf + (size_t)i * BLOCK, BLOCK,
                    (int64_t)(next_rand(x) % x->blocks) * BLOCK, &o);
    else
      ak_batch_nop(x->b);
  }
  ak_future *f = ak_batch_submit(x->b, results);
  ak_future_wait(f, AK_FOREVER);
  int64_t ok = ak_future_result(f);
  ak_future_release(f);
  return ok == N ? 0 : -EIO;
}

static int raw_round(bench *x, bool reads) {
  for (int i = 0; i < N; i++) {
    struct io_uring_sqe *sqe = io_uring_get_sqe(&x->ring);
    if (reads) {
      io_uring_prep_read_fixed(sqe, 0, x->buf + (size_t)(N + i) * BLOCK, BLOCK,
                               (next_rand(x) % x->blocks) * BLOCK, 0);
      sqe->flags |= IOSQE_FIXED_FILE;
    } else {
      io_uring_prep_nop(sqe);
    }
    sqe->user_data = (uint64_t)i;
  }
  io_uring_submit_and_wait(&x->ring, N);
  unsigned seen = 0, head;
  struct io_uring_cqe *cqe;
  int bad = 0;
  io_uring_for_each_cqe(&x->ring, head, cqe) {
    bad |= reads ? cqe->res != BLOCK : cqe->res != 0;
    seen++;
  }
  io_uring_cq_advance(&x->ring, seen);
  return seen == N && !bad ? 0 : -EIO;
}

static int bench_open(bench *x) {
  int rc = akb_fs_open_hot("latency", FILE_MIB);
  if (rc < 0)
    return rc;
  x->fd = rc;
  x->blocks = ((uint64_t)FILE_MIB << 20) / BLOCK;
  x->buf = aligned_alloc(4096, 2 * N * BLOCK);
  x->rng = 88172645463325252ULL;
  if ((rc = ak_loop_new(&x->loop, NULL)) < 0 || (rc = ak_batch_new(x->loop, N, &x->b)) < 0)
    return rc;
  struct iovec iov = {x->buf, 2 * N * BLOCK};
  if ((rc = ak_register_files(x->loop, &x->fd, 1)) < 0 ||
      (rc = ak_register_buffers(x->loop, &iov, 1)) < 0)
    return rc;
  struct io_uring_params p;
  memset(&p, 0, sizeof(p));
  p.flags = IORING_SETUP_SUBMIT_ALL | IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN;
  if ((rc = io_uring_queue_init_params(256, &x->ring, &p)) < 0)
    return rc;
  if ((rc = io_uring_register_files(&x->ring, &x->fd, 1)) < 0 ||
      (rc = io_uring_register_buffers(&x->ring, &iov, 1)) < 0)
    return rc;
  return 0;
}

static void bench_close(bench *x) {
  ak_batch_free(x->b);
  io_uring_queue_exit(&x->ring);
  ak_loop_free(x->loop);
  close(x->fd);
  free(x->buf);
}

/* One timed side: batches for about `batches` rounds; ops/s and CPU ns/op. */
static int timed(bench *x, bool ak, bool reads, uint64_t batches, double *ops_s, double *cpu_ns) {
  akb_usage u0, u1;
  akb_usage_now(&u0);
  for (uint64_t i = 0; i < batches; i++) {
    int rc = ak ? ak_round(x, reads) : raw_round(x, reads);
    if (rc < 0)
      return rc;
  }
  akb_usage_now(&u1);
  akb_span s = akb_span_between(&u0, &u1);
  double ops = (double)(batches * N);
  *ops_s = ops / s.wall_s;
  *cpu_ns = (s.user_s + s.sys_s) * 1e9 / ops;
  return 0;
}

static void run_case(bench *x, bool reads, uint64_t batches, akb_result *res) {
  double ak_ops[ROUNDS], raw_ops[ROUNDS], ak_cpu[ROUNDS], raw_cpu[ROUNDS], ratio[ROUNDS];
  for (uint64_t i = 0; i < batches / 10; i++) { /* warm-up */
    ak_round(x, reads);
    raw_round(x, reads);
  }
  for (int r = 0; r < ROUNDS; r++) {
    bool ak_first = r % 2 == 0;
    for (int side = 0; side < 2; side++) {
      bool ak = (side == 0) == ak_first;
      int rc = timed(x, ak, reads, batches, ak ? &ak_ops[r] : &raw_ops[r],
                     ak ? &ak_cpu[r] : &raw_cpu[r]);
      if (rc < 0) {
        akb_fail(res, "%s batch failed", reads ? "read" : "nop");
        return;
      }
    }
    ratio[r] = ak_ops[r] / raw_ops[r];
  }
  const char *what = reads ? "reads" : "nops";
  char name[32];
  snprintf(name, sizeof(name), "asynckit %s", what);
  akb_row *ra = akb_row_add(res, name);
  akb_fig_add(ra, "ops/s", "", akb_median(ak_ops, ROUNDS), true);
  akb_fig_add(ra, "cpu/op", "ns", akb_median(ak_cpu, ROUNDS), false);
  snprintf(name, sizeof(name), "raw liburing %s", what);
  akb_row *rr = akb_row_add(res, name);
  akb_fig_add(rr, "ops/s", "", akb_median(raw_ops, ROUNDS), true);
  akb_fig_add(rr, "cpu/op", "ns", akb_median(raw_cpu, ROUNDS), false);
  double med = akb_median(ratio, ROUNDS);
  akb_note(res, "32-op batches of %s: asynckit / raw liburing ops/s, median of %d alternated rounds: %.3fx",
           what, ROUNDS, med);
  if (!res->has_ratio)
    akb_ratio(res, med, "32-op batch of %s: asynckit ops/s over raw liburing's", what);
}

/* --variant count-* / rawcount-*: batches of one side alone. */
static void run_count(bench *x, bool raw, bool reads, uint64_t batches, akb_result *res) {
  for (uint64_t i = 0; i < batches; i++)
    if ((raw ? raw_round(x, reads) : ak_round(x, reads)) < 0) {
      akb_fail(res, "%s batch failed", reads ? "read" : "nop");
      return;
    }
  akb_param(res, "ops", "", (double)(batches * N), true);
}

int akb_wl_batch(const akb_opts *opts, akb_result *res) {
  akb_title(res, "32-op batches (NOPs, 4 KiB READ_FIXED of a hot file): asynckit ak_batch vs raw "
                 "liburing, same ring flags");
  /* Both cases compare ring batches (READ_FIXED on a registered buffer) with
   * raw liburing: nothing to compare on epoll, whose batches test_batch
   * checks for results. */
  if (akb_backend_is_epoll()) {
    akb_note(res, "skipped on epoll (ring batches against raw liburing)");
    return 0;
  }
  bench x;
  memset(&x, 0, sizeof(x));
  int rc = bench_open(&x);
  if (rc < 0) {
    akb_fail(res, "set-up: %s", strerror(-rc));
    return 0;
  }
  uint64_t batches = akb_size(opts, 20000, 2000);
  const char *v = opts->variant;
  if (v && strcmp(v, "both") == 0)
    v = NULL;
  if (v && (strncmp(v, "count-", 6) == 0 || strncmp(v, "rawcount-", 9) == 0)) {
    bool raw = v[0] == 'r';
    run_count(&x, raw, strcmp(v + (raw ? 9 : 6), "read") == 0, batches, res);
    bench_close(&x);
    return 0;
  }
  if (!v || strcmp(v, "nop") == 0)
    run_case(&x, false, batches, res);
  if (!v || strcmp(v, "read") == 0)
    run_case(&x, true, batches / 4, res);
  bench_close(&x);
  return 0;
}
