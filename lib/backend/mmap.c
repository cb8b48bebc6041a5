/*
 * The mmap backend: the seed driver's window cache (getwindow/putwindow)
 * for regular files, rebuilt so that the hit path takes no lock.
 *
 * A unit's host range is cut into windows of m_winsize bytes aligned to
 * m_winsize in host-file offsets (the unit's host offset need not be
 * aligned: its first window then starts before it).  The last window of
 * the file is shorter than winsize.  At most m_nwin windows are mapped
 * at a time; a request that spans windows is split, one window at a
 * time, each held by a reference while its copy runs.  When every window
 * is referenced a caller waits and "all windows busy" is counted in
 * win_busy, as in the seed.
 *
 * Locking.  The seed searched a list under one mutex on every I/O; here:
 *
 *   - Lookup is O(1): a table m_hash of chains, indexed directly by the
 *     window number when the unit has at most RB_MMAP_DIRECT windows (so
 *     every chain has at most one window), else by a multiplicative hash
 *     of it.  Chain links are atomic pointers; windows are never freed
 *     before the backend, only re-keyed, so a reader may walk a chain
 *     without the lock.  A reader that loses its way (a window moved to
 *     another chain under it) only misses and takes the slow path.
 *   - A hit takes a reference with one atomic add on win_ref and then
 *     checks that the window still holds the wanted number.  A window is
 *     only re-keyed by the thread that moved its win_ref from exactly 0 to
 *     WIN_EVICT (a CAS under m_lock), so a reference taken while WIN_EVICT
 *     is clear pins the window's number, address and length; a reader
 *     that meets WIN_EVICT backs out.  The evictor publishes the new
 *     mapping with a release on win_ref, the reader's add acquires it.
 *   - m_lock covers the chains' shape, the free list and the choice of a
 *     victim: pointer work only.  mmap, munmap, msync and the copies run
 *     with no lock held; while a window is being (re)mapped it sits in
 *     its new chain with WIN_EVICT set, so a second caller for the same
 *     window waits for it instead of mapping it twice.
 *   - Waiting: a caller that must wait raises m_waiters before it looks
 *     (sequentially consistent), and a release that brings win_ref to 0
 *     wakes m_cv only if m_waiters is non-zero.  Either the releaser sees
 *     the waiter, or the waiter's scan sees the released window.
 *   - Replacement is least recently used at the resolution of misses:
 *     m_tick advances on every miss and a hit stamps its window with it,
 *     so the victim is a free window with the oldest stamp (a scan of the
 *     windows under the lock, only on a miss that has no never-used
 *     window left; misses cost an munmap and an mmap anyway).
 *   - When the windows cover the unit (as the CLI's defaults do) nothing
 *     is ever evicted, so a mapped window is used without a reference
 *     (getwin_static): the hit path is two loads and no atomic
 *     read-modify-write, and two threads share no written cache line.
 *
 * Durability.  A synchronous write msyncs exactly the bytes it touched.
 * The sync op (FLUSH, DIOCCACHESYNC, deregister) is an fdatasync of the
 * descriptor rather than an msync of every window: on Linux a MAP_SHARED
 * mapping writes into the file's page cache, so fdatasync writes back
 * pages dirtied through any mapping, including windows that were unmapped
 * since (munmap does not write back), which a walk over the windows still
 * mapped would miss.  TRIM, ZERO, EXTENTS and the writes not durable at
 * completion (ASYNC without FUA, a layer's NOSYNC) go to rb_fdio_run on
 * the same descriptor, in the caller's thread: MAP_SHARED mappings are
 * coherent with the page cache on Linux, and fallocate unmaps the pages
 * it punches, so a window reads the zeroes afterwards with no action of
 * ours.  (A write through the mapping to a page that writeback has
 * cleaned takes a write fault; pwrite takes none.)  Reads and durable
 * writes use the windows: the write then msyncs just its bytes.
 *
 * SIGBUS.  A window over pages the file no longer has (it was truncated
 * underneath) raises SIGBUS on access.  The library takes over no signal
 * on its own: with the config's sigbus_eio, the first mmap unit installs a
 * process-wide handler that turns a fault inside a copy armed by this
 * thread into EIO for that buffer (a thread-local sigjmp_buf armed around
 * the memcpy), and chains every other SIGBUS to the handler that was there
 * before (or the default action).  The handler stays installed for the
 * life of the process: removing it could undo a handler installed after
 * ours.  A unit opened later re-installs it if another handler replaced
 * it meanwhile (chaining to that one).
 */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../internal.h"
