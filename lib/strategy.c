/*
 * The strategy routine, biodone/biowait and the character-device path.
 *
 * Contents:
 *   1. the private part of struct rumpblk_buf
 *   2. biodone: counters, b_resid/b_error, b_iodone or the waiter
 *   3. rumpblk_strategy: seed-mode draw, checks, dispatch to the stack
 *   4. rumpblk_biowait
 *   5. rumpblk_read/rumpblk_write (physio)
 *
 * Strategy is the one I/O path: the C API, NBD and every other front end
 * call it, and it calls the top stage of the unit.  It is written for the
 * common case of a valid request with no seed-mode faults: one reference
 * on the unit, a handful of compares, two relaxed counter updates, and the
 * clock read only for one request in rb_lat_sample (and for every request
 * of a front-end connection, lib/stats.c).
 */
#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "internal.h"

/* 1. The private part of a buffer. */

#define BP_PENDING	0
#define BP_DONE		1
#define BP_WAITING	2

struct rb_bufpriv {
	struct rb_io	bp_io;
	uint64_t	bp_t0;		/* start time, 0 if not timed */
	struct rb_conn	*bp_conn;	/* the submitter's connection record */
	_Atomic uint32_t bp_state;	/* BP_*, a futex */
};

_Static_assert(sizeof(struct rb_bufpriv) <=
    sizeof(((struct rumpblk_buf *)0)->b_opaque),
    "struct rb_bufpriv must fit in b_opaque");

static inline struct rb_bufpriv *
bufpriv(struct rumpblk_buf *bp)
{
	return (struct rb_bufpriv *)(void *)bp->b_opaque;
}

static inline struct rumpblk_buf *
io_to_buf(struct rb_io *io)
{
	return (struct rumpblk_buf *)((char *)io -
	    offsetof(struct rumpblk_buf, b_opaque) -
	    offsetof(struct rb_bufpriv, bp_io));
}

/* The io_lent of a loan that is only a file descriptor (internal.h). */
const char rb_lent_fd[1];

/* Sampling: each thread times one request in rb_lat_sample. */
static _Thread_local unsigned sample_left
    __attribute__((tls_model("initial-exec")));

/*
 * The buffer this thread is submitting, while its stage's submit runs.
 * A buffer that completes inside its own rumpblk_strategy call, on the
 * submitting thread (a page-cache copy usually does), cannot have a
 * waiter yet: rumpblk_biowait is called once strategy has returned.  Its
 * completion is then a plain store, not an exchange: a locked
 * instruction right after a 4 KiB copy waits for the copy's stores to
 * drain, which perf showed as several percent of a 4 KiB read.
 */
static _Thread_local struct rumpblk_buf *submitting
    __attribute__((tls_model("initial-exec")));

_Thread_local unsigned rb_completing
    __attribute__((tls_model("initial-exec")));

/* 2. biodone. */

static void
buf_finish(struct rumpblk_buf *bp, int error, size_t moved)
{
	struct rb_bufpriv *p = bufpriv(bp);

	bp->b_error = error;
	bp->b_resid = bp->b_bcount - moved;
	if (bp->b_iodone != NULL) {
		/* The buffer belongs to the caller from here on. */
		rb_completing++;
		bp->b_iodone(bp);
		rb_completing--;
		return;
	}
	if (submitting == bp) {
		atomic_store_explicit(&p->bp_state, BP_DONE,
		    memory_order_release);
		return;
	}
	if (atomic_exchange_explicit(&p->bp_state, BP_DONE,
	    memory_order_acq_rel) == BP_WAITING)
		syscall(SYS_futex, &p->bp_state, FUTEX_WAKE_PRIVATE, INT_MAX,
		    NULL, NULL, 0);
}

/* Complete a buffer that never reached a unit's stack. */
static void
buf_reject(struct rumpblk *rb, struct rb_counters *cn,
    struct rumpblk_buf *bp, int error)
{
	(void)rb;
	if (error != 0)
		rb_stat_add(cn, RB_STAT(io_errors), 1);
	buf_finish(bp, error, 0);
}

