/* timestamp.c: a file's time and validators, from the server to the disk and
 * back (docs/akget.md, -N): the server's Last-Modified becomes the
 * downloaded file's mtime (unless --no-remote-time) and its ETag is kept in
 * the file's user.akget.etag extended attribute; with -N, a file that exists
 * is asked for again with If-Modified-Since (its mtime) and If-None-Match
 * (the kept ETag, where the filesystem has user xattrs), so that a 304 can
 * leave it as it is. What a 304 does to the download is download.c's; this
 * file only builds the question and writes the answer's time and tag. */
#define _GNU_SOURCE /* timegm */
#include "akget.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#define ETAG_XATTR "user.akget.etag"
/* Longer ETags are neither sent nor kept (a header line's worth). */
#define ETAG_MAX 512
#define DATE_MAX 64
/* An IMF-fixdate as format_http_date writes it, with its NUL. */
#define IMF_DATE_SIZE 30

/* One allocation per URL, made on the list's thread, and small: an -N run
 * over an unchanged tree is little else, and every page of the items
 * waiting in the feed's queue is faulted in fresh (7-15 us each here).
 * The question's lines (the header array, If-Modified-Since,
 * If-None-Match) follow the struct in the same block; the answer's
 * validators, only a GET's, are allocated when it comes. Two blocks and
 * a 96-byte date field had made it 290 bytes a URL, now about 150; the
 * feed makes it in its item's block where it fits (akg_ts_new_in), so
 * that it is no allocation of its own at all. */
struct akg_ts {
  /* the question (-N and the file exists) */
  bool conditional;          /* the headers below carry the conditions */
  bool in_room;              /* made in a room of its caller's: not freed */
  const char **hdrs;         /* -H lines, then If-Modified-Since, If-None-Match:
                                when conditional, in the tail below */
  size_t hdr_count;
  int64_t local_size;        /* the existing file's size */
  /* the answer (the last 200 or 206 of the download) */
  char *etag;                /* owned, or NULL if none (or too long) */
  char *last_modified;       /* owned, or NULL if none (or too long) */
  char tail[];               /* conditional: hdrs' array, then its lines */
};

/* Two decimal digits of v (0-99) at out. */
static char *put2(char *out, int v)
{
  out[0] = (char)('0' + v / 10);
  out[1] = (char)('0' + v % 10);
  return out + 2;
}

/* t (seconds since 1970, UTC) as a calendar date and time: gmtime_r's
 * fields, by the proleptic Gregorian arithmetic of days since 1970
 * (Howard Hinnant's civil_from_days), not by gmtime_r, which takes glibc's
 * time zone lock and reads its state for every file of a -N run. */
static void utc_fields(time_t t, struct tm *tm)
{
  int64_t days = (int64_t)t / 86400, secs = (int64_t)t % 86400;
  if (secs < 0) {
    secs += 86400;
    days--;
  }
  tm->tm_hour = (int)(secs / 3600);
  tm->tm_min = (int)(secs / 60 % 60);
  tm->tm_sec = (int)(secs % 60);
  tm->tm_wday = (int)((days % 7 + 11) % 7); /* 1970-01-01 was a Thursday (4) */
  int64_t z = days + 719468; /* days since 0000-03-01 */
  int64_t era = (z >= 0 ? z : z - 146096) / 146097;
  int64_t doe = z - era * 146097;                                     /* [0, 146096] */
  int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365; /* [0, 399] */
  int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);              /* [0, 365] */
  int64_t mp = (5 * doy + 2) / 153;                                   /* [0, 11], March first */
  tm->tm_mday = (int)(doy - (153 * mp + 2) / 5 + 1);
  tm->tm_mon = (int)(mp < 10 ? mp + 2 : mp - 10);
  tm->tm_year = (int)(yoe + era * 400 + (tm->tm_mon < 2) - 1900);
}

/* t as an IMF-fixdate ("Sun, 06 Nov 1994 08:49:37 GMT", 29 bytes and a
 * NUL) at out, which holds IMF_DATE_SIZE. Written by hand, not by snprintf: it
 * is formatted for every file of a -N run, where snprintf's cost showed. */
