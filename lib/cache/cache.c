/*
 * The volatile write cache: a layer that holds data (cache.h says what
 * it holds and when it reaches the medium).
 *
 * Contents:
 *   1. the index: inserting a write, evicting a durable one, overlaying
 *   2. destaging, in acknowledgement order
 *   3. requests: reads, writes, FLUSH, extents
 *   4. the layer and the public calls
 *
 * Reads: a read that no cached extent overlaps goes straight down (one
 * relaxed load when the cache is empty).  One that cached extents cover
 * is copied from the cache.  Otherwise the read goes below into the
 * caller's buffer and the cached extents are laid over it at completion.
 * An extent may have been evicted meanwhile (its write destaged), and the
 * read below may have run before that write reached the medium: so a
 * read notes c_evicts before going below, and if it moved, reads again
 * holding eviction off (c_holds) so that the second read cannot race.
 *
 * Memory: c_size bytes of dirty write data at most, and c_rmax bytes more
 * being destaged (in the ring, 2 c_rmax bytes larger than c_size), plus, per cached write, sizeof(struct cw) (72 bytes) and one
 * or two extents of 56 bytes (librumpblk(3) states it: the assertions
 * below keep it true).  A single write
 * larger than the whole cache is taken when the cache is empty, and is
 * destaged by the next.
 */
#include <errno.h>
#include <string.h>
#include <sys/mman.h>

#include "cache.h"

#if UINTPTR_MAX == UINT64_MAX	/* the sizes librumpblk(3) gives */
_Static_assert(sizeof(struct cw) == 72, "librumpblk(3) says 72 bytes");
_Static_assert(sizeof(struct ext) == 56, "librumpblk(3) says 56 bytes");
#endif

/* 1. The index. */

static int
ext_cmp(const struct ext *a, const struct ext *b)
{
	return a->x_off < b->x_off ? -1 : a->x_off > b->x_off;
}

/* RB_GENERATE_STATIC with an attribute that compilers know. */
RB_GENERATE_INTERNAL(ext_tree, ext, x_link, ext_cmp,
    __attribute__((unused)) static)

/*
 * The first extent that ends after off (it may start after off too): one
 * descent for the last extent that starts at or before off, then its
 * successor if it ends before.
 */
static struct ext *
ext_first(struct cache *c, uint64_t off)
{
	struct ext *x = RB_ROOT(&c->c_tree), *floor = NULL, *ceil = NULL;

	while (x != NULL) {
		if (x->x_off <= off) {
			floor = x;
			x = RB_RIGHT(x, x_link);
		} else {
			ceil = x;
			x = RB_LEFT(x, x_link);
		}
	}
	if (floor != NULL && floor->x_end > off)
		return floor;
	return ceil;
}

/* Pools. */

#define CHUNK	1024		/* objects a chunk; the first links chunks */

static void *
cpool_get(struct cpool *p)
{
	unsigned char *ch, *o;

	if (p->cp_free == NULL) {
		if ((ch = calloc(CHUNK, p->cp_size)) == NULL)
			return NULL;
		memcpy(ch, &p->cp_chunks, sizeof(void *));
		p->cp_chunks = ch;
		for (unsigned i = 1; i < CHUNK; i++) {
			o = ch + i * p->cp_size;
			memcpy(o, &p->cp_free, sizeof(void *));
			p->cp_free = o;
		}
	}
	o = p->cp_free;
	memcpy(&p->cp_free, o, sizeof(void *));
	return o;
}

static void
cpool_put(struct cpool *p, void *o)
{
	if (o == NULL)
		return;
	memcpy(o, &p->cp_free, sizeof(void *));
	p->cp_free = o;
}

static void
cpool_fini(struct cpool *p)
{
	void *ch, *next;

	for (ch = p->cp_chunks; ch != NULL; ch = next) {
		memcpy(&next, ch, sizeof(void *));
		free(ch);
	}
}

/*
 * The data ring.  Write data is copied into one mapping of c_rsize bytes,
 * at c_rhead, and leaves it in the same order: writes are destaged (and
 * dropped) in acknowledgement order, and a write's data is taken in the
 * same section of L that acknowledges it.  So a request neither
 * allocates nor frees, nor touches a page the kernel must zero again
 * (malloc and free of each write's data were a fifth of the server's
 * time).  A write that does not fit before the end starts again at 0;
 * the end it skips is free once the write before it leaves.
 *
 * The ring is 2 c_rmax bytes larger than the cache: while the data of
 * the dirty and queued writes stays within the cache's size and c_rmax
 * (room_locked sees to it), the bytes skipped at the end, fewer than
 * c_rmax, still leave room; a write larger than c_rmax, or one a cut
 * takes without room, has its data on the heap.
 */
