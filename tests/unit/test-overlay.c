/*
 * test-overlay: the "overlay:PATH" backing, a copy-on-write view of an
 * image (librumpblk(3), rumpblk_register_spec).  Reads see PATH until
 * written; writes, trims and write-zeroes go to a private delta and PATH
 * never changes (hashed before and after, and opened read-only); views
 * of one PATH are independent; reads racing writes see each sector old
 * or new, never a mixture; deregistration frees everything (the test
 * runs under valgrind); a 1 TiB sparse PATH works in little memory.
 *
 * The overlay has its own bottom stage: on the matrix's mmap, direct and
 * uring runs, registering under the instance's backend gives EINVAL
 * (checked), and the view is registered with auto instead.
 */
#include <dirent.h>
#include <pthread.h>
#include <stdatomic.h>

#include "testlib.h"

#define MB		(1ull << 20)
#define SS		512u			/* tl_config's sector size */
#define IMGSIZE		(40 * MB)		/* > two 16 MiB map chunks */
#define CHUNKB		(16 * MB)		/* 2^15 sectors of 512 bytes */
#define OLD		3u			/* the image's pattern seed */
#define NEW		9u			/* the writers' */

static char *img;

/* "overlay:" path, registered; the matrix's backend first (see top). */
static int
ov_register(struct rumpblk *rb, const char *path,
    const struct rumpblk_unit_opts *oin)
{
	struct rumpblk_unit_opts o;
	enum rumpblk_backend b = tl_backend();
	char *spec;
	int unit = -1, error;

	if (oin != NULL)
		o = *oin;
	else
		rumpblk_unit_opts_init(&o);
	assert(asprintf(&spec, "overlay:%s", path) > 0);
	error = rumpblk_register_spec(rb, spec, &o, &unit);
	if (!o.uo_backend_set && b != RUMPBLK_BACKEND_AUTO &&
	    b != RUMPBLK_BACKEND_PIO) {
		tl_eq(error, EINVAL);
		o.uo_backend_set = true;
		o.uo_backend = RUMPBLK_BACKEND_AUTO;
		error = rumpblk_register_spec(rb, spec, &o, &unit);
	}
	if (error != 0)
		tl_fail("register %s: %s\n", spec, strerror(error));
	free(spec);
	return unit;
}

static void
io_ok(struct rumpblk *rb, int unit, int flags, uint64_t off, void *data,
    size_t len)
{
	size_t resid = 1;
	int error;

	error = tl_io(rb, unit, flags, (int64_t)(off / 512), data, len,
	    &resid);
	if (error != 0 || resid != 0)
		tl_fail("op %#x at %" PRIu64 " len %zu: %s, resid %zu\n",
		    flags, off, len, strerror(error), resid);
}

/* Read [off, off+len) of the unit and compare with ref. */
static void
check_range(struct rumpblk *rb, int unit, const uint8_t *ref, uint64_t off,
    size_t len)
{
	uint8_t *buf = malloc(MB);
	size_t n, i;

	assert(buf != NULL);
	while (len > 0) {
		n = len > MB ? MB : len;
		io_ok(rb, unit, RUMPBLK_B_READ, off, buf, n);
		if (memcmp(buf, ref + off, n) != 0) {
			for (i = 0; buf[i] == ref[off + i]; i++)
				;
			tl_fail("unit %d differs at byte %" PRIu64 "\n",
			    unit, off + i);
		}
		off += n;
		len -= n;
	}
	free(buf);
}

/* FNV-1a of a whole file. */
static uint64_t
hash_file(const char *path)
{
	uint64_t h = 0xcbf29ce484222325ull;
	uint8_t *buf = malloc(MB);
	ssize_t n, i;
	int fd = open(path, O_RDONLY);

	assert(fd != -1 && buf != NULL);
	while ((n = read(fd, buf, MB)) > 0)
		for (i = 0; i < n; i++)
			h = (h ^ buf[i]) * 0x100000001b3ull;
	assert(n == 0);
	close(fd);
	free(buf);
	return h;
}

/* The image's bytes, for a reference to change. */
static uint8_t *
image_copy(uint64_t size)
{
	uint8_t *ref = malloc(size);

	assert(ref != NULL);
	tl_host_read(img, ref, size, 0);
	return ref;
}

/* Descriptors of this process whose target starts with prefix; the
 * access mode of the last in *accp. */
