/* download.c: one URL, from its temporary file to its final name. The body
 * goes to an unnamed file (O_TMPFILE) in the target's directory, or with -c
 * (or where the filesystem has no O_TMPFILE) to "<name>.akget-part", by the
 * HTTP client's ring writes. The bytes still missing are planned as ranges
 * (the whole entity, or with -s up to -s ranges fetched by Range over as
 * many connections into the same file at their offsets); a part takes the
 * next range when its own is in. A failed request is retried (--retries)
 * from where its bytes stopped, after a backoff or the server's
 * Retry-After. When every range is in: the bytes written must cover the
 * entity with no gap, the checksum is verified (--checksum), and the file
 * named: an unnamed file is linked in under its final name (through
 * /proc/self/fd; if that name exists, linked under a spare name that is then
 * renamed over it), a named one renamed. On failure the partial file is
 * removed, unless -c keeps it for next time; an unnamed one goes with its
 * descriptor, and with the process if akget is killed. Every open, link,
 * rename and removal is relative to the target's directory, held for the
 * download (names.c, akg_dir_open: reached beneath -d through no link),
 * and the name is given only while the path still leads there: a
 * directory replaced by a link meanwhile cannot take the file outside -d.
 *
 * -c (docs/akget.md, RESUME): the part file has a control record
 * (resume_record.c) saying which ranges are on disk, the entity's size and
 * validators. A checkpoint every CKPT_NS takes the counts of bytes written
 * (the client counts a write once its completion is in), fdatasyncs the
 * part file, and only then stores the record: after a crash the record may
 * lag the data, never lead it. A resume asks the server (HEAD) whether the
 * entity is the recorded one, plans the record's gaps again with this run's
 * -s, and sends If-Range with each Range; a change (size, validator, a 200
 * to a Range) starts over from byte 0.
 *
 * Why unnamed: a file created under one name and renamed to another costs
 * ext4 three directory lookups, two insertions and a removal; an unnamed
 * file linked once costs one lookup and one insertion. On 10,000 files of
 * 16 KiB that was a quarter of akget's CPU time (perf: 60% of the io-wq
 * workers' time was in the two directory operations).
 *
 * Map: 1. the control record (-c: load, checkpoints, forget)  2. ending
 *      (the last check, checksum, link or rename, failure)  3. parts (one
 *      request each, retries, a range in, start over)  4. planning (the
 *      HEAD, the ranges, If-Range, the open, --max-time, the start) */
#define _GNU_SOURCE /* O_TMPFILE, SEEK_HOLE */
#include "akget.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* How often -c's control record is brought up to date: what a crash may
 * make akget fetch again, against an fdatasync per period. */
#define CKPT_NS INT64_C(500000000)
/* Starts over from byte 0 within one run before giving up (the entity
 * keeps changing, or the server's ranges cannot be trusted). */
#define MAX_RESTARTS 2u
/* -s N grows (section 3b): GROW_NS of warm-up after a part starts, then
 * a window of GROW_WINDOW_NS (a whole number of them, up to
 * GROW_WINDOW_MAX_NS, while no byte came in); a part is added while the
 * loop's thread was busy less than GROW_BUSY_MAX of the time (the link,
 * not this CPU, is what limits) and the part added before raised the rate
 * by GROW_GAIN at least. */
#define GROW_NS INT64_C(300000000)
#define GROW_WINDOW_NS INT64_C(1000000000)
#define GROW_WINDOW_MAX_NS INT64_C(5000000000)
#define GROW_BUSY_MAX 0.5
#define GROW_GAIN 1.15

typedef struct dl dl;
typedef struct dl_get dl_get;

typedef struct part {
  dl *d;
  unsigned index;            /* into item->seg_got: bytes of the range in hand */
  int64_t start;             /* first byte of the range in hand */
  int64_t end;               /* its last byte (inclusive), -1: to the end */
  bool ranged;               /* the attempt in flight asked a Range */
  bool decode;               /* the attempt in flight asked a compressed body */
  bool done;                 /* no range left for it */
  unsigned attempts;         /* retries made for the range in hand */
  int64_t head_size;         /* the entity size its response's head gave
                                (the client's size_out); -2 before the head */
  ak_future *f;              /* the request in flight, or NULL */
  ak_timer *retry;           /* a retry waiting, or NULL */
} part;

typedef enum stop_reason { RUNNING, STOP_RESTART, STOP_FAIL } stop_reason;

struct dl {
  akg_worker *w;
  akg_item *item;
  void (*done)(akg_worker *w, akg_item *item);
  const akg_opts *o;
  ak_loop *loop;
  int fd;
  akg_dir *dir;              /* the directory of item->path, held (names.c
                                akg_dir_open), or NULL before */
  int dirfd;                 /* its descriptor: every open, link, rename and
                                unlink is relative to it */
  unsigned nparts;           /* parts started (get->parts[0..nparts-1]) */
  unsigned max_parts;        /* parts planned: nparts grows up to it */
  /* growing (section 3b): the window since the last look */
  ak_timer *grow_timer;      /* the next look, or NULL */
  int64_t grow_t, grow_cpu, grow_got; /* its start: time, thread CPU, bytes */
  double grow_rate_before;   /* bytes/s before the last part added (0: none) */
  bool grow_warmup;          /* the window right after an add: not judged */
  unsigned busy;             /* parts with a request or a retry pending */
  stop_reason stopping;      /* waiting for the parts to stop, and why */
  int64_t size;              /* the entity's size if known, else -1 */
  ak_future *setup;          /* the open or the HEAD probe in flight, or NULL */
  ak_timer *max_timer;       /* --max-time over the whole download, or NULL */
  bool unnamed;              /* fd is an O_TMPFILE file, linked in at the end */
  char proc_path[32];        /* "/proc/self/fd/N" of fd ("" without /proc):
                                an unnamed file's link source, the read back */
  char *spare;               /* the spare name when the final one exists, or NULL */
  /* what is on disk (get->have), and what is still to fetch */
  bool from_record;          /* get->have came from a valid control record */
  akg_extent *ranges;        /* the ranges planned, in order */
  unsigned nranges, next_range; /* of them, the next one no part has taken */
  char *if_range;            /* "If-Range: V" sent with every Range, or NULL */
  const char **hdrs;         /* -H lines plus if_range (or o->headers) */
  size_t hdr_count;
  unsigned restarts;         /* starts over from byte 0 so far */
  bool plain;                /* one stream from byte 0, no Range (the last start over) */
  /* -c: the control record */
  int ctl_fd;                /* the sidecar, or -1 (no -c) */
  char *ctl_path;            /* item->tmp + ".ctl" */
  uint64_t ctl_seq;          /* the last store's sequence */
  akg_record *snap;          /* the checkpoint in flight: taken before its
                                fdatasync (allocated with -c only) */
  ak_future *ckpt;           /* that fdatasync, or NULL */
  ak_timer *ckpt_timer;      /* the next checkpoint, or NULL */
  int64_t ckpt_armed_got;    /* akg_item_got when that timer was armed */
  void (*ckpt_then)(dl *d);  /* runs once the checkpoints are quiet */
  bool ckpt_final;           /* one more checkpoint before ckpt_then */
  akg_ts *ts;                /* -N's question; the answer's time and ETag */
  ak_future *asked;          /* -N: the conditional HEAD's 200, kept for the
                                probe it stands for (-s, -c), or NULL */
  bool no_file;              /* -N's HEAD first: no file opened (yet) */
  bool cd_seen;              /* --content-disposition: a header was looked at */
  char *url_path;            /* the URL's name, replaced by the header's, or NULL */
  dl_get *get;               /* what a GET needs (the record of what is on
                                disk, the parts, the retry's and start
                                over's reasons), or NULL: given by
                                open_file (get_new), so a -N download
                                that ends at its HEAD's 304 never has one */
  dl *spare_next;            /* kept for reuse (dl_free): the next one */
};

/* A download's transfer state, apart from its dl: 9.8 KiB (the extents
 * alone are 6.4 KiB), of which an -N run over an unchanged tree needs
 * none. In one record (10 KiB) the dl's head and its tail's first writes
 * fell on two or three fresh pages per download, with malloc's header of
 * the top chunk after each (perf record -e page-faults: 44 of akget -N
 * -j32's 325 faults); the dl alone is 0.4 KiB, 32 of them three pages. */
struct dl_get {
  akg_record have;           /* ranges complete on disk (from the record and
                                this run's finished ranges), size, validators;
                                get_new writes its head only (its extents
                                are read up to have.n) */
  part parts[AKG_MAX_SEGMENTS]; /* parts[0..nparts-1] (set up as they start) */
  char last_retry[400];      /* why the last retry was scheduled ("" if none) */
  char restart_why[400];     /* why the start over asked is needed */
  int64_t seg_got[AKG_MAX_SEGMENTS]; /* the item's (item->seg_got) */
  dl_get *spare_next;        /* kept for reuse (dl_free): the next one */
};

/* Records of downloads that ended, kept for the next ones on this loop's
 * thread: a dl_get is 10 KiB, above what glibc's per-thread cache holds,
 * and its calloc (the zeroing, and the merging of freed chunks a large
 * request starts) was a quarter of akget -N's instructions at -j32 (when
 * it was part of every dl); the dl, under 1 KiB, is kept the same way: 32
 * freed at once would overflow glibc's cache of 7 a size. Lists through
 * the records themselves, not arrays in TLS: every thread's static TLS is
 * zeroed at its start (the list reader's too), a page per 4 KiB. */
enum { DL_SPARES = 64 };
static __thread dl *dl_spare;         /* through dl.spare_next */
static __thread unsigned dl_spares;
static __thread dl_get *get_spare;    /* through dl_get.spare_next */
static __thread unsigned get_spares;

