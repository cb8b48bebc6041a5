/*
 * The NBD backing: a unit whose data is an export of a remote NBD server,
 * reached with libnbd.  The spec is an NBD URI as libnbd takes it
 * (nbd://HOST[:PORT]/EXPORT, nbd+unix:///EXPORT?socket=PATH, the nbds
 * forms with TLS, ...).  Size, read-only, block sizes, and which of
 * FLUSH, FUA, TRIM, WRITE_ZEROES and block status work come from the
 * export; every layer of the stack sits above it as above a file.
 *
 * Contents:
 *   1. connections: connecting, the poller, losing and regaining one
 *   2. requests (the stage)
 *   3. the backing kind
 *
 * Requests go asynchronously, with libnbd's aio calls, on one connection,
 * or, when the server allows multi-conn (a FLUSH on one then covers the
 * writes completed on all, as the protocol says), on one data connection
 * per two CPUs (1 to NB_MULTI; RUMPBLK_NBD_CONNECTIONS sets it), picked
 * in turn.  The data connections ask for
 * simple replies: a read's reply is then a header and the data, two
 * receives, where a structured one is four (header, chunk, offset,
 * data); measured on 2 CPUs in front of nbdkit memory, 4 KiB random
 * reads ran about a quarter faster so.  Block status needs structured
 * replies: it goes on connection 0, which asks for them and for
 * base:allocation, and which carries everything when there is no
 * multi-conn.  (On 2 CPUs one data connection beat two, and two four:
 * fewer pollers to wake, more replies per wake-up, and the remote's
 * threads fed fuller batches; in front of nbdkit memory, 4 KiB random
 * reads at QD32 went from 0.61 to 0.68 of the direct rate, medians of
 * 5 paired rounds, with 15% less CPU in rumpblk and 8% less in
 * nbdkit.)  Each connection has a
 * poller thread that waits on the socket
 * and an eventfd, drives libnbd's state machine (aio_notify_*), and
 * completes what came back.  libnbd calls completion callbacks with the
 * handle's lock held, and completing a request may submit another on
 * the same handle (a layer above going on): so a callback only queues
 * the request, and the queue is drained once libnbd has let go: by the
 * poller, or by the submitter when its aio call ran the state machine
 * far enough to see replies.
 *
 * A remote that goes away: every request in flight on it fails with EIO
 * (libnbd retires them when the connection dies), as does every request
 * submitted while it is down, at once: nothing waits for the network.
 * The poller says so once (RUMPBLK_EVENT_REMOTE_DOWN, and the message of
 * rumpblk_backing_status) and tries again NB_RETRIES times, waiting 0.5,
 * 1, 2, 4 and 8 s before each attempt (about 15 s in all), each connect
 * bounded by NB_CONNECT_MS; a connection regained serves again
 * (RUMPBLK_EVENT_REMOTE_UP); one that is not stays down for good.  What
 * the remote held is its own business: a write acknowledged before the
 * loss is the remote's to keep.
 *
 * Locks: c_hlock guards c_h against its replacement by a reconnection
 * (submitters read-lock it for the length of an aio call; the poller
 * write-locks it to swap); c_donelock the queue of completed requests.
 * libnbd locks its handle itself.
 */
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include <libnbd.h>

#include "remote.h"

#define NB_MULTI	4		/* data connections at most */
#define NB_RETRIES	5
#define NB_CONNECT_MS	10000
#define NB_ZEROBUF	(1u << 20)	/* write-zeroes emulated in chunks */

/* The protocol as the own client speaks it (proto.md): simple replies. */
#define W_REQ_MAGIC	0x25609513u
#define W_REPLY_MAGIC	0x67446698u
#define W_REQSIZE	28
#define W_REPLYSIZE	16
#define W_CMD_READ	0
#define W_CMD_WRITE	1
#define W_CMD_DISC	2
#define W_CMD_FLUSH	3
#define W_CMD_TRIM	4
#define W_CMD_ZERO	6
#define W_FLAG_FUA	(1u << 0)
#define W_FLAG_NOHOLE	(1u << 1)
#define W_BATCH		64		/* requests per sendmsg at most */
#define W_RBUF		(64u << 10)	/* the receive buffer */
#define W_RDIRECT	(16u << 10)	/* data left this long: in place */
#define W_DEFER		4		/* on the wire: the poller sends */
#define NB_PIPE_MIN	(64u << 10)	/* a read this long may be a pipe */
#define NB_PIPE_SIZE	(1u << 20)	/* a pipe's size, asked for */
#define NB_PIPE_IDLE	16		/* pipes kept for reuse */
#define NB_PIPE_LENT	64		/* pipes lent at once, at most */

struct nbdbk;

static char zeroes[NB_ZEROBUF];		/* write-zeroes, emulated */

/* A reply's cookie: a slot of the own client's table of requests. */
enum { W_QUEUED = 1, W_SENDING, W_ONWIRE };
struct wslot {
	struct nbpiece	*s_p;		/* NULL: free */
	int		s_state;	/* W_*: where its request is */
};
#define W_NOCOOKIE	UINT32_MAX

struct nbconn {
	struct nbdbk	*c_nb;
	unsigned	c_no;
	bool		c_structured;	/* ( asks for structured replies */
	bool		c_own;		/* ( the own client speaks on it */
	pthread_rwlock_t c_hlock;
	struct nbd_handle *c_h;		/* hlock */
	int		c_efd;		/* ( wakes the poller */
	pthread_t	c_thread;
	_Atomic bool	c_down;		/* a: requests fail at once */
	_Atomic bool	c_stop;		/* a: the poller ends */
	pthread_mutex_t	c_donelock;
	struct rb_io	*c_done;	/* donelock: completed, to complete */
	struct rb_io	*c_flushq;	/* donelock: written, to FLUSH */

	/* The own client (c_own): the socket libnbd connected, ours after
	 * the handshake.  w = c_wlock, o = the sender (c_sending). */
	pthread_mutex_t	c_wlock;
	pthread_cond_t	c_wcv;		/* c_sending went false */
	int		c_fd;		/* w (read by the sender and poller) */
	bool		c_wdead;	/* w: lost, being swept or reconnected */
	bool		c_sending;	/* w: a thread sends; it owns c_iov */
	bool		c_blocked;	/* w: the socket was full: POLLOUT */
	struct wslot	*c_slot;	/* w: requests by cookie */
	uint32_t	*c_free;	/* w: free cookies, a stack */
	uint32_t	c_nslot, c_nfree;	/* w */
	uint32_t	c_onwire;	/* w: slots on the wire, unanswered */
	struct nbpiece	*c_sendq;	/* w: to send, in order */
	struct nbpiece	**c_sendtail;	/* w */
	struct iovec	c_iov[2 * W_BATCH];	/* o: the batch on its way */
	uint32_t	c_iovck[2 * W_BATCH];	/* o: the cookie a request's
						 * last iovec ends */
	unsigned	c_niov, c_iovpos;	/* o */
	/* the receiver's (the poller thread's) */
	unsigned char	*c_rbuf;
	size_t		c_have, c_pos;	/* bytes in c_rbuf, parsed of them */
	struct nbpiece	*c_cur;		/* a read whose data is coming */
	uint32_t	c_curgot;	/* of its c_cur->p_len */
	char		c_why[160];	/* why it was lost */
};

/* A pipe a read's data is lent in (RUMPBLK_B_LOAN_FD, section 2b). */
struct nbpipe {
	int		pp_fd[2];
	uint32_t	pp_cap;		/* bytes it holds */
	struct nbpipe	*pp_next;	/* nb_pipes */
};

struct nbdbk {
	struct rb_remote nb_rm;		/* first: spec, unit, status line */
	unsigned	nb_nconn;	/* ( */
	struct nbconn	*nb_conn;	/* ( */
	_Atomic unsigned nb_next;	/* a: the next connection to use */
	bool		nb_flush, nb_fua, nb_trim, nb_zero, nb_extents;
	uint64_t	nb_maxreq;	/* ( largest request the export takes */
	pthread_mutex_t	nb_plock;
	struct nbpipe	*nb_pipes;	/* plock: idle */
	unsigned	nb_nidle, nb_nlent;	/* plock */
};

