/*
 * fuzz-log-reader: the write-log reader (cli/logfile.c) and the commands
 * built on it (cli/log.c: rumpblk log info and log replay) on arbitrary
 * bytes.  An input is a log file as it is, with no selector byte, so
 * that real logs are seeds and a crash input is a file that 'rumpblk log
 * info' reproduces.  Each input is
 *
 *   1. walked through the reader's API twice (logfile_rewind between),
 *      every write's data read back in chunks, and the reader's promises
 *      checked against the bytes of the input (logfile.h): entries
 *      follow each other inside the file, data is where the entry says,
 *      ranges stay inside a recorded base, reads outside an entry are
 *      refused, an error stays put, and both walks agree;
 *   2. given to 'rumpblk log info' and 'log info --json', which must
 *      succeed exactly when the walk did;
 *   3. replayed by 'rumpblk log replay' twice, the whole log and a
 *      prefix (--to entry=, flush= or mark=, chosen from the input's
 *      length), onto a base of zeroes made up here (or none, when the
 *      log records an all-zero base).  A replay that fails must leave
 *      no output; one that succeeds must have read only entries the
 *      walk found valid, and, for a unit of at most MODEL_MAX bytes,
 *      produce what a model of the replay built from the walk and the
 *      input's bytes produces.
 *
 * The files (the log, the base and the output) live in a directory of
 * their own on /dev/shm, else in $TMPDIR, removed at exit.  The
 * commands' messages about bad logs are expected noise and go to
 * /dev/null, unless FUZZ_LOG_READER_VERBOSE is set.
 *
 * Seeds (fuzz/corpus/fuzz-log-reader/): logs recorded by 'rumpblk serve
 * --write-log' (sector sizes 512 and 4096, zero and random bases, marks,
 * trims, write-zeroes, FUA) and 'rumpblk bench --write-log', and logs
 * made with tests/integration/synthlog.py (no base record, as
 * dm-log-writes writes them; odd base sizes; a truncated log; a super
 * that counts more entries than the file holds).
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fuzz-util.h"
#include "cli.h"
#include "control.h"
#include "logfile.h"

int	LLVMFuzzerInitialize(int *, char ***);
int	LLVMFuzzerTestOneInput(const uint8_t *, size_t);

/* The largest unit whose replay is compared with the model, bytes. */
#define MODEL_MAX	(1u << 20)
/* The largest all-zero base replayed without --base, bytes. */
#define SPARSE_MAX	(1ull << 40)
/* The chunk the walk reads data in, bytes. */
#define CHUNK		4096

struct walk_entry {
	uint64_t	w_flags;
	uint64_t	w_off;
	uint64_t	w_len;
	uint64_t	w_dataoff;
	uint64_t	w_markoff;	/* a mark's name: bytes of the input */
	size_t		w_marklen;
};

/* What the first walk found. */
struct walk {
	bool		wk_opened;
	uint32_t	wk_secsize;
	bool		wk_hasbase;
	bool		wk_zero;	/* the base record says all zero */
	uint64_t	wk_basesize;
	uint64_t	wk_nvalid;	/* entries read without an error */
	int		wk_error;	/* ENOENT: every entry was valid */
	uint64_t	wk_maxend;	/* bytes: the furthest e_off + e_len */
	struct walk_entry *wk_ent;	/* wk_nvalid of them */
};

static char dir[4096], logpath[4200], basepath[4200], outpath[4200];
static unsigned char model[MODEL_MAX], outbuf[MODEL_MAX];

/*
 * The log commands never take fault options, so util.c's calls of these
 * (when a command's ca_fault is set) never happen here; fault.c is not
 * linked, to keep control.c out.
 */
int
cli_fault_option(struct cli_fault_opts *fo, int opt, const char *arg)
{
	abort();
}

void
cli_fault_opts_free(struct cli_fault_opts *fo)
{
	abort();
}

static void
remove_dir(void)
{
	unlink(logpath);
	unlink(basepath);
	unlink(outpath);
	rmdir(dir);
}

