/* wl_tls.c: the `tls` workload, in one run:
 *  1. bulk: one connection moving --size MiB (1024; --quick 64) over TLS
 *     with the OpenSSL engine (the default), over TLS with the mbedtls
 *     engine, and over plain TCP, asynckit on both ends (two processes),
 *     alternating openssl mbedtls TCP; the received rate, its ratio to TCP,
 *     and the client's CPU seconds per GiB;
 *  2. handshakes: asynckit's client making full handshakes (no resumption)
 *     and resumed ones, one connection at a time for a fixed time, against
 *     `openssl s_time -new` and `-reuse` on the same asynckit server, the
 *     same certificate (ECDSA P-256 from tests/tls_certs.sh) and the same
 *     suite (ECDHE-ECDSA-AES128-GCM-SHA256 for TLS 1.2; TLS 1.3 picks
 *     TLS_AES_128_GCM_SHA256 on both), alternating A B, with the default
 *     engine. Each connection closes with close_notify and reads the
 *     server's end, which takes in the TLS 1.3 tickets (a TLS 1.3 client
 *     that never reads has nothing to resume).
 * The certificates are made in a temp dir at the start (openssl's command
 * line). The client verifies the server (the test CA, host localhost).
 */
#define _GNU_SOURCE
#include "akb_net.h"

#include <asynckit.h>

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#define AKB_TLS_SUITE "ECDHE-ECDSA-AES128-GCM-SHA256"
#define CHUNK (1u << 20)

extern char **environ;

typedef struct tls_params {
  int port;
  int listen_fd;
  bool tls;          /* bulk over TLS (else plain TCP) */
  ak_tls_engine engine; /* the TLS engine, both ends (AUTO: the default) */
  uint64_t bytes;    /* bulk: bytes the client sends */
  double seconds;    /* handshakes: how long the client runs */
  bool resume;       /* handshakes: resumed (else full) */
  char certs[200];   /* the temp dir with the certificates */
} tls_params;

typedef struct tls_report {
  uint64_t bytes;      /* bulk: received; handshakes: completed */
  double wall_s;       /* bulk receiver: first byte to end; handshakes: the run */
  uint64_t resumed;    /* handshakes: of them resumed */
  char suite[48];      /* the suite the client saw */
  char what[140];      /* the first error */
} tls_report;

static void path(char *out, size_t n, const tls_params *p, const char *name) {
  snprintf(out, n, "%s/%s", p->certs, name);
}

static ak_tls_config *server_config(const tls_params *p, char *what, size_t n) {
  char certf[256], keyf[256];
  path(certf, sizeof(certf), p, "server.pem");
  path(keyf, sizeof(keyf), p, "server.key");
  ak_tls_server_options o = {.cert_file = certf, .key_file = keyf, .engine = p->engine};
  ak_tls_config *cfg = NULL;
  int rc = ak_tls_server_config_new(&o, &cfg);
  if (rc < 0)
    snprintf(what, n, "server config: %s (%s)", ak_strerror(rc), ak_tls_config_error());
  return cfg;
}

static ak_tls_config *client_config(const tls_params *p, unsigned flags, char *what, size_t n) {
  char caf[256];
  path(caf, sizeof(caf), p, "ca.pem");
  ak_tls_client_options o = {.ca_file = caf, .flags = flags, .engine = p->engine};
  ak_tls_config *cfg = NULL;
  int rc = ak_tls_client_config_new(&o, &cfg);
  if (rc < 0)
    snprintf(what, n, "client config: %s (%s)", ak_strerror(rc), ak_tls_config_error());
  return cfg;
}

static int64_t get(ak_future *f) {
  if (!f)
    return -ENOMEM;
  int64_t r = ak_future_get(f, 30000000000LL, NULL);
  ak_future_release(f);
  return r;
}

static int connect_loopback(int port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  struct sockaddr_in a;
  memset(&a, 0, sizeof(a));
  a.sin_family = AF_INET;
  a.sin_port = htons((uint16_t)port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
    int err = -errno;
    if (fd >= 0)
      close(fd);
    return err;
  }
  return fd;
}

/* ---- Bulk: receiver and sender (child processes) -------------------------------- */

