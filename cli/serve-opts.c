/*
 * rumpblk serve's command line: its --help, its options, and the checks
 * that need no image (serve.c does the rest; DESIGN.md §5 is the
 * contract these options keep).
 *
 *   rumpblk serve [options] IMAGE
 *
 * IMAGE is a host file or device, or a backing spec (cli_is_spec): an NBD
 * URI, rbd:POOL/IMAGE[@SNAP] (with --ceph-conf, --ceph-id), overlay:PATH.
 *
 *   --socket PATH          listen on a Unix socket
 *   --fuse PATH            export the unit as a file in a FUSE mount at
 *                          PATH (frontend/fuse; PATH/disk for a
 *                          directory); alone, no NBD listener
 *   --listen ADDR:PORT     listen on TCP (repeatable; default
 *                          127.0.0.1:10809 when neither is given; PORT 0
 *                          picks a free port; IPv6 as [::1]:PORT)
 *   --export NAME          the export name LIST reports (any name is
 *                          accepted from clients)
 *   --add-export NAME=IMAGE   serve IMAGE too, as the export NAME: unit
 *                          1, 2, ... (repeatable); then names must match
 *   --read-only            refuse writes (also for a read-only image)
 *   --offset N, --size N   the unit is N bytes of IMAGE from offset
 *   --create               create IMAGE, sparse, of --size bytes (never
 *                          overwrites)
 *   --backend B            auto, mmap, pio, direct or uring
 *   --sector-size N        512 ... 65536, a power of two
 *   --winsize N, --wincount N   mmap windows (default: cover the image)
 *   --fail N, --fail-seed S     seed-mode fault injection (RUMP_BLKFAIL)
 *   --stats FILE           counters as JSON at exit
 *   --metrics ADDR:PORT    Prometheus metrics over HTTP (cli/metrics.c)
 *   --fault RULE, --fault-log FILE, --fault-replay FILE, --control PATH
 *                          fault rules (cli/fault.c, cli/control.c)
 *   --run CMD              captive mode: run sh -c CMD with $uri,
 *                          $unixsocket, $port, $fuse, $pid; stop when it exits
 *                          and exit with its status
 *   --pidfile FILE         written once the sockets listen
 *   --threads N            library worker threads for asynchronous I/O
 *                          (default 1; see serve.c)
 *   --max-connections N    clients in transmission (default 64)
 *   --max-handshakes N     clients in the handshake (default 1024; past
 *                          it the oldest is closed)
 *   --handshake-timeout S  a handshake ends within S seconds or is
 *                          closed (default 10; 0: no limit)
 *   --shutdown-timeout S   give up on clients that do not read replies
 *                          S seconds after SIGINT/SIGTERM (default 10)
 *   --no-lock              do not take the image's OFD lock
 *   --copy-reads           no loans: every READ reply copied first
 *   --tls=off|on|require   STARTTLS (frontend/nbd/tls.c), with
 *   --tls-certificates DIR or --tls-psk FILE, and --tls-verify-peer;
 *                          how they go together is checked here (a
 *                          usage error), the files in serve.c
 *   --ceph-conf FILE, --ceph-id NAME   for rbd: specs
 *
 * Sizes take K, M, G, T suffixes (powers of 1024).  Flags override the
 * RUMP_BLK* environment.  A bad value is refused here, naming the
 * option, before anything is opened.
 */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "nbd.h"
#include "serve.h"

/*
 * --fuse PATH, or NULL.  XXX(#16): a field of struct serve_opts belongs
 * in serve.h, which other work had open when --fuse came; until it moves
 * there, serve.c reads this.
 */
const char *serve_fuse_path;
/* --metrics ADDR:PORT, or NULL (serve.c starts it: cli/metrics.c). */
const char *serve_metrics_addr;

