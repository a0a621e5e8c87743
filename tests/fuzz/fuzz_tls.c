/* fuzz_tls.c: the body of the TLS client fuzz targets (fuzz_tls_client.c
 * for mbedtls, fuzz_tls_openssl.c for OpenSSL): arbitrary bytes as the
 * server's side of a client handshake through the whole pump (ring
 * recv/send on a socketpair, the engine, the step queues). Whatever the
 * bytes, the handshake future must settle (bounded wait), and settle with
 * an error: no input can pass certificate verification. asan/ubsan catch
 * memory errors; an abort is a find. */
#include "fuzz_tls.h"

#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

static ak_loop *loop;
static ak_tls_config *cfg;

void fuzz_tls_setup(ak_tls_engine engine) {
  if (ak_loop_new(&loop, NULL) != 0) {
    fprintf(stderr, "fuzz: no loop (io_uring unavailable?)\n");
    exit(1);
  }
  /* The system bundle: verification runs as it does for real. */
  ak_tls_client_options o = {.engine = engine};
  int rc = ak_tls_client_config_new(&o, &cfg);
  if (rc != 0) {
    fprintf(stderr, "fuzz: client config: %s (%s)\n", ak_strerror(rc), ak_tls_config_error());
    exit(1);
  }
}

void fuzz_tls_handshake(const uint8_t *data, size_t size) {
  if (size > 100000)
    return; /* the socketpair's buffer must take it all at once */
  int fds[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0)
    abort();
  int big = 1 << 20;
  setsockopt(fds[1], SOL_SOCKET, SO_SNDBUF, &big, sizeof(big));
  setsockopt(fds[0], SOL_SOCKET, SO_RCVBUF, &big, sizeof(big));
  setsockopt(fds[0], SOL_SOCKET, SO_SNDBUF, &big, sizeof(big));
  size_t off = 0;
  while (off < size) {
    ssize_t n = send(fds[1], data + off, size - off, MSG_NOSIGNAL);
    if (n <= 0)
      abort();
    off += (size_t)n;
  }
  shutdown(fds[1], SHUT_WR); /* the server says no more */
  ak_tls *t = NULL;
  if (ak_tls_client_new(loop, cfg, fds[0], "localhost", &t) != 0)
    abort();
  ak_future *f = ak_tls_handshake(t);
  if (!f || ak_future_wait(f, INT64_C(10000000000)) != 0)
    abort(); /* a hang: the pump must always settle the handshake */
  int64_t r = ak_future_result(f);
  if (r == 0) {
    /* Verification cannot pass for bytes made up by a fuzzer. */
    fprintf(stderr, "fuzz: a handshake succeeded without a valid certificate\n");
    abort();
  }
  if (r >= 0 || ak_strerror((int)r) == NULL)
    abort();
  ak_future_release(f);
  ak_tls_free(t);
  close(fds[0]);
  close(fds[1]);
}
