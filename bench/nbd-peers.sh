#!/bin/bash
# nbd-peers.sh: rumpblk serve against its peers, nbdkit's file plugin and
# qemu-nbd --aio=io_uring, with fio's nbd engine (ioengine=nbd) over a
# Unix socket, on the same page-cached image, in the same run.
#
# The ceiling: "nbdkit null", which does no storage work at all (reads
# are zeroes, writes are dropped), run like the others.  It is not a
# peer: what it reaches is the protocol's and the client's limit on this
# machine, and every profile prints rumpblk's ratio to it.
#
# rumpblk-copy is rumpblk serve --copy-reads: every READ copied into a
# buffer before it is sent, as before replies went out from the image's
# pages (issue 15); it is not a peer either, and the goals of issue 15
# print rumpblk's figures beside it (the same run, the change's effect).
#
# One server runs at a time.  A round starts each server in turn (the
# order rotates from round to round), runs every profile against it and
# stops it; BENCH_ROUNDS rounds (at least 3) are interleaved that way and
# the median of each figure is reported, because identical runs vary by
# about 10% on a shared machine.  For every run the server's CPU time
# (utime + stime of all its threads, /proc/PID/stat) is read before and
# after, giving CPU per request and per GiB moved.
#
# Profiles (fio):
#   randread-4k-qd1    4 KiB random reads, one job, iodepth 1
#   randread-4k-qd32   4 KiB random reads, 2 jobs x iodepth 16
#   randwrite-4k-qd32  4 KiB random writes, 2 jobs x iodepth 16
#   seqread-1m         1 MiB sequential reads, one job, iodepth 8
#   seqread-1m-qd1     1 MiB sequential reads, one job, iodepth 1
#   seqwrite-1m        1 MiB sequential writes, one job, iodepth 8
# The QD32 profiles use two fio jobs (two connections) because on 2 cores
# one fio nbd job saturates a core before a fast server does: with one
# job the client, not the server, would be measured.
#
# Environment: BENCH_SECONDS (5, per run), BENCH_ROUNDS (3),
# BENCH_SIZE (512M), BENCH_SERVERS ("rumpblk rumpblk-copy nbdkit
# qemu-nbd ceiling"),
# BENCH_PROFILES (all), BENCH_DIR (scratch, default /var/tmp),
# RUMPBLK (default build/cli/rumpblk), RUMPBLK_ARGS (extra serve options,
# e.g. "--backend pio").  Output: a table per profile with throughput
# ratios against the best peer and CPU ratios against nbdkit; raw
# results in $BENCH_DIR/.../results.tsv (kept with BENCH_KEEP=1).
set -u
src=$(cd "$(dirname "$0")/.." && pwd)
secs=${BENCH_SECONDS:-5}
rounds=${BENCH_ROUNDS:-3}
size=${BENCH_SIZE:-512M}
servers=${BENCH_SERVERS:-rumpblk rumpblk-copy nbdkit qemu-nbd ceiling}
all_profiles="randread-4k-qd1 randread-4k-qd32 randwrite-4k-qd32"
all_profiles="$all_profiles seqread-1m seqread-1m-qd1 seqwrite-1m"
profiles=${BENCH_PROFILES:-$all_profiles}
RUMPBLK=${RUMPBLK:-$src/build/cli/rumpblk}
hz=$(getconf CLK_TCK)

die() {
	echo "nbd-peers: $*" >&2
	exit 1
}
for t in fio nbdkit qemu-nbd python3; do
	command -v $t >/dev/null || die "$t is needed (debian-packages.txt)"
done
case " $servers " in *" rumpblk "* | *" rumpblk-copy "*)
	[ -x "$RUMPBLK" ] || die "$RUMPBLK is not built (make build)" ;;
esac
fio --enghelp=nbd >/dev/null 2>&1 || die "this fio has no nbd engine"
[ "$rounds" -ge 3 ] || die "BENCH_ROUNDS must be at least 3 (medians)"

