/*
 * The Ceph RBD backing: a unit whose data is an RBD image, reached with
 * librados and librbd.  The spec is rbd:POOL/IMAGE[@SNAP]; the client's
 * configuration file and id come from the unit options (uo_ceph_conf,
 * uo_ceph_id; --ceph-conf and --ceph-id), then CEPH_ARGS, as the rbd
 * tool takes them.  An image opened at a snapshot is read-only.  Every
 * layer of the stack sits above it as above a file.  It is not a cache
 * of its own: librbd's (rbd_cache, by default a write-around cache) is
 * what the configuration says, and FLUSH goes to it.  One default
 * differs from librbd's, where the configuration does not set it:
 * rbd_cache_writethrough_until_flush is false.  That guard is
 * for clients that never flush; here a write that must be durable is
 * followed by a FLUSH (below), and what is not is the client's to
 * flush, as on any disk with a volatile cache.  With it, every write
 * waited for the OSD until some client's first FLUSH (random 4 KiB
 * writes on one memstore OSD: 4157 -> 6461 IOPS).  What the cache is
 * shows in the describe line.
 *
 * Contents:
 *   1. opening: the cluster, the pool, the image; messages
 *   2. the completer, and a cluster that stops answering
 *   3. requests (the stage)
 *   4. the backing kind
 *
 * Requests go asynchronously with librbd's aio calls on one image
 * handle (librbd serialises nothing per handle that several would
 * avoid).  librbd runs completion callbacks on its own threads, one at a
 * time per image (its API strand); completing a request may submit
 * another (a layer above going on) or do a layer's work, and an aio
 * call may block on librados' in-flight throttle, which that strand
 * must not.  So a callback only records the result and queues the
 * request; a completer thread of the backing completes it.  A write
 * that must be durable at completion (FUA, or synchronous) is followed
 * by a FLUSH before it completes, the completer sending it: librbd has
 * no FUA, and its cache may hold the write.
 *
 * A cluster that stops answering: librados' timeouts are set (RD_TIMEOUT
 * seconds, unless the configuration sets them) so that a
 * connect, a monitor request and an OSD request end with ETIMEDOUT
 * rather than waiting forever.  A request that times out, or that
 * librados fails for the connection's sake, completes with EIO, and the
 * backing is then down (RUMPBLK_EVENT_REMOTE_DOWN, and the message of
 * rumpblk_backing_status): requests fail with EIO at once, but for one
 * every RD_PROBE_MS that goes to the cluster as a probe; the first that
 * succeeds brings the backing back up (RUMPBLK_EVENT_REMOTE_UP).  librados
 * reconnects to the monitor and OSDs on its own meanwhile.
 *
 * Block status (EXTENTS) is rbd_diff_iterate2 from the image's creation,
 * synchronous (on a worker for an asynchronous request): rare, and
 * librbd has no aio form.  It asks per object (whole_object 0, exact
 * extents), so a request covers at most RD_EXTENTS_OBJS objects and
 * reports that much; the caller asks again for the rest.
 *
 * Locks: rd_qlock guards the completer's queue (the status line has
 * rb_remote's own lock).  librbd locks its handle itself.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <rados/librados.h>
#include <rbd/librbd.h>

#include "remote.h"

#define RD_TIMEOUT	"10"		/* s: connect, mon and OSD requests */
#define RD_PROBE_MS	2000		/* while down: one request to try */
#define RD_EXTENTS_OBJS	256		/* objects one EXTENTS looks at */

/*
 * Locks: q = rd_qlock, a = atomic, ( = set at open,
 * then read-only.
 */
