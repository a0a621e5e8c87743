/* main.c: aksum's command line: parsing, the choice between hashing and
 * checking, and the exit status. The work is in pipeline.c.
 *
 * Exit status: 0 every file was hashed (and copied, and matched); 1 some
 * file failed (unreadable, a directory without -r, vanished, a copy that
 * failed, a checksum that did not match; with -c also what sha256sum -c
 * fails for: --strict and an improperly formatted line, --ignore-missing
 * and no file verified, in any of the lists); 2 usage, including what
 * sha256sum refuses with status 1 (a check-only option without -c, --tag
 * or -z with -c): docs/aksum.md says why.
 */
#define _GNU_SOURCE
#include "aksum.h"

#include <asynckit.h>
#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void usage(FILE *to)
{
  fprintf(to,
          "usage: aksum [-r] [-j N] [-a HASH] [-l BITS] [--tag] [-z] [--copy DEST]\n"
          "             [--json FILE|-] PATH...\n"
          "       aksum -c [-j N] [-a HASH] [--quiet|--status|--warn] [--strict]\n"
          "             [--ignore-missing] [--json FILE|-] [LIST]...\n"
          "\n"
          "Prints a checksum line per file, as sha256sum (md5sum, sha1sum, ..., b2sum)\n"
          "does, and checks their lists. The ring reads many files at once; a pool of\n"
          "threads hashes.\n"
          "\n"
          "  -r, --recursive     hash the regular files below directories (in byte\n"
          "                      order of their paths)\n"
          "  -j, --jobs N        hashing threads (default: the number of CPUs)\n"
          "  -a, --hash NAME     md5, sha1, sha224, sha256 (default), sha384, sha512,\n"
          "                      blake2b (as b2sum) or xxh3%s\n"
          "  -l, --length BITS   with -a blake2b: the digest's length, a multiple of 8\n"
          "                      up to 512 (as b2sum -l)\n"
          "      --tag           BSD-style lines: SHA256 (name) = HEX\n"
          "  -z, --zero          end each line with NUL, not newline, and do not\n"
          "                      escape names\n"
          "  -c, --check         check the sums listed in each LIST, one after the\n"
          "                      other (none or - : stdin)\n"
          "      --quiet         with -c, print only the files that fail\n"
          "      --status        with -c, print nothing: the exit status says\n"
          "                      (of --quiet, --status and --warn the last one counts)\n"
          "      --strict        with -c, fail on improperly formatted lines\n"
          "  -w, --warn          with -c, name each improperly formatted line\n"
          "      --ignore-missing  with -c, skip listed files that do not exist\n"
          "      --copy DEST     also copy each file to DEST/PATH while hashing; a copy\n"
          "                      takes its name only when complete\n"
          "      --json FILE|-   write a JSON summary (- : stdout, after the lines)\n"
          "      --progress      progress lines every second when stderr is not a\n"
          "                      terminal (default: every 5 s; a status line on one)\n"
          "      --no-progress   no progress at all\n"
          "      --chunk BYTES   bytes per read (default 1M; suffixes K, M)\n"
          "      --buffers N     chunks in memory at most (default 16)\n"
          "  -v, --verbose       say on stderr which IO backend runs (io_uring or\n"
          "                      epoll) and why\n"
          "  -h, --help          this text\n"
          "\n"
          "Exit status: 0 all good, 1 some files failed (with -c: as sha256sum -c),\n"
          "2 usage.\n",
          aks_algo_get(AKS_XXH3)->available ? "" : " (not available: built without libxxhash)");
}

static int usage_error(const char *fmt, const char *arg)
{
  fputs("aksum: ", stderr);
  fprintf(stderr, fmt, arg);
  fputs("\nTry 'aksum --help'.\n", stderr);
  return 2;
}

/* A count or size with an optional K/M/G suffix; false if malformed. */
static bool parse_size(const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
  char *end;
  errno = 0;
  if (!s || *s == '-')
    return false;
  unsigned long long v = strtoull(s, &end, 10);
  if (errno || end == s)
    return false;
  if (*end == 'K' || *end == 'k')
    v <<= 10, end++;
  else if (*end == 'M' || *end == 'm')
    v <<= 20, end++;
  else if (*end == 'G' || *end == 'g')
    v <<= 30, end++;
  if (*end || v < min || v > max)
    return false;
  *out = v;
  return true;
}

