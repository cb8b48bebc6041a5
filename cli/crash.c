/*
 * Crash states of a recorded run (crash.h says what they are).
 *
 * Contents:
 *   1. reading the log: epochs, the sectors they touch, their content
 *   2. the durable prefix and the identity of a state
 *   3. the models: counting and generating states
 *   4. building a state onto a unit
 *
 * Identity: a state's hash is the sum, over the sectors whose content
 * differs from the base, of a mix of (sector, hash of its content):
 * additive, so a state is hashed in the time of what it changes over the
 * durable prefix (whose sum is kept as epochs become durable), and two
 * states with the same bytes have the same sum however they were made.
 * Content hashes are rb_hash128 of a sector (lib/log/hash.c).
 *
 * Memory: per sector the log touches, 48 bytes in the prefix table; per
 * sector of each epoch's writes, 16 bytes of content hash.  The data
 * stays in the log file and is read when a state is built.
 */
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "crash.h"
#include "hash.h"

/* The prefix table: sector -> its base content, its durable content. */
struct pslot {
	uint64_t	ps_key;		/* sector + 1; 0: empty */
	struct h128	ps_base;
	struct h128	ps_pre;
	uint64_t	ps_src;		/* durable content: log data offset;
					 * 0 zeroes; PS_BASE the base's */
};
#define PS_BASE	UINT64_MAX

/* A run of the durable prefix to build: ns sectors from src (or zeroes). */
struct prun {
	uint64_t	r_sector;
	uint64_t	r_ns;
	uint64_t	r_src;		/* 0: zeroes */
};

struct cc_run {
	struct logfile	*r_lf;
	int		r_logfd;	/* for data, any thread (pread) */
	int		r_basefd;
	uint64_t	r_size;
	uint32_t	r_ss;		/* sector size */
	struct cc_epoch	*r_ep;
	uint32_t	r_nep;
	uint32_t	r_durable;	/* epochs in the prefix */
	struct pslot	*r_tab;
	uint64_t	r_tabcap;	/* a power of two */
	uint64_t	r_tabn;
	struct h128	r_hpre;		/* the prefix's state hash */
	struct h128	r_zero;		/* a zero sector's content */
	struct prun	*r_runs;	/* the durable prefix, by sector */
	uint64_t	r_nruns;
	struct h128	*r_seen;	/* open addressing; {0,0}: empty */
	uint64_t	r_seencap, r_nseen;
};

/* 1. Reading the log. */

static struct h128
content(const void *p, size_t n)
{
	struct rb_hash h;
	struct h128 r;
	uint8_t out[16];

	rb_hash_init(&h);
	rb_hash_update(&h, p, n);
	rb_hash_final(&h, out, NULL);
	memcpy(&r.lo, out, 8);
	memcpy(&r.hi, out + 8, 8);
	return r;
}

static bool
h_eq(const struct h128 *a, const struct h128 *b)
{
	return a->lo == b->lo && a->hi == b->hi;
}

/* The term of sector s holding content c, base b: 0 when c is b. */
static struct h128
term(uint64_t s, const struct h128 *c, const struct h128 *b)
{
	struct h128 t = { 0, 0 };

	if (!h_eq(c, b)) {
		t.lo = rb_hash_mix64(s ^ rb_hash_mix64(c->lo));
		t.hi = rb_hash_mix64(~s ^ rb_hash_mix64(c->hi ^ 0x5bd1e995u));
	}
	return t;
}

static void
h_add(struct h128 *a, const struct h128 *t)
{
	a->lo += t->lo;
	a->hi += t->hi;
}

static void
h_sub(struct h128 *a, const struct h128 *t)
{
	a->lo -= t->lo;
	a->hi -= t->hi;
}

static struct pslot *
tab_find(struct cc_run *r, uint64_t s)
{
	uint64_t i = rb_hash_mix64(s) & (r->r_tabcap - 1);

	while (r->r_tab[i].ps_key != 0 && r->r_tab[i].ps_key != s + 1)
		i = (i + 1) & (r->r_tabcap - 1);
	return &r->r_tab[i];
}

static int
tab_grow(struct cc_run *r)
{
	struct pslot *old = r->r_tab, *p;
	uint64_t oldcap = r->r_tabcap, i;

	r->r_tabcap = oldcap == 0 ? 1024 : oldcap * 2;
	if ((r->r_tab = calloc(r->r_tabcap, sizeof(*r->r_tab))) == NULL) {
		r->r_tab = old;
		r->r_tabcap = oldcap;
		return ENOMEM;
	}
	for (i = 0; i < oldcap; i++)
		if (old[i].ps_key != 0) {
			p = tab_find(r, old[i].ps_key - 1);
			*p = old[i];
		}
	free(old);
	return 0;
}

/*
 * Every sector of w into the prefix table (with the base's content, read
 * now, where it is new) and w's content hashes into wsh.
 */
static int
take_write(struct cc_run *r, const char *base, const struct cc_write *w,
    struct h128 *wsh)
{
	uint64_t ns = w->w_len / r->r_ss, i, s;
	unsigned char *buf;
	struct pslot *p;
	int error;

