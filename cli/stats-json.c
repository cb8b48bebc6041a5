/*
 * The statistics as JSON: one writer for every command that shows them
 * (serve --stats, bench --json, the control socket's stats and fault
 * list).
 *
 * The counters are the fields of struct rumpblk_stats under their own
 * names, the latency records as {"count","timed","total_ns","max_ns",
 * "hist"}, and under "faults" the firings by class and by rule.  A
 * command adds its own members beside them (bench: throughput) by
 * writing cli_stats_json_members() inside its own object, so the same
 * counter has the same name and form wherever it appears.  Scripts and
 * tests read these names: a field may be added, none renamed.
 *
 * The latency histograms (issue 17) come as "latency" objects: per op
 * and per fault class, each with its counts, p50/p90/p99/p99.9 and its
 * non-empty buckets by upper bound (cli_hist_json), for the instance,
 * for each unit under "units" (with the gauges `rumpblk ctl stats
 * --watch` shows: in flight, unflushed bytes, connections), and for
 * each front-end connection under "connections".
 *
 * This is not a JSON library: it writes numbers and names that need no
 * escaping, and cli_json_string() (util.c) for strings from outside.
 * Like rumpblk_stats(), a snapshot makes no promise that the counters
 * agree with each other.
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

/* The command's hook (cli_stats_set_extra), under extra_lock. */
static pthread_mutex_t extra_lock = PTHREAD_MUTEX_INITIALIZER;
static void (*extra_fn)(FILE *, void *);
static void *extra_arg;

void
cli_stats_set_extra(void (*fn)(FILE *, void *), void *arg)
{
	pthread_mutex_lock(&extra_lock);
	extra_fn = fn;
	extra_arg = arg;
	pthread_mutex_unlock(&extra_lock);
}

/* The library's name of a class, "?" for one it does not know. */
static const char *
class_name(enum rumpblk_fault_class c)
{
	const char *name = rumpblk_fault_class_name(c);

	return name != NULL ? name : "?";
}

/* "name":{...} of one latency record. */
static void
latency_json(FILE *f, const char *name, const struct rumpblk_latency *l)
{
	int i;

	fprintf(f, "\"%s\":{\"count\":%" PRIu64 ",\"timed\":%" PRIu64
	    ",\"total_ns\":%" PRIu64 ",\"max_ns\":%" PRIu64 ",\"hist\":[",
	    name, l->count, l->timed, l->total_ns, l->max_ns);
	for (i = 0; i < RUMPBLK_LAT_BUCKETS; i++)
		fprintf(f, "%s%" PRIu64, i ? "," : "", l->hist[i]);
	fputs("]}", f);
}

/* {"class":N,...}: firings by class. */
static void
by_class_json(FILE *f, const struct rumpblk_stats *st)
{
	int c;

	fputc('{', f);
	for (c = 0; c < RUMPBLK_FAULT_NCLASS; c++)
		fprintf(f, "%s\"%s\":%" PRIu64, c ? "," : "",
		    class_name((enum rumpblk_fault_class)c),
		    st->faults_class[c]);
	fputc('}', f);
}

void
cli_fault_rule_json(FILE *f, const struct rumpblk_fault_info *fi)
{
	fprintf(f, "{\"id\":");
	cli_json_string(f, fi->fi_id);
	fprintf(f, ",\"rule\":");
	cli_json_string(f, fi->fi_text);
	fprintf(f, ",\"class\":\"%s\",\"matches\":%" PRIu64 ",\"firings\":%"
	    PRIu64 ",\"seed\":%" PRIu64 "}", class_name(fi->fi_class),
	    fi->fi_matches, fi->fi_firings, fi->fi_seed);
}

/* {"injected":N,"by_class":{...},"rules":[...]} */
static void
faults_json(FILE *f, struct rumpblk *rb, const struct rumpblk_stats *st)
{
	struct rumpblk_fault_info *info = NULL;
	size_t n = 0, i;

	fprintf(f, "{\"injected\":%" PRIu64 ",\"by_class\":",
	    st->faults_injected);
	by_class_json(f, st);
	fprintf(f, ",\"rules\":[");
	/* The list may grow between the two calls: take what fits. */
	if (rumpblk_fault_list(rb, NULL, 0, &n) == 0 && n > 0 &&
	    (info = calloc(n, sizeof(*info))) != NULL &&
	    rumpblk_fault_list(rb, info, n, &n) == 0) {
		for (i = 0; i < n; i++) {
			if (i > 0)
				fputc(',', f);
			cli_fault_rule_json(f, &info[i]);
		}
	}
	free(info);
	fprintf(f, "]}");
}

