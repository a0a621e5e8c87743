/* test_tls.c: TLS sessions over ring sockets: safe defaults (no session without a host name,
 * every bad certificate its own error), the pump's rules, faults, big transfers, 1000 sessions,
 * and interop with openssl s_server, s_client and nginx, with certificates made at test time.
 * Runs once per engine (meson: AK_TLS_ENGINE=openssl and =mbedtls); the engine-choice and
 * cross-engine cases name their engines explicitly. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <netinet/in.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include <asynckit.h>

#define SEC INT64_C(1000000000)
#define MS INT64_C(1000000)

extern char **environ;

static char certs[256]; /* the temp dir tls_certs.sh filled */
static ak_loop *loop;
static const char *engine = "openssl"; /* what AK_TLS_ENGINE says: the engine under test */
static bool is_openssl;                /* it is OpenSSL (TLS 1.3 against OpenSSL peers) */

/* ---- Helpers --------------------------------------------------------------------- */

static const char *cert(const char *name) {
  static char paths[8][320];
  static unsigned next;
  char *p = paths[next++ % 8];
  snprintf(p, sizeof(paths[0]), "%s/%s", certs, name);
  return p;
}

/* Waits (running the loop) at most 20 s and returns the result. */
static int64_t get(ak_future *f) {
  assert_non_null(f);
  assert_int_equal(ak_future_wait(f, 20 * SEC), 0);
  return ak_future_result(f);
}

static int64_t get_release(ak_future *f) {
  int64_t r = get(f);
  ak_future_release(f);
  return r;
}

static struct sockaddr_in loopback4(int port) {
  struct sockaddr_in a;
  memset(&a, 0, sizeof(a));
  a.sin_family = AF_INET;
  a.sin_port = htons((uint16_t)port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return a;
}

static void set_timeouts(int fd) {
  struct timeval tv = {.tv_sec = 20};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
}

/* A connected TCP pair made with plain blocking calls. */
static void tcp_pair(int *c, int *s) {
  int lfd = ak_tcp_listen("127.0.0.1", 0, 16);
  assert_true(lfd >= 0);
  struct sockaddr_in a = loopback4(ak_socket_port(lfd));
  *c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  assert_true(*c >= 0);
  assert_int_equal(connect(*c, (struct sockaddr *)&a, sizeof(a)), 0);
  *s = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
  assert_true(*s >= 0);
  close(lfd);
  set_timeouts(*s);
}

/* A blocking connection to 127.0.0.1:port, retried for up to 10 s while
 * the server starts. */
static int connect_retry(int port) {
  struct sockaddr_in a = loopback4(port);
  for (int i = 0; i < 500; i++) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    if (connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0)
      return fd;
    close(fd);
    usleep(20000);
  }
  fail_msg("nothing listens on port %d after 10 s", port);
  return -1;
}

static int free_port(void) {
  int fd = ak_tcp_listen("127.0.0.1", 0, 1);
  assert_true(fd >= 0);
  int port = ak_socket_port(fd);
  close(fd);
  return port;
}

static ak_tls_config *client_cfg(unsigned flags) {
  ak_tls_client_options o = {.ca_file = cert("ca.pem"), .flags = flags};
  ak_tls_config *cfg = NULL;
  assert_int_equal(ak_tls_client_config_new(&o, &cfg), 0);
  return cfg;
}

static ak_tls_config *server_cfg(const char *certfile) {
  ak_tls_server_options o = {.cert_file = cert(certfile), .key_file = cert("server.key")};
  ak_tls_config *cfg = NULL;
  int rc = ak_tls_server_config_new(&o, &cfg);
  if (rc != 0)
    fail_msg("server config %s: %s (%s)", certfile, ak_err_name(rc), ak_tls_config_error());
  return cfg;
}

typedef struct pair {
  int cfd, sfd;
  ak_tls *c, *s;
} pair;

static void pair_open(pair *p, ak_tls_config *ccfg, const char *host, ak_tls_config *scfg) {
  tcp_pair(&p->cfd, &p->sfd);
  assert_int_equal(ak_tls_client_new(loop, ccfg, p->cfd, host, &p->c), 0);
  assert_int_equal(ak_tls_server_new(loop, scfg, p->sfd, &p->s), 0);
}

/* Runs both handshakes; returns the client's outcome (the server's future
 * must settle too, whatever its outcome). */
static int64_t pair_handshake(pair *p, ak_future **client_f) {
  ak_future *sf = ak_tls_handshake(p->s);
  ak_future *cf = ak_tls_handshake(p->c);
  int64_t r = get(cf);
  if (r < 0)
    shutdown(p->cfd, SHUT_RDWR); /* the server may still wait for bytes */
  if (get(sf) < 0 && r == 0)
    print_message("server handshake: %s (%s)\n", ak_err_name((int)ak_future_result(sf)),
                  ak_future_detail(sf) ? ak_future_detail(sf) : "-");
  if (r < 0)
    print_message("client handshake: %s (%s)\n", ak_err_name((int)r),
                  ak_future_detail(cf) ? ak_future_detail(cf) : "-");
  ak_future_release(sf);
  if (client_f)
    *client_f = cf;
  else
    ak_future_release(cf);
  return r;
}

static void pair_close(pair *p) {
  ak_tls_free(p->c);
  ak_tls_free(p->s);
  close(p->cfd);
  close(p->sfd);
}

static unsigned char pattern(size_t i, unsigned seed) {
  return (unsigned char)((i * 2654435761u) >> 13 ^ seed ^ (i >> 16));
}

static int count_fds(void) {
  int n = 0;
  DIR *d = opendir("/proc/self/fd");
  assert_non_null(d);
  while (readdir(d))
    n++;
  closedir(d);
  return n;
}

/* ---- Processes: openssl and nginx ------------------------------------------------ */

/* Starts argv with stdin from in_fd (-1: /dev/null) and stdout+stderr to log. */
static pid_t spawn(char *const argv[], int in_fd, const char *log) {
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  if (in_fd >= 0)
    posix_spawn_file_actions_adddup2(&fa, in_fd, 0);
  else
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&fa, 1, log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_adddup2(&fa, 1, 2);
  pid_t pid;
  int rc = posix_spawnp(&pid, argv[0], &fa, NULL, argv, environ);
  posix_spawn_file_actions_destroy(&fa);
  if (rc != 0)
    fail_msg("spawn %s: %s", argv[0], strerror(rc));
  return pid;
}

/* Waits up to limit_ms for pid, then kills it. Returns its wait status. */
static int reap(pid_t pid, int limit_ms) {
  int status = 0;
  for (int i = 0; i < limit_ms / 10; i++) {
    if (waitpid(pid, &status, WNOHANG) == pid)
      return status;
    usleep(10000);
  }
  kill(pid, SIGKILL);
  waitpid(pid, &status, 0);
  return status;
}

static char *slurp(const char *path) {
  static char buf[1 << 16];
  FILE *f = fopen(path, "r");
  if (!f)
    return strcpy(buf, "");
  size_t n = fread(buf, 1, sizeof(buf) - 1, f);
  buf[n] = '\0';
  fclose(f);
  return buf;
}

/* Reads until the peer's close_notify (or an error), at most cap bytes;
 * returns the total or the error. */
static int64_t read_all(ak_tls *t, char *buf, size_t cap) {
  size_t total = 0;
  for (;;) {
    if (total == cap)
      return (int64_t)total;
    int64_t r = get_release(ak_tls_read(t, buf + total, cap - total));
    if (r < 0)
      return r;
    if (r == 0)
      return (int64_t)total;
    total += (size_t)r;
  }
}

/* ---- Safe by default ---------------------------------------------------------------- */

/* A round trip over our own client and server; the agreed names. */
static void test_roundtrip(void **state) {
  (void)state;
  ak_tls_config *ccfg = client_cfg(0), *scfg = server_cfg("server.pem");
  pair p;
  pair_open(&p, ccfg, "localhost", scfg);
  assert_int_equal(pair_handshake(&p, NULL), 0);
  char buf[64] = {0};
  ak_future *r = ak_tls_read(p.s, buf, sizeof(buf));
  assert_int_equal(get_release(ak_tls_write(p.c, "hello", 5)), 5);
  assert_int_equal(get_release(r), 5);
  assert_memory_equal(buf, "hello", 5);
  ak_tls_stats st;
  ak_tls_stats_get(p.c, &st);
  assert_true(st.handshake_done);
  assert_false(st.insecure);
  assert_false(st.server);
  assert_string_equal(st.engine, engine);
  assert_string_equal(st.version, is_openssl ? "TLSv1.3" : "TLSv1.2");
  assert_non_null(strstr(st.ciphersuite, "AES-128-GCM"));
  assert_string_equal(st.alpn, "http/1.1");
  assert_int_equal(st.plain_out, 5);
  assert_true(st.wire_out > 5 && st.wire_in > 0);
  ak_tls_stats_get(p.s, &st);
  assert_true(st.server);
  assert_int_equal(st.plain_in, 5);
  /* A second handshake call after success settles at once. */
  ak_future *again = ak_tls_handshake(p.c);
  assert_true(ak_future_is_set(again));
  assert_int_equal(get_release(again), 0);
  pair_close(&p);
  ak_tls_config_release(ccfg);
  ak_tls_config_release(scfg);
}

/* A host given as an IP address is checked against the certificate's
 * iPAddress entries (mbedtls 2.28 alone would not). */
static void test_ip_address_host(void **state) {
  (void)state;
  ak_tls_config *ccfg = client_cfg(0), *scfg = server_cfg("server.pem");
  pair p;
  pair_open(&p, ccfg, "127.0.0.1", scfg);
  ak_future *cf;
  int64_t r = pair_handshake(&p, &cf);
  if (r != 0)
    fail_msg("127.0.0.1: %s (%s)", ak_err_name((int)r), ak_future_detail(cf));
  ak_future_release(cf);
  pair_close(&p);
  ak_tls_config_release(ccfg);
  ak_tls_config_release(scfg);
}

/* No client session without a host name unless insecure mode is named;
 * every entry point tried. */
