/*
 * test-stats-shards: counters stay exact however many threads update
 * them.  A thread owns a shard (plain loads and stores) while it lives,
 * threads beyond the exclusive shards share one with atomic adds, and an
 * exiting thread's shard passes to a new thread.  Three waves of 20
 * threads (more than RB_NSHARDS) each do a known number of reads and
 * writes, some asynchronous (completed on workers, which count in their
 * own shards); io_total, bytes and latency counts must add up exactly.
 * Each thread has blocks of its own: two threads writing the same bytes
 * of an mmap window would be a data race of the caller's.
 */
#include <pthread.h>

#include "testlib.h"

#define NTHREADS	20
#define NWAVES		3
#define NIO		200

static struct rumpblk *g_rb;
static int g_unit;

static void *
worker(void *arg)
{
	char buf[4096];
	size_t resid;
	long id = (long)arg, errors = 0;
	int i, flags;

	memset(buf, (int)id, sizeof(buf));
	for (i = 0; i < NIO; i++) {
		flags = i % 2 ? RUMPBLK_B_READ : RUMPBLK_B_WRITE;
		if (i % 4 == 0)
			flags |= RUMPBLK_B_ASYNC;
		if (tl_io(g_rb, g_unit, flags, (id * NIO + i) * 8, buf,
		    sizeof(buf), &resid) != 0)
			errors++;
	}
	return (void *)errors;
}

static void
exact_counts(void **state)
{
	struct rumpblk_config cfg;
	struct rumpblk_stats st;
	char *img = tl_image("shards.img", (uint64_t)NWAVES * NTHREADS *
	    NIO * 4096, 0);
	pthread_t t[NTHREADS];
	uint64_t n = (uint64_t)NWAVES * NTHREADS * NIO;
	void *ret;
	long errors = 0;
	int w, i;

	(void)state;
	tl_config(&cfg);
	tl_eq(rumpblk_create(&cfg, &g_rb), 0);
	tl_eq(rumpblk_register(g_rb, img, 0, RUMPBLK_SIZENOTSET, &g_unit), 0);
	for (w = 0; w < NWAVES; w++) {
		for (i = 0; i < NTHREADS; i++)
			tl_eq(pthread_create(&t[i], NULL, worker,
			    (void *)(long)(w * NTHREADS + i)), 0);
		for (i = 0; i < NTHREADS; i++) {
			tl_eq(pthread_join(t[i], &ret), 0);
			errors += (long)ret;
		}
	}
	tl_eq(errors, 0);
	rumpblk_stats(g_rb, g_unit, &st);
	tl_eq(st.io_total, n);
	tl_eq(st.io_async, n / 4);
	tl_eq(st.bytes_read, n / 2 * 4096);
	tl_eq(st.bytes_written, n / 2 * 4096);
	tl_eq(st.bytes_written_async, n / 4 * 4096);
	tl_eq(st.lat_read.count, n / 2);
	tl_eq(st.lat_write.count, n / 2);
	tl_eq(st.io_errors, 0);
	/* The instance's view adds up the same. */
	rumpblk_stats(g_rb, -1, &st);
	tl_eq(st.io_total, n);
	tl_eq(rumpblk_destroy(g_rb), 0);
	free(img);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(exact_counts),
	};

	return tl_main(tests, NULL, NULL);
}
