/* main.c: akget's command line: options, the sources of URLs (arguments,
 * -i lists opened here and read by feed.c as the downloads go), and the
 * exit status (the worst over all URLs; docs/akget.md). */
#include "akget.h"

#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

static void usage(FILE *f)
{
  fputs("usage: akget [options] URL...\n"
        "  -i FILE            read URLs from FILE (- for stdin) as the downloads go: a URL\n"
        "                     per line [sha-256=HEX], then indented out=, dir=,\n"
        "                     checksum=, header= lines for it (aria2's input file)\n"
        "  -d DIR             save into DIR (made if missing)\n"
        "  -o FILE            save the one URL as FILE\n"
        "  -j N               downloads at once (16)\n"
        "  -x N               connections per host (16)\n"
        "  -s N               segments per file by Range (1; at most 32), added one at a\n"
        "                     time while each raises the rate\n"
        "  --all-segments     start the -s segments at once\n"
        "  --min-segment SIZE smallest segment (4M)\n"
        "  -c                 resume from a partial file, keep it on failure\n"
        "  -N, --timestamping an existing file is fetched only if changed (304)\n"
        "  --no-remote-time   do not give files the server's Last-Modified\n"
        "  --enable-http-pipelining[=true|false|DEPTH]  -N: write up to DEPTH (8;\n"
        "                     at most 32) conditional HEADs at once on one connection\n"
        "  --retries N        retries per request (3), backoff with jitter, Retry-After\n"
        "  --retry-wait SECS  first backoff (0.5), doubling up to 30\n"
        "  --connect-timeout SECS  (30)   --timeout SECS  idle (60)\n"
        "  --max-time SECS    each download, retries and waits included (none)\n"
        "  -H 'Name: value'   extra request header     -A AGENT  User-Agent\n"
        "  --cacert FILE      CA bundle for https   -k, --insecure  skip verification\n"
        "  --checksum sha-256=HEX   verify the one URL's file\n"
        "  --checksums FILE|URL  verify every file named (under -d) in a sha256sum-style\n"
        "                     list (md5, sha1, sha224-512; BSD tag form too)\n"
        "  --content-disposition  name files as the server's Content-Disposition says\n"
        "  --json FILE|-      a summary in JSON\n"
        "  --threads N        loops (threads), connections spread over them (1)\n"
        "  --limit-rate RATE  bytes per second over the whole run (e.g. 500k, 2M)\n"
        "  --compressed       ask for gzip/deflate and save the decoded file\n"
        "  --max-filesize SIZE  fail a file larger than SIZE (decoded bytes too)\n"
        "  --shard K/N        only URLs whose hash falls in shard K of N (1..N)\n"
        "  --proxy URL        [http|socks5|socks5h://][user:pass@]host[:port] for every\n"
        "                     URL (\"\": none); default: http_proxy, https_proxy,\n"
        "                     all_proxy (curl's variables)\n"
        "  --noproxy LIST     hosts, *, IPs, CIDR ranges, :ports reached directly\n"
        "  -u, --user U:P     Basic credentials for the URLs' own hosts\n"
        "  --netrc  --netrc-file FILE   credentials by host from ~/.netrc or FILE\n"
        "  --location-trusted keep credentials and cookies on redirects to other hosts\n"
        "  -4, -6             IPv4 or IPv6 only (default: both, raced as RFC 8305 says)\n"
        "  -q  -v             quiet (failures only), verbose\n"
        "exit: 0 ok, 2 usage, 3 local IO, 4 network, 5 TLS, 6 checksum,\n"
        "      7 protocol, 8 HTTP status >= 400, 9 proxy (the worst URL decides)\n",
        f);
}

static int die_usage(const char *fmt, const char *arg)
{
  fprintf(stderr, "akget: ");
  fprintf(stderr, fmt, arg);
  fprintf(stderr, " (akget -h for help)\n");
  return AKG_EXIT_USAGE;
}

