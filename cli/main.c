/*
 * rumpblk(1): the command's entry point and subcommand table.
 */
#include <stdio.h>
#include <string.h>

#include "cli.h"

static const struct cli_cmd cmds[] = {
	{ "info", cmd_info, "describe an image as a rumpblk unit" },
	{ "create", cmd_create, "create a sparse image of a given size" },
	{ "faults", cmd_faults, "the fault rule reference (--fault RULE)" },
	{ "ctl", cmd_ctl, "send a command to a --control socket" },
	{ "serve", cmd_serve, "export an image over NBD" },
	{ "bench", cmd_bench, "measure in-process I/O throughput" },
	{ "log", cmd_log, "inspect and replay a write log (--write-log)" },
	{ "crash-check", cmd_crash_check,
	    "run a checker on every crash state of a write log" },
};
#define NCMDS (sizeof(cmds) / sizeof(cmds[0]))

static void
usage(FILE *f)
{
	size_t i;

	fprintf(f, "usage: rumpblk [--help | --version] COMMAND [ARGS...]\n\n"
	    "rumpblk presents a host file or device as a block device, in\n"
	    "the style of NetBSD's rumpblk driver.\n\nCommands:\n");
	for (i = 0; i < NCMDS; i++)
		fprintf(f, "  %-12s %s\n", cmds[i].name, cmds[i].summary);
	fprintf(f, "\n'rumpblk COMMAND --help' describes a command; "
	    "rumpblk(1) has the details.\n");
}

int
main(int argc, char **argv)
{
	char *name;
	size_t i;

	if (argc < 2) {
		usage(stderr);
		return 2;
	}
	if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
		usage(stdout);
		return 0;
	}
	if (strcmp(argv[1], "--version") == 0 || strcmp(argv[1], "-V") == 0) {
		printf("rumpblk %s\n", rumpblk_version());
		return 0;
	}
	for (i = 0; i < NCMDS; i++)
		if (strcmp(argv[1], cmds[i].name) == 0) {
			/*
			 * getopt_long() names argv[0] in its messages; make
			 * that "rumpblk CMD", not a bare "CMD", so that
			 * "info: unrecognized option" says whose it is.
			 */
			if (asprintf(&name, "%s %s", progname,
			    cmds[i].name) != -1)
				argv[1] = name;
			return cmds[i].main(argc - 1, argv + 1);
		}
	if (argv[1][0] == '-')
		cli_err("unknown option '%s'; options of a command follow it "
		    "(try 'rumpblk --help')", argv[1]);
	else
		cli_err("unknown command '%s' (try 'rumpblk --help')", argv[1]);
	return 2;
}
