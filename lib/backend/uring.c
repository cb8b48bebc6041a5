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
 * The lock is held only to fill an SQE and enter the kernel.  Measured
 * with `rumpblk bench --backend uring --qd 32 --threads 1|2|4` on two
 * shared cores, 4 KiB cached random reads: 1, 2 and 4 submitting
 * threads give the same 400-500K IOPS (run to run noise), because the reaper, which also resubmits, is the busy thread,
 * not the lock; 2-3x fio's io_uring engine at the same depth.  More
 * than one ring (and reaper) per unit is the next step if a host with
 * more cores shows the reaper saturated.
 *
 * Asynchronous buffers go through the unit's shared ring; their
 * completions are reaped under ur_cqlock by the ring's reaper thread,
 * which sleeps in read(2) on an eventfd registered with the ring (that
 * does not touch the CQ, so only the holder of ur_cqlock ever does),
 * copies a batch of CQEs out, frees the CQ, and completes the requests.
 * The eventfd rather than io_uring_enter(GETEVENTS) because valgrind
 * (3.19) holds its big lock across io_uring_enter, so a reaper asleep in
 * it stops every other thread of a program run under valgrind forever;
 * a read is a system call valgrind knows may block.  Nor does memcheck
 * see the kernel fill a read buffer through a ring, so account() tells
 * it (VALGRIND_MAKE_MEM_DEFINED, a no-op outside valgrind).
 *
 * A completion callback (b_iodone) that submits again, which is what a
 * caller at queue depth does, runs on the reaper.  On a buffered
 * descriptor its SQE is only queued, and the reaper enters the kernel
 * once for the whole batch, so a loaded ring costs less than one system
 * call per request; a cached read completes inside the enter, so
 * holding it back loses nothing (QD 32 cached, two cores: ~450K IOPS
 * batched, ~330K entering per request).  On an O_DIRECT descriptor
 * (ur_eager) the device works while we do, and a request held back
 * until the batch is reaped leaves it idle: there the reaper enters the
 * kernel for each request as its callback submits it (QD 32 direct on
 * a virtio disk: ~70K IOPS batched, ~93K eager; fio's io_uring engine
 * ~85K).
 *
 * A synchronous buffer waits for its own completion in its own thread,
 * on a small private ring borrowed from the engine's stack of them
 * (ur_sfree): submit and wait are one io_uring_enter, and a cached read
 * completes inside it.  Handing it to the reaper instead costs two
 * context switches, measured at 5x less throughput at queue depth 1.
 * The private rings belong to the engine, not to threads, so they are
 * freed with it whatever the callers' threads do; at most UR_NSYNC
 * exist, and a synchronous buffer that finds none free and none to make
 * uses the shared ring (and biowait), or, from a callback on the
 * reaper, pread/pwrite, since the reaper cannot wait for itself.
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
 * ur_lock (after entering the kernel), and a reaper takes ur_lock to
 * account for a batch before it reads the batch's requests, so the
 * mutex orders the two for TSan as the kernel orders them for real.
 * Keep that order if you change either side.  liburing's CQ helpers
 * read the CQ head without atomics, which is right for a single
 * consumer; ur_cqlock makes every consumer single.
 */
#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "../internal.h"
#include "../host/host.h"

#ifdef RUMPBLK_HAVE_VALGRIND
#include <valgrind/memcheck.h>
#else
#define VALGRIND_MAKE_MEM_DEFINED(a, n)	((void)(a), (void)(n))
#endif

/* 1. The engine. */

#define UR_ENTRIES	128		/* SQ; the CQ is twice that */
#define UR_BATCH	64		/* CQEs copied out at a time */
#define UR_MAXLEN	(1u << 30)	/* bytes per SQE */
#define UR_NSYNC	64		/* private rings for sync buffers */
#define UR_SENTRIES	4

/* A private ring, used by one synchronous buffer at a time. */
struct ur_sring {
	struct io_uring	sr_ring;
	struct ur_sring	*sr_next;	/* s: on ur_sfree */
	bool		sr_fixed;	/* ur_fd is its registered file 0 */
};

/*
 * Locks: c = ur_cqlock, q = ur_lock, s = ur_slock,
 * ( = set at create, then read-only.
 * Lock order: ur_cqlock before ur_lock; ur_slock is a leaf.
 * The CQ side of ur_ring is c; the SQ side is q.
 */
