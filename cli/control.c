/*
 * The control socket (--control PATH) and its client, rumpblk ctl.
 *
 * One thread polls the listening Unix socket and up to CLI_CTL_MAXCLIENTS
 * connections; each line a client sends is one command, answered by one
 * JSON object on one line:
 *
 *   fault add RULE   {"ok":true,"id":"r1"}
 *   fault del ID     {"ok":true}
 *   fault list       {"ok":true,"rules":[{"id":..,"rule":..,...}]}
 *   fault clear      {"ok":true}
 *   stats            {"ok":true,"stats":{...,"faults":{...}}}
 *   reset            {"ok":true}  (rumpblk_unit_reset of the unit served:
 *                    the NBD server drops every connection to it)
 *   power-cut [model=M] [seed=S] [atom=N]
 *                    {"ok":true,"unit":N,"power_cut":{"model":..,"seed":..,
 *                    "unflushed":..,...}}  (rumpblk_power_cut of the unit
 *                    served; it needs --write-cache)
 *   mark NAME        {"ok":true,"mark":NAME}  (rumpblk_log_mark: a mark
 *                    entry in the write log; it needs --write-log)
 *
 * reset, power-cut and mark take unit=N for another unit than the one
 * served first (serve --add-export: unit 1, 2, ... in their order).
 *
 * and {"ok":false,"error":"..."} when a command fails; a bad rule is
 * refused with the library's message and the server keeps serving.  The
 * commands are rare and cheap, so one thread serves every client; a
 * client that does not read its answers is dropped after a send timeout
 * rather than stalling the others for long.
 *
 * The socket arms faults and cuts power, so it obeys its owner only
 * (issue 14).  The guards, each explained where it stands:
 *   - the socket is mode 0600 from the moment it appears at PATH, whatever
 *     the umask (listen_unix);
 *   - PATH is never taken from anything but a stale socket: a regular
 *     file, a directory or a socket someone listens on is refused
 *     (clear_path);
 *   - each connection's peer credentials are checked: the server's uid
 *     and root only (peer_allowed);
 *   - a command line is at most CLI_CTL_LINEMAX bytes with its newline, a
 *     connection sends at most CLI_CTL_MAXCMDS commands, at most
 *     CLI_CTL_MAXCLIENTS clients are served at once, and a line must be
 *     UTF-8 text without NULs or control bytes (cli_control_input,
 *     cli_control_line).  Whatever a client sends, each of its lines gets
 *     one JSON answer, and the other clients are served on.
 *
 * Contents, in order: answers and commands (reply_error ...
 * cli_control_command); the line reader (cli_control_line,
 * cli_control_input); the server (peer_allowed, control_main,
 * clear_path, listen_unix, cli_control_start/_stop); the client
 * (cmd_ctl); its live view, stats --watch (a JSON reader, snapshots,
 * the view, cli_stats_watch).
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "control.h"
#include "sendv.h"

/* Answers go to the socket in pieces of about this size. */
#define CTL_OUTBUF	65536

struct ctl_client {
	int		cl_fd;		/* -1: free slot */
	struct cli_ctl_reader cl_rd;
};

struct cli_control {
	struct rumpblk	*cc_rb;
	int		cc_unit;	/* what reset resets */
	char		*cc_path;
	dev_t		cc_dev;		/* the socket file's, so that stop */
	ino_t		cc_ino;		/* removes it only if still ours */
	int		cc_lfd;
	int		cc_pipe[2];	/* written to stop the thread */
	pthread_t	cc_thread;
	struct ctl_client cc_cl[CLI_CTL_MAXCLIENTS];
};

/*
 * The length of the UTF-8 sequence at p (n bytes available): 1 to 4, or
 * 0 if it is not well-formed (a stray continuation byte, an overlong
 * form, a surrogate, past U+10FFFF, or cut short).
 */
static size_t
utf8_len(const unsigned char *p, size_t n)
{
	unsigned char lo = 0x80, hi = 0xbf;
	size_t len, i;

	if (p[0] < 0x80)
		return 1;
	if (p[0] >= 0xc2 && p[0] <= 0xdf)
		len = 2;
	else if (p[0] >= 0xe0 && p[0] <= 0xef)
		len = 3;
	else if (p[0] >= 0xf0 && p[0] <= 0xf4)
		len = 4;
	else
		return 0;
	if (p[0] == 0xe0)
		lo = 0xa0;		/* overlong */
	else if (p[0] == 0xed)
		hi = 0x9f;		/* surrogates */
	else if (p[0] == 0xf0)
		lo = 0x90;		/* overlong */
	else if (p[0] == 0xf4)
		hi = 0x8f;		/* past U+10FFFF */
	if (n < len || p[1] < lo || p[1] > hi)
		return 0;
	for (i = 2; i < len; i++)
		if (p[i] < 0x80 || p[i] > 0xbf)
			return 0;
	return len;
}

/*
 * s as a JSON string, escaped as cli_json_string() does, but with any
 * byte that is not part of well-formed UTF-8 written as U+FFFD: an error
 * message may quote a client's words, or be cut in the middle of a
 * character by snprintf, and the answer must still be JSON.
 */
static void
json_text(FILE *f, const char *s)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t n, left = strlen(s);

	fputc('"', f);
	for (; left > 0; p += n, left -= n) {
		if ((n = utf8_len(p, left)) == 0) {
			fputs("\\ufffd", f);
			n = 1;
		} else if (n > 1) {
			fwrite(p, 1, n, f);
		} else if (*p == '"' || *p == '\\') {
			fputc('\\', f);
			fputc(*p, f);
		} else if (*p == '\n') {
			fputs("\\n", f);
		} else if (*p == '\t') {
			fputs("\\t", f);
		} else if (*p == '\r') {
			fputs("\\r", f);
		} else if (*p < 0x20) {
			fprintf(f, "\\u%04x", *p);
		} else
			fputc(*p, f);
	}
	fputc('"', f);
}

static void
reply_error(FILE *f, const char *msg)
{
	fprintf(f, "{\"ok\":false,\"error\":");
	json_text(f, msg);
	fputc('}', f);
}

/*
 * The words after a command, but unit=N, which picks the unit it acts on
 * (default: *unit, the one served first): at most CTL_MAXWORDS, exactly
 * want of them unless want is -1 (else the error is usage).  false:
 * answered with an error.
 */
#define CTL_MAXWORDS	16
static bool
words_unit(const char *cmd, char **save, char **w, int *nw, int want,
    const char *usage, int *unit, FILE *f)
{
	char err[256], *tok, *end;
	long v;

	bool unit_given = false;

	*nw = 0;
	while ((tok = strtok_r(NULL, " \t\r", save)) != NULL) {
		if (strncmp(tok, "unit=", 5) == 0 && unit_given) {
			snprintf(err, sizeof(err), "%s: unit= given twice",
			    cmd);
			reply_error(f, err);
			return false;
		}
		if (strncmp(tok, "unit=", 5) == 0) {
			unit_given = true;
			errno = 0;
			v = strtol(tok + 5, &end, 10);
			if (tok[5] == '\0' || *end != '\0' || errno != 0 ||
			    v < 0 || v > INT_MAX) {
				snprintf(err, sizeof(err), "%s: unit=%.40s: "
				    "want a unit number (0 is the first "
				    "image served)", cmd, tok + 5);
				reply_error(f, err);
				return false;
			}
			*unit = (int)v;
			continue;
		}
		if (*nw == CTL_MAXWORDS) {
			snprintf(err, sizeof(err), "%s: too many words", cmd);
			reply_error(f, err);
			return false;
		}
		w[(*nw)++] = tok;
	}
	if (want != -1 && *nw != want) {
		reply_error(f, usage);
		return false;
	}
	return true;
}

