#!/bin/bash
# test-powercut-nbd: power cuts over NBD with libnbd (issue 11): per
# model, the post-crash data a new client sees, in-flight requests with
# no reply, the flush audit and the fault log; a cut on cue twice with
# one seed gives one image, and so does a replay of its fault log
# (nbd-powercut.py, which starts and ends its own servers by PID).
. "$RUMPBLK_SRCDIR/tests/functions.sh"
requires /usr/bin/python3 -c 'import nbd'

timeout -k 10 300 /usr/bin/python3 \
    "$RUMPBLK_SRCDIR/tests/integration/nbd-powercut.py" "$RUMPBLK" "$tmp" ||
    fail "power cuts over NBD (see FAIL above)"
exit 0
