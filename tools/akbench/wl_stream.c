/* wl_stream.c: the `stream` workload: one bulk TCP stream over loopback for
 * a fixed time (10 s; --size sets it in milliseconds, --quick 1 s):
 * asynckit's sender and receiver (two processes) against iperf3's client
 * and server (iperf3 -s -1 / iperf3 -c -t, one stream, its JSON read for
 * the received rate). Alternates A B; reports medians of the received rate
 * and each side's CPU time (wait4 on both processes, for iperf3 too).
 *
 * asynckit's sender keeps one send of 1 MiB in flight (MSG_WAITALL: the
 * kernel resends partial sends itself) from one buffer; the receiver runs a
 * multishot recv on a provided-buffer ring of 64 KiB buffers and counts.
 * Both sides check nothing but the byte count, as iperf3 does. iperf3 runs
 * with its defaults (128 KiB writes and reads).
 *
 * --variant asynckit / iperf3 runs one side alone; no ratio.
 */
#include "akb_net.h"

#include <asynckit.h>

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

typedef struct stream_params {
  int port;
  int listen_fd;
  double seconds;
  size_t send_size;    /* bytes per send */
  unsigned ring_count; /* receiver's provided buffers */
  size_t ring_size;
} stream_params;

typedef struct stream_report {
  uint64_t bytes; /* received */
  double wall_s;  /* receiver: first byte to end of stream */
  char what[160];
  int err;
} stream_report;

/* ---- asynckit receiver --------------------------------------------------------------- */

typedef struct sr {
  ak_loop *loop;
  stream_report *rep;
  double t_first;
} sr;

static ak_stream_action sr_received(ak_loop *loop, const void *data, size_t len, void *arg)
{
  (void)loop;
  (void)data;
  sr *r = arg;
  if (r->rep->bytes == 0)
    r->t_first = akb_now_s();
  r->rep->bytes += len;
  return AK_STREAM_CONTINUE;
}

static int ak_stream_receiver(void *arg, void *report)
{
  const stream_params *p = arg;
  stream_report *rep = report;
  sr r = {.rep = rep};
  ak_buf_ring *ring = NULL;
  int rc = ak_loop_new(&r.loop, NULL);
  if (rc == 0)
    rc = ak_buf_ring_new(r.loop, p->ring_count, p->ring_size, &ring);
  ak_future *acc = rc == 0 ? ak_accept(r.loop, p->listen_fd, NULL, NULL, 0) : NULL;
  int fd = acc ? (int)ak_future_get(acc, 10000000000LL, NULL) : rc;
  ak_future_release(acc);
  if (fd < 0) {
    snprintf(rep->what, sizeof(rep->what), "receiver setup: %s", ak_strerror(fd));
    return 1;
  }
  close(p->listen_fd);
  ak_future *st = ak_recv_stream(r.loop, fd, ring, sr_received, &r);
  rc = st ? ak_future_wait(st, AK_FOREVER) : -ENOMEM;
  double t_end = akb_now_s();
  if (rc == 0 && ak_future_is_error(st))
    rc = (int)ak_future_result(st);
  ak_future_release(st);
  rep->wall_s = t_end - r.t_first;
  close(fd);
  ak_buf_ring_free(ring);
  ak_loop_free(r.loop);
  if (rc < 0) {
    snprintf(rep->what, sizeof(rep->what), "receiver: %s", ak_strerror(rc));
    return 1;
  }
  return 0;
}

/* ---- asynckit sender ------------------------------------------------------------------ */

typedef struct ss {
  ak_loop *loop;
  const stream_params *p;
  stream_report *rep;
  int fd;
  unsigned char *buf;
  double t_end;
  bool done;
} ss;

static void ss_send(ss *s);

