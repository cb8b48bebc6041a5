/*
 * test-unit-blockdev: a host block device (a loop device over a small
 * image) registers, is sized with BLKGETSIZE64, and moves data to the
 * right place of the backing image, whole or through a window.
 *
 * The loop device is attached with LO_FLAGS_AUTOCLEAR, so the kernel
 * detaches it when the last descriptor closes: on success, on a failed
 * assertion and on a crash alike.  Skipped (77) where loop devices are
 * not available (not root, no loop driver).
 */
#include <linux/fs.h>
#include <linux/loop.h>
#include <sys/ioctl.h>

#include "testlib.h"

#define IMGSIZE	(2 << 20)

static char *img;
static char loopdev[64];
static int loopfd = -1;

/* Attach img to a free loop device; 0 or an errno. */
static int
loop_attach(void)
{
	struct loop_config lc;
	int ctl, n, fd, bfd, tries, error = 0;

	if ((ctl = open("/dev/loop-control", O_RDWR | O_CLOEXEC)) == -1)
		return errno;
	if ((bfd = open(img, O_RDWR | O_CLOEXEC)) == -1) {
		error = errno;
		close(ctl);
		return error;
	}
	/* Another process may take the free device first: retry. */
	for (tries = 0; tries < 20; tries++) {
		if ((n = ioctl(ctl, LOOP_CTL_GET_FREE)) < 0) {
			error = errno;
			break;
		}
		snprintf(loopdev, sizeof(loopdev), "/dev/loop%d", n);
		if ((fd = open(loopdev, O_RDWR | O_CLOEXEC)) == -1) {
			error = errno;
			if (error == ENOENT)
				continue;
			break;
		}
		memset(&lc, 0, sizeof(lc));
		lc.fd = (unsigned)bfd;
		lc.info.lo_flags = LO_FLAGS_AUTOCLEAR;
		if (ioctl(fd, LOOP_CONFIGURE, &lc) == 0) {
			loopfd = fd;
			error = 0;
			break;
		}
		error = errno;
		close(fd);
		if (error != EBUSY)
			break;
	}
	close(bfd);
	close(ctl);
	return loopfd == -1 ? (error ? error : EBUSY) : 0;
}

static void
loop_detach(void)
{
	if (loopfd != -1) {
		/* AUTOCLEAR does it at the last close; say it anyway. */
		ioctl(loopfd, LOOP_CLR_FD, 0);
		close(loopfd);
		loopfd = -1;
	}
}

static void
blockdev(void **state)
{
	struct rumpblk_unitinfo ui;
	struct rumpblk *rb;
	static char buf[65536], host[65536];
	uint64_t media;
	size_t resid;
	int unit, w;

	(void)state;
	if (loopfd == -1)
		tl_skip("no loop device could be attached");
	rb = tl_create(NULL);
	unit = tl_register(rb, loopdev, 0, RUMPBLK_SIZENOTSET);
	tl_eq(rumpblk_unitinfo(rb, unit, &ui), 0);
	tl_eq(ui.ui_ftype, RUMPBLK_FT_BLK);
	tl_eq(ui.ui_size, IMGSIZE);
	tl_eq(ui.ui_hostsize, IMGSIZE);
	tl_eq(ui.ui_mode, RUMPBLK_FREAD | RUMPBLK_FWRITE);
	tl_eq(rumpblk_ioctl(rb, unit, RUMPBLK_DIOCGMEDIASIZE, &media), 0);
	tl_eq(media, IMGSIZE);

	tl_eq(tl_io(rb, unit, RUMPBLK_B_READ, 100, buf, 65536, &resid), 0);
	tl_eq(resid, 0);
	tl_eq(tl_check(buf, 65536, 100 * 512, 21), -1);
	/* The end of the device bounds requests. */
	tl_eq(tl_io(rb, unit, RUMPBLK_B_READ, IMGSIZE / 512 - 4, buf, 4096,
	    &resid), 0);
	tl_eq(resid, 2048);
	tl_eq(tl_io(rb, unit, RUMPBLK_B_READ, IMGSIZE / 512 + 1, buf, 512,
	    NULL), EINVAL);

	/* A write lands in the backing image at the same place. */
	memset(buf, 0x3c, 8192);
	tl_eq(tl_io(rb, unit, RUMPBLK_B_WRITE, 24, buf, 8192, &resid), 0);
	tl_eq(rumpblk_ioctl(rb, unit, RUMPBLK_DIOCCACHESYNC, NULL), 0);
	tl_eq(ioctl(loopfd, BLKFLSBUF, 0), 0);
	tl_host_read(img, host, 8192, 24 * 512);
	tl_true(tl_all(host, 8192, 0x3c));

	/* A window of the device. */
	w = tl_register(rb, loopdev, 1 << 20, 65536);
	tl_true(w != unit);
	tl_eq(tl_io(rb, w, RUMPBLK_B_READ, 0, buf, 65536, &resid), 0);
	tl_eq(tl_check(buf, 65536, 1 << 20, 21), -1);
	tl_eq(tl_io(rb, w, RUMPBLK_B_READ, 128, buf, 512, NULL), 0);
	tl_eq(rumpblk_register(rb, loopdev, 0, IMGSIZE + 512, &w), EINVAL);

	tl_eq(rumpblk_deregister(rb, loopdev), 0);
	tl_eq(rumpblk_unitinfo(rb, unit, &ui), ENXIO);
	tl_eq(rumpblk_destroy(rb), 0);
}

static int
setup(void **state)
{
	int error;

	(void)state;
	img = tl_image("loop.img", IMGSIZE, 21);
	if ((error = loop_attach()) != 0)
		fprintf(stderr, "cannot attach a loop device: %s\n",
		    strerror(error));
	return 0;
}

static int
teardown(void **state)
{
	(void)state;
	loop_detach();
	free(img);
	return 0;
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(blockdev),
	};

	return tl_main(tests, setup, teardown);
}
