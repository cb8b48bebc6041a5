/*
 * test-fault-determinism: the same seed and workload give the same set of
 * firings (compared as sorted fault logs) and byte-identical images with
 * 1, 2 and 8 submitting threads; another seed gives another set; and a
 * replay of a run's log, with no rules, writes the same log and image.
 *
 * The workload writes every 4 KiB block of the first MiB twice (so that
 * generations 0 and 1 both occur) and reads it back, each block from
 * one thread, the blocks dealt to threads round-robin and each thread
 * going through its blocks in a shuffled order.  The classes used do
 * not fail requests (corrupt, lost, misdirect with a shift into the
 * second MiB, which the workload never writes itself), so the final image
 * depends only on which requests fire, not on timing.
 */
#include <pthread.h>

#include "faultlib.h"

#define IMGSIZE	(2u << 20)
#define BLK	4096u
#define NBLK	((IMGSIZE / 2) / BLK)

static const char *const rules[] = {
	"corrupt,op=write,range=0-1M,p=0.08,bits=2,id=cw",
	"lost,range=0-1M,p=0.08,id=lw",
	"misdirect,range=0-1M,shift=2048,p=0.08,id=mw",
	"corrupt,op=read,p=0.1,bits=3,id=cr",
};

struct worker {
	struct rumpblk	*rb;
	int		unit;
	unsigned	t, nthreads;
	int		errors;
};

static void *
work(void *arg)
{
	struct worker *w = arg;
	unsigned blocks[NBLK], n = 0, i, j, tmp;
	unsigned char buf[BLK];
	uint64_t x = 0x1234567 + w->t * 7919 + w->nthreads;

	for (i = w->t; i < NBLK; i += w->nthreads)
		blocks[n++] = i;
	/* Fisher-Yates with a small LCG: a different order per run shape. */
	for (i = n; i > 1; i--) {
		x = x * 6364136223846793005ull + 1442695040888963407ull;
		j = (unsigned)(x >> 33) % i;
		tmp = blocks[i - 1];
		blocks[i - 1] = blocks[j];
		blocks[j] = tmp;
	}
	for (i = 0; i < n; i++) {
		for (unsigned pass = 0; pass < 2; pass++) {
			for (j = 0; j < BLK; j++)
				buf[j] = (unsigned char)(blocks[i] * 31 +
				    pass * 101 + j);
			if (tl_io(w->rb, w->unit, RUMPBLK_B_WRITE,
			    (int64_t)blocks[i] * (BLK / 512), buf, BLK,
			    NULL) != 0)
				w->errors++;
		}
		if (tl_io(w->rb, w->unit, RUMPBLK_B_READ,
		    (int64_t)blocks[i] * (BLK / 512), buf, BLK, NULL) != 0)
			w->errors++;
	}
	return NULL;
}

