/*
 * Private declarations of the fault rule engine (DESIGN.md §9), shared by
 * rule.c (the rule language), engine.c (the layer, decisions, the API)
 * and log.c (the fault log and its replay).
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

/* A stale rule's snapshot of one unit, shared by in-flight firings. */
struct fault_snap {
	_Atomic unsigned sn_refs;	/* a */
	uint64_t	sn_off;		/* ( bytes into the unit */
	uint64_t	sn_len;		/* ( bytes */
	unsigned char	sn_data[];	/* ( */
};

/*
 * Locks: e = engine fe_armlock + every read shard (writers), a = atomic,
 * ( = set when parsed, then read-only.
 */
struct fault_rule {
	struct fault_rule *fr_next;	/* e: arming order */
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
	double		fr_ms;		/* ( delay, as given */
	bool		fr_replay;	/* ( stands for a replayed log's rule */
	struct fault_snap **fr_snap;	/* ( stale: one per unit, or NULL */
	unsigned	fr_nsnap;	/* ( */
	_Atomic uint64_t fr_matches;	/* a */
	_Atomic uint64_t fr_firings;	/* a */
};

/*
 * One firing, decided: the log record and everything the layer needs to
 * act.  fi_bitpos has fi_nbits entries (bit offsets into the request).
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
	uint64_t	fi_snap_off;	/* stale: the snapshot's range */
	uint64_t	fi_snap_len;
	struct fault_snap *fi_snap;	/* stale: a reference */
	unsigned	fi_nbits;
	uint64_t	*fi_bitpos;	/* corrupt: owned */
};

/* rule.c */
int	rb_fault_parse(const char *text, struct fault_rule *,
	    char *errbuf, size_t errlen);
const char *rb_fault_class_name(int);
int	rb_fault_class_parse(const char *);
const char *rb_fault_errno_name(int);
int	rb_fault_errno_parse(const char *);
const char *rb_fault_op_name(int op);	/* RUMPBLK_B_* */
int	rb_fault_op_parse(const char *);	/* RUMPBLK_B_* or -1 */
unsigned rb_fault_opbit(int op);		/* RUMPBLK_B_* to FOP_* */
uint64_t rb_fault_hash_str(const char *);

/* The keyed mix of a decision: splitmix64's finaliser over fields. */
static inline uint64_t
rb_fault_mix(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ull;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

/* log.c */
void	rb_fault_log_write(FILE *, const struct fault_fire *);
/*
 * Parse one log line into a firing (fi_bitpos allocated); 0, or EINVAL
 * with a message in errbuf.
 */
int	rb_fault_log_parse(const char *line, struct fault_fire *,
	    char *errbuf, size_t errlen);

#endif
