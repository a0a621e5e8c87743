/* guard.c: what keeps aksum safe around the process rather than the files:
 *
 * - fds 0, 1 and 2 are open before anything else takes a descriptor (a
 *   closed stdin would otherwise be taken by the io_uring ring, and "-"
 *   would read the ring: a hang). A closed one is pointed at /dev/null and
 *   remembered, so "-" with stdin closed fails with EBADF as sha256sum's does,
 *   and a run that prints with stdout closed fails as a write error.
 * - the open-file budget: how many files may be open at once under
 *   RLIMIT_NOFILE, counting what is open already (the ring, the pool).
 * - temporaries in flight: a table of the copies' temporary names, removed
 *   by the handler of SIGINT, SIGTERM, SIGHUP and SIGPIPE before the process
 *   dies of the signal as it would have (status 128+N, as cp). Only the
 *   fallback path of copy.c has names here: a copy made with O_TMPFILE has
 *   no name until it is complete, and it gets its name with the fatal
 *   signals blocked (aks_guard_block_fatal), so the handler has nothing of
 *   it to remove and never sees it half-named.
 *
 * The table is written by the loop thread only. A signal handled on another
 * thread is passed on to the loop thread (tgkill) and handled there, so the
 * handler never runs while the loop thread is half-way through a slot
 * change: a slot is emptied before its name is freed, and filled after the
 * name is complete (signal fences order the two for the handler). */
#define _GNU_SOURCE
#include "aksum.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

unsigned aks_guard_std_fds(void)
{
  unsigned closed = 0;
  for (int fd = 0; fd <= 2; fd++) {
    if (fcntl(fd, F_GETFD) >= 0 || errno != EBADF)
      continue;
    int nfd = open("/dev/null", fd == 0 ? O_RDONLY : O_WRONLY);
    if (nfd != fd) /* the lowest free number: fd itself, or the next check fails */
      _exit(2);
    closed |= 1u << fd;
  }
  return closed;
}

/* The descriptors open now: the entries of /proc/self/fd less the one the
 * listing itself uses; where /proc is missing, a probe of each number up to
 * the limit. */
static unsigned fds_in_use(unsigned limit)
{
  unsigned n = 0;
  DIR *d = opendir("/proc/self/fd");
  if (d) {
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
      if (e->d_name[0] != '.')
        n++;
    closedir(d);
    return n > 0 ? n - 1 : 0;
  }
  for (unsigned fd = 0; fd < limit; fd++)
    if (fcntl((int)fd, F_GETFD) >= 0)
      n++;
  return n;
}

unsigned aks_guard_file_budget(unsigned per_file, unsigned cap)
{
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur > 1u << 20)
    return cap;
  unsigned limit = (unsigned)rl.rlim_cur;
  /* Kept free: stdio's --json file, the directories made for copies and
   * whatever the library opens later (a fallback's eventfd). */
  unsigned reserve = 4;
  unsigned used = fds_in_use(limit);
  unsigned room = limit > used + reserve ? limit - used - reserve : 0;
  unsigned n = room / per_file;
  if (n < 1)
    n = 1; /* one at a time: an EMFILE then names the file */
  return n < cap ? n : cap;
}

/* ---- Temporaries removed on a fatal signal --------------------------------- */

enum { TEMP_SLOTS = 4096 };

static char *_Atomic temp_slots[TEMP_SLOTS];
static pid_t loop_tid;
static const int fatal_signals[] = {SIGINT, SIGTERM, SIGHUP, SIGPIPE};

static void on_fatal_signal(int sig)
{
  int saved = errno;
  if ((pid_t)syscall(SYS_gettid) != loop_tid) {
    syscall(SYS_tgkill, getpid(), loop_tid, sig);
    errno = saved;
    return;
  }
  /* Named temporaries (the fallback path only): an openat of one may still
   * be in the kernel (an io_uring worker) and create the file just after
   * the first unlink found nothing. Such an op completes within
   * microseconds, so when there are names, unlink again after short pauses
   * (nanosleep and unlink are async-signal-safe), 50 ms in all; only then
   * die. With O_TMPFILE copies the table is empty and nobody waits. */
  for (int pass = 0; pass < 6; pass++) {
    if (pass > 0) {
      struct timespec pause = {0, 10 * 1000 * 1000};
      nanosleep(&pause, NULL);
    }
    unsigned names = 0;
    for (unsigned i = 0; i < TEMP_SLOTS; i++) {
      char *name = atomic_load_explicit(&temp_slots[i], memory_order_relaxed);
      atomic_signal_fence(memory_order_acquire);
      if (name) {
        unlink(name);
        names++;
      }
    }
    if (names == 0)
      break;
  }
  /* Die of the signal itself, as the tool would have without us. */
  signal(sig, SIG_DFL);
  raise(sig);
  errno = saved;
}

void aks_guard_signals(void)
{
  loop_tid = (pid_t)syscall(SYS_gettid);
  struct sigaction sa;
  memset(&sa, 0, sizeof(sa));
  sa.sa_handler = on_fatal_signal;
  sigfillset(&sa.sa_mask); /* one handler at a time */
  for (size_t i = 0; i < sizeof(fatal_signals) / sizeof(fatal_signals[0]); i++) {
    struct sigaction old;
    /* A signal ignored by whoever started us stays ignored (nohup). */
    if (sigaction(fatal_signals[i], NULL, &old) == 0 && old.sa_handler == SIG_IGN)
      continue;
    sigaction(fatal_signals[i], &sa, NULL);
  }
}

int aks_guard_temp_add(char *name)
{
  for (int i = 0; i < TEMP_SLOTS; i++) {
    if (atomic_load_explicit(&temp_slots[i], memory_order_relaxed) == NULL) {
      atomic_signal_fence(memory_order_release);
      atomic_store_explicit(&temp_slots[i], name, memory_order_relaxed);
      return i;
    }
  }
  return -1; /* more copies in flight than slots: not possible with max_open <= 64 */
}

void aks_guard_temp_remove(int slot)
{
  if (slot >= 0 && slot < TEMP_SLOTS) {
    atomic_store_explicit(&temp_slots[slot], NULL, memory_order_relaxed);
    atomic_signal_fence(memory_order_seq_cst);
  }
}

/* ---- Naming a finished copy without a half state seen by the handler ------------ */

void aks_guard_block_fatal(sigset_t *old)
{
  sigset_t set;
  sigemptyset(&set);
  for (size_t i = 0; i < sizeof(fatal_signals) / sizeof(fatal_signals[0]); i++)
    sigaddset(&set, fatal_signals[i]);
  /* This thread only: a signal that reaches a pool thread meanwhile is
   * passed here (tgkill) and waits, pending, until aks_guard_restore. */
  pthread_sigmask(SIG_BLOCK, &set, old);
}

void aks_guard_restore(const sigset_t *old)
{
  pthread_sigmask(SIG_SETMASK, old, NULL);
}
