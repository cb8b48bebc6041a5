/*
 * test-config-env: rumpblk_config_init() defaults, and
 * rumpblk_config_from_env() with every RUMP_BLK* variable, valid and
 * invalid, checking the config and the seed driver's message lines
 * word for word; rumpblk_create(NULL) reads the environment and
 * rumpblk_create() refuses configs out of range.  Backend names and the
 * version string.
 */
#include "testlib.h"

static const char *const vars[] = {
	"RUMP_BLKFAIL", "RUMP_BLKFAIL_SEED", "RUMP_BLKWINSIZE",
	"RUMP_BLKWINCOUNT", "RUMP_BLKSECTSHIFT", "RUMP_BLKBACKEND",
};

static void
clear_env(void)
{
	size_t i;

	for (i = 0; i < sizeof(vars) / sizeof(vars[0]); i++)
		unsetenv(vars[i]);
}

/* Apply the environment to fresh defaults; messages into *msgs (free). */
static int
from_env(struct rumpblk_config *cfg, char **msgs)
{
	size_t len;
	FILE *f;
	int rc;

	rumpblk_config_init(cfg);
	f = open_memstream(msgs, &len);
	assert(f != NULL);
	rc = rumpblk_config_from_env(cfg, f);
	assert(fclose(f) == 0);
	return rc;
}

/* One variable, the messages expected, and the check of the config. */
static void
one(const char *var, const char *val, const char *want)
{
	struct rumpblk_config cfg;
	char *msgs;

	clear_env();
	setenv(var, val, 1);
	tl_eq(from_env(&cfg, &msgs), 0);
	if (strcmp(msgs, want) != 0)
		tl_fail("%s=%s: messages\n  got:  \"%s\"\n  want: \"%s\"\n",
		    var, val, msgs, want);
	free(msgs);
}

static void
defaults(void **state)
{
	struct rumpblk_config cfg;

	(void)state;
	memset(&cfg, 0xa5, sizeof(cfg));
	rumpblk_config_init(&cfg);
	tl_eq(cfg.winsize, 1 << 20);
	tl_eq(cfg.wincount, 16);
	tl_eq(cfg.sectshift, 9);
	tl_eq(cfg.fail, 0);
	tl_eq(cfg.fail_seed_set, false);
	tl_eq(cfg.max_units, 16);
	tl_eq(cfg.backend, RUMPBLK_BACKEND_AUTO);
	tl_eq(cfg.workers, 0);
	tl_eq(cfg.lat_sample, 0);
	tl_eq(cfg.sigbus_eio, false);
}

static void
no_variables(void **state)
{
	struct rumpblk_config cfg, def;
	char *msgs;

	(void)state;
	clear_env();
	tl_eq(from_env(&cfg, &msgs), 0);
	tl_eq(strlen(msgs), 0);
	free(msgs);
	rumpblk_config_init(&def);
	tl_eq(memcmp(&cfg, &def, sizeof(cfg)), 0);
	/* msgs may be NULL. */
	setenv("RUMP_BLKWINCOUNT", "0", 1);
	tl_eq(rumpblk_config_from_env(&cfg, NULL), 0);
	tl_eq(cfg.wincount, 16);
	clear_env();
}

static void
winsize(void **state)
{
	struct rumpblk_config cfg;
	char *m;

	(void)state;
	one("RUMP_BLKWINSIZE", "65536",
	    "rumpblk: using 65536 for memwinsize\n");
	tl_eq(from_env(&cfg, &m), 0);
	free(m);
	tl_eq(cfg.winsize, 65536);

	/* Not a power of two, zero: the default stays. */
	one("RUMP_BLKWINSIZE", "1000",
	    "rumpblk: invalid RUMP_BLKWINSIZE 1000, using 1048576 for "
	    "memwinsize\n");
	tl_eq(from_env(&cfg, &m), 0);
	free(m);
	tl_eq(cfg.winsize, 1 << 20);
	one("RUMP_BLKWINSIZE", "0",
	    "rumpblk: invalid RUMP_BLKWINSIZE 0, using 1048576 for "
	    "memwinsize\n");
	tl_eq(from_env(&cfg, &m), 0);
	free(m);
	tl_eq(cfg.winsize, 1 << 20);
	clear_env();
}

