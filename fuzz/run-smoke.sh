#!/bin/sh
# run-smoke.sh: build the libFuzzer targets with clang (ASan + UBSan, the
# library and server instrumented for coverage) in a build directory of
# their own, then run each one for a bounded time from its seed corpus
# fuzz/corpus/<target>/.  Exit status non-zero if a target finds a crash,
# a leak or a hang, or does not build.  The targets are those of
# fuzz/meson.build (fuzz/lib.sh, shared with fuzz/campaign.sh).
#
# usage: fuzz/run-smoke.sh [SECONDS]     (default 60 per target; env
#        FUZZ_SECONDS overrides too, FUZZ_BUILDDIR the build directory)
set -eu
src=$(cd "$(dirname "$0")/.." && pwd)
prog=run-smoke
secs=${1:-${FUZZ_SECONDS:-60}}
. "$src/fuzz/lib.sh"

fuzz_setup
targets=$(fuzz_targets)
fuzz_build $targets

work=$(mktemp -d "${TMPDIR:-/tmp}/rumpblk-fuzz.XXXXXX")
trap 'rm -rf "$work"' EXIT
fuzz_env
rc=0
for t in $targets; do
	# New inputs go to a scratch corpus; the committed seeds stay as
	# they are.  Artifacts (crashes) are kept in the build directory.
	mkdir -p "$work/$t" "$build/fuzz/artifacts"
	echo "run-smoke: $t for $secs s"
	"$(fuzz_exe "$t")" -max_total_time="$secs" $FUZZ_OPTS \
	    -print_final_stats=1 \
	    -artifact_prefix="$build/fuzz/artifacts/$t-" \
	    "$(fuzz_dict "$t")" \
	    "$work/$t" "$src/fuzz/corpus/$t" >"$work/$t.log" 2>&1 || {
		rc=1
		echo "run-smoke: $t FAILED; its log:"
		tail -n 60 "$work/$t.log"
		continue
	}
	grep -E '^stat::(number_of_executed_units|peak_rss_mb)' \
	    "$work/$t.log" | sed "s/^/  $t /"
done
exit $rc
