/*
 * rawio: the raw host loops that bench/inproc.sh compares rumpblk with.
 *
 *   rawio pread|mmap PATTERN BS THREADS SECONDS FILE
 *
 * PATTERN is randread, randwrite, seqread or seqwrite, chosen exactly as
 * `rumpblk bench` chooses offsets (xorshift per thread for random, a
 * stripe per thread for sequential), so both loops touch the same kind of
 * addresses.  pread: one pread/pwrite per request.  mmap: the whole file
 * mapped MAP_SHARED once, one memcpy per request.  Writes are buffered
 * (no sync), like rumpblk bench without --sync.  Prints one JSON object
 * with ops, seconds, iops and mib_per_s.
 */
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static bool use_mmap, rnd, wr;
static size_t bs;
static uint64_t nblocks;
static int fd;
static char *map;
static unsigned nthreads;
static atomic_bool stop;

struct th {
	pthread_t	thread;
	unsigned	id;
	uint64_t	ops;
};

static void *
run(void *arg)
{
	struct th *t = arg;
	uint64_t x = 0x9e3779b97f4a7c15ull * (t->id + 1) | 1, lo, n, pos = 0;
	uint64_t blk, ops = 0;
	char *buf = aligned_alloc(4096, (bs + 4095) / 4096 * 4096);

	if (buf == NULL)
		abort();
	memset(buf, (int)t->id + 1, bs);
	n = nblocks / nthreads;
	if (n == 0)
		n = 1;
	lo = (uint64_t)t->id * n % nblocks;
	if (lo + n > nblocks)
		n = nblocks - lo;
	while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
		if (rnd) {
			x ^= x << 13;
			x ^= x >> 7;
			x ^= x << 17;
			blk = x % nblocks;
		} else {
			blk = lo + pos;
			if (++pos == n)
				pos = 0;
		}
		if (use_mmap) {
			if (wr)
				memcpy(map + blk * bs, buf, bs);
			else
				memcpy(buf, map + blk * bs, bs);
		} else if (wr) {
			if (pwrite(fd, buf, bs, (off_t)(blk * bs)) !=
			    (ssize_t)bs)
				abort();
		} else if (pread(fd, buf, bs, (off_t)(blk * bs)) !=
		    (ssize_t)bs)
			abort();
		ops++;
	}
	t->ops = ops;
	free(buf);
	return NULL;
}

static uint64_t
now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

int
main(int argc, char **argv)
{
	struct th *th;
	struct stat sb;
	struct timespec ts;
	uint64_t t0, t1, ops = 0;
	double secs, el;
	unsigned i;

	if (argc != 7) {
		fprintf(stderr, "usage: rawio pread|mmap randread|randwrite|"
		    "seqread|seqwrite BS THREADS SECONDS FILE\n");
		return 2;
	}
	use_mmap = strcmp(argv[1], "mmap") == 0;
	rnd = strncmp(argv[2], "rand", 4) == 0;
	wr = strstr(argv[2], "write") != NULL;
	bs = strtoul(argv[3], NULL, 0);
	nthreads = (unsigned)strtoul(argv[4], NULL, 0);
	secs = strtod(argv[5], NULL);
	if (bs == 0 || nthreads == 0 || secs <= 0) {
		fprintf(stderr, "rawio: bad BS, THREADS or SECONDS\n");
		return 2;
	}
	if ((fd = open(argv[6], wr ? O_RDWR : O_RDONLY)) == -1 ||
	    fstat(fd, &sb) == -1) {
		perror(argv[6]);
		return 1;
	}
	nblocks = (uint64_t)sb.st_size / bs;
	if (nblocks == 0) {
		fprintf(stderr, "rawio: %s is smaller than BS\n", argv[6]);
		return 1;
	}
	if (use_mmap && (map = mmap(NULL, (size_t)sb.st_size, PROT_READ |
	    (wr ? PROT_WRITE : 0), MAP_SHARED, fd, 0)) == MAP_FAILED) {
		perror("mmap");
		return 1;
	}
	if ((th = calloc(nthreads, sizeof(*th))) == NULL)
		return 1;
	t0 = now_ns();
	for (i = 0; i < nthreads; i++) {
		th[i].id = i;
		if (pthread_create(&th[i].thread, NULL, run, &th[i]) != 0)
			return 1;
	}
	ts.tv_sec = (time_t)secs;
	ts.tv_nsec = (long)((secs - (double)ts.tv_sec) * 1e9);
	nanosleep(&ts, NULL);
	atomic_store(&stop, true);
	for (i = 0; i < nthreads; i++) {
		pthread_join(th[i].thread, NULL);
		ops += th[i].ops;
	}
	t1 = now_ns();
	el = (double)(t1 - t0) / 1e9;
	printf("{\"ops\":%" PRIu64 ",\"seconds\":%.3f,\"iops\":%.1f,"
	    "\"mib_per_s\":%.2f}\n", ops, el, (double)ops / el,
	    (double)ops / el * (double)bs / 1048576.0);
	return 0;
}
