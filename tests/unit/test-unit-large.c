/*
 * test-unit-large: a sparse image above 2 TiB (3 TiB).  A write near its
 * end reads back after deregister and register again (NetBSD's large_blk
 * regression: offsets above 2^32 sectors and sizes above 2^41 bytes must
 * not wrap); the disklabel clamps d_secperunit to UINT32_MAX with
 * 512-byte sectors (not with 4096-byte ones) while DIOCGMEDIASIZE stays
 * exact.  Skipped (77) only where the scratch file system cannot hold a
 * 3 TiB sparse file (it needs ext4, xfs or the like; /var/tmp here).
 */
#include "testlib.h"

#define SIZE	(3ull << 40)

static char *img;
static int made;

static void
large_blk(void **state)
{
	struct rumpblk_disklabel dl;
	struct rumpblk *rb;
	char buf[4096], host[4096];
	uint64_t media, off[] = { SIZE - 4096, (2ull << 40) + 512,
	    (1ull << 32) * 512 + 4096, SIZE / 2 };
	size_t resid, i;
	int unit;

	(void)state;
	if (!made)
		tl_skip("the scratch file system cannot hold a 3 TiB file");
	rb = tl_create(NULL);
	unit = tl_register(rb, img, 0, RUMPBLK_SIZENOTSET);
	tl_eq(rumpblk_ioctl(rb, unit, RUMPBLK_DIOCGMEDIASIZE, &media), 0);
	tl_eq(media, SIZE);
	for (i = 0; i < sizeof(off) / sizeof(off[0]); i++) {
		tl_fill(buf, sizeof(buf), off[i], 77);
		tl_eq(tl_io(rb, unit, RUMPBLK_B_WRITE, (int64_t)(off[i] / 512),
		    buf, sizeof(buf), &resid), 0);
		tl_eq(resid, 0);
	}
	/* Straddling the end of a 3 TiB unit. */
	tl_eq(tl_io(rb, unit, RUMPBLK_B_READ, (int64_t)(SIZE / 512 - 4), buf,
	    4096, &resid), 0);
	tl_eq(resid, 2048);
	tl_eq(tl_io(rb, unit, RUMPBLK_B_READ, (int64_t)(SIZE / 512 + 1), buf,
	    512, NULL), EINVAL);
	tl_eq(rumpblk_deregister(rb, img), 0);

	unit = tl_register(rb, img, 0, RUMPBLK_SIZENOTSET);
	for (i = 0; i < sizeof(off) / sizeof(off[0]); i++) {
		memset(buf, 0, sizeof(buf));
		tl_eq(tl_io(rb, unit, RUMPBLK_B_READ, (int64_t)(off[i] / 512),
		    buf, sizeof(buf), &resid), 0);
		if (tl_check(buf, sizeof(buf), off[i], 77) != -1)
			tl_fail("data at %" PRIu64 " did not come back\n",
			    off[i]);
		tl_host_read(img, host, sizeof(host), off[i]);
		tl_eq(memcmp(host, buf, sizeof(buf)), 0);
	}
	/* The holes between read as zeroes. */
	tl_eq(tl_io(rb, unit, RUMPBLK_B_READ, (int64_t)(SIZE / 512 - 16), buf,
	    4096, &resid), 0);
	tl_true(tl_all(buf, 4096, 0));

	/* d_secperunit clamps; the media size does not. */
	tl_eq(rumpblk_ioctl(rb, unit, RUMPBLK_DIOCGDINFO, &dl), 0);
	tl_eq(dl.d_secperunit, UINT32_MAX);
	tl_eq(dl.d_partitions[0].p_size, UINT32_MAX);
	tl_eq(dl.d_secsize, 512);
	tl_eq(tl_label_xor(&dl), 0);
	tl_eq(rumpblk_destroy(rb), 0);
}

static void
large_4k_sectors(void **state)
{
	struct rumpblk_config cfg;
	struct rumpblk_disklabel dl;
	struct rumpblk *rb;
	uint64_t media;
	int unit;

	(void)state;
	if (!made)
		tl_skip("the scratch file system cannot hold a 3 TiB file");
	tl_config(&cfg);
	cfg.sectshift = 12;
	rb = tl_create(&cfg);
	unit = tl_register(rb, img, 0, RUMPBLK_SIZENOTSET);
	tl_eq(rumpblk_ioctl(rb, unit, RUMPBLK_DIOCGDINFO, &dl), 0);
	tl_eq(dl.d_secperunit, SIZE / 4096);
	tl_eq(dl.d_secsize, 4096);
	tl_eq(tl_label_xor(&dl), 0);
	tl_eq(rumpblk_ioctl(rb, unit, RUMPBLK_DIOCGMEDIASIZE, &media), 0);
	tl_eq(media, SIZE);
	/* A window that starts above 2 TiB. */
	unit = tl_register(rb, img, 2ull << 40, 1ull << 40);
	tl_eq(rumpblk_ioctl(rb, unit, RUMPBLK_DIOCGMEDIASIZE, &media), 0);
	tl_eq(media, 1ull << 40);
	tl_eq(rumpblk_destroy(rb), 0);
}

static int
setup(void **state)
{
	int fd;

	(void)state;
	img = tl_path("large.img");
	fd = open(img, O_RDWR | O_CREAT | O_TRUNC, 0644);
	if (fd != -1 && ftruncate(fd, (off_t)SIZE) == 0)
		made = 1;
	else
		fprintf(stderr, "%s: cannot make 3 TiB: %s\n", img,
		    strerror(errno));
	if (fd != -1)
		close(fd);
	return 0;
}

static int
teardown(void **state)
{
	(void)state;
	unlink(img);
	free(img);
	return 0;
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(large_blk),
		cmocka_unit_test(large_4k_sectors),
	};

	return tl_main(tests, setup, teardown);
}
