#!/bin/bash
# crash-check.sh BUILDDIR: how fast "rumpblk crash-check" explores crash
# states, and what building one state costs against the bytes it
# changes (the acceptance of issue 12: "states explored per second on a
# 256 MiB image with a 16 MiB log, with CMD true; the cost of building
# one state against the bytes it changes").
#
# 1. A real log: a 256 MiB image of random data, served by "rumpblk
#    serve --write-log" (a copy taken before is the base); a libnbd
#    client writes seeded random blocks (4 KiB to 256 KiB, powers of two,
#    4 KiB aligned) with a FLUSH after every 512 KiB or more, until
#    BENCH_LOG (16M) is logged: many epochs of several writes each.  Then
#    "crash-check --check true --json" over it with --model prefix
#    (every state), subset (--max-states BENCH_SUBSET_MAX, 16) and
#    reorder (--max-states BENCH_REORDER_MAX, 4), each with --jobs 1 and
#    --jobs 2 (the order alternates between rounds).  Per configuration:
#    states explored, the report's seconds (exploring only: after the log
#    is read and the base checked against its hash), states/s (explored /
#    seconds), the wall time of the whole command, and for --jobs 2 the
#    speed-up over --jobs 1 (the median of the ratios within a round).
#    Every state builds the durable prefix (what the epochs before wrote:
#    up to the whole log) plus its own writes, so later epochs cost more.
# 2. The cost of one state against the bytes it changes: synthetic logs
#    (tests/integration/synthlog.py) over the same base, checked with
#    --model prefix --check true --no-verify-base.  Baseline "~0": 64
#    epochs of one 512-byte write each, all to sector 0 (65 states, each
#    changes one sector: the fixed cost of a state, i.e. an overlay unit,
#    an NBD server, an nbdfuse mount, sh -c true, the unmount).  Row B:
#    one epoch of 64 writes of B/64 bytes, 4 MiB apart; its 65 states
#    are the prefixes, state j changes j*B/64 bytes, B/2 on average.
#    Printed: ms per state (seconds / explored), the ratio to the
#    baseline, and the MiB/s at which the changed bytes were built beyond
#    the fixed cost (mean changed bytes / (ms - baseline ms)); at small B
#    that figure is mostly the cost of each write (32 on average per
#    state, onto a unit), not of its bytes.  For reference, in the same
#    rounds: "cp --sparse=always" of the 256 MiB base, what a full copy
#    per state would cost.
#
# Everything is page-cached; figures are medians of BENCH_ROUNDS rounds.
# On a shared machine expect noise of several ms per state.
#
# Environment: BENCH_ROUNDS (3), BENCH_LOG (16M), BENCH_SUBSET_MAX (16),
# BENCH_REORDER_MAX (4), BENCH_SIZES (synthetic B values: "64K 1M 16M
# 64M"), BENCH_TIMEOUT (seconds per crash-check run, 900), BENCH_DIR
# (scratch, default /var/tmp), RUMPBLK (default BUILDDIR/cli/rumpblk).
set -u
build=${1:-build}
src=$(cd "$(dirname "$0")/.." && pwd)
rounds=${BENCH_ROUNDS:-3}
logsz=${BENCH_LOG:-16M}
submax=${BENCH_SUBSET_MAX:-16}
reomax=${BENCH_REORDER_MAX:-4}
sizes=${BENCH_SIZES:-64K 1M 16M 64M}
tmo=${BENCH_TIMEOUT:-900}
RUMPBLK=${RUMPBLK:-$(cd "$build" 2>/dev/null && pwd)/cli/rumpblk}
. "$src/bench/lib.sh"

die() {
	echo "crash-check: $*" >&2
	exit 1
}
[ -x "$RUMPBLK" ] || die "$RUMPBLK is not built (make build)"
[ "$rounds" -ge 1 ] 2>/dev/null || die "BENCH_ROUNDS must be at least 1"
/usr/bin/python3 -c 'import nbd' 2>/dev/null ||
    die "python3-libnbd is needed (debian-packages.txt)"
command -v nbdfuse >/dev/null || die "nbdfuse is needed (libnbd-bin)"
command -v fusermount3 >/dev/null || die "fusermount3 is needed (fuse3)"
[ -c /dev/fuse ] || die "crash-check needs /dev/fuse"
logbytes=$(numfmt --from=iec "$logsz") || die "bad BENCH_LOG $logsz"

