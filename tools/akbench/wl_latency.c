/* wl_latency.c: the `latency` workload: one operation at a time, asynckit
 * against a raw liburing loop in the same process with the same ring flags
 * (SUBMIT_ALL | SINGLE_ISSUER | DEFER_TASKRUN, a registered file and a
 * registered buffer), alternated in blocks so that both see the same
 * machine. Owns two cases (--variant, default both):
 *   read:   QD1 4 KiB READ_FIXED of a hot page-cache file at random offsets:
 *           p50, p99, p99.9 per op (an ak_read_opt + ak_future_wait on the
 *           loop's thread, against get_sqe + submit_and_wait + cqe_seen),
 *           then fio on the same file (io_uring, iodepth 1, its best flags
 *           for this: registered file and buffers, no polling, no SQPOLL),
 *           with its lat (what ours time) and clat percentiles (fio's own
 *           ring flags);
 *   commit: a 4 KiB write then fdatasync on a file on this machine's disk:
 *           an asynckit chain (asynckit/batch.h), two awaited futures, and
 *           raw linked SQEs: p50, p99, context switches per commit (the
 *           loop thread's voluntary and involuntary, getrusage
 *           RUSAGE_THREAD; the process's, RUSAGE_SELF, io-wq workers
 *           included), and io_uring_enter calls per commit: strace -f -c
 *           over a child running one way alone (--variant commitcount-WAY),
 *           the difference of two lengths so set-up cancels out, and for
 *           the raw side also its own count of the calls that enter.
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

/* ---- fio's side of the read case ---------------------------------------------- */

typedef struct fio_pcts {
  double clat[3], lat[3]; /* p50, p99, p99.9, us; NaN when missing */
} fio_pcts;

/* fio, QD1 4 KiB random reads of the same hot file, n of them, with the
 * flags that match our side (measured, docs/batch.md): a registered file
 * and fixed buffers (no difference on a buffered read, but the same ring
 * work as ours); no --hipri (polled completions need O_DIRECT on a device
 * that polls: fio fails with it here); no --sqthread_poll (it lowers fio's
 * p50, but its SQ thread spins a whole core of two, and neither asynckit's
 * loop nor the raw ring has one). Returns 0, 127 if fio is missing,
 * another status or -errno. */
static int fio_qd1(const char *path, uint64_t file_size, uint64_t n, fio_pcts *out) {
  char file[4200], sz[64], io[64];
  snprintf(file, sizeof(file), "--filename=%s", path);
  snprintf(sz, sizeof(sz), "--size=%llu", (unsigned long long)file_size);
  snprintf(io, sizeof(io), "--io_size=%llu", (unsigned long long)(n * BLOCK));
  char *argv[] = {"fio", "--name=qd1", file, sz, io, "--readonly", "--rw=randread", "--bs=4k",
                  "--ioengine=io_uring", "--iodepth=1", "--direct=0", "--invalidate=0",
                  "--norandommap", "--registerfiles=1", "--fixedbufs=1", "--hipri=0",
                  "--sqthread_poll=0", "--clat_percentiles=1", "--lat_percentiles=1",
                  "--percentile_list=50:99:99.9", "--output-format=json", NULL};
  char *text = NULL;
  akb_span span;
  int rc = akb_fs_run(argv, &text, NULL, false, &span);
  static const char *const keys[3] = {"50.000000", "99.000000", "99.900000"};
  for (int i = 0; rc == 0 && i < 3; i++) {
    /* fio's JSON: "read" : { ... "clat_ns" : { ... "percentile" : {...} },
     * "lat_ns" : { ... } }: the first match after each key is read's. */
    const char *rd = text ? strstr(text, "\"read\"") : NULL;
    out->clat[i] = akb_fs_json_number(rd, "\"clat_ns\"", keys[i]) / 1000.0;
    out->lat[i] = akb_fs_json_number(rd, "\"lat_ns\"", keys[i]) / 1000.0;
    if (isnan(out->clat[i]))
      rc = -EPROTO;
  }
  free(text);
  return rc;
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
  /* fio after both, on the same file re-read into the page cache, as many
   * reads as each side made. */
  char fdpath[64], path[4096];
  snprintf(fdpath, sizeof(fdpath), "/proc/self/fd/%d", r.fd);
  ssize_t plen = readlink(fdpath, path, sizeof(path) - 1);
  fio_pcts fp;
  int frc = 127;
  if (plen > 0 && akb_fs_have("fio")) {
    path[plen] = '\0';
    akb_fs_warm(path);
    frc = fio_qd1(path, r.blocks * BLOCK, ia, &fp);
  }
  if (frc == 0) {
    /* One row (the table holds six: three here, three for commits): fio's
     * lat, the figure that times what ours time (submit, wait, reap). Its
     * clat starts when the submitting io_uring_enter returns, and a hot
     * page-cache read has completed inside that call: clat is only the
     * reaping, well under a microsecond; it goes in a note. */
    akb_row *rf = akb_row_add(res, "fio io_uring (lat)");
    akb_fig_add(rf, "p50", "us", fp.lat[0], false);
    akb_fig_add(rf, "p99", "us", fp.lat[1], false);
    akb_fig_add(rf, "p99.9", "us", fp.lat[2], false);
    akb_note(res, "fio clat (from the submit call's return; the read is done in it): "
                  "p50 %.3f us, p99 %.3f us, p99.9 %.3f us", fp.clat[0], fp.clat[1], fp.clat[2]);
    akb_note(res, "QD1 read, asynckit / fio lat: p50 %.3fx, p99 %.3fx, p99.9 %.3fx",
             pct(ak, ia, 0.5) / fp.lat[0], pct(ak, ia, 0.99) / fp.lat[1],
             pct(ak, ia, 0.999) / fp.lat[2]);
    akb_note(res, "fio: io_uring, iodepth 1, randread 4k, --invalidate=0 --norandommap "
                  "--registerfiles=1 --fixedbufs=1 --hipri=0 --sqthread_poll=0, %llu reads, "
                  "run after the alternated blocks", (unsigned long long)ia);
  } else if (frc == 127) {
    akb_note(res, "%s", AKB_FIO_MISSING);
  } else {
    akb_fail(res, "fio failed (%s %d)", frc < 0 ? "error" : "status", frc);
  }
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
  char path[4096];
  uint64_t raw_enters; /* raw side: calls that enter the kernel (below) */
} committer;