struct rbdbk {
	struct rb_remote rd_rm;		/* first: spec, unit, status line */
	rados_t		rd_cluster;	/* ( */
	rados_ioctx_t	rd_ioctx;	/* ( */
	rbd_image_t	rd_image;	/* ( */
	char		*rd_pool;	/* ( */
	char		*rd_name;	/* ( image */
	char		*rd_snap;	/* ( or NULL */
	char		rd_client[80];	/* ( "client.ID" */
	uint64_t	rd_objsize;	/* ( bytes */
	char		rd_features[160]; /* ( librbd's names */
	char		rd_cache[96];	/* ( librbd's cache, in words */
	_Atomic uint64_t rd_wdone;	/* a: writes, trims, zeroes done */
	_Atomic uint64_t rd_flushed;	/* a: rd_wdone a FLUSH covered */
	_Atomic bool	rd_down;	/* a: the cluster stopped answering */
	_Atomic uint64_t rd_probe_at;	/* a: ns, next probe while down */
	pthread_t	rd_thread;	/* the completer */
	bool		rd_started;	/* ( the completer runs */
	pthread_mutex_t	rd_qlock;
	pthread_cond_t	rd_qcv;
	struct rb_io	*rd_done;	/* q: to complete, newest first */
	bool		rd_idle;	/* q: the completer waits */
	bool		rd_stop;	/* q: the completer ends */
};

/* io_work of a request in this stage: what the completer does next. */
static void send_flush(struct rb_io *);

/* 1. Opening. */

/*
 * Split "rbd:POOL/IMAGE[@SNAP]" into its parts (allocated, *snapp NULL
 * without @SNAP).  EINVAL for anything else.
 */
static int
parse_spec(const char *spec, char **poolp, char **namep, char **snapp)
{
	const char *p = spec + 4, *slash, *at;

	if (strncmp(spec, "rbd:", 4) != 0 || (slash = strchr(p, '/')) == NULL ||
	    slash == p || slash[1] == '\0' || slash[1] == '@' ||
	    strchr(slash + 1, '/') != NULL)
		return EINVAL;
	at = strchr(slash + 1, '@');
	if (at != NULL && at[1] == '\0')
		return EINVAL;
	*poolp = strndup(p, (size_t)(slash - p));
	*namep = at != NULL ? strndup(slash + 1, (size_t)(at - slash - 1)) :
	    strdup(slash + 1);
	*snapp = at != NULL ? strdup(at + 1) : NULL;
	if (*poolp == NULL || *namep == NULL || (at != NULL && *snapp == NULL)) {
		free(*poolp);
		free(*namep);
		free(*snapp);
		return ENOMEM;
	}
	return 0;
}

/*
 * The client id: the option's, else CEPH_ARGS' --id/--user/--name (as
 * the rbd tool reads it: librados' rados_create does not), else
 * "admin".  A "client." prefix is dropped.  Into buf (len bytes).
 */
static void
client_id(const char *opt, char *buf, size_t len)
{
	const char *id = opt, *env = getenv("CEPH_ARGS");
	char *copy = NULL, *tok, *save, *prev = NULL;

	if (id == NULL && env != NULL && (copy = strdup(env)) != NULL) {
		for (tok = strtok_r(copy, " \t", &save); tok != NULL;
		    prev = tok, tok = strtok_r(NULL, " \t", &save)) {
			if (strncmp(tok, "--id=", 5) == 0 ||
			    strncmp(tok, "--name=", 7) == 0 ||
			    strncmp(tok, "--user=", 7) == 0)
				id = strchr(tok, '=') + 1;
			else if (prev != NULL && (strcmp(prev, "--id") == 0 ||
			    strcmp(prev, "--user") == 0 ||
			    strcmp(prev, "--name") == 0 ||
			    strcmp(prev, "-n") == 0))
				id = tok;
		}
	}
	if (id == NULL || *id == '\0')
		id = "admin";
	if (strncmp(id, "client.", 7) == 0)
		id += 7;
	snprintf(buf, len, "%s", id);
	free(copy);
}

/* A librados setting that is rumpblk's, whatever the configuration. */
static int
conf_force(rados_t c, const char *opt, const char *val)
{
	return -rados_conf_set(c, opt, val);
}

/*
 * librados' and librbd's settings that rumpblk changes unless the
 * configuration does (see the top): bounded waits, so that an
 * unreachable cluster is an error and not a hang, and write-around from
 * the start.  rados_conf_set would outrank the configuration file and
 * CEPH_ARGS; an argument "--default-OPTION VALUE" sets the option's
 * default instead, below anything the configuration says.
 */
static int
conf_defaults(rados_t c)
{
	const char *argv[] = {
		"rumpblk",
		"--default-client_mount_timeout", RD_TIMEOUT,
		"--default-rados_mon_op_timeout", RD_TIMEOUT,
		"--default-rados_osd_op_timeout", RD_TIMEOUT,
		"--default-rbd_cache_writethrough_until_flush", "false",
	};

	return -rados_conf_parse_argv(c, sizeof(argv) / sizeof(argv[0]), argv);
}

