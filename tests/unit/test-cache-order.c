/*
 * test-cache-order: the write cache's destager never has two overlapping
 * writes on their way to the medium at once.  A medium that queues (the
 * uring backend, the pio pool, a remote server) may complete what it
 * holds in any order, so an older write to the same bytes, still in
 * flight, could land over a newer one: the medium would keep stale data
 * after the FLUSH that reported both durable.
 *
 * A layer made for this test sits between the cache and the backend.
 * It holds every write it is given for a millisecond, notes whether a
 * write arrived while an overlapping one was still held, and hands what
 * it holds to the backend newest first: the reordering medium at its
 * worst.  Writes cycle over four blocks through a small cache, so the
 * destager's batches are full of overlaps.  Nothing may overlap in
 * flight, and after FLUSH each block holds its last write.
 *
 * And on the mmap backend, destaging takes pwrite, not the windows
 * (RB_IO_NOSYNC): a store through a window faults on every page not yet
 * mapped, which random destaging meets at nearly every write.  The
 * windows see no activity from it, and the data is the same through the
 * windows, the file and the cache.
 */
#include <pthread.h>
#include <stdatomic.h>

#include "testlib.h"
#include "internal.h"

#define NW	600		/* writes */
#define NBLK	4		/* 4 KiB blocks they cycle over */
#define HOLD	64		/* writes the layer holds at most */

struct olayer {
	struct rb_stage	ol_stage;	/* first */
	struct rb_frames ol_frames;
	pthread_mutex_t	ol_lock;
	pthread_cond_t	ol_cv;
	struct rb_io	*ol_held[HOLD];	/* lock: given, not yet passed on */
	unsigned	ol_nheld;	/* lock */
	struct rb_io	*ol_out[HOLD];	/* lock: given, not yet completed */
	unsigned	ol_nout;	/* lock */
	unsigned	ol_maxout;	/* lock: the most at once */
	unsigned	ol_overlaps;	/* lock: arrived over one in flight */
	bool		ol_stop;	/* lock */
	pthread_t	ol_thread;
};

struct oframe {
	struct rb_io	of_io;		/* first: ours, to the backend */
	struct rb_io	*of_orig;
	struct olayer	*of_ol;
};

static bool
changes_data(const struct rb_io *io)
{
	return io->io_op == RUMPBLK_B_WRITE || io->io_op == RUMPBLK_B_TRIM ||
	    io->io_op == RUMPBLK_B_ZERO;
}

static void
of_done(struct rb_io *io)
{
	struct oframe *f = (struct oframe *)(void *)io;
	struct olayer *ol = f->of_ol;
	struct rb_io *orig = f->of_orig;
	int error = io->io_error;
	size_t moved = io->io_moved;
	unsigned i;

	pthread_mutex_lock(&ol->ol_lock);
	for (i = 0; i < ol->ol_nout && ol->ol_out[i] != orig; i++)
		;
	assert(i < ol->ol_nout);
	ol->ol_out[i] = ol->ol_out[--ol->ol_nout];
	pthread_mutex_unlock(&ol->ol_lock);
	rb_frame_put(&ol->ol_frames, f);
	rb_io_complete(orig, error, moved);
}

static void
o_submit(struct rb_stage *st, struct rb_io *io)
{
	struct olayer *ol = (struct olayer *)st;
	unsigned i;

	if (!changes_data(io)) {
		rb_stage_pass(st, io);
		return;
	}
	pthread_mutex_lock(&ol->ol_lock);
	for (i = 0; i < ol->ol_nout; i++)
		if (io->io_off < ol->ol_out[i]->io_off +
		    ol->ol_out[i]->io_len &&
		    ol->ol_out[i]->io_off < io->io_off + io->io_len)
			ol->ol_overlaps++;
	assert(ol->ol_nout < HOLD && ol->ol_nheld < HOLD);
	ol->ol_out[ol->ol_nout++] = io;
	if (ol->ol_nout > ol->ol_maxout)
		ol->ol_maxout = ol->ol_nout;
	ol->ol_held[ol->ol_nheld++] = io;
	pthread_cond_signal(&ol->ol_cv);
	pthread_mutex_unlock(&ol->ol_lock);
}

/* Hold what came for a millisecond, then pass it on, newest first. */
static void *
o_main(void *arg)
{
	struct olayer *ol = arg;
	struct rb_io *batch[HOLD];
	struct oframe *f;
	unsigned n;

	pthread_mutex_lock(&ol->ol_lock);
	for (;;) {
		while (ol->ol_nheld == 0 && !ol->ol_stop)
			pthread_cond_wait(&ol->ol_cv, &ol->ol_lock);
		if (ol->ol_nheld == 0)
			break;
		pthread_mutex_unlock(&ol->ol_lock);
		usleep(1000);
		pthread_mutex_lock(&ol->ol_lock);
		n = ol->ol_nheld;
		memcpy(batch, ol->ol_held, n * sizeof(batch[0]));
		ol->ol_nheld = 0;
		pthread_mutex_unlock(&ol->ol_lock);
		while (n > 0) {
			f = rb_frame_get(&ol->ol_frames);
			assert(f != NULL);
			f->of_orig = batch[--n];
			f->of_io = *f->of_orig;
			f->of_io.io_done = of_done;
			f->of_ol = ol;
			rb_stage_pass(&ol->ol_stage, &f->of_io);
		}
		pthread_mutex_lock(&ol->ol_lock);
	}
	pthread_mutex_unlock(&ol->ol_lock);
	return NULL;
}