struct rb_uring {
	pthread_mutex_t	ur_cqlock;
	pthread_mutex_t	ur_lock;
	pthread_mutex_t	ur_slock;	/* leaf */
	struct ur_sring	*ur_sfree;	/* s: private rings not in use */
	unsigned	ur_nsring;	/* s: private rings made */
	unsigned	ur_nsync;	/* ( bound on ur_nsring */
	struct io_uring	ur_ring;	/* q (SQ), c (CQ) */
	bool		ur_stop;	/* c: destroy's NOP was reaped */
	unsigned	ur_inflight;	/* q: SQEs not reaped yet */
	unsigned	ur_max;		/* ( CQ entries: bound on inflight */
	unsigned	ur_unsubmitted;	/* q: SQEs not yet entered */
	struct rb_io	*ur_backlog;	/* q: waiting for room, FIFO */
	struct rb_io	**ur_backlog_tailp; /* q */
	int		ur_fd;		/* ( host descriptor */
	const struct rb_backing *ur_bk;	/* ( the host file: offset, type */
	int		ur_efd;		/* ( eventfd of the CQ, or -1 */
	bool		ur_fixed;	/* ( ur_fd is registered file 0 */
	bool		ur_eager;	/* ( O_DIRECT: enter for every SQE */
	pthread_t	ur_reaper;	/* ( */
};

/* The ring this thread is reaping (holds ur_cqlock of), if any. */
static _Thread_local struct rb_uring *reaping;

/* Fill sqe for io's next step (the part not moved yet). */
static void
prep_sqe(struct io_uring_sqe *sqe, struct rb_io *io, int ufd, bool fixed,
    uint64_t base)
{
	uint64_t hoff;
	size_t done = io->io_moved, len;
	int fd = fixed ? 0 : ufd;

	hoff = base + io->io_off + done;
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
	if (fixed)
		sqe->flags |= IOSQE_FIXED_FILE;
	io_uring_sqe_set_data(sqe, io);
}

/* Fill an SQE of the shared ring for io; false if there is no room. */
static bool
prep_locked(struct rb_uring *r, struct rb_io *io)
{
	struct io_uring_sqe *sqe;

	rb_assert_held(&r->ur_lock);
	if (r->ur_inflight >= r->ur_max ||
	    (sqe = io_uring_get_sqe(&r->ur_ring)) == NULL)
		return false;
	prep_sqe(sqe, io, r->ur_fd, r->ur_fixed, r->ur_bk->bk_off);
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
	else if (reaping != r || r->ur_eager)
		submit_locked(r);
	rb_mutex_unlock(&r->ur_lock);
}

/*
 * Start a read, write or flush of io on the engine's descriptor, at the
 * unit's host offset.  Never blocks on I/O; completes io from the reaper
 * (or, with no room, later).  Sync writes carry RWF_DSYNC.
 */
static bool reap_locked(struct rb_uring *);

/* Borrow a private ring, making one if there are fewer than UR_NSYNC. */
static struct ur_sring *
sring_get(struct rb_uring *r)
{
	struct ur_sring *sr;

	rb_mutex_lock(&r->ur_slock);
	if ((sr = r->ur_sfree) != NULL) {
		r->ur_sfree = sr->sr_next;
		rb_mutex_unlock(&r->ur_slock);
		return sr;
	}
	if (r->ur_nsring >= r->ur_nsync) {
		rb_mutex_unlock(&r->ur_slock);
		return NULL;
	}
	r->ur_nsring++;
	rb_mutex_unlock(&r->ur_slock);
	if ((sr = calloc(1, sizeof(*sr))) != NULL &&
	    io_uring_queue_init(UR_SENTRIES, &sr->sr_ring, 0) == 0) {
		sr->sr_fixed = io_uring_register_files(&sr->sr_ring,
		    &r->ur_fd, 1) == 0;
		return sr;
	}
	free(sr);
	rb_mutex_lock(&r->ur_slock);
	r->ur_nsring--;
	rb_mutex_unlock(&r->ur_slock);
	return NULL;
}

static void
sring_put(struct rb_uring *r, struct ur_sring *sr, bool broken)
{
	if (RB_UNLIKELY(broken)) {
		/* An SQE may be stuck in it: never lend it again. */
		io_uring_queue_exit(&sr->sr_ring);
		free(sr);
		rb_mutex_lock(&r->ur_slock);
		r->ur_nsring--;
		rb_mutex_unlock(&r->ur_slock);
		return;
	}
	rb_mutex_lock(&r->ur_slock);
	sr->sr_next = r->ur_sfree;
	r->ur_sfree = sr;
	rb_mutex_unlock(&r->ur_slock);
}

