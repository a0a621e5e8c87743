/* fault/fault.h: fault injection (SQLite's test_malloc and aSyscall[] in the
 * manner of this library): the table of injection points, the one-line hook
 * macros the seams in the other layers use, and the small API the tests
 * drive them with. Not installed, not public: tests include it by path.
 *
 * Without -Dfault_injection=true (AK_FAULT_INJECTION undefined) every hook
 * macro is the plain expression it wraps, or nothing: the release library
 * has no trace of this file. With it, fault.c owns the table; a point fires
 * on its Nth hit (once), or on each hit with a probability drawn from a seed,
 * so a failing run replays with the same AK_FAULT_* settings.
 *
 * The points (docs/fault-injection.md has the table with each one's seam and
 * what the caller sees):
 *   op_res     an op's result (ring CQE, epoll attempt or pool run) replaced
 *              by an errno (default -EIO); a created fd is closed first
 *   op_short   a read/write/recv/send SQE's length halved before submission,
 *              so the kernel's own result is short (ring only)
 *   ep_wait    the epoll backend's first attempt says "not ready" (a
 *              spurious EAGAIN): the op waits for readiness instead
 *   submit     io_uring_submit / io_uring_enter fails (EAGAIN, EBUSY or
 *              EINTR, in turn by hit number) without entering
 *   sqe        io_uring_get_sqe finds no free SQE
 *   alloc      ak__malloc / ak__calloc / ak__realloc return NULL
 *   pool_task  a pool task's result replaced by an errno (default -EIO)
 *   tls_read   the TLS engine's read step fails (default AK_ETLSPROTOCOL)
 *   tls_write  the TLS engine's write step fails (default AK_ETLSPROTOCOL)
 *   resolve    getaddrinfo fails with EAI_AGAIN (the future: AK_ERESOLVE) */
#ifndef AK_FAULT_FAULT_H
#define AK_FAULT_FAULT_H

#include <stddef.h>
#include <stdint.h>

#include "asynckit/api.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum ak_fault_point {
  AK_FAULT_OP_RES,
  AK_FAULT_OP_SHORT,
  AK_FAULT_EP_WAIT,
  AK_FAULT_SUBMIT,
  AK_FAULT_SQE,
  AK_FAULT_ALLOC,
  AK_FAULT_POOL_TASK,
  AK_FAULT_TLS_READ,
  AK_FAULT_TLS_WRITE,
  AK_FAULT_RESOLVE,
  AK_FAULT_NPOINTS
} ak_fault_point;

#ifdef AK_FAULT_INJECTION

/* ---- The test API (exported only from a fault-injection build) ---------- */

/* Disarms every point and zeroes its counters; the op kind filter goes. */
AK_API void ak_fault_reset(void);
/* Point p fires on its nth hit from now (n >= 1), once, with err (0: the
 * point's default). Counters restart. Returns 0, or -EINVAL. */
AK_API int ak_fault_nth(ak_fault_point p, uint64_t n, int err);
/* Every point whose bit is in mask fires on each hit with probability
 * rate (0..1), decided by a hash of (seed, point, hit number): the same
 * seed and the same order of hits fire the same faults. Counters restart. */
AK_API int ak_fault_random(uint64_t seed, double rate, uint32_t mask);
/* op_res counts only ops of this kind (enum ak_op_kind; -1: every kind). */
AK_API void ak_fault_op_kind(int kind);
/* While paused (a per-process count) no point counts or fires: a test's own
 * checks between runs are not faulted. */
AK_API void ak_fault_pause(void);
AK_API void ak_fault_resume(void);
/* Hits and firings of p since it was last armed or reset. */
AK_API uint64_t ak_fault_hits(ak_fault_point p);
AK_API uint64_t ak_fault_fired(ak_fault_point p);
/* The first firings since the points were armed, as "point#hit ..." (at
 * most 8, then "..."), into buf (NUL-terminated, cut to len): what a
 * failing run's report names. Returns the length written. */
