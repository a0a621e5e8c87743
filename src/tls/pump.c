/* tls/pump.c: the record pump: TLS sessions (tls.h) over a ring socket.
 * It owns the session, its queues of steps (handshake, read, write,
 * close_notify), the two wire buffers the engine reads and writes, and the
 * ring ops (one ak_recv and one ak_send at most) that move those bytes.
 * Engine-neutral: it calls only tls/engine.h.
 *
 * How a step runs: drive() offers the engine the head of each queue; the
 * engine answers with progress, WANT_READ (then a recv is made, if none is
 * in flight) or WANT_WRITE (the send in flight must drain the out buffer
 * first). Every ring completion runs drive() again. The rules the engine
 * imposes, and where they are kept:
 *  - after WANT_WRITE a write is retried with the same buffer and length:
 *    a write step's offset moves only when the engine took bytes;
 *  - decrypted plaintext is handed out before the socket is read again: a
 *    recv is made only when the engine said WANT_READ for the head read;
 *    a read takes every whole record buffered (up to its length) and
 *    settles when the engine would need the socket;
 *  - a write larger than a record loops in drive() until all is taken;
 *  - one read and one write step are worked on at a time (queue heads).
 * A step's future is a promise on the session's loop; a step cancelled by
 * its caller is dropped the next time drive() looks at it (a write the
 * engine is half way through still finishes its record: see flush_stuck).
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include "core/internal.h"
#include "tls/internal.h"

/* Wire buffers: the in buffer takes several full records, so one ring recv
 * carries many (a bulk reader then decrypts them all in one read step,
 * not one recv per record); the out buffer holds eight full records, so
 * encryption of the next ones overlaps the send of the first. */
#define AK__TLS_IN_CAP (256u * 1024)
#define AK__TLS_OUT_CAP (8u * (16384 + 512))

typedef enum { STEP_HANDSHAKE, STEP_READ, STEP_WRITE, STEP_CLOSE } step_kind;

typedef struct step {
  struct step *next;
  ak_future *f;           /* the caller's future (our reference) */
  step_kind kind;
  unsigned char *buf;     /* read / write: the caller's buffer */
  size_t len;             /* its length */
  size_t done;            /* write: bytes the engine has taken */
  bool closed;            /* close: the alert is in the out buffer */
} step;

typedef struct queue {
  step *head, *tail;
} queue;

struct ak_tls {
  ak_loop *loop;          /* the session's loop; every call on its thread */
  ak_tls_config *cfg;     /* a reference */
  const ak__tls_engine_ops *ops; /* the config's engine */
  ak__tls_eng *eng;       /* the engine's session */
  char *cache_key;        /* "host:port": where the config's session cache
                             keeps this client's session (owned); NULL: none */
  ak__tls_wire wire;      /* the buffers the engine reads and writes */
  int fd;                 /* the caller's socket */
  unsigned refs;          /* the caller's + one per ring op in flight */
  bool server;
  bool freed;             /* ak_tls_free was called */
  bool hs_done;           /* the handshake succeeded */
  bool resumed;           /* it resumed a session */
  bool peer_closed;       /* close_notify received: reads give 0 */
  bool write_stuck;       /* the engine holds a record it could not hand
                             over (after WANT_WRITE): it must be flushed
                             before anything else is written */
  bool want_recv;         /* the engine asked for input this round */
  bool driving, again;    /* re-entry guard for drive() */
  int fatal;              /* an error that ended the session, or 0 */
  char *fatal_detail;     /* its detail (owned), or NULL */
  int write_end;          /* 0, or what further writes fail with */
  queue hs, rd, wr;       /* handshake waiters, reads, writes and closes */
  ak_future *recv_op;     /* the ring recv in flight (our reference) */
  ak_future *send_op;     /* the ring send in flight (our reference) */
  size_t send_len;        /* bytes that send covers (a prefix of out) */
  ak_tls_stats st;        /* counters; names filled on request */
};

/* ---- Steps and queues -------------------------------------------------------- */

static void queue_push(queue *q, step *st) {
  st->next = NULL;
  if (q->tail)
    q->tail->next = st;
  else
    q->head = st;
  q->tail = st;
}

static step *queue_pop(queue *q) {
  step *st = q->head;
  if (st) {
    q->head = st->next;
    if (!q->head)
      q->tail = NULL;
  }
  return st;
}

static void step_settle(queue *q, int64_t result, const char *detail) {
  step *st = queue_pop(q);
  if (result >= 0)
    ak_future_set(st->f, result, NULL, NULL);
  else
    ak_future_fail(st->f, (int)result, detail && detail[0] ? detail : NULL);
  ak_future_release(st->f);
  ak__free(st);
}

