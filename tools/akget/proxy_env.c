/* proxy_env.c: which proxy akget uses, as curl chooses: --proxy, else the
 * scheme's variable (http_proxy in lower case only, since a CGI program's
 * HTTP_PROXY comes from a request's "Proxy:" header; https_proxy or
 * HTTPS_PROXY), else all_proxy / ALL_PROXY; --noproxy, else no_proxy /
 * NO_PROXY. Every value used is parsed before anything starts, and one
 * that does not parse is a usage error naming where it came from. The
 * value itself is not printed: a proxy URL may hold a password. */
#include "akget.h"

#include <stdio.h>
#include <stdlib.h>

/* The first of names that is set (even to ""), and which one. */
static const char *first_env(const char *const *names, const char **which)
{
  for (; *names; names++) {
    const char *v = getenv(*names);
    if (v) {
      *which = *names;
      return v;
    }
  }
  return NULL;
}

static int bad(const char *source, const char *what)
{
  fprintf(stderr, "akget: %s: %s (the value is not shown: it may hold a password)"
                  " (akget -h for help)\n",
          source, what);
  return AKG_EXIT_USAGE;
}

/* The proxy for one scheme: --proxy, the scheme's variables, all_proxy. */
static int pick(const char *opt_proxy, const char *const *vars, const char **out)
{
  static const char *const all[] = {"all_proxy", "ALL_PROXY", NULL};
  const char *which = "--proxy";
  const char *v = opt_proxy;
  if (!v)
    v = first_env(vars, &which);
  if (!v)
    v = first_env(all, &which);
  if (v && ak_http_proxy_check(v) < 0)
    return bad(which, "malformed proxy URL (want [http|socks5|socks5h://][user:pass@]host[:port])");
  *out = v && v[0] ? v : NULL;
  return 0;
}

int akg_proxy_setup(akg_opts *o, const char *opt_proxy, const char *opt_noproxy)
{
  static const char *const http_vars[] = {"http_proxy", NULL};
  static const char *const https_vars[] = {"https_proxy", "HTTPS_PROXY", NULL};
  static const char *const no_vars[] = {"no_proxy", "NO_PROXY", NULL};
  int rc = pick(opt_proxy, http_vars, &o->http_proxy);
  if (rc == 0)
    rc = pick(opt_proxy, https_vars, &o->https_proxy);
  if (rc)
    return rc;
  const char *which = "--noproxy";
  const char *np = opt_noproxy ? opt_noproxy : first_env(no_vars, &which);
  if (np && ak_http_no_proxy_check(np) < 0)
    return bad(which, "malformed no_proxy list (want host names, *, IP addresses, CIDR ranges, "
                      "each with an optional :port)");
  o->no_proxy = np && np[0] ? np : NULL;
  return 0;
}