static bool parse_uint(const char *s, unsigned lo, unsigned hi, unsigned *out)
{
  char *end;
  errno = 0;
  unsigned long v = strtoul(s, &end, 10);
  if (errno || end == s || *end || v < lo || v > hi)
    return false;
  *out = (unsigned)v;
  return true;
}

static bool parse_seconds(const char *s, int64_t *out)
{
  char *end;
  double v = strtod(s, &end);
  if (end == s || *end || v < 0 || v > 1e6)
    return false;
  *out = (int64_t)(v * 1e9);
  if (*out == 0)
    *out = 1; /* 0 would mean "the default" to the library */
  return true;
}

static bool parse_size(const char *s, int64_t *out)
{
  char *end;
  double v = strtod(s, &end);
  if (end == s || v <= 0)
    return false;
  double m = 1;
  switch (toupper((unsigned char)*end)) {
  case 0: break;
  case 'K': m = 1024; end++; break;
  case 'M': m = 1024 * 1024; end++; break;
  case 'G': m = 1024.0 * 1024 * 1024; end++; break;
  default: return false;
  }
  if (*end == 'i' || *end == 'B')
    end++;
  if (*end)
    return false;
  *out = (int64_t)(v * m);
  return true;
}

enum {
  OPT_MIN_SEGMENT = 256, OPT_ALL_SEGMENTS, OPT_RETRIES, OPT_RETRY_WAIT, OPT_CONNECT_TIMEOUT, OPT_TIMEOUT,
  OPT_MAX_TIME, OPT_CACERT, OPT_CHECKSUM, OPT_JSON, OPT_THREADS, OPT_SHARD, OPT_VERSION,
  OPT_LIMIT_RATE, OPT_COMPRESSED, OPT_MAX_FILESIZE, OPT_PROXY, OPT_NOPROXY, OPT_NETRC,
  OPT_NETRC_FILE, OPT_LOCATION_TRUSTED, OPT_NO_REMOTE_TIME, OPT_CHECKSUMS,
  OPT_CONTENT_DISPOSITION, OPT_PIPELINING,
};

static const struct option long_opts[] = {
    {"help", no_argument, NULL, 'h'},
    {"min-segment", required_argument, NULL, OPT_MIN_SEGMENT},
    {"all-segments", no_argument, NULL, OPT_ALL_SEGMENTS},
    {"retries", required_argument, NULL, OPT_RETRIES},
    {"retry-wait", required_argument, NULL, OPT_RETRY_WAIT},
    {"connect-timeout", required_argument, NULL, OPT_CONNECT_TIMEOUT},
    {"timeout", required_argument, NULL, OPT_TIMEOUT},
    {"max-time", required_argument, NULL, OPT_MAX_TIME},
    {"cacert", required_argument, NULL, OPT_CACERT},
    {"insecure", no_argument, NULL, 'k'},
    {"checksum", required_argument, NULL, OPT_CHECKSUM},
    {"checksums", required_argument, NULL, OPT_CHECKSUMS},
    {"content-disposition", no_argument, NULL, OPT_CONTENT_DISPOSITION},
    {"json", required_argument, NULL, OPT_JSON},
    {"threads", required_argument, NULL, OPT_THREADS},
    {"shard", required_argument, NULL, OPT_SHARD},
    {"limit-rate", required_argument, NULL, OPT_LIMIT_RATE},
    {"compressed", no_argument, NULL, OPT_COMPRESSED},
    {"max-filesize", required_argument, NULL, OPT_MAX_FILESIZE},
    {"continue", no_argument, NULL, 'c'},
    {"timestamping", no_argument, NULL, 'N'},
    {"no-remote-time", no_argument, NULL, OPT_NO_REMOTE_TIME},
    {"enable-http-pipelining", optional_argument, NULL, OPT_PIPELINING},
    {"quiet", no_argument, NULL, 'q'},
    {"verbose", no_argument, NULL, 'v'},
    {"header", required_argument, NULL, 'H'},
    {"user-agent", required_argument, NULL, 'A'},
    {"version", no_argument, NULL, OPT_VERSION},
    {"proxy", required_argument, NULL, OPT_PROXY},
    {"noproxy", required_argument, NULL, OPT_NOPROXY},
    {"user", required_argument, NULL, 'u'},
    {"netrc", no_argument, NULL, OPT_NETRC},
    {"netrc-file", required_argument, NULL, OPT_NETRC_FILE},
    {"location-trusted", no_argument, NULL, OPT_LOCATION_TRUSTED},
    {"ipv4", no_argument, NULL, '4'},
    {"ipv6", no_argument, NULL, '6'},
    {NULL, 0, NULL, 0},
};

