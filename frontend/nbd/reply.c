/*
 * Replies: requests and their bytes in flight, building the reply of a
 * request (simple or structured), and sending replies: the out queue,
 * the ownership of the socket, cork and uncork, the writer thread.
 *
 * Contents:
 *   1. requests: allocation against the in-flight cap, release, reuse
 *   2. building replies
 *   3. sending: the out queue, socket ownership, cork
 *   4. the writer thread
 *
 * It does not decide what a reply says (dispatch.c does, from the
 * strategy call's result) and does not read the socket (wire.c).  The
 * trade-off: a reply is sent by whichever thread completed its request,
 * without waiting, so the common case costs no handoff and no context
 * switch; the price is the ownership protocol below (one sender at a
 * time, c_owner) and a writer thread per connection, which only a client
 * that reads its replies slowly ever wakes.  See nbd-int.h.  That same
 * protocol is what a TLS session needs (tls.c): GnuTLS takes one sender
 * at a time, and send_some(), the one place replies are sent, runs only
 * in the thread that owns the socket.
 */
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sendfile.h>
#include <sys/socket.h>

#include "nbd-int.h"
#include "sendv.h"

/* 1. Requests. */

/* Requests kept for reuse per connection: at most this many, holding at
 * most this many bytes of buffers (on top of the in-flight cap). */
#define NBD_FREE_MAX		32
#define NBD_FREE_BYTES		(4u << 20)

/*
 * A request with a data buffer of at least bufsize bytes (page-aligned),
 * charged to the connection's bytes in flight.  Waits while the
 * connection is over its cap (the caller has flushed its replies).
 * NULL when memory is short.
 */
struct nbd_req *
nbd_req_get(struct nbd_conn *c, size_t bufsize)
{
	struct nbd_server *s = c->c_srv;
	size_t charge = bufsize + NBD_REQ_OVERHEAD;
	struct nbd_req *r, **rp;

	lock(&c->c_lock);
	/* Plugged whenever corked (nbd_out_cork). */
	if (c->c_plugged && c->c_nreqs > 0 &&
	    c->c_inflight + charge > s->s_max_inflight) {
		/* We are about to wait for replies we hold: send them. */
		unlock(&c->c_lock);
		nbd_out_uncork(c);
		lock(&c->c_lock);
	}
	while (c->c_nreqs > 0 && c->c_inflight + charge > s->s_max_inflight &&
	    !c->c_dead) {
		c->c_reader_waits = true;
		pthread_cond_wait(&c->c_cv, &c->c_lock);
		c->c_reader_waits = false;
	}
	c->c_inflight += charge;
	c->c_nreqs++;
	/* A cached request whose buffer fits, else any to reuse. */
	for (rp = &c->c_free; (r = *rp) != NULL; rp = &r->r_next)
		if (r->r_cap >= bufsize)
			break;
	if (r == NULL && c->c_free != NULL && bufsize == 0)
		r = *(rp = &c->c_free);
	if (r != NULL) {
		*rp = r->r_next;
		c->c_nfree--;
		c->c_free_bytes -= r->r_cap;
	}
	unlock(&c->c_lock);

	if (r == NULL) {
		if ((r = malloc(sizeof(*r))) == NULL)
			goto nomem;
		r->r_data = NULL;
		r->r_cap = 0;
	}
	if (r->r_cap < bufsize) {
		free(r->r_data);
		r->r_cap = (bufsize + 4095) & ~(size_t)4095;
		if ((r->r_data = aligned_alloc(4096, r->r_cap)) == NULL) {
			free(r);
			goto nomem;
		}
	}
	r->r_conn = c;
	r->r_charge = charge;
	r->r_buf.b_flags = 0;		/* lent nothing (nbd_req_put_locked) */
	r->r_sffd = -1;
	r->r_skip = 0;
	r->r_locked = false;
	r->r_sent = 0;
	r->r_next = NULL;
	return r;
nomem:
	lock(&c->c_lock);
	c->c_inflight -= charge;
	c->c_nreqs--;
	pthread_cond_broadcast(&c->c_cv);
	unlock(&c->c_lock);
	return NULL;
}

