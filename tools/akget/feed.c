/* feed.c: the items of a run as the downloads go. A reader thread of its
 * own turns the command-line URLs, then each -i list (input_list.c), into
 * items: --shard's choice, the URL checked, credentials, the checksum,
 * header= lines, the output path (names.c), -N's look at the file already
 * there (timestamp.c). They wait in a bounded queue
 * (twice -j, at least 32) that the workers take from; when it is full the
 * reader waits, so a list of millions is never held: memory follows -j,
 * and a list on a pipe is read while the first downloads run.
 *
 * An entry the list gets wrong (an unknown key, out= leaving -d, a second
 * entry with the same out=, a URL that does not parse) is not downloaded:
 * it is said with its line, counted failed with exit 2 and reported in
 * --json, and the list goes on (a run of hours is not thrown away for its
 * line 1,900,000; the exit status still says so). aria2 likewise skips a
 * bad entry's download and carries on.
 *
 * It also owns an item's end: counted, reported, freed (akg_item_end),
 * its block kept for a later item (item_new). */
#define _GNU_SOURCE /* pthread_timedjoin_np, sched_setaffinity */
#include "akget.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <time.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { MAX_HUNGRY = 64 }; /* --threads' maximum */

struct akg_feed {
  akg_run *run;
  const akg_opts *o;
  akg_sources src;
  akg_names *names;
  char *netrc;               /* --netrc's text, read once, or NULL */
  size_t netrc_len;
  pthread_t reader;
  pthread_mutex_t lock;      /* the queue, ended, hungry, abandoned */
  pthread_cond_t space;      /* the queue is half empty again (or abandoned) */
  bool reader_waits;         /* the reader sleeps on space */
  akg_item **ring;
  size_t cap, head, len;
  bool ended;                /* no more items will come */
  _Atomic bool abandoned;    /* the workers are gone: the reader stops */
  akg_worker *hungry[MAX_HUNGRY]; /* workers that found the queue empty */
  unsigned nhungry;
  _Atomic int list_exit;     /* the worst exit code a list caused (read errors) */
  /* Items that ended, for the reader to free: it made them (the strings of
   * an item are its thread's allocations), and a free on the loop's
   * thread went to the reader's arena under its lock, past the loop's
   * cache, while the reader's next items came from the arena's slow path
   * rather than from its own cache of what was just freed. */
  _Atomic(akg_item *) ended_items;
  akg_item *spare;           /* ended items' blocks kept for the next ones
                                (the reader's; linked by ended_next) */
  size_t nspare;             /* at most cap */
  int beside_cpu;            /* the CPU the reader is held to (beside_loop), or -1 */
  bool beside_off;           /* the kernel refused it once: not tried again */
};

/* An item and, after it, room for its strings (the URL, the temporary
 * name) and its -N question: one block a URL where there were five, and
 * the blocks of ended items are kept for the next items (at most the
 * queue's capacity of them) rather than freed. The frees came in batches
 * of half a queue, past malloc's per-thread cache, and _int_free was the
 * reader's costliest function. The final name (it->path) stays a string
 * of its own: a Content-Disposition replaces it (download.c frees it). */
typedef struct fitem {
  akg_item it;               /* first: the akg_item * the rest of akget sees */
  size_t room, used;         /* bytes of space, the bytes taken */
  char space[];
} fitem;

/* A block's size: a 512-byte malloc chunk (8 bytes are malloc's), whose
 * room (about 260 bytes) holds a URL, its temporary name and its -N
 * lines on a mirror's list (about 230 bytes; the items' pages are
 * faulted in fresh, so no bigger: 384 bytes of room cost 5 more page
 * faults a run of 1000). A longer URL gets a bigger block, and what
 * does not fit is allocated apart. */
