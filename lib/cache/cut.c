/*
 * A power cut: the persistence models, and the cut itself.
 *
 * At the cut every write the cache acknowledged but did not make durable
 * (its dirty list, in acknowledgement order) is resolved by the model:
 *
 *   lose     none persists
 *   keep     all persist
 *   subset   each persists whole or not at all; applied in order
 *   reorder  a subset as above, applied in a seeded order, so that an
 *            older write may land over a newer one
 *   sectors  each sector of each write persists on its own (a drive
 *            without power-loss protection); applied in order
 *   torn     as subset, and a persisted write may keep only a prefix,
 *            cut at a multiple of the atom
 *
 * Every decision is a pure function of the model's seed and the write
 * itself (unit, op, offset, length, generation: DESIGN.md §9), through
 * rb_cache_cw_key, so the same seed and the same stream of requests give
 * the same post-crash medium.
 *
 * The cut, in order (rb_cache_cut): the cache stops taking requests
 * (every request that arrives, or would complete, is held: it gets no
 * answer yet); the destaging under way, if any, finishes (that write is
 * durable); the model's writes go to the medium and are synced; the
 * cache empties; RUMPBLK_EVENT_RESET is raised, so that front ends drop
 * every connection of the unit; then the cache takes requests again and
 * every held request completes with EIO (its connection is gone, so no
 * client sees that answer).  A client that connects after the event sees
 * the post-crash medium.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "cache.h"

/* 1. The models. */

static const char *const model_names[RUMPBLK_PC_NMODEL] = {
	[RUMPBLK_PC_LOSE] = "lose",
	[RUMPBLK_PC_KEEP] = "keep",
	[RUMPBLK_PC_SUBSET] = "subset",
	[RUMPBLK_PC_REORDER] = "reorder",
	[RUMPBLK_PC_SECTORS] = "sectors",
	[RUMPBLK_PC_TORN] = "torn",
};

const char *
rumpblk_pcmodel_name(enum rumpblk_pcmodel m)
{
	return (unsigned)m < RUMPBLK_PC_NMODEL ? model_names[m] : NULL;
}

/* Salts of the decisions drawn from one key. */
enum { D_PERSIST = 1, D_TORN, D_CUT, D_ORDER, D_SECTOR };

static uint64_t
draw(uint64_t key, uint64_t salt)
{
	return rb_mix64(key ^ rb_mix64(salt));
}

uint64_t
rb_cache_cw_key(const struct cache *c, const struct cw *cw, uint64_t seed)
{
	return rb_mix64(seed ^ rb_mix64((uint64_t)c->c_stage.st_unit->u_index ^
	    rb_mix64((uint64_t)cw->cw_op ^ rb_mix64(cw->cw_off ^
	    rb_mix64(cw->cw_len ^ rb_mix64(cw->cw_gen))))));
}

/*
 * What of cw persists under pc's model: [cw_off, cw_off + *keep) (torn,
 * subset, keep, lose), or, for sectors, each sector on its own (put
 * here).  Counts into pc.  0 or the medium's error.
 */
static int
resolve(struct cache *c, const struct cw *cw, struct rumpblk_powercut *pc)
{
	uint64_t key = rb_cache_cw_key(c, cw, pc->pc_seed), kept = 0, n, i,
	    ss = 1ull << c->c_stage.st_unit->u_sectshift, atom, off;
	int error = 0;

	switch (pc->pc_model) {
	case RUMPBLK_PC_LOSE:
		break;
	case RUMPBLK_PC_KEEP:
		kept = cw->cw_len;
		break;
	case RUMPBLK_PC_SUBSET:
	case RUMPBLK_PC_REORDER:
		kept = (draw(key, D_PERSIST) & 1) != 0 ? cw->cw_len : 0;
		break;
	case RUMPBLK_PC_TORN:
		if ((draw(key, D_PERSIST) & 1) == 0)
			break;
		kept = cw->cw_len;
		atom = pc->pc_atom != 0 ? pc->pc_atom : ss;
		n = (cw->cw_len + atom - 1) / atom;
		if (n >= 2 && (draw(key, D_TORN) & 1) != 0)
			kept = (1 + draw(key, D_CUT) % (n - 1)) * atom;
		break;
	case RUMPBLK_PC_SECTORS:
		for (i = 0, off = cw->cw_off; off < cw->cw_off + cw->cw_len;
		    i++, off += ss) {
			n = cw->cw_off + cw->cw_len - off < ss ?
			    cw->cw_off + cw->cw_len - off : ss;
			if ((draw(key, D_SECTOR + i) & 1) == 0)
				continue;
			kept += n;
			if (error == 0)
				error = rb_cache_put(c, cw, off, n);
		}
		break;
	default:
		break;
	}
	if (kept == cw->cw_len)
		pc->pc_persisted++;
	else if (kept == 0)
		pc->pc_lost++;
	else
		pc->pc_torn++;
	pc->pc_bytes_lost += cw->cw_len - kept;
	if (error == 0 && kept != 0 && pc->pc_model != RUMPBLK_PC_SECTORS)
		error = rb_cache_put(c, cw, cw->cw_off, kept);
	return error;
}

