/* pipeline.c: aksum's engine. One loop thread drives the ring: it opens the
 * next files (up to max_open at once, in input order), hands a bounded set of
 * chunk buffers to the files that want data (the earliest first, each at most
 * half of them so one big file cannot starve the hashers), and reads ahead.
 * The buffers are one registered buffer (reads are READ_FIXED) where the
 * kernel allows it. The pool hashes: each file is in at most one hash task
 * at a time, which takes its next chunks in order (at most HASH_BATCH), so
 * files hash in parallel, one file's bytes go through its context in order,
 * and a big file's next chunks are read while these hash. Where the
 * algorithm hashes several messages at once on one thread (algo->lanes > 1:
 * SHA-256 on SHA-NI), a task takes up to that many files whose next chunks
 * are ready, and no more tasks are in flight than there are threads, so
 * that the files that become ready meanwhile wait to be grouped (a lone
 * file still goes alone when a thread is free). With --copy each
 * chunk is also written (write all, at its offset) to an unnamed O_TMPFILE
 * file linked into place when the file is complete (or, where the
 * filesystem lacks O_TMPFILE, a named temporary renamed into place: copy.c).
 *
 * A chunk's life: free -> reading (a short read is resubmitted for the rest
 * of the chunk; a read of 0 marks the end) -> ready (in the file's list by
 * offset; its write starts) -> hashing -> free again once hashed and
 * written. The end of a file is only known from a read that returns 0, so a
 * file that grows or shrinks while read is hashed as it was read.
 *
 * Everything here runs on the loop's thread except hash_work (a pool task);
 * the pool's settle reaches the loop before the file is touched again.
 */
#define _GNU_SOURCE
#include "aksum.h"

#include <asynckit.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

enum {
  HASH_BATCH = 2,              /* chunks per file per hash task at most */
  GROUP_MAX = 64,              /* files per hash task at most */
  GROUP_SMALL_BYTES = 256 << 10 /* a task takes more files than lanes while below this */
};

typedef struct pl pl;
typedef struct fjob fjob;

typedef struct chunk {
  struct chunk *next; /* free list, a file's ready list, or its hash batch */
  fjob *job;
  char *buf;
  int64_t off;     /* where its bytes sit in the file */
  size_t len;      /* bytes read so far */
  int pending;     /* hash and write still to come before it is free */
  ak_future *read; /* the read in flight, or NULL */
} chunk;

enum fin_phase { FIN_NONE, FIN_CLOSE_OUT, FIN_RENAME, FIN_UNLINK };

struct fjob {
  fjob *next, *prev; /* the active list, in input order */
  pl *p;
  aks_item *it;
  int fd;           /* input, -1 until open */
  int out_fd;       /* --copy: the copy being written, or -1 */
  char *dest, *tmp; /* --copy: final name; the named temporary (fallback only) */
  bool tmpfile;     /* the copy is an unnamed O_TMPFILE file (out_fd) */
  bool copied;      /* the copy has its final name */
  bool tmp_exists;  /* the named temporary exists (fallback only) */
  int tmp_slot;     /* its slot in guard.c's table of temporaries, or -1 */
  int64_t next_off; /* the next chunk's offset */
  int64_t reached;  /* the end of the furthest data read */
  int64_t eof_at;   /* the end, once a read of 0 said so */
  int64_t hash_off; /* bytes hashed */
  chunk *ready;     /* read chunks not yet hashed, by offset */
  chunk *batch;     /* the chunks the hash task has */
  unsigned held;    /* chunks this file holds */
  unsigned opens, reads, writes;
  bool hashing;
  bool check_due; /* failed where its job_check could not run: run_due_checks does */
  enum fin_phase fin;
  int err;              /* the first error */
  const char *err_step; /* NULL: the input itself; "copy": the copy */
  void *ctx;            /* the hash context */
};

struct pl {
  aks_run *run;
  ak_loop *loop;
  ak_pool *pool;
  const aks_algo *algo;
  size_t chunk_size;
  unsigned nchunks;
  unsigned max_per_job;
  chunk *chunks;
  char *mem;
  chunk *free;
  size_t next_item;   /* the next item to start */
  size_t next_report; /* the next item to report */
  unsigned jobs_open;
  fjob *head, *tail;
  ak_timer *timer;
  int64_t tick_ns;
  bool fixed;              /* the buffers are registered (buf_index 0) */
  bool stdin_busy;         /* a "-" is being read: the next "-" waits for its end */
  bool tmpfile;            /* copies start as O_TMPFILE files (copy.c) */
  unsigned max_open;       /* files open at once: --buffers and RLIMIT_NOFILE */
  unsigned hash_tasks;     /* hash tasks in flight */
  unsigned max_hash_tasks; /* lanes > 1: the pool's threads; else no cap */
  bool pumping, pump_again;
  bool defer_pump;  /* many files open: scans once per batch (pump_soon) */
  bool pump_posted; /* a pump is posted and has not run yet */
  bool checks_due;    /* some file's check_due is set */
  bool checks_posted; /* run_due_checks is posted and has not run yet */
  unsigned reads_issued; /* AKSUM_TEST_FAIL_READ counts them */
  unsigned fail_read;    /* AKSUM_TEST_FAIL_READ: this read (1 = the first) fails; 0: none */
  bool done;
};

