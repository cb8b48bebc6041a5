/*
 * The overlay backing, "overlay:PATH": a disposable copy-on-write view of
 * a host file, as qemu's -snapshot.  Reads see the image at PATH until a
 * write, trim or write-zeroes changes a sector; changed sectors live in a
 * private delta, and PATH, opened read-only, is never written.  The
 * backing makes its own bottom stage (no host backend serves it), and
 * everything it holds goes with the unit.
 *
 * What it is not: a persistent snapshot.  The delta is an anonymous
 * sparse file (O_TMPFILE in $TMPDIR, default /var/tmp; mkstemp and unlink
 * where O_TMPFILE is refused) that vanishes when the unit is
 * deregistered, the instance destroyed or the process ends; so nothing
 * needs to be durable, and FLUSH and FUA do nothing.
 *
 * The trade-off: a view costs in proportion to what is written to it,
 * never a copy of PATH, at the price of one map look-up per read run.
 * The map says which sectors (of the unit's sector size: a "granule"
 * here, so that a 512-byte offset into a 4 KiB-sector unit is not
 * mistaken for one) are in the delta.  It is a two-level bitmap: an
 * index of 8 bytes per 2^15 granules, allocated zeroed at registration,
 * and a 4 KiB chunk of bits per 2^15-granule region, allocated on the
 * first write, trim or zero that touches the region.  Memory is thus
 * 8 * ceil(sectors / 32768) bytes (512 KiB for 1 TiB of 512-byte sectors,
 * 64 KiB for 4 KiB sectors; large indexes are mmap'd zero pages, so only
 * the touched parts are resident) plus 4 KiB per region touched (16 MiB
 * of a 512-byte-sector unit, 128 MiB of a 4 KiB one), at most
 * sectors / 8 bytes when every region is touched.  Bits are only ever
 * set: a trimmed or zeroed range stays "in the delta" and reads as the
 * delta's hole, zeroes.
 *
 * Concurrency: the map is lock-free (atomic chunk pointers installed by
 * compare-and-swap, atomic words updated by fetch-or).  A write puts its
 * data in the delta before it sets the bits (release), and a read loads
 * the bits (acquire) before it reads the delta, so a read racing a write
 * sees, per sector, the base or the delta with the new data in it,
 * never a delta hole the write has marked but not yet filled.  A request
 * that covers only part of a granule (possible when the sector size is
 * above 512 bytes: b_blkno counts 512-byte units) first copies the
 * base's granule into the delta, under ov_edgelock held exclusively;
 * every other change takes it shared when such requests are possible
 * (sector size above 512), so that a copy never overwrites a concurrent
 * write's data.  With 512-byte sectors no request covers part of a
 * granule and the lock is never taken.
 *
 * Contents:
 *   1. the map
 *   2. the delta file
 *   3. requests (the stage)
 *   4. the backing kind
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "../internal.h"
#include "host.h"

/* 1. The map. */

#define CHUNK_SHIFT	15			/* granules a chunk */
#define CHUNK_GRAN	(1ull << CHUNK_SHIFT)
#define CHUNK_WORDS	(CHUNK_GRAN / 64)	/* 512 words: 4 KiB */

typedef _Atomic uint64_t ovword;

/*
 * Locks: a = atomic, e = ov_edgelock (see the head comment), ( = set at
 * open, then read-only.
 */
struct overlay {
	struct rb_backing ov_bk;		/* first */
	struct rb_backing *ov_base;		/* ( PATH, a host file, RDONLY */
	int		ov_basefd;		/* ( its descriptor */
	int		ov_dfd;			/* ( the delta */
	unsigned	ov_shift;		/* ( log2 granule bytes */
	uint64_t	ov_ngran;		/* ( granules of the unit */
	size_t		ov_nchunks;		/* ( entries of ov_top */
	_Atomic(ovword *) *ov_top;		/* a: chunks, NULL untouched */
	pthread_rwlock_t ov_edgelock;		/* e */
};

static bool
map_test(const struct overlay *ov, uint64_t g)
{
	ovword *c = atomic_load_explicit(&ov->ov_top[g >> CHUNK_SHIFT],
	    memory_order_acquire);

	if (c == NULL)
		return false;
	return (atomic_load_explicit(&c[(g & (CHUNK_GRAN - 1)) / 64],
	    memory_order_acquire) >> (g % 64)) & 1;
}

/*
 * The end of the run of granules from g (below gend) that are all in the
 * delta or all not; *in says which.  A snapshot word by word: a bit set
 * meanwhile may or may not be seen, and either is right.
 */