#include "../host/host.h"

/*
 * Two requests that write (or write and read) the same bytes at once race
 * on the medium, as on any disk: the result is one or the other, or a
 * mix.  Through a window that is two memcpys on the same memory, which
 * ThreadSanitizer reports although it is the device's semantics (pio's
 * copies happen in the kernel, out of its sight).  Under TSan the copies
 * are left out of its analysis; everything else stays checked.
 */
#if defined(__SANITIZE_THREAD__)
#define RB_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define RB_TSAN 1
#endif
#endif
#ifdef RB_TSAN
void	__tsan_ignore_thread_begin(void);
void	__tsan_ignore_thread_end(void);
#define medium_copy_begin()	__tsan_ignore_thread_begin()
#define medium_copy_end()	__tsan_ignore_thread_end()
#else
#define medium_copy_begin()	do { } while (0)
#define medium_copy_end()	do { } while (0)
#endif

#define WIN_EVICT	0x80000000u	/* win_ref: being re-keyed */
#define WIN_NONE	UINT64_MAX	/* win_idx: maps nothing */
#define RB_MMAP_DIRECT	(1u << 20)	/* direct table up to 8 MiB */
#define RB_MMAP_PREMAP	1024		/* windows mapped at registration */
#define RB_MMAP_WALK	4		/* chain steps before the slow path */

/*
 * Locks: m = mm_lock, a = atomic, w = owned by the holder of WIN_EVICT
 * (then published through win_ref), ( = set at open.
 */
struct mwin {
	_Atomic uint32_t win_ref;	/* a: references | WIN_EVICT */
	_Atomic uint32_t win_stamp;	/* a: mm_tick at the last use */
	_Atomic uint64_t win_idx;	/* a, written under m and w */
	_Atomic(struct mwin *) win_hnext; /* a, written under m: chain */
	struct mwin	*win_fnext;	/* m: free list */
	char		*win_mem;	/* w */
	size_t		win_len;	/* w */
} __attribute__((aligned(RB_CACHELINE)));

/*
 * Locks: m = mm_lock, a = atomic, ( = set at open, then read-only.
 * Lock order: mm_lock is a leaf; nothing is called with it held but
 * pthread and atomic operations.
 */
struct mmapb {
	struct rb_stage	mm_stage;
	int		mm_fd;		/* ( the unit's descriptor */
	const struct rb_backing *mm_bk;	/* ( the host file */
	uint64_t	mm_hoff;	/* ( the unit's start, host bytes */
	bool		mm_writable;	/* ( mapped PROT_WRITE */
	bool		mm_sigbus;	/* ( copies armed for SIGBUS */
	unsigned	mm_shift;	/* ( log2 winsize */
	uint64_t	mm_winsize;	/* ( bytes */
	uint64_t	mm_hostend;	/* ( end of the unit in the host file */
	uint64_t	mm_first;	/* ( first window number of the unit */
	uint64_t	mm_nidx;	/* ( windows the unit spans */
	unsigned	mm_nwin;	/* ( windows in mm_win */
	bool		mm_static;	/* ( mm_nwin >= mm_nidx: no eviction */
	bool		mm_direct;	/* ( mm_hash indexed directly */
	unsigned	mm_hbits;	/* ( log2 of mm_hash slots */
	_Atomic(struct mwin *) *mm_hash; /* a, written under m */
	struct mwin	*mm_win;	/* ( mm_nwin windows */
	struct rb_counters *mm_cn;	/* ( the unit's counters */
	_Atomic uint32_t mm_tick;	/* a: advances on every miss */
	_Atomic uint32_t mm_waiters;	/* a: callers about to wait */
	_Atomic uint32_t mm_lent;	/* a: windows held by loans */
	pthread_mutex_t	mm_lock;
	pthread_cond_t	mm_cv;		/* m: a window freed or mapped */
	struct mwin	*mm_free;	/* m: windows that map nothing */
};

/* ------------------------------------------------------------------ */
/* SIGBUS to EIO (opt-in)                                              */
/* ------------------------------------------------------------------ */

struct sigbus_arm {
	sigjmp_buf	*sa_jb;		/* armed if non-NULL */
	uintptr_t	sa_lo;		/* the window being copied */
	uintptr_t	sa_hi;
	uintptr_t	sa_fault;	/* out: the faulting address */
};

