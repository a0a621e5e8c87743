/* wl_randread.c: the `randread` workload: 4 KiB random reads of one file
 * (2 GiB; --quick: 64 MiB) at a fixed queue depth for a fixed time, asynckit
 * against fio on the same file, block size and depth. Cases (--variant, or
 * all of them):
 *
 *   qd1       page cache, QD1       vs fio io_uring, and fio psync
 *   qd32      page cache, QD32      vs fio io_uring
 *   direct32  O_DIRECT, QD32        vs fio io_uring --direct=1
 *   fixed32   page cache, QD32, registered file + fixed buffers
 *                                   vs fio --registerfiles --fixedbufs
 *   sqpoll32  page cache, QD32, SQPOLL ring (AK_LOOP_SQPOLL)
 *                                   vs fio --sqthread_poll
 *
 * Fairness: the file is read into the page cache right before every buffered
 * run (the VM reclaims idle pages), fio runs with --invalidate=0 (its default
 * drops the cache) and --norandommap (plain random offsets, as ours), and the
 * two alternate A B A B; the figures are medians. asynckit keeps QD reads in
 * flight, each completion's callback submitting the next (with O_DIRECT
 * each read is handed to the kernel at once, AK_RW_SUBMIT_NOW, which is what
 * fio's default iodepth_batch_submit=1 does); fio's io_uring engine runs with
 * its defaults plus the case's options. The ratio is asynckit's IOPS over
 * fio's.
 *
 * --variant count --iterations N: exactly N buffered reads at QD32 of the
 * 64 MiB file, fixed seeds, asynckit only: a repeatable run for
 * `tools/akbench-callgrind --workload read` (instructions per read).
 */
#define _GNU_SOURCE
#include "akb_fs.h"

#include <asynckit.h>

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

typedef struct rr_case {
  const char *name;
  unsigned qd;
  bool direct; /* O_DIRECT */
  bool fixed;  /* registered file and buffers */
  bool sqpoll; /* SQPOLL ring */
  bool psync;  /* also fio psync (QD1) */
} rr_case;

static const rr_case cases[] = {
    {"qd1", 1, false, false, false, true},       {"qd32", 32, false, false, false, false},
    {"direct32", 32, true, false, false, false}, {"fixed32", 32, false, true, false, false},
    {"sqpoll32", 32, false, false, true, false},
};
enum { NCASES = sizeof(cases) / sizeof(cases[0]), BS = 4096, MAX_ROUNDS = 100 };

/* ---- asynckit's side ------------------------------------------------------- */

typedef struct rr_run {
  ak_loop *loop;
  int fd;
  uint64_t nblocks;
  int64_t end_ns;
  uint64_t left;   /* count mode: reads still to submit (else 0: timed) */
  bool counted;
  uint64_t done;
  uint64_t errors;
  int first_error;
  unsigned inflight;
  ak_rw_opts opts;
} rr_run;

typedef struct rr_slot {
  rr_run *run;
  char *buf;
  uint64_t rng;
} rr_slot;

static void rr_submit(rr_slot *s);

static void rr_done(ak_future *f, void *arg)
{
  rr_slot *s = arg;
  rr_run *r = s->run;
  r->inflight--;
  int64_t res = ak_future_result(f);
  if (res != BS) {
    if (!r->errors++)
      r->first_error = res < 0 ? (int)res : -EIO;
    return; /* this slot stops */
  }
  r->done++;
  if (r->counted ? r->left > 0 : ak_now_ns() < r->end_ns)
    rr_submit(s);
}

static void rr_submit(rr_slot *s)
{
  rr_run *r = s->run;
  s->rng ^= s->rng << 13;
  s->rng ^= s->rng >> 7;
  s->rng ^= s->rng << 17;
  int64_t off = (int64_t)(s->rng % r->nblocks) * BS;
  if (r->counted)
    r->left--;
  ak_future *f = ak_read_opt(r->loop, r->fd, s->buf, BS, off, &r->opts);
  if (!f) {
    if (!r->errors++)
      r->first_error = -ENOMEM;
    return;
  }
  r->inflight++;
  ak_future_on_settle(f, rr_done, s); /* the op keeps f alive until then */
  ak_future_release(f);
}

/* One timed run; *iops and *span filled. Returns 0 or a negative error with
 * *what naming the step. */