static int
cmp_line(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The log's lines, sorted, as one string. */
static char *
sorted(const char *log)
{
	char *copy = strdup(log), **lines = NULL, *p, *save, *out;
	size_t n = 0, len = 0;

	for (p = strtok_r(copy, "\n", &save); p != NULL;
	    p = strtok_r(NULL, "\n", &save)) {
		lines = realloc(lines, (n + 1) * sizeof(*lines));
		lines[n++] = p;
		len += strlen(p) + 1;
	}
	qsort(lines, n, sizeof(*lines), cmp_line);
	out = calloc(1, len + 1);
	for (size_t i = 0; i < n; i++) {
		strcat(out, lines[i]);
		strcat(out, "\n");
	}
	free(lines);
	free(copy);
	return out;
}

struct result {
	char		*log;		/* sorted */
	char		*raw;		/* as written */
	unsigned char	*image;
};

static void
run(unsigned nthreads, uint64_t seed, const char *replay,
    struct result *res)
{
	struct fl_env e;
	struct worker w[8];
	pthread_t tid[8];
	char err[256] = "";
	FILE *f;
	unsigned i;

	fl_open(&e, "det.img", IMGSIZE, 5);
	if (replay == NULL) {
		tl_eq(rumpblk_fault_set_seed(e.rb, seed), 0);
		for (i = 0; i < sizeof(rules) / sizeof(rules[0]); i++)
			fl_arm(&e, rules[i]);
	} else {
		f = fmemopen((void *)replay, strlen(replay), "r");
		assert(f != NULL);
		if (rumpblk_fault_replay(e.rb, f, err, sizeof(err)) != 0)
			tl_fail("replay: %s\n", err);
		fclose(f);
	}
	for (i = 0; i < nthreads; i++) {
		w[i] = (struct worker){ e.rb, e.unit, i, nthreads, 0 };
		assert(pthread_create(&tid[i], NULL, work, &w[i]) == 0);
	}
	for (i = 0; i < nthreads; i++) {
		pthread_join(tid[i], NULL);
		tl_eq(w[i].errors, 0);
	}
	res->raw = strdup(fl_log(&e));
	res->log = sorted(res->raw);
	res->image = malloc(IMGSIZE);
	/* Durable and complete: read the medium after destroy. */
	tl_eq(rumpblk_destroy(e.rb), 0);
	{
		int fd = open(e.img, O_RDONLY);

		assert(pread(fd, res->image, IMGSIZE, 0) == IMGSIZE);
		close(fd);
	}
	fclose(e.log);
	free(e.logbuf);
	unlink(e.img);
	free(e.img);
}

static void
result_free(struct result *r)
{
	free(r->log);
	free(r->raw);
	free(r->image);
}

static void
threads_and_seeds(void **state)
{
	struct result r1, r2, r8, other, rp;

	(void)state;
	run(1, 42, NULL, &r1);
	/* Every class fired, and generations 0 and 1 both occur. */
	tl_eq(strstr(r1.log, "\"class\":\"lost\"") != NULL, true);
	tl_eq(strstr(r1.log, "\"class\":\"misdirect\"") != NULL, true);
	tl_eq(strstr(r1.log, "\"op\":\"write\",\"unit\":0") != NULL, true);
	tl_eq(strstr(r1.log, "\"class\":\"corrupt\",\"op\":\"read\"") != NULL,
	    true);
	tl_eq(strstr(r1.log, "\"generation\":1") != NULL, true);

	run(2, 42, NULL, &r2);
	run(8, 42, NULL, &r8);
	if (strcmp(r1.log, r2.log) != 0 || strcmp(r1.log, r8.log) != 0)
		tl_fail("fault logs differ between 1, 2 and 8 threads\n");
	tl_eq(memcmp(r1.image, r2.image, IMGSIZE), 0);
	tl_eq(memcmp(r1.image, r8.image, IMGSIZE), 0);

	run(2, 43, NULL, &other);
	if (strcmp(r1.log, other.log) == 0)
		tl_fail("seeds 42 and 43 gave the same firings\n");

	/* Replay: only the log, no rules; the same log and image. */
	run(8, 0, r1.raw, &rp);
	if (strcmp(r1.log, rp.log) != 0)
		tl_fail("the replay wrote another log:\n%s\n--- vs ---\n%s\n",
		    rp.log, r1.log);
	tl_eq(memcmp(r1.image, rp.image, IMGSIZE), 0);
	result_free(&r1);
	result_free(&r2);
	result_free(&r8);
	result_free(&other);
	result_free(&rp);
}

/*
 * Every class, one thread: rules with p= over a mixed workload, then a
 * replay of the log; the same log, the same image, the same errors.
 */
static void
replay_all_classes(void **state)
{
	static const char *const all[] = {
		"error,op=write,p=0.05,errno=EIO/ENOSPC",
		"error,op=flush,p=0.3",
		"corrupt,op=read/write,p=0.05,bits=7",
		"lost,p=0.05",
		"misdirect,p=0.05,range=1M-2M",
		"stale,range=0-256K,p=0.3",
		"torn,p=0.05,atom=1K",
		"torn,p=0.05,errno=EIO,id=tornerr",
		"delay,ms=0.01,p=0.05",
	};
	char *logs[2], err[256] = "";
	unsigned char *img[2], buf[8192];
	int errs[2][600];
	struct fl_env e;
	uint64_t x;
	FILE *f;

	(void)state;
	for (int run = 0; run < 2; run++) {
		fl_open(&e, "rall.img", IMGSIZE, 5);
		if (run == 0) {
			for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
				fl_arm(&e, all[i]);
		} else {
			f = fmemopen(logs[0], strlen(logs[0]), "r");
			if (rumpblk_fault_replay(e.rb, f, err, sizeof(err)) != 0)
				tl_fail("replay: %s\n", err);
			fclose(f);
		}
		x = 99;
		for (int i = 0; i < 600; i++) {
			int op;
			uint64_t off;
			size_t len;

			x = x * 6364136223846793005ull + 1442695040888963407ull;
			off = (x >> 33) % 512 * 4096;
			len = (x >> 20) % 2 ? 8192 : 4096;
			op = (x >> 60) % 3 == 0 ? RUMPBLK_B_READ :
			    RUMPBLK_B_WRITE;
			if ((x >> 50) % 29 == 0) {
				op = RUMPBLK_B_FLUSH;
				off = 0;
				len = 0;
			}
			memset(buf, (int)(x >> 40), sizeof(buf));
			errs[run][i] = fl_io(&e, op, off, len ? buf : NULL,
			    len, NULL);
		}
		logs[run] = strdup(fl_log(&e));
		tl_eq(rumpblk_destroy(e.rb), 0);
		img[run] = malloc(IMGSIZE);
		{
			int fd = open(e.img, O_RDONLY);

			assert(pread(fd, img[run], IMGSIZE, 0) == IMGSIZE);
			close(fd);
		}
		fclose(e.log);
		free(e.logbuf);
		unlink(e.img);
		free(e.img);
	}
	/* Every class of this workload (power-cut, which needs a write
	 * cache, replays in test-cache-powercut). */
	for (int c = 1; c <= RUMPBLK_FAULT_DELAY; c++) {
		char pat[64];
		static const char *const names[] = { "", "error", "corrupt",
		    "lost", "misdirect", "stale", "torn", "delay" };

		snprintf(pat, sizeof(pat), "\"class\":\"%s\"", names[c]);
		if (strstr(logs[0], pat) == NULL)
			tl_fail("no %s firing in the workload\n", names[c]);
	}
	/* One thread: the logs are equal line for line, unsorted. */
	if (strcmp(logs[0], logs[1]) != 0)
		tl_fail("replay log differs:\n%s\n--- vs ---\n%s\n", logs[1],
		    logs[0]);
	tl_eq(memcmp(errs[0], errs[1], sizeof(errs[0])), 0);
	tl_eq(memcmp(img[0], img[1], IMGSIZE), 0);
	for (int run = 0; run < 2; run++) {
		free(logs[run]);
		free(img[run]);
	}
}

static void
replay_errors(void **state)
{
	struct fl_env e;
	char err[256];
	FILE *f;
	static const char *const bad[] = {
		"not json\n",
		"{\"rule\":\"r1\",\"class\":\"lost\"}\n",
		"{\"rule\":\"r1\",\"class\":\"boom\",\"op\":\"write\",\"unit\":0,"
		    "\"offset\":0,\"length\":512,\"generation\":0}\n",
		"{\"rule\":\"r1\",\"class\":\"corrupt\",\"op\":\"read\","
		    "\"unit\":0,\"offset\":0,\"length\":512,\"generation\":0,"
		    "\"bits\":[4096]}\n",
	};

	(void)state;
	fl_open(&e, "rperr.img", IMGSIZE, 5);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		f = fmemopen((void *)bad[i], strlen(bad[i]), "r");
		err[0] = '\0';
		tl_eq(rumpblk_fault_replay(e.rb, f, err, sizeof(err)), EINVAL);
		tl_eq(strstr(err, "fault log line 1") != NULL, true);
		fclose(f);
	}
	/* Rules armed: no replay; a replay loaded: no rules. */
	fl_arm(&e, "lost");
	f = fmemopen((void *)"\n", 1, "r");
	tl_eq(rumpblk_fault_replay(e.rb, f, err, sizeof(err)), EBUSY);
	fclose(f);
	tl_eq(rumpblk_fault_clear(e.rb), 0);
	f = fmemopen((void *)"\n", 1, "r");
	tl_eq(rumpblk_fault_replay(e.rb, f, err, sizeof(err)), 0);
	fclose(f);
	tl_eq(rumpblk_fault_add(e.rb, "lost", NULL, 0, err, sizeof(err)),
	    EBUSY);
	fl_close(&e);
}