/* initial-exec: the handler must not allocate TLS on first use. */
static _Thread_local struct sigbus_arm sigbus_arm
    __attribute__((tls_model("initial-exec")));
static struct sigaction sigbus_old;
static pthread_mutex_t sigbus_lock = PTHREAD_MUTEX_INITIALIZER;
static size_t sigbus_pagesize;	/* set before the first armed copy */

static void
sigbus_handler(int sig, siginfo_t *si, void *ctx)
{
	struct sigbus_arm *a = &sigbus_arm;
	uintptr_t addr = (uintptr_t)si->si_addr;
	struct sigaction dfl;

	if (a->sa_jb != NULL && addr >= a->sa_lo && addr < a->sa_hi) {
		a->sa_fault = addr;
		siglongjmp(*a->sa_jb, 1);
	}
	/* Not ours: chain. */
	if (sigbus_old.sa_flags & SA_SIGINFO) {
		sigbus_old.sa_sigaction(sig, si, ctx);
		return;
	}
	if (sigbus_old.sa_handler != SIG_DFL &&
	    sigbus_old.sa_handler != SIG_IGN) {
		sigbus_old.sa_handler(sig);
		return;
	}
	/* Default action (SIG_IGN cannot stop a fault from repeating). */
	memset(&dfl, 0, sizeof(dfl));
	dfl.sa_handler = SIG_DFL;
	sigemptyset(&dfl.sa_mask);
	sigaction(SIGBUS, &dfl, NULL);
	raise(SIGBUS);
}

static int
sigbus_install(void)
{
	struct sigaction sa, cur;
	int error = 0;

	/*
	 * Install unless ours is the current handler.  Checking the current
	 * handler rather than a flag re-installs it (chaining to whoever
	 * replaced it) if something put its own in its place since, as test
	 * harnesses do around each test.
	 */
	rb_mutex_lock(&sigbus_lock);
	if (sigbus_pagesize == 0)
		sigbus_pagesize = (size_t)sysconf(_SC_PAGESIZE);
	if (sigaction(SIGBUS, NULL, &cur) == -1)
		error = errno;
	else if ((cur.sa_flags & SA_SIGINFO) == 0 ||
	    cur.sa_sigaction != sigbus_handler) {
		memset(&sa, 0, sizeof(sa));
		sa.sa_sigaction = sigbus_handler;
		sigemptyset(&sa.sa_mask);
		/* NODEFER: leaving by siglongjmp must not leave SIGBUS
		 * blocked, and sigsetjmp(, 0) saves no mask (no syscall). */
		sa.sa_flags = SA_SIGINFO | SA_NODEFER | SA_RESTART;
		if (sigaction(SIGBUS, &sa, &sigbus_old) == -1)
			error = errno;
	}
	rb_mutex_unlock(&sigbus_lock);
	return error;
}

/*
 * memcpy that turns a SIGBUS on [lo, lo + len) into EIO, with the
 * faulting address in *fault.  Not inlined: sigsetjmp needs its own
 * frame.
 */
static __attribute__((noinline)) int
copy_guarded(void *dst, const void *src, size_t n, const void *lo,
    size_t len, uintptr_t *fault)
{
	sigjmp_buf jb;
	struct sigbus_arm *a = &sigbus_arm;

	if (sigsetjmp(jb, 0) != 0) {
		a->sa_jb = NULL;
		*fault = a->sa_fault;
		return EIO;
	}
	a->sa_lo = (uintptr_t)lo;
	a->sa_hi = (uintptr_t)lo + len;
	atomic_signal_fence(memory_order_seq_cst);
	a->sa_jb = &jb;
	atomic_signal_fence(memory_order_seq_cst);
	memcpy(dst, src, n);
	atomic_signal_fence(memory_order_seq_cst);
	a->sa_jb = NULL;
	return 0;
}

/*
 * A guarded copy of n bytes whose window side starts at at (in the window
 * [lo, lo + len)).  On a fault, the pages before the faulting one are
 * still in the file: copy them again (memcpy's order is its own), so
 * that *done says what is known to have moved.  0, or EIO.
 */
static int
copy_window(void *dst, const void *src, size_t n, const char *at,
    const void *lo, size_t len, size_t *done)
{
	uintptr_t f, fpage;
	size_t want = n, pg = sigbus_pagesize;

	while (copy_guarded(dst, src, n, lo, len, &f) != 0) {
		fpage = f & ~((uintptr_t)pg - 1);
		if (fpage <= (uintptr_t)at || fpage - (uintptr_t)at >= n) {
			*done = 0;
			return EIO;
		}
		n = fpage - (uintptr_t)at;
	}
	*done = n;
	return n == want ? 0 : EIO;
}

