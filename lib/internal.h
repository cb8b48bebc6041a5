/*
 * Private declarations of librumpblk, one section per .c file.
 *
 * The driver is a stack (DESIGN.md §2): rumpblk_strategy() checks a buffer,
 * turns it into a struct rb_io and hands it to the unit's top stage.  A
 * stage is a layer (fault injection, later crash simulation) or, at the
 * bottom, exactly one backend (pio, mmap, direct, uring).  All stages share
 * struct rb_ops.  A unit with no layers has its backend on top, so the fast
 * path pays nothing for layers it does not use.
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
 * the host file: a backend adds u_hostoffset), already bounds-checked and
 * truncated to the unit's end.  A stage completes a request by setting
 * io_error and io_moved and calling io_done exactly once, from any thread,
 * possibly before submit returns.  A layer that must see the completion
 * submits a request of its own (its io_done, its io_ctx) to the stage
 * below.
 */
struct rb_io {
	int		io_op;		/* one RUMPBLK_B_ op bit */
	int		io_flags;	/* RUMPBLK_B_ASYNC | _FUA | _NOHOLE */
	uint64_t	io_off;		/* bytes into the unit */
	size_t		io_len;		/* bytes */
	void		*io_data;	/* READ/WRITE data; EXTENTS result */
	struct rb_unit	*io_unit;
	rb_io_fn	*io_done;	/* completion */
	void		*io_ctx;	/* owner's context */
	int		io_error;	/* out: 0 or errno */
	size_t		io_moved;	/* out: bytes moved */
	struct rb_io	*io_next;	/* queue link, owned by the queue */
	rb_io_fn	*io_work;	/* work for a worker (rb_pool) */
};

static inline void
rb_io_complete(struct rb_io *io, int error, size_t moved)
{
	io->io_error = error;
	io->io_moved = moved;
	io->io_done(io);
}

/* Durable at completion?  A write or zero without ASYNC, or with FUA. */
static inline bool
rb_io_wants_sync(const struct rb_io *io)
{
	return (io->io_flags & (RUMPBLK_B_ASYNC | RUMPBLK_B_FUA)) !=
	    RUMPBLK_B_ASYNC;
}

/* ------------------------------------------------------------------ */
/* Stages: layers and backends                                         */
/* ------------------------------------------------------------------ */

struct rb_ops {
	const char	*name;
	/* Start a request; complete it through rb_io_complete(). */
	void	(*submit)(struct rb_stage *, struct rb_io *);
	/*
	 * Make every completed write durable (DIOCCACHESYNC, deregister).
	 * A layer passes it down.  Called with no lock held.
	 */
	int	(*sync)(struct rb_stage *);
	/* Free the stage.  No request is in flight.  NULL: free(). */
	void	(*destroy)(struct rb_stage *);
	/*
	 * Optional: a request at byte off of the unit is about to be
	 * submitted; start bringing its first bytes in (the request has not
	 * been checked yet: off may be anywhere).  Never blocks, never
	 * fails.
	 */
	void	(*prefetch)(struct rb_stage *, uint64_t off);
};

/* A stage; backends and layers embed it as their first member. */
struct rb_stage {
	const struct rb_ops *st_ops;
	struct rb_stage	*st_lower;	/* NULL for a backend */
	struct rb_unit	*st_unit;
};

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
#define RB_NSHARDS	16
#define RB_SHARD_SHARED	(RB_NSHARDS - 1)
#define RB_NSTATWORDS	(sizeof(struct rumpblk_stats) / sizeof(uint64_t))
#define RB_STAT(f)	(offsetof(struct rumpblk_stats, f) / sizeof(uint64_t))

struct rb_shard {
	_Atomic uint64_t sh_w[RB_NSTATWORDS];
} __attribute__((aligned(RB_CACHELINE)));

struct rb_counters {
	struct rb_shard	cn_shard[RB_NSHARDS];
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
void	rb_stat_latency(struct rb_counters *, int op, uint64_t ns);

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
	default:		return;
	}
	rb_stat_add(cn, base + RB_LAT_W(count), 1);
}
void	rb_stats_snapshot(const struct rb_counters *, struct rumpblk_stats *);
void	rb_stats_accumulate(struct rumpblk_stats *, const struct rumpblk_stats *);
uint64_t rb_now_ns(void);

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
 */
#define RB_U_LIVE	0x1u
#define RB_U_DRAIN	0x2u

struct rb_ref {
	_Atomic uint64_t r_n;
} __attribute__((aligned(RB_CACHELINE)));

/*
 * Locks: i = rb->rb_lock, a = atomic, (= set at register, then read-only
 * until the unit is drained.
 */
