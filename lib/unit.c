/*
 * The device table: register, deregister, open, close, ioctl, unitinfo.
 *
 * Registration and deregistration are rare and serialised by rb_lock;
 * the I/O path never takes it.  Strategy finds a unit by index and takes
 * a reference in its thread's u_refs counter (see internal.h);
 * deregistration marks the unit DRAIN, waits on a futex until the
 * references are gone, then tears the stack down.  Unit slots are never
 * freed before the instance, so a late strategy call on a detached unit
 * reads a valid slot and gets ENXIO.
 */
#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <linux/membarrier.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "internal.h"
#include "host/host.h"

static void
futex_wait(_Atomic uint32_t *w, uint32_t val)
{
	syscall(SYS_futex, w, FUTEX_WAIT_PRIVATE, val, NULL, NULL, 0);
}

static void
futex_wake(_Atomic uint32_t *w)
{
	syscall(SYS_futex, w, FUTEX_WAKE_PRIVATE, INT_MAX, NULL, NULL, 0);
}

/*
 * Asymmetric fences.  A request's reference must be visible to a drainer
 * before the request looks at u_state (and a release before it looks
 * again): a full fence on both sides, which on the request path is a
 * locked instruction twice per request, a few percent of a 4 KiB copy.
 * With membarrier(2)'s private expedited command the drainer, which is
 * rare, pays instead: after setting DRAIN it makes every running thread
 * of the process execute a full barrier, so a request's plain store and
 * load need only stay in program order.  A thread that owns its counter
 * shard then counts with a relaxed load and store; the shared shard, and
 * every thread where membarrier is missing (old kernels, valgrind), keep
 * the sequentially consistent read-modify-write.  Decided once, before
 * the first unit goes LIVE, so every holder sees the same answer.
 */
static pthread_once_t membarrier_once = PTHREAD_ONCE_INIT;
static bool membarrier_ok;

static void
membarrier_init(void)
{
	long cmds = syscall(SYS_membarrier, MEMBARRIER_CMD_QUERY, 0, 0);

	if (cmds > 0 && (cmds & MEMBARRIER_CMD_PRIVATE_EXPEDITED) != 0 &&
	    syscall(SYS_membarrier,
	    MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED, 0, 0) == 0)
		membarrier_ok = true;
}

/* Add d to this thread's reference counter of u, ordered for a drainer. */
static inline void
refs_add(struct rb_unit *u, uint64_t d)
{
	unsigned sh = rb_shard_index();
	_Atomic uint64_t *r = &u->u_refs[sh].r_n;

	if (RB_LIKELY(membarrier_ok && sh != RB_SHARD_SHARED)) {
		/* Release: the drainer's acquiring sum then also orders
		 * this request's use of the unit before the teardown. */
		atomic_store_explicit(r, atomic_load_explicit(r,
		    memory_order_relaxed) + d, memory_order_release);
		atomic_signal_fence(memory_order_seq_cst);
	} else
		atomic_fetch_add(r, d);
}

struct rb_unit *
rb_unit_hold(struct rumpblk *rb, int unit)
{
	struct rb_unit *u;
	uint32_t s;

	if (unit < 0 || (unsigned)unit >= rb->rb_cfg.max_units)
		return NULL;
	u = &rb->rb_units[unit];
	/* A slot that was never LIVE has no u_refs yet. */
	if (RB_UNLIKELY((atomic_load_explicit(&u->u_state,
	    memory_order_acquire) & RB_U_LIVE) == 0))
		return NULL;
	refs_add(u, 1);
	s = atomic_load_explicit(&u->u_state, memory_order_acquire);
	if (RB_LIKELY((s & (RB_U_LIVE | RB_U_DRAIN)) == RB_U_LIVE))
		return u;
	rb_unit_rele(u);
	return NULL;
}

void
rb_unit_ref(struct rb_unit *u)
{
	refs_add(u, 1);
}

void
rb_unit_rele(struct rb_unit *u)
{
	refs_add(u, (uint64_t)-1);
	/* A draining unit: wake the drainer to sum again.  After the
	 * decrement only u_drainseq and the futex name the unit. */
	if (RB_UNLIKELY((atomic_load_explicit(&u->u_state,
	    memory_order_acquire) & RB_U_DRAIN) != 0)) {
		atomic_fetch_add(&u->u_drainseq, 1);
		futex_wake(&u->u_drainseq);
	}
}

/* Requests in flight on a unit (see internal.h). */
static uint64_t
refs_sum(struct rb_unit *u)
{
	uint64_t n = 0;
	unsigned i;

	for (i = 0; i < RB_NSHARDS; i++)
		n += atomic_load_explicit(&u->u_refs[i].r_n,
		    memory_order_acquire);
	return n;
}

