/*
 * test-stack-layers: the layer stack of lib/stack.c.  A layer built only
 * for this test is pushed above and below the fault layer of a live unit
 * and sees exactly the requests it should (above: every request; below:
 * what the fault layer lets through, where it lets it through); the
 * fault layer is found wherever it sits; the stack keeps its declared
 * order whatever order layers are pushed in; a layer can answer a
 * request itself or issue its own below (frames); the optional prefetch
 * op passes through layers without it; and a layer pushed and removed
 * while threads do I/O is safe (the concurrency suite runs this under
 * ThreadSanitizer).
 */
#include <pthread.h>
#include <stdatomic.h>

#include "testlib.h"
#include "internal.h"
#include "fault/fault.h"

/* What a test layer does with a request. */
enum tmode {
	T_PASS,		/* count it, hand it down */
	T_OWN,		/* count it, send a request of its own below */
	T_ANSWER,	/* reads of [0, 4096): answered here with 0xab */
};

struct tlayer {
	struct rb_stage	tl_stage;
	enum tmode	tl_mode;
	struct rb_frames tl_frames;
	_Atomic uint64_t tl_ops[RUMPBLK_B_OPMASK + 1];	/* by op bit */
	_Atomic uint64_t tl_bytes;	/* io_len of writes seen */
	_Atomic uint64_t tl_lastoff;	/* io_off of the last write */
	_Atomic uint64_t tl_done;	/* T_OWN: completions of ours */
	_Atomic uint64_t tl_prefetch;
	_Atomic bool	*tl_freed;	/* set by destroy */
};

struct tframe {
	struct rb_io	tf_io;		/* ours, to below */
	struct rb_io	*tf_orig;
	struct tlayer	*tf_tl;
};

static void
own_done(struct rb_io *io)
{
	struct tframe *f = (struct tframe *)(void *)io;
	struct tlayer *tl = f->tf_tl;
	struct rb_io *orig = f->tf_orig;
	int error = io->io_error;
	size_t moved = io->io_moved;

	atomic_fetch_add(&tl->tl_done, 1);
	rb_frame_put(&tl->tl_frames, f);
	rb_io_complete(orig, error, moved);
}

static void
t_submit(struct rb_stage *st, struct rb_io *io)
{
	struct tlayer *tl = (struct tlayer *)st;
	struct tframe *f;

	atomic_fetch_add(&tl->tl_ops[io->io_op], 1);
	if (io->io_op == RUMPBLK_B_WRITE) {
		atomic_fetch_add(&tl->tl_bytes, io->io_len);
		atomic_store(&tl->tl_lastoff, io->io_off);
	}
	switch (tl->tl_mode) {
	case T_ANSWER:
		if (io->io_op == RUMPBLK_B_READ && io->io_off + io->io_len <=
		    4096) {
			memset(io->io_data, 0xab, io->io_len);
			rb_io_complete(io, 0, io->io_len);
			return;
		}
		break;
	case T_OWN:
		if ((f = rb_frame_get(&tl->tl_frames)) == NULL) {
			rb_io_complete(io, ENOMEM, 0);
			return;
		}
		f->tf_io = *io;
		f->tf_io.io_done = own_done;
		f->tf_orig = io;
		f->tf_tl = tl;
		rb_stage_pass(st, &f->tf_io);
		return;
	case T_PASS:
		break;
	}
	rb_stage_pass(st, io);
}

static void
t_prefetch(struct rb_stage *st, int op, uint64_t off)
{
	(void)op;
	(void)off;
	atomic_fetch_add(&((struct tlayer *)st)->tl_prefetch, 1);
}

static void
t_destroy(struct rb_stage *st)
{
	struct tlayer *tl = (struct tlayer *)st;

	if (tl->tl_freed != NULL)
		atomic_store(tl->tl_freed, true);
	rb_frames_fini(&tl->tl_frames);
	free(tl);
}

static const struct rb_ops t_ops = {
	.name = "test",
	.submit = t_submit,
	.destroy = t_destroy,
};

static const struct rb_ops t_pf_ops = {
	.name = "test-prefetch",
	.submit = t_submit,
	.destroy = t_destroy,
	.prefetch = t_prefetch,
};

