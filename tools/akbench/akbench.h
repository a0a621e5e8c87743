/* akbench.h: what the files of akbench share. Owns the list of workloads
 * (AKB_WORKLOADS), the options every workload reads, the result record a
 * workload fills and the output prints (report.c), the measuring helpers
 * (measure.c) and the libuv peer's entry points (uv_peer.c). Workloads do not
 * print their results themselves: they fill an akb_result, and report.c turns
 * it into the table and the JSON object, so every workload looks the same.
 *
 * Adding a workload: write tools/akbench/wl_NAME.c defining
 *   int akb_wl_NAME(const akb_opts *opts, akb_result *res);
 * add one XX line to AKB_WORKLOADS below, and the file to tools/meson.build.
 */
#ifndef AKBENCH_H
#define AKBENCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/resource.h>

/* XX(name, one-line description). `akbench all` runs them in this order. */
#define AKB_WORKLOADS(XX)                                                            \
  XX(pool, "no-op pool tasks in batches: asynckit ak_pool_submit vs libuv uv_queue_work") \
  XX(future, "create, settle, run one callback, release: ns per future (loop, loopless)") \
  XX(chain, "a then-chain and a join_all, 1,000,000 long: time and peak RSS") \
  XX(echo, "64 connections ping-ponging 64-byte messages for 10 s (--size: ms): vs libuv") \
  XX(stream, "one bulk TCP stream over loopback for 10 s (--size: ms): vs iperf3") \
  XX(conns, "10,000 connections held at once, 1 MiB each, two processes (--size: count): vs libuv") \
  XX(randread, "4 KiB random reads of a 2 GiB file: QD1/QD32 cached, O_DIRECT, fixed, SQPOLL (--size: ms): vs fio") \
  XX(copy, "copy a 2 GiB file from the page cache: ak_copy_file vs cp") \
  XX(hash, "aksum on 1000 x 1 MiB and one 2 GiB file vs sha256sum, openssl, xargs -P2") \
  XX(tls, "TLS bulk (--size MiB) vs plain TCP, full/resumed handshakes/s vs openssl s_time") \
  XX(latency, "one op at a time: QD1 4 KiB reads and write+fdatasync chains vs raw liburing (same ring flags)") \
  XX(batch, "32-op batches of NOPs and 4 KiB reads: ak_batch vs raw liburing (same ring flags)") \
  XX(download, "akget vs curl --parallel, wget2, aria2c from a local nginx, 32 at once (--size: percent of the sets)") \
  XX(mirror, "akget -N vs wget2 -N over an unchanged 1000 x 1 MiB tree; peak RSS of a 2,000,000-URL list vs aria2c")

/* ---- Options ---------------------------------------------------------------- */

typedef struct akb_opts {
  unsigned threads;    /* --threads: pool size and UV_THREADPOOL_SIZE */
  unsigned rounds;     /* --rounds/--pairs: repetitions (A B pairs for peers) */
  unsigned batch;      /* --batch: tasks submitted before waiting (pool) */
  uint64_t size;       /* --size/--iterations: the workload's count; 0: its default */
  const char *variant; /* --variant: a workload's sub-case (future: loop, loopless) */
  bool quick;          /* --quick: small sizes, for tests */
  bool no_fork;        /* --no-fork: run RSS cases in this process */
  bool no_peer;        /* --no-peer: pool runs asynckit alone (profiling) */
  const char *backend; /* --backend: uring, epoll, both, or NULL (AK_BACKEND
                          as the environment has it) */
} akb_opts;

/* Whether a loop made now runs on the epoll backend (--backend, AK_BACKEND,
 * or io_uring unavailable). */
bool akb_backend_is_epoll(void);

/* The workload's count: --size if given, else quick or full default. */
uint64_t akb_size(const akb_opts *opts, uint64_t full, uint64_t quick);

/* ---- Results ---------------------------------------------------------------- */

enum { AKB_MAX_FIGS = 16, AKB_MAX_ROWS = 6, AKB_MAX_NOTES = 64 }; /* download: 7 sets */

typedef struct akb_fig {
  const char *key;  /* JSON key and column heading; a string literal */
  const char *unit; /* shown in the table heading; a string literal or "" */
  double value;     /* NaN prints as null / "-" */
  bool integer;     /* print without a fraction */
} akb_fig;