static int bulk_receiver(void *arg, void *report) {
  const tls_params *p = arg;
  tls_report *rep = report;
  ak_loop *loop = NULL;
  ak_tls_config *cfg = NULL;
  ak_tls *t = NULL;
  static unsigned char buf[256 * 1024];
  int fd = accept4(p->listen_fd, NULL, NULL, SOCK_CLOEXEC);
  close(p->listen_fd);
  int64_t rc = fd < 0 ? -errno : ak_loop_new(&loop, NULL);
  if (rc == 0 && p->tls) {
    cfg = server_config(p, rep->what, sizeof(rep->what));
    rc = cfg ? ak_tls_server_new(loop, cfg, fd, &t) : -EINVAL;
    if (rc == 0)
      rc = get(ak_tls_handshake(t));
  }
  double t_first = 0;
  while (rc >= 0) {
    rc = get(p->tls ? ak_tls_read(t, buf, sizeof(buf)) : ak_recv(loop, fd, buf, sizeof(buf), 0));
    if (rc <= 0)
      break;
    if (rep->bytes == 0)
      t_first = akb_now_s();
    rep->bytes += (uint64_t)rc;
  }
  rep->wall_s = akb_now_s() - t_first;
  if (rc < 0 && !rep->what[0])
    snprintf(rep->what, sizeof(rep->what), "receiver: %s", ak_strerror((int)rc));
  ak_tls_free(t);
  ak_tls_config_release(cfg);
  if (fd >= 0)
    close(fd);
  ak_loop_free(loop);
  return rc < 0 ? 1 : 0;
}

static int bulk_sender(void *arg, void *report) {
  const tls_params *p = arg;
  tls_report *rep = report;
  close(p->listen_fd);
  ak_loop *loop = NULL;
  ak_tls_config *cfg = NULL;
  ak_tls *t = NULL;
  unsigned char *buf = malloc(CHUNK);
  for (size_t i = 0; buf && i < CHUNK; i++)
    buf[i] = (unsigned char)(i * 7);
  int fd = connect_loopback(p->port);
  int64_t rc = !buf ? -ENOMEM : fd < 0 ? fd : ak_loop_new(&loop, NULL);
  if (rc == 0 && p->tls) {
    cfg = client_config(p, 0, rep->what, sizeof(rep->what));
    rc = cfg ? ak_tls_client_new(loop, cfg, fd, "localhost", &t) : -EINVAL;
    if (rc == 0)
      rc = get(ak_tls_handshake(t));
    if (rc == 0) {
      ak_tls_stats st;
      ak_tls_stats_get(t, &st);
      snprintf(rep->suite, sizeof(rep->suite), "%s", st.ciphersuite);
    }
  }
  while (rc >= 0 && rep->bytes < p->bytes) {
    size_t n = p->bytes - rep->bytes < CHUNK ? (size_t)(p->bytes - rep->bytes) : CHUNK;
    rc = get(p->tls ? ak_tls_write(t, buf, n) : ak_send_all(loop, fd, buf, n, 0));
    if (rc > 0)
      rep->bytes += (uint64_t)rc;
  }
  if (rc >= 0 && p->tls)
    rc = get(ak_tls_close_notify(t));
  if (rc >= 0 && p->tls) {
    /* Wait for the receiver's end before closing: a TLS 1.3 server's
     * tickets sit unread in our socket, and closing over unread bytes
     * sends a reset that can cut off the receiver's last reads. */
    unsigned char b[4096];
    while (get(ak_tls_read(t, b, sizeof(b))) > 0)
      ;
  }
  if (rc < 0 && !rep->what[0])
    snprintf(rep->what, sizeof(rep->what), "sender: %s", ak_strerror((int)rc));
  ak_tls_free(t);
  ak_tls_config_release(cfg);
  if (fd >= 0)
    close(fd);
  ak_loop_free(loop);
  free(buf);
  return rc < 0 ? 1 : 0;
}

