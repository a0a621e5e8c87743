/* asynckit/fs.h: file IO as futures on a loop's ring.
 *
 * Each call returns a future owned by the loop (NULL when memory runs out)
 * and must be made on the loop's thread (else the future fails with
 * AK_ENOTOWNER). Buffers, iovec arrays' buffers and statx results belong to
 * the kernel until the future settles, cancelled or not: keep them alive
 * until then. Paths and iovec arrays themselves are copied: they may go as
 * soon as the call returns. Short reads and writes are normal results of the
 * plain operations; the helpers at the end of this header finish the job.
 *
 * Errors are the kernel's -errno, unchanged. An operation the kernel lacks
 * (the probe says no, or the kernel answers EINVAL/EOPNOTSUPP at its first
 * use on this loop) runs on the loop's pool as the blocking syscall instead;
 * ak_loop_stats_get() counts those in `fallbacks`.
 *
 * Not thread-safe: every call here belongs to the loop's thread.
 */
#ifndef ASYNCKIT_FS_H
#define ASYNCKIT_FS_H

#include "api.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "loop.h"

#ifdef __cplusplus
extern "C" {
#endif

struct iovec;
struct stat;
struct statx;

/* read(2)/pread(2): reads up to len bytes at offset (-1: the file position).
 * Result: bytes read, 0 at end of file. */
AK_API ak_future *ak_read(ak_loop *loop, int fd, void *buf, size_t len, int64_t offset);

/* write(2)/pwrite(2): writes up to len bytes at offset (-1: file position).
 * Result: bytes written. */
AK_API ak_future *ak_write(ak_loop *loop, int fd, const void *buf, size_t len, int64_t offset);

/* ---- Options for reads and writes ------------------------------------------ */

typedef struct ak_rw_opts {
  int file_index; /* -1, or fd's slot in the loop's registered files: the
                     ring then uses the slot (IOSQE_FIXED_FILE) and fd is
                     used only by the pool path */
  int buf_index;  /* -1, or the registered buffer that holds buf (and buf +
                     len): READ_FIXED / WRITE_FIXED (plain read/write only) */
  int rw_flags;   /* RWF_* as for preadv2/pwritev2 (0: none) */
  unsigned flags; /* AK_RW_* below */
} ak_rw_opts;

enum {
  /* Hand the op to the kernel at once instead of with the loop's next batch
   * (one io_uring_enter per op). For device IO (O_DIRECT) this keeps a
   * steady stream of requests, as fio's default iodepth_batch_submit=1
   * does, where a batch would be dispatched, and completed, as a convoy. On
   * an SQPOLL loop every read and write is published at once anyway (a
   * store to the SQ tail, no syscall while the SQ thread is awake). */
  AK_RW_SUBMIT_NOW = 1u << 0,
};

/* The defaults: no registered file, no registered buffer, no flags. */
#define AK_RW_OPTS_INIT                                                                            \
  {                                                                                                \
    -1, -1, 0, 0                                                                                   \
  }

/* ak_read / ak_write with options (opts NULL: the defaults). */
AK_API ak_future *ak_read_opt(ak_loop *loop, int fd, void *buf, size_t len, int64_t offset,
                              const ak_rw_opts *opts);
AK_API ak_future *ak_write_opt(ak_loop *loop, int fd, const void *buf, size_t len, int64_t offset,
                               const ak_rw_opts *opts);

/* preadv2/pwritev2: iov (iovcnt entries, at most IOV_MAX) is copied; the
 * buffers it points to belong to the kernel until the future settles.
 * offset -1: the file position. opts may be NULL (buf_index is ignored).
 * Result: bytes transferred. */
AK_API ak_future *ak_readv(ak_loop *loop, int fd, const struct iovec *iov, unsigned iovcnt,
                           int64_t offset, const ak_rw_opts *opts);
AK_API ak_future *ak_writev(ak_loop *loop, int fd, const struct iovec *iov, unsigned iovcnt,
                            int64_t offset, const ak_rw_opts *opts);

/* ---- Opening, closing, syncing --------------------------------------------- */

/* openat(2): path (copied) relative to dirfd (AT_FDCWD: the working
 * directory); flags and mode as for open(2), and O_CLOEXEC is always added.
 * Result: the new fd. If the future is cancelled and the open completes
 * anyway, the library closes the fd and the future settles CANCELLED. */
AK_API ak_future *ak_openat(ak_loop *loop, int dirfd, const char *path, int flags, unsigned mode);

/* close(2), after cancelling the ops the kernel still holds on fd. Result 0.
 * One function for files and sockets: net.h declares it too. Ops waiting for
 * CQ room are not reached by it: ak_cancel_fd reaches those as well. */
AK_API ak_future *ak_close(ak_loop *loop, int fd);

/* Cancels every operation on fd: those the kernel holds (IORING_ASYNC_
 * CANCEL_FD, 5.19+) and those waiting for CQ room. Each settles CANCELLED
 * when the kernel gives it back (or with its real result if it had finished
 * anyway). Result: how many the request reached (0 if none). Ops already
 * running on the pool path are not reached: they finish on their own. On
 * the epoll backend it reaches the ops waiting for the fd to become ready
 * (pipes, sockets); file ops run on the pool there and finish on their own. */
AK_API ak_future *ak_cancel_fd(ak_loop *loop, int fd);

/* fsync(2) / fdatasync(2). Result 0. */
AK_API ak_future *ak_fsync(ak_loop *loop, int fd);
AK_API ak_future *ak_fdatasync(ak_loop *loop, int fd);

/* fallocate(2). Result 0. With mode 0, a filesystem that refuses fallocate
 * (EOPNOTSUPP) is not an error: nothing is reserved, the file stays sparse,
 * and the size grows to offset + len as fallocate would have made it. */
AK_API ak_future *ak_fallocate(ak_loop *loop, int fd, int mode, int64_t offset, int64_t len);

/* ---- Names ------------------------------------------------------------------- */

/* statx(2): path (copied) relative to dirfd; flags AT_* (AT_EMPTY_PATH with
 * path "" for dirfd itself), mask STATX_*. *out is written by the kernel and
 * is the kernel's until the future settles. Result 0. */
AK_API ak_future *ak_statx(ak_loop *loop, int dirfd, const char *path, int flags, unsigned mask,
                           struct statx *out);

/* renameat2(2): flags 0 or RENAME_NOREPLACE / RENAME_EXCHANGE. Result 0. */
AK_API ak_future *ak_renameat(ak_loop *loop, int olddirfd, const char *oldpath, int newdirfd,
                              const char *newpath, unsigned flags);

/* linkat(2): a new name for an existing file; flags 0 or AT_SYMLINK_FOLLOW
 * (with "/proc/self/fd/N" as oldpath it names an O_TMPFILE file, see
 * open(2)). Paths copied. Result 0; -EEXIST if newpath exists (linkat never
 * replaces: link to a spare name and rename that over it). */
AK_API ak_future *ak_linkat(ak_loop *loop, int olddirfd, const char *oldpath, int newdirfd,
                            const char *newpath, int flags);

/* unlinkat(2): flags 0 or AT_REMOVEDIR. Result 0. */
AK_API ak_future *ak_unlinkat(ak_loop *loop, int dirfd, const char *path, int flags);

/* mkdirat(2). Result 0. */
AK_API ak_future *ak_mkdirat(ak_loop *loop, int dirfd, const char *path, unsigned mode);

/* splice(2): moves up to len bytes between fd_in and fd_out, one of which
 * is a pipe; an offset of -1 means the fd's position (and is required for
 * the pipe). flags SPLICE_F_*. Result: bytes moved, 0 at end of input. */
AK_API ak_future *ak_splice(ak_loop *loop, int fd_in, int64_t off_in, int fd_out, int64_t off_out,
                            size_t len, unsigned flags);

/* ---- Directories and links ---------------------------------------------------
 * Failures of these calls carry a detail (ak_future_detail) naming the path
 * that failed, as do the path ops above and the helpers below. */

/* symlinkat(2): makes linkpath (relative to newdirfd) a symbolic link whose
 * content is target (which need not exist). Both copied. Through the ring
 * (IORING_OP_SYMLINKAT, 5.15+), else on the pool. Result 0; -EEXIST if
 * linkpath exists (never replaced). */
AK_API ak_future *ak_symlinkat(ak_loop *loop, const char *target, int newdirfd,
                               const char *linkpath);

/* readlinkat(2), on the pool (io_uring has no readlink). Result: the
 * target's length; value: the target, NUL-terminated (a char *, owned by
 * the future, freed with it), whatever its length. -EINVAL if path is not
 * a symbolic link, -ENOENT if it does not exist. */
AK_API ak_future *ak_readlinkat(ak_loop *loop, int dirfd, const char *path);

/* mkdir -p: makes the directory path (relative to dirfd) and every missing
 * parent, with mode (less the umask), by ring mkdirat ops: the deepest
 * missing one first found by going up from path, then each one down again.
 * A directory (or a link to one) already there is fine, also one another
 * task makes at the same moment. Result: how many directories it made (0
 * when path existed). -EEXIST when path exists and is not a directory,
 * -ENOTDIR when a parent is not one; the detail names the component. */
AK_API ak_future *ak_mkdir_p(ak_loop *loop, int dirfd, const char *path, unsigned mode);

/* One name in a directory listing. */
typedef struct ak_dirent {
  const char *name;   /* NUL-terminated; never "." or ".." */
  uint64_t ino;       /* inode number, as getdents gives it */
  unsigned char type; /* DT_REG, DT_DIR, DT_LNK...; looked up with
                         fstatat where the filesystem gives DT_UNKNOWN
                         (DT_UNKNOWN stays only for a name gone since) */
} ak_dirent;

/* What ak_dir_list gives: count entries, sorted by name in byte order
 * (strcmp) unless AK_DIR_UNSORTED. */
typedef struct ak_dir_listing {
  size_t count;
  const ak_dirent *entries;
} ak_dir_listing;

enum {
  AK_DIR_UNSORTED = 1 << 0, /* keep the order getdents gives */
  AK_DIR_NOFOLLOW = 1 << 1, /* fail (-ELOOP or -ENOTDIR) if path is a link */
};

/* Lists the directory path (relative to dirfd; "." for dirfd itself) on the
 * pool: open, getdents64 to the end, close. Result: the number of entries;
 * value: a const ak_dir_listing * (owned by the future, freed with it: the
 * names live as long as the future). -ENOTDIR if path is not a directory.
 * flags: AK_DIR_*. */
AK_API ak_future *ak_dir_list(ak_loop *loop, int dirfd, const char *path, unsigned flags);

/* ---- The tree walk -------------------------------------------------------------
 * ak_walk visits a tree below root, depth first, one directory listed at a
 * time on the pool (names and stats together), calling fn on the loop's
 * thread for each entry. It holds one directory fd at a time, whatever the
 * depth: a directory is opened by its path from dirfd, read whole and
 * closed before its entries are visited (a path past PATH_MAX gives an
 * -ENAMETOOLONG error entry). */

typedef enum ak_walk_type {
  AK_WALK_FILE = 1,  /* a regular file */
  AK_WALK_DIR = 2,   /* a directory (entered after fn returns CONTINUE) */
  AK_WALK_LINK = 3,  /* a symbolic link, not followed */
  AK_WALK_OTHER = 4, /* fifo, socket, device */
  AK_WALK_ERROR = 5, /* err says why: a dangling link (-ENOENT), a link
                        loop (-ELOOP), a directory that is its own
                        ancestor through a link (-ELOOP), a directory that
                        could not be listed (its entry came before) */
} ak_walk_type;

typedef struct ak_walk_entry {
  const char *path;      /* root, then '/' and the names below it; valid
                            during the call only */
  const char *name;      /* the last component (points into path) */
  unsigned depth;        /* 0: root itself, 1: its entries... */
  ak_walk_type type;
  int err;               /* AK_WALK_ERROR: -errno; else 0 */
  bool is_link;          /* path is a symbolic link (followed or not) */
  const struct stat *st; /* lstat, or stat through a link with
                            AK_WALK_FOLLOW; NULL for an error entry */
} ak_walk_entry;

/* What fn returns. */
enum {
  AK_WALK_CONTINUE = 0, /* go on (and enter this entry if a directory) */
  AK_WALK_SKIP = 1,     /* do not enter this directory; go on */
  AK_WALK_STOP = 2,     /* end the walk: its future settles DONE */
};
typedef int (*ak_walk_fn)(ak_loop *loop, const ak_walk_entry *e, void *arg);

enum {
  /* Entries are what their links point to: a link to a file is a FILE, to
   * a directory a DIR (not entered unless AK_WALK_FOLLOW_DIRS), and a link
   * that leads nowhere an ERROR; is_link still says it was a link (aksum
   * -r's rule). Without it links are LINK entries. */
  AK_WALK_FOLLOW = 1 << 0,
  /* As AK_WALK_FOLLOW, and directories reached through links are entered
   * too (find -L); one that is its own ancestor is an -ELOOP error entry
   * and is not entered. */
  AK_WALK_FOLLOW_DIRS = 1 << 1,
};

typedef struct ak_walk_opts {
  unsigned flags;     /* AK_WALK_FOLLOW... */
  unsigned max_depth; /* 0: no limit; else directories at this depth are
                         reported but not entered */
} ak_walk_opts;

/* Walks root (relative to dirfd; root itself followed if a link) calling
 * fn(loop, entry, arg) for root (depth 0) and every entry below it, a
 * directory before its entries. A directory's entries come in byte order
 * of their names, a directory's name compared as if it ended in '/': files
 * thus come in the byte order of their whole paths (as `find ROOT -type f |
 * LC_ALL=C sort` lists them). Errors below root are entries (AK_WALK_ERROR)
 * and the walk goes on; fn decides. Result: the number of entries given to
 * fn, when the tree is done or fn said STOP. FAILED with -errno when root
 * cannot be stat'ed (-ENOENT, -ENOTDIR...), detail root; cancelling it
 * ends the walk once the listing in flight is back (CANCELLED). opts may
 * be NULL. fn must not free the loop; it may start other ops. */
AK_API ak_future *ak_walk(ak_loop *loop, int dirfd, const char *root, const ak_walk_opts *opts,
                          ak_walk_fn fn, void *arg);

/* ---- Registered files and buffers --------------------------------------------
 * The ring can hold references to files and pin buffers, saving a lookup and
 * a page walk per op (fio's registerfiles / fixedbufs). Registration is
 * synchronous (io_uring_register), on the loop's thread. Returns 0 or the
 * kernel's -errno (-EBUSY if a table is registered already). On the epoll
 * backend there is no ring: every call here answers AK_EBACKEND, and so
 * does an op given a file_index or buf_index (ak_rw_opts); plain fds and
 * buffers work as ever. */

/* Registers n fds as slots 0..n-1 (an fd of -1 leaves the slot empty). */
AK_API int ak_register_files(ak_loop *loop, const int *fds, unsigned n);
/* Replaces slots off..off+n-1 (-1: empties a slot). Returns 0 or -errno. */
AK_API int ak_register_files_update(ak_loop *loop, unsigned off, const int *fds, unsigned n);
AK_API int ak_unregister_files(ak_loop *loop);

/* Registers n buffers (pinned until unregistered) as indexes 0..n-1. */
AK_API int ak_register_buffers(ak_loop *loop, const struct iovec *iov, unsigned n);
AK_API int ak_unregister_buffers(ak_loop *loop);

/* ---- Helpers that finish the job -----------------------------------------------
 * Each is one future built from several ring operations; cancelling it
 * cancels the operation in flight and it settles CANCELLED once the kernel
 * has given that operation (and its buffer) back. */

/* Reads len bytes at offset (-1: the file position), resubmitting short
 * reads for the rest. Result: the bytes read, fewer than len only when the
 * end of the file came first. opts may be NULL. */
AK_API ak_future *ak_read_exact(ak_loop *loop, int fd, void *buf, size_t len, int64_t offset,
                                const ak_rw_opts *opts);

/* Writes all len bytes at offset (-1: the file position), resubmitting short
 * writes for the rest; a write of 0 bytes fails with -EIO rather than
 * looping. Result: len. opts may be NULL. */
AK_API ak_future *ak_write_all(ak_loop *loop, int fd, const void *buf, size_t len, int64_t offset,
                               const ak_rw_opts *opts);

/* Reads a whole file (opened O_RDONLY relative to dirfd, closed again).
 * Result: its size; value: the bytes followed by a NUL (owned by the future,
 * freed with it). A file larger than max_size (0: no limit) fails -EFBIG. */
AK_API ak_future *ak_read_file(ak_loop *loop, int dirfd, const char *path, size_t max_size);

typedef struct ak_copy_opts {
  size_t chunk;   /* bytes per read/write; 0: 1 MiB */
  unsigned depth; /* chunks in flight at most (buffers); 0: 4 */
  unsigned flags; /* AK_COPY_* */
} ak_copy_opts;

enum {
  AK_COPY_EXCL = 1 << 0,    /* fail with -EEXIST if the destination exists */
  AK_COPY_FSYNC = 1 << 1,   /* fdatasync the copy before it takes the name */
  AK_COPY_SPLICE = 1 << 2,  /* move the bytes file -> pipe -> file (splice) */
  AK_COPY_BUFFERS = 1 << 3, /* move them through user buffers (read/write) */
  AK_COPY_DIRECT = 1 << 4,  /* ak_copy_file: write the copy with O_DIRECT
                               (where the filesystem allows it): no page
                               cache for it, the device takes the bytes */
};

/* Copies in_fd from offset 0 to its end into out_fd at the same offsets: a
 * ring pipeline with at most opts->depth chunks in flight (read, then write
 * all of it, then the next chunk). By default the chunks go through pipes
 * (splice: one copy, in the kernel, as copy_file_range does) when both fds
 * are regular files and out_fd has neither O_APPEND nor O_DIRECT, and
 * through user buffers otherwise; the flags above force either. An O_DIRECT
 * out_fd gets whole aligned blocks from aligned buffers (the last one padded,
 * then the file cut back to size). Result: the bytes copied. opts may be
 * NULL. The fds stay open. */
AK_API ak_future *ak_copy_fd(ak_loop *loop, int in_fd, int out_fd, const ak_copy_opts *opts);

/* Copies the file src (relative to src_dirfd) to dst (relative to
 * dst_dirfd) with ak_copy_fd. The bytes go to a temporary name in dst's
 * directory, which takes the name dst only when the copy is complete: a
 * failed or cancelled copy leaves dst as it was and no temporary file
 * behind. The copy gets src's permission bits. Result: the bytes copied. */
AK_API ak_future *ak_copy_file(ak_loop *loop, int src_dirfd, const char *src, int dst_dirfd,
                               const char *dst, const ak_copy_opts *opts);

#ifdef __cplusplus
}
#endif
#endif /* ASYNCKIT_FS_H */
