/*
 * test-fault-classes: every fault class does what DESIGN.md §9 says,
 * checked on the medium byte by byte (read from the host file, not
 * through rumpblk) and in the fault log; plus the triggers, selectors
 * and the arm/list/disarm calls.
 */
#include <pthread.h>
#include <time.h>

#include "faultlib.h"

#define MB (1u << 20)

static void
class_error(void **state)
{
	struct fl_env e;
	struct rumpblk_stats st;
	char buf[4096];
	size_t resid;
	int nio = 0, nspc = 0, error;

	(void)state;
	fl_open(&e, "error.img", MB, 7);
	fl_arm(&e, "error,op=write,range=4K-8K,errno=ENOSPC");
	memset(buf, 0xaa, sizeof(buf));
	tl_eq(fl_io(&e, RUMPBLK_B_WRITE, 4096, buf, 4096, &resid), ENOSPC);
	tl_eq(resid, 4096);
	tl_eq(fl_is_pattern(&e, 4096, 4096), true);	/* unchanged */
	/* Outside the range: written. */
	tl_eq(fl_io(&e, RUMPBLK_B_WRITE, 8192, buf, 4096, NULL), 0);
	fl_medium(&e, 8192, buf, 4096);
	tl_eq(fl_is_byte(buf, 4096, 0xaa), true);
	/* Overlap is enough to match. */
	tl_eq(fl_io(&e, RUMPBLK_B_WRITE, 0, buf, 8192 + 4096, NULL), ENOSPC);
	tl_eq(fl_io(&e, RUMPBLK_B_READ, 4096, buf, 4096, NULL), 0);
	tl_eq(fl_log_lines(&e), 2);
	tl_eq(strstr(fl_log(&e), "\"errno\":\"ENOSPC\"") != NULL, true);
	tl_eq(strstr(fl_log(&e), "\"class\":\"error\"") != NULL, true);

	/* An errno set: every firing picks one of the set. */
	tl_eq(rumpblk_fault_clear(e.rb), 0);
	fl_arm(&e, "error,op=read,errno=EIO/ENOSPC,seed=3");
	for (int i = 0; i < 64; i++) {
		error = fl_io(&e, RUMPBLK_B_READ, (uint64_t)i * 512, buf, 512,
		    NULL);
		if (error == EIO)
			nio++;
		else if (error == ENOSPC)
			nspc++;
		else
			tl_fail("read %d: error %d, want EIO or ENOSPC\n", i,
			    error);
		/* The log says which one, by name. */
		tl_eq(strstr(strrchr(fl_log(&e), '{'), error == EIO ?
		    "\"errno\":\"EIO\"" : "\"errno\":\"ENOSPC\"") != NULL,
		    true);
	}
	tl_eq(nio > 0 && nspc > 0, true);
	rumpblk_stats(e.rb, e.unit, &st);
	tl_eq(st.faults_class[RUMPBLK_FAULT_ERROR], 2 + 64);
	tl_eq(st.faults_injected, 2 + 64);
	tl_eq(st.io_errors, 2 + 64);
	fl_close(&e);
}

static void
class_lost(void **state)
{
	struct fl_env e;
	struct rumpblk_stats st;
	char buf[4096];
	size_t resid = 1;

	(void)state;
	fl_open(&e, "lost.img", MB, 7);
	fl_arm(&e, "lost,range=8K-12K");
	memset(buf, 0x5a, sizeof(buf));
	tl_eq(fl_io(&e, RUMPBLK_B_WRITE, 8192, buf, 4096, &resid), 0);
	tl_eq(resid, 0);				/* success */
	tl_eq(fl_is_pattern(&e, 8192, 4096), true);	/* old bytes */
	tl_eq(fl_log_int(&e, 0, "offset"), 8192);
	tl_eq(strstr(fl_log(&e), "\"class\":\"lost\"") != NULL, true);
	rumpblk_stats(e.rb, e.unit, &st);
	tl_eq(st.faults_class[RUMPBLK_FAULT_LOST], 1);
	tl_eq(st.io_errors, 0);
	fl_close(&e);
}

