/*
 * The write-log reader (logfile.h says what it is for).  It trusts
 * nothing in the file: every number is checked before it is used as an
 * offset or a size, arithmetic on them is checked for overflow, and the
 * only allocations are the reader itself and one sector.  The price is a
 * pread per entry header; a log of a million entries is a million small
 * reads, which the page cache serves in well under a second, and it keeps
 * the reader simple enough to trust on a corrupt file.
 *
 * Strictness: the writer (lib/log/layer.c) and the kernel's
 * dm-log-writes both zero what they do not use, so non-zero bytes where
 * the format has none mean a corrupt or foreign file, and are reported
 * rather than skipped.  LW_METADATA (REQ_META in the kernel) is accepted
 * on writes, so that logs dm-log-writes made can be read too.
 */
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <linux/fs.h>

#include "cli.h"
#include "logfile.h"

#define LF_KNOWN	(LW_FLUSH | LW_FUA | LW_DISCARD | LW_MARK | LW_METADATA)
#define LB_KNOWN	(LB_ZERO | LB_HASHED | LB_TRUNCATED)
#define LF_MSGMAX	(4096 + 512)

/*
 * Locks: none; one thread at a time (logfile.h).
 */
struct logfile {
	char		*lf_path;
	int		lf_fd;
	uint32_t	lf_secsize;	/* S, bytes */
	uint64_t	lf_nr;		/* entries the super counts */
	uint64_t	lf_fsize;	/* bytes, at open */
	bool		lf_hasbase;
	struct logfile_base lf_base;
	char		*lf_basepath;	/* lf_base.bs_path's storage */
	uint64_t	lf_limit;	/* bytes an entry may reach (base) */
	uint64_t	lf_next;	/* index of the next entry */
	uint64_t	lf_off;		/* its byte offset in the file */
	unsigned char	*lf_sector;	/* one sector, then a NUL */
	char		lf_msg[LF_MSGMAX];
};

/* The size of the open file or block device fd, in bytes, or an errno. */
static int
file_size(int fd, uint64_t *sizep)
{
	struct stat sb;
	uint64_t n;

	if (fstat(fd, &sb) == -1)
		return errno;
	if (S_ISBLK(sb.st_mode)) {
		if (ioctl(fd, BLKGETSIZE64, &n) == -1)
			return errno;
		*sizep = n;
	} else
		*sizep = (uint64_t)sb.st_size;
	return 0;
}

static uint64_t
get64(const unsigned char *p)
{
	uint64_t v;

	memcpy(&v, p, sizeof(v));
	return le64toh(v);
}

static uint32_t
get32(const unsigned char *p)
{
	uint32_t v;

	memcpy(&v, p, sizeof(v));
	return le32toh(v);
}

static uint16_t
get16(const unsigned char *p)
{
	uint16_t v;

	memcpy(&v, p, sizeof(v));
	return le16toh(v);
}

/* The offset of the first non-zero byte of p[0..n), or n. */
static size_t
nonzero_at(const unsigned char *p, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (p[i] != 0)
			return i;
	return n;
}

/* Set lf's message: "PATH: entry I (byte B): " and the rest; return error. */
static int __attribute__((format(printf, 5, 6)))
entry_fail(struct logfile *lf, uint64_t index, uint64_t fileoff, int error,
    const char *fmt, ...)
{
	va_list ap;
	int n;

	n = snprintf(lf->lf_msg, sizeof(lf->lf_msg), "%s: entry %" PRIu64
	    " (byte %" PRIu64 "): ", lf->lf_path, index, fileoff);
	if (n < 0 || (size_t)n >= sizeof(lf->lf_msg))
		return error;
	va_start(ap, fmt);
	vsnprintf(lf->lf_msg + n, sizeof(lf->lf_msg) - (size_t)n, fmt, ap);
	va_end(ap);
	return error;
}

/* A message about the file as a whole into msg; return error. */
static int __attribute__((format(printf, 5, 6)))
open_fail(char *msg, size_t msglen, const char *path, int error,
    const char *fmt, ...)
{
	va_list ap;
	int n;

	if (msglen == 0)
		return error;
	n = snprintf(msg, msglen, "%s: ", path);
	if (n < 0 || (size_t)n >= msglen)
		return error;
	va_start(ap, fmt);
	vsnprintf(msg + n, msglen - (size_t)n, fmt, ap);
	va_end(ap);
	return error;
}

