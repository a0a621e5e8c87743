/* wl_download.c: akbench download: akget against curl --parallel, wget2 and
 * aria2c, all fetching the same files from one nginx started here on
 * 127.0.0.1 (tests/nginx_env.sh, with https from a test CA made by
 * tests/tls_certs.sh), in alternating runs (akget, curl, wget2, aria2c,
 * akget, ...). Data sets: 1000 x 1 MiB, 10,000 x 16 KiB and 1 x 2 GiB
 * (`big`: any number of connections; `single`: one connection for every
 * tool) over HTTP; 1000 x 1 MiB, 1 x 2 GiB and 1 x 2 GiB over one
 * connection over HTTPS. Figures per tool and set: median wall time and the
 * client's CPU time (user + sys, wait4); every file of every run is compared
 * with the served one, outside the timed window.
 *
 * Each peer is compared in its fastest configuration for the set, measured
 * in the same run, not assumed (conf_for): many files, 32 at once (curl
 * --parallel, wget2 --max-threads, aria2c -j); one big file, wget2's
 * default (one connection) and its --chunk-size split, aria2c -x16 -s16
 * (its maximum) and one connection, curl's one stream (it cannot split a
 * file). akget runs -j 32 -x 32 on many files, -s 32, -s 4 and its default
 * (one connection) on `big` (its -s adds connections only while each
 * raises the rate: from this local nginx it stays on one; started at once,
 * segments measured slower than one connection on two vCPUs), and its
 * default on `single`. A configuration whose first run
 * took more than twice its tool's fastest is not run again (a note says
 * so): wget2's --chunk-size takes 18 s where its default takes 1.
 *
 * --size P scales every set to P percent (the machine is shared: say which
 * when quoting); --quick is 5 percent; --variant picks sets (1m, 16k, big,
 * single, tls-1m, tls-big, tls-single; several with commas); --rounds the
 * runs per tool. Peers
 * not installed are skipped with a note.
 *
 * No file is deleted while the benchmark runs. On ext4 without a journal
 * (these machines), creating a file scans past every free inode of its group
 * deleted in the last minute (ext4's recently_deleted(): 60 s, 360 s while
 * the inode table block is dirty), so a run right after the `rm -rf` of the
 * previous run's 1000 files spent a quarter of its CPU in that scan (perf:
 * curl 24%, akget 35%): the benchmark's own deletion, charged to whichever
 * tool ran next. Dropping the page cache did not stop it (inode-table
 * readahead reads the deleted inodes' dtime back from disk). So each run
 * writes into a new directory, under a parent marked +T (ext4's "top of a
 * hierarchy": each new directory goes to a group of its own choosing, away
 * from groups other programs just emptied), and after its check its files
 * are truncated to zero (blocks freed, inodes kept); the directories go at
 * the end, and a later run waits until a minute has passed since then.
 *
 * Runs of one 2 GiB file are bimodal for every tool (slow runs double
 * their system time), and slow runs come in the same round for every tool.
 * These VMs have free page reporting on (page_reporting_order 9), and `dd`
 * of 1 GiB into a new file takes 0.17-0.21 s system time right after an rm
 * or truncate but 0.61-0.85 s after a 5 s pause. Faulting in and freeing
 * anonymous memory right before each run (the run's size plus 256 MiB, or
 * all of MemAvailable but 2 GiB) was tried and measured: it changed
 * neither (dd after a pause: 0.62-1.02 s; `single`: wget2's CPU 0.85-1.44 s
 * with it, 0.92-1.58 s without), so it is not done. Quote medians of 5
 * rounds and the spread of runs (docs/akget.md, PERFORMANCE). */
#include "akb_fs.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* Paths come from AKBENCH_DIR (bounded by PATH_MAX); a truncated command
 * would fail and be reported, so GCC's guesses about truncation are noise. */
#pragma GCC diagnostic ignored "-Wformat-truncation"

#ifndef AKB_SOURCE_ROOT
#define AKB_SOURCE_ROOT "."
#endif