work=$(mktemp -d "${BENCH_DIR:-/var/tmp}/rumpblk-bench.XXXXXX")
srvpid=
cleanup() {
	[ -n "$srvpid" ] && kill "$srvpid" 2>/dev/null && wait "$srvpid" 2>/dev/null
	if [ "${BENCH_KEEP:-0}" = 1 ]; then
		echo "nbd-peers: results kept in $work"
	else
		rm -rf "$work"
	fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

img=$work/bench.img
sock=$work/s
bytes=$(numfmt --from=iec "$size") || die "bad BENCH_SIZE $size"
# Real data (no holes), written now so that it is in the page cache.
. "$src/bench/lib.sh"
random_image "$img" "$bytes" || die "cannot write $img"

cputicks() {
	awk '{ print $14 + $15 }' "/proc/$1/stat"
}

# fio_args PROFILE: the fio options of a profile.
fio_args() {
	case $1 in
	randread-4k-qd1) echo "--rw=randread --bs=4k --iodepth=1 --numjobs=1" ;;
	randread-4k-qd32) echo "--rw=randread --bs=4k --iodepth=16 --numjobs=2" ;;
	randwrite-4k-qd32) echo "--rw=randwrite --bs=4k --iodepth=16 --numjobs=2" ;;
	seqread-1m) echo "--rw=read --bs=1m --iodepth=8 --numjobs=1" ;;
	seqread-1m-qd1) echo "--rw=read --bs=1m --iodepth=1 --numjobs=1" ;;
	seqwrite-1m) echo "--rw=write --bs=1m --iodepth=8 --numjobs=1" ;;
	*) die "unknown profile $1" ;;
	esac
}

results=$work/results.tsv
printf 'round\tserver\tprofile\tops\tbytes\tseconds\tcpu_s\n' >"$results"
set -- $servers
nserv=$#
echo "nbd-peers: image $size, $rounds rounds x ${secs}s per run," \
    "servers: $servers"
echo "nbd-peers: $(fio --version), $(nbdkit --version 2>&1 | head -1)," \
    "$(qemu-nbd --version | head -1), rumpblk serve ${RUMPBLK_ARGS:-(defaults)}"
for ((r = 1; r <= rounds; r++)); do
	# Rotate the server order every round.
	order=()
	for ((k = 0; k < nserv; k++)); do
		idx=$(( (k + r - 1) % nserv + 1 ))
		order+=("${!idx}")
	done
	for s in "${order[@]}"; do
		nbd_start "$s" "$work" "$img" "$bytes"
		for p in $profiles; do
			c0=$(cputicks "$spid") || die "$s died"
			# shellcheck disable=SC2046
			fio --name="$p" --ioengine=nbd \
			    --uri="nbd+unix:///?socket=$sock" \
			    $(fio_args "$p") --size="$bytes" --time_based \
			    --runtime="$secs" --group_reporting \
			    --output-format=json --output="$work/fio.json" \
			    >"$work/fio.err" 2>&1 ||
			    die "fio $p against $s: $(cat "$work/fio.err")"
			c1=$(cputicks "$spid") || die "$s died during $p"
			python3 - "$work/fio.json" "$r" "$s" "$p" \
			    "$(( c1 - c0 ))" "$hz" >>"$results" <<'PY'
import json, sys
f, r, s, p, ticks, hz = sys.argv[1:]
j = json.load(open(f))["jobs"][0]
ops = byts = 0
iops = bw = 0.0
for d in ("read", "write"):
    ops += j[d]["total_ios"]
    byts += j[d]["io_bytes"]
    iops += j[d]["iops"]
    bw += j[d]["bw_bytes"]
# fio's aggregate rates are right for several jobs; job_runtime is their
# sum, so the wall time of the run is derived from the rate instead.
secs = byts / bw if bw else 0.0
print("%s\t%s\t%s\t%d\t%d\t%.3f\t%.3f" % (r, s, p, ops, byts, secs,
      int(ticks) / int(hz)))
PY
			printf '.'
		done
		nbd_stop
	done
done
echo

python3 - "$results" "$profiles" <<'PY'
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1]), delimiter="\t"))
profiles = sys.argv[2].split()
servers = []
for r in rows:
    if r["server"] not in servers:
        servers.append(r["server"])

def med(p, s, fn):
    v = [fn(r) for r in rows if r["profile"] == p and r["server"] == s]
    return statistics.median(v) if v else float("nan")

def iops(r):
    return int(r["ops"]) / float(r["seconds"])

def mibs(r):
    return int(r["bytes"]) / float(r["seconds"]) / 2**20

def cpu_req(r):  # microseconds of server CPU per request
    return float(r["cpu_s"]) * 1e6 / max(int(r["ops"]), 1)

def cpu_gib(r):  # seconds of server CPU per GiB moved
    return float(r["cpu_s"]) / max(int(r["bytes"]) / 2**30, 1e-9)

