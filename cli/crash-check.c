/*
 * rumpblk crash-check: run a checker on every crash state of a recorded
 * run (crash.h says what the states are; crash.c makes them).
 *
 * Each state is built on a view of the base that is never the base: a
 * unit "overlay:BASE" (its writes go to a private sparse delta), with
 * the durable prefix and the state's pieces written onto it, so that
 * building one costs what the log changed, not a copy of the image.  It
 * is served over NBD on a Unix socket ($uri) and, through nbdfuse, as a
 * file ($image); the checker runs as sh -c CMD with those in its
 * environment, and may write to either (its writes go to the delta and
 * vanish with the state).  --jobs N runs N states at a time, each in its
 * own slot (socket, FUSE directory); the states of one epoch are run
 * before the next epoch's are made (the prefix changes between them).
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <poll.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "crash.h"
#include "nbd.h"

extern char **environ;

#define OUTMAX	4096		/* of a failed checker's output, kept */

static volatile sig_atomic_t interrupted;	/* SIGINT, SIGTERM */

struct cc_opts {
	const char	*o_log;
	const char	*o_base;
	const char	*o_check;
	enum cc_model	o_model;
	uint64_t	o_max;
	uint64_t	o_seed;
	uint64_t	o_jobs;
	bool		o_json;
	bool		o_noverify;
	const char	*o_state;	/* --state E.K */
	const char	*o_out;
	const char	*o_workdir;
};

struct failure {
	struct failure	*f_next;
	unsigned	f_epoch;
	uint64_t	f_id;
	int		f_status;	/* wait status */
	char		*f_out;		/* the checker's output, cut short */
	uint64_t	*f_kept, *f_dropped;	/* log entries */
	uint32_t	f_nkept, f_ndropped;
};

struct slot {
	struct checker	*s_ck;
	unsigned	s_no;
	char		s_dir[320];
	FILE		*s_log;		/* its NBD server's messages */
	pthread_t	s_thread;
};

struct checker {
	struct cc_opts	*k_o;
	struct cc_run	*k_run;
	struct rumpblk	*k_rb;
	char		k_work[300];	/* our directory */
	pthread_mutex_t	k_lock;
	pthread_cond_t	k_cv;
	struct cc_state	*k_queue;	/* k_lock: states to run */
	uint32_t	k_qn, k_qcap;
	uint32_t	k_busy;		/* k_lock: states being run */
	bool		k_stop;		/* k_lock */
	struct failure	*k_fail, **k_failtail;	/* k_lock */
	uint64_t	k_explored, k_failed;	/* k_lock */
	int		k_error;	/* k_lock: a slot could not run */
	bool		k_tty;
	struct timespec	k_t0, k_tprog;
};

static void
usage(FILE *f)
{
	fprintf(f,
"usage: rumpblk crash-check --log FILE --base IMAGE --check CMD\n"
"                           [--model M] [--max-states N] [--seed S]\n"
"                           [--jobs N] [--json] [--no-verify-base]\n"
"                           [--workdir DIR]\n"
"       rumpblk crash-check --log FILE --base IMAGE [--model M]\n"
"                           [--max-states N] [--seed S] --state E.K\n"
"                           --out IMAGE\n\n"
"Explore the crash states of a run recorded with 'rumpblk serve\n"
"--write-log FILE': for each epoch (the writes between two FLUSH\n"
"entries), the durable prefix plus a choice of the epoch's writes, by\n"
"the model M:\n"
"  prefix    every prefix, in the order of acknowledgement\n"
"  subset    every subset (the default)\n"
"  reorder   every subset, in every order of writes that overlap\n"
"  sectors   every sector of every write on its own\n"
"A FUA write is durable once acknowledged: a state with a later write\n"
"has it.  Exhaustive while an epoch's states are at most N (default\n"
"1000), else N drawn with seed S (default 0); identical states run\n"
"once.  Each state runs 'sh -c CMD' with $image (a file holding the\n"
"state, copy-on-write over IMAGE), $uri (an NBD URI of it), $state (its\n"
"id, E.K), $epoch, $epoch_start and $epoch_end (the log entries that\n"
"begin it and its FLUSH) in the environment; exit 0 means consistent.\n"
"IMAGE is never written.  Exit status 1 if any state failed.\n\n"
"  --log FILE          the write log\n"
"  --base IMAGE        the image the run started from\n"
"  --check CMD         the checker, run with sh -c\n"
"  --model M           prefix, subset, reorder or sectors\n"
"  --max-states N      states per epoch at most (default 1000)\n"
"  --seed S            the sample's seed (default 0)\n"
"  --jobs N            run N states at a time (default 1)\n"
"  --json              the report as one JSON object\n"
"  --no-verify-base    do not check IMAGE against the log's base hash\n"
"  --workdir DIR       where the views live (default $TMPDIR or\n"
"                      /var/tmp)\n"
"  --state E.K         build state K of epoch E (as the report names\n"
"  --out IMAGE         it) into the new file IMAGE, and stop\n");
}

enum {
	O_LOG = 0x100, O_BASE, O_CHECK, O_MODEL, O_MAX, O_SEED, O_JOBS,
	O_JSON, O_NOVERIFY, O_STATE, O_OUT, O_WORKDIR,
};

