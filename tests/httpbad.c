/* httpbad.c: the project's own misbehaving HTTP server, for what nginx will
 * not do: resets and closes mid-body, lying Content-Lengths, chunked bodies
 * cut short, heads that trickle in, stalls, malformed and oversized heads,
 * interim 1xx responses, Retry-After, redirects. Blocking sockets, a thread
 * per connection, loopback only; every wait is bounded (receive timeouts,
 * and the stalls end when the server stops or after 30 s).
 *
 * The well-behaved paths serve a synthetic body whose byte at offset i is
 * t_body_byte(i), with Range support, keep-alive, chunked and close-delimited
 * variants. The path names the behaviour: see route() below, and httpbad.h. */
#define _GNU_SOURCE 1 /* memmem, strcasestr */
#include "httpbad.h"

#include <arpa/inet.h>
#include <stdbool.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

static int listen_fd = -1;
static pthread_t accept_thread;
static atomic_bool stopping;
static atomic_int live_threads;
static uint16_t server_port;
static pthread_mutex_t retry_lock = PTHREAD_MUTEX_INITIALIZER;
static char retry_seen[64][64]; /* keys of /retry/ that got their 503 already */
static int retry_count;

unsigned char t_body_byte(uint64_t i)
{
  return (unsigned char)((i * 131 + (i >> 8)) % 251);
}

int64_t t_body_file_differs(int fd, int64_t size)
{
  unsigned char buf[65536];
  int64_t at = 0;
  for (;;) {
    ssize_t n = pread(fd, buf, sizeof buf, at);
    if (n < 0)
      return -2;
    if (n == 0)
      return at == size ? -1 : at;
    for (ssize_t i = 0; i < n; i++, at++)
      if (at >= size || buf[i] != t_body_byte((uint64_t)at))
        return at;
  }
}

static void fill_body(unsigned char *buf, uint64_t off, size_t n)
{
  for (size_t k = 0; k < n; k++)
    buf[k] = t_body_byte(off + k);
}

static bool send_all(int fd, const void *buf, size_t len)
{
  const char *p = buf;
  while (len > 0) {
    ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
    if (n <= 0)
      return false;
    p += n;
    len -= (size_t)n;
  }
  return true;
}

static bool send_str(int fd, const char *s)
{
  return send_all(fd, s, strlen(s));
}

/* Sends body bytes [off, off+n). */
static bool send_body(int fd, uint64_t off, uint64_t n)
{
  unsigned char buf[16384];
  while (n > 0) {
    size_t k = n < sizeof buf ? (size_t)n : sizeof buf;
    fill_body(buf, off, k);
    if (!send_all(fd, buf, k))
      return false;
    off += k;
    n -= k;
  }
  return true;
}

/* Sleeps ms milliseconds, or less when the server stops. */
static void nap(int ms)
{
  while (ms > 0 && !atomic_load(&stopping)) {
    struct timespec ts = {0, 20 * 1000000L};
    nanosleep(&ts, NULL);
    ms -= 20;
  }
}

static void reset_close(int fd)
{
  struct linger lg = {1, 0};
  setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg); /* close sends RST */
  close(fd);
}

typedef struct request {
  char path[512];
  char accept_encoding[128]; /* the request's Accept-Encoding, or "" */
  bool head;
  long long range_start, range_end; /* -1: none */
} request;

/* Reads one request head (bounded). Returns false at EOF or on junk. */
static bool read_request(int fd, char *buf, size_t cap, size_t *have, request *rq)
{
  char *end;
  while (!(end = memmem(buf, *have, "\r\n\r\n", 4))) {
    if (*have >= cap - 1)
      return false;
    ssize_t n = recv(fd, buf + *have, cap - 1 - *have, 0);
    if (n <= 0)
      return false;
    *have += (size_t)n;
  }
  buf[*have] = '\0';
  *end = '\0';
  char method[16];
  if (sscanf(buf, "%15s %511s", method, rq->path) != 2)
    return false;
  rq->head = strcmp(method, "HEAD") == 0;
  rq->accept_encoding[0] = '\0';
  char *ae = strcasestr(buf, "\r\nAccept-Encoding:");
  if (ae)
    sscanf(ae + 18, " %127[^\r]", rq->accept_encoding);
  rq->range_start = rq->range_end = -1;
  char *r = strcasestr(buf, "\r\nRange: bytes=");
  if (r) {
    r += 15;
    rq->range_start = strtoll(r, &r, 10);
    if (*r == '-' && r[1] >= '0' && r[1] <= '9')
      rq->range_end = strtoll(r + 1, NULL, 10);
  }
  size_t used = (size_t)(end + 4 - buf);
  memmove(buf, buf + used, *have - used);
  *have -= used;
  return true;
}

