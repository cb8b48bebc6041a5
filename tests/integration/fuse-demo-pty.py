#!/usr/bin/python3
# fuse-demo-pty.py: "make run" on a terminal, stopped with Ctrl-C (issue
# 16).  Runs "make -f MAKEFILE run BUILD=BUILDDIR" in DIR on a pseudo-
# terminal, waits (bounded) for the demo to print how to connect, types
# Ctrl-C, and checks that make ends with status 0 and says nothing after
# the Ctrl-C but the echo of it (before, make reported "Error 143").
#
# usage: fuse-demo-pty.py DIR MAKEFILE BUILDDIR WANT
#   WANT: a line the demo must print before the Ctrl-C (e.g. the FUSE
#   file's line).

import os
import pty
import select
import sys
import time

wd, makefile, build, want = sys.argv[1:5]


def check(cond, what):
    if not cond:
        sys.exit("FAIL: " + what)


pid, fd = pty.fork()
if pid == 0:
    os.chdir(wd)
    os.execvp("make", ["make", "-s", "-f", makefile, "run",
                       "BUILD=" + build])

out = b""


def pump(seconds, until=None):
    """Read the terminal for at most seconds, or until `until` shows."""
    global out
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        r, _, _ = select.select([fd], [], [], 0.2)
        if not r:
            continue
        try:
            data = os.read(fd, 4096)
        except OSError:
            return False            # the other side is gone
        if not data:
            return False
        out += data
        if until is not None and until in out:
            return True
    return until is None


ok = pump(120, b"Connect from another terminal")
check(ok, "the demo did not print how to connect: %r" % out[-2000:])
pump(2)                             # the rest of what it prints
check(want.encode() in out, "no %r in what the demo printed: %r" %
      (want, out[-3000:]))
mark = len(out)
os.write(fd, b"\x03")               # Ctrl-C
pump(60)
deadline = time.monotonic() + 60
st = None
while time.monotonic() < deadline:
    done, st = os.waitpid(pid, os.WNOHANG)
    if done:
        break
    time.sleep(0.1)
else:
    os.kill(pid, 9)
    os.waitpid(pid, 0)
    sys.exit("FAIL: make did not end within 60 s of Ctrl-C")
after = out[mark:].decode(errors="replace").replace("^C", "").strip()
check(os.waitstatus_to_exitcode(st) == 0, "make ended with %d after "
      "Ctrl-C: %r" % (os.waitstatus_to_exitcode(st), after))
check(after == "", "make said something after Ctrl-C: %r" % after)
print("fuse-demo-pty: make run ended quietly with status 0")