	if ((buf = malloc(r->r_ss)) == NULL)
		return ENOMEM;
	for (i = 0; i < ns; i++) {
		s = w->w_off / r->r_ss + i;
		if ((r->r_tabn + 1) * 2 > r->r_tabcap &&
		    (error = tab_grow(r)) != 0)
			goto out;
		p = tab_find(r, s);
		if (p->ps_key == 0) {
			if ((error = cli_pread_all(r->r_basefd, buf, r->r_ss,
			    s * r->r_ss)) != 0) {
				cli_err("crash-check: %s: reading sector %"
				    PRIu64 ": %s", base, s, strerror(error));
				goto out;
			}
			p->ps_key = s + 1;
			p->ps_base = p->ps_pre = content(buf, r->r_ss);
			p->ps_src = PS_BASE;
			r->r_tabn++;
		}
		if (w->w_dataoff == 0) {
			wsh[i] = r->r_zero;
		} else {
			if ((error = cli_pread_all(r->r_logfd, buf, r->r_ss,
			    w->w_dataoff + i * r->r_ss)) != 0) {
				cli_err("crash-check: %s: entry %" PRIu64
				    ": %s", logfile_path(r->r_lf), w->w_entry,
				    strerror(error));
				goto out;
			}
			wsh[i] = content(buf, r->r_ss);
		}
	}
	error = 0;
out:
	free(buf);
	return error;
}

static int
cmp64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* The epoch's sorted sectors, each write's first among them, hashes. */
static int
epoch_index(struct cc_run *r, const char *base, struct cc_epoch *e)
{
	uint64_t n = 0, i, j, *all;
	int error;

	for (i = 0; i < e->e_n; i++)
		n += e->e_w[i].w_len / r->r_ss;
	if ((all = malloc((n + 1) * sizeof(*all))) == NULL ||
	    (e->e_wsh = calloc(e->e_n + 1, sizeof(*e->e_wsh))) == NULL) {
		free(all);
		return ENOMEM;
	}
	for (n = 0, i = 0; i < e->e_n; i++)
		for (j = 0; j < e->e_w[i].w_len / r->r_ss; j++)
			all[n++] = e->e_w[i].w_off / r->r_ss + j;
	qsort(all, n, sizeof(*all), cmp64);
	for (i = j = 0; i < n; i++)
		if (j == 0 || all[j - 1] != all[i])
			all[j++] = all[i];
	e->e_sect = all;
	e->e_nsect = (uint32_t)j;
	for (i = 0; i < e->e_n; i++) {
		struct cc_write *w = &e->e_w[i];
		uint64_t s0 = w->w_off / r->r_ss, lo = 0, hi = j;

		while (lo < hi) {		/* lower bound of s0 */
			uint64_t mid = (lo + hi) / 2;

			if (all[mid] < s0)
				lo = mid + 1;
			else
				hi = mid;
		}
		w->w_k0 = (uint32_t)lo;
		if ((e->e_wsh[i] = malloc((w->w_len / r->r_ss + 1) *
		    sizeof(struct h128))) == NULL)
			return ENOMEM;
		if ((error = take_write(r, base, w, e->e_wsh[i])) != 0)
			return error;
	}
	return 0;
}

static int
add_write(struct cc_epoch *e, const struct logfile_entry *le)
{
	struct cc_write *nw;

	if ((e->e_n & (e->e_n - 1)) == 0) {
		nw = realloc(e->e_w, (e->e_n == 0 ? 1 : e->e_n * 2) *
		    sizeof(*nw));
		if (nw == NULL)
			return ENOMEM;
		e->e_w = nw;
	}
	nw = &e->e_w[e->e_n++];
	memset(nw, 0, sizeof(*nw));
	nw->w_entry = le->e_index;
	nw->w_off = le->e_off;
	nw->w_len = le->e_len;
	nw->w_dataoff = (le->e_flags & LW_DISCARD) ? 0 : le->e_dataoff;
	nw->w_flags = le->e_flags & (LW_FUA | LW_DISCARD);
	return 0;
}

/* Is the base the one the log was recorded from?  Reads all of it. */
static int
check_base(struct cc_run *r, const struct logfile_base *lb,
    const char *logpath, const char *basepath)
{
	struct rb_hash h;
	unsigned char *buf;
	uint8_t out[16];
	char want[48], got[48];
	uint64_t off;
	size_t n;
	int error = 0;

	if ((buf = malloc(1 << 20)) == NULL)
		return ENOMEM;
	rb_hash_init(&h);
	for (off = 0; off < r->r_size && error == 0; off += n) {
		n = r->r_size - off < (1 << 20) ? (size_t)(r->r_size - off) :
		    (1 << 20);
		if ((error = cli_pread_all(r->r_basefd, buf, n, off)) == 0)
			rb_hash_update(&h, buf, n);
	}
	free(buf);
	if (error != 0) {
		cli_err("crash-check: %s: %s", basepath, strerror(error));
		return error;
	}
	rb_hash_final(&h, out, NULL);
	if (memcmp(out, lb->bs_hash, sizeof(out)) != 0) {
		logfile_hash_str(lb->bs_hash, want);
		logfile_hash_str(out, got);
		cli_err("crash-check: %s was recorded from a base with hash %s;"
		    " %s has %s (not the image the run started from; "
		    "--no-verify-base to go on anyway)", logpath, want,
		    basepath, got);
		return EINVAL;
	}
	return 0;
}

