/* helpers.c: the shared test helpers declared in helpers.h. */
#define _GNU_SOURCE
#include "helpers.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* ---- Loops ----------------------------------------------------------------- */

static bool is_unavailable(int rc)
{
  return rc == AK_ENOURING || rc == AK_EURINGDISABLED || rc == AK_EURINGBLOCKED ||
         rc == AK_EURINGOLD;
}

ak_loop *t_loop_new_opts(const ak_loop_options *opts)
{
  ak_loop *loop = NULL;
  int rc = ak_loop_new(&loop, opts);
  if (is_unavailable(rc)) {
    fprintf(stderr, "skip: %s (%s)\n", ak_strerror(rc), ak_err_name(rc));
    exit(T_EXIT_SKIP);
  }
  if (rc < 0)
    fail_msg("ak_loop_new: %s (%s)", ak_strerror(rc), ak_err_name(rc));
  assert_non_null(loop);
  return loop;
}

ak_loop *t_loop_new(void)
{
  return t_loop_new_opts(NULL);
}

void t_require_uring(void)
{
  ak_loop *loop = NULL;
  int rc = ak_loop_new(&loop, NULL);
  if (is_unavailable(rc)) {
    fprintf(stderr, "skip: %s (%s)\n", ak_strerror(rc), ak_err_name(rc));
    exit(T_EXIT_SKIP);
  }
  if (rc == 0)
    ak_loop_free(loop);
}

bool t_loop_is_epoll(const ak_loop *loop)
{
  ak_features ft;
  ak_loop_features(loop, &ft);
  return ft.backend == AK_BACKEND_EPOLL;
}

bool t_backend_is_epoll(void)
{
  ak_loop *loop = NULL;
  if (ak_loop_new(&loop, NULL) < 0)
    return false;
  bool epoll = t_loop_is_epoll(loop);
  ak_loop_free(loop);
  return epoll;
}

bool t_run_until(ak_loop *loop, bool (*pred)(void *arg), void *arg, int64_t limit_ns)
{
  int64_t end = ak_now_ns() + limit_ns;
  while (!pred(arg) && ak_now_ns() < end) {
    int rc = ak_loop_run(loop, AK_RUN_NOWAIT);
    if (rc < 0)
      fail_msg("ak_loop_run: %s", ak_strerror(rc));
    if (!pred(arg))
      sched_yield();
  }
  return pred(arg);
}

bool t_is_set(void *future)
{
  return ak_future_is_set(future);
}

/* ---- Semaphores and threads ------------------------------------------------ */

void t_sem_init(t_sem *s, unsigned value)
{
  assert_int_equal(sem_init(&s->sem, 0, value), 0);
}
void t_sem_destroy(t_sem *s)
{
  sem_destroy(&s->sem);
}
void t_sem_post(t_sem *s)
{
  sem_post(&s->sem);
}

bool t_sem_timedwait(t_sem *s, int64_t timeout_ns)
{
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  int64_t ns = (int64_t)ts.tv_nsec + timeout_ns;
  ts.tv_sec += (time_t)(ns / T_SEC);
  ts.tv_nsec = (long)(ns % T_SEC);
  for (;;) {
    if (sem_timedwait(&s->sem, &ts) == 0)
      return true;
    if (errno != EINTR)
      return false;
  }
}

bool t_sem_wait(t_sem *s)
{
  return t_sem_timedwait(s, T_HANG_NS);
}

pthread_t t_thread_start(void *(*fn)(void *), void *arg, size_t stack_size)
{
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  if (stack_size)
    assert_int_equal(pthread_attr_setstacksize(&attr, stack_size), 0);
  pthread_t thread;
  int rc = pthread_create(&thread, &attr, fn, arg);
  pthread_attr_destroy(&attr);
  if (rc != 0)
    fail_msg("pthread_create: %s", strerror(rc));
  return thread;
}

void *t_thread_join(pthread_t thread)
{
  void *ret = NULL;
  assert_int_equal(pthread_join(thread, &ret), 0);
  return ret;
}

/* ---- The counting allocator ------------------------------------------------ */

static _Atomic uint64_t a_mallocs, a_callocs, a_reallocs, a_frees, a_failed;
static _Atomic int64_t a_live;
static _Atomic uint64_t a_countdown; /* 0: off; else allocations until one fails */
static _Atomic bool a_fired;