/* power-cut [model=M] [seed=S] [atom=N] [unit=N] */
static void
power_cut(struct rumpblk *rb, int unit, char **save, FILE *f)
{
	struct rumpblk_powercut pc;
	char spec[CLI_CTL_LINEMAX], err[600], *w[CTL_MAXWORDS];
	int error, nw;

	if (!words_unit("power-cut", save, w, &nw, -1, NULL, &unit, f))
		return;
	spec[0] = '\0';
	for (int i = 0; i < nw; i++) {
		if (spec[0] != '\0')
			strcat(spec, ",");
		strcat(spec, w[i]);	/* fits: the words came from a line */
	}
	rumpblk_powercut_init(rb, &pc);
	err[0] = '\0';
	if (rumpblk_powercut_parse(spec, &pc, err, sizeof(err)) != 0) {
		reply_error(f, err);
		return;
	}
	if ((error = rumpblk_power_cut(rb, unit, &pc)) != 0) {
		snprintf(err, sizeof(err), "power-cut: unit %d: %s", unit,
		    error == ENOTSUP ? "no volatile write cache (serve "
		    "--write-cache SIZE)" : error == EALREADY ? "a power cut "
		    "is under way" : error == ENXIO ? "no such unit" :
		    strerror(error));
		reply_error(f, err);
		return;
	}
	fprintf(f, "{\"ok\":true,\"unit\":%d,\"power_cut\":", unit);
	cli_powercut_json(f, &pc);
	fputc('}', f);
}

/* mark NAME [unit=N]: a mark entry in the write log. */
static void
mark(struct rumpblk *rb, int unit, char **save, FILE *f)
{
	char err[600], *w[CTL_MAXWORDS];
	int error, nw;

	if (!words_unit("mark", save, w, &nw, 1, "mark: want 'mark NAME' "
	    "(one word)", &unit, f))
		return;
	if ((error = rumpblk_log_mark(rb, unit, w[0])) != 0) {
		snprintf(err, sizeof(err), "mark %s: unit %d: %s", w[0], unit,
		    error == ENOTSUP ? "no write log (serve --write-log "
		    "FILE)" : error == ENAMETOOLONG ? "the name is longer "
		    "than a log entry's sector holds" : error == ENXIO ?
		    "no such unit" : strerror(error));
		reply_error(f, err);
		return;
	}
	fprintf(f, "{\"ok\":true,\"mark\":");
	cli_json_string(f, w[0]);
	fputc('}', f);
}

/* reset [unit=N] */
static void
reset(struct rumpblk *rb, int unit, char **save, FILE *f)
{
	char err[600], *w[CTL_MAXWORDS];
	int error, nw;

	if (!words_unit("reset", save, w, &nw, 0, "reset takes no argument "
	    "but unit=N (default: the unit served first)", &unit, f))
		return;
	if ((error = rumpblk_unit_reset(rb, unit)) != 0) {
		snprintf(err, sizeof(err), "reset: unit %d: %s", unit,
		    error == ENXIO ? "no such unit" : strerror(error));
		reply_error(f, err);
		return;
	}
	fprintf(f, "{\"ok\":true}");
}

void
cli_control_command(struct rumpblk *rb, int unit, char *line, FILE *f)
{
	struct rumpblk_fault_info *info = NULL;
	char err[600], id[RUMPBLK_FAULT_IDMAX], *cmd, *sub, *arg, *save;
	size_t n = 0;
	int error;

	cmd = strtok_r(line, " \t\r", &save);
	if (cmd == NULL) {
		reply_error(f, "empty command (fault add|del|list|clear, "
		    "stats, reset)");
		return;
	}
	if (strcmp(cmd, "stats") == 0 && strtok_r(NULL, " \t\r", &save) ==
	    NULL) {
		fprintf(f, "{\"ok\":true,\"stats\":");
		cli_stats_json(f, rb);
		fputc('}', f);
		return;
	}
	if (strcmp(cmd, "reset") == 0) {
		reset(rb, unit, &save, f);
		return;
	}
	if (strcmp(cmd, "power-cut") == 0) {
		power_cut(rb, unit, &save, f);
		return;
	}
	if (strcmp(cmd, "mark") == 0) {
		mark(rb, unit, &save, f);
		return;
	}
	if (strcmp(cmd, "fault") != 0) {
		snprintf(err, sizeof(err), "unknown command '%s' (fault "
		    "add|del|list|clear, stats, reset, power-cut, mark)", cmd);
		reply_error(f, err);
		return;
	}
	sub = strtok_r(NULL, " \t\r", &save);
	arg = strtok_r(NULL, " \t\r", &save);
	if (sub == NULL) {
		reply_error(f, "fault: add, del, list or clear?");
	} else if (strcmp(sub, "add") == 0 && arg != NULL &&
	    strtok_r(NULL, " \t\r", &save) == NULL) {
		err[0] = '\0';
		if ((error = cli_fault_add(rb, arg, id, sizeof(id), err,
		    sizeof(err))) != 0) {
			reply_error(f, err[0] != '\0' ? err : strerror(error));
			return;
		}
		fprintf(f, "{\"ok\":true,\"id\":");
		cli_json_string(f, id);
		fputc('}', f);
	} else if (strcmp(sub, "del") == 0 && arg != NULL &&
	    strtok_r(NULL, " \t\r", &save) == NULL) {
		if ((error = rumpblk_fault_del(rb, arg)) != 0) {
			snprintf(err, sizeof(err), "fault del %s: %s", arg,
			    error == ENOENT ? "no such rule" :
			    error == EBUSY ? "part of a replay (use fault "
			    "clear)" : strerror(error));
			reply_error(f, err);
			return;
		}
		fprintf(f, "{\"ok\":true}");
	} else if (strcmp(sub, "list") == 0 && arg == NULL) {
		if (rumpblk_fault_list(rb, NULL, 0, &n) == 0 && n > 0 &&
		    ((info = calloc(n, sizeof(*info))) == NULL ||
		    rumpblk_fault_list(rb, info, n, &n) != 0)) {
			free(info);
			reply_error(f, "fault list: out of memory");
			return;
		}
		fprintf(f, "{\"ok\":true,\"seed\":%llu,\"rules\":[",
		    (unsigned long long)rumpblk_fault_seed(rb));
		for (size_t i = 0; i < n && info != NULL; i++) {
			if (i > 0)
				fputc(',', f);
			cli_fault_rule_json(f, &info[i]);
		}
		fprintf(f, "]}");
		free(info);
	} else if (strcmp(sub, "clear") == 0 && arg == NULL) {
		rumpblk_fault_clear(rb);
		fprintf(f, "{\"ok\":true}");
	} else {
		snprintf(err, sizeof(err), "fault %s: want 'fault add RULE', "
		    "'fault del ID', 'fault list' or 'fault clear'", sub);
		reply_error(f, err);
	}
}

/*
 * What is wrong with a command line as read (len bytes, without its
 * newline), said in msg; false if nothing.  The parser splits words at
 * spaces, tabs and CRs and quotes them in its answers, so a line must be
 * UTF-8 text with no other control bytes: a NUL would cut the command
 * short without a word (so that "stats\0junk" would pass for "stats"),
 * and bytes that are not UTF-8 cannot be quoted in JSON.
 */
static bool
line_fault(const unsigned char *p, size_t len, char *msg, size_t msglen)
{
	size_t i, n;

	for (i = 0; i < len; i += n) {
		if ((n = utf8_len(p + i, len - i)) == 0) {
			snprintf(msg, msglen, "command line: byte 0x%02x at "
			    "offset %zu is not UTF-8 text", p[i], i);
			return true;
		}
		if (n == 1 && ((p[i] < 0x20 && p[i] != '\t' &&
		    p[i] != '\r') || p[i] == 0x7f)) {
			if (p[i] == '\0')
				snprintf(msg, msglen, "command line: a NUL "
				    "byte at offset %zu", i);
			else
				snprintf(msg, msglen, "command line: control "
				    "byte 0x%02x at offset %zu", p[i], i);
			return true;
		}
	}
	return false;
}