/* One bulk run: rate (bytes/s received) and the client's CPU seconds. */
static int bulk_pair(tls_params *p, double *bps, double *client_cpu, char *suite, char *why,
                     size_t n) {
  _Static_assert(sizeof(tls_report) <= AKB_NET_REPORT, "the report fits the pipe record");
  int lfd = akb_listen_loopback(4, &p->port);
  if (lfd < 0) {
    snprintf(why, n, "listen: %s", strerror(-lfd));
    return -1;
  }
  p->listen_fd = lfd;
  akb_child rx, tx;
  int rc = akb_child_start(&rx, bulk_receiver, p);
  if (rc == 0 && (rc = akb_child_start(&tx, bulk_sender, p)) < 0)
    akb_child_kill(&rx);
  close(lfd);
  if (rc < 0) {
    snprintf(why, n, "fork: %s", strerror(-rc));
    return -1;
  }
  union {
    tls_report r;
    unsigned char raw[AKB_NET_REPORT];
  } rb, tb;
  double tu = 0, ts = 0, ru = 0, rs = 0;
  int trc = akb_child_finish(&tx, tb.raw, &tu, &ts);
  if (trc != 0)
    akb_child_kill(&rx);
  int rrc = rx.pid ? akb_child_finish(&rx, rb.raw, &ru, &rs) : -ECHILD;
  if (trc != 0 || rrc != 0) {
    snprintf(why, n, "sender %d (%.60s), receiver %d (%.60s)", trc, trc > 0 ? tb.r.what : "",
             rrc, rrc > 0 ? rb.r.what : "");
    return -1;
  }
  if (rb.r.bytes != p->bytes || tb.r.bytes != p->bytes) {
    snprintf(why, n, "received %llu of %llu bytes", (unsigned long long)rb.r.bytes,
             (unsigned long long)p->bytes);
    return -1;
  }
  *bps = (double)rb.r.bytes / rb.r.wall_s;
  *client_cpu = tu + ts;
  if (suite && tb.r.suite[0])
    snprintf(suite, 48, "%s", tb.r.suite);
  return 0;
}

/* ---- Handshakes: asynckit's server (a child, until killed) ------------------------ */

typedef struct hs_conn {
  ak_tls *t;
  int fd;
  unsigned char buf[64];
} hs_conn;

static void hs_conn_end(ak_future *f, void *arg) {
  (void)f;
  hs_conn *c = arg;
  ak_tls_free(c->t);
  close(c->fd);
  free(c);
}

/* After the handshake, wait for the peer's end (close_notify or EOF). */
static void hs_conn_ready(ak_future *f, void *arg) {
  hs_conn *c = arg;
  ak_future *r = ak_future_is_error(f) ? NULL : ak_tls_read(c->t, c->buf, sizeof(c->buf));
  if (!r || ak_future_on_settle(r, hs_conn_end, c) < 0)
    hs_conn_end(NULL, c);
  ak_future_release(r);
}

static ak_stream_action hs_accepted(ak_loop *loop, int fd, void *arg) {
  ak_tls_config *cfg = arg;
  if (fd < 0)
    return AK_STREAM_CONTINUE;
  hs_conn *c = calloc(1, sizeof(*c));
  if (!c || ak_tls_server_new(loop, cfg, fd, &c->t) != 0) {
    free(c);
    close(fd);
    return AK_STREAM_CONTINUE;
  }
  c->fd = fd;
  ak_future *h = ak_tls_handshake(c->t);
  if (!h || ak_future_on_settle(h, hs_conn_ready, c) < 0)
    hs_conn_end(NULL, c);
  ak_future_release(h);
  return AK_STREAM_CONTINUE;
}

static int hs_server(void *arg, void *report) {
  const tls_params *p = arg;
  tls_report *rep = report;
  ak_loop *loop = NULL;
  if (ak_loop_new(&loop, NULL) != 0)
    return 1;
  ak_tls_config *cfg = server_config(p, rep->what, sizeof(rep->what));
  if (!cfg)
    return 1;
  ak_future *st = ak_accept_stream(loop, p->listen_fd, 0, hs_accepted, cfg);
  ak_future_wait(st, AK_FOREVER); /* until akbench kills this process */
  return 0;
}

/* ---- Handshakes: asynckit's client -------------------------------------------------- */

