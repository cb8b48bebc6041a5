/*
 * The io_uring engine, and the uring backend built on it.
 *
 * Contents:
 *   1. the engine: one ring per unit, a submission lock, a reaper thread
 *   2. the uring backend: reads, writes and flushes through the engine
 *      over the unit's buffered descriptor; the rest as pio does it
 *
 * One ring per unit, not one per submitting thread.  Per-thread rings
 * would spare the submission lock, but an asynchronous buffer must
 * complete without its submitter calling in again, so every ring would
 * need a reaper (a thread, or an eventfd that one thread polls), and a
 * library cannot see its callers' threads exit to tear their rings down.
 * The lock is held only to fill an SQE and enter the kernel; at queue
 * depth 32 on two cores the measured cost is in bench/ (README).
 *
 * Completions are reaped by one thread per ring, which copies a batch of
 * CQEs out, frees the CQ, and completes the requests.  A completion
 * callback (b_iodone) that submits again, which is what a caller at queue
 * depth does, runs on the reaper: its SQE is only queued, and the reaper
 * enters the kernel once for the whole batch, so a loaded ring costs
 * less than one system call per request.
 *
 * Short transfers are resubmitted for the rest, -EAGAIN and -EINTR are
 * retried, and cqe->res < 0 becomes a positive errno here, at the
 * boundary (STYLE.md, Errors).  Requests never wait for room: when the
 * CQ could overflow they queue on an intrusive backlog (struct rb_io's
 * io_next) that the reaper drains as completions free room, so a
 * submitter never blocks, even when it is the reaper itself.
 *
 * Sanitizers: the kernel writes read buffers and CQEs behind the
 * sanitizers' backs, which is what they should see of a system call.
 * ThreadSanitizer cannot see that a CQE follows its submission; it sees
 * ur_lock instead: a submitter fills its request before it releases
 * ur_lock (after entering the kernel), and the reaper takes ur_lock to
 * account for a batch before it reads the batch's requests, so the
 * mutex orders the two for TSan as the kernel orders them for real.
 * Keep that order if you change either side.
 */
#include <errno.h>
#include <liburing.h>
#include <stdlib.h>
#include <string.h>

#include "../internal.h"
#include "../host/host.h"

/* 1. The engine. */

#define UR_ENTRIES	128		/* SQ; the CQ is twice that */
#define UR_BATCH	64		/* CQEs copied out at a time */
#define UR_MAXLEN	(1u << 30)	/* bytes per SQE */

/*
 * Locks: q = ur_lock, r = the reaper thread only,
 * ( = set at create, then read-only.
 * The CQ side of ur_ring is the reaper's (r); the SQ side is q.
 */
struct rb_uring {
	pthread_mutex_t	ur_lock;
	struct io_uring	ur_ring;	/* q (SQ), r (CQ) */
	unsigned	ur_inflight;	/* q: SQEs not reaped yet */
	unsigned	ur_max;		/* ( CQ entries: bound on inflight */
	unsigned	ur_unsubmitted;	/* q: SQEs not yet entered */
	struct rb_io	*ur_backlog;	/* q: waiting for room, FIFO */
	struct rb_io	**ur_backlog_tailp; /* q */
	int		ur_fd;		/* ( host descriptor */
	bool		ur_fixed;	/* ( ur_fd is registered file 0 */
	pthread_t	ur_reaper;	/* ( */
};

/* The ring whose reaper this thread is, if any. */
static _Thread_local struct rb_uring *reaping;

/* Fill an SQE for io's next step; false if there is no room. */
static bool
prep_locked(struct rb_uring *r, struct rb_io *io)
{
	struct io_uring_sqe *sqe;
	uint64_t hoff;
	size_t done = io->io_moved, len;
	int fd = r->ur_fixed ? 0 : r->ur_fd;

	rb_assert_held(&r->ur_lock);
	if (r->ur_inflight >= r->ur_max ||
	    (sqe = io_uring_get_sqe(&r->ur_ring)) == NULL)
		return false;
	hoff = io->io_unit->u_hostoffset + io->io_off + done;
	len = io->io_len - done;
	if (len > UR_MAXLEN)
		len = UR_MAXLEN;
	switch (io->io_op) {
	case RUMPBLK_B_READ:
		io_uring_prep_read(sqe, fd, (char *)io->io_data + done,
		    (unsigned)len, hoff);
		break;
	case RUMPBLK_B_WRITE:
		io_uring_prep_write(sqe, fd, (char *)io->io_data + done,
		    (unsigned)len, hoff);
		if (rb_io_wants_sync(io))
			sqe->rw_flags = RWF_DSYNC;
		break;
	case RUMPBLK_B_FLUSH:
		io_uring_prep_fsync(sqe, fd, IORING_FSYNC_DATASYNC);
		break;
	default:
		abort();
	}
	if (r->ur_fixed)
		sqe->flags |= IOSQE_FIXED_FILE;
	io_uring_sqe_set_data(sqe, io);
	r->ur_inflight++;
	r->ur_unsubmitted++;
	return true;
}