enum {
  OPT_HASH = 256,
  OPT_COPY,
  OPT_JSON,
  OPT_PROGRESS,
  OPT_NO_PROGRESS,
  OPT_QUIET,
  OPT_CHUNK,
  OPT_BUFFERS,
  OPT_TAG,
  OPT_STATUS,
  OPT_STRICT,
  OPT_IGNORE_MISSING,
};

/* The usage errors that sha256sum also reports, in its words (its exit
 * status is 1; aksum's is 2 for every usage error: docs/aksum.md). */
static int usage_coreutils(const char *what)
{
  fprintf(stderr, "aksum: %s\nTry 'aksum --help' for more information.\n", what);
  return 2;
}

/* b2sum's -l: bits, a multiple of 8 up to 512; 0 means 512. */
static int parse_length(const char *arg, size_t *bytes)
{
  char *end;
  errno = 0;
  unsigned long long bits = strtoull(arg, &end, 10);
  if (errno || end == arg || *end || *arg == '-' || *arg == '+') {
    fprintf(stderr, "aksum: invalid length: '%s'\n", arg);
    return 2;
  }
  if (bits > 512) {
    fprintf(stderr, "aksum: invalid length: '%s'\naksum: maximum digest length for 'BLAKE2b' is "
                    "512 bits\n", arg);
    return 2;
  }
  if (bits % 8 != 0) {
    fprintf(stderr, "aksum: invalid length: '%s'\naksum: length is not a multiple of 8\n", arg);
    return 2;
  }
  *bytes = bits == 0 ? 64 : (size_t)(bits / 8);
  return 0;
}

