/*
 * The direct backend: the host file or device opened with O_DIRECT, so
 * that the emulated disk does not also fill the host's page cache (the
 * guest above has its own).
 *
 * Contents:
 *   1. the bounce pool: a bounded set of aligned buffers
 *   2. the data path: aligned transfers go straight to the host; the
 *      others through bounce buffers, read-modify-write at the edges
 *   3. the stage: submit, sync, destroy, open (the refusal check)
 *
 * The seed opened an O_DIRECT descriptor and never used it, because
 * direct I/O "can fail silently".  Here nothing is assumed: the alignment
 * comes from the host (rb_host_dioalign), and open reads the first block
 * through the new descriptor, so a file system that refuses O_DIRECT, at
 * open or at the first transfer, fails the registration with EINVAL
 * (rb_backend_open falls back when the caller chose "auto").
 *
 * Two descriptors: every data transfer goes through the O_DIRECT one
 * (d_fd); the unit's buffered one (hf_fd) serves trim, write-zeroes and
 * extent queries (fallocate and lseek, which Linux keeps coherent with
 * direct I/O: it writes dirty cache back before a direct read and drops
 * the cache over a direct write) and the last partial block of a file
 * whose size is not a multiple of the alignment, which a direct write
 * could only move by extending the file.  fdatasync is per inode, so
 * flushing either descriptor covers both.
 *
 * The main trade-off is the unaligned case.  A request whose buffer is
 * not aligned is copied through a bounce buffer; one whose range is not
 * aligned (a unit at an odd host offset, sectors smaller than the host's
 * block) also reads its edge blocks first.  Two such writes to one block
 * could each put back the other's old bytes, so on a unit where that can
 * happen (d_rmw) writes take d_rmwlock: shared when aligned, exclusive
 * for a read-modify-write.  Units that are aligned, the usual case, take
 * no lock at all.  A request holds at most one bounce buffer at a time
 * and waits for one only when all d_nbounce are taken, so the pool is
 * bounded and cannot deadlock.
 *
 * Synchronous buffers run in the caller's thread (one system call for an
 * aligned 4 KiB read).  Asynchronous ones go to io_uring when the kernel
 * has it and the request needs no bounce or lock, else to the instance's
 * worker pool.  Synchronous writes carry RWF_DSYNC (fdatasync after a
 * bounced write of several pieces).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../internal.h"
#include "../host/host.h"

#define DIO_NBOUNCE	16		/* bounce buffers per unit */
#define DIO_BOUNCE	(128 * 1024)	/* bytes each, at least */

/*
 * Locks: b = d_blk, a = atomic, ( = set at open, then read-only.
 * Lock order: d_rmwlock before d_blk.
 */
struct direct {
	struct rb_stage	d_stage;
	int		d_fd;		/* ( O_DIRECT descriptor */
	int		d_bfd;		/* ( the unit's buffered one */
	const struct rb_backing *d_bk;	/* ( the host file */
	uint64_t	d_hoff;		/* ( the unit's start, host bytes */
	unsigned	d_memalign;	/* ( bytes */
	unsigned	d_offalign;	/* ( bytes */
	uint64_t	d_dioend;	/* ( host bytes direct I/O may reach */
	bool		d_rmw;		/* ( unaligned ranges can happen */
	pthread_rwlock_t d_rmwlock;	/* see the head comment */

	pthread_mutex_t	d_blk;
	pthread_cond_t	d_bcv;		/* b: a buffer came back */
	void		**d_bfree;	/* b: free buffers */
	unsigned	d_nfree;	/* b */
	unsigned	d_nalloc;	/* b: allocated, <= d_nbounce */
	unsigned	d_nbounce;	/* ( */
	size_t		d_bsize;	/* ( bytes, a multiple of d_offalign */
	size_t		d_balign;	/* ( bytes */
	uint64_t	d_bwaits;	/* b: times a caller waited */

	struct rb_uring	*d_ring;	/* ( NULL: async on the pool */
	struct rb_pool	*d_pool;	/* ( the instance's */
};

/* 1. The bounce pool. */

