#!/usr/bin/python3
"""The clients and the report of bench/soak.sh.

  soak-client.py run URI FIRST COUNT REGION SECONDS MARKER SEED
      COUNT NBD clients (libnbd handles, one thread each, up to DEPTH
      asynchronous commands in flight), numbered from FIRST; client k
      owns bytes [k * REGION, (k + 1) * REGION) of the export.  For
      SECONDS each issues a random mix of reads, writes, flushes, trims
      and write-zeroes of 1 to 4 blocks of its region (never two at a
      time on a block), keeps a shadow of what each block must hold, and
      checks every read against it.  Then it waits for its commands to
      complete, for the file MARKER (the fault rules are cleared), and
      reads its whole region back once more.  Prints one JSON object.
  soak-client.py port PID
      the TCP port process PID listens on (/proc/net/tcp{,6})
  soak-client.py report JSON
      sum the clients' objects and the server's figures (JSON, from
      soak.sh), print the summary, exit 1 if a check failed

The shadow: a block holds a set of acceptable contents -- zeroes (0)
or the data of write version v (a 16-byte header of client, block and
version, repeated) -- or is unknown (None).  A write that succeeds makes
it {v}, a write-zeroes {0}, a trim {0} | what it held (a trim may leave
the data); a write, trim or write-zeroes that fails makes it unknown (a
fault rule failed it; DESIGN.md says the medium is unchanged, the shadow
does not rely on it).  Only EIO is an expected error: the server's fault
rules (error class) are its only source.  Any other error, a dropped
connection, a reply that never comes, or a read that differs from the
shadow is a failure.
"""
import errno
import json
import os
import random
import struct
import sys
import threading
import time

BS = 4096          # bytes per block
DEPTH = 4          # commands in flight per client
MAXBLOCKS = 4      # blocks per command
DRAIN = 30         # seconds allowed for replies after the end
MIX = (("read", 45), ("write", 33), ("flush", 5), ("trim", 8),
       ("zero", 9))
OPS = [op for op, _ in MIX]


