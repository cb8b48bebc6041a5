/*
 * rumpblk log: inspect and replay a write log (lib/log/format.h: the
 * format of Linux dm-log-writes, as 'rumpblk serve --write-log' records
 * it).  'info' counts what a log holds; 'replay' applies a prefix of it
 * to a new copy of the base image, as xfstests' replay-log does to a
 * device.  Neither ever writes to the log or the base: replay's output
 * is a file it creates (and removes again if it fails), cloned from the
 * base where the file system can share extents, so that replaying many
 * prefixes of a log onto a large image costs little space or time.
 *
 * Contents: 1. helpers  2. info  3. replay  4. the command
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <linux/falloc.h>
#include <linux/fs.h>

#include "cli.h"
#include "hash.h"
#include "logfile.h"

/* Data moves in chunks of this many bytes, whatever the log says. */
#define LOG_CHUNK	(1u << 20)

/* 1. Helpers. */

/* Zeroes to hash or write; never written to (so it stays in .bss). */
static unsigned char zeroes[LOG_CHUNK];

/* "rumpblk log: " and the message, to stderr. */
static void __attribute__((format(printf, 1, 2)))
log_err(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	cli_verr("log", fmt, ap);
	va_end(ap);
}

static bool
all_zero(const unsigned char *p, size_t n)
{
	return n == 0 || (p[0] == 0 && memcmp(p, p + 1, n - 1) == 0);
}

/*
 * Progress on a terminal: a line on stderr, rewritten at most once a
 * second and only after the first second, so short runs print nothing.
 * The cost when it prints nothing is a clock read per call.
 */
struct progress {
	bool		pr_on;
	bool		pr_shown;
	struct timespec	pr_next;
};

static void
progress_init(struct progress *pr)
{
	pr->pr_on = isatty(STDERR_FILENO);
	pr->pr_shown = false;
	clock_gettime(CLOCK_MONOTONIC, &pr->pr_next);
	pr->pr_next.tv_sec++;
}

static void
progress(struct progress *pr, const char *what, uint64_t done,
    uint64_t total)
{
	struct timespec now;

	if (!pr->pr_on)
		return;
	clock_gettime(CLOCK_MONOTONIC, &now);
	if (now.tv_sec < pr->pr_next.tv_sec || (now.tv_sec ==
	    pr->pr_next.tv_sec && now.tv_nsec < pr->pr_next.tv_nsec))
		return;
	fprintf(stderr, "\r%s log: %s: %" PRIu64 " of %" PRIu64 " (%u%%)"
	    "\033[K", progname, what, done, total, total == 0 ? 100 :
	    (unsigned)(done * 100.0 / total));
	pr->pr_shown = true;
	pr->pr_next = now;
	pr->pr_next.tv_sec++;
}

static void
progress_end(struct progress *pr)
{
	if (pr->pr_shown)
		fputs("\r\033[K", stderr);
	pr->pr_shown = false;
}

/* 2. info. */

struct log_mark {
	char		*m_name;
	uint64_t	m_index;
};

/* What a log holds. */
struct log_counts {
	uint64_t	c_entries;
	uint64_t	c_writes;
	uint64_t	c_wbytes;
	uint64_t	c_fua;
	uint64_t	c_discards;
	uint64_t	c_dbytes;
	uint64_t	c_flushes;
	uint64_t	c_epochs;
	/*
	 * The marks; their number is bounded by the file's size (each one
	 * takes a sector of it), as is the memory of their names.
	 */
	struct log_mark	*c_marks;
	size_t		c_nmarks;
	size_t		c_marksalloc;
};

static void
counts_free(struct log_counts *c)
{
	size_t i;

	for (i = 0; i < c->c_nmarks; i++)
		free(c->c_marks[i].m_name);
	free(c->c_marks);
}

/*
 * Count every entry of lf.  An epoch is a maximal run of entries that
 * ends at a FLUSH entry or at the end of the log; only those that hold a
 * write or a discard count.  false after a message.
 */
static bool
count_log(struct logfile *lf, struct log_counts *c)
{
	struct logfile_entry e;
	struct log_mark *m;
	bool io = false;
	size_t n;
	int error;

	while ((error = logfile_next(lf, &e)) == 0) {
		c->c_entries++;
		if (e.e_flags & LW_MARK) {
			if (c->c_nmarks == c->c_marksalloc) {
				n = c->c_marksalloc ? 2 * c->c_marksalloc : 8;
				if ((m = realloc(c->c_marks,
				    n * sizeof(*m))) == NULL)
					goto nomem;
				c->c_marks = m;
				c->c_marksalloc = n;
			}
			m = &c->c_marks[c->c_nmarks];
			if ((m->m_name = strdup(e.e_mark)) == NULL)
				goto nomem;
			m->m_index = e.e_index;
			c->c_nmarks++;
		} else if (e.e_flags & LW_FLUSH) {
			c->c_flushes++;
			if (io)
				c->c_epochs++;
			io = false;
		} else if (e.e_flags & LW_DISCARD) {
			c->c_discards++;
			c->c_dbytes += e.e_len;
			io = true;
		} else {
			c->c_writes++;
			c->c_wbytes += e.e_len;
			if (e.e_flags & LW_FUA)
				c->c_fua++;
			io = true;
		}
	}
	if (error != ENOENT) {
		log_err("%s", logfile_errmsg(lf));
		return false;
	}
	if (io)
		c->c_epochs++;
	return true;
nomem:
	log_err("%s: %s", logfile_path(lf), strerror(ENOMEM));
	return false;
}

