/*
 * test-fault-control: the control socket arms and disarms a rule while
 * I/O runs, and the firings start and stop with it; a bad rule is
 * refused with a message naming it and the server keeps serving;
 * `rumpblk ctl` (RUMPBLK, when meson gives it) talks to the same socket;
 * `reset` resets the unit the socket serves (its event says which).
 *
 * The socket server is the CLI's own (cli/control.c), linked in here
 * with an instance of our own, so that the test needs no NBD server.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "faultlib.h"
#include "control.h"

static atomic_bool stop;

struct worker {
	struct rumpblk	*rb;
	int		unit;
};

static void *
reader(void *arg)
{
	struct worker *w = arg;
	char buf[4096];

	/* Bounded: the test stops us long before this. */
	for (unsigned i = 0; i < 5000000 && !atomic_load(&stop); i++)
		tl_io(w->rb, w->unit, RUMPBLK_B_READ, (int64_t)(i % 64) * 8,
		    buf, sizeof(buf), NULL);
	return NULL;
}

static int
ctl_connect(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);

	assert(fd >= 0);
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	assert(connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0);
	return fd;
}

/* Send one command, return its answer line (static buffer). */
static const char *
ctl(int fd, const char *cmd)
{
	static char buf[65536];
	size_t got = 0;
	ssize_t r;

	assert(write(fd, cmd, strlen(cmd)) == (ssize_t)strlen(cmd));
	assert(write(fd, "\n", 1) == 1);
	while (got < sizeof(buf) - 1) {
		r = read(fd, buf + got, sizeof(buf) - 1 - got);
		assert(r > 0);
		got += (size_t)r;
		if (memchr(buf, '\n', got) != NULL)
			break;
	}
	buf[got] = '\0';
	*strchr(buf, '\n') = '\0';
	return buf;
}

static long long
json_int(const char *s, const char *key)
{
	char pat[64];
	const char *p;

	snprintf(pat, sizeof(pat), "\"%s\":", key);
	if ((p = strstr(s, pat)) == NULL)
		return -1;
	return strtoll(p + strlen(pat), NULL, 10);
}

/* The error firings so far, from the socket's stats. */
static long long
error_firings(int fd)
{
	const char *s = ctl(fd, "stats");

	tl_eq(strncmp(s, "{\"ok\":true,\"stats\":", 19), 0);
	return json_int(strstr(s, "\"by_class\""), "error");
}

static long long
io_total(struct rumpblk *rb)
{
	struct rumpblk_stats st;

	rumpblk_stats(rb, -1, &st);
	return (long long)st.io_total;
}

static void
arm_disarm_live(void **state)
{
	struct fl_env e;
	struct cli_control *cc;
	struct worker w;
	pthread_t tid;
	char *sock = tl_path("ctl.sock"), cmd[512];
	const char *s, *rumpblk = getenv("RUMPBLK");
	long long f0, f1, t0;
	int fd, i;
	FILE *p;

	(void)state;
	fl_open(&e, "ctl.img", 1 << 20, 3);
	tl_eq(rumpblk_fault_enable(e.rb), 0);
	tl_eq(cli_control_start(e.rb, e.unit, sock, &cc), 0);
	w = (struct worker){ e.rb, e.unit };
	assert(pthread_create(&tid, NULL, reader, &w) == 0);
	fd = ctl_connect(sock);

	tl_eq(error_firings(fd), 0);
	s = ctl(fd, "fault add error,op=read,p=0.5,id=e1");
	tl_eq(strcmp(s, "{\"ok\":true,\"id\":\"e1\"}"), 0);
	/* Firings start (bounded wait: 20 s). */
	for (i = 0; i < 2000 && error_firings(fd) == 0; i++)
		usleep(10000);
	tl_eq(error_firings(fd) > 0, true);
	s = ctl(fd, "fault list");
	tl_eq(strstr(s, "\"id\":\"e1\"") != NULL, true);
	tl_eq(strstr(s, "\"rule\":\"error,op=read,p=0.5,id=e1\"") != NULL,
	    true);
	tl_eq(json_int(s, "firings") > 0, true);

	s = ctl(fd, "fault del e1");
	tl_eq(strcmp(s, "{\"ok\":true}"), 0);
	/* Firings stop: many requests later, still the same count. */
	f0 = error_firings(fd);
	t0 = io_total(e.rb);
	for (i = 0; i < 2000 && io_total(e.rb) < t0 + 500; i++)
		usleep(10000);
	tl_eq(io_total(e.rb) >= t0 + 500, true);
	f1 = error_firings(fd);
	tl_eq(f1, f0);

	/* A bad rule: refused by name, nothing armed, still serving. */
	s = ctl(fd, "fault add error,p=2");
	tl_eq(strncmp(s, "{\"ok\":false,\"error\":\"rule 'error,p=2': p=2 is "
	    "outside 0-1\"", 55), 0);
	s = ctl(fd, "fault list");
	tl_eq(strstr(s, "\"rules\":[]") != NULL, true);
	s = ctl(fd, "fault del nosuch");
	tl_eq(strncmp(s, "{\"ok\":false", 11), 0);
	s = ctl(fd, "format disk");
	tl_eq(strstr(s, "unknown command 'format'") != NULL, true);
	s = ctl(fd, "fault add lost");
	tl_eq(strcmp(s, "{\"ok\":true,\"id\":\"r2\"}"), 0);
	s = ctl(fd, "fault clear");
	tl_eq(strcmp(s, "{\"ok\":true}"), 0);

	/* The real client, when we have it. */
	if (rumpblk != NULL) {
		snprintf(cmd, sizeof(cmd), "'%s' ctl '%s' fault add "
		    "delay,ms=0.1,id=d", rumpblk, sock);
		assert((p = popen(cmd, "r")) != NULL);
		assert(fgets(cmd, sizeof(cmd), p) != NULL);
		tl_eq(pclose(p), 0);
		tl_eq(strcmp(cmd, "{\"ok\":true,\"id\":\"d\"}\n"), 0);
		snprintf(cmd, sizeof(cmd), "'%s' ctl '%s' fault del nosuch "
		    ">/dev/null", rumpblk, sock);
		tl_eq(WEXITSTATUS(system(cmd)), 1);
		/* A long answer: 300 rules listed (about 60 KiB). */
		for (i = 0; i < 300; i++)
			tl_eq(rumpblk_fault_add(e.rb, "delay,op=trim,ms=1000,"
			    "range=0-1G,after=999999999,count=7,seed=123456789",
			    NULL, 0, NULL, 0), 0);
		snprintf(cmd, sizeof(cmd), "'%s' ctl '%s' fault list | "
		    "grep -o '\"firings\"' | wc -l", rumpblk, sock);
		assert((p = popen(cmd, "r")) != NULL);
		assert(fgets(cmd, sizeof(cmd), p) != NULL);
		tl_eq(pclose(p), 0);
		tl_eq(atoi(cmd), 301);
	}

	atomic_store(&stop, true);
	pthread_join(tid, NULL);
	close(fd);
	cli_control_stop(cc);
	tl_eq(access(sock, F_OK), -1);		/* removed */
	fl_close(&e);
	free(sock);
}

