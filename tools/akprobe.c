/* akprobe: what io_uring offers on this kernel and what asynckit makes of it.
 *
 * Owns: starting one loop (which probes the kernel once), naming the kernel's
 * IORING_FEAT_* bits and the ring's IORING_SETUP_* flags, and listing each
 * opcode asynckit uses with whether the kernel has it and the path asynckit
 * takes for it (the ring, the pool, or none). Output is a table, or with
 * --json one JSON object. Does not own the probing itself: that is the loop's
 * (ak_loop_features); this program only reports it.
 *
 * It also names the backend a default loop runs on and why (io_uring, or
 * epoll where io_uring is blocked or disabled, or when AK_BACKEND asks).
 *
 * Exit status: 0 when a loop could be created (on either backend), 1 when
 * none can be (the error's name says why), 2 on a usage error.
 */
#include <asynckit.h>

/* Constants only (IORING_FEAT_*, _SETUP_*, _OP_*); the UAPI header needs
 * struct __kernel_timespec declared first, as <liburing.h> would do. */
#include <linux/time_types.h>

#include <liburing/io_uring.h>

#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/utsname.h>

/* Bits newer than the liburing 2.3 headers Debian 12 ships. The kernel may
 * well have them (6.18 does); the values are the kernel's UAPI and never
 * change once released. */
#ifndef IORING_FEAT_REG_REG_RING
#define IORING_FEAT_REG_REG_RING (1U << 13) /* 6.3 */
#endif
#ifndef IORING_FEAT_RECVSEND_BUNDLE
#define IORING_FEAT_RECVSEND_BUNDLE (1U << 14) /* 6.10 */
#endif
#ifndef IORING_FEAT_MIN_TIMEOUT
#define IORING_FEAT_MIN_TIMEOUT (1U << 15) /* 6.12 */
#endif
#ifndef IORING_FEAT_RW_ATTR
#define IORING_FEAT_RW_ATTR (1U << 16) /* 6.14 */
#endif
#ifndef IORING_FEAT_NO_IOWAIT
#define IORING_FEAT_NO_IOWAIT (1U << 17) /* 6.15 */
#endif
#ifndef IORING_SETUP_NO_MMAP
#define IORING_SETUP_NO_MMAP (1U << 14) /* 6.5 */
#endif
#ifndef IORING_SETUP_REGISTERED_FD_ONLY
#define IORING_SETUP_REGISTERED_FD_ONLY (1U << 15) /* 6.5 */
#endif
#ifndef IORING_SETUP_NO_SQARRAY
#define IORING_SETUP_NO_SQARRAY (1U << 16) /* 6.6 */
#endif
#ifndef IORING_SETUP_HYBRID_IOPOLL
#define IORING_SETUP_HYBRID_IOPOLL (1U << 17) /* 6.13 */
#endif

typedef struct bit_name {
  unsigned bit;     /* the flag's value (one bit) */
  const char *name; /* its name without the IORING_FEAT_ / IORING_SETUP_ prefix */
} bit_name;

// clang-format off
#define BIT(prefix, x) {prefix##x, #x}
// clang-format on

static const bit_name feature_names[] = {
    BIT(IORING_FEAT_, SINGLE_MMAP),     BIT(IORING_FEAT_, NODROP),
    BIT(IORING_FEAT_, SUBMIT_STABLE),   BIT(IORING_FEAT_, RW_CUR_POS),
    BIT(IORING_FEAT_, CUR_PERSONALITY), BIT(IORING_FEAT_, FAST_POLL),
    BIT(IORING_FEAT_, POLL_32BITS),     BIT(IORING_FEAT_, SQPOLL_NONFIXED),
    BIT(IORING_FEAT_, EXT_ARG),         BIT(IORING_FEAT_, NATIVE_WORKERS),
    BIT(IORING_FEAT_, RSRC_TAGS),       BIT(IORING_FEAT_, CQE_SKIP),
    BIT(IORING_FEAT_, LINKED_FILE),     BIT(IORING_FEAT_, REG_REG_RING),
    BIT(IORING_FEAT_, RECVSEND_BUNDLE), BIT(IORING_FEAT_, MIN_TIMEOUT),
    BIT(IORING_FEAT_, RW_ATTR),         BIT(IORING_FEAT_, NO_IOWAIT),
};

