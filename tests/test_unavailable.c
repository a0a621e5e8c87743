/* test_unavailable.c: io_uring blocked by seccomp names the cause, and the loop falls back to epoll unless io_uring is insisted on; the error table. */
#define _GNU_SOURCE
#include "helpers.h"

#include "seccomp_filter.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

/* ---- Seccomp ------------------------------------------------------------------ */

/* Makes syscall nr fail with err for this process from now on (the shared
 * filter, seccomp_filter.c). Returns 0 or -errno. */
static int deny_syscall(unsigned nr, int err)
{
  return t_seccomp_deny(&nr, 1, err);
}

/* Child exit codes: 0 as expected, 77 filter not installable, others name
 * the check that failed (printed too). */
/* The sysctl kernel.io_uring_disabled, or 0 if the kernel has none. */
static int uring_disabled_sysctl(void)
{
  FILE *fp = fopen("/proc/sys/kernel/io_uring_disabled", "re");
  int v = 0;
  if (fp) {
    if (fscanf(fp, "%d", &v) != 1)
      v = 0;
    fclose(fp);
  }
  return v;
}

static int child_blocked(void *arg)
{
  int err = *(int *)arg;
  if (uring_disabled_sysctl() != 0)
    return T_EXIT_SKIP; /* the sysctl would be named instead */
  if (deny_syscall(T_NR_URING_SETUP, err) != 0)
    return T_EXIT_SKIP;
  unsetenv("AK_BACKEND"); /* the choice under test is the library's own */
  ak_loop *loop = NULL;
  ak_loop_options uring_only = {.backend = AK_BACKEND_URING};
  int rc = ak_loop_new(&loop, &uring_only);
  if (rc != AK_EURINGBLOCKED) {
    fprintf(stderr, "child: ak_loop_new gave %d (%s), want AK_EURINGBLOCKED\n", rc,
            ak_err_name(rc));
    if (rc == 0)
      ak_loop_free(loop);
    return 1;
  }
  if (loop != NULL) {
    fprintf(stderr, "child: *loop set on failure\n");
    return 2;
  }
  if (strstr(ak_strerror(rc), "seccomp") == NULL) {
    fprintf(stderr, "child: message does not name seccomp: %s\n", ak_strerror(rc));
    return 3;
  }
  if (strcmp(ak_err_name(rc), "AK_EURINGBLOCKED") != 0) {
    fprintf(stderr, "child: name %s\n", ak_err_name(rc));
    return 4;
  }
  /* AK_BACKEND=uring insists as the options do. */
  setenv("AK_BACKEND", "uring", 1);
  rc = ak_loop_new(&loop, NULL);
  unsetenv("AK_BACKEND");
  if (rc != AK_EURINGBLOCKED) {
    fprintf(stderr, "child: AK_BACKEND=uring gave %s\n", ak_err_name(rc));
    return 5;
  }
  /* By default the loop runs on epoll and says why. */
  rc = ak_loop_new(&loop, NULL);
  if (rc != 0) {
    fprintf(stderr, "child: default loop gave %s, want epoll\n", ak_err_name(rc));
    return 6;
  }
  ak_features ft;
  ak_loop_features(loop, &ft);
  ak_loop_stats st;
  ak_loop_stats_get(loop, &st);
  if (ft.backend != AK_BACKEND_EPOLL || st.backend != AK_BACKEND_EPOLL ||
      ft.uring_error != AK_EURINGBLOCKED || !strstr(ft.backend_reason, "seccomp") ||
      !strstr(ft.backend_reason, "epoll")) {
    fprintf(stderr, "child: backend %s, error %s, reason '%s'\n", ak_backend_name(ft.backend),
            ak_err_name(ft.uring_error), ft.backend_reason);
    ak_loop_free(loop);
    return 7;
  }
  /* And it works: a socket round trip through the loop. */
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
    return 8;
  char in[8] = {0};
  ak_future *r = ak_recv(loop, sv[0], in, sizeof(in), 0);
  ak_future *w = ak_send(loop, sv[1], "seccomp", 7, 0);
  int64_t got = ak_future_get(r, T_HANG_NS, NULL);
  int64_t sent = ak_future_get(w, T_HANG_NS, NULL);
  ak_future_release(r);
  ak_future_release(w);
  ak_loop_free(loop);
  close(sv[0]);
  close(sv[1]);
  if (got != 7 || sent != 7 || memcmp(in, "seccomp", 7) != 0) {
    fprintf(stderr, "child: epoll round trip: recv %lld send %lld\n", (long long)got,
            (long long)sent);
    return 9;
  }
  return 0;
}

