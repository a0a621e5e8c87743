/* wl_hash.c: the `hash` workload: SHA-256 of the same data, in the page
 * cache, by aksum (build/tools/aksum, -j the number of CPUs) and by what a
 * user would reach for instead: sha256sum, `openssl dgst -sha256` (the same
 * SHA-NI code aksum uses, one process, one core) and `xargs -P2 sha256sum`
 * (two sha256sum processes, 50 files each call). Three data sets: 1000 files
 * of 1 MiB (--quick: 100), one file of 2 GiB (--quick: 64 MiB), and a tree
 * of 50,000 files of about 4 KiB in 100 directories (--quick: 5,000 in 10),
 * where the cost per file is what counts: there aksum runs as `aksum -r
 * DIR` and the peers as a user runs them on a tree, `find DIR -type f |
 * xargs sha256sum` and the same with `xargs -P2 -n 1000` (openssl has no
 * such form: its row has no tree figures). --variant files|big|tree runs
 * one set (default: all three). Every
 * tool runs as a child process with its output captured; each output must
 * give the same digest for every file as sha256sum's (aksum's byte for
 * byte; openssl's after rewriting its "SHA2-256(name)= HEX" lines; xargs's
 * after sorting, its two processes interleave; on the tree every output
 * after sorting, since find lists in directory order).
 *
 * Fairness: the data set is read into the page cache right before every
 * run (the VM reclaims idle pages after about a minute), one untimed round
 * of every tool goes first, and within a round the tools run one after the
 * other, the first one changing each round (A B C D, B C D A, ...). Medians
 * of the wall times; each tool's CPU time is its own (wait4). A ratio is the
 * peer's median time over aksum's (above 1: aksum faster).
 */
#define _GNU_SOURCE
#include "akb_fs.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

enum { MAX_ROUNDS = 100, N_TOOLS = 4, XARGS_BATCH = 50, TREE_XARGS_BATCH = 1000 };

typedef struct data_set {
  const char *name; /* "files", "big", "tree" */
  char **paths;     /* argv tail (tree: every file, for warming only) */
  size_t n;
  uint64_t bytes;
  char list[4400]; /* the paths NUL-separated in a file, for xargs -0 -a */
  char root[4300]; /* tree: the directory given to aksum -r and find */
} data_set;

typedef struct side {
  double wall[MAX_ROUNDS], cpu[MAX_ROUNDS];
  unsigned n;
} side;

typedef enum tool_id { T_AKSUM, T_SHA256SUM, T_OPENSSL, T_XARGS } tool_id;

typedef struct tool {
  const char *name; /* the row's name */
  bool have;        /* installed */
  side files, big, tree;
} tool;

static int make_list(data_set *s, const char *dir)
{
  snprintf(s->list, sizeof(s->list), "%s/hash-%s-%zu.list", dir, s->name, s->n);
  FILE *f = fopen(s->list, "we");
  if (!f)
    return -errno;
  for (size_t i = 0; i < s->n; i++)
    fwrite(s->paths[i], 1, strlen(s->paths[i]) + 1, f);
  return fclose(f) == 0 ? 0 : -errno;
}

/* A small file of exactly size bytes of pseudo-random data (seeded by
 * seed) unless it is one already; akb_fs_make_file fills 1 MiB for any
 * size, too slow for 50,000 files. */
static int make_small_file(const char *path, size_t size, uint64_t seed)
{
  struct stat st;
  if (stat(path, &st) == 0 && S_ISREG(st.st_mode) && (uint64_t)st.st_size == size)
    return 0;
  uint64_t buf[1024];
  uint64_t x = 0x9e3779b97f4a7c15u ^ (seed * 0x100000001b3u);
  for (size_t i = 0; i < sizeof(buf) / 8; i++) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    buf[i] = x;
  }
  if (size > sizeof(buf))
    return -EINVAL;
  FILE *f = fopen(path, "we");
  if (!f)
    return -errno;
  size_t put = fwrite(buf, 1, size, f);
  int rc = fclose(f);
  return put == size && rc == 0 ? 0 : -EIO;
}

/* The tree: dirs directories of per_dir files each, sizes from 3 to 5 KiB
 * (4 KiB on average). */