static void
serve_usage(FILE *f)
{
	fprintf(f,
"usage: rumpblk serve [options] IMAGE\n\n"
"Export IMAGE as a block device over NBD until SIGINT or SIGTERM.  IMAGE\n"
"is a file or device, or a remote disk: an NBD URI (nbd://HOST[:PORT]/\n"
"EXPORT, nbd+unix:///EXPORT?socket=PATH, nbds://... with TLS) or a Ceph\n"
"image (rbd:POOL/IMAGE[@SNAP]); or overlay:PATH, a copy-on-write view of\n"
"PATH that is never written.\n\n"
"  --socket PATH          listen on a Unix socket at PATH\n"
"  --fuse PATH            also export IMAGE as a file in a FUSE mount on\n"
"                         PATH, an existing file or directory (then the\n"
"                         file is PATH/disk); with --fuse alone there is\n"
"                         no NBD listener\n"
"  --listen ADDR:PORT     listen on TCP (repeatable; default 127.0.0.1:10809\n"
"                         when no --socket or --listen is given; PORT 0 picks\n"
"                         a free port; IPv6 as [::1]:PORT)\n"
"  --export NAME          export name reported by LIST (clients may ask\n"
"                         for any name, unless --add-export is given)\n"
"  --add-export NAME=IMAGE\n"
"                         serve IMAGE too, as the export NAME (repeatable):\n"
"                         units 1, 2, ... in order, each with the same\n"
"                         --backend, --read-only, --sector-size and\n"
"                         --write-cache as IMAGE (unit 0; --offset, --size,\n"
"                         --create and --write-log are IMAGE's only); a\n"
"                         client then picks one by name (\"\" is IMAGE's)\n"
"  --read-only            refuse writes\n"
"  --offset N             the unit starts N bytes into IMAGE\n"
"  --size N               the unit is N bytes (default: the rest)\n"
"  --create               create IMAGE (sparse) of --size bytes; never\n"
"                         overwrites an existing file\n"
"  --backend B            auto, mmap, pio, direct or uring\n"
"  --sector-size N        512, 1024, ..., 65536\n"
"  --winsize N            mmap window size (default: windows cover IMAGE)\n"
"  --wincount N           mmap window count\n"
"  --fail N               fail N of 10000 reads and writes with EIO\n"
"  --fail-seed S          seed of those failures (printed either way)\n"
"  --stats FILE           write the counters as JSON to FILE at exit\n"
"  --metrics ADDR:PORT    serve counters and latency histograms for\n"
"                         Prometheus at http://ADDR:PORT/metrics (ADDR\n"
"                         default 127.0.0.1; PORT 0 picks a free port)\n"
CLI_FAULT_HELP
"  --run CMD              captive mode: run 'sh -c CMD' with $uri,\n"
"                         $unixsocket, $port, $fuse and $pid set; stop\n"
"                         when CMD exits, with its exit status\n"
"  --pidfile FILE         write the PID to FILE once the sockets listen\n"
"  --threads N            worker threads for asynchronous I/O (default 1,\n"
"                         best for page-cached images; raise it for slow\n"
"                         storage; 0: the library's default)\n"
"  --max-connections N    clients served at once (default 64); more are\n"
"                         refused when their handshake ends\n"
"  --max-handshakes N     clients in the handshake at once (default 1024);\n"
"                         past it the oldest of them is closed\n"
"  --handshake-timeout S  close clients that have not finished the\n"
"                         handshake S seconds after connecting (default\n"
"                         10; 0: no limit)\n"
"  --shutdown-timeout S   at SIGINT/SIGTERM, give up on clients that do\n"
"                         not read their replies after S seconds (10)\n"
"  --no-lock              do not lock IMAGE against a second writer\n"
"  --copy-reads           copy every read into a buffer before sending\n"
"                         it (by default, with the mmap backend and no\n"
"                         layers, replies go out from the image's pages)\n"
"  --tls=off|on|require   TLS (NBD STARTTLS): off (default); on: clients\n"
"                         choose; require: plaintext clients are refused\n"
"  --tls-certificates DIR ca-cert.pem, server-cert.pem, server-key.pem\n"
"                         (and ca-crl.pem if present) in DIR\n"
"  --tls-psk FILE         pre-shared keys, USERNAME:HEXKEY lines (psktool)\n"
"  --tls-verify-peer      clients must show a certificate ca-cert.pem\n"
"                         signed\n"
"  --ceph-conf FILE       the Ceph configuration for rbd: (default: Ceph's)\n"
"  --ceph-id NAME         the Ceph client id for rbd: (default: admin)\n"
"Sizes take K, M, G and T suffixes (powers of 1024).\n");
}