static uint64_t
map_run(const struct overlay *ov, uint64_t g, uint64_t gend, bool *in)
{
	uint64_t pos = g + 1, w, x;
	ovword *c;

	/* g is in its own run by definition: the run ends after it. */
	*in = map_test(ov, g);
	while (pos < gend) {
		c = atomic_load_explicit(&ov->ov_top[pos >> CHUNK_SHIFT],
		    memory_order_acquire);
		if (c == NULL) {
			if (*in)
				break;
			pos = ((pos >> CHUNK_SHIFT) + 1) << CHUNK_SHIFT;
			continue;
		}
		w = atomic_load_explicit(&c[(pos & (CHUNK_GRAN - 1)) / 64],
		    memory_order_acquire);
		x = (*in ? ~w : w) >> (pos % 64);
		if (x != 0) {
			pos += (uint64_t)__builtin_ctzll(x);
			break;
		}
		pos = (pos & ~63ull) + 64;
	}
	return pos < gend ? pos : gend;
}

/* Allocate the chunks of granules [g0, g1): 0 or ENOMEM. */
static int
map_reserve(struct overlay *ov, uint64_t g0, uint64_t g1)
{
	uint64_t ci;
	ovword *c, *expect;

	for (ci = g0 >> CHUNK_SHIFT; ci <= (g1 - 1) >> CHUNK_SHIFT; ci++) {
		if (atomic_load_explicit(&ov->ov_top[ci],
		    memory_order_acquire) != NULL)
			continue;
		if ((c = calloc(CHUNK_WORDS, sizeof(*c))) == NULL)
			return ENOMEM;
		expect = NULL;
		if (!atomic_compare_exchange_strong_explicit(&ov->ov_top[ci],
		    &expect, c, memory_order_acq_rel, memory_order_acquire))
			free(c);	/* another thread's is in */
	}
	return 0;
}

/*
 * Mark granules [g0, g1) as in the delta; their chunks are reserved.
 * Release: whoever sees a bit sees the delta data written before.
 */
static void
map_set(struct overlay *ov, uint64_t g0, uint64_t g1)
{
	uint64_t g = g0, n, mask;
	ovword *c;

	while (g < g1) {
		c = atomic_load_explicit(&ov->ov_top[g >> CHUNK_SHIFT],
		    memory_order_acquire);
		if (c == NULL)
			abort();	/* map_reserve said otherwise */
		n = 64 - g % 64;
		if (n > g1 - g)
			n = g1 - g;
		mask = (n == 64 ? ~0ull : ((1ull << n) - 1)) << (g % 64);
		atomic_fetch_or_explicit(&c[(g & (CHUNK_GRAN - 1)) / 64], mask,
		    memory_order_release);
		g += n;
	}
}

static void
map_free(struct overlay *ov)
{
	size_t i;

	for (i = 0; i < ov->ov_nchunks; i++)
		free(atomic_load_explicit(&ov->ov_top[i],
		    memory_order_relaxed));
	free(ov->ov_top);
}

/* 2. The delta file. */

/*
 * An anonymous file of size bytes in $TMPDIR (default /var/tmp): no name
 * from the start with O_TMPFILE, or unlinked at once where the file
 * system refuses it.  Sparse: it takes space only for what is written.
 */
static int
delta_open(uint64_t size, int *fdp)
{
	const char *dir = getenv("TMPDIR");
	char *tmpl;
	int fd, error;

	if (dir == NULL || *dir == '\0')
		dir = "/var/tmp";
	fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
	if (fd == -1) {
		/* EISDIR or EINVAL: a kernel or file system without it. */
		if (errno != EOPNOTSUPP && errno != EISDIR && errno != EINVAL)
			return errno;
		if (asprintf(&tmpl, "%s/rumpblk-overlay.XXXXXX", dir) < 0)
			return ENOMEM;
		fd = mkostemp(tmpl, O_CLOEXEC);
		error = errno;
		if (fd != -1)
			(void)unlink(tmpl);
		free(tmpl);
		if (fd == -1)
			return error;
	}
	/* Reads of a trimmed range past the last write find a hole. */
	if (ftruncate(fd, (off_t)size) == -1) {
		error = errno;
		(void)close(fd);
		return error;
	}
	*fdp = fd;
	return 0;
}

/*
 * Copy the base's granule g into the delta and mark it, unless it is
 * marked already; ov_edgelock is held exclusively.
 */
