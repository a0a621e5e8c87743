/* loop.c: the event loop: creating the ring (with the kernel's features
 * probed once and a named error when io_uring cannot be used), an iteration
 * (inbox, timers, ready queue, submit-and-wait, reap, admit), run modes,
 * stop, the thread-safe post and its eventfd wakeup, statistics, and freeing
 * with everything drained.
 *
 * Not here: operation records and admission (op.c), timers' heap (timer.c).
 *
 * Map:
 *   1. Thread identity and the current loop
 *   2. Creating the ring: flags cascade, feature probe, diagnosis
 *   3. Queues: ready queue (owner only), inbox (any thread), wakeup
 *   4. The iteration
 *   5. Run, stop, hold, post
 *   6. Free, statistics, features
 */
#define _GNU_SOURCE
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "core/loop_internal.h"
#include "core/valgrind.h"

/* Newer than liburing 2.3's header: the kernel takes min_wait_usec (6.12). */
#define AK__FEAT_MIN_TIMEOUT (1U << 15)
#define AK__NS_PER_S 1000000000LL

/* ---- 1. Thread identity and the current loop ------------------------------ */

AK__TLS char ak__token;                 /* its address identifies the thread
                                           where there is no thread pointer */
/* The thread's live loops form a list through prev_current/next_current,
 * newest last: ak__current is its tail, the loop this thread last created
 * that is not freed. A free unlinks its loop wherever it sits, so loops
 * freed out of creation order never leave a freed loop current. */
static AK__TLS ak_loop *ak__current;

/* Every live loop, for ak__loop_enqueue_if_live: a future held past its loop's free
 * must learn that the loop is gone without reading it. A loop leaves at the
 * start of its free, under the lock, so that a late callback either was
 * queued before (the free's drain runs it) or finds the loop gone. */
static pthread_mutex_t ak__live_mu = PTHREAD_MUTEX_INITIALIZER;
static ak_loop *ak__live_loops;


bool ak_loop_is_owner(const ak_loop *loop) { return ak__loop_owned_by_caller(loop); }
ak_loop *ak_loop_current(void) { return ak__current; }

static void live_add(ak_loop *loop) {
  pthread_mutex_lock(&ak__live_mu);
  loop->live_next = ak__live_loops;
  ak__live_loops = loop;
  pthread_mutex_unlock(&ak__live_mu);
}

static void live_remove(ak_loop *loop) {
  pthread_mutex_lock(&ak__live_mu);
  for (ak_loop **at = &ak__live_loops; *at; at = &(*at)->live_next)
    if (*at == loop) {
      *at = loop->live_next;
      break;
    }
  pthread_mutex_unlock(&ak__live_mu);
}

/* Slow paths only (a callback added to a settled loop future). Whether
 * loop is one of the calling thread's live loops, without reading it (it
 * may be freed): those cannot be freed meanwhile (a loop is freed on its
 * own thread), and a thread has few. */
bool ak__loop_is_callers_live(const ak_loop *loop) {
  for (const ak_loop *l = ak__current; l; l = l->prev_current)
    if (l == loop)
      return true;
  return false;
}

int ak__loop_enqueue_if_live(ak_loop *loop, ak__qnode *node) {
  pthread_mutex_lock(&ak__live_mu);
  const ak_loop *l = ak__live_loops;
  while (l && l != loop)
    l = l->live_next;
  if (l)
    ak__loop_enqueue_remote(loop, node);
  pthread_mutex_unlock(&ak__live_mu);
  return l ? 0 : -ENOENT;
}

int64_t ak_now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* ---- 2. Creating the ring ------------------------------------------------- */

static int read_int_file(const char *path, int *out) {
  FILE *fp = fopen(path, "re");
  if (!fp)
    return -errno;
  int rc = fscanf(fp, "%d", out) == 1 ? 0 : -EINVAL;
  fclose(fp);
  return rc;
}

/* The Seccomp: line of /proc/self/status: 0 none, 1 strict, 2 filter. */
static int seccomp_mode(void) {
  FILE *fp = fopen("/proc/self/status", "re");
  if (!fp)
    return 0;
  char line[256];
  int mode = 0;
  while (fgets(line, sizeof(line), fp)) {
    if (sscanf(line, "Seccomp: %d", &mode) == 1)
      break;
  }
  fclose(fp);
  return mode;
}

/* io_uring_setup failed with err: say why in our own terms. The sysctl
 * (6.6+) answers EPERM; seccomp filters usually answer EPERM or ENOSYS; a
 * kernel without io_uring answers ENOSYS. */
static int diagnose_setup_failure(int err) {
  if (err != -EPERM && err != -ENOSYS && err != -EACCES)
    return err;
  int disabled = 0;
  if (read_int_file("/proc/sys/kernel/io_uring_disabled", &disabled) < 0)
    disabled = 0;
  /* 2 refuses everyone; 1 only those outside io_uring_group and without
   * CAP_SYS_ADMIN, so with 1 a seccomp filter may be the real cause. */
  if (disabled == 2)
    return AK_EURINGDISABLED;
  if (seccomp_mode() == 2)
    return AK_EURINGBLOCKED;
  if (disabled == 1)
    return AK_EURINGDISABLED;
  return err == -ENOSYS ? AK_ENOURING : err;
}

static bool has_flag(unsigned flags, unsigned flag) { return (flags & flag) == flag; }

/* Tries the setup flags from the most to the least capable: an older kernel
 * answers EINVAL to a flag it does not know. */
static int ring_create(ak_loop *loop) {
  ak__vg_init();
  const unsigned base = IORING_SETUP_CQSIZE;
  unsigned cascade[4];
  size_t n = 0;
  if (has_flag(loop->opts.flags, AK_LOOP_SQPOLL)) {
    cascade[n++] = base | IORING_SETUP_SQPOLL | IORING_SETUP_SINGLE_ISSUER;
    cascade[n++] = base | IORING_SETUP_SQPOLL;
  } else if (!has_flag(loop->opts.flags, AK_LOOP_NO_TASKRUN_OPT) && !ak__vg_running) {
    /* 6.1+: completions' task work runs only when we ask for events.
     * (Not under valgrind: its wait sleeps in poll(2) on the ring fd,
     * which deferred task work does not wake; core/valgrind.c.) */
    cascade[n++] = base | IORING_SETUP_SUBMIT_ALL | IORING_SETUP_SINGLE_ISSUER |
                   IORING_SETUP_DEFER_TASKRUN;
    /* 5.19+: no IPI to interrupt us for task work. */
    cascade[n++] = base | IORING_SETUP_SUBMIT_ALL | IORING_SETUP_COOP_TASKRUN |
                   IORING_SETUP_TASKRUN_FLAG;
  }
  cascade[n++] = base;
  int rc = -EINVAL;
  for (size_t i = 0; i < n; i++) {
    struct io_uring_params p;
    memset(&p, 0, sizeof(p));
    p.flags = cascade[i];
    p.cq_entries = loop->opts.cq_entries;
    if (p.flags & IORING_SETUP_SQPOLL)
      p.sq_thread_idle = 50;
    rc = io_uring_queue_init_params(loop->opts.sq_entries, &loop->ring, &p);
    if (rc == 0) {
      loop->features.kernel_features = p.features;
      loop->features.setup_flags = p.flags;
      loop->cq_capacity = p.cq_entries;
      return 0;
    }
    if (rc != -EINVAL)
      break;
  }
  return diagnose_setup_failure(rc);
}

static bool probe_buf_ring(ak_loop *loop) {
  /* Register a one-entry buffer ring and drop it: 5.19+ accepts. */
  size_t size = 4096;
  void *mem = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (mem == MAP_FAILED)
    return false;
  struct io_uring_buf_reg reg;
  memset(&reg, 0, sizeof(reg));
  reg.ring_addr = (uint64_t)(uintptr_t)mem;
  reg.ring_entries = 1;
  reg.bgid = 0x7fff;
  bool ok = io_uring_register_buf_ring(&loop->ring, &reg, 0) == 0;
  if (ok)
    io_uring_unregister_buf_ring(&loop->ring, 0x7fff);
  munmap(mem, size);
  return ok;
}

