/*
 * Fault rules and the control socket in the rumpblk(1) command: the
 * options serving commands share, and the control socket server.  See
 * fault.c and control.c.
 */
#ifndef RUMPBLK_CLI_CONTROL_H
#define RUMPBLK_CLI_CONTROL_H

#include <getopt.h>
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
/* Close the control socket and the log. */
void	cli_fault_stop(struct cli_fault_opts *, struct rumpblk *);
/* Free what cli_fault_option() took (any time; again is harmless). */
void	cli_fault_opts_free(struct cli_fault_opts *);

/* What 'rumpblk faults --help' prints. */
extern const char cli_fault_reference[];

/*
 * The control socket: a thread that accepts on a Unix socket at path and
 * answers each command line with one JSON line; reset resets unit.  An
 * existing socket file nobody listens on is replaced; one in use is
 * EADDRINUSE.
 */
int	cli_control_start(struct rumpblk *, int unit, const char *path,
	    struct cli_control **);
void	cli_control_stop(struct cli_control *);
/* One command, one answer (no newline) to f.  For the server and tests. */
void	cli_control_command(struct rumpblk *, int unit, char *line, FILE *f);

#endif
