#!/bin/bash
# test-nbd-fs: a kernel file system on "rumpblk serve", as users run it.
# nbdfuse exposes the export as a file in a FUSE mount, a loop device goes
# on that file, mkfs.ext4, mount, a workload that fsyncs its files,
# umount, e2fsck -fn must be clean; then the server is stopped with
# SIGTERM (it must exit 0), started again, and the files, mounted
# read-only, must match their checksums.
#
# Cleanup undoes, in order, whatever is still set up (also on failure):
# the mount, the loop device, the FUSE mount, then the server.
. "$RUMPBLK_SRCDIR/tests/functions.sh"
. "$RUMPBLK_SRCDIR/tests/integration/nbd-functions.sh"
requires nbdfuse --version
requires mkfs.ext4 -V
requires e2fsck -V
requires losetup --version
requires fusermount3 --version
requires_kernel_fs

img=$tmp/disk.img
sock=$tmp/s
fusedir=$tmp/fuse
mnt=$tmp/mnt
mkdir "$fusedir" "$mnt"
truncate -s 128M "$img"

mounted= loopdev= fusepid=
fs_cleanup() {
	local i	# (bash scoping: must not touch _run_cleanups' loop index)
	if [ -n "$mounted" ]; then
		timeout 60 umount "$mnt" || umount -l "$mnt"
		mounted=
	fi
	if [ -n "$loopdev" ]; then
		losetup -d "$loopdev"
		loopdev=
	fi
	if [ -n "$fusepid" ]; then
		timeout 30 fusermount3 -u "$fusedir" || fusermount3 -uz "$fusedir"
		for ((i = 0; i < 100; i++)); do
			kill -0 "$fusepid" 2>/dev/null || break
			sleep 0.1
		done
		kill "$fusepid" 2>/dev/null
		wait "$fusepid" 2>/dev/null
		fusepid=
	fi
}
# Registered after start_nbd's own cleanup (below), so it runs before it;
# fs_cleanup is idempotent.

# attach [-r]: nbdfuse on the server's socket, a loop device on its file.
attach() {
	local i
	rm -f "$tmp/fuse.pid"
	nbdfuse -P "$tmp/fuse.pid" "$fusedir/nbd" --unix "$sock" \
	    >"$tmp/nbdfuse.log" 2>&1 &
	fusepid=$!
	for ((i = 0; i < 300; i++)); do
		[ -s "$tmp/fuse.pid" ] && break
		kill -0 $fusepid 2>/dev/null ||
		    fail "nbdfuse exited: $(cat "$tmp/nbdfuse.log")"
		sleep 0.1
	done
	[ -s "$tmp/fuse.pid" ] || fail "nbdfuse not ready within 30 s"
	[ "$(stat -c %s "$fusedir/nbd")" = $((128 << 20)) ] ||
	    fail "the FUSE file has the wrong size"
	loopdev=$(losetup "$@" -f --show "$fusedir/nbd") ||
	    fail "losetup on the FUSE file"
}

detach() {
	fs_cleanup
}

start_nbd "$tmp/pid" "$sock" "$img"
cleanup_fn fs_cleanup
pid=$(cat "$tmp/pid")

attach
mkfs.ext4 -q -F -E nodiscard "$loopdev" >"$tmp/mkfs.log" 2>&1 ||
    fail "mkfs.ext4: $(cat "$tmp/mkfs.log")"
mount "$loopdev" "$mnt" || fail "mount $loopdev"
mounted=1

# Workload: files of several sizes and a small tree, each fsynced; a
# rename and a delete; then checksums.
mkdir -p "$mnt/a/b/c"
for i in $(seq 1 24); do
	n=$(( (i * 37 % 11 + 1) * 97 * 1024 + i * 13 ))
	head -c $n /dev/urandom |
	    dd of="$mnt/a/f$i" bs=64K conv=fsync status=none iflag=fullblock ||
	    fail "write f$i"
done
head -c $((6 << 20)) /dev/urandom |
    dd of="$mnt/a/b/c/big" bs=1M conv=fsync status=none iflag=fullblock ||
    fail "write big"
mv "$mnt/a/f3" "$mnt/a/b/f3-renamed"
rm "$mnt/a/f4"
sync -f "$mnt" || fail "syncfs"
(cd "$mnt" && find . -type f -print0 | sort -z | xargs -0 sha256sum) \
    >"$tmp/sums" || fail "sha256sum"
[ "$(wc -l <"$tmp/sums")" = 24 ] || fail "workload files: $(cat "$tmp/sums")"

timeout 120 umount "$mnt" || fail "umount"
mounted=
e2fsck -fn "$loopdev" >"$tmp/fsck.log" 2>&1 ||
    fail "e2fsck -fn not clean: $(cat "$tmp/fsck.log")"
detach

stop_nbd "$pid" "first server" || fail "server exited $? on SIGTERM"

# Again, from a fresh server: everything must be there.
start_nbd "$tmp/pid2" "$sock" "$img"
cleanup_fn fs_cleanup
attach -r
e2fsck -fn "$loopdev" >"$tmp/fsck2.log" 2>&1 ||
    fail "e2fsck -fn after restart: $(cat "$tmp/fsck2.log")"
mount -o ro,noload "$loopdev" "$mnt" || fail "read-only mount after restart"
mounted=1
(cd "$mnt" && sha256sum --quiet -c "$tmp/sums") ||
    fail "checksums differ after the server restarted"
detach
stop_nbd "$(cat "$tmp/pid2")" "second server" ||
    fail "second server exited $? on SIGTERM"
exit 0
