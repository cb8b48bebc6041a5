# Helpers shared by the power-cut tests, test-powercut-fs and
# test-powercut-sqlite (sourced after tests/functions.sh and
# tests/integration/nbd-functions.sh), and through them by
# bench/powercut-fs.sh (issue 11).
#
#   pc_requires            skip (77) without the tools, /dev/fuse, loop
#                          devices or root
#   pc_serve               start "rumpblk serve --write-cache 64M" with a
#                          control socket and a fault log, on a sparse
#                          128 MiB image; $pc_pid, $pc_sock, $pc_ctl
#   pc_attach              nbdfuse on $pc_sock in a fresh FUSE directory,
#                          a loop device on its file ($pc_loopdev)
#   pc_mkfs                mkfs.ext4 on the loop device, mount it at $pc_mnt
#   pc_cut MODEL SEED      "rumpblk ctl $pc_ctl power-cut model= seed=";
#                          its one JSON object in $pc_cut_json
#   pc_logged              the power-cut lines of the fault log, counted
#   pc_logged_one N        the fault log must have N + 1 of them
#   pc_abandon             after a cut: the old mount is given up (umount
#                          -l), the loop device detached, the FUSE mount
#                          unmounted (lazily when busy), nbdfuse waited for
#   pc_recover             a fresh nbdfuse + loop on the post-crash image:
#                          its superblock must ask for a journal replay,
#                          mount replays it, umount must leave none to do
#                          ($r_replay), then e2fsck -fn must be clean
#                          ($r_fsck); the device stays attached
#   pc_cleanup             undo, in order, whatever is still set up: a
#                          process started with pc_bg, the mount, the loop
#                          device, the FUSE mount (idempotent)
#   pc_bg PIDVAR CMD...    start CMD in the background; pc_cleanup ends it
#   pc_wait_exit PID SECS  wait (bounded) for a pc_bg child to exit and
#                          return its exit status (124 if it did not exit;
#                          then it is killed)
#   pc_record KIND MODEL SEED REPLAY FSCK DATA DETAIL
#                          one line of results: printed, and appended to
#                          $POWERCUT_RESULTS when set (bench/powercut-fs.sh)
#   pc_runs DEFAULT        the MODEL:SEED runs: $POWERCUT_RUNS or DEFAULT
#
# The functions that can fail say why in $pc_why and return 1 instead of
# calling fail, so that a run can be recorded and the next one tried
# (POWERCUT_KEEP_GOING=1, as bench/powercut-fs.sh sets); the tests
# otherwise stop at the first failure.

pc_requires() {
	requires nbdfuse --version
	requires mkfs.ext4 -V
	requires e2fsck -V
	requires dumpe2fs -V
	requires losetup --version
	requires fusermount3 --version
	requires /usr/bin/python3 -c 'import sqlite3'
	requires jq --version
	requires_kernel_fs
}

PC_SIZE=$((128 << 20))
PC_PY=/usr/bin/python3
pc_img=$tmp/disk.img
pc_sock=$tmp/s
pc_ctl=$tmp/ctl
pc_mnt=$tmp/mnt
pc_faultlog=$tmp/faults.log
pc_pid=
pc_mounted= pc_loopdev= pc_fusepid= pc_fusedir= pc_nfuse=0
pc_bgpids=()
pc_why=
pc_cut_json=
r_replay=- r_fsck=-
mkdir -p "$pc_mnt"

pc_serve() {
	truncate -s "$PC_SIZE" "$pc_img" || fail "cannot create $pc_img"
	start_nbd "$tmp/pid" "$pc_sock" --write-cache 64M \
	    --control "$pc_ctl" --fault-log "$pc_faultlog" "$pc_img" \
	    2>"$tmp/serve.err"
	pc_pid=$(cat "$tmp/pid")
	# Registered after start_nbd's own cleanup, so it runs before it.
	cleanup_fn pc_cleanup
}

pc_bg() {
	local var=$1
	shift
	"$@" &
	pc_bgpids+=($!)
	printf -v "$var" %s $!
}

