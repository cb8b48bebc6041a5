/*
 * The server: listeners, the accept loop, connection threads, shutdown.
 *
 * The accept loop runs in the caller's thread (nbd_server_run) and polls
 * the listeners, a self-pipe for nbd_server_stop(), an eventfd that
 * ended connections poke so their threads are joined promptly, and an
 * extra descriptor of the caller (the CLI's signalfd).  Each accepted
 * client gets a reader thread of its own (conn.c).  Past
 * max_connections, new clients are closed at once: with the per-
 * connection cap on bytes in flight this bounds the server's memory.
 *
 * Shutdown: stop accepting, stop reading requests (shutdown(SHUT_RD)
 * wakes readers), let requests in flight complete and their replies go
 * out; a client that does not read its replies is given up after the
 * shutdown timeout.
 *
 * Unit reset: the server subscribes to the instance's events from create
 * to destroy.  RUMPBLK_EVENT_RESET for its unit drops every connection
 * at once (nbd_conn_reset: shut the socket down, discard the replies),
 * in the thread that raised the event and without waiting for anything,
 * under s_lock so that no connection is freed meanwhile.  Clients that
 * connect afterwards are served as usual.
 */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "nbd-int.h"

/* The instance's events (any thread, no library lock held). */
static void
server_event(void *arg, int unit, int event)
{
	struct nbd_server *s = arg;
	struct nbd_conn *c;
	unsigned n = 0;

	if (event != RUMPBLK_EVENT_RESET || unit != s->s_cfg.unit)
		return;
	pthread_mutex_lock(&s->s_lock);
	for (c = s->s_conns; c != NULL; c = c->c_next) {
		if (c->c_ended)
			continue;
		nbd_conn_reset(c);
		n++;
	}
	for (c = s->s_conns; c != NULL; c = c->c_next)
		if (!c->c_ended)
			nbd_conn_reset_fence(c);
	pthread_mutex_unlock(&s->s_lock);
	nbd_log(s, "unit %d was reset: dropped %u connection%s", unit, n,
	    n == 1 ? "" : "s");
}

int
nbd_server_create(const struct nbd_server_config *cfg,
    struct nbd_server **sp)
{
	struct nbd_server *s;
	int error;

	if ((s = calloc(1, sizeof(*s))) == NULL)
		return ENOMEM;
	s->s_cfg = *cfg;
	s->s_stoppipe[0] = s->s_stoppipe[1] = s->s_wakefd = -1;
	if ((error = rumpblk_unitinfo(cfg->rb, cfg->unit, &s->s_ui)) != 0)
		goto fail;
	error = ENOMEM;
	if ((s->s_name = strdup(cfg->name != NULL ? cfg->name : "")) == NULL)
		goto fail;
	if (cfg->description != NULL &&
	    (s->s_desc = strdup(cfg->description)) == NULL)
		goto fail;
	s->s_size = s->s_ui.ui_size;
	s->s_secsize = s->s_ui.ui_secsize;
	s->s_bytegran = cfg->byte_granular;
	s->s_ro = cfg->read_only || (s->s_ui.ui_mode & RUMPBLK_FWRITE) == 0;
	/* A remote backing passes TRIM on (or says EOPNOTSUPP, which a
	 * TRIM, advice, answers with success). */
	s->s_can_trim = s->s_ui.ui_ftype == RUMPBLK_FT_REG ||
	    s->s_ui.ui_ftype == RUMPBLK_FT_BLK ||
	    s->s_ui.ui_ftype == RUMPBLK_FT_NBD ||
	    s->s_ui.ui_ftype == RUMPBLK_FT_RBD;
	/* O_DIRECT reads wait for the device: never in the reader. */
	s->s_async_reads = s->s_ui.ui_backend == RUMPBLK_BACKEND_DIRECT;
	s->s_max_inflight = cfg->max_inflight != 0 ? cfg->max_inflight :
	    NBD_MAX_PAYLOAD + (1u << 20);
	if (s->s_cfg.max_connections == 0)
		s->s_cfg.max_connections = 64;
	if (pipe2(s->s_stoppipe, O_CLOEXEC | O_NONBLOCK) == -1 ||
	    (s->s_wakefd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) == -1) {
		error = errno;
		goto fail;
	}
	pthread_mutex_init(&s->s_lock, NULL);
	pthread_cond_init(&s->s_cv, NULL);
	nbd_rl_init(&s->s_rl);
	/* Last: the callback may run as soon as this returns. */
	if ((error = rumpblk_event_subscribe(cfg->rb, server_event, s,
	    &s->s_evid)) != 0)
		goto fini_locks;
	*sp = s;
	return 0;
fini_locks:
	nbd_rl_fini(&s->s_rl);
	pthread_cond_destroy(&s->s_cv);
	pthread_mutex_destroy(&s->s_lock);
fail:
	if (s->s_wakefd != -1)
		close(s->s_wakefd);
	if (s->s_stoppipe[0] != -1) {
		close(s->s_stoppipe[0]);
		close(s->s_stoppipe[1]);
	}
	free(s->s_desc);
	free(s->s_name);
	free(s);
	return error;
}