static int
fds_to(const char *prefix, int *accp)
{
	char lp[300], tgt[512], line[128];
	struct dirent *de;
	DIR *d = opendir("/proc/self/fd");
	FILE *f;
	ssize_t n;
	unsigned flags;
	int count = 0;

	assert(d != NULL);
	while ((de = readdir(d)) != NULL) {
		if (de->d_name[0] == '.')
			continue;
		snprintf(lp, sizeof(lp), "/proc/self/fd/%s", de->d_name);
		if ((n = readlink(lp, tgt, sizeof(tgt) - 1)) <= 0)
			continue;
		tgt[n] = '\0';
		if (strncmp(tgt, prefix, strlen(prefix)) != 0)
			continue;
		count++;
		snprintf(lp, sizeof(lp), "/proc/self/fdinfo/%s", de->d_name);
		if (accp != NULL && (f = fopen(lp, "r")) != NULL) {
			while (fgets(line, sizeof(line), f) != NULL)
				if (sscanf(line, "flags: %o", &flags) == 1)
					*accp = (int)(flags & O_ACCMODE);
			fclose(f);
		}
	}
	closedir(d);
	return count;
}

static int
fd_count(void)
{
	return fds_to("", NULL);
}

/* 1. Reads see the base; the unit says what it is. */
static void
reads_base(void **state)
{
	struct rumpblk *rb = tl_create(NULL);
	struct rumpblk_unitinfo ui;
	uint8_t *ref = image_copy(IMGSIZE);
	int unit, acc = -1;
	char *spec;

	(void)state;
	unit = ov_register(rb, img, NULL);
	check_range(rb, unit, ref, 0, IMGSIZE);
	tl_eq(rumpblk_unitinfo(rb, unit, &ui), 0);
	assert(asprintf(&spec, "overlay:%s", img) > 0);
	tl_true(strcmp(ui.ui_path, spec) == 0);
	tl_eq(ui.ui_backend, RUMPBLK_BACKEND_PIO);
	tl_eq(ui.ui_size, IMGSIZE);
	tl_eq(ui.ui_ftype, RUMPBLK_FT_REG);
	tl_eq(ui.ui_mode, RUMPBLK_FREAD | RUMPBLK_FWRITE);
	tl_eq(rumpblk_open(rb, unit, RUMPBLK_FREAD | RUMPBLK_FWRITE), 0);
	/* PATH is open, read-only. */
	tl_eq(fds_to(img, &acc), 1);
	tl_eq(acc, O_RDONLY);
	free(spec);
	free(ref);
	tl_eq(rumpblk_destroy(rb), 0);
}

/* 2. Writes of assorted sizes and places read back; PATH unchanged. */
static void
writes(void **state)
{
	static const struct { uint64_t off; size_t len; } w[] = {
		{ 1 * SS, SS },				/* odd sectors */
		{ 3 * SS, SS },
		{ 12345 * SS, SS },
		{ 7 * SS, 4096 },			/* not 4 KiB aligned */
		{ 63 * SS, 3 * SS },			/* across a word */
		{ 100 * SS, 64 * SS },			/* a whole word */
		{ CHUNKB - 2 * SS, 4 * SS },		/* across chunk 0/1 */
		{ CHUNKB - 1 * SS, SS },		/* chunk 0's last */
		{ 2 * CHUNKB - 512 * 1024, MB },	/* across chunk 1/2 */
		{ 5 * MB + 3 * SS, 777 * SS },
		{ 6 * MB, 2 * MB },			/* over the next */
		{ 0, SS },				/* first sector */
		{ IMGSIZE - SS, SS },			/* last sector */
		{ IMGSIZE - 3 * MB - SS, 3 * MB + SS },	/* to the end */
	};
	struct rumpblk *rb = tl_create(NULL);
	uint8_t *ref = image_copy(IMGSIZE), *buf = malloc(3 * MB + SS);
	uint64_t h0 = hash_file(img), seed = 77, off;
	size_t i, len;
	int unit, flags;

	(void)state;
	assert(buf != NULL);
	unit = ov_register(rb, img, NULL);
	for (i = 0; i < sizeof(w) / sizeof(w[0]); i++) {
		tl_fill(buf, w[i].len, w[i].off, NEW + (unsigned)i);
		/* Every other one asynchronous: the worker pool's path. */
		flags = RUMPBLK_B_WRITE | (i % 2 ? RUMPBLK_B_ASYNC : 0);
		io_ok(rb, unit, flags, w[i].off, buf, w[i].len);
		memcpy(ref + w[i].off, buf, w[i].len);
		/* Around it: what was there. */
		off = w[i].off >= 8 * SS ? w[i].off - 8 * SS : 0;
		len = w[i].len + 16 * SS;
		if (off + len > IMGSIZE)
			len = IMGSIZE - off;
		check_range(rb, unit, ref, off, len);
	}
	/* Random ones, 1 to 128 sectors anywhere. */
	for (i = 0; i < 200; i++) {
		len = (tl_rand(&seed) % 128 + 1) * SS;
		off = tl_rand(&seed) % ((IMGSIZE - len) / SS) * SS;
		tl_fill(buf, len, off, NEW + 100 + (unsigned)i);
		io_ok(rb, unit, RUMPBLK_B_WRITE, off, buf, len);
		memcpy(ref + off, buf, len);
	}
	check_range(rb, unit, ref, 0, IMGSIZE);
	/* FLUSH, FUA and DIOCCACHESYNC succeed, and change nothing. */
	io_ok(rb, unit, RUMPBLK_B_FLUSH, 0, NULL, 0);
	tl_fill(buf, SS, 9 * SS, NEW);
	io_ok(rb, unit, RUMPBLK_B_WRITE | RUMPBLK_B_FUA, 9 * SS, buf, SS);
	memcpy(ref + 9 * SS, buf, SS);
	tl_eq(rumpblk_ioctl(rb, unit, RUMPBLK_DIOCCACHESYNC, NULL), 0);
	check_range(rb, unit, ref, 0, IMGSIZE);
	tl_eq(hash_file(img), h0);
	tl_eq(rumpblk_destroy(rb), 0);
	tl_eq(hash_file(img), h0);
	free(buf);
	free(ref);
}

