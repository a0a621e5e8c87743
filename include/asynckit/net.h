/* asynckit/net.h: sockets as futures on a loop's ring: socket, connect with
 * a deadline, accept and multishot accept, recv/send/sendmsg/recvmsg, send
 * all, shutdown, close; multishot receive on a provided-buffer ring; name
 * resolution on the pool; connect by host name, in turn or racing the
 * families (Happy Eyeballs).
 *
 * Each call returns a future owned by the loop (NULL when memory runs out)
 * and must be made on the loop's thread (else the future fails with
 * AK_ENOTOWNER). Errors are the kernel's -errno, unchanged.
 *
 * Buffers, iovecs, msghdrs and sockaddrs passed in belong to the kernel until
 * the future settles, cancelled or not: keep them alive until then.
 *
 * Sockets used with the ring stay blocking: io_uring answers -EAGAIN for
 * O_NONBLOCK sockets instead of waiting. Every send adds MSG_NOSIGNAL, so a
 * peer that has gone away gives -EPIPE and never raises SIGPIPE.
 *
 * On the epoll backend (loop.h's ak_backend; docs/backends.md) every call
 * here works with the same futures, results and rules: the library tries
 * each operation without blocking (MSG_DONTWAIT) and waits for readiness
 * in between; sockets stay blocking (only ak_connect sets O_NONBLOCK, for
 * the one connect(2) call: a connect cannot be started otherwise without
 * blocking). Differences are noted per call.
 *
 * Not thread-safe unless a comment says so.
 */
#ifndef ASYNCKIT_NET_H
#define ASYNCKIT_NET_H

#include "api.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "loop.h"