static unsigned char *
ring_get_locked(struct cache *c, uint64_t len)
{
	uint64_t at;

	if (len > c->c_rmax)
		return NULL;
	if (c->c_rlive == 0)
		c->c_rhead = c->c_rtail = 0;
	if (c->c_rlive == 0 || c->c_rhead > c->c_rtail) {
		/* Free: [head, end) and [0, tail). */
		if (c->c_rhead + len <= c->c_rsize)
			at = c->c_rhead;
		else if (len <= c->c_rtail)
			at = 0;
		else
			return NULL;
	} else if (c->c_rhead + len <= c->c_rtail) {
		at = c->c_rhead;	/* free: [head, tail) */
	} else {
		return NULL;
	}
	c->c_rhead = at + len;
	c->c_rlive++;
	return c->c_ring + at;
}

static bool
in_ring(const struct cache *c, const unsigned char *p)
{
	return p >= c->c_ring && p < c->c_ring + c->c_rsize;
}

/* Drop a write that has left the cache (the oldest with ring data). */
static void
cw_free_locked(struct cache *c, struct cw *cw)
{
	if (cw->cw_data != NULL && in_ring(c, cw->cw_data)) {
		c->c_rtail = (uint64_t)(cw->cw_data - c->c_ring) + cw->cw_len;
		if (--c->c_rlive == 0)
			c->c_rhead = c->c_rtail = 0;
	} else {
		free(cw->cw_data);
	}
	cpool_put(&c->c_cwpool, cw);
}

static void
ext_remove(struct cache *c, struct ext *x)
{
	RB_REMOVE(ext_tree, &c->c_tree, x);
	x->x_cw->cw_nexts--;
	if (x->x_cw->cw_x == x)
		x->x_cw->cw_x = NULL;
	atomic_store_explicit(&c->c_nexts, atomic_load_explicit(&c->c_nexts,
	    memory_order_relaxed) - 1, memory_order_relaxed);
	cpool_put(&c->c_xpool, x);
}

static void
ext_insert(struct cache *c, struct ext *x, uint64_t off, uint64_t end,
    struct cw *cw)
{
	x->x_off = off;
	x->x_end = end;
	x->x_cw = cw;
	cw->cw_nexts++;
	RB_INSERT(ext_tree, &c->c_tree, x);
	atomic_store_explicit(&c->c_nexts, atomic_load_explicit(&c->c_nexts,
	    memory_order_relaxed) + 1, memory_order_relaxed);
}

uint64_t
rb_cache_gen(struct cache *c, const struct rb_io *io)
{
	return rb_genmap_next(&c->c_gen, (unsigned)io->io_op,
	    io->io_off >> io->io_unit->u_sectshift);
}

/*
 * The new write cw is the newest data of its bytes: trim, split or drop
 * the extents it overlaps (spare is the tail of one it falls inside),
 * then index it with own.
 */
static void
insert_locked(struct cache *c, struct cw *cw, struct ext *own,
    struct ext *spare)
{
	uint64_t off = cw->cw_off, end = cw->cw_off + cw->cw_len;
	struct ext *x, *next;

	for (x = ext_first(c, off); x != NULL && x->x_off < end; x = next) {
		next = RB_NEXT(ext_tree, &c->c_tree, x);
		if (x->x_off < off && x->x_end > end) {
			ext_insert(c, spare, end, x->x_end, x->x_cw);
			spare = NULL;
			x->x_end = off;
			break;
		} else if (x->x_off < off) {
			x->x_end = off;
		} else if (x->x_end > end) {
			/* Still before its successors: the order holds. */
			x->x_off = end;
		} else {
			ext_remove(c, x);
		}
	}
	cpool_put(&c->c_xpool, spare);
	ext_insert(c, own, off, end, cw);
	cw->cw_x = own;
}

int
rb_cache_add_locked(struct cache *c, const struct rb_io *io, uint64_t gen)
{
	uint64_t dlen = io->io_op == RUMPBLK_B_WRITE ? io->io_len : 0;
	struct ext *own, *spare;
	struct cw *cw;

	rb_assert_held(&c->c_lock);
	own = cpool_get(&c->c_xpool);
	spare = cpool_get(&c->c_xpool);
	if ((cw = cpool_get(&c->c_cwpool)) != NULL)
		memset(cw, 0, sizeof(*cw));
	if (cw != NULL && dlen != 0 &&
	    (cw->cw_data = ring_get_locked(c, dlen)) == NULL)
		cw->cw_data = malloc(dlen);
	if (own == NULL || spare == NULL || cw == NULL ||
	    (dlen != 0 && cw->cw_data == NULL)) {
		cpool_put(&c->c_xpool, own);
		cpool_put(&c->c_xpool, spare);
		cpool_put(&c->c_cwpool, cw);
		return ENOMEM;
	}
	if (dlen != 0)
		memcpy(cw->cw_data, io->io_data, dlen);
	cw->cw_op = io->io_op;
	cw->cw_off = io->io_off;
	cw->cw_len = io->io_len;
	cw->cw_gen = gen;
	cw->cw_ackns = rb_now_ns();
	insert_locked(c, cw, own, spare);
	cw->cw_seq = ++c->c_seq;
	*c->c_tailp = cw;
	c->c_tailp = &cw->cw_next;
	c->c_bytes += dlen;
	c->c_dirty += cw->cw_len;
	c->c_ndirty++;
	c->c_st.cs_bytes_written += cw->cw_len;
	/* A FUA or synchronous write is decided durable before L drops:
	 * no one ever sees it dirty, and the peak leaves it out. */
	if (!rb_io_wants_sync(io) && c->c_dirty > c->c_st.cs_dirty_max)
		c->c_st.cs_dirty_max = c->c_dirty;
	return 0;
}

