/* outside.c: a program that knows asynckit only as an installed package
 * (tests/test_install.sh builds it with pkg-config alone): a loop, a sleep,
 * a pool task, a file read through the loop, a URL, and a TLS config on the
 * default engine. Exits 0 when every result is what its comment says. */
#include <asynckit.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CHECK(cond)                                                                                \
  do {                                                                                             \
    if (!(cond)) {                                                                                 \
      fprintf(stderr, "outside: %s:%d: %s\n", __FILE__, __LINE__, #cond);                           \
      exit(1);                                                                                     \
    }                                                                                              \
  } while (0)

static int64_t square(void *arg, ak_future *self)
{
  (void)self;
  int64_t x = (int64_t)(intptr_t)arg;
  return x * x;
}

int main(int argc, char **argv)
{
  /* The version the library reports is the one pkg-config announced. */
  CHECK(argc == 2);
  CHECK(strcmp(ak_version_string(), argv[1]) == 0);

  ak_loop *loop;
  int rc = ak_loop_new(&loop, NULL);
  if (rc < 0) {
    fprintf(stderr, "outside: no loop: %s\n", ak_strerror(rc));
    return 1;
  }
  ak_future *s = ak_sleep(loop, 1000000);
  CHECK(ak_future_wait(s, INT64_C(5000000000)) == 0 && ak_future_result(s) == 0);
  ak_future_release(s);

  ak_future *sq = ak_pool_submit(ak_loop_pool(loop), square, (void *)7);
  CHECK(ak_future_get(sq, INT64_C(5000000000), NULL) == 49);
  ak_future_release(sq);

  /* This program's own first bytes, read through the loop. */
  FILE *self = fopen("/proc/self/exe", "rb");
  CHECK(self != NULL);
  char want[4], got[4] = {0};
  CHECK(fread(want, 1, 4, self) == 4);
  ak_future *r = ak_read(loop, fileno(self), got, 4, 0);
  CHECK(ak_future_get(r, INT64_C(5000000000), NULL) == 4 && memcmp(got, want, 4) == 0);
  ak_future_release(r);
  fclose(self);

  ak_url *u;
  CHECK(ak_url_parse("https://example.org:8443/a?b", &u) == 0);
  CHECK(u->port == 8443 && strcmp(u->target, "/a?b") == 0);
  ak_url_free(u);

  ak_tls_client_options o = {.flags = AK_TLS_INSECURE_NO_VERIFY};
  ak_tls_config *cfg = NULL;
  CHECK(ak_tls_client_config_new(&o, &cfg) == 0);
  ak_tls_config_release(cfg);

  ak_loop_free(loop);
  puts("outside: ok");
  return 0;
}