int
cc_open(const char *logpath, const char *basepath, bool skipcheck,
    struct cc_run **runp)
{
	struct logfile_entry le;
	struct cc_run *r;
	struct cc_epoch *e, *ne;
	const struct logfile_base *lb;
	unsigned char *zero;
	char msg[512];
	off_t bsize;
	int error;

	if ((r = calloc(1, sizeof(*r))) == NULL)
		return ENOMEM;
	r->r_logfd = r->r_basefd = -1;
	if ((error = logfile_open(logpath, &r->r_lf, msg, sizeof(msg))) != 0) {
		cli_err("crash-check: %s", msg);
		goto fail;
	}
	r->r_ss = logfile_secsize(r->r_lf);
	if ((r->r_logfd = open(logpath, O_RDONLY | O_CLOEXEC)) < 0 ||
	    (r->r_basefd = open(basepath, O_RDONLY | O_CLOEXEC)) < 0) {
		error = errno;
		cli_err("crash-check: %s: %s", r->r_logfd < 0 ? logpath :
		    basepath, strerror(error));
		goto fail;
	}
	if ((bsize = lseek(r->r_basefd, 0, SEEK_END)) < 0) {
		error = errno;
		cli_err("crash-check: %s: %s", basepath, strerror(error));
		goto fail;
	}
	r->r_size = (uint64_t)bsize;
	lb = logfile_base(r->r_lf);
	if (lb != NULL && lb->bs_size != r->r_size) {
		cli_err("crash-check: %s was recorded from a base of %" PRIu64
		    " bytes; %s has %" PRIu64, logpath, lb->bs_size, basepath,
		    r->r_size);
		error = EINVAL;
		goto fail;
	}
	if (lb != NULL && lb->bs_hashed && !skipcheck &&
	    (error = check_base(r, lb, logpath, basepath)) != 0)
		goto fail;
	if ((zero = calloc(1, r->r_ss)) == NULL) {
		error = ENOMEM;
		goto fail;
	}
	r->r_zero = content(zero, r->r_ss);
	free(zero);
	if ((r->r_ep = calloc(1, sizeof(*r->r_ep))) == NULL) {
		error = ENOMEM;
		goto fail;
	}
	r->r_nep = 1;
	r->r_ep[0].e_no = 1;
	r->r_ep[0].e_flush = UINT64_MAX;
	while ((error = logfile_next(r->r_lf, &le)) == 0) {
		e = &r->r_ep[r->r_nep - 1];
		if (le.e_flags & LW_FLUSH) {
			e->e_flush = le.e_index;
			ne = realloc(r->r_ep, (r->r_nep + 1) * sizeof(*ne));
			if (ne == NULL) {
				error = ENOMEM;
				goto fail;
			}
			r->r_ep = ne;
			e = &r->r_ep[r->r_nep++];
			memset(e, 0, sizeof(*e));
			e->e_no = r->r_nep;
			e->e_flush = UINT64_MAX;
			e->e_start = le.e_index + 1;
		}
		if (le.e_len == 0 || (le.e_flags & LW_MARK))
			continue;
		if (le.e_off + le.e_len > r->r_size) {
			cli_err("crash-check: %s: entry %" PRIu64 " (byte %"
			    PRIu64 "): writes past the end of %s", logpath,
			    le.e_index, le.e_fileoff, basepath);
			error = EINVAL;
			goto fail;
		}
		if ((error = add_write(e, &le)) != 0)
			goto fail;
	}
	if (error != ENOENT) {
		cli_err("crash-check: %s", logfile_errmsg(r->r_lf));
		goto fail;
	}
	for (uint32_t i = 0; i < r->r_nep; i++)
		r->r_ep[i].e_end = r->r_ep[i].e_flush != UINT64_MAX ?
		    r->r_ep[i].e_flush : logfile_nr_entries(r->r_lf);
	for (uint32_t i = 0; i < r->r_nep; i++)
		if ((error = epoch_index(r, basepath, &r->r_ep[i])) != 0) {
			if (error == ENOMEM)
				cli_err("crash-check: out of memory");
			goto fail;
		}
	*runp = r;
	return 0;
fail:
	cc_close(r);
	return error;
}

void
cc_close(struct cc_run *r)
{
	if (r == NULL)
		return;
	for (uint32_t i = 0; i < r->r_nep; i++) {
		struct cc_epoch *e = &r->r_ep[i];

		for (uint32_t j = 0; e->e_wsh != NULL && j < e->e_n; j++)
			free(e->e_wsh[j]);
		free(e->e_wsh);
		free(e->e_w);
		free(e->e_sect);
	}
	free(r->r_ep);
	free(r->r_tab);
	free(r->r_runs);
	free(r->r_seen);
	if (r->r_lf != NULL)
		logfile_close(r->r_lf);
	if (r->r_logfd >= 0)
		close(r->r_logfd);
	if (r->r_basefd >= 0)
		close(r->r_basefd);
	free(r);
}

