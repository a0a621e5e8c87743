/* output.c: everything aksum prints. On stdout: checksum lines exactly as
 * sha256sum writes them (a name with a backslash, newline or carriage
 * return is escaped and the line starts with a backslash), or for -c the
 * "name: OK" / "name: FAILED" / "name: FAILED open or read" lines of
 * sha256sum -c. On stderr: one message per failed file naming it, the
 * summary warnings, and progress (a status line redrawn on a terminal, a
 * plain line every 5 s otherwise). And the --json summary. */
#define _GNU_SOURCE
#include "aksum.h"

#include <asynckit.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void aks_hex(const unsigned char *digest, size_t len, char *out)
{
  static const char digits[] = "0123456789abcdef";
  for (size_t i = 0; i < len; i++) {
    out[2 * i] = digits[digest[i] >> 4];
    out[2 * i + 1] = digits[digest[i] & 15];
  }
  out[2 * len] = '\0';
}

/* sha256sum's escaping of a name (the caller puts the leading '\'). */
static void put_escaped(const char *s)
{
  const char *run = s; /* the bytes not yet put that need no escape */
  for (; *s; s++) {
    const char *esc = *s == '\\' ? "\\\\" : *s == '\n' ? "\\n" : *s == '\r' ? "\\r" : NULL;
    if (!esc)
      continue;
    aks_out_put(run, (size_t)(s - run));
    aks_out_puts(esc);
    run = s + 1;
  }
  aks_out_put(run, (size_t)(s - run));
}

/* ---- Progress -------------------------------------------------------------- */

static bool progress_on_tty;
static bool progress_shown; /* a status line is on the terminal now */
static bool progress_lines; /* plain progress lines were printed */

bool aks_progress_wanted(const aks_run *run, bool *tty)
{
  bool is_tty = isatty(STDERR_FILENO);
  *tty = progress_on_tty = is_tty && run->opts.progress != AKS_PROGRESS_NEVER;
  return run->opts.progress != AKS_PROGRESS_NEVER;
}

static void progress_clear(void)
{
  if (progress_shown) {
    fputs("\r\033[K", stderr);
    progress_shown = false;
  }
}

void aks_progress_tick(aks_run *run, bool final)
{
  if (run->opts.progress == AKS_PROGRESS_NEVER)
    return;
  if (final) {
    if (progress_on_tty)
      progress_clear();
    else if (progress_lines)
      fprintf(stderr, "aksum: done: %zu files, %.1f MiB\n", run->reported,
              (double)run->bytes / 1048576.0);
    return;
  }
  double secs = (double)(ak_now_ns() - run->t0_ns) / 1e9;
  double mib = (double)run->bytes / 1048576.0;
  double rate = secs > 0 ? mib / secs : 0;
  if (progress_on_tty) {
    aks_out_flush();
    fprintf(stderr, "\r\033[Kaksum: %zu/%zu files  %.1f MiB  %.1f MiB/s", run->reported, run->n,
            mib, rate);
    progress_shown = true;
  } else {
    fprintf(stderr, "aksum: progress: %zu/%zu files, %.1f MiB, %.1f MiB/s\n", run->reported, run->n,
            mib, rate);
    progress_lines = true;
  }
  fflush(stderr);
}

static const char *plural(size_t n, const char *one, const char *many)
{
  return n == 1 ? one : many;
}

/* ---- One finished item, in order ---------------------------------------------- */

static void report_error(const aks_item *it)
{
  /* The lines before it first: with 2>&1 the message lands where
   * sha256sum's does, between the lines of the files around it. */
  aks_out_flush();
  const char *msg = it->err_msg ? it->err_msg : strerror(-it->err);
  if (it->err_step && it->err_path)
    fprintf(stderr, "aksum: %s: %s to %s: %s\n", it->path, it->err_step, it->err_path, msg);
  else if (it->err_step)
    fprintf(stderr, "aksum: %s: %s: %s\n", it->path, it->err_step, msg);
  else
    fprintf(stderr, "aksum: %s: %s\n", it->path, msg);
}

void aks_item_hex(const aks_run *run, const aks_item *it, char *out)
{
  (void)run;
  aks_hex(it->digest, it->digest_len, out);
}

