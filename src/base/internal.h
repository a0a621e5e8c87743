/* base/internal.h: what the base layer (alloc.c, error.c, version.c) offers
 * every layer above it: the replaceable allocator, branch hints, the
 * thread-local storage model, and two small helpers for blocking syscalls.
 * It includes nothing of the library but the public headers. */
#ifndef AK_BASE_INTERNAL_H
#define AK_BASE_INTERNAL_H

#include <assert.h>
#include <errno.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "asynckit.h"
#include "fault/fault.h" /* the fault-injection hooks (empty unless built in) */

#define AK__LIKELY(x) __builtin_expect(!!(x), 1)
#define AK__UNLIKELY(x) __builtin_expect(!!(x), 0)
#define AK__TLS __thread __attribute__((tls_model("initial-exec")))

/* A spin-wait hint to the CPU. */
static inline void ak__cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}
#define AK__CONTAINER_OF(ptr, type, member) \
  ((type *)(void *)((char *)(ptr) - offsetof(type, member)))

/* The allocator (alloc.c): ak_set_allocator's functions, or libc's. */
void *ak__malloc(size_t size);
void *ak__calloc(size_t count, size_t size);
void *ak__realloc(void *ptr, size_t size);
void ak__free(void *ptr);
char *ak__strdup(const char *s);

/* A blocking syscall's return as an op result: the count, or -errno. */
static inline int64_t ak__syscall_result(ssize_t n) { return n < 0 ? -errno : n; }

/* The most io_uring (and read/write) move in one go; a larger request is a
 * short transfer, which callers handle anyway. */
#define AK__MAX_TRANSFER 0x7ffff000u
static inline size_t ak__clamp_len(size_t len) {
  return len > AK__MAX_TRANSFER ? AK__MAX_TRANSFER : len;
}

#endif /* AK_BASE_INTERNAL_H */