/* 3. Trim and write-zeroes read as zeroes, written or not before. */
static void
trim_zero(void **state)
{
	static const struct { int op; uint64_t off; size_t len; } z[] = {
		{ RUMPBLK_B_TRIM, 1 * MB, 64 * 1024 },	/* written first */
		{ RUMPBLK_B_TRIM, 3 * MB + SS, 5 * SS },	/* base only */
		{ RUMPBLK_B_ZERO, 2 * MB, 64 * 1024 },
		{ RUMPBLK_B_ZERO | RUMPBLK_B_NOHOLE, 4 * MB + 7 * SS, 9 * SS },
		{ RUMPBLK_B_ZERO, CHUNKB - 4096, 8192 },	/* across chunks */
		{ RUMPBLK_B_TRIM | RUMPBLK_B_ASYNC, 9 * MB, 3 * SS },
	};
	struct rumpblk *rb = tl_create(NULL);
	uint8_t *ref = image_copy(IMGSIZE), *buf = malloc(MB);
	uint64_t h0 = hash_file(img);
	size_t i;
	int unit;

	(void)state;
	assert(buf != NULL);
	unit = ov_register(rb, img, NULL);
	/* Write some of the ranges first, and beyond them. */
	tl_fill(buf, MB, 1 * MB - 4096, NEW);
	io_ok(rb, unit, RUMPBLK_B_WRITE, 1 * MB - 4096, buf, MB);
	memcpy(ref + 1 * MB - 4096, buf, MB);
	tl_fill(buf, 32 * SS, 4 * MB, NEW);
	io_ok(rb, unit, RUMPBLK_B_WRITE, 4 * MB, buf, 32 * SS);
	memcpy(ref + 4 * MB, buf, 32 * SS);
	for (i = 0; i < sizeof(z) / sizeof(z[0]); i++) {
		io_ok(rb, unit, z[i].op, z[i].off, NULL, z[i].len);
		memset(ref + z[i].off, 0, z[i].len);
		check_range(rb, unit, ref, z[i].off - 16 * SS,
		    z[i].len + 32 * SS);
	}
	/* A write over a trimmed range is data again. */
	tl_fill(buf, 2 * SS, 1 * MB + 8 * SS, NEW + 1);
	io_ok(rb, unit, RUMPBLK_B_WRITE, 1 * MB + 8 * SS, buf, 2 * SS);
	memcpy(ref + 1 * MB + 8 * SS, buf, 2 * SS);
	check_range(rb, unit, ref, 0, IMGSIZE);
	tl_eq(hash_file(img), h0);
	tl_eq(rumpblk_destroy(rb), 0);
	free(buf);
	free(ref);
}

