/*
 * test-strategy-bounds: the kernel bounds_check() rules of strategy.  At
 * the end: 0 bytes moved, no error; past it: EINVAL; across it: truncated
 * through b_resid with b_bcount untouched; a byte count that is not a
 * sector multiple: EINVAL.  An odd-sized unit (NetBSD's range_blk: offset
 * 16000, size 32000 of a larger file) keeps its last partial sector
 * reachable; a window maps to the right host bytes (checked with pread);
 * 4096-byte sectors.  Malformed buffers (flags, negative b_blkno, no
 * data) are refused without touching the host file.  A host file that
 * shrinks under the unit gives EIO with b_resid saying what moved.
 */
#include "testlib.h"

#define IMGSIZE	(64 << 10)
#define SEED	13

static char *img;

static void
eof_past_straddle(void **state)
{
	struct rumpblk *rb;
	char buf[8192], host[8192];
	size_t resid;
	int unit;

	(void)state;
	rb = tl_create(NULL);
	unit = tl_register(rb, img, 0, RUMPBLK_SIZENOTSET);

	/* At the end: nothing moves, no error, b_data untouched. */
	memset(buf, 0xee, sizeof(buf));
	tl_eq(tl_io(rb, unit, RUMPBLK_B_READ, IMGSIZE / 512, buf, 4096,
	    &resid), 0);
	tl_eq(resid, 4096);
	tl_true(tl_all(buf, sizeof(buf), 0xee));
	tl_eq(tl_io(rb, unit, RUMPBLK_B_WRITE, IMGSIZE / 512, buf, 4096,
	    &resid), 0);
	tl_eq(resid, 4096);

	/* Past the end: EINVAL, nothing moved. */
	tl_eq(tl_io(rb, unit, RUMPBLK_B_READ, IMGSIZE / 512 + 1, buf, 512,
	    &resid), EINVAL);
	tl_eq(resid, 512);
	tl_eq(tl_io(rb, unit, RUMPBLK_B_WRITE, IMGSIZE / 512 + 1000, buf, 512,
	    &resid), EINVAL);
	tl_eq(resid, 512);
	tl_eq(tl_io(rb, unit, RUMPBLK_B_READ, INT64_MAX / 512, buf, 512,
	    &resid), EINVAL);

	/* Across the end: truncated (tl_io checks b_bcount is untouched). */
	tl_eq(tl_io(rb, unit, RUMPBLK_B_READ, IMGSIZE / 512 - 8, buf, 8192,
	    &resid), 0);
	tl_eq(resid, 4096);
	tl_eq(tl_check(buf, 4096, IMGSIZE - 4096, SEED), -1);
	tl_true(tl_all(buf + 4096, 4096, 0xee));
	memset(buf, 0x11, sizeof(buf));
	tl_eq(tl_io(rb, unit, RUMPBLK_B_WRITE, IMGSIZE / 512 - 2, buf, 8192,
	    &resid), 0);
	tl_eq(resid, 8192 - 1024);
	tl_host_read(img, host, 1024, IMGSIZE - 1024);
	tl_true(tl_all(host, 1024, 0x11));
	/* The file did not grow. */
	{
		struct stat sb;

		tl_eq(stat(img, &sb), 0);
		tl_eq(sb.st_size, IMGSIZE);
	}

	/* Byte counts that are not sector multiples. */
	tl_eq(tl_io(rb, unit, RUMPBLK_B_READ, 0, buf, 100, &resid), EINVAL);
	tl_eq(resid, 100);
	tl_eq(tl_io(rb, unit, RUMPBLK_B_WRITE, 0, buf, 513, &resid), EINVAL);
	tl_eq(tl_io(rb, unit, RUMPBLK_B_READ, 0, buf, 8191, &resid), EINVAL);
	tl_host_read(img, host, 1024, 0);
	tl_eq(tl_check(host, 1024, 0, SEED), -1);
	/* Zero bytes: nothing to do, no error. */
	tl_eq(tl_io(rb, unit, RUMPBLK_B_READ, 0, buf, 0, &resid), 0);
	tl_eq(resid, 0);
	tl_eq(rumpblk_destroy(rb), 0);
}

