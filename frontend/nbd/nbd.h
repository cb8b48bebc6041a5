/*
 * rumpblk's NBD server: one export (a rumpblk unit), or several units of
 * one instance each under its name, served to any number of clients over
 * Unix and TCP sockets, by the fixed newstyle protocol.
 *
 * This is the interface the rumpblk(1) command (cli/serve.c), the tests
 * and the fuzz targets use.  The server is a caller of the public
 * librumpblk API only: every data request becomes rumpblk_strategy()
 * calls on the unit, so fault injection and counters apply to NBD
 * clients exactly as to in-process callers.
 *
 * Threads: nbd_server_stop() may be called from any thread (and from a
 * signal handler); every other call belongs to the thread that created
 * the server.  Each connection runs in its own reader thread (plus a
 * writer thread that only wakes for clients that read their replies
 * slowly).
 */
#ifndef RUMPBLK_NBD_H
#define RUMPBLK_NBD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <rumpblk/rumpblk.h>

/* Payload limit of one READ or WRITE, and the advertised maximum block
 * size (DESIGN.md §6). */
#define NBD_MAX_PAYLOAD		(32u << 20)

/* Admission defaults (struct nbd_server_config), and "no time limit". */
#define NBD_DEFAULT_MAX_HANDSHAKES	1024
#define NBD_DEFAULT_HANDSHAKE_MS	10000
#define NBD_NO_TIMEOUT			0xffffffffu

struct nbd_tls;

/* One more export: a unit of the same instance under a name. */
struct nbd_export_config {
	int		unit;
	const char	*name;		/* not "", unique */
	const char	*description;	/* NBD_INFO_DESCRIPTION, or NULL */
	bool		read_only;	/* refuse writes even if the unit can */
};

struct nbd_server_config {
	struct rumpblk	*rb;		/* the instance; the caller owns it */
	int		unit;		/* the exported unit */
	const char	*name;		/* export name LIST reports ("") */
	const char	*description;	/* NBD_INFO_DESCRIPTION, or NULL */
	bool		read_only;	/* refuse writes even if the unit can */
	/*
	 * More exports (nmore of them; 0: none).  With none, a client gets
	 * the unit above whatever export name it asks for (DESIGN.md §6).
	 * With some, it picks one by name: "" and the name above are the
	 * unit above, each of these is its own, and a name that is none of
	 * them is refused (NBD_REP_ERR_UNKNOWN to INFO and GO; EXPORT_NAME,
	 * which has no error reply, ends the connection).  LIST lists them
	 * all.  Each export has its own range lock and read-only state; a
	 * unit reset drops the connections of its export only.
	 */
	const struct nbd_export_config *more;
	unsigned	nmore;
	unsigned	max_connections; /* clients in transmission; 0: 64 */
	/*
	 * Admission (server.c): connections still in the handshake are
	 * bounded apart from max_connections, and past the bound the
	 * oldest of them is closed; each must end its handshake within
	 * the timeout (milliseconds, in all) or is closed.
	 */
	unsigned	max_handshakes;	/* 0: NBD_DEFAULT_MAX_HANDSHAKES */
	unsigned	handshake_timeout_ms; /* 0: 10 s; NBD_NO_TIMEOUT none */
	size_t		max_inflight;	/* bytes in flight per connection;
					   0: one maximum request */
	unsigned	shutdown_timeout_ms; /* give up on slow readers */
	FILE		*log;		/* messages; NULL: stderr */
	/*
	 * Advertise a minimum block size of 1 and serve every client byte-
	 * granular (read-modify-write of unaligned edges), also one that
	 * asked for block sizes.  Not for "rumpblk serve" (DESIGN.md §6:
	 * the minimum is the sector size); for crash-check's exports, which
	 * nbdfuse turns into a file that tools write two bytes of (e2fsck
	 * does), and libnbd would refuse those against a sector minimum.
	 */
	bool		byte_granular;
	/*
	 * Copy every READ's bytes into the server's buffer before sending
	 * them.  By default a plaintext connection's READ asks the driver
	 * for a loan (RUMPBLK_B_LOAN): where the unit lends (mmap backend,
	 * no layers) the reply is sent straight from the driver's memory,
	 * the kernel's copy into the socket the only one.  For comparison,
	 * and for an image that may be truncated under the server (a lent
	 * read of a truncated page ends the connection; a copied one
	 * answers EIO when the instance turns SIGBUS into EIO).
	 */
	bool		copy_reads;
	/*
	 * TLS (tls.h): NULL for none, STARTTLS refused; else its mode and
	 * credentials, the caller's, alive until nbd_server_destroy().
	 */
	const struct nbd_tls *tls;
};