/* One pool task: the files it hashes: up to algo->lanes, and more while
 * their bytes are few (small files: one hand-over to the pool and back
 * for many files instead of one per file or four). */
typedef struct hash_group {
  pl *p;
  unsigned n;
  fjob *job[GROUP_MAX];
} hash_group;

static void pump(pl *p);
static void pump_soon(pl *p);
static void check_soon(fjob *j);

/* ---- Chunks ------------------------------------------------------------- */

static chunk *chunk_get(pl *p, fjob *j)
{
  chunk *c = p->free;
  p->free = c->next;
  c->next = NULL;
  c->job = j;
  c->len = 0;
  c->pending = 0;
  j->held++;
  return c;
}

static void chunk_put(pl *p, chunk *c)
{
  c->job->held--;
  c->job = NULL;
  c->next = p->free;
  p->free = c;
}

/* One of the chunk's uses (hash, write) is done. */
static void chunk_release(pl *p, chunk *c)
{
  if (--c->pending <= 0)
    chunk_put(p, c);
}

/* ---- Reporting in order ---------------------------------------------------- */

static void flush_reports(pl *p)
{
  aks_run *run = p->run;
  while (p->next_report < run->n && run->items[p->next_report].finished)
    aks_report(run, &run->items[p->next_report++]);
  if (p->next_report == run->n && !p->done) {
    p->done = true;
    if (p->timer)
      ak_timer_cancel(p->loop, p->timer);
    p->timer = NULL;
  }
}

static void job_complete(fjob *j)
{
  pl *p = j->p;
  aks_item *it = j->it;
  if (!j->err && j->ctx)
    p->algo->finish(j->ctx, it->digest);
  it->bytes = (uint64_t)j->hash_off;
  it->err = j->err;
  it->err_step = j->err_step;
  if (j->err_step && j->dest) {
    it->err_path = j->dest;
    j->dest = NULL;
  }
  it->finished = true;
  if (!j->err && j->copied)
    p->run->copied++;
  if (j->ctx)
    p->algo->ctx_free(j->ctx);
  if (j->prev)
    j->prev->next = j->next;
  else
    p->head = j->next;
  if (j->next)
    j->next->prev = j->prev;
  else
    p->tail = j->prev;
  p->jobs_open--;
  if (it->is_stdin)
    p->stdin_busy = false;
  aks_guard_temp_remove(j->tmp_slot);
  free(j->dest);
  free(j->tmp);
  free(j);
  flush_reports(p);
  pump_soon(p);
}

/* ---- Failing a file -------------------------------------------------------- */

static void job_fail(fjob *j, int err, const char *step)
{
  if (j->err)
    return;
  j->err = err;
  j->err_step = step;
  /* Drop what is read but not hashed; cancel reads still in flight (a FIFO
   * may never answer them). */
  while (j->ready) {
    chunk *c = j->ready;
    j->ready = c->next;
    chunk_release(j->p, c);
  }
  for (unsigned i = 0; i < j->p->nchunks; i++) {
    chunk *c = &j->p->chunks[i];
    if (c->job == j && c->read)
      ak_future_cancel(c->read);
  }
}

/* ---- Finishing a file: close, rename or unlink the copy --------------------- */

static void fin_step(fjob *j);

static void fin_done(ak_future *f, void *arg)
{
  fjob *j = arg;
  int64_t res = ak_future_result(f);
  ak_future_release(f);
  if (res < 0 && j->fin != FIN_UNLINK)
    job_fail(j, (int)res, "copy");
  if (j->fin == FIN_RENAME && res >= 0)
    j->copied = true;
  if ((j->fin == FIN_RENAME && res >= 0) || j->fin == FIN_UNLINK) {
    j->tmp_exists = false;
    aks_guard_temp_remove(j->tmp_slot); /* before the name is freed */
    j->tmp_slot = -1;
  }
  fin_step(j);
}

