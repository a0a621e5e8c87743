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
 * another build called: the module exports its build's mark
 * (AK__TLS_MODULE_BUILD_SYMBOL, a hash of its sources, the headers and its
 * flags: tools/tls-module-token), akget is compiled with the same, and the
 * loader compares them before it calls the module (its constructors have
 * run, as dlopen runs them); tls/module.h's check of structure sizes
 * alone would let a stale module whose sizes happen to agree run with
 * another layout.
 *
 * With AK_TLS_LOADER_ENGINES (akget linked with libasynckit.a) this file
 * also defines ak__tls_engine_get (tls/engine.h), which keeps the library's
 * own (tls/engines.c), the engines and their libraries out of akget's link.
 * Without it (akget on the shared libasynckit, which has the engines) only
 * the digests come from here. */
#define _GNU_SOURCE /* secure_getenv */
#include <dlfcn.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>
#include <unistd.h>

#include "tls/module.h"
#include "akget-tls-build.h" /* AK__TLS_MODULE_BUILD */

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
  const char *mark = (const char *)dlsym(h, AK__TLS_MODULE_BUILD_SYMBOL);
  if (!mark) {
    snprintf(error, sizeof(error), "akget's TLS module %s has no build mark (not this akget's)",
             path);
    return;
  }
  if (strncmp(mark, AK__TLS_MODULE_BUILD, sizeof(AK__TLS_MODULE_BUILD)) != 0) {
    snprintf(error, sizeof(error),
             "akget's TLS module %s is from another build (mark %.12s..., akget's %.12s...)", path,
             mark, AK__TLS_MODULE_BUILD);
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