static void probe_features(ak_loop *loop) {
  ak_features *ft = &loop->features;
  ft->ext_arg = has_flag(ft->kernel_features, IORING_FEAT_EXT_ARG) &&
                !has_flag(loop->opts.flags, AK_LOOP_NO_EXT_ARG);
  struct io_uring_probe *probe = io_uring_get_probe_ring(&loop->ring);
  if (probe) {
    unsigned last = probe->last_op;
    ft->probed_ops = last + 1 < 64 ? last + 1 : 64;
    for (unsigned op = 0; op < ft->probed_ops; op++)
      ft->opcodes[op] = io_uring_opcode_supported(probe, (int)op) ? 1 : 0;
    io_uring_free_probe(probe);
  }
  ft->msg_ring = ft->probed_ops > IORING_OP_MSG_RING && ft->opcodes[IORING_OP_MSG_RING];
  ft->batch_wait = loop->opts.batch_wait_us > 0 &&
                   has_flag(ft->kernel_features, AK__FEAT_MIN_TIMEOUT) && ft->ext_arg &&
                   !(ft->setup_flags & IORING_SETUP_SQPOLL);
  ft->buf_ring = probe_buf_ring(loop);
  /* A registered ring fd saves the fd lookup on every io_uring_enter. */
  ft->registered_ring_fd = io_uring_register_ring_fd(&loop->ring) == 1;
}

bool ak__loop_has_opcode_slow(const ak_loop *loop, unsigned opcode) {
  if (AK__LIKELY(opcode < loop->features.probed_ops && loop->features.opcodes[opcode]))
    return true;
  return loop->ep != NULL; /* epoll (no probe): every op has its own path there */
}

bool ak__loop_is_epoll(const ak_loop *loop) { return loop->ep != NULL; }

const char *ak_backend_name(ak_backend backend) {
  switch (backend) {
  case AK_BACKEND_AUTO:
    return "auto";
  case AK_BACKEND_URING:
    return "io_uring";
  case AK_BACKEND_EPOLL:
    return "epoll";
  }
  return "unknown";
}

static void arm_wakeup(ak_loop *loop);

/* The ring, checked and probed. 0 or a negative error (the ring is gone). */
static int uring_setup(ak_loop *loop) {
  int rc = ring_create(loop);
  if (rc < 0)
    return rc;
  if (!has_flag(loop->features.kernel_features, IORING_FEAT_NODROP)) {
    /* Without NODROP a full CQ loses completions, and with them buffers. */
    io_uring_queue_exit(&loop->ring);
    memset(&loop->ring, 0, sizeof(loop->ring));
    return AK_EURINGOLD;
  }
  probe_features(loop);
  return 0;
}

/* Why io_uring_setup was refused, in words for the reason string. */
static const char *uring_refusal(int err) {
  switch (err) {
  case AK_EURINGBLOCKED:
    return "io_uring_setup: EPERM/ENOSYS under a seccomp filter";
  case AK_EURINGDISABLED:
    return "io_uring_setup refused: sysctl kernel.io_uring_disabled";
  case AK_ENOURING:
    return "io_uring_setup: ENOSYS (no io_uring in this kernel)";
  case AK_EURINGOLD:
    return "io_uring too old (no IORING_FEAT_NODROP)";
  default:
    return "io_uring_setup failed";
  }
}

static bool is_uring_unusable(int err) {
  return err == AK_EURINGBLOCKED || err == AK_EURINGDISABLED || err == AK_ENOURING ||
         err == AK_EURINGOLD;
}

/* The backend asked for: the options' choice, else AK_BACKEND in the
 * environment, else AUTO. -EINVAL for an environment value we do not know. */
static int wanted_backend(const ak_loop *loop, bool *from_env) {
  *from_env = false;
  if (loop->opts.backend != AK_BACKEND_AUTO)
    return (int)loop->opts.backend;
  const char *env = getenv("AK_BACKEND");
  if (!env || !*env || strcmp(env, "auto") == 0)
    return AK_BACKEND_AUTO;
  *from_env = true;
  if (strcmp(env, "uring") == 0 || strcmp(env, "io_uring") == 0)
    return AK_BACKEND_URING;
  if (strcmp(env, "epoll") == 0)
    return AK_BACKEND_EPOLL;
  return -EINVAL;
}

/* Chooses and sets up the backend, writing the choice and its reason into
 * the features. 0 or a negative error. */
static int backend_setup(ak_loop *loop) {
  ak_features *ft = &loop->features;
  bool from_env;
  int want = wanted_backend(loop, &from_env);
  if (want < 0)
    return want;
  const char *who = from_env ? "AK_BACKEND in the environment" : "the loop's options";
  if (want != AK_BACKEND_EPOLL) {
    int rc = uring_setup(loop);
    if (rc == 0) {
      ft->backend = AK_BACKEND_URING;
      snprintf(ft->backend_reason, sizeof(ft->backend_reason), "%s",
               want == AK_BACKEND_URING ? (from_env ? "io_uring: asked by AK_BACKEND=uring"
                                                    : "io_uring: asked by the loop's options")
                                        : "io_uring: available");
      return 0;
    }
    if (want == AK_BACKEND_URING || !is_uring_unusable(rc))
      return rc;
    memset(ft, 0, sizeof(*ft));
    ft->uring_error = rc;
    snprintf(ft->backend_reason, sizeof(ft->backend_reason), "%s (%s); epoll instead",
             uring_refusal(rc), ak_err_name(rc));
  } else {
    snprintf(ft->backend_reason, sizeof(ft->backend_reason), "epoll: asked by %s", who);
  }
  ft->backend = AK_BACKEND_EPOLL;
  return 0;
}

int ak_loop_new(ak_loop **out, const ak_loop_options *opts) {
  ak_loop *loop = ak__calloc(1, sizeof(*loop));
  int rc;
  if (!loop)
    return -ENOMEM;
  if (opts)
    loop->opts = *opts;
  if (loop->opts.sq_entries == 0)
    loop->opts.sq_entries = 256;
  if (loop->opts.cq_entries == 0)
    loop->opts.cq_entries = 4 * loop->opts.sq_entries;
  loop->head.owner = ak__thread_token();
  loop->ready_tailp = &loop->ready_head;
  loop->eventfd = -1;
  ak__lanes_init(loop);
  loop->now = ak_now_ns();

  rc = backend_setup(loop);
  if (rc < 0)
    goto fail_free;
  loop->eventfd = eventfd(0, EFD_CLOEXEC);
  if (loop->eventfd < 0) {
    rc = -errno;
    goto fail_ring;
  }
  if (AK__UNLIKELY(loop->features.backend == AK_BACKEND_EPOLL)) {
    /* No CQ: the same admission bound, so ops queue alike on both. */
    loop->cq_capacity = loop->opts.cq_entries > 2 ? loop->opts.cq_entries - 2 : 1;
    memset(loop->opcode_state, 1, sizeof(loop->opcode_state)); /* no "kernel refused" retry */
    rc = ak__ep_init(loop);
    if (rc < 0)
      goto fail_eventfd;
  } else {
    /* One CQ slot stays reserved for the wakeup read, one for cancel
     * requests and the wait's own timeout on kernels without EXT_ARG. */
    loop->cq_capacity -= 2;
    arm_wakeup(loop);
  }
  loop->stats.backend = loop->features.backend;
  for (unsigned op = 0; op < 64; op++)
    if (ak__loop_has_opcode_slow(loop, op))
      loop->head.opcode_mask |= UINT64_C(1) << op;
  loop->head.sqpoll = (loop->features.setup_flags & IORING_SETUP_SQPOLL) != 0;
  loop->rw_opcodes = ak__loop_has_opcode(loop, IORING_OP_READ) &&
                     ak__loop_has_opcode(loop, IORING_OP_READ_FIXED) &&
                     ak__loop_has_opcode(loop, IORING_OP_WRITE) &&
                     ak__loop_has_opcode(loop, IORING_OP_WRITE_FIXED);
  loop->enter_flags = loop->features.registered_ring_fd ? IORING_ENTER_REGISTERED_RING : 0;
  /* ak__loop_submits_lean (loop_internal.h): what never changes in a loop's life. Fault
   * injection takes the general path (its SQE and short-SQE hooks). */
#ifdef AK_FAULT_INJECTION
  loop->lean_submit = false;
#else
  loop->lean_submit = loop->features.backend == AK_BACKEND_URING && !ak__vg_running &&
                      !(loop->opts.flags & AK_LOOP_FORCE_POOL) &&
                      !(loop->opts.flags & AK_LOOP_LATENCY_STATS);
#endif
  loop->direct_wait = loop->features.backend == AK_BACKEND_URING && !loop->head.sqpoll &&
                      !ak__vg_running;
  loop->batch_waits = loop->features.batch_wait;
  loop->latency_stats = (loop->opts.flags & AK_LOOP_LATENCY_STATS) != 0;
  loop->prev_current = ak__current;
  loop->next_current = NULL;
  if (ak__current)
    ak__current->next_current = loop;
  ak__current = loop;
  live_add(loop);
  *out = loop;
  return 0;

fail_eventfd:
  close(loop->eventfd);
fail_ring:
  if (loop->features.backend == AK_BACKEND_URING)
    io_uring_queue_exit(&loop->ring);
fail_free:
  ak__free(loop);
  return rc;
}

