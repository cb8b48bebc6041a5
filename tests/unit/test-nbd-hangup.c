/*
 * test-nbd-hangup: a client that hangs up while large READ replies are on
 * their way must cost the server its connection and nothing more.  Those
 * replies go out with sendfile(2) from the image's pages (reply.c,
 * "Spliced replies"), and sendfile, unlike sendmsg, cannot be told
 * MSG_NOSIGNAL: the writer thread blocks SIGPIPE instead.  This program
 * keeps SIGPIPE's default action, as an embedder that never thought of it
 * would (the fuzz targets were such a program: the smoke run's
 * fuzz-nbd-request died with status 141 before the writer blocked it).
 *
 * The client handshakes with NBD_OPT_EXPORT_NAME, sends READs of 1 MiB
 * (far more than the socket holds), waits until a reply's data has begun
 * to arrive (so that the writer is in the middle of sending it) and
 * closes.
 * nbd_serve_fd must return, and the server must then serve a second
 * client whole.
 *
 * The same through the accept loop (nbd_server_run on a Unix socket):
 * there the socket does not block after the handshake, and the thread
 * that completes a read splices its data itself as far as the socket
 * takes it (8 MiB of send buffer at most, half the replies asked for),
 * so the hangup meets threads other than the writer, which hold SIGPIPE
 * back for the call.
 */
#include <endian.h>
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "testlib.h"

#include "nbd.h"
#include "nbd-proto.h"

#define NREQ	16
#define REQLEN	(1u << 20)

static char *image;
TL_IMAGE_FIXTURE(image, "hangup.img", 4u << 20, 5)

static void
put_all(int fd, const void *buf, size_t len)
{
	tl_eq(send(fd, buf, len, MSG_NOSIGNAL), (ssize_t)len);
}

static void
get_all(int fd, void *buf, size_t len)
{
	size_t got = 0;
	ssize_t n;

	while (got < len) {
		n = recv(fd, (char *)buf + got, len - got, 0);
		if (n <= 0)
			tl_fail("recv: %s\n", n == 0 ? "end of stream" :
			    strerror(errno));
		got += (size_t)n;
	}
}

/* The fixed newstyle handshake, EXPORT_NAME ""; returns the export size. */
static uint64_t
handshake(int fd)
{
	unsigned char hello[18], info[10];
	struct {
		uint64_t magic;
		uint32_t opt, len;
	} __attribute__((packed)) o;
	uint32_t cflags = htobe32(NBD_FLAG_C_FIXED_NEWSTYLE |
	    NBD_FLAG_C_NO_ZEROES);
	uint64_t size;

	get_all(fd, hello, sizeof(hello));
	tl_true(memcmp(hello, "NBDMAGICIHAVEOPT", 16) == 0);
	put_all(fd, &cflags, sizeof(cflags));
	o.magic = htobe64(NBD_IHAVEOPT);
	o.opt = htobe32(NBD_OPT_EXPORT_NAME);
	o.len = 0;
	put_all(fd, &o, sizeof(o));
	get_all(fd, info, sizeof(info));	/* size, flags; no zeroes */
	memcpy(&size, info, 8);
	return be64toh(size);
}

static void
send_read(int fd, uint64_t cookie, uint64_t off, uint32_t len)
{
	struct nbd_request rq = {
		.magic = htobe32(NBD_REQUEST_MAGIC),
		.type = htobe16(NBD_CMD_READ),
		.handle = cookie,
		.offset = htobe64(off),
		.len = htobe32(len),
	};

	put_all(fd, &rq, sizeof(rq));
}

struct served {
	struct nbd_server *srv;
	int fd;
};

static void *
serve_main(void *arg)
{
	struct served *s = arg;

	nbd_serve_fd(s->srv, s->fd);	/* closes s->fd */
	return NULL;
}

static pthread_t
serve_one(struct nbd_server *srv, int *client)
{
	static struct served s[2];
	static unsigned n;
	int sv[2];
	pthread_t t;

	tl_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	s[n].srv = srv;
	s[n].fd = sv[1];
	tl_eq(pthread_create(&t, NULL, serve_main, &s[n]), 0);
	n++;
	*client = sv[0];
	return t;
}

/*
 * The client of fd: READs of 1 MiB, far more than the socket holds, and
 * a hangup once a reply's data has begun to arrive (the replies after it
 * are then on their way); end is called, then a second client (from
 * next) must read 1 MiB whole.
 */
