/*
 * rumpblk bench: drive the library in-process (no NBD) and print
 * throughput (DESIGN.md §5).
 *
 * Each thread keeps --qd buffers in flight.  With --qd 1 a thread calls
 * rumpblk_strategy and rumpblk_biowait in turn, which is how a caller
 * that wants one I/O at a time uses the library; with more, every buffer
 * is RUMPBLK_B_ASYNC with a b_iodone that resubmits it from the thread
 * that completed it (see bench_iodone).
 * Writes are asynchronous buffers unless --sync is given (as with fio's
 * buffered writes); with --sync they are durable at completion.
 *
 * The benchmark times nothing itself per request (a clock read per
 * request would cost as much as what it measures); latency comes from
 * the library's own sampled records (one request in lat_sample per
 * thread; --lat-sample sets it, bench/inproc.sh measures what timing
 * costs with it), read at the end: the log-linear histogram of the
 * op (rumpblk_hist_op) for the percentiles, and in --json every
 * histogram of the unit under "latency".  Offsets always fall
 * inside the unit, so nothing outside IMAGE (or the --offset/--size part
 * of it) is ever written.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "control.h"

enum pattern { P_RANDREAD, P_RANDWRITE, P_SEQREAD, P_SEQWRITE };
static const char *const pattern_names[] = {
	"randread", "randwrite", "seqread", "seqwrite",
};

struct bench {
	struct rumpblk	*b_rb;
	int		b_unit;
	enum pattern	b_pattern;
	size_t		b_bs;
	unsigned	b_qd;
	bool		b_sync;
	uint64_t	b_nblocks;	/* bs-sized blocks in the unit */
	unsigned	b_threads;
	atomic_bool	b_stop;
	atomic_int	b_error;	/* first I/O error */
	/* --lat-compare: a second instance over the same IMAGE that times
	 * one request in N, used in turn with b_rb (timing off). */
	struct rumpblk	*b_rb2;
	int		b_unit2;
};

struct bthread {
	struct bench	*t_b;
	pthread_t	t_thread;
	unsigned	t_id;
	uint64_t	t_rand;		/* xorshift state */
	uint64_t	t_lo, t_n, t_pos; /* sequential stripe, in blocks */
	_Atomic uint64_t t_ops;		/* completed, read by progress */
	/* --lat-compare: per instance (0 off, 1 on), for the report */
	uint64_t	t_ab_ops[2];
	uint64_t	t_ab_wall_ns[2];
	uint64_t	t_ab_cpu_ns[2];
	char		*t_mem;		/* qd * bs bytes */
	struct bbuf	*t_bufs;
	/*
	 * --qd > 1: a completion resubmits its buffer at once, on whatever
	 * thread it runs (see bench_iodone), so t_lock guards the offset
	 * generator, and the thread waits on t_cv for t_inflight to drain.
	 */
	pthread_mutex_t	t_lock;
	pthread_cond_t	t_cv;
	_Atomic unsigned t_inflight;
} __attribute__((aligned(64)));	/* threads share no written line */

/* A benchmark buffer: the library's buffer first, then our link. */
struct bbuf {
	struct rumpblk_buf bb_buf;
	struct bbuf	*bb_next;	/* tls_pending */
} __attribute__((aligned(64)));

/*
 * Buffers completed on this thread while it was inside rumpblk_strategy
 * (the mmap backend completes inline, uring reaps in the submitter): they
 * are resubmitted by the loop in submit_chain once strategy returns, not
 * from the callback, so that the stack does not grow with every request.
 */
static _Thread_local struct bbuf *tls_pending;
static _Thread_local bool tls_submitting;

/* A struct timeval in seconds (getrusage's CPU times). */
static double
tv_s(const struct timeval *tv)
{
	return (double)tv->tv_sec + (double)tv->tv_usec / 1e6;
}

static uint64_t
next_block(struct bthread *t)
{
	uint64_t x;

	if (t->t_b->b_pattern == P_RANDREAD ||
	    t->t_b->b_pattern == P_RANDWRITE) {
		x = t->t_rand;
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		t->t_rand = x;
		return x % t->t_b->b_nblocks;
	}
	x = t->t_lo + t->t_pos;
	if (++t->t_pos == t->t_n)
		t->t_pos = 0;
	return x;
}

/*
 * Set the public fields of a buffer for its next request.  The buffers
 * were zeroed once when allocated; a completed buffer is the caller's
 * again and strategy initialises its private part itself (librumpblk(3)),
 * so reuse needs no second memset: 192 bytes of stores per request that
 * callgrind counted as a fifth of the non-copy instructions of a 4 KiB
 * mmap read.
 */
