/* tls/loader.c: akget's way to its TLS module (akget-tls.so, tls/module.h):
 * compiled into akget, never into the library. A plain-http run must not
 * pay for OpenSSL's and mbed TLS's start (their archives linked into a
 * position-independent akget cost some 20,000 relocations, about 100 page
 * faults, at every exec), so the engines and libcrypto's digests live in
 * the module, linked with their archives (the shared libraries with
 * -Dakget_link=dynamic), and are loaded here at
 * the first TLS config or checksum: once (pthread_once), RTLD_NOW, never
 * unloaded.
 *
 * Where: $AKGET_TLS_MODULE when set (tests, a relocated install);
 * else akget-tls.so next to the executable (the build tree: both are
 * built in tools/), unless akget runs set-id (AT_SECURE); else the installed one (AK_TLS_MODULE_PATH, libdir/
 * asynckit/). A module that cannot be found or loaded makes every TLS
 * config fail AK_ETLSCONFIG and every checksum fail, with a detail naming
 * the path and dlerror's words; never a crash. Nor is a module from
 * another build called: akget knows the GNU build-id of the module it was
 * built with (akget-tls-build-id.h, made by tools/tls-module-build-id) and
 * refuses any other before calling into it; tls/module.h's check of
 * structure sizes alone would let a stale module whose sizes happen to
 * agree run with another layout.
 *
 * With AK_TLS_LOADER_ENGINES (akget linked with libasynckit.a) this file
 * also defines ak__tls_engine_get (tls/engine.h), which keeps the library's
 * own (tls/engines.c), the engines and their libraries out of akget's link.
 * Without it (akget on the shared libasynckit, which has the engines) only
 * the digests come from here. */
#define _GNU_SOURCE /* secure_getenv */
#include <dlfcn.h>
#include <limits.h>
#include <link.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>
#include <unistd.h>

#include "tls/module.h"
#include "akget-tls-build-id.h" /* AK__TLS_MODULE_BUILD_ID */

#ifndef AK_TLS_MODULE_PATH
#error "AK_TLS_MODULE_PATH: where meson installs akget-tls.so"
#endif

#ifdef AK_TLS_LOADER_ENGINES
static const ak__tls_module_host host = {ak__malloc, ak__calloc, ak__realloc, ak__free};
#else
/* The shared libasynckit's allocator is not ours to call; the digests
 * allocate with OpenSSL's own and the module's engines go unused. */
static const ak__tls_module_host host = {malloc, calloc, realloc, free};
#endif

static pthread_once_t once = PTHREAD_ONCE_INIT;
static const ak__tls_module *module; /* set by load, or NULL */
static char error[PATH_MAX + 512];   /* why not, when module is NULL */

/* path: akget-tls.so next to the executable when there is one, else the
 * installed one. *beside: the executable's folder, for the error. */
static int module_path(char *path, size_t n, char *beside, size_t bn) {
  /* secure_getenv: a set-id akget would not load what its caller names. */
  const char *env = secure_getenv("AKGET_TLS_MODULE");
  beside[0] = '\0';
  if (env && env[0]) {
    /* A name without a slash would send dlopen through LD_LIBRARY_PATH
     * and the system's folders, not the one the caller meant. */
    if (!strchr(env, '/')) {
      snprintf(error, sizeof(error), "AKGET_TLS_MODULE=%.200s: not a path (write ./%.200s)", env,
               env);
      return -1;
    }
    if ((size_t)snprintf(path, n, "%s", env) >= n) {
      snprintf(error, sizeof(error), "AKGET_TLS_MODULE: a path too long");
      return -1;
    }
    return 0;
  }
  /* Set-id: not beside the executable, where the one who ran it may have
   * put both (a hard link): only the installed module, as glibc ignores
   * $ORIGIN for such programs. */
  if (getauxval(AT_SECURE)) {
    snprintf(path, n, "%s", AK_TLS_MODULE_PATH);
    return 0;
  }
  char exe[PATH_MAX];
  ssize_t len = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
  if (len > 0) {
    exe[len] = '\0';
    char *slash = strrchr(exe, '/');
    if (slash) {
      *slash = '\0';
      snprintf(beside, bn, "%s", exe);
      snprintf(path, n, "%s/" AK__TLS_MODULE_NAME, exe);
      if (access(path, F_OK) == 0)
        return 0;
    }
  }
  snprintf(path, n, "%s", AK_TLS_MODULE_PATH);
  return 0;
}

/* The GNU build-id note of the object loaded at base, in hex. */
typedef struct build_id_search {
  ElfW(Addr) base;
  char *hex;
  size_t n;
  bool found;
} build_id_search;

