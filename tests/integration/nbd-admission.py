#!/usr/bin/python3
# nbd-admission.py: admission checks of "rumpblk serve" (issue 14),
# run by test-nbd-admission.sh as the --run command of a captive server.
#
# usage: nbd-admission.py CASE --port PORT --unix PATH --pid PID
#                         [--timeout S]
#
# Raw sockets (python3 standard library) play the careless and the
# hostile clients: connections that never say a word, one that trickles
# its handshake a byte at a time; libnbd (the python3-libnbd module of
# the system interpreter) plays the real client.  Each case prints what
# it checked and exits 0 when the server behaved, 1 otherwise (with the
# reason).  Every wait has a deadline and every loop a bound; the only
# timing assertions are lower bounds the server's own deadline implies
# (a connection cannot be closed for its deadline before the deadline),
# which no slow machine can break.  The sockets this opens are closed at
# exit, whatever happened.
#
# Cases:
#   flood     1000 idle TCP and 16 idle Unix connections, held: a libnbd
#             client over each transport still connects, writes, reads
#             and flushes, and none of the idle ones is closed
#             (--handshake-timeout 0).  The server's soft RLIMIT_NOFILE
#             must be its hard one (the test starts it at 1024).
#   deadline  the same flood, and a client that trickles an option a
#             byte every 100 ms forever: all are closed after, and not
#             before, --timeout S seconds; a libnbd client is served
#             meanwhile.
#   slow      a client sends its whole handshake a byte every 100 ms
#             (2.8 s) within --timeout S (20): it is served.
#   evict     --max-handshakes 8: the 9th idle connection closes the
#             1st, a libnbd client the 2nd, and the rest stay open.
#             Then --max-connections 2: two libnbd clients in
#             transmission (idle), a third is refused (libnbd's GO, a
#             raw GO gets NBD_REP_ERR_POLICY, a raw EXPORT_NAME a
#             hang-up); once one leaves, it is served; the idle ones
#             are still served at the end.

import argparse
import errno
import os
import resource
import selectors
import socket
import struct
import sys
import threading
import time

import nbd

NBDMAGIC = 0x4E42444D41474943
IHAVEOPT = 0x49484156454F5054
REPLYMAGIC_OPT = 0x3E889045565A9
SIMPLE_REPLY_MAGIC = 0x67446698
REQ_MAGIC = 0x25609513

FLAG_FIXED_NEWSTYLE = 1
FLAG_NO_ZEROES = 2
OPT_EXPORT_NAME = 1
OPT_INFO = 6
OPT_GO = 7
REP_ACK = 1
REP_INFO = 3
REP_ERR_POLICY = 0x80000002
INFO_EXPORT = 0
INFO_BLOCK_SIZE = 3
CMD_READ = 0

NTCP = 1000
NUNIX = 16
WAIT = 60.0  # seconds: a generous bound on anything the server must do


class Bad(Exception):
    """The server did something it must not."""


def check(cond, what):
    if not cond:
        raise Bad(what)


OPEN = []  # every raw socket, closed at exit


def raw_tcp(args):
    s = socket.create_connection(("127.0.0.1", args.port), timeout=WAIT)
    OPEN.append(s)
    return s


def raw_unix(args):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    OPEN.append(s)
    s.settimeout(WAIT)
    s.connect(args.unix)
    return s


def recv_exact(s, n):
    buf = bytearray()
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise Bad("EOF after %d of %d bytes" % (len(buf), n))
        buf += chunk
    return bytes(buf)


def greeting(s):
    magic, opt, flags = struct.unpack(">QQH", recv_exact(s, 18))
    check(magic == NBDMAGIC and opt == IHAVEOPT, "bad greeting")
    return flags


def is_open(s):
    """True if the server has not closed s (nothing to read, no EOF)."""
    s.setblocking(False)
    try:
        data = s.recv(1)
    except BlockingIOError:
        return True
    except (ConnectionResetError, BrokenPipeError):
        return False
    finally:
        s.settimeout(WAIT)
    check(data == b"", "unexpected bytes from the server")
    return False


def wait_eof(s, what):
    """Wait (bounded) until the server closes s; returns the time."""
    s.settimeout(WAIT)
    try:
        data = s.recv(1)
    except ConnectionResetError:
        return time.monotonic()
    except socket.timeout:
        raise Bad("%s: not closed within %.0f s" % (what, WAIT))
    check(data == b"", "%s: unexpected bytes" % what)
    return time.monotonic()


def libnbd_client(args, unix):
    """A real client: connect, write, read back, flush.  Returns the
    handle, still connected."""
    h = nbd.NBD()
    if unix:
        h.connect_unix(args.unix)
    else:
        h.connect_tcp("127.0.0.1", str(args.port))
    off = (3 if unix else 5) << 20
    pattern = os.urandom(65536)
    h.pwrite(pattern, off)
    check(h.pread(len(pattern), off) == pattern,
          "libnbd read back differs")
    h.flush()
    return h


