/* wl_mirror.c: akbench mirror: akget as a mirror's tool, against wget2 and
 * aria2c. Two figures:
 *
 *   1. The second run over an unchanged tree (1000 x 1 MiB from an nginx
 *      started here on 127.0.0.1, tests/nginx_env.sh): each tool has
 *      fetched the tree once (untimed), then runs again with -N, which
 *      turns every file into a conditional request answered 304. akget
 *      -N -j 32 -x 32 against wget2 -N in its modes (--max-threads=32, the
 *      same parallelism, and its default of 5), alternating (akget, wget2
 *      modes, akget, ...); median wall and client CPU (wait4). Before each
 *      timed round every output file is checked to be the served one.
 *   2. The peak RSS of a 2,000,000-URL list whose URLs fail at once (a
 *      closed port on 127.0.0.1: connection refused, no retry): akget -i
 *      against aria2c -i with and without --deferred-input, each bounded
 *      by a timeout (a run cut by it reports its peak so far, said in a
 *      note). The peak is the child's ru_maxrss (wait4).
 *
 * --size N: files in the tree (1000); --quick: 40 files of 64 KiB and a
 * 20,000-URL list; --variant tree or rss runs one part; --rounds the timed
 * runs per tool (5). */
#include "akb_fs.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#pragma GCC diagnostic ignored "-Wformat-truncation"

#ifndef AKB_SOURCE_ROOT
#define AKB_SOURCE_ROOT "."
#endif

enum { PAR = 32, MAX_ROUNDS = 15, WGET2_MODES = 2 };
#define AS_CAP (UINT64_C(8) << 30) /* aria2c's address space at most (8 GiB) */

static int sh(const char *cmd)
{
  int rc = system(cmd);
  return rc == -1 ? -1 : WIFEXITED(rc) ? WEXITSTATUS(rc) : 128;
}

