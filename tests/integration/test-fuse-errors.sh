#!/bin/bash
# test-fuse-errors: bad input and the FUSE mount's end (issue 16).
#
# Bad mount points, each one line naming the path, exit 1, nothing left
# mounted: one that does not exist, one that is neither a file nor a
# directory, one that is a mount point already (a live export, a tmpfs),
# one that is not writable (on a read-only file system; as an
# unprivileged user in a directory that is not theirs), no /dev/fuse (in
# a mount namespace of its own whose /dev has none), and a stale mount of
# another program (nbdfuse killed with SIGKILL).  A bad IMAGE leaves
# nothing mounted either.
#
# The mount's end: a stale mount of a rumpblk server killed with SIGKILL
# is detached at the next start (one line), which then serves; SIGTERM
# while a loop device holds the file detaches the mount lazily (one line,
# exit 0); an unmount by other hands (fusermount3 -u) ends a server that
# serves nothing else (exit 0).  And --read-only exports a read-only file.
. "$RUMPBLK_SRCDIR/tests/functions.sh"
. "$RUMPBLK_SRCDIR/tests/integration/fuse-functions.sh"
requires losetup --version
requires_kernel_fs
requires_fuse

img=$tmp/disk.img
truncate -s 16M "$img"
mkdir "$tmp/d" "$tmp/busy" "$tmp/tmpfs" "$tmp/rofs"
: >"$tmp/f"

# no_mount PATH: nothing is mounted at PATH (absolute).
no_mount() {
	fuse_mounted "$1" && fail "$1 is left mounted"
	return 0
}

# --- Bad mount points ---------------------------------------------------
expect_one_error 1 "^rumpblk: --fuse: $tmp/nope: No such file or directory" \
    serve --fuse "$tmp/nope" "$img"
no_mount "$tmp/nope"
mkfifo "$tmp/fifo"
expect_one_error 1 "^rumpblk: --fuse: $tmp/fifo: not a regular file or a directory" \
    serve --fuse "$tmp/fifo" "$img"

# A bad IMAGE: the mount point was fine, nothing is mounted.
expect_one_error 1 "nope.img" serve --fuse "$tmp/d" "$tmp/nope.img"
no_mount "$tmp/d"

# A mount point already: a tmpfs, and a live export.
cleanup_fn "fuse_unmount_left '$tmp/tmpfs'"
mount -t tmpfs -o size=1M tmpfs "$tmp/tmpfs" || fail "mount tmpfs"
expect_one_error 1 "^rumpblk: --fuse: $tmp/tmpfs: already a mount point \(tmpfs" \
    serve --fuse "$tmp/tmpfs" "$img"
umount "$tmp/tmpfs" || fail "umount tmpfs"
start_fuse "$tmp/pid1" "$tmp/d" "$img"
truncate -s 1M "$tmp/other.img"
expect_one_error 1 "^rumpblk: --fuse: $tmp/d: already a mount point \(fuse.rumpblk" \
    serve --fuse "$tmp/d" "$tmp/other.img"
[ "$(stat -c %s "$tmp/d/disk")" = $((16 << 20)) ] ||
    fail "the first export suffered from the second"
stop_fuse "$fuse_pid" "first server" || fail "first server exited $?"
no_mount "$tmp/d"

# Not writable: a directory on a read-only file system.
cleanup_fn "fuse_unmount_left '$tmp/rofs'"
mount -t tmpfs -o size=1M tmpfs "$tmp/rofs" || fail "mount tmpfs"
mkdir "$tmp/rofs/x" && mount -o remount,ro "$tmp/rofs" ||
    fail "remount read-only"
expect_one_error 1 "^rumpblk: --fuse: $tmp/rofs/x: not writable: Read-only file system" \
    serve --fuse "$tmp/rofs/x" "$img"
no_mount "$tmp/rofs/x"
umount "$tmp/rofs"
# ... and as another user, in a directory that is not theirs (when that
# user can run the binary at all: the build tree may be private).
if setpriv --reuid=65534 --regid=65534 --clear-groups "$RUMPBLK" --version \
    >/dev/null 2>&1; then
	chmod 711 "$tmp"
	mkdir "$tmp/pub" && chmod 755 "$tmp/pub"
	cp "$img" "$tmp/pub/img" && chmod 666 "$tmp/pub/img"
	mkdir "$tmp/pub/mp"		# root's, 0755
	setpriv --reuid=65534 --regid=65534 --clear-groups \
	    timeout 60 "$RUMPBLK" serve --fuse "$tmp/pub/mp" "$tmp/pub/img" \
	    2>"$tmp/err" && fail "an unprivileged server mounted on root's dir"
	grep -q "^rumpblk: --fuse: $tmp/pub/mp: not writable: Permission denied" \
	    "$tmp/err" || fail "unwritable as nobody: $(cat "$tmp/err")"
	[ "$(wc -l <"$tmp/err")" = 1 ] || fail "more than one line: $(cat "$tmp/err")"
	no_mount "$tmp/pub/mp"
	chmod 700 "$tmp"
else
	echo "$0: note: the unprivileged case is not run (nobody cannot run $RUMPBLK)"
fi

# No /dev/fuse: a mount namespace whose /dev is an empty tmpfs.
if unshare -m true 2>/dev/null; then
	unshare -m sh -c 'mount -t tmpfs tmpfs /dev && exec "$0" serve --fuse "$1" "$2"' \
	    "$RUMPBLK" "$tmp/d" "$img" 2>"$tmp/err"
	rc=$?
	[ "$rc" = 1 ] || fail "no /dev/fuse: exit $rc: $(cat "$tmp/err")"
	grep -q "^rumpblk: --fuse: $tmp/d: cannot mount it: the host has no /dev/fuse" \
	    "$tmp/err" || fail "no /dev/fuse: $(cat "$tmp/err")"
	[ "$(wc -l <"$tmp/err")" = 1 ] || fail "more than one line: $(cat "$tmp/err")"
	no_mount "$tmp/d"