static void test_host_required(void **state) {
  (void)state;
  int fds[2];
  assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), 0);
  ak_tls *t = (ak_tls *)1;
  ak_tls_config *def = NULL;
  assert_int_equal(ak_tls_client_config_new(NULL, &def), 0); /* system bundle */
  ak_tls_config *ca = client_cfg(0);
  ak_tls_config *nores = client_cfg(AK_TLS_NO_RESUMPTION);
  ak_tls_config *scfg = server_cfg("server.pem");
  ak_tls_config *verifying[] = {def, ca, nores};
  for (size_t i = 0; i < 3; i++) {
    assert_int_equal(ak_tls_client_new(loop, verifying[i], fds[0], NULL, &t), AK_ETLSNOHOST);
    assert_null(t);
    t = (ak_tls *)1;
    assert_int_equal(ak_tls_client_new(loop, verifying[i], fds[0], "", &t), AK_ETLSNOHOST);
    assert_null(t);
    /* A client config cannot make a server session (which has no name). */
    assert_int_equal(ak_tls_server_new(loop, verifying[i], fds[0], &t), -EINVAL);
    ak_tls_config_stats cs;
    ak_tls_config_stats_get(verifying[i], &cs);
    assert_false(cs.insecure);
  }
  /* A server config cannot make a client session. */
  assert_int_equal(ak_tls_client_new(loop, scfg, fds[0], "localhost", &t), -EINVAL);
  assert_int_equal(ak_tls_client_new(loop, scfg, fds[0], NULL, &t), -EINVAL);
  assert_string_equal(ak_strerror(AK_ETLSNOHOST),
                      "TLS: a client session needs a host name unless insecure mode is asked");
  ak_tls_config_release(def);
  ak_tls_config_release(ca);
  ak_tls_config_release(nores);
  ak_tls_config_release(scfg);
  close(fds[0]);
  close(fds[1]);
}

/* Insecure mode, named: no name needed, no verification, and it says so. */
static void test_insecure_flagged(void **state) {
  (void)state;
  ak_tls_config *ccfg = client_cfg(AK_TLS_INSECURE_NO_VERIFY);
  ak_tls_config *scfg = server_cfg("selfsigned.pem");
  pair p;
  pair_open(&p, ccfg, NULL, scfg);
  assert_int_equal(pair_handshake(&p, NULL), 0);
  ak_tls_stats st;
  ak_tls_stats_get(p.c, &st);
  assert_true(st.insecure);
  assert_true(st.handshake_done);
  ak_tls_config_stats cs;
  ak_tls_config_stats_get(ccfg, &cs);
  assert_true(cs.insecure);
  assert_int_equal(cs.handshakes, 1);
  pair_close(&p);
  ak_tls_config_release(ccfg);
  ak_tls_config_release(scfg);
}

/* Each bad certificate fails the client's handshake with its own code and
 * mbedtls's words as the detail. */
static void expect_rejected(ak_tls_config *ccfg, const char *host, const char *certfile, int code) {
  ak_tls_config *scfg = server_cfg(certfile);
  pair p;
  pair_open(&p, ccfg, host, scfg);
  ak_future *cf;
  int64_t r = pair_handshake(&p, &cf);
  if (r != code)
    fail_msg("%s as %s: got %s (%s), want %s", certfile, host, ak_err_name((int)r),
             ak_future_detail(cf) ? ak_future_detail(cf) : "-", ak_err_name(code));
  assert_non_null(ak_future_detail(cf));
  assert_non_null(strstr(ak_future_detail(cf), "verif"));
  ak_future_release(cf);
  /* The session stays failed: a read fails with the same code. */
  char b[4];
  assert_int_equal(get_release(ak_tls_read(p.c, b, sizeof(b))), code);
  ak_tls_config_stats cs;
  ak_tls_config_stats_get(ccfg, &cs);
  assert_true(cs.handshakes_failed >= 1);
  pair_close(&p);
  ak_tls_config_release(scfg);
}

static void expect_rejected_by_openssl(const char *certfile, int code) {
  int port = free_port();
  char accept_arg[32], log[320];
  snprintf(accept_arg, sizeof(accept_arg), "127.0.0.1:%d", port);
  snprintf(log, sizeof(log), "%s/s_server_cert.log", certs);
  char *argv[] = {"openssl", "s_server", "-accept", accept_arg, "-cert", (char *)cert(certfile),
                  "-key", (char *)cert("server.key"), "-www", "-naccept", "1", NULL};
  pid_t pid = spawn(argv, -1, log);
  int fd = connect_retry(port);
  ak_tls_config *ccfg = client_cfg(0);
  ak_tls *t;
  assert_int_equal(ak_tls_client_new(loop, ccfg, fd, "localhost", &t), 0);
  ak_future *f = ak_tls_handshake(t);
  int64_t r = get(f);
  if (r != code)
    fail_msg("%s: got %s (%s), want %s", certfile, ak_err_name((int)r),
             ak_future_detail(f) ? ak_future_detail(f) : "-", ak_err_name(code));
  assert_non_null(strstr(ak_future_detail(f), "verif"));
  ak_future_release(f);
  ak_tls_free(t);
  close(fd);
  reap(pid, 5000);
  ak_tls_config_release(ccfg);
}

static void test_bad_certificates(void **state) {
  (void)state;
  ak_tls_config *ccfg = client_cfg(0);
  expect_rejected(ccfg, "localhost", "expired.pem", AK_ETLSEXPIRED);
  expect_rejected(ccfg, "localhost", "notyet.pem", AK_ETLSNOTYETVALID);
  expect_rejected(ccfg, "localhost", "wrongname.pem", AK_ETLSNAMEMISMATCH);
  expect_rejected(ccfg, "localhost", "selfsigned.pem", AK_ETLSSELFSIGNED);
  /* mbedtls will not serve a certificate whose key usage forbids it, so
   * openssl s_server (which will) serves that one. */
  expect_rejected_by_openssl("badusage.pem", AK_ETLSKEYUSAGE);
  /* A good certificate for another name than the one connected to. */
  expect_rejected(ccfg, "www.example.org", "server.pem", AK_ETLSNAMEMISMATCH);
  /* Addresses: the certificate lists 127.0.0.1, not 127.0.0.2 or ::1; the
   * wrong-name one lists none. */
  expect_rejected(ccfg, "127.0.0.2", "server.pem", AK_ETLSNAMEMISMATCH);
  expect_rejected(ccfg, "::1", "server.pem", AK_ETLSNAMEMISMATCH);
  expect_rejected(ccfg, "127.0.0.1", "wrongname.pem", AK_ETLSNAMEMISMATCH);
  ak_tls_config_release(ccfg);
  /* Our CA is not in the system bundle: unknown CA. */
  ak_tls_config *sys = NULL;
  assert_int_equal(ak_tls_client_config_new(NULL, &sys), 0);
  expect_rejected(sys, "localhost", "server.pem", AK_ETLSUNKNOWNCA);
  ak_tls_config_release(sys);
  /* Every code has its own text. */
  int codes[] = {AK_ETLSUNKNOWNCA, AK_ETLSNAMEMISMATCH, AK_ETLSEXPIRED, AK_ETLSNOTYETVALID,
                 AK_ETLSSELFSIGNED, AK_ETLSKEYUSAGE, AK_ETLSHANDSHAKE, AK_ETLSTRUNCATED};
  for (size_t i = 0; i < 8; i++)
    for (size_t j = i + 1; j < 8; j++)
      assert_string_not_equal(ak_strerror(codes[i]), ak_strerror(codes[j]));
}

static void test_config_errors(void **state) {
  (void)state;
  ak_tls_config *cfg = (ak_tls_config *)1;
  ak_tls_client_options o = {.ca_file = "/nonexistent/ca.pem"};
  assert_int_equal(ak_tls_client_config_new(&o, &cfg), AK_ETLSCONFIG);
  assert_null(cfg);
  assert_non_null(strstr(ak_tls_config_error(), "/nonexistent/ca.pem"));
  ak_tls_client_options o2 = {.ca_file = cert("server.key")}; /* not a certificate */
  assert_int_equal(ak_tls_client_config_new(&o2, &cfg), AK_ETLSCONFIG);
  ak_tls_server_options so = {.cert_file = cert("server.pem"), .key_file = cert("ca.key")};
  assert_int_equal(ak_tls_server_config_new(&so, &cfg), AK_ETLSCONFIG); /* key mismatch */
  assert_non_null(strstr(ak_tls_config_error(), "ca.key"));            /* names the file */
  ak_tls_server_options so1 = {.cert_file = "/nonexistent/server.pem", .key_file = cert("server.key")};
  assert_int_equal(ak_tls_server_config_new(&so1, &cfg), AK_ETLSCONFIG);
  assert_non_null(strstr(ak_tls_config_error(), "/nonexistent/server.pem"));
  ak_tls_server_options so2 = {.cert_file = cert("server.pem")};
  assert_int_equal(ak_tls_server_config_new(&so2, &cfg), -EINVAL);
  /* A CA directory works as well as a file. */
  char dir[320];
  snprintf(dir, sizeof(dir), "%s/cadir", certs);
  mkdir(dir, 0755);
  char link_path[400];
  snprintf(link_path, sizeof(link_path), "%s/ca.pem", dir);
  unlink(link_path);
  assert_int_equal(symlink(cert("ca.pem"), link_path), 0);
  ak_tls_client_options od = {.ca_dir = dir};
  assert_int_equal(ak_tls_client_config_new(&od, &cfg), 0);
  ak_tls_config *scfg = server_cfg("server.pem");
  pair p;
  pair_open(&p, cfg, "localhost", scfg);
  assert_int_equal(pair_handshake(&p, NULL), 0);
  pair_close(&p);
  ak_tls_config_release(cfg);
  ak_tls_config_release(scfg);
}

/* One request and answer over p: the client's read also takes in a TLS 1.3
 * NewSessionTicket sent after the handshake. */
