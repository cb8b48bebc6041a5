/*
 * The FUSE export's low-level operations: the kernel's requests on the
 * exported file become rumpblk_strategy() calls, made synchronously in
 * the libfuse worker thread that received the request.
 *
 * Contents:
 *   1. strategy calls, and the reset fence around them
 *   2. the namespace: the file (and, for a directory mount, its parent)
 *   3. read and write; unaligned writes by read-modify-write
 *   4. fsync, fallocate, lseek
 *   5. the operations table
 *
 * It is not a file system: the file's size is the unit's, fixed; it
 * cannot be created, removed, renamed or truncated to another size
 * (EPERM), and O_TRUNC is ignored, as for a block device.
 *
 * Every handle is opened with direct I/O (FOPEN_DIRECT_IO): no page cache
 * in the kernel, so every read and write reaches the unit and its layers
 * (faults fire, the write cache sees each write), nothing is cached twice
 * under a loop device, and after a reset no cached page can answer a
 * handle that must get EIO.  The cost is that shared writable mmap() of
 * the file is refused.  Writes are written through: write() returns once
 * the unit has the data (as a drive's cache does: durable at fsync).
 *
 * The trade-off of synchronous calls: a worker thread is busy for the
 * whole of a request, so requests in flight are bounded by libfuse's
 * threads (fx_cfg.max_threads); in exchange the page-cached fast path
 * (mmap, pio reads) completes inline with no hand-off at all.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fuse-int.h"

/* 1. Strategy calls and the reset fence. */

static inline struct fuse_export *
req_fx(fuse_req_t req)
{
	return fuse_req_userdata(req);
}

/* Threads of this export inside the fence (a reset raised from inside
 * a strategy call of ours must not wait for itself). */
static _Thread_local unsigned tl_submitting;

/*
 * Enter the fence for a handle of generation gen: false if a reset came
 * since it was opened (the request fails with EIO).
 */
static bool
submit_enter(struct fuse_export *fx, uint64_t gen)
{
	atomic_fetch_add(&fx->fx_submitting, 1);
	if (atomic_load(&fx->fx_gen) == gen) {
		tl_submitting++;
		return true;
	}
	atomic_fetch_sub(&fx->fx_submitting, 1);
	return false;
}

static void
submit_leave(struct fuse_export *fx)
{
	tl_submitting--;
	atomic_fetch_sub(&fx->fx_submitting, 1);
}

/*
 * A handle opened before the last reset: its request fails with EIO
 * (replied here), whatever it asks, also where no I/O would be needed.
 */
static bool
stale(fuse_req_t req, struct fuse_export *fx, const struct fuse_file_info *fi)
{
	if (fi->fh == atomic_load(&fx->fx_gen))
		return false;
	fuse_reply_err(req, EIO);
	return true;
}

/* 10 s at most: strategy does not block while a unit is cut. */
void
fx_reset_fence(struct fuse_export *fx)
{
	for (int i = 0; i < 100000 &&
	    atomic_load(&fx->fx_submitting) > tl_submitting; i++)
		usleep(100);
}

/*
 * One synchronous strategy call for a handle of generation gen: len
 * bytes at off (both sector multiples, but the unit's partial last
 * sector), flags RUMPBLK_B_*.  0 or an errno; *movedp (may be NULL)
 * gets the bytes moved.
 */
static int
sio(struct fuse_export *fx, uint64_t gen, int flags, uint64_t off,
    size_t len, void *data, size_t *movedp)
{
	struct rumpblk_buf b;
	int error;

	memset(&b, 0, sizeof(b));
	b.b_unit = fx->fx_cfg.unit;
	b.b_flags = flags;
	b.b_blkno = (int64_t)(off >> RUMPBLK_DEV_BSHIFT);
	b.b_bcount = len;
	b.b_data = data;
	if (!submit_enter(fx, gen))
		return EIO;
	rumpblk_strategy(fx->fx_cfg.rb, &b);
	submit_leave(fx);
	error = rumpblk_biowait(&b);
	if (movedp != NULL)
		*movedp = b.b_bcount - b.b_resid;
	return error;
}

