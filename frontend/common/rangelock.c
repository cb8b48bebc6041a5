/*
 * The range lock over an export, which every connection of the NBD
 * server, and every thread of the FUSE export, shares.  Aligned writes,
 * trims and zeroes hold their byte range shared from submission to
 * completion; a read-modify-write of unaligned edges holds its covering
 * range exclusive, so that it is atomic against every other write.
 * Reads take no range.
 *
 * It is not a general-purpose lock: it has no fairness and no ordering
 * between waiters.  The trade-off is simplicity over speed: held ranges
 * sit in two unsorted lists, so a lock costs O(ranges held), and every
 * release wakes every waiter.  Both are cheap because the ranges held
 * are bounded by the requests in flight, and exclusive ones come only
 * from unaligned requests (NBD clients that did not negotiate block
 * sizes, FUSE writes at odd offsets).
 */
#include <stdlib.h>

#include "rangelock.h"

static void
lock(pthread_mutex_t *m)
{
	if (pthread_mutex_lock(m) != 0)
		abort();
}

static void
unlock(pthread_mutex_t *m)
{
	if (pthread_mutex_unlock(m) != 0)
		abort();
}

void
fe_rl_init(struct fe_rangelock *rl)
{
	pthread_mutex_init(&rl->rl_lock, NULL);
	pthread_cond_init(&rl->rl_cv, NULL);
	rl->rl_shared = rl->rl_excl = NULL;
	rl->rl_waiters = 0;
}

void
fe_rl_fini(struct fe_rangelock *rl)
{
	pthread_cond_destroy(&rl->rl_cv);
	pthread_mutex_destroy(&rl->rl_lock);
}

static bool
overlaps(const struct fe_range *list, uint64_t start, uint64_t end)
{
	for (; list != NULL; list = list->rg_next)
		if (list->rg_start < end && start < list->rg_end)
			return true;
	return false;
}

void
fe_rl_lock(struct fe_rangelock *rl, struct fe_range *rg, uint64_t start,
    uint64_t end, bool excl)
{
	struct fe_range **head;

	rg->rg_start = start;
	rg->rg_end = end;
	rg->rg_excl = excl;
	lock(&rl->rl_lock);
	while (overlaps(rl->rl_excl, start, end) ||
	    (excl && overlaps(rl->rl_shared, start, end))) {
		rl->rl_waiters++;
		pthread_cond_wait(&rl->rl_cv, &rl->rl_lock);
		rl->rl_waiters--;
	}
	head = excl ? &rl->rl_excl : &rl->rl_shared;
	rg->rg_prev = NULL;
	rg->rg_next = *head;
	if (*head != NULL)
		(*head)->rg_prev = rg;
	*head = rg;
	unlock(&rl->rl_lock);
}

void
fe_rl_unlock(struct fe_rangelock *rl, struct fe_range *rg)
{
	lock(&rl->rl_lock);
	if (rg->rg_prev != NULL)
		rg->rg_prev->rg_next = rg->rg_next;
	else if (rg->rg_excl)
		rl->rl_excl = rg->rg_next;
	else
		rl->rl_shared = rg->rg_next;
	if (rg->rg_next != NULL)
		rg->rg_next->rg_prev = rg->rg_prev;
	/*
	 * Wake whoever waits.  Testing "an exclusive range is held" instead
	 * lost the wake-up of an exclusive locker (a read-modify-write)
	 * waiting for shared ranges, which it has not inserted yet: the
	 * fuzzer found that hang.
	 */
	if (rl->rl_waiters > 0)
		pthread_cond_broadcast(&rl->rl_cv);
	unlock(&rl->rl_lock);
}
