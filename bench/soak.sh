#!/bin/bash
# soak.sh BUILDDIR: a soak test of 'rumpblk serve' (issue 14): many NBD
# clients for a while, with fault rules coming and going, and then the
# checks that a long-running server must pass.  Not a benchmark of
# speed: its figures are the server's memory and descriptors.
#
#   - SOAK_CLIENTS libnbd clients (64) in SOAK_PROCS processes (8; one
#     thread and handle per client, up to 4 commands in flight each),
#     half the processes over the Unix socket, half over 127.0.0.1, each
#     client reconnecting every 10 to 30 s.  Each owns SOAK_REGION bytes
#     (1M) of the export and runs a random mix of reads, writes,
#     flushes, trims and write-zeroes of 4 to 16 KiB there for
#     BENCH_SECONDS (60), checking every read against a shadow of what
#     it wrote (bench/soak-client.py says how).
#   - Fault rules armed from the start (error, op=read and op=write, p
#     0.001), and a control client that, in a loop, arms error rules on
#     every op and a delay rule, lists them, reads the stats, disarms one
#     and clears them all ('rumpblk ctl PATH fault add/del/list/clear,
#     stats').  At the end it clears them, and each client flushes and
#     reads its whole region back.
#   - The server's VmRSS sampled every 0.5 s; its descriptors counted
#     before the clients connect and after they have all gone.
#
# Checks (exit status 1 if one fails): every client reported; every
# request got a reply; the only errors are EIO, as many as the error
# rules fired (ctl stats); data verified (reads during the run and the
# final read-back); max VmRSS below SOAK_RSS_MAX_MB (default: the
# image's size, which the mmap backend maps, plus 192 MiB); as many
# descriptors after as before; every control command answered ok; the
# server stops on SIGTERM with status 0.
#
# Environment: BENCH_SECONDS (60), SOAK_CLIENTS (64), SOAK_PROCS (8),
# SOAK_REGION (1M), SOAK_RSS_MAX_MB, BENCH_DIR (/var/tmp).
set -u
build=${1:-build}
src=$(cd "$(dirname "$0")/.." && pwd)
secs=${BENCH_SECONDS:-60}
nclients=${SOAK_CLIENTS:-64}
nprocs=${SOAK_PROCS:-8}
RUMPBLK=${RUMPBLK:-$(cd "$build" 2>/dev/null && pwd)/cli/rumpblk}
py=/usr/bin/python3
client=$src/bench/soak-client.py

die() {
	echo "soak: $*" >&2
	exit 1
}
[ -x "$RUMPBLK" ] || die "$RUMPBLK is not built (make build)"
"$py" -c 'import nbd' 2>/dev/null ||
    die "python3-libnbd is needed (debian-packages.txt)"
case $secs in '' | *[!0-9]*) die "BENCH_SECONDS=$secs is not a number" ;; esac
[ "$nprocs" -gt 0 ] && [ $((nclients % nprocs)) = 0 ] ||
    die "SOAK_CLIENTS ($nclients) must be a multiple of SOAK_PROCS ($nprocs)"
region=$(numfmt --from=iec "${SOAK_REGION:-1M}") ||
    die "bad SOAK_REGION ${SOAK_REGION:-}"
[ $((region % 65536)) = 0 ] || die "SOAK_REGION must be a multiple of 64K"
size=$((nclients * region))
rss_bound=${SOAK_RSS_MAX_MB:-$((size / 1048576 + 192))}

work=$(mktemp -d "${BENCH_DIR:-/var/tmp}/rumpblk-soak.XXXXXX") ||
    die "cannot make a scratch directory"
srvpid= smppid= ctlpid= cpids=
cleanup() {
	local p
	touch "$work/stop" 2>/dev/null
	for p in $cpids $ctlpid $smppid; do
		kill "$p" 2>/dev/null
	done
	for p in $cpids $ctlpid $smppid; do
		wait "$p" 2>/dev/null
	done
	if [ -n "$srvpid" ]; then
		kill "$srvpid" 2>/dev/null && wait "$srvpid" 2>/dev/null
	fi
	rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

ctl() {
	"$RUMPBLK" ctl "$work/ctl" "$@" 2>&1
}

truncate -s "$size" "$work/disk.img" || die "cannot make the image"
sock=$work/s
"$RUMPBLK" serve --socket "$sock" --listen 127.0.0.1:0 \
    --control "$work/ctl" --pidfile "$work/pid" \
    --max-connections $((nclients + 16)) \
    --fault 'error,op=read,p=0.001,errno=EIO,seed=1,id=boot-read' \
    --fault 'error,op=write,p=0.001,errno=EIO,seed=2,id=boot-write' \
    "$work/disk.img" 2>"$work/server.log" &
srvpid=$!
spid=$srvpid
for ((i = 0; i < 300; i++)); do
	[ -s "$work/pid" ] && [ -S "$sock" ] && [ -S "$work/ctl" ] && break
	kill -0 "$srvpid" 2>/dev/null ||
	    die "serve exited: $(cat "$work/server.log")"
	sleep 0.1
done
[ -S "$sock" ] && [ -S "$work/ctl" ] || die "serve did not start"
port=$("$py" "$client" port "$srvpid") ||
    die "cannot find the server's TCP port"
fds_before=$(ls "/proc/$srvpid/fd" | wc -l)

# VmRSS and RssAnon (kB) every 0.5 s, until told to stop (bounded).
(
	n=0
	while [ ! -e "$work/stop" ] && [ $n -lt $(( (secs + 300) * 2 )) ]; do
		awk '/^VmRSS:/ { r = $2 } /^RssAnon:/ { a = $2 }
		    END { if (r) print r, a + 0 }' \
		    "/proc/$srvpid/status" 2>/dev/null >>"$work/rss"
		n=$((n + 1))
		sleep 0.5
	done
) &
smppid=$!

# The control client: rules come and go until the clients' time is up,
# then none is left and the clients are told so (the marker).
(
	sent=0 failed=0 i=0
	end=$(( $(date +%s) + secs ))
	send() {
		local out
		sent=$((sent + 1))
		out=$(ctl "$@")
		case $out in
		*'"ok":true'*) ;;
		*) failed=$((failed + 1))
		   echo "ctl $*: ${out:0:300}" >>"$work/ctl.err" ;;
		esac
	}
	while [ "$(date +%s)" -lt "$end" ] && [ $i -lt 2000 ] &&
	    [ ! -e "$work/stop" ]; do
		i=$((i + 1))
		send fault add "error,op=read,p=0.002,errno=EIO,seed=$i,id=rd$i"
		send fault add "error,op=write/trim/zero,p=0.002,errno=EIO,seed=$i,id=wr$i"
		send fault add "error,op=flush,p=0.01,errno=EIO,seed=$i,id=fl$i"
		send fault add "delay,op=any,ms=0.5,p=0.005,seed=$i,id=dl$i"
		sleep 0.5
		send fault list
		send stats
		send fault del "rd$i"
		sleep 0.3
		send fault clear
		sleep 0.2
	done
	send fault clear
	echo "$sent $failed" >"$work/ctl.count"
	touch "$work/cleared"
) &
ctlpid=$!

