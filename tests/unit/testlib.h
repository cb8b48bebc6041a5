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

#endif
