/* akget.h: what akget's files share: the options, one akg_item per URL with
 * its outcome, the run's shared counters, and each file's entry points:
 *
 *   main.c      the command line, the exit status
 *   input_list.c  an -i list's text, entry by entry (aria2's input-file
 *               form: a URL line, then indented key=value lines)
 *   feed.c      items as the downloads go: the list read by a thread of its
 *               own into a bounded queue, --shard, per-URL options; an
 *               item's end (counted, reported, freed)
 *   names.c     output paths: a URL's name or out=/dir= under -d, repeats;
 *               the directory a download holds (no link followed)
 *   worker.c    the loops: --threads workers pull items; -j per run
 *   download.c  one URL: temporary file, segments, resume, retries, rename
 *   resume_record.c  -c's control record (the .ctl sidecar): bytes on disk,
 *               size, validators; its format and extent arithmetic
 *   errors.c    errors to exit codes, and which ones are worth a retry
 *   checksum.c  --checksum sha-256=HEX, on the pool
 *   checksum_list.c  --checksums FILE|URL: the list, names looked up in it
 *   content_disposition.c  --content-disposition: the header's name, made
 *               safe or refused
 *   progress.c  the terminal display and the plain event lines (stderr)
 *   timestamp.c -N's conditional request; Last-Modified as mtime, the ETag
 *               in a user xattr
 *   report.c    the --json summary, written as downloads end
 *   proxy_env.c --proxy, --noproxy and the proxy variables (curl's rules)
 *   credentials.c  --user, user:password@ in URLs, --netrc, per request
 *   netrc.c     the .netrc file's parser
 */
#ifndef AKGET_H
#define AKGET_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <time.h>

#include <asynckit.h>

/* Exit codes (docs/akget.md). The worst (highest) over all URLs decides. */
enum {
  AKG_EXIT_OK = 0,
  AKG_EXIT_USAGE = 2,
  AKG_EXIT_LOCAL_IO = 3,
  AKG_EXIT_NETWORK = 4,
  AKG_EXIT_TLS = 5,
  AKG_EXIT_CHECKSUM = 6,
  AKG_EXIT_PROTOCOL = 7,
  AKG_EXIT_HTTP_STATUS = 8,
  AKG_EXIT_PROXY = 9,        /* the proxy refused (407, 403, a SOCKS failure
                                reply) or could not be reached */
};

/* A checksum failure, as an error number of akget's own (outside the
 * library's range). */
#define AKG_ECHECKSUM (-20001)
/* A final HTTP status >= 400 (the status is in item->status). */
#define AKG_EHTTPSTATUS (-20002)
/* An -i entry the list itself gets wrong (an unknown key, out= leaving
 * -d...): not downloaded, exit 2 (item->detail says why, with the line). */
#define AKG_ELIST (-20003)

typedef struct akg_opts {
  const char *dir;           /* -d */
  const char *output;        /* -o (one URL only) */
  unsigned jobs;             /* -j: downloads at once (whole run) */
  unsigned conns_per_host;   /* -x */
  unsigned segments;         /* -s */
  bool all_segments;         /* --all-segments: the -s parts at once, not grown */
  int64_t min_segment;       /* --min-segment */
  bool resume;               /* -c */
  unsigned retries;          /* --retries */
  int64_t retry_base_ns;     /* first backoff (doubles each time) */
  int64_t connect_timeout_ns; /* --connect-timeout */
  int64_t idle_timeout_ns;   /* --timeout */
  int64_t max_time_ns;       /* --max-time: each download, retries included */
  const char **headers;      /* -H, in order */
  size_t header_count;
  const char *user_agent;    /* -A */
  const char *cacert;        /* --cacert */
  bool insecure;             /* -k */
  const char *json_path;     /* --json */
  bool quiet, verbose;       /* -q, -v */
  unsigned threads;          /* --threads */
  int64_t limit_rate;        /* --limit-rate: bytes/s over the run, 0: none */
  bool compressed;           /* --compressed: ask gzip/deflate, save decoded */
  int64_t max_filesize;      /* --max-filesize: bytes per file (decoded), 0: none */
  bool progress_tty;         /* stderr is a terminal (and not -q) */
  const char *http_proxy;    /* for http URLs (--proxy or the environment) */
  const char *https_proxy;   /* for https URLs */
  const char *no_proxy;      /* --noproxy or no_proxy/NO_PROXY */
  const char *userpwd;       /* --user USER:PASS */
  bool location_trusted;     /* --location-trusted */
  bool netrc;                /* --netrc or --netrc-file */
  const char *netrc_file;    /* --netrc-file (NULL: ~/.netrc) */
  int ip_family;             /* -4: AF_INET, -6: AF_INET6, else AF_UNSPEC */
  bool timestamping;         /* -N: an existing file is asked conditionally */
  bool no_remote_time;       /* --no-remote-time: mtime is the download's */
  const struct akg_sumlist *checksums; /* --checksums: the list, or NULL */
  bool content_disposition;  /* --content-disposition: the server may name the file */
  unsigned pipelining;       /* --enable-http-pipelining: -N's HEADs, this
                                many at most written at once on one
                                connection (ak_http_head_pipeline); 0: off */
} akg_opts;