static int
option(void *ctx, int c, const char *arg)
{
	struct cc_opts *o = ctx;

	switch (c) {
	case O_LOG:		o->o_log = arg; return 0;
	case O_BASE:		o->o_base = arg; return 0;
	case O_CHECK:		o->o_check = arg; return 0;
	case O_JSON:		o->o_json = true; return 0;
	case O_NOVERIFY:	o->o_noverify = true; return 0;
	case O_STATE:		o->o_state = arg; return 0;
	case O_OUT:		o->o_out = arg; return 0;
	case O_WORKDIR:		o->o_workdir = arg; return 0;
	case O_MODEL:
		if (cc_model_parse(arg, &o->o_model) != 0) {
			cli_err("--model: unknown model '%s' (prefix, subset, "
			    "reorder or sectors)", arg);
			return 2;
		}
		return 0;
	case O_MAX:
		return cli_opt_uint("--max-states", arg, 1, 100000000,
		    &o->o_max) ? 0 : 2;
	case O_SEED:
		return cli_opt_uint("--seed", arg, 0, UINT64_MAX,
		    &o->o_seed) ? 0 : 2;
	case O_JOBS:
		return cli_opt_uint("--jobs", arg, 1, 64, &o->o_jobs) ? 0 : 2;
	}
	return -1;
}

/* 1. Running one state. */

static double
since(const struct timespec *t0)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)(t.tv_sec - t0->tv_sec) +
	    (double)(t.tv_nsec - t0->tv_nsec) / 1e9;
}

/* Run argv, wait; the wait status, or -1 (errno set). */
static int
run_wait(char *const argv[], const char *out)
{
	posix_spawn_file_actions_t fa;
	pid_t pid;
	int st, error;

	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 1, out != NULL ? out :
	    "/dev/null", O_WRONLY | O_CREAT | O_TRUNC, 0600);
	posix_spawn_file_actions_adddup2(&fa, 1, 2);
	error = posix_spawnp(&pid, argv[0], &fa, NULL, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	if (error != 0) {
		errno = error;
		return -1;
	}
	while (waitpid(pid, &st, 0) < 0)
		if (errno != EINTR)
			return -1;
	return st;
}

struct served {
	struct nbd_server *sv_srv;
	pthread_t	sv_thread;
	pid_t		sv_fuse;
};

static void *
serve_main(void *arg)
{
	(void)nbd_server_run(arg, -1);
	return NULL;
}

/* Serve unit u on dir/nbd.sock and, through nbdfuse, as dir/fuse/image. */
static int
serve_state(struct slot *sl, int u, struct served *sv)
{
	struct nbd_server_config cfg;
	char sock[PATH_MAX + 16], fuse[PATH_MAX + 16], file[PATH_MAX + 32];
	char pidf[PATH_MAX + 16], log[PATH_MAX + 16];
	char *argv[] = { "nbdfuse", "-P", pidf, file, "--unix", sock, NULL };
	posix_spawn_file_actions_t fa;
	struct stat sb;
	int error, i;

	memset(sv, 0, sizeof(*sv));
	sv->sv_fuse = -1;
	snprintf(sock, sizeof(sock), "%s/nbd.sock", sl->s_dir);
	snprintf(fuse, sizeof(fuse), "%s/fuse", sl->s_dir);
	snprintf(file, sizeof(file), "%s/fuse/image", sl->s_dir);
	snprintf(pidf, sizeof(pidf), "%s/fuse.pid", sl->s_dir);
	snprintf(log, sizeof(log), "%s/nbdfuse.log", sl->s_dir);
	memset(&cfg, 0, sizeof(cfg));
	cfg.rb = sl->s_ck->k_rb;
	cfg.unit = u;
	cfg.name = "";
	cfg.log = sl->s_log;
	cfg.byte_granular = true;
	unlink(sock);
	unlink(pidf);
	if ((error = nbd_server_create(&cfg, &sv->sv_srv)) != 0 ||
	    (error = nbd_server_listen_unix(sv->sv_srv, sock)) != 0 ||
	    (error = pthread_create(&sv->sv_thread, NULL, serve_main,
	    sv->sv_srv)) != 0) {
		cli_err("crash-check: serving a state on %s: %s", sock,
		    strerror(error));
		if (sv->sv_srv != NULL)
			nbd_server_destroy(sv->sv_srv);
		sv->sv_srv = NULL;
		return error;
	}
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 1, log, O_WRONLY | O_CREAT |
	    O_TRUNC, 0600);
	posix_spawn_file_actions_adddup2(&fa, 1, 2);
	error = posix_spawnp(&sv->sv_fuse, "nbdfuse", &fa, NULL, argv,
	    environ);
	posix_spawn_file_actions_destroy(&fa);
	if (error != 0) {
		sv->sv_fuse = -1;
		cli_err("crash-check: nbdfuse: %s (it is in libnbd-bin)",
		    strerror(error));
		return error;
	}
	/*
	 * Ready when it has written its pid file: at most 30 s, looked at
	 * every millisecond (a state's whole cost is tens of them).
	 */
	for (i = 0; i < 30000; i++) {
		if (stat(pidf, &sb) == 0 && sb.st_size > 0)
			return 0;
		if (waitpid(sv->sv_fuse, NULL, WNOHANG) == sv->sv_fuse) {
			sv->sv_fuse = -1;
			cli_err("crash-check: nbdfuse exited at start (see "
			    "%s)", log);
			return EIO;
		}
		usleep(1000);
	}
	cli_err("crash-check: nbdfuse not ready within 30 s (see %s)", log);
	return ETIMEDOUT;
}

