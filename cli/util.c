/*
 * Helpers shared by the subcommands: messages, number parsing, option
 * values, JSON.
 */
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>

#include "cli.h"
#include "control.h"
#include "say.h"

const char *progname = "rumpblk";
const char *cli_context;

void
cli_verr(const char *who, const char *fmt, va_list ap)
{
	fprintf(stderr, "%s%s%s: ", progname, who != NULL ? " " : "",
	    who != NULL ? who : "");
	if (cli_context != NULL)
		fprintf(stderr, "%s: ", cli_context);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
}

void
cli_err(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	cli_verr(NULL, fmt, ap);
	va_end(ap);
}

int
cli_pread_full(int fd, void *buf, size_t len, uint64_t off, size_t *gotp)
{
	unsigned char *p = buf;
	size_t got = 0;
	ssize_t r;

	while (got < len) {
		r = pread(fd, p + got, len - got, (off_t)(off + got));
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return errno;
		if (r == 0)
			break;
		got += (size_t)r;
	}
	*gotp = got;
	return 0;
}

int
cli_pread_all(int fd, void *buf, size_t len, uint64_t off)
{
	size_t got = 0;		/* gcc -O3 cannot see it is always set */
	int error;

	if ((error = cli_pread_full(fd, buf, len, off, &got)) != 0)
		return error;
	return got == len ? 0 : EIO;
}

int
cli_pwrite_full(int fd, const void *buf, size_t len, uint64_t off)
{
	const unsigned char *p = buf;
	ssize_t r;

	while (len > 0) {
		r = pwrite(fd, p, len, (off_t)off);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return errno;
		if (r == 0)
			return ENOSPC;
		p += r;
		off += (uint64_t)r;
		len -= (size_t)r;
	}
	return 0;
}

/*
 * The decimal digits s starts with (no sign or space, unlike strtoull):
 * 0 with the value and the first byte after them, or EINVAL/ERANGE.
 */
static int
parse_digits(const char *s, unsigned long long *vp, char **endp)
{
	if (s == NULL || !isdigit((unsigned char)*s))
		return EINVAL;
	errno = 0;
	*vp = strtoull(s, endp, 10);
	return errno == ERANGE ? ERANGE : 0;
}

int
cli_parse_uint(const char *s, uint64_t min, uint64_t max, uint64_t *vp)
{
	unsigned long long v;
	char *end;
	int error;

	if ((error = parse_digits(s, &v, &end)) != 0)
		return error;
	if (*end != '\0')
		return EINVAL;
	if (v < min || v > max)
		return ERANGE;
	*vp = v;
	return 0;
}

int
cli_parse_size(const char *s, uint64_t *vp)
{
	unsigned long long v;
	unsigned shift = 0;
	char *end;
	int error;

	if ((error = parse_digits(s, &v, &end)) != 0)
		return error;
	switch (*end) {
	case '\0':			break;
	case 'k': case 'K':	shift = 10; end++; break;
	case 'm': case 'M':	shift = 20; end++; break;
	case 'g': case 'G':	shift = 30; end++; break;
	case 't': case 'T':	shift = 40; end++; break;
	default:		return EINVAL;
	}
	if (shift != 0 && (strcmp(end, "iB") == 0 || strcmp(end, "B") == 0))
		end += strlen(end);
	if (*end != '\0')
		return EINVAL;
	if (shift != 0 && v > (UINT64_MAX >> shift))
		return ERANGE;
	*vp = (uint64_t)v << shift;
	return 0;
}