static int
fill_granule(struct overlay *ov, uint64_t g)
{
	uint64_t s = g << ov->ov_shift, e = s + (1ull << ov->ov_shift);
	size_t moved;
	void *buf;
	int error;

	if (map_test(ov, g))
		return 0;
	if (e > ov->ov_bk.bk_size)
		e = ov->ov_bk.bk_size;
	if ((buf = malloc(e - s)) == NULL)
		return ENOMEM;
	error = rb_host_pread(ov->ov_basefd, buf, e - s, ov->ov_bk.bk_off + s,
	    &moved);
	if (error == 0)
		error = rb_host_pwrite(ov->ov_dfd, buf, e - s, s, false,
		    &moved);
	free(buf);
	if (error == 0)
		map_set(ov, g, g + 1);
	return error;
}

/* 3. Requests. */

/* Read [off, off+len) run by run, each from the delta or the base. */
static int
ov_read(struct overlay *ov, uint64_t off, size_t len, char *data,
    size_t *movedp)
{
	uint64_t pos = off, end = off + len, gend, rend;
	size_t m;
	bool in;
	int error = 0;

	gend = ((end - 1) >> ov->ov_shift) + 1;
	*movedp = 0;
	while (pos < end) {
		rend = map_run(ov, pos >> ov->ov_shift, gend, &in) <<
		    ov->ov_shift;
		if (rend > end)
			rend = end;
		if (in)
			error = rb_host_pread(ov->ov_dfd, data + (pos - off),
			    rend - pos, pos, &m);
		else
			error = rb_host_pread(ov->ov_basefd, data + (pos - off),
			    rend - pos, ov->ov_bk.bk_off + pos, &m);
		*movedp += m;
		if (error != 0)
			break;
		pos = rend;
	}
	return error;
}

/* The change itself, on the delta at unit offset off. */
static int
ov_apply(struct overlay *ov, struct rb_io *io, size_t *movedp)
{
	int error;

	*movedp = 0;
	switch (io->io_op) {
	case RUMPBLK_B_WRITE:
		return rb_host_pwrite(ov->ov_dfd, io->io_data, io->io_len,
		    io->io_off, false, movedp);
	case RUMPBLK_B_ZERO:
		if (io->io_flags & RUMPBLK_B_NOHOLE)
			return rb_host_zero(ov->ov_dfd, RUMPBLK_FT_REG,
			    io->io_off, io->io_len, true);
		/* A hole reads as zeroes and costs nothing. */
		/* FALLTHROUGH */
	default:
		error = rb_host_punch(ov->ov_dfd, RUMPBLK_FT_REG, io->io_off,
		    io->io_len);
		/* A file system that cannot punch: zero some other way. */
		if (error == EOPNOTSUPP)
			error = rb_host_zero(ov->ov_dfd, RUMPBLK_FT_REG,
			    io->io_off, io->io_len, false);
		return error;
	}
}

/*
 * WRITE, TRIM and ZERO: reserve the map's chunks (so that nothing can
 * fail after the data is in), copy in the base's part of granules the
 * request covers only partly, change the delta, then mark.  A failed
 * change marks nothing more: the granules it did not finish keep reading
 * as before.
 */
static int
ov_change(struct overlay *ov, struct rb_io *io, size_t *movedp)
{
	uint64_t off = io->io_off, end = off + io->io_len;
	uint64_t gmask = (1ull << ov->ov_shift) - 1;
	uint64_t g0 = off >> ov->ov_shift, gend;
	bool head, tail, locked = false;
	int error;

	*movedp = 0;
	gend = ((end - 1) >> ov->ov_shift) + 1;
	head = (off & gmask) != 0;
	/* The unit's last, partial, granule ends at the unit's end. */
	tail = (end & gmask) != 0 && end != ov->ov_bk.bk_size;
	if ((error = map_reserve(ov, g0, gend)) != 0)
		return error;
	if (head || tail) {
		if (pthread_rwlock_wrlock(&ov->ov_edgelock) != 0)
			abort();
		locked = true;
		if (head && (error = fill_granule(ov, g0)) != 0)
			goto unlock;
		if (tail && (error = fill_granule(ov, gend - 1)) != 0)
			goto unlock;
	} else if (ov->ov_shift > RUMPBLK_DEV_BSHIFT) {
		if (pthread_rwlock_rdlock(&ov->ov_edgelock) != 0)
			abort();
		locked = true;
	}
	if ((error = ov_apply(ov, io, movedp)) == 0)
		map_set(ov, g0, gend);
unlock:
	if (locked && pthread_rwlock_unlock(&ov->ov_edgelock) != 0)
		abort();
	return error;
}

