# Shared shell helpers for integration tests (sourced).
#
#   requires CMD...        skip (77) unless CMD runs; prints why
#   cleanup_fn CMD...      run CMD at exit, last registered first
#   start_server -P PIDFILE CMD...   start CMD in the background and wait
#                          (bounded) until PIDFILE exists
#   expect_one_error RC PATTERN ARGS...
#                          rumpblk ARGS (bounded in time) exits RC with
#                          exactly one line on stderr, matching PATTERN
#   $RUMPBLK               the in-tree rumpblk binary
#   $TEST_BACKEND          the backend under test (RUMPBLK_TEST_BACKEND)
#   $tmp                   a scratch directory removed at exit
#
# Tests end only processes they started, by PID, bind only 127.0.0.1, ::1
# or Unix sockets, and bound every loop in count and time.

set -u

: "${RUMPBLK:?RUMPBLK must name the rumpblk binary (meson sets it)}"
TEST_BACKEND=${RUMPBLK_TEST_BACKEND:-pio}

_cleanups=()
_run_cleanups() {
	local i
	for ((i = ${#_cleanups[@]} - 1; i >= 0; i--)); do
		eval "${_cleanups[$i]}" || true
	done
}
trap _run_cleanups EXIT
trap 'exit 130' INT TERM

cleanup_fn() {
	_cleanups+=("$*")
}

requires() {
	if ! "$@" >/dev/null 2>&1; then
		echo "$0: test skipped because prerequisite is missing or not working: $*"
		exit 77
	fi
}

tmp=$(mktemp -d "${TMPDIR:-/var/tmp}/rumpblk-it.XXXXXX")
cleanup_fn "rm -rf '$tmp'"

# requires_kernel_fs: skip (77) without /dev/fuse and loop devices, or
# without root (losetup, mount): what a kernel file system on the export
# needs from outside the repository.
requires_kernel_fs() {
	if [ ! -c /dev/fuse ] || [ ! -e /dev/loop-control ]; then
		echo "$0: test skipped: needs /dev/fuse and loop devices"
		exit 77
	fi
	if [ "$(id -u)" != 0 ]; then
		echo "$0: test skipped: needs root for losetup and mount"
		exit 77
	fi
}

# fail MESSAGE: print with the backend named, exit 1.
fail() {
	echo "FAIL [backend $TEST_BACKEND] $0: $*" >&2
	exit 1
}

expect_one_error() {
	local want=$1 pat=$2 rc
	shift 2
	timeout -k 5 60 "$RUMPBLK" "$@" >/dev/null 2>"$tmp/err"
	rc=$?
	[ "$rc" = "$want" ] ||
	    fail "rumpblk $*: exit $rc, expected $want: $(cat "$tmp/err")"
	grep -qE -- "$pat" "$tmp/err" ||
	    fail "rumpblk $*: the message does not match '$pat': $(cat "$tmp/err")"
	[ "$(wc -l <"$tmp/err")" = 1 ] ||
	    fail "rumpblk $*: more than one line: $(cat "$tmp/err")"
}

# start_server -P PIDFILE CMD...: start, wait up to 30 s for PIDFILE.
start_server() {
	local pidfile i
	[ "$1" = -P ] || fail "start_server: -P PIDFILE first"
	pidfile=$2
	shift 2
	"$@" &
	local bgpid=$!
	cleanup_fn "kill $bgpid 2>/dev/null; wait $bgpid 2>/dev/null"
	for ((i = 0; i < 300; i++)); do
		[ -s "$pidfile" ] && return 0
		kill -0 "$bgpid" 2>/dev/null || fail "server exited early: $*"
		sleep 0.1
	done
	fail "server did not write $pidfile within 30 s: $*"
}
