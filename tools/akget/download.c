/* download.c: one URL, from its temporary file to its final name. The body
 * goes to an unnamed file (O_TMPFILE) in the target's directory, or with -c
 * (or where the filesystem has no O_TMPFILE) to "<name>.akget-part", by the
 * HTTP client's ring writes; with -s the
 * file is cut into segments fetched by Range over several connections into
 * the same file at their offsets; -c resumes from the partial file's size;
 * a failed request is retried (--retries) from where its bytes stopped,
 * after a backoff or the server's Retry-After. When every segment is in:
 * the size is checked, the checksum verified (--checksum), and the file
 * named: an unnamed file is linked in under its final name (through
 * /proc/self/fd; if that name exists, linked under a spare name that is then
 * renamed over it), a named one renamed. On failure the partial file is
 * removed, unless -c keeps it for next time; an unnamed one goes with its
 * descriptor, and with the process if akget is killed.
 *
 * Why unnamed: a file created under one name and renamed to another costs
 * ext4 three directory lookups, two insertions and a removal; an unnamed
 * file linked once costs one lookup and one insertion. On 10,000 files of
 * 16 KiB that was a quarter of akget's CPU time (perf: 60% of the io-wq
 * workers' time was in the two directory operations). */
#define _GNU_SOURCE /* O_TMPFILE */
#include "akget.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct dl dl;

typedef struct part {
  dl *d;
  unsigned index;            /* into item->seg_got */
  int64_t start;             /* first byte of the segment */
  int64_t end;               /* last byte (inclusive), -1: to the end */
  bool ranged;               /* the attempt in flight asked a Range */
  bool done;
  unsigned attempts;         /* retries made */
  ak_future *f;              /* the request in flight, or NULL */
  ak_timer *retry;           /* a retry waiting, or NULL */
} part;

struct dl {
  akg_worker *w;
  akg_item *item;
  void (*done)(akg_worker *w, akg_item *item);
  const akg_opts *o;
  ak_loop *loop;
  int fd;
  part parts[AKG_MAX_SEGMENTS];
  unsigned nparts;
  unsigned busy;             /* parts with a request or a retry pending */
  bool failing;              /* an error ended it: waiting for parts to stop */
  int64_t size;              /* the entity's size if known, else -1 */
  ak_future *setup;          /* the open or the HEAD probe in flight, or NULL */
  ak_timer *max_timer;       /* --max-time over the whole download, or NULL */
  bool unnamed;              /* fd is an O_TMPFILE file, linked in at the end */
  char proc_path[32];        /* "/proc/self/fd/N" for an unnamed fd */
  char *spare;               /* the spare name when the final one exists, or NULL */
  char last_retry[400];      /* why the last retry was scheduled */
};

