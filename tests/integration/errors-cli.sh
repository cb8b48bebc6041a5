#!/bin/bash
# errors-cli: bad input to rumpblk gets a message that names what is at
# fault and the documented exit status (2 usage, 1 failure), and touches
# no file.  One case per message a new user met in review.
. "$RUMPBLK_SRCDIR/tests/functions.sh"

# expect RC PATTERN CMD...: CMD exits RC and its stderr matches PATTERN.
expect() {
	local want=$1 pat=$2 rc
	shift 2
	"$RUMPBLK" "$@" >"$tmp/out" 2>"$tmp/err"
	rc=$?
	[ "$rc" = "$want" ] ||
	    fail "rumpblk $*: exit $rc, expected $want; stderr: $(cat "$tmp/err")"
	grep -qE -- "$pat" "$tmp/err" ||
	    fail "rumpblk $*: stderr does not match '$pat': $(cat "$tmp/err")"
}

# getopt's own messages name the command, not a bare subcommand.
expect 2 "^rumpblk info: unrecognized option '--bogus'" info --bogus x
expect 2 "^rumpblk create: " create --bogus x 1M
expect 2 "unknown command 'frobnicate'" frobnicate
exit 0
