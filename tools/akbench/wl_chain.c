/* wl_chain.c: the `chain` workload: long combinator structures. Owns two
 * cases: a then-chain N steps long (each step returns its input's result + 1,
 * started from a promise set after the chain is built; the last future's
 * result must be N) and a join_all over N promises set one by one (the join's
 * result must be N, its inputs in input order). Each case runs in a forked
 * child so its peak RSS is its own; --no-fork runs them here and reports the
 * RSS growth only; --variant chain or join runs one case alone (both: the
 * default).
 *
 * What it checks is the library's promise that a chain of any length runs
 * from the ready queue without growing the stack: a recursive settle would
 * overflow the stack well before 1,000,000 steps (the child dies; we report).
 */
#include "akbench.h"

#include <asynckit.h>

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct case_out {
  int err;              /* 0, a negative error, or -EPROTO for a wrong result */
  char what[160];       /* the failed call or check */
  int64_t result;       /* the last step's / the join's result */
  double build_s;       /* creating the chain or the join */
  double run_s;         /* settling the first promise(s) until the end settles */
  double release_s;     /* releasing everything and freeing the loop */
  long rss_before_kb;   /* resident set before building */
  long maxrss_after_kb; /* peak resident set at the end */
  bool ran;             /* a loop was had and the case ran: figures mean something */
} case_out;

typedef int (*case_fn)(ak_loop *loop, uint64_t n, case_out *out);

static double since_s(const akb_usage *t0)
{
  akb_usage t;
  if (akb_usage_now(&t) < 0)
    return -1;
  return (double)(t.wall_ns - t0->wall_ns) / 1e9;
}

static int fail(case_out *out, int err, const char *what)
{
  out->err = err;
  snprintf(out->what, sizeof(out->what), "%s", what);
  return err;
}

static int64_t step(ak_future *input, void *arg, ak_future *self)
{
  (void)arg;
  (void)self;
  return ak_future_result(input) + 1;
}

static int chain_case(ak_loop *loop, uint64_t n, case_out *out)
{
  akb_usage t0;
  if (akb_usage_now(&t0) < 0)
    return fail(out, -errno, "clock");
  ak_future *first = ak_future_new(loop);
  if (!first)
    return fail(out, -ENOMEM, "ak_future_new");
  ak_future *last = ak_future_ref(first);
  for (uint64_t i = 0; i < n; i++) {
    ak_future *next = ak_then(last, step, NULL, NULL);
    if (!next) {
      ak_future_release(last);
      ak_future_release(first);
      return fail(out, -ENOMEM, "ak_then");
    }
    /* The step holds its input; the chain keeps itself alive. */
    ak_future_release(last);
    last = next;
  }
  out->build_s = since_s(&t0);

  if (akb_usage_now(&t0) < 0)
    return fail(out, -errno, "clock");
  int rc = ak_future_set(first, 0, NULL, NULL);
  ak_future_release(first);
  if (rc != 0) {
    ak_future_release(last);
    return fail(out, rc, "ak_future_set");
  }
  rc = ak_future_wait(last, AK_FOREVER);
  out->run_s = since_s(&t0);
  out->result = ak_future_result(last);
  ak_state st = ak_future_state(last);

  if (akb_usage_now(&t0) < 0)
    return fail(out, -errno, "clock");
  ak_future_release(last);
  ak_loop_free(loop);
  out->release_s = since_s(&t0);

  if (rc != 0)
    return fail(out, rc, "ak_future_wait");
  if (st != AK_DONE)
    return fail(out, -EPROTO, "the chain's last future is not DONE");
  if (out->result != (int64_t)n)
    return fail(out, -EPROTO, "the chain's result is not its length");
  return 0;
}

/* Checks the join's inputs come back in input order with their results. */
static int check_join(const ak_future *join, uint64_t n, case_out *out)
{
  if (ak_join_count(join) != n)
    return fail(out, -EPROTO, "ak_join_count is not the number of inputs");
  uint64_t probes[] = {0, n / 2, n - 1};
  for (size_t i = 0; i < sizeof(probes) / sizeof(probes[0]); i++) {
    ak_future *in = ak_join_input(join, probes[i]);
    if (!in || ak_future_result(in) != (int64_t)probes[i])
      return fail(out, -EPROTO, "ak_join_input is not in input order");
  }
  return 0;
}

