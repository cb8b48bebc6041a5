/*
 * errno → NBD error values: the one table.
 *
 * The NBD protocol allows only a handful of error values on the wire
 * (proto.md, "Error values").  Every error the server sends goes through
 * nbd_errno_to_nbd(), so the mapping is written down once, here, and the
 * unit test walks every row.  Anything not listed is an I/O error, which
 * is what a client can act on for a failed medium.
 */
#include <errno.h>

#include "nbd.h"
#include "nbd-proto.h"

const struct nbd_errno_row nbd_errno_table[] = {
	{ 0,		NBD_SUCCESS },
	{ EPERM,	NBD_EPERM },
	{ EACCES,	NBD_EPERM },	/* write open on a read-only unit */
	{ EROFS,	NBD_EPERM },	/* write to a read-only unit */
	{ EIO,		NBD_EIO },
	{ ENXIO,	NBD_EIO },	/* the unit went away */
	{ ENOMEM,	NBD_ENOMEM },
	{ EINVAL,	NBD_EINVAL },
	{ ENOSPC,	NBD_ENOSPC },
	{ EDQUOT,	NBD_ENOSPC },	/* proto.md: map EDQUOT ... */
	{ EFBIG,	NBD_ENOSPC },	/* ... and EFBIG to ENOSPC */
	{ EOVERFLOW,	NBD_EOVERFLOW },
	{ EOPNOTSUPP,	NBD_ENOTSUP },
	{ ESHUTDOWN,	NBD_ESHUTDOWN },
};
const size_t nbd_errno_table_len =
    sizeof(nbd_errno_table) / sizeof(nbd_errno_table[0]);

uint32_t
nbd_errno_to_nbd(int errnum)
{
	size_t i;

	for (i = 0; i < nbd_errno_table_len; i++)
		if (nbd_errno_table[i].errnum == errnum)
			return nbd_errno_table[i].nbd;
	return NBD_EIO;
}
