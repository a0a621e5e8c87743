/* wl_latency.c: the `latency` workload: one operation at a time, asynckit
 * against a raw liburing loop in the same process with the same ring flags
 * (SUBMIT_ALL | SINGLE_ISSUER | DEFER_TASKRUN, a registered file and a
 * registered buffer), alternated in blocks so that both see the same
 * machine. Owns two cases (--variant, default both):
 *   read:   QD1 4 KiB READ_FIXED of a hot page-cache file at random offsets:
 *           p50, p99, p99.9 per op (an ak_read_opt + ak_future_wait on the
 *           loop's thread, against get_sqe + submit_and_wait + cqe_seen);
 *   commit: a 4 KiB write then fdatasync on a file on this machine's disk:
 *           an asynckit chain (asynckit/batch.h), two awaited futures, and
 *           raw linked SQEs: p50, p99 and context switches per commit.
 * --variant count --iterations N: N QD1 reads by asynckit alone, nothing
 * else; rawcount: the raw liburing loop's (for callgrind: user-space
 * instructions per op by the difference of two N).
 */
#define _GNU_SOURCE
#include "akb_fs.h"
#include "akbench.h"

#include <asynckit.h>
#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

enum { BLOCK = 4096, FILE_MIB = 64, ALT = 1000 /* ops per alternation block */ };

static int64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static uint64_t rng = 88172645463325252ULL;
static uint64_t next_rand(void) {
  rng ^= rng << 13;
  rng ^= rng >> 7;
  rng ^= rng << 17;
  return rng;
}

static int cmp_i64(const void *a, const void *b) {
  int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
  return x < y ? -1 : x > y;
}

static double pct(int64_t *v, size_t n, double p) {
  size_t i = (size_t)(p * (double)(n - 1));
  return (double)v[i] / 1000.0; /* us */
}

static long ctx_switches(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_nvcsw + ru.ru_nivcsw;
}

/* The raw ring: the flags asynckit's loop takes on this kernel. */
static int raw_ring(struct io_uring *ring) {
  struct io_uring_params p;
  memset(&p, 0, sizeof(p));
  p.flags = IORING_SETUP_SUBMIT_ALL | IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN;
  return io_uring_queue_init_params(256, ring, &p);
}

/* ---- QD1 reads ------------------------------------------------------------ */

typedef struct reader {
  ak_loop *loop;
  struct io_uring ring;
  int fd;
  char *buf;        /* registered with both */
  uint64_t blocks;
} reader;

static int ak_read_once(reader *r, int64_t off) {
  ak_rw_opts o = AK_RW_OPTS_INIT;
  o.file_index = 0;
  o.buf_index = 0;
  ak_future *f = ak_read_opt(r->loop, r->fd, r->buf, BLOCK, off, &o);
  if (!f)
    return -ENOMEM;
  ak_future_wait(f, AK_FOREVER);
  int64_t res = ak_future_result(f);
  ak_future_release(f);
  return res == BLOCK ? 0 : (res < 0 ? (int)res : -EIO);
}

static int raw_read_once(reader *r, int64_t off) {
  struct io_uring_sqe *sqe = io_uring_get_sqe(&r->ring);
  io_uring_prep_read_fixed(sqe, 0, r->buf + BLOCK, BLOCK, (uint64_t)off, 0);
  sqe->flags |= IOSQE_FIXED_FILE;
  io_uring_submit_and_wait(&r->ring, 1);
  struct io_uring_cqe *cqe;
  if (io_uring_peek_cqe(&r->ring, &cqe) != 0)
    return -EIO;
  int res = cqe->res;
  io_uring_cqe_seen(&r->ring, cqe);
  return res == BLOCK ? 0 : (res < 0 ? res : -EIO);
}

