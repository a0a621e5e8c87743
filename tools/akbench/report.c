/* report.c: akbench's output. Owns the result record's building helpers, the
 * table printed for each workload, and the JSON document. Does not measure
 * anything and does not decide what a workload reports: workloads fill an
 * akb_result, this file only formats it, the same way for all of them.
 */
#include "akbench.h"

#include <asynckit.h>

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/utsname.h>
#include <unistd.h>

/* ---- Building a result ----------------------------------------------------- */

void akb_result_init(akb_result *res, const char *workload)
{
  memset(res, 0, sizeof(*res));
  res->workload = workload;
  res->ratio = NAN;
  res->ok = true;
}

void akb_title(akb_result *res, const char *fmt, ...)
{
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(res->title, sizeof(res->title), fmt, ap);
  va_end(ap);
}

akb_row *akb_row_add(akb_result *res, const char *name)
{
  /* The rows are a fixed few per workload; running out is a bug in akbench. */
  if (res->nrows == AKB_MAX_ROWS) {
    fprintf(stderr, "akbench: %s: too many rows (AKB_MAX_ROWS)\n", res->workload);
    res->ok = false;
    return &res->rows[AKB_MAX_ROWS - 1];
  }
  akb_row *row = &res->rows[res->nrows++];
  snprintf(row->name, sizeof(row->name), "%s", name);
  return row;
}

static void fig_set(akb_fig *fig, const char *key, const char *unit, double value, bool integer)
{
  fig->key = key;
  fig->unit = unit ? unit : "";
  fig->value = value;
  fig->integer = integer;
}

void akb_fig_add(akb_row *row, const char *key, const char *unit, double value, bool integer)
{
  if (row->nfigs == AKB_MAX_FIGS) {
    fprintf(stderr, "akbench: row %s: too many figures (AKB_MAX_FIGS)\n", row->name);
    return;
  }
  fig_set(&row->figs[row->nfigs++], key, unit, value, integer);
}

void akb_param(akb_result *res, const char *key, const char *unit, double value, bool integer)
{
  if (res->nparams == AKB_MAX_FIGS) {
    fprintf(stderr, "akbench: %s: too many parameters (AKB_MAX_FIGS)\n", res->workload);
    return;
  }
  fig_set(&res->params[res->nparams++], key, unit, value, integer);
}

void akb_ratio(akb_result *res, double ratio, const char *fmt, ...)
{
  res->has_ratio = true;
  res->ratio = ratio;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(res->ratio_of, sizeof(res->ratio_of), fmt, ap);
  va_end(ap);
}

static void note_v(akb_result *res, const char *fmt, va_list ap)
{
  /* Keep the last slot for the last note: a failure said late matters most. */
  size_t i = res->nnotes < AKB_MAX_NOTES ? res->nnotes++ : AKB_MAX_NOTES - 1;
  vsnprintf(res->notes[i], sizeof(res->notes[i]), fmt, ap);
}

void akb_note(akb_result *res, const char *fmt, ...)
{
  va_list ap;
  va_start(ap, fmt);
  note_v(res, fmt, ap);
  va_end(ap);
}

void akb_fail(akb_result *res, const char *fmt, ...)
{
  va_list ap;
  va_start(ap, fmt);
  note_v(res, fmt, ap);
  va_end(ap);
  res->ok = false;
}

/* ---- The table -------------------------------------------------------------- */

/* Figures span nanoseconds to millions of items per second: whole numbers
 * from 1000 up, a few significant digits below. */
static void format_value(char *buf, size_t size, const akb_fig *fig)
{
  double v = fig->value;
  if (isnan(v))
    snprintf(buf, size, "-");
  else if (fig->integer || fabs(v) >= 1000)
    snprintf(buf, size, "%.0f", v);
  else if (fabs(v) >= 10)
    snprintf(buf, size, "%.1f", v);
  else
    snprintf(buf, size, "%.3f", v);
}

/* A column: a figure key that appears in some row. */
typedef struct column {
  const char *key;
  const char *unit;
  int width;
} column;

static const akb_fig *row_fig(const akb_row *row, const char *key)
{
  for (size_t i = 0; i < row->nfigs; i++)
    if (strcmp(row->figs[i].key, key) == 0)
      return &row->figs[i];
  return NULL;
}

/* The union of the rows' figure keys, in order of first appearance. */
static size_t collect_columns(const akb_result *res, column *cols, size_t max)
{
  size_t n = 0;
  for (size_t r = 0; r < res->nrows; r++) {
    for (size_t f = 0; f < res->rows[r].nfigs; f++) {
      const akb_fig *fig = &res->rows[r].figs[f];
      size_t c = 0;
      while (c < n && strcmp(cols[c].key, fig->key) != 0)
        c++;
      if (c == n && n < max) {
        cols[n].key = fig->key;
        cols[n].unit = fig->unit;
        n++;
      }
    }
  }
  return n;
}

static void heading(char *buf, size_t size, const column *col)
{
  if (col->unit[0])
    snprintf(buf, size, "%s[%s]", col->key, col->unit);
  else
    snprintf(buf, size, "%s", col->key);
}