/* ---- 3. Queues and wakeup -------------------------------------------------- */

#define ready_push ak__ready_push

static void inbox_push(ak_loop *loop, ak__qnode *node) {
  ak__qnode *head = atomic_load_explicit(&loop->inbox, memory_order_relaxed);
  do {
    node->next = head;
  } while (!atomic_compare_exchange_weak_explicit(&loop->inbox, &head, node,
                                                  memory_order_seq_cst, memory_order_relaxed));
}

void ak__loop_wake(ak_loop *loop) {
  /* Only a sleeping loop needs the eventfd: an awake one looks at its inbox
   * and flags after setting `sleeping` (see submit_and_wait). The seq_cst
   * load pairs with that store: the waker sees the flag, or the loop sees
   * what the waker published. One write per drain: the loop clears
   * wake_pending before it drains. */
  if (atomic_load_explicit(&loop->sleeping, memory_order_seq_cst) &&
      atomic_load_explicit(&loop->wake_pending, memory_order_relaxed) == 0 &&
      atomic_exchange_explicit(&loop->wake_pending, 1, memory_order_acq_rel) == 0) {
    uint64_t one = 1;
    ssize_t n = write(loop->eventfd, &one, sizeof(one));
    (void)n; /* EAGAIN only if the counter is near 2^64: a wakeup is pending */
  }
}

int ak__loop_enqueue_remote(ak_loop *loop, ak__qnode *node) {
  if (ak__lane_push(loop, node))
    return 0;
  /* Once the node is pushed the loop may run it and, if it was the last
   * thing ak_loop_free waited for (a bound pool task's settle), free the
   * loop while we still wake it: the count makes ak_loop_free wait for us.
   * The increment is ordered before the push (a release), the decrement
   * after our last touch of the loop; ak_loop_free's acquire load pairs. */
  atomic_fetch_add_explicit(&loop->remote_enqueuers, 1, memory_order_relaxed);
  inbox_push(loop, node);
  ak__loop_wake(loop);
  atomic_fetch_sub_explicit(&loop->remote_enqueuers, 1, memory_order_release);
  return 0;
}

void ak__loop_enqueue(ak_loop *loop, ak__qnode *node) { ak__loop_enqueue_inline(loop, node); }

/* Moves the pool workers' lanes, then the inbox, to the ready queue. The
 * inbox goes oldest first, in one pass: the stack reversed is in order, and
 * its old top becomes the new tail. */
static void drain_inbox(ak_loop *loop) {
  if (__atomic_load_n(&loop->lanes, __ATOMIC_RELAXED)) /* a pool worker ever reported */
    ak__lanes_drain(loop);
  if (!atomic_load_explicit(&loop->inbox, memory_order_relaxed))
    return;
  ak__qnode *top = atomic_exchange_explicit(&loop->inbox, NULL, memory_order_acquire);
  ak__qnode *reversed = NULL;
  for (ak__qnode *node = top; node;) {
    ak__qnode *next = node->next;
    node->next = reversed;
    reversed = node;
    node = next;
  }
  *loop->ready_tailp = reversed;
  loop->ready_tailp = &top->next;
}

static void arm_wakeup(ak_loop *loop) {
  struct io_uring_sqe *sqe = ak__loop_get_sqe(loop);
  io_uring_prep_read(sqe, loop->eventfd, &loop->eventfd_buf, sizeof(loop->eventfd_buf), 0);
  io_uring_sqe_set_data64(sqe, (uint64_t)(uintptr_t)loop | AK__TAG_WAKEUP);
  loop->wakeup_armed = true;
}

static void wakeup_arrived(ak_loop *loop, int res) {
  (void)res; /* cancelled or an error: re-armed all the same while needed */
  loop->wakeup_armed = false;
  /* Pairs with the exchange in ak__loop_wake: a post after this store
   * writes the eventfd again; one before it is seen by drain_inbox. */
  atomic_store_explicit(&loop->wake_pending, 0, memory_order_seq_cst);
  /* In the kernel's drain mode the read is re-armed only once the ring is
   * idle (leave_drain_mode). */
  if (AK__UNLIKELY(loop->drain_mode))
    return;
  /* While closing, only pool tasks still bound to the loop need it. */
  if (!loop->closing || (loop->alive_other > 0 && !loop->wakeup_cancel_sent))
    arm_wakeup(loop);
}

/* The kernel's drain mode (since 6.16: io_uring's drain counts allocated
 * requests): once an IOSQE_IO_DRAIN was submitted, every later SQE waits
 * until nothing else is in flight, and the ring leaves that mode only when
 * an SQE is submitted while the ring is idle. The loop's wakeup read, in
 * flight for as long as the loop lives, would keep the ring in that mode
 * for good and every later op (a cancel too) would wait for the next post:
 * so the read is not re-armed in drain mode (wakeup_arrived) until the
 * loop's ops have all completed; then its re-arm is the submit that finds
 * the ring idle. Until then a post from another thread is seen when an op
 * completes (docs/batch.md). Older kernels defer only the drain itself; the
 * same steps are harmless there.
 * All CQEs reaped is not yet idle for the kernel: a request that ran on an
 * io-wq worker (an fsync) stays allocated until the worker drops its
 * reference, which may come after the loop reaped its CQE. A re-arm then
 * would be deferred, released once that request is freed, and leave the
 * ring in drain mode with the read in flight (test_drain_mode_left_after_
 * worker_op). So a NOP goes first, alone: the kernel releases it only when
 * nothing else is allocated, and a NOP is freed with its CQE. Once it came
 * and no SQE went in after it, the ring is idle and the re-arm ends the
 * mode. The same holds for any SQE: so from the moment the loop's ops have
 * all completed until the mode has ended, new ops wait in the loop's queue
 * (op.c, has_room), and go in right behind the re-arm. */
static void leave_drain_mode(ak_loop *loop) {
  if (loop->in_flight > 0 || loop->reserved_inflight > 0 || loop->wakeup_armed)
    return;
  bool rearm = !loop->closing || (loop->alive_other > 0 && !loop->wakeup_cancel_sent);
  if (rearm && !(loop->drain_probed && loop->ring.sq.sqe_tail == loop->drain_probe_tail)) {
    struct io_uring_sqe *sqe = ak__loop_get_sqe(loop);
    io_uring_prep_nop(sqe);
    io_uring_sqe_set_data64(sqe, (uint64_t)(uintptr_t)&loop->drain_probe_tail | AK__TAG_WAKEUP);
    loop->reserved_inflight++;
    loop->drain_probed = false;
    loop->drain_probe_tail = loop->ring.sq.sqe_tail;
    return;
  }
  loop->drain_mode = false;
  loop->drain_probed = false;
  if (rearm)
    arm_wakeup(loop);
  /* The ops held meanwhile (op.c, has_room) go in behind the re-arm, in
   * the same submit: the wait below must not sleep with them held. */
  if (loop->queued_head)
    ak__op_admit_queued(loop);
}

static void drain_probe_arrived(ak_loop *loop) {
  loop->reserved_inflight--;
  loop->drain_probed = true;
}

/* ---- 4. The iteration ------------------------------------------------------ */

void ak__loop_flush_early(ak_loop *loop) { ak__loop_flush(loop); }

/* After a submit that failed (EAGAIN, EBUSY): its SQEs are still in the
 * SQ and go with the next one, so they still count (a count of zero made
 * ak__loop_get_sqe's flush of a full SQ a no-op, spinning, and iterations
 * that do not block skip the enter). */
static unsigned unsubmitted_after_failure(const ak_loop *loop) {
  return io_uring_sq_ready(&loop->ring);
}

void ak__loop_flush(ak_loop *loop) {
  if (loop->sq_unsubmitted == 0)
    return;
  int rc;
  do {
    rc = AK_FAULT_CALL(AK_FAULT_SUBMIT, io_uring_submit(&loop->ring));
  } while (rc == -EINTR);
  loop->stats.submits++;
  loop->sq_unsubmitted = rc < 0 ? unsubmitted_after_failure(loop) : 0;
  loop->last_sqe_op = NULL;
}

