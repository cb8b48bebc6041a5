/*
 * test-fault-concurrency: rules of every class are armed, listed and
 * disarmed while several threads run synchronous and asynchronous I/O,
 * and units are registered and deregistered under armed rules.  Nothing
 * is asserted about which requests fire (that is timing); the point is
 * that nothing crashes, hangs or races (this program runs under TSan and
 * ASan), every request completes, and the counters add up.
 */
#include <pthread.h>

#include <stdatomic.h>

#include "faultlib.h"

static atomic_bool stop;

#define NTHREADS	4
#define NIO		100000	/* at most; they stop when told */
#define IMGSIZE		(1u << 20)

struct worker {
	struct rumpblk	*rb;
	int		unit;
	unsigned	t;
	int		done;		/* async completions */
	pthread_mutex_t	lock;
	pthread_cond_t	cond;
};

static void
iodone(struct rumpblk_buf *bp)
{
	struct worker *w = bp->b_private;

	pthread_mutex_lock(&w->lock);
	w->done++;
	pthread_cond_signal(&w->cond);
	pthread_mutex_unlock(&w->lock);
}

static void *
work(void *arg)
{
	struct worker *w = arg;
	struct rumpblk_buf b[8];
	char buf[8][4096], sbuf[4096];
	uint64_t x = w->t + 1;
	int op, k = 0;

	for (int i = 0; i < NIO && !atomic_load(&stop); i++) {
		x = x * 6364136223846793005ull + 1442695040888963407ull;
		op = (x >> 60) & 1 ? RUMPBLK_B_WRITE : RUMPBLK_B_READ;
		if ((x >> 59) % 17 == 0)
			op = RUMPBLK_B_FLUSH;
		if (i % 4 != 0) {
			tl_io(w->rb, w->unit, op, (int64_t)((x >> 33) % 255) *
			    8, sbuf, 4096, NULL);
			continue;
		}
		/* A batch of async buffers. */
		memset(&b[k], 0, sizeof(b[k]));
		b[k].b_unit = w->unit;
		b[k].b_flags = op | RUMPBLK_B_ASYNC;
		b[k].b_blkno = (int64_t)((x >> 33) % 255) * 8;
		b[k].b_bcount = 4096;
		b[k].b_data = buf[k];
		b[k].b_iodone = iodone;
		b[k].b_private = w;
		rumpblk_strategy(w->rb, &b[k]);
		if (++k == 8) {
			pthread_mutex_lock(&w->lock);
			while (w->done < 8)
				pthread_cond_wait(&w->cond, &w->lock);
			w->done = 0;
			pthread_mutex_unlock(&w->lock);
			k = 0;
		}
	}
	pthread_mutex_lock(&w->lock);
	while (w->done < k)
		pthread_cond_wait(&w->cond, &w->lock);
	pthread_mutex_unlock(&w->lock);
	return NULL;
}

static const char *const rules[] = {
	"error,p=0.05",
	"corrupt,op=read/write,p=0.05,bits=4",
	"lost,p=0.05",
	"misdirect,p=0.05",
	"stale,range=0-256K,p=0.2",
	"torn,p=0.05",
	"delay,ms=0.2,p=0.1",
	"error,op=flush,every=3",
};

static void
arm_while_running(void **state)
{
	struct fl_env e;
	struct worker w[NTHREADS];
	pthread_t tid[NTHREADS];
	struct rumpblk_fault_info info[16];
	struct rumpblk_stats st;
	uint64_t sum = 0;
	char id[RUMPBLK_FAULT_IDMAX], *img2, junk[512] = "";
	size_t n;
	int unit2;

	(void)state;
	fl_open(&e, "conc.img", IMGSIZE, 3);
	img2 = tl_image("conc2.img", IMGSIZE, 4);
	for (unsigned i = 0; i < NTHREADS; i++) {
		w[i] = (struct worker){ .rb = e.rb, .unit = e.unit, .t = i };
		pthread_mutex_init(&w[i].lock, NULL);
		pthread_cond_init(&w[i].cond, NULL);
		assert(pthread_create(&tid[i], NULL, work, &w[i]) == 0);
	}
	for (unsigned round = 0; round < 30; round++) {
		const char *r = rules[round % (sizeof(rules) /
		    sizeof(rules[0]))];

		tl_eq(rumpblk_fault_add(e.rb, r, id, sizeof(id), NULL, 0), 0);
		tl_eq(rumpblk_fault_list(e.rb, info, 16, &n), 0);
		if (round % 3 == 2)
			tl_eq(rumpblk_fault_del(e.rb, info[0].fi_id), 0);
		if (round % 10 == 9)
			tl_eq(rumpblk_fault_clear(e.rb), 0);
		/* A unit comes and goes under the rules. */
		if (round % 5 == 0) {
			tl_eq(rumpblk_register(e.rb, img2, 0,
			    RUMPBLK_SIZENOTSET, &unit2), 0);
			tl_io(e.rb, unit2, RUMPBLK_B_WRITE, 0, junk, 512,
			    NULL);
			tl_eq(rumpblk_deregister(e.rb, img2), 0);
		}
		usleep(1000);
	}
	atomic_store(&stop, true);
	for (unsigned i = 0; i < NTHREADS; i++) {
		pthread_join(tid[i], NULL);
		pthread_mutex_destroy(&w[i].lock);
		pthread_cond_destroy(&w[i].cond);
	}
	rumpblk_stats(e.rb, -1, &st);
	for (int c = 0; c < RUMPBLK_FAULT_NCLASS; c++)
		sum += st.faults_class[c];
	print_message("%" PRIu64 " requests, %" PRIu64 " firings\n",
	    st.io_total, st.faults_injected);
	tl_eq(sum, st.faults_injected);
	tl_eq(fl_log_lines(&e), st.faults_injected);
	fl_close(&e);
	unlink(img2);
	free(img2);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(arm_while_running),
	};

	return tl_main(tests, NULL, NULL);
}