static int ak_run(const rr_case *c, const char *path, uint64_t size, double seconds, uint64_t count,
                  double *iops, akb_span *span, const char **what)
{
  rr_run r;
  memset(&r, 0, sizeof(r));
  r.counted = count > 0;
  r.left = count;
  r.opts = (ak_rw_opts)AK_RW_OPTS_INIT;
  /* Device IO: each read goes to the kernel as soon as it is made, as fio's
   * default iodepth_batch_submit=1 does; a batch would reach the virtio
   * device, and come back, as a convoy. */
  if (c->direct)
    r.opts.flags |= AK_RW_SUBMIT_NOW;
  r.nblocks = size / BS;
  r.fd = open(path, O_RDONLY | O_CLOEXEC | (c->direct ? O_DIRECT : 0));
  if (r.fd < 0) {
    *what = "open";
    return -errno;
  }
  ak_loop_options lo;
  memset(&lo, 0, sizeof(lo));
  lo.flags = c->sqpoll ? AK_LOOP_SQPOLL : 0;
  int rc = ak_loop_new(&r.loop, &lo);
  if (rc < 0) {
    *what = "ak_loop_new";
    close(r.fd);
    return rc;
  }
  char *bufs = NULL;
  rr_slot *slots = calloc(c->qd, sizeof(*slots));
  if (!slots || posix_memalign((void **)&bufs, 4096, (size_t)c->qd * BS) != 0) {
    *what = "allocating buffers";
    rc = -ENOMEM;
    goto out;
  }
  memset(bufs, 0, (size_t)c->qd * BS);
  if (c->fixed) {
    struct iovec iov = {bufs, (size_t)c->qd * BS};
    if ((rc = ak_register_files(r.loop, &r.fd, 1)) < 0) {
      *what = "ak_register_files";
      goto out;
    }
    if ((rc = ak_register_buffers(r.loop, &iov, 1)) < 0) {
      *what = "ak_register_buffers";
      goto out;
    }
    r.opts.file_index = 0;
    r.opts.buf_index = 0;
  }
  akb_usage before, after;
  akb_usage_now(&before);
  r.end_ns = before.wall_ns + (int64_t)(seconds * 1e9);
  for (unsigned i = 0; i < c->qd && (!r.counted || r.left > 0); i++) {
    slots[i].run = &r;
    slots[i].buf = bufs + (size_t)i * BS;
    slots[i].rng = 0x9e3779b97f4a7c15u * (i + 1) ^ (r.counted ? 0 : (uint64_t)before.wall_ns);
    rr_submit(&slots[i]);
  }
  while (r.inflight > 0) {
    rc = ak_loop_run(r.loop, AK_RUN_ONCE);
    if (rc < 0) {
      *what = "ak_loop_run";
      goto out;
    }
  }
  akb_usage_now(&after);
  *span = akb_span_between(&before, &after);
  *iops = (double)r.done / span->wall_s;
  rc = 0;
  if (r.errors) {
    *what = "a read did not return 4096 bytes";
    rc = r.first_error;
  }
out:
  ak_loop_free(r.loop);
  free(bufs);
  free(slots);
  close(r.fd);
  return rc;
}

/* ---- fio's side ---------------------------------------------------------------- */

/* One fio run; *iops from its JSON. Returns 0, 127 if fio is missing, or
 * another exit status / -errno. */
static int fio_run(const rr_case *c, bool psync, const char *path, uint64_t size, double seconds,
                   double *iops, akb_span *span)
{
  char file[4200], sz[64], depth[32], runtime[48], direct[32];
  snprintf(file, sizeof(file), "--filename=%s", path);
  snprintf(sz, sizeof(sz), "--size=%llu", (unsigned long long)size);
  snprintf(depth, sizeof(depth), "--iodepth=%u", psync ? 1 : c->qd);
  snprintf(runtime, sizeof(runtime), "--runtime=%llums", (unsigned long long)(seconds * 1000));
  snprintf(direct, sizeof(direct), "--direct=%d", c->direct ? 1 : 0);
  char *argv[24];
  int n = 0;
  argv[n++] = "fio";
  argv[n++] = "--name=randread";
  argv[n++] = file;
  argv[n++] = sz;
  argv[n++] = "--rw=randread";
  argv[n++] = "--bs=4k";
  argv[n++] = psync ? "--ioengine=psync" : "--ioengine=io_uring";
  argv[n++] = depth;
  argv[n++] = direct;
  argv[n++] = "--invalidate=0";
  argv[n++] = "--norandommap";
  argv[n++] = "--time_based";
  argv[n++] = runtime;
  argv[n++] = "--output-format=json";
  if (!psync && c->fixed) {
    argv[n++] = "--registerfiles=1";
    argv[n++] = "--fixedbufs=1";
  }
  if (!psync && c->sqpoll)
    argv[n++] = "--sqthread_poll=1";
  argv[n] = NULL;
  char *out = NULL;
  int rc = akb_fs_run(argv, &out, NULL, false, span);
  if (rc == 0) {
    *iops = akb_fs_json_number(out, "\"read\"", "iops");
    if (isnan(*iops))
      rc = -EPROTO;
  }
  free(out);
  return rc;
}

