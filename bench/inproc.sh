#!/bin/bash
# bench/inproc.sh BUILDDIR: in-process I/O against the raw host, on one
# page-cached image in one run (DESIGN.md §7, issue #4).
#
# Rows: 4 KiB random reads at 1 and 2 threads, 1 MiB sequential reads
# and 1 MiB sequential (buffered) writes; then fault-rule rows (issues
# #6 and #10): 4 KiB random reads with one rule armed that never fires
# against no rule, on pio and on mmap; then the latency histograms' cost
# (issue 17): the default sampling and every request timed, each against
# timing off in the same run (bench --lat-compare).  fio runs with --invalidate=0:
# by default it drops the file's page cache before each job.  Columns: a raw pread/pwrite
# loop and a raw mmap+memcpy loop (bench/rawio.c), fio's psync and mmap
# engines (when fio is installed), and `rumpblk bench` over pio and mmap
# (the CLI's default windows, which cover the image).  Each figure is the
# median of BENCH_ROUNDS rounds of BENCH_SECONDS, the rounds of every
# column interleaved so that a noisy neighbour hurts all columns alike.
# Ratios are rumpblk over the matching raw loop, twice: the ratio of the
# two medians, and "(paired)" the median over rounds of the ratio within
# a round.  The two columns of a pair run back to back in every round,
# so the paired figure cancels the drift of a shared host (on the
# machine this was written on, one column moves 10-20% between rounds
# while a pair's ratio moves much less).  An informational row
# runs the seed's 16 x 1 MiB windows over the same image (far larger than
# 16 MiB), where nearly every request remaps a window.
#
# Environment: BENCH_SIZE (default 512M), BENCH_ROUNDS (5), BENCH_SECONDS
# (1), BENCH_DIR (scratch directory; default /var/tmp).  Results also go
# to bench/results/inproc-TIMESTAMP.json (one JSON object per line).
set -u
build=${1:-build}
here=$(cd "$(dirname "$0")" && pwd)
rumpblk=$build/cli/rumpblk
rawio=$build/bench/rawio
size=${BENCH_SIZE:-512M}
rounds=${BENCH_ROUNDS:-5}
secs=${BENCH_SECONDS:-1}

for p in "$rumpblk" "$rawio"; do
	[ -x "$p" ] || { echo "inproc.sh: $p is missing (build first)" >&2
	    exit 1; }
done
command -v jq >/dev/null || { echo "inproc.sh: jq is needed" >&2; exit 1; }
have_fio=false
command -v fio >/dev/null && have_fio=true

dir=$(mktemp -d "${BENCH_DIR:-/var/tmp}/rumpblk-bench.XXXXXX") || exit 1
trap 'rm -rf "$dir"' EXIT
trap 'exit 130' INT TERM
img=$dir/inproc.img
mkdir -p "$here/results"
out=$here/results/inproc-$(date -u +%Y%m%dT%H%M%SZ).json

bytes=$(numfmt --from=iec "$size")
echo "inproc: $size image, $rounds rounds of ${secs}s, $(nproc) CPUs," \
    "fio: $($have_fio && fio --version || echo none)"
# Real data (not a sparse file, whose holes read from the zero page).
head -c "$bytes" /dev/urandom >"$img"
sync "$img"
cat "$img" >/dev/null

# One measurement: prints IOPS.
run() {		# run TOOL PATTERN BS THREADS
	local tool=$1 pat=$2 bs=$3 thr=$4 j rw
	case $tool in
	pread|mmap)
		j=$("$rawio" "$tool" "$pat" "$(numfmt --from=iec "$bs")" \
		    "$thr" "$secs" "$img") ;;
	fio-psync|fio-mmap)
		case $pat in
		randread) rw=randread ;; seqread) rw=read ;;
		seqwrite) rw=write ;; randwrite) rw=randwrite ;;
		esac
		j=$(fio --name=inproc --filename="$img" --rw="$rw" --bs="$bs" \
		    --numjobs="$thr" --ioengine="${tool#fio-}" --time_based \
		    --runtime="${secs}s" --size="$bytes" --group_reporting \
		    --norandommap --randrepeat=0 --invalidate=0 \
		    --output-format=json 2>/dev/null |
		    jq -c '{iops: (.jobs[0].read.iops + .jobs[0].write.iops)}')
		;;
	rumpblk-pio|rumpblk-mmap)
		j=$("$rumpblk" bench --json --backend "${tool#rumpblk-}" \
		    --pattern "$pat" --bs "$bs" --threads "$thr" \
		    --seconds "$secs" "$img") ;;
	seed16)
		j=$("$rumpblk" bench --json --backend mmap --winsize 1M \
		    --wincount 16 --pattern "$pat" --bs "$bs" --threads "$thr" \
		    --seconds "$secs" "$img") ;;
	esac
	[ -n "$j" ] || { echo "inproc.sh: $tool $pat failed" >&2; echo 0
	    return; }
	echo "{\"tool\":\"$tool\",\"pattern\":\"$pat\",\"bs\":\"$bs\",\"threads\":$thr,\"result\":$j}" >>"$out"
	echo "$j" | jq '.iops'
}