/* Hands the tasks callbacks submitted to the pool: a load and a branch
 * inline when there are none (three times an iteration). */
static inline void flush_pool_tasks(ak_loop *loop) {
  if (AK__UNLIKELY(loop->pool_pend_n != 0))
    ak__pool_flush_loop(loop);
}

/* Runs the callbacks queued when it starts (asyncio's call_soon): what they
 * queue (posts, the callbacks of futures they settle) waits for the next
 * batch, so a callback that re-queues itself cannot starve IO or timers. A
 * budget bounds one batch all the same (a million posts from another
 * thread). The node is run after it is unlinked and may be freed by its run,
 * so whether it was the last is decided before.
 *
 * A callback may wait (ak_future_wait on the owner thread runs the loop):
 * the nested iteration runs this batch's later nodes, its last among them,
 * and maybe all that was queued, so this batch must end when that callback
 * returns; what is still queued runs in the next one. The budget lives in
 * the loop for that: every batch leaves it at 1, so the batch it ran
 * inside stops at its next count (no instruction more per node than a
 * local budget). The nested run must see the rest of this batch: a
 * callback that waits for a future whose settle is queued behind it would
 * otherwise wait forever. */
static inline __attribute__((always_inline)) void run_ready(ak_loop *loop) {
  if (loop->ready_head) {
    ak__qnode *last = ak__ready_last(loop);
    loop->ready_budget = 8192;
    loop->dispatch_depth++;
    for (;;) {
      ak__qnode *node = loop->ready_head;
      loop->ready_head = node->next;
      if (!loop->ready_head)
        loop->ready_tailp = &loop->ready_head;
      bool was_last = node == last;
      ak__qnode_run(node);
      if (was_last || --loop->ready_budget == 0)
        break;
    }
    loop->ready_budget = 1; /* a batch this one ran inside ends (above) */
    loop->dispatch_depth--;
  }
  flush_pool_tasks(loop); /* the pool tasks those callbacks submitted */
}

/* run_ready for wait_direct, whose common QD1 turn has nothing ready: out
 * of line, so that its registers are saved only when there is. */
static __attribute__((noinline)) void run_ready_outline(ak_loop *loop) { run_ready(loop); }

static bool has_queued_work(const ak_loop *loop) {
  return loop->ready_head != NULL || atomic_load_explicit(&loop->inbox, memory_order_relaxed) ||
         ak__lanes_pending(loop);
}

static unsigned alive_count(const ak_loop *loop) {
  /* holds before the inbox, acquire: a thread that posts and then unholds
   * must not be seen as idle with its post still in the inbox (the post's
   * push happens before the unhold's decrement). */
  unsigned holds = (unsigned)atomic_load_explicit(&loop->holds, memory_order_acquire);
  bool inbox = atomic_load_explicit(&loop->inbox, memory_order_relaxed) != NULL ||
               ak__lanes_pending(loop);
  return loop->ops_active + (unsigned)loop->timers.count + (unsigned)loop->alive_other + holds +
         (loop->ready_head != NULL) + inbox;
}

/* A run of CQEs of one batch op from head (the first of them, whose
 * user_data is data) on, none of them its last: their results written into
 * the caller's array in a tight loop, without the tag dispatch and a call
 * per CQE, then one ak__batch_cqes_recorded for the run and the CQ head
 * moved once past it (no user code runs here, so none can see them again).
 * A 32-op batch of NOPs spent a third of its instructions in its CQEs.
 * Stops before the batch's last CQE (ak__batch_ring_cqe settles the
 * batch), at a CQE of anything else and at tail. Returns the new head
 * (head itself when the run is empty: a chain's one CQE, a cancel reply or
 * the batch's last CQE). */
static unsigned reap_batch_run(ak_loop *loop, struct io_uring_cq *cq, unsigned head,
                               unsigned tail, uint64_t data) {
  if ((data & (AK__TAG_MASK | AK__BATCH_CANCEL_BIT)) != AK__TAG_MULTI)
    return head;
  ak__op *op = (ak__op *)(uintptr_t)(data & AK__TAG_PTR_MASK);
  ak__batch_data *bd = AK__OP_DATA(op, ak__batch_data);
  if (bd->skip || op->owed <= 1)
    return head;
  unsigned n = tail - head;
  if (n > (unsigned)op->owed - 1u)
    n = (unsigned)op->owed - 1u; /* the last CQE settles: not here */
  /* The CQEs of this op: every user_data bit below the index alike. */
  const uint64_t key = data << (64 - AK__TAG_INDEX_SHIFT);
  int64_t *results = bd->results;
  int res_or = 0;
  /* In (at most) two runs of slots: up to the CQ's end, from its start. */
  unsigned first = head & cq->ring_mask, wrap = cq->ring_mask + 1 - first;
  const struct io_uring_cqe *cqe = &cq->cqes[first];
  const struct io_uring_cqe *end = cqe + (n < wrap ? n : wrap);
  unsigned taken = 0;
  for (int part = 0; part < 2; part++) {
    const struct io_uring_cqe *from = cqe;
    for (; cqe != end; cqe++) {
      uint64_t d = cqe->user_data;
      if (d << (64 - AK__TAG_INDEX_SHIFT) != key)
        break;
      int res = cqe->res;
      results[d >> AK__TAG_INDEX_SHIFT] = res;
      res_or |= res;
    }
    taken += (unsigned)(cqe - from);
    if (cqe != end || n <= wrap)
      break;
    cqe = cq->cqes;
    end = cqe + (n - wrap);
  }
  if (taken > 0) {
    ak__batch_cqes_recorded(loop, op, bd, taken, res_or);
    io_uring_smp_store_release(cq->khead, head + taken);
  }
  return head + taken;
}

static void dispatch_cqe(ak_loop *loop, uint64_t data, int res, unsigned flags) {
  int tag = (int)(data & AK__TAG_MASK);
  void *ptr = (void *)(uintptr_t)(data & ~(uint64_t)AK__TAG_MASK);
  switch (tag) {
  case AK__TAG_WAKEUP:
    if (ptr == loop)
      wakeup_arrived(loop, res);
    else
      drain_probe_arrived(loop); /* &loop->drain_probe_tail */
    break;
  case AK__TAG_IGNORE:
    loop->reserved_inflight--;
    break;
  case AK__TAG_MULTI:
    ak__batch_ring_cqe(data, res);
    break;
  default:
    ak__op_cqe(ptr, res, flags, tag);
    break;
  }
}

/* Takes the CQEs one at a time: each is copied and the CQ head moved past
 * it before it is dispatched, so user code never runs while a CQE it could
 * see again sits in the ring (a wait inside a completion's callback reaps
 * only what follows). No batch on the stack, no call into liburing: a QD1
 * op's reap is a few loads, one store and its dispatch. At most one CQ's
 * worth per call, so a kernel that keeps posting (no DEFER_TASKRUN) cannot
 * hold the iteration here. */
static void reap(ak_loop *loop) {
  struct io_uring_cq *cq = &loop->ring.cq;
  unsigned mask = cq->ring_mask;
  unsigned head = *cq->khead;
  for (unsigned left = cq->ring_entries; left > 0; left--) {
    unsigned tail = io_uring_smp_load_acquire(cq->ktail);
    if (head == tail)
      break;
    const struct io_uring_cqe *cqe = &cq->cqes[head & mask];
    uint64_t data = cqe->user_data;
    if (data & AK__TAG_MULTI) { /* the one tag with that bit: one test */
      /* A batch's CQEs but its last, recorded as a run (at most left). */
      if (tail - head > left)
        tail = head + left;
      unsigned after = reap_batch_run(loop, cq, head, tail, data);
      if (after != head) {
        left -= after - head - 1;
        head = after;
        continue;
      }
    }
    int res = cqe->res;
    unsigned flags = cqe->flags;
    io_uring_smp_store_release(cq->khead, ++head);
    if (AK__UNLIKELY(ak__vg_running)) {
      /* What the kernel wrote is defined before anyone reads it (a tagged
       * user_data is no op's: not in valgrind.c's table). */
      ak__vg_op_cqe((void *)(uintptr_t)data, res, flags);
    }
    dispatch_cqe(loop, data, res, flags);
    head = *cq->khead; /* a nested wait may have reaped past us */
  }
}

