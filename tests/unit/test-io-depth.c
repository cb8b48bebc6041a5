/*
 * test-io-depth: several threads keep 32 asynchronous buffers each in
 * flight (RUMPBLK_B_ASYNC with b_iodone), and every completion submits
 * the next request from inside b_iodone, as a caller at queue depth
 * does.  Reads check their data against a model, writes stamp blocks,
 * some requests are flushes; at the end every block is read back.  Run
 * over every backend of the matrix; for uring and direct it exercises
 * the ring at depth (the reaper's deferred submission, the backlog) and
 * is in the concurrency suite for ThreadSanitizer.  A second run leaves
 * uring one private ring for synchronous buffers, so that the others
 * take the shared ring.
 */
#include <pthread.h>

/* ThreadSanitizer: gcc says so with __SANITIZE_THREAD__, clang with
 * __has_feature. */
#if defined(__SANITIZE_THREAD__)
#define UNDER_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define UNDER_TSAN 1
#endif
#endif

#include "testlib.h"
#include "internal.h"
#include "host/host.h"
#include "testseam.h"

#define NTHREADS	4
#define QD		32
#define BS		4096
#define REGION		(2u << 20)		/* bytes per thread */
#define NBLK		(REGION / BS)
#define OPS		1500			/* requests per thread */

struct thr;
struct slot {
	struct rumpblk_buf sl_buf;
	struct thr	*sl_thr;
	unsigned	sl_index;
	uint8_t		*sl_data;	/* BS bytes, page aligned */
	unsigned	sl_blk;		/* block of the request in flight */
};

struct thr {
	struct rumpblk	*t_rb;
	int		t_unit;
	unsigned	t_index;
	uint64_t	t_rng;
	pthread_mutex_t	t_lock;
	pthread_cond_t	t_cv;
	unsigned	t_active;	/* slots still running */
	unsigned	t_left;		/* requests still to start */
	unsigned	t_errors;
	uint32_t	t_stamp[NBLK];	/* 0: original pattern */
	uint32_t	t_seq;
	struct slot	t_slot[QD];
};

static char *img;

static uint8_t
expect(struct thr *t, unsigned blk, unsigned i)
{
	uint64_t off = (uint64_t)t->t_index * REGION + (uint64_t)blk * BS + i;
	uint32_t s = t->t_stamp[blk];

	return s == 0 ? tl_pattern(off, 11) : (uint8_t)(s * 31 + i * 7);
}

static void start(struct slot *);

static void
done(struct rumpblk_buf *bp)
{
	struct slot *sl = bp->b_private;
	struct thr *t = sl->sl_thr;
	int op = bp->b_flags & RUMPBLK_B_OPMASK;

	/* Only this slot touches its blocks, so the model needs no lock. */
	if (bp->b_error != 0 || bp->b_resid != 0) {
		print_error("[backend %s] thread %u slot %u: op %d error %d "
		    "resid %zu\n", tl_backend_name(), t->t_index, sl->sl_index,
		    op, bp->b_error, bp->b_resid);
		t->t_errors++;
	} else if (op == RUMPBLK_B_READ) {
		for (unsigned i = 0; i < BS; i++)
			if (sl->sl_data[i] != expect(t, sl->sl_blk, i)) {
				print_error("[backend %s] thread %u block %u "
				    "byte %u differs\n", tl_backend_name(),
				    t->t_index, sl->sl_blk, i);
				t->t_errors++;
				break;
			}
	}
	start(sl);
}

/* Start the slot's next request, or retire it. */
static void
start(struct slot *sl)
{
	struct thr *t = sl->sl_thr;
	struct rumpblk_buf *bp = &sl->sl_buf;
	unsigned r, blk;
	uint32_t stamp;

	pthread_mutex_lock(&t->t_lock);
	if (t->t_left == 0) {
		if (--t->t_active == 0)
			pthread_cond_signal(&t->t_cv);
		pthread_mutex_unlock(&t->t_lock);
		return;
	}
	t->t_left--;
	r = (unsigned)tl_rand(&t->t_rng);
	stamp = ++t->t_seq;
	pthread_mutex_unlock(&t->t_lock);

	/* Slot s owns the blocks b with b % QD == s. */
	blk = (r >> 8) % (NBLK / QD) * QD + sl->sl_index;
	memset(bp, 0, sizeof(*bp));
	bp->b_unit = t->t_unit;
	bp->b_blkno = ((int64_t)t->t_index * REGION + (int64_t)blk * BS) /
	    512;
	bp->b_bcount = BS;
	bp->b_data = sl->sl_data;
	bp->b_iodone = done;
	bp->b_private = sl;
	sl->sl_blk = blk;
	switch (r % 16) {
	case 0:
		bp->b_flags = RUMPBLK_B_FLUSH | RUMPBLK_B_ASYNC;
		bp->b_bcount = 0;
		break;
	case 1: case 2: case 3: case 4: case 5:
		t->t_stamp[blk] = stamp;
		for (unsigned i = 0; i < BS; i++)
			sl->sl_data[i] = expect(t, blk, i);
		bp->b_flags = RUMPBLK_B_WRITE | RUMPBLK_B_ASYNC;
		if (r % 16 == 5)
			bp->b_flags &= ~RUMPBLK_B_ASYNC;  /* sync write */
		break;
	default:
		bp->b_flags = RUMPBLK_B_READ | RUMPBLK_B_ASYNC;
		break;
	}
	rumpblk_strategy(t->t_rb, bp);
}

