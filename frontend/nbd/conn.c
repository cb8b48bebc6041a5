/*
 * One NBD connection: the receive path, request dispatch, replies.
 *
 * Contents:
 *   1. helpers: time, log, the range lock
 *   2. requests: allocation against the in-flight cap, freeing
 *   3. replies: the out queue, socket ownership, the writer thread
 *   4. receiving: the buffered reader
 *   5. dispatch: one NBD request → rumpblk_strategy() calls
 *   6. the connection's life
 *
 * Each aligned data request is exactly one strategy call, made by the
 * reader thread in the order the requests arrived, so seed-mode faults
 * follow the request sequence of a connection.  Requests that are not
 * sector-aligned (only from clients that did not negotiate block sizes)
 * cost more: reads cover whole sectors (still one call), writes and
 * zeroes read their edge sectors and write back under an exclusive
 * range lock.  See nbd-int.h for the threading.
 */
#include <endian.h>
#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "nbd-int.h"

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
	FILE *f = s->s_cfg.log != NULL ? s->s_cfg.log : stderr;
	char msg[512];
	va_list ap;

	/* One line, written whole, whatever other threads log. */
	va_start(ap, fmt);
	(void)vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	fprintf(f, "rumpblk serve: %s\n", msg);
}

static void
lock(pthread_mutex_t *m)
{
	if (pthread_mutex_lock(m) != 0)
		abort();
}

static void
unlock(pthread_mutex_t *m)
{
	if (pthread_mutex_unlock(m) != 0)
		abort();
}

void
nbd_rl_init(struct nbd_rangelock *rl)
{
	pthread_mutex_init(&rl->rl_lock, NULL);
	pthread_cond_init(&rl->rl_cv, NULL);
	rl->rl_shared = rl->rl_excl = NULL;
	rl->rl_waiters = 0;
}

void
nbd_rl_fini(struct nbd_rangelock *rl)
{
	pthread_cond_destroy(&rl->rl_cv);
	pthread_mutex_destroy(&rl->rl_lock);
}

static bool
overlaps(const struct nbd_range *list, uint64_t start, uint64_t end)
{
	for (; list != NULL; list = list->rg_next)
		if (list->rg_start < end && start < list->rg_end)
			return true;
	return false;
}

void
nbd_rl_lock(struct nbd_rangelock *rl, struct nbd_range *rg, uint64_t start,
    uint64_t end, bool excl)
{
	struct nbd_range **head;

	rg->rg_start = start;
	rg->rg_end = end;
	rg->rg_excl = excl;
	lock(&rl->rl_lock);
	while (overlaps(rl->rl_excl, start, end) ||
	    (excl && overlaps(rl->rl_shared, start, end))) {
		rl->rl_waiters++;
		pthread_cond_wait(&rl->rl_cv, &rl->rl_lock);
		rl->rl_waiters--;
	}
	head = excl ? &rl->rl_excl : &rl->rl_shared;
	rg->rg_prev = NULL;
	rg->rg_next = *head;
	if (*head != NULL)
		(*head)->rg_prev = rg;
	*head = rg;
	unlock(&rl->rl_lock);
}

void
nbd_rl_unlock(struct nbd_rangelock *rl, struct nbd_range *rg)
{
	lock(&rl->rl_lock);
	if (rg->rg_prev != NULL)
		rg->rg_prev->rg_next = rg->rg_next;
	else if (rg->rg_excl)
		rl->rl_excl = rg->rg_next;
	else
		rl->rl_shared = rg->rg_next;
	if (rg->rg_next != NULL)
		rg->rg_next->rg_prev = rg->rg_prev;
	/*
	 * Wake whoever waits.  Testing "an exclusive range is held" instead
	 * lost the wake-up of an exclusive locker (a read-modify-write)
	 * waiting for shared ranges, which it has not inserted yet: the
	 * fuzzer found that hang.
	 */
	if (rl->rl_waiters > 0)
		pthread_cond_broadcast(&rl->rl_cv);
	unlock(&rl->rl_lock);
}

/* 2. Requests. */