/*
 * The calling worker's buffer of at least len bytes, page-aligned, kept
 * for its next requests and freed when the thread ends (fx_buf_free, the
 * key's destructor); NULL if out of memory.  It grows to one maximum
 * request (1 MiB) and a sector, per worker thread.
 */
struct fx_buf {
	size_t	fb_len;
	void	*fb_mem;
};

void
fx_buf_free(void *arg)
{
	struct fx_buf *fb = arg;

	free(fb->fb_mem);
	free(fb);
}

static char *
worker_buf(struct fuse_export *fx, size_t len)
{
	struct fx_buf *fb = pthread_getspecific(fx->fx_bufkey);
	void *p;

	if (fb != NULL && fb->fb_len >= len)
		return fb->fb_mem;
	if (fb == NULL) {
		if ((fb = calloc(1, sizeof(*fb))) == NULL)
			return NULL;
		if (pthread_setspecific(fx->fx_bufkey, fb) != 0) {
			free(fb);
			return NULL;
		}
	}
	len = (len + 65535) & ~(size_t)65535;
	if (posix_memalign(&p, 4096, len) != 0)
		return NULL;
	free(fb->fb_mem);
	fb->fb_mem = p;
	fb->fb_len = len;
	return p;
}

/* 2. The namespace. */

static void
file_attr(const struct fuse_export *fx, struct stat *st)
{
	memset(st, 0, sizeof(*st));
	st->st_ino = fx->fx_dirmode ? FX_INO_DISK : FX_INO_ROOT;
	st->st_mode = S_IFREG | (fx->fx_ro ? 0400 : 0600);
	st->st_nlink = 1;
	st->st_uid = fx->fx_uid;
	st->st_gid = fx->fx_gid;
	st->st_size = (off_t)fx->fx_size;
	st->st_blksize = fx->fx_secsize > 4096 ? (blksize_t)fx->fx_secsize :
	    4096;
	st->st_blocks = (blkcnt_t)((fx->fx_size + 511) / 512);
	st->st_atim = st->st_mtim = st->st_ctim = fx->fx_time;
}

static void
dir_attr(const struct fuse_export *fx, struct stat *st)
{
	memset(st, 0, sizeof(*st));
	st->st_ino = FX_INO_ROOT;
	st->st_mode = S_IFDIR | (fx->fx_ro ? 0500 : 0700);
	st->st_nlink = 2;
	st->st_uid = fx->fx_uid;
	st->st_gid = fx->fx_gid;
	st->st_size = 4096;
	st->st_blksize = 4096;
	st->st_atim = st->st_mtim = st->st_ctim = fx->fx_time;
}

static bool
is_file(const struct fuse_export *fx, fuse_ino_t ino)
{
	return ino == (fx->fx_dirmode ? FX_INO_DISK : FX_INO_ROOT);
}

static void
fx_init(void *userdata, struct fuse_conn_info *conn)
{
	/*
	 * O_TRUNC comes with open (and is ignored there, as a block device
	 * does) instead of a SETATTR to size 0.  Direct I/O from io_submit
	 * goes out asynchronously, so that queue depth reaches us.  No
	 * writeback cache: write() returns once the unit has the data, and
	 * no dirty page can outlive a reset in the kernel.
	 */
	conn->want |= conn->capable &
	    (FUSE_CAP_ATOMIC_O_TRUNC | FUSE_CAP_ASYNC_DIO);
	conn->want &= ~(unsigned)FUSE_CAP_WRITEBACK_CACHE;
	/* Room for libaio queue depths: asynchronous direct I/O goes
	 * through the kernel's background queue (default 12). */
	conn->max_background = 64;
	conn->congestion_threshold = 48;
	(void)userdata;
}

static void
fx_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct fuse_export *fx = req_fx(req);
	struct fuse_entry_param e;

	if (!fx->fx_dirmode || parent != FX_INO_ROOT ||
	    strcmp(name, FUSE_EXPORT_DIRFILE) != 0) {
		fuse_reply_err(req, ENOENT);
		return;
	}
	memset(&e, 0, sizeof(e));
	e.ino = FX_INO_DISK;
	e.generation = 1;
	e.attr_timeout = e.entry_timeout = FX_ATTR_TIMEOUT;
	file_attr(fx, &e.attr);
	fuse_reply_entry(req, &e);
}