static int make_tree(data_set *t, const char *dir, size_t dirs, size_t per_dir, akb_result *res)
{
  t->name = "tree";
  t->n = dirs * per_dir;
  t->paths = calloc(t->n, sizeof(char *));
  if (!t->paths) {
    akb_fail(res, "out of memory");
    return -1;
  }
  snprintf(t->root, sizeof(t->root), "%s/hash-tree-%zux%zu", dir, dirs, per_dir);
  mkdir(t->root, 0755);
  size_t k = 0;
  for (size_t d = 0; d < dirs; d++) {
    char sub[4400];
    snprintf(sub, sizeof(sub), "%s/d%03zu", t->root, d);
    mkdir(sub, 0755);
    for (size_t i = 0; i < per_dir; i++, k++) {
      char p[4500];
      snprintf(p, sizeof(p), "%s/f%05zu", sub, i);
      size_t size = 3072 + (k * 2654435761u) % 2049;
      t->paths[k] = strdup(p);
      int rc = t->paths[k] ? make_small_file(p, size, k) : -ENOMEM;
      if (rc < 0) {
        akb_fail(res, "making %s: %s", p, strerror(-rc));
        return -1;
      }
      t->bytes += size;
    }
  }
  return 0;
}

static bool wants_set(const akb_opts *opts, const char *name)
{
  return !opts->variant || strcmp(opts->variant, "both") == 0 ||
         strcmp(opts->variant, "all") == 0 || strcmp(opts->variant, name) == 0;
}

static int make_sets(const akb_opts *opts, data_set *files, data_set *big, data_set *tree,
                     akb_result *res)
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
  if (!files->paths) {
    akb_fail(res, "out of memory");
    return -1;
  }
  for (size_t i = 0; i < nfiles; i++) {
    char p[4300];
    snprintf(p, sizeof(p), "%s/f%04zu", sub, i);
    files->paths[i] = strdup(p);
    int rc = files->paths[i] ? akb_fs_make_file(p, 1u << 20) : -ENOMEM;
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
  big->paths[0] = big->paths ? strdup(p) : NULL;
  int rc = big->paths[0] ? akb_fs_make_file(p, big_size) : -ENOMEM;
  if (rc < 0) {
    akb_fail(res, "making %s: %s", p, strerror(-rc));
    return -1;
  }
  rc = make_list(files, dir);
  if (rc == 0)
    rc = make_list(big, dir);
  if (rc < 0) {
    akb_fail(res, "writing the file lists for xargs: %s", strerror(-rc));
    return -1;
  }
  if (wants_set(opts, "tree") &&
      make_tree(tree, dir, opts->quick ? 10 : 100, opts->quick ? 500 : 500, res) < 0)
    return -1;
  return 0;
}

static void free_set(data_set *s)
{
  for (size_t i = 0; s->paths && i < s->n; i++)
    free(s->paths[i]);
  free(s->paths);
  if (s->list[0])
    unlink(s->list);
}

/* Reads a small file to its end with a buffer of the caller's (no
 * 1 MiB allocation per file, as akb_fs_warm makes). */
static int warm_small(const char *path, char *buf, size_t len)
{
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return -errno;
  ssize_t n;
  while ((n = read(fd, buf, len)) > 0)
    ;
  int rc = n < 0 ? -errno : 0;
  close(fd);
  return rc;
}

static int warm_set(const data_set *s)
{
  if (s->root[0]) {
    static char buf[16384];
    for (size_t i = 0; i < s->n; i++) {
      int rc = warm_small(s->paths[i], buf, sizeof(buf));
      if (rc < 0)
        return rc;
    }
    return 0;
  }
  for (size_t i = 0; i < s->n; i++) {
    int rc = akb_fs_warm(s->paths[i]);
    if (rc < 0)
      return rc;
  }
  return 0;
}

