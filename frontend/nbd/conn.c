/*
 * One NBD connection's life: its creation, the handshake, the request
 * loop of its reader thread, and teardown; and the helpers every file of
 * the server uses (time, log).
 *
 * Contents:
 *   1. helpers: time, log
 *   2. the connection's life
 *
 * This is not where bytes move or requests are understood: wire.c reads
 * and writes the socket, dispatch.c turns a request into strategy calls,
 * reply.c builds and sends replies.  The trade-off is one reader thread
 * per connection, which parses a request, submits it and only then reads
 * the next: a thread per client, for the order of strategy calls that
 * seed-mode faults rely on and no handoff on the read path.  See
 * nbd-int.h for the threading.
 */
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "nbd-int.h"
#include "say.h"

/* 1. Helpers. */

uint64_t
nbd_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

void
nbd_log(struct nbd_server *s, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	fe_vlog(s->s_cfg.log, fmt, ap);
	va_end(ap);
}

/* 2. The connection's life. */

struct nbd_conn *
nbd_conn_new(struct nbd_server *s, int fd, bool tcp)
{
	struct nbd_conn *c;

	if ((c = calloc(1, sizeof(*c))) == NULL)
		return NULL;
	if ((c->c_rbuf = malloc(NBD_RBUF_SIZE)) == NULL) {
		free(c);
		return NULL;
	}
	c->c_srv = s;
	c->c_hs_expire = s->s_hs_timeout_ns != 0 ?
	    nbd_now_ns() + s->s_hs_timeout_ns : UINT64_MAX;
	snprintf(c->c_peer, sizeof(c->c_peer), "%s", tcp ? "tcp" : "unix");
	c->c_fd = fd;
	c->c_is_tcp = tcp;
	c->c_outtail = &c->c_outq;
	pthread_mutex_init(&c->c_lock, NULL);
	pthread_cond_init(&c->c_cv, NULL);
	return c;
}

static void
set_rcvtimeo(int fd, int secs)
{
	struct timeval tv = { .tv_sec = secs, .tv_usec = 0 };

	(void)setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
}

/*
 * Sending, after the handshake.  A Unix socket the server accepted asks
 * for SO_SNDBUF NBD_SNDBUF, 4 MiB, which the kernel caps at
 * net.core.wmem_max and doubles (Debian's default cap gives 416 KiB,
 * twice the default; TCP tunes its own, which a set size would stop).
 * The default holds a fifth of a 1 MiB reply, and the writer waited for
 * the client to take each fifth; on 2 CPUs, 1 MiB reads through a
 * remote backing ran 21% faster with twice the default and 29% faster
 * with room for whole replies.  Such room needs the reader's batches
 * bounded in bytes as well as in requests (NBD_CORK_BYTES): it holds a
 * batch's replies back and sends them before it waits, and with 64 1
 * MiB copied reads (--copy-reads) in a batch, the buffers past the 4
 * MiB cache (reply.c, NBD_FREE_BYTES) were fresh mappings that faulted
 * on every page, and the data was out of the CPU's cache by the send:
 * fio 1 MiB reads at QD8 ran at 497 MiB/s, and at 4144 and 5417 with
 * the bound (the benches' figures are in the README).
 *
 * The writer's sendfile and splice (reply.c, "Spliced replies") must
 * not sleep in the send: a plaintext socket the server accepted becomes
 * non-blocking, and they wait for room in poll (nbd_wait_writable),
 * which wakes for room alone, where a send asleep for room on a Unix
 * socket is woken by every request the client sends as well (about 5
 * times a 1 MiB reply so).  A descriptor an embedder handed over
 * (nbd_serve_fd) keeps its flags and options, which are the embedder's:
 * there a blocking send waits at most SO_SNDTIMEO at a time, and the
 * writer then looks at the deadline.
 */