int
LLVMFuzzerInitialize(int *argcp, char ***argvp)
{
	const char *tmp = getenv("TMPDIR");
	struct stat st;
	FILE *devnull;
	int fd;

	if (stat("/dev/shm", &st) == 0 && S_ISDIR(st.st_mode) &&
	    access("/dev/shm", W_OK | X_OK) == 0)
		tmp = "/dev/shm";
	snprintf(dir, sizeof(dir), "%s/rumpblk-fuzz-log.XXXXXX",
	    tmp != NULL ? tmp : "/tmp");
	if (mkdtemp(dir) == NULL)
		fuzz_die(dir, errno);
	snprintf(logpath, sizeof(logpath), "%s/log", dir);
	snprintf(basepath, sizeof(basepath), "%s/base", dir);
	snprintf(outpath, sizeof(outpath), "%s/out", dir);
	atexit(remove_dir);
	if (getenv("FUZZ_LOG_READER_VERBOSE") != NULL)
		return 0;
	/*
	 * The commands' output and messages to /dev/null.  stdout's
	 * descriptor can go; stderr's cannot, since the sanitizers report
	 * on descriptor 2 and libFuzzer prints through a FILE it took at
	 * start-up, so only the stdio stream the commands print to
	 * (through cli_verr) is replaced.
	 */
	if ((fd = open("/dev/null", O_WRONLY | O_CLOEXEC)) == -1)
		fuzz_die("/dev/null", errno);
	if (dup2(fd, STDOUT_FILENO) == -1)
		fuzz_die("dup2", errno);
	close(fd);
	if ((devnull = fopen("/dev/null", "w")) == NULL)
		fuzz_die("/dev/null", errno);
	stderr = devnull;
	return 0;
}

static void
put_file(const char *path, const uint8_t *data, size_t size)
{
	int fd;

	if ((fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC,
	    0600)) == -1)
		fuzz_die(path, errno);
	if (size > 0 && cli_pwrite_full(fd, data, size, 0) != 0)
		fuzz_die(path, EIO);
	close(fd);
}