static void
class_misdirect(void **state)
{
	struct fl_env e;
	char buf[4096], m[4096];
	long long t;

	(void)state;
	fl_open(&e, "misdirect.img", MB, 7);
	/* An explicit shift: 16 sectors on. */
	fl_arm(&e, "misdirect,range=0-4K,shift=16,id=fixed");
	memset(buf, 0x3c, sizeof(buf));
	tl_eq(fl_io(&e, RUMPBLK_B_WRITE, 0, buf, 4096, NULL), 0);
	tl_eq(fl_is_pattern(&e, 0, 4096), true);	/* own place */
	fl_medium(&e, 16 * 512, m, 4096);
	tl_eq(fl_is_byte(m, 4096, 0x3c), true);		/* its target */
	tl_eq(fl_log_int(&e, 0, "target"), 16 * 512);
	/* A negative shift. */
	tl_eq(rumpblk_fault_del(e.rb, "fixed"), 0);
	fl_arm(&e, "misdirect,range=64K-68K,shift=-8");
	memset(buf, 0x3d, sizeof(buf));
	tl_eq(fl_io(&e, RUMPBLK_B_WRITE, 65536, buf, 4096, NULL), 0);
	tl_eq(fl_is_pattern(&e, 65536, 4096), true);
	fl_medium(&e, 65536 - 4096, m, 4096);
	tl_eq(fl_is_byte(m, 4096, 0x3d), true);

	/* The default: a seeded place inside the range, not its own. */
	tl_eq(rumpblk_fault_clear(e.rb), 0);
	fl_arm(&e, "misdirect,range=256K-512K");
	memset(buf, 0x3e, sizeof(buf));
	tl_eq(fl_io(&e, RUMPBLK_B_WRITE, 300 * 1024, buf, 4096, NULL), 0);
	tl_eq(fl_is_pattern(&e, 300 * 1024, 4096), true);
	t = fl_log_int(&e, 2, "target");
	tl_eq(t >= 256 * 1024 && t + 4096 <= 512 * 1024, true);
	tl_eq(t % 512, 0);
	tl_eq(t + 4096 <= 300 * 1024 || t >= 304 * 1024, true);
	fl_medium(&e, (uint64_t)t, m, 4096);
	tl_eq(fl_is_byte(m, 4096, 0x3e), true);
	/* Nothing else changed: the image is the pattern elsewhere. */
	tl_eq(fl_is_pattern(&e, 12 * 1024, 48 * 1024), true);
	tl_eq(fl_is_pattern(&e, 68 * 1024, (size_t)t - 68 * 1024), true);
	fl_close(&e);
}

static void
class_torn(void **state)
{
	struct fl_env e;
	char buf[8192], m[8192];
	long long cut;
	size_t resid;

	(void)state;
	fl_open(&e, "torn.img", MB, 7);
	fl_arm(&e, "torn,atom=1K,nth=1");
	memset(buf, 0x55, sizeof(buf));
	tl_eq(fl_io(&e, RUMPBLK_B_WRITE, 0, buf, 8192, &resid), 0);
	tl_eq(resid, 0);
	cut = fl_log_int(&e, 0, "torn_length");
	tl_eq(cut >= 0 && cut < 8192 && cut % 1024 == 0, true);
	fl_medium(&e, 0, m, 8192);
	tl_eq(fl_is_byte(m, (size_t)cut, 0x55), true);	/* the prefix */
	tl_eq(fl_is_pattern(&e, (uint64_t)cut, 8192 - (size_t)cut), true);

	/* With errno=: the error, and resid says what was kept. */
	tl_eq(rumpblk_fault_clear(e.rb), 0);
	fl_arm(&e, "torn,errno=EIO,range=64K-128K,seed=9");
	for (int i = 0; i < 4; i++) {
		uint64_t off = 65536 + (uint64_t)i * 8192;

		tl_eq(fl_io(&e, RUMPBLK_B_WRITE, off, buf, 8192, &resid),
		    EIO);
		cut = fl_log_int(&e, 1 + (size_t)i, "torn_length");
		tl_eq(cut % 512, 0);
		tl_eq(resid, 8192 - cut);
		fl_medium(&e, off, m, 8192);
		tl_eq(fl_is_byte(m, (size_t)cut, 0x55), true);
		tl_eq(fl_is_pattern(&e, off + (uint64_t)cut,
		    8192 - (size_t)cut), true);
	}
	fl_close(&e);
}

