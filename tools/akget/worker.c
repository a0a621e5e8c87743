/* worker.c: the loops. --threads N workers, each a thread with its own loop
 * and HTTP client (connections are not shared between loops); the items are
 * taken from the feed's queue (feed.c) as slots free up, so a fast worker
 * takes more. A worker that finds the queue empty before the list's end
 * keeps its loop alive (a hold) and is woken by a post when items come.
 * -j is the run's number of downloads at once, shared out between workers.
 * With one thread and a progress display the worker runs on the main
 * thread's behalf in a thread of its own (the main thread draws the
 * display); without a display the main thread runs it. */
#define _GNU_SOURCE /* sched_getcpu */
#include "akget.h"

#include <errno.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { AKG_BATCH_WAIT_US = 200 }; /* see worker_main */

struct akg_worker {
  akg_run *run;
  ak_loop *loop;
  ak_http_client *client;
  unsigned slots;            /* downloads this worker runs at once */
  unsigned active;
  unsigned run_threads;      /* workers in the run */
  int err;                   /* setting up failed */
  bool held;                 /* the loop is held until the feed ends */
  pthread_t thread;
  /* --enable-http-pipelining: -N's HEADs gathered while slots fill */
  ak_http_request *heads;    /* their requests (what they point to is the
                                downloads') */
  void **head_dls;           /* their downloads */
  unsigned nheads;
  bool refill_posted;        /* a fill of the slots is posted */
};

ak_loop *akg_worker_loop(akg_worker *w) { return w->loop; }
ak_http_client *akg_worker_client(akg_worker *w) { return w->client; }
const akg_opts *akg_worker_opts(akg_worker *w) { return w->run->opts; }
akg_run *akg_worker_run(akg_worker *w) { return w->run; }

static void fill_slots(akg_worker *w);
static void feed_ready_cb(void *arg);

/* Pipelining: whether the slots freed so far are worth a fill now. A
 * pipeline's answers come over a few receives, so its downloads end over
 * a few loop iterations; filling after each let the next HEADs go out a
 * few at a time, as short pipelines on more connections (at -j 32 about
 * half the pipelines were of one HEAD: more sends and receives on both
 * sides). The slots are filled once a whole pipeline's worth is free (at
 * most half the slots: with -j 5 a whole one would be every slot, and the
 * next pipeline would wait for the last answer of the one before), or
 * when nothing is left in flight (the list's last items, or a worker
 * waiting for the list: the feed's post fills then in any case). Work
 * always goes on: while fewer than that are free, downloads are active
 * and each one's end comes back here. */
static bool refill_due(const akg_worker *w)
{
  unsigned depth = w->run->opts->pipelining;
  unsigned half = w->slots / 2 ? w->slots / 2 : 1;
  unsigned want = depth < half ? depth : half;
  return w->active == 0 || w->slots - w->active >= want;
}

static void item_done(akg_worker *w, akg_item *item)
{
  w->active--;
  akg_item_end(w->run, item);
  if (!w->run->opts->pipelining) {
    fill_slots(w);
    return;
  }
  /* Pipelining: the slots freed are filled once enough are free
   * (refill_due), by one post after the iteration's other ends, so that
   * their successors' HEADs go out as one pipeline too. */
  if (!refill_due(w))
    return;
  if (!w->refill_posted && ak_loop_post(w->loop, feed_ready_cb, w) == 0)
    w->refill_posted = true;
  else if (!w->refill_posted)
    fill_slots(w); /* no memory for the post */
}

static void send_heads(akg_worker *w);

void akg_worker_queue_head(akg_worker *w, const ak_http_request *req, void *d)
{
  /* At most slots are gathered (one per download started in a fill, and a
   * fill sends them); were that ever not so, the ones gathered go first
   * rather than past the arrays. */
  if (w->nheads == w->slots)
    send_heads(w);
  w->heads[w->nheads] = *req;
  w->head_dls[w->nheads] = d;
  w->nheads++;
}