static void *
bounce_get(struct direct *d)
{
	void *b = NULL;

	rb_mutex_lock(&d->d_blk);
	for (;;) {
		if (d->d_nfree > 0) {
			b = d->d_bfree[--d->d_nfree];
			break;
		}
		if (d->d_nalloc < d->d_nbounce &&
		    (b = aligned_alloc(d->d_balign, d->d_bsize)) != NULL) {
			d->d_nalloc++;
			break;
		}
		/* All taken (or memory is short): wait for one back.  At
		 * least one exists unless none could ever be allocated. */
		if (d->d_nalloc == 0) {
			rb_mutex_unlock(&d->d_blk);
			return NULL;
		}
		d->d_bwaits++;
		pthread_cond_wait(&d->d_bcv, &d->d_blk);
	}
	rb_mutex_unlock(&d->d_blk);
	return b;
}

static void
bounce_put(struct direct *d, void *b)
{
	rb_mutex_lock(&d->d_blk);
	d->d_bfree[d->d_nfree++] = b;
	pthread_cond_signal(&d->d_bcv);
	rb_mutex_unlock(&d->d_blk);
}

/*
 * For tests: the pool's bound, how many buffers exist and how often a
 * caller waited.  st must be a direct stage.
 */
void
rb_direct_bounce_info(struct rb_stage *st, unsigned *max, unsigned *nalloc,
    uint64_t *waits)
{
	struct direct *d = (struct direct *)st;

	rb_mutex_lock(&d->d_blk);
	*max = d->d_nbounce;
	*nalloc = d->d_nalloc;
	*waits = d->d_bwaits;
	rb_mutex_unlock(&d->d_blk);
}

/* 2. The data path. */

static inline uint64_t
rdown(uint64_t x, uint64_t a)
{
	return x & ~(a - 1);
}

static inline uint64_t
rup(uint64_t x, uint64_t a)
{
	return (x + a - 1) & ~(a - 1);
}

static bool
is_aligned(const struct direct *d, const void *buf, uint64_t hoff,
    size_t len)
{
	return ((hoff | len) & (d->d_offalign - 1)) == 0 &&
	    ((uintptr_t)buf & (d->d_memalign - 1)) == 0;
}

/*
 * Read or write [hoff, hoff + len) of the host, all below d_dioend,
 * through bounce buffers, piece by piece.  *moved gets the bytes of the
 * request moved in order before an error.
 */
static int
dio_bounced(struct direct *d, bool write, char *buf, uint64_t hoff,
    size_t len, size_t *moved)
{
	uint64_t oa = d->d_offalign, end = hoff + len;
	uint64_t a1 = rup(end, oa), cs, ce, lo, hi;
	size_t n;
	char *b;
	int error = 0;

	*moved = 0;
	if ((b = bounce_get(d)) == NULL)
		return ENOMEM;
	for (cs = rdown(hoff, oa); cs < a1; cs = ce) {
		ce = cs + d->d_bsize < a1 ? cs + d->d_bsize : a1;
		lo = cs > hoff ? cs : hoff;
		hi = ce < end ? ce : end;
		if (!write) {
			error = rb_host_pread(d->d_fd, b, ce - cs, cs, &n);
		} else {
			/* Edges: keep the bytes of the block we do not own. */
			if (lo > cs && (error = rb_host_pread(d->d_fd, b, oa,
			    cs, &n)) != 0)
				break;
			if (hi < ce && (ce - oa > cs || lo == cs) &&
			    (error = rb_host_pread(d->d_fd, b + (ce - oa - cs),
			    oa, ce - oa, &n)) != 0)
				break;
			memcpy(b + (lo - cs), buf + (lo - hoff), hi - lo);
			error = rb_host_pwrite(d->d_fd, b, ce - cs, cs, false,
			    &n);
		}
		/* A short transfer counts what moved; b_resid is the rest. */
		if (error != 0)
			hi = cs + n < lo ? lo : cs + n < hi ? cs + n : hi;
		if (!write)
			memcpy(buf + (lo - hoff), b + (lo - cs), hi - lo);
		*moved += hi - lo;
		if (error != 0)
			break;
	}
	bounce_put(d, b);
	return error;
}