peers = [s for s in servers if s not in ("rumpblk", "rumpblk-copy",
                                         "ceiling")]
print("medians over %d rounds; throughput ratio vs the best peer (%s), "
      "CPU ratios vs nbdkit" % (len({r["round"] for r in rows}),
                                "/".join(peers)))
hdr = "%-18s %-12s %10s %9s %8s %8s %10s %9s %8s %8s" % (
    "profile", "server", "IOPS", "MiB/s", "vs best", "vs ceil", "CPU us/req",
    "CPU s/GiB", "req/nbdk", "GiB/nbdk")
print(hdr)
print("-" * len(hdr))
for p in profiles:
    best = max((med(p, s, mibs) for s in peers), default=float("nan"))
    nk_req = med(p, "nbdkit", cpu_req) if "nbdkit" in servers else None
    nk_gib = med(p, "nbdkit", cpu_gib) if "nbdkit" in servers else None
    ceil = med(p, "ceiling", mibs) if "ceiling" in servers else None
    for s in servers:
        m = med(p, s, mibs)
        cr, cg = med(p, s, cpu_req), med(p, s, cpu_gib)
        print("%-18s %-12s %10.0f %9.1f %8s %8s %10.1f %9.2f %8s %8s" % (
            p, s, med(p, s, iops), m,
            "%.2fx" % (m / best) if best else "-",
            "%.2fx" % (m / ceil) if ceil else "-", cr, cg,
            "%.2fx" % (cr / nk_req) if nk_req else "-",
            "%.2fx" % (cg / nk_gib) if nk_gib else "-"))
print("QD32 profiles run 2 fio jobs x iodepth 16: one fio nbd job "
      "saturates a core on 2 cores before the server does.")
print("ceiling: nbdkit null, no storage work; \"vs ceil\" is each "
      "server's throughput over it.")

# The goals of issue 5, met or missed on these figures.
if "rumpblk" in servers and peers:
    print("\ngoals (issue 5):")
    for p in profiles:
        best = max(med(p, s, mibs) for s in peers)
        r = med(p, "rumpblk", mibs) / best if best else float("nan")
        print("  %-18s throughput %.2fx the best peer (goal >= 1.0): %s"
              % (p, r, "met" if r >= 1.0 else "MISSED"))
    if "nbdkit" in servers:
        for p, fn, what in (("randread-4k-qd32", cpu_req, "per request"),
                            ("seqread-1m", cpu_gib, "per GiB")):
            if p in profiles:
                r = med(p, "rumpblk", fn) / med(p, "nbdkit", fn)
                print("  %-18s CPU %s %.2fx nbdkit's (goal <= 0.7): %s"
                      % (p, what, r, "met" if r <= 0.7 else "MISSED"))
    # Issue 15: large reads, and the ceiling.
    print("\ngoals (issue 15):")
    for p in ("seqread-1m-qd1", "seqread-1m"):
        if p not in profiles:
            continue
        best = max(med(p, s, mibs) for s in peers)
        r = med(p, "rumpblk", mibs) / best if best else float("nan")
        print("  %-18s throughput %.2fx the best peer (goal >= 1.3): %s"
              % (p, r, "met" if r >= 1.3 else "MISSED"))
        if "nbdkit" in servers:
            c = med(p, "rumpblk", cpu_gib) / med(p, "nbdkit", cpu_gib)
            print("  %-18s CPU per GiB %.2fx nbdkit's (goal <= 0.6): %s"
                  % (p, c, "met" if c <= 0.6 else "MISSED"))
        if "rumpblk-copy" in servers:
            print("  %-18s replies from the pages vs copied first: "
                  "throughput %.2fx, CPU per GiB %.2fx" % (p,
                  med(p, "rumpblk", mibs) / med(p, "rumpblk-copy", mibs),
                  med(p, "rumpblk", cpu_gib) /
                  med(p, "rumpblk-copy", cpu_gib)))
    if "ceiling" in servers:
        for p in profiles:
            c = med(p, "ceiling", mibs)
            r = med(p, "rumpblk", mibs) / c if c else float("nan")
            goal = p.startswith("randread-4k")
            print("  %-18s %.2fx the ceiling%s" % (p, r,
                  (" (goal >= 0.8): " + ("met" if r >= 0.8 else "MISSED"))
                  if goal else ""))
PY