static const bit_name setup_names[] = {
    BIT(IORING_SETUP_, IOPOLL),        BIT(IORING_SETUP_, SQPOLL),
    BIT(IORING_SETUP_, SQ_AFF),        BIT(IORING_SETUP_, CQSIZE),
    BIT(IORING_SETUP_, CLAMP),         BIT(IORING_SETUP_, ATTACH_WQ),
    BIT(IORING_SETUP_, R_DISABLED),    BIT(IORING_SETUP_, SUBMIT_ALL),
    BIT(IORING_SETUP_, COOP_TASKRUN),  BIT(IORING_SETUP_, TASKRUN_FLAG),
    BIT(IORING_SETUP_, SQE128),        BIT(IORING_SETUP_, CQE32),
    BIT(IORING_SETUP_, SINGLE_ISSUER), BIT(IORING_SETUP_, DEFER_TASKRUN),
    BIT(IORING_SETUP_, NO_MMAP),       BIT(IORING_SETUP_, REGISTERED_FD_ONLY),
    BIT(IORING_SETUP_, NO_SQARRAY),    BIT(IORING_SETUP_, HYBRID_IOPOLL),
};

typedef struct op_use {
  unsigned op;      /* IORING_OP_* */
  const char *name; /* without the IORING_OP_ prefix */
  bool has_pool;    /* asynckit can run it on the pool when the kernel lacks it */
} op_use;

// clang-format off
#define OP(x, pool) {IORING_OP_##x, #x, pool}
// clang-format on

/* The opcodes asynckit submits. The ones without a pool path are the ring's
 * own machinery (timeouts, cancellation, wakeups, readiness), which a thread
 * cannot stand in for. */
static const op_use ops_used[] = {
    OP(NOP, false),          OP(READ, true),      OP(WRITE, true),     OP(READV, true),
    OP(WRITEV, true),        OP(FSYNC, true),     OP(TIMEOUT, false),  OP(LINK_TIMEOUT, false),
    OP(ASYNC_CANCEL, false), OP(OPENAT, true),    OP(CLOSE, true),     OP(STATX, true),
    OP(FALLOCATE, true),     OP(RENAMEAT, true),  OP(UNLINKAT, true),  OP(MKDIRAT, true),
    OP(SPLICE, true),        OP(SOCKET, true),    OP(CONNECT, true),   OP(ACCEPT, true),
    OP(RECV, true),          OP(SEND, true),      OP(SENDMSG, true),   OP(RECVMSG, true),
    OP(SHUTDOWN, true),      OP(POLL_ADD, false), OP(MSG_RING, false), OP(PROVIDE_BUFFERS, true),
};

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

static bool kernel_has(const ak_features *ft, unsigned op)
{
  /* Entries past probed_ops were not asked about: the kernel predates them. */
  return op < ft->probed_ops && op < COUNT(ft->opcodes) && ft->opcodes[op];
}

/* On epoll: socket ops and reads/writes of pipes wait for readiness; the
 * rest runs on the pool; timeouts, cancellation and wakeups are the loop's
 * own (docs/backends.md). */
static const char *epoll_path_of(const op_use *u)
{
  switch (u->op) {
  case IORING_OP_READ:
  case IORING_OP_WRITE:
  case IORING_OP_READV:
  case IORING_OP_WRITEV:
    return "epoll (pipes, sockets) / pool (files)";
  case IORING_OP_CONNECT:
  case IORING_OP_ACCEPT:
  case IORING_OP_RECV:
  case IORING_OP_SEND:
  case IORING_OP_SENDMSG:
  case IORING_OP_RECVMSG:
  case IORING_OP_POLL_ADD:
    return "epoll";
  case IORING_OP_SOCKET:
  case IORING_OP_SHUTDOWN:
  case IORING_OP_CLOSE:
    return "loop thread (never blocks)";
  case IORING_OP_NOP:
  case IORING_OP_TIMEOUT:
  case IORING_OP_LINK_TIMEOUT:
  case IORING_OP_ASYNC_CANCEL:
  case IORING_OP_MSG_RING:
    return "loop (timers, cancel, eventfd)";
  case IORING_OP_PROVIDE_BUFFERS:
    return "own buffers (no provided buffers)";
  default:
    return "pool";
  }
}

