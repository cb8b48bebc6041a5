#!/bin/bash
# test-nbd-write-log: "rumpblk serve --write-log" against an independent
# dm-log-writes reader (logwrites.py): the reader's self-test; one libnbd
# client's writes, trims, write-zeroes, flushes, FUA write and a mark,
# found in the log in the client's order, in a copy taken after a flush
# and in the final log, which replays to the server's image (and through
# the mark and the first flush to the images of those moments), without
# and with a write cache (nbd-write-log.py); and the refusals: a
# non-empty FILE, a FILE in a missing directory.
. "$RUMPBLK_SRCDIR/tests/functions.sh"
. "$RUMPBLK_SRCDIR/tests/integration/nbd-functions.sh"
requires /usr/bin/python3 -c 'import nbd'
requires "$RUMPBLK" serve --help

here=$RUMPBLK_SRCDIR/tests/integration
export PYTHONDONTWRITEBYTECODE=1

# A server left behind by a client killed by timeout(1) is ended by the
# PID it wrote, and only if that PID is still a rumpblk.
stop_left() {
	local f pid
	for f in "$tmp"/*.pid; do
		[ -s "$f" ] || continue
		pid=$(cat "$f")
		tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null |
		    grep -q -- "--pidfile $f" && kill "$pid"
	done
	return 0
}
cleanup_fn stop_left

timeout -k 10 60 /usr/bin/python3 "$here/logwrites.py" selftest "$tmp" ||
    fail "logwrites.py selftest: the reader itself is wrong"

timeout -k 10 120 /usr/bin/python3 "$here/nbd-write-log.py" \
    "$RUMPBLK" "$tmp" || fail "write log, no cache (see FAIL above)"
timeout -k 10 120 /usr/bin/python3 "$here/nbd-write-log.py" \
    "$RUMPBLK" "$tmp" --write-cache 64M ||
    fail "write log, --write-cache 64M (see FAIL above)"

# Refusals: serve must exit 1 at once, naming the file, and leave it be.
# (timeout bounds a server that would wrongly start serving instead.)
random_file "$tmp/img" 1048576
random_file "$tmp/used.log" 4096
sum=$(sha256sum <"$tmp/used.log")
rc=0
timeout -k 5 20 "$RUMPBLK" serve --backend "$TEST_BACKEND" \
    --socket "$tmp/r.sock" --write-log "$tmp/used.log" "$tmp/img" \
    >/dev/null 2>"$tmp/err" || rc=$?
[ "$rc" = 1 ] || fail "--write-log onto a non-empty file: exit $rc, not 1"
grep -qF "$tmp/used.log" "$tmp/err" ||
    fail "--write-log onto a non-empty file: no name in: $(cat "$tmp/err")"
[ "$(sha256sum <"$tmp/used.log")" = "$sum" ] ||
    fail "--write-log onto a non-empty file changed it"

rc=0
timeout -k 5 20 "$RUMPBLK" serve --backend "$TEST_BACKEND" \
    --socket "$tmp/r.sock" --write-log "$tmp/no/such/dir/w.log" \
    "$tmp/img" >/dev/null 2>"$tmp/err" || rc=$?
[ "$rc" = 1 ] || fail "--write-log in a missing directory: exit $rc, not 1"
grep -qF "$tmp/no/such/dir/w.log" "$tmp/err" ||
    fail "--write-log in a missing directory: no path in: $(cat "$tmp/err")"
[ ! -e "$tmp/no" ] || fail "--write-log created the missing directory"
exit 0