static void
prep(struct bthread *t, struct rumpblk_buf *bp, char *data)
{
	struct bench *b = t->t_b;
	bool wr = b->b_pattern == P_RANDWRITE || b->b_pattern == P_SEQWRITE;

	bp->b_unit = b->b_unit;
	bp->b_blkno = (int64_t)(next_block(t) * b->b_bs / RUMPBLK_DEV_BSIZE);
	bp->b_bcount = b->b_bs;
	bp->b_resid = 0;
	bp->b_error = 0;
	bp->b_data = data;
	bp->b_private = t;
	if (wr)
		bp->b_flags = RUMPBLK_B_WRITE | (b->b_sync ? (b->b_qd > 1 ?
		    RUMPBLK_B_ASYNC | RUMPBLK_B_FUA : 0) : RUMPBLK_B_ASYNC);
	else
		bp->b_flags = RUMPBLK_B_READ | (b->b_qd > 1 ?
		    RUMPBLK_B_ASYNC : 0);
}

static void
note_error(struct bench *b, int error)
{
	int zero = 0;

	atomic_compare_exchange_strong(&b->b_error, &zero, error);
	atomic_store(&b->b_stop, true);
}

/* Prepare and submit bb, then whatever completed inline meanwhile. */
static void
submit_chain(struct bbuf *bb)
{
	struct bthread *t;

	tls_submitting = true;
	while (bb != NULL) {
		t = bb->bb_buf.b_private;
		pthread_mutex_lock(&t->t_lock);
		prep(t, &bb->bb_buf, bb->bb_buf.b_data);
		pthread_mutex_unlock(&t->t_lock);
		rumpblk_strategy(t->t_b->b_rb, &bb->bb_buf);
		if ((bb = tls_pending) != NULL)
			tls_pending = bb->bb_next;
	}
	tls_submitting = false;
}

/*
 * A completion resubmits its buffer from the completing thread, as a
 * kernel driver chains bios: handing every buffer back to the
 * submitting thread would cost a wake-up per request and measure the
 * scheduler, not the backend.
 */
static void
bench_iodone(struct rumpblk_buf *bp)
{
	struct bbuf *bb = (struct bbuf *)bp;
	struct bthread *t = bp->b_private;

	if (bp->b_error != 0)
		note_error(t->t_b, bp->b_error);
	else
		atomic_fetch_add_explicit(&t->t_ops, 1, memory_order_relaxed);
	if (atomic_load_explicit(&t->t_b->b_stop, memory_order_relaxed)) {
		if (atomic_fetch_sub(&t->t_inflight, 1) == 1) {
			pthread_mutex_lock(&t->t_lock);
			pthread_cond_signal(&t->t_cv);
			pthread_mutex_unlock(&t->t_lock);
		}
		return;
	}
	if (tls_submitting) {
		bb->bb_next = tls_pending;
		tls_pending = bb;
		return;
	}
	submit_chain(bb);
}

/* Requests of one slice of --lat-compare: about a millisecond. */
#define AB_SLICE	2000

/*
 * --lat-compare: slices of AB_SLICE requests, on the instance that
 * times nothing and on the one that samples, in turn, each slice timed
 * (wall and this thread's CPU) around the whole slice.  Both see the
 * same load of a shared host within a millisecond or two, which
 * separate runs a second apart do not: the ratio is the cost of timing.
 */
static void
bench_compare(struct bthread *t)
{
	struct bench *b = t->t_b;
	struct rumpblk_buf *bp = &t->t_bufs[0].bb_buf;
	uint64_t k, n, w0, c0;
	int side, error;

	for (k = 0; !atomic_load_explicit(&b->b_stop, memory_order_relaxed);
	    k++) {
		side = (int)(k & 1);
		c0 = cli_clock_ns(CLOCK_THREAD_CPUTIME_ID);
		w0 = cli_clock_ns(CLOCK_MONOTONIC);
		for (n = 0; n < AB_SLICE; n++) {
			prep(t, bp, t->t_mem);
			bp->b_unit = side ? b->b_unit2 : b->b_unit;
			rumpblk_strategy(side ? b->b_rb2 : b->b_rb, bp);
			if ((error = rumpblk_biowait(bp)) != 0) {
				note_error(b, error);
				return;
			}
		}
		t->t_ab_wall_ns[side] += cli_clock_ns(CLOCK_MONOTONIC) - w0;
		t->t_ab_cpu_ns[side] += cli_clock_ns(CLOCK_THREAD_CPUTIME_ID) -
		    c0;
		t->t_ab_ops[side] += AB_SLICE;
		atomic_store_explicit(&t->t_ops, atomic_load_explicit(&t->t_ops,
		    memory_order_relaxed) + AB_SLICE, memory_order_relaxed);
	}
}