enum { AKG_MAX_SEGMENTS = 32 };
/* --enable-http-pipelining's depth when none is given: docs/akget.md,
 * MIRRORS. */
enum { AKG_PIPELINE_DEPTH = 8 };

typedef enum akg_state { AKG_QUEUED, AKG_ACTIVE, AKG_DONE, AKG_FAILED } akg_state;

typedef struct akg_item {
  char *url;                 /* as given */
  char *path;                /* the final name */
  char *tmp;                 /* the temporary name: path + ".akget-part" */
  unsigned char sha256[32];  /* expected, with has_checksum */
  bool has_checksum;
  /* progress, read by the display thread (__atomic loads) */
  int64_t *seg_got;          /* bytes written per segment (AKG_MAX_SEGMENTS),
                                each counted from its segment's start: the
                                download's counters while it fetches
                                (download.c's dl_get), else NULL (their sum
                                moved to ranges_done under run->active_lock
                                at its end). Not in the item: 256 of its 472
                                bytes, for every URL on the list reader's
                                thread, where a -N 304 needs none */
  int64_t total;             /* the file's size once known, else -1 */
  int state;                 /* akg_state */
  /* outcome (written by the item's worker, read after the join) */
  int err;                   /* 0, a library error, AKG_E* */
  char *detail;              /* what went wrong, owned */
  int status;                /* last HTTP status, 0 if none */
  int exit_code;
  int64_t bytes;             /* the file's size when done */
  int64_t resumed_from;      /* bytes already there (-c) */
  int64_t ranges_done;       /* bytes of ranges finished this run whose
                                segment counter was reset (or whose
                                download has ended) for the next
                                range (__atomic, for the display) */
  unsigned attempts;
  unsigned segments_used;
  bool decoded;              /* the body came compressed and was decoded */
  bool unchanged;            /* -N: a 304, the file on disk was kept */
  unsigned char sum_check;   /* --checksums: akg_sum_check, what the list said */
  int64_t start_ns, end_ns;
  char *userpwd;             /* "user:password" for this URL (taken out of
                                the URL, or from netrc), or NULL; never
                                printed */
  akg_opts *opts;            /* the entry's own options (its header= lines
                                after -H's), owned, or NULL: the run's */
  char **own_headers;        /* those header= lines, owned */
  size_t own_header_count;
  struct akg_ts *ts;         /* -N: the file's date and ETag, read by the
                                feed's thread (not the loop's), owned until
                                the download takes it, or NULL */
  struct akg_item *act_prev, *act_next; /* the run's active list (progress.c) */
  struct akg_item *ended_next; /* the feed's list of ended items, which its
                                  reader frees (feed.c) */
} akg_item;

typedef struct akg_feed akg_feed;
typedef struct akg_worker akg_worker;

/* The run: counters only; the items live from the feed's queue to their
 * end (feed.c), never all at once. */