# median, pairmed "A1 A2 ..." "B1 B2 ..." (the median of Bi / Ai over
# the rounds): bench/lib.sh.
. "$here/lib.sh"

# Display order, and run order: each rumpblk column right after the raw
# loop it is compared with.
tools="pread mmap"
$have_fio && tools="$tools fio-psync fio-mmap"
tools="$tools rumpblk-pio rumpblk-mmap"
runorder="pread rumpblk-pio mmap rumpblk-mmap"
$have_fio && runorder="$runorder fio-psync fio-mmap"
cases="randread:4K:1 randread:4K:2 seqread:1M:1 seqwrite:1M:1"

declare -A vals
for r in $(seq "$rounds"); do
	for c in $cases; do
		IFS=: read -r pat bs thr <<<"$c"
		for t in $runorder; do
			vals[$c/$t]+="$(run "$t" "$pat" "$bs" "$thr") "
		done
	done
	printf '.' >&2
done
echo >&2

declare -A med
printf '\n%-16s' "workload"
for t in $tools; do printf '%13s' "$t"; done
printf '%10s%10s%10s%10s\n' "pio/pread" "(paired)" "mmap/mmap" "(paired)"
for c in $cases; do
	IFS=: read -r pat bs thr <<<"$c"
	printf '%-16s' "$pat $bs x$thr"
	for t in $tools; do
		med[$c/$t]=$(echo "${vals[$c/$t]}" | median)
		printf '%13.0f' "${med[$c/$t]}"
	done
	awk -v a="${med[$c/rumpblk-pio]}" -v b="${med[$c/pread]}" \
	    -v c="${med[$c/rumpblk-mmap]}" -v d="${med[$c/mmap]}" \
	    -v pp="$(pairmed "${vals[$c/pread]}" "${vals[$c/rumpblk-pio]}")" \
	    -v pm="$(pairmed "${vals[$c/mmap]}" "${vals[$c/rumpblk-mmap]}")" \
	    'BEGIN { printf "%10.2f%10.2f%10.2f%10.2f\n", b ? a / b : 0, pp,
	    d ? c / d : 0, pm }'
done
echo "(IOPS, medians; 1 MiB rows: IOPS = MiB/s)"
awk -v p1="${med[randread:4K:1/rumpblk-pio]}" \
    -v p2="${med[randread:4K:2/rumpblk-pio]}" \
    -v m1="${med[randread:4K:1/rumpblk-mmap]}" \
    -v m2="${med[randread:4K:2/rumpblk-mmap]}" \
    -v r1="${med[randread:4K:1/mmap]}" -v r2="${med[randread:4K:2/mmap]}" \
    -v q1="${med[randread:4K:1/pread]}" -v q2="${med[randread:4K:2/pread]}" \
    'BEGIN { printf "2-thread scaling, 4K randread: rumpblk pio %.2fx, " \
    "rumpblk mmap %.2fx, raw pread %.2fx, raw mmap %.2fx\n",
    p1 ? p2 / p1 : 0, m1 ? m2 / m1 : 0, q1 ? q2 / q1 : 0, r1 ? r2 / r1 : 0 }'

# Informational: the seed's 16 x 1 MiB windows over this image.
s=$("$rumpblk" bench --json --backend mmap --winsize 1M --wincount 16 \
    --pattern randread --bs 4K --seconds "$secs" "$img")
echo "{\"tool\":\"seed16\",\"pattern\":\"randread\",\"bs\":\"4K\",\"threads\":1,\"result\":$s}" >>"$out"
echo "$s" | jq -r --arg cover "${med[randread:4K:1/rumpblk-mmap]}" '
	(.win_misses / .ops) as $mr |
	"seed windows 16 x 1 MiB, 4K randread x1: \(.iops | floor) IOPS " +
	"(\(100 * .iops / ($cover | tonumber) | floor)% of covering windows), " +
	"\(100 * $mr | floor)% of requests remap a window; " +
	"remapping costs about \(((1e6 / .iops - 1e6 / ($cover | tonumber)) / $mr) * 100 | floor / 100) us per miss " +
	"(munmap + mmap + the first-touch page fault)"'

