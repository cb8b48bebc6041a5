#!/usr/bin/env python3
# nbd-tls.py: a raw-socket NBD client for the STARTTLS cases no library
# client sends (test-nbd-tls.sh).
#
# It speaks proto.md byte by byte (python3 standard library only, no
# libnbd), and TLS through the ssl module's memory BIOs, so that it
# controls every byte on the socket: plaintext options under
# --tls=require, STARTTLS with data, twice, or pipelined with another
# option, a TLS session that stops in the middle of a record, a client
# that reads its replies late (the server's TLS sends then meet a full
# socket), and garbage where a ClientHello belongs.
#
# usage: nbd-tls.py (--unix PATH | --tcp HOST:PORT) CASE
#            [--ca FILE] [--image FILE]
#
# Each CASE checks what the server answered and exits 0 when it behaved
# as proto.md says, 1 otherwise, printing why.  That the server survived
# and still serves others is checked by the caller.  Every wait has a
# timeout and every loop a bound.

import argparse
import os
import socket
import ssl
import struct
import sys
import time

NBDMAGIC = 0x4E42444D41474943
IHAVEOPT = 0x49484156454F5054
REPLYMAGIC_OPT = 0x3E889045565A9
REQ_MAGIC = 0x25609513
SIMPLE_REPLY_MAGIC = 0x67446698

FLAG_FIXED_NEWSTYLE = 1
FLAG_NO_ZEROES = 2

OPT_EXPORT_NAME = 1
OPT_ABORT = 2
OPT_LIST = 3
OPT_STARTTLS = 5
OPT_INFO = 6
OPT_GO = 7
OPT_STRUCTURED_REPLY = 8
OPT_SET_META_CONTEXT = 10

REP_ACK = 1
REP_SERVER = 2
REP_INFO = 3
REP_ERR_UNSUP = 0x80000001
REP_ERR_INVALID = 0x80000003
REP_ERR_TLS_REQD = 0x80000005

CMD_READ = 0
CMD_WRITE = 1
CMD_DISC = 2

TIMEOUT = 30


class Fail(Exception):
    pass


class EOF(Exception):
    pass


