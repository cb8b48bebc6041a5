/*
 * test-direct-bounce: the direct backend moves unaligned requests
 * byte-exactly through its bounce buffers: unaligned buffers, a unit at
 * an odd host offset (NetBSD's range_blk: 16000, 32000), sectors smaller
 * than the host's alignment (the seam reports 4096), requests larger
 * than a bounce buffer, and the last partial block of a file whose size
 * is not a multiple of the alignment.  An in-memory model of the whole
 * image is compared with a pread of the file around every write and
 * whole at the end, so a read-modify-write that spills outside its
 * request is caught.  Also:
 * synchronous writes ask for durability (the seam's sync error reaches
 * them) and are on the medium (an O_DIRECT read sees them).
 */
#include "testlib.h"
#include "internal.h"
#include "host/host.h"
#include "testseam.h"

#define IMGSIZE		((1u << 20) + 1000)	/* not a block multiple */

static uint64_t rng = 88172645463325252ull;

/* Compare [lo, hi) of the file with the model. */
static void
check_range(const char *img, const uint8_t *model, uint64_t lo, uint64_t hi)
{
	uint8_t *f;
	int fd = open(img, O_RDONLY);

	if (hi > IMGSIZE)
		hi = IMGSIZE;
	f = malloc(hi - lo);
	assert(f != NULL && fd != -1);
	tl_eq(pread(fd, f, hi - lo, (off_t)lo), hi - lo);
	close(fd);
	if (memcmp(f, model + lo, hi - lo) != 0)
		for (uint64_t i = lo; i < hi; i++)
			if (f[i - lo] != model[i]) {
				tl_fail("file byte %" PRIu64 " is %u, expected "
				    "%u\n", i, f[i - lo], model[i]);
				break;
			}
	free(f);
}

static void
check_file(const char *img, const uint8_t *model)
{
	check_range(img, model, 0, IMGSIZE);
}

/*
 * Random reads and writes of a unit at [uoff, uoff + usize) of the image
 * with unaligned buffers; the model follows the writes.
 */
static void
random_rw(unsigned dio_align, uint64_t uoff, uint64_t usize, int rounds)
{
	static struct rb_host_seam seam;
	const struct rb_host_seam seam0 = { .hs_dio_align = dio_align };
	struct rumpblk_config cfg;
	struct rumpblk_unitinfo ui;
	struct rumpblk *rb;
	char *img = tl_image("bounce.img", IMGSIZE, 3);
	uint8_t *model = malloc(IMGSIZE), *mem = malloc(300 * 1024 + 64);
	uint64_t off, want, moved;
	size_t len, resid;
	int unit, op;

	assert(model != NULL && mem != NULL);
	for (size_t i = 0; i < IMGSIZE; i++)
		model[i] = tl_pattern(i, 3);
	seam = seam0;
	rb_host_seam = &seam;
	rumpblk_config_init(&cfg);
	cfg.backend = RUMPBLK_BACKEND_DIRECT;
	tl_eq(rumpblk_create(&cfg, &rb), 0);
	tl_eq(rumpblk_register(rb, img, uoff, usize, &unit), 0);
	tl_eq(rumpblk_unitinfo(rb, unit, &ui), 0);
	tl_eq(ui.ui_backend, RUMPBLK_BACKEND_DIRECT);
	usize = ui.ui_size;

	for (int r = 0; r < rounds; r++) {
		uint8_t *buf = mem + tl_rand(&rng) % 64;

		op = tl_rand(&rng) % 2 ? RUMPBLK_B_WRITE : RUMPBLK_B_READ;
		if (tl_rand(&rng) % 2)
			op |= RUMPBLK_B_ASYNC;
		/* Lengths from one sector to 2.3 bounce buffers; a few
		 * requests run into the end of the unit. */
		len = (size_t)(tl_rand(&rng) % 600 + 1) * 512;
		off = (tl_rand(&rng) % ((usize + 511) / 512)) * 512;
		if (tl_rand(&rng) % 8 == 0 && usize > len)
			off = (usize - len / 2) & ~511ull;
		want = off + len > usize ? usize - off : len;
		if (op & RUMPBLK_B_WRITE)
			for (size_t i = 0; i < len; i++)
				buf[i] = (uint8_t)tl_rand(&rng);
		tl_eq(tl_io(rb, unit, op, (int64_t)(off / 512), buf, len,
		    &resid), 0);
		moved = len - resid;
		tl_eq(moved, want);
		if (op & RUMPBLK_B_WRITE) {
			memcpy(model + uoff + off, buf, moved);
			/* The write and the blocks around it: a
			 * read-modify-write that spilled shows here. */
			check_range(img, model, uoff + off > 8192 ?
			    uoff + off - 8192 : 0, uoff + off + moved + 8192);
		} else if (memcmp(buf, model + uoff + off, moved) != 0)
			tl_fail("read at %" PRIu64 " +%zu (align %u, unit at "
			    "%" PRIu64 ") differs\n", off, len, dio_align,
			    uoff);
	}
	tl_eq(rumpblk_destroy(rb), 0);
	rb_host_seam = NULL;
	/* After the instance is gone, the file is exactly the model. */
	check_file(img, model);
	free(model);
	free(mem);
	free(img);
}

