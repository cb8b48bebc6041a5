#!/usr/bin/python3
# nbd-write-log.py: "rumpblk serve --write-log" judged by an independent
# reader (logwrites.py), with one libnbd client doing request after
# request, so that the log must hold exactly the client's sequence.
#
# usage: nbd-write-log.py RUMPBLK TMPDIR [SERVE-ARGS...]
#   (SERVE-ARGS: e.g. --write-cache 64M; the backend comes from
#   RUMPBLK_TEST_BACKEND)
#
# 1. Serve a random image with --write-log and --control.  The client
#    writes (several sizes and offsets, overlapping, one unaligned, which
#    reaches the unit as its covering sectors), flushes, trims, zeroes,
#    writes with FUA, has "rumpblk ctl mark first" sent, writes, flushes.
# 2. Right after that flush, with the server running, a copy of the log
#    decodes to every entry through the flush and replays to the image of
#    that moment.
# 3. More writes, no flush; SIGTERM to the server, by PID.  The final log
#    holds exactly the client's sequence (offsets, lengths, flags, data,
#    the mark's name); replayed whole onto the original image it gives
#    the server's image byte for byte; through mark "first" and through
#    the first flush, the images of those moments (from a model of the
#    client's writes kept here).
# 4. When "rumpblk log" exists, "rumpblk log replay" gives the same image
#    as logwrites.py.
# Every server is started with --pidfile and ended by its PID; every wait
# is bounded.  It runs under the system python3, which has libnbd.

import json
import os
import shutil
import signal
import subprocess
import sys
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import logwrites  # noqa: E402
from logwrites import DISCARD, FLUSH, FUA, MARK  # noqa: E402

import nbd  # noqa: E402

SIZE = 4 << 20
SS = 512
MARK_NAME = "first"


def check(cond, what):
    if not cond:
        sys.exit("FAIL: %s" % what)


class Server:
    def __init__(self, rumpblk, tmp, name, img, log, args):
        self.rumpblk = rumpblk
        self.sock = os.path.join(tmp, name + ".sock")
        self.ctl = os.path.join(tmp, name + ".ctl")
        self.errpath = os.path.join(tmp, name + ".err")
        self.pidfile = os.path.join(tmp, name + ".pid")
        self.err = open(self.errpath, "w")
        self.p = subprocess.Popen(
            [rumpblk, "serve", "--socket", self.sock, "--control", self.ctl,
             "--pidfile", self.pidfile, "--write-log", log, "--backend",
             os.environ.get("RUMPBLK_TEST_BACKEND", "pio")] + args + [img],
            stdout=subprocess.DEVNULL, stderr=self.err)
        for _ in range(300):
            if os.path.exists(self.pidfile) or self.p.poll() is not None:
                break
            time.sleep(0.05)
        check(os.path.exists(self.pidfile) and self.p.poll() is None,
              "%s: the server did not start: %s" % (name, self.errors()))

    def errors(self):
        with open(self.errpath) as f:
            return f.read().strip()

    def ctl_cmd(self, *cmd):
        p = subprocess.run([self.rumpblk, "ctl", self.ctl] + list(cmd),
                           capture_output=True, text=True, timeout=30)
        return p.returncode, p.stdout, p.stderr

    def stop(self):
        """SIGTERM, wait at most 30 s; the exit status."""
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
            try:
                self.p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
                check(False, "the server did not exit within 30 s of "
                      "SIGTERM")
        self.err.close()
        return self.p.returncode