void
cli_control_line(struct rumpblk *rb, int unit, const char *line, size_t len,
    FILE *f)
{
	char buf[CLI_CTL_LINEMAX], msg[128];

	if (len >= sizeof(buf)) {
		snprintf(msg, sizeof(msg), "command line too long: more than "
		    "%d bytes", CLI_CTL_LINEMAX - 1);
		reply_error(f, msg);
		return;
	}
	if (line_fault((const unsigned char *)line, len, msg, sizeof(msg))) {
		reply_error(f, msg);
		return;
	}
	memcpy(buf, line, len);
	buf[len] = '\0';
	cli_control_command(rb, unit, buf, f);
}

/*
 * Answer one line (line NULL: one that was too long) and its newline,
 * counting it against the connection's bound.  false: close now.
 */
static bool
answer(struct rumpblk *rb, int unit, struct cli_ctl_reader *cr,
    const char *line, size_t len, FILE *f)
{
	char msg[160];

	if (cr->cr_ncmds >= CLI_CTL_MAXCMDS) {
		snprintf(msg, sizeof(msg), "too many commands on one "
		    "connection (at most %d): connect again", CLI_CTL_MAXCMDS);
		reply_error(f, msg);
		fputc('\n', f);
		return false;
	}
	cr->cr_ncmds++;
	if (line == NULL) {
		snprintf(msg, sizeof(msg), "command line too long: more than "
		    "%d bytes before its newline (the rest of the line is "
		    "discarded)", CLI_CTL_LINEMAX - 1);
		reply_error(f, msg);
	} else
		cli_control_line(rb, unit, line, len, f);
	fputc('\n', f);
	return ferror(f) == 0;
}

/*
 * An overlong line is answered once, as soon as CLI_CTL_LINEMAX bytes of
 * it are in with no newline, and the rest of it, up to its newline, is
 * read and discarded; the connection then goes on.  That keeps one
 * answer per line, so a client that sends several commands at once can
 * pair answers with commands, and it needs no memory beyond the buffer.
 * (Closing instead would answer, then reset the connection over the
 * unread rest: the client might never see why.)
 */
bool
cli_control_input(struct rumpblk *rb, int unit, struct cli_ctl_reader *cr,
    const char *data, size_t len, FILE *f)
{
	size_t n, from, start;
	char *nl;

	while (len > 0) {
		from = cr->cr_len;
		n = sizeof(cr->cr_buf) - cr->cr_len;
		if (n > len)
			n = len;
		memcpy(cr->cr_buf + cr->cr_len, data, n);
		cr->cr_len += n;
		data += n;
		len -= n;
		start = 0;
		while ((nl = memchr(cr->cr_buf + from, '\n',
		    cr->cr_len - from)) != NULL) {
			if (cr->cr_discard)
				cr->cr_discard = false;	/* answered */
			else if (!answer(rb, unit, cr, cr->cr_buf + start,
			    (size_t)(nl - cr->cr_buf) - start, f))
				return false;
			start = from = (size_t)(nl - cr->cr_buf) + 1;
		}
		if (cr->cr_discard) {
			start = cr->cr_len;
		} else if (start == 0 && cr->cr_len == sizeof(cr->cr_buf)) {
			if (!answer(rb, unit, cr, NULL, 0, f))
				return false;
			cr->cr_discard = true;
			start = cr->cr_len;
		}
		memmove(cr->cr_buf, cr->cr_buf + start, cr->cr_len - start);
		cr->cr_len -= start;
	}
	return true;
}

/* Send all of p on a blocking socket (one with SO_SNDTIMEO, for the
 * server's clients); 0 or errno. */
static int
send_all(int fd, const char *p, size_t len)
{
	struct iovec iov = { .iov_base = (void *)p, .iov_len = len };

	return fe_sendv_all(fd, &iov, 1, 0, NULL, NULL);
}

/* The answers' stream onto a client's socket (fopencookie). */
static ssize_t
client_write(void *cookie, const char *buf, size_t len)
{
	int error;

	if ((error = send_all(*(int *)cookie, buf, len)) != 0) {
		errno = error;
		return 0;	/* an error, for fopencookie */
	}
	return (ssize_t)len;
}

/* A one-line refusal to a connection not taken, then close it. */
static void
refuse(int fd, const char *msg)
{
	struct iovec iov;
	char buf[256];
	FILE *f;

	/*
	 * Without waiting: the socket's buffer is empty and takes a line,
	 * and if it did not, the peer would not hold up the others.
	 */
	if ((f = fmemopen(buf, sizeof(buf), "w")) != NULL) {
		reply_error(f, msg);
		fputc('\n', f);
		iov.iov_len = (size_t)ftell(f);
		fclose(f);
		iov.iov_base = buf;
		(void)fe_sendv_all(fd, &iov, 1, MSG_DONTWAIT, NULL, NULL);
	}
	close(fd);
}

/*
 * Whether the peer of a new connection may use the socket: its uid is
 * the server's effective uid (who owns the socket file) or root.  The
 * file's mode 0600 already keeps others out, but only for as long as
 * nobody widens it, and not on a file system that ignores modes; the
 * kernel's SO_PEERCRED (the peer's credentials when it connected) is
 * checked on every connection all the same.  A refusal is said on the
 * server's stderr with the peer's pid and uid (one fprintf: a line no
 * other thread's output splits) and in one JSON line to the peer.
 * Only processes that can already connect get that far, so the log
 * needs no rate limit of its own.
 */
static bool
peer_allowed(struct cli_control *cc, int fd)
{
	struct ucred uc;
	socklen_t len = sizeof(uc);
	uid_t me = geteuid();
	char msg[160];

	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &uc, &len) != 0 ||
	    len != sizeof(uc)) {
		fprintf(stderr, "%s: --control %s: refused a connection: no "
		    "peer credentials: %s\n", progname, cc->cc_path,
		    strerror(errno));
		refuse(fd, "refused: no peer credentials");
		return false;
	}
	if (uc.uid == me || uc.uid == 0)
		return true;
	fprintf(stderr, "%s: --control %s: refused a connection from pid "
	    "%ld uid %ld gid %ld: only uid %ld (the server's) and root may "
	    "use it\n", progname, cc->cc_path, (long)uc.pid, (long)uc.uid,
	    (long)uc.gid, (long)me);
	snprintf(msg, sizeof(msg), "refused: uid %ld may not use this "
	    "control socket (only uid %ld and root)", (long)uc.uid, (long)me);
	refuse(fd, msg);
	return false;
}

/*
 * Take one connection from the listening socket, or refuse it.  0, or
 * accept's errno.
 */
static int
take_client(struct cli_control *cc)
{
	struct timeval tv = { 5, 0 };
	char msg[80];
	int fd, j;

	if ((fd = accept4(cc->cc_lfd, NULL, NULL, SOCK_CLOEXEC)) < 0)
		return errno;
	if (!peer_allowed(cc, fd))
		return 0;
	for (j = 0; j < CLI_CTL_MAXCLIENTS; j++)
		if (cc->cc_cl[j].cl_fd == -1)
			break;
	if (j == CLI_CTL_MAXCLIENTS) {
		snprintf(msg, sizeof(msg), "too many control clients (at most "
		    "%d at once)", CLI_CTL_MAXCLIENTS);
		refuse(fd, msg);
		return 0;
	}
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	memset(&cc->cc_cl[j], 0, sizeof(cc->cc_cl[j]));
	cc->cc_cl[j].cl_fd = fd;
	return 0;
}

static void
client_close(struct ctl_client *cl)
{
	close(cl->cl_fd);
	cl->cl_fd = -1;
}

