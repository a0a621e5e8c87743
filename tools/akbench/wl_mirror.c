/* wl_mirror.c: akbench mirror: akget as a mirror's tool, against wget2 and
 * aria2c. Two figures:
 *
 *   1. The second run over an unchanged tree (1000 x 1 MiB from an nginx
 *      started here on 127.0.0.1, tests/nginx_env.sh): each tool has
 *      fetched the tree once (untimed), then runs again with -N, which
 *      turns every file into a conditional request answered 304. At the
 *      same parallelism N: akget -N -j N -x N against wget2 -N
 *      --max-threads=N, for N = 32 (the workload's) and N = 5 (wget2's
 *      default, its fastest mode here), alternating (akget 32, wget2 32,
 *      akget 5, wget2 5, akget 32, ...); median wall and client CPU (wait4),
 *      and the nginx worker's CPU during each run (/proc/PID/schedstat):
 *      the server's own time is a floor no client goes below when both
 *      share two vCPUs. Beside them, at each N, akbench-mirror-floor
 *      (mirror_floor.c): a client that does only what -N must (the stat,
 *      the ETag xattr, the conditional HEAD, its answer) over akget's
 *      copy; wget2's time over its time is the most the run shows any
 *      client reaching against wget2 (floor_speedup_*). Before each timed
 *      round every output file is checked to be the served one.
 *   2. The peak RSS of a 2,000,000-URL list whose URLs fail at once (a
 *      closed port on 127.0.0.1: connection refused, no retry): akget -i
 *      against aria2c -i with and without --deferred-input, each bounded
 *      by LIST_BOUND_S (300 s; aria2c's address space capped at 8 GiB).
 *      The peak is the child's ru_maxrss (wait4), also of a run cut by the
 *      bound; how far each got is the URLs it had failed by then (its
 *      output's "FAILED" / "Download aborted" lines): aria2c reads its
 *      whole list before the first download, and at 2,000,000 URLs it does
 *      not get to one within the bound (its tracker: more than 15 GB for
 *      1.95 million URLs, never started).
 *
 * --size N: files in the tree (1000), or with --variant rss the URLs of
 * the list (2,000,000); --quick: 40 files of 64 KiB and a 20,000-URL list;
 * --variant tree or rss runs one part (tree-plain: the tree against the
 * tests' nginx config, without the mirror's open_file_cache); --rounds the timed runs per tool
 * (5). The 2,000,000-URL part takes up to about 13 minutes (akget's run
 * about 2.5, each aria2c run up to its bound): a memory figure, run it
 * outside a timing window (docs/akget.md, MIRRORS). */
#define _GNU_SOURCE /* memmem, F_SETPIPE_SZ */
#include "akb_fs.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#pragma GCC diagnostic ignored "-Wformat-truncation"

#ifndef AKB_SOURCE_ROOT
#define AKB_SOURCE_ROOT "."
#endif

enum { MAX_ROUNDS = 15, NPAR = 2, LIST_BOUND_S = 300 };
static const int pars[NPAR] = {32, 5}; /* the workload's; wget2's default */
#define AS_CAP (UINT64_C(8) << 30) /* aria2c's address space at most (8 GiB) */

/* The tools of each N, in the order they run: TOOLS_PER_N * k + role. */
enum tool_role {
  AKGET_PIPELINED, /* akget's best configuration here */
  WGET2,
  AKGET_1BY1, /* akget one HEAD at a time */
  FLOOR,      /* akbench-mirror-floor: the least a client does */
  TOOLS_PER_N
};

/* Whether tool t reads akget's copy of the tree (its own copy otherwise). */
static bool on_akget_copy(size_t t)
{
  return t % TOOLS_PER_N != WGET2;
}

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

/* A mirror's nginx keeps its files' descriptors and stat results
 * (open_file_cache; stat results checked again after its default 60 s):
 * a conditional request is then answered without an open, fstat and close
 * of the file, which cuts nginx's CPU on this workload by a third or more
 * (about 22 -> 14-17 ms a run, docs/akget.md MIRRORS). --variant tree-plain runs the tests' config without it, as the
 * figures before session 13 were. Both tools see the same server. */