def with_deadline(what, fn, *a):
    """Run fn(*a) in a thread; fail if it has not returned within WAIT
    seconds (a hung server fails the case rather than hangs it)."""
    out = {}

    def run():
        try:
            out["v"] = fn(*a)
        except BaseException as e:  # reported below
            out["e"] = e
    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(WAIT)
    if t.is_alive():
        raise Bad("%s: no answer within %.0f s" % (what, WAIT))
    if "e" in out:
        raise out["e"]
    return out.get("v")


def raise_nofile():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = NTCP + NUNIX + 256
    if hard != resource.RLIM_INFINITY and hard < want:
        print("hard RLIMIT_NOFILE %d < %d" % (hard, want))
        sys.exit(77)
    resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


def server_nofile(pid):
    with open("/proc/%d/limits" % pid) as f:
        for line in f:
            if line.startswith("Max open files"):
                return line.split()[3:5]
    raise Bad("no 'Max open files' in /proc/%d/limits" % pid)


def flood(args):
    """Open the idle connections: unix first, TCP, then more unix (so
    that the server's first log lines name both kinds).  Returns a list
    of (socket, time the connect started, kind)."""
    conns = []
    for i in range(NUNIX // 4):
        t = time.monotonic()
        conns.append((raw_unix(args), t, "unix"))
    for i in range(NTCP):
        t = time.monotonic()
        conns.append((raw_tcp(args), t, "tcp"))
    for i in range(NUNIX - NUNIX // 4):
        t = time.monotonic()
        conns.append((raw_unix(args), t, "unix"))
    return conns


# Cases -------------------------------------------------------------------

def case_flood(args):
    soft, hard = server_nofile(args.pid)
    check(soft == hard, "server's RLIMIT_NOFILE soft %s, hard %s: not "
          "raised" % (soft, hard))
    print("server RLIMIT_NOFILE soft = hard = %s" % soft)
    conns = flood(args)
    # Each was accepted and has a thread: its greeting arrives.
    for s, _, _ in conns:
        greeting(s)
    print("%d idle connections hold their greeting" % len(conns))
    for unix in (False, True):
        h = with_deadline("libnbd client", libnbd_client, args, unix)
        h.shutdown()
        del h
        print("libnbd client over %s: write, read, flush ok while %d "
              "connections idle" % ("unix" if unix else "tcp", len(conns)))
    closed = sum(1 for s, _, _ in conns if not is_open(s))
    check(closed == 0, "%d idle connections were closed" % closed)
    print("all %d idle connections still open" % len(conns))


def trickle_forever(args, result):
    """Flags, then an INFO option of 60000 bytes, a byte every 100 ms:
    never done.  Records how many bytes went and when it was cut."""
    t0 = time.monotonic()
    s = raw_tcp(args)
    sent = 0
    try:
        greeting(s)
        s.sendall(struct.pack(">I", FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES))
        s.sendall(struct.pack(">QII", IHAVEOPT, OPT_INFO, 60000))
        for i in range(int(WAIT * 10)):
            s.sendall(b"\0")
            sent += 1
            time.sleep(0.1)
    except (BrokenPipeError, ConnectionResetError):
        result["cut"] = time.monotonic()
    result["t0"] = t0
    result["sent"] = sent


def case_deadline(args):
    res = {}
    tr = threading.Thread(target=trickle_forever, args=(args, res),
                          daemon=True)
    tr.start()
    conns = flood(args)
    for s, _, _ in conns:
        greeting(s)  # sent before any close, so readable after one
    print("%d idle connections open" % len(conns))
    h = with_deadline("libnbd client", libnbd_client, args, False)
    h.shutdown()
    del h
    print("libnbd client served meanwhile")
    for s, t, kind in conns:
        when = wait_eof(s, "an idle %s connection" % kind)
        check(when - t >= args.timeout,
              "an idle %s connection was closed %.3f s after its connect, "
              "before the deadline of %s s" % (kind, when - t, args.timeout))
    print("all %d idle connections closed after the deadline" % len(conns))
    tr.join(WAIT + 5)
    check("cut" in res, "the trickling client was never cut off "
          "(sent %d bytes)" % res.get("sent", 0))
    check(res["cut"] - res["t0"] >= args.timeout,
          "the trickling client was cut before the deadline")
    check(res["sent"] >= 5, "the trickling client sent only %d bytes" %
          res["sent"])
    print("a client trickling a byte every 100 ms was cut after %d bytes: "
          "the deadline is for the whole handshake" % res["sent"])


def case_slow(args):
    # Something known to read back, written by a real client.
    h = with_deadline("libnbd client", libnbd_client, args, True)
    want = h.pread(4096, 3 << 20)
    h.shutdown()
    del h
    s = raw_unix(args)
    hflags = greeting(s)
    msg = struct.pack(">I", FLAG_FIXED_NEWSTYLE |
                      (hflags & FLAG_NO_ZEROES))
    data = struct.pack(">I", 0) + struct.pack(">HH", 1, INFO_BLOCK_SIZE)
    msg += struct.pack(">QII", IHAVEOPT, OPT_GO, len(data)) + data
    t0 = time.monotonic()
    for b in msg:
        s.sendall(bytes([b]))
        time.sleep(0.1)
    print("handshake of %d bytes sent in %.1f s" %
          (len(msg), time.monotonic() - t0))
    for _ in range(16):
        magic, opt, rtype, rlen = struct.unpack(">QIII", recv_exact(s, 20))
        check(magic == REPLYMAGIC_OPT and opt == OPT_GO,
              "bad GO reply header")
        recv_exact(s, rlen)
        if rtype == REP_ACK:
            break
        check(rtype == REP_INFO, "GO answered %#x" % rtype)
    else:
        raise Bad("no ACK to GO")
    s.sendall(struct.pack(">IHHQQI", REQ_MAGIC, 0, CMD_READ, 7, 3 << 20,
                          4096))
    magic, err, handle = struct.unpack(">IIQ", recv_exact(s, 16))
    check(magic == SIMPLE_REPLY_MAGIC and err == 0 and handle == 7,
          "READ after the slow handshake failed (%#x, %d)" % (magic, err))
    check(recv_exact(s, 4096) == want, "READ after the slow handshake: "
          "wrong data")
    print("slow but timely client served")


def raw_go(s):
    """A GO for the default export: the reply type of its last reply."""
    greeting(s)
    s.sendall(struct.pack(">I", FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES))
    data = struct.pack(">I", 0) + struct.pack(">H", 0)
    s.sendall(struct.pack(">QII", IHAVEOPT, OPT_GO, len(data)) + data)
    for _ in range(16):
        magic, opt, rtype, rlen = struct.unpack(">QIII", recv_exact(s, 20))
        check(magic == REPLYMAGIC_OPT, "bad option reply magic")
        body = recv_exact(s, rlen)
        if rtype != REP_INFO:
            return rtype, body
    raise Bad("GO: no final reply")


def case_evict(args):
    # --max-handshakes 8: connections accepted in this order.
    idle = []
    for i in range(9):
        s = raw_unix(args) if i % 2 else raw_tcp(args)
        greeting(s)  # accepted, in order
        idle.append(s)
    wait_eof(idle[0], "the oldest of 9 handshakes")
    check(all(is_open(s) for s in idle[1:]),
          "a handshake other than the oldest was closed")
    print("9th handshake closed the 1st; 2nd-9th open")
    held = [with_deadline("libnbd client", libnbd_client, args, False)]
    wait_eof(idle[1], "the oldest handshake, for a libnbd client")
    check(all(is_open(s) for s in idle[2:]),
          "a handshake other than the oldest was closed")
    print("libnbd client served (closing the oldest handshake); "
          "3rd-9th open")

    # --max-connections 2.
    held.append(with_deadline("libnbd client", libnbd_client, args, True))
    try:
        h = with_deadline("libnbd client", libnbd_client, args, False)
    except nbd.Error as e:
        print("3rd client in transmission refused: %s" % e)
    else:
        raise Bad("a 3rd client in transmission was served past "
                  "--max-connections 2")
    rtype, body = raw_go(raw_tcp(args))
    check(rtype == REP_ERR_POLICY, "raw GO past --max-connections: reply "
          "%#x, expected NBD_REP_ERR_POLICY" % rtype)
    check(b"--max-connections" in body, "the refusal does not say why: %r"
          % body)
    print("raw GO refused: NBD_REP_ERR_POLICY %r" % body.decode())
    s = raw_unix(args)
    greeting(s)
    s.sendall(struct.pack(">I", FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES))
    s.sendall(struct.pack(">QII", IHAVEOPT, OPT_EXPORT_NAME, 0))
    wait_eof(s, "EXPORT_NAME past --max-connections")
    print("raw EXPORT_NAME past the bound: hung up on")

    # One leaves; the server counts it out once its connection ends.
    h = held.pop(0)
    h.shutdown()
    del h
    for i in range(int(WAIT * 10)):
        try:
            held.append(with_deadline("libnbd client", libnbd_client,
                                      args, False))
            break
        except nbd.Error:
            time.sleep(0.1)
    else:
        raise Bad("no client served after one of 2 left")
    print("a client left; the next one is served")
    for h in held:
        h.pread(512, 0)
    print("idle clients in transmission kept and served")
    for h in held:
        h.shutdown()


CASES = {
    "flood": case_flood,
    "deadline": case_deadline,
    "slow": case_slow,
    "evict": case_evict,
}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("case", choices=sorted(CASES))
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--unix", required=True)
    ap.add_argument("--pid", type=int, required=True)
    ap.add_argument("--timeout", type=float, default=0)
    args = ap.parse_args()
    raise_nofile()
    try:
        CASES[args.case](args)
    except (Bad, OSError, nbd.Error) as e:
        print("FAIL %s: %s: %s" % (args.case, type(e).__name__, e))
        return 1
    finally:
        for s in OPEN:
            s.close()
    print("ok %s" % args.case)
    return 0


if __name__ == "__main__":
    sys.exit(main())
