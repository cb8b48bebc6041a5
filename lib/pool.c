/*
 * A bounded pool of worker threads for asynchronous buffers.
 *
 * The seed handed every buffer to one host thread, so asynchronous I/O
 * from many callers was serialised.  Here up to pl_max threads take
 * requests from one FIFO; threads start on demand (when work arrives and
 * no thread is idle), so an instance that only does synchronous I/O never
 * starts one.  The queue is intrusive (struct rb_io's io_next), so
 * submitting never allocates and never fails.
 *
 * Locks: p = pl_lock.  Nothing blocks on I/O with pl_lock held.
 */
#include <errno.h>
#include <stdlib.h>

#include "internal.h"

struct rb_pool {
	pthread_mutex_t	pl_lock;
	pthread_cond_t	pl_work;	/* p: work queued or stopping */
	struct rb_io	*pl_head;	/* p */
	struct rb_io	**pl_tailp;	/* p */
	unsigned	pl_max;		/* ( */
	unsigned	pl_nthreads;	/* p: started */
	unsigned	pl_idle;	/* p: waiting for work */
	unsigned	pl_wakeups;	/* p: idle ones signalled, not yet up */
	bool		pl_stop;	/* p */
	pthread_t	*pl_threads;	/* p */
};

int
rb_pool_create(unsigned maxthreads, struct rb_pool **poolp)
{
	struct rb_pool *pl;

	if ((pl = calloc(1, sizeof(*pl))) == NULL)
		return ENOMEM;
	if ((pl->pl_threads = calloc(maxthreads, sizeof(pthread_t))) == NULL) {
		free(pl);
		return ENOMEM;
	}
	pthread_mutex_init(&pl->pl_lock, NULL);
	pthread_cond_init(&pl->pl_work, NULL);
	pl->pl_tailp = &pl->pl_head;
	pl->pl_max = maxthreads;
	*poolp = pl;
	return 0;
}

static void *
worker(void *arg)
{
	struct rb_pool *pl = arg;
	struct rb_io *io;

	(void)pthread_setname_np(pthread_self(), "rb-worker");
	rb_mutex_lock(&pl->pl_lock);
	for (;;) {
		while (pl->pl_head == NULL && !pl->pl_stop) {
			pl->pl_idle++;
			pthread_cond_wait(&pl->pl_work, &pl->pl_lock);
			pl->pl_idle--;
			if (pl->pl_wakeups > 0)
				pl->pl_wakeups--;
		}
		if ((io = pl->pl_head) == NULL)
			break;		/* stopping, queue empty */
		if ((pl->pl_head = io->io_next) == NULL)
			pl->pl_tailp = &pl->pl_head;
		rb_mutex_unlock(&pl->pl_lock);
		io->io_next = NULL;
		io->io_work(io);
		rb_mutex_lock(&pl->pl_lock);
	}
	rb_mutex_unlock(&pl->pl_lock);
	return NULL;
}

void
rb_pool_submit(struct rb_pool *pl, struct rb_io *io)
{
	io->io_next = NULL;
	rb_mutex_lock(&pl->pl_lock);
	*pl->pl_tailp = io;
	pl->pl_tailp = &io->io_next;
	/*
	 * Wake an idle thread that no earlier submission has claimed yet; a
	 * signalled thread counts as idle until it runs, and counting it
	 * again would send a whole burst to it, one item after another.
	 */
	if (pl->pl_idle > pl->pl_wakeups) {
		pl->pl_wakeups++;
		pthread_cond_signal(&pl->pl_work);
	} else if (pl->pl_nthreads < pl->pl_max) {
		/* If the thread cannot start, the running ones (or this
		 * one's successors) still drain the queue; with none at
		 * all, run the work here rather than lose it. */
		if (pthread_create(&pl->pl_threads[pl->pl_nthreads], NULL,
		    worker, pl) == 0)
			pl->pl_nthreads++;
		else if (pl->pl_nthreads == 0) {
			pl->pl_head = NULL;
			pl->pl_tailp = &pl->pl_head;
			rb_mutex_unlock(&pl->pl_lock);
			io->io_work(io);
			return;
		}
	}
	rb_mutex_unlock(&pl->pl_lock);
}

void
rb_pool_destroy(struct rb_pool *pl)
{
	unsigned i;

	rb_mutex_lock(&pl->pl_lock);
	pl->pl_stop = true;
	pthread_cond_broadcast(&pl->pl_work);
	rb_mutex_unlock(&pl->pl_lock);
	for (i = 0; i < pl->pl_nthreads; i++)
		pthread_join(pl->pl_threads[i], NULL);
	pthread_cond_destroy(&pl->pl_work);
	pthread_mutex_destroy(&pl->pl_lock);
	free(pl->pl_threads);
	free(pl);
}