/* Read what a client sent and answer it; false: drop the client. */
static bool
client_serve(struct cli_control *cc, struct ctl_client *cl)
{
	static const cookie_io_functions_t io = { .write = client_write };
	char buf[CLI_CTL_LINEMAX];
	ssize_t r;
	FILE *f;
	bool more;

	if ((r = read(cl->cl_fd, buf, sizeof(buf))) < 0)
		return errno == EINTR || errno == EAGAIN;
	if (r == 0)
		return false;
	if ((f = fopencookie(&cl->cl_fd, "w", io)) == NULL)
		return false;
	setvbuf(f, NULL, _IOFBF, CTL_OUTBUF);
	more = cli_control_input(cc->cc_rb, cc->cc_unit, &cl->cl_rd, buf,
	    (size_t)r, f);
	if (fclose(f) != 0)
		more = false;
	return more;
}

static void *
control_main(void *arg)
{
	struct cli_control *cc = arg;
	struct pollfd pfd[2 + CLI_CTL_MAXCLIENTS];
	struct ctl_client *map[2 + CLI_CTL_MAXCLIENTS];
	bool backoff = false;
	nfds_t n, i;
	int j, r;

	(void)pthread_setname_np(pthread_self(), "rb-control");
	for (;;) {
		/*
		 * When accept failed for want of descriptors or memory, the
		 * listening socket stays readable: leave it out for 100 ms
		 * rather than spin on it.
		 */
		pfd[0] = (struct pollfd){ cc->cc_pipe[0], POLLIN, 0 };
		pfd[1] = (struct pollfd){ backoff ? -1 : cc->cc_lfd, POLLIN,
		    0 };
		n = 2;
		for (j = 0; j < CLI_CTL_MAXCLIENTS; j++) {
			if (cc->cc_cl[j].cl_fd == -1)
				continue;
			map[n] = &cc->cc_cl[j];
			pfd[n++] = (struct pollfd){ cc->cc_cl[j].cl_fd, POLLIN,
			    0 };
		}
		if ((r = poll(pfd, n, backoff ? 100 : -1)) < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		if (pfd[0].revents != 0)
			break;
		backoff = false;
		if (pfd[1].revents & POLLIN) {
			r = take_client(cc);
			backoff = r == EMFILE || r == ENFILE || r == ENOBUFS ||
			    r == ENOMEM;
		}
		for (i = 2; i < n; i++)
			if (pfd[i].revents != 0 && !client_serve(cc, map[i]))
				client_close(map[i]);
	}
	return NULL;
}

/*
 * Make PATH free for the socket: 0 if nothing is there or it held a
 * stale socket (one nobody listens on: connect is refused), which is
 * removed; otherwise what is there, as an errno: EISDIR (a directory),
 * EEXIST (a regular file or anything else but a socket), EADDRINUSE (a
 * socket someone listens on), or what lstat or connect said (EACCES:
 * someone else's socket).  Nothing but a stale socket is ever removed.
 * (Between the probe and the unlink, another process writing to the
 * same directory could swap the stale socket for something else, which
 * would then go: unlink cannot be made conditional on the inode.  It
 * takes a writer racing the server in its own directory.)
 */
static int
clear_path(const char *path, const struct sockaddr_un *sa)
{
	struct stat st;
	int probe, error;

	if (lstat(path, &st) != 0)
		return errno == ENOENT ? 0 : errno;
	if (S_ISDIR(st.st_mode))
		return EISDIR;
	if (!S_ISSOCK(st.st_mode))
		return EEXIST;
	/* Non-blocking: a listener with a full backlog says EAGAIN. */
	if ((probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC |
	    SOCK_NONBLOCK, 0)) < 0)
		return errno;
	error = connect(probe, (const struct sockaddr *)sa, sizeof(*sa)) ==
	    0 ? EADDRINUSE : errno;
	close(probe);
	switch (error) {
	case ECONNREFUSED:
		if (unlink(path) != 0 && errno != ENOENT)
			return errno;
		return 0;
	case ENOENT:
		return 0;		/* gone meanwhile */
	case EAGAIN:
	case EINPROGRESS:
	case EPROTOTYPE:		/* a datagram socket, bound */
		return EADDRINUSE;
	default:
		return error;
	}
}

static int
set_sun(struct sockaddr_un *sa, const char *path)
{
	memset(sa, 0, sizeof(*sa));
	sa->sun_family = AF_UNIX;
	if (strlen(path) >= sizeof(sa->sun_path))
		return ENAMETOOLONG;
	memcpy(sa->sun_path, path, strlen(path) + 1);
	return 0;
}

/*
 * Move the socket file tmp to path, never over anything: rename with
 * RENAME_NOREPLACE, or where the file system lacks it, link and unlink
 * (link does not replace either).  0, or an errno (EEXIST: something
 * came to path meanwhile).
 */
static int
place(const char *tmp, const char *path)
{
	if (renameat2(AT_FDCWD, tmp, AT_FDCWD, path, RENAME_NOREPLACE) == 0)
		return 0;
	if (errno != EINVAL && errno != ENOSYS)
		return errno;
	if (link(tmp, path) != 0)
		return errno;
	unlink(tmp);
	return 0;
}

/*
 * Listen on a new Unix socket at path, mode 0600 from the moment it is
 * there; its device and inode in *stp.  0 or an errno (see clear_path).
 *
 * The umask is the process's, and this server has threads that may
 * create files meanwhile (the fault log, a write log), so it is left
 * alone.  Instead:
 *   - fchmod(0600) before bind: Linux creates the file with the socket
 *     inode's mode less the umask (unix_bind), so never wider than 0600;
 *   - and the file is made inside a fresh directory next to path, which
 *     mkdtemp makes 0700 (and chmod makes searchable by us whatever the
 *     umask), chmodded to 0600 there (the umask may have taken our own
 *     bits), set listening, and only then renamed to path.  At path it
 *     is never wider than 0600 and never refuses a connection, even on a
 *     system that ignored the fchmod, and the rename does not replace
 *     what may have come to path since clear_path looked.
 * The directory's path and "/s" must fit in sun_path; when path's
 * directory name is too long for that (path itself fits), the socket is
 * bound at path directly and the fchmod alone keeps it 0600 until the
 * chmod, which Linux honours (the only system this server runs on).
 */
static int
listen_unix(const char *path, int *fdp, struct stat *stp)
{
	struct sockaddr_un sa, tsa;
	const char *slash = strrchr(path, '/');
	size_t dirlen = slash != NULL ? (size_t)(slash - path) + 1 : 0;
	char tdir[sizeof(sa.sun_path)], tsock[sizeof(tdir) + 2];
	bool direct;
	int fd, error, tries;

	if ((error = set_sun(&sa, path)) != 0)
		return error;
	direct = dirlen + sizeof(".rumpblk-XXXXXX/s") > sizeof(sa.sun_path);
	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0)
		return errno;
	if (fchmod(fd, 0600) != 0) {
		error = errno;
		goto close_fd;
	}
	if (direct) {
		for (tries = 0;; tries++) {
			if ((error = clear_path(path, &sa)) != 0)
				goto close_fd;
			if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0)
				break;
			error = errno;
			if (error != EADDRINUSE || tries == 2)
				goto close_fd;
		}
		if (listen(fd, 8) != 0 || chmod(path, 0600) != 0 ||
		    lstat(path, stp) != 0) {
			error = errno;
			unlink(path);
			goto close_fd;
		}
		*fdp = fd;
		return 0;
	}
	snprintf(tdir, sizeof(tdir), "%.*s.rumpblk-XXXXXX", (int)dirlen, path);
	if (mkdtemp(tdir) == NULL) {
		error = errno;
		goto close_fd;
	}
	snprintf(tsock, sizeof(tsock), "%s/s", tdir);
	if (chmod(tdir, 0700) != 0 || (error = set_sun(&tsa, tsock)) != 0 ||
	    bind(fd, (struct sockaddr *)&tsa, sizeof(tsa)) != 0) {
		error = error != 0 ? error : errno;
		goto remove_dir;
	}
	if (chmod(tsock, 0600) != 0 || lstat(tsock, stp) != 0 ||
	    listen(fd, 8) != 0) {
		error = errno;
		goto remove_sock;
	}
	for (tries = 0;; tries++) {
		if ((error = clear_path(path, &sa)) != 0)
			goto remove_sock;
		if ((error = place(tsock, path)) == 0)
			break;
		if (error != EEXIST || tries == 2)
			goto remove_sock;
	}
	rmdir(tdir);
	*fdp = fd;
	return 0;
