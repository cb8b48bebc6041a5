/*
 * test-stats-hist: the latency histograms (issue 17).  Bucket boundaries
 * of the log-linear layout, checked against an independent computation;
 * the percentile math on histograms built by hand, against the exact
 * quantiles of the same samples; and the histograms the library keeps:
 * per op, counts exact whatever the sampling (timed = the sum of the
 * buckets <= count), every request of a bound connection record timed
 * and counted in the record, closed records summed as "ended", fault
 * firings timed per class, a deregistered unit's share kept by the
 * instance, the in-flight gauge back to 0; and connections on threads
 * of their own, read meanwhile, summed exactly when they end.
 */
#include "testlib.h"

#include <pthread.h>

#define IMGSIZE	(1 << 20)

/* The upper bound of bucket i, computed apart from the library's. */
static uint64_t
bound_ref(unsigned i)
{
	uint64_t base;
	unsigned o, j;

	if (i == 0)
		return 128;
	if (i >= RUMPBLK_HIST_BUCKETS - 1)
		return UINT64_MAX;
	o = (i - 1) / 8;
	j = (i - 1) % 8;
	base = 128ull << o;		/* the octave [base, 2 base) */
	return base + (j + 1) * (base / 8);
}

static void
bucket_boundaries(void **state)
{
	uint64_t prev = 0, b;
	unsigned i;

	(void)state;
	tl_eq(RUMPBLK_HIST_BUCKETS, 242);
	tl_eq(rumpblk_hist_bucket(0), 0);
	tl_eq(rumpblk_hist_bucket(1), 0);
	tl_eq(rumpblk_hist_bucket(128), 0);
	tl_eq(rumpblk_hist_bucket(129), 1);
	tl_eq(rumpblk_hist_bucket(144), 1);
	tl_eq(rumpblk_hist_bucket(145), 2);
	tl_eq(rumpblk_hist_bucket(256), 8);
	tl_eq(rumpblk_hist_bucket(257), 9);
	tl_eq(rumpblk_hist_bucket(1000), rumpblk_hist_bucket(1024));
	tl_eq(rumpblk_hist_bucket(1ull << 37), 240);
	tl_eq(rumpblk_hist_bucket((1ull << 37) + 1), 241);
	tl_eq(rumpblk_hist_bucket(UINT64_MAX), 241);
	tl_true(rumpblk_hist_bound(241) == UINT64_MAX);
	tl_true(rumpblk_hist_bound(5000) == UINT64_MAX);
	for (i = 0; i < RUMPBLK_HIST_BUCKETS; i++) {
		b = rumpblk_hist_bound(i);
		if (b != bound_ref(i))
			tl_fail("bound(%u) = %llu, expected %llu\n", i,
			    (unsigned long long)b,
			    (unsigned long long)bound_ref(i));
		tl_true(b > prev || i == 0);
		/* (bound(i-1), bound(i)] is bucket i, both ends. */
		tl_eq(rumpblk_hist_bucket(prev + 1), i);
		if (b != UINT64_MAX) {
			tl_eq(rumpblk_hist_bucket(b), i);
			tl_eq(rumpblk_hist_bucket(b + 1), i + 1);
		}
		/* No bucket past the first is wider than 1/8 of its lower
		 * bound (the layout's promise). */
		if (i >= 2 && b != UINT64_MAX)
			tl_true((b - prev) * 8 <= prev);
		prev = b;
	}
	/* 100 ns to 100 s, as the issue asks. */
	tl_true(rumpblk_hist_bound(0) <= 128);
	tl_true(rumpblk_hist_bound(RUMPBLK_HIST_BUCKETS - 2) >= 100000000000ull);
}

static int
cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* Fill h with the n samples v (and sort v). */
static void
hist_of(struct rumpblk_hist *h, uint64_t *v, size_t n)
{
	size_t i;

	memset(h, 0, sizeof(*h));
	for (i = 0; i < n; i++) {
		h->h_buckets[rumpblk_hist_bucket(v[i])]++;
		h->h_count++;
		h->h_timed++;
		h->h_sum_ns += v[i];
		if (v[i] > h->h_max_ns)
			h->h_max_ns = v[i];
	}
	qsort(v, n, sizeof(*v), cmp_u64);
}

