/*
 * test-testlib-skips: the subtests test-testlib-skips.sh runs to check
 * tl_main itself (testlib.h): which subtests RUMPBLK_TEST_ONLY and
 * RUMPBLK_TEST_EXCEPT select, and the exit status that says what they
 * did: 0 all passed, 77 all skipped, 1 one failed or some skipped beside
 * passes.  It is no meson test by itself, since some of its subtests fail
 * or skip on purpose.  TL_SELFTEST_TEARDOWN_FAILS=1 makes the group
 * teardown fail.
 */
#include "testlib.h"

static int own_setup_ran;

static void
passes(void **state)
{
	(void)state;
	tl_eq(1 + 1, 2);
}

static void
skips(void **state)
{
	(void)state;
	tl_skip("the self-test skips on purpose (%d)", 1);
}

static void
skips_too(void **state)
{
	(void)state;
	tl_skip("the self-test skips on purpose (%d)", 2);
}

static void
fails(void **state)
{
	(void)state;
	tl_fail("the self-test fails on purpose\n");
}

/* tl_main puts its own setup before each subtest's: both must run. */
static int
own_setup(void **state)
{
	own_setup_ran = 1;
	*state = &own_setup_ran;
	return 0;
}

static void
has_setup(void **state)
{
	tl_true(own_setup_ran);
	tl_true(*state == &own_setup_ran);
}

static int
failing_setup(void **state)
{
	(void)state;
	return -1;
}

/* Never runs: its setup fails, which is a failure of the subtest. */
static void
setup_fails(void **state)
{
	(void)state;
	tl_fail("ran although its setup failed\n");
}

static int
teardown(void **state)
{
	const char *s = getenv("TL_SELFTEST_TEARDOWN_FAILS");

	(void)state;
	return s != NULL && strcmp(s, "1") == 0 ? -1 : 0;
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(passes),
		cmocka_unit_test(skips),
		cmocka_unit_test(skips_too),
		cmocka_unit_test(fails),
		cmocka_unit_test_setup(has_setup, own_setup),
		cmocka_unit_test_setup(setup_fails, failing_setup),
	};

	return tl_main(tests, NULL, teardown);
}