pc_wait_exit() {
	local pid=$1 secs=$2 i st=124 left=()
	for ((i = 0; i < secs * 10; i++)); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	if kill -0 "$pid" 2>/dev/null; then
		kill "$pid" 2>/dev/null
		wait "$pid" 2>/dev/null
	else
		wait "$pid"
		st=$?
	fi
	# Reaped: its PID may be reused, pc_cleanup must not signal it.
	for i in "${pc_bgpids[@]}"; do
		[ "$i" = "$pid" ] || left+=("$i")
	done
	pc_bgpids=("${left[@]}")
	return $st
}

# pc_unfuse: unmount the current FUSE directory (lazily when the kernel
# still holds its file) and wait, at most 30 s, for nbdfuse to exit; an
# nbdfuse still running then is ended (it was started here).  nbdfuse
# 1.14 aborts on an assertion (completion->thread->in_flight >= 1) at
# its first request after the server dropped its connection: that is
# its way to die with the old stack, said here, not a failure.
pc_unfuse() {
	local i st
	[ -n "$pc_fusepid" ] || return 0
	timeout 30 fusermount3 -u "$pc_fusedir" 2>/dev/null ||
	    fusermount3 -uz "$pc_fusedir"
	for ((i = 0; i < 300; i++)); do
		kill -0 "$pc_fusepid" 2>/dev/null || break
		sleep 0.1
	done
	if kill -0 "$pc_fusepid" 2>/dev/null; then
		echo "nbdfuse $pc_fusepid still running 30 s after" \
		    "fusermount3 -u: ended" >&2
		kill "$pc_fusepid" 2>/dev/null
	fi
	wait "$pc_fusepid" 2>/dev/null
	st=$?
	[ $st = 134 ] && echo "nbdfuse $pc_fusepid aborted:" \
	    "$(tail -n 1 "$tmp/nbdfuse$pc_nfuse.log")"
	pc_fusepid=
}

pc_cleanup() {
	local i	# (bash scoping: must not touch _run_cleanups' loop index)
	for i in "${pc_bgpids[@]}"; do
		kill "$i" 2>/dev/null && wait "$i" 2>/dev/null
	done
	pc_bgpids=()
	if [ -n "$pc_mounted" ]; then
		timeout 60 umount "$pc_mnt" || umount -l "$pc_mnt"
		pc_mounted=
	fi
	if [ -n "$pc_loopdev" ]; then
		losetup -d "$pc_loopdev"
		pc_loopdev=
	fi
	pc_unfuse
}

pc_attach() {
	local i
	pc_nfuse=$((pc_nfuse + 1))
	pc_fusedir=$tmp/fuse$pc_nfuse
	mkdir "$pc_fusedir"
	rm -f "$tmp/fuse.pid"
	nbdfuse -P "$tmp/fuse.pid" "$pc_fusedir/nbd" --unix "$pc_sock" \
	    >"$tmp/nbdfuse$pc_nfuse.log" 2>&1 &
	pc_fusepid=$!
	for ((i = 0; i < 300; i++)); do
		[ -s "$tmp/fuse.pid" ] && break
		if ! kill -0 $pc_fusepid 2>/dev/null; then
			wait $pc_fusepid 2>/dev/null
			pc_fusepid=
			pc_why="nbdfuse exited: $(cat "$tmp/nbdfuse$pc_nfuse.log")"
			return 1
		fi
		sleep 0.1
	done
	if [ ! -s "$tmp/fuse.pid" ]; then
		pc_why="nbdfuse not ready within 30 s"
		return 1
	fi
	if [ "$(stat -c %s "$pc_fusedir/nbd")" != "$PC_SIZE" ]; then
		pc_why="the FUSE file has the wrong size"
		return 1
	fi
	if ! pc_loopdev=$(losetup -f --show "$pc_fusedir/nbd"); then
		pc_loopdev=
		pc_why="losetup on the FUSE file"
		return 1
	fi
}

