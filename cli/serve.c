/*
 * rumpblk serve: export an image over NBD (DESIGN.md §5, §6).  The
 * command line is serve-opts.c's; this file opens the image and runs
 * the server, one function a phase, in the order cmd_serve takes them
 * and undoes them:
 *
 *   block_signals      SIGINT, SIGTERM, SIGCHLD to a signalfd
 *   load_tls           --tls's credentials, read and checked
 *   create_image       --create
 *   create_instance    the rumpblk instance, with the CLI's windows
 *   open_units         register IMAGE and --add-export's images, lock
 *                      them, say what is odd
 *   (cli_fault_start)  fault rules, log, replay, control socket
 *   (cli_metrics_start) --metrics: the Prometheus endpoint (metrics.c)
 *   start_listening    the NBD server, its sockets, the URI
 *   start_fuse         --fuse: mount the FUSE export (its mount point
 *                      was checked first of all, before the image)
 *   raise_fd_limit     RLIMIT_NOFILE's soft limit up to the hard one
 *   (pidfile, --run)
 *   serve_run          serve until a signal or the child's exit
 *   stop_fuse, stop_listening, cli_fault_stop, close_instance (--stats,
 *   durable data, the lock), then the pidfile
 *
 * The image is locked with an open file description lock (F_OFD_SETLK,
 * as qemu does): a write lock for a writable export, a read lock for a
 * read-only one, over the unit's bytes, so a second writer is refused.
 * The lock is let go only once written data is durable, and the
 * pidfile goes last, so that whoever waits for it to go finds the image
 * whole and free.  SIGINT and SIGTERM stop the server: in-flight
 * requests finish, written data is made durable (rumpblk_destroy), and
 * the exit status says whether that worked.
 *
 * Threads: each connection's reader thread does small reads itself and
 * hands writes, flushes, trims, zeroes and large reads to the library's
 * worker pool.  On a page-cached image one worker drains a burst of
 * requests with no wakeup per request, and measured on 2 cores it costs
 * a third of the CPU per 4 KiB write of the library's default pool (8
 * workers, each woken for one request); so serve defaults to 1 worker.
 * Storage that makes requests wait (not page-cached, devices) wants
 * more: --threads N.
 *
 * Every check that can fail happens before the server listens; an error
 * names the option or file at fault and leaves the image untouched.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cli.h"
#include "control.h"
#include "fuse-export.h"
#include "nbd.h"
#include "serve.h"
#include "metrics.h"

/*
 * What cmd_serve has acquired, released in reverse order (but see the
 * lock and the pidfile above).
 */
struct serve {
	int		sv_evid;	/* remote_event's subscription */
	int		sv_sigfd;	/* SIGINT, SIGTERM, SIGCHLD */
	sigset_t	sv_oldmask;	/* the mask --run's child gets */
	struct rumpblk	*sv_rb;
	int		sv_unit;
	struct rumpblk_unitinfo sv_ui;
	int		sv_lockfd;	/* -1: not locked */
	/* --add-export's units, in order (units 1, 2, ...). */
	struct serve_unit {
		int		su_unit;
		struct rumpblk_unitinfo su_ui;
		int		su_lockfd; /* -1: not locked */
	} sv_more[SERVE_MAX_MORE];
	int		sv_nmore;	/* registered */
	bool		sv_evsub;	/* remote_event subscribed */
	struct nbd_server *sv_srv;
	struct nbd_tls	*sv_tls;	/* --tls on or require, or NULL */
	char		*sv_uri;	/* $uri */
	int		sv_port;	/* of the first --listen, or -1 */
	bool		sv_pidfile;	/* --pidfile written */
	pid_t		sv_child;	/* --run, or -1 */
	struct rlimit	sv_nofile;	/* RLIMIT_NOFILE as we found it */
	bool		sv_nofile_raised; /* ... and raised it */
	char		*sv_audit;	/* the flush audit when the server went */
	struct cli_metrics *sv_metrics;	/* --metrics, or NULL */
	struct fuse_export *sv_fuse;	/* --fuse, or NULL */
	bool		sv_fuse_alone;	/* --fuse, no listener, no --run */
};

extern const char *serve_fuse_path;	/* serve-opts.c: --fuse PATH */
extern const char *serve_metrics_addr;	/* serve-opts.c: --metrics */

