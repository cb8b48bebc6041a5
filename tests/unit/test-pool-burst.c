/*
 * test-pool-burst: the worker pool runs a burst of asynchronous work in
 * parallel, also when threads are already idle.  Each round leaves one
 * idle worker behind (a finished warm-up item), then submits NWORK items
 * that each wait until all NWORK have started: with a pool of NWORK or
 * more threads that must happen.  As first written the pool counted an
 * idle thread it had already signalled as still idle, so a burst went to
 * that one thread and ran serially.
 *
 * Uses the pool's internal interface (lib/internal.h), so it links the
 * static library.  The waits are bounded (a stuck round fails after 10 s;
 * that is a hang guard, not a timing requirement).
 */
#include <pthread.h>
#include <time.h>

#include "testlib.h"
#include "internal.h"

#define NWORK	4
#define ROUNDS	20

static pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static int started, finished, stuck, stuck_started, warm;

static void
barrier_work(struct rb_io *io)
{
	struct timespec ts;

	(void)io;
	pthread_mutex_lock(&m);
	started++;
	pthread_cond_broadcast(&cv);
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += 10;
	while (started < NWORK && !stuck)
		if (pthread_cond_timedwait(&cv, &m, &ts) == ETIMEDOUT) {
			stuck = 1;
			stuck_started = started;
		}
	finished++;
	pthread_cond_broadcast(&cv);
	pthread_mutex_unlock(&m);
}

static void
warm_work(struct rb_io *io)
{
	(void)io;
	pthread_mutex_lock(&m);
	warm = 1;
	pthread_cond_broadcast(&cv);
	pthread_mutex_unlock(&m);
}

static void
burst(void **state)
{
	static struct rb_io ios[NWORK + 1];
	struct timespec pause = { 0, 20 * 1000 * 1000 };
	struct rb_pool *pl;
	int i, round;

	(void)state;
	for (round = 0; round < ROUNDS; round++) {
		tl_eq(rb_pool_create(2 * NWORK, &pl), 0);
		/* One worker, then let it go idle. */
		warm = 0;
		memset(ios, 0, sizeof(ios));
		ios[NWORK].io_work = warm_work;
		rb_pool_submit(pl, &ios[NWORK]);
		pthread_mutex_lock(&m);
		while (!warm)
			pthread_cond_wait(&cv, &m);
		pthread_mutex_unlock(&m);
		nanosleep(&pause, NULL);

		started = finished = 0;
		for (i = 0; i < NWORK; i++) {
			ios[i].io_work = barrier_work;
			rb_pool_submit(pl, &ios[i]);
		}
		pthread_mutex_lock(&m);
		while (finished < NWORK)
			pthread_cond_wait(&cv, &m);
		pthread_mutex_unlock(&m);
		rb_pool_destroy(pl);
		if (stuck)
			tl_fail("round %d: of a burst of %d items only %d ran "
			    "at once\n", round, NWORK, stuck_started);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(burst),
	};

	return tl_main(tests, NULL, NULL);
}
