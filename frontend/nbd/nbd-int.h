/*
 * Private declarations of the NBD server, one section per file:
 *   server.c     listeners, the accept loop, shutdown
 *   conn.c       a connection's life: handshake, the request loop
 *   handshake.c  the fixed newstyle handshake
 *   wire.c       the socket as bytes: buffered reads, blocking sends
 *   tls.c        STARTTLS's session: TLS handshake, records (tls.h)
 *   dispatch.c   one request → strategy calls; unaligned requests
 *   reply.c      requests in flight, building and sending replies
 *   (frontend/common/rangelock.c: the range lock over the export)
 *   errno.c      errno → NBD error (declared in nbd.h)
 *
 * Threading (designed for a 2-core machine shared with the client):
 *   - One reader thread per connection does the handshake, then parses
 *     requests from a receive buffer (one recv() brings many pipelined
 *     requests) and submits each as rumpblk_strategy() calls in request
 *     order.  Small reads are synchronous buffers: on a page-cached image
 *     the pread or memcpy runs right there, with no handoff.  Writes,
 *     flushes, trims and zeroes are RUMPBLK_B_ASYNC buffers that the
 *     library's worker pool runs while the reader goes on reading.
 *   - Replies are sent by whichever thread completes a request, with
 *     non-blocking sendmsg() of header + data (no copy).  One thread at a
 *     time owns the socket for writing (c_owner); others queue their
 *     reply and leave, and the owner sends the queue, many replies per
 *     sendmsg().  The reader owns the socket while it works through a
 *     batch of requests ("corked") and flushes the batch before it
 *     blocks.  If the socket is full, ownership passes to the
 *     connection's writer thread, the only thread that ever waits for a
 *     client to read: a slow reader stalls its own connection only, and
 *     never a library worker that other connections need.
 *   - TLS (tls.c): after STARTTLS every byte goes through the
 *     connection's GnuTLS session, which takes one receiving thread and
 *     one sending thread at a time: the reader receives, and the socket
 *     ownership above (c_owner) is what keeps senders to one.
 *   - Bytes in flight per connection are capped (c_inflight); the reader
 *     stops reading requests while over the cap, so memory is bounded by
 *     max_connections × (max_inflight + 4 MiB of cached request buffers
 *     + the 256 KiB receive buffer), plus max_handshakes × (the receive
 *     buffer + 64 KiB of option data) for clients still negotiating:
 *     admission (server.c) keeps those apart from clients in
 *     transmission.
 *   - A unit reset drops connections from whichever thread raised the
 *     event (server.c's callback, nbd_conn_reset): it sets c_reset and
 *     shuts the socket down, and each connection's own threads then end
 *     it as they would for a client that left.  No request of a dropped
 *     connection reaches the library after the event: the reader counts
 *     itself in c_submitting, then checks c_reset, then calls strategy;
 *     the callback sets c_reset, then waits until c_submitting is 0 (both
 *     sequentially consistent, so one of the two sees the other).  A
 *     power cut raises the event while its unit holds every request, so
 *     strategy returns at once and the wait is short; a request caught
 *     that way is failed by the cut, and one that saw c_reset is failed
 *     here.  Without this a write parsed before the reset could land on
 *     the post-crash medium.
 */
#ifndef RUMPBLK_NBD_INT_H
#define RUMPBLK_NBD_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/uio.h>

#include "nbd.h"
#include "rangelock.h"
#include "nbd-proto.h"

#define NBD_MAX_LISTENERS	8
#define NBD_RBUF_SIZE		(256u << 10)	/* receive buffer */
#define NBD_MAX_OPTIONS		256	/* per connection, then hang up */
#define NBD_MAX_OPTLEN		(64u << 10)	/* option data, then hang up */
#define NBD_INLINE_READ_MAX	(128u << 10)	/* reads done in the reader */
#define NBD_REQ_OVERHEAD	512	/* charged per request in flight */
#define NBD_CORK_MAX		64	/* replies held back per batch */
#define NBD_CORK_BYTES		(256u << 10)	/* read bytes per batch */
#define NBD_SPLICE_MIN		(64u << 10)	/* lent replies spliced */
#define NBD_SNDBUF		(4u << 20)	/* a Unix client's SO_SNDBUF */
#define NBD_SPIN_MIN_NS		4000u	/* the reader's first busy-wait */
#define NBD_SPIN_MAX_NS		32000u	/* and its longest (wire.c) */

struct nbd_conn;

