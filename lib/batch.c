/*
 * Completion batches: a thread of the library that completes several
 * buffers in a row (the NBD backing's receiver, with every reply a
 * receive brought) brackets them with rb_batch_begin/rb_batch_end, and
 * a b_iodone callback may put off what the completions share to the
 * batch's end with rumpblk_defer() (the NBD server sends the replies of
 * one batch in one sendmsg, not one each).  The state is the thread's
 * own: no lock, nothing shared.
 *
 * A plug (rumpblk_plug, the NBD server's reader over a burst of
 * requests) is such a batch on a submitting thread: the NBD backing then
 * queues what the thread submits and sends it at the batch's end, all in
 * one sendmsg.  A request so held back completes only once the batch
 * ends or is flushed, so a plugged thread flushes before it sleeps on a
 * request (rumpblk_biowait, a layer's synchronous request: stack.c).
 */
#include <string.h>

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

/* Run the calls put off so far, the batch going on (a thread about to
 * sleep on a request it may hold back: rumpblk_plug). */
void
rb_batch_flush(void)
{
	struct rb_batch *b = &batch;

	if (b->b_depth == 0)
		return;
	/* Taken out first: a call may put off another (it runs next). */
	while (b->b_n > 0) {
		unsigned n = b->b_n;
		__typeof__(b->b_call[0]) call[RB_BATCH_MAX];

		memcpy(call, b->b_call, n * sizeof(call[0]));
		b->b_n = 0;
		for (unsigned i = 0; i < n; i++)
			call[i].fn(call[i].arg);
	}
}

bool
rb_batch_active(void)
{
	return batch.b_depth > 0;
}

/* rumpblk_defer, but once: fn(arg) put off already is not again. */
bool
rb_defer_once(void (*fn)(void *), void *arg)
{
	struct rb_batch *b = &batch;

	for (unsigned i = 0; i < b->b_n; i++)
		if (b->b_call[i].fn == fn && b->b_call[i].arg == arg)
			return b->b_depth > 0;
	return rumpblk_defer(fn, arg);
}

void
rumpblk_plug(void)
{
	rb_batch_begin();
}

void
rumpblk_unplug(void)
{
	if (batch.b_depth > 0)
		rb_batch_end();
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
