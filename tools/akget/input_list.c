/* input_list.c: the -i list's text, one entry at a time (aria2's
 * input-file form): a URL at the start of a line, optionally followed on
 * that line by sha-256=HEX (akget's older form), then indented lines (a
 * space or a tab first) of key=value for that URL: out=, dir=, checksum=,
 * header= (repeatable). Blank lines and lines whose first non-blank byte
 * is # are skipped; a CR before the LF is dropped. Lines are read as they
 * come: an entry is complete at the next line that is not one of its
 * options (a blank line, the next URL, the end), so a pipe is read no
 * further ahead than that; each line is bounded by AKG_LIST_LINE_MAX bytes.
 *
 * It owns the syntax only: whether a URL parses, where out= leads and what
 * an entry becomes are the feed's (feed.c). An entry that breaks a rule
 * carries its error (with the line number) and the reading goes on: the
 * caller decides (akget skips that entry, docs/akget.md). */
#include "akget.h"

#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct akg_list_reader {
  FILE *f;
  bool owned;                /* f is closed by akg_list_close (not stdin) */
  unsigned long line;        /* lines read so far */
  size_t len;                /* the line in buf, without its LF / CRLF */
  bool pending;              /* buf holds a URL line not yet returned */
  bool too_long, has_nul;    /* what is wrong with the line in buf */
  bool eof;
  int err;                   /* a read error (-errno), reported once */
  char *url;                 /* the last entry's URL (its e->url), grown to
                                the longest; one allocation for the list,
                                where a strdup a URL was one to free */
  size_t url_cap;
  char buf[AKG_LIST_LINE_MAX + 1]; /* last: not zeroed (akg_list_from_file) */
};

int akg_list_open(const char *path, akg_list_reader **out)
{
  bool is_stdin = strcmp(path, "-") == 0;
  FILE *f = is_stdin ? stdin : fopen(path, "r");
  if (!f)
    return -errno;
  akg_list_reader *r = akg_list_from_file(f, !is_stdin);
  if (!r) {
    if (!is_stdin)
      fclose(f);
    return -ENOMEM;
  }
  *out = r;
  return 0;
}

akg_list_reader *akg_list_from_file(FILE *f, bool owned)
{
  /* Not calloc: zeroing the 64 KiB line buffer faulted in all its pages
   * (16 faults, about 0.2 ms at each start here); a line is written
   * before it is read, and short lines touch only the first page. */
  akg_list_reader *r = malloc(sizeof *r);
  if (r) {
    memset(r, 0, offsetof(akg_list_reader, buf));
    r->buf[0] = '\0';
    r->f = f;
    r->owned = owned;
  }
  return r;
}

void akg_list_close(akg_list_reader *r)
{
  if (!r)
    return;
  if (r->owned)
    fclose(r->f);
  if (r->url) /* the last URL may carry user:password@ */
    explicit_bzero(r->url, r->url_cap);
  free(r->url);
  free(r);
}

/* Appends the k bytes at p to the line in buf (n bytes so far), keeping
 * AKG_LIST_LINE_MAX of them; notes a NUL or an overflow. */
static size_t keep(akg_list_reader *r, size_t n, const char *p, size_t k)
{
  if (memchr(p, '\0', k))
    r->has_nul = true;
  size_t room = AKG_LIST_LINE_MAX - n;
  if (k > room) {
    r->too_long = true;
    k = room;
  }
  memcpy(r->buf + n, p, k);
  return n + k;
}

/* Reads the next line into buf: 1, or 0 at the end (or after a read
 * error, kept in r->err). A longer line keeps its first
 * AKG_LIST_LINE_MAX bytes and is marked too long; the rest is consumed.
 * Where FILE exposes its buffer (glibc's _IO_read_ptr/_IO_read_end;
 * AKG_FILE_READ_PTR, from a meson check: uClibc-ng defines __GLIBC__
 * without them), the bytes the stream already holds are searched with
 * memchr and copied at once (gnulib's freadptr does the same): a byte
 * at a time through getc_unlocked was a tenth of the reader's
 * instructions. The stream still reads only when its buffer is empty
 * (getc_unlocked below), so a pipe is read no further ahead than before. */
