/*
 * The socket of one connection, as bytes: exact reads through the
 * receive buffer, discarding a payload, the blocking send of the
 * handshake, and waiting for room to send, bounded by the shutdown
 * deadline.
 *
 * Contents:
 *   1. sending: waiting for room, nbd_conn_sendv
 *   2. receiving: the buffered reader
 *
 * It knows nothing of NBD messages: dispatch.c and handshake.c decode
 * them, reply.c queues and sends the replies of requests.  This file and
 * reply.c send through the one sendmsg() loop, frontend/common/sendv.c.
 * After STARTTLS (c_tls set) the same reads and sends go through the
 * connection's TLS session (tls.c) instead of recv() and sendmsg(): one
 * pointer test per system call is all a plaintext connection pays.
 * The trade-off is in the receive buffer: one recv() brings many
 * pipelined request headers, a system call saved per request, for a copy
 * of small payloads; payloads of 4 KiB or more skip the buffer and go
 * straight into their request's buffer.
 */
#include <errno.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>

#include "nbd-int.h"
#include "sendv.h"

/* 1. Sending. */

bool
nbd_past_deadline(struct nbd_server *s)
{
	uint64_t d = atomic_load(&s->s_deadline);

	return d != 0 && nbd_now_ns() > d;
}

/* Wait until the socket takes data; 0, or ETIMEDOUT at the deadline. */
int
nbd_wait_writable(struct nbd_conn *c)
{
	struct pollfd p = { .fd = c->c_fd, .events = POLLOUT };

	for (;;) {
		if (nbd_past_deadline(c->c_srv))
			return ETIMEDOUT;
		if (poll(&p, 1, 100) > 0) {
			if (p.revents & (POLLERR | POLLHUP | POLLNVAL))
				return EPIPE;
			return 0;
		}
	}
}

static int
wait_cb(void *arg)
{
	return nbd_wait_writable(arg);
}

int
nbd_conn_sendv(struct nbd_conn *c, struct iovec *iov, int iovcnt)
{
	if (c->c_tls != NULL)
		return fe_sendv_all_fn(nbd_tls_sendmsg, c, iov, iovcnt,
		    wait_cb, c);
	return fe_sendv_all(c->c_fd, iov, iovcnt, MSG_DONTWAIT, wait_cb, c);
}

/* 2. Receiving. */

/*
 * A plaintext receive that waits in poll(2), not in recv: a thread
 * asleep in recv on a Unix socket is woken by every write-space event
 * of the socket as well (each time the client takes some of the replies
 * the writer sends), where poll wakes only for data, the end or an
 * error.  On 2 CPUs, 1 MiB reads through a remote backing made the
 * reader wake about 5 times a request so.  A wait of a handshake that
 * its reader watches itself (c_hs_deadline set; nbd_serve_fd) ticks
 * each second, as SO_RCVTIMEO does there: -1 with EAGAIN, for the
 * caller to look at the clock and at shutdown.
 *
 * Before it sleeps, the reader of a client that sent one request since
 * the last wait (c_burst) and has none left in flight (c_nreqs: its
 * reply is sent) tries recv again for c_spin_ns, as QEMU's event loop
 * polls before it blocks (its poll-max-ns is 32 us too): a client that
 * sends its next request as soon as it has the reply finds the reader
 * awake, and the wake-up of a sleeping thread is most of a round trip's
 * time on a virtual CPU.  The wait adapts to what the sleeps show: one
 * that ended within NBD_SPIN_MAX_NS doubles it (from NBD_SPIN_MIN_NS),
 * one that lasted longer ends it, so an idle or a slow client costs no
 * CPU.  A client with more in flight sends bursts, or has requests in
 * the library's workers: spinning then takes CPU that those requests
 * need.
 */
