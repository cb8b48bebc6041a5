/*
 * The server: listeners, the accept loop, admission, connection
 * threads, shutdown.
 *
 * The accept loop runs in the caller's thread (nbd_server_run) and polls
 * the listeners, a self-pipe for nbd_server_stop(), an eventfd that
 * ended connections poke so their threads are joined promptly, and an
 * extra descriptor of the caller (the CLI's signalfd).  Each accepted
 * client gets a reader thread of its own (conn.c).
 *
 * Admission (issue 14).  A client that connects and says nothing must
 * not keep real clients out, so a connection in the handshake does not
 * take the place of a client in transmission:
 *   - Handshakes are bounded on their own (max_handshakes, default
 *     1024) and queued oldest first; when the queue is full a new client
 *     is still accepted and the OLDEST handshake is closed: a flood
 *     evicts itself, and a real client that connects into it gets its
 *     handshake (it needs milliseconds, the flood's connections are
 *     older).  Closing the newcomer instead would lock everyone out.
 *   - Each handshake must end within handshake_timeout_ms of the
 *     accept, in all (not per read: a client that trickles a byte at a
 *     time is held to the same deadline).  The accept loop keeps it: its
 *     poll() wakes at the oldest handshake's deadline, shuts that
 *     socket down (which wakes its reader wherever it waits, a read or
 *     room to send, TLS included) and logs the peer once.
 *   - max_connections (default 64) bounds clients in transmission only;
 *     a client is admitted when it asks to start it.  Past the bound a
 *     GO is answered NBD_REP_ERR_POLICY with a message and the client
 *     may try again or leave (libnbd and qemu show the message); an
 *     EXPORT_NAME, which has no error reply, is hung up on.  Idle
 *     clients in transmission are kept: NBD has no idle timeout.
 *   - Log lines of these kinds are rate-limited (NBD_LOG_PER_SEC), so a
 *     flood of connections is not a flood of lines.
 *
 * Threads, not a poll loop, for the handshake, measured with 1000 idle
 * raw TCP connections on a 2-core machine: the server holds them with
 * 1001 threads and 54 MB resident (24 MB idle: 30 KiB a connection),
 * accepts all 1000 in 15-30 ms and has sent every greeting in 55 ms.
 * A poll-driven handshake would save most of those 30 KiB, but it
 * means handshake.c, and GnuTLS's handshake under STARTTLS, rewritten
 * as state machines, and a handoff to a thread for transmission; the
 * bound on handshakes already caps the threads at max_handshakes +
 * max_connections.  Stacks: a connection thread gets 1 MiB, not the
 * default 8 MiB (RLIMIT_STACK).  The resident size is the same, but
 * 1000 threads reserve 1.6 GB of address space instead of 8.7 GB,
 * which matters under strict overcommit or a ulimit -v.  The deepest
 * stack seen was 32 KiB resident (nbdcopy, qemu-io, qemu-img and
 * nbdinfo over a file, over a remote NBD backing, and under TLS with
 * GnuTLS), and qemu's NBD server runs on 1 MiB coroutine stacks too.
 * RLIMIT_NOFILE is the CLI's to raise (cli/serve.c).
 *
 * Shutdown: stop accepting, stop reading requests (shutdown(SHUT_RD)
 * wakes readers), let requests in flight complete and their replies go
 * out; a client that does not read its replies is given up after the
 * shutdown timeout.
 *
 * Unit reset: the server subscribes to the instance's events from create
 * to destroy.  RUMPBLK_EVENT_RESET for a unit it exports drops every
 * connection to that unit's export at once (nbd_conn_reset: shut the
 * socket down, discard the replies), in the thread that raised the
 * event and without waiting for anything, under s_lock so that no
 * connection is freed meanwhile.  Connections to other exports, and
 * those still negotiating (no export yet: they have sent no request),
 * are left alone.  Clients that connect afterwards are served as usual.
 *
 * Contents: events; create, listeners, stop; admission; connection
 * threads, reaping; the accept loop; nbd_serve_fd; destroy.
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

#define NBD_LOG_PER_SEC	10	/* admission lines of a kind, a second */
#define NBD_ACCEPT_BURST 64	/* clients accepted per poll() */
#define NBD_CONN_STACK	(1u << 20) /* a connection thread's stack */

