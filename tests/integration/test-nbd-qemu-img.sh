#!/bin/bash
# test-nbd-qemu-img: qemu-img convert from a patterned file to the export
# (over an image that holds other data, so zero runs must be written as
# zeroes) and back to a file, with several coroutines and out-of-order
# writes, then qemu-img compare and cmp.
. "$RUMPBLK_SRCDIR/tests/functions.sh"
. "$RUMPBLK_SRCDIR/tests/integration/nbd-functions.sh"
requires qemu-img --version

size=$((16 << 20))
src=$tmp/src.img
img=$tmp/disk.img
# Source: data, a hole, data with zero pages inside, a hole to the end.
truncate -s $size "$src"
head -c $((4 << 20)) /dev/urandom | dd of="$src" conv=notrunc status=none
head -c $((3 << 20)) /dev/urandom |
    dd of="$src" bs=1M seek=8 conv=notrunc status=none
dd if=/dev/zero of="$src" bs=4K seek=$((9 << 8)) count=3 conv=notrunc \
    status=none
random_file "$img" $size

serve --socket "$tmp/s" --run "
	qemu-img convert -n -m 8 -W -f raw -O raw '$src' \"\$uri\" || exit 11
	qemu-img compare -f raw -F raw '$src' \"\$uri\" || exit 12
	qemu-img convert -m 8 -f raw -O raw \"\$uri\" '$tmp/back.img' || exit 13
	qemu-img convert -n -f raw -O raw '$src' \"\$uri\" || exit 14" "$img" \
    >"$tmp/out" 2>&1
rc=$?
if [ $rc != 0 ]; then
	cat "$tmp/out"
	fail "qemu-img over NBD: status $rc (11 convert to, 12 compare," \
	    "13 convert from, 14 convert again)"
fi
cmp "$src" "$tmp/back.img" || fail "converted back from NBD, the data differs"
cmp "$src" "$img" || fail "the served image differs from the source"
exit 0
