/*
 * Helpers shared by the unit tests: scratch images with known patterns,
 * and the backend matrix.  Every test program runs once per backend
 * (meson registers "NAME (BACKEND)"), reading RUMPBLK_TEST_BACKEND, and
 * names the backend in every failure through tl_backend_name().
 */
#ifndef RUMPBLK_TESTLIB_H
#define RUMPBLK_TESTLIB_H

#undef NDEBUG
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include <rumpblk/rumpblk.h>

/* The backend under test: RUMPBLK_TEST_BACKEND, default pio. */
static inline enum rumpblk_backend
tl_backend(void)
{
	const char *s = getenv("RUMPBLK_TEST_BACKEND");
	enum rumpblk_backend b = RUMPBLK_BACKEND_PIO;

	if (s != NULL && rumpblk_backend_parse(s, &b) != 0) {
		fprintf(stderr, "bad RUMPBLK_TEST_BACKEND %s\n", s);
		exit(1);
	}
	return b;
}

static inline const char *
tl_backend_name(void)
{
	return rumpblk_backend_name(tl_backend());
}

/* Fail with the backend named. */
#define tl_fail(...) do {						\
	print_error("[backend %s] ", tl_backend_name());		\
	print_error(__VA_ARGS__);					\
	fail();								\
} while (0)

/* assert_int_equal that names the backend. */
#define tl_eq(a, b) do {						\
	long long _a = (long long)(a), _b = (long long)(b);		\
	if (_a != _b)							\
		tl_fail("%s:%d: %s == %lld, expected %s == %lld\n",	\
		    __FILE__, __LINE__, #a, _a, #b, _b);		\
} while (0)

/* A config for the backend under test, no environment. */
static inline void
tl_config(struct rumpblk_config *cfg)
{
	rumpblk_config_init(cfg);
	cfg->backend = tl_backend();
}

/* Scratch directory for this test program (under TMPDIR or /var/tmp). */
static inline const char *
tl_dir(void)
{
	static char dir[256];
	const char *t;

	if (dir[0] == '\0') {
		t = getenv("TMPDIR");
		snprintf(dir, sizeof(dir), "%s/rumpblk-test.XXXXXX",
		    t != NULL ? t : "/var/tmp");
		if (mkdtemp(dir) == NULL) {
			perror("mkdtemp");
			exit(1);
		}
	}
	return dir;
}

/* A path in the scratch directory. */
static inline char *
tl_path(const char *name)
{
	char *p;

	if (asprintf(&p, "%s/%s", tl_dir(), name) == -1)
		abort();
	return p;
}

/* xorshift64: the next number of the sequence in *state (non-zero). */
static inline uint64_t
tl_rand(uint64_t *state)
{
	*state ^= *state << 13;
	*state ^= *state >> 7;
	*state ^= *state << 17;
	return *state;
}

/* The byte the pattern has at offset off, for a given seed. */
static inline uint8_t
tl_pattern(uint64_t off, unsigned seed)
{
	uint64_t x = off / 8 * 0x9e3779b97f4a7c15ull + seed;

	x ^= x >> 29;
	return (uint8_t)(x >> (8 * (off % 8)));
}

/* Create a file of size bytes filled with the pattern (seed), or sparse
 * (all zero) if seed is 0. */
static inline char *
tl_image(const char *name, uint64_t size, unsigned seed)
{
	char *p = tl_path(name), buf[65536];
	uint64_t off;
	size_t n, i;
	int fd;

	unlink(p);
	fd = open(p, O_RDWR | O_CREAT | O_TRUNC, 0644);
	assert(fd != -1);
	assert(ftruncate(fd, (off_t)size) == 0);
	for (off = 0; seed != 0 && off < size; off += n) {
		n = size - off > sizeof(buf) ? sizeof(buf) : size - off;
		for (i = 0; i < n; i++)
			buf[i] = (char)tl_pattern(off + i, seed);
		assert(pwrite(fd, buf, n, (off_t)off) == (ssize_t)n);
	}
	assert(close(fd) == 0);
	return p;
}

/* Synchronous strategy call; returns b_error. */
static inline int
tl_io(struct rumpblk *rb, int unit, int flags, int64_t blkno, void *data,
    size_t len, size_t *resid)
{
	struct rumpblk_buf b;
	int error;

	memset(&b, 0, sizeof(b));
	b.b_unit = unit;
	b.b_flags = flags;
	b.b_blkno = blkno;
	b.b_bcount = len;
	b.b_data = data;
	rumpblk_strategy(rb, &b);
	error = rumpblk_biowait(&b);
	if (b.b_bcount != len)
		tl_fail("strategy rewrote b_bcount: %zu, was %zu\n",
		    b.b_bcount, len);
	if (resid != NULL)
		*resid = b.b_resid;
	return error;
}