/* The reorder model's order: by a draw of each write's key. */
struct ord {
	uint64_t	o_rank;
	struct cw	*o_cw;
};

static int
ord_cmp(const void *a, const void *b)
{
	const struct ord *x = a, *y = b;

	if (x->o_rank != y->o_rank)
		return x->o_rank < y->o_rank ? -1 : 1;
	return x->o_cw->cw_seq < y->o_cw->cw_seq ? -1 : 1;
}

/*
 * Resolve the dirty list onto the medium.  It is stable: every request
 * is held, and the destager is idle with its queue empty.
 */
static int
apply_model(struct cache *c, struct rumpblk_powercut *pc)
{
	struct ord *ord = NULL;
	struct cw *cw;
	size_t n = 0, i;
	int error = 0, e;

	pc->pc_unflushed = c->c_ndirty;
	if (pc->pc_model == RUMPBLK_PC_REORDER && c->c_ndirty != 0 &&
	    (ord = calloc(c->c_ndirty, sizeof(*ord))) == NULL)
		return ENOMEM;
	for (cw = c->c_head; cw != NULL; cw = cw->cw_next) {
		if (ord != NULL) {
			ord[n].o_rank = draw(rb_cache_cw_key(c, cw,
			    pc->pc_seed), D_ORDER);
			ord[n++].o_cw = cw;
			continue;
		}
		if ((e = resolve(c, cw, pc)) != 0 && error == 0)
			error = e;
	}
	if (ord != NULL) {
		qsort(ord, n, sizeof(*ord), ord_cmp);
		for (i = 0; i < n; i++)
			if ((e = resolve(c, ord[i].o_cw, pc)) != 0 &&
			    error == 0)
				error = e;
		free(ord);
	}
	return error;
}

/* 2. The cut. */

int
rb_cache_cut(struct cache *c, struct rb_io *io, struct rumpblk_powercut *pc)
{
	struct rb_unit *u = c->c_stage.st_unit;
	struct rb_io *held, *next;
	bool wr = io != NULL && (io->io_op == RUMPBLK_B_WRITE ||
	    io->io_op == RUMPBLK_B_TRIM || io->io_op == RUMPBLK_B_ZERO);
	uint64_t gen = wr ? rb_cache_gen(c, io) : 0;
	int error;

	pc->pc_unflushed = pc->pc_persisted = pc->pc_lost = pc->pc_torn = 0;
	pc->pc_bytes_lost = 0;
	rb_mutex_lock(&c->c_lock);
	if (c->c_state == CS_CUTTING) {
		/* A cut is under way: this request is in flight at it. */
		if (io != NULL)
			rb_cache_hold_locked(c, io);
		rb_mutex_unlock(&c->c_lock);
		return EALREADY;
	}
	c->c_state = CS_CUTTING;
	/* The request that fired is resolved like an unflushed write (on
	 * ENOMEM it is lost, as one might be). */
	if (wr)
		(void)rb_cache_add_locked(c, io, gen);
	if (io != NULL)
		rb_cache_hold_locked(c, io);
	/* FLUSHes waiting for the destager are in flight: no answer. */
	while ((held = c->c_flushes) != NULL) {
		c->c_flushes = held->io_next;
		rb_cache_hold_locked(c, held);
	}
	c->c_flushtailp = &c->c_flushes;
	/* Writes waiting for room hold themselves. */
	pthread_cond_broadcast(&c->c_cv);
	/* What was decided durable goes to the medium first; nothing is
	 * decided while we cut, so the destager is idle after. */
	rb_cache_drain_locked(c);
	rb_mutex_unlock(&c->c_lock);

	error = apply_model(c, pc);
	if (error == 0)
		error = rb_stage_io_below(&c->c_stage, RUMPBLK_B_FLUSH, 0, 0, 0,
		    NULL, NULL);

	rb_mutex_lock(&c->c_lock);
	rb_cache_drop_locked(c);
	c->c_st.cs_power_cuts++;
	rb_mutex_unlock(&c->c_lock);

	rb_event_raise(u->u_rb, u->u_index, RUMPBLK_EVENT_RESET);

	rb_mutex_lock(&c->c_lock);
	c->c_state = CS_RUNNING;
	held = c->c_held;
	c->c_held = NULL;
	rb_mutex_unlock(&c->c_lock);
	for (; held != NULL; held = next) {
		next = held->io_next;
		rb_io_complete(held, EIO, 0);
	}
	return error;
}