enum { TOOLS = 4, SETS = 7, MAX_RUNS = 15, PAR = 32, MAX_CONFS = 10 };
static const char *const tool_names[TOOLS] = {"akget", "curl", "wget2", "aria2c"};

typedef enum set_kind {
  MANY,   /* many files, 32 at once */
  SPLIT,  /* one big file, as many connections as a tool likes */
  ONE,    /* one big file over one connection */
} set_kind;

typedef struct set {
  const char *name;    /* "1m" ... */
  const char *dir;     /* under the doc root */
  bool tls;
  size_t count;        /* files */
  uint64_t size;       /* bytes each */
  set_kind kind;
} set;

/* A tool's way of running a set: mode picks the arguments (build_argv). */
typedef enum mode {
  M_PARALLEL,  /* many files at once: -j/--parallel/--max-threads 32 */
  M_SEGMENTS,  /* one file over several connections */
  M_SEGMENTS4, /* akget: one file over four connections */
  M_DEFAULT,   /* one file, the tool's defaults (one connection) */
} mode;

typedef struct conf {
  int tool;
  mode mode;
  const char *label;   /* for the table */
} conf;

typedef struct server {
  char root[4096], state[4096], list_dir[4096];
  int port, tls_port;
  pid_t pid;
} server;

static int sh(const char *cmd)
{
  int rc = system(cmd);
  return rc == -1 ? -1 : WIFEXITED(rc) ? WEXITSTATUS(rc) : 128;
}

/* Makes dir/name<i> files of size bytes (random bytes, once: reused
 * across runs when the sizes match). */
static int make_files(const char *dir, size_t count, uint64_t size)
{
  char cmd[8192];
  snprintf(cmd, sizeof cmd, "mkdir -p '%s' && chmod 755 '%s'", dir, dir);
  if (sh(cmd) != 0)
    return -1;
  for (size_t i = 0; i < count; i++) {
    char p[4200];
    snprintf(p, sizeof p, "%s/f%05zu", dir, i);
    struct stat st;
    if (stat(p, &st) == 0 && (uint64_t)st.st_size == size)
      continue;
    if (akb_fs_make_file(p, size) < 0)
      return -1;
    chmod(p, 0644);
  }
  return 0;
}

static int server_start(server *s, akb_result *res)
{
  char info[4200], script[4200];
  snprintf(info, sizeof info, "%s/nginx.info", s->state);
  snprintf(script, sizeof script, "%s/start.sh", s->state);
  FILE *sf = fopen(script, "w");
  if (!sf) {
    akb_fail(res, "cannot write %s", script);
    return -1;
  }
  /* nginx_env.sh is bash: the steps go to a script bash runs. */
  fprintf(sf,
          "set -e\nmkdir -p '%s'; chmod 755 '%s'\nsh '%s/tests/tls_certs.sh' '%s/pki' >/dev/null\n"
          "chmod -R a+rX '%s/pki'\n. '%s/tests/nginx_env.sh'\nNGINX_TLS_DIR='%s/pki'\n"
          "nginx_start '%s/nginx' '%s' </dev/null >/dev/null\n"
          "echo \"$NGINX_PORT $NGINX_TLS_PORT $NGINX_PID\" >'%s'\n",
          s->state, s->state, AKB_SOURCE_ROOT, s->state, s->state, AKB_SOURCE_ROOT, s->state,
          s->state, s->root, info);
  fclose(sf);
  char cmd[4400];
  snprintf(cmd, sizeof cmd, "bash '%s'", script);
  if (sh(cmd) != 0) {
    akb_fail(res, "could not start nginx (see %s/nginx/error.log)", s->state);
    return -1;
  }
  FILE *f = fopen(info, "r");
  int pid = 0;
  if (!f || fscanf(f, "%d %d %d", &s->port, &s->tls_port, &pid) != 3) {
    if (f)
      fclose(f);
    akb_fail(res, "nginx did not report its ports");
    return -1;
  }
  fclose(f);
  s->pid = pid;
  return 0;
}