/* ------------------------------------------------------------------ */
/* Windows                                                             */
/* ------------------------------------------------------------------ */

static inline _Atomic(struct mwin *) *
chain(struct mmapb *m, uint64_t idx)
{
	if (m->mm_direct)
		return &m->mm_hash[idx - m->mm_first];
	return &m->mm_hash[(idx * 0x9e3779b97f4a7c15ull) >>
	    (64 - m->mm_hbits)];
}

static void
chain_remove_locked(struct mmapb *m, struct mwin *w, uint64_t idx)
{
	_Atomic(struct mwin *) *pp = chain(m, idx);
	struct mwin *c;

	rb_assert_held(&m->mm_lock);
	while ((c = atomic_load_explicit(pp, memory_order_relaxed)) != NULL) {
		if (c == w) {
			atomic_store_explicit(pp, atomic_load_explicit(
			    &w->win_hnext, memory_order_relaxed),
			    memory_order_release);
			return;
		}
		pp = &c->win_hnext;
	}
}

static void
chain_insert_locked(struct mmapb *m, struct mwin *w, uint64_t idx)
{
	_Atomic(struct mwin *) *pp = chain(m, idx);

	rb_assert_held(&m->mm_lock);
	atomic_store_explicit(&w->win_hnext, atomic_load_explicit(pp,
	    memory_order_relaxed), memory_order_relaxed);
	atomic_store_explicit(pp, w, memory_order_release);
}

/* putwindow: drop a reference, wake waiters if it was the last. */
static inline void
putwin(struct mmapb *m, struct mwin *w)
{
	if (atomic_fetch_sub(&w->win_ref, 1) == 1 &&
	    RB_UNLIKELY(atomic_load(&m->mm_waiters) != 0)) {
		rb_mutex_lock(&m->mm_lock);
		pthread_cond_broadcast(&m->mm_cv);
		rb_mutex_unlock(&m->mm_lock);
	}
}

/* The lock-free hit path; NULL means "ask the slow path". */
static inline struct mwin *
getwin_fast(struct mmapb *m, uint64_t idx)
{
	struct mwin *w;
	uint32_t tick;
	int n;

	w = atomic_load_explicit(chain(m, idx), memory_order_acquire);
	for (n = 0; w != NULL && n < RB_MMAP_WALK; n++) {
		if (atomic_load_explicit(&w->win_idx, memory_order_relaxed) ==
		    idx) {
			if ((atomic_fetch_add_explicit(&w->win_ref, 1,
			    memory_order_acquire) & WIN_EVICT) == 0 &&
			    atomic_load_explicit(&w->win_idx,
			    memory_order_relaxed) == idx) {
				tick = atomic_load_explicit(&m->mm_tick,
				    memory_order_relaxed);
				if (atomic_load_explicit(&w->win_stamp,
				    memory_order_relaxed) != tick)
					atomic_store_explicit(&w->win_stamp,
					    tick, memory_order_relaxed);
				return w;
			}
			putwin(m, w);
			return NULL;
		}
		w = atomic_load_explicit(&w->win_hnext, memory_order_acquire);
	}
	return NULL;
}

/* A free window to re-key, WIN_EVICT taken; NULL if all are busy. */
static struct mwin *
victim_locked(struct mmapb *m)
{
	struct mwin *w, *best;
	uint32_t tick, age, bestage, zero;
	unsigned i;

	rb_assert_held(&m->mm_lock);
	if ((w = m->mm_free) != NULL) {
		m->mm_free = w->win_fnext;
		/*
		 * No one holds a free window, but a lock-free reader that
		 * met it in a chain before it left may still hold a stray
		 * count it is about to drop: add the flag, do not store.
		 */
		atomic_fetch_add(&w->win_ref, WIN_EVICT);
		return w;
	}
	for (;;) {
		tick = atomic_load_explicit(&m->mm_tick, memory_order_relaxed);
		best = NULL;
		bestage = 0;
		for (i = 0; i < m->mm_nwin; i++) {
			w = &m->mm_win[i];
			if (atomic_load_explicit(&w->win_ref,
			    memory_order_relaxed) != 0)
				continue;
			age = tick - atomic_load_explicit(&w->win_stamp,
			    memory_order_relaxed);
			if (best == NULL || age > bestage) {
				best = w;
				bestage = age;
			}
		}
		if (best == NULL)
			return NULL;
		zero = 0;
		if (atomic_compare_exchange_strong(&best->win_ref, &zero,
		    WIN_EVICT))
			return best;
		/* A lock-free hit took it meanwhile: look again. */
	}
}

