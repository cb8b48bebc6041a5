#!/bin/bash
# fuse.sh: rumpblk's own FUSE export (rumpblk serve --fuse) against the
# way users reached a rumpblk device as a file before it, nbdfuse over
# "rumpblk serve" on a Unix socket, with fio on the file, on the same
# page-cached image, in the same run (issue 16: the target is >= 1.2x).
#
# Both sides run the same server binary, backend and image; the only
# difference is the path from the file to rumpblk_strategy: FUSE ->
# rumpblk, or FUSE -> nbdfuse -> libnbd -> socket -> rumpblk's NBD
# server.  fio opens the file with O_DIRECT (direct=1), so that the
# kernel's page cache answers nothing on either side (nbdfuse's file
# would otherwise be served from it).
#
# Profiles (fio, one job each; psync is queue depth 1, libaio depth 16):
#   psync-randread-4k   psync-randwrite-4k   psync-seqread-1m
#   psync-seqwrite-1m   aio-randread-4k      aio-randwrite-4k
#   aio-seqread-1m      aio-seqwrite-1m
#
# A round sets up each side in turn (the order alternates from round to
# round), reads the whole file once through it (so that neither side's
# first profile pays for mapping the image), runs every profile on it
# and takes it down; BENCH_ROUNDS rounds (at least 3) are interleaved
# that way, and the table gives the median throughput of each side and
# the median over rounds of the ratio FUSE / nbdfuse.  The default is 5
# rounds: the queue-depth-1 profiles are a ping-pong of two threads, and
# on a 2-core machine shared with other work single runs of them vary
# by a factor of two.  The CPU time of the processes serving each side (rumpblk, and
# nbdfuse on the other side) is measured too, per GiB moved.
#
# Environment: BENCH_SECONDS (5, per run), BENCH_ROUNDS (5), BENCH_SIZE
# (512M), BENCH_PROFILES (all), BENCH_DIR (scratch, default /var/tmp),
# RUMPBLK (default build/cli/rumpblk), RUMPBLK_ARGS (extra serve options
# for both sides, e.g. "--backend pio").  Needs root (or a user allowed
# to mount FUSE), /dev/fuse, fio and nbdfuse (libnbd-bin).
set -u
src=$(cd "$(dirname "$0")/.." && pwd)
. "$src/bench/lib.sh"
secs=${BENCH_SECONDS:-5}
rounds=${BENCH_ROUNDS:-5}
size=${BENCH_SIZE:-512M}
all_profiles="psync-randread-4k psync-randwrite-4k psync-seqread-1m"
all_profiles="$all_profiles psync-seqwrite-1m aio-randread-4k"
all_profiles="$all_profiles aio-randwrite-4k aio-seqread-1m aio-seqwrite-1m"
profiles=${BENCH_PROFILES:-$all_profiles}
if [ -n "${1:-}" ] && [ -z "${RUMPBLK:-}" ]; then
	RUMPBLK=$(cd "$1" && pwd)/cli/rumpblk
fi
RUMPBLK=${RUMPBLK:-$src/build/cli/rumpblk}
hz=$(getconf CLK_TCK)

die() {
	echo "fuse.sh: $*" >&2
	exit 1
}
for t in fio nbdfuse fusermount3; do
	command -v $t >/dev/null || die "$t is needed (debian-packages.txt)"
done
[ -x "$RUMPBLK" ] || die "$RUMPBLK is not built (make build)"
[ -c /dev/fuse ] || die "no /dev/fuse on this host"
[ "$rounds" -ge 3 ] || die "BENCH_ROUNDS must be at least 3 (medians)"

dir=$(mktemp -d "${BENCH_DIR:-/var/tmp}/rumpblk-bench-fuse.XXXXXX") ||
    die "no scratch directory"