else
	echo "$0: note: no mount namespaces here; the no-/dev/fuse case is not run"
fi

# A stale mount of another program: refused, with how to clear it.
if command -v nbdfuse >/dev/null; then
	mkdir "$tmp/nf"
	cleanup_fn "fuse_unmount_left '$tmp/nf'"
	start_server -P "$tmp/nbdpid" "$RUMPBLK" serve --socket "$tmp/s" \
	    --pidfile "$tmp/nbdpid" "$tmp/other.img"
	rm -f "$tmp/nfpid"
	nbdfuse -P "$tmp/nfpid" "$tmp/nf" --unix "$tmp/s" 2>/dev/null &
	nfpid=$!
	for ((i = 0; i < 300; i++)); do
		[ -s "$tmp/nfpid" ] && break
		sleep 0.1
	done
	[ -s "$tmp/nfpid" ] || fail "nbdfuse did not start"
	{ kill -KILL "$nfpid"; wait "$nfpid"; } 2>/dev/null
	stat "$tmp/nf" >/dev/null 2>&1 && fail "nbdfuse's mount is not stale"
	pat="^rumpblk: --fuse: $tmp/nf: a stale FUSE mount \(Transport"
	pat="$pat endpoint is not connected\).*fusermount3 -u $tmp/nf"
	expect_one_error 1 "$pat" serve --fuse "$tmp/nf" "$img"
	fuse_mounted "$tmp/nf" || fail "another program's stale mount was removed"
	fusermount3 -u "$tmp/nf" || umount -l "$tmp/nf"
fi

# --- The mount's end ----------------------------------------------------
# A stale mount of ours (SIGKILL) is detached at the next start.
start_fuse "$tmp/pid2" "$tmp/d" "$img"
{ kill -KILL "$fuse_pid"; wait "$fuse_pid"; } 2>/dev/null
stat "$tmp/d/disk" >/dev/null 2>&1 && fail "the killed server's mount is not stale"
fuse_mounted "$tmp/d" || fail "the killed server left no mount"
start_fuse "$tmp/pid3" "$tmp/d" "$img" 2>"$tmp/err3"
pat="^rumpblk serve: --fuse: $tmp/d: detached a stale mount left by a"
grep -q "$pat rumpblk server that is gone" "$tmp/err3" ||
    fail "stale mount: $(cat "$tmp/err3")"
[ "$(grep -vc "fault rules: seed" "$tmp/err3")" = 1 ] ||
    fail "stale mount: not one line: $(cat "$tmp/err3")"
[ "$(stat -c %s "$tmp/d/disk")" = $((16 << 20)) ] ||
    fail "after clearing the stale mount, no export"
stop_fuse "$fuse_pid" "server after the stale mount" || fail "exit $?"
no_mount "$tmp/d"

# Busy at SIGTERM: a loop device holds the file.
loopdev=
cleanup_fn '[ -z "$loopdev" ] || losetup -d "$loopdev"'
start_fuse "$tmp/pid4" "$tmp/busy" "$img" 2>"$tmp/err4"
loopdev=$(losetup -f --show "$tmp/busy/disk") || fail "losetup"
dd if="$loopdev" of=/dev/null bs=64K count=4 status=none iflag=direct ||
    fail "read through the loop device"
stop_fuse "$fuse_pid" "busy server" || fail "busy server exited $? on SIGTERM"
pat="^rumpblk serve: --fuse: $tmp/busy was busy (a loop device or open"
grep -q "$pat files on it): detached it; those now get ENOTCONN" \
    "$tmp/err4" || fail "busy unmount: $(cat "$tmp/err4")"
no_mount "$tmp/busy"
dd if="$loopdev" of=/dev/null bs=64K count=4 status=none iflag=direct \
    2>/dev/null && fail "the loop device still reads after the server went"
losetup -d "$loopdev" || fail "losetup -d"
loopdev=

# Unmounted by other hands: a server that serves nothing else ends.
start_fuse "$tmp/pid5" "$tmp/d" "$img" 2>"$tmp/err5"
fusermount3 -u "$tmp/d" || fail "fusermount3 -u"
for ((i = 0; i < 300; i++)); do
	kill -0 "$fuse_pid" 2>/dev/null || break
	sleep 0.1
done
kill -0 "$fuse_pid" 2>/dev/null && fail "the server outlived its mount"
wait "$fuse_pid" || fail "server exited $? when its mount went"
grep -q "was unmounted by other hands" "$tmp/err5" ||
    fail "no line for the unmount: $(cat "$tmp/err5")"

# --read-only: the file is read-only.
start_fuse "$tmp/pid6" "$tmp/f" --read-only "$img"
[ "$(stat -c %a "$tmp/f")" = 400 ] || fail "mode $(stat -c %a "$tmp/f")"
head -c 4096 "$tmp/f" >/dev/null || fail "read of the read-only export"
dd if=/dev/zero of="$tmp/f" bs=4096 count=1 conv=notrunc status=none \
    2>"$tmp/err6" && fail "wrote to a read-only export"
grep -q "Read-only file system" "$tmp/err6" || fail "$(cat "$tmp/err6")"
stop_fuse "$fuse_pid" "read-only server" || fail "exit $?"
no_mount "$tmp/f"
exit 0