class Client:
    """A libnbd client that keeps the expected log (one tuple per entry:
    kind, offset, length, flags, data or mark name) and a model of the
    image."""

    def __init__(self, srv, image):
        self.srv = srv
        self.model = bytearray(image)
        self.expect = []
        self.h = nbd.NBD()
        # Byte-granular requests (the server then reads, merges and
        # writes back the edge sectors of an unaligned write): a client
        # that negotiates block sizes is held to whole sectors.
        self.h.set_request_block_size(False)
        self.h.set_strict_mode(self.h.get_strict_mode() & ~nbd.STRICT_ALIGN)
        self.h.connect_unix(srv.sock)
        check(self.h.get_size() == SIZE, "export size %d" %
              self.h.get_size())
        check(self.h.can_trim() and self.h.can_zero() and
              self.h.can_flush() and self.h.can_fua(),
              "the export lacks trim, zero, flush or FUA")

    def write(self, off, data, fua=False):
        self.h.pwrite(data, off, nbd.CMD_FLAG_FUA if fua else 0)
        self.model[off:off + len(data)] = data
        # An unaligned write reaches the unit (and the log) as the
        # sectors that cover it, read, merged and written back.
        a, e = off // SS * SS, -(-(off + len(data)) // SS) * SS
        self.expect.append(("write", a, e - a, FUA if fua else 0,
                            bytes(self.model[a:e])))

    def trim(self, off, n):
        self.h.trim(n, off)
        self.model[off:off + n] = bytes(n)
        self.expect.append(("trim", off, n, DISCARD, None))

    def zero(self, off, n):
        self.h.zero(n, off)
        self.model[off:off + n] = bytes(n)
        self.expect.append(("zero", off, n, 0, bytes(n)))

    def flush(self):
        self.h.flush()
        self.expect.append(("flush", 0, 0, FLUSH, None))

    def mark(self, name):
        rc, out, err = self.srv.ctl_cmd("mark", name)
        check(rc == 0, "ctl mark %s: exit %d: %s %s" % (name, rc, out, err))
        try:
            ans = json.loads(out)
        except ValueError:
            ans = None
        check(isinstance(ans, dict) and ans.get("ok") is True,
              "ctl mark %s answered %r" % (name, out))
        self.expect.append(("mark", 0, 0, MARK, name))


def pattern(seed, n):
    """n bytes no other write of the run repeats."""
    return bytes((seed * 37 + i * 11 + (i >> 9)) & 0xff for i in range(n))


def compare_entries(log, expect, what):
    """The decoded entries of LOG are exactly EXPECT."""
    got = log.entries
    for i in range(min(len(got), len(expect))):
        e, (kind, off, n, flags, payload) = got[i], expect[i]
        where = "%s: entry %d (%s %d+%d)" % (what, i, kind, off, n)
        check(e.flags == flags, "%s: flags %s, want %s" %
              (where, logwrites.flag_names(e.flags),
               logwrites.flag_names(flags)))
        if kind in ("flush", "mark"):
            check(e.nr_sectors == 0, "%s: nr_sectors %d, want 0" %
                  (where, e.nr_sectors))
            if kind == "mark":
                check(e.mark == payload and e.data_len == len(payload),
                      "%s: mark %r (data_len %d), want %r" %
                      (where, e.mark, e.data_len, payload))
            continue
        check(e.offset == off and e.length == n,
              "%s: sector %d nr_sectors %d (bytes %d+%d)" %
              (where, e.sector, e.nr_sectors, e.offset, e.length))
        if payload is not None:
            check(log.data(e) == payload, "%s: the data differ" % where)
    if len(got) != len(expect):
        check(False, "%s: %d entries, want %d; first extra or missing: %r"
              % (what, len(got), len(expect),
                 got[len(expect)] if len(got) > len(expect) else
                 expect[len(got)][:3]))


def same_file(a, b, what):
    with open(a, "rb") as fa, open(b, "rb") as fb:
        da, db = fa.read(), fb.read()
    if da != db:
        first = next((i for i in range(min(len(da), len(db)))
                      if da[i] != db[i]), min(len(da), len(db)))
        check(False, "%s: %s and %s differ (sizes %d, %d; first at byte "
              "%d)" % (what, a, b, len(da), len(db), first))


def same_bytes(path, data, what):
    with open(path, "rb") as f:
        got = f.read()
    if got != data:
        first = next((i for i in range(min(len(got), len(data)))
                      if got[i] != data[i]), min(len(got), len(data)))
        check(False, "%s: %s differs from the model (sizes %d, %d; first "
              "at byte %d)" % (what, path, len(got), len(data), first))