/* What main allocates, freed at exit on every path (usage errors return
 * from the middle of the option loop). */
static const char **header_lines;
static akg_list_reader *readers[64];
static akg_sumlist *sums; /* --checksums */

static akg_run run; /* static: a reader left in a read (akg_feed_finish) may still use it */

static void free_all(void)
{
  if (run.reader_left)
    return; /* it may still read them; the process is ending */
  free(header_lines);
  akg_sums_free(sums);
}

/* The lists are opened before anything starts: a missing one is exit 3
 * before the first download, not in the middle of the run. */
static int open_lists(const char **names, size_t n)
{
  for (size_t i = 0; i < n; i++) {
    int rc = akg_list_open(names[i], &readers[i]);
    if (rc < 0) {
      fprintf(stderr, "akget: %s: %s\n", names[i], strerror(-rc));
      while (i-- > 0)
        akg_list_close(readers[i]);
      return AKG_EXIT_LOCAL_IO;
    }
  }
  return 0;
}

int main(int argc, char **argv)
{
  /* Static, as what the list reader reads: one left in a read
   * (akg_feed_finish) may outlive main's return. */
  static akg_opts o = {.jobs = 16, .conns_per_host = 16, .segments = 1, .retries = 3,
                       .min_segment = 4 << 20};
  atexit(free_all);
  static const char *lists[64];
  size_t nlists = 0;
  const char *checksum = NULL, *checksums = NULL;
  unsigned shard_k = 0, shard_n = 0;
  const char *opt_proxy = NULL, *opt_noproxy = NULL;
  const char **headers = header_lines = calloc((size_t)argc, sizeof *headers);
  int c;
  while ((c = getopt_long(argc, argv, "hi:d:o:j:x:s:cNH:A:kqvu:46", long_opts, NULL)) != -1) {
    switch (c) {
    case 'h': usage(stdout); return 0;
    case OPT_VERSION: printf("akget (asynckit %s)\n", ak_version_string()); return 0;
    case 'i':
      if (nlists == 64)
        return die_usage("too many -i%s", "");
      lists[nlists++] = optarg;
      break;
    case 'd': o.dir = optarg; break;
    case 'o': o.output = optarg; break;
    case 'j': if (!parse_uint(optarg, 1, 10000, &o.jobs)) return die_usage("bad -j '%s'", optarg); break;
    case 'x': if (!parse_uint(optarg, 1, 10000, &o.conns_per_host)) return die_usage("bad -x '%s'", optarg); break;
    case 's': if (!parse_uint(optarg, 1, AKG_MAX_SEGMENTS, &o.segments)) return die_usage("bad -s '%s' (1..32)", optarg); break;
    case OPT_ALL_SEGMENTS: o.all_segments = true; break;
    case OPT_MIN_SEGMENT: if (!parse_size(optarg, &o.min_segment)) return die_usage("bad --min-segment '%s'", optarg); break;
    case 'c': o.resume = true; break;
    case 'N': o.timestamping = true; break;
    case OPT_NO_REMOTE_TIME: o.no_remote_time = true; break;
    case OPT_PIPELINING:
      /* aria2's flag, with its true/false, or a depth */
      if (!optarg || strcmp(optarg, "true") == 0)
        o.pipelining = AKG_PIPELINE_DEPTH;
      else if (strcmp(optarg, "false") == 0)
        o.pipelining = 0;
      else if (!parse_uint(optarg, 1, AK_HTTP_PIPELINE_MAX, &o.pipelining))
        return die_usage("bad --enable-http-pipelining '%s' (true, false or 1..32)", optarg);
      break;
    case OPT_RETRIES: if (!parse_uint(optarg, 0, 100, &o.retries)) return die_usage("bad --retries '%s'", optarg); break;
    case OPT_RETRY_WAIT: if (!parse_seconds(optarg, &o.retry_base_ns)) return die_usage("bad --retry-wait '%s'", optarg); break;
    case OPT_CONNECT_TIMEOUT: if (!parse_seconds(optarg, &o.connect_timeout_ns)) return die_usage("bad --connect-timeout '%s'", optarg); break;
    case OPT_TIMEOUT: if (!parse_seconds(optarg, &o.idle_timeout_ns)) return die_usage("bad --timeout '%s'", optarg); break;
    case OPT_MAX_TIME: if (!parse_seconds(optarg, &o.max_time_ns)) return die_usage("bad --max-time '%s'", optarg); break;
    case 'H':
      if (!strchr(optarg, ':') || strpbrk(optarg, "\r\n"))
        return die_usage("bad header '%s' (want 'Name: value')", optarg);
      headers[o.header_count++] = optarg;
      break;
    case 'A': o.user_agent = optarg; break;
    case OPT_CACERT: o.cacert = optarg; break;
    case 'k': o.insecure = true; break;
    case OPT_CHECKSUM: checksum = optarg; break;
    case OPT_CHECKSUMS: checksums = optarg; break;
    case OPT_CONTENT_DISPOSITION: o.content_disposition = true; break;
    case OPT_JSON: o.json_path = optarg; break;
    case OPT_THREADS: if (!parse_uint(optarg, 1, 64, &o.threads)) return die_usage("bad --threads '%s'", optarg); break;
    case OPT_SHARD:
      if (sscanf(optarg, "%u/%u", &shard_k, &shard_n) != 2 || shard_n == 0 || shard_k < 1 ||
          shard_k > shard_n)
        return die_usage("bad --shard '%s' (want K/N, 1 <= K <= N)", optarg);
      break;
    case OPT_LIMIT_RATE: if (!parse_size(optarg, &o.limit_rate)) return die_usage("bad --limit-rate '%s'", optarg); break;
    case OPT_COMPRESSED: o.compressed = true; break;
    case OPT_MAX_FILESIZE: if (!parse_size(optarg, &o.max_filesize)) return die_usage("bad --max-filesize '%s'", optarg); break;
    case '4': o.ip_family = AF_INET; break;
    case '6': o.ip_family = AF_INET6; break;
    case OPT_PROXY: opt_proxy = optarg; break;
    case OPT_NOPROXY: opt_noproxy = optarg; break;
    case 'u':
      if (strpbrk(optarg, "\r\n"))
        return die_usage("bad --user%s", "");
      o.userpwd = optarg;
      break;
    case OPT_NETRC: o.netrc = true; break;
    case OPT_NETRC_FILE: o.netrc = true; o.netrc_file = optarg; break;
    case OPT_LOCATION_TRUSTED: o.location_trusted = true; break;
    case 'q': o.quiet = true; break;
    case 'v': o.verbose = true; break;
    default: usage(stderr); return AKG_EXIT_USAGE;
    }
  }
  o.headers = headers;
  /* Proxy settings first: a bad variable stops the run before any URL. */
  int prc = akg_proxy_setup(&o, opt_proxy, opt_noproxy);
  if (prc)
    return prc;
  size_t nurls = (size_t)(argc - optind);
  if (nurls == 0 && nlists == 0)
    return die_usage("no URL given%s", "");
  if (o.output && (nurls != 1 || nlists))
    return die_usage("-o takes one URL, %s", "not several or a list (use -d)");
  static unsigned char sum[32]; /* the reader's, as o */
  if (checksum) {
    if (nurls != 1 || nlists)
      return die_usage("--checksum takes one URL; %s", "put sums in the -i list for several");
    if (akg_parse_checksum(checksum, sum) < 0)
      return die_usage("bad --checksum '%s' (want sha-256=64 hex digits)", checksum);
  }
  /* Command-line URLs are checked before anything starts (a list's are
   * checked as it is read: feed.c). */
  for (size_t i = 0; i < nurls; i++) {
    ak_url *u = NULL;
    int rc = ak_url_parse(argv[optind + i], &u);
    ak_url_free(u);
    if (rc == -ENOMEM) /* the command line was right: exit 3 (errors.c) */
      return akg_exit_code(-ENOMEM, 0);
    if (rc < 0) {
      fprintf(stderr, "akget: %s: %s\n", argv[optind + i], ak_strerror(rc));
      return AKG_EXIT_USAGE;
    }
  }
  /* --checksums: read (or fetched) whole before anything starts; a list
   * that does not parse stops the run here. */
  if (checksums) {
    int src = akg_sums_load(&o, checksums, &sums);
    if (src)
      return src;
    o.checksums = sums;
  }
  if (o.dir) {
    int rc = akg_mkdir_p(o.dir);
    if (rc < 0) {
      fprintf(stderr, "akget: -d %s: %s\n", o.dir, strerror(-rc));
      return AKG_EXIT_LOCAL_IO;
    }
  }
  int lrc = open_lists(lists, nlists);
  if (lrc)
    return lrc;
  if (o.json_path) {
    int jr = akg_report_open(o.json_path);
    if (jr < 0) {
      fprintf(stderr, "akget: --json %s: %s\n", o.json_path, strerror(-jr));
      return AKG_EXIT_LOCAL_IO;
    }
  }
  o.progress_tty = !o.quiet && isatty(2);
  signal(SIGPIPE, SIG_IGN);
  /* Said on every use, -q or not: nothing of an https download is checked. */
  if (o.insecure)
    fprintf(stderr, "akget: warning: -k: TLS certificates and host names are NOT verified\n");

  akg_run_init(&run, &o);
  akg_sources src = {.urls = argv + optind, .nurls = nurls, .lists = readers,
                     .list_names = lists, .nlists = nlists, .shard_k = shard_k,
                     .shard_n = shard_n, .checksum = checksum ? sum : NULL};
  int frc = akg_feed_start(&run, &src);
  if (frc)
    return frc;
  int rc = akg_run_all(&run);
  if (rc < 0)
    fprintf(stderr, "akget: cannot run: %s\n", ak_strerror(rc));
  int lists_exit = akg_feed_finish(run.feed, rc < 0);
  int worst = atomic_load(&run.worst);
  /* Some never started: the loop could not run (for want of memory: exit
   * 3, as everywhere else). */
  int not_run = rc == -ENOMEM ? akg_exit_code(-ENOMEM, 0) : AKG_EXIT_NETWORK;
  if (rc < 0 && worst < not_run)
    worst = not_run;
  if (lists_exit > worst)
    worst = lists_exit;
  akg_progress_summary(&run);
  if (o.json_path) {
    int jr = akg_report_close(&run, worst);
    if (jr < 0) {
      fprintf(stderr, "akget: --json %s: %s\n", o.json_path, strerror(-jr));
      if (worst < AKG_EXIT_LOCAL_IO)
        worst = AKG_EXIT_LOCAL_IO;
    }
  }
  akg_checksum_shutdown();
  return worst;
}
