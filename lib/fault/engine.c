/*
 * The fault rule engine of an instance and its public API: arming,
 * disarming, listing rules, the default seed, the log; which units carry
 * the fault layer.
 *
 * Contents:
 *   1. the engine: creation on first use, which units get the layer,
 *      destruction
 *   2. the public API: enable, add, del, clear, list, get, seed, log
 *
 * What it is not: the decisions (decide.c), the layer that acts on them
 * (layer.c), replay loading (replay.c), the rule language (rule.c).
 *
 * The engine exists once the instance has used it (a rule armed, a
 * replay loaded, rumpblk_fault_enable); from then on every unit, and
 * every unit registered later, has the fault layer on its stack
 * (wherever the stack's order puts it, RB_RANK_FAULT).  Requests read the
 * rules with no lock; disarming waits a grace period on every unit
 * before it frees (fault.h), so a rule is never freed while a request
 * looks at it, and once del or clear returns the counters of the rules
 * it removed are final.
 */
#include <errno.h>
#include <inttypes.h>
#include <string.h>

#include "fault.h"

/* 1. The engine. */

void
rb_fault_snap_rele(struct fault_snap *sn)
{
	if (sn != NULL && atomic_fetch_sub_explicit(&sn->sn_refs, 1,
	    memory_order_acq_rel) == 1)
		free(sn);
}

void
rb_fault_rule_free(struct fault_rule *r)
{
	if (r == NULL)
		return;
	for (unsigned i = 0; i < r->fr_nsnap; i++)
		rb_fault_snap_rele(r->fr_snap[i]);
	free(r->fr_snap);
	free(r);
}

