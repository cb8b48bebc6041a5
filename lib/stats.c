/*
 * Counters, latency records and latency histograms.
 *
 * Per-request accounting must cost little next to a 4 KiB copy from the
 * page cache (about 0.5 us with mmap here).  Three things keep it cheap:
 * counters are sharded by thread onto separate cache lines (no line
 * bounces between two submitting cores), a thread that owns its shard
 * updates it with plain relaxed loads and stores (no locked instruction;
 * internal.h), and the clock is read for one request in
 * rb_lat_sample per thread (64 by default), since two clock_gettime()
 * calls per request alone would cost several percent.  Latency counts are
 * exact; the sums, maximum and histograms describe the timed sample.
 *
 * The histograms (issue 17) are log-linear (struct rumpblk_hist): 242
 * buckets of 8 bytes, a unit's one per op and one per fault class, a
 * connection's one per op.  Measured here (bench/inproc.sh): two clock
 * reads are 60 ns, an eighth of a 4 KiB mmap read, so timing every
 * request of an in-process caller is out; timing one in 64 and adding
 * the sample to a histogram costs about 1 ns a request, inside the
 * noise.  What must be exact, then, is: every count (the shards'), and
 * every request of a front-end connection and every fault firing, which
 * are timed always, since a socket round trip or a firing's own work
 * dwarfs two clock reads.  So over NBD a histogram's count is the number
 * of requests; in process it is the sample, and h_timed says how many.
 * The histograms are shared, not sharded: they are written a sixty-
 * fourth as often as the counters, with atomic adds.
 *
 * Contents: shards; latency records and histograms; snapshots of
 * counters; histogram snapshots and arithmetic; in-flight gauge;
 * connection records.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "internal.h"

/* The public struct only grows into its reserved words: 1504 bytes since
 * the first release (faults_class took one of them for power-cut). */
_Static_assert(sizeof(struct rumpblk_stats) == 1504,
    "struct rumpblk_stats changed size");

_Thread_local unsigned rb_my_shard
    __attribute__((tls_model("initial-exec"))) = UINT32_MAX;

/* Which exclusive shards are taken; a bit per shard below SHARED. */
static pthread_mutex_t shard_lock = PTHREAD_MUTEX_INITIALIZER;
static uint32_t shard_taken;			/* shard_lock */
static pthread_key_t shard_key;
static pthread_once_t shard_once = PTHREAD_ONCE_INIT;
static bool shard_key_ok;

_Static_assert(RB_NSHARDS <= 32, "shard_taken is a 32-bit mask");

/* A thread that owned a shard exits: the next new thread may have it. */
static void
shard_release(void *arg)
{
	unsigned s = (unsigned)(uintptr_t)arg - 1;

	rb_mutex_lock(&shard_lock);
	shard_taken &= ~(1u << s);
	rb_mutex_unlock(&shard_lock);
	rb_my_shard = UINT32_MAX;
}

static void
shard_key_init(void)
{
	shard_key_ok = pthread_key_create(&shard_key, shard_release) == 0;
}

/*
 * First update by this thread: claim a free exclusive shard, or the
 * shared one.  The mutex orders the last writes of a shard's previous
 * owner before the first of its next.
 */
unsigned
rb_shard_claim(void)
{
	unsigned s = RB_SHARD_SHARED;

	pthread_once(&shard_once, shard_key_init);
	if (shard_key_ok) {
		rb_mutex_lock(&shard_lock);
		if (~shard_taken & ((1u << RB_SHARD_SHARED) - 1)) {
			s = (unsigned)__builtin_ctz(~shard_taken);
			if (pthread_setspecific(shard_key,
			    (void *)(uintptr_t)(s + 1)) == 0)
				shard_taken |= 1u << s;
			else
				s = RB_SHARD_SHARED;
		}
		rb_mutex_unlock(&shard_lock);
	}
	rb_my_shard = s;
	return s;
}

uint64_t
rb_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static size_t
lat_base(int op)
{
	switch (op) {
	case RUMPBLK_B_READ:	return RB_STAT(lat_read);
	case RUMPBLK_B_WRITE:	return RB_STAT(lat_write);
	case RUMPBLK_B_FLUSH:	return RB_STAT(lat_flush);
	default:		return 0;
	}
}


