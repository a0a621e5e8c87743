/* mirror_floor.c: akbench-mirror-floor, the least a client can do in
 * akbench mirror's second run, as a reference row beside akget and wget2.
 *
 * What any -N client must do per file is here and nothing else: look at
 * the local copy (its mtime by fstatat, its ETag from the user.akget.etag
 * xattr akget wrote), write a conditional HEAD (If-Modified-Since, and
 * If-None-Match when there is an ETag), read the answer's head. No URL
 * list to read or parse, no names to derive, no library, no threads, no
 * timers beyond the wait's bound, no retries: a sliding window of requests
 * over kept-alive connections on one epoll, a new request written for each
 * answer read (its window of N/CONNS requests per connection pipelined when
 * more than one). The run is a process of its own, exec and exit
 * included, as the tools' runs are; its libc is the only library mapped.
 *
 *   akbench-mirror-floor PORT DIR PREFIX N [CONNS]
 *
 * asks http://127.0.0.1:PORT/PREFIX/NAME for every regular file NAME of
 * DIR (in name order), N requests outstanding at most, over CONNS
 * connections (default: one per 8 of N, rounded up: the fastest layout
 * at N = 5 and N = 32 with this client's first draft, docs/akget.md
 * MIRRORS). Exit 0 when every answer is a 304 (the file unchanged); 1 when
 * one is not (the file and its status named), a connection fails or closes
 * with requests unanswered, or no answer comes for 10 s; 2 for bad
 * arguments or a DIR that cannot be read. On success one line on stdout: the answers, the
 * wall time from the first connect and the CPU time of the whole process.
 * AKBENCH_FLOOR_WAIT_MS replaces the 10 s (its test's silent server).
 *
 * Not a lower bound proven: a measured floor, what a client with none of
 * a downloader's work does on this server and machine. wget2's time
 * divided by this one is the largest ratio the run shows any client
 * reaching. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

enum {
  WINDOW_MAX = 32, /* requests outstanding on one connection */
  CONNS_MAX = 64,
  ANSWER_WAIT_MS = 10000, /* the longest wait for any answer (default) */
  HEAD_MAX = 16 * 1024,   /* an answer's head longer than this is refused */
  REQUEST_MAX = 1024,     /* PREFIX and a name fit, or the file is refused */
};

typedef struct conn {
  int fd;
  size_t window;            /* requests it keeps outstanding */
  size_t asked[WINDOW_MAX]; /* the files outstanding, oldest first (a ring) */
  size_t first, outstanding;
  char in[HEAD_MAX];
  size_t in_len;
} conn;

typedef struct run {
  int dirfd, port;
  const char *dir, *prefix;
  char **names;
  size_t count, next, answered;
} run;

#ifndef SYS_getxattrat
#define SYS_getxattrat 464 /* Linux 6.13; every architecture's number */
#endif

struct xattr_args_v0 {
  uint64_t value;
  uint32_t size;
  uint32_t flags;
};

/* The file's ETag as akget keeps it, or 0 bytes. getxattrat (6.13+) looks
 * it up relative to DIR as the stat does; before it, by the whole path. */
static ssize_t etag_of(const run *r, const char *name, char *out, size_t cap)
{
  static int have_at = 1;
  if (have_at) {
    struct xattr_args_v0 a = {.value = (uint64_t)(uintptr_t)out, .size = (uint32_t)cap};
    long n = syscall(SYS_getxattrat, r->dirfd, name, 0, "user.akget.etag", &a, sizeof a);
    if (n >= 0 || errno != ENOSYS)
      return n < 0 ? 0 : n;
    have_at = 0;
  }
  char path[4096 + 256];
  snprintf(path, sizeof path, "%s/%s", r->dir, name);
  ssize_t n = getxattr(path, "user.akget.etag", out, cap);
  return n < 0 ? 0 : n;
}

