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
 * Objects of one size, handed out and taken back under L: extents and
 * cached writes.  Chunks of them are allocated as needed and kept until
 * the cache goes, so that a request allocates nothing in the steady
 * state and the index is dense in memory (a descent through nodes
 * spread over the cached data took a cache miss a level).
 */
struct cpool {
	void		*cp_free;	/* L: the first word of each links them */
	void		*cp_chunks;	/* L: likewise, each chunk's first object */
	size_t		cp_size;	/* ( bytes an object */
};

/* A part of the unit whose newest cached data is in one write. */
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
	unsigned char	*cw_data;	/* ( WRITE: cw_len bytes, in the ring
					 * or (too large for it) on the heap */
};

RB_HEAD(ext_tree, ext);

enum cache_state {
	CS_RUNNING = 0,
	CS_CUTTING,		/* a power cut: requests are held */
};

#define DBATCH	64		/* writes the destager takes at a time */

/* One of the destager's writes below (io_ctx is the stages' own). */
struct dio {
	struct rb_io	d_io;		/* first */
	struct cache	*d_c;
};

struct cache {
	struct rb_stage	c_stage;	/* first */
	pthread_mutex_t	c_lock;
	pthread_cond_t	c_cv;		/* destaging done, holds gone */
	uint64_t	c_size;		/* ( bytes of data held at most */
	uint64_t	c_step;		/* ( deciding for room: so much more */
	struct rb_frames c_frames;	/* struct cread: reads below */
	struct rb_genmap c_gen;		/* generations of cached writes */
	struct ext_tree	c_tree;		/* L */
	struct cpool	c_xpool;	/* L: struct ext */
	struct cpool	c_cwpool;	/* L: struct cw */
	unsigned char	*c_ring;	/* ( the data ring (cache.c, 1.) */
	uint64_t	c_rsize;	/* ( its bytes */
	uint64_t	c_rmax;		/* ( the largest write it takes */
	uint64_t	c_rhead;	/* L: where the next write's data goes */
	uint64_t	c_rtail;	/* L: where the oldest write's data ends */
	uint64_t	c_rlive;	/* L: writes with data in the ring */
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
	struct dio	c_dio[DBATCH];	/* the destager's: a batch below */
	_Atomic unsigned c_dleft;	/* a: of them, not done */
	pthread_mutex_t	c_dlock;	/* the batch's end */
	pthread_cond_t	c_dcv;
	bool		c_ddone;	/* c_dlock */
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
/* The generation of io's write (counts it: call once, without L). */
uint64_t rb_cache_gen(struct cache *, const struct rb_io *);
/*
 * Cache io (a write, trim or write-zeroes) of generation gen: its data
 * copied, on the dirty list, in the index, acknowledged now (L held).
 * 0, or ENOMEM (nothing changed).
 */
int	rb_cache_add_locked(struct cache *, const struct rb_io *,
	    uint64_t gen);
/* Part [off, off + len) of a cached write onto the medium (synchronous,
 * not synced).  0 or the medium's error. */
int	rb_cache_put(struct cache *, const struct cw *, uint64_t off,
	    uint64_t len);
/* Drop every write and extent; the cache is empty after (L held). */
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
