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

/*
 * Random rules and log lines built from the languages' own tokens: no
 * crash, no overrun (ASan runs this), and every acceptance is a rule
 * that arms and lists.  Bounded: a fixed count from a fixed seed.
 */
static void
random_input(void **state)
{
	static const char *const tok[] = {
		"error", "corrupt", "lost", "misdirect", "stale", "torn",
		"delay", ",", ",", ",", "=", "op=", "read", "write", "/", "any",
		"range=", "-", "0", "1", "4K", "1M", "2G", "3T", "99999999999999",
		"p=", "0.5", "1e-3", "-", "ppm=", "nth=", "every=", "count=",
		"after=", "seed=", "0x", "id=", "x", "errno=", "EIO", "ENOSPC",
		"bits=", "shift=", "-8", "atom=", "512", "ms=", "1.5", " ",
		"{", "}", "\"", ":", "[", "]", "rule", "class", "offset",
		"length", "generation", "unit", "target", "torn_length",
	};
	struct rumpblk_config cfg;
	struct rumpblk *rb;
	char text[600], err[128];
	uint64_t x = 12345;
	size_t n, len, good = 0;
	FILE *f;

	(void)state;
	tl_config(&cfg);
	tl_eq(rumpblk_create(&cfg, &rb), 0);
	for (int i = 0; i < 20000; i++) {
		text[0] = '\0';
		len = 0;
		n = 1 + (x >> 60);
		for (size_t k = 0; k < n; k++) {
			x = x * 6364136223846793005ull + 1442695040888963407ull;
			const char *t = tok[(x >> 33) %
			    (sizeof(tok) / sizeof(tok[0]))];
			if (len + strlen(t) + 1 >= sizeof(text))
				break;
			memcpy(text + len, t, strlen(t) + 1);
			len += strlen(t);
		}
		if (rumpblk_fault_check(text, err, sizeof(err)) == 0) {
			good++;
			/* A stale range needs units; others arm as is. */
			if (rumpblk_fault_add(rb, text, NULL, 0, err,
			    sizeof(err)) != 0 && strstr(err, "armed already")
			    == NULL)
				tl_fail("'%s' checked but did not arm: %s\n",
				    text, err);
			rumpblk_fault_clear(rb);
		}
		/* The same text as a one-line fault log. */
		f = fmemopen(text, len, "r");
		if (f != NULL) {
			if (rumpblk_fault_replay(rb, f, err, sizeof(err)) == 0)
				rumpblk_fault_clear(rb);
			fclose(f);
		}
	}
	print_message("%zu of 20000 random rules were well-formed\n", good);
	tl_eq(good > 0, true);
	tl_eq(rumpblk_fault_list(rb, NULL, 0, &n), 0);
	tl_eq(n, 0);
	tl_eq(rumpblk_destroy(rb), 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(malformed),
		cmocka_unit_test(wellformed),
		cmocka_unit_test(random_input),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
