/*
 * What the fuzz targets' setups share: dying with a reason, and an
 * instance with one unit on a small scratch image.
 */
#ifndef RUMPBLK_FUZZ_UTIL_H
#define RUMPBLK_FUZZ_UTIL_H

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <rumpblk/rumpblk.h>

/* "TARGET: what: why", then abort (a setup that fails is a crash). */
static inline __attribute__((noreturn)) void
fuzz_die(const char *what, int error)
{
	fprintf(stderr, "%s: %s: %s\n", program_invocation_short_name, what,
	    strerror(error));
	abort();
}

/*
 * An instance (no random-seed message) with one unit on a scratch image
 * of size bytes in TMPDIR, unlinked once registered; the unit in *unitp.
 */
static inline struct rumpblk *
fuzz_instance(uint64_t size, int *unitp)
{
	struct rumpblk_config cfg;
	struct rumpblk *rb;
	const char *dir = getenv("TMPDIR");
	char path[4096];
	int fd, error;

	snprintf(path, sizeof(path), "%s/%s.XXXXXX",
	    dir != NULL ? dir : "/tmp", program_invocation_short_name);
	if ((fd = mkstemp(path)) == -1)
		fuzz_die("mkstemp", errno);
	if (ftruncate(fd, (off_t)size) == -1)
		fuzz_die("ftruncate", errno);
	close(fd);
	rumpblk_config_init(&cfg);
	cfg.fail_seed_set = true;	/* no random seed message */
	if ((error = rumpblk_create(&cfg, &rb)) != 0)
		fuzz_die("rumpblk_create", error);
	if ((error = rumpblk_register(rb, path, 0, RUMPBLK_SIZENOTSET,
	    unitp)) != 0)
		fuzz_die(path, error);
	unlink(path);
	return rb;
}

#endif /* RUMPBLK_FUZZ_UTIL_H */
