/*
 * The fault rule engine: a layer of the stack (DESIGN.md §2) that decides,
 * for every request, whether an armed rule fires, and acts on it.
 *
 * Contents:
 *   1. the engine and its locks
 *   2. request generations (per-unit map)
 *   3. decisions (rules, replay)
 *   4. acting on a firing; the delay timer
 *   5. the layer: submit, sync, destroy; inserting it
 *   6. the public API: add, del, clear, list, seed, enable, log, replay
 *
 * The layer goes on top of a unit's stack only once the instance has
 * used the engine (a rule armed, a replay loaded, rumpblk_fault_enable),
 * by an atomic swap of u_top; a request already below keeps going to the
 * stage it was given.  The layer then stays until the unit is detached
 * (when no request is in flight), so no stage is ever freed under a
 * request.  An instance that never arms a rule never has the layer.
 *
 * Rules are read on every request and written rarely, so they sit behind
 * a "big-reader" lock: one mutex per counter shard (RB_NSHARDS, each on
 * its own cache line); a request locks the one of its thread, arming or
 * disarming locks them all.  A request therefore never bounces a line
 * with another thread, and a rule is never freed while a request looks
 * at it.  A decision copies out everything its firing needs (struct
 * fault_fire), and the lock is dropped before any I/O.  Before the lock,
 * a request checks a summary of the armed rules (the union of their ops,
 * the end of the furthest range; fe_selops, fe_selend): one that no rule
 * could select, say a read under write-only rules, goes straight down
 * without the lock (bench/inproc.sh's "rule that never fires" row).
 *
 * Determinism: probabilistic decisions, and the details of a firing
 * (errno, bits, target, cut), are a pure function of (seed, rule id,
 * unit, op, first sector, length, generation) through splitmix64's
 * mixer.  nth, every, after and count count matches in the order the
 * engine sees them.
 *
 * Generations: generation counts the earlier requests with the same op
 * and first sector on the unit, in a per-unit map.  A lookup in that map
 * is a cache miss on a big working set (about 15% of a 4 KiB page-cache
 * read), so a request is counted only if some armed rule could select a
 * request with its (unit, op, first sector) whatever the length
 * (rule_selects), or, in a replay, if the log has a firing with that
 * key.  The answer is the same for every request with the key, so with
 * rules armed from the start the generation of every request that can
 * fire is its count since registration, and a replay, which counts the
 * keys of its log, sees the same numbers.  A rule armed later counts
 * from its arming, unless rumpblk_fault_enable() was called: from then
 * on every request is counted (the CLI does this with --control), which
 * keeps the logs of rules armed later replayable.
 *
 * A request takes at most one data fault (every class but delay): the
 * first rule in arming order that fires.  Later rules still count the
 * request as a match but do not fire on it; delays add up.
 */
#include <errno.h>
#include <inttypes.h>
#include <string.h>
#include <time.h>

#include "fault.h"

/* 1. The engine. */

struct rd_shard {
	pthread_mutex_t	rs_lock;
} __attribute__((aligned(RB_CACHELINE)));

/* A replayed firing, and the rule standing for its id. */
struct replay_ent {
	struct fault_fire re_fire;
	struct fault_rule *re_rule;
};

struct fault_req;

/*
 * Locks: A = fe_armlock, R = every fe_rd shard (writers hold A and all
 * of R; readers hold one of R), L = fe_loglock, T = fe_tmlock,
 * a = atomic, ( = set at creation.
 * Lock order: rb_lock, fe_armlock, fe_rd[0..], fe_loglock; fe_tmlock is
 * a leaf.  No I/O is done with an R lock held.
 */
struct fault_engine {
	struct rd_shard	fe_rd[RB_NSHARDS];
	pthread_mutex_t	fe_armlock;
	struct rumpblk	*fe_rb;			/* ( */
	struct fault_rule *fe_rules;		/* A+R: arming order */
	_Atomic unsigned fe_nrules;		/* A+R, a: read unlocked */
	_Atomic unsigned fe_selops;		/* A+R, a: union of fr_ops */
	_Atomic uint64_t fe_selend;		/* A+R, a: largest fr_end */
	unsigned	fe_nextid;		/* A */
	uint64_t	fe_seed;		/* A */
	bool		fe_enabled;		/* rb_lock */
	struct replay_ent *fe_replay;		/* A+R: sorted by key */
	size_t		fe_nreplay;		/* A+R */
	_Atomic bool	fe_replaying;		/* A+R, a */
	_Atomic bool	fe_countall;		/* a: count every request */
	pthread_mutex_t	fe_loglock;
	FILE		*fe_log;		/* L */
	pthread_mutex_t	fe_tmlock;
	pthread_cond_t	fe_tmcond;		/* T: queue changed */
	struct fault_req *fe_tmq;		/* T: by deadline */
	bool		fe_tmstarted;		/* T */
	bool		fe_tmstop;		/* T */
	pthread_t	fe_tmthread;		/* T */
};

static void *timer_main(void *);

static void
rd_lock(struct fault_engine *fe, unsigned *idx)
{
	*idx = rb_shard_index();
	rb_mutex_lock(&fe->fe_rd[*idx].rs_lock);
}

static void
rd_unlock(struct fault_engine *fe, unsigned idx)
{
	rb_mutex_unlock(&fe->fe_rd[idx].rs_lock);
}

static void
wr_lock(struct fault_engine *fe)
{
	rb_assert_held(&fe->fe_armlock);
	for (unsigned i = 0; i < RB_NSHARDS; i++)
		rb_mutex_lock(&fe->fe_rd[i].rs_lock);
}

static void
wr_unlock(struct fault_engine *fe)
{
	for (unsigned i = RB_NSHARDS; i-- > 0;)
		rb_mutex_unlock(&fe->fe_rd[i].rs_lock);
}

static void
snap_rele(struct fault_snap *sn)
{
	if (sn != NULL && atomic_fetch_sub_explicit(&sn->sn_refs, 1,
	    memory_order_acq_rel) == 1)
		free(sn);
}

static void
rule_free(struct fault_rule *r)
{
	if (r == NULL)
		return;
	for (unsigned i = 0; i < r->fr_nsnap; i++)
		snap_rele(r->fr_snap[i]);
	free(r->fr_snap);
	free(r);
}

/* The engine of an instance, created on first use. */
static struct fault_engine *
engine_get_locked(struct rumpblk *rb)
{
	struct fault_engine *fe;
	uint32_t a, b;
	pthread_condattr_t ca;

	rb_assert_held(&rb->rb_lock);
	if (rb->rb_fault != NULL)
		return rb->rb_fault;
	if ((fe = calloc(1, sizeof(*fe))) == NULL)
		return NULL;
	for (unsigned i = 0; i < RB_NSHARDS; i++)
		pthread_mutex_init(&fe->fe_rd[i].rs_lock, NULL);
	pthread_mutex_init(&fe->fe_armlock, NULL);
	pthread_mutex_init(&fe->fe_loglock, NULL);
	pthread_mutex_init(&fe->fe_tmlock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&fe->fe_tmcond, &ca);
	pthread_condattr_destroy(&ca);
	fe->fe_rb = rb;
	if (rb->rb_cfg.fail_seed_set) {
		fe->fe_seed = rb->rb_cfg.fail_seed;
	} else {
		rb_random_seed(&a);
		rb_random_seed(&b);
		fe->fe_seed = (uint64_t)a << 32 | b;
	}
	rb->rb_fault = fe;
	return fe;
}

