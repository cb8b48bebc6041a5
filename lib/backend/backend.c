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
 *
 * A backend the host refuses (O_DIRECT on a file system that does not do
 * it, io_uring disabled by the kernel or a sandbox) is an error when the
 * caller named it, so that nobody believes they test direct I/O when they
 * do not; when it is auto's choice, pio is tried instead, and
 * u_backend_kind (the unitinfo's ui_backend) says which one the unit
 * really uses.  (auto picks neither today; the test seam can make it.)
 */
#include <errno.h>

#include "../internal.h"
#include "../host/host.h"

enum rumpblk_backend
rb_backend_auto(const struct rb_unit *u)
{
	const struct rumpblk_config *cfg = &u->u_rb->rb_cfg;
	uint64_t first, last;

	if (RB_UNLIKELY(rb_host_seam != NULL) &&
	    rb_host_seam->hs_auto_first != RUMPBLK_BACKEND_AUTO)
		return rb_host_seam->hs_auto_first;
	if (u->u_backing->bk_ftype != RUMPBLK_FT_REG || u->u_size == 0)
		return RUMPBLK_BACKEND_PIO;
	first = u->u_backing->bk_off / cfg->winsize;
	last = (u->u_backing->bk_off + u->u_size - 1) / cfg->winsize;
	if (last - first + 1 > cfg->wincount)
		return RUMPBLK_BACKEND_PIO;
	return RUMPBLK_BACKEND_MMAP;
}

/* Did the host refuse this backend for this file, rather than fail? */
static bool
refused(enum rumpblk_backend kind, int error)
{
	switch (kind) {
	case RUMPBLK_BACKEND_DIRECT:
		/* open(O_DIRECT), statx or the probe read: EINVAL. */
		return error == EINVAL;
	case RUMPBLK_BACKEND_URING:
		/* io_uring_setup: missing (ENOSYS), disabled by the
		 * io_uring_disabled sysctl or seccomp (EPERM, EACCES), or
		 * not built (EOPNOTSUPP). */
		return error == ENOSYS || error == EPERM || error == EACCES ||
		    error == EOPNOTSUPP;
	default:
		return false;
	}
}

/* Open one kind; set u_backend_kind to what the unit really uses. */
static int
open_kind(struct rb_unit *u, enum rumpblk_backend kind,
    struct rb_stage **stp)
{
	int error;

	switch (kind) {
	case RUMPBLK_BACKEND_PIO:
		error = rb_pio_open(u, stp);
		break;
	case RUMPBLK_BACKEND_MMAP:
		/* Sets u_backend_kind itself: it may fall back to pio. */
		return rb_mmap_open(u, stp);
	case RUMPBLK_BACKEND_DIRECT:
		error = rb_direct_open(u, stp);
		break;
	case RUMPBLK_BACKEND_URING:
#ifdef RUMPBLK_HAVE_URING
		error = rb_uring_open(u, stp);
#else
		/* Built without liburing. */
		error = EOPNOTSUPP;
#endif
		break;
	default:
		return EINVAL;
	}
	if (error == 0)
		u->u_backend_kind = kind;
	return error;
}

int
rb_backend_open(struct rb_unit *u, enum rumpblk_backend kind,
    struct rb_stage **stp)
{
	int error;

	if (kind != RUMPBLK_BACKEND_AUTO)
		return open_kind(u, kind, stp);
	kind = rb_backend_auto(u);
	if ((error = open_kind(u, kind, stp)) == 0 || !refused(kind, error))
		return error;
	/* Refused: pio works wherever the file could be opened. */
	return open_kind(u, RUMPBLK_BACKEND_PIO, stp);
}
