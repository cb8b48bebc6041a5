/*
 * test-nbd-errno: the NBD server's errno → NBD error table.  Every row is
 * checked against an expectation written down here independently, every
 * value is one proto.md allows on the wire, and errnos outside the table
 * map to NBD_EIO.
 */
#include "testlib.h"

#include "nbd.h"
#include "nbd-proto.h"

static const struct {
	int		errnum;
	uint32_t	nbd;
} expect[] = {
	{ 0, 0 }, { EPERM, 1 }, { EACCES, 1 }, { EROFS, 1 }, { EIO, 5 },
	{ ENXIO, 5 }, { ENOMEM, 12 }, { EINVAL, 22 }, { ENOSPC, 28 },
	{ EDQUOT, 28 }, { EFBIG, 28 }, { EOVERFLOW, 75 }, { EOPNOTSUPP, 95 },
	{ ESHUTDOWN, 108 },
};

static bool
on_wire(uint32_t v)
{
	switch (v) {
	case NBD_SUCCESS: case NBD_EPERM: case NBD_EIO: case NBD_ENOMEM:
	case NBD_EINVAL: case NBD_ENOSPC: case NBD_EOVERFLOW:
	case NBD_ENOTSUP: case NBD_ESHUTDOWN:
		return true;
	}
	return false;
}

static void
every_row(void **state)
{
	size_t i, j;
	bool found;

	(void)state;
	tl_eq(nbd_errno_table_len, sizeof(expect) / sizeof(expect[0]));
	for (i = 0; i < nbd_errno_table_len; i++) {
		found = false;
		for (j = 0; j < sizeof(expect) / sizeof(expect[0]); j++) {
			if (expect[j].errnum != nbd_errno_table[i].errnum)
				continue;
			found = true;
			tl_eq(nbd_errno_table[i].nbd, expect[j].nbd);
		}
		if (!found)
			tl_fail("row %zu (errno %d) has no expectation\n", i,
			    nbd_errno_table[i].errnum);
		tl_eq(on_wire(nbd_errno_table[i].nbd), true);
		tl_eq(nbd_errno_to_nbd(nbd_errno_table[i].errnum),
		    nbd_errno_table[i].nbd);
	}
}

static void
default_is_eio(void **state)
{
	(void)state;
	tl_eq(nbd_errno_to_nbd(EBADF), NBD_EIO);
	tl_eq(nbd_errno_to_nbd(ETIMEDOUT), NBD_EIO);
	tl_eq(nbd_errno_to_nbd(-1), NBD_EIO);
	tl_eq(nbd_errno_to_nbd(100000), NBD_EIO);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(every_row),
		cmocka_unit_test(default_is_eio),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
