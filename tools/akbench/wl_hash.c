/* wl_hash.c: the `hash` workload: aksum (build/tools/aksum, SHA-256, -j the
 * number of CPUs) against sha256sum on the same data, in the page cache:
 * 1000 files of 1 MiB (--quick: 100) and one file of 2 GiB (--quick:
 * 64 MiB). Both run as child processes with their output captured; the
 * outputs must be identical. A B alternated, medians of the wall time; each
 * side's CPU time is its own (wait4).
 *
 * Fairness: the data is read into the page cache right before every run,
 * and one untimed run of each goes first. The ratio is sha256sum's time over
 * aksum's for the many files (above 1: aksum faster); ratio_big is the same
 * for the single file, where hashing is sequential and only the overlap of
 * reading with hashing can help.
 */
#define _GNU_SOURCE
#include "akb_fs.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

enum { MAX_ROUNDS = 100 };

typedef struct data_set {
  const char *name; /* "files", "big" */
  char **paths;     /* argv tail */
  size_t n;
  uint64_t bytes;
} data_set;

typedef struct side {
  double wall[MAX_ROUNDS], cpu[MAX_ROUNDS];
  unsigned n;
} side;

static int make_sets(const akb_opts *opts, data_set *files, data_set *big, akb_result *res)
{
  const char *dir = akb_fs_dir();
  if (!dir) {
    akb_fail(res, "no directory for the data set (set AKBENCH_DIR)");
    return -1;
  }
  size_t nfiles = opts->quick ? 100 : 1000;
  uint64_t big_size = opts->quick ? (64u << 20) : (UINT64_C(2) << 30);
  char sub[4200];
  snprintf(sub, sizeof(sub), "%s/hash-%zux1MiB", dir, nfiles);
  mkdir(sub, 0755);
  files->name = "files";
  files->n = nfiles;
  files->bytes = (uint64_t)nfiles << 20;
  files->paths = calloc(nfiles, sizeof(char *));
  for (size_t i = 0; i < nfiles; i++) {
    char p[4300];
    snprintf(p, sizeof(p), "%s/f%04zu", sub, i);
    files->paths[i] = strdup(p);
    int rc = akb_fs_make_file(p, 1u << 20);
    if (rc < 0) {
      akb_fail(res, "making %s: %s", p, strerror(-rc));
      return -1;
    }
  }
  big->name = "big";
  big->n = 1;
  big->bytes = big_size;
  big->paths = calloc(1, sizeof(char *));
  char p[4300];
  snprintf(p, sizeof(p), "%s/hash-%lluMiB.bin", dir, (unsigned long long)(big_size >> 20));
  big->paths[0] = strdup(p);
  int rc = akb_fs_make_file(p, big_size);
  if (rc < 0) {
    akb_fail(res, "making %s: %s", p, strerror(-rc));
    return -1;
  }
  return 0;
}

static void free_set(data_set *s)
{
  for (size_t i = 0; s->paths && i < s->n; i++)
    free(s->paths[i]);
  free(s->paths);
}

static int warm_set(const data_set *s)
{
  for (size_t i = 0; i < s->n; i++) {
    int rc = akb_fs_warm(s->paths[i]);
    if (rc < 0)
      return rc;
  }
  return 0;
}

/* Runs prog [args] PATHS...; returns its status, with stdout in *out. */
static int run_on(const char *prog, const char *const *args, size_t nargs, const data_set *s,
                  char **out, akb_span *span)
{
  char **argv = calloc(1 + nargs + s->n + 1, sizeof(char *));
  if (!argv)
    return -ENOMEM;
  size_t k = 0;
  argv[k++] = (char *)prog;
  for (size_t i = 0; i < nargs; i++)
    argv[k++] = (char *)args[i];
  for (size_t i = 0; i < s->n; i++)
    argv[k++] = s->paths[i];
  argv[k] = NULL;
  int rc = akb_fs_run(argv, out, NULL, false, span);
  free(argv);
  return rc;
}

static const char *const aksum_args[] = {"--no-progress"};