static void
class_stale(void **state)
{
	struct fl_env e;
	char buf[8192], m[4096];
	unsigned char want;

	(void)state;
	fl_open(&e, "stale.img", MB, 7);
	fl_arm(&e, "stale,range=0-64K");
	memset(buf, 0xcc, sizeof(buf));
	tl_eq(fl_io(&e, RUMPBLK_B_WRITE, 0, buf, 4096, NULL), 0);
	tl_eq(fl_io(&e, RUMPBLK_B_WRITE, 60 * 1024, buf, 8192, NULL), 0);
	/* The medium holds the new bytes... */
	fl_medium(&e, 0, m, 4096);
	tl_eq(fl_is_byte(m, 4096, 0xcc), true);
	/* ...the read returns the armed-time ones. */
	tl_eq(fl_io(&e, RUMPBLK_B_READ, 0, buf, 4096, NULL), 0);
	for (size_t i = 0; i < 4096; i++) {
		want = tl_pattern(i, 7);
		if ((unsigned char)buf[i] != want)
			tl_fail("stale byte %zu: %#x, want %#x\n", i,
			    (unsigned char)buf[i], want);
	}
	/* Straddling the range: stale inside, the medium outside. */
	tl_eq(fl_io(&e, RUMPBLK_B_READ, 60 * 1024, buf, 8192, NULL), 0);
	for (size_t i = 0; i < 4096; i++)
		tl_eq((unsigned char)buf[i], tl_pattern(60 * 1024 + i, 7));
	tl_eq(fl_is_byte(buf + 4096, 4096, 0xcc), true);
	tl_eq(strstr(fl_log(&e), "\"range\":[0,65536]") != NULL, true);
	fl_close(&e);
}

static int
popcount8(unsigned char c)
{
	return __builtin_popcount(c);
}

static void
class_corrupt(void **state)
{
	struct fl_env e;
	unsigned char buf[4096], m[4096];
	const char *p;
	int diff = 0;
	long long pos[8];

	(void)state;
	fl_open(&e, "corrupt.img", MB, 7);
	fl_arm(&e, "corrupt,bits=5,range=0-4K");
	tl_eq(fl_io(&e, RUMPBLK_B_READ, 0, buf, 4096, NULL), 0);
	fl_medium(&e, 0, m, 4096);
	tl_eq(fl_is_pattern(&e, 0, 4096), true);	/* medium unchanged */
	for (size_t i = 0; i < 4096; i++)
		diff += popcount8(buf[i] ^ m[i]);
	tl_eq(diff, 5);
	/* The log names exactly the flipped bits. */
	p = strstr(fl_log(&e), "\"bits\":[");
	tl_eq(p != NULL, true);
	tl_eq(sscanf(p, "\"bits\":[%lld,%lld,%lld,%lld,%lld]", &pos[0],
	    &pos[1], &pos[2], &pos[3], &pos[4]), 5);
	for (int i = 0; i < 5; i++) {
		tl_eq(((buf[pos[i] / 8] ^ m[pos[i] / 8]) >> (pos[i] % 8)) & 1,
		    1);
	}

	/* Flips land in the part of the request inside the range. */
	tl_eq(rumpblk_fault_clear(e.rb), 0);
	fl_arm(&e, "corrupt,bits=64,range=5K-6K");
	tl_eq(fl_io(&e, RUMPBLK_B_READ, 4096, buf, 4096, NULL), 0);
	fl_medium(&e, 4096, m, 4096);
	diff = 0;
	for (size_t i = 0; i < 4096; i++) {
		if (buf[i] != m[i] && (i < 1024 || i >= 2048))
			tl_fail("byte %zu flipped, outside the range\n", i);
		diff += popcount8(buf[i] ^ m[i]);
	}
	tl_eq(diff, 64);

	/* op=write: stored flipped, reported fine, caller's data intact. */
	tl_eq(rumpblk_fault_clear(e.rb), 0);
	fl_arm(&e, "corrupt,op=write,bits=3");
	memset(buf, 0, sizeof(buf));
	tl_eq(fl_io(&e, RUMPBLK_B_WRITE, 8192, buf, 4096, NULL), 0);
	tl_eq(fl_is_byte(buf, 4096, 0), true);
	fl_medium(&e, 8192, m, 4096);
	diff = 0;
	for (size_t i = 0; i < 4096; i++)
		diff += popcount8(m[i]);
	tl_eq(diff, 3);
	p = strstr(strrchr(fl_log(&e), '{'), "\"bits\":[");
	tl_eq(sscanf(p, "\"bits\":[%lld,%lld,%lld]", &pos[0], &pos[1],
	    &pos[2]), 3);
	for (int i = 0; i < 3; i++)
		tl_eq((m[pos[i] / 8] >> (pos[i] % 8)) & 1, 1);
	fl_close(&e);
}

