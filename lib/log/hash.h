/*
 * rb_hash128: the hash that identifies a write log's base image (format.h,
 * struct lw_base).  Not cryptographic: it tells a wrong base from the
 * right one, not a forged one.  Four lanes of 64 bits over 32-byte
 * stripes (several GB/s), a length-mixed finish into 128 bits.  The
 * same bytes give the same hash however they are split into updates.
 * Shared by the library (hashing a unit through its stack) and the
 * command (hashing --base IMAGE); it needs only the C library.
 */
#ifndef RB_LOG_HASH_H
#define RB_LOG_HASH_H

#include <stddef.h>
#include <stdint.h>

struct rb_hash {
	uint64_t	h_lane[4];
	uint64_t	h_len;		/* bytes hashed */
	uint64_t	h_or;		/* every byte or'ed: 0 while all zero */
	unsigned char	h_buf[32];	/* a partial stripe */
	unsigned	h_nbuf;
};

/* splitmix64's finaliser (also the crash checker's mix and draws). */
static inline uint64_t
rb_hash_mix64(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ull;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

void	rb_hash_init(struct rb_hash *);
void	rb_hash_update(struct rb_hash *, const void *, size_t);
/* The 16 bytes of the hash; *zerop (may be NULL): every byte was zero. */
void	rb_hash_final(struct rb_hash *, uint8_t out[16], int *zerop);

#endif