/* Do a read or write synchronously, and complete it. */
static void
dio_rw(struct direct *d, struct rb_io *io)
{
	uint64_t hoff = d->d_hoff + io->io_off;
	uint64_t end = hoff + io->io_len, dend, tail;
	bool write = io->io_op == RUMPBLK_B_WRITE;
	bool dsync = write && rb_io_wants_sync(io);
	bool aligned, excl;
	char *buf = io->io_data;
	size_t moved = 0, n = 0;
	int error = 0;

	dend = end < d->d_dioend ? end : d->d_dioend;
	if (dend < hoff)
		dend = hoff;
	aligned = is_aligned(d, buf, hoff, (size_t)(dend - hoff));
	/* Only a partial block (or the buffered tail) needs the others
	 * out of the way; a merely unaligned buffer does not. */
	excl = ((hoff | end) & (d->d_offalign - 1)) != 0 ||
	    end > d->d_dioend;
	if (write && d->d_rmw) {
		if (excl)
			pthread_rwlock_wrlock(&d->d_rmwlock);
		else
			pthread_rwlock_rdlock(&d->d_rmwlock);
	}
	if (dend > hoff) {
		if (aligned && write)
			error = rb_host_pwrite(d->d_fd, buf, dend - hoff,
			    hoff, dsync && end == dend, &moved);
		else if (aligned)
			error = rb_host_pread(d->d_fd, buf, dend - hoff, hoff,
			    &moved);
		else
			error = dio_bounced(d, write, buf, hoff,
			    (size_t)(dend - hoff), &moved);
	}
	/* The file's last partial block, through the buffered descriptor. */
	if (error == 0 && end > dend) {
		tail = end - dend;
		if (write)
			error = rb_host_pwrite(d->d_bfd, buf + moved, tail,
			    dend, false, &n);
		else
			error = rb_host_pread(d->d_bfd, buf + moved, tail,
			    dend, &n);
		moved += n;
	}
	if (error == 0 && dsync && !(aligned && end == dend))
		error = rb_host_datasync(d->d_fd);
	if (write && d->d_rmw)
		pthread_rwlock_unlock(&d->d_rmwlock);
	rb_io_complete(io, error, moved);
}

static void
dio_run(struct direct *d, struct rb_io *io)
{
	switch (io->io_op) {
	case RUMPBLK_B_READ:
	case RUMPBLK_B_WRITE:
		dio_rw(d, io);
		break;
	case RUMPBLK_B_FLUSH:
		rb_io_complete(io, rb_host_datasync(d->d_fd), 0);
		break;
	default:
		/* Trim, zero, extents: fallocate and lseek (head comment). */
		rb_fdio_run(d->d_bfd, d->d_bk, io);
		break;
	}
}

static void
dio_work(struct rb_io *io)
{
	dio_run(io->io_ctx, io);
}

/* 3. The stage. */

static void
direct_submit(struct rb_stage *st, struct rb_io *io)
{
	struct direct *d = (struct direct *)st;
	uint64_t hoff;

	/* Aligned asynchronous transfers (and flushes) go to the ring;
	 * everything else runs here or on a worker. */
	if ((io->io_flags & RUMPBLK_B_ASYNC) != 0 && d->d_ring != NULL &&
	    (io->io_op == RUMPBLK_B_FLUSH || ((io->io_op == RUMPBLK_B_READ ||
	    (io->io_op == RUMPBLK_B_WRITE && !d->d_rmw)) &&
	    (hoff = d->d_hoff + io->io_off) + io->io_len <= d->d_dioend &&
	    is_aligned(d, io->io_data, hoff, io->io_len)))) {
		rb_uring_submit(d->d_ring, io);
		return;
	}
	rb_pool_run(d->d_pool, io, dio_work, d);
}

static void
direct_destroy(struct rb_stage *st)
{
	struct direct *d = (struct direct *)st;

	if (d->d_ring != NULL)
		rb_uring_destroy(d->d_ring);
	while (d->d_nfree > 0)
		free(d->d_bfree[--d->d_nfree]);
	free(d->d_bfree);
	pthread_cond_destroy(&d->d_bcv);
	pthread_mutex_destroy(&d->d_blk);
	pthread_rwlock_destroy(&d->d_rmwlock);
	rb_host_close(d->d_fd);
	free(d);
}