static const char *path_of(const ak_features *ft, const op_use *u)
{
  if (ft->backend == AK_BACKEND_EPOLL)
    return epoll_path_of(u);
  if (kernel_has(ft, u->op))
    return "ring";
  return u->has_pool ? "pool" : "unavailable";
}

static const char *yes_no(bool b)
{
  return b ? "yes" : "no";
}

/* ---- Table output ---------------------------------------------------------- */

static void print_bits(const char *title, unsigned value, const bit_name *names, size_t n,
                       bool list_absent)
{
  printf("%s (0x%x):\n", title, value);
  unsigned known = 0;
  for (size_t i = 0; i < n; i++) {
    known |= names[i].bit;
    if (list_absent)
      printf("  %-20s %s\n", names[i].name, yes_no(value & names[i].bit));
    else if (value & names[i].bit)
      printf("  %s\n", names[i].name);
  }
  /* Bits this program has no name for: a kernel newer than this list. */
  for (unsigned b = 0; b < 32; b++)
    if ((value & ~known) & (1U << b))
      printf("  bit %-16u set (no name known here)\n", b);
}

static void print_table(const ak_features *ft, const char *kernel)
{
  if (ft->backend == AK_BACKEND_EPOLL) {
    printf("asynckit %s on Linux %s: backend epoll\n", ak_version_string(), kernel);
    printf("  why: %s\n", ft->backend_reason);
    if (ft->uring_error)
      printf("  io_uring: %s: %s\n", ak_err_name(ft->uring_error), ak_strerror(ft->uring_error));
    printf("\n%-20s %s\n", "opcode", "asynckit on epoll");
    for (size_t i = 0; i < COUNT(ops_used); i++)
      printf("%-20s %s\n", ops_used[i].name, path_of(ft, &ops_used[i]));
    return;
  }
  printf("asynckit %s on Linux %s: io_uring available\n", ak_version_string(), kernel);
  printf("  backend: io_uring (%s)\n\n", ft->backend_reason);
  print_bits("kernel features", ft->kernel_features, feature_names, COUNT(feature_names), true);
  printf("\n");
  print_bits("ring setup flags", ft->setup_flags, setup_names, COUNT(setup_names), false);
  printf("\n");
  printf("  %-20s %s\n", "registered ring fd", yes_no(ft->registered_ring_fd));
  printf("  %-20s %s\n", "ext_arg waits", yes_no(ft->ext_arg));
  printf("  %-20s %s\n", "buffer rings", yes_no(ft->buf_ring));
  printf("  %-20s %s\n", "msg_ring", yes_no(ft->msg_ring));
  printf("\n%-20s %-7s %s\n", "opcode", "kernel", "asynckit");
  for (size_t i = 0; i < COUNT(ops_used); i++)
    printf("%-20s %-7s %s\n", ops_used[i].name, yes_no(kernel_has(ft, ops_used[i].op)),
           path_of(ft, &ops_used[i]));
}

/* ---- JSON output ----------------------------------------------------------- */

/* Our strings are names and library messages; escape what JSON requires. */
static void json_string(const char *s)
{
  putchar('"');
  for (; *s; s++) {
    unsigned char c = (unsigned char)*s;
    if (c == '"' || c == '\\')
      printf("\\%c", c);
    else if (c < 0x20)
      printf("\\u%04x", c);
    else
      putchar(c);
  }
  putchar('"');
}

static void json_bits(const char *key, unsigned value, const bit_name *names, size_t n)
{
  printf("  \"%s\": {\"value\": %u, \"names\": [", key, value);
  const char *sep = "";
  unsigned known = 0;
  for (size_t i = 0; i < n; i++) {
    known |= names[i].bit;
    if (value & names[i].bit) {
      printf("%s", sep);
      json_string(names[i].name);
      sep = ", ";
    }
  }
  printf("], \"unnamed_bits\": %u},\n", value & ~known);
}

