/*
 * The layer stack of a unit: push, find, remove, reset, destroy; grace
 * periods; synchronous requests through the stack; per-layer frame pools.
 *
 * Contents:
 *   1. pushing, finding, removing, resetting and destroying stages
 *   2. synchronous requests (rb_stack_io, rb_stage_io_below)
 *   3. frame pools
 *
 * This is the one internal API through which layers go on and off a
 * unit (internal.h, "The layer stack", says the order and why).  It is
 * not on the I/O path but for two lock-free loads: strategy reads u_top
 * and u_prefetch, a layer reads its st_lower.  What it costs is paid when
 * the stack changes: removal waits a grace period (rb_unit_quiesce in
 * unit.c), so that a stage is never freed while a request is in it, and
 * the I/O path takes no lock and counts nothing per layer for that.
 *
 * Locks: s = rb_stacklock (every unit of the instance; changes are rare).
 * Lock order: rb_lock before rb_stacklock.  No request waits on
 * rb_stacklock, so a grace period may be waited for with it held.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "internal.h"

/* 1. The stack. */

void
rb_stage_init(struct rb_stage *st, const struct rb_ops *ops,
    struct rb_unit *u, int rank)
{
	st->st_ops = ops;
	atomic_init(&st->st_lower, NULL);
	atomic_init(&st->st_pfnext, NULL);
	st->st_unit = u;
	st->st_rank = rank;
}

/*
 * Point u_prefetch at the highest stage that prefetches, and every
 * stage's st_pfnext at the next one below it that does; u_noloan says
 * whether a layer bars loans (rb_ops, lends_through).
 */
static void
prefetch_update_locked(struct rb_unit *u)
{
	struct rb_stage *st, *next = NULL, *chain[64];
	bool noloan = false;
	int n = 0;

	rb_assert_held(&u->u_rb->rb_stacklock);
	for (st = atomic_load(&u->u_top); st != NULL && n < 64;
	    st = rb_stage_lower(st))
		chain[n++] = st;
	while (n-- > 0) {
		atomic_store_explicit(&chain[n]->st_pfnext, next,
		    memory_order_release);
		if (chain[n]->st_ops->prefetch != NULL)
			next = chain[n];
		if (chain[n]->st_rank != RB_RANK_BACKEND &&
		    !chain[n]->st_ops->lends_through)
			noloan = true;
	}
	atomic_store_explicit(&u->u_prefetch, next, memory_order_release);
	atomic_store_explicit(&u->u_noloan, noloan, memory_order_relaxed);
}

void
rb_stack_push(struct rb_unit *u, struct rb_stage *st)
{
	_Atomic(struct rb_stage *) *linkp = &u->u_top;
	struct rb_stage *below;

	rb_mutex_lock(&u->u_rb->rb_stacklock);
	/* Below every stage of a smaller or equal rank. */
	while ((below = atomic_load(linkp)) != NULL &&
	    below->st_rank <= st->st_rank)
		linkp = &below->st_lower;
	atomic_store_explicit(&st->st_lower, below, memory_order_relaxed);
	/* Release: a request that sees st sees its fields. */
	atomic_store_explicit(linkp, st, memory_order_release);
	if (st->st_rank == RB_RANK_BACKEND && below == NULL)
		u->u_backend = st;
	prefetch_update_locked(u);
	rb_mutex_unlock(&u->u_rb->rb_stacklock);
}

struct rb_stage *
rb_stack_find(struct rb_unit *u, const struct rb_ops *ops)
{
	struct rb_stage *st;

	for (st = atomic_load_explicit(&u->u_top, memory_order_acquire);
	    st != NULL; st = rb_stage_lower(st))
		if (st->st_ops == ops)
			return st;
	return NULL;
}

static void
stage_free(struct rb_stage *st)
{
	if (st->st_ops->destroy != NULL)
		st->st_ops->destroy(st);
	else
		free(st);
}