static void
malformed(void **state)
{
	struct rumpblk *rb;
	char buf[512];
	size_t resid;
	int unit;

	(void)state;
	rb = tl_create(NULL);
	unit = tl_register(rb, img, 0, RUMPBLK_SIZENOTSET);
	tl_eq(tl_io(rb, unit, 0, 0, buf, 512, &resid), EINVAL);
	tl_eq(resid, 512);
	tl_eq(tl_io(rb, unit, RUMPBLK_B_ASYNC, 0, buf, 512, NULL), EINVAL);
	tl_eq(tl_io(rb, unit, RUMPBLK_B_READ | RUMPBLK_B_WRITE, 0, buf, 512,
	    NULL), EINVAL);
	tl_eq(tl_io(rb, unit, RUMPBLK_B_WRITE | RUMPBLK_B_TRIM, 0, buf, 512,
	    NULL), EINVAL);
	tl_eq(tl_io(rb, unit, RUMPBLK_B_READ | 0x8000, 0, buf, 512, NULL),
	    EINVAL);
	tl_eq(tl_io(rb, unit, RUMPBLK_B_READ, -1, buf, 512, NULL), EINVAL);
	tl_eq(tl_io(rb, unit, RUMPBLK_B_WRITE, INT64_MIN, buf, 512, NULL),
	    EINVAL);
	tl_eq(tl_io(rb, unit, RUMPBLK_B_READ, 0, NULL, 512, NULL), EINVAL);
	tl_eq(tl_io(rb, unit, RUMPBLK_B_WRITE, 0, NULL, 512, NULL), EINVAL);
	tl_host_read(img, buf, 512, 0);
	tl_eq(tl_check(buf, 512, 0, SEED), -1);
	tl_eq(rumpblk_destroy(rb), 0);
}

/* NetBSD's range_blk: offset 16000, size 32000 (62.5 sectors). */
static void
odd_sized_unit(void **state)
{
	struct rumpblk *rb;
	static char buf[32768], host[1024];
	uint64_t media;
	size_t resid;
	int unit;

	(void)state;
	rb = tl_create(NULL);
	unit = tl_register(rb, img, 16000, 32000);
	tl_eq(rumpblk_ioctl(rb, unit, RUMPBLK_DIOCGMEDIASIZE, &media), 0);
	tl_eq(media, 32000);

	/* The last, partial sector: 256 bytes move. */
	memset(buf, 0xee, sizeof(buf));
	tl_eq(tl_io(rb, unit, RUMPBLK_B_READ, 62, buf, 512, &resid), 0);
	tl_eq(resid, 256);
	tl_eq(tl_check(buf, 256, 16000 + 62 * 512, SEED), -1);
	tl_true(tl_all(buf + 256, 256, 0xee));
	/* Everything from 0: 32000 bytes of 32256. */
	tl_eq(tl_io(rb, unit, RUMPBLK_B_READ, 0, buf, 63 * 512, &resid), 0);
	tl_eq(resid, 256);
	tl_eq(tl_check(buf, 32000, 16000, SEED), -1);
	/* Sector 63 starts past the end. */
	tl_eq(tl_io(rb, unit, RUMPBLK_B_READ, 63, buf, 512, &resid), EINVAL);

	/* A write of the last sector stops at the unit's end. */
	memset(buf, 0x99, 512);
	tl_eq(tl_io(rb, unit, RUMPBLK_B_WRITE, 62, buf, 512, &resid), 0);
	tl_eq(resid, 256);
	tl_host_read(img, host, 512, 16000 + 62 * 512);
	tl_true(tl_all(host, 256, 0x99));
	tl_eq(tl_check(host + 256, 256, 48000, SEED), -1);
	/* And the bytes before the window are untouched. */
	memset(buf, 0x98, 512);
	tl_eq(tl_io(rb, unit, RUMPBLK_B_WRITE, 0, buf, 512, &resid), 0);
	tl_host_read(img, host, 1024, 16000 - 512);
	tl_eq(tl_check(host, 512, 16000 - 512, SEED), -1);
	tl_true(tl_all(host + 512, 512, 0x98));
	tl_eq(rumpblk_destroy(rb), 0);
}

/* A window maps unit byte x to host byte offset + x. */
static void
window_maps(void **state)
{
	struct rumpblk *rb;
	char buf[16384], host[4096];
	size_t resid;
	int unit;

	(void)state;
	rb = tl_create(NULL);
	unit = tl_register(rb, img, 8192, 16384);
	tl_eq(tl_io(rb, unit, RUMPBLK_B_READ, 0, buf, 16384, &resid), 0);
	tl_eq(resid, 0);
	tl_eq(tl_check(buf, 16384, 8192, SEED), -1);
	memset(buf, 0x5a, 1024);
	tl_eq(tl_io(rb, unit, RUMPBLK_B_WRITE, 4, buf, 1024, &resid), 0);
	tl_host_read(img, host, 1024 + 2, 8192 + 2048 - 1);
	tl_eq(tl_check(host, 1, 8192 + 2048 - 1, SEED), -1);
	tl_true(tl_all(host + 1, 1024, 0x5a));
	tl_eq(tl_check(host + 1025, 1, 8192 + 2048 + 1024, SEED), -1);
	/* The window's end bounds requests, not the file's. */
	tl_eq(tl_io(rb, unit, RUMPBLK_B_READ, 32, buf, 512, &resid), 0);
	tl_eq(resid, 512);
	tl_eq(tl_io(rb, unit, RUMPBLK_B_READ, 33, buf, 512, NULL), EINVAL);
	tl_eq(tl_io(rb, unit, RUMPBLK_B_READ, 30, buf, 4096, &resid), 0);
	tl_eq(resid, 4096 - 1024);
	tl_eq(tl_check(buf, 1024, 8192 + 15360, SEED), -1);
	tl_eq(rumpblk_destroy(rb), 0);
}