# Fault rules (issue #6): 4K random reads on pio with one rule armed that
# never fires (its range lies past the image, so no request is even
# counted) against no rule; and, for information, a rule that selects
# every request and never fires (p=0), which pays for counting request
# generations.  Rounds interleaved, medians.
fault_run() {	# fault_run BACKEND [--fault RULE]: prints IOPS
	local j b=$1
	shift
	j=$("$rumpblk" bench --json --backend "$b" --pattern randread --bs 4K \
	    --threads 1 --seconds "$secs" "$@" "$img" 2>/dev/null)
	[ -n "$j" ] || { echo "inproc.sh: bench $b $* failed" >&2; echo 0
	    return; }
	echo "{\"tool\":\"rumpblk-$b\",\"pattern\":\"randread\",\"bs\":\"4K\",\"threads\":1,\"faults\":\"$*\",\"result\":$j}" >>"$out"
	echo "$j" | jq '.iops'
}
fnone= fpast= fsel= mnone= mnth=
past="error,range=$bytes-$((bytes + 1048576))"
nth="error,op=read,nth=2000000000"
for r in $(seq "$rounds"); do
	fnone+="$(fault_run pio) "
	fpast+="$(fault_run pio --fault "$past") "
	fsel+="$(fault_run pio --fault error,p=0) "
	mnone+="$(fault_run mmap) "
	mnth+="$(fault_run mmap --fault "$nth") "
done
ppast=$(pairmed "$fnone" "$fpast")
psel=$(pairmed "$fnone" "$fsel")
pnth=$(pairmed "$mnone" "$mnth")
fnone=$(echo "$fnone" | median)
fpast=$(echo "$fpast" | median)
fsel=$(echo "$fsel" | median)
mnone=$(echo "$mnone" | median)
mnth=$(echo "$mnth" | median)
awk -v n="$fnone" -v p="$fpast" -v s="$fsel" -v pp="$ppast" -v ps="$psel" \
    'BEGIN {
	printf "fault rules, 4K randread x1, pio: no rule %.0f IOPS; a rule " \
	    "that never fires (range past the image) %.0f IOPS (%.3f, " \
	    "paired %.3f); a rule selecting every request, p=0, %.0f IOPS " \
	    "(%.3f, paired %.3f)\n", n, p, n ? p / n : 0, pp, s,
	    n ? s / n : 0, ps }'
# Issue #10: on mmap, a read rule that selects every read and never
# fires (its matches are counted; generations are not, as nothing could
# see them: no p=, no seeded details, no log) against no rule: prefetch
# must survive the layer, and the rule cost no allocation or lock-bound
# work per request.  Target: paired >= 0.97.  The pio p=0 row above is
# the one that pays for counting generations.
awk -v n="$mnone" -v m="$mnth" -v pm="$pnth" -v r="$nth" 'BEGIN {
	printf "fault rules, 4K randread x1, mmap: no rule %.0f IOPS; %s " \
	    "%.0f IOPS (%.3f, paired %.3f; target paired >= 0.97)\n",
	    n, r, m, n ? m / n : 0, pm }'

# Latency histograms (issue 17): what timing costs on 4K random reads
# x1, on pio and mmap.  `rumpblk bench --lat-compare N` runs two
# instances over the image, one that times nothing and one that times
# one request in N per thread (the default, 64, always on: every
# in-process caller pays it; 1: what each request of an NBD client pays,
# where a socket round trip dwarfs it, for information), and its thread
# uses them in turn every 2000 requests (a millisecond or two), timing
# each slice: both columns see the same load of a shared host, which
# runs a second apart do not (on the machine this was written on, other
# jobs moved such runs by 10-25%).  Ratios on / off of IOPS and of
# requests per CPU second of the thread, medians over twice the rounds
# of the rows above.  Target: 1 in 64 / off >= 0.97 (histograms cost at
# most 3%).
hist_run() {	# hist_run BACKEND N: prints "RATIO RATIO_CPU OFF_IOPS ON_IOPS"
	local j
	j=$("$rumpblk" bench --json --backend "$1" --pattern randread --bs 4K \
	    --threads 1 --seconds "$secs" --lat-compare "$2" "$img" 2>/dev/null)
	[ -n "$j" ] || { echo "inproc.sh: bench $1 --lat-compare $2 failed" >&2
	    echo "0 0 0 0"; return; }
	echo "{\"tool\":\"rumpblk-$1\",\"pattern\":\"randread\",\"bs\":\"4K\",\"threads\":1,\"lat_compare\":$2,\"result\":$j}" >>"$out"
	echo "$j" | jq -r '.lat_compare | "\(.ratio) \(.ratio_cpu) \(.off.iops) \(.on.iops)"'
}
declare -A hr hc ho hn
for r in $(seq $((2 * rounds))); do
	for b in pio mmap; do
		for n in 64 1; do
			read -r x y o w <<<"$(hist_run "$b" "$n")"
			hr[$b/$n]+="$x " hc[$b/$n]+="$y " ho[$b/$n]+="$o "
			hn[$b/$n]+="$w "
		done
	done