static int build_id_in(struct dl_phdr_info *info, size_t size, void *arg) {
  (void)size;
  build_id_search *s = arg;
  if (info->dlpi_addr != s->base)
    return 0;
  for (ElfW(Half) i = 0; i < info->dlpi_phnum; i++) {
    const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
    if (ph->p_type != PT_NOTE)
      continue;
    const unsigned char *p = (const unsigned char *)(info->dlpi_addr + ph->p_vaddr);
    const unsigned char *end = p + ph->p_memsz;
    while ((size_t)(end - p) >= sizeof(ElfW(Nhdr))) {
      const ElfW(Nhdr) *nh = (const ElfW(Nhdr) *)p;
      size_t name_len = (nh->n_namesz + 3u) & ~3u, desc_len = (nh->n_descsz + 3u) & ~3u;
      const unsigned char *name = p + sizeof(*nh), *desc = name + name_len;
      if (name_len > (size_t)(end - name) || desc_len > (size_t)(end - desc))
        break; /* a note cut short: not trusted */
      if (nh->n_type == NT_GNU_BUILD_ID && nh->n_namesz == 4 && memcmp(name, "GNU", 4) == 0 &&
          nh->n_descsz > 0 && 2 * (size_t)nh->n_descsz < s->n) {
        for (ElfW(Word) k = 0; k < nh->n_descsz; k++)
          snprintf(s->hex + 2 * k, 3, "%02x", desc[k]);
        s->found = true;
        return 1;
      }
      p = desc + desc_len;
    }
  }
  return 1; /* the object, without the note */
}

/* The loaded module's build-id (hex in hex[n]); false when it has none. */
static bool module_build_id(void *h, char *hex, size_t n) {
  struct link_map *lm = NULL;
  if (dlinfo(h, RTLD_DI_LINKMAP, &lm) != 0 || !lm)
    return false;
  build_id_search s = {.base = lm->l_addr, .hex = hex, .n = n};
  dl_iterate_phdr(build_id_in, &s);
  return s.found;
}

static void load(void) {
  char path[PATH_MAX + sizeof(AK__TLS_MODULE_NAME) + 1], beside[PATH_MAX];
  if (module_path(path, sizeof(path), beside, sizeof(beside)) < 0)
    return; /* error says why */
  void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
  if (!h) {
    const char *why = dlerror();
    if (!why)
      why = "dlopen failed";
    /* dlerror's words begin with the path, as a rule: not twice. */
    const char *named = strstr(why, path) ? "" : path;
    /* Short: the http layer keeps some 200 bytes of a failure's detail. */
    if (beside[0] && strcmp(path, AK_TLS_MODULE_PATH) == 0)
      snprintf(error, sizeof(error),
               AK__TLS_MODULE_NAME " is not in %s (akget's folder); %s%s%s", beside, named,
               named[0] ? ": " : "", why);
    else
      snprintf(error, sizeof(error), "akget's TLS module: %s%s%s", named, named[0] ? ": " : "",
               why);
    return;
  }
  /* Nothing of a module from another build is called (left loaded, as
   * below: its constructors have run). */
  char id[2 * 64 + 1];
  if (!module_build_id(h, id, sizeof(id))) {
    snprintf(error, sizeof(error), "akget's TLS module %s has no build-id (akget's: %.12s...)",
             path, AK__TLS_MODULE_BUILD_ID);
    return;
  }
  if (strcmp(id, AK__TLS_MODULE_BUILD_ID) != 0) {
    snprintf(error, sizeof(error),
             "akget's TLS module %s is from another build (build-id %.12s..., akget's %.12s...)",
             path, id, AK__TLS_MODULE_BUILD_ID);
    return;
  }
  ak__tls_module_open_fn *open_fn = (ak__tls_module_open_fn *)dlsym(h, AK__TLS_MODULE_SYMBOL);
  if (!open_fn) {
    const char *why = dlerror();
    snprintf(error, sizeof(error), "akget's TLS module %s has no " AK__TLS_MODULE_SYMBOL ": %s",
             path, why ? why : "dlsym failed");
    return; /* (left loaded: a half-initialized library is not ours to unload) */
  }
  static const ak__tls_module_abi abi = AK__TLS_MODULE_ABI_INIT;
  module = open_fn(&abi, &host);
  if (!module)
    snprintf(error, sizeof(error),
             "akget's TLS module %s was built for another akget (its layout differs)", path);
}

/* The module, loading it once; NULL with detail set when it cannot be. */
static const ak__tls_module *get(char *detail, size_t n) {
  pthread_once(&once, load);
  if (!module)
    snprintf(detail, n, "%s", error);
  return module;
}

const ak__tls_digest_ops *ak__tls_module_digests(char *detail, size_t n) {
  const ak__tls_module *m = get(detail, n);
  return m ? m->digests : NULL;
}

#ifdef AK_TLS_LOADER_ENGINES
const ak__tls_engine_ops *ak__tls_engine_get(ak_tls_engine which, char *detail, size_t n) {
  if (which != AK_TLS_ENGINE_OPENSSL && which != AK_TLS_ENGINE_MBEDTLS) {
    snprintf(detail, n, "unknown TLS engine %d", (int)which);
    return NULL;
  }
  const ak__tls_module *m = get(detail, n);
  if (!m)
    return NULL;
  if (which == AK_TLS_ENGINE_OPENSSL)
    return m->openssl;
  if (!m->mbedtls)
    snprintf(detail, n, "the mbedtls engine is not in this build (built with -Dmbedtls=disabled)");
  return m->mbedtls;
}
#endif