static void fin_await(fjob *j, enum fin_phase phase, ak_future *f)
{
  j->fin = phase;
  if (!f) {
    job_fail(j, -ENOMEM, "copy");
    j->tmp_exists = false; /* nothing more can be done for it */
    fin_step(j);
    return;
  }
  ak_future_on_settle(f, fin_done, j);
}

/* The next step after the last read, hash and write of a file. */
static void fin_step(fjob *j)
{
  ak_loop *loop = j->p->loop;
  if (j->fd > 0 && !j->it->is_stdin) {
    ak_future_release(ak_close(loop, j->fd)); /* nobody waits for it */
    j->fd = -1;
  }
  if (j->out_fd >= 0) {
    int fd = j->out_fd;
    j->out_fd = -1;
    /* Chunks read past an end found later (a file that shrank while read,
     * its reads completing out of order) were written but not hashed: the
     * copy ends where the hash did, so it is never longer than what was
     * hashed. Synchronous: one cheap call per file, on the loop thread. */
    if (!j->err && ftruncate(fd, j->hash_off) < 0)
      job_fail(j, -errno, "copy");
    /* An O_TMPFILE copy is named while still open (its /proc/self/fd
     * link); a failed one just vanishes at close. Synchronous for the
     * same reason, and so the signal mask is this thread's. */
    if (j->tmpfile && !j->err) {
      int rc = aks_copy_link_into_place(fd, j->dest);
      if (rc < 0)
        job_fail(j, rc, "copy");
      else
        j->copied = true;
    }
    fin_await(j, FIN_CLOSE_OUT, ak_close(loop, fd));
    return;
  }
  if (j->tmp_exists && !j->err && j->fin != FIN_RENAME) {
    fin_await(j, FIN_RENAME, ak_renameat(loop, AT_FDCWD, j->tmp, AT_FDCWD, j->dest, 0));
    return;
  }
  if (j->tmp_exists && j->err) {
    fin_await(j, FIN_UNLINK, ak_unlinkat(loop, AT_FDCWD, j->tmp, 0));
    return;
  }
  job_complete(j);
}

/* ---- Hashing on the pool ---------------------------------------------------- */

/* Several files at once: n <= lanes files' batches go through
 * update_lanes chunk by chunk (the i-th chunk of every file together;
 * files with fewer chunks drop out). */
static void hash_lanes(const aks_algo *algo, fjob *const *job, unsigned n)
{
  chunk *cur[AKS_LANES_MAX];
  for (unsigned i = 0; i < n; i++)
    cur[i] = job[i]->batch;
  for (;;) {
    void *ctx[AKS_LANES_MAX];
    const void *data[AKS_LANES_MAX];
    size_t len[AKS_LANES_MAX];
    unsigned k = 0;
    for (unsigned i = 0; i < n; i++) {
      if (!cur[i])
        continue;
      ctx[k] = job[i]->ctx;
      data[k] = cur[i]->buf;
      len[k] = cur[i]->len;
      k++;
      cur[i] = cur[i]->next;
    }
    if (k == 0)
      return;
    algo->update_lanes(ctx, data, len, k);
  }
}

static int64_t hash_work(void *arg, ak_future *self)
{
  (void)self;
  hash_group *g = arg;
  const aks_algo *algo = g->p->algo;
  if (g->n > 1 && algo->update_lanes) {
    unsigned lanes = algo->lanes < AKS_LANES_MAX ? algo->lanes : AKS_LANES_MAX;
    for (unsigned i = 0; i < g->n; i += lanes)
      hash_lanes(algo, g->job + i, g->n - i < lanes ? g->n - i : lanes);
    return 0;
  }
  for (unsigned i = 0; i < g->n; i++)
    for (chunk *c = g->job[i]->batch; c; c = c->next)
      algo->update(g->job[i]->ctx, c->buf, c->len);
  return 0;
}

static void job_check(fjob *j);
static void start_hashing(pl *p);

/* A hash task's chunks are hashed: back to the reader; then each of its
 * files goes on (none of them is finished before all are released). */
static void hash_done(ak_future *f, void *arg)
{
  hash_group *g = arg;
  pl *p = g->p;
  ak_future_release(f);
  p->hash_tasks--;
  for (unsigned i = 0; i < g->n; i++) {
    fjob *j = g->job[i];
    j->hashing = false;
    chunk *c = j->batch;
    j->batch = NULL;
    while (c) {
      chunk *next = c->next;
      j->hash_off += (int64_t)c->len;
      p->run->bytes += c->len;
      chunk_release(p, c);
      c = next;
    }
  }
  for (unsigned i = 0; i < g->n; i++)
    job_check(g->job[i]);
  free(g);
  pump_soon(p); /* a group with none of them is due too */
}