static void
unaligned_buffers(void **state)
{
	(void)state;
	random_rw(0, 0, RUMPBLK_SIZENOTSET, 150);
}

static void
small_sectors(void **state)
{
	(void)state;
	/* 512-byte requests on a host that wants 4096: read-modify-write. */
	random_rw(4096, 0, RUMPBLK_SIZENOTSET, 150);
}

static void
odd_unit_offset(void **state)
{
	(void)state;
	random_rw(0, 16000, 32000, 100);
	random_rw(4096, 16000, 32000, 100);
	random_rw(4096, 4000, RUMPBLK_SIZENOTSET, 100);
}

/* A synchronous write is durable: it syncs (the seam's error reaches
 * it), and a direct read of the file sees it. */
static void
sync_durable(void **state)
{
	static struct rb_host_seam seam;
	const struct rb_host_seam seam0 = { 0 };
	struct rumpblk_config cfg;
	struct rumpblk *rb;
	char *img = tl_image("sync.img", 1 << 20, 5);
	uint8_t *buf, *chk;
	size_t resid;
	int unit, fd;

	(void)state;
	assert(posix_memalign((void **)&buf, 4096, 65536 + 512) == 0);
	assert(posix_memalign((void **)&chk, 4096, 65536) == 0);
	memset(buf, 0x3c, 65536 + 512);
	rumpblk_config_init(&cfg);
	cfg.backend = RUMPBLK_BACKEND_DIRECT;
	tl_eq(rumpblk_create(&cfg, &rb), 0);
	tl_eq(rumpblk_register(rb, img, 0, RUMPBLK_SIZENOTSET, &unit), 0);
	seam = seam0;
	rb_host_seam = &seam;
	seam.hs_sync_error = EIO;
	/* Aligned (RWF_DSYNC), unaligned buffer (bounce + fdatasync). */
	tl_eq(tl_io(rb, unit, RUMPBLK_B_WRITE, 0, buf, 4096, &resid), EIO);
	tl_eq(tl_io(rb, unit, RUMPBLK_B_WRITE, 0, buf + 1, 4096, &resid),
	    EIO);
	/* Asynchronous writes do not sync; FUA ones do. */
	tl_eq(tl_io(rb, unit, RUMPBLK_B_WRITE | RUMPBLK_B_ASYNC, 0, buf,
	    4096, &resid), 0);
	tl_eq(tl_io(rb, unit, RUMPBLK_B_WRITE | RUMPBLK_B_ASYNC |
	    RUMPBLK_B_FUA, 0, buf, 4096, &resid), EIO);
	tl_eq(tl_io(rb, unit, RUMPBLK_B_FLUSH, 0, NULL, 0, &resid), EIO);
	seam.hs_sync_error = 0;
	rb_host_seam = NULL;

	for (int i = 0; i < 65536; i++)
		buf[i + 3] = (uint8_t)(i * 7 + 1);
	tl_eq(tl_io(rb, unit, RUMPBLK_B_WRITE, 128, buf + 3, 65536, &resid),
	    0);
	fd = open(img, O_RDONLY | O_DIRECT);
	assert(fd != -1);
	tl_eq(pread(fd, chk, 65536, 65536), 65536);
	close(fd);
	tl_eq(memcmp(chk, buf + 3, 65536), 0);
	tl_eq(rumpblk_destroy(rb), 0);
	free(buf);
	free(chk);
	free(img);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(unaligned_buffers, tl_teardown_seam),
		cmocka_unit_test_teardown(small_sectors, tl_teardown_seam),
		cmocka_unit_test_teardown(odd_unit_offset, tl_teardown_seam),
		cmocka_unit_test_teardown(sync_durable, tl_teardown_seam),
	};
	int rc;

	setenv("RUMPBLK_TEST_BACKEND", "direct", 1);
	rc = tl_main(tests, NULL, NULL);
	return rc;
}