static void server_stop(server *s)
{
  if (s->pid > 0) {
    kill(s->pid, SIGQUIT);
    for (int i = 0; i < 50 && kill(s->pid, 0) == 0; i++)
      usleep(100000);
    kill(s->pid, SIGKILL);
    s->pid = 0;
  }
}

/* The URL list (one per line) and curl's config (url + output pairs). */
static int write_lists(const server *s, const set *st, const char *out_dir)
{
  char p[4400];
  snprintf(p, sizeof p, "%s/%s.list", s->list_dir, st->name);
  FILE *l = fopen(p, "w");
  snprintf(p, sizeof p, "%s/%s.curl", s->list_dir, st->name);
  FILE *c = fopen(p, "w");
  if (!l || !c) {
    if (l)
      fclose(l);
    if (c)
      fclose(c);
    return -1;
  }
  for (size_t i = 0; i < st->count; i++) {
    char url[512];
    snprintf(url, sizeof url, "%s://%s:%d/%s/f%05zu", st->tls ? "https" : "http",
             st->tls ? "localhost" : "127.0.0.1", st->tls ? s->tls_port : s->port, st->dir, i);
    fprintf(l, "%s\n", url);
    fprintf(c, "url = \"%s\"\noutput = \"%s/f%05zu\"\n", url, out_dir, i);
  }
  fclose(l);
  fclose(c);
  return 0;
}

/* argv for tool t on set st into out_dir. Strings live in a static pool. */
static int build_argv(const conf *cf, const server *s, const set *st, const char *out_dir,
                      char **argv)
{
  static char pool[16][4600];
  int n = 0, k = 0, t = cf->tool;
#define ARG(...) (snprintf(pool[k], sizeof pool[k], __VA_ARGS__), argv[n++] = pool[k++])
  bool split = cf->mode == M_SEGMENTS || cf->mode == M_SEGMENTS4;
  int segments = cf->mode == M_SEGMENTS4 ? 4 : PAR;
  char ca[4300];
  snprintf(ca, sizeof ca, "%s/pki/ca.pem", s->state);
  switch (t) {
  case 0:
    ARG("%s", akb_fs_sibling("akget"));
    ARG("-q");
    ARG("-j%d", PAR);
    ARG("-x%d", split ? segments : PAR);
    if (split) {
      ARG("-s%d", segments);
      ARG("--min-segment=1M");
    }
    if (st->tls)
      ARG("--cacert=%s", ca);
    ARG("-d%s", out_dir);
    ARG("-i%s/%s.list", s->list_dir, st->name);
    break;
  case 1:
    ARG("curl");
    ARG("-sS");
    ARG("--no-progress-meter");
    ARG("--fail");
    ARG("--parallel");
    ARG("--parallel-max");
    ARG("%d", PAR);
    if (st->tls) {
      ARG("--cacert");
      ARG("%s", ca);
    }
    ARG("-K");
    ARG("%s/%s.curl", s->list_dir, st->name);
    break;
  case 2:
    ARG("wget2");
    ARG("-q");
    ARG("--max-threads=%d", PAR);
    ARG("--no-compression");
    ARG("--http2=off");
    if (split)
      ARG("--chunk-size=%llu", (unsigned long long)(st->size / PAR + 1));
    if (st->tls)
      ARG("--ca-certificate=%s", ca);
    ARG("-P%s", out_dir);
    ARG("-i%s/%s.list", s->list_dir, st->name);
    break;
  case 3:
    ARG("aria2c");
    ARG("-q");
    ARG("-j%d", PAR);
    ARG(split ? "-x16" : "-x1");
    ARG(split ? "-s16" : "-s1");
    ARG("-k1M");
    ARG("--file-allocation=none");
    ARG("--allow-overwrite=true");
    ARG("--auto-file-renaming=false");
    ARG("--console-log-level=error");
    if (st->tls)
      ARG("--ca-certificate=%s", ca);
    ARG("-d%s", out_dir);
    ARG("-i%s/%s.list", s->list_dir, st->name);
    break;
  }
#undef ARG
  argv[n] = NULL;
  return n;
}

