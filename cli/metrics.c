/*
 * serve --metrics ADDR:PORT: an HTTP endpoint for Prometheus (issue 17).
 *
 * GET /metrics answers the instance's counters, gauges and latency
 * histograms in the Prometheus text exposition format (version 0.0.4):
 * names rumpblk_..., base units (seconds, bytes), counters ending in
 * _total, histograms as _bucket{le=...}, _sum and _count, labels unit,
 * op, class and, for a front-end connection, conn (the library's
 * record id) and client (its label, "nbd#3 127.0.0.1:40000").  The HTTP
 * is libmicrohttpd's, on one thread of its own (a scrape every few
 * seconds needs no more); this file only writes the text.  Every scrape
 * is a fresh snapshot of the library (rumpblk_stats, rumpblk_hist_op,
 * ...), so the server keeps no state of its own and costs nothing
 * between scrapes.
 *
 * The listening socket is made here, not by libmicrohttpd, so that a
 * bad address or a port in use is one line naming the option and the
 * error, before the server serves anything; it is bound to 127.0.0.1
 * unless ADDR says otherwise, since the numbers tell who does what.
 *
 * The histograms have 242 buckets (struct rumpblk_hist); the exposition
 * gives two "le" bounds an octave (x1 and x1.5 of a power of two
 * nanoseconds, 128 ns to 137 s), 61 in all and +Inf, each an exact
 * bucket boundary, so the cumulative counts are exact and a scrape
 * stays small; JSON (ctl stats, --stats) has every bucket.
 *
 * Contents: the text (label values, histograms, families); the server
 * (address, handler, start, stop).
 */
#include <errno.h>
#include <inttypes.h>
#include <microhttpd.h>
#include <netdb.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "cli.h"
#include "metrics.h"

struct cli_metrics {
	struct rumpblk	*m_rb;
	struct MHD_Daemon *m_daemon;
};

/* 1. The text. */

/* A label value, escaped as the format wants (\\, \", \n), into
 * dst (len >= 2 * strlen(s) + 1 holds any). */
static void
label_escape(char *dst, size_t len, const char *s)
{
	size_t n = 0;

	for (; *s != '\0' && n + 3 < len; s++) {
		if (*s == '\\' || *s == '"' || *s == '\n')
			dst[n++] = '\\';
		dst[n++] = *s == '\n' ? 'n' : *s;
	}
	dst[n] = '\0';
}

/* ns as seconds, exactly, in decimal ("0.000000128", "137.438953472"). */
static void
seconds(FILE *f, uint64_t ns)
{
	char frac[16];
	int n;

	n = snprintf(frac, sizeof(frac), "%09" PRIu64, ns % 1000000000u);
	while (n > 1 && frac[n - 1] == '0')
		frac[--n] = '\0';
	fprintf(f, "%" PRIu64 ".%s", ns / 1000000000u, frac);
}