/* Where a connection stands with admission (server.c). */
enum nbd_adm {
	NBD_ADM_HANDSHAKE = 0,	/* negotiating */
	NBD_ADM_CLOSED,		/* closed by the deadline or for a newer one */
	NBD_ADM_ADMITTED,	/* counted in transmission (s_ntrans) */
};

/* A log line kind's rate limit (server.c); s_lock. */
struct nbd_lograte {
	uint64_t	lr_sec;		/* the second counted */
	unsigned	lr_lines;	/* lines logged in it */
	unsigned	lr_quiet;	/* lines not logged since the last */
};

/* A connection's flush audit (audit.c); the server's sum of ended ones. */
struct nbd_audit {
	uint64_t	a_written;	/* bytes acknowledged: write, trim, zero */
	uint64_t	a_durable;	/* ... made durable by FLUSH or FUA */
	uint64_t	a_flushes;	/* FLUSHes that succeeded */
	uint64_t	a_fua;		/* FUA writes */
	uint64_t	a_unflushed;	/* acknowledged since the last FLUSH */
	uint64_t	a_unflushed_max;
	uint64_t	a_oldest_ns;	/* when the oldest of those was, or 0 */
	/* per FLUSH: the age of its oldest write, [2^i, 2^(i+1)) ns */
	uint64_t	a_hist[RUMPBLK_LAT_BUCKETS];
};

/* One export (struct nbd_export_config, or the config's own unit). */
struct nbd_export {
	char		*e_name;	/* ( */
	char		*e_desc;	/* ( may be NULL */
	int		e_unit;		/* ( */
	struct rumpblk_unitinfo e_ui;	/* ( */
	uint64_t	e_size;		/* ( bytes */
	unsigned	e_secsize;	/* ( bytes */
	bool		e_ro;		/* ( read-only export */
	bool		e_can_trim;	/* ( */
	bool		e_async_reads;	/* ( every read through the pool */
	struct fe_rangelock e_rl;
};

/*
 * Locks: s = s_lock, a = atomic, ( = set at create / before run.
 * Lock order: s_lock before any connection's c_lock (the reset event
 * takes both).
 */
struct nbd_server {
	pthread_mutex_t	s_lock;
	pthread_cond_t	s_cv;		/* s: a connection ended */
	struct nbd_server_config s_cfg;	/* ( strings copied below */
	struct nbd_export *s_exp;	/* ( [0]: the config's unit */
	unsigned	s_nexp;		/* ( */
	bool		s_bytegran;	/* ( cfg->byte_granular */
	size_t		s_max_inflight;	/* ( */
	int		s_lfd[NBD_MAX_LISTENERS]; /* ( listeners */
	char		*s_lpath[NBD_MAX_LISTENERS]; /* ( Unix paths */
	int		s_nlfd;		/* ( */
	int		s_stoppipe[2];	/* ( nbd_server_stop writes */
	int		s_wakefd;	/* ( eventfd: a connection ended */
	int		s_evid;		/* ( the event subscription */
	_Atomic bool	s_stopping;	/* a */
	_Atomic uint64_t s_deadline;	/* a: CLOCK_MONOTONIC ns, 0 none */
	struct nbd_conn	*s_conns;	/* s: live and ended connections,
					   and those of nbd_serve_fd */
	unsigned	s_nconns;	/* s: live ones */
	/* Admission (server.c): handshakes apart from transmission. */
	uint64_t	s_hs_timeout_ns; /* ( a handshake's time; 0 none */
	struct nbd_conn	*s_hs_head;	/* s: handshakes, oldest first */
	struct nbd_conn	**s_hs_tail;	/* s */
	unsigned	s_nhs;		/* s: how many */
	unsigned	s_ntrans;	/* s: admitted to transmission */
	struct nbd_lograte s_lr_timeout, s_lr_evict, s_lr_refuse; /* s */
	unsigned	s_nextid;	/* s: ids of connections */
	unsigned	s_nended;	/* s: connections that ended */
	unsigned	s_left_unflushed; /* s: ... with writes never flushed */
	struct nbd_audit s_audit_gone;	/* s: their audits, summed */
};