static void queue_fail_all(queue *q, int err, const char *detail) {
  while (q->head)
    step_settle(q, err, detail);
}

/* Whether the caller cancelled (or otherwise settled) the head step. */
static bool head_gone(const queue *q) { return q->head && ak_future_is_set(q->head->f); }

/* A new step queued on q, its future returned (the caller's reference). */
static ak_future *step_new(ak_tls *s, queue *q, step_kind kind, const void *buf, size_t len) {
  step *st = ak__calloc(1, sizeof(*st));
  ak_future *f = ak_future_new(s->loop);
  if (!st || !f) {
    ak__free(st);
    ak_future_release(f);
    return NULL;
  }
  st->f = ak_future_ref(f);
  st->kind = kind;
  st->buf = (unsigned char *)buf;
  st->len = len;
  queue_push(q, st);
  return f;
}

/* ---- The session's lifetime ----------------------------------------------------- */

static void session_unref(ak_tls *s) {
  if (--s->refs > 0)
    return;
  s->cfg->ops->eng_free(s->eng);
  ak__free(s->cache_key);
  ak_tls_config_release(s->cfg);
  ak__free(s->wire.in);
  ak__free(s->wire.out);
  ak__free(s->fatal_detail);
  ak__free(s);
}

/* Ends the session with err: every step fails with it. */
static void session_fail(ak_tls *s, int err, const char *detail) {
  if (!s->fatal) {
    s->fatal = err;
    if (detail && detail[0])
      s->fatal_detail = ak__strdup(detail);
    if (!s->hs_done)
      ak__tls_config_count(s->cfg, false, false);
  }
  queue_fail_all(&s->hs, s->fatal, s->fatal_detail);
  queue_fail_all(&s->rd, s->fatal, s->fatal_detail);
  queue_fail_all(&s->wr, s->fatal, s->fatal_detail);
}

