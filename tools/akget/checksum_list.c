/* checksum_list.c: --checksums FILE|URL: a published checksum list
 * (SHA256SUMS and its kind) read before anything starts, and the lookup of
 * each finished download's name in it. Lines are split by aksum's parser
 * (tools/aksum/sumline.c, one parser for both tools); the algorithm of each
 * line is its --tag word or the length of its digest (MD5, SHA-1, SHA-224,
 * SHA-256, SHA-384, SHA-512). The list is strict, unlike sha256sum -c's
 * reading: a line that is not a checksum line, a list without one, or one
 * name given two different sums makes the run stop with exit 2 before any
 * download, since a list that does not say what it seems to say would let
 * files through unchecked. A URL is fetched first by a run of its own
 * (same proxies, credentials and TLS options) into a temporary directory.
 *
 * Names are looked up relative to -d (a leading "./" ignored on both
 * sides), in an open-addressing table: lists of millions of lines cost one
 * probe per download. */
#define _GNU_SOURCE
#include "akget.h"
#include "sumline.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The algorithms a line may use: libcrypto's names, the --tag words of
 * the coreutils tools. Untagged, the digest's length decides (BLAKE2b is
 * left out: its 128 digits are SHA-512's). */
static const aks_sumline_algo algos[] = {
    {"MD5", 16, false},    {"SHA1", 20, false},   {"SHA224", 28, false},
    {"SHA256", 32, false}, {"SHA384", 48, false}, {"SHA512", 64, false},
};
static const char *const evp_names[] = {"MD5", "SHA1", "SHA224", "SHA256", "SHA384", "SHA512"};
static const char *const shown_names[] = {"md5", "sha1", "sha224", "sha256", "sha384", "sha512"};

struct akg_sum {
  char *name;                 /* relative to -d, without a leading "./" */
  unsigned algo;              /* index into algos */
  unsigned char digest[64];   /* algos[algo].digest_len bytes */
};

struct akg_sumlist {
  akg_sum *sums;
  size_t n, cap;
  size_t *slot;               /* index + 1 into sums, 0: empty; at most half full */
  size_t slots;               /* a power of two */
};

static const char *skip_dot_slash(const char *s)
{
  while (s[0] == '.' && s[1] == '/') {
    s += 2;
    while (*s == '/')
      s++;
  }
  return s;
}

static size_t *find_slot(const akg_sumlist *l, const char *name)
{
  size_t mask = l->slots - 1;
  for (size_t i = akg_fnv64(name, strlen(name)) & mask;; i = (i + 1) & mask)
    if (l->slot[i] == 0 || strcmp(l->sums[l->slot[i] - 1].name, name) == 0)
      return &l->slot[i];
}

static int grow_index(akg_sumlist *l)
{
  size_t slots = l->slots ? l->slots * 2 : 1024;
  size_t *slot = calloc(slots, sizeof *slot);
  if (!slot)
    return -ENOMEM;
  free(l->slot);
  l->slot = slot;
  l->slots = slots;
  for (size_t k = 0; k < l->n; k++)
    *find_slot(l, l->sums[k].name) = k + 1;
  return 0;
}

static int hexval(int c)
{
  return isdigit(c) ? c - '0' : tolower(c) - 'a' + 10;
}

/* Adds one line's sum. 1: a name already listed with another sum. */
static int add_sum(akg_sumlist *l, const char *name, unsigned algo, const char *hex)
{
  akg_sum s = {.algo = algo};
  size_t len = algos[algo].digest_len;
  for (size_t i = 0; i < len; i++)
    s.digest[i] = (unsigned char)(hexval(hex[2 * i]) << 4 | hexval(hex[2 * i + 1]));
  name = skip_dot_slash(name);
  if (2 * (l->n + 1) > l->slots && grow_index(l) < 0)
    return -ENOMEM;
  size_t *at = find_slot(l, name);
  if (*at) {
    const akg_sum *old = &l->sums[*at - 1];
    return old->algo == algo && memcmp(old->digest, s.digest, len) == 0 ? 0 : 1;
  }
  if (l->n == l->cap) {
    size_t cap = l->cap ? l->cap * 2 : 256;
    akg_sum *more = realloc(l->sums, cap * sizeof *more);
    if (!more)
      return -ENOMEM;
    l->sums = more;
    l->cap = cap;
  }
  if (!(s.name = strdup(name)))
    return -ENOMEM;
  l->sums[l->n++] = s;
  *at = l->n;
  return 0;
}

void akg_sums_free(akg_sumlist *l)
{
  if (!l)
    return;
  for (size_t i = 0; i < l->n; i++)
    free(l->sums[i].name);
  free(l->sums);
  free(l->slot);
  free(l);
}

/* Reads the local list at path (shown as "shown" in messages). 0, or an
 * exit code after saying why. */
