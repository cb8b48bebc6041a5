/*
 * The pio backend: pread/pwrite on the host descriptor.
 *
 * A synchronous buffer runs in the caller's thread: for a page-cached
 * image that is one system call, and handing it to another thread would
 * cost two context switches.  A RUMPBLK_B_ASYNC buffer goes to the
 * instance's bounded worker pool (lib/pool.c), so that many buffers from
 * many threads proceed in parallel rather than through the seed's single
 * I/O thread.  A synchronous write is durable when it completes (RWF_DSYNC
 * or fdatasync); FLUSH and DIOCCACHESYNC fdatasync the descriptor, which
 * covers every write that completed before.
 */
#include <errno.h>
#include <stdlib.h>

#include "../internal.h"
#include "../host/host.h"

struct pio {
	struct rb_stage	pio_stage;
	int		pio_fd;		/* ( the unit's descriptor */
	struct rb_pool	*pio_pool;	/* ( the instance's */
};

static void
pio_work(struct rb_io *io)
{
	struct pio *p = io->io_ctx;

	rb_fdio_run(p->pio_fd, io);
}

static void
pio_submit(struct rb_stage *st, struct rb_io *io)
{
	struct pio *p = (struct pio *)st;

	if (RB_LIKELY((io->io_flags & RUMPBLK_B_ASYNC) == 0)) {
		rb_fdio_run(p->pio_fd, io);
		return;
	}
	/* The io belongs to strategy; our context rides in io_ctx, which
	 * strategy leaves for the stage that holds the request. */
	io->io_ctx = p;
	io->io_work = pio_work;
	rb_pool_submit(p->pio_pool, io);
}

static int
pio_sync(struct rb_stage *st)
{
	return rb_host_datasync(((struct pio *)st)->pio_fd);
}

static const struct rb_ops pio_ops = {
	.name = "pio",
	.submit = pio_submit,
	.sync = pio_sync,
	.destroy = NULL,
};

int
rb_pio_open(struct rb_unit *u, struct rb_stage **stp)
{
	struct pio *p;

	if ((p = calloc(1, sizeof(*p))) == NULL)
		return ENOMEM;
	p->pio_stage.st_ops = &pio_ops;
	p->pio_stage.st_unit = u;
	p->pio_fd = u->u_fd;
	p->pio_pool = rb_instance_pool(u->u_rb);
	*stp = &p->pio_stage;
	return 0;
}