/*
 * A connected cluster handle for client.id, or the error after a message
 * that says what failed.
 */
static int
connect_cluster(const struct rumpblk_unit_opts *o, const char *id,
    rados_t *cp)
{
	rados_t c;
	char mon[256];
	bool noconf;
	int r;

	if ((r = rados_create(&c, id)) < 0) {
		rb_remote_say(o, "cannot create a Ceph client: %s", strerror(-r));
		return -r;
	}
	/*
	 * librados writes its errors to stderr as well as its log; the
	 * caller gets them here, once, naming what failed.
	 */
	if ((r = conf_force(c, "log_to_stderr", "false")) != 0 ||
	    (r = conf_force(c, "err_to_stderr", "false")) != 0 ||
	    (r = conf_defaults(c)) != 0) {
		rb_remote_say(o, "cannot set up the Ceph client: %s", strerror(r));
		goto shutdown;
	}
	if ((r = -rados_conf_read_file(c, o->uo_ceph_conf)) != 0 &&
	    o->uo_ceph_conf != NULL) {
		rb_remote_say(o, "cannot read the Ceph configuration %s: %s",
		    o->uo_ceph_conf, strerror(r));
		goto shutdown;
	}
	/* Without --ceph-conf and a default file, CEPH_ARGS may do. */
	noconf = r != 0;
	if ((r = -rados_conf_parse_env(c, NULL)) != 0) {
		rb_remote_say(o, "CEPH_ARGS: %s", strerror(r));
		goto shutdown;
	}
	/*
	 * No file and no monitor: librados would look the monitors up in
	 * DNS and say so on stderr.  A configuration nobody gave is the
	 * likelier story.
	 */
	if (noconf && (rados_conf_get(c, "mon_host", mon, sizeof(mon)) < 0 ||
	    mon[0] == '\0')) {
		rb_remote_say(o, "no Ceph configuration: give --ceph-conf, or mon_host in "
		    "CEPH_ARGS (the default files do not exist)");
		r = ENOENT;
		goto shutdown;
	}
	if ((r = -rados_connect(c)) != 0) {
		if (r == EACCES || r == EPERM)
			rb_remote_say(o, "cannot connect to the cluster as client.%s: "
			    "%s (no key for it in the keyring, or not the "
			    "cluster's; check --ceph-id and the keyring)", id,
			    strerror(r));
		else if (r == ENOENT)
			rb_remote_say(o, "cannot connect to the cluster as client.%s: "
			    "no monitor address or no key for it (check "
			    "--ceph-conf and --ceph-id)", id);
		else if (r == ETIMEDOUT)
			rb_remote_say(o, "cannot connect to the cluster: no answer "
			    "within %s s (check --ceph-conf and --ceph-id)",
			    RD_TIMEOUT);
		else
			rb_remote_say(o, "cannot connect to the cluster: %s (check "
			    "--ceph-conf and --ceph-id)", strerror(r));
		goto shutdown;
	}
	*cp = c;
	return 0;
shutdown:
	rados_shutdown(c);
	return r;
}

/*
 * Open the image (read-only at a snapshot or when asked), or the error
 * after a message naming what is missing or refused.
 */
static int
open_image(const struct rumpblk_unit_opts *o, struct rbdbk *rd)
{
	rbd_image_t img;
	int r;

	if (rd->rd_snap != NULL || o->uo_readonly)
		r = -rbd_open_read_only(rd->rd_ioctx, rd->rd_name,
		    &rd->rd_image, rd->rd_snap);
	else
		r = -rbd_open(rd->rd_ioctx, rd->rd_name, &rd->rd_image, NULL);
	if (r == 0)
		return 0;
	if (r == ENOENT && rd->rd_snap != NULL &&
	    rbd_open_read_only(rd->rd_ioctx, rd->rd_name, &img, NULL) == 0) {
		rbd_close(img);
		rb_remote_say(o, "image '%s' in pool '%s' has no snapshot '%s'",
		    rd->rd_name, rd->rd_pool, rd->rd_snap);
	} else if (r == ENOENT)
		rb_remote_say(o, "image '%s' not found in pool '%s'", rd->rd_name,
		    rd->rd_pool);
	else if (r == EACCES || r == EPERM)
		rb_remote_say(o, "%s may not open image '%s' in pool '%s': %s",
		    rd->rd_client, rd->rd_name, rd->rd_pool, strerror(r));
	else if (r == ETIMEDOUT)
		rb_remote_say(o, "opening image '%s' in pool '%s': no answer within "
		    "%s s", rd->rd_name, rd->rd_pool, RD_TIMEOUT);
	else
		rb_remote_say(o, "cannot open image '%s' in pool '%s': %s", rd->rd_name,
		    rd->rd_pool, strerror(r));
	rd->rd_image = NULL;
	return r;
}

