#!/usr/bin/env python3
# nbd-raw.py: a raw-socket NBD client for hostile-client tests.
#
# It speaks the wire protocol of the NBD project's proto.md byte by byte
# (python3 standard library only, no libnbd), so that it can send what no
# well-behaved client sends: bad magic, lengths past the export or over
# the maximum payload, unknown commands and flags, thousands of options,
# huge option lengths, half requests, and replies it never reads.
#
# usage: nbd-raw.py --unix PATH CASE [--size BYTES] [--ready F --done F]
#
# Each CASE checks what the server answered and exits 0 when the server
# behaved (the protocol's error, or a clean disconnect of this connection
# where the protocol allows one), 1 otherwise, printing why.  Whether the
# server survived, other clients still work, the image is unchanged and
# memory stayed bounded is checked afterwards by test-nbd-hostile.sh.
# Every wait has a timeout and every loop a bound.
#
# Cases that hold connections open (slow-reader, stalled-handshake) write
# the file given by --ready once they are in place and then wait until the
# file given by --done exists (at most 60 s) before they close.

import argparse
import os
import socket
import struct
import sys
import time

NBDMAGIC = 0x4E42444D41474943
IHAVEOPT = 0x49484156454F5054
REPLYMAGIC_OPT = 0x3E889045565A9
REQ_MAGIC = 0x25609513
SIMPLE_REPLY_MAGIC = 0x67446698
STRUCT_REPLY_MAGIC = 0x668E33EF

FLAG_FIXED_NEWSTYLE = 1
FLAG_NO_ZEROES = 2

OPT_EXPORT_NAME = 1
OPT_ABORT = 2
OPT_LIST = 3
OPT_INFO = 6
OPT_GO = 7
OPT_STRUCTURED_REPLY = 8

REP_ACK = 1
REP_SERVER = 2
REP_INFO = 3
REP_ERR_UNSUP = 0x80000001

INFO_EXPORT = 0
INFO_BLOCK_SIZE = 3

CMD_READ = 0
CMD_WRITE = 1
CMD_DISC = 2
CMD_FLUSH = 3
CMD_TRIM = 4
CMD_WRITE_ZEROES = 6

CMD_FLAG_FUA = 1

TF_READ_ONLY = 2

EPERM = 1
EIO = 5
ENOMEM = 12
EINVAL = 22
ENOSPC = 28
EOVERFLOW = 75
ENOTSUP = 95

MAX_PAYLOAD = 32 << 20
TIMEOUT = 10.0


class Disconnected(Exception):
    """The server closed the connection (EOF or reset)."""


class Bad(Exception):
    """The server did something the protocol forbids."""