uint32_t cc_nepochs(const struct cc_run *r) { return r->r_nep; }
struct cc_epoch *cc_epoch(struct cc_run *r, uint32_t i) { return &r->r_ep[i]; }
uint64_t cc_size(const struct cc_run *r) { return r->r_size; }
uint32_t cc_secsize(const struct cc_run *r) { return r->r_ss; }
struct logfile *cc_log(struct cc_run *r) { return r->r_lf; }

/* 2. The durable prefix. */

/* Epoch e's writes, all of them in order, become durable. */
static void
make_durable(struct cc_run *r, struct cc_epoch *e)
{
	for (uint32_t i = 0; i < e->e_n; i++) {
		struct cc_write *w = &e->e_w[i];

		for (uint64_t j = 0; j < w->w_len / r->r_ss; j++) {
			uint64_t s = w->w_off / r->r_ss + j;
			struct pslot *p = tab_find(r, s);
			struct h128 t;

			t = term(s, &p->ps_pre, &p->ps_base);
			h_sub(&r->r_hpre, &t);
			p->ps_pre = e->e_wsh[i][j];
			p->ps_src = w->w_dataoff == 0 ? 0 :
			    w->w_dataoff + j * r->r_ss;
			t = term(s, &p->ps_pre, &p->ps_base);
			h_add(&r->r_hpre, &t);
		}
	}
}

static int
cmprun(const void *a, const void *b)
{
	const struct prun *x = a, *y = b;

	return x->r_sector < y->r_sector ? -1 : x->r_sector > y->r_sector;
}

/* The prefix as sorted runs of sectors that come from one place. */
static int
prefix_runs(struct cc_run *r)
{
	struct prun *v;
	uint64_t n = 0, i, j;

	free(r->r_runs);
	r->r_runs = NULL;
	r->r_nruns = 0;
	if ((v = malloc((r->r_tabn + 1) * sizeof(*v))) == NULL)
		return ENOMEM;
	for (i = 0; i < r->r_tabcap; i++)
		if (r->r_tab[i].ps_key != 0 && r->r_tab[i].ps_src != PS_BASE) {
			v[n].r_sector = r->r_tab[i].ps_key - 1;
			v[n].r_ns = 1;
			v[n++].r_src = r->r_tab[i].ps_src;
		}
	qsort(v, n, sizeof(*v), cmprun);
	for (i = j = 0; i < n; i++) {
		struct prun *last = j > 0 ? &v[j - 1] : NULL;

		if (last != NULL && last->r_sector + last->r_ns ==
		    v[i].r_sector && (last->r_src == 0 ? v[i].r_src == 0 :
		    last->r_src + last->r_ns * r->r_ss == v[i].r_src) &&
		    last->r_ns < 2048)
			last->r_ns++;
		else
			v[j++] = v[i];
	}
	r->r_runs = v;
	r->r_nruns = j;
	return 0;
}

bool
cc_seen(struct cc_run *r, const struct h128 *h)
{
	struct h128 *nt, *old;
	uint64_t i, cap;

	if ((r->r_nseen + 1) * 2 > r->r_seencap) {
		cap = r->r_seencap == 0 ? 1024 : r->r_seencap * 2;
		if ((nt = calloc(cap, sizeof(*nt))) == NULL)
			return false;	/* run it again rather than fail */
		old = r->r_seen;
		for (i = 0; i < r->r_seencap; i++)
			if (old[i].lo != 0 || old[i].hi != 0) {
				uint64_t k = old[i].lo & (cap - 1);

				while (nt[k].lo != 0 || nt[k].hi != 0)
					k = (k + 1) & (cap - 1);
				nt[k] = old[i];
			}
		free(old);
		r->r_seen = nt;
		r->r_seencap = cap;
	}
	/* {0,0} marks an empty slot: the base itself hashes to it. */
	struct h128 k = *h;

	if (k.lo == 0 && k.hi == 0)
		k.hi = 1;
	for (i = k.lo & (r->r_seencap - 1);
	    r->r_seen[i].lo != 0 || r->r_seen[i].hi != 0;
	    i = (i + 1) & (r->r_seencap - 1))
		if (h_eq(&r->r_seen[i], &k))
			return true;
	r->r_seen[i] = k;
	r->r_nseen++;
	return false;
}

/* 3. The models. */

struct cc_gen {
	struct cc_run	*g_r;
	struct cc_epoch	*g_e;
	enum cc_model	g_model;
	bool		g_sample;
	uint64_t	g_max;		/* states to draw when sampling */
	uint64_t	g_rng;
	uint64_t	g_id;		/* states given so far */
	bool		g_done;
	/* the prefix's content of each of the epoch's sectors, and a
	 * scratch copy a state changes (g_dirty lists what it changed) */
	struct h128	*g_pre, *g_cur;
	uint32_t	*g_dirty;
	uint8_t		*g_isdirty;
	uint32_t	g_ndirty;
	/* subset and reorder: the crash point m (-1: the empty set) and
	 * the mask over the non-FUA writes before it */
	int64_t		g_m;
	uint64_t	g_mask;
	uint32_t	*g_free;	/* non-FUA writes, in order */
	uint32_t	g_nfree;
	/* reorder: the chosen writes, their components and orders */
	uint32_t	*g_set, g_nset;
	uint32_t	*g_comp;	/* g_comp[i]: start of component i */
	uint32_t	g_ncomp;
	bool		g_inset;	/* a set is being permuted */
	/* sectors: per epoch sector, its options and the choice */
	uint32_t	**g_opt;	/* write index + 1; 0: the prefix */
	uint32_t	*g_nopt, *g_choice;
};