/* Sends the HEADs gathered as pipelines of --enable-http-pipelining's
 * depth at most. */
static void send_heads(akg_worker *w)
{
  unsigned depth = w->run->opts->pipelining;
  ak_future *futs[AK_HTTP_PIPELINE_MAX];
  for (unsigned at = 0; at < w->nheads; at += depth) {
    unsigned n = w->nheads - at < depth ? w->nheads - at : depth;
    if (ak_http_head_pipeline(w->client, w->heads + at, n, futs) < 0) {
      for (unsigned i = 0; i < n; i++) /* NEVER: the requests are HEADs without sinks */
        futs[i] = ak_http_get(w->client, &w->heads[at + i]);
    }
    for (unsigned i = 0; i < n; i++)
      akg_download_asked(w->head_dls[at + i], futs[i]);
  }
  w->nheads = 0;
}

/* Starts items until the worker's slots are full, the queue is empty (the
 * feed posts feed_ready when it is not), or the list has ended; then
 * sends the HEADs they hold (pipelining). */
static void take_items(akg_worker *w)
{
  akg_run *run = w->run;
  if (w->run_threads == 1) /* where the list's reader follows it (feed.c) */
    atomic_store_explicit(&run->loop_cpu, sched_getcpu(), memory_order_relaxed);
  while (w->active < w->slots) {
    akg_item *it;
    int r = akg_feed_take(run->feed, w, &it);
    if (r == AKG_FEED_WAIT)
      return;
    if (r == AKG_FEED_END) {
      if (w->held) {
        w->held = false;
        ak_loop_unhold(w->loop); /* the loop ends with its last download */
      }
      return;
    }
    w->active++;
    akg_progress_track(run, it);
    akg_download_start(w, it, item_done);
  }
}

static void fill_slots(akg_worker *w)
{
  take_items(w);
  if (w->nheads)
    send_heads(w);
}

static void feed_ready_cb(void *arg)
{
  akg_worker *w = arg;
  w->refill_posted = false;
  fill_slots(w);
}

bool akg_worker_feed_ready(akg_worker *w)
{
  /* Only fails for memory: the feed then posts again at its next push (or
   * the end). */
  return ak_loop_post(w->loop, feed_ready_cb, w) == 0;
}

