#!/bin/bash
# test-nbd-blocksize: block sizes as DESIGN.md section 6 says.  A client
# that did not request NBD_INFO_BLOCK_SIZE (libnbd with
# set_request_block_size(False), and the EXPORT_NAME path) gets any byte
# offset and length served, payloads up to 32 MiB, and concurrent
# overlapping unaligned writes from two connections stay atomic per
# request; a client that negotiated gets EINVAL for unaligned requests and
# nothing is written.  Pipelined overlapping aligned and unaligned writes
# are all answered.  With --sector-size 4096 as well.
. "$RUMPBLK_SRCDIR/tests/functions.sh"
. "$RUMPBLK_SRCDIR/tests/integration/nbd-functions.sh"
requires nbdsh --version
requires python3 --version

img=$tmp/disk.img
random_file "$img" $((40 << 20))
py=$RUMPBLK_SRCDIR/tests/integration/nbd-libnbd.py

for ss in 512 4096; do
	serve --socket "$tmp/s" --sector-size $ss --run "'$py' \"\$uri\" \
	    '$img' unaligned atomic export-name negotiated" "$img" ||
	    fail "sector size $ss: block-size cases (see FAIL lines above)"
	serve --socket "$tmp/s" --sector-size $ss \
	    --run "python3 '$NBDRAW' --unix \"\$unixsocket\" sanity" "$img" ||
	    fail "sector size $ss: raw EXPORT_NAME and GO without block sizes"
	# Pipelined overlapping aligned and unaligned writes in one send
	# (a hang found by fuzz-nbd-request).
	NBD_TIMEOUT=30 serve --socket "$tmp/s" --sector-size $ss \
	    --shutdown-timeout 2 --run "python3 '$NBDRAW' \
	    --unix \"\$unixsocket\" rmw-pipelined" "$img" ||
	    fail "sector size $ss: pipelined unaligned writes"
done
exit 0
