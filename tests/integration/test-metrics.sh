#!/bin/bash
# test-metrics: serve --metrics, the Prometheus endpoint (issue 17).
#
#   - a libnbd client makes a known number of reads, writes and flushes
#     while metrics-scrape.py scrapes /metrics over and over and parses
#     each answer with prometheus_client's text parser: counters only
#     grow, histograms are cumulative with +Inf == _count, and the
#     counts (the unit's, its histograms', the connection's, then the
#     ended connections') equal the requests made;
#   - a path other than /metrics is a 404; the endpoint is on loopback
#     when ADDR is left out;
#   - a bad ADDR:PORT and a port in use are each one line naming
#     --metrics, exit 1, before anything is served;
#   - the same histograms are in the JSON of --stats (written at exit)
#     and of bench --json, with the same counts (and bench --lat-compare,
#     the cost measurement of bench/inproc.sh, times what it says).
#
# It runs once (the backend plays no part in the exposition).
. "$RUMPBLK_SRCDIR/tests/functions.sh"
. "$RUMPBLK_SRCDIR/tests/integration/nbd-functions.sh"

py=$RUMPBLK_SRCDIR/tests/integration/metrics-scrape.py
img=$tmp/disk.img
truncate -s 16M "$img"

# A server on a Unix socket, metrics on a port of its choosing (PORT
# only: 127.0.0.1).
start_nbd "$tmp/pid" "$tmp/sock" --metrics 0 --stats "$tmp/stats.json" \
    "$img" 2>"$tmp/err"
spid=$(cat "$tmp/pid")
url=$(sed -n 's/^rumpblk: metrics at \(http:[^ ]*\)$/\1/p' "$tmp/err")
case $url in
http://127.0.0.1:[0-9]*/metrics) ;;
*) fail "no 'metrics at http://127.0.0.1:PORT/metrics' line: $(cat "$tmp/err")" ;;
esac
port=${url#http://127.0.0.1:}
port=${port%/metrics}

timeout -k 5 300 /usr/bin/python3 "$py" "$url" "$(nbd_uri "$tmp/sock")" \
    300 200 20 || fail "metrics-scrape.py failed (above)"

/usr/bin/python3 - "$url" <<'PY' || fail "/ or /nope is not a 404"
import sys, urllib.request, urllib.error
base = sys.argv[1][:-len("/metrics")]
for path in ("/", "/nope"):
    try:
        urllib.request.urlopen(base + path, timeout=30)
    except urllib.error.HTTPError as e:
        if e.code != 404:
            sys.exit("%s: %d" % (path, e.code))
    else:
        sys.exit(path + ": 200")
PY

# The port is taken: a second server says so in one line.
img2=$tmp/disk2.img
truncate -s 1M "$img2"
expect_one_error 1 "^rumpblk: --metrics 127\.0\.0\.1:$port: Address already in use$" \
    serve --socket "$tmp/sock2" --metrics "127.0.0.1:$port" "$img2"
for bad in nonsense 127.0.0.1:99999 127.0.0.1: ::1:80 '[::1]'; do
	expect_one_error 1 "^rumpblk: --metrics: '.*' is not ADDR:PORT" \
	    serve --socket "$tmp/sock2" --metrics "$bad" "$img2"
done
[ -e "$tmp/sock2" ] && fail "a refused server left its socket"

# --stats at exit: the histograms of the 300 reads, 200 writes and 20
# flushes, every one timed, the connection ended.
stop_nbd "$spid" serve || fail "the server exited non-zero"
jq -e '[.latency.ops.read, .latency.ops.write, .latency.ops.flush] |
    map([.count, .timed, ([.buckets[][1]] | add)]) ==
    [[300, 300, 300], [200, 200, 200], [20, 20, 20]]' "$tmp/stats.json" \
    >/dev/null || fail "--stats histograms: $(jq -c .latency "$tmp/stats.json")"
jq -e '.connections == [] and .connections_ended.read.count == 300 and
    .units[0].latency.ops.write.count == 200 and
    .latency.ops.read.p50_ns <= .latency.ops.read.p99_ns and
    .latency.ops.read.p99_ns <= .latency.ops.read.max_ns' \
    "$tmp/stats.json" >/dev/null || fail "--stats: $(cat "$tmp/stats.json")"

# bench --json: its unit's histograms, every request timed with
# --lat-sample 1.
timeout -k 5 120 "$RUMPBLK" bench --json --seconds 0.2 --lat-sample 1 \
    "$img" >"$tmp/bench.json" || fail "bench --json failed"
jq -e '.latency.ops.read.count >= .ops and .ops > 0 and
    .latency.ops.read.timed == .latency.ops.read.count and
    ([.latency.ops.read.buckets[][1]] | add) == .latency.ops.read.timed and
    .lat_timed == .latency.ops.read.timed and .lat_p90_us > 0 and
    .latency.layout.buckets == 242' "$tmp/bench.json" >/dev/null ||
    fail "bench --json histograms: $(cat "$tmp/bench.json")"
# bench --lat-compare (bench/inproc.sh's histogram rows): two instances
# in turn, the second timing every request with N = 1, so its read
# histogram holds exactly its share of the requests.
timeout -k 5 120 "$RUMPBLK" bench --json --seconds 0.2 --lat-compare 1 \
    "$img" >"$tmp/cmp.json" || fail "bench --lat-compare failed"
jq -e '.lat_compare.off.ops > 0 and .lat_compare.on.ops > 0 and
    .latency.ops.read.timed == .lat_compare.on.ops and
    .latency.ops.read.count == .lat_compare.on.ops and
    .lat_compare.ratio > 0' "$tmp/cmp.json" >/dev/null ||
    fail "bench --lat-compare: $(cat "$tmp/cmp.json")"
expect_one_error 2 "^rumpblk: --lat-compare: needs --qd 1" \
    bench --lat-compare 64 --qd 2 "$img"
echo "test-metrics: ok"