enum { ITEM_BLOCK = 504 };
#define ITEM_ROOM (ITEM_BLOCK - sizeof(fitem))
/* ITEM_ROOM is an unsigned difference: were akg_item to grow past the
 * block it would wrap to a huge room and carve() would write past the
 * malloc'd block. Keep at least 128 bytes of room (a typical URL and its
 * temporary name); if this fails, raise ITEM_BLOCK with akg_item. */
_Static_assert(sizeof(fitem) + 128 <= ITEM_BLOCK,
               "an item block must keep room for its strings");

static bool in_room(const fitem *fi, const void *p)
{
  return (const char *)p >= fi->space && (const char *)p < fi->space + fi->room;
}

/* n bytes of fi's room, aligned to 8, or NULL when they do not fit. */
static char *carve(fitem *fi, size_t n)
{
  size_t at = (fi->used + 7) & ~(size_t)7;
  if (at > fi->room || fi->room - at < n)
    return NULL;
  fi->used = at + n;
  return fi->space + at;
}

/* Frees what the item holds outside its block. */
static void item_release(akg_item *it)
{
  fitem *fi = (fitem *)it;
  if (!in_room(fi, it->url))
    free(it->url);
  free(it->path);
  if (!in_room(fi, it->tmp))
    free(it->tmp);
  free(it->detail);
  if (it->userpwd)
    memset(it->userpwd, 0, strlen(it->userpwd));
  free(it->userpwd);
  for (size_t i = 0; i < it->own_header_count; i++)
    free(it->own_headers[i]);
  free(it->own_headers);
  akg_ts_free(it->ts); /* one in the room frees only what it holds outside */
  if (it->opts)
    free((void *)it->opts->headers);
  free(it->opts);
}

static void item_free(akg_item *it)
{
  item_release(it);
  free(it);
}

/* A cleared item whose room holds need bytes: a kept block, else a new
 * one. NULL for want of memory. */
static akg_item *item_new(akg_feed *f, size_t need)
{
  fitem *fi = (fitem *)f->spare;
  if (fi && fi->room >= need) {
    f->spare = fi->it.ended_next;
    f->nspare--;
  } else {
    /* A kept block too small stays kept: the next item may fit. */
    size_t room = need > ITEM_ROOM ? need : ITEM_ROOM;
    fi = malloc(sizeof *fi + room);
    if (!fi)
      return NULL;
    fi->room = room;
  }
  memset(&fi->it, 0, sizeof fi->it);
  fi->used = 0;
  return &fi->it;
}

void akg_item_end(akg_run *run, akg_item *it)
{
  akg_progress_untrack(run, it);
  if (it->state == AKG_DONE && !it->unchanged) /* -N: kept, not fetched */
    atomic_fetch_add(&run->bytes, it->bytes - it->resumed_from);
  int worst = atomic_load(&run->worst);
  while (it->exit_code > worst && !atomic_compare_exchange_weak(&run->worst, &worst, it->exit_code))
    ;
  akg_report_item(it);
  akg_feed *f = run->feed;
  if (!f) {
    item_free(it);
    return;
  }
  akg_item *top = atomic_load_explicit(&f->ended_items, memory_order_relaxed);
  do
    it->ended_next = top;
  while (!atomic_compare_exchange_weak_explicit(&f->ended_items, &top, it, memory_order_release,
                                                memory_order_relaxed));
}

/* Takes back the items that ended since the last call: what they hold
 * freed, their blocks kept for the next items (the reader's thread, and
 * akg_feed_finish once the reader is gone). */
static void free_ended(akg_feed *f)
{
  akg_item *it = atomic_exchange_explicit(&f->ended_items, NULL, memory_order_acquire);
  while (it) {
    akg_item *next = it->ended_next;
    item_release(it);
    if (f->nspare < f->cap) {
      it->ended_next = f->spare;
      f->spare = it;
      f->nspare++;
    } else {
      free(it);
    }
    it = next;
  }
}

