#!/usr/bin/python3
# nbd-liar.py SOCKET SIZE MODE: a tiny NBD server (fixed newstyle, simple
# replies only, multi-conn) on a Unix socket, for test-nbd-wire.  The
# first connection (rumpblk's connection 0) is served honestly from
# memory; of the others (its data connections) the first to get a READ
# answers that one READ as MODE says, once in the server's life:
#   cookie  with a cookie no request has (a protocol error)
#   magic   with a wrong reply magic
#   hangup  by closing the connection mid-reply (half the data sent)
#   hangup-big  the same (the client reads 1 MiB at a time: rumpblk
#           splices such a read into a pipe)
# and every other request honestly.  In MODE dribble nothing lies, but
# the data of every READ of 64 KiB or more is sent 512 bytes at a time:
# more pieces than a pipe has slots, so that rumpblk's pipe fills up
# and the read falls back to a copy.  It serves at most 16 connections
# and stops by itself after 60 s.
import os, socket, struct, sys, threading, time

path, size, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3]
data = bytearray(size)
REQ, REPLY, OPTREPLY = 0x25609513, 0x67446698, 0x3e889045565a9
lock = threading.Lock()
lied = [False]


def recvall(s, n):
    b = b""
    while len(b) < n:
        c = s.recv(n - len(b))
        if not c:
            raise EOFError
        b += c
    return b


def optreply(s, opt, typ, payload=b""):
    s.sendall(struct.pack(">QIII", OPTREPLY, opt, typ, len(payload)) +
              payload)


def serve(s, n):
    s.sendall(b"NBDMAGIC" + b"IHAVEOPT" + struct.pack(">H", 3))
    recvall(s, 4)  # client flags
    while True:
        magic, opt, ln = struct.unpack(">QII", recvall(s, 16))
        recvall(s, ln)
        if opt in (1, 7):  # NBD_OPT_EXPORT_NAME is not offered; GO
            # NBD_INFO_EXPORT: size; flags HAS_FLAGS|SEND_FLUSH|MULTI_CONN
            optreply(s, opt, 3, struct.pack(">HQH", 0, size,
                                            1 | 4 | 256))
            optreply(s, opt, 1)  # ACK
            break
        if opt == 2:  # ABORT
            return
        optreply(s, opt, (1 << 31) | 1)  # ERR_UNSUP
    while True:
        magic, flags, typ, cookie, off, ln = struct.unpack(
            ">IHHQQI", recvall(s, 28))
        if typ == 1:
            payload = recvall(s, ln)
            with lock:
                data[off:off + ln] = payload
        if typ == 2:
            return
        with lock:
            lie = (typ == 0 and n > 0 and not lied[0] and
                   mode != "dribble")
            lied[0] = lied[0] or lie
        if lie:
            if mode == "cookie":
                s.sendall(struct.pack(">IIQ", REPLY, 0, cookie ^ 0x5a5a5a) +
                          bytes(data[off:off + ln]))
                continue
            if mode == "magic":
                s.sendall(struct.pack(">IIQ", 0x12345678, 0, cookie))
                continue
            if mode.startswith("hangup"):
                s.sendall(struct.pack(">IIQ", REPLY, 0, cookie) +
                          bytes(data[off:off + ln // 2]))
                s.shutdown(socket.SHUT_RDWR)
                return
        reply = struct.pack(">IIQ", REPLY, 0, cookie)
        if typ == 0:
            with lock:
                reply += bytes(data[off:off + ln])
        if mode == "dribble" and typ == 0 and ln >= 65536:
            for p in range(0, len(reply), 512):
                s.sendall(reply[p:p + 512])
            continue
        s.sendall(reply)


def conn(s, n):
    try:
        serve(s, n)
    except (EOFError, OSError):
        pass
    finally:
        s.close()


try:
    os.unlink(path)
except FileNotFoundError:
    pass
ls = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
ls.bind(path)
ls.listen(16)
ls.settimeout(1)
end = time.time() + 60
n = 0
while time.time() < end and n < 16:
    try:
        s, _ = ls.accept()
    except socket.timeout:
        continue
    threading.Thread(target=conn, args=(s, n), daemon=True).start()
    n += 1
while time.time() < end:
    time.sleep(0.5)
