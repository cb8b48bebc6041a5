/*
 * The FUSE export's private declarations, one section per .c file:
 *   export.c   the export's life: start, the loop thread, events, stop
 *   mount.c    mount points: checks, /proc/self/mountinfo, mount, unmount
 *   ops.c      the low-level operations and their strategy calls
 */
#ifndef RUMPBLK_FUSE_INT_H
#define RUMPBLK_FUSE_INT_H

#define FUSE_USE_VERSION 312

#include <fuse_lowlevel.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#include "fuse-export.h"
#include "rangelock.h"

/* Inodes: the root (the file itself, or the directory), and PATH/disk. */
#define FX_INO_ROOT	FUSE_ROOT_ID
#define FX_INO_DISK	2

/* Seconds the kernel may cache attributes and the entry: they never
 * change (the unit's size is fixed). */
#define FX_ATTR_TIMEOUT	3600.0

/*
 * Locks: l = fx_lock, a = atomic, ( = set at start, then read-only.
 * Lock order: fx_lock is a leaf; the range lock is never taken with it.
 */
struct fuse_export {
	struct fuse_export_config fx_cfg;	/* ( path copied below */
	char		*fx_mnt;	/* ( the mount point, absolute */
	char		*fx_file;	/* ( fx_mnt, or fx_mnt/disk */
	bool		fx_dirmode;	/* ( fx_mnt is a directory */
	bool		fx_ro;		/* ( no writes */
	bool		fx_trim_zeroes;	/* ( a TRIM reads back as zeroes */
	bool		fx_own_mount;	/* ( mount(2) here, not fusermount3 */
	uint64_t	fx_size;	/* ( the unit's, bytes */
	uint64_t	fx_secsize;	/* ( bytes */
	struct timespec	fx_time;	/* ( every timestamp of the file */
	uid_t		fx_uid;		/* ( the file's owner: us */
	gid_t		fx_gid;
	struct fuse_session *fx_se;	/* ( */
	int		fx_evid;	/* ( the event subscription */
	pthread_key_t	fx_bufkey;	/* ( a worker's read buffer */
	pthread_t	fx_thread;	/* ( runs fuse_session_loop_mt */
	/*
	 * XXX(#16): the NBD server of the same unit has a range lock of its
	 * own, so a read-modify-write here is atomic against the file's
	 * other writes but not against an NBD client writing the other
	 * bytes of the same sector at the same moment.  One lock per unit
	 * wants nbd_server_config to take it from the CLI.
	 */
	struct fe_rangelock fx_rl;

	/*
	 * The reset fence.  A file handle's fh is the generation when it
	 * was opened; a request whose handle is older than fx_gen fails
	 * with EIO.  fx_submitting counts threads between the check and
	 * the return of rumpblk_strategy, so that once a reset has bumped
	 * fx_gen and waited for it to drain, no request of an old handle
	 * reaches the unit.
	 */
	_Atomic uint64_t fx_gen;		/* a */
	_Atomic unsigned fx_submitting;		/* a */

	pthread_mutex_t	fx_lock;
	pthread_cond_t	fx_cv;		/* l: fx_loop_done was set */
	bool		fx_loop_done;	/* l: fuse_session_loop_mt returned */
	_Atomic bool	fx_stopping;	/* a: fuse_export_stop is running */
};

/* export.c */
/* One line on the export's log, "rumpblk serve: " first. */
void	fx_log(const struct fuse_export *, const char *fmt, ...)
	    __attribute__((format(printf, 2, 3)));

/* mount.c */
/*
 * Mount the session at fx_mnt: with mount(2) when we may (root), else
 * through fusermount3 (libfuse).  0, or an errno with msg filled.
 */
int	fx_mount(struct fuse_export *, char *msg, size_t len);
/*
 * Take the mount away: unmounted if nobody uses it, else detached
 * lazily (said on the log).  For a mount of our own only (mount(2));
 * a fusermount3 mount goes with fuse_session_unmount().
 */
void	fx_unmount(struct fuse_export *);

/* ops.c */
extern const struct fuse_lowlevel_ops fx_ops;
/*
 * After a reset moved fx_gen on: wait (bounded) until no thread but the
 * caller is between its generation check and the return of its strategy
 * call, so that no request of an older handle reaches the unit after.
 */
void	fx_reset_fence(struct fuse_export *);
/* fx_bufkey's destructor: a worker's read buffer. */
void	fx_buf_free(void *);

#endif /* RUMPBLK_FUSE_INT_H */
