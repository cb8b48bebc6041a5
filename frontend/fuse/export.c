/*
 * The FUSE export's life: start (the session, the mount, the loop
 * thread), the instance's events, and stop.
 *
 * One thread of ours runs libfuse's multithreaded loop
 * (fuse_session_loop_mt), which starts the worker threads that serve
 * requests (ops.c) and then waits on a semaphore for them to end.  The
 * loop ends by itself when the connection does (an unmount: then the
 * export calls its gone hook, unless it is being stopped).  To stop it,
 * the export marks the session exited and interrupts that wait with
 * SIGUSR2 (libfuse's own signal handlers do the same with SIGINT); the
 * loop then cancels idle workers and joins busy ones once their request
 * is answered.  The kick is repeated until the loop says it is done, so
 * a signal that lands just before the wait begins is not lost.
 *
 * Reset: the export subscribes to the instance's events.  At
 * RUMPBLK_EVENT_RESET of its unit (a power cut, ctl reset) the
 * generation moves on, so every handle opened before fails from then on
 * with EIO (a file system still mounted on a loop device over the file
 * cannot write into the post-crash disk), and handles opened later see
 * the unit as it is after the reset.  As the NBD server does for its
 * connections, the callback returns only once no request of an old
 * handle can still reach the unit (fx_reset_fence).
 */
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "fuse-int.h"
#include "say.h"

#define FX_KICK_SIGNAL	SIGUSR2
#define FX_KICK_MS	20	/* between kicks while the loop stops */

void
fx_log(const struct fuse_export *fx, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	fe_vlog(fx->fx_cfg.log, fmt, ap);
	va_end(ap);
}

const char *
fuse_export_file(const struct fuse_export *fx)
{
	return fx->fx_file;
}

/* The instance's events (any thread, no library lock held). */
static void
fx_event(void *arg, int unit, int event)
{
	struct fuse_export *fx = arg;

	if (event != RUMPBLK_EVENT_RESET || unit != fx->fx_cfg.unit)
		return;
	atomic_fetch_add(&fx->fx_gen, 1);
	fx_reset_fence(fx);
	fx_log(fx, "unit %d was reset: FUSE handles opened before fail "
	    "with EIO; open %s again", unit, fx->fx_file);
}

/* The kick only interrupts a wait; it has nothing to do. */
static void
kick_handler(int sig)
{
	(void)sig;
}

static void *
loop_thread(void *arg)
{
	struct fuse_export *fx = arg;
	struct fuse_loop_config *lc;
	sigset_t set;

	sigemptyset(&set);
	sigaddset(&set, FX_KICK_SIGNAL);
	pthread_sigmask(SIG_UNBLOCK, &set, NULL);
	if ((lc = fuse_loop_cfg_create()) != NULL) {
		fuse_loop_cfg_set_max_threads(lc, fx->fx_cfg.max_threads != 0 ?
		    fx->fx_cfg.max_threads : 10);
		(void)fuse_session_loop_mt(fx->fx_se, lc);
		fuse_loop_cfg_destroy(lc);
	} else
		fx_log(fx, "--fuse: %s: out of memory", fx->fx_cfg.path);
	pthread_mutex_lock(&fx->fx_lock);
	fx->fx_loop_done = true;
	pthread_cond_broadcast(&fx->fx_cv);
	pthread_mutex_unlock(&fx->fx_lock);
	if (!atomic_load(&fx->fx_stopping)) {
		fx_log(fx, "--fuse: %s was unmounted by other hands; it is "
		    "not served any more", fx->fx_cfg.path);
		if (fx->fx_cfg.gone != NULL)
			fx->fx_cfg.gone(fx->fx_cfg.gone_arg);
	}
	return NULL;
}

/* Set up fx_mnt, fx_file and the file's attributes. */
static int
fill(struct fuse_export *fx, const struct fuse_export_config *cfg,
    char *msg, size_t len)
{
	struct rumpblk_unitinfo ui;
	struct stat st;
	int error;

	if ((error = rumpblk_unitinfo(cfg->rb, cfg->unit, &ui)) != 0) {
		snprintf(msg, len, "--fuse: unit %d: %s", cfg->unit,
		    strerror(error));
		return error;
	}
	if ((fx->fx_mnt = realpath(cfg->path, NULL)) == NULL ||
	    stat(fx->fx_mnt, &st) == -1) {
		error = errno;
		snprintf(msg, len, "--fuse: %s: %s", cfg->path,
		    strerror(error));
		return error;
	}
	fx->fx_dirmode = S_ISDIR(st.st_mode);
	if (fx->fx_dirmode) {
		if (asprintf(&fx->fx_file, "%s/%s", fx->fx_mnt,
		    FUSE_EXPORT_DIRFILE) == -1)
			fx->fx_file = NULL;
	} else
		fx->fx_file = strdup(fx->fx_mnt);
	if (fx->fx_file == NULL) {
		snprintf(msg, len, "--fuse: %s: out of memory", cfg->path);
		return ENOMEM;
	}
	fx->fx_size = ui.ui_size;
	fx->fx_secsize = ui.ui_secsize;
	fx->fx_ro = cfg->read_only || (ui.ui_mode & RUMPBLK_FWRITE) == 0;
	/* A TRIM punches a hole in a regular file (an overlay's delta
	 * too): it reads back as zeroes.  A device's or a remote's need
	 * not. */
	fx->fx_trim_zeroes = ui.ui_ftype == RUMPBLK_FT_REG;
	fx->fx_uid = geteuid();
	fx->fx_gid = getegid();
	clock_gettime(CLOCK_REALTIME, &fx->fx_time);
	return 0;
}