/* One request and its reply. */
struct nbd_req {
	struct rumpblk_buf r_buf;	/* b_private = this */
	struct nbd_conn	*r_conn;
	uint64_t	r_handle;
	uint64_t	r_off;		/* bytes, as the client asked */
	uint32_t	r_len;
	uint16_t	r_type;
	uint16_t	r_flags;
	char		*r_data;	/* data buffer, or NULL */
	size_t		r_cap;		/* bytes at r_data */
	size_t		r_skip;		/* client's bytes start here */
	size_t		r_charge;	/* bytes charged to c_inflight */
	struct fe_range r_range;
	bool		r_locked;	/* r_range is held */
	bool		r_failed;	/* its reply is an error */
	uint64_t	r_flbytes;	/* FLUSH: the bytes it covers */
	uint64_t	r_floldest;	/* FLUSH: their oldest's time */
	/* The reply: r_iov[0..r_iovcnt) from r_sent on. */
	union {
		struct nbd_simple_reply s;
		struct {
			struct nbd_structured_reply h;
			uint64_t	off;
		} __attribute__((packed)) d;
		struct {
			struct nbd_structured_reply h;
			uint32_t	error;
			uint16_t	msglen;
		} __attribute__((packed)) e;
		struct {
			struct nbd_structured_reply h;
			uint32_t	ctx;
		} __attribute__((packed)) b;
	} r_hdr;
	struct iovec	r_iov[2];
	int		r_iovcnt;
	size_t		r_sent;		/* bytes of the reply already sent */
	/*
	 * A READ whose lent bytes go out with sendfile(2) from the host
	 * file, or with splice(2) from a pipe (r_sfoff RUMPBLK_LOAN_PIPE;
	 * reply.c, "Spliced replies"): r_iov[1] is their length; -1: r_iov
	 * is sent as it is.
	 */
	int		r_sffd;
	uint64_t	r_sfoff;	/* the bytes of r_iov[1], in r_sffd */
	struct nbd_req	*r_next;	/* out queue / free list */
};

/*
 * Locks: c = c_lock, R = reader thread only, ( = set before the reader
 * starts, h = set by the handshake (reader) before any request, s = the
 * server's s_lock, a = atomic, o = the thread that owns the socket for
 * sending (c_owner; the reader during the handshake).
 */
struct nbd_conn {
	struct nbd_server *c_srv;	/* ( */
	/* The export it asked for: s, and h (set at admission, before any
	 * request; NULL while it negotiates). */
	struct nbd_export *c_exp;
	int		c_fd;		/* ( */
	bool		c_is_tcp;	/* ( */
	bool		c_nonblock;	/* R: the socket does not block,
					 * set before the first request */
	pthread_t	c_reader;	/* ( */
	pthread_t	c_writer;	/* ( */
	bool		c_has_reader;	/* ( a thread of its own */
	bool		c_has_writer;	/* R */
	/* Negotiated. */
	bool		c_structured;	/* h */
	bool		c_obey_bs;	/* h: asked for NBD_INFO_BLOCK_SIZE */
	bool		c_meta_base;	/* h: base:allocation selected */
	bool		c_no_zeroes;	/* h */
	uint16_t	c_tflags;	/* h */
	unsigned	c_nopts;	/* R */
	uint64_t	c_hs_deadline;	/* R: handshake ends by then (ns) */
	/* TLS (tls.c), after STARTTLS; NULL: plaintext. */
	struct gnutls_session_int *c_tls; /* h */
	char		*c_tls_buf;	/* o: a record's gather buffer */
	_Atomic bool	c_tls_logged;	/* a: its one TLS error is logged */
	/* Receive buffer. */
	char		*c_rbuf;	/* R */
	size_t		c_rpos;		/* R: next byte to parse */
	size_t		c_rlen;		/* R: bytes in the buffer */
	uint64_t	c_spin_ns;	/* R: busy-wait before poll (wire.c) */
	unsigned	c_burst;	/* R: requests since the last wait */
	/* Replies and accounting. */
	pthread_mutex_t	c_lock;
	pthread_cond_t	c_cv;		/* c: writer work; space in flight */
	struct nbd_req	*c_outq;	/* c: replies to send, in order */
	struct nbd_req	**c_outtail;	/* c */
	bool		c_owner;	/* c: a thread is sending */
	bool		c_corked;	/* R: the reader is that thread */
	bool		c_plugged;	/* R: the reader is plugged
					 * (rumpblk_plug) for a burst */
	bool		c_writer_wanted; /* c: ownership passed to writer */
	bool		c_writer_stop;	/* c */
	bool		c_dead;		/* c: replies cannot be sent */
	_Atomic unsigned c_submitting;	/* a: the reader is in strategy */
	_Atomic bool	c_reset;	/* a: the unit was reset: parse no
					   more requests */
	size_t		c_inflight;	/* c: bytes charged */
	unsigned	c_nreqs;	/* c: requests alive */
	bool		c_reader_waits;	/* c: reader waits on c_cv */
	struct nbd_req	*c_free;	/* c: cached requests */
	unsigned	c_nfree;	/* c */
	size_t		c_free_bytes;	/* c: buffer bytes of c_free */
	struct nbd_audit c_audit;	/* c */
	unsigned	c_id;		/* ( the server's count of clients */
	char		c_peer[64];	/* ( "unix" or ADDR:PORT */
	/* Admission (server.c). */
	uint64_t	c_hs_expire;	/* ( deadline of the handshake (ns) */
	enum nbd_adm	c_adm;		/* s */
	struct nbd_conn	*c_hs_next;	/* s: the server's handshake queue */
	struct nbd_conn	**c_hs_prevp;	/* s: NULL when not on it */
	/* Server list. */
	bool		c_ended;	/* s */
	struct nbd_conn	*c_next;	/* s */
};

