/*
 * test-unit-register: rumpblk_register() accepts regular files and
 * character devices (block devices: test-unit-blockdev) and nothing else;
 * a full unit table gives EBUSY; the same file, offset and size give the
 * same unit and another window a new one; windows past the end give
 * EINVAL; an unsizable character device needs an explicit size.
 */
#include <sys/socket.h>
#include <sys/un.h>

#include "testlib.h"

static void
file_types(void **state)
{
	struct rumpblk_unitinfo ui;
	struct rumpblk *rb;
	char *img = tl_image("types.img", 64 << 10, 1);
	char *fifo = tl_path("fifo"), *dir = tl_path("dir");
	char *missing = tl_path("missing.img"), *sock = tl_path("sock");
	struct sockaddr_un sa;
	int unit = -1, s;

	(void)state;
	rb = tl_create(NULL);
	tl_eq(mkfifo(fifo, 0644), 0);
	tl_eq(mkdir(dir, 0755), 0);
	tl_eq(rumpblk_register(rb, fifo, 0, RUMPBLK_SIZENOTSET, &unit),
	    EINVAL);
	tl_eq(rumpblk_register(rb, fifo, 0, 4096, &unit), EINVAL);
	tl_eq(rumpblk_register(rb, dir, 0, RUMPBLK_SIZENOTSET, &unit), EINVAL);
	tl_eq(rumpblk_register(rb, missing, 0, RUMPBLK_SIZENOTSET, &unit),
	    ENOENT);

	s = socket(AF_UNIX, SOCK_STREAM, 0);
	memset(&sa, 0, sizeof(sa));
	sa.sun_family = AF_UNIX;
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", sock);
	if (s != -1 && bind(s, (struct sockaddr *)&sa, sizeof(sa)) == 0)
		tl_eq(rumpblk_register(rb, sock, 0, RUMPBLK_SIZENOTSET,
		    &unit), EINVAL);
	if (s != -1)
		close(s);

	/* None of those took a slot. */
	unit = tl_register(rb, img, 0, RUMPBLK_SIZENOTSET);
	tl_eq(unit, 0);
	tl_eq(rumpblk_unitinfo(rb, unit, &ui), 0);
	tl_eq(ui.ui_ftype, RUMPBLK_FT_REG);
	tl_eq(ui.ui_offset, 0);
	tl_eq(ui.ui_size, 64 << 10);
	tl_eq(ui.ui_hostsize, 64 << 10);
	tl_eq(ui.ui_secsize, 512);
	tl_eq(ui.ui_mode, RUMPBLK_FREAD | RUMPBLK_FWRITE);
	tl_eq(ui.ui_backend, tl_backend());
	tl_eq(strcmp(ui.ui_path, img), 0);
	tl_eq(rumpblk_destroy(rb), 0);
	free(img);
	free(fifo);
	free(dir);
	free(missing);
	free(sock);
}

static void
table_full(void **state)
{
	struct rumpblk_config cfg;
	struct rumpblk *rb;
	char *a = tl_image("a.img", 8192, 1), *b = tl_image("b.img", 8192, 2);
	char *c = tl_image("c.img", 8192, 3);
	int ua, ub, unit = -1;

	(void)state;
	tl_config(&cfg);
	cfg.max_units = 2;
	rb = tl_create(&cfg);
	ua = tl_register(rb, a, 0, RUMPBLK_SIZENOTSET);
	ub = tl_register(rb, b, 0, RUMPBLK_SIZENOTSET);
	tl_true(ua != ub);
	tl_eq(rumpblk_register(rb, c, 0, RUMPBLK_SIZENOTSET, &unit), EBUSY);
	/* Another window of a: a new unit, so also EBUSY. */
	tl_eq(rumpblk_register(rb, a, 512, RUMPBLK_SIZENOTSET, &unit), EBUSY);
	/* The same unit again needs no slot. */
	tl_eq(rumpblk_register(rb, a, 0, RUMPBLK_SIZENOTSET, &unit), 0);
	tl_eq(unit, ua);
	/* A freed slot is used again. */
	tl_eq(rumpblk_deregister(rb, b), 0);
	tl_eq(rumpblk_register(rb, c, 0, RUMPBLK_SIZENOTSET, &unit), 0);
	tl_eq(unit, ub);
	tl_eq(rumpblk_destroy(rb), 0);
	free(a);
	free(b);
	free(c);
}