/* Drop the extents of a write that is on the medium now. */
static void
evict_locked(struct cache *c, struct cw *cw)
{
	struct ext *x, *next;
	uint64_t end = cw->cw_off + cw->cw_len;

	if (cw->cw_nexts == 0)
		return;
	/* Its own extent alone (a write nothing overlapped): no search. */
	if (cw->cw_nexts == 1 && cw->cw_x != NULL) {
		ext_remove(c, cw->cw_x);
		c->c_evicts++;
		return;
	}
	for (x = ext_first(c, cw->cw_off); x != NULL && x->x_off < end &&
	    cw->cw_nexts > 0; x = next) {
		next = RB_NEXT(ext_tree, &c->c_tree, x);
		if (x->x_cw == cw)
			ext_remove(c, x);
	}
	c->c_evicts++;
}

/* Lay the cached data over buf, which holds [off, off + len). */
static void
overlay_locked(struct cache *c, void *buf, uint64_t off, uint64_t len)
{
	uint64_t end = off + len, a, b;
	struct ext *x;

	for (x = ext_first(c, off); x != NULL && x->x_off < end;
	    x = RB_NEXT(ext_tree, &c->c_tree, x)) {
		a = x->x_off > off ? x->x_off : off;
		b = x->x_end < end ? x->x_end : end;
		if (x->x_cw->cw_op == RUMPBLK_B_WRITE)
			memcpy((char *)buf + (a - off), x->x_cw->cw_data +
			    (a - x->x_cw->cw_off), b - a);
		else
			memset((char *)buf + (a - off), 0, b - a);
	}
}

/* How much of [off, off + len) the extents cover: 0, 1 some, 2 all. */
static int
coverage_locked(struct cache *c, uint64_t off, uint64_t len)
{
	uint64_t at = off, end = off + len;
	struct ext *x = ext_first(c, off);
	bool gap = false;

	if (x == NULL || x->x_off >= end)
		return 0;
	for (; x != NULL && x->x_off < end && !gap;
	    x = RB_NEXT(ext_tree, &c->c_tree, x)) {
		gap = x->x_off > at;
		at = x->x_end;
	}
	return !gap && at >= end ? 2 : 1;
}

void
rb_cache_drop_locked(struct cache *c)
{
	struct ext *x;
	struct cw *cw;

	while ((x = RB_MIN(ext_tree, &c->c_tree)) != NULL)
		ext_remove(c, x);
	/* The queue first: it is older (the ring gives back in order). */
	while ((cw = c->c_qhead) != NULL) {
		c->c_qhead = cw->cw_next;
		cw_free_locked(c, cw);
	}
	c->c_qtailp = &c->c_qhead;
	while ((cw = c->c_head) != NULL) {
		c->c_head = cw->cw_next;
		cw_free_locked(c, cw);
	}
	c->c_tailp = &c->c_head;
	c->c_qbytes = 0;
	c->c_bytes = 0;
	c->c_dirty = 0;
	c->c_ndirty = 0;
}

void
rb_cache_hold_locked(struct cache *c, struct rb_io *io)
{
	io->io_next = c->c_held;
	c->c_held = io;
}

/*
 * Take L for a request; if a cut is under way, hold the request (it is
 * in flight at the cut), drop L and say so.
 */
static bool
lock_unless_cut(struct cache *c, struct rb_io *io)
{
	rb_mutex_lock(&c->c_lock);
	if (c->c_state != CS_CUTTING)
		return true;
	rb_cache_hold_locked(c, io);
	rb_mutex_unlock(&c->c_lock);
	return false;
}

/* 2. Destaging. */

static void
lat_add(struct rumpblk_latency *l, uint64_t ns)
{
	l->count++;
	l->timed++;
	l->total_ns += ns;
	if (ns > l->max_ns)
		l->max_ns = ns;
	l->hist[rb_lat_bucket(ns)]++;
}

