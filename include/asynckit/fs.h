/* asynckit/fs.h: file IO as futures on a loop's ring.
 *
 * Each call returns a future owned by the loop (NULL when memory runs out)
 * and must be made on the loop's thread. Buffers belong to the kernel until
 * the future settles, cancelled or not: keep them alive until then.
 * Short reads and writes are normal results.
 */
#ifndef ASYNCKIT_FS_H
#define ASYNCKIT_FS_H

#include "api.h"

#include <stddef.h>
#include <stdint.h>

#include "loop.h"

#ifdef __cplusplus
extern "C" {
#endif

/* read(2)/pread(2): reads up to len bytes at offset (-1: the file position).
 * Result: bytes read, 0 at end of file. */
AK_API ak_future *ak_read(ak_loop *loop, int fd, void *buf, size_t len, int64_t offset);

/* write(2)/pwrite(2): writes up to len bytes at offset (-1: file position).
 * Result: bytes written. */
AK_API ak_future *ak_write(ak_loop *loop, int fd, const void *buf, size_t len, int64_t offset);

#ifdef __cplusplus
}
#endif
#endif /* ASYNCKIT_FS_H */
