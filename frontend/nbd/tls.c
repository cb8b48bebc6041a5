/*
 * TLS for the NBD server (NBD_OPT_STARTTLS, proto.md "TLS support"),
 * with GnuTLS: the credentials, loaded once and shared read-only by every
 * connection; a connection's TLS handshake; and its record layer as the
 * rest of the server sees it: recv()-like reads for wire.c and
 * fe_sendmsg()-like sends for wire.c and reply.c.  It is not where
 * STARTTLS is negotiated or refused (handshake.c) and knows nothing of
 * NBD messages.
 *
 * Contents:
 *   1. credentials: checking the options, certificates, the PSK file
 *   2. a connection's session: the TLS handshake, close_notify, free
 *   3. the record layer: receiving, sending
 *
 * Where TLS sits: between the NBD code and the socket.  Once STARTTLS
 * succeeds a connection's c_tls is set, and the places that touch the
 * socket (wire.c's buffered reads and its blocking send, reply.c's
 * send_some of the out queue, whoever sends it) test that one pointer
 * and come here.  A plaintext connection takes the path it always took:
 * no copy, no indirect call, one pointer test per system call.
 *
 * Threads: GnuTLS lets one thread receive while another sends on the
 * same session, but not two senders at once (GnuTLS manual, "Thread
 * safety").  The reader thread is the only receiver.  Sends need no lock
 * of their own: reply.c's socket ownership (c_owner) already lets one
 * thread at a time send (the reader while corked, a thread completing a
 * request, or the writer thread), and that thread is the only caller of
 * nbd_tls_sendmsg() (and the only user of c_tls_buf) until it hands
 * ownership on under c_lock.  The handshake runs in the reader before
 * any other thread of the connection exists, and close_notify is sent
 * by the writer thread when it is the last thread to send.  TLS 1.2
 * renegotiation would need both directions in one thread, so a client
 * that asks for it is dropped; TLS 1.3 key updates GnuTLS answers on the
 * next send, which fits one reader and one sender.
 *
 * The trade-off is in sending: gnutls_record_send() takes one buffer, a
 * reply is an iovec (a 16-byte header, then the data where the read put
 * it).  Pieces shorter than a record are gathered into a buffer of one
 * record (c_tls_buf: a copy of those bytes, beside the cipher's own pass
 * over them), so that a header and its data go out as one record and one
 * system call; data of a whole record or more is encrypted straight from
 * the request's buffer.
 *
 * A record the socket could not take (GNUTLS_E_AGAIN) stays in GnuTLS,
 * already encrypted; the next send on the session flushes it first and
 * returns its length, whatever it was given.  That is right because the
 * next send starts at the same byte: reply.c keeps unsent replies at the
 * head of its queue, wire.c's loop retries the same iovec, and only the
 * socket's owner sends.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gnutls/gnutls.h>
#include <gnutls/x509.h>

#include "nbd-int.h"
#include "say.h"
#include "sendv.h"
#include "tls.h"

/* The largest plaintext of a TLS record (RFC 8446 5.1): what one
 * gnutls_record_send() takes. */
#define NBD_TLS_RECORD		16384
/* A TLS handshake takes two round trips; it is bounded by the
 * connection's handshake deadline, and by this. */
#define NBD_TLS_HANDSHAKE_MS	30000
/* Credential files are small; more is not one. */
#define NBD_TLS_FILE_MAX	(1u << 20)
#define NBD_PSK_USER_MAX	128
#define NBD_PSK_KEY_MAX		512	/* bytes */

/*
 * TLS 1.2 and later (proto.md: SHOULD NOT offer older versions by
 * default).  With PSK, the PSK key exchanges too, forward-secret first.
 */
#define NBD_TLS_PRIORITY	"NORMAL:-VERS-TLS1.1:-VERS-TLS1.0"
#define NBD_TLS_PRIORITY_PSK	NBD_TLS_PRIORITY ":+ECDHE-PSK:+DHE-PSK:+PSK"

struct nbd_psk_key {
	char		*k_user;
	unsigned char	*k_key;
	size_t		k_len;		/* bytes */
};

/* Read-only once created. */
struct nbd_tls {
	enum nbd_tls_mode t_mode;
	bool		t_verify;
	gnutls_certificate_credentials_t t_x509; /* or NULL */
	gnutls_psk_server_credentials_t t_psk;	/* or NULL */
	struct nbd_psk_key *t_keys;
	size_t		t_nkeys;
	gnutls_priority_t t_prio;
};