enum { COMMIT_AK_CHAIN, COMMIT_AK_PAIR, COMMIT_RAW, COMMIT_WAYS };
static const char *const commit_names[COMMIT_WAYS] = {"asynckit chain", "asynckit 2 futures",
                                                      "raw linked SQEs"};
/* --variant commitcount-WAY: the child strace counts. */
static const char *const commit_tags[COMMIT_WAYS] = {"chain", "pair", "raw"};

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
  /* With a wait count, liburing's submit_and_wait always makes exactly one
   * io_uring_enter (GETEVENTS); the chain's one CQE is there when it
   * returns, so peek never enters. strace checks this count. */
  io_uring_submit_and_wait(&c->ring, 1);
  c->raw_enters++;
  struct io_uring_cqe *cqe;
  if (io_uring_peek_cqe(&c->ring, &cqe) != 0)
    return -EIO;
  int r = cqe->res;
  io_uring_cqe_seen(&c->ring, cqe);
  return r == 0 ? 0 : -EIO;
}

/* The commit file on the disk (akb_fs_dir, not a tmpfs), both rings, the
 * chain builder. Returns 0 or a negative error. */
static int committer_open(committer *c) {
  const char *dir = akb_fs_dir();
  snprintf(c->path, sizeof(c->path), "%s/latency-commit-%d.dat", dir ? dir : "/var/tmp",
           (int)getpid());
  c->fd = open(c->path, O_CREAT | O_TRUNC | O_RDWR | O_CLOEXEC, 0600);
  if (c->fd < 0)
    return -errno;
  c->buf = aligned_alloc(4096, BLOCK);
  if (!c->buf)
    return -ENOMEM;
  memset(c->buf, 'w', BLOCK);
  int rc;
  if ((rc = ak_loop_new(&c->loop, NULL)) < 0 || (rc = raw_ring(&c->ring)) < 0 ||
      (rc = ak_batch_new(c->loop, 2, &c->chain)) < 0)
    return rc;
  return 0;
}

static void committer_close(committer *c) {
  if (c->chain)
    ak_batch_free(c->chain);
  if (c->ring.ring_fd > 0)
    io_uring_queue_exit(&c->ring);
  if (c->loop)
    ak_loop_free(c->loop);
  if (c->fd >= 0) {
    close(c->fd);
    unlink(c->path);
  }
  free(c->buf);
}

/* The calls column of the line of strace -c's summary whose last word is
 * name ("io_uring_enter", "total"); -1 when absent. */
static long strace_calls(const char *summary, const char *name) {
  for (const char *line = summary; line && *line;) {
    const char *eol = strchr(line, '\n');
    size_t len = eol ? (size_t)(eol - line) : strlen(line);
    char buf[256];
    if (len < sizeof(buf)) {
      memcpy(buf, line, len);
      buf[len] = '\0';
      char *w[8];
      int nw = 0;
      for (char *save = NULL, *t = strtok_r(buf, " \t", &save); t && nw < 8;
           t = strtok_r(NULL, " \t", &save))
        w[nw++] = t;
      /* % time, seconds, usecs/call, calls, [errors], syscall */
      if (nw >= 5 && strcmp(w[nw - 1], name) == 0)
        return strtol(w[3], NULL, 10);
    }
    line = eol ? eol + 1 : NULL;
  }
  return -1;
}

