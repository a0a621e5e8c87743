/* wl_pool.c: the `pool` workload. Owns asynckit's side of it (no-op tasks
 * through ak_pool_submit, settled on a loop) and the A B alternation against
 * the libuv peer (uv_peer.c), with medians and the ratio. Does not own the
 * libuv side.
 *
 * Fairness: both sides complete their work on a loop thread (asynckit: tasks
 * submitted from the loop's thread settle on that loop, where a callback
 * counts them; libuv: after_work_cb on uv_run's thread), with the same number
 * of worker threads, the same batch size, and a warm-up batch outside the
 * timing (libuv starts its threads at the first uv_queue_work).
 */
#include "akbench.h"

#include <asynckit.h>

#include <errno.h>
#include <math.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct counter {
  uint64_t settled; /* callbacks run */
  uint64_t failed;  /* of those, futures not DONE */
} counter;

/* Set on the thread that runs the loop: a task that finds it set ran on the
 * loop's thread, not a worker, and the comparison would be void. */
static _Thread_local bool on_loop_thread;
static atomic_uint_fast64_t ran_inline;

static int64_t noop_task(void *arg, ak_future *self)
{
  (void)arg;
  (void)self;
  if (on_loop_thread)
    atomic_fetch_add_explicit(&ran_inline, 1, memory_order_relaxed);
  return 0;
}

/* Runs on the loop's thread, like libuv's after_work_cb. */
static void count_settled(ak_future *f, void *arg)
{
  counter *c = arg;
  c->settled++;
  if (ak_future_state(f) != AK_DONE)
    c->failed++;
}

/* Submits n tasks, each counted when it settles; the futures are released at
 * once (releasing does not cancel), so the loop's callback is the only
 * bookkeeping, as with uv_work_t. Returns 0 or a negative error. */
static int submit_batch(ak_pool *pool, unsigned n, counter *c, const char **what)
{
  for (unsigned i = 0; i < n; i++) {
    ak_future *f = ak_pool_submit(pool, noop_task, NULL);
    if (!f) {
      *what = "ak_pool_submit";
      return -ENOMEM;
    }
    int rc = ak_future_on_settle(f, count_settled, c);
    ak_future_release(f);
    if (rc < 0) {
      *what = "ak_future_on_settle";
      return rc;
    }
  }
  return 0;
}

/* Runs the loop until every task of the batch has been counted. DEFAULT runs
 * until nothing is alive; pool tasks bound to the loop count as alive. */
static int drain(ak_loop *loop, const counter *c, uint64_t expected, const char **what)
{
  int rc = ak_loop_run(loop, AK_RUN_DEFAULT);
  if (rc < 0) {
    *what = "ak_loop_run";
    return rc;
  }
  if (c->settled != expected) {
    /* The loop said it was idle with tasks outstanding: a library bug. */
    *what = "ak_loop_run(DEFAULT) returned before the pool tasks settled";
    return -EPROTO;
  }
  return 0;
}

typedef struct ak_side {
  ak_pool *pool;
  ak_loop *loop;
} ak_side;

static void ak_side_free(ak_side *s)
{
  if (s->loop)
    ak_loop_free(s->loop);
  if (s->pool)
    ak_pool_free(s->pool);
  memset(s, 0, sizeof(*s));
}

static int ak_side_new(ak_side *s, unsigned threads, const char **what)
{
  memset(s, 0, sizeof(*s));
  s->pool = ak_pool_new(threads);
  if (!s->pool) {
    *what = "ak_pool_new";
    return errno ? -errno : -ENOMEM;
  }
  /* The loop's own fallback pool is ours, so no other threads exist. */
  ak_loop_options lo;
  memset(&lo, 0, sizeof(lo));
  lo.pool = s->pool;
  int rc = ak_loop_new(&s->loop, &lo);
  if (rc < 0) {
    *what = "ak_loop_new";
    s->loop = NULL;
    ak_side_free(s);
    return rc;
  }
  return 0;
}

/* One timed run of asynckit: tasks in batches, on a fresh loop and pool. */
static int ak_pool_run(const akb_opts *opts, uint64_t tasks, akb_span *span, const char **what)
{
  ak_side s;
  int rc = ak_side_new(&s, opts->threads, what);
  if (rc < 0)
    return rc;
  counter c = {0, 0};
  rc = submit_batch(s.pool, opts->batch, &c, what); /* warm-up */
  if (rc == 0)
    rc = drain(s.loop, &c, opts->batch, what);

  akb_usage before, after;
  if (rc == 0 && (rc = akb_usage_now(&before)) < 0)
    *what = "getrusage";
  c.settled = c.failed = 0;
  for (uint64_t done = 0; rc == 0 && done < tasks; done += opts->batch) {
    unsigned n = tasks - done < opts->batch ? (unsigned)(tasks - done) : opts->batch;
    rc = submit_batch(s.pool, n, &c, what);
    if (rc == 0)
      rc = drain(s.loop, &c, done + n, what);
  }
  if (rc == 0 && (rc = akb_usage_now(&after)) < 0)
    *what = "getrusage";
  if (rc == 0 && c.failed) {
    *what = "a no-op task did not settle DONE";
    rc = -EPROTO;
  }
  if (rc == 0)
    *span = akb_span_between(&before, &after);
  ak_side_free(&s);
  return rc;
}

