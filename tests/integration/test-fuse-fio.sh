#!/bin/bash
# test-fuse-fio: fio on the FUSE export's file, with verification (issue
# 16): every block written is read back and checked (crc32c, fatal on the
# first mismatch), with the psync engine (block sizes from 512 bytes to
# 128 KiB at any offset, so that odd ones go by read-modify-write) and
# with libaio at queue depth 16 (O_DIRECT, 4 KiB random and 1 MiB
# sequential); then a second server on the same image verifies what the
# first wrote (fio's verify_only), so the data outlived the server.
. "$RUMPBLK_SRCDIR/tests/functions.sh"
. "$RUMPBLK_SRCDIR/tests/integration/fuse-functions.sh"
requires fio --version
requires_fuse

img=$tmp/disk.img
ffile=$tmp/export
: >"$ffile"
truncate -s 96M "$img"

# run_fio NAME ARGS...: one fio job on the FUSE file, time-bounded.
run_fio() {
	local name=$1
	shift
	timeout -k 10 300 fio --name="$name" --filename="$ffile" \
	    --verify=crc32c --verify_fatal=1 --randseed=16 "$@" \
	    >"$tmp/$name.log" 2>&1 ||
	    fail "fio $name: $(tail -20 "$tmp/$name.log")"
	grep -q "err= 0" "$tmp/$name.log" || fail "fio $name: $(cat "$tmp/$name.log")"
}

start_fuse "$tmp/pid" "$ffile" "$img"
run_fio psync-odd --ioengine=psync --rw=randwrite --offset=0 --size=32M \
    --bsrange=512-128k --bs_unaligned=1
run_fio libaio-4k --ioengine=libaio --direct=1 --iodepth=16 \
    --rw=randwrite --bs=4k --offset=32M --size=32M
run_fio libaio-1m --ioengine=libaio --direct=1 --iodepth=16 --rw=write \
    --bs=1M --offset=64M --size=32M
stop_fuse "$fuse_pid" "first server" || fail "first server exited $?"

# The same blocks, read and verified through a fresh server.
start_fuse "$tmp/pid2" "$ffile" "$img"
run_fio psync-odd --ioengine=psync --rw=randwrite --offset=0 --size=32M \
    --bsrange=512-128k --bs_unaligned=1 --verify_only=1
run_fio libaio-4k --ioengine=libaio --direct=1 --iodepth=16 \
    --rw=randwrite --bs=4k --offset=32M --size=32M --verify_only=1
run_fio libaio-1m --ioengine=libaio --direct=1 --iodepth=16 --rw=write \
    --bs=1M --offset=64M --size=32M --verify_only=1
stop_fuse "$fuse_pid" "second server" || fail "second server exited $?"
fuse_mounted "$ffile" && fail "$ffile is still mounted"
exit 0