/* io_uring_enter calls and all system calls made by a child akbench running
 * n commits of one way alone under strace -f -c (bounded by timeout), into
 * enter[0] and all[0]. Returns 0, 127 when strace or timeout is missing, or
 * another status / -errno. */
static int strace_commits(int way, uint64_t n, long *enter, long *all) {
  char self[4096], sumfile[4200], iters[32], variant[64];
  ssize_t len = readlink("/proc/self/exe", self, sizeof(self) - 1);
  if (len <= 0)
    return -errno;
  self[len] = '\0';
  const char *dir = akb_fs_dir();
  snprintf(sumfile, sizeof(sumfile), "%s/latency-strace-%d.txt", dir ? dir : "/var/tmp",
           (int)getpid());
  snprintf(iters, sizeof(iters), "%llu", (unsigned long long)n);
  snprintf(variant, sizeof(variant), "commitcount-%s", commit_tags[way]);
  char *argv[] = {"timeout", "-k", "5", "120", "strace", "-f", "-qq", "-c", "-o", sumfile,
                  self, "latency", "--variant", variant, "--iterations", iters, NULL};
  akb_span span;
  int rc = akb_fs_run(argv, NULL, NULL, false, &span);
  if (rc != 0) {
    unlink(sumfile);
    return rc;
  }
  FILE *f = fopen(sumfile, "r");
  char *text = NULL;
  size_t cap = 0;
  if (f) {
    ssize_t got = getdelim(&text, &cap, '\0', f);
    fclose(f);
    if (got < 0) {
      free(text);
      text = NULL;
    }
  }
  unlink(sumfile);
  *enter = strace_calls(text, "io_uring_enter");
  *all = strace_calls(text, "total");
  free(text);
  return *enter < 0 || *all < 0 ? -EPROTO : 0;
}

/* Per commit, by the difference of two lengths (start-up and tear-down
 * cancel out): io_uring_enter calls and all system calls. */
static int strace_per_commit(int way, double *enter, double *all) {
  enum { SHORT = 100, LONG = 400 };
  long e1, a1, e2, a2;
  int rc = strace_commits(way, SHORT, &e1, &a1);
  if (rc == 0)
    rc = strace_commits(way, LONG, &e2, &a2);
  if (rc == 0) {
    *enter = (double)(e2 - e1) / (LONG - SHORT);
    *all = (double)(a2 - a1) / (LONG - SHORT);
  }
  return rc;
}

typedef struct csw_count {
  long thr_vol, thr_invol; /* this (the loop's) thread: RUSAGE_THREAD */
  long proc;               /* the process, io-wq workers included: RUSAGE_SELF */
} csw_count;

static csw_count csw_now(void) {
  struct rusage t, p;
  getrusage(RUSAGE_THREAD, &t);
  getrusage(RUSAGE_SELF, &p);
  return (csw_count){t.ru_nvcsw, t.ru_nivcsw, p.ru_nvcsw + p.ru_nivcsw};
}

/* A zeroed committer opened, or the set-up's failure recorded in res and
 * whatever was opened closed again: false. */
static bool committer_start(committer *c, akb_result *res) {
  memset(c, 0, sizeof(*c));
  c->fd = -1;
  int rc = committer_open(c);
  if (rc < 0) {
    akb_fail(res, "commit set-up failed: %s", ak_strerror(rc));
    committer_close(c);
    return false;
  }
  return true;
}