/* 2. The completer, and a cluster that stops answering. */

/* A request's result from librbd's: 0 or a positive errno. */
static int
rd_error(struct rbdbk *rd, ssize_t r)
{
	int e;

	if (r >= 0)
		return 0;
	e = (int)-r;
	/*
	 * A timeout (ours, RD_TIMEOUT) or a connection librados gave up
	 * on: the cluster is gone as far as this request knows.  EIO, as
	 * for any disk that stops answering.
	 */
	if (e == ETIMEDOUT || e == ENOTCONN || e == ECONNREFUSED ||
	    e == ECONNRESET || e == ESHUTDOWN) {
		if (!atomic_exchange(&rd->rd_down, true)) {
			atomic_store(&rd->rd_probe_at,
			    rb_now_ns() + RD_PROBE_MS * 1000000ull);
			rb_remote_status(&rd->rd_rm, "%s: the cluster stopped answering (%s); "
			    "requests fail with EIO while it is down, one "
			    "every %d s tries it", rd->rd_rm.rm_bk.bk_spec,
			    strerror(e), RD_PROBE_MS / 1000);
			rb_remote_event(&rd->rd_rm,
			    RUMPBLK_EVENT_REMOTE_DOWN);
		}
		return EIO;
	}
	return e;
}

/*
 * While down, may this request go to the cluster (as the probe)?  One
 * every RD_PROBE_MS; the others fail at once.
 */
static bool
rd_may_go(struct rbdbk *rd)
{
	uint64_t at, now;

	if (RB_LIKELY(!atomic_load_explicit(&rd->rd_down,
	    memory_order_relaxed)))
		return true;
	now = rb_now_ns();
	at = atomic_load(&rd->rd_probe_at);
	return now >= at && atomic_compare_exchange_strong(&rd->rd_probe_at,
	    &at, now + RD_PROBE_MS * 1000000ull);
}

/* A request went through: if the backing was down, it is up again. */
static void
rd_answered(struct rbdbk *rd)
{
	if (RB_LIKELY(!atomic_load_explicit(&rd->rd_down,
	    memory_order_relaxed)))
		return;
	if (atomic_exchange(&rd->rd_down, false)) {
		rb_remote_status(&rd->rd_rm, "%s: the cluster answers again",
		    rd->rd_rm.rm_bk.bk_spec);
		rb_remote_event(&rd->rd_rm, RUMPBLK_EVENT_REMOTE_UP);
	}
}

/*
 * What the completer does with one request librbd has finished.  A
 * FLUSH carries in io_moved the count of completed writes it covers
 * (rd_wdone when it was sent).
 */
static void
finish(struct rbdbk *rd, struct rb_io *io)
{
	rb_io_fn *next = io->io_work;
	uint64_t f;

	io->io_error = rd_error(rd, io->io_error);
	if (io->io_error == 0) {
		rd_answered(rd);
		if (io->io_op != RUMPBLK_B_READ && next == NULL) {
			if (io->io_op != RUMPBLK_B_FLUSH)
				atomic_fetch_add(&rd->rd_wdone, 1);
			else {
				f = atomic_load(&rd->rd_flushed);
				while (f < io->io_moved &&
				    !atomic_compare_exchange_weak(
				    &rd->rd_flushed, &f, io->io_moved))
					;
			}
		}
		if (next != NULL) {
			io->io_work = NULL;
			next(io);
			return;
		}
	} else if (io->io_error != EIO)
		rd_answered(rd);	/* an answer, if not a good one */
	rb_io_complete(io, io->io_error, io->io_error == 0 &&
	    io->io_op != RUMPBLK_B_FLUSH ? io->io_len : 0);
}