remove_sock:
	unlink(tsock);
remove_dir:
	rmdir(tdir);
close_fd:
	close(fd);
	return error;
}

int
cli_control_start(struct rumpblk *rb, int unit, const char *path,
    struct cli_control **ccp)
{
	struct cli_control *cc;
	struct stat st;
	int error;

	if ((cc = calloc(1, sizeof(*cc))) == NULL)
		return ENOMEM;
	cc->cc_rb = rb;
	cc->cc_unit = unit;
	for (int j = 0; j < CLI_CTL_MAXCLIENTS; j++)
		cc->cc_cl[j].cl_fd = -1;
	if ((cc->cc_path = strdup(path)) == NULL) {
		error = ENOMEM;
		goto free_cc;
	}
	if (pipe2(cc->cc_pipe, O_CLOEXEC) < 0) {
		error = errno;
		goto free_path;
	}
	if ((error = listen_unix(path, &cc->cc_lfd, &st)) != 0)
		goto close_pipe;
	cc->cc_dev = st.st_dev;
	cc->cc_ino = st.st_ino;
	if ((error = pthread_create(&cc->cc_thread, NULL, control_main,
	    cc)) != 0)
		goto close_listen;
	*ccp = cc;
	return 0;

close_listen:
	close(cc->cc_lfd);
	unlink(path);
close_pipe:
	close(cc->cc_pipe[0]);
	close(cc->cc_pipe[1]);
free_path:
	free(cc->cc_path);
free_cc:
	free(cc);
	return error;
}

void
cli_control_stop(struct cli_control *cc)
{
	struct stat st;

	if (cc == NULL)
		return;
	while (write(cc->cc_pipe[1], "x", 1) < 0 && errno == EINTR)
		;
	pthread_join(cc->cc_thread, NULL);
	for (int j = 0; j < CLI_CTL_MAXCLIENTS; j++)
		if (cc->cc_cl[j].cl_fd != -1)
			close(cc->cc_cl[j].cl_fd);
	close(cc->cc_lfd);
	/* Only our socket: another may have been put there meanwhile. */
	if (lstat(cc->cc_path, &st) == 0 && st.st_dev == cc->cc_dev &&
	    st.st_ino == cc->cc_ino)
		unlink(cc->cc_path);
	close(cc->cc_pipe[0]);
	close(cc->cc_pipe[1]);
	free(cc->cc_path);
	free(cc);
}

/* rumpblk ctl PATH COMMAND... */

static void
ctl_usage(FILE *f)
{
	fprintf(f, "usage: rumpblk ctl PATH COMMAND...\n\n"
	    "Send one command to the control socket PATH of a running\n"
	    "'rumpblk serve --control PATH' and print its JSON answer.\n"
	    "Exit 0 if the answer says \"ok\":true, 1 otherwise.\n\n"
	    "Commands:\n"
	    "  fault add RULE   arm a rule (see 'rumpblk faults --help')\n"
	    "  fault del ID     disarm a rule\n"
	    "  fault list       the rules, with their matches and firings\n"
	    "  fault clear      disarm every rule\n"
	    "  stats            the counters, with firings per rule and "
	    "class\n"
	    "  stats --watch [--interval S] [--count N]\n"
	    "                   a live view, like iostat -x, every S seconds\n"
	    "                   (default 1): per unit and op IOPS, MiB/s,\n"
	    "                   latency percentiles, aqu-sz; in flight,\n"
	    "                   unflushed bytes, connections, faults; N views\n"
	    "                   then exit (default: until interrupted)\n"
	    "  reset [unit=N]   reset the unit: 'rumpblk serve' drops every\n"
	    "                   connection to it at once\n"
	    "  power-cut [model=M] [seed=S] [atom=N] [unit=N]\n"
	    "                   cut the power of the unit served (it needs\n"
	    "                   --write-cache): M is lose (default), keep,\n"
	    "                   subset, reorder, sectors or torn (atom=N:\n"
	    "                   torn's unit, a multiple of 512)\n"
	    "  mark NAME [unit=N]\n"
	    "                   a mark entry in the write log (it needs\n"
	    "                   --write-log), after every write logged so\n"
	    "                   far: 'rumpblk log replay --to mark=NAME'\n"
	    "reset, power-cut and mark act on the unit served first (IMAGE);\n"
	    "unit=N picks another: serve --add-export's units are 1, 2, ...\n"
	    "in their order.\n");
}

int
cmd_ctl(int argc, char **argv)
{
	struct sockaddr_un sa;
	struct timeval tv = { 30, 0 };
	char *line = NULL, *buf, *nbuf;
	size_t len = 0, got = 0, cap = 4096;
	ssize_t r;
	int fd, i, rc, error;

	if (argc >= 2 && (strcmp(argv[1], "--help") == 0 ||
	    strcmp(argv[1], "-h") == 0)) {
		ctl_usage(stdout);
		return 0;
	}
	if (argc < 3) {
		ctl_usage(stderr);
		return 2;
	}
	memset(&sa, 0, sizeof(sa));
	sa.sun_family = AF_UNIX;
	if (strlen(argv[1]) >= sizeof(sa.sun_path)) {
		cli_err("ctl: %s: %s", argv[1], strerror(ENAMETOOLONG));
		return 1;
	}
	/* stats --watch: a live view, many stats commands (below). */
	if (strcmp(argv[2], "stats") == 0 && argc > 3 &&
	    strcmp(argv[3], "--watch") == 0)
		return cli_stats_watch(argv[1], argc - 3, argv + 3);
	memcpy(sa.sun_path, argv[1], strlen(argv[1]) + 1);
	for (i = 2; i < argc; i++) {
		/* One command, one answer read: a newline would send two. */
		if (strchr(argv[i], '\n') != NULL) {
			cli_err("ctl: a command is one line: no newline in "
			    "its words");
			return 2;
		}
		len += strlen(argv[i]) + 1;
	}
	if ((buf = malloc(cap)) == NULL) {
		cli_err("ctl: out of memory");
		return 1;
	}
	if (len >= CLI_CTL_LINEMAX || (line = malloc(len + 1)) == NULL) {
		free(buf);
		cli_err("ctl: command too long");
		return 2;
	}
	line[0] = '\0';
	for (i = 2; i < argc; i++) {
		strcat(line, argv[i]);
		strcat(line, i + 1 < argc ? " " : "\n");
	}
	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0 ||
	    connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		cli_err("ctl: %s: %s", argv[1], strerror(errno));
		if (fd >= 0)
			close(fd);
		free(line);
		free(buf);
		return 1;
	}
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	/*
	 * A server that refuses us (another uid, too many clients) answers
	 * at once and closes, maybe before our command is sent: its answer
	 * is still there to read, and says more than EPIPE would.
	 */
	if ((error = send_all(fd, line, strlen(line))) != 0 &&
	    error != EPIPE && error != ECONNRESET) {
		cli_err("ctl: %s: %s", argv[1], strerror(error));
		goto fail;
	}
	/* One line, however long (a long 'fault list'), up to 64 MiB. */
	for (;;) {
		if (got + 1 >= cap) {
			if (cap >= (64u << 20) ||
			    (nbuf = realloc(buf, cap * 2)) == NULL)
				break;
			buf = nbuf;
			cap *= 2;
		}
		r = read(fd, buf + got, cap - 1 - got);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		got += (size_t)r;
		buf[got] = '\0';
		if (strchr(buf + got - (size_t)r, '\n') != NULL)
			break;
	}
	buf[got] = '\0';
	if (got == 0 && error != 0) {
		cli_err("ctl: %s: %s", argv[1], strerror(error));
		goto fail;
	}
	if (got == 0 || strchr(buf, '\n') == NULL) {
		cli_err("ctl: %s: no answer%s%.200s", argv[1],
		    got ? ": " : "", buf);
		goto fail;
	}
	*strchr(buf, '\n') = '\0';
	puts(buf);
	rc = strncmp(buf, "{\"ok\":true", 10) == 0 ? 0 : 1;
	close(fd);
	free(line);
	free(buf);
	return rc;
