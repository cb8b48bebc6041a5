#!/bin/bash
# test-cli-errors: bad command lines (unknown commands and options, bad
# sizes, missing or extra arguments, impossible windows) exit non-zero
# with a message that names the option, argument or file at fault, and
# leave the image untouched and create no file.
. "$RUMPBLK_SRCDIR/tests/functions.sh"

img=$tmp/disk.img
"$RUMPBLK" create "$img" 1M || fail "create"
printf 'rumpblk' | dd of="$img" bs=1 seek=4096 conv=notrunc status=none
touch -d '2020-01-01 00:00:00' "$img"
sum0=$(sha256sum <"$img")
stat0=$(stat -c '%s %Y' "$img")

# bad WANT ARGS...: non-zero exit, stderr mentions WANT, image untouched,
# no file appeared in $tmp.
bad() {
	local want=$1 rc
	shift
	ls "$tmp" >"$tmp/.before"
	"$RUMPBLK" "$@" >"$tmp/.out" 2>"$tmp/.err"
	rc=$?
	[ "$rc" -ne 0 ] || fail "rumpblk $* exited 0"
	[ "$rc" -lt 128 ] || fail "rumpblk $* died with status $rc"
	grep -qF -- "$want" "$tmp/.err" ||
	    fail "rumpblk $*: the message does not name '$want': $(cat "$tmp/.err")"
	[ "$(sha256sum <"$img")" = "$sum0" ] || fail "rumpblk $* changed the image"
	[ "$(stat -c '%s %Y' "$img")" = "$stat0" ] ||
	    fail "rumpblk $* touched the image"
	ls "$tmp" >"$tmp/.after"
	cmp -s "$tmp/.before" "$tmp/.after" ||
	    fail "rumpblk $* left a file: $(diff "$tmp/.before" "$tmp/.after")"
}

# The command itself.
bad bogus bogus
bad --bogus --bogus
"$RUMPBLK" >/dev/null 2>&1 && fail "rumpblk with no command exited 0"

# create: sizes, arguments, options, existing files.
bad 12Q create "$tmp/new.img" 12Q
bad 1.5G create "$tmp/new.img" 1.5G
bad "''" create "$tmp/new.img" ''
bad 99999999999999999999999 create "$tmp/new.img" 99999999999999999999999
bad 20000000T create "$tmp/new.img" 20000000T
bad 1MX create "$tmp/new.img" 1MX
bad SIZE create "$tmp/new.img" 0
bad SIZE create "$tmp/new.img"
bad SIZE create
bad SIZE create "$tmp/new.img" 1M extra
bad --bogus create --bogus "$tmp/new.img" 1M
bad "$img" create "$img" 2M
bad "$tmp/no/such/dir/new.img" create "$tmp/no/such/dir/new.img" 1M
# A size the file system refuses: the half-made file is removed.
bad "$tmp/huge.img" create "$tmp/huge.img" 9223372036854775807

# info: options and windows.
bad --bogus info --bogus "$img"
bad --size info --size 12Q "$img"
bad --offset info --offset -1 "$img"
bad --sector-size info --sector-size 100 "$img"
bad --sector-size info --sector-size 131072 "$img"
bad --backend info --backend floppy "$img"
bad --size info "$img" --size
bad IMAGE info
bad IMAGE info "$img" "$img"
bad "$img" info --offset 2M "$img"
bad "$img" info --offset 512K --size 1M "$img"
bad "$tmp/missing.img" info "$tmp/missing.img"
bad "$tmp" info "$tmp"

# --help and --version work and say so on stdout.
"$RUMPBLK" --help | grep -q create || fail "--help does not list create"
"$RUMPBLK" create --help | grep -q SIZE || fail "create --help"
"$RUMPBLK" --version | grep -q '^rumpblk [0-9]' || fail "--version"
exit 0
