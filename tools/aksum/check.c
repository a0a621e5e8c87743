/* check.c: -c FILE: reads a checksum list in the format sha256sum writes
 * ("HEX  name", "HEX *name", a leading backslash when the name is escaped)
 * or its --tag form ("SHA256 (name) = HEX"), and makes one item per line
 * with the expected digest. Lines that are neither are counted as
 * improperly formatted (reported at the end, as sha256sum does). */
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

/* Splits one line into digest and name (pointers into line). */
static bool parse_line(char *line, size_t hexlen, const char *tag, char **hex, char **name)
{
  bool escaped = line[0] == '\\';
  char *p = line + escaped;
  size_t taglen = strlen(tag);
  if (strncmp(p, tag, taglen) == 0 && p[taglen] == ' ' && p[taglen + 1] == '(') {
    /* --tag form: TAG (name) = HEX */
    char *open = p + taglen + 2;
    char *close = strrchr(open, ')');
    if (!close || strncmp(close, ") = ", 4) != 0)
      return false;
    *close = '\0';
    *hex = close + 4;
    *name = open;
    if (strlen(*hex) != hexlen || !is_hex_run(*hex, hexlen))
      return false;
  } else {
    if (strlen(p) < hexlen + 3 || !is_hex_run(p, hexlen) || p[hexlen] != ' ' ||
        (p[hexlen + 1] != ' ' && p[hexlen + 1] != '*'))
      return false;
    p[hexlen] = '\0';
    *hex = p;
    *name = p + hexlen + 2;
  }
  if (**name == '\0')
    return false;
  return !escaped || unescape(*name);
}

int aks_check_load(aks_run *run, const char *path)
{
  FILE *fp = strcmp(path, "-") == 0 ? stdin : fopen(path, "re");
  if (!fp) {
    int err = -errno;
    fprintf(stderr, "aksum: %s: %s\n", path, strerror(-err));
    return err;
  }
  const aks_algo *algo = run->opts.algo;
  size_t hexlen = algo->digest_len * 2;
  const char *tag = algo == aks_algo_get(AKS_SHA256) ? "SHA256" : "XXH3";
  char *line = NULL;
  size_t cap = 0;
  ssize_t len;
  int rc = 0;
  while ((len = getline(&line, &cap, fp)) >= 0) {
    if (len > 0 && line[len - 1] == '\n')
      line[--len] = '\0';
    char *hex, *name;
    if (!parse_line(line, hexlen, tag, &hex, &name)) {
      run->improper++;
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
    fprintf(stderr, "aksum: %s: %s\n", path, strerror(-rc));
  }
  free(line);
  if (fp != stdin)
    fclose(fp);
  if (rc == 0 && run->n == 0) {
    fprintf(stderr, "aksum: %s: no properly formatted checksum lines found\n", path);
    rc = -EINVAL;
  }
  return rc;
}