static void *
completer(void *arg)
{
	struct rbdbk *rd = arg;
	struct rb_io *io, *next, *rev;

	(void)pthread_setname_np(pthread_self(), "rb-rbd");
	rb_mutex_lock(&rd->rd_qlock);
	for (;;) {
		while (rd->rd_done == NULL && !rd->rd_stop) {
			rd->rd_idle = true;
			pthread_cond_wait(&rd->rd_qcv, &rd->rd_qlock);
			rd->rd_idle = false;
		}
		if (rd->rd_done == NULL)
			break;
		io = rd->rd_done;
		rd->rd_done = NULL;
		rb_mutex_unlock(&rd->rd_qlock);
		/* Oldest first. */
		for (rev = NULL; io != NULL; io = next) {
			next = io->io_next;
			io->io_next = rev;
			rev = io;
		}
		for (io = rev; io != NULL; io = next) {
			next = io->io_next;
			finish(rd, io);
		}
		rb_mutex_lock(&rd->rd_qlock);
	}
	rb_mutex_unlock(&rd->rd_qlock);
	return NULL;
}

/* librbd's callback, on its thread: record, hand to the completer. */
static void
aio_done(rbd_completion_t c, void *arg)
{
	struct rb_io *io = arg;
	struct rbdbk *rd = io->io_ctx;
	ssize_t r = rbd_aio_get_return_value(c);

	/* librbd's -errno; the completer maps it (and may raise events,
	 * which are not for librbd's thread). */
	io->io_error = r < 0 ? (int)r : 0;
	rbd_aio_release(c);
	/*
	 * Signalled with the lock held: once it is released the request
	 * may complete and the backing close, so rd is not touched after.
	 */
	rb_mutex_lock(&rd->rd_qlock);
	io->io_next = rd->rd_done;
	rd->rd_done = io;
	if (rd->rd_idle)
		pthread_cond_signal(&rd->rd_qcv);
	rb_mutex_unlock(&rd->rd_qlock);
}

/* 3. Requests. */

/* Extents from rbd_diff_iterate2, merged, into a rumpblk_extents. */
struct extwalk {
	struct rumpblk_extents *w_ex;
	uint64_t	w_pos;		/* bytes of the image described */
	uint64_t	w_end;
	bool		w_full;
};

static void
ext_add(struct extwalk *w, uint64_t len, uint32_t flags)
{
	struct rumpblk_extents *ex = w->w_ex;
	struct rumpblk_extent *e;

	if (len == 0 || w->w_full)
		return;
	if (ex->ex_count > 0 &&
	    (e = &ex->ex_ext[ex->ex_count - 1])->e_flags == flags) {
		e->e_length += len;
	} else if (ex->ex_count < ex->ex_max) {
		e = &ex->ex_ext[ex->ex_count++];
		e->e_length = len;
		e->e_flags = flags;
		e->e_pad = 0;
	} else {
		w->w_full = true;
		return;
	}
	w->w_pos += len;
}

/* rbd_diff_iterate2's callback: one allocated (exists) range. */
static int
ext_cb(uint64_t off, size_t len, int exists, void *arg)
{
	struct extwalk *w = arg;
	uint64_t end = off + len;

	if (end > w->w_end)
		end = w->w_end;
	if (off < w->w_pos)
		off = w->w_pos;
	if (end <= off)
		return 0;
	/* What lies before it was not reported: never written. */
	ext_add(w, off - w->w_pos, RUMPBLK_EXTENT_HOLE | RUMPBLK_EXTENT_ZERO);
	ext_add(w, end - off, exists ? 0 :
	    RUMPBLK_EXTENT_HOLE | RUMPBLK_EXTENT_ZERO);
	return w->w_full ? -ENOSPC : 0;
}

