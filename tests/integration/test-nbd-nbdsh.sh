#!/bin/bash
# test-nbd-nbdsh: libnbd (nbd-libnbd.py) against "rumpblk serve": structured
# replies, block status over a sparse image (holes after a trim), FUA
# writes and flush checked in the file, write-zeroes with and without
# NO_HOLE (st_blocks), pipelined aio commands completed in any order,
# four connections in parallel from threads, an export window inside a
# bigger file, and seed-mode faults following the request sequence.
. "$RUMPBLK_SRCDIR/tests/functions.sh"
. "$RUMPBLK_SRCDIR/tests/integration/nbd-functions.sh"
requires nbdsh --version
requires jq --version

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

# An export window (--offset/--size) inside a bigger file: edge writes,
# trims and zeroes stay inside it.
random_file "$tmp/win.img" $((10 << 20))
WINDOW_OFFSET=$((1 << 20)) serve --socket "$tmp/s" --offset 1M --size 8M \
    --run "'$py' \"\$uri\" '$tmp/win.img' window" "$tmp/win.img" ||
    fail "export window (see FAIL lines above)"

# Seed-mode fault injection over NBD follows the request sequence of one
# connection exactly (each aligned request is one strategy call).
truncate -s 8M "$tmp/faults.img"
FAIL_N=2500 FAIL_SEED=12345 serve --socket "$tmp/s" --fail 2500 \
    --fail-seed 12345 --run "'$py' \"\$uri\" '$tmp/faults.img' seed-faults" \
    "$tmp/faults.img" || fail "seed-mode faults (see FAIL lines above)"

# The --stats counters after a known sequence: every byte moved is the
# client's (no reads or writes of the server's own), and io_total is the
# sum of the per-operation counts.
truncate -s 8M "$tmp/count.img"
serve --socket "$tmp/s" --stats "$tmp/stats.json" \
    --run "'$py' \"\$uri\" '$tmp/count.img' counted" "$tmp/count.img" ||
    fail "counted sequence"
st() {
	jq -r ".$1" "$tmp/stats.json"
}
[ "$(st bytes_read)" = $((10 * 4096)) ] &&
    [ "$(st bytes_written)" = $((5 * 8192)) ] &&
    [ "$(st trims)" = 1 ] && [ "$(st zeroes)" = 1 ] &&
    [ "$(st flushes)" -ge 2 ] && [ "$(st extent_queries)" -ge 1 ] &&
    [ "$(st io_errors)" = 0 ] && [ "$(st faults_injected)" = 0 ] ||
    fail "--stats after the counted sequence: $(cat "$tmp/stats.json")"
sum=$(jq '[.flushes, .trims, .zeroes, .extent_queries] | add' \
    "$tmp/stats.json")
[ "$(st io_total)" = $((15 + sum)) ] ||
    fail "io_total $(st io_total) is not 15 reads and writes + $sum others"
exit 0