static void ping_pong(pair *p) {
  char b[4];
  ak_future *rf = ak_tls_read(p->s, b, 4);
  assert_int_equal(get_release(ak_tls_write(p->c, "ping", 4)), 4);
  assert_int_equal(get_release(rf), 4);
  assert_memory_equal(b, "ping", 4);
  rf = ak_tls_read(p->c, b, 4);
  assert_int_equal(get_release(ak_tls_write(p->s, "pong", 4)), 4);
  assert_int_equal(get_release(rf), 4);
  assert_memory_equal(b, "pong", 4);
}

/* A second connection to the same host:port resumes; the counters say so. */
static void test_resumption(void **state) {
  (void)state;
  ak_tls_config *scfg = server_cfg("server.pem");
  /* One listener, one port: the same key each time. */
  int lfd = ak_tcp_listen("127.0.0.1", 0, 16);
  assert_true(lfd >= 0);
  int port = ak_socket_port(lfd);
  ak_tls_config *ccfg2 = client_cfg(0), *nores = client_cfg(AK_TLS_NO_RESUMPTION);
  ak_tls_config *cfgs[] = {ccfg2, ccfg2, ccfg2, nores, nores};
  bool want_resumed[] = {false, true, true, false, false};
  for (int i = 0; i < 5; i++) {
    pair p;
    struct sockaddr_in a = loopback4(port);
    p.cfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_int_equal(connect(p.cfd, (struct sockaddr *)&a, sizeof(a)), 0);
    p.sfd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
    assert_true(p.sfd >= 0);
    assert_int_equal(ak_tls_client_new(loop, cfgs[i], p.cfd, "localhost", &p.c), 0);
    assert_int_equal(ak_tls_server_new(loop, scfg, p.sfd, &p.s), 0);
    assert_int_equal(pair_handshake(&p, NULL), 0);
    ak_tls_stats cst, sst;
    ak_tls_stats_get(p.c, &cst);
    ak_tls_stats_get(p.s, &sst);
    assert_int_equal(cst.resumed, want_resumed[i]);
    assert_int_equal(sst.resumed, want_resumed[i]);
    if (i == 0)
      assert_string_equal(cst.version, is_openssl ? "TLSv1.3" : "TLSv1.2");
    /* A resumed session still carries data; the client reads the answer
     * (with TLS 1.3 the session to resume arrives after the handshake). */
    ping_pong(&p);
    pair_close(&p);
  }
  close(lfd);
  ak_tls_config_stats cs;
  ak_tls_config_stats_get(ccfg2, &cs);
  assert_int_equal(cs.handshakes, 3);
  assert_int_equal(cs.handshakes_resumed, 2);
  assert_int_equal(cs.cached_sessions, 1);
  ak_tls_config_stats_get(nores, &cs);
  assert_int_equal(cs.handshakes_resumed, 0);
  assert_int_equal(cs.cached_sessions, 0);
  ak_tls_config_stats_get(scfg, &cs);
  assert_true(cs.server);
  assert_int_equal(cs.handshakes_resumed, 2);
  ak_tls_config_release(ccfg2);
  ak_tls_config_release(nores);
  ak_tls_config_release(scfg);
}

/* One session to host, connected to lfd's address (IPv4 or IPv6) over cfg;
 * whether it resumed. */