/* The instance's events (any thread, no library lock held). */
static void
server_event(void *arg, int unit, int event)
{
	struct nbd_server *s = arg;
	struct nbd_conn *c;
	unsigned n = 0;

	if (event != RUMPBLK_EVENT_RESET)
		return;
	pthread_mutex_lock(&s->s_lock);
	for (c = s->s_conns; c != NULL; c = c->c_next) {
		if (c->c_ended || c->c_exp == NULL || c->c_exp->e_unit != unit)
			continue;
		nbd_conn_reset(c);
		n++;
	}
	for (c = s->s_conns; c != NULL; c = c->c_next)
		if (!c->c_ended && c->c_exp != NULL &&
		    c->c_exp->e_unit == unit)
			nbd_conn_reset_fence(c);
	pthread_mutex_unlock(&s->s_lock);
	for (unsigned i = 0; i < s->s_nexp; i++)
		if (s->s_exp[i].e_unit == unit) {
			nbd_log(s, "unit %d was reset: dropped %u "
			    "connection%s", unit, n, n == 1 ? "" : "s");
			break;
		}
}

static void
export_fini(struct nbd_export *e)
{
	fe_rl_fini(&e->e_rl);
	free(e->e_desc);
	free(e->e_name);
}

/* One export from its config; 0 or an errno, nothing to undo then. */
static int
export_init(struct nbd_server *s, struct nbd_export *e,
    const struct nbd_export_config *ec)
{
	int error;

	memset(e, 0, sizeof(*e));
	if ((error = rumpblk_unitinfo(s->s_cfg.rb, ec->unit, &e->e_ui)) != 0)
		return error;
	if ((e->e_name = strdup(ec->name != NULL ? ec->name : "")) == NULL ||
	    (ec->description != NULL &&
	    (e->e_desc = strdup(ec->description)) == NULL)) {
		free(e->e_name);
		return ENOMEM;
	}
	e->e_unit = ec->unit;
	e->e_size = e->e_ui.ui_size;
	e->e_secsize = e->e_ui.ui_secsize;
	e->e_ro = ec->read_only || (e->e_ui.ui_mode & RUMPBLK_FWRITE) == 0;
	/* A remote backing passes TRIM on (or says EOPNOTSUPP, which a
	 * TRIM, advice, answers with success). */
	e->e_can_trim = e->e_ui.ui_ftype == RUMPBLK_FT_REG ||
	    e->e_ui.ui_ftype == RUMPBLK_FT_BLK ||
	    e->e_ui.ui_ftype == RUMPBLK_FT_NBD ||
	    e->e_ui.ui_ftype == RUMPBLK_FT_RBD;
	/* O_DIRECT reads wait for the device: never in the reader. */
	e->e_async_reads = e->e_ui.ui_backend == RUMPBLK_BACKEND_DIRECT;
	fe_rl_init(&e->e_rl);
	return 0;
}

