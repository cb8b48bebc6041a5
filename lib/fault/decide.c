/*
 * The decisions of the fault engine: whether armed rules (or a replayed
 * log) fire on a request, and the details of each firing.
 *
 * Contents:
 *   1. keys and details of a firing (errno, bits, target, cut)
 *   2. selection: which rules a request matches, which could select it
 *   3. deciding a request against the armed rules
 *   4. deciding it against a replayed log
 *
 * Everything here is a function of the request, the rules and the
 * generation, called without a lock (the request's unit reference keeps
 * the rules it reads, fault.h); nothing does I/O,
 * sleeps or keeps state but the rules' match and firing counters.  That
 * is what makes the decisions deterministic: probabilistic ones, and the
 * details of a firing, are a pure function of (seed, rule id, unit, op,
 * first sector, length, generation) through splitmix64's mixer; nth,
 * every, after and count count matches in the order the engine sees them.
 *
 * A request takes at most one data fault (every class but delay): the
 * first rule in arming order that fires.  Later rules still count the
 * request as a match but do not fire on it; delays add up.
 */
#include <errno.h>
#include <string.h>

#include "fault.h"

void
rb_fault_replay_free(struct replay_set *rs)
{
	if (rs == NULL)
		return;
	for (size_t i = 0; i < rs->rs_n; i++)
		rb_fault_fire_release(&rs->rs_ents[i].re_fire);
	free(rs->rs_ents);
	free(rs);
}

void
rb_fault_fire_release(struct fault_fire *fi)
{
	free(fi->fi_bitpos);
	fi->fi_bitpos = NULL;
	rb_fault_snap_rele(fi->fi_snap);
	fi->fi_snap = NULL;
}

/* 1. Keys and details of a firing. */

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
	uint64_t atom, natoms, nb, p, lo, hi, *bits;
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
		bits = fi->fi_bitin;
		if (want > FAULT_INLINE_BITS && (bits = fi->fi_bitpos =
		    malloc(want * sizeof(uint64_t))) == NULL)
			return ENOMEM;
		/* want distinct positions; want is small next to nb. */
		for (i = 0; fi->fi_nbits < want; i++) {
			p = lo * 8 + salt(h, 100 + i) % nb;
			for (k = 0; k < fi->fi_nbits; k++)
				if (bits[k] == p)
					break;
			if (k == fi->fi_nbits)
				bits[fi->fi_nbits++] = p;
		}
		qsort(bits, fi->fi_nbits, sizeof(uint64_t), cmp_u64);
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
	case RUMPBLK_FAULT_POWERCUT:
		fi->fi_model = r->fr_model;
		fi->fi_pcseed = r->fr_seed;
		fi->fi_atom = r->fr_atom;
		break;
	}
	return 0;
}

/*
 * Does deciding rule r read the request's hash, and so its generation?
 * A p= trigger does, and so do the seeded details of fire_fill (keep the
 * two in step); a count trigger (nth, every, after, none) with fixed
 * details does not.
 */
bool
rb_fault_rule_hashes(const struct fault_rule *r)
{
	if (r->fr_trig == FT_P)
		return true;
	switch (r->fr_class) {
	case RUMPBLK_FAULT_ERROR:
		return r->fr_nerrno > 1;
	case RUMPBLK_FAULT_CORRUPT:
	case RUMPBLK_FAULT_TORN:
		return true;
	case RUMPBLK_FAULT_MISDIRECT:
		return !r->fr_has_shift;
	default:
		return false;
	}
}

/* 2. Selection. */

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

bool
rb_fault_rules_select(struct fault_engine *fe, const struct rb_io *io,
    unsigned opbit, uint64_t sector)
{
	for (struct fault_rule *r = atomic_load_explicit(&fe->fe_rules,
	    memory_order_acquire); r != NULL; r = atomic_load_explicit(
	    &r->fr_next, memory_order_acquire))
		if (rule_selects(r, io->io_unit, opbit, sector))
			return true;
	return false;
}

/* 3. Deciding. */

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
decide_add(struct decision *d, struct fault_fire *fi)
{
	if (d->d_n == MAXFIRE) {
		rb_fault_fire_release(fi);
		return;
	}
	d->d_fire[d->d_n] = *fi;
	if (fi->fi_class == RUMPBLK_FAULT_DELAY)
		d->d_delay_ns += fi->fi_delay_ns;
	else
		d->d_data = (int)d->d_n;
	d->d_n++;
}

void
rb_fault_decide_rules(struct fault_engine *fe, struct rb_io *io,
    unsigned opbit, uint64_t gen, struct decision *d)
{
	rb_fault_decide_from(fe, io, opbit, gen, d, NULL, 0);
}