/*
 * Append src's extents to ex, merging neighbours with the same flags.
 * false when ex is full or src did not cover its range (the answer must
 * stay contiguous from the start).
 */
static bool
ext_append(struct rumpblk_extents *ex, const struct rumpblk_extents *src,
    uint64_t want)
{
	uint64_t got = 0;
	struct rumpblk_extent *last;
	uint32_t i;

	for (i = 0; i < src->ex_count; i++) {
		last = ex->ex_count > 0 ? &ex->ex_ext[ex->ex_count - 1] : NULL;
		if (last != NULL && last->e_flags == src->ex_ext[i].e_flags)
			last->e_length += src->ex_ext[i].e_length;
		else if (ex->ex_count < ex->ex_max)
			ex->ex_ext[ex->ex_count++] = src->ex_ext[i];
		else
			return false;
		got += src->ex_ext[i].e_length;
	}
	return got == want;
}

/*
 * Where the view has data: the delta's allocation for granules in the
 * delta (a trimmed range is its hole), the base's for the others.
 */
static int
ov_extents(struct overlay *ov, uint64_t off, size_t len,
    struct rumpblk_extents *ex)
{
	const struct rb_backing *base = ov->ov_base;
	uint64_t pos = off, end = off + len, gend, rend;
	struct rumpblk_extents *tmp;
	bool in;
	int error = 0;

	ex->ex_count = 0;
	if (len == 0 || ex->ex_max == 0)
		return 0;
	tmp = malloc(sizeof(*tmp) + ex->ex_max * sizeof(tmp->ex_ext[0]));
	if (tmp == NULL)
		return ENOMEM;
	gend = ((end - 1) >> ov->ov_shift) + 1;
	while (pos < end) {
		rend = map_run(ov, pos >> ov->ov_shift, gend, &in) <<
		    ov->ov_shift;
		if (rend > end)
			rend = end;
		tmp->ex_max = ex->ex_max;
		if (in)
			error = rb_host_extents(ov->ov_dfd, RUMPBLK_FT_REG, pos,
			    rend - pos, tmp);
		else
			error = rb_host_extents(ov->ov_basefd, base->bk_ftype,
			    base->bk_off + pos, rend - pos, tmp);
		if (error != 0 || !ext_append(ex, tmp, rend - pos))
			break;
		pos = rend;
	}
	free(tmp);
	return error;
}

/* One request, in the caller's thread or on a worker. */
static void
ov_work(struct rb_io *io)
{
	struct overlay *ov = io->io_ctx;
	size_t moved = 0;
	int error;

	switch (io->io_op) {
	case RUMPBLK_B_READ:
		error = ov_read(ov, io->io_off, io->io_len, io->io_data,
		    &moved);
		break;
	case RUMPBLK_B_WRITE:
	case RUMPBLK_B_TRIM:
	case RUMPBLK_B_ZERO:
		error = ov_change(ov, io, &moved);
		break;
	case RUMPBLK_B_FLUSH:
		/* The view is disposable: nothing to make durable. */
		error = 0;
		break;
	case RUMPBLK_B_EXTENTS:
		error = ov_extents(ov, io->io_off, io->io_len, io->io_data);
		break;
	default:
		error = EINVAL;
		break;
	}
	rb_io_complete(io, error, io->io_op == RUMPBLK_B_WRITE ||
	    io->io_op == RUMPBLK_B_READ ? moved : 0);
}

struct ovstage {
	struct rb_stage	os_stage;	/* first */
	struct overlay	*os_ov;		/* ( the backing */
	struct rb_pool	*os_pool;	/* ( the instance's */
};

/* As pio: synchronous requests inline, RUMPBLK_B_ASYNC ones on a worker. */
static void
ov_submit(struct rb_stage *st, struct rb_io *io)
{
	struct ovstage *os = (struct ovstage *)st;

	rb_pool_run(os->os_pool, io, ov_work, os->os_ov);
}

static const struct rb_ops ovstage_ops = {
	.name = "overlay",
	.submit = ov_submit,
	.destroy = NULL,
};

/* 4. The backing kind. */