class Conn:
    def __init__(self, path, timeout=TIMEOUT):
        self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.s.settimeout(timeout)
        self.s.connect(path)
        self.size = None
        self.tflags = None

    def close(self):
        try:
            self.s.close()
        except OSError:
            pass

    def send(self, data):
        try:
            self.s.sendall(data)
        except (BrokenPipeError, ConnectionResetError) as e:
            raise Disconnected(str(e))

    def recv(self, n):
        buf = bytearray()
        while len(buf) < n:
            try:
                chunk = self.s.recv(min(n - len(buf), 1 << 20))
            except ConnectionResetError as e:
                raise Disconnected(str(e))
            except socket.timeout:
                raise Bad("no answer within %.0f s (server hung?)" %
                          self.s.gettimeout())
            if not chunk:
                raise Disconnected("EOF after %d of %d bytes" %
                                   (len(buf), n))
            buf += chunk
        return bytes(buf)

    def expect_eof(self, what):
        """The server must close this connection (it may first send
        option replies, which are read and skipped, bounded)."""
        deadline = time.monotonic() + TIMEOUT
        got = 0
        while time.monotonic() < deadline and got < (64 << 20):
            try:
                chunk = self.s.recv(65536)
            except ConnectionResetError:
                return
            except socket.timeout:
                break
            if not chunk:
                return
            got += len(chunk)
        raise Bad("%s: connection not closed within %.0f s" %
                  (what, TIMEOUT))

    # Handshake --------------------------------------------------------

    def greeting(self, cflags=FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES):
        magic, ihaveopt, hflags = struct.unpack(">QQH", self.recv(18))
        if magic != NBDMAGIC or ihaveopt != IHAVEOPT:
            raise Bad("bad greeting magic %x %x" % (magic, ihaveopt))
        if not hflags & FLAG_FIXED_NEWSTYLE:
            raise Bad("server is not fixed newstyle (flags %x)" % hflags)
        self.hflags = hflags
        if cflags is not None:
            self.send(struct.pack(">I", cflags & (hflags | ~3)))

    def opt(self, option, data=b""):
        self.send(struct.pack(">QII", IHAVEOPT, option, len(data)) + data)

    def opt_reply(self, option=None):
        magic, opt, rtype, rlen = struct.unpack(">QIII", self.recv(20))
        if magic != REPLYMAGIC_OPT:
            raise Bad("bad option reply magic %x" % magic)
        if option is not None and opt != option:
            raise Bad("option reply for %d, expected %d" % (opt, option))
        if rlen > (16 << 20):
            raise Bad("option reply length %d" % rlen)
        return rtype, self.recv(rlen)

    def go(self, name=b"", want_block_size=True, structured=False):
        """Fixed-newstyle GO; sets size and transmission flags; returns
        the block size triple if the server sent one."""
        if structured:
            self.opt(OPT_STRUCTURED_REPLY)
            rtype, _ = self.opt_reply(OPT_STRUCTURED_REPLY)
            if rtype != REP_ACK:
                raise Bad("STRUCTURED_REPLY not acknowledged (%x)" % rtype)
        infos = [INFO_BLOCK_SIZE] if want_block_size else []
        data = struct.pack(">I", len(name)) + name + \
            struct.pack(">H", len(infos)) + \
            b"".join(struct.pack(">H", i) for i in infos)
        self.opt(OPT_GO, data)
        bs = None
        for _ in range(64):
            rtype, payload = self.opt_reply(OPT_GO)
            if rtype == REP_ACK:
                break
            if rtype != REP_INFO:
                raise Bad("GO answered with reply type %x" % rtype)
            itype, = struct.unpack(">H", payload[:2])
            if itype == INFO_EXPORT:
                self.size, self.tflags = struct.unpack(">QH", payload[2:12])
            elif itype == INFO_BLOCK_SIZE:
                bs = struct.unpack(">III", payload[2:14])
        else:
            raise Bad("GO: no ACK after 64 replies")
        if self.size is None:
            raise Bad("GO: no NBD_INFO_EXPORT")
        return bs

    def export_name(self, name=b""):
        self.opt(OPT_EXPORT_NAME, name)
        self.size, self.tflags = struct.unpack(">QH", self.recv(10))
        if not self.hflags & FLAG_NO_ZEROES:
            self.recv(124)

    def handshake(self, **kw):
        self.greeting()
        return self.go(**kw)

    # Transmission -----------------------------------------------------

    def request(self, cmd, offset, length, handle, flags=0, payload=b""):
        self.send(struct.pack(">IHHQQI", REQ_MAGIC, flags, cmd, handle,
                              offset, length) + payload)

    def reply(self, read_len=0):
        """Read one simple reply; returns (error, handle, data).  data is
        read only when error is 0 and read_len > 0."""
        magic, error, handle = struct.unpack(">IIQ", self.recv(16))
        if magic != SIMPLE_REPLY_MAGIC:
            raise Bad("bad reply magic %x" % magic)
        data = b""
        if error == 0 and read_len:
            data = self.recv(read_len)
        return error, handle, data

    def any_reply(self):
        """One reply of a request without data (simple, or a structured
        reply's chunks up to DONE); returns (error, handle)."""
        magic, = struct.unpack(">I", self.recv(4))
        if magic == SIMPLE_REPLY_MAGIC:
            error, handle = struct.unpack(">IQ", self.recv(12))
            return error, handle
        if magic != STRUCT_REPLY_MAGIC:
            raise Bad("bad reply magic %x" % magic)
        error = 0
        for _ in range(1000):
            flags, rtype, handle, length = struct.unpack(">HHQI",
                                                         self.recv(16))
            body = self.recv(length)
            if rtype & 0x8000:
                error, = struct.unpack(">I", body[:4])
            if flags & 1:
                return error, handle
            magic, = struct.unpack(">I", self.recv(4))
        raise Bad("structured reply without DONE after 1000 chunks")

    def call_structured(self, cmd, offset, length, handle=1):
        """A READ with structured replies: gathers OFFSET_DATA chunks."""
        self.request(cmd, offset, length, handle)
        data = bytearray(length)
        error = 0
        for _ in range(100000):
            magic, flags, rtype, h, n = struct.unpack(">IHHQI",
                                                      self.recv(20))
            if magic != STRUCT_REPLY_MAGIC or h != handle:
                raise Bad("structured read: magic %x handle %x" % (magic, h))
            body = self.recv(n)
            if rtype == 1:  # NBD_REPLY_TYPE_OFFSET_DATA
                off, = struct.unpack(">Q", body[:8])
                data[off - offset:off - offset + n - 8] = body[8:]
            elif rtype & 0x8000:
                error, = struct.unpack(">I", body[:4])
            if flags & 1:
                return error, bytes(data)
        raise Bad("structured read without DONE")

    def call(self, cmd, offset, length, flags=0, payload=b"", handle=1):
        self.request(cmd, offset, length, handle, flags, payload)
        rlen = length if cmd == CMD_READ else 0
        error, h, data = self.reply(rlen)
        if h != handle:
            raise Bad("reply handle %x, expected %x" % (h, handle))
        return error, data

    def disc(self):
        try:
            self.request(CMD_DISC, 0, 0, 0xD15C)
        except Disconnected:
            pass
        self.close()


