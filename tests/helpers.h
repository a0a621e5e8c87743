/* helpers.h: what the cmocka test executables share (t_ prefix): loops that
 * skip when io_uring is unavailable, semaphores and threads for driving
 * threads into states, a counting and failure-injecting allocator, running a
 * function in a forked child, and bounded waits. */
#ifndef T_HELPERS_H
#define T_HELPERS_H

/* cmocka needs these before it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <pthread.h>
#include <semaphore.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>

#include <asynckit.h>

/* meson shows exit 77 as SKIP: the kernel lacks what the test needs. */
#define T_EXIT_SKIP 77

#define T_MS INT64_C(1000000)
#define T_SEC INT64_C(1000000000)

/* The longest any single wait in a test may take before it counts as a hang:
 * generous, so that a loaded 2-core machine under a sanitizer passes. */
#define T_HANG_NS (20 * T_SEC)

/* ---- Loops ----------------------------------------------------------------- */

/* A loop owned by the calling thread. Exits the process with T_EXIT_SKIP when
 * io_uring cannot be used here; fails the test on any other error. */
ak_loop *t_loop_new(void);
ak_loop *t_loop_new_opts(const ak_loop_options *opts);

/* Exits with T_EXIT_SKIP unless a loop can be created here (call at the top of
 * main in files that need a ring). */
void t_require_uring(void);

/* Whether loop runs on the epoll backend (AK_BACKEND=epoll, or io_uring
 * unavailable); t_backend_is_epoll asks of a default loop made and freed. */
bool t_loop_is_epoll(const ak_loop *loop);
bool t_backend_is_epoll(void);

/* In a cmocka test: skips it on the epoll backend, saying why on stderr
 * (for what only io_uring has: SQPOLL, registered files, the probe...). */
#define T_SKIP_ON_EPOLL(loop, why)                                           \
  do {                                                                       \
    if (t_loop_is_epoll(loop)) {                                             \
      fprintf(stderr, "skip on epoll: %s\n", (why));                         \
      ak_loop_free(loop);                                                    \
      skip();                                                                \
    }                                                                        \
  } while (0)

/* Runs loop with AK_RUN_NOWAIT/ONCE until pred(arg) is true or limit_ns
 * passes. Returns pred's last answer. */
bool t_run_until(ak_loop *loop, bool (*pred)(void *arg), void *arg, int64_t limit_ns);

/* A predicate for t_run_until: the future is settled. */
bool t_is_set(void *future);

/* ---- Semaphores and threads ------------------------------------------------ */

typedef struct t_sem {
  sem_t sem;
} t_sem;

void t_sem_init(t_sem *s, unsigned value);
void t_sem_destroy(t_sem *s);
void t_sem_post(t_sem *s);
/* Waits at most T_HANG_NS; returns false on timeout (a hang). */
bool t_sem_wait(t_sem *s);
/* Waits at most timeout_ns; returns false on timeout. */
bool t_sem_timedwait(t_sem *s, int64_t timeout_ns);

/* Starts a thread (stack_size 0: the default) or fails the test. */
pthread_t t_thread_start(void *(*fn)(void *), void *arg, size_t stack_size);
void *t_thread_join(pthread_t thread);

/* ---- The counting allocator ------------------------------------------------
 * Installed with ak_replace_allocator; counts every call and every live
 * block, and can fail the Nth allocation from now. */

typedef struct t_alloc_stats {
  uint64_t mallocs, callocs, reallocs, frees; /* calls */
  int64_t live;                               /* blocks allocated, not freed */
  uint64_t failed;                            /* allocations made to fail */
} t_alloc_stats;

/* Installs the counting allocator (before any other ak_ call). */
void t_alloc_install(void);
void t_alloc_get(t_alloc_stats *out);
/* malloc + calloc + realloc + free calls so far. */
uint64_t t_alloc_calls(void);
/* Makes the nth allocation (malloc, calloc or realloc) from now fail,
 * counting from 1; 0 turns failure injection off. */
void t_alloc_fail_nth(uint64_t n);
/* Whether the armed failure has happened. */
bool t_alloc_fail_fired(void);

/* ---- Processes --------------------------------------------------------------- */

/* Runs fn(arg) in a forked child; the child exits with fn's return value.
 * Returns that exit status, or 128 + the signal that killed the child, or -1
 * if fork failed. */
int t_run_in_child(int (*fn)(void *arg), void *arg);

/* ---- Misc ---------------------------------------------------------------------- */

/* A pipe (O_CLOEXEC) or fails the test. */
void t_pipe(int fds[2]);

/* A temporary file opened with flags (O_RDWR...), unlinked at once. */
int t_tmpfile(int flags);

/* Yields until pred(arg) is true or T_HANG_NS passes; returns pred's last
 * answer. For a state another thread reaches where there is no callback to
 * hang a semaphore on (a pool that has started stopping). */
bool t_spin_until(bool (*pred)(void *arg), void *arg);

#endif /* T_HELPERS_H */