/* Runs tool t on data set s; its status, with stdout in *out. */
static int run_tool(tool_id t, const char *aksum, const data_set *s, char **out, akb_span *span)
{
  char **argv = calloc(8 + s->n + 1, sizeof(char *));
  if (!argv)
    return -ENOMEM;
  size_t k = 0;
  bool paths = true;
  static char batch[16];
  static char script[9000];
  if (s->root[0]) {
    /* The tree: aksum walks it; the peers as a user runs them on a tree. */
    if (t == T_AKSUM) {
      argv[k++] = (char *)aksum;
      argv[k++] = "--no-progress";
      argv[k++] = "-r";
      argv[k++] = (char *)s->root;
    } else {
      if (t == T_XARGS)
        snprintf(script, sizeof(script),
                 "find '%s' -type f -print0 | xargs -0 -P2 -n %d sha256sum", s->root,
                 TREE_XARGS_BATCH);
      else
        snprintf(script, sizeof(script), "find '%s' -type f -print0 | xargs -0 sha256sum",
                 s->root);
      argv[k++] = "sh";
      argv[k++] = "-c";
      argv[k++] = script;
    }
    argv[k] = NULL;
    int rc = akb_fs_run(argv, out, NULL, false, span);
    free(argv);
    return rc;
  }
  switch (t) {
  case T_AKSUM:
    argv[k++] = (char *)aksum;
    argv[k++] = "--no-progress";
    break;
  case T_SHA256SUM:
    argv[k++] = "sha256sum";
    break;
  case T_OPENSSL:
    argv[k++] = "openssl";
    argv[k++] = "dgst";
    argv[k++] = "-sha256";
    break;
  case T_XARGS:
    snprintf(batch, sizeof(batch), "%d", XARGS_BATCH);
    argv[k++] = "xargs";
    argv[k++] = "-0";
    argv[k++] = "-a";
    argv[k++] = (char *)s->list;
    argv[k++] = "-P2";
    argv[k++] = "-n";
    argv[k++] = batch;
    argv[k++] = "sha256sum";
    paths = false;
    break;
  }
  for (size_t i = 0; paths && i < s->n; i++)
    argv[k++] = s->paths[i];
  argv[k] = NULL;
  int rc = akb_fs_run(argv, out, NULL, false, span);
  free(argv);
  return rc;
}

/* ---- Outputs compared with sha256sum's ------------------------------------------- */

static int cmp_lines(const void *a, const void *b)
{
  return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The text's lines sorted, joined again (malloc'ed). */
