#!/bin/bash
# nbd-backing.sh BUILDDIR: what putting rumpblk in front of another NBD
# server costs (issue 13): fio's nbd engine against "nbdkit memory"
# directly, and against "rumpblk serve nbd+unix:///?socket=NBDKIT" in
# front of the same nbdkit, in the same run, each round running the pair
# back to back (the order alternating).  Profiles: 4 KiB random reads at
# QD32 (2 jobs x iodepth 16) and 1 MiB sequential reads (QD8), and, for
# information, 4 KiB random writes at QD32.  Ratios: through rumpblk over
# direct, as a ratio of medians and as the median of the per-round
# ratios.  Target (issue 13): reads >= 0.8.
#
# The peers, for scale: the same chain through nbdkit's nbd plugin and
# through qemu-nbd (its nbd block driver), in front of the same nbdkit,
# run in the same rounds; their ratios over direct are printed beside
# rumpblk's.  And the least a proxy can do there: the same chain
# through bench/fwd.c, which parses nothing and moves bytes both ways in
# one thread per client, by splice(2) (fwd) and by recv and send (fwd
# -c); whatever a server adds on top (the protocol, its layers), it
# cannot expect to run faster than the better of the two.
#
# Both servers, fio and the client share the machine: on 2 CPUs the
# chain's second hop (a server, and libnbd's client in it) competes with
# fio and nbdkit for them.
#
# Environment: BENCH_SECONDS (5), BENCH_ROUNDS (3), BENCH_SIZE (512M).
set -u
build=${1:-build}
src=$(cd "$(dirname "$0")/.." && pwd)
secs=${BENCH_SECONDS:-5}
rounds=${BENCH_ROUNDS:-3}
size=${BENCH_SIZE:-512M}
RUMPBLK=${RUMPBLK:-$(cd "$build" && pwd)/cli/rumpblk}
. "$src/bench/lib.sh"

die() {
	echo "nbd-backing: $*" >&2
	exit 1
}
[ -x "$RUMPBLK" ] || die "$RUMPBLK is not built (make build)"
FWD=$(cd "$build" && pwd)/bench/fwd
[ -x "$FWD" ] || die "$FWD is not built (make build)"
command -v nbdkit >/dev/null || die "nbdkit is needed (debian-packages.txt)"
fio --enghelp=nbd >/dev/null 2>&1 || die "this fio has no nbd engine"