static int reader_open(reader *r, const akb_opts *opts, akb_result *res) {
  int rc = akb_fs_open_hot("latency", FILE_MIB);
  if (rc < 0)
    return rc;
  r->fd = rc;
  r->blocks = ((uint64_t)FILE_MIB << 20) / BLOCK;
  r->buf = aligned_alloc(4096, 2 * BLOCK);
  if ((rc = ak_loop_new(&r->loop, NULL)) < 0)
    return rc;
  struct iovec iov = {r->buf, 2 * BLOCK};
  if ((rc = ak_register_files(r->loop, &r->fd, 1)) < 0 ||
      (rc = ak_register_buffers(r->loop, &iov, 1)) < 0)
    return rc;
  if ((rc = raw_ring(&r->ring)) < 0)
    return rc;
  if ((rc = io_uring_register_files(&r->ring, &r->fd, 1)) < 0 ||
      (rc = io_uring_register_buffers(&r->ring, &iov, 1)) < 0)
    return rc;
  (void)opts;
  (void)res;
  return 0;
}

static void reader_close(reader *r) {
  io_uring_queue_exit(&r->ring);
  ak_loop_free(r->loop);
  close(r->fd);
  free(r->buf);
}

static void case_read(const akb_opts *opts, akb_result *res) {
  reader r;
  memset(&r, 0, sizeof(r));
  int rc = reader_open(&r, opts, res);
  if (rc < 0) {
    akb_fail(res, "read set-up: %s", strerror(-rc));
    return;
  }
  uint64_t n = akb_size(opts, 200000, 20000);
  n = (n + ALT - 1) / ALT * ALT;
  int64_t *ak = malloc(n * sizeof(int64_t)), *raw = malloc(n * sizeof(int64_t));
  /* Warm-up: both paths, caches and free lists filled. */
  for (int i = 0; i < 2000; i++) {
    ak_read_once(&r, (int64_t)(next_rand() % r.blocks) * BLOCK);
    raw_read_once(&r, (int64_t)(next_rand() % r.blocks) * BLOCK);
  }
  size_t ia = 0, ir = 0;
  for (uint64_t blk = 0; blk < n / ALT; blk++) {
    for (int side = 0; side < 2; side++) {
      bool ak_side = (side == 0) == (blk % 2 == 0);
      for (int i = 0; i < ALT; i++) {
        int64_t off = (int64_t)(next_rand() % r.blocks) * BLOCK;
        int64_t t0 = now_ns();
        rc = ak_side ? ak_read_once(&r, off) : raw_read_once(&r, off);
        int64_t t = now_ns() - t0;
        if (rc < 0) {
          akb_fail(res, "read failed: %s", strerror(-rc));
          goto out;
        }
        if (ak_side)
          ak[ia++] = t;
        else
          raw[ir++] = t;
      }
    }
  }
  qsort(ak, ia, sizeof(int64_t), cmp_i64);
  qsort(raw, ir, sizeof(int64_t), cmp_i64);
  akb_row *ra = akb_row_add(res, "asynckit read");
  akb_fig_add(ra, "p50", "us", pct(ak, ia, 0.5), false);
  akb_fig_add(ra, "p99", "us", pct(ak, ia, 0.99), false);
  akb_fig_add(ra, "p99.9", "us", pct(ak, ia, 0.999), false);
  akb_row *rr = akb_row_add(res, "raw liburing read");
  akb_fig_add(rr, "p50", "us", pct(raw, ir, 0.5), false);
  akb_fig_add(rr, "p99", "us", pct(raw, ir, 0.99), false);
  akb_fig_add(rr, "p99.9", "us", pct(raw, ir, 0.999), false);
  akb_param(res, "reads_each", "", (double)ia, true);
  akb_note(res, "QD1 read, asynckit / raw: p50 %.3fx, p99 %.3fx, p99.9 %.3fx (lower is better)",
           pct(ak, ia, 0.5) / pct(raw, ir, 0.5), pct(ak, ia, 0.99) / pct(raw, ir, 0.99),
           pct(ak, ia, 0.999) / pct(raw, ir, 0.999));
  akb_ratio(res, pct(raw, ir, 0.5) / pct(ak, ia, 0.5), "QD1 read p50: raw liburing over asynckit");
out:
  free(ak);
  free(raw);
  reader_close(&r);
}

/* ---- write + fdatasync ----------------------------------------------------- */