/* wait_direct's reap: the QD1 wait wakes to one CQE, an op's own (tag 0),
 * taken here without reap's loop (whose registers, saved and restored, cost
 * as much as the CQE). Anything else (more CQEs, a tagged one, valgrind's
 * bookkeeping) goes to reap. As in reap, the head moves past the CQE before
 * it is dispatched. */
static inline void reap_direct(ak_loop *loop) {
  struct io_uring_cq *cq = &loop->ring.cq;
  unsigned head = *cq->khead;
  unsigned tail = io_uring_smp_load_acquire(cq->ktail);
  if (AK__LIKELY(tail - head == 1) && !AK__UNLIKELY(ak__vg_running)) {
    const struct io_uring_cqe *cqe = &cq->cqes[head & cq->ring_mask];
    uint64_t data = cqe->user_data;
    if (AK__LIKELY((data & AK__TAG_MASK) == AK__TAG_OP)) {
      int res = cqe->res;
      unsigned flags = cqe->flags;
      io_uring_smp_store_release(cq->khead, head + 1);
      ak__op *op = (ak__op *)(uintptr_t)data;
      if (!ak__op_cqe_plain(loop, op, res))
        ak__op_cqe(op, res, flags, AK__TAG_OP);
      return;
    }
  }
  if (head != tail)
    reap(loop);
}

/* Hands the SQ to the kernel and, if block, waits for a completion until
 * wait_until (AK_FOREVER: no limit). */
/* Announces that the loop is about to block and looks once more at what a
 * waker might have published meanwhile (pairs with ak__loop_wake). */
static bool may_sleep(ak_loop *loop, bool block_when_idle, bool (*done)(void *),
                      void *done_arg) {
  atomic_store_explicit(&loop->sleeping, 1, memory_order_seq_cst);
  if (atomic_load_explicit(&loop->inbox, memory_order_seq_cst) || ak__lanes_pending(loop) ||
      atomic_load_explicit(&loop->stop, memory_order_seq_cst) || (done && done(done_arg)) ||
      (!block_when_idle && alive_count(loop) == 0) /* an unhold meanwhile */) {
    atomic_store_explicit(&loop->sleeping, 0, memory_order_relaxed);
    return false;
  }
  return true;
}

/* SQPOLL: the kernel's SQ thread submits our ops and, for reads the page
 * cache serves, completes them without us entering the kernel. Sleeping in
 * io_uring_enter for every batch would put a wakeup into each round trip
 * (fio's io_uring engine never sleeps with SQPOLL: it spins on the CQ). So
 * spin on the CQ for a short while before sleeping: the SQ thread costs a
 * core anyway, and an idle loop still sleeps after SQPOLL_SPIN_NS. Returns
 * whether completions (or an overflow) are there to reap. */
enum { SQPOLL_SPIN_NS = 50000 };

static bool sqpoll_spin(ak_loop *loop, int64_t wait_until) {
  if (!(loop->features.setup_flags & IORING_SETUP_SQPOLL))
    return false;
  io_uring_submit(&loop->ring); /* publishes the SQ tail; wakes the SQ thread if it sleeps */
  int64_t until = ak_now_ns() + SQPOLL_SPIN_NS;
  if (wait_until != AK_FOREVER && wait_until < until)
    until = wait_until;
  for (unsigned i = 1;; i++) {
    if (io_uring_cq_ready(&loop->ring) || io_uring_cq_has_overflow(&loop->ring))
      return true;
    if ((i & 63) == 0 && ak_now_ns() >= until)
      return false;
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
  }
}

/* Batch waits (ak_loop_options.batch_wait_us). Each wakeup of a sleeping
 * loop costs a context switch, dear on these virtual machines; a streaming
 * load (32 sockets receiving, their writes completing) woke the loop for
 * nearly every completion. The kernel's min-wait (6.12+) lets one sleep
 * cover several: io_uring_enter waits for wait_nr completions, but returns
 * with fewer once min_wait_usec has passed and one is there; with
 * DEFER_TASKRUN the thread is not even woken before then. liburing 2.3
 * cannot pass min_wait_usec (its io_uring_getevents_arg calls the field
 * `pad`), so this enters the kernel itself. Returns false when the wait is
 * not one to batch; then *rc is untouched. */
enum { BATCH_MIN_OPS = 8, BATCH_MAX_WAIT_NR = 16 };

/* A wait's timeout: left nanoseconds (negative: none left). */
static struct __kernel_timespec wait_timespec(int64_t left) {
  if (left < 0)
    left = 0;
  return (struct __kernel_timespec){.tv_sec = left / AK__NS_PER_S, .tv_nsec = left % AK__NS_PER_S};
}

static bool batch_wait(ak_loop *loop, int64_t wait_until, int *rc) {
  if (!loop->features.batch_wait || loop->ops_active < BATCH_MIN_OPS)
    return false;
  /* The kernel sleeps at least min_wait_usec even when the whole wait is
   * shorter (it wakes at the later of the two), so a timer due sooner
   * shortens the batch window: timers keep their time. */
  int64_t left = wait_until == AK_FOREVER ? INT64_MAX : wait_until - ak_now_ns();
  int64_t min_wait_us = loop->opts.batch_wait_us;
  if (left / 1000 < min_wait_us)
    min_wait_us = left / 1000;
  if (min_wait_us <= 0)
    return false;
  unsigned wait_nr = loop->ops_active / 4;
  if (wait_nr > BATCH_MAX_WAIT_NR)
    wait_nr = BATCH_MAX_WAIT_NR;
  /* What is in the SQ, not sq_unsubmitted: a submit that failed (EAGAIN,
   * EBUSY) left its SQEs there, and the enter below submits nothing. */
  if (io_uring_sq_ready(&loop->ring) > 0) {
    int sub;
    do {
      sub = AK_FAULT_CALL(AK_FAULT_SUBMIT, io_uring_submit(&loop->ring));
    } while (sub == -EINTR);
    if (sub < 0) {
      *rc = sub;
      return true;
    }
  }
  /* "Forever" becomes an hour, after which the loop simply iterates again. */
  const int64_t hour = 3600 * AK__NS_PER_S;
  struct __kernel_timespec ts = wait_timespec(left < hour ? left : hour);
  struct io_uring_getevents_arg arg = {
      .sigmask = 0,
      .sigmask_sz = _NSIG / 8,
      .pad = (uint32_t)min_wait_us, /* min_wait_usec in kernels 6.12+ */
      .ts = (uint64_t)(uintptr_t)&ts,
  };
  unsigned flags = IORING_ENTER_GETEVENTS | IORING_ENTER_EXT_ARG;
  int fd = loop->ring.ring_fd;
  if (loop->features.registered_ring_fd) {
    fd = loop->ring.enter_ring_fd;
    flags |= IORING_ENTER_REGISTERED_RING;
  }
  long r = AK_FAULT_SYSCALL(AK_FAULT_SUBMIT, syscall(__NR_io_uring_enter, fd, 0, wait_nr, flags, &arg, sizeof(arg)));
  *rc = r < 0 ? -errno : 0;
  if (*rc == -EINVAL) {
    /* Not expected where the feature bit is set; wait as before from now on. */
    loop->features.batch_wait = false;
    loop->batch_waits = false;
    *rc = 0;
  }
  return true;
}

/* Whether the iteration must enter the kernel: to submit, to wait, or to
 * have completions posted (deferred task work runs only inside
 * io_uring_enter; an overflow is flushed there). Inline: an iteration with
 * only ready work asks it and goes on. */
static inline bool must_enter(const ak_loop *loop, bool block) {
  return loop->sq_unsubmitted > 0 || block ||
         (loop->ops_active + loop->reserved_inflight > 0 &&
          (loop->features.setup_flags & IORING_SETUP_DEFER_TASKRUN)) ||
         io_uring_cq_has_overflow(&loop->ring) ||
         (IO_URING_READ_ONCE(*loop->ring.sq.kflags) & IORING_SQ_TASKRUN);
}

