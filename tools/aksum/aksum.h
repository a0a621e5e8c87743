/* aksum.h: what the files of aksum share: the options, the list of inputs
 * (one aks_item per file, in output order) with each one's outcome, the
 * hash algorithms, and the entry points of each part:
 *
 *   main.c      the command line, exit status
 *   walk.c      the inputs: arguments, -r trees (sorted), stat hints
 *   check.c     -c: reading checksum lists into items with expected sums
 *   sumline.c   one checksum line split (shared with akget --checksums)
 *   pipeline.c  the engine: the ring opens and reads many files at once with
 *               a bounded set of buffers, the pool hashes, copies are written
 *   copy.c      --copy: destination names, directories, O_TMPFILE copies
 *               named when complete, the named-temporary fallback
 *   hash.c      the coreutils family (libcrypto EVP) and XXH3 (libxxhash)
 *   blake2b.c   BLAKE2b of any length (b2sum -l), which libcrypto 3.0 lacks
 *   guard.c     fds 0-2 kept open, the open-file budget, and the removal of
 *               temporaries on SIGINT/SIGTERM/SIGHUP/SIGPIPE
 *   output.c    sha256sum-format lines, check results, messages, progress,
 *               the --json summary
 *   lines.c     how those lines reach stdout: whole records per write, in
 *               batches that end at a record's end
 */
#ifndef AKSUM_H
#define AKSUM_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* ---- Hash algorithms (hash.c) ------------------------------------------------ */

typedef enum aks_algo_id {
  AKS_MD5,
  AKS_SHA1,
  AKS_SHA224,
  AKS_SHA256,
  AKS_SHA384,
  AKS_SHA512,
  AKS_BLAKE2B,
  AKS_XXH3,
} aks_algo_id;

enum { AKS_DIGEST_MAX = 64 };
enum { AKS_LANES_MAX = 4 }; /* messages one update_lanes call takes at most */

typedef struct evp_md_st EVP_MD; /* OpenSSL's, opaque here */

typedef struct aks_algo {
  const char *name;                           /* --hash NAME: "sha256", "blake2b", "xxh3" */
  const char *tag;                            /* the --tag form's word: "SHA256", "BLAKE2b" */
  const char *tool;                           /* the coreutils tool it stands in for: "sha256sum" */
  const char *evp_name;                       /* libcrypto's name, or NULL (not from libcrypto) */
  size_t digest_len;                          /* bytes */
  bool available;                             /* false: not built in, or libcrypto lacks it */
  EVP_MD *md;                                 /* fetched by aks_algo_init (owned by the table) */
  /* A started context giving out_len bytes (a->digest_len, or for
   * BLAKE2b of any length 1 to 64), or NULL. */
  void *(*ctx_new)(const struct aks_algo *a, size_t out_len);
  void (*update)(void *ctx, const void *data, size_t len);
  void (*finish)(void *ctx, unsigned char *out); /* the context's out_len bytes */
  void (*ctx_free)(void *ctx);
  /* Several messages at once (one context each, n <= lanes <= AKS_LANES_MAX): as n calls of
   * update, in less time. lanes is 1 where the algorithm has no such path
   * (update_lanes then NULL). */
  unsigned lanes;
  void (*update_lanes)(void *const ctx[], const void *const data[], const size_t len[], unsigned n);
} aks_algo;

/* init picks the code for each algorithm (SHA-NI or libcrypto); prepare
 * fetches a's libcrypto digest if it has one and says whether a can be
 * used (both on the main thread, before any other runs); cleanup frees the
 * digests at exit. */
void aks_algo_init(void);
bool aks_algo_prepare(const aks_algo *a);
void aks_algo_cleanup(void);
const aks_algo *aks_algo_get(aks_algo_id id);
/* By name; NULL if unknown. */
const aks_algo *aks_algo_by_name(const char *name);
/* A started context for a giving out_len bytes (free with a->ctx_free), or
 * NULL on ENOMEM. */
void *aks_algo_ctx_new(const aks_algo *a, size_t out_len);
/* BLAKE2b from blake2b.c from now on (any length; main thread, before any
 * other runs). */
void aks_algo_blake2b_any_length(void);

/* ---- BLAKE2b of any length (blake2b.c) --------------------------------------- */

typedef struct aks_blake2b {
  uint64_t h[8];          /* the chaining state */
  uint64_t t[2];          /* bytes compressed so far (128 bits) */
  unsigned char buf[128]; /* the block not compressed yet (the last one may be whole) */
  size_t buf_len;
  size_t out_len; /* 1 to 64 bytes */
} aks_blake2b;

void aks_blake2b_init(aks_blake2b *c, size_t out_len);
void aks_blake2b_update(aks_blake2b *c, const void *data, size_t len);
void aks_blake2b_final(aks_blake2b *c, unsigned char *out); /* out_len bytes */

/* ---- SHA-256/224 on SHA-NI, several messages per thread (sha256ni.c) ---------- */

enum {
  AKS_SHA256_LANES = AKS_LANES_MAX
}; /* messages interleaved at most (measured: docs/aksum.md) */