static void
hangup_then_read(int fd, void (*end)(void *), void *arg,
    int (*next)(void *), void *narg)
{
	struct nbd_simple_reply rp;
	unsigned char *buf = malloc(REQLEN), *want = malloc(REQLEN);
	unsigned i;

	tl_true(buf != NULL && want != NULL);
	tl_eq(handshake(fd), 4u << 20);
	for (i = 0; i < NREQ; i++)
		send_read(fd, i, (uint64_t)(i % 4) * REQLEN, REQLEN);
	get_all(fd, &rp, sizeof(rp));
	tl_eq(be32toh(rp.magic), NBD_SIMPLE_REPLY_MAGIC);
	get_all(fd, buf, 4096);
	tl_eq(close(fd), 0);
	end(arg);

	/* The server goes on: a second client reads 1 MiB whole. */
	fd = next(narg);
	tl_eq(handshake(fd), 4u << 20);
	send_read(fd, 77, REQLEN, REQLEN);
	get_all(fd, &rp, sizeof(rp));
	tl_eq(be32toh(rp.magic), NBD_SIMPLE_REPLY_MAGIC);
	tl_eq(rp.error, 0);
	tl_eq(rp.handle, 77);
	get_all(fd, buf, REQLEN);
	tl_host_read(image, want, REQLEN, REQLEN);
	tl_true(memcmp(buf, want, REQLEN) == 0);
	tl_eq(close(fd), 0);
	free(buf);
	free(want);
}

/* A server of the image on a new instance (*rbp; mmap, 1 MiB
 * replies leave by sendfile). */
static struct nbd_server *
new_server(struct rumpblk **rbp)
{
	struct rumpblk *rb = tl_mmap_create(4u << 20, 1);
	int unit = tl_register(rb, image, 0, RUMPBLK_SIZENOTSET);
	struct nbd_server_config sc;
	struct nbd_server *srv;

	/* The default action: a stray SIGPIPE ends the test. */
	tl_true(signal(SIGPIPE, SIG_DFL) != SIG_ERR);
	memset(&sc, 0, sizeof(sc));
	sc.rb = rb;
	sc.unit = unit;
	sc.name = "hangup";
	sc.max_connections = 4;
	sc.shutdown_timeout_ms = 1000;
	tl_eq(nbd_server_create(&sc, &srv), 0);
	*rbp = rb;
	return srv;
}

static void
join(void *arg)
{
	tl_eq(pthread_join(*(pthread_t *)arg, NULL), 0);
}

struct fdpair {
	struct nbd_server *srv;
	pthread_t t;
};

static int
serve_next(void *arg)
{
	struct fdpair *p = arg;
	int fd;

	p->t = serve_one(p->srv, &fd);
	return fd;
}

static void
hangup_mid_reply(void **state)
{
	struct rumpblk *rb;
	struct nbd_server *srv = new_server(&rb);
	struct fdpair next = { .srv = srv };
	pthread_t t;
	int fd;

	(void)state;
	/* Only the writer's sendfile sends a reply's data here, and a
	 * 1 MiB reply does not fit in the socket, so the writer is in the
	 * middle of it when the client goes. */
	t = serve_one(srv, &fd);
	hangup_then_read(fd, join, &t, serve_next, &next);
	tl_eq(pthread_join(next.t, NULL), 0);
	nbd_server_destroy(srv);
	tl_eq(rumpblk_destroy(rb), 0);
}

static int
connect_to(void *arg)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd;

	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", (char *)arg);
	tl_true((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) >= 0);
	tl_eq(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	return fd;
}

static void
nothing(void *arg)
{
	(void)arg;
}

static void *
run_main(void *arg)
{
	nbd_server_run(arg, -1);
	return NULL;
}

static void
hangup_accepted(void **state)
{
	struct rumpblk *rb;
	struct nbd_server *srv = new_server(&rb);
	char *path = tl_path("hangup.sock");
	pthread_t t;

	(void)state;
	(void)unlink(path);
	tl_eq(nbd_server_listen_unix(srv, path), 0);
	tl_eq(pthread_create(&t, NULL, run_main, srv), 0);
	hangup_then_read(connect_to(path), nothing, NULL, connect_to, path);
	nbd_server_stop(srv);
	tl_eq(pthread_join(t, NULL), 0);
	nbd_server_destroy(srv);
	tl_eq(rumpblk_destroy(rb), 0);
	free(path);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(hangup_mid_reply),
		cmocka_unit_test(hangup_accepted),
	};

	return tl_main(tests, setup, teardown);
}
