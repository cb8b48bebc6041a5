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
	struct rb_fdio	pio_f;		/* ( the host file and descriptor */
	struct rb_pool	*pio_pool;	/* ( the instance's */
};

static void
pio_submit(struct rb_stage *st, struct rb_io *io)
{
	struct pio *p = (struct pio *)st;

	rb_pool_run(p->pio_pool, io, rb_fdio_work, &p->pio_f);
}

static const struct rb_ops pio_ops = {
	.name = "pio",
	.submit = pio_submit,
	.destroy = NULL,
};

int
rb_pio_open(struct rb_unit *u, struct rb_stage **stp)
{
	struct pio *p;

	if ((p = calloc(1, sizeof(*p))) == NULL)
		return ENOMEM;
	rb_stage_init(&p->pio_stage, &pio_ops, u, RB_RANK_BACKEND);
	p->pio_f.fdio_fd = u->u_host->hf_fd;
	p->pio_f.fdio_bk = &u->u_host->hf_bk;
	p->pio_pool = rb_instance_pool(u->u_rb);
	*stp = &p->pio_stage;
	return 0;
}
