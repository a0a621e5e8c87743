/* report.c: the --json summary: one object for the run (exit code, bytes,
 * seconds) with an entry per URL saying where it went, how it ended and, for
 * a failure, why (error name, detail, exit code). */
#include "akget.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

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
  return ak_err_name(err);
}

int akg_report_json(const akg_run *run, const char *path, int exit_code)
{
  FILE *f = strcmp(path, "-") == 0 ? stdout : fopen(path, "w");
  if (!f)
    return -errno;
  int64_t bytes = 0;
  for (size_t i = 0; i < run->count; i++)
    if (!run->items[i].unchanged) /* -N: kept, not fetched */
      bytes += run->items[i].bytes - run->items[i].resumed_from;
  fprintf(f, "{\n  \"exit\": %d,\n  \"files\": %zu,\n  \"failed\": %zu,\n  \"unchanged\": %zu,"
             "\n  \"bytes\": %" PRId64 ",\n  \"seconds\": %.3f,\n  \"downloads\": [\n",
          exit_code, run->count, (size_t)atomic_load(&run->failed),
          (size_t)atomic_load(&run->unchanged), bytes,
          (ak_now_ns() - run->start_ns) / 1e9);
  for (size_t i = 0; i < run->count; i++) {
    const akg_item *it = &run->items[i];
    bool ok = it->state == AKG_DONE;
    fputs("    {\"url\": ", f);
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
    fprintf(f, "}%s\n", i + 1 < run->count ? "," : "");
  }
  fputs("  ]\n}\n", f);
  int rc = ferror(f) ? -EIO : 0;
  if (f != stdout && fclose(f) != 0)
    rc = -errno;
  else if (f == stdout)
    fflush(stdout);
  return rc;
}