bool
cli_parse_args(const struct cli_args *ca, int argc, char **argv,
    char ***operandsp, int *rcp)
{
	int c, rc;

	optind = 1;
	while ((c = getopt_long(argc, argv, "h", ca->ca_opts, NULL)) != -1) {
		if (c == 'h') {
			ca->ca_usage(stdout);
			rc = 0;
			goto stop;
		}
		rc = -1;
		if (ca->ca_option != NULL)
			rc = ca->ca_option(ca->ca_ctx, c, optarg);
		if (rc == -1 && ca->ca_fault != NULL)
			rc = cli_fault_option(ca->ca_fault, c, optarg);
		if (rc == -1) {
			/* getopt_long said what it did not know. */
			ca->ca_usage(stderr);
			rc = 2;
		}
		if (rc != 0)
			goto stop;
	}
	if (argc - optind != ca->ca_noperands) {
		cli_err("%s: expected %s (try 'rumpblk %s --help')",
		    ca->ca_name, ca->ca_operands, ca->ca_name);
		rc = 2;
		goto stop;
	}
	*operandsp = argv + optind;
	return true;
stop:
	if (ca->ca_fault != NULL)
		cli_fault_opts_free(ca->ca_fault);
	*rcp = rc;
	return false;
}

bool
cli_opt_size(const char *opt, const char *arg, uint64_t *vp)
{
	if (cli_parse_size(arg, vp) != 0) {
		cli_err("%s: '%s' is not a size (e.g. 4096, 64M, 2G)", opt,
		    arg);
		return false;
	}
	return true;
}

bool
cli_opt_uint(const char *opt, const char *arg, uint64_t min, uint64_t max,
    uint64_t *vp)
{
	if (cli_parse_uint(arg, min, max, vp) != 0) {
		cli_err("%s: '%s' is not a number from %" PRIu64 " to %" PRIu64,
		    opt, arg, min, max);
		return false;
	}
	return true;
}

bool
cli_opt_backend(const char *arg, enum rumpblk_backend *bp)
{
	if (rumpblk_backend_parse(arg, bp) != 0) {
		cli_err("--backend: unknown backend '%s' (auto, mmap, pio, "
		    "direct or uring)", arg);
		return false;
	}
	return true;
}

/*
 * --sector-size: a power of two from 512 to 65536, stored as its shift.
 * Says what is wrong and returns false if s is not one.
 */
bool
cli_parse_sectsize(const char *s, unsigned *shiftp)
{
	uint64_t v;

	if (cli_parse_size(s, &v) != 0 || v < 512 || v > 65536 ||
	    (v & (v - 1)) != 0) {
		cli_err("--sector-size: '%s' is not a power of two from 512 "
		    "to 65536", s);
		return false;
	}
	*shiftp = (unsigned)__builtin_ctzll(v);
	return true;
}

void
cli_json_string(FILE *f, const char *s)
{
	fe_json_string(f, s);
}

const char *
cli_ftype_name(enum rumpblk_ftype ft)
{
	switch (ft) {
	case RUMPBLK_FT_REG:	return "regular file";
	case RUMPBLK_FT_BLK:	return "block device";
	case RUMPBLK_FT_CHR:	return "character device";
	case RUMPBLK_FT_NBD:	return "NBD export";
	case RUMPBLK_FT_RBD:	return "Ceph RBD image";
	}
	return "unknown";
}

bool
cli_is_spec(const char *image)
{
	static const char *const prefixes[] = { "nbd://", "nbds://",
	    "nbd+unix://", "nbds+unix://", "nbd+vsock://", "nbds+vsock://",
	    "rbd:", "overlay:" };

	for (size_t i = 0; i < sizeof(prefixes) / sizeof(prefixes[0]); i++)
		if (strncmp(image, prefixes[i], strlen(prefixes[i])) == 0)
			return true;
	return false;
}