enum {
	O_SOCKET = 256, O_LISTEN, O_EXPORT, O_RO, O_OFFSET, O_SIZE, O_CREATE,
	O_BACKEND, O_SECTOR, O_WINSIZE, O_WINCOUNT, O_FAIL, O_FAILSEED,
	O_STATS, O_RUN, O_PIDFILE, O_THREADS, O_MAXCONN, O_SHUTDOWN,
	O_NOLOCK, O_CEPHCONF, O_CEPHID, O_MAXHS, O_HSTIMEOUT, O_ADDEXPORT,
	O_TLS, O_TLSCERTS, O_TLSPSK, O_TLSVERIFY,
	O_FUSE,
	O_METRICS, O_COPYREADS,
};

static const struct option serve_longopts[] = {
	{ "socket", required_argument, NULL, O_SOCKET },
	{ "fuse", required_argument, NULL, O_FUSE },
	{ "metrics", required_argument, NULL, O_METRICS },
	{ "listen", required_argument, NULL, O_LISTEN },
	{ "export", required_argument, NULL, O_EXPORT },
	{ "add-export", required_argument, NULL, O_ADDEXPORT },
	{ "read-only", no_argument, NULL, O_RO },
	{ "offset", required_argument, NULL, O_OFFSET },
	{ "size", required_argument, NULL, O_SIZE },
	{ "create", no_argument, NULL, O_CREATE },
	{ "backend", required_argument, NULL, O_BACKEND },
	{ "sector-size", required_argument, NULL, O_SECTOR },
	{ "winsize", required_argument, NULL, O_WINSIZE },
	{ "wincount", required_argument, NULL, O_WINCOUNT },
	{ "fail", required_argument, NULL, O_FAIL },
	{ "fail-seed", required_argument, NULL, O_FAILSEED },
	{ "stats", required_argument, NULL, O_STATS },
	{ "run", required_argument, NULL, O_RUN },
	{ "pidfile", required_argument, NULL, O_PIDFILE },
	{ "threads", required_argument, NULL, O_THREADS },
	{ "max-connections", required_argument, NULL, O_MAXCONN },
	{ "max-handshakes", required_argument, NULL, O_MAXHS },
	{ "handshake-timeout", required_argument, NULL, O_HSTIMEOUT },
	{ "shutdown-timeout", required_argument, NULL, O_SHUTDOWN },
	{ "no-lock", no_argument, NULL, O_NOLOCK },
	{ "copy-reads", no_argument, NULL, O_COPYREADS },
	{ "ceph-conf", required_argument, NULL, O_CEPHCONF },
	{ "ceph-id", required_argument, NULL, O_CEPHID },
	{ "tls", required_argument, NULL, O_TLS },
	{ "tls-certificates", required_argument, NULL, O_TLSCERTS },
	{ "tls-psk", required_argument, NULL, O_TLSPSK },
	{ "tls-verify-peer", no_argument, NULL, O_TLSVERIFY },
	{ "help", no_argument, NULL, 'h' },
	CLI_FAULT_LONGOPTS,
	{ NULL, 0, NULL, 0 },
};

/* The options that go into the instance's configuration. */
static int
config_option(struct serve_opts *o, int c, const char *arg)
{
	struct rumpblk_config *cfg = &o->so_cfg;
	uint64_t v;

	switch (c) {
	case O_BACKEND:
		return cli_opt_backend(arg, &cfg->backend) ? 0 : 2;
	case O_SECTOR:
		return cli_parse_sectsize(arg, &cfg->sectshift) ? 0 : 2;
	case O_WINSIZE:
		if (!cli_opt_size("--winsize", arg, &v))
			return 2;
		if (v == 0 || (v & (v - 1)) != 0 || v < 4096) {
			cli_err("--winsize: '%s' is not a power of two of at "
			    "least 4K", arg);
			return 2;
		}
		cfg->winsize = v;
		o->so_winsize_set = true;
		return 0;
	case O_WINCOUNT:
		if (!cli_opt_uint("--wincount", arg, 1, 1u << 20, &v))
			return 2;
		cfg->wincount = (unsigned)v;
		o->so_wincount_set = true;
		return 0;
	case O_FAIL:
		if (!cli_opt_uint("--fail", arg, 0, RUMPBLK_BLKFAIL_MAX, &v))
			return 2;
		cfg->fail = (unsigned)v;
		return 0;
	case O_FAILSEED:
		if (!cli_opt_uint("--fail-seed", arg, 0, UINT32_MAX, &v))
			return 2;
		cfg->fail_seed = (uint32_t)v;
		cfg->fail_seed_set = true;
		return 0;
	case O_THREADS:
		if (!cli_opt_uint("--threads", arg, 0, 1024, &v))
			return 2;
		cfg->workers = (unsigned)v;
		return 0;
	}
	return -1;
}

