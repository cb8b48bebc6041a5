/*
 * test-strategy-completion: b_iodone runs exactly once for every buffer
 * (sync, async, rejected, on an unknown unit), with b_error and b_resid
 * set and b_private untouched; rumpblk_biowait() works on sync and async
 * buffers without b_iodone, also after they completed; RUMPBLK_B_ASYNC
 * counts in io_async; a completed buffer can be submitted again with only
 * its public fields set.
 */
#include <pthread.h>
#include <stdatomic.h>

#include "testlib.h"

#define NBUF	64

struct slot {
	atomic_int	calls;
	int		error;
	size_t		resid;
};

static struct slot slots[NBUF];
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static int ndone;

static void
iodone(struct rumpblk_buf *bp)
{
	struct slot *s = bp->b_private;

	s->error = bp->b_error;
	s->resid = bp->b_resid;
	atomic_fetch_add(&s->calls, 1);
	pthread_mutex_lock(&lock);
	ndone++;
	pthread_cond_signal(&cv);
	pthread_mutex_unlock(&lock);
}

static void
wait_done(int n)
{
	pthread_mutex_lock(&lock);
	while (ndone < n)
		pthread_cond_wait(&cv, &lock);
	pthread_mutex_unlock(&lock);
}

static void
iodone_once(void **state)
{
	static struct rumpblk_buf bufs[NBUF];
	static char data[NBUF][4096];
	struct rumpblk_stats st;
	struct rumpblk *rb;
	char *img = tl_image("cmp.img", 1 << 20, 5);
	int unit, i, kind, want_err[NBUF];
	size_t want_resid[NBUF];

	(void)state;
	rb = tl_create(NULL);
	unit = tl_register(rb, img, 0, RUMPBLK_SIZENOTSET);
	ndone = 0;
	for (i = 0; i < NBUF; i++) {
		atomic_store(&slots[i].calls, 0);
		kind = i % 8;
		want_err[i] = 0;
		want_resid[i] = 0;
		switch (kind) {
		case 0:		/* sync read */
			tl_buf(&bufs[i], unit, RUMPBLK_B_READ, i * 8, data[i],
			    4096);
			break;
		case 1:		/* sync write */
			tl_buf(&bufs[i], unit, RUMPBLK_B_WRITE, i * 8, data[i],
			    4096);
			break;
		case 2:		/* async read */
			tl_buf(&bufs[i], unit, RUMPBLK_B_READ | RUMPBLK_B_ASYNC,
			    i * 8, data[i], 4096);
			break;
		case 3:		/* async write */
			tl_buf(&bufs[i], unit,
			    RUMPBLK_B_WRITE | RUMPBLK_B_ASYNC, i * 8, data[i],
			    4096);
			break;
		case 4:		/* rejected: not a sector multiple */
			tl_buf(&bufs[i], unit, RUMPBLK_B_READ | RUMPBLK_B_ASYNC,
			    0, data[i], 1000);
			want_err[i] = EINVAL;
			want_resid[i] = 1000;
			break;
		case 5:		/* unknown unit */
			tl_buf(&bufs[i], 7, RUMPBLK_B_WRITE, 0, data[i], 512);
			want_err[i] = ENXIO;
			want_resid[i] = 512;
			break;
		case 6:		/* at the end */
			tl_buf(&bufs[i], unit, RUMPBLK_B_READ, 2048, data[i],
			    4096);
			want_resid[i] = 4096;
			break;
		case 7:		/* async flush */
			tl_buf(&bufs[i], unit, RUMPBLK_B_FLUSH | RUMPBLK_B_ASYNC,
			    0, NULL, 0);
			break;
		}
		memset(data[i], i, sizeof(data[i]));
		bufs[i].b_iodone = iodone;
		bufs[i].b_private = &slots[i];
		rumpblk_strategy(rb, &bufs[i]);
	}
	wait_done(NBUF);
	/* Let any stray second call happen before counting. */
	tl_eq(rumpblk_deregister(rb, img), 0);
	for (i = 0; i < NBUF; i++) {
		if (atomic_load(&slots[i].calls) != 1)
			tl_fail("buffer %d: b_iodone ran %d times\n", i,
			    atomic_load(&slots[i].calls));
		tl_eq(slots[i].error, want_err[i]);
		tl_eq(slots[i].resid, want_resid[i]);
		tl_true(bufs[i].b_private == &slots[i]);
		tl_true(bufs[i].b_iodone == iodone);
		tl_eq(bufs[i].b_bcount, i % 8 == 4 ? 1000 :
		    i % 8 == 5 ? 512 : i % 8 == 7 ? 0 : 4096);
	}
	/* Reads returned the pattern (or what an earlier write put). */
	for (i = 0; i < NBUF; i++)
		if (i % 8 == 0 || i % 8 == 2)
			tl_eq(tl_check(data[i], 4096, (uint64_t)i * 4096, 5),
			    -1);
	rumpblk_stats(rb, -1, &st);
	tl_eq(st.io_async, 4 * NBUF / 8);
	tl_eq(st.io_total, NBUF);
	tl_eq(rumpblk_destroy(rb), 0);
	free(img);
}