uint16_t
nbd_server_tflags(const struct nbd_server *s, bool structured)
{
	uint16_t f = NBD_FLAG_HAS_FLAGS | NBD_FLAG_CAN_MULTI_CONN;

	if (s->s_ro)
		f |= NBD_FLAG_READ_ONLY;
	else {
		f |= NBD_FLAG_SEND_FLUSH | NBD_FLAG_SEND_FUA |
		    NBD_FLAG_SEND_WRITE_ZEROES;
		if (s->s_can_trim)
			f |= NBD_FLAG_SEND_TRIM;
	}
	/* Every READ reply is one data chunk, so DF costs nothing. */
	if (structured)
		f |= NBD_FLAG_SEND_DF;
	return f;
}

static int
add_listener(struct nbd_server *s, int fd, const char *path)
{
	if (s->s_nlfd == NBD_MAX_LISTENERS)
		return EMFILE;
	if (listen(fd, 128) == -1)
		return errno;
	s->s_lfd[s->s_nlfd] = fd;
	s->s_lpath[s->s_nlfd] = path != NULL ? strdup(path) : NULL;
	s->s_nlfd++;
	return 0;
}

int
nbd_server_listen_unix(struct nbd_server *s, const char *path)
{
	struct sockaddr_un sun;
	int fd, error;

	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	if (strlen(path) >= sizeof(sun.sun_path))
		return ENAMETOOLONG;
	strcpy(sun.sun_path, path);
	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) == -1)
		return errno;
	if (bind(fd, (struct sockaddr *)&sun, sizeof(sun)) == -1) {
		error = errno;
		close(fd);
		return error;
	}
	if ((error = add_listener(s, fd, path)) != 0) {
		close(fd);
		unlink(path);
		return error;
	}
	return 0;
}

int
nbd_server_listen_tcp(struct nbd_server *s, const char *addrport, int *portp)
{
	struct addrinfo hints, *res = NULL;
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	char host[256];
	const char *port, *colon;
	size_t hl;
	int fd = -1, one = 1, error;

	if (addrport[0] == '[') {
		if ((colon = strstr(addrport, "]:")) == NULL)
			return EINVAL;
		hl = (size_t)(colon - addrport - 1);
		if (hl >= sizeof(host))
			return EINVAL;
		memcpy(host, addrport + 1, hl);
		port = colon + 2;
	} else {
		if ((colon = strrchr(addrport, ':')) == NULL)
			return EINVAL;
		hl = (size_t)(colon - addrport);
		if (hl >= sizeof(host))
			return EINVAL;
		memcpy(host, addrport, hl);
		port = colon + 1;
	}
	host[hl] = '\0';
	if (*port == '\0' || strspn(port, "0123456789") != strlen(port) ||
	    strlen(port) > 5 || atoi(port) > 65535)
		return EINVAL;
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
	if (getaddrinfo(host[0] != '\0' ? host : NULL, port, &hints,
	    &res) != 0)
		return EADDRNOTAVAIL;
	if ((fd = socket(res->ai_family, res->ai_socktype | SOCK_CLOEXEC,
	    res->ai_protocol)) == -1) {
		error = errno;
		goto out;
	}
	(void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (res->ai_family == AF_INET6)
		(void)setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one,
		    sizeof(one));
	if (bind(fd, res->ai_addr, res->ai_addrlen) == -1 ||
	    getsockname(fd, (struct sockaddr *)&ss, &sl) == -1) {
		error = errno;
		goto out;
	}
	if ((error = add_listener(s, fd, NULL)) != 0)
		goto out;
	if (portp != NULL)
		*portp = ntohs(ss.ss_family == AF_INET6 ?
		    ((struct sockaddr_in6 *)&ss)->sin6_port :
		    ((struct sockaddr_in *)&ss)->sin_port);
	fd = -1;
out:
	if (fd != -1)
		close(fd);
	freeaddrinfo(res);
	return error;
}