/* The last of an export: its locks and names (the loop, the session and
 * the key are gone). */
static void
free_export(struct fuse_export *fx)
{
	fe_rl_fini(&fx->fx_rl);
	pthread_cond_destroy(&fx->fx_cv);
	pthread_mutex_destroy(&fx->fx_lock);
	free(fx->fx_file);
	free(fx->fx_mnt);
	free(fx);
}

int
fuse_export_start(const struct fuse_export_config *cfg,
    struct fuse_export **fxp, char *msg, size_t len)
{
	char *argv[] = { "rumpblk", "-o", NULL, NULL };
	struct fuse_args args = FUSE_ARGS_INIT(2, argv);
	char opts[64];
	struct fuse_export *fx;
	struct sigaction sa;
	int error;

	if ((fx = calloc(1, sizeof(*fx))) == NULL) {
		snprintf(msg, len, "--fuse: %s: out of memory", cfg->path);
		return ENOMEM;
	}
	fx->fx_cfg = *cfg;
	atomic_init(&fx->fx_gen, 1);
	atomic_init(&fx->fx_submitting, 0);
	atomic_init(&fx->fx_stopping, false);
	pthread_mutex_init(&fx->fx_lock, NULL);
	pthread_cond_init(&fx->fx_cv, NULL);
	fe_rl_init(&fx->fx_rl);
	if ((error = pthread_key_create(&fx->fx_bufkey, fx_buf_free)) != 0) {
		snprintf(msg, len, "--fuse: %s: %s", cfg->path,
		    strerror(error));
		goto fini_locks;
	}
	if ((error = fill(fx, cfg, msg, len)) != 0)
		goto delete_key;

	/* Options for fusermount3, when it is the one that mounts. */
	snprintf(opts, sizeof(opts), "fsname=rumpblk,subtype=rumpblk,"
	    "default_permissions%s", fx->fx_ro ? ",ro" : "");
	argv[2] = opts;
	args.argc = 3;
	fx->fx_se = fuse_session_new(&args, &fx_ops, sizeof(fx_ops), fx);
	fuse_opt_free_args(&args);	/* the parse's copy of argv */
	if (fx->fx_se == NULL) {
		error = ENOMEM;
		snprintf(msg, len, "--fuse: %s: cannot set up a FUSE session",
		    cfg->path);
		goto delete_key;
	}
	if ((error = rumpblk_event_subscribe(cfg->rb, fx_event, fx,
	    &fx->fx_evid)) != 0) {
		snprintf(msg, len, "--fuse: %s: %s", cfg->path,
		    strerror(error));
		goto destroy_session;
	}
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = kick_handler;	/* no SA_RESTART: interrupt */
	sigemptyset(&sa.sa_mask);
	sigaction(FX_KICK_SIGNAL, &sa, NULL);
	if ((error = fx_mount(fx, msg, len)) != 0)
		goto unsubscribe;
	if ((error = pthread_create(&fx->fx_thread, NULL, loop_thread,
	    fx)) != 0) {
		snprintf(msg, len, "--fuse: %s: cannot start a thread: %s",
		    cfg->path, strerror(error));
		atomic_store(&fx->fx_stopping, true);
		fx_unmount(fx);
		fuse_session_unmount(fx->fx_se);
		goto unsubscribe;
	}
	*fxp = fx;
	return 0;
unsubscribe:
	(void)rumpblk_event_unsubscribe(cfg->rb, fx->fx_evid);
destroy_session:
	fuse_session_destroy(fx->fx_se);
delete_key:
	pthread_key_delete(fx->fx_bufkey);
fini_locks:
	free_export(fx);
	return error;
}

/* Interrupt the loop's wait until it has returned. */
static void
stop_loop(struct fuse_export *fx)
{
	struct timespec ts;

	fuse_session_exit(fx->fx_se);
	pthread_mutex_lock(&fx->fx_lock);
	while (!fx->fx_loop_done) {
		pthread_kill(fx->fx_thread, FX_KICK_SIGNAL);
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += FX_KICK_MS * 1000000L;
		if (ts.tv_nsec >= 1000000000L) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000L;
		}
		(void)pthread_cond_timedwait(&fx->fx_cv, &fx->fx_lock, &ts);
	}
	pthread_mutex_unlock(&fx->fx_lock);
	pthread_join(fx->fx_thread, NULL);
}

void
fuse_export_stop(struct fuse_export *fx)
{
	if (fx == NULL)
		return;
	atomic_store(&fx->fx_stopping, true);
	/* First the mount, while the workers still serve what it needs. */
	fx_unmount(fx);
	stop_loop(fx);
	/* A fusermount3 mount: fusermount3 -u -z (and the device closed);
	 * ours: nothing (libfuse never knew the path). */
	fuse_session_unmount(fx->fx_se);
	(void)rumpblk_event_unsubscribe(fx->fx_cfg.rb, fx->fx_evid);
	/* Closes the device: a mount detached while busy loses its
	 * connection now. */
	fuse_session_destroy(fx->fx_se);
	pthread_key_delete(fx->fx_bufkey);
	free_export(fx);
}
