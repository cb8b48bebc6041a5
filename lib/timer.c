/*
 * The timer of an instance: one thread that runs callbacks at deadlines,
 * for every layer that needs one (a fault rule's delay, a cache's
 * write-back, anything scheduled).  Entries are the callers' own (struct
 * rb_timer embedded in their per-request state), so adding one never
 * allocates and never fails.
 *
 * The queue is a list sorted by deadline.  Most entries come in with the
 * latest deadline so far (the same delay for every request of a rule),
 * so insertion checks the tail first and is O(1) then; an entry that
 * lands earlier walks from the head.  The thread starts on the first
 * entry, so an instance that never schedules anything never has it.
 * Callbacks run with no lock held.
 *
 * Locks: t = tms_lock, a leaf.
 */
#include <errno.h>
#include <time.h>

#include "internal.h"

struct rb_timers {
	pthread_mutex_t	tms_lock;
	pthread_cond_t	tms_cond;	/* t: queue head changed, or stop */
	struct rb_timer	*tms_head;	/* t: by deadline */
	struct rb_timer	*tms_tail;	/* t */
	bool		tms_started;	/* t */
	bool		tms_stop;	/* t */
	pthread_t	tms_thread;	/* t */
};

int
rb_timers_create(struct rb_timers **tp)
{
	struct rb_timers *t;
	pthread_condattr_t ca;

	if ((t = calloc(1, sizeof(*t))) == NULL)
		return ENOMEM;
	pthread_mutex_init(&t->tms_lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&t->tms_cond, &ca);
	pthread_condattr_destroy(&ca);
	*tp = t;
	return 0;
}

static void *
timer_main(void *arg)
{
	struct rb_timers *t = arg;
	struct rb_timer *e;
	struct timespec ts;

	(void)pthread_setname_np(pthread_self(), "rb-timer");
	rb_mutex_lock(&t->tms_lock);
	for (;;) {
		if ((e = t->tms_head) == NULL) {
			if (t->tms_stop)
				break;
			pthread_cond_wait(&t->tms_cond, &t->tms_lock);
			continue;
		}
		/* Stopping: what is queued runs now, not never. */
		if (e->tm_deadline > rb_now_ns() && !t->tms_stop) {
			ts.tv_sec = (time_t)(e->tm_deadline / 1000000000u);
			ts.tv_nsec = (long)(e->tm_deadline % 1000000000u);
			pthread_cond_timedwait(&t->tms_cond, &t->tms_lock, &ts);
			continue;
		}
		if ((t->tms_head = e->tm_next) == NULL)
			t->tms_tail = NULL;
		rb_mutex_unlock(&t->tms_lock);
		e->tm_fn(e);
		rb_mutex_lock(&t->tms_lock);
	}
	rb_mutex_unlock(&t->tms_lock);
	return NULL;
}

void
rb_timer_add(struct rumpblk *rb, struct rb_timer *e, uint64_t ns,
    void (*fn)(struct rb_timer *))
{
	struct rb_timers *t = rb->rb_timers;
	struct rb_timer **pp;
	bool wake;

	e->tm_deadline = rb_now_ns() + ns;
	e->tm_fn = fn;
	e->tm_next = NULL;
	rb_mutex_lock(&t->tms_lock);
	if (!t->tms_started) {
		if (t->tms_stop || pthread_create(&t->tms_thread, NULL,
		    timer_main, t) != 0) {
			/* No thread: now rather than never. */
			rb_mutex_unlock(&t->tms_lock);
			fn(e);
			return;
		}
		t->tms_started = true;
	}
	if (t->tms_tail == NULL || t->tms_tail->tm_deadline <= e->tm_deadline) {
		wake = t->tms_head == NULL;
		if (t->tms_tail != NULL)
			t->tms_tail->tm_next = e;
		else
			t->tms_head = e;
		t->tms_tail = e;
	} else {
		for (pp = &t->tms_head; (*pp)->tm_deadline <= e->tm_deadline;
		    pp = &(*pp)->tm_next)
			;
		wake = pp == &t->tms_head;
		e->tm_next = *pp;
		*pp = e;
	}
	if (wake)
		pthread_cond_signal(&t->tms_cond);
	rb_mutex_unlock(&t->tms_lock);
}

void
rb_timers_destroy(struct rb_timers *t)
{
	if (t == NULL)
		return;
	rb_mutex_lock(&t->tms_lock);
	t->tms_stop = true;
	pthread_cond_broadcast(&t->tms_cond);
	rb_mutex_unlock(&t->tms_lock);
	if (t->tms_started)
		pthread_join(t->tms_thread, NULL);
	pthread_cond_destroy(&t->tms_cond);
	pthread_mutex_destroy(&t->tms_lock);
	free(t);
}
