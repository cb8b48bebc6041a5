#!/bin/bash
# test-cli-basic: rumpblk create and info on a fresh image, text and JSON.
. "$RUMPBLK_SRCDIR/tests/functions.sh"
requires jq --version

img=$tmp/disk.img
"$RUMPBLK" create "$img" 3M || fail "create"
[ "$(stat -c %s "$img")" = 3145728 ] || fail "create: wrong size"
"$RUMPBLK" create "$img" 1M 2>/dev/null && fail "create overwrote a file"
[ "$(stat -c %s "$img")" = 3145728 ] || fail "create touched the image"
json=$("$RUMPBLK" info --json --backend "$TEST_BACKEND" "$img") ||
    fail "info --json"
[ "$(echo "$json" | jq .size)" = 3145728 ] || fail "info size: $json"
[ "$(echo "$json" | jq .sector_size)" = 512 ] || fail "info secsize: $json"
[ "$(echo "$json" | jq -r .backend)" = "$TEST_BACKEND" ] ||
    fail "info backend: $json"
"$RUMPBLK" info "$img" | grep -q 'sector size:  512' || fail "info text"
"$RUMPBLK" info "$tmp/missing.img" 2>"$tmp/err" && fail "info on missing"
grep -q "missing.img" "$tmp/err" || fail "info error does not name the file"
exit 0