typedef struct aks_sha256 {
  uint32_t h[8];         /* the chaining state, A..H */
  uint64_t bytes;        /* bytes taken so far */
  unsigned char buf[64]; /* bytes % 64 of them, waiting for a whole block */
  unsigned out_len;      /* 32 (SHA-256) or 28 (SHA-224) */
} aks_sha256;

/* Whether this CPU has SHA-NI, SSSE3 and SSE4.1 (else nothing below may
 * be called). */
bool aks_sha256ni_usable(void);
void aks_sha256ni_init(aks_sha256 *c, bool is224);
/* Adds len[i] bytes at data[i] to c[i] for each of n <= AKS_SHA256_LANES
 * distinct contexts. */
void aks_sha256ni_update_lanes(aks_sha256 *const c[], const unsigned char *const data[],
                               const size_t len[], unsigned n);
void aks_sha256ni_final(aks_sha256 *c, unsigned char *out); /* out_len bytes */

/* ---- Options ----------------------------------------------------------------- */

typedef enum aks_progress {
  AKS_PROGRESS_AUTO,
  AKS_PROGRESS_NEVER,
  AKS_PROGRESS_ALWAYS
} aks_progress;

typedef struct aks_opts {
  bool recursive;         /* -r */
  unsigned jobs;          /* -j: hashing threads (0: the CPUs) */
  const aks_algo *algo;   /* --hash */
  bool check;             /* -c: the operands are lists to check */
  size_t digest_len;      /* bytes printed per digest: the algorithm's, or -l's / 8 */
  bool zero;              /* -z: records end with NUL, names are not escaped */
  const char *copy_dest;  /* --copy DEST, or NULL */
  const char *json_path;  /* --json FILE|-, or NULL */
  aks_progress progress;  /* --progress / --no-progress */
  bool quiet;             /* --quiet: -c prints only failures */
  bool status;            /* --status: -c prints nothing, the exit status says */
  bool strict;            /* --strict: -c fails on improperly formatted lines */
  bool warn;              /* --warn: -c names each improperly formatted line */
  bool ignore_missing;    /* --ignore-missing: -c skips files that do not exist */
  bool tag;               /* --tag: BSD-style lines "SHA256 (name) = HEX" */
  bool verbose;           /* -v: name the IO backend and why on stderr */
  bool stdin_closed;      /* fd 0 was closed at start: "-" is EBADF */
  bool stdout_closed;     /* fd 1 was: printing anything is EBADF */
  size_t chunk;           /* --chunk: bytes per read */
  unsigned buffers;       /* --buffers: chunks in memory at most */
  unsigned max_open;      /* files open at once at most */
} aks_opts;

/* ---- Inputs and outcomes ------------------------------------------------------- */

typedef struct aks_item {
  char *path;        /* as given or walked: opened and printed */
  int64_t size_hint; /* st_size when walked; -1 unknown */
  unsigned mode;     /* st_mode when walked; 0 unknown */
  bool stream;       /* not a regular file: read in order (stdin, FIFO) */
  bool short_is_end; /* a regular file on a local filesystem: a short read is its end */
  bool is_stdin;     /* "-" */
  char *expect;      /* -c: the expected digest in lowercase hex */
  size_t digest_len; /* bytes of its digest (BLAKE2b in -c: each line says) */
  unsigned list;     /* -c: the list it came from (index in run->lists) */
  size_t improper_before; /* -c: its list's improper lines that came before it */
  /* outcome */
  int err;              /* 0 or -errno (set by the walk for early errors) */
  const char *err_step; /* NULL (the file itself), or "copy", ... */
  char *err_path;       /* the path the message names, if not path */
  const char *err_msg;  /* a message instead of strerror(-err), or NULL */
  uint64_t dev, ino;    /* the file's identity when walked (for --copy) */
  unsigned char digest[AKS_DIGEST_MAX];
  uint64_t bytes;
  bool finished;
  bool ignored; /* -c --ignore-missing: a missing file, not reported */
} aks_item;

/* -c: one list, read whole before the run; its messages and warnings come
 * out in their turn, after the lines of the lists before it (as
 * sha256sum -c LIST... checks one list after the other). */
typedef struct aks_list {
  const char *path;      /* as given ("-": stdin) */
  const char *shown;     /* in messages: path, or "standard input" */
  int err;               /* the list could not be opened (-errno), or 0 */
  bool read_error;       /* reading it failed part way (a directory...) */
  bool no_lines;         /* not one properly formatted line */
  size_t *improper_at;   /* line numbers of improperly formatted lines */
  size_t improper;       /* how many */
  size_t warned;         /* of those, already named (--warn) */
  size_t unreadable, mismatched, matched;
  bool done;             /* its summary is out */
} aks_list;

