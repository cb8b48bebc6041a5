/*
 * TLS for the NBD server: the credentials a server offers to clients
 * that send NBD_OPT_STARTTLS, loaded once before it serves (tls.c).  The
 * rumpblk(1) command's --tls, --tls-certificates, --tls-psk and
 * --tls-verify-peer, spelled as nbdkit and qemu-nbd spell them.
 *
 * Threads: nbd_tls_create() and nbd_tls_destroy() belong to the thread
 * that creates the servers; a created struct nbd_tls is read-only and
 * shared by every connection of every server it is given to.
 */
#ifndef RUMPBLK_NBD_TLS_H
#define RUMPBLK_NBD_TLS_H

#include <stdbool.h>
#include <stddef.h>

enum nbd_tls_mode {
	NBD_TLS_OFF,		/* STARTTLS gets NBD_REP_ERR_UNSUP */
	NBD_TLS_ON,		/* plaintext clients and TLS clients */
	NBD_TLS_REQUIRE,	/* every option before STARTTLS refused */
};

struct nbd_tls_config {
	enum nbd_tls_mode mode;		/* ON or REQUIRE */
	/* Exactly one of these two. */
	const char	*certdir;	/* ca-cert.pem, server-cert.pem,
					   server-key.pem, ca-crl.pem
					   (optional) */
	const char	*pskfile;	/* psktool's USERNAME:HEXKEY lines */
	bool		verify_peer;	/* clients must show a certificate
					   that ca-cert.pem signed */
};

struct nbd_tls;

/*
 * Check that cfg's options go together (mode OFF with no other option;
 * ON or REQUIRE with exactly one of certdir and pskfile; verify_peer
 * only with certdir): 0, or EINVAL with one line in msg naming them.
 * Reads no file.
 */
int	nbd_tls_check_config(const struct nbd_tls_config *cfg, char *msg,
	    size_t msglen);

/*
 * Load and check the credentials of cfg (nbd_tls_check_config first).
 * 0, or an errno with one line in msg (no newline) that names the
 * option and the file at fault:
 * "--tls-certificates: /etc/x/server-key.pem: Permission denied".
 * Errors: EINVAL for a bad combination or a bad file, the errno of a
 * file that cannot be read, ENOMEM.
 */
int	nbd_tls_create(const struct nbd_tls_config *cfg, struct nbd_tls **tp,
	    char *msg, size_t msglen);

/* Free (NULL is fine), after every server that uses it is destroyed. */
void	nbd_tls_destroy(struct nbd_tls *);

/* The mode it was created with. */
enum nbd_tls_mode nbd_tls_get_mode(const struct nbd_tls *);

/* The PSK file's first username (for a client's URI), or NULL with
 * certificates. */
const char *nbd_tls_psk_user(const struct nbd_tls *);

#endif /* RUMPBLK_NBD_TLS_H */
