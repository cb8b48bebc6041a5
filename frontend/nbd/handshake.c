/*
 * The fixed newstyle handshake: greeting, client flags, then option
 * haggling until EXPORT_NAME or a successful GO.
 *
 * Every export name is accepted and names the one export (DESIGN.md §6);
 * --export only sets what LIST and NBD_INFO_NAME report.  Block size
 * information is always sent with INFO and GO, but only a client that
 * asked for NBD_INFO_BLOCK_SIZE in its GO is held to it (c_obey_bs);
 * every other client gets the protocol's defaults, byte-granular.
 *
 * Abuse is bounded: at most NBD_MAX_OPTIONS options, option data of at
 * most NBD_MAX_OPTLEN bytes (more is a denial of service, answered by a
 * hard disconnect, as proto.md allows), and the time of the whole
 * handshake (server.c).  Malformed options get NBD_REP_ERR_INVALID,
 * unknown ones NBD_REP_ERR_UNSUP, and haggling goes on.  A GO while
 * max_connections clients are in transmission gets NBD_REP_ERR_POLICY
 * (an EXPORT_NAME, which cannot fail, a hang-up).
 *
 * TLS (--tls): STARTTLS is answered with NBD_REP_ACK and the TLS
 * handshake (tls.c), after which haggling starts over, forgetting what
 * came before; with --tls=require every other option but ABORT is
 * refused with NBD_REP_ERR_TLS_REQD until then.  Without --tls,
 * STARTTLS gets NBD_REP_ERR_UNSUP.
 */
#include <endian.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "nbd-int.h"
#include "tls.h"

static int
send_reply(struct nbd_conn *c, uint32_t opt, uint32_t type,
    const void *data, size_t len)
{
	struct nbd_rep_hdr h;
	struct iovec iov[2];

	h.magic = htobe64(NBD_REP_MAGIC);
	h.option = htobe32(opt);
	h.type = htobe32(type);
	h.len = htobe32((uint32_t)len);
	iov[0].iov_base = &h;
	iov[0].iov_len = sizeof(h);
	iov[1].iov_base = (void *)data;
	iov[1].iov_len = len;
	return nbd_conn_sendv(c, iov, len > 0 ? 2 : 1);
}

/* An error reply with a message for the human at the client. */
static int
send_error(struct nbd_conn *c, uint32_t opt, uint32_t type, const char *msg)
{
	return send_reply(c, opt, type, msg, strlen(msg));
}

static int
send_info(struct nbd_conn *c, uint32_t opt, uint16_t info, const void *data,
    size_t len)
{
	char buf[2 + 4096];
	uint16_t t = htobe16(info);

	if (len > sizeof(buf) - 2)
		len = sizeof(buf) - 2;
	memcpy(buf, &t, 2);
	memcpy(buf + 2, data, len);
	return send_reply(c, opt, NBD_REP_INFO, buf, 2 + len);
}

static int
send_meta(struct nbd_conn *c, uint32_t opt, uint32_t id, const char *name)
{
	char buf[4 + 64];
	size_t n = strlen(name);
	uint32_t be = htobe32(id);

	memcpy(buf, &be, 4);
	memcpy(buf + 4, name, n);
	return send_reply(c, opt, NBD_REP_META_CONTEXT, buf, 4 + n);
}

static uint32_t
get32(const unsigned char *p)
{
	uint32_t v;

	memcpy(&v, p, 4);
	return be32toh(v);
}

static uint16_t
get16(const unsigned char *p)
{
	uint16_t v;

	memcpy(&v, p, 2);
	return be16toh(v);
}

/*
 * INFO and GO.  Data: u32 name length, name, u16 count, count × u16.
 * Returns 0 after a reply that keeps haggling, or 1 when GO succeeded.
 */