/* Enters the kernel (must_enter said so). */
static int submit_and_wait(ak_loop *loop, bool block, int64_t wait_until) {
  int rc;
  if (!block) {
    rc = AK_FAULT_CALL(AK_FAULT_SUBMIT, io_uring_submit_and_get_events(&loop->ring));
  } else if (AK__UNLIKELY(ak__vg_running)) {
    rc = ak__vg_wait(&loop->ring, wait_until); /* never blocks in the ring */
  } else if (sqpoll_spin(loop, wait_until)) {
    rc = 0; /* completions came while spinning: no need to enter */
  } else if (batch_wait(loop, wait_until, &rc)) {
    /* slept for a batch of completions */
  } else if (wait_until == AK_FOREVER) {
    rc = AK_FAULT_CALL(AK_FAULT_SUBMIT, io_uring_submit_and_wait(&loop->ring, 1));
  } else {
    struct __kernel_timespec ts = wait_timespec(wait_until - ak_now_ns());
    struct io_uring_cqe *cqe;
    if (loop->features.ext_arg) {
      rc = AK_FAULT_CALL(AK_FAULT_SUBMIT, io_uring_submit_and_wait_timeout(&loop->ring, &cqe, 1, &ts, NULL));
    } else {
      /* Old kernels: a timeout op of our own bounds the wait; its CQE is
       * ignored and uses the slot reserved for that. */
      struct io_uring_sqe *sqe = ak__loop_get_sqe(loop);
      io_uring_prep_timeout(sqe, &loop->wait_ts, 1, 0);
      loop->wait_ts = ts;
      io_uring_sqe_set_data64(sqe, AK__TAG_IGNORE);
      loop->reserved_inflight++;
      rc = io_uring_submit_and_wait(&loop->ring, 1);
    }
  }
  if (AK__LIKELY(loop->sq_unsubmitted)) /* (the QD1 wait's op) */
    loop->stats.submits++;
  loop->sq_unsubmitted = rc < 0 ? unsubmitted_after_failure(loop) : 0;
  loop->last_sqe_op = NULL;
  if (rc == -ETIME || rc == -EINTR || rc == -EAGAIN || rc == -EBUSY)
    rc = 0; /* a timed-out or interrupted wait; EBUSY: CQ overflow, reap */
  return rc < 0 ? rc : 0;
}

/* An iteration pays for what it uses. With only ready work (a then-chain,
 * posts) it runs two batches and reads no clock (ak__loop_now is lazy),
 * enters no syscall (submit_and_wait finds nothing to submit or collect)
 * and looks at the lanes and the inbox once; the second look, after the
 * wait, is only for a wait that blocked, since what arrives while the loop
 * does not sleep is drained at the next iteration's start. */
static int iterate(ak_loop *loop, int64_t deadline, bool block_when_idle,
                   bool (*done)(void *arg), void *done_arg) {
  loop->stats.iterations++;
  loop->now_fresh = false;
  flush_pool_tasks(loop); /* e.g. submitted by a callback that now waits */
  drain_inbox(loop);
  if (loop->timers.count > 0) /* most iterations have none */
    ak__timers_run(loop, ak__loop_now(loop));
  run_ready(loop);

  /* Everything below is read after the callbacks ran, since any of them may
   * have made a timer, queued work, stopped the loop or submitted ops: the
   * wait's bound comes from the live timer heap, not from before. */
  bool block = deadline != 0 && !has_queued_work(loop) &&
               !atomic_load_explicit(&loop->stop, memory_order_relaxed) &&
               (block_when_idle || alive_count(loop) > 0) && !(done && done(done_arg));
  int64_t wait_until = deadline;
  if (block && loop->timers.count > 0) {
    int64_t next_timer = ak__timers_next(loop);
    if (wait_until == AK_FOREVER || next_timer < wait_until)
      wait_until = next_timer;
  }
  if (AK__UNLIKELY(loop->drain_mode))
    leave_drain_mode(loop);
  if (block && !may_sleep(loop, block_when_idle, done, done_arg))
    block = false;
  int rc = 0;
  if (AK__UNLIKELY(loop->ep != NULL))
    rc = ak__ep_wait(loop, block, wait_until);
  else if (must_enter(loop, block))
    rc = submit_and_wait(loop, block, wait_until);
  if (block)
    atomic_store_explicit(&loop->sleeping, 0, memory_order_relaxed);

  loop->now_fresh = false; /* the first timer (or completion, with latency
                              statistics) reads the clock */
  if (AK__UNLIKELY(loop->ep != NULL))
    ak__ep_reap(loop);
  else if (io_uring_cq_ready(&loop->ring) || io_uring_cq_has_overflow(&loop->ring))
    reap(loop); /* (a look at the CQ's tail first: most ready-only iterations have none) */
  if (loop->queued_head)
    ak__op_admit_queued(loop);
  if (block)
    drain_inbox(loop);
  if (loop->timers.count > 0)
    ak__timers_run(loop, ak__loop_now(loop));
  /* After ak_loop_stop, what the stopping batch scheduled waits for the
   * next run (asyncio's stop). */
  if (!atomic_load_explicit(&loop->stop, memory_order_relaxed))
    run_ready(loop);
  return rc;
}

/* io_uring_enter(2) itself, answering -errno (liburing's own wrappers do
 * the same): on x86-64 the syscall instruction inline, no libc call. No
 * signal mask (the kernel reads the size only with one). */
static inline long sys_io_uring_enter(int fd, unsigned to_submit, unsigned min_complete,
                                      unsigned flags) {
#if defined(__x86_64__)
  register long r10 __asm__("r10") = (long)flags;
  register long r8 __asm__("r8") = 0;
  register long r9 __asm__("r9") = 0;
  long ret;
  __asm__ volatile("syscall"
                   : "=a"(ret)
                   : "0"((long)__NR_io_uring_enter), "D"((long)fd), "S"((long)to_submit),
                     "d"((long)min_complete), "r"(r10), "r"(r8), "r"(r9)
                   : "rcx", "r11", "memory");
  return ret;
#else
  long r = syscall(__NR_io_uring_enter, fd, to_submit, min_complete, flags, NULL, 0);
  return r < 0 ? -errno : r;
#endif
}

/* The direct wait's submit-and-wait for one CQE: what liburing's
 * io_uring_submit_and_wait(ring, 1) does on a ring without SQPOLL (the
 * direct wait's), without its tests for the cases that are not this one:
 * the SQ tail published (a plain store: the kernel reads it inside the
 * enter), then one enter with GETEVENTS, through the registered ring fd
 * when there is one. About 15 instructions where liburing's took 42. */
static inline int submit_and_wait_one(ak_loop *loop) {
  struct io_uring_sq *sq = &loop->ring.sq;
  unsigned tail = sq->sqe_tail;
  if (AK__LIKELY(sq->sqe_head != tail)) { /* the QD1 wait's op is there */
    sq->sqe_head = tail;
    IO_URING_WRITE_ONCE(*sq->ktail, tail);
  }
  unsigned to_submit = tail - IO_URING_READ_ONCE(*sq->khead);
  return (int)sys_io_uring_enter(loop->ring.enter_ring_fd, to_submit, 1,
                                 IORING_ENTER_GETEVENTS | loop->enter_flags);
}

/* A direct wait's one enter (submit_and_wait_one, after may_sleep's
 * handshake set loop->sleeping) and its bookkeeping, in wait_direct and in
 * the QD1 wait. Returns 0, or the enter's error: a timed-out or
 * interrupted wait is none, and EBUSY (CQ overflow) leaves it to the reap. */
static inline int enter_direct(ak_loop *loop) {
  loop->stats.iterations++;
  int r = AK_FAULT_CALL(AK_FAULT_SUBMIT, submit_and_wait_one(loop));
  atomic_store_explicit(&loop->sleeping, 0, memory_order_relaxed);
  if (AK__LIKELY(loop->sq_unsubmitted)) /* (the QD1 wait's op) */
    loop->stats.submits++;
  loop->sq_unsubmitted = 0;
  loop->last_sqe_op = NULL;
  loop->now_fresh = false;
  if (AK__UNLIKELY(r < 0) && r != -ETIME && r != -EINTR && r != -EAGAIN && r != -EBUSY)
    return r;
  return 0;
}

/* What a direct wait does after its reap, in wait_direct and in the QD1
 * wait's way out (wait_local_after): admit the parked ops, take what was
 * posted while it slept, run the timers a completion's hook made and the
 * callbacks the completions queued. */
static inline void after_direct_reap(ak_loop *loop) {
  if (loop->queued_head)
    ak__op_admit_queued(loop);
  drain_inbox(loop); /* it slept: what arrived meanwhile */
  if (loop->timers.count > 0) /* made by a completion's hook */
    ak__timers_run(loop, ak__loop_now(loop));
  if (loop->ready_head || loop->pool_pend_n) {
    if (!atomic_load_explicit(&loop->stop, memory_order_relaxed))
      run_ready_outline(loop);
  }
}