typedef struct akg_run {
  const akg_opts *opts;
  akg_feed *feed;
  _Atomic size_t count;      /* items made so far (the whole list at the end) */
  _Atomic size_t finished;   /* items done or failed */
  _Atomic size_t failed;
  _Atomic size_t unchanged;  /* -N: items answered 304 (also counted finished) */
  _Atomic int64_t bytes;     /* fetched by items that have ended (not -N's kept) */
  _Atomic int worst;         /* the worst exit code of the items ended */
  int64_t start_ns;
  pthread_mutex_t out_lock;  /* stderr lines */
  pthread_mutex_t active_lock; /* the active list and the ended_* sums */
  akg_item *active;          /* items downloading, for the display */
  int64_t ended_got;         /* bytes of items ended (for the display's totals) */
  int64_t ended_known_total, ended_known_got; /* of those whose size was known */
  bool reader_left;          /* akg_feed_finish left the list reader in a read */
  _Atomic int loop_cpu;      /* the CPU the run's one loop last took items on,
                                for the list's reader to run beside it
                                (feed.c); -1: not known, or several loops */
} akg_run;

/* Bytes of item on disk so far: resumed_from plus every segment's count. */
int64_t akg_item_got(const akg_item *item);

/* worker.c: makes run ready for a run with opts (its clock started, its
 * locks made); run is static in its callers: a list reader left in a read
 * (akg_feed_finish) may still use it after they return. */
void akg_run_init(akg_run *run, const akg_opts *opts);
/* Runs every item; returns 0 or a negative error (no loop). */
int akg_run_all(akg_run *run);
/* Called by the feed (any thread) when items wait for a worker that found
 * the queue empty, or the list has ended: the worker takes again. False
 * when the worker could not be told (no memory for the post): the feed
 * keeps it as waiting and tells it at the next push or the end. */
bool akg_worker_feed_ready(akg_worker *w);

/* input_list.c: an -i list read entry by entry. */
enum { AKG_LIST_LINE_MAX = 65536 }; /* bytes of a line kept; longer: an error */
#define AKG_LIST_LINE_MAX_TEXT "65536"
typedef struct akg_list_reader akg_list_reader;
typedef struct akg_list_entry {
  const char *url;           /* as written, or NULL (options with no URL):
                                the reader's, until its next entry (not
                                freed by akg_list_entry_clear) */
  char *checksum;            /* "sha-256=HEX" (on the URL's line or checksum=), or NULL */
  unsigned long checksum_line;
  char *out, *dir;           /* out=, dir=, or NULL */
  unsigned long out_line, dir_line; /* their lines */
  char **headers;            /* header= values, in order */
  size_t header_count;
  unsigned long line;        /* the entry's first line */
  char *error;               /* "line N: what is wrong", or NULL */
  bool oom;                  /* memory ran out while reading it */
} akg_list_entry;
/* Opens path ("-": stdin, not closed): 0 and *out, or -errno. */
int akg_list_open(const char *path, akg_list_reader **out);
/* A reader over f (closed by akg_list_close when owned), or NULL. */
akg_list_reader *akg_list_from_file(FILE *f, bool owned);
/* The next entry into *e (cleared first; akg_list_entry_clear frees it):
 * 1, 0 at the end, or -errno when reading failed (the end too). An entry
 * with e->error set is still returned: the reading goes on after it. */
int akg_list_next(akg_list_reader *r, akg_list_entry *e);
void akg_list_entry_clear(akg_list_entry *e);
void akg_list_close(akg_list_reader *r);
/* Why rel (out=, dir=) may not be used under -d ("is absolute", "has a
 * '..' component", ...), or NULL if it may. */
const char *akg_list_path_problem(const char *rel);

/* names.c */
typedef struct akg_names akg_names;
akg_names *akg_names_new(void);
void akg_names_free(akg_names *n);
/* Sets it->path and it->tmp: -o, else -d/[dir/](out or the URL's name), a
 * repeated URL name numbered; out=/dir= directories made. u: it->url
 * parsed already, or NULL (parsed here). it->tmp is written into tmp_room
 * when it fits in tmp_room_len bytes (the item's block: feed.c), else
 * malloc'd. Returns 0, -ENOMEM, or an exit code (2: a bad or repeated
 * out=/dir=, 3: a directory that cannot be made) with why filled. */
int akg_names_assign(akg_names *n, const akg_opts *o, akg_item *it, const ak_url *u,
                     const char *dir, const char *out, char *tmp_room, size_t tmp_room_len,
                     char *why, size_t why_len);
int akg_mkdir_p(const char *dir);
/* The directory it->path goes in, held for the download (names.c: why):
 * resolved beneath -d with no link followed (not with -o). Sets *out
 * (released by akg_dir_close). Returns 0 or -errno with why filled. */
