/* main.c: akget's command line: options, the URL list (arguments and -i
 * files, with an optional checksum per line), --shard, file names, and the
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
        "  -i FILE            read URLs from FILE (- for stdin), one per line,\n"
        "                     optionally followed by sha-256=HEX\n"
        "  -d DIR             save into DIR (made if missing)\n"
        "  -o FILE            save the one URL as FILE\n"
        "  -j N               downloads at once (16)\n"
        "  -x N               connections per host (16)\n"
        "  -s N               segments per file by Range (1; at most 32)\n"
        "  --min-segment SIZE smallest segment (4M)\n"
        "  -c                 resume from a partial file, keep it on failure\n"
        "  -N, --timestamping an existing file is fetched only if changed (304)\n"
        "  --no-remote-time   do not give files the server's Last-Modified\n"
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

/* FNV-1a: the shard of a URL, the same on every machine. */
static uint64_t url_hash(const char *s)
{
  uint64_t h = 1469598103934665603u;
  for (; *s; s++) {
    h ^= (unsigned char)*s;
    h *= 1099511628211u;
  }
  return h;
}

typedef struct list {
  akg_item *items;
  size_t n, cap;
} list;

static int add_url(list *l, const char *url, const char *checksum)
{
  if (l->n == l->cap) {
    size_t cap = l->cap ? l->cap * 2 : 64;
    akg_item *g = realloc(l->items, cap * sizeof *g);
    if (!g)
      return -ENOMEM;
    l->items = g;
    l->cap = cap;
  }
  akg_item *it = &l->items[l->n];
  memset(it, 0, sizeof *it);
  it->total = -1;
  it->url = strdup(url);
  if (!it->url)
    return -ENOMEM;
  if (checksum) {
    if (akg_parse_checksum(checksum, it->sha256) < 0) {
      free(it->url);
      return -EINVAL;
    }
    it->has_checksum = true;
  }
  l->n++;
  return 0;
}

/* Lines "URL [sha-256=HEX]"; blank lines and # comments skipped. */
static int read_list(list *l, const char *path)
{
  FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "r");
  if (!f)
    return -errno;
  char *line = NULL;
  size_t cap = 0;
  int rc = 0;
  while (rc == 0 && getline(&line, &cap, f) > 0) {
    char *s = line;
    while (isspace((unsigned char)*s))
      s++;
    if (!*s || *s == '#')
      continue;
    char *url = strtok(s, " \t\r\n");
    char *sum = strtok(NULL, " \t\r\n");
    rc = add_url(l, url, sum);
  }
  free(line);
  if (f != stdin)
    fclose(f);
  return rc;
}

static int hexval(int c)
{
  return isdigit(c) ? c - '0' : tolower(c) - 'a' + 10;
}

/* The file name a URL saves as: its last path segment, percent-decoded,
 * made safe; "index.html" when there is none. */