/*
 * getwindow's slow path: find the window under the lock, or map it into a
 * free window, or wait.  0 with *wp referenced, or an errno.
 */
static int
getwin_slow(struct mmapb *m, uint64_t idx, struct mwin **wp)
{
	struct mwin *w;
	uint64_t old, off;
	size_t len;
	void *mem;
	int error;

	rb_mutex_lock(&m->mm_lock);
	for (;;) {
		/* Raised before looking: see the head comment. */
		atomic_fetch_add(&m->mm_waiters, 1);
		for (w = atomic_load_explicit(chain(m, idx),
		    memory_order_relaxed); w != NULL; w = atomic_load_explicit(
		    &w->win_hnext, memory_order_relaxed))
			if (atomic_load_explicit(&w->win_idx,
			    memory_order_relaxed) == idx)
				break;
		if (w != NULL) {
			if ((atomic_fetch_add(&w->win_ref, 1) &
			    WIN_EVICT) == 0) {
				atomic_fetch_sub(&m->mm_waiters, 1);
				rb_mutex_unlock(&m->mm_lock);
				rb_stat_add(m->mm_cn, RB_STAT(win_hits), 1);
				*wp = w;
				return 0;
			}
			/* Another caller is mapping it: wait for that. */
			atomic_fetch_sub(&w->win_ref, 1);
			pthread_cond_wait(&m->mm_cv, &m->mm_lock);
			atomic_fetch_sub(&m->mm_waiters, 1);
			continue;
		}
		if ((w = victim_locked(m)) != NULL)
			break;
		/* Every window is referenced: the seed's "memwin wait". */
		rb_stat_add(m->mm_cn, RB_STAT(win_busy), 1);
		pthread_cond_wait(&m->mm_cv, &m->mm_lock);
		atomic_fetch_sub(&m->mm_waiters, 1);
	}
	atomic_fetch_sub(&m->mm_waiters, 1);

	/* We own w (WIN_EVICT).  Re-key it so that others wait for us. */
	old = atomic_load_explicit(&w->win_idx, memory_order_relaxed);
	if (old != WIN_NONE)
		chain_remove_locked(m, w, old);
	atomic_store_explicit(&w->win_idx, idx, memory_order_relaxed);
	chain_insert_locked(m, w, idx);
	atomic_fetch_add_explicit(&m->mm_tick, 1, memory_order_relaxed);
	atomic_store_explicit(&w->win_stamp, atomic_load_explicit(&m->mm_tick,
	    memory_order_relaxed), memory_order_relaxed);
	rb_mutex_unlock(&m->mm_lock);

	if (w->win_mem != NULL) {
		rb_host_munmap(w->win_mem, w->win_len);
		w->win_mem = NULL;
	}
	off = idx << m->mm_shift;
	len = (size_t)(m->mm_hostend - off < m->mm_winsize ?
	    m->mm_hostend - off : m->mm_winsize);
	error = rb_host_mmap(m->mm_fd, off, len, m->mm_writable, &mem);
	if (RB_UNLIKELY(error != 0)) {
		rb_mutex_lock(&m->mm_lock);
		chain_remove_locked(m, w, idx);
		atomic_store_explicit(&w->win_idx, WIN_NONE,
		    memory_order_relaxed);
		w->win_len = 0;
		/* Strays may hold counts: clear the flag only. */
		atomic_fetch_sub(&w->win_ref, WIN_EVICT);
		w->win_fnext = m->mm_free;
		m->mm_free = w;
		pthread_cond_broadcast(&m->mm_cv);
		rb_mutex_unlock(&m->mm_lock);
		return error;
	}
	w->win_mem = mem;
	w->win_len = len;
	rb_stat_add(m->mm_cn, RB_STAT(win_misses), 1);
	/* Publish: WIN_EVICT off, our reference on (strays balance out). */
	atomic_fetch_sub(&w->win_ref, WIN_EVICT - 1);
	if (atomic_load(&m->mm_waiters) != 0) {
		rb_mutex_lock(&m->mm_lock);
		pthread_cond_broadcast(&m->mm_cv);
		rb_mutex_unlock(&m->mm_lock);
	}
	*wp = w;
	return 0;
}

