/* http_fetch.c: fetches every URL given at once into memory and prints the
 * bodies in the order given, as `curl --fail URL...` would: each body is
 * collected by the client (AK_HTTP_BODY_MEMORY, with a cap), and a status
 * of 400 or more fails its request (AK_HTTP_FAIL_ON_STATUS) with the
 * status still readable. A line per URL on stderr: status, size, URL.
 * Exits 0 when every URL was fetched, 1 when one failed (named on stderr),
 * 2 on bad usage. http_fetch_test.sh runs it against a local server.
 *
 *   http_fetch [--max BYTES] URL...
 */
#include <asynckit.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv)
{
  size_t cap = 0; /* 0: the client's default cap, 16 MiB */
  int first = 1;
  if (argc > 2 && strcmp(argv[1], "--max") == 0) {
    cap = strtoull(argv[2], NULL, 10);
    first = 3;
  }
  size_t n = argc > first ? (size_t)(argc - first) : 0;
  if (n == 0 || (cap == 0 && first == 3)) {
    fprintf(stderr, "usage: http_fetch [--max BYTES] URL...\n");
    return 2;
  }
  ak_loop *loop;
  int rc = ak_loop_new(&loop, NULL);
  if (rc < 0) {
    fprintf(stderr, "http_fetch: %s\n", ak_strerror(rc));
    return 1;
  }
  ak_http_options opts = {0};
  opts.total_timeout_ns = INT64_C(30000000000); /* every request: 30 s at most */
  ak_http_client *client;
  if (ak_http_client_new(loop, &opts, &client) < 0)
    return 1;

  ak_future **fs = calloc(n, sizeof *fs);
  for (size_t i = 0; i < n; i++) {
    ak_http_request rq = AK_HTTP_REQUEST_INIT(argv[first + (int)i]);
    rq.flags = AK_HTTP_BODY_MEMORY | AK_HTTP_FAIL_ON_STATUS;
    rq.body_cap = cap;
    fs[i] = ak_http_get(client, &rq);     /* all at once */
  }
  ak_future *all = ak_join_all(fs, n, 0);
  ak_future_wait(all, AK_FOREVER);        /* runs the loop until every one settled */

  int status = 0;
  for (size_t i = 0; i < n; i++) {
    ak_future *f = fs[i];
    if (!ak_future_is_error(f)) {
      const ak_http_response *r = ak_future_value(f);
      fwrite(r->body, 1, r->body_len, stdout);
      fprintf(stderr, "%d %zu %s\n", r->status, r->body_len, r->url);
    } else if (ak_http_response_of(f)) { /* AK_EHTTPSTATUS: the response is kept */
      fprintf(stderr, "%d failed: %s\n", ak_http_response_of(f)->status, ak_future_detail(f));
      status = 1;
    } else {
      int err = (int)ak_future_result(f);
      fprintf(stderr, "failed: %s (%s): %s\n", ak_strerror(err), ak_err_name(err),
              ak_future_detail(f) ? ak_future_detail(f) : "");
      status = 1;
    }
    ak_future_release(f);
  }
  ak_future_release(all);
  free(fs);
  ak_http_client_free(client);
  ak_loop_free(loop);                     /* finishes the connections' closes */
  return status;
}
