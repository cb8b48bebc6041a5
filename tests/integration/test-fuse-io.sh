#!/bin/bash
# test-fuse-io: the FUSE export's file against a model of its bytes
# (issue 16): odd offsets by read-modify-write (also concurrent ones
# sharing sectors), the end, truncation and O_TRUNC, fallocate (punch
# hole, zero range), SEEK_DATA/SEEK_HOLE, fsync as FLUSH, and the NBD
# export of the same unit beside it (fuse-io.py).  The server mounts a
# directory (PATH/disk), with --socket and --control.
. "$RUMPBLK_SRCDIR/tests/functions.sh"
. "$RUMPBLK_SRCDIR/tests/integration/fuse-functions.sh"
requires /usr/bin/python3 -c 'import nbd'
requires fallocate --version
requires_fuse

img=$tmp/disk.img
fdir=$tmp/export
mkdir "$fdir"
truncate -s 9M "$img"

start_fuse "$tmp/pid" "$fdir" --socket "$tmp/s" --control "$tmp/ctl" "$img"
timeout -k 10 600 /usr/bin/python3 \
    "$RUMPBLK_SRCDIR/tests/integration/fuse-io.py" "$fdir/disk" "$img" \
    "$tmp/s" "$tmp/ctl" "$RUMPBLK" || fail "fuse-io.py (see FAIL above)"
stop_fuse "$fuse_pid" "server" || fail "server exited $? on SIGTERM"
fuse_mounted "$fdir" && fail "$fdir is still mounted after SIGTERM"
exit 0