/* 4. Extents: data where the base or the delta has it. */
static void
extents(void **state)
{
	struct rumpblk *rb = tl_create(NULL);
	char *sparse = tl_image("sparse.img", 8 * MB, 0);
	struct rumpblk_extents *ex = calloc(1, sizeof(*ex) +
	    16 * sizeof(ex->ex_ext[0]));
	uint8_t *buf = malloc(64 * 1024);
	int fd, unit;

	(void)state;
	assert(ex != NULL && buf != NULL);
	/* The base: data in [4 MiB, 5 MiB), holes elsewhere. */
	fd = open(sparse, O_WRONLY);
	tl_fill(buf, 64 * 1024, 0, OLD);
	for (int i = 0; i < 16; i++)
		assert(pwrite(fd, buf, 64 * 1024,
		    (off_t)(4 * MB + (uint64_t)i * 64 * 1024)) == 64 * 1024);
	assert(fsync(fd) == 0);
	close(fd);
	unit = ov_register(rb, sparse, NULL);
	io_ok(rb, unit, RUMPBLK_B_WRITE, 1 * MB, buf, 64 * 1024);
	/* A trim of base data: the delta's hole. */
	io_ok(rb, unit, RUMPBLK_B_TRIM, 4 * MB + 512 * 1024, NULL, 512 * 1024);
	ex->ex_max = 16;
	io_ok(rb, unit, RUMPBLK_B_EXTENTS, 0, ex, 8 * MB);
	tl_eq(ex->ex_count, 5);
	tl_eq(ex->ex_ext[0].e_length, 1 * MB);
	tl_true(ex->ex_ext[0].e_flags & RUMPBLK_EXTENT_HOLE);
	tl_eq(ex->ex_ext[1].e_length, 64 * 1024);
	tl_eq(ex->ex_ext[1].e_flags, 0);
	tl_eq(ex->ex_ext[2].e_length, 3 * MB - 64 * 1024);
	tl_true(ex->ex_ext[2].e_flags & RUMPBLK_EXTENT_HOLE);
	tl_eq(ex->ex_ext[3].e_length, 512 * 1024);
	tl_eq(ex->ex_ext[3].e_flags, 0);
	tl_eq(ex->ex_ext[4].e_length, 3 * MB + 512 * 1024);
	tl_true(ex->ex_ext[4].e_flags & RUMPBLK_EXTENT_ZERO);
	/* A short answer stays contiguous from the start. */
	ex->ex_max = 2;
	io_ok(rb, unit, RUMPBLK_B_EXTENTS, 0, ex, 8 * MB);
	tl_eq(ex->ex_count, 2);
	tl_eq(ex->ex_ext[1].e_length, 64 * 1024);
	tl_eq(rumpblk_destroy(rb), 0);
	free(sparse);
	free(buf);
	free(ex);
}