int
rb_unit_sync(struct rb_unit *u)
{
	struct rb_stage *top = atomic_load_explicit(&u->u_top,
	    memory_order_acquire);

	return top->st_ops->sync(top);
}

static void
stage_destroy(struct rb_stage *st)
{
	struct rb_stage *lower;

	while (st != NULL) {
		lower = st->st_lower;
		if (st->st_ops->destroy != NULL)
			st->st_ops->destroy(st);
		else
			free(st);
		st = lower;
	}
}

/*
 * Wait until no request holds a reference on a unit that is DRAINing.
 * Called with no lock held: a request's completion (b_iodone) may call
 * back into the library, and a lock held here would hang both.
 */
static void
unit_wait_drained(struct rb_unit *u)
{
	uint32_t seq;

	/* DRAIN is set: every request from now on sees it, and every
	 * reference taken before is visible below (see membarrier_init). */
	if (membarrier_ok)
		syscall(SYS_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0, 0);
	for (;;) {
		seq = atomic_load(&u->u_drainseq);
		if (refs_sum(u) == 0)
			break;
		futex_wait(&u->u_drainseq, seq);
	}
}

/*
 * Make a drained unit's data durable and tear it down.  Called with
 * rb_lock held, or from destroy where no one else may call in.
 */
static int
unit_teardown(struct rb_unit *u)
{
	struct rumpblk *rb = u->u_rb;
	struct rumpblk_stats st;
	int error, e;

	error = rb_unit_sync(u);
	stage_destroy(atomic_load(&u->u_top));
	atomic_store(&u->u_top, NULL);
	u->u_backend = NULL;
	if (u->u_fd != -1) {
		e = rb_host_close(u->u_fd);
		if (error == 0)
			error = e;
		u->u_fd = -1;
	}
	/* Fold the counters into the instance's, then start afresh. */
	rb_stats_snapshot(u->u_counters, &st);
	rb_stats_accumulate(&rb->rb_retired, &st);
	memset(u->u_counters, 0, sizeof(*u->u_counters));
	free(u->u_path);
	u->u_path = NULL;
	memset(&u->u_label, 0, sizeof(u->u_label));
	atomic_fetch_and(&u->u_state, ~(RB_U_LIVE | RB_U_DRAIN));
	return error;
}

/*
 * Drain a live unit, make its data durable, tear it down.  For destroy,
 * where no one else may call in.
 */
int
rb_unit_detach(struct rb_unit *u)
{
	atomic_fetch_or(&u->u_state, RB_U_DRAIN);
	unit_wait_drained(u);
	return unit_teardown(u);
}

static bool
same_file(const struct rb_unit *u, const char *path,
    const struct rb_fileinfo *fi)
{
	if (fi != NULL)
		return u->u_dev == fi->fi_dev && u->u_ino == fi->fi_ino;
	return strcmp(u->u_path, path) == 0;
}