static struct tlayer *
tl_new(struct rb_unit *u, int rank, enum tmode mode, const struct rb_ops *ops)
{
	struct tlayer *tl = calloc(1, sizeof(*tl));

	assert(tl != NULL);
	rb_stage_init(&tl->tl_stage, ops, u, rank);
	rb_frames_init(&tl->tl_frames, sizeof(struct tframe));
	tl->tl_mode = mode;
	return tl;
}

static struct rb_unit *
unit_of(struct rumpblk *rb, int unit)
{
	unsigned ep;
	struct rb_unit *u = rb_unit_hold(rb, unit, &ep);

	assert(u != NULL);
	rb_unit_rele(u, ep);	/* the slot outlives the test's use */
	return u;
}

static char *image;
TL_IMAGE_FIXTURE(image, "stack.img", 1 << 20, 7)

static uint64_t
seen(struct tlayer *tl, int op)
{
	return atomic_load(&tl->tl_ops[op]);
}

/* Above and below the fault layer, in either push order. */
static void
around_fault(void **state)
{
	struct rumpblk *rb = tl_create(NULL);
	struct rb_unit *u;
	struct tlayer *top, *mid;
	struct rb_stage *st;
	char buf[4096], id[32], err[200];
	int unit = tl_register(rb, image, 0, RUMPBLK_SIZENOTSET), i, e;
	int ranks[4], n = 0;

	(void)state;
	u = unit_of(rb, unit);
	/* Below first (rank 150: under RB_RANK_FAULT), then the rules. */
	mid = tl_new(u, RB_RANK_FAULT + 50, T_PASS, &t_ops);
	rb_stack_push(u, &mid->tl_stage);
	tl_eq(rumpblk_fault_add(rb, "error,op=write,range=0-8K", id,
	    sizeof(id), err, sizeof(err)), 0);
	tl_eq(rumpblk_fault_add(rb, "misdirect,op=write,range=64K-72K,"
	    "shift=256", id, sizeof(id), err, sizeof(err)), 0);
	top = tl_new(u, RB_RANK_FAULT - 50, T_PASS, &t_ops);
	rb_stack_push(u, &top->tl_stage);

	/* The declared order, top to bottom, whatever the push order. */
	for (st = atomic_load(&u->u_top); st != NULL; st = rb_stage_lower(st))
		ranks[n++] = st->st_rank;
	tl_eq(n, 4);
	tl_eq(ranks[0], RB_RANK_FAULT - 50);
	tl_eq(ranks[1], RB_RANK_FAULT);
	tl_eq(ranks[2], RB_RANK_FAULT + 50);
	tl_eq(ranks[3], RB_RANK_BACKEND);
	/* The fault layer is found in the middle of the stack. */
	tl_true(rb_fault_unit_layer(u) != NULL);
	tl_true(rb_fault_unit_layer(u)->st_rank == RB_RANK_FAULT);
	tl_true(rb_stack_find(u, &t_ops) == &top->tl_stage);

	for (i = 0; i < 10; i++)
		tl_eq(tl_io(rb, unit, RUMPBLK_B_READ, i * 8, buf, 4096, NULL), 0);
	memset(buf, 0x5a, sizeof(buf));
	/* Four writes the error rule fails, three that pass, one that the
	 * misdirect rule moves 256 sectors on. */
	for (i = 0; i < 4; i++) {
		e = tl_io(rb, unit, RUMPBLK_B_WRITE, i * 4, buf, 2048, NULL);
		tl_eq(e, EIO);
	}
	for (i = 0; i < 3; i++)
		tl_eq(tl_io(rb, unit, RUMPBLK_B_WRITE, 64 + i * 8, buf, 4096,
		    NULL), 0);
	tl_eq(tl_io(rb, unit, RUMPBLK_B_WRITE, 128, buf, 4096, NULL), 0);
	tl_eq(tl_io(rb, unit, RUMPBLK_B_FLUSH, 0, NULL, 0, NULL), 0);

	tl_eq(seen(top, RUMPBLK_B_READ), 10);
	tl_eq(seen(top, RUMPBLK_B_WRITE), 8);
	tl_eq(seen(top, RUMPBLK_B_FLUSH), 1);
	tl_eq(seen(mid, RUMPBLK_B_READ), 10);
	tl_eq(seen(mid, RUMPBLK_B_WRITE), 4);	/* the failed ones never */
	tl_eq(seen(mid, RUMPBLK_B_FLUSH), 1);
	tl_eq(atomic_load(&top->tl_bytes), 4 * 2048 + 4 * 4096);
	tl_eq(atomic_load(&mid->tl_bytes), 4 * 4096);
	/* Below the fault layer, the misdirected write is where it went. */
	tl_eq(atomic_load(&top->tl_lastoff), 64 * 1024);
	tl_eq(atomic_load(&mid->tl_lastoff), 64 * 1024 + 256 * 512);

	/* Removed from a live unit: requests go around it. */
	tl_eq(rb_stack_remove(u, &top->tl_stage), 0);
	/* One that is not on the stack: ENOENT (and it stays ours). */
	top = tl_new(u, 60, T_PASS, &t_ops);
	tl_eq(rb_stack_remove(u, &top->tl_stage), ENOENT);
	t_destroy(&top->tl_stage);
	tl_eq(tl_io(rb, unit, RUMPBLK_B_READ, 0, buf, 4096, NULL), 0);
	tl_eq(seen(mid, RUMPBLK_B_READ), 11);
	tl_true(rb_fault_unit_layer(u) != NULL);
	tl_eq(rb_stack_remove(u, u->u_backend), EINVAL);
	tl_eq(rumpblk_destroy(rb), 0);
}