# Helpers for the cases ---------------------------------------------------

def expect_error(conn, what, cmd, offset, length, flags=0, payload=b"",
                 allowed=(EINVAL,), may_disconnect=False):
    """Send one request that must fail with an error in allowed (or, if
    may_disconnect, close the connection).  Returns True if the connection
    is still usable."""
    try:
        error, _ = conn.call(cmd, offset, length, flags, payload)
    except Disconnected as e:
        if may_disconnect:
            print("%s: server disconnected (%s), allowed" % (what, e))
            return False
        raise Bad("%s: server disconnected (%s), expected an error reply"
                  % (what, e))
    if error == 0:
        raise Bad("%s: server replied success" % what)
    if error not in allowed:
        raise Bad("%s: error %d, expected one of %s" % (what, error,
                                                        allowed))
    print("%s: error %d, ok" % (what, error))
    return True


def still_works(conn, what):
    """The connection still serves a normal read."""
    n = min(4096, conn.size)
    error, data = conn.call(CMD_READ, 0, n, handle=0x600D)
    if error != 0 or len(data) != n:
        raise Bad("%s: read after the bad request failed (%d)" %
                  (what, error))


def fresh(args, **kw):
    c = Conn(args.unix)
    c.handshake(**kw)
    return c


def wait_done(args):
    if args.ready:
        with open(args.ready, "w") as f:
            f.write("ready\n")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if args.done and os.path.exists(args.done):
            return
        time.sleep(0.1)
    raise Bad("the test did not create %s within 60 s" % args.done)


# Cases -----------------------------------------------------------------

def case_bad_magic_handshake(args):
    # Unknown client flags: the server must close.
    c = Conn(args.unix)
    c.greeting(cflags=None)
    c.send(struct.pack(">I", 0xFFFFFFFC | FLAG_FIXED_NEWSTYLE))
    c.expect_eof("unknown client flags")
    c.close()
    # A bad option magic: the server must close (proto.md: it cannot
    # resynchronise).
    c = Conn(args.unix)
    c.greeting()
    c.send(struct.pack(">QII", 0x0123456789ABCDEF, OPT_GO, 0))
    c.expect_eof("bad option magic")
    c.close()
    # Garbage instead of everything.
    c = Conn(args.unix)
    c.greeting(cflags=None)
    c.send(b"\xff" * 4096)
    c.expect_eof("garbage after the greeting")
    c.close()


def case_bad_magic_request(args):
    c = fresh(args)
    c.send(struct.pack(">IHHQQI", 0xDEADBEEF, 0, CMD_WRITE, 1, 0, 512) +
           b"\xAA" * 512)
    c.expect_eof("bad request magic")
    c.close()


