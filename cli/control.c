/*
 * The control socket (--control PATH) and its client, rumpblk ctl.
 *
 * One thread polls the listening Unix socket and up to CTL_MAXCLIENTS
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
 *                    {"ok":true,"power_cut":{"model":..,"seed":..,
 *                    "unflushed":..,...}}  (rumpblk_power_cut of the unit
 *                    served; it needs --write-cache)
 *   mark NAME        {"ok":true,"mark":NAME}  (rumpblk_log_mark: a mark
 *                    entry in the write log; it needs --write-log)
 *
 * and {"ok":false,"error":"..."} when a command fails; a bad rule is
 * refused with the library's message and the server keeps serving.  The
 * commands are rare and cheap, so one thread serves every client; a
 * client that does not read its answers is dropped after a send timeout
 * rather than stalling the others for long.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "cli.h"
#include "control.h"
#include "sendv.h"

#define CTL_MAXCLIENTS	16
#define CTL_LINEMAX	4096

struct ctl_client {
	int		cl_fd;		/* -1: free slot */
	size_t		cl_len;
	char		cl_buf[CTL_LINEMAX];
};

struct cli_control {
	struct rumpblk	*cc_rb;
	int		cc_unit;	/* what reset resets */
	char		*cc_path;
	int		cc_lfd;
	int		cc_pipe[2];	/* written to stop the thread */
	pthread_t	cc_thread;
	struct ctl_client cc_cl[CTL_MAXCLIENTS];
};

static void
reply_error(FILE *f, const char *msg)
{
	fprintf(f, "{\"ok\":false,\"error\":");
	cli_json_string(f, msg);
	fputc('}', f);
}

/* power-cut [model=M] [seed=S] [atom=N]: the rest of the line in *save. */
static void
power_cut(struct rumpblk *rb, int unit, char **save, FILE *f)
{
	struct rumpblk_powercut pc;
	char spec[CTL_LINEMAX], err[600], *tok;
	int error;

	spec[0] = '\0';
	while ((tok = strtok_r(NULL, " \t\r", save)) != NULL) {
		if (strlen(spec) + strlen(tok) + 2 > sizeof(spec))
			break;
		if (spec[0] != '\0')
			strcat(spec, ",");
		strcat(spec, tok);
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
		    "is under way" : strerror(error));
		reply_error(f, err);
		return;
	}
	fprintf(f, "{\"ok\":true,\"power_cut\":");
	cli_powercut_json(f, &pc);
	fputc('}', f);
}