void
cli_powercut_json(FILE *f, const struct rumpblk_powercut *pc)
{
	const char *m = rumpblk_pcmodel_name(pc->pc_model);

	fprintf(f, "{\"model\":\"%s\",\"seed\":%" PRIu64 ",\"atom\":%"
	    PRIu64 ",\"unflushed\":%" PRIu64 ",\"persisted\":%" PRIu64
	    ",\"lost\":%" PRIu64 ",\"torn\":%" PRIu64 ",\"bytes_lost\":%"
	    PRIu64 "}", m != NULL ? m : "?", pc->pc_seed, pc->pc_atom,
	    pc->pc_unflushed, pc->pc_persisted, pc->pc_lost, pc->pc_torn,
	    pc->pc_bytes_lost);
}

/* A unit's write cache: its flush audit (rumpblk_cache_stats). */
static void
cache_json(FILE *f, int unit, const struct rumpblk_cache_stats *cs)
{
#define U(n)	fprintf(f, "\"" #n "\":%" PRIu64 ",", cs->cs_##n)
	fprintf(f, "{\"unit\":%d,", unit);
	U(size); U(dirty_bytes); U(dirty_max); U(dirty_writes);
	U(bytes_written); U(bytes_durable); U(flushes); U(fua); U(destaged);
	U(power_cuts);
#undef U
	latency_json(f, "durable_lat", &cs->cs_durable_lat);
	fputc('}', f);
}

/*
 * The flush audit of the first unit with a write cache (unit 0 of
 * rumpblk serve), or null; every unit's is in "units".
 */
static void
write_cache_json(FILE *f, struct rumpblk *rb)
{
	struct rumpblk_cache_stats cs;
	int unit;

	for (unit = 0; unit < 64; unit++)
		if (rumpblk_cache_stats(rb, unit, &cs) == 0)
			break;
	if (unit == 64)
		fputs("null", f);
	else
		cache_json(f, unit, &cs);
}

/* The write log of the first unit with one, or null. */
static void
write_log_json(FILE *f, struct rumpblk *rb)
{
	struct rumpblk_log_stats ls;
	int unit;

	for (unit = 0; unit < 64; unit++)
		if (rumpblk_log_stats(rb, unit, &ls) == 0)
			break;
	if (unit == 64) {
		fputs("null", f);
		return;
	}
#define U(n)	fprintf(f, "\"" #n "\":%" PRIu64 ",", ls.ls_##n)
	fprintf(f, "{\"unit\":%d,", unit);
	U(entries); U(writes); U(bytes); U(trims); U(zeroes); U(flushes);
	U(fua); U(marks); U(file_bytes);
#undef U
	fputs("\"error\":", f);
	if (ls.ls_error != 0)
		cli_json_string(f, strerror(ls.ls_error));
	else
		fputs("null", f);
	fputc('}', f);
}

void
cli_stats_json_members(FILE *f, struct rumpblk *rb,
    const struct rumpblk_stats *st)
{
#define U(n)	fprintf(f, "\"" #n "\":%" PRIu64 ",", st->n)
	U(io_total); U(io_async); U(bytes_read); U(bytes_written);
	U(bytes_written_async); U(win_hits); U(win_busy); U(win_misses);
	U(faults_injected); U(io_errors); U(flushes); U(trims); U(zeroes);
	U(extent_queries); U(bytes_trimmed); U(bytes_zeroed); U(bytes_lent);
#undef U
	fputs("\"faults_class\":", f);
	by_class_json(f, st);
	fputc(',', f);
	latency_json(f, "lat_read", &st->lat_read);
	fputc(',', f);
	latency_json(f, "lat_write", &st->lat_write);
	fputc(',', f);
	latency_json(f, "lat_flush", &st->lat_flush);
	fputs(",\"faults\":", f);
	faults_json(f, rb, st);
	fputs(",\"write_cache\":", f);
	write_cache_json(f, rb);
	fputs(",\"write_log\":", f);
	write_log_json(f, rb);
}

const int cli_ops[CLI_NOPS] = {
	RUMPBLK_B_READ, RUMPBLK_B_WRITE, RUMPBLK_B_FLUSH, RUMPBLK_B_TRIM,
	RUMPBLK_B_ZERO, RUMPBLK_B_EXTENTS,
};

