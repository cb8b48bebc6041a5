/*
 * test-api-basic: an instance registers an image, writes and reads it
 * back through strategy, and reports the unit's geometry.
 */
#include "testlib.h"

static void
basic_rw(void **state)
{
	struct rumpblk_config cfg;
	struct rumpblk *rb;
	char *img = tl_image("basic.img", 1 << 20, 7);
	char wbuf[4096], rbuf[4096];
	uint64_t media;
	unsigned secsize;
	size_t resid;
	int unit;

	(void)state;
	tl_config(&cfg);
	tl_eq(rumpblk_create(&cfg, &rb), 0);
	tl_eq(rumpblk_register(rb, img, 0, RUMPBLK_SIZENOTSET, &unit), 0);
	tl_eq(rumpblk_ioctl(rb, unit, RUMPBLK_DIOCGMEDIASIZE, &media), 0);
	tl_eq(media, 1 << 20);
	tl_eq(rumpblk_ioctl(rb, unit, RUMPBLK_DIOCGSECTORSIZE, &secsize), 0);
	tl_eq(secsize, 512);

	memset(wbuf, 0xa5, sizeof(wbuf));
	tl_eq(tl_io(rb, unit, RUMPBLK_B_WRITE, 8, wbuf, sizeof(wbuf), &resid),
	    0);
	tl_eq(resid, 0);
	tl_eq(tl_io(rb, unit, RUMPBLK_B_READ, 8, rbuf, sizeof(rbuf), &resid),
	    0);
	tl_eq(resid, 0);
	tl_eq(memcmp(wbuf, rbuf, sizeof(rbuf)), 0);
	tl_eq(rumpblk_destroy(rb), 0);
	free(img);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(basic_rw),
	};

	return tl_main(tests, NULL, NULL);
}