pc_mkfs() {
	if ! mkfs.ext4 -q -F -E nodiscard "$pc_loopdev" \
	    >"$tmp/mkfs.log" 2>&1; then
		pc_why="mkfs.ext4: $(cat "$tmp/mkfs.log")"
		return 1
	fi
	if ! mount "$pc_loopdev" "$pc_mnt"; then
		pc_why="mount $pc_loopdev"
		return 1
	fi
	pc_mounted=1
}

pc_cut() {
	local st
	pc_cut_json=$(timeout 60 "$RUMPBLK" ctl "$pc_ctl" power-cut \
	    "model=$1" "seed=$2" 2>&1)
	st=$?
	echo "power-cut model=$1 seed=$2: $pc_cut_json"
	if [ $st != 0 ]; then
		pc_why="rumpblk ctl power-cut model=$1 seed=$2 exited $st:"
		pc_why+=" $pc_cut_json"
		return 1
	fi
	if ! jq -se 'length == 1 and (.[0] | type == "object")' \
	    <<<"$pc_cut_json" >/dev/null 2>&1; then
		pc_why="ctl power-cut printed no single JSON object:"
		pc_why+=" $pc_cut_json"
		return 1
	fi
}

pc_logged() {
	local n
	n=$(grep -c '"class":"power-cut"' "$pc_faultlog" 2>/dev/null)
	echo "${n:-0}"
}

pc_logged_one() {
	local n
	n=$(pc_logged)
	[ "$n" = $(($1 + 1)) ] && return 0
	pc_why="the cut left $((n - $1)) power-cut lines in the fault log,"
	pc_why+=" not 1: $(tail -n 3 "$pc_faultlog" 2>/dev/null)"
	return 1
}

# After a cut the old stack is dead: its NBD connections were dropped,
# the file system above them has (or will have) I/O errors.  It is left
# as a crashed machine's would be, never unmounted cleanly.
pc_abandon() {
	if [ -n "$pc_mounted" ]; then
		umount -l "$pc_mnt" || { pc_why="umount -l"; return 1; }
		pc_mounted=
	fi
	if [ -n "$pc_loopdev" ]; then
		losetup -d "$pc_loopdev" ||
		    { pc_why="losetup -d $pc_loopdev"; return 1; }
		pc_loopdev=
	fi
	pc_unfuse
}

# pc_features: the feature line of the superblock on the loop device.
pc_features() {
	dumpe2fs -h "$pc_loopdev" 2>/dev/null |
	    sed -n 's/^Filesystem features: *//p'
}

pc_recover() {
	local f
	r_replay=FAIL r_fsck=-
	pc_attach || return 1
	f=$(pc_features)
	case " $f " in
	*" needs_recovery "*) ;;
	*)
		pc_why="the post-crash superblock asks for no journal replay"
		pc_why+=" (features: $f), though the file system was mounted"
		return 1 ;;
	esac
	if ! mount "$pc_loopdev" "$pc_mnt" 2>"$tmp/mount.err"; then
		pc_why="mount of the post-crash image (journal replay):"
		pc_why+=" $(cat "$tmp/mount.err")"
		return 1
	fi
	pc_mounted=1
	if ! timeout 120 umount "$pc_mnt"; then
		pc_why="umount after the journal replay"
		return 1
	fi
	pc_mounted=
	f=$(pc_features)
	case " $f " in
	*" needs_recovery "*)
		pc_why="the journal still needs recovery after mount + umount"
		return 1 ;;
	esac
	r_replay=ok r_fsck=FAIL
	if ! e2fsck -fn "$pc_loopdev" >"$tmp/fsck.log" 2>&1; then
		pc_why="e2fsck -fn not clean after the replay: $(cat "$tmp/fsck.log")"
		return 1
	fi
	r_fsck=ok
}

pc_record() {
	local line
	printf -v line '%s\t%s\t%s\t%s\t%s\t%s\t%s' "$@"
	echo "result: $line"
	if [ -n "${POWERCUT_RESULTS:-}" ]; then
		echo "$line" >>"$POWERCUT_RESULTS"
	fi
}

pc_runs() {
	echo "${POWERCUT_RUNS:-$1}"
}