const char *
cli_op_name(int op)
{
	switch (op) {
	case RUMPBLK_B_READ:	return "read";
	case RUMPBLK_B_WRITE:	return "write";
	case RUMPBLK_B_FLUSH:	return "flush";
	case RUMPBLK_B_TRIM:	return "trim";
	case RUMPBLK_B_ZERO:	return "zero";
	case RUMPBLK_B_EXTENTS:	return "extents";
	default:		return "?";
	}
}

void
cli_hist_json(FILE *f, const struct rumpblk_hist *h)
{
	bool first = true;
	unsigned i;

	fprintf(f, "{\"count\":%" PRIu64 ",\"timed\":%" PRIu64 ",\"sum_ns\":%"
	    PRIu64 ",\"max_ns\":%" PRIu64 ",\"p50_ns\":%" PRIu64
	    ",\"p90_ns\":%" PRIu64 ",\"p99_ns\":%" PRIu64 ",\"p999_ns\":%"
	    PRIu64 ",\"buckets\":[", h->h_count, h->h_timed, h->h_sum_ns,
	    h->h_max_ns, rumpblk_hist_quantile(h, 0.5),
	    rumpblk_hist_quantile(h, 0.9), rumpblk_hist_quantile(h, 0.99),
	    rumpblk_hist_quantile(h, 0.999));
	for (i = 0; i < RUMPBLK_HIST_BUCKETS; i++) {
		if (h->h_buckets[i] == 0)
			continue;
		if (i == RUMPBLK_HIST_BUCKETS - 1)
			fprintf(f, "%s[null,%" PRIu64 "]", first ? "" : ",",
			    h->h_buckets[i]);
		else
			fprintf(f, "%s[%" PRIu64 ",%" PRIu64 "]", first ? "" :
			    ",", rumpblk_hist_bound(i), h->h_buckets[i]);
		first = false;
	}
	fputs("]}", f);
}

/* "ops":{...},"faults":{...} of a unit or the instance. */
static void
latency_members(FILE *f, struct rumpblk *rb, int unit)
{
	struct rumpblk_hist h;
	bool first = true;
	int i, c;

	fputs("\"ops\":{", f);
	for (i = 0; i < CLI_NOPS; i++) {
		(void)rumpblk_hist_op(rb, unit, cli_ops[i], &h);
		fprintf(f, "%s\"%s\":", i ? "," : "", cli_op_name(cli_ops[i]));
		cli_hist_json(f, &h);
	}
	/* The classes that fired (a histogram per class, all timed). */
	fputs("},\"faults\":{", f);
	for (c = 0; c < RUMPBLK_FAULT_NCLASS; c++) {
		if (rumpblk_hist_fault(rb, unit, (enum rumpblk_fault_class)c,
		    &h) != 0 || h.h_count == 0)
			continue;
		fprintf(f, "%s\"%s\":", first ? "" : ",",
		    class_name((enum rumpblk_fault_class)c));
		cli_hist_json(f, &h);
		first = false;
	}
	fputc('}', f);
}

void
cli_stats_latency_json(FILE *f, struct rumpblk *rb, int unit)
{
	fprintf(f, "\"latency\":{\"layout\":{\"buckets\":%d,\"sub_buckets\":%d,"
	    "\"first_le_ns\":%" PRIu64 ",\"last_le_ns\":%" PRIu64 "},",
	    RUMPBLK_HIST_BUCKETS, RUMPBLK_HIST_SUB, rumpblk_hist_bound(0),
	    rumpblk_hist_bound(RUMPBLK_HIST_BUCKETS - 2));
	latency_members(f, rb, unit);
	fputc('}', f);
}

/* The connection records of rb (their number), or NULL (0). */
static struct rumpblk_conn_info *
conn_list(struct rumpblk *rb, size_t *np)
{
	struct rumpblk_conn_info *ci = NULL;
	size_t n = 0;

	/* The list may grow between the two calls: take what fits. */
	if (rumpblk_conn_list(rb, NULL, 0, &n) == 0 && n > 0 &&
	    (ci = calloc(n, sizeof(*ci))) != NULL &&
	    rumpblk_conn_list(rb, ci, n, &n) == 0) {
		*np = n;
		return ci;
	}
	free(ci);
	*np = 0;
	return NULL;
}

/*
 * "units":[{...}]: each live unit's counters that the watch view shows,
 * its gauges and its histograms.
 */