typedef struct akg_dir akg_dir;
int akg_dir_open(const akg_opts *o, const akg_item *it, akg_dir **out, char *why, size_t why_len);
/* Its descriptor (O_PATH; AT_FDCWD for the working directory). */
int akg_dir_fd(const akg_dir *h);
/* Whether it->path's directory is still h (not replaced, moved, or made a
 * link since it was resolved). Returns 0 or -errno with why filled. */
int akg_dir_still(const akg_opts *o, const akg_item *it, const akg_dir *h, char *why,
                  size_t why_len);
void akg_dir_close(akg_dir *h);
/* it->path as a directory descriptor and a name relative to it, for a
 * look at the file already there (-N's stat and ETag read): -d's held
 * descriptor and the path below it (one lookup per component below -d,
 * not per component of the whole path), or AT_FDCWD and the path (-o, no
 * -d, or -d not openable: its error comes with the download). */
const char *akg_path_at(const akg_opts *o, const char *path, int *dirfd);
/* The last component of path (after its last '/'). */
const char *akg_leaf(const char *path);
uint64_t akg_str_hash(const char *s); /* FNV-1a: --shard's hash, the same everywhere */

/* feed.c: where the items come from. */
typedef struct akg_sources {
  char **urls;               /* command-line URLs, first */
  size_t nurls;
  akg_list_reader **lists;   /* then the -i lists, in order (taken: closed by the feed) */
  const char **list_names;
  size_t nlists;
  unsigned shard_k, shard_n; /* --shard K/N, or 0/0 */
  const unsigned char *checksum; /* --checksum's (the one URL), or NULL */
} akg_sources;
enum { AKG_FEED_ITEM, AKG_FEED_WAIT, AKG_FEED_END };
/* Starts the reader thread. Returns 0, or an exit code after saying why
 * (the netrc file unreadable: 2; no thread: 3). */
int akg_feed_start(akg_run *run, const akg_sources *src);
/* From a worker's loop: AKG_FEED_ITEM and *out; AKG_FEED_WAIT (the queue
 * is empty: akg_worker_feed_ready(w) will be called); AKG_FEED_END. */
int akg_feed_take(akg_feed *f, akg_worker *w, akg_item **out);
/* After the workers: the reader's end (joined). When the workers stopped
 * early the reader is told to stop and waited for a while; one that does
 * not end then (it sits in a read of a pipe) is left, and run->reader_left
 * says so: what it reads (the options, the header lines) must then outlive
 * main's return. Returns the
 * worst exit code the lists themselves caused (a read error: 3). */
int akg_feed_finish(akg_feed *f, bool workers_failed);
/* An item has ended (worker or feed): counted, its --json entry written,
 * freed. */
void akg_item_end(akg_run *run, akg_item *it);

/* download.c: starts item on a worker's loop and client; done(arg) runs
 * on the loop when the item has ended (DONE or FAILED). */
void akg_download_start(akg_worker *w, akg_item *item, void (*done)(akg_worker *w, akg_item *item));
/* The worker's loop and client (worker.c). */
ak_loop *akg_worker_loop(akg_worker *w);
ak_http_client *akg_worker_client(akg_worker *w);
const akg_opts *akg_worker_opts(akg_worker *w);
akg_run *akg_worker_run(akg_worker *w);
/* --enable-http-pipelining: -N's conditional HEAD for d (download.c's),
 * held until the worker has started every item it can take now, then sent
 * with the others as pipelines (ak_http_head_pipeline); req and what it
 * points to must live until then. akg_download_asked(d, f) gives d its
 * future (NULL: out of memory). */
void akg_worker_queue_head(akg_worker *w, const ak_http_request *req, void *d);
void akg_download_asked(void *d, ak_future *f);
/* Frees the records of ended downloads kept for reuse by this thread
 * (download.c); a worker's thread calls it when its loop has ended. */
void akg_download_spares_free(void);

/* errors.c */
int akg_exit_code(int err, int status);
bool akg_should_retry(int err, int status);
/* Backoff before retry number attempt (1, 2...): exponential with jitter,
 * or Retry-After when the server said (capped at 60 s). */
int64_t akg_backoff_ns(const akg_opts *o, unsigned attempt, int64_t retry_after_s);
const char *akg_err_text(int err);

