/*
 * test-mmap-windows: the mmap backend's window cache (DESIGN.md §4).
 * Windows smaller than a request, windows of 4 KiB and of 4 MiB, a file
 * whose size is not a multiple of the window size, a host offset that is
 * not window-aligned, hits and misses counted, durability of synchronous
 * writes (seen through a separate pread of the host file), the sync op
 * reaching the host, TRIM/ZERO coherent with mapped windows, and the
 * fallback to pio when the first mappings fail at registration, and what
 * auto picks.
 *
 * Every check runs on the mmap backend whatever the matrix says; the
 * results are compared with pread of the host file.
 */
#include <linux/capability.h>
#include <sys/syscall.h>

#include "testlib.h"
#include "host/host.h"

#define KiB	1024u
#define MiB	(1024u * 1024u)

/* Read the unit in chunks of req bytes and compare with the host file. */
static void
check_read_all(struct rumpblk *rb, int unit, const char *img,
    uint64_t hostoff, uint64_t size, size_t req)
{
	char *buf = malloc(req), *want = malloc(req);
	uint64_t off;
	size_t n, resid;
	int fd = open(img, O_RDONLY);

	assert(buf != NULL && want != NULL && fd != -1);
	for (off = 0; off < size; off += req) {
		n = size - off < req ? (size_t)(size - off) : req;
		memset(buf, 0x5a, req);
		tl_eq(tl_io(rb, unit, RUMPBLK_B_READ, (int64_t)(off / 512), buf,
		    req, &resid), 0);
		tl_eq(resid, req - n);
		tl_eq(pread(fd, want, n, (off_t)(hostoff + off)), (ssize_t)n);
		if (memcmp(buf, want, n) != 0)
			tl_fail("data differs at unit offset %" PRIu64
			    " (request %zu)\n", off, req);
	}
	close(fd);
	free(buf);
	free(want);
}

static void
check_unitinfo(struct rumpblk *rb, int unit, uint64_t winsize)
{
	struct rumpblk_unitinfo ui;

	tl_eq(rumpblk_unitinfo(rb, unit, &ui), 0);
	tl_eq(ui.ui_backend, RUMPBLK_BACKEND_MMAP);
	tl_eq(ui.ui_winsize, winsize);
}

/* 4 KiB windows, 64 KiB requests: every request spans 16 windows. */
static void
small_windows(void **state)
{
	struct rumpblk *rb = tl_mmap_create(4 * KiB, 4);
	char *img = tl_image("small.img", 1 * MiB, 3);
	struct rumpblk_stats st;
	int unit;

	(void)state;
	tl_eq(rumpblk_register(rb, img, 0, RUMPBLK_SIZENOTSET, &unit), 0);
	check_unitinfo(rb, unit, 4 * KiB);
	check_read_all(rb, unit, img, 0, 1 * MiB, 64 * KiB);
	rumpblk_stats(rb, unit, &st);
	if (st.win_misses < 1 * MiB / (4 * KiB) - 4)
		tl_fail("win_misses %" PRIu64 ", expected at least %u\n",
		    st.win_misses, 1 * MiB / (4 * KiB) - 4);
	if (st.win_hits + st.win_misses < 1 * MiB / (4 * KiB))
		tl_fail("hits %" PRIu64 " + misses %" PRIu64 " < windows\n",
		    st.win_hits, st.win_misses);
	tl_eq(rumpblk_destroy(rb), 0);
	free(img);
}

/* Write through small windows and read back through the host. */
static void
small_windows_write(void **state)
{
	struct rumpblk *rb = tl_mmap_create(4 * KiB, 2);
	char *img = tl_image("smallw.img", 512 * KiB, 5);
	char *buf = malloc(64 * KiB), *got = malloc(64 * KiB);
	size_t resid, i;
	int unit, fd;

	(void)state;
	tl_eq(rumpblk_register(rb, img, 0, RUMPBLK_SIZENOTSET, &unit), 0);
	for (i = 0; i < 64 * KiB; i++)
		buf[i] = (char)(i * 7 + 1);
	/* A request starting mid-window and ending mid-window. */
	tl_eq(tl_io(rb, unit, RUMPBLK_B_WRITE, 3, buf, 64 * KiB, &resid), 0);
	tl_eq(resid, 0);
	fd = open(img, O_RDONLY);
	assert(fd != -1);
	tl_eq(pread(fd, got, 64 * KiB, 3 * 512), 64 * KiB);
	tl_eq(memcmp(buf, got, 64 * KiB), 0);
	close(fd);
	check_read_all(rb, unit, img, 0, 512 * KiB, 64 * KiB);
	tl_eq(rumpblk_destroy(rb), 0);
	free(buf);
	free(got);
	free(img);
}