static void check_blocked_with(int err)
{
  int status = t_run_in_child(child_blocked, &err);
  if (status == T_EXIT_SKIP)
    skip();
  assert_int_equal(status, 0);
}

static void test_seccomp_eperm(void **state)
{
  (void)state;
  check_blocked_with(EPERM);
}

static void test_seccomp_enosys(void **state)
{
  (void)state;
  check_blocked_with(ENOSYS);
}

static void test_seccomp_eacces(void **state)
{
  (void)state;
  check_blocked_with(EACCES);
}

/* A filter for something else leaves io_uring usable: the diagnosis looks at
 * the setup's failure, not at the mere presence of a filter. */
static int child_other_filter(void *arg)
{
  (void)arg;
  if (deny_syscall(__NR_getpriority, EPERM) != 0)
    return T_EXIT_SKIP;
  unsetenv("AK_BACKEND");
  ak_loop *loop = NULL;
  int rc = ak_loop_new(&loop, NULL);
  if (rc == AK_ENOURING || rc == AK_EURINGDISABLED || rc == AK_EURINGOLD)
    return T_EXIT_SKIP;
  if (rc != 0) {
    fprintf(stderr, "child: ak_loop_new gave %s\n", ak_err_name(rc));
    return 1;
  }
  ak_features ft;
  ak_loop_features(loop, &ft);
  ak_future *f = ak_nop(loop);
  int64_t res = ak_future_get(f, T_HANG_NS, NULL);
  ak_future_release(f);
  ak_loop_free(loop);
  if (ft.backend != AK_BACKEND_URING) {
    fprintf(stderr, "child: backend %s: %s\n", ak_backend_name(ft.backend), ft.backend_reason);
    return 3;
  }
  return res == 0 ? 0 : 2;
}

static void test_seccomp_other_syscall_keeps_uring(void **state)
{
  (void)state;
  int status = t_run_in_child(child_other_filter, NULL);
  if (status == T_EXIT_SKIP)
    skip();
  assert_int_equal(status, 0);
}

/* The environment's choice: epoll when asked, an unknown value refused, the
 * options' explicit choice above it; the names. */
static void test_backend_env_and_names(void **state)
{
  (void)state;
  char *old = getenv("AK_BACKEND") ? strdup(getenv("AK_BACKEND")) : NULL;
  ak_loop *loop = NULL;
  setenv("AK_BACKEND", "epoll", 1);
  assert_int_equal(ak_loop_new(&loop, NULL), 0);
  ak_features ft;
  ak_loop_features(loop, &ft);
  assert_int_equal(ft.backend, AK_BACKEND_EPOLL);
  assert_int_equal(ft.uring_error, 0);
  assert_non_null(strstr(ft.backend_reason, "AK_BACKEND"));
  ak_loop_free(loop);
  setenv("AK_BACKEND", "kqueue", 1);
  loop = NULL;
  assert_int_equal(ak_loop_new(&loop, NULL), -EINVAL);
  assert_null(loop);
  ak_loop_options epoll_opts = {.backend = AK_BACKEND_EPOLL};
  assert_int_equal(ak_loop_new(&loop, &epoll_opts), 0); /* options win */
  ak_loop_features(loop, &ft);
  assert_int_equal(ft.backend, AK_BACKEND_EPOLL);
  assert_non_null(strstr(ft.backend_reason, "options"));
  ak_loop_free(loop);
  if (old)
    setenv("AK_BACKEND", old, 1);
  else
    unsetenv("AK_BACKEND");
  free(old);
  assert_string_equal(ak_backend_name(AK_BACKEND_URING), "io_uring");
  assert_string_equal(ak_backend_name(AK_BACKEND_EPOLL), "epoll");
  assert_string_equal(ak_backend_name(AK_BACKEND_AUTO), "auto");
  assert_string_equal(ak_backend_name((ak_backend)42), "unknown");
}