/* 1. Credentials. */

/*
 * The whole of a credential file, NUL-terminated, in d (gnutls_free it).
 * 0, or an errno with the message "OPT: PATH: why".
 */
static int
read_file(const char *opt, const char *path, gnutls_datum_t *d, char *msg,
    size_t msglen)
{
	struct stat sb;
	size_t got = 0;
	ssize_t n;
	int fd, error;

	d->data = NULL;
	d->size = 0;
	if ((fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY)) == -1)
		return fe_say(msg, msglen, errno, "%s: %s: %s", opt, path,
		    strerror(errno));
	if (fstat(fd, &sb) == -1) {
		error = fe_say(msg, msglen, errno, "%s: %s: %s", opt, path,
		    strerror(errno));
		goto close_fd;
	}
	if (!S_ISREG(sb.st_mode)) {
		error = fe_say(msg, msglen, S_ISDIR(sb.st_mode) ? EISDIR : EINVAL,
		    "%s: %s: %s", opt, path, S_ISDIR(sb.st_mode) ?
		    strerror(EISDIR) : "not a regular file");
		goto close_fd;
	}
	if (sb.st_size > NBD_TLS_FILE_MAX) {
		error = fe_say(msg, msglen, EFBIG, "%s: %s: larger than %u "
		    "bytes, not a credential file", opt, path,
		    NBD_TLS_FILE_MAX);
		goto close_fd;
	}
	if ((d->data = gnutls_malloc((size_t)sb.st_size + 1)) == NULL) {
		error = fe_say(msg, msglen, ENOMEM, "%s: %s: out of memory", opt,
		    path);
		goto close_fd;
	}
	while (got < (size_t)sb.st_size) {
		n = read(fd, d->data + got, (size_t)sb.st_size - got);
		if (n == -1 && errno == EINTR)
			continue;
		if (n <= 0) {
			error = fe_say(msg, msglen, n == 0 ? EIO : errno,
			    "%s: %s: %s", opt, path, n == 0 ?
			    "shorter than its size" : strerror(errno));
			goto free_data;
		}
		got += (size_t)n;
	}
	d->data[got] = '\0';
	d->size = (unsigned)got;
	close(fd);
	return 0;
free_data:
	gnutls_free(d->data);
	d->data = NULL;
close_fd:
	close(fd);
	return error;
}

/* Wipe and free a file's contents (keys are in some). */
static void
free_file(gnutls_datum_t *d)
{
	if (d->data != NULL) {
		explicit_bzero(d->data, d->size);
		gnutls_free(d->data);
	}
	d->data = NULL;
	d->size = 0;
}

/*
 * The combinations the options allow; 0 or EINVAL with the message.
 * PSK and certificates are not taken together: a PSK server has no
 * certificate to show and a certificate server no keys to check, and
 * nbdkit's silent "PSK wins" hides a typo; ask for one.
 */
int
nbd_tls_check_config(const struct nbd_tls_config *cfg, char *msg,
    size_t msglen)
{
	if (cfg->mode == NBD_TLS_OFF) {
		if (cfg->certdir != NULL)
			return fe_say(msg, msglen, EINVAL, "--tls-certificates: "
			    "TLS is off; add --tls=on or --tls=require");
		if (cfg->pskfile != NULL)
			return fe_say(msg, msglen, EINVAL, "--tls-psk: TLS is "
			    "off; add --tls=on or --tls=require");
		if (cfg->verify_peer)
			return fe_say(msg, msglen, EINVAL, "--tls-verify-peer: "
			    "TLS is off; add --tls=on or --tls=require");
		return 0;
	}
	if (cfg->certdir != NULL && cfg->pskfile != NULL)
		return fe_say(msg, msglen, EINVAL, "--tls-psk and "
		    "--tls-certificates: give one of them, not both");
	if (cfg->certdir == NULL && cfg->pskfile == NULL)
		return fe_say(msg, msglen, EINVAL, "--tls=%s: needs "
		    "--tls-certificates DIR or --tls-psk FILE",
		    cfg->mode == NBD_TLS_ON ? "on" : "require");
	if (cfg->verify_peer && cfg->certdir == NULL)
		return fe_say(msg, msglen, EINVAL, "--tls-verify-peer: needs "
		    "--tls-certificates DIR (client certificates are checked "
		    "against its ca-cert.pem)");
	return 0;
}

