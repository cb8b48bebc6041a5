/*
 * Private declarations of librumpblk, one section per .c file.
 *
 * The driver is a stack (DESIGN.md §2): rumpblk_strategy() checks a buffer,
 * turns it into a struct rb_io and hands it to the unit's top stage.  A
 * stage is a layer (fault rules; later the write log and the volatile
 * cache) or, at the bottom, exactly one backend, made by the unit's
 * backing (for a host file: pio, mmap, direct, uring).  All stages share
 * struct rb_ops; "The layer stack" below says their order and why, and
 * lib/stack.c is the one API that changes a stack.  A unit with no layers
 * has its backend on top, so the fast path pays nothing for layers it
 * does not use.  Where a new layer, backing or front end goes: README,
 * "The stack, and where new parts go".
 *
 * Nothing here is exported: lib/rumpblk.syms keeps every rb_ symbol local
 * to the shared library.  Tests that need internals link the static one.
 */
#ifndef RUMPBLK_INTERNAL_H
#define RUMPBLK_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/types.h>

#include "rumpblk/rumpblk.h"

#define RB_LIKELY(x)	__builtin_expect(!!(x), 1)
#define RB_UNLIKELY(x)	__builtin_expect(!!(x), 0)
#define RB_CACHELINE	64
/* Counter shards, one per thread up to RB_NSHARDS - 1 (see Counters). */
#define RB_NSHARDS	16

#ifdef RUMPBLK_DEBUG
#define rb_assert_held(m) \
	do { if (pthread_mutex_trylock(m) == 0) abort(); } while (0)
#else
#define rb_assert_held(m) do { (void)(m); } while (0)
#endif

/* Lock or unlock; a failure is a broken invariant. */
void rb_mutex_lock(pthread_mutex_t *);
void rb_mutex_unlock(pthread_mutex_t *);

/* ------------------------------------------------------------------ */
/* The I/O request that travels down the stack                         */
/* ------------------------------------------------------------------ */

struct rb_unit;
struct rb_stage;
struct rb_io;

typedef void rb_io_fn(struct rb_io *);

/*
 * One request, as a stage sees it.  Offsets are bytes into the unit (not
 * the host file: a backend adds its host offset), already bounds-checked
 * and truncated to the unit's end.  A stage completes a request by
 * setting io_error and io_moved and calling io_done exactly once, from
 * any thread, possibly before submit returns.  A layer that must see the
 * completion submits a request of its own (in a frame from its rb_frames
 * pool, with its own io_done) to the stage below; it never changes the
 * fields of a request it was given.  io_ctx, io_next and io_work belong
 * to the stage that holds the request now: a stage that queues or hands
 * a request to a worker may use them, and whoever receives a request
 * from it may overwrite them.
 */
struct rb_io {
	int		io_op;		/* one RUMPBLK_B_ op bit */
	int		io_flags;	/* RUMPBLK_B_ASYNC | _FUA | _NOHOLE, RB_IO_ */
	uint64_t	io_off;		/* bytes into the unit */
	size_t		io_len;		/* bytes */
	void		*io_data;	/* READ/WRITE data; EXTENTS result */
	struct rb_unit	*io_unit;
	rb_io_fn	*io_done;	/* completion */
	void		*io_ctx;	/* the holding stage's context */
	int		io_error;	/* out: 0 or errno */
	unsigned	io_epoch;	/* strategy's: the unit reference's */
	size_t		io_moved;	/* out: bytes moved */
	struct rb_io	*io_next;	/* queue link, owned by the queue */
	rb_io_fn	*io_work;	/* work for a worker (rb_pool) */
	/*
	 * Out, a READ with RUMPBLK_B_LOAN in io_flags (strategy passes the
	 * flag only to a backend on top of its stack): the bytes the
	 * backend lent instead of copying, its handle for the unloan op
	 * left in io_ctx.  NULL: copied into io_data.  RB_LENT_FD: lent as
	 * a file descriptor only (RUMPBLK_B_LOAN_FD; the loan_fd op).
	 */
	const char	*io_lent;
};

/* io_lent of a loan with no bytes in memory (RUMPBLK_B_LOAN_FD). */
extern const char rb_lent_fd[1];
#define RB_LENT_FD	rb_lent_fd

/*
 * Internal request flags, above the public RUMPBLK_B_ bits.  NOFAULT: the
 * library's own request (the flush of a unit being torn down, a layer's
 * read for a snapshot); fault rules never select it.
 */
#define RB_IO_NOFAULT	0x10000
/*
 * NOSYNC: a layer's own write that no request waits on and that need not
 * be durable at completion (the cache's destaging and a power cut's
 * resolution; the cache's FLUSH syncs).  Without RUMPBLK_B_ASYNC it runs
 * in the caller's thread, so it may be waited for from any thread.
 *
 * The backend may take the way to the medium that costs the least CPU
 * rather than the least latency.  The mmap backend then writes with
 * pwrite: a store through the mapping to a page not mapped yet takes a
 * page fault, and random destaging into a large image faulted at nearly
 * every write (bench/write-cache.sh, where the faults were most of the
 * destager's time).
 */
#define RB_IO_NOSYNC	0x20000

static inline void
rb_io_complete(struct rb_io *io, int error, size_t moved)
{
	io->io_error = error;
	io->io_moved = moved;
	io->io_done(io);
}

