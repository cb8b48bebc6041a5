/*
 * test-direct-blockdev: the direct and uring backends on a real block
 * device whose logical block size (4096, a loop device) is larger than
 * the unit's 512-byte sectors, so that direct discovers the alignment
 * from the device (statx or BLKSSZGET), not from the seam, and moves
 * 512-byte requests by read-modify-write.  Random writes with unaligned
 * buffers, synchronous and asynchronous, are read back and compared with
 * a model of the device, then, with the instance gone, with an O_DIRECT
 * read of the device.  Needs root and losetup; skipped otherwise.
 */
#include "testlib.h"

#define DEVSIZE	(16u << 20)

static char *backing;
static char dev[64];

static void
setup(void)
{
	char cmd[512];
	FILE *p;

	if (geteuid() != 0)
		return;
	backing = tl_image("loop.img", DEVSIZE, 0);
	snprintf(cmd, sizeof(cmd), "losetup --show -f --sector-size 4096 "
	    "'%s' 2>/dev/null", backing);
	if ((p = popen(cmd, "r")) == NULL)
		return;
	if (fgets(dev, sizeof(dev), p) == NULL)
		dev[0] = '\0';
	pclose(p);
	dev[strcspn(dev, "\n")] = '\0';
}

static int
teardown(void **state)
{
	char cmd[128];

	(void)state;
	if (dev[0] != '\0') {
		snprintf(cmd, sizeof(cmd), "losetup -d '%s'", dev);
		if (system(cmd) != 0)
			fprintf(stderr, "cannot detach %s\n", dev);
	}
	return 0;
}

static uint64_t rng = 0x2545f4914f6cdd1dull;

static void
on_device(enum rumpblk_backend backend)
{
	struct rumpblk_config cfg;
	struct rumpblk_unitinfo ui;
	struct rumpblk *rb;
	uint8_t *model = calloc(1, DEVSIZE), *mem = malloc(65536 + 8);
	uint8_t *chk = malloc(65536);
	size_t len, resid;
	int64_t blk;
	int unit, fd;

	if (dev[0] == '\0') {
		free(model);
		free(mem);
		free(chk);
		tl_skip("needs root and a loop device (losetup --sector-size "
		    "4096)");
	}
	assert(model != NULL && mem != NULL && chk != NULL);
	/* The device starts as zeroes; earlier runs wrote it. */
	fd = open(backing, O_RDONLY);
	tl_eq(pread(fd, model, DEVSIZE, 0), DEVSIZE);
	close(fd);
	rumpblk_config_init(&cfg);
	cfg.backend = backend;
	tl_eq(rumpblk_create(&cfg, &rb), 0);
	tl_eq(rumpblk_register(rb, dev, 0, RUMPBLK_SIZENOTSET, &unit), 0);
	tl_eq(rumpblk_unitinfo(rb, unit, &ui), 0);
	tl_eq(ui.ui_backend, backend);
	tl_eq(ui.ui_ftype, RUMPBLK_FT_BLK);
	tl_eq(ui.ui_size, DEVSIZE);
	for (int i = 0; i < 300; i++) {
		uint8_t *buf = mem + tl_rand(&rng) % 8;

		len = (size_t)(tl_rand(&rng) % 128 + 1) * 512;
		blk = (int64_t)(tl_rand(&rng) % (DEVSIZE / 512 - 128));
		for (size_t j = 0; j < len; j++)
			buf[j] = (uint8_t)tl_rand(&rng);
		tl_eq(tl_io(rb, unit, RUMPBLK_B_WRITE |
		    (i % 2 ? RUMPBLK_B_ASYNC : 0), blk, buf, len, &resid), 0);
		memcpy(model + blk * 512, buf, len);
		tl_eq(tl_io(rb, unit, RUMPBLK_B_READ, blk, chk, len, &resid),
		    0);
		if (memcmp(chk, model + blk * 512, len) != 0)
			tl_fail("%s: read back at sector %" PRId64 " +%zu "
			    "differs\n", dev, blk, len);
	}
	tl_eq(rumpblk_destroy(rb), 0);
	/* Everything reached the device (destroy synced it). */
	fd = open(dev, O_RDONLY | O_DIRECT);
	assert(fd != -1);
	for (uint64_t off = 0; off < DEVSIZE; off += 65536) {
		uint8_t *a;

		assert(posix_memalign((void **)&a, 4096, 65536) == 0);
		tl_eq(pread(fd, a, 65536, (off_t)off), 65536);
		if (memcmp(a, model + off, 65536) != 0)
			tl_fail("%s: device differs from the model near "
			    "%" PRIu64 "\n", dev, off);
		free(a);
	}
	close(fd);
	free(model);
	free(mem);
	free(chk);
}

static void
direct_dev(void **state)
{
	(void)state;
	on_device(RUMPBLK_BACKEND_DIRECT);
}

static void
uring_dev(void **state)
{
	(void)state;
#ifndef RUMPBLK_HAVE_URING
	tl_skip("built without liburing");
#endif
	on_device(RUMPBLK_BACKEND_URING);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(direct_dev),
		cmocka_unit_test(uring_dev),
	};
	int rc;

	setenv("RUMPBLK_TEST_BACKEND", "direct", 1);
	setup();
	rc = tl_main(tests, NULL, teardown);
	free(backing);
	return rc;
}