static ssize_t
recv_wait(struct nbd_conn *c, void *buf, size_t n, int flags)
{
	struct pollfd p = { .fd = c->c_fd, .events = POLLIN };
	uint64_t t0 = 0, end = 0, slept;
	ssize_t got;
	bool one = false;
	int r;

	for (;;) {
		got = recv(c->c_fd, buf, n, flags | MSG_DONTWAIT);
		if (got >= 0 || (errno != EAGAIN && errno != EWOULDBLOCK))
			return got;
		if (t0 == 0) {		/* a wait begins: busy or not */
			one = c->c_burst <= 1;
			c->c_burst = 0;
			if (one && c->c_spin_ns > 0) {
				lock(&c->c_lock);
				one = c->c_nreqs == 0;
				unlock(&c->c_lock);
			}
			t0 = nbd_now_ns();
			end = one ? t0 + c->c_spin_ns : t0;
		}
		if (end > t0 && nbd_now_ns() < end)
			continue;
		r = poll(&p, 1, c->c_hs_deadline == UINT64_MAX ? -1 : 1000);
		slept = nbd_now_ns() - t0;
		t0 = 0;
		if (slept > NBD_SPIN_MAX_NS)
			c->c_spin_ns = 0;
		else if (one && c->c_spin_ns < NBD_SPIN_MAX_NS)
			c->c_spin_ns = c->c_spin_ns == 0 ? NBD_SPIN_MIN_NS :
			    c->c_spin_ns * 2;
		if (r == 0) {
			errno = EAGAIN;
			return -1;
		}
	}
}

/* Refill the receive buffer; 0, ECONNRESET at EOF, or errno. */
static int
fill(struct nbd_conn *c)
{
	ssize_t n;

	nbd_out_uncork(c);
	if (c->c_rpos == c->c_rlen)
		c->c_rpos = c->c_rlen = 0;
	else if (c->c_rpos > 0 && c->c_rlen + 4096 > NBD_RBUF_SIZE) {
		memmove(c->c_rbuf, c->c_rbuf + c->c_rpos,
		    c->c_rlen - c->c_rpos);
		c->c_rlen -= c->c_rpos;
		c->c_rpos = 0;
	}
	for (;;) {
		if (c->c_tls != NULL)
			n = nbd_tls_recv(c, c->c_rbuf + c->c_rlen,
			    NBD_RBUF_SIZE - c->c_rlen);
		else
			n = recv_wait(c, c->c_rbuf + c->c_rlen,
			    NBD_RBUF_SIZE - c->c_rlen, 0);
		if (n > 0) {
			c->c_rlen += (size_t)n;
			return 0;
		}
		if (n == 0)
			return ECONNRESET;
		if (errno == EINTR)
			continue;
		if ((errno == EAGAIN || errno == EWOULDBLOCK) &&
		    !atomic_load(&c->c_srv->s_stopping) &&
		    nbd_now_ns() < c->c_hs_deadline)
			continue;	/* SO_RCVTIMEO tick (handshake) */
		return errno == EAGAIN ? ETIMEDOUT : errno;
	}
}

int
nbd_conn_read(struct nbd_conn *c, void *buf, size_t n)
{
	char *p = buf;
	size_t k;
	ssize_t got;
	int error;

	/* From the buffer first. */
	k = c->c_rlen - c->c_rpos;
	if (k > n)
		k = n;
	memcpy(p, c->c_rbuf + c->c_rpos, k);
	c->c_rpos += k;
	p += k;
	n -= k;
	if (n == 0)
		return 0;
	if (n < 4096) {
		while (c->c_rlen - c->c_rpos < n)
			if ((error = fill(c)) != 0)
				return error;
		memcpy(p, c->c_rbuf + c->c_rpos, n);
		c->c_rpos += n;
		return 0;
	}
	/* Large payloads go straight to their buffer. */
	nbd_out_uncork(c);
	while (n > 0) {
		if (c->c_tls != NULL)
			got = nbd_tls_recv(c, p, n);	/* one record */
		else
			got = recv_wait(c, p, n, 0);
		if (got > 0) {
			p += got;
			n -= (size_t)got;
			continue;
		}
		if (got == 0)
			return ECONNRESET;
		if (errno == EINTR || ((errno == EAGAIN ||
		    errno == EWOULDBLOCK) &&
		    !atomic_load(&c->c_srv->s_stopping) &&
		    nbd_now_ns() < c->c_hs_deadline))
			continue;
		return errno == EAGAIN ? ETIMEDOUT : errno;
	}
	return 0;
}

/* Read and throw away n bytes (the payload of a refused WRITE). */
int
nbd_conn_discard(struct nbd_conn *c, uint64_t n)
{
	char buf[4096];
	size_t k;
	int error;

	while (n > 0) {
		k = n > sizeof(buf) ? sizeof(buf) : (size_t)n;
		if ((error = nbd_conn_read(c, buf, k)) != 0)
			return error;
		n -= k;
	}
	return 0;
}