/* The estimate of q is within a bucket's half width (1/16) of the
 * exact quantile (the sample of rank ceil(q n)), or within bucket 0
 * ([0, 128] ns, the layout's floor). */
static void
check_quantiles(const struct rumpblk_hist *h, const uint64_t *v, size_t n)
{
	static const double qs[] = { 0, 0.01, 0.5, 0.9, 0.99, 0.999, 1 };
	uint64_t est, exact, rank;
	size_t k;

	for (k = 0; k < sizeof(qs) / sizeof(qs[0]); k++) {
		rank = (uint64_t)(qs[k] * (double)n);
		if ((double)rank < qs[k] * (double)n)
			rank++;
		exact = v[rank == 0 ? 0 : rank - 1];
		est = rumpblk_hist_quantile(h, qs[k]);
		if ((est > exact ? est - exact : exact - est) > exact / 16 + 128)
			tl_fail("q %g: %llu, exact %llu (n %zu)\n", qs[k],
			    (unsigned long long)est,
			    (unsigned long long)exact, n);
		tl_true(est <= h->h_max_ns);
	}
	tl_eq(rumpblk_hist_quantile(h, 1), h->h_max_ns);
}

static void
percentile_math(void **state)
{
	static uint64_t v[100000];
	struct rumpblk_hist h;
	uint64_t x = 0x9e3779b97f4a7c15ull;
	size_t i;

	(void)state;
	memset(&h, 0, sizeof(h));
	tl_eq(rumpblk_hist_quantile(&h, 0.5), 0);

	/* One sample: every quantile is in its bucket, at most it. */
	v[0] = 1000;
	hist_of(&h, v, 1);
	tl_true(rumpblk_hist_quantile(&h, 0.5) > 960);
	tl_true(rumpblk_hist_quantile(&h, 0.5) <= 1000);
	tl_eq(rumpblk_hist_quantile(&h, 1), 1000);

	/* Evenly spread, 1 us .. 100 ms. */
	for (i = 0; i < 100000; i++)
		v[i] = 1000 + i * 1000;
	hist_of(&h, v, 100000);
	check_quantiles(&h, v, 100000);
	/* p50 of 1..100 ms by 1 us steps: the 50000th sample. */
	tl_true(llabs((long long)rumpblk_hist_quantile(&h, 0.5) - 50000000) <
	    50000000 / 16);

	/* Spread over every octave from 100 ns to 13 s, pseudo-random. */
	for (i = 0; i < 100000; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		v[i] = (100ull << (x % 28)) + (x >> 20) % (100ull << (x % 28));
	}
	hist_of(&h, v, 100000);
	check_quantiles(&h, v, 100000);

	/* A two-mode mix (a delay rule on a fifth of the requests). */
	for (i = 0; i < 1000; i++)
		v[i] = i % 5 == 0 ? 20000000 + i : 5000 + i;
	hist_of(&h, v, 1000);
	check_quantiles(&h, v, 1000);
	tl_true(rumpblk_hist_quantile(&h, 0.5) < 10000);
	tl_true(rumpblk_hist_quantile(&h, 0.9) >= 20000000 * 15 / 16);

	/* Past the last bound: the maximum stands for the bucket. */
	v[0] = 200ull * 1000000000;
	v[1] = 300ull * 1000000000;
	hist_of(&h, v, 2);
	tl_eq(h.h_buckets[RUMPBLK_HIST_BUCKETS - 1], 2);
	tl_eq(rumpblk_hist_quantile(&h, 1), 300ull * 1000000000);
	tl_true(rumpblk_hist_quantile(&h, 0.5) >= 1ull << 37);
	tl_true(rumpblk_hist_quantile(&h, 0.5) <= 300ull * 1000000000);
}

