/* sumline.c: the checksum-list reader and line parser shared by aksum -c and akget
 * --checksums (sumline.h): coreutils 9.1's split_3 and its --tag branch:
 * "HEX  name", "HEX *name", "HEX name" (BSD reversed), a leading backslash
 * when the name is escaped (\\ \n \r), and "TAG (name) = HEX"; and the
 * lines to judge read as sha256sum reads them (comments, CRLF, blank
 * lines: aks_sumline_next). */
#define _GNU_SOURCE
#include "sumline.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

static bool is_hex_run(const char *s, size_t n)
{
  for (size_t i = 0; i < n; i++)
    if (!isxdigit((unsigned char)s[i]))
      return false;
  return true;
}

/* Undoes sha256sum's escaping in place (\\ \n \r); false if malformed. */
static bool unescape(char *s)
{
  char *w = s;
  for (const char *r = s; *r; r++) {
    if (*r != '\\') {
      *w++ = *r;
      continue;
    }
    r++;
    if (*r == '\\')
      *w++ = '\\';
    else if (*r == 'n')
      *w++ = '\n';
    else if (*r == 'r')
      *w++ = '\r';
    else
      return false;
  }
  *w = '\0';
  return true;
}

static bool is_blank(char c)
{
  return c == ' ' || c == '\t';
}

/* b2sum's "-N" after "BLAKE2b" in the --tag form: N bits, read as
 * coreutils reads it (strtoumax in base 0 after optional blanks, so " 8",
 * "+8" and "0x8" are 8; no '-'; what follows is the rest of the line), a
 * multiple of 8 from 8 to 512. Moves *p past it; false if malformed. */
static bool parse_b2_bits(char **p, size_t *len, size_t *bytes)
{
  const char *q = *p + 1;
  while (isspace((unsigned char)*q))
    q++;
  if (*q == '-')
    return false;
  char *end;
  errno = 0;
  uintmax_t bits = strtoumax(*p + 1, &end, 0);
  if (end == *p + 1 || errno != 0 || bits == 0 || bits > 512 || bits % 8 != 0)
    return false;
  *len -= (size_t)(end - *p);
  *p = end;
  *bytes = (size_t)(bits / 8);
  return true;
}

/* The --tag form after "TAG": " (name) = HEX" (BLAKE2b may say its length
 * in bits, "BLAKE2b-256"; without it, 512). The name runs to the last
 * ')'. *dlen: the digest's bytes. */
static bool parse_tagged(char *p, size_t len, const aks_sumline_algo *algo, bool escaped,
                         size_t *dlen, char **hex, char **name)
{
  *dlen = algo->digest_len;
  if (algo->any_len && *p == '-' && !parse_b2_bits(&p, &len, dlen))
    return false;
  if (*p == ' ')
    p++, len--;
  if (*p != '(')
    return false;
  p++, len--;
  char *close = p + len;
  while (close > p && *close != ')')
    close--;
  if (*close != ')')
    return false;
  *close = '\0';
  char *h = close + 1;
  while (is_blank(*h))
    h++;
  if (*h != '=')
    return false;
  h++;
  while (is_blank(*h))
    h++;
  *hex = h;
  *name = p;
  return strlen(h) == *dlen * 2 && is_hex_run(h, strlen(h)) && (!escaped || unescape(p));
}

bool aks_sumline_parse(char *line, size_t len, const aks_sumline_algo *algo,
                       aks_sumline_form *form, size_t *dlen, char **hex, char **name)
{
  size_t i = 0;
  while (is_blank(line[i]))
    i++;
  bool escaped = line[i] == '\\';
  if (escaped)
    i++;
  size_t taglen = strlen(algo->tag);
  if (strncmp(line + i, algo->tag, taglen) == 0)
    return parse_tagged(line + i + taglen, len - i - taglen, algo, escaped, dlen, hex, name);
  size_t hexlen = algo->digest_len * 2;
  if (algo->any_len) {
    hexlen = 0;
    while (isxdigit((unsigned char)line[i + hexlen]))
      hexlen++;
    if (hexlen < 2 || hexlen % 2 != 0 || hexlen > 2 * algo->digest_len)
      return false;
  }
  *dlen = hexlen / 2;
  if (len - i < hexlen + 2)
    return false;
  char *p = line + i;
  if (!is_hex_run(p, hexlen) || !is_blank(p[hexlen]))
    return false;
  p[hexlen] = '\0';
  *hex = p;
  char *rest = p + hexlen + 1;
  size_t rest_len = len - i - hexlen - 1;
  if (rest_len == 1 || (*rest != ' ' && *rest != '*')) {
    /* No second blank or '*': the BSD reversed form, allowed only if the
     * list did not start with the GNU one (a name with a leading blank
     * must not be mistaken). */
    if (*form == AKS_SUMLINE_GNU)
      return false;
    *form = AKS_SUMLINE_BSD;
  } else if (*form != AKS_SUMLINE_BSD) {
    *form = AKS_SUMLINE_GNU;
    rest++; /* ' ' text or '*' binary: the same bytes are hashed */
  }
  *name = rest;
  return !escaped || unescape(rest);
}

int aks_sumline_pick(const char *line, const aks_sumline_algo *algos, size_t n)
{
  while (is_blank(*line))
    line++;
  if (*line == '\\')
    line++;
  for (size_t a = 0; a < n; a++) {
    size_t taglen = strlen(algos[a].tag);
    char next = line[taglen];
    if (strncmp(line, algos[a].tag, taglen) == 0 &&
        (next == ' ' || next == '(' || (next == '-' && algos[a].any_len)))
      return (int)a;
  }
  size_t hexlen = 0;
  while (isxdigit((unsigned char)line[hexlen]))
    hexlen++;
  for (size_t a = 0; a < n; a++)
    if (algos[a].digest_len * 2 == hexlen)
      return (int)a;
  return -1;
}

bool aks_sumline_next(FILE *fp, aks_sumline_reader *r)
{
  ssize_t len;
  while ((len = getline(&r->line, &r->cap, fp)) > 0) {
    r->lineno++;
    char *line = r->line;
    if (line[0] == '#')
      continue;
    if (line[len - 1] == '\n')
      line[--len] = '\0';
    if (len > 0 && line[len - 1] == '\r')
      line[--len] = '\0';
    if (len == 0)
      continue;
    r->len = (size_t)len;
    return true;
  }
  return false;
}