/* 5. Views of one PATH are independent; naming them; options. */
static void
independent(void **state)
{
	struct rumpblk *rb = tl_create(NULL);
	struct rumpblk_unit_opts o;
	uint8_t *ref = image_copy(IMGSIZE), *buf = malloc(MB);
	char *spec;
	int a, b, f, c, unit;

	(void)state;
	assert(buf != NULL);
	a = ov_register(rb, img, NULL);
	b = ov_register(rb, img, NULL);
	tl_true(a != b);
	tl_fill(buf, MB, 2 * MB, NEW);
	io_ok(rb, a, RUMPBLK_B_WRITE, 2 * MB, buf, MB);
	tl_fill(buf, MB, 2 * MB + 4096, NEW + 1);
	io_ok(rb, b, RUMPBLK_B_WRITE, 2 * MB + 4096, buf, MB);
	io_ok(rb, b, RUMPBLK_B_TRIM, 10 * MB, NULL, MB);
	io_ok(rb, a, RUMPBLK_B_READ, 2 * MB, buf, MB);
	tl_eq(tl_check(buf, MB, 2 * MB, NEW), -1);
	io_ok(rb, a, RUMPBLK_B_READ, 10 * MB, buf, MB);
	tl_eq(tl_check(buf, MB, 10 * MB, OLD), -1);
	io_ok(rb, b, RUMPBLK_B_READ, 2 * MB + 4096, buf, MB);
	tl_eq(tl_check(buf, MB, 2 * MB + 4096, NEW + 1), -1);
	io_ok(rb, b, RUMPBLK_B_READ, 2 * MB, buf, 4096);
	tl_eq(tl_check(buf, 4096, 2 * MB, OLD), -1);

	/* A read-only host unit of PATH beside them. */
	rumpblk_unit_opts_init(&o);
	o.uo_readonly = true;
	tl_eq(rumpblk_register_spec(rb, img, &o, &f), 0);
	tl_true(f != a && f != b);
	/* Deregistering by name matches no overlay, of either name. */
	assert(asprintf(&spec, "overlay:%s", img) > 0);
	tl_eq(rumpblk_deregister(rb, spec), ENOENT);
	tl_eq(rumpblk_deregister(rb, img), 0);	/* the host unit only */
	io_ok(rb, a, RUMPBLK_B_READ, 2 * MB, buf, MB);
	tl_eq(tl_check(buf, MB, 2 * MB, NEW), -1);
	tl_eq(rumpblk_deregister_unit(rb, a), 0);
	tl_eq(tl_io(rb, a, RUMPBLK_B_READ, 0, buf, SS, NULL), ENXIO);
	io_ok(rb, b, RUMPBLK_B_READ, 2 * MB + 4096, buf, MB);
	tl_eq(tl_check(buf, MB, 2 * MB + 4096, NEW + 1), -1);
	/* A new view of PATH starts from PATH. */
	c = ov_register(rb, img, NULL);
	check_range(rb, c, ref, 0, IMGSIZE);

	/* A window of PATH, as for a host file. */
	rumpblk_unit_opts_init(&o);
	o.uo_offset = 3 * MB + SS;
	o.uo_size = 2 * MB;
	unit = ov_register(rb, img, &o);
	check_range(rb, unit, ref + o.uo_offset, 0, 2 * MB);
	tl_fill(buf, SS, 0, NEW);
	io_ok(rb, unit, RUMPBLK_B_WRITE, 2 * MB - SS, buf, SS);
	tl_eq(tl_io(rb, unit, RUMPBLK_B_READ, 2 * MB / SS, buf, SS, NULL),
	    0);
	o.uo_offset = IMGSIZE;
	o.uo_size = RUMPBLK_SIZENOTSET;
	tl_eq(rumpblk_register_spec(rb, spec, &o, &unit), EINVAL);

	/* uo_readonly: a read-only view. */
	rumpblk_unit_opts_init(&o);
	o.uo_readonly = true;
	unit = ov_register(rb, img, &o);
	tl_eq(rumpblk_open(rb, unit, RUMPBLK_FWRITE), EACCES);
	tl_eq(tl_io(rb, unit, RUMPBLK_B_WRITE, 0, buf, SS, NULL), EROFS);

	/* Bad specs, and backends other than auto and pio. */
	tl_eq(rumpblk_register_spec(rb, "overlay:", NULL, &unit), EINVAL);
	tl_eq(rumpblk_register_spec(rb, "overlay:/nonexistent/x", NULL,
	    &unit), ENOENT);
	rumpblk_unit_opts_init(&o);
	o.uo_backend_set = true;
	o.uo_backend = RUMPBLK_BACKEND_MMAP;
	tl_eq(rumpblk_register_spec(rb, spec, &o, &unit), EINVAL);
	o.uo_backend = RUMPBLK_BACKEND_DIRECT;
	tl_eq(rumpblk_register_spec(rb, spec, &o, &unit), EINVAL);
	o.uo_backend = RUMPBLK_BACKEND_PIO;
	tl_eq(rumpblk_register_spec(rb, spec, &o, &unit), 0);
	tl_true(unit != b && unit != c);

	tl_eq(rumpblk_destroy(rb), 0);
	free(spec);
	free(buf);
	free(ref);
}