static void
family(FILE *f, const char *name, const char *type, const char *help)
{
	fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* Is bucket i's upper bound one the exposition gives as an "le"? */
static bool
shown_bound(unsigned i)
{
	return i == 0 || (i < RUMPBLK_HIST_BUCKETS - 1 &&
	    ((i - 1) % RUMPBLK_HIST_SUB == RUMPBLK_HIST_SUB / 2 - 1 ||
	    (i - 1) % RUMPBLK_HIST_SUB == RUMPBLK_HIST_SUB - 1));
}

/* The series of one histogram; labels is "k=\"v\",..." (no braces). */
static void
hist_series(FILE *f, const char *name, const char *labels,
    const struct rumpblk_hist *h)
{
	uint64_t cum = 0;
	unsigned i;

	for (i = 0; i < RUMPBLK_HIST_BUCKETS - 1; i++) {
		cum += h->h_buckets[i];
		if (!shown_bound(i))
			continue;
		fprintf(f, "%s_bucket{%s,le=\"", name, labels);
		seconds(f, rumpblk_hist_bound(i));
		fprintf(f, "\"} %" PRIu64 "\n", cum);
	}
	cum += h->h_buckets[RUMPBLK_HIST_BUCKETS - 1];
	fprintf(f, "%s_bucket{%s,le=\"+Inf\"} %" PRIu64 "\n", name, labels,
	    cum);
	fprintf(f, "%s_sum{%s} ", name, labels);
	seconds(f, h->h_sum_ns);
	fprintf(f, "\n%s_count{%s} %" PRIu64 "\n", name, labels, cum);
}

/* The units of rb, by number: up to max into units; how many. */
static unsigned
live_units(struct rumpblk *rb, int *units, unsigned max)
{
	struct rumpblk_config cfg;
	struct rumpblk_unitinfo ui;
	unsigned u, n = 0;

	rumpblk_get_config(rb, &cfg);
	for (u = 0; u < cfg.max_units && n < max; u++)
		if (rumpblk_unitinfo(rb, (int)u, &ui) == 0)
			units[n++] = (int)u;
	return n;
}

#define MAXUNITS	256

/* Counters taken from struct rumpblk_stats, one family each. */
static void
stats_counters(FILE *f, const int *units, unsigned nu,
    const struct rumpblk_stats *st)
{
	static const struct {
		const char	*name, *help;
		size_t		off;
	} ctr[] = {
#define C(n, f, h)	{ n, h, offsetof(struct rumpblk_stats, f) }
		C("rumpblk_submitted_requests_total", io_total, "Strategy "
		    "calls, every one (refused and failed ones included)."),
		C("rumpblk_request_errors_total", io_errors, "Requests "
		    "completed with an error."),
		C("rumpblk_faults_injected_total", faults_injected,
		    "Faults injected (every class)."),
		C("rumpblk_mmap_window_hits_total", win_hits, "mmap "
		    "backend: requests that found their window mapped."),
		C("rumpblk_mmap_window_misses_total", win_misses, "mmap "
		    "backend: windows mapped for a request."),
		C("rumpblk_mmap_window_busy_total", win_busy, "mmap "
		    "backend: waits for a window with every window busy."),
#undef C
	};
	size_t k;
	unsigned i;

	for (k = 0; k < sizeof(ctr) / sizeof(ctr[0]); k++) {
		family(f, ctr[k].name, "counter", ctr[k].help);
		for (i = 0; i < nu; i++)
			fprintf(f, "%s{unit=\"%d\"} %" PRIu64 "\n", ctr[k].name,
			    units[i], *(const uint64_t *)(const void *)
			    ((const char *)&st[i] + ctr[k].off));
	}
	family(f, "rumpblk_bytes_total", "counter", "Bytes moved (read, "
	    "write) or covered (trim, zero), by operation.");
	for (i = 0; i < nu; i++)
		fprintf(f, "rumpblk_bytes_total{unit=\"%d\",op=\"read\"} %"
		    PRIu64 "\nrumpblk_bytes_total{unit=\"%d\",op=\"write\"} %"
		    PRIu64 "\nrumpblk_bytes_total{unit=\"%d\",op=\"trim\"} %"
		    PRIu64 "\nrumpblk_bytes_total{unit=\"%d\",op=\"zero\"} %"
		    PRIu64 "\n", units[i], st[i].bytes_read, units[i],
		    st[i].bytes_written, units[i], st[i].bytes_trimmed,
		    units[i], st[i].bytes_zeroed);
	family(f, "rumpblk_faults_total", "counter", "Fault firings, by "
	    "class (seed: the RUMP_BLKFAIL mode).");
	for (i = 0; i < nu; i++)
		for (k = 0; k < RUMPBLK_FAULT_NCLASS; k++)
			fprintf(f, "rumpblk_faults_total{unit=\"%d\",class=\"%s\"}"
			    " %" PRIu64 "\n", units[i],
			    rumpblk_fault_class_name((enum rumpblk_fault_class)k),
			    st[i].faults_class[k]);
}

/* Gauges: in flight, connections, the write cache. */
static void
gauges(FILE *f, struct rumpblk *rb, const int *units, unsigned nu,
    const struct rumpblk_conn_info *ci, size_t nci)
{
	static const struct {
		const char	*name, *type, *help;
		size_t		off;
	} wc[] = {
#define W(n, t, f, h)	{ n, t, h, offsetof(struct rumpblk_cache_stats, f) }
		W("rumpblk_write_cache_dirty_bytes", "gauge", cs_dirty_bytes,
		    "Write cache: bytes acknowledged and not yet durable "
		    "(unflushed)."),
		W("rumpblk_write_cache_size_bytes", "gauge", cs_size,
		    "Write cache: the most it holds."),
		W("rumpblk_write_cache_durable_bytes_total", "counter",
		    cs_bytes_durable, "Write cache: bytes made durable "
		    "(flush, FUA, destaging)."),
#undef W
	};
	struct rumpblk_cache_stats *cs;
	struct rumpblk_unitinfo ui;
	uint64_t n;
	unsigned i, nc;
	size_t k;

	family(f, "rumpblk_unit_size_bytes", "gauge", "The unit's size.");
	for (i = 0; i < nu; i++)
		if (rumpblk_unitinfo(rb, units[i], &ui) == 0)
			fprintf(f, "rumpblk_unit_size_bytes{unit=\"%d\"} %" PRIu64
			    "\n", units[i], ui.ui_size);
	family(f, "rumpblk_inflight_requests", "gauge", "Requests "
	    "submitted and not yet completed.");
	for (i = 0; i < nu; i++) {
		(void)rumpblk_inflight(rb, units[i], &n);
		fprintf(f, "rumpblk_inflight_requests{unit=\"%d\"} %" PRIu64
		    "\n", units[i], n);
	}
	family(f, "rumpblk_connections", "gauge", "Front-end "
	    "connections (NBD clients) open on the unit.");
	for (i = 0; i < nu; i++) {
		for (nc = 0, k = 0; k < nci; k++)
			if (ci[k].ci_unit == units[i])
				nc++;
		fprintf(f, "rumpblk_connections{unit=\"%d\"} %u\n", units[i],
		    nc);
	}
	/* The write cache: one snapshot a unit for all its families. */
	if ((cs = calloc(nu, sizeof(*cs))) == NULL)
		return;
	for (i = 0; i < nu; i++)
		if (rumpblk_cache_stats(rb, units[i], &cs[i]) != 0)
			cs[i].cs_size = 0;	/* no cache: not reported */
	for (k = 0; k < sizeof(wc) / sizeof(wc[0]); k++) {
		family(f, wc[k].name, wc[k].type, wc[k].help);
		for (i = 0; i < nu; i++)
			if (cs[i].cs_size != 0)
				fprintf(f, "%s{unit=\"%d\"} %" PRIu64 "\n",
				    wc[k].name, units[i],
				    *(const uint64_t *)(const void *)
				    ((const char *)&cs[i] + wc[k].off));
	}
	free(cs);
}

/* The per-op request counts and the histograms. */
static void
latency(FILE *f, struct rumpblk *rb, const int *units, unsigned nu,
    const struct rumpblk_conn_info *ci, size_t nci)
{
	struct rumpblk_hist h;
	char labels[512], client[2 * RUMPBLK_CONN_LABELMAX];
	unsigned i;
	size_t k;
	int c;

	family(f, "rumpblk_requests_total", "counter", "Requests "
	    "completed by the unit, by operation (exact, every one).");
	for (i = 0; i < nu; i++)
		for (c = 0; c < CLI_NOPS; c++) {
			(void)rumpblk_hist_op(rb, units[i], cli_ops[c], &h);
			fprintf(f, "rumpblk_requests_total{unit=\"%d\",op=\"%s\"}"
			    " %" PRIu64 "\n", units[i], cli_op_name(cli_ops[c]),
			    h.h_count);
		}
	family(f, "rumpblk_request_duration_seconds", "histogram",
	    "Request latency, strategy to completion, by operation; the "
	    "timed requests: every request of an NBD client, one in "
	    "lat_sample of in-process callers (librumpblk(3)).");
	for (i = 0; i < nu; i++)
		for (c = 0; c < CLI_NOPS; c++) {
			(void)rumpblk_hist_op(rb, units[i], cli_ops[c], &h);
			snprintf(labels, sizeof(labels), "unit=\"%d\",op=\"%s\"",
			    units[i], cli_op_name(cli_ops[c]));
			hist_series(f, "rumpblk_request_duration_seconds",
			    labels, &h);
		}
	family(f, "rumpblk_fault_request_duration_seconds", "histogram",
	    "Latency of the requests a fault fired on, by class (every "
	    "one timed, but power-cut's); classes that fired.");
	for (i = 0; i < nu; i++)
		for (c = 0; c < RUMPBLK_FAULT_NCLASS; c++) {
			if (rumpblk_hist_fault(rb, units[i],
			    (enum rumpblk_fault_class)c, &h) != 0 ||
			    h.h_count == 0)
				continue;
			snprintf(labels, sizeof(labels),
			    "unit=\"%d\",class=\"%s\"", units[i],
			    rumpblk_fault_class_name((enum rumpblk_fault_class)c));
			hist_series(f, "rumpblk_fault_request_duration_seconds",
			    labels, &h);
		}
	family(f, "rumpblk_connection_request_duration_seconds",
	    "histogram", "Request latency of each open front-end "
	    "connection (every request timed), by operation; ops it used.");
	for (k = 0; k < nci; k++) {
		label_escape(client, sizeof(client), ci[k].ci_label);
		for (c = 0; c < CLI_NOPS; c++) {
			if (rumpblk_conn_hist(rb, ci[k].ci_id, cli_ops[c],
			    &h) != 0 || h.h_count == 0)
				continue;
			snprintf(labels, sizeof(labels), "unit=\"%d\",conn=\"%d\","
			    "client=\"%s\",op=\"%s\"", ci[k].ci_unit,
			    ci[k].ci_id, client, cli_op_name(cli_ops[c]));
			hist_series(f, "rumpblk_connection_request_duration_"
			    "seconds", labels, &h);
		}
	}
	family(f, "rumpblk_ended_connections_request_duration_seconds",
	    "histogram", "Request latency of every front-end connection "
	    "that has ended, summed, by operation.");
	for (c = 0; c < CLI_NOPS; c++) {
		(void)rumpblk_conn_hist(rb, RUMPBLK_CONN_ENDED, cli_ops[c], &h);
		snprintf(labels, sizeof(labels), "op=\"%s\"",
		    cli_op_name(cli_ops[c]));
		hist_series(f, "rumpblk_ended_connections_request_duration_"
		    "seconds", labels, &h);
	}
}

void
cli_metrics_text(FILE *f, struct rumpblk *rb)
{
	struct rumpblk_conn_info *ci = NULL;
	struct rumpblk_stats *st;
	int units[MAXUNITS];
	unsigned nu, i;
	size_t nci = 0;

	/* The list may grow between the two calls: take what fits. */
	if (rumpblk_conn_list(rb, NULL, 0, &nci) == 0 && nci > 0 &&
	    ((ci = calloc(nci, sizeof(*ci))) == NULL ||
	    rumpblk_conn_list(rb, ci, nci, &nci) != 0))
		nci = 0;
	nu = live_units(rb, units, MAXUNITS);
	if ((st = calloc(nu ? nu : 1, sizeof(*st))) == NULL) {
		free(ci);
		return;
	}
	for (i = 0; i < nu; i++)
		rumpblk_stats(rb, units[i], &st[i]);
	stats_counters(f, units, nu, st);
	gauges(f, rb, units, nu, ci, nci);
	latency(f, rb, units, nu, ci, nci);
	free(st);
	free(ci);
}

/* 2. The server. */

/*
 * Split "PORT", ":PORT", "HOST:PORT" or "[V6]:PORT" into host (default
 * 127.0.0.1) and port; false if it is none of them.
 */
static bool
split_addr(const char *addr, char *host, size_t hlen, char *port,
    size_t plen)
{
	const char *colon, *p;

	if (addr[0] == '[') {
		if ((colon = strstr(addr, "]:")) == NULL ||
		    (size_t)(colon - addr - 1) >= hlen)
			return false;
		snprintf(host, hlen, "%.*s", (int)(colon - addr - 1), addr + 1);
		p = colon + 2;
	} else if ((colon = strrchr(addr, ':')) != NULL) {
		if (memchr(addr, ':', (size_t)(colon - addr)) != NULL ||
		    (size_t)(colon - addr) >= hlen)
			return false;	/* a bare IPv6 address: say [V6] */
		snprintf(host, hlen, "%.*s", (int)(colon - addr), addr);
		p = colon + 1;
	} else {
		host[0] = '\0';
		p = addr;
	}
	if (host[0] == '\0')
		snprintf(host, hlen, "127.0.0.1");
	if (*p == '\0' || strlen(p) >= plen || strspn(p, "0123456789") !=
	    strlen(p) || strtoul(p, NULL, 10) > 65535)
		return false;
	snprintf(port, plen, "%s", p);
	return true;
}

/* A listening socket on addr, or -1 with the error said.  *portp gets
 * the port bound, *v6 whether it is IPv6. */
static int
listen_on(const char *addr, int *portp, bool *v6)
{
	struct addrinfo hints, *ai;
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	char host[256], port[16];
	int fd, one = 1, r;

	if (!split_addr(addr, host, sizeof(host), port, sizeof(port))) {
		cli_err("--metrics: '%s' is not ADDR:PORT (e.g. 127.0.0.1:9100, "
		    "[::1]:9100, or just a PORT on 127.0.0.1)", addr);
		return -1;
	}
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_NUMERICSERV | AI_PASSIVE;
	if ((r = getaddrinfo(host, port, &hints, &ai)) != 0) {
		cli_err("--metrics %s: %s", addr, gai_strerror(r));
		return -1;
	}
	fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC,
	    ai->ai_protocol);
	if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one,
	    sizeof(one)) != 0 || bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 ||
	    listen(fd, 16) != 0 || getsockname(fd, (struct sockaddr *)&ss,
	    &sl) != 0) {
		cli_err("--metrics %s: %s", addr, strerror(errno));
		if (fd >= 0)
			close(fd);
		freeaddrinfo(ai);
		return -1;
	}
	freeaddrinfo(ai);
	*v6 = ss.ss_family == AF_INET6;
	*portp = ntohs(*v6 ? ((struct sockaddr_in6 *)&ss)->sin6_port :
	    ((struct sockaddr_in *)&ss)->sin_port);
	return fd;
}

