/*
 * test-physio-split: the character-device path, rumpblk_read() and
 * rumpblk_write().  Transfers split into strategy calls of at most
 * RUMPBLK_MAXPHYS (64 KiB), counted through io_total; offsets and lengths
 * that are not sector multiples give EINVAL before any I/O; the uio
 * (iovecs, offset, resid) is updated as data moves; a transfer stops
 * short at the end of the unit.
 */
#include "testlib.h"

#define IMGSIZE	(1 << 20)
#define SEED	17

static char *img;

static uint64_t
calls(struct rumpblk *rb, int unit)
{
	struct rumpblk_stats st;

	rumpblk_stats(rb, unit, &st);
	return st.io_total;
}

static void
split(void **state)
{
	struct rumpblk *rb;
	static char wbuf[200 << 10], r1[(64 << 10) + 512], r2[8192],
	    r3[128 << 10];
	struct iovec iov[3];
	struct rumpblk_uio uio;
	uint64_t before;
	int unit;

	(void)state;
	rb = tl_create(NULL);
	unit = tl_register(rb, img, 0, RUMPBLK_SIZENOTSET);
	tl_fill(wbuf, sizeof(wbuf), 4096, 99);

	/* 200 KiB in one iovec: 64 + 64 + 64 + 8. */
	iov[0].iov_base = wbuf;
	iov[0].iov_len = sizeof(wbuf);
	uio.uio_iov = iov;
	uio.uio_iovcnt = 1;
	uio.uio_offset = 4096;
	uio.uio_resid = sizeof(wbuf);
	before = calls(rb, unit);
	tl_eq(rumpblk_write(rb, unit, &uio, 0), 0);
	tl_eq(calls(rb, unit) - before, 4);
	tl_eq(uio.uio_resid, 0);
	tl_eq(uio.uio_offset, 4096 + sizeof(wbuf));
	tl_eq(iov[0].iov_len, 0);
	tl_true(iov[0].iov_base == wbuf + sizeof(wbuf));

	/* Three iovecs: 64K + 512 (2 calls), 8K (1), 128K (2). */
	iov[0].iov_base = r1;
	iov[0].iov_len = sizeof(r1);
	iov[1].iov_base = r2;
	iov[1].iov_len = sizeof(r2);
	iov[2].iov_base = r3;
	iov[2].iov_len = sizeof(r3);
	uio.uio_iovcnt = 3;
	uio.uio_offset = 4096;
	uio.uio_resid = sizeof(r1) + sizeof(r2) + sizeof(r3);
	before = calls(rb, unit);
	tl_eq(rumpblk_read(rb, unit, &uio, 0), 0);
	tl_eq(calls(rb, unit) - before, 5);
	tl_eq(uio.uio_resid, 0);
	tl_eq(uio.uio_offset, 4096 + sizeof(r1) + sizeof(r2) + sizeof(r3));
	tl_eq(tl_check(r1, sizeof(r1), 4096, 99), -1);
	tl_eq(tl_check(r2, sizeof(r2), 4096 + sizeof(r1), 99), -1);
	/* r3 runs past what was written: the first part is new data, the
	 * rest the image's pattern. */
	{
		size_t newb = sizeof(wbuf) - sizeof(r1) - sizeof(r2);

		tl_eq(tl_check(r3, newb, 4096 + sizeof(r1) + sizeof(r2), 99),
		    -1);
		tl_eq(tl_check(r3 + newb, sizeof(r3) - newb,
		    4096 + sizeof(wbuf), SEED), -1);
	}

	/* uio_resid smaller than the iovecs: it wins. */
	iov[0].iov_base = r1;
	iov[0].iov_len = sizeof(r1);
	uio.uio_iovcnt = 1;
	uio.uio_offset = 0;
	uio.uio_resid = 8192;
	before = calls(rb, unit);
	tl_eq(rumpblk_read(rb, unit, &uio, 0), 0);
	tl_eq(calls(rb, unit) - before, 1);
	tl_eq(uio.uio_resid, 0);
	tl_eq(uio.uio_offset, 8192);
	tl_eq(iov[0].iov_len, sizeof(r1) - 8192);
	tl_eq(rumpblk_destroy(rb), 0);
}

