/*
 * rumpblk create: make a sparse image of a given size.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

static void
create_usage(FILE *f)
{
	fprintf(f, "usage: rumpblk create IMAGE SIZE\n\n"
	    "Create IMAGE as a sparse file of SIZE bytes, not 0 (K, M, G,\n"
	    "T suffixes are powers of 1024).  An existing file is never\n"
	    "overwritten.\n");
}

int
cmd_create(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const struct cli_args ca = {
		.ca_name = "create", .ca_opts = opts, .ca_usage = create_usage,
		.ca_noperands = 2, .ca_operands = "IMAGE and SIZE",
	};
	const char *image, *arg;
	char **operands;
	uint64_t size;
	int fd, error, rc;

	if (!cli_parse_args(&ca, argc, argv, &operands, &rc))
		return rc;
	image = operands[0];
	arg = operands[1];
	error = cli_parse_size(arg, &size);
	if (error == ERANGE || (error == 0 && size > (uint64_t)INT64_MAX)) {
		cli_err("create: SIZE '%s' is too large (at most 8388607T; "
		    "most file systems allow far less)", arg);
		return 2;
	}
	if (error != 0) {
		cli_err("create: SIZE '%s' is not a size (e.g. 512M, 2G)",
		    arg);
		return 2;
	}
	/* librumpblk cannot register an empty file without an explicit
	 * size, so an empty image is a mistake, not a device. */
	if (size == 0) {
		cli_err("create: SIZE must not be 0");
		return 2;
	}
	fd = open(image, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	if (fd == -1 && errno == EEXIST) {
		cli_err("%s: already exists; create never overwrites a file",
		    image);
		return 1;
	}
	if (fd == -1) {
		cli_err("%s: %s", image, strerror(errno));
		return 1;
	}
	if (ftruncate(fd, (off_t)size) == -1) {
		error = errno;
		close(fd);
		unlink(image);
		cli_err("%s: cannot make it %" PRIu64 " bytes: %s",
		    image, size, strerror(error));
		return 1;
	}
	if (close(fd) == -1) {
		cli_err("%s: %s", image, strerror(errno));
		return 1;
	}
	return 0;
}
