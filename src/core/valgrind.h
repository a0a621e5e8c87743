/* core/valgrind.h: the loop's concessions to valgrind (valgrind.c), private
 * to core. Every call is made only when ak__vg_running is true, behind an
 * unlikely branch, so a run without valgrind pays one load of a global on
 * the paths that look. */
#ifndef AK_CORE_VALGRIND_H
#define AK_CORE_VALGRIND_H

#include "core/internal.h"

/* Whether this process runs under valgrind; set by ak__vg_init (each loop
 * creation calls it; the answer never changes). */
extern bool ak__vg_running;
void ak__vg_init(void);

/* Submits what the SQ holds and waits for a completion until wait_until
 * (AK_FOREVER: no limit) without ever blocking inside io_uring_enter, which
 * valgrind does not know may block; may return early. 0 or a negative
 * ring error. */
int ak__vg_wait(struct io_uring *ring, int64_t wait_until);

/* Notes where op's SQE lets the kernel write (before submission), and marks
 * what the kernel wrote defined when its CQE (res, flags) comes. */
void ak__vg_note_sqe(const void *op, const struct io_uring_sqe *sqe);
void ak__vg_op_cqe(const void *op, int res, unsigned flags);

/* Tells memcheck that len bytes at p hold data (the kernel wrote them). */
void ak__vg_make_defined(const void *p, size_t len);

#endif /* AK_CORE_VALGRIND_H */
