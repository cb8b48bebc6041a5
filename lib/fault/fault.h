/*
 * Private declarations of the fault rule engine (DESIGN.md §9), shared by
 * its files, one section each:
 *   rule.c    the rule language (parse, names)
 *   decide.c  the decisions: pure functions of a request and the rules
 *   layer.c   the layer on a unit's stack: generations, acting on firings
 *   engine.c  the engine of an instance and the public API
 *   replay.c  loading a fault log for replay
 *   log.c     the fault log's lines (write, parse)
 *
 * A parsed rule is a plain struct fault_rule; the engine owns the armed
 * ones.  Everything that a firing needs is computed when the engine
 * decides, into a struct fault_fire, so that a firing never looks at its
 * rule again (a rule may be disarmed while its firing is in flight).
 */
#ifndef RUMPBLK_FAULT_H
#define RUMPBLK_FAULT_H

#include <stdio.h>

#include "../internal.h"

/* Operation bits of a selector, one per op that rules can match. */
#define FOP_READ	0x01
#define FOP_WRITE	0x02
#define FOP_FLUSH	0x04
#define FOP_TRIM	0x08
#define FOP_ZERO	0x10
#define FOP_ANY		0x1f
/* ... which are the RUMPBLK_B_ bits of the same ops (rb_fault_opbit). */
_Static_assert(FOP_READ == RUMPBLK_B_READ && FOP_WRITE == RUMPBLK_B_WRITE &&
    FOP_FLUSH == RUMPBLK_B_FLUSH && FOP_TRIM == RUMPBLK_B_TRIM &&
    FOP_ZERO == RUMPBLK_B_ZERO && (RUMPBLK_B_EXTENTS & FOP_ANY) == 0,
    "FOP_ bits are RUMPBLK_B_ bits");

/* RUMPBLK_B_* to FOP_*: 0 for an op no rule can select (EXTENTS). */
static inline unsigned
rb_fault_opbit(int op)
{
	return (unsigned)op & FOP_ANY;
}

/* Triggers after the after=N skip. */
enum fault_trig {
	FT_ALL = 0,		/* every match */
	FT_P,			/* p=PROB or ppm=N: ft_thresh of 2^64 */
	FT_NTH,			/* only the nth match */
	FT_EVERY,		/* every nth match */
};

#define FAULT_MAXERRNO	8
#define FAULT_MAXBITS	1024
#define FAULT_STALEMAX	(1ull << 30)
/* Bit positions of a corrupt firing kept in the firing itself; more
 * (bits=N above this) are allocated. */
#define FAULT_INLINE_BITS	8

/* A stale rule's snapshot of one unit, shared by in-flight firings. */
struct fault_snap {
	_Atomic unsigned sn_refs;	/* a */
	uint64_t	sn_off;		/* ( bytes into the unit */
	uint64_t	sn_len;		/* ( bytes */
	unsigned char	sn_data[];	/* ( */
};

/*
 * Locks: e = the engine's fe_armlock (writers; requests read the list
 * without a lock, see struct fault_engine), a = atomic, ( = set when
 * parsed, then read-only.
 */