static void format_http_date(time_t t, char *out)
{
  struct tm tm;
  static const char days[7][4] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
  static const char months[12][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                     "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  utc_fields(t, &tm);
  /* Not strftime: its %a and %b follow the locale, HTTP's are English. */
  int year = tm.tm_year + 1900;
  if (year < 0 || year > 9999)
    year = year < 0 ? 0 : 9999; /* no four digits for it: not a date a server sends */
  char *o = out;
  memcpy(o, days[tm.tm_wday], 3);
  o[3] = ',';
  o[4] = ' ';
  o = put2(o + 5, tm.tm_mday);
  *o++ = ' ';
  memcpy(o, months[tm.tm_mon], 3);
  o[3] = ' ';
  o = put2(o + 4, year / 100);
  o = put2(o, year % 100);
  *o++ = ' ';
  o = put2(o, tm.tm_hour);
  *o++ = ':';
  o = put2(o, tm.tm_min);
  *o++ = ':';
  o = put2(o, tm.tm_sec);
  memcpy(o, " GMT", 5);
}

int akg_parse_http_date(const char *s, time_t *out)
{
  static const char months[] = "JanFebMarAprMayJunJulAugSepOctNovDec";
  char mon[4] = "";
  int day, year, h, m, sec;
  /* IMF-fixdate (RFC 9110 5.6.7), the one form servers send today. */
  if (!s || sscanf(s, "%*3s, %2d %3s %4d %2d:%2d:%2d GMT", &day, mon, &year, &h, &m, &sec) != 6)
    return -EINVAL;
  const char *at = strstr(months, mon);
  if (!at || strlen(mon) != 3 || (at - months) % 3 != 0 || day < 1 || day > 31 || h > 23 ||
      m > 59 || sec > 60 || year < 1970)
    return -EINVAL;
  struct tm tm = {.tm_year = year - 1900, .tm_mon = (int)((at - months) / 3), .tm_mday = day,
                  .tm_hour = h, .tm_min = m, .tm_sec = sec};
  *out = timegm(&tm);
  return 0;
}

/* getxattrat (Linux 6.13): an xattr read relative to a directory
 * descriptor, as fstatat is a stat. Its number is the same on every
 * architecture of the unified syscall table; glibc 2.36 does not know it
 * yet. */
#if !defined(SYS_getxattrat) && (defined(__x86_64__) || defined(__aarch64__) || \
                                 defined(__riscv) || defined(__i386__) || defined(__arm__))
#define SYS_getxattrat 464
#endif

/* The name, as the kernel's struct xattr_args wants it. */
struct akg_xattr_args {
  uint64_t value;
  uint32_t size;
  uint32_t flags;
};

/* getxattr(dirfd/rel): relative where the kernel has getxattrat (one
 * lookup per component below dirfd), else by the whole path. */
static ssize_t getxattr_at(int dirfd, const char *rel, const char *path, char *out, size_t cap)
{
#ifdef SYS_getxattrat
  /* 1: the kernel said ENOSYS once, or a test asked for the path form
   * (AKGET_TEST_NO_GETXATTRAT); the same for every thread. */
  static int no_at = -1;
  int no = __atomic_load_n(&no_at, __ATOMIC_RELAXED);
  if (no < 0) {
    no = getenv("AKGET_TEST_NO_GETXATTRAT") != NULL;
    __atomic_store_n(&no_at, no, __ATOMIC_RELAXED);
  }
  if (dirfd != AT_FDCWD && !no) {
    struct akg_xattr_args a = {.value = (uint64_t)(uintptr_t)out, .size = (uint32_t)cap};
    long n = syscall(SYS_getxattrat, dirfd, rel, 0, ETAG_XATTR, &a, sizeof a);
    if (n >= 0 || (errno != ENOSYS && errno != EPERM)) /* EPERM: a seccomp filter's */
      return (ssize_t)n;
    __atomic_store_n(&no_at, 1, __ATOMIC_RELAXED);
  }
#else
  (void)dirfd;
  (void)rel;
#endif
  return getxattr(path, ETAG_XATTR, out, cap);
}

/* The ETag kept on the file, or "" (none, no user xattrs here, too long). */
static void read_etag(int dirfd, const char *rel, const char *path, char *out, size_t cap)
{
  ssize_t n = getxattr_at(dirfd, rel, path, out, cap - 1);
  if (n <= 0 || memchr(out, '\r', (size_t)n) || memchr(out, '\n', (size_t)n))
    n = 0; /* absent (ENODATA), unsupported (ENOTSUP), or not a header value */
  out[n] = '\0';
}

/* The date formatted last on this thread, and its second: the files of
 * a tree often share their seconds (copied, unpacked or fetched in one
 * go: the 1000 files of the -N bench have 12), and formatting was half
 * of akg_ts_new's instructions. */
static __thread char date_last[IMF_DATE_SIZE];
static __thread time_t date_last_t;

int akg_ts_new(const akg_opts *o, const char *path, akg_ts **out)
{
  return akg_ts_new_in(o, path, NULL, 0, out);
}