/* The options that keep their argument: where, or NULL. */
static const char **
string_option(struct serve_opts *o, int c)
{
	switch (c) {
	case O_SOCKET:	return &o->so_socket;
	case O_FUSE:	return &serve_fuse_path;
	case O_METRICS:	return &serve_metrics_addr;
	case O_STATS:	return &o->so_stats;
	case O_RUN:	return &o->so_run;
	case O_PIDFILE:	return &o->so_pidfile;
	case O_CEPHCONF: return &o->so_spec.cs_ceph_conf;
	case O_CEPHID:	return &o->so_spec.cs_ceph_id;
	case O_TLSCERTS: return &o->so_tls.certdir;
	case O_TLSPSK:	return &o->so_tls.pskfile;
	}
	return NULL;
}

/* The options that take no argument: the flag they set, or NULL. */
static bool *
flag_option(struct serve_opts *o, int c)
{
	switch (c) {
	case O_RO:	return &o->so_read_only;
	case O_CREATE:	return &o->so_create;
	case O_NOLOCK:	return &o->so_no_lock;
	case O_COPYREADS: return &o->so_copy_reads;
	case O_TLSVERIFY: return &o->so_tls.verify_peer;
	}
	return NULL;
}

/* One option for cli_parse_args: 0, 2 (said), or -1 if not serve's. */
static int
serve_option(void *ctx, int c, const char *arg)
{
	struct serve_opts *o = ctx;
	const char **sp;
	bool *bp;

	if ((sp = string_option(o, c)) != NULL) {
		*sp = arg;
		return 0;
	}
	if ((bp = flag_option(o, c)) != NULL) {
		*bp = true;
		return 0;
	}
	switch (c) {
	case O_LISTEN:
		if (o->so_nlisten == SERVE_MAX_LISTEN) {
			cli_err("--listen: at most %d addresses",
			    SERVE_MAX_LISTEN);
			return 2;
		}
		o->so_listen[o->so_nlisten++] = arg;
		return 0;
	case O_EXPORT:
		if (strlen(arg) > 4096) {
			cli_err("--export: names are at most 4096 bytes");
			return 2;
		}
		o->so_export = arg;
		return 0;
	case O_ADDEXPORT: {
		struct serve_more *m = &o->so_more[o->so_nmore];
		char *eq = strchr(arg, '=');

		if (o->so_nmore == SERVE_MAX_MORE) {
			cli_err("--add-export: at most %d", SERVE_MAX_MORE);
			return 2;
		}
		if (eq == NULL || eq == arg || eq[1] == '\0' ||
		    eq - arg > 4096) {
			cli_err("--add-export: '%s': want NAME=IMAGE (a name "
			    "of 1 to 4096 bytes)", arg);
			return 2;
		}
		if ((m->sm_name = strndup(arg, (size_t)(eq - arg))) == NULL) {
			cli_err("--add-export: out of memory");
			return 1;
		}
		m->sm_image = eq + 1;
		o->so_nmore++;
		return 0;
	}
	case O_OFFSET:
		return cli_opt_size("--offset", arg, &o->so_offset) ? 0 : 2;
	case O_SIZE:
		if (!cli_opt_size("--size", arg, &o->so_size))
			return 2;
		o->so_size_set = true;
		return 0;
	case O_MAXCONN:
		return cli_opt_uint("--max-connections", arg, 1, 100000,
		    &o->so_max_conn) ? 0 : 2;
	case O_SHUTDOWN:
		return cli_opt_uint("--shutdown-timeout", arg, 0, 86400,
		    &o->so_shutdown_s) ? 0 : 2;
	case O_TLS:
		if (strcmp(arg, "off") == 0)
			o->so_tls.mode = NBD_TLS_OFF;
		else if (strcmp(arg, "on") == 0)
			o->so_tls.mode = NBD_TLS_ON;
		else if (strcmp(arg, "require") == 0)
			o->so_tls.mode = NBD_TLS_REQUIRE;
		else {
			cli_err("--tls: '%s' is not off, on or require", arg);
			return 2;
		}
		return 0;
	case O_MAXHS:
		return cli_opt_uint("--max-handshakes", arg, 1, 100000,
		    &o->so_max_hs) ? 0 : 2;
	case O_HSTIMEOUT:
		return cli_opt_uint("--handshake-timeout", arg, 0, 86400,
		    &o->so_hs_timeout_s) ? 0 : 2;
	}
	return config_option(o, c, arg);
}