/* The config's exports: its own unit first, then cfg->more. */
static int
exports_init(struct nbd_server *s, const struct nbd_server_config *cfg)
{
	struct nbd_export_config ec;
	unsigned i, j;
	int error;

	for (i = 0; i < cfg->nmore; i++) {
		if (cfg->more[i].name == NULL || cfg->more[i].name[0] == '\0' ||
		    (cfg->name != NULL &&
		    strcmp(cfg->more[i].name, cfg->name) == 0))
			return EINVAL;
		for (j = 0; j < i; j++)
			if (strcmp(cfg->more[i].name, cfg->more[j].name) == 0)
				return EINVAL;
	}
	if ((s->s_exp = calloc(cfg->nmore + 1, sizeof(*s->s_exp))) == NULL)
		return ENOMEM;
	for (i = 0; i <= cfg->nmore; i++) {
		if (i == 0) {
			ec.unit = cfg->unit;
			ec.name = cfg->name;
			ec.description = cfg->description;
			ec.read_only = cfg->read_only;
		} else
			ec = cfg->more[i - 1];
		if ((error = export_init(s, &s->s_exp[i], &ec)) != 0)
			return error;
		s->s_nexp++;
	}
	return 0;
}

static void
exports_fini(struct nbd_server *s)
{
	for (unsigned i = 0; i < s->s_nexp; i++)
		export_fini(&s->s_exp[i]);
	free(s->s_exp);
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
	s->s_cfg.more = NULL;		/* copied into s_exp */
	s->s_stoppipe[0] = s->s_stoppipe[1] = s->s_wakefd = -1;
	if ((error = exports_init(s, cfg)) != 0)
		goto fail;
	s->s_bytegran = cfg->byte_granular;
	s->s_max_inflight = cfg->max_inflight != 0 ? cfg->max_inflight :
	    NBD_MAX_PAYLOAD + (1u << 20);
	if (s->s_cfg.max_connections == 0)
		s->s_cfg.max_connections = 64;
	if (s->s_cfg.max_handshakes == 0)
		s->s_cfg.max_handshakes = NBD_DEFAULT_MAX_HANDSHAKES;
	if (s->s_cfg.handshake_timeout_ms == 0)
		s->s_cfg.handshake_timeout_ms = NBD_DEFAULT_HANDSHAKE_MS;
	if (s->s_cfg.handshake_timeout_ms != NBD_NO_TIMEOUT)
		s->s_hs_timeout_ns = (uint64_t)s->s_cfg.handshake_timeout_ms *
		    1000000u;
	s->s_hs_tail = &s->s_hs_head;
	if (pipe2(s->s_stoppipe, O_CLOEXEC | O_NONBLOCK) == -1 ||
	    (s->s_wakefd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) == -1) {
		error = errno;
		goto fail;
	}
	pthread_mutex_init(&s->s_lock, NULL);
	pthread_cond_init(&s->s_cv, NULL);
	/* Last: the callback may run as soon as this returns. */
	if ((error = rumpblk_event_subscribe(cfg->rb, server_event, s,
	    &s->s_evid)) != 0)
		goto fini_locks;
	*sp = s;
	return 0;
fini_locks:
	pthread_cond_destroy(&s->s_cv);
	pthread_mutex_destroy(&s->s_lock);
fail:
	if (s->s_wakefd != -1)
		close(s->s_wakefd);
	if (s->s_stoppipe[0] != -1) {
		close(s->s_stoppipe[0]);
		close(s->s_stoppipe[1]);
	}
	exports_fini(s);
	free(s);
	return error;
}

struct nbd_export *
nbd_export_find(struct nbd_server *s, const char *name, size_t len)
{
	if (s->s_nexp == 1 || len == 0)
		return &s->s_exp[0];
	for (unsigned i = 0; i < s->s_nexp; i++)
		if (strlen(s->s_exp[i].e_name) == len &&
		    memcmp(s->s_exp[i].e_name, name, len) == 0)
			return &s->s_exp[i];
	return NULL;
}

