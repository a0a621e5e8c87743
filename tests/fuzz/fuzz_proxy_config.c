/* fuzz_proxy_config.c: libFuzzer target for what a user's configuration
 * feeds the proxy and credential code: a proxy URL (proxy.c's parser), a
 * no_proxy list (checked, and matched against fixed hosts), and a netrc
 * file (tools/akget/netrc.c). The first byte picks which. Asserts: a parsed
 * proxy has a host, a port in range, a display form without its user
 * information that parses again to the same host and port; a list that
 * checks clean matches without error both ways; a netrc answer is one of
 * the entries' strings (a NUL-free C string) and "found" means something
 * was given. */
#include "http/internal.h"

#include <assert.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "akget.h"

static void proxy_case(const char *s)
{
  ak__proxy *p = NULL;
  int rc = ak__proxy_parse(s, &p);
  assert(rc == 0 || rc == AK_EPROXYURL);
  if (rc < 0 || !p)
    return;
  assert(p->host[0] != '\0' && p->port > 0);
  /* The display form is scheme://host:port and nothing else (no user
   * information can ride along). */
  static const char *const names[] = {"http", "socks5", "socks5h"};
  char want[600];
  bool v6 = strchr(p->host, ':') != NULL;
  snprintf(want, sizeof want, "%s://%s%s%s:%u", names[p->kind], v6 ? "[" : "", p->host,
           v6 ? "]" : "", p->port);
  assert(strcmp(p->display, want) == 0);
  ak__proxy *again = NULL;
  assert(ak__proxy_parse(p->display, &again) == 0 && again);
  assert(strcmp(again->host, p->host) == 0 && again->port == p->port && again->kind == p->kind);
  assert(p->kind == AK__PROXY_HTTP || !p->auth_line);
  assert(!p->auth_line || strncmp(p->auth_line, "Proxy-Authorization: Basic ", 27) == 0);
  ak__proxy_free(again);
  ak__proxy_free(p);
}

static void no_proxy_case(const char *s)
{
  int rc = ak_http_no_proxy_check(s);
  assert(rc == 0 || rc == AK_EPROXYURL);
  static const char *const hosts[] = {"example.com", "a.example.com", "127.0.0.1", "::1",
                                      "10.1.2.3",    "fe80::1",       "",          "x"};
  for (size_t i = 0; i < sizeof hosts / sizeof *hosts; i++) {
    bool m = ak_http_no_proxy_match(s, hosts[i], 80);
    /* "*" anywhere in a clean list matches everything. */
    if (rc == 0 && strcmp(s, "*") == 0)
      assert(m);
  }
}

static void netrc_case(const char *s, size_t n)
{
  char *login = NULL, *password = NULL;
  int rc = akg_netrc_find(s, n, "example.com", &login, &password);
  assert(rc == 0 || rc == 1);
  assert(rc == 1 || (!login && !password));
  if (rc == 1)
    assert(login || password);
  if (login)
    assert(strlen(login) <= n);
  if (password)
    assert(strlen(password) <= n);
  free(login);
  free(password);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  if (size < 1)
    return 0;
  char *s = malloc(size);
  memcpy(s, data + 1, size - 1);
  s[size - 1] = '\0';
  switch (data[0] % 3) {
  case 0: proxy_case(s); break;
  case 1: no_proxy_case(s); break;
  default: netrc_case(s, size - 1); break; /* raw bytes: NULs included */
  }
  free(s);
  return 0;
}