/* Every file: a mutex that fails is a broken invariant. */
static inline void
lock(pthread_mutex_t *m)
{
	if (pthread_mutex_lock(m) != 0)
		abort();
}

static inline void
unlock(pthread_mutex_t *m)
{
	if (pthread_mutex_unlock(m) != 0)
		abort();
}

/* server.c */
/*
 * Admit a connection whose client asked to start transmission (GO,
 * EXPORT_NAME) of export e: true, and it is e's (c_exp), counts
 * against max_connections from now on and is no longer under the
 * handshake's deadline; or false (logged)
 * when max_connections clients are in transmission already, or it was
 * closed for its deadline or a newer handshake.  Again true once
 * admitted.  Reader thread.
 */
bool	nbd_conn_admit(struct nbd_conn *, struct nbd_export *);
/*
 * The export a client names (len bytes, not NUL-ended): with one export
 * that one, whatever the name; else "" or the first's name for the
 * first, each other by its name, and NULL for any other name.
 */
struct nbd_export *nbd_export_find(struct nbd_server *, const char *name,
	    size_t len);
/* Transmission flags an export advertises (structured replies
 * negotiated or not). */
uint16_t nbd_export_tflags(const struct nbd_export *, bool structured);

/* conn.c */
/* CLOCK_MONOTONIC, in nanoseconds. */
uint64_t nbd_now_ns(void);
/* One line "rumpblk serve: MESSAGE" on the server's log, written whole. */
void	nbd_log(struct nbd_server *, const char *fmt, ...)
	    __attribute__((format(printf, 2, 3)));
/* A connection on the socket fd, not served yet; NULL when memory is
 * short (fd stays the caller's). */
struct nbd_conn *nbd_conn_new(struct nbd_server *, int fd, bool tcp);
/* The whole life of a connection: handshake, requests, teardown.  The
 * connection's memory (but not the struct) is freed at the end. */
void	nbd_conn_serve(struct nbd_conn *);
/* Free a connection whose nbd_conn_serve() returned, closing its
 * socket. */
void	nbd_conn_free(struct nbd_conn *);
/*
 * Drop a connection now, from any thread (the unit was reset): no more
 * requests are parsed, not even those already buffered; replies still
 * queued and those of requests in flight are dropped; the socket is
 * shut down, which wakes its reader and writer.  Requests in flight
 * complete in the library as always, and the reader ends the connection
 * once they have.  Waits for nothing.  The caller holds s_lock, which
 * keeps the connection from being freed.
 */
void	nbd_conn_reset(struct nbd_conn *);
/*
 * After nbd_conn_reset of every connection: wait (bounded) until no
 * reader of a reset connection is inside rumpblk_strategy, but for the
 * calling thread's own.  s_lock held.
 */
void	nbd_conn_reset_fence(struct nbd_conn *);
/* Around each strategy call of the reader (dispatch.c): false, and no
 * call, if the connection was reset. */
bool	nbd_submit_enter(struct nbd_conn *);
void	nbd_submit_leave(struct nbd_conn *);

/* wire.c */
/* Read exactly n bytes (through the receive buffer); 0 or errno
 * (ECONNRESET for EOF). */
int	nbd_conn_read(struct nbd_conn *, void *, size_t n);
/* Read and throw away n bytes (the payload of a refused WRITE); 0 or
 * errno. */
int	nbd_conn_discard(struct nbd_conn *, uint64_t n);
/* Send everything, waiting as long as the client is alive and the
 * shutdown deadline has not passed; 0 or errno.  iov is used up. */
int	nbd_conn_sendv(struct nbd_conn *, struct iovec *, int iovcnt);
/* Wait until the socket takes data: 0, EPIPE when it is dead, or
 * ETIMEDOUT past the shutdown deadline. */