/* Whether j's next chunk in order is read and not being hashed. */
static bool can_hash(const fjob *j)
{
  return !j->hashing && !j->err && j->ready && j->ready->off == j->hash_off &&
         j->hash_off < j->eof_at;
}

/* Moves j's chunks that are next in order (at most HASH_BATCH: the chunks
 * go back to the reader as each task ends, so a big file's next chunks are
 * read while these hash instead of after) to its batch; returns their
 * bytes. */
static size_t take_batch(fjob *j)
{
  size_t bytes = 0;
  chunk *batch = NULL, **tail = &batch;
  int64_t at = j->hash_off;
  unsigned taken = 0;
  while (j->ready && j->ready->off == at && at < j->eof_at && taken++ < HASH_BATCH) {
    chunk *c = j->ready;
    j->ready = c->next;
    if (c->off + (int64_t)c->len > j->eof_at)
      c->len = (size_t)(j->eof_at - c->off); /* the file shrank under us */
    c->next = NULL;
    *tail = c;
    tail = &c->next;
    at += (int64_t)c->len;
    bytes += c->len;
  }
  j->batch = batch;
  j->hashing = true;
  return bytes;
}

/* Starts hash tasks while a thread is free (lanes > 1) or any file can
 * hash: each with the earliest files that can, up to algo->lanes of them,
 * and more (up to GROUP_MAX) while the task's bytes stay below
 * GROUP_SMALL_BYTES: a tree of small files then costs a hand-over per
 * dozens of files, and files of a MiB go as before (lanes at a time). */
static void start_hashing(pl *p)
{
  unsigned lanes = p->algo->lanes > 1 ? p->algo->lanes : 1;
  if (lanes > AKS_LANES_MAX)
    lanes = AKS_LANES_MAX; /* NEVER: the table says at most that */
  fjob *j = p->head;
  while (p->hash_tasks < p->max_hash_tasks) {
    while (j && !can_hash(j))
      j = j->next;
    if (!j)
      return;
    hash_group *g = calloc(1, sizeof(*g));
    if (!g) {
      job_fail(j, -ENOMEM, NULL);
      check_soon(j);
      continue;
    }
    g->p = p;
    size_t bytes = 0;
    for (; j && (g->n < lanes || (g->n < GROUP_MAX && bytes < GROUP_SMALL_BYTES)); j = j->next)
      if (can_hash(j)) {
        bytes += take_batch(j);
        g->job[g->n++] = j;
      }
    ak_future *f = ak_pool_submit(p->pool, hash_work, g);
    if (!f) {
      for (unsigned i = 0; i < g->n; i++) {
        fjob *gj = g->job[i];
        gj->hashing = false;
        while (gj->batch) {
          chunk *c = gj->batch;
          gj->batch = c->next;
          chunk_release(p, c);
        }
        job_fail(gj, -ENOMEM, NULL);
        check_soon(gj);
      }
      free(g);
      return;
    }
    p->hash_tasks++;
    ak_future_on_settle(f, hash_done, g);
  }
}

/* Whether everything for j has come back and it can be finished. */
static void job_check(fjob *j)
{
  if (!j->p->defer_pump)
    start_hashing(j->p);
  if (j->opens || j->reads || j->hashing || j->writes || j->fin != FIN_NONE) {
    pump_soon(j->p);
    return;
  }
  if (!j->err) {
    /* Chunks past the end (a file that shrank) are not part of it. */
    while (j->ready && j->ready->off >= j->eof_at) {
      chunk *c = j->ready;
      j->ready = c->next;
      chunk_release(j->p, c);
    }
    if (j->hash_off < j->eof_at) {
      pump_soon(j->p); /* more to read, or to hash */
      return;
    }
  }
  fin_step(j);
}

/* ---- Reading and writing ------------------------------------------------------ */

static void issue_read(fjob *j, chunk *c);

static void write_done(ak_future *f, void *arg)
{
  chunk *c = arg;
  fjob *j = c->job;
  int64_t res = ak_future_result(f);
  ak_future_release(f);
  j->writes--;
  if (res < 0)
    job_fail(j, (int)res, "copy");
  chunk_release(j->p, c);
  job_check(j);
}

