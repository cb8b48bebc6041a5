/*
 * test-batch: completion batches (lib/batch.c, rumpblk_defer).  Outside
 * a batch nothing is put off; inside, the calls run at the end of the
 * outermost batch, in the order they were put off, once each, and not
 * before; a full batch says so and the caller does the work itself; a
 * batch is the thread's own (another thread's defer is not in it); a
 * plug (rumpblk_plug) is a batch, flushed before its end by a thread
 * about to sleep, and rb_defer_once puts a call off once.
 */
#include <pthread.h>

#include "testlib.h"
#include "internal.h"

static int order[128];
static int norder;

static void
note(void *arg)
{
	order[norder++] = (int)(intptr_t)arg;
}

static void
outside(void **state)
{
	(void)state;
	norder = 0;
	assert_false(rumpblk_defer(note, (void *)1));
	assert_int_equal(norder, 0);
}

static void
in_order_at_the_end(void **state)
{
	(void)state;
	norder = 0;
	rb_batch_begin();
	assert_true(rumpblk_defer(note, (void *)1));
	rb_batch_begin();		/* nested: its end is not the end */
	assert_true(rumpblk_defer(note, (void *)2));
	rb_batch_end();
	assert_int_equal(norder, 0);
	assert_true(rumpblk_defer(note, (void *)3));
	rb_batch_end();
	assert_int_equal(norder, 3);
	assert_int_equal(order[0], 1);
	assert_int_equal(order[1], 2);
	assert_int_equal(order[2], 3);
	/* Over: nothing runs twice, and nothing is put off any more. */
	norder = 0;
	rb_batch_begin();
	rb_batch_end();
	assert_int_equal(norder, 0);
	assert_false(rumpblk_defer(note, (void *)4));
}

static void
full(void **state)
{
	int n = 0;

	(void)state;
	norder = 0;
	rb_batch_begin();
	while (rumpblk_defer(note, (void *)(intptr_t)n))
		n++;
	assert_true(n >= 16);
	assert_true(n < 128);
	assert_int_equal(norder, 0);
	rb_batch_end();
	assert_int_equal(norder, n);
	for (int i = 0; i < n; i++)
		assert_int_equal(order[i], i);
}

static void *
other_thread(void *arg)
{
	*(bool *)arg = rumpblk_defer(note, (void *)9);
	return NULL;
}

static void
per_thread(void **state)
{
	pthread_t t;
	bool deferred = true;

	(void)state;
	norder = 0;
	rb_batch_begin();
	assert_int_equal(pthread_create(&t, NULL, other_thread, &deferred), 0);
	assert_int_equal(pthread_join(t, NULL), 0);
	assert_false(deferred);
	rb_batch_end();
	assert_int_equal(norder, 0);
}

/* A deferred call that puts off another: a flush runs that one too. */
static void
chain_note(void *arg)
{
	note(arg);
	if ((intptr_t)arg == 1)
		assert_true(rumpblk_defer(note, (void *)2));
}

/*
 * A plug is a batch: rumpblk_plug/unplug nest as begin/end; a flush runs
 * what is put off so far (and what those put off) and the plug goes on;
 * rb_defer_once puts a call off once; an unplug with no plug is nothing.
 */
static void
plug_flush_once(void **state)
{
	(void)state;
	norder = 0;
	rumpblk_unplug();		/* not plugged: harmless */
	assert_false(rb_batch_active());
	rb_batch_flush();		/* not plugged: nothing */
	rumpblk_plug();
	assert_true(rb_batch_active());
	assert_true(rb_defer_once(chain_note, (void *)1));
	assert_true(rb_defer_once(chain_note, (void *)1));	/* again */
	assert_true(rb_defer_once(note, (void *)3));
	rb_batch_flush();
	assert_int_equal(norder, 3);
	assert_int_equal(order[0], 1);
	assert_int_equal(order[1], 3);
	assert_int_equal(order[2], 2);
	assert_true(rb_batch_active());	/* still plugged */
	assert_true(rb_defer_once(note, (void *)4));	/* once more: new */
	rumpblk_plug();
	rumpblk_unplug();
	assert_int_equal(norder, 3);
	rumpblk_unplug();
	assert_int_equal(norder, 4);
	assert_int_equal(order[3], 4);
	assert_false(rb_batch_active());
	assert_false(rb_defer_once(note, (void *)5));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(outside),
		cmocka_unit_test(in_order_at_the_end),
		cmocka_unit_test(full),
		cmocka_unit_test(per_thread),
		cmocka_unit_test(plug_flush_once),
	};

	return tl_main(tests, NULL, NULL);
}
