/*
 * test-batch: completion batches (lib/batch.c, rumpblk_defer).  Outside
 * a batch nothing is put off; inside, the calls run at the end of the
 * outermost batch, in the order they were put off, once each, and not
 * before; a full batch says so and the caller does the work itself; a
 * batch is the thread's own (another thread's defer is not in it).
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

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(outside),
		cmocka_unit_test(in_order_at_the_end),
		cmocka_unit_test(full),
		cmocka_unit_test(per_thread),
	};

	return tl_main(tests, NULL, NULL);
}