class Conn:
    """One connection: plaintext at first, TLS after starttls()."""

    def __init__(self, args):
        if args.unix:
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.settimeout(TIMEOUT)
            self.sock.connect(args.unix)
        else:
            host, port = args.tcp.rsplit(":", 1)
            self.sock = socket.create_connection((host, int(port)),
                                                 timeout=TIMEOUT)
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.args = args
        self.tls = None

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    # The transport: the socket, or the TLS object over it.
    def _raw_recv(self, n=1 << 16):
        try:
            d = self.sock.recv(n)
        except ConnectionResetError:
            d = b""
        return d

    def _flush(self):
        d = self.out.read()
        if d:
            self.sock.sendall(d)

    def _fill(self):
        d = self._raw_recv()
        if not d:
            raise EOF("the server closed the connection")
        self.inc.write(d)

    def send(self, data):
        if self.tls is None:
            self.sock.sendall(data)
        else:
            self.tls.write(data)
            self._flush()

    def recv(self, n):
        buf = b""
        while len(buf) < n:
            if self.tls is None:
                d = self._raw_recv(n - len(buf))
                if not d:
                    raise EOF("the server closed the connection after "
                              "%d of %d bytes" % (len(buf), n))
                buf += d
                continue
            try:
                d = self.tls.read(n - len(buf))
            except ssl.SSLWantReadError:
                self._fill()
                continue
            except ssl.SSLZeroReturnError:
                raise EOF("close_notify from the server")
            if not d:
                raise EOF("the TLS session ended")
            buf += d
        return buf

    def expect_eof(self, what):
        """The server hangs up (no more bytes, within the timeout)."""
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            try:
                self.recv(1)
            except EOF:
                return
            except ssl.SSLError:
                return
            except socket.timeout:
                break
            raise Fail("%s: the server sent more instead of hanging up" % what)
        raise Fail("%s: the server did not hang up" % what)

    # The handshake.
    def greeting(self):
        magic, opt, flags = struct.unpack(">QQH", self.recv(18))
        if magic != NBDMAGIC or opt != IHAVEOPT:
            raise Fail("bad greeting")
        if not flags & FLAG_FIXED_NEWSTYLE:
            raise Fail("the server is not fixed newstyle")
        self.send(struct.pack(">I", FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES))

    def opt(self, option, data=b""):
        self.send(struct.pack(">QII", IHAVEOPT, option, len(data)) + data)

    def opt_reply(self, option):
        magic, opt, rtype, rlen = struct.unpack(">QIII", self.recv(20))
        if magic != REPLYMAGIC_OPT:
            raise Fail("bad option reply magic %#x" % magic)
        if opt != option:
            raise Fail("a reply to option %d, not %d" % (opt, option))
        return rtype, self.recv(rlen)

    def expect_reply(self, option, want, what):
        rtype, data = self.opt_reply(option)
        if rtype != want:
            raise Fail("%s: reply %#x (%r), expected %#x" %
                       (what, rtype, data, want))
        return data

    def starttls(self, certfile=None, keyfile=None):
        """STARTTLS, its ACK, then the TLS handshake."""
        self.opt(OPT_STARTTLS)
        self.expect_reply(OPT_STARTTLS, REP_ACK, "STARTTLS")
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.load_verify_locations(self.args.ca)
        if certfile is not None:
            ctx.load_cert_chain(certfile, keyfile)
        self.inc = ssl.MemoryBIO()
        self.out = ssl.MemoryBIO()
        self.tls = ctx.wrap_bio(self.inc, self.out,
                                server_hostname="localhost")
        for _ in range(1000):
            try:
                self.tls.do_handshake()
                self._flush()
                return
            except ssl.SSLWantReadError:
                self._flush()
                self._fill()
        raise Fail("the TLS handshake did not end")

    def go(self):
        """GO for the default export, no info asked: the export's size."""
        self.opt(OPT_GO, struct.pack(">IH", 0, 0))
        size = None
        for _ in range(16):
            rtype, data = self.opt_reply(OPT_GO)
            if rtype == REP_ACK:
                if size is None:
                    raise Fail("GO: no NBD_INFO_EXPORT")
                return size
            if rtype != REP_INFO:
                raise Fail("GO: reply %#x (%r)" % (rtype, data))
            if struct.unpack(">H", data[:2])[0] == 0:
                size = struct.unpack(">Q", data[2:10])[0]
        raise Fail("GO: too many replies")

    # Transmission, simple replies.
    def request(self, cmd, offset, length, handle, payload=b""):
        self.send(struct.pack(">IHHQQI", REQ_MAGIC, 0, cmd, handle, offset,
                              length) + payload)

    def reply(self, read_len):
        magic, error, handle = struct.unpack(">IIQ", self.recv(16))
        if magic != SIMPLE_REPLY_MAGIC:
            raise Fail("bad reply magic %#x" % magic)
        data = self.recv(read_len) if error == 0 else b""
        return error, handle, data


def image_bytes(args, off, n):
    with open(args.image, "rb") as f:
        f.seek(off)
        return f.read(n)


def case_require_plain(args):
    """--tls=require: plaintext options get NBD_REP_ERR_TLS_REQD; ABORT
    is answered; EXPORT_NAME, which cannot fail, ends the connection."""
    c = Conn(args)
    c.greeting()
    for option, data in ((OPT_LIST, b""), (OPT_STRUCTURED_REPLY, b""),
                         (OPT_INFO, struct.pack(">IH", 0, 0)),
                         (OPT_GO, struct.pack(">IH", 0, 0)),
                         (99, b"xyz")):
        c.opt(option, data)
        msg = c.expect_reply(option, REP_ERR_TLS_REQD,
                             "option %d before TLS" % option)
        if b"TLS" not in msg:
            raise Fail("option %d: the message does not mention TLS: %r" %
                       (option, msg))
    c.opt(OPT_ABORT)
    c.expect_reply(OPT_ABORT, REP_ACK, "ABORT")
    c.close()
    c = Conn(args)
    c.greeting()
    c.opt(OPT_EXPORT_NAME)
    c.expect_eof("EXPORT_NAME before TLS")
    c.close()


def case_off_starttls(args):
    """--tls=off: STARTTLS gets NBD_REP_ERR_UNSUP, haggling goes on."""
    c = Conn(args)
    c.greeting()
    c.opt(OPT_STARTTLS)
    c.expect_reply(OPT_STARTTLS, REP_ERR_UNSUP, "STARTTLS, TLS off")
    c.go()
    c.close()


def case_starttls_data(args):
    """STARTTLS with data: NBD_REP_ERR_INVALID, and plaintext goes on
    (--tls=on)."""
    c = Conn(args)
    c.greeting()
    c.opt(OPT_STARTTLS, b"junk")
    c.expect_reply(OPT_STARTTLS, REP_ERR_INVALID, "STARTTLS with data")
    c.opt(OPT_LIST)
    c.expect_reply(OPT_LIST, REP_SERVER, "LIST")
    c.expect_reply(OPT_LIST, REP_ACK, "LIST")
    c.close()


