/*
 * test-fault-parse: every malformed rule is refused with EINVAL and a
 * message that quotes the rule and names the part at fault, and nothing
 * is armed; every documented form is accepted.
 */
#include "faultlib.h"

static const struct {
	const char	*rule;
	const char	*part;		/* must appear in the message */
} bad[] = {
	{ "", "empty rule" },
	{ "explode", "unknown class 'explode'" },
	{ "seed", "unknown class 'seed'" },
	{ "error,colour=red", "unknown key 'colour'" },
	{ "error,op=rd", "unknown operation 'rd'" },
	{ "error,op=", "has no value" },
	{ "error,op", "'op' is not KEY=VALUE" },
	{ "error,,op=read", "empty field" },
	{ "error,", "empty field" },
	{ "error,range=2M-1M", "inverted" },
	{ "error,range=1M-1M", "empty" },
	{ "error,range=1M", "want START-END" },
	{ "error,range=x-1M", "bad start 'x'" },
	{ "error,range=0-1Q", "bad end '1Q'" },
	{ "error,p=1.5", "outside 0-1" },
	{ "error,p=-0.1", "outside 0-1" },
	{ "error,p=abc", "bad probability 'abc'" },
	{ "error,p=nan", "bad probability 'nan'" },
	{ "error,ppm=1000001", "ppm" },
	{ "error,p=0.1,nth=3", "conflicting triggers" },
	{ "error,every=2,ppm=5", "conflicting triggers" },
	{ "error,nth=0", "nth" },
	{ "error,every=x", "every" },
	{ "error,count=0", "count" },
	{ "error,after=-1", "after" },
	{ "error,after=12abc", "after" },
	{ "error,unit=one", "unit" },
	{ "error,seed=0x", "seed" },
	{ "error,errno=EWHAT", "unknown value 'EWHAT'" },
	{ "error,errno=EIO/", "errno" },
	{ "error,id=has space", "id" },
	{ "error,id=aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "id" },
	{ "error,bits=3", "key 'bits' does not apply to class error" },
	{ "error,op=read,op=write", "given twice" },
	{ "corrupt,op=flush", "class corrupt does not apply to flush" },
	{ "corrupt,bits=0", "bits" },
	{ "corrupt,bits=100000", "bits" },
	{ "lost,op=read", "class lost does not apply to read" },
	{ "lost,errno=EIO", "key 'errno' does not apply to class lost" },
	{ "misdirect,shift=0", "shift" },
	{ "misdirect,shift=4k", "shift" },
	{ "stale", "needs a range" },
	{ "stale,range=0-2G", "over 1G" },
	{ "stale,op=write,range=0-1M", "class stale does not apply to write" },
	{ "torn,atom=100", "atom" },
	{ "torn,atom=0", "atom" },
	{ "delay", NULL },		/* fine: ms defaults to 0 */
	{ "delay,ms=-1", "ms" },
	{ "delay,ms=fast", "ms" },
	{ "delay,ms=inf", "ms" },
};

static const char *const good[] = {
	"error",
	"error,op=write,range=1M-2M,p=0.01,errno=EIO,seed=7",
	"error,op=read/write/flush/trim/zero,errno=EIO/ENOSPC,id=x_1.y-z",
	"error,op=any,ppm=250,after=3,count=4,unit=0",
	"corrupt,bits=8,op=read/write,every=10",
	"lost,nth=2,range=0-1K",
	"misdirect,shift=-16,range=4KiB-8KiB",
	"stale,range=0-1G",
	"torn,atom=4K,errno=EIO",
	"delay,ms=0.25,op=flush",
	"error,seed=0xdeadbeef,p=1",
};

static void
malformed(void **state)
{
	struct rumpblk_config cfg;
	struct rumpblk *rb;
	char err[512], id[RUMPBLK_FAULT_IDMAX];
	size_t n, i;
	int error;

	(void)state;
	tl_config(&cfg);
	tl_eq(rumpblk_create(&cfg, &rb), 0);
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err[0] = '\0';
		error = rumpblk_fault_add(rb, bad[i].rule, id, sizeof(id), err,
		    sizeof(err));
		if (bad[i].part == NULL) {
			if (error != 0)
				tl_fail("'%s' refused: %s\n", bad[i].rule, err);
			tl_eq(rumpblk_fault_clear(rb), 0);
			continue;
		}
		if (error != EINVAL)
			tl_fail("'%s': error %d, want EINVAL\n", bad[i].rule,
			    error);
		if (strstr(err, bad[i].part) == NULL)
			tl_fail("'%s': message '%s' does not name '%s'\n",
			    bad[i].rule, err, bad[i].part);
		/* The message quotes the rule (long ones are elided). */
		if (strncmp(err, "rule '", 6) != 0 ||
		    strstr(err, bad[i].rule) == NULL)
			tl_fail("'%s': message '%s' does not quote it\n",
			    bad[i].rule, err);
		tl_eq(rumpblk_fault_check(bad[i].rule, NULL, 0), EINVAL);
		tl_eq(rumpblk_fault_list(rb, NULL, 0, &n), 0);
		if (n != 0)
			tl_fail("'%s' armed %zu rules\n", bad[i].rule, n);
	}
	/* Too long for a rule. */
	{
		char big[RUMPBLK_FAULT_TEXTMAX + 10];

		memset(big, 'a', sizeof(big) - 1);
		big[sizeof(big) - 1] = '\0';
		tl_eq(rumpblk_fault_add(rb, big, NULL, 0, err, sizeof(err)),
		    EINVAL);
		tl_eq(strstr(err, "longer than") != NULL, true);
	}
	tl_eq(rumpblk_fault_add(rb, NULL, NULL, 0, err, sizeof(err)),
	    EINVAL);
	/* A tiny errbuf is cut, not overrun. */
	memset(err, 'x', sizeof(err));
	tl_eq(rumpblk_fault_add(rb, "nope", NULL, 0, err, 4), EINVAL);
	tl_eq(err[3], '\0');
	tl_eq(err[4], 'x');
	tl_eq(rumpblk_destroy(rb), 0);
}

static void
wellformed(void **state)
{
	struct rumpblk_config cfg;
	struct rumpblk *rb;
	char err[512];
	size_t n, i;

	(void)state;
	tl_config(&cfg);
	tl_eq(rumpblk_create(&cfg, &rb), 0);
	for (i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		err[0] = '\0';
		if (rumpblk_fault_add(rb, good[i], NULL, 0, err,
		    sizeof(err)) != 0)
			tl_fail("'%s' refused: %s\n", good[i], err);
	}
	tl_eq(rumpblk_fault_list(rb, NULL, 0, &n), 0);
	tl_eq(n, sizeof(good) / sizeof(good[0]));
	tl_eq(rumpblk_destroy(rb), 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(malformed),
		cmocka_unit_test(wellformed),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
