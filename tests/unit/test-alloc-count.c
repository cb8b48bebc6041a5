/*
 * test-alloc-count: the read/write path allocates nothing per request,
 * with no rule armed, with a rule that never fires, and with rules that
 * fire on every request (error, delay, lost, torn, misdirect, corrupt
 * on reads).  The program interposes malloc and its friends (they
 * forward to glibc's __libc_ functions) and counts every call, on every
 * thread (workers, the reaper, the timer), while 100 000 requests run
 * after a warm-up.  The warm-up lets pools, rings, generation maps and
 * frame pools reach their size: requests cycle over 256 blocks, so a
 * map that grew per request would still show.
 *
 * Not under the sanitizers or valgrind (they bring their own malloc):
 * the suite is 'unit' alone.  The one documented exception, a corrupt
 * write's private copy of the data, is not measured here.
 */
#include <pthread.h>
#include <stdatomic.h>

#include "testlib.h"

extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void *__libc_memalign(size_t, size_t);
extern void __libc_free(void *);

static _Atomic bool counting;
static _Atomic uint64_t nallocs;

static inline void
note(void)
{
	if (atomic_load_explicit(&counting, memory_order_relaxed))
		atomic_fetch_add_explicit(&nallocs, 1, memory_order_relaxed);
}

void *
malloc(size_t n)
{
	note();
	return __libc_malloc(n);
}

void *
calloc(size_t a, size_t b)
{
	note();
	return __libc_calloc(a, b);
}

void *
realloc(void *p, size_t n)
{
	note();
	return __libc_realloc(p, n);
}

void *
aligned_alloc(size_t a, size_t n)
{
	note();
	return __libc_memalign(a, n);
}

int
posix_memalign(void **pp, size_t a, size_t n)
{
	note();
	return (*pp = __libc_memalign(a, n)) != NULL ? 0 : ENOMEM;
}

void
free(void *p)
{
	__libc_free(p);
}

#define NREQ		100000
#define NBLOCKS		256
#define BS		4096
#define QD		8

static char *image;
TL_IMAGE_FIXTURE(image, "alloc.img", NBLOCKS * BS, 5)

struct abuf {
	struct rumpblk_buf ab_b;
	char		ab_data[BS] __attribute__((aligned(4096)));
};

static struct abuf bufs[QD];

/*
 * n requests, QD at a time, reads and writes alternating over the
 * blocks.  Reads are synchronous or asynchronous buffers by the flag;
 * writes are always asynchronous (not each made durable: 50 000 data
 * syncs would measure the disk, not us).
 */
static void
run(struct rumpblk *rb, int unit, unsigned n, int async)
{
	unsigned i, k;

	for (i = 0; i < n; i += QD) {
		for (k = 0; k < QD; k++) {
			tl_buf(&bufs[k].ab_b, unit, (i / QD + k) % 2 ?
			    RUMPBLK_B_WRITE | RUMPBLK_B_ASYNC :
			    RUMPBLK_B_READ | async,
			    (int64_t)((i + k * 37) % NBLOCKS) * (BS / 512),
			    bufs[k].ab_data, BS);
			rumpblk_strategy(rb, &bufs[k].ab_b);
		}
		for (k = 0; k < QD; k++)
			(void)rumpblk_biowait(&bufs[k].ab_b);
	}
}

static void
measure(const char *rule)
{
	struct rumpblk_config cfg;
	struct rumpblk *rb;
	char id[32], err[200];
	uint64_t got;
	int unit;

	/*
	 * Two workers, so that the pool (which starts threads on demand,
	 * and a thread's start allocates its TLS) is at its size after the
	 * warm-up whatever the timing.
	 */
	tl_config(&cfg);
	cfg.workers = 2;
	rb = tl_create(&cfg);
	unit = tl_register(rb, image, 0, RUMPBLK_SIZENOTSET);

	if (rule != NULL && rumpblk_fault_add(rb, rule, id, sizeof(id), err,
	    sizeof(err)) != 0)
		tl_fail("%s: %s\n", rule, err);
	for (int async = 0; async <= RUMPBLK_B_ASYNC; async += RUMPBLK_B_ASYNC) {
		run(rb, unit, 4 * NBLOCKS * QD, async);		/* warm-up */
		atomic_store(&nallocs, 0);
		atomic_store(&counting, true);
		run(rb, unit, NREQ, async);
		atomic_store(&counting, false);
		got = atomic_load(&nallocs);
		if (got != 0)
			tl_fail("rule %s, %s buffers: %" PRIu64 " allocations "
			    "in %d requests\n", rule != NULL ? rule : "none",
			    async ? "async" : "sync", got, NREQ);
	}
	tl_eq(rumpblk_destroy(rb), 0);
}

static void
no_rule(void **state)
{
	(void)state;
	measure(NULL);
}

static void
never_fires(void **state)
{
	(void)state;
	measure("error,op=read,nth=2000000000");
}

static void
error_every_write(void **state)
{
	(void)state;
	measure("error,op=write");
}

static void
delay_every_read(void **state)
{
	(void)state;
	measure("delay,op=read,ms=0.001");
}

static void
lost_every_write(void **state)
{
	(void)state;
	measure("lost,op=write");
}

static void
torn_every_write(void **state)
{
	(void)state;
	measure("torn,op=write");
}

static void
misdirect_every_write(void **state)
{
	(void)state;
	measure("misdirect,op=write,shift=8,range=0-512K");
}

static void
corrupt_every_read(void **state)
{
	(void)state;
	measure("corrupt,op=read,bits=3");
}

static void
probabilistic(void **state)
{
	(void)state;
	measure("error,op=any,p=0.3,errno=EIO/ENOSPC");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(no_rule),
		cmocka_unit_test(never_fires),
		cmocka_unit_test(error_every_write),
		cmocka_unit_test(delay_every_read),
		cmocka_unit_test(lost_every_write),
		cmocka_unit_test(torn_every_write),
		cmocka_unit_test(misdirect_every_write),
		cmocka_unit_test(corrupt_every_read),
		cmocka_unit_test(probabilistic),
	};

	return tl_main(tests, setup, teardown);
}