int
rb_cache_put(struct cache *c, const struct cw *cw, uint64_t off, uint64_t len)
{
	int error = rb_stage_io_below(&c->c_stage, cw->cw_op, RB_IO_NOSYNC,
	    off, len, cw->cw_op == RUMPBLK_B_WRITE ?
	    (void *)(cw->cw_data + (off - cw->cw_off)) : NULL, NULL);

	/* A trim is advice: a medium that cannot trim has lost nothing. */
	return error == EOPNOTSUPP && cw->cw_op == RUMPBLK_B_TRIM ? 0 : error;
}

/*
 * Decide durable, in order, the oldest dirty writes while the oldest was
 * acknowledged at or before upto, or while more than target bytes of
 * data are dirty: they move to the destage queue (L held).
 */
static void
decide_locked(struct cache *c, uint64_t upto, uint64_t target, bool forroom)
{
	struct cw *cw;
	uint64_t now = 0;

	while ((cw = c->c_head) != NULL && (cw->cw_seq <= upto ||
	    c->c_bytes > target)) {
		if ((c->c_head = cw->cw_next) == NULL)
			c->c_tailp = &c->c_head;
		cw->cw_next = NULL;
		*c->c_qtailp = cw;
		c->c_qtailp = &cw->cw_next;
		if (cw->cw_op == RUMPBLK_B_WRITE) {
			c->c_bytes -= cw->cw_len;
			c->c_qbytes += cw->cw_len;
		}
		c->c_dirty -= cw->cw_len;
		c->c_ndirty--;
		c->c_qlast = cw->cw_seq;
		c->c_st.cs_bytes_durable += cw->cw_len;
		if (forroom)
			c->c_st.cs_destaged++;
		if (now == 0)
			now = rb_now_ns();
		lat_add(&c->c_st.cs_durable_lat, now - cw->cw_ackns);
	}
	if (now != 0 && c->c_dwaits)
		pthread_cond_signal(&c->c_qcv);
}

void
rb_cache_drain_locked(struct cache *c)
{
	while (c->c_qhead != NULL)
		pthread_cond_wait(&c->c_cv, &c->c_lock);
}

/*
 * The destager: writes the queue to the medium in order, drops each
 * write from the cache once it is there, and hands each FLUSH waiting for
 * the queue to the stage below once the queue is written up to it.  It
 * takes up to DBATCH writes at a time from the queue's head (they stay
 * on it, so that a cut waits for them): L once for them all.
 */
static void
dio_done(struct rb_io *io)
{
	struct cache *c = ((struct dio *)(void *)io)->d_c;

	if (atomic_fetch_sub_explicit(&c->c_dleft, 1,
	    memory_order_acq_rel) != 1)
		return;
	rb_mutex_lock(&c->c_dlock);
	c->c_ddone = true;
	pthread_cond_signal(&c->c_dcv);
	rb_mutex_unlock(&c->c_dlock);
}

/*
 * Write n queued writes from first, no two of them overlapping, to the
 * medium, all handed below before any is waited for (one wake-up for the
 * batch, and a medium that queues may overlap them).  0, or the first
 * error.
 */
static int
destage(struct cache *c, struct cw *first, unsigned n)
{
	struct rb_io *io;
	struct cw *cw = first;
	unsigned i;
	int error = 0;

	c->c_ddone = false;
	atomic_store_explicit(&c->c_dleft, n, memory_order_relaxed);
	for (i = 0; i < n; i++) {
		io = &c->c_dio[i].d_io;
		memset(io, 0, sizeof(*io));
		c->c_dio[i].d_c = c;
		io->io_op = cw->cw_op;
		io->io_flags = RB_IO_NOSYNC | RUMPBLK_B_ASYNC;
		io->io_off = cw->cw_off;
		io->io_len = cw->cw_len;
		io->io_data = cw->cw_data;
		io->io_unit = c->c_stage.st_unit;
		io->io_done = dio_done;
		/* Only the last one's link may change meanwhile (a
		 * decision appends to it): it is not followed. */
		if (i + 1 < n)
			cw = cw->cw_next;
		rb_stage_pass(&c->c_stage, io);
	}
	rb_mutex_lock(&c->c_dlock);
	while (!c->c_ddone)
		pthread_cond_wait(&c->c_dcv, &c->c_dlock);
	rb_mutex_unlock(&c->c_dlock);
	for (i = 0; i < n && error == 0; i++) {
		io = &c->c_dio[i].d_io;
		/* A trim is advice: a medium that cannot trim lost nothing. */
		if (io->io_error != EOPNOTSUPP || io->io_op != RUMPBLK_B_TRIM)
			error = io->io_error;
	}
	return error;
}