fail:
	close(fd);
	free(line);
	free(buf);
	return 1;
}

/*
 * rumpblk ctl PATH stats --watch [--interval S] [--count N]: a live view
 * of a running server, refreshed in place, as iostat -x is (issue 17).
 *
 * Every interval the client asks the control socket for "stats" (the
 * JSON of cli/stats-json.c), and shows what changed since the last tick:
 * for each unit and operation the IOPS, MiB/s, latency percentiles
 * p50/p90/p99/p99.9 and max of the requests that completed in the tick
 * (from the difference of two histograms: the maximum is the top
 * bucket's bound, capped by the maximum so far), and aqu-sz, the average
 * number of requests in flight over the tick (their summed latency over
 * the tick's length, as iostat computes it); then the unit's gauges now
 * (requests in flight, unflushed bytes of the write cache, connections)
 * and the faults that fired in the tick, by class; then each front-end
 * connection's IOPS and percentiles.  On a terminal each tick redraws
 * the screen; otherwise each tick is a block of plain lines, headed by
 * its time, for logs and pipes.
 *
 * Percentiles describe the timed requests: all of them for an NBD
 * client (the view's usual subject), one in lat_sample for in-process
 * callers (librumpblk(3)).
 *
 * The JSON is read by a small parser of its own (the CLI has no JSON
 * library and needs none elsewhere): whole numbers are kept exact as
 * 64-bit integers, as the counters need.
 */

/* The live view: rumpblk ctl PATH stats --watch.  Its JSON reader. */

enum jtype { J_NULL, J_BOOL, J_NUM, J_STR, J_ARR, J_OBJ };

struct jv {
	enum jtype	t;
	uint64_t	u;		/* J_NUM: a whole number >= 0, or 0 */
	double		d;		/* J_NUM */
	char		*s;		/* J_STR (in the text, unescaped) */
	size_t		n;		/* J_ARR, J_OBJ: members */
	struct jv	*v;		/* their values */
	char		**k;		/* J_OBJ: their names */
};

struct jp {
	char		*p;		/* the text, modified in place */
	int		depth;
};

static void
jv_free(struct jv *v)
{
	size_t i;

	for (i = 0; i < v->n; i++)
		jv_free(&v->v[i]);
	free(v->v);
	free(v->k);
	v->v = NULL;
	v->k = NULL;
	v->n = 0;
}

static void
skip_ws(struct jp *jp)
{
	while (*jp->p == ' ' || *jp->p == '\t' || *jp->p == '\n' ||
	    *jp->p == '\r')
		jp->p++;
}

/* A string at jp->p (past its quote), unescaped in place; NULL: bad. */
static char *
parse_str(struct jp *jp)
{
	char *out = jp->p, *s = jp->p, *w = jp->p;

	for (;;) {
		if (*s == '\0')
			return NULL;
		if (*s == '"')
			break;
		if (*s == '\\') {
			s++;
			switch (*s) {
			case 'n': *w++ = '\n'; break;
			case 't': *w++ = '\t'; break;
			case 'r': *w++ = '\r'; break;
			case 'b': *w++ = '\b'; break;
			case 'f': *w++ = '\f'; break;
			case 'u':
				/* Only labels have them: keep a '?'. */
				if (strlen(s) < 5)
					return NULL;
				*w++ = '?';
				s += 4;
				break;
			case '\0':
				return NULL;
			default: *w++ = *s; break;
			}
			s++;
			continue;
		}
		*w++ = *s++;
	}
	*w = '\0';
	jp->p = s + 1;
	return out;
}

static bool parse_value(struct jp *, struct jv *);

/* Append a member (name k, NULL in an array) to v; its slot or NULL. */
static struct jv *
add_member(struct jv *v, char *k)
{
	struct jv *nv;
	char **nk;

	if ((nv = realloc(v->v, (v->n + 1) * sizeof(*nv))) == NULL)
		return NULL;
	v->v = nv;
	if (v->t == J_OBJ) {
		if ((nk = realloc(v->k, (v->n + 1) * sizeof(*nk))) == NULL)
			return NULL;
		v->k = nk;
		v->k[v->n] = k;
	}
	memset(&v->v[v->n], 0, sizeof(v->v[v->n]));
	return &v->v[v->n++];
}

static bool
parse_container(struct jp *jp, struct jv *v, char close)
{
	struct jv *m;
	char *k = NULL;

	v->t = close == '}' ? J_OBJ : J_ARR;
	if (++jp->depth > 64)
		return false;
	skip_ws(jp);
	if (*jp->p == close) {
		jp->p++;
		jp->depth--;
		return true;
	}
	for (;;) {
		skip_ws(jp);
		if (v->t == J_OBJ) {
			if (*jp->p++ != '"' || (k = parse_str(jp)) == NULL)
				return false;
			skip_ws(jp);
			if (*jp->p++ != ':')
				return false;
		}
		if ((m = add_member(v, k)) == NULL || !parse_value(jp, m))
			return false;
		skip_ws(jp);
		if (*jp->p == ',') {
			jp->p++;
			continue;
		}
		if (*jp->p++ != close)
			return false;
		jp->depth--;
		return true;
	}
}

static bool
parse_value(struct jp *jp, struct jv *v)
{
	char *end;

	skip_ws(jp);
	switch (*jp->p) {
	case '{':
		jp->p++;
		return parse_container(jp, v, '}');
	case '[':
		jp->p++;
		return parse_container(jp, v, ']');
	case '"':
		jp->p++;
		v->t = J_STR;
		return (v->s = parse_str(jp)) != NULL;
	case 'n':
		v->t = J_NULL;
		if (strncmp(jp->p, "null", 4) != 0)
			return false;
		jp->p += 4;
		return true;
	case 't':
	case 'f':
		v->t = J_BOOL;
		v->u = *jp->p == 't';
		if (strncmp(jp->p, v->u ? "true" : "false", v->u ? 4 : 5) != 0)
			return false;
		jp->p += v->u ? 4 : 5;
		return true;
	}
	v->t = J_NUM;
	errno = 0;
	v->d = strtod(jp->p, &end);
	if (end == jp->p || errno != 0)
		return false;
	if (*jp->p != '-' && strcspn(jp->p, ".eE,]} \n") == (size_t)(end -
	    jp->p))
		v->u = strtoull(jp->p, NULL, 10);
	jp->p = end;
	return true;
}

/* Parse text (modified; the values point into it).  false: not JSON. */
static bool
json_parse(char *text, struct jv *v)
{
	struct jp jp = { .p = text };

	memset(v, 0, sizeof(*v));
	if (!parse_value(&jp, v)) {
		jv_free(v);
		return false;
	}
	return true;
}

/* Member name of an object, or NULL. */
static const struct jv *
jget(const struct jv *v, const char *name)
{
	size_t i;

	if (v == NULL || v->t != J_OBJ)
		return NULL;
	for (i = 0; i < v->n; i++)
		if (strcmp(v->k[i], name) == 0)
			return &v->v[i];
	return NULL;
}

/* A whole number, member name of v (0 if none). */
static uint64_t
jnum(const struct jv *v, const char *name)
{
	const struct jv *m = jget(v, name);

	return m != NULL && m->t == J_NUM ? m->u : 0;
}

/* A string, member name of v ("?" if none). */
static const char *
jstr(const struct jv *v, const char *name)
{
	const struct jv *m = jget(v, name);

	return m != NULL && m->t == J_STR ? m->s : "?";
}

/* The live view: snapshots and their differences. */

/* A snapshot: the answer's text and its parse. */
struct snap {
	char		*text;
	struct jv	root;		/* the "stats" object's parent */
	const struct jv	*stats;
	uint64_t	t_ns;		/* when it was taken */
};

