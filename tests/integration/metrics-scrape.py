#!/usr/bin/python3
"""metrics-scrape.py URL NBD_URI READS WRITES FLUSHES: test-metrics's client.

A libnbd client makes a known number of reads, writes and flushes (in
that order, 4 KiB each, on its own thread) while this thread scrapes the
Prometheus endpoint URL again and again and parses every answer with
prometheus_client's text parser.  Checked in every scrape:

  - every histogram is cumulative: its buckets do not decrease as le
    grows, and its +Inf bucket equals its _count;
  - nothing a counter or a histogram holds went down since the scrape
    before (for each series in both scrapes);

and once the client is done, that the unit's request counts, its
histograms' counts, and the client's own connection histogram equal the
requests made; then, once the client has closed, that its connection is
gone and its requests are in the ended-connections histograms.  Exits 0,
or 1 naming what failed.  Every loop is bounded in count and time.
"""
import sys
import threading
import time
import urllib.request

import nbd
from prometheus_client.parser import text_string_to_metric_families

url, uri = sys.argv[1], sys.argv[2]
want = {"read": int(sys.argv[3]), "write": int(sys.argv[4]),
        "flush": int(sys.argv[5])}


def fail(msg):
    print("metrics-scrape: FAIL: " + msg, file=sys.stderr)
    sys.exit(1)


def scrape():
    """{(sample name, sorted labels): value}, and the families."""
    with urllib.request.urlopen(url, timeout=30) as r:
        if r.status != 200:
            fail("GET %s: HTTP %d" % (url, r.status))
        ctype = r.headers.get("Content-Type", "")
        if not ctype.startswith("text/plain; version=0.0.4"):
            fail("Content-Type %r" % ctype)
        text = r.read().decode("utf-8")
    fams = list(text_string_to_metric_families(text))
    samples = {}
    for fam in fams:
        if not fam.name.startswith("rumpblk_"):
            fail("metric family %s is not rumpblk_..." % fam.name)
        for s in fam.samples:
            key = (s.name, tuple(sorted(s.labels.items())))
            if key in samples:
                fail("sample %r twice" % (key,))
            samples[key] = (fam.type, s.value)
    check_histograms(fams)
    return samples


def check_histograms(fams):
    for fam in fams:
        if fam.type != "histogram":
            continue
        series = {}
        for s in fam.samples:
            labels = dict(s.labels)
            le = labels.pop("le", None)
            key = tuple(sorted(labels.items()))
            d = series.setdefault(key, {"buckets": [], "count": None})
            if s.name.endswith("_bucket"):
                d["buckets"].append((float(le), s.value))
            elif s.name.endswith("_count"):
                d["count"] = s.value
        if not series:
            continue
        for key, d in series.items():
            b = d["buckets"]
            if not b or b[-1][0] != float("inf"):
                fail("%s%s: no +Inf bucket" % (fam.name, key))
            for (le0, c0), (le1, c1) in zip(b, b[1:]):
                if not le1 > le0:
                    fail("%s%s: le not increasing: %s, %s" %
                         (fam.name, key, le0, le1))
                if c1 < c0:
                    fail("%s%s: bucket le=%s has %s < %s of le=%s" %
                         (fam.name, key, le1, c1, c0, le0))
            if b[-1][1] != d["count"]:
                fail("%s%s: +Inf bucket %s != _count %s" %
                     (fam.name, key, b[-1][1], d["count"]))


def check_grew(prev, cur):
    for key, (typ, v) in cur.items():
        if typ not in ("counter", "histogram") or key not in prev:
            continue
        if v < prev[key][1]:
            fail("%s%s went down: %s, then %s" % (key[0], key[1],
                                                   prev[key][1], v))


def value(samples, name, **labels):
    key = (name, tuple(sorted(labels.items())))
    if key not in samples:
        fail("no sample %s%s" % key)
    return samples[key][1]


h = nbd.NBD()
h.connect_uri(uri)
done = threading.Event()
errors = []


def workload():
    try:
        buf = b"m" * 4096
        for i in range(want["read"]):
            h.pread(4096, (i % 256) * 4096)
        for i in range(want["write"]):
            h.pwrite(buf, (i % 256) * 4096)
        for i in range(want["flush"]):
            h.flush()
    except Exception as e:          # noqa: BLE001 - reported below
        errors.append(e)
    done.set()


t = threading.Thread(target=workload)
t.start()
prev = scrape()
nscrapes = 1
deadline = time.monotonic() + 120
while not done.is_set() and nscrapes < 2000:
    if time.monotonic() > deadline:
        fail("the workload did not finish within 120 s")
    cur = scrape()
    check_grew(prev, cur)
    prev = cur
    nscrapes += 1
t.join(60)
if errors:
    fail("workload: %s" % errors[0])

cur = scrape()
check_grew(prev, cur)
conns = {dict(k[1])["conn"] for k in cur
         if k[0] == "rumpblk_connection_request_duration_seconds_count"}
if len(conns) != 1:
    fail("expected one open connection, found %s" % conns)
conn = conns.pop()
client = [dict(k[1])["client"] for k in cur
          if k[0] == "rumpblk_connection_request_duration_seconds_count"][0]
if value(cur, "rumpblk_connections", unit="0") != 1:
    fail("rumpblk_connections is not 1")
for op, n in want.items():
    got = value(cur, "rumpblk_requests_total", unit="0", op=op)
    if got != n:
        fail("rumpblk_requests_total{op=%s} = %s, made %d" % (op, got, n))
    # Every request of an NBD client is timed: the histogram counts all.
    got = value(cur, "rumpblk_request_duration_seconds_count", unit="0",
                op=op)
    if got != n:
        fail("rumpblk_request_duration_seconds_count{op=%s} = %s, made %d"
             % (op, got, n))
    got = value(cur, "rumpblk_request_duration_seconds_bucket", unit="0",
                op=op, le="+Inf")
    if got != n:
        fail("rumpblk_request_duration_seconds_bucket{op=%s,le=+Inf} = %s,"
             " made %d" % (op, got, n))
    got = value(cur, "rumpblk_connection_request_duration_seconds_count",
                unit="0", conn=conn, client=client, op=op)
    if got != n:
        fail("the connection's %s histogram counts %s, made %d"
             % (op, got, n))
if value(cur, "rumpblk_bytes_total", unit="0", op="read") != \
        4096 * want["read"]:
    fail("rumpblk_bytes_total{op=read}")
if value(cur, "rumpblk_bytes_total", unit="0", op="write") != \
        4096 * want["write"]:
    fail("rumpblk_bytes_total{op=write}")
if value(cur, "rumpblk_inflight_requests", unit="0") != 0:
    fail("requests in flight with the client idle")

# The client leaves: its requests move to the ended connections' sum.
h.shutdown()
del h
for i in range(300):
    last = scrape()
    check_grew(cur, last)
    if value(last, "rumpblk_connections", unit="0") == 0:
        break
    time.sleep(0.1)
else:
    fail("the connection is still counted 30 s after the client left")
for op, n in want.items():
    got = value(last, "rumpblk_ended_connections_request_duration_seconds_"
                "count", op=op)
    if got != n:
        fail("ended connections' %s histogram counts %s, made %d"
             % (op, got, n))
if any(k[0].startswith("rumpblk_connection_") for k in last):
    fail("a closed connection's histograms are still shown")
print("metrics-scrape: %d scrapes during the workload; counts match %s"
      % (nscrapes, want))