/* -c --warn: names list l's improperly formatted lines up to the upto-th
 * (those before the line being reported, or all at the list's end). */
static void warn_improper(aks_run *run, aks_list *l, size_t upto)
{
  if (!run->opts.warn || l->warned >= upto) {
    l->warned = upto > l->warned ? upto : l->warned;
    return;
  }
  aks_out_flush(); /* the lines before them first, as sha256sum's order */
  for (; l->warned < upto; l->warned++)
    fprintf(stderr, "aksum: %s: %zu: improperly formatted %s checksum line\n", l->shown,
            l->improper_at[l->warned], run->opts.algo->tag);
}

/* -c: what list l says once its last line is reported: the rest of its
 * improper lines (--warn), then its error, or sha256sum -c's summary. */
static void list_end(aks_run *run, aks_list *l)
{
  warn_improper(run, l, l->improper);
  aks_out_flush();
  if (l->err) {
    fprintf(stderr, "aksum: %s: %s\n", l->path, strerror(-l->err));
  } else if (l->read_error) {
    fprintf(stderr, "aksum: %s: read error\n", l->shown); /* sha256sum's words */
  } else if (l->no_lines) {
    fprintf(stderr, "aksum: %s: no properly formatted checksum lines found\n", l->shown);
  } else if (!run->opts.status) { /* sha256sum --status: no warnings either */
    if (l->improper)
      fprintf(stderr, "aksum: WARNING: %zu %s improperly formatted\n", l->improper,
              plural(l->improper, "line is", "lines are"));
    if (l->unreadable)
      fprintf(stderr, "aksum: WARNING: %zu listed %s could not be read\n", l->unreadable,
              plural(l->unreadable, "file", "files"));
    if (l->mismatched)
      fprintf(stderr, "aksum: WARNING: %zu computed %s did NOT match\n", l->mismatched,
              plural(l->mismatched, "checksum", "checksums"));
    if (run->opts.ignore_missing && l->matched == 0)
      fprintf(stderr, "aksum: %s: no file was verified\n", l->shown);
  }
  l->done = true;
}

/* -c: ends the lists before the one with index upto. */
static void lists_end_before(aks_run *run, size_t upto)
{
  while (run->lists_done < upto && run->lists_done < run->n_lists)
    list_end(run, &run->lists[run->lists_done++]);
}

bool aks_check_failed(const aks_run *run)
{
  for (size_t i = 0; i < run->n_lists; i++) {
    const aks_list *l = &run->lists[i];
    /* sha256sum -c's rules per list: unreadable or without a checksum
     * line; --strict and an improperly formatted line; --ignore-missing
     * and no file that matched. */
    if (l->err || l->read_error || l->no_lines)
      return true;
    if (run->opts.strict && l->improper > 0)
      return true;
    if (run->opts.ignore_missing && l->matched == 0)
      return true;
  }
  return false;
}

static void report_check(aks_run *run, aks_item *it)
{
  bool escape = strchr(it->path, '\n') != NULL; /* sha256sum -c escapes only these */
  const char *verdict;
  const aks_opts *o = &run->opts;
  aks_list *l = &run->lists[it->list];
  if (it->err) {
    report_error(it); /* even with --status, as sha256sum */
    run->unreadable++;
    l->unreadable++;
    verdict = "FAILED open or read";
  } else {
    char hex[2 * AKS_DIGEST_MAX + 1];
    aks_item_hex(run, it, hex);
    if (strcmp(hex, it->expect) == 0) {
      run->ok++;
      run->matched++;
      l->matched++;
      if (o->quiet)
        return;
      verdict = "OK";
    } else {
      run->mismatched++;
      l->mismatched++;
      verdict = "FAILED";
    }
  }
  if (o->status)
    return;
  if (escape) {
    aks_out_putc('\\');
    put_escaped(it->path);
  } else {
    aks_out_puts(it->path);
  }
  aks_out_puts(": ");
  aks_out_puts(verdict);
  aks_out_putc('\n');
  aks_out_end_record();
}

/* The --tag word: BLAKE2b says its length when it is not 512 bits
 * ("BLAKE2b-256"), as b2sum -l does. */
