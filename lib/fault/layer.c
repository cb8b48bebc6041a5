/*
 * The fault layer: the stage (RB_RANK_FAULT, at the top of the stack)
 * that takes every request of a unit to the rule engine once the
 * instance has used it (a rule armed, a replay loaded,
 * rumpblk_fault_enable), and acts on the firings decided (decide.c).
 *
 * Contents:
 *   1. generations: the per-unit count behind every decision
 *   2. acting on a firing: our request below, delays on the timer
 *   3. the layer: submit, destroy, push, find
 *
 * The layer stays until the unit is detached.  An instance that never
 * arms a rule never has it, and a unit with it pays, for a request that
 * no armed rule could select, one indirect call and a few relaxed loads:
 * before the rules, a request checks a summary of the armed rules
 * (the union of their ops, the end of the furthest range; fe_selops,
 * fe_selend), so a read under write-only rules goes straight down
 * (bench/inproc.sh's "rule that never fires" row).  A request that
 * rules select, where they only count matches (no generation to count,
 * no replay: fe_path), counts them inline and is decided only on a
 * match number that may fire (fault_submit): a rule that selects every
 * read costs a read one atomic add, not a decision (the mmap nth row of
 * bench/inproc.sh, issue #10).  Our prefetch op
 * starts the cache miss of a selected request's generation slot, then
 * hands the prefetch on to the stage below (the mmap backend's).
 *
 * A firing needs a request of our own below (its completion is ours to
 * act on): a frame of the layer's pool (lib/stack.c), with the timer
 * entry for a delay embedded, so acting allocates nothing per request,
 * but for the copy a corrupt write stores (the caller's data must not
 * change) and bit lists longer than FAULT_INLINE_BITS.
 *
 * Generations: generation counts the earlier requests with the same op
 * and first sector on the unit, in a per-unit map.  A lookup in that map
 * is a cache miss on a big working set (about 15% of a 4 KiB page-cache
 * read), so a request is counted only if some armed rule could select a
 * request with its (unit, op, first sector) whatever the length
 * (rb_fault_rules_select), or, in a replay, if the log has a
 * firing with that key.  The answer is the same for every request with
 * the key, so with rules armed from the start the generation of every
 * request that can fire is its count since registration, and a replay,
 * which counts the keys of its log, sees the same numbers.  A rule armed
 * later counts from its arming, unless rumpblk_fault_enable() was
 * called: from then on every request is counted (the CLI does this with
 * --control), which keeps the logs of rules armed later replayable.
 *
 * And a generation is counted only where it can be seen: in a decision
 * or a firing's details that read the request's hash (a p= rule, the
 * bits a corrupt rule flips, ...; rb_fault_rule_hashes), in a logged
 * firing, in a replay.  Rules that count matches (nth, every, after)
 * with fixed details, and no log, decide every request as of
 * generation 0 and touch no map: the same firings, and nothing that
 * could tell.  A log set after rules were armed sees generations counted
 * from then on (the CLI sets it first).
 */
#include <errno.h>
#include <string.h>

#include "fault.h"

/* 1. The layer's state; generations are lib/genmap.c's. */

struct fault_layer {
	struct rb_stage	fl_stage;
	struct fault_engine *fl_fe;	/* ( */
	struct rb_frames fl_frames;	/* struct fault_req, one a firing */
	struct rb_genmap fl_gen;	/* the unit's generations */
};

/* 2. Acting on a firing. */

/*
 * A request with a firing: our own request to the stage below, and what
 * to do when it completes.  A frame of the layer's pool (no allocation
 * per request once the pool has grown to the firings in flight).
 */
struct fault_req {
	struct rb_io	fq_io;		/* to the stage below */
	struct rb_io	*fq_orig;	/* the request we were given */
	struct fault_layer *fq_fl;
	struct fault_fire fq_fire;	/* the data firing, if fq_data */
	bool		fq_data;
	uint64_t	fq_delay_ns;
	int		fq_error;
	size_t		fq_moved;
	void		*fq_copy;	/* corrupt write: the flipped data */
	struct rb_timer	fq_tm;		/* delay */
	uint64_t	fq_t0;		/* when it fired (rb_now_ns) */
	unsigned	fq_classes;	/* 1u << class of each firing */
};

