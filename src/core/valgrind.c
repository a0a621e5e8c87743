/* valgrind.c: what the loop does differently when it runs under valgrind,
 * which knows nothing of io_uring. It owns two things, both idle unless
 * valgrind is there (RUNNING_ON_VALGRIND, looked up once; without the
 * valgrind headers at build time none of this is compiled in):
 *
 *  - The wait. Valgrind runs one guest thread at a time under its own lock
 *    and lets go of it only around system calls it knows may block.
 *    io_uring_enter is not one of them (valgrind 3.19), so a loop sleeping
 *    in it for a completion held the lock, and a thread that was to wake it
 *    (a pool worker resolving a name, ak_loop_call's caller) never ran:
 *    a hang. Under valgrind the loop submits without waiting, then sleeps in
 *    poll(2) on the ring fd (which valgrind knows blocks), in slices of at
 *    most VG_SLICE_MS so that a wakeup poll cannot see costs a slice, not a
 *    hang, and then enters the ring again only to reap.
 *  - Memory the kernel fills through the ring. Memcheck cannot see the
 *    kernel write a recv's bytes, a statx buffer or an accepted address:
 *    they stay "undefined" to it and every later use is a false report. The
 *    SQE of every op that writes user memory is noted when it is prepared,
 *    and when the op's CQE comes the bytes the kernel says it wrote are
 *    marked defined (VALGRIND_MAKE_MEM_DEFINED), no more: bytes it did not
 *    write stay undefined, so real reads of them are still reported.
 *
 * AK_VALGRIND=0 in the environment turns both off (see ak__vg_init).
 * docs/valgrind.md says what valgrind can and cannot see of io_uring. */
#define _GNU_SOURCE
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>

#include "core/valgrind.h"

#if defined(__has_include)
#if __has_include(<valgrind/memcheck.h>) && __has_include(<valgrind/valgrind.h>)
#include <valgrind/memcheck.h>
#include <valgrind/valgrind.h>
#define AK__HAVE_VALGRIND 1
#endif
#endif

bool ak__vg_running;

#ifndef AK__HAVE_VALGRIND

void ak__vg_init(void) {}
int ak__vg_wait(struct io_uring *ring, int64_t wait_until) {
  (void)ring;
  (void)wait_until;
  return 0; /* NEVER: ak__vg_running is false without valgrind support */
}
void ak__vg_note_sqe(const void *op, const struct io_uring_sqe *sqe) {
  (void)op;
  (void)sqe;
}
void ak__vg_op_cqe(const void *op, int res, unsigned flags) {
  (void)op;
  (void)res;
  (void)flags;
}
void ak__vg_make_defined(const void *p, size_t len) {
  (void)p;
  (void)len;
}

#else

/* AK_VALGRIND=0 keeps the native paths under valgrind: for instruction
 * counts under callgrind (tools/akbench-callgrind sets it), at the price of
 * the hang when another thread must wake a waiting loop. */
static void vg_init_once(void) {
  const char *env = getenv("AK_VALGRIND");
  bool off = env && (strcmp(env, "0") == 0 || strcmp(env, "off") == 0);
  ak__vg_running = RUNNING_ON_VALGRIND != 0 && !off;
}

/* Loops are made on many threads at once (tsan saw two creations write the
 * flag together): the flag is written once, and pthread_once orders that
 * write before every later creation, so a loop reads it as a plain load. */
void ak__vg_init(void) {
  static pthread_once_t once = PTHREAD_ONCE_INIT;
  (void)pthread_once(&once, vg_init_once);
}

void ak__vg_make_defined(const void *p, size_t len) {
  if (p && len)
    (void)VALGRIND_MAKE_MEM_DEFINED(p, len);
}

/* ---- The wait ------------------------------------------------------------ */

enum { VG_SLICE_MS = 10 };

static int slice_ms(int64_t wait_until) {
  if (wait_until == AK_FOREVER)
    return VG_SLICE_MS;
  int64_t left = wait_until - ak_now_ns();
  if (left <= 0)
    return 0;
  int64_t ms = (left + 999999) / 1000000;
  return ms < VG_SLICE_MS ? (int)ms : VG_SLICE_MS;
}

int ak__vg_wait(struct io_uring *ring, int64_t wait_until) {
  int rc = io_uring_submit_and_get_events(ring); /* never blocks */
  if (rc < 0)
    return rc;
  if (io_uring_cq_ready(ring) || io_uring_cq_has_overflow(ring))
    return 0;
  struct pollfd p = {.fd = ring->ring_fd, .events = POLLIN};
  (void)poll(&p, 1, slice_ms(wait_until)); /* EINTR, timeout: reap all the same */
  return io_uring_get_events(ring);
}

