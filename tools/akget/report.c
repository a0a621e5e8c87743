/* report.c: the --json summary, written as the run goes: an entry per URL
 * as its download ends (where it went, how it ended and, for a failure,
 * why: error name, detail, exit code), then, once every download has
 * ended, the run's totals (exit code, files, bytes, seconds). Nothing is
 * held per URL: a list of millions costs one entry's line at a time. The
 * entries are in the order the downloads ended, not the list's. */
#include "akget.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

static FILE *json;                /* --json's file, or NULL */
static bool json_any;             /* an entry written (the next needs a comma) */
static pthread_mutex_t json_lock = PTHREAD_MUTEX_INITIALIZER; /* entries from every worker */

static void json_str(FILE *f, const char *s)
{
  if (!s) {
    fputs("null", f);
    return;
  }
  fputc('"', f);
  for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
    if (*p == '"' || *p == '\\')
      fprintf(f, "\\%c", *p);
    else if (*p < 0x20)
      fprintf(f, "\\u%04x", *p);
    else
      fputc(*p, f);
  }
  fputc('"', f);
}

static const char *err_name(int err)
{
  if (err == AKG_ECHECKSUM)
    return "CHECKSUM";
  if (err == AKG_EHTTPSTATUS)
    return "HTTP_STATUS";
  if (err == AKG_ELIST)
    return "LIST";
  return ak_err_name(err);
}

int akg_report_open(const char *path)
{
  json = strcmp(path, "-") == 0 ? stdout : fopen(path, "w");
  if (!json)
    return -errno;
  fputs("{\n  \"downloads\": [\n", json);
  return 0;
}

void akg_report_item(const akg_item *it)
{
  if (!json)
    return;
  bool ok = it->state == AKG_DONE;
  pthread_mutex_lock(&json_lock);
  FILE *f = json;
  fputs(json_any ? ",\n    {\"url\": " : "    {\"url\": ", f);
  json_any = true;
  json_str(f, it->url);
  fputs(", \"file\": ", f);
  json_str(f, it->path);
  fprintf(f, ", \"ok\": %s, \"status\": %d, \"bytes\": %" PRId64 ", \"resumed_from\": %" PRId64
             ", \"segments\": %u, \"decoded\": %s, \"retries\": %u, \"seconds\": %.3f",
          ok ? "true" : "false", it->status, it->bytes, it->resumed_from, it->segments_used,
          it->decoded ? "true" : "false",
          it->attempts, it->end_ns > it->start_ns ? (it->end_ns - it->start_ns) / 1e9 : 0.0);
  if (ok)
    fprintf(f, ", \"unchanged\": %s", it->unchanged ? "true" : "false");
  /* --checksums: what the list said of it ("not_hashed": -N kept it). */
  static const char *const sum_check[] = {NULL, "listed", "verified", "mismatch",
                                          "not_listed", "not_hashed"};
  if (it->sum_check != AKG_SUM_NONE)
    fprintf(f, ", \"checksum\": \"%s\"", sum_check[it->sum_check]);
  if (!ok) {
    fputs(", \"error\": ", f);
    json_str(f, it->err ? err_name(it->err) : "NOT_STARTED");
    fputs(", \"detail\": ", f);
    json_str(f, it->detail ? it->detail : (it->err ? akg_err_text(it->err) : NULL));
    fprintf(f, ", \"exit\": %d", it->exit_code);
  }
  fputc('}', f);
  pthread_mutex_unlock(&json_lock);
}

int akg_report_close(const akg_run *run, int exit_code)
{
  if (!json)
    return 0;
  FILE *f = json;
  size_t finished = atomic_load(&run->finished), failed = atomic_load(&run->failed);
  fprintf(f, "%s  ],\n  \"exit\": %d,\n  \"files\": %zu,\n  \"failed\": %zu,\n  \"unchanged\": %zu,"
             "\n  \"bytes\": %" PRId64 ",\n  \"seconds\": %.3f\n}\n",
          json_any ? "\n" : "", exit_code, (size_t)atomic_load(&run->count),
          failed + (atomic_load(&run->count) - finished), (size_t)atomic_load(&run->unchanged),
          (int64_t)atomic_load(&run->bytes), (ak_now_ns() - run->start_ns) / 1e9);
  int rc = ferror(f) ? -EIO : 0;
  if (f != stdout && fclose(f) != 0)
    rc = -errno;
  else if (f == stdout)
    fflush(stdout);
  json = NULL;
  return rc;
}