typedef struct aks_run {
  aks_opts opts;
  aks_item *items;
  size_t n, cap;
  aks_list *lists; /* -c: every list named, in order */
  size_t n_lists;
  size_t lists_done; /* lists whose summary is out */
  /* -c: lines that were not checksum lines (all lists) */
  size_t improper;
  /* counted as items are reported, in order */
  size_t reported;
  size_t ok, failed, mismatched, unreadable, copied;
  size_t matched; /* -c: files whose sum matched (--ignore-missing's "verified") */
  uint64_t bytes; /* bytes hashed (progress too) */
  uint64_t ring_reads, ring_ops, pool_tasks, fallbacks; /* from the loop */
  int64_t t0_ns, t1_ns;
  int usage_rc; /* set by parsing */
} aks_run;

/* Appends an item (path copied); returns it or NULL on ENOMEM. */
aks_item *aks_item_add(aks_run *run, const char *path);
void aks_run_free(aks_run *run);

/* ---- The parts ------------------------------------------------------------------ */

/* walk.c: adds the inputs named by paths (n of them; none: "-"). Errors
 * found here (a directory without -r, an unreadable directory) become items
 * that have failed. Returns 0 or -ENOMEM. */
int aks_walk(aks_run *run, char *const *paths, size_t n);

/* check.c: reads the checksum lists named (none: "-", stdin) into
 * run->lists and their lines into items. A list that cannot be read, or
 * has no checksum line, is marked so (reported in its turn). Returns 0 or
 * -ENOMEM. */
int aks_check_load(aks_run *run, char *const *paths, size_t n);
/* The digest of it as lowercase hex (out: 2 * AKS_DIGEST_MAX + 1). */
void aks_item_hex(const aks_run *run, const aks_item *it, char *out);

/* pipeline.c: processes every item; calls aks_report for each in order as
 * it finishes. Returns 0, or a negative error if the engine could not
 * start (reported). */
int aks_pipeline_run(aks_run *run);

/* copy.c: the copy's final path for an item (malloc'ed), mkdir -p of its
 * directory, and a fresh temporary name next to it (malloc'ed). */
char *aks_copy_dest_path(const aks_run *run, const aks_item *it);
int aks_copy_make_dirs(const char *dest_path);
char *aks_copy_temp_path(const char *dest_path);
/* The directory an O_TMPFILE copy is opened in (malloc'ed; "." for a bare
 * name). tmpfile_wanted: whether copies are made with O_TMPFILE at all (not
 * without /proc, nor under AKSUM_TEST_NO_TMPFILE). tmpfile_unsupported:
 * whether an open's error means the filesystem or kernel lacks O_TMPFILE
 * (then the copy takes a named temporary). link_into_place: gives the
 * complete O_TMPFILE copy open on fd the name dest_path, replacing what is
 * there atomically; 0 or -errno. */
char *aks_copy_dir_path(const char *dest_path);
bool aks_copy_tmpfile_wanted(void);
bool aks_copy_tmpfile_unsupported(int err);
int aks_copy_link_into_place(int fd, const char *dest_path);
/* Before the run: fails the items whose copy would overwrite their own
 * source, and every item after the first that maps to one destination.
 * Returns 0 or -ENOMEM. */
int aks_copy_plan(aks_run *run);

/* output.c */
void aks_report(aks_run *run, aks_item *it); /* one finished item, in order */
void aks_print_summary(aks_run *run);        /* -c warnings on stderr (every list left) */
bool aks_check_failed(const aks_run *run);   /* -c: some list fails as sha256sum -c's would */
int aks_write_json(const aks_run *run);      /* --json; 0 or -errno */
void aks_progress_tick(aks_run *run, bool final);
void aks_hex(const unsigned char *digest, size_t len, char *out); /* out: 2*len+1 */
bool aks_progress_wanted(const aks_run *run, bool *tty);

/* lines.c: stdout's records. put/puts/putc add to the record being built;
 * end_record closes it (its terminator already put) and may write; flush
 * writes every complete record and returns 0 or the first write error
 * (-errno), after which nothing more is written. init is implicit on the
 * first put. */
void aks_out_init(void);
void aks_out_put(const void *data, size_t n);
void aks_out_puts(const char *s);
void aks_out_putc(char c);
void aks_out_end_record(void);
int aks_out_flush(void);
void aks_out_free(void);

/* guard.c. std_fds: opens /dev/null on whichever of fds 0-2 is closed;
 * returns which were (bit N: fd N; first thing in main). file_budget: how many files
 * may be open at once when each takes per_file descriptors, under
 * RLIMIT_NOFILE less those open now, at most cap and at least 1. signals:
 * installs the handler that removes the registered temporaries (call on the
 * loop's thread). temp_add registers a name (kept by pointer; the caller
 * keeps it alive until temp_remove) and returns its slot or -1. */
unsigned aks_guard_std_fds(void);
/* block_fatal: blocks SIGINT, SIGTERM, SIGHUP and SIGPIPE on the calling
 * (loop) thread, the old mask in *old; restore puts it back, and a signal
 * that came meanwhile is handled then. */
void aks_guard_block_fatal(sigset_t *old);
void aks_guard_restore(const sigset_t *old);
unsigned aks_guard_file_budget(unsigned per_file, unsigned cap);
void aks_guard_signals(void);
int aks_guard_temp_add(char *name);
void aks_guard_temp_remove(int slot);

#endif /* AKSUM_H */
