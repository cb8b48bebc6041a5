/*
 * test-cache-powercut: the volatile write cache and power cuts
 * (issue #11), checked on the medium byte by byte (the host file, read
 * around rumpblk).
 *
 * The models are checked against a reference written here from their
 * description (librumpblk(3), WRITE CACHE AND POWER LOSS): every decision
 * is splitmix64's finaliser over (seed, unit, op, offset, length,
 * generation), and the reference replays the workload's unflushed writes
 * through those decisions into an image of its own, which must equal the
 * medium after the cut, byte for byte, with the same counts.
 */
#include <pthread.h>
#include <stdatomic.h>

#include "faultlib.h"

#define MB	(1u << 20)
#define SS	512u		/* the unit's sector size (tl_config) */
#define WA	(RUMPBLK_B_WRITE | RUMPBLK_B_ASYNC)

/* 1. The reference. */

static uint64_t
mix(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ull;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

static uint64_t
draw(uint64_t key, uint64_t salt)
{
	return mix(key ^ mix(salt));
}

enum { D_PERSIST = 1, D_TORN, D_CUT, D_ORDER, D_SECTOR };

/* A write the cache acknowledged and the reference remembers. */
struct rw {
	int		op;		/* RUMPBLK_B_WRITE, _ZERO, _TRIM */
	uint64_t	off, len, gen;
	unsigned char	*data;
};

struct ref {
	unsigned char	*img;		/* what the medium must hold */
	uint64_t	size;
	struct rw	w[256];		/* unflushed, in order */
	unsigned	n;
	/* generations: (op, first sector) -> count, a small list */
	uint64_t	gkey[1024], gcnt[1024];
	unsigned	ng;
};

static uint64_t
ref_gen(struct ref *r, int op, uint64_t off)
{
	uint64_t key = (off / SS) << 5 | (unsigned)op;

	for (unsigned i = 0; i < r->ng; i++)
		if (r->gkey[i] == key)
			return r->gcnt[i]++;
	assert(r->ng < 1024);
	r->gkey[r->ng] = key;
	r->gcnt[r->ng++] = 1;
	return 0;
}

static void
ref_apply(struct ref *r, const struct rw *w, uint64_t off, uint64_t len)
{
	if (w->op == RUMPBLK_B_WRITE)
		memcpy(r->img + off, w->data + (off - w->off), len);
	else if (w->op == RUMPBLK_B_ZERO)
		memset(r->img + off, 0, len);
	/* A trim on a file punches a hole: zeros too. */
	else
		memset(r->img + off, 0, len);
}

static void
ref_flush(struct ref *r)
{
	for (unsigned i = 0; i < r->n; i++) {
		ref_apply(r, &r->w[i], r->w[i].off, r->w[i].len);
		free(r->w[i].data);
	}
	r->n = 0;
}

static uint64_t
ref_key(const struct rw *w, int unit, uint64_t seed)
{
	return mix(seed ^ mix((uint64_t)unit ^ mix((uint64_t)w->op ^
	    mix(w->off ^ mix(w->len ^ mix(w->gen))))));
}

static struct rw *order_w;
static uint64_t *order_rank;

static int
order_cmp(const void *a, const void *b)
{
	unsigned x = *(const unsigned *)a, y = *(const unsigned *)b;

	if (order_rank[x] != order_rank[y])
		return order_rank[x] < order_rank[y] ? -1 : 1;
	return x < y ? -1 : 1;
}

/* The cut, as the description says; counts into pc. */
static void
ref_cut(struct ref *r, int unit, struct rumpblk_powercut *pc)
{
	unsigned idx[256], i, k;
	uint64_t rank[256], key, kept, n, atom, off, sl;

	memset(&pc->pc_unflushed, 0, 5 * sizeof(uint64_t));
	pc->pc_unflushed = r->n;
	for (i = 0; i < r->n; i++) {
		idx[i] = i;
		rank[i] = draw(ref_key(&r->w[i], unit, pc->pc_seed), D_ORDER);
	}
	if (pc->pc_model == RUMPBLK_PC_REORDER) {
		order_w = r->w;
		order_rank = rank;
		qsort(idx, r->n, sizeof(idx[0]), order_cmp);
	}
	for (k = 0; k < r->n; k++) {
		struct rw *w = &r->w[idx[k]];

		key = ref_key(w, unit, pc->pc_seed);
		kept = 0;
		switch (pc->pc_model) {
		case RUMPBLK_PC_KEEP:
			kept = w->len;
			break;
		case RUMPBLK_PC_SUBSET:
		case RUMPBLK_PC_REORDER:
			kept = draw(key, D_PERSIST) & 1 ? w->len : 0;
			break;
		case RUMPBLK_PC_TORN:
			if ((draw(key, D_PERSIST) & 1) == 0)
				break;
			kept = w->len;
			atom = pc->pc_atom ? pc->pc_atom : SS;
			n = (w->len + atom - 1) / atom;
			if (n >= 2 && (draw(key, D_TORN) & 1))
				kept = (1 + draw(key, D_CUT) % (n - 1)) * atom;
			break;
		case RUMPBLK_PC_SECTORS:
			for (i = 0, off = w->off; off < w->off + w->len;
			    i++, off += SS) {
				sl = w->off + w->len - off < SS ?
				    w->off + w->len - off : SS;
				if (draw(key, D_SECTOR + i) & 1) {
					kept += sl;
					ref_apply(r, w, off, sl);
				}
			}
			break;
		default:
			break;
		}
		if (kept == w->len)
			pc->pc_persisted++;
		else if (kept == 0)
			pc->pc_lost++;
		else
			pc->pc_torn++;
		pc->pc_bytes_lost += w->len - kept;
		if (kept != 0 && pc->pc_model != RUMPBLK_PC_SECTORS)
			ref_apply(r, w, w->off, kept);
	}
	for (i = 0; i < r->n; i++)
		free(r->w[i].data);
	r->n = 0;
}

/* 2. The environment: a unit with a cache, and the reference beside. */

struct env {
	struct fl_env	fl;
	struct ref	ref;
};

static void
env_open(struct env *e, const char *name, uint64_t cache)
{
	fl_open(&e->fl, name, MB, 5);
	memset(&e->ref, 0, sizeof(e->ref));
	e->ref.size = MB;
	e->ref.img = malloc(MB);
	fl_medium(&e->fl, 0, e->ref.img, MB);
	tl_eq(rumpblk_write_cache(e->fl.rb, e->fl.unit, cache), 0);
}

static void
env_close(struct env *e)
{
	for (unsigned i = 0; i < e->ref.n; i++)
		free(e->ref.w[i].data);
	free(e->ref.img);
	fl_close(&e->fl);
}

/* An asynchronous (cached) write of byte c, or a zero or trim. */
static void
env_write(struct env *e, int op, uint64_t off, uint64_t len, int c)
{
	struct rw *w = &e->ref.w[e->ref.n++];
	unsigned char *buf = NULL;

	assert(e->ref.n <= 256);
	w->op = op;
	w->off = off;
	w->len = len;
	w->gen = ref_gen(&e->ref, op, off);
	w->data = NULL;
	if (op == RUMPBLK_B_WRITE) {
		buf = malloc(len);
		for (uint64_t i = 0; i < len; i++)
			buf[i] = (unsigned char)(c + i / SS);
		w->data = buf;
	}
	tl_eq(fl_io(&e->fl, op | RUMPBLK_B_ASYNC, off, buf, len, NULL), 0);
}

static void
env_flush(struct env *e)
{
	tl_eq(fl_io(&e->fl, RUMPBLK_B_FLUSH, 0, NULL, 0, NULL), 0);
	ref_flush(&e->ref);
}

static void
env_check_medium(struct env *e, const char *what)
{
	unsigned char *m = malloc(MB);

	fl_medium(&e->fl, 0, m, MB);
	for (uint64_t i = 0; i < MB; i++)
		if (m[i] != e->ref.img[i])
			tl_fail("%s: medium byte %llu is %u, want %u\n", what,
			    (unsigned long long)i, m[i], e->ref.img[i]);
	free(m);
}

/* A workload with overlapping writes in one epoch, and zeros and trims. */
static void
workload(struct env *e)
{
	env_write(e, RUMPBLK_B_WRITE, 0, 8192, 1);
	env_write(e, RUMPBLK_B_WRITE, 65536, 4096, 2);
	env_flush(e);
	env_write(e, RUMPBLK_B_WRITE, 4096, 8192, 10);	/* over the first */
	env_write(e, RUMPBLK_B_WRITE, 6144, 1024, 20);	/* inside that */
	env_write(e, RUMPBLK_B_ZERO, 65536 + 512, 1024, 0);
	env_write(e, RUMPBLK_B_TRIM, 131072, 4096, 0);
	for (int i = 0; i < 24; i++)
		env_write(e, RUMPBLK_B_WRITE, (uint64_t)(i % 7) * 3072 + 200704,
		    (uint64_t)(1 + i % 5) * 2048, 40 + i * 3);
	/* The same place twice: generation 1. */
	env_write(e, RUMPBLK_B_WRITE, 4096, 8192, 200);
}

/* 3. The tests. */

/* Reads see the cache; the medium sees nothing before FLUSH. */
static void
read_your_writes(void **state)
{
	struct env e;
	struct rumpblk_cache_stats cs;
	unsigned char buf[16384], want[16384];

	(void)state;
	env_open(&e, "cache-ryw.img", MB);
	workload(&e);
	/* Reads through the cache: what the reference would hold with
	 * every write applied. */
	memcpy(want, e.ref.img, sizeof(want));
	{
		struct ref keep = e.ref;	/* shallow: apply to a copy */
		unsigned char *img = malloc(MB);

		memcpy(img, e.ref.img, MB);
		keep.img = img;
		for (unsigned i = 0; i < keep.n; i++)
			ref_apply(&keep, &keep.w[i], keep.w[i].off,
			    keep.w[i].len);
		for (uint64_t off = 0; off < 262144; off += sizeof(buf)) {
			tl_eq(fl_io(&e.fl, RUMPBLK_B_READ, off, buf,
			    sizeof(buf), NULL), 0);
			if (memcmp(buf, img + off, sizeof(buf)) != 0)
				tl_fail("read at %llu differs from the "
				    "cached writes\n", (unsigned long long)off);
		}
		/* A read partly cached, partly not (unaligned to extents). */
		tl_eq(fl_io(&e.fl, RUMPBLK_B_READ, 3584, buf, 9216, NULL), 0);
		tl_eq(memcmp(buf, img + 3584, 9216), 0);
		free(img);
	}
	(void)want;
	env_check_medium(&e, "before FLUSH");	/* only the first epoch */
	tl_eq(rumpblk_cache_stats(e.fl.rb, e.fl.unit, &cs), 0);
	tl_eq(cs.cs_dirty_writes, e.ref.n);
	tl_eq(cs.cs_flushes, 1);
	env_flush(&e);
	env_check_medium(&e, "after FLUSH");
	tl_eq(rumpblk_cache_stats(e.fl.rb, e.fl.unit, &cs), 0);
	tl_eq(cs.cs_dirty_writes, 0);
	tl_eq(cs.cs_dirty_bytes, 0);
	tl_eq(cs.cs_bytes_durable, cs.cs_bytes_written);
	tl_eq(cs.cs_durable_lat.count, 31);
	env_close(&e);
}

/* Every model, two seeds, against the reference, byte for byte. */
static void
models(void **state)
{
	struct rumpblk_powercut pc, want;
	struct env e;
	char name[64];

	(void)state;
	for (int m = 0; m < RUMPBLK_PC_NMODEL; m++) {
		for (uint64_t seed = 1; seed <= 2; seed++) {
			snprintf(name, sizeof(name), "cache-model-%d.img", m);
			env_open(&e, name, MB);
			workload(&e);
			rumpblk_powercut_init(e.fl.rb, &pc);
			pc.pc_model = (enum rumpblk_pcmodel)m;
			pc.pc_seed = seed;
			if (m == RUMPBLK_PC_TORN && seed == 2)
				pc.pc_atom = 1024;
			want = pc;
			tl_eq(rumpblk_power_cut(e.fl.rb, e.fl.unit, &pc), 0);
			ref_cut(&e.ref, e.fl.unit, &want);
			snprintf(name, sizeof(name), "model %s seed %llu",
			    rumpblk_pcmodel_name(pc.pc_model),
			    (unsigned long long)seed);
			env_check_medium(&e, name);
			tl_eq(pc.pc_unflushed, 29);
			tl_eq(pc.pc_persisted, want.pc_persisted);
			tl_eq(pc.pc_lost, want.pc_lost);
			tl_eq(pc.pc_torn, want.pc_torn);
			tl_eq(pc.pc_bytes_lost, want.pc_bytes_lost);
			if (m == RUMPBLK_PC_SUBSET || m == RUMPBLK_PC_SECTORS ||
			    m == RUMPBLK_PC_REORDER)
				tl_true(pc.pc_persisted + pc.pc_torn > 0 &&
				    (pc.pc_lost > 0 || pc.pc_torn > 0));
			if (m == RUMPBLK_PC_TORN && seed == 2)
				tl_true(pc.pc_torn > 0);
			/* The cache is empty: the unit serves the medium. */
			{
				unsigned char buf[8192];

				tl_eq(fl_io(&e.fl, RUMPBLK_B_READ, 0, buf,
				    sizeof(buf), NULL), 0);
				tl_eq(memcmp(buf, e.ref.img, sizeof(buf)), 0);
			}
			/* The fault log has the cut and what it did. */
			tl_true(strstr(fl_log(&e.fl),
			    "\"class\":\"power-cut\"") != NULL);
			tl_eq(fl_log_int(&e.fl, 0, "persisted"),
			    (long long)pc.pc_persisted);
			env_close(&e);
		}
	}
}

/* A FUA write is durable when acknowledged, and so is all before it. */
static void
fua(void **state)
{
	struct rumpblk_cache_stats cs;
	struct rumpblk_powercut pc;
	struct env e;
	unsigned char buf[4096];

	(void)state;
	env_open(&e, "cache-fua.img", MB);
	env_write(&e, RUMPBLK_B_WRITE, 0, 4096, 3);
	memset(buf, 0x77, sizeof(buf));
	tl_eq(fl_io(&e.fl, WA | RUMPBLK_B_FUA, 8192, buf, 4096, NULL), 0);
	ref_flush(&e.ref);
	memcpy(e.ref.img + 8192, buf, 4096);
	env_check_medium(&e, "after FUA");
	/* A synchronous write is durable at completion too. */
	memset(buf, 0x66, sizeof(buf));
	tl_eq(fl_io(&e.fl, RUMPBLK_B_WRITE, 16384, buf, 4096, NULL), 0);
	memcpy(e.ref.img + 16384, buf, 4096);
	ref_gen(&e.ref, RUMPBLK_B_WRITE, 8192);
	ref_gen(&e.ref, RUMPBLK_B_WRITE, 16384);
	env_write(&e, RUMPBLK_B_WRITE, 32768, 4096, 9);
	rumpblk_powercut_init(e.fl.rb, &pc);		/* lose */
	tl_eq(rumpblk_power_cut(e.fl.rb, e.fl.unit, &pc), 0);
	tl_eq(pc.pc_unflushed, 1);
	tl_eq(pc.pc_lost, 1);
	ref_cut(&e.ref, e.fl.unit, &pc);
	env_check_medium(&e, "FUA, then lose");
	/* The most ever dirty: one 4 KiB write.  The FUA and synchronous
	 * writes were never dirty (durable when acknowledged). */
	tl_eq(rumpblk_cache_stats(e.fl.rb, e.fl.unit, &cs), 0);
	tl_eq(cs.cs_dirty_max, 4096);
	env_close(&e);
}

/*
 * A small cache destages its oldest writes, in order: when a write does
 * not fit, until it fits and a batch more, a quarter of the ring's
 * largest write (the documented policy, simulated here: a 64 KiB cache's
 * ring takes 8 KiB, so a 2 KiB batch: one 8 KiB write more).
 */
static void
destage(void **state)
{
	struct rumpblk_cache_stats cs;
	struct rumpblk_powercut pc;
	struct env e;
	uint64_t size = 64 * 1024, step = size / 8 / 4, held = 0;
	unsigned i, first = 0, nd = 0;

	(void)state;
	env_open(&e, "cache-destage.img", size);
	for (i = 0; i < 40; i++) {
		env_write(&e, RUMPBLK_B_WRITE, (uint64_t)(i % 30) * 8192,
		    8192, (int)i);
		if (held + 8192 > size)
			for (; held > size - 8192 - step; held -= 8192, nd++)
				first++;
		held += 8192;
	}
	tl_eq(rumpblk_cache_stats(e.fl.rb, e.fl.unit, &cs), 0);
	tl_eq(cs.cs_dirty_writes, 40 - first);
	tl_eq(cs.cs_dirty_bytes, held);
	tl_eq(cs.cs_destaged, nd);
	tl_eq(cs.cs_dirty_max, size);
	tl_true(first > 8);
	for (i = 0; i < first; i++)
		ref_apply(&e.ref, &e.ref.w[i], e.ref.w[i].off,
		    e.ref.w[i].len);
	for (i = 0; i < first; i++)
		free(e.ref.w[i].data);
	memmove(e.ref.w, e.ref.w + first, (40 - first) * sizeof(e.ref.w[0]));
	e.ref.n = 40 - first;
	/* Decided durable: on the medium by the time a cut resolves the
	 * rest (the destager writes them meanwhile). */
	rumpblk_powercut_init(e.fl.rb, &pc);
	pc.pc_model = RUMPBLK_PC_SUBSET;
	pc.pc_seed = 9;
	tl_eq(rumpblk_power_cut(e.fl.rb, e.fl.unit, &pc), 0);
	{
		struct rumpblk_powercut want = pc;

		ref_cut(&e.ref, e.fl.unit, &want);
		tl_eq(pc.pc_persisted, want.pc_persisted);
	}
	env_check_medium(&e, "destaged, then subset");
	env_close(&e);
}

/*
 * The data ring: a small cache (its ring takes writes of up to 8 KiB;
 * larger ones live on the heap) goes round many times with writes of
 * mixed sizes, reads see the newest data all along, and a cut that keeps
 * everything leaves every write on the medium in order.
 */
static void
ring(void **state)
{
	static const uint64_t lens[] = { 512, 1536, 4096, 7680, 8192, 12288,
	    1024, 16384 };
	struct rumpblk_cache_stats cs;
	struct rumpblk_powercut pc;
	struct env e;
	unsigned char *img = malloc(MB), *buf = malloc(262144);
	unsigned char wbuf[16384];
	uint64_t x = 7, off, len;

	(void)state;
	env_open(&e, "cache-ring.img", 64 * 1024);
	memcpy(img, e.ref.img, MB);
	for (unsigned i = 0; i < 2000; i++) {
		x = mix(x);
		len = lens[x % 8];
		off = (x >> 8) % ((262144 - len) / SS) * SS;
		for (uint64_t j = 0; j < len; j++)
			wbuf[j] = (unsigned char)(i * 7 + j / SS);
		tl_eq(fl_io(&e.fl, WA, off, wbuf, len, NULL), 0);
		memcpy(img + off, wbuf, len);
		if (i % 97 == 0) {
			tl_eq(fl_io(&e.fl, RUMPBLK_B_READ, 0, buf, 262144,
			    NULL), 0);
			if (memcmp(buf, img, 262144) != 0)
				tl_fail("after write %u a read differs\n", i);
		}
	}
	tl_eq(rumpblk_cache_stats(e.fl.rb, e.fl.unit, &cs), 0);
	tl_true(cs.cs_destaged > 100);
	tl_true(cs.cs_dirty_max <= 64 * 1024);
	rumpblk_powercut_init(e.fl.rb, &pc);
	pc.pc_model = RUMPBLK_PC_KEEP;
	tl_eq(rumpblk_power_cut(e.fl.rb, e.fl.unit, &pc), 0);
	memcpy(e.ref.img, img, MB);
	env_check_medium(&e, "the ring, kept");
	free(img);
	free(buf);
	env_close(&e);
}

/* The request that fires a power-cut rule is in flight at the cut. */
static void
rule_in_flight(void **state)
{
	struct rumpblk_stats st;
	struct env e;
	unsigned char buf[4096];
	char err[256] = "", id[RUMPBLK_FAULT_IDMAX];

	(void)state;
	for (int keep = 0; keep < 2; keep++) {
		env_open(&e, "cache-rule.img", MB);
		tl_eq(rumpblk_fault_add(e.fl.rb, keep ?
		    "power-cut,op=write,nth=3,model=keep" :
		    "power-cut,op=write,nth=3", id, sizeof(id), err,
		    sizeof(err)), 0);
		env_write(&e, RUMPBLK_B_WRITE, 0, 4096, 1);
		env_write(&e, RUMPBLK_B_WRITE, 4096, 4096, 2);
		memset(buf, 0x33, sizeof(buf));
		/* The third write fires: no success for it. */
		tl_eq(fl_io(&e.fl, WA, 8192, buf, 4096, NULL), EIO);
		if (keep) {
			ref_flush(&e.ref);
			memcpy(e.ref.img + 8192, buf, 4096);
		} else {
			for (unsigned i = 0; i < e.ref.n; i++)
				free(e.ref.w[i].data);
			e.ref.n = 0;
		}
		env_check_medium(&e, keep ? "in flight, keep" :
		    "in flight, lose");
		tl_eq(fl_log_int(&e.fl, 0, "unflushed"), 3);
		tl_eq(fl_log_int(&e.fl, 0, "generation"), 0);
		tl_true(strstr(fl_log(&e.fl), "\"rule\":\"r1\"") != NULL);
		rumpblk_stats(e.fl.rb, e.fl.unit, &st);
		tl_eq(st.faults_class[RUMPBLK_FAULT_POWERCUT], 1);
		/* The unit goes on: a write after the cut works. */
		tl_eq(fl_io(&e.fl, WA, 8192, buf, 4096, NULL), 0);
		env_close(&e);
	}
}

/* The same rule and seed twice, and a replay of the log: one medium. */
static void
replay(void **state)
{
	unsigned char *img[3];
	char *log0 = NULL;
	struct env e;
	char err[256] = "", id[RUMPBLK_FAULT_IDMAX];
	FILE *f;

	(void)state;
	for (int run = 0; run < 3; run++) {
		env_open(&e, "cache-replay.img", MB);
		if (run < 2) {
			tl_eq(rumpblk_fault_add(e.fl.rb, "power-cut,op=write,"
			    "nth=20,model=reorder,seed=7", id, sizeof(id), err,
			    sizeof(err)), 0);
		} else {
			f = fmemopen(log0, strlen(log0), "r");
			tl_eq(rumpblk_fault_replay(e.fl.rb, f, err,
			    sizeof(err)), 0);
			fclose(f);
		}
		for (int i = 0; i < 30; i++) {
			unsigned char buf[8192];
			int error;

			memset(buf, 10 + i, sizeof(buf));
			error = fl_io(&e.fl, WA, (uint64_t)(i % 9) * 4096, buf,
			    (uint64_t)(1 + i % 2) * 4096, NULL);
			tl_eq(error, i == 19 ? EIO : 0);
			if (i == 7)
				tl_eq(fl_io(&e.fl, RUMPBLK_B_FLUSH, 0, NULL,
				    0, NULL), 0);
		}
		tl_eq(fl_io(&e.fl, RUMPBLK_B_FLUSH, 0, NULL, 0, NULL), 0);
		img[run] = malloc(MB);
		fl_medium(&e.fl, 0, img[run], MB);
		if (run == 0)
			log0 = strdup(fl_log(&e.fl));
		else
			tl_eq(strcmp(fl_log(&e.fl), log0), 0);
		env_close(&e);
	}
	tl_eq(memcmp(img[0], img[1], MB), 0);
	tl_eq(memcmp(img[0], img[2], MB), 0);
	for (int run = 0; run < 3; run++)
		free(img[run]);
	free(log0);
}

/* A flush racing writes: everything acknowledged before it is durable. */
struct racer {
	struct env	*e;
	_Atomic unsigned acked;		/* writes 0..acked-1 are done */
	_Atomic bool	stop;
	int		error;		/* the writer's first error */
};

static void *
race_writer(void *arg)
{
	struct racer *r = arg;
	unsigned char buf[4096];

	for (unsigned i = 0; i < 200 && !atomic_load(&r->stop); i++) {
		memset(buf, (int)(i % 250) + 1, sizeof(buf));
		/* No cmocka calls off the main thread: note and stop. */
		if ((r->error = fl_io(&r->e->fl, WA, (uint64_t)i * 4096, buf,
		    4096, NULL)) != 0)
			break;
		atomic_store(&r->acked, i + 1);
	}
	return NULL;
}

static void
flush_race(void **state)
{
	struct racer r = { 0 };
	struct env e;
	pthread_t t;
	unsigned char buf[4096];
	unsigned n;

	(void)state;
	env_open(&e, "cache-race.img", MB);
	r.e = &e;
	tl_eq(pthread_create(&t, NULL, race_writer, &r), 0);
	for (int k = 0; k < 20; k++) {
		n = atomic_load(&r.acked);
		tl_eq(fl_io(&e.fl, RUMPBLK_B_FLUSH, 0, NULL, 0, NULL), 0);
		for (unsigned i = 0; i < n; i++) {
			fl_medium(&e.fl, (uint64_t)i * 4096, buf, 4096);
			if (!fl_is_byte(buf, 4096, (unsigned char)(i % 250 + 1)))
				tl_fail("flush %d: write %u (of %u acked "
				    "before it) is not on the medium\n", k, i,
				    n);
		}
	}
	atomic_store(&r.stop, true);
	tl_eq(pthread_join(t, NULL), 0);
	tl_eq(r.error, 0);
	env_close(&e);
}

/* Bad input is refused, naming what is wrong; nothing changes. */
static void
refusals(void **state)
{
	struct rumpblk_powercut pc;
	struct fl_env e;
	char err[256] = "", id[RUMPBLK_FAULT_IDMAX];

	(void)state;
	fl_open(&e, "cache-refuse.img", MB, 5);
	rumpblk_powercut_init(e.rb, &pc);
	tl_eq(rumpblk_power_cut(e.rb, e.unit, &pc), ENOTSUP);
	tl_eq(rumpblk_fault_add(e.rb, "power-cut,op=write,nth=2", id,
	    sizeof(id), err, sizeof(err)), ENOTSUP);
	tl_true(strstr(err, "--write-cache") != NULL);
	tl_eq(rumpblk_write_cache(e.rb, e.unit, 0), EINVAL);
	tl_eq(rumpblk_write_cache(e.rb, e.unit, 4096), EINVAL);
	tl_eq(rumpblk_write_cache(e.rb, 7, MB), ENXIO);
	tl_eq(rumpblk_write_cache(e.rb, e.unit, MB), 0);
	tl_eq(rumpblk_write_cache(e.rb, e.unit, MB), EBUSY);
	tl_eq(rumpblk_fault_check("power-cut,model=melt", err, sizeof(err)),
	    EINVAL);
	tl_true(strstr(err, "model") != NULL && strstr(err, "melt") != NULL);
	tl_eq(rumpblk_fault_check("power-cut,model=torn,atom=100", err,
	    sizeof(err)), EINVAL);
	tl_true(strstr(err, "atom") != NULL);
	tl_eq(rumpblk_fault_check("power-cut,model=subset,atom=4096", err,
	    sizeof(err)), EINVAL);
	tl_eq(rumpblk_fault_check("power-cut,op=write,nth=500,model=subset,"
	    "seed=7", err, sizeof(err)), 0);
	tl_eq(rumpblk_powercut_parse("model=fry", &pc, err, sizeof(err)),
	    EINVAL);
	tl_true(strstr(err, "fry") != NULL);
	tl_eq(rumpblk_powercut_parse("model=torn,atom=1000", &pc, err,
	    sizeof(err)), EINVAL);
	tl_eq(rumpblk_powercut_parse("seed=x", &pc, err, sizeof(err)),
	    EINVAL);
	tl_eq(rumpblk_powercut_parse("volts=3", &pc, err, sizeof(err)),
	    EINVAL);
	rumpblk_powercut_init(e.rb, &pc);
	tl_eq(rumpblk_powercut_parse("model=torn,seed=5,atom=4096", &pc, err,
	    sizeof(err)), 0);
	tl_eq(pc.pc_model, RUMPBLK_PC_TORN);
	tl_eq(pc.pc_seed, 5);
	tl_eq(pc.pc_atom, 4096);
	fl_close(&e);
}

/* The cut raises the unit-reset event, once. */
static void
on_event(void *arg, int unit, int event)
{
	if (event == RUMPBLK_EVENT_RESET && unit == 0)
		(*(int *)arg)++;
}

static void
event(void **state)
{
	struct rumpblk_powercut pc;
	struct env e;
	int n = 0, id;

	(void)state;
	env_open(&e, "cache-event.img", MB);
	tl_eq(rumpblk_event_subscribe(e.fl.rb, on_event, &n, &id), 0);
	env_write(&e, RUMPBLK_B_WRITE, 0, 4096, 1);
	rumpblk_powercut_init(e.fl.rb, &pc);
	tl_eq(rumpblk_power_cut(e.fl.rb, e.fl.unit, &pc), 0);
	tl_eq(n, 1);
	tl_eq(rumpblk_event_unsubscribe(e.fl.rb, id), 0);
	env_close(&e);
}

/* A cut of one unit leaves another unit of the instance alone. */
static void
other_unit(void **state)
{
	struct rumpblk_cache_stats cs;
	struct rumpblk_powercut pc;
	struct env e;
	unsigned char buf[4096], got[4096];
	char *img2 = tl_image("cache-other.img", MB, 6);
	int u2;

	(void)state;
	env_open(&e, "cache-other0.img", MB);
	u2 = tl_register(e.fl.rb, img2, 0, RUMPBLK_SIZENOTSET);
	tl_eq(rumpblk_write_cache(e.fl.rb, u2, MB), 0);
	env_write(&e, RUMPBLK_B_WRITE, 0, 4096, 1);
	memset(buf, 0x5c, sizeof(buf));
	tl_eq(tl_io(e.fl.rb, u2, WA, 8, buf, sizeof(buf), NULL), 0);
	rumpblk_powercut_init(e.fl.rb, &pc);
	tl_eq(rumpblk_power_cut(e.fl.rb, e.fl.unit, &pc), 0);
	tl_eq(pc.pc_unflushed, 1);
	ref_cut(&e.ref, e.fl.unit, &pc);
	env_check_medium(&e, "the unit cut");
	/* The other unit still has its write, cached, and keeps it. */
	tl_eq(rumpblk_cache_stats(e.fl.rb, u2, &cs), 0);
	tl_eq(cs.cs_dirty_writes, 1);
	tl_eq(cs.cs_power_cuts, 0);
	tl_eq(tl_io(e.fl.rb, u2, RUMPBLK_B_READ, 8, got, sizeof(got), NULL), 0);
	tl_eq(memcmp(got, buf, sizeof(buf)), 0);
	tl_eq(tl_io(e.fl.rb, u2, RUMPBLK_B_FLUSH, 0, NULL, 0, NULL), 0);
	tl_host_read(img2, got, sizeof(got), 4096);
	tl_eq(memcmp(got, buf, sizeof(buf)), 0);
	env_close(&e);
	unlink(img2);
	free(img2);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(read_your_writes),
		cmocka_unit_test(models),
		cmocka_unit_test(fua),
		cmocka_unit_test(destage),
		cmocka_unit_test(ring),
		cmocka_unit_test(rule_in_flight),
		cmocka_unit_test(replay),
		cmocka_unit_test(flush_race),
		cmocka_unit_test(refusals),
		cmocka_unit_test(event),
		cmocka_unit_test(other_unit),
	};

	return tl_main(tests, NULL, NULL);
}