start=$(date +%s)
echo "soak: $nclients clients in $nprocs processes for $secs s against" \
    "$RUMPBLK serve (pid $srvpid), unix $sock and 127.0.0.1:$port"
per=$((nclients / nprocs))
outs=
for ((p = 0; p < nprocs; p++)); do
	if [ $((p % 2)) = 0 ]; then uri="nbd+unix:///?socket=$sock"
	else uri="nbd://127.0.0.1:$port/"; fi
	"$py" "$client" run "$uri" $((p * per)) "$per" "$region" "$secs" \
	    "$work/cleared" "$((p + 1))" >"$work/client-$p.json" \
	    2>"$work/client-$p.err" &
	cpids+=" $!"
	outs+="${outs:+,}\"$work/client-$p.json\""
done

# The clients end on their own: their time, 30 s for replies, 30 s for
# the marker, the read-back.  Past that, they are stuck.
for p in $cpids; do
	while kill -0 "$p" 2>/dev/null &&
	    [ "$(date +%s)" -lt $((start + secs + 180)) ]; do
		sleep 1
	done
	kill "$p" 2>/dev/null
	wait "$p"
done
cpids=
wait "$ctlpid"
ctlpid=
duration=$(( $(date +%s) - start ))
for ((p = 0; p < nprocs; p++)); do
	[ -s "$work/client-$p.err" ] &&
	    sed "s/^/soak: client process $p: /" "$work/client-$p.err" | head -n 20
done

# The server closes a connection after its client has gone: give it 10 s.
for ((i = 0; i < 100; i++)); do
	fds_after=$(ls "/proc/$srvpid/fd" | wc -l)
	[ "$fds_after" = "$fds_before" ] && break
	sleep 0.1
done
firings=$(ctl stats | "$py" -c '
import json, sys
try:
    print(json.load(sys.stdin)["stats"]["faults"]["by_class"]["error"])
except Exception:
    print(-1)')
touch "$work/stop"
wait "$smppid"
smppid=
kill -TERM "$srvpid"
wait "$srvpid"
server_status=$?
srvpid=

read -r ctl_sent ctl_failed <"$work/ctl.count" 2>/dev/null ||
    { ctl_sent=0 ctl_failed=1; }
[ -s "$work/ctl.err" ] && sed 's/^/soak: /' "$work/ctl.err" | head -n 10
read -r rss_max anon_max rss_n anon_10s anon_last < <(awk '
    { if ($1 > r) r = $1; if ($2 > a) a = $2; n++; if (n == 20) a10 = $2
      last = $2 }
    END { print r + 0, a + 0, n + 0, a10 + 0, last + 0 }' \
    "$work/rss" 2>/dev/null || echo "0 0 0 0 0")
# The server's messages, but for the rules it armed at the start.
grep -v -e '^rumpblk: fault rules: seed' -e '^rumpblk: fault rule .* armed' \
    "$work/server.log" >"$work/server.said"
if [ -s "$work/server.said" ]; then
	echo "soak: the server said:"
	head -n 20 "$work/server.said" | sed 's/^/  /'
fi
transports="$((nprocs - nprocs / 2)) processes on the Unix socket,"
transports+=" $((nprocs / 2)) on 127.0.0.1"
cat >"$work/report.json" <<EOF
{"client_outputs": [$outs], "nclients": $nclients,
 "transports": "$transports",
 "duration": $duration, "pid": $spid,
 "ctl_sent": $ctl_sent, "ctl_failed": $ctl_failed,
 "error_firings": ${firings:--1},
 "rss_max_kb": $rss_max, "anon_max_kb": $anon_max, "rss_samples": $rss_n,
 "anon_10s_kb": $anon_10s, "anon_last_kb": $anon_last,
 "rss_bound_mb": $rss_bound,
 "fds_before": $fds_before, "fds_after": $fds_after,
 "server_status": $server_status}
EOF
"$py" "$client" report "$work/report.json"