typedef struct committer {
  ak_loop *loop;
  struct io_uring ring;
  int fd;
  char *buf;
  ak_batch *chain;
} committer;

enum { COMMIT_AK_CHAIN, COMMIT_AK_PAIR, COMMIT_RAW, COMMIT_WAYS };
static const char *const commit_names[COMMIT_WAYS] = {"asynckit chain", "asynckit 2 futures",
                                                      "raw linked SQEs"};

static int commit_once(committer *c, int way, int64_t off) {
  if (way == COMMIT_AK_CHAIN) {
    int64_t results[2];
    ak_batch_reset(c->chain);
    ak_batch_write(c->chain, c->fd, c->buf, BLOCK, off, NULL);
    ak_batch_fsync(c->chain, c->fd, 1);
    ak_future *f = ak_chain_submit(c->chain, results, -1);
    ak_future_wait(f, AK_FOREVER);
    int64_t v = ak_future_result(f);
    ak_future_release(f);
    return v == 2 ? 0 : -EIO;
  }
  if (way == COMMIT_AK_PAIR) {
    ak_future *w = ak_write(c->loop, c->fd, c->buf, BLOCK, off);
    ak_future_wait(w, AK_FOREVER);
    int64_t wr = ak_future_result(w);
    ak_future_release(w);
    if (wr != BLOCK)
      return -EIO;
    ak_future *s = ak_fdatasync(c->loop, c->fd);
    ak_future_wait(s, AK_FOREVER);
    int64_t sr = ak_future_result(s);
    ak_future_release(s);
    return sr == 0 ? 0 : -EIO;
  }
  struct io_uring_sqe *sqe = io_uring_get_sqe(&c->ring);
  io_uring_prep_write(sqe, c->fd, c->buf, BLOCK, (uint64_t)off);
  sqe->flags |= IOSQE_IO_LINK | IOSQE_CQE_SKIP_SUCCESS;
  sqe = io_uring_get_sqe(&c->ring);
  io_uring_prep_fsync(sqe, c->fd, IORING_FSYNC_DATASYNC);
  io_uring_submit_and_wait(&c->ring, 1);
  struct io_uring_cqe *cqe;
  if (io_uring_peek_cqe(&c->ring, &cqe) != 0)
    return -EIO;
  int r = cqe->res;
  io_uring_cqe_seen(&c->ring, cqe);
  return r == 0 ? 0 : -EIO;
}

