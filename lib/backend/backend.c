/*
 * Backend selection.  Each backend lives in its own file behind struct
 * rb_ops; this file only maps a configured kind to an open function and
 * says what "auto" means.
 *
 * auto, by the evidence of bench/inproc.sh (README, "Backends"): mmap
 * for a regular file whose configured windows cover the unit, pio for
 * everything else.  With covering windows a 4 KiB page-cache read is a
 * lock-free lookup and a memcpy, about 1.5x the IOPS of pread (the raw
 * loops differ as much), and 1 MiB sequential reads are faster too;
 * 1 MiB sequential writes are about even (a write fault per cleaned page
 * against pwrite's copy).  With fewer windows than the unit spans (the
 * seed's 16 x 1 MiB on an image far larger than 16 MiB) nearly every
 * random request remaps a window, some 20-30 us each: an order of
 * magnitude slower than pio, so auto does not pick mmap then.
 */
#include <errno.h>

#include "../internal.h"

enum rumpblk_backend
rb_backend_auto(const struct rb_unit *u)
{
	const struct rumpblk_config *cfg = &u->u_rb->rb_cfg;
	uint64_t first, last;

	if (u->u_ftype != RUMPBLK_FT_REG || u->u_size == 0)
		return RUMPBLK_BACKEND_PIO;
	first = u->u_hostoffset / cfg->winsize;
	last = (u->u_hostoffset + u->u_size - 1) / cfg->winsize;
	if (last - first + 1 > cfg->wincount)
		return RUMPBLK_BACKEND_PIO;
	return RUMPBLK_BACKEND_MMAP;
}

int
rb_backend_open(struct rb_unit *u, enum rumpblk_backend kind,
    struct rb_stage **stp)
{
	if (kind == RUMPBLK_BACKEND_AUTO)
		kind = rb_backend_auto(u);
	switch (kind) {
	case RUMPBLK_BACKEND_PIO:
		u->u_backend_kind = RUMPBLK_BACKEND_PIO;
		return rb_pio_open(u, stp);
	case RUMPBLK_BACKEND_MMAP:
		return rb_mmap_open(u, stp);
	case RUMPBLK_BACKEND_DIRECT:
	case RUMPBLK_BACKEND_URING:
		/* XXX(#7): not built yet. */
		return EOPNOTSUPP;
	default:
		return EINVAL;
	}
}
