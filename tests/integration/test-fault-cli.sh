#!/bin/bash
# test-fault-cli: the fault commands without a server.  `rumpblk faults
# --help` documents every class and key with an example; `rumpblk ctl`
# refuses bad usage (2) and names the socket it cannot reach (1).
. "$RUMPBLK_SRCDIR/tests/functions.sh"

"$RUMPBLK" faults --help >"$tmp/ref" || fail "faults --help exits non-zero"
for class in error corrupt lost misdirect stale torn delay; do
	grep -qE "^  $class " "$tmp/ref" || fail "faults --help: no class $class"
	grep -qE "^ +$class(,|$)" "$tmp/ref" ||
	    fail "faults --help: no example of class $class"
done
for key in op range unit after p ppm nth every count seed id errno bits \
    shift atom ms; do
	grep -qE "(^|[ ,])$key=" "$tmp/ref" || fail "faults --help: no key $key="
done
# (test-fault-control checks that every example there arms.)
"$RUMPBLK" faults >/dev/null || fail "'rumpblk faults' exits non-zero"
"$RUMPBLK" faults --bogus 2>"$tmp/err" && fail "faults --bogus accepted"

"$RUMPBLK" ctl --help | grep -q "fault add RULE" || fail "ctl --help"
"$RUMPBLK" ctl 2>/dev/null
[ $? = 2 ] || fail "ctl without arguments: want exit 2"
"$RUMPBLK" ctl "$tmp/nosuch" stats 2>"$tmp/err"
[ $? = 1 ] || fail "ctl to a missing socket: want exit 1"
grep -q "$tmp/nosuch" "$tmp/err" || fail "ctl does not name the socket: $(cat "$tmp/err")"
exit 0