/*
 * Count rules (nth, every) with fixed details and no log count no
 * generations (layer.c): the same requests fail as with a log, and with
 * a log the generation it records is the request's count.
 */
static void
count_rules_log_or_not(void **state)
{
	struct fl_env e[2];
	char buf[512];
	int got[2][64];

	(void)state;
	for (int run = 0; run < 2; run++) {
		fl_open(&e[run], run ? "cnt1.img" : "cnt0.img", IMGSIZE, 9);
		if (run == 1)	/* no log: generations are never counted */
			tl_eq(rumpblk_fault_log(e[run].rb, NULL), 0);
		fl_arm(&e[run], "error,op=read,nth=7,errno=ENOSPC");
		fl_arm(&e[run], "lost,every=5");
		/* Four sectors in turn: read 7 is the second of sector 2. */
		for (int i = 0; i < 64; i++) {
			memset(buf, i, sizeof(buf));
			got[run][i] = fl_io(&e[run], i % 2 ? RUMPBLK_B_WRITE :
			    RUMPBLK_B_READ, (uint64_t)(i / 2 % 4) * 512, buf,
			    sizeof(buf), NULL);
		}
	}
	for (int i = 0; i < 64; i++)
		tl_eq(got[0][i], got[1][i]);
	tl_eq(got[0][12], ENOSPC);	/* the 7th read */
	/* Logged: the read's generation, then every 5th write's. */
	tl_eq(fl_log_lines(&e[0]), 1 + 32 / 5);
	tl_eq(strstr(fl_log(&e[0]), "\"class\":\"error\"") != NULL, true);
	/* Record 0: the 5th write (sector 0, its 2nd); 1: the 7th read. */
	tl_eq(fl_log_int(&e[0], 0, "offset"), 0);
	tl_eq(fl_log_int(&e[0], 0, "generation"), 1);
	tl_eq(fl_log_int(&e[0], 1, "offset"), 1024);
	tl_eq(fl_log_int(&e[0], 1, "generation"), 1);
	tl_eq(fl_log_lines(&e[1]), 0);
	fl_close(&e[0]);
	fl_close(&e[1]);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(threads_and_seeds),
		cmocka_unit_test(replay_all_classes),
		cmocka_unit_test(replay_errors),
		cmocka_unit_test(count_rules_log_or_not),
	};

	return tl_main(tests, NULL, NULL);
}