static struct fault_engine *
engine_get(struct rumpblk *rb)
{
	struct fault_engine *fe;

	rb_mutex_lock(&rb->rb_lock);
	fe = engine_get_locked(rb);
	rb_mutex_unlock(&rb->rb_lock);
	return fe;
}

/* 2. Generations. */

/*
 * Per unit, a map (op, first sector) -> requests seen, in GEN_STRIPES
 * open-addressing tables each behind its own mutex, so that threads
 * rarely meet.  Memory: 16 bytes per distinct (op, first sector) pair
 * seen, at most GEN_MAX pairs per unit (256 MiB); past that, new pairs
 * are not recorded and their requests all have generation 0.
 */
#define GEN_STRIPES	64
#define GEN_MAX		(1u << 24)

struct gen_ent {
	uint64_t	ge_key;		/* 0: empty */
	uint64_t	ge_count;
};

struct gen_stripe {
	pthread_mutex_t	gs_lock;
	struct gen_ent	*gs_tab;	/* gs_lock */
	size_t		gs_cap;		/* gs_lock: a power of two */
	size_t		gs_n;		/* gs_lock */
} __attribute__((aligned(RB_CACHELINE)));

struct fault_layer {
	struct rb_stage	fl_stage;
	struct fault_engine *fl_fe;	/* ( */
	struct gen_stripe fl_gen[GEN_STRIPES];
};

static bool
gen_grow_locked(struct gen_stripe *gs)
{
	size_t ncap = gs->gs_cap ? gs->gs_cap * 2 : 64, i, j;
	struct gen_ent *nt;
	uint64_t h;

	if ((nt = calloc(ncap, sizeof(*nt))) == NULL)
		return false;
	for (i = 0; i < gs->gs_cap; i++) {
		if (gs->gs_tab[i].ge_key == 0)
			continue;
		h = rb_fault_mix(gs->gs_tab[i].ge_key);
		for (j = (h >> 6) & (ncap - 1); nt[j].ge_key != 0;
		    j = (j + 1) & (ncap - 1))
			;
		nt[j] = gs->gs_tab[i];
	}
	free(gs->gs_tab);
	gs->gs_tab = nt;
	gs->gs_cap = ncap;
	return true;
}

/* The generation of this request; counts it. */
static uint64_t
gen_next(struct fault_layer *fl, unsigned opbit, uint64_t sector)
{
	uint64_t key = (sector << 5 | opbit), h = rb_fault_mix(key), g;
	struct gen_stripe *gs = &fl->fl_gen[h % GEN_STRIPES];
	size_t j;

	rb_mutex_lock(&gs->gs_lock);
	if (gs->gs_cap != 0) {
		for (j = (h >> 6) & (gs->gs_cap - 1); gs->gs_tab[j].ge_key != 0;
		    j = (j + 1) & (gs->gs_cap - 1))
			if (gs->gs_tab[j].ge_key == key) {
				g = gs->gs_tab[j].ge_count++;
				rb_mutex_unlock(&gs->gs_lock);
				return g;
			}
	}
	if (gs->gs_n >= GEN_MAX / GEN_STRIPES ||
	    ((gs->gs_n + 1) * 4 > gs->gs_cap * 3 && !gen_grow_locked(gs))) {
		rb_mutex_unlock(&gs->gs_lock);
		return 0;
	}
	for (j = (h >> 6) & (gs->gs_cap - 1); gs->gs_tab[j].ge_key != 0;
	    j = (j + 1) & (gs->gs_cap - 1))
		;
	gs->gs_tab[j].ge_key = key;
	gs->gs_tab[j].ge_count = 1;
	gs->gs_n++;
	rb_mutex_unlock(&gs->gs_lock);
	return 0;
}

/* 3. Decisions. */

#define MAXFIRE		4	/* firings acted on per request */

struct decision {
	struct fault_fire d_fire[MAXFIRE];
	unsigned	d_n;
	int		d_data;		/* index of the data firing, or -1 */
	uint64_t	d_delay_ns;
};

static inline uint64_t
salt(uint64_t h, uint64_t s)
{
	return rb_fault_mix(h ^ (s * 0xd6e8feb86659fd93ull));
}

static int
cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* The place a misdirected write lands, bytes; -1: nowhere. */
static int64_t
misdirect_target(const struct fault_rule *r, const struct rb_unit *u,
    uint64_t off, uint64_t len, uint64_t h)
{
	uint64_t ss = 1ull << u->u_sectshift, lo, end, npos, t;
	int64_t st;

	if (r->fr_has_shift) {
		if (__builtin_mul_overflow(r->fr_shift, (int64_t)ss, &st) ||
		    __builtin_add_overflow((int64_t)off, st, &st) || st < 0 ||
		    (uint64_t)st > u->u_size || len > u->u_size - (uint64_t)st)
			return -1;
		return st;
	}
	lo = r->fr_has_range ? (r->fr_start + ss - 1) & ~(ss - 1) : 0;
	end = r->fr_end < u->u_size ? r->fr_end : u->u_size;
	if (end < lo || end - lo < len)
		return -1;
	npos = (end - lo - len) / ss + 1;
	for (unsigned i = 0; i < 8; i++) {
		t = lo + salt(h, 10 + i) % npos * ss;
		if (t + len <= off || t >= off + len)
			return (int64_t)t;
	}
	/* Crowded range: just past or just before the request. */
	t = (off + len + ss - 1) & ~(ss - 1);
	if (t >= lo && t <= end - len)
		return (int64_t)t;
	if (off >= lo + len) {
		t = (off - len) & ~(ss - 1);
		if (t >= lo)
			return (int64_t)t;
	}
	return -1;
}

