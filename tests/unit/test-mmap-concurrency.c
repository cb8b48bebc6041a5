/*
 * test-mmap-concurrency: more concurrent requests than windows.
 *
 * busy_wait_counted makes the "all windows busy" wait happen for certain,
 * with no timing assumption: thread A reads into a buffer that is
 * PROT_NONE, so its copy faults while it holds the only window; the
 * SIGSEGV handler parks A until the main thread has seen thread B, which
 * wants another window, counted in win_busy; then A's buffer is made
 * writable and both complete.  stress runs many threads over few small
 * windows, reading a known pattern and writing private stripes, and
 * checks every byte.  Both run under TSan (suite concurrency) and ASan.
 */
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/mman.h>
#include <time.h>

#include "testlib.h"

#define KiB	1024u

static struct rumpblk *g_rb;
static int g_unit;
static char *g_trap;
static size_t g_pagesz;
static atomic_int g_parked, g_release;
static int g_err_a = -1, g_err_b = -1;	/* checked after the joins */

static void
nap(void)
{
	struct timespec ts = { 0, 1000000 };	/* 1 ms */

	nanosleep(&ts, NULL);
}

static void
segv_handler(int sig, siginfo_t *si, void *ctx)
{
	char *a = si->si_addr;
	int i;

	(void)sig;
	(void)ctx;
	if (a < g_trap || a >= g_trap + g_pagesz)
		abort();
	atomic_store(&g_parked, 1);
	/* Bounded: 30 s, then let the copy go on (the test then fails). */
	for (i = 0; i < 30000 && !atomic_load(&g_release); i++)
		nap();
	mprotect(g_trap, g_pagesz, PROT_READ | PROT_WRITE);
}

static void *
reader_a(void *arg)
{
	size_t resid;

	(void)arg;
	g_err_a = tl_io(g_rb, g_unit, RUMPBLK_B_READ, 0, g_trap, 4096, &resid);
	return NULL;
}

static void *
reader_b(void *arg)
{
	size_t resid;

	g_err_b = tl_io(g_rb, g_unit, RUMPBLK_B_READ, 8, arg, 4096, &resid);
	return NULL;
}

static void
busy_wait_counted(void **state)
{
	struct rumpblk_config cfg;
	struct rumpblk_stats st;
	struct sigaction sa, old;
	char *img = tl_image("busy.img", 64 * KiB, 31), bbuf[4096];
	pthread_t a, b;
	int i;

	(void)state;
	g_pagesz = (size_t)sysconf(_SC_PAGESIZE);
	g_trap = mmap(NULL, g_pagesz, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS,
	    -1, 0);
	assert(g_trap != MAP_FAILED);
	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = segv_handler;
	sa.sa_flags = SA_SIGINFO;
	sigemptyset(&sa.sa_mask);
	tl_eq(sigaction(SIGSEGV, &sa, &old), 0);

	tl_config(&cfg);
	cfg.backend = RUMPBLK_BACKEND_MMAP;
	cfg.winsize = 4 * KiB;
	cfg.wincount = 1;
	tl_eq(rumpblk_create(&cfg, &g_rb), 0);
	tl_eq(rumpblk_register(g_rb, img, 0, RUMPBLK_SIZENOTSET, &g_unit), 0);

	tl_eq(pthread_create(&a, NULL, reader_a, NULL), 0);
	for (i = 0; i < 30000 && !atomic_load(&g_parked); i++)
		nap();
	if (!atomic_load(&g_parked))
		tl_fail("reader A never reached its copy\n");
	tl_eq(pthread_create(&b, NULL, reader_b, bbuf), 0);
	for (i = 0; i < 30000; i++) {
		rumpblk_stats(g_rb, g_unit, &st);
		if (st.win_busy >= 1)
			break;
		nap();
	}
	atomic_store(&g_release, 1);
	tl_eq(pthread_join(a, NULL), 0);
	tl_eq(pthread_join(b, NULL), 0);
	tl_eq(g_err_a, 0);
	tl_eq(g_err_b, 0);
	if (st.win_busy < 1)
		tl_fail("reader B never counted a busy wait\n");
	for (i = 0; i < 4096; i++) {
		tl_eq((uint8_t)g_trap[i], tl_pattern((uint64_t)i, 31));
		tl_eq((uint8_t)bbuf[i], tl_pattern(4096u + (uint64_t)i, 31));
	}
	tl_eq(sigaction(SIGSEGV, &old, NULL), 0);
	tl_eq(rumpblk_destroy(g_rb), 0);
	munmap(g_trap, g_pagesz);
	free(img);
}