static uint64_t
bucket_sum(const struct rumpblk_hist *h)
{
	uint64_t s = 0;
	unsigned i;

	for (i = 0; i < RUMPBLK_HIST_BUCKETS; i++)
		s += h->h_buckets[i];
	return s;
}

/* The histogram of op on unit: count, and timed (== count with all). */
static void
expect_op(struct rumpblk *rb, int unit, int op, uint64_t count, bool all)
{
	struct rumpblk_hist h;

	tl_eq(rumpblk_hist_op(rb, unit, op, &h), 0);
	if (h.h_count != count)
		tl_fail("unit %d op %#x: count %llu, expected %llu\n", unit,
		    op, (unsigned long long)h.h_count,
		    (unsigned long long)count);
	tl_eq(bucket_sum(&h), h.h_timed);
	tl_true(h.h_timed <= h.h_count);
	if (all)
		tl_eq(h.h_timed, count);
	if (h.h_timed > 0)
		tl_true(h.h_max_ns <= h.h_sum_ns);
	else
		tl_eq(h.h_sum_ns, 0);
}

/* n of each op on unit: reads, writes, flushes, trims, zeroes, extents. */
static void
ops(struct rumpblk *rb, int unit, int n)
{
	static char buf[4096];
	static uint64_t exbuf[(sizeof(struct rumpblk_extents) +
	    4 * sizeof(struct rumpblk_extent)) / 8 + 1];
	struct rumpblk_extents *ex = (struct rumpblk_extents *)exbuf;
	int i;

	for (i = 0; i < n; i++) {
		tl_eq(tl_io(rb, unit, RUMPBLK_B_READ, i * 8, buf, 4096, NULL),
		    0);
		tl_eq(tl_io(rb, unit, RUMPBLK_B_WRITE, i * 8, buf, 4096, NULL),
		    0);
		tl_eq(tl_io(rb, unit, RUMPBLK_B_FLUSH, 0, NULL, 0, NULL), 0);
		/* Some hosts cannot trim or zero: counted all the same. */
		(void)tl_io(rb, unit, RUMPBLK_B_TRIM, 512, NULL, 4096, NULL);
		(void)tl_io(rb, unit, RUMPBLK_B_ZERO, 520, NULL, 4096, NULL);
		memset(exbuf, 0, sizeof(exbuf));
		ex->ex_max = 4;
		(void)tl_io(rb, unit, RUMPBLK_B_EXTENTS, 0, ex, 65536, NULL);
	}
}

static void
expect_ops(struct rumpblk *rb, int unit, uint64_t n, bool all)
{
	expect_op(rb, unit, RUMPBLK_B_READ, n, all);
	expect_op(rb, unit, RUMPBLK_B_WRITE, n, all);
	expect_op(rb, unit, RUMPBLK_B_FLUSH, n, all);
	expect_op(rb, unit, RUMPBLK_B_TRIM, n, all);
	expect_op(rb, unit, RUMPBLK_B_ZERO, n, all);
	expect_op(rb, unit, RUMPBLK_B_EXTENTS, n, all);
}