int	nbd_wait_writable(struct nbd_conn *);

/* reply.c */
/*
 * A request with a data buffer of at least bufsize bytes (page-aligned),
 * charged to the connection's bytes in flight.  Waits while the
 * connection is over its cap (sending the corked replies first).  NULL
 * when memory is short.  Reader thread only.
 */
struct nbd_req *nbd_req_get(struct nbd_conn *, size_t bufsize);
/* Release a list of requests whose replies are sent or dropped (kept
 * for reuse within limits); c_lock held. */
void	nbd_req_put_locked(struct nbd_conn *, struct nbd_req *list);
/* Build a simple reply; with data and no error, the payload of a READ
 * (r_len bytes from r_skip) follows the header. */
void	nbd_reply_simple(struct nbd_req *, uint32_t error, bool data);
/* A structured reply header of the request, flagged DONE; len is the
 * payload's length in bytes. */
void	nbd_reply_shdr(struct nbd_structured_reply *, struct nbd_req *,
	    uint16_t type, uint32_t len);
/* Build the error reply of errnum (never success): structured for READ
 * and BLOCK_STATUS when negotiated, simple otherwise. */
void	nbd_reply_error(struct nbd_req *, int errnum);
/* Build the reply of a READ that succeeded. */
void	nbd_reply_read(struct nbd_req *);
/* Past the shutdown deadline (nbd_server_run's end)?  Any thread. */
bool	nbd_past_deadline(struct nbd_server *);
/* A reply is built: queue it and send it, unless another thread owns
 * the socket.  The request is released once sent or dropped.  Any
 * thread. */
void	nbd_out_push(struct nbd_req *);
/* The reader takes the socket for a batch of requests (cork) and sends
 * what the batch produced before it waits (uncork).  Reader only. */
void	nbd_out_cork(struct nbd_conn *);
void	nbd_out_uncork(struct nbd_conn *);
/* The socket can carry no more replies: drop those queued, shut the
 * socket down so that every thread blocked on it wakes.  error (0 for
 * none) is logged unless the client just left.  c_lock held. */
void	nbd_mark_dead_locked(struct nbd_conn *, int error);
/* The writer thread (arg: the connection): sends the out queue whenever
 * ownership of the socket passes to it, until c_writer_stop. */
void	*nbd_writer_main(void *);

/* dispatch.c */
/* Handle one request whose header was just read.  0 to go on,
 * ECONNRESET for DISC or a vanished client, another errno to hang up.
 * Reader thread only. */
int	nbd_dispatch(struct nbd_conn *, const struct nbd_request *);

/* audit.c */
/* A FLUSH starts: it covers what the connection left unflushed. */
void	nbd_audit_flush_start(struct nbd_req *);
/* A request's reply is built (r_failed says how); c_lock held. */
void	nbd_audit_reply_locked(struct nbd_req *);
/* A connection ended: log it if it left writes unflushed, sum it. */
void	nbd_audit_conn_end(struct nbd_conn *);

/* tls.c (and tls.h for the credentials) */
/*
 * After NBD_REP_ACK to STARTTLS: the TLS handshake on the socket,
 * bounded by the handshake's deadline.  0 with c_tls set (every byte
 * from now on goes through it), or an errno to hang up (logged once,
 * with the peer and GnuTLS's reason).  Reader, during the handshake.
 */
int	nbd_tls_start(struct nbd_conn *);
/* recv(2) on the session: bytes (at most one record's), 0 when the
 * client left, or -1 with errno (EAGAIN: the receive timeout ticked;
 * EPROTO: a TLS error, logged).  Reader. */
ssize_t	nbd_tls_recv(struct nbd_conn *, void *, size_t);
/* fe_sendmsg()'s contract on the session (an fe_send_fn; arg is the
 * connection): never waits.  The socket's owner only. */
int	nbd_tls_sendmsg(void *, const struct iovec *, int iovcnt,
	    size_t *sentp);
/* Send close_notify, waiting 1 s at most.  The last thread to send. */
void	nbd_tls_bye(struct nbd_conn *);
/* Free the session (none is fine); no thread of the connection is
 * left. */
void	nbd_tls_conn_free(struct nbd_conn *);

/* handshake.c: 0 when transmission may start, or an errno to hang up
 * (the client aborted, misbehaved or left). */
int	nbd_handshake(struct nbd_conn *);

#endif /* RUMPBLK_NBD_INT_H */
