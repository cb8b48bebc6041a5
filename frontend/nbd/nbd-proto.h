/*
 * The NBD protocol on the wire: magics, options, reply types, information
 * types, commands, flags and error values, as the NBD project's proto.md
 * defines them.  Every field on the wire is big-endian; the structs below
 * are packed images of the fixed-size messages, filled with htobe*() and
 * read with be*toh().
 *
 * Only what rumpblk's server speaks is here: fixed newstyle, no TLS, no
 * extended headers.
 */
#ifndef RUMPBLK_NBD_PROTO_H
#define RUMPBLK_NBD_PROTO_H

#include <stdint.h>

/* Handshake. */
#define NBD_MAGIC		0x4e42444d41474943ULL	/* "NBDMAGIC" */
#define NBD_IHAVEOPT		0x49484156454f5054ULL	/* "IHAVEOPT" */
#define NBD_REP_MAGIC		0x0003e889045565a9ULL

#define NBD_FLAG_FIXED_NEWSTYLE	0x0001	/* handshake flags (server) */
#define NBD_FLAG_NO_ZEROES	0x0002
#define NBD_FLAG_C_FIXED_NEWSTYLE 0x0001 /* client flags */
#define NBD_FLAG_C_NO_ZEROES	0x0002

/* Options. */
#define NBD_OPT_EXPORT_NAME	1
#define NBD_OPT_ABORT		2
#define NBD_OPT_LIST		3
#define NBD_OPT_STARTTLS	5
#define NBD_OPT_INFO		6
#define NBD_OPT_GO		7
#define NBD_OPT_STRUCTURED_REPLY 8
#define NBD_OPT_LIST_META_CONTEXT 9
#define NBD_OPT_SET_META_CONTEXT 10

/* Option replies. */
#define NBD_REP_ACK		1
#define NBD_REP_SERVER		2
#define NBD_REP_INFO		3
#define NBD_REP_META_CONTEXT	4
#define NBD_REP_ERR(n)		(0x80000000u | (n))
#define NBD_REP_ERR_UNSUP	NBD_REP_ERR(1)
#define NBD_REP_ERR_POLICY	NBD_REP_ERR(2)
#define NBD_REP_ERR_INVALID	NBD_REP_ERR(3)
#define NBD_REP_ERR_PLATFORM	NBD_REP_ERR(4)
#define NBD_REP_ERR_TLS_REQD	NBD_REP_ERR(5)
#define NBD_REP_ERR_UNKNOWN	NBD_REP_ERR(6)
#define NBD_REP_ERR_SHUTDOWN	NBD_REP_ERR(7)
#define NBD_REP_ERR_BLOCK_SIZE_REQD NBD_REP_ERR(8)
#define NBD_REP_ERR_TOO_BIG	NBD_REP_ERR(9)

/* Information types (NBD_REP_INFO). */
#define NBD_INFO_EXPORT		0
#define NBD_INFO_NAME		1
#define NBD_INFO_DESCRIPTION	2
#define NBD_INFO_BLOCK_SIZE	3

/* Transmission flags. */
#define NBD_FLAG_HAS_FLAGS	0x0001
#define NBD_FLAG_READ_ONLY	0x0002
#define NBD_FLAG_SEND_FLUSH	0x0004
#define NBD_FLAG_SEND_FUA	0x0008
#define NBD_FLAG_ROTATIONAL	0x0010
#define NBD_FLAG_SEND_TRIM	0x0020
#define NBD_FLAG_SEND_WRITE_ZEROES 0x0040
#define NBD_FLAG_SEND_DF	0x0080
#define NBD_FLAG_CAN_MULTI_CONN	0x0100

/* Requests. */
#define NBD_REQUEST_MAGIC	0x25609513u
#define NBD_SIMPLE_REPLY_MAGIC	0x67446698u
#define NBD_STRUCTURED_REPLY_MAGIC 0x668e33efu

#define NBD_CMD_READ		0
#define NBD_CMD_WRITE		1
#define NBD_CMD_DISC		2
#define NBD_CMD_FLUSH		3
#define NBD_CMD_TRIM		4
#define NBD_CMD_CACHE		5
#define NBD_CMD_WRITE_ZEROES	6
#define NBD_CMD_BLOCK_STATUS	7

#define NBD_CMD_FLAG_FUA	0x0001
#define NBD_CMD_FLAG_NO_HOLE	0x0002
#define NBD_CMD_FLAG_DF		0x0004
#define NBD_CMD_FLAG_REQ_ONE	0x0008
#define NBD_CMD_FLAG_FAST_ZERO	0x0010

/* Structured replies. */
#define NBD_REPLY_FLAG_DONE	0x0001
#define NBD_REPLY_TYPE_NONE	0
#define NBD_REPLY_TYPE_OFFSET_DATA 1
#define NBD_REPLY_TYPE_OFFSET_HOLE 2
#define NBD_REPLY_TYPE_BLOCK_STATUS 5
#define NBD_REPLY_TYPE_ERROR	0x8001
#define NBD_REPLY_TYPE_ERROR_OFFSET 0x8002

/* base:allocation */
#define NBD_STATE_HOLE		0x1
#define NBD_STATE_ZERO		0x2

/* Error values. */
#define NBD_SUCCESS		0
#define NBD_EPERM		1
#define NBD_EIO			5
#define NBD_ENOMEM		12
#define NBD_EINVAL		22
#define NBD_ENOSPC		28
#define NBD_EOVERFLOW		75
#define NBD_ENOTSUP		95
#define NBD_ESHUTDOWN		108

/* Fixed-size messages. */
struct nbd_opt_hdr {			/* C: option */
	uint64_t	magic;		/* NBD_IHAVEOPT */
	uint32_t	option;
	uint32_t	len;
} __attribute__((packed));

struct nbd_rep_hdr {			/* S: option reply */
	uint64_t	magic;		/* NBD_REP_MAGIC */
	uint32_t	option;
	uint32_t	type;
	uint32_t	len;
} __attribute__((packed));

struct nbd_request {			/* C: transmission request */
	uint32_t	magic;		/* NBD_REQUEST_MAGIC */
	uint16_t	flags;
	uint16_t	type;
	uint64_t	handle;
	uint64_t	offset;
	uint32_t	len;
} __attribute__((packed));

struct nbd_simple_reply {
	uint32_t	magic;		/* NBD_SIMPLE_REPLY_MAGIC */
	uint32_t	error;
	uint64_t	handle;
} __attribute__((packed));

struct nbd_structured_reply {
	uint32_t	magic;		/* NBD_STRUCTURED_REPLY_MAGIC */
	uint16_t	flags;
	uint16_t	type;
	uint64_t	handle;
	uint32_t	len;
} __attribute__((packed));

_Static_assert(sizeof(struct nbd_opt_hdr) == 16, "option header");
_Static_assert(sizeof(struct nbd_rep_hdr) == 20, "option reply header");
_Static_assert(sizeof(struct nbd_request) == 28, "request");
_Static_assert(sizeof(struct nbd_simple_reply) == 16, "simple reply");
_Static_assert(sizeof(struct nbd_structured_reply) == 20, "structured reply");

#endif /* RUMPBLK_NBD_PROTO_H */