/*
 * One result for io: 0 when io is done (error in *errorp), 1 when the
 * rest must be submitted again.  Short transfers go on; -EAGAIN and
 * -EINTR are retried; res < 0 becomes a positive errno here.
 */
static int
account(struct rb_io *io, int res, int *errorp)
{
	*errorp = 0;
	if (RB_UNLIKELY(res < 0)) {
		if (res == -EAGAIN || res == -EINTR)
			return 1;
		*errorp = -res;
		return 0;
	}
	if (io->io_op == RUMPBLK_B_FLUSH) {
		*errorp = rb_host_seam_sync_error();
		return 0;
	}
	if (io->io_op == RUMPBLK_B_READ)
		VALGRIND_MAKE_MEM_DEFINED((char *)io->io_data + io->io_moved,
		    (size_t)res);
	io->io_moved += (size_t)res;
	if (RB_UNLIKELY(io->io_moved < io->io_len)) {
		if (res > 0)
			return 1;
		/* End of file under a read is an error, not zeroes (as in
		 * rb_host_pread); a write that moves nothing is a full disk. */
		*errorp = io->io_op == RUMPBLK_B_READ ? EIO : ENOSPC;
		return 0;
	}
	if (io->io_op == RUMPBLK_B_WRITE && rb_io_wants_sync(io))
		*errorp = rb_host_seam_sync_error();
	return 0;
}

/* A synchronous buffer on a private ring, in the caller's thread. */
static void
sync_run(struct rb_uring *r, struct ur_sring *sr, struct rb_io *io)
{
	struct io_uring *ring = &sr->sr_ring;
	struct io_uring_cqe *cqe;
	bool broken = false;
	int e, res, error;

	io->io_moved = 0;
	do {
		prep_sqe(io_uring_get_sqe(ring), io, r->ur_fd, sr->sr_fixed,
		    r->ur_bk->bk_off);
		while ((e = io_uring_submit_and_wait(ring, 1)) == -EINTR ||
		    e == -EAGAIN)
			;
		if (e < 0) {
			error = -e;
			broken = true;
			break;
		}
		while ((e = io_uring_wait_cqe(ring, &cqe)) == -EINTR)
			;
		if (e < 0) {
			error = -e;
			broken = true;
			break;
		}
		res = cqe->res;
		io_uring_cqe_seen(ring, cqe);
	} while (account(io, res, &error));
	sring_put(r, sr, broken);
	rb_io_complete(io, error, io->io_moved);
}

/*
 * Start a read, write or flush of io on the engine's descriptor, at the
 * unit's host offset.  An asynchronous buffer never blocks on I/O and
 * completes on the reaper; a synchronous one completes before this
 * returns (on a private ring).  Sync writes carry RWF_DSYNC.
 */
void
rb_uring_submit(struct rb_uring *r, struct rb_io *io)
{
	struct ur_sring *sr;
	struct rb_unit *u;
	unsigned ep;

	if ((io->io_flags & RUMPBLK_B_ASYNC) == 0) {
		if (RB_LIKELY((sr = sring_get(r)) != NULL)) {
			sync_run(r, sr, io);
			return;
		}
		if (reaping == r) {
			/* The reaper cannot wait for itself. */
			rb_fdio_run(r->ur_fd, r->ur_bk, io);
			return;
		}
	}
	/*
	 * Once queued, io may complete on the reaper and release the last
	 * reference on its unit, and a deregister may then free the ring
	 * under us (TSan saw it: the trylock below on a destroyed mutex).
	 * Our own reference keeps the unit, and so r, until we are done.
	 */
	u = io->io_unit;
	ep = io->io_epoch & 1;
	rb_unit_ref(u, ep);
	io->io_moved = 0;
	requeue(r, io);
	/*
	 * io may be complete and reused from here on.  A cached read
	 * completed inside the enter: reap it here, if no one else is,
	 * rather than wait for the reaper to wake (two context switches).
	 */
	if (reaping == NULL && pthread_mutex_trylock(&r->ur_cqlock) == 0) {
		reaping = r;
		reap_locked(r);
		reaping = NULL;
		rb_mutex_unlock(&r->ur_cqlock);
	}
	rb_unit_rele(u, ep);
}

