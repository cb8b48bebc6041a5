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

#endif