/*
 * Durable at completion?  A write or zero with FUA, or without ASYNC
 * (and not a layer's NOSYNC write).
 */
static inline bool
rb_io_wants_sync(const struct rb_io *io)
{
	return (io->io_flags & RUMPBLK_B_FUA) != 0 ||
	    (io->io_flags & (RUMPBLK_B_ASYNC | RB_IO_NOSYNC)) == 0;
}

/* ------------------------------------------------------------------ */
/* The layer stack (stack.c)                                           */
/* ------------------------------------------------------------------ */

/*
 * A unit's stack, top to bottom: zero or more layers, then exactly one
 * backend.  Every stage has the same ops; strategy submits to the top,
 * and each layer submits to the stage below it (rb_stage_lower), answers
 * a request itself, or issues requests of its own below.  Durability has
 * one path: FLUSH (and FUA on a write) through submit.
 *
 * The order is declared, by rank (smaller is higher), and the stack keeps
 * it whatever order layers are pushed in:
 *
 *   RB_RANK_FAULT   fault rules: they act on the stream as the client
 *                   sent it, before anything below records or holds it
 *   RB_RANK_LOG     the write log: records the stream after faults (a
 *                   lost write is not in it, a misdirected one is where
 *                   it landed), which is what crash-state exploration
 *                   replays
 *   RB_RANK_CACHE   the volatile write cache: below the log, since it
 *                   decides what a power cut keeps of the logged stream
 *   RB_RANK_BACKEND the backend of the unit's backing (pio, mmap, direct,
 *                   uring for a host file; a remote backing's own)
 *
 * Changes (push, remove) are serialised by rb_stacklock; requests read
 * the stack without a lock (u_top, st_lower are atomic pointers).  A
 * pushed layer is linked below its upper neighbour with one release
 * store: a request sees the stack with or without it.  A removed layer
 * is unlinked the same way, and freed only after a grace period
 * (rb_unit_quiesce): every request that could have seen it has
 * completed.
 */
enum rb_rank {
	RB_RANK_FAULT	= 100,
	RB_RANK_LOG	= 200,
	RB_RANK_CACHE	= 300,
	RB_RANK_BACKEND	= 1000,
};

struct rb_ops {
	const char	*name;
	/* Start a request; complete it through rb_io_complete(). */
	void	(*submit)(struct rb_stage *, struct rb_io *);
	/*
	 * Free the stage.  No request is in it, and FLUSH has gone through
	 * it (for a unit's teardown).  NULL: free().
	 */
	void	(*destroy)(struct rb_stage *);
	/*
	 * Optional: a request of op (READ or WRITE) at byte off of the unit
	 * is about to be submitted; start bringing in what it will touch
	 * (the request has not been checked yet: off may be anywhere).
	 * Never blocks, never fails.  Strategy calls the highest stage that
	 * has it: it passes through every layer that does not, and a stage
	 * that has it passes it on with rb_stage_prefetch_below.
	 */
	void	(*prefetch)(struct rb_stage *, int op, uint64_t off);
	/*
	 * Optional: the unit is being reset (rumpblk_unit_reset, a power
	 * cut): drop volatile state.  Called top to bottom, with
	 * rb_stacklock held; may not wait for requests.
	 */
	void	(*reset)(struct rb_stage *);
	/*
	 * Optional, a backend that lends (RUMPBLK_B_LOAN): the consumer of
	 * a loan is done with it; handle is the io_ctx it left.  Any
	 * thread, any time before the backend is destroyed (the unit's
	 * drain waits for loans).
	 */
	void	(*unloan)(struct rb_stage *, void *handle);
	/*
	 * Optional, a backend whose loans a file descriptor reaches
	 * (rumpblk_loan_fd): where the bytes of io's loan are, a file
	 * and offset or a pipe (RUMPBLK_LOAN_PIPE).  0, or EINVAL.
	 */
	int	(*loan_fd)(struct rb_stage *, const struct rb_io *io,
		    int *fdp, uint64_t *offp);
	/*
	 * A layer: true if a READ that it passes down as it came (no frame
	 * of its own) may carry RUMPBLK_B_LOAN to the backend, because the
	 * layer neither holds nor changes read data on that path; frames
	 * of its own never carry the flag.  A unit with any layer without
	 * it lends nothing (strategy strips the flag; u_noloan).
	 */
	bool	lends_through;
};

/* A stage; backends and layers embed it as their first member. */
struct rb_stage {
	const struct rb_ops *st_ops;		/* ( */
	_Atomic(struct rb_stage *) st_lower;	/* stacklock, a; NULL: backend */
	struct rb_unit	*st_unit;		/* ( */
	int		st_rank;		/* ( enum rb_rank */
	/* the next stage below with a prefetch op, or NULL */
	_Atomic(struct rb_stage *) st_pfnext;	/* stacklock, a */
};

/* Hand a prefetch on to the next stage below that has the op. */
static inline void
rb_stage_prefetch_below(struct rb_stage *st, int op, uint64_t off)
{
	struct rb_stage *pf = atomic_load_explicit(&st->st_pfnext,
	    memory_order_acquire);

	if (pf != NULL)
		pf->st_ops->prefetch(pf, op, off);
}

/* The stage below st, as a request passing through st sees it. */
static inline struct rb_stage *
rb_stage_lower(struct rb_stage *st)
{
	return atomic_load_explicit(&st->st_lower, memory_order_acquire);
}

