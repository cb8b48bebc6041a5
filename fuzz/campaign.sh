#!/bin/bash
# campaign.sh: a fuzz campaign, where run-smoke.sh is a smoke run: each
# target of fuzz/meson.build (or those named) fuzzed for SECONDS with
# libFuzzer's -jobs/-workers, at nice 19, in the build run-smoke.sh uses
# (fuzz/lib.sh, the same targets, options and sanitizers).  The inputs it
# finds are merged into fuzz/corpus/<target>/ with -merge=1, which adds
# only those that bring new coverage, so the corpus stays minimal (the
# committed seeds are never removed).  Crashes, leaks, timeouts and
# out-of-memory inputs stay in the artifact directory and are listed at
# the end, each with the line that says what it was.
#
# Per target, one line: the seconds it ran, executions, executions per
# second, libFuzzer's cov: and ft: of its final stats (the best worker),
# the corpus's files and its cov: before and after the merge (a run of
# the corpus alone, -runs=0), and the artifacts it left.  If every worker
# stops early on a crash, the target is run again for the time left (at
# most 4 rounds).
#
# usage: fuzz/campaign.sh [SECONDS_PER_TARGET] [TARGET...]
#        (default 300 s, every target).  Environment: FUZZ_WORKERS
#        (processes per target; default half the CPUs, at least 1),
#        FUZZ_BUILDDIR (as for run-smoke.sh), FUZZ_ARTIFACTS (default
#        BUILDDIR/fuzz/artifacts), TMPDIR (the scratch corpora).
# Exit status: 0, or 1 if a target crashed, leaked or hung, or did not
# build, 2 on a usage error.
set -u
src=$(cd "$(dirname "$0")/.." && pwd)
prog=campaign
secs=${1:-${FUZZ_SECONDS:-300}}
[ $# -gt 0 ] && shift
case $secs in
'' | *[!0-9]*)
	echo "usage: fuzz/campaign.sh [SECONDS_PER_TARGET] [TARGET...]" >&2
	exit 2 ;;
esac
. "$src/fuzz/lib.sh"

ncpu=$(nproc 2>/dev/null || echo 1)
workers=${FUZZ_WORKERS:-$(( ncpu / 2 > 0 ? ncpu / 2 : 1 ))}
art=${FUZZ_ARTIFACTS:-$build/fuzz/artifacts}

fuzz_setup || exit 1
targets=$(fuzz_targets "$@") || exit 2
mkdir -p "$art" || exit 1
work=$(mktemp -d "${TMPDIR:-/tmp}/rumpblk-campaign.XXXXXX") || exit 1