def content(k, blk, v):
    if v == 0:
        return bytes(BS)
    return struct.pack("<IIQ", k, blk, v) * (BS // 16)


class Client:
    def __init__(self, uri, k, region, deadline, marker, seed):
        self.uri = uri
        self.k = k
        self.base = k * region
        self.nblocks = region // BS
        self.deadline = deadline
        self.marker = marker
        self.rng = random.Random(seed * 1000003 + k)
        self.shadow = [frozenset([0])] * self.nblocks   # a new image
        self.busy = set()
        self.version = 0
        # cookie -> (op, first block, n, data, the nbd.Buffer)
        self.inflight = {}
        st = {op: {"issued": 0, "ok": 0, "eio": 0, "other": 0}
              for op in OPS}
        self.st = st
        self.verified = 0       # blocks read and checked
        self.unknown = 0        # blocks read whose content was unknown
        self.final_verified = 0
        self.final_errors = 0
        self.unmatched = 0
        self.reconnects = 0
        self.failures = []
        self.h = None

    def fail(self, msg):
        if len(self.failures) < 10:
            self.failures.append("client %d: %s" % (self.k, msg))
        else:
            self.failures.append(None)  # counted, not kept

    def connect(self):
        import nbd
        self.h = nbd.NBD()
        self.h.connect_uri(self.uri)

    def pick(self):
        """A random run of free blocks: (first, n), or None."""
        for _ in range(8):
            n = self.rng.randint(1, MAXBLOCKS)
            b = self.rng.randrange(0, self.nblocks - n + 1)
            if not any(x in self.busy for x in range(b, b + n)):
                return b, n
        return None

    def issue(self, op=None):
        import nbd
        r = self.rng.randrange(100)
        for o, w in MIX:
            if op is not None or r < w:
                break
            r -= w
        op = op or o
        h, off, nb = self.h, 0, None
        if op == "flush":
            b = n = 0
            buf = None
            cookie = h.aio_flush()
        else:
            p = self.pick()
            if p is None:
                return False
            b, n = p
            off = self.base + b * BS
            buf = None
            if op == "read":
                buf = bytearray(n * BS)
                nb = nbd.Buffer.from_buffer(buf)
                cookie = h.aio_pread(nb, off)
            elif op == "write":
                vs = []
                for i in range(n):
                    self.version += 1
                    vs.append(self.version)
                data = b"".join(content(self.k, b + i, v)
                                for i, v in enumerate(vs))
                buf = vs
                nb = nbd.Buffer.from_bytearray(data)
                cookie = h.aio_pwrite(nb, off)
            elif op == "trim":
                cookie = h.aio_trim(n * BS, off)
            else:
                cookie = h.aio_zero(n * BS, off)
            self.busy.update(range(b, b + n))
        self.st[op]["issued"] += 1
        # The buffer lives until the reply (libnbd's rule for aio).
        self.inflight[cookie] = (op, b, n, buf, nb)
        return True

    def complete(self, cookie, err):
        op, b, n, buf, _ = self.inflight.pop(cookie)
        self.busy.difference_update(range(b, b + n))
        s = self.st[op]
        if err is None:
            s["ok"] += 1
        elif err == errno.EIO:
            s["eio"] += 1
        else:
            s["other"] += 1
            self.fail("%s of blocks %d+%d: %s" % (op, b, n,
                      os.strerror(err) if err else "error, no errno"))
        blocks = range(b, b + n)
        if op == "read":
            if err is None:
                for i, blk in enumerate(blocks):
                    self.check(blk, buf[i * BS:(i + 1) * BS], "read")
        elif op == "write":
            for i, blk in enumerate(blocks):
                self.shadow[blk] = frozenset([buf[i]]) if err is None \
                    else None
        elif op == "zero":
            for blk in blocks:
                self.shadow[blk] = frozenset([0]) if err is None else None
        elif op == "trim":
            for blk in blocks:
                old = self.shadow[blk]
                self.shadow[blk] = old | {0} if err is None and \
                    old is not None else None

    def check(self, blk, got, what):
        want = self.shadow[blk]
        if want is None:
            self.unknown += 1
            return
        for v in want:
            if got == content(self.k, blk, v):
                self.verified += 1
                return
        hdr = struct.unpack("<IIQ", bytes(got[:16]))
        if not any(got):
            held = "zeroes"
        elif got == content(*hdr):
            held = "client %d's block %d version %d" % hdr
        else:
            held = "other bytes (the first 16 say client %d block %d " \
                "version %d)" % hdr
        self.fail("%s of block %d (byte %d): holds %s, want %s" %
                  (what, blk, self.base + blk * BS, held,
                   " or ".join("zeroes" if v == 0 else "version %d" % v
                               for v in sorted(want))))

    def reap(self):
        import nbd
        for cookie in list(self.inflight):
            try:
                if not self.h.aio_command_completed(cookie):
                    continue
                err = None
            except nbd.Error as e:
                err = e.errnum  # .errno is its name
            self.complete(cookie, err)

    def drain(self, until):
        import nbd
        while self.inflight and time.monotonic() < until:
            try:
                self.h.poll(1000)
            except nbd.Error as e:
                self.fail("poll: %s" % e)
                break
            self.reap()
        if self.inflight:
            self.unmatched += len(self.inflight)
            self.fail("%d commands got no reply" % len(self.inflight))
            for cookie in list(self.inflight):
                self.inflight.pop(cookie)
            self.busy.clear()
            return False
        return True

    def run(self):
        import nbd
        try:
            self.connect()
            # Reconnect now and then, so that connections come and go.
            churn = time.monotonic() + self.rng.uniform(10, 30)
            while time.monotonic() < self.deadline:
                while len(self.inflight) < DEPTH and self.issue():
                    pass
                self.h.poll(1000)
                self.reap()
                if time.monotonic() > churn:
                    # Flushed first: a client that leaves unflushed
                    # writes behind makes the server say so.
                    self.issue("flush")
                    if not self.drain(time.monotonic() + DRAIN):
                        return
                    self.h.shutdown()
                    self.h = None
                    self.connect()
                    self.reconnects += 1
                    churn = time.monotonic() + self.rng.uniform(10, 30)
            if not self.drain(time.monotonic() + DRAIN):
                return
            if self.h.aio_in_flight() != 0:
                self.fail("%d commands in flight after the drain" %
                          self.h.aio_in_flight())
            self.final()
            self.h.shutdown()
            self.h = None
        except nbd.Error as e:
            self.fail("%s (errno %s)" % (e, e.errno))
        except Exception as e:  # a bug here is a failure too
            self.fail("%s: %s" % (type(e).__name__, e))

    def final(self):
        """Every block read back once the fault rules are cleared."""
        until = time.monotonic() + DRAIN
        while not os.path.exists(self.marker):
            if time.monotonic() > until:
                self.fail("no %s after %d s" % (self.marker, DRAIN))
                return
            time.sleep(0.1)
        self.h.flush()
        step = 16
        for b in range(0, self.nblocks, step):
            n = min(step, self.nblocks - b)
            try:
                data = self.h.pread(n * BS, self.base + b * BS)
            except Exception as e:
                self.final_errors += 1
                self.fail("final read of blocks %d+%d: %s" % (b, n, e))
                continue
            before = self.verified
            for i in range(n):
                self.check(b + i, data[i * BS:(i + 1) * BS], "final read")
            self.final_verified += self.verified - before

    def result(self):
        return {"ops": self.st, "verified": self.verified,
                "unknown": self.unknown,
                "final_verified": self.final_verified,
                "final_errors": self.final_errors,
                "unmatched": self.unmatched,
                "reconnects": self.reconnects,
                "nfailures": len(self.failures),
                "failures": [f for f in self.failures if f is not None]}


def run(uri, first, count, region, seconds, marker, seed):
    deadline = time.monotonic() + seconds
    cs = [Client(uri, k, region, deadline, marker, seed)
          for k in range(first, first + count)]
    ts = [threading.Thread(target=c.run) for c in cs]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    json.dump({"clients": [c.result() for c in cs]}, sys.stdout)
    print()


def port(pid):
    """The TCP port PID listens on: its sockets' inodes in /proc/net."""
    inodes = set()
    for fd in os.listdir("/proc/%d/fd" % pid):
        try:
            t = os.readlink("/proc/%d/fd/%s" % (pid, fd))
        except OSError:
            continue
        if t.startswith("socket:["):
            inodes.add(t[8:-1])
    for f in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = open(f).read().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            w = line.split()
            if w[3] == "0A" and w[9] in inodes:     # LISTEN
                print(int(w[1].rsplit(":", 1)[1], 16))
                return 0
    return 1


def report(path):
    j = json.load(open(path))
    clients = []
    for f in j["client_outputs"]:
        try:
            clients += json.load(open(f))["clients"]
        except (OSError, ValueError, KeyError) as e:
            clients.append(None)
            print("soak: %s: no client report (%s)" % (f, e))
    ok = True
    checks = []

    def check(cond, what):
        nonlocal ok
        checks.append(("ok  " if cond else "FAIL") + "  " + what)
        ok = ok and cond

    got = [c for c in clients if c is not None]
    tot = {op: {"issued": 0, "ok": 0, "eio": 0, "other": 0} for op in OPS}
    for c in got:
        for op in OPS:
            for key in tot[op]:
                tot[op][key] += c["ops"][op][key]
    s = lambda key: sum(c[key] for c in got)
    issued = sum(t["issued"] for t in tot.values())
    done = sum(t["ok"] + t["eio"] + t["other"] for t in tot.values())
    eio = sum(t["eio"] for t in tot.values())
    other = sum(t["other"] for t in tot.values())
    secs = j["duration"]

    print("soak: %d clients (%s), %d s, server pid %d" %
          (len(clients), j["transports"], secs, j["pid"]))
    print("%-8s %10s %10s %8s %7s" % ("request", "issued", "ok", "EIO",
                                      "other"))
    for op in OPS:
        t = tot[op]
        print("%-8s %10d %10d %8d %7d" % (op, t["issued"], t["ok"],
                                          t["eio"], t["other"]))
    print("%-8s %10d %10d %8d %7d   (%.0f requests/s)" %
          ("total", issued, done - eio - other, eio, other,
           issued / secs if secs else 0))
    print("verified: %d block reads matched the shadow, %d unknown "
          "(after a failed write), %d in the final read-back" %
          (s("verified"), s("unknown"), s("final_verified")))
    print("reconnects: %d; control commands: %d (%d refused); fault "
          "firings (error class): %d" %
          (s("reconnects"), j["ctl_sent"], j["ctl_failed"],
           j["error_firings"]))
    print("server RSS: max %.1f MiB (anon max %.1f MiB), %d samples; "
          "bound %d MiB" % (j["rss_max_kb"] / 1024, j["anon_max_kb"] / 1024,
                            j["rss_samples"], j["rss_bound_mb"]))
    print("server anon RSS: %.1f MiB after 10 s, %.1f MiB at the end "
          "(for information)" % (j["anon_10s_kb"] / 1024,
                                 j["anon_last_kb"] / 1024))
    print("server fds: %d before the clients, %d after they left" %
          (j["fds_before"], j["fds_after"]))
    print("server exit status: %s" % j["server_status"])

    check(all(c is not None for c in clients) and
          len(clients) == j["nclients"],
          "every client process reported (%d of %d clients)" %
          (len(got), j["nclients"]))
    check(issued == done and s("unmatched") == 0,
          "every request got its reply (%d issued, %d completed, %d "
          "without a reply)" % (issued, done, s("unmatched")))
    check(other == 0, "errors only EIO from fault rules (%d EIO, %d "
          "other)" % (eio, other))
    check(j["error_firings"] < 0 or eio == j["error_firings"],
          "each EIO is an error-rule firing (%d EIO, %d firings)" %
          (eio, j["error_firings"]))
    check(tot["read"]["ok"] > 0 and tot["write"]["ok"] > 0 and
          s("verified") > 0 and eio > 0,
          "the mix ran: reads and writes succeeded and were verified, "
          "faults fired")
    nf = s("nfailures")
    check(nf == 0 and s("final_errors") == 0,
          "data verified, no client failure (%d failures)" % nf)
    for c in got:
        for f in c["failures"]:
            print("  " + f)
    check(j["rss_samples"] > 0 and j["rss_max_kb"] < j["rss_bound_mb"] * 1024,
          "server RSS bounded (max %.1f MiB < %d MiB)" %
          (j["rss_max_kb"] / 1024, j["rss_bound_mb"]))
    check(j["fds_before"] > 0 and j["fds_after"] == j["fds_before"],
          "no descriptor growth (%d before, %d after)" %
          (j["fds_before"], j["fds_after"]))
    check(j["ctl_sent"] > 0 and j["ctl_failed"] == 0,
          "the control client's commands all answered ok")
    check(j["server_status"] == 0, "the server stopped cleanly (exit 0)")
    for line in checks:
        print(line)
    print("soak: %s" % ("PASS" if ok else "FAIL"))
    return 0 if ok else 1


def main(argv):
    if len(argv) == 9 and argv[1] == "run":
        run(argv[2], int(argv[3]), int(argv[4]), int(argv[5]),
            float(argv[6]), argv[7], int(argv[8]))
        return 0
    if len(argv) == 3 and argv[1] == "port":
        return port(int(argv[2]))
    if len(argv) == 3 and argv[1] == "report":
        return report(argv[2])
    sys.stderr.write(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
