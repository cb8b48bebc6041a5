/*
 * test-unit-openclose: open/close/ioctl on unknown units (ENXIO), unknown
 * ioctls (ENOTTY), deregister of a file with no unit (ENOENT), every call
 * on a deregistered unit (ENXIO), and deregister waiting for the
 * asynchronous buffers still in flight on the unit.
 */
#include <pthread.h>
#include <stdatomic.h>

#include "testlib.h"

static void
unknown_units(void **state)
{
	struct rumpblk_disklabel dl;
	struct rumpblk_unitinfo ui;
	struct rumpblk *rb;
	char *img = tl_image("oc.img", 64 << 10, 1);
	char buf[512];
	uint64_t media;
	int unit, bad[] = { -1, 1, 15, 16, 1000, -1000 };
	size_t i;

	(void)state;
	rb = tl_create(NULL);
	unit = tl_register(rb, img, 0, RUMPBLK_SIZENOTSET);
	tl_eq(unit, 0);
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		tl_eq(rumpblk_open(rb, bad[i], RUMPBLK_FREAD), ENXIO);
		tl_eq(rumpblk_close(rb, bad[i], RUMPBLK_FREAD), ENXIO);
		tl_eq(rumpblk_ioctl(rb, bad[i], RUMPBLK_DIOCGDINFO, &dl),
		    ENXIO);
		tl_eq(rumpblk_ioctl(rb, bad[i], 0xdeadUL, &dl), ENXIO);
		tl_eq(rumpblk_unitinfo(rb, bad[i], &ui), ENXIO);
		tl_eq(tl_io(rb, bad[i], RUMPBLK_B_READ, 0, buf, 512, NULL),
		    ENXIO);
	}
	tl_eq(rumpblk_open(rb, unit, RUMPBLK_FREAD | RUMPBLK_FWRITE), 0);
	tl_eq(rumpblk_close(rb, unit, RUMPBLK_FREAD | RUMPBLK_FWRITE), 0);
	tl_eq(rumpblk_ioctl(rb, unit, 0, &dl), ENOTTY);
	tl_eq(rumpblk_ioctl(rb, unit, 0xdeadUL, &dl), ENOTTY);
	tl_eq(rumpblk_ioctl(rb, unit, RUMPBLK_DIOCGDINFO + 100, &dl), ENOTTY);
	tl_eq(rumpblk_ioctl(rb, unit, 0xdeadUL, NULL), ENOTTY);
	tl_eq(rumpblk_ioctl(rb, unit, RUMPBLK_DIOCGDINFO, NULL), EFAULT);
	tl_eq(rumpblk_ioctl(rb, unit, RUMPBLK_DIOCGMEDIASIZE, NULL), EFAULT);
	tl_eq(rumpblk_ioctl(rb, unit, RUMPBLK_DIOCGMEDIASIZE, &media), 0);
	tl_eq(rumpblk_destroy(rb), 0);
	free(img);
}

static void
deregister_enoent(void **state)
{
	struct rumpblk *rb;
	char *a = tl_image("dr-a.img", 8192, 1), *b = tl_image("dr-b.img",
	    8192, 2);
	char *missing = tl_path("dr-missing.img");

	(void)state;
	rb = tl_create(NULL);
	tl_eq(rumpblk_deregister(rb, a), ENOENT);
	tl_eq(rumpblk_deregister(rb, missing), ENOENT);
	tl_register(rb, a, 0, RUMPBLK_SIZENOTSET);
	tl_eq(rumpblk_deregister(rb, b), ENOENT);
	tl_eq(rumpblk_deregister(rb, NULL), EINVAL);
	/* A file removed after registration is still found by its name. */
	tl_eq(unlink(a), 0);
	tl_eq(rumpblk_deregister(rb, a), 0);
	tl_eq(rumpblk_deregister(rb, a), ENOENT);
	tl_eq(rumpblk_destroy(rb), 0);
	free(a);
	free(b);
	free(missing);
}

