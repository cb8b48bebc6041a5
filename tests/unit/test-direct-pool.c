/*
 * test-direct-pool: the direct backend's bounce pool stays bounded and
 * does not deadlock when more requests need a bounce buffer at once
 * than it has, and read-modify-write loses no update when many threads
 * write different sectors of the same host block at once (the seam makes
 * the host's alignment 4096 under 512-byte sectors).  Every thread owns
 * one sector of each 4 KiB block and writes it over and over, with
 * unaligned buffers, synchronously and asynchronously; at the end each
 * sector holds its owner's last write.
 */
#include <pthread.h>

#include "testlib.h"
#include "internal.h"
#include "host/host.h"
#include "testseam.h"

#define NTHREADS	24	/* more than the pool's 16 buffers */
#define NBLOCKS		64	/* 4 KiB blocks: 256 KiB */
#define ROUNDS		20

static struct rumpblk *rb;
static int unit;

struct arg {
	unsigned	a_index;
	unsigned	a_errors;
	pthread_mutex_t	a_lock;
	pthread_cond_t	a_cv;
	int		a_busy;
};

static void
async_done(struct rumpblk_buf *bp)
{
	struct arg *a = bp->b_private;

	pthread_mutex_lock(&a->a_lock);
	if (bp->b_error != 0)
		a->a_errors++;
	a->a_busy = 0;
	pthread_cond_signal(&a->a_cv);
	pthread_mutex_unlock(&a->a_lock);
}

static void *
writer(void *p)
{
	struct arg *a = p;
	struct rumpblk_buf b;
	unsigned sect = a->a_index % 8, t = a->a_index;
	uint8_t *mem = malloc(512 + 1), *buf = mem + 1;
	size_t resid;

	assert(mem != NULL);
	for (unsigned r = 1; r <= ROUNDS; r++) {
		for (unsigned blk = t / 8; blk < NBLOCKS; blk += NTHREADS / 8) {
			memset(buf, (int)(t * 16 + r % 16), 512);
			buf[0] = (uint8_t)r;
			if (r % 2) {
				if (tl_io(rb, unit, RUMPBLK_B_WRITE,
				    blk * 8 + sect, buf, 512, &resid) != 0)
					a->a_errors++;
				continue;
			}
			memset(&b, 0, sizeof(b));
			b.b_unit = unit;
			b.b_flags = RUMPBLK_B_WRITE | RUMPBLK_B_ASYNC;
			b.b_blkno = blk * 8 + sect;
			b.b_bcount = 512;
			b.b_data = buf;
			b.b_iodone = async_done;
			b.b_private = a;
			a->a_busy = 1;
			rumpblk_strategy(rb, &b);
			pthread_mutex_lock(&a->a_lock);
			while (a->a_busy)
				pthread_cond_wait(&a->a_cv, &a->a_lock);
			pthread_mutex_unlock(&a->a_lock);
		}
	}
	free(mem);
	return NULL;
}

/* Unaligned reads take no lock: many bounce buffers at once. */
static void *
reader(void *p)
{
	struct arg *a = p;
	uint8_t *mem = malloc(200 * 1024 + 3), *buf = mem + 3;
	uint64_t off;
	size_t resid;

	assert(mem != NULL);
	for (unsigned r = 0; r < 30; r++) {
		off = (uint64_t)((a->a_index * 7 + r * 13) % 12) * 16384 + 512;
		if (tl_io(rb, unit, RUMPBLK_B_READ, (int64_t)(off / 512), buf,
		    200 * 1024, &resid) != 0 || resid != 0)
			a->a_errors++;
		for (size_t i = 0; i < 200 * 1024; i += 997)
			if (buf[i] != tl_pattern(off + i, 2))
				a->a_errors++;
	}
	free(mem);
	return NULL;
}

static void
no_lost_update(void **state)
{
	static struct rb_host_seam seam;
	const struct rb_host_seam seam0 = { .hs_dio_align = 4096 };
	struct rumpblk_config cfg;
	static struct arg args[NTHREADS];
	pthread_t tid[NTHREADS];
	char *img = tl_image("pool.img", 1 << 20, 2);
	uint8_t *file = malloc(NBLOCKS * 4096);
	unsigned max, nalloc;
	uint64_t waits;
	int fd;

	(void)state;
	seam = seam0;
	rb_host_seam = &seam;
	rumpblk_config_init(&cfg);
	cfg.backend = RUMPBLK_BACKEND_DIRECT;
	tl_eq(rumpblk_create(&cfg, &rb), 0);
	tl_eq(rumpblk_register(rb, img, 0, RUMPBLK_SIZENOTSET, &unit), 0);
	for (unsigned i = 0; i < NTHREADS; i++) {
		args[i].a_index = i;
		pthread_mutex_init(&args[i].a_lock, NULL);
		pthread_cond_init(&args[i].a_cv, NULL);
		assert(pthread_create(&tid[i], NULL, reader, &args[i]) == 0);
	}
	for (unsigned i = 0; i < NTHREADS; i++) {
		pthread_join(tid[i], NULL);
		tl_eq(args[i].a_errors, 0);
	}
	rb_direct_bounce_info(rb->rb_units[unit].u_backend, &max, &nalloc,
	    &waits);
	print_message("bounce pool after reads: %u of %u allocated, %"
	    PRIu64 " waits\n", nalloc, max, waits);
	for (unsigned i = 0; i < NTHREADS; i++)
		assert(pthread_create(&tid[i], NULL, writer, &args[i]) == 0);
	for (unsigned i = 0; i < NTHREADS; i++) {
		pthread_join(tid[i], NULL);
		tl_eq(args[i].a_errors, 0);
	}
	rb_direct_bounce_info(rb->rb_units[unit].u_backend, &max, &nalloc,
	    &waits);
	print_message("bounce pool: %u of %u allocated, %" PRIu64
	    " waits\n", nalloc, max, waits);
	if (nalloc > max || max == 0)
		tl_fail("bounce pool: %u allocated, bound %u\n", nalloc, max);
	tl_eq(rumpblk_destroy(rb), 0);
	rb_host_seam = NULL;

	fd = open(img, O_RDONLY);
	tl_eq(pread(fd, file, NBLOCKS * 4096, 0), NBLOCKS * 4096);
	close(fd);
	for (unsigned t = 0; t < NTHREADS; t++)
		for (unsigned blk = t / 8; blk < NBLOCKS;
		    blk += NTHREADS / 8) {
			uint8_t *s = file + blk * 4096 + (t % 8) * 512;

			if (s[0] != ROUNDS || s[1] != (uint8_t)(t * 16 +
			    ROUNDS % 16))
				tl_fail("block %u sector %u lost thread %u's "
				    "last write (%u %u)\n", blk, t % 8, t,
				    s[0], s[1]);
		}
	for (unsigned i = 0; i < NTHREADS; i++) {
		pthread_mutex_destroy(&args[i].a_lock);
		pthread_cond_destroy(&args[i].a_cv);
	}
	free(file);
	free(img);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(no_lost_update, tl_teardown_seam),
	};
	int rc;

	setenv("RUMPBLK_TEST_BACKEND", "direct", 1);
	rc = tl_main(tests, NULL, NULL);
	return rc;
}