/* 4 MiB windows on a 5 MiB + 1536 byte file: the last window is short. */
static void
big_windows_odd_size(void **state)
{
	uint64_t size = 5 * MiB + 1536;
	struct rumpblk *rb = tl_mmap_create(4 * MiB, 16);
	char *img = tl_image("big.img", size, 9);
	struct rumpblk_unitinfo ui;
	char buf[4096];
	size_t resid;
	int unit;

	(void)state;
	tl_eq(rumpblk_register(rb, img, 0, RUMPBLK_SIZENOTSET, &unit), 0);
	check_unitinfo(rb, unit, 4 * MiB);
	tl_eq(rumpblk_unitinfo(rb, unit, &ui), 0);
	tl_eq(ui.ui_wincount, 2);	/* the windows the unit spans */
	check_read_all(rb, unit, img, 0, size, 64 * KiB);
	check_read_all(rb, unit, img, 0, size, 4096);
	/* Straddling the end: moves what is there, resid is the rest. */
	tl_eq(tl_io(rb, unit, RUMPBLK_B_READ, (int64_t)((size - 1024) / 512),
	    buf, 4096, &resid), 0);
	tl_eq(resid, 4096 - 1024);
	tl_eq(rumpblk_destroy(rb), 0);
	free(img);
}

/* 4 KiB windows on a file of 10 windows and a half. */
static void
small_windows_odd_size(void **state)
{
	uint64_t size = 10 * 4 * KiB + 2 * KiB;
	struct rumpblk *rb = tl_mmap_create(4 * KiB, 3);
	char *img = tl_image("odd.img", size, 11);
	int unit;

	(void)state;
	tl_eq(rumpblk_register(rb, img, 0, RUMPBLK_SIZENOTSET, &unit), 0);
	check_read_all(rb, unit, img, 0, size, 8 * KiB);
	check_read_all(rb, unit, img, 0, size, 512);
	tl_eq(rumpblk_destroy(rb), 0);
	free(img);
}

/* A unit at host offset 4608 (not 4 KiB aligned) of 100 KiB. */
static void
unaligned_hostoffset(void **state)
{
	uint64_t hoff = 4096 + 512, size = 100 * KiB;
	struct rumpblk *rb = tl_mmap_create(4 * KiB, 4);
	char *img = tl_image("unal.img", 256 * KiB, 13);
	char *buf = malloc(8 * KiB), *got = malloc(8 * KiB);
	size_t resid;
	int unit, fd;

	(void)state;
	tl_eq(rumpblk_register(rb, img, hoff, size, &unit), 0);
	check_unitinfo(rb, unit, 4 * KiB);
	check_read_all(rb, unit, img, hoff, size, 64 * KiB);
	check_read_all(rb, unit, img, hoff, size, 1536);
	memset(buf, 0xc3, 8 * KiB);
	/* The last 8 KiB of the unit; nothing past it may change. */
	tl_eq(tl_io(rb, unit, RUMPBLK_B_WRITE, (int64_t)((size - 8 * KiB) /
	    512), buf, 8 * KiB, &resid), 0);
	fd = open(img, O_RDONLY);
	assert(fd != -1);
	tl_eq(pread(fd, got, 8 * KiB, (off_t)(hoff + size - 8 * KiB)),
	    8 * KiB);
	tl_eq(memcmp(buf, got, 8 * KiB), 0);
	tl_eq(pread(fd, got, 512, (off_t)(hoff + size)), 512);
	tl_eq((uint8_t)got[0], tl_pattern(hoff + size, 13));
	tl_eq(pread(fd, got, 512, (off_t)(hoff - 512)), 512);
	tl_eq((uint8_t)got[511], tl_pattern(hoff - 1, 13));
	close(fd);
	tl_eq(rumpblk_destroy(rb), 0);
	free(buf);
	free(got);
	free(img);
}