/* ------------------------------------------------------------------ */
/* Skips, buffers, host checks and the independent seed-mode LCG.     */
/* ------------------------------------------------------------------ */

/*
 * Subtests, skips and the exit status.
 *
 * tl_main() runs every subtest of the program, or only those named in
 * RUMPBLK_TEST_ONLY, or all but those named in RUMPBLK_TEST_EXCEPT (names
 * as in the CMUnitTest table, separated by commas), so that meson can run
 * a subtest as a test of its own.  A name that is no subtest of the
 * program is an error, and so is a selection of none: a renamed subtest
 * must not leave a meson test that runs nothing and passes.  (cmocka
 * 1.1's cmocka_set_test_filter takes one glob and runs whatever it
 * matches, nothing included, without a word.)
 *
 * A subtest whose prerequisite outside the repository is missing (a
 * kernel feature, a device, a library the build went without) calls
 * tl_skip("why", ...), which prints the program, the subtest, the backend
 * and the reason; cmocka's bare skip(), which says nothing and which
 * cmocka leaves out of its exit status, does not compile here.  The
 * program exits 1 if a subtest failed, else 77 (skipped) if every
 * selected subtest skipped, else 0 if none did.  When some skipped and
 * others passed, no exit status is true (0 counts the skip as a pass, 77
 * loses the passes): the run fails, naming the subtests that skipped, and
 * the fix is to run them alone (the table `alone` in tests/unit/
 * meson.build).  A skip-prone subtest left beside others thus fails where
 * it skips instead of passing there.
 */
struct tl_sel {
	const struct CMUnitTest *s_tests;	/* the selected subtests */
	CMFixtureFunction *s_setup;	/* their own setups */
	size_t		s_n;
	size_t		s_next;		/* the next one to start */
	const char	*s_cur;		/* the running one, or NULL */
	size_t		s_nskipped;
	char		s_skipped[256];	/* their names */
	char		s_why[512];	/* the last skip and its reason */
	CMFixtureFunction s_teardown;	/* the program's group teardown */
	int		s_teardown_rc;
};
static struct tl_sel tl_sel __attribute__((unused));

#undef skip
#define skip() ({ _Static_assert(0, "say why: tl_skip(\"...\")"); })

#define tl_skip(...) do {						\
	tl_skip_note(__VA_ARGS__);					\
	_skip(__FILE__, __LINE__);					\
} while (0)

/* Count the running subtest as skipped and print why, on stdout beside
 * cmocka's RUN and SKIPPED lines. */
static inline void __attribute__((format(printf, 1, 2)))
tl_skip_note(const char *fmt, ...)
{
	struct tl_sel *s = &tl_sel;
	const char *cur = s->s_cur != NULL ? s->s_cur : "(group setup)";
	char why[256];
	size_t len = strlen(s->s_skipped);
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	s->s_nskipped++;
	snprintf(s->s_skipped + len, sizeof(s->s_skipped) - len, "%s%s",
	    len > 0 ? ", " : "", cur);
	snprintf(s->s_why, sizeof(s->s_why), "%s [backend %s]: %s", cur,
	    tl_backend_name(), why);
	print_message("%s: skipped %s\n", program_invocation_short_name,
	    s->s_why);
}

/*
 * Installed as the setup of every selected subtest: cmocka runs them in
 * table order, so this knows which one runs, for tl_skip's message.
 */
static inline int
tl_subtest_setup(void **state)
{
	struct tl_sel *s = &tl_sel;
	size_t i = s->s_next++;

	if (i >= s->s_n)
		abort();
	s->s_cur = s->s_tests[i].name;
	return s->s_setup[i] != NULL ? s->s_setup[i](state) : 0;
}

static inline void tl_cleanup(void);

/* Is name one of the comma-separated list? */
static inline bool
tl_listed(const char *list, const char *name)
{
	size_t n = strlen(name);
	const char *p, *e;

	for (p = list;; p = e + 1) {
		e = strchrnul(p, ',');
		if ((size_t)(e - p) == n && strncmp(p, name, n) == 0)
			return true;
		if (*e == '\0')
			return false;
	}
}