static void
wincount(void **state)
{
	struct rumpblk_config cfg;
	char *m;

	(void)state;
	one("RUMP_BLKWINCOUNT", "4", "rumpblk: using 4 for memwincount\n");
	tl_eq(from_env(&cfg, &m), 0);
	free(m);
	tl_eq(cfg.wincount, 4);
	one("RUMP_BLKWINCOUNT", "0",
	    "rumpblk: invalid RUMP_BLKWINCOUNT 0, using 16 for memwincount\n");
	tl_eq(from_env(&cfg, &m), 0);
	free(m);
	tl_eq(cfg.wincount, 16);
	clear_env();
}

static void
sectshift(void **state)
{
	struct rumpblk_config cfg;
	char *m;

	(void)state;
	one("RUMP_BLKSECTSHIFT", "12",
	    "rumpblk: using 12 for sector shift (size 4096)\n");
	tl_eq(from_env(&cfg, &m), 0);
	free(m);
	tl_eq(cfg.sectshift, 12);
	one("RUMP_BLKSECTSHIFT", "8",
	    "rumpblk: RUMP_BLKSECTSHIFT must be least 9 (now 8), using 9 "
	    "for sector shift (size 512)\n");
	tl_eq(from_env(&cfg, &m), 0);
	free(m);
	tl_eq(cfg.sectshift, 9);
	/* Ours: a sector larger than MAXPHYS could never move. */
	clear_env();
	setenv("RUMP_BLKSECTSHIFT", "17", 1);
	tl_eq(from_env(&cfg, &m), 0);
	tl_eq(cfg.sectshift, 9);
	tl_true(strstr(m, "RUMP_BLKSECTSHIFT") != NULL);
	tl_true(strstr(m, "17") != NULL);
	free(m);
	clear_env();
}

static void
fail_and_seed(void **state)
{
	struct rumpblk_config cfg;
	char *m;

	(void)state;
	clear_env();
	setenv("RUMP_BLKFAIL", "50", 1);
	setenv("RUMP_BLKFAIL_SEED", "1234", 1);
	tl_eq(from_env(&cfg, &m), 0);
	tl_eq(strcmp(m, "rumpblk: FAULT INJECTION ACTIVE! fail 50/10000. "
	    "seed 1234\n"), 0);
	free(m);
	tl_eq(cfg.fail, 50);
	tl_eq(cfg.fail_seed, 1234);
	tl_eq(cfg.fail_seed_set, true);

	/* Clamped to 10000, "fail everything". */
	setenv("RUMP_BLKFAIL", "20000", 1);
	tl_eq(from_env(&cfg, &m), 0);
	tl_eq(strcmp(m, "rumpblk: FAULT INJECTION ACTIVE! fail 10000/10000. "
	    "seed 1234\n"), 0);
	free(m);
	tl_eq(cfg.fail, 10000);

	/* The seed alone does nothing, as in the seed driver. */
	clear_env();
	setenv("RUMP_BLKFAIL_SEED", "1234", 1);
	tl_eq(from_env(&cfg, &m), 0);
	tl_eq(strlen(m), 0);
	free(m);
	tl_eq(cfg.fail, 0);
	tl_eq(cfg.fail_seed_set, false);
	clear_env();
}

static void
random_seed_printed(void **state)
{
	struct rumpblk_config cfg;
	char *m, want[128];
	uint32_t seeds[4];
	int i, differ = 0;

	(void)state;
	clear_env();
	setenv("RUMP_BLKFAIL", "7", 1);
	for (i = 0; i < 4; i++) {
		tl_eq(from_env(&cfg, &m), 0);
		tl_eq(cfg.fail, 7);
		tl_eq(cfg.fail_seed_set, true);
		snprintf(want, sizeof(want), "rumpblk: FAULT INJECTION ACTIVE! "
		    "fail 7/10000. seed %u\n", cfg.fail_seed);
		if (strcmp(m, want) != 0)
			tl_fail("got \"%s\", want \"%s\"\n", m, want);
		free(m);
		seeds[i] = cfg.fail_seed;
		if (i > 0 && seeds[i] != seeds[0])
			differ = 1;
	}
	/* Four 32-bit random seeds all equal: not random. */
	tl_true(differ);
	clear_env();
}