/* A chunk with data: into the ready list by offset; its copy starts now. */
static void chunk_ready(fjob *j, chunk *c)
{
  c->pending = 1;
  if (j->out_fd >= 0) {
    ak_future *w = ak_write_all(j->p->loop, j->out_fd, c->buf, c->len, c->off, NULL);
    if (!w) {
      job_fail(j, -ENOMEM, "copy");
    } else {
      c->pending++;
      j->writes++;
      ak_future_on_settle(w, write_done, c);
    }
  }
  if (j->err) {
    chunk_release(j->p, c);
    return;
  }
  chunk **at = &j->ready;
  while (*at && (*at)->off < c->off)
    at = &(*at)->next;
  c->next = *at;
  *at = c;
}

static void read_done(ak_future *f, void *arg)
{
  chunk *c = arg;
  fjob *j = c->job;
  pl *p = j->p;
  int64_t n = ak_future_result(f);
  ak_future_release(f);
  c->read = NULL;
  j->reads--;
  if (n < 0) {
    job_fail(j, (int)n, NULL);
    chunk_put(p, c);
  } else if (n == 0 || j->err) {
    int64_t end = c->off + (int64_t)c->len;
    if (n == 0 && end < j->eof_at)
      j->eof_at = end;
    if (c->len > 0 && !j->err)
      chunk_ready(j, c);
    else
      chunk_put(p, c);
  } else {
    c->len += (size_t)n;
    int64_t end = c->off + (int64_t)c->len;
    if (end > j->reached)
      j->reached = end;
    if (j->it->stream) {
      j->next_off = end; /* in order, one read at a time */
      chunk_ready(j, c);
    } else if (c->len < p->chunk_size && (end == j->it->size_hint || j->it->short_is_end)) {
      /* A short read that ends exactly where the walk's stat said the file
       * ends, or any short read of a regular file on a local filesystem
       * (walk.c: the walk did not stat it): the end, without a read of 0
       * to say so (one read per small file instead of two). A read of a
       * regular file there is short only at its end (io_uring completes
       * buffered reads of regular files in full, as read(2) does); where a
       * file reads short elsewhere (/proc files, of size 0) or changed
       * size since the stat, the end is not where the stat said, and the
       * rest is read until a read of 0. */
      if (end < j->eof_at)
        j->eof_at = end;
      chunk_ready(j, c);
    } else if (c->len < p->chunk_size) {
      issue_read(j, c); /* a short read: the rest, or the end */
      return;
    } else {
      chunk_ready(j, c);
    }
  }
  job_check(j);
}

static void issue_read(fjob *j, chunk *c)
{
  pl *p = j->p;
  if (c->len == 0) {
    c->off = j->next_off;
    if (!j->it->stream)
      j->next_off += (int64_t)p->chunk_size;
  }
  int64_t at = j->it->stream ? -1 : c->off + (int64_t)c->len;
  ak_rw_opts ro = AK_RW_OPTS_INIT;
  ro.buf_index = p->fixed ? 0 : -1;
  ak_future *f = ++p->reads_issued == p->fail_read
                     ? NULL
                     : ak_read_opt(p->loop, j->fd, c->buf + c->len, p->chunk_size - c->len, at, &ro);
  if (!f) {
    job_fail(j, -ENOMEM, NULL);
    chunk_put(p, c);
    check_soon(j); /* from pump_once or read_done: nothing else may be in flight for j */
    return;
  }
  j->reads++;
  c->read = f;
  ak_future_on_settle(f, read_done, c);
}

/* Whether j should get another chunk to read into. */
static bool wants_read(const fjob *j)
{
  if (j->fd < 0 || j->opens || j->err || j->held >= j->p->max_per_job)
    return false;
  if (j->it->stream)
    return j->reads == 0 && j->eof_at == INT64_MAX;
  /* Size unknown (the walk did not stat it): read ahead as far again as
   * what was read, a chunk at first, so that a small file takes one chunk
   * and a big one soon has several in flight. */
  int64_t hint = j->it->size_hint < 0 ? 2 * j->reached : j->it->size_hint;
  int64_t known = hint > j->reached ? hint : j->reached;
  /* The chunk at the known end is the probe that finds the end. */
  return j->next_off < j->eof_at && j->next_off <= known;
}

/* ---- Starting a file ---------------------------------------------------------- */

static void open_done(ak_future *f, void *arg)
{
  fjob *j = arg;
  int64_t res = ak_future_result(f);
  ak_future_release(f);
  j->opens--;
  if (res < 0)
    job_fail(j, (int)res, NULL);
  else
    j->fd = (int)res;
  job_check(j);
}

static void start_named_copy(fjob *j);