static void
snap_free(struct snap *s)
{
	jv_free(&s->root);
	free(s->text);
	memset(s, 0, sizeof(*s));
}

/* Fill h from a JSON histogram (cli_hist_json). */
static void
hist_from(const struct jv *j, struct rumpblk_hist *h)
{
	const struct jv *b = jget(j, "buckets"), *e;
	size_t i;
	unsigned k;

	memset(h, 0, sizeof(*h));
	h->h_count = jnum(j, "count");
	h->h_timed = jnum(j, "timed");
	h->h_sum_ns = jnum(j, "sum_ns");
	h->h_max_ns = jnum(j, "max_ns");
	for (i = 0; b != NULL && b->t == J_ARR && i < b->n; i++) {
		e = &b->v[i];
		if (e->t != J_ARR || e->n != 2)
			continue;
		k = e->v[0].t == J_NUM ? rumpblk_hist_bucket(e->v[0].u) :
		    RUMPBLK_HIST_BUCKETS - 1;
		h->h_buckets[k] += e->v[1].u;
	}
}

/*
 * d = a - b (b may be NULL: a alone), for one tick.  The tick's maximum
 * is not known: the top bucket's bound, capped by a's maximum so far.
 */
static void
hist_diff(const struct jv *a, const struct jv *b, struct rumpblk_hist *d)
{
	struct rumpblk_hist hb;
	uint64_t top = 0, bound;
	unsigned i;

	hist_from(a, d);
	if (b != NULL) {
		hist_from(b, &hb);
		d->h_count -= hb.h_count;
		d->h_timed -= hb.h_timed;
		d->h_sum_ns -= hb.h_sum_ns;
		for (i = 0; i < RUMPBLK_HIST_BUCKETS; i++)
			d->h_buckets[i] -= hb.h_buckets[i];
	}
	for (i = 0; i < RUMPBLK_HIST_BUCKETS; i++)
		if (d->h_buckets[i] != 0)
			top = i + 1;
	if (top == 0) {
		d->h_max_ns = 0;
		return;
	}
	bound = rumpblk_hist_bound((unsigned)top - 1);
	if (bound < d->h_max_ns)
		d->h_max_ns = bound;
}

/* The element of an array of objects whose member key is id, or NULL. */
static const struct jv *
find_by(const struct jv *arr, const char *key, uint64_t id)
{
	size_t i;

	for (i = 0; arr != NULL && arr->t == J_ARR && i < arr->n; i++)
		if (jnum(&arr->v[i], key) == id)
			return &arr->v[i];
	return NULL;
}

/* The live view: what it shows. */

/* A latency, right-aligned in 9 columns. */
static void
put_ns(FILE *f, uint64_t ns, bool none)
{
	char b[32];

	if (none)
		snprintf(b, sizeof(b), "-");
	else if (ns < 1000)
		snprintf(b, sizeof(b), "%" PRIu64 "ns", ns);
	else if (ns < 1000000)
		snprintf(b, sizeof(b), "%.1fus", (double)ns / 1e3);
	else if (ns < 1000000000)
		snprintf(b, sizeof(b), "%.2fms", (double)ns / 1e6);
	else
		snprintf(b, sizeof(b), "%.2fs", (double)ns / 1e9);
	fprintf(f, " %9s", b);
}

/* Bytes, short ("1.5 MiB"). */
static void
put_bytes(char *b, size_t len, uint64_t n)
{
	if (n < 1024)
		snprintf(b, len, "%" PRIu64 " B", n);
	else if (n < 1048576)
		snprintf(b, len, "%.1f KiB", (double)n / 1024);
	else if (n < 1073741824)
		snprintf(b, len, "%.1f MiB", (double)n / 1048576);
	else
		snprintf(b, len, "%.1f GiB", (double)n / 1073741824);
}

/* The counter of bytes an op moves, or NULL. */
static const char *
op_bytes(int op)
{
	switch (op) {
	case RUMPBLK_B_READ:	return "bytes_read";
	case RUMPBLK_B_WRITE:	return "bytes_written";
	case RUMPBLK_B_TRIM:	return "bytes_trimmed";
	case RUMPBLK_B_ZERO:	return "bytes_zeroed";
	default:		return NULL;
	}
}

/* One unit's rows. */
static void
show_unit(FILE *f, const struct jv *cu, const struct jv *pu, double dt)
{
	const struct jv *cl = jget(jget(cu, "latency"), "ops");
	const struct jv *pl = jget(jget(pu, "latency"), "ops");
	const struct jv *cf, *pf, *cc, *pc;
	struct rumpblk_hist d;
	const char *bn;
	uint64_t unit = jnum(cu, "unit"), n;
	char b1[32], b2[32];
	bool any = false;
	size_t i;
	int k;

	for (k = 0; k < CLI_NOPS; k++) {
		const char *name = cli_op_name(cli_ops[k]);
		const struct jv *c = jget(cl, name);

		/* Trim, zero and extents only once a client used them. */
		if (k >= 3 && jnum(c, "count") == 0)
			continue;
		hist_diff(c, jget(pl, name), &d);
		fprintf(f, "%4" PRIu64 " %-8s %10.2f", unit, name,
		    (double)d.h_count / dt);
		if ((bn = op_bytes(cli_ops[k])) != NULL)
			fprintf(f, " %9.2f", (double)(jnum(cu, bn) -
			    jnum(pu, bn)) / 1048576.0 / dt);
		else
			fprintf(f, " %9s", "-");
		put_ns(f, rumpblk_hist_quantile(&d, 0.5), d.h_timed == 0);
		put_ns(f, rumpblk_hist_quantile(&d, 0.9), d.h_timed == 0);
		put_ns(f, rumpblk_hist_quantile(&d, 0.99), d.h_timed == 0);
		put_ns(f, rumpblk_hist_quantile(&d, 0.999), d.h_timed == 0);
		put_ns(f, d.h_max_ns, d.h_timed == 0);
		/* Little's law over the tick, the sample scaled to all. */
		fprintf(f, " %7.2f\n", d.h_timed == 0 ? 0.0 :
		    (double)d.h_sum_ns * ((double)d.h_count /
		    (double)d.h_timed) / (dt * 1e9));
	}
	if (jget(cu, "unflushed") != NULL &&
	    jget(cu, "unflushed")->t == J_NUM) {
		put_bytes(b1, sizeof(b1), jnum(cu, "unflushed"));
		put_bytes(b2, sizeof(b2), jnum(cu, "cache_size"));
	} else {
		snprintf(b1, sizeof(b1), "-");
		snprintf(b2, sizeof(b2), "no write cache");
	}
	fprintf(f, "unit %" PRIu64 ": in flight %" PRIu64 ", unflushed %s "
	    "(%s), connections %" PRIu64 ", errors %" PRIu64 ", faults:",
	    unit, jnum(cu, "inflight"), b1, b2, jnum(cu, "connections"),
	    jnum(cu, "io_errors") - jnum(pu, "io_errors"));
	cf = jget(cu, "faults_class");
	pf = jget(pu, "faults_class");
	for (i = 0; cf != NULL && cf->t == J_OBJ && i < cf->n; i++) {
		n = cf->v[i].u - jnum(pf, cf->k[i]);
		if (n == 0)
			continue;
		fprintf(f, " %s %" PRIu64, cf->k[i], n);
		any = true;
	}
	fputs(any ? "\n" : " none\n", f);
	/* The classes' own latency in the tick: what a rule did to it. */
	cc = jget(jget(cu, "latency"), "faults");
	pc = jget(jget(pu, "latency"), "faults");
	for (i = 0; cc != NULL && cc->t == J_OBJ && i < cc->n; i++) {
		hist_diff(&cc->v[i], jget(pc, cc->k[i]), &d);
		if (d.h_count == 0)
			continue;
		fprintf(f, "%4" PRIu64 " %-8s %10.2f %9s", unit, cc->k[i],
		    (double)d.h_count / dt, "fault");
		put_ns(f, rumpblk_hist_quantile(&d, 0.5), d.h_timed == 0);
		put_ns(f, rumpblk_hist_quantile(&d, 0.9), d.h_timed == 0);
		put_ns(f, rumpblk_hist_quantile(&d, 0.99), d.h_timed == 0);
		put_ns(f, rumpblk_hist_quantile(&d, 0.999), d.h_timed == 0);
		put_ns(f, d.h_max_ns, d.h_timed == 0);
		fputc('\n', f);
	}
}