/* What an rb_io on the wire counts: its pieces still out, its error. */
struct counters {
	_Atomic uint32_t left;
	_Atomic int	error;
	bool		then_flush;	/* FUA the export lacks: FLUSH after */
};

/* A request on the wire: one of an rb_io's pieces. */
struct nbpiece {
	struct rb_io	*p_io;
	struct nbconn	*p_c;
	struct counters	*p_k;
	/* the own client's */
	struct nbpiece	*p_next;	/* c_sendq */
	void		*p_buf;		/* a read's data goes, a write's comes */
	struct nbpipe	*p_pipe;	/* or a read's data goes here */
	uint32_t	p_len;		/* ... this long */
	uint32_t	p_cookie;	/* its slot */
	bool		p_read;
	unsigned char	p_hdr[W_REQSIZE];	/* the request, as sent */
};

/* A block status request: a piece, and where its extents go. */
struct nbext {
	struct nbpiece	x_p;		/* first: freed as a piece */
	struct rumpblk_extents *x_ex;
	uint64_t	x_len;
	uint64_t	x_got;
};

/* 1. Connections. */

static int
ms_since(const struct timespec *t0)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (int)((t.tv_sec - t0->tv_sec) * 1000 +
	    (t.tv_nsec - t0->tv_nsec) / 1000000);
}

/* errno of libnbd's last error, never 0. */
static int
nbd_errno(void)
{
	int e = nbd_get_errno();

	return e != 0 ? e : EIO;
}

/*
 * A new handle connected to uri within NB_CONNECT_MS, or NULL with the
 * error in *errp and libnbd's message in msg.
 */
static struct nbd_handle *
connect_uri(const char *uri, bool structured, int *errp, char *msg,
    size_t msglen)
{
	struct nbd_handle *h;
	struct timespec t0;
	struct pollfd pfd;
	int left, dir;

	if ((h = nbd_create()) == NULL) {
		*errp = nbd_errno();
		snprintf(msg, msglen, "%s", nbd_get_error());
		return NULL;
	}
	/* Block status, where the export has it; the name is the URI's.
	 * A data connection: simple replies, cheaper to read. */
	if (structured)
		(void)nbd_add_meta_context(h, LIBNBD_CONTEXT_BASE_ALLOCATION);
	else if (nbd_set_request_structured_replies(h, false) == -1)
		goto fail;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	if (nbd_aio_connect_uri(h, uri) == -1)
		goto fail;
	while (nbd_aio_is_connecting(h) == 1) {
		if ((left = NB_CONNECT_MS - ms_since(&t0)) <= 0) {
			*errp = ETIMEDOUT;
			snprintf(msg, msglen, "no answer within %d s",
			    NB_CONNECT_MS / 1000);
			nbd_close(h);
			return NULL;
		}
		pfd.fd = nbd_aio_get_fd(h);
		dir = nbd_aio_get_direction(h);
		pfd.events = ((dir & LIBNBD_AIO_DIRECTION_READ) ? POLLIN : 0) |
		    ((dir & LIBNBD_AIO_DIRECTION_WRITE) ? POLLOUT : 0);
		if (pfd.fd < 0 || poll(&pfd, 1, left) < 0) {
			if (pfd.fd >= 0 && errno == EINTR)
				continue;
			goto fail;
		}
		if ((pfd.revents & (POLLIN | POLLHUP | POLLERR)) != 0 &&
		    nbd_aio_notify_read(h) == -1)
			goto fail;
		if ((pfd.revents & POLLOUT) != 0 &&
		    nbd_aio_notify_write(h) == -1)
			goto fail;
	}
	if (nbd_aio_is_ready(h) != 1)
		goto fail;
	return h;
fail:
	*errp = nbd_errno();
	snprintf(msg, msglen, "%s", nbd_get_error() != NULL ?
	    nbd_get_error() : strerror(*errp));
	nbd_close(h);
	return NULL;
}

static void
wake(struct nbconn *c)
{
	uint64_t one = 1;

	while (write(c->c_efd, &one, sizeof(one)) < 0 && errno == EINTR)
		;
}

static int send_piece(struct nbconn *, struct rb_io *, struct counters *,
    int, void *, uint64_t, uint64_t, uint32_t, struct nbpipe *);

/* io is written; send the FLUSH that makes it durable (FUA the export
 * lacks), and complete it when that is back. */
static void
flush_after(struct nbconn *c, struct rb_io *io)
{
	struct counters *k;
	int error = ENOMEM;

	if ((k = calloc(1, sizeof(*k))) != NULL) {
		atomic_init(&k->left, 1);
		if ((error = send_piece(c, io, k, RUMPBLK_B_FLUSH, NULL, 0, 0,
		    0, NULL)) != 0)
			free(k);
	}
	if (error != 0)
		rb_io_complete(io, error, 0);
}

/*
 * Complete every request the callbacks queued, and send the FLUSHes
 * that follow writes (no libnbd lock held).
 */
static void
drain(struct nbconn *c)
{
	struct rb_io *io, *next, *fq;

	pthread_mutex_lock(&c->c_donelock);
	io = c->c_done;
	fq = c->c_flushq;
	c->c_done = c->c_flushq = NULL;
	pthread_mutex_unlock(&c->c_donelock);
	rb_batch_begin();
	for (; io != NULL; io = next) {
		next = io->io_next;
		rb_io_complete(io, io->io_error, io->io_error == 0 ?
		    io->io_len : 0);
	}
	rb_batch_end();
	for (; fq != NULL; fq = next) {
		next = fq->io_next;
		flush_after(c, fq);
	}
}

/*
 * 1a. Reads lent as pipes.  A read of NB_PIPE_MIN or more whose caller
 * takes its bytes only as a file descriptor (RUMPBLK_B_LOAN_FD: the
 * NBD server, which splices them into its client's socket) is not
 * copied out of the remote's socket: the own client splices its data
 * into a pipe (section 1b, wire_recv), which the caller splices on.
 * The pages the remote's kernel filled then go to the client's socket
 * by reference, and a 1 MiB read costs rumpblk no copy where it cost
 * two (receive and send).  A pipe that will not take the data (fuller
 * than its size says: many small pieces) gives it back to the read's
 * buffer, which then completes as a copy.  Pipes are kept for reuse,
 * NB_PIPE_IDLE at most, and NB_PIPE_LENT at most are lent at once:
 * past that a read is copied.
 */
static void
pipe_close(struct nbpipe *pp)
{
	close(pp->pp_fd[0]);
	close(pp->pp_fd[1]);
	free(pp);
}

static struct nbpipe *
pipe_get(struct nbdbk *nb, uint64_t len)
{
	struct nbpipe *pp;
	int cap;

	pthread_mutex_lock(&nb->nb_plock);
	if (nb->nb_nlent >= NB_PIPE_LENT) {
		pthread_mutex_unlock(&nb->nb_plock);
		return NULL;
	}
	if ((pp = nb->nb_pipes) != NULL) {
		nb->nb_pipes = pp->pp_next;
		nb->nb_nidle--;
	}
	nb->nb_nlent++;
	pthread_mutex_unlock(&nb->nb_plock);
	if (pp == NULL) {
		if ((pp = malloc(sizeof(*pp))) == NULL)
			goto none;
		if (pipe2(pp->pp_fd, O_CLOEXEC | O_NONBLOCK) != 0) {
			free(pp);
			goto none;
		}
		/* As large as allowed (pipe-max-size; a user past his
		 * pipe-user-pages-soft gets small ones). */
		(void)fcntl(pp->pp_fd[1], F_SETPIPE_SZ, (int)NB_PIPE_SIZE);
		cap = fcntl(pp->pp_fd[1], F_GETPIPE_SZ);
		pp->pp_cap = cap > 0 ? (uint32_t)cap : 0;
	}
	if (pp->pp_cap >= len)
		return pp;
	/* The system capped it (pipe-max-size; a user past his
	 * pipe-user-pages-soft gets a page or two): closed, not kept,
	 * for kept it would head the idle list and stop every later
	 * read from being lent. */
	pipe_close(pp);
none:
	pthread_mutex_lock(&nb->nb_plock);
	nb->nb_nlent--;
	pthread_mutex_unlock(&nb->nb_plock);
	return NULL;
}