bool
serve_parse(int argc, char **argv, struct serve_opts *o, int *rcp)
{
	const struct cli_args ca = {
		.ca_name = "serve", .ca_opts = serve_longopts,
		.ca_usage = serve_usage, .ca_option = serve_option,
		.ca_ctx = o, .ca_fault = &o->so_fault,
		.ca_noperands = 1, .ca_operands = "one IMAGE",
	};
	char **operands, msg[512];

	memset(o, 0, sizeof(*o));
	serve_fuse_path = NULL;
	serve_metrics_addr = NULL;
	o->so_export = "";
	o->so_size = RUMPBLK_SIZENOTSET;
	o->so_max_conn = 64;
	o->so_max_hs = NBD_DEFAULT_MAX_HANDSHAKES;
	o->so_hs_timeout_s = NBD_DEFAULT_HANDSHAKE_MS / 1000;
	o->so_shutdown_s = 10;
	rumpblk_config_init(&o->so_cfg);
	rumpblk_config_from_env(&o->so_cfg, stderr);
	o->so_cfg.workers = 1;		/* see "Threads" in serve.c */
	if (!cli_parse_args(&ca, argc, argv, &operands, rcp))
		goto free_opts;
	o->so_image = operands[0];
	if (o->so_create && !o->so_size_set) {
		cli_err("--create: needs --size");
		*rcp = 2;
		goto free_opts;
	}
	if (o->so_create && cli_is_spec(o->so_image)) {
		cli_err("--create makes a local file; %s is not one",
		    o->so_image);
		*rcp = 2;
		goto free_opts;
	}
	for (int i = 0; i < o->so_nmore; i++) {
		bool dup = strcmp(o->so_more[i].sm_name, o->so_export) == 0;

		for (int j = 0; j < i; j++)
			dup |= strcmp(o->so_more[i].sm_name,
			    o->so_more[j].sm_name) == 0;
		if (dup) {
			cli_err("--add-export %s: that export name is taken "
			    "(by --export or another --add-export)",
			    o->so_more[i].sm_name);
			*rcp = 2;
			goto free_opts;
		}
	}
	if (o->so_nmore > 0 && o->so_socket == NULL && o->so_nlisten == 0 &&
	    serve_fuse_path != NULL) {
		cli_err("--add-export: the FUSE mount serves IMAGE only; give "
		    "--socket or --listen to serve the other exports");
		*rcp = 2;
		goto free_opts;
	}
	if (nbd_tls_check_config(&o->so_tls, msg, sizeof(msg)) != 0) {
		cli_err("%s", msg);
		*rcp = 2;
		goto free_opts;
	}
	if (o->so_socket == NULL && o->so_nlisten == 0 &&
	    serve_fuse_path == NULL)
		o->so_listen[o->so_nlisten++] = "127.0.0.1:10809";
	if (o->so_socket != NULL && access(o->so_socket, F_OK) == 0) {
		cli_err("--socket: %s already exists", o->so_socket);
		*rcp = 1;
		goto free_opts;
	}
	return true;
free_opts:
	serve_opts_free(o);
	return false;
}

void
serve_opts_free(struct serve_opts *o)
{
	for (int i = 0; i < o->so_nmore; i++) {
		free(o->so_more[i].sm_name);
		o->so_more[i].sm_name = NULL;
	}
	o->so_nmore = 0;
	cli_fault_opts_free(&o->so_fault);
}
