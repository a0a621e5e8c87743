/* wal.c: a write-ahead log appender on chains (asynckit/batch.h). A commit is
 * durable when its future settles DONE: its record was written and then
 * fdatasync'd, as one chain (the sync runs only if the write succeeded in
 * full). Commits that arrive while a group is being synced wait and go
 * together in the next group: one write of all their records and one
 * fdatasync for all of them (group commit).
 *
 * It is also a test: four clients commit 250 records each, one after
 * another, concurrently on one loop; the program checks every commit
 * succeeded, that the groups were fewer than the commits (syncs were
 * shared), and that the file holds every record, whole and in commit order.
 * Then a log opened read-only must fail every commit (-EBADF), durably
 * reported. Exit 0 only if all holds. Usage: wal [DIR] (default /tmp). */
#define _GNU_SOURCE
#include <asynckit.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

enum { MAX_GROUP = 64, REC_SIZE = 64 };

/* A commit waiting for, or in, a group. */
typedef struct commit {
  char rec[REC_SIZE];
  ak_future *done; /* settled with the record's offset, or the error */
} commit;

typedef struct wal {
  ak_loop *loop;
  int fd;
  int64_t tail;                 /* where the next group writes */
  ak_batch *chain;              /* reused for every group */
  commit *waiting[MAX_GROUP];   /* arrived while a group was in flight */
  unsigned nwaiting;
  commit *group[MAX_GROUP];     /* the group in flight */
  struct iovec iov[MAX_GROUP];
  unsigned ngroup;
  int64_t results[2];
  ak_future *inflight;          /* the group's chain, or NULL */
  unsigned groups;              /* statistics: groups (fdatasyncs) */
} wal;

static void start_group(wal *w);

static void group_done(ak_future *f, void *arg) {
  wal *w = arg;
  /* The chain's value is the index of the first failure: 2 = both done. */
  int64_t first_fail = ak_future_result(f);
  int64_t err = first_fail == 2 ? 0
                : w->results[first_fail] < 0 ? w->results[first_fail]
                                             : -EIO; /* a short write */
  int64_t off = w->tail;
  for (unsigned i = 0; i < w->ngroup; i++) {
    commit *c = w->group[i];
    if (err < 0)
      ak_future_fail(c->done, (int)err, "wal: group commit failed");
    else
      ak_future_set(c->done, off + (int64_t)i * REC_SIZE, NULL, NULL);
    ak_future_release(c->done);
  }
  if (err == 0)
    w->tail += (int64_t)w->ngroup * REC_SIZE;
  ak_future_release(f);
  w->inflight = NULL;
  w->ngroup = 0;
  if (w->nwaiting > 0)
    start_group(w);
}

/* Everything waiting becomes the group: one write, then one fdatasync. */
static void start_group(wal *w) {
  w->ngroup = w->nwaiting;
  for (unsigned i = 0; i < w->ngroup; i++) {
    w->group[i] = w->waiting[i];
    w->iov[i].iov_base = w->group[i]->rec;
    w->iov[i].iov_len = REC_SIZE;
  }
  w->nwaiting = 0;
  ak_batch_reset(w->chain);
  ak_batch_writev(w->chain, w->fd, w->iov, w->ngroup, w->tail);
  ak_batch_fsync(w->chain, w->fd, 1);
  w->inflight = ak_chain_submit(w->chain, w->results, -1);
  w->groups++;
  ak_future_on_settle(w->inflight, group_done, w);
}

/* Commits rec (REC_SIZE bytes, copied into c). The future settles DONE with
 * the record's offset once it is on disk. One reference for the caller. */
static ak_future *wal_commit(wal *w, commit *c, const char *rec) {
  memcpy(c->rec, rec, REC_SIZE);
  c->done = ak_future_new(w->loop);
  ak_future *mine = ak_future_ref(c->done);
  if (w->nwaiting == MAX_GROUP) { /* the caller overran the log: refuse */
    ak_future_fail(c->done, -EAGAIN, "wal: too many commits waiting");
    ak_future_release(c->done);
    return mine;
  }
  w->waiting[w->nwaiting++] = c;
  if (!w->inflight)
    start_group(w);
  return mine;
}