/*
 * Does cw overlap one of the n queued writes from first?  A batch ends
 * before such a write: the medium may complete what it is given in any
 * order (a queue, a pool, a remote server), and an older write to the
 * same bytes, landing last, would leave stale data under a FLUSH that
 * reported both.  Batches are written one after the other, so a write
 * waits only for the batch before it.
 */
static bool
overlaps_batch(const struct cw *first, unsigned n, const struct cw *cw)
{
	const struct cw *b = first;

	for (unsigned i = 0; i < n; i++, b = b->cw_next)
		if (cw->cw_off < b->cw_off + b->cw_len &&
		    b->cw_off < cw->cw_off + cw->cw_len)
			return true;
	return false;
}

static void *
destager(void *arg)
{
	struct cache *c = arg;
	struct rb_io *io;
	struct cw *cw, *first;
	unsigned i, n;
	int error;

	(void)pthread_setname_np(pthread_self(), "rb-destage");
	rb_mutex_lock(&c->c_lock);
	for (;;) {
		if ((io = c->c_flushes) != NULL &&
		    (uint64_t)(uintptr_t)io->io_ctx <= c->c_written) {
			if ((c->c_flushes = io->io_next) == NULL)
				c->c_flushtailp = &c->c_flushes;
			error = c->c_werror;
			c->c_werror = 0;
			rb_mutex_unlock(&c->c_lock);
			if (error != 0)
				rb_io_complete(io, error, 0);
			else
				rb_stage_pass(&c->c_stage, io);
			rb_mutex_lock(&c->c_lock);
			continue;
		}
		if ((first = c->c_qhead) == NULL) {
			if (c->c_stop)
				break;
			c->c_dwaits = true;
			pthread_cond_wait(&c->c_qcv, &c->c_lock);
			c->c_dwaits = false;
			continue;
		}
		for (n = 1, cw = first; n < DBATCH && cw->cw_next != NULL &&
		    !overlaps_batch(first, n, cw->cw_next); n++)
			cw = cw->cw_next;
		rb_mutex_unlock(&c->c_lock);
		error = destage(c, first, n);
		rb_mutex_lock(&c->c_lock);
		/* Decided durable and lost: the next FLUSH says so. */
		if (error != 0 && c->c_werror == 0)
			c->c_werror = error;
		while (c->c_holds > 0)
			pthread_cond_wait(&c->c_cv, &c->c_lock);
		for (i = 0; i < n; i++) {
			cw = c->c_qhead;
			if ((c->c_qhead = cw->cw_next) == NULL)
				c->c_qtailp = &c->c_qhead;
			if (cw->cw_op == RUMPBLK_B_WRITE)
				c->c_qbytes -= cw->cw_len;
			c->c_written = cw->cw_seq;
			evict_locked(c, cw);
			cw_free_locked(c, cw);
		}
		/*
		 * Wake the writes waiting for room once there is a good deal
		 * of it (not at every write: one wake-up for many), and
		 * whoever waits for the queue to empty.
		 */
		if (c->c_qhead == NULL || c->c_roomwaits > 0)
			pthread_cond_broadcast(&c->c_cv);
	}
	rb_mutex_unlock(&c->c_lock);
	return NULL;
}

/*
 * Room for need more bytes of dirty data: a write that would take the
 * dirty data past the cache's size first decides the oldest durable,
 * until it fits and c_step bytes more (a batch for the destager, not a
 * decision at every write); then, if the dirty and queued data would
 * exceed the size by more than c_rmax, it waits for the destager.  So
 * the cache stays full of dirty data while the destager writes a stream
 * of up to c_rmax bytes beside it, and writers and destager run at once
 * (deciding a quarter of the cache and then waiting for all of it made
 * them take turns).  An empty cache takes a write of any size.
 * 0, or ECANCELED: a cut began.
 */
static int
room_locked(struct cache *c, uint64_t need)
{
	if (c->c_state == CS_CUTTING)
		return ECANCELED;
	if (c->c_bytes + need > c->c_size)
		decide_locked(c, 0, c->c_size > need + c->c_step ?
		    c->c_size - need - c->c_step : 0, true);
	while (c->c_bytes + c->c_qbytes + need > c->c_size + c->c_rmax &&
	    c->c_qhead != NULL && c->c_state != CS_CUTTING) {
		c->c_roomwaits++;
		pthread_cond_wait(&c->c_cv, &c->c_lock);
		c->c_roomwaits--;
	}
	return c->c_state == CS_CUTTING ? ECANCELED : 0;
}

/*
 * io (a FLUSH, or a FUA write) completes once the medium has every
 * write up to seq: a FLUSH goes below then (the destager hands it on),
 * a FUA write is followed by a FLUSH of our own below.  Now, if the
 * destager is there already.
 */
