#!/bin/bash
# test-nbd-wire: the NBD backing's own client (lib/remote/nbd.c, 1b), which
# speaks on the data connections once libnbd has done the handshake:
#
#   - errors the remote answers pass through as they are: nbdkit's error
#     filter fails every write with ENOSPC and every read with EPERM, and
#     the chain's client gets those, not EIO;
#   - a remote that breaks the protocol on a data connection (a reply
#     whose cookie no request has, a reply with a wrong magic, the
#     connection closed in the middle of a read's data: nbd-liar.py)
#     fails the requests on that connection with EIO, never anything
#     else, never a crash or a hang; the server says why on stderr,
#     reconnects, and then reads return what was written.  hangup-big
#     cuts a 1 MiB read, which rumpblk splices into a pipe (a read lent
#     as a pipe, RUMPBLK_B_LOAN_FD);
#   - a remote that sends each big read's data 512 bytes at a time
#     (dribble): more pieces than the pipe has slots, so the pipe fills
#     and each such read falls back to a copy; every read returns what
#     was written and none is lent (--stats), and reads of the same
#     size from a whole-sending remote are lent (test-nbd-backing).
# Servers bind Unix sockets only and are ended by PID.
. "$RUMPBLK_SRCDIR/tests/functions.sh"
. "$RUMPBLK_SRCDIR/tests/integration/nbd-functions.sh"
requires nbdkit --version
requires /usr/bin/python3 -c 'import nbd'

PY=/usr/bin/python3
SIZE=$((16 << 20))
# Several data connections, as on a larger machine (the default on 2
# CPUs is one): the liar must meet requests spread over them.
export RUMPBLK_NBD_CONNECTIONS=3
rs=$tmp/remote.sock
s=$tmp/s
rpid=
stop_remote() {
	[ -n "$rpid" ] && kill "$rpid" 2>/dev/null && wait "$rpid" 2>/dev/null
	rpid=
}
cleanup_fn stop_remote

wait_sock() {
	local i
	for ((i = 0; i < 100; i++)); do
		[ -S "$1" ] && return 0
		sleep 0.1
	done
	fail "$2 did not start: $(cat "$tmp/remote.err")"
}

chain() {
	rm -f "$s" "$tmp/stats.json"
	: >"$tmp/serve.err"
	start_server -P "$tmp/pid" "$RUMPBLK" serve --socket "$s" \
	    --pidfile "$tmp/pid" --stats "$tmp/stats.json" \
	    "nbd+unix:///?socket=$rs" 2>"$tmp/serve.err"
	spid=$(cat "$tmp/pid")
}

unchain() {
	stop_nbd "$spid" "the chain" ||
	    fail "the chain exited $? on SIGTERM: $(cat "$tmp/serve.err")"
}

suri="nbd+unix:///?socket=$s"

# --- errors pass through ---------------------------------------------
rm -f "$rs"
nbdkit -f -U "$rs" --filter=error memory "$SIZE" error-pwrite=ENOSPC \
    error-pwrite-rate=100% error-pread=EPERM error-pread-rate=100% \
    2>"$tmp/remote.err" &
rpid=$!
wait_sock "$rs" "nbdkit"
chain
grep -q "; 3 data connections and one for block status" \
    <("$RUMPBLK" info "nbd+unix:///?socket=$rs") ||
    fail "RUMPBLK_NBD_CONNECTIONS=3 is not 3 data connections: $("$RUMPBLK" info "nbd+unix:///?socket=$rs")"
$PY - "$suri" <<'PY' || fail "the remote's errors through the chain"
import errno, sys, nbd
h = nbd.NBD()
h.connect_uri(sys.argv[1])
for what, f, want in (
        ("write", lambda: h.pwrite(b"x" * 4096, 8192), errno.ENOSPC),
        ("read", lambda: h.pread(4096, 8192), errno.EPERM)):
    for i in range(6):	# over every data connection
        try:
            f()
        except nbd.Error as e:
            assert e.errnum == want, "%s: errno %r, not %r" % (
                what, e.errnum, want)
        else:
            raise AssertionError("%s succeeded" % what)
h.shutdown()
PY
unchain
stop_remote

# --- a remote that breaks the protocol -------------------------------
for mode in cookie magic hangup hangup-big dribble; do
	case $mode in
	cookie)	why="protocol error: a reply to no request sent" ;;
	magic)	why="protocol error: a reply with magic 0x12345678" ;;
	hangup*) why="the server closed the connection" ;;
	dribble) why="" ;;
	esac
	rm -f "$rs"
	$PY "$RUMPBLK_SRCDIR/tests/integration/nbd-liar.py" "$rs" "$SIZE" \
	    "$mode" 2>"$tmp/remote.err" &
	rpid=$!
	wait_sock "$rs" "nbd-liar.py"
	chain
	$PY - "$suri" "$tmp/serve.err" "$mode" <<'PY' || fail "$mode: $(cat "$tmp/serve.err")"
import errno, os, sys, time, nbd
uri, log, mode = sys.argv[1:4]
h = nbd.NBD()
h.connect_uri(uri)
size = 1 << 20 if mode in ("hangup-big", "dribble") else 4096
pattern = os.urandom(8 * size)
h.pwrite(pattern, 0)
h.flush()
# Reads over every data connection: one meets the lie.  Each fails
# with EIO or returns the right data.
failed = 0
for i in range(8):
    try:
        got = h.pread(size, i * size)
    except nbd.Error as e:
        assert e.errnum == errno.EIO, "errno %r, not EIO" % e.errnum
        failed += 1
    else:
        assert got == pattern[i * size:(i + 1) * size], "wrong data"
if mode == "dribble":
    assert failed == 0, "%d reads failed from an honest remote" % failed
    h.shutdown()
    sys.exit(0)
assert failed >= 1, "the lie went unnoticed"
# The connection comes back (the first retry is 0.5 s on).
for i in range(100):
    if "connection regained" in open(log).read():
        break
    time.sleep(0.1)
else:
    raise AssertionError("not regained")
assert h.pread(len(pattern), 0) == pattern, "wrong data after reconnecting"
h.shutdown()
PY
	[ -z "$why" ] || grep -qF "$why" "$tmp/serve.err" ||
	    fail "$mode: the log does not say \"$why\": $(cat "$tmp/serve.err")"
	unchain
	if [ "$mode" = dribble ]; then
		lent=$(jq .bytes_lent "$tmp/stats.json")
		[ "$lent" = 0 ] || fail "dribble: $lent bytes lent from a" \
		    "pipe that cannot hold the read (expected a copy)"
	fi
	stop_remote
done
exit 0