/* Add one timed latency to a histogram (and count it, with count). */
static void
hist_record(struct rb_hist *h, uint64_t ns, bool count)
{
	uint64_t cur;

	if (count)
		atomic_fetch_add_explicit(&h->h_count, 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&h->h_b[rb_hist_bucket(ns)], 1,
	    memory_order_relaxed);
	atomic_fetch_add_explicit(&h->h_sum, ns, memory_order_relaxed);
	cur = atomic_load_explicit(&h->h_max, memory_order_relaxed);
	while (ns > cur && !atomic_compare_exchange_weak_explicit(&h->h_max,
	    &cur, ns, memory_order_relaxed, memory_order_relaxed))
		;
}

/* Count one op; ns == UINT64_MAX means it was not timed. */
void
rb_stat_latency(struct rb_counters *cn, int op, uint64_t ns,
    struct rb_conn *cx)
{
	size_t base = lat_base(op);
	_Atomic uint64_t *w;
	uint64_t cur;
	unsigned b, s;

	if (ns != UINT64_MAX) {
		hist_record(&cn->cn_hist.hs_op[rb_op_index(op)], ns, false);
		if (cx != NULL)
			hist_record(&cx->cx_h[rb_op_index(op)], ns, true);
	}
	if (base == 0) {
		/* Trim, zero, extents: the count is a private shard word. */
		rb_stat_latency_count(cn, op);
		return;
	}
	s = rb_shard_index();
	w = &cn->cn_shard[s].sh_w[base];
	rb_stat_add_word(&w[RB_LAT_W(count)], s, 1);
	if (ns == UINT64_MAX)
		return;
	rb_stat_add_word(&w[RB_LAT_W(timed)], s, 1);
	rb_stat_add_word(&w[RB_LAT_W(total_ns)], s, ns);
	cur = atomic_load_explicit(&w[RB_LAT_W(max_ns)], memory_order_relaxed);
	while (ns > cur && !atomic_compare_exchange_weak_explicit(
	    &w[RB_LAT_W(max_ns)], &cur, ns, memory_order_relaxed,
	    memory_order_relaxed))
		;
	b = rb_lat_bucket(ns);
	rb_stat_add_word(&w[RB_LAT_W(hist) + b], s, 1);
}

void
rb_stat_fault_latency(struct rb_counters *cn, unsigned classes, uint64_t ns)
{
	struct rb_hist *h;
	unsigned c;

	for (c = 0; c < RUMPBLK_FAULT_NCLASS; c++) {
		if ((classes & (1u << c)) == 0)
			continue;
		h = &cn->cn_hist.hs_fault[c];
		if (ns == UINT64_MAX)
			atomic_fetch_add_explicit(&h->h_count, 1,
			    memory_order_relaxed);
		else
			hist_record(h, ns, true);
	}
}

static bool
is_max_word(size_t i)
{
	return i == RB_STAT(lat_read) + RB_LAT_W(max_ns) ||
	    i == RB_STAT(lat_write) + RB_LAT_W(max_ns) ||
	    i == RB_STAT(lat_flush) + RB_LAT_W(max_ns);
}

void
rb_stats_accumulate(struct rumpblk_stats *dst, const struct rumpblk_stats *src)
{
	uint64_t *d = (uint64_t *)dst;
	const uint64_t *s = (const uint64_t *)src;
	size_t i;

	for (i = 0; i < RB_NSTATWORDS; i++) {
		if (is_max_word(i))
			d[i] = s[i] > d[i] ? s[i] : d[i];
		else
			d[i] += s[i];
	}
}

void
rb_stats_snapshot(const struct rb_counters *cn, struct rumpblk_stats *st)
{
	uint64_t *d = (uint64_t *)st, v;
	size_t i, s;

	memset(st, 0, sizeof(*st));
	for (s = 0; s < RB_NSHARDS; s++)
		for (i = 0; i < RB_NSTATWORDS; i++) {
			v = atomic_load_explicit(&cn->cn_shard[s].sh_w[i],
			    memory_order_relaxed);
			if (is_max_word(i))
				d[i] = v > d[i] ? v : d[i];
			else
				d[i] += v;
		}
}