static void *
bench_thread(void *arg)
{
	struct bthread *t = arg;
	struct bench *b = t->t_b;
	struct rumpblk_buf *bp;
	unsigned i;
	int error;

	if (b->b_rb2 != NULL) {
		bench_compare(t);
		return NULL;
	}
	if (b->b_qd == 1) {
		bp = &t->t_bufs[0].bb_buf;
		while (!atomic_load_explicit(&b->b_stop,
		    memory_order_relaxed)) {
			prep(t, bp, t->t_mem);
			rumpblk_strategy(b->b_rb, bp);
			if ((error = rumpblk_biowait(bp)) != 0) {
				note_error(b, error);
				break;
			}
			atomic_store_explicit(&t->t_ops, atomic_load_explicit(
			    &t->t_ops, memory_order_relaxed) + 1,
			    memory_order_relaxed);
		}
		return NULL;
	}
	atomic_store(&t->t_inflight, b->b_qd);
	for (i = 0; i < b->b_qd; i++) {
		bp = &t->t_bufs[i].bb_buf;
		bp->b_iodone = bench_iodone;
		bp->b_private = t;
		bp->b_data = t->t_mem + (size_t)i * b->b_bs;
		submit_chain(&t->t_bufs[i]);
	}
	/* Buffers circulate on their own until b_stop; wait for them. */
	pthread_mutex_lock(&t->t_lock);
	while (atomic_load(&t->t_inflight) > 0)
		pthread_cond_wait(&t->t_cv, &t->t_lock);
	pthread_mutex_unlock(&t->t_lock);
	return NULL;
}

static void
bench_usage(FILE *f)
{
	fprintf(f,
"usage: rumpblk bench [options] IMAGE\n\n"
"Drive the library in-process (no NBD) and print throughput.  IMAGE is\n"
"a file or device, or a remote disk (an NBD URI, rbd:POOL/IMAGE[@SNAP])\n"
"or overlay:PATH.\n\n"
"  --backend B            auto, mmap, pio, direct or uring (default auto)\n"
"  --pattern P            randread, randwrite, seqread or seqwrite\n"
"                         (default randread)\n"
"  --bs N                 bytes per request, a sector multiple (default 4K)\n"
"  --threads N            submitting threads (default 1)\n"
"  --qd N                 buffers in flight per thread, through\n"
"                         RUMPBLK_B_ASYNC and b_iodone (default 1)\n"
"  --seconds S            run time, fractions allowed (default 5)\n"
"  --sync                 writes are durable at completion (default:\n"
"                         asynchronous buffers, like buffered writes)\n"
"  --winsize N            mmap window size, a power of two\n"
"  --wincount N           mmap windows (default: windows covering the\n"
"                         unit, up to 64 GiB of address space)\n"
"  --offset N             the unit starts N bytes into IMAGE\n"
"  --size N               the unit is N bytes (default: the rest)\n"
"  --json                 one JSON object on standard output\n"
"  --lat-sample N         time one request in N per thread (default 64;\n"
"                         1: every one; off: none, to measure the cost)\n"
"  --lat-compare N        measure what timing costs: a second instance\n"
"                         over IMAGE times one request in N, the first\n"
"                         none, each thread using them in turn every\n"
"                         2000 requests; prints both rates (--qd 1; no\n"
"                         fault or cache options)\n"
"  --ceph-conf FILE       the Ceph configuration for rbd:\n"
"  --ceph-id NAME         the Ceph client id for rbd:\n"
CLI_FAULT_HELP
"\nSizes take K, M, G and T suffixes (powers of 1024).  Flags\n"
"override RUMP_BLK* variables.  Write patterns write over the\n"
"unit's data (never outside it) and need a writable IMAGE.\n"
"A progress line is shown when standard error is a terminal.\n"
"Latency figures are the library's sampled records (--lat-sample).\n");
}

/* What the command line asked for (cmd_bench). */
struct bench_opts {
	struct rumpblk_config bo_cfg;	/* RUMP_BLK*, then --backend */
	enum pattern	bo_pattern;
	uint64_t	bo_bs;
	uint64_t	bo_threads;
	uint64_t	bo_qd;
	double		bo_seconds;
	bool		bo_sync;
	uint64_t	bo_winsize;	/* 0: cover the unit */
	uint64_t	bo_wincount;	/* 0: cover the unit */
	uint64_t	bo_offset;
	uint64_t	bo_size;	/* RUMPBLK_SIZENOTSET: the rest */
	bool		bo_json;
	uint64_t	bo_lat_sample;	/* 0: the library's default */
	uint64_t	bo_lat_compare;	/* --lat-compare N, or 0 */
	struct cli_fault_opts bo_fault;	/* --fault, ..., --control */
	struct cli_spec_opts bo_spec;	/* --ceph-conf, --ceph-id */
};

