/*
 * Crash states of a recorded run (rumpblk crash-check): a write log cut
 * into epochs, the states of each epoch under a model, their identity
 * for deduplication, and building one onto a unit.  crash.c says how;
 * crash-check.c runs a checker on them.
 *
 * An epoch is the writes (and discards) between two FLUSH entries of the
 * log, or after the last one.  A state of epoch e is the durable prefix
 * (the base and every write of the epochs before e) plus a choice of e's
 * writes:
 *
 *   prefix    the first k writes, for every k
 *   subset    every set of them, applied in acknowledgement order
 *   reorder   every set, and every order of writes that overlap
 *   sectors   every sector of every write on its own (the content of a
 *             sector is that of any write over it, or the prefix's)
 *
 * honouring FUA: a FUA write was durable when acknowledged, so a set
 * that holds a later write holds every FUA write before it (and in
 * sectors, a sector a FUA write covers holds it or a later write).
 * Identical states (the same bytes, wherever they come from: the hash of
 * every sector's content) are run once, across epochs too.
 */
#ifndef RUMPBLK_CLI_CRASH_H
#define RUMPBLK_CLI_CRASH_H

#include <stdbool.h>
#include <stdint.h>

#include <rumpblk/rumpblk.h>

#include "logfile.h"

enum cc_model { CC_PREFIX, CC_SUBSET, CC_REORDER, CC_SECTORS };

/* Parse "prefix", "subset", ...: 0 or EINVAL. */
int	cc_model_parse(const char *, enum cc_model *);
const char *cc_model_name(enum cc_model);

struct h128 {
	uint64_t	lo, hi;
};

struct cc_write {
	uint64_t	w_entry;	/* its index in the log */
	uint64_t	w_off;		/* bytes into the unit */
	uint64_t	w_len;		/* bytes */
	uint64_t	w_dataoff;	/* of its data in the log; 0: zeroes */
	uint64_t	w_flags;	/* LW_FUA, LW_DISCARD */
	uint32_t	w_k0;		/* its first sector in e_sect */
};

struct cc_epoch {
	unsigned	e_no;		/* 1, 2, ... */
	struct cc_write	*e_w;
	uint32_t	e_n;
	uint64_t	e_flush;	/* the entry of its FLUSH; UINT64_MAX:
					 * the log ended first */
	uint64_t	e_start;	/* its first entry */
	uint64_t	e_end;		/* its FLUSH entry, or the log's
					 * number of entries */
	/* the sectors its writes touch, sorted; their content hashes */
	uint64_t	*e_sect;
	uint32_t	e_nsect;
	/* per write w, per sector of it: its content (e_sh[w_k0 + i] is
	 * not enough: two writes may cover one sector) */
	struct h128	**e_wsh;
	/* the counts of the report */
	uint64_t	e_possible;	/* UINT64_MAX: more than 2^64 */
	bool		e_sampled;	/* possible > the budget */
	uint64_t	e_generated, e_explored, e_dups, e_failed;
};

/* One piece of a state: sectors [s0, s0 + ns) of write w. */
struct cc_piece {
	uint32_t	p_w;
	uint32_t	p_s0;
	uint32_t	p_ns;
};

struct cc_state {
	unsigned	st_epoch;	/* e_no */
	uint64_t	st_id;		/* its place in the epoch's sequence */
	struct cc_piece	*st_p;		/* in the order they are applied */
	uint32_t	st_n;
	uint32_t	st_cap;
	struct h128	st_hash;	/* of the whole image's content */
};

struct cc_run;

/*
 * Read the log (every entry, validated) and the base's sectors the log
 * touches, and cut it into epochs.  base is read, never written.  0 with
 * *runp, or an error said on stderr (naming the file and the entry).
 */
int	cc_open(const char *logpath, const char *basepath, bool skipcheck,
	    struct cc_run **runp);
void	cc_close(struct cc_run *);

uint32_t cc_nepochs(const struct cc_run *);
struct cc_epoch *cc_epoch(struct cc_run *, uint32_t i);
uint64_t cc_size(const struct cc_run *);
uint32_t cc_secsize(const struct cc_run *);
struct logfile *cc_log(struct cc_run *);

/*
 * The states of epoch i (cc_epoch(run, i)): cc_gen_start, then
 * cc_gen_next until it returns false.  Exhaustive when the epoch's
 * possible states are at most max, otherwise max states drawn with seed
 * (the same max and seed, the same states).  Sets e_possible and
 * e_sampled.  The durable prefix is that of the epochs before i: epochs
 * must be started in order (cc_gen_start makes the previous one durable).
 */
struct cc_gen;
int	cc_gen_start(struct cc_run *, uint32_t i, enum cc_model,
	    uint64_t max, uint64_t seed, struct cc_gen **);
bool	cc_gen_next(struct cc_gen *, struct cc_state *);
void	cc_gen_end(struct cc_gen *);
/* States given so far. */
uint64_t cc_gen_count(const struct cc_gen *);

/* Has a state of this hash been seen?  Marks it seen. */
bool	cc_seen(struct cc_run *, const struct h128 *);

/*
 * Write the durable prefix of st's epoch and st's pieces onto unit u of
 * rb (a view of the base: an overlay, or a copy of it).  0 or errno,
 * said on stderr.
 */
int	cc_build(struct cc_run *, const struct cc_state *, struct rumpblk *,
	    int u);

/* Which of the epoch's writes st holds, in part or whole: kept[w]. */
void	cc_kept(const struct cc_run *, const struct cc_state *, bool *kept);

void	cc_state_free(struct cc_state *);

#endif
