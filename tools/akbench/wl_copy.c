/* wl_copy.c: the `copy` workload: copying one file (2 GiB; --quick: 64 MiB)
 * that is in the page cache, asynckit's ak_copy_file against cp (which uses
 * copy_file_range) on the same file, A B alternated, medians of the wall
 * time. asynckit runs three ways per round: its default pipeline (4 chunks of
 * 1 MiB through pipes: file -> pipe -> file, one copy in the kernel as
 * copy_file_range does) and AK_COPY_BUFFERS (through user buffers: two
 * copies), and AK_COPY_DIRECT (the copy written with O_DIRECT: the device
 * takes the bytes, no page cache is allocated for them). Each copy is checked
 * byte for byte against the source once.
 *
 * Fairness: one untimed copy warms up first; the source is read into the
 * page cache before every run; the previous copy is unlinked (its dirty
 * pages go with it) and the filesystem synced, so no run pays for another's
 * writeback. Neither side fsyncs: both
 * measure the copy into the page cache. The ratio is cp's time over
 * asynckit's (above 1: asynckit faster).
 */
#define _GNU_SOURCE
#include "akb_fs.h"

#include <asynckit.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum { MAX_ROUNDS = 100 };

/* Whether a and b hold the same bytes. */
static bool same_bytes(const char *a, const char *b)
{
  int fa = open(a, O_RDONLY | O_CLOEXEC), fb = open(b, O_RDONLY | O_CLOEXEC);
  enum { BUF = 1 << 20 };
  char *ba = malloc(BUF), *bb = malloc(BUF);
  bool same = fa >= 0 && fb >= 0 && ba && bb;
  while (same) {
    ssize_t na = read(fa, ba, BUF), nb = read(fb, bb, BUF);
    if (na != nb || na < 0 || memcmp(ba, bb, (size_t)na) != 0)
      same = false;
    if (na <= 0)
      break;
  }
  free(ba);
  free(bb);
  if (fa >= 0)
    close(fa);
  if (fb >= 0)
    close(fb);
  return same;
}

/* A clean start: the old copy gone, nothing dirty, the source cached. */
static int prepare(const char *src, const char *dst)
{
  unlink(dst);
  int fd = open(src, O_RDONLY | O_CLOEXEC);
  if (fd >= 0) {
    syncfs(fd);
    close(fd);
  }
  return akb_fs_warm(src);
}

static int ak_copy_run(const char *src, const char *dst, unsigned flags, akb_span *span,
                       const char **what)
{
  ak_loop *loop;
  int rc = ak_loop_new(&loop, NULL);
  if (rc < 0) {
    *what = "ak_loop_new";
    return rc;
  }
  ak_copy_opts o = {.chunk = 0, .depth = 0, .flags = flags};
  akb_usage before, after;
  akb_usage_now(&before);
  ak_future *f = ak_copy_file(loop, AT_FDCWD, src, AT_FDCWD, dst, &o);
  int64_t res = f ? ak_future_get(f, AK_FOREVER, NULL) : -ENOMEM;
  akb_usage_now(&after);
  ak_future_release(f);
  ak_loop_free(loop);
  *span = akb_span_between(&before, &after);
  if (res < 0) {
    *what = "ak_copy_file";
    return (int)res;
  }
  return 0;
}

typedef struct side {
  const char *name;
  double wall[MAX_ROUNDS], cpu[MAX_ROUNDS];
  unsigned n;
  bool checked;
} side;

static void side_add(side *s, const akb_span *span)
{
  s->wall[s->n] = span->wall_s;
  s->cpu[s->n++] = span->user_s + span->sys_s;
}

static double side_row(akb_result *res, side *s, uint64_t size)
{
  akb_row *row = akb_row_add(res, s->name);
  double wall = akb_median(s->wall, s->n);
  akb_fig_add(row, "wall_s", "", wall, false);
  akb_fig_add(row, "mib_per_s", "", (double)size / 1048576.0 / wall, false);
  akb_fig_add(row, "cpu_s", "", akb_median(s->cpu, s->n), false);
  akb_fig_add(row, "rounds", "", s->n, true);
  return wall;
}

