/*
 * Backend selection.  Each backend lives in its own file behind struct
 * rb_ops; this file only maps a configured kind to an open function and
 * says what "auto" means.
 *
 * auto: pio for every file type, until a benchmark in bench/ shows
 * another backend faster for a file type (README, "Backends").
 */
#include <errno.h>

#include "../internal.h"

enum rumpblk_backend
rb_backend_auto(enum rumpblk_ftype ft)
{
	(void)ft;
	return RUMPBLK_BACKEND_PIO;
}

int
rb_backend_open(struct rb_unit *u, enum rumpblk_backend kind,
    struct rb_stage **stp)
{
	if (kind == RUMPBLK_BACKEND_AUTO)
		kind = rb_backend_auto(u->u_ftype);
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