/*
 * A synchronous write is in the host file when it completes (a separate
 * descriptor sees it), and its msync and the sync op reach the host: the
 * host seam makes syncs fail, and the errors must come back.
 */
static void
sync_write_durable(void **state)
{
	struct rb_host_seam seam = { 0 };
	struct rumpblk *rb = tl_mmap_create(64 * KiB, 4);
	char *img = tl_image("dur.img", 1 * MiB, 17);
	char buf[8192], got[8192];
	size_t resid;
	int unit, fd;

	(void)state;
	tl_eq(rumpblk_register(rb, img, 0, RUMPBLK_SIZENOTSET, &unit), 0);
	memset(buf, 0x3c, sizeof(buf));
	/* Across a window boundary. */
	tl_eq(tl_io(rb, unit, RUMPBLK_B_WRITE, 64 * KiB / 512 - 8, buf,
	    sizeof(buf), &resid), 0);
	fd = open(img, O_RDONLY);
	assert(fd != -1);
	tl_eq(pread(fd, got, sizeof(got), 64 * KiB - 4096), sizeof(got));
	tl_eq(memcmp(buf, got, sizeof(got)), 0);

	seam.hs_sync_error = ENOSPC;
	rb_host_seam = &seam;
	/* A synchronous write msyncs: the host's error comes back. */
	tl_eq(tl_io(rb, unit, RUMPBLK_B_WRITE, 0, buf, 4096, &resid), ENOSPC);
	/* An asynchronous one does not sync... */
	tl_eq(tl_io(rb, unit, RUMPBLK_B_WRITE | RUMPBLK_B_ASYNC, 0, buf, 4096,
	    &resid), 0);
	/* ...but FUA does, and so do FLUSH and DIOCCACHESYNC. */
	tl_eq(tl_io(rb, unit, RUMPBLK_B_WRITE | RUMPBLK_B_ASYNC |
	    RUMPBLK_B_FUA, 0, buf, 4096, &resid), ENOSPC);
	tl_eq(tl_io(rb, unit, RUMPBLK_B_FLUSH, 0, NULL, 0, &resid), ENOSPC);
	tl_eq(rumpblk_ioctl(rb, unit, RUMPBLK_DIOCCACHESYNC, NULL), ENOSPC);
	rb_host_seam = NULL;
	tl_eq(rumpblk_ioctl(rb, unit, RUMPBLK_DIOCCACHESYNC, NULL), 0);
	tl_eq(pread(fd, got, 4096, 0), 4096);
	tl_eq(memcmp(buf, got, 4096), 0);
	close(fd);
	tl_eq(rumpblk_destroy(rb), 0);
	free(img);
}

/* ZERO and TRIM go to the descriptor; mapped windows see the result. */
static void
zero_trim_coherent(void **state)
{
	struct rumpblk *rb = tl_mmap_create(64 * KiB, 4);
	char *img = tl_image("zero.img", 1 * MiB, 19);
	char buf[65536], zero[65536];
	size_t resid;
	int unit, e;

	(void)state;
	tl_eq(rumpblk_register(rb, img, 0, RUMPBLK_SIZENOTSET, &unit), 0);
	memset(zero, 0, sizeof(zero));
	/* Map the window first, then zero under it. */
	tl_eq(tl_io(rb, unit, RUMPBLK_B_READ, 128, buf, sizeof(buf), &resid),
	    0);
	tl_eq(tl_io(rb, unit, RUMPBLK_B_ZERO, 128, NULL, sizeof(buf), &resid),
	    0);
	tl_eq(tl_io(rb, unit, RUMPBLK_B_READ, 128, buf, sizeof(buf), &resid),
	    0);
	tl_eq(memcmp(buf, zero, sizeof(buf)), 0);
	tl_eq(tl_io(rb, unit, RUMPBLK_B_READ, 512, buf, sizeof(buf), &resid),
	    0);
	e = tl_io(rb, unit, RUMPBLK_B_TRIM, 512, NULL, sizeof(buf), &resid);
	if (e == 0) {
		/* A punched hole reads as zeroes through the window. */
		tl_eq(tl_io(rb, unit, RUMPBLK_B_READ, 512, buf, sizeof(buf),
		    &resid), 0);
		tl_eq(memcmp(buf, zero, sizeof(buf)), 0);
	} else if (e != EOPNOTSUPP)
		tl_fail("TRIM: %d\n", e);
	tl_eq(rumpblk_destroy(rb), 0);
	free(img);
}