void
rb_fault_decide_from(struct fault_engine *fe, struct rb_io *io,
    unsigned opbit, uint64_t gen, struct decision *d,
    struct fault_rule *from, uint64_t mfrom)
{
	struct rb_unit *u = io->io_unit;
	struct fault_fire fi;
	struct fault_rule *r;
	uint64_t kh = 0, h, m;
	bool fire, have_kh = false;

	for (r = from != NULL ? from : atomic_load_explicit(&fe->fe_rules,
	    memory_order_acquire); r != NULL; r = atomic_load_explicit(
	    &r->fr_next, memory_order_acquire)) {
		if (r == from) {
			m = mfrom;	/* counted by the caller */
		} else {
			if (!rb_fault_rule_matches(r, io, opbit))
				continue;
			m = atomic_fetch_add_explicit(&r->fr_matches, 1,
			    memory_order_relaxed) + 1;
		}
		if (d->d_data >= 0 && r->fr_class != RUMPBLK_FAULT_DELAY)
			continue;
		if (!rb_fault_trigger(r, m))
			continue;
		/*
		 * The request's part of every key, once, and only where a
		 * hash is needed: to decide a p= rule, or for the details of
		 * a firing.  A rule that counts matches (nth, every) pays
		 * nothing for it on the requests it lets pass.
		 */
		if (!have_kh) {
			kh = rb_fault_mix((uint64_t)u->u_index ^
			    rb_fault_mix(opbit ^ rb_fault_mix((io->io_off >>
			    u->u_sectshift) ^ rb_fault_mix(io->io_len ^
			    rb_fault_mix(gen)))));
			have_kh = true;
		}
		h = rb_fault_mix(kh ^ rb_fault_mix(r->fr_seed ^ r->fr_idhash));
		fire = r->fr_trig != FT_P || r->fr_always || h < r->fr_thresh;
		if (!fire || !take_firing(r))
			continue;
		if (fire_fill(&fi, r, io, gen, h) != 0)
			continue;	/* ENOMEM: not fired */
		decide_add(d, &fi);
	}
}

/* 4. Replay. */

int
rb_fault_replay_cmp(const struct fault_fire *a, const struct fault_fire *b)
{
#define C(f) if (a->f != b->f) return a->f < b->f ? -1 : 1
	C(fi_unit); C(fi_op); C(fi_off); C(fi_len); C(fi_gen);
#undef C
	return 0;
}

/* The first entry of rs not before key (binary search). */
static size_t
replay_lower_bound(const struct replay_set *rs, const struct fault_fire *key)
{
	size_t lo = 0, hi = rs->rs_n, mid;

	while (lo < hi) {
		mid = lo + (hi - lo) / 2;
		if (rb_fault_replay_cmp(&rs->rs_ents[mid].re_fire, key) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/* Does the log have a firing of this op starting in this sector? */
bool
rb_fault_replay_selects(const struct replay_set *rs, const struct rb_io *io,
    uint64_t sector)
{
	struct fault_fire key;
	struct replay_ent *e;
	size_t lo;
	unsigned sh = io->io_unit->u_sectshift;

	memset(&key, 0, sizeof(key));
	key.fi_unit = io->io_unit->u_index;
	key.fi_op = io->io_op;
	key.fi_off = sector << sh;
	if ((lo = replay_lower_bound(rs, &key)) == rs->rs_n)
		return false;
	e = &rs->rs_ents[lo];
	return e->re_fire.fi_unit == key.fi_unit &&
	    e->re_fire.fi_op == key.fi_op && e->re_fire.fi_off >> sh == sector;
}

void
rb_fault_decide_replay(const struct replay_set *rs, struct rb_io *io,
    uint64_t gen, struct decision *d)
{
	struct fault_fire key, fi;
	struct replay_ent *e;
	struct fault_rule *r;
	size_t lo;

	key.fi_unit = io->io_unit->u_index;
	key.fi_op = io->io_op;
	key.fi_off = io->io_off;
	key.fi_len = io->io_len;
	key.fi_gen = gen;
	for (lo = replay_lower_bound(rs, &key); lo < rs->rs_n; lo++) {
		e = &rs->rs_ents[lo];
		if (rb_fault_replay_cmp(&e->re_fire, &key) != 0)
			break;
		r = e->re_rule;
		fi = e->re_fire;
		fi.fi_bitpos = NULL;
		fi.fi_snap = NULL;
		if (fi.fi_nbits > FAULT_INLINE_BITS) {
			fi.fi_bitpos = malloc(fi.fi_nbits * sizeof(uint64_t));
			if (fi.fi_bitpos == NULL)
				continue;
		}
		if (fi.fi_nbits > 0)
			memcpy((void *)rb_fire_bits(&fi), rb_fire_bits(
			    &e->re_fire), fi.fi_nbits * sizeof(uint64_t));
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