static void *
run(void *arg)
{
	struct thr *t = arg;

	pthread_mutex_lock(&t->t_lock);
	t->t_active = QD;
	pthread_mutex_unlock(&t->t_lock);
	for (unsigned s = 0; s < QD; s++)
		start(&t->t_slot[s]);
	pthread_mutex_lock(&t->t_lock);
	while (t->t_active > 0)
		pthread_cond_wait(&t->t_cv, &t->t_lock);
	pthread_mutex_unlock(&t->t_lock);
	return NULL;
}

static void
depth(void **state)
{
	static struct thr thr[NTHREADS];
	struct rumpblk_config cfg;
	struct rumpblk *rb;
	pthread_t tid[NTHREADS];
	uint8_t *buf;
	size_t resid;
	int unit;

	(void)state;
	img = tl_image("depth.img", NTHREADS * REGION, 11);
	tl_config(&cfg);
	tl_eq(rumpblk_create(&cfg, &rb), 0);
	tl_eq(rumpblk_register(rb, img, 0, RUMPBLK_SIZENOTSET, &unit), 0);
	for (unsigned i = 0; i < NTHREADS; i++) {
		struct thr *t = &thr[i];

		memset(t, 0, sizeof(*t));
		t->t_rb = rb;
		t->t_unit = unit;
		t->t_index = i;
		t->t_rng = 0x9e3779b97f4a7c15ull * (i + 1);
		t->t_left = OPS;
		pthread_mutex_init(&t->t_lock, NULL);
		pthread_cond_init(&t->t_cv, NULL);
		for (unsigned s = 0; s < QD; s++) {
			t->t_slot[s].sl_thr = t;
			t->t_slot[s].sl_index = s;
			assert(posix_memalign((void **)&t->t_slot[s].sl_data,
			    4096, BS) == 0);
		}
	}
	for (unsigned i = 0; i < NTHREADS; i++)
		assert(pthread_create(&tid[i], NULL, run, &thr[i]) == 0);
	for (unsigned i = 0; i < NTHREADS; i++)
		pthread_join(tid[i], NULL);

	/* Every block of every region reads back as the model says. */
	assert(posix_memalign((void **)&buf, 4096, REGION) == 0);
	for (unsigned i = 0; i < NTHREADS; i++) {
		struct thr *t = &thr[i];

		tl_eq(t->t_errors, 0);
		tl_eq(tl_io(rb, unit, RUMPBLK_B_READ,
		    (int64_t)i * REGION / 512, buf, REGION, &resid), 0);
		for (unsigned b = 0; b < NBLK; b++)
			for (unsigned j = 0; j < BS; j += 511)
				if (buf[b * BS + j] != expect(t, b, j))
					tl_fail("thread %u block %u byte %u "
					    "differs at the end\n", i, b, j);
		for (unsigned s = 0; s < QD; s++)
			free(t->t_slot[s].sl_data);
		pthread_mutex_destroy(&t->t_lock);
		pthread_cond_destroy(&t->t_cv);
	}
	free(buf);
	tl_eq(rumpblk_destroy(rb), 0);
	free(img);
}

/*
 * The same with one private ring for synchronous buffers (uring): the
 * others go through the shared ring and biowait, or, submitted from a
 * callback on the reaper, are done in place.
 */
static void
depth_one_sync_ring(void **state)
{
	static struct rb_host_seam seam = { .hs_uring_nsync = 1 };

	rb_host_seam = &seam;
	depth(state);
	rb_host_seam = NULL;
}

/* A file that shrinks under a unit: a read past its new end is EIO,
 * not zeroes, on every backend (the ring's end-of-file path; mmap's
 * SIGBUS, turned into EIO by sigbus_eio). */
static void
shrunk(void **state)
{
	struct rumpblk_config cfg;
	struct rumpblk *rb;
	char *small = tl_image("shrink.img", 1 << 20, 4);
	uint8_t *buf;
	size_t resid;
	int unit;

	(void)state;
#ifdef UNDER_TSAN
	/*
	 * sigbus_eio recovers from the SIGBUS by jumping out of its signal
	 * handler; TSan's runtime, which intercepts signals, does not let
	 * it, and the process dies of the SIGBUS (tried: exit 135).
	 * test-mmap-sigbus stays out of the TSan suite as well.
	 */
	if (tl_backend() == RUMPBLK_BACKEND_MMAP) {
		free(small);
		tl_skip("ThreadSanitizer's runtime cannot take mmap's SIGBUS "
		    "recovery (sigbus_eio)");
	}
#endif
	assert(posix_memalign((void **)&buf, 4096, 65536) == 0);
	tl_config(&cfg);
	cfg.sigbus_eio = true;		/* only mmap looks at it */
	tl_eq(rumpblk_create(&cfg, &rb), 0);
	tl_eq(rumpblk_register(rb, small, 0, RUMPBLK_SIZENOTSET, &unit), 0);
	assert(truncate(small, 512 * 1024 + 8192) == 0);
	tl_eq(tl_io(rb, unit, RUMPBLK_B_READ | RUMPBLK_B_ASYNC,
	    512 * 1024 / 512, buf, 65536, &resid), EIO);
	if (resid < 65536 - 8192)
		tl_fail("resid %zu after a read past the end\n", resid);
	tl_eq(tl_io(rb, unit, RUMPBLK_B_READ, 0, buf, 65536, &resid), 0);
	tl_eq(buf[100], tl_pattern(100, 4));
	tl_eq(rumpblk_destroy(rb), 0);
	free(buf);
	free(small);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(depth, tl_teardown_seam),
		cmocka_unit_test_teardown(depth_one_sync_ring, tl_teardown_seam),
		cmocka_unit_test_teardown(shrunk, tl_teardown_seam),
	};
	int rc;

	rc = tl_main(tests, NULL, NULL);
	return rc;
}