/* A lent pipe is back: kept if it is empty and there is room, else
 * closed (its bytes, if any, with it). */
static void
pipe_put(struct nbdbk *nb, struct nbpipe *pp)
{
	int left = -1;

	(void)ioctl(pp->pp_fd[0], FIONREAD, &left);
	pthread_mutex_lock(&nb->nb_plock);
	nb->nb_nlent--;
	if (left == 0 && nb->nb_nidle < NB_PIPE_IDLE) {
		pp->pp_next = nb->nb_pipes;
		nb->nb_pipes = pp;
		nb->nb_nidle++;
		pp = NULL;
	}
	pthread_mutex_unlock(&nb->nb_plock);
	if (pp != NULL)
		pipe_close(pp);
}

/*
 * A piece is back with error e: the last of its rb_io's completes the
 * rb_io, there and then, or (queue: in libnbd's callback, which holds
 * the handle's lock) through the connection's queue, which drain()
 * empties once libnbd has let go.
 */
static void
piece_end(struct nbpiece *p, int e, bool queue)
{
	struct rb_io *io = p->p_io;
	struct nbconn *c = p->p_c;
	struct counters *k = p->p_k;
	struct nbpipe *pp = p->p_pipe;
	bool flush;

	free(p);
	/* A lent read is its rb_io's only piece: its pipe is the loan, or,
	 * failed, goes back. */
	if (pp != NULL) {
		if (e == 0) {
			io->io_lent = RB_LENT_FD;
			io->io_ctx = pp;
		} else
			pipe_put(c->c_nb, pp);
	}
	/* A connection that died takes its requests with it: EIO. */
	if (e == ENOTCONN || e == ECONNRESET || e == EPIPE || e == ESHUTDOWN)
		e = EIO;
	if (e != 0) {
		int zero = 0;

		atomic_compare_exchange_strong(&k->error, &zero, e);
	}
	if (atomic_fetch_sub(&k->left, 1) != 1)
		return;
	io->io_error = atomic_load(&k->error);
	flush = k->then_flush && io->io_error == 0;
	free(k);
	if (!queue) {
		if (flush)
			flush_after(c, io);
		else
			rb_io_complete(io, io->io_error, io->io_error == 0 ?
			    io->io_len : 0);
		return;
	}
	pthread_mutex_lock(&c->c_donelock);
	if (flush) {
		io->io_next = c->c_flushq;
		c->c_flushq = io;
	} else {
		io->io_next = c->c_done;
		c->c_done = io;
	}
	pthread_mutex_unlock(&c->c_donelock);
}

/*
 * 1b. The own client.  libnbd's reads of a reply are a receive for the
 * header and one for the data, and its sends one per request, from the
 * submitting thread; on 2 CPUs in front of nbdkit memory that put
 * rumpblk at about half the client's direct rate.  A data connection
 * without TLS is therefore ours once libnbd has done the handshake (it
 * knows every URI form; the socket is then idle and in transmission):
 *
 *   - sending: a submitter queues its request (header, and a write's
 *     data by reference) and, unless another thread is sending, or
 *     W_DEFER requests are already out (the poller then sends what
 *     queued up once their replies are in: fewer, fuller sendmsgs, and
 *     fewer wake-ups of the server), sends the queue, up to W_BATCH
 *     requests in one sendmsg, without ever waiting: a full socket is
 *     left to the poller (POLLOUT);
 *   - receiving: the poller reads W_RBUF at a time, completes every
 *     reply in it there and then, copying a read's data out of the
 *     buffer, or receiving it in place when much of it is still to come
 *     (1 MiB reads: one copy, the kernel's, as libnbd), all in one
 *     completion batch (rumpblk_defer: the NBD server sends their
 *     replies together).
 *
 * A reply's cookie is a slot of c_slot.  A slot is W_QUEUED, then
 * W_SENDING while a sendmsg has its bytes, then W_ONWIRE once sendmsg
 * took the whole request: only then may its reply complete it (a quick
 * server's reply to a W_SENDING one waits for the sender to let go, so
 * that nothing frees a request sendmsg still holds).  A reply for any
 * other slot is a protocol error that drops the connection.  A lost
 * connection fails every slot with EIO (wire_sweep), then lost()
 * reconnects as for libnbd's connections.
 */

static void
put16(unsigned char *b, uint16_t v)
{
	v = htobe16(v);
	memcpy(b, &v, sizeof(v));
}

static void
put32(unsigned char *b, uint32_t v)
{
	v = htobe32(v);
	memcpy(b, &v, sizeof(v));
}

static void
put64(unsigned char *b, uint64_t v)
{
	v = htobe64(v);
	memcpy(b, &v, sizeof(v));
}

static uint32_t
get32(const unsigned char *b)
{
	uint32_t v;

	memcpy(&v, b, sizeof(v));
	return be32toh(v);
}

static uint64_t
get64(const unsigned char *b)
{
	uint64_t v;

	memcpy(&v, b, sizeof(v));
	return be64toh(v);
}

/* An NBD error as an errno: the protocol's values are Linux's. */
static int
wire_errno(uint32_t err)
{
	switch (err) {
	case 0:
	case EPERM:
	case EIO:
	case ENOMEM:
	case EINVAL:
	case ENOSPC:
	case EOVERFLOW:
	case EOPNOTSUPP:
	case ESHUTDOWN:
		return (int)err;
	default:
		return EIO;
	}
}

/* A cookie for p (w): 0, or ENOMEM.  The table doubles when full. */
static int
slot_get(struct nbconn *c, struct nbpiece *p)
{
	if (c->c_nfree == 0) {
		uint32_t i, n = c->c_nslot == 0 ? 256 : c->c_nslot * 2;
		struct wslot *s;
		uint32_t *f;

		if (n > (1u << 24) ||
		    (s = realloc(c->c_slot, n * sizeof(*s))) == NULL)
			return ENOMEM;
		c->c_slot = s;
		if ((f = realloc(c->c_free, n * sizeof(*f))) == NULL)
			return ENOMEM;
		c->c_free = f;
		for (i = n; i > c->c_nslot; i--) {
			s[i - 1].s_p = NULL;
			s[i - 1].s_state = 0;
			f[c->c_nfree++] = i - 1;
		}
		c->c_nslot = n;
	}
	p->p_cookie = c->c_free[--c->c_nfree];
	c->c_slot[p->p_cookie].s_p = p;
	c->c_slot[p->p_cookie].s_state = W_QUEUED;
	return 0;
}

/*
 * Send the queue (entered with c_wlock held and c_sending set by the
 * caller; returns with the lock released and c_sending clear).
 */