static void
counts_exact(void **state)
{
	struct rumpblk_config cfg;
	struct rumpblk_hist h;
	struct rumpblk *rb;
	char *a = tl_image("a.img", IMGSIZE, 1), *b = tl_image("b.img",
	    IMGSIZE, 2);
	uint64_t n;
	int ua, ub;
	char buf[512];

	(void)state;
	/* Sampled (the default, 1 in 64): counts exact, timed fewer. */
	tl_config(&cfg);
	rb = tl_create(&cfg);
	ua = tl_register(rb, a, 0, RUMPBLK_SIZENOTSET);
	ub = tl_register(rb, b, 0, RUMPBLK_SIZENOTSET);
	ops(rb, ua, 100);
	ops(rb, ub, 30);
	expect_ops(rb, ua, 100, false);
	expect_ops(rb, ub, 30, false);
	expect_ops(rb, -1, 130, false);
	/* A refused request (past the end) is no completed request. */
	tl_eq(tl_io(rb, ua, RUMPBLK_B_READ, IMGSIZE / 512 + 8, buf, 512,
	    NULL), EINVAL);
	expect_op(rb, ua, RUMPBLK_B_READ, 100, false);
	tl_eq(rumpblk_hist_op(rb, ua, RUMPBLK_B_READ | RUMPBLK_B_WRITE, &h),
	    EINVAL);
	tl_eq(rumpblk_hist_op(rb, 7, RUMPBLK_B_READ, &h), ENXIO);
	tl_eq(rumpblk_inflight(rb, ua, &n), 0);
	tl_eq(n, 0);
	tl_eq(rumpblk_inflight(rb, -1, &n), 0);
	tl_eq(n, 0);
	tl_eq(rumpblk_inflight(rb, 7, &n), ENXIO);
	/* A deregistered unit's share stays in the instance's. */
	tl_eq(rumpblk_deregister(rb, b), 0);
	expect_ops(rb, -1, 130, false);
	tl_eq(rumpblk_destroy(rb), 0);

	/* lat_sample 1: every request timed. */
	tl_config(&cfg);
	cfg.lat_sample = 1;
	rb = tl_create(&cfg);
	ua = tl_register(rb, a, 0, RUMPBLK_SIZENOTSET);
	ops(rb, ua, 20);
	expect_ops(rb, ua, 20, true);
	tl_eq(rumpblk_destroy(rb), 0);
	free(a);
	free(b);
}

static void
connections(void **state)
{
	struct rumpblk_config cfg;
	struct rumpblk_conn_info info[4];
	struct rumpblk_hist h;
	struct rumpblk *rb;
	char *a = tl_image("c.img", IMGSIZE, 3);
	size_t n;
	int ua, c1, c2, c3;

	(void)state;
	tl_config(&cfg);
	cfg.lat_sample = 1000000;	/* nothing sampled but the bound */
	rb = tl_create(&cfg);
	ua = tl_register(rb, a, 0, RUMPBLK_SIZENOTSET);
	tl_eq(rumpblk_conn_open(rb, ua, "nbd#1 unix", &c1), 0);
	tl_eq(rumpblk_conn_open(rb, ua, "nbd#2 tcp", &c2), 0);
	tl_true(c1 != c2);
	tl_eq(rumpblk_conn_list(rb, info, 4, &n), 0);
	tl_eq(n, 2);
	tl_true(strcmp(info[0].ci_label, "nbd#1 unix") == 0);
	tl_eq(info[0].ci_unit, ua);
	tl_eq(rumpblk_conn_bind(rb, 99), ENOENT);

	/* Bound: every request is timed, in the record and the unit. */
	tl_eq(rumpblk_conn_bind(rb, c1), 0);
	ops(rb, ua, 10);
	tl_eq(rumpblk_conn_bind(rb, c2), 0);
	ops(rb, ua, 3);
	tl_eq(rumpblk_conn_bind(rb, -1), 0);
	ops(rb, ua, 5);			/* neither's, and not timed */
	expect_ops(rb, ua, 18, false);
	/* 13 bound reads timed (and maybe one the thread's sampling
	 * countdown, shared with the earlier subtests, picked). */
	tl_eq(rumpblk_hist_op(rb, ua, RUMPBLK_B_READ, &h), 0);
	tl_true(h.h_timed >= 13 && h.h_timed <= 14);
	tl_eq(rumpblk_conn_hist(rb, c1, RUMPBLK_B_READ, &h), 0);
	tl_eq(h.h_count, 10);
	tl_eq(h.h_timed, 10);
	tl_eq(bucket_sum(&h), 10);
	tl_eq(rumpblk_conn_hist(rb, c1, RUMPBLK_B_EXTENTS, &h), 0);
	tl_eq(h.h_count, 10);
	tl_eq(rumpblk_conn_hist(rb, c2, RUMPBLK_B_FLUSH, &h), 0);
	tl_eq(h.h_count, 3);
	tl_eq(rumpblk_conn_hist(rb, c2, 3, &h), EINVAL);

	/* Closed: gone from the list, summed in the ended record; a stale
	 * binding counts nowhere; the record is reused. */
	tl_eq(rumpblk_conn_bind(rb, c1), 0);
	tl_eq(rumpblk_conn_close(rb, c2), 0);
	tl_eq(rumpblk_conn_close(rb, c2), ENOENT);
	tl_eq(rumpblk_conn_hist(rb, c2, RUMPBLK_B_READ, &h), ENOENT);
	tl_eq(rumpblk_conn_hist(rb, RUMPBLK_CONN_ENDED, RUMPBLK_B_WRITE, &h),
	    0);
	tl_eq(h.h_count, 3);
	tl_eq(rumpblk_conn_close(rb, c1), 0);	/* unbinds us too */
	ops(rb, ua, 2);
	tl_eq(rumpblk_conn_hist(rb, RUMPBLK_CONN_ENDED, RUMPBLK_B_WRITE, &h),
	    0);
	tl_eq(h.h_count, 13);
	tl_eq(h.h_timed, 13);
	tl_eq(rumpblk_conn_list(rb, info, 4, &n), 0);
	tl_eq(n, 0);
	tl_eq(rumpblk_conn_open(rb, ua, "again", &c3), 0);
	tl_true(c3 == c1 || c3 == c2);
	tl_eq(rumpblk_conn_hist(rb, c3, RUMPBLK_B_READ, &h), 0);
	tl_eq(h.h_count, 0);
	/* Left open: destroy frees it. */
	tl_eq(rumpblk_destroy(rb), 0);
	free(a);
}

