/*
 * test-mmap-loan: reads that lend the window's bytes (RUMPBLK_B_LOAN,
 * librumpblk(3)) instead of copying them.
 *
 *   - covering windows lend: LOANED set, b_data the driver's, the bytes
 *     the file's, bytes_lent counted, rumpblk_unloan gives b_data back;
 *     a lent range shows a later write (it is the medium's bytes)
 *   - what never lends: a read across two windows, a write with LOAN, a
 *     read a fault rule fires on, a unit with a write cache; LOANED
 *     passed in is EINVAL; a read the fault layer passes is lent
 *   - a small window cache: at most half its windows lent; the loans
 *     stay mapped and right while every other window is remapped many
 *     times (ASan and the compare see freed or stale bytes); after the
 *     unloans the windows lend and evict again
 *   - deregistration waits for the loans out
 *   - a lent range of a file truncated underneath: write(2) from it
 *     fails with EFAULT, the process lives (the NBD server's "clean
 *     error": its send fails and the connection ends)
 */
#include <pthread.h>
#include <stdatomic.h>

#include "testlib.h"

#define KiB	1024u
#define MiB	(1024u * 1024u)

/* A synchronous read with LOAN into b; returns b_error. */
static int
lend(struct rumpblk *rb, struct rumpblk_buf *b, int unit, uint64_t off,
    void *buf, size_t len)
{
	tl_buf(b, unit, RUMPBLK_B_READ | RUMPBLK_B_LOAN,
	    (int64_t)(off / 512), buf, len);
	rumpblk_strategy(rb, b);
	return rumpblk_biowait(b);
}

static void
covering(void **state)
{
	struct rumpblk *rb = tl_mmap_create(4 * MiB, 4);
	char *img = tl_image("cover.img", 8 * MiB, 3);
	char *buf = malloc(1 * MiB), *w = malloc(4096);
	struct rumpblk_buf b;
	struct rumpblk_stats st;
	size_t resid;
	int unit;

	(void)state;
	assert(buf != NULL && w != NULL);
	tl_eq(rumpblk_register(rb, img, 0, RUMPBLK_SIZENOTSET, &unit), 0);
	memset(buf, 0x5a, 1 * MiB);
	tl_eq(lend(rb, &b, unit, 3 * MiB, buf, 1 * MiB), 0);
	if ((b.b_flags & RUMPBLK_B_LOANED) == 0)
		tl_fail("a read within a covering window was not lent\n");
	tl_eq(b.b_resid, 0);
	if (b.b_data == buf)
		tl_fail("lent, but b_data is still the caller's buffer\n");
	tl_eq(tl_check(b.b_data, 1 * MiB, 3 * MiB, 3), -1);
	tl_eq(tl_all(buf, 1 * MiB, 0x5a), 1);	/* untouched */
	rumpblk_stats(rb, unit, &st);
	tl_eq(st.bytes_lent, 1 * MiB);
	tl_eq(st.bytes_read, 1 * MiB);

	/* The medium's bytes: a write shows through the loan. */
	memset(w, 0xe7, 4096);
	tl_eq(tl_io(rb, unit, RUMPBLK_B_WRITE, (3 * MiB + 8192) / 512, w,
	    4096, &resid), 0);
	tl_eq(tl_all((char *)b.b_data + 8192, 4096, 0xe7), 1);

	rumpblk_unloan(rb, &b);
	tl_eq(b.b_flags & RUMPBLK_B_LOANED, 0);
	if (b.b_data != buf)
		tl_fail("rumpblk_unloan did not restore b_data\n");
	rumpblk_unloan(rb, &b);		/* not lent: nothing to do */
	tl_eq(rumpblk_deregister_unit(rb, unit), 0);
	tl_eq(rumpblk_destroy(rb), 0);
	free(buf);
	free(w);
	free(img);
}