/*
 * rumpblk's base record at byte LW_BASE_AT of the super sector (already
 * in lf_sector), if there is one; else the rest of the sector must be
 * zero, as dm-log-writes leaves it.
 */
static int
read_base(struct logfile *lf, char *msg, size_t msglen)
{
	const unsigned char *p = lf->lf_sector + LW_BASE_AT;
	struct logfile_base *b = &lf->lf_base;
	size_t n = lf->lf_secsize - LW_BASE_AT, z;
	uint32_t version, flags;
	uint16_t pathlen;
	uint64_t pad;

	if (memcmp(p, LB_MAGIC, 8) != 0) {
		if ((z = nonzero_at(p, n)) != n)
			return open_fail(msg, msglen, lf->lf_path, EINVAL,
			    "the super sector has stray data at byte %zu "
			    "(neither zeroes nor a rumpblk base record)",
			    LW_BASE_AT + z);
		return 0;
	}
	version = get32(p + offsetof(struct lw_base, lb_version));
	flags = get32(p + offsetof(struct lw_base, lb_flags));
	pathlen = get16(p + offsetof(struct lw_base, lb_pathlen));
	if (version != LB_VERSION)
		return open_fail(msg, msglen, lf->lf_path, EINVAL,
		    "base record version %" PRIu32 " (this rumpblk reads "
		    "version %u)", version, LB_VERSION);
	if ((flags & ~LB_KNOWN) != 0)
		return open_fail(msg, msglen, lf->lf_path, EINVAL,
		    "base record has unknown flags 0x%" PRIx32, flags);
	if (pathlen > LW_PATHMAX(lf->lf_secsize))
		return open_fail(msg, msglen, lf->lf_path, EINVAL,
		    "base record's path of %u bytes is longer than a sector "
		    "of %" PRIu32 " bytes holds (%zu)", pathlen,
		    lf->lf_secsize, (size_t)LW_PATHMAX(lf->lf_secsize));
	p += sizeof(struct lw_base);
	if (memchr(p, '\0', pathlen) != NULL || p[pathlen] != '\0')
		return open_fail(msg, msglen, lf->lf_path, EINVAL,
		    "base record's path is not %u bytes and a NUL", pathlen);
	if ((lf->lf_basepath = strdup((const char *)p)) == NULL)
		return open_fail(msg, msglen, lf->lf_path, ENOMEM,
		    "%s", strerror(ENOMEM));
	p -= sizeof(struct lw_base);
	b->bs_path = lf->lf_basepath;
	b->bs_truncated = (flags & LB_TRUNCATED) != 0;
	b->bs_hashed = (flags & LB_HASHED) != 0;
	b->bs_zero = (flags & LB_ZERO) != 0;
	b->bs_size = get64(p + offsetof(struct lw_base, lb_size));
	memcpy(b->bs_hash, p + offsetof(struct lw_base, lb_hash), 16);
	b->bs_time = get64(p + offsetof(struct lw_base, lb_time));
	lf->lf_hasbase = true;
	/*
	 * The writer logs whole sectors, so the last partial sector of a
	 * base whose size is not a multiple of S is logged whole.
	 */
	pad = (lf->lf_secsize - b->bs_size % lf->lf_secsize) % lf->lf_secsize;
	lf->lf_limit = b->bs_size > UINT64_MAX - pad ? UINT64_MAX :
	    b->bs_size + pad;
	return 0;
}

