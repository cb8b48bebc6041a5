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
# An option before the command is not called a command.
expect 2 "^rumpblk: unknown option '--json'; options of a command follow it" \
    --json info x

# info: each refusal of rumpblk_register() says which cause it was.
img=$tmp/disk.img
"$RUMPBLK" create "$img" 1M || fail "create"
expect 1 "disk.img: --offset 2097152 is not inside the file \(1048576 bytes\)" \
    info --offset 2M "$img"
expect 1 "disk.img: --offset 524288 \+ --size 614400 is past the end of the file \(1048576 bytes\)" \
    info --offset 512K --size 600K "$img"
expect 1 "$tmp: is a directory" info "$tmp"
mkfifo "$tmp/fifo" || fail "mkfifo"
expect 1 "fifo: is a FIFO" info "$tmp/fifo"
: >"$tmp/empty.img"
expect 1 "empty.img: is empty \(0 bytes\)" info "$tmp/empty.img"
expect 1 "missing.img: No such file or directory" info "$tmp/missing.img"
if [ -c /dev/zero ]; then
	expect 1 "/dev/zero: cannot tell the size of this character device; give --size" \
	    info /dev/zero
	"$RUMPBLK" info --size 1M /dev/zero >"$tmp/out" ||
	    fail "info --size 1M /dev/zero"
	grep -q "size is unknown" "$tmp/out" ||
	    fail "info on /dev/zero shows a host size: $(cat "$tmp/out")"
fi
# A backend the library refuses is named as the cause.  (Once every
# backend is built this registers; then there is nothing to check.)
for b in mmap direct uring; do
	if ! "$RUMPBLK" info --backend $b "$img" >/dev/null 2>"$tmp/err"; then
		grep -q "backend $b" "$tmp/err" ||
		    fail "info --backend $b: $(cat "$tmp/err")"
	fi
done

# info reports the RUMP_BLK* environment on stderr, as rumpblk_init() did.
RUMP_BLKSECTSHIFT=8 "$RUMPBLK" info --json "$img" >"$tmp/out" 2>"$tmp/err" ||
    fail "info with RUMP_BLKSECTSHIFT=8"
grep -q "RUMP_BLKSECTSHIFT must be least 9 (now 8)" "$tmp/err" ||
    fail "an invalid RUMP_BLKSECTSHIFT is not reported: $(cat "$tmp/err")"
RUMP_BLKFAIL=5 RUMP_BLKFAIL_SEED=42 "$RUMPBLK" info "$img" >/dev/null \
    2>"$tmp/err" || fail "info with RUMP_BLKFAIL"
grep -q "fail 5/10000. seed 42" "$tmp/err" ||
    fail "the fault-injection seed is not shown: $(cat "$tmp/err")"

# create: sizes that cannot work are usage errors, and nothing is made.
expect 2 "create: SIZE must not be 0" create "$tmp/zero.img" 0
[ -e "$tmp/zero.img" ] && fail "create made an image of size 0"
expect 2 "create: SIZE '20000000T' is too large" create "$tmp/huge.img" 20000000T
expect 2 "create: SIZE '9223372036854775808' is too large" \
    create "$tmp/huge.img" 9223372036854775808
expect 2 "create: SIZE '1.5G' is not a size" create "$tmp/huge.img" 1.5G
[ -e "$tmp/huge.img" ] && fail "create made an image on a usage error"
# An existing file, of any type, is refused by name and left alone.
expect 1 "disk.img: already exists; create never overwrites" create "$img" 2M
[ "$(stat -c %s "$img")" = 1048576 ] || fail "create changed an existing image"
expect 1 "already exists" create "$tmp" 1M
expect 1 "missing-dir/x.img: No such file or directory" \
    create "$tmp/missing-dir/x.img" 1M
# An odd size is allowed: the unit keeps its partial last sector.
"$RUMPBLK" create "$tmp/odd.img" 1000 || fail "create of an odd size"
"$RUMPBLK" info "$tmp/odd.img" | grep -q "1 (and a partial one)" ||
    fail "info of an odd-sized image"
# The write cache and power cuts (issue 11): each refusal names the flag
# or rule at fault, and a running server keeps serving after a bad
# command.
expect 2 "--write-cache: '0' is less than 64K" serve --write-cache 0 "$img"
expect 2 "--write-cache" serve --write-cache 12Q "$img"
expect 2 "model: unknown model 'melt'" serve --fault power-cut,model=melt "$img"
expect 2 "atom: '1000' is not a multiple of 512" \
    serve --fault power-cut,model=torn,atom=1000 "$img"
expect 2 "atom= applies to model=torn only" \
    serve --fault power-cut,model=subset,atom=4096 "$img"
expect 1 "power-cut needs a volatile write cache.*--write-cache" \
    serve --socket "$tmp/pcs" --fault power-cut,op=write,nth=3 "$img"
[ -e "$tmp/pcs" ] && fail "serve listened after refusing a power-cut rule"
# An extra export's file that cannot be opened: the option is named.
expect 1 "^rumpblk: --add-export b: .*missing.img: No such file or directory" \
    serve --socket "$tmp/pcs" --add-export b="$tmp/missing.img" "$img"
[ -e "$tmp/pcs" ] && fail "serve listened after failing to open --add-export's file"
expect 2 "rule 'error,unit=3': unit=3: no such unit" \
    serve --socket "$tmp/pcs" --fault error,unit=3 "$img"
[ -e "$tmp/pcs" ] && fail "serve listened after refusing a rule for unit 3"
start_server -P "$tmp/pc.pid" "$RUMPBLK" serve --socket "$tmp/pc.sock" \
    --pidfile "$tmp/pc.pid" --control "$tmp/pc.ctl" "$img" 2>"$tmp/pc.err"
out=$("$RUMPBLK" ctl "$tmp/pc.ctl" power-cut 2>&1) &&
    fail "ctl power-cut without a cache was taken: $out"
case $out in
*'"ok":false'*'no volatile write cache (serve --write-cache SIZE)'*) ;;
*) fail "ctl power-cut without a cache answered: $out" ;;
esac
out=$("$RUMPBLK" ctl "$tmp/pc.ctl" fault add power-cut,nth=2 2>&1) &&
    fail "a power-cut rule without a cache was armed: $out"
case $out in
*'"ok":false'*'--write-cache'*) ;;
*) fail "fault add power-cut without a cache answered: $out" ;;
esac
out=$("$RUMPBLK" ctl "$tmp/pc.ctl" power-cut model=melt 2>&1) &&
    fail "ctl power-cut model=melt was taken: $out"
case $out in
*"unknown model 'melt'"*) ;;
*) fail "ctl power-cut model=melt answered: $out" ;;
esac
# A rule for a unit the server does not have would never fire: refused.
out=$("$RUMPBLK" ctl "$tmp/pc.ctl" fault add error,unit=9 2>&1) &&
    fail "a rule for unit 9 of a one-unit server was armed: $out"
case $out in
*'"ok":false'*"unit=9: no such unit"*) ;;
*) fail "fault add error,unit=9 answered: $out" ;;
esac
"$RUMPBLK" ctl "$tmp/pc.ctl" fault add error,unit=0,op=trim >/dev/null ||
    fail "a rule for unit 0 was refused"
# Still serving.
"$RUMPBLK" ctl "$tmp/pc.ctl" stats >/dev/null ||
    fail "the server stopped answering after bad power-cut commands"
kill "$(cat "$tmp/pc.pid")"
exit 0