static void out_open_done(ak_future *f, void *arg)
{
  fjob *j = arg;
  int64_t res = ak_future_result(f);
  ak_future_release(f);
  j->opens--;
  if (j->tmpfile && aks_copy_tmpfile_unsupported((int)res) && !j->err) {
    /* This filesystem has no O_TMPFILE: this copy and the later ones take
     * named temporaries (also right where O_TMPFILE would work, so one
     * failed open per run is the cost, not one per file). */
    j->tmpfile = false;
    j->p->tmpfile = false;
    start_named_copy(j);
  } else if (res < 0) {
    job_fail(j, (int)res, "copy");
  } else {
    j->out_fd = (int)res;
    j->tmp_exists = !j->tmpfile;
    /* The source's permission bits exactly, not as the umask cut them:
     * fchmod is not subject to the umask. */
    unsigned mode = j->it->mode ? (j->it->mode & 07777) : 0644;
    if (fchmod(j->out_fd, mode) < 0)
      job_fail(j, -errno, "copy");
  }
  job_check(j);
}

/* The fallback: a named temporary, registered with guard.c before it can
 * exist so that a fatal signal removes it, renamed over the destination
 * when complete (fin_step). Used where O_TMPFILE is not to be had. */
static void start_named_copy(fjob *j)
{
  pl *p = j->p;
  j->tmp = aks_copy_temp_path(j->dest);
  if (j->tmp)
    j->tmp_slot = aks_guard_temp_add(j->tmp);
  /* 0600 until fchmod sets the source's bits: nobody else reads a copy of
   * a private file in the meantime. */
  ak_future *f =
      j->tmp ? ak_openat(p->loop, AT_FDCWD, j->tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600)
             : NULL;
  if (!f) {
    job_fail(j, -ENOMEM, "copy");
    return;
  }
  j->opens++;
  ak_future_on_settle(f, out_open_done, j);
}

static void start_copy(fjob *j)
{
  pl *p = j->p;
  j->dest = aks_copy_dest_path(p->run, j->it);
  if (!j->dest) {
    job_fail(j, -ENOMEM, "copy");
    return;
  }
  int rc = aks_copy_make_dirs(j->dest);
  if (rc < 0) {
    job_fail(j, rc, "copy");
    return;
  }
  if (!p->tmpfile) {
    start_named_copy(j);
    return;
  }
  /* The normal path: an unnamed file in the destination's directory.
   * Nothing to clean up on a signal or a failure; it is named when
   * complete (fin_step). 0600 until fchmod, as above. */
  char *dir = aks_copy_dir_path(j->dest);
  ak_future *f =
      dir ? ak_openat(p->loop, AT_FDCWD, dir, O_TMPFILE | O_WRONLY | O_CLOEXEC, 0600) : NULL;
  free(dir);
  if (!f) {
    job_fail(j, -ENOMEM, "copy");
    return;
  }
  j->tmpfile = true;
  j->opens++;
  ak_future_on_settle(f, out_open_done, j);
}

static void start_job(pl *p, aks_item *it)
{
  if (it->err) { /* failed already during the walk */
    it->finished = true;
    flush_reports(p);
    return;
  }
  fjob *j = calloc(1, sizeof(*j));
  if (!j) {
    it->err = -ENOMEM;
    it->finished = true;
    flush_reports(p);
    return;
  }
  j->p = p;
  j->it = it;
  j->fd = j->out_fd = -1;
  j->tmp_slot = -1;
  j->eof_at = INT64_MAX;
  j->ctx = aks_algo_ctx_new(p->algo, it->digest_len);
  j->prev = p->tail;
  if (p->tail)
    p->tail->next = j;
  else
    p->head = j;
  p->tail = j;
  p->jobs_open++;
  if (!j->ctx)
    job_fail(j, -ENOMEM, NULL);
  if (it->is_stdin) {
    /* Read once, in order: "aksum - -" hashes the whole input, then the
     * empty rest, as sha256sum does (pump_once starts no second "-" before
     * this one ends). */
    p->stdin_busy = true;
    if (p->run->opts.stdin_closed)
      job_fail(j, -EBADF, NULL);
    else
      j->fd = 0;
  } else if (!j->err) {
    ak_future *f = ak_openat(p->loop, AT_FDCWD, it->path, O_RDONLY | O_CLOEXEC, 0);
    if (!f) {
      job_fail(j, -ENOMEM, NULL);
    } else {
      j->opens++;
      ak_future_on_settle(f, open_done, j);
    }
  }
  if (p->run->opts.copy_dest && !j->err)
    start_copy(j);
  job_check(j);
}