/* The stats hook: the live server's flush audit, or its last one. */
static void
serve_audit(FILE *f, void *arg)
{
	struct serve *sv = arg;

	if (sv->sv_srv != NULL)
		nbd_server_audit_json(sv->sv_srv, f);
	else
		fputs(sv->sv_audit != NULL ? sv->sv_audit : "null", f);
}

/* Percent-encode for an NBD URI (RFC 3986 unreserved and '/' kept). */
static void
uri_put(FILE *f, const char *s)
{
	for (; *s != '\0'; s++) {
		unsigned char ch = (unsigned char)*s;

		if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
		    (ch >= '0' && ch <= '9') || strchr("-._~/", ch) != NULL)
			fputc(ch, f);
		else
			fprintf(f, "%%%02X", ch);
	}
}

/*
 * The NBD URI of the first socket the server listens on ($uri).  With
 * --tls on or require it is libnbd's nbds form, with the certificate
 * directory (its ca-cert.pem checks the server's certificate; a client
 * certificate for --tls-verify-peer is not in it) or the PSK file and
 * its first username.
 */
static char *
make_uri(const struct serve_opts *o, int port, const struct nbd_tls *tls)
{
	const char *user = nbd_tls_psk_user(tls);
	char *buf = NULL, host[256];
	size_t len = 0;
	const char *a, *colon;
	FILE *f;

	/* --fuse alone: no NBD listener, no URI. */
	if (o->so_socket == NULL && o->so_nlisten == 0)
		return strdup("");
	if ((f = open_memstream(&buf, &len)) == NULL)
		return NULL;
	fputs(tls != NULL ? "nbds" : "nbd", f);
	fputs(o->so_socket != NULL ? "+unix://" : "://", f);
	if (user != NULL) {
		uri_put(f, user);
		fputc('@', f);
	}
	if (o->so_socket != NULL) {
		fputc('/', f);
		uri_put(f, o->so_export);
		fputs("?socket=", f);
		uri_put(f, o->so_socket);
	} else {
		a = o->so_listen[0];
		if (a[0] == '[') {
			colon = strstr(a, "]:");
			snprintf(host, sizeof(host), "%.*s",
			    (int)(colon - a + 1), a);
		} else {
			colon = strrchr(a, ':');
			snprintf(host, sizeof(host), "%.*s", (int)(colon - a),
			    a);
		}
		if (strcmp(host, "") == 0 || strcmp(host, "0.0.0.0") == 0)
			strcpy(host, "127.0.0.1");
		else if (strcmp(host, "[::]") == 0)
			strcpy(host, "[::1]");
		fprintf(f, "%s:%d/", host, port);
		uri_put(f, o->so_export);
	}
	if (tls != NULL) {
		fputs(o->so_socket != NULL ? "&" : "?", f);
		fputs(o->so_tls.certdir != NULL ? "tls-certificates=" :
		    "tls-psk-file=", f);
		uri_put(f, o->so_tls.certdir != NULL ? o->so_tls.certdir :
		    o->so_tls.pskfile);
	}
	fclose(f);
	return buf;
}

/* --pidfile: write our PID to path atomically (a rename). */
static int
write_pidfile(const char *path)
{
	char tmp[4096];
	FILE *f;

	if ((size_t)snprintf(tmp, sizeof(tmp), "%s.tmp%d", path,
	    (int)getpid()) >= sizeof(tmp))
		return ENAMETOOLONG;
	if ((f = fopen(tmp, "w")) == NULL)
		return errno;
	fprintf(f, "%d\n", (int)getpid());
	if (fclose(f) != 0 || rename(tmp, path) == -1) {
		int error = errno;
		unlink(tmp);
		return error;
	}
	return 0;
}

/* --stats FILE: the counters of every unit, one JSON object. */
static int
write_stats(const char *path, struct rumpblk *rb)
{
	FILE *f;

	if ((f = fopen(path, "w")) == NULL)
		return errno;
	cli_stats_json(f, rb);
	fputc('\n', f);
	if (fclose(f) != 0)
		return errno;
	return 0;
}

/* The OFD lock description of [off, off + size), shared or not. */
static void
flock_range(struct flock *fl, uint64_t off, uint64_t size, bool write)
{
	memset(fl, 0, sizeof(*fl));
	fl->l_type = write ? F_WRLCK : F_RDLCK;
	fl->l_whence = SEEK_SET;
	fl->l_start = (off_t)off;
	fl->l_len = (off_t)size;
}

