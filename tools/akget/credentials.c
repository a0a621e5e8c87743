/* credentials.c: who akget authenticates as, per URL: --user, else the
 * URL's own user:password@ (taken out of the URL before anything prints
 * it: progress lines, -v and --json show the URL without it), else the
 * netrc entry of the URL's host (--netrc, --netrc-file). The library sends
 * them as Basic to the URL's origin and drops them, with Authorization and
 * Cookie lines of -H, on a redirect elsewhere unless --location-trusted. */
#include "akget.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int hexval(int c)
{
  if (c >= '0' && c <= '9')
    return c - '0';
  c = tolower(c);
  return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

static void decode_into(char *out, const char *s, size_t n)
{
  size_t o = 0;
  for (size_t i = 0; i < n; i++) {
    int hi = s[i] == '%' && i + 2 < n ? hexval(s[i + 1]) : -1, lo = hi >= 0 ? hexval(s[i + 2]) : -1;
    if (lo >= 0) {
      out[o++] = (char)(hi * 16 + lo);
      i += 2;
    } else {
      out[o++] = s[i];
    }
  }
  out[o] = '\0';
}

/* Moves "user:password@" out of it->url into it->userpwd (decoded). */
static int take_userinfo(akg_item *it)
{
  char *auth = strstr(it->url, "://");
  if (!auth)
    return 0;
  auth += 3;
  size_t alen = strcspn(auth, "/?#");
  char *at = NULL;
  for (char *c = auth; c < auth + alen; c++)
    if (*c == '@')
      at = c;
  if (!at)
    return 0;
  size_t n = (size_t)(at - auth);
  char *colon = memchr(auth, ':', n);
  char *up = malloc(n + 2);
  if (!up)
    return -ENOMEM;
  size_t ul = colon ? (size_t)(colon - auth) : n;
  decode_into(up, auth, ul);
  size_t o = strlen(up);
  up[o++] = ':';
  if (colon)
    decode_into(up + o, colon + 1, n - ul - 1);
  else
    up[o] = '\0';
  memset(auth, 0, n);                              /* the password leaves the URL... */
  memmove(auth, at + 1, strlen(at + 1) + 1);       /* ...and so does the rest of it */
  free(it->userpwd);
  it->userpwd = up;
  return 0;
}

static int from_netrc(akg_item *it, const char *text, size_t len)
{
  ak_url *u = NULL;
  if (ak_url_parse(it->url, &u) < 0)
    return 0;
  char *login = NULL, *password = NULL;
  int rc = akg_netrc_find(text, len, u->host, &login, &password);
  ak_url_free(u);
  if (rc > 0) {
    size_t n = (login ? strlen(login) : 0) + (password ? strlen(password) : 0) + 2;
    it->userpwd = malloc(n);
    if (it->userpwd)
      snprintf(it->userpwd, n, "%s:%s", login ? login : "", password ? password : "");
    else
      rc = -ENOMEM;
  }
  free(login);
  if (password)
    memset(password, 0, strlen(password));
  free(password);
  return rc < 0 ? rc : 0;
}

int akg_credentials_item(const akg_opts *o, const char *netrc, size_t netrc_len, akg_item *it)
{
  int rc = take_userinfo(it);
  if (rc == 0 && netrc && !it->userpwd && !o->userpwd)
    rc = from_netrc(it, netrc, netrc_len);
  return rc;
}

void akg_request_auth(const akg_opts *o, const akg_item *it, ak_http_request *rq)
{
  rq->userpwd = o->userpwd ? o->userpwd : it->userpwd;
  if (o->location_trusted)
    rq->flags |= AK_HTTP_LOCATION_TRUSTED;
}