struct rb_unit {
	_Atomic uint32_t u_state;		/* a */
	_Atomic(struct rb_stage *) u_top;	/* a: top of the stack */
	struct rb_stage	*u_backend;		/* ( bottom of the stack */
	struct rumpblk	*u_rb;			/* ( */
	int		u_index;		/* ( unit number */
	char		*u_path;		/* ( as registered */
	dev_t		u_dev;			/* ( host file identity */
	ino_t		u_ino;			/* ( */
	int		u_fd;			/* ( host descriptor */
	int		u_mode;			/* ( RUMPBLK_FREAD|FWRITE */
	enum rumpblk_ftype u_ftype;		/* ( */
	uint64_t	u_hostoffset;		/* ( bytes */
	uint64_t	u_size;			/* ( bytes */
	uint64_t	u_hostsize;		/* ( bytes */
	bool		u_size_given;		/* ( size was explicit */
	unsigned	u_sectshift;		/* ( */
	enum rumpblk_backend u_backend_kind;	/* ( really in use */
	uint64_t	u_winsize;		/* ( mmap only */
	unsigned	u_wincount;		/* ( mmap only */
	struct rumpblk_disklabel u_label;	/* ( */
	struct rb_counters *u_counters;		/* a: this unit's counters */
	struct rb_ref	*u_refs;		/* a: RB_NSHARDS, in flight */
	_Atomic uint32_t u_drainseq;		/* a: futex, bumped on wakes */
};

/*
 * Locks: i = rb_lock, a = atomic, ( = set at create, then read-only.
 * Lock order: rb_lock before rb_pool.pl_lock.
 */
struct rb_pool;
struct rb_host_seam;
struct rumpblk {
	pthread_mutex_t	rb_lock;		/* the unit table */
	struct rumpblk_config rb_cfg;		/* ( */
	unsigned	rb_lat_sample;		/* ( */
	_Atomic uint32_t rb_randstate;		/* a: seed-mode LCG */
	struct rb_unit	*rb_units;		/* ( rb_cfg.max_units slots */
	struct rb_counters *rb_counters;	/* a: requests to no unit */
	struct rumpblk_stats rb_retired;	/* i: deregistered units */
	struct rb_pool	*rb_pool;		/* ( async workers */
	void		*rb_fault;		/* i: rule engine (lib/fault) */
	pthread_rwlock_t rb_evlock;		/* event subscriptions */
	struct rb_sub	*rb_subs;		/* rb_evlock */
	size_t		rb_nsubs;		/* rb_evlock */
	int		rb_nextsub;		/* rb_evlock */
};

/* Look up a unit with a reference, or NULL; release with rb_unit_rele. */
struct rb_unit *rb_unit_hold(struct rumpblk *, int unit);
void	rb_unit_rele(struct rb_unit *);
/* One more reference on a unit the caller already holds one on (through
 * a request in flight, say); release with rb_unit_rele. */
void	rb_unit_ref(struct rb_unit *);

/* Drain a live unit, make it durable, tear it down (destroy only: the
 * drain waits with no lock held that a completion could need). */
int	rb_unit_detach(struct rb_unit *);

/* Make a unit's completed writes durable (the whole stack). */
int	rb_unit_sync(struct rb_unit *);

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

/* register: put the fault layer on a new unit's stack if enabled. */
int	rb_fault_unit_attach(struct rb_unit *, struct rb_stage **topp);
/* destroy: free the engine once every unit is detached. */
void	rb_fault_destroy(struct rumpblk *);

/* ------------------------------------------------------------------ */
/* pool.c: bounded worker threads for asynchronous buffers             */
/* ------------------------------------------------------------------ */

int	rb_pool_create(unsigned maxthreads, struct rb_pool **);
/* Run io->io_work(io) on a worker.  Never blocks on I/O. */
void	rb_pool_submit(struct rb_pool *, struct rb_io *);
/* Wait for queued work, stop the threads, free. */
void	rb_pool_destroy(struct rb_pool *);

/* ------------------------------------------------------------------ */
/* backend/backend.c                                                   */
/* ------------------------------------------------------------------ */

/*
 * Open the backend kind for a unit whose host fields (u_fd, u_mode,
 * u_ftype, sizes) are set.  AUTO resolves here; a backend that cannot
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
int	rb_uring_create(int fd, struct rb_uring **);
void	rb_uring_submit(struct rb_uring *, struct rb_io *);
void	rb_uring_destroy(struct rb_uring *);
/* The mmap window cache; falls back to rb_pio_open when it cannot map. */
int	rb_mmap_open(struct rb_unit *, struct rb_stage **);

/*
 * The synchronous work of one request on a descriptor with pread/pwrite
 * and friends: every op, sync-at-completion included.  Shared by every
 * backend that ends up doing plain descriptor I/O for some ops.
 */
void	rb_fdio_run(int fd, struct rb_io *);

#endif /* RUMPBLK_INTERNAL_H */
