/* test_deep_chains.c: releasing and cancelling run in constant stack, as
 * future.h promises: then-chains and adoption chains of 1,000,000 links and
 * a join of joins 100,000 deep, each built, settled, cancelled and released
 * in a thread with a 256 KiB stack (one frame per link would overflow it
 * after a few thousand links), with every link's outcome checked and every
 * record given back to the allocator. */
#include "helpers.h"

#include <errno.h>
#include <stdlib.h>

enum { LINKS = 1000000, JOIN_DEPTH = 100000 };

/* Small enough that a recursion per link overflows it many times over. */
#define SMALL_STACK ((size_t)256 * 1024)

/* ---- What every case records ------------------------------------------------
 * The body runs on its own thread; cmocka asserts only on the test's thread,
 * so the body records and the test asserts after the join (which orders the
 * body's plain writes before the reads). */

typedef struct outcome {
  long done;      /* links whose callback saw DONE */
  long cancelled; /* ... saw CANCELLED with -ECANCELED */
  long other;     /* ... saw anything else (a wrong state or result) */
} outcome;

typedef struct deep {
  void (*body)(struct deep *d); /* runs on the small-stack thread */
  outcome seen;                 /* counted by each link's callback */
  int64_t want_result;          /* what a DONE link must carry */
  void *want_value;             /* ... and its value (NULL: not checked) */
  long steps;                   /* then-steps that ran */
  int setup_failures;           /* NULL futures, failed on_settle */
  int cancel_rc;                /* ak_future_cancel's return */
  ak_state head_state, tail_state;
  int64_t head_result, tail_result;
  int dtor_calls;               /* the shared value's destructor */
  ak_future *settled;           /* adoption chains: the input of every step */
  ak_future *end;               /* adoption chains: what the last step adopts */
  long links_left;              /* links whose own state was not as expected */
  long settled_before;          /* links settled before the settle or cancel */
} deep;

static void count_outcome(ak_future *f, void *arg)
{
  deep *d = arg;
  ak_state s = ak_future_state(f);
  int64_t r = ak_future_result(f);
  if (s == AK_DONE && r == d->want_result &&
      (!d->want_value || ak_future_value(f) == d->want_value))
    d->seen.done++;
  else if (s == AK_CANCELLED && r == -ECANCELED)
    d->seen.cancelled++;
  else
    d->seen.other++;
}

/* Adds the counting callback to a link of the chain (or notes the failure). */
static void watch(deep *d, ak_future *f)
{
  if (!f || ak_future_on_settle(f, count_outcome, d) != 0)
    d->setup_failures++;
}

static void *run_body(void *arg)
{
  deep *d = arg;
  d->body(d);
  return NULL;
}

/* Runs d->body on a thread with a 256 KiB stack and checks that every
 * allocation it made was given back (the thread's record caches are flushed
 * when it exits, before the join returns). */
static void run_deep(deep *d)
{
  t_alloc_stats before, after;
  t_alloc_get(&before);
  pthread_t t = t_thread_start(run_body, d, SMALL_STACK);
  t_thread_join(t);
  t_alloc_get(&after);
  assert_int_equal(d->setup_failures, 0);
  if (after.live != before.live)
    fail_msg("%lld blocks not freed after the release",
             (long long)(after.live - before.live));
}

/* ---- Then-chains: p -> t1 -> ... -> tN, pending on a promise ------------------ */

static int64_t counting_step(ak_future *input, void *arg, ak_future *self)
{
  (void)self;
  deep *d = arg;
  d->steps++;
  return ak_future_result(input) + 1;
}

/* Builds LINKS then-steps on p (borrowed). With links != NULL each link's
 * reference is kept there and the tail returned is links[LINKS - 1]
 * (borrowed); otherwise only the chain holds the links and the caller gets
 * the tail's reference. */
static ak_future *build_then_chain(deep *d, ak_future *p, ak_future **links)
{
  ak_future *prev = p;
  for (long i = 0; i < LINKS; i++) {
    ak_future *t = ak_then(prev, counting_step, d, NULL);
    if (!t) {
      d->setup_failures++;
      break;
    }
    watch(d, t);
    if (links)
      links[i] = t;
    else if (prev != p)
      ak_future_release(prev);
    prev = t;
  }
  return prev == p ? ak_future_ref(p) : prev;
}

/* Cancel the tail: the request walks back 1,000,000 links to the promise
 * (then_cancel cancelling its input used to recurse once per link), and the
 * CANCELLED comes forward through every link. */
static void cancel_then_tail_body(deep *d)
{
  ak_future *p = ak_future_new(NULL);
  if (!p) {
    d->setup_failures++;
    return;
  }
  ak_future *tail = build_then_chain(d, p, NULL);
  d->cancel_rc = ak_future_cancel(tail);
  d->head_state = ak_future_state(p);
  d->head_result = ak_future_result(p);
  d->tail_state = ak_future_state(tail);
  d->tail_result = ak_future_result(tail);
  ak_future_release(tail);
  ak_future_release(p);
}