static inline int
getwin(struct mmapb *m, uint64_t idx, struct mwin **wp)
{
	struct mwin *w;

	if (RB_LIKELY((w = getwin_fast(m, idx)) != NULL)) {
		rb_stat_add(m->mm_cn, RB_STAT(win_hits), 1);
		*wp = w;
		return 0;
	}
	return getwin_slow(m, idx, wp);
}

/*
 * When the windows cover the unit (mm_static) a window, once mapped, is
 * never re-keyed: a miss takes a never-used window from the free list,
 * and the free list cannot run dry while a window is missing (there are
 * as many windows as window numbers, and a number is never mapped twice:
 * a second caller waits for the first).  So a published window can be
 * used with no reference at all: one acquire load of the slot and one of
 * win_ref, which says whether the mapping is published yet.  This is the
 * CLI's default, and it leaves no atomic read-modify-write on the path.
 */
static inline struct mwin *
static_lookup(struct mmapb *m, uint64_t idx)
{
	struct mwin *w;

	w = atomic_load_explicit(&m->mm_hash[idx - m->mm_first],
	    memory_order_acquire);
	if (RB_UNLIKELY(w == NULL) || RB_UNLIKELY((atomic_load_explicit(
	    &w->win_ref, memory_order_acquire) & WIN_EVICT) != 0) ||
	    RB_UNLIKELY(atomic_load_explicit(&w->win_idx,
	    memory_order_relaxed) != idx))	/* its mapping failed */
		return NULL;
	return w;
}

/* static_lookup, counted as a hit. */
static inline struct mwin *
getwin_static(struct mmapb *m, uint64_t idx)
{
	struct mwin *w;

	if ((w = static_lookup(m, idx)) != NULL)
		rb_stat_add(m->mm_cn, RB_STAT(win_hits), 1);
	return w;
}

/* ------------------------------------------------------------------ */
/* The backend                                                         */
/* ------------------------------------------------------------------ */

static void
mmap_unloan(struct rb_stage *st, void *handle)
{
	struct mmapb *m = (struct mmapb *)st;

	if (handle == NULL)		/* a covering window's */
		return;
	putwin(m, handle);
	atomic_fetch_sub(&m->mm_lent, 1);
}

/* A loan's bytes are the host file's (the NBD server sends them with
 * sendfile). */
static int
mmap_loan_fd(struct rb_stage *st, const struct rb_io *io, int *fdp,
    uint64_t *offp)
{
	const struct mmapb *m = (const struct mmapb *)st;

	*fdp = m->mm_fd;
	*offp = m->mm_hoff + io->io_off;
	return 0;
}

static void
mmap_rw(struct mmapb *m, struct rb_io *io)
{
	uint64_t hoff = m->mm_hoff + io->io_off, idx, within;
	char *data = io->io_data, *at;
	size_t left = io->io_len, n, moved = 0, done;
	bool rd = io->io_op == RUMPBLK_B_READ;
	bool sync = !rd && rb_io_wants_sync(io), held;
	struct mwin *w;
	int error = 0;

	while (left > 0) {
		idx = hoff >> m->mm_shift;
		if (m->mm_static && (w = getwin_static(m, idx)) != NULL)
			held = false;
		else if ((error = getwin(m, idx, &w)) != 0)
			break;
		else
			held = true;
		within = hoff - (idx << m->mm_shift);
		n = w->win_len - within;
		if (n > left)
			n = left;
		at = w->win_mem + within;
		medium_copy_begin();
		if (RB_LIKELY(!m->mm_sigbus)) {
			if (rd)
				memcpy(data + moved, at, n);
			else
				memcpy(at, data + moved, n);
		} else {
			error = rd ? copy_window(data + moved, at, n, at,
			    w->win_mem, w->win_len, &done) :
			    copy_window(at, data + moved, n, at, w->win_mem,
			    w->win_len, &done);
			if (error != 0)
				moved += done;
		}
		medium_copy_end();
		if (error == 0 && sync)
			error = rb_host_msync(at, n);
		if (held)
			putwin(m, w);
		if (error != 0)
			break;
		moved += n;
		hoff += n;
		left -= n;
	}
	rb_io_complete(io, error, moved);
}

