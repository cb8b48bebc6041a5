/*
 * test-concurrency-mixed: many threads x several units x sync and async
 * buffers.  Each thread owns a disjoint region of every unit and writes
 * its blocks over and over, synchronously (biowait) and asynchronously
 * (b_iodone, several in flight), drains, reads them back (sync and async)
 * and checks each block's stamp; a thread snapshots the counters all the
 * while.  Afterwards every block of every unit is checked, the byte
 * counters match the work done, and the units are deregistered while
 * idle.  Bounded: a fixed number of rounds, a few seconds at most (also
 * under ThreadSanitizer, which runs it in CI).
 */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>

#include "testlib.h"

#define NTHREADS	8
#define NUNITS		3
#define BLK		4096
#define NBLK		16			/* blocks per thread region */
#define REGION		(NBLK * BLK)
#define UNITSIZE	(NTHREADS * REGION)
#define ROUNDS		6			/* write all, then verify */
#define QD		4

static struct rumpblk *rb;
static int units[NUNITS];
static char *imgs[NUNITS];
static pthread_barrier_t start;
static atomic_int stop_stats, failures;

struct slot {
	struct rumpblk_buf	s_buf;
	char			s_data[BLK];
	int			s_busy;		/* t_lock */
	struct worker		*s_w;
};

struct worker {
	int		t_id;
	pthread_mutex_t	t_lock;
	pthread_cond_t	t_cv;
	int		t_inflight;		/* t_lock */
	int		t_errors;		/* t_lock */
	struct slot	t_slots[QD];
	uint64_t	t_bytes_written;
	uint64_t	t_bytes_read;
	uint8_t		t_gen[NUNITS][NBLK];	/* last generation written */
};

static struct worker workers[NTHREADS];

/* A block's content: its identity in the first 16 bytes, then a fill. */
static void
stamp(char *p, int t, int u, int b, int gen)
{
	memset(p, (t * 31 + u * 7 + b * 3 + gen) & 0xff, BLK);
	p[0] = (char)t;
	p[1] = (char)u;
	p[2] = (char)b;
	p[3] = (char)gen;
}

static bool
stamped(const char *p, int t, int u, int b, int gen)
{
	char want[BLK];

	stamp(want, t, u, b, gen);
	return memcmp(p, want, BLK) == 0;
}

static int64_t
blkno(int t, int b)
{
	return ((int64_t)t * REGION + (int64_t)b * BLK) / 512;
}

static void
iodone(struct rumpblk_buf *bp)
{
	struct slot *s = bp->b_private;
	struct worker *w = s->s_w;

	pthread_mutex_lock(&w->t_lock);
	if (bp->b_error != 0 || bp->b_resid != 0)
		w->t_errors++;
	s->s_busy = 0;
	w->t_inflight--;
	pthread_cond_broadcast(&w->t_cv);
	pthread_mutex_unlock(&w->t_lock);
}

static struct slot *
get_slot(struct worker *w)
{
	int i;

	pthread_mutex_lock(&w->t_lock);
	for (;;) {
		for (i = 0; i < QD; i++)
			if (!w->t_slots[i].s_busy) {
				w->t_slots[i].s_busy = 1;
				w->t_inflight++;
				pthread_mutex_unlock(&w->t_lock);
				return &w->t_slots[i];
			}
		pthread_cond_wait(&w->t_cv, &w->t_lock);
	}
}

static void
drain(struct worker *w)
{
	pthread_mutex_lock(&w->t_lock);
	while (w->t_inflight > 0)
		pthread_cond_wait(&w->t_cv, &w->t_lock);
	pthread_mutex_unlock(&w->t_lock);
}

static void
bad(const char *what, int t, int u, int b, int gen)
{
	fprintf(stderr, "[backend %s] thread %d unit %d block %d gen %d: %s\n",
	    tl_backend_name(), t, u, b, gen, what);
	atomic_fetch_add(&failures, 1);
}

static void *
run(void *arg)
{
	struct worker *w = arg;
	struct rumpblk_buf b;
	struct slot *s;
	char data[BLK];
	int round, blk, u, gen, error;

	pthread_barrier_wait(&start);
	for (round = 0; round < ROUNDS; round++) {
		for (blk = 0; blk < NBLK; blk++)
			for (u = 0; u < NUNITS; u++) {
				gen = (round * NBLK + blk + u) & 0xff;
				if ((blk + u + w->t_id) % 2 == 0) {
					stamp(data, w->t_id, u, blk, gen);
					tl_buf(&b, units[u], RUMPBLK_B_WRITE,
					    blkno(w->t_id, blk), data, BLK);
					rumpblk_strategy(rb, &b);
					if ((error = rumpblk_biowait(&b)) != 0)
						bad(strerror(error), w->t_id, u,
						    blk, gen);
				} else {
					s = get_slot(w);
					stamp(s->s_data, w->t_id, u, blk, gen);
					tl_buf(&s->s_buf, units[u],
					    RUMPBLK_B_WRITE | RUMPBLK_B_ASYNC,
					    blkno(w->t_id, blk), s->s_data,
					    BLK);
					s->s_buf.b_iodone = iodone;
					s->s_buf.b_private = s;
					rumpblk_strategy(rb, &s->s_buf);
				}
				w->t_gen[u][blk] = (uint8_t)gen;
				w->t_bytes_written += BLK;
			}
		drain(w);
		/* Verify this round, reads sync and async. */
		for (blk = 0; blk < NBLK; blk++)
			for (u = 0; u < NUNITS; u++) {
				memset(data, 0, sizeof(data));
				tl_buf(&b, units[u], RUMPBLK_B_READ |
				    (blk % 2 ? RUMPBLK_B_ASYNC : 0),
				    blkno(w->t_id, blk), data, BLK);
				rumpblk_strategy(rb, &b);
				if ((error = rumpblk_biowait(&b)) != 0)
					bad(strerror(error), w->t_id, u, blk,
					    w->t_gen[u][blk]);
				else if (!stamped(data, w->t_id, u, blk,
				    w->t_gen[u][blk]))
					bad("wrong data", w->t_id, u, blk,
					    w->t_gen[u][blk]);
				w->t_bytes_read += BLK;
			}
	}
	pthread_mutex_lock(&w->t_lock);
	if (w->t_errors != 0)
		bad("async write failed", w->t_id, -1, -1, -1);
	pthread_mutex_unlock(&w->t_lock);
	return NULL;
}