/* 6. 4 KiB sectors: requests at 512-byte offsets cover part of one. */
static void
sector4k(void **state)
{
	static const struct { int op; uint64_t off; size_t len; } w[] = {
		{ RUMPBLK_B_WRITE, 512, 4096 },		/* two parts */
		{ RUMPBLK_B_WRITE, 8192 + 1024, 8192 },
		{ RUMPBLK_B_WRITE, 40960, 4096 },	/* whole */
		{ RUMPBLK_B_ZERO, 65536 + 1536, 4096 },
		{ RUMPBLK_B_TRIM, 81920 + 3584, 4096 },
		{ RUMPBLK_B_WRITE, 81920 + 512, 4096 },	/* over the trim */
		{ RUMPBLK_B_WRITE, MB, 4096 },		/* cut at the end */
		{ RUMPBLK_B_WRITE, MB - 512, 4096 },
	};
	struct rumpblk_config cfg;
	struct rumpblk *rb;
	uint64_t size = MB + 1536, h0;
	char *odd = tl_image("odd.img", size, OLD);
	uint8_t *ref = malloc(size), *buf = malloc(8192);
	size_t i, n, resid;
	int unit;

	(void)state;
	assert(ref != NULL && buf != NULL);
	tl_host_read(odd, ref, size, 0);
	h0 = hash_file(odd);
	tl_config(&cfg);
	cfg.sectshift = 12;
	rb = tl_create(&cfg);
	unit = ov_register(rb, odd, NULL);
	for (i = 0; i < sizeof(w) / sizeof(w[0]); i++) {
		n = w[i].off + w[i].len > size ? size - w[i].off : w[i].len;
		if (w[i].op == RUMPBLK_B_WRITE) {
			tl_fill(buf, w[i].len, w[i].off, NEW + (unsigned)i);
			memcpy(ref + w[i].off, buf, n);
		} else
			memset(ref + w[i].off, 0, n);
		tl_eq(tl_io(rb, unit, w[i].op, (int64_t)(w[i].off / 512),
		    w[i].op == RUMPBLK_B_WRITE ? buf : NULL, w[i].len,
		    &resid), 0);
		tl_eq(resid, w[i].len - n);
	}
	for (i = 0; i < size; i += n) {
		n = size - i > 4096 ? 4096 : size - i;
		tl_eq(tl_io(rb, unit, RUMPBLK_B_READ, (int64_t)(i / 512), buf,
		    4096, &resid), 0);
		tl_eq(resid, 4096 - n);
		if (memcmp(buf, ref + i, n) != 0)
			tl_fail("4 KiB sectors: differs in [%zu, %zu)\n", i,
			    i + n);
	}
	tl_eq(rumpblk_destroy(rb), 0);
	tl_eq(hash_file(odd), h0);
	free(odd);
	free(ref);
	free(buf);
}

/* 7. Concurrency: each sector is old or new, never a mixture. */
#define CSIZE		(4 * MB)
#define CSECT		(CSIZE / SS)
#define TRIMFROM	(3 * MB)	/* the trimmer's; writers below */
#define NWRITERS	4
#define NWRITES		400

struct conc {
	struct rumpblk	*c_rb;
	int		c_unit;
	atomic_int	c_running;
	atomic_int	c_bad;
	atomic_uchar	c_state[CSECT];	/* 0 old, 1 new, 2 zero: done */
};

struct cthr {
	struct conc	*t_c;
	int		t_id;
};

/*
 * Writer i: half its writes in its own quarter of [0, TRIMFROM), half
 * anywhere below TRIMFROM, overlapping the others.  Every writer writes
 * the NEW pattern, so that overlapping writes agree on every byte and
 * "new" means one thing.
 */
static void *
writer(void *arg)
{
	struct cthr *t = arg;
	struct conc *c = t->t_c;
	uint64_t seed = 1000 + (uint64_t)t->t_id, off, len, s;
	uint64_t quarter = TRIMFROM / NWRITERS;
	uint8_t *buf = malloc(64 * SS);
	int i, flags;

	assert(buf != NULL);
	for (i = 0; i < NWRITES; i++) {
		len = (tl_rand(&seed) % 64 + 1) * SS;
		if (i % 2 == 0)
			off = t->t_id * quarter + tl_rand(&seed) %
			    ((quarter - len) / SS) * SS;
		else
			off = tl_rand(&seed) % ((TRIMFROM - len) / SS) * SS;
		tl_fill(buf, len, off, NEW);
		flags = RUMPBLK_B_WRITE | (i % 3 == 0 ? RUMPBLK_B_ASYNC : 0);
		if (tl_io(c->c_rb, c->c_unit, flags, (int64_t)(off / SS), buf,
		    len, NULL) != 0)
			atomic_fetch_add(&c->c_bad, 1);
		for (s = off / SS; s < (off + len) / SS; s++)
			atomic_store(&c->c_state[s], 1);
	}
	free(buf);
	atomic_fetch_sub(&c->c_running, 1);
	return NULL;
}

/* Trims and zeroes in [TRIMFROM, CSIZE): old or zero. */
static void *
trimmer(void *arg)
{
	struct conc *c = arg;
	uint64_t seed = 4242, off, len, s;
	int i;

	for (i = 0; i < NWRITES / 2; i++) {
		len = (tl_rand(&seed) % 16 + 1) * SS;
		off = TRIMFROM + tl_rand(&seed) % ((CSIZE - TRIMFROM - len) /
		    SS) * SS;
		if (tl_io(c->c_rb, c->c_unit, i % 2 ? RUMPBLK_B_TRIM :
		    RUMPBLK_B_ZERO, (int64_t)(off / SS), NULL, len, NULL) != 0)
			atomic_fetch_add(&c->c_bad, 1);
		for (s = off / SS; s < (off + len) / SS; s++)
			atomic_store(&c->c_state[s], 2);
	}
	atomic_fetch_sub(&c->c_running, 1);
	return NULL;
}

