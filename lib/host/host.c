/*
 * Host I/O primitives: open with the read-write to read-only fallback,
 * file information, full-length pread/pwrite loops, data sync, discard,
 * zeroing and allocation maps.
 *
 * This file is not an abstraction layer over several operating systems;
 * it is the one place where Linux's quirks are normalised, so that the
 * backends above can treat "0 or errno, everything moved" as the rule.
 * The main trade-off is that every loop re-issues a short transfer rather
 * than reporting it: block devices and files do not return short counts
 * except at end of file or on a signal, and both are handled here.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "host.h"

struct rb_host_seam *rb_host_seam;

int
rb_host_fileinfo(const char *path, struct rb_fileinfo *fi)
{
	struct stat st;
	int fd, error = 0;
	off_t end;
	uint64_t size;

	memset(fi, 0, sizeof(*fi));
	if (stat(path, &st) == -1)
		return errno;
	fi->fi_dev = st.st_dev;
	fi->fi_ino = st.st_ino;
	fi->fi_blksize = st.st_blksize > 0 ? (unsigned)st.st_blksize : 4096;
	if (S_ISREG(st.st_mode)) {
		fi->fi_ftype = RUMPBLK_FT_REG;
		fi->fi_size = (uint64_t)st.st_size;
		return 0;
	}
	if (S_ISBLK(st.st_mode))
		fi->fi_ftype = RUMPBLK_FT_BLK;
	else if (S_ISCHR(st.st_mode))
		fi->fi_ftype = RUMPBLK_FT_CHR;
	else
		return EINVAL;

	/* Devices report their size only when open. */
	if ((fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK)) == -1)
		return errno;
	if (fi->fi_ftype == RUMPBLK_FT_BLK) {
		if (ioctl(fd, BLKGETSIZE64, &size) == -1)
			error = errno;
		else
			fi->fi_size = size;
	} else {
		/*
		 * A character device has no size ioctl that all drivers
		 * answer; seek to the end as the seed's host layer did.
		 * Many (/dev/zero) answer 0: the caller must give a size.
		 */
		if ((end = lseek(fd, 0, SEEK_END)) == -1)
			fi->fi_size = 0;
		else
			fi->fi_size = (uint64_t)end;
	}
	close(fd);
	return error;
}

static int
seam_open_error(int flags)
{
	struct rb_host_seam *hs = rb_host_seam;

	if (RB_HOST_UNLIKELY(hs != NULL) && hs->hs_open_error != 0 &&
	    (hs->hs_open_flags == 0 || (flags & hs->hs_open_flags) != 0))
		return hs->hs_open_error;
	return 0;
}

int
rb_host_open(const char *path, int extra, int *fdp, int *modep)
{
	int fd, error;

	if ((error = seam_open_error(extra & ~RB_HOST_RDONLY)) != 0)
		return error;
	if (extra & RB_HOST_RDONLY) {
		extra &= ~RB_HOST_RDONLY;
		goto rdonly;
	}
	fd = open(path, O_RDWR | O_CLOEXEC | extra);
	if (fd != -1) {
		*fdp = fd;
		*modep = RUMPBLK_FREAD | RUMPBLK_FWRITE;
		return 0;
	}
	/*
	 * Only a refusal to write falls back to read-only; an O_DIRECT
	 * refusal (EINVAL) or a missing file must reach the caller.
	 */
	if (errno != EACCES && errno != EROFS && errno != EPERM &&
	    errno != ETXTBSY)
		return errno;
rdonly:
	fd = open(path, O_RDONLY | O_CLOEXEC | extra);
	if (fd == -1)
		return errno;
	*fdp = fd;
	*modep = RUMPBLK_FREAD;
	return 0;
}

