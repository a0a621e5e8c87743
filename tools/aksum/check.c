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
#include "sumline.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* The shared parser's view of algo. BLAKE2b's untagged digest may be of
 * any even length up to 128 hex digits, as b2sum takes it (the line says
 * the length, whatever -l says). */
static aks_sumline_algo sumline_algo(const aks_algo *algo)
{
  bool b2 = algo == aks_algo_get(AKS_BLAKE2B);
  return (aks_sumline_algo){.tag = algo->tag,
                            .digest_len = b2 ? AKS_DIGEST_MAX : algo->digest_len,
                            .any_len = b2};
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
  aks_sumline_algo algo = sumline_algo(run->opts.algo);
  /* sha256sum fixes the form by the first line of the whole run; aksum by
   * each list's (docs/aksum.md). */
  aks_sumline_form form = AKS_SUMLINE_UNKNOWN;
  aks_sumline_reader rd = {0};
  size_t lines = 0;
  int rc = 0;
  while (rc == 0 && aks_sumline_next(fp, &rd)) {
    char *hex, *name;
    size_t dlen;
    if (strlen(rd.line) != rd.len ||
        !aks_sumline_parse(rd.line, rd.len, &algo, &form, &dlen, &hex, &name)) {
      rc = add_improper(run, l, rd.lineno);
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
  free(rd.line);
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
