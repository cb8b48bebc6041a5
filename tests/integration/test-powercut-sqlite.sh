#!/bin/bash
# test-powercut-sqlite: SQLite against a live power cut of "rumpblk serve
# --write-cache" (issue 11).  As in test-powercut-fs, ext4 on a loop
# device over nbdfuse on a 128 MiB image behind a 64 MiB cache; on it,
# powercut-sqlite.py runs numbered transactions on a WAL database (the
# reason for WAL is in its head comment), records in a manifest outside
# the device each commit after COMMIT returned, and after commit
# CUT_AFTER (a function of the seed, so runs are reproducible) runs
# "rumpblk ctl CTL power-cut model=MODEL seed=SEED" itself while more
# transactions go on; or, for a run written MODEL:SEED:flush, arms the
# rule power-cut,op=flush,nth=N,model=MODEL,seed=SEED (N = 1 + SEED % 3)
# with "rumpblk ctl CTL fault add", so that the power goes at a flush
# of the next commits, when their writes are in the cache and the flush
# in flight (a cut at a random moment mostly finds little unflushed
# under synchronous=FULL).  Each cut must add one power-cut line to the
# fault log.  The old mount is abandoned; a fresh nbdfuse + loop on the
# post-crash image must need a journal replay, replay it on mount, pass
# e2fsck -fn; then, mounted read-write, SQLite recovers the database and
# the harness checks it (and the file system, unmounted, is checked
# again).
#
#   synchronous=FULL (subset, reorder, sectors; a command and a rule on a
#     flush each): PRAGMA integrity_check must be ok and every
#     acknowledged commit present and intact.
#   synchronous=OFF (lose, subset, subset): the harness must report
#     commits acknowledged before the cut as lost in at least one run:
#     the tool finds the bug it exists to find.  (Without fsync most
#     commits never leave the old mount's page cache, which a power cut
#     loses whatever the device does; the device's cache decides only
#     for what writeback pushed out unflushed.)
#
# POWERCUT_RUNS and POWERCUT_OFF_RUNS="MODEL:SEED ..." replace the runs;
# POWERCUT_KEEP_GOING=1 and POWERCUT_RESULTS=FILE as bench/powercut-fs.sh
# uses them (see powercut-functions.sh).
#
# Cleanup undoes, in order, whatever is still set up (also on failure):
# the harness, the mount, the loop device, the FUSE mount, then the
# server.
. "$RUMPBLK_SRCDIR/tests/functions.sh"
. "$RUMPBLK_SRCDIR/tests/integration/nbd-functions.sh"
. "$RUMPBLK_SRCDIR/tests/integration/powercut-functions.sh"
pc_requires

harness=$RUMPBLK_SRCDIR/tests/integration/powercut-sqlite.py