/* A layer answers a request itself, or issues its own below. */
static void
answer_and_own(void **state)
{
	struct rumpblk *rb = tl_create(NULL);
	struct rb_unit *u;
	struct tlayer *ans, *own;
	char buf[8192];
	int unit = tl_register(rb, image, 0, RUMPBLK_SIZENOTSET), i;

	(void)state;
	u = unit_of(rb, unit);
	own = tl_new(u, 250, T_OWN, &t_ops);
	ans = tl_new(u, 50, T_ANSWER, &t_ops);
	rb_stack_push(u, &own->tl_stage);
	rb_stack_push(u, &ans->tl_stage);
	/* Answered by the top layer: the one below never sees it. */
	tl_eq(tl_io(rb, unit, RUMPBLK_B_READ, 0, buf, 4096, NULL), 0);
	tl_true(tl_all(buf, 4096, 0xab));
	tl_eq(seen(own, RUMPBLK_B_READ), 0);
	/* Through both, the data of the medium (a part no other test
	 * writes), by our own requests. */
	for (i = 0; i < 100; i++) {
		tl_eq(tl_io(rb, unit, RUMPBLK_B_READ, 1024 + i, buf, 8192, NULL),
		    0);
		tl_true(tl_check(buf, 8192, (uint64_t)(1024 + i) * 512, 7));
	}
	tl_eq(seen(own, RUMPBLK_B_READ), 100);
	tl_eq(atomic_load(&own->tl_done), 100);
	tl_eq(rumpblk_destroy(rb), 0);
}

/*
 * prefetch passes through a layer that has none, and a layer that has
 * one (the fault layer) hands it on to the next one below.
 */
