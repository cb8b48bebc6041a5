#!/usr/bin/python3
# nbd-powercut.py: power cuts over NBD with libnbd (issue 11), driving
# "rumpblk serve --write-cache" servers of its own.
#
# usage: nbd-powercut.py RUMPBLK TMPDIR
#
# 1. For the models lose, keep and subset: write A, flush, write B,
#    write C over A, leave reads in flight (held by a delay rule), cut
#    with "rumpblk ctl power-cut"; the reads get no reply (the connection
#    is dropped), and a new client sees what the model says.
# 2. A cut on cue (a power-cut rule, model subset, seed 7) under one
#    client writing in order: twice, the same image hash; served again
#    with --fault-replay of the first run's log: the same hash again.
# 3. The flush audit: per connection in "ctl stats" (bytes written, made
#    durable, flushes, FUA, unflushed now and at most), and one log line
#    for a client that leaves with writes it never flushed.
# Every server is started with --pidfile and ended by its PID; every wait
# is bounded.  It runs under the system python3, which has libnbd.

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import nbd

SIZE = 4 << 20
DROP_SECS = 10


def check(cond, what):
    if not cond:
        sys.exit("FAIL: " + what)


class Server:
    def __init__(self, rumpblk, tmp, name, img, *args):
        self.sock = os.path.join(tmp, name + ".sock")
        self.ctl = os.path.join(tmp, name + ".ctl")
        self.log = os.path.join(tmp, name + ".faults")
        self.errpath = os.path.join(tmp, name + ".err")
        self.err = open(self.errpath, "w")
        pidfile = os.path.join(tmp, name + ".pid")
        self.rumpblk = rumpblk
        self.p = subprocess.Popen(
            [rumpblk, "serve", "--socket", self.sock, "--control", self.ctl,
             "--pidfile", pidfile, "--fault-log", self.log,
             "--write-cache", "1M", "--backend",
             os.environ.get("RUMPBLK_TEST_BACKEND", "pio")] + list(args) +
            [img],
            stderr=self.err)
        for _ in range(200):
            if os.path.exists(pidfile) or self.p.poll() is not None:
                break
            time.sleep(0.05)
        check(os.path.exists(pidfile), "server %s did not start: %s" %
              (name, self.errors()))

    def errors(self):
        with open(self.errpath) as f:
            return f.read()

    def client(self):
        h = nbd.NBD()
        h.connect_unix(self.sock)
        return h

    def ctl_cmd(self, *cmd):
        p = subprocess.run([self.rumpblk, "ctl", self.ctl] + list(cmd),
                           capture_output=True, text=True, timeout=60)
        return p.returncode, p.stdout, p.stderr

    def stop(self):
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
            try:
                self.p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
        self.err.close()
        return self.p.returncode