static void
extents_work(struct rb_io *io)
{
	struct rbdbk *rd = io->io_ctx;
	struct rumpblk_extents *ex = io->io_data;
	struct extwalk w;
	uint64_t off = rd->rd_rm.rm_bk.bk_off + io->io_off, len = io->io_len;
	uint64_t max = rd->rd_objsize * RD_EXTENTS_OBJS;
	int r, error;

	ex->ex_count = 0;
	if (len == 0 || ex->ex_max == 0) {
		rb_io_complete(io, 0, 0);
		return;
	}
	if (!rd_may_go(rd)) {
		rb_io_complete(io, EIO, 0);
		return;
	}
	/* At most RD_EXTENTS_OBJS objects, ending on an object boundary. */
	if (len > max)
		len = max - off % rd->rd_objsize;
	w.w_ex = ex;
	w.w_pos = off;
	w.w_end = off + len;
	w.w_full = false;
	r = rbd_diff_iterate2(rd->rd_image, NULL, off, len, 1, 0, ext_cb, &w);
	if (r == -ENOSPC && w.w_full)
		r = 0;
	if ((error = rd_error(rd, r)) != 0) {
		ex->ex_count = 0;
		rb_io_complete(io, error, 0);
		return;
	}
	rd_answered(rd);
	/* The rest of the range was never written. */
	ext_add(&w, w.w_end - w.w_pos, RUMPBLK_EXTENT_HOLE |
	    RUMPBLK_EXTENT_ZERO);
	rb_io_complete(io, 0, 0);
}

/* Start one aio call for io; 0, or librbd's refusal (a positive errno). */
static int
send_aio(struct rbdbk *rd, struct rb_io *io, int op)
{
	rbd_completion_t c;
	uint64_t off = rd->rd_rm.rm_bk.bk_off + io->io_off;
	int r;

	if ((r = rbd_aio_create_completion(io, aio_done, &c)) < 0)
		return -r;
	switch (op) {
	case RUMPBLK_B_READ:
		r = rbd_aio_read(rd->rd_image, off, io->io_len, io->io_data, c);
		break;
	case RUMPBLK_B_WRITE:
		r = rbd_aio_write(rd->rd_image, off, io->io_len, io->io_data,
		    c);
		break;
	case RUMPBLK_B_TRIM:
		r = rbd_aio_discard(rd->rd_image, off, io->io_len, c);
		break;
	case RUMPBLK_B_ZERO:
		/* NOHOLE: the zeroes stay allocated. */
		r = rbd_aio_write_zeroes(rd->rd_image, off, io->io_len, c,
		    (io->io_flags & RUMPBLK_B_NOHOLE) != 0 ?
		    RBD_WRITE_ZEROES_FLAG_THICK_PROVISION : 0, 0);
		break;
	default:
		r = rbd_aio_flush(rd->rd_image, c);
		break;
	}
	if (r < 0) {
		rbd_aio_release(c);
		return rd_error(rd, r);
	}
	return 0;
}

/* After a write that must be durable at completion: the FLUSH. */
static void
send_flush(struct rb_io *io)
{
	struct rbdbk *rd = io->io_ctx;
	int error;

	if ((error = send_aio(rd, io, RUMPBLK_B_FLUSH)) != 0)
		rb_io_complete(io, error, 0);
}

static void
rd_submit(struct rb_stage *st, struct rb_io *io)
{
	struct rbdbk *rd = (struct rbdbk *)st->st_unit->u_backing;
	int error;

	io->io_ctx = rd;
	io->io_work = NULL;
	if (io->io_op == RUMPBLK_B_EXTENTS) {
		rb_pool_run(rb_instance_pool(rd->rd_rm.rm_rb), io, extents_work, rd);
		return;
	}
	/*
	 * A FLUSH with no write completed since one that succeeded has
	 * nothing to make durable: done, even with the cluster down (a
	 * reader's teardown, say).
	 */
	if (io->io_op == RUMPBLK_B_FLUSH) {
		io->io_moved = atomic_load(&rd->rd_wdone);
		if (io->io_moved == atomic_load(&rd->rd_flushed)) {
			rb_io_complete(io, 0, 0);
			return;
		}
	}
	if (!rd_may_go(rd)) {
		rb_io_complete(io, EIO, 0);
		return;
	}
	if ((io->io_op == RUMPBLK_B_WRITE || io->io_op == RUMPBLK_B_ZERO) &&
	    rb_io_wants_sync(io))
		io->io_work = send_flush;
	if ((error = send_aio(rd, io, io->io_op)) != 0)
		rb_io_complete(io, error, 0);
}

