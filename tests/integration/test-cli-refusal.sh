#!/bin/bash
# test-cli-refusal: on a file system that refuses O_DIRECT (ramfs), an
# explicit --backend direct fails with a message saying so, and touches
# nothing; auto serves the image (mmap or pio, not direct) and says so.  On ext4 (the
# scratch directory) direct works.  Needs root to mount ramfs.
. "$RUMPBLK_SRCDIR/tests/functions.sh"
requires jq --version
requires test "$(id -u)" = 0

"$RUMPBLK" create "$tmp/ok.img" 1M || fail "create"
json=$("$RUMPBLK" info --json --backend direct "$tmp/ok.img") ||
    fail "direct refused on $(stat -f -c %T "$tmp")"
[ "$(echo "$json" | jq -r .backend)" = direct ] || fail "direct: $json"

mkdir "$tmp/ramfs"
mount -t ramfs rumpblk-test "$tmp/ramfs" 2>/dev/null ||
    { echo "$0: skipped: cannot mount ramfs"; exit 77; }
cleanup_fn "umount '$tmp/ramfs' || umount -l '$tmp/ramfs'"
img=$tmp/ramfs/disk.img
"$RUMPBLK" create "$img" 1M || fail "create on ramfs"
sum=$(md5sum <"$img")
"$RUMPBLK" info --backend direct "$img" >"$tmp/out" 2>"$tmp/err" &&
    fail "direct on ramfs succeeded: $(cat "$tmp/out")"
grep -q "disk.img: the host file system refuses O_DIRECT" "$tmp/err" ||
    fail "no refusal message: $(cat "$tmp/err")"
json=$("$RUMPBLK" info --json --backend auto "$img") || fail "auto on ramfs"
case $(echo "$json" | jq -r .backend) in pio|mmap) ;; *) fail "auto: $json" ;; esac
[ "$(md5sum <"$img")" = "$sum" ] || fail "the image changed"
exit 0
