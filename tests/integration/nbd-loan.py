#!/usr/bin/python3
# nbd-loan.py: the client side of test-nbd-loan.sh.
#
#   nbd-loan.py reads URI IMAGE SECONDS
#       concurrent reads of random sizes and places (within one window
#       and across windows, 512 bytes to 1 MiB), 64 in flight, each
#       compared with IMAGE, for SECONDS.
#   nbd-loan.py truncate URI IMAGE ORIG SECONDS
#       the same reads while this process truncates IMAGE and writes
#       ORIG's bytes back, again and again: a read returns, per 4 KiB
#       page, ORIG's bytes or zeroes (the file as it was at some
#       moment), or fails (EIO, or the connection ends: then it
#       reconnects); never other bytes.  At the end ORIG is whole
#       again and one full read of it must match.
# Prints one line of counts; exit 1 on a wrong byte.
import os, random, sys, time
import nbd

random.seed(int(os.environ.get("SEED", "7")))
INFLIGHT = 64
MAXREAD = 1 << 20


def connect(uri):
    h = nbd.NBD()
    h.connect_uri(uri)
    return h


def check(buf, ref, off, allow_zero):
    if buf == ref[off:off + len(buf)]:
        return True
    if not allow_zero:
        return False
    zero = bytes(4096)
    for p in range(0, len(buf), 4096):
        got = buf[p:p + 4096]
        want = ref[off + p:off + p + len(got)]
        if got != want and got != zero[:len(got)]:
            return False
    return True


def run(uri, ref, seconds, churn=None):
    size = len(ref)
    h = connect(uri)
    end = time.monotonic() + seconds
    stats = {"reads": 0, "bytes": 0, "errors": 0, "reconnects": 0}
    pending = {}
    bad = []

    def done(off, buf, err):
        if err.value != 0:
            stats["errors"] += 1
            err.value = 0
            return 1
        b = bytes(buf.to_bytearray())
        if not check(b, ref, off, churn is not None):
            bad.append((off, len(b)))
        stats["reads"] += 1
        stats["bytes"] += len(b)
        return 1

    while time.monotonic() < end and not bad:
        if churn is not None:
            churn()
        try:
            while h.aio_in_flight() < INFLIGHT:
                n = random.choice([512, 4096, 65536, 65536 * 2, MAXREAD,
                                   random.randrange(1, 2048) * 512])
                n = min(n, size)
                off = random.randrange(0, (size - n) // 512 + 1) * 512
                buf = nbd.Buffer(n)
                h.aio_pread(buf, off, completion=lambda e, o=off, b=buf:
                            done(o, b, e))
            h.poll(-1)
        except nbd.Error:
            # The server ended the connection (a lent page went away):
            # a clean error; a new connection is served.
            stats["reconnects"] += 1
            try:
                h.close()
            except Exception:
                pass
            h = connect(uri)
    while not bad:
        try:
            if h.aio_in_flight() == 0:
                break
            h.poll(-1)
        except nbd.Error:
            break
    if bad:
        print("wrong bytes at %d (+%d)" % bad[0], file=sys.stderr)
        sys.exit(1)
    if stats["reads"] == 0:
        print("no read succeeded: %s" % stats, file=sys.stderr)
        sys.exit(1)
    try:
        h.shutdown()
    except nbd.Error:
        pass
    return h, stats


def main():
    mode = sys.argv[1]
    if mode == "reads":
        uri, image, secs = sys.argv[2], sys.argv[3], float(sys.argv[4])
        ref = open(image, "rb").read()
        _, st = run(uri, ref, secs)
        if st["errors"] or st["reconnects"]:
            print("errors without a truncation: %s" % st, file=sys.stderr)
            sys.exit(1)
    else:
        uri, image, orig, secs = sys.argv[2:6]
        ref = open(orig, "rb").read()
        state = {"n": 0, "next": 0.0}

        def churn():
            now = time.monotonic()
            if now < state["next"]:
                return
            state["next"] = now + 0.05
            fd = os.open(image, os.O_WRONLY)
            os.ftruncate(fd, len(ref) // 2)
            os.pwrite(fd, ref[len(ref) // 2:], len(ref) // 2)
            os.close(fd)
            state["n"] += 1

        _, st = run(uri, ref, float(secs), churn)
        st["truncations"] = state["n"]
        h = connect(uri)
        buf = h.pread(len(ref), 0)
        h.shutdown()
        if buf != ref:
            print("the image read back whole differs", file=sys.stderr)
            sys.exit(1)
    print(" ".join("%s=%d" % kv for kv in sorted(st.items())))


main()
