/*
 * Counters and latency records.
 *
 * Per-request accounting must cost little next to a 4 KiB copy from the
 * page cache (about 0.6 us here).  Three things keep it cheap: counters
 * are sharded by thread onto separate cache lines (no line bounces between
 * two submitting cores), a thread that owns its shard updates it with
 * plain relaxed loads and stores (no locked instruction; internal.h), and
 * the clock is read for one request in
 * rb_lat_sample per thread (64 by default), since two clock_gettime()
 * calls per request alone would cost several percent.  Latency counts are
 * exact; the sums, maximum and histogram describe the timed sample.
 */
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


/* Count one op; ns == UINT64_MAX means it was not timed. */
void
rb_stat_latency(struct rb_counters *cn, int op, uint64_t ns)
{
	size_t base = lat_base(op);
	_Atomic uint64_t *w;
	uint64_t cur;
	unsigned b, s;

	if (base == 0)
		return;
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