/* Fill in the details of rule r firing on this request. */
static int
fire_fill(struct fault_fire *fi, const struct fault_rule *r,
    const struct rb_io *io, uint64_t gen, uint64_t h)
{
	struct rb_unit *u = io->io_unit;
	uint64_t atom, natoms, nb, p, lo, hi;
	unsigned i, k, want;

	memset(fi, 0, sizeof(*fi));
	memcpy(fi->fi_rule, r->fr_id, sizeof(fi->fi_rule));
	fi->fi_class = r->fr_class;
	fi->fi_op = io->io_op;
	fi->fi_unit = u->u_index;
	fi->fi_off = io->io_off;
	fi->fi_len = io->io_len;
	fi->fi_gen = gen;
	fi->fi_target = -1;
	switch (r->fr_class) {
	case RUMPBLK_FAULT_ERROR:
		fi->fi_errno = r->fr_nerrno == 0 ? EIO :
		    r->fr_errno[salt(h, 1) % r->fr_nerrno];
		break;
	case RUMPBLK_FAULT_CORRUPT:
		/* Only in the part of the request inside the range. */
		lo = r->fr_start > io->io_off ? r->fr_start - io->io_off : 0;
		hi = r->fr_end - io->io_off < io->io_len ?
		    r->fr_end - io->io_off : io->io_len;
		nb = (hi - lo) * 8;
		want = r->fr_bits < nb ? r->fr_bits : (unsigned)nb;
		if ((fi->fi_bitpos = malloc(want * sizeof(uint64_t))) == NULL)
			return ENOMEM;
		/* want distinct positions; want is small next to nb. */
		for (i = 0; fi->fi_nbits < want; i++) {
			p = lo * 8 + salt(h, 100 + i) % nb;
			for (k = 0; k < fi->fi_nbits; k++)
				if (fi->fi_bitpos[k] == p)
					break;
			if (k == fi->fi_nbits)
				fi->fi_bitpos[fi->fi_nbits++] = p;
		}
		qsort(fi->fi_bitpos, fi->fi_nbits, sizeof(uint64_t), cmp_u64);
		break;
	case RUMPBLK_FAULT_MISDIRECT:
		fi->fi_target = misdirect_target(r, u, io->io_off, io->io_len,
		    h);
		break;
	case RUMPBLK_FAULT_STALE:
		if ((unsigned)u->u_index >= r->fr_nsnap ||
		    r->fr_snap[u->u_index] == NULL)
			return ENOENT;
		fi->fi_snap = r->fr_snap[u->u_index];
		atomic_fetch_add_explicit(&fi->fi_snap->sn_refs, 1,
		    memory_order_relaxed);
		fi->fi_snap_off = fi->fi_snap->sn_off;
		fi->fi_snap_len = fi->fi_snap->sn_len;
		break;
	case RUMPBLK_FAULT_TORN:
		atom = r->fr_atom ? r->fr_atom : 1ull << u->u_sectshift;
		natoms = io->io_len / atom;
		fi->fi_torn = natoms == 0 ? 0 : salt(h, 3) % natoms * atom;
		if (r->fr_nerrno > 0)
			fi->fi_errno = r->fr_errno[salt(h, 1) % r->fr_nerrno];
		break;
	case RUMPBLK_FAULT_DELAY:
		fi->fi_ms = r->fr_ms;
		fi->fi_delay_ns = r->fr_delay_ns;
		break;
	}
	return 0;
}

static bool
rule_matches(const struct fault_rule *r, const struct rb_io *io,
    unsigned opbit)
{
	if ((r->fr_ops & opbit) == 0)
		return false;
	if (r->fr_unit >= 0 && r->fr_unit != io->io_unit->u_index)
		return false;
	/* A flush has no range: it covers the whole unit. */
	if (opbit != FOP_FLUSH && (io->io_off >= r->fr_end ||
	    io->io_off + io->io_len <= r->fr_start))
		return false;
	if (r->fr_class == RUMPBLK_FAULT_STALE &&
	    ((unsigned)io->io_unit->u_index >= r->fr_nsnap ||
	    r->fr_snap[io->io_unit->u_index] == NULL))
		return false;
	return true;
}

/*
 * Could a request of this op starting in this sector match rule r, with
 * any length?  A pure function of (unit, op, first sector) and r, so
 * that every request with the same key gets the same answer.
 */
static bool
rule_selects(const struct fault_rule *r, const struct rb_unit *u,
    unsigned opbit, uint64_t sector)
{
	if ((r->fr_ops & opbit) == 0)
		return false;
	if (r->fr_unit >= 0 && r->fr_unit != u->u_index)
		return false;
	if (opbit != FOP_FLUSH && ((sector << u->u_sectshift) >= r->fr_end ||
	    r->fr_start >= u->u_size))
		return false;
	if (r->fr_class == RUMPBLK_FAULT_STALE &&
	    ((unsigned)u->u_index >= r->fr_nsnap ||
	    r->fr_snap[u->u_index] == NULL))
		return false;
	return true;
}

static bool
rules_select_locked(struct fault_engine *fe, const struct rb_io *io,
    unsigned opbit, uint64_t sector)
{
	for (struct fault_rule *r = fe->fe_rules; r != NULL; r = r->fr_next)
		if (rule_selects(r, io->io_unit, opbit, sector))
			return true;
	return false;
}

/* Take one firing under the rule's count cap; false if exhausted. */
static bool
take_firing(struct fault_rule *r)
{
	uint64_t f;

	if (r->fr_count == 0) {
		atomic_fetch_add_explicit(&r->fr_firings, 1,
		    memory_order_relaxed);
		return true;
	}
	f = atomic_load_explicit(&r->fr_firings, memory_order_relaxed);
	do {
		if (f >= r->fr_count)
			return false;
	} while (!atomic_compare_exchange_weak_explicit(&r->fr_firings, &f,
	    f + 1, memory_order_relaxed, memory_order_relaxed));
	return true;
}

static void
decide_add(struct decision *d, const struct fault_fire *fi)
{
	if (d->d_n == MAXFIRE) {
		free(fi->fi_bitpos);
		snap_rele(fi->fi_snap);
		return;
	}
	d->d_fire[d->d_n] = *fi;
	if (fi->fi_class == RUMPBLK_FAULT_DELAY)
		d->d_delay_ns += fi->fi_delay_ns;
	else
		d->d_data = (int)d->d_n;
	d->d_n++;
}

static void
decide_rules_locked(struct fault_engine *fe, struct rb_io *io,
    unsigned opbit, uint64_t gen, struct decision *d)
{
	struct rb_unit *u = io->io_unit;
	struct fault_fire fi;
	struct fault_rule *r;
	uint64_t kh, h, m, k;
	bool fire;

	/* The request's part of every key, once. */
	kh = rb_fault_mix((uint64_t)u->u_index ^
	    rb_fault_mix(opbit ^ rb_fault_mix((io->io_off >> u->u_sectshift) ^
	    rb_fault_mix(io->io_len ^ rb_fault_mix(gen)))));
	for (r = fe->fe_rules; r != NULL; r = r->fr_next) {
		if (!rule_matches(r, io, opbit))
			continue;
		m = atomic_fetch_add_explicit(&r->fr_matches, 1,
		    memory_order_relaxed) + 1;
		if (d->d_data >= 0 && r->fr_class != RUMPBLK_FAULT_DELAY)
			continue;
		if (m <= r->fr_after)
			continue;
		k = m - r->fr_after;
		h = rb_fault_mix(kh ^ rb_fault_mix(r->fr_seed ^ r->fr_idhash));
		switch (r->fr_trig) {
		case FT_P:
			fire = r->fr_always || h < r->fr_thresh;
			break;
		case FT_NTH:
			fire = k == r->fr_n;
			break;
		case FT_EVERY:
			fire = k % r->fr_n == 0;
			break;
		default:
			fire = true;
			break;
		}
		if (!fire || !take_firing(r))
			continue;
		if (fire_fill(&fi, r, io, gen, h) != 0)
			continue;	/* ENOMEM: not fired */
		decide_add(d, &fi);
	}
}