/* Appends file i's conditional HEAD to buf; its length. */
static size_t put_request(const run *r, size_t i, char *buf)
{
  static const char days[7][4] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
  static const char months[12][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                     "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  const char *name = r->names[i];
  struct stat st;
  if (fstatat(r->dirfd, name, &st, 0) < 0) {
    fprintf(stderr, "akbench-mirror-floor: %s/%s: %s\n", r->dir, name, strerror(errno));
    exit(1);
  }
  struct tm tm;
  gmtime_r(&st.st_mtime, &tm);
  char etag[256];
  ssize_t elen = etag_of(r, name, etag, sizeof etag - 1);
  int n = snprintf(buf, REQUEST_MAX,
                   "HEAD %s/%s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
                   "If-Modified-Since: %s, %02d %s %d %02d:%02d:%02d GMT\r\n",
                   r->prefix, name, r->port, days[tm.tm_wday], tm.tm_mday, months[tm.tm_mon],
                   tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
  if (elen > 0 && n > 0 && (size_t)n + (size_t)elen + 24 < REQUEST_MAX)
    n += snprintf(buf + n, REQUEST_MAX - (size_t)n, "If-None-Match: %.*s\r\n", (int)elen, etag);
  if (n <= 0 || (size_t)n + 3 > REQUEST_MAX) {
    fprintf(stderr, "akbench-mirror-floor: %s: request too long\n", name);
    exit(2);
  }
  memcpy(buf + n, "\r\n", 2);
  return (size_t)n + 2;
}

/* Tops c's window up: the next files' requests in one write. */
static void ask_more(run *r, conn *c)
{
  char buf[WINDOW_MAX * REQUEST_MAX];
  size_t len = 0;
  while (c->outstanding < c->window && r->next < r->count) {
    c->asked[(c->first + c->outstanding) % WINDOW_MAX] = r->next;
    c->outstanding++;
    len += put_request(r, r->next++, buf + len);
  }
  for (size_t at = 0; at < len;) { /* short writes are normal */
    ssize_t n = send(c->fd, buf + at, len - at, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0) {
      fprintf(stderr, "akbench-mirror-floor: send: %s\n", n < 0 ? strerror(errno) : "nothing sent");
      exit(1);
    }
    at += (size_t)n;
  }
}

/* Takes the whole answer heads out of c's bytes, each the answer to the
 * oldest outstanding request (HEAD: no body follows). */
static void take_answers(run *r, conn *c)
{
  char *p = c->in, *end = c->in + c->in_len, *blank;
  while ((blank = memmem(p, (size_t)(end - p), "\r\n\r\n", 4))) {
    if (c->outstanding == 0) {
      fprintf(stderr, "akbench-mirror-floor: an answer nobody asked for\n");
      exit(1);
    }
    size_t file = c->asked[c->first];
    c->first = (c->first + 1) % WINDOW_MAX;
    c->outstanding--;
    if (end - p < 12 || memcmp(p, "HTTP/1.1 304", 12) != 0) {
      char *eol = memchr(p, '\r', (size_t)(end - p));
      fprintf(stderr, "akbench-mirror-floor: %s: answered \"%.*s\", not 304\n", r->names[file],
              (int)((eol ? eol : end) - p), p);
      exit(1);
    }
    r->answered++;
    p = blank + 4;
  }
  c->in_len = (size_t)(end - p);
  memmove(c->in, p, c->in_len);
  if (c->in_len == sizeof c->in) {
    fprintf(stderr, "akbench-mirror-floor: an answer's head over %d bytes\n", HEAD_MAX);
    exit(1);
  }
}

static int cmp_names(const void *a, const void *b)
{
  return strcmp(*(char *const *)a, *(char *const *)b);
}

/* DIR's regular files, sorted. */
static int read_names(run *r)
{
  DIR *d = opendir(r->dir);
  if (!d)
    return -1;
  size_t cap = 1024;
  r->names = malloc(cap * sizeof *r->names);
  if (!r->names)
    goto no_memory;
  struct dirent *e;
  while ((e = readdir(d))) {
    if (e->d_type != DT_REG && e->d_type != DT_UNKNOWN)
      continue;
    if (e->d_type == DT_UNKNOWN) {
      struct stat st;
      if (fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISREG(st.st_mode))
        continue;
    }
    if (r->count == cap) {
      char **more = realloc(r->names, 2 * cap * sizeof *more);
      if (!more)
        goto no_memory;
      r->names = more;
      cap *= 2;
    }
    if (!(r->names[r->count] = strdup(e->d_name)))
      goto no_memory;
    r->count++;
  }
  closedir(d);
  qsort(r->names, r->count, sizeof *r->names, cmp_names);
  return 0;
no_memory: /* no file may be left out of the run */
  closedir(d);
  while (r->count)
    free(r->names[--r->count]);
  free(r->names);
  r->names = NULL;
  errno = ENOMEM;
  return -1;
}

static double now_s(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static long whole_number(const char *s, long lo, long hi)
{
  char *end;
  errno = 0;
  long v = strtol(s, &end, 10);
  return errno || end == s || *end || v < lo || v > hi ? -1 : v;
}

int main(int argc, char **argv)
{
  if (argc < 5 || argc > 6) {
    fprintf(stderr, "usage: akbench-mirror-floor PORT DIR PREFIX N [CONNS]\n");
    return 2;
  }
  /* Static: what it holds stays reachable to the end, whichever way the
   * run ends (LeakSanitizer in the asan build). */
  static run r;
  static conn *cs;
  r.dir = argv[2];
  r.prefix = argv[3];
  long port = whole_number(argv[1], 1, 65535), n = whole_number(argv[4], 1, WINDOW_MAX * CONNS_MAX);
  long nconns = argc == 6 ? whole_number(argv[5], 1, CONNS_MAX) : (n + 7) / 8;
  if (port < 0 || n < 0 || nconns < 0 || (n + nconns - 1) / nconns > WINDOW_MAX || nconns > n) {
    fprintf(stderr,
            "akbench-mirror-floor: PORT 1-65535, N 1-%d, CONNS 1-%d and at most N, at "
            "most %d requests a connection\n",
            WINDOW_MAX * CONNS_MAX, CONNS_MAX, WINDOW_MAX);
    return 2;
  }
  r.port = (int)port;
  r.dirfd = open(r.dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (r.dirfd < 0 || read_names(&r) < 0) {
    fprintf(stderr, "akbench-mirror-floor: %s: %s\n", r.dir, strerror(errno));
    return 2;
  }
  if (r.count == 0) {
    fprintf(stderr, "akbench-mirror-floor: %s: no files to ask for\n", r.dir);
    return 2;
  }
  long wait_ms = ANSWER_WAIT_MS;
  const char *w = getenv("AKBENCH_FLOOR_WAIT_MS");
  if (w && (wait_ms = whole_number(w, 1, 3600 * 1000)) < 0) {
    fprintf(stderr, "akbench-mirror-floor: AKBENCH_FLOOR_WAIT_MS: 1-3600000\n");
    return 2;
  }
  double t0 = now_s();
  int ep = epoll_create1(EPOLL_CLOEXEC);
  cs = calloc((size_t)nconns, sizeof *cs);
  if (ep < 0 || !cs) {
    perror("akbench-mirror-floor");
    return 1;
  }
  for (long i = 0; i < nconns; i++) {
    conn *c = &cs[i];
    c->window = (size_t)(n / nconns + (i < n % nconns));
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int one = 1;
    if (c->fd < 0 || connect(c->fd, (struct sockaddr *)&a, sizeof a) < 0) {
      fprintf(stderr, "akbench-mirror-floor: connect 127.0.0.1:%ld: %s\n", port, strerror(errno));
      return 1;
    }
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
    if (epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev) < 0) {
      perror("akbench-mirror-floor: epoll_ctl");
      return 1;
    }
    ask_more(&r, c);
  }
  while (r.answered < r.count) {
    struct epoll_event evs[CONNS_MAX];
    int ready = epoll_wait(ep, evs, CONNS_MAX, (int)wait_ms);
    if (ready < 0 && errno == EINTR)
      continue;
    if (ready <= 0) {
      if (ready == 0)
        fprintf(stderr, "akbench-mirror-floor: no answer for %ld ms after %zu of %zu answers\n",
                wait_ms, r.answered, r.count);
      else
        perror("akbench-mirror-floor: epoll_wait");
      return 1;
    }
    for (int k = 0; k < ready; k++) {
      conn *c = evs[k].data.ptr;
      ssize_t got = recv(c->fd, c->in + c->in_len, sizeof c->in - c->in_len, 0);
      if (got < 0 && errno == EINTR)
        continue;
      if (got <= 0) {
        fprintf(stderr, "akbench-mirror-floor: the server %s with %zu requests unanswered\n",
                got < 0 ? strerror(errno) : "closed a connection", c->outstanding);
        return 1;
      }
      c->in_len += (size_t)got;
      take_answers(&r, c);
      ask_more(&r, c);
    }
  }
  double wall = now_s() - t0;
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  printf("%zu answers, all 304, %.2f ms, CPU %.2f ms (the process's)\n", r.answered, wall * 1e3,
         (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1e3 +
             (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e3);
  return 0;
}
