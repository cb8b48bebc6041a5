/*
 * The bookkeeping the remote backings share (remote.h).
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "remote.h"

int
rb_remote_init(struct rb_remote *rm, struct rumpblk *rb,
    const struct rb_backing_ops *ops, const char *spec)
{
	rm->rm_rb = rb;
	atomic_init(&rm->rm_unit, -1);
	rm->rm_bk.bk_ops = ops;
	pthread_mutex_init(&rm->rm_msglock, NULL);
	return (rm->rm_bk.bk_spec = strdup(spec)) == NULL ? ENOMEM : 0;
}

void
rb_remote_fini(struct rb_remote *rm)
{
	pthread_mutex_destroy(&rm->rm_msglock);
	free(rm->rm_bk.bk_spec);
}

void
rb_remote_status(struct rb_remote *rm, const char *fmt, ...)
{
	va_list ap;

	rb_mutex_lock(&rm->rm_msglock);
	va_start(ap, fmt);
	(void)vsnprintf(rm->rm_msg, sizeof(rm->rm_msg), fmt, ap);
	va_end(ap);
	rb_mutex_unlock(&rm->rm_msglock);
}

void
rb_remote_msg(struct rb_remote *rm, char *buf, size_t len)
{
	rb_mutex_lock(&rm->rm_msglock);
	snprintf(buf, len, "%s", rm->rm_msg);
	rb_mutex_unlock(&rm->rm_msglock);
}

void
rb_remote_event(struct rb_remote *rm, int event)
{
	int unit = atomic_load(&rm->rm_unit);

	if (unit >= 0)
		rb_event_raise(rm->rm_rb, unit, event);
}

void
rb_remote_say(const struct rumpblk_unit_opts *o, const char *fmt, ...)
{
	va_list ap;

	if (o->uo_errbuf == NULL || o->uo_errlen == 0)
		return;
	va_start(ap, fmt);
	(void)vsnprintf(o->uo_errbuf, o->uo_errlen, fmt, ap);
	va_end(ap);
}

int
rb_remote_window(struct rb_remote *rm, const struct rumpblk_unit_opts *o,
    uint64_t total, const char *what)
{
	if (total < o->uo_offset || (o->uo_size != RUMPBLK_SIZENOTSET &&
	    o->uo_size > total - o->uo_offset)) {
		rb_remote_say(o, "the window does not fit the %s (%llu bytes)",
		    what, (unsigned long long)total);
		return EINVAL;
	}
	rm->rm_bk.bk_off = o->uo_offset;
	rm->rm_bk.bk_total = total;
	rm->rm_bk.bk_size = o->uo_size == RUMPBLK_SIZENOTSET ?
	    total - o->uo_offset : o->uo_size;
	return 0;
}

bool
rb_remote_same(const struct rb_backing *a, const struct rb_backing *b)
{
	return a->bk_ops == b->bk_ops && strcmp(a->bk_spec, b->bk_spec) == 0 &&
	    a->bk_off == b->bk_off && a->bk_size == b->bk_size;
}

bool
rb_remote_named(const struct rb_backing *bk, const struct rb_bkey *k)
{
	return strcmp(bk->bk_spec, k->k_spec) == 0;
}

int
rb_remote_stage(struct rb_unit *u, enum rumpblk_backend kind,
    const struct rb_ops *ops, enum rumpblk_backend backend,
    struct rb_stage **stp)
{
	struct rb_remote *rm = (struct rb_remote *)u->u_backing;
	struct rb_stage *st;

	if (kind != RUMPBLK_BACKEND_AUTO)
		return EINVAL;
	if ((st = calloc(1, sizeof(*st))) == NULL)
		return ENOMEM;
	rb_stage_init(st, ops, u, RB_RANK_BACKEND);
	u->u_backend_kind = backend;
	atomic_store(&rm->rm_unit, u->u_index);
	*stp = st;
	return 0;
}