#define NTHREADS	8
#define NREQ		150
#define IMGSIZE		(1024 * KiB)
#define STRIPE		(IMGSIZE / 2 / NTHREADS)

struct worker {
	pthread_t	w_thread;
	int		w_id;
	unsigned	w_rand;
	int		w_errors;
};

static unsigned
rnd(unsigned *s)
{
	*s = *s * 1103515245u + 12345u;
	return *s >> 8;
}

/*
 * Even threads read 64 KiB at random places of the first half (the
 * pattern, never written); odd threads write 16 KiB pieces of their own
 * stripe of the second half, each a value that names the thread and the
 * piece, then read them back.
 */
static void *
worker(void *arg)
{
	struct worker *w = arg;
	char *buf = malloc(64 * KiB);
	uint64_t off;
	size_t resid, j, len;
	int i, flags;

	assert(buf != NULL);
	for (i = 0; i < NREQ; i++) {
		if (w->w_id % 2 == 0) {
			len = 64 * KiB;
			off = (uint64_t)(rnd(&w->w_rand) %
			    ((IMGSIZE / 2 - len) / 512 + 1)) * 512;
			if (tl_io(g_rb, g_unit, RUMPBLK_B_READ,
			    (int64_t)(off / 512), buf, len, &resid) != 0 ||
			    resid != 0) {
				w->w_errors++;
				continue;
			}
			for (j = 0; j < len; j++)
				if ((uint8_t)buf[j] !=
				    tl_pattern(off + j, 37)) {
					w->w_errors++;
					break;
				}
		} else {
			len = 16 * KiB;
			off = IMGSIZE / 2 + (uint64_t)w->w_id * STRIPE +
			    (rnd(&w->w_rand) % (STRIPE / len)) * len;
			memset(buf, (w->w_id << 4) | (int)(off / len % 16),
			    len);
			flags = RUMPBLK_B_WRITE | (i % 2 ? RUMPBLK_B_ASYNC : 0);
			if (tl_io(g_rb, g_unit, flags, (int64_t)(off / 512),
			    buf, len, &resid) != 0) {
				w->w_errors++;
				continue;
			}
			memset(buf, 0, len);
			if (tl_io(g_rb, g_unit, RUMPBLK_B_READ,
			    (int64_t)(off / 512), buf, len, &resid) != 0)
				w->w_errors++;
			for (j = 0; j < len; j++)
				if ((uint8_t)buf[j] != (uint8_t)((w->w_id <<
				    4) | (int)(off / len % 16))) {
					w->w_errors++;
					break;
				}
		}
	}
	free(buf);
	return NULL;
}

static void
stress_few_windows(uint64_t winsize, unsigned wincount)
{
	struct rumpblk_config cfg;
	struct rumpblk_stats st;
	struct worker w[NTHREADS];
	char *img = tl_image("stress.img", IMGSIZE, 37);
	int i, errors = 0;

	tl_config(&cfg);
	cfg.backend = RUMPBLK_BACKEND_MMAP;
	cfg.winsize = winsize;
	cfg.wincount = wincount;
	tl_eq(rumpblk_create(&cfg, &g_rb), 0);
	tl_eq(rumpblk_register(g_rb, img, 0, RUMPBLK_SIZENOTSET, &g_unit), 0);
	for (i = 0; i < NTHREADS; i++) {
		w[i].w_id = i;
		w[i].w_rand = (unsigned)i * 7919u + 1;
		w[i].w_errors = 0;
		tl_eq(pthread_create(&w[i].w_thread, NULL, worker, &w[i]), 0);
	}
	for (i = 0; i < NTHREADS; i++) {
		tl_eq(pthread_join(w[i].w_thread, NULL), 0);
		errors += w[i].w_errors;
	}
	tl_eq(errors, 0);
	rumpblk_stats(g_rb, g_unit, &st);
	/* Informational: waits are likely here, certain in the test above. */
	printf("# winsize %" PRIu64 " x %u: hits %" PRIu64 " misses %" PRIu64
	    " busy %" PRIu64 "\n", winsize, wincount, st.win_hits,
	    st.win_misses, st.win_busy);
	if (st.win_misses == 0)
		tl_fail("no window was ever mapped on demand\n");
	tl_eq(rumpblk_destroy(g_rb), 0);
	free(img);
}

static void
stress_4k_windows(void **state)
{
	(void)state;
	stress_few_windows(4 * KiB, 3);
}

static void
stress_64k_windows(void **state)
{
	(void)state;
	stress_few_windows(64 * KiB, 2);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(busy_wait_counted),
		cmocka_unit_test(stress_4k_windows),
		cmocka_unit_test(stress_64k_windows),
	};

	return tl_main(tests, NULL, NULL);
}
