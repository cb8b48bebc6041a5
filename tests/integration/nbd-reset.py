#!/usr/bin/python3
# nbd-reset.py: the control socket's "reset" against "rumpblk serve"
# (test-nbd-reset.sh starts the server and checks its exit).
#
# usage: nbd-reset.py URI IMAGE RUMPBLK CTLSOCK
#
# Two clients connect and read; reads are left in flight on one of them;
# "rumpblk ctl CTLSOCK reset" resets the unit; both connections must be
# dropped (the next command fails) within DROP_SECS; then a new client
# reads the same data as before and is served as usual.  IMAGE is the
# file served, read directly to check what the clients see.  Every wait
# is bounded; the exit status is 0 only if every check passed.  It runs
# under the system python3, which has the libnbd module.

import json
import subprocess
import sys
import time

import nbd

DROP_SECS = 10
CHUNK = 64 << 10


def check(cond, what):
    if not cond:
        sys.exit("FAIL: " + what)


def ctl(rumpblk, sock, *cmd):
    p = subprocess.run([rumpblk, "ctl", sock] + list(cmd),
                       capture_output=True, text=True, timeout=60)
    try:
        answer = json.loads(p.stdout)
    except ValueError:
        answer = None
    check(p.returncode == 0 and answer == {"ok": True},
          "ctl %s: rc %d, %r %r" % (" ".join(cmd), p.returncode, p.stdout,
                                    p.stderr))


def connect(uri):
    h = nbd.NBD()
    h.connect_uri(uri)
    return h


def expect_dropped(h, name):
    """The next command on h fails within DROP_SECS; the seconds it took."""
    t0 = time.monotonic()
    buf = bytearray(4096)
    try:
        cookie = h.aio_pread(buf, 0)
    except nbd.Error:
        return time.monotonic() - t0        # refused at once: dead
    while time.monotonic() - t0 < DROP_SECS:
        if h.aio_is_dead() or h.aio_is_closed():
            return time.monotonic() - t0
        try:
            check(not h.aio_command_completed(cookie),
                  "%s: a read after the reset succeeded" % name)
            h.poll(100)
        except nbd.Error:
            return time.monotonic() - t0
    sys.exit("FAIL: %s: not dropped %d s after the reset" % (name,
             DROP_SECS))


def main(uri, image, rumpblk, sock):
    with open(image, "rb") as f:
        data = f.read()
    size = len(data)
    offs = [0, CHUNK, size // 2, size - CHUNK]

    h1, h2 = connect(uri), connect(uri)
    for name, h in (("client 1", h1), ("client 2", h2)):
        for off in offs:
            check(h.pread(CHUNK, off) == data[off:off + CHUNK],
                  "%s: read at %d before the reset" % (name, off))
    # Reads in flight when the reset lands: they complete in the library
    # and their replies are dropped.  Not waited for.
    bufs = [bytearray(CHUNK) for i in range(32)]
    for i, buf in enumerate(bufs):
        h2.aio_pread(buf, (i * CHUNK) % (size - CHUNK))

    ctl(rumpblk, sock, "reset")
    t1 = expect_dropped(h1, "client 1")
    t2 = expect_dropped(h2, "client 2")
    print("reset: both connections dropped (%.3f s, %.3f s)" % (t1, t2))

    # A client that connects afterwards is served as usual.
    h3 = connect(uri)
    for off in offs:
        check(h3.pread(CHUNK, off) == data[off:off + CHUNK],
              "new client: read at %d after the reset" % off)
    block = bytes(range(256)) * (CHUNK // 256)
    h3.pwrite(block, CHUNK)
    h3.flush()
    check(h3.pread(CHUNK, CHUNK) == block, "new client: write read back")
    h3.shutdown()
    with open(image, "rb") as f:
        f.seek(CHUNK)
        check(f.read(CHUNK) == block, "the new client's write is not in "
              "the image")
    print("reset: a new connection reads the same data and writes")


if __name__ == "__main__":
    if len(sys.argv) != 5:
        sys.exit("usage: nbd-reset.py URI IMAGE RUMPBLK CTLSOCK")
    main(*sys.argv[1:])
