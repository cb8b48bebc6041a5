/*
 * Fault rules on the command line: the options every serving command
 * shares (--fault, --fault-log, --fault-replay, --control) and `rumpblk
 * faults`, the rule reference.  Their firings in JSON are stats-json.c's.
 *
 * A command lists CLI_FAULT_LONGOPTS and CLI_FAULT_HELP and gives its
 * struct cli_fault_opts to cli_parse_args() (util.c), which hands these
 * options to cli_fault_option(); the command then calls
 * cli_fault_start() once its units are registered and before any I/O,
 * cli_fault_stop() at the end and cli_fault_opts_free() last.  The
 * library does the work (rumpblk_fault_*); this file only turns flags
 * into calls and errors into messages that name the flag.
 */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "control.h"

int
cli_fault_option(struct cli_fault_opts *fo, int opt, const char *arg)
{
	const char **nr;
	char err[512];

	switch (opt) {
	case CLI_OPT_FAULT:
		if (rumpblk_fault_check(arg, err, sizeof(err)) != 0) {
			cli_err("--fault: %s", err);
			return 2;
		}
		nr = realloc(fo->fo_rules, (fo->fo_nrules + 1) *
		    sizeof(*nr));
		if (nr == NULL) {
			cli_err("--fault: out of memory");
			return 1;
		}
		fo->fo_rules = nr;
		fo->fo_rules[fo->fo_nrules++] = arg;
		return 0;
	case CLI_OPT_FAULT_LOG:
		fo->fo_log = arg;
		return 0;
	case CLI_OPT_FAULT_REPLAY:
		fo->fo_replay = arg;
		return 0;
	case CLI_OPT_CONTROL:
		fo->fo_control = arg;
		return 0;
	case CLI_OPT_WRITE_LOG:
		fo->fo_wlog = arg;
		return 0;
	case CLI_OPT_WRITE_CACHE:
		if (!cli_opt_size("--write-cache", arg, &fo->fo_wcache))
			return 2;
		if (fo->fo_wcache < 64 * 1024) {
			cli_err("--write-cache: '%s' is less than 64K", arg);
			return 2;
		}
		return 0;
	}
	return -1;
}

/*
 * --write-log FILE: the log layer, over the write cache (the library
 * keeps the order whatever the order of the calls).  Hashing the base
 * reads the whole unit: said on a terminal.
 */
static int
write_log_start(struct cli_fault_opts *fo, struct rumpblk *rb, int unit,
    FILE *msgs)
{
	struct timespec t0, t1;
	int error;

	if (msgs != NULL && isatty(fileno(msgs)))
		fprintf(msgs, "%s: write log %s: hashing the base %s...\n",
		    progname, fo->fo_wlog, fo->fo_image != NULL ?
		    fo->fo_image : "image");
	clock_gettime(CLOCK_MONOTONIC, &t0);
	if ((error = rumpblk_write_log(rb, unit, fo->fo_wlog, fo->fo_image,
	    0)) != 0) {
		cli_err("--write-log %s: %s", fo->fo_wlog, error == EEXIST ?
		    "exists and is not empty (a log is never written over: "
		    "remove it or name another file)" : error == EROFS ?
		    "the unit is read-only" : error == EINVAL ? "not a "
		    "regular file or a block device" : strerror(error));
		return 1;
	}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	if (msgs != NULL)
		fprintf(msgs, "%s: write log %s: recording (base hashed in "
		    "%.1f s)\n", progname, fo->fo_wlog,
		    (double)(t1.tv_sec - t0.tv_sec) +
		    (double)(t1.tv_nsec - t0.tv_nsec) / 1e9);
	return 0;
}

/*
 * rumpblk_fault_add, but a rule's unit=N must name a unit rb has: the
 * library arms a rule for a unit still to come, but here every unit is
 * registered, and a rule for none would never fire, silently.
 */
int
cli_fault_add(struct rumpblk *rb, const char *rule, char *id, size_t idlen,
    char *err, size_t errlen)
{
	const char *s = rule;
	uint64_t size;
	char *end;
	long v;

	for (;;) {
		if (strncmp(s, "unit=", 5) == 0) {
			errno = 0;
			v = strtol(s + 5, &end, 10);
			/* A malformed number is the parser's to name. */
			if (end != s + 5 && (*end == ',' || *end == '\0') &&
			    errno == 0 && v >= 0 && v <= INT_MAX &&
			    rumpblk_ioctl(rb, (int)v, RUMPBLK_DIOCGMEDIASIZE,
			    &size) == ENXIO) {
				snprintf(err, errlen, "rule '%s': unit=%ld: no "
				    "such unit (0 is the image served first, "
				    "--add-export's are 1, 2, ...)", rule, v);
				return ENXIO;
			}
		}
		if ((s = strchr(s, ',')) == NULL)
			break;
		s++;
	}
	return rumpblk_fault_add(rb, rule, id, idlen, err, errlen);
}