/* ---- The test: four clients --------------------------------------------- */

enum { CLIENTS = 4, PER_CLIENT = 250 };

typedef struct client {
  wal *w;
  int id;
  int next;      /* the record it commits next */
  int ok;        /* commits that settled DONE */
  int failed;
  commit slot;
} client;

static void client_step(client *c);

static void client_committed(ak_future *f, void *arg) {
  client *c = arg;
  if (ak_future_state(f) == AK_DONE)
    c->ok++;
  else
    c->failed++;
  ak_future_release(f);
  client_step(c);
}

static void client_step(client *c) {
  if (c->next == PER_CLIENT)
    return;
  char rec[REC_SIZE];
  memset(rec, ' ', sizeof(rec));
  int n = snprintf(rec, sizeof(rec), "client %d record %d", c->id, c->next++);
  rec[n] = ' ';
  rec[REC_SIZE - 1] = '\n';
  ak_future *f = wal_commit(c->w, &c->slot, rec);
  ak_future_on_settle(f, client_committed, c);
}

static int run(wal *w, client *cs) {
  for (int i = 0; i < CLIENTS; i++) {
    cs[i] = (client){.w = w, .id = i};
    client_step(&cs[i]);
  }
  return ak_loop_run(w->loop, AK_RUN_DEFAULT);
}

/* Every record whole, each client's in its order. */
static bool log_is_whole(int fd, int64_t size) {
  int next[CLIENTS] = {0};
  char rec[REC_SIZE + 1];
  for (int64_t off = 0; off < size; off += REC_SIZE) {
    if (pread(fd, rec, REC_SIZE, off) != REC_SIZE)
      return false;
    rec[REC_SIZE] = 0;
    int id, k;
    if (sscanf(rec, "client %d record %d", &id, &k) != 2 || id < 0 || id >= CLIENTS ||
        k != next[id]++ || rec[REC_SIZE - 1] != '\n')
      return false;
  }
  for (int i = 0; i < CLIENTS; i++)
    if (next[i] != PER_CLIENT)
      return false;
  return true;
}

int main(int argc, char **argv) {
  const char *dir = argc > 1 ? argv[1] : "/tmp";
  char path[4096];
  snprintf(path, sizeof(path), "%s/ak-wal-example.%d", dir, (int)getpid());
  ak_loop *loop;
  if (ak_loop_new(&loop, NULL) < 0)
    return 1;
  wal w = {.loop = loop};
  w.fd = open(path, O_CREAT | O_TRUNC | O_RDWR | O_CLOEXEC, 0600);
  if (w.fd < 0 || ak_batch_new(loop, 2, &w.chain) < 0)
    return 1;
  client cs[CLIENTS];
  run(&w, cs);
  int ok = 0, failed = 0;
  for (int i = 0; i < CLIENTS; i++) {
    ok += cs[i].ok;
    failed += cs[i].failed;
  }
  bool whole = log_is_whole(w.fd, w.tail);
  printf("wal: %d commits durable, %d failed, %u groups (fdatasyncs), log whole: %s\n", ok,
         failed, w.groups, whole ? "yes" : "no");
  int good = ok == CLIENTS * PER_CLIENT && failed == 0 && w.groups < (unsigned)ok && whole &&
             w.tail == (int64_t)ok * REC_SIZE;
  close(w.fd);

  /* A log that cannot be written: every commit fails, none is "durable". */
  wal bad = {.loop = loop, .chain = w.chain};
  bad.fd = open(path, O_RDONLY | O_CLOEXEC);
  run(&bad, cs);
  int bad_failed = 0;
  for (int i = 0; i < CLIENTS; i++)
    bad_failed += cs[i].failed;
  printf("wal (read-only): %d of %d commits failed as they must\n", bad_failed,
         CLIENTS * PER_CLIENT);
  good = good && bad_failed == CLIENTS * PER_CLIENT && bad.tail == 0;
  close(bad.fd);
  unlink(path);
  ak_batch_free(w.chain);
  ak_loop_free(loop);
  return good ? 0 : 1;
}
