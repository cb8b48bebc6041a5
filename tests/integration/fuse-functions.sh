# Helpers shared by the FUSE export's integration tests (sourced after
# tests/functions.sh).
#
#   requires_fuse          skip (77) without /dev/fuse or without root (the
#                          tests mount, and attach loop devices)
#   start_fuse PIDFILE PATH [ARGS...] IMAGE
#                          start "rumpblk serve --fuse PATH" with the
#                          backend under test in the background and wait
#                          (bounded) for its pidfile; its PID in $fuse_pid
#   stop_fuse PID WHAT     SIGTERM a server started here, wait (bounded)
#                          and return its exit status
#   fuse_mounted PATH      true if PATH is a mount point now
#   fuse_unmount_left PATH unmount whatever is still mounted at PATH
#                          (lazily if busy); for cleanups
#
# Whatever a test leaves mounted at a FUSE path is unmounted at exit,
# after the servers are stopped (cleanup_fn order), also on failure.

requires_fuse() {
	if [ ! -c /dev/fuse ]; then
		echo "$0: test skipped: needs /dev/fuse"
		exit 77
	fi
	if [ "$(id -u)" != 0 ]; then
		echo "$0: test skipped: needs root (mount, losetup)"
		exit 77
	fi
}

# fuse_mounted PATH: PATH (absolute) is a mount point in mountinfo.
fuse_mounted() {
	awk -v p="$1" '$5 == p { f = 1 } END { exit !f }' /proc/self/mountinfo
}

fuse_unmount_left() {
	local i
	for ((i = 0; i < 5; i++)); do
		fuse_mounted "$1" || return 0
		umount "$1" 2>/dev/null || umount -l "$1" 2>/dev/null ||
		    fusermount3 -u -z "$1" 2>/dev/null
	done
}

start_fuse() {
	local pidfile=$1 path=$2
	shift 2
	rm -f "$pidfile"
	# Registered before start_server's kill, so it runs after it.
	cleanup_fn "fuse_unmount_left '$path'"
	start_server -P "$pidfile" "$RUMPBLK" serve --backend "$TEST_BACKEND" \
	    --fuse "$path" --pidfile "$pidfile" "$@"
	fuse_pid=$(cat "$pidfile")
}

# stop_fuse PID WHAT: SIGTERM the server (a child of this shell), wait at
# most 60 s for it to exit, and return its exit status.
stop_fuse() {
	local i st=
	kill -TERM "$1" 2>/dev/null || fail "$2: server $1 already gone"
	for ((i = 0; i < 600; i++)); do
		st=$(awk '{ print $3 }' "/proc/$1/stat" 2>/dev/null)
		[ -z "$st" ] || [ "$st" = Z ] && break
		sleep 0.1
	done
	[ -z "$st" ] || [ "$st" = Z ] ||
	    fail "$2: server did not exit within 60 s of SIGTERM"
	wait "$1"
}