/* ---- Checks that could not run where a file failed ------------------------------
 * job_fail only records the failure: the caller then runs job_check, which
 * finishes the file once nothing of it is in flight. Some failures happen
 * where that cannot be done: in pump_once's scans (a read that could not be
 * made: the scan holds the file), or in start_hashing for a file other than
 * the one whose check runs. Such a file, with nothing else in flight, was
 * never finished, and the progress timer kept the loop waiting for good
 * (fault-aksum: the hang at alloc N about 42..53, where a file's first read
 * found no memory). Its check now runs from a post, with no scan on the
 * stack; where even the post finds no memory, from the progress timer's
 * next tick or when ak_loop_run returns. */

/* Runs the checks due. job_check may finish (free) the file it checks and
 * start new ones at the tail, never free another open file: next stays
 * valid. Only from the top of a callback. */
static void run_due_checks(pl *p)
{
  p->checks_due = false;
  for (fjob *j = p->head, *next; j; j = next) {
    next = j->next;
    if (j->check_due) {
      j->check_due = false;
      job_check(j);
    }
  }
}

static void checks_posted(void *arg)
{
  pl *p = arg;
  p->checks_posted = false;
  run_due_checks(p);
}

static void check_soon(fjob *j)
{
  pl *p = j->p;
  j->check_due = true;
  p->checks_due = true;
  if (!p->checks_posted && ak_loop_post(p->loop, checks_posted, p) == 0)
    p->checks_posted = true;
}

/* ---- The scheduler ------------------------------------------------------------ */

static void pump_once(pl *p)
{
  aks_run *run = p->run;
  while (p->jobs_open < p->max_open && p->next_item < run->n) {
    if (run->items[p->next_item].is_stdin && p->stdin_busy)
      break; /* in output order: nothing after it starts either */
    start_job(p, &run->items[p->next_item++]);
  }
  /* The earliest files first, each as many chunks as it wants. */
  for (fjob *j = p->head; j && p->free; j = j->next)
    while (p->free && wants_read(j))
      issue_read(j, chunk_get(p, j));
  if (p->defer_pump)
    start_hashing(p);
}

static void pump_posted(void *arg)
{
  pl *p = arg;
  p->pump_posted = false;
  pump(p);
}

/* After a completion: the scheduler's scans (every open file, for reads
 * and for hashing) at once when few files are open; with hundreds open
 * (small files) once per batch of completions, from a post that runs
 * after the batch, instead of once per completion. */
static void pump_soon(pl *p)
{
  if (!p->defer_pump) {
    pump(p);
    return;
  }
  if (p->pump_posted)
    return;
  if (ak_loop_post(p->loop, pump_posted, p) == 0)
    p->pump_posted = true;
  else
    pump(p); /* no memory for the post: now, then */
}

/* Re-entrant calls (a job finishing inside pump) only ask for another
 * round: the stack stays flat however many files fail in a row. */
static void pump(pl *p)
{
  if (p->pumping) {
    p->pump_again = true;
    return;
  }
  p->pumping = true;
  do {
    p->pump_again = false;
    pump_once(p);
  } while (p->pump_again);
  p->pumping = false;
}

static void progress_timer(void *arg)
{
  pl *p = arg;
  p->timer = NULL;
  if (p->checks_due)
    run_due_checks(p); /* a post for them found no memory */
  if (p->done)
    return;
  aks_progress_tick(p->run, false);
  p->timer = ak_call_later(p->loop, p->tick_ns, progress_timer, p);
}

static void collect_stats(pl *p)
{
  ak_loop_stats st;
  ak_loop_stats_get(p->loop, &st);
  for (unsigned k = 0; k < AK_STATS_KINDS; k++) {
    const char *name = ak_op_kind_name(k);
    p->run->ring_ops += st.submitted[k];
    p->run->fallbacks += st.fallbacks[k];
    if (name && strcmp(name, "read") == 0)
      p->run->ring_reads = st.submitted[k];
  }
}

/* The chunk buffers: 2 MiB aligned and marked for transparent huge pages,
 * so that pinning them (ak_register_buffers) faults in a few huge pages
 * instead of 4096 small ones, and the exit unpins and frees as few: that
 * was a fifth of a short run's CPU (perf, `aksum` of one small file). Where
 * THP is off the madvise is refused and small pages do. */
static char *buffers_alloc(size_t len)
{
  const size_t huge = 2u << 20;
  void *mem = NULL;
  size_t align = len >= huge ? huge : 4096;
  if (posix_memalign(&mem, align, len) != 0)
    return NULL;
  if (align == huge)
    (void)madvise(mem, len & ~(huge - 1), MADV_HUGEPAGE);
  return mem;
}