/* Release requests whose replies are sent (or dropped); c_lock held. */
void
nbd_req_put_locked(struct nbd_conn *c, struct nbd_req *list)
{
	struct nbd_req *r, *next;

	for (r = list; r != NULL; r = next) {
		next = r->r_next;
		c->c_inflight -= r->r_charge;
		c->c_nreqs--;
		if (r->r_buf.b_flags & RUMPBLK_B_LOANED)
			rumpblk_unloan(c->c_srv->s_cfg.rb, &r->r_buf);
		if (c->c_nfree < NBD_FREE_MAX &&
		    c->c_free_bytes + r->r_cap <= NBD_FREE_BYTES) {
			r->r_next = c->c_free;
			c->c_free = r;
			c->c_nfree++;
			c->c_free_bytes += r->r_cap;
		} else {
			free(r->r_data);
			free(r);
		}
	}
	if (c->c_reader_waits)
		pthread_cond_broadcast(&c->c_cv);
}

/* 2. Building replies. */

/* A READ's bytes: the driver's, if it lent them, else our buffer. */
static inline char *
req_rdata(struct nbd_req *r)
{
	return r->r_buf.b_flags & RUMPBLK_B_LOANED ? r->r_buf.b_data :
	    r->r_data;
}

void
nbd_reply_simple(struct nbd_req *r, uint32_t error, bool data)
{
	r->r_failed = error != 0;
	r->r_hdr.s.magic = htobe32(NBD_SIMPLE_REPLY_MAGIC);
	r->r_hdr.s.error = htobe32(error);
	r->r_hdr.s.handle = r->r_handle;	/* kept in wire order */
	r->r_iov[0].iov_base = &r->r_hdr;
	r->r_iov[0].iov_len = sizeof(r->r_hdr.s);
	r->r_iovcnt = 1;
	if (data && error == 0 && r->r_len > 0) {
		r->r_iov[1].iov_base = req_rdata(r) + r->r_skip;
		r->r_iov[1].iov_len = r->r_len;
		r->r_iovcnt = 2;
	}
}

void
nbd_reply_shdr(struct nbd_structured_reply *h, struct nbd_req *r,
    uint16_t type, uint32_t len)
{
	h->magic = htobe32(NBD_STRUCTURED_REPLY_MAGIC);
	h->flags = htobe16(NBD_REPLY_FLAG_DONE);
	h->type = htobe16(type);
	h->handle = r->r_handle;
	h->len = htobe32(len);
}

/* The reply to a request: simple, or structured when negotiated (READ
 * and BLOCK_STATUS; other commands take simple replies either way). */
void
nbd_reply_error(struct nbd_req *r, int errnum)
{
	uint32_t e = nbd_errno_to_nbd(errnum);

	r->r_failed = true;
	if (e == 0)
		e = NBD_EIO;
	if (r->r_conn->c_structured && (r->r_type == NBD_CMD_READ ||
	    r->r_type == NBD_CMD_BLOCK_STATUS)) {
		nbd_reply_shdr(&r->r_hdr.e.h, r, NBD_REPLY_TYPE_ERROR, 6);
		r->r_hdr.e.error = htobe32(e);
		r->r_hdr.e.msglen = 0;
		r->r_iov[0].iov_base = &r->r_hdr;
		r->r_iov[0].iov_len = sizeof(r->r_hdr.e);
		r->r_iovcnt = 1;
	} else
		nbd_reply_simple(r, e, false);
}