/* Wakes the workers that wait for items. Under f->lock: a worker that
 * then takes AKG_FEED_END (and lets its loop end) finds the post already
 * queued, and a loop runs its queued posts before it ends, so no post goes
 * to a loop that is gone. */
/* How long akg_feed_finish waits for a reader told to stop. */
#define READER_STOP_WAIT_S 2

static void wake_hungry(akg_feed *f)
{
  /* A worker whose post could not be made (no memory) stays listed: it is
   * asleep on an empty queue until told (it was dropped from the list once,
   * and a run whose post failed on its last items never ended:
   * fault-akget). */
  unsigned kept = 0;
  for (unsigned i = 0; i < f->nhungry; i++)
    if (!akg_worker_feed_ready(f->hungry[i]))
      f->hungry[kept++] = f->hungry[i];
  f->nhungry = kept;
}

/* The reader runs on the CPU of the run's one loop, following it when it
 * moves. Its work is done at the loop's pace (the queue is bounded), and
 * beside the loop it keeps that CPU busy, so the kernel leaves another
 * process the loop talks to where it is. Measured with nginx on this host
 * (akbench mirror, two vCPUs): the reader left to the scheduler ran alone
 * on one CPU, 60% of it idle, while the kernel's wake-affine placement
 * stacked the loop with nginx's worker on the other, each waking the
 * other for every answer; -N -j32 pipelined over the 1000-file tree, 11
 * runs alternated: 55.6 -> 42.3 ms of wall time (median), the same as
 * both held to one CPU (41.4), 44 -> 35 ms of CPU. The loop itself is
 * held to nothing: the kernel moves it off a busy CPU, and the reader
 * follows at its next item. Several loops (--threads): not done. */
static void beside_loop(akg_feed *f)
{
  int cpu = atomic_load_explicit(&f->run->loop_cpu, memory_order_relaxed);
  if (cpu < 0 || cpu == f->beside_cpu || f->beside_off)
    return;
  cpu_set_t one;
  CPU_ZERO(&one);
  CPU_SET(cpu, &one);
  if (sched_setaffinity(0, sizeof one, &one) == 0)
    f->beside_cpu = cpu;
  else
    f->beside_off = true; /* a cpuset or seccomp that says no: left as it is */
}

/* Queues it, waiting for room. False when the workers are gone. */
static bool push(akg_feed *f, akg_item *it)
{
  beside_loop(f);
  pthread_mutex_lock(&f->lock);
  while (f->len == f->cap && !f->abandoned) {
    f->reader_waits = true;
    pthread_cond_wait(&f->space, &f->lock);
  }
  if (f->abandoned) {
    pthread_mutex_unlock(&f->lock);
    return false;
  }
  f->ring[(f->head + f->len) % f->cap] = it;
  f->len++;
  atomic_fetch_add(&f->run->count, 1);
  wake_hungry(f);
  pthread_mutex_unlock(&f->lock);
  return true;
}

int akg_feed_take(akg_feed *f, akg_worker *w, akg_item **out)
{
  pthread_mutex_lock(&f->lock);
  if (f->len) {
    *out = f->ring[f->head];
    f->head = (f->head + 1) % f->cap;
    f->len--;
    /* The reader is woken when half the queue has gone, not at each take:
     * it then refills half a queue in one go. Woken at every take, it
     * slept and woke once per item (two thread switches per URL on a
     * -N run of 304s, a fifth of its wall time). */
    if (f->reader_waits && f->len <= f->cap / 2) {
      f->reader_waits = false;
      pthread_cond_signal(&f->space);
    }
    pthread_mutex_unlock(&f->lock);
    return AKG_FEED_ITEM;
  }
  if (f->ended) {
    pthread_mutex_unlock(&f->lock);
    return AKG_FEED_END;
  }
  bool listed = false;
  for (unsigned i = 0; i < f->nhungry; i++)
    listed |= f->hungry[i] == w;
  if (!listed)
    f->hungry[f->nhungry++] = w;
  pthread_mutex_unlock(&f->lock);
  return AKG_FEED_WAIT;
}