#define MIRROR_NGINX_HTTP "open_file_cache max=4096 inactive=120s;"

/* Starts nginx on root (state in state/); its port and pid. http_extra:
 * more directives for its http block ("" for none). */
static int nginx_up(const char *state, const char *root, const char *http_extra, int *port,
                    pid_t *pid, akb_result *res)
{
  char cmd[9000], info[4200];
  snprintf(info, sizeof info, "%s/nginx.info", state);
  snprintf(cmd, sizeof cmd,
           "NGINX_HTTP_EXTRA='%s' bash -c \". '%s/tests/nginx_env.sh' && nginx_start '%s/nginx' "
           "'%s' </dev/null >/dev/null && echo \\$NGINX_PORT \\$NGINX_PID >'%s'\"",
           http_extra, AKB_SOURCE_ROOT, state, root, info);
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

/* nginx's one worker (worker_processes 1): the master's child. */
static pid_t nginx_worker(pid_t master)
{
  char path[64];
  snprintf(path, sizeof path, "/proc/%d/task/%d/children", (int)master, (int)master);
  FILE *f = fopen(path, "r");
  int w = -1;
  if (f && fscanf(f, "%d", &w) != 1)
    w = -1;
  if (f)
    fclose(f);
  return w;
}

/* A process's CPU time so far (all its threads), in seconds; NaN if gone. */
static double proc_cpu_s(pid_t pid)
{
  char path[64];
  snprintf(path, sizeof path, "/proc/%d/schedstat", (int)pid);
  FILE *f = fopen(path, "r");
  unsigned long long ns = 0;
  bool ok = f && fscanf(f, "%llu", &ns) == 1;
  if (f)
    fclose(f);
  return ok ? (double)ns / 1e9 : NAN;
}

/* Counts a pattern in a stream read in pieces (it may straddle them). */
typedef struct counter {
  const char *pat;
  size_t plen;
  char buf[64 * 1024 + 64];
  size_t carry; /* the last bytes of the previous piece (< plen) */
  size_t count;
} counter;

static void count_piece(counter *c, const char *data, size_t n)
{
  while (n) {
    size_t take = n < sizeof c->buf - c->carry ? n : sizeof c->buf - c->carry;
    memcpy(c->buf + c->carry, data, take);
    size_t len = c->carry + take, at = 0;
    const char *hit;
    while ((hit = memmem(c->buf + at, len - at, c->pat, c->plen))) {
      c->count++;
      at = (size_t)(hit - c->buf) + c->plen;
    }
    size_t keep = c->plen - 1;
    if (len - at < keep)
      keep = len - at;
    memmove(c->buf, c->buf + len - keep, keep);
    c->carry = keep;
    data += take;
    n -= take;
  }
}

/* Runs argv, killed after timeout_s; its wall time, CPU, peak RSS. Its
 * output goes to /dev/null, or with c to a pipe whose lines holding c->pat
 * are counted. Returns its exit status, 128+signal, or -1; *cut says the
 * timeout fired. */
static int run_bounded(char *const argv[], double timeout_s, uint64_t as_limit, akb_span *span,
                       long *maxrss_kb, bool *cut, counter *c)
{
  int pfd[2] = {-1, -1};
  if (c && pipe2(pfd, O_CLOEXEC) < 0)
    return -1;
  if (c)
    (void)fcntl(pfd[0], F_SETPIPE_SZ, 1 << 20); /* a burst of lines does not stall it */
  double t0 = now_s();
  pid_t pid = fork();
  if (pid < 0)
    return -1;
  if (pid == 0) {
    int fd = c ? pfd[1] : open("/dev/null", O_RDWR);
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
  if (c) {
    close(pfd[1]);
    fcntl(pfd[0], F_SETFL, O_NONBLOCK);
  }
  /* The child's end wakes the wait through a pidfd (readable once it has
   * exited): a run of 30 ms is timed to the microsecond, not to the 20 ms
   * step of a polling wait (which had every short run read as a multiple
   * of about 20 ms). Without pidfds (before 5.3), the 20 ms poll. */
  int pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
  *cut = false;
  int status = 0;
  struct rusage ru;
  char piece[64 * 1024];
  for (;;) {
    if (c) {
      ssize_t n;
      while ((n = read(pfd[0], piece, sizeof piece)) > 0)
        count_piece(c, piece, (size_t)n);
    }
    pid_t w = wait4(pid, &status, WNOHANG, &ru);
    if (w == pid)
      break;
    if (w < 0 && errno != EINTR) {
      if (pidfd >= 0)
        close(pidfd);
      return -1;
    }
    if (!*cut && now_s() - t0 > timeout_s) {
      *cut = true;
      kill(-pid, SIGKILL);
      kill(pid, SIGKILL);
    }
    struct pollfd pf[2] = {{.fd = pidfd, .events = POLLIN},
                           {.fd = c ? pfd[0] : -1, .events = POLLIN}};
    if (pidfd >= 0 || c)
      poll(pidfd >= 0 ? pf : pf + 1, pidfd >= 0 ? 2 : 1, 20);
    else
      usleep(20000);
  }
  if (pidfd >= 0)
    close(pidfd);
  span->wall_s = now_s() - t0;
  if (c) {
    ssize_t n;
    while ((n = read(pfd[0], piece, sizeof piece)) > 0) /* what it wrote last */
      count_piece(c, piece, (size_t)n);
    close(pfd[0]);
  }
  span->user_s = (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6;
  span->sys_s = (double)ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
  *maxrss_kb = ru.ru_maxrss;
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/* The two files hold the same bytes. */
static bool same_file(const char *a, const char *b)
{
  enum { CHUNK = 1 << 20 };
  static char ba[CHUNK], bb[CHUNK]; /* once: not 2 MiB of fresh pages per file */
  int fa = open(a, O_RDONLY | O_CLOEXEC), fb = open(b, O_RDONLY | O_CLOEXEC);
  bool same = fa >= 0 && fb >= 0;
  while (same) {
    ssize_t na = read(fa, ba, CHUNK), nb = read(fb, bb, CHUNK);
    if (na < 0 || na != nb || (na > 0 && memcmp(ba, bb, (size_t)na) != 0))
      same = false;
    if (na <= 0)
      break;
  }
  if (fa >= 0)
    close(fa);
  if (fb >= 0)
    close(fb);
  return same;
}

/* Every output file is the served one (size and bytes). */
static bool same_tree(const char *root, const char *out, size_t count)
{
  char a[4500], b[4500];
  for (size_t i = 0; i < count; i++) {
    snprintf(a, sizeof a, "%s/f%05zu", root, i);
    snprintf(b, sizeof b, "%s/f%05zu", out, i);
    if (!same_file(a, b))
      return false;
  }
  return true;
}

/* What a run may not change: each file's inode, size and mtime (FNV-1a). */
static uint64_t tree_id(const char *out, size_t count)
{
  uint64_t h = UINT64_C(1469598103934665603);
  char p[4500];
  for (size_t i = 0; i < count; i++) {
    struct stat st;
    snprintf(p, sizeof p, "%s/f%05zu", out, i);
    uint64_t v[4] = {0, 0, 0, 0};
    if (stat(p, &st) == 0)
      v[0] = st.st_ino, v[1] = (uint64_t)st.st_size, v[2] = (uint64_t)st.st_mtim.tv_sec,
      v[3] = (uint64_t)st.st_mtim.tv_nsec;
    const unsigned char *b = (const unsigned char *)v;
    for (size_t k = 0; k < sizeof v; k++)
      h = (h ^ b[k]) * UINT64_C(1099511628211);
  }
  return h;
}

typedef struct tool_run {
  char label[96];
  const char *out;           /* its copy of the tree */
  char *argv[16];
  double wall[MAX_ROUNDS], cpu[MAX_ROUNDS], server[MAX_ROUNDS];
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
static int mirror_tree(const akb_opts *opts, akb_result *res, const char *akget,
                       const char *floor_client, const char *base, bool plain_server)
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
  const char *http_extra = plain_server ? "" : MIRROR_NGINX_HTTP;
  if (nginx_up(state, base, http_extra, &port, &ng, res) < 0)
    return -1;
  akb_note(res, "nginx: one worker, access log on%s%s", *http_extra ? ", " : "", http_extra);
  pid_t ngw = nginx_worker(ng);
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
  /* akget -j pars[k] (two configurations) against wget2
   * --max-threads=pars[k]. Every akget run shares one copy of the tree
   * (-N leaves it as it is). */
  static char out_ak[4400], out_w[NPAR][4400], dflag[4500], wflag[NPAR][4500], iflag[4500];
  char jn[NPAR][16], tn[NPAR][32];
  /* akget's best configuration here: -N's HEADs pipelined (docs/akget.md,
   * MIRRORS); AKB_MIRROR_PIPELINE=DEPTH (false: off) to compare others. */
  char pflag[64];
  const char *pdepth = getenv("AKB_MIRROR_PIPELINE");
  snprintf(pflag, sizeof pflag, "--enable-http-pipelining%s%s", pdepth ? "=" : "",
           pdepth ? pdepth : "");
  snprintf(out_ak, sizeof out_ak, "%s/out-akget", state);
  snprintf(dflag, sizeof dflag, "-d%s", out_ak);
  snprintf(iflag, sizeof iflag, "-i%s", list);
  /* The floor's connections: one per 8 of N (its default; with the first
   * draft of this client, the same loop, one connection at N = 5 measured
   * 26-28 ms against 29-37 for five, four at N = 32 22-25 against 26-28
   * for 32, docs/akget.md MIRRORS);
   * AKB_MIRROR_FLOOR_CONNS=C to compare others. */
  const char *floor_conns = getenv("AKB_MIRROR_FLOOR_CONNS");
  char port_s[16];
  snprintf(port_s, sizeof port_s, "%d", port);
  tool_run tools[TOOLS_PER_N * NPAR] = {0};
  for (int k = 0; k < NPAR; k++) {
    snprintf(jn[k], sizeof jn[k], "%d", pars[k]);
    snprintf(tn[k], sizeof tn[k], "--max-threads=%d", pars[k]);
    snprintf(out_w[k], sizeof out_w[k], "%s/out-wget2-%d", state, pars[k]);
    snprintf(wflag[k], sizeof wflag[k], "-P%s", out_w[k]);
    tool_run *a = &tools[TOOLS_PER_N * k + AKGET_PIPELINED], *w = &tools[TOOLS_PER_N * k + WGET2],
             *a1 = &tools[TOOLS_PER_N * k + AKGET_1BY1], *f = &tools[TOOLS_PER_N * k + FLOOR];
    snprintf(a->label, sizeof a->label, "akget -N -j%d -x%d %s", pars[k], pars[k], pflag);
    a->out = out_ak;
    set_argv(a, (const char *[]){akget, "-q", "-N", "-j", jn[k], "-x", jn[k], pflag, dflag, iflag,
                                 NULL});
    snprintf(a1->label, sizeof a1->label, "akget -N -j%d -x%d", pars[k], pars[k]);
    a1->out = out_ak;
    set_argv(a1, (const char *[]){akget, "-q", "-N", "-j", jn[k], "-x", jn[k], dflag, iflag, NULL});
    snprintf(w->label, sizeof w->label, "wget2 -N --max-threads=%d", pars[k]);
    w->out = out_w[k];
    set_argv(w, (const char *[]){"wget2", "-q", "-N", tn[k], "-nd", "--no-compression",
                                 "--http2=off", wflag[k], iflag, NULL});
    w->failed = !have_wget2;
    int fconns = floor_conns ? atoi(floor_conns) : (pars[k] + 7) / 8;
    if (fconns < 1 || fconns > pars[k]) {
      akb_fail(res, "AKB_MIRROR_FLOOR_CONNS=%s: 1 to N (%d) connections", floor_conns, pars[k]);
      fconns = (pars[k] + 7) / 8;
    }
    char fc[16];
    snprintf(fc, sizeof fc, "%d", fconns);
    snprintf(f->label, sizeof f->label, "akbench-mirror-floor N=%d over %d connection%s", pars[k],
             fconns, fconns == 1 ? "" : "s");
    f->out = out_ak;
    set_argv(f, (const char *[]){floor_client ? floor_client : "akbench-mirror-floor", port_s,
                                 out_ak, "/root/m", jn[k], fc, NULL});
    f->failed = !floor_client;
  }
  if (!floor_client)
    akb_note(res, "akbench-mirror-floor: not built next to akbench; its rows skipped");
  size_t ntools = TOOLS_PER_N * NPAR;
  /* The first runs (untimed): each tool's own copy of the tree. */
  for (size_t t = 0; t < ntools; t++) {
    if (tools[t].failed || (on_akget_copy(t) && t > 0))
      continue; /* akget's copy is made once (the floor reads it too) */
    akb_span sp = {0};
    long rss;
    bool cut;
    int rc = run_bounded(tools[t].argv, 600, 0, &sp, &rss, &cut, NULL);
    if (rc != 0 || !same_tree(root, tools[t].out, count)) {
      akb_fail(res, "%s: the first run failed (exit %d) or its tree differs", tools[t].label, rc);
      tools[t].failed = true;
      if (t == 0)
        for (size_t k = 1; k < ntools; k++)
          tools[k].failed = tools[k].failed || on_akget_copy(k);
    }
  }
  akb_title(res, "-N over an unchanged tree of %zu x %llu KiB, at the same parallelism (32, "
                 "5), %u round%s; peak RSS of a long failing list", count,
            (unsigned long long)(size >> 10), rounds, rounds == 1 ? "" : "s");
  for (unsigned r = 0; r < rounds; r++) {
    for (size_t t = 0; t < ntools; t++) {
      if (tools[t].failed)
        continue;
      /* The served tree is read before each run (outside the time), hot in
       * the page cache; the tool's copy is compared byte for byte before
       * the rounds and after them, and after each run no file of it may
       * have been written (inode, size and mtime as before). */
      snprintf(cmd, sizeof cmd, "cat '%s'/* >/dev/null", root);
      sh(cmd);
      uint64_t id0 = tree_id(tools[t].out, count);
      akb_span sp = {0};
      long rss;
      bool cut;
      double s0 = proc_cpu_s(ngw);
      int rc = run_bounded(tools[t].argv, 300, 0, &sp, &rss, &cut, NULL);
      double s1 = proc_cpu_s(ngw);
      if (rc != 0 || tree_id(tools[t].out, count) != id0) {
        akb_fail(res, "%s: a -N run failed (exit %d%s) or wrote a file", tools[t].label, rc,
                 cut ? ", timed out" : "");
        tools[t].failed = true;
        continue;
      }
      tools[t].wall[tools[t].n] = sp.wall_s;
      tools[t].server[tools[t].n] = s1 - s0;
      tools[t].cpu[tools[t].n++] = sp.user_s + sp.sys_s;
    }
  }
  for (size_t t = 0; t < ntools; t++)
    if (!tools[t].failed && !(on_akget_copy(t) && t > 0) && !same_tree(root, tools[t].out, count))
      akb_fail(res, "%s: its tree changed under a -N run", tools[t].label);
  nginx_down(ng);
  double wall[TOOLS_PER_N * NPAR], best_ak = NAN, best_w = NAN, best_floor = NAN, worst_ratio = NAN,
                                   worst_floor_ratio = NAN;
  int best_wi = -1;
  for (size_t t = 0; t < ntools; t++) {
    wall[t] = NAN;
    if (!tools[t].n)
      continue;
    double w = akb_median(tools[t].wall, tools[t].n), c = akb_median(tools[t].cpu, tools[t].n),
           sv = akb_median(tools[t].server, tools[t].n);
    wall[t] = w;
    akb_note(res, "tree: %s: %.1f ms, %.1f ms CPU; nginx %.1f ms CPU (median of %zu)",
             tools[t].label, w * 1e3, c * 1e3, sv * 1e3, tools[t].n);
    if (t % TOOLS_PER_N == AKGET_PIPELINED && !(best_ak <= w))
      best_ak = w;
    if (t % TOOLS_PER_N == WGET2 && !(best_w <= w))
      best_w = w, best_wi = (int)t;
    if (t % TOOLS_PER_N == FLOOR && !(best_floor <= w))
      best_floor = w;
  }
  for (int k = 0; k < NPAR; k++) {
    tool_run *a = &tools[TOOLS_PER_N * k + AKGET_PIPELINED], *w = &tools[TOOLS_PER_N * k + WGET2],
             *f = &tools[TOOLS_PER_N * k + FLOOR];
    char name[32];
    snprintf(name, sizeof name, "N=%d", pars[k]);
    akb_row *row = akb_row_add(res, name);
    double aw = wall[TOOLS_PER_N * k + AKGET_PIPELINED], ww = wall[TOOLS_PER_N * k + WGET2],
           a1w = wall[TOOLS_PER_N * k + AKGET_1BY1], fw = wall[TOOLS_PER_N * k + FLOOR];
    akb_fig_add(row, "akget_ms", "ms", aw * 1e3, false);
    akb_fig_add(row, "akget_cpu_ms", "ms", a->n ? akb_median(a->cpu, a->n) * 1e3 : NAN, false);
    akb_fig_add(row, "wget2_ms", "ms", ww * 1e3, false);
    akb_fig_add(row, "wget2_cpu_ms", "ms", w->n ? akb_median(w->cpu, w->n) * 1e3 : NAN, false);
    akb_fig_add(row, "nginx_cpu_ms", "ms", a->n ? akb_median(a->server, a->n) * 1e3 : NAN, false);
    akb_fig_add(row, "akget_1by1_ms", "ms", a1w * 1e3, false);
    akb_fig_add(row, "speedup", "x", ww / aw, false);
    akb_fig_add(row, "speedup_1by1", "x", ww / a1w, false);
    akb_fig_add(row, "floor_ms", "ms", fw * 1e3, false);
    akb_fig_add(row, "floor_cpu_ms", "ms", f->n ? akb_median(f->cpu, f->n) * 1e3 : NAN, false);
    akb_fig_add(row, "speedup_floor", "x", ww / fw, false);
    if (isfinite(ww / aw) && !(worst_ratio <= ww / aw))
      worst_ratio = ww / aw;
    if (isfinite(ww / fw) && !(worst_floor_ratio <= ww / fw))
      worst_floor_ratio = ww / fw;
  }
  if (isfinite(worst_ratio)) {
    akb_param(res, "speedup_same_parallelism", "x", worst_ratio, false);
    akb_param(res, "speedup_best_modes", "x", best_w / best_ak, false);
    akb_ratio(res, worst_ratio, "wget2 -N / akget -N wall, same N, the lower of N=32, 5");
    akb_note(res, "wget2's fastest mode: %s; akget's fastest against it: %.3fx",
             best_wi >= 0 ? tools[best_wi].label : "-", best_w / best_ak);
  }
  /* The floor's ratios: the most any client showed against wget2 here
   * (what a ratio asked of akget can be held against). */
  if (isfinite(worst_floor_ratio)) {
    akb_param(res, "floor_speedup_same_parallelism", "x", worst_floor_ratio, false);
    akb_param(res, "floor_speedup_best_modes", "x", best_w / best_floor, false);
    akb_note(res,
             "akbench-mirror-floor (one process: the stat, the xattr, the conditional HEAD "
             "and its answer per file, nothing else) against wget2: %.3fx at the same N "
             "(the lower), %.3fx best against best; akget's fastest took %.2fx the "
             "floor's fastest",
             worst_floor_ratio, best_w / best_floor, best_ak / best_floor);
  }
  for (size_t t = 0; t < ntools; t++)
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
static int long_list_rss(const akb_opts *opts, akb_result *res, const char *akget, const char *base,
                         bool alone)
{
  size_t urls = alone && opts->size ? (size_t)opts->size : opts->quick ? 20000 : 2000000;
  double limit = opts->quick ? 60 : LIST_BOUND_S;
  if (alone)
    akb_title(res, "peak RSS of a list of %zu URLs failing at once (akget, aria2c; each run "
                   "bounded by %.0f s)", urls, limit);
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
  /* Each failed URL is one line of the tool's output: akget's "FAILED"
   * (said even with -q), aria2c's "Download aborted" (its console log at
   * warn, no summary lines). */
  struct {
    const char *label, *row, *failed_line;
    const char *argv[16];
  } runs[] = {
      {"akget -i (--retries 0)", "akget-list", "FAILED",
       {akget, "-q", "--retries", "0", "-j", "32", dflag, iflag, NULL}},
      {"aria2c -i", "aria2c-list", "Download aborted",
       {"aria2c", "-j32", "--max-tries=1", "--retry-wait=0", "--summary-interval=0",
        "--console-log-level=warn", dflag, iflag, NULL}},
      {"aria2c -i --deferred-input=true", "aria2c-deferred", "Download aborted",
       {"aria2c", "-j32", "--max-tries=1", "--retry-wait=0", "--summary-interval=0",
        "--console-log-level=warn", "--deferred-input=true", dflag, iflag, NULL}},
  };
  bool have_aria = akb_fs_have("aria2c");
  if (!have_aria)
    akb_note(res, "aria2c: not installed (tools/bootstrap --bench); skipped");
  for (size_t k = 0; k < sizeof runs / sizeof runs[0]; k++) {
    if (k > 0 && !have_aria)
      continue;
    akb_span sp = {0};
    long rss = 0;
    bool cut = false;
    counter *c = calloc(1, sizeof *c);
    if (!c) {
      akb_fail(res, "out of memory");
      return -1;
    }
    c->pat = runs[k].failed_line;
    c->plen = strlen(c->pat);
    /* aria2c holds its whole list (more than 15 GB for 1.95 million URLs,
     * its tracker says): its address space is capped so that the shared
     * machine survives; a run stopped by the cap says so. */
    int rc = run_bounded((char *const *)runs[k].argv, limit, k > 0 ? AS_CAP : 0, &sp, &rss, &cut,
                         c);
    akb_row *row = akb_row_add(res, runs[k].row);
    akb_fig_add(row, "list_peak_rss_mib", "MiB", rss / 1024.0, false);
    akb_fig_add(row, "list_s", "s", sp.wall_s, false);
    akb_fig_add(row, "urls_done", "", (double)c->count, true);
    akb_note(res, "list of %zu failing URLs: %s: peak RSS %.1f MiB, %.1f s, %zu URLs failed "
             "(as they should), exit %d%s%s", urls, runs[k].label, rss / 1024.0, sp.wall_s,
             c->count, rc, cut ? " (cut by the bound: the peak so far)" : "",
             k > 0 && (uint64_t)rss * 1024 > AS_CAP / 8 * 7 ? " (near the 8 GiB address-space cap)"
                                                             : "");
    if (k == 0 && (cut || c->count != urls))
      akb_fail(res, "akget did not go through its list: %zu of %zu URLs in %.0f s", c->count, urls,
               sp.wall_s);
    free(c);
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
  bool plain = v && strcmp(v, "tree-plain") == 0;
  if (v && strcmp(v, "tree") != 0 && strcmp(v, "rss") != 0 && !plain) {
    akb_fail(res, "--variant %s: tree, tree-plain, rss or both", v);
    return -1;
  }
  /* akb_fs_sibling's storage is one buffer: akget's path is copied out
   * before the floor's is looked up. */
  char akget_path[4400], floor_path[4400];
  snprintf(akget_path, sizeof akget_path, "%s", akget);
  akget = akget_path;
  const char *fl = akb_fs_sibling("akbench-mirror-floor");
  if (fl)
    snprintf(floor_path, sizeof floor_path, "%s", fl);
  int rc = 0;
  if (!v || strcmp(v, "tree") == 0 || plain)
    rc = mirror_tree(opts, res, akget, fl ? floor_path : NULL, base, plain);
  if (rc == 0 && (!v || strcmp(v, "rss") == 0))
    rc = long_list_rss(opts, res, akget, base, v != NULL);
  return rc;
}
