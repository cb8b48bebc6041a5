/*
 * Mount points of the FUSE export: the checks before anything is opened,
 * what /proc/self/mountinfo says is mounted where, the mount and the
 * unmount.
 *
 * Contents:
 *   1. /proc/self/mountinfo
 *   2. checks (fuse_export_check), stale mounts
 *   3. mount and unmount
 *
 * Mounting: as root (CAP_SYS_ADMIN) the export opens /dev/fuse and calls
 * mount(2) itself, then hands the descriptor to libfuse as "/dev/fd/N".
 * Owning the mount lets it unmount in the right order, while its threads
 * still serve: a plain umount(2) first, which ends the connection if
 * nobody uses the mount; only if that says EBUSY a lazy detach.  (libfuse
 * would close the device first and always detach lazily, failing any
 * request in flight.)  Without the privilege, libfuse mounts through the
 * setuid fusermount3, and unmounts with fusermount3 -u -z.
 *
 * Stale mounts: a server killed with SIGKILL leaves its mount behind, and
 * every access to it fails with ENOTCONN.  One of ours (type
 * fuse.rumpblk) serves nothing any more, so detaching it loses nothing
 * and is done at start, with a line that says so; another program's is
 * left alone, and the message says how to clear it.
 */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fuse-int.h"
#include "say.h"

#define FX_FSTYPE	"fuse.rumpblk"
#define FX_FUSERMOUNT	"fusermount3"

/* 1. /proc/self/mountinfo. */

/* Undo mountinfo's octal escapes (\040 for a space, ...) in place. */
static void
unescape(char *s)
{
	char *d = s;

	for (; *s != '\0'; s++, d++) {
		if (s[0] == '\\' && s[1] >= '0' && s[1] <= '3' &&
		    s[2] >= '0' && s[2] <= '7' && s[3] >= '0' && s[3] <= '7') {
			*d = (char)((s[1] - '0') * 64 + (s[2] - '0') * 8 +
			    (s[3] - '0'));
			s += 3;
		} else
			*d = *s;
	}
	*d = '\0';
}

/*
 * Is the absolute path abs a mount point?  true with its file system
 * type and source in type and source (len bytes each), of the last
 * mount there (the one on top).
 */
static bool
mounted_at(const char *abs, char *type, char *source, size_t len)
{
	char *line = NULL, *f[5], *sep, *save, *p;
	size_t cap = 0;
	bool found = false;
	FILE *mi;
	int i;

	if ((mi = fopen("/proc/self/mountinfo", "re")) == NULL)
		return false;
	while (getline(&line, &cap, mi) > 0) {
		/* ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTS [OPT...] - TYPE SRC */
		if ((sep = strstr(line, " - ")) == NULL)
			continue;
		*sep = '\0';
		p = line;
		for (i = 0; i < 5; i++)
			if ((f[i] = strtok_r(p, " ", &save)) == NULL)
				break;
			else
				p = NULL;
		if (i < 5)
			continue;
		unescape(f[4]);
		if (strcmp(f[4], abs) != 0)
			continue;
		p = sep + 3;
		if ((f[0] = strtok_r(p, " \n", &save)) == NULL)
			continue;
		f[1] = strtok_r(NULL, " \n", &save);
		snprintf(type, len, "%s", f[0]);
		snprintf(source, len, "%s", f[1] != NULL ? f[1] : "?");
		unescape(source);
		found = true;
	}
	free(line);
	fclose(mi);
	return found;
}

/*
 * The absolute path of path without following its last component
 * (which may be a dead mount that no stat can cross): the real path of
 * its directory, then its name.  NULL with errno if out of memory or
 * the directory cannot be resolved.
 */
static char *
abs_path(const char *path)
{
	char *d = strdup(path), *b = strdup(path), *rd = NULL, *res = NULL;

	if (d == NULL || b == NULL)
		goto out;
	if ((rd = realpath(dirname(d), NULL)) == NULL)
		goto out;
	if (strcmp(basename(b), "/") == 0)
		res = strdup("/");
	else if (asprintf(&res, "%s%s%s", rd, strcmp(rd, "/") == 0 ? "" :
	    "/", basename(b)) == -1)
		res = NULL;
out:
	free(rd);
	free(b);
	free(d);
	return res;
}

/* 2. Checks. */

