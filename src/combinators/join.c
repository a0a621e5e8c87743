/* join.c: join all (AsyncList) and join any. A join holds a reference to
 * each input and counts them down from their callbacks, which may run on
 * several threads at once, hence the atomics. The join future's data is the
 * record below. */
#include <string.h>

#include "combinators/internal.h"

typedef struct ak__join {
  size_t n;
  unsigned flags;
  bool any;                       /* join any, else join all */
  _Atomic size_t remaining;       /* inputs whose callback has not run */
  _Atomic size_t succeeded;
  _Atomic bool decided;           /* join any: a winner was taken */
  ak_future *inputs[];            /* references, in input order */
} ak__join;

static void cancel_pending_inputs(ak__join *j, const ak_future *except) {
  for (size_t i = 0; i < j->n; i++) {
    if (j->inputs[i] != except && !ak_future_is_set(j->inputs[i]))
      ak_future_cancel(j->inputs[i]);
  }
}

static void join_cancel(ak_future *f) {
  ak__join *j = f->data;
  ak__future_settle(f, AK_CANCELLED, -ECANCELED);
  cancel_pending_inputs(j, NULL);
}

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

static void input_settled(ak_future *input, void *arg) {
  ak_future *f = arg;
  ak__join *j = f->data;
  if (j->any) {
    if (!atomic_exchange(&j->decided, true)) {
      ak__future_settle(f, AK_DONE, (int64_t)index_of(j, input));
      if (j->flags & AK_JOIN_CANCEL_REST)
        cancel_pending_inputs(j, input);
    }
  } else if (ak_future_state(input) == AK_DONE) {
    atomic_fetch_add(&j->succeeded, 1);
  } else if (j->flags & AK_JOIN_FAIL_FAST) {
    if (ak__future_settle_like(f, input) && !(j->flags & AK__JOIN_NO_CANCEL))
      cancel_pending_inputs(j, input);
  }
  if (atomic_fetch_sub(&j->remaining, 1) == 1) {
    if (!j->any)
      ak__future_settle(f, AK_DONE, (int64_t)atomic_load(&j->succeeded));
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
  return join->kind == &join_kind ? ((const ak__join *)join->data)->n : 0;
}

ak_future *ak_join_input(const ak_future *join, size_t i) {
  if (join->kind != &join_kind)
    return NULL;
  const ak__join *j = join->data;
  return i < j->n ? j->inputs[i] : NULL;
}
