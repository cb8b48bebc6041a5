#!/bin/bash
# rbd.sh BUILDDIR: rumpblk serve rbd:rbd/test against qemu-nbd's rbd
# driver (qemu-block-extra) over the same RBD image of a throwaway
# single-node Ceph cluster started here (tests/integration/
# ceph-functions.sh: one monitor, one memstore OSD, 127.0.0.1, removed
# at exit), with fio's nbd engine over a Unix socket, in the same run.
#
# One server runs at a time (both would fight over the image's
# exclusive lock).  A round starts each server in turn (the order
# rotates from round to round), runs every profile against it and stops
# it; BENCH_ROUNDS rounds (at least 3) are interleaved that way and the
# median of each figure is reported, with the ratio rumpblk / qemu-nbd
# of the medians and the median of the per-round ratios.  The cluster
# shares the machine's cores with the servers and fio: the figures are
# of the whole path, as a user of a small cluster sees it.
#
# librbd's cache: both servers use the configuration's settings
# (qemu-nbd --cache=writeback sets rbd_cache=true, librbd's default),
# but for one default of rumpblk's: rbd_cache_writethrough_until_flush
# false (lib/remote/rbd.c), where librbd's true makes every write wait
# for the OSD until a client's first FLUSH (fio sends none here).  So a
# third row, qemu-nbd-wa, is qemu-nbd given that setting too (in its
# rbd: filename): the servers like for like.  For scale, a fourth row,
# librbd: fio's rbd engine on the image itself with librbd's defaults,
# no NBD hop and no server (one job, the whole queue depth: two jobs
# would pass the image's exclusive lock to and fro on writes), what the
# cluster gives a client that links librbd.  Its CPU column is empty
# (there is no server).  The ratio column is rumpblk's figure over the
# row's, of the medians and the median of the per-round ratios.
#
# Profiles (fio):
#   randread-4k-qd32   4 KiB random reads, 2 jobs x iodepth 16
#   seqread-1m         1 MiB sequential reads, one job, iodepth 8
#   randwrite-4k-qd32  4 KiB random writes, 2 jobs x iodepth 16
#
# Environment: BENCH_SECONDS (5, per run), BENCH_ROUNDS (5: the cluster
# shares two cores with the rest, and runs vary more), BENCH_SIZE
# (512M, the image; prefilled with random data), BENCH_PROFILES (all),
# BENCH_DIR (scratch, default /var/tmp), RUMPBLK (default
# BUILDDIR/cli/rumpblk).  Without Debian's Ceph packages, or when a Ceph
# daemon cannot start here, it says why and exits 0 (nothing measured);
# other failures exit 1.  Figures are never judged here but for the goal
# line (rumpblk >= 1.0x qemu-nbd).
set -u
src=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-build}
secs=${BENCH_SECONDS:-5}
rounds=${BENCH_ROUNDS:-5}
size=${BENCH_SIZE:-512M}
all_profiles="randread-4k-qd32 seqread-1m randwrite-4k-qd32"
profiles=${BENCH_PROFILES:-$all_profiles}
RUMPBLK=${RUMPBLK:-$(cd "$build" 2>/dev/null && pwd)/cli/rumpblk}
hz=$(getconf CLK_TCK)
export RUMPBLK

die() {
	echo "rbd bench: $*" >&2
	exit 1
}
[ -x "$RUMPBLK" ] || die "$RUMPBLK is not built (make build)"
for t in fio qemu-nbd; do
	command -v $t >/dev/null || die "$t is needed (debian-packages.txt)"
done
fio --enghelp=nbd >/dev/null 2>&1 || die "this fio has no nbd engine"
[ "$rounds" -ge 3 ] || die "BENCH_ROUNDS must be at least 3 (medians)"
bytes=$(numfmt --from=iec "$size") || die "bad BENCH_SIZE $size"

