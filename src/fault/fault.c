/* fault.c: the fault-injection point table (built only with
 * -Dfault_injection=true). Owns each point's counters and arming, the
 * Nth-hit and seeded-probability decisions, the AK_FAULT_* environment (read
 * once, so the tools run as child processes can be faulted) and the exit
 * report a driver reads back. The seams themselves are one-line macros in
 * the other layers (fault/fault.h). */
#include <errno.h>
#include <execinfo.h>
#include <liburing.h>
#include <netdb.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "asynckit.h"
#include "fault/fault.h"

typedef struct fault_point {
  _Atomic uint64_t hits;  /* hits since armed (or reset) */
  _Atomic uint64_t fired; /* how many of them fired */
  _Atomic uint64_t nth;   /* fire on this hit (0: not armed by count) */
  _Atomic int err;        /* the error injected (0: the point's default) */
  _Atomic int random;     /* fires by probability (ak_fault_random) */
} fault_point;

static const char *const point_names[AK_FAULT_NPOINTS] = {
    "op_res", "op_short", "ep_wait", "submit",    "sqe",
    "alloc",  "pool_task", "tls_read", "tls_write", "resolve",
};

static fault_point points[AK_FAULT_NPOINTS];
static _Atomic uint64_t random_seed;
static _Atomic uint64_t random_threshold; /* fires when hash < threshold */
static _Atomic int op_kind_filter = -1;
static _Atomic int paused;
static _Atomic int verbose; /* AK_FAULT_VERBOSE: a line on stderr per firing */
static pthread_once_t env_once = PTHREAD_ONCE_INIT;

/* The first firings since the points were armed: which (point, hit) a
 * failing random run had, for its report (ak_fault_firings). */
enum { FIRED_LOG = 8 };
static struct {
  _Atomic int point;
  _Atomic uint64_t hit;
} fired_log[FIRED_LOG];
static _Atomic unsigned fired_logged;

/* The error a point injects when armed without one. */
static int default_err(ak_fault_point p, uint64_t hit) {
  switch (p) {
  case AK_FAULT_SUBMIT: {
    /* The three errors io_uring_enter gives for a submission it did not
     * take: each in turn, so a random run sees all of them. */
    static const int submit_errs[3] = {-EAGAIN, -EBUSY, -EINTR};
    return submit_errs[hit % 3];
  }
  case AK_FAULT_ALLOC:
    return -ENOMEM;
  case AK_FAULT_SQE:
  case AK_FAULT_OP_SHORT:
  case AK_FAULT_EP_WAIT:
    return -EAGAIN; /* only "fired" matters for these */
  case AK_FAULT_TLS_READ:
  case AK_FAULT_TLS_WRITE:
    return AK_ETLSPROTOCOL;
  case AK_FAULT_RESOLVE:
    return EAI_AGAIN; /* getaddrinfo's own code (negative in glibc) */
  default:
    return -EIO;
  }
}

/* splitmix64: the firing decision of a random run is a pure function of
 * (seed, point, hit number), so a replay does not depend on which thread
 * drew first from a shared generator. */
static uint64_t mix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

static void restart_counters(void) {
  atomic_store(&fired_logged, 0);
  for (int i = 0; i < AK_FAULT_NPOINTS; i++) {
    atomic_store(&points[i].hits, 0);
    atomic_store(&points[i].fired, 0);
  }
}

static void disarm_all(void) {
  for (int i = 0; i < AK_FAULT_NPOINTS; i++) {
    atomic_store(&points[i].nth, 0);
    atomic_store(&points[i].err, 0);
    atomic_store(&points[i].random, 0);
  }
  atomic_store(&random_threshold, 0);
  atomic_store(&op_kind_filter, -1);
}

/* Arming without init(): read_env runs inside the pthread_once itself. */
static int arm_nth(ak_fault_point p, uint64_t n, int err) {
  if ((unsigned)p >= AK_FAULT_NPOINTS || n == 0)
    return -EINVAL;
  restart_counters();
  atomic_store(&points[p].err, err);
  atomic_store(&points[p].nth, n);
  return 0;
}

