#!/bin/bash
# test-fuse-fs: a kernel file system on the FUSE export (issue 16), with
# no NBD client in between: "rumpblk serve --fuse FILE" makes FILE the
# unit, a loop device goes on it (losetup -f --show), mkfs.ext4, mount,
# a workload that fsyncs its files, umount, e2fsck -fn must be clean;
# the server is stopped with SIGTERM (exit 0, nothing left mounted),
# started again, and the files, mounted read-only, must match their
# checksums.  The second server mounts a directory (PATH/disk).
#
# Cleanup undoes, in order, whatever is still set up (also on failure):
# the mount, the loop device, the server, the FUSE mount.
. "$RUMPBLK_SRCDIR/tests/functions.sh"
. "$RUMPBLK_SRCDIR/tests/integration/fuse-functions.sh"
requires mkfs.ext4 -V
requires e2fsck -V
requires losetup --version
requires_kernel_fs
requires_fuse

img=$tmp/disk.img
ffile=$tmp/export		# file mode: the mount point is the file
fdir=$tmp/exportdir		# directory mode: $fdir/disk
mnt=$tmp/mnt
mkdir "$fdir" "$mnt"
: >"$ffile"
truncate -s 128M "$img"

mounted= loopdev=
fs_cleanup() {
	if [ -n "$mounted" ]; then
		timeout 60 umount "$mnt" || umount -l "$mnt"
		mounted=
	fi
	if [ -n "$loopdev" ]; then
		losetup -d "$loopdev"
		loopdev=
	fi
}

start_fuse "$tmp/pid" "$ffile" --stats "$tmp/stats.json" "$img"
cleanup_fn fs_cleanup
[ "$(stat -c %s "$ffile")" = $((128 << 20)) ] ||
    fail "the FUSE file has the wrong size: $(stat -c %s "$ffile")"
loopdev=$(losetup -f --show "$ffile") || fail "losetup on the FUSE file"
mkfs.ext4 -q -F "$loopdev" >"$tmp/mkfs.log" 2>&1 ||
    fail "mkfs.ext4: $(cat "$tmp/mkfs.log")"
mount "$loopdev" "$mnt" || fail "mount $loopdev"
mounted=1

# Workload: files of several sizes and a small tree, each fsynced; a
# rename and a delete; fstrim (discards reach the export as punched
# holes); then checksums.
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
trimmed=
if command -v fstrim >/dev/null; then
	fstrim "$mnt" || fail "fstrim on the file system over the FUSE file"
	trimmed=1
fi
sync -f "$mnt" || fail "syncfs"
(cd "$mnt" && find . -type f -print0 | sort -z | xargs -0 sha256sum) \
    >"$tmp/sums" || fail "sha256sum"
[ "$(wc -l <"$tmp/sums")" = 24 ] || fail "workload files: $(cat "$tmp/sums")"

timeout 120 umount "$mnt" || fail "umount"
mounted=
e2fsck -fn "$loopdev" >"$tmp/fsck.log" 2>&1 ||
    fail "e2fsck -fn not clean: $(cat "$tmp/fsck.log")"
fs_cleanup

stop_fuse "$fuse_pid" "first server" || fail "server exited $? on SIGTERM"
fuse_mounted "$ffile" && fail "$ffile is still mounted after SIGTERM"
[ "$(stat -c %s "$ffile")" = 0 ] || fail "$ffile is not the empty file again"
# The counters: the fsyncs were FLUSHes, fstrim's discards trims (punched
# holes), and every request went through strategy.
python3 - "$tmp/stats.json" "$trimmed" <<'PY' || fail "counters: $(cat "$tmp/stats.json")"
import json, sys
s = json.load(open(sys.argv[1]))
assert s["flushes"] > 24, "flushes %d" % s["flushes"]
assert s["bytes_written"] > 6 << 20, "bytes_written %d" % s["bytes_written"]
assert s["io_errors"] == 0, "io_errors %d" % s["io_errors"]
if sys.argv[2]:
    assert s["trims"] > 0 and s["bytes_trimmed"] > 0, "no trims"
PY

# Again, from a fresh server on a directory: everything must be there.
start_fuse "$tmp/pid2" "$fdir" "$img"
[ -f "$fdir/disk" ] || fail "no $fdir/disk"
[ "$(ls "$fdir")" = disk ] || fail "$fdir lists $(ls "$fdir")"
loopdev=$(losetup -r -f --show "$fdir/disk") || fail "losetup -r"
e2fsck -fn "$loopdev" >"$tmp/fsck2.log" 2>&1 ||
    fail "e2fsck -fn after restart: $(cat "$tmp/fsck2.log")"
mount -o ro,noload "$loopdev" "$mnt" || fail "read-only mount after restart"
mounted=1
(cd "$mnt" && sha256sum --quiet -c "$tmp/sums") ||
    fail "checksums differ after the server restarted"
fs_cleanup
stop_fuse "$fuse_pid" "second server" ||
    fail "second server exited $? on SIGTERM"
fuse_mounted "$fdir" && fail "$fdir is still mounted after SIGTERM"
# The image itself has the file system, checked without the export.
e2fsck -fn "$img" >"$tmp/fsck3.log" 2>&1 ||
    fail "e2fsck -fn on the image: $(cat "$tmp/fsck3.log")"
exit 0