static void put_tag(const aks_run *run, const aks_item *it)
{
  aks_out_puts(run->opts.algo->tag);
  if (run->opts.algo == aks_algo_get(AKS_BLAKE2B) && it->digest_len != run->opts.algo->digest_len) {
    char bits[24];
    snprintf(bits, sizeof(bits), "-%zu", it->digest_len * 8);
    aks_out_puts(bits);
  }
}

void aks_report(aks_run *run, aks_item *it)
{
  run->reported++;
  if (progress_on_tty && isatty(STDOUT_FILENO))
    progress_clear();
  if (run->opts.check) {
    lists_end_before(run, it->list);
    warn_improper(run, &run->lists[it->list], it->improper_before);
  }
  /* --ignore-missing: a listed file that does not exist is not there at
   * all (no line, no count), as in sha256sum -c. */
  if (run->opts.check && run->opts.ignore_missing && it->err == -ENOENT) {
    it->ignored = true;
    return;
  }
  if (it->err)
    run->failed++;
  if (run->opts.check) {
    report_check(run, it);
    return;
  }
  if (it->err) {
    report_error(it);
    return;
  }
  run->ok++;
  char hex[2 * AKS_DIGEST_MAX + 1];
  aks_item_hex(run, it, hex);
  /* -z: the record ends with NUL and the name goes as it is (sha256sum -z) */
  bool escape = !run->opts.zero && strpbrk(it->path, "\\\n\r") != NULL;
  if (escape)
    aks_out_putc('\\');
  if (run->opts.tag) {
    /* BSD style, as sha256sum --tag: "\" first when the name is escaped */
    put_tag(run, it);
    aks_out_puts(" (");
  } else {
    aks_out_puts(hex);
    aks_out_puts("  ");
  }
  if (escape)
    put_escaped(it->path);
  else
    aks_out_puts(it->path);
  if (run->opts.tag) {
    aks_out_puts(") = ");
    aks_out_puts(hex);
  }
  aks_out_putc(run->opts.zero ? '\0' : '\n');
  aks_out_end_record();
}

void aks_print_summary(aks_run *run)
{
  aks_out_flush();
  if (run->opts.check) {
    lists_end_before(run, run->n_lists);
    return;
  }
  if (run->failed)
    fprintf(stderr, "aksum: WARNING: %zu of %zu %s could not be processed\n", run->failed, run->n,
            plural(run->n, "file", "files"));
}

/* ---- --json ---------------------------------------------------------------------- */

/* The length of the well-formed UTF-8 sequence at s (RFC 3629: no
 * overlongs, no surrogates, nothing past U+10FFFF), or 0 if there is none. */
static size_t utf8_len(const unsigned char *s)
{
  unsigned char c = s[0];
  size_t n;
  unsigned min;
  unsigned cp;
  if (c < 0x80)
    return 1;
  if (c >= 0xc2 && c <= 0xdf)
    n = 2, min = 0x80, cp = c & 0x1f;
  else if (c >= 0xe0 && c <= 0xef)
    n = 3, min = 0x800, cp = c & 0x0f;
  else if (c >= 0xf0 && c <= 0xf4)
    n = 4, min = 0x10000, cp = c & 0x07;
  else
    return 0;
  for (size_t i = 1; i < n; i++) {
    if ((s[i] & 0xc0) != 0x80) /* also stops at the NUL */
      return 0;
    cp = cp << 6 | (s[i] & 0x3f);
  }
  if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
    return 0;
  return n;
}

/* A JSON string that always parses, whatever bytes a file name holds:
 * well-formed UTF-8 passes through, control characters and DEL are \u
 * escapes, and each byte that is not part of well-formed UTF-8 becomes
 * \udcXX (XX the byte): the lone low surrogate Python's surrogateescape
 * uses, so os.fsencode(json.load(...)["path"]) gives the name's bytes
 * back. */