/*
 * A read with RUMPBLK_B_LOAN that one window holds: lend the window's
 * bytes, no copy.  Covering windows are never unmapped before the
 * backend, so they lend with no reference; otherwise the loan keeps the
 * window's reference until mmap_unloan, and at most half the windows
 * are lent at once (the other half keeps copies, and so every client,
 * going however slowly a client takes its loans).  false: copy.
 */
static bool
mmap_lend(struct mmapb *m, struct rb_io *io)
{
	uint64_t hoff = m->mm_hoff + io->io_off, idx = hoff >> m->mm_shift;
	uint64_t within = hoff - (idx << m->mm_shift);
	struct mwin *w;

	if (within + io->io_len > m->mm_winsize)
		return false;
	if (m->mm_static) {
		if ((w = getwin_static(m, idx)) == NULL)
			return false;
		io->io_ctx = NULL;
	} else {
		if (atomic_fetch_add(&m->mm_lent, 1) >= m->mm_nwin / 2) {
			atomic_fetch_sub(&m->mm_lent, 1);
			return false;
		}
		if ((w = getwin_fast(m, idx)) == NULL) {
			atomic_fetch_sub(&m->mm_lent, 1);
			return false;
		}
		rb_stat_add(m->mm_cn, RB_STAT(win_hits), 1);
		io->io_ctx = w;
	}
	if (within + io->io_len > w->win_len) {	/* past the file's end */
		if (io->io_ctx != NULL)
			mmap_unloan(&m->mm_stage, w);
		return false;
	}
	io->io_lent = w->win_mem + within;
	rb_io_complete(io, 0, io->io_len);
	return true;
}

static void
mmap_submit(struct rb_stage *st, struct rb_io *io)
{
	struct mmapb *m = (struct mmapb *)st;

	if (RB_UNLIKELY(io->io_flags & RUMPBLK_B_LOAN) &&
	    io->io_op == RUMPBLK_B_READ && mmap_lend(m, io))
		return;
	if (RB_LIKELY(io->io_op == RUMPBLK_B_READ ||
	    (io->io_op == RUMPBLK_B_WRITE && rb_io_wants_sync(io)))) {
		/* A copy from the page cache is cheaper than handing the
		 * buffer to a worker, ASYNC or not. */
		mmap_rw(m, io);
		return;
	}
	/* A write not durable at completion goes with pwrite, also in
	 * this thread: a store through the mapping to a page that is not
	 * dirty takes a write fault (page_mkwrite, the file system's
	 * journal), and once writeback has cleaned an image's pages that
	 * was nearly every random write (bench/nbd-peers.sh: 4 KiB random
	 * writes at QD32 fell from ~120k to ~22k IOPS as the image's pages
	 * were written back; with pwrite ~60k either way). */
	rb_fdio_run(m->mm_fd, m->mm_bk, io);
}

/*
 * The first lines of a request's window bytes, fetched while strategy
 * does its book-keeping: a 4 KiB read at a random place of a large image
 * misses the TLB and the cache, and started here the page walk and the
 * first loads overlap a few hundred instructions of ours instead of
 * following them.  Only mapped windows that cover the unit (no lock, no
 * reference); off is unchecked, so the window number is bounded first.
 */
static void
mmap_prefetch(struct rb_stage *st, int op, uint64_t off)
{
	struct mmapb *m = (struct mmapb *)st;
	uint64_t hoff = m->mm_hoff + off, idx;
	struct mwin *w;
	const char *at;

	if (!m->mm_static)
		return;
	idx = hoff >> m->mm_shift;
	if (idx < m->mm_first || idx - m->mm_first >= m->mm_nidx ||
	    (w = static_lookup(m, idx)) == NULL)
		return;
	at = w->win_mem + (hoff - (idx << m->mm_shift));
	__builtin_prefetch(at);
}

static void
mmap_destroy(struct rb_stage *st)
{
	struct mmapb *m = (struct mmapb *)st;
	unsigned i;

	for (i = 0; i < m->mm_nwin; i++)
		if (m->mm_win[i].win_mem != NULL)
			rb_host_munmap(m->mm_win[i].win_mem,
			    m->mm_win[i].win_len);
	free(m->mm_win);
	free(m->mm_hash);
	pthread_cond_destroy(&m->mm_cv);
	pthread_mutex_destroy(&m->mm_lock);
	free(m);
}

