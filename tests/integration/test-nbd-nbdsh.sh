#!/bin/bash
# test-nbd-nbdsh: libnbd (nbd-libnbd.py) against "rumpblk serve": structured
# replies, block status over a sparse image (holes after a trim), FUA
# writes and flush checked in the file, write-zeroes with and without
# NO_HOLE (st_blocks), pipelined aio commands completed in any order, and
# four connections in parallel from threads.
. "$RUMPBLK_SRCDIR/tests/functions.sh"
. "$RUMPBLK_SRCDIR/tests/integration/nbd-functions.sh"
requires nbdsh --version

img=$tmp/disk.img
truncate -s 64M "$img" "$tmp/small.img"
py=$RUMPBLK_SRCDIR/tests/integration/nbd-libnbd.py

# nbdsh itself, as users run it.
serve --socket "$tmp/s" --run 'nbdsh -u "$uri" -c "
assert h.get_structured_replies_negotiated()
assert h.get_size() == 64 << 20
h.pwrite(b\"hello, world\" * 1024, 512 * 7)
assert h.pread(12288, 512 * 7) == b\"hello, world\" * 1024
"' "$tmp/small.img" || fail "nbdsh -c"

serve --socket "$tmp/s" --run "'$py' \"\$uri\" '$img' block-status \
    structured fua-flush zero aio multiconn" "$img" ||
    fail "libnbd cases (see FAIL lines above)"
exit 0