def case_starttls_pipelined(args):
    """Bytes sent after STARTTLS before its reply would be taken as if
    they came through TLS (plaintext injection): the server hangs up."""
    c = Conn(args)
    c.greeting()
    c.send(struct.pack(">QII", IHAVEOPT, OPT_STARTTLS, 0) +
           struct.pack(">QII", IHAVEOPT, OPT_LIST, 0))
    c.expect_eof("an option pipelined after STARTTLS")
    c.close()


def case_starttls_twice(args):
    """STARTTLS, then inside TLS: a second STARTTLS gets
    NBD_REP_ERR_INVALID, structured replies negotiated before TLS are
    forgotten (options start over), GO and reads work, and replies read
    late (the server's TLS sends meet a full socket and wait in GnuTLS)
    arrive whole and in order, with the image's bytes."""
    c = Conn(args)
    c.greeting()
    c.opt(OPT_STRUCTURED_REPLY)
    c.expect_reply(OPT_STRUCTURED_REPLY, REP_ACK, "STRUCTURED_REPLY")
    c.starttls()
    c.opt(OPT_STARTTLS)
    c.expect_reply(OPT_STARTTLS, REP_ERR_INVALID, "a second STARTTLS")
    q = b"base:allocation"
    c.opt(OPT_SET_META_CONTEXT,
          struct.pack(">II", 0, 1) + struct.pack(">I", len(q)) + q)
    c.expect_reply(OPT_SET_META_CONTEXT, REP_ERR_INVALID,
                   "SET_META_CONTEXT: structured replies of before TLS "
                   "must be forgotten")
    size = c.go()
    if size != os.path.getsize(args.image):
        raise Fail("GO: size %d, the image has %d" %
                   (size, os.path.getsize(args.image)))
    # Many large reads, none of their replies read for a while.
    n, length = 48, 512 << 10
    offs = [(i * 7919 * 4096) % (size - length) // 4096 * 4096
            for i in range(n)]
    for i, off in enumerate(offs):
        c.request(CMD_READ, off, length, i + 1)
    time.sleep(1)
    for i in range(n):
        error, handle, data = c.reply(length)
        if error != 0:
            raise Fail("READ %d: error %d" % (handle, error))
        if handle != i + 1:
            raise Fail("READ: handle %d, expected %d (one submitter, "
                       "in order)" % (handle, i + 1))
        if data != image_bytes(args, offs[i], length):
            raise Fail("READ %d at %d: not the image's bytes" %
                       (handle, offs[i]))
    c.request(CMD_DISC, 0, 0, 999)
    c.expect_eof("after DISC")
    c.close()


def case_mid_record(args):
    """A TLS client that stops in the middle of a record (half of a WRITE
    request's record, then the socket closes): the server drops it and
    writes nothing."""
    c = Conn(args)
    c.greeting()
    c.starttls()
    c.go()
    c.tls.write(struct.pack(">IHHQQI", REQ_MAGIC, 0, CMD_WRITE, 1, 0, 4096)
                + b"\xee" * 4096)
    rec = c.out.read()
    c.sock.sendall(rec[: len(rec) // 2])
    time.sleep(0.2)
    c.close()


def case_garbage_hello(args):
    """STARTTLS, then bytes that are no ClientHello: the TLS handshake
    fails and the server hangs up."""
    c = Conn(args)
    c.greeting()
    c.opt(OPT_STARTTLS)
    c.expect_reply(OPT_STARTTLS, REP_ACK, "STARTTLS")
    c.sock.sendall(b"GET / HTTP/1.0\r\n\r\n" + b"\0" * 200)
    c.expect_eof("garbage for a ClientHello")
    c.close()


CASES = {
    "require-plain": case_require_plain,
    "off-starttls": case_off_starttls,
    "starttls-data": case_starttls_data,
    "starttls-pipelined": case_starttls_pipelined,
    "starttls-twice": case_starttls_twice,
    "mid-record": case_mid_record,
    "garbage-hello": case_garbage_hello,
}


def main():
    p = argparse.ArgumentParser()
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--unix")
    g.add_argument("--tcp")
    p.add_argument("--ca", help="the CA certificate that signed the "
                   "server's")
    p.add_argument("--image", help="the exported image, to check reads")
    p.add_argument("case", choices=sorted(CASES))
    args = p.parse_args()
    try:
        CASES[args.case](args)
    except (Fail, EOF, OSError, ssl.SSLError, struct.error) as e:
        print("nbd-tls.py %s: %s" % (args.case, e), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