static void
biowait_kinds(void **state)
{
	struct rumpblk_stats st;
	struct rumpblk_buf b, bs[16];
	struct rumpblk *rb;
	char *img = tl_image("bw.img", 1 << 20, 6);
	static char buf[16][8192];
	int unit, i;

	(void)state;
	rb = tl_create(NULL);
	unit = tl_register(rb, img, 0, RUMPBLK_SIZENOTSET);

	/* A sync buffer has completed when strategy returns; biowait
	 * returns at once, and again if called twice. */
	tl_buf(&b, unit, RUMPBLK_B_READ, 0, buf[0], 8192);
	b.b_private = &b;
	rumpblk_strategy(rb, &b);
	tl_eq(rumpblk_biowait(&b), 0);
	tl_eq(rumpblk_biowait(&b), 0);
	tl_eq(b.b_resid, 0);
	tl_true(b.b_private == &b);
	tl_eq(tl_check(buf[0], 8192, 0, 6), -1);

	/* Async buffers without b_iodone: wait for each, in any order. */
	for (i = 0; i < 16; i++) {
		memset(buf[i], 0x30 + i, 8192);
		tl_buf(&bs[i], unit, RUMPBLK_B_WRITE | RUMPBLK_B_ASYNC,
		    (int64_t)i * 16, buf[i], 8192);
		rumpblk_strategy(rb, &bs[i]);
	}
	for (i = 15; i >= 0; i--) {
		tl_eq(rumpblk_biowait(&bs[i]), 0);
		tl_eq(bs[i].b_resid, 0);
	}
	for (i = 0; i < 16; i++) {
		memset(buf[i], 0, 8192);
		tl_buf(&bs[i], unit, RUMPBLK_B_READ | RUMPBLK_B_ASYNC,
		    (int64_t)i * 16, buf[i], 8192);
		rumpblk_strategy(rb, &bs[i]);
	}
	for (i = 0; i < 16; i++) {
		tl_eq(rumpblk_biowait(&bs[i]), 0);
		tl_true(tl_all(buf[i], 8192, 0x30 + i));
	}
	/* An async buffer rejected at once: biowait gives its error. */
	tl_buf(&b, unit, RUMPBLK_B_READ | RUMPBLK_B_ASYNC, 0, buf[0], 100);
	rumpblk_strategy(rb, &b);
	tl_eq(rumpblk_biowait(&b), EINVAL);
	tl_eq(b.b_resid, 100);

	/* Reuse of one buffer after completion: zero it, go again. */
	for (i = 0; i < 100; i++) {
		tl_buf(&b, unit, RUMPBLK_B_READ | (i & 1 ? RUMPBLK_B_ASYNC : 0),
		    i, buf[0], 512);
		rumpblk_strategy(rb, &b);
		tl_eq(rumpblk_biowait(&b), 0);
	}
	rumpblk_stats(rb, unit, &st);
	tl_eq(st.io_async, 16 + 16 + 1 + 50);
	tl_eq(st.io_total, 1 + 16 + 16 + 1 + 100);

	/*
	 * Reuse without zeroing (librumpblk(3)): only the public fields are
	 * set again, after writes, reads, rejections and async completions
	 * alike, and b_error/b_resid keep whatever the last request left.
	 */
	tl_buf(&b, unit, RUMPBLK_B_READ, 0, buf[0], 512);
	for (i = 0; i < 200; i++) {
		int k = i % 4, blk = 1000 + i / 4;

		b.b_flags = (k == 0 ? RUMPBLK_B_WRITE : RUMPBLK_B_READ) |
		    (i & 2 ? RUMPBLK_B_ASYNC : 0);
		b.b_blkno = k == 2 ? 1 << 20 : blk;	/* 2: past the end */
		b.b_bcount = 512;
		b.b_data = buf[1];
		if (k == 0)
			memset(buf[1], i & 0xff, 512);
		else if (k != 2)
			memset(buf[1], 0, 512);
		rumpblk_strategy(rb, &b);
		tl_eq(rumpblk_biowait(&b), k == 2 ? EINVAL : 0);
		tl_eq(b.b_resid, k == 2 ? 512 : 0);
		if (k == 1 || k == 3)
			tl_true(tl_all(buf[1], 512, (i - k) & 0xff));
	}
	tl_eq(rumpblk_destroy(rb), 0);
	free(img);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(iodone_once),
		cmocka_unit_test(biowait_kinds),
	};

	return tl_main(tests, NULL, NULL);
}