/* The engine of an instance, created on first use. */
static struct fault_engine *
engine_get_locked(struct rumpblk *rb)
{
	struct fault_engine *fe;
	uint32_t a, b;

	rb_assert_held(&rb->rb_lock);
	if (rb->rb_fault != NULL)
		return rb->rb_fault;
	if ((fe = calloc(1, sizeof(*fe))) == NULL)
		return NULL;
	pthread_mutex_init(&fe->fe_armlock, NULL);
	pthread_mutex_init(&fe->fe_loglock, NULL);
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

struct fault_engine *
rb_fault_engine_get(struct rumpblk *rb)
{
	struct fault_engine *fe;

	rb_mutex_lock(&rb->rb_lock);
	fe = engine_get_locked(rb);
	rb_mutex_unlock(&rb->rb_lock);
	return fe;
}

/*
 * Called by rumpblk_register (rb_lock held) before a unit goes live: put
 * the layer on its stack when the engine is enabled.
 */
int
rb_fault_unit_attach(struct rb_unit *u)
{
	struct fault_engine *fe = u->u_rb->rb_fault;

	rb_assert_held(&u->u_rb->rb_lock);
	if (fe == NULL || !fe->fe_enabled)
		return 0;
	return rb_fault_layer_push(fe, u);
}

static void
rules_free(struct fault_rule *r)
{
	struct fault_rule *next;

	for (; r != NULL; r = next) {
		next = atomic_load_explicit(&r->fr_next, memory_order_relaxed);
		rb_fault_rule_free(r);
	}
}

bool
rb_fault_grace(struct fault_engine *fe)
{
	struct rumpblk *rb = fe->fe_rb;

	if (rb_in_completion())
		return false;
	/* Every slot that ever had a unit; a unit registered after the
	 * change only ever saw the new rules. */
	for (unsigned i = 0; i < rb->rb_cfg.max_units; i++)
		if (rb_unit_ever_live(&rb->rb_units[i]))
			rb_unit_quiesce(&rb->rb_units[i]);
	return true;
}

/* Free the engine; every unit is detached (rumpblk_destroy). */
void
rb_fault_destroy(struct rumpblk *rb)
{
	struct fault_engine *fe = rb->rb_fault;
	struct replay_set *rs;

	if (fe == NULL)
		return;
	rules_free(atomic_load(&fe->fe_rules));
	rules_free(fe->fe_zombies);
	rb_fault_replay_free(atomic_load(&fe->fe_rs));
	while ((rs = fe->fe_zrs) != NULL) {
		fe->fe_zrs = rs->rs_next;
		rb_fault_replay_free(rs);
	}
	pthread_mutex_destroy(&fe->fe_armlock);
	pthread_mutex_destroy(&fe->fe_loglock);
	free(fe);
	rb->rb_fault = NULL;
}

/* 2. The API. */

/*
 * Put the layer on every unit (and on units registered later); with
 * countall, count the generation of every request from now on.
 */
int
rb_fault_engine_enable(struct rumpblk *rb, bool countall)
{
	struct fault_engine *fe;
	struct rb_unit *u;
	int error = 0;

	rb_mutex_lock(&rb->rb_lock);
	if ((fe = engine_get_locked(rb)) == NULL) {
		rb_mutex_unlock(&rb->rb_lock);
		return ENOMEM;
	}
	fe->fe_enabled = true;
	if (countall) {
		rb_mutex_lock(&fe->fe_armlock);
		atomic_store(&fe->fe_countall, true);
		rb_fault_path_update_locked(fe);
		rb_mutex_unlock(&fe->fe_armlock);
	}
	for (unsigned i = 0; i < rb->rb_cfg.max_units && error == 0; i++) {
		u = &rb->rb_units[i];
		if ((atomic_load(&u->u_state) & RB_U_LIVE) == 0 ||
		    rb_fault_unit_layer(u) != NULL)
			continue;
		error = rb_fault_layer_push(fe, u);
	}
	rb_mutex_unlock(&rb->rb_lock);
	return error;
}

int
rumpblk_fault_enable(struct rumpblk *rb)
{
	return rb_fault_engine_enable(rb, true);
}

int
rb_fault_snap_take(struct rumpblk *rb, int unit, uint64_t off, uint64_t len,
    struct fault_snap **snp)
{
	struct fault_snap *sn;
	struct rb_stage *fl;
	struct rb_unit *u;
	uint64_t done, n;
	size_t moved;
	unsigned ep;
	int error = 0;

	if ((u = rb_unit_hold(rb, unit, &ep)) == NULL)
		return ENOENT;
	if ((fl = rb_fault_unit_layer(u)) == NULL || off > u->u_size ||
	    len > u->u_size - off) {
		error = ENOENT;
		goto rele;
	}
	if ((sn = malloc(sizeof(*sn) + len)) == NULL) {
		error = ENOMEM;
		goto rele;
	}
	atomic_init(&sn->sn_refs, 1);
	sn->sn_off = off;
	sn->sn_len = len;
	/* From below the layer, in pieces a backend takes in one go. */
	for (done = 0; done < len && error == 0; done += n) {
		n = len - done > (1u << 20) ? 1u << 20 : len - done;
		error = rb_stage_io_below(fl, RUMPBLK_B_READ, RB_IO_NOFAULT,
		    off + done, n, sn->sn_data + done, &moved);
		if (error == 0 && moved != n)
			error = EIO;
	}
	if (error != 0)
		free(sn);
	else
		*snp = sn;
rele:
	rb_unit_rele(u, ep);
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
	struct rumpblk_unitinfo ui;
	uint64_t end;
	int error = 0;

	r->fr_nsnap = rb->rb_cfg.max_units;
	if ((r->fr_snap = calloc(r->fr_nsnap, sizeof(*r->fr_snap))) == NULL)
		return ENOMEM;
	for (unsigned i = 0; i < r->fr_nsnap && error == 0; i++) {
		if (r->fr_unit >= 0 && (unsigned)r->fr_unit != i)
			continue;
		if (rumpblk_unitinfo(rb, (int)i, &ui) != 0)
			continue;
		end = r->fr_end < ui.ui_size ? r->fr_end : ui.ui_size;
		if (r->fr_start >= end)
			continue;
		error = rb_fault_snap_take(rb, (int)i, r->fr_start,
		    end - r->fr_start, &r->fr_snap[i]);
		if (error == ENOENT)	/* gone meanwhile */
			error = 0;
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
 * range.  With A held, after every change of fe_rules.
 */
void
rb_fault_summary_locked(struct fault_engine *fe)
{
	unsigned n = 0, ops = 0;
	uint64_t end = 0;
	bool needgen = fe->fe_logging;

	for (struct fault_rule *r = fe->fe_rules; r != NULL; r = r->fr_next) {
		n++;
		ops |= r->fr_ops;
		if (r->fr_end > end)
			end = r->fr_end;
		needgen |= rb_fault_rule_hashes(r);
	}
	atomic_store_explicit(&fe->fe_needgen, needgen, memory_order_relaxed);
	atomic_store_explicit(&fe->fe_nrules, n, memory_order_relaxed);
	atomic_store_explicit(&fe->fe_selops, ops, memory_order_relaxed);
	atomic_store_explicit(&fe->fe_selend, end, memory_order_relaxed);
	rb_fault_path_update_locked(fe);
}

void
rb_fault_path_update_locked(struct fault_engine *fe)
{
	unsigned path = atomic_load_explicit(&fe->fe_selops,
	    memory_order_relaxed);

	rb_assert_held(&fe->fe_armlock);
	if (atomic_load(&fe->fe_countall) || atomic_load(&fe->fe_rs) != NULL ||
	    atomic_load(&fe->fe_needgen))
		path |= FE_SLOW;
	atomic_store_explicit(&fe->fe_path, path, memory_order_relaxed);
}

/*
 * A power-cut rule needs a write cache on every unit it may select, and
 * at least one such unit.  0, or ENOTSUP with a message.
 */
static int
powercut_check(struct rumpblk *rb, const struct fault_rule *r,
    const char *text, char *errbuf, size_t errlen)
{
	struct rb_unit *u;
	unsigned ep;
	int missing = -1, n = 0;

	for (unsigned i = 0; i < rb->rb_cfg.max_units && missing < 0; i++) {
		if (r->fr_unit >= 0 && (unsigned)r->fr_unit != i)
			continue;
		if ((u = rb_unit_hold(rb, (int)i, &ep)) == NULL)
			continue;
		n++;
		if (rb_cache_of(u) == NULL)
			missing = (int)i;
		rb_unit_rele(u, ep);
	}
	if (missing < 0 && n > 0)
		return 0;
	if (errbuf != NULL && errlen > 0) {
		if (missing >= 0)
			snprintf(errbuf, errlen, "rule '%s': power-cut needs "
			    "a volatile write cache, and unit %d has none "
			    "(serve --write-cache SIZE; rumpblk_write_cache)",
			    text, missing);
		else
			snprintf(errbuf, errlen, "rule '%s': power-cut needs "
			    "a unit with a volatile write cache (serve "
			    "--write-cache SIZE; rumpblk_write_cache)", text);
	}
	return ENOTSUP;
}

/* Append r to the armed rules. */
static void
rule_publish_locked(struct fault_engine *fe, struct fault_rule *r)
{
	_Atomic(struct fault_rule *) *pp;

	for (pp = &fe->fe_rules; *pp != NULL; pp = &(*pp)->fr_next)
		;
	atomic_store_explicit(&r->fr_next, NULL, memory_order_relaxed);
	/* Release: a request that sees r sees all of it. */
	atomic_store_explicit(pp, r, memory_order_release);
	rb_fault_summary_locked(fe);
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
	if ((error = rb_fault_engine_enable(rb, false)) != 0)
		goto free_rule;
	fe = rb_fault_engine_get(rb);
	rb_mutex_lock(&fe->fe_armlock);
	if (atomic_load(&fe->fe_rs) != NULL) {
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
	if (r->fr_class == RUMPBLK_FAULT_POWERCUT &&
	    (error = powercut_check(rb, r, text, errbuf, errlen)) != 0)
		goto unlock;
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
	rb_fault_rule_free(r);
	return error;
}

int
rumpblk_fault_del(struct rumpblk *rb, const char *id)
{
	struct fault_engine *fe;
	_Atomic(struct fault_rule *) *pp;
	struct fault_rule *r;

	if (id == NULL)
		return EINVAL;
	if ((fe = rb_fault_engine_get(rb)) == NULL)
		return ENOENT;
	rb_mutex_lock(&fe->fe_armlock);
	for (pp = &fe->fe_rules; (r = *pp) != NULL; pp = &r->fr_next)
		if (strcmp(r->fr_id, id) == 0)
			break;
	if (r == NULL || r->fr_replay) {
		rb_mutex_unlock(&fe->fe_armlock);
		return r == NULL ? ENOENT : EBUSY;
	}
	atomic_store_explicit(pp, atomic_load(&r->fr_next),
	    memory_order_release);
	rb_fault_summary_locked(fe);
	rb_mutex_unlock(&fe->fe_armlock);
	/* Without fe_armlock: a completion may want it (rumpblk_fault_list). */
	if (rb_fault_grace(fe)) {
		rb_fault_rule_free(r);
		return 0;
	}
	rb_mutex_lock(&fe->fe_armlock);
	atomic_store(&r->fr_next, fe->fe_zombies);
	fe->fe_zombies = r;
	rb_mutex_unlock(&fe->fe_armlock);
	return 0;
}

int
rumpblk_fault_clear(struct rumpblk *rb)
{
	struct fault_engine *fe;
	struct fault_rule *rules, *r;
	struct replay_set *rs;

	if ((fe = rb_fault_engine_get(rb)) == NULL)
		return ENOMEM;
	rb_mutex_lock(&fe->fe_armlock);
	rules = atomic_exchange(&fe->fe_rules, NULL);
	rb_fault_summary_locked(fe);
	rs = atomic_exchange(&fe->fe_rs, NULL);
	rb_fault_path_update_locked(fe);
	rb_mutex_unlock(&fe->fe_armlock);
	/* Without fe_armlock: a completion may want it (rumpblk_fault_list). */
	if (rb_fault_grace(fe)) {
		rules_free(rules);
		rb_fault_replay_free(rs);
		return 0;
	}
	/* From a completion: keep them (requests may still see them). */
	rb_mutex_lock(&fe->fe_armlock);
	while ((r = rules) != NULL) {
		rules = atomic_load(&r->fr_next);
		atomic_store(&r->fr_next, fe->fe_zombies);
		fe->fe_zombies = r;
	}
	if (rs != NULL) {
		rs->rs_next = fe->fe_zrs;
		fe->fe_zrs = rs;
	}
	rb_mutex_unlock(&fe->fe_armlock);
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

	if ((fe = rb_fault_engine_get(rb)) == NULL)
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

	if (id == NULL || (fe = rb_fault_engine_get(rb)) == NULL)
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

	if ((fe = rb_fault_engine_get(rb)) == NULL)
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

	if ((fe = rb_fault_engine_get(rb)) == NULL)
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

	if ((fe = rb_fault_engine_get(rb)) == NULL)
		return ENOMEM;
	rb_mutex_lock(&fe->fe_armlock);
	rb_mutex_lock(&fe->fe_loglock);
	fe->fe_log = f;
	rb_mutex_unlock(&fe->fe_loglock);
	/* From now on the generations a firing logs are counted. */
	fe->fe_logging = f != NULL;
	rb_fault_summary_locked(fe);
	rb_mutex_unlock(&fe->fe_armlock);
	return 0;
}
