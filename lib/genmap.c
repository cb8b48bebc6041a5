/*
 * The generation map of a unit: how many earlier requests had the same
 * op and first sector (DESIGN.md §9, "Determinism").  The fault layer
 * keys its decisions on it, the volatile cache its power-cut models.
 *
 * Per unit, a map (op, first sector) -> requests seen, in RB_GEN_STRIPES
 * open-addressing tables.  Memory: 16 bytes per distinct (op, first
 * sector) pair seen, at most GEN_MAX pairs per unit (256 MiB); past that,
 * new pairs are not recorded and their requests all have generation 0.
 *
 * A request whose key is in the table (every request after the first
 * with its key) takes no lock: it probes with atomic loads and counts
 * itself with one fetch-add.  Inserting a key takes the stripe's mutex.
 * Growing does too, and freezes every old entry as it copies it: an
 * exchange sets GEN_FROZEN in the count, so an increment either lands
 * before the exchange (and is in the copy) or sees the flag in what it
 * got back and goes again, to the new table, under the lock.  No count
 * is lost or doubled.  A request may still be probing an old table, so
 * old tables are kept (at most the size of the last, in all) and freed
 * with the map.
 */
#include <string.h>

#include "internal.h"

#define GEN_MAX		(1u << 24)
#define GEN_FROZEN	(1ull << 63)

struct gen_ent {
	_Atomic uint64_t ge_key;	/* 0: empty; set once */
	_Atomic uint64_t ge_count;	/* GEN_FROZEN: moved on */
};

struct gen_tab {
	struct gen_tab	*gt_old;	/* the table this one replaced */
	size_t		gt_cap;		/* a power of two */
	struct gen_ent	gt_ent[];
};

/* Put key (count c) in a table being built or grown; no one else does. */
static void
gen_put_locked(struct gen_tab *t, uint64_t key, uint64_t c)
{
	size_t j;

	for (j = (rb_mix64(key) >> 6) & (t->gt_cap - 1);
	    atomic_load_explicit(&t->gt_ent[j].ge_key, memory_order_relaxed)
	    != 0; j = (j + 1) & (t->gt_cap - 1))
		;
	atomic_store_explicit(&t->gt_ent[j].ge_count, c, memory_order_relaxed);
	atomic_store_explicit(&t->gt_ent[j].ge_key, key, memory_order_release);
}

static bool
gen_grow_locked(struct gen_stripe *gs)
{
	struct gen_tab *ot = atomic_load_explicit(&gs->gs_tab,
	    memory_order_relaxed), *nt;
	size_t ncap = ot != NULL ? ot->gt_cap * 2 : 64, i;
	uint64_t k, c;

	if ((nt = calloc(1, sizeof(*nt) + ncap * sizeof(nt->gt_ent[0]))) ==
	    NULL)
		return false;
	nt->gt_cap = ncap;
	nt->gt_old = ot;
	for (i = 0; ot != NULL && i < ot->gt_cap; i++) {
		k = atomic_load_explicit(&ot->gt_ent[i].ge_key,
		    memory_order_relaxed);
		if (k == 0)
			continue;
		c = atomic_exchange_explicit(&ot->gt_ent[i].ge_count,
		    GEN_FROZEN, memory_order_acq_rel);
		gen_put_locked(nt, k, c);
	}
	atomic_store_explicit(&gs->gs_tab, nt, memory_order_release);
	return true;
}

/* A request's place in the map: its key, and the hash that finds it. */
static inline struct gen_stripe *
gen_stripe(struct rb_genmap *gm, unsigned opbit, uint64_t sector,
    uint64_t *keyp, uint64_t *hp)
{
	*keyp = sector << 5 | opbit;
	*hp = rb_mix64(*keyp);
	return &gm->gm_stripe[*hp % RB_GEN_STRIPES];
}

/*
 * Start the cache miss of a request's map slot early (from the layer's
 * prefetch op, while strategy does its book-keeping): on a big working
 * set it is most of what counting a generation costs.  A prefetch never
 * faults, and a table replaced meanwhile only makes it miss.
 */
void
rb_genmap_prefetch(struct rb_genmap *gm, unsigned opbit, uint64_t sector)
{
	uint64_t key, h;
	struct gen_stripe *gs = gen_stripe(gm, opbit, sector, &key, &h);
	struct gen_tab *t = atomic_load_explicit(&gs->gs_tab,
	    memory_order_acquire);

	if (t != NULL)
		__builtin_prefetch(&t->gt_ent[(h >> 6) & (t->gt_cap - 1)], 1);
}

/*
 * Count key in table t if it is there: true and *gp its generation, or
 * false (not there, or frozen by a grow).
 */
static inline bool
gen_count(struct gen_tab *t, uint64_t key, uint64_t h, uint64_t *gp)
{
	uint64_t k, g;
	size_t j;

	for (j = (h >> 6) & (t->gt_cap - 1); (k = atomic_load_explicit(
	    &t->gt_ent[j].ge_key, memory_order_acquire)) != 0;
	    j = (j + 1) & (t->gt_cap - 1)) {
		if (k != key)
			continue;
		g = atomic_fetch_add_explicit(&t->gt_ent[j].ge_count, 1,
		    memory_order_relaxed);
		if (g & GEN_FROZEN)
			return false;
		*gp = g;
		return true;
	}
	return false;
}

/* The generation of this request; counts it. */
uint64_t
rb_genmap_next(struct rb_genmap *gm, unsigned opbit, uint64_t sector)
{
	uint64_t key, h, g;
	struct gen_stripe *gs = gen_stripe(gm, opbit, sector, &key, &h);
	struct gen_tab *t;

	t = atomic_load_explicit(&gs->gs_tab, memory_order_acquire);
	if (RB_LIKELY(t != NULL) && gen_count(t, key, h, &g))
		return g;
	/* A new key, or a table grown under us: the slow way. */
	rb_mutex_lock(&gs->gs_lock);
	t = atomic_load_explicit(&gs->gs_tab, memory_order_relaxed);
	if (t != NULL && gen_count(t, key, h, &g)) {
		rb_mutex_unlock(&gs->gs_lock);
		return g;
	}
	if (gs->gs_n >= GEN_MAX / RB_GEN_STRIPES || ((t == NULL ||
	    (gs->gs_n + 1) * 4 > t->gt_cap * 3) && !gen_grow_locked(gs))) {
		rb_mutex_unlock(&gs->gs_lock);
		return 0;
	}
	gen_put_locked(atomic_load_explicit(&gs->gs_tab, memory_order_relaxed),
	    key, 1);
	gs->gs_n++;
	rb_mutex_unlock(&gs->gs_lock);
	return 0;
}

/* Free a stripe's tables, the current one and those it replaced. */
static void
gen_free(struct gen_stripe *gs)
{
	struct gen_tab *t = atomic_load(&gs->gs_tab), *old;

	for (; t != NULL; t = old) {
		old = t->gt_old;
		free(t);
	}
	pthread_mutex_destroy(&gs->gs_lock);
}

void
rb_genmap_init(struct rb_genmap *gm)
{
	memset(gm, 0, sizeof(*gm));
	for (unsigned i = 0; i < RB_GEN_STRIPES; i++)
		pthread_mutex_init(&gm->gm_stripe[i].gs_lock, NULL);
}

void
rb_genmap_fini(struct rb_genmap *gm)
{
	for (unsigned i = 0; i < RB_GEN_STRIPES; i++)
		gen_free(&gm->gm_stripe[i]);
}
