/*
 * Request dispatch: one NBD request whose header was just read becomes
 * rumpblk_strategy() calls; their completion builds the reply.  Block
 * status descriptors and the read-modify-write of unaligned requests
 * live here too.
 *
 * Contents:
 *   1. block status: the driver's extents as base:allocation descriptors
 *   2. strategy calls and their completion
 *   3. unaligned requests: read-modify-write
 *   4. dispatch: checks, then one request → strategy calls
 *
 * It does not read the socket beyond a request's payload (wire.c) nor
 * send anything (reply.c).  Each aligned data request is exactly one
 * strategy call, made by the reader thread in the order the requests
 * arrived, so seed-mode faults follow the request sequence of a
 * connection.  Requests that are not sector-aligned (only from clients
 * that did not negotiate block sizes) cost more: reads cover whole
 * sectors (still one call), writes and zeroes read their edge sectors and
 * write back under an exclusive range lock, synchronously in the reader.
 */
#include <endian.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "nbd-int.h"

/* 1. Block status. */

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
	uint64_t sec = c->c_obey_bs ? c->c_exp->e_secsize : 1;
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
		nbd_reply_error(r, error);
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
	nbd_reply_shdr(&r->r_hdr.b.h, r, NBD_REPLY_TYPE_BLOCK_STATUS,
	    4 + 8 * n);
	r->r_hdr.b.ctx = htobe32(1);
	r->r_iov[0].iov_base = &r->r_hdr;
	r->r_iov[0].iov_len = sizeof(r->r_hdr.b);
	r->r_iov[1].iov_base = d;
	r->r_iov[1].iov_len = 8 * n;
	r->r_iovcnt = 2;
}

/* 2. Strategy calls and their completion. */

static void
req_done(struct rumpblk_buf *bp)
{
	struct nbd_req *r = bp->b_private;
	struct nbd_conn *c = r->r_conn;
	int error = bp->b_error;

	if (r->r_locked) {
		fe_rl_unlock(&c->c_exp->e_rl, &r->r_range);
		r->r_locked = false;
	}
	switch (r->r_type) {
	case NBD_CMD_READ:
		if (error == 0 && bp->b_bcount - bp->b_resid < r->r_skip +
		    r->r_len)
			error = EIO;	/* the unit shrank under us */
		if (error == 0)
			nbd_reply_read(r);
		else
			nbd_reply_error(r, error);
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
			nbd_reply_simple(r, 0, false);
		else
			nbd_reply_error(r, error);
		break;
	}
	nbd_out_push(r);
}

/* Start the strategy call of a request; req_done() completes it. */
static void
req_submit(struct nbd_req *r, int flags, uint64_t off, size_t len, void *data)
{
	struct nbd_conn *c = r->r_conn;
	struct nbd_server *s = c->c_srv;
	struct rumpblk_buf *bp = &r->r_buf;

	memset(bp, 0, sizeof(*bp));
	bp->b_unit = c->c_exp->e_unit;
	bp->b_flags = flags;
	bp->b_blkno = (int64_t)(off >> RUMPBLK_DEV_BSHIFT);
	bp->b_bcount = len;
	bp->b_data = data;
	bp->b_private = r;
	bp->b_iodone = req_done;
	if (!nbd_submit_enter(c)) {
		/* Dropped by a unit reset: its reply is discarded. */
		bp->b_error = ECONNRESET;
		req_done(bp);
		return;
	}
	/* r may be done, and reused, once strategy returns: not r_conn. */
	rumpblk_strategy(s->s_cfg.rb, bp);
	nbd_submit_leave(c);
}

/* One synchronous strategy call on an aligned range (unaligned paths). */
static int
sync_io(struct nbd_conn *c, int flags, uint64_t off, size_t len, void *data)
{
	struct nbd_server *s = c->c_srv;
	struct rumpblk_buf b;

	memset(&b, 0, sizeof(b));
	b.b_unit = c->c_exp->e_unit;
	b.b_flags = flags;
	b.b_blkno = (int64_t)(off >> RUMPBLK_DEV_BSHIFT);
	b.b_bcount = len;
	b.b_data = data;
	if (!nbd_submit_enter(c))
		return ECONNRESET;
	rumpblk_strategy(s->s_cfg.rb, &b);
	nbd_submit_leave(c);
	return rumpblk_biowait(&b);
}

static void
finish_now(struct nbd_req *r, int error)
{
	if (error == 0)
		nbd_reply_simple(r, 0, false);
	else
		nbd_reply_error(r, error);
	nbd_out_push(r);
}

/* 3. Unaligned requests: read-modify-write. */

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
	struct nbd_export *x = c->c_exp;
	uint64_t sec = x->e_secsize, a = off & ~(sec - 1);
	uint64_t e = (off + len + sec - 1) & ~(sec - 1);
	struct fe_range rg;
	char *buf;
	int error = 0;

	fe_rl_lock(&x->e_rl, &rg, a, e, true);
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
	fe_rl_unlock(&x->e_rl, &rg);
	return error;
}

/* 4. Dispatch. */