def case_oversized(args):
    c = fresh(args)
    big = MAX_PAYLOAD + 4096
    # READ over the maximum: an error, never data.
    ok = expect_error(c, "read of 32 MiB + 4 KiB", CMD_READ, 0, big,
                      allowed=(EINVAL, EOVERFLOW, ENOMEM),
                      may_disconnect=True)
    if ok:
        still_works(c, "oversized read")
        c.disc()
    # WRITE over the maximum: the server may disconnect (it cannot know
    # whether to read the payload) or read and discard it and fail.
    c = fresh(args)
    try:
        c.request(CMD_WRITE, 0, big, 7)
        chunk = b"\x5A" * (1 << 20)
        for _ in range(big // len(chunk)):
            c.send(chunk)
        c.send(b"\x5A" * (big % len(chunk)))
        error, h, _ = c.reply()
        if error == 0:
            raise Bad("write of 32 MiB + 4 KiB succeeded")
        print("oversized write: error %d, ok" % error)
        still_works(c, "oversized write")
    except Disconnected as e:
        print("oversized write: disconnected (%s), allowed" % e)
    c.close()
    # A length near 4 GiB in a WRITE header with no payload behind it:
    # the server must not allocate it; it disconnects or answers.
    c = fresh(args)
    try:
        c.request(CMD_WRITE, 0, 0xFFFFFE00, 8)
        c.s.shutdown(socket.SHUT_WR)
        c.expect_eof("write of 4 GiB - 512")
    except Disconnected:
        pass
    c.close()


def case_out_of_range(args):
    c = fresh(args)
    size = c.size
    cases = [
        ("read straddling the end", CMD_READ, size - 512, 4096),
        ("read past the end", CMD_READ, size + 4096, 512),
        ("read at 2^63", CMD_READ, 1 << 63, 512),
        ("read wrapping 2^64", CMD_READ, (1 << 64) - 512, 1024),
        ("write straddling the end", CMD_WRITE, size - 512, 4096),
        ("write past the end", CMD_WRITE, size, 512),
        ("write wrapping 2^64", CMD_WRITE, (1 << 64) - 512, 1024),
        ("trim straddling the end", CMD_TRIM, size - 512, 1 << 20),
        ("trim wrapping 2^64", CMD_TRIM, (1 << 64) - 4096, 8192),
        ("zero straddling the end", CMD_WRITE_ZEROES, size - 512, 4096),
        ("zero past the end", CMD_WRITE_ZEROES, size + (1 << 30), 4096),
    ]
    for what, cmd, off, length in cases:
        payload = b"\xEE" * length if cmd == CMD_WRITE else b""
        expect_error(c, what, cmd, off, length, payload=payload,
                     allowed=(EINVAL, ENOSPC, EOVERFLOW))
        still_works(c, what)
    c.disc()


def case_unknown(args):
    c = fresh(args)
    for cmd in (42, 1000, 0xFFFF):
        expect_error(c, "unknown command %d" % cmd, cmd, 0, 0,
                     allowed=(EINVAL, ENOTSUP))
        still_works(c, "unknown command")
    expect_error(c, "read with unknown flag 0x8000", CMD_READ, 0, 512,
                 flags=0x8000, allowed=(EINVAL, ENOTSUP))
    still_works(c, "unknown flag on read")
    # A write with an unknown flag still carries its payload; the server
    # must consume it (or hang up), and must not write it.
    ok = expect_error(c, "write with unknown flag 0x4000", CMD_WRITE, 0,
                      4096, flags=0x4000, payload=b"\xEE" * 4096,
                      allowed=(EINVAL, ENOTSUP), may_disconnect=True)
    if ok:
        still_works(c, "unknown flag on write")
    c.disc()


def case_readonly(args):
    c = fresh(args)
    if not c.tflags & TF_READ_ONLY:
        raise Bad("export not advertised READ_ONLY (flags %x)" % c.tflags)
    expect_error(c, "write on a read-only export", CMD_WRITE, 0, 4096,
                 payload=b"\xEE" * 4096, allowed=(EPERM,))
    still_works(c, "write on read-only")
    expect_error(c, "FUA write on a read-only export", CMD_WRITE, 4096, 512,
                 flags=CMD_FLAG_FUA, payload=b"\xEE" * 512, allowed=(EPERM,))
    expect_error(c, "trim on a read-only export", CMD_TRIM, 0, 65536,
                 allowed=(EPERM, EINVAL))
    expect_error(c, "zero on a read-only export", CMD_WRITE_ZEROES, 0, 65536,
                 allowed=(EPERM, EINVAL))
    still_works(c, "after read-only refusals")
    # FLUSH on a read-only export is harmless: success or an error, no
    # disconnect.
    c.call(CMD_FLUSH, 0, 0)
    c.disc()


def case_opt_flood(args):
    c = Conn(args.unix)
    c.greeting()
    n = 5000
    # Pipeline the options in batches (bounded socket buffering), then
    # read the replies: each must be an error reply.
    batch = 250
    sent = answered = 0
    try:
        while sent < n:
            k = min(batch, n - sent)
            c.send(b"".join(struct.pack(">QII", IHAVEOPT, 0x4000 + i % 100, 4)
                            + b"junk" for i in range(k)))
            sent += k
            for _ in range(k):
                rtype, _ = c.opt_reply()
                if not rtype & 0x80000000:
                    raise Bad("unknown option answered with %x" % rtype)
                answered += 1
    except Disconnected as e:
        # A server may cut off a client that haggles too long.
        print("option flood: disconnected after %d replies (%s), allowed"
              % (answered, e))
        c.close()
        return
    c.go()
    still_works(c, "option flood")
    print("option flood: %d unknown options refused, then GO" % answered)
    c.disc()


def case_opt_huge(args):
    # GO with a length field of ~2 GiB: the server must not buffer it.
    # Stream 64 MiB of junk into it (bounded), then close.
    c = Conn(args.unix)
    c.greeting()
    try:
        c.s.settimeout(2)
        c.send(struct.pack(">QII", IHAVEOPT, OPT_GO, 0x7FFFFFF0))
        chunk = b"\0" * (1 << 20)
        for _ in range(64):
            c.send(chunk)
    except Disconnected as e:
        print("huge option: disconnected (%s), allowed" % e)
    except socket.timeout:
        print("huge option: server stopped reading, allowed")
    c.close()
    # An unknown option with a huge length and a short body: error reply
    # or disconnect, never a crash.
    c = Conn(args.unix)
    c.greeting()
    try:
        c.send(struct.pack(">QII", IHAVEOPT, 0x7777, 0xFFFFFFFF) + b"x" * 100)
        c.s.shutdown(socket.SHUT_WR)
        c.expect_eof("unknown option of 4 GiB")
    except Disconnected:
        pass
    c.close()
    # An INFO whose name length points past the option's own length.
    c = Conn(args.unix)
    c.greeting()
    c.opt(OPT_INFO, struct.pack(">I", 0x10000000) + b"abc")
    try:
        rtype, _ = c.opt_reply(OPT_INFO)
        if not rtype & 0x80000000:
            raise Bad("INFO with a lying name length answered %x" % rtype)
        c.go()
        still_works(c, "lying INFO")
        c.disc()
    except Disconnected as e:
        print("lying INFO: disconnected (%s), allowed" % e)
        c.close()


def case_vanish(args):
    # Header only, half a header, partial payload, then gone.
    c = fresh(args)
    c.send(struct.pack(">IHHQ", REQ_MAGIC, 0, CMD_WRITE, 1))
    c.close()
    c = fresh(args)
    c.request(CMD_WRITE, 1 << 20, 1 << 20, 2)
    c.close()
    c = fresh(args)
    c.request(CMD_WRITE, 2 << 20, 1 << 20, 3, payload=b"\xEE" * 100000)
    c.close()
    c = fresh(args)
    c.request(CMD_WRITE, 3 << 20, 1 << 20, 4, flags=CMD_FLAG_FUA,
              payload=b"\xEE" * ((1 << 20) - 1))
    c.close()
    # Mid-reply: ask for big reads and leave while they are sent.
    c = fresh(args)
    n = min(c.size, MAX_PAYLOAD)
    for i in range(4):
        c.request(CMD_READ, 0, n, 10 + i)
    c.recv(16 + 1000)
    c.s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                   struct.pack("ii", 1, 0))
    c.close()
    # Mid-handshake: in the middle of a GO reply's wait.
    c = Conn(args.unix)
    c.greeting()
    c.send(struct.pack(">QII", IHAVEOPT, OPT_GO, 100) + b"\0\0")
    c.close()