img=$dir/disk.img
ffile=$dir/fuse-file		# rumpblk serve --fuse
ndir=$dir/nbdfuse		# nbdfuse's mount; the file is $ndir/nbd
sock=$dir/nbd.sock
res=$dir/results.tsv
mkdir "$ndir"
: >"$ffile"
spid= npid=

teardown() {
	local i
	if [ -n "$npid" ]; then
		fusermount3 -u "$ndir" 2>/dev/null || fusermount3 -u -z "$ndir"
		for ((i = 0; i < 100; i++)); do
			kill -0 "$npid" 2>/dev/null || break
			sleep 0.1
		done
		kill "$npid" 2>/dev/null
		wait "$npid" 2>/dev/null
		npid=
	fi
	if [ -n "$spid" ]; then
		kill "$spid" 2>/dev/null
		wait "$spid" 2>/dev/null
		spid=
	fi
	for m in "$ffile" "$ndir"; do
		awk -v p="$m" '$5 == p { f = 1 } END { exit !f }' \
		    /proc/self/mountinfo && umount -l "$m" 2>/dev/null
	done
	return 0
}
cleanup() {
	teardown
	[ -n "${BENCH_KEEP:-}" ] || rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "fuse.sh: $size image, $rounds rounds of ${secs}s runs; scratch $dir"
random_image "$img" "$(numfmt --from=iec "$size")" || die "cannot write $img"

# wait_file PIDFILE PID: the pidfile appears (bounded), or die.
wait_file() {
	local i
	for ((i = 0; i < 300; i++)); do
		[ -s "$1" ] && return 0
		kill -0 "$2" 2>/dev/null || die "a server exited early"
		sleep 0.1
	done
	die "no $1 within 30 s"
}

# setup SIDE: start it; $file is the file fio is to use, $pids what to
# measure the CPU of.
setup() {
	rm -f "$dir/pid" "$dir/npid" "$sock"
	case $1 in
	fuse)
		# shellcheck disable=SC2086
		"$RUMPBLK" serve ${RUMPBLK_ARGS:-} --fuse "$ffile" \
		    --pidfile "$dir/pid" "$img" 2>>"$dir/server.log" &
		spid=$!
		wait_file "$dir/pid" "$spid"
		file=$ffile
		pids=$spid
		;;
	nbdfuse)
		# shellcheck disable=SC2086
		"$RUMPBLK" serve ${RUMPBLK_ARGS:-} --socket "$sock" \
		    --pidfile "$dir/pid" "$img" 2>>"$dir/server.log" &
		spid=$!
		wait_file "$dir/pid" "$spid"
		nbdfuse -P "$dir/npid" "$ndir/nbd" --unix "$sock" \
		    2>>"$dir/nbdfuse.log" &
		npid=$!
		wait_file "$dir/npid" "$npid"
		file=$ndir/nbd
		pids="$spid $npid"
		;;
	esac
}

# cpu_ticks PIDS: utime + stime of every thread of the processes.
cpu_ticks() {
	local p t=0 v
	for p in "$@"; do
		v=$(awk '{ print $14 + $15 }' "/proc/$p/stat" 2>/dev/null) || v=0
		t=$((t + ${v:-0}))
	done
	echo $t
}