/* DIR/NAME into buf; 0 or ENAMETOOLONG said. */
static int
cert_path(char *buf, size_t len, const char *dir, const char *name,
    char *msg, size_t msglen)
{
	if ((size_t)snprintf(buf, len, "%s/%s", dir, name) >= len)
		return fe_say(msg, msglen, ENAMETOOLONG, "--tls-certificates: "
		    "%s: %s", dir, strerror(ENAMETOOLONG));
	return 0;
}

/*
 * --tls-certificates DIR: trust ca-cert.pem (it checks client
 * certificates), revoke ca-crl.pem if there is one, show server-cert.pem
 * with server-key.pem.  Each file is read and parsed on its own first,
 * so that a message names the file that is wrong.
 */
static int
load_certificates(struct nbd_tls *t, const char *dir, char *msg,
    size_t msglen)
{
	static const char opt[] = "--tls-certificates";
	char ca[4096], crl[4096], cert[4096], key[4096];
	gnutls_datum_t d_ca = { NULL, 0 }, d_crl = { NULL, 0 };
	gnutls_datum_t d_cert = { NULL, 0 }, d_key = { NULL, 0 };
	gnutls_x509_crt_t *crts = NULL;
	gnutls_x509_privkey_t pk = NULL;
	unsigned ncrts = 0, i;
	struct stat sb;
	int r, error;

	if (stat(dir, &sb) == -1)
		return fe_say(msg, msglen, errno, "%s: %s: %s", opt, dir,
		    strerror(errno));
	if (!S_ISDIR(sb.st_mode))
		return fe_say(msg, msglen, ENOTDIR, "%s: %s: %s", opt, dir,
		    strerror(ENOTDIR));
	if ((error = cert_path(ca, sizeof(ca), dir, "ca-cert.pem", msg,
	    msglen)) != 0 || (error = cert_path(crl, sizeof(crl), dir,
	    "ca-crl.pem", msg, msglen)) != 0 || (error = cert_path(cert,
	    sizeof(cert), dir, "server-cert.pem", msg, msglen)) != 0 ||
	    (error = cert_path(key, sizeof(key), dir, "server-key.pem", msg,
	    msglen)) != 0)
		return error;
	if ((error = read_file(opt, ca, &d_ca, msg, msglen)) != 0 ||
	    (error = read_file(opt, cert, &d_cert, msg, msglen)) != 0 ||
	    (error = read_file(opt, key, &d_key, msg, msglen)) != 0)
		goto out;
	if (access(crl, F_OK) == 0 &&
	    (error = read_file(opt, crl, &d_crl, msg, msglen)) != 0)
		goto out;

	if ((r = gnutls_certificate_allocate_credentials(&t->t_x509)) < 0) {
		error = fe_say(msg, msglen, ENOMEM, "%s: %s", opt,
		    gnutls_strerror(r));
		goto out;
	}
	error = EINVAL;
	if ((r = gnutls_certificate_set_x509_trust_mem(t->t_x509, &d_ca,
	    GNUTLS_X509_FMT_PEM)) <= 0) {
		fe_say(msg, msglen, error, "%s: %s: %s", opt, ca, r == 0 ?
		    "no PEM certificate in it" : gnutls_strerror(r));
		goto out;
	}
	if (d_crl.data != NULL && (r = gnutls_certificate_set_x509_crl_mem(
	    t->t_x509, &d_crl, GNUTLS_X509_FMT_PEM)) < 0) {
		fe_say(msg, msglen, error, "%s: %s: %s", opt, crl,
		    gnutls_strerror(r));
		goto out;
	}
	if ((r = gnutls_x509_crt_list_import2(&crts, &ncrts, &d_cert,
	    GNUTLS_X509_FMT_PEM, 0)) < 0 || ncrts == 0) {
		fe_say(msg, msglen, error, "%s: %s: %s", opt, cert, r < 0 ?
		    gnutls_strerror(r) : "no PEM certificate in it");
		goto out;
	}
	if ((r = gnutls_x509_privkey_init(&pk)) < 0 ||
	    (r = gnutls_x509_privkey_import2(pk, &d_key, GNUTLS_X509_FMT_PEM,
	    NULL, 0)) < 0) {
		fe_say(msg, msglen, error, "%s: %s: %s", opt, key,
		    r == GNUTLS_E_DECRYPTION_FAILED ? "the key is encrypted "
		    "(rumpblk takes no password)" : gnutls_strerror(r));
		goto out;
	}
	if ((r = gnutls_certificate_set_x509_key_mem2(t->t_x509, &d_cert,
	    &d_key, GNUTLS_X509_FMT_PEM, NULL, 0)) < 0) {
		fe_say(msg, msglen, error, "%s: %s and %s: %s", opt, cert, key,
		    gnutls_strerror(r));
		goto out;
	}
	error = 0;
out:
	if (pk != NULL)
		gnutls_x509_privkey_deinit(pk);
	for (i = 0; i < ncrts; i++)
		gnutls_x509_crt_deinit(crts[i]);
	gnutls_free(crts);
	free_file(&d_key);
	free_file(&d_cert);
	free_file(&d_crl);
	free_file(&d_ca);
	return error;
}

