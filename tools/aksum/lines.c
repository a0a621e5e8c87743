/* lines.c: how aksum's records (checksum lines, "name: OK" lines, -z's
 * NUL-ended records) reach standard output: each record whole in one
 * write(2), so that several aksum processes writing one pipe or file (a
 * `find | xargs -P4 aksum` job) never cut each other's lines, and batched,
 * so that the writes stay few.
 *
 * The batch is what fits the kind of output in one write that the kernel
 * keeps whole against other writers:
 *   - a pipe, FIFO or socket: at most PIPE_BUF (4096) bytes, since a pipe
 *     write of more may be split when the pipe is full and another
 *     writer's bytes put in between (pipe(7));
 *   - a regular file: 64 KiB (a write to a file is done whole under the
 *     inode's lock, and processes sharing the open file, as xargs's
 *     children do, share its offset under f_pos_lock);
 *   - a terminal: a record per write, so that lines show as they come (as
 *     coreutils' line buffering does everywhere).
 * A batch always ends at a record's end. A record longer than the batch
 * goes in one write of its own (on a pipe that cannot be whole past
 * PIPE_BUF bytes: sha256sum cuts it too).
 *
 * stdio's stdout is not used for records: its buffer flushes where it
 * fills, in the middle of a line. Whatever else writes stdout (--json -)
 * calls aks_out_flush first.
 */
#define _GNU_SOURCE
#include "aksum.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

enum { FILE_BATCH = 64 * 1024 };

static struct {
  char *buf;
  size_t len;       /* bytes held */
  size_t rec_start; /* where the record being built starts (len: none) */
  size_t cap;
  size_t batch;     /* write when a batch would pass this */
  bool per_record;  /* a terminal: every record at once */
  bool ready;       /* aks_out_init ran */
  int err;          /* the first write error (-errno), then nothing more is written */
} out;

void aks_out_init(void)
{
  struct stat st;
  out.batch = PIPE_BUF;
  if (fstat(STDOUT_FILENO, &st) == 0 && S_ISREG(st.st_mode))
    out.batch = FILE_BATCH;
  out.per_record = isatty(STDOUT_FILENO);
  out.ready = true;
}

/* Writes n bytes at p whole (short writes continued, EINTR retried). */
static void write_all(const char *p, size_t n)
{
  while (n > 0 && out.err == 0) {
    ssize_t w = write(STDOUT_FILENO, p, n);
    if (w < 0 && errno == EINTR)
      continue;
    if (w < 0) {
      out.err = -errno;
      return;
    }
    p += w;
    n -= (size_t)w;
  }
}

/* Writes the complete records held; keeps the one being built. */
static void write_complete(void)
{
  if (out.rec_start == 0)
    return;
  write_all(out.buf, out.rec_start);
  memmove(out.buf, out.buf + out.rec_start, out.len - out.rec_start);
  out.len -= out.rec_start;
  out.rec_start = 0;
}

void aks_out_put(const void *data, size_t n)
{
  if (!out.ready)
    aks_out_init();
  /* The record being built would take the batch past its bound: what is
   * before it goes now, so that each write ends at a record's end. */
  if (out.len + n > out.batch)
    write_complete();
  if (out.len + n > out.cap) {
    size_t cap = out.cap ? out.cap : out.batch * 2;
    while (cap < out.len + n)
      cap *= 2;
    char *b = realloc(out.buf, cap);
    if (!b) {
      /* NEVER on a record of a few KiB; if it does, the bytes still go
       * out, only not whole. */
      write_all(out.buf, out.len);
      out.len = out.rec_start = 0;
      write_all(data, n);
      return;
    }
    out.buf = b;
    out.cap = cap;
  }
  memcpy(out.buf + out.len, data, n);
  out.len += n;
}

void aks_out_puts(const char *s)
{
  aks_out_put(s, strlen(s));
}

void aks_out_putc(char c)
{
  aks_out_put(&c, 1);
}

void aks_out_end_record(void)
{
  out.rec_start = out.len;
  if (out.per_record || out.len >= out.batch)
    write_complete();
}

int aks_out_flush(void)
{
  out.rec_start = out.len; /* nothing is left half-built at a flush */
  write_complete();
  return out.err;
}

void aks_out_free(void)
{
  free(out.buf);
  out.buf = NULL;
  out.len = out.cap = out.rec_start = 0;
}
