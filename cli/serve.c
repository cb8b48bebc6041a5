/*
 * rumpblk serve: export an image over NBD (DESIGN.md §5, §6).
 *
 *   rumpblk serve [options] IMAGE
 *
 *   --socket PATH          listen on a Unix socket
 *   --listen ADDR:PORT     listen on TCP (repeatable; default
 *                          127.0.0.1:10809 when neither is given; PORT 0
 *                          picks a free port; IPv6 as [::1]:PORT)
 *   --export NAME          the export name LIST reports (any name is
 *                          accepted from clients)
 *   --read-only            refuse writes (also for a read-only image)
 *   --offset N, --size N   the unit is N bytes of IMAGE from offset
 *   --create               create IMAGE, sparse, of --size bytes (never
 *                          overwrites)
 *   --backend B            auto, mmap, pio, direct or uring
 *   --sector-size N        512 ... 65536, a power of two
 *   --winsize N, --wincount N   mmap windows (default: cover the image)
 *   --fail N, --fail-seed S     seed-mode fault injection (RUMP_BLKFAIL)
 *   --stats FILE           counters as JSON at exit
 *   --fault RULE, --fault-log FILE, --fault-replay FILE, --control PATH
 *                          fault rules (cli/fault.c, cli/control.c)
 *   --run CMD              captive mode: run sh -c CMD with $uri,
 *                          $unixsocket, $port, $pid; stop when it exits
 *                          and exit with its status
 *   --pidfile FILE         written once the sockets listen
 *   --threads N            library worker threads for asynchronous I/O
 *                          (default 1; see below)
 *   --max-connections N    default 64
 *   --shutdown-timeout S   give up on clients that do not read replies
 *                          S seconds after SIGINT/SIGTERM (default 10)
 *   --no-lock              do not take the image's OFD lock
 *
 * Sizes take K, M, G, T suffixes (powers of 1024).  Flags override the
 * RUMP_BLK* environment.  The image is locked with an open file
 * description lock (F_OFD_SETLK, as qemu does): a write lock for a
 * writable export, a read lock for a read-only one, over the unit's
 * bytes, so a second writer is refused.  SIGINT and SIGTERM stop the
 * server: in-flight requests finish, written data is made durable
 * (rumpblk_destroy), and the exit status says whether that worked.
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
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cli.h"
#include "control.h"
#include "nbd.h"

#define SERVE_MAX_LISTEN	4

static void
serve_usage(FILE *f)
{
	fprintf(f,
"usage: rumpblk serve [options] IMAGE\n\n"
"Export IMAGE as a block device over NBD until SIGINT or SIGTERM.\n\n"
"  --socket PATH          listen on a Unix socket at PATH\n"
"  --listen ADDR:PORT     listen on TCP (repeatable; default 127.0.0.1:10809\n"
"                         when no --socket or --listen is given; PORT 0 picks\n"
"                         a free port; IPv6 as [::1]:PORT)\n"
"  --export NAME          export name reported by LIST (clients may ask\n"
"                         for any name)\n"
"  --read-only            refuse writes\n"
"  --offset N             the unit starts N bytes into IMAGE\n"
"  --size N               the unit is N bytes (default: the rest)\n"
"  --create               create IMAGE (sparse) of --size bytes; never\n"
"                         overwrites an existing file\n"
"  --backend B            auto, mmap, pio, direct or uring\n"
"  --sector-size N        512, 1024, ..., 65536\n"
"  --winsize N            mmap window size (default: windows cover IMAGE)\n"
"  --wincount N           mmap window count\n"
"  --fail N               fail N of 10000 reads and writes with EIO\n"
"  --fail-seed S          seed of those failures (printed either way)\n"
"  --stats FILE           write the counters as JSON to FILE at exit\n"
CLI_FAULT_HELP
"  --run CMD              captive mode: run 'sh -c CMD' with $uri,\n"
"                         $unixsocket, $port and $pid set; stop when CMD\n"
"                         exits, with its exit status\n"
"  --pidfile FILE         write the PID to FILE once the sockets listen\n"
"  --threads N            worker threads for asynchronous I/O (default 1,\n"
"                         best for page-cached images; raise it for slow\n"
"                         storage; 0: the library's default)\n"
"  --max-connections N    clients served at once (default 64)\n"
"  --shutdown-timeout S   at SIGINT/SIGTERM, give up on clients that do\n"
"                         not read their replies after S seconds (10)\n"
"  --no-lock              do not lock IMAGE against a second writer\n"
"Sizes take K, M, G and T suffixes (powers of 1024).\n");
}

enum {
	O_SOCKET = 256, O_LISTEN, O_EXPORT, O_RO, O_OFFSET, O_SIZE, O_CREATE,
	O_BACKEND, O_SECTOR, O_WINSIZE, O_WINCOUNT, O_FAIL, O_FAILSEED,
	O_STATS, O_RUN, O_PIDFILE, O_THREADS, O_MAXCONN, O_SHUTDOWN,
	O_NOLOCK, O_HELP,
};

struct serve_opts {
	const char	*image;
	const char	*socket;
	const char	*listen[SERVE_MAX_LISTEN];
	int		nlisten;
	const char	*export;
	bool		read_only;
	uint64_t	offset;
	uint64_t	size;
	bool		size_set;
	bool		create;
	const char	*stats;
	const char	*run;
	const char	*pidfile;
	uint64_t	max_conn;
	uint64_t	shutdown_s;
	bool		no_lock;
	bool		winsize_set;
	bool		wincount_set;
};

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

static char *
make_uri(const struct serve_opts *o, int port)
{
	char *buf = NULL, host[256];
	size_t len = 0;
	const char *a, *colon;
	FILE *f;

	if ((f = open_memstream(&buf, &len)) == NULL)
		return NULL;
	if (o->socket != NULL) {
		fputs("nbd+unix:///", f);
		uri_put(f, o->export);
		fputs("?socket=", f);
		uri_put(f, o->socket);
	} else {
		a = o->listen[0];
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
		fprintf(f, "nbd://%s:%d/", host, port);
		uri_put(f, o->export);
	}
	fclose(f);
	return buf;
}

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

static pid_t
start_child(const char *cmd, const char *uri, const char *sock, int port,
    const sigset_t *oldmask)
{
	char buf[32];
	pid_t pid;

	fflush(NULL);
	if ((pid = fork()) != 0)
		return pid;
	sigprocmask(SIG_SETMASK, oldmask, NULL);
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
	execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
	_exit(127);
}

int
cmd_serve(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "socket", required_argument, NULL, O_SOCKET },
		{ "listen", required_argument, NULL, O_LISTEN },
		{ "export", required_argument, NULL, O_EXPORT },
		{ "read-only", no_argument, NULL, O_RO },
		{ "offset", required_argument, NULL, O_OFFSET },
		{ "size", required_argument, NULL, O_SIZE },
		{ "create", no_argument, NULL, O_CREATE },
		{ "backend", required_argument, NULL, O_BACKEND },
		{ "sector-size", required_argument, NULL, O_SECTOR },
		{ "winsize", required_argument, NULL, O_WINSIZE },
		{ "wincount", required_argument, NULL, O_WINCOUNT },
		{ "fail", required_argument, NULL, O_FAIL },
		{ "fail-seed", required_argument, NULL, O_FAILSEED },
		{ "stats", required_argument, NULL, O_STATS },
		{ "run", required_argument, NULL, O_RUN },
		{ "pidfile", required_argument, NULL, O_PIDFILE },
		{ "threads", required_argument, NULL, O_THREADS },
		{ "max-connections", required_argument, NULL, O_MAXCONN },
		{ "shutdown-timeout", required_argument, NULL, O_SHUTDOWN },
		{ "no-lock", no_argument, NULL, O_NOLOCK },
		{ "help", no_argument, NULL, O_HELP },
		CLI_FAULT_LONGOPTS,
		{ NULL, 0, NULL, 0 },
	};
	struct serve_opts o;
	struct rumpblk_config cfg;
	struct rumpblk_unitinfo ui;
	struct cli_fault_opts fo;
	struct nbd_server_config scfg;
	struct nbd_server *srv = NULL;
	struct rumpblk *rb = NULL;
	struct signalfd_siginfo si;
	struct stat sb;
	sigset_t mask, oldmask;
	char desc[512], *uri = NULL;
	uint64_t v;
	pid_t child = -1;
	int c, error, unit, port = -1, lockfd = -1, sigfd = -1, i, cst = 0;
	int rc = 1;
	bool created = false, got_signal = false, pid_written = false;
	ssize_t n;

	memset(&o, 0, sizeof(o));
	memset(&fo, 0, sizeof(fo));
	o.export = "";
	o.size = RUMPBLK_SIZENOTSET;
	o.max_conn = 64;
	o.shutdown_s = 10;
	rumpblk_config_init(&cfg);
	rumpblk_config_from_env(&cfg, stderr);
	cfg.workers = 1;		/* see "Threads" above */
	optind = 1;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case O_SOCKET:
			o.socket = optarg;
			break;
		case O_LISTEN:
			if (o.nlisten == SERVE_MAX_LISTEN) {
				cli_err("--listen: at most %d addresses",
				    SERVE_MAX_LISTEN);
				return 2;
			}
			o.listen[o.nlisten++] = optarg;
			break;
		case O_EXPORT:
			if (strlen(optarg) > 4096) {
				cli_err("--export: names are at most 4096 "
				    "bytes");
				return 2;
			}
			o.export = optarg;
			break;
		case O_RO:
			o.read_only = true;
			break;
		case O_OFFSET:
			if (!cli_opt_size("--offset", optarg, &o.offset))
				return 2;
			break;
		case O_SIZE:
			if (!cli_opt_size("--size", optarg, &o.size))
				return 2;
			o.size_set = true;
			break;
		case O_CREATE:
			o.create = true;
			break;
		case O_BACKEND:
			if (!cli_opt_backend(optarg, &cfg.backend))
				return 2;
			break;
		case O_SECTOR:
			if (!cli_parse_sectsize(optarg, &cfg.sectshift))
				return 2;
			break;
		case O_WINSIZE:
			if (!cli_opt_size("--winsize", optarg, &v))
				return 2;
			if (v == 0 || (v & (v - 1)) != 0 || v < 4096) {
				cli_err("--winsize: '%s' is not a power of two "
				    "of at least 4K", optarg);
				return 2;
			}
			cfg.winsize = v;
			o.winsize_set = true;
			break;
		case O_WINCOUNT:
			if (!cli_opt_uint("--wincount", optarg, 1, 1u << 20,
			    &v))
				return 2;
			cfg.wincount = (unsigned)v;
			o.wincount_set = true;
			break;
		case O_FAIL:
			if (!cli_opt_uint("--fail", optarg, 0,
			    RUMPBLK_BLKFAIL_MAX, &v))
				return 2;
			cfg.fail = (unsigned)v;
			break;
		case O_FAILSEED:
			if (!cli_opt_uint("--fail-seed", optarg, 0,
			    UINT32_MAX, &v))
				return 2;
			cfg.fail_seed = (uint32_t)v;
			cfg.fail_seed_set = true;
			break;
		case O_STATS:
			o.stats = optarg;
			break;
		case O_RUN:
			o.run = optarg;
			break;
		case O_PIDFILE:
			o.pidfile = optarg;
			break;
		case O_THREADS:
			if (!cli_opt_uint("--threads", optarg, 0, 1024, &v))
				return 2;
			cfg.workers = (unsigned)v;
			break;
		case O_MAXCONN:
			if (!cli_opt_uint("--max-connections", optarg, 1,
			    100000, &o.max_conn))
				return 2;
			break;
		case O_SHUTDOWN:
			if (!cli_opt_uint("--shutdown-timeout", optarg, 0,
			    86400, &o.shutdown_s))
				return 2;
			break;
		case O_NOLOCK:
			o.no_lock = true;
			break;
		case O_HELP:
		case 'h':
			serve_usage(stdout);
			return 0;
		case CLI_OPT_FAULT:
		case CLI_OPT_FAULT_LOG:
		case CLI_OPT_FAULT_REPLAY:
		case CLI_OPT_CONTROL:
			if ((error = cli_fault_option(&fo, c, optarg)) != 0)
				return error;
			break;
		default:
			serve_usage(stderr);
			return 2;
		}
	}
	if (optind != argc - 1) {
		cli_err("serve: expected one IMAGE (try 'rumpblk serve "
		    "--help')");
		return 2;
	}
	o.image = argv[optind];
	if (o.create && !o.size_set) {
		cli_err("--create: needs --size");
		return 2;
	}
	if (o.socket == NULL && o.nlisten == 0)
		o.listen[o.nlisten++] = "127.0.0.1:10809";
	if (o.socket != NULL && access(o.socket, F_OK) == 0) {
		cli_err("--socket: %s already exists", o.socket);
		return 1;
	}
	cfg.sigbus_eio = true;

	/*
	 * Signals: the server's threads never see them; the main thread
	 * reads them from a signalfd in its accept loop.
	 */
	sigemptyset(&mask);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGCHLD);
	signal(SIGPIPE, SIG_IGN);
	if (sigprocmask(SIG_BLOCK, &mask, &oldmask) == -1 ||
	    (sigfd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK)) == -1) {
		cli_err("serve: signals: %s", strerror(errno));
		return 1;
	}

	if (o.create) {
		int fd;

		if (o.offset > UINT64_MAX - o.size ||
		    o.offset + o.size > (uint64_t)INT64_MAX) {
			cli_err("--size: %" PRIu64 " bytes at --offset %" PRIu64
			    " is too large", o.size, o.offset);
			goto out;
		}
		fd = open(o.image, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC,
		    0644);
		if (fd == -1) {
			cli_err("%s: cannot create it: %s%s", o.image,
			    strerror(errno), errno == EEXIST ?
			    " (--create never overwrites)" : "");
			goto out;
		}
		created = true;
		if (ftruncate(fd, (off_t)(o.offset + o.size)) == -1) {
			cli_err("%s: cannot make it %" PRIu64 " bytes: %s",
			    o.image, o.offset + o.size, strerror(errno));
			close(fd);
			goto out;
		}
		close(fd);
	}
	if (stat(o.image, &sb) == -1) {
		cli_err("%s: %s", o.image, strerror(errno));
		goto out;
	}
	cli_default_windows(&cfg, o.image, o.offset,
	    o.size_set ? o.size : RUMPBLK_SIZENOTSET,
	    o.winsize_set ? cfg.winsize : 0, o.wincount_set ? cfg.wincount : 0);
	if ((error = rumpblk_create(&cfg, &rb)) != 0) {
		cli_err("serve: cannot set up the driver: %s (check "
		    "--winsize, --wincount, --sector-size, --backend)",
		    strerror(error));
		goto out;
	}
	rumpblk_get_config(rb, &cfg);
	if ((error = rumpblk_register(rb, o.image, o.offset, o.size,
	    &unit)) != 0) {
		if (error == EINVAL && (o.offset != 0 || o.size_set))
			cli_err("%s: --offset %" PRIu64 " and --size do not "
			    "fit the file, or it is not a file or device: %s",
			    o.image, o.offset, strerror(error));
		else if (error == EOPNOTSUPP)
			cli_err("%s: cannot serve it with --backend %s: %s",
			    o.image, rumpblk_backend_name(cfg.backend),
			    strerror(error));
		else
			cli_err("%s: %s", o.image, strerror(error));
		goto out;
	}
	rumpblk_unitinfo(rb, unit, &ui);
	if (!o.no_lock && (lockfd = lock_image(o.image, ui.ui_offset,
	    ui.ui_size, !o.read_only && (ui.ui_mode & RUMPBLK_FWRITE))) == -1)
		goto out;
	if (!o.read_only && (ui.ui_mode & RUMPBLK_FWRITE) == 0)
		cli_err("%s: opened read-only; serving it read-only", o.image);
	if (cfg.fail != 0)
		fprintf(stderr, "rumpblk: fault injection: failing %u of %u "
		    "reads and writes, seed %" PRIu32 "\n", cfg.fail,
		    RUMPBLK_BLKFAIL_MAX, cfg.fail_seed);
	/* Rules, log, replay and control socket, before any I/O. */
	if ((error = cli_fault_start(&fo, rb, unit, stderr)) != 0) {
		rc = error;
		goto out;
	}

	snprintf(desc, sizeof(desc), "rumpblk %s: %s, %s backend, %u-byte "
	    "sectors", rumpblk_version(), o.image,
	    rumpblk_backend_name(ui.ui_backend), ui.ui_secsize);
	memset(&scfg, 0, sizeof(scfg));
	scfg.rb = rb;
	scfg.unit = unit;
	scfg.name = o.export;
	scfg.description = desc;
	scfg.read_only = o.read_only;
	scfg.max_connections = (unsigned)o.max_conn;
	scfg.shutdown_timeout_ms = (unsigned)(o.shutdown_s * 1000);
	if ((error = nbd_server_create(&scfg, &srv)) != 0) {
		cli_err("serve: %s", strerror(error));
		goto out;
	}
	if (o.socket != NULL &&
	    (error = nbd_server_listen_unix(srv, o.socket)) != 0) {
		cli_err("--socket: %s: %s", o.socket, strerror(error));
		goto out;
	}
	for (i = 0; i < o.nlisten; i++) {
		int p;

		error = nbd_server_listen_tcp(srv, o.listen[i], &p);
		if (error != 0) {
			cli_err("--listen: %s: %s", o.listen[i],
			    error == EINVAL ? "expected ADDR:PORT, e.g. "
			    "127.0.0.1:10809 or [::1]:0" : strerror(error));
			goto out;
		}
		if (i == 0)
			port = p;
	}
	if ((uri = make_uri(&o, port)) == NULL) {
		cli_err("serve: out of memory");
		goto out;
	}
	if (o.pidfile != NULL && (error = write_pidfile(o.pidfile)) != 0) {
		cli_err("--pidfile: %s: %s", o.pidfile, strerror(error));
		goto out;
	}
	pid_written = o.pidfile != NULL;
	if (o.run != NULL) {
		child = start_child(o.run, uri, o.socket,
		    o.nlisten > 0 ? port : -1, &oldmask);
		if (child == -1) {
			cli_err("--run: cannot start it: %s", strerror(errno));
			goto out;
		}
	}

	nbd_server_run(srv, sigfd);

	/* Why did it stop?  Drain the signalfd. */
	while ((n = read(sigfd, &si, sizeof(si))) == (ssize_t)sizeof(si)) {
		if (si.ssi_signo != SIGCHLD)
			got_signal = true;
	}
	rc = 0;
	if (child > 0) {
		if (got_signal)
			kill(child, SIGTERM);
		while (waitpid(child, &cst, 0) == -1 && errno == EINTR)
			;
		rc = child_status(cst);
	}
out:
	if (rb != NULL && o.stats != NULL) {
		if ((error = write_stats(o.stats, rb)) != 0) {
			cli_err("--stats: %s: %s", o.stats, strerror(error));
			if (rc == 0)
				rc = 1;
		}
	}
	/* Every connection is done: no firing is logged after this. */
	cli_fault_stop(&fo, rb);
	cli_fault_opts_free(&fo);
	/* Before the instance: the server unsubscribes from its events. */
	nbd_server_destroy(srv);
	if (rb != NULL && (error = rumpblk_destroy(rb)) != 0) {
		cli_err("%s: could not make written data durable: %s",
		    o.image, strerror(error));
		if (rc == 0)
			rc = 1;
	}
	if (lockfd != -1)
		close(lockfd);
	if (pid_written)
		unlink(o.pidfile);
	if (created && uri == NULL)
		unlink(o.image);	/* we made it and never served it */
	free(uri);
	if (sigfd != -1)
		close(sigfd);
	return rc;
}
