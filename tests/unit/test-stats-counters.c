/*
 * test-stats-counters: counters after known workloads.  io_total counts
 * every strategy call (rejected and fault-failed ones included), io_async
 * the asynchronous ones, byte counters the bytes moved, io_errors the
 * calls completed with an error; latency records count exactly the
 * requests that reached the device (timed <= count, the histogram sums to
 * timed); win_* stay 0 outside mmap.  Per unit and per instance (-1): the
 * instance is the sum, and keeps a deregistered unit's share; a unit slot
 * used again starts from zero.
 */
#include "testlib.h"

#define IMGSIZE	(1 << 20)

static uint64_t
hist_sum(const struct rumpblk_latency *l)
{
	uint64_t s = 0;
	int i;

	for (i = 0; i < RUMPBLK_LAT_BUCKETS; i++)
		s += l->hist[i];
	return s;
}

static void
check_latency(const struct rumpblk_latency *l, uint64_t count)
{
	tl_eq(l->count, count);
	tl_true(l->timed <= l->count);
	tl_eq(hist_sum(l), l->timed);
	tl_true(l->max_ns <= l->total_ns);
	if (l->timed == 0)
		tl_eq(l->total_ns, 0);
}

/*
 * The workload, on one unit: returns nothing, the expectations are in
 * known_workload().
 */
static void
workload(struct rumpblk *rb, int unit)
{
	static char buf[8192];
	int i;

	for (i = 0; i < 10; i++)	/* 10 reads of 4 KiB */
		tl_eq(tl_io(rb, unit, RUMPBLK_B_READ, i * 8, buf, 4096, NULL),
		    0);
	for (i = 0; i < 5; i++)		/* 5 sync writes of 8 KiB */
		tl_eq(tl_io(rb, unit, RUMPBLK_B_WRITE, 256 + i * 16, buf, 8192,
		    NULL), 0);
	for (i = 0; i < 3; i++)		/* 3 async writes of 4 KiB */
		tl_eq(tl_io(rb, unit, RUMPBLK_B_WRITE | RUMPBLK_B_ASYNC,
		    512 + i * 8, buf, 4096, NULL), 0);
	/* 2 async reads of 512 */
	tl_eq(tl_io(rb, unit, RUMPBLK_B_READ | RUMPBLK_B_ASYNC, 0, buf, 512,
	    NULL), 0);
	tl_eq(tl_io(rb, unit, RUMPBLK_B_READ | RUMPBLK_B_ASYNC, 1, buf, 512,
	    NULL), 0);
	/* 2 rejected: not a sector multiple */
	tl_eq(tl_io(rb, unit, RUMPBLK_B_READ, 0, buf, 100, NULL), EINVAL);
	tl_eq(tl_io(rb, unit, RUMPBLK_B_WRITE, 0, buf, 1000, NULL), EINVAL);
	/* 1 past the end, 1 at the end (no error, nothing moved) */
	tl_eq(tl_io(rb, unit, RUMPBLK_B_READ, IMGSIZE / 512 + 1, buf, 512,
	    NULL), EINVAL);
	tl_eq(tl_io(rb, unit, RUMPBLK_B_READ, IMGSIZE / 512, buf, 512, NULL),
	    0);
	/* 1 straddling read moving 2048 of 4096 */
	tl_eq(tl_io(rb, unit, RUMPBLK_B_READ, IMGSIZE / 512 - 4, buf, 4096,
	    NULL), 0);
	/* 1 FLUSH buffer, 1 DIOCCACHESYNC */
	tl_eq(tl_io(rb, unit, RUMPBLK_B_FLUSH, 0, NULL, 0, NULL), 0);
	tl_eq(rumpblk_ioctl(rb, unit, RUMPBLK_DIOCCACHESYNC, NULL), 0);
}

static void
expect_workload(const struct rumpblk_stats *st, uint64_t times)
{
	/* 10 + 5 + 3 + 2 + 2 + 2 + 1 + 1 (flush) strategy calls */
	tl_eq(st->io_total, 26 * times);
	tl_eq(st->io_async, 5 * times);
	tl_eq(st->bytes_read, (10 * 4096 + 2 * 512 + 2048) * times);
	tl_eq(st->bytes_written, (5 * 8192 + 3 * 4096) * times);
	tl_eq(st->bytes_written_async, 3 * 4096 * times);
	tl_eq(st->io_errors, 3 * times);
	tl_eq(st->flushes, 2 * times);
	tl_eq(st->faults_injected, 0);
	/* Window counters are the mmap backend's alone. */
	if (tl_backend() != RUMPBLK_BACKEND_MMAP) {
		tl_eq(st->win_hits, 0);
		tl_eq(st->win_busy, 0);
		tl_eq(st->win_misses, 0);
	}
	check_latency(&st->lat_read, 13 * times);
	check_latency(&st->lat_write, 8 * times);
	check_latency(&st->lat_flush, 2 * times);
}