int
cli_fault_start(struct cli_fault_opts *fo, struct rumpblk *rb, int unit,
    FILE *msgs)
{
	char err[512], id[RUMPBLK_FAULT_IDMAX];
	FILE *f;
	int error, rc;

	if (fo->fo_replay != NULL && fo->fo_nrules > 0) {
		cli_err("--fault-replay injects only the firings of its log: "
		    "give it without --fault");
		return 2;
	}
	if (fo->fo_wcache != 0 &&
	    (error = rumpblk_write_cache(rb, unit, fo->fo_wcache)) != 0) {
		cli_err("--write-cache: %s", error == EROFS ? "the unit is "
		    "read-only" : strerror(error));
		return 1;
	}
	if (fo->fo_wlog != NULL && (rc = write_log_start(fo, rb, unit,
	    msgs)) != 0)
		return rc;
	if (fo->fo_nrules == 0 && fo->fo_log == NULL &&
	    fo->fo_replay == NULL && fo->fo_control == NULL)
		return 0;	/* no layer, no cost */
	/*
	 * With a control socket, rules may come later: count every request
	 * from the start so that a log of such a run replays.  Otherwise
	 * the engine counts only what the rules concern.
	 */
	if (fo->fo_control != NULL && (error = rumpblk_fault_enable(rb)) != 0) {
		cli_err("fault rules: %s", strerror(error));
		return 1;
	}
	if (fo->fo_log != NULL) {
		if ((fo->fo_logf = fopen(fo->fo_log, "w")) == NULL) {
			cli_err("--fault-log %s: %s", fo->fo_log,
			    strerror(errno));
			return 1;
		}
		rumpblk_fault_log(rb, fo->fo_logf);
	}
	if (fo->fo_replay != NULL) {
		if ((f = fopen(fo->fo_replay, "r")) == NULL) {
			cli_err("--fault-replay %s: %s", fo->fo_replay,
			    strerror(errno));
			return 1;
		}
		err[0] = '\0';
		error = rumpblk_fault_replay(rb, f, err, sizeof(err));
		fclose(f);
		if (error != 0) {
			cli_err("--fault-replay %s: %s", fo->fo_replay,
			    err[0] != '\0' ? err : strerror(error));
			return 1;
		}
		if (msgs != NULL)
			fprintf(msgs, "%s: replaying the fault log %s\n",
			    progname, fo->fo_replay);
	}
	if (msgs != NULL && fo->fo_replay == NULL)
		fprintf(msgs, "%s: fault rules: seed %" PRIu64 "\n", progname,
		    rumpblk_fault_seed(rb));
	for (size_t i = 0; i < fo->fo_nrules; i++) {
		err[0] = '\0';
		if ((error = cli_fault_add(rb, fo->fo_rules[i], id,
		    sizeof(id), err, sizeof(err))) != 0) {
			cli_err("--fault: %s", err[0] != '\0' ? err :
			    strerror(error));
			return error == EINVAL || error == ENXIO ? 2 : 1;
		}
		if (msgs != NULL)
			fprintf(msgs, "%s: fault rule %s armed: %s\n",
			    progname, id, fo->fo_rules[i]);
	}
	if (fo->fo_control != NULL &&
	    (error = cli_control_start(rb, unit, fo->fo_control,
	    &fo->fo_ctl)) != 0) {
		cli_err("--control %s: %s", fo->fo_control, strerror(error));
		return 1;
	}
	return 0;
}

void
cli_fault_stop(struct cli_fault_opts *fo, struct rumpblk *rb)
{
	if (fo->fo_ctl != NULL) {
		cli_control_stop(fo->fo_ctl);
		fo->fo_ctl = NULL;
	}
	if (fo->fo_logf != NULL) {
		if (rb != NULL)
			rumpblk_fault_log(rb, NULL);
		if (fclose(fo->fo_logf) != 0)
			cli_err("--fault-log %s: %s", fo->fo_log,
			    strerror(errno));
		fo->fo_logf = NULL;
	}
}

void
cli_fault_opts_free(struct cli_fault_opts *fo)
{
	free(fo->fo_rules);
	fo->fo_rules = NULL;
	fo->fo_nrules = 0;
}

/* rumpblk faults: the reference of the rule language. */

