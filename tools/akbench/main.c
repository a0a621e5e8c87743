/* main.c: akbench's command line. Owns parsing the options, the table of
 * workloads (generated from AKB_WORKLOADS), running the ones asked for,
 * printing each one's table as it finishes and the JSON document at the end,
 * and the exit status. Does not measure anything itself.
 *
 * Exit status: 0 every workload ran and its checks passed; 1 a workload
 * failed (a wrong result, a library error); 2 usage.
 */
#include "akbench.h"

#include <asynckit.h>

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct workload {
  const char *name;
  const char *desc;
  int (*run)(const akb_opts *opts, akb_result *res);
} workload;

static const workload workloads[] = {
#define AKB__ENTRY(name, desc) {#name, desc, akb_wl_##name},
    AKB_WORKLOADS(AKB__ENTRY)
#undef AKB__ENTRY
};

enum { NWORKLOADS = sizeof(workloads) / sizeof(workloads[0]) };

static void usage(FILE *to)
{
  fprintf(to, "usage: akbench WORKLOAD|all|list [options]\n\n"
              "workloads:\n");
  for (size_t i = 0; i < NWORKLOADS; i++)
    fprintf(to, "  %-8s %s\n", workloads[i].name, workloads[i].desc);
  fprintf(to,
          "\noptions:\n"
          "  --json FILE|-     also write the results as JSON (- : stdout; the tables\n"
          "                    then go to stderr)\n"
          "  --threads N       pool threads, and UV_THREADPOOL_SIZE for libuv (2)\n"
          "  --rounds N        repetitions; for workloads with a peer, A B pairs (3)\n"
          "  --pairs N         the same as --rounds\n"
          "  --batch N         pool: tasks submitted before waiting (1024)\n"
          "  --size N          the workload's count: pool tasks, future cycles,\n"
          "                    chain steps and join width\n"
          "  --iterations N    the same as --size (future: for akbench-callgrind)\n"
          "  --variant V       future: loop, loopless or both (both); download, hash: one set\n"
          "                    chain: chain, join or both (both)\n"
          "  --quick           small sizes (10,000), for tests\n"
          "  --no-fork         chain: run the cases in this process (RSS deltas only)\n"
          "  --no-peer         pool: run asynckit only (for profiling; no ratio)\n"
          "  --backend B       the loops' backend: uring, epoll, or both (each\n"
          "                    workload runs on io_uring, then on epoll, each against\n"
          "                    its peer); default: AK_BACKEND as the environment has it\n"
          "\n%s\n",
#ifdef AKBENCH_HAVE_UV
          "libuv peer: built in"
#else
          AKB_UV_MISSING
#endif
  );
}

/* A positive count; rejects trailing junk, zero and overflow. */
static int parse_count(const char *opt, const char *s, uint64_t max, uint64_t *out)
{
  char *end = NULL;
  errno = 0;
  unsigned long long v = s ? strtoull(s, &end, 10) : 0;
  if (!s || errno || end == s || *end || v == 0 || v > max || s[0] == '-') {
    fprintf(stderr, "akbench: %s needs a count from 1 to %llu\n", opt, (unsigned long long)max);
    return -1;
  }
  *out = v;
  return 0;
}

static const workload *find_workload(const char *name)
{
  for (size_t i = 0; i < NWORKLOADS; i++)
    if (strcmp(workloads[i].name, name) == 0)
      return &workloads[i];
  return NULL;
}

typedef struct cli {
  akb_opts opts;
  const char *what;      /* a workload name, or "all" */
  const char *json_path; /* --json, or NULL */
} cli;

/* Returns 0, 1 when the program should exit 0 (help), -1 on a usage error. */
static int parse_args(int argc, char **argv, cli *c)
{
  memset(c, 0, sizeof(*c));
  c->opts.threads = 2;
  c->opts.rounds = 3;
  c->opts.batch = 1024;
  c->opts.variant = "both";
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    const char *next = i + 1 < argc ? argv[i + 1] : NULL;
    uint64_t v = 0;
    if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
      usage(stdout);
      return 1;
    } else if (strcmp(a, "--json") == 0) {
      if (!next) {
        fprintf(stderr, "akbench: --json needs FILE or -\n");
        return -1;
      }
      c->json_path = argv[++i];
    } else if (strcmp(a, "--threads") == 0) {
      if (parse_count(a, next, 1024, &v))
        return -1;
      c->opts.threads = (unsigned)v;
      i++;
    } else if (strcmp(a, "--rounds") == 0 || strcmp(a, "--pairs") == 0) {
      if (parse_count(a, next, 1000, &v))
        return -1;
      c->opts.rounds = (unsigned)v;
      i++;
    } else if (strcmp(a, "--batch") == 0) {
      if (parse_count(a, next, 1u << 20, &v))
        return -1;
      c->opts.batch = (unsigned)v;
      i++;
    } else if (strcmp(a, "--size") == 0 || strcmp(a, "--iterations") == 0) {
      if (parse_count(a, next, UINT64_C(1) << 40, &v))
        return -1;
      c->opts.size = v;
      i++;
    } else if (strcmp(a, "--variant") == 0) {
      if (!next) {
        fprintf(stderr, "akbench: --variant needs a name\n");
        return -1;
      }
      c->opts.variant = argv[++i];
    } else if (strcmp(a, "--backend") == 0) {
      if (!next || (strcmp(next, "uring") != 0 && strcmp(next, "epoll") != 0 &&
                    strcmp(next, "both") != 0)) {
        fprintf(stderr, "akbench: --backend needs uring, epoll or both\n");
        return -1;
      }
      c->opts.backend = argv[++i];
    } else if (strcmp(a, "--quick") == 0) {
      c->opts.quick = true;
    } else if (strcmp(a, "--no-fork") == 0) {
      c->opts.no_fork = true;
    } else if (strcmp(a, "--no-peer") == 0) {
      c->opts.no_peer = true;
    } else if (a[0] == '-') {
      fprintf(stderr, "akbench: unknown option '%s'\n", a);
      return -1;
    } else if (!c->what) {
      c->what = a;
    } else {
      fprintf(stderr, "akbench: one workload at a time ('%s' and '%s'); or 'all'\n", c->what, a);
      return -1;
    }
  }
  if (!c->what) {
    usage(stderr);
    return -1;
  }
  return 0;
}

