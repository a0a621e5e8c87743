/* uv_peer.c: the libuv peer of akbench's workloads. Owns every uv_ call
 * akbench makes; built only when meson finds libuv (AKBENCH_HAVE_UV). Each
 * function does what the matching asynckit side does, the way a libuv user
 * would write it.
 *
 * libuv sizes its threadpool from UV_THREADPOOL_SIZE when the pool starts,
 * at the first uv_queue_work of the process; main() sets it before any uv
 * call. The threads then live until exit, across runs.
 */
#include "akbench.h"

#include <uv.h>

#include <stdlib.h>
#include <string.h>

typedef struct uv_count {
  uint64_t settled; /* after_work callbacks run */
  uint64_t failed;  /* of those, with a status (UV_ECANCELED) */
} uv_count;

static void noop_work(uv_work_t *req)
{
  (void)req;
}

/* Runs on the loop's thread, as asynckit's counting callback does. */
static void count_after(uv_work_t *req, int status)
{
  uv_count *c = req->data;
  c->settled++;
  if (status != 0)
    c->failed++;
}

/* Queues n works and runs the loop until every after_work_cb has run. */
static int run_batch(uv_loop_t *loop, uv_work_t *reqs, unsigned n, uv_count *c, const char **what)
{
  for (unsigned i = 0; i < n; i++) {
    reqs[i].data = c;
    int rc = uv_queue_work(loop, &reqs[i], noop_work, count_after);
    if (rc < 0) {
      *what = "uv_queue_work";
      return rc;
    }
  }
  int rc = uv_run(loop, UV_RUN_DEFAULT);
  if (rc < 0) {
    *what = "uv_run";
    return rc;
  }
  return 0;
}

int akb_uv_pool_run(uint64_t tasks, unsigned batch, akb_span *span, const char **what)
{
  uv_work_t *reqs = calloc(batch, sizeof(*reqs));
  if (!reqs) {
    *what = "calloc";
    return UV_ENOMEM;
  }
  uv_loop_t loop;
  int rc = uv_loop_init(&loop);
  if (rc < 0) {
    *what = "uv_loop_init";
    free(reqs);
    return rc;
  }
  uv_count c = {0, 0};
  rc = run_batch(&loop, reqs, batch, &c, what); /* warm-up: starts the threads */

  akb_usage before, after;
  if (rc == 0 && (rc = akb_usage_now(&before)) < 0)
    *what = "getrusage";
  c.settled = c.failed = 0;
  for (uint64_t done = 0; rc == 0 && done < tasks; done += batch) {
    unsigned n = tasks - done < batch ? (unsigned)(tasks - done) : batch;
    rc = run_batch(&loop, reqs, n, &c, what);
  }
  if (rc == 0 && (rc = akb_usage_now(&after)) < 0)
    *what = "getrusage";
  if (rc == 0 && (c.settled != tasks || c.failed)) {
    *what = "after_work callbacks do not add up";
    rc = UV_EPROTO;
  }
  if (rc == 0)
    *span = akb_span_between(&before, &after);

  /* Every request has completed, so the loop closes; EBUSY would be a bug here. */
  int crc = uv_loop_close(&loop);
  if (rc == 0 && crc < 0) {
    *what = "uv_loop_close";
    rc = crc;
  }
  free(reqs);
  return rc;
}

const char *akb_uv_version(void)
{
  return uv_version_string();
}

const char *akb_uv_strerror(int err)
{
  return uv_strerror(err);
}
