/*
 * Helpers of the fault rule tests: an instance over a patterned image,
 * the medium read straight from the host file (never through rumpblk),
 * a fault log captured in memory, and small readers of its records.
 */
#ifndef RUMPBLK_FAULTLIB_H
#define RUMPBLK_FAULTLIB_H

#include "testlib.h"

struct fl_env {
	struct rumpblk	*rb;
	char		*img;
	int		unit;
	uint64_t	size;
	unsigned	seed;		/* the image's pattern */
	FILE		*log;
	char		*logbuf;
	size_t		loglen;
};

static inline void
fl_open(struct fl_env *e, const char *name, uint64_t size, unsigned pseed)
{
	struct rumpblk_config cfg;

	memset(e, 0, sizeof(*e));
	e->size = size;
	e->seed = pseed;
	e->img = tl_image(name, size, pseed);
	tl_config(&cfg);
	cfg.fail_seed = 42;
	cfg.fail_seed_set = true;
	tl_eq(rumpblk_create(&cfg, &e->rb), 0);
	tl_eq(rumpblk_register(e->rb, e->img, 0, RUMPBLK_SIZENOTSET,
	    &e->unit), 0);
	e->log = open_memstream(&e->logbuf, &e->loglen);
	assert(e->log != NULL);
	tl_eq(rumpblk_fault_log(e->rb, e->log), 0);
}

/* Destroy the instance; the image stays for fl_unlink. */
static inline void
fl_close_keep(struct fl_env *e)
{
	tl_eq(rumpblk_destroy(e->rb), 0);
	fclose(e->log);
	free(e->logbuf);
}

static inline void
fl_unlink(struct fl_env *e)
{
	unlink(e->img);
	free(e->img);
}

static inline void
fl_close(struct fl_env *e)
{
	fl_close_keep(e);
	fl_unlink(e);
}

/* Arm a rule that must be good. */
static inline void
fl_arm(struct fl_env *e, const char *rule)
{
	char err[256] = "", id[RUMPBLK_FAULT_IDMAX];
	int error = rumpblk_fault_add(e->rb, rule, id, sizeof(id), err,
	    sizeof(err));

	if (error != 0)
		tl_fail("arming '%s': error %d: %s\n", rule, error, err);
}

/* The medium, read from the host file. */
static inline void
fl_medium(struct fl_env *e, uint64_t off, void *buf, size_t len)
{
	int fd = open(e->img, O_RDONLY);

	assert(fd != -1);
	assert(pread(fd, buf, len, (off_t)off) == (ssize_t)len);
	close(fd);
}

/* Does the medium hold the image's original pattern over [off, +len)? */
static inline bool
fl_is_pattern(struct fl_env *e, uint64_t off, size_t len)
{
	unsigned char *b = malloc(len);
	bool ok = true;

	fl_medium(e, off, b, len);
	for (size_t i = 0; i < len && ok; i++)
		ok = b[i] == tl_pattern(off + i, e->seed);
	free(b);
	return ok;
}

static inline bool
fl_is_byte(const void *buf, size_t len, unsigned char c)
{
	const unsigned char *b = buf;

	for (size_t i = 0; i < len; i++)
		if (b[i] != c)
			return false;
	return true;
}

/* The log so far, NUL-terminated (valid until the next write). */
static inline const char *
fl_log(struct fl_env *e)
{
	fflush(e->log);
	return e->logbuf != NULL ? e->logbuf : "";
}

static inline size_t
fl_log_lines(struct fl_env *e)
{
	size_t n = 0;

	for (const char *p = fl_log(e); *p != '\0'; p++)
		n += *p == '\n';
	return n;
}

/* The integer after "key": in the nth (0-based) record, or -1. */
static inline long long
fl_log_int(struct fl_env *e, size_t nth, const char *key)
{
	const char *p = fl_log(e), *q;
	char pat[64];

	for (; nth > 0 && p != NULL; nth--)
		if ((p = strchr(p, '\n')) != NULL)
			p++;
	if (p == NULL)
		return -1;
	snprintf(pat, sizeof(pat), "\"%s\":", key);
	if ((q = strstr(p, pat)) == NULL || ((p = strchr(p, '\n')) != NULL &&
	    q > p))
		return -1;
	return strtoll(q + strlen(pat), NULL, 10);
}

/* Synchronous I/O at a byte offset. */
static inline int
fl_io(struct fl_env *e, int op, uint64_t off, void *buf, size_t len,
    size_t *resid)
{
	return tl_io(e->rb, e->unit, op, (int64_t)(off >> 9), buf, len,
	    resid);
}

#endif