# The tests' helpers: $tmp (under BENCH_DIR), cleanups at exit, and the
# cluster.  A missing tool or a daemon that cannot start is a skip there
# (77); here it is said and nothing is measured.
TMPDIR=${BENCH_DIR:-/var/tmp}
export TMPDIR
. "$src/tests/functions.sh"
. "$src/tests/integration/ceph-functions.sh"
requires() {
	"$@" >/dev/null 2>&1 && return 0
	echo "rbd bench: skipped: $* does not work (debian-packages.txt)"
	exit 0
}
fail() {
	echo "rbd bench: $*" >&2
	exit 1
}
_ceph_skip() {
	echo "rbd bench: skipped: $1 could not start here:"
	[ -f "$2" ] && sed 's/^/  /' "$2" | tail -n 20
	exit 0
}
ceph_requires
requires qemu-nbd --help
if ! ls /usr/lib/*/qemu/block-rbd.so >/dev/null 2>&1; then
	echo "rbd bench: skipped: no rbd driver for qemu-nbd" \
	    "(qemu-block-extra, debian-packages.txt)"
	exit 0
fi

ceph_start cephx
ceph_cli osd pool create rbd 8 8 >/dev/null 2>&1 || fail "pool create"
rbd_cli pool init rbd || fail "rbd pool init"
head -c "$bytes" /dev/urandom >"$tmp/fill" || fail "random data"
rbd_cli import --no-progress "$tmp/fill" rbd/test ||
    fail "rbd import of $size"
rm -f "$tmp/fill"

sock=$tmp/s
srvpid=
cleanup_fn 'if [ -n "$srvpid" ]; then kill $srvpid; wait $srvpid; fi 2>/dev/null'

# start SERVER: start it on $sock in the background, set srvpid, spid.
start() {
	local i
	rm -f "$sock" "$tmp/pid"
	case $1 in
	rumpblk)
		"$RUMPBLK" serve --socket "$sock" --pidfile "$tmp/pid" \
		    --ceph-conf "$CEPH_CONF" rbd:rbd/test \
		    2>"$tmp/server.log" &
		;;
	qemu-nbd | qemu-nbd-wa)
		# -t: stay up between clients; -e: connections at once.
		local img="rbd:rbd/test:conf=$CEPH_CONF"
		[ "$1" = qemu-nbd-wa ] &&
		    img+=":rbd_cache_writethrough_until_flush=false"
		qemu-nbd -f raw -k "$sock" --cache=writeback -t -e 8 \
		    --pid-file="$tmp/pid" "$img" 2>"$tmp/server.log" &
		;;
	librbd)
		spid=
		return
		;;
	*) fail "unknown server $1" ;;
	esac
	srvpid=$!
	for ((i = 0; i < 300; i++)); do
		[ -s "$tmp/pid" ] && [ -S "$sock" ] && break
		kill -0 $srvpid 2>/dev/null ||
		    fail "$1 exited: $(cat "$tmp/server.log")"
		sleep 0.1
	done
	[ -s "$tmp/pid" ] || fail "$1 did not start within 30 s"
	spid=$(cat "$tmp/pid")
}

stop() {
	kill "$srvpid" 2>/dev/null
	wait "$srvpid" 2>/dev/null
	srvpid=
}

cputicks() {
	[ -z "$1" ] && { echo 0; return; }
	awk '{ print $14 + $15 }' "/proc/$1/stat"
}

# fio_io SERVER PROFILE: fio's engine options for the server.
fio_io() {
	if [ "$1" = librbd ]; then
		echo "--ioengine=rbd --pool=rbd --rbdname=test --clientname=admin"
		echo "--numjobs=1 --iodepth=$(fio_args "$2" |
		    awk '{ split($3, d, "="); split($4, j, "=");
		    print d[2] * j[2] }')"
	else
		echo "--ioengine=nbd --uri=nbd+unix:///?socket=$sock"
	fi
}

fio_args() {
	case $1 in
	randread-4k-qd32) echo "--rw=randread --bs=4k --iodepth=16 --numjobs=2" ;;
	randwrite-4k-qd32) echo "--rw=randwrite --bs=4k --iodepth=16 --numjobs=2" ;;
	seqread-1m) echo "--rw=read --bs=1m --iodepth=8 --numjobs=1" ;;
	*) fail "unknown profile $1" ;;
	esac
}

results=$tmp/results.tsv
printf 'round\tserver\tprofile\tops\tbytes\tseconds\tcpu_s\n' >"$results"
servers="rumpblk qemu-nbd"
echo "rbd bench: image $size on a 1-OSD memstore cluster, $rounds rounds" \
    "x ${secs}s per run"
echo "rbd bench: $(fio --version), $(qemu-nbd --version | head -1)," \
    "$(ceph-osd --version | cut -d' ' -f1-3)"
for ((r = 1; r <= rounds; r++)); do
	order="rumpblk qemu-nbd qemu-nbd-wa librbd"
	[ $((r % 2)) = 0 ] && order="librbd qemu-nbd-wa qemu-nbd rumpblk"
	for s in $order; do
		start "$s"
		for p in $profiles; do
			c0=$(cputicks "$spid") || fail "$s died"
			# shellcheck disable=SC2046
			CEPH_CONF=$CEPH_CONF fio --name="$p" \
			    $(fio_args "$p") $(fio_io "$s" "$p") \
			    --size="$bytes" --time_based \
			    --runtime="$secs" --group_reporting \
			    --output-format=json --output="$tmp/fio.json" \
			    >"$tmp/fio.err" 2>&1 ||
			    fail "fio $p against $s: $(cat "$tmp/fio.err")"
			c1=$(cputicks "$spid") || fail "$s died during $p"
			/usr/bin/python3 - "$tmp/fio.json" "$r" "$s" "$p" \
			    "$(( c1 - c0 ))" "$hz" >>"$results" <<'PY'
import json, sys
f, r, s, p, ticks, hz = sys.argv[1:]
j = json.load(open(f))["jobs"][0]
ops = byts = 0
bw = 0.0
for d in ("read", "write"):
    ops += j[d]["total_ios"]
    byts += j[d]["io_bytes"]
    bw += j[d]["bw_bytes"]
secs = byts / bw if bw else 0.0
print("%s\t%s\t%s\t%d\t%d\t%.3f\t%.3f" % (r, s, p, ops, byts, secs,
      int(ticks) / int(hz)))
PY
			printf '.'
		done
		stop
	done
done
echo

/usr/bin/python3 - "$results" "$profiles" <<'PY'
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1]), delimiter="\t"))
profiles = sys.argv[2].split()
servers = ["rumpblk", "qemu-nbd", "qemu-nbd-wa", "librbd"]

def vals(p, s, fn):
    return [fn(r) for r in sorted(rows, key=lambda r: int(r["round"]))
            if r["profile"] == p and r["server"] == s]

def med(p, s, fn):
    v = vals(p, s, fn)
    return statistics.median(v) if v else float("nan")

def iops(r):
    return int(r["ops"]) / float(r["seconds"])

def mibs(r):
    return int(r["bytes"]) / float(r["seconds"]) / 2**20

def cpu_req(r):
    return float(r["cpu_s"]) * 1e6 / max(int(r["ops"]), 1)

print("medians over %d rounds; ratio = rumpblk / the row's server (of the"
      " medians; median of the per-round ratios)"
      % len({r["round"] for r in rows}))
hdr = "%-18s %-11s %10s %9s %11s %16s" % (
    "profile", "server", "IOPS", "MiB/s", "CPU us/req", "ratio")
print(hdr)
print("-" * len(hdr))

def ratio(p, s):
    a, b = med(p, "rumpblk", mibs), med(p, s, mibs)
    pr = statistics.median(x / y for x, y in zip(vals(p, "rumpblk", mibs),
                                                 vals(p, s, mibs)))
    return a / b, pr

for p in profiles:
    for s in servers:
        if not vals(p, s, iops):
            continue
        cpu = "%11.1f" % med(p, s, cpu_req) if s != "librbd" else "%11s" % "-"
        rt = "%.2fx; %.2fx" % ratio(p, s) if s != "rumpblk" else ""
        print("%-18s %-11s %10.0f %9.1f %s %16s" % (
            p, s, med(p, s, iops), med(p, s, mibs), cpu, rt))
print("qemu-nbd-wa: qemu-nbd with rbd_cache_writethrough_until_flush=false,"
      " as rumpblk's default")
print("librbd: fio's rbd engine on the image, no NBD hop, for scale")
for s, what in (("qemu-nbd", "qemu-nbd over the same image"),
                ("qemu-nbd-wa", "qemu-nbd with the same librbd settings")):
    print("\ngoal: rumpblk over RBD >= 1.0x %s" % what)
    for p in profiles:
        r = ratio(p, s)[0]
        print("  %-18s %.2fx: %s" % (p, r, "met" if r >= 1.0 else "MISSED"))
PY