/* Compares every downloaded file with the served one. */
static bool check_outputs(const server *s, const set *st, const char *out_dir, char *why, size_t n)
{
  for (size_t i = 0; i < st->count; i++) {
    char a[4400], b[4400];
    snprintf(a, sizeof a, "%s/%s/f%05zu", s->root, st->dir, i);
    snprintf(b, sizeof b, "%s/f%05zu", out_dir, i);
    int fa = open(a, O_RDONLY), fb = open(b, O_RDONLY);
    struct stat sa, sb;
    bool same = fa >= 0 && fb >= 0 && fstat(fa, &sa) == 0 && fstat(fb, &sb) == 0 &&
                sa.st_size == sb.st_size;
    if (same && sa.st_size > 0) {
      void *ma = mmap(NULL, (size_t)sa.st_size, PROT_READ, MAP_PRIVATE, fa, 0);
      void *mb = mmap(NULL, (size_t)sb.st_size, PROT_READ, MAP_PRIVATE, fb, 0);
      same = ma != MAP_FAILED && mb != MAP_FAILED && memcmp(ma, mb, (size_t)sa.st_size) == 0;
      if (ma != MAP_FAILED)
        munmap(ma, (size_t)sa.st_size);
      if (mb != MAP_FAILED)
        munmap(mb, (size_t)sb.st_size);
    }
    if (fa >= 0)
      close(fa);
    if (fb >= 0)
      close(fb);
    if (!same) {
      snprintf(why, n, "%s differs from %s (or is missing)", b, a);
      return false;
    }
  }
  return true;
}

/* Seconds since the last run's outputs were deleted (its stamp file), or
 * a large number when there is none. */
static double since_deletion(const server *s)
{
  char p[4400];
  snprintf(p, sizeof p, "%s/outputs-deleted", s->state);
  struct stat st;
  if (stat(p, &st) < 0)
    return 1e9;
  struct timespec now;
  clock_gettime(CLOCK_REALTIME, &now);
  return (double)(now.tv_sec - st.st_mtim.tv_sec) + (now.tv_nsec - st.st_mtim.tv_nsec) / 1e9;
}

typedef struct series {
  double wall[MAX_RUNS], cpu[MAX_RUNS];
  size_t n;
  bool dropped;        /* slower than twice its tool's fastest: run once */
} series;

/* The configurations run for a set (the top comment); returns how many. */
static size_t conf_for(const set *st, const bool have[TOOLS], conf *out)
{
  size_t n = 0;
#define CONF(t, m, l)                                                                              \
  do {                                                                                             \
    if (have[t])                                                                                   \
      out[n++] = (conf){t, m, l};                                                                  \
  } while (0)
  switch (st->kind) {
  case MANY:
    CONF(0, M_PARALLEL, "-j32 -x32");
    CONF(1, M_PARALLEL, "--parallel-max 32");
    CONF(2, M_PARALLEL, "--max-threads 32");
    CONF(3, M_PARALLEL, "-j32 -x1 -s1");
    break;
  case SPLIT:
    CONF(0, M_SEGMENTS, "-s32 -x32");
    CONF(0, M_SEGMENTS4, "-s4 -x4");
    CONF(0, M_DEFAULT, "default (one connection)");
    CONF(1, M_DEFAULT, "one stream");
    CONF(2, M_DEFAULT, "default (one connection)");
    CONF(2, M_SEGMENTS, "--chunk-size (size/32) --max-threads 32");
    CONF(3, M_SEGMENTS, "-x16 -s16");
    CONF(3, M_DEFAULT, "-x1 -s1 (one connection)");
    break;
  case ONE:
    CONF(0, M_DEFAULT, "default (one connection)");
    CONF(1, M_DEFAULT, "one stream");
    CONF(2, M_DEFAULT, "default (one connection)");
    CONF(3, M_DEFAULT, "-x1 -s1 (one connection)");
    break;
  }
#undef CONF
  return n;
}

static double median_wall(const series *r)
{
  return akb_median((double *)r->wall, r->n);
}

