/*
 * rumpblk info: register an image as a unit and describe it.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"

static void
info_usage(FILE *f)
{
	fprintf(f, "usage: rumpblk info [--json] [--offset N] [--size N] "
	    "[--backend B]\n"
	    "                    [--sector-size N] [--ceph-conf FILE] "
	    "[--ceph-id NAME] IMAGE\n\n"
	    "Describe IMAGE as a rumpblk unit: file type, size, sector size,\n"
	    "the disklabel the unit reports and the backend in use (auto\n"
	    "shows what it picks); for a remote IMAGE (an NBD URI, rbd:POOL/\n"
	    "IMAGE[@SNAP]), what the remote offers.  Nothing is written to\n"
	    "IMAGE.\n\n"
	    "  --json            one JSON object on standard output\n"
	    "  --offset N        the unit starts N bytes into IMAGE\n"
	    "  --size N          the unit is N bytes (default: the rest)\n"
	    "  --backend B       auto, mmap, pio, direct or uring\n"
	    "  --sector-size N   512, 1024, ..., 65536\n"
	    "  --ceph-conf FILE  the Ceph configuration for rbd:\n"
	    "  --ceph-id NAME    the Ceph client id for rbd:\n"
	    "Sizes take K, M, G and T suffixes (powers of 1024).\n");
}

static bool
remote(const struct rumpblk_unitinfo *ui)
{
	return ui->ui_ftype == RUMPBLK_FT_NBD || ui->ui_ftype == RUMPBLK_FT_RBD;
}

static void
print_text(const char *image, const struct rumpblk_unitinfo *ui,
    const struct rumpblk_disklabel *dl, const char *asked,
    const char *status)
{
	printf("image:        %s\n", image);
	printf("type:         %s\n", cli_ftype_name(ui->ui_ftype));
	if (remote(ui))
		printf("remote:       %s\n", status);
	printf("size:         %" PRIu64 " bytes\n", ui->ui_size);
	/* A character device that cannot be sized reports host size 0. */
	if (ui->ui_ftype == RUMPBLK_FT_CHR && ui->ui_hostsize == 0)
		printf("window:       offset %" PRIu64 " of a device whose "
		    "size is unknown\n", ui->ui_offset);
	else if (ui->ui_offset != 0 || ui->ui_size != ui->ui_hostsize)
		printf("window:       offset %" PRIu64 " of %" PRIu64
		    " host bytes\n", ui->ui_offset, ui->ui_hostsize);
	printf("sector size:  %u\n", ui->ui_secsize);
	printf("sectors:      %" PRIu64 "%s\n", ui->ui_size / ui->ui_secsize,
	    ui->ui_size % ui->ui_secsize ? " (and a partial one)" : "");
	printf("access:       %s\n", ui->ui_mode & RUMPBLK_FWRITE ?
	    "read-write" : "read-only");
	printf("backend:      %s (asked: %s)\n",
	    rumpblk_backend_name(ui->ui_backend), asked);
	if (ui->ui_backend == RUMPBLK_BACKEND_MMAP)
		printf("windows:      %u x %" PRIu64 " bytes\n",
		    ui->ui_wincount, ui->ui_winsize);
	printf("disklabel:    type %.16s, pack %.16s, %u sectors%s of %u "
	    "bytes, %u partition(s)\n", dl->d_typename, dl->d_packname,
	    dl->d_secperunit, (uint64_t)dl->d_secperunit <
	    ui->ui_size / ui->ui_secsize ? " (clamped to 32 bits, as NetBSD "
	    "labels are)" : "", dl->d_secsize, dl->d_npartitions);
	printf("partition a:  %u sectors at %u\n", dl->d_partitions[0].p_size,
	    dl->d_partitions[0].p_offset);
	printf("checksum:     0x%04x\n", dl->d_checksum);
}