static int read_line(akg_list_reader *r)
{
  if (r->eof)
    return 0;
  size_t n = 0;
  bool any = false;
  r->too_long = r->has_nul = false;
  int c;
  for (;;) {
#ifdef AKG_FILE_READ_PTR /* meson: FILE has _IO_read_ptr (glibc; not uClibc-ng) */
    FILE *f = r->f;
    if (f->_IO_read_ptr < f->_IO_read_end) {
      const char *p = f->_IO_read_ptr;
      size_t avail = (size_t)(f->_IO_read_end - p);
      const char *lf = memchr(p, '\n', avail);
      size_t k = lf ? (size_t)(lf - p) : avail;
      n = keep(r, n, p, k);
      f->_IO_read_ptr += k + (lf != NULL);
      any = true;
      if (lf) {
        c = '\n';
        break;
      }
    }
#endif
    if ((c = getc_unlocked(r->f)) == EOF)
      break;
    any = true;
    if (c == '\n')
      break;
    char b = (char)c;
    n = keep(r, n, &b, 1);
  }
  if (c == EOF) {
    r->eof = true;
    if (ferror(r->f))
      r->err = errno ? -errno : -EIO;
    if (!any)
      return 0;
  }
  if (n > 0 && r->buf[n - 1] == '\r')
    n--;
  r->buf[n] = '\0';
  r->len = n;
  r->line++;
  return 1;
}

static bool is_blank(int c)
{
  return c == ' ' || c == '\t';
}

/* The bytes that end or spoil a URL on its line: NUL, blanks, control
 * bytes, DEL. */
static const bool url_stop[256] = {
    [0] = 1,    [1] = 1,    [2] = 1,    [3] = 1,    [4] = 1,    [5] = 1,    [6] = 1,
    [7] = 1,    [8] = 1,    [9] = 1,    [10] = 1,   [11] = 1,   [12] = 1,   [13] = 1,
    [14] = 1,   [15] = 1,   [16] = 1,   [17] = 1,   [18] = 1,   [19] = 1,   [20] = 1,
    [21] = 1,   [22] = 1,   [23] = 1,   [24] = 1,   [25] = 1,   [26] = 1,   [27] = 1,
    [28] = 1,   [29] = 1,   [30] = 1,   [31] = 1,   [' '] = 1,  [0x7f] = 1,
};

/* Blank, or a comment: nothing to do. */
static bool is_skipped(const char *s)
{
  while (is_blank(*s))
    s++;
  return *s == '\0' || *s == '#';
}

static void set_error(akg_list_entry *e, unsigned long line, const char *fmt, const char *arg)
{
  if (e->error)
    return; /* the first problem of an entry is the one said */
  char msg[600];
  int n = snprintf(msg, sizeof msg, "line %lu: ", line);
  snprintf(msg + n, sizeof msg - (size_t)n, fmt, arg);
  e->error = strdup(msg);
  if (!e->error)
    e->oom = true;
}

static char *dup_or_flag(akg_list_entry *e, const char *s)
{
  char *d = strdup(s);
  if (!d)
    e->oom = true;
  return d;
}

/* Trailing blanks off s (in place). */
static void rtrim(char *s)
{
  size_t n = strlen(s);
  while (n > 0 && is_blank(s[n - 1]))
    s[--n] = '\0';
}

static void take_option(akg_list_reader *r, akg_list_entry *e, char *s)
{
  unsigned long line = r->line;
  while (is_blank(*s))
    s++;
  rtrim(s);
  char *eq = strchr(s, '=');
  if (!eq) {
    set_error(e, line, "'%.200s' is not key=value (an indented line is an option of the URL above)",
              s);
    return;
  }
  *eq = '\0';
  const char *key = s, *value = eq + 1;
  if (strpbrk(key, ":/")) {
    set_error(e, line, "'%.200s...' is indented: a URL starts at the beginning of its line", key);
    return;
  }
  if (strcmp(key, "out") == 0 || strcmp(key, "dir") == 0) {
    char **slot = key[0] == 'o' ? &e->out : &e->dir;
    if (*slot) {
      set_error(e, line, "%s= given twice for one URL", key);
      return;
    }
    *slot = dup_or_flag(e, value);
    *(key[0] == 'o' ? &e->out_line : &e->dir_line) = line;
  } else if (strcmp(key, "checksum") == 0) {
    if (e->checksum) {
      set_error(e, line, "%s given twice for one URL", "a checksum");
      return;
    }
    e->checksum = dup_or_flag(e, value);
    e->checksum_line = line;
  } else if (strcmp(key, "header") == 0) {
    if (!strchr(value, ':')) {
      set_error(e, line, "header=%.300s is not 'Name: value'", value);
      return;
    }
    char **h = realloc(e->headers, (e->header_count + 1) * sizeof *h);
    if (!h) {
      e->oom = true;
      return;
    }
    e->headers = h;
    if ((h[e->header_count] = dup_or_flag(e, value)) != NULL)
      e->header_count++;
  } else {
    set_error(e, line, "unknown key '%.100s' (akget knows out, dir, checksum, header)", key);
  }
}

