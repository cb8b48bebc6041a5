#!/bin/bash
# powercut-fs.sh BUILDDIR: the power-cut checks of test-powercut-fs and
# test-powercut-sqlite (issue 11) over more seeded cuts: for each model,
# BENCH_SEEDS seeds (10) of the ext4 workload, of SQLite with
# synchronous=FULL and of SQLite with synchronous=OFF, each a live cut of
# "rumpblk serve --write-cache 64M" under a mounted ext4 (loop device
# over nbdfuse) and a recovery from the post-crash image.  The ext4 and
# SQLite OFF cuts are "rumpblk ctl power-cut" commands; the SQLite FULL
# cuts are commands for odd seeds and power-cut rules on a flush (MODEL:
# SEED:flush, see test-powercut-sqlite) for even ones.  It runs the two
# tests themselves, with POWERCUT_RUNS, POWERCUT_OFF_RUNS,
# POWERCUT_KEEP_GOING=1 and POWERCUT_RESULTS (see
# tests/integration/powercut-functions.sh), so the checks are the tests'.
#
# Output: one row per model, each figure as passed/runs:
#   cuts            cuts of that model (ext4 + SQLite FULL + SQLite OFF)
#   journal replay  the post-crash image asked for a replay and mount did
#                   it (all cuts)
#   e2fsck clean    e2fsck -fn clean after the replay (all cuts)
#   fsynced intact  ext4 runs where every file whose fsync returned
#                   before the cut is intact byte for byte
#   sqlite FULL ok  runs with integrity_check ok and every acknowledged
#                   commit present
#   OFF lost        synchronous=OFF runs where the harness reported
#                   commits acknowledged before the cut as lost (the bug
#                   the tool is for: expected in every run)
#   unflushed fs    fewest and most unflushed writes the cuts of the
#                   ext4 workload resolved ("unflushed" of the answer of
#                   ctl power-cut): a cut of an empty cache tests nothing
#   unflushed sql   the same for the SQLite cuts (FULL and OFF)
# then the reasons of failed runs.  Needs root, /dev/fuse and loop
# devices.  Environment: BENCH_SEEDS (10), BENCH_MODELS ("subset reorder
# sectors"), BENCH_DIR (scratch, default /var/tmp), RUMPBLK (default
# BUILDDIR/cli/rumpblk), RUMPBLK_TEST_BACKEND (pio); BENCH_KEEP=1 keeps
# the logs and results.tsv.  Exit status: non-zero if the checks could
# not run (skipped, or fewer results than runs); failed checks are
# figures, never judged here.
set -u
src=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-build}
seeds=${BENCH_SEEDS:-10}
models=${BENCH_MODELS:-subset reorder sectors}
RUMPBLK=${RUMPBLK:-$(cd "$build" 2>/dev/null && pwd)/cli/rumpblk}

die() {
	echo "powercut-fs: $*" >&2
	exit 1
}
[ -x "$RUMPBLK" ] || die "$RUMPBLK is not built (make build)"
[ "$seeds" -ge 1 ] 2>/dev/null || die "BENCH_SEEDS must be at least 1"

work=$(mktemp -d "${BENCH_DIR:-/var/tmp}/rumpblk-powercut.XXXXXX")
cleanup() {
	if [ "${BENCH_KEEP:-0}" = 1 ]; then
		echo "powercut-fs: logs and results kept in $work"
	else
		rm -rf "$work"
	fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

runs= fullruns=
for m in $models; do
	for ((s = 1; s <= seeds; s++)); do
		runs+="$m:$s "
		fullruns+="$m:$s$([ $((s % 2)) = 0 ] && echo :flush) "
	done
done
results=$work/results.tsv
: >"$results"

# check NAME RUNS: run tests/integration/NAME.sh over RUNS (and, for
# SQLite, the OFF runs).
check() {
	local st
	env RUMPBLK="$RUMPBLK" RUMPBLK_SRCDIR="$src" \
	    RUMPBLK_BUILDDIR="$(cd "$build" && pwd)" \
	    POWERCUT_RUNS="$2" POWERCUT_OFF_RUNS="$runs" \
	    POWERCUT_KEEP_GOING=1 POWERCUT_RESULTS="$results" \
	    "$src/tests/integration/$1.sh" >"$work/$1.log" 2>&1
	st=$?
	case $st in
	0 | 1) ;;
	77) die "$1 skipped: $(tail -n 1 "$work/$1.log")" ;;
	*) die "$1 exited $st: $(tail -n 5 "$work/$1.log")" ;;
	esac
}
start=$SECONDS
check test-powercut-fs "$runs"
check test-powercut-sqlite "$fullruns"
nruns=$(echo $runs | wc -w)
[ "$(wc -l <"$results")" = $((3 * nruns)) ] ||
    die "$(wc -l <"$results") results for $((3 * nruns)) runs:" \
    "$(tail -n 5 "$work"/test-powercut-*.log)"

echo "power cuts under ext4 and SQLite ($seeds seeds a model," \
    "$(($(wc -l <"$results"))) cuts, $((SECONDS - start)) s," \
    "backend ${RUMPBLK_TEST_BACKEND:-pio})"
awk -F '\t' -v models="$models" '
{
	m = $2
	cuts[m]++
	if ($4 == "ok") replay[m]++
	if ($5 == "ok") fsck[m]++
	if ($1 == "fs") { fs[m]++; if ($6 == "ok") files[m]++ }
	if ($1 == "sqlite-full") { full[m]++; if ($6 == "ok") fullok[m]++ }
	if ($1 == "sqlite-off") { off[m]++; if ($6 == "lost") offlost[m]++ }
	if ($7 ~ /^FAIL/) failed[++nf] = $1 " " $2 " seed " $3 ": " $7
	if (match($7, /"unflushed":[0-9]+/)) {
		u = substr($7, RSTART + 12, RLENGTH - 12) + 0
		k = ($1 == "fs" ? "fs" : "sql") SUBSEP m
		if (!(k in lo) || u < lo[k]) lo[k] = u
		if (!(k in hi) || u > hi[k]) hi[k] = u
	}
}
function f(k, n) { return sprintf("%d/%d", k, n) }
function r(k) { return (k in lo) ? lo[k] "-" hi[k] : "-" }
END {
	printf "%-8s %5s %15s %13s %15s %15s %9s %13s %14s\n", "model",
	    "cuts", "journal replay", "e2fsck clean", "fsynced intact",
	    "sqlite FULL ok", "OFF lost", "unflushed fs", "unflushed sql"
	n = split(models, ms, " ")
	for (i = 1; i <= n; i++) {
		m = ms[i]
		printf "%-8s %5d %15s %13s %15s %15s %9s %13s %14s\n", m,
		    cuts[m], f(replay[m], cuts[m]), f(fsck[m], cuts[m]),
		    f(files[m], fs[m]), f(fullok[m], full[m]),
		    f(offlost[m], off[m]), r("fs" SUBSEP m), r("sql" SUBSEP m)
	}
	for (i = 1; i <= nf && i <= 20; i++)
		print "failed: " substr(failed[i], 1, 400)
}' "$results"
