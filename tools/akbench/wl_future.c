/* wl_future.c: the `future` workload: the cost of one future's whole life:
 * create, add one callback, settle, run the callback, release. Owns the two
 * variants: on a loop (the callback runs from the loop's ready queue; the
 * loop runs every 1024 futures) and loopless (ak_future_new(NULL): the
 * callback runs on the settling thread before ak_future_set returns).
 *
 * tools/akbench-callgrind runs this under callgrind with two --iterations and
 * divides the difference of the instruction totals by the difference of the
 * counts; everything here that is not per future (the loop, the warm-up, the
 * free lists filling) is the same in both runs and cancels out.
 */
#include "akbench.h"

#include <asynckit.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>

enum { RUN_EVERY = 1024 /* futures between loop runs */ };

static void bump(ak_future *f, void *arg)
{
  (void)f;
  ++*(uint64_t *)arg;
}

/* One future's life. Returns 0 or a negative error naming the call in *what. */
static int cycle(ak_loop *loop, uint64_t *counter, const char **what)
{
  ak_future *f = ak_future_new(loop);
  if (!f) {
    *what = "ak_future_new";
    return -ENOMEM;
  }
  int rc = ak_future_on_settle(f, bump, counter);
  if (rc < 0) {
    *what = "ak_future_on_settle";
  } else if ((rc = ak_future_set(f, 0, NULL, NULL)) != 0) {
    *what = "ak_future_set";
  }
  ak_future_release(f);
  return rc < 0 ? rc : 0;
}

static int loop_cycles(ak_loop *loop, uint64_t n, uint64_t *counter, const char **what)
{
  for (uint64_t i = 0; i < n; i++) {
    int rc = cycle(loop, counter, what);
    if (rc < 0)
      return rc;
    if ((i + 1) % RUN_EVERY == 0 && (rc = ak_loop_run(loop, AK_RUN_NOWAIT)) < 0) {
      *what = "ak_loop_run(NOWAIT)";
      return rc;
    }
  }
  /* The rest, and anything NOWAIT left for the next iteration. */
  int rc = ak_loop_run(loop, AK_RUN_DEFAULT);
  if (rc < 0) {
    *what = "ak_loop_run(DEFAULT)";
    return rc;
  }
  return 0;
}

static int loopless_cycles(uint64_t n, uint64_t *counter, const char **what)
{
  for (uint64_t i = 0; i < n; i++) {
    uint64_t before = *counter;
    int rc = cycle(NULL, counter, what);
    if (rc < 0)
      return rc;
    /* The contract: a loopless future's callbacks have run when the
     * outermost settle returns. Cheap enough to check every time. */
    if (*counter != before + 1) {
      *what = "a loopless future's callback did not run inside ak_future_set";
      return -EPROTO;
    }
  }
  return 0;
}

/* One timed variant run: warm-up, then n cycles. */
static int timed_run(bool with_loop, uint64_t n, akb_span *span, const char **what)
{
  ak_loop *loop = NULL;
  if (with_loop) {
    int rc = ak_loop_new(&loop, NULL);
    if (rc < 0) {
      *what = "ak_loop_new";
      return rc;
    }
  }
  uint64_t counter = 0;
  /* Warm-up: fills the thread's free lists so the timing sees steady state. */
  int rc = with_loop ? loop_cycles(loop, RUN_EVERY, &counter, what)
                     : loopless_cycles(RUN_EVERY, &counter, what);
  akb_usage before, after;
  if (rc == 0 && (rc = akb_usage_now(&before)) < 0)
    *what = "getrusage";
  if (rc == 0)
    rc = with_loop ? loop_cycles(loop, n, &counter, what) : loopless_cycles(n, &counter, what);
  if (rc == 0 && (rc = akb_usage_now(&after)) < 0)
    *what = "getrusage";
  if (rc == 0 && counter != n + RUN_EVERY) {
    *what = "callbacks run do not match futures settled";
    rc = -EPROTO;
  }
  if (rc == 0)
    *span = akb_span_between(&before, &after);
  if (loop)
    ak_loop_free(loop);
  return rc;
}

static int variant(const akb_opts *opts, akb_result *res, bool with_loop, uint64_t n)
{
  double ns[1000], cpu_ns[1000]; /* one per round; --rounds is at most 1000 */
  const char *name = with_loop ? "asynckit_loop" : "asynckit_loopless";
  for (unsigned r = 0; r < opts->rounds; r++) {
    akb_span span;
    const char *what = "";
    int rc = timed_run(with_loop, n, &span, &what);
    if (rc < 0) {
      akb_fail(res, "%s: %s: %s (%s)", name, what, ak_err_name(rc), ak_strerror(rc));
      return -1;
    }
    ns[r] = span.wall_s * 1e9 / (double)n;
    cpu_ns[r] = (span.user_s + span.sys_s) * 1e9 / (double)n;
  }
  double med = akb_median(ns, opts->rounds);
  akb_row *row = akb_row_add(res, name);
  akb_fig_add(row, "ns_per_future", "", med, false);
  akb_fig_add(row, "futures_per_s", "", 1e9 / med, true);
  akb_fig_add(row, "cpu_ns_per_future", "", akb_median(cpu_ns, opts->rounds), false);
  akb_fig_add(row, "rounds", "", opts->rounds, true);
  return 0;
}

int akb_wl_future(const akb_opts *opts, akb_result *res)
{
  uint64_t n = akb_size(opts, 1000000, 10240);
  bool loop = strcmp(opts->variant, "both") == 0 || strcmp(opts->variant, "loop") == 0;
  bool loopless = strcmp(opts->variant, "both") == 0 || strcmp(opts->variant, "loopless") == 0;
  akb_title(res, "create, on_settle, set, callback, release; median of %u round%s of %llu",
            opts->rounds, opts->rounds == 1 ? "" : "s", (unsigned long long)n);
  if (!loop && !loopless) {
    akb_fail(res, "unknown --variant '%s' (loop, loopless or both)", opts->variant);
    return -1;
  }
  akb_param(res, "iterations", "", (double)n, true);
  akb_param(res, "loop_runs_every", "", RUN_EVERY, true);
  int rc = 0;
  if (loop)
    rc = variant(opts, res, true, n);
  if (rc == 0 && loopless)
    rc = variant(opts, res, false, n);
  if (rc == 0)
    akb_note(res, "instructions per future: tools/akbench-callgrind (callgrind, repeatable)");
  return rc;
}
