/*
 * The synchronous work of one request on a host descriptor: every
 * operation of the driver with pread/pwrite, fdatasync, fallocate and the
 * SEEK_DATA/SEEK_HOLE map.  The pio backend runs it in the caller's
 * thread or on a worker; other backends use it for the operations they do
 * not do differently (flush, trim, zero, extents).
 */
#include <errno.h>

#include "../internal.h"
#include "../host/host.h"

void
rb_fdio_run(int fd, const struct rb_backing *bk, struct rb_io *io)
{
	uint64_t hoff = bk->bk_off + io->io_off;
	size_t moved = 0;
	int error;

	switch (io->io_op) {
	case RUMPBLK_B_READ:
		error = rb_host_pread(fd, io->io_data, io->io_len, hoff,
		    &moved);
		break;
	case RUMPBLK_B_WRITE:
		error = rb_host_pwrite(fd, io->io_data, io->io_len, hoff,
		    rb_io_wants_sync(io), &moved);
		break;
	case RUMPBLK_B_FLUSH:
		error = rb_host_datasync(fd);
		break;
	case RUMPBLK_B_TRIM:
		error = rb_host_punch(fd, bk->bk_ftype, hoff, io->io_len);
		if (error == 0 && rb_io_wants_sync(io))
			error = rb_host_datasync(fd);
		break;
	case RUMPBLK_B_ZERO:
		error = rb_host_zero(fd, bk->bk_ftype, hoff, io->io_len,
		    (io->io_flags & RUMPBLK_B_NOHOLE) != 0);
		if (error == 0 && rb_io_wants_sync(io))
			error = rb_host_datasync(fd);
		break;
	case RUMPBLK_B_EXTENTS:
		error = rb_host_extents(fd, bk->bk_ftype, hoff, io->io_len,
		    io->io_data);
		break;
	default:
		error = EINVAL;
		break;
	}
	rb_io_complete(io, error, moved);
}

void
rb_fdio_work(struct rb_io *io)
{
	const struct rb_fdio *f = io->io_ctx;

	rb_fdio_run(f->fdio_fd, f->fdio_bk, io);
}