static void
fx_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct fuse_export *fx = req_fx(req);
	struct stat st;

	(void)fi;
	if (is_file(fx, ino))
		file_attr(fx, &st);
	else if (ino == FX_INO_ROOT)
		dir_attr(fx, &st);
	else {
		fuse_reply_err(req, ENOENT);
		return;
	}
	fuse_reply_attr(req, &st, FX_ATTR_TIMEOUT);
}

/*
 * The size is the unit's: a truncate to it succeeds (and does nothing),
 * one to another size, a chmod or a chown is refused; timestamps are
 * accepted and not kept (touch works).
 */
static void
fx_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set,
    struct fuse_file_info *fi)
{
	struct fuse_export *fx = req_fx(req);

	(void)fi;
	if ((to_set & (FUSE_SET_ATTR_MODE | FUSE_SET_ATTR_UID |
	    FUSE_SET_ATTR_GID)) != 0 || ((to_set & FUSE_SET_ATTR_SIZE) &&
	    (!is_file(fx, ino) || (uint64_t)attr->st_size != fx->fx_size))) {
		fuse_reply_err(req, EPERM);
		return;
	}
	fx_getattr(req, ino, NULL);
}

static void
fx_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
    struct fuse_file_info *fi)
{
	struct fuse_export *fx = req_fx(req);
	static const char *const names[] = { ".", "..", FUSE_EXPORT_DIRFILE };
	struct stat st;
	char buf[512];
	size_t used = 0, n;

	(void)fi;
	if (!fx->fx_dirmode || ino != FX_INO_ROOT) {
		fuse_reply_err(req, ENOTDIR);
		return;
	}
	if (size > sizeof(buf))
		size = sizeof(buf);
	for (; off >= 0 && off < 3; off++) {
		memset(&st, 0, sizeof(st));
		st.st_ino = off == 2 ? FX_INO_DISK : FX_INO_ROOT;
		st.st_mode = off == 2 ? S_IFREG : S_IFDIR;
		n = fuse_add_direntry(req, buf + used, size - used, names[off],
		    &st, off + 1);
		if (n > size - used)
			break;
		used += n;
	}
	fuse_reply_buf(req, buf, used);
}

static void
fx_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct fuse_export *fx = req_fx(req);

	if (!is_file(fx, ino)) {
		fuse_reply_err(req, ino == FX_INO_ROOT ? EISDIR : ENOENT);
		return;
	}
	if (fx->fx_ro && (fi->flags & O_ACCMODE) != O_RDONLY) {
		fuse_reply_err(req, EROFS);
		return;
	}
	/* The handle's generation: a reset later makes it fail. */
	fi->fh = atomic_load(&fx->fx_gen);
	fi->direct_io = 1;
	fi->keep_cache = 0;
	fi->noflush = 1;	/* close(2) is not fsync(2), as for a disk */
	fuse_reply_open(req, fi);
}

/* 3. Read and write. */

static void
fx_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
    struct fuse_file_info *fi)
{
	struct fuse_export *fx = req_fx(req);
	uint64_t sec = fx->fx_secsize, o = (uint64_t)off, a, e;
	size_t moved;
	char *buf;
	int error;

	(void)ino;
	if (stale(req, fx, fi))
		return;
	if (o >= fx->fx_size || size == 0) {
		fuse_reply_buf(req, NULL, 0);	/* end of file */
		return;
	}
	if (size > fx->fx_size - o)
		size = (size_t)(fx->fx_size - o);
	/* Whole sectors: one strategy call however the request lies. */
	a = o & ~(sec - 1);
	e = (o + size + sec - 1) & ~(sec - 1);
	if ((buf = worker_buf(fx, (size_t)(e - a))) == NULL) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	error = sio(fx, fi->fh, RUMPBLK_B_READ, a, (size_t)(e - a), buf,
	    &moved);
	if (error == 0 && moved < (o - a) + size)
		error = EIO;	/* the unit shrank under us */
	if (error != 0)
		fuse_reply_err(req, error);
	else
		fuse_reply_buf(req, buf + (o - a), size);
}