static void
wire_push(struct nbconn *c)
{
	uint32_t sent[W_BATCH];
	struct msghdr m;
	struct nbpiece *p;
	unsigned nsent;
	ssize_t n;
	int fd, e;

	for (;;) {
		if (c->c_wdead) {
			c->c_niov = c->c_iovpos = 0;
			break;
		}
		if (c->c_iovpos == c->c_niov) {
			/* The next batch. */
			c->c_niov = c->c_iovpos = 0;
			for (unsigned k = 0; k < W_BATCH &&
			    (p = c->c_sendq) != NULL; k++) {
				c->c_sendq = p->p_next;
				c->c_slot[p->p_cookie].s_state = W_SENDING;
				c->c_iov[c->c_niov].iov_base = p->p_hdr;
				c->c_iovck[c->c_niov] = W_NOCOOKIE;
				c->c_iov[c->c_niov++].iov_len = W_REQSIZE;
				if (!p->p_read && p->p_buf != NULL) {
					c->c_iov[c->c_niov].iov_base = p->p_buf;
					c->c_iovck[c->c_niov] = W_NOCOOKIE;
					c->c_iov[c->c_niov++].iov_len =
					    p->p_len;
				}
				c->c_iovck[c->c_niov - 1] = p->p_cookie;
			}
			if (c->c_sendq == NULL)
				c->c_sendtail = &c->c_sendq;
			if (c->c_niov == 0)
				break;
		}
		fd = c->c_fd;
		pthread_mutex_unlock(&c->c_wlock);
		/* No request of the batch completes before it is marked
		 * W_ONWIRE below (the poller waits for that). */
		memset(&m, 0, sizeof(m));
		m.msg_iov = c->c_iov + c->c_iovpos;
		m.msg_iovlen = c->c_niov - c->c_iovpos;
		n = sendmsg(fd, &m, MSG_NOSIGNAL | MSG_DONTWAIT);
		e = errno;
		nsent = 0;
		for (ssize_t left = n; left > 0;) {
			struct iovec *v = &c->c_iov[c->c_iovpos];

			if ((size_t)left >= v->iov_len) {
				left -= (ssize_t)v->iov_len;
				if (c->c_iovck[c->c_iovpos] != W_NOCOOKIE)
					sent[nsent++] =
					    c->c_iovck[c->c_iovpos];
				c->c_iovpos++;
			} else {
				v->iov_base = (char *)v->iov_base + left;
				v->iov_len -= (size_t)left;
				left = 0;
			}
		}
		pthread_mutex_lock(&c->c_wlock);
		/* Sent whole: now a reply may complete them. */
		for (unsigned i = 0; i < nsent; i++) {
			c->c_slot[sent[i]].s_state = W_ONWIRE;
			c->c_onwire++;
		}
		if (nsent > 0)
			pthread_cond_broadcast(&c->c_wcv);
		if (n >= 0 || e == EINTR)
			continue;
		if (e == EAGAIN || e == EWOULDBLOCK) {
			/* Full: the poller goes on when it drains. */
			c->c_blocked = true;
			c->c_sending = false;
			pthread_cond_broadcast(&c->c_wcv);
			pthread_mutex_unlock(&c->c_wlock);
			wake(c);
			return;
		}
		/* Broken: the poller sees the socket end and sweeps. */
		snprintf(c->c_why, sizeof(c->c_why), "sending: %s",
		    strerror(e));
		(void)shutdown(fd, SHUT_RDWR);
		c->c_niov = c->c_iovpos = 0;
		break;
	}
	c->c_sending = false;
	pthread_cond_broadcast(&c->c_wcv);
	pthread_mutex_unlock(&c->c_wlock);
}

/*
 * Send what is queued, unless another thread sends, the socket is full
 * (the poller goes on at POLLOUT) or lost: at a plug's end
 * (rumpblk_plug), and in the poller once replies are in.
 */
static void
wire_kick(void *arg)
{
	struct nbconn *c = arg;

	pthread_mutex_lock(&c->c_wlock);
	if (c->c_sendq == NULL || c->c_sending || c->c_blocked ||
	    c->c_wdead) {
		pthread_mutex_unlock(&c->c_wlock);
		return;
	}
	c->c_sending = true;
	wire_push(c);
}

/*
 * Queue piece p (header built here) and send, unless another does, or
 * the thread is plugged (the plug's end sends all it queued at once).
 */
static int
wire_send(struct nbconn *c, struct nbpiece *p, int op, void *buf,
    uint64_t len, uint64_t off, uint32_t flags)
{
	uint16_t type, f = 0;
	int error;

	switch (op) {
	case RUMPBLK_B_READ:
		type = W_CMD_READ;
		break;
	case RUMPBLK_B_WRITE:
		type = W_CMD_WRITE;
		break;
	case RUMPBLK_B_FLUSH:
		type = W_CMD_FLUSH;
		break;
	case RUMPBLK_B_TRIM:
		type = W_CMD_TRIM;
		break;
	default:
		type = W_CMD_ZERO;
		break;
	}
	if (flags & LIBNBD_CMD_FLAG_FUA)
		f |= W_FLAG_FUA;
	if (flags & LIBNBD_CMD_FLAG_NO_HOLE)
		f |= W_FLAG_NOHOLE;
	p->p_read = op == RUMPBLK_B_READ;
	p->p_buf = op == RUMPBLK_B_READ || op == RUMPBLK_B_WRITE ? buf : NULL;
	p->p_len = (uint32_t)len;
	p->p_next = NULL;
	pthread_mutex_lock(&c->c_wlock);
	if (c->c_wdead || atomic_load(&c->c_down)) {
		pthread_mutex_unlock(&c->c_wlock);
		return EIO;
	}
	if ((error = slot_get(c, p)) != 0) {
		pthread_mutex_unlock(&c->c_wlock);
		return error;
	}
	put32(p->p_hdr, W_REQ_MAGIC);
	put16(p->p_hdr + 4, f);
	put16(p->p_hdr + 6, type);
	put64(p->p_hdr + 8, p->p_cookie);
	put64(p->p_hdr + 16, off);
	put32(p->p_hdr + 24, (uint32_t)len);
	*c->c_sendtail = p;
	c->c_sendtail = &p->p_next;
	/* Busy: the poller sends it with the others queued meanwhile,
	 * once the replies it is bound to see next are in. */
	if (c->c_sending || c->c_blocked || c->c_onwire >= W_DEFER) {
		pthread_mutex_unlock(&c->c_wlock);
		return 0;
	}
	if (rb_batch_active() && rb_defer_once(wire_kick, c)) {
		pthread_mutex_unlock(&c->c_wlock);
		return 0;
	}
	c->c_sending = true;
	wire_push(c);
	return 0;
}

/*
 * A read lent as a pipe gives it up: its bytes so far (c_curgot) go
 * back to its buffer, and the rest comes as a copied read's.  0, or -1:
 * the pipe failed (c_why says so), which drops the connection.
 */
static int
pipe_unlend(struct nbconn *c, struct nbpiece *p)
{
	struct nbpipe *pp = p->p_pipe;
	uint32_t got = 0;
	ssize_t n;

	while (got < c->c_curgot) {
		n = read(pp->pp_fd[0], (char *)p->p_buf + got,
		    c->c_curgot - got);
		if (n > 0)
			got += (uint32_t)n;
		else if (n < 0 && errno == EINTR)
			continue;
		else {
			snprintf(c->c_why, sizeof(c->c_why), "a read's pipe: "
			    "%s", n == 0 ? "short" : strerror(errno));
			return -1;
		}
	}
	p->p_pipe = NULL;
	pipe_put(c->c_nb, pp);
	return 0;
}

/* n bytes of p's data at src (its c_curgot-th on) into its pipe; or
 * the pipe is full, and p is a copied read again (p_pipe NULL: the
 * caller copies them).  0, or -1 as above. */
static int
pipe_write(struct nbconn *c, struct nbpiece *p, const unsigned char *src,
    size_t n)
{
	size_t done = 0;
	ssize_t w;

	while (done < n) {
		w = write(p->p_pipe->pp_fd[1], src + done, n - done);
		if (w > 0)
			done += (size_t)w;
		else if (w < 0 && errno == EINTR)
			continue;
		else
			break;
	}
	if (done == n)
		return 0;
	/* Full: the bytes before these come back, the caller copies
	 * these, and the pipe goes with what of them went in. */
	return pipe_unlend(c, p);
}

/*
 * Complete what c_rbuf holds: every whole reply, and the data of a read
 * as far as it came.  0, or -1: a protocol error (c_why says which).
 */