/* Says which backend a loop made now runs on, and why (after the run: the
 * workload's own loops were made the same way). */
static void akb_note_backend(akb_result *res)
{
  ak_loop *loop = NULL;
  int rc = ak_loop_new(&loop, NULL);
  if (rc < 0) {
    akb_note(res, "backend: none (%s)", ak_err_name(rc));
    return;
  }
  ak_features ft;
  ak_loop_features(loop, &ft);
  akb_note(res, "backend: %s (%s)", ak_backend_name(ft.backend), ft.backend_reason);
  ak_loop_free(loop);
}

static int write_json(const char *path, const akb_result *const *res, size_t n,
                      const akb_opts *opts)
{
  bool to_stdout = strcmp(path, "-") == 0;
  FILE *f = to_stdout ? stdout : fopen(path, "w");
  if (!f) {
    fprintf(stderr, "akbench: %s: %s\n", path, strerror(errno));
    return -1;
  }
  int rc = akb_write_json(f, res, n, opts);
  if (rc != 0)
    fprintf(stderr, "akbench: writing %s: %s\n", path, strerror(errno));
  if (!to_stdout && fclose(f) != 0 && rc == 0) {
    fprintf(stderr, "akbench: closing %s: %s\n", path, strerror(errno));
    rc = -1;
  }
  return rc;
}

int main(int argc, char **argv)
{
  cli c;
  int rc = parse_args(argc, argv, &c);
  if (rc != 0)
    return rc > 0 ? 0 : 2;
  if (strcmp(c.what, "list") == 0) {
    for (size_t i = 0; i < NWORKLOADS; i++)
      printf("%s\n", workloads[i].name);
    return 0;
  }

  const workload *todo[NWORKLOADS];
  size_t ntodo = 0;
  if (strcmp(c.what, "all") == 0) {
    for (size_t i = 0; i < NWORKLOADS; i++)
      todo[ntodo++] = &workloads[i];
  } else {
    todo[0] = find_workload(c.what);
    if (!todo[0]) {
      fprintf(stderr, "akbench: no workload '%s'\n\n", c.what);
      usage(stderr);
      return 2;
    }
    ntodo = 1;
  }

  /* libuv reads UV_THREADPOOL_SIZE once, when its threadpool starts (at the
   * first uv_queue_work), so it must be set before any uv call: here. */
  char threads[16];
  snprintf(threads, sizeof(threads), "%u", c.opts.threads);
  if (setenv("UV_THREADPOOL_SIZE", threads, 1) != 0) {
    perror("akbench: setenv UV_THREADPOOL_SIZE");
    return 1;
  }

  /* The backends to run each workload on: set through AK_BACKEND, which
   * every ak_loop_new (ours and the tools') reads. */
  const char *backends[2] = {NULL, NULL};
  size_t nbackends = 1;
  if (c.opts.backend && strcmp(c.opts.backend, "both") == 0) {
    backends[0] = "uring";
    backends[1] = "epoll";
    nbackends = 2;
  } else {
    backends[0] = c.opts.backend;
  }

  /* With the JSON on stdout the tables go to stderr, so stdout parses. */
  FILE *table = c.json_path && strcmp(c.json_path, "-") == 0 ? stderr : stdout;
  static akb_result results[2 * NWORKLOADS];
  static char names[2 * NWORKLOADS][64];
  const akb_result *done[2 * NWORKLOADS];
  size_t ndone = 0;
  bool all_ok = true;
  for (size_t i = 0; i < ntodo; i++) {
    for (size_t b = 0; b < nbackends; b++) {
      if (backends[b] && setenv("AK_BACKEND", backends[b], 1) != 0) {
        perror("akbench: setenv AK_BACKEND");
        return 1;
      }
      akb_result *res = &results[ndone];
      const char *name = todo[i]->name;
      if (nbackends > 1) {
        snprintf(names[ndone], sizeof(names[ndone]), "%s@%s", todo[i]->name, backends[b]);
        name = names[ndone];
      }
      akb_result_init(res, name);
      if (todo[i]->run(&c.opts, res) != 0)
        res->ok = false;
      akb_note_backend(res);
      akb_print_table(table, res);
      fflush(table);
      done[ndone++] = res;
      all_ok = all_ok && res->ok;
    }
  }

  if (c.json_path && write_json(c.json_path, done, ndone, &c.opts) != 0)
    return 1;
  return all_ok ? 0 : 1;
}
