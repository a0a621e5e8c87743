/* net_bufring.c: the provided-buffer ring receive streams take buffers from:
 * set up by hand (liburing 2.3 has no io_uring_setup_buf_ring): page-aligned
 * memory from mmap, io_uring_register_buf_ring, io_uring_buf_ring_init, every
 * buffer added and published; buffers handed back one at a time after the
 * stream's callback; unregistered and unmapped on free. On kernels without
 * buffer rings (before 5.19) the object exists all the same, unregistered,
 * and streams fall back to single-shot recvs (net_stream.c).
 *
 * The registration itself and the exhaustion counter are core's
 * (ak__loop_register_buf_ring...): this layer never touches the ring.
 */
#define _GNU_SOURCE
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "net/internal.h"

/* Group ids are per ring; a process-wide counter keeps them apart on one
 * loop, and EEXIST (an id still registered after wrapping) moves on. 0x7fff
 * is loop.c's probe. */
static _Atomic unsigned ak__next_bgid = 1;

static uint16_t next_bgid(void)
{
  for (;;) {
    unsigned id = atomic_fetch_add(&ak__next_bgid, 1) & 0xffffu;
    if (id != 0 && id != 0x7fff)
      return (uint16_t)id;
  }
}

static bool is_power_of_two(unsigned n)
{
  return n && (n & (n - 1)) == 0;
}

static size_t page_round(size_t n)
{
  size_t page = (size_t)sysconf(_SC_PAGESIZE);
  return (n + page - 1) / page * page;
}

static int register_ring(ak_buf_ring *br)
{
  struct io_uring_buf_reg reg;
  int rc = -EEXIST;
  for (int attempt = 0; attempt < 64 && rc == -EEXIST; attempt++) {
    memset(&reg, 0, sizeof(reg));
    br->bgid = next_bgid();
    reg.ring_addr = (uint64_t)(uintptr_t)br->ring;
    reg.ring_entries = br->count;
    reg.bgid = br->bgid;
    rc = ak__loop_register_buf_ring(br->loop, &reg);
  }
  return rc;
}

int ak_buf_ring_new(ak_loop *loop, unsigned count, size_t size, ak_buf_ring **out)
{
  if (!ak__loop_owned_by_caller(loop))
    return AK_ENOTOWNER;
  if (!is_power_of_two(count) || count > 32768 || size == 0 || size > AK__MAX_TRANSFER)
    return -EINVAL;
  ak_buf_ring *br = ak__calloc(1, sizeof(*br));
  int rc = -ENOMEM;
  if (!br)
    return -ENOMEM;
  br->loop = loop;
  br->count = count;
  br->size = size;
  br->mask = io_uring_buf_ring_mask(count);
  /* Populated now: a page fault in the kernel's receive path (task work)
   * costs more than one here, and every buffer will be used. */
  br->bufs_bytes = page_round(count * size);
  void *bufs = mmap(NULL, br->bufs_bytes, PROT_READ | PROT_WRITE,
                    MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
  if (bufs == MAP_FAILED) {
    rc = -errno;
    goto fail_free;
  }
  br->bufs = bufs;
  if (ak__loop_has_buf_ring(loop)) {
    br->ring_bytes = page_round(count * sizeof(struct io_uring_buf));
    void *mem =
        mmap(NULL, br->ring_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (mem == MAP_FAILED) {
      rc = -errno;
      goto fail_bufs;
    }
    br->ring = mem;
    io_uring_buf_ring_init(br->ring);
    rc = register_ring(br);
    if (rc < 0)
      goto fail_map;
    for (unsigned i = 0; i < count; i++)
      io_uring_buf_ring_add(br->ring, ak__buf_ring_data(br, i), (unsigned)size, (unsigned short)i,
                            br->mask, (int)i);
    io_uring_buf_ring_advance(br->ring, (int)count); /* publishes the tail */
    br->provided = true;
  }
  *out = br;
  return 0;

fail_map:
  munmap(br->ring, br->ring_bytes);
fail_bufs:
  munmap(br->bufs, br->bufs_bytes);
fail_free:
  ak__free(br);
  return rc;
}

bool ak_buf_ring_provided(const ak_buf_ring *br)
{
  return br->provided;
}

void ak__buf_ring_recycle(ak_buf_ring *br, unsigned bid)
{
  io_uring_buf_ring_add(br->ring, ak__buf_ring_data(br, bid), (unsigned)br->size,
                        (unsigned short)bid, br->mask, 0);
  io_uring_buf_ring_advance(br->ring, 1);
}

void ak__net_note_exhausted(ak_loop *loop)
{
  ak__loop_count_buf_exhausted(loop);
}

void ak_buf_ring_free(ak_buf_ring *br)
{
  if (!br)
    return;
  if (br->provided) {
    ak__loop_unregister_buf_ring(br->loop, br->bgid);
    munmap(br->ring, br->ring_bytes);
  }
  munmap(br->bufs, br->bufs_bytes);
  ak__free(br);
}
