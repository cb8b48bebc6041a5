/*
 * test-api-durability: failures to make data durable reach the caller.
 * Through the host seam (lib/host/host.h, rb_host_seam) every data sync
 * fails: rumpblk_destroy() and rumpblk_deregister() return the error yet
 * free and detach everything (ASan and valgrind check the freeing);
 * DIOCCACHESYNC, FLUSH buffers, synchronous and FUA writes fail with it,
 * while asynchronous writes (not durable at completion) and reads do
 * not.  A failing host open leaves no unit behind.  Links the static
 * library for the seam.
 */
#include "testlib.h"
#include "host/host.h"

static struct rb_host_seam seam;

static int
reset(void **state)
{
	(void)state;
	memset(&seam, 0, sizeof(seam));
	rb_host_seam = &seam;
	return 0;
}

static int
unset(void **state)
{
	(void)state;
	rb_host_seam = NULL;
	return 0;
}

static void
destroy_reports(void **state)
{
	struct rumpblk *rb;
	char *a = tl_image("dur-a.img", 64 << 10, 1);
	char *b = tl_image("dur-b.img", 64 << 10, 2);
	char buf[4096];
	int ua, ub;

	(void)state;
	rb = tl_create(NULL);
	ua = tl_register(rb, a, 0, RUMPBLK_SIZENOTSET);
	ub = tl_register(rb, b, 0, RUMPBLK_SIZENOTSET);
	memset(buf, 7, sizeof(buf));
	tl_eq(tl_io(rb, ua, RUMPBLK_B_WRITE | RUMPBLK_B_ASYNC, 0, buf,
	    sizeof(buf), NULL), 0);
	tl_eq(tl_io(rb, ub, RUMPBLK_B_WRITE | RUMPBLK_B_ASYNC, 0, buf,
	    sizeof(buf), NULL), 0);
	seam.hs_sync_error = EIO;
	tl_eq(rumpblk_destroy(rb), EIO);

	/* Without the failure, destroy says 0. */
	seam.hs_sync_error = 0;
	rb = tl_create(NULL);
	ua = tl_register(rb, a, 0, RUMPBLK_SIZENOTSET);
	tl_eq(tl_io(rb, ua, RUMPBLK_B_WRITE | RUMPBLK_B_ASYNC, 0, buf,
	    sizeof(buf), NULL), 0);
	tl_eq(rumpblk_destroy(rb), 0);
	free(a);
	free(b);
}

static void
deregister_reports(void **state)
{
	struct rumpblk_unitinfo ui;
	struct rumpblk *rb;
	char *a = tl_image("dur-c.img", 64 << 10, 3);
	char buf[4096];
	int u;

	(void)state;
	rb = tl_create(NULL);
	u = tl_register(rb, a, 0, RUMPBLK_SIZENOTSET);
	memset(buf, 8, sizeof(buf));
	tl_eq(tl_io(rb, u, RUMPBLK_B_WRITE | RUMPBLK_B_ASYNC, 0, buf,
	    sizeof(buf), NULL), 0);
	seam.hs_sync_error = ENOSPC;
	tl_eq(rumpblk_deregister(rb, a), ENOSPC);
	/* Detached anyway. */
	tl_eq(rumpblk_unitinfo(rb, u, &ui), ENXIO);
	tl_eq(rumpblk_deregister(rb, a), ENOENT);
	seam.hs_sync_error = 0;
	u = tl_register(rb, a, 0, RUMPBLK_SIZENOTSET);
	tl_eq(rumpblk_destroy(rb), 0);
	free(a);
}

static void
ops_report(void **state)
{
	struct rumpblk_stats st;
	struct rumpblk *rb;
	char *a = tl_image("dur-d.img", 64 << 10, 4);
	char buf[4096];
	int u;

	(void)state;
	rb = tl_create(NULL);
	u = tl_register(rb, a, 0, RUMPBLK_SIZENOTSET);
	seam.hs_sync_error = EIO;
	memset(buf, 9, sizeof(buf));
	tl_eq(rumpblk_ioctl(rb, u, RUMPBLK_DIOCCACHESYNC, NULL), EIO);
	tl_eq(tl_io(rb, u, RUMPBLK_B_FLUSH, 0, NULL, 0, NULL), EIO);
	tl_eq(tl_io(rb, u, RUMPBLK_B_FLUSH | RUMPBLK_B_ASYNC, 0, NULL, 0,
	    NULL), EIO);
	tl_eq(tl_io(rb, u, RUMPBLK_B_WRITE, 0, buf, sizeof(buf), NULL), EIO);
	tl_eq(tl_io(rb, u, RUMPBLK_B_WRITE | RUMPBLK_B_FUA, 0, buf,
	    sizeof(buf), NULL), EIO);
	tl_eq(tl_io(rb, u, RUMPBLK_B_WRITE | RUMPBLK_B_ASYNC | RUMPBLK_B_FUA,
	    0, buf, sizeof(buf), NULL), EIO);
	tl_eq(tl_io(rb, u, RUMPBLK_B_WRITE | RUMPBLK_B_ASYNC, 0, buf,
	    sizeof(buf), NULL), 0);
	tl_eq(tl_io(rb, u, RUMPBLK_B_READ, 0, buf, sizeof(buf), NULL), 0);
	tl_eq(tl_io(rb, u, RUMPBLK_B_READ | RUMPBLK_B_ASYNC, 0, buf,
	    sizeof(buf), NULL), 0);
	rumpblk_stats(rb, u, &st);
	tl_eq(st.io_errors, 6);
	tl_eq(st.flushes, 3);
	tl_eq(st.lat_flush.count, 3);
	tl_eq(rumpblk_destroy(rb), EIO);
	free(a);
}

static void
open_fails(void **state)
{
	struct rumpblk_stats st;
	struct rumpblk_unitinfo ui;
	struct rumpblk *rb;
	char *a = tl_image("dur-e.img", 64 << 10, 5);
	int u = -1;

	(void)state;
	rb = tl_create(NULL);
	seam.hs_open_error = EMFILE;
	tl_eq(rumpblk_register(rb, a, 0, RUMPBLK_SIZENOTSET, &u), EMFILE);
	tl_eq(rumpblk_unitinfo(rb, 0, &ui), ENXIO);
	tl_eq(rumpblk_deregister(rb, a), ENOENT);
	seam.hs_open_error = 0;
	u = tl_register(rb, a, 0, RUMPBLK_SIZENOTSET);
	tl_eq(u, 0);
	rumpblk_stats(rb, -1, &st);
	tl_eq(st.io_total, 0);
	tl_eq(rumpblk_destroy(rb), 0);
	free(a);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(destroy_reports, reset, unset),
		cmocka_unit_test_setup_teardown(deregister_reports, reset,
		    unset),
		cmocka_unit_test_setup_teardown(ops_report, reset, unset),
		cmocka_unit_test_setup_teardown(open_fails, reset, unset),
	};

	return tl_main(tests, NULL, NULL);
}
