#!/bin/bash
# test-nbd-loan: READ replies sent from the image's pages (issue 15;
# rumpblk(1), --copy-reads; librumpblk(3), RUMPBLK_B_LOAN).  With the
# mmap backend a read within one window is lent, and one of 64 KiB or
# more leaves by sendfile(2); every backend runs the same checks.
#
#   small     --winsize 64K --wincount 4: windows remapped all the time
#             under lent replies still queued (at most 2 windows lent):
#             64 reads in flight of random sizes and places, each
#             compared with the image (nbd-loan.py); the mmap backend
#             lent some of them (bytes_lent in --stats), others copied
#   covering  the default windows: the same, and bytes_lent is most of
#             bytes_read with mmap; with --copy-reads, none
#   truncate  the image truncated to half and written back every 50 ms
#             under the reads: each read returns the image's bytes or
#             zeroes per page (what the file held at some moment), or
#             fails cleanly (EIO, or the connection ends and a new one
#             is served); never other bytes, and the server lives on
#             (under ASan in the sanitizer builds: no freed memory)
. "$RUMPBLK_SRCDIR/tests/functions.sh"
. "$RUMPBLK_SRCDIR/tests/integration/nbd-functions.sh"
requires /usr/bin/python3 -c 'import nbd'

py=$RUMPBLK_SRCDIR/tests/integration/nbd-loan.py
img=$tmp/disk.img
random_file "$img" $((4 << 20))

# stat_of FILE KEY: a number of the --stats JSON.
stat_of() {
	python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$1" "$2"
}

# round NAME SECONDS ARGS...: serve with ARGS, reads for SECONDS, stop.
round() {
	local name=$1 secs=$2
	shift 2
	start_nbd "$tmp/pid" "$tmp/s" --stats "$tmp/$name.json" "$@" "$img" \
	    2>"$tmp/$name.err"
	timeout -k 10 "$NBD_TIMEOUT" /usr/bin/python3 "$py" reads \
	    "$(nbd_uri "$tmp/s")" "$img" "$secs" >"$tmp/$name.out" ||
	    fail "$name: reads (see above); server: $(cat "$tmp/$name.err")"
	stop_nbd "$(cat "$tmp/pid")" "$name" ||
	    fail "$name: the server exited $?: $(cat "$tmp/$name.err")"
	echo "$name: $(cat "$tmp/$name.out"), read $(stat_of "$tmp/$name.json" \
	    bytes_read), lent $(stat_of "$tmp/$name.json" bytes_lent)"
}

round small 4 --winsize 64K --wincount 4
round covering 3
round copy 2 --copy-reads
read_small=$(stat_of "$tmp/small.json" bytes_read)
lent_small=$(stat_of "$tmp/small.json" bytes_lent)
read_cov=$(stat_of "$tmp/covering.json" bytes_read)
lent_cov=$(stat_of "$tmp/covering.json" bytes_lent)
lent_copy=$(stat_of "$tmp/copy.json" bytes_lent)
[ "$lent_copy" = 0 ] || fail "--copy-reads lent $lent_copy bytes"
if [ "$TEST_BACKEND" = mmap ]; then
	[ "$lent_small" -gt 0 ] && [ "$lent_small" -lt "$read_small" ] ||
	    fail "small windows: lent $lent_small of $read_small bytes" \
	    "(expected some, not all)"
	# Every read is within the one covering window.
	[ "$lent_cov" = "$read_cov" ] ||
	    fail "covering windows: lent $lent_cov of $read_cov bytes"
else
	[ "$lent_small" = 0 ] && [ "$lent_cov" = 0 ] ||
	    fail "the $TEST_BACKEND backend lent bytes"
fi

# The truncations: a copy of the image is the reference.
cp "$img" "$tmp/orig.img" || fail "cannot copy the image"
start_nbd "$tmp/pid" "$tmp/s" "$img" 2>"$tmp/trunc.err"
pid=$(cat "$tmp/pid")
timeout -k 10 "$NBD_TIMEOUT" /usr/bin/python3 "$py" truncate \
    "$(nbd_uri "$tmp/s")" "$img" "$tmp/orig.img" 5 >"$tmp/trunc.out" ||
    fail "truncate: reads (see above); server: $(cat "$tmp/trunc.err")"
echo "truncate: $(cat "$tmp/trunc.out")"
grep -q 'truncations=[1-9]' "$tmp/trunc.out" ||
    fail "truncate: the image was never truncated: $(cat "$tmp/trunc.out")"
kill -0 "$pid" 2>/dev/null || fail "truncate: the server died:" \
    "$(cat "$tmp/trunc.err")"
stop_nbd "$pid" "truncate" ||
    fail "truncate: the server exited $?: $(cat "$tmp/trunc.err")"
echo "ok"