struct fault_rule {
	_Atomic(struct fault_rule *) fr_next; /* e, a: arming order */
	char		fr_id[RUMPBLK_FAULT_IDMAX];	/* ( */
	char		fr_text[RUMPBLK_FAULT_TEXTMAX];	/* ( as given */
	uint64_t	fr_idhash;	/* ( hash of fr_id */
	int		fr_class;	/* ( RUMPBLK_FAULT_* */
	unsigned	fr_ops;		/* ( FOP_* */
	int		fr_unit;	/* ( -1: every unit */
	uint64_t	fr_start;	/* ( range, bytes, end exclusive */
	uint64_t	fr_end;		/* ( UINT64_MAX: the whole unit */
	bool		fr_has_range;	/* ( */
	uint64_t	fr_after;	/* ( */
	enum fault_trig	fr_trig;	/* ( */
	uint64_t	fr_thresh;	/* ( FT_P: fire when hash < thresh */
	bool		fr_always;	/* ( FT_P with p=1 */
	uint64_t	fr_n;		/* ( FT_NTH, FT_EVERY */
	uint64_t	fr_count;	/* ( 0: no cap */
	uint64_t	fr_seed;	/* ( */
	bool		fr_seed_set;	/* ( seed= was given */
	int		fr_errno[FAULT_MAXERRNO];	/* ( */
	unsigned	fr_nerrno;	/* ( 0: class default */
	unsigned	fr_bits;	/* ( corrupt */
	int64_t		fr_shift;	/* ( misdirect, sectors */
	bool		fr_has_shift;	/* ( */
	uint64_t	fr_atom;	/* ( torn, bytes; 0: sector size */
	uint64_t	fr_delay_ns;	/* ( delay */
	int		fr_model;	/* ( power-cut: enum rumpblk_pcmodel */
	double		fr_ms;		/* ( delay, as given */
	bool		fr_replay;	/* ( stands for a replayed log's rule */
	struct fault_snap **fr_snap;	/* ( stale: one per unit, or NULL */
	unsigned	fr_nsnap;	/* ( */
	_Atomic uint64_t fr_matches;	/* a */
	_Atomic uint64_t fr_firings;	/* a */
};

/*
 * One firing, decided: the log record and everything the layer needs to
 * act.  The fi_nbits bit positions (bit offsets into the request) are in
 * fi_bitin while they fit and fi_bitpos is NULL, else in fi_bitpos
 * (allocated, owned); rb_fire_bits() finds them.  A firing is copied by
 * value, so it never points into itself.
 */
struct fault_fire {
	char		fi_rule[RUMPBLK_FAULT_IDMAX];
	int		fi_class;
	int		fi_op;		/* RUMPBLK_B_* */
	int		fi_unit;
	uint64_t	fi_off;		/* bytes */
	uint64_t	fi_len;		/* bytes */
	uint64_t	fi_gen;
	int		fi_errno;	/* error; torn with errno=; else 0 */
	int64_t		fi_target;	/* misdirect: bytes, -1 nowhere */
	uint64_t	fi_torn;	/* torn: bytes stored */
	double		fi_ms;		/* delay */
	uint64_t	fi_delay_ns;
	int		fi_model;	/* power-cut */
	uint64_t	fi_pcseed;	/* power-cut: the model's seed */
	uint64_t	fi_atom;	/* power-cut, torn: bytes or 0 */
	uint64_t	fi_snap_off;	/* stale: the snapshot's range */
	uint64_t	fi_snap_len;
	struct fault_snap *fi_snap;	/* stale: a reference */
	unsigned	fi_nbits;
	uint64_t	*fi_bitpos;	/* corrupt: owned, or NULL */
	uint64_t	fi_bitin[FAULT_INLINE_BITS];
};

static inline const uint64_t *
rb_fire_bits(const struct fault_fire *fi)
{
	return fi->fi_bitpos != NULL ? fi->fi_bitpos : fi->fi_bitin;
}

/* rule.c */
int	rb_fault_parse(const char *text, struct fault_rule *,
	    char *errbuf, size_t errlen);
const char *rb_fault_class_name(int);
int	rb_fault_class_parse(const char *);
const char *rb_fault_errno_name(int);
int	rb_fault_errno_parse(const char *);
const char *rb_fault_op_name(int op);	/* RUMPBLK_B_* */
int	rb_fault_op_parse(const char *);	/* RUMPBLK_B_* or -1 */
uint64_t rb_fault_hash_str(const char *);

/* The keyed mix of a decision: splitmix64's finaliser over fields. */
#define rb_fault_mix(x)	rb_mix64(x)

/* engine.c: the engine of an instance. */

/* A replayed firing, and the rule standing for its id. */
struct replay_ent {
	struct fault_fire re_fire;
	struct fault_rule *re_rule;
};

/* A loaded replay: published, and taken back, with one pointer. */
struct replay_set {
	struct replay_set *rs_next;	/* fe_zrs chain */
	size_t		rs_n;
	struct replay_ent *rs_ents;	/* sorted by key */
};

