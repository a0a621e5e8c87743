/* async_list.c: AsyncKit's AsyncList in C: join three futures, wait for
 * all, read each value in input order. */
#include <asynckit.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int64_t shout(void *arg, ak_future *self) {
  const char *word = arg;
  size_t n = strlen(word);
  char *loud = malloc(n + 2);
  if (!loud)
    return -12; /* -ENOMEM */
  for (size_t i = 0; i < n; i++)
    loud[i] = (char)(word[i] >= 'a' && word[i] <= 'z' ? word[i] - 32 : word[i]);
  loud[n] = '!';
  loud[n + 1] = '\0';
  ak_future_set_value(self, loud, free); /* the future owns it now */
  return (int64_t)n;
}

int main(void) {
  ak_pool *pool = ak_pool_new(4);
  const char *words[3] = {"one", "two", "three"};
  ak_future *fs[3];
  for (int i = 0; i < 3; i++)
    fs[i] = ak_pool_submit(pool, shout, (void *)words[i]);

  ak_future *all = ak_join_all(fs, 3, 0); /* AsyncList(fs) */
  int64_t ok = ak_future_get(all, AK_FOREVER, NULL);
  printf("%lld of 3 succeeded\n", (long long)ok);
  int good = ok == 3;
  for (size_t i = 0; i < ak_join_count(all); i++) {
    const char *loud = ak_future_value(ak_join_input(all, i));
    printf("  %zu: %s\n", i, loud);
    good = good && loud && loud[0] == words[i][0] - 32;
  }
  ak_future_release(all);
  for (int i = 0; i < 3; i++)
    ak_future_release(fs[i]);
  ak_pool_free(pool);
  return good ? 0 : 1;
}