/* The first mappings fail at registration: the unit falls back to pio. */
static void
fallback_to_pio(void **state)
{
	struct rb_host_seam seam = { 0 };
	struct rumpblk *rb = tl_mmap_create(64 * KiB, 4);
	char *img = tl_image("fall.img", 1 * MiB, 23);
	struct rumpblk_unitinfo ui;
	struct rumpblk_stats st;
	int unit;

	(void)state;
	seam.hs_mmap_error = ENOMEM;
	rb_host_seam = &seam;
	tl_eq(rumpblk_register(rb, img, 0, RUMPBLK_SIZENOTSET, &unit), 0);
	rb_host_seam = NULL;
	tl_eq(rumpblk_unitinfo(rb, unit, &ui), 0);
	tl_eq(ui.ui_backend, RUMPBLK_BACKEND_PIO);
	tl_eq(ui.ui_wincount, 0);
	check_read_all(rb, unit, img, 0, 1 * MiB, 64 * KiB);
	rumpblk_stats(rb, unit, &st);
	tl_eq(st.win_hits + st.win_misses + st.win_busy, 0);
	tl_eq(rumpblk_destroy(rb), 0);
	free(img);
}

/* A mapping that fails after registration fails that request only. */
static void
map_failure_later(void **state)
{
	struct rb_host_seam seam = { 0 };
	struct rumpblk *rb = tl_mmap_create(4 * KiB, 3);
	char *img = tl_image("later.img", 256 * KiB, 41);
	char buf[16384];
	size_t resid;
	int unit, i;

	(void)state;
	tl_eq(rumpblk_register(rb, img, 0, RUMPBLK_SIZENOTSET, &unit), 0);
	seam.hs_mmap_error = ENOMEM;
	rb_host_seam = &seam;
	/*
	 * Windows 0-2 are mapped at registration.  A miss unmaps the
	 * oldest (window 0) before its mapping fails.
	 */
	tl_eq(tl_io(rb, unit, RUMPBLK_B_READ, 64, buf, 4096, &resid), ENOMEM);
	tl_eq(resid, 4096);
	/* Across windows 1, 2 (mapped) and 3: stops where it cannot map. */
	tl_eq(tl_io(rb, unit, RUMPBLK_B_READ, 8, buf, 12288, &resid), ENOMEM);
	tl_eq(resid, 4096);
	tl_eq((uint8_t)buf[0], tl_pattern(4096, 41));
	tl_eq((uint8_t)buf[8191], tl_pattern(4096 + 8191, 41));
	rb_host_seam = NULL;
	for (i = 0; i < 3; i++)
		check_read_all(rb, unit, img, 0, 256 * KiB, 16384);
	tl_eq(rumpblk_destroy(rb), 0);
	free(img);
}

/*
 * Root opens a 0444 file read-write anyway: CAP_DAC_OVERRIDE bypasses the
 * mode.  readonly_file takes that capability out of its thread's
 * effective set for the registration (the open happens on the calling
 * thread), so the file is as read-only to it as to any other user; the
 * teardown puts the capability back.  Without the capability this is a
 * no-op.
 */
static struct __user_cap_header_struct cap_hdr = {
	.version = _LINUX_CAPABILITY_VERSION_3,
};
static struct __user_cap_data_struct cap_saved[2];
static bool cap_dropped;

static void
drop_dac_override(void)
{
	struct __user_cap_data_struct cap[2];

	tl_eq(syscall(SYS_capget, &cap_hdr, cap_saved), 0);
	memcpy(cap, cap_saved, sizeof(cap));
	cap[CAP_TO_INDEX(CAP_DAC_OVERRIDE)].effective &=
	    ~CAP_TO_MASK(CAP_DAC_OVERRIDE);
	if (syscall(SYS_capset, &cap_hdr, cap) != 0)
		tl_fail("capset: %s\n", strerror(errno));
	cap_dropped = true;
}