static int arm_random(uint64_t seed, double rate, uint32_t mask) {
  if (!(rate >= 0.0 && rate <= 1.0))
    return -EINVAL;
  restart_counters();
  atomic_store(&random_seed, seed);
  atomic_store(&random_threshold, rate >= 1.0 ? UINT64_MAX : (uint64_t)(rate * 18446744073709551615.0));
  for (int i = 0; i < AK_FAULT_NPOINTS; i++)
    atomic_store(&points[i].random, (mask >> i) & 1u);
  return 0;
}

/* AK_FAULT_REPORT=FILE: at exit, one line per point with hits and firings,
 * appended, so a driver running a tool learns whether the Nth hit came. */
static void write_report(void) {
  const char *path = getenv("AK_FAULT_REPORT");
  if (!path || !*path)
    return;
  FILE *out = fopen(path, "a");
  if (!out)
    return;
  for (int i = 0; i < AK_FAULT_NPOINTS; i++)
    fprintf(out, "%s hits=%llu fired=%llu\n", point_names[i],
            (unsigned long long)atomic_load(&points[i].hits),
            (unsigned long long)atomic_load(&points[i].fired));
  fclose(out);
}

static uint32_t parse_mask(const char *list) {
  if (!list || !*list || strcmp(list, "all") == 0)
    return (1u << AK_FAULT_NPOINTS) - 1;
  uint32_t mask = 0;
  char buf[256];
  snprintf(buf, sizeof(buf), "%s", list);
  for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
    int p = ak_fault_point_by_name(tok);
    if (p >= 0)
      mask |= 1u << p;
  }
  return mask;
}

/* The environment a driver sets for a child process:
 *   AK_FAULT_POINT=name AK_FAULT_N=n [AK_FAULT_ERR=errno]   the Nth hit
 *   AK_FAULT_SEED=s AK_FAULT_RATE=r [AK_FAULT_POINTS=a,b]   random mode
 *   AK_FAULT_OP_KIND=k, AK_FAULT_REPORT=FILE, AK_FAULT_VERBOSE=1 (2: and a backtrace) */
static void read_env(void) {
  const char *v = getenv("AK_FAULT_VERBOSE");
  atomic_store(&verbose, v && *v ? atoi(v) : 0);
  const char *name = getenv("AK_FAULT_POINT");
  const char *n = getenv("AK_FAULT_N");
  if (name && n) {
    int p = ak_fault_point_by_name(name);
    const char *e = getenv("AK_FAULT_ERR");
    if (p >= 0)
      arm_nth((ak_fault_point)p, strtoull(n, NULL, 10), e ? -abs(atoi(e)) : 0);
  }
  const char *seed = getenv("AK_FAULT_SEED");
  const char *rate = getenv("AK_FAULT_RATE");
  if (seed && rate)
    arm_random(strtoull(seed, NULL, 0), strtod(rate, NULL), parse_mask(getenv("AK_FAULT_POINTS")));
  const char *kind = getenv("AK_FAULT_OP_KIND");
  if (kind)
    atomic_store(&op_kind_filter, atoi(kind));
  if (getenv("AK_FAULT_REPORT"))
    atexit(write_report);
}

static inline void init(void) { pthread_once(&env_once, read_env); }

/* ---- The API ---------------------------------------------------------------- */

void ak_fault_reset(void) {
  init();
  disarm_all();
  restart_counters();
}

int ak_fault_nth(ak_fault_point p, uint64_t n, int err) {
  init();
  return arm_nth(p, n, err);
}

int ak_fault_random(uint64_t seed, double rate, uint32_t mask) {
  init();
  return arm_random(seed, rate, mask);
}

void ak_fault_op_kind(int kind) {
  init();
  atomic_store(&op_kind_filter, kind);
}

void ak_fault_pause(void) { atomic_fetch_add(&paused, 1); }
void ak_fault_resume(void) { atomic_fetch_sub(&paused, 1); }

