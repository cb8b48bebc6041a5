/*
 * rb_hash128 (hash.h says what it is for).  Each lane takes one 64-bit
 * word of every 32-byte stripe: lane = rotl(lane + w * P2, 31) * P1, the
 * well-known round of xxHash's 64-bit variant; the finish folds the
 * lanes, the tail and the length and mixes twice with splitmix64's
 * finaliser, once per half.
 */
#include <string.h>

#include "hash.h"

#define P1	0x9e3779b185ebca87ull
#define P2	0xc2b2ae3d27d4eb4full

static inline uint64_t
rotl(uint64_t x, int r)
{
	return (x << r) | (x >> (64 - r));
}

static inline uint64_t
load64(const unsigned char *p)
{
	uint64_t w;

	memcpy(&w, p, 8);
	return w;		/* host order: the build is little-endian */
}

static void
stripes(struct rb_hash *h, const unsigned char *p, size_t n)
{
	uint64_t a = h->h_lane[0], b = h->h_lane[1], c = h->h_lane[2],
	    d = h->h_lane[3], o = 0;

	for (; n >= 32; p += 32, n -= 32) {
		uint64_t w0 = load64(p), w1 = load64(p + 8),
		    w2 = load64(p + 16), w3 = load64(p + 24);

		o |= w0 | w1 | w2 | w3;
		a = rotl(a + w0 * P2, 31) * P1;
		b = rotl(b + w1 * P2, 31) * P1;
		c = rotl(c + w2 * P2, 31) * P1;
		d = rotl(d + w3 * P2, 31) * P1;
	}
	h->h_lane[0] = a;
	h->h_lane[1] = b;
	h->h_lane[2] = c;
	h->h_lane[3] = d;
	h->h_or |= o;
}

void
rb_hash_init(struct rb_hash *h)
{
	memset(h, 0, sizeof(*h));
	h->h_lane[0] = P1 + P2;
	h->h_lane[1] = P2;
	h->h_lane[2] = 0;
	h->h_lane[3] = -P1;
}

void
rb_hash_update(struct rb_hash *h, const void *data, size_t n)
{
	const unsigned char *p = data;
	size_t k;

	h->h_len += n;
	if (h->h_nbuf > 0) {
		k = 32 - h->h_nbuf < n ? 32 - h->h_nbuf : n;
		memcpy(h->h_buf + h->h_nbuf, p, k);
		h->h_nbuf += (unsigned)k;
		p += k;
		n -= k;
		if (h->h_nbuf < 32)
			return;
		stripes(h, h->h_buf, 32);
		h->h_nbuf = 0;
	}
	k = n & ~(size_t)31;
	stripes(h, p, k);
	memcpy(h->h_buf, p + k, n - k);
	h->h_nbuf = (unsigned)(n - k);
}

void
rb_hash_final(struct rb_hash *h, uint8_t out[16], int *zerop)
{
	uint64_t acc, lo, hi, tail = 0;
	unsigned i;

	for (i = 0; i < h->h_nbuf; i++) {
		tail = tail * 0x100000001b3ull ^ h->h_buf[i];
		h->h_or |= h->h_buf[i];
	}
	acc = rotl(h->h_lane[0], 1) + rotl(h->h_lane[1], 7) +
	    rotl(h->h_lane[2], 12) + rotl(h->h_lane[3], 18);
	acc ^= rb_hash_mix64(tail + h->h_nbuf);
	lo = rb_hash_mix64(acc ^ h->h_len);
	hi = rb_hash_mix64(lo ^ h->h_lane[0] ^ rotl(h->h_lane[2], 29) ^
	    (h->h_len * P1));
	memcpy(out, &lo, 8);
	memcpy(out + 8, &hi, 8);
	if (zerop != NULL)
		*zerop = h->h_or == 0;
}
