#!/bin/bash
# test-fuse-demo: "make run" (issue 16) serves its demo image over NBD
# and, where the host has /dev/fuse, as a FUSE file, printing both
# forms; Ctrl-C on its terminal ends it quietly with status 0 (it used to
# end with "make: *** [Makefile:..: run] Error 143"), with nothing left
# mounted.  The demo runs from a copy of scripts/demo in the scratch
# directory (so that its demo/ is made there, not in the checkout), under
# the run recipe of the real Makefile with deps and build as no-ops.
. "$RUMPBLK_SRCDIR/tests/functions.sh"
. "$RUMPBLK_SRCDIR/tests/integration/fuse-functions.sh"
requires make --version
requires bash --version
requires /usr/bin/python3 -c 'import pty'

mkdir "$tmp/scripts" "$tmp/bin"
cp "$RUMPBLK_SRCDIR/scripts/demo" "$tmp/scripts/demo"
# The build the demo runs: this test's binary, as BUILD/cli/rumpblk.
mkdir -p "$tmp/build/cli"
ln -s "$RUMPBLK" "$tmp/build/cli/rumpblk"
{
	printf 'BUILD ?= build\n.PHONY: deps build run\n'
	printf 'deps:\n\t@true\nbuild:\n\t@true\n'
	sed -n '/^run:/,/^$/p' "$RUMPBLK_SRCDIR/Makefile"
} >"$tmp/Makefile"
grep -q 'scripts/demo' "$tmp/Makefile" || fail "no run recipe in the Makefile"
cleanup_fn "fuse_unmount_left '$tmp/demo/fuse'"

# As scripts/demo decides:
if [ -c /dev/fuse ] && { [ "$(id -u)" = 0 ] ||
    command -v fusermount3 >/dev/null; }; then
	want="the file $tmp/demo/fuse/disk (FUSE: no NBD client needed)"
else
	want="serves NBD only"
fi
timeout -k 10 240 /usr/bin/python3 \
    "$RUMPBLK_SRCDIR/tests/integration/fuse-demo-pty.py" "$tmp" \
    "$tmp/Makefile" "$tmp/build" "$want" || fail "make run (see FAIL above)"
fuse_mounted "$tmp/demo/fuse" && fail "the demo left its FUSE file mounted"
[ -f "$tmp/demo/disk.img" ] || fail "no demo image"
exit 0
