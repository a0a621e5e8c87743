/* resume_record.c: the control record of a partial download (-c), kept in a
 * sidecar "NAME.akget-part.ctl" next to the part file: which byte ranges of
 * the entity are known to be on disk, the entity's size, its validators
 * (ETag, Last-Modified) and the URL it belongs to. This file owns the
 * on-disk format and the extent arithmetic; when a record is written (and
 * what it may claim) is download.c's business.
 *
 * The sidecar holds two fixed-size slots of AKG_REC_SLOT bytes. Each store
 * writes the slot the previous one did not (by its sequence number), so a
 * store torn by a crash leaves the other slot, one step older, intact: the
 * record may lag the data, never lead it. A slot is read only if its magic,
 * version, length and FNV-1a checksum agree and it names the same URL.
 *
 * Slot layout (little-endian):
 *    0  "AKGETCTL"            8  version (u32)      12  slot length (u32)
 *   16  sequence (u64)       24  entity size (i64, -1: unknown)
 *   32  FNV-1a of the URL    40  URL length (u32)   44  ETag length (u16)
 *   46  Last-Modified length (u16)                  48  extent count (u32)
 *   52  reserved (12 bytes)  64  ETag (512)        576  Last-Modified (64)
 *  640  extents: count x (start i64, length i64)
 *  SLOT-8  FNV-1a of bytes [0, SLOT-8) */
#include "akget.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum {
  REC_VERSION = 1,
  OFF_ETAG = 64,
  OFF_LM = OFF_ETAG + AKG_REC_ETAG_MAX + 1,
  OFF_EXT = OFF_LM + AKG_REC_DATE_MAX + 1,
  OFF_SUM = AKG_REC_SLOT - 8,
};
_Static_assert(OFF_EXT + AKG_REC_MAX_EXTENTS * 16 <= OFF_SUM, "extents fit in a slot");

static const char magic[8] = {'A', 'K', 'G', 'E', 'T', 'C', 'T', 'L'};

uint64_t akg_fnv64(const void *data, size_t len)
{
  const unsigned char *p = data;
  uint64_t h = 0xcbf29ce484222325u;
  for (size_t i = 0; i < len; i++) {
    h ^= p[i];
    h *= 0x100000001b3u;
  }
  return h;
}

static void put64(unsigned char *p, uint64_t v)
{
  for (int i = 0; i < 8; i++)
    p[i] = (unsigned char)(v >> (8 * i));
}

static uint64_t get64(const unsigned char *p)
{
  uint64_t v = 0;
  for (int i = 0; i < 8; i++)
    v |= (uint64_t)p[i] << (8 * i);
  return v;
}

static void put32(unsigned char *p, uint32_t v)
{
  for (int i = 0; i < 4; i++)
    p[i] = (unsigned char)(v >> (8 * i));
}

