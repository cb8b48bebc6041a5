/*
 * Fault rules and the control socket in the rumpblk(1) command: the
 * options serving commands share, and the control socket server.  See
 * fault.c and control.c.
 */
#ifndef RUMPBLK_CLI_CONTROL_H
#define RUMPBLK_CLI_CONTROL_H

#include <getopt.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include <rumpblk/rumpblk.h>

/* getopt_long values of the shared options (above any short option). */
#define CLI_OPT_FAULT		0x1f01
#define CLI_OPT_FAULT_LOG	0x1f02
#define CLI_OPT_FAULT_REPLAY	0x1f03
#define CLI_OPT_CONTROL		0x1f04
#define CLI_OPT_WRITE_CACHE	0x1f05
#define CLI_OPT_WRITE_LOG	0x1f06

/* Put these in a command's struct option array. */
#define CLI_FAULT_LONGOPTS						\
	{ "fault", required_argument, NULL, CLI_OPT_FAULT },		\
	{ "fault-log", required_argument, NULL, CLI_OPT_FAULT_LOG },	\
	{ "fault-replay", required_argument, NULL, CLI_OPT_FAULT_REPLAY }, \
	{ "control", required_argument, NULL, CLI_OPT_CONTROL },	\
	{ "write-cache", required_argument, NULL, CLI_OPT_WRITE_CACHE },	\
	{ "write-log", required_argument, NULL, CLI_OPT_WRITE_LOG }

/* And these lines in its --help. */
#define CLI_FAULT_HELP							\
	"  --fault RULE           arm a fault rule (repeatable; see\n"	\
	"                         'rumpblk faults --help')\n"		\
	"  --fault-log FILE       write one JSON line per fault fired\n"	\
	"  --fault-replay FILE    inject exactly the faults of such a log\n" \
	"  --control PATH         a Unix socket for 'rumpblk ctl': fault\n" \
	"                         add RULE, fault del ID, fault list,\n"	\
	"                         fault clear, stats, reset, power-cut,\n" \
	"                         mark NAME\n" \
	"  --write-cache SIZE     a volatile write cache of SIZE bytes:\n" \
	"                         writes are acknowledged once cached,\n" \
	"                         FLUSH and FUA make them durable; needed\n" \
	"                         by power cuts (power-cut rules, ctl\n"	\
	"                         power-cut)\n"				\
	"  --write-log FILE       record every write, trim, write-zeroes,\n" \
	"                         FLUSH and FUA in FILE (a new file), in\n" \
	"                         the format of Linux dm-log-writes; see\n" \
	"                         'rumpblk log --help'\n"

struct cli_control;

struct cli_fault_opts {
	const char	**fo_rules;	/* --fault, in order */
	size_t		fo_nrules;
	const char	*fo_log;	/* --fault-log */
	const char	*fo_replay;	/* --fault-replay */
	const char	*fo_control;	/* --control */
	uint64_t	fo_wcache;	/* --write-cache, bytes; 0: none */
	const char	*fo_wlog;	/* --write-log */
	const char	*fo_image;	/* the command's image: the log's base */
	FILE		*fo_logf;
	struct cli_control *fo_ctl;
};

/*
 * Take one of the options above: 0, 2 (bad usage, said), 1 (said), or
 * -1 if opt is not one of them.  A rule is checked here, so a typo
 * stops the command before it opens anything.
 */
int	cli_fault_option(struct cli_fault_opts *, int opt, const char *arg);
/*
 * After the units are registered and before any I/O: put the write
 * cache on unit, open the log, load the replay, print the seed, arm the
 * rules, open the control socket (whose reset and power-cut commands
 * act on unit).
 * Messages go to msgs (may be NULL).  0, or 1/2 with the error said.
 */
int	cli_fault_start(struct cli_fault_opts *, struct rumpblk *, int unit,
	    FILE *msgs);
/*
 * rumpblk_fault_add, refusing (ENXIO, said in err) a rule whose unit=N
 * names no unit of rb.
 */
int	cli_fault_add(struct rumpblk *, const char *rule, char *id,
	    size_t idlen, char *err, size_t errlen);
/* Close the control socket and the log. */
void	cli_fault_stop(struct cli_fault_opts *, struct rumpblk *);
/* Free what cli_fault_option() took (any time; again is harmless). */
void	cli_fault_opts_free(struct cli_fault_opts *);

/* What 'rumpblk faults --help' prints. */
extern const char cli_fault_reference[];

/*
 * The control socket's bounds: a command line's bytes with its newline,
 * the commands one connection may send, the clients served at once.
 */
#define CLI_CTL_LINEMAX		4096
#define CLI_CTL_MAXCMDS		65536
#define CLI_CTL_MAXCLIENTS	16

/*
 * The control socket: a thread that accepts on a Unix socket at path and
 * answers each command line with one JSON line; reset resets unit.  The
 * socket is mode 0600 from its first moment, and only peers with the
 * server's uid or root are served.  An existing socket file nobody
 * listens on is replaced; anything else at path is refused: EADDRINUSE
 * (a socket in use), EISDIR (a directory), EEXIST (a regular file or
 * anything else), or lstat's or connect's errno (EACCES).  0 or an
 * errno.
 */
int	cli_control_start(struct rumpblk *, int unit, const char *path,
	    struct cli_control **);
/* Stop the thread, close every connection, remove the socket file (if
 * it is still the one started). */
void	cli_control_stop(struct cli_control *);
/*
 * One command (NUL-ended, without its newline), one answer (no newline)
 * to f.  For the server and tests.
 */
void	cli_control_command(struct rumpblk *, int unit, char *line, FILE *f);
/*
 * One command line as read from a client: len bytes without the newline,
 * any bytes.  A line of CLI_CTL_LINEMAX bytes or more, or one that is not
 * UTF-8 text or holds a NUL or a control byte (but tab and CR), is
 * answered with an error; any other goes to cli_control_command().  One
 * answer, no newline, to f.
 */
void	cli_control_line(struct rumpblk *, int unit, const char *line,
	    size_t len, FILE *f);

/*
 * A control connection's line reader, without its socket: the server
 * keeps one per client, and the fuzz target drives one directly.  Zero
 * it to start.
 */
struct cli_ctl_reader {
	size_t		cr_len;		/* bytes of a partial line in cr_buf */
	unsigned long	cr_ncmds;	/* lines answered */
	bool		cr_discard;	/* dropping an overlong line's rest */
	char		cr_buf[CLI_CTL_LINEMAX];
};

/*
 * Take len bytes a client sent (any bytes, any split into calls) and
 * write to f one answer line (JSON and a newline) for each line they
 * complete, through cli_control_line().  A line longer than
 * CLI_CTL_LINEMAX - 1 bytes is answered with an error once and the rest
 * of it, up to its newline, is discarded.  true: read on; false: close
 * the connection now: it sent more than CLI_CTL_MAXCMDS lines (the last
 * answer says so) or f has an error.
 */
bool	cli_control_input(struct rumpblk *, int unit,
	    struct cli_ctl_reader *, const char *data, size_t len, FILE *f);

#endif