/*
 * Rules are read on every request and written rarely.  A request reads
 * them with no lock: it holds a reference on its unit from strategy to
 * completion, and a rule or replay taken off the engine is freed only
 * after a grace period on every unit (rb_fault_grace), when no request
 * that could have seen it is left.  Writers (arm, disarm, replay) are
 * serialised by fe_armlock; a rule is published with one release store
 * at the end of the list (fr_next), unlinked with one store.  Once del
 * or clear returns, the counters of the rules it removed are final.
 *
 * Locks: A = fe_armlock, L = fe_loglock, a = atomic, ( = set at
 * creation.
 * Lock order: rb_lock, fe_armlock, (rb_stacklock,) rb_gracelock,
 * fe_loglock.
 */
struct fault_engine {
	pthread_mutex_t	fe_armlock;
	struct rumpblk	*fe_rb;			/* ( */
	_Atomic(struct fault_rule *) fe_rules;	/* A, a: arming order */
	_Atomic unsigned fe_nrules;		/* A, a: read unlocked */
	_Atomic unsigned fe_selops;		/* A, a: union of fr_ops */
	_Atomic uint64_t fe_selend;		/* A, a: largest fr_end */
	unsigned	fe_nextid;		/* A */
	uint64_t	fe_seed;		/* A */
	bool		fe_enabled;		/* rb_lock */
	_Atomic(struct replay_set *) fe_rs;	/* A, a: NULL: no replay */
	struct fault_rule *fe_zombies;		/* A: freed with the engine */
	struct replay_set *fe_zrs;		/* A: freed with the engine */
	_Atomic bool	fe_countall;		/* a: count every request */
	/*
	 * Can a request's generation be seen?  Some armed rule reads the
	 * request's hash (a p= trigger, seeded details), or firings are
	 * logged (fe_logging).  If not, a request that could fire is
	 * decided without counting it (layer.c, "Generations").
	 */
	_Atomic bool	fe_needgen;		/* A, a */
	bool		fe_logging;		/* A: a log is set */
	/*
	 * The path of a request through the layer, in one word
	 * (rb_fault_path_update_locked): the union of the armed rules'
	 * ops, and FE_SLOW when a request needs more than its rules'
	 * matches counted: a replay, a count of every request
	 * (fe_countall), or a generation that can be seen (fe_needgen).
	 */
	_Atomic unsigned fe_path;		/* A, a */
	pthread_mutex_t	fe_loglock;
	FILE		*fe_log;		/* L */
};

/* The engine of an instance, created on first use; NULL: ENOMEM. */
struct fault_engine *rb_fault_engine_get(struct rumpblk *);
/* Put the layer on every unit; with countall count every request. */
int	rb_fault_engine_enable(struct rumpblk *, bool countall);
/* With A held, after every change of fe_rules. */
void	rb_fault_summary_locked(struct fault_engine *);
#define FE_SLOW		0x100		/* fe_path: not only counting */
/* With A held, after every change of fe_rules, fe_rs or fe_countall. */
void	rb_fault_path_update_locked(struct fault_engine *);
void	rb_fault_snap_rele(struct fault_snap *);
/*
 * Wait until no request that could have seen a rule or replay just taken
 * off the engine is left (a grace period on every unit).  With no lock
 * held that a completion could want (not A).
 * false, without waiting, when called from a completion (whose own
 * request would never finish): the caller then keeps what it unlinked
 * until the engine goes (fe_zombies).
 */
bool	rb_fault_grace(struct fault_engine *);
void	rb_fault_rule_free(struct fault_rule *);
/*
 * Snapshot [off, off+len) of unit u from below its fault layer, for a
 * stale rule; 0, ENOENT (no such unit or layer), ENOMEM, a read error.
 */
int	rb_fault_snap_take(struct rumpblk *, int unit, uint64_t off,
	    uint64_t len, struct fault_snap **);

/* decide.c: the decisions. */

#define MAXFIRE		4	/* firings acted on per request */