static int
hexval(int ch)
{
	if (ch >= '0' && ch <= '9')
		return ch - '0';
	if (ch >= 'a' && ch <= 'f')
		return ch - 'a' + 10;
	if (ch >= 'A' && ch <= 'F')
		return ch - 'A' + 10;
	return -1;
}

/*
 * One line of a PSK file, USERNAME:HEXKEY (psktool's format; the
 * username ends at the first colon), into t->t_keys.  0, or EINVAL or
 * ENOMEM with the message.
 */
static int
psk_line(struct nbd_tls *t, const char *path, unsigned lineno, char *line,
    size_t len, char *msg, size_t msglen)
{
	static const char opt[] = "--tls-psk";
	struct nbd_psk_key *k, *keys;
	char *colon;
	size_t ulen, hlen, i;

	if ((colon = memchr(line, ':', len)) == NULL || colon == line)
		return fe_say(msg, msglen, EINVAL, "%s: %s:%u: expected "
		    "USERNAME:HEXKEY (as psktool writes it)", opt, path,
		    lineno);
	ulen = (size_t)(colon - line);
	hlen = len - ulen - 1;
	if (ulen > NBD_PSK_USER_MAX)
		return fe_say(msg, msglen, EINVAL, "%s: %s:%u: the username is "
		    "longer than %d bytes", opt, path, lineno,
		    NBD_PSK_USER_MAX);
	for (i = 0; i < ulen; i++)
		if ((unsigned char)line[i] < 0x20 || line[i] == 0x7f)
			return fe_say(msg, msglen, EINVAL, "%s: %s:%u: a control "
			    "character in the username", opt, path, lineno);
	if (hlen == 0 || hlen % 2 != 0 || hlen > 2 * NBD_PSK_KEY_MAX)
		return fe_say(msg, msglen, EINVAL, "%s: %s:%u: the key must be "
		    "2 to %d hex digits, an even number", opt, path, lineno,
		    2 * NBD_PSK_KEY_MAX);
	for (i = 0; i < hlen; i++)
		if (hexval((unsigned char)colon[1 + i]) < 0)
			return fe_say(msg, msglen, EINVAL, "%s: %s:%u: '%c' in "
			    "the key is not a hex digit", opt, path, lineno,
			    colon[1 + i]);
	for (i = 0; i < t->t_nkeys; i++)
		if (strlen(t->t_keys[i].k_user) == ulen &&
		    memcmp(t->t_keys[i].k_user, line, ulen) == 0)
			return fe_say(msg, msglen, EINVAL, "%s: %s:%u: user "
			    "'%.*s' has a key already", opt, path, lineno,
			    (int)ulen, line);

	if ((keys = realloc(t->t_keys, (t->t_nkeys + 1) *
	    sizeof(*keys))) == NULL)
		return fe_say(msg, msglen, ENOMEM, "%s: out of memory", opt);
	t->t_keys = keys;
	k = &keys[t->t_nkeys];
	k->k_len = hlen / 2;
	k->k_user = strndup(line, ulen);
	k->k_key = malloc(k->k_len);
	if (k->k_user == NULL || k->k_key == NULL) {
		free(k->k_user);
		free(k->k_key);
		return fe_say(msg, msglen, ENOMEM, "%s: out of memory", opt);
	}
	for (i = 0; i < k->k_len; i++)
		k->k_key[i] = (unsigned char)(hexval((unsigned char)
		    colon[1 + 2 * i]) << 4 | hexval((unsigned char)
		    colon[2 + 2 * i]));
	t->t_nkeys++;
	return 0;
}

/*
 * A connection's TLS handshake, as its callbacks see it (the session's
 * pointer while the handshake runs, NULL after).
 */