/* checksum.c: parses "sha-256=HEX" (also sha256); returns 0 or -EINVAL. */
int akg_parse_checksum(const char *spec, unsigned char out[32]);
/* A pool task future hashing path; result 0 if it matches, AKG_ECHECKSUM
 * if not, -errno if unreadable. */
ak_future *akg_checksum_verify(ak_loop *loop, const char *path, const unsigned char want[32]);
/* The same with another libcrypto digest (md_name: "SHA256", "MD5"...) and
 * len bytes of want (at most 64). */
ak_future *akg_checksum_verify_md(ak_loop *loop, const char *path, const char *md_name,
                                  const unsigned char *want, size_t len);
/* Stops the hashing pool (at exit, after every loop has ended). */
void akg_checksum_shutdown(void);

/* checksum_list.c: --checksums. What the list had to say of an item. */
typedef enum akg_sum_check {
  AKG_SUM_NONE,              /* no list (or the item failed before its end) */
  AKG_SUM_LISTED,            /* being verified */
  AKG_SUM_VERIFIED,          /* hashed, matched */
  AKG_SUM_MISMATCH,          /* hashed, did not match: exit 6, not named */
  AKG_SUM_NOT_LISTED,        /* its name is not in the list: not verified */
  AKG_SUM_NOT_HASHED,        /* -N: listed, unchanged (304): kept, not hashed */
} akg_sum_check;
typedef struct akg_sum akg_sum;
typedef struct akg_sumlist akg_sumlist;
/* Reads the list (a local path, or an http(s) URL fetched first with o's
 * reach options). 0 and *out (akg_sums_free), or an exit code (2: missing,
 * unreadable or malformed; a fetch's own code) after saying why on stderr. */
int akg_sums_load(const akg_opts *o, const char *spec, akg_sumlist **out);
void akg_sums_free(akg_sumlist *l);
size_t akg_sums_count(const akg_sumlist *l);
/* The list's entry for the file at path (under o->dir), or NULL. */
const akg_sum *akg_sums_find(const akg_opts *o, const char *path);
const char *akg_sum_algo(const akg_sum *s); /* "sha256", "md5"... */
/* A pool future hashing path with s's algorithm: 0, AKG_ECHECKSUM, -errno. */
ak_future *akg_sum_verify(ak_loop *loop, const char *path, const akg_sum *s);

/* content_disposition.c: the file name in a Content-Disposition value: 1
 * and *out (malloc'd; one path component, safe), 0 when it names none (or
 * does not parse), -1 when its name is refused (why says why), -ENOMEM.
 * With 1, why may say what was done to the name ("" if nothing). */
int akg_cd_filename(const char *value, char **out, char *why, size_t why_len);

