#!/bin/bash
# test-fault-cli: the fault commands without a server.  `rumpblk faults
# --help` documents every class and key with an example; `rumpblk ctl`
# refuses bad usage (2) and names the socket it cannot reach (1);
# `rumpblk bench --fault` fires and reports it, and refuses a bad rule.
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
truncate -s 4M "$tmp/b.img"
"$RUMPBLK" bench --json --seconds 0.2 --pattern randwrite \
    --fault 'corrupt,op=write,p=0.5,seed=3,id=half' \
    --fault-log "$tmp/b.log" "$tmp/b.img" >"$tmp/b.json" 2>"$tmp/b.err" ||
    fail "bench --fault: $(cat "$tmp/b.err")"
python3 - "$tmp/b.json" "$tmp/b.log" <<'PY' || fail "bench --fault JSON"
import json, sys
j = json.load(open(sys.argv[1]))
f = j["faults"]
n = sum(1 for _ in open(sys.argv[2]))
assert f["by_class"]["corrupt"] > 0 and f["injected"] == n, (f, n)
assert f["rules"][0]["id"] == "half" and f["rules"][0]["firings"] == n
PY
"$RUMPBLK" bench --seconds 0.1 --fault 'error,p=2' "$tmp/b.img" \
    2>"$tmp/err" >/dev/null
[ $? = 2 ] || fail "bench --fault error,p=2: want exit 2"
grep -q "rule 'error,p=2': p=2 is outside 0-1" "$tmp/err" ||
    fail "bench: $(cat "$tmp/err")"
exit 0