static const struct rb_ops direct_ops = {
	.name = "direct",
	.submit = direct_submit,
	.destroy = direct_destroy,
};

/*
 * Read the first block through the new descriptor: a file system that
 * takes the O_DIRECT open but not the transfer (or takes it only at
 * another alignment) says so here, not on the first request.
 */
static int
probe(struct direct *d)
{
	size_t n;
	void *b;
	int error;

	if (d->d_dioend == 0)
		return 0;
	if ((b = bounce_get(d)) == NULL)
		return ENOMEM;
	error = rb_host_pread(d->d_fd, b, d->d_offalign, 0, &n);
	bounce_put(d, b);
	return error;
}

/*
 * Open the direct backend of a unit.  EINVAL when the host refuses
 * O_DIRECT for this file (at open, in statx, or at the first read).
 */
int
rb_direct_open(struct rb_unit *u, struct rb_stage **stp)
{
	struct direct *d;
	uint64_t ssz = 1ull << u->u_sectshift;
	int error, mode;

	if ((d = calloc(1, sizeof(*d))) == NULL)
		return ENOMEM;
	if ((error = rb_host_open(u->u_backing->bk_spec, O_DIRECT |
	    ((u->u_mode & RUMPBLK_FWRITE) == 0 ? RB_HOST_RDONLY : 0),
	    &d->d_fd, &mode)) != 0)
		goto free_d;
	/* The two descriptors must agree on what the unit may do. */
	if ((mode & u->u_mode) != u->u_mode) {
		error = EACCES;
		goto close_fd;
	}
	if ((error = rb_host_dioalign(d->d_fd, u->u_backing->bk_ftype,
	    &d->d_memalign,
	    &d->d_offalign)) != 0)
		goto close_fd;
	if (d->d_offalign > (1u << 20)) {
		error = EINVAL;
		goto close_fd;
	}
	d->d_bfd = u->u_host->hf_fd;
	d->d_bk = &u->u_host->hf_bk;
	d->d_hoff = d->d_bk->bk_off;
	d->d_pool = rb_instance_pool(u->u_rb);
	d->d_dioend = rdown(d->d_bk->bk_total, d->d_offalign);
	d->d_rmw = (d->d_hoff & (d->d_offalign - 1)) != 0 ||
	    (ssz & (d->d_offalign - 1)) != 0 ||
	    ((d->d_hoff + u->u_size) & (d->d_offalign - 1)) != 0;
	d->d_nbounce = DIO_NBOUNCE;
	d->d_bsize = rup(DIO_BOUNCE, d->d_offalign);
	d->d_balign = (size_t)sysconf(_SC_PAGESIZE);
	if (d->d_balign < d->d_memalign)
		d->d_balign = d->d_memalign;
	if (d->d_balign < d->d_offalign)
		d->d_balign = d->d_offalign;
	if ((d->d_bfree = calloc(d->d_nbounce, sizeof(void *))) == NULL) {
		error = ENOMEM;
		goto close_fd;
	}
	pthread_mutex_init(&d->d_blk, NULL);
	pthread_cond_init(&d->d_bcv, NULL);
	pthread_rwlock_init(&d->d_rmwlock, NULL);
	rb_stage_init(&d->d_stage, &direct_ops, u, RB_RANK_BACKEND);
	if ((error = probe(d)) != 0)
		goto destroy;
#ifdef RUMPBLK_HAVE_URING
	/* No ring (io_uring disabled): asynchronous buffers use the pool. */
	if (rb_uring_create(d->d_fd, d->d_bk, &d->d_ring) != 0)
		d->d_ring = NULL;
#endif
	*stp = &d->d_stage;
	return 0;

destroy:
	direct_destroy(&d->d_stage);
	return error;
close_fd:
	rb_host_close(d->d_fd);
free_d:
	free(d);
	return error;
}