static bool connect_host_resumed(ak_tls_config *cfg, ak_tls_config *scfg, int lfd,
                                 const char *host) {
  pair p;
  struct sockaddr_storage a;
  socklen_t alen = sizeof(a);
  assert_int_equal(getsockname(lfd, (struct sockaddr *)&a, &alen), 0);
  p.cfd = socket(a.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  assert_int_equal(connect(p.cfd, (struct sockaddr *)&a, alen), 0);
  p.sfd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
  assert_true(p.sfd >= 0);
  assert_int_equal(ak_tls_client_new(loop, cfg, p.cfd, host, &p.c), 0);
  assert_int_equal(ak_tls_server_new(loop, scfg, p.sfd, &p.s), 0);
  assert_int_equal(ak_tls_fd(p.c), p.cfd);
  assert_int_equal(pair_handshake(&p, NULL), 0);
  ping_pong(&p);
  ak_tls_stats st;
  ak_tls_stats_get(p.c, &st);
  pair_close(&p);
  return st.resumed;
}

static bool connect_resumed(ak_tls_config *cfg, ak_tls_config *scfg, int lfd) {
  return connect_host_resumed(cfg, scfg, lfd, "localhost");
}

static uint64_t cached_sessions(ak_tls_config *cfg) {
  ak_tls_config_stats cs;
  ak_tls_config_stats_get(cfg, &cs);
  return cs.cached_sessions;
}

/* session_cache_size bounds the cache: with one slot, two servers take
 * turns evicting each other; the least recently used goes. */
static void test_session_cache_size(void **state) {
  (void)state;
  ak_tls_client_options o = {.ca_file = cert("ca.pem"), .session_cache_size = 1};
  ak_tls_config *ccfg = NULL, *scfg = server_cfg("server.pem");
  assert_int_equal(ak_tls_client_config_new(&o, &ccfg), 0);
  int a = ak_tcp_listen("127.0.0.1", 0, 4), b = ak_tcp_listen("127.0.0.1", 0, 4);
  assert_true(a >= 0 && b >= 0);
  assert_false(connect_resumed(ccfg, scfg, a));
  assert_true(connect_resumed(ccfg, scfg, a));
  assert_false(connect_resumed(ccfg, scfg, b)); /* evicts a's session */
  assert_false(connect_resumed(ccfg, scfg, a)); /* evicts b's */
  assert_true(connect_resumed(ccfg, scfg, a));
  ak_tls_config_stats cs;
  ak_tls_config_stats_get(ccfg, &cs);
  assert_int_equal(cs.cached_sessions, 1);
  assert_int_equal(cs.handshakes_resumed, 2);
  close(a);
  close(b);
  ak_tls_config_release(ccfg);
  ak_tls_config_release(scfg);
}

/* When the cache is full, the host:port used least recently gives way, not
 * the one stored first: a resumption counts as a use. Two slots, three
 * servers (one server config, so any cached session would resume: only
 * the cache decides). */
static void test_session_cache_lru(void **state) {
  (void)state;
  ak_tls_client_options o = {.ca_file = cert("ca.pem"), .session_cache_size = 2};
  ak_tls_config *ccfg = NULL, *scfg = server_cfg("server.pem");
  assert_int_equal(ak_tls_client_config_new(&o, &ccfg), 0);
  int a = ak_tcp_listen("127.0.0.1", 0, 4), b = ak_tcp_listen("127.0.0.1", 0, 4);
  int c = ak_tcp_listen("127.0.0.1", 0, 4);
  assert_true(a >= 0 && b >= 0 && c >= 0);
  assert_false(connect_resumed(ccfg, scfg, a));
  assert_false(connect_resumed(ccfg, scfg, b));
  assert_true(connect_resumed(ccfg, scfg, a)); /* a is now newer than b */
  assert_int_equal(cached_sessions(ccfg), 2);
  assert_false(connect_resumed(ccfg, scfg, c)); /* evicts b, not a (stored first) */
  assert_int_equal(cached_sessions(ccfg), 2);
  assert_true(connect_resumed(ccfg, scfg, a));
  assert_false(connect_resumed(ccfg, scfg, b)); /* b was evicted; evicts c */
  assert_true(connect_resumed(ccfg, scfg, a));
  assert_true(connect_resumed(ccfg, scfg, b));
  assert_false(connect_resumed(ccfg, scfg, c));
  assert_int_equal(cached_sessions(ccfg), 2);
  close(a);
  close(b);
  close(c);
  ak_tls_config_release(ccfg);
  ak_tls_config_release(scfg);
}

/* One session per host:port, the newest wins: when the server behind a port
 * changes (a new server config: other ticket keys, an empty id cache), the
 * old session is offered and refused, the new one replaces it, and the old
 * server's session is gone. */
static void test_session_newest_wins(void **state) {
  (void)state;
  ak_tls_config *ccfg = client_cfg(0);
  ak_tls_config *s1 = server_cfg("server.pem"), *s2 = server_cfg("server.pem");
  int lfd = ak_tcp_listen("127.0.0.1", 0, 4);
  assert_true(lfd >= 0);
  assert_false(connect_resumed(ccfg, s1, lfd));
  assert_true(connect_resumed(ccfg, s1, lfd));
  assert_false(connect_resumed(ccfg, s2, lfd)); /* s1's session, refused by s2 */
  assert_true(connect_resumed(ccfg, s2, lfd));  /* s2's replaced it */
  assert_int_equal(cached_sessions(ccfg), 1);
  assert_false(connect_resumed(ccfg, s1, lfd)); /* s1's is gone */
  assert_true(connect_resumed(ccfg, s1, lfd));
  assert_int_equal(cached_sessions(ccfg), 1);
  ak_tls_config_stats cs;
  ak_tls_config_stats_get(ccfg, &cs);
  assert_int_equal(cs.handshakes, 6);
  assert_int_equal(cs.handshakes_resumed, 3);
  close(lfd);
  ak_tls_config_release(ccfg);
  ak_tls_config_release(s1);
  ak_tls_config_release(s2);
}

/* The host "::1" (an IPv6 literal, checked against the certificate's
 * iPAddress entries) over IPv6 sockets: the key takes the IPv6 peer's
 * port, so two ports keep two sessions (one server config: were the port
 * lost, the second port would resume the first's session). */
static void test_session_key_ipv6_literal(void **state) {
  (void)state;
  int a = ak_tcp_listen("::1", 0, 4);
  if (a < 0)
    skip(); /* no IPv6 loopback here */
  int b = ak_tcp_listen("::1", 0, 4);
  assert_true(b >= 0);
  ak_tls_config *ccfg = client_cfg(0), *scfg = server_cfg("server6.pem");
  assert_false(connect_host_resumed(ccfg, scfg, a, "::1"));
  assert_true(connect_host_resumed(ccfg, scfg, a, "::1"));
  assert_false(connect_host_resumed(ccfg, scfg, b, "::1"));
  assert_true(connect_host_resumed(ccfg, scfg, b, "::1"));
  assert_true(connect_host_resumed(ccfg, scfg, a, "::1"));
  assert_int_equal(cached_sessions(ccfg), 2);
  /* The same port under another name is another key. */
  assert_false(connect_host_resumed(ccfg, scfg, a, "localhost"));
  assert_int_equal(cached_sessions(ccfg), 3);
  close(a);
  close(b);
  ak_tls_config_release(ccfg);
  ak_tls_config_release(scfg);
}

/* ALPN: "" offers none; another protocol is offered as given. */
static void test_alpn_options(void **state) {
  (void)state;
  ak_tls_client_options none = {.ca_file = cert("ca.pem"), .alpn = ""};
  ak_tls_config *ccfg = NULL, *scfg = server_cfg("server.pem");
  assert_int_equal(ak_tls_client_config_new(&none, &ccfg), 0);
  pair p;
  pair_open(&p, ccfg, "localhost", scfg);
  assert_int_equal(pair_handshake(&p, NULL), 0);
  ak_tls_stats st;
  ak_tls_stats_get(p.c, &st);
  assert_null(st.alpn);
  pair_close(&p);
  ak_tls_config_release(ccfg);
  /* A protocol the server does not accept: it refuses the handshake. */
  ak_tls_client_options h2 = {.ca_file = cert("ca.pem"), .alpn = "h2"};
  assert_int_equal(ak_tls_client_config_new(&h2, &ccfg), 0);
  pair_open(&p, ccfg, "localhost", scfg);
  assert_int_equal(pair_handshake(&p, NULL), AK_ETLSHANDSHAKE);
  pair_close(&p);
  ak_tls_config_release(ccfg);
  ak_tls_config_release(scfg);
}

/* ---- Engines -------------------------------------------------------------------------- */

/* The engine a new AUTO config gets under AK_TLS_ENGINE=value (NULL: unset);
 * NULL when the config is refused. */
static const char *auto_engine_with_env(const char *value) {
  const char *saved = getenv("AK_TLS_ENGINE");
  char keep[32] = "";
  if (saved)
    snprintf(keep, sizeof(keep), "%s", saved);
  if (value)
    setenv("AK_TLS_ENGINE", value, 1);
  else
    unsetenv("AK_TLS_ENGINE");
  ak_tls_client_options o = {.ca_file = cert("ca.pem")};
  ak_tls_config *cfg = NULL;
  int rc = ak_tls_client_config_new(&o, &cfg);
  const char *name = NULL;
  if (rc == 0) {
    ak_tls_config_stats cs;
    ak_tls_config_stats_get(cfg, &cs);
    name = cs.engine;
    ak_tls_config_release(cfg);
  } else {
    assert_int_equal(rc, AK_ETLSCONFIG);
    assert_null(cfg);
  }
  if (saved)
    setenv("AK_TLS_ENGINE", keep, 1);
  else
    unsetenv("AK_TLS_ENGINE");
  return name;
}

/* AUTO is OpenSSL unless AK_TLS_ENGINE says otherwise; a value naming no
 * engine refuses the config (and says why); an engine named in the options
 * wins over the environment. */
static void test_engine_choice(void **state) {
  (void)state;
  assert_string_equal(auto_engine_with_env(NULL), "openssl");
  assert_string_equal(auto_engine_with_env(""), "openssl");
  assert_string_equal(auto_engine_with_env("openssl"), "openssl");
#if T_HAVE_MBEDTLS
  assert_string_equal(auto_engine_with_env("mbedtls"), "mbedtls");
#else
  /* A build without the mbedtls engine (-Dmbedtls=disabled) refuses it,
   * by the environment or by name, and says why. */
  assert_null(auto_engine_with_env("mbedtls"));
  assert_non_null(strstr(ak_tls_config_error(), "not in this build"));
  ak_tls_client_options mb = {.engine = AK_TLS_ENGINE_MBEDTLS};
  ak_tls_config *none = NULL;
  assert_int_equal(ak_tls_client_config_new(&mb, &none), AK_ETLSCONFIG);
  assert_null(none);
#endif
  assert_null(auto_engine_with_env("gnutls"));
  assert_non_null(strstr(ak_tls_config_error(), "gnutls"));
  /* Named engines, whatever the environment says (it says mbedtls or
   * openssl in this run). */
  ak_tls_engine named[] = {AK_TLS_ENGINE_OPENSSL, AK_TLS_ENGINE_MBEDTLS};
  const char *names[] = {"openssl", "mbedtls"};
  for (int i = 0; i < 1 + T_HAVE_MBEDTLS; i++) {
    ak_tls_client_options co = {.ca_file = cert("ca.pem"), .engine = named[i]};
    ak_tls_server_options so = {.cert_file = cert("server.pem"), .key_file = cert("server.key"),
                                .engine = named[i]};
    ak_tls_config *cc = NULL, *sc = NULL;
    assert_int_equal(ak_tls_client_config_new(&co, &cc), 0);
    assert_int_equal(ak_tls_server_config_new(&so, &sc), 0);
    ak_tls_config_stats cs;
    ak_tls_config_stats_get(cc, &cs);
    assert_string_equal(cs.engine, names[i]);
    ak_tls_config_stats_get(sc, &cs);
    assert_string_equal(cs.engine, names[i]);
    pair p;
    pair_open(&p, cc, "localhost", sc);
    assert_int_equal(pair_handshake(&p, NULL), 0);
    ak_tls_stats st;
    ak_tls_stats_get(p.c, &st);
    assert_string_equal(st.engine, names[i]);
    assert_string_equal(st.version, i == 0 ? "TLSv1.3" : "TLSv1.2");
    ak_tls_stats_get(p.s, &st);
    assert_string_equal(st.engine, names[i]);
    pair_close(&p);
    ak_tls_config_release(cc);
    ak_tls_config_release(sc);
  }
  /* A value outside the enum. */
  ak_tls_client_options bad = {.engine = (ak_tls_engine)99};
  ak_tls_config *cfg = (ak_tls_config *)1;
  assert_int_equal(ak_tls_client_config_new(&bad, &cfg), AK_ETLSCONFIG);
  assert_null(cfg);
}

/* An OpenSSL client with an mbedtls server and the other way round: TLS 1.2
 * (mbedtls's only version), AES-128-GCM, data both ways, resumption from
 * the second connection on, and a bad certificate still refused. */
static void test_cross_engine(void **state) {
  (void)state;
  if (!T_HAVE_MBEDTLS)
    skip(); /* built with -Dmbedtls=disabled: one engine only */
  ak_tls_engine sides[2][2] = {{AK_TLS_ENGINE_OPENSSL, AK_TLS_ENGINE_MBEDTLS},
                               {AK_TLS_ENGINE_MBEDTLS, AK_TLS_ENGINE_OPENSSL}};
  for (int k = 0; k < 2; k++) {
    ak_tls_client_options co = {.ca_file = cert("ca.pem"), .engine = sides[k][0]};
    ak_tls_server_options so = {.cert_file = cert("server.pem"), .key_file = cert("server.key"),
                                .engine = sides[k][1]};
    ak_tls_config *cc = NULL, *sc = NULL;
    assert_int_equal(ak_tls_client_config_new(&co, &cc), 0);
    assert_int_equal(ak_tls_server_config_new(&so, &sc), 0);
    int lfd = ak_tcp_listen("127.0.0.1", 0, 4);
    assert_true(lfd >= 0);
    for (int i = 0; i < 3; i++) {
      pair p;
      struct sockaddr_in a = loopback4(ak_socket_port(lfd));
      p.cfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
      assert_int_equal(connect(p.cfd, (struct sockaddr *)&a, sizeof(a)), 0);
      p.sfd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
      assert_true(p.sfd >= 0);
      assert_int_equal(ak_tls_client_new(loop, cc, p.cfd, "localhost", &p.c), 0);
      assert_int_equal(ak_tls_server_new(loop, sc, p.sfd, &p.s), 0);
      assert_int_equal(pair_handshake(&p, NULL), 0);
      ping_pong(&p);
      ak_tls_stats cst, sst;
      ak_tls_stats_get(p.c, &cst);
      ak_tls_stats_get(p.s, &sst);
      assert_string_equal(cst.engine, k == 0 ? "openssl" : "mbedtls");
      assert_string_equal(sst.engine, k == 0 ? "mbedtls" : "openssl");
      assert_string_equal(cst.version, "TLSv1.2");
      assert_string_equal(sst.version, "TLSv1.2");
      assert_non_null(strstr(cst.ciphersuite, "AES-128-GCM"));
      assert_string_equal(cst.ciphersuite, sst.ciphersuite); /* one naming for both */
      assert_string_equal(cst.alpn, "http/1.1");
      assert_int_equal(cst.resumed, i > 0);
      assert_int_equal(sst.resumed, i > 0);
      /* 1 MiB client to server, byte for byte. */
      size_t len = 1u << 20;
      unsigned char *out = malloc(len), *in = malloc(len);
      assert_true(out && in);
      for (size_t j = 0; j < len; j++)
        out[j] = pattern(j, 9);
      ak_future *w = ak_tls_write(p.c, out, len);
      size_t got = 0;
      while (got < len) {
        int64_t r = get_release(ak_tls_read(p.s, in + got, len - got));
        assert_true(r > 0);
        got += (size_t)r;
      }
      assert_int_equal(get_release(w), (int64_t)len);
      assert_memory_equal(in, out, len);
      free(out);
      free(in);
      pair_close(&p);
    }
    close(lfd);
    /* Verification across engines: a name the certificate does not have. */
    pair p;
    pair_open(&p, cc, "www.example.org", sc);
    assert_int_equal(pair_handshake(&p, NULL), AK_ETLSNAMEMISMATCH);
    pair_close(&p);
    ak_tls_config_release(cc);
    ak_tls_config_release(sc);
  }
}

/* ---- The pump's rules ------------------------------------------------------------- */

/* Decrypted plaintext, and records already received, are handed out before
 * the socket is read again: the peer sends nothing more and does not
 * close, so a read that went to the socket first would hang. */
static void test_pending_plaintext_first(void **state) {
  (void)state;
  ak_tls_config *ccfg = client_cfg(0), *scfg = server_cfg("server.pem");
  pair p;
  pair_open(&p, ccfg, "localhost", scfg);
  assert_int_equal(pair_handshake(&p, NULL), 0);
  /* Three records of 1000 bytes, all sent before the client reads. */
  static unsigned char out[3000], in[3000];
  for (size_t i = 0; i < sizeof(out); i++)
    out[i] = pattern(i, 7);
  for (int i = 0; i < 3; i++)
    assert_int_equal(get_release(ak_tls_write(p.s, out + 1000 * i, 1000)), 1000);
  usleep(20000); /* let loopback deliver all three before the first recv */
  ak_tls_stats before, after;
  ak_tls_stats_get(p.c, &before);
  /* 10 bytes at a time: 300 reads. */
  for (size_t off = 0; off < sizeof(in); off += 10)
    assert_int_equal(get_release(ak_tls_read(p.c, in + off, 10)), 10);
  assert_memory_equal(in, out, sizeof(out));
  ak_tls_stats_get(p.c, &after);
  /* One recv brought all three records (they were in the socket); every
   * other read was served from what the engine had. */
  assert_true(after.recv_ops - before.recv_ops <= 3);
  assert_int_equal(after.plain_in - before.plain_in, 3000);
  /* And nothing is read from the socket while nobody asks: no recv left
   * pending (a fourth read would be the one to make it). */
  pair_close(&p);
  ak_tls_config_release(ccfg);
  ak_tls_config_release(scfg);
}

/* One read takes every record already received, up to its length: three
 * records sitting in the socket come back from a single 3000-byte read, and
 * a bigger buffer is not held waiting for more. */
static void test_read_fills_from_all_records(void **state) {
  (void)state;
  ak_tls_config *ccfg = client_cfg(0), *scfg = server_cfg("server.pem");
  pair p;
  pair_open(&p, ccfg, "localhost", scfg);
  assert_int_equal(pair_handshake(&p, NULL), 0);
  ping_pong(&p); /* TLS 1.3: the tickets are taken in before the records below */
  static unsigned char out[3000], in[8000];
  for (size_t i = 0; i < sizeof(out); i++)
    out[i] = pattern(i, 11);
  for (int round = 0; round < 2; round++) {
    for (int i = 0; i < 3; i++)
      assert_int_equal(get_release(ak_tls_write(p.s, out + 1000 * i, 1000)), 1000);
    usleep(20000); /* let loopback deliver all three before the read */
    /* Round 0: exactly the three records' length; round 1: more room
     * than there is data (it settles with 3000, it does not wait). */
    size_t want = round == 0 ? sizeof(out) : sizeof(in);
    ak_tls_stats before, after;
    ak_tls_stats_get(p.c, &before);
    assert_int_equal(get_release(ak_tls_read(p.c, in, want)), 3000);
    assert_memory_equal(in, out, sizeof(out));
    /* One recv at most, and none left behind (a recv in flight on an idle
     * session would keep the loop alive: ak_loop_run would not return). */
    get_release(ak_sleep(loop, 10 * MS));
    ak_tls_stats_get(p.c, &after);
    assert_true(after.recv_ops - before.recv_ops <= 1);
    assert_int_equal(ak_loop_run(loop, AK_RUN_NOWAIT), 0);
  }
  /* Records, then close_notify, all buffered: the data first, then 0. */
  assert_int_equal(get_release(ak_tls_write(p.s, out, 1000)), 1000);
  assert_int_equal(get_release(ak_tls_write(p.s, out + 1000, 1000)), 1000);
  assert_int_equal(get_release(ak_tls_close_notify(p.s)), 0);
  usleep(20000);
  assert_int_equal(get_release(ak_tls_read(p.c, in, sizeof(in))), 2000);
  assert_memory_equal(in, out, 2000);
  assert_int_equal(get_release(ak_tls_read(p.c, in, sizeof(in))), 0);
  pair_close(&p);
  ak_tls_config_release(ccfg);
  ak_tls_config_release(scfg);
}

/* A write far larger than a record, to a peer that reads nothing for a
 * while: the engine answers WANT_WRITE, the same write is called again
 * with the same arguments, and every byte arrives once, in order. */
static void test_want_write_same_args(void **state) {
  (void)state;
  ak_tls_config *ccfg = client_cfg(0), *scfg = server_cfg("server.pem");
  pair p;
  pair_open(&p, ccfg, "localhost", scfg);
  assert_int_equal(pair_handshake(&p, NULL), 0);
  size_t len = 8u << 20;
  unsigned char *out = malloc(len), *in = malloc(len);
  assert_non_null(out);
  assert_non_null(in);
  for (size_t i = 0; i < len; i++)
    out[i] = pattern(i, 3);
  ak_future *w = ak_tls_write(p.c, out, len);
  /* Run the loop a while with nobody reading: the socket fills. */
  ak_future *nap = ak_sleep(loop, 200 * MS);
  get_release(nap);
  assert_false(ak_future_is_set(w));
  ak_tls_stats st;
  ak_tls_stats_get(p.c, &st);
  assert_true(st.want_write > 0);
  assert_true(st.plain_out < len);
  size_t got = 0;
  while (got < len) {
    int64_t r = get_release(ak_tls_read(p.s, in + got, len - got));
    assert_true(r > 0);
    got += (size_t)r;
  }
  assert_int_equal(get_release(w), (int64_t)len);
  assert_memory_equal(in, out, len);
  ak_tls_stats_get(p.c, &st);
  assert_int_equal(st.plain_out, len);
  assert_true(st.send_ops >= len / (140 * 1024)); /* many records, many sends (8 a send at most) */
  free(out);
  free(in);
  pair_close(&p);
  ak_tls_config_release(ccfg);
  ak_tls_config_release(scfg);
}

/* A write cancelled while the engine holds a half-sent record: that record
 * still goes out whole (else the peer sees a bad MAC), the rest of the
 * write is dropped, and the next write follows it cleanly. */
static void test_cancel_write_mid_record(void **state) {
  (void)state;
  ak_tls_config *ccfg = client_cfg(0), *scfg = server_cfg("server.pem");
  pair p;
  pair_open(&p, ccfg, "localhost", scfg);
  assert_int_equal(pair_handshake(&p, NULL), 0);
  size_t len = 8u << 20;
  unsigned char *out = malloc(len), *in = malloc(len + 16);
  assert_true(out && in);
  for (size_t i = 0; i < len; i++)
    out[i] = pattern(i, 5);
  ak_future *w = ak_tls_write(p.c, out, len);
  get_release(ak_sleep(loop, 200 * MS)); /* the socket fills; the engine is stuck */
  ak_tls_stats st;
  ak_tls_stats_get(p.c, &st);
  assert_true(st.want_write > 0);
  assert_int_equal(ak_future_cancel(w), 0);
  assert_true(ak_future_is_cancelled(w));
  ak_future_release(w);
  ak_future *tail = ak_tls_write(p.c, "tail!", 5);
  ak_future *bye = ak_tls_close_notify(p.c);
  size_t got = 0;
  for (;;) {
    int64_t r = get_release(ak_tls_read(p.s, in + got, len + 16 - got));
    if (r == 0)
      break;
    if (r < 0)
      fail_msg("server read: %s (the stream was corrupted)", ak_err_name((int)r));
    got += (size_t)r;
  }
  assert_int_equal(get_release(tail), 5);
  assert_int_equal(get_release(bye), 0);
  assert_true(got > 5 && got - 5 < len);
  assert_memory_equal(in, out, got - 5); /* a prefix of whole records */
  assert_memory_equal(in + got - 5, "tail!", 5);
  free(out);
  free(in);
  pair_close(&p);
  ak_tls_config_release(ccfg);
  ak_tls_config_release(scfg);
}

/* Steps queue in call order: three writes and three reads made at once. */
static void test_steps_queue_in_order(void **state) {
  (void)state;
  ak_tls_config *ccfg = client_cfg(0), *scfg = server_cfg("server.pem");
  pair p;
  pair_open(&p, ccfg, "localhost", scfg);
  /* No explicit handshake: the first steps run it. */
  char r1[5], r2[5], r3[5];
  ak_future *reads[3] = {ak_tls_read(p.s, r1, 5), ak_tls_read(p.s, r2, 5),
                         ak_tls_read(p.s, r3, 5)};
  ak_future *writes[3] = {ak_tls_write(p.c, "aaaaa", 5), ak_tls_write(p.c, "bbbbb", 5),
                          ak_tls_write(p.c, "ccccc", 5)};
  for (int i = 0; i < 3; i++)
    assert_int_equal(get_release(writes[i]), 5);
  for (int i = 0; i < 3; i++)
    assert_int_equal(get_release(reads[i]), 5);
  assert_memory_equal(r1, "aaaaa", 5);
  assert_memory_equal(r2, "bbbbb", 5);
  assert_memory_equal(r3, "ccccc", 5);
  /* A cancelled queued read is skipped; the next one gets the data. */
  char x[5], y[5];
  ak_future *rx = ak_tls_read(p.c, x, 5);
  ak_future *ry = ak_tls_read(p.c, y, 5);
  assert_int_equal(ak_future_cancel(ry), 0);
  ak_future *rz = ak_tls_read(p.c, y, 5);
  assert_int_equal(get_release(ak_tls_write(p.s, "12345", 5)), 5);
  assert_int_equal(get_release(rx), 5);
  assert_int_equal(get_release(ak_tls_write(p.s, "67890", 5)), 5);
  assert_int_equal(get_release(rz), 5);
  assert_memory_equal(x, "12345", 5);
  assert_memory_equal(y, "67890", 5);
  assert_true(ak_future_is_cancelled(ry));
  ak_future_release(ry);
  pair_close(&p);
  ak_tls_config_release(ccfg);
  ak_tls_config_release(scfg);
}

/* close_notify: the peer's read gives 0 (a clean end); writes after it fail. */
static void test_close_notify(void **state) {
  (void)state;
  ak_tls_config *ccfg = client_cfg(0), *scfg = server_cfg("server.pem");
  pair p;
  pair_open(&p, ccfg, "localhost", scfg);
  assert_int_equal(pair_handshake(&p, NULL), 0);
  char b[16];
  ak_future *r = ak_tls_read(p.s, b, sizeof(b));
  assert_int_equal(get_release(ak_tls_write(p.c, "last", 4)), 4);
  assert_int_equal(get_release(ak_tls_close_notify(p.c)), 0);
  assert_int_equal(get_release(r), 4);
  assert_int_equal(get_release(ak_tls_read(p.s, b, sizeof(b))), 0);
  assert_int_equal(get_release(ak_tls_read(p.s, b, sizeof(b))), 0);
  assert_int_equal(get_release(ak_tls_write(p.c, "more", 4)), AK_ETLSCLOSED);
  assert_int_equal(get_release(ak_tls_close_notify(p.c)), AK_ETLSCLOSED);
  /* The other way: the server answers, the client sees a clean end. */
  assert_int_equal(get_release(ak_tls_close_notify(p.s)), 0);
  assert_int_equal(get_release(ak_tls_read(p.c, b, sizeof(b))), 0);
  pair_close(&p);
  ak_tls_config_release(ccfg);
  ak_tls_config_release(scfg);
}

/* Freeing a session with steps pending fails them with AK_ETLSCLOSED. */
static void test_free_pending(void **state) {
  (void)state;
  ak_tls_config *ccfg = client_cfg(0), *scfg = server_cfg("server.pem");
  pair p;
  pair_open(&p, ccfg, "localhost", scfg);
  assert_int_equal(pair_handshake(&p, NULL), 0);
  char b[8];
  ak_future *r = ak_tls_read(p.c, b, sizeof(b));
  get_release(ak_sleep(loop, 10 * MS)); /* its recv is in the kernel now */
  ak_tls_free(p.c);
  assert_int_equal(get(r), AK_ETLSCLOSED);
  ak_future_release(r);
  get_release(ak_sleep(loop, 10 * MS)); /* the cancelled recv completes */
  ak_tls_free(p.s);
  close(p.cfd);
  close(p.sfd);
  ak_tls_config_release(ccfg);
  ak_tls_config_release(scfg);
}

/* ---- Faults ----------------------------------------------------------------------------- */

typedef struct raw_server {
  int fd;
  const void *reply; /* sent after the ClientHello arrives */
  size_t reply_len;
  bool reset;        /* close with RST instead of FIN */
} raw_server;

static void *raw_server_main(void *arg) {
  raw_server *rs = arg;
  char hello[4096];
  (void)!recv(rs->fd, hello, sizeof(hello), 0); /* the ClientHello */
  if (rs->reply_len)
    (void)!send(rs->fd, rs->reply, rs->reply_len, MSG_NOSIGNAL);
  if (rs->reset) {
    struct linger lg = {.l_onoff = 1, .l_linger = 0};
    setsockopt(rs->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    close(rs->fd); /* RST */
    rs->fd = -1;
    return NULL;
  }
  shutdown(rs->fd, SHUT_WR);
  return NULL;
}

/* The client's handshake against a raw peer that answers reply. */
static void expect_handshake_fault(const void *reply, size_t len, bool reset, int want) {
  ak_tls_config *ccfg = client_cfg(0);
  int c, s;
  tcp_pair(&c, &s);
  raw_server rs = {.fd = s, .reply = reply, .reply_len = len, .reset = reset};
  pthread_t th;
  assert_int_equal(pthread_create(&th, NULL, raw_server_main, &rs), 0);
  ak_tls *t;
  assert_int_equal(ak_tls_client_new(loop, ccfg, c, "localhost", &t), 0);
  ak_future *f = ak_tls_handshake(t);
  int64_t r = get(f);
  pthread_join(th, NULL);
  if (r != want)
    fail_msg("got %s (%s), want %s", ak_err_name((int)r),
             ak_future_detail(f) ? ak_future_detail(f) : "-", ak_err_name(want));
  ak_future_release(f);
  ak_tls_config_stats cs;
  ak_tls_config_stats_get(ccfg, &cs);
  assert_int_equal(cs.handshakes_failed, 1);
  ak_tls_free(t);
  close(c);
  if (rs.fd >= 0)
    close(s);
  ak_tls_config_release(ccfg);
}

/* A deadline on a handshake with a server that never answers: the
 * timeout fires, the session frees cleanly with its recv still pending. */
static void test_handshake_deadline(void **state) {
  (void)state;
  ak_tls_config *ccfg = client_cfg(0);
  int c, s;
  tcp_pair(&c, &s);
  ak_tls *t;
  assert_int_equal(ak_tls_client_new(loop, ccfg, c, "localhost", &t), 0);
  ak_future *h = ak_tls_handshake(t);
  ak_future *d = ak_future_timeout(h, 200 * MS);
  int64_t t0 = ak_now_ns();
  assert_int_equal(get(d), -ETIMEDOUT);
  assert_true(ak_now_ns() - t0 >= 150 * MS);
  assert_true(ak_future_is_cancelled(h));
  ak_tls_stats st;
  ak_tls_stats_get(t, &st);
  assert_false(st.handshake_done);
  assert_true(st.send_ops >= 1 && st.recv_ops == 1); /* the ClientHello went out */
  ak_future_release(d);
  ak_future_release(h);
  ak_tls_free(t);
  close(c);
  close(s);
  get_release(ak_sleep(loop, 10 * MS)); /* the cancelled recv completes */
  ak_tls_config_release(ccfg);
}

static void test_handshake_faults(void **state) {
  (void)state;
  /* Cut short: the server closes after the ClientHello. */
  expect_handshake_fault(NULL, 0, false, AK_ETLSTRUNCATED);
  /* Cut short mid-record: a ServerHello header promising 80 bytes, then 3. */
  static const unsigned char partial[] = {0x16, 0x03, 0x03, 0x00, 0x50, 0x02, 0x00, 0x00};
  expect_handshake_fault(partial, sizeof(partial), false, AK_ETLSTRUNCATED);
  /* Reset instead of an answer. */
  expect_handshake_fault(partial, sizeof(partial), true, -ECONNRESET);
  /* Garbage instead of a ServerHello: an HTTP answer. */
  static const char http[] = "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n";
  expect_handshake_fault(http, sizeof(http) - 1, false, AK_ETLSPROTOCOL);
  /* A record longer than TLS allows (65535 > 2^14 + 2048). */
  static unsigned char huge[5 + 1000] = {0x16, 0x03, 0x03, 0xff, 0xff};
  expect_handshake_fault(huge, sizeof(huge), false, AK_ETLSPROTOCOL);
  /* An alert: handshake_failure (what a server with no common cipher says). */
  static const unsigned char alert[] = {0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x28};
  expect_handshake_fault(alert, sizeof(alert), false, AK_ETLSHANDSHAKE);
}

/* After the handshake: the server's side sends raw bytes, then ends. */
static void expect_read_fault(const void *raw, size_t len, bool reset, int want) {
  ak_tls_config *ccfg = client_cfg(0), *scfg = server_cfg("server.pem");
  pair p;
  pair_open(&p, ccfg, "localhost", scfg);
  assert_int_equal(pair_handshake(&p, NULL), 0);
  /* Everything the server's session had to send has arrived (TLS 1.3: its
   * tickets), so the raw bytes below follow whole records. */
  ping_pong(&p);
  if (len)
    assert_int_equal(send(p.sfd, raw, len, MSG_NOSIGNAL), (ssize_t)len);
  if (reset) {
    struct linger lg = {.l_onoff = 1, .l_linger = 0};
    setsockopt(p.sfd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    ak_tls_free(p.s);
    close(p.sfd);
    p.sfd = -1;
    p.s = NULL;
  } else {
    shutdown(p.sfd, SHUT_WR);
  }
  char b[64];
  ak_future *f = ak_tls_read(p.c, b, sizeof(b));
  int64_t r = get(f);
  if (r != want)
    fail_msg("got %s (%s), want %s", ak_err_name((int)r),
             ak_future_detail(f) ? ak_future_detail(f) : "-", ak_err_name(want));
  if (want == AK_ETLSTRUNCATED)
    assert_non_null(ak_future_detail(f));
  ak_future_release(f);
  /* Never a clean end afterwards either. */
  assert_int_equal(get_release(ak_tls_read(p.c, b, sizeof(b))), want);
  ak_tls_free(p.c);
  ak_tls_free(p.s);
  close(p.cfd);
  if (p.sfd >= 0)
    close(p.sfd);
  ak_tls_config_release(ccfg);
  ak_tls_config_release(scfg);
}

static void test_read_faults(void **state) {
  (void)state;
  /* EOF without close_notify: truncation, never a clean end. */
  expect_read_fault(NULL, 0, false, AK_ETLSTRUNCATED);
  /* EOF in the middle of a record. */
  static const unsigned char half[] = {0x17, 0x03, 0x03, 0x01, 0x00, 1, 2, 3, 4};
  expect_read_fault(half, sizeof(half), false, AK_ETLSTRUNCATED);
  /* Reset mid-record. */
  expect_read_fault(half, sizeof(half), true, -ECONNRESET);
  /* An application-data record longer than the maximum. */
  static unsigned char big[5 + 64] = {0x17, 0x03, 0x03, 0x48, 0x01};
  expect_read_fault(big, sizeof(big), false, AK_ETLSPROTOCOL);
}

/* ---- Volume ------------------------------------------------------------------------------ */

/* 64 MiB each way at once, byte-identical. */
static void test_64mib_both_ways(void **state) {
  (void)state;
  ak_tls_config *ccfg = client_cfg(0), *scfg = server_cfg("server.pem");
  pair p;
  pair_open(&p, ccfg, "localhost", scfg);
  assert_int_equal(pair_handshake(&p, NULL), 0);
  size_t len = 64u << 20;
  unsigned char *c_out = malloc(len), *s_out = malloc(len), *c_in = malloc(len),
                *s_in = malloc(len);
  assert_true(c_out && s_out && c_in && s_in);
  for (size_t i = 0; i < len; i++) {
    c_out[i] = pattern(i, 1);
    s_out[i] = pattern(i, 2);
  }
  ak_future *cw = ak_tls_write(p.c, c_out, len);
  ak_future *sw = ak_tls_write(p.s, s_out, len);
  size_t cgot = 0, sgot = 0;
  ak_future *cr = ak_tls_read(p.c, c_in, len), *sr = ak_tls_read(p.s, s_in, len);
  while (cr || sr) {
    ak_future *pending[2];
    size_t n = 0;
    if (cr)
      pending[n++] = cr;
    if (sr)
      pending[n++] = sr;
    get_release(ak_join_any(pending, n, 0));
    if (cr && ak_future_is_set(cr)) {
      int64_t r = ak_future_result(cr);
      assert_true(r > 0);
      cgot += (size_t)r;
      ak_future_release(cr);
      cr = cgot < len ? ak_tls_read(p.c, c_in + cgot, len - cgot) : NULL;
    }
    if (sr && ak_future_is_set(sr)) {
      int64_t r = ak_future_result(sr);
      assert_true(r > 0);
      sgot += (size_t)r;
      ak_future_release(sr);
      sr = sgot < len ? ak_tls_read(p.s, s_in + sgot, len - sgot) : NULL;
    }
  }
  assert_int_equal(cgot, len);
  assert_int_equal(sgot, len);
  assert_int_equal(get_release(cw), (int64_t)len);
  assert_int_equal(get_release(sw), (int64_t)len);
  assert_memory_equal(s_in, c_out, len);
  assert_memory_equal(c_in, s_out, len);
  free(c_out);
  free(s_out);
  free(c_in);
  free(s_in);
  pair_close(&p);
  ak_tls_config_release(ccfg);
  ak_tls_config_release(scfg);
}

/* 1000 sessions opened, used and closed: no fd is left behind (asan checks
 * the memory at exit). */
static void test_1000_sessions(void **state) {
  (void)state;
  ak_tls_config *ccfg = client_cfg(0), *scfg = server_cfg("server.pem");
  int lfd = ak_tcp_listen("127.0.0.1", 0, 64);
  assert_true(lfd >= 0);
  struct sockaddr_in a = loopback4(ak_socket_port(lfd));
  int fds_before = count_fds();
  size_t heap_at_100 = 0;
  for (int i = 0; i < 1000; i++) {
    if (i == 100)
      heap_at_100 = mallinfo2().uordblks; /* after the caches have warmed */
    pair p;
    p.cfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_int_equal(connect(p.cfd, (struct sockaddr *)&a, sizeof(a)), 0);
    p.sfd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
    assert_true(p.sfd >= 0);
    assert_int_equal(ak_tls_client_new(loop, ccfg, p.cfd, "localhost", &p.c), 0);
    assert_int_equal(ak_tls_server_new(loop, scfg, p.sfd, &p.s), 0);
    char b[4];
    ping_pong(&p);
    assert_int_equal(get_release(ak_tls_close_notify(p.c)), 0);
    assert_int_equal(get_release(ak_tls_read(p.s, b, 4)), 0);
    pair_close(&p);
  }
  close(lfd);
  assert_int_equal(count_fds(), fds_before - 1);
  /* No memory growth over the last 900 sessions (under asan mallinfo2 says
   * 0 and LeakSanitizer checks at exit instead). */
  size_t heap_now = mallinfo2().uordblks;
  if (heap_now > heap_at_100 + 256 * 1024)
    fail_msg("heap grew from %zu to %zu bytes over 900 sessions", heap_at_100, heap_now);
  ak_tls_config_stats cs;
  ak_tls_config_stats_get(ccfg, &cs);
  assert_int_equal(cs.handshakes, 1000);
  assert_int_equal(cs.handshakes_resumed, 999);
  ak_tls_config_release(ccfg);
  ak_tls_config_release(scfg);
}

/* Configs are shared by sessions on several loops (tls.h: the config calls
 * are thread-safe): two threads, each with its own loop, run sessions
 * against one client and one server config at once. Run under tsan too. */
typedef struct shared_run {
  ak_tls_config *ccfg, *scfg;
  int lfd;   /* this thread's listener: the resumption key is per port */
  int done;  /* sessions that moved their bytes */
} shared_run;

static void *shared_thread(void *arg) {
  shared_run *run = arg;
  ak_loop *l = NULL;
  if (ak_loop_new(&l, NULL) != 0)
    return NULL;
  struct sockaddr_in a = loopback4(ak_socket_port(run->lfd));
  for (int i = 0; i < 40; i++) {
    int c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (c < 0 || connect(c, (struct sockaddr *)&a, sizeof(a)) != 0)
      break;
    int s = accept4(run->lfd, NULL, NULL, SOCK_CLOEXEC);
    ak_tls *ct = NULL, *st = NULL;
    if (s >= 0 && ak_tls_client_new(l, run->ccfg, c, "localhost", &ct) == 0 &&
        ak_tls_server_new(l, run->scfg, s, &st) == 0) {
      char b[4], b2[4];
      ak_future *r = ak_tls_read(st, b, 4);
      ak_future *w = ak_tls_write(ct, "ping", 4);
      /* The answer: the client's read takes in a TLS 1.3 ticket too. */
      ak_future *r2 = ak_tls_read(ct, b2, 4);
      ak_future *w2 = ak_tls_write(st, "pong", 4);
      if (ak_future_wait(w, 20 * SEC) == 0 && ak_future_wait(r, 20 * SEC) == 0 &&
          ak_future_result(w) == 4 && ak_future_result(r) == 4 && memcmp(b, "ping", 4) == 0 &&
          ak_future_wait(r2, 20 * SEC) == 0 && ak_future_wait(w2, 20 * SEC) == 0 &&
          ak_future_result(r2) == 4 && memcmp(b2, "pong", 4) == 0)
        run->done++;
      ak_future_release(r);
      ak_future_release(w);
      ak_future_release(r2);
      ak_future_release(w2);
    }
    ak_tls_free(ct);
    ak_tls_free(st);
    close(c);
    if (s >= 0)
      close(s);
  }
  ak_loop_free(l);
  return NULL;
}

static void test_config_shared_by_threads(void **state) {
  (void)state;
  shared_run runs[2];
  ak_tls_config *ccfg = client_cfg(0), *scfg = server_cfg("server.pem");
  pthread_t th[2];
  for (int i = 0; i < 2; i++) {
    runs[i] = (shared_run){.ccfg = ccfg, .scfg = scfg, .lfd = ak_tcp_listen("127.0.0.1", 0, 8)};
    assert_true(runs[i].lfd >= 0);
    set_timeouts(runs[i].lfd);
    assert_int_equal(pthread_create(&th[i], NULL, shared_thread, &runs[i]), 0);
  }
  for (int i = 0; i < 2; i++) {
    pthread_join(th[i], NULL);
    close(runs[i].lfd);
    assert_int_equal(runs[i].done, 40);
  }
  ak_tls_config_stats cs;
  ak_tls_config_stats_get(ccfg, &cs);
  assert_int_equal(cs.handshakes, 80);
  assert_int_equal(cs.handshakes_resumed, 78); /* all but each thread's first */
  assert_int_equal(cs.cached_sessions, 2);
  ak_tls_config_release(ccfg);
  ak_tls_config_release(scfg);
}

/* ---- Interop -------------------------------------------------------------------------------- */

/* asynckit's client against openssl s_server -www. */
static void test_interop_openssl_server(void **state) {
  (void)state;
  int port = free_port();
  char accept_arg[32], log[320];
  snprintf(accept_arg, sizeof(accept_arg), "127.0.0.1:%d", port);
  snprintf(log, sizeof(log), "%s/s_server.log", certs);
  char *argv[] = {"openssl", "s_server", "-accept", accept_arg, "-cert", (char *)cert("server.pem"),
                  "-key", (char *)cert("server.key"), "-www", "-naccept", "1", NULL};
  pid_t pid = spawn(argv, -1, log);
  int fd = connect_retry(port);
  ak_tls_config *ccfg = client_cfg(0);
  ak_tls *t;
  assert_int_equal(ak_tls_client_new(loop, ccfg, fd, "localhost", &t), 0);
  assert_int_equal(get_release(ak_tls_handshake(t)), 0);
  const char req[] = "GET / HTTP/1.0\r\n\r\n";
  assert_int_equal(get_release(ak_tls_write(t, req, sizeof(req) - 1)), sizeof(req) - 1);
  static char body[1 << 16];
  int64_t n = read_all(t, body, sizeof(body) - 1);
  assert_true(n > 0);
  body[n] = '\0';
  assert_non_null(strstr(body, "HTTP/1.0 200 ok"));
  ak_tls_stats st;
  ak_tls_stats_get(t, &st);
  assert_non_null(strstr(st.ciphersuite, "GCM"));
  /* s_server reports what it negotiated with us. */
  assert_non_null(strstr(body, "GCM"));
  ak_tls_free(t);
  close(fd);
  reap(pid, 5000);
  ak_tls_config_release(ccfg);
}

/* Handshake failures against openssl s_server: no common cipher, and a
 * protocol version we do not speak. opt, val, opt2: s_server options (the
 * later ones may be NULL). */
static void expect_server_refuses(const char *opt, const char *val, const char *opt2) {
  int port = free_port();
  char accept_arg[32], log[320];
  snprintf(accept_arg, sizeof(accept_arg), "127.0.0.1:%d", port);
  snprintf(log, sizeof(log), "%s/s_server_refuse.log", certs);
  char *argv[] = {"openssl", "s_server", "-accept", accept_arg, "-cert", (char *)cert("server.pem"),
                  "-key", (char *)cert("server.key"), "-www", "-naccept", "1", (char *)opt,
                  (char *)val, (char *)opt2, NULL};
  if (!val)
    argv[12] = NULL;
  pid_t pid = spawn(argv, -1, log);
  int fd = connect_retry(port);
  ak_tls_config *ccfg = client_cfg(0);
  ak_tls *t;
  assert_int_equal(ak_tls_client_new(loop, ccfg, fd, "localhost", &t), 0);
  ak_future *f = ak_tls_handshake(t);
  int64_t r = get(f);
  if (r != AK_ETLSHANDSHAKE)
    fail_msg("%s: got %s (%s)", opt, ak_err_name((int)r),
             ak_future_detail(f) ? ak_future_detail(f) : "-");
  assert_non_null(ak_future_detail(f));
  ak_future_release(f);
  ak_tls_free(t);
  close(fd);
  reap(pid, 5000);
  ak_tls_config_release(ccfg);
}

static void test_interop_handshake_failure(void **state) {
  (void)state;
  /* TLS 1.2 with a suite we do not offer (and no TLS 1.3, whose suites
   * -cipher does not touch). */
  expect_server_refuses("-cipher", "ECDHE-ECDSA-AES128-SHA", "-no_tls1_3");
  /* TLS 1.3 only: mbedtls 2.28 does not speak it; OpenSSL does, with a
   * TLS 1.3 suite list that has nothing in common with ours. */
  if (is_openssl)
    expect_server_refuses("-tls1_3", "-ciphersuites", "TLS_AES_128_CCM_SHA256");
  else
    expect_server_refuses("-tls1_3", NULL, NULL);
  /* TLS 1.1 only: below what either engine accepts. */
  expect_server_refuses("-tls1_1", NULL, NULL);
}

/* openssl s_client against asynckit's server. */
static void test_interop_openssl_client(void **state) {
  (void)state;
  int lfd = ak_tcp_listen("127.0.0.1", 0, 4);
  assert_true(lfd >= 0);
  set_timeouts(lfd);
  char connect_arg[32], log[320];
  snprintf(connect_arg, sizeof(connect_arg), "127.0.0.1:%d", ak_socket_port(lfd));
  snprintf(log, sizeof(log), "%s/s_client.log", certs);
  int in[2];
  assert_int_equal(pipe2(in, O_CLOEXEC), 0);
  char *argv[] = {"openssl", "s_client", "-connect", connect_arg, "-servername", "localhost",
                  "-CAfile", (char *)cert("ca.pem"), "-verify_return_error", "-alpn", "http/1.1",
                  "-brief", NULL};
  pid_t pid = spawn(argv, in[0], log);
  close(in[0]);
  int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
  assert_true(fd >= 0);
  ak_tls_config *scfg = server_cfg("server.pem");
  ak_tls *t;
  assert_int_equal(ak_tls_server_new(loop, scfg, fd, &t), 0);
  assert_int_equal(get_release(ak_tls_handshake(t)), 0);
  assert_int_equal(write(in[1], "ping\n", 5), 5);
  char b[16];
  assert_int_equal(get_release(ak_tls_read(t, b, 5)), 5);
  assert_memory_equal(b, "ping\n", 5);
  assert_int_equal(get_release(ak_tls_write(t, "pong from asynckit\n", 19)), 19);
  close(in[1]); /* s_client sees EOF on stdin: it sends close_notify and quits */
  int64_t end = get_release(ak_tls_read(t, b, sizeof(b)));
  assert_true(end == 0 || end == AK_ETLSTRUNCATED); /* s_client may just close */
  int status = reap(pid, 10000);
  char *out = slurp(log);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
    fail_msg("s_client: %s", out);
  assert_non_null(strstr(out, "pong from asynckit"));
  assert_non_null(strstr(out, "Verification: OK"));
  assert_non_null(strstr(out, is_openssl ? "Protocol version: TLSv1.3"
                                          : "Protocol version: TLSv1.2"));
  assert_non_null(strstr(out, is_openssl ? "Ciphersuite: TLS_AES_128_GCM_SHA256"
                                         : "Ciphersuite: ECDHE-ECDSA-AES128-GCM-SHA256"));
  ak_tls_stats st;
  ak_tls_stats_get(t, &st);
  assert_string_equal(st.alpn, "http/1.1");
  ak_tls_free(t);
  close(fd);
  close(lfd);
  ak_tls_config_release(scfg);
}

/* asynckit's client against nginx, started here from a config in the temp
 * dir (daemon off, one process, 127.0.0.1 and a free port), killed by pid. */
static void test_interop_nginx(void **state) {
  (void)state;
  if (access("/usr/sbin/nginx", X_OK) != 0)
    fail_msg("nginx is not installed (tools/bootstrap installs it)");
  int port = free_port();
  char dir[320], conf[400], log[400];
  snprintf(dir, sizeof(dir), "%s/nginx", certs);
  mkdir(dir, 0755);
  snprintf(conf, sizeof(conf), "%s/nginx.conf", dir);
  snprintf(log, sizeof(log), "%s/nginx.log", dir);
  FILE *f = fopen(conf, "w");
  assert_non_null(f);
  fprintf(f,
          "daemon off;\nmaster_process off;\nworker_processes 1;\npid %s/nginx.pid;\n"
          "error_log %s/error.log;\nevents { worker_connections 64; }\n"
          "http {\n access_log off;\n client_body_temp_path %s;\n proxy_temp_path %s;\n"
          " fastcgi_temp_path %s;\n uwsgi_temp_path %s;\n scgi_temp_path %s;\n"
          " server {\n  listen 127.0.0.1:%d ssl;\n  server_name localhost;\n"
          "  ssl_protocols TLSv1.2 TLSv1.3;\n"
          "  ssl_certificate %s;\n  ssl_certificate_key %s;\n"
          "  location / { return 200 \"hello from nginx $ssl_cipher $ssl_protocol\\n\"; }\n"
          " }\n}\n",
          dir, dir, dir, dir, dir, dir, dir, port, cert("server.pem"), cert("server.key"));
  fclose(f);
  char *argv[] = {"/usr/sbin/nginx", "-p", dir, "-c", conf, "-e", log, NULL};
  pid_t pid = spawn(argv, -1, log);
  int fd = connect_retry(port);
  ak_tls_config *ccfg = client_cfg(0);
  ak_tls *t;
  assert_int_equal(ak_tls_client_new(loop, ccfg, fd, "localhost", &t), 0);
  int64_t hr = get_release(ak_tls_handshake(t));
  if (hr != 0) {
    kill(pid, SIGTERM);
    reap(pid, 5000);
    fail_msg("handshake with nginx: %s; nginx log: %s", ak_err_name((int)hr), slurp(log));
  }
  const char req[] = "GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
  assert_int_equal(get_release(ak_tls_write(t, req, sizeof(req) - 1)), sizeof(req) - 1);
  static char body[8192];
  int64_t n = read_all(t, body, sizeof(body) - 1);
  kill(pid, SIGTERM); /* before any assertion can leave it running */
  reap(pid, 5000);
  assert_true(n > 0);
  body[n] = '\0';
  assert_non_null(strstr(body, "HTTP/1.1 200 OK"));
  assert_non_null(strstr(body, is_openssl ? "hello from nginx TLS_AES_128_GCM_SHA256 TLSv1.3"
                                          : "hello from nginx ECDHE-ECDSA-AES128-GCM-SHA256 TLSv1.2"));
  ak_tls_stats st;
  ak_tls_stats_get(t, &st);
  assert_non_null(strstr(st.ciphersuite, "AES-128-GCM"));
  ak_tls_free(t);
  close(fd);
  ak_tls_config_release(ccfg);
}

/* ---- main --------------------------------------------------------------------------------- */

static int setup(void **state) {
  (void)state;
  ak_loop_options opts = {0};
  int rc = ak_loop_new(&loop, &opts);
  if (rc == AK_ENOURING || rc == AK_EURINGDISABLED || rc == AK_EURINGBLOCKED)
    exit(77);
  return rc;
}

static int teardown(void **state) {
  (void)state;
  ak_loop_free(loop);
  return 0;
}

int main(void) {
  signal(SIGPIPE, SIG_IGN);
  const char *env = getenv("AK_TLS_ENGINE");
  if (env && env[0])
    engine = env;
  is_openssl = strcmp(engine, "openssl") == 0;
  print_message("engine under test: %s\n", engine);
  snprintf(certs, sizeof(certs), "/tmp/ak-tls-XXXXXX");
  if (!mkdtemp(certs)) {
    perror("mkdtemp");
    return 1;
  }
  char cmd[600];
  snprintf(cmd, sizeof(cmd), "sh %s %s", T_TLS_CERTS_SH, certs);
  if (system(cmd) != 0) {
    fprintf(stderr, "test_tls: making certificates failed\n");
    return 1;
  }
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_roundtrip),
      cmocka_unit_test(test_host_required),
      cmocka_unit_test(test_ip_address_host),
      cmocka_unit_test(test_insecure_flagged),
      cmocka_unit_test(test_bad_certificates),
      cmocka_unit_test(test_config_errors),
      cmocka_unit_test(test_resumption),
      cmocka_unit_test(test_session_cache_size),
      cmocka_unit_test(test_session_cache_lru),
      cmocka_unit_test(test_session_newest_wins),
      cmocka_unit_test(test_session_key_ipv6_literal),
      cmocka_unit_test(test_alpn_options),
      cmocka_unit_test(test_engine_choice),
      cmocka_unit_test(test_cross_engine),
      cmocka_unit_test(test_pending_plaintext_first),
      cmocka_unit_test(test_read_fills_from_all_records),
      cmocka_unit_test(test_want_write_same_args),
      cmocka_unit_test(test_cancel_write_mid_record),
      cmocka_unit_test(test_steps_queue_in_order),
      cmocka_unit_test(test_close_notify),
      cmocka_unit_test(test_free_pending),
      cmocka_unit_test(test_handshake_deadline),
      cmocka_unit_test(test_handshake_faults),
      cmocka_unit_test(test_read_faults),
      cmocka_unit_test(test_64mib_both_ways),
      cmocka_unit_test(test_1000_sessions),
      cmocka_unit_test(test_config_shared_by_threads),
      cmocka_unit_test(test_interop_openssl_server),
      cmocka_unit_test(test_interop_handshake_failure),
      cmocka_unit_test(test_interop_openssl_client),
      cmocka_unit_test(test_interop_nginx),
  };
  /* T_FILTER=test_name (a glob) runs a subset while debugging. */
  if (getenv("T_FILTER"))
    cmocka_set_test_filter(getenv("T_FILTER"));
  int failed = cmocka_run_group_tests(tests, setup, teardown);
  snprintf(cmd, sizeof(cmd), "rm -rf %s", certs);
  if (system(cmd) != 0)
    fprintf(stderr, "test_tls: could not remove %s\n", certs);
  return failed;
}
