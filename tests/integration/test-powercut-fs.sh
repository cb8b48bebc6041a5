#!/bin/bash
# test-powercut-fs: a kernel file system survives a live power cut of
# "rumpblk serve --write-cache" (issue 11).  The server holds a 128 MiB
# image behind a 64 MiB volatile cache; for each MODEL:SEED run, ext4 on
# a loop device over nbdfuse, a workload (powercut-fs-workload.py) writes
# seeded files, fsyncs half of them and records each in a manifest
# outside the device once its fsyncs returned, pushes the other half to
# the device unflushed, and goes on writing while "rumpblk ctl CTL
# power-cut model=MODEL seed=SEED" cuts power from outside.  The old
# mount is abandoned (umount -l, loop detached, FUSE unmounted, nbdfuse
# waited for); a fresh nbdfuse + loop on the post-crash image served by
# the same server must need a journal replay, mount (the replay), umount
# with none left to do, pass e2fsck -fn, and, mounted read-only, hold
# every file of the manifest byte for byte.  Each cut must add one
# power-cut line to the fault log; after the runs the server must exit 0
# on SIGTERM.
#
# Runs: subset, reorder and sectors with two seeds each, or
# POWERCUT_RUNS="MODEL:SEED ..."; POWERCUT_KEEP_GOING=1 and
# POWERCUT_RESULTS=FILE as bench/powercut-fs.sh uses them (see
# powercut-functions.sh).
#
# Cleanup undoes, in order, whatever is still set up (also on failure):
# the workload, the mount, the loop device, the FUSE mount, then the
# server.
. "$RUMPBLK_SRCDIR/tests/functions.sh"
. "$RUMPBLK_SRCDIR/tests/integration/nbd-functions.sh"
. "$RUMPBLK_SRCDIR/tests/integration/powercut-functions.sh"
pc_requires

wl=$RUMPBLK_SRCDIR/tests/integration/powercut-fs-workload.py

# fs_run MODEL SEED: one cut and its recovery; sets r_replay, r_fsck,
# r_files and detail, or pc_why and returns 1.
fs_run() {
	local model=$1 seed=$2 run=$tmp/$1-$2 wlpid st i n0
	r_replay=- r_fsck=- r_files=- detail=
	mkdir "$run"
	pc_attach || return 1
	pc_mkfs || return 1
	pc_bg wlpid "$PC_PY" "$wl" write "$pc_mnt/w" "$seed" \
	    "$run/manifest" "$run/ready" "$run/stop" 2>"$run/workload.log"
	for ((i = 0; i < 600; i++)); do
		[ -e "$run/ready" ] && break
		kill -0 "$wlpid" 2>/dev/null || break
		sleep 0.1
	done
	if [ ! -e "$run/ready" ]; then
		pc_why="the workload did not reach its cue within 60 s:"
		pc_why+=" $(cat "$run/workload.log")"
		return 1
	fi
	n0=$(pc_logged)
	pc_cut "$model" "$seed" || return 1
	pc_logged_one "$n0" || return 1
	touch "$run/stop"
	pc_wait_exit "$wlpid" 60
	st=$?
	# 0: stopped at the cue; 3: an I/O error, once the power is cut.
	if [ $st != 0 ] && [ $st != 3 ]; then
		pc_why="the workload exited $st: $(cat "$run/workload.log")"
		return 1
	fi
	pc_abandon || return 1
	pc_recover || return 1
	if ! mount -o ro "$pc_loopdev" "$pc_mnt"; then
		pc_why="read-only mount after the recovery"
		return 1
	fi
	pc_mounted=1
	r_files=FAIL
	if ! "$PC_PY" "$wl" verify "$pc_mnt/w" "$seed" "$run/manifest" \
	    >"$run/verify.log" 2>&1; then
		pc_why="fsynced files damaged by the cut: $(cat "$run/verify.log")"
		return 1
	fi
	r_files=ok
	detail="$(wc -l <"$run/manifest") fsynced files intact"
	detail+="; $(tail -n 1 "$run/workload.log"); cut: $pc_cut_json"
}

pc_serve
nfailed=0
for run in $(pc_runs "subset:1 subset:2 reorder:1 reorder:2 sectors:1
    sectors:2"); do
	model=${run%%:*} seed=${run#*:}
	kill -0 "$pc_pid" 2>/dev/null ||
	    fail "the server is gone before $run: $(cat "$tmp/serve.err")"
	pc_why=
	fs_run "$model" "$seed"
	st=$?
	pc_cleanup
	if [ $st = 0 ]; then
		pc_record fs "$model" "$seed" "$r_replay" "$r_fsck" "$r_files" \
		    "$detail"
		continue
	fi
	pc_record fs "$model" "$seed" "$r_replay" "$r_fsck" "$r_files" \
	    "FAIL: $pc_why"
	[ "${POWERCUT_KEEP_GOING:-0}" = 1 ] ||
	    fail "model=$model seed=$seed: $pc_why"
	nfailed=$((nfailed + 1))
done

stop_nbd "$pc_pid" "power-cut server" ||
    fail "the server exited $? on SIGTERM: $(cat "$tmp/serve.err")"
[ $nfailed = 0 ] || fail "$nfailed runs failed (see result: lines)"
exit 0
