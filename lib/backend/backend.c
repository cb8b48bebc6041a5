/*
 * Backend selection.  Each backend lives in its own file behind struct
 * rb_ops; this file only maps a configured kind to an open function and
 * says what "auto" means.
 *
 * auto: pio for every file type, until a benchmark in bench/ shows
 * another backend faster for a file type (README, "Backends").
 *
 * A backend the host refuses (O_DIRECT on a file system that does not do
 * it, io_uring disabled by the kernel or a sandbox) is an error when the
 * caller named it, so that nobody believes they test direct I/O when they
 * do not; under auto the next candidate is tried, and u_backend_kind (the
 * unitinfo's ui_backend) says which one the unit really uses.
 */
#include <errno.h>

#include "../internal.h"
#include "../host/host.h"

enum rumpblk_backend
rb_backend_auto(enum rumpblk_ftype ft)
{
	(void)ft;
	if (RB_UNLIKELY(rb_host_seam != NULL) &&
	    rb_host_seam->hs_auto_first != RUMPBLK_BACKEND_AUTO)
		return rb_host_seam->hs_auto_first;
	return RUMPBLK_BACKEND_PIO;
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

static int
open_kind(struct rb_unit *u, enum rumpblk_backend kind,
    struct rb_stage **stp)
{
	switch (kind) {
	case RUMPBLK_BACKEND_PIO:
		return rb_pio_open(u, stp);
	case RUMPBLK_BACKEND_DIRECT:
		return rb_direct_open(u, stp);
	case RUMPBLK_BACKEND_URING:
#ifdef RUMPBLK_HAVE_URING
		return rb_uring_open(u, stp);
#else
		/* Built without liburing. */
		return EOPNOTSUPP;
#endif
	case RUMPBLK_BACKEND_MMAP:
		/* XXX(#4): not built yet. */
		return EOPNOTSUPP;
	default:
		return EINVAL;
	}
}

int
rb_backend_open(struct rb_unit *u, enum rumpblk_backend kind,
    struct rb_stage **stp)
{
	enum rumpblk_backend first;
	int error;

	if (kind != RUMPBLK_BACKEND_AUTO) {
		if ((error = open_kind(u, kind, stp)) == 0)
			u->u_backend_kind = kind;
		return error;
	}
	first = rb_backend_auto(u->u_ftype);
	if ((error = open_kind(u, first, stp)) == 0) {
		u->u_backend_kind = first;
		return 0;
	}
	if (first == RUMPBLK_BACKEND_PIO || !refused(first, error))
		return error;
	/* Refused: pio works wherever the file could be opened. */
	if ((error = rb_pio_open(u, stp)) == 0)
		u->u_backend_kind = RUMPBLK_BACKEND_PIO;
	return error;
}