/* An entry that is not downloaded: said, counted, reported. */
static void fail_entry(akg_feed *f, akg_item *it, int exit_code, const char *where, const char *why)
{
  akg_run *run = f->run;
  /* A password in the URL stays out of the messages and --json. */
  if (it->url)
    (void)akg_credentials_item(f->o, NULL, 0, it);
  it->err = exit_code == AKG_EXIT_USAGE ? AKG_ELIST : -EIO;
  it->exit_code = exit_code;
  size_t n = strlen(where) + strlen(why) + 4;
  it->detail = malloc(n);
  if (it->detail)
    snprintf(it->detail, n, "%s: %s", where, why);
  it->state = AKG_FAILED;
  atomic_fetch_add(&run->count, 1);
  atomic_fetch_add(&run->finished, 1);
  atomic_fetch_add(&run->failed, 1);
  akg_progress_event(run, it, "FAILED %s: %s (exit %d)", where, why, exit_code);
  akg_item_end(run, it);
}

/* The entry's header= lines after -H's, in an options copy of its own
 * (their syntax was checked with their lines: input_list.c). */
static int own_headers(akg_feed *f, akg_item *it, akg_list_entry *e)
{
  it->own_headers = e->headers;
  it->own_header_count = e->header_count;
  e->headers = NULL;
  e->header_count = 0;
  it->opts = malloc(sizeof *it->opts);
  const char **h = malloc((f->o->header_count + it->own_header_count) * sizeof *h);
  if (!it->opts || !h) {
    free(h);
    free(it->opts);
    it->opts = NULL;
    return -ENOMEM;
  }
  *it->opts = *f->o;
  for (size_t i = 0; i < f->o->header_count; i++)
    h[i] = f->o->headers[i];
  for (size_t i = 0; i < it->own_header_count; i++)
    h[f->o->header_count + i] = it->own_headers[i];
  it->opts->headers = h;
  it->opts->header_count = f->o->header_count + it->own_header_count;
  return 0;
}

/* Makes and queues the item of one entry (or fails it). list: the list's
 * name (errors are said at "LIST: line N"), or NULL for a command-line URL.
 * False when the run is over (out of memory, or the workers are gone). */
