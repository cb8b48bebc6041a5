/*
 * test-strategy-ops: the operations beyond read and write.  FLUSH buffers
 * and DIOCCACHESYNC succeed and count as flushes; TRIM punches a hole
 * (the range reads zeroes, st_blocks drops); ZERO zeroes with and
 * without NOHOLE (NOHOLE keeps the blocks); EXTENTS describes a sparse
 * file's holes and data relative to the unit; FUA writes land.  Needs a
 * scratch file system with hole punching (ext4 in /var/tmp here).
 */
#include "testlib.h"

#define IMGSIZE	(1 << 20)
#define SEED	23

static char *img;

static blkcnt_t
blocks(const char *path)
{
	struct stat sb;

	if (stat(path, &sb) == -1)
		return -1;
	return sb.st_blocks;
}

/* An image whose every block is allocated and on disk. */
static char *
full_image(const char *name)
{
	char *p = tl_image(name, IMGSIZE, SEED);
	int fd = open(p, O_RDWR);

	assert(fd != -1 && fsync(fd) == 0 && close(fd) == 0);
	return p;
}

static void
flush_and_cachesync(void **state)
{
	struct rumpblk_stats st;
	struct rumpblk *rb;
	char buf[4096];
	size_t resid;
	int unit, dummy = 0;

	(void)state;
	rb = tl_create(NULL);
	unit = tl_register(rb, img, 0, RUMPBLK_SIZENOTSET);
	memset(buf, 1, sizeof(buf));
	tl_eq(tl_io(rb, unit, RUMPBLK_B_WRITE | RUMPBLK_B_ASYNC, 0, buf,
	    sizeof(buf), NULL), 0);
	tl_eq(tl_io(rb, unit, RUMPBLK_B_FLUSH, 0, NULL, 0, &resid), 0);
	tl_eq(resid, 0);
	tl_eq(tl_io(rb, unit, RUMPBLK_B_FLUSH | RUMPBLK_B_ASYNC, 0, NULL, 0,
	    NULL), 0);
	tl_eq(rumpblk_ioctl(rb, unit, RUMPBLK_DIOCCACHESYNC, NULL), 0);
	tl_eq(rumpblk_ioctl(rb, unit, RUMPBLK_DIOCCACHESYNC, &dummy), 0);
	rumpblk_stats(rb, unit, &st);
	tl_eq(st.flushes, 4);
	tl_eq(st.lat_flush.count, 4);
	tl_eq(st.io_errors, 0);
	tl_eq(rumpblk_destroy(rb), 0);
}

static void
trim_punches(void **state)
{
	struct rumpblk_stats st;
	struct rumpblk *rb;
	char *p = full_image("trim.img");
	static char buf[256 << 10];
	blkcnt_t before, after;
	size_t resid;
	int unit;

	(void)state;
	before = blocks(p);
	rb = tl_create(NULL);
	unit = tl_register(rb, p, 0, RUMPBLK_SIZENOTSET);
	tl_eq(tl_io(rb, unit, RUMPBLK_B_TRIM, 512, NULL, 256 << 10, &resid),
	    0);
	tl_eq(resid, 0);
	after = blocks(p);
	if (after >= before)
		tl_fail("st_blocks %ld -> %ld after TRIM of 256 KiB\n",
		    (long)before, (long)after);
	tl_true(before - after >= (256 << 10) / 512 / 2);
	memset(buf, 0xee, sizeof(buf));
	tl_eq(tl_io(rb, unit, RUMPBLK_B_READ, 512, buf, sizeof(buf), &resid),
	    0);
	tl_true(tl_all(buf, sizeof(buf), 0));
	/* Neighbours untouched. */
	tl_eq(tl_io(rb, unit, RUMPBLK_B_READ, 504, buf, 4096, NULL), 0);
	tl_eq(tl_check(buf, 4096, 504 * 512, SEED), -1);
	tl_eq(tl_io(rb, unit, RUMPBLK_B_READ, 1024, buf, 4096, NULL), 0);
	tl_eq(tl_check(buf, 4096, 1024 * 512, SEED), -1);
	/* Across the end: truncated; past it: EINVAL; not sectors: EINVAL. */
	tl_eq(tl_io(rb, unit, RUMPBLK_B_TRIM, IMGSIZE / 512 - 8, NULL, 8192,
	    &resid), 0);
	tl_eq(resid, 4096);
	/* At the end: nothing done, everything in b_resid. */
	tl_eq(tl_io(rb, unit, RUMPBLK_B_TRIM, IMGSIZE / 512, NULL, 4096,
	    &resid), 0);
	tl_eq(resid, 4096);
	tl_eq(tl_io(rb, unit, RUMPBLK_B_TRIM, IMGSIZE / 512 + 8, NULL, 4096,
	    NULL), EINVAL);
	tl_eq(tl_io(rb, unit, RUMPBLK_B_TRIM, 0, NULL, 100, NULL), EINVAL);
	{
		struct stat sb;

		tl_eq(stat(p, &sb), 0);
		tl_eq(sb.st_size, IMGSIZE);
	}
	rumpblk_stats(rb, unit, &st);
	tl_eq(st.trims, 5);
	tl_eq(st.bytes_trimmed, (256 << 10) + 4096);
	tl_eq(rumpblk_destroy(rb), 0);
	free(p);
}