/*
 * An unaligned write (src) or zeroing (src NULL) of len bytes at off:
 * read the edge sectors, merge, write the covering range back, all under
 * an exclusive range lock (as the NBD server does for clients that did
 * not negotiate block sizes).  A zeroing of more than a few sectors does
 * its edges so and its aligned middle with one call of mid_flags
 * (RUMPBLK_B_ZERO or RUMPBLK_B_TRIM, with modifiers).
 */
static int
rmw(struct fuse_export *fx, uint64_t gen, uint64_t off, size_t len,
    const char *src, int mid_flags)
{
	uint64_t sec = fx->fx_secsize, a = off & ~(sec - 1);
	uint64_t e = (off + len + sec - 1) & ~(sec - 1);
	int wflags = RUMPBLK_B_WRITE | RUMPBLK_B_ASYNC;
	struct fe_range rg;
	char *buf;
	int error = 0;

	fe_rl_lock(&fx->fx_rl, &rg, a, e, true);
	if (src == NULL && e - a > 4 * sec) {
		uint64_t ma = (off + sec - 1) & ~(sec - 1);
		uint64_t me = (off + len) & ~(sec - 1);

		if ((buf = worker_buf(fx, (size_t)sec)) == NULL) {
			error = ENOMEM;
			goto out;
		}
		if (ma != off) {
			error = sio(fx, gen, RUMPBLK_B_READ, a, sec, buf, NULL);
			if (error == 0) {
				memset(buf + (off - a), 0, sec - (off - a));
				error = sio(fx, gen, wflags, a, sec, buf, NULL);
			}
		}
		if (error == 0 && me > ma) {
			error = sio(fx, gen, mid_flags, ma, me - ma, NULL,
			    NULL);
			/* A host that cannot punch holes: zeroes do. */
			if (error == EOPNOTSUPP && (mid_flags &
			    RUMPBLK_B_TRIM))
				error = sio(fx, gen, RUMPBLK_B_ZERO |
				    RUMPBLK_B_ASYNC, ma, me - ma, NULL, NULL);
		}
		if (error == 0 && me != off + len) {
			error = sio(fx, gen, RUMPBLK_B_READ, me, sec, buf,
			    NULL);
			if (error == 0) {
				memset(buf, 0, off + len - me);
				error = sio(fx, gen, wflags, me, sec, buf,
				    NULL);
			}
		}
		goto out;
	}
	if ((buf = worker_buf(fx, (size_t)(e - a))) == NULL) {
		error = ENOMEM;
		goto out;
	}
	if (off != a)
		error = sio(fx, gen, RUMPBLK_B_READ, a, sec, buf, NULL);
	if (error == 0 && off + len != e && (e - sec != a || off == a))
		error = sio(fx, gen, RUMPBLK_B_READ, e - sec, sec,
		    buf + (e - sec - a), NULL);
	if (error == 0) {
		if (src != NULL)
			memcpy(buf + (off - a), src, len);
		else
			memset(buf + (off - a), 0, len);
		error = sio(fx, gen, wflags, a, e - a, buf, NULL);
	}
out:
	fe_rl_unlock(&fx->fx_rl, &rg);
	return error;
}

static bool
aligned(const struct fuse_export *fx, uint64_t off, uint64_t len)
{
	return ((off | len) & (fx->fx_secsize - 1)) == 0;
}

static void
fx_write(fuse_req_t req, fuse_ino_t ino, const char *data, size_t size,
    off_t off, struct fuse_file_info *fi)
{
	struct fuse_export *fx = req_fx(req);
	uint64_t o = (uint64_t)off;
	struct fe_range rg;
	int error;

	(void)ino;
	if (stale(req, fx, fi))
		return;
	if (size == 0) {
		fuse_reply_write(req, 0);
		return;
	}
	/* A disk does not grow: nothing fits at or past its end. */
	if (o >= fx->fx_size) {
		fuse_reply_err(req, ENOSPC);
		return;
	}
	if (size > fx->fx_size - o)
		size = (size_t)(fx->fx_size - o);	/* a short write */
	if (!aligned(fx, o, size))
		error = rmw(fx, fi->fh, o, size, data, 0);
	else {
		fe_rl_lock(&fx->fx_rl, &rg, o, o + size, false);
		error = sio(fx, fi->fh, RUMPBLK_B_WRITE | RUMPBLK_B_ASYNC, o,
		    size, (void *)(uintptr_t)data, NULL);
		fe_rl_unlock(&fx->fx_rl, &rg);
	}
	if (error != 0)
		fuse_reply_err(req, error);
	else
		fuse_reply_write(req, size);
}

