#!/bin/bash
# test-nbd-nbdcopy: nbdcopy with 4 connections (the server advertises
# CAN_MULTI_CONN) copies 64 MiB to the export and back, byte-exact, and
# copies a partly sparse source (zero runs must overwrite old data).
. "$RUMPBLK_SRCDIR/tests/functions.sh"
. "$RUMPBLK_SRCDIR/tests/integration/nbd-functions.sh"
requires nbdcopy --version
requires nbdinfo --version

size=$((64 << 20))
src=$tmp/src.img
img=$tmp/disk.img
random_file "$src" $size
truncate -s $size "$img"

serve --socket "$tmp/s" --run "
	nbdinfo --can multi-conn \"\$uri\" || exit 10
	nbdcopy --connections=4 --requests=16 --flush '$src' \"\$uri\" || exit 11
	nbdcopy --connections=4 --requests=16 \"\$uri\" '$tmp/back.img' || exit 12
	" "$img" >"$tmp/out" 2>&1
rc=$?
if [ $rc != 0 ]; then
	cat "$tmp/out"
	fail "nbdcopy over NBD: status $rc" \
	    "(10 no multi-conn, 11 copy to, 12 copy from)"
fi
cmp "$src" "$tmp/back.img" || fail "64 MiB copied back differ"
cmp "$src" "$img" || fail "the served image differs from the source"

# A source with holes over an image full of data: the holes must read
# back as zeroes (nbdcopy sends write-zeroes or trim for them).
truncate -s 0 "$tmp/holes.img"
truncate -s $size "$tmp/holes.img"
head -c $((8 << 20)) /dev/urandom |
    dd of="$tmp/holes.img" bs=1M seek=20 conv=notrunc status=none
serve --socket "$tmp/s" --run "
	nbdcopy --connections=4 '$tmp/holes.img' \"\$uri\" || exit 11
	nbdcopy --connections=4 \"\$uri\" '$tmp/back2.img' || exit 12
	" "$img" >"$tmp/out" 2>&1
rc=$?
[ $rc = 0 ] || { cat "$tmp/out"; fail "nbdcopy of a sparse source: status $rc"; }
cmp "$tmp/holes.img" "$tmp/back2.img" || fail "sparse copy: data differ"
cmp "$tmp/holes.img" "$img" || fail "sparse copy: served image differs"
exit 0