int
logfile_open(const char *path, struct logfile **lfp, char *msg,
    size_t msglen)
{
	unsigned char sb[sizeof(struct lw_super)];
	struct logfile *lf;
	struct stat st;
	uint64_t magic, version;
	uint32_t secsize;
	size_t got, z;
	int error;

	if (msglen > 0)
		msg[0] = '\0';
	if ((lf = calloc(1, sizeof(*lf))) == NULL ||
	    (lf->lf_path = strdup(path)) == NULL) {
		free(lf);
		return open_fail(msg, msglen, path, ENOMEM, "%s",
		    strerror(ENOMEM));
	}
	lf->lf_limit = UINT64_MAX;
	if ((lf->lf_fd = open(path, O_RDONLY | O_CLOEXEC)) == -1) {
		error = open_fail(msg, msglen, path, errno, "%s",
		    strerror(errno));
		goto free_lf;
	}
	if (fstat(lf->lf_fd, &st) == -1) {
		error = open_fail(msg, msglen, path, errno, "%s",
		    strerror(errno));
		goto close_fd;
	}
	if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode)) {
		error = open_fail(msg, msglen, path, EINVAL, "is a %s, not a "
		    "log (a regular file or a block device)",
		    S_ISDIR(st.st_mode) ? "directory" : S_ISFIFO(st.st_mode) ?
		    "FIFO" : S_ISCHR(st.st_mode) ? "character device" :
		    "special file");
		goto close_fd;
	}
	/*
	 * The super before the size: a writer that is still running counts
	 * an entry only once it is in the file, so entries counted by the
	 * super we read are inside the size we take afterwards.
	 */
	if ((error = cli_pread_full(lf->lf_fd, sb, sizeof(sb), 0, &got)) != 0) {
		open_fail(msg, msglen, path, error, "%s", strerror(error));
		goto close_fd;
	}
	if (got < sizeof(sb)) {
		error = open_fail(msg, msglen, path, EINVAL, "%zu bytes, too "
		    "short for a write log", got);
		goto close_fd;
	}
	magic = get64(sb + offsetof(struct lw_super, ls_magic));
	version = get64(sb + offsetof(struct lw_super, ls_version));
	secsize = get32(sb + offsetof(struct lw_super, ls_sectorsize));
	if (magic != LW_MAGIC) {
		error = open_fail(msg, msglen, path, EINVAL, "not a write log "
		    "(magic 0x%016" PRIx64 ", dm-log-writes' is 0x%016llx)",
		    magic, LW_MAGIC);
		goto close_fd;
	}
	if (version != LW_VERSION) {
		error = open_fail(msg, msglen, path, EINVAL, "log version %"
		    PRIu64 " (this rumpblk reads version %llu)", version,
		    LW_VERSION);
		goto close_fd;
	}
	if (secsize < 512 || secsize > 65536 || (secsize & (secsize - 1))) {
		error = open_fail(msg, msglen, path, EINVAL, "sector size %"
		    PRIu32 " is not a power of two from 512 to 65536",
		    secsize);
		goto close_fd;
	}
	lf->lf_secsize = secsize;
	lf->lf_nr = get64(sb + offsetof(struct lw_super, ls_nr_entries));
	if ((error = file_size(lf->lf_fd, &lf->lf_fsize)) != 0) {
		open_fail(msg, msglen, path, error, "%s", strerror(error));
		goto close_fd;
	}
	if (lf->lf_fsize < secsize) {
		error = open_fail(msg, msglen, path, EINVAL, "%" PRIu64
		    " bytes, less than its super sector (%" PRIu32 " bytes; "
		    "truncated log?)", lf->lf_fsize, secsize);
		goto close_fd;
	}
	if ((lf->lf_sector = malloc((size_t)secsize + 1)) == NULL) {
		error = open_fail(msg, msglen, path, ENOMEM, "%s",
		    strerror(ENOMEM));
		goto close_fd;
	}
	if ((error = cli_pread_full(lf->lf_fd, lf->lf_sector, secsize, 0,
	    &got)) != 0 || got < secsize) {
		error = open_fail(msg, msglen, path, error ? error : EIO,
		    "cannot read the super sector: %s", error ?
		    strerror(error) : "short read (the file shrank?)");
		goto free_sector;
	}
	z = nonzero_at(lf->lf_sector + sizeof(struct lw_super),
	    LW_BASE_AT - sizeof(struct lw_super));
	if (z != LW_BASE_AT - sizeof(struct lw_super)) {
		error = open_fail(msg, msglen, path, EINVAL, "the super sector "
		    "has stray data at byte %zu", sizeof(struct lw_super) + z);
		goto free_sector;
	}
	if ((error = read_base(lf, msg, msglen)) != 0)
		goto free_sector;
	logfile_rewind(lf);
	*lfp = lf;
	return 0;
free_sector:
	free(lf->lf_basepath);
	free(lf->lf_sector);
close_fd:
	close(lf->lf_fd);
free_lf:
	free(lf->lf_path);
	free(lf);
	return error;
}

void
logfile_close(struct logfile *lf)
{
	if (lf == NULL)
		return;
	close(lf->lf_fd);
	free(lf->lf_basepath);
	free(lf->lf_sector);
	free(lf->lf_path);
	free(lf);
}