/* The completion of a request that went down the stack. */
static void
strategy_done(struct rb_io *io)
{
	struct rumpblk_buf *bp = io_to_buf(io);
	struct rb_bufpriv *p = bufpriv(bp);
	struct rb_unit *u = io->io_unit;
	struct rb_counters *cn = u->u_counters;
	size_t moved = io->io_moved;
	unsigned ep = io->io_epoch;	/* the buffer is the caller's after */
	int error = io->io_error;

	switch (io->io_op) {
	case RUMPBLK_B_READ:
		rb_stat_add(cn, RB_STAT(bytes_read), moved);
		if (io->io_lent != NULL) {
			rb_stat_add(cn, RB_STAT(bytes_lent), moved);
			bp->b_data = io->io_lent == RB_LENT_FD ? NULL :
			    (void *)(uintptr_t)io->io_lent;
			bp->b_flags |= RUMPBLK_B_LOANED;
		}
		break;
	case RUMPBLK_B_WRITE:
		rb_stat_add(cn, RB_STAT(bytes_written), moved);
		if (io->io_flags & RUMPBLK_B_ASYNC)
			rb_stat_add(cn, RB_STAT(bytes_written_async), moved);
		break;
	case RUMPBLK_B_TRIM:
		if (error == 0)
			rb_stat_add(cn, RB_STAT(bytes_trimmed), io->io_len);
		break;
	case RUMPBLK_B_ZERO:
		if (error == 0)
			rb_stat_add(cn, RB_STAT(bytes_zeroed), io->io_len);
		break;
	}
	if (RB_UNLIKELY(error != 0))
		rb_stat_add(cn, RB_STAT(io_errors), 1);
	if (RB_UNLIKELY(p->bp_t0 != 0))
		rb_stat_latency(cn, io->io_op, rb_now_ns() - p->bp_t0,
		    p->bp_conn);
	else
		rb_stat_latency_count(cn, io->io_op);
	/*
	 * b_resid is what was not covered: for trim, zero and extents the
	 * range done (io_len, cut at the end of the unit like a transfer);
	 * a flush covers its whole (ignored) count.
	 */
	if (io->io_op == RUMPBLK_B_FLUSH)
		moved = error == 0 ? bp->b_bcount : 0;
	else if (io->io_op != RUMPBLK_B_READ && io->io_op != RUMPBLK_B_WRITE)
		moved = error == 0 ? io->io_len : 0;
	if (RB_UNLIKELY(io->io_lent != NULL)) {
		/* The unit stays held, as a loan (rb_unit_lend), until
		 * rumpblk_unloan; the buffer may be unloaned as soon as
		 * buf_finish hands it over. */
		rb_unit_lend(u, ep);
		buf_finish(bp, error, moved);
		return;
	}
	buf_finish(bp, error, moved);
	rb_unit_rele(u, ep);
}

void
rumpblk_unloan(struct rumpblk *rb, struct rumpblk_buf *bp)
{
	struct rb_bufpriv *p = bufpriv(bp);
	struct rb_io *io = &p->bp_io;
	struct rb_unit *u = io->io_unit;
	struct rb_stage *be;

	(void)rb;
	if ((bp->b_flags & RUMPBLK_B_LOANED) == 0)
		return;
	bp->b_flags &= ~RUMPBLK_B_LOANED;
	bp->b_data = io->io_data;
	/* The backend lent it; the loan keeps it from being destroyed. */
	be = u->u_backend;
	if (be->st_ops->unloan != NULL)
		be->st_ops->unloan(be, io->io_ctx);
	io->io_lent = NULL;
	rb_unit_unlend(u);
}