/* Unmount (lazily if it is busy), end nbdfuse and the server. */
static void
unserve_state(struct slot *sl, struct served *sv)
{
	char fuse[PATH_MAX + 16];
	char *um[] = { "fusermount3", "-u", fuse, NULL };
	char *uz[] = { "fusermount3", "-uz", fuse, NULL };
	int st, i, pfd;

	snprintf(fuse, sizeof(fuse), "%s/fuse", sl->s_dir);
	if (sv->sv_fuse > 0) {
		st = run_wait(um, NULL);
		if (st != 0)
			(void)run_wait(uz, NULL);
		/* nbdfuse exits once unmounted: wait for it on a pidfd,
		 * 30 s at most (no polling). */
		i = 0;
		if ((pfd = (int)syscall(SYS_pidfd_open, sv->sv_fuse, 0)) >= 0) {
			struct pollfd p = { .fd = pfd, .events = POLLIN };

			if (poll(&p, 1, 30000) == 0)
				i = 3000;
			close(pfd);
		}
		for (; i < 3000; i++) {
			if (waitpid(sv->sv_fuse, &st, WNOHANG) == sv->sv_fuse)
				break;
			usleep(10000);
		}
		if (i == 3000) {	/* ours: ended, by its pid */
			cli_err("crash-check: nbdfuse %d still running 30 s "
			    "after unmounting: ended", (int)sv->sv_fuse);
			kill(sv->sv_fuse, SIGKILL);
			waitpid(sv->sv_fuse, &st, 0);
		}
		sv->sv_fuse = -1;
	}
	if (sv->sv_srv != NULL) {
		nbd_server_stop(sv->sv_srv);
		pthread_join(sv->sv_thread, NULL);
		nbd_server_destroy(sv->sv_srv);
		sv->sv_srv = NULL;
	}
}

/* The checker's output file, cut to OUTMAX bytes, as a string. */
static char *
slurp(const char *path)
{
	char *buf;
	ssize_t n;
	int fd;

	if ((buf = calloc(1, OUTMAX + 1)) == NULL)
		return NULL;
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) >= 0) {
		n = read(fd, buf, OUTMAX);
		buf[n > 0 ? n : 0] = '\0';
		close(fd);
	}
	return buf;
}

static void
record_failure(struct checker *k, const struct cc_state *st, int status,
    const char *outpath)
{
	struct cc_epoch *e = cc_epoch(k->k_run, st->st_epoch - 1);
	struct failure *f;
	bool *kept;

	if ((f = calloc(1, sizeof(*f))) == NULL ||
	    (kept = calloc(e->e_n + 1, sizeof(*kept))) == NULL ||
	    (f->f_kept = calloc(e->e_n + 1, sizeof(uint64_t))) == NULL ||
	    (f->f_dropped = calloc(e->e_n + 1, sizeof(uint64_t))) == NULL) {
		if (f != NULL) {
			free(f->f_kept);
			free(f);
		}
		return;		/* counted, not described */
	}
	cc_kept(k->k_run, st, kept);
	for (uint32_t i = 0; i < e->e_n; i++) {
		if (kept[i])
			f->f_kept[f->f_nkept++] = e->e_w[i].w_entry;
		else
			f->f_dropped[f->f_ndropped++] = e->e_w[i].w_entry;
	}
	free(kept);
	f->f_epoch = st->st_epoch;
	f->f_id = st->st_id;
	f->f_status = status;
	f->f_out = slurp(outpath);
	*k->k_failtail = f;
	k->k_failtail = &f->f_next;
}

/*
 * The environment of a checker: the caller's, without its own image,
 * uri, state and epoch, and ours (NAME=VALUE strings).  Each slot makes
 * its own: setenv would be shared by every slot's thread.
 */
static char **
child_env(char *const ours[])
{
	size_t n = 0, m = 0, i, j;
	char **env;

	while (environ[n] != NULL)
		n++;
	while (ours[m] != NULL)
		m++;
	if ((env = calloc(n + m + 1, sizeof(*env))) == NULL)
		return NULL;
	for (j = 0; j < m; j++)
		env[j] = ours[j];
	for (i = 0; i < n; i++) {
		size_t k;

		for (k = 0; k < m; k++)
			if (strncmp(environ[i], ours[k], strcspn(ours[k],
			    "=") + 1) == 0)
				break;
		if (k == m)
			env[j++] = environ[i];
	}
	env[j] = NULL;
	return env;
}