/*
 * Lock the unit's bytes of the image against other writers (OFD lock).
 * Returns the descriptor that holds the lock, or -1 with a message.
 */
static int
lock_image(const char *image, uint64_t off, uint64_t size, bool write)
{
	struct flock fl;
	int fd, error;

	if ((fd = open(image, (write ? O_RDWR : O_RDONLY) | O_CLOEXEC)) ==
	    -1) {
		cli_err("%s: cannot open it to lock it: %s", image,
		    strerror(errno));
		return -1;
	}
	flock_range(&fl, off, size, write);
	if (fcntl(fd, F_OFD_SETLK, &fl) == 0)
		return fd;
	error = errno;
	if (error != EAGAIN && error != EACCES) {
		cli_err("%s: cannot lock it: %s (--no-lock skips the lock)",
		    image, strerror(error));
		close(fd);
		return -1;
	}
	flock_range(&fl, off, size, write);
	(void)fcntl(fd, F_OFD_GETLK, &fl);
	if (fl.l_pid > 0)
		cli_err("%s: the image is in use: process %d holds a %s lock "
		    "on it (use --read-only to share it for reading, or "
		    "--no-lock)", image, (int)fl.l_pid,
		    fl.l_type == F_WRLCK ? "write" : "read");
	else
		cli_err("%s: the image is in use: another process (qemu, a "
		    "second rumpblk serve, ...) holds a %s lock on it; "
		    "stop it, or use --no-lock", image,
		    fl.l_type == F_WRLCK ? "write" : "read");
	close(fd);
	return -1;
}

/* Exit status of a child, shell style. */
static int
child_status(int st)
{
	if (WIFEXITED(st))
		return WEXITSTATUS(st);
	if (WIFSIGNALED(st))
		return 128 + WTERMSIG(st);
	return 1;
}

/* --run: fork and exec sh -c cmd with $uri and the rest set. */
static pid_t
start_child(const char *cmd, const char *uri, const char *sock, int port,
    const struct serve *sv)
{
	char buf[32];
	pid_t pid;

	fflush(NULL);
	if ((pid = fork()) != 0)
		return pid;
	sigprocmask(SIG_SETMASK, &sv->sv_oldmask, NULL);
	/* The child gets the limit we were given (select() users). */
	if (sv->sv_nofile_raised)
		(void)setrlimit(RLIMIT_NOFILE, &sv->sv_nofile);
	signal(SIGPIPE, SIG_DFL);
	setenv("uri", uri, 1);
	if (sock != NULL)
		setenv("unixsocket", sock, 1);
	else
		unsetenv("unixsocket");
	if (port >= 0) {
		snprintf(buf, sizeof(buf), "%d", port);
		setenv("port", buf, 1);
	} else
		unsetenv("port");
	snprintf(buf, sizeof(buf), "%d", (int)getppid());
	setenv("pid", buf, 1);
	if (sv->sv_fuse != NULL)
		setenv("fuse", fuse_export_file(sv->sv_fuse), 1);
	else
		unsetenv("fuse");
	execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
	_exit(127);
}

/*
 * The server's threads never see the signals; the main thread reads
 * them from a signalfd in its accept loop (serve_run).  0, or 1 said.
 */
static int
block_signals(struct serve *sv)
{
	sigset_t mask;

	sigemptyset(&mask);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGCHLD);
	signal(SIGPIPE, SIG_IGN);
	if (sigprocmask(SIG_BLOCK, &mask, &sv->sv_oldmask) == -1 ||
	    (sv->sv_sigfd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK)) ==
	    -1) {
		cli_err("serve: signals: %s", strerror(errno));
		return 1;
	}
	return 0;
}

/*
 * --create: IMAGE, sparse, of --offset + --size bytes; never over an
 * existing file.  0, or 1 said (and nothing left behind).
 */