static void
prefetch_passes(void **state)
{
	struct rumpblk *rb = tl_create(NULL);
	struct rb_unit *u;
	struct rb_stage *fault, *below;
	struct tlayer *pf, *plain;
	char buf[512], id[32];
	int unit = tl_register(rb, image, 0, RUMPBLK_SIZENOTSET);

	(void)state;
	u = unit_of(rb, unit);
	pf = tl_new(u, 500, T_PASS, &t_pf_ops);
	rb_stack_push(u, &pf->tl_stage);
	plain = tl_new(u, 50, T_PASS, &t_ops);
	rb_stack_push(u, &plain->tl_stage);
	tl_eq(rumpblk_fault_add(rb, "error,op=read,nth=2000000000", id,
	    sizeof(id), NULL, 0), 0);
	fault = rb_fault_unit_layer(u);
	tl_true(fault != NULL);
	/* The highest stage with the op: the fault layer, under plain. */
	tl_true(atomic_load(&u->u_prefetch) == fault);
	tl_true(atomic_load(&fault->st_pfnext) == &pf->tl_stage);
	tl_eq(tl_io(rb, unit, RUMPBLK_B_READ, 3, buf, 512, NULL), 0);
	tl_eq(tl_io(rb, unit, RUMPBLK_B_READ, 4, buf, 512, NULL), 0);
	tl_eq(atomic_load(&pf->tl_prefetch), 2);
	tl_eq(rb_stack_remove(u, &pf->tl_stage), 0);
	/* Then on to the backend's own (mmap has one), or nowhere. */
	below = atomic_load(&fault->st_pfnext);
	tl_true(below == NULL || below == u->u_backend);
	tl_true((below != NULL) == (u->u_backend->st_ops->prefetch != NULL));
	tl_eq(rumpblk_destroy(rb), 0);
}

/* Push and remove layers while threads do synchronous and async I/O. */
#define NTHREADS	3
#define ROUNDS		40

struct worker {
	struct rumpblk	*w_rb;
	int		w_unit;
	_Atomic bool	*w_stop;
	uint64_t	w_ops;
	int		w_errors;
};

static void *
io_main(void *arg)
{
	struct worker *w = arg;
	char buf[4096];
	uint64_t r = (uint64_t)(uintptr_t)w;
	int flags;

	while (!atomic_load(w->w_stop)) {
		flags = tl_rand(&r) % 3 == 0 ? RUMPBLK_B_WRITE : RUMPBLK_B_READ;
		if (tl_rand(&r) % 2)
			flags |= RUMPBLK_B_ASYNC;
		if (flags & RUMPBLK_B_WRITE)
			tl_fill(buf, sizeof(buf), 0, 3);
		if (tl_io(w->w_rb, w->w_unit, flags,
		    (int64_t)(tl_rand(&r) % 255) * 8, buf, 4096, NULL) != 0)
			w->w_errors++;
		w->w_ops++;
	}
	return NULL;
}

static void
remove_under_io(void **state)
{
	struct rumpblk *rb = tl_create(NULL);
	struct worker w[NTHREADS];
	pthread_t th[NTHREADS];
	struct rb_unit *u;
	struct tlayer *tl;
	_Atomic bool stop = false, freed;
	char id[32];
	int unit = tl_register(rb, image, 0, RUMPBLK_SIZENOTSET), i, r;
	uint64_t total = 0;

	(void)state;
	u = unit_of(rb, unit);
	tl_eq(rumpblk_fault_add(rb, "delay,op=read,ms=0.05,p=0.1", id,
	    sizeof(id), NULL, 0), 0);
	for (i = 0; i < NTHREADS; i++) {
		w[i] = (struct worker){ rb, unit, &stop, 0, 0 };
		assert(pthread_create(&th[i], NULL, io_main, &w[i]) == 0);
	}
	for (r = 0; r < ROUNDS; r++) {
		tl = tl_new(u, r % 2 ? 50 : 150, r % 3 ? T_OWN : T_PASS,
		    &t_ops);
		atomic_store(&freed, false);
		tl->tl_freed = &freed;
		rb_stack_push(u, &tl->tl_stage);
		usleep(2000);
		tl_eq(rb_stack_remove(u, &tl->tl_stage), 0);
		/* Freed by remove, after its grace period. */
		tl_true(atomic_load(&freed));
	}
	atomic_store(&stop, true);
	for (i = 0; i < NTHREADS; i++) {
		pthread_join(th[i], NULL);
		tl_eq(w[i].w_errors, 0);
		total += w[i].w_ops;
	}
	tl_true(total > 0);
	tl_eq(rumpblk_destroy(rb), 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(around_fault),
		cmocka_unit_test(answer_and_own),
		cmocka_unit_test(prefetch_passes),
		cmocka_unit_test(remove_under_io),
	};

	return tl_main(tests, setup, teardown);
}