int
rb_stack_remove(struct rb_unit *u, struct rb_stage *st)
{
	_Atomic(struct rb_stage *) *linkp = &u->u_top;
	struct rb_stage *cur;

	if (st->st_rank == RB_RANK_BACKEND)
		return EINVAL;		/* a unit always has its backend */
	rb_mutex_lock(&u->u_rb->rb_stacklock);
	/* Teardown destroys the stack under this lock: a live unit here
	 * stays live (if draining) until we are done. */
	if ((atomic_load(&u->u_state) & RB_U_LIVE) == 0) {
		rb_mutex_unlock(&u->u_rb->rb_stacklock);
		return ENOENT;
	}
	while ((cur = atomic_load(linkp)) != NULL && cur != st)
		linkp = &cur->st_lower;
	if (cur == NULL) {
		rb_mutex_unlock(&u->u_rb->rb_stacklock);
		return ENOENT;
	}
	/*
	 * Unlink: requests from now on go around st; a request already in
	 * st keeps going down through st's own st_lower, which stays valid.
	 * Then wait out every request that could have seen st: after that
	 * none is in it, and none will enter it.
	 */
	atomic_store_explicit(linkp, rb_stage_lower(st), memory_order_release);
	prefetch_update_locked(u);
	rb_unit_quiesce(u);
	rb_mutex_unlock(&u->u_rb->rb_stacklock);
	stage_free(st);
	return 0;
}

void
rb_stack_reset(struct rb_unit *u)
{
	struct rb_stage *st;

	rb_mutex_lock(&u->u_rb->rb_stacklock);
	/* A unit torn down meanwhile has no stack left (u_top NULL). */
	for (st = atomic_load(&u->u_top); st != NULL; st = rb_stage_lower(st))
		if (st->st_ops->reset != NULL)
			st->st_ops->reset(st);
	rb_mutex_unlock(&u->u_rb->rb_stacklock);
}

void
rb_stack_destroy(struct rb_unit *u)
{
	struct rb_stage *st, *lower;

	rb_mutex_lock(&u->u_rb->rb_stacklock);
	st = atomic_exchange(&u->u_top, NULL);
	atomic_store(&u->u_prefetch, NULL);
	u->u_backend = NULL;
	rb_mutex_unlock(&u->u_rb->rb_stacklock);
	for (; st != NULL; st = lower) {
		lower = rb_stage_lower(st);
		stage_free(st);
	}
}

/* 2. Synchronous requests. */

struct waiter {
	struct rb_io	w_io;
	pthread_mutex_t	w_lock;
	pthread_cond_t	w_cond;
	bool		w_done;		/* w_lock */
};

static void
waiter_done(struct rb_io *io)
{
	struct waiter *w = (struct waiter *)(void *)io;

	rb_mutex_lock(&w->w_lock);
	w->w_done = true;
	pthread_cond_signal(&w->w_cond);
	rb_mutex_unlock(&w->w_lock);
}

static int
stage_io(struct rb_stage *st, struct rb_unit *u, int op, int flags,
    uint64_t off, size_t len, void *data, size_t *movedp)
{
	struct waiter w;
	struct rb_io *io = &w.w_io;

	memset(&w, 0, sizeof(w));
	pthread_mutex_init(&w.w_lock, NULL);
	pthread_cond_init(&w.w_cond, NULL);
	io->io_op = op;
	io->io_flags = flags;
	io->io_off = off;
	io->io_len = len;
	io->io_data = data;
	io->io_unit = u;
	io->io_done = waiter_done;
	st->st_ops->submit(st, io);
	rb_batch_flush();	/* a plugged thread's: it would wait forever */
	rb_mutex_lock(&w.w_lock);
	while (!w.w_done)
		pthread_cond_wait(&w.w_cond, &w.w_lock);
	rb_mutex_unlock(&w.w_lock);
	pthread_cond_destroy(&w.w_cond);
	pthread_mutex_destroy(&w.w_lock);
	if (movedp != NULL)
		*movedp = io->io_moved;
	return io->io_error;
}