static void
format_time(uint64_t t, char *buf, size_t len)
{
	time_t tt = (time_t)t;
	struct tm tm;

	if (t > (uint64_t)INT64_MAX || gmtime_r(&tt, &tm) == NULL ||
	    strftime(buf, len, "%Y-%m-%d %H:%M:%S UTC", &tm) == 0)
		snprintf(buf, len, "%" PRIu64 " (Unix time)", t);
}

static void
info_text(struct logfile *lf, const struct log_counts *c)
{
	const struct logfile_base *b = logfile_base(lf);
	char hash[LOGFILE_HASHSTR], when[64];
	size_t i;

	printf("log:           %s\n", logfile_path(lf));
	printf("file size:     %" PRIu64 " bytes\n", logfile_size(lf));
	if (logfile_end(lf) < logfile_size(lf))
		printf("after the log: %" PRIu64 " bytes the super does not "
		    "count (yet)\n", logfile_size(lf) - logfile_end(lf));
	printf("sector size:   %" PRIu32 "\n", logfile_secsize(lf));
	printf("entries:       %" PRIu64 "\n", c->c_entries);
	printf("writes:        %" PRIu64 ", %" PRIu64 " bytes (%" PRIu64
	    " FUA)\n", c->c_writes, c->c_wbytes, c->c_fua);
	printf("discards:      %" PRIu64 ", %" PRIu64 " bytes\n",
	    c->c_discards, c->c_dbytes);
	printf("flushes:       %" PRIu64 "\n", c->c_flushes);
	printf("epochs:        %" PRIu64 " (with writes or discards)\n",
	    c->c_epochs);
	printf("marks:         %zu\n", c->c_nmarks);
	for (i = 0; i < c->c_nmarks; i++)
		printf("  entry %-6" PRIu64 " %s\n", c->c_marks[i].m_index,
		    c->c_marks[i].m_name);
	if (b == NULL) {
		printf("base:          not recorded\n");
		return;
	}
	printf("base:          %s%s\n", b->bs_path, b->bs_truncated ?
	    " (the path is cut short)" : "");
	printf("base size:     %" PRIu64 " bytes\n", b->bs_size);
	if (b->bs_hashed) {
		logfile_hash_str(b->bs_hash, hash);
		printf("base hash:     %s\n", hash);
	} else
		printf("base hash:     not recorded\n");
	printf("base zero:     %s\n", b->bs_zero ? "yes, every byte" :
	    b->bs_hashed ? "no" : "unknown (not hashed)");
	format_time(b->bs_time, when, sizeof(when));
	printf("logging began: %s\n", when);
}

static void
info_json(struct logfile *lf, const struct log_counts *c)
{
	const struct logfile_base *b = logfile_base(lf);
	char hash[LOGFILE_HASHSTR];
	size_t i;

	printf("{\"log\":");
	cli_json_string(stdout, logfile_path(lf));
	printf(",\"file_size\":%" PRIu64 ",\"log_end\":%" PRIu64
	    ",\"sector_size\":%" PRIu32 ",\"entries\":%" PRIu64
	    ",\"writes\":%" PRIu64 ",\"bytes_written\":%" PRIu64
	    ",\"fua_writes\":%" PRIu64 ",\"discards\":%" PRIu64
	    ",\"bytes_discarded\":%" PRIu64 ",\"flushes\":%" PRIu64
	    ",\"epochs\":%" PRIu64 ",\"marks\":[", logfile_size(lf),
	    logfile_end(lf), logfile_secsize(lf), c->c_entries, c->c_writes,
	    c->c_wbytes, c->c_fua, c->c_discards, c->c_dbytes, c->c_flushes,
	    c->c_epochs);
	for (i = 0; i < c->c_nmarks; i++) {
		printf("%s{\"name\":", i ? "," : "");
		cli_json_string(stdout, c->c_marks[i].m_name);
		printf(",\"entry\":%" PRIu64 "}", c->c_marks[i].m_index);
	}
	printf("],\"base\":");
	if (b == NULL) {
		printf("null}\n");
		return;
	}
	printf("{\"path\":");
	cli_json_string(stdout, b->bs_path);
	printf(",\"path_truncated\":%s,\"size\":%" PRIu64 ",\"hash\":",
	    b->bs_truncated ? "true" : "false", b->bs_size);
	if (b->bs_hashed) {
		logfile_hash_str(b->bs_hash, hash);
		printf("\"%s\"", hash);
	} else
		printf("null");
	printf(",\"zero\":%s,\"began\":%" PRIu64 "}}\n", b->bs_zero ? "true" :
	    b->bs_hashed ? "false" : "null", b->bs_time);
}