/* progress.c */
void akg_progress_event(akg_run *run, const akg_item *item, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* An item starts or stops being drawn (the active list; any thread). */
void akg_progress_track(akg_run *run, akg_item *it);
void akg_progress_untrack(akg_run *run, akg_item *it);
/* The display thread (tty): redraws until akg_progress_stop. */
void akg_progress_start(akg_run *run);
void akg_progress_stop(akg_run *run);
void akg_progress_summary(akg_run *run);

/* resume_record.c: the control record of a partial download. */
enum {
  AKG_REC_SLOT = 8192,        /* bytes per slot; the sidecar holds two */
  AKG_REC_MAX_EXTENTS = 400,  /* byte ranges on disk a record can list */
  AKG_REC_ETAG_MAX = 511,     /* a longer ETag is not kept (not checkable) */
  AKG_REC_DATE_MAX = 63,
};

typedef struct akg_extent {
  int64_t start, len;
} akg_extent;

typedef struct akg_record {
  uint64_t seq;              /* stores so far (picks the newer slot) */
  int64_t size;              /* the entity's size, -1: unknown */
  char etag[AKG_REC_ETAG_MAX + 1];          /* "" if none */
  char last_modified[AKG_REC_DATE_MAX + 1]; /* "" if none */
  unsigned n;                /* extents in use */
  akg_extent ext[AKG_REC_MAX_EXTENTS]; /* on disk: sorted, disjoint, apart */
} akg_record;

/* Empties r (no extents, size -1, no validators), keeping its sequence. */
void akg_record_clear(akg_record *r);
/* Reads fd's newest valid slot for url into *out: 1. An empty file: 0
 * (why: "none"). Otherwise -1 and why says what is wrong (truncated,
 * garbage, checksum, another URL, another version). */
int akg_record_load(int fd, const char *url, akg_record *out, char *why, size_t why_len);
/* Writes r (its sequence advanced) into the slot the last store did not
 * use. Returns 0 or -errno. */
int akg_record_store(int fd, const char *url, akg_record *r);
/* Adds [start, start+len) to r's extents (merging what touches it); past
 * AKG_REC_MAX_EXTENTS the shortest extent is forgotten (fetched again). */
void akg_extents_add(akg_record *r, int64_t start, int64_t len);
int64_t akg_extents_bytes(const akg_record *r);
/* The ranges of [0, size) r does not hold, in order, at most max. */
unsigned akg_extents_gaps(const akg_record *r, int64_t size, akg_extent *out, unsigned max);
uint64_t akg_fnv64(const void *data, size_t len);
/* proxy_env.c: fills o's proxy fields from --proxy / --noproxy (NULL when
 * not given) or the environment. Returns 0, or AKG_EXIT_USAGE after saying
 * which variable or option does not parse. */
int akg_proxy_setup(akg_opts *o, const char *opt_proxy, const char *opt_noproxy);

/* credentials.c: takes user:password@ out of the item's URL into
 * item->userpwd, else (--netrc: netrc's text, read once) fills it from the
 * netrc entry of its host. Returns 0 or -ENOMEM. */
int akg_credentials_item(const akg_opts *o, const char *netrc, size_t netrc_len, akg_item *it);
/* Sets rq's credentials and redirect flag for item. */
void akg_request_auth(const akg_opts *o, const akg_item *it, ak_http_request *rq);

/* netrc.c: host's login and password (owned, either may be NULL) from
 * netrc text: its machine entry, else the default one. Returns 1 when an
 * entry gave either, 0 when none, -ENOMEM. */
int akg_netrc_find(const char *text, size_t len, const char *host, char **login, char **password);
/* Reads path (NULL: $HOME/.netrc) whole: 0 and *text (malloc'd), or -errno. */
int akg_netrc_read(const char *path, char **text, size_t *len);

/* timestamp.c: what one download knows of its file's time and validators. */
typedef struct akg_ts akg_ts;
/* For path: with -N and a regular file there, the conditional headers
 * (o->headers plus If-Modified-Since and If-None-Match). Returns 0 and
 * *out (freed by akg_ts_free), or -ENOMEM. */
int akg_ts_new(const akg_opts *o, const char *path, akg_ts **out);
/* The same, made in room (room_len bytes, 8-aligned) when it fits there
 * (the item's block: feed.c), else malloc'd; akg_ts_free then frees only
 * what it holds outside room. */
int akg_ts_new_in(const akg_opts *o, const char *path, void *room, size_t room_len,
                  akg_ts **out);
void akg_ts_free(akg_ts *ts);
/* The request is to be sent with akg_ts_headers (ts may be NULL: false). */
bool akg_ts_conditional(const akg_ts *ts);
const char *const *akg_ts_headers(const akg_ts *ts, size_t *count);
/* The existing file's size (a conditional ts), else -1. */
int64_t akg_ts_local_size(const akg_ts *ts);
/* Keeps a 200/206 response's Last-Modified and ETag for akg_ts_apply. */
void akg_ts_note(akg_ts *ts, const ak_http_response *r);
/* On the complete file's fd: the ETag into user.akget.etag, Last-Modified
 * as mtime (unless --no-remote-time). Returns 0 or -errno (futimens);
 * why gets a line for -v, or "". */
int akg_ts_apply(const akg_ts *ts, int fd, const akg_opts *o, char *why, size_t why_len);
/* An IMF-fixdate ("Sun, 06 Nov 1994 08:49:37 GMT"): 0 and *out, or -EINVAL. */
int akg_parse_http_date(const char *s, time_t *out);

/* report.c: --json, streamed. Open writes the head (0 or -errno), each
 * ended item its entry (any thread), close the totals (0 or -errno). */
int akg_report_open(const char *path);
void akg_report_item(const akg_item *it);
int akg_report_close(const akg_run *run, int exit_code);

#endif /* AKGET_H */