static void
req_free(struct fault_req *fq)
{
	rb_fault_fire_release(&fq->fq_fire);
	free(fq->fq_copy);
	rb_frame_put(&fq->fq_fl->fl_frames, fq);
}

static void
flip_bits(void *data, size_t moved, const struct fault_fire *fi)
{
	const uint64_t *bits = rb_fire_bits(fi);
	unsigned char *p = data;

	for (unsigned i = 0; i < fi->fi_nbits; i++)
		if (bits[i] / 8 < moved)
			p[bits[i] / 8] ^= (unsigned char)(1u << (bits[i] % 8));
}

/* Complete the original request and free ours. */
static void
req_complete(struct fault_req *fq)
{
	struct rb_io *orig = fq->fq_orig;
	int error = fq->fq_error;
	size_t moved = fq->fq_moved;

	/* The firing classes' histograms (lib/stats.c): every firing is
	 * timed, from the firing to here, a delay included. */
	rb_stat_fault_latency(orig->io_unit->u_counters, fq->fq_classes,
	    rb_now_ns() - fq->fq_t0);
	/* Once the original completes, the unit may go away: free first. */
	req_free(fq);
	rb_io_complete(orig, error, moved);
}

static void
delay_done(struct rb_timer *tm)
{
	req_complete((struct fault_req *)(void *)((char *)tm -
	    offsetof(struct fault_req, fq_tm)));
}

static void
req_finish(struct fault_req *fq, int error, size_t moved)
{
	fq->fq_error = error;
	fq->fq_moved = moved;
	if (fq->fq_delay_ns != 0)
		rb_timer_add(fq->fq_fl->fl_stage.st_unit->u_rb, &fq->fq_tm,
		    fq->fq_delay_ns, delay_done);
	else
		req_complete(fq);
}

/* The stage below completed our request. */
static void
lower_done(struct rb_io *io)
{
	struct fault_req *fq = (struct fault_req *)(void *)((char *)io -
	    offsetof(struct fault_req, fq_io));
	struct fault_fire *fi = &fq->fq_fire;
	struct rb_io *orig = fq->fq_orig;
	uint64_t a, b;
	size_t moved = io->io_moved;
	int error = io->io_error;

	if (!fq->fq_data) {
		req_finish(fq, error, moved);
		return;
	}
	switch (fi->fi_class) {
	case RUMPBLK_FAULT_CORRUPT:
		if (orig->io_op == RUMPBLK_B_READ)
			flip_bits(orig->io_data, moved, fi);
		break;
	case RUMPBLK_FAULT_STALE:
		/* The snapshot's bytes over what the medium returned. */
		a = orig->io_off > fi->fi_snap_off ? orig->io_off :
		    fi->fi_snap_off;
		b = orig->io_off + moved;
		if (b > fi->fi_snap_off + fi->fi_snap_len)
			b = fi->fi_snap_off + fi->fi_snap_len;
		if (a < b)
			memcpy((char *)orig->io_data + (a - orig->io_off),
			    fi->fi_snap->sn_data + (a - fi->fi_snap_off),
			    b - a);
		break;
	case RUMPBLK_FAULT_MISDIRECT:
		if (error == 0)
			moved = orig->io_len;
		break;
	case RUMPBLK_FAULT_TORN:
		if (error == 0) {
			error = fi->fi_errno;
			moved = error != 0 ? fi->fi_torn : orig->io_len;
		}
		break;
	}
	req_finish(fq, error, moved);
}

static void
req_submit_lower(struct fault_layer *fl, struct fault_req *fq)
{
	fq->fq_io.io_done = lower_done;
	fq->fq_io.io_ctx = NULL;
	fq->fq_io.io_next = NULL;
	fq->fq_io.io_work = NULL;
	fq->fq_io.io_error = 0;
	fq->fq_io.io_moved = 0;
	rb_stage_pass(&fl->fl_stage, &fq->fq_io);
}

static void
log_fire(struct fault_engine *fe, const struct fault_fire *fi)
{
	rb_mutex_lock(&fe->fe_loglock);
	if (fe->fe_log != NULL) {
		rb_fault_log_write(fe->fe_log, fi);
		fflush(fe->fe_log);
	}
	rb_mutex_unlock(&fe->fe_loglock);
}