/* One CQE of the shared ring: complete io, or queue its next step. */
static void
reap_one(struct rb_uring *r, struct rb_io *io, int res)
{
	int error;

	if (account(io, res, &error))
		requeue(r, io);
	else
		rb_io_complete(io, error, io->io_moved);
}

/*
 * Reap what the CQ holds: complete it, move the backlog into the room it
 * freed, enter the kernel once.  With ur_cqlock held, reaping == r.
 * False if there was nothing to reap.
 */
static bool
reap_locked(struct rb_uring *r)
{
	struct io_uring_cqe *cqe;
	struct { void *data; int res; } batch[UR_BATCH];
	struct rb_io *io;
	unsigned head, n, i;

	rb_assert_held(&r->ur_cqlock);
	n = 0;
	io_uring_for_each_cqe(&r->ur_ring, head, cqe) {
		batch[n].data = io_uring_cqe_get_data(cqe);
		batch[n].res = cqe->res;
		if (++n == UR_BATCH)
			break;
	}
	if (n == 0)
		return false;
	io_uring_cq_advance(&r->ur_ring, n);

	/* Also the happens-before for TSan (head comment). */
	rb_mutex_lock(&r->ur_lock);
	r->ur_inflight -= n;
	rb_mutex_unlock(&r->ur_lock);
	for (i = 0; i < n; i++) {
		if ((io = batch[i].data) == NULL) {
			r->ur_stop = true;	/* the NOP of destroy */
			continue;
		}
		reap_one(r, io, batch[i].res);
	}

	rb_mutex_lock(&r->ur_lock);
	while ((io = r->ur_backlog) != NULL && prep_locked(r, io)) {
		if ((r->ur_backlog = io->io_next) == NULL)
			r->ur_backlog_tailp = &r->ur_backlog;
		io->io_next = NULL;
	}
	submit_locked(r);
	rb_mutex_unlock(&r->ur_lock);
	return true;
}