/* One implementation (asynckit, libuv) or one case of asynckit. */
typedef struct akb_row {
  char name[32];
  akb_fig figs[AKB_MAX_FIGS];
  size_t nfigs;
} akb_row;

typedef struct akb_result {
  const char *workload;        /* "pool" */
  char title[200];             /* one line saying what ran */
  akb_fig params[AKB_MAX_FIGS]; /* workload-level figures (sizes, cpu ratio) */
  size_t nparams;
  akb_row rows[AKB_MAX_ROWS];
  size_t nrows;
  bool has_ratio;              /* a peer ran: ratio is meaningful */
  double ratio;                /* asynckit over peer, > 1: asynckit better */
  char ratio_of[120];          /* what the ratio compares */
  char notes[AKB_MAX_NOTES][200];
  size_t nnotes;
  bool ok;                     /* every check passed; false: akbench exits 1 */
} akb_result;

void akb_result_init(akb_result *res, const char *workload);
void akb_title(akb_result *res, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
akb_row *akb_row_add(akb_result *res, const char *name);
void akb_fig_add(akb_row *row, const char *key, const char *unit, double value, bool integer);
void akb_param(akb_result *res, const char *key, const char *unit, double value, bool integer);
void akb_ratio(akb_result *res, double ratio, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void akb_note(akb_result *res, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Records a failed check: a note, and ok = false. */
void akb_fail(akb_result *res, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* The table for one workload. */
void akb_print_table(FILE *to, const akb_result *res);

/* The JSON document: {"tool": "akbench", ..., "workloads": [one per result]}.
 * Returns 0, or -1 with errno when writing fails. */
int akb_write_json(FILE *to, const akb_result *const *res, size_t n, const akb_opts *opts);

/* ---- Measuring ---------------------------------------------------------------- */

/* Wall clock and this process's CPU time (all threads), at one moment. */
typedef struct akb_usage {
  int64_t wall_ns; /* CLOCK_MONOTONIC */
  int64_t user_ns; /* getrusage(RUSAGE_SELF) */
  int64_t sys_ns;
  long maxrss_kb;  /* peak resident set so far */
} akb_usage;

/* Returns 0 or -errno. */
int akb_usage_now(akb_usage *u);

/* The figures of one timed run: after minus before. */
typedef struct akb_span {
  double wall_s;
  double user_s;
  double sys_s;
} akb_span;

akb_span akb_span_between(const akb_usage *before, const akb_usage *after);

/* The median of n values (n > 0); values is reordered. */
double akb_median(double *values, size_t n);

/* The resident set now, in KiB (from /proc/self/statm), or -1. */
long akb_rss_now_kb(void);

/* Runs fn(arg, out) in a forked child so that its peak RSS is its own, and
 * copies *out (out_size bytes, filled by the child) back. The child's status
 * (fn's return, 0..125) goes to *status and its rusage to *child_ru. Returns
 * 0, or -errno if the child could not be run or died without reporting.
 * Only call this while the process has no threads of its own that the child
 * would need. */
int akb_run_child(int (*fn)(void *arg, void *out), void *arg, void *out, size_t out_size,
                  int *status, struct rusage *child_ru);

/* ---- Workloads ------------------------------------------------------------- */

/* Each returns 0 when it ran (checks may still have failed: res->ok), or -1
 * when it could not run at all (res->notes says why). */
#define AKB__DECLARE(name, desc) int akb_wl_##name(const akb_opts *opts, akb_result *res);
AKB_WORKLOADS(AKB__DECLARE)
#undef AKB__DECLARE

/* ---- The libuv peer (uv_peer.c, built when libuv is found) ------------------- */

#define AKB_UV_MISSING "libuv: not installed (tools/bootstrap --bench)"

#ifdef AKBENCH_HAVE_UV
/* One timed run of `tasks` no-op uv_queue_work items, `batch` at a time, on a
 * fresh uv loop; after_work callbacks count them. The threadpool size comes
 * from UV_THREADPOOL_SIZE, which main() sets before any uv call. Returns 0,
 * or a negative libuv error with *what naming the failed call. */
int akb_uv_pool_run(uint64_t tasks, unsigned batch, akb_span *span, const char **what);

/* The libuv version string, and the message of a libuv error. */
const char *akb_uv_version(void);
const char *akb_uv_strerror(int err);
#endif

#endif /* AKBENCH_H */
