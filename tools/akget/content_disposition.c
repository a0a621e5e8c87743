/* content_disposition.c: --content-disposition: the file name a server
 * gives in its Content-Disposition header (RFC 6266), made safe or
 * refused. Nothing of the header is trusted: its length is bounded, the
 * name is taken from filename*= (RFC 8187/5987 ext-value, UTF-8 or
 * ISO-8859-1, percent-decoded) before filename= (a token or a quoted
 * string), reduced to its last path component (after the last '/' or
 * '\', as wget does), and refused when what is left is empty, "." or
 * "..", starts with a dot (a hidden file, or one a shell or tool treats
 * specially), holds a control byte (0x00-0x1f, 0x7f), or is longer than a
 * file name may be (255 bytes). A refused name leaves the URL's name in
 * place, as wget falls back to the URL's name when the header gives it no
 * usable name. Pure: no IO, no state (the fuzz target calls it alone). */
#include "akget.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

enum {
  CD_MAX_HEADER = 8192, /* a longer header is not read at all */
  CD_MAX_NAME = 255,    /* NAME_MAX on Linux filesystems: bytes after decoding */
};

static bool is_ows(char c)
{
  return c == ' ' || c == '\t';
}

/* RFC 9110 tchar. */
static bool is_tchar(unsigned char c)
{
  return isalnum(c) || (c && strchr("!#$%&'*+-.^_`|~", c));
}