static void case_commit(const akb_opts *opts, akb_result *res) {
  committer c;
  if (!committer_start(&c, res))
    return;
  uint64_t n = akb_size(opts, 3000, 300);
  enum { CBLK = 100 };
  n = (n + CBLK - 1) / CBLK * CBLK;
  int64_t *lat[COMMIT_WAYS];
  size_t cnt[COMMIT_WAYS] = {0};
  csw_count csw[COMMIT_WAYS] = {{0}};
  uint64_t raw_enters = 0;
  for (int w = 0; w < COMMIT_WAYS; w++)
    lat[w] = malloc(n * sizeof(int64_t));
  for (uint64_t blk = 0; blk < n / CBLK; blk++) {
    for (int k = 0; k < COMMIT_WAYS; k++) {
      int way = (int)((blk + (uint64_t)k) % COMMIT_WAYS);
      csw_count cs0 = csw_now();
      uint64_t en0 = c.raw_enters;
      for (int i = 0; i < CBLK; i++) {
        int64_t off = (int64_t)((blk * CBLK + (uint64_t)i) % 256) * BLOCK;
        int64_t t0 = now_ns();
        if (commit_once(&c, way, off) < 0) {
          akb_fail(res, "%s: commit failed", commit_names[way]);
          goto out;
        }
        lat[way][cnt[way]++] = now_ns() - t0;
      }
      csw_count cs1 = csw_now();
      csw[way].thr_vol += cs1.thr_vol - cs0.thr_vol;
      csw[way].thr_invol += cs1.thr_invol - cs0.thr_invol;
      csw[way].proc += cs1.proc - cs0.proc;
      if (way == COMMIT_RAW)
        raw_enters += c.raw_enters - en0;
    }
  }
  /* io_uring_enter per commit: strace over a child per way, after the timed
   * part (ptrace slows every system call; these runs time nothing). */
  double enters[COMMIT_WAYS], calls[COMMIT_WAYS];
  bool traced = !opts->quick && akb_fs_have("strace") && akb_fs_have("timeout");
  int rc;
  for (int w = 0; w < COMMIT_WAYS; w++) {
    enters[w] = calls[w] = NAN;
    if (traced && (rc = strace_per_commit(w, &enters[w], &calls[w])) != 0) {
      akb_note(res, "%s: strace -f -c failed (%s %d): no enter counts", commit_names[w],
               rc < 0 ? "error" : "status", rc);
      traced = false;
    }
  }
  double p50[COMMIT_WAYS];
  for (int w = 0; w < COMMIT_WAYS; w++) {
    qsort(lat[w], cnt[w], sizeof(int64_t), cmp_i64);
    akb_row *row = akb_row_add(res, commit_names[w]);
    p50[w] = pct(lat[w], cnt[w], 0.5);
    double k = (double)cnt[w];
    akb_fig_add(row, "p50", "us", p50[w], false);
    akb_fig_add(row, "p99", "us", pct(lat[w], cnt[w], 0.99), false);
    akb_fig_add(row, "enter/commit", "", enters[w], false);
    akb_fig_add(row, "syscalls/commit", "", calls[w], false);
    akb_fig_add(row, "thr vcsw/commit", "", (double)csw[w].thr_vol / k, false);
    akb_fig_add(row, "thr ivcsw/commit", "", (double)csw[w].thr_invol / k, false);
    akb_fig_add(row, "csw/commit", "", (double)csw[w].proc / k, false);
  }
  akb_note(res, "write+fdatasync p50, asynckit chain / raw linked SQEs: %.3fx; two futures / raw: %.3fx",
           p50[COMMIT_AK_CHAIN] / p50[COMMIT_RAW], p50[COMMIT_AK_PAIR] / p50[COMMIT_RAW]);
  akb_note(res, "raw linked SQEs, its own count: %.3f io_uring_enter per commit (%llu commits)",
           (double)raw_enters / (double)cnt[COMMIT_RAW], (unsigned long long)cnt[COMMIT_RAW]);
  akb_note(res, "enter/commit, syscalls/commit: strace -f -c over `akbench latency --variant "
                "commitcount-{chain,pair,raw}`, 400 minus 100 commits, over 300%s",
           traced ? "" : " (not run: --quick, or strace missing)");
  akb_note(res, "csw/commit: getrusage, thr = the loop thread (RUSAGE_THREAD: voluntary, "
                "involuntary), csw = the process (RUSAGE_SELF, io-wq workers included)");
  if (!res->has_ratio)
    akb_ratio(res, p50[COMMIT_RAW] / p50[COMMIT_AK_CHAIN], "commit p50: raw over asynckit chain");
out:
  for (int w = 0; w < COMMIT_WAYS; w++)
    free(lat[w]);
  committer_close(&c);
}

/* --variant commitcount-WAY --iterations N: N commits of one way alone, the
 * child strace_commits runs. */
static void case_commitcount(const akb_opts *opts, akb_result *res, int way) {
  committer c;
  if (!committer_start(&c, res))
    return;
  uint64_t n = akb_size(opts, 1000, 100);
  for (uint64_t i = 0; i < n; i++)
    if (commit_once(&c, way, (int64_t)(i % 256) * BLOCK) < 0) {
      akb_fail(res, "%s: commit failed", commit_names[way]);
      break;
    }
  akb_param(res, "commits", "", (double)n, true);
  committer_close(&c);
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
  for (int w = 0; v && w < COMMIT_WAYS; w++) {
    char tag[64];
    snprintf(tag, sizeof(tag), "commitcount-%s", commit_tags[w]);
    if (strcmp(v, tag) == 0) {
      case_commitcount(opts, res, w);
      return 0;
    }
  }
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
    akb_fail(res, "no case '%s' (read, commit, count, rawcount, commitcount-chain, "
                  "commitcount-pair, commitcount-raw)", v);
  return 0;
}