typedef struct series {
  double items_per_s[1000]; /* one per round; --rounds is at most 1000 */
  double wall_s[1000];
  double cpu_s[1000];
  double user_s[1000];
  double sys_s[1000];
  unsigned n;
} series;

static void series_add(series *s, const akb_span *span, uint64_t tasks)
{
  s->items_per_s[s->n] = (double)tasks / span->wall_s;
  s->wall_s[s->n] = span->wall_s;
  s->cpu_s[s->n] = span->user_s + span->sys_s;
  s->user_s[s->n] = span->user_s;
  s->sys_s[s->n] = span->sys_s;
  s->n++;
}

/* The row of one implementation: medians over its rounds. */
static double series_row(akb_result *res, const char *name, series *s, uint64_t tasks)
{
  akb_row *row = akb_row_add(res, name);
  double ips = akb_median(s->items_per_s, s->n);
  double cpu = akb_median(s->cpu_s, s->n);
  akb_fig_add(row, "items_per_s", "", ips, true);
  /* akb_median sorted the rounds: the spread shows how noisy the run was. */
  akb_fig_add(row, "min", "", s->items_per_s[0], true);
  akb_fig_add(row, "max", "", s->items_per_s[s->n - 1], true);
  akb_fig_add(row, "wall_s", "", akb_median(s->wall_s, s->n), false);
  akb_fig_add(row, "cpu_s", "", cpu, false);
  akb_fig_add(row, "user_s", "", akb_median(s->user_s, s->n), false);
  akb_fig_add(row, "sys_s", "", akb_median(s->sys_s, s->n), false);
  akb_fig_add(row, "cpu_ns_per_item", "", cpu * 1e9 / (double)tasks, false);
  akb_fig_add(row, "rounds", "", s->n, true);
  return cpu;
}

int akb_wl_pool(const akb_opts *opts, akb_result *res)
{
  uint64_t tasks = akb_size(opts, 1000000, 10240);
  static series ak, uv; /* large: keep off the stack */
  memset(&ak, 0, sizeof(ak));
  memset(&uv, 0, sizeof(uv));

  akb_title(res, "%llu no-op tasks in batches of %u, %u thread%s, %u A B pair%s",
            (unsigned long long)tasks, opts->batch, opts->threads, opts->threads == 1 ? "" : "s",
            opts->rounds, opts->rounds == 1 ? "" : "s");
  akb_param(res, "tasks", "", (double)tasks, true);
  akb_param(res, "batch", "", opts->batch, true);
  akb_param(res, "threads", "", opts->threads, true);

  on_loop_thread = true;
  atomic_store(&ran_inline, 0);
  for (unsigned r = 0; r < opts->rounds; r++) {
    akb_span span;
    const char *what = "";
    int rc = ak_pool_run(opts, tasks, &span, &what);
    if (rc < 0) {
      akb_fail(res, "asynckit: %s: %s (%s)", what, ak_err_name(rc), ak_strerror(rc));
      return -1;
    }
    series_add(&ak, &span, tasks);
#ifdef AKBENCH_HAVE_UV
    if (opts->no_peer)
      continue;
    rc = akb_uv_pool_run(tasks, opts->batch, &span, &what);
    if (rc < 0) {
      akb_fail(res, "libuv: %s: %s", what, akb_uv_strerror(rc));
      return -1;
    }
    series_add(&uv, &span, tasks);
#endif
  }

  on_loop_thread = false;
  uint64_t inline_tasks = atomic_load(&ran_inline);
  if (inline_tasks)
    akb_fail(res, "asynckit ran %llu tasks on the loop's thread instead of a worker",
             (unsigned long long)inline_tasks);

  double ak_cpu = series_row(res, "asynckit", &ak, tasks);
#ifdef AKBENCH_HAVE_UV
  if (opts->no_peer) {
    akb_note(res, "--no-peer: libuv not run, no ratio");
    return 0;
  }
  double uv_cpu = series_row(res, "libuv", &uv, tasks);
  double ak_ips = akb_median(ak.items_per_s, ak.n);
  double uv_ips = akb_median(uv.items_per_s, uv.n);
  akb_ratio(res, ak_ips / uv_ips, "median items/s, asynckit / libuv %s", akb_uv_version());
  /* CPU oriented the same way: libuv's CPU over ours, > 1 when we use less. */
  akb_param(res, "cpu_ratio", "", uv_cpu / ak_cpu, false);
#else
  (void)ak_cpu;
  akb_note(res, "%s", AKB_UV_MISSING);
#endif
  return 0;
}
