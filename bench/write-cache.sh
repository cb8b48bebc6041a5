#!/bin/bash
# write-cache.sh BUILDDIR: what the volatile write cache (issue 11) costs
# over NBD when no power is cut, and what a FLUSH costs.
#
# 1. fio's nbd engine against "rumpblk serve" with and without
#    --write-cache $BENCH_CACHE (64M), on the same page-cached image, in
#    the same run: 4 KiB random writes and reads, 2 jobs x iodepth 16
#    (QD32; two connections, as bench/nbd-peers.sh does).  Each round
#    runs the pair back to back (the order alternates); the ratio is
#    cache over no cache, as a ratio of medians and as the median of the
#    ratios within a round.  Targets (issue 11): writes >= 1.0, reads
#    >= 0.95.  The write runs are long enough to fill the cache, so they
#    measure the steady state (every write destages an older one), not a
#    cache that only absorbs.  The targets are for the default backend
#    on a page-cached image, where the medium is memory; for scale, the
#    same pair also runs on --backend direct (O_DIRECT, a medium slower
#    than the cache), random writes only (BENCH_DIRECT=0 leaves it out).
# 2. FLUSH time against dirty bytes and image size: a libnbd client
#    writes D MiB of random 4 KiB blocks into a cache larger than that,
#    then times one FLUSH; for D in 1, 8 and 32 MiB, on a 256 MiB and a
#    4 GiB image (fallocated, written once by a warm-up flush); the
#    median of 3.  FLUSH destages what is dirty and syncs: its time
#    follows D and not the image size.  Two columns: "256M" puts the
#    blocks in the first 256 MiB of either image, so the image size is
#    the only thing that differs (what the target is about); "all"
#    spreads them over the whole image, where the host's own writeback
#    of scattered pages (more separate extents to sync on the larger
#    image) shows too.
#
# Environment: BENCH_SECONDS (5), BENCH_ROUNDS (3), BENCH_SIZE (512M),
# BENCH_CACHE (64M), BENCH_DIR (scratch, default /var/tmp).
set -u
build=${1:-build}
src=$(cd "$(dirname "$0")/.." && pwd)
secs=${BENCH_SECONDS:-5}
rounds=${BENCH_ROUNDS:-3}
size=${BENCH_SIZE:-512M}
cache=${BENCH_CACHE:-64M}
RUMPBLK=${RUMPBLK:-$(cd "$build" && pwd)/cli/rumpblk}
. "$src/bench/lib.sh"

die() {
	echo "write-cache: $*" >&2
	exit 1
}
[ -x "$RUMPBLK" ] || die "$RUMPBLK is not built (make build)"
command -v fio >/dev/null || die "fio is needed (debian-packages.txt)"
fio --enghelp=nbd >/dev/null 2>&1 || die "this fio has no nbd engine"
/usr/bin/python3 -c 'import nbd' 2>/dev/null ||
    die "python3-libnbd is needed (debian-packages.txt)"

work=$(mktemp -d "${BENCH_DIR:-/var/tmp}/rumpblk-wcache.XXXXXX")
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
random_image "$img" "$bytes" || die "cannot write $img"

# start IMAGE [serve options...]: the server on $sock, srvpid set.
start() {
	local i im=$1
	shift
	rm -f "$sock" "$work/pid"
	"$RUMPBLK" serve --socket "$sock" --pidfile "$work/pid" "$@" "$im" \
	    2>"$work/server.log" &
	srvpid=$!
	for ((i = 0; i < 300; i++)); do
		[ -s "$work/pid" ] && [ -S "$sock" ] && return 0
		kill -0 $srvpid 2>/dev/null ||
		    die "serve exited: $(cat "$work/server.log")"
		sleep 0.1
	done
	die "serve did not start within 30 s"
}

stop() {
	kill "$srvpid" 2>/dev/null
	wait "$srvpid" 2>/dev/null
	srvpid=
}