int aks_pipeline_run(aks_run *run)
{
  pl p;
  memset(&p, 0, sizeof(p));
  p.run = run;
  p.algo = run->opts.algo;
  p.chunk_size = run->opts.chunk;
  p.nchunks = run->opts.buffers;
  p.max_per_job = p.nchunks > 3 ? p.nchunks / 2 : 2;
  p.max_hash_tasks = p.algo->lanes > 1 ? run->opts.jobs : UINT_MAX;
  int rc;
  p.pool = ak_pool_new(run->opts.jobs);
  if (!p.pool) {
    fprintf(stderr, "aksum: cannot start %u hashing threads: %s\n", run->opts.jobs,
            strerror(errno));
    return -errno;
  }
  ak_loop_options lo = {.sq_entries = 256, .pool = p.pool};
  rc = ak_loop_new(&p.loop, &lo);
  if (rc < 0) {
    fprintf(stderr, "aksum: cannot start the io_uring loop: %s (%s)\n", ak_strerror(rc),
            ak_err_name(rc));
    ak_pool_free(p.pool);
    return rc;
  }
  if (run->opts.verbose) {
    ak_features ft;
    ak_loop_features(p.loop, &ft);
    fprintf(stderr, "aksum: backend: %s (%s)\n", ak_backend_name(ft.backend), ft.backend_reason);
  }
  p.chunks = calloc(p.nchunks, sizeof(chunk));
  if (!p.chunks || !(p.mem = buffers_alloc((size_t)p.nchunks * p.chunk_size))) {
    fprintf(stderr, "aksum: cannot allocate %u buffers of %zu bytes\n", p.nchunks, p.chunk_size);
    free(p.chunks);
    ak_loop_free(p.loop);
    ak_pool_free(p.pool);
    return -ENOMEM;
  }
  /* The buffers as one registered buffer: reads then copy into pinned
   * pages (READ_FIXED), about 2 % less CPU per byte than plain reads. Where
   * the kernel refuses (RLIMIT_MEMLOCK), plain reads do. */
  struct iovec iov = {p.mem, (size_t)p.nchunks * p.chunk_size};
  p.fixed = ak_register_buffers(p.loop, &iov, 1) == 0;
  /* Files open at once: what --buffers asks, within RLIMIT_NOFILE less what
   * is open now (the ring, the pool's descriptors). A copy takes two. */
  p.max_open = aks_guard_file_budget(run->opts.copy_dest ? 2 : 1, run->opts.max_open);
  p.tmpfile = run->opts.copy_dest && aks_copy_tmpfile_wanted();
  p.defer_pump = p.max_open > 64;
  /* AKSUM_TEST_FAIL_READ=K (tests only: tests/test_aksum_safety.sh): the
   * K-th read aksum makes fails as if memory ran out, at a point a fault
   * build's alloc point reaches only when timing allows. */
  const char *fail_read = getenv("AKSUM_TEST_FAIL_READ");
  p.fail_read = fail_read ? (unsigned)strtoul(fail_read, NULL, 10) : 0;
  aks_guard_signals();
  for (unsigned i = 0; i < p.nchunks; i++) {
    p.chunks[i].buf = p.mem + (size_t)i * p.chunk_size;
    p.chunks[i].next = p.free;
    p.free = &p.chunks[i];
  }
  bool tty;
  if (aks_progress_wanted(run, &tty)) {
    /* A status line redrawn 5 times a second; plain lines every 5 s (every
     * second with --progress) when stderr is not a terminal. */
    p.tick_ns = tty                                         ? 200000000
                : run->opts.progress == AKS_PROGRESS_ALWAYS ? 1000000000
                                                            : 5000000000;
    p.timer = ak_call_later(p.loop, p.tick_ns, progress_timer, &p);
  }
  run->t0_ns = ak_now_ns();
  pump(&p);
  flush_reports(&p);
  rc = ak_loop_run(p.loop, AK_RUN_DEFAULT);
  while (rc >= 0 && p.checks_due) { /* a post for them found no memory */
    run_due_checks(&p);
    rc = ak_loop_run(p.loop, AK_RUN_DEFAULT);
  }
  run->t1_ns = ak_now_ns();
  if (rc < 0)
    fprintf(stderr, "aksum: the loop failed: %s\n", ak_strerror(rc));
  if (p.timer)
    ak_timer_cancel(p.loop, p.timer);
  aks_progress_tick(run, true);
  collect_stats(&p);
  ak_loop_free(p.loop);
  ak_pool_free(p.pool);
  free(p.mem);
  free(p.chunks);
  return rc < 0 ? rc : 0;
}