int
cc_model_parse(const char *s, enum cc_model *m)
{
	static const char *names[] = { "prefix", "subset", "reorder",
	    "sectors" };

	for (unsigned i = 0; i < 4; i++)
		if (strcmp(s, names[i]) == 0) {
			*m = (enum cc_model)i;
			return 0;
		}
	return EINVAL;
}

const char *
cc_model_name(enum cc_model m)
{
	static const char *names[] = { "prefix", "subset", "reorder",
	    "sectors" };

	return (unsigned)m < 4 ? names[m] : "?";
}

static uint64_t
rng_next(uint64_t *s)
{
	*s += 0x9e3779b97f4a7c15ull;
	return rb_hash_mix64(*s);
}

static uint64_t
sat_add(uint64_t a, uint64_t b)
{
	return a > UINT64_MAX - b ? UINT64_MAX : a + b;
}

static uint64_t
sat_mul(uint64_t a, uint64_t b)
{
	return b != 0 && a > UINT64_MAX / b ? UINT64_MAX : a * b;
}

static uint64_t
fact(uint32_t n)
{
	uint64_t f = 1;

	for (uint32_t i = 2; i <= n; i++)
		f = sat_mul(f, i);
	return f;
}

static int
cmp_by_off(const void *a, const void *b, void *arg)
{
	const struct cc_write *w = arg;
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	if (w[x].w_off != w[y].w_off)
		return w[x].w_off < w[y].w_off ? -1 : 1;
	return x < y ? -1 : x > y;
}

static int
cmp32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

/*
 * Group g_set into components of overlapping writes (an interval graph:
 * sorted by offset, a write joins the group while it starts before the
 * group's end); each component's members in acknowledgement order.
 */
static void
components(struct cc_gen *g)
{
	const struct cc_write *w = g->g_e->e_w;
	uint64_t end = 0;
	uint32_t i;

	qsort_r(g->g_set, g->g_nset, sizeof(*g->g_set), cmp_by_off,
	    (void *)w);
	g->g_ncomp = 0;
	for (i = 0; i < g->g_nset; i++) {
		const struct cc_write *x = &w[g->g_set[i]];

		if (i == 0 || x->w_off >= end) {
			g->g_comp[g->g_ncomp++] = i;
			end = 0;
		}
		if (x->w_off + x->w_len > end)
			end = x->w_off + x->w_len;
	}
	g->g_comp[g->g_ncomp] = g->g_nset;
	for (i = 0; i < g->g_ncomp; i++)
		qsort(g->g_set + g->g_comp[i], g->g_comp[i + 1] -
		    g->g_comp[i], sizeof(*g->g_set), cmp32);
}

static uint64_t
orders(struct cc_gen *g)
{
	uint64_t n = 1;

	components(g);
	for (uint32_t i = 0; i < g->g_ncomp; i++)
		n = sat_mul(n, fact(g->g_comp[i + 1] - g->g_comp[i]));
	return n;
}

/* The set of crash point m and mask into g_set (in write order). */
static void
set_of(struct cc_gen *g, int64_t m, uint64_t mask)
{
	const struct cc_write *w = g->g_e->e_w;
	uint32_t f = 0;

	g->g_nset = 0;
	for (int64_t i = 0; i < m; i++) {
		if (w[i].w_flags & LW_FUA)
			g->g_set[g->g_nset++] = (uint32_t)i;
		else if ((mask >> f++) & 1)
			g->g_set[g->g_nset++] = (uint32_t)i;
	}
	if (m >= 0)
		g->g_set[g->g_nset++] = (uint32_t)m;
}

/* Non-FUA writes before write m. */
static uint32_t
free_before(const struct cc_gen *g, int64_t m)
{
	uint32_t n = 0;

	for (uint32_t i = 0; i < g->g_nfree && g->g_free[i] < m; i++)
		n++;
	return n;
}

static uint64_t
count_possible(struct cc_gen *g)
{
	struct cc_epoch *e = g->g_e;
	uint64_t n = 0;

	switch (g->g_model) {
	case CC_PREFIX:
		return (uint64_t)e->e_n + 1;
	case CC_SUBSET:
		n = 1;
		for (uint32_t m = 0; m < e->e_n; m++) {
			uint32_t f = free_before(g, m);

			n = sat_add(n, f >= 64 ? UINT64_MAX : 1ull << f);
		}
		return n;
	case CC_REORDER:
		n = 1;
		for (uint32_t m = 0; m < e->e_n; m++) {
			uint32_t f = free_before(g, m);

			if (f > 16)
				return UINT64_MAX;	/* not counted */
			for (uint64_t mask = 0; mask < (1ull << f); mask++) {
				set_of(g, m, mask);
				n = sat_add(n, orders(g));
			}
		}
		return n;
	case CC_SECTORS:
		n = 1;
		for (uint32_t k = 0; k < e->e_nsect; k++)
			n = sat_mul(n, g->g_nopt[k]);
		return n;
	}
	return 0;
}