static int
opt_info(struct nbd_conn *c, uint32_t opt, const unsigned char *d,
    uint32_t len)
{
	struct nbd_server *s = c->c_srv;
	struct nbd_export *e;
	uint32_t namelen, i;
	uint16_t nreq, flags;
	bool want_bs = false, want_name = false, want_desc = false;
	unsigned char ex[10], bs[12];
	uint64_t size;
	uint32_t v;
	int error;

	if (len < 6 || (namelen = get32(d)) > len - 6)
		return send_error(c, opt, NBD_REP_ERR_INVALID,
		    "malformed INFO/GO request");
	nreq = get16(d + 4 + namelen);
	if ((uint32_t)nreq * 2 != len - 6 - namelen)
		return send_error(c, opt, NBD_REP_ERR_INVALID,
		    "INFO/GO: request count does not match the length");
	for (i = 0; i < nreq; i++) {
		switch (get16(d + 6 + namelen + 2 * i)) {
		case NBD_INFO_BLOCK_SIZE:	want_bs = true; break;
		case NBD_INFO_NAME:		want_name = true; break;
		case NBD_INFO_DESCRIPTION:	want_desc = true; break;
		default:			break;
		}
	}

	if ((e = nbd_export_find(s, (const char *)d + 4, namelen)) == NULL)
		return send_error(c, opt, NBD_REP_ERR_UNKNOWN, "no export "
		    "of that name on this server (NBD_OPT_LIST lists them)");
	if (opt == NBD_OPT_GO && !nbd_conn_admit(c, e))
		return send_error(c, opt, NBD_REP_ERR_POLICY, "too many "
		    "clients connected (--max-connections); try again later");
	flags = nbd_export_tflags(e, c->c_structured);
	size = htobe64(e->e_size);
	memcpy(ex, &size, 8);
	flags = htobe16(flags);
	memcpy(ex + 8, &flags, 2);
	if ((error = send_info(c, opt, NBD_INFO_EXPORT, ex, sizeof(ex))) != 0)
		return error;
	/* Sent whether asked or not: clients that did not ask ignore it. */
	v = htobe32(s->s_bytegran ? 1 : e->e_secsize);
	memcpy(bs, &v, 4);
	v = htobe32(e->e_secsize > 4096 ? e->e_secsize : 4096);
	memcpy(bs + 4, &v, 4);
	v = htobe32(NBD_MAX_PAYLOAD);
	memcpy(bs + 8, &v, 4);
	if ((error = send_info(c, opt, NBD_INFO_BLOCK_SIZE, bs,
	    sizeof(bs))) != 0)
		return error;
	if (want_name && (error = send_info(c, opt, NBD_INFO_NAME, e->e_name,
	    strlen(e->e_name))) != 0)
		return error;
	if (want_desc && e->e_desc != NULL && (error = send_info(c, opt,
	    NBD_INFO_DESCRIPTION, e->e_desc, strlen(e->e_desc))) != 0)
		return error;
	if ((error = send_reply(c, opt, NBD_REP_ACK, NULL, 0)) != 0)
		return error;
	if (opt == NBD_OPT_GO) {
		c->c_obey_bs = want_bs && !s->s_bytegran;
		c->c_tflags = nbd_export_tflags(e, c->c_structured);
		return 1;
	}
	return 0;
}

/* LIST: one NBD_REP_SERVER an export, then the ACK. */
static int
opt_list(struct nbd_conn *c)
{
	struct nbd_server *s = c->c_srv;
	unsigned char buf[4 + 4096];
	uint32_t be;
	size_t n;
	int error;

	for (unsigned i = 0; i < s->s_nexp; i++) {
		n = strlen(s->s_exp[i].e_name);
		if (n > sizeof(buf) - 4)
			n = sizeof(buf) - 4;	/* the protocol's bound */
		be = htobe32((uint32_t)n);
		memcpy(buf, &be, 4);
		memcpy(buf + 4, s->s_exp[i].e_name, n);
		if ((error = send_reply(c, NBD_OPT_LIST, NBD_REP_SERVER, buf,
		    4 + n)) != 0)
			return error;
	}
	return send_reply(c, NBD_OPT_LIST, NBD_REP_ACK, NULL, 0);
}

/*
 * LIST_META_CONTEXT and SET_META_CONTEXT.  Data: u32 name length, name,
 * u32 query count, then count × (u32 length, query).  We know one
 * context, base:allocation (id 1).
 */
static int
opt_meta(struct nbd_conn *c, uint32_t opt, const unsigned char *d,
    uint32_t len)
{
	uint32_t namelen, nq, qlen, pos, i;
	bool match = false;
	const char *q;

	if (opt == NBD_OPT_SET_META_CONTEXT)
		c->c_meta_base = false;		/* replaced even on failure */
	if (!c->c_structured)
		return send_error(c, opt, NBD_REP_ERR_INVALID,
		    "negotiate structured replies first");
	if (len < 8 || (namelen = get32(d)) > len - 8)
		return send_error(c, opt, NBD_REP_ERR_INVALID,
		    "malformed meta context request");
	pos = 4 + namelen;
	nq = get32(d + pos);
	pos += 4;
	if (nq == 0 && opt == NBD_OPT_LIST_META_CONTEXT)
		match = true;			/* list everything */
	for (i = 0; i < nq; i++) {
		if (len - pos < 4 || (qlen = get32(d + pos)) > len - pos - 4)
			return send_error(c, opt, NBD_REP_ERR_INVALID,
			    "meta context query runs past the option");
		q = (const char *)d + pos + 4;
		pos += 4 + qlen;
		if (qlen == 15 && memcmp(q, "base:allocation", 15) == 0)
			match = true;
		else if (qlen == 5 && memcmp(q, "base:", 5) == 0 &&
		    opt == NBD_OPT_LIST_META_CONTEXT)
			match = true;
	}
	if (pos != len)
		return send_error(c, opt, NBD_REP_ERR_INVALID,
		    "trailing bytes after the meta context queries");
	if (match) {
		int error = send_meta(c, opt,
		    opt == NBD_OPT_SET_META_CONTEXT ? 1 : 0, "base:allocation");
		if (error != 0)
			return error;
		if (opt == NBD_OPT_SET_META_CONTEXT)
			c->c_meta_base = true;
	}
	return send_reply(c, opt, NBD_REP_ACK, NULL, 0);
}

