/*
 * test-mmap-sigbus: the opt-in SIGBUS handler (config sigbus_eio).
 *
 * truncated_read_eio: the host file is truncated under a registered unit
 * whose windows are mapped; a read and a write of the vanished part give
 * EIO, the process survives, and what is still there reads fine.
 * not_ours_chained: a SIGBUS outside a window copy reaches the handler
 * that was installed before the library's.
 * off_by_default: without sigbus_eio the library installs nothing.
 */
#include <setjmp.h>
#include <signal.h>
#include <sys/mman.h>

#include "testlib.h"

#define KiB	1024u

static struct rumpblk *
mk(bool sigbus)
{
	struct rumpblk_config cfg;
	struct rumpblk *rb;

	tl_config(&cfg);
	cfg.backend = RUMPBLK_BACKEND_MMAP;
	cfg.winsize = 64 * KiB;
	cfg.wincount = 16;
	cfg.sigbus_eio = sigbus;
	tl_eq(rumpblk_create(&cfg, &rb), 0);
	return rb;
}

static void
off_by_default(void **state)
{
	struct rumpblk *rb = mk(false);
	char *img = tl_image("off.img", 256 * KiB, 3);
	struct sigaction before, after;
	int unit;

	(void)state;
	tl_eq(sigaction(SIGBUS, NULL, &before), 0);
	tl_eq(rumpblk_register(rb, img, 0, RUMPBLK_SIZENOTSET, &unit), 0);
	tl_eq(sigaction(SIGBUS, NULL, &after), 0);
	if (before.sa_sigaction != after.sa_sigaction ||
	    before.sa_flags != after.sa_flags)
		tl_fail("the library took SIGBUS without sigbus_eio\n");
	tl_eq(rumpblk_destroy(rb), 0);
	free(img);
}

static void
truncated_read_eio(void **state)
{
	struct rumpblk *rb = mk(true);
	char *img = tl_image("trunc.img", 1024 * KiB, 5);
	struct rumpblk_unitinfo ui;
	char buf[8192];
	size_t resid;
	int unit, e, i;

	(void)state;
	tl_eq(rumpblk_register(rb, img, 0, RUMPBLK_SIZENOTSET, &unit), 0);
	tl_eq(rumpblk_unitinfo(rb, unit, &ui), 0);
	/* Touch the tail so that its window is mapped. */
	tl_eq(tl_io(rb, unit, RUMPBLK_B_READ, 2000, buf, 4096, &resid), 0);
	tl_eq(truncate(img, 128 * KiB), 0);

	e = tl_io(rb, unit, RUMPBLK_B_READ, 2000, buf, 4096, &resid);
	tl_eq(e, EIO);
	tl_eq(resid, 4096);
	e = tl_io(rb, unit, RUMPBLK_B_WRITE, 1024, buf, 4096, &resid);
	tl_eq(e, EIO);
	/* A request that starts in the file and runs off its new end. */
	e = tl_io(rb, unit, RUMPBLK_B_READ, 128 * KiB / 512 - 8, buf,
	    sizeof(buf), &resid);
	tl_eq(e, EIO);
	if (ui.ui_backend == RUMPBLK_BACKEND_MMAP && resid != 4096)
		tl_fail("resid %zu after a fault half way, expected 4096\n",
		    resid);
	/* The part that is still there is fine, again and again. */
	for (i = 0; i < 3; i++) {
		tl_eq(tl_io(rb, unit, RUMPBLK_B_READ, 0, buf, 4096, &resid),
		    0);
		tl_eq((uint8_t)buf[100], tl_pattern(100, 5));
		tl_eq(tl_io(rb, unit, RUMPBLK_B_READ, 2000, buf, 4096,
		    &resid), EIO);
	}
	tl_eq(rumpblk_deregister(rb, img), 0);
	tl_eq(rumpblk_destroy(rb), 0);
	free(img);
}

static sigjmp_buf g_jb;
static volatile sig_atomic_t g_ours;

static void
prev_handler(int sig, siginfo_t *si, void *ctx)
{
	(void)sig;
	(void)si;
	(void)ctx;
	g_ours = 1;
	siglongjmp(g_jb, 1);
}

static void
not_ours_chained(void **state)
{
	struct sigaction sa, old;
	struct rumpblk *rb;
	char *img = tl_image("chain.img", 256 * KiB, 7);
	char *other = tl_image("other.img", 64 * KiB, 9);
	volatile char *p;
	int unit, fd;

	(void)state;
	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = prev_handler;
	sa.sa_flags = SA_SIGINFO | SA_NODEFER;
	sigemptyset(&sa.sa_mask);
	/* Installed before the unit: the library's handler finds it as
	 * the previous one and must pass it every fault that is not in a
	 * window copy. */
	tl_eq(sigaction(SIGBUS, &sa, &old), 0);
	rb = mk(true);
	tl_eq(rumpblk_register(rb, img, 0, RUMPBLK_SIZENOTSET, &unit), 0);

	/* A fault of our own, outside any window copy. */
	fd = open(other, O_RDWR);
	assert(fd != -1);
	p = mmap(NULL, 64 * KiB, PROT_READ, MAP_SHARED, fd, 0);
	assert(p != MAP_FAILED);
	tl_eq(ftruncate(fd, 0), 0);
	g_ours = 0;
	if (sigsetjmp(g_jb, 1) == 0)
		(void)p[8192];
	tl_eq(g_ours, 1);
	munmap((void *)p, 64 * KiB);
	close(fd);
	tl_eq(rumpblk_destroy(rb), 0);
	free(img);
	free(other);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(off_by_default),
		cmocka_unit_test(not_ours_chained),
		cmocka_unit_test(truncated_read_eio),
	};

	return tl_main(tests, NULL, NULL);
}