/* sectors: the options of each of the epoch's sectors. */
static int
sector_options(struct cc_gen *g)
{
	struct cc_epoch *e = g->g_e;
	uint32_t k, i, n;

	g->g_opt = calloc(e->e_nsect + 1, sizeof(*g->g_opt));
	g->g_nopt = calloc(e->e_nsect + 1, sizeof(*g->g_nopt));
	g->g_choice = calloc(e->e_nsect + 1, sizeof(*g->g_choice));
	if (g->g_opt == NULL || g->g_nopt == NULL || g->g_choice == NULL)
		return ENOMEM;
	/* Count the writes over each sector, then list them in order. */
	for (i = 0; i < e->e_n; i++)
		for (k = 0; k < e->e_w[i].w_len / g->g_r->r_ss; k++)
			g->g_nopt[e->e_w[i].w_k0 + k]++;
	for (k = 0; k < e->e_nsect; k++) {
		if ((g->g_opt[k] = malloc((g->g_nopt[k] + 1) *
		    sizeof(uint32_t))) == NULL)
			return ENOMEM;
		g->g_opt[k][0] = 0;		/* the prefix */
		g->g_nopt[k] = 1;
	}
	for (i = 0; i < e->e_n; i++) {
		const struct cc_write *w = &e->e_w[i];

		for (k = w->w_k0; k < w->w_k0 + w->w_len / g->g_r->r_ss;
		    k++) {
			n = g->g_nopt[k];
			/* A FUA write is there for good: what came before
			 * it is no option any more. */
			if (w->w_flags & LW_FUA)
				n = 0;
			g->g_opt[k][n++] = i + 1;
			g->g_nopt[k] = n;
		}
	}
	return 0;
}

static void
state_reset(struct cc_gen *g, struct cc_state *st)
{
	for (uint32_t i = 0; i < g->g_ndirty; i++) {
		g->g_cur[g->g_dirty[i]] = g->g_pre[g->g_dirty[i]];
		g->g_isdirty[g->g_dirty[i]] = 0;
	}
	g->g_ndirty = 0;
	st->st_n = 0;
	st->st_epoch = g->g_e->e_no;
	st->st_id = g->g_id;
}

static bool
add_piece(struct cc_gen *g, struct cc_state *st, uint32_t w, uint32_t s0,
    uint32_t ns)
{
	const struct cc_write *x = &g->g_e->e_w[w];
	struct cc_piece *np;

	if (st->st_n > 0) {
		struct cc_piece *last = &st->st_p[st->st_n - 1];

		if (last->p_w == w && last->p_s0 + last->p_ns == s0) {
			last->p_ns += ns;
			goto content;
		}
	}
	if (st->st_n == st->st_cap) {
		uint32_t cap = st->st_cap == 0 ? 16 : st->st_cap * 2;

		if ((np = realloc(st->st_p, cap * sizeof(*np))) == NULL)
			return false;
		st->st_p = np;
		st->st_cap = cap;
	}
	st->st_p[st->st_n++] = (struct cc_piece){ w, s0, ns };
content:
	for (uint32_t i = s0; i < s0 + ns; i++) {
		uint32_t k = x->w_k0 + i;

		g->g_cur[k] = g->g_e->e_wsh[w][i];
		if (!g->g_isdirty[k]) {
			g->g_isdirty[k] = 1;
			g->g_dirty[g->g_ndirty++] = k;
		}
	}
	return true;
}

static bool
add_write_whole(struct cc_gen *g, struct cc_state *st, uint32_t w)
{
	return add_piece(g, st, w, 0,
	    (uint32_t)(g->g_e->e_w[w].w_len / g->g_r->r_ss));
}

static void
state_hash(struct cc_gen *g, struct cc_state *st)
{
	struct cc_run *r = g->g_r;
	struct h128 h = r->r_hpre, t;

	for (uint32_t i = 0; i < g->g_ndirty; i++) {
		uint32_t k = g->g_dirty[i];
		uint64_t s = g->g_e->e_sect[k];
		struct pslot *p = tab_find(r, s);

		t = term(s, &g->g_pre[k], &p->ps_base);
		h_sub(&h, &t);
		t = term(s, &g->g_cur[k], &p->ps_base);
		h_add(&h, &t);
	}
	st->st_hash = h;
}