/* The gate of the QD1 wait: direct_wait and wakeup_armed set, closing and
 * batch_waits not (one compare of the word they share). A loop with batch
 * waits takes the general way, whose wait_direct asks for their op count. */
static inline bool direct_gate_open(const ak_loop *loop) {
  union gate { /* the layout of the loop's (loop_internal.h) */
    struct {
      bool direct_wait, wakeup_armed, closing, batch_waits;
    } flags;
    uint32_t word;
  };
  return loop->direct_gate == ((union gate){.flags = {true, true, false, false}}).word;
}

/* The QD1 wait: a waiter on the owner thread whose loop has nothing to do
 * but wait for the ring (no ready callbacks, posts, lane hand-overs, timers,
 * parked ops or pool tasks to hand over; not stopping or closing) enters the
 * kernel at once: one submit-and-wait, the reap, and what the completions
 * queued. What a full iteration does before its wait would find nothing, and
 * the clock is read only by the completions that need it (the latency
 * histogram). Ring backend only, and not for SQPOLL (its spin), batch waits
 * or valgrind's wait. Whatever this cannot take (a timer: the wait must end
 * when it is due) takes the full iteration, so every promise holds: a post
 * from another thread wakes this wait through the armed eventfd read (the
 * `sleeping` handshake as in may_sleep), and what the reap made ready runs
 * before returning, as after a full iteration's wait. done_local: done(arg)
 * can become true only on this thread (ak__loop_wait_local), so it is
 * not looked at again after the handshake, which is there for a settle on
 * another thread. Returns false (the caller iterates) or true with *rc the
 * iteration's result. */
static inline __attribute__((always_inline)) bool
wait_direct(ak_loop *loop, bool (*done)(void *arg), void *arg, bool done_local, int *rc) {
  if (!loop->direct_wait || loop->ready_head || loop->timers.count || loop->queued_head ||
      loop->pool_pend_n || !loop->wakeup_armed || loop->closing ||
      (loop->features.batch_wait && loop->ops_active >= BATCH_MIN_OPS))
    return false;
  /* may_sleep's handshake, its calls made only when there is a lane. */
  atomic_store_explicit(&loop->sleeping, 1, memory_order_seq_cst);
  if (atomic_load_explicit(&loop->inbox, memory_order_seq_cst) ||
      (__atomic_load_n(&loop->lanes, __ATOMIC_SEQ_CST) && ak__lanes_pending(loop)) ||
      atomic_load_explicit(&loop->stop, memory_order_seq_cst) ||
      (!done_local && done && done(arg))) {
    atomic_store_explicit(&loop->sleeping, 0, memory_order_relaxed);
    return false; /* a post, a hand-over, a stop, or done meanwhile */
  }
  *rc = enter_direct(loop);
  reap_direct(loop);
  after_direct_reap(loop);
  return true;
}

int ak__loop_iterate(ak_loop *loop, int64_t deadline, bool (*done)(void *arg), void *arg) {
  int rc;
  if (deadline == AK_FOREVER && wait_direct(loop, done, arg, false, &rc))
    return rc;
  return iterate(loop, deadline, true, done, arg);
}

static bool future_settled(void *arg) { return ak_future_is_set(arg); }

static inline bool future_is_settled(ak_future *f) {
  return ak__is_settled_word(atomic_load_explicit(&f->state, memory_order_acquire));
}

/* ak__loop_wait_local's general way: direct waits or iterations until f
 * has settled. */
static __attribute__((noinline)) int wait_local_loop(ak_loop *loop, ak_future *f) {
  while (!future_is_settled(f)) {
    int rc;
    if (!wait_direct(loop, future_settled, f, true, &rc))
      rc = iterate(loop, AK_FOREVER, true, future_settled, f);
    if (rc < 0)
      return rc;
  }
  return 0;
}

/* What a direct wait does after its reap (wait_direct's tail), then the
 * general way on until f has settled (rc: the enter's result). */
static __attribute__((noinline)) int wait_local_after(ak_loop *loop, ak_future *f, int rc) {
  after_direct_reap(loop);
  if (rc < 0)
    return rc;
  return wait_local_loop(loop, f);
}

/* The lean wait found more than one plain CQE to reap, or an error. */
static __attribute__((noinline)) int wait_local_reap(ak_loop *loop, ak_future *f, int rc) {
  reap_direct(loop);
  return wait_local_after(loop, f, rc);
}

/* The lean wait's CQE was op's own but not its plain completion:
 * ak__op_cqe decides. */
static __attribute__((noinline)) int wait_local_cqe(ak_loop *loop, ak_future *f, ak__op *op,
                                                    int res, unsigned flags) {
  ak__op_cqe(op, res, flags, AK__TAG_OP);
  return wait_local_after(loop, f, 0);
}

/* The lean wait's settle was not the common one (how: what
 * ak__future_done_try left). Six arguments, all in registers, so that the
 * QD1 wait's calls here are jumps and it keeps no stack of its own. */
static __attribute__((noinline)) int wait_local_settle(ak_loop *loop, ak_future *f, ak__op *op,
                                                       int res, int how, uint32_t old) {
  ak__future_done_rest(&op->future, res, how, old);
  return wait_local_after(loop, f, 0);
}

/* The QD1 wait (ak_future_wait for an op's future, no deadline, on the
 * loop's thread): wait_direct and reap_direct for the common turn, one
 * enter and one CQE, the op's plain completion, settled inline, with
 * nothing else to do after, written so that every other case leaves by a
 * call made last (a jump: wait_local_loop, _reap, _cqe, _settle, _after), so
 * the common turn saves no registers. Those do what wait_direct does,
 * then go on the general way. */
int ak__loop_wait_local(ak_future *f, ak_loop *loop) {
  /* wait_direct's first test, its words or'ed and its flags compared as
   * one: this thread's own work (ready callbacks, timers, parked ops, pool
   * tasks to hand over), and the gate. */
  if (AK__UNLIKELY(((uintptr_t)loop->ready_head | (uintptr_t)loop->queued_head |
                    loop->timers.count | loop->pool_pend_n) != 0 ||
                   !direct_gate_open(loop)))
    return wait_local_loop(loop, f);
  /* may_sleep's handshake; a lane (a pool worker ever reported) takes the
   * general way, which asks ak__lanes_pending. f is not looked at again:
   * only this thread settles it (ak__loop_wait_local's contract). */
  atomic_store_explicit(&loop->sleeping, 1, memory_order_seq_cst);
  if (AK__UNLIKELY(((uintptr_t)atomic_load_explicit(&loop->inbox, memory_order_seq_cst) |
                    (uintptr_t)__atomic_load_n(&loop->lanes, __ATOMIC_SEQ_CST) |
                    (uintptr_t)atomic_load_explicit(&loop->stop, memory_order_seq_cst)) != 0)) {
    atomic_store_explicit(&loop->sleeping, 0, memory_order_relaxed);
    return wait_local_loop(loop, f);
  }
  int rc = enter_direct(loop);
  /* reap_direct's common case: one CQE, an op's own. (No valgrind test:
   * direct_wait is false under valgrind, which ak__vg_running says from
   * before the loop's start on.) */
  struct io_uring_cq *cq = &loop->ring.cq;
  unsigned *khead = cq->khead;
  unsigned head = *khead;
  unsigned tail = io_uring_smp_load_acquire(cq->ktail);
  if (AK__UNLIKELY(tail - head != 1 || rc != 0))
    return wait_local_reap(loop, f, rc);
  const struct io_uring_cqe *cqe = &cq->cqes[head & cq->ring_mask];
  uint64_t data = cqe->user_data;
  if (AK__UNLIKELY((data & AK__TAG_MASK) != AK__TAG_OP))
    return wait_local_reap(loop, f, rc);
  int res = cqe->res;
  unsigned flags = cqe->flags;
  io_uring_smp_store_release(khead, head + 1);
  ak__op *op = (ak__op *)(uintptr_t)data;
  if (AK__UNLIKELY(!ak__op_done_is_plain(loop, op, res)))
    return wait_local_cqe(loop, f, op, res, flags);
  /* ak__op_cqe_plain, its settle's calls made last. */
  ak__op_plain_account(loop, op);
  uint32_t old;
  int how = ak__future_done_try(&op->future, res, &old);
  /* (The contended case apart: its code is then set on its own way, not
   * ahead of the lock on the common one.) */
  if (AK__UNLIKELY(how == AK__DONE_RETRY))
    return wait_local_settle(loop, f, op, res, AK__DONE_RETRY, 0);
  if (AK__UNLIKELY(how != AK__DONE_OK))
    return wait_local_settle(loop, f, op, res, how, old);
  /* wait_direct's tail, when there is nothing for it to do. Parked ops,
   * timers, ready callbacks and pool tasks to hand over were none at the
   * start, and only this thread makes them: since then it entered the
   * kernel and settled op the common way (no callback, no waiter), which
   * makes none of them. What other threads hand over (posts, a pool
   * worker's lane) may have come while it slept. */
  if (AK__UNLIKELY(((uintptr_t)__atomic_load_n(&loop->lanes, __ATOMIC_RELAXED) |
                    (uintptr_t)atomic_load_explicit(&loop->inbox, memory_order_relaxed)) != 0))
    return wait_local_after(loop, f, 0);
  if (AK__LIKELY(&op->future == f))
    return 0; /* settled just now */
  return wait_local_loop(loop, f);
}