int
rb_host_dioalign(int fd, enum rumpblk_ftype ft, unsigned *memalign,
    unsigned *offalign)
{
	struct statx stx;
	struct stat st;
	unsigned ma = 0, oa = 0;
	int ssz;

	memset(&stx, 0, sizeof(stx));
	if (statx(fd, "", AT_EMPTY_PATH, STATX_DIOALIGN, &stx) == 0 &&
	    (stx.stx_mask & STATX_DIOALIGN) != 0) {
		/* The file system answered; zero means "no direct I/O". */
		if (stx.stx_dio_offset_align == 0)
			return EINVAL;
		ma = stx.stx_dio_mem_align;
		oa = stx.stx_dio_offset_align;
	} else if (ft == RUMPBLK_FT_BLK && ioctl(fd, BLKSSZGET, &ssz) == 0 &&
	    ssz > 0) {
		ma = oa = (unsigned)ssz;
	} else {
		/*
		 * No answer (tmpfs, older kernels): st_blksize is at least
		 * the logical block size on every Linux file system, so it
		 * is safe if wasteful.
		 */
		if (fstat(fd, &st) == -1)
			return errno;
		ma = oa = st.st_blksize > 0 ? (unsigned)st.st_blksize : 4096;
	}
	if (ma == 0)
		ma = 1;
	if (RB_HOST_UNLIKELY(rb_host_seam != NULL) &&
	    rb_host_seam->hs_dio_align != 0)
		oa = rb_host_seam->hs_dio_align;
	if ((ma & (ma - 1)) != 0 || (oa & (oa - 1)) != 0)
		return EINVAL;
	*memalign = ma;
	*offalign = oa;
	return 0;
}

int
rb_host_close(int fd)
{
	/* Linux closes the descriptor even when close() says EINTR. */
	if (close(fd) == -1 && errno != EINTR)
		return errno;
	return 0;
}

int
rb_host_pread(int fd, void *buf, size_t len, uint64_t off, size_t *moved)
{
	size_t done = 0;
	ssize_t n;
	int error = 0;

	while (done < len) {
		n = pread(fd, (char *)buf + done, len - done,
		    (off_t)(off + done));
		if (n == -1) {
			if (errno == EINTR)
				continue;
			error = errno;
			break;
		}
		if (n == 0) {
			/* The file ended under us: an error, not zeroes. */
			error = EIO;
			break;
		}
		done += (size_t)n;
	}
	*moved = done;
	return error;
}

int
rb_host_pwrite(int fd, const void *buf, size_t len, uint64_t off,
    bool dsync, size_t *moved)
{
	size_t done = 0;
	ssize_t n;
	int error = 0, flags = dsync ? RWF_DSYNC : 0;
	struct iovec iov;

	while (done < len) {
		iov.iov_base = (char *)buf + done;
		iov.iov_len = len - done;
		n = pwritev2(fd, &iov, 1, (off_t)(off + done), flags);
		if (n == -1) {
			if (errno == EINTR)
				continue;
			if (errno == EOPNOTSUPP && flags != 0) {
				/* An old kernel: sync separately below. */
				flags = 0;
				continue;
			}
			error = errno;
			break;
		}
		if (n == 0) {
			error = ENOSPC;
			break;
		}
		done += (size_t)n;
	}
	*moved = done;
	if (error == 0 && dsync && flags == 0)
		error = rb_host_datasync(fd);
	else if (error == 0 && dsync && RB_HOST_UNLIKELY(rb_host_seam != NULL))
		error = rb_host_seam->hs_sync_error;
	return error;
}

int
rb_host_datasync(int fd)
{
	if (RB_HOST_UNLIKELY(rb_host_seam != NULL) &&
	    rb_host_seam->hs_sync_error != 0)
		return rb_host_seam->hs_sync_error;
	while (fdatasync(fd) == -1) {
		if (errno == EINTR)
			continue;
		/* Character devices such as /dev/zero have nothing to sync. */
		if (errno == EINVAL || errno == EROFS)
			return 0;
		return errno;
	}
	return 0;
}

static int
write_zeroes(int fd, uint64_t off, uint64_t len)
{
	static const char zero[65536];
	size_t n, moved;
	int error;

	while (len > 0) {
		n = len > sizeof(zero) ? sizeof(zero) : (size_t)len;
		if ((error = rb_host_pwrite(fd, zero, n, off, false,
		    &moved)) != 0)
			return error;
		off += n;
		len -= n;
	}
	return 0;
}

static int
falloc(int fd, int mode, uint64_t off, uint64_t len)
{
	while (fallocate(fd, mode, (off_t)off, (off_t)len) == -1) {
		if (errno == EINTR)
			continue;
		/* ENODEV: not a file system that knows fallocate. */
		if (errno == ENODEV || errno == ENOSYS)
			return EOPNOTSUPP;
		return errno;
	}
	return 0;
}