static void
fault_classes(void **state)
{
	struct rumpblk_hist h;
	struct rumpblk *rb;
	char *a = tl_image("f.img", IMGSIZE, 4), buf[4096], err[256];
	int ua, i;

	(void)state;
	rb = tl_create(NULL);
	ua = tl_register(rb, a, 0, RUMPBLK_SIZENOTSET);
	tl_eq(rumpblk_fault_add(rb, "delay,op=read,ms=2,every=2", NULL, 0, err,
	    sizeof(err)), 0);
	tl_eq(rumpblk_fault_add(rb, "error,op=write,nth=3", NULL, 0, err,
	    sizeof(err)), 0);
	for (i = 0; i < 10; i++)
		tl_eq(tl_io(rb, ua, RUMPBLK_B_READ, i * 8, buf, 4096, NULL), 0);
	for (i = 0; i < 4; i++)
		(void)tl_io(rb, ua, RUMPBLK_B_WRITE, i * 8, buf, 4096, NULL);
	tl_eq(rumpblk_hist_fault(rb, ua, RUMPBLK_FAULT_DELAY, &h), 0);
	tl_eq(h.h_count, 5);
	tl_eq(h.h_timed, 5);
	/* A delay of 2 ms: nothing faster in its histogram. */
	for (i = 0; i <= (int)rumpblk_hist_bucket(2000000) - 1; i++)
		tl_eq(h.h_buckets[i], 0);
	tl_true(rumpblk_hist_quantile(&h, 0.5) >= 2000000 * 15 / 16);
	tl_eq(rumpblk_hist_fault(rb, ua, RUMPBLK_FAULT_ERROR, &h), 0);
	tl_eq(h.h_count, 1);
	tl_eq(h.h_timed, 1);
	tl_eq(rumpblk_hist_fault(rb, -1, RUMPBLK_FAULT_DELAY, &h), 0);
	tl_eq(h.h_count, 5);
	tl_eq(rumpblk_hist_fault(rb, ua, RUMPBLK_FAULT_CORRUPT, &h), 0);
	tl_eq(h.h_count, 0);
	tl_eq(rumpblk_hist_fault(rb, ua, RUMPBLK_FAULT_NCLASS, &h), EINVAL);
	/* The reads' own histogram: every read counted. */
	expect_op(rb, ua, RUMPBLK_B_READ, 10, false);
	tl_eq(rumpblk_destroy(rb), 0);
	free(a);
}