void
nbd_server_stop(struct nbd_server *s)
{
	ssize_t n;

	n = write(s->s_stoppipe[1], "x", 1);
	(void)n;
}

static void *
conn_main(void *arg)
{
	struct nbd_conn *c = arg;
	struct nbd_server *s = c->c_srv;
	uint64_t one = 1;
	ssize_t n;

	(void)pthread_setname_np(pthread_self(), "nbd-reader");
	nbd_conn_serve(c);
	nbd_audit_conn_end(c);
	pthread_mutex_lock(&s->s_lock);
	c->c_ended = true;
	s->s_nconns--;
	s->s_nended++;
	pthread_cond_broadcast(&s->s_cv);
	pthread_mutex_unlock(&s->s_lock);
	n = write(s->s_wakefd, &one, sizeof(one));
	(void)n;
	return NULL;
}

/* Join and free connections that ended. */
static void
reap(struct nbd_server *s)
{
	struct nbd_conn **cp, *c, *dead = NULL;

	pthread_mutex_lock(&s->s_lock);
	for (cp = &s->s_conns; (c = *cp) != NULL;) {
		if (c->c_ended) {
			*cp = c->c_next;
			c->c_next = dead;
			dead = c;
		} else
			cp = &c->c_next;
	}
	pthread_mutex_unlock(&s->s_lock);
	while ((c = dead) != NULL) {
		dead = c->c_next;
		pthread_join(c->c_reader, NULL);
		nbd_conn_free(c);
	}
}

/* "unix", or ADDR:PORT ([ADDR]:PORT for IPv6) of a peer. */
static void
peer_name(const struct sockaddr_storage *ss, char *buf, size_t len)
{
	char host[INET6_ADDRSTRLEN] = "?";
	int port = 0;

	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *sin = (const void *)ss;

		inet_ntop(AF_INET, &sin->sin_addr, host, sizeof(host));
		port = ntohs(sin->sin_port);
		snprintf(buf, len, "%s:%d", host, port);
	} else if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *sin6 = (const void *)ss;

		inet_ntop(AF_INET6, &sin6->sin6_addr, host, sizeof(host));
		port = ntohs(sin6->sin6_port);
		snprintf(buf, len, "[%s]:%d", host, port);
	} else {
		snprintf(buf, len, "unix");
	}
}

static void
accept_one(struct nbd_server *s, int lfd)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	struct nbd_conn *c;
	int fd, one = 1;
	bool tcp;

	if ((fd = accept4(lfd, (struct sockaddr *)&ss, &sl,
	    SOCK_CLOEXEC)) == -1) {
		/* Out of descriptors or memory: the listener stays
		 * readable, so pause rather than spin. */
		if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS ||
		    errno == ENOMEM)
			poll(NULL, 0, 100);
		return;
	}
	tcp = ss.ss_family == AF_INET || ss.ss_family == AF_INET6;
	if (tcp)
		(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one,
		    sizeof(one));
	pthread_mutex_lock(&s->s_lock);
	if (s->s_nconns >= s->s_cfg.max_connections) {
		pthread_mutex_unlock(&s->s_lock);
		nbd_log(s, "refusing a client: %u connections already "
		    "(--max-connections)", s->s_cfg.max_connections);
		close(fd);
		return;
	}
	pthread_mutex_unlock(&s->s_lock);
	if ((c = nbd_conn_new(s, fd, tcp)) == NULL) {
		close(fd);
		return;
	}
	c->c_has_reader = true;
	peer_name(&ss, c->c_peer, sizeof(c->c_peer));
	pthread_mutex_lock(&s->s_lock);
	c->c_id = ++s->s_nextid;
	if (pthread_create(&c->c_reader, NULL, conn_main, c) != 0) {
		pthread_mutex_unlock(&s->s_lock);
		nbd_log(s, "cannot start a thread for a client");
		nbd_conn_free(c);
		return;
	}
	s->s_nconns++;
	c->c_next = s->s_conns;
	s->s_conns = c;
	pthread_mutex_unlock(&s->s_lock);
}

