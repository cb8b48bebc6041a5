/*
 * test-concurrency-deregister: deregister racing the first asynchronous
 * buffers of a unit.  Each round registers the image afresh, releases
 * several threads that each submit an asynchronous write (the first ones
 * of the unit, which start the instance's worker pool) and, at the same
 * moment, deregisters.  Every buffer must complete (with 0 or ENXIO) and
 * deregister must return: as first written, the first asynchronous submission took
 * the instance lock with a unit reference held, while deregister held
 * that lock waiting for the reference to go, and both hung.
 *
 * Then the same with completion callbacks that call back into the
 * library (rumpblk_stats) while deregister waits for their buffers.
 *
 * A watchdog turns a hang into a failure with a message (the rounds are
 * bounded in count; the watchdog only guards against a deadlock).
 */
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>

#include "testlib.h"

#define NTHREADS	4
#define ROUNDS		400

static struct rumpblk *rb;
static char *img;
static pthread_barrier_t go, done_barrier;
static atomic_int unit_now, bad_errors, stop;

static void
watchdog(int sig)
{
	static const char msg[] = "test-concurrency-deregister: deadlock: "
	    "deregister and asynchronous submissions did not finish\n";

	(void)sig;
	if (write(2, msg, sizeof(msg) - 1) < 0)
		_exit(1);
	_exit(1);
}

static void *
submitter(void *arg)
{
	struct rumpblk_buf b;
	char data[4096];
	int error, i = (int)(intptr_t)arg;

	memset(data, i, sizeof(data));
	for (;;) {
		pthread_barrier_wait(&go);
		if (atomic_load(&stop))
			break;
		tl_buf(&b, atomic_load(&unit_now),
		    RUMPBLK_B_WRITE | RUMPBLK_B_ASYNC, (int64_t)i * 8, data,
		    sizeof(data));
		rumpblk_strategy(rb, &b);
		error = rumpblk_biowait(&b);
		if (error != 0 && error != ENXIO)
			atomic_fetch_add(&bad_errors, 1);
		pthread_barrier_wait(&done_barrier);
	}
	return NULL;
}

/* Stop the submitters, then check and free what a round test made. */
static void
finish(pthread_t *th)
{
	int i;

	atomic_store(&stop, 1);
	pthread_barrier_wait(&go);
	for (i = 0; i < NTHREADS; i++)
		pthread_join(th[i], NULL);
	alarm(0);
	tl_eq(atomic_load(&bad_errors), 0);
	tl_eq(rumpblk_destroy(rb), 0);
	rb = NULL;
	pthread_barrier_destroy(&go);
	pthread_barrier_destroy(&done_barrier);
}

static void
race(void **state)
{
	pthread_t th[NTHREADS];
	int i, round;

	(void)state;
	signal(SIGALRM, watchdog);
	alarm(60);
	pthread_barrier_init(&go, NULL, NTHREADS + 1);
	pthread_barrier_init(&done_barrier, NULL, NTHREADS + 1);
	for (i = 0; i < NTHREADS; i++)
		pthread_create(&th[i], NULL, submitter, (void *)(intptr_t)i);
	for (round = 0; round < ROUNDS; round++) {
		/* A new instance now and then: its pool starts afresh. */
		if (round % 8 == 0) {
			if (rb != NULL)
				tl_eq(rumpblk_destroy(rb), 0);
			rb = tl_create(NULL);
		}
		atomic_store(&unit_now, tl_register(rb, img, 0,
		    RUMPBLK_SIZENOTSET));
		pthread_barrier_wait(&go);
		tl_eq(rumpblk_deregister(rb, img), 0);
		pthread_barrier_wait(&done_barrier);
	}
	finish(th);
}

/*
 * A completion callback may call into the library: here b_iodone takes a
 * snapshot of the instance's counters while another thread deregisters
 * the unit.  As first written deregister held the instance lock while it
 * waited for the unit's references, and the callback (which runs while
 * its buffer still holds one) waited for that lock.
 */
static void
stats_iodone(struct rumpblk_buf *bp)
{
	struct rumpblk_stats st;

	rumpblk_stats(rb, -1, &st);
	__atomic_store_n((int *)bp->b_private, 1, __ATOMIC_RELEASE);
}

static void *
callback_submitter(void *arg)
{
	struct rumpblk_buf b;
	char data[4096];
	int k, done, i = (int)(intptr_t)arg;

	memset(data, i, sizeof(data));
	for (;;) {
		pthread_barrier_wait(&go);
		if (atomic_load(&stop))
			break;
		/* Keep I/O going until the unit is gone. */
		for (k = 0; k < 1000; k++) {
			done = 0;
			tl_buf(&b, atomic_load(&unit_now), (k % 2 ?
			    RUMPBLK_B_READ : RUMPBLK_B_WRITE) |
			    (i % 2 ? RUMPBLK_B_ASYNC : 0), (int64_t)i * 8, data,
			    sizeof(data));
			b.b_iodone = stats_iodone;
			b.b_private = &done;
			rumpblk_strategy(rb, &b);
			while (!__atomic_load_n(&done, __ATOMIC_ACQUIRE))
				sched_yield();
			if (b.b_error == ENXIO)
				break;
			if (b.b_error != 0)
				atomic_fetch_add(&bad_errors, 1);
		}
		pthread_barrier_wait(&done_barrier);
	}
	return NULL;
}

static void
iodone_calls_in(void **state)
{
	pthread_t th[NTHREADS];
	int i, round;

	(void)state;
	signal(SIGALRM, watchdog);
	alarm(60);
	atomic_store(&stop, 0);
	atomic_store(&bad_errors, 0);
	pthread_barrier_init(&go, NULL, NTHREADS + 1);
	pthread_barrier_init(&done_barrier, NULL, NTHREADS + 1);
	rb = tl_create(NULL);
	for (i = 0; i < NTHREADS; i++)
		pthread_create(&th[i], NULL, callback_submitter,
		    (void *)(intptr_t)i);
	for (round = 0; round < 50; round++) {
		atomic_store(&unit_now, tl_register(rb, img, 0,
		    RUMPBLK_SIZENOTSET));
		pthread_barrier_wait(&go);
		sched_yield();
		tl_eq(rumpblk_deregister(rb, img), 0);
		pthread_barrier_wait(&done_barrier);
	}
	finish(th);
}

TL_IMAGE_FIXTURE(img, "dereg-race.img", 64 << 10, 0)

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(race),
		cmocka_unit_test(iodone_calls_in),
	};

	return tl_main(tests, setup, teardown);
}