/* After the first round: a configuration more than twice as slow as its
 * tool's fastest is not run again. */
static void drop_slow(const conf *cf, size_t nconf, series *out, akb_result *res, const set *st)
{
  for (size_t c = 0; c < nconf; c++) {
    double best = INFINITY;
    for (size_t d = 0; d < nconf; d++)
      if (cf[d].tool == cf[c].tool && out[d].n && out[d].wall[0] < best)
        best = out[d].wall[0];
    if (out[c].n && out[c].wall[0] > 2 * best) {
      out[c].dropped = true;
      akb_note(res, "%s: %s %s took %.2f s, over twice its fastest (%.2f s): run once", st->name,
                tool_names[cf[c].tool], cf[c].label, out[c].wall[0], best);
    }
  }
}

static int run_set(const server *s, const set *st, const akb_opts *opts, const conf *cf,
                   size_t nconf, series *out, akb_result *res)
{
  char out_dir[4400], warm[4400], cmd[9000];
  snprintf(warm, sizeof warm, "cat '%s/%s'/* >/dev/null", s->root, st->dir);
  unsigned rounds = opts->rounds ? opts->rounds : 3;
  if (rounds > MAX_RUNS)
    rounds = MAX_RUNS;
  bool failed[MAX_CONFS] = {false};
  /* Round 0 is a warm-up of the first configuration, not counted: the
   * first run of a set, whichever tool it was, took up to three times its
   * CPU time (2.8 s where the next took 0.9 s, all of it system time),
   * paying for memory the VM had handed back while the machine was idle. */
  for (unsigned r = 0; r <= rounds; r++) {
    if (r == 2)
      drop_slow(cf, nconf, out, res, st);
    for (size_t c = 0; c < (r == 0 ? 1 : nconf); c++) {
      int t = cf[c].tool;
      if (failed[c] || out[c].dropped)
        continue;
      /* A new directory per run; nothing deleted (the top comment). */
      snprintf(out_dir, sizeof out_dir, "%s/out/%s-%u-%s-%zu", s->state, st->name, r, tool_names[t],
               c);
      snprintf(cmd, sizeof cmd, "mkdir -p '%s' && sync", out_dir);
      sh(cmd);
      if (write_lists(s, st, out_dir) < 0) {
        akb_fail(res, "cannot write URL lists in %s", s->list_dir);
        return -1;
      }
      sh(warm); /* the served files in the page cache (bench-notes.md) */
      char *argv[40];
      build_argv(&cf[c], s, st, out_dir, argv);
      akb_span span;
      int rc = akb_fs_run(argv, NULL, NULL, true, &span);
      char why[9000];
      if (rc != 0) {
        akb_fail(res, "%s %s on %s: exit %d", tool_names[t], cf[c].label, st->name, rc);
        failed[c] = true;
        continue;
      }
      bool same = check_outputs(s, st, out_dir, why, sizeof why);
      /* Blocks freed, inodes kept until the end (the top comment). */
      snprintf(cmd, sizeof cmd, "find '%s' -type f -exec truncate -s 0 {} +", out_dir);
      sh(cmd);
      if (!same) {
        akb_fail(res, "%s %s on %s: %s", tool_names[t], cf[c].label, st->name, why);
        failed[c] = true;
        continue;
      }
      fprintf(stderr, "akbench download: %-6s %-8s run %u: %.3f s wall, %.3f s CPU (%s)%s\n",
              tool_names[t], st->name, r, span.wall_s, span.user_s + span.sys_s, cf[c].label,
              r == 0 ? ", warm-up" : "");
      if (r == 0)
        continue;
      out[c].wall[out[c].n] = span.wall_s;
      out[c].cpu[out[c].n] = span.user_s + span.sys_s;
      out[c].n++;
    }
  }
  for (size_t c = 0; c < nconf; c++)
    if (failed[c])
      out[c].n = 0; /* a configuration that failed once is not compared */
  return 0;
}