work=$(mktemp -d "${BENCH_DIR:-/var/tmp}/rumpblk-crash.XXXXXX")
srvpid=
cleanup() {
	local i
	if [ -n "$srvpid" ]; then
		kill "$srvpid" 2>/dev/null
		for ((i = 0; i < 100; i++)); do
			kill -0 "$srvpid" 2>/dev/null || break
			sleep 0.1
		done
		kill -KILL "$srvpid" 2>/dev/null
		wait "$srvpid" 2>/dev/null
	fi
	rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

base=$work/base.img
img=$work/served.img
log=$work/real.log
sock=$work/s
mkdir "$work/cc" || die "mkdir $work/cc"
random_image "$base" $((256 << 20)) || die "cannot write $base"
cp "$base" "$img" || die "cannot copy $base"

# 1a. The log, from the real server and a libnbd client.
"$RUMPBLK" serve --write-log "$log" --socket "$sock" \
    --pidfile "$work/pid" "$img" 2>"$work/server.log" &
srvpid=$!
for ((i = 0; i < 300; i++)); do
	[ -s "$work/pid" ] && [ -S "$sock" ] && break
	kill -0 "$srvpid" 2>/dev/null ||
	    die "serve exited: $(cat "$work/server.log")"
	sleep 0.1
done
[ "$i" -lt 300 ] || die "serve did not start within 30 s"
timeout -k 10 300 /usr/bin/python3 - "$sock" "$logbytes" \
    <<'PY' || die "the client writing the log failed"
import random, sys
import nbd
sock, total = sys.argv[1], int(sys.argv[2])
h = nbd.NBD()
h.connect_unix(sock)
size = h.get_size()
rnd = random.Random(12)
done = since_flush = 0
while done < total:
    n = 4096 << rnd.randrange(7)            # 4 KiB .. 256 KiB
    n = min(n, total - done)
    h.pwrite(rnd.randbytes(n), rnd.randrange((size - n) // 4096) * 4096)
    done += n
    since_flush += n
    if since_flush >= 512 * 1024:
        h.flush()
        since_flush = 0
h.flush()
h.shutdown()
PY
kill "$srvpid"
for ((i = 0; i < 300; i++)); do
	kill -0 "$srvpid" 2>/dev/null || break
	sleep 0.1
done
[ "$i" -lt 300 ] || die "serve did not stop within 30 s"
wait "$srvpid" || die "serve exited $?: $(cat "$work/server.log")"
srvpid=
rm -f "$img"
loginfo=$("$RUMPBLK" log info --json "$log") || die "log info $log failed"
loginfo=$(/usr/bin/python3 -c '
import json, sys
j = json.loads(sys.argv[1])
print("%d writes, %.1f MiB, %d epochs" % (j["writes"],
    j["bytes_written"] / 1048576, j["epochs"]))' "$loginfo") ||
    die "log info --json: unexpected output"

# cc LOG ARGS...: one crash-check run; sets explored, secs and wall.
cc() {
	local lg=$1 t0 t1
	shift
	t0=$(date +%s.%N)
	timeout -k 10 "$tmo" "$RUMPBLK" crash-check --log "$lg" \
	    --base "$base" --check true --json --workdir "$work/cc" "$@" \
	    >"$work/report.json" 2>"$work/cc.err" ||
	    die "crash-check $* on $lg: exit $?: $(head -c 2000 "$work/cc.err")"
	t1=$(date +%s.%N)
	read -r explored secs < <(/usr/bin/python3 -c '
import json, sys
j = json.load(open(sys.argv[1]))
print(j["explored"], j["seconds"])' "$work/report.json") ||
	    die "crash-check --json: unexpected report"
	wall=$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')
}

echo "crash-check: 256 MiB base, a log of $loginfo," \
    "$rounds rounds, $(nproc) CPUs"
configs="prefix:1000 subset:$submax reorder:$reomax"
declare -A ex sc rate wl
for r in $(seq "$rounds"); do
	if [ $((r % 2)) = 1 ]; then order="1 2"; else order="2 1"; fi
	for c in $configs; do
		for j in $order; do
			cc "$log" --model "${c%:*}" --max-states "${c#*:}" \
			    --jobs "$j"
			ex[$c/$j]+="$explored "
			sc[$c/$j]+="$secs "
			rate[$c/$j]+="$(awk -v e="$explored" -v s="$secs" \
			    'BEGIN { print (s > 0 ? e / s : 0) }') "
			wl[$c/$j]+="$wall "
		done
	done
	printf '.' >&2
done
echo >&2
printf '%-8s %10s %4s %9s %9s %9s %8s %10s\n' model max-states jobs \
    explored seconds states/s "wall s" "vs jobs 1"
for c in $configs; do
	for j in 1 2; do
		sp=-
		[ "$j" = 2 ] && sp=$(pairmed "${rate[$c/1]}" "${rate[$c/2]}" |
		    awk '{ printf "%.2f", $1 }')
		printf '%-8s %10s %4s %9.0f %9.2f %9.1f %8.2f %10s\n' \
		    "${c%:*}" "${c#*:}" "$j" \
		    "$(echo "${ex[$c/$j]}" | median)" \
		    "$(echo "${sc[$c/$j]}" | median)" \
		    "$(echo "${rate[$c/$j]}" | median)" \
		    "$(echo "${wl[$c/$j]}" | median)" "$sp"
	done
done
echo "(medians of $rounds rounds; seconds: the report's, exploring only;" \
    "wall: the whole command, with reading the log and hashing the base)"

# 2. Synthetic logs: the fixed cost of a state, and the cost per byte.
# mklog NAME ENTRIES-PYTHON: $work/NAME.log over $base (hash unset).
mklog() {
	/usr/bin/python3 - "$work/$1.json" "$2" <<'PY' || die "spec $1"
import json, sys
json.dump({"sector_size": 512, "base": {"path": "base.img",
    "size": 256 << 20, "hash": None}, "entries": eval(sys.argv[2])},
    open(sys.argv[1], "w"))
PY
	/usr/bin/python3 "$src/tests/integration/synthlog.py" make \
	    "$work/$1.json" "$work/$1.log" || die "synthlog.py make $1"
}
mklog zero '[e for i in range(64) for e in (["write", 0, 1, i + 1],
    ["flush"])]'
for b in $sizes; do
	n=$(numfmt --from=iec "$b") || die "bad size $b in BENCH_SIZES"
	[ $((n % (64 * 512))) = 0 ] && [ "$n" -le $((64 << 20)) ] ||
	    die "BENCH_SIZES: $b is not a multiple of 32K up to 64M"
	mklog "b$b" "[[\"write\", i * 8192, $((n / 64 / 512)), i + 1]
	    for i in range(64)] + [[\"flush\"]]"
done

declare -A ms nst
for r in $(seq "$rounds"); do
	for b in zero $sizes; do
		lg=$work/$b.log
		[ "$b" = zero ] || lg=$work/b$b.log
		cc "$lg" --model prefix --no-verify-base
		ms[$b]+="$(awk -v e="$explored" -v s="$secs" \
		    'BEGIN { print (e > 0 ? s * 1000 / e : 0) }') "
		nst[$b]=$explored
	done
	t0=$(date +%s.%N)
	cp --sparse=always "$base" "$work/copy.img" || die "cp failed"
	t1=$(date +%s.%N)
	rm -f "$work/copy.img"
	ms[cp]+="$(awk -v a="$t0" -v b="$t1" 'BEGIN { print (b - a) * 1000 }') "
	printf '.' >&2
done
echo >&2
echo
z=$(echo "${ms[zero]}" | median)
printf '%-14s %6s %14s %9s %7s %16s\n' "B (epoch)" states \
    "changed/state" ms/state ratio "MiB/s beyond"
printf '%-14s %6s %14s %9.1f %7.2f %16s\n' "~0 (512 B)" "${nst[zero]}" \
    "512 B" "$z" 1 -
for b in $sizes; do
	n=$(numfmt --from=iec "$b")
	m=$(echo "${ms[$b]}" | median)
	awk -v b="$b" -v st="${nst[$b]}" -v n="$n" -v m="$m" -v z="$z" 'BEGIN {
	    mean = n / 2 / 1048576
	    if (mean >= 1)
		h = sprintf("%g MiB", mean)
	    else
		h = sprintf("%g KiB", mean * 1024)
	    bey = "(in the noise)"
	    if (m - z > 0.05)
		bey = sprintf("%.0f", mean / ((m - z) / 1000))
	    printf "%-14s %6s %14s %9.1f %7.2f %16s\n", b, st, h, m,
	        (z > 0 ? m / z : 0), bey }'
done
c=$(echo "${ms[cp]}" | median)
awk -v c="$c" -v z="$z" 'BEGIN {
    printf "cp --sparse=always of the 256 MiB base: %.1f ms (%.2f x the" \
        " baseline state)\n", c, (z > 0 ? c / z : 0) }'
echo "(medians of $rounds rounds; changed/state: the mean over the 65" \
    "prefixes, B/2)"