static int hs_client(void *arg, void *report) {
  const tls_params *p = arg;
  tls_report *rep = report;
  ak_loop *loop = NULL;
  if (ak_loop_new(&loop, NULL) != 0)
    return 1;
  ak_tls_config *cfg =
      client_config(p, p->resume ? 0 : AK_TLS_NO_RESUMPTION, rep->what, sizeof(rep->what));
  if (!cfg)
    return 1;
  double t0 = akb_now_s(), end = t0 + p->seconds;
  int64_t rc = 0;
  while (rc == 0 && akb_now_s() < end) {
    int fd = connect_loopback(p->port);
    ak_tls *t = NULL;
    rc = fd < 0 ? fd : ak_tls_client_new(loop, cfg, fd, "localhost", &t);
    if (rc == 0)
      rc = get(ak_tls_handshake(t));
    if (rc == 0) {
      ak_tls_stats st;
      ak_tls_stats_get(t, &st);
      rep->bytes++;
      rep->resumed += st.resumed;
      snprintf(rep->suite, sizeof(rep->suite), "%s", st.ciphersuite);
      rc = get(ak_tls_close_notify(t));
      rc = rc > 0 ? 0 : rc;
      /* The server's end (it frees on our close_notify): TLS 1.3 tickets
       * come in with it. EOF without close_notify is expected here. */
      unsigned char b[64];
      if (rc == 0)
        (void)get(ak_tls_read(t, b, sizeof(b)));
    }
    ak_tls_free(t);
    if (fd >= 0)
      close(fd);
  }
  rep->wall_s = akb_now_s() - t0;
  if (rc < 0)
    snprintf(rep->what, sizeof(rep->what), "handshake client: %s", ak_strerror((int)rc));
  ak_tls_config_release(cfg);
  ak_loop_free(loop);
  return rc < 0 ? 1 : 0;
}

static int ak_handshakes(tls_params *p, double *per_s, double *resumed_share, char *why,
                         size_t n) {
  akb_child c;
  int rc = akb_child_start(&c, hs_client, p);
  if (rc < 0) {
    snprintf(why, n, "fork: %s", strerror(-rc));
    return -1;
  }
  union {
    tls_report r;
    unsigned char raw[AKB_NET_REPORT];
  } rb;
  double u, s;
  rc = akb_child_finish(&c, rb.raw, &u, &s);
  if (rc != 0 || rb.r.bytes == 0) {
    snprintf(why, n, "asynckit client %d: %.100s", rc, rb.r.what);
    return -1;
  }
  *per_s = (double)rb.r.bytes / rb.r.wall_s;
  *resumed_share = (double)rb.r.resumed / (double)rb.r.bytes;
  return 0;
}

/* openssl s_time -new / -reuse: connections per wall second, from its
 * own count over the wall time of the whole process. */
static int s_time(const tls_params *p, bool reuse, double *per_s, char *why, size_t n) {
  char connect_arg[32], secs[16], caf[256], log[256];
  snprintf(connect_arg, sizeof(connect_arg), "127.0.0.1:%d", p->port);
  snprintf(secs, sizeof(secs), "%d", (int)(p->seconds + 0.5) > 0 ? (int)(p->seconds + 0.5) : 1);
  path(caf, sizeof(caf), p, "ca.pem");
  path(log, sizeof(log), p, "s_time.log");
  char *argv[] = {"openssl", "s_time", "-connect", connect_arg, reuse ? "-reuse" : "-new",
                  "-time", secs, "-cipher", AKB_TLS_SUITE, "-CAfile", caf, NULL};
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&fa, 1, log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_adddup2(&fa, 1, 2);
  pid_t pid;
  double t0 = akb_now_s();
  int rc = posix_spawnp(&pid, "openssl", &fa, NULL, argv, environ);
  posix_spawn_file_actions_destroy(&fa);
  if (rc != 0) {
    snprintf(why, n, "openssl s_time: %s", strerror(rc));
    return -1;
  }
  int status = 0;
  waitpid(pid, &status, 0);
  double wall = akb_now_s() - t0;
  FILE *f = fopen(log, "r");
  char line[512];
  long conns = -1;
  while (f && fgets(line, sizeof(line), f)) {
    long c;
    double s;
    if (sscanf(line, "%ld connections in %lfs;", &c, &s) == 2)
      conns = c;
  }
  if (f)
    fclose(f);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0 || conns <= 0) {
    snprintf(why, n, "openssl s_time %s failed (status %d, see s_time.log in %.150s)",
             reuse ? "-reuse" : "-new", status, p->certs);
    return -1;
  }
  *per_s = (double)conns / wall;
  return 0;
}

/* ---- The workload ---------------------------------------------------------------------- */

