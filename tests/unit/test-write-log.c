/*
 * The write log (rumpblk_write_log): entries in the order of
 * acknowledgement with the right flags and data, marks, the base record,
 * refusals, and, under concurrency, every write logged once and a replay
 * of the log over the base giving the medium.  The log is decoded here
 * from the dm-log-writes layout (the sizes and offsets written out below),
 * not with the library's format.h.
 */
#include <pthread.h>

#include "faultlib.h"

#define MB	(1024 * 1024)
#define SS	512
#define WA	(RUMPBLK_B_WRITE | RUMPBLK_B_ASYNC)

struct ent {
	uint64_t	sector, nr, flags, dlen;
	uint64_t	data_at;	/* file offset of the data */
	char		mark[64];
};

struct lg {
	unsigned char	*buf;
	size_t		len;
	uint64_t	n;
	struct ent	*e;
};

static uint64_t
le64(const unsigned char *p)
{
	uint64_t v = 0;

	for (int i = 7; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

/* Read and decode the whole log at path. */
static void
lg_read(struct lg *g, const char *path)
{
	struct stat sb;
	uint64_t at = SS;
	int fd;

	memset(g, 0, sizeof(*g));
	fd = open(path, O_RDONLY);
	tl_true(fd >= 0 && fstat(fd, &sb) == 0);
	g->len = (size_t)sb.st_size;
	g->buf = malloc(g->len);
	tl_eq(pread(fd, g->buf, g->len, 0), (ssize_t)g->len);
	close(fd);
	tl_true(g->len >= SS);
	tl_eq(le64(g->buf), 0x6a736677736872ull);
	tl_eq(le64(g->buf + 8), 1);
	tl_eq(le64(g->buf + 24) & 0xffffffff, SS);
	g->n = le64(g->buf + 16);
	g->e = calloc(g->n + 1, sizeof(*g->e));
	for (uint64_t i = 0; i < g->n; i++) {
		struct ent *e = &g->e[i];
		const unsigned char *p = g->buf + at;

		tl_true(at + SS <= g->len);
		e->sector = le64(p);
		e->nr = le64(p + 8);
		e->flags = le64(p + 16);
		e->dlen = le64(p + 24);
		if (e->flags & 8) {
			tl_true(e->dlen < sizeof(e->mark));
			memcpy(e->mark, p + 32, e->dlen);
		} else {
			for (unsigned k = 32; k < SS; k++)
				tl_eq(p[k], 0);
		}
		at += SS;
		e->data_at = at;
		if (!(e->flags & 4))
			at += e->nr * SS;
		tl_true(at <= g->len);
	}
}

static void
lg_free(struct lg *g)
{
	free(g->buf);
	free(g->e);
}

/* Apply every entry to img (size bytes). */
static void
lg_replay(const struct lg *g, unsigned char *img, uint64_t size)
{
	for (uint64_t i = 0; i < g->n; i++) {
		const struct ent *e = &g->e[i];
		uint64_t off = e->sector * SS, len = e->nr * SS;

		if (len == 0)
			continue;
		tl_true(off + len <= size);
		if (e->flags & 4)
			memset(img + off, 0, len);
		else
			memcpy(img + off, g->buf + e->data_at, len);
	}
}

static void
expect(const struct lg *g, uint64_t i, uint64_t off, uint64_t len,
    uint64_t flags)
{
	tl_true(i < g->n);
	if (g->e[i].sector != off / SS || g->e[i].nr != len / SS ||
	    g->e[i].flags != flags)
		tl_fail("entry %llu: sector %llu nr %llu flags %llu, want "
		    "%llu %llu %llu\n", (unsigned long long)i,
		    (unsigned long long)g->e[i].sector,
		    (unsigned long long)g->e[i].nr,
		    (unsigned long long)g->e[i].flags,
		    (unsigned long long)(off / SS),
		    (unsigned long long)(len / SS), (unsigned long long)flags);
}

/* One submitter: the log is its sequence, with its data. */
static void
sequence(void **state)
{
	struct fl_env e;
	struct lg g;
	unsigned char a[8192], c[4096], *img, *medium;
	char *log = tl_path("wl-seq.log");
	struct rumpblk_log_stats ls;
	const unsigned char *b;

	(void)state;
	unlink(log);
	fl_open(&e, "wl-seq.img", MB, 3);
	img = malloc(MB);
	fl_medium(&e, 0, img, MB);
	tl_eq(rumpblk_write_log(e.rb, e.unit, log, "the base", 0), 0);
	memset(a, 0xa1, sizeof(a));
	memset(c, 0xc3, sizeof(c));
	tl_eq(fl_io(&e, WA, 0, a, sizeof(a), NULL), 0);
	tl_eq(fl_io(&e, RUMPBLK_B_FLUSH, 0, NULL, 0, NULL), 0);
	/* Without ASYNC a write is durable at completion: FUA. */
	tl_eq(fl_io(&e, RUMPBLK_B_WRITE, 65536, c, sizeof(c), NULL), 0);
	tl_eq(fl_io(&e, RUMPBLK_B_TRIM | RUMPBLK_B_ASYNC, 131072, NULL,
	    65536, NULL), 0);
	tl_eq(fl_io(&e, RUMPBLK_B_ZERO | RUMPBLK_B_ASYNC, 262144, NULL,
	    32768, NULL), 0);
	tl_eq(rumpblk_log_mark(e.rb, e.unit, "m1"), 0);
	tl_eq(fl_io(&e, WA, 4096, c, sizeof(c), NULL), 0);
	tl_eq(rumpblk_log_stats(e.rb, e.unit, &ls), 0);
	tl_eq(ls.ls_entries, 7);
	tl_eq(ls.ls_writes, 3);
	tl_eq(ls.ls_bytes, 16384);
	tl_eq(ls.ls_trims, 1);
	tl_eq(ls.ls_zeroes, 1);
	tl_eq(ls.ls_flushes, 1);
	tl_eq(ls.ls_fua, 1);
	tl_eq(ls.ls_marks, 1);
	tl_eq(ls.ls_error, 0);
	/* A copy taken now (after the mark) has every entry up to it. */
	lg_read(&g, log);
	tl_eq(g.n, 6);
	lg_free(&g);
	medium = malloc(MB);
	fl_close_keep(&e);
	lg_read(&g, log);
	tl_eq(g.n, 7);		/* not the teardown's FLUSH: not the client's */
	expect(&g, 0, 0, 8192, 0);
	expect(&g, 1, 0, 0, 1);
	expect(&g, 2, 65536, 4096, 2);
	expect(&g, 3, 131072, 65536, 4);
	expect(&g, 4, 262144, 32768, 0);
	expect(&g, 5, 0, 0, 8);
	tl_eq(strcmp(g.e[5].mark, "m1"), 0);
	expect(&g, 6, 4096, 4096, 0);
	tl_eq(memcmp(g.buf + g.e[0].data_at, a, sizeof(a)), 0);
	for (unsigned k = 0; k < 32768; k++)
		tl_eq(g.buf[g.e[4].data_at + k], 0);
	/* The base record: magic, version, flags (hashed), size, the name. */
	b = g.buf + 64;
	tl_eq(memcmp(b, "RBLKBASE", 8), 0);
	tl_eq(b[8], 1);
	tl_eq(b[12], 2);
	tl_eq(le64(b + 16), MB);
	tl_eq(b[48], 8);
	tl_eq(memcmp(b + 50, "the base", 9), 0);
	/* Replayed over the base: the medium. */
	lg_replay(&g, img, MB);
	tl_host_read(e.img, medium, MB, 0);
	tl_eq(memcmp(img, medium, MB), 0);
	lg_free(&g);
	fl_unlink(&e);
	free(img);
	free(medium);
	unlink(log);
	free(log);
}

/* The log sits above the write cache: it logs what the cache is given. */
static void
over_cache(void **state)
{
	struct fl_env e;
	struct lg g;
	unsigned char a[4096], *img, *medium;
	char *log = tl_path("wl-cache.log");

	(void)state;
	unlink(log);
	fl_open(&e, "wl-cache.img", MB, 4);
	img = malloc(MB);
	medium = malloc(MB);
	fl_medium(&e, 0, img, MB);
	/* In either order, the stack puts the log above the cache. */
	tl_eq(rumpblk_write_log(e.rb, e.unit, log, NULL, RUMPBLK_LOG_NOHASH),
	    0);
	tl_eq(rumpblk_write_cache(e.rb, e.unit, MB), 0);
	for (unsigned i = 0; i < 64; i++) {
		memset(a, (int)i, sizeof(a));
		tl_eq(fl_io(&e, WA, (uint64_t)(i * 7 % 200) * 4096, a,
		    sizeof(a), NULL), 0);
		if (i % 16 == 15)
			tl_eq(fl_io(&e, RUMPBLK_B_FLUSH, 0, NULL, 0, NULL), 0);
	}
	fl_close_keep(&e);
	lg_read(&g, log);
	tl_eq(g.n, 64 + 4);
	tl_eq(g.buf[64 + 12], 0);	/* not hashed */
	lg_replay(&g, img, MB);
	tl_host_read(e.img, medium, MB, 0);
	tl_eq(memcmp(img, medium, MB), 0);
	lg_free(&g);
	fl_unlink(&e);
	free(img);
	free(medium);
	unlink(log);
	free(log);
}

struct writer {
	struct fl_env	*e;
	unsigned	id;
};

static void *
writer_main(void *arg)
{
	struct writer *w = arg;
	unsigned char buf[8192];

	for (unsigned i = 0; i < 200; i++) {
		size_t len = (size_t)(1 + (i + w->id) % 16) * SS;

		memset(buf, (int)(w->id * 16 + i % 16), len);
		/* Each writer its own quarter: no overlap between them. */
		tl_eq(fl_io(w->e, WA, w->id * (MB / 4) +
		    (uint64_t)(i * 13 % 100) * 2048, buf, len, NULL), 0);
		if (i % 50 == 49)
			tl_eq(fl_io(w->e, RUMPBLK_B_FLUSH, 0, NULL, 0, NULL),
			    0);
	}
	return NULL;
}

/* Four submitters: every write logged once; the replay is the medium. */
static void
concurrent(void **state)
{
	struct fl_env e;
	struct lg g;
	struct writer w[4];
	pthread_t th[4];
	unsigned char *img, *medium;
	char *log = tl_path("wl-conc.log");
	uint64_t writes = 0, flushes = 0;

	(void)state;
	unlink(log);
	fl_open(&e, "wl-conc.img", MB, 5);
	img = malloc(MB);
	medium = malloc(MB);
	fl_medium(&e, 0, img, MB);
	tl_eq(rumpblk_write_log(e.rb, e.unit, log, NULL, 0), 0);
	for (unsigned i = 0; i < 4; i++) {
		w[i].e = &e;
		w[i].id = i;
		tl_eq(pthread_create(&th[i], NULL, writer_main, &w[i]), 0);
	}
	for (unsigned i = 0; i < 4; i++)
		pthread_join(th[i], NULL);
	fl_close_keep(&e);
	lg_read(&g, log);
	for (uint64_t i = 0; i < g.n; i++) {
		writes += g.e[i].flags == 0;
		flushes += g.e[i].flags == 1;
	}
	tl_eq(writes, 800);
	tl_eq(flushes, 16);
	lg_replay(&g, img, MB);
	tl_host_read(e.img, medium, MB, 0);
	tl_eq(memcmp(img, medium, MB), 0);
	lg_free(&g);
	fl_unlink(&e);
	free(img);
	free(medium);
	unlink(log);
	free(log);
}

static void
refusals(void **state)
{
	struct fl_env e;
	struct rumpblk_log_stats ls;
	char *log = tl_path("wl-ref.log"), *zimg = tl_path("wl-zero.img");
	char *log2 = tl_path("wl-ref2.log");
	char name[600], buf[16];
	struct lg g;
	int fd, u2;

	(void)state;
	fl_open(&e, "wl-ref.img", MB, 6);
	/* A file that is not empty is never written over. */
	fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	tl_eq(write(fd, "precious", 8), 8);
	close(fd);
	tl_eq(rumpblk_write_log(e.rb, e.unit, log, NULL, 0), EEXIST);
	tl_host_read(log, buf, 8, 0);
	tl_eq(memcmp(buf, "precious", 8), 0);
	tl_eq(rumpblk_write_log(e.rb, e.unit, "/nonexistent/dir/x.log", NULL,
	    0), ENOENT);
	tl_eq(rumpblk_write_log(e.rb, e.unit, log, NULL, 0x100), EINVAL);
	tl_eq(rumpblk_write_log(e.rb, 99, log, NULL, 0), ENXIO);
	tl_eq(rumpblk_log_mark(e.rb, e.unit, "x"), ENOTSUP);
	tl_eq(rumpblk_log_stats(e.rb, e.unit, &ls), ENOTSUP);
	unlink(log);
	tl_eq(rumpblk_write_log(e.rb, e.unit, log, NULL, 0), 0);
	tl_eq(rumpblk_write_log(e.rb, e.unit, log, NULL, 0), EBUSY);
	tl_eq(rumpblk_log_mark(e.rb, e.unit, ""), EINVAL);
	memset(name, 'n', sizeof(name) - 1);
	name[sizeof(name) - 1] = '\0';
	tl_eq(rumpblk_log_mark(e.rb, e.unit, name), ENAMETOOLONG);
	name[SS - 33] = '\0';		/* the longest that fits */
	tl_eq(rumpblk_log_mark(e.rb, e.unit, name), 0);
	/* An all-zero base is recorded as such. */
	unlink(zimg);
	fd = open(zimg, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	tl_eq(ftruncate(fd, MB), 0);
	close(fd);
	u2 = tl_register(e.rb, zimg, 0, RUMPBLK_SIZENOTSET);
	unlink(log2);
	tl_eq(rumpblk_write_log(e.rb, u2, log2, zimg, 0), 0);
	fl_close(&e);
	lg_read(&g, log2);
	tl_eq(g.buf[64 + 12], 3);	/* LB_HASHED | LB_ZERO */
	lg_free(&g);
	unlink(log);
	unlink(log2);
	unlink(zimg);
	free(zimg);
	free(log);
	free(log2);
}

/*
 * A unit whose last sector is partial: strategy cuts a write there
 * short, and the entry, which counts whole sectors, is padded, so that
 * the entries after it are where the format puts them.
 */
static void
partial_sector(void **state)
{
	struct fl_env e;
	struct lg g;
	unsigned char a[512], b[1024];
	char *log = tl_path("wl-part.log");
	uint64_t size = 4096 + 1000;

	(void)state;
	unlink(log);
	fl_open(&e, "wl-part.img", size, 7);
	tl_eq(rumpblk_write_log(e.rb, e.unit, log, NULL, 0), 0);
	memset(a, 0x5a, sizeof(a));
	memset(b, 0x6b, sizeof(b));
	/* Sector 9 holds 488 bytes of the unit. */
	tl_eq(fl_io(&e, WA, 4608, a, sizeof(a), NULL), 0);
	tl_eq(fl_io(&e, WA, 0, b, sizeof(b), NULL), 0);
	fl_close_keep(&e);
	lg_read(&g, log);
	tl_eq(g.n, 2);
	expect(&g, 0, 4608, 512, 0);
	expect(&g, 1, 0, 1024, 0);
	tl_eq(memcmp(g.buf + g.e[0].data_at, a, 488), 0);
	for (unsigned k = 488; k < 512; k++)
		tl_eq(g.buf[g.e[0].data_at + k], 0);
	tl_eq(memcmp(g.buf + g.e[1].data_at, b, sizeof(b)), 0);
	lg_free(&g);
	fl_unlink(&e);
	unlink(log);
	free(log);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(sequence),
		cmocka_unit_test(over_cache),
		cmocka_unit_test(concurrent),
		cmocka_unit_test(refusals),
		cmocka_unit_test(partial_sector),
	};

	return tl_main(tests, NULL, NULL);
}