static void out_uncork(struct nbd_conn *);

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
static struct nbd_req *
req_get(struct nbd_conn *c, size_t bufsize)
{
	struct nbd_server *s = c->c_srv;
	size_t charge = bufsize + NBD_REQ_OVERHEAD;
	struct nbd_req *r, **rp;

	lock(&c->c_lock);
	if (c->c_corked && c->c_nreqs > 0 &&
	    c->c_inflight + charge > s->s_max_inflight) {
		/* We are about to wait for replies we hold: send them. */
		unlock(&c->c_lock);
		out_uncork(c);
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
static void
req_put_locked(struct nbd_conn *c, struct nbd_req *list)
{
	struct nbd_req *r, *next;

	for (r = list; r != NULL; r = next) {
		next = r->r_next;
		c->c_inflight -= r->r_charge;
		c->c_nreqs--;
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

/* 3. Replies. */

static void
reply_simple(struct nbd_req *r, uint32_t error, bool data)
{
	r->r_hdr.s.magic = htobe32(NBD_SIMPLE_REPLY_MAGIC);
	r->r_hdr.s.error = htobe32(error);
	r->r_hdr.s.handle = r->r_handle;	/* kept in wire order */
	r->r_iov[0].iov_base = &r->r_hdr;
	r->r_iov[0].iov_len = sizeof(r->r_hdr.s);
	r->r_iovcnt = 1;
	if (data && error == 0 && r->r_len > 0) {
		r->r_iov[1].iov_base = r->r_data + r->r_skip;
		r->r_iov[1].iov_len = r->r_len;
		r->r_iovcnt = 2;
	}
}

static void
shdr(struct nbd_structured_reply *h, struct nbd_req *r, uint16_t type,
    uint32_t len)
{
	h->magic = htobe32(NBD_STRUCTURED_REPLY_MAGIC);
	h->flags = htobe16(NBD_REPLY_FLAG_DONE);
	h->type = htobe16(type);
	h->handle = r->r_handle;
	h->len = htobe32(len);
}

/* The reply to a request: simple, or structured when negotiated (READ
 * and BLOCK_STATUS; other commands take simple replies either way). */
static void
reply_error(struct nbd_req *r, int errnum)
{
	uint32_t e = nbd_errno_to_nbd(errnum);

	if (e == 0)
		e = NBD_EIO;
	if (r->r_conn->c_structured && (r->r_type == NBD_CMD_READ ||
	    r->r_type == NBD_CMD_BLOCK_STATUS)) {
		shdr(&r->r_hdr.e.h, r, NBD_REPLY_TYPE_ERROR, 6);
		r->r_hdr.e.error = htobe32(e);
		r->r_hdr.e.msglen = 0;
		r->r_iov[0].iov_base = &r->r_hdr;
		r->r_iov[0].iov_len = sizeof(r->r_hdr.e);
		r->r_iovcnt = 1;
	} else
		reply_simple(r, e, false);
}

static void
reply_read(struct nbd_req *r)
{
	if (!r->r_conn->c_structured) {
		reply_simple(r, 0, true);
		return;
	}
	if (r->r_len == 0) {
		shdr(&r->r_hdr.d.h, r, NBD_REPLY_TYPE_NONE, 0);
		r->r_iov[0].iov_base = &r->r_hdr;
		r->r_iov[0].iov_len = sizeof(r->r_hdr.d.h);
		r->r_iovcnt = 1;
		return;
	}
	shdr(&r->r_hdr.d.h, r, NBD_REPLY_TYPE_OFFSET_DATA, 8 + r->r_len);
	r->r_hdr.d.off = htobe64(r->r_off);
	r->r_iov[0].iov_base = &r->r_hdr;
	r->r_iov[0].iov_len = sizeof(r->r_hdr.d);
	r->r_iov[1].iov_base = r->r_data + r->r_skip;
	r->r_iov[1].iov_len = r->r_len;
	r->r_iovcnt = 2;
}

/*
 * Send as much of list as the socket takes without waiting.  Returns the
 * requests fully sent in *donep (in order) and the rest (the first
 * possibly partly sent) as the result; *errorp is set for a dead socket.
 */
#define NBD_SEND_IOV	64
static struct nbd_req *
send_some(struct nbd_conn *c, struct nbd_req *list, struct nbd_req **donep,
    int *errorp, bool *blocked)
{
	struct iovec iov[NBD_SEND_IOV];
	struct msghdr mh;
	struct nbd_req *r, **donetail = donep;
	size_t skip, total;
	ssize_t n;
	int cnt, i;

	*errorp = 0;
	*blocked = false;
	while (list != NULL) {
		cnt = 0;
		total = 0;
		for (r = list; r != NULL && cnt + r->r_iovcnt <= NBD_SEND_IOV;
		    r = r->r_next) {
			skip = r->r_sent;
			for (i = 0; i < r->r_iovcnt; i++) {
				if (skip >= r->r_iov[i].iov_len) {
					skip -= r->r_iov[i].iov_len;
					continue;
				}
				iov[cnt].iov_base =
				    (char *)r->r_iov[i].iov_base + skip;
				iov[cnt].iov_len = r->r_iov[i].iov_len - skip;
				total += iov[cnt].iov_len;
				cnt++;
				skip = 0;
			}
		}
		memset(&mh, 0, sizeof(mh));
		mh.msg_iov = iov;
		mh.msg_iovlen = (size_t)cnt;
		n = sendmsg(c->c_fd, &mh, MSG_DONTWAIT | MSG_NOSIGNAL);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				*blocked = true;
			else
				*errorp = errno;
			break;
		}
		/* Retire what went out. */
		while (list != NULL && n > 0) {
			size_t left = 0;

			for (i = 0; i < list->r_iovcnt; i++)
				left += list->r_iov[i].iov_len;
			left -= list->r_sent;
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
		if (total > 0 && list != NULL && list->r_sent > 0) {
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
	req_put_locked(c, list);
}

static void
mark_dead_locked(struct nbd_conn *c, int error)
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
		rest = send_some(c, list, &done, &error, &blocked);
		lock(&c->c_lock);
		req_put_locked(c, done);
		outq_requeue_locked(c, rest);
		if (error != 0) {
			mark_dead_locked(c, error);
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

/* A reply is ready: queue it and send, unless another thread owns. */
static void
out_push(struct nbd_req *r)
{
	struct nbd_conn *c = r->r_conn;

	lock(&c->c_lock);
	if (c->c_dead) {
		r->r_next = NULL;
		req_put_locked(c, r);
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
	out_drain(c);
}

/* The reader takes the socket for a batch of requests. */
static void
out_cork(struct nbd_conn *c)
{
	if (c->c_corked)
		return;
	lock(&c->c_lock);
	if (!c->c_owner) {
		c->c_owner = true;
		c->c_corked = true;
	}
	unlock(&c->c_lock);
}

/* The reader is about to wait: send what the batch produced. */
static void
out_uncork(struct nbd_conn *c)
{
	if (!c->c_corked)
		return;
	c->c_corked = false;
	out_drain(c);
}

static bool
past_deadline(struct nbd_server *s)
{
	uint64_t d = atomic_load(&s->s_deadline);

	return d != 0 && nbd_now_ns() > d;
}

/* Wait until the socket takes data; 0, or ETIMEDOUT at the deadline. */
static int
wait_writable(struct nbd_conn *c)
{
	struct pollfd p = { .fd = c->c_fd, .events = POLLOUT };

	for (;;) {
		if (past_deadline(c->c_srv))
			return ETIMEDOUT;
		if (poll(&p, 1, 100) > 0) {
			if (p.revents & (POLLERR | POLLHUP | POLLNVAL))
				return EPIPE;
			return 0;
		}
	}
}

static void *
writer_main(void *arg)
{
	struct nbd_conn *c = arg;
	struct nbd_req *list, *done, *rest;
	bool blocked;
	int error;

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
				req_put_locked(c, done);
				unlock(&c->c_lock);
				done = NULL;
				if ((error = wait_writable(c)) != 0)
					break;
				rest = send_some(c, rest, &done, &error,
				    &blocked);
			}
			lock(&c->c_lock);
			req_put_locked(c, done);
			outq_requeue_locked(c, rest);
			if (error != 0)
				mark_dead_locked(c, error);
		}
		if (c->c_dead)
			drop_all_locked(c);
		c->c_writer_wanted = false;
		c->c_owner = false;
	}
	unlock(&c->c_lock);
	return NULL;
}

int
nbd_conn_sendv(struct nbd_conn *c, struct iovec *iov, int iovcnt)
{
	struct msghdr mh;
	ssize_t n;
	int error;

	while (iovcnt > 0) {
		memset(&mh, 0, sizeof(mh));
		mh.msg_iov = iov;
		mh.msg_iovlen = (size_t)iovcnt;
		n = sendmsg(c->c_fd, &mh, MSG_DONTWAIT | MSG_NOSIGNAL);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN && errno != EWOULDBLOCK)
				return errno;
			if ((error = wait_writable(c)) != 0)
				return error;
			continue;
		}
		while (iovcnt > 0 && (size_t)n >= iov->iov_len) {
			n -= (ssize_t)iov->iov_len;
			iov++;
			iovcnt--;
		}
		if (iovcnt > 0) {
			iov->iov_base = (char *)iov->iov_base + n;
			iov->iov_len -= (size_t)n;
		}
	}
	return 0;
}

/* 4. Receiving. */

/* Refill the receive buffer; 0, ECONNRESET at EOF, or errno. */
static int
fill(struct nbd_conn *c)
{
	ssize_t n;

	out_uncork(c);
	if (c->c_rpos == c->c_rlen)
		c->c_rpos = c->c_rlen = 0;
	else if (c->c_rpos > 0 && c->c_rlen + 4096 > NBD_RBUF_SIZE) {
		memmove(c->c_rbuf, c->c_rbuf + c->c_rpos,
		    c->c_rlen - c->c_rpos);
		c->c_rlen -= c->c_rpos;
		c->c_rpos = 0;
	}
	for (;;) {
		n = recv(c->c_fd, c->c_rbuf + c->c_rlen,
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
	out_uncork(c);
	while (n > 0) {
		got = recv(c->c_fd, p, n, MSG_WAITALL);
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
static int
discard(struct nbd_conn *c, uint64_t n)
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

/* 5. Dispatch. */

/* Extents asked of the driver per BLOCK_STATUS, and the buffer: the
 * driver's struct rumpblk_extents, then our descriptors (2 × u32 each). */
#define NBD_BS_MAX	64
#define BS_EXT_SIZE	(sizeof(struct rumpblk_extents) + \
			    NBD_BS_MAX * sizeof(struct rumpblk_extent))
#define BS_BUFSIZE	(BS_EXT_SIZE + NBD_BS_MAX * 8)

/*
 * The driver described [a, ...) in extents; the client asked for
 * [r_off, r_off + r_len).  Clip to the request, merge equal neighbours,
 * map the flags to base:allocation.  An extent query the host cannot
 * answer reports everything as allocated data, which proto.md allows.
 */
#define ALLFL	(NBD_STATE_HOLE | NBD_STATE_ZERO)

/* Append a descriptor, merging with an equal neighbour. */
static void
bs_emit(uint32_t *d, uint32_t *np, uint64_t len, uint32_t fl)
{
	uint32_t n = *np;

	if (len == 0)
		return;
	if (n > 0 && be32toh(d[2 * n - 1]) == fl) {
		d[2 * n - 2] = htobe32(be32toh(d[2 * n - 2]) + (uint32_t)len);
		return;
	}
	d[2 * n] = htobe32((uint32_t)len);
	d[2 * n + 1] = htobe32(fl);
	*np = n + 1;
}

static void
reply_block_status(struct nbd_req *r, int error)
{
	struct nbd_conn *c = r->r_conn;
	uint64_t sec = c->c_obey_bs ? c->c_srv->s_secsize : 1;
	struct rumpblk_extents *ex =
	    (struct rumpblk_extents *)(void *)r->r_data;
	uint32_t *d = (uint32_t *)(void *)(r->r_data + BS_EXT_SIZE);
	uint64_t pos = r->r_off - r->r_skip, end = r->r_off + r->r_len;
	uint64_t s0, e0, b, cur = r->r_off;
	uint32_t i, n = 0, fl, pend = ALLFL;

	if (error == EOPNOTSUPP) {
		error = 0;
		ex->ex_count = 0;
	}
	if (error != 0) {
		reply_error(r, error);
		return;
	}
	/*
	 * Clip to the request.  A client held to block sizes gets
	 * descriptors in whole sectors (proto.md: multiples of the minimum
	 * block size); a sector shared by extents gets the flags they all
	 * have, which is never more than is true.
	 */
	for (i = 0; i < ex->ex_count && pos < end; i++) {
		s0 = pos;
		e0 = pos + ex->ex_ext[i].e_length;
		pos = e0;
		if (s0 < r->r_off)
			s0 = r->r_off;
		if (e0 > end)
			e0 = end;
		if (e0 <= s0)
			continue;
		fl = (ex->ex_ext[i].e_flags & RUMPBLK_EXTENT_HOLE ?
		    NBD_STATE_HOLE : 0) | (ex->ex_ext[i].e_flags &
		    RUMPBLK_EXTENT_ZERO ? NBD_STATE_ZERO : 0);
		if (cur < s0) {
			/* A sector begun by earlier extents. */
			b = (s0 + sec - 1) & ~(sec - 1);
			if (b > end)
				b = end;
			pend &= fl;
			if (e0 < b)
				continue;
			bs_emit(d, &n, b - cur, pend);
			cur = b;
			pend = ALLFL;
		}
		b = e0 == end ? end : e0 & ~(sec - 1);
		if (b > cur) {
			bs_emit(d, &n, b - cur, fl);
			cur = b;
		}
		if (b < e0)
			pend = fl;
	}
	if (pos > end)
		pos = end;
	if (cur < pos) {
		/* The rest of a sector the driver described only in part:
		 * nothing is known about the rest of it, so flags 0. */
		b = (pos + sec - 1) & ~(sec - 1);
		bs_emit(d, &n, (b < end ? b : end) - cur,
		    pos == end ? pend : 0);
	}
	if (n == 0)
		bs_emit(d, &n, r->r_len, 0);
	if (r->r_flags & NBD_CMD_FLAG_REQ_ONE)
		n = 1;
	shdr(&r->r_hdr.b.h, r, NBD_REPLY_TYPE_BLOCK_STATUS, 4 + 8 * n);
	r->r_hdr.b.ctx = htobe32(1);
	r->r_iov[0].iov_base = &r->r_hdr;
	r->r_iov[0].iov_len = sizeof(r->r_hdr.b);
	r->r_iov[1].iov_base = d;
	r->r_iov[1].iov_len = 8 * n;
	r->r_iovcnt = 2;
}

static void
req_done(struct rumpblk_buf *bp)
{
	struct nbd_req *r = bp->b_private;
	struct nbd_conn *c = r->r_conn;
	struct nbd_server *s = c->c_srv;
	int error = bp->b_error;

	if (r->r_locked) {
		nbd_rl_unlock(&s->s_rl, &r->r_range);
		r->r_locked = false;
	}
	switch (r->r_type) {
	case NBD_CMD_READ:
		if (error == 0 && bp->b_bcount - bp->b_resid < r->r_skip +
		    r->r_len)
			error = EIO;	/* the unit shrank under us */
		if (error == 0)
			reply_read(r);
		else
			reply_error(r, error);
		break;
	case NBD_CMD_BLOCK_STATUS:
		reply_block_status(r, error);
		break;
	case NBD_CMD_TRIM:
		/* A hint: a host that cannot punch holes ignores it. */
		if (error == EOPNOTSUPP)
			error = 0;
		/* FALLTHROUGH */
	default:
		if (error == 0)
			reply_simple(r, 0, false);
		else
			reply_error(r, error);
		break;
	}
	out_push(r);
}

/* Start the strategy call of a request; req_done() completes it. */
static void
req_submit(struct nbd_req *r, int flags, uint64_t off, size_t len, void *data)
{
	struct nbd_server *s = r->r_conn->c_srv;
	struct rumpblk_buf *bp = &r->r_buf;

	memset(bp, 0, sizeof(*bp));
	bp->b_unit = s->s_cfg.unit;
	bp->b_flags = flags;
	bp->b_blkno = (int64_t)(off >> RUMPBLK_DEV_BSHIFT);
	bp->b_bcount = len;
	bp->b_data = data;
	bp->b_private = r;
	bp->b_iodone = req_done;
	rumpblk_strategy(s->s_cfg.rb, bp);
}

/* One synchronous strategy call on an aligned range (unaligned paths). */
static int
sync_io(struct nbd_conn *c, int flags, uint64_t off, size_t len, void *data)
{
	struct nbd_server *s = c->c_srv;
	struct rumpblk_buf b;

	memset(&b, 0, sizeof(b));
	b.b_unit = s->s_cfg.unit;
	b.b_flags = flags;
	b.b_blkno = (int64_t)(off >> RUMPBLK_DEV_BSHIFT);
	b.b_bcount = len;
	b.b_data = data;
	rumpblk_strategy(s->s_cfg.rb, &b);
	return rumpblk_biowait(&b);
}

static void
finish_now(struct nbd_req *r, int error)
{
	if (error == 0)
		reply_simple(r, 0, false);
	else
		reply_error(r, error);
	out_push(r);
}

/*
 * An unaligned WRITE (src != NULL) or WRITE_ZEROES (src == NULL) from a
 * client that did not negotiate block sizes: read the edge sectors,
 * merge, write the covering range back, all under an exclusive range
 * lock.  Synchronous, in the reader thread: rare, and simple.
 */
static int
rmw(struct nbd_conn *c, uint64_t off, uint32_t len, const char *src,
    int wflags)
{
	struct nbd_server *s = c->c_srv;
	uint64_t sec = s->s_secsize, a = off & ~(sec - 1);
	uint64_t e = (off + len + sec - 1) & ~(sec - 1);
	struct nbd_range rg;
	char *buf;
	int error = 0;

	nbd_rl_lock(&s->s_rl, &rg, a, e, true);
	if (src == NULL && e - a > 4 * sec) {
		/* Zeroes over a large range: the edges by read-modify-write,
		 * the aligned middle with one ZERO. */
		uint64_t ma = (off + sec - 1) & ~(sec - 1);
		uint64_t me = (off + len) & ~(sec - 1);

		if ((buf = aligned_alloc(4096, (size_t)((sec + 4095) &
		    ~(uint64_t)4095))) == NULL) {
			error = ENOMEM;
			goto out;
		}
		if (ma != off) {
			error = sync_io(c, RUMPBLK_B_READ, a, sec, buf);
			if (error == 0) {
				memset(buf + (off - a), 0, sec - (off - a));
				error = sync_io(c, wflags, a, sec, buf);
			}
		}
		if (error == 0 && me > ma)
			error = sync_io(c, (wflags & ~RUMPBLK_B_WRITE) |
			    RUMPBLK_B_ZERO, ma, me - ma, NULL);
		if (error == 0 && me != off + len) {
			error = sync_io(c, RUMPBLK_B_READ, me, sec, buf);
			if (error == 0) {
				memset(buf, 0, off + len - me);
				error = sync_io(c, wflags, me, sec, buf);
			}
		}
		free(buf);
		goto out;
	}
	if ((buf = aligned_alloc(4096, (size_t)((e - a + 4095) &
	    ~(uint64_t)4095))) == NULL) {
		error = ENOMEM;
		goto out;
	}
	if (off != a)
		error = sync_io(c, RUMPBLK_B_READ, a, sec, buf);
	if (error == 0 && off + len != e && (e - sec != a || off == a))
		error = sync_io(c, RUMPBLK_B_READ, e - sec, sec,
		    buf + (e - sec - a));
	if (error == 0) {
		if (src != NULL)
			memcpy(buf + (off - a), src, len);
		else
			memset(buf + (off - a), 0, len);
		error = sync_io(c, wflags, a, e - a, buf);
	}
	free(buf);
out:
	nbd_rl_unlock(&s->s_rl, &rg);
	return error;
}

static bool
aligned(const struct nbd_server *s, uint64_t off, uint64_t len)
{
	return ((off | len) & (s->s_secsize - 1)) == 0;
}

/* Flags each command accepts (FUA is accepted on every command). */
static uint16_t
allowed_flags(const struct nbd_conn *c, uint16_t type)
{
	uint16_t f = NBD_CMD_FLAG_FUA;

	switch (type) {
	case NBD_CMD_READ:
		if (c->c_tflags & NBD_FLAG_SEND_DF)
			f |= NBD_CMD_FLAG_DF;
		break;
	case NBD_CMD_WRITE_ZEROES:
		f |= NBD_CMD_FLAG_NO_HOLE;
		break;
	case NBD_CMD_BLOCK_STATUS:
		f |= NBD_CMD_FLAG_REQ_ONE;
		break;
	}
	return f;
}

/*
 * req_get() for the request rq (its type, flags and offset already
 * decoded by the caller), holding len bytes of the client's range.
 */
static inline struct nbd_req *
req_start(struct nbd_conn *c, size_t bufsize, const struct nbd_request *rq,
    uint16_t type, uint16_t flags, uint64_t off, uint32_t len)
{
	struct nbd_req *r;

	if ((r = req_get(c, bufsize)) == NULL)
		return NULL;
	r->r_handle = rq->handle;
	r->r_type = type;
	r->r_flags = flags;
	r->r_off = off;
	r->r_len = len;
	return r;
}

/*
 * Handle one request whose header was just read.  Returns 0 to go on,
 * ECONNRESET for DISC or a vanished client, another errno to hang up.
 */
static int
dispatch(struct nbd_conn *c, const struct nbd_request *rq)
{
	struct nbd_server *s = c->c_srv;
	uint16_t type = be16toh(rq->type), flags = be16toh(rq->flags);
	uint64_t off = be64toh(rq->offset), sec = s->s_secsize;
	uint32_t len = be32toh(rq->len);
	uint64_t a, e;
	struct nbd_req *r;
	int error = 0, bflags, fua;
	bool bad_flags, past_end, misaligned, too_big;

	if (type == NBD_CMD_DISC)
		return ECONNRESET;
	bad_flags = (flags & ~allowed_flags(c, type)) != 0;
	past_end = off > s->s_size || len > s->s_size - off;
	misaligned = c->c_obey_bs && !aligned(s, off, len);
	/*
	 * proto.md holds WRITE_ZEROES to the maximum block size too, but
	 * nbdcopy zeroes the holes of a sparse source in longer requests,
	 * and nothing is gained by refusing them: only payloads are
	 * limited.
	 */
	too_big = len > NBD_MAX_PAYLOAD && (type == NBD_CMD_READ ||
	    type == NBD_CMD_WRITE);
	fua = (flags & NBD_CMD_FLAG_FUA) && !s->s_ro ? RUMPBLK_B_FUA : 0;
	a = off & ~(sec - 1);
	e = past_end ? a : (off + len + sec - 1) & ~(sec - 1);

	/* Errors found before any I/O. */
	if (type == NBD_CMD_WRITE) {
		if (s->s_ro)
			error = EPERM;
		else if (bad_flags || misaligned || too_big)
			error = EINVAL;
		else if (past_end)
			error = ENOSPC;
	} else if (type == NBD_CMD_READ) {
		if (bad_flags || misaligned || too_big || past_end)
			error = EINVAL;
	} else if (type == NBD_CMD_FLUSH) {
		if (!(c->c_tflags & NBD_FLAG_SEND_FLUSH) || bad_flags)
			error = EINVAL;
	} else if (type == NBD_CMD_TRIM || type == NBD_CMD_WRITE_ZEROES) {
		if (s->s_ro)
			error = EPERM;
		else if (bad_flags || misaligned || too_big ||
		    (type == NBD_CMD_TRIM && !s->s_can_trim))
			error = EINVAL;
		else if (past_end)
			error = type == NBD_CMD_TRIM ? EINVAL : ENOSPC;
	} else if (type == NBD_CMD_BLOCK_STATUS) {
		if (!c->c_structured || !c->c_meta_base || bad_flags ||
		    misaligned || past_end || len == 0)
			error = EINVAL;
	} else
		error = EINVAL;		/* CACHE and unknown commands */

	if (error != 0 || len == 0) {
		int rerror;

		if (type == NBD_CMD_WRITE && (rerror = discard(c, len)) != 0)
			return rerror;
		if ((r = req_start(c, 0, rq, type, flags, off, 0)) == NULL)
			return ENOMEM;
		if (error != 0)
			reply_error(r, error);
		else if (type == NBD_CMD_READ)
			reply_read(r);
		else if (type == NBD_CMD_FLUSH)
			goto flush;
		else
			reply_simple(r, 0, false);
		out_push(r);
		return 0;
	}

	switch (type) {
	case NBD_CMD_READ:
		if ((r = req_start(c, e - a, rq, type, flags, off,
		    len)) == NULL)
			return ENOMEM;
		r->r_skip = off - a;
		bflags = RUMPBLK_B_READ;
		/* Big reads (and every read of a slow backend) go to the
		 * pool, so that the reader goes on; small ones run here. */
		if (s->s_async_reads || e - a > NBD_INLINE_READ_MAX)
			bflags |= RUMPBLK_B_ASYNC;
		req_submit(r, bflags, a, e - a, r->r_data);
		return 0;

	case NBD_CMD_WRITE:
		if ((r = req_start(c, len, rq, type, flags, off, len)) == NULL)
			return ENOMEM;
		if ((error = nbd_conn_read(c, r->r_data, len)) != 0) {
			lock(&c->c_lock);
			req_put_locked(c, r);
			unlock(&c->c_lock);
			return error;
		}
		if (!aligned(s, off, len)) {
			error = rmw(c, off, len, r->r_data,
			    RUMPBLK_B_WRITE | RUMPBLK_B_ASYNC | fua);
			finish_now(r, error);
			return 0;
		}
		nbd_rl_lock(&s->s_rl, &r->r_range, off, off + len, false);
		r->r_locked = true;
		req_submit(r, RUMPBLK_B_WRITE | RUMPBLK_B_ASYNC | fua, off, len,
		    r->r_data);
		return 0;

	case NBD_CMD_FLUSH:
		if ((r = req_start(c, 0, rq, type, flags, off, 0)) == NULL)
			return ENOMEM;
flush:
		req_submit(r, RUMPBLK_B_FLUSH | RUMPBLK_B_ASYNC, 0, 0, NULL);
		return 0;

	case NBD_CMD_TRIM:
		if ((r = req_start(c, 0, rq, type, flags, off, len)) == NULL)
			return ENOMEM;
		/* proto.md lets a server trim less: round inward. */
		a = (off + sec - 1) & ~(sec - 1);
		e = (off + len) & ~(sec - 1);
		if (e <= a) {
			finish_now(r, 0);
			return 0;
		}
		nbd_rl_lock(&s->s_rl, &r->r_range, a, e, false);
		r->r_locked = true;
		req_submit(r, RUMPBLK_B_TRIM | RUMPBLK_B_ASYNC | fua, a, e - a,
		    NULL);
		return 0;

	case NBD_CMD_WRITE_ZEROES:
		if ((r = req_start(c, 0, rq, type, flags, off, len)) == NULL)
			return ENOMEM;
		bflags = RUMPBLK_B_ZERO | RUMPBLK_B_ASYNC | fua |
		    (flags & NBD_CMD_FLAG_NO_HOLE ? RUMPBLK_B_NOHOLE : 0);
		if (!aligned(s, off, len)) {
			error = rmw(c, off, len, NULL, (bflags &
			    ~(RUMPBLK_B_ZERO | RUMPBLK_B_NOHOLE)) |
			    RUMPBLK_B_WRITE);
			finish_now(r, error);
			return 0;
		}
		nbd_rl_lock(&s->s_rl, &r->r_range, off, off + len, false);
		r->r_locked = true;
		req_submit(r, bflags, off, len, NULL);
		return 0;

	case NBD_CMD_BLOCK_STATUS: {
		uint32_t n = flags & NBD_CMD_FLAG_REQ_ONE ? 1 : NBD_BS_MAX;
		struct rumpblk_extents *ex;

		if ((r = req_start(c, BS_BUFSIZE, rq, type, flags, off,
		    len)) == NULL)
			return ENOMEM;
		r->r_skip = off - a;
		ex = (struct rumpblk_extents *)(void *)r->r_data;
		ex->ex_max = n;
		ex->ex_count = 0;
		req_submit(r, RUMPBLK_B_EXTENTS, a, e - a, ex);
		return 0;
	}
	}
	abort();
}

/* 6. The connection's life. */

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

void
nbd_conn_serve(struct nbd_conn *c)
{
	struct nbd_server *s = c->c_srv;
	struct nbd_request rq;
	unsigned batch = 0;
	int error;

	/* The handshake must finish in bounded time; a receive timeout
	 * lets the reader look at the clock and at shutdown. */
	c->c_hs_deadline = nbd_now_ns() + NBD_HANDSHAKE_SECS * 1000000000ull;
	set_rcvtimeo(c->c_fd, 1);
	if ((error = nbd_handshake(c)) != 0)
		goto hangup;
	c->c_hs_deadline = UINT64_MAX;
	set_rcvtimeo(c->c_fd, 0);
	if (pthread_create(&c->c_writer, NULL, writer_main, c) != 0) {
		nbd_log(s, "cannot start a writer thread; dropping a client");
		goto hangup;
	}
	c->c_has_writer = true;

	for (;;) {
		if (atomic_load(&s->s_stopping))
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
		/* Batch the replies of a burst of requests, but not of an
		 * endless one. */
		if (++batch == NBD_CORK_MAX) {
			out_uncork(c);
			batch = 0;
		}
		out_cork(c);
		if ((error = dispatch(c, &rq)) != 0)
			break;
	}
	out_uncork(c);
	if (error != 0 && error != ECONNRESET) {
		/* A protocol violation: hard disconnect, drop replies. */
		lock(&c->c_lock);
		mark_dead_locked(c, 0);
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
hangup:
	shutdown(c->c_fd, SHUT_RDWR);
	free(c->c_rbuf);
	c->c_rbuf = NULL;
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
	close(c->c_fd);
	pthread_cond_destroy(&c->c_cv);
	pthread_mutex_destroy(&c->c_lock);
	free(c);
}