/* A well-behaved file of n bytes, honouring Range unless no_range. */
static bool serve_file(int fd, const request *rq, uint64_t n, bool no_range)
{
  char head[512];
  if (rq->range_start >= 0 && !no_range) {
    if ((uint64_t)rq->range_start >= n) {
      snprintf(head, sizeof head,
               "HTTP/1.1 416 Range Not Satisfiable\r\nContent-Range: bytes */%llu\r\n"
               "Content-Length: 0\r\n\r\n",
               (unsigned long long)n);
      return send_str(fd, head);
    }
    uint64_t a = (uint64_t)rq->range_start;
    uint64_t b = rq->range_end >= 0 && (uint64_t)rq->range_end < n ? (uint64_t)rq->range_end : n - 1;
    snprintf(head, sizeof head,
             "HTTP/1.1 206 Partial Content\r\nAccept-Ranges: bytes\r\nContent-Range: bytes "
             "%llu-%llu/%llu\r\nContent-Length: %llu\r\n\r\n",
             (unsigned long long)a, (unsigned long long)b, (unsigned long long)n,
             (unsigned long long)(b - a + 1));
    return send_str(fd, head) && (rq->head || send_body(fd, a, b - a + 1));
  }
  snprintf(head, sizeof head, "HTTP/1.1 200 OK\r\n%sContent-Length: %llu\r\n\r\n",
           no_range ? "" : "Accept-Ranges: bytes\r\n", (unsigned long long)n);
  return send_str(fd, head) && (rq->head || send_body(fd, 0, n));
}

