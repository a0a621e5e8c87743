/* check.c: -c [LIST]: reads a checksum list as coreutils 9.1's sha256sum
 * (md5sum, ..., b2sum) reads it: "HEX  name", "HEX *name", "HEX name" (BSD
 * reversed), a leading backslash when the name is escaped, the --tag form
 * ("SHA256 (name) = HEX"), CRLF line ends, leading blanks, blank lines and
 * '#' comments; and makes one item per line with the expected digest.
 * Other lines are counted as improperly formatted (reported at the end, or
 * each with --warn, as sha256sum does). */
#define _GNU_SOURCE
#include "aksum.h"

#include <ctype.h>
#include <errno.h>
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

/* The --tag form after "TAG": " (name) = HEX" (BLAKE2b may say its length,
 * "BLAKE2b-512"). The name runs to the last ')'. */
static bool parse_tagged(char *p, size_t len, const aks_algo *algo, bool escaped, char **hex,
                         char **name)
{
  if (algo == aks_algo_get(AKS_BLAKE2B) && strncmp(p, "-512", 4) == 0)
    p += 4, len -= 4;
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
  return strlen(h) == algo->digest_len * 2 && is_hex_run(h, strlen(h)) && (!escaped || unescape(p));
}

/* Splits one line (no line end; NUL-terminated, len bytes) into digest and
 * name (pointers into line), the way coreutils 9.1's split_3 does: leading
 * blanks skipped, an optional backslash (the name is escaped), the --tag
 * form, or the digest, one blank, and the name (see line_form). */
static bool parse_line(char *line, size_t len, const aks_algo *algo, line_form *form, char **hex,
                       char **name)
{
  size_t i = 0;
  while (is_blank(line[i]))
    i++;
  bool escaped = line[i] == '\\';
  if (escaped)
    i++;
  size_t taglen = strlen(algo->tag);
  if (strncmp(line + i, algo->tag, taglen) == 0)
    return parse_tagged(line + i + taglen, len - i - taglen, algo, escaped, hex, name);
  size_t hexlen = algo->digest_len * 2;
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

int aks_check_load(aks_run *run, const char *path)
{
  bool from_stdin = strcmp(path, "-") == 0;
  const char *shown = from_stdin ? "standard input" : path;
  FILE *fp = from_stdin ? stdin : fopen(path, "re");
  if (!fp) {
    int err = -errno;
    fprintf(stderr, "aksum: %s: %s\n", path, strerror(-err));
    return err;
  }
  const aks_algo *algo = run->opts.algo;
  line_form form = FORM_UNKNOWN;
  char *line = NULL;
  size_t cap = 0;
  ssize_t len;
  size_t lineno = 0;
  int rc = 0;
  while ((len = getline(&line, &cap, fp)) > 0) {
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
    if (strlen(line) != (size_t)len || !parse_line(line, (size_t)len, algo, &form, &hex, &name)) {
      run->improper++;
      if (run->opts.warn)
        fprintf(stderr, "aksum: %s: %zu: improperly formatted %s checksum line\n", shown, lineno,
                algo->tag);
      continue;
    }
    aks_item *it = aks_item_add(run, name);
    if (!it || !(it->expect = strdup(hex))) {
      rc = -ENOMEM;
      break;
    }
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
  if (ferror(fp) && rc == 0) {
    rc = -errno;
    fprintf(stderr, "aksum: %s: %s\n", shown, strerror(-rc));
  }
  free(line);
  if (fp != stdin)
    fclose(fp);
  if (rc == 0 && run->n == 0) {
    fprintf(stderr, "aksum: %s: no properly formatted checksum lines found\n", shown);
    rc = -EINVAL;
  }
  return rc;
}