struct nbd_tls_hs {
	struct nbd_conn	*hs_conn;
	/* The PSK username the client gave, printable bytes only (for the
	 * log of a failed handshake), or "". */
	char		hs_user[NBD_PSK_USER_MAX + 1];
};

/* The key of a username, for GnuTLS (which frees it); 0 or -1. */
static int
psk_lookup(gnutls_session_t sess, const char *user, gnutls_datum_t *key)
{
	struct nbd_tls_hs *hs = gnutls_session_get_ptr(sess);
	const struct nbd_tls *t;
	size_t i;

	if (hs == NULL)
		return -1;	/* not in the handshake: no renegotiation */
	t = hs->hs_conn->c_srv->s_cfg.tls;
	for (i = 0; user[i] != '\0' && i < sizeof(hs->hs_user) - 1; i++)
		hs->hs_user[i] = user[i] >= 0x20 && user[i] < 0x7f ?
		    user[i] : '?';
	hs->hs_user[i] = '\0';
	for (i = 0; i < t->t_nkeys; i++) {
		if (strcmp(t->t_keys[i].k_user, user) != 0)
			continue;
		if ((key->data = gnutls_malloc(t->t_keys[i].k_len)) == NULL)
			return -1;
		memcpy(key->data, t->t_keys[i].k_key, t->t_keys[i].k_len);
		key->size = (unsigned)t->t_keys[i].k_len;
		return 0;
	}
	return -1;
}

/*
 * --tls-psk FILE: every line is USERNAME:HEXKEY; empty lines and lines
 * that start with '#' are skipped, anything else is an error that names
 * the line.  The keys are read once, here: a server does not find out
 * about a bad file at its first client.
 */
static int
load_psk(struct nbd_tls *t, const char *path, char *msg, size_t msglen)
{
	gnutls_datum_t d;
	char *line, *end, *nl;
	unsigned lineno = 0;
	size_t len;
	int r, error;

	if ((error = read_file("--tls-psk", path, &d, msg, msglen)) != 0)
		return error;
	line = (char *)d.data;
	end = line + d.size;
	for (; line < end; line = nl + 1) {
		lineno++;
		if ((nl = memchr(line, '\n', (size_t)(end - line))) == NULL)
			nl = end;
		len = (size_t)(nl - line);
		if (len > 0 && line[len - 1] == '\r')
			len--;
		if (len == 0 || line[0] == '#')
			continue;
		if (memchr(line, '\0', len) != NULL) {
			error = fe_say(msg, msglen, EINVAL, "--tls-psk: %s:%u: a "
			    "NUL byte; not a PSK file", path, lineno);
			goto out;
		}
		if ((error = psk_line(t, path, lineno, line, len, msg,
		    msglen)) != 0)
			goto out;
	}
	if (t->t_nkeys == 0) {
		error = fe_say(msg, msglen, EINVAL, "--tls-psk: %s: no "
		    "USERNAME:HEXKEY line in it (psktool -u NAME -p %s makes "
		    "one)", path, path);
		goto out;
	}
	if ((r = gnutls_psk_allocate_server_credentials(&t->t_psk)) < 0) {
		error = fe_say(msg, msglen, ENOMEM, "--tls-psk: %s",
		    gnutls_strerror(r));
		goto out;
	}
	gnutls_psk_set_server_credentials_function(t->t_psk, psk_lookup);
out:
	free_file(&d);
	return error;
}

int
nbd_tls_create(const struct nbd_tls_config *cfg, struct nbd_tls **tp,
    char *msg, size_t msglen)
{
	struct nbd_tls *t;
	const char *prio;
	int r, error;

	*tp = NULL;
	if ((error = nbd_tls_check_config(cfg, msg, msglen)) != 0)
		return error;
	if (cfg->mode == NBD_TLS_OFF)
		return fe_say(msg, msglen, EINVAL, "--tls=off: nothing to load");
	if ((t = calloc(1, sizeof(*t))) == NULL)
		return fe_say(msg, msglen, ENOMEM, "--tls: out of memory");
	t->t_mode = cfg->mode;
	t->t_verify = cfg->verify_peer;
	if (cfg->certdir != NULL) {
		error = load_certificates(t, cfg->certdir, msg, msglen);
		prio = NBD_TLS_PRIORITY;
	} else {
		error = load_psk(t, cfg->pskfile, msg, msglen);
		prio = NBD_TLS_PRIORITY_PSK;
	}
	if (error != 0)
		goto fail;
	if ((r = gnutls_priority_init(&t->t_prio, prio, NULL)) < 0) {
		error = fe_say(msg, msglen, EINVAL, "--tls: GnuTLS priorities "
		    "'%s': %s", prio, gnutls_strerror(r));
		goto fail;
	}
	*tp = t;
	return 0;
fail:
	nbd_tls_destroy(t);
	return error;
}

