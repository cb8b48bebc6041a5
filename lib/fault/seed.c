/*
 * Seed-mode fault injection: the seed driver's RUMP_BLKFAIL.
 *
 * Every read or write strategy call draws from a 32-bit LCG,
 * state = state * 1103515245 + 12345, and fails with EIO when
 * (state % 0x80000000) % 10000 < fail.  The draw order is the order of
 * strategy calls, so with one submitting thread a (seed, fail) pair fails
 * exactly the I/Os the seed's driver failed.  The state advances with a
 * compare-and-swap, so concurrent submitters each get a distinct draw
 * without a lock.  With fail == 0 strategy never gets here.
 */
#include <errno.h>
#include <sys/random.h>
#include <time.h>

#include "../internal.h"

uint32_t
rb_seedfail_next(uint32_t *state)
{
	*state = *state * 1103515245u + 12345u;
	return *state % 0x80000000u;
}

bool
rb_seedfail_draw(struct rumpblk *rb)
{
	uint32_t old, new, r;

	old = atomic_load_explicit(&rb->rb_randstate, memory_order_relaxed);
	do {
		new = old;
		r = rb_seedfail_next(&new);
	} while (!atomic_compare_exchange_weak_explicit(&rb->rb_randstate,
	    &old, new, memory_order_relaxed, memory_order_relaxed));
	return r % RUMPBLK_BLKFAIL_MAX < rb->rb_cfg.fail;
}

int
rb_random_seed(uint32_t *seed)
{
	struct timespec ts;

	if (getrandom(seed, sizeof(*seed), GRND_NONBLOCK) ==
	    (ssize_t)sizeof(*seed))
		return 0;
	clock_gettime(CLOCK_REALTIME, &ts);
	*seed = (uint32_t)ts.tv_nsec ^ (uint32_t)ts.tv_sec;
	return 0;
}