static int
bench_option(void *ctx, int c, const char *arg)
{
	struct bench_opts *o = ctx;
	char *end;
	int p;

	switch (c) {
	case 'b':
		return cli_opt_backend(arg, &o->bo_cfg.backend) ? 0 : 2;
	case 'p':
		for (p = 0; p < 4; p++)
			if (strcmp(arg, pattern_names[p]) == 0)
				break;
		if (p == 4) {
			cli_err("--pattern: '%s' is not randread, randwrite, "
			    "seqread or seqwrite", arg);
			return 2;
		}
		o->bo_pattern = (enum pattern)p;
		return 0;
	case 'B':
		if (!cli_opt_size("--bs", arg, &o->bo_bs))
			return 2;
		if (o->bo_bs == 0 || o->bo_bs > (1u << 30)) {
			cli_err("--bs: '%s' is not from 512 to 1G", arg);
			return 2;
		}
		return 0;
	case 't':
		return cli_opt_uint("--threads", arg, 1, 1024,
		    &o->bo_threads) ? 0 : 2;
	case 'q':
		return cli_opt_uint("--qd", arg, 1, 4096, &o->bo_qd) ? 0 : 2;
	case 'T':
		errno = 0;
		o->bo_seconds = strtod(arg, &end);
		if (errno != 0 || end == arg || *end != '\0' ||
		    !(o->bo_seconds > 0 && o->bo_seconds <= 86400)) {
			cli_err("--seconds: '%s' is not a time in seconds "
			    "(0 < S <= 86400)", arg);
			return 2;
		}
		return 0;
	case 'y':
		o->bo_sync = true;
		return 0;
	case 'w':
		if (!cli_opt_size("--winsize", arg, &o->bo_winsize))
			return 2;
		if (o->bo_winsize == 0 ||
		    (o->bo_winsize & (o->bo_winsize - 1)) != 0) {
			cli_err("--winsize: '%s' is not a power of two", arg);
			return 2;
		}
		return 0;
	case 'c':
		return cli_opt_uint("--wincount", arg, 1, UINT32_MAX,
		    &o->bo_wincount) ? 0 : 2;
	case 'o':
		return cli_opt_size("--offset", arg, &o->bo_offset) ? 0 : 2;
	case 's':
		return cli_opt_size("--size", arg, &o->bo_size) ? 0 : 2;
	case 'j':
		o->bo_json = true;
		return 0;
	case 'A':
		return cli_opt_uint("--lat-compare", arg, 1, UINT32_MAX,
		    &o->bo_lat_compare) ? 0 : 2;
	case 'L':
		/* off: practically none (one in 2^32 - 1 per thread). */
		if (strcmp(arg, "off") == 0) {
			o->bo_lat_sample = UINT32_MAX;
			return 0;
		}
		return cli_opt_uint("--lat-sample", arg, 1, UINT32_MAX,
		    &o->bo_lat_sample) ? 0 : 2;
	case 'C':
		o->bo_spec.cs_ceph_conf = arg;
		return 0;
	case 'I':
		o->bo_spec.cs_ceph_id = arg;
		return 0;
	}
	return -1;
}

/* --lat-compare's sums over the threads: [0] timing off, [1] on. */
struct ab {
	uint64_t	ab_ops[2];
	uint64_t	ab_wall_ns[2];
	uint64_t	ab_cpu_ns[2];
};

/* Requests a second of wall (cpu: of CPU) on side i. */
static double
ab_rate(const struct ab *ab, int i, bool cpu)
{
	uint64_t ns = cpu ? ab->ab_cpu_ns[i] : ab->ab_wall_ns[i];

	return ns ? (double)ab->ab_ops[i] * 1e9 / (double)ns : 0;
}

/* Quantile q of a histogram, in microseconds. */
static double
q_us(const struct rumpblk_hist *h, double q)
{
	return (double)rumpblk_hist_quantile(h, q) / 1000.0;
}

/*
 * Print the result: ops requests in el seconds on the unit ui of b, as
 * text or (--json) as one object that carries the unit's counters too.
 */