/* Does every name of var's list name one of tests[n]?  Says which not. */
static inline bool
tl_known(const char *var, const char *list, const struct CMUnitTest *tests,
    size_t n)
{
	const char *p, *e;
	bool ok = true;
	size_t i;

	for (p = list;; p = e + 1) {
		e = strchrnul(p, ',');
		for (i = 0; i < n; i++)
			if (strlen(tests[i].name) == (size_t)(e - p) &&
			    strncmp(tests[i].name, p, (size_t)(e - p)) == 0)
				break;
		if (i == n) {
			fprintf(stderr, "%s: %s: no subtest '%.*s' here\n",
			    program_invocation_short_name, var, (int)(e - p),
			    p);
			ok = false;
		}
		if (*e == '\0')
			return ok;
	}
}

/*
 * cmocka 1.1 reports a failing group teardown but leaves it out of the
 * count it returns; this wrapper keeps it a failure.
 */
static inline int
tl_group_teardown(void **state)
{
	tl_sel.s_cur = NULL;
	tl_sel.s_teardown_rc = tl_sel.s_teardown(state);
	return tl_sel.s_teardown_rc;
}

static inline int
tl_run_group(const struct CMUnitTest *tests, size_t n,
    CMFixtureFunction setup, CMFixtureFunction teardown)
{
	struct tl_sel *s = &tl_sel;
	const char *only = getenv("RUMPBLK_TEST_ONLY");
	const char *except = getenv("RUMPBLK_TEST_EXCEPT");
	const char *prog = program_invocation_short_name;
	struct CMUnitTest *sel = calloc(n, sizeof(*sel));
	CMFixtureFunction *setups = calloc(n, sizeof(*setups));
	size_t i, nsel = 0;
	bool known;
	int status;

	assert(sel != NULL && setups != NULL);
	if (only != NULL && *only == '\0')
		only = NULL;
	if (except != NULL && *except == '\0')
		except = NULL;
	/* Both lists are checked, so that every unknown name is told. */
	known = only == NULL || tl_known("RUMPBLK_TEST_ONLY", only, tests, n);
	if (except != NULL &&
	    !tl_known("RUMPBLK_TEST_EXCEPT", except, tests, n))
		known = false;
	if (!known) {
		status = 1;
		goto out;
	}
	for (i = 0; i < n; i++)
		if ((only == NULL || tl_listed(only, tests[i].name)) &&
		    (except == NULL || !tl_listed(except, tests[i].name))) {
			setups[nsel] = tests[i].setup_func;
			sel[nsel] = tests[i];
			sel[nsel++].setup_func = tl_subtest_setup;
		}
	if (nsel == 0) {
		fprintf(stderr, "%s: RUMPBLK_TEST_ONLY and RUMPBLK_TEST_EXCEPT "
		    "leave no subtest to run\n", prog);
		status = 1;
		goto out;
	}
	s->s_tests = sel;
	s->s_setup = setups;
	s->s_n = nsel;
	s->s_teardown = teardown;
	if (_cmocka_run_group_tests("tests", sel, nsel, setup,
	    teardown != NULL ? tl_group_teardown : NULL) != 0 ||
	    s->s_teardown_rc != 0)
		status = 1;
	else if (s->s_nskipped == 0)
		status = 0;
	else if (s->s_nskipped >= nsel) {
		/* The last line of the log: scripts/run-tests shows it. */
		print_message("%s: skipped %s\n", prog, s->s_why);
		status = 77;
	} else {
		print_error("%s: %zu subtest(s) skipped (%s) and %zu passed: "
		    "no exit status counts both, so this run fails; run the "
		    "skipping subtests alone (`alone` in tests/unit/"
		    "meson.build)\n", prog, s->s_nskipped, s->s_skipped,
		    nsel - s->s_nskipped);
		status = 1;
	}
out:
	free(sel);
	free(setups);
	tl_cleanup();
	return status;
}

/* Run the selected subtests, clean the scratch directory, return the
 * exit status (0, 1 or 77, above). */
#define tl_main(tests, setup, teardown)					\
	tl_run_group(tests, sizeof(tests) / sizeof((tests)[0]), setup,	\
	    teardown)

/* assert_true that names the backend. */
#define tl_true(c) do {							\
	if (!(c))							\
		tl_fail("%s:%d: expected %s\n", __FILE__, __LINE__, #c); \
} while (0)

/* An instance with the test backend and a config tweak. */
static inline struct rumpblk *
tl_create(const struct rumpblk_config *cfgp)
{
	struct rumpblk_config cfg;
	struct rumpblk *rb = NULL;
	int error;

	if (cfgp == NULL) {
		tl_config(&cfg);
		cfgp = &cfg;
	}
	if ((error = rumpblk_create(cfgp, &rb)) != 0)
		tl_fail("rumpblk_create: %s\n", strerror(error));
	return rb;
}