/*
 * Spliced replies.  A lent READ of at least NBD_SPLICE_MIN bytes on a
 * plaintext connection goes out with sendfile(2) from the host file: the
 * socket then references the page cache's pages (AF_UNIX and TCP both
 * splice them) and the server copies nothing at all.  A read of a
 * remote NBD export is lent as a pipe that holds its data, which
 * splice(2) moves on, page references again (it asks RUMPBLK_B_LOAN_FD,
 * dispatch.c, for exactly its bytes: no skip).  Without a loan the
 * kernel copies the lent bytes into the socket, which perf showed as
 * half the server's CPU on 1 MiB reads (README, "NBD performance").
 * The bytes are read when they are sent, as a lent reply's are (a write
 * racing a read is unordered on any disk).  Smaller replies keep the
 * iovec, which gathers many replies into one sendmsg: two system calls
 * a reply would cost more than the copy of 4 KiB saves.
 *
 * sendfile and splice cannot be asked not to wait (MSG_DONTWAIT): on a
 * socket the server accepted, which does not block after the handshake
 * (conn.c, set_sending), the thread that sends the replies sends the
 * data part too, as far as the socket takes it, and leaves the rest to
 * the writer thread, as for a full socket; on a socket an embedder
 * handed over, which stays blocking, only the writer sends it.  The
 * writer waits for room in poll, 100 ms at a time (nbd_wait_writable;
 * on a blocking socket, in the send, SO_SNDTIMEO at a time), so that
 * the shutdown deadline is still seen.  (Through the NBD backing, 1 MiB
 * reads at QD8 on 2 CPUs: the writer no longer woke once a reply, and
 * rumpblk used 10% less CPU, 5 paired runs.)  Unlike sendmsg, sendfile
 * and splice cannot be told MSG_NOSIGNAL: a client that hangs up
 * mid-reply would raise SIGPIPE, which kills a program that has not
 * ignored it (the fuzz targets, any embedder).  The writer thread
 * blocks SIGPIPE for itself, so they fail with EPIPE; the kernel
 * directs that SIGPIPE at the sending thread, where it stays pending,
 * unseen, until the thread exits.  Another thread blocks it for the
 * call and takes the one it raised (splice_some).
 */
static void
splice_setup(struct nbd_req *r)
{
	struct nbd_conn *c = r->r_conn;
	uint64_t off;
	int fd;

	if (r->r_len >= NBD_SPLICE_MIN && c->c_tls == NULL &&
	    (r->r_buf.b_flags & RUMPBLK_B_LOANED) &&
	    rumpblk_loan_fd(c->c_srv->s_cfg.rb, &r->r_buf, &fd, &off) == 0) {
		r->r_sffd = fd;
		r->r_sfoff = off == RUMPBLK_LOAN_PIPE ? off : off + r->r_skip;
	}
}

void
nbd_reply_read(struct nbd_req *r)
{
	r->r_sffd = -1;
	if (!r->r_conn->c_structured) {
		nbd_reply_simple(r, 0, true);
		if (r->r_iovcnt == 2)
			splice_setup(r);
		return;
	}
	if (r->r_len == 0) {
		nbd_reply_shdr(&r->r_hdr.d.h, r, NBD_REPLY_TYPE_NONE, 0);
		r->r_iov[0].iov_base = &r->r_hdr;
		r->r_iov[0].iov_len = sizeof(r->r_hdr.d.h);
		r->r_iovcnt = 1;
		return;
	}
	nbd_reply_shdr(&r->r_hdr.d.h, r, NBD_REPLY_TYPE_OFFSET_DATA,
	    8 + r->r_len);
	r->r_hdr.d.off = htobe64(r->r_off);
	r->r_iov[0].iov_base = &r->r_hdr;
	r->r_iov[0].iov_len = sizeof(r->r_hdr.d);
	r->r_iov[1].iov_base = req_rdata(r) + r->r_skip;
	r->r_iov[1].iov_len = r->r_len;
	r->r_iovcnt = 2;
	splice_setup(r);
}

/* 3. Sending: the out queue, socket ownership, cork. */

/*
 * One sendfile, or splice from a pipe, of what is left of r's data.  A
 * thread that does not block SIGPIPE (any but the writer) holds it back
 * for the call, and takes the one a hung-up client raised, so that it
 * fails with EPIPE and no more.
 */