static void case_commit(const akb_opts *opts, akb_result *res) {
  committer c;
  memset(&c, 0, sizeof(c));
  const char *dir = akb_fs_dir();
  char path[4096];
  snprintf(path, sizeof(path), "%s/latency-commit.dat", dir ? dir : "/var/tmp");
  c.fd = open(path, O_CREAT | O_TRUNC | O_RDWR | O_CLOEXEC, 0600);
  c.buf = aligned_alloc(4096, BLOCK);
  memset(c.buf, 'w', BLOCK);
  if (c.fd < 0 || ak_loop_new(&c.loop, NULL) < 0 || raw_ring(&c.ring) < 0 ||
      ak_batch_new(c.loop, 2, &c.chain) < 0) {
    akb_fail(res, "commit set-up failed");
    return;
  }
  uint64_t n = akb_size(opts, 3000, 300);
  enum { CBLK = 100 };
  n = (n + CBLK - 1) / CBLK * CBLK;
  int64_t *lat[COMMIT_WAYS];
  size_t cnt[COMMIT_WAYS] = {0};
  long csw[COMMIT_WAYS] = {0};
  for (int w = 0; w < COMMIT_WAYS; w++)
    lat[w] = malloc(n * sizeof(int64_t));
  for (uint64_t blk = 0; blk < n / CBLK; blk++) {
    for (int k = 0; k < COMMIT_WAYS; k++) {
      int way = (int)((blk + (uint64_t)k) % COMMIT_WAYS);
      long cs0 = ctx_switches();
      for (int i = 0; i < CBLK; i++) {
        int64_t off = (int64_t)((blk * CBLK + (uint64_t)i) % 256) * BLOCK;
        int64_t t0 = now_ns();
        if (commit_once(&c, way, off) < 0) {
          akb_fail(res, "%s: commit failed", commit_names[way]);
          goto out;
        }
        lat[way][cnt[way]++] = now_ns() - t0;
      }
      csw[way] += ctx_switches() - cs0;
    }
  }
  double p50[COMMIT_WAYS];
  for (int w = 0; w < COMMIT_WAYS; w++) {
    qsort(lat[w], cnt[w], sizeof(int64_t), cmp_i64);
    akb_row *row = akb_row_add(res, commit_names[w]);
    p50[w] = pct(lat[w], cnt[w], 0.5);
    akb_fig_add(row, "p50", "us", p50[w], false);
    akb_fig_add(row, "p99", "us", pct(lat[w], cnt[w], 0.99), false);
    akb_fig_add(row, "csw/commit", "", (double)csw[w] / (double)cnt[w], false);
  }
  akb_note(res, "write+fdatasync p50, asynckit chain / raw linked SQEs: %.3fx; two futures / raw: %.3fx",
           p50[COMMIT_AK_CHAIN] / p50[COMMIT_RAW], p50[COMMIT_AK_PAIR] / p50[COMMIT_RAW]);
  if (!res->has_ratio)
    akb_ratio(res, p50[COMMIT_RAW] / p50[COMMIT_AK_CHAIN], "commit p50: raw over asynckit chain");
out:
  for (int w = 0; w < COMMIT_WAYS; w++)
    free(lat[w]);
  ak_batch_free(c.chain);
  io_uring_queue_exit(&c.ring);
  ak_loop_free(c.loop);
  close(c.fd);
  unlink(path);
  free(c.buf);
}

/* --variant count: N asynckit reads, nothing else (rawcount: N raw
 * liburing reads), for callgrind's user-space instructions per op. */
static void case_count(const akb_opts *opts, akb_result *res, bool raw) {
  reader r;
  memset(&r, 0, sizeof(r));
  if (reader_open(&r, opts, res) < 0) {
    akb_fail(res, "read set-up failed");
    return;
  }
  uint64_t n = akb_size(opts, 100000, 10000);
  for (uint64_t i = 0; i < n; i++)
    if ((raw ? raw_read_once(&r, (int64_t)(next_rand() % r.blocks) * BLOCK)
             : ak_read_once(&r, (int64_t)(next_rand() % r.blocks) * BLOCK)) < 0) {
      akb_fail(res, "read failed");
      break;
    }
  akb_param(res, "reads", "", (double)n, true);
  reader_close(&r);
}

int akb_wl_latency(const akb_opts *opts, akb_result *res) {
  akb_title(res, "one op at a time: QD1 4 KiB reads, write+fdatasync commits: asynckit vs raw "
                 "liburing, same ring flags, registered file and buffer");
  const char *v = opts->variant;
  if (v && strcmp(v, "both") == 0)
    v = NULL;
  /* The read cases use a registered file and buffer, which are io_uring's:
   * on epoll they are skipped with a note (as randread's fixed cases are);
   * the commit case runs on either backend. */
  bool epoll = akb_backend_is_epoll();
  if (v && (strcmp(v, "count") == 0 || strcmp(v, "rawcount") == 0)) {
    if (epoll)
      akb_note(res, "%s: skipped on epoll (registered files and buffers are io_uring's)", v);
    else
      case_count(opts, res, strcmp(v, "rawcount") == 0);
    return 0;
  }
  if ((!v || strcmp(v, "read") == 0) && epoll)
    akb_note(res, "read: skipped on epoll (registered files and buffers are io_uring's)");
  else if (!v || strcmp(v, "read") == 0)
    case_read(opts, res);
  if (!v || strcmp(v, "commit") == 0)
    case_commit(opts, res);
  if (v && strcmp(v, "read") != 0 && strcmp(v, "commit") != 0)
    akb_fail(res, "no case '%s' (read, commit, count, rawcount)", v);
  return 0;
}