static void
bench_report(const struct bench_opts *o, const char *image,
    const struct bench *b, const struct rumpblk_unitinfo *ui,
    uint64_t ops, double el, double cpu, const struct ab *ab)
{
	const char *pattern = pattern_names[o->bo_pattern];
	const char *backend = rumpblk_backend_name(ui->ui_backend);
	const char *asked = rumpblk_backend_name(o->bo_cfg.backend);
	struct rumpblk_stats st;
	struct rumpblk_hist hist, *lat = &hist;
	struct rumpblk *srb;
	double iops, mibs;
	bool wr;
	int su;

	wr = o->bo_pattern == P_RANDWRITE || o->bo_pattern == P_SEQWRITE;
	iops = (double)ops / el;
	mibs = iops * (double)o->bo_bs / 1048576.0;
	/* --lat-compare: the counters of the instance that times. */
	srb = b->b_rb2 != NULL ? b->b_rb2 : b->b_rb;
	su = b->b_rb2 != NULL ? b->b_unit2 : b->b_unit;
	rumpblk_stats(srb, su, &st);
	(void)rumpblk_hist_op(srb, su, wr ? RUMPBLK_B_WRITE : RUMPBLK_B_READ,
	    &hist);
	if (o->bo_json) {
		printf("{\"image\":");
		cli_json_string(stdout, image);
		printf(",\"backend\":\"%s\",\"backend_requested\":\"%s\","
		    "\"pattern\":\"%s\",\"bs\":%" PRIu64 ",\"threads\":%"
		    PRIu64 ",\"qd\":%" PRIu64 ",\"sync\":%s,\"seconds\":%.3f,"
		    "\"ops\":%" PRIu64 ",\"iops\":%.1f,\"mib_per_s\":%.2f,"
		    "\"cpu_seconds\":%.3f,\"ops_per_cpu_second\":%.1f,"
		    "\"lat_sample\":%" PRIu64 ",\"lat_timed\":%" PRIu64
		    ",\"lat_mean_us\":%.3f,\"lat_p50_us\":%.3f,"
		    "\"lat_p90_us\":%.3f,\"lat_p99_us\":%.3f,"
		    "\"lat_p999_us\":%.3f,\"lat_max_us\":%.3f,\"offset\":%"
		    PRIu64 ",\"size\":%" PRIu64, backend, asked, pattern,
		    o->bo_bs, o->bo_threads, o->bo_qd, o->bo_sync ? "true" :
		    "false", el, ops, iops, mibs, cpu, cpu > 0 ? (double)ops /
		    cpu : 0.0, o->bo_lat_sample ?
		    o->bo_lat_sample : 64, lat->h_timed, lat->h_timed ?
		    (double)lat->h_sum_ns / (double)lat->h_timed / 1000.0 :
		    0.0, q_us(lat, 0.5), q_us(lat, 0.9), q_us(lat, 0.99),
		    q_us(lat, 0.999), (double)lat->h_max_ns / 1000.0,
		    ui->ui_offset, ui->ui_size);
		if (ui->ui_backend == RUMPBLK_BACKEND_MMAP)
			printf(",\"winsize\":%" PRIu64 ",\"wincount\":%u",
			    ui->ui_winsize, ui->ui_wincount);
		/* The unit's counters, as serve --stats writes them. */
		putchar(',');
		cli_stats_json_members(stdout, srb, &st);
		putchar(',');
		cli_stats_latency_json(stdout, srb, su);
		if (ab != NULL)
			printf(",\"lat_compare\":{\"lat_sample\":%" PRIu64
			    ",\"off\":{\"ops\":%" PRIu64 ",\"iops\":%.1f,"
			    "\"ops_per_cpu_second\":%.1f},\"on\":{\"ops\":%"
			    PRIu64 ",\"iops\":%.1f,\"ops_per_cpu_second\":%.1f},"
			    "\"ratio\":%.4f,\"ratio_cpu\":%.4f}",
			    o->bo_lat_compare, ab->ab_ops[0], ab_rate(ab, 0,
			    false), ab_rate(ab, 0, true), ab->ab_ops[1],
			    ab_rate(ab, 1, false), ab_rate(ab, 1, true),
			    ab_rate(ab, 0, false) > 0 ? ab_rate(ab, 1, false) /
			    ab_rate(ab, 0, false) : 0, ab_rate(ab, 0, true) > 0 ?
			    ab_rate(ab, 1, true) / ab_rate(ab, 0, true) : 0);
		printf("}\n");
		return;
	}
	printf("%s: %s (asked %s), %s, bs %" PRIu64 ", %" PRIu64
	    " thread(s) x qd %" PRIu64 "%s, %.2f s\n", image, backend, asked,
	    pattern, o->bo_bs, o->bo_threads, o->bo_qd, wr ? (o->bo_sync ?
	    ", sync writes" : ", async writes") : "", el);
	printf("  %" PRIu64 " ops, %.0f IOPS, %.1f MiB/s\n", ops, iops, mibs);
	if (lat->h_timed != 0)
		printf("  latency (%" PRIu64 " sampled): mean %.2f us, "
		    "p50 %.2f us, p90 %.2f us, p99 %.2f us, p99.9 %.2f us, "
		    "max %.2f us\n", lat->h_timed, (double)lat->h_sum_ns /
		    (double)lat->h_timed / 1000.0, q_us(lat, 0.5),
		    q_us(lat, 0.9), q_us(lat, 0.99), q_us(lat, 0.999),
		    (double)lat->h_max_ns / 1000.0);
	if (ab != NULL)
		printf("  timing one request in %" PRIu64 " against none, in "
		    "turn every %d requests: %.0f against %.0f IOPS (%.4f), "
		    "%.0f against %.0f requests per CPU second (%.4f)\n",
		    o->bo_lat_compare, AB_SLICE, ab_rate(ab, 1, false),
		    ab_rate(ab, 0, false), ab_rate(ab, 0, false) > 0 ?
		    ab_rate(ab, 1, false) / ab_rate(ab, 0, false) : 0,
		    ab_rate(ab, 1, true), ab_rate(ab, 0, true),
		    ab_rate(ab, 0, true) > 0 ? ab_rate(ab, 1, true) /
		    ab_rate(ab, 0, true) : 0);
	if (ui->ui_backend == RUMPBLK_BACKEND_MMAP)
		printf("  windows %u x %" PRIu64 " bytes: %" PRIu64 " hits, %"
		    PRIu64 " misses, %" PRIu64 " busy\n", ui->ui_wincount,
		    ui->ui_winsize, st.win_hits, st.win_misses, st.win_busy);
}