const char *
logfile_path(const struct logfile *lf)
{
	return lf->lf_path;
}

uint32_t
logfile_secsize(const struct logfile *lf)
{
	return lf->lf_secsize;
}

uint64_t
logfile_nr_entries(const struct logfile *lf)
{
	return lf->lf_nr;
}

uint64_t
logfile_size(const struct logfile *lf)
{
	return lf->lf_fsize;
}

const struct logfile_base *
logfile_base(const struct logfile *lf)
{
	return lf->lf_hasbase ? &lf->lf_base : NULL;
}

uint64_t
logfile_end(const struct logfile *lf)
{
	return lf->lf_off;
}

const char *
logfile_errmsg(const struct logfile *lf)
{
	return lf->lf_msg;
}

void
logfile_rewind(struct logfile *lf)
{
	lf->lf_next = 0;
	lf->lf_off = lf->lf_secsize;
	lf->lf_msg[0] = '\0';
}

/*
 * What kind of entry flags, sectors and data_len make, or a message about
 * why they make none: NULL if the combination is valid.  buf holds the
 * message (it names numbers).
 */
static const char *
check_kind(uint64_t flags, uint64_t nr, uint64_t dlen, uint32_t secsize,
    char *buf, size_t buflen)
{
	if ((flags & ~(uint64_t)LF_KNOWN) != 0) {
		snprintf(buf, buflen, "unknown flags 0x%" PRIx64, flags);
		return buf;
	}
	if (flags & LW_MARK) {
		if (flags != LW_MARK)
			snprintf(buf, buflen, "a mark with other flags "
			    "(0x%" PRIx64 ")", flags);
		else if (nr != 0)
			snprintf(buf, buflen, "a mark with %" PRIu64
			    " sectors (marks carry none)", nr);
		else if (dlen > LW_MARKMAX(secsize))
			snprintf(buf, buflen, "a mark name of %" PRIu64
			    " bytes, longer than a sector of %" PRIu32
			    " bytes holds (%zu)", dlen, secsize,
			    (size_t)LW_MARKMAX(secsize));
		else
			return NULL;
		return buf;
	}
	if (dlen != 0)
		snprintf(buf, buflen, "data_len %" PRIu64 " on an entry that "
		    "is not a mark (flags 0x%" PRIx64 ")", dlen, flags);
	else if ((flags & LW_FLUSH) && flags != LW_FLUSH)
		snprintf(buf, buflen, "a FLUSH with other flags (0x%" PRIx64
		    ")", flags);
	else if ((flags & LW_FLUSH) && nr != 0)
		snprintf(buf, buflen, "a FLUSH with %" PRIu64 " sectors "
		    "(FLUSH entries carry no data)", nr);
	else if ((flags & LW_DISCARD) && flags != LW_DISCARD)
		snprintf(buf, buflen, "a discard with other flags (0x%" PRIx64
		    ")", flags);
	else if ((flags & LW_DISCARD) && nr == 0)
		snprintf(buf, buflen, "a discard of no sectors");
	else if ((flags & (LW_FLUSH | LW_DISCARD)) == 0 && nr == 0)
		snprintf(buf, buflen, "a write of no sectors (flags 0x%" PRIx64
		    ")", flags);
	else
		return NULL;
	return buf;
}

