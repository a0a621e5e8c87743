/* loop_lane.c: lanes, the hand-over from a pool worker into a loop: one
 * single-producer, single-consumer queue per (worker thread, loop), made of
 * arrays of node pointers linked as they fill. Owns the lanes' memory, the
 * worker's cache of its lane, draining into the ready queue, and the checks
 * the loop makes before it sleeps or is freed.
 *
 * Why not the inbox: every settle of a pool task reaches its loop here, and
 * the inbox (a Treiber stack) makes the loop walk a linked list whose nodes
 * another core just wrote, one cache miss after the other, and reverse it;
 * profiles of 1M pool tasks put a fifth of the loop thread's time in that
 * walk, plus two read-modify-writes per push on a line three threads share.
 * A lane is an array: the loop knows the next nodes before it touches them
 * and prefetches them, so the misses overlap; the worker pushes with plain
 * stores and one fence. Order is kept per worker (one FIFO); ordering
 * between threads was never promised.
 *
 * Only pool workers use lanes: they are few and live as long as their pool,
 * and a loop keeps one lane per worker that ever reported to it, until the
 * loop is freed. Other threads (posts, timers) keep the inbox.
 */
#include <sched.h>
#include <stdlib.h>

#include "core/loop_internal.h"

enum { AK__LANE_SEG_SLOTS = 254 }; /* a segment is 2 KiB */

typedef struct ak__lane_seg {
  struct ak__lane_seg *next;  /* the newer segment, once this one is full */
  uint32_t written;           /* slots filled (release by the producer) */
  ak__qnode *slot[AK__LANE_SEG_SLOTS];
} ak__lane_seg;

struct ak__lane {
  ak__lane *next_lane;        /* the loop's list of lanes */
  const void *thread;         /* the producing thread's token */
  /* The producer's. */
  ak__lane_seg *tail_seg;
  uint32_t tail_idx;
  uint32_t pushing;           /* inside ak__lane_push (atomic): see loop free */
  char pad_[64];
  /* The loop's. */
  ak__lane_seg *head_seg;
  uint32_t head_idx;
  ak__lane_seg *spare;        /* an emptied segment for the producer (atomic) */
};

/* The worker's lane into the loop it last reported to: almost always the
 * only one. The id tells a freed loop from a new one at the same address. */
static AK__TLS struct {
  ak_loop *loop;
  uint64_t loop_id;
  ak__lane *lane;             /* NULL: none could be made; use the inbox */
} ak__lane_cache;

static AK__TLS bool ak__lane_user; /* this thread is a pool worker */

static _Atomic uint64_t ak__next_loop_id = 1;

void ak__lanes_init(ak_loop *loop) {
  loop->id = atomic_fetch_add_explicit(&ak__next_loop_id, 1, memory_order_relaxed);
  loop->lanes = NULL;
  pthread_mutex_init(&loop->lanes_mu, NULL);
}

void ak__lane_thread_enable(void) { ak__lane_user = true; }

static ak__lane_seg *seg_new(void) {
  ak__lane_seg *seg = ak__malloc(sizeof(*seg));
  if (seg) {
    seg->next = NULL;
    seg->written = 0;
  }
  return seg;
}

/* Finds or makes the calling thread's lane into loop (NULL on ENOMEM). */
static ak__lane *lane_lookup(ak_loop *loop) {
  const void *me = ak__thread_token();
  pthread_mutex_lock(&loop->lanes_mu);
  ak__lane *lane = __atomic_load_n(&loop->lanes, __ATOMIC_RELAXED);
  while (lane && lane->thread != me)
    lane = lane->next_lane;
  if (!lane) {
    lane = ak__calloc(1, sizeof(*lane));
    ak__lane_seg *seg = lane ? seg_new() : NULL;
    if (seg) {
      lane->thread = me;
      lane->tail_seg = lane->head_seg = seg;
      lane->next_lane = loop->lanes;
      /* The loop walks the list without the lock: publish a whole lane. */
      __atomic_store_n(&loop->lanes, lane, __ATOMIC_RELEASE);
    } else {
      ak__free(lane);
      lane = NULL;
    }
  }
  pthread_mutex_unlock(&loop->lanes_mu);
  return lane;
}

/* Appends node; false if memory for a new segment ran out. */
static bool lane_push(ak__lane *lane, ak__qnode *node) {
  ak__lane_seg *seg = lane->tail_seg;
  uint32_t i = lane->tail_idx;
  if (AK__UNLIKELY(i == AK__LANE_SEG_SLOTS)) {
    ak__lane_seg *fresh = __atomic_exchange_n(&lane->spare, NULL, __ATOMIC_ACQUIRE);
    if (fresh) {
      fresh->next = NULL;
      fresh->written = 0;
    } else if (!(fresh = seg_new())) {
      return false;
    }
    __atomic_store_n(&seg->next, fresh, __ATOMIC_RELEASE);
    lane->tail_seg = seg = fresh;
    i = 0;
  }
  seg->slot[i] = node;
  __atomic_store_n(&seg->written, i + 1, __ATOMIC_RELEASE);
  lane->tail_idx = i + 1;
  return true;
}