void
rumpblk_stats(struct rumpblk *rb, int unit, struct rumpblk_stats *st)
{
	struct rumpblk_stats us;
	struct rb_unit *u;
	unsigned i, ep;

	memset(st, 0, sizeof(*st));
	if (unit >= 0) {
		if ((u = rb_unit_hold(rb, unit, &ep)) != NULL) {
			rb_stats_snapshot(u->u_counters, st);
			rb_unit_rele(u, ep);
		}
		return;
	}
	rb_mutex_lock(&rb->rb_lock);
	*st = rb->rb_retired;
	rb_stats_snapshot(rb->rb_counters, &us);
	rb_stats_accumulate(st, &us);
	for (i = 0; i < rb->rb_cfg.max_units; i++) {
		u = &rb->rb_units[i];
		if ((atomic_load(&u->u_state) & RB_U_LIVE) == 0)
			continue;
		rb_stats_snapshot(u->u_counters, &us);
		rb_stats_accumulate(st, &us);
	}
	rb_mutex_unlock(&rb->rb_lock);
}

/* Histogram snapshots and arithmetic. */

unsigned
rumpblk_hist_bucket(uint64_t ns)
{
	return rb_hist_bucket(ns);
}

uint64_t
rumpblk_hist_bound(unsigned i)
{
	unsigned o, j;

	if (i == 0)
		return 1ull << RUMPBLK_HIST_MINSHIFT;
	if (i >= RUMPBLK_HIST_BUCKETS - 1)
		return UINT64_MAX;
	o = (i - 1) / RUMPBLK_HIST_SUB;
	j = (i - 1) % RUMPBLK_HIST_SUB;
	return (uint64_t)(RUMPBLK_HIST_SUB + j + 1) <<
	    (RUMPBLK_HIST_MINSHIFT + o - RUMPBLK_HIST_SUBBITS);
}

uint64_t
rumpblk_hist_quantile(const struct rumpblk_hist *h, double q)
{
	uint64_t t = 0, cum = 0, rank, lo, hi, top = 0;
	double v;
	unsigned i;

	for (i = 0; i < RUMPBLK_HIST_BUCKETS; i++)
		if (h->h_buckets[i] != 0) {
			t += h->h_buckets[i];
			top = i;
		}
	if (t == 0)
		return 0;
	/* The maximum: the exact one, else the top bucket's bound. */
	hi = h->h_max_ns != 0 ? h->h_max_ns : rumpblk_hist_bound(top);
	if (!(q < 1))
		return hi;
	if (!(q > 0))
		q = 0;
	v = q * (double)t;
	rank = (uint64_t)v;
	if ((double)rank < v)
		rank++;
	if (rank == 0)
		rank = 1;
	for (i = 0; i < RUMPBLK_HIST_BUCKETS; i++) {
		if (cum + h->h_buckets[i] < rank) {
			cum += h->h_buckets[i];
			continue;
		}
		lo = i == 0 ? 0 : rumpblk_hist_bound(i - 1);
		hi = rumpblk_hist_bound(i);
		if (h->h_max_ns != 0 && hi > h->h_max_ns)
			hi = h->h_max_ns > lo ? h->h_max_ns : lo;
		else if (hi == UINT64_MAX)
			hi = lo;
		/* The rank's midpoint, as if the bucket's latencies were
		 * spread evenly over it. */
		v = (double)lo + (double)(hi - lo) * ((double)(rank - cum) -
		    0.5) / (double)h->h_buckets[i];
		return (uint64_t)(v + 0.5);
	}
	return hi;
}

/* Add the counts of h into out (h_count too, with count). */
static void
hist_add(struct rumpblk_hist *out, const struct rb_hist *h, bool count)
{
	uint64_t v;
	unsigned i;

	if (count)
		out->h_count += atomic_load_explicit(&h->h_count,
		    memory_order_relaxed);
	out->h_sum_ns += atomic_load_explicit(&h->h_sum, memory_order_relaxed);
	v = atomic_load_explicit(&h->h_max, memory_order_relaxed);
	if (v > out->h_max_ns)
		out->h_max_ns = v;
	for (i = 0; i < RUMPBLK_HIST_BUCKETS; i++) {
		v = atomic_load_explicit(&h->h_b[i], memory_order_relaxed);
		out->h_buckets[i] += v;
		out->h_timed += v;
	}
}

