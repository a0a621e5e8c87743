/* asynckit/loop.h: the event loop. One loop owns one io_uring ring and
 * belongs to the thread that created it; that thread runs it and submits IO.
 * Other threads hand work in with ak_loop_post() (thread-safe).
 *
 * Not thread-safe unless a comment says so.
 */
#ifndef ASYNCKIT_LOOP_H
#define ASYNCKIT_LOOP_H

#include "api.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "future.h"
#include "pool.h"

#ifdef __cplusplus
extern "C" {
#endif

/* How a loop does its IO (docs/backends.md). */
typedef enum ak_backend {
  AK_BACKEND_AUTO = 0,  /* io_uring where it can be used, else epoll; the
                           environment variable AK_BACKEND=uring|epoll
                           forces one */
  AK_BACKEND_URING = 1, /* io_uring only: ak_loop_new fails where it cannot
                           be used */
  AK_BACKEND_EPOLL = 2, /* epoll for sockets and pipes, the pool for files,
                           names and everything else */
} ak_backend;

typedef struct ak_loop_options {
  unsigned sq_entries; /* submission queue size; 0: 256 */
  unsigned cq_entries; /* completion queue size; 0: 4 x sq_entries (on
                          epoll: how many ops may be in flight at once) */
  unsigned flags;      /* AK_LOOP_* below (ring options; epoll ignores
                          SQPOLL, NO_TASKRUN_OPT and NO_EXT_ARG) */
  ak_pool *pool;       /* runs what the ring cannot; NULL: a shared pool */
  ak_backend backend;  /* 0 (AUTO) unless the caller insists on one */
  unsigned batch_wait_us; /* 0 (default): a blocking wait wakes for the
                          first completion. N: with 8 or more ops in
                          flight, it sleeps until a quarter of them (at
                          most 16) have completed, or until N microseconds
                          have passed and at least one has. Fewer wakeups
                          for streaming loads (many sockets and files
                          busy at once); every completion, and a wakeup
                          from another thread, may wait up to N us.
                          Timers still fire on time. io_uring on Linux
                          6.12+ (ak_features.batch_wait); ignored
                          elsewhere and on epoll. */
} ak_loop_options;

enum {
  AK_LOOP_SQPOLL = 1 << 0,       /* a kernel thread polls the SQ (costs a core) */
  AK_LOOP_NO_TASKRUN_OPT = 1 << 1, /* skip SINGLE_ISSUER / DEFER / COOP_TASKRUN */
  AK_LOOP_FORCE_POOL = 1 << 2,   /* run every op that has a pool path on the
                                    pool (tests the fallback path) */
  AK_LOOP_NO_EXT_ARG = 1 << 3,   /* bound waits with a timeout SQE, as on
                                    kernels before 5.11 (tests that path) */
  AK_LOOP_DRAIN_BARRIERS = 1 << 4, /* a batch's barrier is the kernel's
                                    IOSQE_IO_DRAIN on the op after it: the
                                    batch goes to the ring whole, and that op
                                    starts once everything submitted before it
                                    on the ring (not only the batch's ops) has
                                    completed; the ops after it, once it has.
                                    The ring then never uses
                                    IOSQE_CQE_SKIP_SUCCESS (the kernel refuses
                                    drains on a ring that has): every chain
                                    counts its CQEs. epoll ignores it (its
                                    barriers stay in user space). */
  AK_LOOP_LATENCY_STATS = 1 << 5, /* keep ak_loop_stats.latency: a clock read
                                    per op submitted and per wait that
                                    completed ops (about 50 ns each on a
                                    VM's kvm-clock, 2% of a QD1 4 KiB read);
                                    without it the histogram stays zero */
};

/* Creates a loop owned by the calling thread. opts may be NULL for
 * defaults. The backend: with AK_BACKEND_AUTO (and no AK_BACKEND in the
 * environment) io_uring is tried first, and where it cannot be used
 * (AK_EURINGDISABLED, AK_EURINGBLOCKED, AK_EURINGOLD, AK_ENOURING) the loop
 * runs on epoll instead; ak_loop_features says which and why. Returns 0 and
 * sets *loop, or a negative error: one of those four when io_uring was
 * insisted on (options or AK_BACKEND=uring) and cannot be used (the name
 * says why), -EINVAL for an unknown AK_BACKEND value, -ENOMEM, or the
 * kernel's error. */
AK_API int ak_loop_new(ak_loop **loop, const ak_loop_options *opts);

/* Cancels everything in flight, waits for the kernel to finish with every
 * buffer, runs the callbacks that settling produced, and frees the loop.
 * Pending futures settle CANCELLED. Futures of the loop that the user still
 * holds, if settled (every op's is), may afterwards be inspected, waited on
 * (at once), given callbacks (run at once on the calling thread, as a
 * settled loopless future's) and released; a promise of the loop still
 * pending must not be settled or waited on. The calling thread's current
 * loop becomes its newest loop still live, whatever the order of frees.
 * Must be called on the owning thread, not from a callback. */
AK_API void ak_loop_free(ak_loop *loop);

typedef enum ak_run_mode {
  AK_RUN_DEFAULT = 0, /* until nothing is left to do, or ak_loop_stop */
  AK_RUN_ONCE = 1,    /* one iteration, blocking for at least one event */
  AK_RUN_NOWAIT = 2,  /* one iteration, without blocking */
} ak_run_mode;

/* Runs the loop. Returns the number of things still alive (ops in flight,
 * timers, pool tasks bound to the loop, queued callbacks): 0 means idle.
 * A negative error if the ring fails or the caller does not own the loop. */
AK_API int ak_loop_run(ak_loop *loop, ak_run_mode mode);

/* Makes ak_loop_run return after the current iteration. Thread-safe. */
AK_API void ak_loop_stop(ak_loop *loop);

/* Whether the calling thread owns loop. Thread-safe. */
AK_API bool ak_loop_is_owner(const ak_loop *loop);

/* The loop the calling thread owns (the last one it created that is not
 * freed), or NULL. */
AK_API ak_loop *ak_loop_current(void);

/* Keeps the loop from being idle while a count of holds is > 0 (for work
 * that will arrive through ak_loop_post). */
AK_API void ak_loop_hold(ak_loop *loop);
AK_API void ak_loop_unhold(ak_loop *loop);

/* Runs fn(arg) on the loop's thread at its next iteration, waking it if it
 * sleeps (asyncio's call_soon_threadsafe). Posts from one thread run in the
 * order they were posted. Thread-safe. Returns 0 or -ENOMEM. */
AK_API int ak_loop_post(ak_loop *loop, void (*fn)(void *arg), void *arg);

/* asyncio's run_coroutine_threadsafe: runs fn(arg, self) on the loop's
 * thread at its next iteration and returns its future, from any thread
 * (also how one loop asks another for work). fn follows the pool callable's
 * protocol (pool.h): return a result >= 0, a negative error, or
 * ak_future_adopt(self, op) to settle as an operation it started on the
 * loop does. The future is made like a pool task's: called from a thread
 * that owns a loop, it settles on that loop (which stays alive until it
 * has), else on the target loop's thread. Cancelling it before fn starts
 * settles it CANCELLED and fn never runs. NULL when memory for the future
 * runs out; a future already FAILED with -ENOMEM when only the post's does
 * (fn then never runs). Thread-safe. */
AK_API ak_future *ak_loop_call(ak_loop *loop, ak_work_fn fn, void *arg);

/* The pool the loop runs what the ring cannot do on: the one given in its
 * options, or the process-wide shared pool (created on first use, freed at
 * exit; never pass it to ak_pool_free). asyncio's run_in_executor(None, ..)
 * is ak_pool_submit(ak_loop_pool(loop), fn, arg). Thread-safe. */
AK_API ak_pool *ak_loop_pool(ak_loop *loop);

/* ---- Timers ---------------------------------------------------------------
 * All timers of a loop share one kernel timeout: the wait for completions is
 * bounded by the earliest deadline. Times are CLOCK_MONOTONIC nanoseconds. */

typedef struct ak_timer ak_timer;

/* Runs fn(arg) on the loop's thread after delay_ns. Returns a handle for
 * ak_timer_cancel, or NULL when memory runs out. The handle is valid until fn
 * starts or the timer is cancelled, and not after: fn itself is the place to
 * forget it. Timers with equal deadlines run in creation order. */
AK_API ak_timer *ak_call_later(ak_loop *loop, int64_t delay_ns, void (*fn)(void *arg), void *arg);

/* Cancels a timer whose fn has not started (see ak_call_later for the
 * handle's lifetime). Returns 0. */
AK_API int ak_timer_cancel(ak_loop *loop, ak_timer *timer);

/* A future that settles DONE with result 0 after delay_ns. */
AK_API ak_future *ak_sleep(ak_loop *loop, int64_t delay_ns);

/* CLOCK_MONOTONIC in nanoseconds. Thread-safe. */
AK_API int64_t ak_now_ns(void);

/* ---- The first ring operations -----------------------------------------
 * Each returns a future owned by the loop, or NULL when memory runs out. Must
 * be called on the owning thread (else the future fails with AK_ENOTOWNER). */

/* IORING_OP_NOP: settles DONE with result 0. */
AK_API ak_future *ak_nop(ak_loop *loop);

/* IORING_OP_TIMEOUT: a kernel timeout of its own (ak_sleep shares one);
 * settles DONE with 0 when it expires. */
AK_API ak_future *ak_timeout(ak_loop *loop, int64_t delay_ns);

/* ---- Statistics ---------------------------------------------------------- */

enum { AK_STATS_KINDS = 48, AK_STATS_LATENCY_BUCKETS = 32 };

typedef struct ak_loop_stats {
  uint64_t submitted[AK_STATS_KINDS];      /* ops handed to the ring, by kind */
  uint64_t completed[AK_STATS_KINDS];      /* ops completed, by kind */
  uint64_t fallbacks[AK_STATS_KINDS];      /* ops run on the pool instead */
  uint64_t in_flight;                      /* CQEs the ring still owes us */
  uint64_t queue_waits;                    /* ops that waited for CQ room */
  uint64_t queued_now;                     /* ops waiting for CQ room now */
  uint64_t cq_overflows;                   /* the kernel's overflow count */
  uint64_t submits;                        /* io_uring_enter calls that submitted */
  uint64_t iterations;                     /* loop iterations */
  uint64_t posts;                          /* ak_loop_post calls handled */
  uint64_t timers_fired;
  uint64_t pool_queue_depth;               /* the loop's pool, now */
  uint64_t latency[AK_STATS_LATENCY_BUCKETS]; /* submit->completion, bucket
                                               i counts [2^i, 2^(i+1)) ns;
                                               with AK_LOOP_LATENCY_STATS */
  uint64_t buf_exhausted;                  /* receive streams that found their
                                              provided-buffer ring empty */
  ak_backend backend;                      /* URING or EPOLL (never AUTO);
                                              why: ak_loop_features */
  uint64_t readiness_waits;                /* epoll: ops that waited for an
                                              fd to become ready */
} ak_loop_stats;

/* Copies the loop's statistics into *stats. */
AK_API void ak_loop_stats_get(const ak_loop *loop, ak_loop_stats *stats);

/* The name of an op kind index in ak_loop_stats ("read", "nop"...), or NULL. */
AK_API const char *ak_op_kind_name(unsigned kind);

/* ---- Kernel features ------------------------------------------------------ */

typedef struct ak_features {
  unsigned kernel_features;   /* io_uring_params.features as the kernel gave */
  unsigned setup_flags;       /* the IORING_SETUP_* flags the ring runs with */
  bool registered_ring_fd;    /* io_uring_register_ring_fd succeeded */
  bool ext_arg;               /* waits with a timeout cost no SQE */
  bool buf_ring;              /* provided-buffer rings */
  bool msg_ring;
  bool batch_wait;            /* batch_wait_us was asked for and the kernel
                                 has IORING_FEAT_MIN_TIMEOUT (6.12+) */
  unsigned char opcodes[64];  /* 1 where the kernel supports opcode i */
  unsigned probed_ops;        /* how many entries of opcodes are meaningful */
  ak_backend backend;         /* what the loop runs on: URING or EPOLL */
  int uring_error;            /* on epoll: why io_uring was not used
                                 (AK_EURINGBLOCKED...; 0: it was not tried) */
  char backend_reason[160];   /* the choice in words, e.g. "io_uring_setup:
                                 EPERM under a seccomp filter
                                 (AK_EURINGBLOCKED); epoll instead" */
} ak_features;

/* What the kernel offered when this loop started (probed once), and the
 * backend the loop runs on and why. On epoll the io_uring fields are zero. */
AK_API void ak_loop_features(const ak_loop *loop, ak_features *features);

/* "io_uring", "epoll" or "auto"; "unknown" for another value. Thread-safe. */
AK_API const char *ak_backend_name(ak_backend backend);

#ifdef __cplusplus
}
#endif
#endif /* ASYNCKIT_LOOP_H */