/*
 * Sector s of a read: old, new (below TRIMFROM) or zero (above).  With
 * final set, the state the threads recorded must be what is there.
 */
static bool
sector_ok(const uint8_t *p, uint64_t s, bool final, int state)
{
	bool old = tl_check(p, SS, s * SS, OLD) == -1;
	bool other = s * SS < TRIMFROM ? tl_check(p, SS, s * SS, NEW) == -1 :
	    tl_all(p, SS, 0);

	if (final)
		return state == 0 ? old : other;
	return old || other;
}

static void *
reader(void *arg)
{
	struct conc *c = arg;
	uint64_t seed = 99, off, len, s;
	uint8_t *buf = malloc(128 * SS);

	assert(buf != NULL);
	while (atomic_load(&c->c_running) > 0) {
		len = (tl_rand(&seed) % 128 + 1) * SS;
		off = tl_rand(&seed) % ((CSIZE - len) / SS) * SS;
		if (tl_io(c->c_rb, c->c_unit, RUMPBLK_B_READ |
		    (len > 64 * SS ? RUMPBLK_B_ASYNC : 0), (int64_t)(off / SS),
		    buf, len, NULL) != 0) {
			atomic_fetch_add(&c->c_bad, 1);
			continue;
		}
		for (s = 0; s < len / SS; s++)
			if (!sector_ok(buf + s * SS, off / SS + s, false, 0)) {
				print_error("sector %" PRIu64 " torn\n",
				    off / SS + s);
				atomic_fetch_add(&c->c_bad, 1);
			}
	}
	free(buf);
	return NULL;
}

static void
concurrent(void **state)
{
	struct conc *c = calloc(1, sizeof(*c));
	struct cthr t[NWRITERS];
	pthread_t th[NWRITERS + 2];
	char *cimg = tl_image("conc.img", CSIZE, OLD);
	uint8_t *buf = malloc(MB);
	uint64_t s, h0 = hash_file(cimg);
	int i;

	(void)state;
	assert(c != NULL && buf != NULL);
	c->c_rb = tl_create(NULL);
	c->c_unit = ov_register(c->c_rb, cimg, NULL);
	atomic_store(&c->c_running, NWRITERS + 1);
	for (i = 0; i < NWRITERS; i++) {
		t[i].t_c = c;
		t[i].t_id = i;
		tl_eq(pthread_create(&th[i], NULL, writer, &t[i]), 0);
	}
	tl_eq(pthread_create(&th[NWRITERS], NULL, trimmer, c), 0);
	tl_eq(pthread_create(&th[NWRITERS + 1], NULL, reader, c), 0);
	for (i = 0; i < NWRITERS + 2; i++)
		tl_eq(pthread_join(th[i], NULL), 0);
	tl_eq(atomic_load(&c->c_bad), 0);
	/* Afterwards: exactly what the threads did. */
	for (s = 0; s < CSECT; s++) {
		if (s % (MB / SS) == 0)
			io_ok(c->c_rb, c->c_unit, RUMPBLK_B_READ, s * SS, buf,
			    MB);
		if (!sector_ok(buf + (s % (MB / SS)) * SS, s, true,
		    atomic_load(&c->c_state[s])))
			tl_fail("sector %" PRIu64 " is not what was done "
			    "(state %d)\n", s, atomic_load(&c->c_state[s]));
	}
	tl_eq(rumpblk_destroy(c->c_rb), 0);
	tl_eq(hash_file(cimg), h0);
	free(cimg);
	free(buf);
	free(c);
}