AK_API size_t ak_fault_firings(char *buf, size_t len);
/* "op_res", ...; and back (-1 when unknown). */
AK_API const char *ak_fault_point_name(ak_fault_point p);
AK_API int ak_fault_point_by_name(const char *name);

/* ---- For the hooks ------------------------------------------------------- */

/* A hit of p: 0, or the (negative) error to inject. */
int ak__fault_hit(ak_fault_point p);
/* The op_res point for an op of kind with result res: res, or the error. */
int ak__fault_op_res(int kind, int res);
/* The op_short point: shortens sqe's length when it is a plain transfer. */
struct io_uring_sqe;
void ak__fault_short_sqe(struct io_uring_sqe *sqe);

/* call, unless p fires: then the error, without making the call. */
#define AK_FAULT_CALL(p, call)                                                                     \
  __extension__({                                                                                  \
    __typeof__(call) ak__fault_v;                                                                  \
    int ak__fault_e = ak__fault_hit(p);                                                            \
    if (ak__fault_e)                                                                               \
      ak__fault_v = (__typeof__(call))ak__fault_e;                                                 \
    else                                                                                           \
      ak__fault_v = (call);                                                                        \
    ak__fault_v;                                                                                   \
  })
/* A raw syscall: -1 with errno set when p fires, without the call. */
#define AK_FAULT_SYSCALL(p, call)                                                                  \
  __extension__({                                                                                  \
    long ak__fault_r;                                                                              \
    int ak__fault_e = ak__fault_hit(p);                                                            \
    if (ak__fault_e) {                                                                             \
      errno = -ak__fault_e;                                                                        \
      ak__fault_r = -1;                                                                            \
    } else {                                                                                       \
      ak__fault_r = (call);                                                                        \
    }                                                                                              \
    ak__fault_r;                                                                                   \
  })
/* A pointer-returning call that yields NULL when p fires. */
#define AK_FAULT_NULL(p, call) (ak__fault_hit(p) ? NULL : (call))
/* op_done's seam: res replaced; a resource the kernel made is discarded by
 * the op's own discard, as for a cancelled create. */
#define AK_FAULT_OP_RES(op, res)                                                                   \
  do {                                                                                             \
    int ak__fault_r = ak__fault_op_res((op)->kind, (res));                                         \
    if (ak__fault_r != (res)) {                                                                    \
      if ((res) >= 0 && ((op)->flags & AK__OPF_CREATES) && (op)->discard)                          \
        (op)->discard((op), (res));                                                                \
      (res) = ak__fault_r;                                                                         \
    }                                                                                              \
  } while (0)
#define AK_FAULT_SHORT_SQE(sqe) ak__fault_short_sqe(sqe)
/* The epoll backend's first attempt of op: "not ready" when ep_wait fires
 * (only for ops that may wait for readiness). */
#define AK_FAULT_EP_ATTEMPT(op, call)                                                              \
  ((!((op)->ep_dir & AK__EP_NOW) && ak__fault_hit(AK_FAULT_EP_WAIT)) ? AK__OP_TRY_WAIT : (call))
/* A pool task's result: replaced by the error when pool_task fires (not a
 * future it adopts, not an error it already returned). */
#define AK_FAULT_POOL_RESULT(ret)                                                                  \
  do {                                                                                             \
    if ((ret) >= 0) {                                                                              \
      int ak__fault_e = ak__fault_hit(AK_FAULT_POOL_TASK);                                         \
      if (ak__fault_e)                                                                             \
        (ret) = ak__fault_e;                                                                       \
    }                                                                                              \
  } while (0)

#else /* !AK_FAULT_INJECTION: every hook is what it wraps, or nothing. */

#define AK_FAULT_CALL(p, call) (call)
#define AK_FAULT_SYSCALL(p, call) (call)
#define AK_FAULT_NULL(p, call) (call)
#define AK_FAULT_OP_RES(op, res) ((void)0)
#define AK_FAULT_SHORT_SQE(sqe) ((void)0)
#define AK_FAULT_EP_ATTEMPT(op, call) (call)
#define AK_FAULT_POOL_RESULT(ret) ((void)0)

#endif

#ifdef __cplusplus
}
#endif

#endif