static int make_certs(tls_params *p, char *why, size_t n) {
  snprintf(p->certs, sizeof(p->certs), "%s/akbench-tls-XXXXXX",
           getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
  if (!mkdtemp(p->certs)) {
    snprintf(why, n, "mkdtemp: %s", strerror(errno));
    return -1;
  }
  char cmd[600];
  snprintf(cmd, sizeof(cmd), "sh '%s' '%s'", AKB_TLS_CERTS_SH, p->certs);
  if (system(cmd) != 0) {
    snprintf(why, n, "making certificates with %s failed (openssl installed?)", AKB_TLS_CERTS_SH);
    return -1;
  }
  return 0;
}

static void remove_certs(const tls_params *p) {
  char cmd[300];
  snprintf(cmd, sizeof(cmd), "rm -rf '%s'", p->certs);
  if (system(cmd) != 0)
    fprintf(stderr, "akbench: could not remove %s\n", p->certs);
}

int akb_wl_tls(const akb_opts *opts, akb_result *res) {
  enum { MAXR = 100 };
  static double tls_bps[MAXR], tcp_bps[MAXR], tls_cpu[MAXR], tcp_cpu[MAXR], ratio[MAXR];
  static double mb_bps[MAXR], mb_cpu[MAXR], mb_ratio[MAXR], os_vs_mb[MAXR];
  static double ak_full[MAXR], os_full[MAXR], ak_res[MAXR], os_res[MAXR];
  unsigned rounds = opts->rounds < MAXR ? opts->rounds : MAXR;
  tls_params p = {0};
  p.bytes = akb_size(opts, 1024, 64) << 20;
  p.seconds = opts->quick ? 1.0 : 3.0;
  akb_title(res, "TLS bulk %llu MiB vs TCP, handshakes %.0f s vs openssl s_time, %u pairs",
            (unsigned long long)(p.bytes >> 20), p.seconds, rounds);
  char why[300], suite[48] = "", mb_suite[48] = "";
  if (make_certs(&p, why, sizeof(why)) < 0) {
    akb_fail(res, "%s", why);
    return -1;
  }
  akb_param(res, "bulk_MiB", "", (double)(p.bytes >> 20), true);
  akb_param(res, "handshake_seconds", "", p.seconds, false);
  int ret = 0;
  /* 1. Bulk, alternating openssl mbedtls TCP. */
  for (unsigned r = 0; r < rounds; r++) {
    p.tls = true;
    p.engine = AK_TLS_ENGINE_OPENSSL;
    if (bulk_pair(&p, &tls_bps[r], &tls_cpu[r], suite, why, sizeof(why)) < 0) {
      akb_fail(res, "tls bulk: %s", why);
      ret = -1;
      goto out;
    }
    p.engine = AK_TLS_ENGINE_MBEDTLS;
    /* A build without mbedtls (meson -Dmbedtls=disabled) has no second engine. */
    if (AKB_HAVE_MBEDTLS && bulk_pair(&p, &mb_bps[r], &mb_cpu[r], mb_suite, why, sizeof(why)) < 0) {
      akb_fail(res, "tls bulk (mbedtls): %s", why);
      ret = -1;
      goto out;
    }
    p.engine = AK_TLS_ENGINE_AUTO;
    p.tls = false;
    if (bulk_pair(&p, &tcp_bps[r], &tcp_cpu[r], NULL, why, sizeof(why)) < 0) {
      akb_fail(res, "tcp bulk: %s", why);
      ret = -1;
      goto out;
    }
    ratio[r] = tls_bps[r] / tcp_bps[r];
    mb_ratio[r] = AKB_HAVE_MBEDTLS ? mb_bps[r] / tcp_bps[r] : 0;
    os_vs_mb[r] = AKB_HAVE_MBEDTLS ? tls_bps[r] / mb_bps[r] : 0;
  }
  /* 2. Handshakes against one asynckit server, alternating ak openssl. */
  int lfd = akb_listen_loopback(512, &p.port);
  akb_child srv;
  p.listen_fd = lfd;
  if (lfd < 0 || akb_child_start(&srv, hs_server, &p) < 0) {
    akb_fail(res, "handshake server: cannot start");
    if (lfd >= 0)
      close(lfd);
    ret = -1;
    goto out;
  }
  close(lfd);
  bool have_stime = true;
  double share = 0;
  for (unsigned r = 0; r < rounds && ret == 0; r++) {
    p.resume = false;
    if (ak_handshakes(&p, &ak_full[r], &share, why, sizeof(why)) < 0 || share != 0) {
      akb_fail(res, "full handshakes: %s", share != 0 ? "some resumed" : why);
      ret = -1;
      break;
    }
    if (have_stime && s_time(&p, false, &os_full[r], why, sizeof(why)) < 0) {
      akb_note(res, "%s", why);
      have_stime = false;
    }
    p.resume = true;
    if (ak_handshakes(&p, &ak_res[r], &share, why, sizeof(why)) < 0 || share < 0.9) {
      akb_fail(res, "resumed handshakes: %s", share < 0.9 ? "fewer than 90% resumed" : why);
      ret = -1;
      break;
    }
    if (have_stime && s_time(&p, true, &os_res[r], why, sizeof(why)) < 0) {
      akb_note(res, "%s", why);
      have_stime = false;
    }
  }
  akb_child_kill(&srv);
  if (ret < 0)
    goto out;

  akb_row *row = akb_row_add(res, "tls");
  double tls_med = akb_median(tls_bps, rounds);
  akb_fig_add(row, "MB_per_s", "", tls_med / 1e6, false);
  akb_fig_add(row, "client_cpu_s_per_GiB", "",
              akb_median(tls_cpu, rounds) / ((double)p.bytes / (1u << 30)), false);
  if (AKB_HAVE_MBEDTLS) {
    row = akb_row_add(res, "tls-mbedtls");
    akb_fig_add(row, "MB_per_s", "", akb_median(mb_bps, rounds) / 1e6, false);
    akb_fig_add(row, "client_cpu_s_per_GiB", "",
                akb_median(mb_cpu, rounds) / ((double)p.bytes / (1u << 30)), false);
  }
  row = akb_row_add(res, "tcp");
  akb_fig_add(row, "MB_per_s", "", akb_median(tcp_bps, rounds) / 1e6, false);
  akb_fig_add(row, "client_cpu_s_per_GiB", "",
              akb_median(tcp_cpu, rounds) / ((double)p.bytes / (1u << 30)), false);
  row = akb_row_add(res, "handshakes");
  akb_fig_add(row, "ak_full_per_s", "", akb_median(ak_full, rounds), false);
  akb_fig_add(row, "ak_resumed_per_s", "", akb_median(ak_res, rounds), false);
  if (have_stime) {
    akb_fig_add(row, "s_time_new_per_s", "", akb_median(os_full, rounds), false);
    akb_fig_add(row, "s_time_reuse_per_s", "", akb_median(os_res, rounds), false);
    double full_ratio[MAXR], res_ratio[MAXR];
    for (unsigned r = 0; r < rounds; r++) {
      full_ratio[r] = ak_full[r] / os_full[r];
      res_ratio[r] = ak_res[r] / os_res[r];
    }
    akb_param(res, "full_vs_s_time", "", akb_median(full_ratio, rounds), false);
    akb_param(res, "resumed_vs_s_time", "", akb_median(res_ratio, rounds), false);
  }
  akb_param(res, "tls_vs_tcp_MBps", "", akb_median(ratio, rounds), false);
  if (AKB_HAVE_MBEDTLS) {
    akb_param(res, "mbedtls_vs_tcp_MBps", "", akb_median(mb_ratio, rounds), false);
    akb_param(res, "openssl_vs_mbedtls_MBps", "", akb_median(os_vs_mb, rounds), false);
  }
  akb_ratio(res, akb_median(ratio, rounds), "TLS bulk MB/s over plain TCP MB/s (median of pairs)");
  if (AKB_HAVE_MBEDTLS)
    akb_note(res, "tls: OpenSSL engine, suite %s; tls-mbedtls: suite %s", suite, mb_suite);
  else
    akb_note(res, "tls: OpenSSL engine, suite %s; no tls-mbedtls row (built without mbedtls)",
             suite);
  akb_note(res, "client verifies the test CA, host localhost");
  akb_note(res, "handshakes: one connection at a time, against asynckit's server, default "
                "engine (OpenSSL)");
out:
  remove_certs(&p);
  return ret;
}