int
cmd_bench(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "backend", required_argument, NULL, 'b' },
		{ "pattern", required_argument, NULL, 'p' },
		{ "bs", required_argument, NULL, 'B' },
		{ "threads", required_argument, NULL, 't' },
		{ "qd", required_argument, NULL, 'q' },
		{ "seconds", required_argument, NULL, 'T' },
		{ "sync", no_argument, NULL, 'y' },
		{ "winsize", required_argument, NULL, 'w' },
		{ "wincount", required_argument, NULL, 'c' },
		{ "offset", required_argument, NULL, 'o' },
		{ "size", required_argument, NULL, 's' },
		{ "json", no_argument, NULL, 'j' },
		{ "lat-sample", required_argument, NULL, 'L' },
		{ "lat-compare", required_argument, NULL, 'A' },
		{ "ceph-conf", required_argument, NULL, 'C' },
		{ "ceph-id", required_argument, NULL, 'I' },
		{ "help", no_argument, NULL, 'h' },
		CLI_FAULT_LONGOPTS,
		{ NULL, 0, NULL, 0 },
	};
	struct bench_opts o = {
		.bo_pattern = P_RANDREAD, .bo_bs = 4096, .bo_threads = 1,
		.bo_qd = 1, .bo_seconds = 5, .bo_size = RUMPBLK_SIZENOTSET,
	};
	const struct cli_args ca = {
		.ca_name = "bench", .ca_opts = opts, .ca_usage = bench_usage,
		.ca_option = bench_option, .ca_ctx = &o,
		.ca_fault = &o.bo_fault,
		.ca_noperands = 1, .ca_operands = "one IMAGE",
	};
	struct rumpblk_config cfg;
	struct rumpblk_unitinfo ui;
	struct rusage ru0, ru1;
	struct ab ab;
	struct bench b;
	struct bthread *th = NULL;
	struct stat sb;
	uint64_t ops, t0 = 0, t1, last, threads, qd, bs;
	double el;
	const char *image;
	char **operands;
	bool tty = false, wr;
	uint64_t j;
	unsigned i, started = 0;
	int error, rc = 1;

	memset(&b, 0, sizeof(b));
	rumpblk_config_init(&o.bo_cfg);
	rumpblk_config_from_env(&o.bo_cfg, stderr);
	if (!cli_parse_args(&ca, argc, argv, &operands, &rc))
		return rc;
	image = operands[0];
	threads = o.bo_threads;
	qd = o.bo_qd;
	bs = o.bo_bs;
	b.b_pattern = o.bo_pattern;
	b.b_sync = o.bo_sync;
	wr = o.bo_pattern == P_RANDWRITE || o.bo_pattern == P_SEQWRITE;

	if (o.bo_lat_compare != 0) {
		const struct cli_fault_opts *fo = &o.bo_fault;

		/* Two instances alike but for their timing: nothing else. */
		if (qd != 1 || o.bo_lat_sample != 0 || cli_is_spec(image) ||
		    fo->fo_nrules != 0 || fo->fo_log != NULL ||
		    fo->fo_replay != NULL || fo->fo_control != NULL ||
		    fo->fo_wcache != 0 || fo->fo_wlog != NULL) {
			cli_err("--lat-compare: needs --qd 1 and a local IMAGE, "
			    "and takes no --lat-sample, fault, cache or log "
			    "option");
			rc = 2;
			goto free_opts;
		}
	}
	if (!cli_is_spec(image) && stat(image, &sb) == -1) {
		cli_err("%s: %s", image, strerror(errno));
		goto free_opts;
	}
	/* The CLI's windows cover the image unless the environment or a
	 * flag says otherwise (DESIGN.md §5).  cfg is the instance's; the
	 * options keep the backend asked for. */
	cfg = o.bo_cfg;
	if (!cli_is_spec(image))
		cli_default_windows(&cfg, image, o.bo_offset, o.bo_size,
		    o.bo_winsize, o.bo_wincount);
	cfg.sigbus_eio = true;
	cfg.lat_sample = (unsigned)o.bo_lat_sample;
	if (o.bo_lat_compare != 0) {
		/* The second instance samples; the first practically never
		 * (one request a slice, where a slice on the other resets
		 * the thread's countdown: 1 in 2000). */
		cfg.lat_sample = (unsigned)o.bo_lat_compare;
		if ((error = rumpblk_create(&cfg, &b.b_rb2)) != 0 ||
		    (error = rumpblk_register(b.b_rb2, image, o.bo_offset,
		    o.bo_size, &b.b_unit2)) != 0) {
			cli_err("%s: --lat-compare: %s", image,
			    strerror(error));
			goto destroy;
		}
		cfg.lat_sample = UINT32_MAX;
	}

	if ((error = rumpblk_create(&cfg, &b.b_rb)) != 0) {
		cli_err("bench: cannot create an instance: %s",
		    strerror(error));
		goto free_opts;
	}
	if (cli_is_spec(image)) {
		if (cli_register(b.b_rb, image, o.bo_offset, o.bo_size, !wr,
		    &o.bo_spec, &b.b_unit) != 0)
			goto destroy;
	} else if ((error = rumpblk_register(b.b_rb, image, o.bo_offset,
	    o.bo_size, &b.b_unit)) != 0) {
		if (error == EINVAL && (o.bo_offset != 0 ||
		    o.bo_size != RUMPBLK_SIZENOTSET))
			cli_err("%s: --offset %" PRIu64 " / --size do not fit "
			    "in the file, or it is not a file or device",
			    image, o.bo_offset);
		else
			cli_err("%s: %s", image, strerror(error));
		goto destroy;
	}
	rumpblk_unitinfo(b.b_rb, b.b_unit, &ui);
	if (wr && (ui.ui_mode & RUMPBLK_FWRITE) == 0) {
		cli_err("%s: opened read-only (no write permission); --pattern "
		    "%s would write to it", image, pattern_names[o.bo_pattern]);
		goto destroy;
	}
	if (bs % ui.ui_secsize != 0) {
		cli_err("--bs: %" PRIu64 " is not a multiple of the sector "
		    "size %u", bs, ui.ui_secsize);
		rc = 2;
		goto destroy;
	}
	/* Fault rules, log, replay and control socket, before any I/O. */
	o.bo_fault.fo_image = image;
	if ((error = cli_fault_start(&o.bo_fault, b.b_rb, b.b_unit,
	    stderr)) != 0) {
		rc = error;
		goto stop_faults;
	}
	if (bs > ui.ui_size) {
		cli_err("--bs: %" PRIu64 " is larger than the unit (%" PRIu64
		    " bytes of %s)", bs, ui.ui_size, image);
		rc = 2;
		goto stop_faults;
	}
	b.b_bs = (size_t)bs;
	b.b_qd = (unsigned)qd;
	b.b_threads = (unsigned)threads;
	b.b_nblocks = ui.ui_size / bs;

	if ((th = aligned_alloc(64, threads * sizeof(*th))) != NULL)
		memset(th, 0, threads * sizeof(*th));
	if (th == NULL) {
		cli_err("bench: out of memory");
		goto stop_faults;
	}
	for (i = 0; i < threads; i++) {
		struct bthread *t = &th[i];

		t->t_b = &b;
		t->t_id = i;
		t->t_rand = 0x9e3779b97f4a7c15ull * (i + 1) | 1;
		t->t_n = b.b_nblocks / threads;
		if (t->t_n == 0)
			t->t_n = 1;
		t->t_lo = (uint64_t)i * t->t_n % b.b_nblocks;
		if (t->t_lo + t->t_n > b.b_nblocks)
			t->t_n = b.b_nblocks - t->t_lo;
		pthread_mutex_init(&t->t_lock, NULL);
		pthread_cond_init(&t->t_cv, NULL);
		/* Cache-line aligned and padded: two threads' buffers on one
		 * line would bounce it on every request. */
		t->t_bufs = aligned_alloc(64, (qd * sizeof(*t->t_bufs) + 63) /
		    64 * 64);
		if (t->t_bufs != NULL)
			memset(t->t_bufs, 0, qd * sizeof(*t->t_bufs));
		t->t_mem = aligned_alloc(4096, (size_t)(qd * bs + 4095) /
		    4096 * 4096);
		if (t->t_bufs == NULL ||
		    t->t_mem == NULL) {
			cli_err("bench: out of memory for %" PRIu64 " x %"
			    PRIu64 " byte buffers", qd, bs);
			goto join;
		}
		for (j = 0; j < qd * bs; j++)
			t->t_mem[j] = (char)(j * 31 + i);
	}

	tty = isatty(STDERR_FILENO);
	getrusage(RUSAGE_SELF, &ru0);
	t0 = cli_clock_ns(CLOCK_MONOTONIC);
	for (i = 0; i < threads; i++) {
		if ((error = pthread_create(&th[i].t_thread, NULL,
		    bench_thread, &th[i])) != 0) {
			cli_err("bench: cannot start a thread: %s",
			    strerror(error));
			atomic_store(&b.b_stop, true);
			goto join;
		}
		started++;
	}
	last = t0;
	for (;;) {
		struct timespec ts = { 0, 100 * 1000 * 1000 };
		uint64_t now;

		nanosleep(&ts, NULL);
		now = cli_clock_ns(CLOCK_MONOTONIC);
		if (atomic_load(&b.b_stop) ||
		    (double)(now - t0) >= o.bo_seconds * 1e9)
			break;
		if (tty && now - last >= 500 * 1000 * 1000) {
			last = now;
			for (ops = 0, i = 0; i < threads; i++)
				ops += atomic_load(&th[i].t_ops);
			el = (double)(now - t0) / 1e9;
			fprintf(stderr, "\r%s %s: %.1f s, %" PRIu64 " ops, "
			    "%.0f IOPS, %.1f MiB/s   ",
			    rumpblk_backend_name(ui.ui_backend),
			    pattern_names[o.bo_pattern], el, ops,
			    (double)ops / el,
			    (double)ops * (double)bs / el / 1048576.0);
		}
	}
	atomic_store(&b.b_stop, true);