/* 8. Deregistration and destroy free everything; the delta has no name. */
static void
teardown_frees(void **state)
{
	char *dir = tl_path("tmpdir"), *old = getenv("TMPDIR");
	char *saved = old != NULL ? strdup(old) : NULL;
	struct rumpblk *rb;
	uint8_t *buf = malloc(MB);
	int fds, a, b, i;
	DIR *d;
	struct dirent *de;

	(void)state;
	assert(buf != NULL);
	assert(mkdir(dir, 0700) == 0);
	setenv("TMPDIR", dir, 1);
	fds = fd_count();
	rb = tl_create(NULL);
	for (i = 0; i < 3; i++) {
		a = ov_register(rb, img, NULL);
		/* Two descriptors: PATH, and the delta, in $TMPDIR. */
		tl_eq(fds_to(dir, NULL), 1);
		tl_fill(buf, MB, (uint64_t)i * MB, NEW);
		io_ok(rb, a, RUMPBLK_B_WRITE, (uint64_t)i * MB, buf, MB);
		io_ok(rb, a, RUMPBLK_B_WRITE | RUMPBLK_B_ASYNC, CHUNKB, buf,
		    MB);
		tl_eq(rumpblk_deregister_unit(rb, a), 0);
		tl_eq(fds_to(dir, NULL), 0);
	}
	/* Nothing was left by name. */
	assert((d = opendir(dir)) != NULL);
	while ((de = readdir(d)) != NULL)
		tl_true(de->d_name[0] == '.');
	closedir(d);
	/* Destroy with views live. */
	a = ov_register(rb, img, NULL);
	b = ov_register(rb, img, NULL);
	io_ok(rb, a, RUMPBLK_B_WRITE, 0, buf, MB);
	io_ok(rb, b, RUMPBLK_B_TRIM, 0, NULL, MB);
	tl_eq(fds_to(dir, NULL), 2);
	tl_eq(rumpblk_destroy(rb), 0);
	tl_eq(fds_to(dir, NULL), 0);
	tl_eq(fd_count(), fds);
	if (saved != NULL)
		setenv("TMPDIR", saved, 1);
	else
		unsetenv("TMPDIR");
	free(saved);
	free(dir);
	free(buf);
}

/* Resident set size, KiB. */
static long
rss_kib(void)
{
	char line[128];
	long kib = -1;
	FILE *f = fopen("/proc/self/status", "r");

	assert(f != NULL);
	while (fgets(line, sizeof(line), f) != NULL)
		if (sscanf(line, "VmRSS: %ld", &kib) == 1)
			break;
	fclose(f);
	return kib;
}

/* 9. A 1 TiB sparse PATH, a few MiB written all over it, small memory. */
static void
huge_sparse(void **state)
{
	const uint64_t size = 1ull << 40;
	struct rumpblk *rb = tl_create(NULL);
	char *big = tl_image("big.img", size, 0);
	uint64_t *offs = malloc(256 * sizeof(*offs)), seed = 5;
	uint8_t *buf = malloc(16384);
	struct stat st;
	long rss0, rss1;
	int unit, i;

	(void)state;
	assert(offs != NULL && buf != NULL);
	unit = ov_register(rb, big, NULL);
	rss0 = rss_kib();
	for (i = 0; i < 256; i++) {
		offs[i] = tl_rand(&seed) % ((size - 16384) / SS) * SS;
		tl_fill(buf, 16384, offs[i], NEW);
		io_ok(rb, unit, RUMPBLK_B_WRITE, offs[i], buf, 16384);
	}
	io_ok(rb, unit, RUMPBLK_B_WRITE, size - 16384, buf, 16384);
	rss1 = rss_kib();
	/* 4 MiB written into 256 regions: a 4 KiB chunk each, and index
	 * pages; a flat bitmap would be 256 MiB. */
	if (rss1 - rss0 > 16 * 1024)
		tl_fail("RSS grew by %ld KiB\n", rss1 - rss0);
	for (i = 0; i < 256; i++) {
		io_ok(rb, unit, RUMPBLK_B_READ, offs[i], buf, 16384);
		tl_eq(tl_check(buf, 16384, offs[i], NEW), -1);
	}
	io_ok(rb, unit, RUMPBLK_B_READ, size / 2 + 4096, buf, 16384);
	tl_true(tl_all(buf, 16384, 0));
	tl_eq(rumpblk_destroy(rb), 0);
	/* PATH still has no block. */
	tl_eq(stat(big, &st), 0);
	tl_eq(st.st_blocks, 0);
	tl_eq(st.st_size, (off_t)size);
	unlink(big);
	free(big);
	free(offs);
	free(buf);
}

static int
setup(void **state)
{
	(void)state;
	img = tl_image("base.img", IMGSIZE, OLD);
	return 0;
}

static int
teardown(void **state)
{
	(void)state;
	free(img);
	return 0;
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(reads_base),
		cmocka_unit_test(writes),
		cmocka_unit_test(trim_zero),
		cmocka_unit_test(extents),
		cmocka_unit_test(independent),
		cmocka_unit_test(sector4k),
		cmocka_unit_test(concurrent),
		cmocka_unit_test(teardown_frees),
		cmocka_unit_test(huge_sparse),
	};

	return tl_main(tests, setup, teardown);
}