int
rb_stack_io(struct rb_unit *u, int op, int flags, uint64_t off, size_t len,
    void *data, size_t *movedp)
{
	return stage_io(atomic_load_explicit(&u->u_top, memory_order_acquire),
	    u, op, flags, off, len, data, movedp);
}

int
rb_stage_io_below(struct rb_stage *st, int op, int flags, uint64_t off,
    size_t len, void *data, size_t *movedp)
{
	return stage_io(rb_stage_lower(st), st->st_unit, op, flags, off, len,
	    data, movedp);
}

int
rb_unit_sync(struct rb_unit *u)
{
	return rb_stack_io(u, RUMPBLK_B_FLUSH, 0, 0, 0, NULL, NULL);
}

/* 3. Frame pools. */

/*
 * A frame is a header (its list, and the free-list link while free)
 * followed by the layer's bytes.  Chunks of FRAMES_PER_CHUNK frames are
 * linked through their first word, for rb_frames_fini.
 */
#define FRAMES_PER_CHUNK	32

struct frame_hdr {
	struct rb_frame_list *fh_list;
	struct frame_hdr *fh_next;
} __attribute__((aligned(16)));

void
rb_frames_init(struct rb_frames *fr, size_t size)
{
	memset(fr, 0, sizeof(*fr));
	for (unsigned i = 0; i < RB_NSHARDS; i++)
		pthread_mutex_init(&fr->fr_list[i].fl_lock, NULL);
	pthread_mutex_init(&fr->fr_chunklock, NULL);
	fr->fr_size = sizeof(struct frame_hdr) +
	    ((size + 15) & ~(size_t)15);
}

/* A new chunk of frames on list l's free list; false on ENOMEM. */
static bool
chunk_add_locked(struct rb_frames *fr, struct rb_frame_list *l)
{
	char *c;
	struct frame_hdr *h;

	if ((c = malloc(16 + FRAMES_PER_CHUNK * fr->fr_size)) == NULL)
		return false;
	rb_mutex_lock(&fr->fr_chunklock);
	*(void **)(void *)c = fr->fr_chunks;
	fr->fr_chunks = c;
	rb_mutex_unlock(&fr->fr_chunklock);
	for (unsigned i = 0; i < FRAMES_PER_CHUNK; i++) {
		h = (struct frame_hdr *)(void *)(c + 16 + i * fr->fr_size);
		h->fh_list = l;
		h->fh_next = l->fl_free;
		l->fl_free = h;
	}
	return true;
}

void *
rb_frame_get(struct rb_frames *fr)
{
	unsigned s = rb_shard_index();
	struct rb_frame_list *l = &fr->fr_list[s];
	struct frame_hdr *h;

	rb_mutex_lock(&l->fl_lock);
	if (l->fl_free == NULL && !chunk_add_locked(fr, l)) {
		rb_mutex_unlock(&l->fl_lock);
		return NULL;
	}
	h = l->fl_free;
	l->fl_free = h->fh_next;
	rb_mutex_unlock(&l->fl_lock);
	memset(h + 1, 0, fr->fr_size - sizeof(*h));
	return h + 1;
}

void
rb_frame_put(struct rb_frames *fr, void *p)
{
	struct frame_hdr *h = (struct frame_hdr *)p - 1;
	struct rb_frame_list *l = h->fh_list;

	(void)fr;
	rb_mutex_lock(&l->fl_lock);
	h->fh_next = l->fl_free;
	l->fl_free = h;
	rb_mutex_unlock(&l->fl_lock);
}

void
rb_frames_fini(struct rb_frames *fr)
{
	void *c, *next;

	for (c = fr->fr_chunks; c != NULL; c = next) {
		next = *(void **)c;
		free(c);
	}
	fr->fr_chunks = NULL;
	for (unsigned i = 0; i < RB_NSHARDS; i++)
		pthread_mutex_destroy(&fr->fr_list[i].fl_lock);
	pthread_mutex_destroy(&fr->fr_chunklock);
}

/* The layers every unit of the instance carries, at registration. */
int
rb_layers_attach(struct rb_unit *u)
{
	return rb_fault_unit_attach(u);
}