static bool feed_entry(akg_feed *f, akg_list_entry *e, const char *list,
                       const unsigned char *forced_sum)
{
  if (e->oom)
    return false;
  free_ended(f); /* before this item's allocations, which then reuse them */
  size_t url_len = e->url ? strlen(e->url) + 1 : 0;
  akg_item *it = item_new(f, url_len);
  if (!it)
    return false;
  fitem *fi = (fitem *)it;
  it->total = -1;
  if (e->url) {
    /* Copied into the room: the entry's is the list reader's buffer (or
     * the command line's). */
    it->url = carve(fi, url_len);
    memcpy(it->url, e->url, url_len);
  }
  char where[400], why[800];
  unsigned long line = e->line;
  int rc = 0;
  if (e->error) {
    /* The parser's errors carry their own line (an option's). */
    snprintf(where, sizeof where, "%.300s", list ? list : "");
    fail_entry(f, it, AKG_EXIT_USAGE, where, e->error);
    return true;
  }
  /* Parsed once: the check here, the file's name (names.c) after. */
  ak_url *u = NULL;
  if ((rc = ak_url_parse(it->url, &u)) < 0) {
    ak_url_free(u);
    u = NULL;
    if (rc == -ENOMEM)
      goto oom; /* not the entry's fault: the run's end, exit 3 */
    snprintf(why, sizeof why, "%.400s: %s", it->url, ak_strerror(rc));
    goto refused;
  }
  if (e->checksum && akg_parse_checksum(e->checksum, it->sha256) < 0) {
    snprintf(why, sizeof why, "checksum %.200s is not sha-256=HEX (64 hex digits)", e->checksum);
    line = e->checksum_line;
    goto refused;
  }
  it->has_checksum = e->checksum != NULL;
  if (forced_sum) {
    memcpy(it->sha256, forced_sum, sizeof it->sha256);
    it->has_checksum = true;
  }
  if (e->header_count && own_headers(f, it, e) < 0)
    goto oom;
  if ((rc = akg_credentials_item(f->o, f->netrc, f->netrc_len, it)) < 0)
    goto oom;
  size_t tmp_at = (fi->used + 7) & ~(size_t)7;
  rc = akg_names_assign(f->names, f->o, it, u, e->dir, e->out,
                        tmp_at < fi->room ? fi->space + tmp_at : NULL,
                        tmp_at < fi->room ? fi->room - tmp_at : 0, why, sizeof why);
  if (rc == 0 && in_room(fi, it->tmp))
    fi->used = tmp_at + strlen(it->tmp) + 1;
  ak_url_free(u);
  u = NULL;
  if (rc < 0)
    goto oom;
  if (rc > 0) {
    /* Said at the line of the out= or dir= in question. */
    bool dir_bad = e->dir && akg_list_path_problem(e->dir);
    line = dir_bad || !e->out ? e->dir_line : e->out_line;
    goto refused_rc;
  }
  /* -N: the stat and the xattr read of the file on disk are done here, on
   * the reader's thread, rather than on the loop's between its network
   * steps (a sixth of a 304 run's CPU). */
  if (f->o->timestamping) {
    size_t ts_at = (fi->used + 7) & ~(size_t)7;
    if (akg_ts_new_in(it->opts ? it->opts : f->o, it->path,
                      ts_at < fi->room ? fi->space + ts_at : NULL,
                      ts_at < fi->room ? fi->room - ts_at : 0, &it->ts) < 0)
      goto oom;
  }
  if (push(f, it))
    return true;
  item_free(it);
  return false;
refused:
  rc = AKG_EXIT_USAGE;
refused_rc:
  ak_url_free(u);
  if (list)
    snprintf(where, sizeof where, "%.300s: line %lu", list, line);
  else
    snprintf(where, sizeof where, "%.300s", it->url);
  fail_entry(f, it, rc, where, why);
  return true;
oom:
  ak_url_free(u);
  item_free(it);
  return false;
}

static bool in_shard(const akg_feed *f, const char *url)
{
  return !f->src.shard_n || akg_str_hash(url) % f->src.shard_n == f->src.shard_k - 1;
}

static void read_list(akg_feed *f, size_t li)
{
  const char *name = f->src.list_names[li];
  akg_list_reader *r = f->src.lists[li];
  akg_list_entry e;
  int rc;
  unsigned long line = 0;
  bool go = true;
  while (go && (rc = akg_list_next(r, &e)) == 1) {
    /* Each entry belongs to one shard: another shard's entries are not
     * even checked (that shard says what is wrong with them). */
    if (!e.url || in_shard(f, e.url)) {
      line = e.line;
      go = feed_entry(f, &e, name, NULL);
      if (!go && !f->abandoned)
        fprintf(stderr, "akget: %s: out of memory\n", name);
    }
    akg_list_entry_clear(&e);
  }
  if (go && rc < 0) {
    fprintf(stderr, "akget: %s: read error after the entry of line %lu: %s (the rest of it is "
            "not read)\n", name, line, strerror(-rc));
    f->list_exit = AKG_EXIT_LOCAL_IO;
  }
  if (!go && !f->abandoned)
    f->list_exit = AKG_EXIT_LOCAL_IO;
}

