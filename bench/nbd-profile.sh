#!/bin/bash
# nbd-profile.sh: where a server's CPU goes on 1 MiB sequential reads
# (issue 15).  Each server of BENCH_SERVERS is started in turn on the same
# page-cached image, fio's nbd engine reads 1 MiB blocks at queue depth
# 1 and 8 (the seqread-1m-qd1 and seqread-1m profiles of nbd-peers.sh),
# and perf samples the server's threads (perf record -p, all of its
# threads, user and kernel) for the run.  Printed per server and
# profile: the throughput, the server's CPU seconds per GiB, and its top
# symbols by share of the server's samples (perf report --sort symbol,
# children folded in: self time only), so that "where the CPU goes" is
# read the same way for every server.
#
# It is a profile, not a benchmark: one run each, perf's own cost
# included.  nbd-peers.sh gives the figures to compare.
#
# Environment: BENCH_SECONDS (5), BENCH_SIZE (512M), BENCH_SERVERS
# ("rumpblk rumpblk-copy nbdkit"), BENCH_TOP (12 symbols), BENCH_DIR
# (scratch, default /var/tmp), RUMPBLK (default build/cli/rumpblk).
# Needs perf (linux-perf) and permission to profile (root, or
# kernel.perf_event_paranoid <= 1).
set -u
src=$(cd "$(dirname "$0")/.." && pwd)
secs=${BENCH_SECONDS:-5}
size=${BENCH_SIZE:-512M}
servers=${BENCH_SERVERS:-rumpblk rumpblk-copy nbdkit}
top=${BENCH_TOP:-12}
RUMPBLK=${RUMPBLK:-$src/build/cli/rumpblk}
hz=$(getconf CLK_TCK)

die() {
	echo "nbd-profile: $*" >&2
	exit 1
}
for t in fio nbdkit perf python3; do
	command -v $t >/dev/null || die "$t is needed (debian-packages.txt)"
done
[ -x "$RUMPBLK" ] || die "$RUMPBLK is not built (make build)"

work=$(mktemp -d "${BENCH_DIR:-/var/tmp}/rumpblk-profile.XXXXXX")
srvpid=
cleanup() {
	[ -n "$srvpid" ] && kill "$srvpid" 2>/dev/null && wait "$srvpid" 2>/dev/null
	rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

img=$work/bench.img
sock=$work/s
bytes=$(numfmt --from=iec "$size") || die "bad BENCH_SIZE $size"
. "$src/bench/lib.sh"
random_image "$img" "$bytes" || die "cannot write $img"

echo "nbd-profile: image $size, ${secs}s per run, $(perf --version)"
for s in $servers; do
	nbd_start "$s" "$work" "$img" "$bytes"
	for qd in 1 8; do
		c0=$(awk '{ print $14 + $15 }' "/proc/$spid/stat")
		perf record -q -F 999 -g -p "$spid" -o "$work/perf.data" \
		    2>"$work/perf.err" &
		ppid=$!
		sleep 0.2
		fio --name=p --ioengine=nbd --uri="nbd+unix:///?socket=$sock" \
		    --rw=read --bs=1m --iodepth=$qd --numjobs=1 \
		    --size="$bytes" --time_based --runtime="$secs" \
		    --output-format=json --output="$work/fio.json" \
		    >"$work/fio.err" 2>&1 || die "fio: $(cat "$work/fio.err")"
		kill -INT "$ppid"
		wait "$ppid"
		c1=$(awk '{ print $14 + $15 }' "/proc/$spid/stat")
		python3 - "$work/fio.json" "$s" "$qd" "$(( c1 - c0 ))" "$hz" <<'PY'
import json, sys
f, s, qd, ticks, hz = sys.argv[1:]
j = json.load(open(f))["jobs"][0]["read"]
gib = j["io_bytes"] / 2**30
print("\n== %s, 1 MiB reads, QD%s: %.0f MiB/s, %.3f CPU s/GiB" % (
    s, qd, j["bw_bytes"] / 2**20, int(ticks) / int(hz) / max(gib, 1e-9)))
PY
		perf report -i "$work/perf.data" --no-children --sort symbol \
		    --stdio -g none --percent-limit 1 2>/dev/null |
		    grep -E '^ +[0-9]' | head -n "$top"
	done
	nbd_stop
done