int akg_ts_new_in(const akg_opts *o, const char *path, void *room, size_t room_len,
                  akg_ts **out)
{
  struct stat st;
  /* Both looks relative to -d's descriptor: the path's walk from / was
   * two of the five microseconds they took a file (the list's thread did
   * little else on a -N run over an unchanged tree). */
  int dirfd = AT_FDCWD;
  const char *rel = o->timestamping ? akg_path_at(o, path, &dirfd) : path;
  bool cond = o->timestamping && fstatat(dirfd, rel, &st, 0) == 0 && S_ISREG(st.st_mode);
  static const char ims_name[] = "If-Modified-Since: ";
  static const char inm_name[] = "If-None-Match: ";
  char etag[ETAG_MAX + 1]; /* not zeroed: 513 bytes a file, read_etag ends it */
  etag[0] = '\0';
  size_t array = 0, ims_len = 0, inm_len = 0;
  if (cond) {
    read_etag(dirfd, rel, path, etag, sizeof etag);
    array = (o->header_count + 2) * sizeof(const char *);
    ims_len = sizeof ims_name - 1 + IMF_DATE_SIZE;
    if (!date_last[0] || st.st_mtim.tv_sec != date_last_t) {
      format_http_date(st.st_mtim.tv_sec, date_last);
      date_last_t = st.st_mtim.tv_sec;
    }
    inm_len = etag[0] ? sizeof inm_name + strlen(etag) : 0;
  }
  size_t size = sizeof(akg_ts) + array + ims_len + inm_len;
  bool in_room = size <= room_len;
  akg_ts *ts = in_room ? room : malloc(size);
  if (!ts)
    return -ENOMEM;
  *ts = (akg_ts){.hdrs = (const char **)o->headers, .hdr_count = o->header_count,
                 .local_size = -1, .in_room = in_room};
  if (cond) {
    ts->conditional = true;
    ts->local_size = st.st_size;
    ts->hdrs = (const char **)(void *)ts->tail;
    char *ims = ts->tail + array;
    memcpy(ims, ims_name, sizeof ims_name - 1);
    memcpy(ims + sizeof ims_name - 1, date_last, IMF_DATE_SIZE);
    for (size_t i = 0; i < o->header_count; i++)
      ts->hdrs[i] = o->headers[i];
    ts->hdr_count = o->header_count;
    ts->hdrs[ts->hdr_count++] = ims;
    if (inm_len) {
      char *inm = ims + ims_len;
      memcpy(inm, inm_name, sizeof inm_name - 1);
      strcpy(inm + sizeof inm_name - 1, etag);
      ts->hdrs[ts->hdr_count++] = inm;
    }
  }
  *out = ts;
  return 0;
}

void akg_ts_free(akg_ts *ts)
{
  if (!ts)
    return;
  free(ts->etag);
  free(ts->last_modified);
  if (!ts->in_room)
    free(ts);
}

bool akg_ts_conditional(const akg_ts *ts)
{
  return ts && ts->conditional;
}

const char *const *akg_ts_headers(const akg_ts *ts, size_t *count)
{
  *count = ts->hdr_count;
  return ts->hdrs;
}

int64_t akg_ts_local_size(const akg_ts *ts)
{
  return ts->local_size;
}

void akg_ts_note(akg_ts *ts, const ak_http_response *r)
{
  const char *etag = ak_http_response_header(r, "etag");
  const char *lm = ak_http_response_header(r, "last-modified");
  free(ts->etag);
  free(ts->last_modified);
  ts->etag = ts->last_modified = NULL;
  /* NULL for want of memory: not kept, as a long one */
  if (etag && strlen(etag) <= ETAG_MAX)
    ts->etag = strdup(etag);
  if (lm && strlen(lm) < DATE_MAX + 1)
    ts->last_modified = strdup(lm);
}

int akg_ts_apply(const akg_ts *ts, int fd, const akg_opts *o, char *why, size_t why_len)
{
  why[0] = '\0';
  if (ts->etag && fsetxattr(fd, ETAG_XATTR, ts->etag, strlen(ts->etag), 0) < 0)
    /* No user xattrs here (tmpfs before Linux 6.6, some FUSE and NFS
     * mounts): the next -N asks with If-Modified-Since alone. */
    snprintf(why, why_len, "its ETag is not kept (%s): a later -N asks by date only",
             strerror(errno));
  time_t t;
  if (!o->no_remote_time && ts->last_modified &&
      akg_parse_http_date(ts->last_modified, &t) == 0) {
    struct timespec times[2] = {{.tv_nsec = UTIME_OMIT}, {.tv_sec = t}};
    if (futimens(fd, times) < 0)
      return -errno;
  }
  if (o->timestamping && !ts->etag && !ts->last_modified)
    snprintf(why, why_len,
             "the server sent no Last-Modified and no ETag: -N downloads it every time");
  return 0;
}
