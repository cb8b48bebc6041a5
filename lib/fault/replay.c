/*
 * Loading a fault log for replay (rumpblk_fault_replay): every line is
 * parsed (log.c) before anything changes, sorted by the key decisions
 * look firings up by (decide.c, rb_fault_replay_cmp), and published with
 * one rule standing for each logged rule id (its counters, its stale
 * snapshots).
 *
 * A stale firing's snapshot is taken now, from each unit's first record
 * of that rule: the moment a rule armed later took its snapshot is not
 * in the log, which is why replay is exact for every class but stale for
 * rules armed after the first I/O (librumpblk(3)).
 */
#include <errno.h>
#include <string.h>

#include "fault.h"

static int
replay_sort_cmp(const void *a, const void *b)
{
	const struct replay_ent *x = a, *y = b;
	int c = rb_fault_replay_cmp(&x->re_fire, &y->re_fire);

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
	struct replay_set *rs = NULL;
	struct fault_rule *r;
	/* Linked as they will be armed: fr_next is atomic. */
	_Atomic(struct fault_rule *) rules = NULL, *tailp = &rules;
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
		/* A cut by command (rumpblk_power_cut), not by a request:
		 * nothing to replay. */
		if (fi.fi_class == RUMPBLK_FAULT_POWERCUT &&
		    strcmp(fi.fi_rule, "ctl") == 0) {
			free(fi.fi_bitpos);
			continue;
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
	if ((rs = calloc(1, sizeof(*rs))) == NULL) {
		error = ENOMEM;
		goto fail;
	}

	if ((error = rb_fault_engine_enable(rb, false)) != 0)
		goto fail;
	fe = rb_fault_engine_get(rb);
	rb_mutex_lock(&fe->fe_armlock);
	if (atomic_load(&fe->fe_rules) != NULL ||
	    atomic_load(&fe->fe_rs) != NULL) {
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
		/* A unit that is not there (or too small) gets none, and
		 * the firings on it never happen. */
		error = rb_fault_snap_take(rb, e->fi_unit, e->fi_snap_off,
		    e->fi_snap_len, &r->fr_snap[e->fi_unit]);
		if (error == ENOENT)
			error = 0;
	}
	if (error != 0) {
		rb_mutex_unlock(&fe->fe_armlock);
		goto fail;
	}
	rs->rs_ents = ents;
	rs->rs_n = nents;
	atomic_store_explicit(&fe->fe_rules, rules, memory_order_release);
	rb_fault_summary_locked(fe);
	/* Release: a request that sees the set sees its entries. */
	atomic_store_explicit(&fe->fe_rs, rs, memory_order_release);
	rb_fault_path_update_locked(fe);
	rb_mutex_unlock(&fe->fe_armlock);
	free(line);
	return 0;

fail:
	free(rs);
	free(line);
	for (size_t i = 0; i < nents; i++)
		rb_fault_fire_release(&ents[i].re_fire);
	free(ents);
	while ((r = rules) != NULL) {
		rules = r->fr_next;
		rb_fault_rule_free(r);
	}
	return error;
}