int
rumpblk_loan_fd(struct rumpblk *rb, const struct rumpblk_buf *bp, int *fdp,
    uint64_t *offp)
{
	const struct rb_io *io = &((const struct rb_bufpriv *)(const void *)
	    bp->b_opaque)->bp_io;
	const struct rb_unit *u = io->io_unit;
	struct rb_stage *be;

	(void)rb;
	if ((bp->b_flags & RUMPBLK_B_LOANED) == 0)
		return EINVAL;
	be = u->u_backend;
	if (be->st_ops->loan_fd == NULL)
		return EINVAL;
	return be->st_ops->loan_fd(be, io, fdp, offp);
}

/* 3. strategy. */

static int
op_counter(int op)
{
	switch (op) {
	case RUMPBLK_B_FLUSH:	return RB_STAT(flushes);
	case RUMPBLK_B_TRIM:	return RB_STAT(trims);
	case RUMPBLK_B_ZERO:	return RB_STAT(zeroes);
	case RUMPBLK_B_EXTENTS:	return RB_STAT(extent_queries);
	default:		return -1;
	}
}

void
rumpblk_strategy(struct rumpblk *rb, struct rumpblk_buf *bp)
{
	struct rb_bufpriv *p = bufpriv(bp);
	struct rb_io *io = &p->bp_io;
	struct rb_unit *u;
	struct rb_counters *cn;
	struct rb_stage *top, *pf;
	struct rumpblk_buf *prev;
	uint64_t off, size;
	size_t len;
	unsigned ep;
	int op = bp->b_flags & RUMPBLK_B_OPMASK, error, c;
	bool rw = op == RUMPBLK_B_READ || op == RUMPBLK_B_WRITE;

	atomic_store_explicit(&p->bp_state, BP_PENDING, memory_order_relaxed);
	p->bp_t0 = 0;
	bp->b_error = 0;
	bp->b_resid = bp->b_bcount;

	/*
	 * Seed mode draws first, for every read or write call, even one
	 * that is rejected below: the seed's strategy_fail wrapped the
	 * whole routine, and the draw order is its contract.
	 */
	if (RB_UNLIKELY(rb->rb_cfg.fail != 0) && rw && rb_seedfail_draw(rb)) {
		uint64_t t0 = rb_now_ns();

		u = rb_unit_hold(rb, bp->b_unit, &ep);
		cn = u != NULL ? u->u_counters : rb->rb_counters;
		rb_stat_add(cn, RB_STAT(io_total), 1);
		if (bp->b_flags & RUMPBLK_B_ASYNC)
			rb_stat_add(cn, RB_STAT(io_async), 1);
		rb_stat_add(cn, RB_STAT(faults_injected), 1);
		rb_stat_add(cn, RB_STAT(faults_class[RUMPBLK_FAULT_SEED]), 1);
		/* A firing is timed always: here, up to the refusal. */
		rb_stat_fault_latency(cn, 1u << RUMPBLK_FAULT_SEED,
		    rb_now_ns() - t0);
		buf_reject(rb, cn, bp, EIO);
		if (u != NULL)
			rb_unit_rele(u, ep);
		return;
	}

	if (RB_UNLIKELY((u = rb_unit_hold(rb, bp->b_unit, &ep)) == NULL)) {
		rb_stat_add(rb->rb_counters, RB_STAT(io_total), 1);
		if (bp->b_flags & RUMPBLK_B_ASYNC)
			rb_stat_add(rb->rb_counters, RB_STAT(io_async), 1);
		buf_reject(rb, rb->rb_counters, bp, ENXIO);
		return;
	}
	/* The highest stage that prefetches, through every layer that
	 * does not (stack.c). */
	pf = atomic_load_explicit(&u->u_prefetch, memory_order_acquire);
	if (pf != NULL && rw)
		pf->st_ops->prefetch(pf, op, (uint64_t)bp->b_blkno <<
		    RUMPBLK_DEV_BSHIFT);
	cn = u->u_counters;
	rb_stat_add(cn, RB_STAT(io_total), 1);
	if (bp->b_flags & RUMPBLK_B_ASYNC)
		rb_stat_add(cn, RB_STAT(io_async), 1);

	/* Exactly one operation, and only known modifiers. */
	if (RB_UNLIKELY(op == 0 || (op & (op - 1)) != 0 ||
	    (bp->b_flags & ~(RUMPBLK_B_OPMASK | RUMPBLK_B_ASYNC |
	    RUMPBLK_B_FUA | RUMPBLK_B_NOHOLE | RUMPBLK_B_LOAN |
	    RUMPBLK_B_LOAN_FD)) != 0)) {
		error = EINVAL;
		goto reject;
	}
	if (!rw && (c = op_counter(op)) >= 0)
		rb_stat_add(cn, (size_t)c, 1);
	/* A flush of a read-only unit has nothing to do, and succeeds as
	 * DIOCCACHESYNC does. */
	if (RB_UNLIKELY((op == RUMPBLK_B_WRITE || op == RUMPBLK_B_TRIM ||
	    op == RUMPBLK_B_ZERO) && (u->u_mode & RUMPBLK_FWRITE) == 0)) {
		error = EROFS;
		goto reject;
	}

	size = u->u_size;
	if (op == RUMPBLK_B_FLUSH) {
		off = 0;
		len = 0;
	} else {
		if (RB_UNLIKELY((bp->b_bcount &
		    ((1u << u->u_sectshift) - 1)) != 0 || bp->b_blkno < 0 ||
		    bp->b_blkno > (INT64_MAX >> RUMPBLK_DEV_BSHIFT))) {
			error = EINVAL;
			goto reject;
		}
		if ((op == RUMPBLK_B_READ || op == RUMPBLK_B_WRITE ||
		    op == RUMPBLK_B_EXTENTS) && RB_UNLIKELY(bp->b_data == NULL &&
		    bp->b_bcount != 0)) {
			error = EINVAL;
			goto reject;
		}
		/* b_blkno counts DEV_BSIZE units whatever the sector size. */
		off = (uint64_t)bp->b_blkno << RUMPBLK_DEV_BSHIFT;
		len = bp->b_bcount;
		if (RB_UNLIKELY(off + len > size || off + len < off)) {
			/* The kernel's bounds_check(): at the end, nothing
			 * moves; past it, EINVAL; across it, truncate. */
			if (off == size) {
				error = 0;
				goto reject;
			}
			if (off > size) {
				error = EINVAL;
				goto reject;
			}
			len = (size_t)(size - off);
		}
		if (RB_UNLIKELY(len == 0)) {
			error = 0;
			goto reject;
		}
	}

	/*
	 * Time one request in rb_lat_sample, and every request of a bound
	 * front-end connection (stats.c says why).
	 */
	if (RB_UNLIKELY((p->bp_conn = rb_conn_mine(rb)) != NULL))
		p->bp_t0 = rb_now_ns();
	else if (RB_UNLIKELY(--sample_left == 0 ||
	    sample_left > rb->rb_lat_sample)) {
		sample_left = rb->rb_lat_sample;
		p->bp_t0 = rb_now_ns();
	}
	io->io_op = op;
	io->io_flags = bp->b_flags & (RUMPBLK_B_ASYNC | RUMPBLK_B_FUA |
	    RUMPBLK_B_NOHOLE | RUMPBLK_B_LOAN | RUMPBLK_B_LOAN_FD);
	io->io_off = off;
	io->io_len = len;
	io->io_data = bp->b_data;
	io->io_unit = u;
	io->io_done = strategy_done;
	io->io_ctx = NULL;
	io->io_error = 0;
	io->io_epoch = ep;
	io->io_moved = 0;
	io->io_next = NULL;
	io->io_work = NULL;
	io->io_lent = NULL;
	prev = submitting;
	submitting = bp;
	top = atomic_load_explicit(&u->u_top, memory_order_acquire);
	/* A loan only for a read, through layers that let it through
	 * (rb_ops, lends_through). */
	if (RB_UNLIKELY(bp->b_flags & RUMPBLK_B_LOAN) &&
	    (op != RUMPBLK_B_READ || atomic_load_explicit(&u->u_noloan,
	    memory_order_relaxed)))
		io->io_flags &= ~RUMPBLK_B_LOAN;
	/* LOAN_FD qualifies a loan; a layer that strips LOAN (it sees the
	 * data) leaves it, and a backend looks at both. */
	top->st_ops->submit(top, io);
	submitting = prev;
	return;

reject:
	/* An extent query that covers nothing describes nothing. */
	if (op == RUMPBLK_B_EXTENTS && bp->b_data != NULL)
		((struct rumpblk_extents *)bp->b_data)->ex_count = 0;
	buf_reject(rb, cn, bp, error);
	rb_unit_rele(u, ep);
}