bool ak__lane_push(ak_loop *loop, ak__qnode *node) {
  if (!ak__lane_user)
    return false;
  if (AK__UNLIKELY(ak__lane_cache.loop != loop || ak__lane_cache.loop_id != loop->id)) {
    ak__lane_cache.lane = lane_lookup(loop);
    ak__lane_cache.loop = loop;
    ak__lane_cache.loop_id = loop->id;
  }
  ak__lane *lane = ak__lane_cache.lane;
  /* Once a lane exists every node goes through it (FIFO); only a thread
   * that never got one, or a segment allocation that failed, uses the inbox,
   * and then order with the lane's earlier nodes is not kept. */
  if (AK__UNLIKELY(!lane))
    return false;
  /* Set before the push (its release orders it): once the loop has seen
   * the node, ak_loop_free waits for us to finish waking it. */
  __atomic_store_n(&lane->pushing, 1, __ATOMIC_RELAXED);
  if (AK__UNLIKELY(!lane_push(lane, node))) {
    __atomic_store_n(&lane->pushing, 0, __ATOMIC_RELEASE);
    return false;
  }
  /* Pairs with may_sleep: either the loop sees the node, or we see it
   * sleeping and wake it. */
  atomic_thread_fence(memory_order_seq_cst);
  ak__loop_wake(loop);
  __atomic_store_n(&lane->pushing, 0, __ATOMIC_RELEASE);
  return true;
}

/* How far ahead the drain prefetches. The nodes are almost all futures'
 * qnodes, which share the first line of their future with everything its
 * dispatch reads (struct ak_future). */
enum { AK__LANE_PREFETCH = 8 };

/* Moves one lane's nodes to the ready queue (owner thread). */
static void lane_drain(ak_loop *loop, ak__lane *lane) {
  ak__lane_seg *seg = lane->head_seg;
  uint32_t i = lane->head_idx;
  for (;;) {
    uint32_t end = __atomic_load_n(&seg->written, __ATOMIC_ACQUIRE);
    for (uint32_t p = i; p < end && p < i + AK__LANE_PREFETCH; p++)
      __builtin_prefetch(seg->slot[p], 1, 3);
    for (; i < end; i++) {
      if (i + AK__LANE_PREFETCH < end)
        __builtin_prefetch(seg->slot[i + AK__LANE_PREFETCH], 1, 3);
      ak__ready_push(loop, seg->slot[i]);
    }
    if (i < AK__LANE_SEG_SLOTS)
      break;
    ak__lane_seg *next = __atomic_load_n(&seg->next, __ATOMIC_ACQUIRE);
    if (!next)
      break;
    /* The producer has moved on for good: recycle seg. */
    ak__lane_seg *old = __atomic_exchange_n(&lane->spare, seg, __ATOMIC_RELEASE);
    ak__free(old);
    seg = next;
    i = 0;
  }
  lane->head_seg = seg;
  lane->head_idx = i;
}

void ak__lanes_drain(ak_loop *loop) {
  for (ak__lane *lane = __atomic_load_n(&loop->lanes, __ATOMIC_ACQUIRE); lane;
       lane = lane->next_lane)
    lane_drain(loop, lane);
}

bool ak__lanes_pending(const ak_loop *loop) {
  for (ak__lane *lane = __atomic_load_n(&loop->lanes, __ATOMIC_ACQUIRE); lane;
       lane = lane->next_lane) {
    ak__lane_seg *seg = lane->head_seg;
    if (__atomic_load_n(&seg->written, __ATOMIC_SEQ_CST) > lane->head_idx ||
        __atomic_load_n(&seg->next, __ATOMIC_SEQ_CST) != NULL)
      return true;
  }
  return false;
}

void ak__lanes_free(ak_loop *loop) {
  ak__lane *lane = loop->lanes;
  while (lane) {
    /* A worker that handed us its last node may still be waking us. */
    while (__atomic_load_n(&lane->pushing, __ATOMIC_ACQUIRE))
      sched_yield();
    ak__lane *next = lane->next_lane;
    for (ak__lane_seg *seg = lane->head_seg; seg;) {
      ak__lane_seg *after = seg->next;
      ak__free(seg);
      seg = after;
    }
    ak__free(lane->spare);
    ak__free(lane);
    lane = next;
  }
  loop->lanes = NULL;
  pthread_mutex_destroy(&loop->lanes_mu);
}