def case_slow_reader(args):
    # Many READs, replies never read: the server must stop reading this
    # connection's requests when its replies back up, not buffer them.
    c = fresh(args)
    n = min(c.size, 1 << 20)
    c.s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    c.s.settimeout(3)
    sent = 0
    try:
        for i in range(20000):  # up to 20 GiB requested
            c.request(CMD_READ, (i * n) % (c.size - n + 1), n, i)
            sent += 1
    except socket.timeout:
        pass
    except Disconnected as e:
        raise Bad("slow reader: disconnected after %d requests (%s)" %
                  (sent, e))
    print("slow reader: %d requests of %d bytes sent, none read" %
          (sent, n))
    wait_done(args)
    c.close()


def case_stalled_handshake(args):
    conns = []
    for i in range(8):
        c = Conn(args.unix)
        if i % 2:
            c.recv(18)  # read the greeting, answer nothing
        elif i % 4 == 2:
            c.greeting()
            c.send(struct.pack(">QI", IHAVEOPT, OPT_GO))  # half an option
        conns.append(c)
    wait_done(args)
    for c in conns:
        c.close()


def case_rmw_pipelined(args):
    """A client that did not request block sizes pipelines overlapping
    aligned and unaligned writes in one send (found by
    fuzz-nbd-request as a hang): every request must be answered, and the
    bytes that only one write covers must hold its data."""
    for structured in (False, True):
        c = Conn(args.unix)
        c.handshake(want_block_size=False, structured=structured)
        reqs = [
            (CMD_WRITE, 0, b"\xA1" * 512),
            (CMD_WRITE, 0, b"\xB2"),
            (CMD_WRITE, 100, b"\xC3" * 1000),
            (CMD_WRITE, 1024, b"\xD4" * 512),
            (CMD_WRITE, 1500, b"\xE5" * 3),
        ]
        buf = b"".join(struct.pack(">IHHQQI", REQ_MAGIC, 0, cmd, 100 + i,
                                   off, len(data)) + data
                       for i, (cmd, off, data) in enumerate(reqs))
        c.send(buf)
        pending = set(100 + i for i in range(len(reqs)))
        for _ in range(len(reqs)):
            error, handle = c.any_reply()
            if handle not in pending:
                raise Bad("reply for unknown handle %x" % handle)
            if error:
                raise Bad("write %d failed with %d" % (handle - 100, error))
            pending.discard(handle)
        # Writes on one connection that overlap may complete in any order
        # (NBD does not order them), so only check what no order changes:
        # bytes only one write covers.
        error, data = (c.call_structured if structured else c.call)(
            CMD_READ, 0, 2048)
        if error:
            raise Bad("read back failed with %d" % error)
        if data[1100:1500] != b"\xD4" * 400 or data[1:100] != b"\xA1" * 99:
            raise Bad("pipelined writes: wrong data after them")
        print("pipelined overlapping unaligned writes (%s replies): ok" %
              ("structured" if structured else "simple"))
        c.disc()