int64_t akg_item_got(const akg_item *item)
{
  int64_t n = item->resumed_from;
  for (unsigned i = 0; i < AKG_MAX_SEGMENTS; i++)
    n += __atomic_load_n(&item->seg_got[i], __ATOMIC_RELAXED);
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

/* ---- ending -------------------------------------------------------------------------- */

static void stop_max_timer(dl *d)
{
  if (d->max_timer) {
    ak_timer_cancel(d->loop, d->max_timer);
    d->max_timer = NULL;
  }
}

static void end_item(dl *d, akg_state state)
{
  akg_item *it = d->item;
  stop_max_timer(d);
  akg_run *run = akg_worker_run(d->w);
  it->end_ns = ak_now_ns();
  it->exit_code = state == AKG_DONE ? 0 : akg_exit_code(it->err, it->status);
  __atomic_store_n(&it->state, state, __ATOMIC_RELEASE);
  atomic_fetch_add(&run->finished, 1);
  if (state == AKG_DONE) {
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
  free(d->spare);
  free(d);
  done(w, it);
}

static void on_failed_closed(ak_future *f, void *arg)
{
  (void)f;
  dl *d = arg;
  if (d->spare)
    unlink(d->spare); /* linked there, not yet renamed over the final name */
  else if (!d->unnamed && (!d->o->resume || d->item->err == AKG_ECHECKSUM))
    unlink(d->item->tmp); /* no partial file left behind (-c keeps it) */
  end_item(d, AKG_FAILED);
}

static void finish_failed(dl *d)
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

/* Stops every part (their callbacks come back with CANCELLED). */
static void fail_item(dl *d)
{
  if (d->failing)
    return;
  d->failing = true;
  for (unsigned i = 0; i < d->nparts; i++) {
    part *p = &d->parts[i];
    if (p->f)
      ak_future_cancel(p->f);
    if (p->retry) {
      ak_timer_cancel(d->loop, p->retry);
      p->retry = NULL;
      d->busy--;
    }
  }
  if (d->busy == 0)
    finish_failed(d);
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
  ak_future *rn = ak_renameat(d->loop, AT_FDCWD, from, AT_FDCWD, d->item->path, 0);
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
  ak_future *l = ak_linkat(d->loop, AT_FDCWD, d->proc_path, AT_FDCWD, name, AT_SYMLINK_FOLLOW);
  if (!l || ak_future_on_settle(l, on_linked, d) < 0) {
    set_error(d, -ENOMEM, 0, "out of memory");
    finish_failed(d);
  }
  ak_future_release(l);
}

/* The file is complete: it gets its final name. */
static void close_and_rename(dl *d)
{
  if (d->unnamed)
    link_unnamed(d, d->item->path);
  else
    close_then(d);
}

static void on_checked(ak_future *f, void *arg)
{
  dl *d = arg;
  int64_t r = ak_future_result(f);
  if (r < 0) {
    if (r == AKG_ECHECKSUM)
      set_error(d, AKG_ECHECKSUM, 0, "sha-256 of the download does not match --checksum");
    else
      set_error(d, (int)r, 0, "reading back for the checksum: %s", strerror((int)-r));
    finish_failed(d);
    return;
  }
  close_and_rename(d);
}

/* Every part is in: size, checksum, name. */
static void all_parts_in(dl *d)
{
  akg_item *it = d->item;
  stop_max_timer(d); /* the bytes are all in: checking and naming finish */
  int64_t end = 0;
  for (unsigned i = 0; i < d->nparts; i++) {
    int64_t e = d->parts[i].start + __atomic_load_n(&it->seg_got[i], __ATOMIC_RELAXED);
    if (e > end)
      end = e;
  }
  if (d->size >= 0 && end != d->size) {
    set_error(d, AK_EHTTPTRUNCATED, 0, "%" PRId64 " of %" PRId64 " bytes received", end, d->size);
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
  if (it->has_checksum) {
    ak_future *c = akg_checksum_verify(d->loop, d->unnamed ? d->proc_path : it->tmp, it->sha256);
    if (!c || ak_future_on_settle(c, on_checked, d) < 0) {
      set_error(d, -ENOMEM, 0, "out of memory");
      finish_failed(d);
    }
    ak_future_release(c);
    return;
  }
  close_and_rename(d);
}

/* ---- parts ------------------------------------------------------------------------------- */

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
  snprintf(d->last_retry, sizeof d->last_retry, "%s", why);
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
  if (d->failing) {
    if (d->busy == 0)
      finish_failed(d);
    return;
  }
  for (unsigned i = 0; i < d->nparts; i++)
    if (!d->parts[i].done)
      return;
  all_parts_in(d);
}

/* A 416 to a resume whose file is complete already. */
static bool resume_is_complete(dl *d, const ak_http_response *r)
{
  const char *cr = ak_http_response_header(r, "content-range");
  long long n;
  return d->item->resumed_from > 0 && cr && sscanf(cr, "bytes */%lld", &n) == 1 &&
         n == d->item->resumed_from;
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

static void on_part_done(ak_future *f, void *arg)
{
  part *p = arg;
  dl *d = p->d;
  akg_item *it = d->item;
  p->f = NULL;
  d->busy--;
  int64_t res = ak_future_result(f);
  const ak_http_response *r = ak_future_state(f) == AK_DONE ? ak_future_value(f) : NULL;
  if (d->failing) {
    ak_future_release(f);
    part_finished(p);
    return;
  }
  if (r && (r->status == 200 || r->status == 206 || r->status == 204)) {
    it->status = r->status;
    if (r->decoded)
      it->decoded = true;
    if (r->entity_size >= 0 && d->size < 0)
      d->size = r->entity_size;
    if (r->status != 206 && d->nparts == 1 && p->start > 0) {
      /* The whole entity came from offset 0 (a Range not honoured). */
      it->resumed_from = 0;
      p->start = 0;
    }
    p->done = true;
    ak_future_release(f);
    part_finished(p);
    return;
  }
  if (r && r->status == 416 && resume_is_complete(d, r)) {
    it->status = 416;
    d->size = it->resumed_from;
    p->done = true;
    ak_future_release(f);
    part_finished(p);
    return;
  }
  if (res == AK_EHTTPRANGE && d->nparts == 1 && p->ranged) {
    /* The server ignores Range: start over from byte 0, not a retry. */
    akg_progress_event(akg_worker_run(d->w), it, "%s ignores Range: downloading from the start",
                       it->url);
    it->resumed_from = 0;
    p->start = 0;
    p->end = -1;
    __atomic_store_n(&it->seg_got[p->index], 0, __ATOMIC_RELAXED);
    ak_future_release(f);
    if (ftruncate(d->fd, 0) < 0) {
      set_error(d, -errno, 0, "truncate: %s", strerror(errno));
      fail_item(d);
      return;
    }
    start_part(p);
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
  if (d->nparts == 1)
    rq.size_out = &it->total; /* the whole file's size, for the display */
  p->ranged = p->start + have > 0 || p->end >= 0;
  if (p->ranged) {
    rq.range_start = p->start + have;
    rq.range_end = p->end;
    rq.flags |= AK_HTTP_REQUIRE_RANGE;
  } else if (o->compressed) {
    /* Compressed only from byte 0: a resume or a retry after some bytes
     * asks the rest of the identity body by Range (the file holds decoded
     * bytes, which are the identity body's), since a range of a gzip
     * stream cannot be decoded alone (curl sends the same Range, compressed
     * or not, and would get it wrong). */
    rq.flags |= AK_HTTP_DECODE;
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

/* Cuts [0, size) into parts of at least min_segment bytes, at most -s. */
static void plan_segments(dl *d, int64_t size)
{
  int64_t k = size / (d->o->min_segment > 0 ? d->o->min_segment : 1);
  if (k > d->o->segments)
    k = d->o->segments;
  if (k < 1)
    k = 1;
  d->nparts = (unsigned)k;
  int64_t per = size / k;
  for (unsigned i = 0; i < d->nparts; i++) {
    d->parts[i] = (part){.d = d, .index = i};
    d->parts[i].start = per * i;
    d->parts[i].end = i + 1 == d->nparts ? size - 1 : per * (i + 1) - 1;
  }
  d->item->segments_used = d->nparts;
}

static void start_parts(dl *d)
{
  for (unsigned i = 0; i < d->nparts; i++)
    start_part(&d->parts[i]);
}

static void single_part(dl *d)
{
  d->nparts = 1;
  d->parts[0] = (part){.d = d, .index = 0, .start = d->item->resumed_from, .end = -1};
  d->item->segments_used = 1;
}

static void on_probe(ak_future *f, void *arg)
{
  dl *d = arg;
  d->setup = NULL;
  if (d->failing) { /* --max-time ran out during the probe */
    ak_future_release(f);
    finish_failed(d);
    return;
  }
  const ak_http_response *r = ak_future_state(f) == AK_DONE ? ak_future_value(f) : NULL;
  int64_t need = 2 * (d->o->min_segment > 0 ? d->o->min_segment : 1);
  if (r && r->status == 200 && r->accept_ranges && r->content_length >= need) {
    d->size = r->content_length;
    __atomic_store_n(&d->item->total, d->size, __ATOMIC_RELAXED);
    plan_segments(d, d->size);
  } else {
    single_part(d); /* no ranges, unknown size, or an error the GET will tell */
  }
  ak_future_release(f);
  start_parts(d);
}

/* Unnamed files unless -c (whose partial file must outlive the process),
 * /proc is missing (the link goes through /proc/self/fd), or the target's
 * filesystem refused O_TMPFILE once (then named files from there on).
 * AKGET_TEST_NO_TMPFILE forces named files (tests of that path). */
static bool tmpfile_refused;

static bool use_unnamed(const akg_opts *o)
{
  static int proc_ok = -1; /* the same answer for every thread */
  if (o->resume || __atomic_load_n(&tmpfile_refused, __ATOMIC_RELAXED))
    return false;
  if (__atomic_load_n(&proc_ok, __ATOMIC_RELAXED) < 0)
    __atomic_store_n(&proc_ok, !getenv("AKGET_TEST_NO_TMPFILE") && access("/proc/self/fd", X_OK) == 0,
                     __ATOMIC_RELAXED);
  return __atomic_load_n(&proc_ok, __ATOMIC_RELAXED) == 1;
}

static void on_open(ak_future *f, void *arg);

static int open_file(dl *d)
{
  akg_item *it = d->item;
  ak_future *f;
  d->unnamed = use_unnamed(d->o);
  if (d->unnamed) {
    /* The directory of the final name ("." for a bare name). */
    const char *slash = strrchr(it->path, '/');
    char *dir = slash ? strndup(it->path, slash == it->path ? 1 : (size_t)(slash - it->path))
                      : strdup(".");
    if (!dir)
      return -ENOMEM;
    f = ak_openat(d->loop, AT_FDCWD, dir, O_RDWR | O_TMPFILE, 0644);
    free(dir);
  } else {
    int flags = O_RDWR | O_CREAT | (d->o->resume ? 0 : O_TRUNC);
    f = ak_openat(d->loop, AT_FDCWD, it->tmp, flags, 0644);
  }
  if (!f || ak_future_on_settle(f, on_open, d) < 0) {
    ak_future_release(f);
    return -ENOMEM;
  }
  d->setup = f;
  return 0;
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
  if (d->unnamed && !d->failing && (fd == -EOPNOTSUPP || fd == -EISDIR || fd == -EINVAL)) {
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
  if (d->failing) { /* --max-time ran out during the open */
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
  if (d->unnamed)
    snprintf(d->proc_path, sizeof d->proc_path, "/proc/self/fd/%d", d->fd);
  if (d->o->resume) {
    struct stat st;
    if (fstat(d->fd, &st) == 0 && st.st_size > 0) {
      it->resumed_from = st.st_size;
      akg_progress_event(akg_worker_run(d->w), it, "resuming %s from %" PRId64 " bytes", it->tmp,
                         it->resumed_from);
    }
  }
  if (d->o->segments > 1 && it->resumed_from == 0 && d->o->compressed && d->o->verbose)
    akg_progress_event(akg_worker_run(d->w), it,
                       "%s: --compressed: one connection, no segments (a range of a compressed "
                       "body cannot be decoded alone)",
                       it->url);
  if (d->o->segments > 1 && it->resumed_from == 0 && !d->o->compressed) {
    ak_http_request rq = AK_HTTP_REQUEST_INIT(it->url);
    rq.flags = AK_HTTP_HEAD;
    rq.headers = d->o->headers;
    rq.header_count = d->o->header_count;
    akg_request_auth(d->o, it, &rq);
    ak_future *h = ak_http_get(akg_worker_client(d->w), &rq);
    if (h && ak_future_on_settle(h, on_probe, d) == 0) {
      d->setup = h;
      return;
    }
    ak_future_release(h);
  }
  single_part(d);
  start_parts(d);
}

/* --max-time bounds the whole download, retries and their waits included
 * (curl's --max-time): when it runs out, whatever is in flight (the open,
 * the probe, the requests, a retry's wait) stops and the download fails. */
static void max_time_over(void *arg)
{
  dl *d = arg;
  d->max_timer = NULL;
  set_error(d, AK_EHTTPTOTALTIMEOUT, 0, "not complete within --max-time (%.3f s)%s%.300s",
            d->o->max_time_ns / 1e9, d->last_retry[0] ? "; last retry was for: " : "",
            d->last_retry);
  if (d->setup) {
    d->failing = true;
    ak_future_cancel(d->setup); /* its callback ends the download */
    return;
  }
  fail_item(d);
}

void akg_download_start(akg_worker *w, akg_item *item, void (*done)(akg_worker *w, akg_item *item))
{
  dl *d = calloc(1, sizeof *d);
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
  d->o = akg_worker_opts(w);
  d->loop = akg_worker_loop(w);
  d->fd = -1;
  d->size = -1;
  akg_progress_event(akg_worker_run(w), item, "start %s -> %s", item->url, item->path);
  if (open_file(d) < 0) {
    set_error(d, -ENOMEM, 0, "out of memory");
    end_item(d, AKG_FAILED);
    return;
  }
  if (d->o->max_time_ns > 0)
    d->max_timer = ak_call_later(d->loop, d->o->max_time_ns, max_time_over, d);
}
