/*
 * serve --metrics ADDR:PORT: the counters, gauges and latency histograms
 * of an instance over HTTP, at /metrics, in the Prometheus text
 * exposition format (cli/metrics.c).
 */
#ifndef RUMPBLK_CLI_METRICS_H
#define RUMPBLK_CLI_METRICS_H

#include <stdio.h>

#include <rumpblk/rumpblk.h>

struct cli_metrics;

/*
 * Listen on addr ("PORT", ":PORT", "HOST:PORT", "[V6]:PORT"; no host:
 * 127.0.0.1; PORT 0 picks a free port) and serve rb's metrics from a
 * thread of libmicrohttpd's until cli_metrics_stop.  Says where on
 * stderr ("rumpblk: metrics at http://HOST:PORT/metrics") and puts that
 * URL in the environment as $metrics_url (for serve --run's command).
 * 0, or 1 with a one-line message naming --metrics and addr.
 */
int	cli_metrics_start(struct rumpblk *rb, const char *addr,
	    struct cli_metrics **mp);
/* Stop serving and free; NULL is a no-op.  Before the instance goes. */
void	cli_metrics_stop(struct cli_metrics *);

/* The exposition of rb, as /metrics answers it. */
void	cli_metrics_text(FILE *, struct rumpblk *rb);

#endif
