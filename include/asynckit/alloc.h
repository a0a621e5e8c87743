/* asynckit/alloc.h: replacing the allocator the library uses, for embedding
 * and for tests that count or fail allocations.
 */
#ifndef ASYNCKIT_ALLOC_H
#define ASYNCKIT_ALLOC_H

#include "api.h"

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef void *(*ak_malloc_fn)(size_t size);
typedef void *(*ak_realloc_fn)(void *ptr, size_t size);
typedef void *(*ak_calloc_fn)(size_t count, size_t size);
typedef void (*ak_free_fn)(void *ptr);

/* Replaces the allocator. Call it before any other asynckit function, or
 * when nothing the library allocated is alive and no thread's cache holds
 * recycled records (ak_thread_cache_flush): memory must be freed by the
 * allocator it came from. Not thread-safe. Returns 0, or -EINVAL if a
 * function is NULL. */
AK_API int ak_replace_allocator(ak_malloc_fn malloc_fn, ak_realloc_fn realloc_fn,
                         ak_calloc_fn calloc_fn, ak_free_fn free_fn);

/* Frees the calling thread's caches of recycled futures and records (they are
 * also freed when the thread exits). */
AK_API void ak_thread_cache_flush(void);

#ifdef __cplusplus
}
#endif
#endif /* ASYNCKIT_ALLOC_H */
