/* tls/session_cache.c: a client config's resumption cache, for both
 * engines. It owns the table: one saved session per key ("host:port", made
 * by pump.c), a bound on the number of keys (the least recently used key
 * goes when a new one needs room), the newest session for a key replacing
 * the older, and the lock that lets sessions on several loops share one
 * config. It does not know what a session is: the engine's calls (engine.h)
 * hand one in (take_session: a copy the cache then owns), offer one to an
 * engine session (offer: the engine copies what it keeps, so nothing a
 * live connection does can spoil the cached one) and free one.
 */
#include <assert.h>
#include <pthread.h>
#include <string.h>

#include "tls/internal.h"

typedef struct slot {
  char *key;          /* "host:port", owned; NULL: an empty slot */
  ak__tls_sess *sess; /* owned (the engine's type); set when key is */
  uint64_t used;      /* clock of the last store or offer, for eviction */
} slot;

struct ak__tls_session_cache {
  const ak__tls_engine_ops *ops; /* the engine whose sessions these are */
  pthread_mutex_t lock;          /* guards slots[] and clock */
  uint64_t clock;                /* ticks at each store and offer */
  unsigned nslots;
  slot slots[];                  /* nslots */
};

int ak__tls_session_cache_new(const ak__tls_engine_ops *ops, unsigned nslots,
                              ak__tls_session_cache **out) {
  assert(nslots > 0);
  *out = NULL;
  ak__tls_session_cache *c = ak__calloc(1, sizeof(*c) + (size_t)nslots * sizeof(slot));
  if (!c)
    return -ENOMEM;
  c->ops = ops;
  c->nslots = nslots;
  pthread_mutex_init(&c->lock, NULL);
  *out = c;
  return 0;
}

void ak__tls_session_cache_free(ak__tls_session_cache *c) {
  if (!c)
    return;
  for (unsigned i = 0; i < c->nslots; i++) {
    if (c->slots[i].key) {
      ak__free(c->slots[i].key);
      c->ops->sess_free(c->slots[i].sess);
    }
  }
  pthread_mutex_destroy(&c->lock);
  ak__free(c);
}

size_t ak__tls_session_cache_count(ak__tls_session_cache *c) {
  size_t count = 0;
  pthread_mutex_lock(&c->lock);
  for (unsigned i = 0; i < c->nslots; i++)
    count += c->slots[i].key != NULL;
  pthread_mutex_unlock(&c->lock);
  return count;
}

/* key's slot, or NULL. Under the lock. */
static slot *find(ak__tls_session_cache *c, const char *key) {
  for (unsigned i = 0; i < c->nslots; i++)
    if (c->slots[i].key && strcmp(c->slots[i].key, key) == 0)
      return &c->slots[i];
  return NULL;
}

/* Where a new key goes: an empty slot, else the least recently used. */
static slot *room_for_new_key(ak__tls_session_cache *c) {
  slot *lru = &c->slots[0];
  for (unsigned i = 0; i < c->nslots; i++) {
    if (!c->slots[i].key)
      return &c->slots[i];
    if (c->slots[i].used < lru->used)
      lru = &c->slots[i];
  }
  return lru;
}

bool ak__tls_session_cache_offer(ak__tls_session_cache *c, const char *key, ak__tls_eng *e) {
  bool offered = false;
  pthread_mutex_lock(&c->lock);
  slot *s = find(c, key);
  /* Under the lock: the engine copies the session before another thread
   * can replace (and free) it. */
  if (s && c->ops->eng_offer(e, s->sess)) {
    s->used = ++c->clock;
    offered = true;
  }
  pthread_mutex_unlock(&c->lock);
  return offered;
}

void ak__tls_session_cache_put(ak__tls_session_cache *c, const char *key, ak__tls_sess *sess) {
  pthread_mutex_lock(&c->lock);
  slot *s = find(c, key);
  if (s) {
    c->ops->sess_free(s->sess); /* the newest wins */
  } else {
    char *copy = ak__strdup(key);
    if (!copy) {
      pthread_mutex_unlock(&c->lock);
      c->ops->sess_free(sess); /* out of memory: not kept, the old stays */
      return;
    }
    s = room_for_new_key(c);
    if (s->key) {
      ak__free(s->key);
      c->ops->sess_free(s->sess);
    }
    s->key = copy;
  }
  s->sess = sess;
  s->used = ++c->clock;
  pthread_mutex_unlock(&c->lock);
}