/* Skip option data we will not look at. */
static int
skip(struct nbd_conn *c, uint32_t len)
{
	char buf[4096];
	uint32_t n;
	int error;

	while (len > 0) {
		n = len > sizeof(buf) ? sizeof(buf) : len;
		if ((error = nbd_conn_read(c, buf, n)) != 0)
			return error;
		len -= n;
	}
	return 0;
}

/*
 * STARTTLS (proto.md "TLS support"): NBD_REP_ACK, then the TLS handshake
 * on the same socket, then haggling starts over inside TLS.  0 to go on
 * haggling (TLS on, or refused with an error reply), or an errno to hang
 * up.
 */
static int
opt_starttls(struct nbd_conn *c, uint32_t len)
{
	struct nbd_server *s = c->c_srv;
	int error;

	if (nbd_tls_get_mode(s->s_cfg.tls) == NBD_TLS_OFF) {
		if ((error = skip(c, len)) != 0)
			return error;
		return send_error(c, NBD_OPT_STARTTLS, NBD_REP_ERR_UNSUP,
		    "TLS is off on this server (rumpblk serve --tls)");
	}
	if (len != 0) {
		if ((error = skip(c, len)) != 0)
			return error;
		return send_error(c, NBD_OPT_STARTTLS, NBD_REP_ERR_INVALID,
		    "STARTTLS takes no data");
	}
	if (c->c_tls != NULL)
		return send_error(c, NBD_OPT_STARTTLS, NBD_REP_ERR_INVALID,
		    "TLS is on already");
	/*
	 * Bytes the client sent after STARTTLS, before our reply, would be
	 * taken as if they had come through TLS: plaintext injection
	 * (nbdkit's CVE-2021-3716).  A client must wait for the reply.
	 */
	if (c->c_rpos != c->c_rlen) {
		nbd_log(s, "client %s sent data after STARTTLS before the "
		    "reply; disconnecting it", c->c_peer);
		return EPROTO;
	}
	if ((error = send_reply(c, NBD_OPT_STARTTLS, NBD_REP_ACK, NULL,
	    0)) != 0)
		return error;
	if ((error = nbd_tls_start(c)) != 0)
		return error;
	/* proto.md: no negotiation state survives STARTTLS. */
	c->c_structured = false;
	c->c_meta_base = false;
	return 0;
}

