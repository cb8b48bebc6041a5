#!/bin/bash
# dio-qd.sh: 4 KiB random reads at queue depth 32, in-process through
# rumpblk_strategy (bench/qdbench.c) against fio's io_uring and libaio
# engines on the same file in the same run:
#   cached image:   uring and pio vs fio io_uring / libaio, buffered
#   O_DIRECT:       direct vs fio io_uring / libaio with direct=1
# Targets (issue #7): uring >= 0.9x fio io_uring (cached), direct >= 0.9x
# fio io_uring direct=1.  Prints a table and the ratios.
#
# usage: bench/dio-qd.sh [BUILDDIR] [SECONDS]
# The scratch image (512 MiB) is made under TMPDIR or /var/tmp, which
# must take O_DIRECT (not ramfs), and removed at the end.
#
# XXX(#7): when `rumpblk bench` takes --backend direct|uring (mmap
# branch), bench/inproc.sh should carry these rows and this script go.
set -eu
build=${1:-build}
secs=${2:-5}
qd=32
src=$(cd "$(dirname "$0")/.." && pwd)
command -v fio >/dev/null || { echo "dio-qd: fio is not installed" >&2; exit 1; }
[ -f "$build/lib/librumpblk.a" ] || { echo "dio-qd: no $build/lib/librumpblk.a (build first)" >&2; exit 1; }

work=$(mktemp -d "${TMPDIR:-/var/tmp}/rumpblk-dioqd.XXXXXX")
trap 'rm -rf "$work"' EXIT
cc -O2 -D_GNU_SOURCE -I"$src/include" "$src/bench/qdbench.c" \
    "$build/lib/librumpblk.a" $(pkg-config --libs liburing 2>/dev/null) \
    -lpthread -o "$work/qdbench"
img=$work/bench.img
dd if=/dev/urandom of="$img" bs=1M count=512 status=none

fio_iops() {	# fio_iops ENGINE DIRECT
	cat "$img" >/dev/null
	fio --name=dioqd --filename="$img" --rw=randread --bs=4k \
	    --iodepth=$qd --ioengine="$1" --direct="$2" --invalidate=0 \
	    --time_based --runtime="$secs" --output-format=json 2>/dev/null |
	    python3 -c 'import json,sys; print(round(json.load(sys.stdin)["jobs"][0]["read"]["iops"]))'
}
rb_iops() {	# rb_iops BACKEND
	cat "$img" >/dev/null
	"$work/qdbench" --backend "$1" --qd $qd --seconds "$secs" "$img" |
	    python3 -c 'import json,sys; j=json.load(sys.stdin); assert j["backend"] == sys.argv[1], j; print(round(j["iops"]))' "$1"
}

f_uring=$(fio_iops io_uring 0)
f_aio=$(fio_iops libaio 0)
r_uring=$(rb_iops uring)
r_pio=$(rb_iops pio)
f_uring_d=$(fio_iops io_uring 1)
f_aio_d=$(fio_iops libaio 1)
r_direct=$(rb_iops direct)

printf '4 KiB random reads, queue depth %d, %s s each, %s\n' $qd "$secs" \
    "$(stat -f -c %T "$img")"
printf '%-34s %10s\n' "run" "IOPS"
printf '%-34s %10s\n' "fio io_uring (cached)" "$f_uring"
printf '%-34s %10s\n' "fio libaio (cached)" "$f_aio"
printf '%-34s %10s\n' "rumpblk uring (cached)" "$r_uring"
printf '%-34s %10s\n' "rumpblk pio, worker pool (cached)" "$r_pio"
printf '%-34s %10s\n' "fio io_uring direct=1" "$f_uring_d"
printf '%-34s %10s\n' "fio libaio direct=1" "$f_aio_d"
printf '%-34s %10s\n' "rumpblk direct" "$r_direct"
python3 - "$r_uring" "$f_uring" "$r_direct" "$f_uring_d" <<'PY'
import sys
ru, fu, rd, fd = map(float, sys.argv[1:])
print(f"uring / fio io_uring (cached):    {ru / fu:.2f}  (target >= 0.90)")
print(f"direct / fio io_uring direct=1:   {rd / fd:.2f}  (target >= 0.90)")
PY