static void
rd_destroy(struct rb_stage *st)
{
	free(st);
}

static const struct rb_ops rbdstage_ops = {
	.name = "rbd",
	.submit = rd_submit,
	.destroy = rd_destroy,
};

/* 4. The backing kind. */

bool
rb_rbd_spec(const char *spec)
{
	return strncmp(spec, "rbd:", 4) == 0;
}

static int
rd_close(struct rb_backing *bk)
{
	struct rbdbk *rd = (struct rbdbk *)bk;
	int error = 0, r;

	if (rd->rd_started) {
		rb_mutex_lock(&rd->rd_qlock);
		rd->rd_stop = true;
		rb_mutex_unlock(&rd->rd_qlock);
		pthread_cond_signal(&rd->rd_qcv);
		pthread_join(rd->rd_thread, NULL);
	}
	/* rbd_close flushes librbd's cache: its error is the close's. */
	if (rd->rd_image != NULL && (r = rbd_close(rd->rd_image)) < 0)
		error = rd_error(rd, r);
	if (rd->rd_ioctx != NULL)
		rados_ioctx_destroy(rd->rd_ioctx);
	if (rd->rd_cluster != NULL)
		rados_shutdown(rd->rd_cluster);
	pthread_cond_destroy(&rd->rd_qcv);
	pthread_mutex_destroy(&rd->rd_qlock);
	rb_remote_fini(&rd->rd_rm);
	free(rd->rd_pool);
	free(rd->rd_name);
	free(rd->rd_snap);
	free(rd);
	return error;
}

/*
 * librbd's cache of the open image, in words: its settings as the image
 * has them (the client's configuration, then the pool's and the image's
 * overrides).  Left empty if librbd cannot list them.
 */
static void
cache_words(struct rbdbk *rd)
{
	rbd_config_option_t *opt = NULL;
	const char *on = NULL, *policy = NULL, *until = NULL, *v;
	int n = 128, asked, i;

	rd->rd_cache[0] = '\0';
	for (;;) {
		free(opt);
		if ((opt = calloc(n, sizeof(*opt))) == NULL)
			return;
		asked = n;
		if ((i = rbd_config_image_list(rd->rd_image, opt, &n)) == 0)
			break;
		/* -ERANGE: n is what it needs (at least more). */
		if (i != -ERANGE || asked >= 4096) {
			free(opt);
			return;
		}
		if (n <= asked)
			n = asked * 2;
	}
	for (i = 0; i < n; i++) {
		v = opt[i].value;
		if (strcmp(opt[i].name, "rbd_cache") == 0)
			on = v;
		else if (strcmp(opt[i].name, "rbd_cache_policy") == 0)
			policy = v;
		else if (strcmp(opt[i].name, "rbd_cache_writethrough_until_flush")
		    == 0)
			until = v;
	}
	if (on != NULL && strcmp(on, "false") == 0)
		snprintf(rd->rd_cache, sizeof(rd->rd_cache), "none");
	else if (on != NULL && policy != NULL)
		snprintf(rd->rd_cache, sizeof(rd->rd_cache), "%s%s", policy,
		    strcmp(policy, "writethrough") != 0 && until != NULL &&
		    strcmp(until, "true") == 0 ?
		    " after the first FLUSH (writethrough until then)" : "");
	rbd_config_image_list_cleanup(opt, n);
	free(opt);
}