/* The connections' rows: all ops of each summed. */
static void
show_conns(FILE *f, const struct jv *cs, const struct jv *ps, double dt)
{
	const struct jv *c, *p, *cl, *pl;
	struct rumpblk_hist d, all;
	size_t i;
	unsigned j;
	int k;

	if (cs == NULL || cs->t != J_ARR || cs->n == 0)
		return;
	fprintf(f, "conn unit       IOPS       p50       p99  label\n");
	for (i = 0; i < cs->n; i++) {
		c = &cs->v[i];
		p = find_by(ps, "id", jnum(c, "id"));
		/* A record reused by a new connection starts again. */
		if (p != NULL && strcmp(jstr(p, "label"), jstr(c, "label")) !=
		    0)
			p = NULL;
		cl = jget(c, "latency");
		pl = jget(p, "latency");
		memset(&all, 0, sizeof(all));
		for (k = 0; k < CLI_NOPS; k++) {
			hist_diff(jget(cl, cli_op_name(cli_ops[k])),
			    jget(pl, cli_op_name(cli_ops[k])), &d);
			all.h_count += d.h_count;
			all.h_timed += d.h_timed;
			for (j = 0; j < RUMPBLK_HIST_BUCKETS; j++)
				all.h_buckets[j] += d.h_buckets[j];
			if (d.h_max_ns > all.h_max_ns)
				all.h_max_ns = d.h_max_ns;
		}
		fprintf(f, "%4" PRIu64 " %4" PRIu64 " %10.2f", jnum(c, "id"),
		    jnum(c, "unit"), (double)all.h_count / dt);
		put_ns(f, rumpblk_hist_quantile(&all, 0.5), all.h_timed == 0);
		put_ns(f, rumpblk_hist_quantile(&all, 0.99),
		    all.h_timed == 0);
		fprintf(f, "  %s\n", jstr(c, "label"));
	}
}

static void
show(FILE *f, const char *path, const struct snap *cur,
    const struct snap *prev, double interval, bool tty)
{
	const struct jv *cu = jget(cur->stats, "units");
	const struct jv *pu = jget(prev->stats, "units");
	double dt = (double)(cur->t_ns - prev->t_ns) / 1e9;
	char when[32];
	time_t now = time(NULL);
	struct tm tm;
	size_t i;

	if (dt <= 0)
		dt = interval;
	strftime(when, sizeof(when), "%H:%M:%S", localtime_r(&now, &tm));
	if (tty)
		fputs("\033[H\033[J", f);	/* home, clear to the end */
	fprintf(f, "rumpblk %s: every %.1f s, last %.2f s, %s\n", path,
	    interval, dt, when);
	fprintf(f, "unit op             IOPS     MiB/s       p50       p90"
	    "       p99     p99.9       max  aqu-sz\n");
	for (i = 0; cu != NULL && cu->t == J_ARR && i < cu->n; i++)
		show_unit(f, &cu->v[i], find_by(pu, "unit",
		    jnum(&cu->v[i], "unit")), dt);
	show_conns(f, jget(cur->stats, "connections"),
	    jget(prev->stats, "connections"), dt);
	if (!tty)
		fputc('\n', f);
	fflush(f);
}

/* The live view: the command. */

/*
 * Ask path for "stats" into s: 0, or 1 with the error said.  A server
 * that is gone is an error (the watch ends with it).
 */
static int
take(const char *path, struct snap *s)
{
	struct sockaddr_un sa;
	struct pollfd pfd;
	size_t got = 0, cap = 65536;
	char *buf, *nb, *nl;
	ssize_t r;
	int fd;

	memset(s, 0, sizeof(*s));
	memset(&sa, 0, sizeof(sa));
	sa.sun_family = AF_UNIX;
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0 ||
	    connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 ||
	    send(fd, "stats\n", 6, MSG_NOSIGNAL) != 6) {
		cli_err("ctl: %s: %s", path, strerror(errno));
		if (fd >= 0)
			close(fd);
		return 1;
	}
	if ((buf = malloc(cap)) == NULL)
		goto nomem;
	/* One line, up to 64 MiB, within 30 s. */
	for (;;) {
		if (got + 1 >= cap) {
			if (cap >= (64u << 20) ||
			    (nb = realloc(buf, cap * 2)) == NULL)
				break;
			buf = nb;
			cap *= 2;
		}
		pfd = (struct pollfd){ fd, POLLIN, 0 };
		if (poll(&pfd, 1, 30000) <= 0)
			break;
		if ((r = read(fd, buf + got, cap - 1 - got)) < 0 &&
		    errno == EINTR)
			continue;
		if (r <= 0)
			break;
		got += (size_t)r;
		buf[got] = '\0';
		if (memchr(buf + got - (size_t)r, '\n', (size_t)r) != NULL)
			break;
	}
	close(fd);
	fd = -1;
	buf[got] = '\0';
	if ((nl = strchr(buf, '\n')) == NULL) {
		cli_err("ctl: %s: no answer to stats", path);
		free(buf);
		return 1;
	}
	*nl = '\0';
	s->t_ns = cli_clock_ns(CLOCK_MONOTONIC);
	s->text = buf;
	if (!json_parse(buf, &s->root) ||
	    (s->stats = jget(&s->root, "stats")) == NULL) {
		cli_err("ctl: %s: stats: %.200s", path, buf);
		snap_free(s);
		return 1;
	}
	return 0;
nomem:
	close(fd);
	cli_err("ctl: out of memory");
	return 1;
}

int
cli_stats_watch(const char *path, int argc, char **argv)
{
	struct snap prev, cur;
	struct timespec ts;
	double interval = 1;
	uint64_t count = 0, n;
	char *end;
	bool tty = isatty(STDOUT_FILENO);
	int i;

	for (i = 0; i < argc; i++) {
		if (strcmp(argv[i], "--watch") == 0)
			continue;
		if (strcmp(argv[i], "--interval") == 0 && i + 1 < argc) {
			errno = 0;
			interval = strtod(argv[++i], &end);
			if (errno != 0 || end == argv[i] || *end != '\0' ||
			    !(interval >= 0.1 && interval <= 3600)) {
				cli_err("ctl: --interval: '%s' is not a time "
				    "in seconds from 0.1 to 3600", argv[i]);
				return 2;
			}
			continue;
		}
		if (strcmp(argv[i], "--count") == 0 && i + 1 < argc) {
			if (!cli_opt_uint("--count", argv[++i], 1,
			    UINT32_MAX, &count))
				return 2;
			continue;
		}
		cli_err("ctl: stats --watch: unknown argument '%s' (want "
		    "[--interval S] [--count N])", argv[i]);
		return 2;
	}
	if (take(path, &prev) != 0)
		return 1;
	if (tty) {
		fputs("\033[H\033[J", stdout);
		printf("rumpblk %s: every %.1f s: first figures in %.1f s\n",
		    path, interval, interval);
		fflush(stdout);
	}
	for (n = 0; count == 0 || n < count; n++) {
		ts.tv_sec = (time_t)interval;
		ts.tv_nsec = (long)((interval - (double)ts.tv_sec) * 1e9);
		while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
			;
		if (take(path, &cur) != 0) {
			snap_free(&prev);
			return 1;
		}
		show(stdout, path, &cur, &prev, interval, tty);
		snap_free(&prev);
		prev = cur;
	}
	snap_free(&prev);
	return 0;
}
