/* netrc.c: the .netrc file (--netrc, --netrc-file), as ftp(1) and curl read
 * it: tokens separated by blanks and newlines; "machine NAME" starts an
 * entry, "default" the entry for every other host (taken only when no
 * machine matches), "login" and "password" fill the entry, "account" is
 * skipped with its value, "macdef NAME" skips lines up to an empty one.
 * A token may be "double quoted" with \" and \\ inside. The parser works
 * on text in memory (fuzzed by tests/fuzz/fuzz_proxy_config.c); reading
 * the file is a separate call. */
#include "akget.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

typedef struct scanner {
  const char *p, *end;
} scanner;

static bool is_blank(char c)
{
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

/* The next token (owned), or NULL at the end (*err set on ENOMEM). */
static char *next_token(scanner *s, int *err)
{
  while (s->p < s->end && is_blank(*s->p))
    s->p++;
  if (s->p >= s->end)
    return NULL;
  char *tok = malloc((size_t)(s->end - s->p) + 1);
  if (!tok) {
    *err = -ENOMEM;
    return NULL;
  }
  size_t n = 0;
  if (*s->p == '"') {
    s->p++;
    while (s->p < s->end && *s->p != '"') {
      if (*s->p == '\\' && s->p + 1 < s->end)
        s->p++;
      tok[n++] = *s->p++;
    }
    if (s->p < s->end)
      s->p++; /* the closing quote */
  } else {
    while (s->p < s->end && !is_blank(*s->p))
      tok[n++] = *s->p++;
  }
  tok[n] = '\0';
  return tok;
}

/* macdef: its body runs to the first empty line. */
static void skip_macro(scanner *s)
{
  const char *nl;
  while ((nl = memchr(s->p, '\n', (size_t)(s->end - s->p)))) {
    s->p = nl + 1;
    if (s->p < s->end && (*s->p == '\n' || (*s->p == '\r' && s->p + 1 < s->end && s->p[1] == '\n')))
      return;
  }
  s->p = s->end;
}

typedef struct entry {
  char *login, *password;
} entry;

static void entry_clear(entry *e)
{
  free(e->login);
  if (e->password)
    memset(e->password, 0, strlen(e->password));
  free(e->password);
  e->login = e->password = NULL;
}

int akg_netrc_find(const char *text, size_t len, const char *host, char **login, char **password)
{
  *login = *password = NULL;
  scanner s = {text, text + len};
  int err = 0;
  entry found = {0}, dflt = {0};
  bool have_found = false, have_dflt = false;
  enum { NONE, MACHINE, DEFAULT, OTHER } in = NONE;
  char *tok;
  while (!have_found && (tok = next_token(&s, &err))) {
    entry *cur = in == MACHINE ? &found : in == DEFAULT ? &dflt : NULL;
    if (strcmp(tok, "machine") == 0 || strcmp(tok, "default") == 0) {
      if (in == MACHINE) {
        have_found = true; /* the matching entry ended */
        free(tok);
        break;
      }
      if (tok[0] == 'd') {
        in = have_dflt ? OTHER : DEFAULT;
        have_dflt = true;
      } else {
        char *name = next_token(&s, &err);
        in = name && strcasecmp(name, host) == 0 ? MACHINE : OTHER;
        free(name);
      }
    } else if (strcmp(tok, "login") == 0 || strcmp(tok, "password") == 0 ||
               strcmp(tok, "account") == 0) {
      char *val = next_token(&s, &err);
      char **slot = !cur ? NULL : tok[0] == 'l' ? &cur->login : tok[0] == 'p' ? &cur->password : NULL;
      if (slot && val) {
        free(*slot);
        *slot = val;
        val = NULL;
      }
      if (val)
        memset(val, 0, strlen(val));
      free(val);
    } else if (strcmp(tok, "macdef") == 0) {
      free(next_token(&s, &err));
      skip_macro(&s);
    }
    free(tok);
    if (err)
      break;
  }
  if (in == MACHINE)
    have_found = true;
  if (err) {
    entry_clear(&found);
    entry_clear(&dflt);
    return err;
  }
  entry *use = have_found ? &found : &dflt;
  if (!have_found && !have_dflt) {
    entry_clear(&found);
    entry_clear(&dflt);
    return 0;
  }
  *login = use->login;
  *password = use->password;
  use->login = use->password = NULL;
  entry_clear(&found);
  entry_clear(&dflt);
  return *login || *password ? 1 : 0;
}

int akg_netrc_read(const char *path, char **text, size_t *len)
{
  char home_path[4096];
  if (!path) {
    const char *home = getenv("HOME");
    if (!home)
      return -ENOENT;
    snprintf(home_path, sizeof home_path, "%s/.netrc", home);
    path = home_path;
  }
  FILE *f = fopen(path, "r");
  if (!f)
    return -errno;
  size_t cap = 4096, n = 0;
  char *buf = malloc(cap);
  while (buf) {
    if (n == cap) {
      if (cap >= (64u << 20)) { /* a netrc is small: this is not one */
        free(buf);
        fclose(f);
        return -EFBIG;
      }
      char *g = realloc(buf, cap * 2);
      if (!g)
        break;
      buf = g;
      cap *= 2;
    }
    size_t got = fread(buf + n, 1, cap - n, f);
    n += got;
    if (got == 0)
      break;
  }
  int rc = ferror(f) ? -EIO : buf ? 0 : -ENOMEM;
  fclose(f);
  if (rc < 0) {
    free(buf);
    return rc;
  }
  *text = buf;
  *len = n;
  return 0;
}
