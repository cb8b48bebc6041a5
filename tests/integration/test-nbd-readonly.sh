#!/bin/bash
# test-nbd-readonly: --read-only exports, and images the server can only
# open read-only (a file on a read-only bind mount), advertise READ_ONLY
# and refuse WRITE, WRITE_ZEROES and TRIM with EPERM (libnbd with its own
# checks off, so the server is what answers), leaving the image unchanged.
. "$RUMPBLK_SRCDIR/tests/functions.sh"
. "$RUMPBLK_SRCDIR/tests/integration/nbd-functions.sh"
requires nbdsh --version
requires nbdinfo --version

py=$RUMPBLK_SRCDIR/tests/integration/nbd-libnbd.py
mkdir "$tmp/d"
img=$tmp/d/disk.img
random_file "$img" $((4 << 20))
sum=$(sha256sum <"$img")

serve --socket "$tmp/s" --read-only \
    --run "'$py' \"\$uri\" '$img' readonly" "$img" ||
    fail "--read-only export"
[ "$(sha256sum <"$img")" = "$sum" ] || fail "--read-only: image changed"

# A read-only image: the same file through a read-only bind mount.  The
# server falls back to a read-only open and must say so to clients.
mkdir "$tmp/ro"
if mount --bind "$tmp/d" "$tmp/ro" 2>/dev/null; then
	cleanup_fn "umount '$tmp/ro' || umount -l '$tmp/ro'"
	mount -o remount,bind,ro "$tmp/ro" ||
	    fail "cannot remount the bind mount read-only"
	serve --socket "$tmp/s" \
	    --run "'$py' \"\$uri\" '$tmp/ro/disk.img' readonly &&
		   nbdinfo --can read-only \"\$uri\"" "$tmp/ro/disk.img" ||
	    fail "read-only image (read-only bind mount)"
	[ "$(sha256sum <"$img")" = "$sum" ] || fail "read-only image changed"
else
	echo "no bind mount here: the read-only image case is left out"
fi
exit 0