void
nbd_tls_destroy(struct nbd_tls *t)
{
	size_t i;

	if (t == NULL)
		return;
	if (t->t_prio != NULL)
		gnutls_priority_deinit(t->t_prio);
	if (t->t_x509 != NULL)
		gnutls_certificate_free_credentials(t->t_x509);
	if (t->t_psk != NULL)
		gnutls_psk_free_server_credentials(t->t_psk);
	for (i = 0; i < t->t_nkeys; i++) {
		explicit_bzero(t->t_keys[i].k_key, t->t_keys[i].k_len);
		free(t->t_keys[i].k_key);
		free(t->t_keys[i].k_user);
	}
	free(t->t_keys);
	free(t);
}

enum nbd_tls_mode
nbd_tls_get_mode(const struct nbd_tls *t)
{
	return t != NULL ? t->t_mode : NBD_TLS_OFF;
}

const char *
nbd_tls_psk_user(const struct nbd_tls *t)
{
	return t != NULL && t->t_nkeys > 0 ? t->t_keys[0].k_user : NULL;
}

/* 2. A connection's session. */

/* One line about the connection's TLS, at most one per connection
 * (whichever thread meets the first error). */
static void
tls_log(struct nbd_conn *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void
tls_log(struct nbd_conn *c, const char *fmt, ...)
{
	va_list ap;

	if (atomic_exchange(&c->c_tls_logged, true))
		return;
	va_start(ap, fmt);
	fe_vlog(c->c_srv->s_cfg.log, fmt, ap);
	va_end(ap);
}

/* What an error adds to gnutls_strerror(): the alert the client sent,
 * why its certificate was refused, or the PSK username it gave (user,
 * "" for none). */
static void
error_detail(gnutls_session_t sess, int r, const char *user, char *buf,
    size_t len)
{
	gnutls_datum_t out;

	buf[0] = '\0';
	if (user[0] != '\0')
		snprintf(buf, len, " (PSK username '%s')", user);
	else if (r == GNUTLS_E_FATAL_ALERT_RECEIVED ||
	    r == GNUTLS_E_WARNING_ALERT_RECEIVED)
		snprintf(buf, len, " (the client's alert: %s)",
		    gnutls_alert_get_name(gnutls_alert_get(sess)));
	else if (r == GNUTLS_E_CERTIFICATE_VERIFICATION_ERROR &&
	    gnutls_certificate_verification_status_print(
	    gnutls_session_get_verify_cert_status(sess), GNUTLS_CRT_X509,
	    &out, 0) == 0) {
		snprintf(buf, len, " (%s)", (const char *)out.data);
		gnutls_free(out.data);
	}
}

/*
 * GnuTLS's writes: one non-blocking sendmsg() of its iovec.  A full
 * socket is GNUTLS_E_AGAIN for the caller, who waits as it would for
 * plaintext (the writer thread, or the handshake's wait).
 */
static ssize_t
push_vec(gnutls_transport_ptr_t ptr, const giovec_t *iov, int iovcnt)
{
	size_t n;
	int error;

	/* gnutls_transport_set_int() made the descriptor the pointer. */
	if ((error = fe_sendmsg((int)(long)ptr,
	    (struct iovec *)iov, iovcnt, MSG_DONTWAIT, &n)) != 0) {
		errno = error;
		return -1;
	}
	return (ssize_t)n;
}

/*
 * When the NBD handshake must end (ns): its deadline (c_hs_expire, which
 * the accept loop enforces by shutting the socket down), or the
 * reader's own (c_hs_deadline, for nbd_serve_fd), whichever is first.
 */
static uint64_t
handshake_end(const struct nbd_conn *c)
{
	return c->c_hs_expire < c->c_hs_deadline ? c->c_hs_expire :
	    c->c_hs_deadline;
}

/* The TLS handshake's milliseconds: what is left of the NBD
 * handshake's time, at most NBD_TLS_HANDSHAKE_MS. */
static unsigned
handshake_ms(const struct nbd_conn *c)
{
	uint64_t now = nbd_now_ns(), end = handshake_end(c), ms;

	if (end <= now)
		return 1;
	ms = (end - now) / 1000000u;
	if (ms > NBD_TLS_HANDSHAKE_MS)
		ms = NBD_TLS_HANDSHAKE_MS;
	return ms > 0 ? (unsigned)ms : 1;
}

/*
 * gnutls_handshake() could not go on without waiting: for room to send
 * (it waits here, polling so that it sees the deadlines), or for data
 * (the socket's receive timeout ticked; GnuTLS waits for data itself,
 * within its handshake timeout).  0 to go on, or ETIMEDOUT.
 */
static int
handshake_wait(struct nbd_conn *c, gnutls_session_t sess)
{
	struct pollfd p = { .fd = c->c_fd, .events = POLLOUT };

	if (atomic_load(&c->c_srv->s_stopping) ||
	    nbd_now_ns() >= handshake_end(c))
		return ETIMEDOUT;
	if (gnutls_record_get_direction(sess) == 1)
		(void)poll(&p, 1, 100);
	return 0;
}

int
nbd_tls_start(struct nbd_conn *c)
{
	const struct nbd_tls *t = c->c_srv->s_cfg.tls;
	struct nbd_tls_hs hs = { .hs_conn = c, .hs_user = "" };
	gnutls_session_t sess;
	char detail[300];
	int r;

	if ((c->c_tls_buf = malloc(NBD_TLS_RECORD)) == NULL)
		return ENOMEM;
	if ((r = gnutls_init(&sess, GNUTLS_SERVER | GNUTLS_NO_TICKETS)) < 0) {
		tls_log(c, "TLS with %s: %s", c->c_peer, gnutls_strerror(r));
		goto free_buf;
	}
	if ((r = gnutls_priority_set(sess, t->t_prio)) < 0 ||
	    (r = t->t_x509 != NULL ?
	    gnutls_credentials_set(sess, GNUTLS_CRD_CERTIFICATE, t->t_x509) :
	    gnutls_credentials_set(sess, GNUTLS_CRD_PSK, t->t_psk)) < 0) {
		tls_log(c, "TLS with %s: %s", c->c_peer, gnutls_strerror(r));
		goto deinit;
	}
	if (t->t_verify) {
		/* No certificate, or one ca-cert.pem did not sign (or
		 * ca-crl.pem revokes): the handshake fails. */
		gnutls_certificate_server_set_request(sess,
		    GNUTLS_CERT_REQUIRE);
		gnutls_session_set_verify_cert(sess, NULL, 0);
	}
	gnutls_session_set_ptr(sess, &hs);
	gnutls_transport_set_int(sess, c->c_fd);
	gnutls_transport_set_vec_push_function(sess, push_vec);
	gnutls_handshake_set_timeout(sess, handshake_ms(c));
	for (;;) {
		if ((r = gnutls_handshake(sess)) == 0)
			break;
		if (r == GNUTLS_E_AGAIN || r == GNUTLS_E_INTERRUPTED) {
			if (handshake_wait(c, sess) != 0) {
				r = GNUTLS_E_TIMEDOUT;
				goto failed;
			}
			continue;
		}
		if (gnutls_error_is_fatal(r))
			goto failed;
	}
	gnutls_session_set_ptr(sess, NULL);	/* hs goes with this frame */
	c->c_tls = sess;
	return 0;
failed:
	/*
	 * Once, with the peer; not for a server that is going away, nor
	 * past the handshake's deadline, which server.c logs (it shut the
	 * socket down under GnuTLS).
	 */
	if (!atomic_load(&c->c_srv->s_stopping) &&
	    nbd_now_ns() < c->c_hs_expire) {
		error_detail(sess, r, hs.hs_user, detail, sizeof(detail));
		tls_log(c, "TLS handshake with %s failed: %s%s", c->c_peer,
		    gnutls_strerror(r), detail);
	}
deinit:
	gnutls_deinit(sess);
free_buf:
	free(c->c_tls_buf);
	c->c_tls_buf = NULL;
	return ECONNABORTED;
}

void
nbd_tls_bye(struct nbd_conn *c)
{
	struct pollfd p = { .fd = c->c_fd, .events = POLLOUT };
	int i, r;

	if (c->c_tls == NULL)
		return;
	/* close_notify: a record or two; a client that does not read
	 * gets a second, then the socket goes anyway. */
	for (i = 0; i < 10; i++) {
		r = gnutls_bye(c->c_tls, GNUTLS_SHUT_WR);
		if (r != GNUTLS_E_AGAIN && r != GNUTLS_E_INTERRUPTED)
			return;
		(void)poll(&p, 1, 100);
	}
}

void
nbd_tls_conn_free(struct nbd_conn *c)
{
	if (c->c_tls != NULL)
		gnutls_deinit(c->c_tls);
	c->c_tls = NULL;
	free(c->c_tls_buf);
	c->c_tls_buf = NULL;
}

/* 3. The record layer. */

ssize_t
nbd_tls_recv(struct nbd_conn *c, void *buf, size_t len)
{
	char detail[300];
	ssize_t r;

	for (;;) {
		if ((r = gnutls_record_recv(c->c_tls, buf, len)) >= 0)
			return r;	/* 0: close_notify */
		switch (r) {
		case GNUTLS_E_AGAIN:	/* the receive timeout ticked */
			errno = EAGAIN;
			return -1;
		case GNUTLS_E_INTERRUPTED:
			errno = EINTR;
			return -1;
		case GNUTLS_E_WARNING_ALERT_RECEIVED:
			continue;	/* a warning (user_canceled, ...) */
		case GNUTLS_E_PREMATURE_TERMINATION:
		case GNUTLS_E_PULL_ERROR:
			/* The client left without close_notify, maybe in
			 * the middle of a record: as a plaintext client
			 * that leaves mid-request. */
			return 0;
		case GNUTLS_E_REHANDSHAKE:
			tls_log(c, "TLS with %s: the client asked to "
			    "renegotiate, which rumpblk does not do; "
			    "disconnecting it", c->c_peer);
			errno = EPROTO;
			return -1;
		default:
			error_detail(c->c_tls, (int)r, "", detail,
			    sizeof(detail));
			tls_log(c, "TLS with %s: disconnecting it: %s%s",
			    c->c_peer, gnutls_strerror((int)r), detail);
			errno = EPROTO;
			return -1;
		}
	}
}

/* Past n bytes of iov[*ip..iovcnt), from *offp into *ip. */
static void
advance(const struct iovec *iov, int iovcnt, int *ip, size_t *offp,
    size_t n)
{
	size_t k;

	while (n > 0) {
		/* More than was given: the invariant at the head broke. */
		if (*ip == iovcnt)
			abort();
		k = iov[*ip].iov_len - *offp;
		if (k > n)
			k = n;
		*offp += k;
		n -= k;
		if (*offp == iov[*ip].iov_len) {
			(*ip)++;
			*offp = 0;
		}
	}
}

int
nbd_tls_sendmsg(void *arg, const struct iovec *iov, int iovcnt,
    size_t *sentp)
{
	struct nbd_conn *c = arg;
	const char *p;
	size_t off = 0, joff, total = 0, n, k;
	ssize_t r;
	int i = 0, j;

	*sentp = 0;
	for (;;) {
		while (i < iovcnt && off == iov[i].iov_len) {
			i++;
			off = 0;
		}
		if (i == iovcnt)
			break;
		if (iov[i].iov_len - off >= NBD_TLS_RECORD) {
			/* A whole record of data, in place. */
			p = (const char *)iov[i].iov_base + off;
			n = NBD_TLS_RECORD;
		} else {
			/* Pieces into one record. */
			n = 0;
			joff = off;
			for (j = i; j < iovcnt && n < NBD_TLS_RECORD;) {
				k = iov[j].iov_len - joff;
				if (k > NBD_TLS_RECORD - n)
					k = NBD_TLS_RECORD - n;
				memcpy(c->c_tls_buf + n,
				    (const char *)iov[j].iov_base + joff, k);
				n += k;
				joff += k;
				if (joff == iov[j].iov_len) {
					j++;
					joff = 0;
				}
			}
			p = c->c_tls_buf;
		}
		r = gnutls_record_send(c->c_tls, p, n);
		if (r == GNUTLS_E_INTERRUPTED)
			continue;
		if (r == GNUTLS_E_AGAIN)
			break;		/* the record waits in GnuTLS */
		if (r < 0) {
			if (r != GNUTLS_E_PUSH_ERROR)
				tls_log(c, "TLS with %s: disconnecting it: "
				    "sending: %s", c->c_peer,
				    gnutls_strerror((int)r));
			return EPIPE;
		}
		/* r may be a record kept from an earlier call: see the
		 * head of the file. */
		advance(iov, iovcnt, &i, &off, (size_t)r);
		total += (size_t)r;
	}
	if (total == 0 && i < iovcnt)
		return EAGAIN;
	*sentp = total;
	return 0;
}