static int read_list(akg_sumlist *l, const char *path, const char *shown)
{
  FILE *fp = fopen(path, "re");
  if (!fp) {
    fprintf(stderr, "akget: --checksums %s: %s\n", shown, strerror(errno));
    return AKG_EXIT_USAGE;
  }
  aks_sumline_reader rd = {0};
  int rc = 0;
  /* The untagged form is fixed by the list's first such line, as
   * sha256sum fixes it. */
  aks_sumline_form form = AKS_SUMLINE_UNKNOWN;
  while (rc == 0 && aks_sumline_next(fp, &rd)) {
    int a = strlen(rd.line) == rd.len ? aks_sumline_pick(rd.line, algos, 6) : -1;
    char *hex, *name;
    size_t dlen;
    if (a < 0 || !aks_sumline_parse(rd.line, rd.len, &algos[a], &form, &dlen, &hex, &name) ||
        dlen != algos[a].digest_len || !*name) {
      fprintf(stderr, "akget: --checksums %s:%zu: not a checksum line (sha256sum's form, "
                      "or the BSD form 'SHA256 (name) = HEX')\n", shown, rd.lineno);
      rc = AKG_EXIT_USAGE;
      break;
    }
    int ar = add_sum(l, name, (unsigned)a, hex);
    if (ar < 0) {
      fprintf(stderr, "akget: --checksums %s: out of memory\n", shown);
      rc = AKG_EXIT_LOCAL_IO;
    } else if (ar > 0) {
      fprintf(stderr, "akget: --checksums %s:%zu: '%s' is listed before with another sum\n",
              shown, rd.lineno, name);
      rc = AKG_EXIT_USAGE;
    }
  }
  if (rc == 0 && ferror(fp)) {
    fprintf(stderr, "akget: --checksums %s: %s\n", shown, strerror(errno));
    rc = AKG_EXIT_USAGE;
  }
  if (rc == 0 && l->n == 0) {
    fprintf(stderr, "akget: --checksums %s: no checksum line in it\n", shown);
    rc = AKG_EXIT_USAGE;
  }
  free(rd.line);
  fclose(fp);
  return rc;
}

static bool is_url(const char *s)
{
  return strncmp(s, "http://", 7) == 0 || strncmp(s, "https://", 8) == 0;
}

/* Fetches url into a fresh temporary directory with a run of its own, then
 * reads it. The run takes the reach options (proxies, credentials, TLS,
 * timeouts, retries) and nothing of what concerns the files (-d, -N, -c,
 * --json, the list itself). */
static int fetch_list(akg_sumlist *l, const akg_opts *o, const char *url)
{
  const char *tmpdir = getenv("TMPDIR");
  char dir[4096];
  snprintf(dir, sizeof dir, "%s/akget-sums-XXXXXX", tmpdir && *tmpdir ? tmpdir : "/tmp");
  if (!mkdtemp(dir)) {
    fprintf(stderr, "akget: --checksums: a temporary directory in %s: %s\n",
            tmpdir && *tmpdir ? tmpdir : "/tmp", strerror(errno));
    return AKG_EXIT_LOCAL_IO;
  }
  char path[4200], tmp[4300];
  snprintf(path, sizeof path, "%s/list", dir);
  snprintf(tmp, sizeof tmp, "%s.akget-part", path);
  akg_opts fo = *o;
  fo.dir = NULL;
  fo.output = path; /* -o: the one URL's file */
  fo.json_path = NULL;
  fo.timestamping = fo.resume = fo.content_disposition = false;
  fo.segments = 1;
  fo.checksums = NULL;
  fo.progress_tty = false;
  /* static as main's: a feed left by workers that failed may still use it */
  static akg_run run;
  akg_run_init(&run, &fo);
  char *urls[1] = {(char *)url};
  akg_sources src = {.urls = urls, .nurls = 1};
  int rc = akg_feed_start(&run, &src);
  if (rc == 0) {
    int rr = akg_run_all(&run);
    akg_feed_finish(run.feed, rr < 0);
    int worst = atomic_load(&run.worst);
    if (rr < 0 || worst || atomic_load(&run.failed)) {
      /* the item's own error was said as it ended (progress.c) */
      fprintf(stderr, "akget: --checksums %s: %s\n", url,
              rr < 0 ? ak_strerror(rr) : "the list could not be fetched");
      rc = worst ? worst : AKG_EXIT_NETWORK;
    } else {
      rc = read_list(l, path, url);
    }
  }
  unlink(path);
  unlink(tmp);
  rmdir(dir);
  return rc;
}

int akg_sums_load(const akg_opts *o, const char *spec, akg_sumlist **out)
{
  akg_sumlist *l = calloc(1, sizeof *l);
  if (!l)
    return AKG_EXIT_LOCAL_IO;
  int rc = is_url(spec) ? fetch_list(l, o, spec) : read_list(l, spec, spec);
  if (rc) {
    akg_sums_free(l);
    return rc;
  }
  *out = l;
  return 0;
}

size_t akg_sums_count(const akg_sumlist *l)
{
  return l->n;
}

/* The name path has under -d: dir's prefix and a leading "./" taken off. */
static const char *relative_name(const akg_opts *o, const char *path)
{
  if (o->dir && !o->output) {
    size_t dl = strlen(o->dir);
    if (strncmp(path, o->dir, dl) == 0 && path[dl] == '/') {
      path += dl;
      while (*path == '/')
        path++;
    }
  }
  return skip_dot_slash(path);
}

const akg_sum *akg_sums_find(const akg_opts *o, const char *path)
{
  const akg_sumlist *l = o->checksums;
  if (!l)
    return NULL;
  size_t at = *find_slot(l, relative_name(o, path));
  return at ? &l->sums[at - 1] : NULL;
}

const char *akg_sum_algo(const akg_sum *s)
{
  return shown_names[s->algo];
}

ak_future *akg_sum_verify(ak_loop *loop, const char *path, const akg_sum *s)
{
  return akg_checksum_verify_md(loop, path, evp_names[s->algo], s->digest,
                                algos[s->algo].digest_len);
}