/*
 * A power-cut firing: the unit's cache cuts the power, with this
 * request in flight at the cut (it completes with EIO once the front
 * ends have dropped its connection), and the cut is logged with what the
 * model did.  A unit without a cache (registered after the rule was
 * armed) fails the request.
 */
static void
act_powercut(struct fault_layer *fl, struct rb_io *io, struct decision *d)
{
	struct rb_unit *u = io->io_unit;
	struct fault_fire *fi = &d->d_fire[d->d_data];
	struct rumpblk_powercut pc;
	struct cache *c;
	unsigned i;

	for (i = 0; i < d->d_n; i++)
		if ((int)i != d->d_data)
			rb_fault_fire_release(&d->d_fire[i]);
	/* Counted, not timed: the cut completes the request. */
	rb_stat_fault_latency(u->u_counters, 1u << fi->fi_class, UINT64_MAX);
	if ((c = rb_cache_of(u)) == NULL) {
		log_fire(fl->fl_fe, fi);
		rb_io_complete(io, EIO, 0);
		return;
	}
	memset(&pc, 0, sizeof(pc));
	pc.pc_model = (enum rumpblk_pcmodel)fi->fi_model;
	pc.pc_seed = fi->fi_pcseed;
	pc.pc_atom = fi->fi_atom;
	if (rb_cache_cut(c, io, &pc) != EALREADY)
		rb_fault_log_cut(u->u_rb, u->u_index, fi, &pc);
}

static void
act(struct fault_layer *fl, struct rb_io *io, struct decision *d)
{
	struct fault_req *fq;
	struct fault_fire *fi;
	unsigned i;

	if (d->d_data >= 0 &&
	    d->d_fire[d->d_data].fi_class == RUMPBLK_FAULT_POWERCUT) {
		act_powercut(fl, io, d);
		return;
	}
	for (i = 0; i < d->d_n; i++)
		log_fire(fl->fl_fe, &d->d_fire[i]);
	if ((fq = rb_frame_get(&fl->fl_frames)) == NULL) {
		for (i = 0; i < d->d_n; i++)
			rb_fault_fire_release(&d->d_fire[i]);
		rb_io_complete(io, ENOMEM, 0);
		return;
	}
	fq->fq_orig = io;
	fq->fq_fl = fl;
	fq->fq_delay_ns = d->d_delay_ns;
	fq->fq_io = *io;
	fq->fq_io.io_flags &= ~RUMPBLK_B_LOAN;	/* we see the data */
	fq->fq_t0 = rb_now_ns();
	fq->fq_classes = 0;
	for (i = 0; i < d->d_n; i++)
		fq->fq_classes |= 1u << d->d_fire[i].fi_class;
	for (i = 0; i < d->d_n; i++) {
		if ((int)i == d->d_data) {
			fq->fq_fire = d->d_fire[i];
			fq->fq_data = true;
		} else {
			rb_fault_fire_release(&d->d_fire[i]);
		}
	}
	if (!fq->fq_data) {
		req_submit_lower(fl, fq);
		return;
	}
	fi = &fq->fq_fire;
	switch (fi->fi_class) {
	case RUMPBLK_FAULT_ERROR:
		req_finish(fq, fi->fi_errno, 0);
		return;
	case RUMPBLK_FAULT_LOST:
		req_finish(fq, 0, io->io_len);
		return;
	case RUMPBLK_FAULT_CORRUPT:
		/* The caller's data must not change: a corrupt write stores
		 * a flipped copy, the one allocation a firing makes. */
		if (io->io_op == RUMPBLK_B_WRITE) {
			if ((fq->fq_copy = malloc(io->io_len)) == NULL) {
				req_finish(fq, ENOMEM, 0);
				return;
			}
			memcpy(fq->fq_copy, io->io_data, io->io_len);
			flip_bits(fq->fq_copy, io->io_len, fi);
			fq->fq_io.io_data = fq->fq_copy;
		}
		break;
	case RUMPBLK_FAULT_MISDIRECT:
		if (fi->fi_target < 0) {
			req_finish(fq, 0, io->io_len);
			return;
		}
		fq->fq_io.io_off = (uint64_t)fi->fi_target;
		break;
	case RUMPBLK_FAULT_TORN:
		if (fi->fi_torn == 0) {
			req_finish(fq, fi->fi_errno,
			    fi->fi_errno != 0 ? 0 : io->io_len);
			return;
		}
		fq->fq_io.io_len = fi->fi_torn;
		break;
	}
	req_submit_lower(fl, fq);
}

