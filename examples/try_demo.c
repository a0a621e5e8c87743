/* try_demo.c: the engine on local files, the default job of tools/try: the
 * ring reads every regular file of a folder (all files at once), the pool
 * hashes each with SHA-256 as its bytes arrive, and the lines come out in
 * sha256sum's format, followed by the loop's statistics on stderr. */
#define _GNU_SOURCE
#include <asynckit.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>

typedef struct job {
  ak_loop *loop;
  int fd;
  char path[4096];
  unsigned char *buf;
  size_t size, done;
  unsigned char digest[32];
} job;

/* Runs on the loop after each read: resubmit for the rest (short reads are
 * normal), or hand the whole buffer on. */
static int64_t read_more(ak_future *input, void *arg, ak_future *self) {
  job *j = arg;
  int64_t got = ak_future_result(input);
  if (got == 0 && j->done < j->size)
    return -EIO; /* the file shrank under us */
  j->done += (size_t)got;
  if (j->done == j->size)
    return (int64_t)j->done;
  ak_future *next = ak_read(j->loop, j->fd, j->buf + j->done, j->size - j->done, (int64_t)j->done);
  ak_future *again = ak_then(next, read_more, j, NULL);
  ak_future_release(next);
  return ak_future_adopt(self, again);
}

/* Runs on the pool. */
static int64_t hash(ak_future *input, void *arg, ak_future *self) {
  (void)input;
  (void)self;
  job *j = arg;
  return EVP_Digest(j->buf, j->size, j->digest, NULL, EVP_sha256(), NULL) == 1 ? 0 : -ENOMEM;
}

int main(int argc, char **argv) {
  const char *dir = argc > 1 ? argv[1] : ".";
  ak_loop *loop;
  int rc = ak_loop_new(&loop, NULL);
  if (rc < 0) {
    fprintf(stderr, "try_demo: cannot start the loop: %s (%s)\n", ak_strerror(rc), ak_err_name(rc));
    return 1;
  }
  ak_pool *pool = ak_pool_new(2);
  DIR *d = opendir(dir);
  if (!d) {
    fprintf(stderr, "try_demo: %s: %s\n", dir, strerror(errno));
    return 1;
  }
  job *jobs = NULL;
  ak_future **done = NULL;
  size_t n = 0;
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    job j = {.loop = loop};
    snprintf(j.path, sizeof(j.path), "%s/%s", dir, e->d_name);
    struct stat st;
    if (stat(j.path, &st) < 0 || !S_ISREG(st.st_mode))
      continue;
    j.fd = open(j.path, O_RDONLY | O_CLOEXEC);
    if (j.fd < 0) {
      fprintf(stderr, "try_demo: %s: %s\n", j.path, strerror(errno));
      continue;
    }
    j.size = (size_t)st.st_size;
    j.buf = malloc(j.size ? j.size : 1);
    jobs = realloc(jobs, (n + 1) * sizeof(*jobs));
    jobs[n++] = j;
  }
  closedir(d);
  done = calloc(n ? n : 1, sizeof(*done));
  int64_t t0 = ak_now_ns();
  for (size_t i = 0; i < n; i++) {
    job *j = &jobs[i];
    ak_future *first = ak_read(loop, j->fd, j->buf, j->size, 0);
    ak_future *whole = ak_then(first, read_more, j, NULL); /* on the loop */
    done[i] = ak_then(whole, hash, j, pool);                /* on the pool */
    ak_future_release(first);
    ak_future_release(whole);
  }
  ak_future *all = ak_join_all(done, n, 0);
  ak_future_wait(all, AK_FOREVER); /* runs the loop until every hash is in */
  int64_t t1 = ak_now_ns();
  int failed = 0;
  size_t bytes = 0;
  for (size_t i = 0; i < n; i++) {
    job *j = &jobs[i];
    if (ak_future_is_error(done[i])) {
      fprintf(stderr, "try_demo: %s: %s\n", j->path, ak_strerror((int)ak_future_result(done[i])));
      failed++;
    } else {
      for (int k = 0; k < 32; k++)
        printf("%02x", j->digest[k]);
      printf("  %s\n", j->path);
      bytes += j->size;
    }
    ak_future_release(done[i]);
    close(j->fd);
    free(j->buf);
  }
  ak_future_release(all);
  ak_loop_stats st;
  ak_loop_stats_get(loop, &st);
  fprintf(stderr, "try_demo: %zu files, %zu bytes in %.1f ms: %llu reads through the ring, %llu loop iterations\n",
          n, bytes, (double)(t1 - t0) / 1e6, (unsigned long long)st.completed[2],
          (unsigned long long)st.iterations);
  free(jobs);
  free(done);
  ak_pool_free(pool);
  ak_loop_free(loop);
  return failed ? 1 : 0;
}