/* Register, failing the test on error; returns the unit. */
static inline int
tl_register(struct rumpblk *rb, const char *path, uint64_t off,
    uint64_t size)
{
	int unit = -1, error;

	if ((error = rumpblk_register(rb, path, off, size, &unit)) != 0)
		tl_fail("rumpblk_register %s: %s\n", path, strerror(error));
	return unit;
}

/* An instance on the mmap backend with the given windows, whatever the
 * matrix says (the window cache's own tests). */
static inline struct rumpblk *
tl_mmap_create(uint64_t winsize, unsigned wincount)
{
	struct rumpblk_config cfg;
	struct rumpblk *rb;

	tl_config(&cfg);
	cfg.backend = RUMPBLK_BACKEND_MMAP;
	cfg.winsize = winsize;
	cfg.wincount = wincount;
	tl_eq(rumpblk_create(&cfg, &rb), 0);
	return rb;
}

/* Fill a zeroed buffer. */
static inline void
tl_buf(struct rumpblk_buf *b, int unit, int flags, int64_t blkno,
    void *data, size_t len)
{
	memset(b, 0, sizeof(*b));
	b->b_unit = unit;
	b->b_flags = flags;
	b->b_blkno = blkno;
	b->b_bcount = len;
	b->b_data = data;
}

/* Fill with the pattern of the host bytes at off. */
static inline void
tl_fill(void *buf, size_t len, uint64_t off, unsigned seed)
{
	size_t i;

	for (i = 0; i < len; i++)
		((uint8_t *)buf)[i] = tl_pattern(off + i, seed);
}

/* Does buf hold the pattern for [off, off+len)?  Index of the first
 * difference, or -1. */
static inline long
tl_check(const void *buf, size_t len, uint64_t off, unsigned seed)
{
	size_t i;

	for (i = 0; i < len; i++)
		if (((const uint8_t *)buf)[i] != tl_pattern(off + i, seed))
			return (long)i;
	return -1;
}

/* Read host bytes with pread, failing the test on error. */
static inline void
tl_host_read(const char *path, void *buf, size_t len, uint64_t off)
{
	int fd = open(path, O_RDONLY);

	if (fd == -1 || pread(fd, buf, len, (off_t)off) != (ssize_t)len)
		tl_fail("pread %s at %" PRIu64 ": %s\n", path, off,
		    strerror(errno));
	close(fd);
}

/* Is every byte of buf equal to c? */
static inline bool
tl_all(const void *buf, size_t len, uint8_t c)
{
	size_t i;

	for (i = 0; i < len; i++)
		if (((const uint8_t *)buf)[i] != c)
			return false;
	return true;
}

/*
 * The seed driver's fault draw, written out again from its description
 * (DESIGN.md §4) rather than taken from the library:
 * state = state * 1103515245 + 12345 in 32 bits; the I/O fails when
 * (state % 0x80000000) % 10000 < n.
 */
static inline bool
tl_lcg_fails(uint32_t *state, unsigned n)
{
	*state = (uint32_t)(*state * 1103515245ul + 12345ul);
	return (*state & 0x7fffffffu) % 10000u < n;
}

/* Remove the scratch directory and what is in it. */
static inline void
tl_cleanup(void)
{
	char cmd[300];

	if (tl_dir()[0] != '\0') {
		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tl_dir());
		if (system(cmd) != 0)
			fprintf(stderr, "cannot remove %s\n", tl_dir());
	}
}

/*
 * setup() and teardown() for a program whose tests share one scratch
 * image: setup makes name (size bytes, pattern seed, see tl_image) and
 * stores its path in var; teardown frees the path.
 */
#define TL_IMAGE_FIXTURE(var, name, size, seed)				\
static int								\
setup(void **state)							\
{									\
	(void)state;							\
	var = tl_image(name, size, seed);				\
	return 0;							\
}									\
									\
static int								\
teardown(void **state)							\
{									\
	(void)state;							\
	free(var);							\
	return 0;							\
}

/*
 * The XOR of 16-bit words over NetBSD's checksummed disklabel range,
 * computed from byte offsets of NetBSD's layout (148 bytes of header,
 * 16-byte partitions), not from the library's code.  A correct label
 * gives 0.
 */
static inline uint16_t
tl_label_xor(const struct rumpblk_disklabel *dl)
{
	const unsigned char *p = (const unsigned char *)dl;
	size_t end = 148 + 16 * (size_t)dl->d_npartitions, i;
	uint16_t sum = 0, w;

	for (i = 0; i < end; i += 2) {
		memcpy(&w, p + i, 2);
		sum ^= w;
	}
	return sum;
}

#endif
