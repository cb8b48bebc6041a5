/*
 * fuzz-nbd-request: libFuzzer target for the NBD server's transmission
 * phase (request parsing, payload handling, replies).  A fixed, valid
 * handshake goes first so that the fuzzer spends its time on requests;
 * the first input byte picks which handshake:
 *
 *   bits 0-1  0: EXPORT_NAME (simple replies, no block-size contract)
 *             1: GO with NBD_INFO_BLOCK_SIZE (alignment enforced)
 *             2: STRUCTURED_REPLY + SET_META_CONTEXT base:allocation + GO
 *                with NBD_INFO_BLOCK_SIZE
 *             3: STRUCTURED_REPLY + GO without block sizes
 *   bit 2     the read-only server
 *
 * The rest of the input is the client's request stream, as it is.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "fuzz-nbd.h"
#include "nbd-proto.h"

int	LLVMFuzzerTestOneInput(const uint8_t *, size_t);

static size_t
put16(uint8_t *p, uint16_t v)
{
	p[0] = v >> 8;
	p[1] = v;
	return 2;
}

static size_t
put32(uint8_t *p, uint32_t v)
{
	put16(p, v >> 16);
	put16(p + 2, v);
	return 4;
}

static size_t
put64(uint8_t *p, uint64_t v)
{
	put32(p, v >> 32);
	put32(p + 4, v);
	return 8;
}

static size_t
opt(uint8_t *p, uint32_t option, const uint8_t *body, uint32_t len)
{
	size_t n = 0;

	n += put64(p + n, NBD_IHAVEOPT);
	n += put32(p + n, option);
	n += put32(p + n, len);
	if (len > 0)
		memcpy(p + n, body, len);
	return n + len;
}

/* GO for export "" with or without NBD_INFO_BLOCK_SIZE. */
static size_t
go(uint8_t *p, int want_bs)
{
	uint8_t body[16];
	size_t n = 0;

	n += put32(body + n, 0);
	n += put16(body + n, want_bs ? 1 : 0);
	if (want_bs)
		n += put16(body + n, NBD_INFO_BLOCK_SIZE);
	return opt(p, NBD_OPT_GO, body, (uint32_t)n);
}

static size_t
handshake(uint8_t *p, int kind)
{
	static const char ctx[] = "base:allocation";
	uint8_t body[64];
	size_t n = 0, b = 0;

	n += put32(p, NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES);
	switch (kind) {
	case 0:
		n += opt(p + n, NBD_OPT_EXPORT_NAME, NULL, 0);
		break;
	case 1:
		n += go(p + n, 1);
		break;
	case 2:
		n += opt(p + n, NBD_OPT_STRUCTURED_REPLY, NULL, 0);
		b += put32(body + b, 0);		/* export "" */
		b += put32(body + b, 1);		/* one query */
		b += put32(body + b, sizeof(ctx) - 1);
		memcpy(body + b, ctx, sizeof(ctx) - 1);
		b += sizeof(ctx) - 1;
		n += opt(p + n, NBD_OPT_SET_META_CONTEXT, body, (uint32_t)b);
		n += go(p + n, 1);
		break;
	default:
		n += opt(p + n, NBD_OPT_STRUCTURED_REPLY, NULL, 0);
		n += go(p + n, 0);
		break;
	}
	return n;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t pre[256];
	size_t plen;

	if (size < 1)
		return 0;
	plen = handshake(pre, data[0] & 3);
	fuzz_nbd_run(pre, plen, data + 1, size - 1, (data[0] >> 2) & 1);
	return 0;
}
