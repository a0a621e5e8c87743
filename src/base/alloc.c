/* alloc.c: the replaceable allocator every library allocation goes through
 * (embedding, counting and failure-injecting tests). The per-thread caches of
 * recycled futures live in future.c; this file only owns the function
 * pointers. */
#include <stdlib.h>
#include <string.h>

#include "base/internal.h"

static ak_malloc_fn ak__malloc_fn = malloc;
static ak_realloc_fn ak__realloc_fn = realloc;
static ak_calloc_fn ak__calloc_fn = calloc;
static ak_free_fn ak__free_fn = free;

int ak_replace_allocator(ak_malloc_fn malloc_fn, ak_realloc_fn realloc_fn,
                         ak_calloc_fn calloc_fn, ak_free_fn free_fn) {
  if (!malloc_fn || !realloc_fn || !calloc_fn || !free_fn)
    return -EINVAL;
  ak__malloc_fn = malloc_fn;
  ak__realloc_fn = realloc_fn;
  ak__calloc_fn = calloc_fn;
  ak__free_fn = free_fn;
  return 0;
}

void *ak__malloc(size_t size) { return AK_FAULT_NULL(AK_FAULT_ALLOC, ak__malloc_fn(size)); }
void *ak__calloc(size_t count, size_t size) {
  return AK_FAULT_NULL(AK_FAULT_ALLOC, ak__calloc_fn(count, size));
}
void *ak__realloc(void *ptr, size_t size) {
  return AK_FAULT_NULL(AK_FAULT_ALLOC, ak__realloc_fn(ptr, size));
}
void ak__free(void *ptr) { ak__free_fn(ptr); }

char *ak__strdup(const char *s) {
  size_t n = strlen(s) + 1;
  char *copy = ak__malloc(n);
  if (copy)
    memcpy(copy, s, n);
  return copy;
}