static int join_case(ak_loop *loop, uint64_t n, case_out *out)
{
  akb_usage t0;
  if (akb_usage_now(&t0) < 0)
    return fail(out, -errno, "clock");
  ak_future **ps = calloc(n, sizeof(*ps));
  if (!ps)
    return fail(out, -ENOMEM, "calloc");
  int rc = 0;
  ak_future *join = NULL;
  for (uint64_t i = 0; i < n && rc == 0; i++)
    if (!(ps[i] = ak_future_new(loop)))
      rc = fail(out, -ENOMEM, "ak_future_new");
  if (rc == 0 && !(join = ak_join_all(ps, n, 0)))
    rc = fail(out, -ENOMEM, "ak_join_all");
  out->build_s = since_s(&t0);

  if (rc == 0 && akb_usage_now(&t0) < 0)
    rc = fail(out, -errno, "clock");
  for (uint64_t i = 0; i < n && rc == 0; i++) {
    int src = ak_future_set(ps[i], (int64_t)i, NULL, NULL);
    if (src != 0)
      rc = fail(out, src, "ak_future_set");
  }
  if (rc == 0 && (rc = ak_future_wait(join, AK_FOREVER)) != 0)
    fail(out, rc, "ak_future_wait");
  out->run_s = since_s(&t0);
  if (rc == 0) {
    out->result = ak_future_result(join);
    if (ak_future_state(join) != AK_DONE)
      rc = fail(out, -EPROTO, "the join is not DONE");
    else if (out->result != (int64_t)n)
      rc = fail(out, -EPROTO, "the join's result is not the number of inputs");
    else
      rc = check_join(join, n, out);
  }

  akb_usage t1;
  if (akb_usage_now(&t1) < 0 && rc == 0)
    rc = fail(out, -errno, "clock");
  ak_future_release(join);
  for (uint64_t i = 0; i < n; i++)
    ak_future_release(ps[i]);
  free(ps);
  ak_loop_free(loop);
  out->release_s = since_s(&t1);
  return rc;
}

typedef struct case_arg {
  case_fn fn;
  uint64_t n;
} case_arg;

/* The body of a case, in the child or here: a loop of its own, the RSS
 * before, the case, the peak after. Returns 0, 1 on failure. */
static int run_case(void *argp, void *outp)
{
  case_arg *arg = argp;
  case_out *out = outp;
  out->rss_before_kb = akb_rss_now_kb();
  ak_loop *loop = NULL;
  int rc = ak_loop_new(&loop, NULL);
  if (rc < 0) {
    fail(out, rc, "ak_loop_new");
    return 1;
  }
  out->ran = true;
  rc = arg->fn(loop, arg->n, out); /* frees the loop */
  akb_usage u;
  if (akb_usage_now(&u) == 0)
    out->maxrss_after_kb = u.maxrss_kb;
  return rc == 0 ? 0 : 1;
}

static void report_case(akb_result *res, const char *name, const case_out *out, uint64_t n,
                        long peak_kb, bool forked)
{
  akb_row *row = akb_row_add(res, name);
  akb_fig_add(row, "build_s", "", out->build_s, false);
  akb_fig_add(row, "run_s", "", out->run_s, false);
  akb_fig_add(row, "release_s", "", out->release_s, false);
  akb_fig_add(row, "ns_per_step", "", out->run_s * 1e9 / (double)n, false);
  /* In this process the peak may be an earlier workload's: only forked
   * children give a clean peak. */
  akb_fig_add(row, "peak_rss_kb", "", forked ? (double)peak_kb : NAN, true);
  long growth = out->maxrss_after_kb - out->rss_before_kb;
  akb_fig_add(row, "rss_growth_kb", "", (double)growth, true);
  akb_fig_add(row, "bytes_per_step", "", (double)growth * 1024 / (double)n, false);
  akb_fig_add(row, "result", "", (double)out->result, true);
}

static int one_case(const akb_opts *opts, akb_result *res, const char *name, case_fn fn, uint64_t n)
{
  case_arg arg = {fn, n};
  case_out out;
  memset(&out, 0, sizeof(out));
  long peak_kb = -1;
  int status = 0;
  if (opts->no_fork) {
    status = run_case(&arg, &out);
  } else {
    struct rusage ru;
    int rc = akb_run_child(run_case, &arg, &out, sizeof(out), &status, &ru);
    if (rc < 0) {
      akb_fail(res,
               "%s: the child did not report (%s): a crash, e.g. a stack overflow "
               "in a long chain",
               name, ak_strerror(rc));
      return -1;
    }
    peak_kb = ru.ru_maxrss;
  }
  if (out.ran)
    report_case(res, name, &out, n, peak_kb, !opts->no_fork);
  if (status != 0 || out.err != 0) {
    if (out.ran)
      akb_fail(res, "%s: %s: %s (%s); result %lld, expected %llu", name, out.what,
               ak_err_name(out.err), ak_strerror(out.err), (long long)out.result,
               (unsigned long long)n);
    else
      akb_fail(res, "%s: %s: %s (%s)", name, out.what, ak_err_name(out.err), ak_strerror(out.err));
  }
  return 0;
}

int akb_wl_chain(const akb_opts *opts, akb_result *res)
{
  uint64_t n = akb_size(opts, 1000000, 10000);
  akb_title(res, "a then-chain %llu steps long and a join_all of %llu promises%s",
            (unsigned long long)n, (unsigned long long)n,
            opts->no_fork ? " (in this process)" : " (each in a forked child)");
  akb_param(res, "steps", "", (double)n, true);
  /* --variant chain or join runs one case alone: tools/akbench-callgrind
   * counts the instructions of one at a time. */
  const char *v = opts->variant;
  bool chain = !v || strcmp(v, "both") == 0 || strcmp(v, "chain") == 0;
  bool join = !v || strcmp(v, "both") == 0 || strcmp(v, "join") == 0;
  if (!chain && !join) {
    akb_fail(res, "no case '%s' (chain, join, both)", v);
    return 0;
  }
  int rc = chain ? one_case(opts, res, "asynckit_chain", chain_case, n) : 0;
  if (rc == 0 && join)
    rc = one_case(opts, res, "asynckit_join", join_case, n);
  return rc;
}
