/*
 * qdbench: random reads (or writes) through rumpblk_strategy at a queue
 * depth, in-process, for comparing the backends with fio's engines at
 * the same depth (bench/dio-qd.sh).  Each thread keeps QD asynchronous
 * buffers in flight; every completion starts the next request from its
 * b_iodone, as an NBD server or a benchmark at depth does.  With --qd 1
 * the buffers are synchronous (strategy + biowait in the thread).
 *
 * usage: qdbench [--backend B] [--qd N] [--threads N] [--bs N]
 *            [--seconds S] [--write] IMAGE
 * Prints one JSON object: backend, qd, threads, bs, ops, seconds, iops,
 * mib_per_s.  Writes touch IMAGE (use a scratch file).
 *
 * XXX(#7): a stopgap until `rumpblk bench` (the mmap branch) lands and
 * takes --backend direct|uring; then dio-qd.sh should call that.
 */
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <rumpblk/rumpblk.h>

struct thr;
struct slot {
	struct rumpblk_buf s_buf;
	struct thr	*s_thr;
	void		*s_data;
};

struct thr {
	struct rumpblk	*t_rb;
	int		t_unit;
	uint64_t	t_rng;
	uint64_t	t_nblk;
	uint64_t	t_ops;		/* only the reaper of this thread's
					 * buffers writes it: no lock */
	pthread_mutex_t	t_lock;
	pthread_cond_t	t_cv;
	unsigned	t_active;
	int		t_errors;
	struct slot	*t_slot;
};

static atomic_bool stop;
static unsigned qd = 32, nthreads = 1, bs = 4096;
static int op = RUMPBLK_B_READ;

static uint64_t
rnd(struct thr *t)
{
	t->t_rng ^= t->t_rng << 13;
	t->t_rng ^= t->t_rng >> 7;
	t->t_rng ^= t->t_rng << 17;
	return t->t_rng;
}

static void
prep(struct slot *s)
{
	struct thr *t = s->s_thr;
	struct rumpblk_buf *bp = &s->s_buf;

	memset(bp, 0, sizeof(*bp));
	bp->b_unit = t->t_unit;
	bp->b_flags = op | (qd > 1 ? RUMPBLK_B_ASYNC : 0);
	bp->b_blkno = (int64_t)(rnd(t) % t->t_nblk) * (bs / 512);
	bp->b_bcount = bs;
	bp->b_data = s->s_data;
	bp->b_private = s;
}

static void
done(struct rumpblk_buf *bp)
{
	struct slot *s = bp->b_private;
	struct thr *t = s->s_thr;

	if (bp->b_error != 0)
		t->t_errors++;
	__atomic_fetch_add(&t->t_ops, 1, __ATOMIC_RELAXED);
	if (!atomic_load_explicit(&stop, memory_order_relaxed)) {
		prep(s);
		bp->b_iodone = done;
		rumpblk_strategy(t->t_rb, bp);
		return;
	}
	pthread_mutex_lock(&t->t_lock);
	if (--t->t_active == 0)
		pthread_cond_signal(&t->t_cv);
	pthread_mutex_unlock(&t->t_lock);
}

static void *
run(void *arg)
{
	struct thr *t = arg;
	struct slot *s;

	if (qd == 1) {
		s = &t->t_slot[0];
		while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
			prep(s);
			rumpblk_strategy(t->t_rb, &s->s_buf);
			if (rumpblk_biowait(&s->s_buf) != 0)
				t->t_errors++;
			t->t_ops++;
		}
		return NULL;
	}
	t->t_active = qd;
	for (unsigned i = 0; i < qd; i++) {
		s = &t->t_slot[i];
		prep(s);
		s->s_buf.b_iodone = done;
		rumpblk_strategy(t->t_rb, &s->s_buf);
	}
	pthread_mutex_lock(&t->t_lock);
	while (t->t_active > 0)
		pthread_cond_wait(&t->t_cv, &t->t_lock);
	pthread_mutex_unlock(&t->t_lock);
	return NULL;
}

static double
now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