static const struct option long_opts[] = {
    {"recursive", no_argument, NULL, 'r'},
    {"jobs", required_argument, NULL, 'j'},
    {"check", no_argument, NULL, 'c'},
    {"hash", required_argument, NULL, 'a'},
    {"algorithm", required_argument, NULL, 'a'},
    {"tag", no_argument, NULL, OPT_TAG},
    {"zero", no_argument, NULL, 'z'},
    {"length", required_argument, NULL, 'l'},
    {"status", no_argument, NULL, OPT_STATUS},
    {"strict", no_argument, NULL, OPT_STRICT},
    {"warn", no_argument, NULL, 'w'},
    {"ignore-missing", no_argument, NULL, OPT_IGNORE_MISSING},
    {"copy", required_argument, NULL, OPT_COPY},
    {"json", required_argument, NULL, OPT_JSON},
    {"progress", no_argument, NULL, OPT_PROGRESS},
    {"no-progress", no_argument, NULL, OPT_NO_PROGRESS},
    {"quiet", no_argument, NULL, OPT_QUIET},
    {"chunk", required_argument, NULL, OPT_CHUNK},
    {"buffers", required_argument, NULL, OPT_BUFFERS},
    {"verbose", no_argument, NULL, 'v'},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

static bool geometry_given; /* --chunk or --buffers on the command line */

/* Below this a file counts as small for the choice of geometry. */
enum { SMALL_FILE = 64 << 10, SMALL_CHUNK = 64 << 10, SMALL_BUFFERS = 256, SMALL_MAX_OPEN = 256 };

/* The buffers' geometry for the files at hand, unless the command line
 * chose it. 16 chunks of 1 MiB suit files of a MiB and more (a read per
 * MiB, read-ahead for the big ones), but each file in flight holds a
 * chunk, so no more than 16 files of a tree of small ones are read at
 * once, and the ring's batches and the pool's tasks stay small. When most
 * files are small (the walk's sizes), the same 16 MiB is 256 chunks of
 * 64 KiB and up to 256 files are open at once. */
static void choose_geometry(aks_run *run)
{
  aks_opts *o = &run->opts;
  size_t small = 0, sized = 0; /* of the files whose size is known (walk.c) */
  for (size_t i = 0; i < run->n; i++) {
    if (run->items[i].size_hint < 0)
      continue;
    sized++;
    if (run->items[i].size_hint < SMALL_FILE)
      small++;
  }
  if (!geometry_given && small > 0 && small * 2 > sized) {
    o->chunk = SMALL_CHUNK;
    o->buffers = SMALL_BUFFERS;
    o->max_open = SMALL_MAX_OPEN;
  }
}

static int parse_args(aks_run *run, int argc, char **argv)
{
  aks_opts *o = &run->opts;
  o->algo = aks_algo_get(AKS_SHA256);
  o->chunk = 1 << 20;
  o->buffers = 16;
  int c;
  uint64_t v;
  size_t length = 0; /* -l: bytes, 0 if not given */
  while ((c = getopt_long(argc, argv, "rj:ca:whvzl:", long_opts, NULL)) != -1) {
    switch (c) {
    case 'v':
      o->verbose = true;
      break;
    case 'r':
      o->recursive = true;
      break;
    case 'j':
      if (!parse_size(optarg, 1, 1024, &v))
        return usage_error("-j needs a number of threads from 1 to 1024, not '%s'", optarg);
      o->jobs = (unsigned)v;
      break;
    case 'c':
      o->check = true;
      break;
    case 'z':
      o->zero = true;
      break;
    case 'l': {
      int rc = parse_length(optarg, &length);
      if (rc)
        return rc;
      break;
    }
    case 'a':
      o->algo = aks_algo_by_name(optarg);
      if (!o->algo)
        return usage_error("--hash: unknown hash '%s' (md5, sha1, sha224, sha256, sha384, "
                           "sha512, blake2b, xxh3)",
                           optarg);
      if (!aks_algo_prepare(o->algo))
        return usage_error("--hash %s: not available (built without libxxhash, or libcrypto "
                           "lacks it)",
                           optarg);
      break;
    case OPT_TAG:
      o->tag = true;
      break;
    /* --status, --warn and --quiet: the last one given wins, as in
     * sha256sum (each turns the other two off). */
    case OPT_STATUS:
      o->status = true;
      o->warn = o->quiet = false;
      break;
    case OPT_STRICT:
      o->strict = true;
      break;
    case 'w':
      o->warn = true;
      o->status = o->quiet = false;
      break;
    case OPT_IGNORE_MISSING:
      o->ignore_missing = true;
      break;
    case OPT_COPY:
      o->copy_dest = optarg;
      break;
    case OPT_JSON:
      o->json_path = optarg;
      break;
    case OPT_PROGRESS:
      o->progress = AKS_PROGRESS_ALWAYS;
      break;
    case OPT_NO_PROGRESS:
      o->progress = AKS_PROGRESS_NEVER;
      break;
    case OPT_QUIET:
      o->quiet = true;
      o->status = o->warn = false;
      break;
    case OPT_CHUNK:
      if (!parse_size(optarg, 4096, 1 << 30, &v))
        return usage_error("--chunk needs a size from 4K to 1G, not '%s'", optarg);
      o->chunk = (size_t)v;
      geometry_given = true;
      break;
    case OPT_BUFFERS:
      if (!parse_size(optarg, 2, 4096, &v))
        return usage_error("--buffers needs a count from 2 to 4096, not '%s'", optarg);
      o->buffers = (unsigned)v;
      geometry_given = true;
      break;
    case 'h':
      usage(stdout);
      exit(0);
    default:
      fputs("Try 'aksum --help'.\n", stderr);
      return 2;
    }
  }
  /* -c is a mode, as in sha256sum: "aksum -c --strict LIST" and
   * "aksum --strict -c LIST" both check LIST (none: stdin); the operands
   * are all lists, checked one after the other. sha256sum's own words for
   * what it refuses too. */
  if (o->check && o->zero)
    return usage_coreutils("the --zero option is not supported when verifying checksums");
  if (o->check && o->tag)
    return usage_coreutils("the --tag option is meaningless when verifying checksums");
  if (o->check && (o->copy_dest || o->recursive))
    return usage_error("%s cannot be combined with -c", o->copy_dest ? "--copy" : "-r");
  static const char *const check_only[] = {"--ignore-missing", "--status", "--warn", "--quiet",
                                           "--strict"}; /* sha256sum's order of complaints */
  bool given[] = {o->ignore_missing, o->status, o->warn, o->quiet, o->strict};
  for (size_t i = 0; i < sizeof(given) / sizeof(given[0]) && !o->check; i++) {
    if (given[i]) {
      char msg[96];
      snprintf(msg, sizeof(msg), "the %s option is meaningful only when verifying checksums",
               check_only[i]);
      return usage_coreutils(msg);
    }
  }
  o->digest_len = o->algo->digest_len;
  if (length) {
    if (o->algo != aks_algo_get(AKS_BLAKE2B))
      return usage_error("-l/--length is for BLAKE2b only (-a blake2b), not %s", o->algo->name);
    /* as b2sum: -l is the output's length; -c takes each line's own */
    o->digest_len = length;
  }
  if (o->jobs == 0) {
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    o->jobs = cpus > 0 ? (unsigned)cpus : 1;
  }
  o->max_open = o->buffers * 2 < 64 ? o->buffers * 2 : 64;
  return 0;
}

int main(int argc, char **argv)
{
  static aks_run run;
  /* Before anything else takes a descriptor (docs/aksum.md). */
  unsigned closed = aks_guard_std_fds();
  run.opts.stdin_closed = closed & 1;
  run.opts.stdout_closed = closed & 2;
  aks_algo_init();
  atexit(aks_algo_cleanup);
  int rc = parse_args(&run, argc, argv);
  if (rc)
    return rc;
  if (!aks_algo_prepare(run.opts.algo)) { /* the default; -a prepared its own */
    fprintf(stderr, "aksum: %s: not available (libcrypto lacks it)\n", run.opts.algo->name);
    return 2;
  }
  if (run.opts.check) {
    rc = aks_check_load(&run, argv + optind, (size_t)(argc - optind));
    if (rc < 0) {
      fprintf(stderr, "aksum: %s\n", strerror(-rc));
      aks_run_free(&run);
      return 1;
    }
  } else {
    rc = aks_walk(&run, argv + optind, (size_t)(argc - optind));
    if (rc < 0) {
      fprintf(stderr, "aksum: %s\n", strerror(-rc));
      aks_run_free(&run);
      return 1;
    }
    if (run.opts.copy_dest) {
      for (size_t i = 0; i < run.n; i++)
        if (run.items[i].is_stdin) {
          aks_run_free(&run);
          return usage_error("--copy: %s: standard input cannot be copied", "-");
        }
      if (aks_copy_plan(&run) < 0) {
        fprintf(stderr, "aksum: %s\n", strerror(ENOMEM));
        aks_run_free(&run);
        return 1;
      }
    }
  }
  choose_geometry(&run);
  /* BLAKE2b of another length than 512 bits (-l, or lines of a -c list
   * that say so) comes from blake2b.c. */
  for (size_t i = 0; i < run.n && run.opts.algo == aks_algo_get(AKS_BLAKE2B); i++)
    if (run.items[i].digest_len != run.opts.algo->digest_len) {
      aks_algo_blake2b_any_length();
      break;
    }
  rc = aks_pipeline_run(&run);
  if (rc < 0) {
    aks_run_free(&run);
    return 1;
  }
  aks_print_summary(&run);
  bool bad = run.failed > 0 || run.mismatched > 0;
  if (run.opts.check && aks_check_failed(&run))
    bad = true;
  int out_err = aks_out_flush();
  if (run.opts.json_path && aks_write_json(&run) < 0)
    bad = true;
  /* stdout was closed and went to /dev/null: had anything been printed,
   * it would have failed as sha256sum's write does. */
  bool printed =
      run.ok + run.failed + run.mismatched > 0 && !(run.opts.check && run.opts.status);
  if (run.opts.stdout_closed && printed) {
    fprintf(stderr, "aksum: write error: %s\n", strerror(EBADF));
    bad = true;
  } else if (out_err < 0 || fflush(stdout) != 0 || ferror(stdout)) {
    fprintf(stderr, "aksum: standard output: %s\n", strerror(out_err < 0 ? -out_err : errno));
    bad = true;
  }
  aks_out_free();
  aks_run_free(&run);
  return bad ? 1 : 0;
}