static void test_cancel_tail_of_pending_then_chain(void **state)
{
  (void)state;
  deep d = {.body = cancel_then_tail_body};
  run_deep(&d);
  assert_int_equal(d.cancel_rc, 0);
  assert_int_equal(d.head_state, AK_CANCELLED); /* the request reached the promise */
  assert_int_equal(d.head_result, -ECANCELED);
  assert_int_equal(d.tail_state, AK_CANCELLED);
  assert_int_equal(d.tail_result, -ECANCELED);
  assert_int_equal(d.seen.cancelled, LINKS); /* every link, each once */
  assert_int_equal(d.seen.done, 0);
  assert_int_equal(d.seen.other, 0);
  assert_int_equal(d.steps, 0); /* cancellation skips every step */
}

/* The same chain with every link's reference held by the caller: cancelled
 * at the tail, each link is read, then all are released tail first. */
static void release_then_chain_body(deep *d)
{
  ak_future **links = malloc(LINKS * sizeof(*links));
  ak_future *p = ak_future_new(NULL);
  if (!links || !p) {
    d->setup_failures++;
    free(links);
    ak_future_release(p);
    return;
  }
  ak_future *tail = build_then_chain(d, p, links);
  d->cancel_rc = ak_future_cancel(tail);
  for (long i = 0; i < LINKS; i++) {
    if (ak_future_state(links[i]) != AK_CANCELLED)
      d->links_left++;
  }
  d->head_state = ak_future_state(p);
  d->tail_state = ak_future_state(tail);
  for (long i = LINKS; i-- > 0;) /* the tail first */
    ak_future_release(links[i]);
  ak_future_release(p);
  free(links);
}

static void test_release_then_chain_cancelled_at_tail(void **state)
{
  (void)state;
  deep d = {.body = release_then_chain_body};
  run_deep(&d); /* every record freed */
  assert_int_equal(d.cancel_rc, 0);
  assert_int_equal(d.links_left, 0);
  assert_int_equal(d.head_state, AK_CANCELLED);
  assert_int_equal(d.tail_state, AK_CANCELLED);
  assert_int_equal(d.seen.cancelled, LINKS);
  assert_int_equal(d.seen.other, 0);
  assert_int_equal(d.steps, 0);
}

/* ---- Adoption chains: each step adopts the next step's future ----------------
 * As a read-more loop builds them: step k runs on an already settled input
 * and returns ak_future_adopt(self, ak_then(settled, step)), until the last
 * step, which returns LINKS (or adopts d->end). The head adopts link 2,
 * which adopts link 3, ... so the head's release frees the whole chain from
 * inside free_extras (it used to recurse once per link). */

static void count_dtor(void *value)
{
  deep *d = value; /* runs on the releasing thread: the small-stack one */
  d->dtor_calls++;
}

static int64_t adopting_step(ak_future *input, void *arg, ak_future *self)
{
  (void)input;
  deep *d = arg;
  d->steps++;
  if (d->steps == LINKS) {
    if (d->end)
      return ak_future_adopt(self, ak_future_ref(d->end));
    /* The value stays the last link's; every adopter shows it. */
    ak_future_set_value(self, d, count_dtor);
    return LINKS;
  }
  ak_future *next = ak_then(d->settled, adopting_step, d, NULL);
  watch(d, next);
  if (!next)
    return -ENOMEM;
  return ak_future_adopt(self, next);
}

/* Runs the whole chain: the steps run from the settled input's callbacks,
 * on this thread's trampoline, inside ak_then. Returns the head. */
static ak_future *build_adoption_chain(deep *d)
{
  d->settled = ak_future_new(NULL);
  if (!d->settled || ak_future_set(d->settled, 0, NULL, NULL) != 0) {
    d->setup_failures++;
    return NULL;
  }
  ak_future *head = ak_then(d->settled, adopting_step, d, NULL);
  watch(d, head);
  return head;
}

static void release_adoption_chain_body(deep *d)
{
  ak_future *head = build_adoption_chain(d);
  if (head) {
    d->head_state = ak_future_state(head);
    d->head_result = ak_future_result(head);
  }
  ak_future_release(head); /* frees all 1,000,000 links */
  ak_future_release(d->settled);
}

static void test_release_settled_adoption_chain(void **state)
{
  (void)state;
  deep d = {.body = release_adoption_chain_body, .want_result = LINKS};
  d.want_value = &d;
  run_deep(&d); /* every record freed */
  assert_int_equal(d.steps, LINKS);
  assert_int_equal(d.head_state, AK_DONE);
  assert_int_equal(d.head_result, LINKS);
  assert_int_equal(d.seen.done, LINKS); /* each link DONE with the last's result and value */
  assert_int_equal(d.seen.cancelled, 0);
  assert_int_equal(d.seen.other, 0);
  assert_int_equal(d.dtor_calls, 1); /* the value freed once, with the last link */
}

/* The last step adopts a pending promise; cancelling the head walks the
 * request down 1,000,000 adoptions to it, and CANCELLED comes back up. */