static void *
reaper(void *arg)
{
	struct rb_uring *r = arg;
	struct timespec ms = { 0, 1000000 };
	bool stop = false, pending = false;
	uint64_t ev;
	int error;

	(void)pthread_setname_np(pthread_self(), "rb-reaper");
	while (!stop) {
		if (RB_UNLIKELY(pending)) {
			/* An enter failed for want of resources: retry it
			 * soon rather than sleep on a ring with nothing in
			 * flight. */
			nanosleep(&ms, NULL);
		} else if (r->ur_efd != -1) {
			/* Sleep until a CQE was posted since the last read;
			 * one posted while we reaped makes this return at
			 * once, so none is missed. */
			if (read(r->ur_efd, &ev, sizeof(ev)) == -1 &&
			    errno != EINTR && errno != EAGAIN)
				abort();	/* a broken eventfd */
		} else {
			/* No eventfd: sleep in the ring (head comment). */
			error = io_uring_enter((unsigned)r->ur_ring.ring_fd, 0,
			    1, IORING_ENTER_GETEVENTS, NULL);
			if (error < 0 && error != -EINTR && error != -EAGAIN &&
			    error != -EBUSY)
				abort();	/* a broken ring */
		}
		rb_mutex_lock(&r->ur_cqlock);
		reaping = r;
		while (reap_locked(r))
			;
		reaping = NULL;
		stop = r->ur_stop;
		rb_mutex_unlock(&r->ur_cqlock);
		rb_mutex_lock(&r->ur_lock);
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
rb_uring_create(int fd, const struct rb_backing *bk, struct rb_uring **rp)
{
	struct rb_uring *r;
	int error;

	if (RB_UNLIKELY(rb_host_seam != NULL) &&
	    rb_host_seam->hs_uring_error != 0)
		return rb_host_seam->hs_uring_error;
	if ((r = calloc(1, sizeof(*r))) == NULL)
		return ENOMEM;
	if ((error = pthread_mutex_init(&r->ur_cqlock, NULL)) != 0)
		goto free_r;
	if ((error = pthread_mutex_init(&r->ur_lock, NULL)) != 0)
		goto destroy_cqlock;
	pthread_mutex_init(&r->ur_slock, NULL);
	r->ur_nsync = UR_NSYNC;
	if (RB_UNLIKELY(rb_host_seam != NULL) &&
	    rb_host_seam->hs_uring_nsync != 0)
		r->ur_nsync = rb_host_seam->hs_uring_nsync;
	if ((error = io_uring_queue_init(UR_ENTRIES, &r->ur_ring, 0)) < 0) {
		error = -error;
		goto destroy_lock;
	}
	r->ur_max = r->ur_ring.cq.ring_entries;
	r->ur_backlog_tailp = &r->ur_backlog;
	r->ur_fd = fd;
	r->ur_bk = bk;
	r->ur_eager = (fcntl(fd, F_GETFL) & O_DIRECT) != 0;
	r->ur_efd = eventfd(0, EFD_CLOEXEC);
	if (r->ur_efd != -1 &&
	    io_uring_register_eventfd(&r->ur_ring, r->ur_efd) != 0) {
		close(r->ur_efd);
		r->ur_efd = -1;
	}
	/* A registered file spares a file table lookup per request. */
	r->ur_fixed = io_uring_register_files(&r->ur_ring, &fd, 1) == 0;
	if ((error = pthread_create(&r->ur_reaper, NULL, reaper, r)) != 0)
		goto exit_ring;
	*rp = r;
	return 0;

exit_ring:
	io_uring_queue_exit(&r->ur_ring);
	if (r->ur_efd != -1)
		close(r->ur_efd);
destroy_lock:
	pthread_mutex_destroy(&r->ur_slock);
	pthread_mutex_destroy(&r->ur_lock);
destroy_cqlock:
	pthread_mutex_destroy(&r->ur_cqlock);
free_r:
	free(r);
	return error;
}

/* Stop the reaper and free the ring.  Nothing may be in flight. */
void
rb_uring_destroy(struct rb_uring *r)
{
	struct io_uring_sqe *sqe;
	struct ur_sring *sr;

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
	if (r->ur_efd != -1)
		close(r->ur_efd);
	while ((sr = r->ur_sfree) != NULL) {
		r->ur_sfree = sr->sr_next;
		io_uring_queue_exit(&sr->sr_ring);
		free(sr);
	}
	pthread_mutex_destroy(&r->ur_slock);
	pthread_mutex_destroy(&r->ur_lock);
	pthread_mutex_destroy(&r->ur_cqlock);
	free(r);
}

/* 2. The uring backend. */

struct uring {
	struct rb_stage	ub_stage;
	struct rb_uring	*ub_eng;	/* ( */
	struct rb_fdio	ub_f;		/* ( the host file and descriptor */
	struct rb_pool	*ub_pool;	/* ( the instance's */
};

static void
uring_submit(struct rb_stage *st, struct rb_io *io)
{
	struct uring *ub = (struct uring *)st;

	switch (io->io_op) {
	case RUMPBLK_B_FLUSH:
		/* A character device has nothing to sync, and its fsync
		 * fails (EINVAL): rb_host_datasync knows. */
		if (ub->ub_f.fdio_bk->bk_ftype == RUMPBLK_FT_CHR)
			break;
		/* FALLTHROUGH */
	case RUMPBLK_B_READ:
	case RUMPBLK_B_WRITE:
		rb_uring_submit(ub->ub_eng, io);
		return;
	}
	/*
	 * Trim, zero and extent queries are fallocate and lseek calls on
	 * the same descriptor, so they are coherent with the ring's I/O;
	 * an asynchronous one goes to the worker pool as pio's does.
	 */
	rb_pool_run(ub->ub_pool, io, rb_fdio_work, &ub->ub_f);
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
	.destroy = uring_destroy,
};

int
rb_uring_open(struct rb_unit *u, struct rb_stage **stp)
{
	struct uring *ub;
	int error;

	if ((ub = calloc(1, sizeof(*ub))) == NULL)
		return ENOMEM;
	if ((error = rb_uring_create(u->u_host->hf_fd, &u->u_host->hf_bk,
	    &ub->ub_eng)) != 0) {
		free(ub);
		return error;
	}
	rb_stage_init(&ub->ub_stage, &uring_ops, u, RB_RANK_BACKEND);
	ub->ub_f.fdio_fd = u->u_host->hf_fd;
	ub->ub_f.fdio_bk = &u->u_host->hf_bk;
	ub->ub_pool = rb_instance_pool(u->u_rb);
	*stp = &ub->ub_stage;
	return 0;
}
