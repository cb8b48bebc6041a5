#!/bin/bash
# test-cli-info: rumpblk info on a sparse image above 2 TiB shows every
# sector, and says that the disklabel's count is clamped (only then).
. "$RUMPBLK_SRCDIR/tests/functions.sh"

big=$tmp/big.img
if ! truncate -s 3T "$big" 2>/dev/null; then
	echo "$0: skipped: $tmp cannot hold a sparse 3 TiB file"
	exit 77
fi
"$RUMPBLK" info "$big" >"$tmp/out" || fail "info on a 3 TiB image"
grep -q "^sectors:      6442450944\$" "$tmp/out" ||
    fail "info: sectors of a 3 TiB image: $(cat "$tmp/out")"
grep -q "4294967295 sectors (clamped to 32 bits" "$tmp/out" ||
    fail "info: the clamped disklabel is not said to be: $(cat "$tmp/out")"
"$RUMPBLK" create "$tmp/small.img" 1M || fail "create"
"$RUMPBLK" info "$tmp/small.img" >"$tmp/out" || fail "info on 1 MiB"
grep -q "clamped" "$tmp/out" && fail "info: a small file is said clamped"
exit 0