int akg_list_next(akg_list_reader *r, akg_list_entry *e)
{
  memset(e, 0, sizeof *e);
  /* The entry's first line: a pending URL line, else the next line that
   * is not skipped. */
  for (;;) {
    if (!r->pending && read_line(r) == 0)
      return r->err ? r->err : 0;
    r->pending = false;
    if (!is_skipped(r->buf))
      break;
  }
  e->line = r->line;
  if (r->has_nul || r->too_long) {
    set_error(e, r->line, r->has_nul ? "a NUL byte%s" : "longer than %s bytes",
              r->has_nul ? "" : AKG_LIST_LINE_MAX_TEXT);
  } else if (is_blank(r->buf[0])) {
    /* Options with no URL above them (the list's first entry, or after a
     * URL line that was itself an error): an entry of its own, in error. */
    take_option(r, e, r->buf);
    set_error(e, e->line, "an indented option line%s with no URL line above it", "");
  } else {
    char *s = r->buf;
    /* The URL's end (a blank or the line's end) and, on the way, a
     * control byte inside it (a lone CR in the middle of a line, an
     * escape): an error with its line, never a URL that holds it. One
     * pass, by a table (a strcspn, then a test per byte, were 0.45K
     * instructions a URL). */
    size_t ul = 0;
    bool control = false;
    /* Eight bytes at a time while none is below '!' (a blank, a control
     * byte, the NUL) or DEL; the table finds which one from there. */
    const uint64_t ones = 0x0101010101010101u, highs = 0x8080808080808080u;
    while (r->len - ul >= 8) {
      uint64_t w;
      memcpy(&w, s + ul, 8);
      uint64_t d = w ^ (ones * 0x7f);
      if (((w - ones * 0x21) & ~w & highs) | ((d - ones) & ~d & highs))
        break;
      ul += 8;
    }
    for (;;) {
      while (!url_stop[(unsigned char)s[ul]])
        ul++;
      if (s[ul] == '\0' || is_blank(s[ul]))
        break;
      control = true;
      ul++;
    }
    char *rest = s + ul;
    if (*rest)
      *rest++ = '\0';
    while (is_blank(*rest))
      rest++;
    rtrim(rest);
    if (control)
      set_error(e, e->line, "a control byte in the URL%s", "");
    else if (ul + 1 > r->url_cap) {
      char *u = malloc(ul + 1 > 256 ? ul + 1 : 256);
      if (u) {
        if (r->url) /* the old URL may carry user:password@ */
          explicit_bzero(r->url, r->url_cap);
        free(r->url);
        r->url = u;
        r->url_cap = ul + 1 > 256 ? ul + 1 : 256;
      } else {
        e->oom = true;
      }
    }
    if (!control && !e->oom) {
      memcpy(r->url, s, ul + 1);
      e->url = r->url;
    }
    if (*rest) {
      if (strpbrk(rest, " \t"))
        set_error(e, e->line, "more than a URL and a checksum on the line ('%.200s')", rest);
      else {
        e->checksum = dup_or_flag(e, rest);
        e->checksum_line = e->line;
      }
    }
  }
  /* Its option lines: indented ones up to the next line that is not. */
  while (read_line(r) == 1) {
    /* A blank line ends the entry: what follows may not be written yet
     * (a producer on a pipe), and the entry need not wait for it. */
    if (r->buf[strspn(r->buf, " \t")] == '\0')
      break;
    if (is_skipped(r->buf))
      continue;
    if (!is_blank(r->buf[0])) {
      r->pending = true;
      break;
    }
    if (r->has_nul || r->too_long)
      set_error(e, r->line, r->has_nul ? "a NUL byte%s" : "longer than %s bytes",
                r->has_nul ? "" : AKG_LIST_LINE_MAX_TEXT);
    else
      take_option(r, e, r->buf);
  }
  return 1;
}

void akg_list_entry_clear(akg_list_entry *e)
{
  free(e->out);
  free(e->dir);
  free(e->checksum);
  for (size_t i = 0; i < e->header_count; i++)
    free(e->headers[i]);
  free(e->headers);
  free(e->error);
  memset(e, 0, sizeof *e);
}

const char *akg_list_path_problem(const char *rel)
{
  if (!rel[0])
    return "is empty";
  if (rel[0] == '/')
    return "is absolute (it must stay under -d)";
  for (const unsigned char *p = (const unsigned char *)rel; *p; p++)
    if (*p < 0x20 || *p == 0x7f)
      return "holds a control byte";
  for (const char *c = rel;;) {
    size_t n = strcspn(c, "/");
    if (n == 0)
      return "has an empty component ('//' or a trailing '/')";
    if (n == 2 && c[0] == '.' && c[1] == '.')
      return "has a '..' component (it must stay under -d)";
    if (c[n] == '\0')
      break;
    c += n + 1;
  }
  return NULL;
}