void akb_print_table(FILE *to, const akb_result *res)
{
  fprintf(to, "== %s: %s\n", res->workload, res->title);
  if (res->nparams) {
    fprintf(to, "  ");
    for (size_t i = 0; i < res->nparams; i++) {
      char v[48];
      format_value(v, sizeof(v), &res->params[i]);
      fprintf(to, "%s%s=%s%s", i ? "  " : "", res->params[i].key, v, res->params[i].unit);
    }
    fprintf(to, "\n");
  }

  column cols[AKB_MAX_FIGS * AKB_MAX_ROWS];
  size_t ncols = collect_columns(res, cols, sizeof(cols) / sizeof(cols[0]));
  int name_width = 4;
  for (size_t r = 0; r < res->nrows; r++) {
    int len = (int)strlen(res->rows[r].name);
    if (len > name_width)
      name_width = len;
  }
  char buf[64];
  for (size_t c = 0; c < ncols; c++) {
    heading(buf, sizeof(buf), &cols[c]);
    cols[c].width = (int)strlen(buf);
    for (size_t r = 0; r < res->nrows; r++) {
      const akb_fig *fig = row_fig(&res->rows[r], cols[c].key);
      if (fig) {
        format_value(buf, sizeof(buf), fig);
        if ((int)strlen(buf) > cols[c].width)
          cols[c].width = (int)strlen(buf);
      }
    }
  }

  if (res->nrows) {
    fprintf(to, "  %-*s", name_width, "impl");
    for (size_t c = 0; c < ncols; c++) {
      heading(buf, sizeof(buf), &cols[c]);
      fprintf(to, "  %*s", cols[c].width, buf);
    }
    fprintf(to, "\n");
  }
  for (size_t r = 0; r < res->nrows; r++) {
    fprintf(to, "  %-*s", name_width, res->rows[r].name);
    for (size_t c = 0; c < ncols; c++) {
      const akb_fig *fig = row_fig(&res->rows[r], cols[c].key);
      if (fig)
        format_value(buf, sizeof(buf), fig);
      else
        snprintf(buf, sizeof(buf), "-");
      fprintf(to, "  %*s", cols[c].width, buf);
    }
    fprintf(to, "\n");
  }
  if (res->has_ratio)
    fprintf(to, "  ratio %.3f  (%s; above 1: asynckit better)\n", res->ratio, res->ratio_of);
  for (size_t i = 0; i < res->nnotes; i++)
    fprintf(to, "  note: %s\n", res->notes[i]);
  if (!res->ok)
    fprintf(to, "  FAILED\n");
  fprintf(to, "\n");
}

/* ---- JSON ------------------------------------------------------------------- */

static void json_string(FILE *to, const char *s)
{
  fputc('"', to);
  for (; *s; s++) {
    unsigned char c = (unsigned char)*s;
    if (c == '"' || c == '\\')
      fprintf(to, "\\%c", c);
    else if (c < 0x20)
      fprintf(to, "\\u%04x", c);
    else
      fputc(c, to);
  }
  fputc('"', to);
}

static void json_number(FILE *to, double v, bool integer)
{
  if (!isfinite(v))
    fputs("null", to); /* JSON has no NaN or infinity */
  else if (integer)
    fprintf(to, "%.0f", v);
  else
    fprintf(to, "%.9g", v);
}

static void json_figs(FILE *to, const akb_fig *figs, size_t n, const char *indent)
{
  for (size_t i = 0; i < n; i++) {
    fprintf(to, "%s", indent);
    json_string(to, figs[i].key);
    fputs(": ", to);
    json_number(to, figs[i].value, figs[i].integer);
    fputs(",\n", to);
  }
}

static void json_result(FILE *to, const akb_result *res)
{
  fputs("    {\n      \"workload\": ", to);
  json_string(to, res->workload);
  fputs(",\n      \"title\": ", to);
  json_string(to, res->title);
  fprintf(to, ",\n      \"ok\": %s,\n", res->ok ? "true" : "false");
  json_figs(to, res->params, res->nparams, "      ");
  fputs("      \"implementations\": {", to);
  for (size_t r = 0; r < res->nrows; r++) {
    fputs(r ? ",\n        " : "\n        ", to);
    json_string(to, res->rows[r].name);
    fputs(": {", to);
    for (size_t f = 0; f < res->rows[r].nfigs; f++) {
      const akb_fig *fig = &res->rows[r].figs[f];
      fputs(f ? ", " : "", to);
      json_string(to, fig->key);
      fputs(": ", to);
      json_number(to, fig->value, fig->integer);
    }
    fputs("}", to);
  }
  fputs(res->nrows ? "\n      },\n" : "},\n", to);
  fputs("      \"ratio\": ", to);
  json_number(to, res->has_ratio ? res->ratio : NAN, false);
  fputs(",\n      \"ratio_of\": ", to);
  if (res->has_ratio)
    json_string(to, res->ratio_of);
  else
    fputs("null", to);
  fputs(",\n      \"notes\": [", to);
  for (size_t i = 0; i < res->nnotes; i++) {
    fputs(i ? ", " : "", to);
    json_string(to, res->notes[i]);
  }
  fputs("]\n    }", to);
}

int akb_write_json(FILE *to, const akb_result *const *res, size_t n, const akb_opts *opts)
{
  struct utsname uts;
  const char *kernel = uname(&uts) == 0 ? uts.release : "";
  long cpus = sysconf(_SC_NPROCESSORS_ONLN);

  fputs("{\n  \"tool\": \"akbench\",\n  \"asynckit\": ", to);
  json_string(to, ak_version_string());
  fputs(",\n  \"kernel\": ", to);
  json_string(to, kernel);
  fprintf(to, ",\n  \"cpus\": %ld,\n  \"threads\": %u,\n  \"rounds\": %u,\n  \"quick\": %s,\n",
          cpus, opts->threads, opts->rounds, opts->quick ? "true" : "false");
  fputs("  \"workloads\": [\n", to);
  for (size_t i = 0; i < n; i++) {
    json_result(to, res[i]);
    fputs(i + 1 < n ? ",\n" : "\n", to);
  }
  fputs("  ]\n}\n", to);
  if (fflush(to) != 0 || ferror(to))
    return -1;
  return 0;
}