/* Fold h into the (private) sum to, and zero h. */
static void
hist_fold(struct rb_hist *to, struct rb_hist *h, uint64_t count)
{
	uint64_t v, m;
	unsigned i;

	atomic_fetch_add_explicit(&to->h_count, count, memory_order_relaxed);
	atomic_fetch_add_explicit(&to->h_sum, atomic_load_explicit(&h->h_sum,
	    memory_order_relaxed), memory_order_relaxed);
	v = atomic_load_explicit(&h->h_max, memory_order_relaxed);
	m = atomic_load_explicit(&to->h_max, memory_order_relaxed);
	if (v > m)
		atomic_store_explicit(&to->h_max, v, memory_order_relaxed);
	for (i = 0; i < RUMPBLK_HIST_BUCKETS; i++)
		atomic_fetch_add_explicit(&to->h_b[i], atomic_load_explicit(
		    &h->h_b[i], memory_order_relaxed), memory_order_relaxed);
	memset(h, 0, sizeof(*h));
}

/* The exact count of op in a unit's shards. */
static uint64_t
op_count(const struct rb_counters *cn, int op)
{
	size_t w;
	uint64_t n = 0;
	unsigned s;

	switch (op) {
	case RUMPBLK_B_TRIM:	w = RB_W_TRIMDONE; break;
	case RUMPBLK_B_ZERO:	w = RB_W_ZERODONE; break;
	case RUMPBLK_B_EXTENTS:	w = RB_W_EXTDONE; break;
	default:		w = lat_base(op) + RB_LAT_W(count); break;
	}
	for (s = 0; s < RB_NSHARDS; s++)
		n += atomic_load_explicit(&cn->cn_shard[s].sh_w[w],
		    memory_order_relaxed);
	return n;
}

/* Is op one RUMPBLK_B_ op bit? */
static bool
op_valid(int op)
{
	return op > 0 && (op & (op - 1)) == 0 && (op & RUMPBLK_B_OPMASK) == op;
}

void
rb_counters_retire(struct rumpblk *rb, struct rb_counters *cn)
{
	struct rumpblk_stats st;
	struct rb_hists *to = &rb->rb_retired_hist;
	unsigned i;

	rb_stats_snapshot(cn, &st);
	rb_stats_accumulate(&rb->rb_retired, &st);
	for (i = 0; i < RB_NOPS; i++)
		hist_fold(&to->hs_op[i], &cn->cn_hist.hs_op[i],
		    op_count(cn, 1 << i));
	for (i = 0; i < RUMPBLK_FAULT_NCLASS; i++)
		hist_fold(&to->hs_fault[i], &cn->cn_hist.hs_fault[i],
		    atomic_load_explicit(&cn->cn_hist.hs_fault[i].h_count,
		    memory_order_relaxed));
	memset(cn, 0, sizeof(*cn));
}

/* The histogram at byte offset which of a struct rb_hists. */
static const struct rb_hist *
hist_at(const struct rb_hists *hs, size_t which)
{
	return (const struct rb_hist *)(const void *)((const char *)hs +
	    which);
}

/*
 * One histogram of a unit, or of the instance (unit -1): which picks it
 * out of a struct rb_hists; op (an op bit, or 0 for a fault class) says
 * where its count is.
 */
static int
hist_get(struct rumpblk *rb, int unit, int op, size_t which,
    struct rumpblk_hist *h)
{
	struct rb_unit *u;
	unsigned i, ep;

	memset(h, 0, sizeof(*h));
	if (unit >= 0) {
		if ((u = rb_unit_hold(rb, unit, &ep)) == NULL)
			return ENXIO;
		hist_add(h, hist_at(&u->u_counters->cn_hist, which), op == 0);
		if (op != 0)
			h->h_count = op_count(u->u_counters, op);
		rb_unit_rele(u, ep);
		return 0;
	}
	rb_mutex_lock(&rb->rb_lock);
	hist_add(h, hist_at(&rb->rb_retired_hist, which), true);
	for (i = 0; i < rb->rb_cfg.max_units; i++) {
		u = &rb->rb_units[i];
		if ((atomic_load(&u->u_state) & RB_U_LIVE) == 0)
			continue;
		hist_add(h, hist_at(&u->u_counters->cn_hist, which), op == 0);
		if (op != 0)
			h->h_count += op_count(u->u_counters, op);
	}
	rb_mutex_unlock(&rb->rb_lock);
	return 0;
}