static void print_json(const ak_features *ft, const char *kernel)
{
  printf("{\n  \"asynckit\": ");
  json_string(ak_version_string());
  printf(",\n  \"kernel\": ");
  json_string(kernel);
  printf(",\n  \"available\": %s,\n  \"backend\": ",
         ft->backend == AK_BACKEND_URING ? "true" : "false");
  json_string(ak_backend_name(ft->backend));
  printf(",\n  \"backend_reason\": ");
  json_string(ft->backend_reason);
  printf(",\n  \"uring_error\": ");
  json_string(ft->uring_error ? ak_err_name(ft->uring_error) : "");
  printf(",\n");
  json_bits("kernel_features", ft->kernel_features, feature_names, COUNT(feature_names));
  json_bits("setup_flags", ft->setup_flags, setup_names, COUNT(setup_names));
  printf("  \"registered_ring_fd\": %s,\n", ft->registered_ring_fd ? "true" : "false");
  printf("  \"ext_arg\": %s,\n", ft->ext_arg ? "true" : "false");
  printf("  \"buf_ring\": %s,\n", ft->buf_ring ? "true" : "false");
  printf("  \"msg_ring\": %s,\n", ft->msg_ring ? "true" : "false");
  printf("  \"probed_ops\": %u,\n", ft->probed_ops);
  printf("  \"opcodes\": {\n");
  for (size_t i = 0; i < COUNT(ops_used); i++) {
    printf("    ");
    json_string(ops_used[i].name);
    printf(": {\"opcode\": %u, \"kernel\": %s, \"path\": \"%s\"}%s\n", ops_used[i].op,
           kernel_has(ft, ops_used[i].op) ? "true" : "false", path_of(ft, &ops_used[i]),
           i + 1 < COUNT(ops_used) ? "," : "");
  }
  printf("  }\n}\n");
}

static void print_unavailable(int err, const char *kernel, bool json)
{
  if (!json) {
    fprintf(stderr, "akprobe: no loop can run on Linux %s: %s: %s\n", kernel,
            ak_err_name(err), ak_strerror(err));
    return;
  }
  printf("{\n  \"asynckit\": ");
  json_string(ak_version_string());
  printf(",\n  \"kernel\": ");
  json_string(kernel);
  printf(",\n  \"available\": false,\n  \"backend\": null,\n  \"error\": ");
  json_string(ak_err_name(err));
  printf(",\n  \"errno\": %d,\n  \"message\": ", err);
  json_string(ak_strerror(err));
  printf("\n}\n");
}

static void usage(FILE *to)
{
  fprintf(to, "usage: akprobe [--json]\n"
              "Prints the kernel's io_uring features and, for each opcode asynckit uses,\n"
              "whether the kernel has it and whether asynckit runs it on the ring or the pool.\n"
              "It names the backend a loop runs on (io_uring, or epoll) and why.\n"
              "Exit status: 0 a loop can run here (either backend), 1 none can (the\n"
              "cause is printed), 2 usage.\n");
}

int main(int argc, char **argv)
{
  bool json = false;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--json") == 0) {
      json = true;
    } else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
      usage(stdout);
      return 0;
    } else {
      fprintf(stderr, "akprobe: unknown argument '%s'\n", argv[i]);
      usage(stderr);
      return 2;
    }
  }

  struct utsname uts;
  const char *kernel = uname(&uts) == 0 ? uts.release : "(unknown)";

  ak_loop *loop = NULL;
  int err = ak_loop_new(&loop, NULL);
  if (err < 0) {
    print_unavailable(err, kernel, json);
    return 1;
  }
  ak_features ft;
  memset(&ft, 0, sizeof(ft));
  ak_loop_features(loop, &ft);
  ak_loop_free(loop);

  if (json)
    print_json(&ft, kernel);
  else
    print_table(&ft, kernel);
  if (fflush(stdout) != 0 || ferror(stdout)) {
    perror("akprobe: stdout");
    return 1;
  }
  return 0;
}