def run(rumpblk, tmp, args):
    cfg = " ".join(args) or "no cache"
    orig = os.path.join(tmp, "orig.img")
    img = os.path.join(tmp, "served.img")
    log = os.path.join(tmp, "write.log")
    with open(orig, "wb") as f:
        f.write(os.urandom(SIZE))
    shutil.copyfile(orig, img)
    with open(orig, "rb") as f:
        image = f.read()
    if args:
        open(log, "wb").close()     # an empty FILE is accepted too
    srv = Server(rumpblk, tmp, "wlog", img, log, args)
    snaps = {}
    try:
        c = Client(srv, image)
        c.write(0, pattern(1, 4096))
        c.write(4096 + 512, pattern(2, 512))            # one odd sector
        c.write(1 << 20, pattern(3, 65536))
        c.write(2048, pattern(4, 8192))                 # over 1 and 2
        c.write((1 << 20) + 3072, pattern(5, 1536))     # inside 3
        c.write(2 << 20, pattern(6, 256 << 10))
        c.write(12000, pattern(7, 700))                 # unaligned
        c.write(SIZE - 1024, pattern(8, 1024))          # the last sectors
        c.flush()
        snaps["flush1"] = (len(c.expect), bytes(c.model))
        c.trim((1 << 20) + 32768, 65536)                # over 3 and past
        c.zero(16384, 12288)
        c.write(8192, pattern(9, 4096), fua=True)
        c.mark(MARK_NAME)
        snaps["mark"] = (len(c.expect), bytes(c.model))
        c.write(0, pattern(10, 4096))
        c.write((3 << 20) + 512, pattern(11, 32768))
        c.write((1 << 20) + 40960, pattern(12, 2048))   # in the trimmed
        c.flush()
        # Right after the flush: the super must count every entry so far.
        copy = os.path.join(tmp, "flush2.log")
        shutil.copyfile(log, copy)
        at_flush2 = (list(c.expect), bytes(c.model))
        c.write(5 * 4096, pattern(13, 2048))
        c.write(SIZE - 4096, pattern(14, 4096))
        c.write(4096, pattern(15, 1024))
        c.h.shutdown()
    finally:
        rc = srv.stop()
    check(rc == 0, "%s: the server exited %s: %s" % (cfg, rc, srv.errors()))

    # 2. The copy taken at the second flush.
    try:
        lc = logwrites.Log(copy, SIZE)
    except logwrites.LogError as e:
        check(False, "%s: the log copied after a flush: %s" % (cfg, e))
    compare_entries(lc, at_flush2[0], "%s: the log copied after the "
                    "second flush" % cfg)
    out = os.path.join(tmp, "replay.img")
    logwrites.replay(lc, orig, out)
    same_bytes(out, at_flush2[1], "%s: the copy replayed" % cfg)

    # 3. The final log.
    try:
        lf = logwrites.Log(log, SIZE)
    except logwrites.LogError as e:
        check(False, "%s: the final log: %s" % (cfg, e))
    check(lf.sectorsize == SS, "%s: sector size %d" % (cfg, lf.sectorsize))
    # The server flushes the unit when it stops; that FLUSH is not the
    # client's and is not logged (a crash before it is a state to
    # explore): the log is exactly the client's sequence.
    compare_entries(lf, c.expect, "%s: the final log" % cfg)
    same_bytes(img, bytes(c.model), "%s: the served image" % cfg)
    logwrites.replay(lf, orig, out)
    same_file(out, img, "%s: the whole log replayed" % cfg)
    for what, (n, data) in snaps.items():
        count = (lf.through_mark(MARK_NAME) if what == "mark" else
                 lf.through_flush(1))
        check(count == n, "%s: %s ends at entry %d, want %d" %
              (cfg, what, count, n))
        logwrites.replay(lf, orig, out, count)
        same_bytes(out, data, "%s: replayed through %s" % (cfg, what))

    # 4. rumpblk's own replay, when it has one.
    ok = subprocess.run([rumpblk, "log", "--help"], capture_output=True,
                        timeout=30).returncode == 0
    if not ok:
        print("%s: 'rumpblk log' is missing: rumpblk log replay not "
              "compared" % cfg)
    else:
        theirs = os.path.join(tmp, "theirs.img")
        p = subprocess.run([rumpblk, "log", "replay", log, "--base", orig,
                            "--out", theirs], capture_output=True,
                           text=True, timeout=60)
        check(p.returncode == 0, "%s: rumpblk log replay: exit %d: %s" %
              (cfg, p.returncode, p.stderr.strip()))
        # (out holds the last partial replay by now: compare with the
        # served image, which the whole log replayed has matched.)
        same_file(theirs, img, "%s: rumpblk log replay of the whole log" %
                  cfg)
        os.unlink(theirs)
    for p in (orig, img, log, copy, out):
        os.unlink(p)
    print("%s: %d entries checked" % (cfg, len(c.expect)))


def main():
    if len(sys.argv) < 3:
        sys.exit("usage: nbd-write-log.py RUMPBLK TMPDIR [SERVE-ARGS...]")
    run(sys.argv[1], sys.argv[2], sys.argv[3:])


if __name__ == "__main__":
    main()