int
rumpblk_register(struct rumpblk *rb, const char *path, uint64_t offset,
    uint64_t size, int *unitp)
{
	struct rb_fileinfo fi;
	struct rb_stage *top;
	struct rb_unit *u, *slot = NULL;
	uint64_t usize;
	unsigned i;
	int error;

	if (path == NULL || unitp == NULL)
		return EINVAL;
	pthread_once(&membarrier_once, membarrier_init);
	/* Devices report their size only when open: fileinfo opens them. */
	if ((error = rb_host_fileinfo(path, &fi)) != 0)
		return error;

	if (size == RUMPBLK_SIZENOTSET) {
		if (fi.fi_ftype == RUMPBLK_FT_CHR && fi.fi_size == 0)
			return EOPNOTSUPP;
		/* The seed asserted offset < flen; we refuse instead. */
		if (offset >= fi.fi_size)
			return EINVAL;
		usize = fi.fi_size - offset;
	} else {
		/*
		 * An unsizable character device takes the caller's word;
		 * everything else must fit.
		 */
		if (!(fi.fi_ftype == RUMPBLK_FT_CHR && fi.fi_size == 0) &&
		    (offset > fi.fi_size || size > fi.fi_size - offset))
			return EINVAL;
		if (offset + size < offset)
			return EINVAL;
		usize = size;
	}

	rb_mutex_lock(&rb->rb_lock);
	for (i = 0; i < rb->rb_cfg.max_units; i++) {
		u = &rb->rb_units[i];
		if ((atomic_load(&u->u_state) & RB_U_LIVE) == 0) {
			if (slot == NULL)
				slot = u;
			continue;
		}
		/* Being deregistered: neither free nor usable. */
		if ((atomic_load(&u->u_state) & RB_U_DRAIN) != 0)
			continue;
		if (same_file(u, path, &fi) && u->u_hostoffset == offset &&
		    u->u_size == usize) {
			*unitp = (int)i;
			rb_mutex_unlock(&rb->rb_lock);
			return 0;
		}
	}
	if (slot == NULL) {
		error = EBUSY;
		goto unlock;
	}
	u = slot;
	if (u->u_counters == NULL) {
		u->u_counters = aligned_alloc(RB_CACHELINE,
		    sizeof(*u->u_counters));
		if (u->u_counters == NULL) {
			error = ENOMEM;
			goto unlock;
		}
		memset(u->u_counters, 0, sizeof(*u->u_counters));
	}
	if (u->u_refs == NULL) {
		u->u_refs = aligned_alloc(RB_CACHELINE,
		    RB_NSHARDS * sizeof(*u->u_refs));
		if (u->u_refs == NULL) {
			error = ENOMEM;
			goto unlock;
		}
		memset(u->u_refs, 0, RB_NSHARDS * sizeof(*u->u_refs));
	}
	if ((u->u_path = strdup(path)) == NULL) {
		error = ENOMEM;
		goto unlock;
	}
	u->u_dev = fi.fi_dev;
	u->u_ino = fi.fi_ino;
	u->u_ftype = fi.fi_ftype;
	u->u_hostoffset = offset;
	u->u_size = usize;
	u->u_hostsize = fi.fi_size;
	u->u_size_given = size != RUMPBLK_SIZENOTSET;
	u->u_sectshift = rb->rb_cfg.sectshift;
	u->u_winsize = 0;
	u->u_wincount = 0;
	rb_label_make(&u->u_label, usize, u->u_sectshift);

	if ((error = rb_host_open(path, 0, &u->u_fd, &u->u_mode)) != 0)
		goto free_path;
	if ((error = rb_backend_open(u, rb->rb_cfg.backend, &top)) != 0)
		goto close_fd;
	u->u_backend = top;
	if ((error = rb_fault_unit_attach(u, &top)) != 0) {
		stage_destroy(top);
		u->u_backend = NULL;
		goto close_fd;
	}
	atomic_store_explicit(&u->u_top, top, memory_order_release);
	atomic_fetch_or_explicit(&u->u_state, RB_U_LIVE,
	    memory_order_release);
	*unitp = u->u_index;
	rb_mutex_unlock(&rb->rb_lock);
	return 0;

close_fd:
	rb_host_close(u->u_fd);
	u->u_fd = -1;
free_path:
	free(u->u_path);
	u->u_path = NULL;
	memset(&u->u_label, 0, sizeof(u->u_label));
unlock:
	rb_mutex_unlock(&rb->rb_lock);
	return error;
}

/* Units this call is detaching: max_units is at most RB_MAXUNITS. */
#define MINE_WORDS	(RB_MAXUNITS / 64)

int
rumpblk_deregister(struct rumpblk *rb, const char *path)
{
	struct rb_fileinfo fi, *fip;
	struct rb_unit *u;
	uint64_t mine[MINE_WORDS];
	unsigned i;
	uint32_t s;
	int error = 0, e;
	bool found = false;

	if (path == NULL)
		return EINVAL;
	/* Match by identity when the file is still there, else by name. */
	fip = rb_host_fileinfo(path, &fi) == 0 ? &fi : NULL;
	memset(mine, 0, sizeof(mine));

	/*
	 * Three steps.  Under rb_lock, mark our units DRAIN, so that no new
	 * request, registration or other deregister uses them.  Without the
	 * lock, wait for their requests: a completion still running may call
	 * into the library (rumpblk_stats, rumpblk_register) and take
	 * rb_lock.  Under rb_lock again, tear them down; until then they
	 * stay LIVE, so their slots are not reused and the instance's
	 * counters still see them.
	 */
	rb_mutex_lock(&rb->rb_lock);
	for (i = 0; i < rb->rb_cfg.max_units; i++) {
		u = &rb->rb_units[i];
		s = atomic_load(&u->u_state);
		if ((s & RB_U_LIVE) == 0 || (s & RB_U_DRAIN) != 0 ||
		    !same_file(u, path, fip))
			continue;
		atomic_fetch_or(&u->u_state, RB_U_DRAIN);
		mine[i / 64] |= 1ull << (i % 64);
		found = true;
	}
	rb_mutex_unlock(&rb->rb_lock);
	if (!found)
		return ENOENT;

	for (i = 0; i < rb->rb_cfg.max_units; i++)
		if (mine[i / 64] & (1ull << (i % 64)))
			unit_wait_drained(&rb->rb_units[i]);

	rb_mutex_lock(&rb->rb_lock);
	for (i = 0; i < rb->rb_cfg.max_units; i++) {
		if ((mine[i / 64] & (1ull << (i % 64))) == 0)
			continue;
		e = unit_teardown(&rb->rb_units[i]);
		if (error == 0)
			error = e;
	}
	rb_mutex_unlock(&rb->rb_lock);
	return error;
}