/* 3. The public calls. */

void
rumpblk_powercut_init(struct rumpblk *rb, struct rumpblk_powercut *pc)
{
	memset(pc, 0, sizeof(*pc));
	pc->pc_model = RUMPBLK_PC_LOSE;
	pc->pc_seed = rb != NULL ? rumpblk_fault_seed(rb) : 0;
}

static int __attribute__((format(printf, 3, 4)))
pc_fail(char *errbuf, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (errbuf != NULL && errlen > 0) {
		va_start(ap, fmt);
		vsnprintf(errbuf, errlen, fmt, ap);
		va_end(ap);
	}
	return EINVAL;
}

int
rb_pcmodel_parse(const char *s)
{
	for (int m = 0; m < RUMPBLK_PC_NMODEL; m++)
		if (strcmp(s, model_names[m]) == 0)
			return m;
	return -1;
}

int
rumpblk_powercut_parse(const char *spec, struct rumpblk_powercut *pc,
    char *errbuf, size_t errlen)
{
	char buf[256], *tok, *save, *eq, *end;
	unsigned long long v;
	int m;

	if (strlen(spec) >= sizeof(buf))
		return pc_fail(errbuf, errlen, "power-cut '%s': too long",
		    spec);
	strcpy(buf, spec);
	for (tok = strtok_r(buf, ",", &save); tok != NULL;
	    tok = strtok_r(NULL, ",", &save)) {
		if ((eq = strchr(tok, '=')) == NULL)
			return pc_fail(errbuf, errlen, "power-cut: '%s' is "
			    "not key=value (model, seed, atom)", tok);
		*eq++ = '\0';
		if (strcmp(tok, "model") == 0) {
			if ((m = rb_pcmodel_parse(eq)) < 0)
				return pc_fail(errbuf, errlen, "power-cut: "
				    "unknown model '%s' (lose, keep, subset, "
				    "reorder, sectors, torn)", eq);
			pc->pc_model = (enum rumpblk_pcmodel)m;
			continue;
		}
		if (strcmp(tok, "seed") != 0 && strcmp(tok, "atom") != 0)
			return pc_fail(errbuf, errlen, "power-cut: unknown "
			    "key '%s' (model, seed, atom)", tok);
		errno = 0;
		v = strtoull(eq, &end, 0);
		if (*eq == '\0' || *eq == '-' || *end != '\0' || errno != 0)
			return pc_fail(errbuf, errlen, "power-cut: %s: bad "
			    "number '%s'", tok, eq);
		if (tok[0] == 's') {
			pc->pc_seed = v;
		} else {
			if (v == 0 || v % RUMPBLK_DEV_BSIZE != 0)
				return pc_fail(errbuf, errlen, "power-cut: "
				    "atom=%s is not a multiple of %d bytes",
				    eq, RUMPBLK_DEV_BSIZE);
			pc->pc_atom = v;
		}
	}
	if (pc->pc_atom != 0 && pc->pc_model != RUMPBLK_PC_TORN)
		return pc_fail(errbuf, errlen, "power-cut: atom= applies to "
		    "model=torn only");
	return 0;
}

int
rumpblk_power_cut(struct rumpblk *rb, int unit, struct rumpblk_powercut *pc)
{
	struct rb_unit *u;
	struct cache *c;
	unsigned ep;
	int error;

	if ((unsigned)pc->pc_model >= RUMPBLK_PC_NMODEL)
		return EINVAL;
	if ((u = rb_unit_hold(rb, unit, &ep)) == NULL)
		return ENXIO;
	if (pc->pc_atom != 0 && (pc->pc_atom & ((1ull << u->u_sectshift) -
	    1)) != 0) {
		rb_unit_rele(u, ep);
		return EINVAL;
	}
	if ((c = rb_cache_of(u)) == NULL) {
		rb_unit_rele(u, ep);
		return ENOTSUP;
	}
	error = rb_cache_cut(c, NULL, pc);
	if (error != EALREADY)
		rb_fault_log_cut(rb, unit, NULL, pc);
	rb_unit_rele(u, ep);
	return error;
}