int
rumpblk_hist_op(struct rumpblk *rb, int unit, int op, struct rumpblk_hist *h)
{
	if (!op_valid(op)) {
		memset(h, 0, sizeof(*h));
		return EINVAL;
	}
	return hist_get(rb, unit, op, offsetof(struct rb_hists, hs_op) +
	    rb_op_index(op) * sizeof(struct rb_hist), h);
}

int
rumpblk_hist_fault(struct rumpblk *rb, int unit, enum rumpblk_fault_class c,
    struct rumpblk_hist *h)
{
	if ((unsigned)c >= RUMPBLK_FAULT_NCLASS) {
		memset(h, 0, sizeof(*h));
		return EINVAL;
	}
	return hist_get(rb, unit, 0, offsetof(struct rb_hists, hs_fault) +
	    (unsigned)c * sizeof(struct rb_hist), h);
}

/* In-flight gauge. */

/* A held unit's references, less the caller's own: its requests. */
static uint64_t
unit_inflight(struct rb_unit *u)
{
	uint64_t n = 0;
	unsigned e, i;

	for (e = 0; e < 2; e++)
		for (i = 0; i < RB_NSHARDS; i++)
			n += atomic_load_explicit(RB_REF(u, e, i),
			    memory_order_relaxed);
	/* A counter may wrap ("negative" on one shard), and the sum, read
	 * one shard at a time, may see a release without its add. */
	return (int64_t)n <= 1 ? 0 : n - 1;
}

int
rumpblk_inflight(struct rumpblk *rb, int unit, uint64_t *np)
{
	struct rb_unit *u;
	unsigned i, ep;

	*np = 0;
	if (unit >= 0) {
		if ((u = rb_unit_hold(rb, unit, &ep)) == NULL)
			return ENXIO;
		*np = unit_inflight(u);
		rb_unit_rele(u, ep);
		return 0;
	}
	for (i = 0; i < rb->rb_cfg.max_units; i++)
		if ((u = rb_unit_hold(rb, (int)i, &ep)) != NULL) {
			*np += unit_inflight(u);
			rb_unit_rele(u, ep);
		}
	return 0;
}

/* Connection records. */

_Thread_local struct rb_conn *rb_my_conn
    __attribute__((tls_model("initial-exec")));
_Thread_local uint32_t rb_my_conn_gen
    __attribute__((tls_model("initial-exec")));

int
rb_stats_init(struct rumpblk *rb)
{
	return pthread_mutex_init(&rb->rb_histlock, NULL);
}

void
rb_stats_fini(struct rumpblk *rb)
{
	unsigned i;

	for (i = 0; i < rb->rb_nconns; i++)
		free(rb->rb_conns[i]);
	free(rb->rb_conns);
	pthread_mutex_destroy(&rb->rb_histlock);
}

/* Open record id, or NULL; rb_histlock held. */
static struct rb_conn *
conn_find_locked(struct rumpblk *rb, int id)
{
	rb_assert_held(&rb->rb_histlock);
	if (id < 0 || (unsigned)id >= rb->rb_nconns ||
	    rb->rb_conns[id] == NULL || !rb->rb_conns[id]->cx_open)
		return NULL;
	return rb->rb_conns[id];
}