static int session_new(ak_loop *loop, ak_tls_config *cfg, int fd, const char *host,
                       const char *cache_key, ak_tls **out) {
  ak_tls *s = ak__calloc(1, sizeof(*s));
  if (!s)
    return -ENOMEM;
  s->wire.in = ak__malloc(AK__TLS_IN_CAP);
  s->wire.out = ak__malloc(AK__TLS_OUT_CAP);
  if (!s->wire.in || !s->wire.out) {
    ak__free(s->wire.in);
    ak__free(s->wire.out);
    ak__free(s);
    return -ENOMEM;
  }
  s->wire.in_cap = AK__TLS_IN_CAP;
  s->wire.out_cap = AK__TLS_OUT_CAP;
  int rc = cfg->ops->eng_new(cfg->engine, &s->wire, host, &s->eng);
  if (rc == 0 && cfg->sessions && cache_key) {
    s->cache_key = ak__strdup(cache_key);
    if (s->cache_key)
      (void)ak__tls_session_cache_offer(cfg->sessions, cache_key, s->eng); /* else a full one */
    else
      rc = -ENOMEM;
  }
  if (rc < 0) {
    if (s->eng)
      cfg->ops->eng_free(s->eng);
    ak__free(s->wire.in);
    ak__free(s->wire.out);
    ak__free(s);
    return rc;
  }
  /* A record is a whole message: Nagle would hold the next one (the
   * request after the handshake's last flight) behind a delayed ACK, 40 ms
   * on Linux. Not a TCP socket: nothing to do. */
  int one = 1;
  (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  s->loop = loop;
  s->ops = cfg->ops;
  s->st.engine = cfg->ops->name;
  s->cfg = ak_tls_config_ref(cfg);
  s->fd = fd;
  s->refs = 1;
  s->server = cfg->server;
  s->st.server = cfg->server;
  s->st.insecure = cfg->insecure;
  *out = s;
  return 0;
}

/* "host:port" with the peer's port, so two servers on one host keep their
 * own sessions; just the host if the socket has no peer address. */
static void make_cache_key(int fd, const char *host, char *key, size_t n) {
  struct sockaddr_storage ss;
  socklen_t len = sizeof(ss);
  unsigned port = 0;
  if (getpeername(fd, (struct sockaddr *)&ss, &len) == 0) {
    if (ss.ss_family == AF_INET)
      port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
    else if (ss.ss_family == AF_INET6)
      port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
  }
  snprintf(key, n, "%s:%u", host, port);
}

int ak_tls_client_new(ak_loop *loop, ak_tls_config *cfg, int fd, const char *host, ak_tls **out) {
  if (!out)
    return -EINVAL;
  *out = NULL;
  if (!loop || !cfg || cfg->server || fd < 0)
    return -EINVAL;
  bool has_host = host && host[0];
  if (!has_host && !cfg->insecure)
    return AK_ETLSNOHOST;
  char key[300];
  if (has_host)
    make_cache_key(fd, host, key, sizeof(key));
  return session_new(loop, cfg, fd, has_host ? host : NULL, has_host ? key : NULL, out);
}

int ak_tls_server_new(ak_loop *loop, ak_tls_config *cfg, int fd, ak_tls **out) {
  if (!out)
    return -EINVAL;
  *out = NULL;
  if (!loop || !cfg || !cfg->server || fd < 0)
    return -EINVAL;
  return session_new(loop, cfg, fd, NULL, NULL, out);
}

/* ---- The ring side: one recv and one send at most ------------------------------- */

static void pump(ak_tls *s);

static void recv_done(ak_future *f, void *arg) {
  ak_tls *s = arg;
  int64_t r = ak_future_result(f);
  ak_future_release(s->recv_op);
  s->recv_op = NULL;
  if (!s->freed) {
    if (r > 0) {
      s->wire.in_end += (size_t)r;
      s->st.wire_in += (uint64_t)r;
    } else if (r == 0) {
      s->wire.in_status = 1;
    } else {
      s->wire.in_status = (int)r;
    }
    pump(s);
  }
  session_unref(s);
}

static void send_done(ak_future *f, void *arg) {
  ak_tls *s = arg;
  int64_t r = ak_future_result(f);
  ak_future_release(s->send_op);
  s->send_op = NULL;
  if (!s->freed) {
    if (r > 0) {
      size_t n = (size_t)r;
      memmove(s->wire.out, s->wire.out + n, s->wire.out_len - n);
      s->wire.out_len -= n;
      s->st.wire_out += n;
    } else {
      /* The kernel refused the bytes (-EPIPE, -ECONNRESET): nothing more
       * can go out; the engine sees it at its next write. */
      s->wire.out_status = r < 0 ? (int)r : -EPIPE;
      s->wire.out_len = 0;
      if (!s->write_end)
        s->write_end = s->wire.out_status;
      /* What went out may end mid-record, and nothing more will: tell the
       * peer (a FIN), or it waits for the rest for good, and so do we for
       * its answer (fault-random: a short send, then the rest failing).
       * The fd stays the caller's; only its sending side ends. */
      shutdown(s->fd, SHUT_WR);
      /* A handshake cannot finish without our flight, and the engine makes
       * no write that would see the failure while it waits for the peer. */
      if (!s->hs_done)
        session_fail(s, s->wire.out_status, "tls: send");
    }
    pump(s);
  }
  session_unref(s);
}

/* Makes the ring ops the engine's state calls for. */
static void ring_io(ak_tls *s) {
  if (!s->send_op && s->wire.out_len > 0 && s->wire.out_status == 0) {
    ak_future *f = ak_send(s->loop, s->fd, s->wire.out, s->wire.out_len, 0);
    if (!f || ak_future_on_settle(f, send_done, s) < 0) {
      ak_future_release(f); /* defensive: only when memory runs out */
      session_fail(s, -ENOMEM, "tls: send");
      return;
    }
    s->send_op = f;
    s->send_len = s->wire.out_len;
    s->st.send_ops++;
    s->refs++;
  }
  if (s->want_recv && !s->recv_op && s->wire.in_status == 0) {
    ak__tls_wire *w = &s->wire;
    if (w->in_start == w->in_end) {
      w->in_start = w->in_end = 0;
    } else if (w->in_start > 0) {
      memmove(w->in, w->in + w->in_start, w->in_end - w->in_start);
      w->in_end -= w->in_start;
      w->in_start = 0;
    }
    if (w->in_end == w->in_cap)
      return; /* never: the engine takes bytes before it asks for more */
    ak_future *f = ak_recv(s->loop, s->fd, w->in + w->in_end, w->in_cap - w->in_end, 0);
    if (!f || ak_future_on_settle(f, recv_done, s) < 0) {
      ak_future_release(f);
      session_fail(s, -ENOMEM, "tls: recv");
      return;
    }
    s->recv_op = f;
    s->st.recv_ops++;
    s->refs++;
  }
}

/* ---- The engine side ----------------------------------------------------------------- */

/* Notes what a WANT answer asks of the ring; false for anything else. */
static bool is_want(ak_tls *s, int64_t r) {
  if (r == AK__TLS_WANT_READ) {
    s->want_recv = true;
    s->st.want_read++;
    return true;
  }
  if (r == AK__TLS_WANT_WRITE) {
    s->st.want_write++;
    return true;
  }
  return false;
}

/* The handshake, run once any step waits on it. True when it is done. */
static bool drive_handshake(ak_tls *s) {
  if (s->hs_done)
    return true;
  while (head_gone(&s->hs))
    step_settle(&s->hs, 0, NULL); /* cancelled: the settle is a no-op */
  if (!s->hs.head && !s->rd.head && !s->wr.head)
    return false;
  int r = s->ops->handshake(s->eng);
  if (r == 0) {
    s->hs_done = true;
    s->resumed = s->ops->resumed(s->eng);
    ak__tls_config_count(s->cfg, true, s->resumed);
    while (s->hs.head)
      step_settle(&s->hs, 0, NULL);
    return true;
  }
  if (!is_want(s, r))
    session_fail(s, r, s->ops->detail(s->eng));
  return false;
}

static void drive_reads(ak_tls *s) {
  while (s->rd.head && !s->fatal) {
    step *st = s->rd.head;
    if (ak_future_is_set(st->f)) {
      step_settle(&s->rd, 0, NULL); /* cancelled by its caller */
      continue;
    }
    if (s->peer_closed) {
      step_settle(&s->rd, 0, NULL);
      continue;
    }
    /* Fill buf from every record already received (an engine read gives
     * one record at most); settle as soon as the engine would need the
     * socket, with what it has. */
    size_t got = 0;
    int64_t r;
    do {
      r = AK_FAULT_CALL(AK_FAULT_TLS_READ, s->ops->read(s->eng, st->buf + got, st->len - got));
      if (r > 0)
        got += (size_t)r;
    } while (r > 0 && got < st->len);
    s->st.plain_in += got;
    if (r > 0) {
      step_settle(&s->rd, (int64_t)got, NULL); /* full */
    } else if (r == 0) {
      s->peer_closed = true; /* got first, then 0 for the next read */
      step_settle(&s->rd, (int64_t)got, NULL);
    } else if (is_want(s, r)) {
      if (got == 0)
        return;
      /* With bytes in hand, settle, and make no recv for this read: a recv
       * left in flight on an idle connection (a keep-alive one in a pool)
       * would keep its loop running until the peer closes. The next read
       * queued, if any, asks again. */
      s->want_recv = false;
      step_settle(&s->rd, (int64_t)got, NULL);
    } else {
      /* An error after some plaintext: the plaintext first, the error for
       * every later step. */
      if (got > 0)
        step_settle(&s->rd, (int64_t)got, NULL);
      session_fail(s, (int)r, s->ops->detail(s->eng));
    }
  }
}

/* A write whose caller cancelled it after the engine had begun a record:
 * that record must still go out whole, or the stream is corrupt. Calling
 * the write again with the same arguments is how the engine finishes it. */
static bool flush_stuck(ak_tls *s, const step *st) {
  int64_t r = AK_FAULT_CALL(AK_FAULT_TLS_WRITE, s->ops->write(s->eng, st->buf + st->done, st->len - st->done));
  if (r > 0) {
    s->write_stuck = false;
    return true;
  }
  if (!is_want(s, r))
    session_fail(s, (int)r, s->ops->detail(s->eng));
  return false;
}

static void drive_writes(ak_tls *s) {
  while (s->wr.head && !s->fatal) {
    step *st = s->wr.head;
    if (ak_future_is_set(st->f)) {
      if (st->kind == STEP_WRITE && s->write_stuck && !flush_stuck(s, st))
        return;
      step_settle(&s->wr, 0, NULL);
      continue;
    }
    if (s->write_end && !st->closed && (st->kind == STEP_CLOSE || st->done == 0)) {
      step_settle(&s->wr, s->write_end, NULL);
      continue;
    }
    if (st->kind == STEP_WRITE && st->done < st->len) {
      /* Same arguments after WANT_WRITE: done moves only on progress. */
      int64_t r = AK_FAULT_CALL(AK_FAULT_TLS_WRITE, s->ops->write(s->eng, st->buf + st->done, st->len - st->done));
      if (r > 0) {
        st->done += (size_t)r;
        s->st.plain_out += (uint64_t)r;
        s->write_stuck = false;
        continue;
      }
      if (is_want(s, r)) {
        s->write_stuck = r == AK__TLS_WANT_WRITE;
        return;
      }
      session_fail(s, (int)r, s->ops->detail(s->eng));
      return;
    }
    if (st->kind == STEP_CLOSE && !st->closed) {
      int r = s->ops->close_notify(s->eng);
      if (r == 0) {
        st->closed = true;
        s->write_end = AK_ETLSCLOSED;
      } else if (is_want(s, r)) {
        return;
      } else {
        session_fail(s, r, s->ops->detail(s->eng));
        return;
      }
    }
    /* All handed to the engine: settle once the bytes have left. */
    if (s->wire.out_len > 0 && s->wire.out_status == 0)
      return;
    if (s->wire.out_status < 0)
      step_settle(&s->wr, s->wire.out_status, NULL);
    else
      step_settle(&s->wr, st->kind == STEP_WRITE ? (int64_t)st->len : 0, NULL);
  }
}

static void drive(ak_tls *s) {
  s->want_recv = false;
  if (s->fatal) {
    session_fail(s, s->fatal, s->fatal_detail);
    return;
  }
  if (!drive_handshake(s))
    return;
  drive_reads(s);
  drive_writes(s);
}

/* Moves a session the engine made for resumption (at the handshake's end,
 * or with TLS 1.3 in a read after it) into the config's cache. */
static void keep_new_session(ak_tls *s) {
  if (!s->cache_key)
    return;
  ak__tls_sess *sess = s->ops->eng_take_session(s->eng);
  if (sess)
    ak__tls_session_cache_put(s->cfg->sessions, s->cache_key, sess);
}

/* Runs the engine until it waits on the ring, then makes the ring ops. */
static void pump(ak_tls *s) {
  if (s->driving) {
    s->again = true;
    return;
  }
  s->driving = true;
  do {
    s->again = false;
    drive(s);
  } while (s->again);
  s->driving = false;
  keep_new_session(s);
  if (!s->fatal || s->wire.out_len > 0)
    ring_io(s);
}

/* ---- Public steps ---------------------------------------------------------------------- */

static ak_future *failed_now(ak_loop *loop, int err, const char *detail) {
  ak_future *f = ak_future_new(loop);
  if (f)
    ak_future_fail(f, err, detail);
  return f;
}

ak_future *ak_tls_handshake(ak_tls *s) {
  if (s->freed)
    return failed_now(s->loop, AK_ETLSCLOSED, NULL);
  if (s->hs_done) {
    ak_future *f = ak_future_new(s->loop);
    if (f)
      ak_future_set(f, 0, NULL, NULL);
    return f;
  }
  ak_future *f = step_new(s, &s->hs, STEP_HANDSHAKE, NULL, 0);
  if (f)
    pump(s);
  return f;
}

ak_future *ak_tls_read(ak_tls *s, void *buf, size_t len) {
  if (len == 0 || !buf)
    return failed_now(s->loop, -EINVAL, "tls read: empty buffer");
  ak_future *f = step_new(s, &s->rd, STEP_READ, buf, len);
  if (f)
    pump(s);
  return f;
}

ak_future *ak_tls_write(ak_tls *s, const void *buf, size_t len) {
  if (len > 0 && !buf)
    return failed_now(s->loop, -EINVAL, "tls write: no buffer");
  ak_future *f = step_new(s, &s->wr, STEP_WRITE, buf, len);
  if (f)
    pump(s);
  return f;
}

ak_future *ak_tls_close_notify(ak_tls *s) {
  ak_future *f = step_new(s, &s->wr, STEP_CLOSE, NULL, 0);
  if (f)
    pump(s);
  return f;
}

void ak_tls_free(ak_tls *s) {
  if (!s)
    return;
  s->freed = true;
  queue_fail_all(&s->hs, AK_ETLSCLOSED, NULL);
  queue_fail_all(&s->rd, AK_ETLSCLOSED, NULL);
  queue_fail_all(&s->wr, AK_ETLSCLOSED, NULL);
  /* Ops in flight keep their references; the buffers live until the
   * kernel lets go of them. */
  if (s->recv_op)
    ak_future_cancel(s->recv_op);
  if (s->send_op)
    ak_future_cancel(s->send_op);
  /* The caller closes fd next, and a new socket may get its number before
   * the loop's next batch: an op still in the SQ would then run on that
   * socket (seen: a TLS 1.3 server's tickets, queued after its handshake,
   * sent into the next test's connection). Handing the SQ to the kernel now
   * makes every op resolve the fd it was made for. */
  if (s->recv_op || s->send_op)
    ak__loop_submit_early(s->loop, true);
  session_unref(s);
}

void ak_tls_stats_get(const ak_tls *s, ak_tls_stats *out) {
  *out = s->st;
  out->handshake_done = s->hs_done;
  out->resumed = s->resumed;
  s->ops->names(s->eng, &out->version, &out->ciphersuite, &out->alpn);
  out->direct_records = s->ops->direct_records ? s->ops->direct_records(s->eng) : 0;
}

int ak_tls_fd(const ak_tls *s) { return s->fd; }