# sql_run SYNC MODEL SEED [flush]: one cut and its recovery; sets
# r_replay, r_fsck, r_db (ok or FAIL for FULL; lost or none-lost for OFF)
# and detail, or pc_why and returns 1.
sql_run() {
	local sync=$1 model=$2 seed=$3 how=${4:-cmd} hpid st cutcmd n0 lost
	local run=$tmp/$1-$2-$3-${4:-cmd} k=$((30 + seed * 37 % 170))
	r_replay=- r_fsck=- r_db=- detail=
	mkdir "$run"
	pc_attach || return 1
	pc_mkfs || return 1
	cutcmd=(timeout 60 "$RUMPBLK" ctl "$pc_ctl")
	case $how in
	cmd) cutcmd+=(power-cut "model=$model" "seed=$seed") ;;
	flush)
		cutcmd+=(fault add "power-cut,op=flush,nth=$((1 + seed % 3))")
		cutcmd[-1]+=",model=$model,seed=$seed" ;;
	*)
		pc_why="unknown way to cut: $how (cmd or flush)"
		return 1 ;;
	esac
	n0=$(pc_logged)
	pc_bg hpid "$PC_PY" "$harness" run "$pc_mnt/db/test.db" \
	    "$run/manifest" "$sync" "$seed" "$k" "${cutcmd[@]}" \
	    >"$run/run.json" 2>"$run/run.err"
	pc_wait_exit "$hpid" 120
	st=$?
	echo "sqlite $sync model=$model seed=$seed cut ($how) after $k:" \
	    "$(cat "$run/run.json")"
	if [ $st != 0 ]; then
		pc_why="the harness exited $st: $(cat "$run/run.err")"
		return 1
	fi
	if [ "$how" = flush ]; then
		timeout 60 "$RUMPBLK" ctl "$pc_ctl" fault clear >/dev/null ||
		    { pc_why="ctl fault clear"; return 1; }
	fi
	pc_logged_one "$n0" || return 1
	detail="cut: $(grep '"class":"power-cut"' "$pc_faultlog" | tail -n 1); "
	pc_abandon || return 1
	pc_recover || return 1
	if ! mount "$pc_loopdev" "$pc_mnt"; then
		pc_why="mount after the recovery"
		return 1
	fi
	pc_mounted=1
	"$PC_PY" "$harness" verify "$pc_mnt/db/test.db" "$run/manifest" \
	    "$seed" >"$run/verify.json" 2>"$run/verify.err"
	st=$?
	detail+="verify: $(cat "$run/verify.json" "$run/verify.err")"
	if [ $st = 2 ] || ! lost=$(jq -e .lost.pre "$run/verify.json"); then
		pc_why="the harness could not verify: $(cat "$run/verify.err")"
		return 1
	fi
	if ! timeout 120 umount "$pc_mnt"; then
		pc_why="umount after SQLite's recovery"
		return 1
	fi
	pc_mounted=
	r_fsck=FAIL
	if ! e2fsck -fn "$pc_loopdev" >"$run/fsck.log" 2>&1; then
		pc_why="e2fsck -fn not clean after SQLite's recovery:"
		pc_why+=" $(cat "$run/fsck.log")"
		return 1
	fi
	r_fsck=ok
	if [ "$sync" = OFF ]; then
		r_db=none-lost
		[ "$lost" -gt 0 ] && r_db=lost
		return 0
	fi
	r_db=FAIL
	if [ $st != 0 ]; then
		pc_why="synchronous=FULL did not keep its acknowledged commits:"
		pc_why+=" $(cat "$run/verify.json")"
		return 1
	fi
	r_db=ok
}

pc_serve
nfailed=0 noff=0 noff_lost=0
full=$(pc_runs "subset:1 subset:4:flush reorder:2 reorder:5:flush sectors:3
    sectors:6:flush")
off=${POWERCUT_OFF_RUNS:-lose:1 subset:2 subset:3}
for run in $(for r in $full; do echo FULL:$r; done) \
    $(for r in $off; do echo OFF:$r; done)
do
	IFS=: read -r sync model seed how <<<"$run"
	kill -0 "$pc_pid" 2>/dev/null ||
	    fail "the server is gone before $run: $(cat "$tmp/serve.err")"
	pc_why=
	sql_run "$sync" "$model" "$seed" $how
	st=$?
	pc_cleanup
	kind=sqlite-${sync,,}
	seed+=${how:+:$how}
	if [ $st = 0 ]; then
		pc_record "$kind" "$model" "$seed" "$r_replay" "$r_fsck" \
		    "$r_db" "$detail"
		if [ "$sync" = OFF ]; then
			noff=$((noff + 1))
			[ "$r_db" = lost ] && noff_lost=$((noff_lost + 1))
		fi
		continue
	fi
	pc_record "$kind" "$model" "$seed" "$r_replay" "$r_fsck" "$r_db" \
	    "FAIL: $pc_why"
	[ "${POWERCUT_KEEP_GOING:-0}" = 1 ] ||
	    fail "synchronous=$sync model=$model seed=$seed: $pc_why"
	nfailed=$((nfailed + 1))
done

if [ $noff -gt 0 ] && [ $noff_lost = 0 ]; then
	fail "synchronous=OFF lost no acknowledged commit in $noff runs:" \
	    "the harness did not find the bug"
fi
stop_nbd "$pc_pid" "power-cut server" ||
    fail "the server exited $? on SIGTERM: $(cat "$tmp/serve.err")"
[ $nfailed = 0 ] || fail "$nfailed runs failed (see result: lines)"
exit 0