static int
create_image(const struct serve_opts *o)
{
	uint64_t end;
	int fd;

	if (o->so_offset > UINT64_MAX - o->so_size ||
	    o->so_offset + o->so_size > (uint64_t)INT64_MAX) {
		cli_err("--size: %" PRIu64 " bytes at --offset %" PRIu64
		    " is too large", o->so_size, o->so_offset);
		return 1;
	}
	end = o->so_offset + o->so_size;
	fd = open(o->so_image, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	if (fd == -1) {
		cli_err("%s: cannot create it: %s%s", o->so_image,
		    strerror(errno), errno == EEXIST ?
		    " (--create never overwrites)" : "");
		return 1;
	}
	if (ftruncate(fd, (off_t)end) == -1) {
		cli_err("%s: cannot make it %" PRIu64 " bytes: %s",
		    o->so_image, end, strerror(errno));
		close(fd);
		unlink(o->so_image);
		return 1;
	}
	close(fd);
	return 0;
}

/*
 * --tls on or require: read and check the certificates or the PSK file
 * now, before the image is touched, so that a bad file is one line and
 * exit status 1 (the options' combinations were checked with the
 * command line).  0, or 1 said.
 */
static int
load_tls(const struct serve_opts *o, struct serve *sv)
{
	char msg[1024];

	if (o->so_tls.mode == NBD_TLS_OFF)
		return 0;
	if (nbd_tls_create(&o->so_tls, &sv->sv_tls, msg, sizeof(msg)) != 0) {
		cli_err("%s", msg);
		return 1;
	}
	return 0;
}

/* The instance, configured by the options.  0, or 1 said. */
static int
create_instance(const struct serve_opts *o, struct serve *sv)
{
	struct rumpblk_config cfg = o->so_cfg;
	struct stat sb;
	int error;

	/* A remote or overlay spec has no file here to stat or map. */
	if (!cli_is_spec(o->so_image) && stat(o->so_image, &sb) == -1) {
		cli_err("%s: %s", o->so_image, strerror(errno));
		return 1;
	}
	if (!cli_is_spec(o->so_image))
		cli_default_windows(&cfg, o->so_image, o->so_offset,
		    o->so_size_set ? o->so_size : RUMPBLK_SIZENOTSET,
		    o->so_winsize_set ? cfg.winsize : 0,
		    o->so_wincount_set ? cfg.wincount : 0);
	cfg.sigbus_eio = true;
	if ((error = rumpblk_create(&cfg, &sv->sv_rb)) != 0) {
		cli_err("serve: cannot set up the driver: %s (check "
		    "--winsize, --wincount, --sector-size, --backend)",
		    strerror(error));
		return 1;
	}
	return 0;
}

/*
 * A remote backing lost or regained its server: one line on stderr, the
 * library's own account (what failed, what it does about it).
 */
static void
remote_event(void *arg, int unit, int event)
{
	struct serve *sv = arg;
	char msg[1024];

	if (event != RUMPBLK_EVENT_REMOTE_DOWN &&
	    event != RUMPBLK_EVENT_REMOTE_UP)
		return;
	if (rumpblk_backing_status(sv->sv_rb, unit, msg, sizeof(msg)) == 0)
		fprintf(stderr, "%s: %s\n", progname, msg);
}

/*
 * Register image (offset and size: the unit's bytes of it) as a unit and
 * lock it (unless --no-lock), then say what the user may not expect: a
 * read-only image.  0, or 1 said; the lock, once taken, is
 * close_instance's to release.
 */
static int
open_image(const struct serve_opts *o, struct serve *sv, const char *image,
    uint64_t offset, uint64_t size, bool size_set, int *unitp,
    struct rumpblk_unitinfo *ui, int *lockfdp)
{
	struct rumpblk_config cfg;
	bool writable;
	int error;

	rumpblk_get_config(sv->sv_rb, &cfg);
	if (cli_is_spec(image)) {
		/* Remote (or an overlay): nothing here to lock. */
		if (cli_register(sv->sv_rb, image, offset, size,
		    o->so_read_only, &o->so_spec, unitp) != 0)
			return 1;
		rumpblk_unitinfo(sv->sv_rb, *unitp, ui);
		writable = (ui->ui_mode & RUMPBLK_FWRITE) != 0;
		if (!writable && o->so_fault.fo_wcache != 0) {
			cli_err("--write-cache: %s is read-only: a write cache "
			    "over it has nothing to write to", image);
			return 1;
		}
		if (!o->so_read_only && !writable)
			cli_err("%s: the remote is read-only; serving it "
			    "read-only", image);
		if (!sv->sv_evsub)
			sv->sv_evsub = rumpblk_event_subscribe(sv->sv_rb,
			    remote_event, sv, &sv->sv_evid) == 0;
		return 0;
	}
	if ((error = rumpblk_register(sv->sv_rb, image, offset, size,
	    unitp)) != 0) {
		if (error == EINVAL && (offset != 0 || size_set))
			cli_err("%s: --offset %" PRIu64 " and --size do not "
			    "fit the file, or it is not a file or device: %s",
			    image, offset, strerror(error));
		else if (error == EOPNOTSUPP)
			cli_err("%s: cannot serve it with --backend %s: %s",
			    image, rumpblk_backend_name(cfg.backend),
			    strerror(error));
		else
			cli_err("%s: %s", image, strerror(error));
		return 1;
	}
	rumpblk_unitinfo(sv->sv_rb, *unitp, ui);
	writable = (ui->ui_mode & RUMPBLK_FWRITE) != 0;
	if (!o->so_no_lock && (*lockfdp = lock_image(image, ui->ui_offset,
	    ui->ui_size, !o->so_read_only && writable)) == -1)
		return 1;
	if (!o->so_read_only && !writable)
		cli_err("%s: opened read-only; serving it read-only", image);
	return 0;
}

/*
 * IMAGE as unit 0, then each --add-export's image, with its write cache
 * (IMAGE's is cli_fault_start's), and say whether seed-mode faults are
 * on.  0, or 1 said.
 */
static int
open_units(const struct serve_opts *o, struct serve *sv)
{
	struct rumpblk_config cfg;
	struct serve_unit *su;
	struct stat st[1 + SERVE_MAX_MORE];
	char what[300];
	int error;

	/* One file twice would be one unit under two names (the library
	 * registers a file once), or a lock held against ourselves. */
	for (int i = 0; i <= o->so_nmore; i++) {
		const char *p = i == 0 ? o->so_image : o->so_more[i - 1].sm_image;

		if (cli_is_spec(p) || stat(p, &st[i]) != 0)
			st[i].st_ino = 0;	/* open_image says why */
		for (int j = 0; j < i && st[i].st_ino != 0; j++)
			if (st[j].st_ino == st[i].st_ino &&
			    st[j].st_dev == st[i].st_dev) {
				cli_err("--add-export %s=%s: that file is "
				    "served already (as %s); each export "
				    "needs a file of its own",
				    o->so_more[i - 1].sm_name, p, j == 0 ?
				    "IMAGE" : o->so_more[j - 1].sm_name);
				return 1;
			}
	}
	if (open_image(o, sv, o->so_image, o->so_offset, o->so_size,
	    o->so_size_set, &sv->sv_unit, &sv->sv_ui, &sv->sv_lockfd) != 0)
		return 1;
	for (int i = 0; i < o->so_nmore; i++) {
		su = &sv->sv_more[i];
		su->su_lockfd = -1;
		sv->sv_nmore++;
		/* Its errors name the option as well as the file. */
		snprintf(what, sizeof(what), "--add-export %s",
		    o->so_more[i].sm_name);
		cli_context = what;
		error = open_image(o, sv, o->so_more[i].sm_image, 0,
		    RUMPBLK_SIZENOTSET, false, &su->su_unit, &su->su_ui,
		    &su->su_lockfd);
		cli_context = NULL;
		if (error != 0)
			return 1;
		if (o->so_fault.fo_wcache != 0 && (error =
		    rumpblk_write_cache(sv->sv_rb, su->su_unit,
		    o->so_fault.fo_wcache)) != 0) {
			cli_err("--write-cache: %s: %s", o->so_more[i].sm_image,
			    error == EROFS ? "the unit is read-only" :
			    strerror(error));
			return 1;
		}
		fprintf(stderr, "%s: export '%s' is unit %d: %s\n", progname,
		    o->so_more[i].sm_name, su->su_unit,
		    o->so_more[i].sm_image);
	}
	rumpblk_get_config(sv->sv_rb, &cfg);
	if (cfg.fail != 0)
		fprintf(stderr, "rumpblk: fault injection: failing %u of %u "
		    "reads and writes, seed %" PRIu32 "\n", cfg.fail,
		    RUMPBLK_BLKFAIL_MAX, cfg.fail_seed);
	return 0;
}

/*
 * At exit, once no connection is left: write --stats (if anything was
 * served: an error that stopped us before writes no file), make written
 * data durable (rumpblk_destroy), and only then let go of the lock, so
 * that the next writer finds all of it.  Returns rc, or 1 if rc was 0 and
 * one of these failed.
 */
static int
close_instance(const struct serve_opts *o, struct serve *sv, int rc,
    bool served)
{
	int error;

	/* Nothing served, nothing to count: an error wrote no file. */
	if (served && o->so_stats != NULL &&
	    (error = write_stats(o->so_stats, sv->sv_rb)) != 0) {
		cli_err("--stats: %s: %s", o->so_stats, strerror(error));
		if (rc == 0)
			rc = 1;
	}
	if ((error = rumpblk_destroy(sv->sv_rb)) != 0) {
		cli_err("%s: could not make written data durable: %s",
		    o->so_image, strerror(error));
		if (rc == 0)
			rc = 1;
	}
	sv->sv_rb = NULL;
	if (sv->sv_lockfd != -1)
		close(sv->sv_lockfd);
	sv->sv_lockfd = -1;
	for (int i = 0; i < sv->sv_nmore; i++)
		if (sv->sv_more[i].su_lockfd != -1)
			close(sv->sv_more[i].su_lockfd);
	sv->sv_nmore = 0;
	return rc;
}

/* NBD_INFO_DESCRIPTION of an export. */
static void
describe(char *buf, size_t len, const char *image,
    const struct rumpblk_unitinfo *ui)
{
	snprintf(buf, len, "rumpblk %s: %s, %s backend, %u-byte sectors",
	    rumpblk_version(), image, rumpblk_backend_name(ui->ui_backend),
	    ui->ui_secsize);
}

/*
 * The NBD server of the units, listening on --socket and every --listen,
 * and its URI.  0, or 1 said (and no server left).
 */
static int
start_listening(const struct serve_opts *o, struct serve *sv)
{
	struct nbd_server_config scfg;
	struct nbd_export_config more[SERVE_MAX_MORE];
	char desc[1 + SERVE_MAX_MORE][512];
	int error, i, port;

	describe(desc[0], sizeof(desc[0]), o->so_image, &sv->sv_ui);
	for (i = 0; i < sv->sv_nmore; i++) {
		describe(desc[i + 1], sizeof(desc[i + 1]),
		    o->so_more[i].sm_image, &sv->sv_more[i].su_ui);
		more[i].unit = sv->sv_more[i].su_unit;
		more[i].name = o->so_more[i].sm_name;
		more[i].description = desc[i + 1];
		more[i].read_only = o->so_read_only;
	}
	memset(&scfg, 0, sizeof(scfg));
	scfg.rb = sv->sv_rb;
	scfg.unit = sv->sv_unit;
	scfg.name = o->so_export;
	scfg.description = desc[0];
	scfg.read_only = o->so_read_only;
	scfg.more = more;
	scfg.nmore = (unsigned)sv->sv_nmore;
	scfg.copy_reads = o->so_copy_reads;
	scfg.max_connections = (unsigned)o->so_max_conn;
	scfg.max_handshakes = (unsigned)o->so_max_hs;
	scfg.handshake_timeout_ms = o->so_hs_timeout_s == 0 ? NBD_NO_TIMEOUT :
	    (unsigned)(o->so_hs_timeout_s * 1000);
	scfg.shutdown_timeout_ms = (unsigned)(o->so_shutdown_s * 1000);
	scfg.tls = sv->sv_tls;
	if ((error = nbd_server_create(&scfg, &sv->sv_srv)) != 0) {
		cli_err("serve: %s", strerror(error));
		return 1;
	}
	if (o->so_socket != NULL &&
	    (error = nbd_server_listen_unix(sv->sv_srv, o->so_socket)) != 0) {
		cli_err("--socket: %s: %s", o->so_socket, strerror(error));
		goto destroy;
	}
	for (i = 0; i < o->so_nlisten; i++) {
		error = nbd_server_listen_tcp(sv->sv_srv, o->so_listen[i],
		    &port);
		if (error != 0) {
			cli_err("--listen: %s: %s", o->so_listen[i],
			    error == EINVAL ? "expected ADDR:PORT, e.g. "
			    "127.0.0.1:10809 or [::1]:0" : strerror(error));
			goto destroy;
		}
		if (i == 0)
			sv->sv_port = port;
	}
	if ((sv->sv_uri = make_uri(o, sv->sv_port, sv->sv_tls)) == NULL) {
		cli_err("serve: out of memory");
		goto destroy;
	}
	cli_stats_set_extra(serve_audit, sv);
	return 0;
destroy:
	nbd_server_destroy(sv->sv_srv);
	sv->sv_srv = NULL;
	return 1;
}

/*
 * The FUSE mount went away by other hands (fusermount3 -u): with nothing
 * else to serve, stop as at SIGTERM (from the export's thread).
 */
static void
fuse_gone(void *arg)
{
	struct serve *sv = arg;

	if (sv->sv_fuse_alone)
		nbd_server_stop(sv->sv_srv);
}

/*
 * --fuse PATH: mount the FUSE export of the unit, once the NBD sockets
 * (if any) listen.  0, or 1 said (and nothing mounted).
 */
static int
start_fuse(const struct serve_opts *o, struct serve *sv)
{
	struct fuse_export_config fcfg;
	char msg[1024];

	memset(&fcfg, 0, sizeof(fcfg));
	fcfg.rb = sv->sv_rb;
	fcfg.unit = sv->sv_unit;
	fcfg.path = serve_fuse_path;
	fcfg.read_only = o->so_read_only;
	fcfg.gone = fuse_gone;
	fcfg.gone_arg = sv;
	sv->sv_fuse_alone = o->so_socket == NULL && o->so_nlisten == 0 &&
	    o->so_run == NULL;
	if (fuse_export_start(&fcfg, &sv->sv_fuse, msg, sizeof(msg)) != 0) {
		cli_err("%s", msg);
		return 1;
	}
	return 0;
}

/* Unmount the FUSE export (lazily if busy); none is a no-op. */
static void
stop_fuse(struct serve *sv)
{
	fuse_export_stop(sv->sv_fuse);
	sv->sv_fuse = NULL;
}

/*
 * Every client costs a descriptor, and --max-handshakes idle ones are
 * to be held while --max-connections clients are served: take the hard
 * limit (the soft one is often 1024).  Nothing here uses select(), so
 * descriptors past FD_SETSIZE are safe; --run's child gets the limit
 * back.  Too few descriptors are worth a warning, not a refusal: out
 * of them, the accept loop closes the oldest handshake to make room.
 */
static void
raise_fd_limit(const struct serve_opts *o, struct serve *sv)
{
	struct rlimit rl;
	uint64_t need;

	if (getrlimit(RLIMIT_NOFILE, &sv->sv_nofile) == -1)
		return;
	rl = sv->sv_nofile;
	if (rl.rlim_cur != rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &rl) == 0)
			sv->sv_nofile_raised = true;
		else
			rl = sv->sv_nofile;
	}
	/* Each client a socket, plus some for listeners, image, logs. */
	need = o->so_max_hs + o->so_max_conn + 64;
	if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < need)
		cli_err("serve: warning: RLIMIT_NOFILE allows %ju file "
		    "descriptors, fewer than --max-handshakes %ju and "
		    "--max-connections %ju need (%ju)",
		    (uintmax_t)rl.rlim_cur, (uintmax_t)o->so_max_hs,
		    (uintmax_t)o->so_max_conn, (uintmax_t)need);
}