struct waiter {
	pthread_mutex_t	lock;
	pthread_cond_t	cond;
	int		done;
};

static void
async_done(struct rumpblk_buf *bp)
{
	struct waiter *w = bp->b_private;

	pthread_mutex_lock(&w->lock);
	w->done++;
	pthread_cond_signal(&w->cond);
	pthread_mutex_unlock(&w->lock);
}

static void
class_delay(void **state)
{
	struct fl_env e;
	struct waiter w = { PTHREAD_MUTEX_INITIALIZER,
	    PTHREAD_COND_INITIALIZER, 0 };
	struct rumpblk_buf b[4];
	struct rumpblk_stats st;
	char buf[4][512];
	uint64_t t0;
	struct timespec ts;

	(void)state;
	fl_open(&e, "delay.img", MB, 7);
	fl_arm(&e, "delay,ms=20.5,op=read");
	clock_gettime(CLOCK_MONOTONIC, &ts);
	t0 = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
	for (int i = 0; i < 4; i++) {
		memset(&b[i], 0, sizeof(b[i]));
		b[i].b_flags = RUMPBLK_B_READ | RUMPBLK_B_ASYNC;
		b[i].b_blkno = i;
		b[i].b_bcount = 512;
		b[i].b_data = buf[i];
		b[i].b_iodone = async_done;
		b[i].b_private = &w;
		rumpblk_strategy(e.rb, &b[i]);
	}
	pthread_mutex_lock(&w.lock);
	while (w.done < 4)
		pthread_cond_wait(&w.cond, &w.lock);
	pthread_mutex_unlock(&w.lock);
	clock_gettime(CLOCK_MONOTONIC, &ts);
	/* A lower bound only: the delay is at least what was asked. */
	tl_eq((uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec -
	    t0 >= 20500000u, true);
	for (int i = 0; i < 4; i++) {
		tl_eq(b[i].b_error, 0);
		tl_eq((unsigned char)buf[i][0], tl_pattern((uint64_t)i * 512,
		    7));
	}
	tl_eq(strstr(fl_log(&e), "\"ms\":20.5") != NULL, true);
	rumpblk_stats(e.rb, e.unit, &st);
	tl_eq(st.faults_class[RUMPBLK_FAULT_DELAY], 4);
	/* A synchronous buffer with biowait, and a write that is not
	 * delayed. */
	tl_eq(fl_io(&e, RUMPBLK_B_READ, 0, buf[0], 512, NULL), 0);
	tl_eq(fl_io(&e, RUMPBLK_B_WRITE, 0, buf[0], 512, NULL), 0);
	rumpblk_stats(e.rb, e.unit, &st);
	tl_eq(st.faults_class[RUMPBLK_FAULT_DELAY], 5);
	fl_close(&e);
}

static uint64_t
firings(struct fl_env *e, const char *id)
{
	struct rumpblk_fault_info fi;

	tl_eq(rumpblk_fault_get(e->rb, id, &fi), 0);
	return fi.fi_firings;
}

static void
triggers(void **state)
{
	struct fl_env e;
	struct rumpblk_fault_info fi;
	char buf[512];
	int i, errs[12];

	(void)state;
	fl_open(&e, "trig.img", MB, 7);
	/* nth=3 after=2: only the 5th match. */
	fl_arm(&e, "error,op=read,after=2,nth=3,id=t");
	for (i = 0; i < 8; i++)
		errs[i] = fl_io(&e, RUMPBLK_B_READ, 0, buf, 512, NULL);
	for (i = 0; i < 8; i++)
		tl_eq(errs[i], i == 4 ? EIO : 0);
	tl_eq(rumpblk_fault_get(e.rb, "t", &fi), 0);
	tl_eq(fi.fi_matches, 8);
	tl_eq(fi.fi_firings, 1);
	tl_eq(fi.fi_class, RUMPBLK_FAULT_ERROR);
	tl_eq(fi.fi_seed, 42);
	tl_eq(strcmp(fi.fi_text, "error,op=read,after=2,nth=3,id=t"), 0);
	tl_eq(rumpblk_fault_del(e.rb, "t"), 0);

	/* every=3 count=2: the 3rd and 6th, not the 9th. */
	fl_arm(&e, "error,op=read,every=3,count=2,id=ev");
	for (i = 0; i < 12; i++)
		errs[i] = fl_io(&e, RUMPBLK_B_READ, 0, buf, 512, NULL);
	for (i = 0; i < 12; i++)
		tl_eq(errs[i], i == 2 || i == 5 ? EIO : 0);
	tl_eq(firings(&e, "ev"), 2);
	tl_eq(rumpblk_fault_del(e.rb, "ev"), 0);

	/* p=0 never, p=1 always, ppm in between (seeded, so exact). */
	fl_arm(&e, "error,op=read,p=0,id=never");
	for (i = 0; i < 10; i++)
		tl_eq(fl_io(&e, RUMPBLK_B_READ, 0, buf, 512, NULL), 0);
	tl_eq(firings(&e, "never"), 0);
	fl_arm(&e, "error,op=write,p=1,id=always");
	for (i = 0; i < 10; i++)
		tl_eq(fl_io(&e, RUMPBLK_B_WRITE, 0, buf, 512, NULL), EIO);
	tl_eq(firings(&e, "always"), 10);
	fl_close(&e);
}

static void
probability(void **state)
{
	struct fl_env e;
	char buf[512];
	int n = 0, again = 0, first[400];

	(void)state;
	fl_open(&e, "prob.img", MB, 7);
	fl_arm(&e, "error,op=read,p=0.25,seed=1234");
	for (int i = 0; i < 400; i++)
		if ((first[i] = fl_io(&e, RUMPBLK_B_READ, (uint64_t)i * 512,
		    buf, 512, NULL)) != 0)
			n++;
	/* Roughly a quarter (seeded: the same every run). */
	tl_eq(n > 60 && n < 140, true);
	/* A new instance, same seed and requests: the same failures. */
	fl_close(&e);
	fl_open(&e, "prob.img", MB, 7);
	fl_arm(&e, "error,op=read,p=0.25,seed=1234");
	for (int i = 0; i < 400; i++)
		if ((fl_io(&e, RUMPBLK_B_READ, (uint64_t)i * 512, buf, 512,
		    NULL) != 0) == (first[i] != 0))
			again++;
	tl_eq(again, 400);
	/* Generation: the same request again is a new draw. */
	tl_eq(fl_log_int(&e, 0, "generation"), 0);
	fl_close(&e);
}

static void
generations(void **state)
{
	struct fl_env e;
	char buf[8192];

	(void)state;
	fl_open(&e, "gen.img", MB, 7);
	fl_arm(&e, "delay,op=read,range=4K-8K");
	/* Same op and first sector: counted, whatever the length... */
	tl_eq(fl_io(&e, RUMPBLK_B_READ, 0, buf, 8192, NULL), 0);	/* fires */
	tl_eq(fl_io(&e, RUMPBLK_B_READ, 0, buf, 512, NULL), 0);	/* no */
	tl_eq(fl_io(&e, RUMPBLK_B_WRITE, 0, buf, 512, NULL), 0);	/* no */
	tl_eq(fl_io(&e, RUMPBLK_B_READ, 0, buf, 8192, NULL), 0);	/* fires */
	tl_eq(fl_log_lines(&e), 2);
	tl_eq(fl_log_int(&e, 0, "generation"), 0);
	tl_eq(fl_log_int(&e, 1, "generation"), 2);
	/* ...another first sector has its own count. */
	tl_eq(fl_io(&e, RUMPBLK_B_READ, 4096, buf, 512, NULL), 0);
	tl_eq(fl_log_int(&e, 2, "generation"), 0);
	tl_eq(fl_log_int(&e, 2, "offset"), 4096);
	fl_close(&e);

	/* Without rumpblk_fault_enable, a rule armed later counts from its
	 * arming; with it, from the enable. */
	for (int en = 0; en < 2; en++) {
		fl_open(&e, "gen.img", MB, 7);
		if (en)
			tl_eq(rumpblk_fault_enable(e.rb), 0);
		for (int i = 0; i < 3; i++)
			tl_eq(fl_io(&e, RUMPBLK_B_READ, 0, buf, 512, NULL), 0);
		fl_arm(&e, "delay,op=read");
		tl_eq(fl_io(&e, RUMPBLK_B_READ, 0, buf, 512, NULL), 0);
		tl_eq(fl_log_int(&e, 0, "generation"), en ? 3 : 0);
		fl_close(&e);
	}
}

static void
selectors(void **state)
{
	struct fl_env e;
	struct rumpblk_buf b;
	char *img2 = tl_image("sel2.img", MB, 9), buf[4096];
	int unit2;

	(void)state;
	fl_open(&e, "sel.img", MB, 7);
	fl_arm(&e, "error,unit=1,id=u1");
	/* Unit 1 registered after the rule is armed gets the layer too. */
	tl_eq(rumpblk_register(e.rb, img2, 0, RUMPBLK_SIZENOTSET, &unit2), 0);
	tl_eq(unit2, 1);
	tl_eq(fl_io(&e, RUMPBLK_B_READ, 0, buf, 512, NULL), 0);
	tl_eq(tl_io(e.rb, unit2, RUMPBLK_B_READ, 0, buf, 512, NULL), EIO);
	tl_eq(rumpblk_fault_clear(e.rb), 0);
	tl_eq(tl_io(e.rb, unit2, RUMPBLK_B_READ, 0, buf, 512, NULL), 0);

	/* op=flush: a flush buffer fails; reads and writes do not. */
	fl_arm(&e, "error,op=flush/trim,errno=EROFS,range=1M-2M");
	memset(&b, 0, sizeof(b));
	b.b_unit = e.unit;
	b.b_flags = RUMPBLK_B_FLUSH;
	rumpblk_strategy(e.rb, &b);
	tl_eq(rumpblk_biowait(&b), EROFS);	/* a flush has no range */
	tl_eq(fl_io(&e, RUMPBLK_B_WRITE, 0, buf, 512, NULL), 0);
	tl_eq(fl_io(&e, RUMPBLK_B_TRIM, 0, NULL, 4096, NULL), 0);
	tl_eq(rumpblk_fault_clear(e.rb), 0);
	fl_arm(&e, "error,op=trim,errno=EROFS");
	tl_eq(fl_io(&e, RUMPBLK_B_TRIM, 0, NULL, 4096, NULL), EROFS);
	fl_close(&e);
	unlink(img2);
	free(img2);
}

/*
 * The unlocked pre-filter (the union of the armed rules' ops and the end
 * of the furthest range) follows every arm, del and clear: a request it
 * lets through is decided as before, and it never hides a rule.
 */
static void
prefilter(void **state)
{
	struct fl_env e;
	char buf[512];

	(void)state;
	memset(buf, 0x5a, sizeof(buf));
	fl_open(&e, "pf.img", 4 * MB, 7);
	fl_arm(&e, "error,op=write,range=0-4K,id=a");
	tl_eq(fl_io(&e, RUMPBLK_B_READ, 2 * MB, buf, 512, NULL), 0);
	tl_eq(fl_io(&e, RUMPBLK_B_WRITE, 0, buf, 512, NULL), EIO);
	tl_eq(fl_io(&e, RUMPBLK_B_WRITE, 8192, buf, 512, NULL), 0);
	/* A second rule widens both the ops and the range. */
	fl_arm(&e, "error,op=read,range=2M-3M,id=b");
	tl_eq(fl_io(&e, RUMPBLK_B_READ, 2 * MB, buf, 512, NULL), EIO);
	tl_eq(fl_io(&e, RUMPBLK_B_READ, 3 * MB, buf, 512, NULL), 0);
	tl_eq(fl_io(&e, RUMPBLK_B_WRITE, 0, buf, 512, NULL), EIO);
	/* Removing one rule keeps the other's. */
	tl_eq(rumpblk_fault_del(e.rb, "a"), 0);
	tl_eq(fl_io(&e, RUMPBLK_B_WRITE, 0, buf, 512, NULL), 0);
	tl_eq(fl_io(&e, RUMPBLK_B_READ, 2 * MB + 512, buf, 512, NULL), EIO);
	tl_eq(rumpblk_fault_del(e.rb, "b"), 0);
	tl_eq(fl_io(&e, RUMPBLK_B_READ, 2 * MB, buf, 512, NULL), 0);
	/* After a clear, a rule further out than any before. */
	fl_arm(&e, "error,op=write,range=3M-4M,id=c");
	tl_eq(fl_io(&e, RUMPBLK_B_WRITE, 4 * MB - 512, buf, 512, NULL), EIO);
	tl_eq(rumpblk_fault_clear(e.rb), 0);
	tl_eq(fl_io(&e, RUMPBLK_B_WRITE, 4 * MB - 512, buf, 512, NULL), 0);
	fl_arm(&e, "error,id=d");
	tl_eq(fl_io(&e, RUMPBLK_B_READ, 4 * MB - 512, buf, 512, NULL), EIO);
	tl_eq(fl_io(&e, RUMPBLK_B_WRITE, 0, buf, 512, NULL), EIO);
	fl_close(&e);
}

static void
ids(void **state)
{
	struct fl_env e;
	struct rumpblk_fault_info info[4];
	char id[RUMPBLK_FAULT_IDMAX], err[256];
	size_t n;

	(void)state;
	fl_open(&e, "ids.img", MB, 7);
	tl_eq(rumpblk_fault_seed(e.rb), 42);
	tl_eq(rumpblk_fault_add(e.rb, "lost", id, sizeof(id), NULL, 0), 0);
	tl_eq(strcmp(id, "r1"), 0);
	tl_eq(rumpblk_fault_add(e.rb, "error,id=mine", id, sizeof(id), NULL,
	    0), 0);
	tl_eq(strcmp(id, "mine"), 0);
	tl_eq(rumpblk_fault_add(e.rb, "delay,ms=0", id, sizeof(id), NULL,
	    0), 0);
	tl_eq(strcmp(id, "r3"), 0);
	tl_eq(rumpblk_fault_add(e.rb, "error,id=mine", id, sizeof(id), err,
	    sizeof(err)), EEXIST);
	tl_eq(strstr(err, "mine") != NULL, true);
	tl_eq(rumpblk_fault_list(e.rb, info, 2, &n), 0);
	tl_eq(n, 3);
	tl_eq(strcmp(info[0].fi_id, "r1"), 0);
	tl_eq(strcmp(info[1].fi_id, "mine"), 0);
	tl_eq(rumpblk_fault_del(e.rb, "nosuch"), ENOENT);
	tl_eq(rumpblk_fault_del(e.rb, "mine"), 0);
	tl_eq(rumpblk_fault_list(e.rb, info, 4, &n), 0);
	tl_eq(n, 2);
	tl_eq(strcmp(info[1].fi_id, "r3"), 0);
	tl_eq(rumpblk_fault_set_seed(e.rb, 77), 0);
	tl_eq(rumpblk_fault_add(e.rb, "lost", id, sizeof(id), NULL, 0), 0);
	tl_eq(strcmp(id, "r4"), 0);
	tl_eq(rumpblk_fault_get(e.rb, "r4", &info[0]), 0);
	tl_eq(info[0].fi_seed, 77);
	tl_eq(rumpblk_fault_clear(e.rb), 0);
	tl_eq(rumpblk_fault_list(e.rb, NULL, 0, &n), 0);
	tl_eq(n, 0);
	fl_close(&e);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(class_error),
		cmocka_unit_test(class_lost),
		cmocka_unit_test(class_misdirect),
		cmocka_unit_test(class_torn),
		cmocka_unit_test(class_stale),
		cmocka_unit_test(class_corrupt),
		cmocka_unit_test(class_delay),
		cmocka_unit_test(triggers),
		cmocka_unit_test(probability),
		cmocka_unit_test(generations),
		cmocka_unit_test(selectors),
		cmocka_unit_test(prefilter),
		cmocka_unit_test(ids),
	};

	return tl_main(tests, NULL, NULL);
}
