#!/bin/bash
# test-nbd-hostile: hostile NBD clients (tests/integration/nbd-raw.py)
# against one long-running "rumpblk serve".  After every case a normal
# client (nbdinfo, then a libnbd read) must still work, the server must be
# alive with VmRSS under 512 MiB, and the image file must be byte-for-byte
# what it was: no case writes legitimately, and the export is a window
# (--offset 1M --size 8M) inside a 10 MiB file, so a write outside the
# export would show in the bytes around it.  Last, SIGTERM while a slow
# reader holds replies must still end the server (--shutdown-timeout),
# and a read-only export refuses writes with EPERM.
. "$RUMPBLK_SRCDIR/tests/functions.sh"
. "$RUMPBLK_SRCDIR/tests/integration/nbd-functions.sh"
requires nbdinfo --version
requires nbdsh --version
requires python3 --version

img=$tmp/disk.img
random_file "$img" $((10 << 20))
sum=$(sha256sum <"$img")
sock=$tmp/s
start_nbd "$tmp/pid" "$sock" --offset 1M --size 8M "$img"
pid=$(cat "$tmp/pid")
uri=$(nbd_uri "$sock")
MEMLIMIT=512

# proof WHAT: the server survived WHAT and still serves normal clients.
proof() {
	kill -0 "$pid" 2>/dev/null || fail "$1: server $pid died"
	timeout 30 nbdinfo --json "$uri" >"$tmp/info.json" 2>"$tmp/info.err" ||
	    fail "$1: nbdinfo fails afterwards: $(cat "$tmp/info.err")"
	grep -q '"export-size": 8388608' "$tmp/info.json" ||
	    fail "$1: nbdinfo afterwards: $(cat "$tmp/info.json")"
	# The export starts at 1 MiB of the file: compare a read with it.
	IMG=$img timeout 30 nbdsh -u "$uri" -c '
import os
buf = h.pread(65536, 4096)
want = open(os.environ["IMG"], "rb").read()[(1 << 20) + 4096:(1 << 20) + 69632]
assert buf == want, "read after hostile case differs from the image"
' || fail "$1: libnbd read fails or differs afterwards"
	check_rss "$pid" $MEMLIMIT "$1"
	[ "$(sha256sum <"$img")" = "$sum" ] ||
	    fail "$1: the image changed (a write reached the file)"
	echo "ok: $1"
}

raw --unix "$sock" sanity || fail "the raw client fails on a normal session"
proof sanity

for c in bad-magic-handshake bad-magic-request oversized out-of-range \
    unknown opt-flood opt-huge vanish; do
	raw --unix "$sock" "$c" || fail "hostile case $c"
	proof "$c"
done

# held CASE LOG: start raw client CASE on $sock in the background, holding
# its connection until $tmp/done exists, and wait (up to 60 s) until it
# says it is ready; $rawpid is its PID.
held() {
	local i
	rm -f "$tmp/ready" "$tmp/done"
	raw --unix "$sock" --ready "$tmp/ready" --done "$tmp/done" "$1" \
	    >"$2" 2>&1 &
	rawpid=$!
	for ((i = 0; i < 600; i++)); do
		[ -e "$tmp/ready" ] && return 0
		kill -0 $rawpid 2>/dev/null || break
		sleep 0.1
	done
	cat "$2"
	fail "$1: client not ready"
}

# Cases that hold connections open while a normal client works.
for c in slow-reader stalled-handshake; do
	held "$c" "$tmp/$c.log"
	proof "$c (while held)"
	touch "$tmp/done"
	wait $rawpid || { cat "$tmp/$c.log"; fail "hostile case $c"; }
	cat "$tmp/$c.log"
	proof "$c (after)"
done

# The server still stops cleanly on SIGTERM after all this.
stop_nbd "$pid" "after the hostile cases" ||
    fail "server exited with status $? on SIGTERM"
[ "$(sha256sum <"$img")" = "$sum" ] || fail "the image changed at shutdown"

# SIGTERM while a slow reader holds replies: the server gives up on that
# client after --shutdown-timeout and exits 0 (bounded wait, no timing
# threshold: stop_nbd waits up to 30 s).
sock=$tmp/st
start_nbd "$tmp/stpid" "$sock" --shutdown-timeout 1 "$img"
pid=$(cat "$tmp/stpid")
held slow-reader "$tmp/st.log"
stop_nbd "$pid" "SIGTERM with a slow reader" ||
    fail "SIGTERM with a slow reader: exit status $?"
touch "$tmp/done"
wait $rawpid
[ "$(sha256sum <"$img")" = "$sum" ] || fail "the image changed at shutdown"
echo "ok: SIGTERM with a slow reader"

# Writes on a read-only export: EPERM, READ_ONLY advertised.  (A second
# server while the first ran would be refused by the image lock.)
sock=$tmp/ro
start_nbd "$tmp/ropid" "$sock" --read-only --offset 1M --size 8M "$img"
pid=$(cat "$tmp/ropid")
uri=$(nbd_uri "$sock")
raw --unix "$sock" readonly || fail "hostile case readonly"
proof readonly
stop_nbd "$pid" "read-only server" ||
    fail "read-only server exited with status $? on SIGTERM"
exit 0
