/*
 * The flush audit of each connection (issue #11): what a client wrote,
 * what it made durable itself (FLUSH, FUA), how much it left unflushed,
 * and how old its oldest unflushed write was at each FLUSH.  A client
 * that leaves with acknowledged writes it never flushed gets one log
 * line naming it and the bytes: the NBD clients (and the servers under
 * them) that never flush are found this way.
 *
 * Counted when a request's reply is queued, under the lock the queue
 * takes anyway (nbd_audit_reply_locked, from nbd_out_push), and for a
 * FLUSH also when it starts: it covers the writes acknowledged
 * before it arrived (nbd_audit_flush_start), and gives them back if it
 * fails.  Whether the unit's cache made them durable by itself in the
 * meantime (destaging) is the unit's audit (rumpblk_cache_stats); this
 * one is what the client did.  Everything is under c_lock; the server
 * keeps the sum of the connections that ended (s_audit_gone).
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "nbd-int.h"
#include "say.h"

static unsigned
bucket(uint64_t ns)
{
	unsigned b = ns == 0 ? 0 : 63 - (unsigned)__builtin_clzll(ns);

	return b < RUMPBLK_LAT_BUCKETS ? b : RUMPBLK_LAT_BUCKETS - 1;
}

void
nbd_audit_flush_start(struct nbd_req *r)
{
	struct nbd_conn *c = r->r_conn;

	lock(&c->c_lock);
	r->r_flbytes = c->c_audit.a_unflushed;
	r->r_floldest = c->c_audit.a_oldest_ns;
	c->c_audit.a_unflushed = 0;
	c->c_audit.a_oldest_ns = 0;
	unlock(&c->c_lock);
}

void
nbd_audit_reply_locked(struct nbd_req *r)
{
	struct nbd_audit *a = &r->r_conn->c_audit;
	uint64_t now;

	switch (r->r_type) {
	case NBD_CMD_WRITE:
	case NBD_CMD_TRIM:
	case NBD_CMD_WRITE_ZEROES:
		if (r->r_failed)
			return;
		a->a_written += r->r_len;
		if (r->r_flags & NBD_CMD_FLAG_FUA) {
			a->a_fua++;
			a->a_durable += r->r_len;
			return;
		}
		if (a->a_unflushed == 0)
			a->a_oldest_ns = nbd_now_ns();
		a->a_unflushed += r->r_len;
		if (a->a_unflushed > a->a_unflushed_max)
			a->a_unflushed_max = a->a_unflushed;
		return;
	case NBD_CMD_FLUSH:
		if (!r->r_failed) {
			now = nbd_now_ns();
			a->a_flushes++;
			a->a_durable += r->r_flbytes;
			if (r->r_flbytes != 0)
				a->a_hist[bucket(now - r->r_floldest)]++;
			return;
		}
		/* Not durable after all: unflushed again. */
		if (r->r_flbytes != 0 && (a->a_unflushed == 0 ||
		    r->r_floldest < a->a_oldest_ns))
			a->a_oldest_ns = r->r_floldest;
		a->a_unflushed += r->r_flbytes;
		return;
	}
}

static void
audit_add(struct nbd_audit *to, const struct nbd_audit *a)
{
	to->a_written += a->a_written;
	to->a_durable += a->a_durable;
	to->a_flushes += a->a_flushes;
	to->a_fua += a->a_fua;
	to->a_unflushed += a->a_unflushed;
	if (a->a_unflushed_max > to->a_unflushed_max)
		to->a_unflushed_max = a->a_unflushed_max;
	for (unsigned i = 0; i < RUMPBLK_LAT_BUCKETS; i++)
		to->a_hist[i] += a->a_hist[i];
}

void
nbd_audit_conn_end(struct nbd_conn *c)
{
	struct nbd_server *s = c->c_srv;
	struct nbd_audit a;

	lock(&c->c_lock);
	a = c->c_audit;
	unlock(&c->c_lock);
	if (a.a_unflushed != 0)
		nbd_log(s, "client %u (%s) left with %" PRIu64 " bytes of "
		    "acknowledged writes it never flushed", c->c_id,
		    c->c_peer, a.a_unflushed);
	lock(&s->s_lock);
	audit_add(&s->s_audit_gone, &a);
	if (a.a_unflushed != 0)
		s->s_left_unflushed++;
	unlock(&s->s_lock);
}

static void
audit_json(FILE *f, const struct nbd_audit *a)
{
	fprintf(f, "\"bytes_written\":%" PRIu64 ",\"bytes_durable\":%" PRIu64
	    ",\"flushes\":%" PRIu64 ",\"fua\":%" PRIu64 ",\"unflushed\":%"
	    PRIu64 ",\"unflushed_max\":%" PRIu64 ",\"flush_age_hist\":[",
	    a->a_written, a->a_durable, a->a_flushes, a->a_fua,
	    a->a_unflushed, a->a_unflushed_max);
	for (unsigned i = 0; i < RUMPBLK_LAT_BUCKETS; i++)
		fprintf(f, "%s%" PRIu64, i ? "," : "", a->a_hist[i]);
	fputc(']', f);
}

void
nbd_server_audit_json(struct nbd_server *s, FILE *f)
{
	struct nbd_audit a;
	struct nbd_conn *c;
	bool first = true;

	fputs("{\"connections\":[", f);
	lock(&s->s_lock);
	for (c = s->s_conns; c != NULL; c = c->c_next) {
		if (c->c_ended)
			continue;
		lock(&c->c_lock);
		a = c->c_audit;
		unlock(&c->c_lock);
		fprintf(f, "%s{\"id\":%u,\"peer\":\"%s\",", first ? "" : ",",
		    c->c_id, c->c_peer);
		if (c->c_exp != NULL) {
			fputs("\"export\":", f);
			fe_json_string(f, c->c_exp->e_name);
			fprintf(f, ",\"unit\":%d,", c->c_exp->e_unit);
		}
		audit_json(f, &a);
		fputc('}', f);
		first = false;
	}
	a = s->s_audit_gone;
	fprintf(f, "],\"ended\":{\"connections\":%u,\"left_unflushed\":%u,",
	    s->s_nended, s->s_left_unflushed);
	unlock(&s->s_lock);
	audit_json(f, &a);
	fputs("}}", f);
}
