#!/bin/bash
# test-crash-check-fs: every crash state of a recorded ext4 run is
# consistent (issue 12).  ext4 is made on the image file, which is kept
# as the base; "rumpblk serve --write-log" then serves it to a loop
# device over nbdfuse, where a workload (crashcheck-fs.py) writes files,
# fsyncs each, and marks the log ("ctl mark") once its fsync returned,
# with files never fsynced between.  After an unmount and the server's
# exit, "rumpblk crash-check" explores the log's states (subset, a few
# per epoch, two at a time) with a checker (crashcheck-fs-check.sh) that
# runs e2fsck -fy on $image (exit 0 or 1) and, mounted read-only, finds
# every file whose mark is below $epoch_end byte for byte.  Every state
# must pass, and claiming the files never fsynced durable too must fail
# some.  test-crash-check-sqlite does the same with issue 11's SQLite
# harness (powercut-sqlite.py, synchronous=FULL, WAL, a mark after every
# commit) instead of files: KIND below.
. "$RUMPBLK_SRCDIR/tests/functions.sh"
. "$RUMPBLK_SRCDIR/tests/integration/nbd-functions.sh"
. "$RUMPBLK_SRCDIR/tests/integration/powercut-functions.sh"
pc_requires

KIND=${KIND:-files}
N=${CRASHCHECK_N:-6}
MAXSTATES=${CRASHCHECK_MAX_STATES:-4}
here=$RUMPBLK_SRCDIR/tests/integration
export TMPDIR=$tmp

truncate -s "$PC_SIZE" "$pc_img" || fail "cannot create $pc_img"
mkfs.ext4 -q -F -E nodiscard,lazy_itable_init=0,lazy_journal_init=0 \
    "$pc_img" >"$tmp/mkfs.log" 2>&1 || fail "mkfs.ext4: $(cat "$tmp/mkfs.log")"
cp --sparse=always "$pc_img" "$tmp/base.img" || fail "copying the base"
start_nbd "$tmp/pid" "$pc_sock" --write-log "$tmp/run.log" \
    --control "$pc_ctl" "$pc_img" 2>"$tmp/serve.err"
pc_pid=$(cat "$tmp/pid")
cleanup_fn pc_cleanup

pc_attach || fail "$pc_why"
mount "$pc_loopdev" "$pc_mnt" || fail "mount"
pc_mounted=1
if [ "$KIND" = files ]; then
	/usr/bin/python3 "$here/crashcheck-fs.py" files "$pc_mnt" \
	    "$tmp/manifest" "$N" "$RUMPBLK" "$pc_ctl" \
	    >"$tmp/workload.log" 2>&1 ||
	    fail "the workload: $(cat "$tmp/workload.log")"
else
	# Issue 11's harness, synchronous=FULL, a mark after every commit;
	# its "cut" is only a mark: the crash states are crash-check's.
	mkdir "$pc_mnt/db" || fail "mkdir $pc_mnt/db"
	POWERCUT_MARK="$RUMPBLK ctl $pc_ctl mark" /usr/bin/python3 \
	    "$here/powercut-sqlite.py" run "$pc_mnt/db/test.db" \
	    "$tmp/manifest" FULL 7 "$N" "$RUMPBLK" ctl "$pc_ctl" mark cut \
	    >"$tmp/workload.log" 2>&1 ||
	    fail "the workload: $(cat "$tmp/workload.log")"
fi
pc_cleanup
stop_nbd "$pc_pid" "write-log server" ||
    fail "the server exited $? on SIGTERM: $(cat "$tmp/serve.err")"
"$RUMPBLK" log info --json "$tmp/run.log" >"$tmp/marks.json" ||
    fail "log info"
[ "$(jq '.marks | length' "$tmp/marks.json")" -ge "$N" ] ||
    fail "the log has $(jq '.marks | length' "$tmp/marks.json") marks, not $N"
echo "log: $(jq -c '{entries, writes, bytes_written, flushes, epochs}' \
    "$tmp/marks.json")"

timeout -k 10 900 "$RUMPBLK" crash-check --log "$tmp/run.log" \
    --base "$tmp/base.img" --model subset --max-states "$MAXSTATES" \
    --jobs 2 --json --check "$here/crashcheck-fs-check.sh $KIND \
    $tmp/manifest $tmp/marks.json 7" >"$tmp/report.json" 2>"$tmp/check.err"
rc=$?
jq -c '{explored, failed, seconds, epochs: (.epochs | length)}' \
    "$tmp/report.json" 2>/dev/null
[ $rc = 0 ] || fail "crash-check exited $rc: $(cat "$tmp/check.err")" \
    "$(jq -c '.failures[0]' "$tmp/report.json" 2>/dev/null)"
[ "$(jq .explored "$tmp/report.json")" -gt "$N" ] ||
    fail "too few states explored: $(cat "$tmp/report.json")"

# The harness has teeth: claiming the files never fsynced (written after
# each mark) durable too, some state lacks one.
if [ "$KIND" = files ]; then
	cat "$tmp/manifest" "$tmp/manifest.careless" >"$tmp/careless"
	timeout -k 10 900 "$RUMPBLK" crash-check --log "$tmp/run.log" \
	    --base "$tmp/base.img" --model subset --max-states "$MAXSTATES" \
	    --jobs 2 --json --check "$here/crashcheck-fs-check.sh $KIND \
	    $tmp/careless $tmp/marks.json" >"$tmp/report2.json" \
	    2>"$tmp/check2.err"
	rc=$?
	[ $rc = 1 ] && [ "$(jq .failed "$tmp/report2.json")" -gt 0 ] ||
	    fail "unsynced files claimed durable: exit $rc, not caught:" \
	    "$(cat "$tmp/check2.err") $(jq -c . "$tmp/report2.json")"
	jq -r '.failures[0].output' "$tmp/report2.json" | grep -q "loose" ||
	    fail "the failure does not name the missing file:" \
	    "$(jq -c '.failures[0]' "$tmp/report2.json")"
	echo "careless claim caught in $(jq .failed "$tmp/report2.json")" \
	    "of $(jq .explored "$tmp/report2.json") states"
fi
exit 0
