/* join.c: join all (AsyncList) and join any. A join holds a reference to
 * each input and counts them down from their callbacks, which may run on
 * several threads at once, hence the atomics. The join future's data is the
 * record below.
 *
 * A join that cancels inputs (fail-fast, CANCEL_REST, a cancel of the join
 * itself) settles only once every input has settled: the inputs' buffers
 * are the caller's again when the join says it is over. Only dataflow's
 * internal fail-fast join (AK__JOIN_NO_CANCEL), which cancels nothing,
 * settles at the first failure. */
#include <string.h>

#include "combinators/internal.h"

typedef struct ak__join {
  size_t n;
  unsigned flags;
  bool any;                       /* join any, else join all */
  _Atomic size_t remaining;       /* inputs whose callback has not run */
  _Atomic size_t succeeded;
  _Atomic bool decided;           /* join any: a winner was taken */
  _Atomic size_t winner;          /* join any: the winner's index */
  _Atomic size_t failed;          /* fail-fast: the first failure, or NONE */
  ak_future *inputs[];            /* references, in input order */
} ak__join;

static void cancel_pending_inputs(ak__join *j, const ak_future *except) {
  for (size_t i = 0; i < j->n; i++) {
    if (j->inputs[i] != except && !ak_future_is_set(j->inputs[i]))
      ak_future_cancel(j->inputs[i]);
  }
}

#define NONE SIZE_MAX

/* The join settles CANCELLED when the last input has settled (finish). */
static void join_cancel(ak_future *f) { cancel_pending_inputs(f->data, NULL); }

static void join_free(ak_future *f) {
  ak__join *j = f->data;
  for (size_t i = 0; i < j->n; i++)
    ak_future_release(j->inputs[i]);
  ak__free(j);
}

static const ak__future_kind join_kind = {
    .name = "join", .cancel = join_cancel, .free_data = join_free};

static size_t index_of(const ak__join *j, const ak_future *input) {
  for (size_t i = 0; i < j->n; i++) {
    if (j->inputs[i] == input)
      return i;
  }
  return j->n; /* NEVER: every callback comes from an input */
}

/* Every input has settled: the join's outcome. */
static void finish(ak_future *f, ak__join *j) {
  size_t failed = atomic_load(&j->failed);
  if (ak_future_cancel_requested(f))
    ak__future_settle(f, AK_CANCELLED, -ECANCELED);
  else if (j->any)
    ak__future_settle(f, AK_DONE, (int64_t)atomic_load(&j->winner));
  else if (failed != NONE)
    ak__future_settle_like(f, j->inputs[failed]);
  else
    ak__future_settle(f, AK_DONE, (int64_t)atomic_load(&j->succeeded));
}

/* Whether the join may settle before its last input: only when it cancels
 * none of them (the caller knows the rest run on). */
static bool settles_early(const ak__join *j, const ak_future *f) {
  return !ak_future_cancel_requested(f) &&
         (j->any ? !(j->flags & AK_JOIN_CANCEL_REST) : (j->flags & AK__JOIN_NO_CANCEL) != 0);
}

static void input_settled(ak_future *input, void *arg) {
  ak_future *f = arg;
  ak__join *j = f->data;
  size_t none = NONE;
  if (j->any) {
    if (!atomic_exchange(&j->decided, true)) {
      size_t i = index_of(j, input);
      atomic_store(&j->winner, i);
      if (settles_early(j, f))
        ak__future_settle(f, AK_DONE, (int64_t)i);
      else if (j->flags & AK_JOIN_CANCEL_REST)
        cancel_pending_inputs(j, input);
    }
  } else if (ak_future_state(input) == AK_DONE) {
    atomic_fetch_add(&j->succeeded, 1);
  } else if (!(j->flags & AK_JOIN_FAIL_FAST)) {
    /* join all waits for every input; failures only count as not DONE */
  } else if (settles_early(j, f)) {
    ak__future_settle_like(f, input);
  } else if (atomic_compare_exchange_strong(&j->failed, &none, index_of(j, input))) {
    cancel_pending_inputs(j, input);
  }
  if (atomic_fetch_sub(&j->remaining, 1) == 1) {
    finish(f, j);
    ak_future_release(f); /* the inputs' shared reference */
  }
}

static ak_future *join_new(ak_future *const *inputs, size_t n, unsigned flags, bool any) {
  if (n > (SIZE_MAX - sizeof(ak__join)) / sizeof(ak_future *))
    return NULL;
  ak__join *j = ak__malloc(sizeof(*j) + n * sizeof(ak_future *));
  if (!j)
    return NULL;
  j->n = n;
  j->flags = flags;
  j->any = any;
  atomic_init(&j->remaining, n);
  atomic_init(&j->succeeded, 0);
  atomic_init(&j->decided, false);
  atomic_init(&j->winner, 0);
  atomic_init(&j->failed, NONE);
  ak_loop *loop = NULL;
  for (size_t i = 0; i < n; i++) {
    j->inputs[i] = ak_future_ref(inputs[i]);
    if (!loop)
      loop = inputs[i]->loop;
  }
  ak_future *f = ak__future_new(loop, &join_kind, j);
  if (!f) {
    for (size_t i = 0; i < n; i++)
      ak_future_release(j->inputs[i]);
    ak__free(j);
    return NULL;
  }
  if (n == 0) {
    ak__future_settle(f, AK_DONE, 0);
    return f;
  }
  ak_future_ref(f); /* shared by the inputs' callbacks, dropped by the last */
  for (size_t i = 0; i < n; i++) {
    if (ak_future_on_settle(j->inputs[i], input_settled, f) < 0) {
      /* ENOMEM: this input will never count down; fail the join and
       * account for every callback not registered. */
      ak_future_fail(f, -ENOMEM, "join: callback");
      size_t missing = n - i;
      if (atomic_fetch_sub(&j->remaining, missing) == missing)
        ak_future_release(f);
      break;
    }
  }
  return f;
}

ak_future *ak_join_all(ak_future *const *inputs, size_t n, unsigned flags) {
  return join_new(inputs, n, flags, false);
}

ak_future *ak_join_any(ak_future *const *inputs, size_t n, unsigned flags) {
  if (n == 0)
    return NULL;
  return join_new(inputs, n, flags, true);
}

size_t ak_join_count(const ak_future *join) {
  if (join->kind == &ak__map_kind)
    return ak__map_count(join);
  return join->kind == &join_kind ? ((const ak__join *)join->data)->n : 0;
}

ak_future *ak_join_input(const ak_future *join, size_t i) {
  if (join->kind == &ak__map_kind)
    return ak__map_input(join, i);
  if (join->kind != &join_kind)
    return NULL;
  const ak__join *j = join->data;
  return i < j->n ? j->inputs[i] : NULL;
}
