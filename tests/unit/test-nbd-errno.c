/*
 * test-nbd-errno: the NBD server's one errno → NBD error table
 * (nbd/errno.c).  Every row of nbd_errno_table is checked against an
 * expectation written here independently from proto.md ("Error values"),
 * every expectation must be a row of the table (so a row cannot be
 * dropped or added unnoticed), nbd_errno_to_nbd() must agree with the
 * table, and errno values outside it must map to NBD_EIO.
 */
#undef NDEBUG
#include <assert.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <cmocka.h>

#include "nbd.h"

/*
 * The error values proto.md allows on the wire, by their Linux numbers
 * (the protocol fixes the numbers, not the host's errno.h).
 */
#define W_SUCCESS	0
#define W_EPERM		1
#define W_EIO		5
#define W_ENOMEM	12
#define W_EINVAL	22
#define W_ENOSPC	28
#define W_EOVERFLOW	75
#define W_ENOTSUP	95
#define W_ESHUTDOWN	108

static const struct {
	int		errnum;
	uint32_t	wire;
	const char	*why;
} expect[] = {
	{ 0,		W_SUCCESS,	"success" },
	{ EPERM,	W_EPERM,	"operation not permitted" },
	{ EACCES,	W_EPERM,	"write open on a read-only unit" },
	{ EROFS,	W_EPERM,	"write to a read-only unit" },
	{ EIO,		W_EIO,		"I/O error" },
	{ ENXIO,	W_EIO,		"the unit went away" },
	{ ENOMEM,	W_ENOMEM,	"out of memory" },
	{ EINVAL,	W_EINVAL,	"invalid request" },
	{ ENOSPC,	W_ENOSPC,	"no space" },
	{ EDQUOT,	W_ENOSPC,	"proto.md: EDQUOT as ENOSPC" },
	{ EFBIG,	W_ENOSPC,	"proto.md: EFBIG as ENOSPC" },
	{ EOVERFLOW,	W_EOVERFLOW,	"request too large" },
	{ EOPNOTSUPP,	W_ENOTSUP,	"not supported" },
	{ ESHUTDOWN,	W_ESHUTDOWN,	"server shutting down" },
};
#define NEXPECT (sizeof(expect) / sizeof(expect[0]))

static int
wire_allowed(uint32_t v)
{
	switch (v) {
	case W_SUCCESS: case W_EPERM: case W_EIO: case W_ENOMEM:
	case W_EINVAL: case W_ENOSPC: case W_EOVERFLOW: case W_ENOTSUP:
	case W_ESHUTDOWN:
		return 1;
	default:
		return 0;
	}
}

/* Each row of the table: an allowed wire value, the expected one, and
 * what nbd_errno_to_nbd() returns. */
static void
every_row(void **state)
{
	size_t i, j;

	(void)state;
	assert_true(nbd_errno_table_len > 0);
	for (i = 0; i < nbd_errno_table_len; i++) {
		int e = nbd_errno_table[i].errnum;
		uint32_t v = nbd_errno_table[i].nbd;

		if (!wire_allowed(v))
			fail_msg("row %zu: errno %d maps to %u, not an NBD "
			    "error value", i, e, v);
		for (j = 0; j < NEXPECT; j++)
			if (expect[j].errnum == e)
				break;
		if (j == NEXPECT)
			fail_msg("row %zu: errno %d is not in this test's "
			    "expectations: add it here with its reason", i, e);
		if (expect[j].wire != v)
			fail_msg("row %zu: errno %d (%s) maps to %u, expected "
			    "%u", i, e, expect[j].why, v, expect[j].wire);
		assert_int_equal(nbd_errno_to_nbd(e), v);
	}
}

/* No row is missing, and none appears twice. */
static void
every_expectation(void **state)
{
	size_t i, j, n;

	(void)state;
	for (j = 0; j < NEXPECT; j++) {
		n = 0;
		for (i = 0; i < nbd_errno_table_len; i++)
			if (nbd_errno_table[i].errnum == expect[j].errnum)
				n++;
		if (n != 1)
			fail_msg("errno %d (%s): %zu rows in the table, "
			    "expected 1", expect[j].errnum, expect[j].why, n);
		assert_int_equal(nbd_errno_to_nbd(expect[j].errnum),
		    expect[j].wire);
	}
	assert_int_equal(nbd_errno_table_len, NEXPECT);
}

/* Anything else is an I/O error, never a raw host errno on the wire. */
static void
others_are_eio(void **state)
{
	static const int others[] = { ENOENT, EAGAIN, EBADF, EFAULT, EBUSY,
	    ENODEV, ETIMEDOUT, ECONNRESET, EPIPE, ENOTTY, 4095, -1 };
	size_t i;
	int e;

	(void)state;
	for (i = 0; i < sizeof(others) / sizeof(others[0]); i++)
		assert_int_equal(nbd_errno_to_nbd(others[i]), W_EIO);
	/* Every errno up to 200 maps to an allowed wire value. */
	for (e = 0; e < 200; e++)
		if (!wire_allowed(nbd_errno_to_nbd(e)))
			fail_msg("errno %d maps to %u", e,
			    nbd_errno_to_nbd(e));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(every_row),
		cmocka_unit_test(every_expectation),
		cmocka_unit_test(others_are_eio),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