static void *reader_main(void *arg)
{
  akg_feed *f = arg;
  bool go = true;
  for (size_t i = 0; go && i < f->src.nurls; i++) {
    if (!in_shard(f, f->src.urls[i]))
      continue;
    akg_list_entry e = {.url = f->src.urls[i]};
    /* --checksum: the one URL's (main allows it with one URL only). */
    go = feed_entry(f, &e, NULL, f->src.checksum);
    akg_list_entry_clear(&e);
  }
  for (size_t i = 0; go && i < f->src.nlists; i++) {
    read_list(f, i);
    go = !f->abandoned && f->list_exit != AKG_EXIT_LOCAL_IO;
  }
  pthread_mutex_lock(&f->lock);
  f->ended = true;
  wake_hungry(f);
  pthread_mutex_unlock(&f->lock);
  return NULL;
}

int akg_feed_start(akg_run *run, const akg_sources *src)
{
  akg_feed *f = calloc(1, sizeof *f);
  if (!f)
    return AKG_EXIT_LOCAL_IO;
  f->run = run;
  f->o = run->opts;
  f->src = *src;
  unsigned jobs = f->o->jobs ? f->o->jobs : 16;
  f->cap = jobs * 2 < 32 ? 32 : jobs * 2;
  f->beside_cpu = -1;
  f->ring = calloc(f->cap, sizeof *f->ring);
  f->names = akg_names_new();
  pthread_mutex_init(&f->lock, NULL);
  pthread_cond_init(&f->space, NULL);
  run->feed = f;
  if (!f->ring || !f->names) {
    fprintf(stderr, "akget: out of memory\n");
    return AKG_EXIT_LOCAL_IO;
  }
  if (f->o->netrc) {
    int rc = akg_netrc_read(f->o->netrc_file, &f->netrc, &f->netrc_len);
    if (rc < 0) {
      fprintf(stderr, "akget: %s: %s\n", f->o->netrc_file ? f->o->netrc_file : "~/.netrc",
              strerror(-rc));
      return AKG_EXIT_USAGE;
    }
  }
  if (pthread_create(&f->reader, NULL, reader_main, f) != 0) {
    fprintf(stderr, "akget: cannot start the list's reader thread\n");
    return AKG_EXIT_LOCAL_IO;
  }
  return 0;
}

int akg_feed_finish(akg_feed *f, bool workers_failed)
{
  pthread_mutex_lock(&f->lock);
  bool ended = f->ended;
  if (workers_failed && !ended) {
    /* Nobody takes from the queue any more: the reader stops at its next
     * push. It may sit in a read of a pipe meanwhile, so it is not joined
     * and what it uses is not freed (the process is about to end). */
    f->abandoned = true;
    pthread_cond_broadcast(&f->space);
  }
  pthread_mutex_unlock(&f->lock);
  if (workers_failed && !ended) {
    /* It stops at its next push: wait for that, bounded, so that it is not
     * still making items from main's options while the process exits
     * (fault-akget: a reader in akg_names_assign read main's stack after
     * main returned). One sitting in a read is left. */
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += READER_STOP_WAIT_S;
    if (pthread_timedjoin_np(f->reader, NULL, &until) != 0) {
      f->run->reader_left = true;
      return f->list_exit;
    }
  } else {
    pthread_join(f->reader, NULL);
  }
  int rc = f->list_exit;
  for (size_t i = 0; i < f->src.nlists; i++)
    akg_list_close(f->src.lists[i]);
  /* Defensive: every worker took until AKG_FEED_END, so nothing is left. */
  for (size_t i = 0; i < f->len; i++)
    item_free(f->ring[(f->head + i) % f->cap]);
  free_ended(f);
  while (f->spare) {
    akg_item *next = f->spare->ended_next;
    free(f->spare);
    f->spare = next;
  }
  free(f->ring);
  akg_names_free(f->names);
  if (f->netrc) {
    memset(f->netrc, 0, f->netrc_len);
    free(f->netrc);
  }
  pthread_mutex_destroy(&f->lock);
  pthread_cond_destroy(&f->space);
  f->run->feed = NULL;
  free(f);
  return rc;
}
