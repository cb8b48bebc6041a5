#!/usr/bin/python3
# fuse-powercut.py: fault rules and power cuts seen through the FUSE
# export (issue 16).  Driven by test-fuse-powercut.sh, which starts and
# ends the servers; this only opens the file and talks to the control
# socket.
#
# usage: fuse-powercut.py faults FILE
#   The server has --fault error,op=read,range=1M-2M and
#   --fault error,op=write,range=3M-4M,errno=ENOSPC: reads in 1M-2M fail
#   with EIO (also one straddling 1M), others succeed; writes in 3M-4M
#   fail with ENOSPC and leave the medium as it was.
#
# usage: fuse-powercut.py powercut FILE CTL RUMPBLK
#   The server has --write-cache and --control CTL.  A handle writes A
#   and fsyncs, writes B and C (C over A) without fsync; "rumpblk ctl
#   CTL power-cut" (model lose).  From then on the old handle gets EIO
#   for reads, writes and fsync; a handle opened after the cut sees A
#   (not C) and zeroes where B was, and works.  A second cut with model
#   keep: a write not flushed survives it, and the handle of the first
#   cut's era fails again.

import errno
import json
import os
import subprocess
import sys

MB = 1 << 20


def check(cond, what):
    if not cond:
        sys.exit("FAIL: " + what)


def expect_errno(err, fn, what):
    try:
        fn()
    except OSError as e:
        check(e.errno == err, "%s: errno %s, expected %s" %
              (what, errno.errorcode.get(e.errno), errno.errorcode[err]))
        return
    sys.exit("FAIL: %s: no error, expected %s" % (what, errno.errorcode[err]))


def faults(path):
    fd = os.open(path, os.O_RDWR)
    check(len(os.pread(fd, 65536, 0)) == 65536, "read outside the rule")
    check(len(os.pread(fd, 4096, 2 * MB)) == 4096, "read at 2M (END is "
          "exclusive)")
    expect_errno(errno.EIO, lambda: os.pread(fd, 4096, MB + 100),
                 "read inside range=1M-2M")
    expect_errno(errno.EIO, lambda: os.pread(fd, 8192, MB - 4096),
                 "read straddling 1M")
    # op=read only: writes there work, and read back through another
    # range is not possible, so check the write's success only.
    check(os.pwrite(fd, b"w" * 4096, MB) == 4096, "write inside the read "
          "rule's range")
    before = os.pread(fd, 4096, 3 * MB)
    expect_errno(errno.ENOSPC, lambda: os.pwrite(fd, b"x" * 4096, 3 * MB),
                 "write inside range=3M-4M (errno=ENOSPC)")
    check(os.pread(fd, 4096, 3 * MB) == before, "a failed write changed "
          "the medium")
    # Odd offsets go by read-modify-write: the edge read fails first.
    expect_errno(errno.EIO, lambda: os.pwrite(fd, b"y" * 10, MB + 3),
                 "unaligned write whose edge read fails")
    os.close(fd)


def ctl(ctlpath, rumpblk, *cmd):
    r = subprocess.run([rumpblk, "ctl", ctlpath] + list(cmd),
                       capture_output=True, timeout=60)
    check(r.returncode == 0, "ctl %s: %s %s" % (" ".join(cmd), r.stdout,
                                                r.stderr))
    return json.loads(r.stdout)


def powercut(path, ctlpath, rumpblk):
    A = b"A" * 65536
    B = b"B" * 65536
    C = b"C" * 4096
    h1 = os.open(path, os.O_RDWR)
    os.pwrite(h1, A, 0)
    os.fsync(h1)
    os.pwrite(h1, B, 65536)
    os.pwrite(h1, C, 0)
    check(os.pread(h1, 4096, 0) == C, "the cache does not serve C")
    ans = ctl(ctlpath, rumpblk, "power-cut")
    pc = ans["power_cut"]
    check(pc["model"] == "lose" and pc["unflushed"] == 2 and
          pc["lost"] == 2, "power cut: %s" % pc)

    # The old handle: EIO from now on, whatever it does.
    expect_errno(errno.EIO, lambda: os.pread(h1, 4096, 0), "old read")
    expect_errno(errno.EIO, lambda: os.pwrite(h1, b"z" * 512, MB),
                 "old write")
    expect_errno(errno.EIO, lambda: os.fsync(h1), "old fsync")

    # A new handle: the post-crash medium.
    h2 = os.open(path, os.O_RDWR)
    check(os.pread(h2, 65536, 0) == A, "after the cut: not A at 0")
    check(os.pread(h2, 65536, 65536) == bytes(65536),
          "after the cut: B survived model lose")
    check(os.pread(h2, 512, MB) == bytes(512), "the old handle's write "
          "after the cut reached the medium")
    os.pwrite(h2, b"D" * 4096, 8192)
    check(os.pread(h2, 4096, 8192) == b"D" * 4096, "new handle write")
    expect_errno(errno.EIO, lambda: os.pread(h1, 512, 0),
                 "old read, later")

    # Model keep: what was not flushed persists; h2 is now old too.
    ans = ctl(ctlpath, rumpblk, "power-cut", "model=keep")
    check(ans["power_cut"]["model"] == "keep", "second cut: %s" % ans)
    expect_errno(errno.EIO, lambda: os.pread(h2, 512, 0), "h2 after the "
                 "second cut")
    h3 = os.open(path, os.O_RDONLY)
    check(os.pread(h3, 4096, 8192) == b"D" * 4096, "model keep lost D")
    check(os.pread(h3, 4096, 0) == b"A" * 4096, "A after the second cut")
    for h in (h1, h2, h3):
        os.close(h)


if sys.argv[1] == "faults":
    faults(sys.argv[2])
elif sys.argv[1] == "powercut":
    powercut(*sys.argv[2:5])
else:
    sys.exit("usage: fuse-powercut.py faults|powercut ...")
print("fuse-powercut %s: all checks passed" % sys.argv[1])