/* Hand a request to the stage below st. */
static inline void
rb_stage_pass(struct rb_stage *st, struct rb_io *io)
{
	struct rb_stage *lower = rb_stage_lower(st);

	lower->st_ops->submit(lower, io);
}

/* Set up a layer's stage fields before rb_stack_push. */
void	rb_stage_init(struct rb_stage *, const struct rb_ops *,
	    struct rb_unit *, int rank);
/*
 * Put a layer on a unit's stack at the place its rank says (below the
 * stages of smaller or equal rank).  The unit is live or being
 * registered.  Takes rb_stacklock.
 */
void	rb_stack_push(struct rb_unit *, struct rb_stage *);
/* The highest stage with these ops on the unit, or NULL.  Lock-free. */
struct rb_stage *rb_stack_find(struct rb_unit *, const struct rb_ops *);
/*
 * Take a layer off a live unit while I/O runs: unlink it, wait a grace
 * period, destroy it.  Not from a completion or with a unit reference
 * held (the grace period waits for those).  0, or ENOENT if st is not
 * on the unit's stack.
 */
int	rb_stack_remove(struct rb_unit *, struct rb_stage *);
/* Destroy every stage of a drained unit, top to bottom. */
void	rb_stack_destroy(struct rb_unit *);
/* Call every stage's reset op, top to bottom. */
void	rb_stack_reset(struct rb_unit *);

/*
 * Submit one request to the top of a unit's stack and wait for it; the
 * caller holds the unit (a reference, or it is drained but not torn
 * down).  0 or the request's error; *movedp (may be NULL) gets io_moved.
 */
int	rb_stack_io(struct rb_unit *, int op, int flags, uint64_t off,
	    size_t len, void *data, size_t *movedp);
/* The same, starting below stage st. */
int	rb_stage_io_below(struct rb_stage *st, int op, int flags,
	    uint64_t off, size_t len, void *data, size_t *movedp);

/*
 * Per-request state of a layer without an allocation per request: a pool
 * of fixed-size frames per layer, with a free list per counter shard (so
 * per thread) under its own lock.  A frame goes back to the list it came
 * from, whatever thread frees it, so lists do not drift apart.  Frames
 * are allocated in chunks when a list is empty and freed only with the
 * pool: memory follows the most requests the layer held at once.
 */
struct rb_frame_list {
	pthread_mutex_t	fl_lock;
	void		*fl_free;	/* fl_lock */
} __attribute__((aligned(RB_CACHELINE)));

struct rb_frames {
	struct rb_frame_list fr_list[RB_NSHARDS];
	pthread_mutex_t	fr_chunklock;
	void		*fr_chunks;	/* fr_chunklock: every chunk */
	size_t		fr_size;	/* ( bytes a frame, with its header */
};

void	rb_frames_init(struct rb_frames *, size_t size);
/* A zeroed frame, or NULL (ENOMEM). */
void	*rb_frame_get(struct rb_frames *);
void	rb_frame_put(struct rb_frames *, void *);
/* Free every frame; none is in use. */
void	rb_frames_fini(struct rb_frames *);

/* ------------------------------------------------------------------ */
/* Generations (genmap.c)                                              */
/* ------------------------------------------------------------------ */