static int hexval(unsigned char c)
{
  if (c >= '0' && c <= '9')
    return c - '0';
  c = (unsigned char)tolower(c);
  return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

typedef struct span {
  char buf[4 * CD_MAX_NAME + 4]; /* a value, unquoted (bounded: longer is refused) */
  size_t len;
  bool too_long;
} span;

static void span_put(span *s, unsigned char c)
{
  if (s->len + 1 >= sizeof s->buf) {
    s->too_long = true;
    return;
  }
  s->buf[s->len++] = (char)c;
  s->buf[s->len] = '\0';
}

/* A parameter's value at *p (a quoted string or a token) into out; moves
 * *p past it. False if malformed. */
static bool read_value(const char **p, const char *end, span *out)
{
  const char *s = *p;
  out->len = 0;
  out->buf[0] = '\0';
  out->too_long = false;
  if (s < end && *s == '"') {
    for (s++; s < end && *s != '"'; s++) {
      if (*s == '\\' && s + 1 < end)
        s++;
      span_put(out, (unsigned char)*s);
    }
    if (s >= end)
      return false; /* no closing quote */
    *p = s + 1;
    return true;
  }
  while (s < end && is_tchar((unsigned char)*s))
    span_put(out, (unsigned char)*s++);
  *p = s;
  return out->len > 0 || out->too_long;
}

/* An RFC 8187 ext-value (charset'language'pct-encoded) decoded into out as
 * UTF-8. False if malformed or of another charset. */
static bool decode_ext(const span *v, span *out)
{
  const char *s = v->buf, *end = v->buf + v->len;
  const char *q1 = memchr(s, '\'', v->len);
  const char *q2 = q1 ? memchr(q1 + 1, '\'', (size_t)(end - q1 - 1)) : NULL;
  if (!q2)
    return false;
  size_t cl = (size_t)(q1 - s);
  bool utf8 = cl == 5 && strncasecmp(s, "UTF-8", 5) == 0;
  bool latin1 = cl == 10 && strncasecmp(s, "ISO-8859-1", 10) == 0;
  if (!utf8 && !latin1)
    return false;
  out->len = 0;
  out->buf[0] = '\0';
  out->too_long = false;
  for (s = q2 + 1; s < end; s++) {
    unsigned char c = (unsigned char)*s;
    if (c == '%') {
      if (end - s < 3 || hexval((unsigned char)s[1]) < 0 || hexval((unsigned char)s[2]) < 0)
        return false;
      c = (unsigned char)(hexval((unsigned char)s[1]) << 4 | hexval((unsigned char)s[2]));
      s += 2;
    } else if (!is_tchar(c) || c == '%' || c == '\'' || c == '*') {
      return false; /* attr-char only */
    }
    if (latin1 && c >= 0x80) {
      span_put(out, (unsigned char)(0xc0 | c >> 6));
      span_put(out, (unsigned char)(0x80 | (c & 0x3f)));
    } else {
      span_put(out, c);
    }
  }
  return true;
}

/* The checks of the last component name[0..len). NULL if safe, else why. */
static const char *refusal(const char *name, size_t len)
{
  if (len == 0)
    return "it is empty";
  if ((len == 1 && name[0] == '.') || (len == 2 && name[0] == '.' && name[1] == '.'))
    return "it names a directory ('.' or '..')";
  if (name[0] == '.')
    return "it starts with a dot";
  for (size_t i = 0; i < len; i++)
    if ((unsigned char)name[i] < 0x20 || (unsigned char)name[i] == 0x7f)
      return "it holds a control byte";
  if (len > CD_MAX_NAME)
    return "it is longer than 255 bytes";
  return NULL;
}

int akg_cd_filename(const char *value, char **out, char *why, size_t why_len)
{
  *out = NULL;
  if (why_len)
    why[0] = '\0';
  size_t vlen = strnlen(value, CD_MAX_HEADER + 1);
  if (vlen > CD_MAX_HEADER) {
    snprintf(why, why_len, "the header is longer than %d bytes", CD_MAX_HEADER);
    return -1;
  }
  const char *p = value, *end = value + vlen;
  /* The disposition type (attachment, inline, anything): a token. */
  while (p < end && is_tchar((unsigned char)*p))
    p++;
  static __thread span plain, ext, v; /* 1 KiB each: off the (small) loop stack */
  bool have_plain = false, have_ext = false, plain_long = false, ext_long = false;
  while (p < end) {
    while (p < end && is_ows(*p))
      p++;
    if (p >= end || *p != ';')
      break; /* malformed: what was read so far stands, as wget's parser */
    p++;
    while (p < end && is_ows(*p))
      p++;
    const char *name = p;
    while (p < end && is_tchar((unsigned char)*p))
      p++;
    size_t nl = (size_t)(p - name);
    while (p < end && is_ows(*p))
      p++;
    if (nl == 0 || p >= end || *p != '=')
      break;
    p++;
    while (p < end && is_ows(*p))
      p++;
    if (!read_value(&p, end, &v))
      break;
    if (nl == 9 && strncasecmp(name, "filename*", 9) == 0 && !have_ext) {
      if (v.too_long)
        ext_long = true;
      else if (decode_ext(&v, &ext))
        have_ext = true, ext_long = ext.too_long;
    } else if (nl == 8 && strncasecmp(name, "filename", 8) == 0 && !have_plain) {
      plain = v;
      have_plain = true;
      plain_long = v.too_long;
    }
  }
  /* filename* wins (RFC 6266 4.3); a plain filename= stands in for one
   * that could not be decoded. */
  const span *chosen = have_ext ? &ext : have_plain ? &plain : NULL;
  bool too_long = have_ext ? ext_long : plain_long;
  if (!chosen && !ext_long)
    return 0;
  if (too_long || !chosen) {
    snprintf(why, why_len, "the name is longer than %d bytes", CD_MAX_NAME);
    return -1;
  }
  /* Its last path component ('\' too: a name made on Windows). */
  const char *b = chosen->buf;
  size_t len = chosen->len;
  for (size_t i = len; i > 0; i--) {
    if (chosen->buf[i - 1] == '/' || chosen->buf[i - 1] == '\\') {
      b = chosen->buf + i;
      len = chosen->len - i;
      break;
    }
  }
  const char *r = refusal(b, len);
  if (r) {
    snprintf(why, why_len, "%s", r);
    return -1;
  }
  *out = strndup(b, len);
  if (!*out)
    return -ENOMEM;
  if (b != chosen->buf)
    snprintf(why, why_len, "its last path component taken");
  return 1;
}