static uint32_t get32(const unsigned char *p)
{
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void put16(unsigned char *p, unsigned v)
{
  p[0] = (unsigned char)v;
  p[1] = (unsigned char)(v >> 8);
}

static unsigned get16(const unsigned char *p)
{
  return p[0] | (unsigned)p[1] << 8;
}

void akg_record_clear(akg_record *r)
{
  /* The sequence stays (stores go on alternating slots); the extents past
   * n are never read: no memset of the whole record per download. */
  r->size = -1;
  r->etag[0] = '\0';
  r->last_modified[0] = '\0';
  r->n = 0;
}

static void encode(const akg_record *r, const char *url, unsigned char *s)
{
  memset(s, 0, AKG_REC_SLOT);
  memcpy(s, magic, 8);
  put32(s + 8, REC_VERSION);
  put32(s + 12, AKG_REC_SLOT);
  put64(s + 16, r->seq);
  put64(s + 24, (uint64_t)r->size);
  size_t ulen = strlen(url);
  put64(s + 32, akg_fnv64(url, ulen));
  put32(s + 40, (uint32_t)ulen);
  size_t el = strlen(r->etag), ll = strlen(r->last_modified);
  put16(s + 44, (unsigned)el);
  put16(s + 46, (unsigned)ll);
  put32(s + 48, r->n);
  memcpy(s + OFF_ETAG, r->etag, el);
  memcpy(s + OFF_LM, r->last_modified, ll);
  for (unsigned i = 0; i < r->n; i++) {
    put64(s + OFF_EXT + 16 * i, (uint64_t)r->ext[i].start);
    put64(s + OFF_EXT + 16 * i + 8, (uint64_t)r->ext[i].len);
  }
  put64(s + OFF_SUM, akg_fnv64(s, OFF_SUM));
}

/* Extents sorted, disjoint, not touching, inside the size: what every
 * store writes, so anything else is not akget's. */
static bool extents_are_sane(const akg_record *r)
{
  int64_t prev_end = -1;
  for (unsigned i = 0; i < r->n; i++) {
    const akg_extent *e = &r->ext[i];
    if (e->start < 0 || e->len <= 0 || e->start <= prev_end || e->len > INT64_MAX - e->start)
      return false;
    prev_end = e->start + e->len;
    if (r->size >= 0 && prev_end > r->size)
      return false;
  }
  return true;
}

/* Decodes slot s into r; NULL if it is a record of url, else why not. */
static const char *decode(const unsigned char *s, const char *url, akg_record *r)
{
  if (memcmp(s, magic, 8) != 0)
    return "not a record (garbage)";
  if (get64(s + OFF_SUM) != akg_fnv64(s, OFF_SUM))
    return "checksum mismatch (torn or garbage)";
  if (get32(s + 8) != REC_VERSION || get32(s + 12) != AKG_REC_SLOT)
    return "a record of another format version";
  size_t ulen = strlen(url);
  if (get32(s + 40) != ulen || get64(s + 32) != akg_fnv64(url, ulen))
    return "a record of another URL";
  unsigned el = get16(s + 44), ll = get16(s + 46);
  uint32_t n = get32(s + 48);
  if (el > AKG_REC_ETAG_MAX || ll > AKG_REC_DATE_MAX || n > AKG_REC_MAX_EXTENTS)
    return "counts out of bounds";
  akg_record_clear(r);
  r->seq = get64(s + 16);
  r->size = (int64_t)get64(s + 24);
  memcpy(r->etag, s + OFF_ETAG, el);
  r->etag[el] = '\0';
  memcpy(r->last_modified, s + OFF_LM, ll);
  r->last_modified[ll] = '\0';
  r->n = n;
  for (unsigned i = 0; i < n; i++) {
    r->ext[i].start = (int64_t)get64(s + OFF_EXT + 16 * i);
    r->ext[i].len = (int64_t)get64(s + OFF_EXT + 16 * i + 8);
  }
  if (r->size < -1 || !extents_are_sane(r))
    return "extents out of order or past the size";
  return NULL;
}

int akg_record_load(int fd, const char *url, akg_record *out, char *why, size_t why_len)
{
  unsigned char *buf = malloc(2 * AKG_REC_SLOT);
  akg_record *tmp = malloc(sizeof *tmp);
  int rc = -1;
  if (!buf || !tmp) {
    snprintf(why, why_len, "out of memory");
    goto done;
  }
  ssize_t got = pread(fd, buf, 2 * AKG_REC_SLOT, 0);
  if (got < 0) {
    snprintf(why, why_len, "unreadable: %s", strerror(errno));
    goto done;
  }
  if (got == 0) {
    snprintf(why, why_len, "none");
    rc = 0;
    goto done;
  }
  if (got != 2 * AKG_REC_SLOT) {
    snprintf(why, why_len, "truncated (%zd bytes)", got);
    goto done;
  }
  const char *bad = NULL;
  bool found = false;
  for (int slot = 0; slot < 2; slot++) {
    const char *w = decode(buf + slot * AKG_REC_SLOT, url, tmp);
    if (w) {
      if (!bad || strcmp(w, "not a record (garbage)") != 0)
        bad = w; /* a torn second slot says less than another URL */
      continue;
    }
    if (!found || tmp->seq > out->seq) {
      *out = *tmp;
      found = true;
    }
  }
  if (found)
    rc = 1;
  else
    snprintf(why, why_len, "%s", bad);
done:
  free(tmp);
  free(buf);
  return rc;
}

int akg_record_store(int fd, const char *url, akg_record *r)
{
  unsigned char *s = malloc(AKG_REC_SLOT);
  if (!s)
    return -ENOMEM;
  r->seq++;
  encode(r, url, s);
  ssize_t n = pwrite(fd, s, AKG_REC_SLOT, (off_t)(r->seq % 2) * AKG_REC_SLOT);
  int rc = n == AKG_REC_SLOT ? 0 : n < 0 ? -errno : -EIO;
  free(s);
  return rc;
}

/* ---- extents ------------------------------------------------------------------- */

int64_t akg_extents_bytes(const akg_record *r)
{
  int64_t n = 0;
  for (unsigned i = 0; i < r->n; i++)
    n += r->ext[i].len;
  return n;
}

void akg_extents_add(akg_record *r, int64_t start, int64_t len)
{
  if (len <= 0)
    return;
  int64_t end = start + len;
  /* Everything touching [start, end) merges into it. */
  akg_extent keep[AKG_REC_MAX_EXTENTS + 1];
  unsigned k = 0;
  bool placed = false;
  for (unsigned i = 0; i < r->n; i++) {
    akg_extent e = r->ext[i];
    if (e.start + e.len < start) {
      keep[k++] = e;
    } else if (e.start > end) {
      if (!placed) {
        keep[k++] = (akg_extent){start, end - start};
        placed = true;
      }
      keep[k++] = e;
    } else {
      if (e.start < start)
        start = e.start;
      if (e.start + e.len > end)
        end = e.start + e.len;
    }
  }
  if (!placed)
    keep[k++] = (akg_extent){start, end - start};
  /* Past the record's room: forget the shortest extent (its bytes are
   * fetched again; forgetting is safe, claiming is not). */
  while (k > AKG_REC_MAX_EXTENTS) {
    unsigned s = 0;
    for (unsigned i = 1; i < k; i++)
      if (keep[i].len < keep[s].len)
        s = i;
    memmove(&keep[s], &keep[s + 1], (k - s - 1) * sizeof keep[0]);
    k--;
  }
  memcpy(r->ext, keep, k * sizeof keep[0]);
  r->n = k;
}

unsigned akg_extents_gaps(const akg_record *r, int64_t size, akg_extent *out, unsigned max)
{
  unsigned n = 0;
  int64_t pos = 0;
  for (unsigned i = 0; i <= r->n && n < max; i++) {
    int64_t next = i < r->n ? r->ext[i].start : size;
    if (next > size)
      next = size;
    if (next > pos)
      out[n++] = (akg_extent){pos, next - pos};
    if (i < r->n && r->ext[i].start + r->ext[i].len > pos)
      pos = r->ext[i].start + r->ext[i].len;
  }
  return n;
}