static void
print_json(const char *image, const struct rumpblk_unitinfo *ui,
    const struct rumpblk_disklabel *dl, const char *asked,
    const char *status)
{
	printf("{\"image\":");
	cli_json_string(stdout, image);
	printf(",\"type\":");
	cli_json_string(stdout, cli_ftype_name(ui->ui_ftype));
	printf(",\"size\":%" PRIu64 ",\"offset\":%" PRIu64
	    ",\"host_size\":%" PRIu64 ",\"sector_size\":%u,\"sectors\":%"
	    PRIu64 ",\"read_only\":%s,\"backend\":\"%s\","
	    "\"backend_requested\":\"%s\"",
	    ui->ui_size, ui->ui_offset, ui->ui_hostsize, ui->ui_secsize,
	    ui->ui_size / ui->ui_secsize,
	    ui->ui_mode & RUMPBLK_FWRITE ? "false" : "true",
	    rumpblk_backend_name(ui->ui_backend), asked);
	if (ui->ui_backend == RUMPBLK_BACKEND_MMAP)
		printf(",\"winsize\":%" PRIu64 ",\"wincount\":%u",
		    ui->ui_winsize, ui->ui_wincount);
	if (remote(ui)) {
		printf(",\"remote\":");
		cli_json_string(stdout, status);
	}
	printf(",\"disklabel\":{\"magic\":%u,\"magic2\":%u,\"type\":%u,"
	    "\"typename\":\"%.16s\",\"packname\":\"%.16s\",\"secsize\":%u,"
	    "\"secperunit\":%u,\"npartitions\":%u,\"checksum\":%u,"
	    "\"partitions\":[{\"size\":%u,\"offset\":%u,\"fstype\":%u}]}}\n",
	    dl->d_magic, dl->d_magic2, dl->d_type, dl->d_typename,
	    dl->d_packname, dl->d_secsize, dl->d_secperunit,
	    dl->d_npartitions, dl->d_checksum, dl->d_partitions[0].p_size,
	    dl->d_partitions[0].p_offset, dl->d_partitions[0].p_fstype);
}

/*
 * Say why rumpblk_register() refused IMAGE, naming what is at fault.  The
 * library's EINVAL and EOPNOTSUPP each cover several causes; stat(2) and a
 * probe registration of an empty window (which fits any file) tell them
 * apart and give the file's size.
 */
static void
explain_register_error(const char *image, int error, uint64_t offset,
    uint64_t size, const char *backend)
{
	struct rumpblk_config cfg;
	struct rumpblk_unitinfo ui;
	struct rumpblk *probe;
	struct stat st;
	bool chr, sized = false;
	uint64_t hostsize = 0;
	int unit;

	if (stat(image, &st) == -1) {
		cli_err("%s: %s", image, strerror(errno));
		return;
	}
	if (S_ISDIR(st.st_mode)) {
		cli_err("%s: is a directory, not an image", image);
		return;
	}
	if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode) &&
	    !S_ISCHR(st.st_mode)) {
		cli_err("%s: is a %s; an image must be a regular file, a "
		    "block device or a character device", image,
		    S_ISFIFO(st.st_mode) ? "FIFO" : S_ISSOCK(st.st_mode) ?
		    "socket" : "special file");
		return;
	}
	chr = S_ISCHR(st.st_mode);
	/* The probe uses pio, so that a backend this build lacks cannot
	 * hide the file's size. */
	rumpblk_config_init(&cfg);
	cfg.backend = RUMPBLK_BACKEND_PIO;
	if (error == EINVAL && rumpblk_create(&cfg, &probe) == 0) {
		if (rumpblk_register(probe, image, 0, 0, &unit) == 0 &&
		    rumpblk_unitinfo(probe, unit, &ui) == 0) {
			hostsize = ui.ui_hostsize;
			sized = true;
		}
		rumpblk_destroy(probe);
	}
	if (error == EINVAL && sized && hostsize == 0 && offset == 0 &&
	    size == RUMPBLK_SIZENOTSET)
		cli_err("%s: is empty (0 bytes); there is no device to "
		    "describe", image);
	else if (error == EINVAL && sized && size == RUMPBLK_SIZENOTSET)
		cli_err("%s: --offset %" PRIu64 " is not inside the file "
		    "(%" PRIu64 " bytes)", image, offset, hostsize);
	else if (error == EINVAL && sized)
		cli_err("%s: --offset %" PRIu64 " + --size %" PRIu64 " is past "
		    "the end of the file (%" PRIu64 " bytes)", image, offset,
		    size, hostsize);
	else if (error == EOPNOTSUPP && chr && size == RUMPBLK_SIZENOTSET)
		cli_err("%s: cannot tell the size of this character device; "
		    "give --size", image);
	else if (error == EOPNOTSUPP)
		cli_err("%s: backend %s cannot serve this file (this build of "
		    "librumpblk may not have it; --backend pio always works)",
		    image, backend);
	else
		cli_err("%s: %s", image, strerror(error));
}