/* The tool's fastest configuration on a set (median wall), or -1. */
static int best_conf(int tool, const conf *cf, size_t nconf, const series *out)
{
  int best = -1;
  for (size_t c = 0; c < nconf; c++)
    if (cf[c].tool == tool && out[c].n &&
        (best < 0 || median_wall(&out[c]) < median_wall(&out[best])))
      best = (int)c;
  return best;
}

/* Whether --variant (one set, or several with commas; "both", the
 * default: all) picks the set called name. */
static bool picked(const char *variant, const char *name)
{
  if (!variant || strcmp(variant, "both") == 0)
    return true;
  size_t n = strlen(name);
  for (const char *p = variant; *p;) {
    const char *end = strchr(p, ',');
    size_t len = end ? (size_t)(end - p) : strlen(p);
    if (len == n && strncmp(p, name, n) == 0)
      return true;
    p += len + (end ? 1 : 0);
  }
  return false;
}

int akb_wl_download(const akb_opts *opts, akb_result *res)
{
  const char *akget = akb_need_akget_nginx(res);
  if (!akget)
    return -1;
  double pct = opts->quick ? 5 : (opts->size ? (double)opts->size : 100);
  set sets[SETS] = {
      {"1m", "d1m", false, (size_t)fmax(1, 1000 * pct / 100), 1 << 20, MANY},
      {"16k", "d16k", false, (size_t)fmax(1, 10000 * pct / 100), 16 << 10, MANY},
      {"big", "dbig", false, 1, (uint64_t)fmax(1, 2048.0 * pct / 100) << 20, SPLIT},
      {"single", "dbig", false, 1, 0, ONE},
      {"tls-1m", "d1m", true, 0, 1 << 20, MANY},
      {"tls-big", "dbig", true, 1, 0, SPLIT},
      {"tls-single", "dbig", true, 1, 0, ONE},
  };
  sets[3].size = sets[5].size = sets[6].size = sets[2].size;
  sets[4].count = sets[0].count;
  server s = {0};
  snprintf(s.root, sizeof s.root, "%s/download/root", akb_fs_dir());
  snprintf(s.state, sizeof s.state, "%s/download/state", akb_fs_dir());
  snprintf(s.list_dir, sizeof s.list_dir, "%s", s.state);
  char cmd[9000];
  snprintf(cmd, sizeof cmd, "mkdir -p '%s' '%s' && chmod 755 '%s' '%s/download' '%s'", s.root,
           s.state, akb_fs_dir(), akb_fs_dir(), s.root);
  sh(cmd);
  for (int i = 0; i < 3; i++) {
    char d[4400];
    snprintf(d, sizeof d, "%s/%s", s.root, sets[i].dir);
    if (make_files(d, sets[i].count, sets[i].size) < 0) {
      akb_fail(res, "cannot make the data set %s in %s", sets[i].name, d);
      return -1;
    }
  }
  /* The outputs: a parent marked +T, and a minute since the last run's
   * outputs were deleted (the top comment). */
  snprintf(cmd, sizeof cmd,
           "if [ -e '%s/out' ]; then rm -rf '%s/out' && sync && touch '%s/outputs-deleted'; fi; "
           "mkdir -p '%s/out' && chattr +T '%s/out' 2>/dev/null",
           s.state, s.state, s.state, s.state, s.state);
  if (sh(cmd) != 0)
    akb_note(res, "chattr +T failed (not ext4?): output folders are placed as the filesystem likes");
  double since = since_deletion(&s);
  if (since < 65) {
    akb_note(res, "waited %.0f s: the last run's outputs were deleted %.0f s ago (the ext4 "
                  "recently-deleted window, wl_download.c)", 65 - since, since);
    usleep((useconds_t)((65 - since) * 1e6));
  }
  if (server_start(&s, res) < 0)
    return -1;
  bool have[TOOLS] = {true, akb_fs_have("curl"), akb_fs_have("wget2"), akb_fs_have("aria2c")};
  for (int t = 1; t < TOOLS; t++)
    if (!have[t])
      akb_note(res, "%s: not installed (tools/bootstrap --bench); skipped", tool_names[t]);
  akb_title(res, "downloads from a local nginx, parallelism %d, %.0f%% data sets, %u round%s", PAR,
            pct, opts->rounds ? opts->rounds : 3, opts->rounds == 1 ? "" : "s");
  static series results[SETS][MAX_CONFS];
  static conf confs[SETS][MAX_CONFS];
  size_t nconfs[SETS] = {0};
  memset(results, 0, sizeof results);
  int ret = 0;
  for (int i = 0; i < SETS; i++) {
    if (!picked(opts->variant, sets[i].name))
      continue;
    nconfs[i] = conf_for(&sets[i], have, confs[i]);
    if (run_set(&s, &sets[i], opts, confs[i], nconfs[i], results[i], res) < 0) {
      ret = -1;
      break;
    }
  }
  server_stop(&s);
  snprintf(cmd, sizeof cmd, "rm -rf '%s/out' && sync && touch '%s/outputs-deleted'", s.state, s.state);
  sh(cmd);
  /* Rows: per tool, median wall and CPU per set in its fastest
   * configuration (named in a note); params: the ratios. */
  for (int t = 0; t < TOOLS; t++) {
    akb_row *row = akb_row_add(res, tool_names[t]);
    for (int i = 0; i < SETS; i++) {
      int b = best_conf(t, confs[i], nconfs[i], results[i]);
      series *r = b >= 0 ? &results[i][b] : NULL;
      char *kw = malloc(32), *kc = malloc(32); /* keys live as long as the result */
      snprintf(kw, 32, "%s_s", sets[i].name);
      snprintf(kc, 32, "%s_cpu", sets[i].name);
      akb_fig_add(row, kw, "s", r ? median_wall(r) : NAN, false);
      akb_fig_add(row, kc, "s", r ? akb_median(r->cpu, r->n) : NAN, false);
    }
  }
  double worst_speed = INFINITY;
  for (int i = 0; i < SETS; i++) {
    const conf *cf = confs[i];
    series *out = results[i];
    for (size_t c = 0; c < nconfs[i]; c++)
      if (out[c].n)
        akb_note(res, "%s: %s %s: %.3f s, %.3f s CPU (median of %zu)%s", sets[i].name,
                 tool_names[cf[c].tool], cf[c].label, median_wall(&out[c]),
                 akb_median(out[c].cpu, out[c].n), out[c].n,
                 best_conf(cf[c].tool, cf, nconfs[i], out) == (int)c ? ", its fastest" : "");
    int a = best_conf(0, cf, nconfs[i], out);
    if (a < 0)
      continue;
    double ak_wall = median_wall(&out[a]), ak_cpu = akb_median(out[a].cpu, out[a].n);
    int best = -1;
    for (int t = 1; t < TOOLS; t++) {
      int b = best_conf(t, cf, nconfs[i], out);
      if (b >= 0 && (best < 0 || median_wall(&out[b]) < median_wall(&out[best])))
        best = b;
    }
    if (best < 0)
      continue;
    double best_wall = median_wall(&out[best]), best_cpu = akb_median(out[best].cpu, out[best].n);
    char *k1 = malloc(40), *k2 = malloc(40);
    snprintf(k1, 40, "speedup_%s", sets[i].name);
    snprintf(k2, 40, "cpu_ratio_%s", sets[i].name);
    akb_param(res, k1, "x", best_wall / ak_wall, false);
    akb_param(res, k2, "x", ak_cpu / best_cpu, false);
    akb_note(res, "%s: akget %.2fx faster than the fastest peer (%s %s), CPU %.2fx of its",
             sets[i].name, best_wall / ak_wall, tool_names[cf[best].tool], cf[best].label,
             ak_cpu / best_cpu);
    if (best_wall / ak_wall < worst_speed)
      worst_speed = best_wall / ak_wall;
  }
  if (isfinite(worst_speed))
    akb_ratio(res, worst_speed, "the lowest over the sets of fastest peer wall / akget wall");
  return ret;
}
