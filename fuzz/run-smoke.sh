#!/bin/sh
# run-smoke.sh: build the libFuzzer targets with clang (ASan + UBSan, the
# library and server instrumented for coverage) in a build directory of
# their own, then run each one for a bounded time from its seed corpus
# fuzz/corpus/<target>/.  Exit status non-zero if a target finds a crash,
# a leak or a hang, or does not build.
#
# usage: fuzz/run-smoke.sh [SECONDS]     (default 60 per target; env
#        FUZZ_SECONDS overrides too, FUZZ_BUILDDIR the build directory)
set -eu
src=$(cd "$(dirname "$0")/.." && pwd)
secs=${1:-${FUZZ_SECONDS:-60}}
build=${FUZZ_BUILDDIR:-$src/build-fuzz}
targets="fuzz-nbd-handshake fuzz-nbd-request fuzz-fault-rule"

command -v clang >/dev/null || { echo "run-smoke: clang is needed" >&2; exit 1; }
if [ ! -f "$build/build.ninja" ]; then
	CC=clang meson setup "$build" "$src" -Dfuzz=true -Dtests=disabled \
	    -Db_sanitize=address,undefined -Db_lundef=false \
	    -Dc_args=-fsanitize=fuzzer-no-link \
	    -Dc_link_args=-fsanitize=fuzzer-no-link >/dev/null
fi
ninja -C "$build" $(for t in $targets; do echo "fuzz/$t"; done)

work=$(mktemp -d "${TMPDIR:-/tmp}/rumpblk-fuzz.XXXXXX")
trap 'rm -rf "$work"' EXIT
rc=0
for t in $targets; do
	# New inputs go to a scratch corpus; the committed seeds stay as
	# they are.  Artifacts (crashes) are kept in the build directory.
	mkdir -p "$work/$t" "$build/fuzz/artifacts"
	echo "run-smoke: $t for $secs s"
	UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
	ASAN_OPTIONS=detect_leaks=1 \
	TMPDIR=${TMPDIR:-/tmp} \
	    "$build/fuzz/$t" -max_total_time="$secs" -timeout=30 \
	    -rss_limit_mb=2048 -max_len=65536 -print_final_stats=1 \
	    -artifact_prefix="$build/fuzz/artifacts/$t-" \
	    -dict="$src/fuzz/nbd.dict" \
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