struct fua_wait {
	struct rb_io	fw_flush;	/* the FLUSH below */
	struct rb_io	*fw_orig;	/* the FUA write */
};

static void
fua_done(struct rb_io *io)
{
	struct fua_wait *fw = (struct fua_wait *)(void *)io;
	struct rb_io *orig = fw->fw_orig;
	int error = io->io_error;

	free(fw);
	rb_io_complete(orig, error, error == 0 ? orig->io_len : 0);
}

static void
flush_wait_locked(struct cache *c, struct rb_io *io, uint64_t seq)
{
	struct fua_wait *fw;

	if (io->io_op != RUMPBLK_B_FLUSH) {
		/* A FUA write: a FLUSH of ours, done when it is. */
		if ((fw = calloc(1, sizeof(*fw))) == NULL) {
			rb_mutex_unlock(&c->c_lock);
			rb_io_complete(io, ENOMEM, 0);
			rb_mutex_lock(&c->c_lock);
			return;
		}
		fw->fw_orig = io;
		fw->fw_flush.io_op = RUMPBLK_B_FLUSH;
		fw->fw_flush.io_flags = io->io_flags & RUMPBLK_B_ASYNC;
		fw->fw_flush.io_unit = io->io_unit;
		fw->fw_flush.io_done = fua_done;
		io = &fw->fw_flush;
	}
	io->io_ctx = (void *)(uintptr_t)seq;
	io->io_next = NULL;
	*c->c_flushtailp = io;
	c->c_flushtailp = &io->io_next;
	pthread_cond_signal(&c->c_qcv);
}

/* 3. Requests. */

/* A read below, with the cache laid over it at completion. */
struct cread {
	struct rb_io	cr_io;		/* to the stage below */
	struct rb_io	*cr_orig;
	struct cache	*cr_c;
	uint64_t	cr_evicts;	/* c_evicts when it went below */
	uint64_t	cr_cuts;	/* power cuts then */
	bool		cr_hold;	/* holds eviction off */
};

static void read_below(struct cread *);

static void
read_done(struct rb_io *io)
{
	struct cread *cr = (struct cread *)(void *)io;
	struct cache *c = cr->cr_c;
	struct rb_io *orig = cr->cr_orig;
	int error = io->io_error;
	size_t moved = io->io_moved;
	uint64_t cuts;

	rb_mutex_lock(&c->c_lock);
	if (error == 0 && !cr->cr_hold && c->c_evicts != cr->cr_evicts) {
		/* An extent went meanwhile: again, with eviction held. */
		cr->cr_hold = true;
		c->c_holds++;
		rb_mutex_unlock(&c->c_lock);
		read_below(cr);
		return;
	}
	if (cr->cr_hold && --c->c_holds == 0)
		pthread_cond_broadcast(&c->c_cv);
	cuts = cr->cr_cuts;
	rb_frame_put(&c->c_frames, cr);
	if (c->c_state == CS_CUTTING) {
		rb_cache_hold_locked(c, orig);
		rb_mutex_unlock(&c->c_lock);
		return;
	}
	/* In flight at a cut that is over: what it read is gone. */
	if (error == 0 && c->c_st.cs_power_cuts != cuts) {
		error = EIO;
		moved = 0;
	}
	if (error == 0)
		overlay_locked(c, orig->io_data, orig->io_off, moved);
	rb_mutex_unlock(&c->c_lock);
	rb_io_complete(orig, error, moved);
}

static void
read_below(struct cread *cr)
{
	struct rb_io *orig = cr->cr_orig;

	cr->cr_io = *orig;
	cr->cr_io.io_flags &= ~RUMPBLK_B_LOAN;
	cr->cr_io.io_done = read_done;
	cr->cr_io.io_ctx = NULL;
	cr->cr_io.io_next = NULL;
	cr->cr_io.io_error = 0;
	cr->cr_io.io_moved = 0;
	rb_stage_pass(&cr->cr_c->c_stage, &cr->cr_io);
}

static void
cache_read(struct cache *c, struct rb_io *io)
{
	struct cread *cr;
	int cov;

	/*
	 * The cache bars loans (no lends_through): a LOAN here raced our
	 * push, and goes the way of a partly cached read, in a frame of
	 * ours without the flag.
	 */
	if (atomic_load_explicit(&c->c_nexts, memory_order_relaxed) == 0 &&
	    RB_LIKELY((io->io_flags & RUMPBLK_B_LOAN) == 0)) {
		/* Nothing cached (or the extents a racing write adds are
		 * its own: the read is concurrent with it). */
		rb_stage_pass(&c->c_stage, io);
		return;
	}
	if (!lock_unless_cut(c, io))
		return;
	if ((cov = coverage_locked(c, io->io_off, io->io_len)) == 0 &&
	    (io->io_flags & RUMPBLK_B_LOAN) == 0) {
		rb_mutex_unlock(&c->c_lock);
		rb_stage_pass(&c->c_stage, io);
		return;
	}
	if (cov == 2) {
		overlay_locked(c, io->io_data, io->io_off, io->io_len);
		rb_mutex_unlock(&c->c_lock);
		rb_io_complete(io, 0, io->io_len);
		return;
	}
	if ((cr = rb_frame_get(&c->c_frames)) == NULL) {
		rb_mutex_unlock(&c->c_lock);
		rb_io_complete(io, ENOMEM, 0);
		return;
	}
	cr->cr_orig = io;
	cr->cr_c = c;
	cr->cr_evicts = c->c_evicts;
	cr->cr_cuts = c->c_st.cs_power_cuts;
	rb_mutex_unlock(&c->c_lock);
	read_below(cr);
}