static void
after_deregister(void **state)
{
	struct rumpblk_disklabel dl;
	struct rumpblk_unitinfo ui;
	struct rumpblk_stats st;
	struct rumpblk *rb;
	char *img = tl_image("ad.img", 64 << 10, 3);
	char buf[4096];
	struct iovec iov = { buf, sizeof(buf) };
	struct rumpblk_uio uio = { &iov, 1, 0, sizeof(buf) };
	uint64_t media;
	unsigned secsize;
	size_t resid;
	int unit, op;

	(void)state;
	rb = tl_create(NULL);
	unit = tl_register(rb, img, 0, RUMPBLK_SIZENOTSET);
	/* Open units are detached too. */
	tl_eq(rumpblk_open(rb, unit, RUMPBLK_FREAD | RUMPBLK_FWRITE), 0);
	tl_eq(tl_io(rb, unit, RUMPBLK_B_READ, 0, buf, 4096, NULL), 0);
	tl_eq(rumpblk_deregister(rb, img), 0);

	tl_eq(rumpblk_open(rb, unit, RUMPBLK_FREAD), ENXIO);
	tl_eq(rumpblk_close(rb, unit, RUMPBLK_FREAD), ENXIO);
	tl_eq(rumpblk_ioctl(rb, unit, RUMPBLK_DIOCGDINFO, &dl), ENXIO);
	tl_eq(rumpblk_ioctl(rb, unit, RUMPBLK_DIOCGMEDIASIZE, &media), ENXIO);
	tl_eq(rumpblk_ioctl(rb, unit, RUMPBLK_DIOCGSECTORSIZE, &secsize),
	    ENXIO);
	tl_eq(rumpblk_ioctl(rb, unit, RUMPBLK_DIOCCACHESYNC, NULL), ENXIO);
	tl_eq(rumpblk_unitinfo(rb, unit, &ui), ENXIO);
	for (op = RUMPBLK_B_READ; op <= RUMPBLK_B_EXTENTS; op <<= 1) {
		tl_eq(tl_io(rb, unit, op, 0, buf, 512, &resid), ENXIO);
		tl_eq(resid, 512);
	}
	tl_eq(tl_io(rb, unit, RUMPBLK_B_WRITE | RUMPBLK_B_ASYNC, 0, buf, 512,
	    NULL), ENXIO);
	tl_eq(rumpblk_read(rb, unit, &uio, 0), ENXIO);
	tl_eq(rumpblk_write(rb, unit, &uio, 0), ENXIO);
	tl_eq(uio.uio_resid, sizeof(buf));
	rumpblk_stats(rb, unit, &st);
	tl_eq(st.io_total, 0);
	tl_eq(rumpblk_destroy(rb), 0);
	free(img);
}

/*
 * Deregister with asynchronous buffers in flight: it returns only after
 * every one of them completed (b_iodone ran), and they all succeeded.
 */
#define NASYNC	32
#define ASYNCSZ	(256 << 10)

static atomic_int done_count, done_errors;

static void
iodone(struct rumpblk_buf *bp)
{
	if (bp->b_error != 0 || bp->b_resid != 0)
		atomic_fetch_add(&done_errors, 1);
	atomic_fetch_add(&done_count, 1);
}

static void
deregister_waits(void **state)
{
	static struct rumpblk_buf bufs[NASYNC];
	struct rumpblk *rb;
	char *img = tl_image("dw.img", NASYNC * ASYNCSZ, 0);
	char *data, *host, *big;
	int unit, i, round;

	(void)state;
	big = malloc((size_t)NASYNC * ASYNCSZ);
	data = malloc(ASYNCSZ);
	host = malloc(ASYNCSZ);
	for (round = 0; round < 3; round++) {
		rb = tl_create(NULL);
		unit = tl_register(rb, img, 0, RUMPBLK_SIZENOTSET);
		atomic_store(&done_count, 0);
		atomic_store(&done_errors, 0);
		memset(data, 0x40 + round, ASYNCSZ);
		for (i = 0; i < NASYNC; i++) {
			tl_buf(&bufs[i], unit, RUMPBLK_B_WRITE | RUMPBLK_B_ASYNC,
			    (int64_t)i * (ASYNCSZ / 512), data, ASYNCSZ);
			bufs[i].b_iodone = iodone;
			rumpblk_strategy(rb, &bufs[i]);
		}
		tl_eq(rumpblk_deregister(rb, img), 0);
		tl_eq(atomic_load(&done_count), NASYNC);
		tl_eq(atomic_load(&done_errors), 0);
		/* And the data is there. */
		for (i = 0; i < NASYNC; i++) {
			tl_host_read(img, host, ASYNCSZ, (uint64_t)i * ASYNCSZ);
			tl_true(tl_all(host, ASYNCSZ, 0x40 + round));
		}
		if (round == 2) {
			tl_eq(rumpblk_destroy(rb), 0);
			continue;
		}
		/* destroy waits as well. */
		unit = tl_register(rb, img, 0, RUMPBLK_SIZENOTSET);
		atomic_store(&done_count, 0);
		for (i = 0; i < NASYNC; i++) {
			tl_buf(&bufs[i], unit, RUMPBLK_B_READ | RUMPBLK_B_ASYNC,
			    (int64_t)i * (ASYNCSZ / 512),
			    big + (size_t)i * ASYNCSZ, ASYNCSZ);
			bufs[i].b_iodone = iodone;
			rumpblk_strategy(rb, &bufs[i]);
		}
		tl_eq(rumpblk_destroy(rb), 0);
		tl_eq(atomic_load(&done_count), NASYNC);
		tl_eq(atomic_load(&done_errors), 0);
		tl_true(tl_all(big, (size_t)NASYNC * ASYNCSZ, 0x40 + round));
	}
	free(big);
	free(data);
	free(host);
	free(img);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(unknown_units),
		cmocka_unit_test(deregister_enoent),
		cmocka_unit_test(after_deregister),
		cmocka_unit_test(deregister_waits),
	};

	return tl_main(tests, NULL, NULL);
}