static void json_string(FILE *to, const char *str)
{
  const unsigned char *s = (const unsigned char *)str;
  putc('"', to);
  while (*s) {
    unsigned char c = *s;
    size_t n = utf8_len(s);
    if (n == 0) {
      fprintf(to, "\\udc%02x", c);
      s++;
    } else if (c == '"' || c == '\\') {
      fprintf(to, "\\%c", c);
      s++;
    } else if (c < 0x20 || c == 0x7f) {
      fprintf(to, "\\u%04x", c);
      s++;
    } else {
      fwrite(s, 1, n, to);
      s += n;
    }
  }
  putc('"', to);
}

int aks_write_json(const aks_run *run)
{
  const char *path = run->opts.json_path;
  bool to_stdout = strcmp(path, "-") == 0;
  if (to_stdout)
    aks_out_flush(); /* after the lines, never inside one */
  FILE *to = to_stdout ? stdout : fopen(path, "we");
  if (!to) {
    int err = -errno;
    fprintf(stderr, "aksum: --json %s: %s\n", path, strerror(errno));
    return err;
  }
  double secs = (double)(run->t1_ns - run->t0_ns) / 1e9;
  fprintf(to, "{\n  \"tool\": \"aksum\",\n  \"version\": \"%s\",\n", ak_version_string());
  fprintf(to, "  \"mode\": \"%s\",\n  \"hash\": \"%s\",\n",
          run->opts.check       ? "check"
          : run->opts.copy_dest ? "copy"
                                : "hash",
          run->opts.algo->name);
  fprintf(to, "  \"files\": %zu,\n  \"ok\": %zu,\n  \"failed\": %zu,\n", run->n, run->ok,
          run->failed + run->mismatched);
  if (run->opts.check)
    fprintf(to, "  \"mismatched\": %zu,\n  \"unreadable\": %zu,\n  \"improper_lines\": %zu,\n",
            run->mismatched, run->unreadable, run->improper);
  if (run->opts.copy_dest)
    fprintf(to, "  \"copied\": %zu,\n", run->copied);
  fprintf(to, "  \"bytes\": %llu,\n  \"seconds\": %.6f,\n  \"mib_per_s\": %.1f,\n",
          (unsigned long long)run->bytes, secs,
          secs > 0 ? (double)run->bytes / 1048576.0 / secs : 0.0);
  fprintf(to, "  \"threads\": %u,\n  \"chunk\": %zu,\n  \"buffers\": %u,\n", run->opts.jobs,
          run->opts.chunk, run->opts.buffers);
  fprintf(to, "  \"ring\": {\"ops\": %llu, \"reads\": %llu, \"pool_fallbacks\": %llu},\n",
          (unsigned long long)run->ring_ops, (unsigned long long)run->ring_reads,
          (unsigned long long)run->fallbacks);
  fputs("  \"failures\": [", to);
  bool first = true;
  for (size_t i = 0; i < run->n; i++) {
    const aks_item *it = &run->items[i];
    bool mismatch = false;
    if (!it->err && it->expect && it->finished) {
      char hex[2 * AKS_DIGEST_MAX + 1];
      aks_item_hex(run, it, hex);
      mismatch = strcmp(hex, it->expect) != 0;
    }
    if ((!it->err && !mismatch) || it->ignored)
      continue;
    fputs(first ? "\n    {\"path\": " : ",\n    {\"path\": ", to);
    first = false;
    json_string(to, it->path);
    if (mismatch) {
      fputs(", \"error\": \"MISMATCH\", \"message\": \"computed checksum did NOT match\"}", to);
      continue;
    }
    fprintf(to, ", \"error\": \"%s\", \"message\": ", ak_err_name(it->err));
    json_string(to, it->err_msg ? it->err_msg : strerror(-it->err));
    if (it->err_step) {
      fputs(", \"step\": ", to);
      json_string(to, it->err_step);
    }
    if (it->err_path) {
      fputs(", \"dest\": ", to);
      json_string(to, it->err_path);
    }
    putc('}', to);
  }
  fputs(first ? "]\n}\n" : "\n  ]\n}\n", to);
  int rc = 0;
  if (fflush(to) != 0 || ferror(to))
    rc = -errno;
  if (!to_stdout && fclose(to) != 0 && rc == 0)
    rc = -errno;
  if (rc < 0)
    fprintf(stderr, "aksum: --json %s: %s\n", path, strerror(-rc));
  return rc;
}