static void
backend_var(void **state)
{
	struct rumpblk_config cfg;
	char *m;

	(void)state;
	one("RUMP_BLKBACKEND", "pio", "rumpblk: using backend pio\n");
	tl_eq(from_env(&cfg, &m), 0);
	free(m);
	tl_eq(cfg.backend, RUMPBLK_BACKEND_PIO);
	one("RUMP_BLKBACKEND", "floppy",
	    "rumpblk: invalid RUMP_BLKBACKEND floppy, using backend auto\n");
	tl_eq(from_env(&cfg, &m), 0);
	free(m);
	tl_eq(cfg.backend, RUMPBLK_BACKEND_AUTO);
	clear_env();
}

static void
all_at_once(void **state)
{
	struct rumpblk_config cfg;
	char *m;

	(void)state;
	clear_env();
	setenv("RUMP_BLKFAIL", "3", 1);
	setenv("RUMP_BLKFAIL_SEED", "9", 1);
	setenv("RUMP_BLKWINSIZE", "131072", 1);
	setenv("RUMP_BLKWINCOUNT", "2", 1);
	setenv("RUMP_BLKSECTSHIFT", "10", 1);
	tl_eq(from_env(&cfg, &m), 0);
	/* The seed's order: fail, window size, window count, shift. */
	tl_eq(strcmp(m,
	    "rumpblk: FAULT INJECTION ACTIVE! fail 3/10000. seed 9\n"
	    "rumpblk: using 131072 for memwinsize\n"
	    "rumpblk: using 2 for memwincount\n"
	    "rumpblk: using 10 for sector shift (size 1024)\n"), 0);
	free(m);
	tl_eq(cfg.fail, 3);
	tl_eq(cfg.fail_seed, 9);
	tl_eq(cfg.winsize, 131072);
	tl_eq(cfg.wincount, 2);
	tl_eq(cfg.sectshift, 10);
	clear_env();
}

static void
create_null_reads_env(void **state)
{
	struct rumpblk_config cfg;
	struct rumpblk *rb;
	char *img = tl_image("env.img", 64 << 10, 3);
	unsigned secsize;
	int unit;

	(void)state;
	clear_env();
	setenv("RUMP_BLKSECTSHIFT", "12", 1);
	setenv("RUMP_BLKFAIL", "0", 1);
	setenv("RUMP_BLKFAIL_SEED", "99", 1);
	setenv("RUMP_BLKBACKEND", tl_backend_name(), 1);
	tl_eq(rumpblk_create(NULL, &rb), 0);
	rumpblk_get_config(rb, &cfg);
	tl_eq(cfg.sectshift, 12);
	tl_eq(cfg.fail_seed, 99);
	tl_eq(cfg.fail_seed_set, true);
	tl_eq(cfg.backend, tl_backend());
	tl_eq(cfg.winsize, 1 << 20);
	tl_eq(rumpblk_register(rb, img, 0, RUMPBLK_SIZENOTSET, &unit), 0);
	tl_eq(rumpblk_ioctl(rb, unit, RUMPBLK_DIOCGSECTORSIZE, &secsize), 0);
	tl_eq(secsize, 4096);
	tl_eq(rumpblk_destroy(rb), 0);
	clear_env();

	/* A non-NULL config is taken as it is: no environment. */
	setenv("RUMP_BLKSECTSHIFT", "12", 1);
	tl_config(&cfg);
	tl_eq(rumpblk_create(&cfg, &rb), 0);
	rumpblk_get_config(rb, &cfg);
	tl_eq(cfg.sectshift, 9);
	tl_eq(rumpblk_destroy(rb), 0);
	clear_env();
	free(img);
}