/* What the command line asked for. */
struct info_opts {
	struct rumpblk_config cfg;
	uint64_t	offset;
	uint64_t	size;
	bool		json;
	struct cli_spec_opts spec;	/* --ceph-conf, --ceph-id */
};

static int
info_option(void *ctx, int c, const char *arg)
{
	struct info_opts *o = ctx;

	switch (c) {
	case 'j':
		o->json = true;
		return 0;
	case 'o':
		return cli_opt_size("--offset", arg, &o->offset) ? 0 : 2;
	case 's':
		return cli_opt_size("--size", arg, &o->size) ? 0 : 2;
	case 'b':
		return cli_opt_backend(arg, &o->cfg.backend) ? 0 : 2;
	case 'S':
		return cli_parse_sectsize(arg, &o->cfg.sectshift) ? 0 : 2;
	case 'C':
		o->spec.cs_ceph_conf = arg;
		return 0;
	case 'I':
		o->spec.cs_ceph_id = arg;
		return 0;
	}
	return -1;
}

int
cmd_info(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "json", no_argument, NULL, 'j' },
		{ "offset", required_argument, NULL, 'o' },
		{ "size", required_argument, NULL, 's' },
		{ "backend", required_argument, NULL, 'b' },
		{ "sector-size", required_argument, NULL, 'S' },
		{ "ceph-conf", required_argument, NULL, 'C' },
		{ "ceph-id", required_argument, NULL, 'I' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct info_opts o = { .size = RUMPBLK_SIZENOTSET };
	const struct cli_args ca = {
		.ca_name = "info", .ca_opts = opts, .ca_usage = info_usage,
		.ca_option = info_option, .ca_ctx = &o,
		.ca_noperands = 1, .ca_operands = "one IMAGE",
	};
	struct rumpblk_config *cfg = &o.cfg;
	struct rumpblk_unitinfo ui;
	struct rumpblk_disklabel dl;
	struct rumpblk *rb;
	const char *image, *asked;
	char **operands, status[1024];
	int error, unit, rc;

	/* The seed's lines about RUMP_BLK* go to stderr, as rumpblk_init()
	 * printed them: an ignored value is reported, a seed is shown. */
	rumpblk_config_init(cfg);
	rumpblk_config_from_env(cfg, stderr);
	if (!cli_parse_args(&ca, argc, argv, &operands, &rc))
		return rc;
	image = operands[0];
	/* The CLI's windows, so that auto shows what serve and bench pick. */
	if (!cli_is_spec(image))
		cli_default_windows(cfg, image, o.offset, o.size, 0, 0);
	if ((error = rumpblk_create(cfg, &rb)) != 0) {
		cli_err("cannot create an instance: %s", strerror(error));
		return 1;
	}
	asked = rumpblk_backend_name(cfg->backend);
	if (cli_is_spec(image)) {
		if (cli_register(rb, image, o.offset, o.size, false, &o.spec,
		    &unit) != 0) {
			rumpblk_destroy(rb);
			return 1;
		}
	} else if ((error = rumpblk_register(rb, image, o.offset, o.size,
	    &unit)) != 0) {
		if (!cli_backend_refused(image, cfg, o.offset, o.size, error))
			explain_register_error(image, error, o.offset, o.size,
			    asked);
		rumpblk_destroy(rb);
		return 1;
	}
	rumpblk_unitinfo(rb, unit, &ui);
	rumpblk_ioctl(rb, unit, RUMPBLK_DIOCGDINFO, &dl);
	rumpblk_backing_status(rb, unit, status, sizeof(status));
	if (o.json)
		print_json(image, &ui, &dl, asked, status);
	else
		print_text(image, &ui, &dl, asked, status);
	if ((error = rumpblk_destroy(rb)) != 0) {
		cli_err("%s: %s", image, strerror(error));
		return 1;
	}
	return 0;
}
