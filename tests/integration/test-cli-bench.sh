#!/bin/bash
# test-cli-bench: rumpblk bench runs every pattern over the backend under
# test, prints the JSON it promises, writes only inside its unit, refuses
# to write to a read-only image and names the flag at fault.
. "$RUMPBLK_SRCDIR/tests/functions.sh"
requires jq --version

img=$tmp/disk.img
head -c 4M /dev/urandom >"$img"
cp "$img" "$tmp/orig.img"
b=(--backend "$TEST_BACKEND" --seconds 0.2)

for p in randread seqread; do
	j=$("$RUMPBLK" bench "${b[@]}" --pattern $p --json "$img") ||
	    fail "bench $p"
	for k in iops mib_per_s ops seconds lat_mean_us lat_p99_us; do
		echo "$j" | jq -e ".$k >= 0" >/dev/null || fail "$p: no $k: $j"
	done
	[ "$(echo "$j" | jq -r .backend)" = "$TEST_BACKEND" ] ||
	    fail "$p: backend: $j"
	[ "$(echo "$j" | jq -r .pattern)" = $p ] || fail "$p: pattern: $j"
	[ "$(echo "$j" | jq .ops)" -gt 0 ] || fail "$p: no ops: $j"
	# The unit's counters, in the form serve --stats writes them
	# (cli/stats-json.c): every request is counted, none failed.
	echo "$j" | jq -e '.io_total >= .ops and .io_errors == 0 and
	    .bytes_written == 0 and .lat_read.count >= .ops and
	    (.lat_read.hist | length) > 0 and .faults.injected == 0' \
	    >/dev/null || fail "$p: counters: $j"
done
cmp -s "$img" "$tmp/orig.img" || fail "a read benchmark changed the image"

# Writes with --offset/--size touch only [1M, 2M): threads, queue depth,
# unaligned-to-window offset, sync and async.
"$RUMPBLK" bench "${b[@]}" --pattern randwrite --threads 2 --qd 4 \
    --offset 1M --size 1M --json "$img" >"$tmp/w.json" || fail "randwrite"
"$RUMPBLK" bench "${b[@]}" --pattern seqwrite --sync --bs 64K \
    --offset 1M --size 1M --winsize 64K --wincount 2 "$img" >"$tmp/w.txt" ||
    fail "seqwrite --sync"
cmp -s -n 1M "$img" "$tmp/orig.img" || fail "wrote before --offset"
cmp -s -i 2M "$img" "$tmp/orig.img" || fail "wrote after --offset + --size"
cmp -s -i 1M -n 1M "$img" "$tmp/orig.img" && fail "wrote nothing"
[ "$(jq .qd "$tmp/w.json")" = 4 ] || fail "qd: $(cat "$tmp/w.json")"
if [ "$TEST_BACKEND" = mmap ]; then
	grep -q 'windows 2 x 65536' "$tmp/w.txt" || fail "windows: $(cat "$tmp/w.txt")"
	# CLI default: windows cover the image.
	j=$("$RUMPBLK" bench "${b[@]}" --json "$img")
	[ "$(echo "$j" | jq '.winsize * .wincount >= 4194304')" = true ] ||
	    fail "default windows do not cover the image: $j"
fi

# A read-only image: reads run, writes are refused with a clear message.
if [ "$(id -u)" != 0 ]; then
	chmod 0444 "$img"
	"$RUMPBLK" bench "${b[@]}" "$img" >/dev/null || fail "read-only read"
	"$RUMPBLK" bench "${b[@]}" --pattern seqwrite "$img" 2>"$tmp/err" &&
	    fail "wrote to a read-only image"
	grep -q "read-only" "$tmp/err" || fail "message: $(cat "$tmp/err")"
	chmod 0644 "$img"
fi

# Bad flags name themselves and exit non-zero.
for a in "--pattern scan" "--bs 1000" "--qd 0" "--winsize 3000" \
    "--seconds x" "--threads 0"; do
	"$RUMPBLK" bench "${b[@]}" $a "$img" 2>"$tmp/err" >/dev/null &&
	    fail "bench $a succeeded"
	grep -q -- "${a%% *}" "$tmp/err" || fail "bench $a: $(cat "$tmp/err")"
done
"$RUMPBLK" bench "${b[@]}" "$tmp/missing.img" 2>"$tmp/err" && fail "missing"
grep -q missing.img "$tmp/err" || fail "missing: $(cat "$tmp/err")"
"$RUMPBLK" bench --help | grep -q -- --qd || fail "--help"
exit 0
