/*
 * A range lock over an export, for the front ends (frontend/common/
 * rangelock.c).  The NBD server and the FUSE export both hold aligned
 * writes, trims and zeroes shared from submission to completion, and a
 * read-modify-write of unaligned edges exclusive over its covering
 * range, so that it is atomic against every other write.  Reads take no
 * range.
 *
 * Threads: any; a range is the locker's until fe_rl_unlock().
 */
#ifndef RUMPBLK_FE_RANGELOCK_H
#define RUMPBLK_FE_RANGELOCK_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

/* Locks: l = rl_lock. */
struct fe_range {
	uint64_t	rg_start;	/* bytes, inclusive */
	uint64_t	rg_end;		/* bytes, exclusive */
	bool		rg_excl;
	struct fe_range	*rg_prev, *rg_next;	/* l */
};

struct fe_rangelock {
	pthread_mutex_t	rl_lock;
	pthread_cond_t	rl_cv;		/* l: a range was released */
	struct fe_range	*rl_shared;	/* l: held shared */
	struct fe_range	*rl_excl;	/* l: held exclusive */
	unsigned	rl_waiters;	/* l: threads in fe_rl_lock's wait */
};

void	fe_rl_init(struct fe_rangelock *);
void	fe_rl_fini(struct fe_rangelock *);
/*
 * Hold [start, end) (bytes) shared or exclusive, waiting for ranges in
 * the way; rg (the caller's storage) is on the lock's lists until
 * fe_rl_unlock().
 */
void	fe_rl_lock(struct fe_rangelock *, struct fe_range *rg,
	    uint64_t start, uint64_t end, bool excl);
void	fe_rl_unlock(struct fe_rangelock *, struct fe_range *rg);

#endif
