/*
 * Instances and their configuration: defaults, the seed driver's
 * RUMP_BLK* environment, create and destroy.
 *
 * The seed kept its configuration in globals set once by rumpblk_init();
 * here everything lives in struct rumpblk so that several instances with
 * different configurations share a process.  rumpblk_create(NULL, ...)
 * still behaves like rumpblk_init(): defaults, then the environment, with
 * the seed's messages.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

#define xstr(s) str(s)
#define str(s) #s

const char *
rumpblk_version(void)
{
	return xstr(RUMPBLK_VERSION_MAJOR) "." xstr(RUMPBLK_VERSION_MINOR) "."
	    xstr(RUMPBLK_VERSION_MICRO);
}

static const char *const backend_names[] = {
	[RUMPBLK_BACKEND_AUTO] = "auto",
	[RUMPBLK_BACKEND_MMAP] = "mmap",
	[RUMPBLK_BACKEND_PIO] = "pio",
	[RUMPBLK_BACKEND_DIRECT] = "direct",
	[RUMPBLK_BACKEND_URING] = "uring",
	[RUMPBLK_BACKEND_NBD] = "nbd",
	[RUMPBLK_BACKEND_RBD] = "rbd",
};

const char *
rumpblk_backend_name(enum rumpblk_backend b)
{
	if ((unsigned)b >= sizeof(backend_names) / sizeof(backend_names[0]))
		return NULL;
	return backend_names[b];
}

int
rumpblk_backend_parse(const char *s, enum rumpblk_backend *bp)
{
	size_t i;

	if (s == NULL)
		return EINVAL;
	/* The remote kinds are what a unit reports, not a choice. */
	for (i = 0; i <= RUMPBLK_BACKEND_URING; i++)
		if (strcmp(s, backend_names[i]) == 0) {
			*bp = (enum rumpblk_backend)i;
			return 0;
		}
	return EINVAL;
}

void
rb_mutex_lock(pthread_mutex_t *m)
{
	if (pthread_mutex_lock(m) != 0)
		abort();
}

void
rb_mutex_unlock(pthread_mutex_t *m)
{
	if (pthread_mutex_unlock(m) != 0)
		abort();
}

void
rumpblk_config_init(struct rumpblk_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->winsize = 1 << 20;
	cfg->wincount = 16;
	cfg->sectshift = RUMPBLK_DEV_BSHIFT;
	cfg->fail = 0;
	cfg->max_units = 16;
	cfg->backend = RUMPBLK_BACKEND_AUTO;
}

/*
 * The seed parsed with strtoul() into an unsigned and printed with %d; we
 * keep its acceptance rules (strtoul's, so "12abc" is 12) and its words.
 */
static unsigned
env_unsigned(const char *v)
{
	return (unsigned)strtoul(v, NULL, 10);
}

#define MSG(...) do { if (msgs != NULL) fprintf(msgs, __VA_ARGS__); } while (0)