static double now_s(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Starts nginx on root (state in state/); its port and pid. */
static int nginx_up(const char *state, const char *root, int *port, pid_t *pid, akb_result *res)
{
  char cmd[9000], info[4200];
  snprintf(info, sizeof info, "%s/nginx.info", state);
  snprintf(cmd, sizeof cmd,
           "bash -c \". '%s/tests/nginx_env.sh' && nginx_start '%s/nginx' '%s' </dev/null "
           ">/dev/null && echo \\$NGINX_PORT \\$NGINX_PID >'%s'\"",
           AKB_SOURCE_ROOT, state, root, info);
  if (sh(cmd) != 0) {
    akb_fail(res, "could not start nginx (see %s/nginx/error.log)", state);
    return -1;
  }
  FILE *f = fopen(info, "r");
  int p = 0;
  if (!f || fscanf(f, "%d %d", port, &p) != 2) {
    if (f)
      fclose(f);
    akb_fail(res, "nginx did not report its port");
    return -1;
  }
  fclose(f);
  *pid = p;
  return 0;
}

static void nginx_down(pid_t pid)
{
  if (pid <= 0)
    return;
  kill(pid, SIGQUIT);
  for (int i = 0; i < 50 && kill(pid, 0) == 0; i++)
    usleep(100000);
  kill(pid, SIGKILL);
}

/* Runs argv with stdout and stderr to /dev/null, killed after timeout_s;
 * its wall time, CPU, peak RSS. Returns its exit status, 128+signal, or -1;
 * *cut says the timeout fired. */
static int run_bounded(char *const argv[], double timeout_s, uint64_t as_limit, akb_span *span,
                       long *maxrss_kb, bool *cut)
{
  double t0 = now_s();
  pid_t pid = fork();
  if (pid < 0)
    return -1;
  if (pid == 0) {
    int fd = open("/dev/null", O_RDWR);
    dup2(fd, 1);
    dup2(fd, 2);
    setpgid(0, 0);
    if (as_limit) {
      struct rlimit rl = {as_limit, as_limit};
      setrlimit(RLIMIT_AS, &rl);
    }
    execvp(argv[0], argv);
    _exit(127);
  }
  *cut = false;
  int status = 0;
  struct rusage ru;
  for (;;) {
    pid_t w = wait4(pid, &status, WNOHANG, &ru);
    if (w == pid)
      break;
    if (w < 0 && errno != EINTR)
      return -1;
    if (!*cut && now_s() - t0 > timeout_s) {
      *cut = true;
      kill(-pid, SIGKILL);
      kill(pid, SIGKILL);
    }
    usleep(20000);
  }
  span->wall_s = now_s() - t0;
  span->user_s = (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6;
  span->sys_s = (double)ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
  *maxrss_kb = ru.ru_maxrss;
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/* Every output file is the served one (size and bytes). */
static bool same_tree(const char *root, const char *out, size_t count)
{
  char cmd[9000];
  for (size_t i = 0; i < count; i++) {
    snprintf(cmd, sizeof cmd, "cmp -s '%s/f%05zu' '%s/f%05zu'", root, i, out, i);
    if (sh(cmd) != 0)
      return false;
  }
  return true;
}

typedef struct tool_run {
  const char *label;
  char *argv[16];
  double wall[MAX_ROUNDS], cpu[MAX_ROUNDS];
  size_t n;
  bool failed;
} tool_run;

static void set_argv(tool_run *t, const char *const *args)
{
  size_t i = 0;
  for (; args[i] && i < 15; i++)
    t->argv[i] = strdup(args[i]);
  t->argv[i] = NULL;
}

static void free_argv(tool_run *t)
{
  for (size_t i = 0; t->argv[i]; i++)
    free(t->argv[i]);
}

/* Part 1: the second run over an unchanged tree. */
static int mirror_tree(const akb_opts *opts, akb_result *res, const char *akget, const char *base)
{
  size_t count = (size_t)akb_size(opts, 1000, 40);
  uint64_t size = opts->quick ? 64 << 10 : 1 << 20;
  unsigned rounds = opts->rounds ? opts->rounds : 5;
  if (rounds > MAX_ROUNDS)
    rounds = MAX_ROUNDS;
  char root[4400], state[4400], list[4400], cmd[9000];
  snprintf(root, sizeof root, "%s/root/m", base);
  snprintf(state, sizeof state, "%s/state", base);
  snprintf(list, sizeof list, "%s/tree.list", state);
  snprintf(cmd, sizeof cmd, "mkdir -p '%s' '%s' && chmod 755 '%s' '%s/root' '%s'", root, state,
           base, base, root);
  sh(cmd);
  for (size_t i = 0; i < count; i++) {
    char p[4500];
    snprintf(p, sizeof p, "%s/f%05zu", root, i);
    if (akb_fs_make_file(p, size) < 0) {
      akb_fail(res, "cannot make %s", p);
      return -1;
    }
    chmod(p, 0644);
  }
  int port;
  pid_t ng = 0;
  if (nginx_up(state, base, &port, &ng, res) < 0)
    return -1;
  FILE *l = fopen(list, "w");
  for (size_t i = 0; l && i < count; i++)
    fprintf(l, "http://127.0.0.1:%d/root/m/f%05zu\n", port, i);
  if (!l || fclose(l) != 0) {
    nginx_down(ng);
    akb_fail(res, "cannot write %s", list);
    return -1;
  }
  bool have_wget2 = akb_fs_have("wget2");
  if (!have_wget2)
    akb_note(res, "wget2: not installed (tools/bootstrap --bench); skipped");
  char jn[16], out_ak[4400], out_w[WGET2_MODES][4400], dflag[4500], wflag[WGET2_MODES][4500],
      iflag[4500];
  snprintf(jn, sizeof jn, "%d", PAR);
  snprintf(out_ak, sizeof out_ak, "%s/out-akget", state);
  snprintf(dflag, sizeof dflag, "-d%s", out_ak);
  snprintf(iflag, sizeof iflag, "-i%s", list);
  tool_run tools[1 + WGET2_MODES] = {{.label = "akget -N -j32 -x32"},
                                     {.label = "wget2 -N --max-threads=32"},
                                     {.label = "wget2 -N (5 threads)"}};
  set_argv(&tools[0], (const char *[]){akget, "-q", "-N", "-j", jn, "-x", jn, dflag, iflag, NULL});
  for (int m = 0; m < WGET2_MODES; m++) {
    snprintf(out_w[m], sizeof out_w[m], "%s/out-wget2-%d", state, m);
    snprintf(wflag[m], sizeof wflag[m], "-P%s", out_w[m]);
    if (m == 0)
      set_argv(&tools[1], (const char *[]){"wget2", "-q", "-N", "--max-threads=32", "-nd",
                                           "--no-compression", "--http2=off", wflag[m], iflag,
                                           NULL});
    else
      set_argv(&tools[2], (const char *[]){"wget2", "-q", "-N", "-nd", "--no-compression",
                                           "--http2=off", wflag[m], iflag, NULL});
  }
  size_t ntools = have_wget2 ? 1 + WGET2_MODES : 1;
  /* The first runs (untimed): each tool's own copy of the tree. */
  for (size_t t = 0; t < ntools; t++) {
    akb_span sp;
    long rss;
    bool cut;
    int rc = run_bounded(tools[t].argv, 600, 0, &sp, &rss, &cut);
    const char *out = t == 0 ? out_ak : out_w[t - 1];
    if (rc != 0 || !same_tree(root, out, count)) {
      akb_fail(res, "%s: the first run failed (exit %d) or its tree differs", tools[t].label, rc);
      tools[t].failed = true;
    }
  }
  akb_title(res, "mirror: -N over an unchanged tree of %zu x %llu KiB, parallelism %d, %u "
                 "round%s; peak RSS of a long failing list", count,
            (unsigned long long)(size >> 10), PAR, rounds, rounds == 1 ? "" : "s");
  for (unsigned r = 0; r < rounds; r++) {
    for (size_t t = 0; t < ntools; t++) {
      if (tools[t].failed)
        continue;
      const char *out = t == 0 ? out_ak : out_w[t - 1];
      /* The tree is read and checked before each run (outside the time):
       * it is still the served one, and hot in the page cache. */
      snprintf(cmd, sizeof cmd, "cat '%s'/* >/dev/null", root);
      sh(cmd);
      akb_span sp;
      long rss;
      bool cut;
      int rc = run_bounded(tools[t].argv, 300, 0, &sp, &rss, &cut);
      if (rc != 0 || !same_tree(root, out, count)) {
        akb_fail(res, "%s: a -N run failed (exit %d%s) or changed the tree", tools[t].label, rc,
                 cut ? ", timed out" : "");
        tools[t].failed = true;
        continue;
      }
      tools[t].wall[tools[t].n] = sp.wall_s;
      tools[t].cpu[tools[t].n++] = sp.user_s + sp.sys_s;
    }
  }
  nginx_down(ng);
  double ak_wall = NAN, best_wall = NAN;
  int best = -1;
  for (size_t t = 0; t < ntools; t++) {
    if (!tools[t].n)
      continue;
    double w = akb_median(tools[t].wall, tools[t].n), c = akb_median(tools[t].cpu, tools[t].n);
    akb_note(res, "tree: %s: %.3f s, %.3f s CPU (median of %zu)", tools[t].label, w, c,
             tools[t].n);
    akb_row *row = akb_row_add(res, t == 0 ? "akget" : t == 1 ? "wget2-t32" : "wget2-t5");
    akb_fig_add(row, "second_run_s", "s", w, false);
    akb_fig_add(row, "second_run_cpu", "s", c, false);
    if (t == 0)
      ak_wall = w;
    else if (best < 0 || w < best_wall)
      best = (int)t, best_wall = w;
  }
  if (best > 0 && isfinite(ak_wall)) {
    akb_param(res, "speedup_second_run", "x", best_wall / ak_wall, false);
    akb_ratio(res, best_wall / ak_wall, "wget2 -N (its fastest mode, %s) wall / akget -N wall",
              tools[best].label);
  }
  for (size_t t = 0; t < 1 + WGET2_MODES; t++)
    free_argv(&tools[t]);
  return 0;
}

/* A port on 127.0.0.1 nobody listens on (bound, then closed). */
static int closed_port(void)
{
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t len = sizeof a;
  int port = -1;
  if (fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
      getsockname(fd, (struct sockaddr *)&a, &len) == 0)
    port = ntohs(a.sin_port);
  if (fd >= 0)
    close(fd);
  return port;
}

/* Part 2: peak RSS of a long list of URLs that fail at once. */
static int long_list_rss(const akb_opts *opts, akb_result *res, const char *akget, const char *base)
{
  size_t urls = opts->quick ? 20000 : 2000000;
  double limit = opts->quick ? 60 : 240;
  char list[4400], out[4400], cmd[9000];
  snprintf(list, sizeof list, "%s/state/long.list", base);
  snprintf(out, sizeof out, "%s/state/out-long", base);
  snprintf(cmd, sizeof cmd, "mkdir -p '%s/state' '%s'", base, out);
  sh(cmd);
  int port = closed_port();
  FILE *l = fopen(list, "w");
  for (size_t i = 0; l && i < urls; i++)
    fprintf(l, "http://127.0.0.1:%d/f%07zu\n", port, i);
  if (port < 0 || !l || fclose(l) != 0) {
    akb_fail(res, "cannot write %s", list);
    return -1;
  }
  char dflag[4500], iflag[4500];
  snprintf(dflag, sizeof dflag, "-d%s", out);
  snprintf(iflag, sizeof iflag, "-i%s", list);
  struct {
    const char *label, *row;
    const char *argv[16];
  } runs[] = {
      {"akget -i (--retries 0)", "akget-list",
       {akget, "-q", "--retries", "0", "-j", "32", dflag, iflag, NULL}},
      {"aria2c -i", "aria2c-list",
       {"aria2c", "-q", "-j32", "--max-tries=1", "--retry-wait=0", dflag, iflag, NULL}},
      {"aria2c -i --deferred-input=true", "aria2c-deferred",
       {"aria2c", "-q", "-j32", "--max-tries=1", "--retry-wait=0", "--deferred-input=true", dflag,
        iflag, NULL}},
  };
  bool have_aria = akb_fs_have("aria2c");
  if (!have_aria)
    akb_note(res, "aria2c: not installed (tools/bootstrap --bench); skipped");
  for (size_t k = 0; k < sizeof runs / sizeof runs[0]; k++) {
    if (k > 0 && !have_aria)
      continue;
    akb_span sp;
    long rss = 0;
    bool cut = false;
    /* aria2c holds its whole list (more than 15 GB for 1.95 million URLs,
     * its tracker says): its address space is capped so that the shared
     * machine survives; a run stopped by the cap says so. */
    int rc = run_bounded((char *const *)runs[k].argv, limit, k > 0 ? AS_CAP : 0, &sp, &rss, &cut);
    akb_row *row = akb_row_add(res, runs[k].row);
    akb_fig_add(row, "list_peak_rss_mib", "MiB", rss / 1024.0, false);
    akb_fig_add(row, "list_s", "s", sp.wall_s, false);
    akb_note(res, "list of %zu failing URLs: %s: peak RSS %.1f MiB, %.1f s, exit %d%s%s", urls,
             runs[k].label, rss / 1024.0, sp.wall_s, rc,
             cut ? " (cut by the timeout: the peak so far)" : "",
             k > 0 && (uint64_t)rss * 1024 > AS_CAP / 8 * 7 ? " (near the 8 GiB address-space cap)"
                                                             : "");
  }
  unlink(list);
  return 0;
}

int akb_wl_mirror(const akb_opts *opts, akb_result *res)
{
  const char *akget = akb_need_akget_nginx(res);
  if (!akget)
    return -1;
  char base[4400];
  snprintf(base, sizeof base, "%s/mirror", akb_fs_dir());
  mkdir(base, 0755);
  chmod(akb_fs_dir(), 0755);
  const char *v = opts->variant && strcmp(opts->variant, "both") != 0 ? opts->variant : NULL;
  int rc = 0;
  if (!v || strcmp(v, "tree") == 0)
    rc = mirror_tree(opts, res, akget, base);
  if (rc == 0 && (!v || strcmp(v, "rss") == 0))
    rc = long_list_rss(opts, res, akget, base);
  return rc;
}