int
cc_gen_start(struct cc_run *r, uint32_t i, enum cc_model model,
    uint64_t max, uint64_t seed, struct cc_gen **gp)
{
	struct cc_epoch *e = &r->r_ep[i];
	struct cc_gen *g;
	int error = ENOMEM;

	while (r->r_durable < i)
		make_durable(r, &r->r_ep[r->r_durable++]);
	if ((error = prefix_runs(r)) != 0)
		return error;
	if ((g = calloc(1, sizeof(*g))) == NULL)
		return ENOMEM;
	g->g_r = r;
	g->g_e = e;
	g->g_model = model;
	g->g_rng = rb_hash_mix64(seed) ^ rb_hash_mix64(e->e_no * 0x2545f4914f6cdd1dull);
	g->g_m = -1;
	if ((g->g_pre = calloc(e->e_nsect + 1, sizeof(*g->g_pre))) == NULL ||
	    (g->g_cur = calloc(e->e_nsect + 1, sizeof(*g->g_cur))) == NULL ||
	    (g->g_dirty = calloc(e->e_nsect + 1, sizeof(*g->g_dirty))) ==
	    NULL ||
	    (g->g_isdirty = calloc(e->e_nsect + 1, 1)) == NULL ||
	    (g->g_free = calloc(e->e_n + 1, sizeof(*g->g_free))) == NULL ||
	    (g->g_set = calloc(e->e_n + 1, sizeof(*g->g_set))) == NULL ||
	    (g->g_comp = calloc(e->e_n + 2, sizeof(*g->g_comp))) == NULL)
		goto fail;
	for (uint32_t k = 0; k < e->e_nsect; k++)
		g->g_pre[k] = g->g_cur[k] = tab_find(r, e->e_sect[k])->ps_pre;
	for (uint32_t j = 0; j < e->e_n; j++)
		if (!(e->e_w[j].w_flags & LW_FUA))
			g->g_free[g->g_nfree++] = j;
	if (model == CC_SECTORS && (error = sector_options(g)) != 0)
		goto fail;
	e->e_possible = count_possible(g);
	e->e_sampled = e->e_possible > max;
	g->g_sample = e->e_sampled;
	g->g_max = max;
	*gp = g;
	return 0;
fail:
	cc_gen_end(g);
	return error;
}

uint64_t
cc_gen_count(const struct cc_gen *g)
{
	return g->g_id;
}

void
cc_gen_end(struct cc_gen *g)
{
	if (g == NULL)
		return;
	for (uint32_t k = 0; g->g_opt != NULL && k < g->g_e->e_nsect; k++)
		free(g->g_opt[k]);
	free(g->g_opt);
	free(g->g_nopt);
	free(g->g_choice);
	free(g->g_pre);
	free(g->g_cur);
	free(g->g_dirty);
	free(g->g_isdirty);
	free(g->g_free);
	free(g->g_set);
	free(g->g_comp);
	free(g);
}

/* Next permutation of a[0..n) in lexicographic order; false at the end
 * (a is then sorted again). */
static bool
next_perm(uint32_t *a, uint32_t n)
{
	uint32_t i, j, t;

	if (n < 2)
		return false;
	for (i = n - 1; i > 0 && a[i - 1] >= a[i]; i--)
		;
	if (i == 0) {
		qsort(a, n, sizeof(*a), cmp32);
		return false;
	}
	for (j = n - 1; a[j] <= a[i - 1]; j--)
		;
	t = a[i - 1];
	a[i - 1] = a[j];
	a[j] = t;
	for (j = n - 1; i < j; i++, j--) {
		t = a[i];
		a[i] = a[j];
		a[j] = t;
	}
	return true;
}

/* subset, reorder: step (m, mask) to the next set; false after the last. */
static bool
next_set(struct cc_gen *g)
{
	uint32_t f = g->g_m < 0 ? 0 : free_before(g, g->g_m);

	if (g->g_m >= 0 && f < 64 && g->g_mask + 1 < (1ull << f)) {
		g->g_mask++;
		return true;
	}
	if (g->g_m + 1 >= (int64_t)g->g_e->e_n)
		return false;
	g->g_m++;
	g->g_mask = 0;
	return true;
}

/* A random set: a crash point, the FUA writes before it, a coin each
 * for the others. */
static void
random_set(struct cc_gen *g)
{
	uint64_t c = rng_next(&g->g_rng) % ((uint64_t)g->g_e->e_n + 1);
	const struct cc_write *w = g->g_e->e_w;

	g->g_nset = 0;
	for (uint64_t i = 0; i < c; i++)
		if ((w[i].w_flags & LW_FUA) || (rng_next(&g->g_rng) & 1))
			g->g_set[g->g_nset++] = (uint32_t)i;
}

static bool
emit_set(struct cc_gen *g, struct cc_state *st)
{
	for (uint32_t i = 0; i < g->g_nset; i++)
		if (!add_write_whole(g, st, g->g_set[i]))
			return false;
	return true;
}