/*
 * Close the sockets (removing --socket's file); no client is left.
 * Before the instance goes: the server unsubscribes from its events.
 */
static void
stop_listening(struct serve *sv)
{
	struct nbd_server *srv;
	char *buf = NULL;
	size_t len = 0;
	FILE *f;

	/* Keep the last audit for --stats (and ctl stats meanwhile). */
	if ((f = open_memstream(&buf, &len)) != NULL) {
		nbd_server_audit_json(sv->sv_srv, f);
		if (fclose(f) != 0) {
			free(buf);
			buf = NULL;
		}
	}
	srv = sv->sv_srv;
	cli_stats_set_extra(NULL, NULL);	/* waits for a reader */
	sv->sv_audit = buf;
	sv->sv_srv = NULL;
	cli_stats_set_extra(serve_audit, sv);
	nbd_server_destroy(srv);
	free(sv->sv_uri);
	sv->sv_uri = NULL;
}

/*
 * Serve until SIGINT/SIGTERM or, with --run, the child's exit; then
 * stop the child if a signal came first.  Returns the exit status: the
 * child's, or 0.
 */
static int
serve_run(struct serve *sv)
{
	struct signalfd_siginfo si;
	bool got_signal = false;
	int st = 0;

	nbd_server_run(sv->sv_srv, sv->sv_sigfd);
	/* Why did it stop?  Drain the signalfd. */
	while (read(sv->sv_sigfd, &si, sizeof(si)) == (ssize_t)sizeof(si))
		if (si.ssi_signo != SIGCHLD)
			got_signal = true;
	if (sv->sv_child <= 0)
		return 0;
	if (got_signal)
		kill(sv->sv_child, SIGTERM);
	while (waitpid(sv->sv_child, &st, 0) == -1 && errno == EINTR)
		;
	return child_status(st);
}