# The process group running now (libFuzzer and its workers, under
# setsid): ours to stop if the campaign is interrupted.
pg=
cleanup() {
	if [ -n "$pg" ]; then
		kill -TERM -- "-$pg" 2>/dev/null
		wait "$pg" 2>/dev/null
	fi
	rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# run DIR LOG CMD...: CMD in DIR, in a session of its own at nice 19,
# output to LOG; its exit status.
run() {
	local dir=$1 log=$2 rc
	shift 2
	(cd "$dir" && exec setsid nice -n 19 "$@" >"$log" 2>&1) &
	pg=$!
	wait "$pg"
	rc=$?
	pg=
	return $rc
}

# nfiles DIR: the number of files in DIR.
nfiles() {
	find "$1" -maxdepth 1 -type f | wc -l
}

# corpus_cov T DIR LOG: "COV FT" of T's corpus DIR run once, or "? ?".
corpus_cov() {
	run "$work" "$3" "$(fuzz_exe "$1")" -runs=0 $FUZZ_OPTS "$2"
	sed -n 's/.*INITED cov: \([0-9]*\) ft: \([0-9]*\).*/\1 \2/p' "$3" |
	    tail -n 1 | grep . || echo "? ?"
}

fuzz_env
fmt='%-20s %5s %11s %7s %6s %6s %13s %13s %7s\n'
echo "campaign: $secs s per target, $workers worker(s) each (of $ncpu" \
    "CPUs), nice 19; $(clang --version | head -n 1)"
echo "campaign: build $build, artifacts $art"
table=$(printf "$fmt" target secs execs exec/s cov ft corpus corpus-cov \
    crashes)
status=0
for t in $targets; do
	exe=$(fuzz_exe "$t")
	corpus=$src/fuzz/corpus/$t
	d=$work/$t
	mkdir -p "$d/new" "$d/run" "$corpus"
	if ! fuzz_build "$t" >"$d/build.log" 2>&1; then
		echo "campaign: $t does not build:"
		tail -n 20 "$d/build.log"
		table+=$'\n'$(printf "$fmt" "$t" - - - - - - - "no build")
		status=1
		continue
	fi
	echo "campaign: $t for $secs s"
	touch "$d/marker"
	files0=$(nfiles "$corpus")
	read -r cov0 _ < <(corpus_cov "$t" "$corpus" "$d/before.log")

	start=$(date +%s)
	round=0
	while [ $round -lt 4 ]; do
		left=$(( start + secs - $(date +%s) ))
		[ $round -gt 0 ] && [ $left -lt 10 ] && break
		[ $left -lt 1 ] && left=1
		round=$((round + 1))
		mkdir -p "$d/run/$round"
		# The scratch corpus first: new inputs go there, and the
		# workers share them through it (-reload).
		run "$d/run/$round" parent.log "$exe" -jobs="$workers" \
		    -workers="$workers" -max_total_time="$left" $FUZZ_OPTS \
		    -print_final_stats=1 -artifact_prefix="$art/$t-" \
		    "$(fuzz_dict "$t")" "$d/new" "$corpus"
	done
	elapsed=$(( $(date +%s) - start ))

	# Executions: the workers' final stats, else their last status
	# line (a worker killed hard prints none).  cov/ft: the best
	# worker's last figures.
	read -r execs cov ft < <(awk '
	    FNR == 1 && NR > 1 { sum += last; last = 0 }
	    /^#[0-9]+[ \t]/ { n = substr($1, 2) + 0; if (n > last) last = n }
	    /^stat::number_of_executed_units:/ { last = $2 + 0 }
	    { for (i = 1; i < NF; i++) {
		if ($i == "cov:" && $(i + 1) + 0 > cov) cov = $(i + 1) + 0
		if ($i == "ft:" && $(i + 1) + 0 > ft) ft = $(i + 1) + 0 } }
	    END { print sum + last, cov + 0, ft + 0 }' \
	    "$d"/run/*/fuzz-*.log /dev/null)

	if [ "$(nfiles "$d/new")" -gt 0 ]; then
		run "$d" merge.log "$exe" -merge=1 \
		    -merge_control_file="$d/merge.ctl" $FUZZ_OPTS \
		    -artifact_prefix="$art/$t-" "$corpus" "$d/new" ||
		    echo "campaign: $t: the merge failed (see below)"
		grep -h '^MERGE-OUTER: .*added' "$d/merge.log" |
		    sed "s/^/  $t /"
	fi
	files1=$(nfiles "$corpus")
	read -r cov1 _ < <(corpus_cov "$t" "$corpus" "$d/after.log")

	# What each artifact was: the SUMMARY (or ALARM, or the
	# sanitizer's ERROR) line before the line that wrote it.
	find "$art" -maxdepth 1 -type f -name "$t-*" -newer "$d/marker" \
	    ! -name "$t-slow-unit-*" | sort >"$d/artifacts"
	crashes=$(wc -l <"$d/artifacts")
	if [ "$crashes" -gt 0 ]; then
		status=1
		awk '/^SUMMARY: |ALARM: working on|^==[0-9]+==ERROR: / {
			why = $0 }
		    /Test unit written to / { sub(/.*Test unit written to /,
			""); print "  " $0 ": " why }' \
		    "$d"/run/*/fuzz-*.log "$d/merge.log" 2>/dev/null |
		    sort -u >"$d/why"
		echo "campaign: $t left $crashes artifact(s):"
		while read -r a; do
			w=$(grep -F "  $a: " "$d/why" | head -n 1)
			echo "${w:-  $a}"
		done <"$d/artifacts"
		cat "$d/artifacts" >>"$work/all-artifacts"
	fi
	rate=$(( elapsed > 0 ? execs / elapsed : execs ))
	line=$(printf "$fmt" "$t" "$elapsed" "$execs" "$rate" "$cov" "$ft" \
	    "$files0->$files1" "$cov0->$cov1" "$crashes")
	echo "$line"
	table+=$'\n'$line
done

echo
echo "$table"
if [ -s "$work/all-artifacts" ]; then
	echo
	echo "artifacts (crashes, leaks, timeouts; reproduce with" \
	    "BUILDDIR/fuzz/TARGET FILE):"
	sed 's/^/  /' "$work/all-artifacts"
fi
exit $status
