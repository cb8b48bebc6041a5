/*
 * The rumpblk(1) command: shared helpers and one entry point per
 * subcommand.  The command uses the library's public API only.
 */
#ifndef RUMPBLK_CLI_H
#define RUMPBLK_CLI_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include <rumpblk/rumpblk.h>

extern const char *progname;

/* Print "rumpblk: " and the message to stderr. */
void	cli_err(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/*
 * Parse a size: decimal digits with an optional K, M, G or T suffix
 * (powers of 1024; "KiB"/"k" spellings too).  0 or EINVAL/ERANGE.
 */
int	cli_parse_size(const char *, uint64_t *);
/* Parse an unsigned number in [min, max]; 0 or EINVAL/ERANGE. */
int	cli_parse_uint(const char *, uint64_t min, uint64_t max, uint64_t *);

/* Write a JSON string literal (quotes and escapes) to f. */
void	cli_json_string(FILE *, const char *);
/* "regular file", "block device", "character device" */
const char *cli_ftype_name(enum rumpblk_ftype);

/*
 * After rumpblk_register(image, offset, size) failed with error under
 * cfg: if the cause is that the host refuses the backend cfg asked for
 * (O_DIRECT, io_uring) -- checked by registering with pio instead --
 * print a message that says so and return true.
 */
bool	cli_backend_refused(const char *image, const struct rumpblk_config *,
	    uint64_t offset, uint64_t size, int error);

struct cli_cmd {
	const char	*name;
	int		(*main)(int argc, char **argv);
	const char	*summary;
};

int	cmd_info(int, char **);
int	cmd_create(int, char **);
int	cmd_serve(int, char **);

#endif