static int
overlay_open(struct rumpblk *rb, const char *spec,
    const struct rumpblk_unit_opts *o, struct rb_backing **bkp)
{
	struct rumpblk_unit_opts bo = *o;
	struct overlay *ov;
	struct rb_backing *base;
	char *fspec;
	int error;

	if (strncmp(spec, "overlay:", 8) != 0 || spec[8] == '\0')
		return EINVAL;
	/* PATH with the window, as a host file, never written. */
	if (asprintf(&fspec, "file:%s", spec + 8) < 0)
		return ENOMEM;
	bo.uo_readonly = true;
	error = rb_hostfile_ops.bo_open(rb, fspec, &bo, &base);
	free(fspec);
	if (error != 0)
		return error;
	if ((ov = calloc(1, sizeof(*ov))) == NULL) {
		error = ENOMEM;
		goto close_base;
	}
	if ((ov->ov_bk.bk_spec = strdup(spec)) == NULL) {
		error = ENOMEM;
		goto free_ov;
	}
	ov->ov_bk.bk_ops = &rb_overlay_ops;
	ov->ov_bk.bk_off = base->bk_off;
	ov->ov_bk.bk_size = base->bk_size;
	ov->ov_bk.bk_total = base->bk_total;
	ov->ov_bk.bk_ftype = base->bk_ftype;
	ov->ov_bk.bk_mode = RUMPBLK_FREAD |
	    (o->uo_readonly ? 0 : RUMPBLK_FWRITE);
	ov->ov_base = base;
	ov->ov_basefd = ((struct rb_hostfile *)base)->hf_fd;
	ov->ov_shift = rb->rb_cfg.sectshift;
	ov->ov_ngran = (base->bk_size >> ov->ov_shift) +
	    ((base->bk_size & ((1ull << ov->ov_shift) - 1)) != 0);
	ov->ov_nchunks = (size_t)((ov->ov_ngran + CHUNK_GRAN - 1) >>
	    CHUNK_SHIFT);
	ov->ov_top = calloc(ov->ov_nchunks > 0 ? ov->ov_nchunks : 1,
	    sizeof(*ov->ov_top));
	if (ov->ov_top == NULL) {
		error = ENOMEM;
		goto free_spec;
	}
	if ((error = delta_open(base->bk_size, &ov->ov_dfd)) != 0)
		goto free_top;
	if ((error = pthread_rwlock_init(&ov->ov_edgelock, NULL)) != 0)
		goto close_delta;
	*bkp = &ov->ov_bk;
	return 0;

close_delta:
	(void)close(ov->ov_dfd);
free_top:
	free(ov->ov_top);
free_spec:
	free(ov->ov_bk.bk_spec);
free_ov:
	free(ov);
close_base:
	rb_hostfile_ops.bo_close(base);
	return error;
}

/* Each registration is a view of its own: never the same as another. */
static bool
overlay_same(const struct rb_backing *a, const struct rb_backing *b)
{
	(void)a;
	(void)b;
	return false;
}

/*
 * rumpblk_deregister by name matches no overlay: neither PATH (the view
 * is not the file) nor "overlay:PATH" (which of its views?).  Overlays
 * go with rumpblk_deregister_unit or the instance.
 */
static bool
overlay_named(const struct rb_backing *bk, const struct rb_bkey *k)
{
	(void)bk;
	(void)k;
	return false;
}

/* The overlay's own stage; the host backends cannot serve it. */
static int
overlay_stage(struct rb_unit *u, enum rumpblk_backend kind,
    struct rb_stage **stp)
{
	struct ovstage *os;

	if (kind != RUMPBLK_BACKEND_AUTO && kind != RUMPBLK_BACKEND_PIO)
		return EINVAL;
	if ((os = calloc(1, sizeof(*os))) == NULL)
		return ENOMEM;
	rb_stage_init(&os->os_stage, &ovstage_ops, u, RB_RANK_BACKEND);
	os->os_ov = (struct overlay *)u->u_backing;
	os->os_pool = rb_instance_pool(u->u_rb);
	/* pread/pwrite, inline or on the pool: what pio does. */
	u->u_backend_kind = RUMPBLK_BACKEND_PIO;
	*stp = &os->os_stage;
	return 0;
}

static int
overlay_close(struct rb_backing *bk)
{
	struct overlay *ov = (struct overlay *)bk;
	int error, e;

	/* The delta vanishes with its last descriptor. */
	error = rb_host_close(ov->ov_dfd);
	e = rb_hostfile_ops.bo_close(ov->ov_base);
	if (error == 0)
		error = e;
	map_free(ov);
	(void)pthread_rwlock_destroy(&ov->ov_edgelock);
	free(bk->bk_spec);
	free(ov);
	return error;
}

const struct rb_backing_ops rb_overlay_ops = {
	.bo_name = "overlay",
	.bo_open = overlay_open,
	.bo_same = overlay_same,
	.bo_named = overlay_named,
	.bo_stage = overlay_stage,
	.bo_close = overlay_close,
};