/* ---- The error table ------------------------------------------------------------ */

typedef struct entry {
  const char *name;
  int num;
  const char *msg;
} entry;

static const entry table[] = {
#define T_ENTRY(name, num, msg) {#name, num, msg},
    AK_ERRNO_MAP(T_ENTRY)
#undef T_ENTRY
};
enum { NTABLE = sizeof(table) / sizeof(table[0]) };

static void test_error_table_names_and_messages(void **state)
{
  (void)state;
  assert_true(NTABLE >= 5);
  for (size_t i = 0; i < NTABLE; i++) {
    const entry *e = &table[i];
    assert_true(e->num < AK_ERR_BASE); /* far from any -errno */
    assert_string_equal(ak_err_name(e->num), e->name);
    assert_string_equal(ak_strerror(e->num), e->msg);
    assert_true(strlen(ak_strerror(e->num)) > 0);
    assert_true(strncmp(ak_err_name(e->num), "AK_E", 4) == 0);
    for (size_t j = i + 1; j < NTABLE; j++) {
      assert_int_not_equal(e->num, table[j].num);
      assert_string_not_equal(ak_err_name(e->num), ak_err_name(table[j].num));
      assert_string_not_equal(ak_strerror(e->num), ak_strerror(table[j].num));
    }
  }
}

static void test_error_table_distinct_unavailable_causes(void **state)
{
  (void)state;
  const int causes[] = {AK_ENOURING, AK_EURINGDISABLED, AK_EURINGBLOCKED, AK_EURINGOLD};
  assert_non_null(strstr(ak_strerror(AK_EURINGDISABLED), "io_uring_disabled"));
  assert_non_null(strstr(ak_strerror(AK_EURINGBLOCKED), "seccomp"));
  for (size_t i = 0; i < 4; i++)
    for (size_t j = i + 1; j < 4; j++)
      assert_string_not_equal(ak_strerror(causes[i]), ak_strerror(causes[j]));
  /* A timed-out wait is not ETIMEDOUT. */
  assert_int_not_equal(AK_EWAITTIMEOUT, -ETIMEDOUT);
  assert_string_not_equal(ak_err_name(AK_EWAITTIMEOUT), ak_err_name(-ETIMEDOUT));
}

static void test_errno_passthrough(void **state)
{
  (void)state;
  assert_string_equal(ak_err_name(-ENOENT), "ENOENT");
  assert_string_equal(ak_err_name(-ETIMEDOUT), "ETIMEDOUT");
  assert_string_equal(ak_err_name(-ECANCELED), "ECANCELED");
  assert_string_equal(ak_strerror(-ENOENT), "No such file or directory");
  assert_string_not_equal(ak_strerror(-EIO), ak_strerror(-ENOENT));
  /* Every negative errno and then some: never NULL, never empty. */
  for (int e = 1; e < 4200; e++) {
    const char *name = ak_err_name(-e);
    const char *msg = ak_strerror(-e);
    assert_non_null(name);
    assert_non_null(msg);
    assert_true(strlen(name) > 0);
    assert_true(strlen(msg) > 0);
  }
}

static void test_unknown_errors(void **state)
{
  (void)state;
  const int unknown[] = {AK_ERR_BASE - 9999, -5000, AK_ERR_BASE, 1, 12345, -2147483647 - 1};
  for (size_t i = 0; i < sizeof(unknown) / sizeof(unknown[0]); i++) {
    assert_string_equal(ak_err_name(unknown[i]), "UNKNOWN");
    assert_non_null(ak_strerror(unknown[i]));
    assert_true(strlen(ak_strerror(unknown[i])) > 0);
  }
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_seccomp_eperm),
      cmocka_unit_test(test_seccomp_enosys),
      cmocka_unit_test(test_seccomp_eacces),
      cmocka_unit_test(test_seccomp_other_syscall_keeps_uring),
      cmocka_unit_test(test_backend_env_and_names),
      cmocka_unit_test(test_error_table_names_and_messages),
      cmocka_unit_test(test_error_table_distinct_unavailable_causes),
      cmocka_unit_test(test_errno_passthrough),
      cmocka_unit_test(test_unknown_errors),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