/* 4. fsync, fallocate, lseek. */

/*
 * fsync and fdatasync are a FLUSH: every write the unit acknowledged
 * before becomes durable (through the write cache, if there is one).
 * Writes are written through, so there is nothing of ours to send
 * first.
 */
static void
fx_fsync(fuse_req_t req, fuse_ino_t ino, int datasync,
    struct fuse_file_info *fi)
{
	struct fuse_export *fx = req_fx(req);

	(void)ino;
	(void)datasync;
	if (stale(req, fx, fi))
		return;
	fuse_reply_err(req, fx->fx_ro ? 0 :
	    sio(fx, fi->fh, RUMPBLK_B_FLUSH, 0, 0, NULL, NULL));
}

/*
 * Zero len bytes at off: PUNCH_HOLE (the range must read back as
 * zeroes, deallocated where the host can) is a TRIM where a TRIM reads
 * back as zeroes (a regular file, an overlay), else a write-zeroes that
 * may punch; ZERO_RANGE is a write-zeroes that keeps the range
 * allocated.  Partial sectors at the edges are zeroed by
 * read-modify-write.
 */
static int
zero_range(struct fuse_export *fx, uint64_t gen, uint64_t off, uint64_t len,
    bool punch)
{
	struct fe_range rg;
	int flags, error;

	if (punch && fx->fx_trim_zeroes)
		flags = RUMPBLK_B_TRIM | RUMPBLK_B_ASYNC;
	else if (punch)
		flags = RUMPBLK_B_ZERO | RUMPBLK_B_ASYNC;
	else
		flags = RUMPBLK_B_ZERO | RUMPBLK_B_NOHOLE | RUMPBLK_B_ASYNC;
	if (!aligned(fx, off, len))
		return rmw(fx, gen, off, (size_t)len, NULL, flags);
	fe_rl_lock(&fx->fx_rl, &rg, off, off + len, false);
	error = sio(fx, gen, flags, off, (size_t)len, NULL, NULL);
	if (error == EOPNOTSUPP && (flags & RUMPBLK_B_TRIM))
		error = sio(fx, gen, RUMPBLK_B_ZERO | RUMPBLK_B_ASYNC, off,
		    (size_t)len, NULL, NULL);
	fe_rl_unlock(&fx->fx_rl, &rg);
	return error;
}

static void
fx_fallocate(fuse_req_t req, fuse_ino_t ino, int mode, off_t off,
    off_t len, struct fuse_file_info *fi)
{
	struct fuse_export *fx = req_fx(req);
	uint64_t o = (uint64_t)off, l = (uint64_t)len;
	bool punch;
	int error;

	(void)ino;
	if (stale(req, fx, fi))
		return;
	if (mode == (FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE))
		punch = true;
	else if ((mode & ~FALLOC_FL_KEEP_SIZE) == FALLOC_FL_ZERO_RANGE)
		punch = false;
	else {
		/* Allocation (there is nothing to allocate: the size is
		 * fixed), collapse, insert, unshare. */
		fuse_reply_err(req, EOPNOTSUPP);
		return;
	}
	if (fx->fx_ro) {
		fuse_reply_err(req, EROFS);
		return;
	}
	if (off < 0 || len <= 0) {
		fuse_reply_err(req, EINVAL);
		return;
	}
	if (o >= fx->fx_size || l > fx->fx_size - o) {
		/* Past the end: KEEP_SIZE keeps what is inside; a zeroing
		 * that would grow the file cannot. */
		if (!(mode & FALLOC_FL_KEEP_SIZE)) {
			fuse_reply_err(req, ENOSPC);
			return;
		}
		if (o >= fx->fx_size) {
			fuse_reply_err(req, 0);
			return;
		}
		l = fx->fx_size - o;
	}
	error = zero_range(fx, fi->fh, o, l, punch);
	fuse_reply_err(req, error);
}