/* Build, serve, check, tear down one state.  0, or errno (no verdict). */
static int
run_state(struct slot *sl, const struct cc_state *st, bool *failed)
{
	struct checker *k = sl->s_ck;
	struct rumpblk_unit_opts uo;
	struct served sv;
	char spec[PATH_MAX + 16], out[PATH_MAX + 16], id[48];
	char uri[PATH_MAX + 48], image[PATH_MAX + 32], ep[16];
	char start[48], end[48];
	char *argv[] = { "sh", "-c", (char *)k->k_o->o_check, NULL };
	char *ours[] = { image, uri, id, ep, start, end, NULL }, **env = NULL;
	struct cc_epoch *e = cc_epoch(k->k_run, st->st_epoch - 1);
	posix_spawn_file_actions_t fa;
	pid_t pid;
	int u, error, status;

	memset(&sv, 0, sizeof(sv));
	sv.sv_fuse = -1;

	snprintf(spec, sizeof(spec), "overlay:%s", k->k_o->o_base);
	rumpblk_unit_opts_init(&uo);
	if ((error = rumpblk_register_spec(k->k_rb, spec, &uo, &u)) != 0) {
		cli_err("crash-check: %s: %s", spec, strerror(error));
		return error;
	}
	if ((error = cc_build(k->k_run, st, k->k_rb, u)) != 0 ||
	    (error = serve_state(sl, u, &sv)) != 0)
		goto out;
	snprintf(out, sizeof(out), "%s/check.out", sl->s_dir);
	snprintf(id, sizeof(id), "state=%u.%" PRIu64, st->st_epoch, st->st_id);
	snprintf(ep, sizeof(ep), "epoch=%u", st->st_epoch);
	snprintf(start, sizeof(start), "epoch_start=%" PRIu64, e->e_start);
	snprintf(end, sizeof(end), "epoch_end=%" PRIu64, e->e_end);
	snprintf(uri, sizeof(uri), "uri=nbd+unix:///?socket=%s/nbd.sock",
	    sl->s_dir);
	snprintf(image, sizeof(image), "image=%s/fuse/image", sl->s_dir);
	if ((env = child_env(ours)) == NULL) {
		error = ENOMEM;
		goto out;
	}
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 1, out, O_WRONLY | O_CREAT |
	    O_TRUNC, 0600);
	posix_spawn_file_actions_adddup2(&fa, 1, 2);
	posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	error = posix_spawn(&pid, "/bin/sh", &fa, NULL, argv, env);
	posix_spawn_file_actions_destroy(&fa);
	if (error != 0) {
		cli_err("crash-check: /bin/sh: %s", strerror(error));
		goto out;
	}
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR) {
			error = errno;
			goto out;
		}
	*failed = status != 0;
	if (*failed) {
		pthread_mutex_lock(&k->k_lock);
		record_failure(k, st, status, out);
		pthread_mutex_unlock(&k->k_lock);
	}
out:
	free(env);
	unserve_state(sl, &sv);
	(void)rumpblk_deregister_unit(k->k_rb, u);
	return error;
}

/* 2. Slots and the queue. */

static void *
slot_main(void *arg)
{
	struct slot *sl = arg;
	struct checker *k = sl->s_ck;
	struct cc_state st;
	bool failed;
	int error;

	pthread_mutex_lock(&k->k_lock);
	for (;;) {
		while (k->k_qn == 0 && !k->k_stop)
			pthread_cond_wait(&k->k_cv, &k->k_lock);
		if (k->k_qn == 0)
			break;
		st = k->k_queue[--k->k_qn];
		k->k_busy++;
		pthread_mutex_unlock(&k->k_lock);
		failed = false;
		error = run_state(sl, &st, &failed);
		pthread_mutex_lock(&k->k_lock);
		if (error != 0 && k->k_error == 0)
			k->k_error = error;
		if (error == 0) {
			struct cc_epoch *e = cc_epoch(k->k_run,
			    st.st_epoch - 1);

			e->e_explored++;
			k->k_explored++;
			if (failed) {
				e->e_failed++;
				k->k_failed++;
			}
		}
		k->k_busy--;
		cc_state_free(&st);
		pthread_cond_broadcast(&k->k_cv);
	}
	pthread_mutex_unlock(&k->k_lock);
	return NULL;
}

/* Hand a state to the slots (its pieces too): waits while they are full. */
static int
enqueue(struct checker *k, struct cc_state *st)
{
	struct cc_state *nq;

	pthread_mutex_lock(&k->k_lock);
	while (k->k_qn >= 2 * k->k_o->o_jobs && k->k_error == 0)
		pthread_cond_wait(&k->k_cv, &k->k_lock);
	if (k->k_error != 0) {
		pthread_mutex_unlock(&k->k_lock);
		return k->k_error;
	}
	if (k->k_qn == k->k_qcap) {
		uint32_t cap = k->k_qcap == 0 ? 16 : k->k_qcap * 2;

		if ((nq = realloc(k->k_queue, cap * sizeof(*nq))) == NULL) {
			pthread_mutex_unlock(&k->k_lock);
			return ENOMEM;
		}
		k->k_queue = nq;
		k->k_qcap = cap;
	}
	/* The queue is a stack; the order of runs does not matter. */
	k->k_queue[k->k_qn++] = *st;
	memset(st, 0, sizeof(*st));
	pthread_cond_signal(&k->k_cv);
	pthread_mutex_unlock(&k->k_lock);
	return 0;
}

/* Wait until every state handed over has been run. */
static int
drain(struct checker *k)
{
	int error;

	pthread_mutex_lock(&k->k_lock);
	while ((k->k_qn > 0 || k->k_busy > 0) && k->k_error == 0)
		pthread_cond_wait(&k->k_cv, &k->k_lock);
	while (k->k_busy > 0)
		pthread_cond_wait(&k->k_cv, &k->k_lock);
	error = k->k_error;
	pthread_mutex_unlock(&k->k_lock);
	return error;
}