int
nbd_server_run(struct nbd_server *s, int extra_fd)
{
	struct pollfd p[NBD_MAX_LISTENERS + 3];
	struct nbd_conn *c;
	uint64_t v;
	ssize_t n;
	int i, np;

	for (;;) {
		np = 0;
		for (i = 0; i < s->s_nlfd; i++) {
			p[np].fd = s->s_lfd[i];
			p[np++].events = POLLIN;
		}
		p[np].fd = s->s_wakefd;
		p[np++].events = POLLIN;
		p[np].fd = s->s_stoppipe[0];
		p[np++].events = POLLIN;
		p[np].fd = extra_fd;
		p[np++].events = POLLIN;
		if (poll(p, (nfds_t)np, -1) == -1) {
			if (errno == EINTR)
				continue;
			nbd_log(s, "poll: %s", strerror(errno));
			break;
		}
		if (p[s->s_nlfd].revents & POLLIN) {
			n = read(s->s_wakefd, &v, sizeof(v));
			(void)n;
			reap(s);
		}
		if ((p[s->s_nlfd + 1].revents & POLLIN) ||
		    (extra_fd != -1 && (p[s->s_nlfd + 2].revents &
		    (POLLIN | POLLHUP | POLLERR))))
			break;
		for (i = 0; i < s->s_nlfd; i++)
			if (p[i].revents & POLLIN)
				accept_one(s, s->s_lfd[i]);
	}

	/* Shut down: no new clients, no new requests. */
	for (i = 0; i < s->s_nlfd; i++) {
		close(s->s_lfd[i]);
		if (s->s_lpath[i] != NULL)
			unlink(s->s_lpath[i]);
	}
	s->s_nlfd = 0;
	atomic_store(&s->s_deadline, nbd_now_ns() +
	    (uint64_t)s->s_cfg.shutdown_timeout_ms * 1000000u + 1);
	atomic_store(&s->s_stopping, true);
	pthread_mutex_lock(&s->s_lock);
	for (c = s->s_conns; c != NULL; c = c->c_next)
		if (!c->c_ended && c->c_has_reader)
			shutdown(c->c_fd, SHUT_RD);
	while (s->s_nconns > 0)
		pthread_cond_wait(&s->s_cv, &s->s_lock);
	pthread_mutex_unlock(&s->s_lock);
	reap(s);
	return 0;
}

int
nbd_serve_fd(struct nbd_server *s, int fd)
{
	struct nbd_conn *c, **cp;

	if ((c = nbd_conn_new(s, fd, false)) == NULL) {
		close(fd);
		return ENOMEM;
	}
	/*
	 * On the list, so that a unit reset drops it too; never marked
	 * ended, so reap() leaves it to us, and without a reader thread of
	 * its own, so nbd_server_run() neither counts nor stops it.
	 */
	pthread_mutex_lock(&s->s_lock);
	c->c_next = s->s_conns;
	s->s_conns = c;
	pthread_mutex_unlock(&s->s_lock);
	nbd_conn_serve(c);
	pthread_mutex_lock(&s->s_lock);
	for (cp = &s->s_conns; *cp != c; cp = &(*cp)->c_next)
		;
	*cp = c->c_next;
	pthread_mutex_unlock(&s->s_lock);
	nbd_conn_free(c);
	return 0;
}

void
nbd_server_destroy(struct nbd_server *s)
{
	int i;

	if (s == NULL)
		return;
	/* First: once it returns, server_event is not running. */
	(void)rumpblk_event_unsubscribe(s->s_cfg.rb, s->s_evid);
	reap(s);
	for (i = 0; i < s->s_nlfd; i++) {
		close(s->s_lfd[i]);
		if (s->s_lpath[i] != NULL)
			unlink(s->s_lpath[i]);
	}
	for (i = 0; i < NBD_MAX_LISTENERS; i++)
		free(s->s_lpath[i]);
	close(s->s_stoppipe[0]);
	close(s->s_stoppipe[1]);
	close(s->s_wakefd);
	nbd_rl_fini(&s->s_rl);
	pthread_cond_destroy(&s->s_cv);
	pthread_mutex_destroy(&s->s_lock);
	free(s->s_desc);
	free(s->s_name);
	free(s);
}
