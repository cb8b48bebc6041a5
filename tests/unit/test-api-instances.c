/*
 * test-api-instances: several instances in one process are independent:
 * each has its own config (sector size, unit table, seed-mode faults and
 * LCG state), its own units and counters; destroying one leaves the
 * others working, and the same file may be a unit of several.
 */
#include "testlib.h"

static void
independent(void **state)
{
	struct rumpblk_config ca, cb, cc;
	struct rumpblk_stats st;
	struct rumpblk *a, *b, *c;
	char *img = tl_image("inst.img", 256 << 10, 8);
	char *img2 = tl_image("inst2.img", 64 << 10, 9);
	char buf[4096];
	unsigned ss;
	int ua, ub, uc, u;

	(void)state;
	tl_config(&ca);
	tl_config(&cb);
	cb.sectshift = 12;
	cb.max_units = 1;
	tl_config(&cc);
	cc.fail = 10000;		/* every read and write fails */
	cc.fail_seed = 1;
	cc.fail_seed_set = true;
	a = tl_create(&ca);
	b = tl_create(&cb);
	c = tl_create(&cc);
	ua = tl_register(a, img, 0, RUMPBLK_SIZENOTSET);
	ub = tl_register(b, img, 0, RUMPBLK_SIZENOTSET);
	uc = tl_register(c, img, 0, RUMPBLK_SIZENOTSET);
	/* Unit numbers are per instance. */
	tl_eq(ua, 0);
	tl_eq(ub, 0);
	tl_eq(uc, 0);
	tl_eq(rumpblk_register(b, img2, 0, RUMPBLK_SIZENOTSET, &u), EBUSY);
	tl_eq(tl_register(a, img2, 0, RUMPBLK_SIZENOTSET), 1);

	tl_eq(rumpblk_ioctl(a, ua, RUMPBLK_DIOCGSECTORSIZE, &ss), 0);
	tl_eq(ss, 512);
	tl_eq(rumpblk_ioctl(b, ub, RUMPBLK_DIOCGSECTORSIZE, &ss), 0);
	tl_eq(ss, 4096);
	tl_eq(tl_io(a, ua, RUMPBLK_B_READ, 0, buf, 512, NULL), 0);
	tl_eq(tl_io(b, ub, RUMPBLK_B_READ, 0, buf, 512, NULL), EINVAL);
	tl_eq(tl_io(c, uc, RUMPBLK_B_READ, 0, buf, 512, NULL), EIO);
	tl_eq(tl_io(b, ub, RUMPBLK_B_READ, 0, buf, 4096, NULL), 0);
	tl_eq(tl_check(buf, 4096, 0, 8), -1);

	/* A write through one instance is seen through another. */
	memset(buf, 0x71, sizeof(buf));
	tl_eq(tl_io(a, ua, RUMPBLK_B_WRITE, 64, buf, 4096, NULL), 0);
	memset(buf, 0, sizeof(buf));
	tl_eq(tl_io(b, ub, RUMPBLK_B_READ, 64, buf, 4096, NULL), 0);
	tl_true(tl_all(buf, 4096, 0x71));

	/* Counters are the instance's own. */
	rumpblk_stats(a, -1, &st);
	tl_eq(st.io_total, 2);
	tl_eq(st.faults_injected, 0);
	rumpblk_stats(c, -1, &st);
	tl_eq(st.io_total, 1);
	tl_eq(st.faults_injected, 1);

	/* Deregistering in one leaves the others' units alone. */
	tl_eq(rumpblk_deregister(a, img), 0);
	tl_eq(tl_io(b, ub, RUMPBLK_B_READ, 64, buf, 4096, NULL), 0);
	tl_eq(rumpblk_destroy(b), 0);
	tl_eq(tl_io(c, uc, RUMPBLK_B_WRITE, 0, buf, 512, NULL), EIO);
	tl_eq(tl_io(a, 1, RUMPBLK_B_READ, 0, buf, 512, NULL), 0);
	tl_eq(rumpblk_destroy(c), 0);
	tl_eq(rumpblk_destroy(a), 0);
	free(img);
	free(img2);
}

/* Two instances with the same seed draw the same sequence, interleaved. */
static void
lcg_per_instance(void **state)
{
	struct rumpblk_config cfg;
	struct rumpblk *x, *y;
	char *img = tl_image("inst-lcg.img", 64 << 10, 10);
	char buf[512];
	uint32_t lcg = 2024;
	int ux, uy, i, want, ex, ey;

	(void)state;
	tl_config(&cfg);
	cfg.fail = 5000;
	cfg.fail_seed = 2024;
	cfg.fail_seed_set = true;
	x = tl_create(&cfg);
	y = tl_create(&cfg);
	ux = tl_register(x, img, 0, RUMPBLK_SIZENOTSET);
	uy = tl_register(y, img, 0, RUMPBLK_SIZENOTSET);
	for (i = 0; i < 100; i++) {
		want = tl_lcg_fails(&lcg, 5000) ? EIO : 0;
		ex = tl_io(x, ux, RUMPBLK_B_READ, i, buf, 512, NULL);
		ey = tl_io(y, uy, RUMPBLK_B_READ, i, buf, 512, NULL);
		tl_eq(ex, want);
		tl_eq(ey, want);
	}
	tl_eq(rumpblk_destroy(x), 0);
	tl_eq(rumpblk_destroy(y), 0);
	free(img);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(independent),
		cmocka_unit_test(lcg_per_instance),
	};

	return tl_main(tests, NULL, NULL);
}