static bool
aligned(const struct nbd_export *x, uint64_t off, uint64_t len)
{
	return ((off | len) & (x->e_secsize - 1)) == 0;
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
 * nbd_req_get() for the request rq (its type, flags and offset already
 * decoded by the caller), holding len bytes of the client's range.
 */
static inline struct nbd_req *
req_start(struct nbd_conn *c, size_t bufsize, const struct nbd_request *rq,
    uint16_t type, uint16_t flags, uint64_t off, uint32_t len)
{
	struct nbd_req *r;

	if ((r = nbd_req_get(c, bufsize)) == NULL)
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
int
nbd_dispatch(struct nbd_conn *c, const struct nbd_request *rq)
{
	struct nbd_server *s = c->c_srv;
	struct nbd_export *x = c->c_exp;
	uint16_t type = be16toh(rq->type), flags = be16toh(rq->flags);
	uint64_t off = be64toh(rq->offset), sec = x->e_secsize;
	uint32_t len = be32toh(rq->len);
	uint64_t a, e;
	struct nbd_req *r;
	int error = 0, bflags, fua;
	bool bad_flags, past_end, misaligned, too_big;

	if (type == NBD_CMD_DISC)
		return ECONNRESET;
	bad_flags = (flags & ~allowed_flags(c, type)) != 0;
	past_end = off > x->e_size || len > x->e_size - off;
	misaligned = c->c_obey_bs && !aligned(x, off, len);
	/*
	 * proto.md holds WRITE_ZEROES to the maximum block size too, but
	 * nbdcopy zeroes the holes of a sparse source in longer requests,
	 * and nothing is gained by refusing them: only payloads are
	 * limited.
	 */
	too_big = len > NBD_MAX_PAYLOAD && (type == NBD_CMD_READ ||
	    type == NBD_CMD_WRITE);
	fua = (flags & NBD_CMD_FLAG_FUA) && !x->e_ro ? RUMPBLK_B_FUA : 0;
	a = off & ~(sec - 1);
	e = past_end ? a : (off + len + sec - 1) & ~(sec - 1);

	/* Errors found before any I/O. */
	if (type == NBD_CMD_WRITE) {
		if (x->e_ro)
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
		if (x->e_ro)
			error = EPERM;
		else if (bad_flags || misaligned || too_big ||
		    (type == NBD_CMD_TRIM && !x->e_can_trim))
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

		if (type == NBD_CMD_WRITE &&
		    (rerror = nbd_conn_discard(c, len)) != 0)
			return rerror;
		if ((r = req_start(c, 0, rq, type, flags, off, 0)) == NULL)
			return ENOMEM;
		if (error != 0)
			nbd_reply_error(r, error);
		else if (type == NBD_CMD_READ)
			nbd_reply_read(r);
		else if (type == NBD_CMD_FLUSH)
			goto flush;
		else
			nbd_reply_simple(r, 0, false);
		nbd_out_push(r);
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
		if (x->e_async_reads || e - a > NBD_INLINE_READ_MAX)
			bflags |= RUMPBLK_B_ASYNC;
		/* Sent from the driver's memory where it lends (nbd.h,
		 * copy_reads); GnuTLS would read it in userspace, where a
		 * truncated image's page is a SIGBUS, not an EFAULT. */
		if (!s->s_cfg.copy_reads && c->c_tls == NULL)
			bflags |= RUMPBLK_B_LOAN;
		/* One that will be spliced may be lent as a pipe (reply.c,
		 * "Spliced replies"), when it is exactly its bytes. */
		if ((bflags & RUMPBLK_B_LOAN) && a == off && e - a == len &&
		    len >= NBD_SPLICE_MIN)
			bflags |= RUMPBLK_B_LOAN_FD;
		req_submit(r, bflags, a, e - a, r->r_data);
		return 0;

	case NBD_CMD_WRITE:
		if ((r = req_start(c, len, rq, type, flags, off, len)) == NULL)
			return ENOMEM;
		if ((error = nbd_conn_read(c, r->r_data, len)) != 0) {
			lock(&c->c_lock);
			nbd_req_put_locked(c, r);
			unlock(&c->c_lock);
			return error;
		}
		if (!aligned(x, off, len)) {
			error = rmw(c, off, len, r->r_data,
			    RUMPBLK_B_WRITE | RUMPBLK_B_ASYNC | fua);
			finish_now(r, error);
			return 0;
		}
		fe_rl_lock(&x->e_rl, &r->r_range, off, off + len, false);
		r->r_locked = true;
		req_submit(r, RUMPBLK_B_WRITE | RUMPBLK_B_ASYNC | fua, off, len,
		    r->r_data);
		return 0;

	case NBD_CMD_FLUSH:
		if ((r = req_start(c, 0, rq, type, flags, off, 0)) == NULL)
			return ENOMEM;
flush:
		nbd_audit_flush_start(r);
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
		fe_rl_lock(&x->e_rl, &r->r_range, a, e, false);
		r->r_locked = true;
		req_submit(r, RUMPBLK_B_TRIM | RUMPBLK_B_ASYNC | fua, a, e - a,
		    NULL);
		return 0;

	case NBD_CMD_WRITE_ZEROES:
		if ((r = req_start(c, 0, rq, type, flags, off, len)) == NULL)
			return ENOMEM;
		bflags = RUMPBLK_B_ZERO | RUMPBLK_B_ASYNC | fua |
		    (flags & NBD_CMD_FLAG_NO_HOLE ? RUMPBLK_B_NOHOLE : 0);
		if (!aligned(x, off, len)) {
			error = rmw(c, off, len, NULL, (bflags &
			    ~(RUMPBLK_B_ZERO | RUMPBLK_B_NOHOLE)) |
			    RUMPBLK_B_WRITE);
			finish_now(r, error);
			return 0;
		}
		fe_rl_lock(&x->e_rl, &r->r_range, off, off + len, false);
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