/* 3. The layer. */

static const struct rb_ops fault_ops;

/* Count a request's firings and act on them, or pass it down. */
static void
fault_act_or_pass(struct fault_layer *fl, struct rb_io *io,
    struct decision *d)
{
	struct rb_counters *cn = io->io_unit->u_counters;
	unsigned i;

	/*
	 * Count the firings now, while the request holds its unit: once
	 * rumpblk_fault_del or _clear returns (after a grace period) the
	 * class counters of the rules it removed are final.
	 */
	for (i = 0; i < d->d_n; i++) {
		rb_stat_add(cn, RB_STAT(faults_injected), 1);
		rb_stat_add(cn, RB_STAT(faults_class[0]) +
		    (size_t)d->d_fire[i].fi_class, 1);
	}
	if (RB_LIKELY(d->d_n == 0)) {
		rb_stage_pass(&fl->fl_stage, io);
		return;
	}
	act(fl, io, d);
}

static void
decision_init(struct decision *d)
{
	d->d_n = 0;
	d->d_data = -1;
	d->d_delay_ns = 0;
}

/*
 * The counting path went as far as rule r, whose match number m may
 * fire: decide from there (decide.c), out of line so that the path that
 * only counts stays short.
 */
static void __attribute__((noinline))
fault_decide_from(struct fault_layer *fl, struct rb_io *io, unsigned opbit,
    struct fault_rule *r, uint64_t m)
{
	struct decision d;

	decision_init(&d);
	rb_fault_decide_from(fl->fl_fe, io, opbit, 0, &d, r, m);
	fault_act_or_pass(fl, io, &d);
}

/*
 * Every path but the counting one (fe_path has FE_SLOW): a replay,
 * generations counted, the library's own requests.
 */
static void __attribute__((noinline))
fault_submit_slow(struct fault_layer *fl, struct rb_io *io, unsigned opbit)
{
	struct fault_engine *fe = fl->fl_fe;
	struct rb_stage *st = &fl->fl_stage;
	struct decision d;
	uint64_t gen, sector;
	const struct replay_set *rs;
	bool countall;

	/* Extent queries and the library's own requests: never faulted. */
	if (opbit == 0 || (io->io_flags & RB_IO_NOFAULT) != 0) {
		rb_stage_pass(st, io);
		return;
	}
	sector = io->io_off >> io->io_unit->u_sectshift;
	countall = atomic_load_explicit(&fe->fe_countall,
	    memory_order_relaxed);
	/* Acquire: the replay's entries are as its loader stored them. */
	rs = atomic_load_explicit(&fe->fe_rs, memory_order_acquire);
	if (atomic_load_explicit(&fe->fe_nrules, memory_order_relaxed) == 0 &&
	    rs == NULL) {
		if (countall)
			rb_genmap_next(&fl->fl_gen, opbit, sector);
		rb_stage_pass(st, io);
		return;
	}
	/* As in fault_submit: what no armed rule could select. */
	if (!countall && rs == NULL && ((atomic_load_explicit(&fe->fe_selops,
	    memory_order_relaxed) & opbit) == 0 || (opbit != FOP_FLUSH &&
	    (sector << io->io_unit->u_sectshift) >= atomic_load_explicit(
	    &fe->fe_selend, memory_order_relaxed)))) {
		rb_stage_pass(st, io);
		return;
	}
	decision_init(&d);
	/*
	 * Count (and decide) only requests that some rule could select,
	 * unless told to count everything (rumpblk_fault_enable): see
	 * "Generations" above.
	 */
	if (countall || (rs != NULL ? rb_fault_replay_selects(rs, io,
	    sector) : rb_fault_rules_select(fe, io, opbit, sector))) {
		gen = rb_genmap_next(&fl->fl_gen, opbit, sector);
		if (rs != NULL)
			rb_fault_decide_replay(rs, io, gen, &d);
		else
			rb_fault_decide_rules(fe, io, opbit, gen, &d);
	}
	fault_act_or_pass(fl, io, &d);
}