static void
misaligned(void **state)
{
	struct rumpblk *rb;
	char buf[8192];
	struct iovec iov[2];
	struct rumpblk_uio uio;
	uint64_t before;
	int unit;

	(void)state;
	rb = tl_create(NULL);
	unit = tl_register(rb, img, 0, RUMPBLK_SIZENOTSET);
	before = calls(rb, unit);
#define TRY(off, len, resid, fn) do {					\
	iov[0].iov_base = buf;						\
	iov[0].iov_len = (len);						\
	uio.uio_iov = iov;						\
	uio.uio_iovcnt = 1;						\
	uio.uio_offset = (off);						\
	uio.uio_resid = (resid);					\
	tl_eq(fn(rb, unit, &uio, 0), EINVAL);				\
	tl_eq(uio.uio_offset, (off));					\
	tl_eq(uio.uio_resid, (resid));					\
	tl_eq(iov[0].iov_len, (len));					\
	tl_true(iov[0].iov_base == buf);				\
} while (0)
	TRY(100, 4096, 4096, rumpblk_read);
	TRY(4096 + 1, 4096, 4096, rumpblk_write);
	TRY(0, 4000, 4000, rumpblk_read);
	TRY(0, 4096, 1000, rumpblk_write);
	TRY(0, 1000, 4096, rumpblk_read);
#undef TRY
	tl_eq(calls(rb, unit) - before, 0);
	/* A bad second iovec: EINVAL, and the uio says what moved. */
	iov[0].iov_base = buf;
	iov[0].iov_len = 4096;
	iov[1].iov_base = buf + 4096;
	iov[1].iov_len = 100;
	uio.uio_iov = iov;
	uio.uio_iovcnt = 2;
	uio.uio_offset = 0;
	uio.uio_resid = 4196;
	tl_eq(rumpblk_read(rb, unit, &uio, 0), EINVAL);
	tl_eq(uio.uio_offset, 4196 - uio.uio_resid);
	tl_true(calls(rb, unit) - before <= 1);
	tl_eq(rumpblk_destroy(rb), 0);
}

static void
stops_at_end(void **state)
{
	struct rumpblk *rb;
	static char buf[128 << 10];
	struct iovec iov;
	struct rumpblk_uio uio;
	int unit, odd;

	(void)state;
	rb = tl_create(NULL);
	unit = tl_register(rb, img, 0, RUMPBLK_SIZENOTSET);
	iov.iov_base = buf;
	iov.iov_len = sizeof(buf);
	uio.uio_iov = &iov;
	uio.uio_iovcnt = 1;
	uio.uio_offset = IMGSIZE - (64 << 10);
	uio.uio_resid = sizeof(buf);
	tl_eq(rumpblk_read(rb, unit, &uio, 0), 0);
	tl_eq(uio.uio_resid, 64 << 10);
	tl_eq(uio.uio_offset, IMGSIZE);
	tl_eq(iov.iov_len, 64 << 10);
	tl_eq(tl_check(buf, 64 << 10, IMGSIZE - (64 << 10), SEED), -1);
	/* At the end: nothing moves, no error. */
	tl_eq(rumpblk_read(rb, unit, &uio, 0), 0);
	tl_eq(uio.uio_resid, 64 << 10);
	tl_eq(uio.uio_offset, IMGSIZE);
	/* Past it: EINVAL. */
	uio.uio_offset = IMGSIZE + 512;
	tl_eq(rumpblk_read(rb, unit, &uio, 0), EINVAL);
	/* Writes too, and the file does not grow. */
	iov.iov_base = buf;
	iov.iov_len = 8192;
	uio.uio_offset = IMGSIZE - 4096;
	uio.uio_resid = 8192;
	tl_eq(rumpblk_write(rb, unit, &uio, 0), 0);
	tl_eq(uio.uio_resid, 4096);
	{
		struct stat sb;

		tl_eq(stat(img, &sb), 0);
		tl_eq(sb.st_size, IMGSIZE);
	}
	/* An odd-sized unit: the partial sector moves, then it stops. */
	odd = tl_register(rb, img, 16000, 32000);
	iov.iov_base = buf;
	iov.iov_len = 128 << 10;
	uio.uio_offset = 0;
	uio.uio_resid = 128 << 10;
	tl_eq(rumpblk_read(rb, odd, &uio, 0), 0);
	tl_eq(uio.uio_offset, 32000);
	tl_eq(uio.uio_resid, (128 << 10) - 32000);
	tl_eq(rumpblk_read(rb, 9, &uio, 0), ENXIO);
	tl_eq(rumpblk_destroy(rb), 0);
}

TL_IMAGE_FIXTURE(img, "physio.img", IMGSIZE, SEED)

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(split, setup, teardown),
		cmocka_unit_test_setup_teardown(misaligned, setup, teardown),
		cmocka_unit_test_setup_teardown(stops_at_end, setup, teardown),
	};

	return tl_main(tests, NULL, NULL);
}