/* Whether this allocation is the one to fail. */
static bool must_fail(void)
{
  uint64_t c = atomic_load(&a_countdown);
  while (c != 0) {
    if (atomic_compare_exchange_weak(&a_countdown, &c, c - 1)) {
      if (c == 1) {
        atomic_fetch_add(&a_failed, 1);
        atomic_store(&a_fired, true);
        return true;
      }
      return false;
    }
  }
  return false;
}

static void *t_malloc(size_t size)
{
  atomic_fetch_add_explicit(&a_mallocs, 1, memory_order_relaxed);
  if (must_fail())
    return NULL;
  void *p = malloc(size);
  if (p)
    atomic_fetch_add_explicit(&a_live, 1, memory_order_relaxed);
  return p;
}

static void *t_calloc(size_t count, size_t size)
{
  atomic_fetch_add_explicit(&a_callocs, 1, memory_order_relaxed);
  if (must_fail())
    return NULL;
  void *p = calloc(count, size);
  if (p)
    atomic_fetch_add_explicit(&a_live, 1, memory_order_relaxed);
  return p;
}

static void *t_realloc(void *ptr, size_t size)
{
  atomic_fetch_add_explicit(&a_reallocs, 1, memory_order_relaxed);
  if (must_fail())
    return NULL;
  void *p = realloc(ptr, size);
  if (!ptr && p)
    atomic_fetch_add_explicit(&a_live, 1, memory_order_relaxed);
  return p;
}

static void t_free(void *ptr)
{
  atomic_fetch_add_explicit(&a_frees, 1, memory_order_relaxed);
  if (ptr)
    atomic_fetch_sub_explicit(&a_live, 1, memory_order_relaxed);
  free(ptr);
}

void t_alloc_install(void)
{
  if (ak_replace_allocator(t_malloc, t_realloc, t_calloc, t_free) != 0) {
    fprintf(stderr, "ak_replace_allocator failed\n");
    exit(1);
  }
}

void t_alloc_get(t_alloc_stats *out)
{
  out->mallocs = atomic_load(&a_mallocs);
  out->callocs = atomic_load(&a_callocs);
  out->reallocs = atomic_load(&a_reallocs);
  out->frees = atomic_load(&a_frees);
  out->live = atomic_load(&a_live);
  out->failed = atomic_load(&a_failed);
}

uint64_t t_alloc_calls(void)
{
  return atomic_load(&a_mallocs) + atomic_load(&a_callocs) + atomic_load(&a_reallocs) +
         atomic_load(&a_frees);
}

void t_alloc_fail_nth(uint64_t n)
{
  atomic_store(&a_fired, false);
  atomic_store(&a_countdown, n);
}

bool t_alloc_fail_fired(void)
{
  return atomic_load(&a_fired);
}

/* ---- Processes --------------------------------------------------------------- */

int t_run_in_child(int (*fn)(void *arg), void *arg)
{
  fflush(stdout);
  fflush(stderr);
  pid_t pid = fork();
  if (pid < 0)
    return -1;
  if (pid == 0) {
    int rc = fn(arg);
    fflush(stdout);
    fflush(stderr);
    _exit(rc);
  }
  int status = 0;
  while (waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR)
      return -1;
  }
  if (WIFEXITED(status))
    return WEXITSTATUS(status);
  if (WIFSIGNALED(status))
    return 128 + WTERMSIG(status);
  return -1;
}

/* ---- Misc ---------------------------------------------------------------------- */

void t_pipe(int fds[2])
{
  assert_int_equal(pipe2(fds, O_CLOEXEC), 0);
}

int t_tmpfile(int flags)
{
  const char *dir = getenv("TMPDIR");
  char path[512];
  snprintf(path, sizeof(path), "%s/asynckit-test-XXXXXX", dir && *dir ? dir : "/tmp");
  int fd = mkostemp(path, O_CLOEXEC);
  assert_true(fd >= 0);
  close(fd);
  fd = open(path, flags | O_CLOEXEC);
  unlink(path);
  assert_true(fd >= 0);
  return fd;
}

bool t_spin_until(bool (*pred)(void *arg), void *arg)
{
  int64_t end = ak_now_ns() + T_HANG_NS;
  while (!pred(arg) && ak_now_ns() < end)
    sched_yield();
  return pred(arg);
}