def case_sanity(args):
    """A normal session with this client, to check the client itself."""
    c = Conn(args.unix)
    bs = c.handshake(structured=False)
    print("size %d flags %x block sizes %s" % (c.size, c.tflags, bs))
    still_works(c, "sanity")
    c.disc()
    c = Conn(args.unix)
    c.greeting()
    c.export_name(b"")
    still_works(c, "EXPORT_NAME")
    c.disc()


CASES = {
    "sanity": case_sanity,
    "rmw-pipelined": case_rmw_pipelined,
    "bad-magic-handshake": case_bad_magic_handshake,
    "bad-magic-request": case_bad_magic_request,
    "oversized": case_oversized,
    "out-of-range": case_out_of_range,
    "unknown": case_unknown,
    "readonly": case_readonly,
    "opt-flood": case_opt_flood,
    "opt-huge": case_opt_huge,
    "vanish": case_vanish,
    "slow-reader": case_slow_reader,
    "stalled-handshake": case_stalled_handshake,
}


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--unix", required=True, help="server's Unix socket")
    ap.add_argument("--ready")
    ap.add_argument("--done")
    ap.add_argument("case", choices=sorted(CASES))
    args = ap.parse_args()
    try:
        CASES[args.case](args)
    except (Bad, Disconnected, OSError) as e:
        print("FAIL %s: %s: %s" % (args.case, type(e).__name__, e))
        return 1
    print("ok %s" % args.case)
    return 0


if __name__ == "__main__":
    sys.exit(main())