int
rumpblk_open(struct rumpblk *rb, int unit, int flags)
{
	struct rb_unit *u;
	int error = 0;

	if ((u = rb_unit_hold(rb, unit)) == NULL)
		return ENXIO;
	if (((flags & (RUMPBLK_FREAD | RUMPBLK_FWRITE)) & ~u->u_mode) != 0)
		error = EACCES;
	rb_unit_rele(u);
	return error;
}

int
rumpblk_close(struct rumpblk *rb, int unit, int flags)
{
	struct rb_unit *u;

	(void)flags;
	if ((u = rb_unit_hold(rb, unit)) == NULL)
		return ENXIO;
	rb_unit_rele(u);
	return 0;
}

int
rumpblk_unitinfo(struct rumpblk *rb, int unit, struct rumpblk_unitinfo *ui)
{
	struct rb_unit *u;

	if ((u = rb_unit_hold(rb, unit)) == NULL)
		return ENXIO;
	memset(ui, 0, sizeof(*ui));
	ui->ui_path = u->u_path;
	ui->ui_ftype = u->u_ftype;
	ui->ui_offset = u->u_hostoffset;
	ui->ui_size = u->u_size;
	ui->ui_hostsize = u->u_hostsize;
	ui->ui_secsize = 1u << u->u_sectshift;
	ui->ui_mode = u->u_mode;
	ui->ui_backend = u->u_backend_kind;
	ui->ui_winsize = u->u_winsize;
	ui->ui_wincount = u->u_wincount;
	rb_unit_rele(u);
	return 0;
}

int
rumpblk_ioctl(struct rumpblk *rb, int unit, unsigned long cmd, void *arg)
{
	struct rumpblk_partinfo *pi;
	struct rb_unit *u;
	uint64_t t0;
	int error = 0;

	if ((u = rb_unit_hold(rb, unit)) == NULL)
		return ENXIO;
	if (arg == NULL && cmd != RUMPBLK_DIOCCACHESYNC) {
		error = cmd == RUMPBLK_DIOCGDINFO || cmd == RUMPBLK_DIOCGPART ||
		    cmd == RUMPBLK_DIOCGMEDIASIZE ||
		    cmd == RUMPBLK_DIOCGSECTORSIZE ? EFAULT : ENOTTY;
		goto out;
	}
	switch (cmd) {
	case RUMPBLK_DIOCGDINFO:
		*(struct rumpblk_disklabel *)arg = u->u_label;
		break;
	case RUMPBLK_DIOCGPART:
		pi = arg;
		pi->disklab = &u->u_label;
		pi->part = &u->u_label.d_partitions[0];
		break;
	case RUMPBLK_DIOCCACHESYNC:
		/* The seed's "synced enough along the write path" was not
		 * true of asynchronous mmap writes; really sync. */
		t0 = rb_now_ns();
		error = rb_unit_sync(u);
		rb_stat_add(u->u_counters, RB_STAT(flushes), 1);
		rb_stat_latency(u->u_counters, RUMPBLK_B_FLUSH,
		    rb_now_ns() - t0);
		if (error != 0)
			rb_stat_add(u->u_counters, RB_STAT(io_errors), 1);
		break;
	case RUMPBLK_DIOCGMEDIASIZE:
		*(uint64_t *)arg = u->u_size;
		break;
	case RUMPBLK_DIOCGSECTORSIZE:
		*(unsigned *)arg = 1u << u->u_sectshift;
		break;
	default:
		error = ENOTTY;
		break;
	}
out:
	rb_unit_rele(u);
	return error;
}

int
rumpblk_unit_reset(struct rumpblk *rb, int unit)
{
	struct rb_unit *u;

	if ((u = rb_unit_hold(rb, unit)) == NULL)
		return ENXIO;
	rb_unit_rele(u);
	rb_event_raise(rb, unit, RUMPBLK_EVENT_RESET);
	return 0;
}
