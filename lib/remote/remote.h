/*
 * What the remote backings (nbd.c, rbd.c) share: the part of the backing
 * every remote kind has (the instance, the unit once staged, the status
 * line rumpblk_backing_status shows), the caller's message at open
 * (uo_errbuf), the window over the remote, and the bottom stage a remote
 * kind makes.  A kind embeds struct rb_remote first and keeps its own
 * I/O: only the bookkeeping around it is here.
 */
#ifndef RB_REMOTE_H
#define RB_REMOTE_H

#include "../internal.h"

/*
 * Locks: m = rm_msglock, a = atomic, ( = set at open, then read-only.
 */
struct rb_remote {
	struct rb_backing rm_bk;	/* first */
	struct rumpblk	*rm_rb;		/* ( */
	_Atomic int	rm_unit;	/* a: the unit, once staged; -1 */
	pthread_mutex_t	rm_msglock;
	char		rm_msg[512];	/* m: the last state */
};

/* Set up the common part (bk_spec a copy of spec): 0 or ENOMEM. */
int	rb_remote_init(struct rb_remote *, struct rumpblk *,
	    const struct rb_backing_ops *, const char *spec);
void	rb_remote_fini(struct rb_remote *);

/* The status line, printf-style (cut short to fit). */
void	rb_remote_status(struct rb_remote *, const char *fmt, ...)
	    __attribute__((format(printf, 2, 3)));
/* A copy of it into buf. */
void	rb_remote_msg(struct rb_remote *, char *buf, size_t len);
/* Raise event (RUMPBLK_EVENT_REMOTE_*) for the unit, once it has one. */
void	rb_remote_event(struct rb_remote *, int event);

/* A message for the registering caller (rumpblk_unit_opts.uo_errbuf). */
void	rb_remote_say(const struct rumpblk_unit_opts *, const char *fmt, ...)
	    __attribute__((format(printf, 2, 3)));

/*
 * The window of o over a remote of total bytes (what: "export",
 * "image", for the message): 0, or EINVAL with a message said.
 */
int	rb_remote_window(struct rb_remote *, const struct rumpblk_unit_opts *,
	    uint64_t total, const char *what);

/* bo_same and bo_named of every remote kind: the same spec and window. */
bool	rb_remote_same(const struct rb_backing *, const struct rb_backing *);
bool	rb_remote_named(const struct rb_backing *, const struct rb_bkey *);

/*
 * bo_stage of a remote kind: a plain stage with ops (the kind's I/O
 * reaches its backing through st_unit->u_backing), reported as backend;
 * any backend asked for but auto is EINVAL.
 */
int	rb_remote_stage(struct rb_unit *, enum rumpblk_backend kind,
	    const struct rb_ops *, enum rumpblk_backend backend,
	    struct rb_stage **);

#endif