static void
known_workload(void **state)
{
	struct rumpblk_config cfg;
	struct rumpblk_stats st;
	struct rumpblk *rb;
	char *img = tl_image("stats.img", IMGSIZE, 3);
	int unit;

	(void)state;
	tl_config(&cfg);
	rb = tl_create(&cfg);
	unit = tl_register(rb, img, 0, RUMPBLK_SIZENOTSET);
	rumpblk_stats(rb, unit, &st);
	tl_eq(st.io_total, 0);
	workload(rb, unit);
	rumpblk_stats(rb, unit, &st);
	expect_workload(&st, 1);
	rumpblk_stats(rb, -1, &st);
	expect_workload(&st, 1);
	tl_eq(rumpblk_destroy(rb), 0);

	/* Every request timed: timed == count, sums add up. */
	cfg.lat_sample = 1;
	rb = tl_create(&cfg);
	unit = tl_register(rb, img, 0, RUMPBLK_SIZENOTSET);
	workload(rb, unit);
	rumpblk_stats(rb, unit, &st);
	expect_workload(&st, 1);
	tl_eq(st.lat_read.timed, st.lat_read.count);
	tl_eq(st.lat_write.timed, st.lat_write.count);
	tl_true(st.lat_write.total_ns > 0);
	tl_true(st.lat_write.max_ns > 0);
	tl_eq(rumpblk_destroy(rb), 0);
	free(img);
}

static void
unit_vs_instance(void **state)
{
	struct rumpblk_stats st, sa, sb;
	struct rumpblk *rb;
	char *a = tl_image("stats-a.img", IMGSIZE, 4);
	char *b = tl_image("stats-b.img", IMGSIZE, 5);
	char *c = tl_image("stats-c.img", IMGSIZE, 6);
	char buf[512];
	int ua, ub, uc;

	(void)state;
	rb = tl_create(NULL);
	ua = tl_register(rb, a, 0, RUMPBLK_SIZENOTSET);
	ub = tl_register(rb, b, 0, RUMPBLK_SIZENOTSET);
	workload(rb, ua);
	workload(rb, ub);
	workload(rb, ub);
	/* Calls to no unit count in the instance only, async ones also
	 * in io_async. */
	tl_eq(tl_io(rb, 12, RUMPBLK_B_READ, 0, buf, 512, NULL), ENXIO);
	tl_eq(tl_io(rb, 12, RUMPBLK_B_WRITE | RUMPBLK_B_ASYNC, 0, buf, 512,
	    NULL), ENXIO);
	rumpblk_stats(rb, ua, &sa);
	rumpblk_stats(rb, ub, &sb);
	expect_workload(&sa, 1);
	expect_workload(&sb, 2);
	rumpblk_stats(rb, -1, &st);
	tl_eq(st.io_total, 26 * 3 + 2);
	tl_eq(st.io_errors, 3 * 3 + 2);
	tl_eq(st.io_async, 5 * 3 + 1);
	tl_eq(st.bytes_read, sa.bytes_read + sb.bytes_read);
	tl_eq(st.lat_read.count, 13 * 3);
	tl_eq(st.lat_write.max_ns, sa.lat_write.max_ns > sb.lat_write.max_ns ?
	    sa.lat_write.max_ns : sb.lat_write.max_ns);
	rumpblk_stats(rb, 12, &st);
	tl_eq(st.io_total, 0);

	/* Deregister b: its share stays in the instance. */
	tl_eq(rumpblk_deregister(rb, b), 0);
	rumpblk_stats(rb, ub, &st);
	tl_eq(st.io_total, 0);
	rumpblk_stats(rb, -1, &st);
	tl_eq(st.io_total, 26 * 3 + 2);
	tl_eq(st.bytes_written, sa.bytes_written + sb.bytes_written);
	tl_eq(st.lat_flush.count, 2 * 3);

	/* c takes b's slot and starts from zero. */
	uc = tl_register(rb, c, 0, RUMPBLK_SIZENOTSET);
	tl_eq(uc, ub);
	rumpblk_stats(rb, uc, &st);
	tl_eq(st.io_total, 0);
	tl_eq(st.bytes_read, 0);
	tl_eq(st.lat_read.count, 0);
	workload(rb, uc);
	rumpblk_stats(rb, uc, &st);
	expect_workload(&st, 1);
	rumpblk_stats(rb, -1, &st);
	tl_eq(st.io_total, 26 * 4 + 2);
	tl_eq(st.lat_read.count, 13 * 4);

	/* Deregister everything: the instance keeps the whole sum. */
	tl_eq(rumpblk_deregister(rb, a), 0);
	tl_eq(rumpblk_deregister(rb, c), 0);
	rumpblk_stats(rb, -1, &st);
	tl_eq(st.io_total, 26 * 4 + 2);
	tl_eq(st.io_async, 5 * 4 + 1);
	tl_eq(st.bytes_written_async, 3 * 4096 * 4);
	tl_eq(rumpblk_destroy(rb), 0);
	free(a);
	free(b);
	free(c);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(known_workload),
		cmocka_unit_test(unit_vs_instance),
	};

	return tl_main(tests, NULL, NULL);
}