static ssize_t
splice_some(struct nbd_conn *c, struct nbd_req *r, size_t hdr, size_t left,
    bool writer)
{
	sigset_t pipe, old, pend;
	struct timespec zero = { 0, 0 };
	bool held = false;
	off_t off;
	ssize_t n;
	int e;

	if (!writer) {
		sigemptyset(&pipe);
		sigaddset(&pipe, SIGPIPE);
		(void)pthread_sigmask(SIG_BLOCK, &pipe, &old);
		held = sigpending(&pend) == 0 && sigismember(&pend, SIGPIPE);
	}
	if (r->r_sfoff == RUMPBLK_LOAN_PIPE)
		n = splice(r->r_sffd, NULL, c->c_fd, NULL, left,
		    SPLICE_F_MOVE);
	else {
		off = (off_t)(r->r_sfoff + (r->r_sent - hdr));
		n = sendfile(c->c_fd, r->r_sffd, &off, left);
	}
	e = errno;
	if (!writer) {
		/* Ours, if it was not pending before; even with bytes sent
		 * (the kernel's later part of the splice met the hangup). */
		if (!held && !sigismember(&old, SIGPIPE) &&
		    sigpending(&pend) == 0 && sigismember(&pend, SIGPIPE))
			(void)sigtimedwait(&pipe, NULL, &zero);
		(void)pthread_sigmask(SIG_SETMASK, &old, NULL);
	}
	errno = e;
	return n;
}

/*
 * The data part of a spliced reply at the head of a list, its header
 * sent: sendfile (splice from a pipe), until it is all sent, the
 * shutdown deadline passes or the socket fails.  The writer waits for
 * room, 100 ms at a time; another thread (on a non-blocking socket
 * only) returns EAGAIN when the socket is full, r_sent saying how far
 * it got.  0 or errno.
 */
static int
send_spliced(struct nbd_conn *c, struct nbd_req *r, bool writer)
{
	size_t hdr = r->r_iov[0].iov_len, total = hdr + r->r_iov[1].iov_len;
	ssize_t n;

	while (r->r_sent < total) {
		if (nbd_past_deadline(c->c_srv))
			return ETIMEDOUT;
		n = splice_some(c, r, hdr, total - r->r_sent, writer);
		if (n > 0)
			r->r_sent += (size_t)n;
		else if (n == 0)
			return EIO;	/* the file shrank under the loan */
		else if (errno == EAGAIN) {
			if (!writer)
				return EAGAIN;
			/* Full: wait for room (0, or the deadline's
			 * ETIMEDOUT, or EPIPE). */
			if ((n = nbd_wait_writable(c)) != 0)
				return (int)n;
		} else if (errno != EINTR)
			return errno;
	}
	return 0;
}

/* Bytes of r's reply not sent yet. */
static size_t
req_left(const struct nbd_req *r)
{
	size_t left = 0;
	int i;

	for (i = 0; i < r->r_iovcnt; i++)
		left += r->r_iov[i].iov_len;
	return left - r->r_sent;
}

/*
 * Send as much of list as the socket takes without waiting (the writer
 * thread, writer true, waits in the data of spliced replies).  Returns
 * the requests fully sent in *donep (in order) and the rest (the first
 * possibly partly sent) as the result; *errorp is set for a dead
 * socket, *blocked when the socket is full, or a spliced reply's data
 * is next on a blocking socket and this is not the writer.
 */
