/*
 * fwd [-c] LISTEN TARGET: the least a proxy in front of an NBD server
 * can do, for bench/nbd-backing.sh.  It listens on the Unix socket
 * LISTEN and, for each client, connects to the Unix socket TARGET and
 * moves bytes both ways, in one thread per client polling both sockets:
 * with splice(2) through a pipe per direction, or with -c by recv and
 * send through a 256 KiB buffer.  It parses nothing: no handshake, no
 * requests, no layers.  A server in the same place must do all that on
 * top, so a chain through it would be expected to run no faster than
 * through this; the bench prints both modes beside rumpblk.
 *
 * Runs until killed.  Errors on a client end that client's thread.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define PIPE_SIZE	(1u << 20)
#define BUF_SIZE	(256u << 10)

/* One direction: from src through the pipe p (or buf) to dst. */
struct dir {
	int	src, dst;
	int	p[2];
	char	*buf;		/* -c */
	size_t	off;		/* of the bytes held in buf */
	size_t	held;		/* bytes in the pipe or buf */
	int	eof;
};

static int copying;		/* -c */
static const char *target;

static int
unix_addr(const char *path, struct sockaddr_un *sa)
{
	memset(sa, 0, sizeof(*sa));
	sa->sun_family = AF_UNIX;
	if (strlen(path) >= sizeof(sa->sun_path))
		return -1;
	strcpy(sa->sun_path, path);
	return 0;
}

static size_t
room_of(const struct dir *d)
{
	return (copying ? BUF_SIZE : PIPE_SIZE) - d->off - d->held;
}

/* Take what src has (up to room bytes) into the pipe or buffer. */
static ssize_t
take(struct dir *d, size_t room)
{
	if (copying)
		return recv(d->src, d->buf + d->off + d->held, room,
		    MSG_DONTWAIT);
	return splice(d->src, NULL, d->p[1], NULL, room,
	    SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
}

/* Give dst what is held, as much as it takes. */
static ssize_t
give(struct dir *d)
{
	ssize_t n;

	if (copying)
		n = send(d->dst, d->buf + d->off, d->held,
		    MSG_DONTWAIT | MSG_NOSIGNAL);
	else
		n = splice(d->p[0], NULL, d->dst, NULL, d->held,
		    SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
	if (n > 0) {
		d->held -= (size_t)n;
		d->off = d->held > 0 && copying ? d->off + (size_t)n : 0;
	}
	return n;
}

/*
 * Move what can move without waiting; -1 on an error.  A take short of
 * the room asked for found the socket empty: no second try then, which
 * would only fail.
 */
static int
pump(struct dir *d)
{
	size_t room;
	ssize_t n;

	for (;;) {
		room = room_of(d);
		n = 0;
		if (!d->eof && room > 0) {
			n = take(d, room);
			if (n == 0)
				d->eof = 1;
			else if (n > 0)
				d->held += (size_t)n;
			else if (errno != EAGAIN && errno != EINTR)
				return -1;
		}
		if (d->held == 0)
			return 0;
		if (give(d) < 0)
			return errno == EAGAIN || errno == EINTR ? 0 : -1;
		if (d->held > 0 || d->eof || n < (ssize_t)room)
			return 0;
	}
}

static void *
serve(void *arg)
{
	int cfd = (int)(intptr_t)arg, sfd = -1;
	struct sockaddr_un sa;
	struct dir d[2] = { { .p = { -1, -1 } }, { .p = { -1, -1 } } };
	struct pollfd pfd[2];
	int i;

	sfd = socket(AF_UNIX, SOCK_STREAM, 0);
	if (sfd < 0 || unix_addr(target, &sa) != 0 ||
	    connect(sfd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
		fprintf(stderr, "fwd: %s: %s\n", target, strerror(errno));
		goto out;
	}
	d[0].src = cfd, d[0].dst = sfd;
	d[1].src = sfd, d[1].dst = cfd;
	for (i = 0; i < 2; i++) {
		if (copying) {
			if ((d[i].buf = malloc(BUF_SIZE)) == NULL)
				goto out;
		} else if (pipe2(d[i].p, O_NONBLOCK) != 0)
			goto out;
		else
			(void)fcntl(d[i].p[0], F_SETPIPE_SZ, PIPE_SIZE);
		(void)fcntl(d[i].src, F_SETFL, O_NONBLOCK);
	}
	for (;;) {
		for (i = 0; i < 2; i++)
			if (pump(&d[i]) != 0 || (d[i].eof && d[i].held == 0))
				goto out;
		/* Side i is watched for reading its direction's source
		 * and, with bytes held, for writing the other's. */
		for (i = 0; i < 2; i++) {
			pfd[i].fd = d[i].src;
			pfd[i].events = room_of(&d[i]) > 0 ? POLLIN : 0;
			if (d[1 - i].held > 0)
				pfd[i].events |= POLLOUT;
		}
		if (poll(pfd, 2, -1) < 0 && errno != EINTR)
			goto out;
	}
out:
	for (i = 0; i < 2; i++) {
		free(d[i].buf);
		if (d[i].p[0] >= 0)
			close(d[i].p[0]);
		if (d[i].p[1] >= 0)
			close(d[i].p[1]);
	}
	if (sfd >= 0)
		close(sfd);
	close(cfd);
	return NULL;
}

int
main(int argc, char **argv)
{
	struct sockaddr_un sa;
	pthread_attr_t at;
	pthread_t t;
	int lfd, cfd;

	if (argc == 4 && strcmp(argv[1], "-c") == 0) {
		copying = 1;
		argc--, argv++;
	}
	if (argc != 3) {
		fprintf(stderr, "usage: fwd [-c] LISTEN TARGET\n");
		return 2;
	}
	target = argv[2];
	lfd = socket(AF_UNIX, SOCK_STREAM, 0);
	if (lfd < 0 || unix_addr(argv[1], &sa) != 0 ||
	    bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) != 0 ||
	    listen(lfd, 16) != 0) {
		fprintf(stderr, "fwd: %s: %s\n", argv[1], strerror(errno));
		return 1;
	}
	pthread_attr_init(&at);
	pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
	for (;;) {
		cfd = accept(lfd, NULL, NULL);
		if (cfd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			fprintf(stderr, "fwd: accept: %s\n", strerror(errno));
			return 1;
		}
		if (pthread_create(&t, &at, serve, (void *)(intptr_t)cfd) != 0)
			close(cfd);
	}
}
