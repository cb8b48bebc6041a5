#!/bin/bash
# test-nbd-reset: "rumpblk ctl PATH reset" drops every NBD connection to
# the unit at once (issue 10): two libnbd clients read, reads are left in
# flight, the reset answers {"ok":true}, both connections fail their next
# command within 10 s, a new client reads the same data and is served as
# usual (nbd-reset.py), the server logs the two connections it dropped
# and still exits 0 on SIGTERM.  A reset with no client connected, and a
# malformed one, are answered too.
. "$RUMPBLK_SRCDIR/tests/functions.sh"
. "$RUMPBLK_SRCDIR/tests/integration/nbd-functions.sh"
requires /usr/bin/python3 -c 'import nbd'

py=$RUMPBLK_SRCDIR/tests/integration/nbd-reset.py
img=$tmp/disk.img
random_file "$img" $((4 << 20))

start_nbd "$tmp/pid" "$tmp/s" --control "$tmp/ctl" "$img" \
    2>"$tmp/serve.err"
pid=$(cat "$tmp/pid")
timeout -k 10 "$NBD_TIMEOUT" /usr/bin/python3 "$py" "$(nbd_uri "$tmp/s")" \
    "$img" "$RUMPBLK" "$tmp/ctl" ||
    fail "reset over NBD (see FAIL above); server: $(cat "$tmp/serve.err")"
grep -q 'unit 0 was reset: dropped 2 connections' "$tmp/serve.err" ||
    fail "the server did not log dropping the 2 clients:" \
    "$(cat "$tmp/serve.err")"

# No client connected: still answered, nothing to drop.
out=$(timeout 60 "$RUMPBLK" ctl "$tmp/ctl" reset) ||
    fail "ctl reset with no client: $out"
[ "$out" = '{"ok":true}' ] || fail "ctl reset answered $out"
# A reset takes no argument.
if out=$(timeout 60 "$RUMPBLK" ctl "$tmp/ctl" reset now); then
	fail "ctl reset now was taken: $out"
fi
case $out in
*'"ok":false'*'reset takes no argument'*) ;;
*) fail "ctl reset now answered $out" ;;
esac

stop_nbd "$pid" "reset" || fail "the server exited $? after SIGTERM:" \
    "$(cat "$tmp/serve.err")"
grep -q 'unit 0 was reset: dropped 0 connections' "$tmp/serve.err" ||
    fail "no log line for the reset with no client: $(cat "$tmp/serve.err")"
exit 0
