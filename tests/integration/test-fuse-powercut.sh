#!/bin/bash
# test-fuse-powercut: fault rules and power cuts through the FUSE export
# (issue 16).
#
# 1. --fault rules fire on the file's reads and writes with their errno
#    (fuse-powercut.py faults).
# 2. "rumpblk ctl CTL power-cut" with --write-cache: every handle opened
#    before the cut gets EIO from then on, handles opened after see the
#    post-crash image (fuse-powercut.py powercut).
# 3. An ext4 on a loop device over the file, mounted at the cut: the file
#    system cannot write into the post-crash disk (its hash, read through
#    a new handle, does not change when it syncs after the cut); the loop
#    device is detached, and a new one over the file mounts the
#    post-crash file system, which has every file synced before the cut.
. "$RUMPBLK_SRCDIR/tests/functions.sh"
. "$RUMPBLK_SRCDIR/tests/integration/fuse-functions.sh"
requires /usr/bin/python3 -c 'import os'
requires mkfs.ext4 -V
requires losetup --version
requires_kernel_fs
requires_fuse

PY=$RUMPBLK_SRCDIR/tests/integration/fuse-powercut.py
img=$tmp/disk.img
ffile=$tmp/export
mnt=$tmp/mnt
mkdir "$mnt"
: >"$ffile"
truncate -s 64M "$img"

# 1. Fault rules.
start_fuse "$tmp/pid1" "$ffile" --fault error,op=read,range=1M-2M \
    --fault error,op=write,range=3M-4M,errno=ENOSPC "$img" 2>"$tmp/err1"
timeout -k 10 300 /usr/bin/python3 "$PY" faults "$ffile" ||
    fail "faults through the FUSE file (see FAIL above)"
stop_fuse "$fuse_pid" "fault server" || fail "fault server exited $?"

# 2. Power cuts and handles, on a zeroed image.
truncate -s 0 "$img"
truncate -s 64M "$img"
start_fuse "$tmp/pid2" "$ffile" --write-cache 1M --control "$tmp/ctl2" \
    "$img" 2>"$tmp/err2"
timeout -k 10 300 /usr/bin/python3 "$PY" powercut "$ffile" "$tmp/ctl2" \
    "$RUMPBLK" || fail "power cuts through the FUSE file (see FAIL above)"
stop_fuse "$fuse_pid" "power-cut server" || fail "power-cut server exited $?"
[ "$(grep -c 'was reset: FUSE handles opened before fail with EIO' \
    "$tmp/err2")" = 2 ] || fail "no line per reset: $(cat "$tmp/err2")"

# 3. A file system mounted over the file at the cut.
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
truncate -s 0 "$img"
truncate -s 64M "$img"
start_fuse "$tmp/pid3" "$ffile" --write-cache 4M --control "$tmp/ctl3" \
    "$img" 2>"$tmp/err3"
cleanup_fn fs_cleanup
loopdev=$(losetup -f --show "$ffile") || fail "losetup on the FUSE file"
mkfs.ext4 -q -F "$loopdev" >"$tmp/mkfs.log" 2>&1 ||
    fail "mkfs.ext4: $(cat "$tmp/mkfs.log")"
mount "$loopdev" "$mnt" || fail "mount $loopdev"
mounted=1
for i in 1 2 3 4; do
	head -c $((i * 100000)) /dev/urandom >"$mnt/synced$i" || fail "write"
done
sync -f "$mnt" || fail "syncfs before the cut"
(cd "$mnt" && sha256sum synced*) >"$tmp/sums"
head -c 300000 /dev/urandom >"$mnt/unsynced" || fail "write unsynced"

timeout 60 "$RUMPBLK" ctl "$tmp/ctl3" power-cut >"$tmp/cut.json" ||
    fail "ctl power-cut: $(cat "$tmp/cut.json")"
h1=$(timeout 120 sha256sum <"$ffile") || fail "read after the cut"
# The mounted file system goes on: it writes, and syncs, through the old
# handle of its loop device, which must reach nothing.
head -c 200000 /dev/urandom >"$mnt/after" 2>/dev/null
sync -f "$mnt" 2>/dev/null && fail "syncfs after the cut succeeded"
h2=$(timeout 120 sha256sum <"$ffile") || fail "read after the sync"
[ "$h1" = "$h2" ] || fail "the old file system wrote into the post-crash disk"
fs_cleanup

# The post-crash file system, through a new handle: every synced file.
loopdev=$(losetup -f --show "$ffile") || fail "losetup after the cut"
mount "$loopdev" "$mnt" || fail "mount of the post-crash file system"
mounted=1
(cd "$mnt" && sha256sum --quiet -c "$tmp/sums") ||
    fail "synced files differ after the cut"
fs_cleanup
stop_fuse "$fuse_pid" "file-system server" ||
    fail "file-system server exited $?"
fuse_mounted "$ffile" && fail "$ffile is still mounted"
exit 0