# run RW: IOPS of one fio run against the server on $sock.
run() {
	fio --name=wc --ioengine=nbd --uri="nbd+unix:///?socket=$sock" \
	    --rw="$1" --bs=4k --iodepth=16 --numjobs=2 --time_based \
	    --runtime="${secs}s" --size="$bytes" --norandommap \
	    --randrepeat=0 --group_reporting --output-format=json \
	    --output="$work/fio.json" >"$work/fio.err" 2>&1 ||
	    die "fio $1: $(cat "$work/fio.err")"
	/usr/bin/python3 -c '
import json, sys
j = json.load(open(sys.argv[1]))["jobs"][0]
print(j["read"]["iops"] + j["write"]["iops"])' "$work/fio.json"
}


echo "write-cache: $size image, cache $cache, $rounds rounds of ${secs}s," \
    "$(fio --version), $(nproc) CPUs"
declare -A v
rows="randwrite randread"
[ "${BENCH_DIRECT:-1}" = 1 ] && rows="$rows randwrite/direct"
for r in $(seq "$rounds"); do
	for row in $rows; do
		rw=${row%/*}
		be=auto
		[ "$row" != "$rw" ] && be=${row#*/}
		if [ $((r % 2)) = 1 ]; then order="none cache"
		else order="cache none"; fi
		for o in $order; do
			if [ "$o" = cache ]; then
				start "$img" --backend "$be" --write-cache "$cache"
			else
				start "$img" --backend "$be"
			fi
			v[$row/$o]+="$(run "$rw") "
			stop
		done
	done
	printf '.' >&2
done
echo >&2
printf '%-22s %12s %12s %8s %9s  %s\n' "4K QD32 over NBD" "no cache" \
    "cache" "ratio" "(paired)" "target"
for row in $rows; do
	n=$(echo "${v[$row/none]}" | median)
	c=$(echo "${v[$row/cache]}" | median)
	p=$(pairmed "${v[$row/none]}" "${v[$row/cache]}")
	t=">= 1.0"
	[ "$row" = randread ] && t=">= 0.95"
	[ "$row" = randwrite/direct ] && t="(info)"
	awk -v rw="$row" -v n="$n" -v c="$c" -v p="$p" -v t="$t" 'BEGIN {
	    printf "%-22s %12.0f %12.0f %8.3f %9.3f  %s\n", rw, n, c,
	    n ? c / n : 0, p, t }'
done
echo "(IOPS, medians of $rounds rounds)"

# 2. FLUSH time.
echo
printf '%-12s %10s %16s %16s\n' "image" "dirty MiB" "FLUSH ms (256M)" \
    "FLUSH ms (all)"
for isz in 256M 4G; do
	fimg=$work/flush.img
	rm -f "$fimg"
	fallocate -l "$isz" "$fimg" || truncate -s "$isz" "$fimg"
	start "$fimg" --write-cache 64M
	/usr/bin/python3 - "$sock" "$isz" <<'PY' || die "flush timing failed"
import random, sys, time
import nbd
sock, isz = sys.argv[1], sys.argv[2]
h = nbd.NBD()
h.connect_unix(sock)
size = h.get_size()
rnd = random.Random(7)
block = bytes(rnd.getrandbits(8) for _ in range(4096))
h.pwrite(block, 0)
h.flush()                       # warm-up: the first sync of the file
def flush_ms(mib, span):
    t = []
    for _ in range(3):
        h.flush()
        for _ in range(mib * 256):
            h.pwrite(block, rnd.randrange(span // 4096) * 4096)
        t0 = time.monotonic()
        h.flush()
        t.append((time.monotonic() - t0) * 1000)
    return sorted(t)[1]
for mib in (1, 8, 32):
    print("%-12s %10d %16.1f %16.1f" % (isz, mib,
        flush_ms(mib, min(size, 256 << 20)), flush_ms(mib, size)))
h.shutdown()
PY
	stop
done
