# Helpers shared by the NBD integration tests (sourced after
# tests/functions.sh).
#
#   serve ARGS... IMAGE    run "rumpblk serve" with the backend under test
#                          (captive mode when ARGS has --run)
#   start_nbd PIDFILE SOCK [ARGS...] IMAGE
#                          start a background server on a Unix socket and
#                          wait for its pidfile (bounded)
#   nbd_uri SOCK           the libnbd/qemu URI of a Unix socket
#   rss_kib PID            VmRSS of a process, in KiB
#   check_rss PID LIMIT_MIB WHAT   fail if VmRSS exceeds the limit (a memory
#                          bound, not a timing one)
#   random_file FILE SIZE  SIZE bytes from /dev/urandom
#   raw ARGS...            the raw-socket client nbd-raw.py, time-bounded
#   stop_nbd PID WHAT      SIGTERM a server started here, wait (bounded)
#                          and return its exit status
#
# Every client command runs under timeout(1) so that a hung server fails
# the test instead of hanging it.

NBD_TIMEOUT=${NBD_TIMEOUT:-120}
NBDRAW=$RUMPBLK_SRCDIR/tests/integration/nbd-raw.py
# nbdsh runs "python3 -m nbd", and the libnbd module (python3-libnbd)
# belongs to the system interpreter: a pyenv or venv python3 earlier in
# PATH would hide it and nbdsh would fail.  The system directories go
# first for the tests and for the commands the server runs for them.
PATH=/usr/bin:/bin:$PATH
export PATH

serve() {
	local a prev=
	# A socket left by an earlier server in the same test goes first (the
	# contract does not say whether a server removes its socket).
	for a in "$@"; do
		[ "$prev" = --socket ] && rm -f "$a"
		prev=$a
	done
	timeout -k 10 "$NBD_TIMEOUT" "$RUMPBLK" serve \
	    --backend "$TEST_BACKEND" "$@"
}

start_nbd() {
	local pidfile=$1 sock=$2
	shift 2
	rm -f "$pidfile" "$sock"
	start_server -P "$pidfile" "$RUMPBLK" serve --backend "$TEST_BACKEND" \
	    --socket "$sock" --pidfile "$pidfile" "$@"
}

nbd_uri() {
	echo "nbd+unix:///?socket=$1"
}

rss_kib() {
	awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"
}

check_rss() {
	local kib
	kib=$(rss_kib "$1") || fail "$3: server $1 is gone"
	[ -n "$kib" ] || fail "$3: no VmRSS for server $1"
	[ "$kib" -le $(($2 * 1024)) ] ||
	    fail "$3: server VmRSS $kib KiB exceeds $2 MiB"
}

random_file() {
	head -c "$2" /dev/urandom >"$1" || fail "cannot write $1"
	[ "$(stat -c %s "$1")" = "$2" ] || fail "short $1"
}

raw() {
	timeout -k 10 "$NBD_TIMEOUT" python3 "$NBDRAW" "$@"
}

# stop_nbd PID WHAT: SIGTERM the server (a child of this shell), wait at
# most 30 s for it to exit, and return its exit status.
stop_nbd() {
	local i st=
	kill -TERM "$1" 2>/dev/null || fail "$2: server $1 already gone"
	for ((i = 0; i < 300; i++)); do
		st=$(awk '{ print $3 }' "/proc/$1/stat" 2>/dev/null)
		[ -z "$st" ] || [ "$st" = Z ] && break
		sleep 0.1
	done
	[ -z "$st" ] || [ "$st" = Z ] ||
	    fail "$2: server did not exit within 30 s of SIGTERM"
	wait "$1"
}