static void ss_sent(ak_future *f, void *arg)
{
  ss *s = arg;
  int64_t res = ak_future_result(f);
  if (res != (int64_t)s->p->send_size) {
    s->rep->err = res < 0 ? (int)res : -EIO;
    snprintf(s->rep->what, sizeof(s->rep->what), "sender: %s", ak_strerror(s->rep->err));
    s->done = true;
    return;
  }
  s->rep->bytes += (uint64_t)res;
  if (akb_now_s() < s->t_end)
    ss_send(s);
  else
    s->done = true;
}

static void ss_send(ss *s)
{
  ak_future *f = ak_send(s->loop, s->fd, s->buf, s->p->send_size, MSG_WAITALL);
  if (!f || ak_future_on_settle(f, ss_sent, s) < 0) {
    s->rep->err = -ENOMEM;
    s->done = true;
  }
  ak_future_release(f);
}

static int ak_stream_sender(void *arg, void *report)
{
  const stream_params *p = arg;
  stream_report *rep = report;
  ss s = {.p = p, .rep = rep};
  s.buf = calloc(1, p->send_size);
  int rc = s.buf ? ak_loop_new(&s.loop, NULL) : -ENOMEM;
  if (rc < 0) {
    snprintf(rep->what, sizeof(rep->what), "sender setup: %s", ak_strerror(rc));
    return 1;
  }
  close(p->listen_fd);
  s.fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  struct sockaddr_in a;
  memset(&a, 0, sizeof(a));
  a.sin_family = AF_INET;
  a.sin_port = htons((uint16_t)p->port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ak_future *c = ak_connect(s.loop, s.fd, (struct sockaddr *)&a, sizeof(a), 5000000000LL);
  rc = (int)ak_future_get(c, 10000000000LL, NULL);
  ak_future_release(c);
  if (rc < 0) {
    snprintf(rep->what, sizeof(rep->what), "sender connect: %s", ak_strerror(rc));
    return 1;
  }
  s.t_end = akb_now_s() + p->seconds;
  ss_send(&s);
  while (!s.done)
    ak_loop_run(s.loop, AK_RUN_ONCE);
  ak_future_release(ak_close(s.loop, s.fd));
  ak_loop_run(s.loop, AK_RUN_DEFAULT);
  ak_loop_free(s.loop);
  free(s.buf);
  return rep->err ? 1 : 0;
}

/* ---- iperf3 --------------------------------------------------------------------------- */

/* Runs argv with stdout into a pipe; returns the pid, *out_fd the pipe. */
static pid_t spawn(char *const argv[], int *out_fd)
{
  int fds[2];
  if (pipe(fds) != 0)
    return -1;
  fflush(stdout);
  fflush(stderr);
  pid_t pid = fork();
  if (pid == 0) {
    dup2(fds[1], 1);
    int devnull = open("/dev/null", O_WRONLY);
    if (devnull >= 0)
      dup2(devnull, 2);
    close(fds[0]);
    close(fds[1]);
    execvp(argv[0], argv);
    _exit(127);
  }
  close(fds[1]);
  if (pid < 0) {
    close(fds[0]);
    return -1;
  }
  *out_fd = fds[0];
  return pid;
}

/* Reads from fd until needle shows up (true) or end of file. */
static bool read_until(int fd, const char *needle, char *buf, size_t size)
{
  size_t len = 0;
  buf[0] = 0;
  while (len + 1 < size) {
    ssize_t n = read(fd, buf + len, size - 1 - len);
    if (n <= 0)
      return false;
    len += (size_t)n;
    buf[len] = 0;
    if (strstr(buf, needle))
      return true;
  }
  return false;
}

static void read_all(int fd, char *buf, size_t size)
{
  size_t len = 0;
  ssize_t n;
  while (len + 1 < size && (n = read(fd, buf + len, size - 1 - len)) > 0)
    len += (size_t)n;
  buf[len] = 0;
  while (read(fd, (char[4096]){0}, 4096) > 0) {
  }
}

static double json_number_after(const char *json, const char *section, const char *key)
{
  const char *s = strstr(json, section);
  if (!s)
    return -1;
  const char *k = strstr(s, key);
  if (!k)
    return -1;
  k = strchr(k + strlen(key), ':');
  return k ? strtod(k + 1, NULL) : -1;
}

static int iperf3_pair(double seconds, double *bytes_per_s, double *srv_cpu, double *cli_cpu,
                       char *why, size_t why_size)
{
  int port = 0;
  int probe = akb_listen_loopback(1, &port); /* a free port, given back at once */
  if (probe < 0) {
    snprintf(why, why_size, "no free port");
    return -1;
  }
  close(probe);
  char port_s[16], secs_s[32];
  snprintf(port_s, sizeof(port_s), "%d", port);
  snprintf(secs_s, sizeof(secs_s), "%.3f", seconds);
  char *sargv[] = {"iperf3", "-s", "-1", "--forceflush", "-B", "127.0.0.1", "-p", port_s, NULL};
  char *cargv[] = {"iperf3", "-c", "127.0.0.1", "-p", port_s, "-t", secs_s, "-J", NULL};
  static char out[1 << 20];
  int sfd = -1, cfd = -1;
  pid_t spid = spawn(sargv, &sfd);
  if (spid < 0) {
    snprintf(why, why_size, "iperf3: cannot run");
    return -1;
  }
  if (!read_until(sfd, "listening", out, sizeof(out))) {
    snprintf(why, why_size, "iperf3 -s did not start (installed? tools/bootstrap --bench)");
    kill(spid, SIGKILL);
    waitpid(spid, NULL, 0);
    close(sfd);
    return -1;
  }
  pid_t cpid = spawn(cargv, &cfd);
  if (cpid > 0)
    read_all(cfd, out, sizeof(out));
  struct rusage cru, sru;
  memset(&cru, 0, sizeof(cru));
  memset(&sru, 0, sizeof(sru));
  int cst = 0, sst = 0;
  if (cpid > 0)
    wait4(cpid, &cst, 0, &cru);
  read_all(sfd, (char[4096]){0}, 4096);
  wait4(spid, &sst, 0, &sru);
  if (cfd >= 0)
    close(cfd);
  close(sfd);
  double bits = json_number_after(out, "\"sum_received\"", "\"bits_per_second\"");
  if (cpid < 0 || !WIFEXITED(cst) || WEXITSTATUS(cst) != 0 || bits <= 0) {
    snprintf(why, why_size, "iperf3 -c failed (status %d)", cst);
    return -1;
  }
  *bytes_per_s = bits / 8;
  *cli_cpu = (double)cru.ru_utime.tv_sec + cru.ru_utime.tv_usec / 1e6 +
             (double)cru.ru_stime.tv_sec + cru.ru_stime.tv_usec / 1e6;
  *srv_cpu = (double)sru.ru_utime.tv_sec + sru.ru_utime.tv_usec / 1e6 +
             (double)sru.ru_stime.tv_sec + sru.ru_stime.tv_usec / 1e6;
  return 0;
}

/* ---- The workload --------------------------------------------------------------------- */

typedef struct series {
  double bps[1000];
  double rx_cpu[1000];
  double tx_cpu[1000];
  unsigned n;
} series;

static int ak_pair(stream_params *p, double *bps, double *rx_cpu, double *tx_cpu, char *why,
                   size_t why_size)
{
  _Static_assert(sizeof(stream_report) <= AKB_NET_REPORT, "the report fits the pipe record");
  int lfd = akb_listen_loopback(16, &p->port);
  if (lfd < 0) {
    snprintf(why, why_size, "listen: %s", strerror(-lfd));
    return -1;
  }
  p->listen_fd = lfd;
  akb_child rx, tx;
  int rc = akb_child_start(&rx, ak_stream_receiver, p);
  if (rc == 0 && (rc = akb_child_start(&tx, ak_stream_sender, p)) < 0)
    akb_child_kill(&rx);
  close(lfd);
  if (rc < 0) {
    snprintf(why, why_size, "fork: %s", strerror(-rc));
    return -1;
  }
  union {
    stream_report r;
    unsigned char raw[AKB_NET_REPORT];
  } rbuf, tbuf;
  double tu = 0, ts = 0, ru = 0, rs = 0;
  int trc = akb_child_finish(&tx, tbuf.raw, &tu, &ts);
  if (trc != 0)
    akb_child_kill(&rx);
  int rrc = rx.pid ? akb_child_finish(&rx, rbuf.raw, &ru, &rs) : -ECHILD;
  if (trc != 0 || rrc != 0) {
    snprintf(why, why_size, "sender %d (%.80s), receiver %d (%.80s)", trc,
             trc > 0 ? tbuf.r.what : "", rrc, rrc > 0 ? rbuf.r.what : "");
    return -1;
  }
  if (rbuf.r.bytes != tbuf.r.bytes) {
    snprintf(why, why_size, "received %llu bytes of %llu sent", (unsigned long long)rbuf.r.bytes,
             (unsigned long long)tbuf.r.bytes);
    return -1;
  }
  *bps = (double)rbuf.r.bytes / rbuf.r.wall_s;
  *rx_cpu = ru + rs;
  *tx_cpu = tu + ts;
  return 0;
}

static void add_row(akb_result *res, const char *name, series *s, double seconds)
{
  akb_row *row = akb_row_add(res, name);
  double bps = akb_median(s->bps, s->n);
  akb_fig_add(row, "GB_per_s", "", bps / 1e9, false);
  double rx = akb_median(s->rx_cpu, s->n), tx = akb_median(s->tx_cpu, s->n);
  akb_fig_add(row, "receiver_cpu_s", "", rx, false);
  akb_fig_add(row, "sender_cpu_s", "", tx, false);
  akb_fig_add(row, "cpu_s_per_GB", "", (rx + tx) / (bps * seconds / 1e9), false);
  akb_fig_add(row, "pairs", "", s->n, true);
}

int akb_wl_stream(const akb_opts *opts, akb_result *res)
{
  static series ak, ip;
  memset(&ak, 0, sizeof(ak));
  memset(&ip, 0, sizeof(ip));
  stream_params p = {.send_size = 1u << 20, .ring_count = 64, .ring_size = 65536};
  p.seconds = (double)akb_size(opts, 10000, 1000) / 1000.0;
  akb_title(res, "one TCP stream over loopback for %.1f s, %u A B pairs", p.seconds, opts->rounds);
  akb_param(res, "seconds", "", p.seconds, false);
  akb_param(res, "send_bytes", "", (double)p.send_size, true);
  akb_param(res, "ring_buffers", "", p.ring_count, true);
  akb_param(res, "ring_buffer_bytes", "", (double)p.ring_size, true);
  bool run_ak = strcmp(opts->variant, "iperf3") != 0;
  bool run_ip = strcmp(opts->variant, "asynckit") != 0;
  char why[300];
  bool have_iperf = run_ip;
  for (unsigned r = 0; r < opts->rounds; r++) {
    if (run_ak) {
      if (ak_pair(&p, &ak.bps[ak.n], &ak.rx_cpu[ak.n], &ak.tx_cpu[ak.n], why, sizeof(why)) < 0) {
        akb_fail(res, "asynckit: %s", why);
        return -1;
      }
      ak.n++;
    }
    if (have_iperf) {
      if (iperf3_pair(p.seconds, &ip.bps[ip.n], &ip.rx_cpu[ip.n], &ip.tx_cpu[ip.n], why,
                      sizeof(why)) < 0) {
        akb_note(res, "iperf3: %s", why);
        have_iperf = false;
      } else {
        ip.n++;
      }
    }
  }
  if (ak.n)
    add_row(res, "asynckit", &ak, p.seconds);
  if (ip.n)
    add_row(res, "iperf3", &ip, p.seconds);
  if (ak.n && ip.n)
    akb_ratio(res, akb_median(ak.bps, ak.n) / akb_median(ip.bps, ip.n),
              "median received bytes/s, asynckit / iperf3 (one stream)");
  return 0;
}