int
logfile_next(struct logfile *lf, struct logfile_entry *e)
{
	const uint32_t S = lf->lf_secsize;
	const uint64_t off = lf->lf_off, i = lf->lf_next;
	unsigned char *p = lf->lf_sector;
	uint64_t flags, nr, sector, dlen, boff, blen, bend, dataoff = 0;
	char why[160];
	const char *bad;
	size_t got, z;
	int error;

	if (lf->lf_next >= lf->lf_nr)
		return ENOENT;
	lf->lf_msg[0] = '\0';
	if (off > lf->lf_fsize || lf->lf_fsize - off < S)
		return entry_fail(lf, i, off, EINVAL, "the super counts %"
		    PRIu64 " entries, but the file ends at byte %" PRIu64
		    " (truncated log?)", lf->lf_nr, lf->lf_fsize);
	if ((error = cli_pread_full(lf->lf_fd, p, S, off, &got)) != 0)
		return entry_fail(lf, i, off, error, "%s", strerror(error));
	if (got < S)
		return entry_fail(lf, i, off, EIO, "short read of the entry "
		    "(the file shrank?)");
	sector = get64(p + offsetof(struct lw_entry, le_sector));
	nr = get64(p + offsetof(struct lw_entry, le_nr_sectors));
	flags = get64(p + offsetof(struct lw_entry, le_flags));
	dlen = get64(p + offsetof(struct lw_entry, le_data_len));
	if ((bad = check_kind(flags, nr, dlen, S, why, sizeof(why))) != NULL)
		return entry_fail(lf, i, off, EINVAL, "%s", bad);
	memset(e, 0, sizeof(*e));
	if (flags & LW_MARK) {
		/* The name is dlen bytes; what follows it is not checked. */
		if (memchr(p + sizeof(struct lw_entry), '\0', dlen) != NULL)
			return entry_fail(lf, i, off, EINVAL, "the mark name "
			    "holds a NUL byte");
		p[sizeof(struct lw_entry) + dlen] = '\0';
		e->e_mark = (const char *)p + sizeof(struct lw_entry);
	} else {
		z = nonzero_at(p + sizeof(struct lw_entry),
		    S - sizeof(struct lw_entry));
		if (z != S - sizeof(struct lw_entry))
			return entry_fail(lf, i, off, EINVAL, "the entry "
			    "sector is not zero after its header (byte %zu "
			    "of it)", sizeof(struct lw_entry) + z);
	}
	if (__builtin_mul_overflow(sector, (uint64_t)S, &boff) ||
	    __builtin_mul_overflow(nr, (uint64_t)S, &blen) ||
	    __builtin_add_overflow(boff, blen, &bend))
		return entry_fail(lf, i, off, EINVAL, "sector %" PRIu64 " + %"
		    PRIu64 " sectors of %" PRIu32 " bytes is past any device "
		    "(the bytes overflow 64 bits)", sector, nr, S);
	if ((flags & (LW_FLUSH | LW_DISCARD | LW_MARK)) == 0) {
		dataoff = off + S;
		if (blen > lf->lf_fsize - dataoff)
			return entry_fail(lf, i, off, EINVAL, "data runs past "
			    "the end of the file (truncated log?)");
	}
	if (lf->lf_hasbase && blen > 0 && bend > lf->lf_limit)
		return entry_fail(lf, i, off, EINVAL, "bytes %" PRIu64 " to %"
		    PRIu64 " are past the end of the base (%" PRIu64
		    " bytes)", boff, bend, lf->lf_base.bs_size);
	e->e_index = lf->lf_next;
	e->e_fileoff = off;
	e->e_flags = flags;
	e->e_off = (flags & (LW_FLUSH | LW_MARK)) ? 0 : boff;
	e->e_len = blen;
	e->e_dataoff = dataoff;
	lf->lf_off = off + S + (dataoff != 0 ? blen : 0);
	lf->lf_next++;
	return 0;
}

int
logfile_read(struct logfile *lf, const struct logfile_entry *e,
    uint64_t off, void *buf, size_t len)
{
	size_t got;
	int error;

	if (e->e_dataoff == 0 || off > e->e_len || len > e->e_len - off)
		return entry_fail(lf, e->e_index, e->e_fileoff, EINVAL,
		    "no data at bytes %" PRIu64 " to %" PRIu64 " of the "
		    "entry (it has %" PRIu64 ")", off, off + len,
		    e->e_dataoff ? e->e_len : 0);
	if ((error = cli_pread_full(lf->lf_fd, buf, len, e->e_dataoff + off,
	    &got)) != 0)
		return entry_fail(lf, e->e_index, e->e_fileoff, error,
		    "reading data at byte %" PRIu64 ": %s",
		    e->e_dataoff + off, strerror(error));
	if (got < len)
		return entry_fail(lf, e->e_index, e->e_fileoff, EIO,
		    "short read of data at byte %" PRIu64 " (the file "
		    "shrank?)", e->e_dataoff + off + got);
	return 0;
}

void
logfile_hash_str(const uint8_t hash[16], char *buf)
{
	int i;

	memcpy(buf, "rbh128:", 7);
	for (i = 0; i < 16; i++)
		snprintf(buf + 7 + 2 * i, 3, "%02x", hash[i]);
}