/* Enter the kernel for the prepared SQEs.  What it does not take now
 * stays in the SQ for the next enter (the reaper retries). */
static void
submit_locked(struct rb_uring *r)
{
	int n;

	rb_assert_held(&r->ur_lock);
	while (r->ur_unsubmitted > 0) {
		n = io_uring_submit(&r->ur_ring);
		if (n == -EINTR)
			continue;
		if (n <= 0)
			break;	/* -EAGAIN, -EBUSY: the reaper retries */
		r->ur_unsubmitted -= (unsigned)n > r->ur_unsubmitted ?
		    r->ur_unsubmitted : (unsigned)n;
	}
}

static void
backlog_add_locked(struct rb_uring *r, struct rb_io *io)
{
	io->io_next = NULL;
	*r->ur_backlog_tailp = io;
	r->ur_backlog_tailp = &io->io_next;
}

/* Queue io's next step; enter the kernel unless the reaper will. */
static void
requeue(struct rb_uring *r, struct rb_io *io)
{
	rb_mutex_lock(&r->ur_lock);
	if (r->ur_backlog != NULL || !prep_locked(r, io))
		backlog_add_locked(r, io);
	else if (reaping != r)
		submit_locked(r);
	rb_mutex_unlock(&r->ur_lock);
}

/*
 * Start a read, write or flush of io on the engine's descriptor, at the
 * unit's host offset.  Never blocks on I/O; completes io from the reaper
 * (or, with no room, later).  Sync writes carry RWF_DSYNC.
 */
void
rb_uring_submit(struct rb_uring *r, struct rb_io *io)
{
	io->io_moved = 0;
	requeue(r, io);
}

/* One CQE: complete io, or queue its next step. */
static void
reap_one(struct rb_uring *r, struct rb_io *io, int res)
{
	int error;

	if (RB_UNLIKELY(res < 0)) {
		if (res == -EAGAIN || res == -EINTR) {
			requeue(r, io);
			return;
		}
		rb_io_complete(io, -res, io->io_moved);
		return;
	}
	if (io->io_op == RUMPBLK_B_FLUSH) {
		rb_io_complete(io, rb_host_seam_sync_error(), 0);
		return;
	}
	io->io_moved += (size_t)res;
	if (RB_UNLIKELY(io->io_moved < io->io_len)) {
		if (res > 0) {
			requeue(r, io);
			return;
		}
		/* End of file under a read is an error, not zeroes (as in
		 * rb_host_pread); a write that moves nothing is a full disk. */
		rb_io_complete(io, io->io_op == RUMPBLK_B_READ ? EIO : ENOSPC,
		    io->io_moved);
		return;
	}
	error = 0;
	if (io->io_op == RUMPBLK_B_WRITE && rb_io_wants_sync(io))
		error = rb_host_seam_sync_error();
	rb_io_complete(io, error, io->io_moved);
}

static void *
reaper(void *arg)
{
	struct rb_uring *r = arg;
	struct io_uring_cqe *cqe;
	struct { void *data; int res; } batch[UR_BATCH];
	struct rb_io *io;
	unsigned head, n, i;
	bool stop = false, pending;
	int error;

	reaping = r;
	pending = false;
	while (!stop) {
		if (pending) {
			/* An enter failed for want of resources: wait a
			 * little, then retry it rather than sleep forever. */
			struct __kernel_timespec ts = { 0, 1000000 };

			error = io_uring_wait_cqe_timeout(&r->ur_ring, &cqe,
			    &ts);
		} else
			error = io_uring_wait_cqe(&r->ur_ring, &cqe);
		if (error != 0 && error != -ETIME && error != -EINTR &&
		    error != -EAGAIN)
			abort();	/* a broken ring is a broken invariant */
		n = 0;
		io_uring_for_each_cqe(&r->ur_ring, head, cqe) {
			batch[n].data = io_uring_cqe_get_data(cqe);
			batch[n].res = cqe->res;
			if (++n == UR_BATCH)
				break;
		}
		io_uring_cq_advance(&r->ur_ring, n);

		/* Also the happens-before for TSan (head comment). */
		rb_mutex_lock(&r->ur_lock);
		r->ur_inflight -= n;
		rb_mutex_unlock(&r->ur_lock);
		for (i = 0; i < n; i++) {
			if ((io = batch[i].data) == NULL) {
				stop = true;	/* the NOP of destroy */
				continue;
			}
			reap_one(r, io, batch[i].res);
		}

		/* Room was freed: move the backlog in, then enter once. */
		rb_mutex_lock(&r->ur_lock);
		while ((io = r->ur_backlog) != NULL && prep_locked(r, io)) {
			if ((r->ur_backlog = io->io_next) == NULL)
				r->ur_backlog_tailp = &r->ur_backlog;
			io->io_next = NULL;
		}
		submit_locked(r);
		pending = r->ur_unsubmitted > 0;
		rb_mutex_unlock(&r->ur_lock);
	}
	return NULL;
}