static int
wire_parse(struct nbconn *c)
{
	const unsigned char *h;
	struct nbpiece *p;
	uint64_t cookie;
	uint32_t err;
	size_t avail, take;

	for (;;) {
		avail = c->c_have - c->c_pos;
		if ((p = c->c_cur) != NULL) {
			take = p->p_len - c->c_curgot;
			if (take > avail)
				take = avail;
			if (p->p_pipe != NULL &&
			    pipe_write(c, p, c->c_rbuf + c->c_pos, take) != 0)
				return -1;
			if (p->p_pipe == NULL)
				memcpy((char *)p->p_buf + c->c_curgot,
				    c->c_rbuf + c->c_pos, take);
			c->c_pos += take;
			c->c_curgot += (uint32_t)take;
			if (c->c_curgot < p->p_len)
				return 0;
			c->c_cur = NULL;
			piece_end(p, 0, false);
			continue;
		}
		if (avail < W_REPLYSIZE)
			return 0;
		h = c->c_rbuf + c->c_pos;
		if (get32(h) != W_REPLY_MAGIC) {
			snprintf(c->c_why, sizeof(c->c_why), "protocol error: "
			    "a reply with magic 0x%08x", get32(h));
			return -1;
		}
		err = get32(h + 4);
		cookie = get64(h + 8);
		pthread_mutex_lock(&c->c_wlock);
		/* A request whose sendmsg has not returned yet (the server
		 * was quick): wait for the sender to let go of it. */
		while (cookie < c->c_nslot && c->c_slot[cookie].s_p != NULL &&
		    c->c_slot[cookie].s_state == W_SENDING && c->c_sending)
			pthread_cond_wait(&c->c_wcv, &c->c_wlock);
		if (cookie >= c->c_nslot ||
		    (p = c->c_slot[cookie].s_p) == NULL ||
		    c->c_slot[cookie].s_state != W_ONWIRE) {
			pthread_mutex_unlock(&c->c_wlock);
			snprintf(c->c_why, sizeof(c->c_why), "protocol error: "
			    "a reply to no request sent (cookie %llu)",
			    (unsigned long long)cookie);
			return -1;
		}
		c->c_slot[cookie].s_p = NULL;
		c->c_free[c->c_nfree++] = (uint32_t)cookie;
		c->c_onwire--;
		pthread_mutex_unlock(&c->c_wlock);
		c->c_pos += W_REPLYSIZE;
		if (p->p_read && err == 0 && p->p_len > 0) {
			c->c_cur = p;
			c->c_curgot = 0;
			continue;
		}
		piece_end(p, wire_errno(err), false);
	}
}

/*
 * A splice into a pipe would block: true if that is the pipe's doing
 * (the socket has data), false if the socket's (it is empty).
 */
static bool
pipe_full(struct nbconn *c)
{
	char b;

	return recv(c->c_fd, &b, 1, MSG_PEEK | MSG_DONTWAIT) > 0;
}

/* n more bytes of the read whose data is coming (c_cur) are in: it
 * completes once they are all in. */
static void
cur_got(struct nbconn *c, struct nbpiece *p, size_t n)
{
	c->c_curgot += (uint32_t)n;
	if (c->c_curgot == p->p_len) {
		c->c_cur = NULL;
		piece_end(p, 0, false);
	}
}

