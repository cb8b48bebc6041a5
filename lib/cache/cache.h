/*
 * Private declarations of the volatile write cache (issue #11), shared
 * by its files:
 *   cache.c  the layer: the index, reads, writes, FLUSH, destaging
 *   cut.c    a power cut: the persistence models, the cut itself
 *
 * The cache is a layer at RB_RANK_CACHE (below the fault layer and the
 * write log: it decides what a power cut keeps of the stream they saw).
 * It holds every write, trim and write-zeroes acknowledged but not yet
 * durable, as a struct cw each, in one list in acknowledgement order
 * (the dirty list), and an index of what a read sees: extents, disjoint,
 * ordered by offset, each pointing at the newest cached write of its
 * bytes.  A write older than another it overlaps keeps its data (a power
 * cut may let it land over the newer one), but no extent points at the
 * bytes it lost.
 *
 * Durable means on the medium: the stage below has completed the write
 * (and at FLUSH, synced it).  Writes reach the medium only in
 * acknowledgement order, and only synchronously with the requests that
 * need them there: a write that finds the cache full destages the oldest
 * writes first, FLUSH (and a FUA or synchronous write) destages every
 * write acknowledged before it.  There is no background destaging, so
 * what is durable at any moment is a function of the stream of
 * requests alone, and a power cut on cue (a fault rule) with one
 * submitter gives the same post-crash medium every time.
 *
 * Locks: L = c_lock (everything but the index's readers' fast check);
 * a = atomic; ( = set at creation.  One thread at a time destages
 * (c_destaging); it drops L while its write is below.
 */
#ifndef RUMPBLK_CACHE_H
#define RUMPBLK_CACHE_H

#include <bsd/sys/tree.h>

#include "../internal.h"

/* One cached write, trim or write-zeroes. */
struct cw {
	struct cw	*cw_next;	/* L: dirty list, acknowledgement order */
	uint64_t	cw_seq;		/* ( acknowledgement order, from 1 */
	uint64_t	cw_off;		/* ( bytes into the unit */
	uint64_t	cw_len;		/* ( bytes */
	uint64_t	cw_gen;		/* ( generation (lib/genmap.c) */
	uint64_t	cw_ackns;	/* ( when it was acknowledged */
	int		cw_op;		/* ( RUMPBLK_B_WRITE, _TRIM, _ZERO */
	unsigned	cw_nexts;	/* L: extents that point here */
	unsigned char	cw_data[];	/* ( WRITE: cw_len bytes */
};

/* A part of the unit whose newest cached data is in one write. */
struct ext {
	RB_ENTRY(ext)	x_link;		/* L */
	uint64_t	x_off;		/* L: bytes into the unit */
	uint64_t	x_end;		/* L: exclusive */
	struct cw	*x_cw;		/* L */
};

RB_HEAD(ext_tree, ext);

enum cache_state {
	CS_RUNNING = 0,
	CS_CUTTING,		/* a power cut: requests are held */
};

struct cache {
	struct rb_stage	c_stage;	/* first */
	pthread_mutex_t	c_lock;
	pthread_cond_t	c_cv;		/* destaging done, holds gone */
	uint64_t	c_size;		/* ( bytes of data held at most */
	struct rb_frames c_frames;	/* struct cread: reads below */
	struct rb_genmap c_gen;		/* generations of cached writes */
	struct ext_tree	c_tree;		/* L */
	_Atomic uint64_t c_nexts;	/* L, a: extents in c_tree */
	struct cw	*c_head;	/* L: oldest dirty write */
	struct cw	**c_tailp;	/* L */
	uint64_t	c_bytes;	/* L: data bytes held (WRITE) */
	uint64_t	c_dirty;	/* L: bytes acknowledged, not durable */
	uint64_t	c_ndirty;	/* L: entries on the dirty list */
	uint64_t	c_seq;		/* L: the last acknowledged */
	uint64_t	c_evicts;	/* L: extents dropped after destaging */
	unsigned	c_holds;	/* L: reads that stop eviction */
	bool		c_destaging;	/* L */
	enum cache_state c_state;	/* L */
	struct rb_io	*c_held;	/* L: requests held by a cut */
	struct rumpblk_cache_stats c_st; /* L: the flush audit */
};

/* cache.c */
/* Put a write on the dirty list and in the index (L held); its data,
 * if any, is filled in. */
void	rb_cache_insert_locked(struct cache *, struct cw *, struct ext *spare[2]);
/* A new cached write of io (not on any list), or NULL (ENOMEM). */
struct cw *rb_cache_cw_new(const struct rb_io *);
/* Free every write and extent; the cache is empty after (L held). */
void	rb_cache_drop_locked(struct cache *);
/* Hold io until the cut ends (L held). */
void	rb_cache_hold_locked(struct cache *, struct rb_io *);

/* cut.c (rb_cache_cut is in internal.h) */
/* The key of a cached write's decisions under seed. */
uint64_t rb_cache_cw_key(const struct cache *, const struct cw *,
	    uint64_t seed);

#endif