uint64_t ak_fault_hits(ak_fault_point p) {
  return (unsigned)p < AK_FAULT_NPOINTS ? atomic_load(&points[p].hits) : 0;
}

uint64_t ak_fault_fired(ak_fault_point p) {
  return (unsigned)p < AK_FAULT_NPOINTS ? atomic_load(&points[p].fired) : 0;
}

size_t ak_fault_firings(char *buf, size_t len) {
  size_t used = 0;
  unsigned n = atomic_load(&fired_logged);
  if (len)
    buf[0] = '\0';
  for (unsigned k = 0; k < n && k < FIRED_LOG && used < len; k++) {
    int w = snprintf(buf + used, len - used, "%s%s#%llu", k ? " " : "",
                     point_names[atomic_load(&fired_log[k].point)],
                     (unsigned long long)atomic_load(&fired_log[k].hit));
    if (w < 0)
      break;
    used += (size_t)w;
  }
  if (n > FIRED_LOG && used < len)
    used += (size_t)snprintf(buf + used, len - used, " ...");
  return used < len ? used : len;
}

const char *ak_fault_point_name(ak_fault_point p) {
  return (unsigned)p < AK_FAULT_NPOINTS ? point_names[p] : "?";
}

int ak_fault_point_by_name(const char *name) {
  for (int i = 0; i < AK_FAULT_NPOINTS; i++)
    if (name && strcmp(name, point_names[i]) == 0)
      return i;
  return -1;
}

/* ---- The hooks ---------------------------------------------------------------- */

int ak__fault_hit(ak_fault_point p) {
  init();
  if (atomic_load_explicit(&paused, memory_order_relaxed))
    return 0;
  fault_point *pt = &points[p];
  uint64_t hit = atomic_fetch_add(&pt->hits, 1) + 1;
  uint64_t nth = atomic_load_explicit(&pt->nth, memory_order_relaxed);
  bool fire = nth != 0 && hit == nth;
  if (!fire && atomic_load_explicit(&pt->random, memory_order_relaxed)) {
    uint64_t h = mix(atomic_load(&random_seed) ^ mix(((uint64_t)p << 56) ^ hit));
    fire = h < atomic_load(&random_threshold);
  }
  if (!fire)
    return 0;
  atomic_fetch_add(&pt->fired, 1);
  unsigned k = atomic_fetch_add(&fired_logged, 1);
  if (k < FIRED_LOG) {
    atomic_store(&fired_log[k].point, (int)p);
    atomic_store(&fired_log[k].hit, hit);
  }
  int err = atomic_load(&pt->err);
  if (err == 0)
    err = default_err(p, hit);
  int v = atomic_load_explicit(&verbose, memory_order_relaxed);
  if (v) {
    fprintf(stderr, "ak_fault: %s fired at hit %llu (%d)\n", point_names[p],
            (unsigned long long)hit, err);
    if (v > 1) { /* AK_FAULT_VERBOSE=2: where (build with -rdynamic or use addr2line) */
      void *frames[16];
      backtrace_symbols_fd(frames, backtrace(frames, 16), 2);
    }
  }
  return err;
}

int ak__fault_op_res(int kind, int res) {
  int filter = atomic_load_explicit(&op_kind_filter, memory_order_relaxed);
  if (filter >= 0 && kind != filter)
    return res;
  int err = ak__fault_hit(AK_FAULT_OP_RES);
  return err ? err : res;
}

/* Plain transfers only: a vectored op's len counts iovecs, and a provided
 * buffer's length belongs to the buffer ring. */
void ak__fault_short_sqe(struct io_uring_sqe *sqe) {
  switch (sqe->opcode) {
  case IORING_OP_READ:
  case IORING_OP_WRITE:
  case IORING_OP_READ_FIXED:
  case IORING_OP_WRITE_FIXED:
  case IORING_OP_RECV:
  case IORING_OP_SEND:
    break;
  default:
    return;
  }
  if (sqe->len < 2 || (sqe->flags & IOSQE_BUFFER_SELECT))
    return;
  if (ak__fault_hit(AK_FAULT_OP_SHORT))
    sqe->len /= 2;
}