const char cli_fault_reference[] =
"usage: rumpblk faults [--help]\n"
"\n"
"The fault rule language, as --fault RULE, the control socket's\n"
"'fault add RULE' and rumpblk_fault_add(3) take it: a class, then\n"
"KEY=VALUE pairs, separated by commas:\n"
"\n"
"    error,op=write,range=1M-2M,p=0.01,errno=EIO,seed=7\n"
"\n"
"Classes (what one firing does):\n"
"  error      the request fails with errno= (default EIO; a set such as\n"
"             errno=EIO/ENOSPC picks one per firing); a failed write\n"
"             leaves the medium unchanged.  Default op: any.\n"
"               error,op=read,range=0-1M,nth=3,errno=EIO\n"
"  corrupt    flips bits=N bits (default 1) in the part of the request\n"
"             inside range=: of the data returned with op=read (the\n"
"             medium unchanged), of the data stored with op=write\n"
"             (success reported).  Default op: read.\n"
"               corrupt,op=write,bits=4,p=0.001\n"
"  lost       a write reports success and stores nothing.  Op: write.\n"
"               lost,range=64K-128K,count=1\n"
"  misdirect  a write reports success and lands shift=N sectors away\n"
"             (signed; default a seeded place inside range=), leaving\n"
"             its own place unchanged; a place off the unit stores\n"
"             nothing.  Op: write.\n"
"               misdirect,shift=-8,every=100\n"
"  stale      a read returns what its sectors held when the rule was\n"
"             armed; needs range= (at most 1G).  Op: read.\n"
"               stale,range=0-16M\n"
"  torn       a write stores only a prefix, cut at a multiple of atom=N\n"
"             bytes (a multiple of 512; default the sector size);\n"
"             success reported unless errno= is given.  Op: write.\n"
"               torn,atom=4K,p=0.01\n"
"  delay      the request completes ms=N milliseconds later (fractions\n"
"             allowed; default 0).  Default op: any.\n"
"               delay,ms=2.5,op=flush\n"
"  power-cut  the power of the unit is cut while the request is in\n"
"             flight: its write cache resolves the writes acknowledged\n"
"             but not durable by model=M (lose, the default; keep,\n"
"             subset, reorder, sectors, torn with atom=N), every\n"
"             connection of the unit is dropped (the request gets no\n"
"             reply) and the unit serves the post-crash medium.  Needs\n"
"             --write-cache.  Default op: any.\n"
"               power-cut,op=write,nth=500,model=subset,seed=7\n"
"\n"
"Selectors (every class):\n"
"  op=OPS          read, write, flush, trim, zero or any; several with '/'\n"
"                    error,op=flush/trim\n"
"  range=S-E       bytes of the unit, K/M/G/T suffixes, E exclusive; a\n"
"                  request matches if it overlaps (a flush always does);\n"
"                  default the whole unit\n"
"                    lost,range=1G-2G\n"
"  unit=N          only unit N (default: every unit); serve and ctl\n"
"                  refuse a unit they do not have\n"
"                    error,unit=1\n"
"\n"
"Triggers (no trigger: every match fires):\n"
"  after=N         skip the first N matches               error,after=10\n"
"  p=PROB          fire with probability PROB (0-1)        error,p=0.01\n"
"  ppm=N           ... N in a million                      error,ppm=50\n"
"  nth=N           only the Nth match                      error,nth=3\n"
"  every=N         every Nth match                         error,every=7\n"
"  count=N         at most N firings                       error,count=2\n"
"  At most one of p, ppm, nth and every.\n"
"\n"
"Other keys:\n"
"  seed=S          the rule's seed (default: the instance's seed, which\n"
"                  is printed at start-up)                 error,p=0.1,seed=7\n"
"  id=NAME         the rule's name (default r1, r2, ... in order of\n"
"                  arming); letters, digits, '_', '-', '.'  lost,id=lw\n"
"\n"
"Determinism: a p/ppm decision, and the details of a firing (errno,\n"
"bits, target, cut), are a pure function of (seed, rule id, unit, op,\n"
"first sector, length, generation), where generation counts the earlier\n"
"requests with the same op and first sector on that unit; so the same\n"
"seed and workload fire on the same requests under any number of threads\n"
"or NBD connections (unless a client issues identical requests at once).\n"
"after, nth, every and count count matches in the order the engine sees\n"
"them, which is deterministic with one submitter only.  A request takes\n"
"at most one fault besides delays: the first rule, in order of arming,\n"
"that fires.\n"
"\n"
"--fault-log FILE writes one JSON object per firing (rule, class, op,\n"
"unit, offset, length, generation, and errno, bits, target, torn_length,\n"
"ms or range); --fault-replay FILE injects exactly the firings of such a\n"
"log and nothing else (a power cut's line has the model, seed and what\n"
"it did: unflushed, persisted, lost, torn, bytes_lost).  Replay is\n"
"exact for rules given at start-up, and\n"
"for rules armed later through --control for every class but stale\n"
"(the log cannot carry the moment of its snapshot).\n";

int
cmd_faults(int argc, char **argv)
{
	if (argc > 2 || (argc == 2 && strcmp(argv[1], "--help") != 0 &&
	    strcmp(argv[1], "-h") != 0)) {
		cli_err("faults: unknown argument '%s' (try 'rumpblk faults "
		    "--help')", argv[1]);
		return 2;
	}
	fputs(cli_fault_reference, stdout);
	return 0;
}
