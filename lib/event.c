/*
 * Events: what the library tells front ends about a unit, such as "unit
 * reset" (a power cut: drop every connection to it now).  A front end
 * subscribes a callback; rumpblk_unit_reset() and the layers that cut
 * power raise the event.
 *
 * Subscriptions change rarely and events are rarer still, so one
 * read-write lock guards the list: an event is delivered under the read
 * side, unsubscribing takes the write side, and so once unsubscribe
 * returns no callback of that subscription runs or will run.  A callback
 * may call into the library, but not subscribe or unsubscribe (it holds
 * the read side).  Nothing here is on the I/O path.
 *
 * Locks: e = rb_evlock.
 */
#include <errno.h>
#include <stdlib.h>

#include "internal.h"

struct rb_sub {
	rumpblk_event_fn sb_fn;	/* e */
	void		*sb_arg;	/* e */
	int		sb_id;		/* e */
};

int
rumpblk_event_subscribe(struct rumpblk *rb, rumpblk_event_fn fn, void *arg,
    int *idp)
{
	struct rb_sub *ns;

	if (fn == NULL || idp == NULL)
		return EINVAL;
	if (pthread_rwlock_wrlock(&rb->rb_evlock) != 0)
		abort();
	ns = realloc(rb->rb_subs, (rb->rb_nsubs + 1) * sizeof(*ns));
	if (ns == NULL) {
		pthread_rwlock_unlock(&rb->rb_evlock);
		return ENOMEM;
	}
	rb->rb_subs = ns;
	ns[rb->rb_nsubs].sb_fn = fn;
	ns[rb->rb_nsubs].sb_arg = arg;
	ns[rb->rb_nsubs].sb_id = *idp = ++rb->rb_nextsub;
	rb->rb_nsubs++;
	pthread_rwlock_unlock(&rb->rb_evlock);
	return 0;
}

int
rumpblk_event_unsubscribe(struct rumpblk *rb, int id)
{
	int error = ENOENT;

	if (pthread_rwlock_wrlock(&rb->rb_evlock) != 0)
		abort();
	for (size_t i = 0; i < rb->rb_nsubs; i++) {
		if (rb->rb_subs[i].sb_id != id)
			continue;
		rb->rb_subs[i] = rb->rb_subs[--rb->rb_nsubs];
		error = 0;
		break;
	}
	pthread_rwlock_unlock(&rb->rb_evlock);
	return error;
}

/* Deliver an event to every subscriber, in this thread. */
void
rb_event_raise(struct rumpblk *rb, int unit, int event)
{
	if (pthread_rwlock_rdlock(&rb->rb_evlock) != 0)
		abort();
	for (size_t i = 0; i < rb->rb_nsubs; i++)
		rb->rb_subs[i].sb_fn(rb->rb_subs[i].sb_arg, unit, event);
	pthread_rwlock_unlock(&rb->rb_evlock);
}

/* Free the subscriptions (destroy: nobody calls in any more). */
void
rb_event_fini(struct rumpblk *rb)
{
	free(rb->rb_subs);
	rb->rb_subs = NULL;
	rb->rb_nsubs = 0;
	pthread_rwlock_destroy(&rb->rb_evlock);
}