/*
 * A ring over fd with its reaper.  Errors: ENOSYS or EPERM where io_uring
 * is missing or disabled (kernel.io_uring_disabled, seccomp), ENOMEM,
 * EAGAIN (no thread).
 */
int
rb_uring_create(int fd, struct rb_uring **rp)
{
	struct rb_uring *r;
	int error;

	if (RB_UNLIKELY(rb_host_seam != NULL) &&
	    rb_host_seam->hs_uring_error != 0)
		return rb_host_seam->hs_uring_error;
	if ((r = calloc(1, sizeof(*r))) == NULL)
		return ENOMEM;
	if ((error = pthread_mutex_init(&r->ur_lock, NULL)) != 0)
		goto free_r;
	if ((error = io_uring_queue_init(UR_ENTRIES, &r->ur_ring, 0)) < 0) {
		error = -error;
		goto destroy_lock;
	}
	r->ur_max = r->ur_ring.cq.ring_entries;
	r->ur_backlog_tailp = &r->ur_backlog;
	r->ur_fd = fd;
	/* A registered file spares a file table lookup per request. */
	r->ur_fixed = io_uring_register_files(&r->ur_ring, &fd, 1) == 0;
	if ((error = pthread_create(&r->ur_reaper, NULL, reaper, r)) != 0)
		goto exit_ring;
	*rp = r;
	return 0;

exit_ring:
	io_uring_queue_exit(&r->ur_ring);
destroy_lock:
	pthread_mutex_destroy(&r->ur_lock);
free_r:
	free(r);
	return error;
}

/* Stop the reaper and free the ring.  Nothing may be in flight. */
void
rb_uring_destroy(struct rb_uring *r)
{
	struct io_uring_sqe *sqe;

	rb_mutex_lock(&r->ur_lock);
	while ((sqe = io_uring_get_sqe(&r->ur_ring)) == NULL)
		submit_locked(r);
	io_uring_prep_nop(sqe);
	io_uring_sqe_set_data(sqe, NULL);
	r->ur_inflight++;
	r->ur_unsubmitted++;
	submit_locked(r);
	rb_mutex_unlock(&r->ur_lock);
	pthread_join(r->ur_reaper, NULL);
	io_uring_queue_exit(&r->ur_ring);
	pthread_mutex_destroy(&r->ur_lock);
	free(r);
}

/* 2. The uring backend. */

struct uring {
	struct rb_stage	ub_stage;
	struct rb_uring	*ub_eng;	/* ( */
	int		ub_fd;		/* ( the unit's descriptor */
	struct rb_pool	*ub_pool;	/* ( the instance's */
};

static void
uring_work(struct rb_io *io)
{
	struct uring *ub = io->io_ctx;

	rb_fdio_run(ub->ub_fd, io);
}

static void
uring_submit(struct rb_stage *st, struct rb_io *io)
{
	struct uring *ub = (struct uring *)st;

	switch (io->io_op) {
	case RUMPBLK_B_READ:
	case RUMPBLK_B_WRITE:
	case RUMPBLK_B_FLUSH:
		rb_uring_submit(ub->ub_eng, io);
		return;
	}
	/*
	 * Trim, zero and extent queries are fallocate and lseek calls on
	 * the same descriptor, so they are coherent with the ring's I/O;
	 * an asynchronous one goes to the worker pool as pio's does.
	 */
	if ((io->io_flags & RUMPBLK_B_ASYNC) == 0) {
		rb_fdio_run(ub->ub_fd, io);
		return;
	}
	io->io_ctx = ub;
	io->io_work = uring_work;
	rb_pool_submit(ub->ub_pool, io);
}

static int
uring_sync(struct rb_stage *st)
{
	return rb_host_datasync(((struct uring *)st)->ub_fd);
}

static void
uring_destroy(struct rb_stage *st)
{
	struct uring *ub = (struct uring *)st;

	rb_uring_destroy(ub->ub_eng);
	free(ub);
}

static const struct rb_ops uring_ops = {
	.name = "uring",
	.submit = uring_submit,
	.sync = uring_sync,
	.destroy = uring_destroy,
};

int
rb_uring_open(struct rb_unit *u, struct rb_stage **stp)
{
	struct uring *ub;
	int error;

	if ((ub = calloc(1, sizeof(*ub))) == NULL)
		return ENOMEM;
	if ((error = rb_uring_create(u->u_fd, &ub->ub_eng)) != 0) {
		free(ub);
		return error;
	}
	ub->ub_stage.st_ops = &uring_ops;
	ub->ub_stage.st_unit = u;
	ub->ub_fd = u->u_fd;
	ub->ub_pool = rb_instance_pool(u->u_rb);
	*stp = &ub->ub_stage;
	return 0;
}