static void cancel_adoption_chain_body(deep *d)
{
  d->end = ak_future_new(NULL);
  if (!d->end) {
    d->setup_failures++;
    return;
  }
  ak_future *head = build_adoption_chain(d);
  if (head) {
    d->tail_state = ak_future_state(d->end); /* before: still pending */
    d->settled_before = d->seen.done + d->seen.cancelled + d->seen.other;
    d->cancel_rc = ak_future_cancel(head);
    d->head_state = ak_future_state(head);
    d->head_result = ak_future_result(head);
  }
  ak_future_release(head);
  d->tail_result = ak_future_result(d->end);
  ak_future_release(d->end);
  ak_future_release(d->settled);
}

static void test_cancel_pending_adoption_chain(void **state)
{
  (void)state;
  deep d = {.body = cancel_adoption_chain_body};
  run_deep(&d); /* every record freed */
  assert_int_equal(d.steps, LINKS);
  assert_int_equal(d.tail_state, AK_PENDING);
  assert_int_equal(d.settled_before, 0); /* no link had settled before the cancel */
  assert_int_equal(d.cancel_rc, 0);
  assert_int_equal(d.head_state, AK_CANCELLED);
  assert_int_equal(d.head_result, -ECANCELED);
  assert_int_equal(d.tail_result, -ECANCELED); /* the adopted promise itself */
  assert_int_equal(d.seen.cancelled, LINKS);
  assert_int_equal(d.seen.done, 0);
  assert_int_equal(d.seen.other, 0);
}

/* ---- A join of joins: j1 = join_all({p}), j2 = join_all({j1}), ... ------------
 * A join holds its input until it is freed, so releasing the outermost frees
 * 100,000 joins from inside each other's free. */

/* Builds JOIN_DEPTH joins over p, each held only by the next; returns the
 * outermost. */
static ak_future *build_join_chain(deep *d, ak_future *p)
{
  ak_future *prev = ak_future_ref(p);
  for (long i = 0; i < JOIN_DEPTH; i++) {
    ak_future *j = ak_join_all(&prev, 1, 0);
    if (!j) {
      d->setup_failures++;
      break;
    }
    watch(d, j);
    ak_future_release(prev);
    prev = j;
  }
  return prev;
}

static void settle_release_joins_body(deep *d)
{
  ak_future *p = ak_future_new(NULL);
  if (!p) {
    d->setup_failures++;
    return;
  }
  ak_future *outer = build_join_chain(d, p);
  d->settled_before = d->seen.done + d->seen.cancelled + d->seen.other;
  ak_future_set(p, 7, NULL, NULL); /* settles all 100,000, innermost first */
  d->head_state = ak_future_state(p);
  d->tail_state = ak_future_state(outer);
  d->tail_result = ak_future_result(outer);
  ak_future_release(p);
  ak_future_release(outer); /* frees all 100,000 */
}

static void test_settle_and_release_join_of_joins(void **state)
{
  (void)state;
  deep d = {.body = settle_release_joins_body, .want_result = 1};
  run_deep(&d); /* every record freed */
  assert_int_equal(d.settled_before, 0); /* none settled before p */
  assert_int_equal(d.head_state, AK_DONE);
  assert_int_equal(d.tail_state, AK_DONE);
  assert_int_equal(d.tail_result, 1); /* its one input succeeded */
  assert_int_equal(d.seen.done, JOIN_DEPTH);
  assert_int_equal(d.seen.cancelled, 0);
  assert_int_equal(d.seen.other, 0);
}

static void cancel_joins_body(deep *d)
{
  ak_future *p = ak_future_new(NULL);
  if (!p) {
    d->setup_failures++;
    return;
  }
  ak_future *outer = build_join_chain(d, p);
  d->settled_before = d->seen.done + d->seen.cancelled + d->seen.other;
  d->cancel_rc = ak_future_cancel(outer); /* walks in to p */
  d->head_state = ak_future_state(p);
  d->head_result = ak_future_result(p);
  d->tail_state = ak_future_state(outer);
  ak_future_release(outer);
  ak_future_release(p);
}

static void test_cancel_outermost_join_of_joins(void **state)
{
  (void)state;
  deep d = {.body = cancel_joins_body};
  run_deep(&d); /* every record freed */
  assert_int_equal(d.settled_before, 0);
  assert_int_equal(d.cancel_rc, 0);
  assert_int_equal(d.tail_state, AK_CANCELLED);
  assert_int_equal(d.head_state, AK_CANCELLED); /* the request reached the innermost input */
  assert_int_equal(d.head_result, -ECANCELED);
  assert_int_equal(d.seen.cancelled, JOIN_DEPTH);
  assert_int_equal(d.seen.done, 0);
  assert_int_equal(d.seen.other, 0);
}

int main(void)
{
  t_alloc_install(); /* before any other ak_ call: counts what is freed */
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_cancel_tail_of_pending_then_chain),
      cmocka_unit_test(test_release_then_chain_cancelled_at_tail),
      cmocka_unit_test(test_release_settled_adoption_chain),
      cmocka_unit_test(test_cancel_pending_adoption_chain),
      cmocka_unit_test(test_settle_and_release_join_of_joins),
      cmocka_unit_test(test_cancel_outermost_join_of_joins),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
