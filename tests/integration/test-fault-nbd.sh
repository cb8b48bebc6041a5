#!/bin/bash
# test-fault-nbd: fault rules over NBD (issue #6).
#
#   - determinism: the same seed and workload give the same firings
#     (sorted fault logs) and byte-identical images with 1 and 4
#     connections really in use (libnbd handles on threads, shuffled
#     order; see fault-nbd-workload.py); another seed gives another set;
#   - replay: --fault-replay of the first run's log, with no rule, writes
#     the same log and image;
#   - control: a rule armed and disarmed through --control while a client
#     reads shows errors start and stop (the client's view, the socket's
#     'fault list' and 'stats' agree);
#   - a malformed --fault stops serve before it listens, naming the rule.
. "$RUMPBLK_SRCDIR/tests/functions.sh"
# nbdsh and the libnbd module belong to the system python3 (see
# nbd-functions.sh): system directories first.
PATH=/usr/bin:/bin:$PATH
export PATH
requires /usr/bin/python3 -c 'import nbd'

wl=$RUMPBLK_SRCDIR/tests/integration/fault-nbd-workload.py
rules=(--fault 'corrupt,op=write,range=0-1M,p=0.08,bits=2,id=cw'
    --fault 'lost,range=0-1M,p=0.08,id=lw'
    --fault 'misdirect,range=0-1M,shift=2048,p=0.08,id=mw'
    --fault 'corrupt,op=read,p=0.1,bits=3,id=cr')

# run NAME NCONN ARGS...: a fresh 2 MiB image, the workload, the log
# sorted in NAME.log and the image kept as NAME.img.
run() {
	local name=$1 nconn=$2
	shift 2
	rm -f "$tmp/s" "$tmp/disk.img"
	truncate -s 2M "$tmp/disk.img"
	timeout 120 "$RUMPBLK" serve --backend "$TEST_BACKEND" \
	    --socket "$tmp/s" --fault-log "$tmp/$name.raw" "$@" \
	    --run "/usr/bin/python3 '$wl' det \"\$uri\" $nconn" \
	    "$tmp/disk.img" 2>"$tmp/$name.err" ||
	    fail "$name: serve or workload failed: $(cat "$tmp/$name.err")"
	sort "$tmp/$name.raw" >"$tmp/$name.log"
	mv "$tmp/disk.img" "$tmp/$name.img"
}

run one 1 --fail-seed 42 "${rules[@]}"
grep -q '"class":"misdirect"' "$tmp/one.log" ||
    fail "no misdirect fired: $(head -3 "$tmp/one.log")"
grep -q 'fault rules: seed 42' "$tmp/one.err" ||
    fail "serve did not print the seed: $(cat "$tmp/one.err")"
run four 4 --fail-seed 42 "${rules[@]}"
cmp -s "$tmp/one.log" "$tmp/four.log" ||
    fail "1 and 4 connections fired differently:" \
    "$(diff "$tmp/one.log" "$tmp/four.log" | head -5)"
cmp -s "$tmp/one.img" "$tmp/four.img" ||
    fail "1 and 4 connections left different images"
run other 4 --fail-seed 43 "${rules[@]}"
cmp -s "$tmp/one.log" "$tmp/other.log" &&
    fail "seeds 42 and 43 fired the same requests"

run replay 4 --fault-replay "$tmp/one.raw"
cmp -s "$tmp/one.log" "$tmp/replay.log" ||
    fail "the replay wrote another log:" \
    "$(diff "$tmp/one.log" "$tmp/replay.log" | head -5)"
cmp -s "$tmp/one.img" "$tmp/replay.img" ||
    fail "the replay left another image"

# Control socket: arm and disarm while a client reads.
rm -f "$tmp/s"
truncate -s 2M "$tmp/ctl.img"
timeout 120 "$RUMPBLK" serve --backend "$TEST_BACKEND" --socket "$tmp/s" \
    --control "$tmp/ctl" \
    --run "/usr/bin/python3 '$wl' ctl \"\$uri\" '$RUMPBLK' '$tmp/ctl'" \
    "$tmp/ctl.img" >"$tmp/ctl.out" 2>&1 ||
    fail "control: $(cat "$tmp/ctl.out")"
[ -e "$tmp/ctl" ] && fail "the control socket was left behind"

# A malformed rule: refused by name, nothing served.
rm -f "$tmp/s"
if "$RUMPBLK" serve --socket "$tmp/s" --fault 'error,p=2' \
    "$tmp/ctl.img" 2>"$tmp/bad.err"; then
	fail "serve took --fault error,p=2"
fi
grep -q "error,p=2" "$tmp/bad.err" && grep -q "outside 0-1" "$tmp/bad.err" ||
    fail "the message does not name the rule and its fault:" \
    "$(cat "$tmp/bad.err")"
[ -e "$tmp/s" ] && fail "serve listened despite a bad rule"
exit 0
