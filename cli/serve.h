/*
 * rumpblk serve, in two files by job: serve-opts.c turns the command
 * line into a struct serve_opts and checks what needs no image;
 * serve.c opens the image and runs the server.  Private to those two.
 */
#ifndef RUMPBLK_CLI_SERVE_H
#define RUMPBLK_CLI_SERVE_H

#include <stdbool.h>
#include <stdint.h>

#include <rumpblk/rumpblk.h>

#include "control.h"
#include "tls.h"

#define SERVE_MAX_LISTEN	4
#define SERVE_MAX_MORE		15	/* --add-export */

/* --add-export NAME=IMAGE: another unit, under its own export name. */
struct serve_more {
	char		*sm_name;	/* malloc'd */
	const char	*sm_image;
};

/* What the command line asked for; read-only once parsed. */
struct serve_opts {
	const char	*so_image;
	const char	*so_socket;	/* --socket, or NULL */
	const char	*so_listen[SERVE_MAX_LISTEN]; /* --listen, in order */
	int		so_nlisten;
	const char	*so_export;	/* "" unless --export */
	struct serve_more so_more[SERVE_MAX_MORE]; /* units 1, 2, ... */
	int		so_nmore;
	bool		so_read_only;
	uint64_t	so_offset;
	uint64_t	so_size;	/* RUMPBLK_SIZENOTSET: the rest */
	bool		so_size_set;
	bool		so_create;
	const char	*so_stats;	/* --stats FILE, or NULL */
	const char	*so_run;	/* --run CMD, or NULL */
	const char	*so_pidfile;	/* --pidfile FILE, or NULL */
	uint64_t	so_max_conn;
	uint64_t	so_max_hs;	/* --max-handshakes */
	uint64_t	so_hs_timeout_s; /* --handshake-timeout; 0: none */
	uint64_t	so_shutdown_s;
	bool		so_no_lock;
	bool		so_copy_reads;	/* --copy-reads */
	bool		so_winsize_set;	/* so_cfg.winsize is a flag's */
	bool		so_wincount_set; /* so_cfg.wincount is a flag's */
	/*
	 * RUMP_BLK*, overridden by --backend, --sector-size, --winsize,
	 * --wincount, --fail, --fail-seed and --threads.
	 */
	struct rumpblk_config so_cfg;
	struct cli_fault_opts so_fault;	/* --fault, ..., --control */
	struct cli_spec_opts so_spec;	/* --ceph-conf, --ceph-id */
	/* --tls, --tls-certificates, --tls-psk, --tls-verify-peer */
	struct nbd_tls_config so_tls;
};

/*
 * Parse and check serve's arguments (argv[0] "rumpblk serve") into o.
 * true: go on, and serve_opts_free(o) at the end.  false: return *rcp
 * now (0 after --help; otherwise the error has been said).
 */
bool	serve_parse(int argc, char **argv, struct serve_opts *o, int *rcp);
void	serve_opts_free(struct serve_opts *);

#endif
