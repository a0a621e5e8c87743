/* akb_net.h: what akbench's network workloads (wl_echo.c, wl_stream.c,
 * wl_conns.c) share: running a server and a client as two child processes
 * at once, each with its own CPU time (net_common.c), the records the
 * children report through a pipe, and the libuv sides of echo and conns
 * (uv_net.c, built with libuv only). The asynckit sides live in the
 * workload files themselves.
 */
#ifndef AKB_NET_H
#define AKB_NET_H

#include "akbench.h"

#include <stdbool.h>
#include <stdint.h>
#include <sys/resource.h>
#include <sys/types.h>

/* ---- Children ---------------------------------------------------------------- */

/* What a child reports: a workload-defined record of at most this size. */
enum { AKB_NET_REPORT = 256 };

typedef struct akb_child {
  pid_t pid;
  int pipe_fd; /* the read end of the child's report pipe */
} akb_child;

/* Forks; the child runs fn(arg, report) with a zeroed report buffer, writes
 * it to the pipe and exits with fn's status (0..125). Returns 0 or -errno. */
int akb_child_start(akb_child *c, int (*fn)(void *arg, void *report), void *arg);

/* Reads the child's report (AKB_NET_REPORT bytes), waits for it and gives
 * its rusage in CPU seconds. Returns the child's exit status (>= 0), or
 * -errno / -ECHILD when it died or sent nothing. */
int akb_child_finish(akb_child *c, void *report, double *user_s, double *sys_s);

/* Kills a child that will not finish on its own (after a failure). */
void akb_child_kill(akb_child *c);

/* ---- Small helpers ------------------------------------------------------------- */

/* A blocking listening socket on 127.0.0.1, port picked by the kernel.
 * Returns the fd or -errno; *port gets the port. */
int akb_listen_loopback(int backlog, int *port);

/* Raises RLIMIT_NOFILE's soft limit to the hard limit; returns the new soft
 * limit. */
long akb_raise_nofile(void);

/* Open fds of this process (/proc/self/fd), or -1. */
int akb_count_fds(void);

/* CLOCK_MONOTONIC in seconds. */
double akb_now_s(void);

/* ---- echo: 64 connections ping-ponging small messages ------------------------- */

typedef struct akb_echo_params {
  int port;          /* the server's listening port (127.0.0.1) */
  int listen_fd;     /* the listening socket, inherited by the server */
  unsigned conns;    /* connections */
  unsigned msg_size; /* bytes per message */
  double seconds;    /* how long the client ping-pongs */
} akb_echo_params;

typedef struct akb_echo_report {
  uint64_t round_trips; /* completed inside the timed window */
  double wall_s;        /* the timed window */
  uint64_t errors;      /* wrong bytes, failed ops */
  char what[160];       /* the first error */
} akb_echo_report;

/* ---- conns: 10,000 connections, each moving 1 MiB ------------------------------ */

/* Connections whose transfers start per loop iteration (both clients). */
#define AKB_CONNS_SLICE 64

typedef struct akb_conns_params {
  int port;
  int listen_fd;
  unsigned conns;          /* connections held at once */
  uint64_t bytes;          /* bytes each connection sends to the server */
  unsigned connect_window; /* connects in flight at most */
} akb_conns_params;

typedef struct akb_conns_report {
  uint64_t held;   /* connections open at once at the peak */
  uint64_t served; /* connections that moved every byte and got the ack */
  uint64_t errors;
  double connect_s;  /* all connections established */
  double transfer_s; /* then every byte moved and acknowledged */
  int fds_before;    /* the process's fd count before and after */
  int fds_after;
  char what[160];
} akb_conns_report;

#ifdef AKBENCH_HAVE_UV
/* The libuv sides, child-process entry points: arg is the params, report
 * the report record. Return 0, or 1 when the run failed (report->what). */
int akb_uv_echo_server(void *arg, void *report);
int akb_uv_echo_client(void *arg, void *report);
int akb_uv_conns_server(void *arg, void *report);
int akb_uv_conns_client(void *arg, void *report);
#endif

#endif /* AKB_NET_H */
