/*
 * rumpblk's FUSE export: one unit presented as a single regular file in
 * a FUSE mount, with libfuse3's low-level API (rumpblk serve --fuse).
 *
 * This is the interface the rumpblk(1) command (cli/serve.c) uses.  The
 * export is a caller of the public librumpblk API only: every read,
 * write, fsync, fallocate and SEEK_DATA/SEEK_HOLE becomes
 * rumpblk_strategy() calls on the unit, so the layers (fault rules, the
 * write cache and power cuts, the write log) and the counters apply to
 * it as to NBD clients.
 *
 * PATH, a regular file or a directory, is the mount point: a file becomes
 * the unit's contents itself; a directory gets one file in it, "disk".
 *
 * Threads: fuse_export_check, _start and _stop belong to one thread (the
 * CLI's main thread); fuse_export_file may be called from any thread.
 * The export runs libfuse's multithreaded loop in threads of its own,
 * and wakes that loop with SIGUSR2 when it stops (a no-op handler is
 * installed while an export runs; the CLI neither uses nor blocks it).
 */
#ifndef RUMPBLK_FUSE_EXPORT_H
#define RUMPBLK_FUSE_EXPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include <rumpblk/rumpblk.h>

/* The file of a directory mount point: PATH/disk. */
#define FUSE_EXPORT_DIRFILE	"disk"

struct fuse_export_config {
	struct rumpblk	*rb;		/* the instance; the caller owns it */
	int		unit;		/* the exported unit */
	const char	*path;		/* the mount point (--fuse PATH) */
	bool		read_only;	/* refuse writes even if the unit can */
	unsigned	max_threads;	/* FUSE worker threads; 0: 10 */
	FILE		*log;		/* messages; NULL: stderr */
	/*
	 * Called once, from the export's loop thread, if the mount goes
	 * away by other hands than fuse_export_stop's (fusermount3 -u,
	 * umount): the export then serves nothing.  May be NULL.  It must
	 * not call fuse_export_stop.
	 */
	void		(*gone)(void *arg);
	void		*gone_arg;
};

struct fuse_export;

/*
 * Check a mount point before anything is opened: it exists and is a
 * regular file or a directory, is not a mount point already, is writable
 * by us, and the host has /dev/fuse.  A stale mount of an earlier rumpblk
 * export whose server died (ENOTCONN, "Transport endpoint is not
 * connected") serves nothing: it is detached, and a line on log says so;
 * a stale mount of another file system is refused.  0, or an errno with
 * a one-line message naming the path in msg (len bytes, "--fuse: PATH:
 * ...").
 */
int	fuse_export_check(const char *path, FILE *log, char *msg,
	    size_t len);

/*
 * Mount the export and start serving it.  The unit must stay registered,
 * and the instance alive, until fuse_export_stop().  The export
 * subscribes to the instance's events: when the unit is reset
 * (RUMPBLK_EVENT_RESET: ctl reset, a power cut), every file handle opened
 * before then fails each later request with EIO, and handles opened
 * afterwards see the unit as it is after the reset.  0, or an errno with
 * a one-line message in msg; nothing is left mounted then.
 */
int	fuse_export_start(const struct fuse_export_config *,
	    struct fuse_export **, char *msg, size_t len);

/* The exported file: PATH, or PATH/disk.  Valid until _stop. */
const char *fuse_export_file(const struct fuse_export *);

/*
 * Unmount and stop: a mount nobody uses is unmounted at once; a busy one
 * (open handles, a loop device on the file) is detached lazily, its
 * handles then failing with ENOTCONN.  Requests being served complete
 * first.  Then the subscription ends and everything is freed.  NULL is
 * a no-op.
 */
void	fuse_export_stop(struct fuse_export *);

#endif /* RUMPBLK_FUSE_EXPORT_H */