int
main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "backend", required_argument, NULL, 'b' },
		{ "qd", required_argument, NULL, 'q' },
		{ "threads", required_argument, NULL, 't' },
		{ "bs", required_argument, NULL, 's' },
		{ "seconds", required_argument, NULL, 'S' },
		{ "write", no_argument, NULL, 'w' },
		{ NULL, 0, NULL, 0 },
	};
	struct rumpblk_config cfg;
	struct rumpblk_unitinfo ui;
	struct rumpblk *rb;
	struct thr *thr;
	pthread_t *tid;
	double seconds = 5, t0, t1;
	uint64_t ops = 0;
	int c, unit, error, errors = 0;

	rumpblk_config_init(&cfg);
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 'b':
			if (rumpblk_backend_parse(optarg, &cfg.backend) != 0) {
				fprintf(stderr, "qdbench: --backend: unknown "
				    "backend '%s'\n", optarg);
				return 2;
			}
			break;
		case 'q':	qd = (unsigned)atoi(optarg); break;
		case 't':	nthreads = (unsigned)atoi(optarg); break;
		case 's':	bs = (unsigned)atoi(optarg); break;
		case 'S':	seconds = atof(optarg); break;
		case 'w':	op = RUMPBLK_B_WRITE; break;
		default:
			return 2;
		}
	}
	if (optind != argc - 1 || qd == 0 || nthreads == 0 || bs == 0 ||
	    bs % 512 != 0) {
		fprintf(stderr, "usage: qdbench [--backend B] [--qd N] "
		    "[--threads N] [--bs N] [--seconds S] [--write] IMAGE\n");
		return 2;
	}
	if ((error = rumpblk_create(&cfg, &rb)) != 0 ||
	    (error = rumpblk_register(rb, argv[optind], 0, RUMPBLK_SIZENOTSET,
	    &unit)) != 0) {
		fprintf(stderr, "qdbench: %s: %s\n", argv[optind],
		    strerror(error));
		return 1;
	}
	rumpblk_unitinfo(rb, unit, &ui);
	thr = calloc(nthreads, sizeof(*thr));
	tid = calloc(nthreads, sizeof(*tid));
	for (unsigned i = 0; i < nthreads; i++) {
		thr[i].t_rb = rb;
		thr[i].t_unit = unit;
		thr[i].t_rng = 0x9e3779b97f4a7c15ull * (i + 1);
		thr[i].t_nblk = ui.ui_size / bs;
		pthread_mutex_init(&thr[i].t_lock, NULL);
		pthread_cond_init(&thr[i].t_cv, NULL);
		thr[i].t_slot = calloc(qd, sizeof(struct slot));
		for (unsigned j = 0; j < qd; j++) {
			thr[i].t_slot[j].s_thr = &thr[i];
			if (posix_memalign(&thr[i].t_slot[j].s_data, 4096,
			    bs) != 0)
				return 1;
			memset(thr[i].t_slot[j].s_data, 0x5a, bs);
		}
	}
	t0 = now();
	for (unsigned i = 0; i < nthreads; i++)
		pthread_create(&tid[i], NULL, run, &thr[i]);
	usleep((useconds_t)(seconds * 1e6));
	atomic_store(&stop, true);
	for (unsigned i = 0; i < nthreads; i++) {
		pthread_join(tid[i], NULL);
		ops += __atomic_load_n(&thr[i].t_ops, __ATOMIC_RELAXED);
		errors += thr[i].t_errors;
	}
	t1 = now();
	printf("{\"backend\":\"%s\",\"backend_requested\":\"%s\",\"qd\":%u,"
	    "\"threads\":%u,\"bs\":%u,\"ops\":%llu,\"seconds\":%.3f,"
	    "\"iops\":%.0f,\"mib_per_s\":%.1f,\"errors\":%d}\n",
	    rumpblk_backend_name(ui.ui_backend),
	    rumpblk_backend_name(cfg.backend), qd, nthreads, bs,
	    (unsigned long long)ops, t1 - t0, ops / (t1 - t0),
	    ops * (double)bs / (t1 - t0) / 1048576, errors);
	rumpblk_destroy(rb);
	return errors != 0;
}
