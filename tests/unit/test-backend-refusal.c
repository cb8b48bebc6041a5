/*
 * test-backend-refusal: a host that refuses a backend is an error when
 * the backend was asked for by name, and a fallback under auto, with
 * unitinfo naming the backend really in use.  The refusals are made
 * through lib/host's seam: an O_DIRECT open fails with EINVAL as on a
 * file system without direct I/O, and io_uring setup fails with EPERM
 * (kernel.io_uring_disabled) or ENOSYS (no io_uring).  hs_auto_first
 * makes auto try the refused backend first, as it will once a benchmark
 * makes it pick one.
 */
#include "testlib.h"
#include "internal.h"
#include "host/host.h"
#include "testseam.h"

static char *img;

static int
try_register(enum rumpblk_backend asked, enum rumpblk_backend *used)
{
	struct rumpblk_config cfg;
	struct rumpblk_unitinfo ui;
	struct rumpblk *rb;
	uint8_t buf[4096];
	size_t resid;
	int unit, error;

	rumpblk_config_init(&cfg);
	cfg.backend = asked;
	tl_eq(rumpblk_create(&cfg, &rb), 0);
	error = rumpblk_register(rb, img, 0, RUMPBLK_SIZENOTSET, &unit);
	if (error == 0) {
		tl_eq(rumpblk_unitinfo(rb, unit, &ui), 0);
		*used = ui.ui_backend;
		/* Whatever it fell back to works. */
		tl_eq(tl_io(rb, unit, RUMPBLK_B_READ, 0, buf, sizeof(buf),
		    &resid), 0);
		tl_eq(buf[5], tl_pattern(5, 9));
	}
	tl_eq(rumpblk_destroy(rb), 0);
	return error;
}

static void
direct_refused(void **state)
{
	static struct rb_host_seam seam;
	const struct rb_host_seam seam0 = {
		.hs_open_flags = O_DIRECT,
		.hs_open_error = EINVAL,
	};
	enum rumpblk_backend used = RUMPBLK_BACKEND_AUTO;

	(void)state;
	/* Without the seam, direct works here (ext4 /var/tmp). */
	tl_eq(try_register(RUMPBLK_BACKEND_DIRECT, &used), 0);
	tl_eq(used, RUMPBLK_BACKEND_DIRECT);

	seam = seam0;
	rb_host_seam = &seam;
	tl_eq(try_register(RUMPBLK_BACKEND_DIRECT, &used), EINVAL);
	seam.hs_auto_first = RUMPBLK_BACKEND_DIRECT;
	used = RUMPBLK_BACKEND_AUTO;
	tl_eq(try_register(RUMPBLK_BACKEND_AUTO, &used), 0);
	tl_eq(used, RUMPBLK_BACKEND_PIO);
	/* Other errors are not refusals: auto does not hide them. */
	seam.hs_open_error = EIO;
	tl_eq(try_register(RUMPBLK_BACKEND_AUTO, &used), EIO);
	/* auto that may use direct does. */
	seam.hs_open_error = 0;
	tl_eq(try_register(RUMPBLK_BACKEND_AUTO, &used), 0);
	tl_eq(used, RUMPBLK_BACKEND_DIRECT);
	rb_host_seam = NULL;
}

static void
uring_refused(void **state)
{
	static struct rb_host_seam seam;
	const struct rb_host_seam seam0 = { .hs_uring_error = EPERM };
	enum rumpblk_backend used = RUMPBLK_BACKEND_AUTO;

	(void)state;
#ifndef RUMPBLK_HAVE_URING
	tl_eq(try_register(RUMPBLK_BACKEND_URING, &used), EOPNOTSUPP);
	tl_skip("built without liburing");
#endif
	tl_eq(try_register(RUMPBLK_BACKEND_URING, &used), 0);
	tl_eq(used, RUMPBLK_BACKEND_URING);

	seam = seam0;
	rb_host_seam = &seam;
	tl_eq(try_register(RUMPBLK_BACKEND_URING, &used), EPERM);
	seam.hs_uring_error = ENOSYS;
	tl_eq(try_register(RUMPBLK_BACKEND_URING, &used), ENOSYS);
	seam.hs_auto_first = RUMPBLK_BACKEND_URING;
	tl_eq(try_register(RUMPBLK_BACKEND_AUTO, &used), 0);
	tl_eq(used, RUMPBLK_BACKEND_PIO);
	/* direct without io_uring: its async buffers use the pool. */
	tl_eq(try_register(RUMPBLK_BACKEND_DIRECT, &used), 0);
	tl_eq(used, RUMPBLK_BACKEND_DIRECT);
	rb_host_seam = NULL;
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(direct_refused, tl_teardown_seam),
		cmocka_unit_test_teardown(uring_refused, tl_teardown_seam),
	};
	int rc;

	img = tl_image("refusal.img", 1 << 20, 9);
	rc = tl_main(tests, NULL, NULL);
	free(img);
	return rc;
}