int
rumpblk_conn_open(struct rumpblk *rb, int unit, const char *label, int *idp)
{
	struct rb_conn *cx = NULL, **nc;
	unsigned i, n;

	rb_mutex_lock(&rb->rb_histlock);
	for (i = 0; i < rb->rb_nconns; i++)
		if (rb->rb_conns[i] != NULL && !rb->rb_conns[i]->cx_open) {
			cx = rb->rb_conns[i];
			break;
		}
	if (cx == NULL) {
		for (i = 0; i < rb->rb_nconns; i++)
			if (rb->rb_conns[i] == NULL)
				break;
		if (i == rb->rb_nconns) {
			n = rb->rb_nconns ? rb->rb_nconns * 2 : 16;
			if (n > INT_MAX / 2 || (nc = realloc(rb->rb_conns,
			    n * sizeof(*nc))) == NULL)
				goto nomem;
			memset(nc + rb->rb_nconns, 0, (n - rb->rb_nconns) *
			    sizeof(*nc));
			rb->rb_conns = nc;
			rb->rb_nconns = n;
		}
		if ((cx = calloc(1, sizeof(*cx))) == NULL)
			goto nomem;
		cx->cx_rb = rb;
		cx->cx_id = (int)i;
		rb->rb_conns[i] = cx;
	}
	cx->cx_open = true;
	cx->cx_unit = unit;
	snprintf(cx->cx_label, sizeof(cx->cx_label), "%s",
	    label != NULL ? label : "");
	*idp = cx->cx_id;
	rb_mutex_unlock(&rb->rb_histlock);
	return 0;
nomem:
	rb_mutex_unlock(&rb->rb_histlock);
	return ENOMEM;
}

int
rumpblk_conn_bind(struct rumpblk *rb, int id)
{
	struct rb_conn *cx;

	if (id == -1) {
		rb_my_conn = NULL;
		return 0;
	}
	rb_mutex_lock(&rb->rb_histlock);
	if ((cx = conn_find_locked(rb, id)) != NULL) {
		rb_my_conn_gen = atomic_load(&cx->cx_gen);
		rb_my_conn = cx;
	}
	rb_mutex_unlock(&rb->rb_histlock);
	return cx != NULL ? 0 : ENOENT;
}

int
rumpblk_conn_close(struct rumpblk *rb, int id)
{
	struct rb_conn *cx;
	unsigned i;

	rb_mutex_lock(&rb->rb_histlock);
	if ((cx = conn_find_locked(rb, id)) == NULL) {
		rb_mutex_unlock(&rb->rb_histlock);
		return ENOENT;
	}
	atomic_fetch_add(&cx->cx_gen, 1);
	cx->cx_open = false;
	for (i = 0; i < RB_NOPS; i++)
		hist_fold(&rb->rb_conn_ended[i], &cx->cx_h[i],
		    atomic_load_explicit(&cx->cx_h[i].h_count,
		    memory_order_relaxed));
	if (rb_my_conn == cx)
		rb_my_conn = NULL;
	rb_mutex_unlock(&rb->rb_histlock);
	return 0;
}

int
rumpblk_conn_list(struct rumpblk *rb, struct rumpblk_conn_info *info,
    size_t max, size_t *countp)
{
	struct rb_conn *cx;
	size_t n = 0;
	unsigned i;

	rb_mutex_lock(&rb->rb_histlock);
	for (i = 0; i < rb->rb_nconns; i++) {
		if ((cx = rb->rb_conns[i]) == NULL || !cx->cx_open)
			continue;
		if (n < max) {
			memset(&info[n], 0, sizeof(info[n]));
			info[n].ci_id = cx->cx_id;
			info[n].ci_unit = cx->cx_unit;
			memcpy(info[n].ci_label, cx->cx_label,
			    sizeof(info[n].ci_label));
		}
		n++;
	}
	rb_mutex_unlock(&rb->rb_histlock);
	*countp = n;
	return 0;
}

int
rumpblk_conn_hist(struct rumpblk *rb, int id, int op, struct rumpblk_hist *h)
{
	struct rb_conn *cx;
	int error = 0;

	memset(h, 0, sizeof(*h));
	if (!op_valid(op))
		return EINVAL;
	rb_mutex_lock(&rb->rb_histlock);
	if (id == RUMPBLK_CONN_ENDED)
		hist_add(h, &rb->rb_conn_ended[rb_op_index(op)], true);
	else if ((cx = conn_find_locked(rb, id)) != NULL)
		hist_add(h, &cx->cx_h[rb_op_index(op)], true);
	else
		error = ENOENT;
	rb_mutex_unlock(&rb->rb_histlock);
	return error;
}