static void
never_lends(void **state)
{
	struct rumpblk *rb = tl_mmap_create(64 * KiB, 16);
	char *img = tl_image("never.img", 1 * MiB, 5);
	char *buf = malloc(128 * KiB), id[64], err[256];
	struct rumpblk_buf b;
	struct rumpblk_stats st;
	size_t resid;
	int unit;

	(void)state;
	assert(buf != NULL);
	tl_eq(rumpblk_register(rb, img, 0, RUMPBLK_SIZENOTSET, &unit), 0);
	/* Across two windows: copied, right. */
	tl_eq(lend(rb, &b, unit, 32 * KiB, buf, 64 * KiB), 0);
	tl_eq(b.b_flags & RUMPBLK_B_LOANED, 0);
	if (b.b_data != buf)
		tl_fail("a copied read changed b_data\n");
	tl_eq(tl_check(buf, 64 * KiB, 32 * KiB, 5), -1);

	/* LOAN on a write: ignored, the write lands. */
	tl_fill(buf, 4096, 0, 77);
	tl_buf(&b, unit, RUMPBLK_B_WRITE | RUMPBLK_B_LOAN, 0, buf, 4096);
	rumpblk_strategy(rb, &b);
	tl_eq(rumpblk_biowait(&b), 0);
	tl_eq(b.b_flags & RUMPBLK_B_LOANED, 0);
	memset(buf, 0, 4096);
	tl_host_read(img, buf, 4096, 0);
	tl_eq(tl_check(buf, 4096, 0, 77), -1);

	/* LOANED is an output: passed in, EINVAL. */
	tl_buf(&b, unit, RUMPBLK_B_READ | RUMPBLK_B_LOANED, 0, buf, 4096);
	rumpblk_strategy(rb, &b);
	tl_eq(rumpblk_biowait(&b), EINVAL);

	/* The fault layer lets a read it passes as it came through with
	 * its loan (a rule on writes only)... */
	tl_eq(rumpblk_fault_add(rb, "error,op=write,nth=1000000", id,
	    sizeof(id), err, sizeof(err)), 0);
	tl_eq(lend(rb, &b, unit, 128 * KiB, buf, 4096), 0);
	if ((b.b_flags & RUMPBLK_B_LOANED) == 0)
		tl_fail("a read no rule selects was not lent\n");
	tl_eq(tl_check(b.b_data, 4096, 128 * KiB, 5), -1);
	rumpblk_unloan(rb, &b);
	/* ... but a read a rule fires on is copied (the layer sees it). */
	tl_eq(rumpblk_fault_add(rb, "delay,op=read,ms=0.001", id,
	    sizeof(id), err, sizeof(err)), 0);
	memset(buf, 0, 4096);
	tl_eq(lend(rb, &b, unit, 128 * KiB, buf, 4096), 0);
	tl_eq(b.b_flags & RUMPBLK_B_LOANED, 0);
	tl_eq(tl_check(buf, 4096, 128 * KiB, 5), -1);
	tl_eq(rumpblk_fault_clear(rb), 0);
	rumpblk_stats(rb, unit, &st);
	tl_eq(st.bytes_lent, 4096);

	/* A write cache holds data the medium lacks: it bars loans, also
	 * of what it does not hold. */
	tl_eq(rumpblk_write_cache(rb, unit, 1 * MiB), 0);
	tl_fill(buf, 4096, 0, 78);
	tl_eq(tl_io(rb, unit, RUMPBLK_B_WRITE | RUMPBLK_B_ASYNC, 0, buf,
	    4096, &resid), 0);
	memset(buf, 0, 4096);
	tl_eq(lend(rb, &b, unit, 0, buf, 4096), 0);
	tl_eq(b.b_flags & RUMPBLK_B_LOANED, 0);
	tl_eq(tl_check(buf, 4096, 0, 78), -1);
	tl_eq(lend(rb, &b, unit, 256 * KiB, buf, 4096), 0);
	tl_eq(b.b_flags & RUMPBLK_B_LOANED, 0);
	tl_eq(tl_check(buf, 4096, 256 * KiB, 5), -1);
	tl_eq(rumpblk_destroy(rb), 0);
	free(buf);
	free(img);
}

/*
 * 8 windows of 64 KiB over 2 MiB: loans take at most 4; with 4 lent,
 * read the whole unit twice (each of its 32 windows mapped through the
 * 4 that are left), then check the lent bytes.
 */