static void
info_usage(FILE *f)
{
	fprintf(f, "usage: rumpblk log info [--json] FILE\n\n"
	    "Read the write log FILE (dm-log-writes' format, as 'rumpblk\n"
	    "serve --write-log FILE' records it), check every entry, and\n"
	    "count what it holds: the sector size; entries; writes and the\n"
	    "bytes they wrote, FUA writes among them; discards and their\n"
	    "bytes; FLUSHes; epochs (runs of entries that end at a FLUSH or\n"
	    "at the end of the log, counted if they hold a write or a\n"
	    "discard); marks, each with its name and entry index (the first\n"
	    "entry is 0); the base image the log starts from, if the writer\n"
	    "recorded it (path, size, rbh128 hash, whether it was all zero,\n"
	    "when logging began); and the file's size.  A corrupt or\n"
	    "truncated log is an error that names the entry and its byte\n"
	    "offset.  Nothing is written.\n\n"
	    "  --json   one JSON object on standard output\n");
}

struct info_opts {
	bool		json;
};

static int
info_option(void *ctx, int c, const char *arg)
{
	struct info_opts *o = ctx;

	if (c != 'j')
		return -1;
	o->json = true;
	return 0;
}

static int
log_info(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct info_opts o = { false };
	const struct cli_args ca = {
		.ca_name = "log info", .ca_opts = opts,
		.ca_usage = info_usage, .ca_option = info_option,
		.ca_ctx = &o, .ca_noperands = 1, .ca_operands = "one FILE",
	};
	struct log_counts c;
	struct logfile *lf;
	char **operands, msg[4608];
	int rc;

	if (!cli_parse_args(&ca, argc, argv, &operands, &rc))
		return rc;
	if (logfile_open(operands[0], &lf, msg, sizeof(msg)) != 0) {
		log_err("%s", msg);
		return 1;
	}
	memset(&c, 0, sizeof(c));
	rc = 1;
	if (count_log(lf, &c)) {
		if (o.json)
			info_json(lf, &c);
		else
			info_text(lf, &c);
		rc = fflush(stdout) == 0 ? 0 : 1;
	}
	counts_free(&c);
	logfile_close(lf);
	return rc;
}

/* 3. replay. */

enum replay_to { TO_END, TO_ENTRY, TO_FLUSH, TO_MARK };

struct replay_opts {
	const char	*out;
	const char	*base;
	const char	*to_arg;	/* as given, for messages */
	enum replay_to	to;
	uint64_t	to_n;		/* entry=N, flush=N */
	const char	*to_mark;	/* mark=NAME */
	bool		json;
};

/* What a replay does, and what it did. */
struct replay {
	struct logfile	*r_lf;
	const char	*r_log;
	const char	*r_out;
	const char	*r_image;	/* --base, or NULL */
	int		r_outfd;
	uint64_t	r_size;		/* bytes of OUT */
	bool		r_punch;	/* fallocate punches holes here */
	unsigned char	*r_buf;		/* LOG_CHUNK bytes */
	const char	*r_how;		/* "clone", "copy" or "zero" */
	uint64_t	r_napply;	/* entries to apply */
	struct progress	r_pr;
	uint64_t	r_writes, r_wbytes, r_fua;
	uint64_t	r_discards, r_dbytes;
	uint64_t	r_flushes, r_marks;
};

/*
 * OUT, while it is ours and unfinished: a signal that ends the command
 * removes it, as an error does.
 */
static const char *volatile cleanup_path;

static void
on_signal(int sig)
{
	const char *p = cleanup_path;

	if (p != NULL)
		unlink(p);
	signal(sig, SIG_DFL);
	raise(sig);
}

