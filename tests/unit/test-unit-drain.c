/*
 * test-unit-drain: deregistration while other threads submit I/O.
 *
 * Requests in flight are counted per thread (lib/internal.h, u_refs);
 * deregister must wait for every request that got in, and every request
 * that did not must fail with ENXIO, never touch a torn-down unit.  Four
 * threads read and write (sync and async) while the main thread
 * deregisters and registers the image again, several times; each pass
 * ends with a deregister that returns, and I/O on the old unit number
 * then fails with ENXIO.  Each thread has blocks of its own (two threads
 * writing the same bytes of an mmap window would be their data race).
 * Run under TSan (concurrency) and ASan.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <time.h>

#include "testlib.h"

#define NTHREADS	4
#define NPASSES		6

static struct rumpblk *g_rb;
static atomic_int g_unit;
static atomic_bool g_stop;

struct result {
	int	id;
	long	ok;
	long	enxio;
	long	other;
};

static void *
worker(void *arg)
{
	struct result *r = arg;
	char buf[4096];
	size_t resid;
	unsigned x = (unsigned)(uintptr_t)arg;
	int e, flags;

	memset(buf, 0x42, sizeof(buf));
	while (!atomic_load(&g_stop)) {
		x = x * 1103515245u + 12345u;
		flags = (x >> 8) % 2 ? RUMPBLK_B_READ : RUMPBLK_B_WRITE;
		if ((x >> 12) % 3 == 0)
			flags |= RUMPBLK_B_ASYNC;
		e = tl_io(g_rb, atomic_load(&g_unit), flags,
		    (int64_t)(r->id * 64 + (x >> 4) % 64) * 8, buf, sizeof(buf),
		    &resid);
		if (e == 0)
			r->ok++;
		else if (e == ENXIO)
			r->enxio++;
		else
			r->other++;
	}
	return NULL;
}

static void
nap(long us)
{
	struct timespec ts = { 0, us * 1000 };

	nanosleep(&ts, NULL);
}

static void
deregister_under_load(void **state)
{
	struct rumpblk_config cfg;
	struct result res[NTHREADS];
	char *img = tl_image("drain.img", 1 << 20, 3), buf[512];
	pthread_t t[NTHREADS];
	long ok = 0, other = 0;
	size_t resid;
	int i, p, unit;

	(void)state;
	tl_config(&cfg);
	tl_eq(rumpblk_create(&cfg, &g_rb), 0);
	tl_eq(rumpblk_register(g_rb, img, 0, RUMPBLK_SIZENOTSET, &unit), 0);
	atomic_store(&g_unit, unit);
	memset(res, 0, sizeof(res));
	for (i = 0; i < NTHREADS; i++)
		res[i].id = i;
	for (i = 0; i < NTHREADS; i++)
		tl_eq(pthread_create(&t[i], NULL, worker, &res[i]), 0);
	for (p = 0; p < NPASSES; p++) {
		nap(20000);
		tl_eq(rumpblk_deregister(g_rb, img), 0);
		tl_eq(tl_io(g_rb, unit, RUMPBLK_B_READ, 0, buf, sizeof(buf),
		    &resid), ENXIO);
		nap(5000);
		tl_eq(rumpblk_register(g_rb, img, 0, RUMPBLK_SIZENOTSET,
		    &unit), 0);
		atomic_store(&g_unit, unit);
	}
	atomic_store(&g_stop, true);
	for (i = 0; i < NTHREADS; i++) {
		tl_eq(pthread_join(t[i], NULL), 0);
		ok += res[i].ok;
		other += res[i].other;
	}
	tl_eq(other, 0);
	if (ok == 0)
		tl_fail("no request ever completed\n");
	/* The slot's counts balanced: a last deregister does not hang. */
	tl_eq(rumpblk_deregister(g_rb, img), 0);
	tl_eq(rumpblk_destroy(g_rb), 0);
	free(img);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(deregister_under_load),
	};

	return tl_main(tests, NULL, NULL);
}