/* A write, trim or write-zeroes: cached, then acknowledged. */
static void
cache_write(struct cache *c, struct rb_io *io)
{
	uint64_t need = io->io_op == RUMPBLK_B_WRITE ? io->io_len : 0;
	uint64_t gen = rb_cache_gen(c, io);
	int error;

	rb_mutex_lock(&c->c_lock);
	if ((error = room_locked(c, need)) == 0)
		error = rb_cache_add_locked(c, io, gen);
	if (error != 0) {
		/* ECANCELED: a cut began; the request is in flight at it. */
		if (error == ECANCELED)
			rb_cache_hold_locked(c, io);
		rb_mutex_unlock(&c->c_lock);
		if (error != ECANCELED)
			rb_io_complete(io, error, 0);
		return;
	}
	if (!rb_io_wants_sync(io)) {
		rb_mutex_unlock(&c->c_lock);
		rb_io_complete(io, 0, io->io_len);
		return;
	}
	/* FUA: durable when acknowledged (with all before it: in order). */
	c->c_st.cs_fua++;
	decide_locked(c, c->c_seq, UINT64_MAX, false);
	flush_wait_locked(c, io, c->c_seq);
	rb_mutex_unlock(&c->c_lock);
}

/*
 * FLUSH: every write acknowledged before it is decided durable, and the
 * FLUSH goes below (it syncs the medium) once the destager has written
 * them (at once if it has).
 */
static void
cache_flush(struct cache *c, struct rb_io *io)
{
	if (!lock_unless_cut(c, io))
		return;
	c->c_st.cs_flushes++;
	decide_locked(c, c->c_seq, UINT64_MAX, false);
	flush_wait_locked(c, io, c->c_qlast);
	rb_mutex_unlock(&c->c_lock);
}

/*
 * Extent queries: the medium below does not know what is cached, and a
 * client may skip a "hole" it reports.  If anything cached overlaps the
 * range, the query waits (as a FLUSH would, deciding every write
 * durable) until the medium has it all, so that the answer below is true.
 */
static void
cache_extents(struct cache *c, struct rb_io *io)
{
	if (atomic_load_explicit(&c->c_nexts, memory_order_relaxed) != 0) {
		if (!lock_unless_cut(c, io))
			return;
		if (coverage_locked(c, io->io_off, io->io_len) != 0) {
			decide_locked(c, c->c_seq, UINT64_MAX, false);
			rb_cache_drain_locked(c);
		}
		rb_mutex_unlock(&c->c_lock);
	}
	rb_stage_pass(&c->c_stage, io);
}

/* 4. The layer. */

static void
cache_submit(struct rb_stage *st, struct rb_io *io)
{
	struct cache *c = (struct cache *)st;

	switch (io->io_op) {
	case RUMPBLK_B_READ:
		cache_read(c, io);
		break;
	case RUMPBLK_B_WRITE:
	case RUMPBLK_B_TRIM:
	case RUMPBLK_B_ZERO:
		cache_write(c, io);
		break;
	case RUMPBLK_B_FLUSH:
		cache_flush(c, io);
		break;
	default:
		cache_extents(c, io);
		break;
	}
}

static void
cache_destroy(struct rb_stage *st)
{
	struct cache *c = (struct cache *)st;

	/* The teardown FLUSH went through: the queue is written, nothing
	 * is dirty.  The destager ends. */
	rb_mutex_lock(&c->c_lock);
	rb_cache_drain_locked(c);
	c->c_stop = true;
	pthread_cond_signal(&c->c_qcv);
	rb_mutex_unlock(&c->c_lock);
	pthread_join(c->c_thread, NULL);
	rb_cache_drop_locked(c);
	pthread_cond_destroy(&c->c_qcv);
	cpool_fini(&c->c_xpool);
	cpool_fini(&c->c_cwpool);
	munmap(c->c_ring, c->c_rsize);
	rb_genmap_fini(&c->c_gen);
	rb_frames_fini(&c->c_frames);
	pthread_cond_destroy(&c->c_cv);
	pthread_cond_destroy(&c->c_dcv);
	pthread_mutex_destroy(&c->c_dlock);
	pthread_mutex_destroy(&c->c_lock);
	free(c);
}