#define NBD_SEND_IOV	64
static struct nbd_req *
send_some(struct nbd_conn *c, struct nbd_req *list, struct nbd_req **donep,
    int *errorp, bool *blocked, bool writer)
{
	struct iovec iov[NBD_SEND_IOV];
	struct nbd_req *r, **donetail = donep;
	size_t skip, total, sent, left;
	ssize_t n;
	int cnt, i, error, more;

	*errorp = 0;
	*blocked = false;
	while (list != NULL) {
		if (list->r_sffd >= 0 &&
		    list->r_sent >= list->r_iov[0].iov_len) {
			/* The data of a spliced reply: the writer's,
			 * unless the socket does not block. */
			if (!writer && !c->c_nonblock) {
				*blocked = true;
				break;
			}
			if ((error = send_spliced(c, list, writer)) != 0) {
				if (error == EAGAIN)
					*blocked = true;
				else
					*errorp = error;
				break;
			}
			r = list;
			list = list->r_next;
			r->r_next = NULL;
			*donetail = r;
			donetail = &r->r_next;
			continue;
		}
		cnt = 0;
		total = 0;
		more = 0;
		for (r = list; r != NULL && cnt + r->r_iovcnt <= NBD_SEND_IOV;
		    r = r->r_next) {
			skip = r->r_sent;
			for (i = 0; i < r->r_iovcnt; i++) {
				if (skip >= r->r_iov[i].iov_len) {
					skip -= r->r_iov[i].iov_len;
					continue;
				}
				if (i == 1 && r->r_sffd >= 0)
					break;	/* sendfile's */
				iov[cnt].iov_base =
				    (char *)r->r_iov[i].iov_base + skip;
				iov[cnt].iov_len = r->r_iov[i].iov_len - skip;
				total += iov[cnt].iov_len;
				cnt++;
				skip = 0;
			}
			if (r->r_sffd >= 0) {
				/* Its data follows the header at once. */
				more = MSG_MORE;
				break;
			}
		}
		/* The caller owns the socket: the one sender TLS allows. */
		if (c->c_tls != NULL)
			error = nbd_tls_sendmsg(c, iov, cnt, &sent);
		else
			error = fe_sendmsg(c->c_fd, iov, cnt,
			    MSG_DONTWAIT | more, &sent);
		if (error != 0) {
			if (error == EAGAIN || error == EWOULDBLOCK)
				*blocked = true;
			else
				*errorp = error;
			break;
		}
		n = (ssize_t)sent;
		/* Retire what went out. */
		while (list != NULL && n > 0) {
			left = req_left(list);
			if ((size_t)n < left) {
				list->r_sent += (size_t)n;
				n = 0;
				break;
			}
			n -= (ssize_t)left;
			r = list;
			list = list->r_next;
			r->r_next = NULL;
			*donetail = r;
			donetail = &r->r_next;
		}
		if (sent < total) {
			/* A short send: the socket is full. */
			*blocked = true;
			break;
		}
	}
	*donetail = NULL;
	return list;
}

static void
drop_all_locked(struct nbd_conn *c)
{
	struct nbd_req *list = c->c_outq;

	c->c_outq = NULL;
	c->c_outtail = &c->c_outq;
	nbd_req_put_locked(c, list);
}

void
nbd_mark_dead_locked(struct nbd_conn *c, int error)
{
	if (!c->c_dead && error != 0 && error != EPIPE && error !=
	    ECONNRESET && error != ETIMEDOUT)
		nbd_log(c->c_srv, "sending a reply: %s", strerror(error));
	c->c_dead = true;
	drop_all_locked(c);
	/* Wake the reader (recv) and anyone waiting for space. */
	shutdown(c->c_fd, SHUT_RDWR);
	pthread_cond_broadcast(&c->c_cv);
}

/* Put the unsent replies rest (may be NULL) back in front of newer ones. */
static void
outq_requeue_locked(struct nbd_conn *c, struct nbd_req *rest)
{
	struct nbd_req *r;

	if (rest == NULL)
		return;
	for (r = rest; r->r_next != NULL; r = r->r_next)
		;
	r->r_next = c->c_outq;
	if (c->c_outq == NULL)
		c->c_outtail = &r->r_next;
	c->c_outq = rest;
}

/*
 * The caller owns the socket: send the out queue without waiting.  If
 * the socket fills up, ownership passes to the writer thread.
 */
static void
out_drain(struct nbd_conn *c)
{
	struct nbd_req *list, *done, *rest;
	bool blocked;
	int error;

	lock(&c->c_lock);
	for (;;) {
		if (c->c_dead) {
			drop_all_locked(c);
			c->c_owner = false;
			break;
		}
		if ((list = c->c_outq) == NULL) {
			c->c_owner = false;
			break;
		}
		c->c_outq = NULL;
		c->c_outtail = &c->c_outq;
		unlock(&c->c_lock);
		rest = send_some(c, list, &done, &error, &blocked, false);
		lock(&c->c_lock);
		nbd_req_put_locked(c, done);
		outq_requeue_locked(c, rest);
		if (error != 0) {
			nbd_mark_dead_locked(c, error);
			c->c_owner = false;
			break;
		}
		if (blocked) {
			c->c_writer_wanted = true;	/* it owns now */
			pthread_cond_broadcast(&c->c_cv);
			break;
		}
	}
	unlock(&c->c_lock);
}