static void
progress(struct checker *k, uint32_t ep, bool last)
{
	uint64_t ex, fa;

	if (!k->k_tty || (!last && since(&k->k_tprog) < 0.2))
		return;
	clock_gettime(CLOCK_MONOTONIC, &k->k_tprog);
	pthread_mutex_lock(&k->k_lock);
	ex = k->k_explored;
	fa = k->k_failed;
	pthread_mutex_unlock(&k->k_lock);
	fprintf(stderr, "\r%s: epoch %u/%u, %" PRIu64 " states explored, %"
	    PRIu64 " failed, %.0f s%s", progname, ep, cc_nepochs(k->k_run),
	    ex, fa, since(&k->k_t0), last ? "\n" : "");
}

/* Every epoch's states, in order; 0 or the error that stopped it. */
static int
explore(struct checker *k)
{
	struct cc_gen *g;
	struct cc_state st;
	int error = 0;

	memset(&st, 0, sizeof(st));
	for (uint32_t i = 0; i < cc_nepochs(k->k_run) && error == 0; i++) {
		struct cc_epoch *e = cc_epoch(k->k_run, i);

		if (e->e_n == 0)
			continue;	/* its one state is the last one's */
		if ((error = cc_gen_start(k->k_run, i, k->k_o->o_model,
		    k->k_o->o_max, k->k_o->o_seed, &g)) != 0)
			break;
		while (error == 0 && cc_gen_next(g, &st)) {
			if (interrupted) {
				error = EINTR;
				break;
			}
			e->e_generated++;
			if (cc_seen(k->k_run, &st.st_hash)) {
				e->e_dups++;
				continue;
			}
			error = enqueue(k, &st);
			progress(k, e->e_no, false);
		}
		cc_gen_end(g);
		if (error == 0)
			error = drain(k);
	}
	cc_state_free(&st);
	progress(k, cc_nepochs(k->k_run), true);
	return error;
}

/* 3. The report. */

static void
rebuild_cmd(FILE *f, const struct cc_opts *o, const struct failure *x)
{
	fprintf(f, "rumpblk crash-check --log '%s' --base '%s' --model %s "
	    "--max-states %" PRIu64 " --seed %" PRIu64 " --state %u.%" PRIu64
	    " --out STATE.img", o->o_log, o->o_base, cc_model_name(o->o_model),
	    o->o_max, o->o_seed, x->f_epoch, x->f_id);
}

static void
list_json(FILE *f, const uint64_t *v, uint32_t n)
{
	fputc('[', f);
	for (uint32_t i = 0; i < n; i++)
		fprintf(f, "%s%" PRIu64, i > 0 ? "," : "", v[i]);
	fputc(']', f);
}

static int
cmp_failure(const void *a, const void *b)
{
	const struct failure *x = *(struct failure *const *)a;
	const struct failure *y = *(struct failure *const *)b;

	if (x->f_epoch != y->f_epoch)
		return x->f_epoch < y->f_epoch ? -1 : 1;
	return x->f_id < y->f_id ? -1 : x->f_id > y->f_id;
}

/* The failures in the order of their ids (slots finish in any order). */
static void
sort_failures(struct checker *k)
{
	struct failure **v, *x;
	size_t n = 0, i;

	for (x = k->k_fail; x != NULL; x = x->f_next)
		n++;
	if (n < 2 || (v = malloc(n * sizeof(*v))) == NULL)
		return;
	for (i = 0, x = k->k_fail; x != NULL; x = x->f_next)
		v[i++] = x;
	qsort(v, n, sizeof(*v), cmp_failure);
	for (i = 0; i + 1 < n; i++)
		v[i]->f_next = v[i + 1];
	v[n - 1]->f_next = NULL;
	k->k_fail = v[0];
	free(v);
}

static void
report_json(struct checker *k, double secs)
{
	const struct cc_opts *o = k->k_o;
	char *cmd;
	size_t len;
	FILE *m;
	bool first = true;

	printf("{\"log\":");
	cli_json_string(stdout, o->o_log);
	printf(",\"base\":");
	cli_json_string(stdout, o->o_base);
	printf(",\"model\":\"%s\",\"max_states\":%" PRIu64 ",\"seed\":%"
	    PRIu64 ",\"jobs\":%" PRIu64 ",\"epochs\":[", cc_model_name(
	    o->o_model), o->o_max, o->o_seed, o->o_jobs);
	for (uint32_t i = 0; i < cc_nepochs(k->k_run); i++) {
		struct cc_epoch *e = cc_epoch(k->k_run, i);

		if (e->e_n == 0)
			continue;
		printf("%s{\"epoch\":%u,\"writes\":%u,\"first_entry\":%" PRIu64
		    ",\"flush_entry\":", first ? "" : ",", e->e_no, e->e_n,
		    e->e_w[0].w_entry);
		if (e->e_flush == UINT64_MAX)
			printf("null");
		else
			printf("%" PRIu64, e->e_flush);
		printf(",\"possible\":");
		if (e->e_possible == UINT64_MAX)
			printf("null");
		else
			printf("%" PRIu64, e->e_possible);
		printf(",\"sampled\":%s,\"generated\":%" PRIu64 ",\"explored\":%"
		    PRIu64 ",\"duplicates\":%" PRIu64 ",\"failed\":%" PRIu64
		    "}", e->e_sampled ? "true" : "false", e->e_generated,
		    e->e_explored, e->e_dups, e->e_failed);
		first = false;
	}
	printf("],\"explored\":%" PRIu64 ",\"failed\":%" PRIu64 ",\"seconds\":"
	    "%.3f,\"failures\":[", k->k_explored, k->k_failed, secs);
	for (struct failure *x = k->k_fail; x != NULL; x = x->f_next) {
		printf("%s{\"state\":\"%u.%" PRIu64 "\",\"epoch\":%u,\"kept\":",
		    x == k->k_fail ? "" : ",", x->f_epoch, x->f_id, x->f_epoch);
		list_json(stdout, x->f_kept, x->f_nkept);
		printf(",\"dropped\":");
		list_json(stdout, x->f_dropped, x->f_ndropped);
		if (WIFEXITED(x->f_status))
			printf(",\"exit\":%d", WEXITSTATUS(x->f_status));
		else
			printf(",\"signal\":%d", WTERMSIG(x->f_status));
		printf(",\"output\":");
		cli_json_string(stdout, x->f_out != NULL ? x->f_out : "");
		printf(",\"rebuild\":");
		cmd = NULL;
		if ((m = open_memstream(&cmd, &len)) != NULL) {
			rebuild_cmd(m, o, x);
			fclose(m);
		}
		cli_json_string(stdout, cmd != NULL ? cmd : "");
		free(cmd);
		printf("}");
	}
	printf("]}\n");
}