static int
restore_dac_override(void **state)
{
	(void)state;
	if (cap_dropped && syscall(SYS_capset, &cap_hdr, cap_saved) != 0) {
		fprintf(stderr, "capset: %s\n", strerror(errno));
		return -1;
	}
	cap_dropped = false;
	return 0;
}

/* A read-only host file maps read-only and serves reads. */
static void
readonly_file(void **state)
{
	struct rumpblk *rb = tl_mmap_create(64 * KiB, 2);
	char *img = tl_image("ro.img", 256 * KiB, 29);
	struct rumpblk_unitinfo ui;
	char buf[4096];
	size_t resid;
	int unit, fd;

	(void)state;
	tl_eq(chmod(img, 0444), 0);
	drop_dac_override();
	/* The premise: this thread cannot open the file for writing. */
	if ((fd = open(img, O_RDWR)) != -1) {
		close(fd);
		tl_fail("%s (0444) still opens read-write\n", img);
	}
	tl_eq(errno, EACCES);
	tl_eq(rumpblk_register(rb, img, 0, RUMPBLK_SIZENOTSET, &unit), 0);
	tl_eq(restore_dac_override(NULL), 0);
	tl_eq(rumpblk_unitinfo(rb, unit, &ui), 0);
	tl_eq(ui.ui_backend, RUMPBLK_BACKEND_MMAP);
	tl_eq(ui.ui_mode & RUMPBLK_FWRITE, 0);
	check_read_all(rb, unit, img, 0, 256 * KiB, 64 * KiB);
	tl_eq(tl_io(rb, unit, RUMPBLK_B_WRITE, 0, buf, sizeof(buf), &resid),
	    EROFS);
	tl_eq(rumpblk_destroy(rb), 0);
	free(img);
}

/* auto: mmap when the windows cover the unit, pio otherwise. */
static enum rumpblk_backend
auto_pick(const char *img, uint64_t winsize, unsigned wincount,
    uint64_t off, uint64_t size)
{
	struct rumpblk_config cfg;
	struct rumpblk_unitinfo ui;
	struct rumpblk *rb;
	int unit;

	rumpblk_config_init(&cfg);
	cfg.backend = RUMPBLK_BACKEND_AUTO;
	cfg.winsize = winsize;
	cfg.wincount = wincount;
	tl_eq(rumpblk_create(&cfg, &rb), 0);
	tl_eq(rumpblk_register(rb, img, off, size, &unit), 0);
	tl_eq(rumpblk_unitinfo(rb, unit, &ui), 0);
	tl_eq(rumpblk_destroy(rb), 0);
	return ui.ui_backend;
}

static void
auto_by_windows(void **state)
{
	char *img = tl_image("auto.img", 32 * MiB, 0);

	(void)state;
	/* The library's defaults, 16 x 1 MiB, do not cover 32 MiB. */
	tl_eq(auto_pick(img, 1 * MiB, 16, 0, RUMPBLK_SIZENOTSET),
	    RUMPBLK_BACKEND_PIO);
	tl_eq(auto_pick(img, 1 * MiB, 32, 0, RUMPBLK_SIZENOTSET),
	    RUMPBLK_BACKEND_MMAP);
	tl_eq(auto_pick(img, 32 * MiB, 1, 0, RUMPBLK_SIZENOTSET),
	    RUMPBLK_BACKEND_MMAP);
	/* 16 MiB at an unaligned offset spans 17 windows of 1 MiB. */
	tl_eq(auto_pick(img, 1 * MiB, 16, 512, 16 * MiB),
	    RUMPBLK_BACKEND_PIO);
	tl_eq(auto_pick(img, 1 * MiB, 17, 512, 16 * MiB),
	    RUMPBLK_BACKEND_MMAP);
	free(img);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(small_windows),
		cmocka_unit_test(small_windows_write),
		cmocka_unit_test(big_windows_odd_size),
		cmocka_unit_test(small_windows_odd_size),
		cmocka_unit_test(unaligned_hostoffset),
		cmocka_unit_test(sync_write_durable),
		cmocka_unit_test(zero_trim_coherent),
		cmocka_unit_test(fallback_to_pio),
		cmocka_unit_test(map_failure_later),
		cmocka_unit_test_teardown(readonly_file, restore_dac_override),
		cmocka_unit_test(auto_by_windows),
	};

	return tl_main(tests, NULL, NULL);
}