/* Checks the copy against the source once per side. */
static bool verify(akb_result *res, side *s, const char *src, const char *dst)
{
  if (s->checked)
    return true;
  s->checked = true;
  if (same_bytes(src, dst))
    return true;
  akb_fail(res, "%s: the copy differs from the source", s->name);
  return false;
}

int akb_wl_copy(const akb_opts *opts, akb_result *res)
{
  uint64_t size = opts->quick ? (64u << 20) : (UINT64_C(2) << 30);
  const char *dir = akb_fs_dir();
  if (!dir) {
    akb_fail(res, "no directory for the data set (set AKBENCH_DIR)");
    return -1;
  }
  char src[4096], dst[4096];
  snprintf(src, sizeof(src), "%s/copy-src-%llu.bin", dir, (unsigned long long)size);
  snprintf(dst, sizeof(dst), "%s/copy-dst.bin", dir);
  int rc = akb_fs_make_file(src, size);
  if (rc < 0) {
    akb_fail(res, "making %s: %s", src, strerror(-rc));
    return -1;
  }
  bool have_cp = akb_fs_have("cp");
  akb_title(res, "copy a %llu MiB file from the page cache, %u A B pair%s",
            (unsigned long long)(size >> 20), opts->rounds, opts->rounds == 1 ? "" : "s");
  akb_param(res, "file_mib", "", (double)(size >> 20), true);
  static side ak, aks, akd, cp;
  memset(&ak, 0, sizeof(ak));
  memset(&aks, 0, sizeof(aks));
  memset(&akd, 0, sizeof(akd));
  memset(&cp, 0, sizeof(cp));
  ak.name = "asynckit";
  aks.name = "asynckit buffers";
  akd.name = "asynckit direct";
  cp.name = "cp";
  /* One untimed copy first: the first pages a VM touches after a while cost
   * far more than later ones (whichever side ran first would pay). */
  {
    akb_span span;
    const char *what = "";
    if ((rc = prepare(src, dst)) < 0 || (rc = ak_copy_run(src, dst, 0, &span, &what)) < 0) {
      akb_fail(res, "warm-up copy: %s", ak_strerror(rc));
      return -1;
    }
  }
  /* The order rotates every round: in this VM the cost of the pages a copy
   * allocates depends on what ran before (free pages given back to the host
   * fault in again), and no side should always come first. */
  side *order[4] = {&ak, &aks, &akd, &cp};
  unsigned nsides = have_cp ? 4 : 3;
  for (unsigned r = 0; r < opts->rounds && r < MAX_ROUNDS; r++) {
    for (unsigned k = 0; k < nsides; k++) {
      side *sd = order[(r + k) % nsides];
      akb_span span;
      const char *what = "";
      if ((rc = prepare(src, dst)) < 0) {
        akb_fail(res, "reading %s: %s", src, strerror(-rc));
        return -1;
      }
      if (sd == &cp) {
        char *argv[] = {"cp", src, dst, NULL};
        rc = akb_fs_run(argv, NULL, NULL, true, &span);
        if (rc != 0) {
          akb_fail(res, "cp exited with status %d", rc);
          return -1;
        }
      } else {
        unsigned flags = sd == &aks ? AK_COPY_BUFFERS : sd == &akd ? AK_COPY_DIRECT : 0;
        rc = ak_copy_run(src, dst, flags, &span, &what);
        if (rc < 0) {
          akb_fail(res, "%s: %s: %s", sd->name, what, ak_strerror(rc));
          return -1;
        }
      }
      side_add(sd, &span);
      verify(res, sd, src, dst);
    }
  }
  unlink(dst);
  double ak_wall = side_row(res, &ak, size);
  double aks_wall = side_row(res, &aks, size);
  double akd_wall = side_row(res, &akd, size);
  if (have_cp) {
    double cp_wall = side_row(res, &cp, size);
    akb_ratio(res, cp_wall / ak_wall, "median time, cp / asynckit (its default: splice)");
    akb_param(res, "ratio_buffers", "", cp_wall / aks_wall, false);
    akb_param(res, "ratio_direct", "", cp_wall / akd_wall, false);
  } else {
    akb_note(res, "cp: not found; no peer");
  }
  akb_note(res, "direct: AK_COPY_DIRECT writes the copy with O_DIRECT (no page cache for it)");
  akb_note(res, "each copy is compared byte for byte with the source once per implementation");
  return 0;
}