/* Sector shift 12: counts in 4096s, b_blkno still in 512s. */
static void
sector_4096(void **state)
{
	struct rumpblk_config cfg;
	struct rumpblk_disklabel dl;
	struct rumpblk *rb;
	char buf[8192];
	unsigned secsize;
	size_t resid;
	int unit, odd;

	(void)state;
	tl_config(&cfg);
	cfg.sectshift = 12;
	rb = tl_create(&cfg);
	unit = tl_register(rb, img, 0, RUMPBLK_SIZENOTSET);
	tl_eq(rumpblk_ioctl(rb, unit, RUMPBLK_DIOCGSECTORSIZE, &secsize), 0);
	tl_eq(secsize, 4096);
	tl_eq(rumpblk_ioctl(rb, unit, RUMPBLK_DIOCGDINFO, &dl), 0);
	tl_eq(dl.d_secsize, 4096);
	tl_eq(dl.d_secperunit, IMGSIZE / 4096);
	tl_eq(tl_io(rb, unit, RUMPBLK_B_READ, 8, buf, 512, &resid), EINVAL);
	tl_eq(tl_io(rb, unit, RUMPBLK_B_READ, 8, buf, 2048, &resid), EINVAL);
	tl_eq(tl_io(rb, unit, RUMPBLK_B_READ, 8, buf, 8192, &resid), 0);
	tl_eq(resid, 0);
	tl_eq(tl_check(buf, 8192, 4096, SEED), -1);
	tl_eq(tl_io(rb, unit, RUMPBLK_B_READ, IMGSIZE / 512 - 8, buf, 8192,
	    &resid), 0);
	tl_eq(resid, 4096);

	/* 10000 bytes: two sectors and a partial one of 1808 bytes. */
	odd = tl_register(rb, img, 4096, 10000);
	tl_eq(tl_io(rb, odd, RUMPBLK_B_READ, 16, buf, 4096, &resid), 0);
	tl_eq(resid, 4096 - 1808);
	tl_eq(tl_check(buf, 1808, 4096 + 8192, SEED), -1);
	tl_eq(rumpblk_ioctl(rb, odd, RUMPBLK_DIOCGDINFO, &dl), 0);
	tl_eq(dl.d_secperunit, 2);
	tl_eq(rumpblk_destroy(rb), 0);
}

/*
 * The host file shrinks under a registered unit: a read that meets the
 * new end early is EIO (never a silent zero fill), and b_resid says how
 * much did move.
 */
static void
host_shrunk(void **state)
{
	struct rumpblk_config cfg;
	struct rumpblk *rb;
	char buf[8192];
	size_t resid;
	int unit;

	(void)state;
	/* A shrunk file under mmap windows is a SIGBUS, which the library
	 * turns into EIO only when asked to (librumpblk(3), BACKENDS). */
	tl_config(&cfg);
	cfg.sigbus_eio = true;
	rb = tl_create(&cfg);
	unit = tl_register(rb, img, 0, RUMPBLK_SIZENOTSET);
	tl_eq(truncate(img, IMGSIZE - 4096), 0);
	memset(buf, 0xee, sizeof(buf));
	tl_eq(tl_io(rb, unit, RUMPBLK_B_READ, (IMGSIZE - 8192) / 512, buf,
	    8192, &resid), EIO);
	tl_eq(resid, 4096);
	tl_eq(tl_check(buf, 4096, IMGSIZE - 8192, SEED), -1);
	tl_eq(rumpblk_destroy(rb), 0);
}

TL_IMAGE_FIXTURE(img, "bounds.img", IMGSIZE, SEED)

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(eof_past_straddle, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(malformed, setup, teardown),
		cmocka_unit_test_setup_teardown(odd_sized_unit, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(window_maps, setup, teardown),
		cmocka_unit_test_setup_teardown(sector_4096, setup, teardown),
		cmocka_unit_test_setup_teardown(host_shrunk, setup, teardown),
	};

	return tl_main(tests, NULL, NULL);
}
