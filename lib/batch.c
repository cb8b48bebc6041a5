/*
 * Completion batches: a thread of the library that completes several
 * buffers in a row (the NBD backing's receiver, with every reply a
 * receive brought) brackets them with rb_batch_begin/rb_batch_end, and
 * a b_iodone callback may put off what the completions share to the
 * batch's end with rumpblk_defer() (the NBD server sends the replies of
 * one batch in one sendmsg, not one each).  The state is the thread's
 * own: no lock, nothing shared.
 */
#include "internal.h"

#define RB_BATCH_MAX	64	/* deferred calls per batch; then at once */

struct rb_batch {
	unsigned	b_depth;	/* begin calls not yet ended */
	unsigned	b_n;
	struct {
		void	(*fn)(void *);
		void	*arg;
	}		b_call[RB_BATCH_MAX];
};

static __thread struct rb_batch batch;

void
rb_batch_begin(void)
{
	batch.b_depth++;
}

void
rb_batch_end(void)
{
	struct rb_batch *b = &batch;

	if (--b->b_depth > 0)
		return;
	/* In order; a call deferred by one of them (none is, the batch
	 * being over) would run at once. */
	for (unsigned i = 0; i < b->b_n; i++)
		b->b_call[i].fn(b->b_call[i].arg);
	b->b_n = 0;
}

bool
rumpblk_defer(void (*fn)(void *), void *arg)
{
	struct rb_batch *b = &batch;

	if (b->b_depth == 0 || b->b_n == RB_BATCH_MAX)
		return false;
	b->b_call[b->b_n].fn = fn;
	b->b_call[b->b_n].arg = arg;
	b->b_n++;
	return true;
}