static void
cleanup_signals(bool on)
{
	static const int sigs[] = { SIGINT, SIGTERM, SIGHUP };
	struct sigaction sa;
	size_t i;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on ? on_signal : SIG_DFL;
	sigemptyset(&sa.sa_mask);
	for (i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
		sigaction(sigs[i], &sa, NULL);
}

/*
 * rb_hash128 of the first size bytes of fd (IMAGE).  Holes are hashed
 * as the zeroes they read as, without reading them.  false after a
 * message.
 */
static bool
hash_image(struct replay *r, int fd, uint64_t size, uint8_t out[16],
    int *zerop)
{
	struct rb_hash h;
	uint64_t pos = 0, data, hole, n;
	bool sparse = true;
	size_t got;
	off_t o;
	int error;

	rb_hash_init(&h);
	while (pos < size) {
		data = pos;
		hole = size;
		if (sparse && (o = lseek(fd, (off_t)pos, SEEK_DATA)) >= 0)
			data = (uint64_t)o < size ? (uint64_t)o : size;
		else if (sparse && errno == ENXIO)
			data = size;
		else
			sparse = false;
		if (sparse && data < size &&
		    (o = lseek(fd, (off_t)data, SEEK_HOLE)) >= 0)
			hole = (uint64_t)o < size ? (uint64_t)o : size;
		for (; pos < data; pos += n) {
			n = data - pos < LOG_CHUNK ? data - pos : LOG_CHUNK;
			rb_hash_update(&h, zeroes, (size_t)n);
			progress(&r->r_pr, "hashing the base (bytes)", pos,
			    size);
		}
		for (; pos < hole; pos += n) {
			n = hole - pos < LOG_CHUNK ? hole - pos : LOG_CHUNK;
			if ((error = cli_pread_full(fd, r->r_buf, (size_t)n, pos,
			    &got)) != 0) {
				log_err("%s: reading byte %" PRIu64 ": %s",
				    r->r_image, pos, strerror(error));
				return false;
			}
			if (got < n) {
				log_err("%s: ends at byte %" PRIu64 ", before "
				    "its size (%" PRIu64 " bytes; it shrank?)",
				    r->r_image, pos + got, size);
				return false;
			}
			rb_hash_update(&h, r->r_buf, (size_t)n);
			progress(&r->r_pr, "hashing the base (bytes)", pos,
			    size);
		}
	}
	progress_end(&r->r_pr);
	rb_hash_final(&h, out, zerop);
	return true;
}

/*
 * Copy bytes [off, end) of in to the same place in OUT by reading and
 * writing, leaving chunks of zeroes unwritten (OUT reads zero there
 * already).  false after a message.
 */
static bool
copy_rw(struct replay *r, int in, uint64_t off, uint64_t end)
{
	uint64_t n;
	size_t got;
	int error;

	for (; off < end; off += n) {
		n = end - off < LOG_CHUNK ? end - off : LOG_CHUNK;
		if ((error = cli_pread_full(in, r->r_buf, (size_t)n, off,
		    &got)) != 0 || got < n) {
			log_err("%s: reading byte %" PRIu64 ": %s", r->r_image,
			    off + (error ? 0 : got), error ? strerror(error) :
			    "the file ends there (it shrank?)");
			return false;
		}
		if (all_zero(r->r_buf, (size_t)n))
			continue;
		if ((error = cli_pwrite_full(r->r_outfd, r->r_buf, (size_t)n,
		    off)) != 0) {
			log_err("%s: writing byte %" PRIu64 ": %s", r->r_out,
			    off, strerror(error));
			return false;
		}
	}
	return true;
}

/*
 * OUT becomes a copy of IMAGE (in): a clone sharing IMAGE's extents
 * where the file system can (FICLONE: btrfs, XFS with reflink), else a
 * copy of its data extents only (SEEK_DATA), by copy_file_range where
 * the kernel can, so that a sparse image stays sparse.  IMAGE is only
 * read.  false after a message.
 */
static bool
copy_image(struct replay *r, int in, bool regular)
{
	uint64_t pos = 0, data, hole;
	loff_t ioff, ooff;
	bool sparse = true, cfr = true;
	ssize_t n;
	off_t o;

	if (regular && ioctl(r->r_outfd, FICLONE, in) == 0) {
		r->r_how = "clone";
		return true;
	}
	r->r_how = "copy";
	if (ftruncate(r->r_outfd, (off_t)r->r_size) == -1) {
		log_err("%s: cannot make it %" PRIu64 " bytes: %s", r->r_out,
		    r->r_size, strerror(errno));
		return false;
	}
	while (pos < r->r_size) {
		data = pos;
		hole = r->r_size;
		if (sparse && (o = lseek(in, (off_t)pos, SEEK_DATA)) >= 0)
			data = (uint64_t)o < r->r_size ? (uint64_t)o :
			    r->r_size;
		else if (sparse && errno == ENXIO)
			data = r->r_size;
		else
			sparse = false;
		if (sparse && data < r->r_size &&
		    (o = lseek(in, (off_t)data, SEEK_HOLE)) >= 0)
			hole = (uint64_t)o < r->r_size ? (uint64_t)o :
			    r->r_size;
		pos = data;
		while (cfr && pos < hole) {
			ioff = ooff = (loff_t)pos;
			n = copy_file_range(in, &ioff, r->r_outfd, &ooff,
			    hole - pos < LOG_CHUNK * 64ull ? hole - pos :
			    LOG_CHUNK * 64ull, 0);
			if (n > 0) {
				pos += (uint64_t)n;
				continue;
			}
			if (n == 0 || (errno != EXDEV && errno != EINVAL &&
			    errno != ENOSYS && errno != EOPNOTSUPP &&
			    errno != EBADF && errno != EINTR)) {
				log_err("%s: copying %s at byte %" PRIu64
				    ": %s", r->r_out, r->r_image, pos, n == 0 ?
				    "it ends there (it shrank?)" :
				    strerror(errno));
				return false;
			}
			/* Not between these two files: read and write. */
			if (errno != EINTR)
				cfr = false;
		}
		if (pos < hole && !copy_rw(r, in, pos, hole))
			return false;
		pos = hole;
		progress(&r->r_pr, "copying the base (bytes)", pos,
		    r->r_size);
	}
	progress_end(&r->r_pr);
	return true;
}

/* Bytes [off, off + len) of OUT read as zero hereafter.  false after a
 * message. */
static bool
zero_range(struct replay *r, uint64_t off, uint64_t len)
{
	uint64_t n;
	int error;

	if (len == 0)
		return true;
	if (r->r_punch && fallocate(r->r_outfd, FALLOC_FL_PUNCH_HOLE |
	    FALLOC_FL_KEEP_SIZE, (off_t)off, (off_t)len) == 0)
		return true;
	if (r->r_punch && errno != EOPNOTSUPP && errno != ENOSYS) {
		log_err("%s: punching bytes %" PRIu64 " to %" PRIu64 ": %s",
		    r->r_out, off, off + len, strerror(errno));
		return false;
	}
	/* A file system without holes: write the zeroes. */
	r->r_punch = false;
	for (; len > 0; off += n, len -= n) {
		n = len < LOG_CHUNK ? len : LOG_CHUNK;
		if ((error = cli_pwrite_full(r->r_outfd, zeroes, (size_t)n,
		    off)) != 0) {
			log_err("%s: writing zeroes at byte %" PRIu64 ": %s",
			    r->r_out, off, strerror(error));
			return false;
		}
	}
	return true;
}

/*
 * Apply write e to OUT, in chunks.  A chunk of zeroes (a write-zeroes,
 * a hole in the log) is punched, so that OUT stays as sparse as the
 * log.  Bytes past OUT's size (the rest of a last partial sector) are
 * dropped.  false after a message.
 */
static bool
apply_write(struct replay *r, const struct logfile_entry *e)
{
	uint64_t done, n, w, at;
	int error;

	for (done = 0; done < e->e_len; done += n) {
		n = e->e_len - done < LOG_CHUNK ? e->e_len - done : LOG_CHUNK;
		at = e->e_off + done;
		if (at >= r->r_size)
			break;
		w = r->r_size - at < n ? r->r_size - at : n;
		if (logfile_read(r->r_lf, e, done, r->r_buf, (size_t)n) != 0) {
			log_err("%s", logfile_errmsg(r->r_lf));
			return false;
		}
		if (all_zero(r->r_buf, (size_t)w)) {
			if (!zero_range(r, at, w))
				return false;
		} else if ((error = cli_pwrite_full(r->r_outfd, r->r_buf,
		    (size_t)w, at)) != 0) {
			log_err("%s: writing byte %" PRIu64 ": %s", r->r_out,
			    at, strerror(error));
			return false;
		}
	}
	return true;
}

/*
 * Walk the entries --to selects, checking each one, and set r_napply to
 * their number; nothing is applied.  Without a recorded base, entries
 * must fit IMAGE's size (rounded up to a whole sector, as the reader
 * does with a recorded one).  false after a message.
 */
static bool
select_entries(struct replay *r, const struct replay_opts *o, bool check)
{
	const uint64_t nr = logfile_nr_entries(r->r_lf);
	const uint32_t S = logfile_secsize(r->r_lf);
	struct logfile_entry e;
	uint64_t flushes = 0, marks = 0, limit, want;
	int error;

	limit = r->r_size + (S - r->r_size % S) % S;
	if (limit < r->r_size)
		limit = UINT64_MAX;
	if (o->to == TO_ENTRY && o->to_n > nr) {
		log_err("%s: --to %s: the log has only %" PRIu64 " entries",
		    r->r_log, o->to_arg, nr);
		return false;
	}
	want = o->to == TO_ENTRY ? o->to_n : nr;
	logfile_rewind(r->r_lf);
	for (r->r_napply = 0; r->r_napply < want; ) {
		if ((error = logfile_next(r->r_lf, &e)) != 0) {
			log_err("%s", logfile_errmsg(r->r_lf));
			return false;
		}
		r->r_napply++;
		if (check && e.e_len > 0 && (e.e_flags & LW_MARK) == 0 &&
		    e.e_off + e.e_len > limit) {
			log_err("%s: entry %" PRIu64 " (byte %" PRIu64 "): "
			    "bytes %" PRIu64 " to %" PRIu64 " are past the end "
			    "of %s (%" PRIu64 " bytes)", r->r_log, e.e_index,
			    e.e_fileoff, e.e_off, e.e_off + e.e_len,
			    r->r_image, r->r_size);
			return false;
		}
		if ((e.e_flags & LW_FLUSH) && o->to == TO_FLUSH &&
		    ++flushes == o->to_n)
			return true;
		if ((e.e_flags & LW_MARK) && o->to == TO_MARK) {
			marks++;
			if (strcmp(e.e_mark, o->to_mark) == 0)
				return true;
		}
	}
	if (o->to == TO_FLUSH) {
		log_err("%s: --to %s: the log has only %" PRIu64 " FLUSH "
		    "entries", r->r_log, o->to_arg, flushes);
		return false;
	}
	if (o->to == TO_MARK) {
		log_err("%s: --to %s: the log has no mark named '%s' (it has %"
		    PRIu64 " marks)", r->r_log, o->to_arg, o->to_mark, marks);
		return false;
	}
	return true;
}

/* Apply the first r_napply entries to OUT.  false after a message. */
static bool
apply_entries(struct replay *r)
{
	struct logfile_entry e;
	uint64_t i, end;

	logfile_rewind(r->r_lf);
	for (i = 0; i < r->r_napply; i++) {
		if (logfile_next(r->r_lf, &e) != 0) {
			log_err("%s", logfile_errmsg(r->r_lf));
			return false;
		}
		if (e.e_flags & LW_MARK) {
			r->r_marks++;
		} else if (e.e_flags & LW_FLUSH) {
			r->r_flushes++;
		} else if (e.e_flags & LW_DISCARD) {
			/*
			 * A discard reads back as zeroes here; a real
			 * device may keep the old data, so a checker that
			 * cares should try both.
			 */
			end = e.e_off + e.e_len < r->r_size ?
			    e.e_off + e.e_len : r->r_size;
			if (e.e_off < end && !zero_range(r, e.e_off,
			    end - e.e_off))
				return false;
			r->r_discards++;
			r->r_dbytes += e.e_len;
		} else {
			if (!apply_write(r, &e))
				return false;
			r->r_writes++;
			r->r_wbytes += e.e_len;
			if (e.e_flags & LW_FUA)
				r->r_fua++;
		}
		progress(&r->r_pr, "replaying entries", i + 1, r->r_napply);
	}
	progress_end(&r->r_pr);
	return true;
}

static void
replay_report(const struct replay *r, const struct replay_opts *o)
{
	uint64_t nr = logfile_nr_entries(r->r_lf);

	if (o->json) {
		printf("{\"log\":");
		cli_json_string(stdout, r->r_log);
		printf(",\"out\":");
		cli_json_string(stdout, r->r_out);
		printf(",\"base\":");
		if (r->r_image != NULL)
			cli_json_string(stdout, r->r_image);
		else
			printf("null");
		printf(",\"base_copy\":\"%s\",\"size\":%" PRIu64 ",\"to\":",
		    r->r_how, r->r_size);
		if (o->to_arg != NULL)
			cli_json_string(stdout, o->to_arg);
		else
			printf("null");
		printf(",\"entries\":%" PRIu64 ",\"log_entries\":%" PRIu64
		    ",\"last_entry\":", r->r_napply, nr);
		if (r->r_napply > 0)
			printf("%" PRIu64, r->r_napply - 1);
		else
			printf("null");
		printf(",\"writes\":%" PRIu64 ",\"bytes_written\":%" PRIu64
		    ",\"fua_writes\":%" PRIu64 ",\"discards\":%" PRIu64
		    ",\"bytes_discarded\":%" PRIu64 ",\"flushes\":%" PRIu64
		    ",\"marks\":%" PRIu64 "}\n", r->r_writes, r->r_wbytes,
		    r->r_fua, r->r_discards, r->r_dbytes, r->r_flushes,
		    r->r_marks);
		return;
	}
	printf("log:       %s\n", r->r_log);
	printf("out:       %s, %" PRIu64 " bytes, ", r->r_out, r->r_size);
	if (r->r_image == NULL)
		printf("sparse (the base was all zero)\n");
	else
		printf("a %s of %s\n", r->r_how, r->r_image);
	printf("replayed:  %" PRIu64 " of %" PRIu64 " entries (", r->r_napply,
	    nr);
	if (r->r_napply > 0)
		printf("0 to %" PRIu64 "; ", r->r_napply - 1);
	if (o->to_arg != NULL)
		printf("--to %s)\n", o->to_arg);
	else
		printf("the whole log)\n");
	printf("writes:    %" PRIu64 ", %" PRIu64 " bytes (%" PRIu64
	    " FUA)\n", r->r_writes, r->r_wbytes, r->r_fua);
	printf("discards:  %" PRIu64 ", %" PRIu64 " bytes\n", r->r_discards,
	    r->r_dbytes);
	printf("flushes:   %" PRIu64 "\n", r->r_flushes);
	printf("marks:     %" PRIu64 "\n", r->r_marks);
}

static void
replay_usage(FILE *f)
{
	fprintf(f, "usage: rumpblk log replay --out OUT [--base IMAGE] "
	    "[--to LIMIT] [--json] FILE\n\n"
	    "Create OUT as a copy of IMAGE, the image the write log FILE\n"
	    "starts from, then apply FILE's entries to it in order: writes\n"
	    "are written, discards read back as zeroes (holes are punched),\n"
	    "FLUSHes and marks change nothing.  OUT must not exist; it is a\n"
	    "clone of IMAGE where the file system can share extents, else a\n"
	    "sparse copy.  IMAGE and FILE are only read.  If FILE records\n"
	    "its base, IMAGE must have its size and (if recorded) its rbh128\n"
	    "hash.  If anything fails, OUT is removed.\n\n"
	    "  --out OUT      the file to create (required)\n"
	    "  --base IMAGE   the base image; required unless FILE records "
	    "an\n"
	    "                 all-zero base (OUT is then a sparse file of "
	    "its size)\n"
	    "  --to LIMIT     apply only a prefix of FILE (default: every "
	    "entry):\n"
	    "                 entry=N    the first N entries (0 to N-1; "
	    "entry=0: none)\n"
	    "                 flush=N    every entry through the N-th FLUSH "
	    "(N from 1)\n"
	    "                 mark=NAME  every entry through the first mark "
	    "NAME\n"
	    "                 A limit past the end of FILE is an error.\n"
	    "  --json         one JSON object on standard output\n");
}

static int
replay_option(void *ctx, int c, const char *arg)
{
	struct replay_opts *o = ctx;
	const char *v;

	switch (c) {
	case 'o':
		o->out = arg;
		return 0;
	case 'b':
		o->base = arg;
		return 0;
	case 'j':
		o->json = true;
		return 0;
	case 't':
		o->to_arg = arg;
		if (strncmp(arg, "mark=", 5) == 0) {
			o->to = TO_MARK;
			o->to_mark = arg + 5;
			return 0;
		}
		if (strncmp(arg, "entry=", 6) == 0) {
			o->to = TO_ENTRY;
			v = arg + 6;
			if (cli_parse_uint(v, 0, UINT64_MAX, &o->to_n) == 0)
				return 0;
		} else if (strncmp(arg, "flush=", 6) == 0) {
			o->to = TO_FLUSH;
			v = arg + 6;
			if (cli_parse_uint(v, 1, UINT64_MAX, &o->to_n) == 0)
				return 0;
		} else {
			cli_err("log replay: --to '%s' is not entry=N, "
			    "flush=N or mark=NAME", arg);
			return 2;
		}
		cli_err("log replay: --to '%s': '%s' is not a number%s", arg,
		    v, o->to == TO_FLUSH ? " from 1" : "");
		return 2;
	}
	return -1;
}

/*
 * Open --base IMAGE and take its size.  fd -1 after a message.  A block
 * device may be a base too; it is copied, not cloned.
 */
static int
open_image(const char *image, uint64_t *sizep, bool *regularp)
{
	struct stat st;
	uint64_t n;
	int fd;

	if ((fd = open(image, O_RDONLY | O_CLOEXEC)) == -1) {
		log_err("%s: %s", image, strerror(errno));
		return -1;
	}
	if (fstat(fd, &st) == -1) {
		log_err("%s: %s", image, strerror(errno));
		goto close_fd;
	}
	*regularp = S_ISREG(st.st_mode);
	if (S_ISREG(st.st_mode)) {
		*sizep = (uint64_t)st.st_size;
	} else if (S_ISBLK(st.st_mode)) {
		if (ioctl(fd, BLKGETSIZE64, &n) == -1) {
			log_err("%s: cannot tell its size: %s", image,
			    strerror(errno));
			goto close_fd;
		}
		*sizep = n;
	} else {
		log_err("%s: is a %s; a base image is a regular file or a "
		    "block device", image, S_ISDIR(st.st_mode) ? "directory" :
		    S_ISFIFO(st.st_mode) ? "FIFO" : S_ISCHR(st.st_mode) ?
		    "character device" : "special file");
		goto close_fd;
	}
	return fd;
close_fd:
	close(fd);
	return -1;
}

/*
 * The base checks: IMAGE (fd, size) against FILE's record of its base,
 * or, with no --base, the record must say that the base was all zero.
 * Sets r_size.  false after a message.
 */
static bool
check_base(struct replay *r, int fd, uint64_t size, bool hash)
{
	const struct logfile_base *b = logfile_base(r->r_lf);
	char want[LOGFILE_HASHSTR], got[LOGFILE_HASHSTR];
	uint8_t h[16];
	int zero;

	if (r->r_image == NULL) {
		if (b == NULL) {
			log_err("%s: records no base image; give --base "
			    "IMAGE, the image logging started from", r->r_log);
			return false;
		}
		if (!b->bs_zero) {
			log_err("%s: its base (%s, %" PRIu64 " bytes) was not "
			    "recorded as all zero; give --base IMAGE, a copy "
			    "of it", r->r_log, b->bs_path, b->bs_size);
			return false;
		}
		r->r_size = b->bs_size;
		return true;
	}
	r->r_size = size;
	if (b == NULL)
		return true;
	if (size != b->bs_size) {
		log_err("%s: %" PRIu64 " bytes, but the base of %s (%s) was %"
		    PRIu64 " bytes", r->r_image, size, r->r_log, b->bs_path,
		    b->bs_size);
		return false;
	}
	if (!hash || !(b->bs_hashed || b->bs_zero))
		return true;
	if (!hash_image(r, fd, size, h, &zero))
		return false;
	if (b->bs_hashed && memcmp(h, b->bs_hash, 16) != 0) {
		logfile_hash_str(h, got);
		logfile_hash_str(b->bs_hash, want);
		log_err("%s: hash %s, but the base of %s (%s) had %s: not the "
		    "image the log starts from", r->r_image, got, r->r_log,
		    b->bs_path, want);
		return false;
	}
	if (b->bs_zero && !zero) {
		log_err("%s: not all zero, but the base of %s (%s) was",
		    r->r_image, r->r_log, b->bs_path);
		return false;
	}
	return true;
}

static int
log_replay(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "out", required_argument, NULL, 'o' },
		{ "base", required_argument, NULL, 'b' },
		{ "to", required_argument, NULL, 't' },
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct replay_opts o;
	const struct cli_args ca = {
		.ca_name = "log replay", .ca_opts = opts,
		.ca_usage = replay_usage, .ca_option = replay_option,
		.ca_ctx = &o, .ca_noperands = 1, .ca_operands = "one FILE",
	};
	struct replay r;
	char **operands, msg[4608];
	uint64_t isize = 0;
	bool regular = false;
	int infd = -1, rc;

	memset(&o, 0, sizeof(o));
	if (!cli_parse_args(&ca, argc, argv, &operands, &rc))
		return rc;
	if (o.out == NULL) {
		cli_err("log replay: --out OUT is required (try 'rumpblk log "
		    "replay --help')");
		return 2;
	}
	memset(&r, 0, sizeof(r));
	r.r_log = operands[0];
	r.r_out = o.out;
	r.r_image = o.base;
	r.r_outfd = -1;
	r.r_punch = true;
	r.r_how = "zero";
	progress_init(&r.r_pr);
	rc = 1;
	if (logfile_open(r.r_log, &r.r_lf, msg, sizeof(msg)) != 0) {
		log_err("%s", msg);
		return 1;
	}
	if ((r.r_buf = malloc(LOG_CHUNK)) == NULL) {
		log_err("%s", strerror(ENOMEM));
		goto close_log;
	}
	if (o.base != NULL &&
	    (infd = open_image(o.base, &isize, &regular)) == -1)
		goto free_buf;
	/* The cheap checks first, the hash (which reads IMAGE) last. */
	if (!check_base(&r, infd, isize, false) ||
	    !select_entries(&r, &o, logfile_base(r.r_lf) == NULL) ||
	    !check_base(&r, infd, isize, true))
		goto close_in;
	r.r_outfd = open(o.out, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC,
	    0644);
	if (r.r_outfd == -1) {
		if (errno == EEXIST)
			log_err("%s: already exists; replay never overwrites "
			    "a file", o.out);
		else
			log_err("%s: %s", o.out, strerror(errno));
		goto close_in;
	}
	cleanup_path = o.out;
	cleanup_signals(true);
	if (infd != -1) {
		if (!copy_image(&r, infd, regular))
			goto remove_out;
	} else if (ftruncate(r.r_outfd, (off_t)r.r_size) == -1) {
		log_err("%s: cannot make it %" PRIu64 " bytes: %s", o.out,
		    r.r_size, strerror(errno));
		goto remove_out;
	}
	if (!apply_entries(&r))
		goto remove_out;
	if (fdatasync(r.r_outfd) == -1 || close(r.r_outfd) == -1) {
		r.r_outfd = -1;
		log_err("%s: cannot make it durable: %s", o.out,
		    strerror(errno));
		goto remove_out;
	}
	r.r_outfd = -1;
	cleanup_signals(false);
	cleanup_path = NULL;
	replay_report(&r, &o);
	rc = fflush(stdout) == 0 ? 0 : 1;
	goto close_in;
remove_out:
	if (r.r_outfd != -1)
		close(r.r_outfd);
	unlink(o.out);
	cleanup_signals(false);
	cleanup_path = NULL;
close_in:
	if (infd != -1)
		close(infd);
free_buf:
	free(r.r_buf);
close_log:
	logfile_close(r.r_lf);
	return rc;
}

