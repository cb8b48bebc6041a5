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

void	rb_hash_init(struct rb_hash *);
void	rb_hash_update(struct rb_hash *, const void *, size_t);
/* The 16 bytes of the hash; *zerop (may be NULL): every byte was zero. */
void	rb_hash_final(struct rb_hash *, uint8_t out[16], int *zerop);

#endif