static char *sorted_lines(const char *text)
{
  char *copy = strdup(text);
  size_t n = 0, cap = 64;
  char **lines = malloc(cap * sizeof(char *));
  if (!copy || !lines) {
    free(copy);
    free(lines);
    return NULL;
  }
  for (char *save = NULL, *l = strtok_r(copy, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
    if (n == cap) {
      char **more = realloc(lines, (cap *= 2) * sizeof(char *));
      if (!more)
        break;
      lines = more;
    }
    lines[n++] = l;
  }
  qsort(lines, n, sizeof(char *), cmp_lines);
  char *out = malloc(strlen(text) + 2);
  size_t w = 0;
  for (size_t i = 0; out && i < n; i++) {
    size_t len = strlen(lines[i]);
    memcpy(out + w, lines[i], len);
    w += len;
    out[w++] = '\n';
  }
  if (out)
    out[w] = '\0';
  free(lines);
  free(copy);
  return out;
}

/* openssl's "SHA2-256(name)= HEX" (or "SHA256(name)= HEX") lines as
 * sha256sum's "HEX  name" (malloc'ed), NULL if a line has neither form. */
static char *openssl_as_sha256sum(const char *text)
{
  char *out = malloc(strlen(text) + 2);
  if (!out)
    return NULL;
  size_t w = 0;
  for (const char *l = text; *l;) {
    const char *nl = strchr(l, '\n');
    size_t len = nl ? (size_t)(nl - l) : strlen(l);
    const char *open = memchr(l, '(', len);
    const char *close = NULL;
    for (const char *c = l + len; c > l; c--)
      if (c[-1] == ')') {
        close = c - 1;
        break;
      }
    if (!open || !close || close < open || (size_t)(l + len - close) < 3 || close[1] != '=' ||
        close[2] != ' ') {
      free(out);
      return NULL;
    }
    const char *hex = close + 3;
    size_t hexlen = (size_t)(l + len - hex);
    memcpy(out + w, hex, hexlen);
    w += hexlen;
    out[w++] = ' ';
    out[w++] = ' ';
    memcpy(out + w, open + 1, (size_t)(close - open - 1));
    w += (size_t)(close - open - 1);
    out[w++] = '\n';
    l += len + (nl != NULL);
  }
  out[w] = '\0';
  return out;
}

/* Whether tool t's output gives every file the digest sha256sum's gives
 * (sorted: whether the tool walks a tree or find does, in its order). */
static bool same_digests(tool_id t, const char *out, const char *ref, bool sorted)
{
  if (!out || !ref)
    return false;
  char *mine = NULL, *theirs = NULL;
  bool same;
  switch (sorted ? T_XARGS : t) {
  case T_OPENSSL:
    mine = openssl_as_sha256sum(out);
    same = mine && strcmp(mine, ref) == 0;
    break;
  case T_XARGS:
    mine = sorted_lines(out);
    theirs = sorted_lines(ref);
    same = mine && theirs && strcmp(mine, theirs) == 0;
    break;
  default:
    same = strcmp(out, ref) == 0; /* byte for byte, in order */
    break;
  }
  free(mine);
  free(theirs);
  return same;
}

/* ---- Rounds ------------------------------------------------------------------------ */

static side *side_of(tool *tl, const data_set *s)
{
  return strcmp(s->name, "big") == 0    ? &tl->big
         : strcmp(s->name, "tree") == 0 ? &tl->tree
                                        : &tl->files;
}

/* openssl dgst has no way to walk a tree: not run on it. */
static bool runs_on(const tool *tools, tool_id t, const data_set *s)
{
  return tools[t].have && !(s->root[0] && t == T_OPENSSL);
}

/* One round on a data set: every installed tool once, the first one being
 * tools[first]; each run right after its own warming of the data. */
static int round_on(akb_result *res, const char *aksum, const data_set *s, tool *tools,
                    unsigned first, bool timed, bool check)
{
  char *outs[N_TOOLS] = {0};
  int rc = 0;
  for (unsigned k = 0; k < N_TOOLS && rc == 0; k++) {
    tool_id t = (tool_id)((first + k) % N_TOOLS);
    if (!runs_on(tools, t, s))
      continue;
    akb_span span;
    rc = warm_set(s);
    if (rc < 0) {
      akb_fail(res, "%s: warming the page cache: %s", s->name, strerror(-rc));
      break;
    }
    rc = run_tool(t, aksum, s, check ? &outs[t] : NULL, &span);
    if (rc != 0) {
      akb_fail(res, "%s: %s failed (%s %d)", s->name, tools[t].name, rc < 0 ? "error" : "status",
               rc);
      break;
    }
    if (timed) {
      side *sd = side_of(&tools[t], s);
      sd->wall[sd->n] = span.wall_s;
      sd->cpu[sd->n++] = span.user_s + span.sys_s;
    }
  }
  if (rc == 0 && check) {
    for (unsigned t = 0; t < N_TOOLS; t++)
      if (t != T_SHA256SUM && runs_on(tools, t, s) &&
          !same_digests(t, outs[t], outs[T_SHA256SUM], s->root[0] != 0))
        akb_fail(res, "%s: %s's digests differ from sha256sum's", s->name, tools[t].name);
  }
  for (unsigned t = 0; t < N_TOOLS; t++)
    free(outs[t]);
  return rc;
}

/* Figure keys are kept by pointer: literals only. */
static void add_figs(akb_row *row, const char *wall_key, const char *rate_key, const char *cpu_key,
                     side *s, uint64_t bytes)
{
  if (s->n == 0)
    return; /* the set did not run, or not this tool */
  double wall = akb_median(s->wall, s->n);
  akb_fig_add(row, wall_key, "", wall, false);
  akb_fig_add(row, rate_key, "", (double)bytes / 1048576.0 / wall, false);
  akb_fig_add(row, cpu_key, "", akb_median(s->cpu, s->n), false);
}

static int run_set(akb_result *res, const akb_opts *opts, const char *aksum, const data_set *s,
                   tool *tools)
{
  if (!s->name || !wants_set(opts, s->name))
    return 0; /* not made (--variant chose another set) */
  if (round_on(res, aksum, s, tools, 0, false, true) != 0)
    return -1;
  for (unsigned r = 0; r < opts->rounds && r < MAX_ROUNDS; r++)
    if (round_on(res, aksum, s, tools, r % N_TOOLS, true, false) != 0)
      return -1;
  return 0;
}

/* A side's median wall time, NaN when it did not run. */
static double median_or_nan(side *sd)
{
  return sd->n ? akb_median(sd->wall, sd->n) : NAN;
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
  static tool tools[N_TOOLS];
  memset(tools, 0, sizeof(tools));
  tools[T_AKSUM] = (tool){.name = "aksum", .have = true};
  tools[T_SHA256SUM] = (tool){.name = "sha256sum", .have = akb_fs_have("sha256sum")};
  tools[T_OPENSSL] = (tool){.name = "openssl dgst -sha256", .have = akb_fs_have("openssl")};
  tools[T_XARGS] = (tool){.name = "xargs -P2 sha256sum", .have = akb_fs_have("xargs")};
  static data_set files, big, tree;
  memset(&files, 0, sizeof(files));
  memset(&big, 0, sizeof(big));
  memset(&tree, 0, sizeof(tree));
  int ret = -1;
  if (!tools[T_SHA256SUM].have) {
    akb_note(res, "sha256sum: not found; no reference to compare with");
    goto out;
  }
  if (!tools[T_OPENSSL].have)
    akb_note(res, "openssl: not found (package openssl); its row is skipped");
  if (!tools[T_XARGS].have)
    akb_note(res, "xargs: not found (package findutils); its row is skipped");
  if (make_sets(opts, &files, &big, &tree, res) < 0)
    goto out;
  akb_title(res,
            "SHA-256 of %zu files of 1 MiB, of one %llu MiB file and of a tree of %zu files of "
            "about 4 KiB, page cache, %u round%s (tools rotated)",
            files.n, (unsigned long long)(big.bytes >> 20), tree.n, opts->rounds,
            opts->rounds == 1 ? "" : "s");
  akb_param(res, "files", "", (double)files.n, true);
  akb_param(res, "big_mib", "", (double)(big.bytes >> 20), true);
  if (tree.n)
    akb_param(res, "tree_files", "", (double)tree.n, true);
  if (run_set(res, opts, aksum_path, &files, tools) < 0 ||
      run_set(res, opts, aksum_path, &big, tools) < 0 ||
      run_set(res, opts, aksum_path, &tree, tools) < 0)
    goto out;
  double ak_f = median_or_nan(&tools[T_AKSUM].files);
  double ak_b = median_or_nan(&tools[T_AKSUM].big);
  double ak_t = median_or_nan(&tools[T_AKSUM].tree);
  static const char *const ratio_files_key[N_TOOLS] = {NULL, "ratio_sha256sum_files",
                                                       "ratio_openssl_files", "ratio_xargs_files"};
  static const char *const ratio_big_key[N_TOOLS] = {NULL, "ratio_sha256sum_big",
                                                     "ratio_openssl_big", "ratio_xargs_big"};
  static const char *const ratio_tree_key[N_TOOLS] = {NULL, "ratio_sha256sum_tree", NULL,
                                                      "ratio_xargs_tree"};
  for (unsigned t = 0; t < N_TOOLS; t++) {
    if (!tools[t].have)
      continue;
    /* The medians first: add_figs sorts the samples in place. */
    double peer_f = median_or_nan(&tools[t].files);
    double peer_b = median_or_nan(&tools[t].big);
    double peer_t = median_or_nan(&tools[t].tree);
    akb_row *row = akb_row_add(res, tools[t].name);
    add_figs(row, "files_wall_s", "files_mib_per_s", "files_cpu_s", &tools[t].files, files.bytes);
    add_figs(row, "big_wall_s", "big_mib_per_s", "big_cpu_s", &tools[t].big, big.bytes);
    add_figs(row, "tree_wall_s", "tree_mib_per_s", "tree_cpu_s", &tools[t].tree, tree.bytes);
    if (t == T_AKSUM)
      continue;
    if (tools[t].files.n)
      akb_param(res, ratio_files_key[t], "", peer_f / ak_f, false);
    if (tools[t].big.n)
      akb_param(res, ratio_big_key[t], "", peer_b / ak_b, false);
    if (tools[t].tree.n && ratio_tree_key[t])
      akb_param(res, ratio_tree_key[t], "", peer_t / ak_t, false);
  }
  if (tools[T_SHA256SUM].files.n)
    akb_ratio(res, median_or_nan(&tools[T_SHA256SUM].files) / ak_f,
              "median time over %zu files, sha256sum / aksum (the other ratios: ratio_*)", files.n);
  else if (tools[T_SHA256SUM].tree.n)
    akb_ratio(res, median_or_nan(&tools[T_SHA256SUM].tree) / ak_t,
              "median time over the tree of %zu files, find | xargs sha256sum / aksum -r (the "
              "other ratios: ratio_*)",
              tree.n);
  else if (tools[T_SHA256SUM].big.n)
    akb_ratio(res, median_or_nan(&tools[T_SHA256SUM].big) / ak_b,
              "median time over the big file, sha256sum / aksum (the other ratios: ratio_*)");
  akb_note(res, "digests compared with sha256sum's for every tool: identical unless a failure "
                "says otherwise");
  ret = 0;
out:
  free_set(&files);
  free_set(&big);
  free_set(&tree);
  return ret;
}