static void
report_text(struct checker *k, double secs)
{
	const struct cc_opts *o = k->k_o;

	printf("crash-check: %s over %s, model %s, at most %" PRIu64
	    " states per epoch, seed %" PRIu64 ", %" PRIu64 " job(s)\n",
	    o->o_log, o->o_base, cc_model_name(o->o_model), o->o_max,
	    o->o_seed, o->o_jobs);
	printf("%6s %8s %12s %10s %9s %11s %7s\n", "epoch", "writes",
	    "possible", "generated", "explored", "duplicates", "failed");
	for (uint32_t i = 0; i < cc_nepochs(k->k_run); i++) {
		struct cc_epoch *e = cc_epoch(k->k_run, i);
		char pos[32];

		if (e->e_n == 0)
			continue;
		if (e->e_possible == UINT64_MAX)
			snprintf(pos, sizeof(pos), "huge");
		else
			snprintf(pos, sizeof(pos), "%" PRIu64, e->e_possible);
		printf("%6u %8u %12s%s %10" PRIu64 " %9" PRIu64 " %11" PRIu64
		    " %7" PRIu64 "\n", e->e_no, e->e_n, pos,
		    e->e_sampled ? "*" : " ", e->e_generated, e->e_explored,
		    e->e_dups, e->e_failed);
	}
	for (uint32_t i = 0; i < cc_nepochs(k->k_run); i++)
		if (cc_epoch(k->k_run, i)->e_n > 0 &&
		    cc_epoch(k->k_run, i)->e_sampled) {
			printf("(* sampled: more states than --max-states)\n");
			break;
		}
	printf("%" PRIu64 " state(s) explored in %.1f s (%.1f/s), %" PRIu64
	    " failed\n", k->k_explored, secs, secs > 0 ?
	    (double)k->k_explored / secs : 0.0, k->k_failed);
	for (struct failure *x = k->k_fail; x != NULL; x = x->f_next) {
		printf("\nFAILED state %u.%" PRIu64 " (epoch %u): kept entries",
		    x->f_epoch, x->f_id, x->f_epoch);
		for (uint32_t i = 0; i < x->f_nkept; i++)
			printf(" %" PRIu64, x->f_kept[i]);
		printf("%s; dropped", x->f_nkept == 0 ? " none" : "");
		for (uint32_t i = 0; i < x->f_ndropped; i++)
			printf(" %" PRIu64, x->f_dropped[i]);
		printf("%s\n", x->f_ndropped == 0 ? " none" : "");
		if (WIFEXITED(x->f_status))
			printf("  exit status %d", WEXITSTATUS(x->f_status));
		else
			printf("  killed by signal %d", WTERMSIG(x->f_status));
		printf("; output:\n");
		for (char *p = x->f_out, *nl; p != NULL && *p != '\0';
		    p = nl) {
			if ((nl = strchr(p, '\n')) != NULL)
				*nl++ = '\0';
			printf("    %s\n", p);
		}
		printf("  rebuild: ");
		rebuild_cmd(stdout, o, x);
		printf("\n");
	}
}

/* 4. --state E.K --out IMAGE. */

static int
ioctl_ficlone(int fd, int src)
{
	return ioctl(fd, FICLONE, src);
}

