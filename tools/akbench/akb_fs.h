/* akb_fs.h: what akbench's file workloads (wl_randread.c, wl_copy.c,
 * wl_hash.c) share (fs_common.c): where their data sets live and how they are
 * made, reading a file into the page cache right before a run (the VM
 * reclaims idle pages after about a minute: docs/bench-notes), running a peer
 * program (fio, cp, sha256sum, aksum) with its output captured and its CPU
 * time measured, and finding those programs.
 */
#ifndef AKB_FS_H
#define AKB_FS_H

#include "akbench.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The directory for data sets: $AKBENCH_DIR, else /var/tmp/akbench (on the
 * disk: /tmp may be a tmpfs). Created if missing. NULL (with a note on
 * stderr) if it cannot be. */
const char *akb_fs_dir(void);

/* Makes path a file of exactly size bytes of pseudo-random data unless it is
 * one already (data sets are kept between runs). Returns 0 or -errno. */
int akb_fs_make_file(const char *path, uint64_t size);

/* Reads path to its end (cat path > /dev/null), so the run that follows finds
 * it in the page cache. Returns 0 or -errno. */
int akb_fs_warm(const char *path);

/* Opens read-only the data set STEM-MIBm.dat in akb_fs_dir(), made MIB MiB
 * if it is not already and read into the page cache first (a hot file, as
 * the latency and batch workloads need). Returns the fd, or -errno. */
int akb_fs_open_hot(const char *stem, unsigned mib);

/* Runs argv[0] (searched in PATH) with stdout captured into *out (malloc'ed,
 * NUL-terminated; may be NULL to discard) and stderr to /dev/null unless
 * keep_stderr. Fills *span with its wall and CPU time (the child's own, from
 * wait4). Returns its exit status (>= 0), 127 when it could not be run, or
 * -errno. */
int akb_fs_run(char *const argv[], char **out, size_t *out_len, bool keep_stderr, akb_span *span);

/* Whether a program is found in PATH. */
bool akb_fs_have(const char *prog);

/* The path of a program built next to akbench (build/tools/NAME), or NULL if
 * it is not there. Static storage. */
const char *akb_fs_sibling(const char *name);

/* For the workloads that run akget against a local nginx (download,
 * mirror): akget's path (akb_fs_sibling's static storage), or NULL with the
 * missing one's failure recorded in res. */
const char *akb_need_akget_nginx(akb_result *res);

/* The number after "key" : in text, searching from after `after` (NULL:
 * from the start). NaN when missing. For fio's JSON output. */
double akb_fs_json_number(const char *text, const char *after, const char *key);

#define AKB_FIO_MISSING "fio: not installed (tools/bootstrap --bench); fio rows skipped"

#endif /* AKB_FS_H */
