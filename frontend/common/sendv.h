/*
 * The one sendmsg() loop of the front ends and the CLI: the NBD server's
 * replies and handshake (frontend/nbd) and the control socket
 * (cli/control.c) send through it.  See sendv.c.
 */
#ifndef RUMPBLK_FE_SENDV_H
#define RUMPBLK_FE_SENDV_H

#include <stddef.h>
#include <sys/uio.h>

/*
 * One sendmsg() of iov[0..iovcnt) on the socket fd, with MSG_NOSIGNAL
 * and flags (MSG_DONTWAIT, ...), again if a signal interrupts it.  0
 * with *sentp set to the bytes the socket took, which may be fewer than
 * asked; or an errno: EAGAIN (or EWOULDBLOCK) when a non-blocking
 * socket is full or a send timeout expired, EPIPE or ECONNRESET when
 * the peer is gone.  iov is not changed.  Threads: any; one sender per
 * socket at a time.
 */
int	fe_sendmsg(int fd, struct iovec *iov, int iovcnt, int flags,
	    size_t *sentp);

/*
 * Send all of iov[0..iovcnt) on fd with fe_sendmsg(), using up iov (its
 * entries are advanced past what was sent).  When the socket is full,
 * wait(arg) is called: it returns 0 to try again, or the errno to give
 * up with.  With wait NULL, a full socket ends the send with EAGAIN.
 * 0 once everything is sent, or an errno.
 */
int	fe_sendv_all(int fd, struct iovec *iov, int iovcnt, int flags,
	    int (*wait)(void *), void *arg);

/*
 * A sender other than sendmsg() on a socket (the NBD server's TLS
 * sessions, frontend/nbd/tls.c), with fe_sendmsg()'s contract: one try
 * at iov[0..iovcnt), not waiting; 0 with *sentp the bytes taken (maybe
 * fewer than asked, maybe 0 only for an empty iov); EAGAIN when nothing
 * could be taken now; another errno when the peer is gone.  iov is not
 * changed.
 */
typedef int fe_send_fn(void *arg, const struct iovec *iov, int iovcnt,
    size_t *sentp);

/*
 * fe_sendv_all() through send(sarg, ...) instead of sendmsg(): the same
 * loop, iov used up the same way, wait(warg) called when the sender says
 * EAGAIN.
 */
int	fe_sendv_all_fn(fe_send_fn *send, void *sarg, struct iovec *iov,
	    int iovcnt, int (*wait)(void *), void *warg);

#endif