/*
 * SEEK_DATA and SEEK_HOLE from the unit's extents (block status): data is
 * whatever is allocated, zeroes or not; the end of the file is a hole.
 * An extent query the host cannot answer (EOPNOTSUPP, or no extents)
 * makes everything data, as lseek(2) allows.
 */
#define FX_SEEK_EXTENTS	64

static int
seek_extents(struct fuse_export *fx, uint64_t gen, uint64_t off, int whence,
    uint64_t *resp)
{
	/* The query and room for its extents (a struct with a flexible
	 * array may not sit inside another struct). */
	_Alignas(struct rumpblk_extents) unsigned char
	    qbuf[sizeof(struct rumpblk_extents) +
	    FX_SEEK_EXTENTS * sizeof(struct rumpblk_extent)];
	struct rumpblk_extents *ex = (struct rumpblk_extents *)(void *)qbuf;
	uint64_t sec = fx->fx_secsize, pos, s, e, len;
	uint32_t i;
	bool data;
	int error;

	if (off >= fx->fx_size)
		return ENXIO;
	pos = off & ~(sec - 1);
	while (pos < fx->fx_size) {
		len = (fx->fx_size - pos + sec - 1) & ~(sec - 1);
		memset(ex, 0, sizeof(*ex));
		ex->ex_max = FX_SEEK_EXTENTS;
		error = sio(fx, gen, RUMPBLK_B_EXTENTS, pos, (size_t)len,
		    ex, NULL);
		if (error == EOPNOTSUPP || (error == 0 && ex->ex_count == 0))
			break;			/* everything is data */
		if (error != 0)
			return error;
		for (i = 0; i < ex->ex_count && pos < fx->fx_size; i++) {
			s = pos;
			e = pos + ex->ex_ext[i].e_length;
			if (e <= s)
				goto all_data;	/* no progress: give up */
			pos = e;
			if (e <= off)
				continue;
			data = !(ex->ex_ext[i].e_flags & RUMPBLK_EXTENT_HOLE);
			if (data == (whence == SEEK_DATA)) {
				*resp = s > off ? s : off;
				if (*resp > fx->fx_size)
					*resp = fx->fx_size;
				return 0;
			}
		}
		continue;
all_data:
		break;
	}
	if (pos >= fx->fx_size) {
		/* Every extent up to the end was looked at. */
		if (whence == SEEK_DATA)
			return ENXIO;
		*resp = fx->fx_size;
		return 0;
	}
	/* The rest, from pos (or off), counts as data. */
	if (whence == SEEK_DATA)
		*resp = pos > off ? pos : off;
	else
		*resp = fx->fx_size;
	return 0;
}

static void
fx_lseek(fuse_req_t req, fuse_ino_t ino, off_t off, int whence,
    struct fuse_file_info *fi)
{
	struct fuse_export *fx = req_fx(req);
	uint64_t res;
	int error;

	(void)ino;
	if (stale(req, fx, fi))
		return;
	if (whence != SEEK_DATA && whence != SEEK_HOLE) {
		fuse_reply_err(req, EINVAL);
		return;
	}
	if (off < 0) {
		fuse_reply_err(req, ENXIO);
		return;
	}
	error = seek_extents(fx, fi->fh, (uint64_t)off, whence, &res);
	if (error != 0)
		fuse_reply_err(req, error);
	else
		fuse_reply_lseek(req, (off_t)res);
}

/* 5. The operations table. */

const struct fuse_lowlevel_ops fx_ops = {
	.init = fx_init,
	.lookup = fx_lookup,
	.getattr = fx_getattr,
	.setattr = fx_setattr,
	.open = fx_open,
	.read = fx_read,
	.write = fx_write,
	.fsync = fx_fsync,
	.readdir = fx_readdir,
	.fallocate = fx_fallocate,
	.lseek = fx_lseek,
};