int
rumpblk_config_from_env(struct rumpblk_config *cfg, FILE *msgs)
{
	const char *v;
	unsigned tmp;
	enum rumpblk_backend b;

	if ((v = getenv("RUMP_BLKFAIL")) != NULL) {
		cfg->fail = env_unsigned(v);
		if (cfg->fail > RUMPBLK_BLKFAIL_MAX)
			cfg->fail = RUMPBLK_BLKFAIL_MAX;
		if ((v = getenv("RUMP_BLKFAIL_SEED")) != NULL) {
			cfg->fail_seed = (uint32_t)strtoul(v, NULL, 10);
			cfg->fail_seed_set = true;
		} else if (!cfg->fail_seed_set) {
			rb_random_seed(&cfg->fail_seed);
			cfg->fail_seed_set = true;
		}
		MSG("rumpblk: FAULT INJECTION ACTIVE! fail %u/%d. seed %u\n",
		    cfg->fail, RUMPBLK_BLKFAIL_MAX, cfg->fail_seed);
	}
	if ((v = getenv("RUMP_BLKWINSIZE")) != NULL) {
		MSG("rumpblk: ");
		tmp = env_unsigned(v);
		if (tmp && !(tmp & (tmp - 1)))
			cfg->winsize = tmp;
		else
			MSG("invalid RUMP_BLKWINSIZE %d, ", (int)tmp);
		MSG("using %llu for memwinsize\n",
		    (unsigned long long)cfg->winsize);
	}
	if ((v = getenv("RUMP_BLKWINCOUNT")) != NULL) {
		MSG("rumpblk: ");
		tmp = env_unsigned(v);
		if (tmp)
			cfg->wincount = tmp;
		else
			MSG("invalid RUMP_BLKWINCOUNT %d, ", (int)tmp);
		MSG("using %u for memwincount\n", cfg->wincount);
	}
	if ((v = getenv("RUMP_BLKSECTSHIFT")) != NULL) {
		MSG("rumpblk: ");
		tmp = env_unsigned(v);
		/*
		 * The seed took any shift >= 9.  A sector larger than
		 * RUMPBLK_MAXPHYS could never be moved by the character
		 * path, so we also refuse shifts above 16.
		 */
		if (tmp >= RUMPBLK_DEV_BSHIFT && tmp <= 16)
			cfg->sectshift = tmp;
		else if (tmp < RUMPBLK_DEV_BSHIFT)
			MSG("RUMP_BLKSECTSHIFT must be least %d (now %d), ",
			    RUMPBLK_DEV_BSHIFT, (int)tmp);
		else
			MSG("RUMP_BLKSECTSHIFT must be at most 16 (now %d), ",
			    (int)tmp);
		MSG("using %u for sector shift (size %u)\n", cfg->sectshift,
		    1u << cfg->sectshift);
	}
	if ((v = getenv("RUMP_BLKBACKEND")) != NULL) {
		MSG("rumpblk: ");
		if (rumpblk_backend_parse(v, &b) == 0)
			cfg->backend = b;
		else
			MSG("invalid RUMP_BLKBACKEND %s, ", v);
		MSG("using backend %s\n", rumpblk_backend_name(cfg->backend));
	}
	return 0;
}

static int
config_check(const struct rumpblk_config *cfg)
{
	if (cfg->winsize == 0 || (cfg->winsize & (cfg->winsize - 1)) != 0)
		return EINVAL;
	if (cfg->wincount == 0 || cfg->max_units == 0 ||
	    cfg->max_units > RB_MAXUNITS)
		return EINVAL;
	if (cfg->sectshift < RUMPBLK_DEV_BSHIFT || cfg->sectshift > 16)
		return EINVAL;
	if (cfg->fail > RUMPBLK_BLKFAIL_MAX)
		return EINVAL;
	if ((unsigned)cfg->backend > RUMPBLK_BACKEND_URING)
		return EINVAL;
	return 0;
}

/* Worker threads for asynchronous buffers: enough to keep a few host
 * requests in flight per core, bounded so that a burst cannot start a
 * thread per buffer. */
static unsigned
pool_threads(const struct rumpblk_config *cfg)
{
	long ncpu;
	unsigned n;

	if (cfg->workers != 0)
		return cfg->workers;
	ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	n = ncpu > 0 ? (unsigned)ncpu * 4 : 8;
	return n > 64 ? 64 : n;
}