/* ---- The workload ------------------------------------------------------------------ */

typedef struct case_series {
  double ak[MAX_ROUNDS], fio[MAX_ROUNDS], psync[MAX_ROUNDS], ak_cpu[MAX_ROUNDS];
  unsigned n_ak, n_fio, n_psync;
} case_series;

static bool case_wanted(const akb_opts *opts, const rr_case *c)
{
  const char *v = opts->variant;
  return !v || strcmp(v, "both") == 0 || strcmp(v, "all") == 0 || strcmp(v, c->name) == 0;
}

static int warm(akb_result *res, const rr_case *c, const char *path)
{
  if (c->direct)
    return 0;
  int rc = akb_fs_warm(path);
  if (rc < 0)
    akb_fail(res, "reading %s into the page cache: %s", path, strerror(-rc));
  return rc;
}

/* Runs one case's rounds, A B alternated. Returns -1 if it could not run. */
static int run_case(const akb_opts *opts, akb_result *res, const rr_case *c, const char *path,
                    uint64_t size, double seconds, bool have_fio, case_series *s)
{
  for (unsigned r = 0; r < opts->rounds && r < MAX_ROUNDS; r++) {
    double iops = 0; /* set by each run that succeeds */
    akb_span span;
    const char *what = "";
    if (warm(res, c, path) < 0)
      return -1;
    int rc = ak_run(c, path, size, seconds, 0, &iops, &span, &what);
    if (rc < 0) {
      akb_fail(res, "%s: asynckit: %s: %s", c->name, what, ak_strerror(rc));
      return -1;
    }
    s->ak[s->n_ak] = iops;
    s->ak_cpu[s->n_ak++] = span.user_s + span.sys_s;
    if (!have_fio)
      continue;
    if (warm(res, c, path) < 0)
      return -1;
    rc = fio_run(c, false, path, size, seconds, &iops, &span);
    if (rc != 0) {
      akb_fail(res, "%s: fio io_uring failed (%s %d)", c->name, rc < 0 ? "error" : "status", rc);
      return -1;
    }
    s->fio[s->n_fio++] = iops;
    if (c->psync) {
      if (warm(res, c, path) < 0)
        return -1;
      rc = fio_run(c, true, path, size, seconds, &iops, &span);
      if (rc == 0)
        s->psync[s->n_psync++] = iops;
    }
  }
  return 0;
}

/* --variant count: N reads, nothing else (see the top of the file). */
static int run_counted(const akb_opts *opts, akb_result *res)
{
  uint64_t size = 64u << 20;
  uint64_t count = akb_size(opts, 100000, 10000);
  const char *dir = akb_fs_dir();
  if (!dir) {
    akb_fail(res, "no directory for the data set (set AKBENCH_DIR)");
    return -1;
  }
  char path[4096];
  snprintf(path, sizeof(path), "%s/randread-%llu.bin", dir, (unsigned long long)size);
  int rc = akb_fs_make_file(path, size);
  if (rc == 0)
    rc = akb_fs_warm(path);
  if (rc < 0) {
    akb_fail(res, "making %s: %s", path, strerror(-rc));
    return -1;
  }
  akb_title(res, "%llu 4 KiB reads at QD32 of a 64 MiB cached file (for callgrind)",
            (unsigned long long)count);
  double iops = 0;
  akb_span span;
  const char *what = "";
  rc = ak_run(&cases[1], path, size, 0, count, &iops, &span, &what);
  if (rc < 0) {
    akb_fail(res, "asynckit: %s: %s", what, ak_strerror(rc));
    return -1;
  }
  akb_param(res, "reads", "", (double)count, true);
  akb_fig_add(akb_row_add(res, "asynckit"), "iops", "", iops, true);
  return 0;
}