int
cmd_serve(int argc, char **argv)
{
	struct serve_opts o;
	struct serve sv = {
		.sv_sigfd = -1, .sv_lockfd = -1, .sv_port = -1,
		.sv_child = -1,
	};
	bool served = false;
	int error, rc;

	if (!serve_parse(argc, argv, &o, &rc))
		return rc;
	rc = 1;
	if (block_signals(&sv) != 0)
		goto free_opts;
	/* The mount point, before anything is opened (a stale mount of
	 * ours is cleared here). */
	if (serve_fuse_path != NULL) {
		char msg[1024];

		if (fuse_export_check(serve_fuse_path, stderr, msg,
		    sizeof(msg)) != 0) {
			cli_err("%s", msg);
			goto close_sigfd;
		}
	}
	if (load_tls(&o, &sv) != 0)
		goto close_sigfd;
	if (o.so_create && create_image(&o) != 0)
		goto close_sigfd;
	if (create_instance(&o, &sv) != 0)
		goto remove_image;
	if (open_units(&o, &sv) != 0)
		goto close_instance;
	/* Rules, log, replay and control socket, before any I/O. */
	o.so_fault.fo_image = o.so_image;
	if ((rc = cli_fault_start(&o.so_fault, sv.sv_rb, sv.sv_unit,
	    stderr)) != 0)
		goto stop_faults;
	rc = 1;
	/* --metrics: a bad address or a port in use stops us here. */
	if (serve_metrics_addr != NULL && cli_metrics_start(sv.sv_rb,
	    serve_metrics_addr, &sv.sv_metrics) != 0)
		goto stop_faults;
	if (start_listening(&o, &sv) != 0)
		goto stop_faults;
	served = true;
	if (serve_fuse_path != NULL && start_fuse(&o, &sv) != 0)
		goto stop_listening;
	raise_fd_limit(&o, &sv);
	if (o.so_pidfile != NULL &&
	    (error = write_pidfile(o.so_pidfile)) != 0) {
		cli_err("--pidfile: %s: %s", o.so_pidfile, strerror(error));
		goto stop_listening;
	}
	sv.sv_pidfile = o.so_pidfile != NULL;
	if (o.so_run != NULL && (sv.sv_child = start_child(o.so_run,
	    sv.sv_uri, o.so_socket, sv.sv_port, &sv)) == -1) {
		cli_err("--run: cannot start it: %s", strerror(errno));
		goto stop_listening;
	}

	rc = serve_run(&sv);

stop_listening:
	stop_fuse(&sv);
	stop_listening(&sv);
stop_faults:
	cli_metrics_stop(sv.sv_metrics);	/* before the instance goes */
	sv.sv_metrics = NULL;
	/* Every connection is done: no firing is logged after this. */
	cli_fault_stop(&o.so_fault, sv.sv_rb);
close_instance:
	rc = close_instance(&o, &sv, rc, served);
remove_image:
	if (o.so_create && !served)
		unlink(o.so_image);	/* we made it and never served it */
	if (sv.sv_pidfile)
		unlink(o.so_pidfile);	/* last: see the head comment */
close_sigfd:
	nbd_tls_destroy(sv.sv_tls);	/* no server is left to use it */
	close(sv.sv_sigfd);
	cli_stats_set_extra(NULL, NULL);
	free(sv.sv_audit);
free_opts:
	serve_opts_free(&o);
	return rc;
}
