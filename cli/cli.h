/*
 * The rumpblk(1) command: shared helpers and one entry point per
 * subcommand.  The command uses the library's public API only.
 */
#ifndef RUMPBLK_CLI_H
#define RUMPBLK_CLI_H

#include <getopt.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <time.h>

#include <rumpblk/rumpblk.h>

extern const char *progname;

/* Print "rumpblk: " and the message to stderr. */
void	cli_err(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* The same, "rumpblk WHO: " when who is not NULL. */
/* What the messages are about, said after progname (NULL: nothing): the
 * option whose file is being opened, say. */
extern const char *cli_context;
void	cli_verr(const char *who, const char *fmt, va_list)
	    __attribute__((format(printf, 2, 0)));

/*
 * pread until len bytes or the end of the file: 0 with the bytes read in
 * *gotp, or an errno.  cli_pread_all: all len bytes or an error (EIO at
 * the end of the file).  cli_pwrite_full: all of it, or an errno.
 */
int	cli_pread_full(int fd, void *, size_t len, uint64_t off, size_t *gotp);
/* Nanoseconds on clock id (CLOCK_MONOTONIC, CLOCK_THREAD_CPUTIME_ID). */
uint64_t cli_clock_ns(clockid_t id);
int	cli_pread_all(int fd, void *, size_t len, uint64_t off);
int	cli_pwrite_full(int fd, const void *, size_t len, uint64_t off);

/*
 * Parse a size: decimal digits with an optional K, M, G or T suffix
 * (powers of 1024; "KiB"/"k" spellings too).  0 or EINVAL/ERANGE.
 */
int	cli_parse_size(const char *, uint64_t *);
/* Parse an unsigned number in [min, max]; 0 or EINVAL/ERANGE. */
int	cli_parse_uint(const char *, uint64_t min, uint64_t max, uint64_t *);

struct cli_fault_opts;

/*
 * A subcommand's command line, for cli_parse_args().  Each option goes
 * to ca_option, then, if ca_fault is set, to cli_fault_option() (the
 * fault options, which ca_opts lists with CLI_FAULT_LONGOPTS); one that
 * neither takes is a usage error.  --help is 'h' in ca_opts.
 */
struct cli_args {
	const char		*ca_name;	/* "serve", for messages */
	const struct option	*ca_opts;
	void			(*ca_usage)(FILE *);
	/*
	 * The command's option c with argument arg (or NULL): 0, or the
	 * exit status after a message (1 or 2); -1 if c is not its own.
	 */
	int			(*ca_option)(void *ctx, int c,
				    const char *arg);
	void			*ca_ctx;
	struct cli_fault_opts	*ca_fault;	/* NULL: no fault options */
	int			ca_noperands;	/* exactly this many */
	const char		*ca_operands;	/* "one IMAGE", for messages */
};

/*
 * Parse a subcommand's argv (argv[0] its name, as main passes it).
 * true: the ca_noperands operands start at *operandsp.  false: the
 * command returns *rcp now -- 0 after --help (usage on stdout), 2 after
 * a usage message, or what an option's parser returned -- and the fault
 * options taken so far are freed.
 */
bool	cli_parse_args(const struct cli_args *, int argc, char **argv,
	    char ***operandsp, int *rcp);

/*
 * An option's value, or false after a message that names the option and
 * the value: a size (cli_parse_size), a number in [min, max], a backend
 * name (rumpblk_backend_parse).
 */
bool	cli_opt_size(const char *opt, const char *arg, uint64_t *);
bool	cli_opt_uint(const char *opt, const char *arg, uint64_t min,
	    uint64_t max, uint64_t *);
bool	cli_opt_backend(const char *arg, enum rumpblk_backend *);
/* --sector-size N: a power of two, 512 to 65536, as a shift; false after
 * saying what is wrong. */
bool	cli_parse_sectsize(const char *, unsigned *);

/* Write a JSON string literal (quotes and escapes) to f (fe_json_string). */
void	cli_json_string(FILE *, const char *);
/* "regular file", "block device", "character device" */
const char *cli_ftype_name(enum rumpblk_ftype);

/*
 * Does IMAGE name a backing spec rather than a host file by its path:
 * an NBD URI (nbd://, nbd+unix://, the nbds and vsock forms), rbd:POOL/
 * IMAGE[@SNAP], overlay:PATH?  Such an IMAGE has no file here to stat,
 * lock, create or cover with windows.
 */
bool	cli_is_spec(const char *image);

/* Ceph options the commands that take a spec share (--ceph-conf, -id). */
struct cli_spec_opts {
	const char	*cs_ceph_conf;
	const char	*cs_ceph_id;
};

/*
 * Register IMAGE as a unit: a host file with rumpblk_register, a spec
 * with rumpblk_register_spec (the window, read-only, the Ceph options).
 * 0, or the error after a message that names IMAGE (and, for a spec,
 * what the backing said).  A host file's error is the caller's to
 * explain: the message is printed only for a spec.
 */
int	cli_register(struct rumpblk *, const char *image, uint64_t offset,
	    uint64_t size, bool readonly, const struct cli_spec_opts *,
	    int *unitp);

/*
 * After rumpblk_register(image, offset, size) failed with error under
 * cfg: if the cause is that the host refuses the backend cfg asked for
 * (O_DIRECT, io_uring) -- checked by registering with pio instead --
 * print a message that says so and return true.
 */
bool	cli_backend_refused(const char *image, const struct rumpblk_config *,
	    uint64_t offset, uint64_t size, int error);

/*
 * The CLI's default mmap windows (DESIGN.md §5): windows that cover the
 * host range [offset, offset + size), since 64-bit hosts need not ration
 * address space as the seed's 16 x 1 MiB did.  A window size from 1 MiB
 * to 1 GiB (the smallest power of two that holds size, capped), and as
 * many windows as the range spans, up to 64 GiB of address space.  A
 * non-zero *winsize or *wincount (from a flag or the environment) is
 * kept and the other one fitted to it.
 */
void	cli_cover_windows(uint64_t offset, uint64_t size, uint64_t *winsize,
	    uint64_t *wincount);

/*
 * Set cfg's windows for IMAGE as the CLI does: a flag's value (non-zero
 * winsize/wincount) wins, then RUMP_BLKWINSIZE/RUMP_BLKWINCOUNT (already
 * applied to cfg by rumpblk_config_from_env), then windows covering
 * [offset, offset + size) of IMAGE (size RUMPBLK_SIZENOTSET: the rest of
 * the file).
 */
void	cli_default_windows(struct rumpblk_config *, const char *image,
	    uint64_t offset, uint64_t size, uint64_t winsize,
	    uint64_t wincount);

/* stats-json.c: the statistics as JSON, one writer for every command. */

/*
 * The members of a statistics object, without the braces: every counter
 * of st under its struct rumpblk_stats name, the latency records, and
 * "faults" ({"injected":N,"by_class":{...},"rules":[...]}, the rules of
 * rb).  For a command that puts its own members beside them.
 */
void	cli_stats_json_members(FILE *, struct rumpblk *,
	    const struct rumpblk_stats *);
/* {...}: those members for a snapshot of every unit of rb, the
 * latency histograms, "units" (each unit's own view, for the watch),
 * "connections" (front-end connection records, rumpblk_conn_list) and
 * "connections_ended", and "nbd" from the command's hook if it set one. */
void	cli_stats_json(FILE *, struct rumpblk *);
/*
 * The hook: fn(f, arg) writes the value of an "nbd" member (serve: the
 * flush audit of its connections).  Setting it waits for a writer that
 * is using the old one; NULL removes it.
 */
void	cli_stats_set_extra(void (*fn)(FILE *, void *), void *arg);
/*
 * The latency histograms (issue 17).  The ops in the order they are
 * shown, as RUMPBLK_B_ bits, and their names ("read", ... "extents").
 */
#define CLI_NOPS	6
extern const int cli_ops[CLI_NOPS];
const char *cli_op_name(int op);
/* One histogram: {"count","timed","sum_ns","max_ns","p50_ns","p90_ns",
 * "p99_ns","p999_ns","buckets":[[LE_NS,N],...]} (non-empty buckets, by
 * their inclusive upper bound; null for the last). */
void	cli_hist_json(FILE *, const struct rumpblk_hist *);
/* "latency":{"layout":{...},"ops":{"read":H,...},"faults":{CLASS:H,...}},
 * a member, for a unit or (-1) the instance. */
void	cli_stats_latency_json(FILE *, struct rumpblk *, int unit);
/* control.c: rumpblk ctl PATH stats --watch [--interval S]
 * [--count N] (its arguments from --watch on); the exit status. */
int	cli_stats_watch(const char *path, int argc, char **argv);
/* One fault rule: {"id","rule","class","matches","firings","seed"}. */
void	cli_fault_rule_json(FILE *, const struct rumpblk_fault_info *);
/* {"model":..,"seed":..,...,"bytes_lost":..}: what a power cut did. */
void	cli_powercut_json(FILE *, const struct rumpblk_powercut *);

struct cli_cmd {
	const char	*name;
	int		(*main)(int argc, char **argv);
	const char	*summary;
};

int	cmd_info(int, char **);
int	cmd_create(int, char **);
int	cmd_faults(int, char **);
int	cmd_ctl(int, char **);
int	cmd_serve(int, char **);
int	cmd_bench(int, char **);
int	cmd_log(int, char **);
int	cmd_crash_check(int, char **);

#endif