int akb_wl_randread(const akb_opts *opts, akb_result *res)
{
  if (opts->variant && strcmp(opts->variant, "count") == 0)
    return run_counted(opts, res);
  uint64_t size = opts->quick ? (64u << 20) : (UINT64_C(2) << 30);
  double seconds = (double)akb_size(opts, 5000, 300) / 1000.0;
  const char *dir = akb_fs_dir();
  if (!dir) {
    akb_fail(res, "no directory for the data set (set AKBENCH_DIR)");
    return -1;
  }
  char path[4096];
  snprintf(path, sizeof(path), "%s/randread-%llu.bin", dir, (unsigned long long)size);
  int rc = akb_fs_make_file(path, size);
  if (rc < 0) {
    akb_fail(res, "making %s: %s", path, strerror(-rc));
    return -1;
  }
  bool have_fio = akb_fs_have("fio");
  akb_title(res, "4 KiB random reads of a %llu MiB file, %.1f s per run, %u A B pair%s",
            (unsigned long long)(size >> 20), seconds, opts->rounds, opts->rounds == 1 ? "" : "s");
  akb_param(res, "file_mib", "", (double)(size >> 20), true);
  akb_param(res, "seconds", "", seconds, false);

  static case_series series[NCASES];
  memset(series, 0, sizeof(series));
  bool any = false;
  bool epoll = akb_backend_is_epoll();
  for (size_t i = 0; i < NCASES; i++) {
    if (!case_wanted(opts, &cases[i]))
      continue;
    any = true;
    if (epoll && (cases[i].fixed || cases[i].sqpoll)) {
      akb_note(res, "%s: skipped on epoll (registered files and SQPOLL are io_uring's)",
               cases[i].name);
      continue;
    }
    if (run_case(opts, res, &cases[i], path, size, seconds, have_fio, &series[i]) < 0)
      return -1;
  }
  if (!any) {
    akb_fail(res, "no case '%s' (qd1, qd32, direct32, fixed32, sqpoll32, count)", opts->variant);
    return -1;
  }

  static char keys[NCASES][3][32];
  akb_row *ak = akb_row_add(res, "asynckit");
  akb_row *fio = have_fio ? akb_row_add(res, "fio io_uring") : NULL;
  akb_row *psync = NULL;
  for (size_t i = 0; i < NCASES; i++) {
    case_series *s = &series[i];
    if (!s->n_ak)
      continue;
    snprintf(keys[i][0], sizeof(keys[i][0]), "%s_iops", cases[i].name);
    snprintf(keys[i][1], sizeof(keys[i][1]), "ratio_%s", cases[i].name);
    double a = akb_median(s->ak, s->n_ak);
    akb_fig_add(ak, keys[i][0], "", a, true);
    if (!fio || !s->n_fio)
      continue;
    double f = akb_median(s->fio, s->n_fio);
    akb_fig_add(fio, keys[i][0], "", f, true);
    akb_param(res, keys[i][1], "", a / f, false);
    if (s->n_psync) {
      if (!psync)
        psync = akb_row_add(res, "fio psync");
      akb_fig_add(psync, keys[i][0], "", akb_median(s->psync, s->n_psync), true);
    }
  }
  /* The headline ratio: the first case run, qd32 when it ran. */
  size_t head = series[1].n_ak ? 1 : 0;
  while (head < NCASES && !series[head].n_ak)
    head++;
  if (fio && head < NCASES && series[head].n_fio)
    akb_ratio(res,
              akb_median(series[head].ak, series[head].n_ak) /
                  akb_median(series[head].fio, series[head].n_fio),
              "median IOPS %s, asynckit / fio io_uring (ratio_* for every case)", cases[head].name);
  if (!have_fio)
    akb_note(res, "%s", AKB_FIO_MISSING);
  akb_note(res, "fio --ioengine=io_uring --rw=randread --bs=4k --invalidate=0 --norandommap "
                "--time_based; page cache read before each buffered run");
  return 0;
}