/* ---- 5. Run, stop, hold, post ------------------------------------------------ */

int ak_loop_run(ak_loop *loop, ak_run_mode mode) {
  if (!ak__loop_owned_by_caller(loop))
    return AK_ENOTOWNER;
  int rc = 0;
  unsigned alive;
  do {
    rc = iterate(loop, mode == AK_RUN_NOWAIT ? 0 : AK_FOREVER, false, NULL, NULL);
    alive = alive_count(loop);
  } while (rc == 0 && mode == AK_RUN_DEFAULT && alive > 0 &&
           !atomic_load_explicit(&loop->stop, memory_order_relaxed));
  atomic_store_explicit(&loop->stop, false, memory_order_relaxed);
  return rc < 0 ? rc : (int)alive;
}

void ak_loop_stop(ak_loop *loop) {
  atomic_store_explicit(&loop->stop, true, memory_order_relaxed);
  if (!ak__loop_owned_by_caller(loop))
    ak__loop_wake(loop);
}

void ak_loop_hold(ak_loop *loop) { atomic_fetch_add(&loop->holds, 1); }


void ak_loop_unhold(ak_loop *loop) {
  atomic_fetch_sub(&loop->holds, 1);
  ak__loop_wake(loop); /* a loop blocked only by the hold may now be idle */
}

void ak__loop_alive_add(ak_loop *loop, int delta) { loop->alive_other += delta; }

typedef struct ak__post {
  ak__qnode node;
  void (*fn)(void *arg);
  void *arg;
  ak_loop *loop;
} ak__post;

static void run_post(ak__qnode *node) {
  ak__post *post = AK__CONTAINER_OF(node, ak__post, node);
  post->loop->stats.posts++;
  post->fn(post->arg);
  ak__free(post);
}

int ak_loop_post(ak_loop *loop, void (*fn)(void *arg), void *arg) {
  ak__post *post = ak__malloc(sizeof(*post));
  if (!post)
    return -ENOMEM;
  post->node.run = run_post;
  post->fn = fn;
  post->arg = arg;
  post->loop = loop;
  if (ak__loop_owned_by_caller(loop))
    ready_push(loop, &post->node);
  else
    ak__loop_enqueue_remote(loop, &post->node);
  return 0;
}

ak_pool *ak__loop_pool(ak_loop *loop) {
  if (loop->opts.pool)
    return loop->opts.pool;
  return ak__shared_pool();
}

ak_pool *ak_loop_pool(ak_loop *loop) { return ak__loop_pool(loop); }

/* ---- ak_loop_call: run a callable on the loop's thread ----------------------
 * The future's fields: fn/fn_arg the callable, data the target loop. It is
 * made like a pool task (bound to the caller's own loop, if any, which
 * stays alive until the result reaches it) and runs from a post. */

static void loop_call_cancel(ak_future *f) {
  ak_future *adopted = __atomic_load_n(&f->adopted, __ATOMIC_SEQ_CST);
  if (ak_future_state(f) == AK_PENDING)
    ak__future_settle(f, AK_CANCELLED, -ECANCELED); /* the post will not run fn */
  else if (adopted)
    ak_future_cancel(adopted); /* fn ran and handed over */
  /* RUNNING: cooperative, see ak_future_cancel_requested. */
}

static const ak__future_kind loop_call_kind = {.name = "loop call", .cancel = loop_call_cancel};

static void run_loop_call(void *arg) {
  ak_future *f = arg; /* the post's reference */
  if (ak__future_start_running(f)) {
    ak_work_fn fn = (ak_work_fn)f->fn;
    ak__future_complete_callable(f, fn(f->fn_arg, f));
  }
  ak_future_release(f);
}

ak_future *ak_loop_call(ak_loop *loop, ak_work_fn fn, void *arg) {
  ak_future *f = ak__callable_future_new(&loop_call_kind, loop, fn, arg);
  if (!f)
    return NULL;
  ak_future_ref(f); /* the post's */
  if (ak_loop_post(loop, run_loop_call, f) < 0) {
    ak_future_release(f);
    ak_future_fail(f, -ENOMEM, "ak_loop_call");
  }
  return f;
}

/* ---- 6. Free, statistics, features ------------------------------------------ */

/* While freeing: nothing is left but the armed wakeup read, whose cancel is
 * not sent yet. Blocking then would wait for a wakeup nobody sends (the last
 * bound pool task's settle may have been taken by this very iteration). */
static bool free_only_wakeup_left(void *arg) {
  const ak_loop *loop = arg;
  return loop->ops_active == 0 && loop->alive_other == 0 && loop->reserved_inflight == 0 &&
         !loop->wakeup_cancel_sent;
}

void ak_loop_free(ak_loop *loop) {
  if (!loop)
    return;
  assert(ak__loop_owned_by_caller(loop));
  live_remove(loop); /* first: late callbacks from now on run without it */
  loop->closing = true;
  if (loop->stage) /* a builder outliving the loop must not reach it */
    ak__sq_stage_end(loop->stage, true);
  if (loop->ep)
    ak__ep_cancel_all(loop); /* first: ak_timeout's timers are the heap's */
  ak__timers_cancel_all(loop);
  ak__op_cancel_all(loop);
  /* Run until the kernel has given back every op (and so every buffer),
   * pool tasks bound to this loop have settled and their callbacks ran. */
  while (loop->ops_active > 0 || loop->alive_other > 0 || loop->reserved_inflight > 0 ||
         loop->wakeup_armed || has_queued_work(loop)) {
    if (loop->wakeup_armed && loop->ops_active == 0 && loop->alive_other == 0 &&
        !loop->wakeup_cancel_sent) {
      /* Last: pool tasks bound to the loop need the wakeup to report in. */
      struct io_uring_sqe *sqe = ak__loop_get_sqe(loop);
      io_uring_prep_cancel64(sqe, (uint64_t)(uintptr_t)loop | AK__TAG_WAKEUP, 0);
      io_uring_sqe_set_data64(sqe, AK__TAG_IGNORE);
      loop->reserved_inflight++;
      loop->wakeup_cancel_sent = true;
    }
    if (iterate(loop, AK_FOREVER, true, free_only_wakeup_left, loop) < 0)
      break;
  }
  /* A thread that handed us the last node may still be waking us. */
  while (atomic_load_explicit(&loop->remote_enqueuers, memory_order_acquire) != 0)
    sched_yield();
  ak__lanes_free(loop);
  ak__timers_free_all(loop);
  if (loop->ep)
    ak__ep_free(loop);
  else
    io_uring_queue_exit(&loop->ring);
  ak__sockets_free(loop);
  ak__buffers_free(loop);
  close(loop->eventfd);
  /* Unlinked wherever it sits in the thread's list (not only the tail). */
  if (loop->prev_current)
    loop->prev_current->next_current = loop->next_current;
  if (loop->next_current)
    loop->next_current->prev_current = loop->prev_current;
  else
    ak__current = loop->prev_current;
  ak__free(loop);
}

void ak_loop_stats_get(const ak_loop *loop, ak_loop_stats *stats) {
  *stats = loop->stats;
  stats->in_flight = loop->in_flight;
  stats->queued_now = loop->queued_count;
  stats->cq_overflows = loop->ep ? 0 : *loop->ring.cq.koverflow;
  ak_pool *pool = loop->opts.pool ? loop->opts.pool : NULL;
  stats->pool_queue_depth = pool ? ak_pool_queue_depth(pool) : 0;
}

void ak_loop_features(const ak_loop *loop, ak_features *features) {
  *features = loop->features;
}