# run_profile SIDE PROFILE ROUND: one fio run, one line in $res.
run_profile() {
	local side=$1 prof=$2 round=$3 engine rw bs depth c0 c1 out bw iops
	case $prof in
	psync-*) engine=psync depth=1 ;;
	aio-*) engine=libaio depth=16 ;;
	esac
	case $prof in
	*-randread-4k) rw=randread bs=4k ;;
	*-randwrite-4k) rw=randwrite bs=4k ;;
	*-seqread-1m) rw=read bs=1M ;;
	*-seqwrite-1m) rw=write bs=1M ;;
	esac
	c0=$(cpu_ticks $pids)
	out=$(timeout -k 10 $((secs + 120)) fio --name=b --filename="$file" \
	    --ioengine=$engine --iodepth=$depth --direct=1 --rw=$rw --bs=$bs \
	    --size="$size" --time_based --runtime="$secs" --ramp_time=1 \
	    --randrepeat=0 --norandommap --output-format=terse \
	    --terse-version=3 2>>"$dir/fio.log") ||
	    die "fio $prof on $side failed (see $dir/fio.log)"
	c1=$(cpu_ticks $pids)
	# terse v3: field 7/8 read KiB/s and IOPS, 48/49 write.
	case $rw in
	*read) bw=$(echo "$out" | awk -F';' '{ print $7 }')
	    iops=$(echo "$out" | awk -F';' '{ print $8 }') ;;
	*) bw=$(echo "$out" | awk -F';' '{ print $48 }')
	    iops=$(echo "$out" | awk -F';' '{ print $49 }') ;;
	esac
	printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$prof" "$side" "$round" "$bw" \
	    "$iops" "$((c1 - c0))" >>"$res"
}

: >"$res"
for ((r = 1; r <= rounds; r++)); do
	if ((r % 2)); then order="fuse nbdfuse"; else order="nbdfuse fuse"; fi
	for side in $order; do
		setup "$side"
		timeout 300 dd if="$file" of=/dev/null bs=1M iflag=direct \
		    status=none || die "cannot read $file"
		for prof in $profiles; do
			run_profile "$side" "$prof" "$r"
		done
		teardown
	done
	echo "fuse.sh: round $r of $rounds done"
done

# The table: per profile, median MiB/s and IOPS of each side, the median
# of the per-round ratios, and CPU seconds per GiB moved of each side.
col() {	# col PROFILE SIDE FIELD: that field of every round, in order
	awk -F'\t' -v p="$1" -v s="$2" -v f="$3" \
	    '$1 == p && $2 == s { printf "%s ", $f }' "$res"
}
cpu_per_gib() {	# CPU s per GiB: ticks / hz / (KiB/s * secs / 2^20)
	awk -F'\t' -v p="$1" -v s="$2" -v hz="$hz" -v t="$secs" \
	    '$1 == p && $2 == s && $4 > 0 { printf "%.3f ",
	    ($6 / hz) / ($4 * (t + 1) / 1048576) }' "$res" | median
}
echo
printf '%-20s %12s %12s %9s %9s %7s %9s %9s\n' profile "fuse MiB/s" \
    "nbdfuse MiB/s" "fuse IOPS" "nbdf IOPS" ratio "fuse cpu" "nbdf cpu"
below=0
for prof in $profiles; do
	fb=$(col "$prof" fuse 4)
	nb=$(col "$prof" nbdfuse 4)
	fi=$(col "$prof" fuse 5)
	ni=$(col "$prof" nbdfuse 5)
	ratio=$(pairmed "$nb" "$fb")
	printf '%-20s %12.1f %12.1f %9.0f %9.0f %6.2fx %9s %9s\n' "$prof" \
	    "$(echo "$fb" | median | awk '{ print $1 / 1024 }')" \
	    "$(echo "$nb" | median | awk '{ print $1 / 1024 }')" \
	    "$(echo "$fi" | median)" "$(echo "$ni" | median)" "$ratio" \
	    "$(cpu_per_gib "$prof" fuse)" "$(cpu_per_gib "$prof" nbdfuse)"
	awk -v r="$ratio" 'BEGIN { exit !(r < 1.2) }' && below=$((below + 1))
done
echo
echo "ratio: median over rounds of FUSE / nbdfuse throughput (target >= 1.2x);"
echo "cpu: CPU seconds per GiB moved of the serving processes (rumpblk;"
echo "rumpblk + nbdfuse), including the ramp second."
[ "$below" = 0 ] || echo "fuse.sh: $below profile(s) below the 1.2x target"
[ -n "${BENCH_KEEP:-}" ] && echo "raw results: $res"
exit 0