/* Receive what the socket has.  0, or -1: the connection is lost. */
static int
wire_recv(struct nbconn *c)
{
	struct nbpiece *p;
	size_t want;
	ssize_t n;

	for (;;) {
		p = c->c_cur;
		if (p != NULL && c->c_pos == c->c_have && p->p_pipe != NULL) {
			/* A lent read's data: socket to pipe, by
			 * reference (section 1a). */
			want = p->p_len - c->c_curgot;
			n = splice(c->c_fd, NULL, p->p_pipe->pp_fd[1], NULL,
			    want, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
			if (n > 0)
				cur_got(c, p, (size_t)n);
			else if (n < 0 && errno != EINTR &&
			    (errno != EAGAIN || pipe_full(c))) {
				/* The pipe is full, or this socket does not
				 * splice: the rest is copied. */
				if (pipe_unlend(c, p) != 0)
					return -1;
				continue;
			}
		} else if (p != NULL && c->c_pos == c->c_have &&
		    p->p_len - c->c_curgot >= W_RDIRECT) {
			/* Much of a read's data still to come: in place. */
			want = p->p_len - c->c_curgot;
			n = recv(c->c_fd, (char *)p->p_buf + c->c_curgot,
			    want, MSG_DONTWAIT);
			if (n > 0)
				cur_got(c, p, (size_t)n);
		} else {
			if (c->c_pos > 0) {
				memmove(c->c_rbuf, c->c_rbuf + c->c_pos,
				    c->c_have - c->c_pos);
				c->c_have -= c->c_pos;
				c->c_pos = 0;
			}
			want = W_RBUF - c->c_have;
			n = recv(c->c_fd, c->c_rbuf + c->c_have, want,
			    MSG_DONTWAIT);
			if (n > 0) {
				c->c_have += (size_t)n;
				if (wire_parse(c) != 0)
					return -1;
			}
		}
		/* Less than asked for: the socket is empty, most likely;
		 * poll says when there is more. */
		if (n > 0 && (size_t)n < want)
			return 0;
		if (n > 0 || (n < 0 && errno == EINTR))
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return 0;
		snprintf(c->c_why, sizeof(c->c_why), "%s", n == 0 ?
		    "the server closed the connection" : strerror(errno));
		return -1;
	}
}

/* The connection is lost: fail every request on it with EIO. */
static void
wire_sweep(struct nbconn *c)
{
	struct nbpiece *list = NULL, *p, *next;

	pthread_mutex_lock(&c->c_wlock);
	c->c_wdead = true;
	while (c->c_sending)
		pthread_cond_wait(&c->c_wcv, &c->c_wlock);
	for (uint32_t i = 0; i < c->c_nslot; i++) {
		if ((p = c->c_slot[i].s_p) == NULL)
			continue;
		c->c_slot[i].s_p = NULL;
		c->c_free[c->c_nfree++] = i;
		p->p_next = list;
		list = p;
	}
	c->c_sendq = NULL;
	c->c_sendtail = &c->c_sendq;
	c->c_niov = c->c_iovpos = 0;
	c->c_onwire = 0;
	c->c_blocked = false;
	pthread_mutex_unlock(&c->c_wlock);
	if ((p = c->c_cur) != NULL) {	/* no longer in a slot */
		c->c_cur = NULL;
		p->p_next = list;
		list = p;
	}
	c->c_have = c->c_pos = 0;
	for (p = list; p != NULL; p = next) {
		next = p->p_next;
		piece_end(p, EIO, false);
	}
}

/* Take the socket of h, connected and idle, for the own client. */
static void
wire_take(struct nbconn *c, struct nbd_handle *h)
{
	int fd = nbd_aio_get_fd(h), fl = fcntl(fd, F_GETFL);

	/* Non-blocking, whatever libnbd left: splice(2) of a TCP socket
	 * looks at that, not at SPLICE_F_NONBLOCK (section 1a). */
	if (fl >= 0 && (fl & O_NONBLOCK) == 0)
		(void)fcntl(fd, F_SETFL, fl | O_NONBLOCK);
	pthread_mutex_lock(&c->c_wlock);
	c->c_fd = fd;
	c->c_wdead = false;
	pthread_mutex_unlock(&c->c_wlock);
}

/* Say goodbye (NBD_CMD_DISC) as the poller ends: best effort. */
static void
wire_disc(struct nbconn *c)
{
	unsigned char hdr[W_REQSIZE];

	memset(hdr, 0, sizeof(hdr));
	put32(hdr, W_REQ_MAGIC);
	put16(hdr + 6, W_CMD_DISC);
	(void)send(c->c_fd, hdr, sizeof(hdr), MSG_NOSIGNAL | MSG_DONTWAIT);
}

/*
 * The connection is lost: fail what is out (libnbd retires it), say so,
 * then try again, NB_RETRIES times at most.  Returns true once it is
 * back, false if it stays down (or the backing is closing).
 */
static bool
lost(struct nbconn *c)
{
	struct nbdbk *nb = c->c_nb;
	struct nbd_handle *h, *old;
	char msg[200];
	int error, i, ms = 500;

	atomic_store(&c->c_down, true);
	if (c->c_own) {
		snprintf(msg, sizeof(msg), "%s", c->c_why);
		wire_sweep(c);
	} else {
		snprintf(msg, sizeof(msg), "%s", nbd_get_error() != NULL ?
		    nbd_get_error() : "the server closed the connection");
		drain(c);
	}
	rb_remote_status(&nb->nb_rm, "%s: connection lost (%s); requests "
	    "fail with EIO while it is down; reconnecting",
	    nb->nb_rm.rm_bk.bk_spec, msg);
	rb_remote_event(&nb->nb_rm, RUMPBLK_EVENT_REMOTE_DOWN);
	for (i = 0; i < NB_RETRIES; i++, ms *= 2) {
		/* Sleep in steps, so that a close is not kept waiting. */
		for (int t = 0; t < ms && !atomic_load(&c->c_stop); t += 50)
			usleep(50000);
		if (atomic_load(&c->c_stop))
			return false;
		if ((h = connect_uri(nb->nb_rm.rm_bk.bk_spec,
		    c->c_structured, &error, msg,
		    sizeof(msg))) == NULL)
			continue;
		if ((uint64_t)nbd_get_size(h) != nb->nb_rm.rm_bk.bk_total) {
			nbd_close(h);
			snprintf(msg, sizeof(msg), "the export's size changed");
			break;
		}
		pthread_rwlock_wrlock(&c->c_hlock);
		old = c->c_h;
		c->c_h = h;
		pthread_rwlock_unlock(&c->c_hlock);
		if (c->c_own)
			wire_take(c, h);
		nbd_close(old);
		atomic_store(&c->c_down, false);
		rb_remote_status(&nb->nb_rm, "%s: connection regained",
		    nb->nb_rm.rm_bk.bk_spec);
		rb_remote_event(&nb->nb_rm, RUMPBLK_EVENT_REMOTE_UP);
		return true;
	}
	rb_remote_status(&nb->nb_rm, "%s: down for good (%s); requests fail "
	    "with EIO", nb->nb_rm.rm_bk.bk_spec, msg);
	rb_remote_event(&nb->nb_rm, RUMPBLK_EVENT_REMOTE_DOWN);
	return false;
}

/*
 * A poller's wait: for its socket (pfd[1], which the caller sets) or a
 * wake-up on the eventfd (pfd[0], consumed here).  false: poll failed,
 * the poller ends; else pfd[1].revents says what the socket has (none
 * after an interrupted poll).
 */
static bool
wait_conn(struct nbconn *c, struct pollfd *pfd)
{
	uint64_t v;

	pfd[0].fd = c->c_efd;
	pfd[0].events = POLLIN;
	pfd[0].revents = pfd[1].revents = 0;
	if (poll(pfd, 2, -1) < 0)
		return errno == EINTR;
	if (pfd[0].revents & POLLIN)
		(void)read(c->c_efd, &v, sizeof(v));
	return true;
}

/* The poller of a connection of the own client. */
static void *
wire_poller(struct nbconn *c)
{
	struct pollfd pfd[2];
	bool up = true;
	int r;

	while (!atomic_load(&c->c_stop)) {
		pfd[1].fd = up ? c->c_fd : -1;	/* only we change it */
		pthread_mutex_lock(&c->c_wlock);
		pfd[1].events = POLLIN | (c->c_blocked ? POLLOUT : 0);
		pthread_mutex_unlock(&c->c_wlock);
		if (!wait_conn(c, pfd))
			break;
		if (!up || pfd[1].revents == 0)
			continue;
		if (pfd[1].revents & POLLOUT) {
			pthread_mutex_lock(&c->c_wlock);
			c->c_blocked = false;
			if (c->c_sending || c->c_wdead)
				pthread_mutex_unlock(&c->c_wlock);
			else {
				c->c_sending = true;
				wire_push(c);
			}
		}
		if (pfd[1].revents & (POLLIN | POLLHUP | POLLERR)) {
			/* Whatever the completions put off runs once they
			 * are all done (rumpblk_defer). */
			rb_batch_begin();
			r = wire_recv(c);
			rb_batch_end();
			if (r != 0) {
				if (!atomic_load(&c->c_stop))
					up = lost(c);
				continue;
			}
		}
		/* What was queued while replies were due. */
		wire_kick(c);
	}
	if (up)
		wire_disc(c);
	wire_sweep(c);
	return NULL;
}

static void *
poller(void *arg)
{
	struct nbconn *c = arg;
	struct pollfd pfd[2];
	int dir, r;
	bool up = true;

	(void)pthread_setname_np(pthread_self(), "rb-nbd");
	if (c->c_own)
		return wire_poller(c);
	while (!atomic_load(&c->c_stop)) {
		pfd[1].fd = -1;
		pfd[1].events = 0;
		if (up) {
			pthread_rwlock_rdlock(&c->c_hlock);
			pfd[1].fd = nbd_aio_get_fd(c->c_h);
			dir = nbd_aio_get_direction(c->c_h);
			pthread_rwlock_unlock(&c->c_hlock);
			pfd[1].events = POLLIN |
			    ((dir & LIBNBD_AIO_DIRECTION_WRITE) ? POLLOUT : 0);
			if (pfd[1].fd < 0) {	/* no socket: lost */
				up = lost(c);
				continue;
			}
		}
		if (!wait_conn(c, pfd))
			break;
		if (!up || pfd[1].revents == 0)
			continue;
		pthread_rwlock_rdlock(&c->c_hlock);
		r = 0;
		if (pfd[1].revents & (POLLIN | POLLHUP | POLLERR))
			r = nbd_aio_notify_read(c->c_h);
		if (r != -1 && (pfd[1].revents & POLLOUT))
			r = nbd_aio_notify_write(c->c_h);
		/* Dead (an error) or closed (the server hung up): lost. */
		if (r != -1 && (nbd_aio_is_dead(c->c_h) == 1 ||
		    nbd_aio_is_closed(c->c_h) == 1))
			r = -1;
		pthread_rwlock_unlock(&c->c_hlock);
		drain(c);
		if (r == -1 && !atomic_load(&c->c_stop))
			up = lost(c);
	}
	drain(c);
	return NULL;
}

/* 2. Requests. */

/* Extents of base:allocation into the request's rumpblk_extents. */
static int
extent_cb(void *arg, const char *ctx, uint64_t off, uint32_t *entries,
    size_t n, int *error)
{
	struct nbext *x = arg;

	(void)off;
	(void)error;
	if (strcmp(ctx, LIBNBD_CONTEXT_BASE_ALLOCATION) != 0)
		return 0;
	for (size_t i = 0; i + 1 < n && x->x_ex->ex_count < x->x_ex->ex_max &&
	    x->x_got < x->x_len; i += 2) {
		uint64_t l = entries[i];

		if (l > x->x_len - x->x_got)
			l = x->x_len - x->x_got;
		x->x_ex->ex_ext[x->x_ex->ex_count].e_length = l;
		/* NBD_STATE_HOLE and _ZERO are our HOLE and ZERO bits. */
		x->x_ex->ex_ext[x->x_ex->ex_count].e_flags = entries[i + 1] &
		    (RUMPBLK_EXTENT_HOLE | RUMPBLK_EXTENT_ZERO);
		x->x_ex->ex_ext[x->x_ex->ex_count].e_pad = 0;
		x->x_ex->ex_count++;
		x->x_got += l;
	}
	return 0;
}

/* libnbd's completion of a piece: queue it (the handle lock is held). */
static int
piece_done(void *arg, int *error)
{
	piece_end(arg, *error, true);
	return 1;	/* retire it */
}

/*
 * Send one piece of io (op, off, len of its data at buf, or, a read of
 * the own client, in pipe pp, which the piece takes).  Returns 0, or the
 * error that kept it from the wire (the piece is then not out).
 */
static int
send_piece(struct nbconn *c, struct rb_io *io, struct counters *k, int op,
    void *buf, uint64_t len, uint64_t off, uint32_t flags, struct nbpipe *pp)
{
	struct nbpiece *p;
	nbd_completion_callback cb;
	int64_t r;

	if ((p = malloc(op == RUMPBLK_B_EXTENTS ? sizeof(struct nbext) :
	    sizeof(*p))) == NULL) {
		if (pp != NULL)
			pipe_put(c->c_nb, pp);
		return ENOMEM;
	}
	p->p_io = io;
	p->p_c = c;
	p->p_k = k;
	p->p_pipe = pp;
	if (c->c_own) {
		if ((r = wire_send(c, p, op, buf, len, off, flags)) != 0) {
			if (pp != NULL)
				pipe_put(c->c_nb, pp);
			free(p);
		}
		return (int)r;
	}
	cb.callback = piece_done;
	cb.user_data = p;
	cb.free = NULL;
	pthread_rwlock_rdlock(&c->c_hlock);
	if (atomic_load(&c->c_down)) {
		pthread_rwlock_unlock(&c->c_hlock);
		free(p);
		return EIO;
	}
	switch (op) {
	case RUMPBLK_B_READ:
		r = nbd_aio_pread(c->c_h, buf, len, off, cb, 0);
		break;
	case RUMPBLK_B_WRITE:
		r = nbd_aio_pwrite(c->c_h, buf, len, off, cb, flags);
		break;
	case RUMPBLK_B_FLUSH:
		r = nbd_aio_flush(c->c_h, cb, 0);
		break;
	case RUMPBLK_B_TRIM:
		r = nbd_aio_trim(c->c_h, len, off, cb, flags);
		break;
	case RUMPBLK_B_EXTENTS: {
		struct nbext *x = (struct nbext *)p;
		nbd_extent_callback ecb = { .callback = extent_cb,
		    .user_data = x };

		x->x_ex = buf;
		x->x_len = len;
		x->x_got = 0;
		r = nbd_aio_block_status(c->c_h, len, off, ecb, cb, 0);
		break;
	}
	default:
		r = nbd_aio_zero(c->c_h, len, off, cb, flags);
		break;
	}
	if (r != -1 &&
	    (nbd_aio_get_direction(c->c_h) & LIBNBD_AIO_DIRECTION_WRITE))
		wake(c);
	pthread_rwlock_unlock(&c->c_hlock);
	if (r == -1) {
		free(p);
		return nbd_errno() == ENOTCONN ? EIO : nbd_errno();
	}
	return 0;
}

static uint32_t
nbflags(struct nbdbk *nb, struct rb_io *io)
{
	uint32_t f = 0;

	if (nb->nb_fua && (io->io_op == RUMPBLK_B_WRITE ||
	    io->io_op == RUMPBLK_B_ZERO) && rb_io_wants_sync(io))
		f |= LIBNBD_CMD_FLAG_FUA;
	if (io->io_op == RUMPBLK_B_ZERO &&
	    (io->io_flags & RUMPBLK_B_NOHOLE) != 0)
		f |= LIBNBD_CMD_FLAG_NO_HOLE;
	return f;
}

static void
nb_submit(struct rb_stage *st, struct rb_io *io)
{
	struct nbdbk *nb = (struct nbdbk *)st->st_unit->u_backing;
	struct nbconn *c = &nb->nb_conn[io->io_op == RUMPBLK_B_EXTENTS ||
	    nb->nb_nconn == 1 ? 0 : 1 + atomic_fetch_add_explicit(
	    &nb->nb_next, 1, memory_order_relaxed) % (nb->nb_nconn - 1)];
	struct counters *k;
	uint64_t off = nb->nb_rm.rm_bk.bk_off + io->io_off, done, n;
	int op = io->io_op, error = 0;
	uint32_t pieces, i;
	struct nbpipe *pp = NULL;

	switch (op) {
	case RUMPBLK_B_EXTENTS: {
		struct rumpblk_extents *ex = io->io_data;

		ex->ex_count = 0;
		if (io->io_len == 0 || ex->ex_max == 0 || !nb->nb_extents) {
			if (io->io_len != 0 && ex->ex_max != 0) {
				/* No map: all of it data, as a file
				 * system without SEEK_DATA answers. */
				ex->ex_ext[0].e_length = io->io_len;
				ex->ex_ext[0].e_flags = 0;
				ex->ex_ext[0].e_pad = 0;
				ex->ex_count = 1;
			}
			rb_io_complete(io, 0, 0);
			return;
		}
		break;
	}
	case RUMPBLK_B_FLUSH:
		if (!nb->nb_flush) {
			rb_io_complete(io, 0, 0);
			return;
		}
		break;
	case RUMPBLK_B_TRIM:
		if (!nb->nb_trim) {	/* advice the export does not take */
			rb_io_complete(io, EOPNOTSUPP, 0);
			return;
		}
		break;
	case RUMPBLK_B_ZERO:
		if (!nb->nb_zero)
			op = RUMPBLK_B_WRITE;	/* zeroes, written */
		break;
	}
	/* Split what the export cannot take in one request. */
	n = op == RUMPBLK_B_FLUSH ? 0 : io->io_len;
	if (op == RUMPBLK_B_EXTENTS && n > UINT32_MAX)
		n = UINT32_MAX & ~(uint64_t)((1u << 20) - 1);
	if (op == RUMPBLK_B_WRITE && io->io_op == RUMPBLK_B_ZERO)
		pieces = (uint32_t)((n + NB_ZEROBUF - 1) / NB_ZEROBUF);
	else
		pieces = (uint32_t)((n + nb->nb_maxreq - 1) / nb->nb_maxreq);
	if (pieces == 0 || op == RUMPBLK_B_EXTENTS)
		pieces = 1;
	if ((k = malloc(sizeof(*k))) == NULL) {
		rb_io_complete(io, ENOMEM, 0);
		return;
	}
	atomic_init(&k->left, pieces);
	atomic_init(&k->error, 0);
	/* A read whose caller splices its bytes on: lent as a pipe, when
	 * it is one piece on the own client (section 1a). */
	if (op == RUMPBLK_B_READ && pieces == 1 && c->c_own &&
	    n >= NB_PIPE_MIN && n <= NB_PIPE_SIZE &&
	    (io->io_flags & (RUMPBLK_B_LOAN | RUMPBLK_B_LOAN_FD)) ==
	    (RUMPBLK_B_LOAN | RUMPBLK_B_LOAN_FD))
		pp = pipe_get(nb, n);
	/* A write to be durable at completion on an export without FUA:
	 * a FLUSH once it is written (drain sends it). */
	k->then_flush = (op == RUMPBLK_B_WRITE || op == RUMPBLK_B_ZERO) &&
	    rb_io_wants_sync(io) && !nb->nb_fua && nb->nb_flush;
	for (i = 0, done = 0; i < pieces; i++) {
		uint64_t max = (op == RUMPBLK_B_WRITE && io->io_op ==
		    RUMPBLK_B_ZERO) ? NB_ZEROBUF : nb->nb_maxreq;
		uint64_t len = n - done < max ? n - done : max;
		void *buf = io->io_op == RUMPBLK_B_ZERO ? (void *)zeroes :
		    op == RUMPBLK_B_EXTENTS ? io->io_data :
		    (char *)io->io_data + done;

		error = send_piece(c, io, k, op, buf, len, off + done,
		    nbflags(nb, io), pp);
		if (error != 0)
			break;
		done += len;
	}
	if (error != 0) {
		/* The pieces not sent count as done, with the error. */
		int zero = 0;
		uint32_t unsent = pieces - i;

		atomic_compare_exchange_strong(&k->error, &zero, error);
			if (atomic_fetch_sub(&k->left, unsent) == unsent) {
			free(k);
			rb_io_complete(io, error, 0);
			drain(c);
			return;
		}
	}
	/* Replies the aio calls saw (libnbd may read them here). */
	if (!c->c_own)
		drain(c);
}

/* A read lent as a pipe is given back (rumpblk_unloan). */
static void
nb_unloan(struct rb_stage *st, void *handle)
{
	pipe_put((struct nbdbk *)st->st_unit->u_backing, handle);
}

static int
nb_loan_fd(struct rb_stage *st, const struct rb_io *io, int *fdp,
    uint64_t *offp)
{
	const struct nbpipe *pp = io->io_ctx;

	(void)st;
	*fdp = pp->pp_fd[0];
	*offp = RUMPBLK_LOAN_PIPE;
	return 0;
}

static void
nb_destroy(struct rb_stage *st)
{
	free(st);
}

static const struct rb_ops nbstage_ops = {
	.name = "nbd",
	.submit = nb_submit,
	.destroy = nb_destroy,
	.unloan = nb_unloan,
	.loan_fd = nb_loan_fd,
};

/* 3. The backing kind. */

bool
rb_nbd_spec(const char *spec)
{
	return strncmp(spec, "nbd://", 6) == 0 ||
	    strncmp(spec, "nbds://", 7) == 0 ||
	    strncmp(spec, "nbd+unix://", 11) == 0 ||
	    strncmp(spec, "nbds+unix://", 12) == 0 ||
	    strncmp(spec, "nbd+vsock://", 12) == 0 ||
	    strncmp(spec, "nbds+vsock://", 13) == 0;
}

static void
conn_fini(struct nbconn *c)
{
	if (c->c_h != NULL)
		nbd_close(c->c_h);
	free(c->c_slot);
	free(c->c_free);
	free(c->c_rbuf);
	pthread_mutex_destroy(&c->c_wlock);
	pthread_cond_destroy(&c->c_wcv);
	if (c->c_efd >= 0)
		close(c->c_efd);
	pthread_rwlock_destroy(&c->c_hlock);
	pthread_mutex_destroy(&c->c_donelock);
}

static int
nb_close(struct rb_backing *bk)
{
	struct nbdbk *nb = (struct nbdbk *)bk;
	struct nbpipe *pp;

	for (unsigned i = 0; i < nb->nb_nconn; i++) {
		struct nbconn *c = &nb->nb_conn[i];

		atomic_store(&c->c_stop, true);
		wake(c);
		pthread_join(c->c_thread, NULL);
		conn_fini(c);
	}
	free(nb->nb_conn);
	/* Every loan is back (the unit's drain waited for them). */
	while ((pp = nb->nb_pipes) != NULL) {
		nb->nb_pipes = pp->pp_next;
		close(pp->pp_fd[0]);
		close(pp->pp_fd[1]);
		free(pp);
	}
	pthread_mutex_destroy(&nb->nb_plock);
	rb_remote_fini(&nb->nb_rm);
	free(nb);
	return 0;
}

static int
nb_open(struct rumpblk *rb, const char *spec,
    const struct rumpblk_unit_opts *o, struct rb_backing **bkp)
{
	struct nbd_handle *h;
	struct nbdbk *nb;
	char msg[200];
	int64_t size, max;
	unsigned i, n;
	int error;

	if ((h = connect_uri(spec, true, &error, msg, sizeof(msg))) == NULL) {
		rb_remote_say(o, "%s", msg);
		return error;
	}
	if ((size = nbd_get_size(h)) < 0) {
		error = nbd_errno();
		nbd_close(h);
		return error;
	}
	/* The export's minimum block size must fit our sectors. */
	if ((max = nbd_get_block_size(h, LIBNBD_SIZE_MINIMUM)) >
	    (int64_t)(1u << rb->rb_cfg.sectshift)) {
		rb_remote_say(o, "the export's minimum block size, %lld bytes, "
		    "is larger than the sector size (%u)", (long long)max,
		    1u << rb->rb_cfg.sectshift);
		nbd_close(h);
		return EINVAL;
	}
	if ((nb = calloc(1, sizeof(*nb))) == NULL) {
		nbd_close(h);
		return ENOMEM;
	}
	pthread_mutex_init(&nb->nb_plock, NULL);
	if ((error = rb_remote_init(&nb->nb_rm, rb, &rb_nbd_ops, spec)) != 0 ||
	    (error = rb_remote_window(&nb->nb_rm, o, (uint64_t)size,
	    "export")) != 0) {
		nbd_close(h);
		goto fail;
	}
	nb->nb_rm.rm_bk.bk_ftype = RUMPBLK_FT_NBD;
	nb->nb_rm.rm_bk.bk_mode = RUMPBLK_FREAD |
	    (o->uo_readonly || nbd_is_read_only(h) == 1 ? 0 : RUMPBLK_FWRITE);
	nb->nb_flush = nbd_can_flush(h) == 1;
	nb->nb_fua = nbd_can_fua(h) == 1;
	nb->nb_trim = nbd_can_trim(h) == 1;
	nb->nb_zero = nbd_can_zero(h) == 1;
	nb->nb_extents = nbd_can_meta_context(h,
	    LIBNBD_CONTEXT_BASE_ALLOCATION) == 1;
	max = nbd_get_block_size(h, LIBNBD_SIZE_MAXIMUM);
	nb->nb_maxreq = max > 0 ? (uint64_t)max : 32u << 20;
	/* Connection 0, then the data connections, if any. */
	n = 1;
	if (nbd_can_multi_conn(h) == 1) {
		long data = sysconf(_SC_NPROCESSORS_ONLN) / 2;	/* per 2 CPUs */
		const char *v = getenv("RUMPBLK_NBD_CONNECTIONS");
		char *end;

		if (v != NULL && *v != '\0') {	/* empty: unset */
			errno = 0;
			data = strtol(v, &end, 10);
			if (*end != '\0' || errno != 0 ||
			    data < 1 || data > NB_MULTI) {
				nbd_close(h);
				rb_remote_say(o, "RUMPBLK_NBD_CONNECTIONS=%s: "
				    "want 1 to %d data connections", v,
				    NB_MULTI);
				error = EINVAL;
				goto fail;
			}
		}
		n += data < 1 ? 1 : data > NB_MULTI ? NB_MULTI : (unsigned)data;
	}
	if ((nb->nb_conn = calloc(n, sizeof(*nb->nb_conn))) == NULL) {
		nbd_close(h);
		error = ENOMEM;
		goto fail;
	}
	for (i = 0; i < n; i++) {
		struct nbconn *c = &nb->nb_conn[i];

		c->c_nb = nb;
		c->c_no = i;
		c->c_structured = i == 0;
		c->c_efd = -1;
		c->c_fd = -1;
		c->c_sendtail = &c->c_sendq;
		pthread_rwlock_init(&c->c_hlock, NULL);
		pthread_mutex_init(&c->c_donelock, NULL);
		pthread_mutex_init(&c->c_wlock, NULL);
		pthread_cond_init(&c->c_wcv, NULL);
		if (i == 0)
			c->c_h = h;
		else if ((c->c_h = connect_uri(spec, false, &error, msg,
		    sizeof(msg))) == NULL) {
			rb_remote_say(o, "connection %u: %s", i + 1, msg);
			goto fail_conn;
		}
		/* A data connection without TLS: the own client's. */
		if (i > 0 && nbd_get_tls_negotiated(c->c_h) != 1 &&
		    nbd_get_structured_replies_negotiated(c->c_h) != 1) {
			if ((c->c_rbuf = malloc(W_RBUF)) == NULL) {
				error = ENOMEM;
				goto fail_conn;
			}
			c->c_own = true;
			wire_take(c, c->c_h);
		}
		if ((c->c_efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) < 0) {
			error = errno;
			goto fail_conn;
		}
		if ((error = pthread_create(&c->c_thread, NULL, poller,
		    c)) != 0)
			goto fail_conn;
		nb->nb_nconn = i + 1;
	}
	rb_remote_status(&nb->nb_rm, "%s: connected", spec);
	*bkp = &nb->nb_rm.rm_bk;
	return 0;
fail_conn:
	conn_fini(&nb->nb_conn[i]);
fail:
	nb_close(&nb->nb_rm.rm_bk);
	return error;
}

static int
nb_stage(struct rb_unit *u, enum rumpblk_backend kind, struct rb_stage **stp)
{
	return rb_remote_stage(u, kind, &nbstage_ops, RUMPBLK_BACKEND_NBD,
	    stp);
}

static int
nb_describe(const struct rb_backing *bk, char *buf, size_t len)
{
	struct nbdbk *nb = (struct nbdbk *)(void *)(uintptr_t)bk;
	char msg[sizeof(nb->nb_rm.rm_msg)], conns[64];

	rb_remote_msg(&nb->nb_rm, msg, sizeof(msg));
	if (nb->nb_nconn > 1)
		snprintf(conns, sizeof(conns), "%u data connection%s and one "
		    "for block status", nb->nb_nconn - 1,
		    nb->nb_nconn > 2 ? "s" : "");
	else
		snprintf(conns, sizeof(conns), "1 connection");
	snprintf(buf, len, "%s; %s; flush %s, FUA %s, trim "
	    "%s, write-zeroes %s, block status %s", msg, conns,
	    nb->nb_flush ? "yes" : "no", nb->nb_fua ? "yes" : "no",
	    nb->nb_trim ? "yes" : "no", nb->nb_zero ? "yes" : "emulated",
	    nb->nb_extents ? "yes" : "no");
	return 0;
}

const struct rb_backing_ops rb_nbd_ops = {
	.bo_name = "nbd",
	.bo_open = nb_open,
	.bo_same = rb_remote_same,
	.bo_named = rb_remote_named,
	.bo_stage = nb_stage,
	.bo_close = nb_close,
	.bo_describe = nb_describe,
};