static void
small_cache(void **state)
{
	struct rumpblk *rb = tl_mmap_create(64 * KiB, 8);
	char *img = tl_image("small.img", 2 * MiB, 9);
	char *buf[6], *all = malloc(64 * KiB);
	struct rumpblk_buf b[6];
	struct rumpblk_stats st;
	size_t resid;
	uint64_t off;
	int unit, i, lent = 0, pass;

	(void)state;
	assert(all != NULL);
	tl_eq(rumpblk_register(rb, img, 0, RUMPBLK_SIZENOTSET, &unit), 0);
	for (i = 0; i < 6; i++) {
		buf[i] = malloc(16 * KiB);
		assert(buf[i] != NULL);
		/* Map the window first: a miss copies. */
		tl_eq(tl_io(rb, unit, RUMPBLK_B_READ, (int64_t)(i * 64 *
		    KiB / 512), buf[i], 16 * KiB, &resid), 0);
		tl_eq(lend(rb, &b[i], unit, (uint64_t)i * 64 * KiB + 4096,
		    buf[i], 16 * KiB), 0);
		if (b[i].b_flags & RUMPBLK_B_LOANED)
			lent++;
		else if (b[i].b_data != buf[i])
			tl_fail("copied read %d changed b_data\n", i);
		tl_eq(tl_check(b[i].b_data, 16 * KiB, (uint64_t)i * 64 * KiB +
		    4096, 9), -1);
	}
	tl_eq(lent, 4);
	for (pass = 0; pass < 2; pass++)
		for (off = 0; off < 2 * MiB; off += 64 * KiB) {
			tl_eq(tl_io(rb, unit, RUMPBLK_B_READ,
			    (int64_t)(off / 512), all, 64 * KiB, &resid), 0);
			tl_eq(tl_check(all, 64 * KiB, off, 9), -1);
		}
	for (i = 0; i < 6; i++) {
		tl_eq(tl_check(b[i].b_data, 16 * KiB, (uint64_t)i * 64 * KiB +
		    4096, 9), -1);
		rumpblk_unloan(rb, &b[i]);
		if (b[i].b_data != buf[i])
			tl_fail("unloan %d did not restore b_data\n", i);
	}
	rumpblk_stats(rb, unit, &st);
	if (st.win_misses < 2 * 32 - 8)
		tl_fail("only %" PRIu64 " misses: the free windows were not "
		    "reused\n", st.win_misses);
	tl_eq(st.bytes_lent, 4 * 16 * KiB);
	/* Every loan is back: again six reads, four lent. */
	lent = 0;
	for (i = 0; i < 6; i++) {
		tl_eq(tl_io(rb, unit, RUMPBLK_B_READ, (int64_t)((i + 20) *
		    64 * KiB / 512), buf[i], 16 * KiB, &resid), 0);
		tl_eq(lend(rb, &b[i], unit, (uint64_t)(i + 20) * 64 * KiB,
		    buf[i], 16 * KiB), 0);
		lent += (b[i].b_flags & RUMPBLK_B_LOANED) != 0;
	}
	tl_eq(lent, 4);
	for (i = 0; i < 6; i++) {
		rumpblk_unloan(rb, &b[i]);
		free(buf[i]);
	}
	tl_eq(rumpblk_destroy(rb), 0);
	free(all);
	free(img);
}

struct dereg {
	struct rumpblk	*rb;
	int		unit;
	int		error;
	_Atomic int	done;
};

static void *
dereg_thread(void *arg)
{
	struct dereg *d = arg;

	d->error = rumpblk_deregister_unit(d->rb, d->unit);
	atomic_store(&d->done, 1);
	return NULL;
}

static void
deregister_waits(void **state)
{
	struct rumpblk *rb = tl_mmap_create(1 * MiB, 4);
	char *img = tl_image("dereg.img", 1 * MiB, 11);
	char buf[4096];
	struct rumpblk_buf b;
	struct dereg d = { .rb = rb };
	pthread_t t;

	(void)state;
	tl_eq(rumpblk_register(rb, img, 0, RUMPBLK_SIZENOTSET, &d.unit), 0);
	tl_eq(lend(rb, &b, d.unit, 8192, buf, sizeof(buf)), 0);
	if ((b.b_flags & RUMPBLK_B_LOANED) == 0)
		tl_fail("not lent\n");
	tl_eq(pthread_create(&t, NULL, dereg_thread, &d), 0);
	/* It cannot end while the loan is out (a slow machine only makes
	 * this check weaker, never wrong). */
	usleep(50000);
	tl_eq(atomic_load(&d.done), 0);
	tl_eq(tl_check(b.b_data, sizeof(buf), 8192, 11), -1);
	rumpblk_unloan(rb, &b);
	tl_eq(pthread_join(t, NULL), 0);
	tl_eq(d.error, 0);
	tl_eq(rumpblk_destroy(rb), 0);
	free(img);
}

static void
truncated(void **state)
{
	struct rumpblk *rb = tl_mmap_create(1 * MiB, 4);
	char *img = tl_image("trunc.img", 1 * MiB, 13);
	char buf[65536];
	struct rumpblk_buf b;
	int unit, p[2];

	(void)state;
	tl_eq(rumpblk_register(rb, img, 0, RUMPBLK_SIZENOTSET, &unit), 0);
	tl_eq(lend(rb, &b, unit, 512 * KiB, buf, sizeof(buf)), 0);
	if ((b.b_flags & RUMPBLK_B_LOANED) == 0)
		tl_fail("not lent\n");
	tl_eq(truncate(img, 0), 0);
	tl_eq(pipe(p), 0);
	errno = 0;
	tl_eq(write(p[1], b.b_data, 4096), -1);
	tl_eq(errno, EFAULT);
	close(p[0]);
	close(p[1]);
	rumpblk_unloan(rb, &b);
	tl_eq(rumpblk_destroy(rb), 0);
	free(img);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(covering),
		cmocka_unit_test(never_lends),
		cmocka_unit_test(small_cache),
		cmocka_unit_test(deregister_waits),
		cmocka_unit_test(truncated),
	};

	return tl_main(tests, NULL, NULL);
}