static int
rd_open(struct rumpblk *rb, const char *spec,
    const struct rumpblk_unit_opts *o, struct rb_backing **bkp)
{
	struct rbdbk *rd;
	rbd_image_info_t info;
	uint64_t size, features;
	char id[64];
	size_t flen;
	int error;

	if ((rd = calloc(1, sizeof(*rd))) == NULL)
		return ENOMEM;
	pthread_mutex_init(&rd->rd_qlock, NULL);
	pthread_cond_init(&rd->rd_qcv, NULL);
	if ((error = rb_remote_init(&rd->rd_rm, rb, &rb_rbd_ops, spec)) != 0)
		goto fail;
	if ((error = parse_spec(spec, &rd->rd_pool, &rd->rd_name,
	    &rd->rd_snap)) != 0) {
		if (error == EINVAL)
			rb_remote_say(o, "expected rbd:POOL/IMAGE[@SNAP]");
		goto fail;
	}
	client_id(o->uo_ceph_id, id, sizeof(id));
	snprintf(rd->rd_client, sizeof(rd->rd_client), "client.%s", id);
	if ((error = connect_cluster(o, id, &rd->rd_cluster)) != 0)
		goto fail;
	if ((error = -rados_ioctx_create(rd->rd_cluster, rd->rd_pool,
	    &rd->rd_ioctx)) != 0) {
		rd->rd_ioctx = NULL;
		if (error == ENOENT)
			rb_remote_say(o, "pool '%s' does not exist", rd->rd_pool);
		else
			rb_remote_say(o, "pool '%s': %s", rd->rd_pool, strerror(error));
		goto fail;
	}
	if ((error = open_image(o, rd)) != 0)
		goto fail;
	if ((error = -rbd_get_size(rd->rd_image, &size)) != 0 ||
	    (error = -rbd_stat(rd->rd_image, &info, sizeof(info))) != 0 ||
	    (error = -rbd_get_features(rd->rd_image, &features)) != 0) {
		rb_remote_say(o, "image '%s' in pool '%s': %s", rd->rd_name,
		    rd->rd_pool, strerror(error));
		goto fail;
	}
	flen = sizeof(rd->rd_features);
	if (rbd_features_to_string(features, rd->rd_features, &flen) < 0)
		snprintf(rd->rd_features, sizeof(rd->rd_features), "0x%llx",
		    (unsigned long long)features);
	rd->rd_objsize = info.obj_size > 0 ? info.obj_size : 4u << 20;
	cache_words(rd);
	if ((error = rb_remote_window(&rd->rd_rm, o, size, "image")) != 0)
		goto fail;
	rd->rd_rm.rm_bk.bk_ftype = RUMPBLK_FT_RBD;
	rd->rd_rm.rm_bk.bk_mode = RUMPBLK_FREAD |
	    (o->uo_readonly || rd->rd_snap != NULL ? 0 : RUMPBLK_FWRITE);
	if ((error = pthread_create(&rd->rd_thread, NULL, completer,
	    rd)) != 0)
		goto fail;
	rd->rd_started = true;
	rb_remote_status(&rd->rd_rm, "%s: connected as %s", spec, rd->rd_client);
	*bkp = &rd->rd_rm.rm_bk;
	return 0;
fail:
	rd_close(&rd->rd_rm.rm_bk);
	return error;
}

static int
rd_stage(struct rb_unit *u, enum rumpblk_backend kind, struct rb_stage **stp)
{
	return rb_remote_stage(u, kind, &rbdstage_ops, RUMPBLK_BACKEND_RBD,
	    stp);
}

static int
rd_describe(const struct rb_backing *bk, char *buf, size_t len)
{
	struct rbdbk *rd = (struct rbdbk *)(void *)(uintptr_t)bk;

	char msg[sizeof(rd->rd_rm.rm_msg)];

	rb_remote_msg(&rd->rd_rm, msg, sizeof(msg));
	snprintf(buf, len, "%s; pool %s, image %s%s%s%s, %llu bytes in "
	    "%llu-byte objects; features %s; librbd cache %s; flush, trim, "
	    "write-zeroes, block status yes", msg, rd->rd_pool, rd->rd_name,
	    rd->rd_snap != NULL ? ", snapshot " : "",
	    rd->rd_snap != NULL ? rd->rd_snap : "",
	    rd->rd_snap != NULL ? " (read-only)" : "",
	    (unsigned long long)bk->bk_total,
	    (unsigned long long)rd->rd_objsize,
	    rd->rd_features[0] != '\0' ? rd->rd_features : "none",
	    rd->rd_cache[0] != '\0' ? rd->rd_cache : "unknown");
	return 0;
}

const struct rb_backing_ops rb_rbd_ops = {
	.bo_name = "rbd",
	.bo_open = rd_open,
	.bo_same = rb_remote_same,
	.bo_named = rb_remote_named,
	.bo_stage = rd_stage,
	.bo_close = rd_close,
	.bo_describe = rd_describe,
};