#ifdef __cplusplus
extern "C" {
#endif

struct addrinfo;
struct msghdr;

/* ---- Single operations ----------------------------------------------------- */

/* socket(2): result the new fd (close-on-exec is always added). type must not
 * carry SOCK_NONBLOCK (-EINVAL). If the future was cancelled and the socket
 * is made anyway, the library closes it. */
AK_API ak_future *ak_socket(ak_loop *loop, int domain, int type, int protocol);

/* connect(2) on fd to addr (copied: it need not outlive the call). With
 * timeout_ns >= 0 a linked kernel timeout bounds the attempt and the future
 * fails with -ETIMEDOUT when it fires; AK_FOREVER: no deadline. Result 0.
 * The fd stays the caller's whatever happens. */
AK_API ak_future *ak_connect(ak_loop *loop, int fd, const struct sockaddr *addr, socklen_t addrlen,
                             int64_t timeout_ns);

/* accept4(2): result the new connection's fd. (On epoll, accept4 is called
 * once epoll reports a connection waiting; a listening socket shared with
 * another process's blocking accept could take that connection first and
 * leave the loop's thread in accept4 until the next one.) addr and addrlen may be NULL;
 * otherwise *addrlen is the room in addr on entry and the peer address is
 * stored when the future settles DONE. flags: SOCK_CLOEXEC is always added;
 * SOCK_NONBLOCK gives -EINVAL. A connection accepted after the future was
 * cancelled is closed by the library. */
AK_API ak_future *ak_accept(ak_loop *loop, int fd, struct sockaddr *addr, socklen_t *addrlen,
                            int flags);

/* recv(2): result the bytes received, 0 at end of stream. */
AK_API ak_future *ak_recv(ak_loop *loop, int fd, void *buf, size_t len, int flags);

/* send(2) with MSG_NOSIGNAL added: result the bytes sent (may be short). */
AK_API ak_future *ak_send(ak_loop *loop, int fd, const void *buf, size_t len, int flags);

/* Sends all len bytes, resubmitting after short sends. Result len, or the
 * first error (-EPIPE, -ECONNRESET...). Cancelling stops between or during
 * sends; how much went out is then unknown. */
AK_API ak_future *ak_send_all(ak_loop *loop, int fd, const void *buf, size_t len, int flags);

/* sendmsg(2) / recvmsg(2), MSG_NOSIGNAL added to sends. The msghdr itself is
 * copied (it need not outlive the call); its iovecs, name and control
 * buffers must live until the future settles. recvmsg stores msg_namelen,
 * msg_controllen and msg_flags back into *msg before the future settles
 * DONE, so msg must live until then too. Result: bytes. */
AK_API ak_future *ak_sendmsg(ak_loop *loop, int fd, const struct msghdr *msg, int flags);
AK_API ak_future *ak_recvmsg(ak_loop *loop, int fd, struct msghdr *msg, int flags);

/* shutdown(2): how is SHUT_RD, SHUT_WR or SHUT_RDWR. Result 0. */
AK_API ak_future *ak_shutdown(ak_loop *loop, int fd, int how);

/* Closes fd. Operations still pending on it in the kernel are cancelled by
 * fd first (IORING_ASYNC_CANCEL_FD | IORING_ASYNC_CANCEL_ALL), so a pending
 * recv settles promptly (CANCELLED) and the peer sees the FIN at once rather
 * than when the last operation lets go of the socket. The cancel is sent
 * when this thread has socket ops (this header's) pending on fd; otherwise
 * the close goes straight to the kernel (a cancel by fd scans every pending
 * request: with 10,000 connections that dominated the cost of closing).
 * Result 0. */
AK_API ak_future *ak_close(ak_loop *loop, int fd);

/* ---- Streams of results (multishot) -------------------------------------------
 * A stream is a callback per item plus a future that settles when the stream
 * ends. The callback runs on the loop's thread and returns whether to go on
 * (libxev's REARM/DISARM). When the kernel ends a multishot operation for its
 * own reasons (out of buffers, CQ pressure) the library re-arms it; the user
 * sees one unbroken stream. After STOP or a cancel, items the kernel had
 * already completed are not delivered (connections among them are closed),
 * and the future settles once the kernel has let go: DONE after STOP,
 * CANCELLED after a cancel. A stream re-arms on the fd it was given: end it
 * before closing the fd (ak_close cancels it if it is in the kernel). */

typedef enum ak_stream_action {
  AK_STREAM_CONTINUE = 0, /* keep delivering */
  AK_STREAM_STOP = 1,     /* end the stream; its future settles DONE */
} ak_stream_action;

/* An accepted connection (fd >= 0, now the callback's to close), or an error
 * of the accept (fd < 0: -EMFILE, -ENFILE, -ENOMEM, -ECONNABORTED...). After
 * an error, CONTINUE re-arms the accept (after 10 ms for a lack of fds or
 * memory, so a full fd table does not spin) and STOP ends the stream. */
typedef ak_stream_action (*ak_accept_fn)(ak_loop *loop, int fd, void *arg);

/* Multishot accept on a listening socket (single-shot accepts re-armed on
 * kernels without it; on epoll the accept stays armed and takes every
 * connection poll(2) says is waiting, up to 64 per readiness report). flags as ak_accept. The future settles DONE with the
 * number of connections delivered when the callback says STOP, or CANCELLED.
 * Connections the kernel delivers after STOP or a cancel are closed. */
AK_API ak_future *ak_accept_stream(ak_loop *loop, int fd, int flags, ak_accept_fn fn, void *arg);

/* A provided-buffer ring: count buffers of size bytes the kernel picks from
 * as data arrives (5.19+), shared by any number of receive streams of one
 * loop. count is a power of two <= 32768; size > 0. On kernels without
 * buffer rings (ak_features.buf_ring false) the ring is made anyway and
 * streams using it receive with single-shot recvs into buffers of their own
 * of the same size. Returns 0 and sets *out, or -EINVAL, -ENOMEM or the
 * kernel's error. On the loop's thread. */
typedef struct ak_buf_ring ak_buf_ring;
AK_API int ak_buf_ring_new(ak_loop *loop, unsigned count, size_t size, ak_buf_ring **out);

/* Whether the kernel provides the ring's buffers (false: the fallback; always
 * false on the epoll backend, where streams receive into buffers of their
 * own of the ring's buffer size, one recv at a time). */
AK_API bool ak_buf_ring_provided(const ak_buf_ring *br);

/* Frees the ring. Every stream using it must have settled, and the loop must
 * still be alive. NULL does nothing. */
AK_API void ak_buf_ring_free(ak_buf_ring *br);

/* Received bytes: data is borrowed for the call only (the buffer goes back
 * to the ring when the callback returns). len > 0. */
typedef ak_stream_action (*ak_recv_fn)(ak_loop *loop, const void *data, size_t len, void *arg);

/* Multishot recv on fd with buffers from br (br may be NULL: single-shot
 * recvs into a 16 KiB buffer of the stream's own). The future settles DONE
 * with the total bytes delivered at end of stream or when the callback says
 * STOP, FAILED with the error that ended it (-ECONNRESET...), or CANCELLED.
 * The loop's statistics count how often the ring ran dry (buf_exhausted);
 * no bytes are lost then: the stream re-arms once buffers are back. */
AK_API ak_future *ak_recv_stream(ak_loop *loop, int fd, ak_buf_ring *br, ak_recv_fn fn, void *arg);

/* ---- Registered sockets --------------------------------------------------------------
 * A registered socket sits in the ring's file table, and every ring op on it
 * skips the kernel's fd lookup (liburing's fixed files). The fd stays the
 * handle: every call above takes it as before. Owner thread only.
 *
 * The ring holds its own reference to a registered socket: ak_close drops it
 * first, but a socket closed any other way must be unregistered before, or
 * it stays open (the peer sees no FIN) and a new fd of the same number would
 * be taken for the old socket.
 *
 * The table is made at the first registration (kernel 5.19+, else -EINVAL),
 * with a slot per fd up to RLIMIT_NOFILE's soft limit then (at most 65,536);
 * a higher fd is -ERANGE. The ring has one table: with files registered by
 * ak_register_files this is -EBUSY, and the other way round. */

/* Registers fd (again: no change). Returns 0 or -errno (-EBADF...). On the
 * epoll backend both calls are no-ops: register returns 0 for an open fd
 * (-EBADF otherwise) and unregister 0. */
AK_API int ak_socket_register(ak_loop *loop, int fd);
/* Drops the ring's reference; ops in flight keep theirs until they complete.
 * Returns 0, or -ENOENT if fd is not registered. */
AK_API int ak_socket_unregister(ak_loop *loop, int fd);

/* ---- Registered receive buffers -------------------------------------------------------
 * A receive buffer registered with its loop sits in the ring's buffer table,
 * its pages pinned, and a receive into it is io_uring's READ_FIXED on the
 * socket: the kernel copies into the pinned pages directly, without the
 * page walk, the page faults and the user-copy checks of every recv. On
 * 1000 x 1 MiB over loopback this cut akget's wall time by a fifth, 0.845 s
 * to 0.678 s (docs/akget.md, PERFORMANCE). Owner thread only.
 *
 * The table is made at the first registration (kernel 5.19+, else -EINVAL)
 * with AK_BUFFER_SLOTS slots, and stays with the loop (dropping a whole
 * table makes older kernels wait for every op using it). The ring has one
 * buffer table: while ak_register_buffers (fs.h) holds it this is -EBUSY,
 * and once this one is made ak_register_buffers is -EBUSY on that loop. Pinned memory counts against RLIMIT_MEMLOCK (unless CAP_IPC_LOCK):
 * past it, -ENOMEM. On the epoll backend there is no table: AK_EBACKEND. A
 * caller keeps plain ak_recv when registering fails; nothing else changes. */

enum { AK_BUFFER_SLOTS = 256 };

/* Registers buf (len bytes, at most 1 GiB) and returns its slot (>= 0), or
 * a negative error: -EBUSY, -ENOSPC when every slot is taken, -ENOMEM,
 * -EINVAL (len 0, or no sparse tables), AK_EBACKEND, or the kernel's. */
AK_API int ak_buffer_register(ak_loop *loop, void *buf, size_t len);
/* Frees the slot; the pages stay pinned until the ops using them complete,
 * so the buffer may be freed once those have settled. Returns 0, or -ENOENT
 * if slot is not one ak_buffer_register returned (or was freed already). */
AK_API int ak_buffer_unregister(ak_loop *loop, int slot);

/* ak_recv with flags 0 into the registered buffer of slot: buf .. buf + len
 * must lie within it (else the op fails -EFAULT). slot -1: a plain ak_recv,
 * and on the epoll backend always one. Result as ak_recv's. */
AK_API ak_future *ak_recv_registered(ak_loop *loop, int fd, void *buf, size_t len, int slot);

/* ---- Names ------------------------------------------------------------------------ */

/* getaddrinfo(3) on the loop's pool (a numeric host with a numeric or no
 * service on the caller's thread: settled when this returns). host or
 * service may be NULL (not both);
 * hints may be NULL (AF_UNSPEC, SOCK_STREAM). Result: the
 * number of addresses; value: the struct addrinfo list (borrowed; freed with
 * the future). Failure: AK_ERESOLVE with gai_strerror's text as the future's
 * detail (-ENOMEM when memory runs out). Cancelling a lookup that has started
 * only drops its answer. */
AK_API ak_future *ak_getaddrinfo(ak_loop *loop, const char *host, const char *service,
                                 const struct addrinfo *hints);

/* Resolves host, then connects a TCP socket to each address in turn, each
 * attempt bounded by attempt_timeout_ns (AK_FOREVER: none). Result: the
 * connected fd, now the caller's. Failure: AK_ERESOLVE (with the resolver's
 * text) or the last attempt's error, with a detail naming the address. */
AK_API ak_future *ak_connect_host(ak_loop *loop, const char *host, uint16_t port,
                                  int64_t attempt_timeout_ns);

/* ---- Connect by name, Happy Eyeballs (RFC 8305) ------------------------------------------
 * The name's IPv6 and IPv4 addresses (one getaddrinfo, AF_UNSPEC: both
 * asked at once, answers in RFC 6724's order) are tried interleaved by
 * family, the first answer's family first. One attempt starts; the next
 * starts after stagger_ns, or at once when an attempt fails; the first
 * connection made wins, and the attempts still in flight are cancelled
 * (their sockets closed by the library). An address whose SYNs vanish costs
 * the stagger, not its connect timeout. */

typedef struct ak_connect_options {
  int family;                 /* AF_UNSPEC (0): both; AF_INET or AF_INET6:
                                 that family only (akget -4 / -6) */
  int64_t attempt_timeout_ns; /* each attempt's deadline (a linked kernel
                                 timeout); 0: 30 s; AK_FOREVER: none */
  int64_t stagger_ns;         /* before the next attempt starts; 0: 250 ms */
} ak_connect_options;

/* Resolves host and connects to port as above; opts may be NULL (the
 * defaults). Result: the connected fd, now the caller's. Failure:
 * AK_ERESOLVE (the resolver's text, or no address of the family asked),
 * else the last attempt's error (-ECONNREFUSED, -ETIMEDOUT...) with a
 * detail naming its address; -EINVAL for a family other than the three.
 * Cancelling settles CANCELLED once every attempt has completed; a socket
 * connected meanwhile is closed. */
AK_API ak_future *ak_connect_name(ak_loop *loop, const char *host, uint16_t port,
                                  const ak_connect_options *opts);

/* The same over addresses already known: list (each ai_addr with its port)
 * is copied before the call returns (at most 64 addresses are tried). */
AK_API ak_future *ak_connect_addrinfo(ak_loop *loop, const struct addrinfo *list,
                                      const ak_connect_options *opts);

/* ---- Plain helpers (no ring) --------------------------------------------------------- */

/* A blocking TCP listening socket bound to ip ("127.0.0.1", "::1", NULL: any
 * IPv4) and port (0: the kernel picks), with SO_REUSEADDR and close-on-exec.
 * Returns the fd or a negative error. Thread-safe. */
AK_API int ak_tcp_listen(const char *ip, uint16_t port, int backlog);

/* The local port a socket is bound to, or a negative error. Thread-safe. */
AK_API int ak_socket_port(int fd);

#ifdef __cplusplus
}
#endif
#endif /* ASYNCKIT_NET_H */