static void
set_sending(struct nbd_conn *c)
{
	struct timeval tv = { .tv_sec = 0, .tv_usec = 100000 };
	int fl, sz = NBD_SNDBUF;

	if (c->c_has_reader && !c->c_is_tcp)
		(void)setsockopt(c->c_fd, SOL_SOCKET, SO_SNDBUF, &sz,
		    sizeof(sz));
	if (c->c_tls != NULL)
		return;
	if (c->c_has_reader && (fl = fcntl(c->c_fd, F_GETFL)) >= 0 &&
	    fcntl(c->c_fd, F_SETFL, fl | O_NONBLOCK) == 0) {
		c->c_nonblock = true;
		return;
	}
	(void)setsockopt(c->c_fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
}

void
nbd_conn_serve(struct nbd_conn *c)
{
	struct nbd_server *s = c->c_srv;
	struct nbd_request rq;
	unsigned batch = 0;
	uint64_t bbytes = 0;		/* read bytes in the batch */
	int error;
	int hid = -1;			/* its latency histograms (issue 17) */

	/*
	 * The handshake must finish by c_hs_expire.  A client of the
	 * accept loop is watched by it (server.c), which shuts the socket
	 * down at the deadline and at shutdown, so its reader just waits
	 * (a thousand idle handshakes cost no wakeups).  nbd_serve_fd has
	 * no accept loop: there a receive timeout lets the reader look at
	 * the clock and at shutdown itself.
	 */
	c->c_hs_deadline = UINT64_MAX;
	if (!c->c_has_reader) {
		c->c_hs_deadline = c->c_hs_expire;
		set_rcvtimeo(c->c_fd, 1);
	}
	error = nbd_handshake(c);
	/* handshake.c admits at GO and EXPORT_NAME; this is the backstop
	 * (without a word to the client) for any other way out. */
	if (error == 0 && (c->c_exp == NULL || !nbd_conn_admit(c, c->c_exp)))
		error = EBUSY;
	if (error != 0)
		goto hangup;
	c->c_hs_deadline = UINT64_MAX;
	if (!c->c_has_reader)
		set_rcvtimeo(c->c_fd, 0);
	set_sending(c);
	if (pthread_create(&c->c_writer, NULL, nbd_writer_main, c) != 0) {
		nbd_log(s, "cannot start a writer thread; dropping a client");
		goto hangup;
	}
	c->c_has_writer = true;
	/*
	 * This reader makes every strategy call of the connection: bound
	 * to a record of the library, each is timed and counted there
	 * (librumpblk(3), rumpblk_conn_open).  A client without one (out
	 * of memory) is served all the same.
	 */
	{
		char label[96];	/* the library keeps 63 bytes */

		snprintf(label, sizeof(label), "nbd#%u %s", c->c_id, c->c_peer);
		if (rumpblk_conn_open(s->s_cfg.rb, c->c_exp->e_unit, label,
		    &hid) == 0)
			(void)rumpblk_conn_bind(s->s_cfg.rb, hid);
	}

	for (;;) {
		if (atomic_load(&s->s_stopping) || atomic_load(&c->c_reset))
			break;
		if (c->c_rlen - c->c_rpos < sizeof(rq)) {
			if ((error = nbd_conn_read(c, &rq, sizeof(rq))) != 0)
				break;
		} else {
			memcpy(&rq, c->c_rbuf + c->c_rpos, sizeof(rq));
			c->c_rpos += sizeof(rq);
		}
		if (be32toh(rq.magic) != NBD_REQUEST_MAGIC) {
			nbd_log(s, "bad request magic 0x%08x; disconnecting "
			    "the client", be32toh(rq.magic));
			error = EPROTO;
			break;
		}
		/*
		 * Batch the replies of a burst of requests, but not of an
		 * endless one, nor more read data than the buffer cache and
		 * the CPU's cache hold (see set_sending).
		 */
		if (be16toh(rq.type) == NBD_CMD_READ)
			bbytes += be32toh(rq.len);
		c->c_burst++;
		if (++batch == NBD_CORK_MAX || bbytes >= NBD_CORK_BYTES) {
			nbd_out_uncork(c);
			batch = 0;
			bbytes = 0;
		}
		nbd_out_cork(c);
		if ((error = nbd_dispatch(c, &rq)) != 0)
			break;
	}
	nbd_out_uncork(c);
	if (error != 0 && error != ECONNRESET) {
		/* A protocol violation: hard disconnect, drop replies. */
		lock(&c->c_lock);
		nbd_mark_dead_locked(c, 0);
		unlock(&c->c_lock);
	}
	/* Every request completes (the driver guarantees it); wait, and
	 * for its reply to be sent or dropped. */
	lock(&c->c_lock);
	while (c->c_nreqs > 0) {
		c->c_reader_waits = true;
		pthread_cond_wait(&c->c_cv, &c->c_lock);
	}
	c->c_reader_waits = false;
	c->c_writer_stop = true;
	pthread_cond_broadcast(&c->c_cv);
	unlock(&c->c_lock);
	if (c->c_has_writer) {
		pthread_join(c->c_writer, NULL);
		c->c_has_writer = false;
	}
	/* Every request has completed: the record goes to the ended sum. */
	if (hid != -1)
		(void)rumpblk_conn_close(s->s_cfg.rb, hid);
hangup:
	shutdown(c->c_fd, SHUT_RDWR);
	free(c->c_rbuf);
	c->c_rbuf = NULL;
}

void
nbd_conn_reset(struct nbd_conn *c)
{
	/* Before the socket goes, so that a reader woken by it finds the
	 * flag and does not parse requests left in its buffer. */
	atomic_store(&c->c_reset, true);
	lock(&c->c_lock);
	nbd_mark_dead_locked(c, 0);
	unlock(&c->c_lock);
}

bool
nbd_submit_enter(struct nbd_conn *c)
{
	atomic_fetch_add(&c->c_submitting, 1);
	if (!atomic_load(&c->c_reset))
		return true;
	atomic_fetch_sub(&c->c_submitting, 1);
	return false;
}

void
nbd_submit_leave(struct nbd_conn *c)
{
	atomic_fetch_sub(&c->c_submitting, 1);
}

void
nbd_conn_reset_fence(struct nbd_conn *c)
{
	/* 10 s at most: strategy does not block while a unit is cut. */
	for (int i = 0; i < 100000 && atomic_load(&c->c_submitting) != 0 &&
	    !(c->c_has_reader && pthread_equal(c->c_reader,
	    pthread_self())); i++)
		usleep(100);
}

void
nbd_conn_free(struct nbd_conn *c)
{
	struct nbd_req *r, *next;

	for (r = c->c_free; r != NULL; r = next) {
		next = r->r_next;
		free(r->r_data);
		free(r);
	}
	free(c->c_rbuf);
	nbd_tls_conn_free(c);		/* its threads are gone */
	close(c->c_fd);
	pthread_cond_destroy(&c->c_cv);
	pthread_mutex_destroy(&c->c_lock);
	free(c);
}