/* One A B pair (or the untimed warm-up) on a data set. */
static int pair(akb_result *res, const char *aksum, const data_set *s, side *a, side *b, bool timed,
                bool *checked)
{
  akb_span span;
  char *out_a = NULL, *out_b = NULL;
  int rc = warm_set(s);
  if (rc == 0)
    rc = run_on(aksum, aksum_args, 1, s, &out_a, &span);
  if (rc != 0) {
    akb_fail(res, "%s: aksum failed (%s %d)", s->name, rc < 0 ? "error" : "status", rc);
    goto out;
  }
  if (timed) {
    a->wall[a->n] = span.wall_s;
    a->cpu[a->n++] = span.user_s + span.sys_s;
  }
  rc = warm_set(s);
  if (rc == 0)
    rc = run_on("sha256sum", NULL, 0, s, &out_b, &span);
  if (rc != 0) {
    akb_fail(res, "%s: sha256sum failed (%s %d)", s->name, rc < 0 ? "error" : "status", rc);
    goto out;
  }
  if (timed) {
    b->wall[b->n] = span.wall_s;
    b->cpu[b->n++] = span.user_s + span.sys_s;
  }
  if (!*checked) {
    *checked = true;
    if (!out_a || !out_b || strcmp(out_a, out_b) != 0)
      akb_fail(res, "%s: aksum's output differs from sha256sum's", s->name);
  }
out:
  free(out_a);
  free(out_b);
  return rc;
}

/* Figure keys are kept by pointer: literals only. */
static void add_figs(akb_row *row, const char *wall_key, const char *rate_key, const char *cpu_key,
                     side *s, uint64_t bytes)
{
  double wall = akb_median(s->wall, s->n);
  akb_fig_add(row, wall_key, "", wall, false);
  akb_fig_add(row, rate_key, "", (double)bytes / 1048576.0 / wall, false);
  akb_fig_add(row, cpu_key, "", akb_median(s->cpu, s->n), false);
}

int akb_wl_hash(const akb_opts *opts, akb_result *res)
{
  const char *aksum = akb_fs_sibling("aksum");
  if (!aksum) {
    akb_fail(res, "aksum is not built next to akbench (build/tools/aksum)");
    return -1;
  }
  static char aksum_path[4400];
  snprintf(aksum_path, sizeof(aksum_path), "%s", aksum);
  data_set files = {0}, big = {0};
  int ret = -1;
  if (make_sets(opts, &files, &big, res) < 0)
    goto out;
  bool have_peer = akb_fs_have("sha256sum");
  if (!have_peer) {
    akb_note(res, "sha256sum: not found; no peer");
    goto out;
  }
  akb_title(
      res, "SHA-256 of %zu files of 1 MiB and of one %llu MiB file, page cache, %u A B pair%s",
      files.n, (unsigned long long)(big.bytes >> 20), opts->rounds, opts->rounds == 1 ? "" : "s");
  akb_param(res, "files", "", (double)files.n, true);
  akb_param(res, "big_mib", "", (double)(big.bytes >> 20), true);
  static side ak_f, sh_f, ak_b, sh_b;
  memset(&ak_f, 0, sizeof(ak_f));
  memset(&sh_f, 0, sizeof(sh_f));
  memset(&ak_b, 0, sizeof(ak_b));
  memset(&sh_b, 0, sizeof(sh_b));
  bool checked_f = false, checked_b = false;
  if (pair(res, aksum_path, &files, &ak_f, &sh_f, false, &checked_f) != 0)
    goto out;
  for (unsigned r = 0; r < opts->rounds && r < MAX_ROUNDS; r++) {
    if (pair(res, aksum_path, &files, &ak_f, &sh_f, true, &checked_f) != 0)
      goto out;
  }
  if (pair(res, aksum_path, &big, &ak_b, &sh_b, false, &checked_b) != 0)
    goto out;
  for (unsigned r = 0; r < opts->rounds && r < MAX_ROUNDS; r++) {
    if (pair(res, aksum_path, &big, &ak_b, &sh_b, true, &checked_b) != 0)
      goto out;
  }
  akb_row *a = akb_row_add(res, "aksum");
  add_figs(a, "files_wall_s", "files_mib_per_s", "files_cpu_s", &ak_f, files.bytes);
  add_figs(a, "big_wall_s", "big_mib_per_s", "big_cpu_s", &ak_b, big.bytes);
  akb_row *b = akb_row_add(res, "sha256sum");
  add_figs(b, "files_wall_s", "files_mib_per_s", "files_cpu_s", &sh_f, files.bytes);
  add_figs(b, "big_wall_s", "big_mib_per_s", "big_cpu_s", &sh_b, big.bytes);
  double rf = akb_median(sh_f.wall, sh_f.n) / akb_median(ak_f.wall, ak_f.n);
  double rb = akb_median(sh_b.wall, sh_b.n) / akb_median(ak_b.wall, ak_b.n);
  akb_ratio(res, rf, "median time over %zu files, sha256sum / aksum", files.n);
  akb_param(res, "ratio_big", "", rb, false);
  akb_note(res, "outputs compared: identical unless a failure says otherwise");
  ret = 0;
out:
  free_set(&files);
  free_set(&big);
  return ret;
}