struct nbd_server;

/*
 * Create a server for its units.  The units must stay registered, and
 * the instance alive, until nbd_server_destroy().  The server subscribes
 * to the instance's events: when a unit is reset (rumpblk_unit_reset(),
 * RUMPBLK_EVENT_RESET), every connection to it is dropped at once, its
 * requests in flight completing in the library and their replies
 * discarded; clients that connect afterwards are served as usual, and
 * the connections of other units, and those still negotiating, are left
 * alone.  Errors: the rumpblk_unitinfo() error, EINVAL (an extra export
 * named "" or twice), ENOMEM, the pipe or eventfd error.
 */
int	nbd_server_create(const struct nbd_server_config *,
	    struct nbd_server **);

/*
 * Listen on a Unix socket at path (the file must not exist; it is
 * removed by nbd_server_destroy).  0 or errno.
 */
int	nbd_server_listen_unix(struct nbd_server *, const char *path);

/*
 * Listen on TCP at "ADDR:PORT" ("127.0.0.1:10809", "[::1]:0",
 * "localhost:0").  PORT 0 picks a free port; *portp (may be NULL)
 * receives the port really bound.  0, or EINVAL for a malformed address
 * (message on the log), or the socket error.
 */
int	nbd_server_listen_tcp(struct nbd_server *, const char *addrport,
	    int *portp);

/*
 * Accept and serve clients until nbd_server_stop(); then stop reading
 * requests, finish those in flight, give up on clients that do not read
 * their replies within the shutdown timeout, and return once every
 * connection has ended.  extra_fd, if not -1, is polled too: when it
 * becomes readable the server stops as if nbd_server_stop() had been
 * called (the CLI passes a signalfd).  Returns 0.
 */
int	nbd_server_run(struct nbd_server *, int extra_fd);

/*
 * The flush audit as one JSON object: {"connections":[{"id","peer",
 * "export","unit","bytes_written","bytes_durable","flushes","fua","unflushed",
 * "unflushed_max","flush_age_hist"},...],"ended":{"connections",
 * "left_unflushed", and the same counters summed}}.  Any thread.
 */
void	nbd_server_audit_json(struct nbd_server *, FILE *);

/* Make nbd_server_run() return.  Async-signal-safe. */
void	nbd_server_stop(struct nbd_server *);

/*
 * Serve one connected socket (or socketpair end) in the calling thread:
 * the handshake, then requests until the client leaves.  The descriptor
 * is closed.  For tests and fuzz targets; returns 0.
 */
int	nbd_serve_fd(struct nbd_server *, int fd);

/* End the event subscription, close the listeners (removing Unix socket
 * files) and free.  Not from an event callback. */
void	nbd_server_destroy(struct nbd_server *);

/*
 * errno → NBD error value, through the one table below
 * (frontend/nbd/errno.c).  0 maps to 0; an errno that is not in the
 * table maps to NBD_EIO.
 */
struct nbd_errno_row {
	int		errnum;		/* errno value */
	uint32_t	nbd;		/* NBD_E* */
};
extern const struct nbd_errno_row nbd_errno_table[];
extern const size_t nbd_errno_table_len;
uint32_t nbd_errno_to_nbd(int errnum);

#endif /* RUMPBLK_NBD_H */