bool
cc_gen_next(struct cc_gen *g, struct cc_state *st)
{
	struct cc_epoch *e = g->g_e;
	uint32_t k, n;
	bool ok = true;

	if (g->g_done || (g->g_sample && g->g_id >= g->g_max))
		return false;
	state_reset(g, st);
	switch (g->g_model) {
	case CC_PREFIX:
		if (!g->g_sample && g->g_id > e->e_n)
			return false;
		n = g->g_sample ? (uint32_t)(rng_next(&g->g_rng) %
		    ((uint64_t)e->e_n + 1)) : (uint32_t)g->g_id;
		for (k = 0; k < n && ok; k++)
			ok = add_write_whole(g, st, k);
		break;
	case CC_SUBSET:
		if (g->g_sample) {
			random_set(g);
		} else {
			if (g->g_id > 0 && !next_set(g))
				return false;
			set_of(g, g->g_m, g->g_mask);
		}
		ok = emit_set(g, st);
		break;
	case CC_REORDER:
		if (g->g_sample) {
			random_set(g);
			components(g);
			for (uint32_t c = 0; c < g->g_ncomp; c++) {
				uint32_t *a = g->g_set + g->g_comp[c];
				uint32_t len = g->g_comp[c + 1] - g->g_comp[c];

				for (uint32_t i = len; i > 1; i--) {
					uint32_t j = (uint32_t)(rng_next(
					    &g->g_rng) % i), t = a[i - 1];

					a[i - 1] = a[j];
					a[j] = t;
				}
			}
		} else if (!g->g_inset) {
			if (g->g_id > 0 && !next_set(g))
				return false;
			set_of(g, g->g_m, g->g_mask);
			components(g);
			g->g_inset = true;
		} else {
			/* The next order: an odometer over components. */
			uint32_t c;

			for (c = 0; c < g->g_ncomp; c++)
				if (next_perm(g->g_set + g->g_comp[c],
				    g->g_comp[c + 1] - g->g_comp[c]))
					break;
			if (c == g->g_ncomp) {
				if (!next_set(g)) {
					g->g_done = true;
					return false;
				}
				set_of(g, g->g_m, g->g_mask);
				components(g);
			}
		}
		ok = emit_set(g, st);
		break;
	case CC_SECTORS:
		if (g->g_sample) {
			for (k = 0; k < e->e_nsect; k++)
				g->g_choice[k] = (uint32_t)(rng_next(
				    &g->g_rng) % g->g_nopt[k]);
		} else if (g->g_id > 0) {
			for (k = 0; k < e->e_nsect; k++) {
				if (++g->g_choice[k] < g->g_nopt[k])
					break;
				g->g_choice[k] = 0;
			}
			if (k == e->e_nsect)
				return false;
		}
		for (k = 0; k < e->e_nsect && ok; k++) {
			uint32_t w = g->g_opt[k][g->g_choice[k]];

			if (w != 0)
				ok = add_piece(g, st, w - 1,
				    k - e->e_w[w - 1].w_k0, 1);
		}
		break;
	}
	if (!ok)
		return false;
	state_hash(g, st);
	g->g_id++;
	return true;
}

void
cc_kept(const struct cc_run *r, const struct cc_state *st, bool *kept)
{
	const struct cc_epoch *e = &r->r_ep[st->st_epoch - 1];

	memset(kept, 0, e->e_n * sizeof(*kept));
	for (uint32_t i = 0; i < st->st_n; i++)
		kept[st->st_p[i].p_w] = true;
}

void
cc_state_free(struct cc_state *st)
{
	free(st->st_p);
	memset(st, 0, sizeof(*st));
}

/* 4. Building a state. */

static int
unit_io(struct rumpblk *rb, int u, int op, uint64_t off, void *data,
    size_t len)
{
	struct rumpblk_buf b;

	memset(&b, 0, sizeof(b));
	b.b_unit = u;
	b.b_flags = op;
	b.b_blkno = (int64_t)(off >> 9);
	b.b_bcount = len;
	b.b_data = data;
	rumpblk_strategy(rb, &b);
	return rumpblk_biowait(&b);
}

/* ns sectors at sector s from log data at src (0: zeroes) onto u. */
static int
put(struct cc_run *r, struct rumpblk *rb, int u, uint64_t s, uint64_t ns,
    uint64_t src, unsigned char *buf)
{
	size_t len = (size_t)(ns * r->r_ss);
	int error;

	if (src == 0)
		return unit_io(rb, u, RUMPBLK_B_ZERO, s * r->r_ss, NULL, len);
	if ((error = cli_pread_all(r->r_logfd, buf, len, src)) != 0)
		return error;
	return unit_io(rb, u, RUMPBLK_B_WRITE, s * r->r_ss, buf, len);
}

int
cc_build(struct cc_run *r, const struct cc_state *st, struct rumpblk *rb,
    int u)
{
	const struct cc_epoch *e = &r->r_ep[st->st_epoch - 1];
	unsigned char *buf;
	int error = 0;

	/* Runs are at most 2048 sectors; pieces are cut to that. */
	if ((buf = malloc(2048 * (size_t)r->r_ss)) == NULL)
		return ENOMEM;
	for (uint64_t i = 0; i < r->r_nruns && error == 0; i++)
		error = put(r, rb, u, r->r_runs[i].r_sector, r->r_runs[i].r_ns,
		    r->r_runs[i].r_src, buf);
	for (uint32_t i = 0; i < st->st_n && error == 0; i++) {
		const struct cc_piece *p = &st->st_p[i];
		const struct cc_write *w = &e->e_w[p->p_w];

		for (uint32_t d = 0; d < p->p_ns && error == 0; d += 2048) {
			uint32_t ns = p->p_ns - d < 2048 ? p->p_ns - d : 2048;
			uint64_t s = w->w_off / r->r_ss + p->p_s0 + d;

			error = put(r, rb, u, s, ns, w->w_dataoff == 0 ? 0 :
			    w->w_dataoff + (uint64_t)(p->p_s0 + d) * r->r_ss,
			    buf);
		}
	}
	free(buf);
	if (error != 0)
		cli_err("crash-check: building state %u.%" PRIu64 ": %s",
		    st->st_epoch, st->st_id, strerror(error));
	return error;
}
