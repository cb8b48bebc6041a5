/*
 * The NBD fuzz targets' harness (see fuzz-nbd.h): instance, servers and
 * the socketpair pump.  Set up once, on the first input; the scratch image
 * lives in $TMPDIR (1 MiB, sparse) and is unlinked once registered.
 *
 * Both servers run with TLS on (as --tls=on --tls-psk FILE; the PSK file
 * is made in $TMPDIR at set-up and unlinked once loaded): plaintext
 * clients are served as without TLS, and an input with NBD_OPT_STARTTLS
 * reaches the STARTTLS option path, its NBD_REP_ACK and a TLS handshake
 * over whatever bytes follow (which fails: the fuzzer writes no TLS).
 *
 * The read-only server has a second export ("second", the same unit),
 * so that its clients take the paths of a server with several: a name
 * must match, an unknown one is refused, LIST lists two.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <rumpblk/rumpblk.h>

#include "fuzz-util.h"
#include "fuzz-nbd.h"
#include "nbd.h"
#include "tls.h"

#define IMAGE_SIZE	(1u << 20)

static struct rumpblk *rb;
static struct nbd_server *srv_rw, *srv_ro;
static struct nbd_tls *tls;

/* TLS credentials: a PSK file with one key, made and loaded once. */
static void
setup_tls(const char *dir)
{
	struct nbd_tls_config tc;
	char path[4096], msg[512];
	int fd;
	static const char line[] = "fuzz:000102030405060708090a0b0c0d0e0f\n";

	snprintf(path, sizeof(path), "%s/fuzz-nbd-psk.XXXXXX", dir);
	if ((fd = mkstemp(path)) == -1)
		fuzz_die("mkstemp", errno);
	if (write(fd, line, sizeof(line) - 1) != (ssize_t)sizeof(line) - 1)
		fuzz_die(path, errno);
	close(fd);
	memset(&tc, 0, sizeof(tc));
	tc.mode = NBD_TLS_ON;
	tc.pskfile = path;
	if (nbd_tls_create(&tc, &tls, msg, sizeof(msg)) != 0) {
		fprintf(stderr, "fuzz-nbd: %s\n", msg);
		abort();
	}
	unlink(path);
}

static void
setup(void)
{
	struct nbd_server_config sc;
	static struct nbd_export_config second;
	const char *dir = getenv("TMPDIR");
	int unit, error;
	FILE *devnull;

	rb = fuzz_instance(IMAGE_SIZE, &unit);
	setup_tls(dir != NULL ? dir : "/tmp");

	/* The server's complaints about bad input are expected noise. */
	devnull = fopen("/dev/null", "w");
	memset(&sc, 0, sizeof(sc));
	sc.rb = rb;
	sc.unit = unit;
	sc.name = "fuzz";
	sc.description = "fuzz target";
	sc.max_connections = 4;
	sc.shutdown_timeout_ms = 1000;
	sc.log = devnull;
	sc.tls = tls;
	if ((error = nbd_server_create(&sc, &srv_rw)) != 0)
		fuzz_die("nbd_server_create", error);
	sc.read_only = true;
	second.unit = unit;
	second.name = "second";
	second.read_only = true;
	sc.more = &second;
	sc.nmore = 1;
	if ((error = nbd_server_create(&sc, &srv_ro)) != 0)
		fuzz_die("nbd_server_create (read-only)", error);
}

struct pump {
	int		p_fd;
	const uint8_t	*p_pre, *p_data;
	size_t		p_plen, p_size;
};

/* Write prefix and data, read and drop replies, until the server hangs
 * up. */
static void *
pump_main(void *arg)
{
	struct pump *p = arg;
	struct pollfd pfd;
	size_t off = 0, total = p->p_plen + p->p_size;
	char sink[65536];
	ssize_t n;
	int wr_open = 1;

	if (total == 0) {
		shutdown(p->p_fd, SHUT_WR);
		wr_open = 0;
	}
	for (;;) {
		pfd.fd = p->p_fd;
		pfd.events = POLLIN | (wr_open ? POLLOUT : 0);
		if (poll(&pfd, 1, -1) == -1) {
			if (errno == EINTR)
				continue;
			break;
		}
		if (pfd.revents & (POLLIN | POLLHUP | POLLERR)) {
			n = recv(p->p_fd, sink, sizeof(sink), MSG_DONTWAIT);
			if (n == 0 || (n == -1 && errno != EAGAIN &&
			    errno != EINTR))
				break;
		}
		if (wr_open && (pfd.revents & POLLOUT)) {
			const uint8_t *src = off < p->p_plen ?
			    p->p_pre + off : p->p_data + (off - p->p_plen);
			size_t len = off < p->p_plen ? p->p_plen - off :
			    total - off;

			n = send(p->p_fd, src, len,
			    MSG_DONTWAIT | MSG_NOSIGNAL);
			if (n > 0)
				off += (size_t)n;
			else if (n == -1 && errno != EAGAIN && errno != EINTR)
				off = total;	/* server gone */
			if (off == total) {
				shutdown(p->p_fd, SHUT_WR);
				wr_open = 0;
			}
		}
	}
	return NULL;
}

void
fuzz_nbd_run(const uint8_t *prefix, size_t plen, const uint8_t *data,
    size_t size, int read_only)
{
	struct pump p;
	pthread_t t;
	int sv[2], error;

	if (rb == NULL)
		setup();
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == -1)
		fuzz_die("socketpair", errno);
	p.p_fd = sv[0];
	p.p_pre = prefix;
	p.p_plen = plen;
	p.p_data = data;
	p.p_size = size;
	if ((error = pthread_create(&t, NULL, pump_main, &p)) != 0)
		fuzz_die("pthread_create", error);
	/* Serves until the client leaves; closes sv[1]. */
	nbd_serve_fd(read_only ? srv_ro : srv_rw, sv[1]);
	pthread_join(t, NULL);
	close(sv[0]);
}