work=$(mktemp -d "${BENCH_DIR:-/var/tmp}/rumpblk-nbdbk.XXXXXX")
nkpid= srvpid= pkpid= pqpid= fwpid= fcpid=
cleanup() {
	local p
	for p in $srvpid $pkpid $pqpid $fwpid $fcpid; do
		kill "$p" 2>/dev/null && wait "$p" 2>/dev/null
	done
	[ -n "$nkpid" ] && kill -KILL "$nkpid" 2>/dev/null && wait "$nkpid" 2>/dev/null
	rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

nk=$work/nk.sock
sock=$work/s
bytes=$(numfmt --from=iec "$size") || die "bad BENCH_SIZE $size"

nbdkit -f -U "$nk" -P "$work/nk.pid" memory "$bytes" 2>"$work/nbdkit.err" &
nkpid=$!
for ((i = 0; i < 100; i++)); do
	[ -s "$work/nk.pid" ] && break
	sleep 0.1
done
[ -s "$work/nk.pid" ] || die "nbdkit did not start: $(cat "$work/nbdkit.err")"
# Fill it, so that reads move data (nbdkit memory reads holes fast).
nbdcopy -C 4 <(head -c "$bytes" /dev/urandom) "nbd+unix:///?socket=$nk" ||
    die "filling nbdkit"

rm -f "$sock"
"$RUMPBLK" serve --socket "$sock" --pidfile "$work/pid" \
    "nbd+unix:///?socket=$nk" 2>"$work/server.log" &
srvpid=$!
for ((i = 0; i < 300; i++)); do
	[ -s "$work/pid" ] && [ -S "$sock" ] && break
	kill -0 $srvpid 2>/dev/null || die "serve exited: $(cat "$work/server.log")"
	sleep 0.1
done
[ -S "$sock" ] || die "serve did not start"

# The peers' chains.
nbdkit -f -U "$work/pk.sock" -P "$work/pk.pid" nbd socket="$nk" \
    2>"$work/pk.err" &
pkpid=$!
qemu-nbd -t -e 8 -k "$work/pq.sock" --cache=none --image-opts \
    "driver=nbd,server.type=unix,server.path=$nk" 2>"$work/pq.err" &
pqpid=$!
"$FWD" "$work/fw.sock" "$nk" 2>"$work/fw.err" &
fwpid=$!
"$FWD" -c "$work/fc.sock" "$nk" 2>"$work/fc.err" &
fcpid=$!
for ((i = 0; i < 100; i++)); do
	[ -S "$work/pk.sock" ] && [ -S "$work/pq.sock" ] &&
	    [ -S "$work/fw.sock" ] && [ -S "$work/fc.sock" ] && break
	sleep 0.1
done
[ -S "$work/fw.sock" ] || die "fwd did not start: $(cat "$work/fw.err")"
[ -S "$work/fc.sock" ] || die "fwd -c did not start: $(cat "$work/fc.err")"
[ -S "$work/pk.sock" ] || die "nbdkit nbd did not start: $(cat "$work/pk.err")"
[ -S "$work/pq.sock" ] || die "qemu-nbd did not start: $(cat "$work/pq.err")"

# run SOCKET RW BS DEPTH JOBS: IOPS (4K) or MiB/s (1M) of one fio run.
run() {
	fio --name=b --ioengine=nbd --uri="nbd+unix:///?socket=$1" \
	    --rw="$2" --bs="$3" --iodepth="$4" --numjobs="$5" --time_based \
	    --runtime="${secs}s" --size="$bytes" --norandommap \
	    --randrepeat=0 --group_reporting --output-format=json \
	    --output="$work/fio.json" >"$work/fio.err" 2>&1 ||
	    die "fio $2 $3: $(cat "$work/fio.err")"
	/usr/bin/python3 -c '
import json, sys
j = json.load(open(sys.argv[1]))["jobs"][0]
r = j["read"]; w = j["write"]
if sys.argv[2] == "1M":
    print((r["bw"] + w["bw"]) / 1024)
else:
    print(r["iops"] + w["iops"])' "$work/fio.json" "$3"
}

profiles="randread:4k:16:2 read:1M:8:1 randwrite:4k:16:2"
echo "nbd-backing: nbdkit memory $size, $rounds rounds of ${secs}s," \
    "$(fio --version), $(nproc) CPUs"
declare -A v
for r in $(seq "$rounds"); do
	for p in $profiles; do
		IFS=: read -r rw bs qd jobs <<<"$p"
		if [ $((r % 2)) = 1 ]; then
			order="direct chain nbdkit qemu fwd fwdc"
		else
			order="fwdc fwd qemu nbdkit chain direct"
		fi
		for o in $order; do
			case $o in
			direct)	s=$nk ;;
			chain)	s=$sock ;;
			nbdkit)	s=$work/pk.sock ;;
			qemu)	s=$work/pq.sock ;;
			fwd)	s=$work/fw.sock ;;
			fwdc)	s=$work/fc.sock ;;
			esac
			v[$p/$o]+="$(run "$s" "$rw" "$bs" "$qd" "$jobs") "
		done
	done
	printf '.' >&2
done
echo >&2
printf '%-24s %10s %11s %7s %9s %9s %9s %6s %6s  %s\n' "profile" "nbdkit" \
    "via rumpblk" "ratio" "(paired)" "nbdkit-nbd" "qemu-nbd" "fwd" "fwd-c" \
    "target"
for p in $profiles; do
	IFS=: read -r rw bs qd jobs <<<"$p"
	d=$(echo "${v[$p/direct]}" | median)
	c=$(echo "${v[$p/chain]}" | median)
	pr=$(pairmed "${v[$p/direct]}" "${v[$p/chain]}")
	k=$(echo "${v[$p/nbdkit]}" | median)
	q=$(echo "${v[$p/qemu]}" | median)
	f=$(echo "${v[$p/fwd]}" | median)
	fc=$(echo "${v[$p/fwdc]}" | median)
	unit=IOPS
	[ "$bs" = 1M ] && unit=MiB/s
	t=">= 0.8"
	[ "$rw" = randwrite ] && t="(info)"
	awk -v n="$rw $bs QD$((qd * jobs)) $unit" -v d="$d" -v c="$c" \
	    -v p="$pr" -v k="$k" -v q="$q" -v f="$f" -v fc="$fc" -v t="$t" '
	    BEGIN { printf "%-24s %10.0f %11.0f %7.3f %9.3f %9.3f %9.3f " \
	    "%6.3f %6.3f  %s\n", n, d, c, d ? c / d : 0, p, d ? k / d : 0,
	    d ? q / d : 0, d ? f / d : 0, d ? fc / d : 0, t }'
done
echo "(medians of $rounds rounds; nbdkit-nbd, qemu-nbd, fwd and fwd-c: the" \
    "same chain through those servers, as ratios over direct; fwd and fwd-c" \
    "move bytes and parse nothing, by splice and by recv and send)"