int
rumpblk_create(const struct rumpblk_config *ucfg, struct rumpblk **rbp)
{
	struct rumpblk_config cfg;
	struct rumpblk *rb;
	unsigned i;
	int error;

	if (ucfg != NULL) {
		cfg = *ucfg;
	} else {
		rumpblk_config_init(&cfg);
		rumpblk_config_from_env(&cfg, stderr);
	}
	if ((error = config_check(&cfg)) != 0)
		return error;
	if (cfg.fail > 0 && !cfg.fail_seed_set) {
		/* The seed always prints the seed it chose: without it a
		 * failing run could not be repeated. */
		rb_random_seed(&cfg.fail_seed);
		cfg.fail_seed_set = true;
		fprintf(stderr, "rumpblk: FAULT INJECTION ACTIVE! fail %u/%d. "
		    "seed %u\n", cfg.fail, RUMPBLK_BLKFAIL_MAX, cfg.fail_seed);
	}

	if ((rb = calloc(1, sizeof(*rb))) == NULL)
		return ENOMEM;
	if ((error = pthread_mutex_init(&rb->rb_lock, NULL)) != 0)
		goto free_rb;
	if ((error = pthread_rwlock_init(&rb->rb_evlock, NULL)) != 0) {
		pthread_mutex_destroy(&rb->rb_lock);
		goto free_rb;
	}
	pthread_mutex_init(&rb->rb_stacklock, NULL);
	pthread_mutex_init(&rb->rb_gracelock, NULL);
	(void)rb_stats_init(rb);	/* a default mutex: cannot fail */
	rb->rb_cfg = cfg;
	rb->rb_lat_sample = cfg.lat_sample ? cfg.lat_sample : 64;
	atomic_init(&rb->rb_randstate, cfg.fail_seed);
	error = ENOMEM;
	if ((rb->rb_units = calloc(cfg.max_units, sizeof(*rb->rb_units))) ==
	    NULL)
		goto destroy_lock;
	if ((rb->rb_counters = aligned_alloc(RB_CACHELINE,
	    sizeof(*rb->rb_counters))) == NULL)
		goto free_units;
	memset(rb->rb_counters, 0, sizeof(*rb->rb_counters));
	/*
	 * The pool is made now, while nothing can contend for it, but its
	 * threads start only when asynchronous work arrives.  Making it
	 * lazily under rb_lock would deadlock: deregister holds rb_lock while
	 * it waits for in-flight buffers, one of which may need the pool.
	 */
	if ((error = rb_pool_create(pool_threads(&cfg), &rb->rb_pool)) != 0)
		goto free_counters;
	if ((error = rb_timers_create(&rb->rb_timers)) != 0)
		goto destroy_pool;
	for (i = 0; i < cfg.max_units; i++) {
		rb->rb_units[i].u_index = (int)i;
		rb->rb_units[i].u_rb = rb;
	}
	*rbp = rb;
	return 0;

destroy_pool:
	rb_pool_destroy(rb->rb_pool);
free_counters:
	free(rb->rb_counters);
free_units:
	free(rb->rb_units);
destroy_lock:
	rb_stats_fini(rb);
	pthread_mutex_destroy(&rb->rb_gracelock);
	pthread_mutex_destroy(&rb->rb_stacklock);
	pthread_rwlock_destroy(&rb->rb_evlock);
	pthread_mutex_destroy(&rb->rb_lock);
free_rb:
	free(rb);
	return error;
}

void
rumpblk_get_config(struct rumpblk *rb, struct rumpblk_config *cfg)
{
	*cfg = rb->rb_cfg;
}

int
rumpblk_destroy(struct rumpblk *rb)
{
	unsigned i;
	int error = 0, e;

	if (rb == NULL)
		return 0;
	for (i = 0; i < rb->rb_cfg.max_units; i++) {
		if ((atomic_load(&rb->rb_units[i].u_state) & RB_U_LIVE) == 0)
			continue;
		e = rb_unit_detach(&rb->rb_units[i]);
		if (error == 0)
			error = e;
	}
	/* Delayed requests held their units: every entry has run. */
	rb_timers_destroy(rb->rb_timers);
	rb_fault_destroy(rb);
	if (rb->rb_pool != NULL)
		rb_pool_destroy(rb->rb_pool);
	for (i = 0; i < rb->rb_cfg.max_units; i++) {
		free(rb->rb_units[i].u_counters);
		free(rb->rb_units[i].u_refs);
	}
	free(rb->rb_counters);
	free(rb->rb_units);
	rb_event_fini(rb);
	rb_stats_fini(rb);
	pthread_mutex_destroy(&rb->rb_gracelock);
	pthread_mutex_destroy(&rb->rb_stacklock);
	pthread_mutex_destroy(&rb->rb_lock);
	free(rb);
	return error;
}

struct rb_pool *
rb_instance_pool(struct rumpblk *rb)
{
	return rb->rb_pool;
}