static void *
stats_loop(void *arg)
{
	struct rumpblk_stats st;
	uint64_t last = 0;
	int i;

	(void)arg;
	/* Bounded in count as well as by the stop flag.  The instance's
	 * byte count never goes backwards. */
	for (i = 0; i < 100000 && !atomic_load(&stop_stats); i++) {
		rumpblk_stats(rb, -1, &st);
		if (st.bytes_written < last)
			bad("bytes_written went backwards", -1, -1, -1, -1);
		last = st.bytes_written;
		rumpblk_stats(rb, units[i % NUNITS], &st);
		sched_yield();
	}
	return NULL;
}

static void
mixed(void **state)
{
	struct rumpblk_config cfg;
	struct rumpblk_stats st;
	pthread_t th[NTHREADS], sth;
	uint64_t written = 0, readb = 0;
	static char data[BLK];
	int i, u, t, blk, error;

	(void)state;
	tl_config(&cfg);
	cfg.workers = 4;
	rb = tl_create(&cfg);
	for (u = 0; u < NUNITS; u++) {
		char name[32];

		snprintf(name, sizeof(name), "conc%d.img", u);
		/* The last unit is a window 8 KiB into its file. */
		imgs[u] = tl_image(name, UNITSIZE + (u == NUNITS - 1 ? 16384 :
		    0), 0);
		units[u] = tl_register(rb, imgs[u], u == NUNITS - 1 ? 8192 : 0,
		    UNITSIZE);
	}
	pthread_barrier_init(&start, NULL, NTHREADS);
	atomic_store(&stop_stats, 0);
	pthread_create(&sth, NULL, stats_loop, NULL);
	for (i = 0; i < NTHREADS; i++) {
		memset(&workers[i], 0, sizeof(workers[i]));
		workers[i].t_id = i;
		pthread_mutex_init(&workers[i].t_lock, NULL);
		pthread_cond_init(&workers[i].t_cv, NULL);
		for (t = 0; t < QD; t++)
			workers[i].t_slots[t].s_w = &workers[i];
		tl_eq(pthread_create(&th[i], NULL, run, &workers[i]), 0);
	}
	for (i = 0; i < NTHREADS; i++)
		pthread_join(th[i], NULL);
	atomic_store(&stop_stats, 1);
	pthread_join(sth, NULL);
	pthread_barrier_destroy(&start);
	tl_eq(atomic_load(&failures), 0);

	/* Every block of every unit, from one thread. */
	for (t = 0; t < NTHREADS; t++)
		for (u = 0; u < NUNITS; u++)
			for (blk = 0; blk < NBLK; blk++) {
				error = tl_io(rb, units[u], RUMPBLK_B_READ,
				    blkno(t, blk), data, BLK, NULL);
				tl_eq(error, 0);
				if (!stamped(data, t, u, blk,
				    workers[t].t_gen[u][blk]))
					tl_fail("unit %d block %d of thread %d "
					    "holds the wrong data\n", u, blk,
					    t);
			}
	for (i = 0; i < NTHREADS; i++) {
		written += workers[i].t_bytes_written;
		readb += workers[i].t_bytes_read;
		pthread_mutex_destroy(&workers[i].t_lock);
		pthread_cond_destroy(&workers[i].t_cv);
	}
	rumpblk_stats(rb, -1, &st);
	tl_eq(st.bytes_written, written);
	tl_eq(st.bytes_read, readb + (uint64_t)NTHREADS * NUNITS * REGION);
	tl_eq(st.io_errors, 0);
	tl_eq(st.lat_write.count, written / BLK);

	/* Deregister while idle; the instance keeps the counts. */
	for (u = 0; u < NUNITS; u++)
		tl_eq(rumpblk_deregister(rb, imgs[u]), 0);
	rumpblk_stats(rb, -1, &st);
	tl_eq(st.bytes_written, written);
	tl_eq(rumpblk_destroy(rb), 0);
	for (u = 0; u < NUNITS; u++)
		free(imgs[u]);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(mixed),
	};

	return tl_main(tests, NULL, NULL);
}