/*
 * A request through the layer.  The path most requests take is short:
 * one load says whether rules only count matches (no replay, no
 * generation to count: fe_path); then a request that no armed rule
 * could select (another op, or past every rule's range) goes straight
 * down, neither counted nor decided (the summary is conservative: the
 * rules would say no to it too, and a rule armed while this runs is as
 * if armed just after), and one that some rule selects counts its
 * matches, and is decided only where a match number may fire
 * (rb_fault_trigger), from that rule on.  Everything else is
 * fault_submit_slow's.
 */
static void
fault_submit(struct rb_stage *st, struct rb_io *io)
{
	struct fault_layer *fl = (struct fault_layer *)st;
	struct fault_engine *fe = fl->fl_fe;
	unsigned opbit = rb_fault_opbit(io->io_op), path;
	struct fault_rule *r;
	uint64_t m;

	path = atomic_load_explicit(&fe->fe_path, memory_order_relaxed);
	if (RB_UNLIKELY((path & FE_SLOW) != 0 ||
	    (io->io_flags & RB_IO_NOFAULT) != 0)) {
		fault_submit_slow(fl, io, opbit);
		return;
	}
	if ((path & opbit) == 0 || (opbit != FOP_FLUSH && io->io_off >=
	    atomic_load_explicit(&fe->fe_selend, memory_order_relaxed))) {
		rb_stage_pass(st, io);
		return;
	}
	for (r = atomic_load_explicit(&fe->fe_rules, memory_order_acquire);
	    r != NULL; r = atomic_load_explicit(&r->fr_next,
	    memory_order_acquire)) {
		if (!rb_fault_rule_matches(r, io, opbit))
			continue;
		m = atomic_fetch_add_explicit(&r->fr_matches, 1,
		    memory_order_relaxed) + 1;
		if (RB_UNLIKELY(rb_fault_trigger(r, m))) {
			fault_decide_from(fl, io, opbit, r, m);
			return;
		}
	}
	rb_stage_pass(st, io);
}

/*
 * Our prefetch: the map slot of a request whose generation will be
 * counted (an armed rule could select it and a generation can be seen;
 * the lock-free summary says), then the stage below's.
 */
static void
fault_prefetch(struct rb_stage *st, int op, uint64_t off)
{
	struct fault_layer *fl = (struct fault_layer *)st;
	struct fault_engine *fe = fl->fl_fe;
	unsigned opbit = rb_fault_opbit(op);

	/* Only on the slow path is a generation counted.  No replay here:
	 * a replay and rules are never armed together, so with a replay
	 * fe_selops is 0. */
	if ((atomic_load_explicit(&fe->fe_path, memory_order_relaxed) &
	    FE_SLOW) != 0 && (atomic_load_explicit(&fe->fe_countall,
	    memory_order_relaxed) || ((atomic_load_explicit(&fe->fe_selops,
	    memory_order_relaxed) & opbit) != 0 && atomic_load_explicit(
	    &fe->fe_needgen, memory_order_relaxed))))
		rb_genmap_prefetch(&fl->fl_gen, opbit,
		    off >> st->st_unit->u_sectshift);
	rb_stage_prefetch_below(st, op, off);
}

static void
fault_destroy(struct rb_stage *st)
{
	struct fault_layer *fl = (struct fault_layer *)st;

	rb_genmap_fini(&fl->fl_gen);
	rb_frames_fini(&fl->fl_frames);
	free(fl);
}

static const struct rb_ops fault_ops = {
	.name = "fault",
	.submit = fault_submit,
	.destroy = fault_destroy,
	.prefetch = fault_prefetch,
	.lends_through = true,		/* a firing rule takes a frame */
};

struct rb_stage *
rb_fault_unit_layer(struct rb_unit *u)
{
	return rb_stack_find(u, &fault_ops);
}

int
rb_fault_layer_push(struct fault_engine *fe, struct rb_unit *u)
{
	struct fault_layer *fl;

	if ((fl = aligned_alloc(RB_CACHELINE, sizeof(*fl))) == NULL)
		return ENOMEM;
	memset(fl, 0, sizeof(*fl));
	rb_genmap_init(&fl->fl_gen);
	rb_frames_init(&fl->fl_frames, sizeof(struct fault_req));
	rb_stage_init(&fl->fl_stage, &fault_ops, u, RB_RANK_FAULT);
	fl->fl_fe = fe;
	rb_stack_push(u, &fl->fl_stage);
	return 0;
}