/*
 * Prefetch: a write stays in the cache, so only a read's place below is
 * worth bringing in.
 */
static void
cache_prefetch(struct rb_stage *st, int op, uint64_t off)
{
	if (op == RUMPBLK_B_READ)
		rb_stage_prefetch_below(st, op, off);
}

static const struct rb_ops cache_ops = {
	.name = "cache",
	.submit = cache_submit,
	.destroy = cache_destroy,
	.prefetch = cache_prefetch,
};

struct cache *
rb_cache_of(struct rb_unit *u)
{
	return (struct cache *)rb_stack_find(u, &cache_ops);
}

#define CACHE_MIN	(64 * 1024)
#define RING_MAX	(1024 * 1024)	/* c_rmax at most */

int
rumpblk_write_cache(struct rumpblk *rb, int unit, uint64_t size)
{
	struct rb_unit *u;
	struct cache *c;
	unsigned ep;
	int error = 0;

	if (size < CACHE_MIN)
		return EINVAL;
	/* rb_lock: one push per unit at a time, and the unit stays. */
	rb_mutex_lock(&rb->rb_lock);
	if ((u = rb_unit_hold(rb, unit, &ep)) == NULL) {
		rb_mutex_unlock(&rb->rb_lock);
		return ENXIO;
	}
	if ((u->u_mode & RUMPBLK_FWRITE) == 0)
		error = EROFS;
	else if (rb_cache_of(u) != NULL)
		error = EBUSY;
	else if ((c = aligned_alloc(RB_CACHELINE, sizeof(*c))) == NULL)
		error = ENOMEM;
	if (error != 0)
		goto out;
	memset(c, 0, sizeof(*c));
	c->c_rmax = size / 8 < RING_MAX ? size / 8 : RING_MAX;
	c->c_rsize = size + 2 * c->c_rmax;
	c->c_ring = mmap(NULL, c->c_rsize, PROT_READ | PROT_WRITE,
	    MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (c->c_ring == MAP_FAILED) {
		error = errno;
		free(c);
		goto out;
	}
	pthread_mutex_init(&c->c_lock, NULL);
	pthread_mutex_init(&c->c_dlock, NULL);
	pthread_cond_init(&c->c_dcv, NULL);
	pthread_cond_init(&c->c_cv, NULL);
	pthread_cond_init(&c->c_qcv, NULL);
	c->c_size = size;
	c->c_step = c->c_rmax / 4;
	c->c_st.cs_size = size;
	c->c_xpool.cp_size = sizeof(struct ext);
	c->c_cwpool.cp_size = sizeof(struct cw);
	rb_frames_init(&c->c_frames, sizeof(struct cread));
	rb_genmap_init(&c->c_gen);
	RB_INIT(&c->c_tree);
	c->c_tailp = &c->c_head;
	c->c_qtailp = &c->c_qhead;
	c->c_flushtailp = &c->c_flushes;
	rb_stage_init(&c->c_stage, &cache_ops, u, RB_RANK_CACHE);
	if ((error = pthread_create(&c->c_thread, NULL, destager, c)) != 0) {
		rb_genmap_fini(&c->c_gen);
		rb_frames_fini(&c->c_frames);
		pthread_cond_destroy(&c->c_qcv);
		pthread_cond_destroy(&c->c_cv);
		pthread_cond_destroy(&c->c_dcv);
		pthread_mutex_destroy(&c->c_dlock);
		pthread_mutex_destroy(&c->c_lock);
		munmap(c->c_ring, c->c_rsize);
		free(c);
		goto out;
	}
	rb_stack_push(u, &c->c_stage);
out:
	rb_unit_rele(u, ep);
	rb_mutex_unlock(&rb->rb_lock);
	return error;
}

int
rumpblk_cache_stats(struct rumpblk *rb, int unit,
    struct rumpblk_cache_stats *cs)
{
	struct rb_unit *u;
	struct cache *c;
	unsigned ep;

	memset(cs, 0, sizeof(*cs));
	if ((u = rb_unit_hold(rb, unit, &ep)) == NULL)
		return ENXIO;
	if ((c = rb_cache_of(u)) == NULL) {
		rb_unit_rele(u, ep);
		return ENOTSUP;
	}
	rb_mutex_lock(&c->c_lock);
	*cs = c->c_st;
	cs->cs_dirty_bytes = c->c_dirty;
	cs->cs_dirty_writes = c->c_ndirty;
	rb_mutex_unlock(&c->c_lock);
	rb_unit_rele(u, ep);
	return 0;
}