/* A zeroed dl. */
static dl *dl_new(void)
{
  dl *d = dl_spare;
  if (d) {
    dl_spare = d->spare_next;
    dl_spares--;
  } else {
    d = malloc(sizeof *d);
  }
  if (d)
    memset(d, 0, sizeof *d);
  return d;
}

/* Gives d its dl_get (before the file's open: everything that reads or
 * writes the record, the parts or the reasons comes after it), once.
 * Written: the record's head (akg_record_clear's empty record: no extent,
 * size -1) and the reasons' first bytes; the parts as planned. Returns 0
 * or -ENOMEM. */
static int get_new(dl *d)
{
  if (d->get)
    return 0;
  dl_get *g = get_spare;
  if (g) {
    get_spare = g->spare_next;
    get_spares--;
  } else if (!(g = malloc(sizeof *g))) {
    return -ENOMEM;
  }
  memset(&g->have, 0, offsetof(akg_record, ext));
  g->have.size = -1;
  g->last_retry[0] = '\0';
  g->restart_why[0] = '\0';
  memset(g->seg_got, 0, sizeof g->seg_got);
  d->get = g;
  __atomic_store_n(&d->item->seg_got, g->seg_got, __ATOMIC_RELEASE);
  return 0;
}

/* The end: the item's counters leave d->get (kept for another download,
 * or freed) for ranges_done, under the lock the display reads them by. */
static void get_detach(dl *d)
{
  akg_item *it = d->item;
  if (!d->get)
    return;
  akg_run *run = akg_worker_run(d->w);
  int64_t sum = 0;
  for (unsigned i = 0; i < AKG_MAX_SEGMENTS; i++)
    sum += __atomic_load_n(&d->get->seg_got[i], __ATOMIC_RELAXED);
  pthread_mutex_lock(&run->active_lock);
  __atomic_fetch_add(&it->ranges_done, sum, __ATOMIC_RELAXED);
  __atomic_store_n(&it->seg_got, NULL, __ATOMIC_RELEASE);
  pthread_mutex_unlock(&run->active_lock);
}

static void dl_free(dl *d)
{
  if (d->get && get_spares < DL_SPARES) {
    d->get->spare_next = get_spare;
    get_spare = d->get;
    get_spares++;
  } else {
    free(d->get);
  }
  if (dl_spares < DL_SPARES) {
    d->spare_next = dl_spare;
    dl_spare = d;
    dl_spares++;
  } else {
    free(d);
  }
}

void akg_download_spares_free(void)
{
  while (dl_spare) {
    dl *d = dl_spare;
    dl_spare = d->spare_next;
    free(d);
  }
  while (get_spare) {
    dl_get *g = get_spare;
    get_spare = g->spare_next;
    free(g);
  }
  dl_spares = get_spares = 0;
}

int64_t akg_item_got(const akg_item *item)
{
  int64_t n = item->resumed_from + __atomic_load_n(&item->ranges_done, __ATOMIC_RELAXED);
  const int64_t *sg = __atomic_load_n(&item->seg_got, __ATOMIC_ACQUIRE);
  for (unsigned i = 0; sg && i < AKG_MAX_SEGMENTS; i++)
    n += __atomic_load_n(&sg[i], __ATOMIC_RELAXED);
  return n;
}