static bool serve_chunked(int fd, uint64_t n, bool cut, uint64_t chunk)
{
  if (!send_str(fd, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"))
    return false;
  uint64_t off = 0;
  while (off < n) {
    uint64_t k = n - off < chunk ? n - off : chunk;
    if (cut && off + k >= n / 2)
      return false; /* the caller closes: the body is cut short */
    char line[32];
    snprintf(line, sizeof line, "%llx\r\n", (unsigned long long)k);
    if (!send_str(fd, line) || !send_body(fd, off, k) || !send_str(fd, "\r\n"))
      return false;
    off += k;
  }
  return send_str(fd, "0\r\n\r\n");
}

/* The body of n bytes (the pattern, or zeros) compressed by zlib:
 * window_bits 31 makes gzip, 15 zlib ("deflate"). malloc'd; NULL on
 * failure. */
static unsigned char *compress_body(uint64_t n, bool zeros, int window_bits, size_t *out_len)
{
  z_stream z = {0};
  if (deflateInit2(&z, 6, Z_DEFLATED, window_bits, 8, Z_DEFAULT_STRATEGY) != Z_OK)
    return NULL;
  size_t cap = deflateBound(&z, (uLong)n) + 64, have = 0;
  unsigned char *out = malloc(cap), in[16384];
  uint64_t off = 0;
  int rc = Z_OK;
  while (out && rc != Z_STREAM_END) {
    size_t k = n - off < sizeof in ? (size_t)(n - off) : sizeof in;
    if (zeros)
      memset(in, 0, k);
    else
      fill_body(in, off, k);
    off += k;
    z.next_in = in;
    z.avail_in = (uInt)k;
    do {
      z.next_out = out + have;
      z.avail_out = (uInt)(cap - have);
      rc = deflate(&z, off == n ? Z_FINISH : Z_NO_FLUSH);
      have = cap - z.avail_out;
    } while (z.avail_in > 0 && rc == Z_OK);
  }
  deflateEnd(&z);
  *out_len = have;
  return out;
}

/* /gzip... paths: a compressed body, sent as kind says. */
static bool serve_compressed(int fd, const char *kind, uint64_t n)
{
  bool zeros = strcmp(kind, "gzipbomb") == 0;
  size_t len = 0;
  unsigned char *z = compress_body(n, zeros, strcmp(kind, "deflate") == 0 ? 15 : 31, &len);
  if (!z || len < 40) {
    free(z);
    return false;
  }
  const char *enc = strcmp(kind, "deflate") == 0 ? "deflate" : strcmp(kind, "br") == 0 ? "br" : "gzip";
  size_t send_len = len, claim = len;
  if (strcmp(kind, "gzipbad") == 0)
    for (size_t i = len / 3; i < len / 3 + 16; i++)
      z[i] ^= 0x5a; /* corrupt deflate data in the middle */
  if (strcmp(kind, "gzipisize") == 0)
    z[len - 1] ^= 0x01; /* the trailer's length (ISIZE) is wrong */
  if (strcmp(kind, "gziptrunc") == 0)
    send_len = claim = len / 2; /* a framed body that holds half a stream */
  if (strcmp(kind, "gzipcl") == 0)
    claim = len + 100; /* Content-Length longer than the stream, then close */
  char h[256];
  snprintf(h, sizeof h, "HTTP/1.1 200 OK\r\nContent-Encoding: %s\r\nContent-Length: %zu\r\n\r\n",
           enc, claim);
  bool ok = send_str(fd, h) && send_all(fd, z, send_len);
  free(z);
  return ok && claim == send_len;
}

/* Whether key was seen before (and remembers it). */
static bool retry_key_seen(const char *key)
{
  pthread_mutex_lock(&retry_lock);
  bool seen = false;
  for (int i = 0; i < retry_count; i++)
    if (strcmp(retry_seen[i], key) == 0)
      seen = true;
  if (!seen && retry_count < 64)
    snprintf(retry_seen[retry_count++], sizeof retry_seen[0], "%s", key);
  pthread_mutex_unlock(&retry_lock);
  return seen;
}

/* /m/N: one URL whose behaviour a test switches between two runs of a
 * client (GET /setmode/NAME), for resumes: "ok" well-behaved (Range
 * honoured, no validators), "stall" half of the answer it would send and
 * then a stall (an interrupted first run), "norange" a 200 to every
 * request, "badcr" a 206 one byte past the range asked (Content-Range and
 * body agree with each other, not with the request). */
static char mode_name[16] = "ok";

static bool serve_mode(int fd, const request *rq, uint64_t n)
{
  char mode[16];
  pthread_mutex_lock(&retry_lock);
  memcpy(mode, mode_name, sizeof mode);
  pthread_mutex_unlock(&retry_lock);
  if (strcmp(mode, "norange") == 0)
    return serve_file(fd, rq, n, true);
  bool ranged = rq->range_start >= 0 && (uint64_t)rq->range_start < n;
  if (strcmp(mode, "badcr") == 0 && ranged && (uint64_t)rq->range_start + 1 < n) {
    request shifted = *rq;
    shifted.range_start++;
    return serve_file(fd, &shifted, n, false);
  }
  if (strcmp(mode, "stall") != 0 || rq->head)
    return serve_file(fd, rq, n, false);
  uint64_t a = ranged ? (uint64_t)rq->range_start : 0;
  uint64_t b = ranged && rq->range_end >= 0 && (uint64_t)rq->range_end < n ? (uint64_t)rq->range_end
                                                                          : n - 1;
  char head[256];
  if (ranged)
    snprintf(head, sizeof head,
             "HTTP/1.1 206 Partial Content\r\nAccept-Ranges: bytes\r\nContent-Range: bytes "
             "%llu-%llu/%llu\r\nContent-Length: %llu\r\n\r\n",
             (unsigned long long)a, (unsigned long long)b, (unsigned long long)n,
             (unsigned long long)(b - a + 1));
  else
    snprintf(head, sizeof head,
             "HTTP/1.1 200 OK\r\nAccept-Ranges: bytes\r\nContent-Length: %llu\r\n\r\n",
             (unsigned long long)n);
  if (!send_str(fd, head) || !send_body(fd, a, (b - a + 1) / 2))
    return false;
  nap(30000);
  return false;
}

/* Serves one request; returns whether the connection may go on. */
static bool route(int fd, const request *rq)
{
  const char *p = rq->path;
  unsigned long long n = 0;
  char key[64];
  if (sscanf(p, "/file/%llu", &n) == 1)
    return serve_file(fd, rq, n, false);
  if (sscanf(p, "/norange/%llu", &n) == 1)
    return serve_file(fd, rq, n, true);
  if (sscanf(p, "/m/%llu", &n) == 1)
    return serve_mode(fd, rq, n);
  if (sscanf(p, "/setmode/%15[a-z]", key) == 1) {
    pthread_mutex_lock(&retry_lock);
    memcpy(mode_name, key, sizeof mode_name); /* %15[a-z]: 16 bytes with its NUL */
    pthread_mutex_unlock(&retry_lock);
    return send_str(fd, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
  }
  if (sscanf(p, "/chunked/%llu", &n) == 1)
    return serve_chunked(fd, n, false, 1000);
  if (sscanf(p, "/tinychunks/%llu", &n) == 1)
    return serve_chunked(fd, n, false, 7);
  /* A HEAD of a path whose body breaks (akget -c asks one first): a
   * well-behaved head, so that only the GET misbehaves (a body after a
   * head would poison the kept-alive connection instead). */
  if (rq->head && (sscanf(p, "/close/%llu", &n) == 1 || sscanf(p, "/reset/%llu", &n) == 1 ||
                   sscanf(p, "/short/%llu", &n) == 1 || sscanf(p, "/chunkcut/%llu", &n) == 1 ||
                   sscanf(p, "/stall/%llu", &n) == 1))
    return serve_file(fd, rq, n, true);
  if (sscanf(p, "/close/%llu", &n) == 1) {
    send_str(fd, "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n");
    send_body(fd, 0, n);
    return false;
  }
  if (sscanf(p, "/reset/%llu", &n) == 1) {
    char h[128];
    snprintf(h, sizeof h, "HTTP/1.1 200 OK\r\nContent-Length: %llu\r\n\r\n", n);
    send_str(fd, h);
    send_body(fd, 0, n / 2);
    nap(50);
    reset_close(fd);
    return false; /* fd is closed */
  }
  if (sscanf(p, "/short/%llu", &n) == 1) {
    char h[128];
    snprintf(h, sizeof h, "HTTP/1.1 200 OK\r\nContent-Length: %llu\r\n\r\n", n);
    send_str(fd, h);
    send_body(fd, 0, n / 2);
    return false;
  }
  if (sscanf(p, "/chunkcut/%llu", &n) == 1) {
    serve_chunked(fd, n, true, 1000);
    return false;
  }
  if (sscanf(p, "/stall/%llu", &n) == 1) {
    char h[128];
    snprintf(h, sizeof h, "HTTP/1.1 200 OK\r\nContent-Length: %llu\r\n\r\n", n);
    send_str(fd, h);
    send_body(fd, 0, n / 2);
    nap(30000);
    return false;
  }
  unsigned long long piece, us;
  if (sscanf(p, "/drip/%llu/%llu/%llu", &n, &piece, &us) == 3 && piece > 0) {
    /* The body in piece-byte sends us microseconds apart, each its own
     * segment (squid writes its client 4 KiB at a time). */
    char h[128];
    snprintf(h, sizeof h, "HTTP/1.1 200 OK\r\nContent-Length: %llu\r\n\r\n", n);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (!send_str(fd, h))
      return false;
    for (uint64_t off = 0; off < n && !atomic_load(&stopping); off += piece) {
      struct timespec ts = {(time_t)(us / 1000000), (long)(us % 1000000) * 1000};
      if (off > 0 && us > 0)
        nanosleep(&ts, NULL);
      if (!send_body(fd, off, n - off < piece ? n - off : piece))
        return false;
    }
    return true;
  }
  if (sscanf(p, "/stallsome/%llu/%llu", &n, &piece) == 2) {
    /* The head, 50 ms later piece body bytes of n (the client's receive
     * is waiting for them by then), then 30 s of silence. */
    char h[128];
    snprintf(h, sizeof h, "HTTP/1.1 200 OK\r\nContent-Length: %llu\r\n\r\n", n);
    send_str(fd, h);
    struct timespec ts = {0, 50 * 1000000L};
    nanosleep(&ts, NULL);
    send_body(fd, 0, piece < n ? piece : n);
    nap(30000);
    return false;
  }
  if (strcmp(p, "/trickle") == 0) {
    /* A byte every 100 ms: the idle deadline never fires, the head one must. */
    send_str(fd, "HTTP/1.1 200 OK\r\nX-Slow: ");
    for (int i = 0; i < 300 && !atomic_load(&stopping); i++) {
      if (!send_str(fd, "a"))
        break;
      nap(100);
    }
    return false;
  }
  if (strcmp(p, "/badstatus") == 0) {
    send_str(fd, "HTTP/1.1 2x0 OK\r\nContent-Length: 0\r\n\r\n");
    return false;
  }
  if (strcmp(p, "/bigheader") == 0) {
    send_str(fd, "HTTP/1.1 200 OK\r\nX-Big: ");
    char chunk[1024];
    memset(chunk, 'b', sizeof chunk);
    for (int i = 0; i < 100; i++)
      if (!send_all(fd, chunk, sizeof chunk))
        return false;
    send_str(fd, "\r\nContent-Length: 0\r\n\r\n");
    return false;
  }
  if (strcmp(p, "/dupcl") == 0) {
    send_str(fd, "HTTP/1.1 200 OK\r\nContent-Length: 10\r\nContent-Length: 10\r\n\r\n0123456789");
    return false;
  }
  if (strcmp(p, "/conflictcl") == 0) {
    send_str(fd, "HTTP/1.1 200 OK\r\nContent-Length: 10\r\nContent-Length: 20\r\n\r\n0123456789");
    return false;
  }
  if (strcmp(p, "/negcl") == 0) {
    send_str(fd, "HTTP/1.1 200 OK\r\nContent-Length: -5\r\n\r\n01234");
    return false;
  }
  if (strcmp(p, "/hugecl") == 0) {
    send_str(fd, "HTTP/1.1 200 OK\r\nContent-Length: 1000000000000000000\r\n\r\n0123456789");
    return false;
  }
  if (strcmp(p, "/hugechunk") == 0) {
    send_str(fd, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                 "fffffffffffffffffffff\r\nabc");
    return false;
  }
  if (sscanf(p, "/manyheaders/%llu", &n) == 1 && n <= 190) {
    /* n headers "X-H<i>: v<i>" and their padding after a 103's own (the
     * client keeps every header of a head in one block that grows). */
    if (!send_str(fd, "HTTP/1.1 103 Early Hints\r\nLink: </early>\r\n\r\nHTTP/1.1 200 OK\r\n"))
      return false;
    for (unsigned long long i = 0; i < n; i++) {
      char h[200];
      snprintf(h, sizeof h, "X-H%llu: v%llu-%0*d\r\n", i, i, (int)(i % 64), 0);
      if (!send_str(fd, h))
        return false;
    }
    return send_str(fd, "Content-Length: 2\r\n\r\nok");
  }
  if (sscanf(p, "/notmod/%llu", &n) == 1) {
    /* A 304 never has a body, whatever its Content-Length (the entity's
     * size, as some servers send it) says; the connection goes on. */
    char head[160];
    snprintf(head, sizeof head,
             "HTTP/1.1 304 Not Modified\r\nETag: \"v1\"\r\nContent-Length: %llu\r\n\r\n", n);
    return send_str(fd, head);
  }
  if (sscanf(p, "/interim/%llu", &n) == 1) {
    send_str(fd, "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </x>\r\n\r\n");
    return serve_file(fd, rq, n, false);
  }
  if (sscanf(p, "/interimcl/%llu", &n) == 1) {
    /* A 1xx never has a body, whatever its headers say. */
    send_str(fd, "HTTP/1.1 100 Continue\r\nContent-Length: 4\r\n\r\n");
    return serve_file(fd, rq, n, false);
  }
  if (sscanf(p, "/retry/%63[^/]/%llu", key, &n) == 2) {
    if (!retry_key_seen(key))
      return send_str(fd, "HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\n"
                          "Content-Length: 4\r\n\r\nbusy");
    return serve_file(fd, rq, n, false);
  }
  char kind[16];
  if (sscanf(p, "/z/%15[a-z]/%llu", kind, &n) == 2)
    return serve_compressed(fd, kind, n);
  if (strcmp(p, "/echo-ae") == 0) {
    char h[300];
    const char *v = rq->accept_encoding[0] ? rq->accept_encoding : "(none)";
    snprintf(h, sizeof h, "HTTP/1.1 200 OK\r\nContent-Length: %zu\r\n\r\n%s", strlen(v), v);
    return send_str(fd, h);
  }
  if (strcmp(p, "/busy") == 0)
    return send_str(fd, "HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\n"
                        "Content-Length: 4\r\n\r\nbusy");
  if (strcmp(p, "/redirect/rel") == 0)
    return send_str(fd, "HTTP/1.1 302 Found\r\nLocation: ../file/1000\r\nContent-Length: 0\r\n\r\n");
  if (strcmp(p, "/redirect/abs") == 0) {
    char h[200];
    snprintf(h, sizeof h,
             "HTTP/1.1 301 Moved\r\nLocation: http://127.0.0.1:%u/file/2000\r\n"
             "Content-Length: 5\r\n\r\nmoved",
             server_port);
    return send_str(fd, h);
  }
  if (strcmp(p, "/redirect/loop") == 0)
    return send_str(fd, "HTTP/1.1 302 Found\r\nLocation: /redirect/loop\r\nContent-Length: 0\r\n\r\n");
  return send_str(fd, "HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\n\r\nnot found");
}

static void *conn_main(void *arg)
{
  int fd = (int)(intptr_t)arg;
  struct timeval tv = {5, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  char *buf = malloc(16384);
  size_t have = 0;
  request rq;
  bool open = buf != NULL;
  /* A TLS ClientHello (record type 22): answer in plain HTTP, as a server
   * without TLS on the port would, so https clients fail fast. */
  char first;
  if (open && recv(fd, &first, 1, MSG_PEEK) == 1 && first == 0x16) {
    send_str(fd, "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n");
    open = false;
  }
  while (open && !atomic_load(&stopping) && read_request(fd, buf, 16384, &have, &rq)) {
    if (!route(fd, &rq)) {
      if (strncmp(rq.path, "/reset/", 7) == 0)
        fd = -1; /* closed with RST already */
      break;
    }
  }
  if (fd >= 0)
    close(fd);
  free(buf);
  atomic_fetch_sub(&live_threads, 1);
  return NULL;
}

static void *accept_main(void *arg)
{
  (void)arg;
  for (;;) {
    int fd = accept(listen_fd, NULL, NULL);
    if (fd < 0) {
      if (atomic_load(&stopping))
        break;
      if (errno == EINTR || errno == ECONNABORTED)
        continue;
      break;
    }
    pthread_t t;
    atomic_fetch_add(&live_threads, 1);
    if (pthread_create(&t, NULL, conn_main, (void *)(intptr_t)fd) != 0) {
      atomic_fetch_sub(&live_threads, 1);
      close(fd);
      continue;
    }
    pthread_detach(t);
  }
  return NULL;
}

int t_httpbad_start(uint16_t *port)
{
  listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (listen_fd < 0)
    return -errno;
  int one = 1;
  setsockopt(listen_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t alen = sizeof a;
  if (bind(listen_fd, (struct sockaddr *)&a, sizeof a) < 0 || listen(listen_fd, 512) < 0 ||
      getsockname(listen_fd, (struct sockaddr *)&a, &alen) < 0) {
    int e = -errno;
    close(listen_fd);
    return e;
  }
  server_port = ntohs(a.sin_port);
  *port = server_port;
  atomic_store(&stopping, false);
  if (pthread_create(&accept_thread, NULL, accept_main, NULL) != 0) {
    close(listen_fd);
    return -EAGAIN;
  }
  return 0;
}

void t_httpbad_stop(void)
{
  atomic_store(&stopping, true);
  shutdown(listen_fd, SHUT_RDWR);
  pthread_join(accept_thread, NULL);
  close(listen_fd);
  /* Connection threads end within their receive timeout (5 s) or nap. */
  for (int i = 0; i < 600 && atomic_load(&live_threads) > 0; i++) {
    struct timespec ts = {0, 10 * 1000000L};
    nanosleep(&ts, NULL);
  }
}