static void
o_destroy(struct rb_stage *st)
{
	struct olayer *ol = (struct olayer *)st;

	pthread_mutex_lock(&ol->ol_lock);
	ol->ol_stop = true;
	pthread_cond_signal(&ol->ol_cv);
	pthread_mutex_unlock(&ol->ol_lock);
	pthread_join(ol->ol_thread, NULL);
	rb_frames_fini(&ol->ol_frames);
	pthread_mutex_destroy(&ol->ol_lock);
	pthread_cond_destroy(&ol->ol_cv);
	free(ol);
}

static const struct rb_ops o_ops = {
	.name = "test-reorder",
	.submit = o_submit,
	.destroy = o_destroy,
};

static char *image;
TL_IMAGE_FIXTURE(image, "order.img", 1 << 20, 3)

static void
no_overlap_in_flight(void **state)
{
	struct rumpblk *rb = tl_create(NULL);
	int unit = tl_register(rb, image, 0, RUMPBLK_SIZENOTSET);
	struct rb_unit *u;
	struct olayer *ol = calloc(1, sizeof(*ol));
	uint32_t buf[1024], got[1024];
	unsigned ep, i, j, maxout, overlaps;

	(void)state;
	assert(ol != NULL);
	u = rb_unit_hold(rb, unit, &ep);
	assert(u != NULL);
	rb_unit_rele(u, ep);	/* the slot outlives the test's use */
	rb_stage_init(&ol->ol_stage, &o_ops, u, RB_RANK_CACHE + 50);
	rb_frames_init(&ol->ol_frames, sizeof(struct oframe));
	pthread_mutex_init(&ol->ol_lock, NULL);
	pthread_cond_init(&ol->ol_cv, NULL);
	tl_eq(pthread_create(&ol->ol_thread, NULL, o_main, ol), 0);
	rb_stack_push(u, &ol->ol_stage);
	/* Small: the destager runs all along the workload. */
	tl_eq(rumpblk_write_cache(rb, unit, 64 * 1024), 0);

	for (i = 0; i < NW; i++) {
		for (j = 0; j < 1024; j++)
			buf[j] = i;
		tl_eq(tl_io(rb, unit, RUMPBLK_B_WRITE | RUMPBLK_B_ASYNC,
		    (int64_t)(i % NBLK) * 8, buf, sizeof(buf), NULL), 0);
	}
	tl_eq(tl_io(rb, unit, RUMPBLK_B_FLUSH, 0, NULL, 0, NULL), 0);

	pthread_mutex_lock(&ol->ol_lock);
	maxout = ol->ol_maxout;
	overlaps = ol->ol_overlaps;
	pthread_mutex_unlock(&ol->ol_lock);
	/* The layer saw writes in flight together (or it tests nothing),
	 * and never two over the same bytes. */
	tl_true(maxout > 1);
	tl_eq(overlaps, 0);
	for (i = 0; i < NBLK; i++) {
		tl_host_read(image, got, sizeof(got), (uint64_t)i * 4096);
		for (j = 0; j < 1024; j++)
			if (got[j] != NW - NBLK + i)
				tl_fail("block %u word %u: %u, want the last "
				    "write's %u\n", i, j, got[j],
				    NW - NBLK + i);
	}
	tl_eq(rumpblk_destroy(rb), 0);
}

static void
destage_not_through_windows(void **state)
{
	/* Two windows of 64 KiB over 1 MiB: most writes would miss. */
	struct rumpblk *rb = tl_mmap_create(64 * 1024, 2);
	int unit = tl_register(rb, image, 0, RUMPBLK_SIZENOTSET);
	struct rumpblk_stats st0, st1;
	uint32_t buf[1024], got[1024];
	unsigned i, j, blk;

	(void)state;
	tl_eq(rumpblk_write_cache(rb, unit, 64 * 1024), 0);
	rumpblk_stats(rb, unit, &st0);
	for (i = 0; i < 256; i++) {
		blk = (i * 37) % 256;	/* scattered, each block once */
		for (j = 0; j < 1024; j++)
			buf[j] = blk * 1024 + j + 7;
		tl_eq(tl_io(rb, unit, RUMPBLK_B_WRITE | RUMPBLK_B_ASYNC,
		    (int64_t)blk * 8, buf, sizeof(buf), NULL), 0);
	}
	tl_eq(tl_io(rb, unit, RUMPBLK_B_FLUSH, 0, NULL, 0, NULL), 0);
	rumpblk_stats(rb, unit, &st1);
	/* 1 MiB written through a 64 KiB cache: destaged, not by windows. */
	tl_eq(st1.bytes_written - st0.bytes_written, 1 << 20);
	tl_eq(st1.win_hits + st1.win_misses, st0.win_hits + st0.win_misses);
	for (blk = 0; blk < 256; blk++) {
		tl_host_read(image, got, sizeof(got), (uint64_t)blk * 4096);
		for (j = 0; j < 1024; j++)
			if (got[j] != blk * 1024 + j + 7)
				tl_fail("file block %u word %u: %u\n", blk, j,
				    got[j]);
		memset(got, 0, sizeof(got));
		tl_eq(tl_io(rb, unit, RUMPBLK_B_READ, (int64_t)blk * 8, got,
		    sizeof(got), NULL), 0);
		for (j = 0; j < 1024; j++)
			if (got[j] != blk * 1024 + j + 7)
				tl_fail("window block %u word %u: %u\n", blk,
				    j, got[j]);
	}
	rumpblk_stats(rb, unit, &st0);
	tl_true(st0.win_misses > st1.win_misses);	/* reads use them */
	tl_eq(rumpblk_destroy(rb), 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(no_overlap_in_flight),
		cmocka_unit_test(destage_not_through_windows),
	};

	return tl_main(tests, setup, teardown);
}
