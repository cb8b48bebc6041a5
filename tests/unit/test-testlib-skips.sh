#!/bin/bash
# test-testlib-skips: tl_main (testlib.h) is honest about skips.  The
# subtests of test-testlib-skips (pass, skip, fail on purpose), selected
# with RUMPBLK_TEST_ONLY and RUMPBLK_TEST_EXCEPT, give exit 0 when all
# passed, 77 when all skipped and 1 otherwise, and name what skipped and
# why.  Then a meson project of its own runs them as meson tests through
# scripts/run-tests, which must count the skip as skipped, not passed.
# usage: test-testlib-skips.sh PROGRAM
. "$RUMPBLK_SRCDIR/tests/functions.sh"

prog=$(realpath "$1") || fail "no program $1"
name=$(basename "$prog")

# expect STATUS ONLY EXCEPT: run prog with that selection, check its exit
# status; its output is in $tmp/out.
expect() {
	local want=$1 rc
	RUMPBLK_TEST_ONLY=$2 RUMPBLK_TEST_EXCEPT=$3 "$prog" >"$tmp/out" 2>&1
	rc=$?
	[ "$rc" -eq "$want" ] ||
	    fail "ONLY='$2' EXCEPT='$3': exit $rc, expected $want:
$(cat "$tmp/out")"
}

# has TEXT WHAT: the last run's output holds TEXT.
has() {
	grep -qF -- "$1" "$tmp/out" || fail "$2: no '$1' in:
$(cat "$tmp/out")"
}

expect 0 passes ''
expect 0 passes,has_setup ''
expect 1 fails ''
expect 1 setup_fails ''
expect 77 skips ''
has "$name: skipped skips [backend $TEST_BACKEND]: the self-test skips on purpose (1)" \
    "the skip's reason"
# The reason is the last line, for run-tests to show.
tail -n 1 "$tmp/out" | grep -qF "skipped skips [backend" ||
    fail "the last line is not the skip's: $(tail -n 1 "$tmp/out")"
expect 77 skips,skips_too ''
has "skipped skips_too [backend" "the second skip"
# A skip beside a pass: neither 0 nor 77 is true, so it fails.
expect 1 passes,skips ''
has "1 subtest(s) skipped (skips) and 1 passed" "a skip beside a pass"
expect 1 '' fails,setup_fails
has "2 subtest(s) skipped (skips, skips_too) and 2 passed" "EXCEPT"
# A failure stays a failure beside a skip.
expect 1 skips,fails ''
# Names that select nothing are errors, not empty passes.
expect 1 nosuch ''
has "RUMPBLK_TEST_ONLY: no subtest 'nosuch' here" "an unknown name"
expect 1 '' passes,skips,skips_too,fails,has_setup,setup_fails
has "leave no subtest to run" "an empty selection"
# cmocka leaves a failing group teardown out of its count; tl_main not.
TL_SELFTEST_TEARDOWN_FAILS=1 expect 1 passes ''

# Through meson and run-tests: one test passes, one skips, one fails.
mkdir "$tmp/src"
cat >"$tmp/src/meson.build" <<EOF
project('skips-selftest')
prog = find_program('$prog')
test('passes', prog, env : ['RUMPBLK_TEST_ONLY=passes'])
test('skips', prog, env : ['RUMPBLK_TEST_ONLY=skips'])
test('fails', prog, env : ['RUMPBLK_TEST_ONLY=fails'])
test('mixed', prog, env : ['RUMPBLK_TEST_ONLY=passes,skips'])
EOF
meson setup "$tmp/build" "$tmp/src" >"$tmp/setup.log" 2>&1 ||
    fail "meson setup: $(cat "$tmp/setup.log")"
"$RUMPBLK_SRCDIR/scripts/run-tests" "$tmp/build" >"$tmp/out" 2>&1 &&
    fail "run-tests passed although two tests failed"
has "skipped: skips: $name: skipped skips [backend $TEST_BACKEND]: the self-test skips on purpose (1)" \
    "run-tests' skip line"
tail -n 2 "$tmp/out" >"$tmp/summary"
printf '1 skipped\n1 passed, 2 failed\n' | cmp -s - "$tmp/summary" ||
    fail "run-tests' summary: $(cat "$tmp/summary")"
exit 0
