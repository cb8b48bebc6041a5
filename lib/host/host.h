/*
 * Host I/O primitives.  Only lib/host/ and lib/backend/ touch the host,
 * so that seam stays narrow.  Every function returns 0 or a positive
 * errno, and normalises host quirks in one place (short transfers and
 * EINTR are looped over; ENODEV from fallocate on a device becomes
 * EOPNOTSUPP; a read that meets end of file early is EIO, never a silent
 * zero fill).
 *
 * There is one piece of process-wide state here, and it is a test seam:
 * rb_host_seam, NULL in production, lets a test make an open or a data
 * sync fail the way a refusing host file system would.  It is not
 * exported from the shared library.
 */
#ifndef RUMPBLK_HOST_H
#define RUMPBLK_HOST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "rumpblk/rumpblk.h"

#define RB_HOST_UNLIKELY(x)	__builtin_expect(!!(x), 0)

struct rb_fileinfo {
	enum rumpblk_ftype fi_ftype;
	uint64_t	fi_size;	/* bytes; 0 if it cannot be sized */
	dev_t		fi_dev;
	ino_t		fi_ino;
	unsigned	fi_blksize;	/* preferred I/O size */
};

/*
 * Type, size and identity of a host file.  Block devices are sized with
 * BLKGETSIZE64, character devices by seeking to their end.  EINVAL for
 * other file types; the stat or open error otherwise.
 */
int	rb_host_fileinfo(const char *path, struct rb_fileinfo *);

/*
 * Open read-write, falling back to read-only; *modep gets RUMPBLK_FREAD
 * and maybe RUMPBLK_FWRITE.  extra is added to the open flags (O_DIRECT);
 * RB_HOST_RDONLY in extra opens read-only straight away.
 */
#define RB_HOST_RDONLY	0x40000000	/* no open(2) flag has this bit */
int	rb_host_open(const char *path, int extra, int *fdp, int *modep);
int	rb_host_close(int fd);

/*
 * O_DIRECT alignment of an open descriptor, in bytes: *memalign for
 * buffer addresses, *offalign for file offsets and lengths.  From statx
 * STATX_DIOALIGN where the kernel has it (Linux 6.1); else the logical
 * block size (BLKSSZGET) of a block device, or st_blksize, which is
 * conservative.  EINVAL when statx says the file takes no direct I/O.
 * Both are powers of two.
 */
int	rb_host_dioalign(int fd, enum rumpblk_ftype, unsigned *memalign,
	    unsigned *offalign);

/* Full transfers at byte offsets; *moved gets what moved even on error. */
int	rb_host_pread(int fd, void *, size_t, uint64_t off, size_t *moved);
int	rb_host_pwrite(int fd, const void *, size_t, uint64_t off,
	    bool dsync, size_t *moved);
int	rb_host_datasync(int fd);

/*
 * Discard (punch a hole in a file, BLKDISCARD on a block device) and
 * zero (zero-range or punch; nohole keeps the blocks allocated; written
 * zeroes where the host has neither).
 */
int	rb_host_punch(int fd, enum rumpblk_ftype, uint64_t off, uint64_t len);
int	rb_host_zero(int fd, enum rumpblk_ftype, uint64_t off, uint64_t len,
	    bool nohole);

/*
 * Allocation of [off, off+len) of a file from SEEK_DATA/SEEK_HOLE, written
 * as extents relative to off (hostoff is subtracted by the caller).  Hosts
 * without the seeks report one data extent.
 */
int	rb_host_extents(int fd, enum rumpblk_ftype, uint64_t off, uint64_t len,
	    struct rumpblk_extents *);

/* mmap helpers: map [off, off+len) shared, unmap, msync a range. */
int	rb_host_mmap(int fd, uint64_t off, size_t len, bool writable,
	    void **memp);
int	rb_host_munmap(void *, size_t);
int	rb_host_msync(void *, size_t);

/* The test seam (see the head comment). */
struct rb_host_seam {
	/* errno to fail opens with that carry any of these flags, or 0 */
	int	hs_open_flags;
	int	hs_open_error;
	/* errno to fail every data sync with, or 0 */
	int	hs_sync_error;
	/* O_DIRECT offset alignment to report instead of the host's, or 0 */
	unsigned hs_dio_align;
	/* errno to fail io_uring setup with (ENOSYS, EPERM), or 0 */
	int	hs_uring_error;
	/* private rings a uring engine may make for synchronous buffers
	 * (0: its default) */
	unsigned hs_uring_nsync;
	/* the backend "auto" tries first, as a benchmark might make it
	 * choose (RUMPBLK_BACKEND_AUTO: the built-in policy) */
	enum rumpblk_backend hs_auto_first;
	/* errno to fail every mmap with, or 0 */
	int	hs_mmap_error;
};
extern struct rb_host_seam *rb_host_seam;

/* The seam's sync error, for data syncs done outside this file (an
 * io_uring fsync or RWF_DSYNC write); 0 in production. */
static inline int
rb_host_seam_sync_error(void)
{
	return RB_HOST_UNLIKELY(rb_host_seam != NULL) ?
	    rb_host_seam->hs_sync_error : 0;
}

#endif /* RUMPBLK_HOST_H */