/* 4. The command. */

static void
log_usage(FILE *f)
{
	fprintf(f, "usage: rumpblk log info [--json] FILE\n"
	    "       rumpblk log replay --out OUT [--base IMAGE] [--to LIMIT] "
	    "[--json] FILE\n\n"
	    "Inspect and replay a write log: every write, discard, FLUSH\n"
	    "and mark a unit saw, in the format of Linux dm-log-writes, as\n"
	    "'rumpblk serve --write-log FILE' records it ('rumpblk ctl PATH\n"
	    "mark NAME' adds a mark).\n\n"
	    "  info     check the log and count what it holds: writes,\n"
	    "           discards, FLUSHes, FUA writes, epochs, marks and the\n"
	    "           base image it starts from\n"
	    "  replay   create OUT as a copy of the base image with a prefix\n"
	    "           of the log applied (--to entry=N, flush=N or\n"
	    "           mark=NAME)\n\n"
	    "Options: --json (both); --out OUT, --base IMAGE, --to LIMIT\n"
	    "(replay).  'rumpblk log info --help' and 'rumpblk log replay\n"
	    "--help' have the details.\n");
}

int
cmd_log(int argc, char **argv)
{
	char *name, *word;
	bool info;
	int rc;

	if (argc >= 2 && (strcmp(argv[1], "--help") == 0 ||
	    strcmp(argv[1], "-h") == 0)) {
		log_usage(stdout);
		return 0;
	}
	if (argc < 2) {
		log_usage(stderr);
		return 2;
	}
	if (strcmp(argv[1], "info") != 0 && strcmp(argv[1], "replay") != 0) {
		cli_err("log: unknown subcommand '%s' (info or replay; try "
		    "'rumpblk log --help')", argv[1]);
		return 2;
	}
	info = strcmp(argv[1], "info") == 0;
	/*
	 * getopt_long's messages then name "rumpblk log info".  The name
	 * is freed, and argv given back as it came, so that a caller that
	 * runs the command many times (fuzz/fuzz-log-reader.c) leaks
	 * nothing.
	 */
	word = argv[1];
	if (asprintf(&name, "%s %s", argv[0], argv[1]) != -1)
		argv[1] = name;
	else
		name = NULL;
	rc = info ? log_info(argc - 1, argv + 1) :
	    log_replay(argc - 1, argv + 1);
	argv[1] = word;
	free(name);
	return rc;
}
