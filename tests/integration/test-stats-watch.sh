#!/bin/bash
# test-stats-watch: rumpblk ctl PATH stats --watch, the live view (issue
# 17), on a real terminal: tmux (a server of our own, -L) runs the watch
# in a 200x50 pane while a libnbd client reads, writes and flushes
# through a server with a write cache and a delay rule on reads
# (delay,op=read,ms=20).  Captured panes must show:
#
#   - the header and a row per op (read, write, flush) of unit 0;
#   - the delay in the read row's percentiles: p50 at least 20 ms (less
#     the histogram's half bucket, 1/16), since every read is delayed
#     that long (a lower bound the rule guarantees, not a timing);
#   - the unit's line: one connection, unflushed bytes of the cache, the
#     delay firings of the tick; the delay class's own row, and the
#     connection's row;
#
# then, with standard output not a terminal, plain blocks (no escape
# sequences), --count views and exit 0; bad --interval and unknown
# arguments are usage errors (2).
. "$RUMPBLK_SRCDIR/tests/functions.sh"
. "$RUMPBLK_SRCDIR/tests/integration/nbd-functions.sh"

load=$RUMPBLK_SRCDIR/tests/integration/stats-watch-load.py
img=$tmp/disk.img
truncate -s 16M "$img"
ctl=$tmp/ctl

start_nbd "$tmp/pid" "$tmp/sock" --control "$ctl" --write-cache 1M \
    --fault delay,op=read,ms=20 "$img" 2>"$tmp/serve.err"
spid=$(cat "$tmp/pid")

/usr/bin/python3 "$load" "$(nbd_uri "$tmp/sock")" "$tmp/stop" &
lpid=$!
cleanup_fn "touch '$tmp/stop'; kill $lpid 2>/dev/null; wait $lpid 2>/dev/null"

# Our own tmux server (-L): nothing else's is touched, and kill-server
# ends only it.
tsock=rumpblk-watch-$$
cleanup_fn "tmux -L $tsock kill-server 2>/dev/null"
tmux -L "$tsock" -f /dev/null new-session -d -s watch -x 200 -y 50 \
    "$RUMPBLK ctl $ctl stats --watch --interval 0.5; sleep 60" ||
    fail "tmux would not start the watch"

# ns VALUE: a latency as the view prints it ("850ns", "1.2us", "20.12ms",
# "1.50s") in nanoseconds.
ns() {
	awk -v v="$1" 'BEGIN {
		if (v ~ /ns$/) m = 1; else if (v ~ /us$/) m = 1e3;
		else if (v ~ /ms$/) m = 1e6; else if (v ~ /s$/) m = 1e9;
		else { print -1; exit }
		sub(/[a-z]+$/, "", v); printf "%.0f\n", v * m }'
}

# Wait (at most 30 s) for a pane with a read row that has percentiles
# and a tick in which the rule fired.
found=
for ((i = 0; i < 150; i++)); do
	tmux -L "$tsock" capture-pane -p -t watch >"$tmp/pane" 2>/dev/null
	if awk '$1 == "0" && $2 == "read" && $5 != "-" { r = 1 }
	    /^unit 0: .*faults: .*delay [0-9]/ { f = 1 }
	    END { exit !(r && f) }' "$tmp/pane"; then
		found=1
		break
	fi
	sleep 0.2
done
[ -n "$found" ] || fail "no read row with percentiles within 30 s; pane:
$(cat "$tmp/pane")"
cp "$tmp/pane" "$tmp/pane.shown"

grep -qE '^unit op +IOPS +MiB/s +p50 +p90 +p99 +p99\.9 +max +aqu-sz$' \
    "$tmp/pane" || fail "no header row: $(cat "$tmp/pane")"
for op in read write flush; do
	grep -qE "^ +0 $op " "$tmp/pane" || fail "no $op row: $(cat "$tmp/pane")"
done
read -r p50 p99 < <(awk '$1 == "0" && $2 == "read" { print $5, $7 }' \
    "$tmp/pane")
min=$((20000000 * 15 / 16))
[ "$(ns "$p50")" -ge "$min" ] ||
    fail "read p50 $p50 is below the 20 ms delay: $(cat "$tmp/pane")"
[ "$(ns "$p99")" -ge "$(ns "$p50")" ] || fail "read p99 $p99 < p50 $p50"
grep -qE '^unit 0: in flight [0-9]+, unflushed [0-9.]+ [KMG]?i?B \(1\.0 MiB\), connections 1, errors 0, faults: .*delay [0-9]+' \
    "$tmp/pane" || fail "no unit line with the cache, one connection and" \
    "delay firings: $(cat "$tmp/pane")"
d50=$(awk '$1 == "0" && $2 == "delay" && $4 == "fault" { print $5 }' \
    "$tmp/pane")
[ -n "$d50" ] && [ "$(ns "$d50")" -ge "$min" ] ||
    fail "no delay row at 20 ms or more: $(cat "$tmp/pane")"
grep -qE '^ +[0-9]+ +0 +[0-9.]+ .* nbd#1 unix$' "$tmp/pane" ||
    fail "no connection row: $(cat "$tmp/pane")"

# Not a terminal: plain blocks, N of them, and exit 0.
timeout -k 5 60 "$RUMPBLK" ctl "$ctl" stats --watch --interval 0.2 \
    --count 2 >"$tmp/plain" 2>"$tmp/plain.err" ||
    fail "stats --watch --count 2 failed: $(cat "$tmp/plain.err")"
grep -q $'\033' "$tmp/plain" && fail "escape sequences in plain output"
[ "$(grep -c '^unit op ' "$tmp/plain")" = 2 ] ||
    fail "not two views: $(cat "$tmp/plain")"
grep -qE '^ +0 read ' "$tmp/plain" || fail "no read row in plain output"

expect_one_error 2 "interval" ctl "$ctl" stats --watch --interval 0
expect_one_error 2 "unknown argument" ctl "$ctl" stats --watch --bogus

touch "$tmp/stop"
wait "$lpid" || fail "the client failed"
stop_nbd "$spid" "serve" || fail "the server exited non-zero"
echo "test-stats-watch: ok; the pane:"
cat "$tmp/pane.shown"