int
rb_host_punch(int fd, enum rumpblk_ftype ft, uint64_t off, uint64_t len)
{
	uint64_t range[2] = { off, len };

	if (len == 0)
		return 0;
	switch (ft) {
	case RUMPBLK_FT_REG:
		return falloc(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
		    off, len);
	case RUMPBLK_FT_BLK:
		if (ioctl(fd, BLKDISCARD, range) == -1)
			return errno == ENOTTY ? EOPNOTSUPP : errno;
		return 0;
	default:
		return EOPNOTSUPP;
	}
}

int
rb_host_zero(int fd, enum rumpblk_ftype ft, uint64_t off, uint64_t len,
    bool nohole)
{
	uint64_t range[2] = { off, len };
	int error;

	if (len == 0)
		return 0;
	if (ft == RUMPBLK_FT_REG) {
		error = falloc(fd, FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE,
		    off, len);
		if (error == EOPNOTSUPP && !nohole)
			error = falloc(fd, FALLOC_FL_PUNCH_HOLE |
			    FALLOC_FL_KEEP_SIZE, off, len);
		if (error != EOPNOTSUPP)
			return error;
	} else if (ft == RUMPBLK_FT_BLK) {
		if (ioctl(fd, BLKZEROOUT, range) == 0)
			return 0;
	}
	return write_zeroes(fd, off, len);
}

int
rb_host_extents(int fd, enum rumpblk_ftype ft, uint64_t off, uint64_t len,
    struct rumpblk_extents *ex)
{
	uint64_t pos = off, end = off + len, next;
	off_t r;
	bool hole;

	ex->ex_count = 0;
	if (len == 0 || ex->ex_max == 0)
		return 0;
	if (ft != RUMPBLK_FT_REG)
		goto all_data;
	while (pos < end && ex->ex_count < ex->ex_max) {
		r = lseek(fd, (off_t)pos, SEEK_DATA);
		if (r == -1 && errno == ENXIO) {
			/* A hole runs to the end of the file. */
			hole = true;
			next = end;
		} else if (r == -1) {
			if (ex->ex_count == 0 && (errno == EINVAL ||
			    errno == EOPNOTSUPP))
				goto all_data;
			return errno;
		} else if ((uint64_t)r > pos) {
			hole = true;
			next = (uint64_t)r;
		} else {
			hole = false;
			r = lseek(fd, (off_t)pos, SEEK_HOLE);
			if (r == -1)
				return errno;
			next = (uint64_t)r;
		}
		if (next > end)
			next = end;
		if (next <= pos)	/* no progress: treat the rest as data */
			next = end;
		ex->ex_ext[ex->ex_count].e_length = next - pos;
		ex->ex_ext[ex->ex_count].e_flags = hole ?
		    RUMPBLK_EXTENT_HOLE | RUMPBLK_EXTENT_ZERO : 0;
		ex->ex_ext[ex->ex_count].e_pad = 0;
		ex->ex_count++;
		pos = next;
	}
	return 0;
all_data:
	ex->ex_ext[0].e_length = len;
	ex->ex_ext[0].e_flags = 0;
	ex->ex_ext[0].e_pad = 0;
	ex->ex_count = 1;
	return 0;
}

int
rb_host_mmap(int fd, uint64_t off, size_t len, bool writable, void **memp)
{
	void *mem;

	if (RB_HOST_UNLIKELY(rb_host_seam != NULL) &&
	    rb_host_seam->hs_mmap_error != 0)
		return rb_host_seam->hs_mmap_error;
	mem = mmap(NULL, len, PROT_READ | (writable ? PROT_WRITE : 0),
	    MAP_SHARED, fd, (off_t)off);
	if (mem == MAP_FAILED)
		return errno;
	*memp = mem;
	return 0;
}

int
rb_host_munmap(void *mem, size_t len)
{
	if (munmap(mem, len) == -1)
		return errno;
	return 0;
}

int
rb_host_msync(void *addr, size_t len)
{
	uintptr_t a = (uintptr_t)addr, pg = (uintptr_t)sysconf(_SC_PAGESIZE);
	uintptr_t start = a & ~(pg - 1);

	if (RB_HOST_UNLIKELY(rb_host_seam != NULL) &&
	    rb_host_seam->hs_sync_error != 0)
		return rb_host_seam->hs_sync_error;
	/* msync wants a page-aligned start; cover exactly the pages touched. */
	if (msync((void *)start, len + (a - start), MS_SYNC) == -1)
		return errno;
	return 0;
}