static void *worker_main(void *arg)
{
  akg_worker *w = arg;
  const akg_opts *o = w->run->opts;
  /* Batch waits: with 32 transfers streaming, the loop otherwise wakes for
   * nearly every receive and write completion; sleeping until a batch is
   * ready (or AKG_BATCH_WAIT_US have passed) cut the 1000 x 1 MiB set's
   * wall time by about 8% and its CPU by 9% (docs/akget.md, PERFORMANCE).
   * A transfer's step may wait that long: little against a network's round
   * trips. */
  ak_loop_options lo = {.sq_entries = 512, .batch_wait_us = AKG_BATCH_WAIT_US};
  int rc = ak_loop_new(&w->loop, &lo);
  if (rc < 0) {
    w->err = rc;
    return NULL;
  }
  /* -v: which IO backend runs and why, once for the run (every worker's
   * loop makes the same choice). */
  static atomic_flag backend_said = ATOMIC_FLAG_INIT;
  if (o->verbose && !atomic_flag_test_and_set(&backend_said)) {
    ak_features ft;
    ak_loop_features(w->loop, &ft);
    fprintf(stderr, "akget: backend: %s (%s)\n", ak_backend_name(ft.backend), ft.backend_reason);
  }
  ak_http_options ho = {
      .max_conns_per_host = o->conns_per_host,
      .connect_timeout_ns = o->connect_timeout_ns,
      .idle_timeout_ns = o->idle_timeout_ns,
      .head_timeout_ns = o->idle_timeout_ns,
      /* --max-time is download.c's: one timer per download over all its
       * attempts, not the client's per-request deadline. */
      .user_agent = o->user_agent,
      .cacert = o->cacert,
      .insecure = o->insecure,
      /* 256 KiB receives: a third of the receives and file writes of
       * 64 KiB ones on loopback (about 175 KiB arrive per receive), each
       * write an io-wq hand-off; measured about 10-20% less CPU on 1000 x
       * 1 MiB (docs/akget.md, PERFORMANCE). */
      .recv_buffer = 256 * 1024,
      .max_body_bytes = o->max_filesize,
      /* Each worker's client takes its share of the run's rate. */
      .max_rate = o->limit_rate ? (o->limit_rate + w->run_threads - 1) / w->run_threads : 0,
      .http_proxy = o->http_proxy,
      .https_proxy = o->https_proxy,
      .no_proxy = o->no_proxy,
      .ip_family = o->ip_family,
      /* -N's HEADs join the running pipeline while its connection has
       * fewer than DEPTH unanswered (a sliding window, ak_http_options):
       * at -j 5 the median of five alternated rounds of 11 runs went
       * 36.4 -> 34.0 ms; at -j 32 it stayed within the noise (23.9 ->
       * 23.3 ms; docs/akget.md, MIRRORS). */
      .pipeline_depth = o->pipelining,
  };
  rc = ak_http_client_new(w->loop, &ho, &w->client);
  if (rc < 0) {
    w->err = rc;
    ak_loop_free(w->loop);
    return NULL;
  }
  if (o->pipelining) {
    w->heads = calloc(w->slots, sizeof *w->heads);
    w->head_dls = calloc(w->slots, sizeof *w->head_dls);
    if (!w->heads || !w->head_dls) {
      w->err = -ENOMEM;
      ak_http_client_free(w->client);
      ak_loop_free(w->loop);
      return NULL;
    }
  }
  ak_loop_hold(w->loop);
  w->held = true;
  fill_slots(w);
  ak_loop_run(w->loop, AK_RUN_DEFAULT);
  ak_http_client_free(w->client);
  ak_loop_run(w->loop, AK_RUN_DEFAULT); /* the idle connections' closes */
  ak_loop_free(w->loop);
  akg_download_spares_free();
  free(w->heads);
  free(w->head_dls);
  return NULL;
}

void akg_run_init(akg_run *run, const akg_opts *opts)
{
  run->opts = opts;
  run->start_ns = ak_now_ns();
  atomic_init(&run->loop_cpu, -1);
  pthread_mutex_init(&run->out_lock, NULL);
  pthread_mutex_init(&run->active_lock, NULL);
}

int akg_run_all(akg_run *run)
{
  const akg_opts *o = run->opts;
  unsigned n = o->threads ? o->threads : 1;
  akg_worker *ws = calloc(n, sizeof *ws);
  if (!ws)
    return -ENOMEM;
  unsigned jobs = o->jobs ? o->jobs : 16;
  for (unsigned i = 0; i < n; i++) {
    ws[i].run = run;
    ws[i].run_threads = n;
    ws[i].slots = jobs / n + (i < jobs % n ? 1 : 0);
    if (ws[i].slots == 0)
      ws[i].slots = 1;
  }
  if (o->progress_tty)
    akg_progress_start(run);
  int err = 0;
  if (n == 1 && !o->progress_tty) {
    /* One loop and no display to draw: the calling thread runs it. A
     * thread of its own cost a start (its stack, its TLS, a malloc arena
     * of its own, each page faulted in fresh) on the serial path before
     * the first request, about 0.3 ms here. */
    worker_main(&ws[0]);
    err = ws[0].err;
    free(ws);
    return err;
  }
  unsigned started = 0;
  for (; started < n; started++) {
    if (pthread_create(&ws[started].thread, NULL, worker_main, &ws[started]) != 0) {
      err = -EAGAIN;
      break;
    }
  }
  for (unsigned i = 0; i < started; i++) {
    pthread_join(ws[i].thread, NULL);
    if (ws[i].err && !err)
      err = ws[i].err;
  }
  if (o->progress_tty)
    akg_progress_stop(run);
  free(ws);
  return err;
}