static int
replay_cmp(const struct fault_fire *a, const struct fault_fire *b)
{
#define C(f) if (a->f != b->f) return a->f < b->f ? -1 : 1
	C(fi_unit); C(fi_op); C(fi_off); C(fi_len); C(fi_gen);
#undef C
	return 0;
}

/* Does the log have a firing of this op starting in this sector? */
static bool
replay_selects_locked(struct fault_engine *fe, const struct rb_io *io,
    uint64_t sector)
{
	struct fault_fire key;
	struct replay_ent *e;
	size_t lo = 0, hi = fe->fe_nreplay, mid;
	unsigned sh = io->io_unit->u_sectshift;

	memset(&key, 0, sizeof(key));
	key.fi_unit = io->io_unit->u_index;
	key.fi_op = io->io_op;
	key.fi_off = sector << sh;
	while (lo < hi) {
		mid = lo + (hi - lo) / 2;
		if (replay_cmp(&fe->fe_replay[mid].re_fire, &key) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo == fe->fe_nreplay)
		return false;
	e = &fe->fe_replay[lo];
	return e->re_fire.fi_unit == key.fi_unit &&
	    e->re_fire.fi_op == key.fi_op && e->re_fire.fi_off >> sh == sector;
}

static void
decide_replay_locked(struct fault_engine *fe, struct rb_io *io,
    uint64_t gen, struct decision *d)
{
	struct fault_fire key, fi;
	struct replay_ent *e;
	struct fault_rule *r;
	size_t lo = 0, hi = fe->fe_nreplay, mid;

	key.fi_unit = io->io_unit->u_index;
	key.fi_op = io->io_op;
	key.fi_off = io->io_off;
	key.fi_len = io->io_len;
	key.fi_gen = gen;
	while (lo < hi) {
		mid = lo + (hi - lo) / 2;
		if (replay_cmp(&fe->fe_replay[mid].re_fire, &key) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	for (; lo < fe->fe_nreplay; lo++) {
		e = &fe->fe_replay[lo];
		if (replay_cmp(&e->re_fire, &key) != 0)
			break;
		r = e->re_rule;
		fi = e->re_fire;
		fi.fi_bitpos = NULL;
		fi.fi_snap = NULL;
		if (fi.fi_nbits > 0) {
			fi.fi_bitpos = malloc(fi.fi_nbits * sizeof(uint64_t));
			if (fi.fi_bitpos == NULL)
				continue;
			memcpy(fi.fi_bitpos, e->re_fire.fi_bitpos,
			    fi.fi_nbits * sizeof(uint64_t));
		}
		if (fi.fi_class == RUMPBLK_FAULT_STALE) {
			if ((unsigned)fi.fi_unit >= r->fr_nsnap ||
			    r->fr_snap[fi.fi_unit] == NULL)
				continue;
			fi.fi_snap = r->fr_snap[fi.fi_unit];
			atomic_fetch_add_explicit(&fi.fi_snap->sn_refs, 1,
			    memory_order_relaxed);
		}
		atomic_fetch_add_explicit(&r->fr_matches, 1,
		    memory_order_relaxed);
		atomic_fetch_add_explicit(&r->fr_firings, 1,
		    memory_order_relaxed);
		decide_add(d, &fi);
	}
}

/* 4. Acting. */

/*
 * A request with a firing: our own request to the stage below, and what
 * to do when it completes.
 */
struct fault_req {
	struct rb_io	fq_io;		/* to the stage below */
	struct rb_io	*fq_orig;	/* strategy's request */
	struct fault_engine *fq_fe;
	struct fault_fire fq_fire;	/* the data firing, if fq_data */
	bool		fq_data;
	uint64_t	fq_delay_ns;
	uint64_t	fq_deadline;
	int		fq_error;
	size_t		fq_moved;
	void		*fq_copy;	/* corrupt write: the flipped data */
	struct fault_req *fq_next;	/* timer queue */
};

static void
req_free(struct fault_req *fq)
{
	free(fq->fq_fire.fi_bitpos);
	snap_rele(fq->fq_fire.fi_snap);
	free(fq->fq_copy);
	free(fq);
}

static void
flip_bits(void *data, size_t moved, const struct fault_fire *fi)
{
	unsigned char *p = data;

	for (unsigned i = 0; i < fi->fi_nbits; i++)
		if (fi->fi_bitpos[i] / 8 < moved)
			p[fi->fi_bitpos[i] / 8] ^=
			    (unsigned char)(1u << (fi->fi_bitpos[i] % 8));
}

/* Complete the original request and free ours. */
static void
req_complete(struct fault_req *fq)
{
	struct rb_io *orig = fq->fq_orig;
	int error = fq->fq_error;
	size_t moved = fq->fq_moved;

	/* Once the original completes, the unit may go away: free first. */
	req_free(fq);
	rb_io_complete(orig, error, moved);
}

static void
timer_add(struct fault_req *fq)
{
	struct fault_engine *fe = fq->fq_fe;
	struct fault_req **pp;
	bool start = false;

	fq->fq_deadline = rb_now_ns() + fq->fq_delay_ns;
	rb_mutex_lock(&fe->fe_tmlock);
	if (!fe->fe_tmstarted) {
		if (pthread_create(&fe->fe_tmthread, NULL, timer_main,
		    fe) != 0) {
			/* No thread: complete now rather than never. */
			rb_mutex_unlock(&fe->fe_tmlock);
			req_complete(fq);
			return;
		}
		fe->fe_tmstarted = true;
		start = true;
	}
	for (pp = &fe->fe_tmq; *pp != NULL &&
	    (*pp)->fq_deadline <= fq->fq_deadline; pp = &(*pp)->fq_next)
		;
	fq->fq_next = *pp;
	*pp = fq;
	if (pp == &fe->fe_tmq || start)
		pthread_cond_signal(&fe->fe_tmcond);
	rb_mutex_unlock(&fe->fe_tmlock);
}

static void *
timer_main(void *arg)
{
	struct fault_engine *fe = arg;
	struct fault_req *fq;
	struct timespec ts;
	uint64_t now;

	rb_mutex_lock(&fe->fe_tmlock);
	for (;;) {
		if ((fq = fe->fe_tmq) == NULL) {
			if (fe->fe_tmstop)
				break;
			pthread_cond_wait(&fe->fe_tmcond, &fe->fe_tmlock);
			continue;
		}
		now = rb_now_ns();
		if (fq->fq_deadline > now && !fe->fe_tmstop) {
			ts.tv_sec = (time_t)(fq->fq_deadline / 1000000000u);
			ts.tv_nsec = (long)(fq->fq_deadline % 1000000000u);
			pthread_cond_timedwait(&fe->fe_tmcond, &fe->fe_tmlock,
			    &ts);
			continue;
		}
		fe->fe_tmq = fq->fq_next;
		rb_mutex_unlock(&fe->fe_tmlock);
		req_complete(fq);
		rb_mutex_lock(&fe->fe_tmlock);
	}
	rb_mutex_unlock(&fe->fe_tmlock);
	return NULL;
}

static void
req_finish(struct fault_req *fq, int error, size_t moved)
{
	fq->fq_error = error;
	fq->fq_moved = moved;
	if (fq->fq_delay_ns != 0)
		timer_add(fq);
	else
		req_complete(fq);
}

/* The stage below completed our request. */
static void
lower_done(struct rb_io *io)
{
	/* io_ctx belongs to the stage below (pio keeps its own there). */
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
req_submit_lower(struct rb_stage *lower, struct fault_req *fq)
{
	fq->fq_io.io_done = lower_done;
	fq->fq_io.io_ctx = NULL;
	fq->fq_io.io_next = NULL;
	fq->fq_io.io_work = NULL;
	fq->fq_io.io_error = 0;
	fq->fq_io.io_moved = 0;
	lower->st_ops->submit(lower, &fq->fq_io);
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

static void
act(struct fault_layer *fl, struct rb_io *io, struct decision *d)
{
	struct rb_stage *lower = fl->fl_stage.st_lower;
	struct fault_req *fq;
	struct fault_fire *fi;
	unsigned i;

	for (i = 0; i < d->d_n; i++)
		log_fire(fl->fl_fe, &d->d_fire[i]);
	fq = calloc(1, sizeof(*fq));
	if (fq == NULL) {
		for (i = 0; i < d->d_n; i++) {
			free(d->d_fire[i].fi_bitpos);
			snap_rele(d->d_fire[i].fi_snap);
		}
		rb_io_complete(io, ENOMEM, 0);
		return;
	}
	fq->fq_orig = io;
	fq->fq_fe = fl->fl_fe;
	fq->fq_delay_ns = d->d_delay_ns;
	fq->fq_io = *io;
	for (i = 0; i < d->d_n; i++) {
		if ((int)i == d->d_data) {
			fq->fq_fire = d->d_fire[i];
			fq->fq_data = true;
		} else {
			free(d->d_fire[i].fi_bitpos);
			snap_rele(d->d_fire[i].fi_snap);
		}
	}
	if (!fq->fq_data) {
		req_submit_lower(lower, fq);
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
	req_submit_lower(lower, fq);
}

/* 5. The layer. */

static const struct rb_ops fault_ops;

static void
fault_submit(struct rb_stage *st, struct rb_io *io)
{
	struct fault_layer *fl = (struct fault_layer *)st;
	struct fault_engine *fe = fl->fl_fe;
	struct rb_stage *lower = st->st_lower;
	struct rb_counters *cn = io->io_unit->u_counters;
	struct decision d;
	unsigned opbit, idx, i;
	uint64_t gen, sector;
	bool countall, replaying;

	opbit = rb_fault_opbit(io->io_op);
	if (opbit == 0) {		/* extent queries: never faulted */
		lower->st_ops->submit(lower, io);
		return;
	}
	sector = io->io_off >> io->io_unit->u_sectshift;
	countall = atomic_load_explicit(&fe->fe_countall,
	    memory_order_relaxed);
	replaying = atomic_load_explicit(&fe->fe_replaying,
	    memory_order_relaxed);
	if (atomic_load_explicit(&fe->fe_nrules, memory_order_relaxed) == 0 &&
	    !replaying) {
		if (countall)
			gen_next(fl, opbit, sector);
		lower->st_ops->submit(lower, io);
		return;
	}
	/*
	 * A request that no armed rule could select (another op, or past
	 * every rule's range) is neither counted nor decided: skip the read
	 * lock.  The summary is conservative (rules_select_locked would say
	 * no to it too), so decisions and generations are those of the
	 * locked path; a rule armed while this runs is as if armed just
	 * after.
	 */
	if (!countall && !replaying && ((atomic_load_explicit(&fe->fe_selops,
	    memory_order_relaxed) & opbit) == 0 || (opbit != FOP_FLUSH &&
	    (sector << io->io_unit->u_sectshift) >= atomic_load_explicit(
	    &fe->fe_selend, memory_order_relaxed)))) {
		lower->st_ops->submit(lower, io);
		return;
	}
	d.d_n = 0;
	d.d_data = -1;
	d.d_delay_ns = 0;
	rd_lock(fe, &idx);
	replaying = atomic_load_explicit(&fe->fe_replaying,
	    memory_order_relaxed);
	/*
	 * Count (and decide) only requests that some rule could select,
	 * unless told to count everything (rumpblk_fault_enable): see
	 * "Generations" above.
	 */
	if (countall || (replaying ? replay_selects_locked(fe, io, sector) :
	    rules_select_locked(fe, io, opbit, sector))) {
		gen = gen_next(fl, opbit, sector);
		if (replaying)
			decide_replay_locked(fe, io, gen, &d);
		else
			decide_rules_locked(fe, io, opbit, gen, &d);
	}
	/*
	 * Count the firings before leaving the read side, so that once
	 * rumpblk_fault_del or _clear returns (they take every read lock)
	 * the class counters of the rules it removed are final.
	 */
	for (i = 0; i < d.d_n; i++) {
		rb_stat_add(cn, RB_STAT(faults_injected), 1);
		rb_stat_add(cn, RB_STAT(faults_class[0]) +
		    (size_t)d.d_fire[i].fi_class, 1);
	}
	rd_unlock(fe, idx);
	if (RB_LIKELY(d.d_n == 0)) {
		lower->st_ops->submit(lower, io);
		return;
	}
	act(fl, io, &d);
}

static int
fault_sync(struct rb_stage *st)
{
	return st->st_lower->st_ops->sync(st->st_lower);
}

static void
fault_destroy(struct rb_stage *st)
{
	struct fault_layer *fl = (struct fault_layer *)st;

	for (unsigned i = 0; i < GEN_STRIPES; i++) {
		free(fl->fl_gen[i].gs_tab);
		pthread_mutex_destroy(&fl->fl_gen[i].gs_lock);
	}
	free(fl);
}

static const struct rb_ops fault_ops = {
	.name = "fault",
	.submit = fault_submit,
	.sync = fault_sync,
	.destroy = fault_destroy,
};

/* The fault layer of a unit, or NULL. */
static struct fault_layer *
unit_layer(struct rb_unit *u)
{
	struct rb_stage *top = atomic_load_explicit(&u->u_top,
	    memory_order_acquire);

	return top != NULL && top->st_ops == &fault_ops ?
	    (struct fault_layer *)top : NULL;
}

/* Put the layer on a unit whose top is *topp; 0 or ENOMEM. */
static int
layer_push(struct fault_engine *fe, struct rb_unit *u, struct rb_stage **topp)
{
	struct fault_layer *fl;

	if ((fl = aligned_alloc(RB_CACHELINE, sizeof(*fl))) == NULL)
		return ENOMEM;
	memset(fl, 0, sizeof(*fl));
	for (unsigned i = 0; i < GEN_STRIPES; i++)
		pthread_mutex_init(&fl->fl_gen[i].gs_lock, NULL);
	fl->fl_stage.st_ops = &fault_ops;
	fl->fl_stage.st_lower = *topp;
	fl->fl_stage.st_unit = u;
	fl->fl_fe = fe;
	*topp = &fl->fl_stage;
	return 0;
}

/*
 * Called by rumpblk_register (rb_lock held) before a unit goes live: put
 * the layer on its stack when the engine is enabled.
 */
int
rb_fault_unit_attach(struct rb_unit *u, struct rb_stage **topp)
{
	struct fault_engine *fe = u->u_rb->rb_fault;

	rb_assert_held(&u->u_rb->rb_lock);
	if (fe == NULL || !fe->fe_enabled)
		return 0;
	return layer_push(fe, u, topp);
}

/* Free the engine; every unit is detached (rumpblk_destroy). */
void
rb_fault_destroy(struct rumpblk *rb)
{
	struct fault_engine *fe = rb->rb_fault;
	struct fault_rule *r;

	if (fe == NULL)
		return;
	rb_mutex_lock(&fe->fe_tmlock);
	fe->fe_tmstop = true;
	pthread_cond_broadcast(&fe->fe_tmcond);
	rb_mutex_unlock(&fe->fe_tmlock);
	if (fe->fe_tmstarted)
		pthread_join(fe->fe_tmthread, NULL);
	while ((r = fe->fe_rules) != NULL) {
		fe->fe_rules = r->fr_next;
		rule_free(r);
	}
	for (size_t i = 0; i < fe->fe_nreplay; i++)
		free(fe->fe_replay[i].re_fire.fi_bitpos);
	free(fe->fe_replay);
	for (unsigned i = 0; i < RB_NSHARDS; i++)
		pthread_mutex_destroy(&fe->fe_rd[i].rs_lock);
	pthread_mutex_destroy(&fe->fe_armlock);
	pthread_mutex_destroy(&fe->fe_loglock);
	pthread_mutex_destroy(&fe->fe_tmlock);
	pthread_cond_destroy(&fe->fe_tmcond);
	free(fe);
	rb->rb_fault = NULL;
}

/* 6. The API. */

/*
 * Put the layer on every unit (and on units registered later); with
 * countall, count the generation of every request from now on.
 */
static int
engine_enable(struct rumpblk *rb, bool countall)
{
	struct fault_engine *fe;
	struct rb_stage *top;
	struct rb_unit *u;
	int error = 0;

	rb_mutex_lock(&rb->rb_lock);
	if ((fe = engine_get_locked(rb)) == NULL) {
		rb_mutex_unlock(&rb->rb_lock);
		return ENOMEM;
	}
	fe->fe_enabled = true;
	if (countall)
		atomic_store(&fe->fe_countall, true);
	for (unsigned i = 0; i < rb->rb_cfg.max_units && error == 0; i++) {
		u = &rb->rb_units[i];
		if ((atomic_load(&u->u_state) & RB_U_LIVE) == 0 ||
		    unit_layer(u) != NULL)
			continue;
		top = atomic_load_explicit(&u->u_top, memory_order_acquire);
		if ((error = layer_push(fe, u, &top)) == 0)
			atomic_store_explicit(&u->u_top, top,
			    memory_order_release);
	}
	rb_mutex_unlock(&rb->rb_lock);
	return error;
}

int
rumpblk_fault_enable(struct rumpblk *rb)
{
	return engine_enable(rb, true);
}

struct syncwait {
	struct rb_io	sw_io;		/* first: io_ctx is the lower's */
	pthread_mutex_t	sw_lock;
	pthread_cond_t	sw_cond;
	bool		sw_done;
};

static void
syncwait_done(struct rb_io *io)
{
	struct syncwait *sw = (struct syncwait *)(void *)io;

	rb_mutex_lock(&sw->sw_lock);
	sw->sw_done = true;
	pthread_cond_signal(&sw->sw_cond);
	rb_mutex_unlock(&sw->sw_lock);
}

/* Read a unit's bytes from below the fault layer, synchronously. */
static int
read_below(struct fault_layer *fl, struct rb_unit *u, void *buf,
    uint64_t off, uint64_t len)
{
	struct rb_stage *lower = fl->fl_stage.st_lower;
	struct syncwait sw;
	struct rb_io *io = &sw.sw_io;
	uint64_t n;
	int error = 0;

	pthread_mutex_init(&sw.sw_lock, NULL);
	pthread_cond_init(&sw.sw_cond, NULL);
	while (len > 0 && error == 0) {
		n = len > (1u << 20) ? 1u << 20 : len;
		memset(io, 0, sizeof(*io));
		io->io_op = RUMPBLK_B_READ;
		io->io_off = off;
		io->io_len = n;
		io->io_data = buf;
		io->io_unit = u;
		io->io_done = syncwait_done;
		sw.sw_done = false;
		lower->st_ops->submit(lower, io);
		rb_mutex_lock(&sw.sw_lock);
		while (!sw.sw_done)
			pthread_cond_wait(&sw.sw_cond, &sw.sw_lock);
		rb_mutex_unlock(&sw.sw_lock);
		if ((error = io->io_error) == 0 && io->io_moved != n)
			error = EIO;
		buf = (char *)buf + n;
		off += n;
		len -= n;
	}
	pthread_cond_destroy(&sw.sw_cond);
	pthread_mutex_destroy(&sw.sw_lock);
	return error;
}

/*
 * Snapshot [start, end) of every live unit that rule r selects (end
 * clipped to the unit), for a stale rule.  Units the range misses get no
 * snapshot, and the rule never fires there.
 */
static int
take_snapshots(struct rumpblk *rb, struct fault_rule *r)
{
	struct fault_layer *fl;
	struct fault_snap *sn;
	struct rb_unit *u;
	uint64_t end;
	int error = 0;

	r->fr_nsnap = rb->rb_cfg.max_units;
	if ((r->fr_snap = calloc(r->fr_nsnap, sizeof(*r->fr_snap))) == NULL)
		return ENOMEM;
	for (unsigned i = 0; i < r->fr_nsnap && error == 0; i++) {
		if (r->fr_unit >= 0 && (unsigned)r->fr_unit != i)
			continue;
		if ((u = rb_unit_hold(rb, (int)i)) == NULL)
			continue;
		end = r->fr_end < u->u_size ? r->fr_end : u->u_size;
		if ((fl = unit_layer(u)) == NULL || r->fr_start >= end) {
			rb_unit_rele(u);
			continue;
		}
		if ((sn = malloc(sizeof(*sn) + (end - r->fr_start))) == NULL) {
			error = ENOMEM;
		} else {
			atomic_init(&sn->sn_refs, 1);
			sn->sn_off = r->fr_start;
			sn->sn_len = end - r->fr_start;
			if ((error = read_below(fl, u, sn->sn_data, sn->sn_off,
			    sn->sn_len)) != 0)
				free(sn);
			else
				r->fr_snap[i] = sn;
		}
		rb_unit_rele(u);
	}
	return error;
}

static struct fault_rule *
rule_find_locked(struct fault_engine *fe, const char *id)
{
	struct fault_rule *r;

	rb_assert_held(&fe->fe_armlock);
	for (r = fe->fe_rules; r != NULL; r = r->fr_next)
		if (strcmp(r->fr_id, id) == 0)
			return r;
	return NULL;
}

/*
 * Recompute what fault_submit reads of the armed rules without a lock:
 * how many there are, the union of their ops and the end of the furthest
 * range.  With A and R held, after every change of fe_rules.
 */
static void
summary_locked(struct fault_engine *fe)
{
	unsigned n = 0, ops = 0;
	uint64_t end = 0;

	for (struct fault_rule *r = fe->fe_rules; r != NULL; r = r->fr_next) {
		n++;
		ops |= r->fr_ops;
		if (r->fr_end > end)
			end = r->fr_end;
	}
	atomic_store_explicit(&fe->fe_nrules, n, memory_order_relaxed);
	atomic_store_explicit(&fe->fe_selops, ops, memory_order_relaxed);
	atomic_store_explicit(&fe->fe_selend, end, memory_order_relaxed);
}

/* Append r to the armed rules. */
static void
rule_publish_locked(struct fault_engine *fe, struct fault_rule *r)
{
	struct fault_rule **pp;

	wr_lock(fe);
	for (pp = &fe->fe_rules; *pp != NULL; pp = &(*pp)->fr_next)
		;
	r->fr_next = NULL;
	*pp = r;
	summary_locked(fe);
	wr_unlock(fe);
}

int
rumpblk_fault_add(struct rumpblk *rb, const char *text, char *id,
    size_t idlen, char *errbuf, size_t errlen)
{
	struct fault_engine *fe;
	struct fault_rule *r;
	int error;

	if ((r = malloc(sizeof(*r))) == NULL)
		return ENOMEM;
	if ((error = rb_fault_parse(text, r, errbuf, errlen)) != 0)
		goto free_rule;
	if ((error = engine_enable(rb, false)) != 0)
		goto free_rule;
	fe = engine_get(rb);
	rb_mutex_lock(&fe->fe_armlock);
	if (atomic_load(&fe->fe_replaying)) {
		if (errbuf != NULL && errlen > 0)
			snprintf(errbuf, errlen, "rule '%s': a fault log is "
			    "being replayed (clear it first)", text);
		error = EBUSY;
		goto unlock;
	}
	if (r->fr_id[0] != '\0') {
		if (rule_find_locked(fe, r->fr_id) != NULL) {
			if (errbuf != NULL && errlen > 0)
				snprintf(errbuf, errlen, "rule '%s': id '%s' "
				    "is armed already", text, r->fr_id);
			error = EEXIST;
			goto unlock;
		}
	} else {
		/* r<N> for the Nth arming; skip one taken by an id=. */
		do
			snprintf(r->fr_id, sizeof(r->fr_id), "r%u",
			    fe->fe_nextid + 1);
		while (rule_find_locked(fe, r->fr_id) != NULL &&
		    ++fe->fe_nextid < UINT32_MAX - 1);
	}
	if (!r->fr_seed_set)
		r->fr_seed = fe->fe_seed;
	r->fr_idhash = rb_fault_hash_str(r->fr_id);
	if (r->fr_class == RUMPBLK_FAULT_STALE &&
	    (error = take_snapshots(rb, r)) != 0) {
		if (errbuf != NULL && errlen > 0)
			snprintf(errbuf, errlen, "rule '%s': cannot take the "
			    "stale snapshot: %s", text, strerror(error));
		goto unlock;
	}
	fe->fe_nextid++;
	rule_publish_locked(fe, r);
	if (id != NULL && idlen > 0)
		snprintf(id, idlen, "%s", r->fr_id);
	rb_mutex_unlock(&fe->fe_armlock);
	return 0;

unlock:
	rb_mutex_unlock(&fe->fe_armlock);
free_rule:
	rule_free(r);
	return error;
}

int
rumpblk_fault_del(struct rumpblk *rb, const char *id)
{
	struct fault_engine *fe;
	struct fault_rule **pp, *r;

	if (id == NULL)
		return EINVAL;
	if ((fe = engine_get(rb)) == NULL)
		return ENOENT;
	rb_mutex_lock(&fe->fe_armlock);
	for (pp = &fe->fe_rules; (r = *pp) != NULL; pp = &r->fr_next)
		if (strcmp(r->fr_id, id) == 0)
			break;
	if (r == NULL || r->fr_replay) {
		rb_mutex_unlock(&fe->fe_armlock);
		return r == NULL ? ENOENT : EBUSY;
	}
	wr_lock(fe);
	*pp = r->fr_next;
	summary_locked(fe);
	wr_unlock(fe);
	rb_mutex_unlock(&fe->fe_armlock);
	rule_free(r);
	return 0;
}

int
rumpblk_fault_clear(struct rumpblk *rb)
{
	struct fault_engine *fe;
	struct fault_rule *rules, *r;
	struct replay_ent *rp;
	size_t nrp;

	if ((fe = engine_get(rb)) == NULL)
		return ENOMEM;
	rb_mutex_lock(&fe->fe_armlock);
	wr_lock(fe);
	rules = fe->fe_rules;
	fe->fe_rules = NULL;
	summary_locked(fe);
	rp = fe->fe_replay;
	nrp = fe->fe_nreplay;
	fe->fe_replay = NULL;
	fe->fe_nreplay = 0;
	atomic_store(&fe->fe_replaying, false);
	wr_unlock(fe);
	rb_mutex_unlock(&fe->fe_armlock);
	while ((r = rules) != NULL) {
		rules = r->fr_next;
		rule_free(r);
	}
	for (size_t i = 0; i < nrp; i++)
		free(rp[i].re_fire.fi_bitpos);
	free(rp);
	return 0;
}

static void
rule_info(const struct fault_rule *r, struct rumpblk_fault_info *fi)
{
	memset(fi, 0, sizeof(*fi));
	memcpy(fi->fi_id, r->fr_id, sizeof(fi->fi_id));
	memcpy(fi->fi_text, r->fr_text, sizeof(fi->fi_text));
	fi->fi_class = (enum rumpblk_fault_class)r->fr_class;
	fi->fi_matches = atomic_load_explicit(&r->fr_matches,
	    memory_order_relaxed);
	fi->fi_firings = atomic_load_explicit(&r->fr_firings,
	    memory_order_relaxed);
	fi->fi_seed = r->fr_seed;
}

int
rumpblk_fault_list(struct rumpblk *rb, struct rumpblk_fault_info *info,
    size_t max, size_t *count)
{
	struct fault_engine *fe;
	struct fault_rule *r;
	size_t n = 0;

	if ((fe = engine_get(rb)) == NULL)
		return ENOMEM;
	rb_mutex_lock(&fe->fe_armlock);
	for (r = fe->fe_rules; r != NULL; r = r->fr_next, n++)
		if (n < max && info != NULL)
			rule_info(r, &info[n]);
	rb_mutex_unlock(&fe->fe_armlock);
	if (count != NULL)
		*count = n;
	return 0;
}

int
rumpblk_fault_get(struct rumpblk *rb, const char *id,
    struct rumpblk_fault_info *info)
{
	struct fault_engine *fe;
	struct fault_rule *r;

	if (id == NULL || (fe = engine_get(rb)) == NULL)
		return ENOENT;
	rb_mutex_lock(&fe->fe_armlock);
	if ((r = rule_find_locked(fe, id)) != NULL)
		rule_info(r, info);
	rb_mutex_unlock(&fe->fe_armlock);
	return r != NULL ? 0 : ENOENT;
}

uint64_t
rumpblk_fault_seed(struct rumpblk *rb)
{
	struct fault_engine *fe;
	uint64_t s;

	if ((fe = engine_get(rb)) == NULL)
		return 0;
	rb_mutex_lock(&fe->fe_armlock);
	s = fe->fe_seed;
	rb_mutex_unlock(&fe->fe_armlock);
	return s;
}

int
rumpblk_fault_set_seed(struct rumpblk *rb, uint64_t seed)
{
	struct fault_engine *fe;

	if ((fe = engine_get(rb)) == NULL)
		return ENOMEM;
	rb_mutex_lock(&fe->fe_armlock);
	fe->fe_seed = seed;
	rb_mutex_unlock(&fe->fe_armlock);
	return 0;
}

int
rumpblk_fault_log(struct rumpblk *rb, FILE *f)
{
	struct fault_engine *fe;

	if ((fe = engine_get(rb)) == NULL)
		return ENOMEM;
	rb_mutex_lock(&fe->fe_loglock);
	fe->fe_log = f;
	rb_mutex_unlock(&fe->fe_loglock);
	return 0;
}

static int
replay_sort_cmp(const void *a, const void *b)
{
	const struct replay_ent *x = a, *y = b;
	int c = replay_cmp(&x->re_fire, &y->re_fire);

	if (c != 0)
		return c;
	/* Keep log order for firings of one request (stable). */
	return x < y ? -1 : x > y;
}

int
rumpblk_fault_replay(struct rumpblk *rb, FILE *f, char *errbuf,
    size_t errlen)
{
	struct fault_engine *fe;
	struct replay_ent *ents = NULL, *ne;
	struct fault_rule *rules = NULL, *r, **tailp = &rules;
	struct fault_fire fi;
	size_t nents = 0, cap = 0, linelen = 0, lineno = 0;
	char *line = NULL, msg[200];
	ssize_t n;
	int error = 0;

	if (errbuf != NULL && errlen > 0)
		errbuf[0] = '\0';
	/* Parse everything first: nothing changes on a bad log. */
	while ((n = getline(&line, &linelen, f)) != -1) {
		lineno++;
		while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
			line[--n] = '\0';
		if (n == 0)
			continue;
		msg[0] = '\0';
		if ((error = rb_fault_log_parse(line, &fi, msg,
		    sizeof(msg))) != 0) {
			if (errbuf != NULL && errlen > 0)
				snprintf(errbuf, errlen, "fault log line %zu: "
				    "%s", lineno, msg);
			goto fail;
		}
		if (nents == cap) {
			cap = cap ? cap * 2 : 64;
			if ((ne = realloc(ents, cap * sizeof(*ents))) == NULL) {
				free(fi.fi_bitpos);
				error = ENOMEM;
				goto fail;
			}
			ents = ne;
		}
		/* One rule per id: its counters, its stale snapshots. */
		for (r = rules; r != NULL; r = r->fr_next)
			if (strcmp(r->fr_id, fi.fi_rule) == 0)
				break;
		if (r == NULL) {
			if ((r = calloc(1, sizeof(*r))) == NULL) {
				free(fi.fi_bitpos);
				error = ENOMEM;
				goto fail;
			}
			memcpy(r->fr_id, fi.fi_rule, sizeof(r->fr_id));
			snprintf(r->fr_text, sizeof(r->fr_text), "%s,replay",
			    rb_fault_class_name(fi.fi_class));
			r->fr_class = fi.fi_class;
			r->fr_replay = true;
			r->fr_unit = -1;
			r->fr_end = UINT64_MAX;
			*tailp = r;
			tailp = &r->fr_next;
		}
		if (fi.fi_class == RUMPBLK_FAULT_STALE) {
			/* Each unit's snapshot is taken from its first
			 * record's range, below. */
			r->fr_has_range = true;
		}
		ents[nents].re_fire = fi;
		ents[nents].re_rule = r;
		nents++;
	}
	if (ferror(f)) {
		error = EIO;
		goto fail;
	}
	if (nents > 0)
		qsort(ents, nents, sizeof(*ents), replay_sort_cmp);

	if ((error = engine_enable(rb, false)) != 0)
		goto fail;
	fe = engine_get(rb);
	rb_mutex_lock(&fe->fe_armlock);
	if (fe->fe_rules != NULL || atomic_load(&fe->fe_replaying)) {
		rb_mutex_unlock(&fe->fe_armlock);
		if (errbuf != NULL && errlen > 0)
			snprintf(errbuf, errlen, "fault replay: rules are "
			    "armed already");
		error = EBUSY;
		goto fail;
	}
	/* Stale: snapshot each unit's logged range now. */
	for (size_t i = 0; i < nents && error == 0; i++) {
		struct fault_fire *e = &ents[i].re_fire;
		struct fault_snap *sn;
		struct fault_layer *fl;
		struct rb_unit *u;

		r = ents[i].re_rule;
		if (e->fi_class != RUMPBLK_FAULT_STALE)
			continue;
		if (r->fr_snap == NULL) {
			r->fr_nsnap = rb->rb_cfg.max_units;
			if ((r->fr_snap = calloc(r->fr_nsnap,
			    sizeof(*r->fr_snap))) == NULL) {
				error = ENOMEM;
				break;
			}
		}
		if ((unsigned)e->fi_unit >= r->fr_nsnap ||
		    r->fr_snap[e->fi_unit] != NULL)
			continue;
		if ((u = rb_unit_hold(rb, e->fi_unit)) == NULL)
			continue;
		if ((fl = unit_layer(u)) == NULL ||
		    e->fi_snap_off + e->fi_snap_len > u->u_size) {
			rb_unit_rele(u);
			continue;
		}
		if ((sn = malloc(sizeof(*sn) + e->fi_snap_len)) == NULL) {
			error = ENOMEM;
		} else {
			atomic_init(&sn->sn_refs, 1);
			sn->sn_off = e->fi_snap_off;
			sn->sn_len = e->fi_snap_len;
			if ((error = read_below(fl, u, sn->sn_data, sn->sn_off,
			    sn->sn_len)) != 0)
				free(sn);
			else
				r->fr_snap[e->fi_unit] = sn;
		}
		rb_unit_rele(u);
	}
	if (error != 0) {
		rb_mutex_unlock(&fe->fe_armlock);
		goto fail;
	}
	wr_lock(fe);
	fe->fe_rules = rules;
	summary_locked(fe);
	fe->fe_replay = ents;
	fe->fe_nreplay = nents;
	atomic_store(&fe->fe_replaying, true);
	wr_unlock(fe);
	rb_mutex_unlock(&fe->fe_armlock);
	free(line);
	return 0;

fail:
	free(line);
	for (size_t i = 0; i < nents; i++)
		free(ents[i].re_fire.fi_bitpos);
	free(ents);
	while ((r = rules) != NULL) {
		rules = r->fr_next;
		rule_free(r);
	}
	return error;
}