struct decision {
	struct fault_fire d_fire[MAXFIRE];
	unsigned	d_n;
	int		d_data;		/* index of the data firing, or -1 */
	uint64_t	d_delay_ns;
};

/*
 * Does rule r match this request (op, unit, range, a snapshot for a
 * stale rule)?  Its match is then counted (fr_matches).
 */
static inline bool
rb_fault_rule_matches(const struct fault_rule *r, const struct rb_io *io,
    unsigned opbit)
{
	if ((r->fr_ops & opbit) == 0)
		return false;
	if (r->fr_unit >= 0 && r->fr_unit != io->io_unit->u_index)
		return false;
	/* A flush has no range: it covers the whole unit. */
	if (opbit != FOP_FLUSH && (io->io_off >= r->fr_end ||
	    io->io_off + io->io_len <= r->fr_start))
		return false;
	if (RB_UNLIKELY(r->fr_class == RUMPBLK_FAULT_STALE) &&
	    ((unsigned)io->io_unit->u_index >= r->fr_nsnap ||
	    r->fr_snap[io->io_unit->u_index] == NULL))
		return false;
	return true;
}

/*
 * Can rule r fire on its match number m, as far as its trigger says
 * (after=, nth=, every=; a p= rule still has its hash to pass, a capped
 * rule its count)?
 */
static inline bool
rb_fault_trigger(const struct fault_rule *r, uint64_t m)
{
	uint64_t k;

	if (m <= r->fr_after)
		return false;
	k = m - r->fr_after;
	switch (r->fr_trig) {
	case FT_NTH:
		return k == r->fr_n;
	case FT_EVERY:
		return k % r->fr_n == 0;
	default:
		return true;	/* FT_ALL; FT_P: decided by the hash */
	}
}

/* Could some armed rule select a request of this op at this sector? */
bool	rb_fault_rules_select(struct fault_engine *,
	    const struct rb_io *, unsigned opbit, uint64_t sector);
/* Does the replayed log have a firing of this op at this sector? */
bool	rb_fault_replay_selects(const struct replay_set *,
	    const struct rb_io *, uint64_t sector);
/* Does deciding r read the request's hash (its generation)? */
bool	rb_fault_rule_hashes(const struct fault_rule *);
/* Decide a request of generation gen, into d (no lock: the request
 * holds its unit, which keeps the rules it reads). */
void	rb_fault_decide_rules(struct fault_engine *, struct rb_io *,
	    unsigned opbit, uint64_t gen, struct decision *);
/*
 * The same, for a request whose matches were counted up to rule from,
 * whose match number is m and the first that may fire (the layer's
 * counting path): decide from there on.
 */
void	rb_fault_decide_from(struct fault_engine *, struct rb_io *,
	    unsigned opbit, uint64_t gen, struct decision *,
	    struct fault_rule *from, uint64_t m);
void	rb_fault_decide_replay(const struct replay_set *, struct rb_io *,
	    uint64_t gen, struct decision *);
/* Free a replay set and what its firings own. */
void	rb_fault_replay_free(struct replay_set *);
/* The order of replayed firings: unit, op, offset, length, generation. */
int	rb_fault_replay_cmp(const struct fault_fire *,
	    const struct fault_fire *);
/* Free what a decided firing owns. */
void	rb_fault_fire_release(struct fault_fire *);

/* layer.c: the layer. */

/* The fault layer of a unit, wherever it sits, or NULL. */
struct rb_stage *rb_fault_unit_layer(struct rb_unit *);
/* Put a fault layer on a unit (rb_lock held); 0 or ENOMEM. */
int	rb_fault_layer_push(struct fault_engine *, struct rb_unit *);

/* log.c */
void	rb_fault_log_write(FILE *, const struct fault_fire *);
/*
 * Parse one log line into a firing (fi_bitpos allocated); 0, or EINVAL
 * with a message in errbuf.
 */
int	rb_fault_log_parse(const char *line, struct fault_fire *,
	    char *errbuf, size_t errlen);

#endif