int
nbd_handshake(struct nbd_conn *c)
{
	struct nbd_server *s = c->c_srv;
	struct {
		uint64_t	magic;
		uint64_t	opt;
		uint16_t	flags;
	} __attribute__((packed)) greet;
	struct iovec iov;
	struct nbd_opt_hdr oh;
	unsigned char *data = NULL;
	uint32_t cflags, opt, len;
	int error, r;

	greet.magic = htobe64(NBD_MAGIC);
	greet.opt = htobe64(NBD_IHAVEOPT);
	greet.flags = htobe16(NBD_FLAG_FIXED_NEWSTYLE | NBD_FLAG_NO_ZEROES);
	iov.iov_base = &greet;
	iov.iov_len = sizeof(greet);
	if ((error = nbd_conn_sendv(c, &iov, 1)) != 0)
		return error;
	if ((error = nbd_conn_read(c, &cflags, 4)) != 0)
		return error;
	cflags = be32toh(cflags);
	/* proto.md: drop the connection on flags we do not know. */
	if ((cflags & ~(uint32_t)(NBD_FLAG_C_FIXED_NEWSTYLE |
	    NBD_FLAG_C_NO_ZEROES)) != 0)
		return EPROTO;
	c->c_no_zeroes = (cflags & NBD_FLAG_C_NO_ZEROES) != 0;

	if ((data = malloc(NBD_MAX_OPTLEN)) == NULL)
		return ENOMEM;
	for (;;) {
		if ((error = nbd_conn_read(c, &oh, sizeof(oh))) != 0)
			break;
		if (be64toh(oh.magic) != NBD_IHAVEOPT) {
			error = EPROTO;
			break;
		}
		opt = be32toh(oh.option);
		len = be32toh(oh.len);
		if (++c->c_nopts > NBD_MAX_OPTIONS || len > NBD_MAX_OPTLEN) {
			nbd_log(s, "client sent too many or too large options; "
			    "disconnecting it");
			error = EPROTO;
			break;
		}
		if (atomic_load(&s->s_stopping) && opt != NBD_OPT_ABORT) {
			if ((error = skip(c, len)) != 0 ||
			    (error = send_error(c, opt, NBD_REP_ERR_SHUTDOWN,
			    "the server is shutting down")) != 0)
				break;
			continue;
		}
		/*
		 * --tls=require: before TLS, every option but STARTTLS and
		 * ABORT is refused, and EXPORT_NAME, which has no error
		 * reply, ends the connection (proto.md, FORCEDTLS).
		 */
		if (c->c_tls == NULL && opt != NBD_OPT_STARTTLS &&
		    opt != NBD_OPT_ABORT &&
		    nbd_tls_get_mode(s->s_cfg.tls) == NBD_TLS_REQUIRE) {
			if (opt == NBD_OPT_EXPORT_NAME) {
				nbd_log(s, "client %s asked for the export "
				    "without TLS, which is required "
				    "(--tls=require); disconnecting it",
				    c->c_peer);
				error = EACCES;
				goto out;
			}
			if ((error = skip(c, len)) != 0 ||
			    (error = send_error(c, opt, NBD_REP_ERR_TLS_REQD,
			    "TLS is required: send STARTTLS first")) != 0)
				goto out;
			continue;
		}
		switch (opt) {
		case NBD_OPT_STARTTLS:
			if ((error = opt_starttls(c, len)) != 0)
				goto out;
			break;
		case NBD_OPT_EXPORT_NAME: {
			struct {
				uint64_t	size;
				uint16_t	flags;
				char		zeroes[124];
			} __attribute__((packed)) ex;
			struct nbd_export *e;

			if ((error = nbd_conn_read(c, data, len)) != 0)
				goto out;
			if ((e = nbd_export_find(s, (const char *)data,
			    len)) == NULL) {
				nbd_log(s, "client %s asked for an export "
				    "this server does not have; "
				    "disconnecting it", c->c_peer);
				error = ENOENT;
				goto out;
			}
			if (!nbd_conn_admit(c, e)) {
				error = EBUSY;
				goto out;
			}
			c->c_obey_bs = false;
			c->c_tflags = nbd_export_tflags(e, c->c_structured);
			memset(&ex, 0, sizeof(ex));
			ex.size = htobe64(e->e_size);
			ex.flags = htobe16(c->c_tflags);
			iov.iov_base = &ex;
			iov.iov_len = c->c_no_zeroes ? 10 : sizeof(ex);
			error = nbd_conn_sendv(c, &iov, 1);
			goto out;
		}
		case NBD_OPT_ABORT:
			if ((error = skip(c, len)) == 0)
				(void)send_reply(c, opt, NBD_REP_ACK, NULL, 0);
			error = ECONNABORTED;
			goto out;
		case NBD_OPT_LIST:
			if (len != 0) {
				if ((error = skip(c, len)) != 0 ||
				    (error = send_error(c, opt,
				    NBD_REP_ERR_INVALID,
				    "LIST takes no data")) != 0)
					goto out;
				break;
			}
			if ((error = opt_list(c)) != 0)
				goto out;
			break;
		case NBD_OPT_STRUCTURED_REPLY:
			if (len != 0) {
				if ((error = skip(c, len)) != 0 ||
				    (error = send_error(c, opt,
				    NBD_REP_ERR_INVALID,
				    "STRUCTURED_REPLY takes no data")) != 0)
					goto out;
				break;
			}
			c->c_structured = true;
			if ((error = send_reply(c, opt, NBD_REP_ACK, NULL,
			    0)) != 0)
				goto out;
			break;
		case NBD_OPT_INFO:
		case NBD_OPT_GO:
		case NBD_OPT_LIST_META_CONTEXT:
		case NBD_OPT_SET_META_CONTEXT:
			if ((error = nbd_conn_read(c, data, len)) != 0)
				goto out;
			if (opt == NBD_OPT_INFO || opt == NBD_OPT_GO)
				r = opt_info(c, opt, data, len);
			else
				r = opt_meta(c, opt, data, len);
			if (r == 1) {
				error = 0;
				goto out;
			}
			if ((error = r) != 0)
				goto out;
			break;
		default:
			if ((error = skip(c, len)) != 0 ||
			    (error = send_error(c, opt, NBD_REP_ERR_UNSUP,
			    "option not supported by rumpblk")) != 0)
				goto out;
			break;
		}
	}
out:
	free(data);
	return error;
}
