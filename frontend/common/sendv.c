/*
 * The one sendmsg() loop of the tree's front ends: the NBD server sends
 * its replies (a batch of iovecs, without waiting) and its handshake
 * (everything, waiting for room) through it, and the CLI's control
 * socket its answers (everything, on a blocking socket).  The same loop
 * also drives a sender other than sendmsg() (fe_sendv_all_fn): the NBD
 * server's TLS sessions, whose sends keep fe_sendmsg()'s contract.
 *
 * It is not a buffered writer and has no policy of its own: it never
 * polls, and how long a full socket is waited for is the caller's wait
 * callback (the NBD server's stops at the shutdown deadline; the control
 * socket has none and relies on SO_SNDTIMEO).  The trade-off: that
 * indirect call costs only when a socket is full, and in exchange one
 * loop serves blocking and non-blocking callers alike.  It needs only
 * libc, so the CLI links it without linking the NBD server.
 */
#include <errno.h>
#include <string.h>
#include <sys/socket.h>

#include "sendv.h"

int
fe_sendmsg(int fd, struct iovec *iov, int iovcnt, int flags, size_t *sentp)
{
	struct msghdr mh;
	ssize_t n;

	*sentp = 0;
	memset(&mh, 0, sizeof(mh));
	mh.msg_iov = iov;
	mh.msg_iovlen = (size_t)iovcnt;
	while ((n = sendmsg(fd, &mh, flags | MSG_NOSIGNAL)) < 0)
		if (errno != EINTR)
			return errno;
	*sentp = (size_t)n;
	return 0;
}

int
fe_sendv_all_fn(fe_send_fn *send, void *sarg, struct iovec *iov,
    int iovcnt, int (*wait)(void *), void *warg)
{
	size_t n;
	int error;

	while (iovcnt > 0) {
		if ((error = send(sarg, iov, iovcnt, &n)) != 0) {
			if (error != EAGAIN && error != EWOULDBLOCK)
				return error;
			if (wait == NULL)
				return EAGAIN;
			if ((error = wait(warg)) != 0)
				return error;
			continue;
		}
		while (iovcnt > 0 && n >= iov->iov_len) {
			n -= iov->iov_len;
			iov++;
			iovcnt--;
		}
		if (iovcnt > 0) {
			iov->iov_base = (char *)iov->iov_base + n;
			iov->iov_len -= n;
		}
	}
	return 0;
}

/* fe_sendmsg() as an fe_send_fn, for fe_sendv_all(). */
struct sock {
	int	fd;
	int	flags;
};

static int
sock_send(void *arg, const struct iovec *iov, int iovcnt, size_t *sentp)
{
	struct sock *so = arg;

	return fe_sendmsg(so->fd, (struct iovec *)iov, iovcnt, so->flags,
	    sentp);
}

int
fe_sendv_all(int fd, struct iovec *iov, int iovcnt, int flags,
    int (*wait)(void *), void *arg)
{
	struct sock so = { .fd = fd, .flags = flags };

	return fe_sendv_all_fn(sock_send, &so, iov, iovcnt, wait, arg);
}