/* splitmix64's finaliser: the mix of every key and decision. */
static inline uint64_t
rb_mix64(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ull;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

/*
 * A unit's map (op bit, first sector) -> requests seen, lock-free for a
 * key seen before (genmap.c says how).  Embedded in its user.
 */
#define RB_GEN_STRIPES	64
struct gen_tab;
struct gen_stripe {
	pthread_mutex_t	gs_lock;	/* inserting and growing */
	_Atomic(struct gen_tab *) gs_tab; /* gs_lock, a: NULL when empty */
	size_t		gs_n;		/* gs_lock */
} __attribute__((aligned(RB_CACHELINE)));

struct rb_genmap {
	struct gen_stripe gm_stripe[RB_GEN_STRIPES];
};

void	rb_genmap_init(struct rb_genmap *);
void	rb_genmap_fini(struct rb_genmap *);
/* The generation of a request with this key; counts it.  Any thread. */
uint64_t rb_genmap_next(struct rb_genmap *, unsigned opbit, uint64_t sector);
/* Start the cache miss of the key's slot (a request about to count). */
void	rb_genmap_prefetch(struct rb_genmap *, unsigned opbit,
	    uint64_t sector);

/* ------------------------------------------------------------------ */
/* Counters (stats.c)                                                  */
/* ------------------------------------------------------------------ */

/*
 * Counters are kept in shards laid out exactly like struct rumpblk_stats,
 * one array of 64-bit words, so that a new field of the public struct needs
 * no code here.  Shards sit on their own cache lines so that two threads
 * do not bounce a line on every request.  A snapshot sums shards (max_ns
 * takes the maximum).
 *
 * A thread claims a shard of its own on its first update (released when
 * it exits), and as the only writer it updates with a relaxed load and
 * store: no locked instruction on the request path, where up to ten
 * atomic read-modify-writes per request cost several percent of a 4 KiB
 * copy.  Threads beyond RB_NSHARDS - 1 share the last shard and update
 * it with atomic adds.  Readers load every word relaxed.
 */
#define RB_SHARD_SHARED	(RB_NSHARDS - 1)
#define RB_NSTATWORDS	(sizeof(struct rumpblk_stats) / sizeof(uint64_t))
#define RB_STAT(f)	(offsetof(struct rumpblk_stats, f) / sizeof(uint64_t))

/*
 * Words of a shard past the public struct: completions of the ops that
 * struct rumpblk_stats keeps no latency record for (their histograms'
 * exact counts).  They fit in the shard's last cache line's padding.
 */
#define RB_W_TRIMDONE	(RB_NSTATWORDS + 0)
#define RB_W_ZERODONE	(RB_NSTATWORDS + 1)
#define RB_W_EXTDONE	(RB_NSTATWORDS + 2)
#define RB_NSHWORDS	(RB_NSTATWORDS + 3)

struct rb_shard {
	_Atomic uint64_t sh_w[RB_NSHWORDS];
} __attribute__((aligned(RB_CACHELINE)));

/*
 * A log-linear latency histogram (the layout of struct rumpblk_hist).
 * Shared by every thread and updated with relaxed atomic adds: a unit's
 * are written for one request in rb_lat_sample (and for requests of a
 * bound connection or with a fault firing, which cost far more than an
 * add), so they need no shards.  h_count is kept here only where every
 * request is timed (faults, connections) and in retired sums; a unit's
 * op counts are the shards' (exact, and free on the common path).
 */
struct rb_hist {
	_Atomic uint64_t h_count;
	_Atomic uint64_t h_sum;		/* ns */
	_Atomic uint64_t h_max;		/* ns */
	_Atomic uint64_t h_b[RUMPBLK_HIST_BUCKETS];
};

/* Operations, by the index of their RUMPBLK_B_ bit (READ 0 ... EXTENTS 5). */
#define RB_NOPS		6
static inline unsigned
rb_op_index(int op)
{
	return (unsigned)__builtin_ctz((unsigned)op);
}

/* A unit's histograms: one per op, one per fault class. */
struct rb_hists {
	struct rb_hist	hs_op[RB_NOPS];
	struct rb_hist	hs_fault[RUMPBLK_FAULT_NCLASS];
};

struct rb_counters {
	struct rb_shard	cn_shard[RB_NSHARDS];
	struct rb_hists	cn_hist;
};

/* This thread's shard, UINT32_MAX before its first update. */
extern _Thread_local unsigned rb_my_shard
    __attribute__((tls_model("initial-exec")));
unsigned	rb_shard_claim(void);

static inline unsigned
rb_shard_index(void)
{
	unsigned s = rb_my_shard;

	if (RB_UNLIKELY(s == UINT32_MAX))
		s = rb_shard_claim();
	return s;
}

/* Add n to a counter word of this thread's shard. */
static inline void
rb_stat_add_word(_Atomic uint64_t *w, unsigned shard, uint64_t n)
{
	if (RB_LIKELY(shard != RB_SHARD_SHARED))
		atomic_store_explicit(w, atomic_load_explicit(w,
		    memory_order_relaxed) + n, memory_order_relaxed);
	else
		atomic_fetch_add_explicit(w, n, memory_order_relaxed);
}

static inline void
rb_stat_add(struct rb_counters *cn, size_t word, uint64_t n)
{
	unsigned s = rb_shard_index();

	rb_stat_add_word(&cn->cn_shard[s].sh_w[word], s, n);
}
struct rb_conn;
/*
 * Count one completed op of a unit; ns == UINT64_MAX means it was not
 * timed.  A timed op goes into the unit's histogram, and into cx's (a
 * bound connection's, or NULL).
 */
void	rb_stat_latency(struct rb_counters *, int op, uint64_t ns,
	    struct rb_conn *cx);
/*
 * Requests a fault fired on: count (and with ns != UINT64_MAX, time)
 * one for each class bit (1u << class) of classes.
 */
void	rb_stat_fault_latency(struct rb_counters *, unsigned classes,
	    uint64_t ns);

/* The log-linear bucket of a latency (struct rumpblk_hist's layout). */
static inline unsigned
rb_hist_bucket(uint64_t ns)
{
	unsigned k, o;

	if (ns <= (1ull << RUMPBLK_HIST_MINSHIFT))
		return 0;
	/* Buckets are (lo, hi]: place ns - 1 in [lo, hi). */
	ns--;
	k = 63 - (unsigned)__builtin_clzll(ns);
	o = k - RUMPBLK_HIST_MINSHIFT;
	if (o >= RUMPBLK_HIST_OCTAVES)
		return RUMPBLK_HIST_BUCKETS - 1;
	return 1 + o * RUMPBLK_HIST_SUB + (unsigned)((ns >> (k -
	    RUMPBLK_HIST_SUBBITS)) & (RUMPBLK_HIST_SUB - 1));
}

/* The bucket of a latency: [2^b, 2^(b+1)) ns, 0 ns in bucket 0. */
static inline unsigned
rb_lat_bucket(uint64_t ns)
{
	unsigned b = ns == 0 ? 0 : 63 - (unsigned)__builtin_clzll(ns);

	return b < RUMPBLK_LAT_BUCKETS ? b : RUMPBLK_LAT_BUCKETS - 1;
}

/* Word f of a struct rumpblk_latency, from its first word. */
#define RB_LAT_W(f)	(offsetof(struct rumpblk_latency, f) / sizeof(uint64_t))

/*
 * Count an op that was not timed: rb_stat_latency(cn, op, UINT64_MAX),
 * inline, as it is what nearly every request does.
 */
static inline void
rb_stat_latency_count(struct rb_counters *cn, int op)
{
	size_t base;

	switch (op) {
	case RUMPBLK_B_READ:	base = RB_STAT(lat_read); break;
	case RUMPBLK_B_WRITE:	base = RB_STAT(lat_write); break;
	case RUMPBLK_B_FLUSH:	base = RB_STAT(lat_flush); break;
	case RUMPBLK_B_TRIM:	base = RB_W_TRIMDONE; break;
	case RUMPBLK_B_ZERO:	base = RB_W_ZERODONE; break;
	case RUMPBLK_B_EXTENTS:	base = RB_W_EXTDONE; break;
	default:		return;
	}
	if (base < RB_NSTATWORDS)
		base += RB_LAT_W(count);
	rb_stat_add(cn, base, 1);
}
void	rb_stats_snapshot(const struct rb_counters *, struct rumpblk_stats *);
void	rb_stats_accumulate(struct rumpblk_stats *, const struct rumpblk_stats *);
uint64_t rb_now_ns(void);

/*
 * A front-end connection's record (rumpblk_conn_open).  Records are
 * never freed before the instance: a closed one waits in the table for
 * the next connection, so a late completion or a stale binding touches
 * memory that is still there.  A thread's binding is the record and
 * its generation; closing bumps the generation, which ends every
 * binding to it at once.
 * Locks: h = rb_histlock, a = atomic, ( = set when allocated.
 */
struct rb_conn {
	struct rumpblk	*cx_rb;			/* ( */
	int		cx_id;			/* ( */
	_Atomic uint32_t cx_gen;		/* h, a */
	bool		cx_open;		/* h */
	int		cx_unit;		/* h */
	char		cx_label[RUMPBLK_CONN_LABELMAX]; /* h */
	struct rb_hist	cx_h[RB_NOPS];		/* a */
};

extern _Thread_local struct rb_conn *rb_my_conn
    __attribute__((tls_model("initial-exec")));
extern _Thread_local uint32_t rb_my_conn_gen
    __attribute__((tls_model("initial-exec")));

/* The record the calling thread is bound to for rb, or NULL (one
 * thread-local load on the common path). */
static inline struct rb_conn *
rb_conn_mine(struct rumpblk *rb)
{
	struct rb_conn *cx = rb_my_conn;

	if (RB_LIKELY(cx == NULL))
		return NULL;
	if (cx->cx_rb != rb || atomic_load_explicit(&cx->cx_gen,
	    memory_order_relaxed) != rb_my_conn_gen)
		return NULL;
	return cx;
}

/* Instance create/destroy: the histogram lock and connection records. */
int	rb_stats_init(struct rumpblk *);
void	rb_stats_fini(struct rumpblk *);
/* A unit is torn down (rb_lock held, or destroy): fold its counters and
 * histograms into the instance's retired ones, and zero them. */
void	rb_counters_retire(struct rumpblk *, struct rb_counters *);

/* ------------------------------------------------------------------ */
/* Units and instances (rumpblk.c, unit.c)                             */
/* ------------------------------------------------------------------ */

/* The largest unit table an instance may have (config max_units). */
#define RB_MAXUNITS	4096

/*
 * u_state holds two flags: LIVE (registered and usable) and DRAIN
 * (deregistering: no new requests).  The requests in flight are counted
 * in u_refs, one counter per counter shard (so per thread, see
 * rb_shard_index) on its own cache line: two threads submitting to one
 * unit then bounce no line, where a single count in u_state cost every
 * request two cross-core read-modify-writes.  A request may finish on
 * another thread than it started on, so one counter may go "negative";
 * only the sum means anything.  Strategy adds one to its counter and
 * then loads u_state, backing out if the unit is not LIVE or is
 * DRAINing; the drainer sets DRAIN and then sums the counters, so either
 * it sees the request or the request sees DRAIN.  The fence between the
 * two sides is a sequentially consistent add on the request's side, or,
 * where membarrier(2) allows, the drainer's membarrier and a plain store
 * on the request's (unit.c, membarrier_init).
 * A release that sees DRAIN bumps u_drainseq and wakes the drainer
 * through a futex on it, so no completion touches the unit after its
 * decrement but for that word.  u_refs is allocated with the slot and
 * never reset, so a late caller's add and back-out always balance.
 * A lent read (RUMPBLK_B_LOAN) trades its reference for one in u_loans
 * when it completes: the drain waits for both, a grace period (which
 * only layers need, and only the backend lends) for u_refs alone, so a
 * client that is slow to take its reply holds back no layer change.
 */
#define RB_U_LIVE	0x1u
#define RB_U_DRAIN	0x2u

struct rb_ref {
	_Atomic uint64_t r_n;
} __attribute__((aligned(RB_CACHELINE)));

/*
 * Backings: what a unit reads and writes.  A unit is opened from a
 * backing spec; the kind of backing (today the host file: a regular
 * file, a block or character device, with an offset/size window) opens
 * it, tells whether two specs name the same thing (dedup, deregister by
 * name), and makes the bottom stage of the stack, choosing the backend.
 * A remote backing (NBD, RBD) is another kind beside it: strategy and the
 * layers never look at what the backing is.
 */
struct rb_backing;

/*
 * What deregister-by-name compares with: the spec as given and, where it
 * names a host file that exists, its identity (lib/host/file.c).
 */
struct rb_bkey {
	const char	*k_spec;
	bool		k_have_id;
	dev_t		k_dev;
	ino_t		k_ino;
};

struct rb_backing_ops {
	const char	*bo_name;
	/* Open spec with the window of opts: a new backing, unshared. */
	int	(*bo_open)(struct rumpblk *, const char *spec,
		    const struct rumpblk_unit_opts *, struct rb_backing **);
	/* Same thing and same window (register returns the same unit)? */
	bool	(*bo_same)(const struct rb_backing *, const struct rb_backing *);
	/* Does this key name the backing (rumpblk_deregister)? */
	bool	(*bo_named)(const struct rb_backing *, const struct rb_bkey *);
	/* The bottom stage for unit u; sets u_backend_kind. */
	int	(*bo_stage)(struct rb_unit *, enum rumpblk_backend,
		    struct rb_stage **);
	/* Close and free; no stage uses it any more.  0 or close's error. */
	int	(*bo_close)(struct rb_backing *);
	/* Optional: one line on its state (rumpblk_backing_status). */
	int	(*bo_describe)(const struct rb_backing *, char *, size_t);
};

/* The part of a backing every kind has; kinds embed it first. */
struct rb_backing {
	const struct rb_backing_ops *bk_ops;	/* ( */
	char		*bk_spec;		/* ( as registered */
	uint64_t	bk_off;			/* ( bytes: the window's start */
	uint64_t	bk_size;		/* ( bytes: the unit's size */
	uint64_t	bk_total;		/* ( bytes of the whole backing */
	int		bk_mode;		/* ( RUMPBLK_FREAD|FWRITE */
	enum rumpblk_ftype bk_ftype;		/* ( host file type, or 0 */
};

/* lib/host/file.c: the host-file kind, and the key of a name. */
extern const struct rb_backing_ops rb_hostfile_ops;
void	rb_bkey_make(const char *spec, struct rb_bkey *);
/* lib/host/overlay.c: "overlay:PATH", a copy-on-write view of a host file. */
extern const struct rb_backing_ops rb_overlay_ops;
/* lib/remote/nbd.c: an export of an NBD server; is spec an NBD URI? */
extern const struct rb_backing_ops rb_nbd_ops;
bool	rb_nbd_spec(const char *spec);
/* lib/remote/rbd.c: a Ceph RBD image; is spec rbd:POOL/IMAGE[@SNAP]? */
extern const struct rb_backing_ops rb_rbd_ops;
bool	rb_rbd_spec(const char *spec);

/*
 * A host file as the host backends (lib/backend) see it: the backing, its
 * descriptor and identity.  u_host of a unit points here when the unit's
 * backing is a host file, and is NULL otherwise.
 */
struct rb_hostfile {
	struct rb_backing hf_bk;		/* first */
	int		hf_fd;			/* ( */
	dev_t		hf_dev;			/* ( */
	ino_t		hf_ino;			/* ( */
};

/*
 * Locks: i = rb->rb_lock, s = rb->rb_stacklock, a = atomic, ( = set at
 * register, then read-only until the unit is drained.
 */
struct rb_unit {
	_Atomic uint32_t u_state;		/* a */
	_Atomic uint32_t u_epoch;		/* a: grace periods (stack.c) */
	_Atomic(struct rb_stage *) u_top;	/* s, a: top of the stack */
	_Atomic(struct rb_stage *) u_prefetch;	/* s, a: highest with prefetch */
	_Atomic bool	u_noloan;		/* s, a: a layer bars loans */
	struct rb_stage	*u_backend;		/* ( bottom of the stack */
	struct rumpblk	*u_rb;			/* ( */
	int		u_index;		/* ( unit number */
	struct rb_backing *u_backing;		/* ( what it reads and writes */
	struct rb_hostfile *u_host;		/* ( the host file, or NULL */
	int		u_mode;			/* ( RUMPBLK_FREAD|FWRITE */
	uint64_t	u_size;			/* ( bytes */
	unsigned	u_sectshift;		/* ( */
	enum rumpblk_backend u_backend_kind;	/* ( really in use */
	uint64_t	u_winsize;		/* ( mmap only */
	unsigned	u_wincount;		/* ( mmap only */
	struct rumpblk_disklabel u_label;	/* ( */
	struct rb_counters *u_counters;		/* a: this unit's counters */
	struct rb_ref	*u_refs;		/* a: 2 x RB_NSHARDS, in flight */
	_Atomic uint32_t u_drainseq;		/* a: futex, bumped on wakes */
	_Atomic uint64_t u_loans;		/* a: reads lent, not back */
};

/* u_refs of epoch parity e, shard i. */
#define RB_REF(u, e, i)	(&(u)->u_refs[(e) * RB_NSHARDS + (i)].r_n)

/*
 * Locks: i = rb_lock, a = atomic, ( = set at create, then read-only.
 * Lock order: rb_lock, rb_stacklock, rb_gracelock, rb_pool.pl_lock.
 * rb_histlock is never held with another lock.
 */
struct rb_pool;
struct rb_host_seam;
struct rb_timers;
struct rumpblk {
	pthread_mutex_t	rb_lock;		/* the unit table */
	pthread_mutex_t	rb_stacklock;		/* stack changes, every unit */
	pthread_mutex_t	rb_gracelock;		/* one grace period at a time */
	struct rumpblk_config rb_cfg;		/* ( */
	unsigned	rb_lat_sample;		/* ( */
	_Atomic uint32_t rb_randstate;		/* a: seed-mode LCG */
	struct rb_unit	*rb_units;		/* ( rb_cfg.max_units slots */
	struct rb_counters *rb_counters;	/* a: requests to no unit */
	struct rumpblk_stats rb_retired;	/* i: deregistered units */
	struct rb_hists	rb_retired_hist;	/* i: ... their histograms */
	pthread_mutex_t	rb_histlock;		/* connection records */
	struct rb_conn	**rb_conns;		/* rb_histlock: by id */
	unsigned	rb_nconns;		/* rb_histlock: allocated */
	struct rb_hist	rb_conn_ended[RB_NOPS];	/* rb_histlock: closed ones */
	struct rb_pool	*rb_pool;		/* ( async workers */
	struct rb_timers *rb_timers;		/* ( the timer (timer.c) */
	void		*rb_fault;		/* i: rule engine (lib/fault) */
	pthread_rwlock_t rb_evlock;		/* event subscriptions */
	struct rb_sub	*rb_subs;		/* rb_evlock */
	size_t		rb_nsubs;		/* rb_evlock */
	int		rb_nextsub;		/* rb_evlock */
};

/*
 * Look up a live unit and take a reference on it, or NULL; *epp gets the
 * reference's epoch, which rb_unit_rele needs back.
 */
struct rb_unit *rb_unit_hold(struct rumpblk *, int unit, unsigned *epp);
void	rb_unit_rele(struct rb_unit *, unsigned ep);
/* One more reference on a unit the caller already holds one on (through
 * a request in flight, say), of that one's epoch. */
void	rb_unit_ref(struct rb_unit *, unsigned ep);
/* A lent read completes: its reference becomes a loan (u_loans); the
 * loan's return (rumpblk_unloan). */
void	rb_unit_lend(struct rb_unit *, unsigned ep);
void	rb_unit_unlend(struct rb_unit *);
/*
 * A grace period: wait until every request that held a reference on the
 * unit when this was called has released it (stack.c, rb_stack_remove;
 * disarming a fault rule).  The caller holds no reference and is not in
 * a completion.  Grace periods of an instance run one at a time.
 */
void	rb_unit_quiesce(struct rb_unit *);
/* Has this slot ever held a unit (its references exist)?  Lock-free. */
static inline bool
rb_unit_ever_live(struct rb_unit *u)
{
	return __atomic_load_n(&u->u_refs, __ATOMIC_ACQUIRE) != NULL;
}

/*
 * Is this thread inside a buffer's completion (b_iodone), holding the
 * unit reference of that request?  A grace period cannot be waited for
 * there.  (strategy.c)
 */
extern _Thread_local unsigned rb_completing
    __attribute__((tls_model("initial-exec")));
static inline bool
rb_in_completion(void)
{
	return rb_completing != 0;
}

/* Drain a live unit, make it durable, tear it down (destroy only: the
 * drain waits with no lock held that a completion could need). */
int	rb_unit_detach(struct rb_unit *);

/* Make a unit's completed writes durable: a FLUSH through the stack. */
int	rb_unit_sync(struct rb_unit *);

/*
 * Register hook of the layers that go on every unit of an instance (the
 * fault layer once rules are used): called with rb_lock held before the
 * unit goes live.
 */
int	rb_layers_attach(struct rb_unit *);

/* The worker pool of an instance (threads start on first use). */
struct rb_pool *rb_instance_pool(struct rumpblk *);

/* ------------------------------------------------------------------ */
/* event.c                                                             */
/* ------------------------------------------------------------------ */

struct rb_sub;
/* Deliver an event to every subscriber, in the calling thread, with no
 * library lock held by the caller. */
void	rb_event_raise(struct rumpblk *, int unit, int event);
void	rb_event_fini(struct rumpblk *);

/* ------------------------------------------------------------------ */
/* disklabel.c                                                         */
/* ------------------------------------------------------------------ */

void	rb_label_make(struct rumpblk_disklabel *, uint64_t size,
	    unsigned sectshift);
uint16_t rb_label_cksum(const struct rumpblk_disklabel *);

/* ------------------------------------------------------------------ */
/* fault/seed.c: the seed driver's LCG                                 */
/* ------------------------------------------------------------------ */

/* One draw: true if this read/write must fail with EIO. */
bool	rb_seedfail_draw(struct rumpblk *);
uint32_t rb_seedfail_next(uint32_t *state);
int	rb_random_seed(uint32_t *);

/* ------------------------------------------------------------------ */
/* fault/engine.c: the rule engine                                     */
/* ------------------------------------------------------------------ */

/*
 * Log a power cut in the fault log (if one is set): the firing that
 * caused it (NULL: rumpblk_power_cut, "rule":"ctl"), the model and what
 * it did.  fault/log.c.
 */
struct fault_fire;
void	rb_fault_log_cut(struct rumpblk *, int unit, const struct fault_fire *,
	    const struct rumpblk_powercut *);

/* ------------------------------------------------------------------ */
/* cache/: the volatile write cache (cache/cache.h)                    */
/* ------------------------------------------------------------------ */

struct cache;
/* The write cache layer of a unit, or NULL. */
struct cache *rb_cache_of(struct rb_unit *);
/* Cut the power of the cache's unit (cache/cut.c); io: the request that
 * fired a power-cut rule, or NULL.  EALREADY: a cut was under way (io
 * is in flight at it). */
int	rb_cache_cut(struct cache *, struct rb_io *io,
	    struct rumpblk_powercut *);
/* A power-cut model by name, or -1. */
int	rb_pcmodel_parse(const char *);

/* register: put the fault layer on a new unit's stack if enabled. */
int	rb_fault_unit_attach(struct rb_unit *);
/* destroy: free the engine once every unit is detached. */
void	rb_fault_destroy(struct rumpblk *);

/* ------------------------------------------------------------------ */
/* pool.c: bounded worker threads for asynchronous buffers             */
/* ------------------------------------------------------------------ */

/* batch.c: a completion batch of the calling thread (rumpblk_defer). */
void	rb_batch_begin(void);
void	rb_batch_end(void);
void	rb_batch_flush(void);
bool	rb_batch_active(void);
bool	rb_defer_once(void (*)(void *), void *);

int	rb_pool_create(unsigned maxthreads, struct rb_pool **);
/* Run io->io_work(io) on a worker.  Never blocks on I/O. */
void	rb_pool_submit(struct rb_pool *, struct rb_io *);

/*
 * The one "run inline or hand to the pool" of the backends: a synchronous
 * buffer runs work(io) in the caller's thread (for a page-cached image
 * one system call, where a hand-off costs two context switches); a
 * RUMPBLK_B_ASYNC one goes to the pool.  Either way work finds ctx in
 * io_ctx.
 */
static inline void
rb_pool_run(struct rb_pool *pl, struct rb_io *io, rb_io_fn *work, void *ctx)
{
	io->io_ctx = ctx;
	if (RB_LIKELY((io->io_flags & RUMPBLK_B_ASYNC) == 0)) {
		work(io);
		return;
	}
	io->io_work = work;
	rb_pool_submit(pl, io);
}

/* ------------------------------------------------------------------ */
/* timer.c: one timer thread per instance, for every layer             */
/* ------------------------------------------------------------------ */

/* An entry: the caller's, embedded in its own state (no allocation). */
struct rb_timer {
	uint64_t	tm_deadline;		/* ns, rb_now_ns() clock */
	void		(*tm_fn)(struct rb_timer *);
	struct rb_timer	*tm_next;		/* the queue's */
};

int	rb_timers_create(struct rb_timers **);
/* Run what is queued now, stop the thread, free. */
void	rb_timers_destroy(struct rb_timers *);
/*
 * Call fn(t) on the timer thread ns nanoseconds from now (t is the
 * caller's until then).  Never fails: if the thread cannot start, fn
 * runs now, in this thread.
 */
void	rb_timer_add(struct rumpblk *, struct rb_timer *t, uint64_t ns,
	    void (*fn)(struct rb_timer *));
/* Wait for queued work, stop the threads, free. */
void	rb_pool_destroy(struct rb_pool *);

/* ------------------------------------------------------------------ */
/* backend/backend.c                                                   */
/* ------------------------------------------------------------------ */

/*
 * Open the backend kind for a unit whose backing is a host file (u_host,
 * u_mode and u_size are set).  AUTO resolves here; a backend that cannot
 * serve the file may fall back (mmap to pio, as the seed did) and records
 * what it chose in u_backend_kind.
 */
int	rb_backend_open(struct rb_unit *, enum rumpblk_backend,
	    struct rb_stage **);
/* What auto means for this unit (backend.c says why). */
enum rumpblk_backend rb_backend_auto(const struct rb_unit *);

int	rb_pio_open(struct rb_unit *, struct rb_stage **);
int	rb_direct_open(struct rb_unit *, struct rb_stage **);
void	rb_direct_bounce_info(struct rb_stage *, unsigned *max,
	    unsigned *nalloc, uint64_t *waits);
int	rb_uring_open(struct rb_unit *, struct rb_stage **);

/*
 * backend/uring.c: the io_uring engine (a ring over one descriptor and
 * its reaper thread), used by the uring and direct backends.  Reads,
 * writes and flushes only; completion through rb_io_complete on the
 * reaper.  Without liburing (RUMPBLK_HAVE_URING unset) create is never
 * called.
 */
struct rb_uring;
int	rb_uring_create(int fd, const struct rb_backing *, struct rb_uring **);
void	rb_uring_submit(struct rb_uring *, struct rb_io *);
void	rb_uring_destroy(struct rb_uring *);
/* The mmap window cache; falls back to rb_pio_open when it cannot map. */
int	rb_mmap_open(struct rb_unit *, struct rb_stage **);

/*
 * The synchronous work of one request on a descriptor with pread/pwrite
 * and friends at the backing's offset (bk_off): every op,
 * sync-at-completion included.  Shared by every
 * backend that ends up doing plain descriptor I/O for some ops.
 */
void	rb_fdio_run(int fd, const struct rb_backing *, struct rb_io *);

/* A descriptor and its host file, for rb_fdio_work through io_ctx. */
struct rb_fdio {
	int		fdio_fd;
	const struct rb_backing *fdio_bk;
};
/* rb_fdio_run on the struct rb_fdio in io_ctx (rb_pool_run's work). */
void	rb_fdio_work(struct rb_io *);

#endif /* RUMPBLK_INTERNAL_H */