/* The reader broke a promise: say which, then abort (the crash). */
#define CHECK(cond)							\
	do {								\
		if (!(cond))						\
			check_failed(#cond, __LINE__);			\
	} while (0)

static void __attribute__((noreturn))
check_failed(const char *what, int line)
{
	/* To descriptor 2, where libFuzzer reports: stderr is /dev/null. */
	dprintf(STDERR_FILENO, "fuzz-log-reader.c:%d: check failed: %s\n",
	    line, what);
	abort();
}

/*
 * Walk every entry of lf once, checking each against the input; the
 * entries go to wk (if not NULL) as they are found valid.  The error
 * that ended the walk (ENOENT: none) and the number of valid entries
 * are returned in *errorp and *np.
 */
static void
walk_once(struct logfile *lf, const uint8_t *data, size_t size,
    struct walk *wk, uint64_t *np, int *errorp)
{
	const uint32_t S = logfile_secsize(lf);
	const struct logfile_base *b = logfile_base(lf);
	static unsigned char buf[CHUNK];
	struct logfile_entry e;
	uint64_t n = 0, at = S, limit = UINT64_MAX, done, len;
	size_t chunk, mlen;
	int error;

	if (b != NULL) {
		limit = b->bs_size + (S - b->bs_size % S) % S;
		if (limit < b->bs_size)
			limit = UINT64_MAX;
	}
	CHECK(logfile_end(lf) == S);
	while ((error = logfile_next(lf, &e)) == 0) {
		CHECK(e.e_index == n);
		CHECK(e.e_fileoff == at);
		CHECK(e.e_fileoff <= size && size - e.e_fileoff >= S);
		CHECK(e.e_len % S == 0);
		if (e.e_flags & LW_MARK) {
			CHECK(e.e_mark != NULL && e.e_len == 0 &&
			    e.e_dataoff == 0);
			mlen = strlen(e.e_mark);
			CHECK(mlen <= LW_MARKMAX(S));
			CHECK(memcmp(e.e_mark, data + at +
			    sizeof(struct lw_entry), mlen) == 0);
		} else
			CHECK(e.e_mark == NULL);
		if (e.e_flags & LW_FLUSH)
			CHECK(e.e_len == 0 && e.e_off == 0 &&
			    e.e_dataoff == 0);
		if (e.e_flags & LW_DISCARD)
			CHECK(e.e_len > 0 && e.e_dataoff == 0);
		if ((e.e_flags & (LW_FLUSH | LW_DISCARD | LW_MARK)) == 0) {
			/* A write: its data follows its entry sector. */
			CHECK(e.e_len > 0 && e.e_dataoff == at + S);
			CHECK(e.e_dataoff <= size &&
			    e.e_len <= size - e.e_dataoff);
			for (done = 0; done < e.e_len; done += chunk) {
				/* Odd chunk sizes, to cross sectors. */
				len = e.e_len - done;
				chunk = len < CHUNK - (n % 7) ? (size_t)len :
				    CHUNK - (n % 7);
				CHECK(logfile_read(lf, &e, done, buf,
				    chunk) == 0);
				CHECK(memcmp(buf, data + e.e_dataoff + done,
				    chunk) == 0);
			}
			CHECK(logfile_read(lf, &e, e.e_len, buf, 1) ==
			    EINVAL);
			CHECK(logfile_read(lf, &e, UINT64_MAX, buf, 2) ==
			    EINVAL);
			at = e.e_dataoff + e.e_len;
		} else {
			CHECK(logfile_read(lf, &e, 0, buf, 1) == EINVAL);
			at += S;
		}
		if (b != NULL && e.e_len > 0 && (e.e_flags & LW_MARK) == 0)
			CHECK(e.e_off + e.e_len <= limit);
		CHECK(logfile_end(lf) == at);
		if (wk != NULL) {
			wk->wk_ent[n].w_flags = e.e_flags;
			wk->wk_ent[n].w_off = e.e_off;
			wk->wk_ent[n].w_len = e.e_len;
			wk->wk_ent[n].w_dataoff = e.e_dataoff;
			wk->wk_ent[n].w_markoff = e.e_fileoff +
			    sizeof(struct lw_entry);
			wk->wk_ent[n].w_marklen = e.e_mark != NULL ?
			    strlen(e.e_mark) : 0;
			if ((e.e_flags & LW_MARK) == 0 &&
			    e.e_off + e.e_len > wk->wk_maxend)
				wk->wk_maxend = e.e_off + e.e_len;
		}
		n++;
		/* Every entry takes a sector of the file at least. */
		CHECK(n <= size / S);
	}
	CHECK(error == ENOENT || error == EINVAL || error == EIO);
	if (error == ENOENT)
		CHECK(n == logfile_nr_entries(lf));
	else {
		CHECK(logfile_errmsg(lf)[0] != '\0');
		/* After an error the reader stays at that entry. */
		CHECK(logfile_next(lf, &e) == error);
		CHECK(logfile_end(lf) == at);
	}
	CHECK(logfile_next(lf, &e) == error);
	*np = n;
	*errorp = error;
}

/* Step 1: open and walk the log at logpath into *wk. */
static void
walk(const uint8_t *data, size_t size, struct walk *wk)
{
	const struct logfile_base *b;
	struct logfile *lf;
	char msg[4608];
	uint64_t n2;
	uint32_t S;
	int error2;

	memset(wk, 0, sizeof(*wk));
	if (logfile_open(logpath, &lf, msg, sizeof(msg)) != 0) {
		CHECK(msg[0] != '\0');
		return;
	}
	wk->wk_opened = true;
	S = wk->wk_secsize = logfile_secsize(lf);
	CHECK(S >= 512 && S <= 65536 && (S & (S - 1)) == 0);
	CHECK(size >= S && logfile_size(lf) == size);
	CHECK(strcmp(logfile_path(lf), logpath) == 0);
	if ((b = logfile_base(lf)) != NULL) {
		CHECK(b->bs_path != NULL &&
		    strlen(b->bs_path) <= LW_PATHMAX(S));
		wk->wk_hasbase = true;
		wk->wk_zero = b->bs_zero;
		wk->wk_basesize = b->bs_size;
	}
	if ((wk->wk_ent = calloc(size / S + 1, sizeof(*wk->wk_ent))) == NULL)
		fuzz_die("calloc", ENOMEM);
	walk_once(lf, data, size, wk, &wk->wk_nvalid, &wk->wk_error);
	logfile_rewind(lf);
	walk_once(lf, data, size, NULL, &n2, &error2);
	CHECK(n2 == wk->wk_nvalid && error2 == wk->wk_error);
	logfile_close(lf);
}

/* Run 'rumpblk log' with the words of args (at most 8), NULL-ended. */
static int
run_log(const char *const *args)
{
	static char words[10][4400];
	char *argv[11];
	struct sigaction old[3];
	static const int sigs[] = { SIGINT, SIGTERM, SIGHUP };
	int argc, i, rc;

	snprintf(words[0], sizeof(words[0]), "log");
	for (argc = 1; args[argc - 1] != NULL && argc < 10; argc++)
		snprintf(words[argc], sizeof(words[argc]), "%s",
		    args[argc - 1]);
	for (i = 0; i < argc; i++)
		argv[i] = words[i];
	argv[argc] = NULL;
	/* replay sets these to SIG_DFL when it is done; libFuzzer's stay. */
	for (i = 0; i < 3; i++)
		sigaction(sigs[i], NULL, &old[i]);
	rc = cmd_log(argc, argv);
	for (i = 0; i < 3; i++)
		sigaction(sigs[i], &old[i], NULL);
	return rc;
}

/*
 * The first k entries of the walk applied to model (size bytes, a base
 * of zeroes), as rumpblk log replay documents it: writes written, but
 * past the unit's end; discards read back as zeroes; the rest nothing.
 */
static void
model_replay(const struct walk *wk, const uint8_t *data, uint64_t k,
    uint64_t size)
{
	const struct walk_entry *w;
	uint64_t i, end;

	memset(model, 0, (size_t)size);
	for (i = 0; i < k; i++) {
		w = &wk->wk_ent[i];
		if (w->w_flags & (LW_MARK | LW_FLUSH) || w->w_off >= size)
			continue;
		end = w->w_len > size - w->w_off ? size : w->w_off + w->w_len;
		if (w->w_flags & LW_DISCARD)
			memset(model + w->w_off, 0, (size_t)(end - w->w_off));
		else
			memcpy(model + w->w_off, data + w->w_dataoff,
			    (size_t)(end - w->w_off));
	}
}

/*
 * Step 3: one replay, the whole log (to NULL) or through the prefix
 * "--to" to says, of which the walk expects k entries (UINT64_MAX: the
 * prefix does not exist, or not among the valid entries).  size is the
 * unit's size; base whether --base is given.
 */
static void
replay(const struct walk *wk, const uint8_t *data, const char *to,
    uint64_t k, uint64_t size, bool base, bool json)
{
	const char *args[10];
	struct stat st;
	size_t got;
	int i = 0, rc, fd;

	args[i++] = "replay";
	args[i++] = "--out";
	args[i++] = outpath;
	if (base) {
		args[i++] = "--base";
		args[i++] = basepath;
	}
	if (to != NULL) {
		args[i++] = "--to";
		args[i++] = to;
	}
	if (json)
		args[i++] = "--json";
	args[i++] = logpath;
	args[i] = NULL;
	unlink(outpath);
	rc = run_log(args);
	if (rc != 0) {
		/* A replay that fails removes its output. */
		CHECK(lstat(outpath, &st) == -1 && errno == ENOENT);
		return;
	}
	/* It read only entries the reader finds valid. */
	if (to == NULL)
		CHECK(wk->wk_error == ENOENT);
	CHECK(k != UINT64_MAX && k <= wk->wk_nvalid);
	if ((fd = open(outpath, O_RDONLY | O_CLOEXEC)) == -1)
		fuzz_die(outpath, errno);
	if (fstat(fd, &st) == -1)
		fuzz_die(outpath, errno);
	CHECK((uint64_t)st.st_size == size);
	if (size <= MODEL_MAX) {
		if (cli_pread_full(fd, outbuf, (size_t)size, 0, &got) != 0)
			fuzz_die(outpath, EIO);
		CHECK(got == size);
		model_replay(wk, data, k, size);
		CHECK(memcmp(model, outbuf, (size_t)size) == 0);
	}
	close(fd);
	unlink(outpath);
}

/*
 * The number of entries --to selects among the walk's: the first flush
 * (kind 1) or the first mark named name (kind 2) and every entry before
 * it; UINT64_MAX if the valid entries hold none.
 */
static uint64_t
prefix(const struct walk *wk, const uint8_t *data, int kind,
    const char *name)
{
	const struct walk_entry *w;
	uint64_t i;

	for (i = 0; i < wk->wk_nvalid; i++) {
		w = &wk->wk_ent[i];
		if (kind == 1 && (w->w_flags & LW_FLUSH))
			return i + 1;
		if (kind == 2 && (w->w_flags & LW_MARK) &&
		    w->w_marklen == strlen(name) &&
		    memcmp(data + w->w_markoff, name, w->w_marklen) == 0)
			return i + 1;
	}
	return UINT64_MAX;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char *const info[] = { "info", logpath, NULL };
	static const char *const info_json[] = { "info", "--json", logpath,
	    NULL };
	const struct walk_entry *w;
	uint64_t unit, i, k;
	char to[300];
	struct walk wk;
	bool base;
	int kind;

	put_file(logpath, data, size);
	walk(data, size, &wk);
	CHECK((run_log(info) == 0) == (wk.wk_opened &&
	    wk.wk_error == ENOENT));
	CHECK((run_log(info_json) == 0) == (wk.wk_opened &&
	    wk.wk_error == ENOENT));
	if (!wk.wk_opened)
		return 0;

	/*
	 * The unit: a recorded all-zero base is replayed without --base
	 * (a sparse output of its size); any other gets a base of zeroes
	 * of the recorded size, or, with no record, one that holds every
	 * entry, a byte short of it for inputs of odd length (so that the
	 * last sector is partial).
	 */
	base = !(wk.wk_hasbase && wk.wk_zero);
	if (wk.wk_hasbase)
		unit = wk.wk_basesize;
	else
		unit = wk.wk_maxend > 0 && (size & 1) ? wk.wk_maxend - 1 :
		    wk.wk_maxend;
	if (base) {
		if (unit > MODEL_MAX)
			goto out;
		put_file(basepath, NULL, 0);
		if (truncate(basepath, (off_t)unit) == -1)
			fuzz_die(basepath, errno);
	} else if (unit > SPARSE_MAX)
		goto out;
	replay(&wk, data, NULL, wk.wk_nvalid, unit, base, false);

	/* A prefix, by the input's length. */
	kind = (int)(size % 3);
	if (kind == 0) {
		k = wk.wk_nvalid / 2;
		snprintf(to, sizeof(to), "entry=%llu", (unsigned long long)k);
	} else if (kind == 1) {
		k = prefix(&wk, data, 1, NULL);
		snprintf(to, sizeof(to), "flush=1");
	} else {
		/* The first mark's name, if any (cut short: a word). */
		snprintf(to, sizeof(to), "mark=none");
		for (i = 0; i < wk.wk_nvalid; i++)
			if (wk.wk_ent[i].w_flags & LW_MARK) {
				w = &wk.wk_ent[i];
				snprintf(to, sizeof(to), "mark=%.*s",
				    (int)(w->w_marklen < 250 ? w->w_marklen :
				    250), (const char *)data + w->w_markoff);
				break;
			}
		k = prefix(&wk, data, 2, to + 5);
	}
	replay(&wk, data, to, k, unit, base, true);
out:
	free(wk.wk_ent);
	return 0;
}