/* ---- What the kernel wrote ------------------------------------------------ */

/* An op's SQE as far as it says where the kernel writes. */
typedef struct vg_sqe {
  const void *op;
  struct vg_sqe *next;
  uint64_t addr;
  uint64_t off;
  uint32_t len;
  uint32_t addr_cap; /* accept: *addrlen when submitted */
  uint8_t opcode;
  uint8_t flags;
} vg_sqe;

enum { VG_BUCKETS = 1024 };

/* Ops are prepared and reaped on their loop's thread: a table per thread. */
static __thread vg_sqe *vg_table[VG_BUCKETS];

static vg_sqe **vg_slot(const void *op) {
  uintptr_t h = (uintptr_t)op >> 6;
  vg_sqe **link = &vg_table[(h ^ (h >> 10)) % VG_BUCKETS];
  while (*link && (*link)->op != op)
    link = &(*link)->next;
  return link;
}

static bool writes_user_memory(uint8_t opcode) {
  switch (opcode) {
  case IORING_OP_READ:
  case IORING_OP_READ_FIXED:
  case IORING_OP_RECV:
  case IORING_OP_READV:
  case IORING_OP_RECVMSG:
  case IORING_OP_STATX:
  case IORING_OP_ACCEPT:
    return true;
  default:
    return false;
  }
}

void ak__vg_note_sqe(const void *op, const struct io_uring_sqe *sqe) {
  vg_sqe **link = vg_slot(op);
  if (!writes_user_memory(sqe->opcode) || (sqe->flags & IOSQE_BUFFER_SELECT)) {
    if (*link) { /* a record reused for an op that writes nothing */
      vg_sqe *e = *link;
      *link = e->next;
      free(e);
    }
    return;
  }
  vg_sqe *e = *link;
  if (!e) {
    e = calloc(1, sizeof(*e));
    if (!e)
      return; /* a false report later, nothing worse */
    e->op = op;
    *link = e;
  }
  e->opcode = sqe->opcode;
  e->flags = sqe->flags;
  e->addr = sqe->addr;
  e->off = sqe->off;
  e->len = sqe->len;
  e->addr_cap = 0;
  if (sqe->opcode == IORING_OP_ACCEPT && sqe->off)
    e->addr_cap = *(const socklen_t *)(uintptr_t)sqe->off;
}

/* Marks the first n bytes spread over iov[0..cnt) defined. */
static void define_iov(const struct iovec *iov, size_t cnt, size_t n) {
  for (size_t i = 0; i < cnt && n > 0; i++) {
    size_t k = iov[i].iov_len < n ? iov[i].iov_len : n;
    ak__vg_make_defined(iov[i].iov_base, k);
    n -= k;
  }
}

static void define_written(const vg_sqe *e, int res) {
  void *addr = (void *)(uintptr_t)e->addr;
  switch (e->opcode) {
  case IORING_OP_READ:
  case IORING_OP_READ_FIXED:
  case IORING_OP_RECV:
    ak__vg_make_defined(addr, (size_t)res);
    break;
  case IORING_OP_READV:
    define_iov(addr, e->len, (size_t)res);
    break;
  case IORING_OP_RECVMSG: {
    struct msghdr *m = addr;
    ak__vg_make_defined(&m->msg_namelen, sizeof(m->msg_namelen));
    ak__vg_make_defined(&m->msg_controllen, sizeof(m->msg_controllen));
    ak__vg_make_defined(&m->msg_flags, sizeof(m->msg_flags));
    ak__vg_make_defined(m->msg_name, m->msg_namelen);
    ak__vg_make_defined(m->msg_control, m->msg_controllen);
    define_iov(m->msg_iov, m->msg_iovlen, (size_t)res);
    break;
  }
  case IORING_OP_STATX:
    ak__vg_make_defined((void *)(uintptr_t)e->off, sizeof(struct statx));
    break;
  case IORING_OP_ACCEPT:
    if (e->off) {
      socklen_t *len = (socklen_t *)(uintptr_t)e->off;
      ak__vg_make_defined(len, sizeof(*len));
      ak__vg_make_defined(addr, *len < e->addr_cap ? *len : e->addr_cap);
    }
    break;
  default:
    break;
  }
}

void ak__vg_op_cqe(const void *op, int res, unsigned flags) {
  vg_sqe **link = vg_slot(op);
  vg_sqe *e = *link;
  if (!e)
    return;
  if (res >= 0)
    define_written(e, res);
  if (!(flags & IORING_CQE_F_MORE)) {
    *link = e->next;
    free(e);
  }
}

#endif /* AK__HAVE_VALGRIND */
