/*
 * The device table: register, deregister, open, close, ioctl, unitinfo,
 * and the references requests hold on units (drain, grace periods).
 *
 * A unit is opened from a backing spec (internal.h, "Backings"): the
 * backing's kind opens it, says whether two name the same thing, and
 * makes the bottom stage; the layers every unit of the instance gets
 * (rb_layers_attach) go on top.  Nothing here knows what a host file is.
 *
 * Registration and deregistration are rare and serialised by rb_lock;
 * the I/O path never takes it.  Strategy finds a unit by index and takes
 * a reference in its thread's u_refs counter of the current epoch (see
 * internal.h); deregistration marks the unit DRAIN, waits on a futex
 * until the references of both epochs are gone, then tears the stack
 * down.  A grace period (rb_unit_quiesce, for taking a layer off a live
 * unit) flips the epoch twice and waits each time for the references of
 * the epoch it left.  Unit slots are never freed before the instance, so
 * a late strategy call on a detached unit reads a valid slot and gets
 * ENXIO.
 */
#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <linux/membarrier.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
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

/* Add d to this thread's reference counter of u of epoch parity ep,
 * ordered for a drainer. */
static inline void
refs_add(struct rb_unit *u, unsigned ep, uint64_t d)
{
	unsigned sh = rb_shard_index();
	_Atomic uint64_t *r = RB_REF(u, ep, sh);

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
rb_unit_hold(struct rumpblk *rb, int unit, unsigned *epp)
{
	struct rb_unit *u;
	uint32_t s;
	unsigned ep;

	if (unit < 0 || (unsigned)unit >= rb->rb_cfg.max_units)
		return NULL;
	u = &rb->rb_units[unit];
	/* A slot that was never LIVE has no u_refs yet. */
	if (RB_UNLIKELY((atomic_load_explicit(&u->u_state,
	    memory_order_acquire) & RB_U_LIVE) == 0))
		return NULL;
	/* The epoch before the count: see rb_unit_quiesce. */
	ep = atomic_load_explicit(&u->u_epoch, memory_order_acquire) & 1;
	refs_add(u, ep, 1);
	s = atomic_load_explicit(&u->u_state, memory_order_acquire);
	if (RB_LIKELY((s & (RB_U_LIVE | RB_U_DRAIN)) == RB_U_LIVE)) {
		*epp = ep;
		return u;
	}
	rb_unit_rele(u, ep);
	return NULL;
}

void
rb_unit_ref(struct rb_unit *u, unsigned ep)
{
	refs_add(u, ep, 1);
}

/* A draining unit: wake the drainer to sum again.  After the caller's
 * decrement only u_drainseq and the futex name the unit. */
static inline void
drain_kick(struct rb_unit *u)
{
	if (RB_UNLIKELY((atomic_load_explicit(&u->u_state,
	    memory_order_acquire) & RB_U_DRAIN) != 0)) {
		atomic_fetch_add(&u->u_drainseq, 1);
		futex_wake(&u->u_drainseq);
	}
}

void
rb_unit_rele(struct rb_unit *u, unsigned ep)
{
	refs_add(u, ep, (uint64_t)-1);
	drain_kick(u);
}

void
rb_unit_lend(struct rb_unit *u, unsigned ep)
{
	/* Counted as a loan before the reference goes: the drainer sees
	 * one or the other. */
	atomic_fetch_add(&u->u_loans, 1);
	rb_unit_rele(u, ep);
}

void
rb_unit_unlend(struct rb_unit *u)
{
	atomic_fetch_sub(&u->u_loans, 1);
	drain_kick(u);
}

/* References of epoch parity ep (see internal.h). */
static uint64_t
refs_sum(struct rb_unit *u, unsigned ep)
{
	uint64_t n = 0;
	unsigned i;

	for (i = 0; i < RB_NSHARDS; i++)
		n += atomic_load_explicit(RB_REF(u, ep, i),
		    memory_order_acquire);
	return n;
}

/*
 * A grace period.  A request reads the epoch, counts itself in that
 * epoch's counter, and only then reads the stack; the caller has just
 * changed the stack.  Flip the epoch; after the fence (membarrier, or
 * the sequentially consistent flip), a request counted in neither the
 * old epoch's sum nor later sees the new stack.  Waiting for the old
 * epoch's count to reach zero waits for every request that could see the
 * old stack, but for one that read the epoch before an earlier flip and
 * counted itself late: the second flip and wait catch that one too (as
 * in SRCU).  New requests count in the other epoch meanwhile, so each
 * wait ends once the requests already in flight complete.  The wait
 * polls: grace periods are rare, and a futex wake would put a check on
 * every release.
 */
void
rb_unit_quiesce(struct rb_unit *u)
{
	struct timespec ts = { 0, 20000 };
	unsigned old;

	/* Two at once would flip each other's epochs back: one at a time. */
	rb_mutex_lock(&u->u_rb->rb_gracelock);
	for (int pass = 0; pass < 2; pass++) {
		old = atomic_fetch_add(&u->u_epoch, 1) & 1;
		atomic_thread_fence(memory_order_seq_cst);
		if (membarrier_ok)
			syscall(SYS_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED,
			    0, 0);
		while (refs_sum(u, old) != 0) {
			nanosleep(&ts, NULL);
			if (ts.tv_nsec < 1000000)
				ts.tv_nsec *= 2;
		}
	}
	rb_mutex_unlock(&u->u_rb->rb_gracelock);
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
		if (refs_sum(u, 0) + refs_sum(u, 1) == 0 &&
		    atomic_load(&u->u_loans) == 0)
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
	int error, e;

	/* The library's own flush: through every layer (a cache destages),
	 * selected by no fault rule. */
	error = rb_stack_io(u, RUMPBLK_B_FLUSH, RB_IO_NOFAULT, 0, 0, NULL,
	    NULL);
	rb_stack_destroy(u);
	e = u->u_backing->bk_ops->bo_close(u->u_backing);
	if (error == 0)
		error = e;
	u->u_backing = NULL;
	u->u_host = NULL;
	/* Fold the counters into the instance's, then start afresh. */
	rb_counters_retire(rb, u->u_counters);
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

void
rumpblk_unit_opts_init(struct rumpblk_unit_opts *o)
{
	memset(o, 0, sizeof(*o));
	o->uo_size = RUMPBLK_SIZENOTSET;
}

/* The kind of backing a spec names: an overlay, or a host file. */
static const struct rb_backing_ops *
backing_kind(const char *spec)
{
	if (strncmp(spec, "overlay:", 8) == 0)
		return &rb_overlay_ops;
	if (rb_nbd_spec(spec))
		return &rb_nbd_ops;
	if (rb_rbd_spec(spec))
		return &rb_rbd_ops;
	return &rb_hostfile_ops;
}

/* Fresh counters and references for a slot's first unit. */
static int
slot_prepare(struct rb_unit *u)
{
	if (u->u_counters == NULL) {
		u->u_counters = aligned_alloc(RB_CACHELINE,
		    sizeof(*u->u_counters));
		if (u->u_counters == NULL)
			return ENOMEM;
		memset(u->u_counters, 0, sizeof(*u->u_counters));
	}
	if (u->u_refs == NULL) {
		struct rb_ref *r = aligned_alloc(RB_CACHELINE,
		    2 * RB_NSHARDS * sizeof(*r));

		if (r == NULL)
			return ENOMEM;
		memset(r, 0, 2 * RB_NSHARDS * sizeof(*r));
		/* Release: rb_unit_ever_live reads it without rb_lock. */
		__atomic_store_n(&u->u_refs, r, __ATOMIC_RELEASE);
	}
	return 0;
}

int
rumpblk_register_spec(struct rumpblk *rb, const char *spec,
    const struct rumpblk_unit_opts *uopts, int *unitp)
{
	struct rumpblk_unit_opts opts;
	const struct rb_backing_ops *kind;
	struct rb_backing *bk;
	struct rb_stage *bottom;
	struct rb_unit *u, *slot = NULL;
	enum rumpblk_backend backend;
	unsigned i;
	int error;

	if (spec == NULL || unitp == NULL)
		return EINVAL;
	if (uopts != NULL)
		opts = *uopts;
	else
		rumpblk_unit_opts_init(&opts);
	backend = opts.uo_backend_set ? opts.uo_backend : rb->rb_cfg.backend;
	if (rumpblk_backend_name(backend) == NULL)
		return EINVAL;
	pthread_once(&membarrier_once, membarrier_init);
	/* Opened outside rb_lock: a device's size needs an open. */
	kind = backing_kind(spec);
	if ((error = kind->bo_open(rb, spec, &opts, &bk)) != 0)
		return error;

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
		if (u->u_backing->bk_ops == kind && kind->bo_same(u->u_backing,
		    bk)) {
			*unitp = (int)i;
			rb_mutex_unlock(&rb->rb_lock);
			kind->bo_close(bk);
			return 0;
		}
	}
	if (slot == NULL) {
		error = EBUSY;
		goto unlock;
	}
	u = slot;
	if ((error = slot_prepare(u)) != 0)
		goto unlock;
	u->u_backing = bk;
	u->u_host = kind == &rb_hostfile_ops ? (struct rb_hostfile *)bk : NULL;
	u->u_size = bk->bk_size;
	u->u_mode = bk->bk_mode;
	u->u_sectshift = rb->rb_cfg.sectshift;
	u->u_winsize = 0;
	u->u_wincount = 0;
	rb_label_make(&u->u_label, u->u_size, u->u_sectshift);
	if ((error = kind->bo_stage(u, backend, &bottom)) != 0)
		goto clear;
	rb_stack_push(u, bottom);
	if ((error = rb_layers_attach(u)) != 0) {
		rb_stack_destroy(u);
		goto clear;
	}
	atomic_fetch_or_explicit(&u->u_state, RB_U_LIVE,
	    memory_order_release);
	*unitp = u->u_index;
	rb_mutex_unlock(&rb->rb_lock);
	return 0;

clear:
	u->u_backing = NULL;
	u->u_host = NULL;
	memset(&u->u_label, 0, sizeof(u->u_label));
unlock:
	rb_mutex_unlock(&rb->rb_lock);
	kind->bo_close(bk);
	return error;
}

int
rumpblk_register(struct rumpblk *rb, const char *path, uint64_t offset,
    uint64_t size, int *unitp)
{
	struct rumpblk_unit_opts opts;
	char *spec;
	int error;

	if (path == NULL || unitp == NULL)
		return EINVAL;
	rumpblk_unit_opts_init(&opts);
	opts.uo_offset = offset;
	opts.uo_size = size;
	/* A path is a path, whatever it looks like. */
	if (asprintf(&spec, "file:%s", path) < 0)
		return ENOMEM;
	error = rumpblk_register_spec(rb, spec, &opts, unitp);
	free(spec);
	return error;
}

/* Units this call is detaching: max_units is at most RB_MAXUNITS. */
#define MINE_WORDS	(RB_MAXUNITS / 64)

/*
 * Detach the units of mine[]: three steps.  The caller marked them DRAIN
 * under rb_lock, so that no new request, registration or other
 * deregister uses them.  Without the lock, wait for their requests: a
 * completion still running may call into the library (rumpblk_stats,
 * rumpblk_register) and take rb_lock.  Under rb_lock again, tear them
 * down; until then they stay LIVE, so their slots are not reused and the
 * instance's counters still see them.
 */
static int
detach_marked(struct rumpblk *rb, const uint64_t *mine)
{
	unsigned i;
	int error = 0, e;

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

/* Mark a live unit DRAIN for detach_marked; false if it is not live. */
static bool
mark_locked(struct rb_unit *u, uint64_t *mine)
{
	uint32_t s = atomic_load(&u->u_state);

	rb_assert_held(&u->u_rb->rb_lock);
	if ((s & RB_U_LIVE) == 0 || (s & RB_U_DRAIN) != 0)
		return false;
	atomic_fetch_or(&u->u_state, RB_U_DRAIN);
	mine[u->u_index / 64] |= 1ull << (u->u_index % 64);
	return true;
}

int
rumpblk_deregister(struct rumpblk *rb, const char *path)
{
	struct rb_bkey key;
	struct rb_unit *u;
	uint64_t mine[MINE_WORDS];
	unsigned i;
	bool found = false;

	if (path == NULL)
		return EINVAL;
	/* Match by identity when the file is still there, else by name. */
	rb_bkey_make(path, &key);
	memset(mine, 0, sizeof(mine));
	rb_mutex_lock(&rb->rb_lock);
	for (i = 0; i < rb->rb_cfg.max_units; i++) {
		u = &rb->rb_units[i];
		if ((atomic_load(&u->u_state) & RB_U_LIVE) == 0 ||
		    !u->u_backing->bk_ops->bo_named(u->u_backing, &key))
			continue;
		if (mark_locked(u, mine))
			found = true;
	}
	rb_mutex_unlock(&rb->rb_lock);
	return found ? detach_marked(rb, mine) : ENOENT;
}

int
rumpblk_deregister_unit(struct rumpblk *rb, int unit)
{
	uint64_t mine[MINE_WORDS];
	bool found;

	if (unit < 0 || (unsigned)unit >= rb->rb_cfg.max_units)
		return ENXIO;
	memset(mine, 0, sizeof(mine));
	rb_mutex_lock(&rb->rb_lock);
	found = mark_locked(&rb->rb_units[unit], mine);
	rb_mutex_unlock(&rb->rb_lock);
	return found ? detach_marked(rb, mine) : ENXIO;
}

int
rumpblk_open(struct rumpblk *rb, int unit, int flags)
{
	struct rb_unit *u;
	unsigned ep;
	int error = 0;

	if ((u = rb_unit_hold(rb, unit, &ep)) == NULL)
		return ENXIO;
	if (((flags & (RUMPBLK_FREAD | RUMPBLK_FWRITE)) & ~u->u_mode) != 0)
		error = EACCES;
	rb_unit_rele(u, ep);
	return error;
}

int
rumpblk_close(struct rumpblk *rb, int unit, int flags)
{
	struct rb_unit *u;
	unsigned ep;

	(void)flags;
	if ((u = rb_unit_hold(rb, unit, &ep)) == NULL)
		return ENXIO;
	rb_unit_rele(u, ep);
	return 0;
}

int
rumpblk_unitinfo(struct rumpblk *rb, int unit, struct rumpblk_unitinfo *ui)
{
	struct rb_unit *u;
	unsigned ep;

	if ((u = rb_unit_hold(rb, unit, &ep)) == NULL)
		return ENXIO;
	memset(ui, 0, sizeof(*ui));
	ui->ui_path = u->u_backing->bk_spec;
	ui->ui_ftype = u->u_backing->bk_ftype;
	ui->ui_offset = u->u_backing->bk_off;
	ui->ui_size = u->u_size;
	ui->ui_hostsize = u->u_backing->bk_total;
	ui->ui_secsize = 1u << u->u_sectshift;
	ui->ui_mode = u->u_mode;
	ui->ui_backend = u->u_backend_kind;
	ui->ui_winsize = u->u_winsize;
	ui->ui_wincount = u->u_wincount;
	rb_unit_rele(u, ep);
	return 0;
}

int
rumpblk_backing_status(struct rumpblk *rb, int unit, char *buf, size_t len)
{
	const struct rb_backing *bk;
	struct rb_unit *u;
	unsigned ep;

	if ((u = rb_unit_hold(rb, unit, &ep)) == NULL)
		return ENXIO;
	bk = u->u_backing;
	if (len > 0) {
		if (bk->bk_ops->bo_describe != NULL)
			(void)bk->bk_ops->bo_describe(bk, buf, len);
		else
			snprintf(buf, len, "%s: %s backing", bk->bk_spec,
			    bk->bk_ops->bo_name);
	}
	rb_unit_rele(u, ep);
	return 0;
}

int
rumpblk_ioctl(struct rumpblk *rb, int unit, unsigned long cmd, void *arg)
{
	struct rumpblk_partinfo *pi;
	struct rb_unit *u;
	uint64_t t0;
	unsigned ep;
	int error = 0;

	if ((u = rb_unit_hold(rb, unit, &ep)) == NULL)
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
		    rb_now_ns() - t0, rb_conn_mine(rb));
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
	rb_unit_rele(u, ep);
	return error;
}

int
rumpblk_unit_reset(struct rumpblk *rb, int unit)
{
	struct rb_unit *u;
	unsigned ep;

	if ((u = rb_unit_hold(rb, unit, &ep)) == NULL)
		return ENXIO;
	/* No reference held across the stack lock: a layer's removal
	 * waits for references with it held. */
	rb_unit_rele(u, ep);
	rb_stack_reset(u);
	rb_event_raise(rb, unit, RUMPBLK_EVENT_RESET);
	return 0;
}