int
cli_register(struct rumpblk *rb, const char *image, uint64_t offset,
    uint64_t size, bool readonly, const struct cli_spec_opts *so,
    int *unitp)
{
	struct rumpblk_unit_opts uo;
	char msg[512];
	int error;

	if (!cli_is_spec(image))
		return rumpblk_register(rb, image, offset, size, unitp);
	rumpblk_unit_opts_init(&uo);
	uo.uo_offset = offset;
	uo.uo_size = size;
	uo.uo_readonly = readonly;
	msg[0] = '\0';
	uo.uo_errbuf = msg;
	uo.uo_errlen = sizeof(msg);
	if (so != NULL) {
		uo.uo_ceph_conf = so->cs_ceph_conf;
		uo.uo_ceph_id = so->cs_ceph_id;
	}
	if ((error = rumpblk_register_spec(rb, image, &uo, unitp)) != 0)
		cli_err("%s: %s", image, msg[0] != '\0' ? msg :
		    error == EINVAL ? "not a spec this build can open (an "
		    "NBD URI, rbd:POOL/IMAGE[@SNAP] or overlay:PATH), or "
		    "--offset/--size do not fit it" : strerror(error));
	return error;
}

bool
cli_backend_refused(const char *image, const struct rumpblk_config *cfg,
    uint64_t offset, uint64_t size, int error)
{
	struct rumpblk_config pcfg = *cfg;
	struct rumpblk *rb;
	bool pio_works;
	int unit;

	if (!((cfg->backend == RUMPBLK_BACKEND_DIRECT && error == EINVAL) ||
	    (cfg->backend == RUMPBLK_BACKEND_URING && (error == ENOSYS ||
	    error == EPERM || error == EACCES || error == EOPNOTSUPP))))
		return false;
	/* Blame the backend only if the image is fine without it. */
	pcfg.backend = RUMPBLK_BACKEND_PIO;
	if (rumpblk_create(&pcfg, &rb) != 0)
		return false;
	pio_works = rumpblk_register(rb, image, offset, size, &unit) == 0;
	rumpblk_destroy(rb);
	if (!pio_works)
		return false;
	if (cfg->backend == RUMPBLK_BACKEND_DIRECT)
		cli_err("%s: the host file system refuses O_DIRECT "
		    "(--backend direct); use --backend pio or auto", image);
	else if (error == EOPNOTSUPP)
		cli_err("%s: this rumpblk was built without io_uring "
		    "(--backend uring); use --backend pio or auto", image);
	else
		cli_err("%s: io_uring is disabled or missing on this host "
		    "(%s; see /proc/sys/kernel/io_uring_disabled) "
		    "(--backend uring); use --backend pio or auto", image,
		    strerror(error));
	return true;
}

void
cli_cover_windows(uint64_t offset, uint64_t size, uint64_t *winsize,
    uint64_t *wincount)
{
	const uint64_t space = 64ull << 30;
	uint64_t w = *winsize, n;

	if (w == 0) {
		for (w = 1ull << 20; w < size && w < (1ull << 30); w <<= 1)
			;
		*winsize = w;
	}
	if (*wincount == 0) {
		n = size == 0 ? 1 : (offset + size - 1) / w - offset / w + 1;
		if (n > space / w)
			n = space / w;
		*wincount = n == 0 ? 1 : n;
	}
}

void
cli_default_windows(struct rumpblk_config *cfg, const char *image,
    uint64_t offset, uint64_t size, uint64_t winsize, uint64_t wincount)
{
	struct stat sb;
	uint64_t span = 0;

	if (winsize == 0 && getenv("RUMP_BLKWINSIZE") != NULL)
		winsize = cfg->winsize;
	if (wincount == 0 && getenv("RUMP_BLKWINCOUNT") != NULL)
		wincount = cfg->wincount;
	if (size != RUMPBLK_SIZENOTSET)
		span = size;
	else if (stat(image, &sb) == 0 && S_ISREG(sb.st_mode) &&
	    (uint64_t)sb.st_size > offset)
		span = (uint64_t)sb.st_size - offset;
	cli_cover_windows(offset, span, &winsize, &wincount);
	cfg->winsize = winsize;
	cfg->wincount = wincount > UINT32_MAX ? UINT32_MAX : (unsigned)wincount;
}

uint64_t
cli_clock_ns(clockid_t id)
{
	struct timespec ts;

	clock_gettime(id, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}