static void
same_and_other_windows(void **state)
{
	struct rumpblk_unitinfo ui;
	struct rumpblk *rb;
	char *img = tl_image("win.img", 64 << 10, 4);
	char *lnk = tl_path("win-link.img");
	int u0, u1, u2, u3, unit;

	(void)state;
	rb = tl_create(NULL);
	u0 = tl_register(rb, img, 0, RUMPBLK_SIZENOTSET);
	tl_eq(tl_register(rb, img, 0, RUMPBLK_SIZENOTSET), u0);
	/* The same file by another name is the same file. */
	tl_eq(link(img, lnk), 0);
	tl_eq(tl_register(rb, lnk, 0, RUMPBLK_SIZENOTSET), u0);

	u1 = tl_register(rb, img, 4096, RUMPBLK_SIZENOTSET);
	u2 = tl_register(rb, img, 4096, 8192);
	u3 = tl_register(rb, img, 0, 8192);
	tl_true(u1 != u0 && u2 != u0 && u3 != u0);
	tl_true(u1 != u2 && u1 != u3 && u2 != u3);
	tl_eq(tl_register(rb, img, 4096, 8192), u2);
	tl_eq(rumpblk_unitinfo(rb, u1, &ui), 0);
	tl_eq(ui.ui_offset, 4096);
	tl_eq(ui.ui_size, (64 << 10) - 4096);
	tl_eq(rumpblk_unitinfo(rb, u2, &ui), 0);
	tl_eq(ui.ui_offset, 4096);
	tl_eq(ui.ui_size, 8192);
	tl_eq(ui.ui_hostsize, 64 << 10);

	/* Deregister detaches every window of the file. */
	tl_eq(rumpblk_deregister(rb, img), 0);
	tl_eq(rumpblk_unitinfo(rb, u0, &ui), ENXIO);
	tl_eq(rumpblk_unitinfo(rb, u1, &ui), ENXIO);
	tl_eq(rumpblk_unitinfo(rb, u2, &ui), ENXIO);
	tl_eq(rumpblk_unitinfo(rb, u3, &ui), ENXIO);
	tl_eq(rumpblk_deregister(rb, img), ENOENT);
	tl_eq(rumpblk_register(rb, img, 0, 512, &unit), 0);
	tl_eq(rumpblk_destroy(rb), 0);
	free(img);
	free(lnk);
}

static void
past_the_end(void **state)
{
	struct rumpblk *rb;
	char *img = tl_image("end.img", 64 << 10, 5);
	int unit = -1;

	(void)state;
	rb = tl_create(NULL);
	/* offset at or past the end with "the rest": nothing is left. */
	tl_eq(rumpblk_register(rb, img, 64 << 10, RUMPBLK_SIZENOTSET, &unit),
	    EINVAL);
	tl_eq(rumpblk_register(rb, img, 1 << 20, RUMPBLK_SIZENOTSET, &unit),
	    EINVAL);
	/* offset + size past the end. */
	tl_eq(rumpblk_register(rb, img, 0, (64 << 10) + 512, &unit), EINVAL);
	tl_eq(rumpblk_register(rb, img, 4096, 64 << 10, &unit), EINVAL);
	tl_eq(rumpblk_register(rb, img, 1 << 20, 512, &unit), EINVAL);
	/* Wrapping around 2^64. */
	tl_eq(rumpblk_register(rb, img, 4096, UINT64_MAX - 4095, &unit),
	    EINVAL);
	tl_eq(rumpblk_register(rb, img, UINT64_MAX - 10, 512, &unit), EINVAL);
	/* Exactly to the end is fine. */
	tl_eq(rumpblk_register(rb, img, 4096, (64 << 10) - 4096, &unit), 0);
	tl_eq(rumpblk_register(rb, NULL, 0, 512, &unit), EINVAL);
	tl_eq(rumpblk_register(rb, img, 0, 512, NULL), EINVAL);
	tl_eq(rumpblk_destroy(rb), 0);
	free(img);
}

static void
chardev_zero(void **state)
{
	struct rumpblk_unitinfo ui;
	struct rumpblk *rb;
	char buf[8192];
	uint64_t media;
	size_t resid;
	int unit = -1;

	(void)state;
	if (access("/dev/zero", R_OK | W_OK) != 0)
		tl_skip("/dev/zero not usable");
	rb = tl_create(NULL);
	tl_eq(rumpblk_register(rb, "/dev/zero", 0, RUMPBLK_SIZENOTSET,
	    &unit), EOPNOTSUPP);
	if (tl_backend() == RUMPBLK_BACKEND_DIRECT) {
		/* /dev/zero takes no O_DIRECT, and an explicit direct
		 * unit is refused rather than silently buffered (#7). */
		tl_eq(rumpblk_register(rb, "/dev/zero", 0, 1 << 20, &unit),
		    EINVAL);
		tl_eq(rumpblk_destroy(rb), 0);
		return;
	}
	tl_eq(rumpblk_register(rb, "/dev/zero", 0, 1 << 20, &unit), 0);
	tl_eq(rumpblk_unitinfo(rb, unit, &ui), 0);
	tl_eq(ui.ui_ftype, RUMPBLK_FT_CHR);
	tl_eq(ui.ui_size, 1 << 20);
	tl_eq(rumpblk_ioctl(rb, unit, RUMPBLK_DIOCGMEDIASIZE, &media), 0);
	tl_eq(media, 1 << 20);
	memset(buf, 0x77, sizeof(buf));
	tl_eq(tl_io(rb, unit, RUMPBLK_B_READ, 16, buf, sizeof(buf), &resid),
	    0);
	tl_eq(resid, 0);
	tl_true(tl_all(buf, sizeof(buf), 0));
	tl_eq(tl_io(rb, unit, RUMPBLK_B_WRITE, 16, buf, sizeof(buf), &resid),
	    0);
	/* The size given is the unit's size: bounds apply. */
	tl_eq(tl_io(rb, unit, RUMPBLK_B_READ, (1 << 20) / 512 + 1, buf, 512,
	    NULL), EINVAL);
	tl_eq(rumpblk_ioctl(rb, unit, RUMPBLK_DIOCCACHESYNC, NULL), 0);
	tl_eq(rumpblk_destroy(rb), 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(file_types),
		cmocka_unit_test(table_full),
		cmocka_unit_test(same_and_other_windows),
		cmocka_unit_test(past_the_end),
		cmocka_unit_test(chardev_zero),
	};

	return tl_main(tests, NULL, NULL);
}