static char *name_for(const char *url)
{
  ak_url *u;
  if (ak_url_parse(url, &u) < 0)
    return strdup("index.html");
  const char *t = u->target;
  size_t end = strcspn(t, "?");
  size_t start = end;
  while (start > 0 && t[start - 1] != '/')
    start--;
  char *name = malloc(end - start + 16);
  size_t o = 0;
  for (size_t i = start; name && i < end; i++) {
    char c = t[i];
    if (c == '%' && i + 2 < end && isxdigit((unsigned char)t[i + 1]) &&
        isxdigit((unsigned char)t[i + 2])) {
      c = (char)(hexval(t[i + 1]) * 16 + hexval(t[i + 2]));
      i += 2;
    }
    name[o++] = c == '/' || c == '\0' ? '_' : c;
  }
  if (name) {
    name[o] = '\0';
    if (o == 0 || strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
      strcpy(name, "index.html");
  }
  ak_url_free(u);
  return name;
}

static char *join(const char *dir, const char *name)
{
  size_t n = (dir ? strlen(dir) + 1 : 0) + strlen(name) + 1;
  char *p = malloc(n);
  if (p)
    snprintf(p, n, "%s%s%s", dir ? dir : "", dir ? "/" : "", name);
  return p;
}

static int mkdir_p(const char *dir)
{
  char *p = strdup(dir);
  if (!p)
    return -ENOMEM;
  for (char *s = p + 1; *s; s++) {
    if (*s == '/') {
      *s = '\0';
      if (mkdir(p, 0755) < 0 && errno != EEXIST) {
        free(p);
        return -errno;
      }
      *s = '/';
    }
  }
  int rc = mkdir(p, 0755) < 0 && errno != EEXIST ? -errno : 0;
  free(p);
  return rc;
}

/* The paths named so far: an open-addressing set (linear probing, at most
 * half full), so naming n items costs O(n), not the O(n^2) of comparing
 * each with every earlier one (10,000 URLs: 50 million strcmp, a fifth of
 * akget's CPU on 16 KiB files). */
typedef struct path_set {
  const char **slot;
  size_t cap; /* a power of two */
} path_set;

static bool path_set_has(const path_set *s, const char *p)
{
  for (size_t i = url_hash(p) & (s->cap - 1); s->slot[i]; i = (i + 1) & (s->cap - 1))
    if (strcmp(s->slot[i], p) == 0)
      return true;
  return false;
}

static void path_set_add(path_set *s, const char *p)
{
  size_t i = url_hash(p) & (s->cap - 1);
  while (s->slot[i])
    i = (i + 1) & (s->cap - 1);
  s->slot[i] = p;
}

/* Names every item: -o, or DIR/name with ".1", ".2"... for repeats. */
static int assign_paths(akg_item *items, size_t n, const akg_opts *o)
{
  path_set seen = {NULL, 16};
  while (seen.cap < 2 * n)
    seen.cap *= 2;
  seen.slot = calloc(seen.cap, sizeof *seen.slot);
  if (!seen.slot)
    return -ENOMEM;
  int rc = 0;
  for (size_t i = 0; i < n && rc == 0; i++) {
    char *name = o->output ? strdup(o->output) : name_for(items[i].url);
    char *path = !name ? NULL : o->output ? name : join(o->dir, name);
    if (path != name)
      free(name);
    if (!path) {
      rc = -ENOMEM;
      break;
    }
    /* A clash with an earlier name (or an earlier alternative) takes the
     * next free number. */
    for (unsigned k = 1; path && path_set_has(&seen, path); k++) {
      size_t len = strlen(path) + 16;
      char *alt = malloc(len);
      if (alt) {
        int cut = k == 1 ? (int)strlen(path) : (int)(strrchr(path, '.') - path);
        snprintf(alt, len, "%.*s.%u", cut, path, k);
      }
      free(path);
      path = alt;
    }
    if (!path) {
      rc = -ENOMEM;
      break;
    }
    items[i].path = path;
    path_set_add(&seen, path);
    items[i].tmp = malloc(strlen(path) + 16);
    if (!items[i].tmp)
      rc = -ENOMEM;
    else
      sprintf(items[i].tmp, "%s.akget-part", path);
  }
  free(seen.slot);
  return rc;
}

enum {
  OPT_MIN_SEGMENT = 256, OPT_RETRIES, OPT_RETRY_WAIT, OPT_CONNECT_TIMEOUT, OPT_TIMEOUT,
  OPT_MAX_TIME, OPT_CACERT, OPT_CHECKSUM, OPT_JSON, OPT_THREADS, OPT_SHARD, OPT_VERSION,
  OPT_LIMIT_RATE, OPT_COMPRESSED, OPT_MAX_FILESIZE, OPT_PROXY, OPT_NOPROXY, OPT_NETRC,
  OPT_NETRC_FILE, OPT_LOCATION_TRUSTED, OPT_NO_REMOTE_TIME, OPT_CHECKSUMS,
  OPT_CONTENT_DISPOSITION,
};

static const struct option long_opts[] = {
    {"help", no_argument, NULL, 'h'},
    {"min-segment", required_argument, NULL, OPT_MIN_SEGMENT},
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
static list urls;
static const char **header_lines;
static akg_sumlist *sums; /* --checksums */

static void free_all(void)
{
  for (size_t i = 0; i < urls.n; i++) {
    free(urls.items[i].url);
    free(urls.items[i].path);
    free(urls.items[i].tmp);
    free(urls.items[i].detail);
    free(urls.items[i].userpwd);
  }
  free(urls.items);
  free(header_lines);
  akg_sums_free(sums);
}

int main(int argc, char **argv)
{
  akg_opts o = {.jobs = 16, .conns_per_host = 16, .segments = 1, .retries = 3,
                .min_segment = 4 << 20};
  atexit(free_all);
  const char *lists[64];
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
    case OPT_MIN_SEGMENT: if (!parse_size(optarg, &o.min_segment)) return die_usage("bad --min-segment '%s'", optarg); break;
    case 'c': o.resume = true; break;
    case 'N': o.timestamping = true; break;
    case OPT_NO_REMOTE_TIME: o.no_remote_time = true; break;
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
  for (int i = optind; i < argc; i++)
    if (add_url(&urls, argv[i], NULL) < 0)
      return die_usage("out of memory%s", "");
  for (size_t i = 0; i < nlists; i++) {
    int rc = read_list(&urls, lists[i]);
    if (rc == -EINVAL)
      return die_usage("%s: a checksum is not sha-256=HEX", lists[i]);
    if (rc < 0) {
      fprintf(stderr, "akget: %s: %s\n", lists[i], strerror(-rc));
      return AKG_EXIT_LOCAL_IO;
    }
  }
  if (urls.n == 0)
    return die_usage("no URL given%s", "");
  if (o.output && urls.n > 1)
    return die_usage("-o takes one URL, %s", "not several (use -d)");
  if (checksum) {
    if (urls.n != 1)
      return die_usage("--checksum takes one URL; %s", "put sums in the -i list for several");
    if (akg_parse_checksum(checksum, urls.items[0].sha256) < 0)
      return die_usage("bad --checksum '%s' (want sha-256=64 hex digits)", checksum);
    urls.items[0].has_checksum = true;
  }
  if (shard_n) {
    size_t k = 0;
    for (size_t i = 0; i < urls.n; i++) {
      if (url_hash(urls.items[i].url) % shard_n == shard_k - 1)
        urls.items[k++] = urls.items[i];
      else
        free(urls.items[i].url);
    }
    urls.n = k;
  }
  int crc = akg_credentials_prepare(&o, urls.items, urls.n);
  if (crc == -ENOMEM)
    return die_usage("out of memory%s", "");
  if (crc)
    return crc;
  int bad_url_exit = 0;
  for (size_t i = 0; i < urls.n; i++) {
    ak_url *u = NULL;
    int rc = ak_url_parse(urls.items[i].url, &u);
    if (rc < 0) {
      fprintf(stderr, "akget: %s: %s\n", urls.items[i].url, ak_strerror(rc));
      bad_url_exit = AKG_EXIT_USAGE;
    }
    ak_url_free(u);
  }
  if (bad_url_exit)
    return bad_url_exit;
  /* --checksums: read (or fetched) whole before anything starts; a list
   * that does not parse stops the run here. */
  if (checksums) {
    int src = akg_sums_load(&o, checksums, &sums);
    if (src)
      return src;
    o.checksums = sums;
  }
  if (o.dir) {
    int rc = mkdir_p(o.dir);
    if (rc < 0) {
      fprintf(stderr, "akget: -d %s: %s\n", o.dir, strerror(-rc));
      return AKG_EXIT_LOCAL_IO;
    }
  }
  if (assign_paths(urls.items, urls.n, &o) < 0) {
    fprintf(stderr, "akget: out of memory\n");
    return AKG_EXIT_LOCAL_IO;
  }
  o.progress_tty = !o.quiet && isatty(2);
  signal(SIGPIPE, SIG_IGN);
  /* Said on every use, -q or not: nothing of an https download is checked. */
  if (o.insecure)
    fprintf(stderr, "akget: warning: -k: TLS certificates and host names are NOT verified\n");

  akg_run run = {.opts = &o, .items = urls.items, .count = urls.n, .start_ns = ak_now_ns()};
  pthread_mutex_init(&run.out_lock, NULL);
  int rc = akg_run_all(&run);
  if (rc < 0)
    fprintf(stderr, "akget: cannot run: %s\n", ak_strerror(rc));
  int worst = rc < 0 ? AKG_EXIT_NETWORK : 0;
  for (size_t i = 0; i < urls.n; i++) {
    akg_item *it = &urls.items[i];
    if (it->state != AKG_DONE && it->exit_code == 0)
      it->exit_code = AKG_EXIT_NETWORK; /* never started: the loop could not run */
    if (it->exit_code > worst)
      worst = it->exit_code;
  }
  akg_progress_summary(&run);
  if (o.json_path) {
    int jr = akg_report_json(&run, o.json_path, worst);
    if (jr < 0) {
      fprintf(stderr, "akget: --json %s: %s\n", o.json_path, strerror(-jr));
      if (worst < AKG_EXIT_LOCAL_IO)
        worst = AKG_EXIT_LOCAL_IO;
    }
  }
  akg_checksum_shutdown();
  return worst;
}
