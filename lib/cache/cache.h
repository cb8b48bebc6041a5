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
 * Durability is decided, and then done.  A write becomes durable when
 * it moves from the dirty list to the destage queue, and that happens
 * only in acknowledgement order and only at points of the request
 * stream: a write that would take the dirty data past the cache's size
 * moves the oldest dirty writes until 3/4 of it is left, FLUSH (and a
 * FUA or synchronous write) moves every write acknowledged before it.
 * What is durable at any moment is so a function of the stream of
 * requests alone, and a power cut on cue (a fault rule) with one
 * submitter gives the same post-crash medium every time.  The layer's
 * destager thread then writes the queue to the medium, in order; a FLUSH
 * completes (through the stage below, which syncs) once the queue is
 * written up to it, a FUA write likewise, and a cut first lets the
 * destager write the whole queue: what was decided durable is on the
 * medium before the model resolves the rest.  The data of the dirty list
 * and the queue together stays within the cache's size: a write that
 * finds no room waits for the destager (that wait decides nothing).
 *
 * Locks: L = c_lock (everything but the index's readers' fast check);
 * a = atomic; ( = set at creation.  Only the destager writes the queue
 * (it drops L while a write is below); a cut writes what its model keeps
 * while the queue is empty and every request is held.
 */
#ifndef RUMPBLK_CACHE_H
#define RUMPBLK_CACHE_H

#include <bsd/sys/tree.h>

#include "../internal.h"

/*
 * A part of the unit whose newest cached data is in one write.  Extents
 * come from a pool of the cache's own, in chunks, so that the tree is
 * dense in memory (a descent through nodes spread over the cached data
 * took a cache miss a level).
 */
struct ext {
	RB_ENTRY(ext)	x_link;		/* L; the free list's link when free */
	uint64_t	x_off;		/* L: bytes into the unit */
	uint64_t	x_end;		/* L: exclusive */
	struct cw	*x_cw;		/* L */
};

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
	struct ext	*cw_x;		/* L: the extent it was indexed with,
					 * while in the tree: evicted at once */
	unsigned char	cw_data[];	/* ( WRITE: cw_len bytes */
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
	uint64_t	c_low;		/* ( deciding for room stops here */
	struct rb_frames c_frames;	/* struct cread: reads below */
	struct rb_genmap c_gen;		/* generations of cached writes */
	struct ext_tree	c_tree;		/* L */
	struct ext	*c_xfree;	/* L: free extents */
	void		*c_xchunks;	/* L: every chunk of them */
	_Atomic uint64_t c_nexts;	/* L, a: extents in c_tree */
	struct cw	*c_head;	/* L: oldest dirty write */
	struct cw	**c_tailp;	/* L */
	struct cw	*c_qhead;	/* L: destage queue: durable, not written */
	struct cw	**c_qtailp;	/* L */
	uint64_t	c_qbytes;	/* L: data bytes on the queue */
	uint64_t	c_qlast;	/* L: seq of the newest write decided durable */
	uint64_t	c_written;	/* L: seq of the newest write on the medium */
	int		c_werror;	/* L: a queued write failed; the next
					 * FLUSH reports it */
	struct rb_io	*c_flushes;	/* L: FLUSHes waiting for the destager */
	struct rb_io	**c_flushtailp;	/* L */
	pthread_cond_t	c_qcv;		/* the destager's: work, or stop */
	pthread_t	c_thread;	/* ( the destager */
	bool		c_stop;		/* L */
	bool		c_dwaits;	/* L: the destager waits for work */
	unsigned	c_roomwaits;	/* L: writes waiting for room */
	uint64_t	c_bytes;	/* L: data bytes of dirty writes */
	uint64_t	c_dirty;	/* L: bytes acknowledged, not durable */
	uint64_t	c_ndirty;	/* L: entries on the dirty list */
	uint64_t	c_seq;		/* L: the last acknowledged */
	uint64_t	c_evicts;	/* L: extents dropped after destaging */
	unsigned	c_holds;	/* L: reads that stop eviction */
	enum cache_state c_state;	/* L */
	struct rb_io	*c_held;	/* L: requests held by a cut */
	struct rumpblk_cache_stats c_st; /* L: the flush audit */
};

/* cache.c */
/*
 * Put a write on the dirty list and in the index (L held).  0, or ENOMEM
 * (nothing changed): it falls inside one extent, which must split.
 */
int	rb_cache_insert_locked(struct cache *, struct cw *);
/* A new cached write of io (not on any list), its generation counted;
 * or NULL (ENOMEM). */
struct cw *rb_cache_cw_new(struct cache *, const struct rb_io *);
/* Part [off, off + len) of a cached write onto the medium (synchronous,
 * not synced).  0 or the medium's error. */
int	rb_cache_put(struct cache *, const struct cw *, uint64_t off,
	    uint64_t len);
/* Free every write and extent; the cache is empty after (L held). */
void	rb_cache_drop_locked(struct cache *);
/* Hold io until the cut ends (L held). */
void	rb_cache_hold_locked(struct cache *, struct rb_io *);
/* Wait until the destager has written the whole queue (L held). */
void	rb_cache_drain_locked(struct cache *);

/* cut.c (rb_cache_cut is in internal.h) */
/* The key of a cached write's decisions under seed. */
uint64_t rb_cache_cw_key(const struct cache *, const struct cw *,
	    uint64_t seed);

#endif
