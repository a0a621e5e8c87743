/* check.c: -c [LIST]...: reads checksum lists as coreutils 9.1's sha256sum
 * (md5sum, ..., b2sum) reads it: "HEX  name", "HEX *name", "HEX name" (BSD
 * reversed), a leading backslash when the name is escaped, the --tag form
 * ("SHA256 (name) = HEX"), CRLF line ends, leading blanks, blank lines and
 * '#' comments; and makes one item per line with the expected digest.
 * Other lines are counted as improperly formatted (reported at the end, or
 * each with --warn, as sha256sum does). Several lists are read in order,
 * each one's lines after the last list's; everything a list has to say
 * (its lines, warnings, errors) comes out in its turn (output.c). */
#define _GNU_SOURCE
#include "aksum.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

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

/* How the untagged lines of one list are split, fixed by its first such
 * line as sha256sum fixes it: "HEX  name" / "HEX *name" (GNU), or
 * "HEX name" (BSD reversed: everything after the one blank is the name). */
typedef enum { FORM_UNKNOWN, FORM_GNU, FORM_BSD } line_form;

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
static bool parse_tagged(char *p, size_t len, const aks_algo *algo, bool escaped, size_t *dlen,
                         char **hex, char **name)
{
  *dlen = algo->digest_len;
  if (algo == aks_algo_get(AKS_BLAKE2B) && *p == '-' && !parse_b2_bits(&p, &len, dlen))
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

/* Splits one line (no line end; NUL-terminated, len bytes) into digest and
 * name (pointers into line), the way coreutils 9.1's split_3 does: leading
 * blanks skipped, an optional backslash (the name is escaped), the --tag
 * form, or the digest, one blank, and the name (see line_form). BLAKE2b's
 * untagged digest may be of any even length up to 128 hex digits, as b2sum
 * takes it (the line says the length, whatever -l says). */
static bool parse_line(char *line, size_t len, const aks_algo *algo, line_form *form, size_t *dlen,
                       char **hex, char **name)
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
  if (algo == aks_algo_get(AKS_BLAKE2B)) {
    hexlen = 0;
    while (isxdigit((unsigned char)line[i + hexlen]))
      hexlen++;
    if (hexlen < 2 || hexlen % 2 != 0 || hexlen > 2 * AKS_DIGEST_MAX)
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
    if (*form == FORM_GNU)
      return false;
    *form = FORM_BSD;
  } else if (*form != FORM_BSD) {
    *form = FORM_GNU;
    rest++; /* ' ' text or '*' binary: the same bytes are hashed */
  }
  *name = rest;
  return !escaped || unescape(rest);
}

/* Notes an improperly formatted line of the list (named in its turn with
 * --warn). */
static int add_improper(aks_run *run, aks_list *l, size_t lineno)
{
  if (l->improper % 64 == 0) {
    size_t *more = realloc(l->improper_at, (l->improper + 64) * sizeof(*more));
    if (!more)
      return -ENOMEM;
    l->improper_at = more;
  }
  l->improper_at[l->improper++] = lineno;
  run->improper++;
  return 0;
}

/* One list into items. A list that cannot be opened or read keeps its
 * error for its turn; so does one without a single checksum line. */
static int load_list(aks_run *run, aks_list *l, unsigned index)
{
  bool from_stdin = strcmp(l->path, "-") == 0;
  FILE *fp = from_stdin ? stdin : fopen(l->path, "re");
  if (!fp) {
    l->err = -errno;
    return 0;
  }
  const aks_algo *algo = run->opts.algo;
  /* sha256sum fixes the form by the first line of the whole run; aksum by
   * each list's (docs/aksum.md). */
  line_form form = FORM_UNKNOWN;
  char *line = NULL;
  size_t cap = 0;
  ssize_t len;
  size_t lineno = 0, lines = 0;
  int rc = 0;
  while (rc == 0 && (len = getline(&line, &cap, fp)) > 0) {
    lineno++;
    /* sha256sum's order: a '#' first on the line makes a comment (before
     * any blank is skipped); then the newline and one carriage return go;
     * then an empty line is skipped. */
    if (line[0] == '#')
      continue;
    if (line[len - 1] == '\n')
      line[--len] = '\0';
    if (len > 0 && line[len - 1] == '\r')
      line[--len] = '\0';
    if (len == 0)
      continue;
    char *hex, *name;
    size_t dlen;
    if (strlen(line) != (size_t)len ||
        !parse_line(line, (size_t)len, algo, &form, &dlen, &hex, &name)) {
      rc = add_improper(run, l, lineno);
      continue;
    }
    aks_item *it = aks_item_add(run, name);
    if (!it || !(it->expect = strdup(hex))) {
      rc = -ENOMEM;
      break;
    }
    lines++;
    it->list = index;
    it->improper_before = l->improper;
    it->digest_len = dlen;
    for (char *h = it->expect; *h; h++)
      *h = (char)tolower((unsigned char)*h);
    struct stat st;
    if (strcmp(name, "-") == 0) {
      it->stream = it->is_stdin = true;
    } else if (stat(name, &st) == 0) {
      it->mode = st.st_mode;
      it->size_hint = S_ISREG(st.st_mode) ? st.st_size : -1;
      it->stream = !S_ISREG(st.st_mode) && !S_ISDIR(st.st_mode);
    }
    /* A missing file fails when the pipeline opens it, in its turn. */
  }
  if (ferror(fp))
    l->read_error = true;
  free(line);
  if (fp != stdin)
    fclose(fp);
  l->no_lines = lines == 0 && !l->read_error;
  return rc;
}

int aks_check_load(aks_run *run, char *const *paths, size_t n)
{
  static char *const dash[] = {"-"};
  if (n == 0)
    paths = dash, n = 1;
  run->lists = calloc(n, sizeof(*run->lists));
  if (!run->lists)
    return -ENOMEM;
  run->n_lists = n;
  for (size_t i = 0; i < n; i++) {
    aks_list *l = &run->lists[i];
    l->path = paths[i];
    l->shown = strcmp(paths[i], "-") == 0 ? "standard input" : paths[i];
    int rc = load_list(run, l, (unsigned)i);
    if (rc < 0)
      return rc;
  }
  return 0;
}