/* Run fusermount3 -u [-z] -q path; its exit status, or -1. */
static int
fusermount_u(const char *path, bool lazy)
{
	pid_t pid;
	int st, fd;

	if ((pid = fork()) == -1)
		return -1;
	if (pid == 0) {
		if ((fd = open("/dev/null", O_WRONLY)) != -1) {
			dup2(fd, 2);
			dup2(fd, 1);
		}
		if (lazy)
			execlp(FX_FUSERMOUNT, FX_FUSERMOUNT, "-u", "-z", "-q",
			    "--", path, (char *)NULL);
		else
			execlp(FX_FUSERMOUNT, FX_FUSERMOUNT, "-u", "-q", "--",
			    path, (char *)NULL);
		_exit(127);
	}
	while (waitpid(pid, &st, 0) == -1)
		if (errno != EINTR)
			return -1;
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* Detach a dead mount of ours: 0, or -1. */
static int
detach_stale(const char *abs)
{
	if (umount2(abs, MNT_DETACH | UMOUNT_NOFOLLOW) == 0)
		return 0;
	if (errno != EPERM)
		return -1;
	return fusermount_u(abs, true) == 0 ? 0 : -1;
}

int
fuse_export_check(const char *path, FILE *log, char *msg, size_t len)
{
	char type[256], source[256], *abs;
	struct stat st;
	int error;

	if ((abs = abs_path(path)) == NULL)
		return fe_say(msg, len, errno, "--fuse: %s: %s", path,
		    strerror(errno));
	if (stat(path, &st) == -1 && errno == ENOTCONN) {
		if (!mounted_at(abs, type, source, sizeof(type)) ||
		    strcmp(type, FX_FSTYPE) != 0 || detach_stale(abs) != 0) {
			error = fe_say(msg, len, ENOTCONN, "--fuse: %s: a stale "
			    "FUSE mount (Transport endpoint is not connected) "
			    "left by a server that is gone; clear it with "
			    "'fusermount3 -u %s'", path, path);
			goto out;
		}
		fprintf(log != NULL ? log : stderr, "rumpblk serve: --fuse: "
		    "%s: detached a stale mount left by a rumpblk server "
		    "that is gone\n", path);
	}
	if (stat(path, &st) == -1) {
		error = fe_say(msg, len, errno, "--fuse: %s: %s%s", path,
		    strerror(errno), errno == ENOENT ? " (the mount point, a "
		    "file or a directory, must exist)" : "");
		goto out;
	}
	if (!S_ISREG(st.st_mode) && !S_ISDIR(st.st_mode)) {
		error = fe_say(msg, len, EINVAL, "--fuse: %s: not a regular file "
		    "or a directory", path);
		goto out;
	}
	free(abs);
	if ((abs = realpath(path, NULL)) == NULL)
		return fe_say(msg, len, errno, "--fuse: %s: %s", path,
		    strerror(errno));
	if (mounted_at(abs, type, source, sizeof(type))) {
		error = fe_say(msg, len, EBUSY, "--fuse: %s: already a mount "
		    "point (%s from %s); unmount it or choose another path",
		    path, type, source);
		goto out;
	}
	if (faccessat(AT_FDCWD, path, W_OK, AT_EACCESS) == -1) {
		error = fe_say(msg, len, errno, "--fuse: %s: not writable: %s "
		    "(a mount point must be writable by the user who mounts)",
		    path, strerror(errno));
		goto out;
	}
	if (stat("/dev/fuse", &st) == -1 || !S_ISCHR(st.st_mode)) {
		error = fe_say(msg, len, ENODEV, "--fuse: %s: cannot mount it: "
		    "the host has no /dev/fuse (load the fuse module, or give "
		    "the container the device)", path);
		goto out;
	}
	error = 0;
out:
	free(abs);
	return error;
}

/* 3. Mount and unmount. */

/*
 * mount(2) ourselves: 0, EPERM (not privileged: try fusermount3), or an
 * errno with msg filled.
 */
static int
mount_own(struct fuse_export *fx, char *msg, size_t len)
{
	char opts[256], fdpath[64];
	unsigned long flags = MS_NOSUID | MS_NODEV;
	int fd, error;

	if ((fd = open("/dev/fuse", O_RDWR | O_CLOEXEC)) == -1) {
		if (errno == EACCES || errno == EPERM)
			return EPERM;
		return fe_say(msg, len, errno, "--fuse: %s: cannot mount it: "
		    "/dev/fuse: %s", fx->fx_cfg.path, strerror(errno));
	}
	snprintf(opts, sizeof(opts), "fd=%d,rootmode=%o,user_id=%u,"
	    "group_id=%u,default_permissions", fd,
	    fx->fx_dirmode ? S_IFDIR : S_IFREG, (unsigned)fx->fx_uid,
	    (unsigned)fx->fx_gid);
	if (fx->fx_ro)
		flags |= MS_RDONLY;
	if (mount("rumpblk", fx->fx_mnt, FX_FSTYPE, flags, opts) == -1) {
		error = errno;
		close(fd);
		if (error == EPERM)
			return EPERM;
		return fe_say(msg, len, error, "--fuse: %s: cannot mount it: %s",
		    fx->fx_cfg.path, strerror(error));
	}
	/* libfuse takes the descriptor as it is (and closes it). */
	snprintf(fdpath, sizeof(fdpath), "/dev/fd/%d", fd);
	if (fuse_session_mount(fx->fx_se, fdpath) != 0) {
		close(fd);
		(void)umount2(fx->fx_mnt, MNT_DETACH | UMOUNT_NOFOLLOW);
		return fe_say(msg, len, EIO, "--fuse: %s: cannot mount it: "
		    "libfuse refused the device", fx->fx_cfg.path);
	}
	fx->fx_own_mount = true;
	return 0;
}

int
fx_mount(struct fuse_export *fx, char *msg, size_t len)
{
	int error;

	if ((error = mount_own(fx, msg, len)) != EPERM)
		return error;
	/* Not privileged: fusermount3 mounts for us (it is setuid). */
	if (fuse_session_mount(fx->fx_se, fx->fx_mnt) != 0)
		return fe_say(msg, len, EPERM, "--fuse: %s: cannot mount it "
		    "(neither mount(2) nor fusermount3 would; see above)",
		    fx->fx_cfg.path);
	return 0;
}

void
fx_unmount(struct fuse_export *fx)
{
	if (!fx->fx_own_mount)
		return;
	if (umount2(fx->fx_mnt, UMOUNT_NOFOLLOW) == 0)
		return;
	if (errno != EBUSY)
		return;		/* EINVAL: unmounted by other hands */
	if (umount2(fx->fx_mnt, MNT_DETACH | UMOUNT_NOFOLLOW) == 0)
		fx_log(fx, "--fuse: %s was busy (a loop device or open files "
		    "on it): detached it; those now get ENOTCONN",
		    fx->fx_cfg.path);
}