/* A new file out holding the base: a reflink if the file system can. */
static int
copy_base(const char *base, const char *out)
{
	struct stat sb;
	off_t off = 0, data, hole;
	ssize_t n;
	int in, fd, error = 0;

	if ((in = open(base, O_RDONLY | O_CLOEXEC)) < 0 ||
	    fstat(in, &sb) != 0) {
		error = errno;
		cli_err("crash-check: %s: %s", base, strerror(error));
		if (in >= 0)
			close(in);
		return error;
	}
	if ((fd = open(out, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC,
	    0644)) < 0) {
		error = errno;
		cli_err("crash-check: --out %s: %s", out, error == EEXIST ?
		    "exists (nothing is written over)" : strerror(error));
		close(in);
		return error;
	}
	if (ioctl_ficlone(fd, in) != 0) {
		if (ftruncate(fd, sb.st_size) != 0)
			error = errno;
		/* A sparse copy: only the data the base has. */
		while (error == 0 && off < sb.st_size &&
		    (data = lseek(in, off, SEEK_DATA)) >= 0) {
			if ((hole = lseek(in, data, SEEK_HOLE)) < 0) {
				error = errno;
				break;
			}
			off = data;
			while (off < hole && error == 0) {
				loff_t a = off, b = off;

				n = copy_file_range(in, &a, fd, &b,
				    (size_t)(hole - off), 0);
				if (n <= 0)
					error = n == 0 ? EIO : errno;
				else
					off += n;
			}
		}
	}
	if (error == 0 && fsync(fd) != 0)
		error = errno;
	close(in);
	if (close(fd) != 0 && error == 0)
		error = errno;
	if (error != 0) {
		cli_err("crash-check: --out %s: %s", out, strerror(error));
		unlink(out);
	}
	return error;
}

static int
rebuild(struct cc_opts *o, struct cc_run *run)
{
	struct rumpblk_config cfg;
	struct rumpblk *rb = NULL;
	struct cc_gen *g = NULL;
	struct cc_state st;
	unsigned ep;
	uint64_t id;
	char *end;
	int u, error;
	bool found = false;

	memset(&st, 0, sizeof(st));
	ep = (unsigned)strtoul(o->o_state, &end, 10);
	if (*end != '.' || ep == 0 || ep > cc_nepochs(run) ||
	    (id = strtoull(end + 1, &end, 10), *end != '\0')) {
		cli_err("crash-check: --state %s: no such state (E.K, as the "
		    "report names it; the log has %u epoch(s))", o->o_state,
		    cc_nepochs(run));
		return 2;
	}
	if ((error = cc_gen_start(run, ep - 1, o->o_model, o->o_max,
	    o->o_seed, &g)) != 0)
		return 1;
	while (cc_gen_next(g, &st))
		if (st.st_id == id) {
			found = true;
			break;
		}
	if (!found) {
		cli_err("crash-check: --state %s: epoch %u has %" PRIu64
		    " state(s) with --model %s --max-states %" PRIu64
		    " --seed %" PRIu64, o->o_state, ep, cc_gen_count(g), cc_model_name(
		    o->o_model), o->o_max, o->o_seed);
		error = 1;
		goto out;
	}
	if ((error = copy_base(o->o_base, o->o_out)) != 0) {
		error = 1;
		goto out;
	}
	rumpblk_config_init(&cfg);
	cfg.backend = RUMPBLK_BACKEND_PIO;
	if ((error = rumpblk_create(&cfg, &rb)) != 0 ||
	    (error = rumpblk_register(rb, o->o_out, 0, RUMPBLK_SIZENOTSET,
	    &u)) != 0 || (error = cc_build(run, &st, rb, u)) != 0) {
		cli_err("crash-check: --out %s: %s", o->o_out,
		    strerror(error));
		unlink(o->o_out);
		error = 1;
		goto out;
	}
	error = rumpblk_destroy(rb);
	rb = NULL;
	if (error != 0) {
		cli_err("crash-check: --out %s: %s", o->o_out,
		    strerror(error));
		unlink(o->o_out);
		error = 1;
		goto out;
	}
	printf("state %s (epoch %u, %u piece(s)) written to %s\n",
	    o->o_state, ep, st.st_n, o->o_out);
out:
	if (rb != NULL)
		rumpblk_destroy(rb);
	cc_gen_end(g);
	cc_state_free(&st);
	return error;
}

/* 5. The command. */

static void
on_signal(int sig)
{
	(void)sig;
	interrupted = 1;
}

/* Remove the work directory (its slots: files and empty directories). */
static void
clean_work(struct checker *k, struct slot *sl, uint64_t n)
{
	static const char *files[] = { "nbd.sock", "fuse.pid", "nbdfuse.log",
	    "check.out", "nbd.log" };
	char p[PATH_MAX + 32];

	for (uint64_t i = 0; i < n; i++) {
		if (sl[i].s_log != NULL)
			fclose(sl[i].s_log);
		for (size_t j = 0; j < sizeof(files) / sizeof(files[0]); j++) {
			snprintf(p, sizeof(p), "%s/%s", sl[i].s_dir, files[j]);
			unlink(p);
		}
		snprintf(p, sizeof(p), "%s/fuse", sl[i].s_dir);
		rmdir(p);
		rmdir(sl[i].s_dir);
	}
	rmdir(k->k_work);
}