static void set_error(dl *d, int err, int status, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void set_error(dl *d, int err, int status, const char *fmt, ...)
{
  akg_item *it = d->item;
  if (it->err)
    return;
  it->err = err;
  if (status)
    it->status = status;
  char buf[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  free(it->detail);
  it->detail = strdup(buf);
}

static void start_part(part *p);
static void finish_failed(dl *d);
static void all_parts_in(dl *d);
static void begin(dl *d);

/* ---- 1. the control record (-c) -------------------------------------------------------- */

static void ckpt_start(dl *d);

static void ckpt_arm(dl *d);

/* Whether the download will be in before another period has passed, at
 * the rate of the period just gone: a checkpoint then only delays the end.
 * The last check waits for an fdatasync in flight (it shares the fd), and
 * one started near the end writes back everything written since the last:
 * `-c -s4` of 1 GiB took 1.23 s against 0.63 s without -c, the last half
 * second spent in that fdatasync. Skipping it lets the record lag further
 * (a crash fetches more again), never lead. */
static bool ckpt_pointless(dl *d, int64_t got)
{
  int64_t rate = got - d->ckpt_armed_got; /* bytes per CKPT_NS */
  return d->size >= 0 && rate > 0 && d->size - got < rate;
}

static void ckpt_fire(void *arg)
{
  dl *d = arg;
  d->ckpt_timer = NULL;
  int64_t got = akg_item_got(d->item);
  if (ckpt_pointless(d, got)) {
    ckpt_arm(d); /* still one later, should the end not come */
    return;
  }
  ckpt_start(d);
}

static void ckpt_arm(dl *d)
{
  if (d->ctl_fd >= 0 && !d->ckpt_timer && !d->ckpt && d->stopping == RUNNING) {
    d->ckpt_armed_got = akg_item_got(d->item);
    d->ckpt_timer = ak_call_later(d->loop, CKPT_NS, ckpt_fire, d);
  }
}

static void grow_stop(dl *d)
{
  if (d->grow_timer) {
    ak_timer_cancel(d->loop, d->grow_timer);
    d->grow_timer = NULL;
  }
}

/* A part's bytes count only if its response is of the entity planned: a
 * 206 whose size ("/N") is another one is a changed entity (found when it
 * ends, and started over), never recorded. */
static bool part_bytes_count(const dl *d, const part *p)
{
  int64_t hs = __atomic_load_n(&p->head_size, __ATOMIC_RELAXED);
  return d->size < 0 || hs == d->size || (p->decode && hs == -1);
}

/* have plus what the parts have written of their ranges so far. */
static void take_snapshot(dl *d, akg_record *r)
{
  *r = d->get->have;
  for (unsigned i = 0; i < d->nparts; i++) {
    const part *p = &d->get->parts[i];
    int64_t got = __atomic_load_n(&d->item->seg_got[p->index], __ATOMIC_RELAXED);
    if (!p->done && got > 0 && part_bytes_count(d, p))
      akg_extents_add(r, p->start, got);
  }
}

static int store_record(dl *d, akg_record *r)
{
  r->seq = d->ctl_seq;
  int rc = akg_record_store(d->ctl_fd, d->item->url, r);
  d->ctl_seq = r->seq;
  if (rc < 0)
    akg_progress_event(akg_worker_run(d->w), d->item, "%s: the control record could not be written: %s",
                       d->ctl_path, strerror(-rc));
  return rc;
}

static void on_ckpt(ak_future *f, void *arg)
{
  dl *d = arg;
  d->ckpt = NULL;
  int64_t r = f ? ak_future_result(f) : -ENOMEM;
  if (r == 0)
    store_record(d, d->snap); /* the data it lists is on disk */
  else if (d->o->verbose)
    akg_progress_event(akg_worker_run(d->w), d->item,
                       "%s: fdatasync failed (%s): the control record stays as it was", d->item->tmp,
                       strerror((int)-r));
  if (d->ckpt_then) {
    if (d->ckpt_final) {
      d->ckpt_final = false;
      ckpt_start(d);
      return;
    }
    void (*then)(dl *) = d->ckpt_then;
    d->ckpt_then = NULL;
    then(d);
    return;
  }
  ckpt_arm(d);
}

/* Snapshot first, fdatasync second, store third: every byte the snapshot
 * counts was written (its completion in) before the fdatasync began. */
static void ckpt_start(dl *d)
{
  take_snapshot(d, d->snap);
  ak_future *f = ak_fdatasync(d->loop, d->fd);
  if (!f || ak_future_on_settle(f, on_ckpt, d) < 0) {
    ak_future_release(f);
    on_ckpt(NULL, d);
    return;
  }
  d->ckpt = f;
  ak_future_release(f);
}

/* Runs then(d) once no checkpoint is in flight (they use fd), after one
 * last checkpoint if final. Without -c, at once. */
static void ckpt_quiesce(dl *d, void (*then)(dl *d), bool final)
{
  if (d->ckpt_timer) {
    ak_timer_cancel(d->loop, d->ckpt_timer);
    d->ckpt_timer = NULL;
  }
  if (d->ctl_fd < 0 || d->fd < 0 || (!final && !d->ckpt)) {
    then(d);
    return;
  }
  d->ckpt_then = then;
  if (d->ckpt) {
    d->ckpt_final = final;
    return;
  }
  d->ckpt_final = false;
  ckpt_start(d);
}

/* Forgets every byte on disk: the record first (a crash in between leaves
 * a part file without record, whose holes or size say the rest), then the
 * part file. Returns 0 or -errno. */
static int forget_all(dl *d)
{
  akg_record_clear(&d->get->have);
  d->from_record = false;
  if (d->ctl_fd >= 0 && ftruncate(d->ctl_fd, 0) < 0)
    return -errno;
  if (ftruncate(d->fd, 0) < 0)
    return -errno;
  d->item->resumed_from = 0;
  return 0;
}

/* Loads the record next to a -c part file of psize bytes into d->get->have, or
 * decides what the part file without one is worth. Returns 0 or -errno. */
static int load_record(dl *d, int64_t psize)
{
  akg_item *it = d->item;
  akg_run *run = akg_worker_run(d->w);
  char why[200];
  int lr = akg_record_load(d->ctl_fd, it->url, &d->get->have, why, sizeof why);
  if (lr == 1 && d->get->have.n > 0) {
    const akg_extent *last = &d->get->have.ext[d->get->have.n - 1];
    if (last->start + last->len > psize) {
      snprintf(why, sizeof why, "it lists bytes up to %" PRId64 ", the part file has %" PRId64,
               last->start + last->len, psize);
      lr = -1;
    }
  }
  if (lr == 1) {
    d->from_record = true;
    d->ctl_seq = d->get->have.seq;
    return 0;
  }
  akg_record_clear(&d->get->have);
  if (lr < 0) {
    akg_progress_event(run, it, "start over %s from byte 0: its control record %s is not used (%s)",
                       it->url, d->ctl_path, why);
    return forget_all(d);
  }
  if (psize == 0)
    return 0;
  /* No record: the part file is one stream written in order if it has no
   * hole (a segmented one has holes between its segments' ends and the
   * next segments' starts). Then its size is proven; else nothing is. */
  off_t hole = lseek(d->fd, 0, SEEK_HOLE);
  if (hole >= 0 && hole < psize) {
    akg_progress_event(run, it,
                       "start over %s from byte 0: %s has no control record and a hole at byte "
                       "%lld (not one stream written in order)",
                       it->url, it->tmp, (long long)hole);
    return forget_all(d);
  }
  if (d->o->verbose)
    akg_progress_event(run, it,
                       "%s has no control record; it has no hole, so it is taken as one stream "
                       "written in order: resuming from byte %" PRId64,
                       it->tmp, psize);
  akg_extents_add(&d->get->have, 0, psize);
  return 0;
}

/* The two slots written once, so that later stores never need new blocks
 * (ENOSPC). */
static int init_record(dl *d)
{
  if (d->ctl_fd < 0)
    return 0;
  akg_record r;
  take_snapshot(d, &r);
  int rc = store_record(d, &r);
  return rc < 0 ? rc : store_record(d, &r);
}

/* ---- 2. ending ------------------------------------------------------------------------ */

static void stop_max_timer(dl *d)
{
  if (d->max_timer) {
    ak_timer_cancel(d->loop, d->max_timer);
    d->max_timer = NULL;
  }
}

/* Removes the file of that name in the download's directory (the name's
 * leaf: every file of a download is next to its final name). */
static void unlink_here(dl *d, const char *path)
{
  unlinkat(d->dirfd, akg_leaf(path), 0);
}

static void end_item(dl *d, akg_state state)
{
  akg_item *it = d->item;
  stop_max_timer(d);
  grow_stop(d);
  akg_run *run = akg_worker_run(d->w);
  it->end_ns = ak_now_ns();
  it->exit_code = state == AKG_DONE ? 0 : akg_exit_code(it->err, it->status);
  __atomic_store_n(&it->state, state, __ATOMIC_RELEASE);
  atomic_fetch_add(&run->finished, 1);
  if (state == AKG_DONE && it->unchanged) {
    atomic_fetch_add(&run->unchanged, 1);
    if (run->opts->verbose) /* said with -v only: not even formatted else (akget -N, each file) */
      akg_progress_event(run, it, "unchanged %s (304: not modified since the file's copy)",
                         it->path);
  } else if (state == AKG_DONE) {
    double s = (it->end_ns - it->start_ns) / 1e9;
    akg_progress_event(run, it, "done %s %" PRId64 " bytes in %.2f s (%.1f MB/s)%s", it->path,
                       it->bytes, s, s > 0 ? (it->bytes - it->resumed_from) / s / 1e6 : 0.0,
                       it->segments_used > 1 ? " segmented" : "");
  } else {
    atomic_fetch_add(&run->failed, 1);
    akg_progress_event(run, it, "FAILED %s: %s (exit %d)", it->url,
                       it->detail ? it->detail : akg_err_text(it->err), it->exit_code);
  }
  void (*done)(akg_worker *, akg_item *) = d->done;
  akg_worker *w = d->w;
  if (d->ctl_fd >= 0)
    close(d->ctl_fd);
  if (state == AKG_DONE && d->ctl_path)
    unlink_here(d, d->ctl_path); /* the file is whole under its name: no resume left */
  akg_dir_close(d->dir);
  free(d->ctl_path);
  free(d->snap);
  free(d->ranges);
  free(d->if_range);
  if (d->hdrs != (const char **)d->o->headers)
    free(d->hdrs);
  free(d->spare);
  free(d->url_path);
  /* The item frees it, on the feed's thread that made it (feed.c). */
  akg_ts_free(it->ts);
  it->ts = d->ts;
  ak_future_release(d->asked);
  get_detach(d);
  dl_free(d);
  done(w, it);
}

/* -N: the server answered 304 to the conditional request: the file on
 * disk stays as it is; the temporary file (and -c's part file, which the
 * 304 says is not needed) goes. */
static void on_unchanged_closed(ak_future *f, void *arg)
{
  (void)f;
  dl *d = arg;
  if (d->no_file && d->o->resume) {
    /* Asked before any open: a part file and record left by an earlier
     * run are not needed either. */
    size_t n = strlen(d->item->tmp) + 5;
    d->ctl_path = malloc(n);
    if (d->ctl_path)
      snprintf(d->ctl_path, n, "%s.ctl", d->item->tmp);
    unlink_here(d, d->item->tmp);
  } else if (!d->no_file && !d->unnamed) {
    unlink_here(d, d->item->tmp);
  }
  end_item(d, AKG_DONE); /* with -c it removes the control record too */
}

static void close_unchanged(dl *d)
{
  akg_item *it = d->item;
  it->unchanged = true;
  it->status = 304;
  if (d->o->checksums) /* kept as it is: trusted, not hashed again */
    it->sum_check = akg_sums_find(d->o, it->path) ? AKG_SUM_NOT_HASHED : AKG_SUM_NOT_LISTED;
  it->bytes = akg_ts_local_size(d->ts);
  __atomic_store_n(&it->total, it->bytes, __ATOMIC_RELAXED);
  if (d->fd < 0) {
    on_unchanged_closed(NULL, d);
    return;
  }
  ak_future *c = ak_close(d->loop, d->fd);
  d->fd = -1;
  if (!c || ak_future_on_settle(c, on_unchanged_closed, d) < 0)
    on_unchanged_closed(NULL, d);
  ak_future_release(c);
}

static bool is_unchanged(const dl *d, const ak_http_response *r)
{
  return r && r->status == 304 && akg_ts_conditional(d->ts);
}

static void on_failed_closed(ak_future *f, void *arg)
{
  (void)f;
  dl *d = arg;
  if (d->spare)
    unlink_here(d, d->spare); /* linked there, not yet renamed over the final name */
  else if (!d->unnamed && (!d->o->resume || d->item->err == AKG_ECHECKSUM)) {
    unlink_here(d, d->item->tmp); /* no partial file left behind (-c keeps it) */
    if (d->ctl_path)
      unlink_here(d, d->ctl_path);
  }
  end_item(d, AKG_FAILED);
}

static void close_failed(dl *d)
{
  if (d->fd < 0) {
    on_failed_closed(NULL, d);
    return;
  }
  ak_future *c = ak_close(d->loop, d->fd);
  d->fd = -1;
  if (!c || ak_future_on_settle(c, on_failed_closed, d) < 0)
    on_failed_closed(NULL, d);
  ak_future_release(c);
}

/* The part file is kept (-c): the record is brought up to date first. */
static void finish_failed(dl *d)
{
  ckpt_quiesce(d, close_failed, d->o->resume && d->item->err != AKG_ECHECKSUM);
}

static void do_restart(dl *d);

/* Every part has stopped: what the stop was for. */
static void parts_stopped(dl *d)
{
  if (d->stopping == STOP_RESTART)
    ckpt_quiesce(d, do_restart, false);
  else
    finish_failed(d);
}

/* Stops every part (their callbacks come back with CANCELLED). */
static void stop_parts(dl *d, stop_reason why)
{
  if (d->stopping != RUNNING) {
    if (why == STOP_FAIL)
      d->stopping = STOP_FAIL; /* a failure wins over a start over */
    return;
  }
  d->stopping = why;
  grow_stop(d);
  for (unsigned i = 0; i < d->nparts; i++) {
    part *p = &d->get->parts[i];
    if (p->f)
      ak_future_cancel(p->f);
    if (p->retry) {
      ak_timer_cancel(d->loop, p->retry);
      p->retry = NULL;
      d->busy--;
    }
  }
  if (d->busy == 0)
    parts_stopped(d);
}

static void fail_item(dl *d)
{
  stop_parts(d, STOP_FAIL);
}

/* The entity is not the one whose bytes are on disk (or the server's
 * ranges cannot be trusted): every part stops, then do_restart. Returns
 * whether this call began the stop: then the stop's end is taken care of
 * (with no part busy, do_restart may have run already, the parts planned
 * again), and a caller in a part's callback must not call part_finished
 * after it; false: a stop was under way, which that part_finished ends. */
static bool restart_item(dl *d, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static bool restart_item(dl *d, const char *fmt, ...)
{
  if (d->stopping != RUNNING)
    return false;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(d->get->restart_why, sizeof d->get->restart_why, fmt, ap);
  va_end(ap);
  stop_parts(d, STOP_RESTART);
  return true;
}

static void on_renamed(ak_future *f, void *arg)
{
  dl *d = arg;
  int64_t r = ak_future_result(f);
  if (r < 0) {
    set_error(d, (int)r, 0, "rename to %s: %s", d->item->path, strerror((int)-r));
    finish_failed(d); /* fd is closed already; the temporary file goes */
    return;
  }
  end_item(d, AKG_DONE);
}

static void rename_to_final(dl *d, const char *from)
{
  ak_future *rn = ak_renameat(d->loop, d->dirfd, akg_leaf(from), d->dirfd,
                              akg_leaf(d->item->path), 0);
  if (!rn || ak_future_on_settle(rn, on_renamed, d) < 0) {
    set_error(d, -ENOMEM, 0, "out of memory");
    finish_failed(d);
  }
  ak_future_release(rn);
}

static void on_closed(ak_future *f, void *arg)
{
  dl *d = arg;
  int64_t r = ak_future_result(f);
  if (r < 0) {
    set_error(d, (int)r, 0, "close: %s", strerror((int)-r));
    finish_failed(d);
    return;
  }
  if (d->spare)
    rename_to_final(d, d->spare); /* an unnamed file, linked under the spare name */
  else if (d->unnamed)
    end_item(d, AKG_DONE); /* linked under its final name before the close */
  else
    rename_to_final(d, d->item->tmp);
}

static void close_then(dl *d)
{
  ak_future *c = ak_close(d->loop, d->fd);
  d->fd = -1;
  if (!c || ak_future_on_settle(c, on_closed, d) < 0) {
    set_error(d, -ENOMEM, 0, "out of memory");
    finish_failed(d);
  }
  ak_future_release(c);
}

static void link_unnamed(dl *d, const char *name);

/* The unnamed file is linked in: under its final name (done, once closed),
 * or under the spare name (renamed over the final one after the close). The
 * final name taken: a spare name next to it, never the .akget-part name,
 * which may hold an earlier -c download. */
static void on_linked(ak_future *f, void *arg)
{
  dl *d = arg;
  int64_t r = ak_future_result(f);
  if (r == -EEXIST && !d->spare) {
    static unsigned seq;
    size_t len = strlen(d->item->path) + 64;
    d->spare = malloc(len);
    if (!d->spare) {
      set_error(d, -ENOMEM, 0, "out of memory");
      finish_failed(d);
      return;
    }
    snprintf(d->spare, len, "%s.akget-%d-%u", d->item->path, (int)getpid(),
             __atomic_fetch_add(&seq, 1, __ATOMIC_RELAXED));
    link_unnamed(d, d->spare);
    return;
  }
  if (r < 0) {
    const char *name = d->spare ? d->spare : d->item->path;
    set_error(d, (int)r, 0, "link to %s: %s", name, strerror((int)-r));
    free(d->spare); /* not made: nothing to remove */
    d->spare = NULL;
    finish_failed(d); /* closes: the unnamed file goes with its descriptor */
    return;
  }
  close_then(d);
}

static void link_unnamed(dl *d, const char *name)
{
  ak_future *l = ak_linkat(d->loop, AT_FDCWD, d->proc_path, d->dirfd, akg_leaf(name),
                           AT_SYMLINK_FOLLOW);
  if (!l || ak_future_on_settle(l, on_linked, d) < 0) {
    set_error(d, -ENOMEM, 0, "out of memory");
    finish_failed(d);
  }
  ak_future_release(l);
}

/* The file is complete: it gets its final name, if its directory is
 * still the one it was written in (a directory beneath -d replaced by a
 * link during the download would put the name outside -d: exit 3). */
static void close_and_rename(dl *d)
{
  char why[400];
  int rc = akg_dir_still(d->o, d->item, d->dir, why, sizeof why);
  if (rc < 0) {
    set_error(d, rc, 0, "%s", why[0] ? why : strerror(-rc));
    finish_failed(d);
    return;
  }
  if (d->unnamed)
    link_unnamed(d, d->item->path);
  else
    close_then(d);
}

static void on_checked(ak_future *f, void *arg)
{
  dl *d = arg;
  int64_t r = ak_future_result(f);
  akg_item *it = d->item;
  bool listed = it->sum_check == AKG_SUM_LISTED;
  if (listed)
    it->sum_check = r == 0 ? AKG_SUM_VERIFIED : r == AKG_ECHECKSUM ? AKG_SUM_MISMATCH : AKG_SUM_NONE;
  if (r < 0) {
    if (r == AKG_ECHECKSUM)
      set_error(d, AKG_ECHECKSUM, 0, "%s of the download does not match %s",
                listed ? "the digest" : "sha-256", listed ? "the --checksums list" : "--checksum");
    else
      set_error(d, (int)r, 0, "reading back for the checksum: %s", strerror((int)-r));
    finish_failed(d);
    return;
  }
  close_and_rename(d);
}

/* The last check before the name appears: the ranges on disk cover the
 * whole entity, with no gap. Else exit 7, the part file and its record
 * kept for the next -c. */
static bool covers_entity(dl *d, int64_t *size)
{
  const akg_record *h = &d->get->have;
  if (d->size < 0) {
    /* Size unknown: one stream from byte 0 to its end, or nothing. */
    *size = h->n == 0 ? 0 : h->ext[0].start + h->ext[0].len;
    return h->n == 0 || (h->n == 1 && h->ext[0].start == 0);
  }
  *size = d->size;
  akg_extent gap;
  if (akg_extents_gaps(h, d->size, &gap, 1) == 0)
    return true;
  set_error(d, AK_EHTTPPROTO, 0,
            "bytes %" PRId64 "-%" PRId64 " of %" PRId64 " are missing: the file is not complete%s",
            gap.start, gap.start + gap.len - 1, d->size,
            d->o->resume ? " (the part file and its record are kept for -c)" : "");
  return false;
}

static void parts_in_quiet(dl *d);

/* Every part is in: coverage, checksum, name. */
static void all_parts_in(dl *d)
{
  stop_max_timer(d); /* the bytes are all in: checking and naming finish */
  grow_stop(d);
  ckpt_quiesce(d, parts_in_quiet, false);
}

static void parts_in_quiet(dl *d)
{
  akg_item *it = d->item;
  int64_t end;
  if (!covers_entity(d, &end)) {
    fail_item(d);
    return;
  }
  /* A resumed file answered with a whole 200 may have been longer. Without
   * -c the file was opened with O_TRUNC and holds exactly the bytes
   * written: no truncate (a syscall per file saved). */
  if (d->o->resume && ftruncate(d->fd, end) < 0) {
    set_error(d, -errno, 0, "truncate %s: %s", it->tmp, strerror(errno));
    fail_item(d);
    return;
  }
  it->bytes = end;
  __atomic_store_n(&it->total, end, __ATOMIC_RELAXED);
  char why[200];
  int trc = akg_ts_apply(d->ts, d->fd, d->o, why, sizeof why);
  if (trc < 0) {
    set_error(d, trc, 0, "set the time of %s: %s", it->path, strerror(-trc));
    fail_item(d);
    return;
  }
  if (why[0] && d->o->verbose)
    akg_progress_event(akg_worker_run(d->w), it, "%s: %s", it->url, why);
  const akg_sum *listed = it->has_checksum ? NULL : akg_sums_find(d->o, it->path);
  if (d->o->checksums && !it->has_checksum && !listed) {
    it->sum_check = AKG_SUM_NOT_LISTED;
    if (d->o->verbose)
      akg_progress_event(akg_worker_run(d->w), it, "%s: not in the --checksums list: not verified",
                         it->path);
  }
  if (it->has_checksum || listed) {
    /* Read back through the descriptor where /proc has it: the file
     * written, whatever became of the path. */
    const char *at = d->proc_path[0] ? d->proc_path : it->tmp;
    ak_future *c = listed ? akg_sum_verify(d->loop, at, listed)
                          : akg_checksum_verify(d->loop, at, it->sha256);
    if (listed)
      it->sum_check = AKG_SUM_LISTED;
    if (!c || ak_future_on_settle(c, on_checked, d) < 0) {
      set_error(d, -ENOMEM, 0, "out of memory");
      finish_failed(d);
    }
    ak_future_release(c);
    return;
  }
  close_and_rename(d);
}

/* ---- 3. parts ----------------------------------------------------------------------------- */

static void retry_fire(void *arg)
{
  part *p = arg;
  p->retry = NULL;
  p->d->busy--;
  start_part(p);
}

/* Schedules p again after a backoff; false if it has no retries left. */
static bool schedule_retry(part *p, int64_t retry_after_s, const char *why)
{
  dl *d = p->d;
  if (p->attempts >= d->o->retries)
    return false;
  p->attempts++;
  d->item->attempts++;
  int64_t wait = akg_backoff_ns(d->o, p->attempts, retry_after_s);
  snprintf(d->get->last_retry, sizeof d->get->last_retry, "%s", why);
  akg_progress_event(akg_worker_run(d->w), d->item, "retry %u/%u %s in %.1f s: %s", p->attempts,
                     d->o->retries, d->item->url, wait / 1e9, why);
  p->retry = ak_call_later(d->loop, wait, retry_fire, p);
  if (!p->retry)
    return false;
  d->busy++;
  return true;
}

static void part_finished(part *p)
{
  dl *d = p->d;
  if (d->stopping != RUNNING) {
    if (d->busy == 0)
      parts_stopped(d);
    return;
  }
  for (unsigned i = 0; i < d->nparts; i++)
    if (!d->get->parts[i].done)
      return;
  all_parts_in(d);
}

/* Gives p the next planned range; false if none is left. */
static bool take_range(part *p)
{
  dl *d = p->d;
  __atomic_store_n(&d->item->seg_got[p->index], 0, __ATOMIC_RELAXED);
  if (d->next_range >= d->nranges)
    return false;
  const akg_extent *r = &d->ranges[d->next_range++];
  p->start = r->start;
  p->end = r->len < 0 ? -1 : r->start + r->len - 1;
  p->attempts = 0;
  return true;
}

/* p's range is in (its request ended well): its bytes join d->get->have. */
static void range_in(part *p)
{
  dl *d = p->d;
  int64_t got = __atomic_load_n(&d->item->seg_got[p->index], __ATOMIC_RELAXED);
  akg_extents_add(&d->get->have, p->start, got);
  __atomic_fetch_add(&d->item->ranges_done, got, __ATOMIC_RELAXED);
  if (p->end < 0 && d->size < 0)
    d->size = p->start + got; /* a stream to its end: the entity ends there */
  if (take_range(p)) {
    start_part(p);
    return;
  }
  p->done = true;
  part_finished(p);
}

/* A 416 to a resume whose file is complete already ("bytes *\/N" with N
 * where the request started). */
static bool resume_is_complete(const part *p, const ak_http_response *r)
{
  const char *cr = ak_http_response_header(r, "content-range");
  long long n;
  return p->start > 0 && p->end < 0 && cr && sscanf(cr, "bytes */%lld", &n) == 1 && n == p->start;
}

/* The library's detail without the URL it starts with (akget's lines name
 * the URL already). */
static const char *without_url(const char *detail, int err)
{
  if (!detail)
    return ak_strerror(err);
  if (strncmp(detail, "http", 4) == 0) {
    const char *s = strstr(detail, ": ");
    return s ? s + 2 : ak_strerror(err);
  }
  return detail;
}

/* A response that ended well: its range is in, or the rest of it is asked
 * (a 206 may end before the range's end), or the entity changed. */
static void part_ok(part *p, const ak_http_response *r)
{
  dl *d = p->d;
  akg_item *it = d->item;
  it->status = r->status;
  if (r->decoded)
    it->decoded = true;
  if (r->status == 206 && d->size >= 0 && r->entity_size >= 0 && r->entity_size != d->size) {
    if (!restart_item(d, "the server's size is %" PRId64 " bytes, it was %" PRId64 ": the file changed",
                      r->entity_size, d->size))
      part_finished(p);
    return;
  }
  if (r->status != 206 && p->start > 0) {
    /* The whole entity from byte 0, asked without Range: not possible
     * (a part past byte 0 always asks a Range, and a 200 to it fails
     * AK_EHTTPRANGE); never trusted at the wrong offset. */
    if (!restart_item(d, "a %d where a Range was asked", r->status))
      part_finished(p);
    return;
  }
  if (r->status != 206 && r->entity_size >= 0 && d->size >= 0 && r->entity_size != d->size) {
    /* One stream from byte 0 (the whole entity): its size is the truth. */
    d->size = r->entity_size;
    __atomic_store_n(&it->total, d->size, __ATOMIC_RELAXED);
  }
  int64_t got = __atomic_load_n(&it->seg_got[p->index], __ATOMIC_RELAXED);
  if (r->status == 206 && p->end >= 0 && p->start + got <= p->end) {
    /* A shorter 206 than asked (allowed): its bytes join, the rest is asked. */
    akg_extents_add(&d->get->have, p->start, got);
    __atomic_fetch_add(&it->ranges_done, got, __ATOMIC_RELAXED);
    __atomic_store_n(&it->seg_got[p->index], 0, __ATOMIC_RELAXED);
    p->start += got;
    start_part(p);
    return;
  }
  range_in(p);
}

/* --content-disposition (not with -o): the name the server gives replaces
 * the URL's, in the same directory, from the first 200 or 206 (or the HEAD
 * before them) that has the header. A refused name is said (without -v
 * too) and the URL's name stays, as wget's does. The file is named at the
 * end, so nothing on disk is renamed here. */
static void take_disposition_name(dl *d, const ak_http_response *r)
{
  if (!d->o->content_disposition || d->o->output || d->cd_seen || !r ||
      (r->status != 200 && r->status != 206))
    return;
  const char *v = ak_http_response_header(r, "content-disposition");
  if (!v)
    return;
  d->cd_seen = true;
  akg_item *it = d->item;
  akg_run *run = akg_worker_run(d->w);
  char *name = NULL, why[160];
  int rc = akg_cd_filename(v, &name, why, sizeof why);
  if (rc == -1)
    akg_progress_event(run, it, "warning: %s: the Content-Disposition name is refused (%s): "
                       "saved as %s", it->url, why, it->path);
  if (rc <= 0)
    return;
  const char *slash = strrchr(it->path, '/');
  size_t dir_len = slash ? (size_t)(slash - it->path) + 1 : 0;
  char *path = malloc(dir_len + strlen(name) + 1);
  if (path) {
    memcpy(path, it->path, dir_len);
    strcpy(path + dir_len, name);
    d->url_path = it->path; /* freed at the end: the display may be reading it */
    __atomic_store_n(&it->path, path, __ATOMIC_RELEASE);
    if (d->o->verbose)
      akg_progress_event(run, it, "%s: named %s by Content-Disposition%s%s", it->url, path,
                         why[0] ? ": " : "", why);
  }
  free(name);
}

static void on_part_done(ak_future *f, void *arg)
{
  part *p = arg;
  dl *d = p->d;
  akg_item *it = d->item;
  p->f = NULL;
  d->busy--;
  int64_t res = ak_future_result(f);
  const ak_http_response *r = ak_future_state(f) == AK_DONE ? ak_future_value(f) : NULL;
  if (d->stopping != RUNNING) {
    ak_future_release(f);
    part_finished(p);
    return;
  }
  if (is_unchanged(d, r) && d->nparts == 1 && !p->ranged) {
    ak_future_release(f);
    ckpt_quiesce(d, close_unchanged, false);
    return;
  }
  if (r && (r->status == 200 || r->status == 206 || r->status == 204)) {
    take_disposition_name(d, r);
    akg_ts_note(d->ts, r);
    part_ok(p, r);
    ak_future_release(f);
    return;
  }
  if (r && r->status == 416 && resume_is_complete(p, r)) {
    it->status = 416;
    d->size = p->start;
    p->done = true;
    ak_future_release(f);
    part_finished(p);
    return;
  }
  if (res == AK_EHTTPRANGE && p->ranged) {
    /* A 200 to a Range (the entity changed since If-Range's validator, or
     * the server ignores Range), or a 206 of another range than asked. */
    bool started = restart_item(d, "%s%s", without_url(ak_future_detail(f), (int)res),
                                d->if_range ? " (If-Range: the file changed, or Range is not supported)"
                                            : "");
    ak_future_release(f);
    if (!started)
      part_finished(p);
    return;
  }
  int err = r ? AKG_EHTTPSTATUS : (int)res;
  int status = r ? r->status : 0;
  char why[400];
  if (r)
    snprintf(why, sizeof why, "HTTP %d %s", r->status, r->reason ? r->reason : "");
  else
    snprintf(why, sizeof why, "%s: %s", ak_err_name(err), without_url(ak_future_detail(f), err));
  int64_t retry_after = r ? r->retry_after_s : -1;
  ak_future_release(f);
  if (akg_should_retry(err, status) && schedule_retry(p, retry_after, why))
    return;
  if (r && r->status < 400)
    err = AK_EHTTPPROTO; /* a 3xx not followed, a 1xx...: not a file */
  set_error(d, err, status, "%s", why);
  fail_item(d);
}

static void start_part(part *p)
{
  dl *d = p->d;
  akg_item *it = d->item;
  const akg_opts *o = d->o;
  int64_t have = __atomic_load_n(&it->seg_got[p->index], __ATOMIC_RELAXED);
  ak_http_request rq = AK_HTTP_REQUEST_INIT(it->url);
  rq.fd = d->fd;
  rq.fd_base = 0;
  rq.headers = o->headers;
  rq.header_count = o->header_count;
  akg_request_auth(o, it, &rq);
  rq.progress = &it->seg_got[p->index];
  p->head_size = -2;
  if (d->nparts == 1 && d->size < 0)
    rq.size_out = &it->total; /* the whole file's size, for the display */
  else
    rq.size_out = &p->head_size;
  p->ranged = !d->plain && (p->start + have > 0 || p->end >= 0);
  p->decode = false;
  if (p->ranged) {
    rq.range_start = p->start + have;
    rq.range_end = p->end;
    rq.flags |= AK_HTTP_REQUIRE_RANGE;
    rq.headers = d->hdrs;
    rq.header_count = d->hdr_count;
  } else if (akg_ts_conditional(d->ts)) {
    rq.headers = akg_ts_headers(d->ts, &rq.header_count);
  }
  if (!p->ranged && o->compressed) {
    /* Compressed only from byte 0: a resume or a retry after some bytes
     * asks the rest of the identity body by Range (the file holds decoded
     * bytes, which are the identity body's), since a range of a gzip
     * stream cannot be decoded alone (curl sends the same Range, compressed
     * or not, and would get it wrong). */
    rq.flags |= AK_HTTP_DECODE;
    p->decode = true;
  }
  if (!p->ranged && have > 0) {
    /* A retry of a stream from byte 0 without Range: it starts again. */
    __atomic_store_n(&it->seg_got[p->index], 0, __ATOMIC_RELAXED);
  }
  p->f = ak_http_get(akg_worker_client(d->w), &rq);
  if (!p->f || ak_future_on_settle(p->f, on_part_done, p) < 0) {
    ak_future_release(p->f);
    p->f = NULL;
    set_error(d, -ENOMEM, 0, "out of memory");
    fail_item(d);
    return;
  }
  d->busy++; /* p->f's reference is released by on_part_done */
}

/* ---- 3b. growing ------------------------------------------------------------------------ */
/* -s N starts one part and adds one at a time (up to N, while planned
 * ranges are left untaken) only while that helps, as download
 * accelerators do: where one connection is limited by the link or the
 * server (a slow or far server, a per-connection limit), a second one
 * about doubles the rate; where the CPU is the limit, it costs. 2 GiB from
 * a local nginx on two vCPUs: one connection 0.82 s (0.64 s CPU), -s 4
 * started at once 1.33 s (1.24 s CPU; twice the softirq and copy work).
 * So a part is added when the loop's thread was busy less than
 * GROW_BUSY_MAX of the last window (it waits for the network), and no
 * more once an added part did not raise the rate by GROW_GAIN. A window is
 * whole seconds long and starts 0.3 s after a part is added (a new
 * connection needs a round trip and its slow start). Whole seconds,
 * because a server that holds a connection to a rate sends in bursts once
 * a second (nginx's limit_rate counts whole seconds: a second's worth at
 * once, then nothing for most of a second): a window of exactly one second
 * holds one burst a connection whatever its phase, where one of 1.2 s (a
 * look every 0.3 s) held one or two, and the rate read 0.9 MB/s for one
 * part, 2.5 for two and 2.7 for three, at 1 MB/s each; growing then
 * stopped early. A part that runs out of its range takes the next
 * untaken one, so one part alone fetches the planned ranges in order.
 * --all-segments starts all N at once. */

static int64_t thread_cpu_ns(void)
{
  struct timespec ts;
  if (clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts) != 0)
    return 0;
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* The window a rate and a busy share are taken over starts now. */
static void grow_window(dl *d)
{
  d->grow_t = ak_now_ns();
  d->grow_cpu = thread_cpu_ns();
  d->grow_got = akg_item_got(d->item);
}

static void grow_fire(void *arg);

/* The next look at the download, in delay_ns. */
static void grow_arm(dl *d, int64_t delay_ns)
{
  d->grow_timer = ak_call_later(d->loop, delay_ns, grow_fire, d);
}

static void grow_fire(void *arg)
{
  dl *d = arg;
  d->grow_timer = NULL;
  if (d->stopping != RUNNING || d->nparts >= d->max_parts || d->next_range >= d->nranges)
    return;
  if (d->grow_warmup) {
    d->grow_warmup = false; /* the window starts after the warm-up */
    grow_window(d);
    grow_arm(d, GROW_WINDOW_NS);
    return;
  }
  int64_t dt = ak_now_ns() - d->grow_t;
  int64_t moved = akg_item_got(d->item) - d->grow_got;
  if (dt < GROW_WINDOW_NS) {
    grow_arm(d, GROW_WINDOW_NS - dt); /* early (not expected): to the window's end */
    return;
  }
  if (moved == 0 && dt < GROW_WINDOW_MAX_NS) {
    grow_arm(d, GROW_WINDOW_NS); /* no byte: a bursty sender's pause; one more second */
    return;
  }
  double rate = (double)moved * 1e9 / (double)dt;
  double busy = (double)(thread_cpu_ns() - d->grow_cpu) / (double)dt;
  if (d->nparts > 1 && rate < d->grow_rate_before * GROW_GAIN) {
    if (d->o->verbose)
      akg_progress_event(akg_worker_run(d->w), d->item,
                         "%s: %u segments (one more did not raise the rate: %.1f MB/s, "
                         "%.1f MB/s before it)",
                         d->item->url, d->nparts, rate / 1e6, d->grow_rate_before / 1e6);
    return; /* the last part added did not help: no more */
  }
  if (busy >= GROW_BUSY_MAX) {
    grow_window(d); /* this CPU is the limit: look at the next stretch */
    grow_arm(d, GROW_WINDOW_NS);
    return;
  }
  part *p = &d->get->parts[d->nparts];
  *p = (part){.d = d, .index = d->nparts, .head_size = -2};
  take_range(p); /* one is left (checked above) */
  d->nparts++;
  d->item->segments_used = d->nparts > d->item->segments_used ? d->nparts : d->item->segments_used;
  d->grow_rate_before = rate;
  d->grow_warmup = true;
  if (d->o->verbose)
    akg_progress_event(akg_worker_run(d->w), d->item,
                       "%s: segment %u added (%.1f MB/s, the loop busy %.0f%% of the time)",
                       d->item->url, d->nparts, rate / 1e6, busy * 100);
  start_part(p);
  if (d->stopping == RUNNING)
    grow_arm(d, GROW_NS); /* the warm-up */
}

/* ---- 4. planning --------------------------------------------------------------------------- */

/* AKGET_TEST_DROP_RANGE=N: planned range N (of several) is never fetched,
 * as a planning mistake would lose it: tests of the last check
 * (covers_entity), which must fail such a download with exit 7. */
static void drop_range_for_tests(dl *d)
{
  const char *v = getenv("AKGET_TEST_DROP_RANGE");
  unsigned k = v ? (unsigned)atoi(v) : 0;
  if (!v || d->nranges < 2 || k >= d->nranges)
    return;
  memmove(&d->ranges[k], &d->ranges[k + 1], (d->nranges - k - 1) * sizeof d->ranges[0]);
  d->nranges--;
}

/* Plans the bytes d->get->have lacks as ranges, and the parts that fetch them:
 * up to -s parts (each range at least --min-segment) when the server takes
 * ranges and the size is known; else one stream from the end of the bytes
 * on disk. Returns 0, or -1 when what is on disk cannot be completed so (a
 * start over is needed). */
static int plan(dl *d, bool ranges_ok)
{
  akg_item *it = d->item;
  free(d->ranges);
  d->ranges = NULL;
  d->nranges = d->next_range = 0;
  d->nparts = 0;
  grow_stop(d);
  /* Gaps: one more than the extents; ranges: the gaps, cut in -s pieces. */
  unsigned cap = d->get->have.n + 1 + AKG_MAX_SEGMENTS;
  akg_extent *gaps = malloc(cap * sizeof *gaps);
  d->ranges = malloc(cap * sizeof *d->ranges);
  if (!gaps || !d->ranges) {
    free(gaps);
    return -ENOMEM;
  }
  if (d->size < 0 || d->plain) {
    /* One stream: the bytes on disk must be one run from byte 0. */
    int64_t from = 0;
    if (!d->plain && d->get->have.n == 1 && d->get->have.ext[0].start == 0)
      from = d->get->have.ext[0].len;
    else if (!d->plain && d->get->have.n > 0) {
      free(gaps);
      return -1;
    }
    d->ranges[d->nranges++] = (akg_extent){from, -1};
  } else {
    unsigned ng = akg_extents_gaps(&d->get->have, d->size, gaps, d->get->have.n + 1);
    int64_t remaining = 0;
    for (unsigned i = 0; i < ng; i++)
      remaining += gaps[i].len;
    int64_t min_seg = d->o->min_segment > 0 ? d->o->min_segment : 1;
    int64_t k = ranges_ok ? remaining / min_seg : 1;
    if (k > d->o->segments)
      k = d->o->segments;
    if (k < 1)
      k = 1;
    for (unsigned i = 0; i < ng && remaining > 0; i++) {
      /* Each gap its share of the k parts, each piece >= min_seg. */
      int64_t n = (gaps[i].len * k + remaining - 1) / remaining;
      if (n > gaps[i].len / min_seg)
        n = gaps[i].len / min_seg;
      if (n < 1)
        n = 1;
      if (n > (int64_t)(cap - d->nranges) - (int64_t)(ng - i - 1))
        n = 1;
      int64_t per = gaps[i].len / n;
      for (int64_t j = 0; j < n; j++) {
        int64_t a = gaps[i].start + per * j;
        int64_t b = j + 1 == n ? gaps[i].start + gaps[i].len : a + per;
        d->ranges[d->nranges++] = (akg_extent){a, b - a};
      }
    }
    /* The range that ends at the entity's end is asked open-ended
     * ("bytes=N-"), the whole entity without Range (a plain GET). */
    if (d->nranges > 0) {
      akg_extent *last = &d->ranges[d->nranges - 1];
      if (last->start + last->len == d->size)
        last->len = -1;
    }
    drop_range_for_tests(d);
    d->nparts = d->nranges < d->o->segments ? d->nranges : d->o->segments;
  }
  free(gaps);
  if (d->nparts == 0 && d->nranges > 0)
    d->nparts = 1;
  /* Without --all-segments one part starts; section 3b adds the others. */
  d->max_parts = d->nparts;
  if (d->nparts > 1 && !d->o->all_segments)
    d->nparts = 1;
  d->grow_rate_before = 0;
  d->grow_warmup = true; /* the first window has the connect and slow start */
  for (unsigned i = 0; i < d->nparts; i++) {
    d->get->parts[i] = (part){.d = d, .index = i, .head_size = -2};
    take_range(&d->get->parts[i]);
  }
  for (unsigned i = d->nparts; i < AKG_MAX_SEGMENTS; i++)
    __atomic_store_n(&it->seg_got[i], 0, __ATOMIC_RELAXED);
  it->segments_used = d->nparts > it->segments_used ? d->nparts : it->segments_used;
  return 0;
}

/* The validator a Range is sent with (RFC 9110 13.1.5): a strong ETag,
 * else the Last-Modified date; none: NULL. */
static const char *if_range_value(const akg_record *h)
{
  if (h->etag[0] && strncmp(h->etag, "W/", 2) != 0)
    return h->etag;
  return h->last_modified[0] ? h->last_modified : NULL;
}

static int set_headers(dl *d)
{
  free(d->if_range);
  d->if_range = NULL;
  if (d->hdrs != (const char **)d->o->headers)
    free(d->hdrs);
  d->hdrs = (const char **)d->o->headers;
  d->hdr_count = d->o->header_count;
  const char *v = if_range_value(&d->get->have);
  if (!v)
    return 0;
  size_t n = strlen(v) + 16;
  d->if_range = malloc(n);
  d->hdrs = malloc((d->o->header_count + 1) * sizeof *d->hdrs);
  if (!d->if_range || !d->hdrs) {
    d->hdrs = (const char **)d->o->headers;
    return -ENOMEM;
  }
  snprintf(d->if_range, n, "If-Range: %s", v);
  for (size_t i = 0; i < d->o->header_count; i++)
    d->hdrs[i] = d->o->headers[i];
  d->hdrs[d->o->header_count] = d->if_range;
  d->hdr_count = d->o->header_count + 1;
  return 0;
}

static void start_parts(dl *d)
{
  if (d->nparts == 0) {
    all_parts_in(d); /* everything was on disk */
    return;
  }
  for (unsigned i = 0; i < d->nparts; i++)
    start_part(&d->get->parts[i]);
  ckpt_arm(d);
  if (d->nparts < d->max_parts && d->stopping == RUNNING)
    grow_arm(d, GROW_NS); /* the warm-up */
}

/* Copies a validator header into the record (too long: not kept). */
static void keep_validator(char *dst, size_t cap, const char *v)
{
  dst[0] = '\0';
  if (v && strlen(v) < cap)
    snprintf(dst, cap, "%s", v);
}

/* Why the server's entity (its HEAD) is not the recorded one, or NULL. */
static const char *changed_since_record(const dl *d, int64_t size, const char *etag,
                                        const char *lm, char *why, size_t n)
{
  const akg_record *h = &d->get->have;
  if (size >= 0 && h->size >= 0 && size != h->size)
    snprintf(why, n, "its size is %" PRId64 " bytes, the record says %" PRId64, size, h->size);
  else if (h->etag[0] && !etag)
    snprintf(why, n, "it has no ETag now, the record says %s", h->etag);
  else if (h->etag[0] && strcmp(etag, h->etag) != 0)
    snprintf(why, n, "its ETag is %s, the record says %s", etag, h->etag);
  else if (h->last_modified[0] && !lm)
    snprintf(why, n, "it has no Last-Modified now, the record says %s", h->last_modified);
  else if (h->last_modified[0] && strcmp(lm, h->last_modified) != 0)
    snprintf(why, n, "its Last-Modified is %s, the record says %s", lm, h->last_modified);
  else
    return NULL;
  return why;
}

/* What is known of the entity (the HEAD's answer, r NULL if none) meets
 * what is on disk: the parts are planned and started. */
static void plan_and_start(dl *d, const ak_http_response *r)
{
  akg_item *it = d->item;
  akg_run *run = akg_worker_run(d->w);
  bool ok = r && r->status == 200;
  int64_t hsize = ok ? r->content_length : -1;
  const char *etag = ok ? ak_http_response_header(r, "etag") : NULL;
  const char *lm = ok ? ak_http_response_header(r, "last-modified") : NULL;
  char why[700];
  int64_t on_disk = akg_extents_bytes(&d->get->have);
  if (ok && d->from_record && changed_since_record(d, hsize, etag, lm, why, sizeof why)) {
    akg_progress_event(run, it, "start over %s from byte 0: the file changed on the server (%s)",
                       it->url, why);
    int rc = forget_all(d);
    if (rc < 0) {
      set_error(d, rc, 0, "truncate %s: %s", it->tmp, strerror(-rc));
      finish_failed(d);
      return;
    }
    on_disk = 0;
  }
  if (on_disk == 0) {
    /* Nothing on disk (a new download, or a record of none): the record
     * takes the server's word now. */
    akg_record_clear(&d->get->have);
    d->from_record = false;
    d->get->have.size = hsize;
    keep_validator(d->get->have.etag, sizeof d->get->have.etag, etag);
    keep_validator(d->get->have.last_modified, sizeof d->get->have.last_modified, lm);
  } else if (d->get->have.size < 0 && hsize >= 0 && !d->from_record) {
    d->get->have.size = hsize; /* a part file without record */
  }
  if (on_disk > 0 && !if_range_value(&d->get->have) && d->o->verbose)
    akg_progress_event(run, it,
                       "%s: no validator (strong ETag or Last-Modified)%s: the %" PRId64
                       " bytes on disk could not be checked against the server's version",
                       it->url, d->from_record ? " in the record" : " known for the part file",
                       on_disk);
  d->size = d->get->have.size;
  if (d->size >= 0 && d->get->have.n > 0 &&
      d->get->have.ext[d->get->have.n - 1].start + d->get->have.ext[d->get->have.n - 1].len > d->size) {
    akg_progress_event(run, it, "start over %s from byte 0: %s is longer than the file (%" PRId64
                       " bytes)", it->url, it->tmp, d->size);
    int rc = forget_all(d);
    if (rc < 0) {
      set_error(d, rc, 0, "truncate %s: %s", it->tmp, strerror(-rc));
      finish_failed(d);
      return;
    }
    return plan_and_start(d, r);
  }
  it->resumed_from = akg_extents_bytes(&d->get->have);
  __atomic_store_n(&it->total, d->size, __ATOMIC_RELAXED);
  if (it->resumed_from > 0)
    akg_progress_event(run, it, "resuming %s: %" PRId64 " bytes on disk in %u range%s", it->tmp,
                       it->resumed_from, d->get->have.n, d->get->have.n == 1 ? "" : "s");
  bool ranges_ok = ok && r->accept_ranges && !d->o->compressed;
  int rc = set_headers(d);
  if (rc == 0)
    rc = plan(d, ranges_ok || (d->from_record && d->get->have.n > 1));
  if (rc == -1) {
    akg_progress_event(run, it,
                       "start over %s from byte 0: the bytes on disk are not one run from byte 0 "
                       "and the size is not known",
                       it->url);
    rc = forget_all(d);
    if (rc == 0)
      return plan_and_start(d, r);
  }
  if (rc == 0)
    rc = init_record(d);
  if (rc < 0) {
    set_error(d, rc, 0, "%s: %s", d->ctl_fd >= 0 ? d->ctl_path : it->tmp, strerror(-rc));
    finish_failed(d);
    return;
  }
  start_parts(d);
}

/* What on_probe and on_asked (a setup request's answer) do first: the
 * request is over; when --max-time ran out meanwhile (stopped(d) ends the
 * download) or the answer is -N's 304 (the file kept), f is released and
 * the download has ended: true. Else *r is the response (NULL when the
 * request failed) and f is still the caller's. */
static bool setup_answer_ends(dl *d, ak_future *f, void (*stopped)(dl *d),
                              const ak_http_response **r)
{
  d->setup = NULL;
  *r = ak_future_state(f) == AK_DONE ? ak_future_value(f) : NULL;
  if (d->stopping == RUNNING && !is_unchanged(d, *r))
    return false;
  ak_future_release(f);
  if (d->stopping != RUNNING)
    stopped(d);
  else
    close_unchanged(d);
  return true;
}

static void on_probe(ak_future *f, void *arg)
{
  dl *d = arg;
  const ak_http_response *r;
  if (setup_answer_ends(d, f, finish_failed, &r))
    return;
  take_disposition_name(d, r);
  plan_and_start(d, r);
  ak_future_release(f);
}

/* Starts over from byte 0 (restart_item's parts have all stopped): the
 * record and the part file emptied, the entity asked again; the last time
 * as one stream without Range, which neither a changing entity nor a
 * server's broken ranges can spoil. */
static void do_restart(dl *d)
{
  akg_item *it = d->item;
  d->stopping = RUNNING;
  if (it->err) {
    finish_failed(d);
    return;
  }
  if (++d->restarts > MAX_RESTARTS) {
    set_error(d, AK_EHTTPRANGE, 0, "started over %u times, still: %s", MAX_RESTARTS,
              d->get->restart_why);
    finish_failed(d);
    return;
  }
  d->plain = d->restarts == MAX_RESTARTS;
  akg_progress_event(akg_worker_run(d->w), it, "start over %s from byte 0%s: %s", it->url,
                     d->plain ? " as one stream without Range" : "", d->get->restart_why);
  int rc = forget_all(d);
  if (rc < 0) {
    set_error(d, rc, 0, "truncate %s: %s", it->tmp, strerror(-rc));
    finish_failed(d);
    return;
  }
  d->size = -1;
  __atomic_store_n(&it->ranges_done, 0, __ATOMIC_RELAXED);
  for (unsigned i = 0; i < AKG_MAX_SEGMENTS; i++)
    __atomic_store_n(&it->seg_got[i], 0, __ATOMIC_RELAXED);
  d->nparts = 0;
  begin(d);
}

/* HEAD first when it helps (-s to plan segments; -c for the size and
 * validators to record and check). */
static bool wants_probe(const dl *d)
{
  return !d->plain && (d->o->resume || (d->o->segments > 1 && !d->o->compressed));
}

/* After the open (and after a start over): the probe, then the parts. */
static void begin(dl *d)
{
  akg_item *it = d->item;
  const akg_opts *o = d->o;
  if (o->segments > 1 && akg_extents_bytes(&d->get->have) == 0 && o->compressed && o->verbose)
    akg_progress_event(akg_worker_run(d->w), it,
                       "%s: --compressed: one connection, no segments (a range of a compressed "
                       "body cannot be decoded alone)",
                       it->url);
  bool probe = wants_probe(d);
  if (probe && d->asked) {
    /* -N asked already: its HEAD is the probe. */
    ak_future *h = d->asked;
    d->asked = NULL;
    const ak_http_response *r = ak_future_value(h);
    take_disposition_name(d, r);
    plan_and_start(d, r);
    ak_future_release(h);
    return;
  }
  if (probe) {
    ak_http_request rq = AK_HTTP_REQUEST_INIT(it->url);
    rq.flags = AK_HTTP_HEAD;
    rq.headers = o->headers;
    rq.header_count = o->header_count;
    akg_request_auth(o, it, &rq);
    if (akg_ts_conditional(d->ts))
      rq.headers = akg_ts_headers(d->ts, &rq.header_count);
    ak_future *h = ak_http_get(akg_worker_client(d->w), &rq);
    if (h && ak_future_on_settle(h, on_probe, d) == 0) {
      d->setup = h;
      return;
    }
    ak_future_release(h);
  }
  plan_and_start(d, NULL);
}

/* Unnamed files unless -c (whose partial file must outlive the process),
 * /proc is missing (the link goes through /proc/self/fd), or the target's
 * filesystem refused O_TMPFILE once (then named files from there on).
 * AKGET_TEST_NO_TMPFILE forces named files (tests of that path). */
static bool tmpfile_refused;

static bool have_proc(void)
{
  static int proc_ok = -1; /* the same answer for every thread */
  if (__atomic_load_n(&proc_ok, __ATOMIC_RELAXED) < 0)
    __atomic_store_n(&proc_ok, access("/proc/self/fd", X_OK) == 0, __ATOMIC_RELAXED);
  return __atomic_load_n(&proc_ok, __ATOMIC_RELAXED) == 1;
}

static bool use_unnamed(const akg_opts *o)
{
  static int test_off = -1;
  if (o->resume || __atomic_load_n(&tmpfile_refused, __ATOMIC_RELAXED))
    return false;
  if (__atomic_load_n(&test_off, __ATOMIC_RELAXED) < 0)
    __atomic_store_n(&test_off, getenv("AKGET_TEST_NO_TMPFILE") != NULL, __ATOMIC_RELAXED);
  return !__atomic_load_n(&test_off, __ATOMIC_RELAXED) && have_proc();
}

static void on_open(ak_future *f, void *arg);

static int open_file(dl *d)
{
  akg_item *it = d->item;
  ak_future *f;
  if (get_new(d) < 0)
    return -ENOMEM;
  d->unnamed = use_unnamed(d->o);
  if (d->unnamed) {
    f = ak_openat(d->loop, d->dirfd, ".", O_RDWR | O_TMPFILE, 0644); /* in the held directory */
  } else {
    /* O_NOFOLLOW: a link planted at the part file's name is refused (ELOOP),
     * not written through; the held directory was reached through none. */
    int flags = O_RDWR | O_CREAT | O_NOFOLLOW | (d->o->resume ? 0 : O_TRUNC);
    f = ak_openat(d->loop, d->dirfd, akg_leaf(it->tmp), flags, 0644);
  }
  if (!f || ak_future_on_settle(f, on_open, d) < 0) {
    ak_future_release(f);
    return -ENOMEM;
  }
  d->setup = f;
  return 0;
}

/* -c: the control record next to the part file, loaded or judged. */
static int open_record(dl *d)
{
  akg_item *it = d->item;
  size_t n = strlen(it->tmp) + 5;
  d->ctl_path = malloc(n);
  if (!d->ctl_path)
    return -ENOMEM;
  snprintf(d->ctl_path, n, "%s.ctl", it->tmp);
  d->snap = malloc(sizeof *d->snap);
  if (!d->snap)
    return -ENOMEM;
  d->ctl_fd = openat(d->dirfd, akg_leaf(d->ctl_path), O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC,
                     0644);
  if (d->ctl_fd < 0)
    return -errno;
  struct stat st;
  if (fstat(d->fd, &st) < 0)
    return -errno;
  return load_record(d, st.st_size);
}

static void on_open(ak_future *f, void *arg)
{
  dl *d = arg;
  akg_item *it = d->item;
  int64_t fd = ak_future_result(f);
  ak_future_release(f);
  d->setup = NULL;
  /* No O_TMPFILE on this filesystem (EOPNOTSUPP; EISDIR from kernels that
   * do not know the flag; EINVAL from some filesystems): named files. */
  if (d->unnamed && d->stopping == RUNNING &&
      (fd == -EOPNOTSUPP || fd == -EISDIR || fd == -EINVAL)) {
    __atomic_store_n(&tmpfile_refused, true, __ATOMIC_RELAXED);
    akg_progress_event(akg_worker_run(d->w), it,
                       "no unnamed files (O_TMPFILE) where %s goes: %s is used instead", it->path,
                       it->tmp);
    if (open_file(d) < 0) {
      set_error(d, -ENOMEM, 0, "out of memory");
      end_item(d, AKG_FAILED);
    }
    return;
  }
  if (d->stopping != RUNNING) { /* --max-time ran out during the open */
    if (fd >= 0)
      d->fd = (int)fd;
    finish_failed(d); /* closes, and removes the file the open made */
    return;
  }
  if (fd < 0) {
    if (d->unnamed)
      set_error(d, (int)fd, 0, "open an unnamed file next to %s: %s", it->path, strerror((int)-fd));
    else
      set_error(d, (int)fd, 0, "open %s: %s", it->tmp, strerror((int)-fd));
    end_item(d, AKG_FAILED);
    return;
  }
  d->fd = (int)fd;
  if (have_proc())
    snprintf(d->proc_path, sizeof d->proc_path, "/proc/self/fd/%d", d->fd);
  if (d->o->resume) {
    int rc = open_record(d);
    if (rc < 0) {
      set_error(d, rc, 0, "%s: %s", d->ctl_path ? d->ctl_path : it->tmp, strerror(-rc));
      finish_failed(d);
      return;
    }
  }
  begin(d);
}

/* -N and the file is there: the conditional question goes first, as a
 * HEAD, before any file is opened. A 304 ends the download there; anything
 * else goes on as without it (the file opened, the GET sent, with the same
 * conditions), the HEAD's 200 standing for the probe -s and -c would send.
 * Why not the GET itself: its body needs the open file before it is sent,
 * and on ext4 an unnamed file made and dropped (an inode allocated, put on
 * the orphan list, freed) for each 304 cost more than the 304 itself; a
 * changed file pays one HEAD on a kept-alive connection instead (wget 1.x
 * asks a HEAD before each -N GET too). docs/akget.md, MIRRORS. */
static void end_failed(dl *d)
{
  end_item(d, AKG_FAILED); /* --max-time ran out before anything was opened */
}

static void on_asked(ak_future *f, void *arg)
{
  dl *d = arg;
  const ak_http_response *r;
  if (setup_answer_ends(d, f, end_failed, &r))
    return;
  if (r && r->status == 200 && wants_probe(d))
    d->asked = f; /* begin's probe */
  else
    ak_future_release(f); /* a failure or another status: the GET says it */
  d->no_file = false;
  if (open_file(d) < 0) {
    set_error(d, -ENOMEM, 0, "out of memory");
    end_item(d, AKG_FAILED);
  }
}

static int ask_first(dl *d)
{
  akg_item *it = d->item;
  ak_http_request rq = AK_HTTP_REQUEST_INIT(it->url);
  rq.flags = AK_HTTP_HEAD;
  rq.headers = akg_ts_headers(d->ts, &rq.header_count);
  akg_request_auth(d->o, it, &rq);
  d->no_file = true;
  if (d->o->pipelining) {
    /* Sent with the other downloads' HEADs (worker.c) */
    akg_worker_queue_head(d->w, &rq, d);
    return 0;
  }
  ak_future *h = ak_http_get(akg_worker_client(d->w), &rq);
  if (!h || ak_future_on_settle(h, on_asked, d) < 0) {
    ak_future_release(h);
    return -ENOMEM;
  }
  d->setup = h;
  return 0;
}

void akg_download_asked(void *arg, ak_future *h)
{
  dl *d = arg;
  if (!h || ak_future_on_settle(h, on_asked, d) < 0) {
    ak_future_release(h);
    set_error(d, -ENOMEM, 0, "out of memory");
    end_item(d, AKG_FAILED);
    return;
  }
  d->setup = h;
}

/* --max-time bounds the whole download, retries and their waits included
 * (curl's --max-time): when it runs out, whatever is in flight (the open,
 * the probe, the requests, a retry's wait) stops and the download fails. */
static void max_time_over(void *arg)
{
  dl *d = arg;
  d->max_timer = NULL;
  set_error(d, AK_EHTTPTOTALTIMEOUT, 0, "not complete within --max-time (%.3f s)%s%.300s",
            d->o->max_time_ns / 1e9,
            d->get && d->get->last_retry[0] ? "; last retry was for: " : "",
            d->get ? d->get->last_retry : "");
  if (d->setup) {
    d->stopping = STOP_FAIL;
    ak_future_cancel(d->setup); /* its callback ends the download */
    return;
  }
  fail_item(d);
}

void akg_download_start(akg_worker *w, akg_item *item, void (*done)(akg_worker *w, akg_item *item))
{
  dl *d = dl_new();
  item->start_ns = ak_now_ns();
  __atomic_store_n(&item->state, AKG_ACTIVE, __ATOMIC_RELEASE);
  if (!d) {
    item->err = -ENOMEM;
    item->exit_code = akg_exit_code(-ENOMEM, 0);
    __atomic_store_n(&item->state, AKG_FAILED, __ATOMIC_RELEASE);
    done(w, item);
    return;
  }
  d->w = w;
  d->item = item;
  d->done = done;
  d->o = item->opts ? item->opts : akg_worker_opts(w); /* header= lines of its -i entry */
  d->loop = akg_worker_loop(w);
  d->fd = -1;
  d->ctl_fd = -1;
  d->size = -1;
  d->hdrs = (const char **)d->o->headers;
  d->hdr_count = d->o->header_count;
  if (akg_worker_run(w)->opts->verbose) /* said with -v only, as "unchanged" */
    akg_progress_event(akg_worker_run(w), item, "start %s -> %s", item->url, item->path);
  char why[400];
  int drc = akg_dir_open(d->o, item, &d->dir, why, sizeof why);
  if (drc < 0) {
    set_error(d, drc, 0, "%s", why[0] ? why : strerror(-drc));
    end_item(d, AKG_FAILED);
    return;
  }
  d->dirfd = akg_dir_fd(d->dir);
  d->ts = item->ts; /* -N: the feed read the file's date and ETag */
  item->ts = NULL;
  if ((!d->ts && akg_ts_new(d->o, item->path, &d->ts) < 0) ||
      (akg_ts_conditional(d->ts) ? ask_first(d) : open_file(d)) < 0) {
    set_error(d, -ENOMEM, 0, "out of memory");
    end_item(d, AKG_FAILED);
    return;
  }
  if (d->o->max_time_ns > 0)
    d->max_timer = ak_call_later(d->loop, d->o->max_time_ns, max_time_over, d);
}