join:
	for (i = 0; i < started; i++)
		pthread_join(th[i].t_thread, NULL);
	t1 = cli_clock_ns(CLOCK_MONOTONIC);
	getrusage(RUSAGE_SELF, &ru1);
	if (tty && started > 0)
		fprintf(stderr, "\r%*s\r", 70, "");
	if (started < threads)
		goto free_threads;
	if ((error = atomic_load(&b.b_error)) != 0) {
		cli_err("%s: I/O error during the benchmark: %s", image,
		    strerror(error));
		goto free_threads;
	}

	for (ops = 0, i = 0; i < threads; i++)
		ops += atomic_load(&th[i].t_ops);
	el = (double)(t1 - t0) / 1e9;
	memset(&ab, 0, sizeof(ab));
	for (i = 0; i < threads; i++)
		for (j = 0; j < 2; j++) {
			ab.ab_ops[j] += th[i].t_ab_ops[j];
			ab.ab_wall_ns[j] += th[i].t_ab_wall_ns[j];
			ab.ab_cpu_ns[j] += th[i].t_ab_cpu_ns[j];
		}
	bench_report(&o, image, &b, &ui, ops, el, tv_s(&ru1.ru_utime) -
	    tv_s(&ru0.ru_utime) + tv_s(&ru1.ru_stime) - tv_s(&ru0.ru_stime),
	    b.b_rb2 != NULL ? &ab : NULL);
	rc = 0;
free_threads:
	for (i = 0; i < threads; i++) {
		free(th[i].t_bufs);
		free(th[i].t_mem);
		if (th[i].t_b != NULL) {
			pthread_mutex_destroy(&th[i].t_lock);
			pthread_cond_destroy(&th[i].t_cv);
		}
	}
	free(th);
stop_faults:
	cli_fault_stop(&o.bo_fault, b.b_rb);
destroy:
	if ((error = rumpblk_destroy(b.b_rb2)) != 0 && rc == 0) {
		cli_err("%s: cannot make written data durable: %s", image,
		    strerror(error));
		rc = 1;
	}
	if ((error = rumpblk_destroy(b.b_rb)) != 0 && rc == 0) {
		cli_err("%s: cannot make written data durable: %s", image,
		    strerror(error));
		rc = 1;
	}
free_opts:
	cli_fault_opts_free(&o.bo_fault);
	return rc;
}
