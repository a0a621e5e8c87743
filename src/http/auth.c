/* auth.c: Basic authorization (RFC 7617): "user:password" in base64 (RFC
 * 4648), for the Authorization header of a request and the
 * Proxy-Authorization header of a proxy. Owns nothing else: which headers
 * go where, and when credentials are dropped on a redirect, is exchange.c's
 * and proxy.c's. */
#include "http/internal.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

size_t ak__base64_encode(const void *data, size_t len, char *out)
{
  static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  const unsigned char *p = data;
  size_t o = 0, i = 0;
  for (; i + 2 < len; i += 3) {
    unsigned v = (unsigned)p[i] << 16 | (unsigned)p[i + 1] << 8 | p[i + 2];
    out[o++] = tab[v >> 18];
    out[o++] = tab[(v >> 12) & 63];
    out[o++] = tab[(v >> 6) & 63];
    out[o++] = tab[v & 63];
  }
  if (i < len) {
    unsigned v = (unsigned)p[i] << 16 | (i + 1 < len ? (unsigned)p[i + 1] << 8 : 0);
    out[o++] = tab[v >> 18];
    out[o++] = tab[(v >> 12) & 63];
    out[o++] = i + 1 < len ? tab[(v >> 6) & 63] : '=';
    out[o++] = '=';
  }
  out[o] = '\0';
  return o;
}

char *ak__http_basic_line(const char *header, const char *user, const char *password)
{
  size_t ul = strlen(user), pl = password ? strlen(password) : 0;
  size_t raw_len = ul + 1 + pl;
  char *raw = ak__malloc(raw_len + 1);
  size_t n = strlen(header) + 16 + (raw_len + 2) / 3 * 4 + 4;
  char *line = ak__malloc(n);
  if (!raw || !line) {
    ak__free(raw);
    ak__free(line);
    return NULL;
  }
  memcpy(raw, user, ul);
  raw[ul] = ':';
  if (pl)
    memcpy(raw + ul + 1, password, pl);
  int o = snprintf(line, n, "%s: Basic ", header);
  size_t b = ak__base64_encode(raw, raw_len, line + o);
  memcpy(line + o + b, "\r\n", 3);
  memset(raw, 0, raw_len); /* the password is not left in freed memory */
  ak__free(raw);
  return line;
}

char *ak__http_basic_line_userpwd(const char *header, const char *userpwd)
{
  const char *colon = strchr(userpwd, ':');
  size_t ul = colon ? (size_t)(colon - userpwd) : strlen(userpwd);
  char *user = ak__malloc(ul + 1);
  if (!user)
    return NULL;
  memcpy(user, userpwd, ul);
  user[ul] = '\0';
  char *line = ak__http_basic_line(header, user, colon ? colon + 1 : "");
  ak__free(user);
  return line;
}

/* Whether line (one "Name: value" line) is one a redirect to another origin
 * must not carry. */
static bool is_credential_line(const char *line)
{
  return strncasecmp(line, "authorization:", 14) == 0 || strncasecmp(line, "cookie:", 7) == 0;
}

void ak__http_drop_credential_headers(char *lines)
{
  if (!lines)
    return;
  char *in = lines, *out = lines;
  while (*in) {
    char *eol = strstr(in, "\r\n");
    size_t n = eol ? (size_t)(eol - in) + 2 : strlen(in);
    if (!is_credential_line(in)) {
      memmove(out, in, n);
      out += n;
    }
    in += n;
  }
  *out = '\0';
}