/* What a subscriber heard; written by the control thread. */
struct heard {
	atomic_int	unit, event, n;
};

static void
heard_event(void *arg, int unit, int event)
{
	struct heard *h = arg;

	atomic_store(&h->unit, unit);
	atomic_store(&h->event, event);
	atomic_fetch_add(&h->n, 1);
}

static void
reset_command(void **state)
{
	struct fl_env e;
	struct cli_control *cc;
	struct heard h;
	char *sock = tl_path("reset.sock");
	const char *s;
	int fd, id;

	(void)state;
	atomic_init(&h.unit, -1);
	atomic_init(&h.event, -1);
	atomic_init(&h.n, 0);
	fl_open(&e, "reset.img", 1 << 20, 5);
	tl_eq(rumpblk_event_subscribe(e.rb, heard_event, &h, &id), 0);
	tl_eq(cli_control_start(e.rb, e.unit, sock, &cc), 0);
	fd = ctl_connect(sock);
	s = ctl(fd, "reset");
	tl_eq(strcmp(s, "{\"ok\":true}"), 0);
	/* The answer comes once every subscriber has been called. */
	tl_eq(atomic_load(&h.n), 1);
	tl_eq(atomic_load(&h.unit), e.unit);
	tl_eq(atomic_load(&h.event), RUMPBLK_EVENT_RESET);
	s = ctl(fd, "reset 0");
	tl_eq(strstr(s, "\"ok\":false") != NULL &&
	    strstr(s, "reset takes no argument") != NULL, true);
	tl_eq(atomic_load(&h.n), 1);
	close(fd);
	cli_control_stop(cc);

	/* A socket started for a unit that is gone: the error names it. */
	tl_eq(cli_control_start(e.rb, e.unit + 7, sock, &cc), 0);
	fd = ctl_connect(sock);
	s = ctl(fd, "reset");
	tl_eq(strstr(s, "\"ok\":false") != NULL &&
	    strstr(s, "reset: unit ") != NULL, true);
	tl_eq(atomic_load(&h.n), 1);
	close(fd);
	cli_control_stop(cc);
	tl_eq(rumpblk_event_unsubscribe(e.rb, id), 0);
	fl_close(&e);
	free(sock);
}

/* Every example of 'rumpblk faults --help' is a rule that arms. */
static void
reference_examples(void **state)
{
	char *text = strdup(cli_fault_reference), *line, *save, *p, err[512];
	int n = 0;

	(void)state;
	for (line = strtok_r(text, "\n", &save); line != NULL;
	    line = strtok_r(NULL, "\n", &save)) {
		/* An example is the last word of a line, a class and
		 * its keys. */
		p = strrchr(line, ' ') != NULL ? strrchr(line, ' ') + 1 : line;
		if (strncmp(p, "error,", 6) != 0 &&
		    strncmp(p, "corrupt,", 8) != 0 &&
		    strncmp(p, "lost,", 5) != 0 &&
		    strncmp(p, "misdirect,", 10) != 0 &&
		    strncmp(p, "stale,", 6) != 0 &&
		    strncmp(p, "torn,", 5) != 0 &&
		    strncmp(p, "delay,", 6) != 0)
			continue;
		if (rumpblk_fault_check(p, err, sizeof(err)) != 0)
			tl_fail("example '%s': %s\n", p, err);
		n++;
	}
	tl_eq(n, 19);
	free(text);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(arm_disarm_live),
		cmocka_unit_test(reset_command),
		cmocka_unit_test(reference_examples),
	};

	return tl_main(tests, NULL, NULL);
}