static void
zero_hole_nohole(void **state)
{
	struct rumpblk_stats st;
	struct rumpblk *rb;
	char *p = full_image("zero.img");
	static char buf[128 << 10];
	blkcnt_t before, after;
	int unit;

	(void)state;
	rb = tl_create(NULL);
	unit = tl_register(rb, p, 0, RUMPBLK_SIZENOTSET);

	/* NOHOLE: zeroes, and the blocks stay allocated. */
	before = blocks(p);
	tl_eq(tl_io(rb, unit, RUMPBLK_B_ZERO | RUMPBLK_B_NOHOLE, 256, NULL,
	    128 << 10, NULL), 0);
	after = blocks(p);
	tl_true(after >= before);
	memset(buf, 0xee, sizeof(buf));
	tl_eq(tl_io(rb, unit, RUMPBLK_B_READ, 256, buf, sizeof(buf), NULL),
	    0);
	tl_true(tl_all(buf, sizeof(buf), 0));

	/* Without NOHOLE: zeroes (a hole is allowed). */
	tl_eq(tl_io(rb, unit, RUMPBLK_B_ZERO, 1024, NULL, 128 << 10, NULL), 0);
	memset(buf, 0xee, sizeof(buf));
	tl_eq(tl_io(rb, unit, RUMPBLK_B_READ, 1024, buf, sizeof(buf), NULL),
	    0);
	tl_true(tl_all(buf, sizeof(buf), 0));
	/* Across the end: truncated, the rest in b_resid. */
	{
		size_t resid;

		tl_eq(tl_io(rb, unit, RUMPBLK_B_ZERO, IMGSIZE / 512 - 2, NULL,
		    4096, &resid), 0);
		tl_eq(resid, 4096 - 1024);
		tl_eq(tl_io(rb, unit, RUMPBLK_B_READ, IMGSIZE / 512 - 4, buf,
		    2048, NULL), 0);
		tl_eq(tl_check(buf, 1024, IMGSIZE - 2048, SEED), -1);
		tl_true(tl_all(buf + 1024, 1024, 0));
	}
	/* Async, FUA. */
	tl_eq(tl_io(rb, unit, RUMPBLK_B_ZERO | RUMPBLK_B_ASYNC | RUMPBLK_B_FUA,
	    8, NULL, 4096, NULL), 0);
	tl_eq(tl_io(rb, unit, RUMPBLK_B_READ, 0, buf, 8192, NULL), 0);
	tl_eq(tl_check(buf, 4096, 0, SEED), -1);
	tl_true(tl_all(buf + 4096, 4096, 0));
	rumpblk_stats(rb, unit, &st);
	tl_eq(st.zeroes, 4);
	tl_eq(st.bytes_zeroed, (256 << 10) + 4096 + 1024);
	tl_eq(rumpblk_destroy(rb), 0);
	free(p);
}

static struct rumpblk_extents *
extents(unsigned max)
{
	struct rumpblk_extents *ex;

	ex = calloc(1, sizeof(*ex) + max * sizeof(ex->ex_ext[0]));
	ex->ex_max = max;
	return ex;
}

