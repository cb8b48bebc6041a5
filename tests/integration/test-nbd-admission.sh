#!/bin/bash
# test-nbd-admission: handshake deadline and fair admission (issue 14).
# Connections that never finish their handshake must not lock real
# clients out: each case runs tests/integration/nbd-admission.py as the
# --run command of a captive "rumpblk serve" on a Unix socket and a TCP
# port of 127.0.0.1, and checks the server's log afterwards.
#
#   flood     1000 idle TCP + 16 idle Unix connections held (the server
#             starts with a soft RLIMIT_NOFILE of 1024 and must raise it),
#             libnbd clients served at once (--handshake-timeout 0)
#   deadline  --handshake-timeout 2: the idle ones, and one that trickles
#             a byte every 100 ms, are closed after the deadline, each
#             logged with its peer (rate-limited)
#   slow      --handshake-timeout 20: a handshake sent a byte every 100 ms
#             that ends in time is served
#   evict     --max-handshakes 8: the oldest handshake makes room;
#             --max-connections 2: a third client in transmission is
#             refused (NBD_REP_ERR_POLICY) until one leaves
#
# The only deadlines are generous bounds on what the server must do (60 s
# in the helper, NBD_TIMEOUT around each server).
. "$RUMPBLK_SRCDIR/tests/functions.sh"
. "$RUMPBLK_SRCDIR/tests/integration/nbd-functions.sh"
requires /usr/bin/python3 -c 'import nbd'

helper=$RUMPBLK_SRCDIR/tests/integration/nbd-admission.py
hard=$(ulimit -Hn)
if [ "$hard" != unlimited ] && [ "$hard" -lt 1400 ]; then
	echo "$0: test skipped: the hard RLIMIT_NOFILE ($hard) cannot hold" \
	    "1000 connections on both ends"
	exit 77
fi

img=$tmp/disk.img
truncate -s 16M "$img" || fail "cannot create $img"

# admission CASE LOG SERVE-ARGS...: the case in a captive server, at a
# soft descriptor limit of 1024 (the server raises it), its log in LOG.
admission() {
	local c=$1 log=$2 rc
	shift 2
	(
		ulimit -Sn 1024 || exit 1
		serve --socket "$tmp/s" --listen 127.0.0.1:0 "$@" --run \
		    "/usr/bin/python3 '$helper' $c --port \"\$port\" \
		    --unix \"\$unixsocket\" --pid \"\$pid\" $timeout" "$img"
	) >"$tmp/$c.out" 2>"$log"
	rc=$?
	cat "$tmp/$c.out"
	[ "$rc" = 77 ] && { echo "$0: test skipped: $c: $(tail -n 1 \
	    "$tmp/$c.out")"; exit 77; }
	[ "$rc" = 0 ] || { cat "$log"; fail "case $c: exit status $rc"; }
	echo "ok: $c"
}

timeout=
admission flood "$tmp/flood.log" --handshake-timeout 0
! grep -q "closed" "$tmp/flood.log" ||
    fail "flood: the server closed connections: $(cat "$tmp/flood.log")"

timeout="--timeout 2"
admission deadline "$tmp/deadline.log" --handshake-timeout 2
log=$tmp/deadline.log
# The rate limit keeps the first lines of each second, whichever kind of
# peer they name: every line names one, in one of the two forms.
grep -qE '^rumpblk serve: (\([0-9]+ lines like this one not logged\) )?client [0-9]+ \((127\.0\.0\.1:[0-9]+|unix)\): closed: no handshake within 2\.000 s \(--handshake-timeout\)$' "$log" ||
    fail "deadline: no log line names its peer: $(head -n 20 "$log")"
bad=$(grep 'closed: no handshake within' "$log" | grep -vE '^rumpblk serve: (\([0-9]+ lines like this one not logged\) )?client [0-9]+ \((127\.0\.0\.1:[0-9]+|unix)\): ' | head -n 3)
[ -z "$bad" ] || fail "deadline: a line names no peer: $bad"
# 1017 connections closed (1016 idle, 1 trickling), but the log is
# rate-limited (10 lines a second of a kind): far fewer lines, and the
# rest counted: "N more clients closed: ..." once a second is over, or
# "(N lines like this one not logged) client ..." before the next line
# of the kind when that comes first (on a slow machine the closes span
# seconds).
n=$(wc -l <"$log")
[ "$n" -lt 200 ] || fail "deadline: $n log lines for 1017 closes"
sum=$(awk '/closed: no handshake within 2\.000 s/ { n++ }
    /closed: no handshake within 2\.000 s/ &&
    match($0, /\(([0-9]+) lines like this one not logged\)/) {
	s = substr($0, RSTART + 1); sub(/ .*/, "", s); n += s }
    / more clients closed: no handshake in time / { n += $3 }
    END { print n + 0 }' "$log")
[ "$sum" = 1017 ] ||
    fail "deadline: $sum closes logged or counted, not 1017: $(cat "$log")"
# Each connection is closed (and logged) at most once.
dups=$(grep -oE 'client [0-9]+ ' "$log" | sort | uniq -d)
[ -z "$dups" ] || fail "deadline: logged twice: $dups"

timeout="--timeout 20"
admission slow "$tmp/slow.log" --handshake-timeout 20
! grep -q "closed" "$tmp/slow.log" ||
    fail "slow: a connection was closed: $(cat "$tmp/slow.log")"

timeout=
admission evict "$tmp/evict.log" --handshake-timeout 0 \
    --max-handshakes 8 --max-connections 2
log=$tmp/evict.log
grep -qE '^rumpblk serve: client 1 \(127\.0\.0\.1:[0-9]+\): closed for a new client: 8 handshakes under way already \(--max-handshakes\)$' "$log" ||
    fail "evict: the oldest (client 1) was not logged closed: $(cat "$log")"
grep -qE '^rumpblk serve: client 2 \(unix\): closed for a new client' "$log" ||
    fail "evict: client 2 was not logged closed: $(cat "$log")"
grep -qE ': refused: 2 clients in transmission already \(--max-connections\)$' "$log" ||
    fail "evict: no refusal logged: $(cat "$log")"
exit 0
