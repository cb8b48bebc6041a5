/*
 * test-unit-readonly: a host file that cannot be opened for writing (on a
 * read-only mount; root ignores mode 0444) registers read-only: an
 * RUMPBLK_FWRITE open gives EACCES, an FREAD open works, writes, trims
 * and zeroes give EROFS, reads, extent queries and flushes work.
 *
 * The test enters a private mount namespace (unshare(CLONE_NEWNS), before
 * any thread exists) and bind-mounts a scratch directory read-only.  The
 * mount is undone in the teardown, and in any case it lives only in this
 * process's namespace, so it disappears with the process even after a
 * crash.  Skipped (77) where mounting is impossible.
 */
#include <sched.h>
#include <sys/mount.h>

#include "testlib.h"

static char *mnt, *img;
static int mounted;

static void
readonly(void **state)
{
	struct rumpblk_unitinfo ui;
	struct rumpblk_stats st;
	struct rumpblk *rb;
	char buf[8192];
	size_t resid;
	int unit;

	(void)state;
	if (!mounted)
		tl_skip("cannot make a read-only mount here");
	/* The premise: the host refuses to open the file for writing. */
	tl_eq(open(img, O_RDWR), -1);
	tl_eq(errno, EROFS);

	rb = tl_create(NULL);
	unit = tl_register(rb, img, 0, RUMPBLK_SIZENOTSET);
	tl_eq(rumpblk_unitinfo(rb, unit, &ui), 0);
	tl_eq(ui.ui_mode, RUMPBLK_FREAD);
	tl_eq(rumpblk_open(rb, unit, RUMPBLK_FWRITE), EACCES);
	tl_eq(rumpblk_open(rb, unit, RUMPBLK_FREAD | RUMPBLK_FWRITE), EACCES);
	tl_eq(rumpblk_open(rb, unit, RUMPBLK_FREAD), 0);
	tl_eq(rumpblk_close(rb, unit, RUMPBLK_FREAD), 0);

	tl_eq(tl_io(rb, unit, RUMPBLK_B_READ, 8, buf, sizeof(buf), &resid),
	    0);
	tl_eq(resid, 0);
	tl_eq(tl_check(buf, sizeof(buf), 8 * 512, 9), -1);

	memset(buf, 0, sizeof(buf));
	tl_eq(tl_io(rb, unit, RUMPBLK_B_WRITE, 8, buf, 4096, &resid), EROFS);
	tl_eq(resid, 4096);
	tl_eq(tl_io(rb, unit, RUMPBLK_B_WRITE | RUMPBLK_B_ASYNC, 8, buf, 4096,
	    &resid), EROFS);
	tl_eq(tl_io(rb, unit, RUMPBLK_B_TRIM, 8, NULL, 4096, NULL), EROFS);
	tl_eq(tl_io(rb, unit, RUMPBLK_B_ZERO, 8, NULL, 4096, NULL), EROFS);
	/* Nothing to make durable: a flush succeeds either way. */
	tl_eq(rumpblk_ioctl(rb, unit, RUMPBLK_DIOCCACHESYNC, NULL), 0);
	tl_eq(tl_io(rb, unit, RUMPBLK_B_FLUSH, 0, NULL, 0, NULL), 0);
	/* Extent queries read. */
	{
		struct rumpblk_extents *ex = calloc(1, sizeof(*ex) +
		    4 * sizeof(ex->ex_ext[0]));

		ex->ex_max = 4;
		tl_eq(tl_io(rb, unit, RUMPBLK_B_EXTENTS, 0, ex, 64 << 10,
		    NULL), 0);
		tl_true(ex->ex_count >= 1);
		free(ex);
	}

	/* Nothing changed, and the character path refuses too. */
	tl_host_read(img, buf, 4096, 8 * 512);
	tl_eq(tl_check(buf, 4096, 8 * 512, 9), -1);
	{
		struct iovec iov = { buf, 4096 };
		struct rumpblk_uio uio = { &iov, 1, 4096, 4096 };

		tl_eq(rumpblk_write(rb, unit, &uio, 0), EROFS);
		tl_eq(uio.uio_resid, 4096);
	}
	rumpblk_stats(rb, unit, &st);
	tl_eq(st.bytes_written, 0);
	tl_eq(st.bytes_read, 8192);
	tl_eq(rumpblk_destroy(rb), 0);
}

static int
setup(void **state)
{
	char *dir, *src;

	(void)state;
	/*
	 * A read-only bind mount of a directory of the scratch file system
	 * (not a tmpfs, so that backends using O_DIRECT can open the file).
	 */
	mnt = tl_path("ro");
	dir = tl_path("rw");
	img = NULL;
	if (mkdir(mnt, 0755) == -1 || mkdir(dir, 0755) == -1)
		goto out;
	src = tl_image("rw/disk.img", 64 << 10, 9);
	free(src);
	if (unshare(CLONE_NEWNS) == -1 ||
	    mount("none", "/", "none", MS_REC | MS_PRIVATE, NULL) == -1 ||
	    mount(dir, mnt, "none", MS_BIND, NULL) == -1) {
		fprintf(stderr, "cannot bind-mount %s: %s\n", dir,
		    strerror(errno));
		goto out;
	}
	mounted = 1;
	if (mount("none", mnt, "none", MS_REMOUNT | MS_BIND | MS_RDONLY,
	    NULL) == -1) {
		fprintf(stderr, "cannot remount %s read-only: %s\n", mnt,
		    strerror(errno));
		umount2(mnt, MNT_DETACH);
		mounted = 0;
		goto out;
	}
	if (asprintf(&img, "%s/disk.img", mnt) == -1)
		abort();
out:
	free(dir);
	return 0;
}

static int
teardown(void **state)
{
	(void)state;
	if (mounted && umount2(mnt, MNT_DETACH) == -1)
		fprintf(stderr, "umount %s: %s\n", mnt, strerror(errno));
	mounted = 0;
	free(img);
	free(mnt);
	return 0;
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(readonly),
	};

	return tl_main(tests, setup, teardown);
}