/* out_drain, put off to the end of a completion batch; c is alive till
 * then, its replies in the queue being requests alive (c_nreqs). */
static void
deferred_drain(void *arg)
{
	out_drain(arg);
}

/* A reply is ready: queue it and send, unless another thread owns. */
void
nbd_out_push(struct nbd_req *r)
{
	struct nbd_conn *c = r->r_conn;

	lock(&c->c_lock);
	nbd_audit_reply_locked(r);
	if (c->c_dead) {
		r->r_next = NULL;
		nbd_req_put_locked(c, r);
		unlock(&c->c_lock);
		return;
	}
	r->r_next = NULL;
	*c->c_outtail = r;
	c->c_outtail = &r->r_next;
	if (c->c_owner) {
		unlock(&c->c_lock);
		return;
	}
	c->c_owner = true;
	unlock(&c->c_lock);
	/* Completing a batch (the library says so): send once it is done,
	 * with the replies of the others it completes meanwhile. */
	if (!rumpblk_defer(deferred_drain, c))
		out_drain(c);
}

/*
 * The reader takes the socket for a batch of requests, and plugs
 * (rumpblk_plug): what the requests send below (to a remote NBD server)
 * goes together at the uncork, which comes before the reader waits.
 */
void
nbd_out_cork(struct nbd_conn *c)
{
	if (!c->c_plugged) {
		c->c_plugged = true;
		rumpblk_plug();
	}
	if (c->c_corked)
		return;
	lock(&c->c_lock);
	if (!c->c_owner) {
		c->c_owner = true;
		c->c_corked = true;
	}
	unlock(&c->c_lock);
}

/* The reader is about to wait: send what the batch produced (the
 * requests first, then the replies). */
void
nbd_out_uncork(struct nbd_conn *c)
{
	if (c->c_plugged) {
		c->c_plugged = false;
		rumpblk_unplug();
	}
	if (!c->c_corked)
		return;
	c->c_corked = false;
	out_drain(c);
}

/* 4. The writer thread. */

void *
nbd_writer_main(void *arg)
{
	struct nbd_conn *c = arg;
	struct nbd_req *list, *done, *rest;
	bool blocked, bye;
	int error;

	(void)pthread_setname_np(pthread_self(), "nbd-writer");
	{
		sigset_t pipe;

		sigemptyset(&pipe);
		sigaddset(&pipe, SIGPIPE);
		(void)pthread_sigmask(SIG_BLOCK, &pipe, NULL);
	}
	lock(&c->c_lock);
	for (;;) {
		while (!c->c_writer_wanted && !c->c_writer_stop)
			pthread_cond_wait(&c->c_cv, &c->c_lock);
		if (!c->c_writer_wanted)
			break;
		/* We own the socket until the queue is empty. */
		while (!c->c_dead && (list = c->c_outq) != NULL) {
			c->c_outq = NULL;
			c->c_outtail = &c->c_outq;
			unlock(&c->c_lock);
			error = 0;
			rest = list;
			done = NULL;
			while (rest != NULL && error == 0) {
				lock(&c->c_lock);
				nbd_req_put_locked(c, done);
				unlock(&c->c_lock);
				done = NULL;
				if ((error = nbd_wait_writable(c)) != 0)
					break;
				rest = send_some(c, rest, &done, &error,
				    &blocked, true);
			}
			lock(&c->c_lock);
			nbd_req_put_locked(c, done);
			outq_requeue_locked(c, rest);
			if (error != 0)
				nbd_mark_dead_locked(c, error);
		}
		if (c->c_dead)
			drop_all_locked(c);
		c->c_writer_wanted = false;
		c->c_owner = false;
	}
	/*
	 * Stopped: every reply is sent or dropped and no thread but this
	 * one will send again, so a TLS session ends here, as proto.md
	 * asks after NBD_CMD_DISC (close_notify, then the socket goes).
	 */
	bye = !c->c_dead && c->c_tls != NULL;
	unlock(&c->c_lock);
	if (bye)
		nbd_tls_bye(c);
	return NULL;
}