done
for b in pio mmap; do
	awk -v b="$b" \
	    -v off="$(echo "${ho[$b/64]}" | median)" \
	    -v on="$(echo "${hn[$b/64]}" | median)" \
	    -v r="$(echo "${hr[$b/64]}" | median)" \
	    -v rc="$(echo "${hc[$b/64]}" | median)" \
	    -v r1="$(echo "${hr[$b/1]}" | median)" \
	    -v rc1="$(echo "${hc[$b/1]}" | median)" 'BEGIN {
	printf "histograms, 4K randread x1, %s: off %.0f IOPS, on (1 in 64, " \
	    "the default) %.0f IOPS: on/off %.3f, per CPU s %.3f (target " \
	    ">= 0.97); every request timed: %.3f, per CPU s %.3f\n", b, off,
	    on, r, rc, r1, rc1 }'
done

# Queue depth 32, 4 KiB random reads (issue #7): rumpblk bench --qd 32
# over uring and pio against fio's io_uring and libaio engines at
# iodepth 32 on the cached image, and over direct against the same
# engines with direct=1.  Targets: uring >= 0.9x fio io_uring (cached),
# direct >= 0.9x fio io_uring direct=1.  Medians of $rounds rounds.
qd_run() {	# qd_run TOOL: prints IOPS
	local j
	case $1 in
	fio-io_uring|fio-libaio|fio-io_uring-direct|fio-libaio-direct)
		local e=${1#fio-} d=0
		case $e in *-direct) e=${e%-direct}; d=1 ;; esac
		$have_fio || { echo 0; return; }
		j=$(fio --name=inproc --filename="$img" --rw=randread --bs=4k \
		    --iodepth=32 --ioengine="$e" --direct=$d --time_based \
		    --runtime="${secs}s" --size="$bytes" --norandommap \
		    --randrepeat=0 --invalidate=0 --output-format=json \
		    2>/dev/null | jq -c '{iops: .jobs[0].read.iops}') ;;
	rumpblk-*)
		j=$("$rumpblk" bench --json --backend "${1#rumpblk-}" --qd 32 \
		    --pattern randread --bs 4K --seconds "$secs" "$img") ;;
	esac
	[ -n "$j" ] || { echo "inproc.sh: $1 qd32 failed" >&2; echo 0
	    return; }
	echo "{\"tool\":\"$1\",\"pattern\":\"randread\",\"bs\":\"4K\",\"qd\":32,\"result\":$j}" >>"$out"
	echo "$j" | jq '.iops'
}
# Run order: each rumpblk row right after the fio row it is compared with.
qtools="fio-io_uring rumpblk-uring fio-libaio rumpblk-pio"
qtools="$qtools fio-io_uring-direct rumpblk-direct fio-libaio-direct"
declare -A qv qm
for r in $(seq "$rounds"); do
	for t in $qtools; do
		qv[$t]+="$(qd_run "$t") "
	done
done
echo
echo "4K randread, queue depth 32 (IOPS, medians):"
for t in $qtools; do
	qm[$t]=$(echo "${qv[$t]}" | median)
	printf '  %-22s %10.0f\n' "$t" "${qm[$t]}"
done
awk -v u="${qm[rumpblk-uring]}" -v fu="${qm[fio-io_uring]}" \
    -v d="${qm[rumpblk-direct]}" -v fd="${qm[fio-io_uring-direct]}" \
    -v pu="$(pairmed "${qv[fio-io_uring]}" "${qv[rumpblk-uring]}")" \
    -v pd="$(pairmed "${qv[fio-io_uring-direct]}" "${qv[rumpblk-direct]}")" \
    'BEGIN { printf "uring / fio io_uring %.2f (paired %.2f), direct / " \
    "fio io_uring direct=1 %.2f (paired %.2f) (targets >= 0.90)\n",
    fu ? u / fu : 0, pu, fd ? d / fd : 0, pd }'
echo "results: $out"