static void
extents_sparse(void **state)
{
	struct rumpblk_extents *ex = extents(16), *ex2 = extents(2);
	struct rumpblk *rb;
	char *p = tl_image("sparse.img", IMGSIZE, 0);
	char buf[64 << 10];
	uint64_t total;
	size_t resid;
	unsigned i;
	int unit, w;

	(void)state;
	rb = tl_create(NULL);
	unit = tl_register(rb, p, 0, RUMPBLK_SIZENOTSET);
	memset(buf, 0x42, sizeof(buf));
	/* Data at [256K, 320K); holes elsewhere. */
	tl_eq(tl_io(rb, unit, RUMPBLK_B_WRITE, 512, buf, sizeof(buf), NULL),
	    0);
	tl_eq(tl_io(rb, unit, RUMPBLK_B_EXTENTS, 0, ex, IMGSIZE, NULL), 0);
	tl_eq(ex->ex_count, 3);
	tl_eq(ex->ex_ext[0].e_length, 256 << 10);
	tl_true(ex->ex_ext[0].e_flags & RUMPBLK_EXTENT_HOLE);
	tl_true(ex->ex_ext[0].e_flags & RUMPBLK_EXTENT_ZERO);
	tl_eq(ex->ex_ext[1].e_length, 64 << 10);
	tl_eq(ex->ex_ext[1].e_flags & RUMPBLK_EXTENT_HOLE, 0);
	tl_eq(ex->ex_ext[2].e_length, IMGSIZE - (320 << 10));
	tl_true(ex->ex_ext[2].e_flags & RUMPBLK_EXTENT_HOLE);
	for (total = 0, i = 0; i < ex->ex_count; i++)
		total += ex->ex_ext[i].e_length;
	tl_eq(total, IMGSIZE);

	/* Fewer slots than extents: the first ones. */
	tl_eq(tl_io(rb, unit, RUMPBLK_B_EXTENTS, 0, ex2, IMGSIZE, NULL), 0);
	tl_eq(ex2->ex_count, 2);
	tl_eq(ex2->ex_ext[0].e_length, 256 << 10);
	tl_eq(ex2->ex_ext[1].e_length, 64 << 10);

	/* Relative to b_blkno, and to a window's start. */
	tl_eq(tl_io(rb, unit, RUMPBLK_B_EXTENTS, 384, ex, 256 << 10, NULL), 0);
	tl_eq(ex->ex_count, 3);
	tl_eq(ex->ex_ext[0].e_length, 64 << 10);
	tl_true(ex->ex_ext[0].e_flags & RUMPBLK_EXTENT_HOLE);
	tl_eq(ex->ex_ext[1].e_length, 64 << 10);
	tl_eq(ex->ex_ext[1].e_flags & RUMPBLK_EXTENT_HOLE, 0);
	tl_eq(ex->ex_ext[2].e_length, 128 << 10);
	tl_true(ex->ex_ext[2].e_flags & RUMPBLK_EXTENT_HOLE);
	w = tl_register(rb, p, 128 << 10, 512 << 10);
	tl_eq(tl_io(rb, w, RUMPBLK_B_EXTENTS, 0, ex, 512 << 10, NULL), 0);
	tl_eq(ex->ex_count, 3);
	tl_eq(ex->ex_ext[0].e_length, 128 << 10);
	tl_eq(ex->ex_ext[1].e_length, 64 << 10);
	tl_eq(ex->ex_ext[2].e_length, (512 - 192) << 10);
	/* Straddling the end: described up to the end. */
	tl_eq(tl_io(rb, w, RUMPBLK_B_EXTENTS, 1000, ex, 64 << 10, &resid), 0);
	for (total = 0, i = 0; i < ex->ex_count; i++)
		total += ex->ex_ext[i].e_length;
	tl_eq(total, (512 << 10) - 1000 * 512);
	tl_eq(resid, (64 << 10) - total);
	tl_eq(tl_io(rb, w, RUMPBLK_B_EXTENTS, 0, NULL, 4096, NULL), EINVAL);
	tl_eq(rumpblk_destroy(rb), 0);
	free(ex);
	free(ex2);
	free(p);
}

static void
fua_writes(void **state)
{
	struct rumpblk_stats st;
	struct rumpblk *rb;
	char buf[8192], host[8192];
	int unit;

	(void)state;
	rb = tl_create(NULL);
	unit = tl_register(rb, img, 0, RUMPBLK_SIZENOTSET);
	memset(buf, 0x61, sizeof(buf));
	tl_eq(tl_io(rb, unit, RUMPBLK_B_WRITE | RUMPBLK_B_FUA, 64, buf,
	    sizeof(buf), NULL), 0);
	memset(buf, 0x62, sizeof(buf));
	tl_eq(tl_io(rb, unit, RUMPBLK_B_WRITE | RUMPBLK_B_ASYNC | RUMPBLK_B_FUA,
	    96, buf, sizeof(buf), NULL), 0);
	tl_host_read(img, host, sizeof(host), 64 * 512);
	tl_true(tl_all(host, sizeof(host), 0x61));
	tl_host_read(img, host, sizeof(host), 96 * 512);
	tl_true(tl_all(host, sizeof(host), 0x62));
	/* FUA on a read is harmless. */
	tl_eq(tl_io(rb, unit, RUMPBLK_B_READ | RUMPBLK_B_FUA, 96, buf,
	    sizeof(buf), NULL), 0);
	tl_true(tl_all(buf, sizeof(buf), 0x62));
	rumpblk_stats(rb, unit, &st);
	tl_eq(st.bytes_written, 16384);
	tl_eq(st.bytes_written_async, 8192);
	tl_eq(rumpblk_destroy(rb), 0);
}

TL_IMAGE_FIXTURE(img, "ops.img", IMGSIZE, SEED)

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(flush_and_cachesync, setup,
		    teardown),
		cmocka_unit_test(trim_punches),
		cmocka_unit_test(zero_hole_nohole),
		cmocka_unit_test(extents_sparse),
		cmocka_unit_test_setup_teardown(fua_writes, setup, teardown),
	};

	return tl_main(tests, NULL, NULL);
}