/* Concurrent connections: a thread each, reads synchronous and through
 * the worker pool, while the main thread reads the records. */
#define CC_THREADS	4
#define CC_READS	300

struct cc_arg {
	struct rumpblk	*rb;
	int		unit;
	int		error;
};

static void *
cc_thread(void *p)
{
	struct cc_arg *a = p;
	char buf[4096], label[32];
	int id, i, e;

	snprintf(label, sizeof(label), "t%p", p);
	if ((e = rumpblk_conn_open(a->rb, a->unit, label, &id)) != 0 ||
	    (e = rumpblk_conn_bind(a->rb, id)) != 0) {
		a->error = e;
		return NULL;
	}
	for (i = 0; i < CC_READS && a->error == 0; i++)
		a->error = tl_io(a->rb, a->unit, RUMPBLK_B_READ |
		    (i % 2 ? RUMPBLK_B_ASYNC : 0), (i % 64) * 8, buf, 4096,
		    NULL);
	if (a->error == 0)
		a->error = rumpblk_conn_close(a->rb, id);
	return NULL;
}

static void
concurrent_connections(void **state)
{
	struct rumpblk_conn_info info[CC_THREADS];
	struct cc_arg args[CC_THREADS];
	pthread_t th[CC_THREADS];
	struct rumpblk_hist h;
	struct rumpblk *rb;
	char *a = tl_image("cc.img", IMGSIZE, 5);
	uint64_t n;
	size_t nc, k;
	int i, ua;

	(void)state;
	rb = tl_create(NULL);
	ua = tl_register(rb, a, 0, RUMPBLK_SIZENOTSET);
	for (i = 0; i < CC_THREADS; i++) {
		args[i] = (struct cc_arg){ rb, ua, 0 };
		tl_eq(pthread_create(&th[i], NULL, cc_thread, &args[i]), 0);
	}
	/* Readers of everything meanwhile (TSan's business). */
	for (i = 0; i < 200; i++) {
		tl_eq(rumpblk_conn_list(rb, info, CC_THREADS, &nc), 0);
		for (k = 0; k < nc && k < CC_THREADS; k++)
			(void)rumpblk_conn_hist(rb, info[k].ci_id,
			    RUMPBLK_B_READ, &h);
		tl_eq(rumpblk_hist_op(rb, -1, RUMPBLK_B_READ, &h), 0);
		tl_eq(rumpblk_inflight(rb, ua, &n), 0);
	}
	for (i = 0; i < CC_THREADS; i++) {
		tl_eq(pthread_join(th[i], NULL), 0);
		tl_eq(args[i].error, 0);
	}
	tl_eq(rumpblk_conn_hist(rb, RUMPBLK_CONN_ENDED, RUMPBLK_B_READ, &h),
	    0);
	tl_eq(h.h_count, CC_THREADS * CC_READS);
	tl_eq(bucket_sum(&h), CC_THREADS * CC_READS);
	expect_op(rb, ua, RUMPBLK_B_READ, CC_THREADS * CC_READS, true);
	/* A request's reference goes after its waiter wakes (a pool
	 * worker's completion returns after biowait's caller went on):
	 * the gauge reaches 0 once the last completion has returned. */
	for (i = 0; i < 5000; i++) {
		tl_eq(rumpblk_inflight(rb, ua, &n), 0);
		if (n == 0)
			break;
		usleep(1000);
	}
	tl_eq(n, 0);
	tl_eq(rumpblk_destroy(rb), 0);
	free(a);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(bucket_boundaries),
		cmocka_unit_test(percentile_math),
		cmocka_unit_test(counts_exact),
		cmocka_unit_test(connections),
		cmocka_unit_test(fault_classes),
		cmocka_unit_test(concurrent_connections),
	};

	return tl_main(tests, NULL, NULL);
}