int
cmd_crash_check(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "help", no_argument, NULL, 'h' },
		{ "log", required_argument, NULL, O_LOG },
		{ "base", required_argument, NULL, O_BASE },
		{ "check", required_argument, NULL, O_CHECK },
		{ "model", required_argument, NULL, O_MODEL },
		{ "max-states", required_argument, NULL, O_MAX },
		{ "seed", required_argument, NULL, O_SEED },
		{ "jobs", required_argument, NULL, O_JOBS },
		{ "json", no_argument, NULL, O_JSON },
		{ "no-verify-base", no_argument, NULL, O_NOVERIFY },
		{ "state", required_argument, NULL, O_STATE },
		{ "out", required_argument, NULL, O_OUT },
		{ "workdir", required_argument, NULL, O_WORKDIR },
		{ NULL, 0, NULL, 0 },
	};
	struct cc_opts o = { .o_model = CC_SUBSET, .o_max = 1000,
	    .o_jobs = 1 };
	const struct cli_args ca = {
		.ca_name = "crash-check", .ca_opts = opts, .ca_usage = usage,
		.ca_option = option, .ca_ctx = &o, .ca_noperands = 0,
		.ca_operands = "no operand",
	};
	struct rumpblk_config cfg;
	struct checker k;
	struct slot *sl = NULL;
	struct sigaction sa;
	struct cc_run *run = NULL;
	char **operands;
	const char *tmp;
	uint64_t n = 0;
	int rc, error;

	if (!cli_parse_args(&ca, argc, argv, &operands, &rc))
		return rc;
	if (o.o_log == NULL || o.o_base == NULL) {
		cli_err("crash-check: --log FILE and --base IMAGE are needed "
		    "(try 'rumpblk crash-check --help')");
		return 2;
	}
	if ((o.o_state == NULL) != (o.o_out == NULL)) {
		cli_err("crash-check: --state E.K and --out IMAGE go together");
		return 2;
	}
	if (o.o_state == NULL && o.o_check == NULL) {
		cli_err("crash-check: --check CMD is needed (or --state E.K "
		    "--out IMAGE to build one state)");
		return 2;
	}
	if (o.o_out != NULL && access(o.o_out, F_OK) == 0) {
		cli_err("crash-check: --out %s: exists (nothing is written "
		    "over)", o.o_out);
		return 1;
	}
	if (cc_open(o.o_log, o.o_base, o.o_noverify, &run) != 0)
		return 1;
	if (o.o_state != NULL) {
		rc = rebuild(&o, run);
		cc_close(run);
		return rc;
	}
	memset(&k, 0, sizeof(k));
	k.k_o = &o;
	k.k_run = run;
	k.k_failtail = &k.k_fail;
	k.k_tty = isatty(2) && !o.o_json;
	pthread_mutex_init(&k.k_lock, NULL);
	pthread_cond_init(&k.k_cv, NULL);
	clock_gettime(CLOCK_MONOTONIC, &k.k_t0);
	rc = 1;
	if ((tmp = o.o_workdir) == NULL && (tmp = getenv("TMPDIR")) == NULL)
		tmp = "/var/tmp";
	if (strlen(tmp) > 256) {
		cli_err("crash-check: the work directory's path is longer "
		    "than 256 bytes: %s", tmp);
		goto out;
	}
	snprintf(k.k_work, sizeof(k.k_work), "%s/rumpblk-crash.XXXXXX", tmp);
	if (mkdtemp(k.k_work) == NULL) {
		cli_err("crash-check: a work directory in %s: %s", tmp,
		    strerror(errno));
		goto out;
	}
	rumpblk_config_init(&cfg);
	if ((error = rumpblk_create(&cfg, &k.k_rb)) != 0) {
		cli_err("crash-check: %s", strerror(error));
		goto out;
	}
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	if ((sl = calloc(o.o_jobs, sizeof(*sl))) == NULL)
		goto out;
	for (n = 0; n < o.o_jobs; n++) {
		sl[n].s_ck = &k;
		sl[n].s_no = (unsigned)n;
		snprintf(sl[n].s_dir, sizeof(sl[n].s_dir), "%s/%u", k.k_work,
		    (unsigned)n);
		char fuse[PATH_MAX + 8], log[PATH_MAX + 8];

		snprintf(fuse, sizeof(fuse), "%s/fuse", sl[n].s_dir);
		snprintf(log, sizeof(log), "%s/nbd.log", sl[n].s_dir);
		if (mkdir(sl[n].s_dir, 0700) != 0 || mkdir(fuse, 0700) != 0 ||
		    (sl[n].s_log = fopen(log, "w")) == NULL ||
		    pthread_create(&sl[n].s_thread, NULL, slot_main,
		    &sl[n]) != 0) {
			cli_err("crash-check: %s: %s", sl[n].s_dir,
			    strerror(errno));
			break;
		}
	}
	error = n == o.o_jobs ? explore(&k) : EIO;
	pthread_mutex_lock(&k.k_lock);
	k.k_stop = true;
	pthread_cond_broadcast(&k.k_cv);
	pthread_mutex_unlock(&k.k_lock);
	for (uint64_t i = 0; i < n; i++)
		pthread_join(sl[i].s_thread, NULL);
	sort_failures(&k);
	if (error == 0 || k.k_explored > 0) {
		if (o.o_json)
			report_json(&k, since(&k.k_t0));
		else
			report_text(&k, since(&k.k_t0));
	}
	if (interrupted)
		rc = 130;
	else if (error != 0)
		rc = 1;
	else
		rc = k.k_failed > 0 ? 1 : 0;
out:
	if (k.k_rb != NULL)
		rumpblk_destroy(k.k_rb);
	if (sl != NULL)		/* and a slot that failed half made */
		clean_work(&k, sl, n < o.o_jobs ? n + 1 : n);
	else
		rmdir(k.k_work);
	free(sl);
	while (k.k_fail != NULL) {
		struct failure *x = k.k_fail;

		k.k_fail = x->f_next;
		free(x->f_out);
		free(x->f_kept);
		free(x->f_dropped);
		free(x);
	}
	free(k.k_queue);
	cc_close(run);
	return rc;
}