/* 4. biowait. */

int
rumpblk_biowait(struct rumpblk_buf *bp)
{
	struct rb_bufpriv *p = bufpriv(bp);
	uint32_t s = BP_PENDING;

	/* Most buffers are done when biowait is called (page-cache copies
	 * complete in the caller's thread): no locked instruction then. */
	if (atomic_load_explicit(&p->bp_state, memory_order_acquire) ==
	    BP_DONE)
		return bp->b_error;
	/* What a plugged thread holds back may be what it waits for. */
	rb_batch_flush();
	if (atomic_compare_exchange_strong_explicit(&p->bp_state, &s,
	    BP_WAITING, memory_order_acq_rel, memory_order_acquire) ||
	    s == BP_WAITING) {
		while (atomic_load_explicit(&p->bp_state,
		    memory_order_acquire) == BP_WAITING)
			syscall(SYS_futex, &p->bp_state, FUTEX_WAIT_PRIVATE,
			    BP_WAITING, NULL, NULL, 0);
	}
	return bp->b_error;
}

/* 5. physio. */

static int
physio(struct rumpblk *rb, int unit, struct rumpblk_uio *uio, int op)
{
	struct rumpblk_unitinfo ui;
	struct rumpblk_buf b;
	struct iovec *iov;
	size_t n, done;
	int error;

	if ((error = rumpblk_unitinfo(rb, unit, &ui)) != 0)
		return error;
	if ((uio->uio_offset & (ui.ui_secsize - 1)) != 0 ||
	    (uio->uio_resid & (ui.ui_secsize - 1)) != 0)
		return EINVAL;
	for (int i = 0; i < uio->uio_iovcnt && uio->uio_resid > 0; i++) {
		iov = &uio->uio_iov[i];
		if ((iov->iov_len & (ui.ui_secsize - 1)) != 0)
			return EINVAL;
		while (iov->iov_len > 0 && uio->uio_resid > 0) {
			n = iov->iov_len;
			if (n > uio->uio_resid)
				n = uio->uio_resid;
			if (n > RUMPBLK_MAXPHYS)
				n = RUMPBLK_MAXPHYS;
			memset(&b, 0, sizeof(b));
			b.b_unit = unit;
			b.b_flags = op;
			b.b_blkno = (int64_t)(uio->uio_offset >>
			    RUMPBLK_DEV_BSHIFT);
			b.b_bcount = n;
			b.b_data = iov->iov_base;
			rumpblk_strategy(rb, &b);
			error = rumpblk_biowait(&b);
			done = b.b_bcount - b.b_resid;
			iov->iov_base = (char *)iov->iov_base + done;
			iov->iov_len -= done;
			uio->uio_offset += done;
			uio->uio_resid -= done;
			if (error != 0)
				return error;
			if (done < n)		/* the end of the unit */
				return 0;
		}
	}
	return 0;
}

int
rumpblk_read(struct rumpblk *rb, int unit, struct rumpblk_uio *uio,
    int flags)
{
	(void)flags;
	return physio(rb, unit, uio, RUMPBLK_B_READ);
}

int
rumpblk_write(struct rumpblk *rb, int unit, struct rumpblk_uio *uio,
    int flags)
{
	(void)flags;
	return physio(rb, unit, uio, RUMPBLK_B_WRITE);
}