uint16_t
nbd_export_tflags(const struct nbd_export *e, bool structured)
{
	uint16_t f = NBD_FLAG_HAS_FLAGS | NBD_FLAG_CAN_MULTI_CONN;

	if (e->e_ro)
		f |= NBD_FLAG_READ_ONLY;
	else {
		f |= NBD_FLAG_SEND_FLUSH | NBD_FLAG_SEND_FUA |
		    NBD_FLAG_SEND_WRITE_ZEROES;
		if (e->e_can_trim)
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
	/* A burst of clients must wait in the backlog, not in SYN
	 * retries; the accept loop takes a burst at a time (non-
	 * blocking; accepted sockets do not inherit O_NONBLOCK). */
	if (listen(fd, SOMAXCONN) == -1 ||
	    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) == -1)
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

/*
 * Admission.  Connections in the handshake wait in s_hs_head's queue,
 * oldest first (every one has the same time limit, so it is also the
 * order of their deadlines); admission takes a connection off it.
 */

static void
hs_insert_locked(struct nbd_server *s, struct nbd_conn *c)
{
	c->c_hs_next = NULL;
	c->c_hs_prevp = s->s_hs_tail;
	*s->s_hs_tail = c;
	s->s_hs_tail = &c->c_hs_next;
	s->s_nhs++;
}

static void
hs_remove_locked(struct nbd_server *s, struct nbd_conn *c)
{
	if (c->c_hs_prevp == NULL)
		return;
	if (c->c_hs_next != NULL)
		c->c_hs_next->c_hs_prevp = c->c_hs_prevp;
	else
		s->s_hs_tail = c->c_hs_prevp;
	*c->c_hs_prevp = c->c_hs_next;
	c->c_hs_next = NULL;
	c->c_hs_prevp = NULL;
	s->s_nhs--;
}

/*
 * Close a connection still in the handshake, from the accept loop: its
 * place is free at once, and shutting the socket down wakes its reader
 * wherever it waits (a read, or room to send), which then ends it as it
 * would a client that left.  The descriptor stays open until reap().
 */
static void
close_handshake_locked(struct nbd_server *s, struct nbd_conn *c)
{
	hs_remove_locked(s, c);
	c->c_adm = NBD_ADM_CLOSED;
	shutdown(c->c_fd, SHUT_RDWR);
}

/* A connection ends: its place in the handshake or transmission. */
static void
leave_locked(struct nbd_server *s, struct nbd_conn *c)
{
	hs_remove_locked(s, c);
	if (c->c_adm == NBD_ADM_ADMITTED)
		s->s_ntrans--;
	c->c_adm = NBD_ADM_CLOSED;
}

/*
 * Whether to log one more line of a kind: at most NBD_LOG_PER_SEC a
 * second, so that a flood of connections is not a flood of lines.
 * True to log it, with *quietp the lines of the kind left out since the
 * last one logged.
 */
static bool
lograte_locked(struct nbd_lograte *lr, unsigned *quietp)
{
	uint64_t sec = nbd_now_ns() / 1000000000u;

	if (sec != lr->lr_sec) {
		lr->lr_sec = sec;
		lr->lr_lines = 0;
	}
	if (lr->lr_lines >= NBD_LOG_PER_SEC) {
		lr->lr_quiet++;
		return false;
	}
	lr->lr_lines++;
	*quietp = lr->lr_quiet;
	lr->lr_quiet = 0;
	return true;
}

/*
 * The lines the rate limit left out, counted once their second is over
 * (else a burst's count would wait for the next line of its kind), or
 * now if all; returns the milliseconds until that is due, or -1.
 * Accept loop.
 */
static int
lograte_flush(struct nbd_server *s, bool all)
{
	static const char *const what[] = {
		"closed: no handshake in time (--handshake-timeout)",
		"closed for new clients (--max-handshakes)",
		"refused (--max-connections)",
	};
	struct nbd_lograte *lr[] = {
		&s->s_lr_timeout, &s->s_lr_evict, &s->s_lr_refuse,
	};
	unsigned n[3];
	uint64_t now = nbd_now_ns();
	int i, due = -1;

	pthread_mutex_lock(&s->s_lock);
	for (i = 0; i < 3; i++) {
		n[i] = 0;
		if (lr[i]->lr_quiet == 0)
			continue;
		if (!all && lr[i]->lr_sec == now / 1000000000u) {
			due = (int)(1000 - now / 1000000u % 1000);
			continue;
		}
		n[i] = lr[i]->lr_quiet;
		lr[i]->lr_quiet = 0;
	}
	pthread_mutex_unlock(&s->s_lock);
	for (i = 0; i < 3; i++)
		if (n[i] != 0)
			nbd_log(s, "%u more clients %s, not logged one by one",
			    n[i], what[i]);
	return due;
}

/*
 * "client ID (PEER)", and how many lines like the one it starts were
 * left out: copied under s_lock, logged after (a log that blocks must
 * not hold up the server).
 */
static void
who_locked(const struct nbd_conn *c, char *buf, size_t len, unsigned quiet)
{
	if (quiet == 0)
		snprintf(buf, len, "client %u (%s)", c->c_id, c->c_peer);
	else
		snprintf(buf, len, "(%u lines like this one not logged) "
		    "client %u (%s)", quiet, c->c_id, c->c_peer);
}

/*
 * Close the handshakes past their deadline, each logged (rate-limited);
 * returns the milliseconds until the next deadline, for poll(), or -1
 * for none.  Accept loop only.
 */
static int
expire_handshakes(struct nbd_server *s)
{
	struct nbd_conn *c;
	uint64_t now, left;
	unsigned quiet;
	char who[128];
	bool say;

	for (;;) {
		now = nbd_now_ns();
		pthread_mutex_lock(&s->s_lock);
		c = s->s_hs_head;
		if (c == NULL || c->c_hs_expire == UINT64_MAX) {
			pthread_mutex_unlock(&s->s_lock);
			return -1;
		}
		if (c->c_hs_expire > now) {
			pthread_mutex_unlock(&s->s_lock);
			left = (c->c_hs_expire - now + 999999) / 1000000;
			return left > 60000 ? 60000 : (int)left;
		}
		close_handshake_locked(s, c);
		if ((say = lograte_locked(&s->s_lr_timeout, &quiet)))
			who_locked(c, who, sizeof(who), quiet);
		pthread_mutex_unlock(&s->s_lock);
		if (say)
			nbd_log(s, "%s: closed: no handshake within %u.%03u s "
			    "(--handshake-timeout)", who,
			    s->s_cfg.handshake_timeout_ms / 1000,
			    s->s_cfg.handshake_timeout_ms % 1000);
	}
}

bool
nbd_conn_admit(struct nbd_conn *c, struct nbd_export *e)
{
	struct nbd_server *s = c->c_srv;
	unsigned quiet;
	char who[128];
	bool say = false, ok = false;

	pthread_mutex_lock(&s->s_lock);
	switch (c->c_adm) {
	case NBD_ADM_ADMITTED:
		c->c_exp = e;
		ok = true;
		break;
	case NBD_ADM_CLOSED:
		break;			/* said when it was closed */
	case NBD_ADM_HANDSHAKE:
		if (s->s_ntrans >= s->s_cfg.max_connections) {
			if ((say = lograte_locked(&s->s_lr_refuse, &quiet)))
				who_locked(c, who, sizeof(who), quiet);
			break;
		}
		hs_remove_locked(s, c);
		c->c_exp = e;
		c->c_adm = NBD_ADM_ADMITTED;
		s->s_ntrans++;
		ok = true;
		break;
	default:
		abort();
	}
	pthread_mutex_unlock(&s->s_lock);
	if (say)
		nbd_log(s, "%s: refused: %u clients in transmission already "
		    "(--max-connections)", who, s->s_cfg.max_connections);
	return ok;
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
	leave_locked(s, c);
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

/* Accept a client: true if there may be more to accept now. */
static bool
accept_one(struct nbd_server *s, int lfd)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	struct nbd_conn *c, *old;
	pthread_attr_t attr;
	char who[128];
	unsigned quiet;
	int fd, one = 1, error;
	bool tcp, evicted = false;

	if ((fd = accept4(lfd, (struct sockaddr *)&ss, &sl,
	    SOCK_CLOEXEC)) == -1) {
		error = errno;
		/*
		 * Out of descriptors: the oldest handshake makes room here
		 * too (its descriptor is free once reap() has it).  Out of
		 * anything, the listener stays readable, so pause rather
		 * than spin.
		 */
		if (error == EMFILE || error == ENFILE) {
			pthread_mutex_lock(&s->s_lock);
			if ((old = s->s_hs_head) != NULL) {
				close_handshake_locked(s, old);
				if (lograte_locked(&s->s_lr_evict, &quiet)) {
					who_locked(old, who, sizeof(who),
					    quiet);
					evicted = true;
				}
			}
			pthread_mutex_unlock(&s->s_lock);
			if (evicted)
				nbd_log(s, "%s: closed for a new client: out "
				    "of file descriptors", who);
		}
		if (error == EMFILE || error == ENFILE || error == ENOBUFS ||
		    error == ENOMEM)
			poll(NULL, 0, 100);
		return error == ECONNABORTED || error == EINTR;
	}
	tcp = ss.ss_family == AF_INET || ss.ss_family == AF_INET6;
	if (tcp)
		(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one,
		    sizeof(one));
	if ((c = nbd_conn_new(s, fd, tcp)) == NULL) {
		close(fd);
		return false;
	}
	c->c_has_reader = true;
	peer_name(&ss, c->c_peer, sizeof(c->c_peer));
	pthread_attr_init(&attr);
	(void)pthread_attr_setstacksize(&attr, NBD_CONN_STACK);
	pthread_mutex_lock(&s->s_lock);
	c->c_id = ++s->s_nextid;
	/* Every client gets its handshake; an old one may make room. */
	if (s->s_nhs >= s->s_cfg.max_handshakes && s->s_hs_head != NULL) {
		old = s->s_hs_head;
		close_handshake_locked(s, old);
		if (lograte_locked(&s->s_lr_evict, &quiet)) {
			who_locked(old, who, sizeof(who), quiet);
			evicted = true;
		}
	}
	if (pthread_create(&c->c_reader, &attr, conn_main, c) != 0) {
		pthread_mutex_unlock(&s->s_lock);
		pthread_attr_destroy(&attr);
		nbd_log(s, "cannot start a thread for a client");
		nbd_conn_free(c);
		return false;
	}
	s->s_nconns++;
	c->c_next = s->s_conns;
	s->s_conns = c;
	hs_insert_locked(s, c);
	pthread_mutex_unlock(&s->s_lock);
	pthread_attr_destroy(&attr);
	if (evicted)
		nbd_log(s, "%s: closed for a new client: %u handshakes "
		    "under way already (--max-handshakes)", who,
		    s->s_cfg.max_handshakes);
	return true;
}

int
nbd_server_run(struct nbd_server *s, int extra_fd)
{
	struct pollfd p[NBD_MAX_LISTENERS + 3];
	struct nbd_conn *c;
	uint64_t v;
	ssize_t n;
	int i, k, np, timeout;

	for (;;) {
		timeout = expire_handshakes(s);
		if ((k = lograte_flush(s, false)) != -1 &&
		    (timeout == -1 || k < timeout))
			timeout = k;
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
		if (poll(p, (nfds_t)np, timeout) == -1) {
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
			for (k = 0; k < NBD_ACCEPT_BURST &&
			    (p[i].revents & POLLIN) && accept_one(s,
			    s->s_lfd[i]); k++)
				;
	}

	/* Shut down: no new clients, no new requests. */
	(void)lograte_flush(s, true);
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
	leave_locked(s, c);
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
	pthread_cond_destroy(&s->s_cv);
	pthread_mutex_destroy(&s->s_lock);
	exports_fini(s);
	free(s);
}