static void
units_json(FILE *f, struct rumpblk *rb, const struct rumpblk_conn_info *ci,
    size_t nci)
{
	struct rumpblk_config cfg;
	struct rumpblk_unitinfo ui;
	struct rumpblk_cache_stats cs;
	struct rumpblk_stats st;
	uint64_t inflight;
	unsigned unit, nconn;
	bool first = true;
	size_t i;

	rumpblk_get_config(rb, &cfg);
	fputs("\"units\":[", f);
	for (unit = 0; unit < cfg.max_units; unit++) {
		if (rumpblk_unitinfo(rb, (int)unit, &ui) != 0)
			continue;
		rumpblk_stats(rb, (int)unit, &st);
		(void)rumpblk_inflight(rb, (int)unit, &inflight);
		for (nconn = 0, i = 0; i < nci; i++)
			if (ci[i].ci_unit == (int)unit)
				nconn++;
		fprintf(f, "%s{\"unit\":%u,\"size\":%" PRIu64 ",\"inflight\":%"
		    PRIu64 ",\"connections\":%u,", first ? "" : ",", unit,
		    ui.ui_size, inflight, nconn);
#define U(n)	fprintf(f, "\"" #n "\":%" PRIu64 ",", st.n)
		U(io_total); U(io_errors); U(bytes_read); U(bytes_written);
		U(bytes_trimmed); U(bytes_zeroed); U(bytes_lent);
		U(faults_injected);
#undef U
		fputs("\"faults_class\":", f);
		by_class_json(f, &st);
		if (rumpblk_cache_stats(rb, (int)unit, &cs) == 0) {
			fprintf(f, ",\"unflushed\":%" PRIu64 ",\"cache_size\":%"
			    PRIu64 ",\"write_cache\":", cs.cs_dirty_bytes,
			    cs.cs_size);
			cache_json(f, (int)unit, &cs);
		} else
			fputs(",\"unflushed\":null,\"cache_size\":null,"
			    "\"write_cache\":null", f);
		fputs(",\"latency\":{", f);
		latency_members(f, rb, (int)unit);
		fputs("}}", f);
		first = false;
	}
	fputc(']', f);
}

/* "connections":[...],"connections_ended":{...} */
static void
connections_json(FILE *f, struct rumpblk *rb,
    const struct rumpblk_conn_info *ci, size_t nci)
{
	struct rumpblk_hist h;
	size_t i;
	int k;

	fputs("\"connections\":[", f);
	for (i = 0; i < nci; i++) {
		fprintf(f, "%s{\"id\":%d,\"unit\":%d,\"label\":", i ? "," : "",
		    ci[i].ci_id, ci[i].ci_unit);
		cli_json_string(f, ci[i].ci_label);
		fputs(",\"latency\":{", f);
		for (k = 0; k < CLI_NOPS; k++) {
			(void)rumpblk_conn_hist(rb, ci[i].ci_id, cli_ops[k],
			    &h);
			fprintf(f, "%s\"%s\":", k ? "," : "",
			    cli_op_name(cli_ops[k]));
			cli_hist_json(f, &h);
		}
		fputs("}}", f);
	}
	fputs("],\"connections_ended\":{", f);
	for (k = 0; k < CLI_NOPS; k++) {
		(void)rumpblk_conn_hist(rb, RUMPBLK_CONN_ENDED, cli_ops[k], &h);
		fprintf(f, "%s\"%s\":", k ? "," : "", cli_op_name(cli_ops[k]));
		cli_hist_json(f, &h);
	}
	fputc('}', f);
}

void
cli_stats_json(FILE *f, struct rumpblk *rb)
{
	struct rumpblk_conn_info *ci;
	struct rumpblk_stats st;
	size_t nci;

	rumpblk_stats(rb, -1, &st);
	fputc('{', f);
	cli_stats_json_members(f, rb, &st);
	fputc(',', f);
	cli_stats_latency_json(f, rb, -1);
	ci = conn_list(rb, &nci);
	fputc(',', f);
	units_json(f, rb, ci, nci);
	fputc(',', f);
	connections_json(f, rb, ci, nci);
	free(ci);
	pthread_mutex_lock(&extra_lock);
	if (extra_fn != NULL) {
		fputs(",\"nbd\":", f);
		extra_fn(f, extra_arg);
	}
	pthread_mutex_unlock(&extra_lock);
	fputc('}', f);
}