def expect_dead(h, cookies, what):
    """Within DROP_SECS h is dead and no cookie got a reply."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < DROP_SECS:
        if h.aio_is_dead() or h.aio_is_closed():
            break
        try:
            h.poll(100)
        except nbd.Error:
            break
    check(h.aio_is_dead() or h.aio_is_closed(),
          "%s: the connection was not dropped" % what)
    for c in cookies:
        try:
            done = h.aio_command_completed(c)
        except nbd.Error:
            done = False            # completed with an error: no data
        check(not done, "%s: an in-flight read got a reply" % what)


def models(rumpblk, tmp):
    a, b, c = b"A" * 4096, b"B" * 4096, b"C" * 4096
    zero = bytes(4096)
    for model in ("lose", "keep", "subset"):
        img = os.path.join(tmp, model + ".img")
        with open(img, "wb") as f:
            f.truncate(SIZE)
        # Reads of the last MiB are held 3 s: in flight at the cut.
        s = Server(rumpblk, tmp, model, img,
                   "--fault", "delay,op=read,range=3M-4M,ms=3000")
        try:
            h = s.client()
            h.pwrite(a, 0)
            h.flush()
            h.pwrite(b, 4096)
            h.pwrite(c, 0)
            check(h.pread(4096, 0) == c, "%s: a read misses the cache" %
                  model)
            bufs = [nbd.Buffer(4096) for _ in range(4)]
            cookies = [h.aio_pread(bufs[i], (3 << 20) + i * 4096)
                       for i in range(4)]
            rc, out, err = s.ctl_cmd("power-cut", "model=" + model,
                                     "seed=3")
            check(rc == 0, "%s: ctl power-cut: %s %s" % (model, out, err))
            pc = json.loads(out)["power_cut"]
            check(pc["model"] == model and pc["unflushed"] == 2,
                  "%s: power cut answered %s" % (model, out))
            expect_dead(h, cookies, model)
            h2 = s.client()
            at0, at4k = h2.pread(4096, 0), h2.pread(4096, 4096)
            h2.shutdown()
            if model == "lose":
                check(at0 == a and at4k == zero, "lose: post-crash data")
                check(pc["lost"] == 2 and pc["bytes_lost"] == 8192,
                      "lose: counts %s" % out)
            elif model == "keep":
                check(at0 == c and at4k == b, "keep: post-crash data")
                check(pc["persisted"] == 2, "keep: counts %s" % out)
            else:
                check(at0 in (a, c) and at4k in (zero, b),
                      "subset: post-crash data is no subset")
                check(pc["persisted"] == (at0 == c) + (at4k == b),
                      "subset: %s, but A->%s B->%s" %
                      (out, at0[:1], at4k[:1]))
            rc, out, err = s.ctl_cmd("stats")
            st = json.loads(out)["stats"]["write_cache"]
            check(st["power_cuts"] == 1 and st["dirty_bytes"] == 0,
                  "%s: stats after the cut: %s" % (model, st))
            with open(s.log) as f:
                lines = [json.loads(x) for x in f if '"power-cut"' in x]
            check(len(lines) == 1 and lines[0]["model"] == model and
                  lines[0]["unflushed"] == 2,
                  "%s: fault log: %s" % (model, lines))
        finally:
            rc = s.stop()
        check(rc == 0, "%s: server exited %s: %s" % (model, rc,
                                                     s.errors()))


def cue_run(rumpblk, tmp, name, base, *args):
    """One client writes in order until the cut; the image's sha256."""
    img = os.path.join(tmp, name + ".img")
    shutil.copyfile(base, img)
    s = Server(rumpblk, tmp, name, img, *args)
    fired = None
    try:
        h = s.client()
        for i in range(200):
            data = bytes([i % 251 + 1]) * (4096 * (1 + i % 3))
            try:
                h.pwrite(data, (i * 7919 % 900) * 4096)
                if i % 10 == 9:
                    h.flush()
            except nbd.Error:
                fired = i
                break
        check(fired == 56, "%s: the cut came at write %s, not 56 "
              "(the 57th): %s" % (name, fired, s.errors()))
    finally:
        rc = s.stop()
    check(rc == 0, "%s: server exited %s: %s" % (name, rc, s.errors()))
    with open(img, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest(), s.log


def on_cue(rumpblk, tmp):
    base = os.path.join(tmp, "base.img")
    with open(base, "wb") as f:
        f.write(os.urandom(SIZE))
    rule = "power-cut,op=write,nth=57,model=subset,seed=7"
    h1, log1 = cue_run(rumpblk, tmp, "cue1", base, "--fault", rule)
    h2, _ = cue_run(rumpblk, tmp, "cue2", base, "--fault", rule)
    check(h1 == h2, "the same seed twice: images differ")
    with open(log1) as f:
        cut = [json.loads(x) for x in f]
    check(len(cut) == 1 and cut[0]["class"] == "power-cut" and
          cut[0]["unflushed"] == 7,
          "the rule's cut: %s" % cut)
    h3, _ = cue_run(rumpblk, tmp, "cue3", base, "--fault-replay", log1)
    check(h3 == h1, "the replay of the fault log: a different image")
    with open(base, "rb") as f:
        check(hashlib.sha256(f.read()).hexdigest() != h1,
              "the image did not change")


def audit(rumpblk, tmp):
    img = os.path.join(tmp, "audit.img")
    with open(img, "wb") as f:
        f.truncate(SIZE)
    s = Server(rumpblk, tmp, "audit", img)
    try:
        h = s.client()
        h.pwrite(b"a" * 8192, 0)
        h.pwrite(b"b" * 4096, 8192, nbd.CMD_FLAG_FUA)
        h.flush()
        h.pwrite(b"c" * 4096, 16384)
        h.zero(4096, 65536)
        rc, out, err = s.ctl_cmd("stats")
        st = json.loads(out)["stats"]
        conns = st["nbd"]["connections"]
        check(len(conns) == 1, "audit: connections %s" % conns)
        a = conns[0]
        check(a["bytes_written"] == 8192 + 4096 + 4096 + 4096 and
              a["bytes_durable"] == 8192 + 4096 and a["flushes"] == 1 and
              a["fua"] == 1 and a["unflushed"] == 8192 and
              a["unflushed_max"] == 8192 and
              sum(a["flush_age_hist"]) == 1,
              "audit: the connection's counters %s" % a)
        wc = st["write_cache"]
        check(wc["bytes_written"] == a["bytes_written"] and
              wc["dirty_bytes"] == 8192 and wc["flushes"] == 1 and
              wc["fua"] == 1, "audit: the unit's counters %s" % wc)
        h.shutdown()
        line = "client 1 (unix) left with 8192 bytes of acknowledged " \
            "writes it never flushed"
        for _ in range(100):
            if line in s.errors():
                break
            time.sleep(0.1)
        check(line in s.errors(), "audit: no log line for the client "
              "that left unflushed: %s" % s.errors())
        rc, out, err = s.ctl_cmd("stats")
        ended = json.loads(out)["stats"]["nbd"]["ended"]
        check(ended["connections"] == 1 and ended["left_unflushed"] == 1,
              "audit: ended %s" % ended)
    finally:
        rc = s.stop()
    check(rc == 0, "audit: server exited %s: %s" % (rc, s.errors()))


def stragglers(rumpblk, tmp):
    """Writes in flight, and still being parsed, at a cut with model lose:
    none of them may land on the post-crash medium (the server fences
    its readers at the reset)."""
    img = os.path.join(tmp, "straggle.img")
    with open(img, "wb") as f:
        f.truncate(SIZE)
    s = Server(rumpblk, tmp, "straggle", img)
    try:
        for rnd in range(5):
            h = s.client()
            data = bytes([0x40 + rnd]) * 16384
            for i in range(32):
                h.aio_pwrite(nbd.Buffer.from_bytearray(bytearray(data)),
                             (i % 32) * 16384)
            rc, out, err = s.ctl_cmd("power-cut", "model=lose")
            check(rc == 0, "stragglers: ctl power-cut: %s %s" % (out, err))
            expect_dead(h, [], "stragglers")
            h2 = s.client()
            got = h2.pread(32 * 16384, 0)
            h2.shutdown()
            check(got == bytes(32 * 16384),
                  "stragglers: round %d: a write of the dropped "
                  "connection landed after the cut" % rnd)
    finally:
        rc = s.stop()
    check(rc == 0, "stragglers: server exited %s: %s" % (rc, s.errors()))


def main():
    rumpblk, tmp = sys.argv[1], sys.argv[2]
    audit(rumpblk, tmp)
    stragglers(rumpblk, tmp)
    models(rumpblk, tmp)
    on_cue(rumpblk, tmp)
    print("ok")


main()