/* mark NAME: a mark entry in the write log. */
static void
mark(struct rumpblk *rb, int unit, char **save, FILE *f)
{
	char err[600], *name;
	int error;

	name = strtok_r(NULL, " \t\r", save);
	if (name == NULL || strtok_r(NULL, " \t\r", save) != NULL) {
		reply_error(f, "mark: want 'mark NAME' (one word)");
		return;
	}
	if ((error = rumpblk_log_mark(rb, unit, name)) != 0) {
		snprintf(err, sizeof(err), "mark %s: unit %d: %s", name, unit,
		    error == ENOTSUP ? "no write log (serve --write-log "
		    "FILE)" : error == ENAMETOOLONG ? "the name is longer "
		    "than a log entry's sector holds" : strerror(error));
		reply_error(f, err);
		return;
	}
	fprintf(f, "{\"ok\":true,\"mark\":");
	cli_json_string(f, name);
	fputc('}', f);
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
		if (strtok_r(NULL, " \t\r", &save) != NULL) {
			reply_error(f, "reset takes no argument (it resets "
			    "the unit served)");
			return;
		}
		if ((error = rumpblk_unit_reset(rb, unit)) != 0) {
			snprintf(err, sizeof(err), "reset: unit %d: %s", unit,
			    strerror(error));
			reply_error(f, err);
			return;
		}
		fprintf(f, "{\"ok\":true}");
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
		if ((error = rumpblk_fault_add(rb, arg, id, sizeof(id), err,
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

/* Send all of p on a blocking socket (one with SO_SNDTIMEO, for the
 * server's clients); 0 or errno. */
static int
send_all(int fd, const char *p, size_t len)
{
	struct iovec iov = { .iov_base = (void *)p, .iov_len = len };

	return fe_sendv_all(fd, &iov, 1, 0, NULL, NULL);
}

/* Answer every full line a client has sent; false: drop it. */
static bool
serve_lines(struct cli_control *cc, struct ctl_client *cl)
{
	char *nl, *out = NULL;
	size_t outlen = 0, used;
	FILE *f;
	bool ok = true;

	while (ok && (nl = memchr(cl->cl_buf, '\n', cl->cl_len)) != NULL) {
		*nl = '\0';
		used = (size_t)(nl - cl->cl_buf) + 1;
		if ((f = open_memstream(&out, &outlen)) == NULL)
			return false;
		cli_control_command(cc->cc_rb, cc->cc_unit, cl->cl_buf, f);
		fputc('\n', f);
		if (fclose(f) != 0)
			return false;
		ok = send_all(cl->cl_fd, out, outlen) == 0;
		free(out);
		out = NULL;
		memmove(cl->cl_buf, cl->cl_buf + used, cl->cl_len - used);
		cl->cl_len -= used;
	}
	if (ok && cl->cl_len == sizeof(cl->cl_buf)) {
		static const char msg[] = "{\"ok\":false,\"error\":\"command "
		    "line too long\"}\n";

		send_all(cl->cl_fd, msg, sizeof(msg) - 1);
		ok = false;
	}
	return ok;
}

static void
client_close(struct ctl_client *cl)
{
	close(cl->cl_fd);
	cl->cl_fd = -1;
	cl->cl_len = 0;
}

static void *
control_main(void *arg)
{
	struct cli_control *cc = arg;
	struct pollfd pfd[2 + CTL_MAXCLIENTS];
	struct ctl_client *map[2 + CTL_MAXCLIENTS];
	struct timeval tv = { 5, 0 };
	struct ctl_client *cl;
	nfds_t n, i;
	ssize_t r;
	int fd, j;

	(void)pthread_setname_np(pthread_self(), "rb-control");
	for (;;) {
		pfd[0] = (struct pollfd){ cc->cc_pipe[0], POLLIN, 0 };
		pfd[1] = (struct pollfd){ cc->cc_lfd, POLLIN, 0 };
		n = 2;
		for (j = 0; j < CTL_MAXCLIENTS; j++) {
			if (cc->cc_cl[j].cl_fd == -1)
				continue;
			map[n] = &cc->cc_cl[j];
			pfd[n++] = (struct pollfd){ cc->cc_cl[j].cl_fd, POLLIN,
			    0 };
		}
		if (poll(pfd, n, -1) < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		if (pfd[0].revents != 0)
			break;
		if (pfd[1].revents & POLLIN) {
			fd = accept4(cc->cc_lfd, NULL, NULL, SOCK_CLOEXEC);
			for (j = 0; fd >= 0 && j < CTL_MAXCLIENTS; j++)
				if (cc->cc_cl[j].cl_fd == -1)
					break;
			if (fd >= 0 && j == CTL_MAXCLIENTS) {
				static const char msg[] = "{\"ok\":false,"
				    "\"error\":\"too many control clients\"}\n";

				send_all(fd, msg, sizeof(msg) - 1);
				close(fd);
			} else if (fd >= 0) {
				setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv,
				    sizeof(tv));
				cc->cc_cl[j].cl_fd = fd;
				cc->cc_cl[j].cl_len = 0;
			}
		}
		for (i = 2; i < n; i++) {
			if (pfd[i].revents == 0)
				continue;
			cl = map[i];
			r = read(cl->cl_fd, cl->cl_buf + cl->cl_len,
			    sizeof(cl->cl_buf) - cl->cl_len);
			if (r < 0 && errno == EINTR)
				continue;
			if (r <= 0) {
				client_close(cl);
				continue;
			}
			cl->cl_len += (size_t)r;
			if (!serve_lines(cc, cl))
				client_close(cl);
		}
	}
	return NULL;
}

static int
listen_unix(const char *path, int *fdp)
{
	struct sockaddr_un sa;
	int fd, probe, error;

	memset(&sa, 0, sizeof(sa));
	sa.sun_family = AF_UNIX;
	if (strlen(path) >= sizeof(sa.sun_path))
		return ENAMETOOLONG;
	memcpy(sa.sun_path, path, strlen(path) + 1);
	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0)
		return errno;
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		error = errno;
		if (error != EADDRINUSE)
			goto close_fd;
		/* A leftover socket nobody listens on is replaced. */
		probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (probe < 0 || connect(probe, (struct sockaddr *)&sa,
		    sizeof(sa)) == 0 || errno != ECONNREFUSED) {
			if (probe >= 0)
				close(probe);
			goto close_fd;
		}
		close(probe);
		if (unlink(path) < 0 || bind(fd, (struct sockaddr *)&sa,
		    sizeof(sa)) < 0) {
			error = errno;
			goto close_fd;
		}
	}
	/* The socket can arm faults: its owner only. */
	if (chmod(path, 0600) < 0 || listen(fd, 8) < 0) {
		error = errno;
		unlink(path);
		goto close_fd;
	}
	*fdp = fd;
	return 0;
close_fd:
	close(fd);
	return error;
}

int
cli_control_start(struct rumpblk *rb, int unit, const char *path,
    struct cli_control **ccp)
{
	struct cli_control *cc;
	int error;

	if ((cc = calloc(1, sizeof(*cc))) == NULL)
		return ENOMEM;
	cc->cc_rb = rb;
	cc->cc_unit = unit;
	for (int j = 0; j < CTL_MAXCLIENTS; j++)
		cc->cc_cl[j].cl_fd = -1;
	if ((cc->cc_path = strdup(path)) == NULL) {
		error = ENOMEM;
		goto free_cc;
	}
	if (pipe2(cc->cc_pipe, O_CLOEXEC) < 0) {
		error = errno;
		goto free_path;
	}
	if ((error = listen_unix(path, &cc->cc_lfd)) != 0)
		goto close_pipe;
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
	if (cc == NULL)
		return;
	while (write(cc->cc_pipe[1], "x", 1) < 0 && errno == EINTR)
		;
	pthread_join(cc->cc_thread, NULL);
	for (int j = 0; j < CTL_MAXCLIENTS; j++)
		if (cc->cc_cl[j].cl_fd != -1)
			close(cc->cc_cl[j].cl_fd);
	close(cc->cc_lfd);
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
	    "  reset            reset the unit served: 'rumpblk serve' drops "
	    "every\n"
	    "                   connection to it at once\n"
	    "  power-cut [model=M] [seed=S] [atom=N]\n"
	    "                   cut the power of the unit served (it needs\n"
	    "                   --write-cache): M is lose (default), keep,\n"
	    "                   subset, reorder, sectors or torn (atom=N:\n"
	    "                   torn's unit, a multiple of 512)\n"
	    "  mark NAME        a mark entry in the write log (it needs\n"
	    "                   --write-log), after every write logged so\n"
	    "                   far: 'rumpblk log replay --to mark=NAME'\n");
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
	memcpy(sa.sun_path, argv[1], strlen(argv[1]) + 1);
	for (i = 2; i < argc; i++)
		len += strlen(argv[i]) + 1;
	if ((buf = malloc(cap)) == NULL) {
		cli_err("ctl: out of memory");
		return 1;
	}
	if (len >= CTL_LINEMAX || (line = malloc(len + 1)) == NULL) {
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
	if ((error = send_all(fd, line, strlen(line))) != 0) {
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