static const struct rb_ops mmap_ops = {
	.name = "mmap",
	.submit = mmap_submit,
	.destroy = mmap_destroy,
	.prefetch = mmap_prefetch,
	.unloan = mmap_unloan,
	.loan_fd = mmap_loan_fd,
};

/*
 * Open the window cache, mapping the first windows as the seed did to make
 * sure that the file can be mapped and the address space is there.  ENODEV
 * (or the mapping error) tells the caller to fall back.
 */
static int
mmap_open(struct rb_unit *u, struct rb_stage **stp)
{
	const struct rumpblk_config *cfg = &u->u_rb->rb_cfg;
	struct mmapb *m;
	struct mwin *w;
	uint64_t last, nslots, i, npre;
	int error;

	if (u->u_backing->bk_ftype != RUMPBLK_FT_REG || u->u_size == 0)
		return ENODEV;
	if ((m = calloc(1, sizeof(*m))) == NULL)
		return ENOMEM;
	rb_stage_init(&m->mm_stage, &mmap_ops, u, RB_RANK_BACKEND);
	m->mm_fd = u->u_host->hf_fd;
	m->mm_bk = &u->u_host->hf_bk;
	m->mm_hoff = m->mm_bk->bk_off;
	m->mm_writable = (u->u_mode & RUMPBLK_FWRITE) != 0;
	m->mm_sigbus = cfg->sigbus_eio;
	m->mm_winsize = cfg->winsize;
	m->mm_shift = (unsigned)__builtin_ctzll(cfg->winsize);
	m->mm_hostend = m->mm_hoff + u->u_size;
	m->mm_first = m->mm_hoff >> m->mm_shift;
	last = (m->mm_hostend - 1) >> m->mm_shift;
	m->mm_nidx = last - m->mm_first + 1;
	m->mm_nwin = m->mm_nidx < cfg->wincount ? (unsigned)m->mm_nidx :
	    cfg->wincount;
	m->mm_cn = u->u_counters;
	if (m->mm_nidx <= RB_MMAP_DIRECT) {
		m->mm_direct = true;
		nslots = m->mm_nidx;
	} else {
		for (m->mm_hbits = 4; (1ull << m->mm_hbits) < 2ull *
		    m->mm_nwin; m->mm_hbits++)
			;
		nslots = 1ull << m->mm_hbits;
	}
	m->mm_static = m->mm_direct && m->mm_nwin == m->mm_nidx;
	error = ENOMEM;
	if ((m->mm_hash = calloc(nslots, sizeof(*m->mm_hash))) == NULL)
		goto free_m;
	if ((m->mm_win = aligned_alloc(RB_CACHELINE,
	    m->mm_nwin * sizeof(*m->mm_win))) == NULL)
		goto free_hash;
	memset(m->mm_win, 0, m->mm_nwin * sizeof(*m->mm_win));
	for (i = m->mm_nwin; i-- > 0; ) {
		w = &m->mm_win[i];
		atomic_init(&w->win_idx, WIN_NONE);
		w->win_fnext = m->mm_free;
		m->mm_free = w;
	}
	pthread_mutex_init(&m->mm_lock, NULL);
	pthread_cond_init(&m->mm_cv, NULL);
	if (m->mm_sigbus && (error = sigbus_install()) != 0)
		goto destroy;

	npre = m->mm_nwin < RB_MMAP_PREMAP ? m->mm_nwin : RB_MMAP_PREMAP;
	for (i = 0; i < npre; i++) {
		if ((error = getwin_slow(m, m->mm_first + i, &w)) != 0)
			goto destroy;
		putwin(m, w);
	}
	u->u_winsize = m->mm_winsize;
	u->u_wincount = m->mm_nwin;
	*stp = &m->mm_stage;
	return 0;

destroy:
	mmap_destroy(&m->mm_stage);
	return error;
free_hash:
	free(m->mm_hash);
free_m:
	free(m);
	return error;
}

int
rb_mmap_open(struct rb_unit *u, struct rb_stage **stp)
{
	int error;

	if ((error = mmap_open(u, stp)) == 0) {
		u->u_backend_kind = RUMPBLK_BACKEND_MMAP;
		return 0;
	}
	/* Cannot map (a device, an empty unit, no address space left, a
	 * file system without mmap): the seed fell back to read/write I/O
	 * when its first windows failed, and so do we. */
	u->u_winsize = 0;
	u->u_wincount = 0;
	u->u_backend_kind = RUMPBLK_BACKEND_PIO;
	return rb_pio_open(u, stp);
}