static enum MHD_Result
reply(struct MHD_Connection *conn, unsigned status, char *body, size_t len,
    const char *type)
{
	struct MHD_Response *r;
	enum MHD_Result ret;

	r = MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE);
	if (r == NULL) {
		free(body);
		return MHD_NO;
	}
	(void)MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
	if (status == MHD_HTTP_METHOD_NOT_ALLOWED)
		(void)MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW,
		    "GET, HEAD");
	ret = MHD_queue_response(conn, status, r);
	MHD_destroy_response(r);
	return ret;
}

/* Every request: GET (or HEAD) /metrics, a pointer at /, else an error. */
static enum MHD_Result
answer(void *cls, struct MHD_Connection *conn, const char *url,
    const char *method, const char *version, const char *upload_data,
    size_t *upload_size, void **req_cls)
{
	struct cli_metrics *m = cls;
	const char *msg = NULL;
	unsigned status = MHD_HTTP_OK;
	char *buf = NULL;
	size_t len = 0;
	FILE *f;

	(void)version;
	(void)upload_data;
	(void)upload_size;
	(void)req_cls;
	if (strcmp(method, MHD_HTTP_METHOD_GET) != 0 &&
	    strcmp(method, MHD_HTTP_METHOD_HEAD) != 0) {
		msg = "rumpblk: only GET /metrics\n";
		status = MHD_HTTP_METHOD_NOT_ALLOWED;
	} else if (strcmp(url, "/metrics") != 0) {
		msg = "rumpblk: the metrics are at /metrics\n";
		status = MHD_HTTP_NOT_FOUND;
	}
	if (msg != NULL)
		return (buf = strdup(msg)) == NULL ? MHD_NO : reply(conn,
		    status, buf, strlen(buf), "text/plain");
	if ((f = open_memstream(&buf, &len)) == NULL)
		return MHD_NO;
	cli_metrics_text(f, m->m_rb);
	if (fclose(f) != 0) {
		free(buf);
		return MHD_NO;
	}
	return reply(conn, MHD_HTTP_OK, buf, len,
	    "text/plain; version=0.0.4; charset=utf-8");
}