static void
create_checks_config(void **state)
{
	struct rumpblk_config cfg;
	struct rumpblk *rb = NULL;

	(void)state;
#define BAD(stmt) do {							\
	tl_config(&cfg);						\
	stmt;								\
	rb = NULL;							\
	if (rumpblk_create(&cfg, &rb) != EINVAL)			\
		tl_fail("create accepted %s\n", #stmt);			\
	tl_true(rb == NULL);						\
} while (0)
	BAD(cfg.winsize = 3);
	BAD(cfg.winsize = 0);
	BAD(cfg.wincount = 0);
	BAD(cfg.sectshift = 8);
	BAD(cfg.sectshift = 17);
	BAD(cfg.fail = 10001);
	BAD(cfg.backend = (enum rumpblk_backend)99);
	BAD(cfg.backend = RUMPBLK_BACKEND_NBD);	/* reported, not chosen */
	BAD(cfg.backend = RUMPBLK_BACKEND_RBD);
	BAD(cfg.max_units = 0);
#undef BAD

	/* fail without a seed: the instance picks one and says which. */
	tl_config(&cfg);
	cfg.fail = 1;
	tl_eq(rumpblk_create(&cfg, &rb), 0);
	rumpblk_get_config(rb, &cfg);
	tl_eq(cfg.fail, 1);
	tl_eq(cfg.fail_seed_set, true);
	tl_eq(rumpblk_destroy(rb), 0);
	tl_eq(rumpblk_destroy(NULL), 0);
}

static void
names_and_version(void **state)
{
	static const char *const names[] = { "auto", "mmap", "pio", "direct",
	    "uring" };
	enum rumpblk_backend b;
	char v[32];
	int i;

	(void)state;
	for (i = 0; i < 5; i++) {
		tl_eq(strcmp(rumpblk_backend_name((enum rumpblk_backend)i),
		    names[i]), 0);
		tl_eq(rumpblk_backend_parse(names[i], &b), 0);
		tl_eq(b, i);
	}
	tl_eq(RUMPBLK_BACKEND_AUTO, 0);
	/* The remote kinds have names (ui_backend) but are no choice. */
	tl_eq(strcmp(rumpblk_backend_name(RUMPBLK_BACKEND_NBD), "nbd"), 0);
	tl_eq(strcmp(rumpblk_backend_name(RUMPBLK_BACKEND_RBD), "rbd"), 0);
	tl_eq(rumpblk_backend_parse("nbd", &b), EINVAL);
	tl_eq(rumpblk_backend_parse("rbd", &b), EINVAL);
	tl_true(rumpblk_backend_name((enum rumpblk_backend)7) == NULL);
	tl_true(rumpblk_backend_name((enum rumpblk_backend)-1) == NULL);
	b = RUMPBLK_BACKEND_PIO;
	tl_eq(rumpblk_backend_parse("PIO", &b), EINVAL);
	tl_eq(rumpblk_backend_parse("", &b), EINVAL);
	tl_eq(rumpblk_backend_parse(NULL, &b), EINVAL);
	tl_eq(b, RUMPBLK_BACKEND_PIO);
	snprintf(v, sizeof(v), "%d.%d.%d", RUMPBLK_VERSION_MAJOR,
	    RUMPBLK_VERSION_MINOR, RUMPBLK_VERSION_MICRO);
	tl_eq(strcmp(rumpblk_version(), v), 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(defaults),
		cmocka_unit_test(no_variables),
		cmocka_unit_test(winsize),
		cmocka_unit_test(wincount),
		cmocka_unit_test(sectshift),
		cmocka_unit_test(fail_and_seed),
		cmocka_unit_test(random_seed_printed),
		cmocka_unit_test(backend_var),
		cmocka_unit_test(all_at_once),
		cmocka_unit_test(create_null_reads_env),
		cmocka_unit_test(create_checks_config),
		cmocka_unit_test(names_and_version),
	};

	return tl_main(tests, NULL, NULL);
}