int
cli_metrics_start(struct rumpblk *rb, const char *addr,
    struct cli_metrics **mp)
{
	struct cli_metrics *m;
	char url[300], host[256], port[16];
	bool v6 = false;
	int fd, p = 0;

	if ((fd = listen_on(addr, &p, &v6)) < 0)
		return 1;
	if ((m = calloc(1, sizeof(*m))) == NULL) {
		cli_err("--metrics: out of memory");
		close(fd);
		return 1;
	}
	m->m_rb = rb;
	/* One thread polls every connection; a few scrapers at most, each
	 * given 10 s; the handler runs in that thread. */
	m->m_daemon = MHD_start_daemon(MHD_USE_AUTO_INTERNAL_THREAD, 0, NULL,
	    NULL, answer, m, MHD_OPTION_LISTEN_SOCKET, fd,
	    MHD_OPTION_CONNECTION_LIMIT, (unsigned)16,
	    MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)10, MHD_OPTION_END);
	if (m->m_daemon == NULL) {
		cli_err("--metrics %s: libmicrohttpd would not start", addr);
		close(fd);
		free(m);
		return 1;
	}
	(void)split_addr(addr, host, sizeof(host), port, sizeof(port));
	if (strcmp(host, "0.0.0.0") == 0 || strcmp(host, "") == 0)
		snprintf(host, sizeof(host), "127.0.0.1");
	else if (strcmp(host, "::") == 0)
		snprintf(host, sizeof(host), "::1");
	snprintf(url, sizeof(url), "http://%s%s%s:%d/metrics",
	    v6 ? "[" : "", host, v6 ? "]" : "", p);
	fprintf(stderr, "%s: metrics at %s\n", progname, url);
	setenv("metrics_url", url, 1);
	*mp = m;
	return 0;
}

void
cli_metrics_stop(struct cli_metrics *m)
{
	if (m == NULL)
		return;
	/* It closes the listening socket too. */
	MHD_stop_daemon(m->m_daemon);
	free(m);
}
