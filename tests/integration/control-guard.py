#!/usr/bin/python3
"""control-guard.py: a raw client of the control socket for
test-control-guard.sh (issue 14).  Every answer is parsed as JSON.

  control-guard.py hostile SOCK   garbage, binary bytes, NULs, control
                                  bytes, empty lines, unknown commands,
                                  overlong lines (1 MiB among them), a
                                  line split over sends, and clients that
                                  vanish: each line gets one JSON error
                                  (valid commands their usual answers)
  control-guard.py many SOCK N    N+1 commands on one connection: N
                                  answers, then the bound's error, then
                                  the connection is closed
  control-guard.py clients SOCK N N connections at once are served; one
                                  more is refused with a JSON error
  control-guard.py one SOCK       send "stats", print the answer line
                                  (exit 0 if it is ok, 1 if it is an
                                  error), or the errno name of a failed
                                  connect (exit 3)
  control-guard.py stale PATH     leave a socket file nobody listens on
  control-guard.py watch PATH S   print the mode of PATH (octal) as soon
                                  as it appears, within S seconds

Exit 0 on success, 1 with a FAIL line.  Every wait is bounded.
"""
import errno
import json
import os
import random
import socket
import stat
import sys
import threading
import time

TIMEOUT = 60


def fail(msg):
    sys.exit("FAIL: control-guard.py %s: %s" % (sys.argv[1], msg))


def connect(path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(TIMEOUT)
    s.connect(path)
    return s, s.makefile("rb")


def answer(f, what):
    """One answer line, parsed: (object, raw line)."""
    line = f.readline()
    if not line.endswith(b"\n"):
        fail("%s: no answer line (got %r)" % (what, line[:200]))
    try:
        j = json.loads(line)
    except ValueError as e:
        fail("%s: the answer is not JSON (%s): %r" % (what, e, line[:300]))
    if not isinstance(j, dict) or not isinstance(j.get("ok"), bool):
        fail("%s: no \"ok\" in the answer: %r" % (what, line[:300]))
    return j, line


def expect_error(f, what, text):
    j, line = answer(f, what)
    if j["ok"] or text not in j.get("error", ""):
        fail("%s: want an error with %r, got %r" % (what, text, line[:300]))


def expect_line(f, what, want):
    _, line = answer(f, what)
    if line != want:
        fail("%s: want %r, got %r" % (what, want, line[:300]))


def hostile(path):
    s, f = connect(path)
    bad = [
        (b"hello world\n", "unknown command 'hello'"),
        (b"format disk\n", "unknown command 'format'"),
        (b"\xff\xfe\x80\x81 stats\n", "byte 0xff at offset 0 is not UTF-8"),
        (b"stats \xc0\xaf\n", "byte 0xc0 at offset 6 is not UTF-8"),
        (b"stats\x00junk\n", "a NUL byte at offset 5"),
        (b"\x00\n", "a NUL byte at offset 0"),
        (b"\x00\x00\x00\x00stats\n", "a NUL byte at offset 0"),
        (b"\x1b[31mstats\n", "control byte 0x1b at offset 0"),
        (b"stats\x7f\n", "control byte 0x7f at offset 5"),
        (b"\n", "empty command"),
        (b" \t\r\n", "empty command"),
        (b"fault\n", "fault: add, del, list or clear?"),
        (b"fault add\n", "want 'fault add RULE'"),
        (b"fault frobnicate x\n", "fault frobnicate"),
        (b"stats now\n", "unknown command 'stats'"),
        # Valid UTF-8 reaches the parser and is quoted back as it is.
        (b"caf\xc3\xa9\n", "unknown command 'caf\u00e9'"),
        (b"fault add error,p=2\n", "p=2 is outside 0-1"),
    ]
    for send, text in bad:
        s.sendall(send)
        expect_error(f, repr(send[:40]), text)

    # Valid commands keep their answers, byte for byte.
    for send, want in [
            (b"fault add error,op=read,p=0.5,id=e1\n",
             b'{"ok":true,"id":"e1"}\n'),
            (b"fault del e1\n", b'{"ok":true}\n'),
            (b"fault clear\r\n", b'{"ok":true}\n'),
            (b"fault add lost,id=l1\n", b'{"ok":true,"id":"l1"}\n'),
            (b"fault clear\n", b'{"ok":true}\n')]:
        s.sendall(send)
        expect_line(f, repr(send), want)

    # Several commands in one send: one answer each, in order.
    s.sendall(b"bogus\nfault clear\n\x00\nstats\n")
    expect_error(f, "batch 1", "unknown command 'bogus'")
    expect_line(f, "batch 2", b'{"ok":true}\n')
    expect_error(f, "batch 3", "NUL byte")
    j, _ = answer(f, "batch 4")
    if not j["ok"] or "stats" not in j:
        fail("batch 4: stats: %r" % j)

    # A line split over several sends is one command.
    for part in (b"st", b"a", b"ts\n"):
        s.sendall(part)
        time.sleep(0.05)
    j, _ = answer(f, "split line")
    if not j["ok"]:
        fail("split line: %r" % j)

    # The longest line taken: 4095 bytes and its newline.
    s.sendall(b"x" * 4095 + b"\n")
    expect_error(f, "4095-byte line", "unknown command 'xxx")
    # One byte more: too long, answered once, the rest discarded.
    s.sendall(b"y" * 4096 + b"\nfault clear\n")
    expect_error(f, "4096-byte line", "command line too long")
    expect_line(f, "after a 4096-byte line", b'{"ok":true}\n')
    # A 1 MiB line of text, then one of binary bytes without a newline
    # among them: each one answer, then the connection goes on.
    s.sendall(b"fault add " + b"A" * (1 << 20) + b"\n")
    expect_error(f, "1 MiB line", "command line too long")
    rnd = random.Random(14)
    blob = bytes(rnd.randrange(256) for _ in range(1 << 16))
    s.sendall(blob.replace(b"\n", b"\x00") + b"\n")
    expect_error(f, "64 KiB binary line", "command line too long")
    s.sendall(b"stats\n")
    j, _ = answer(f, "stats after the long lines")
    if not j["ok"]:
        fail("stats after the long lines: %r" % j)

    # Random binary lines: one JSON answer per line, whatever they hold.
    lines = [bytes(rnd.randrange(256) for _ in range(rnd.randrange(1, 300)))
             .replace(b"\n", b" ") for _ in range(200)]
    s.sendall(b"\n".join(lines) + b"\n")
    for i in range(len(lines)):
        answer(f, "random line %d" % i)
    s.sendall(b"fault list\n")
    j, _ = answer(f, "fault list after the random lines")
    if not j["ok"]:
        fail("fault list after the random lines: %r" % j)
    s.close()

    # Clients that vanish: in the middle of a line, after sending many
    # commands without reading, right after connecting.
    s, f = connect(path)
    s.sendall(b"fault add error,op=re")
    s.close()
    s, f = connect(path)
    s.sendall(b"stats\n" * 500)
    s.close()
    s, f = connect(path)
    s.close()

    # Still serving.
    s, f = connect(path)
    s.sendall(b"stats\n")
    j, _ = answer(f, "stats at the end")
    if not j["ok"]:
        fail("stats at the end: %r" % j)
    s.close()


def many(path, n):
    s, f = connect(path)
    errs = []

    def writer():
        try:
            s.sendall(b"fault clear\n" * n + b"stats\n" + b"fault clear\n" * 9)
        except OSError as e:   # the server closes once it has answered
            if e.errno not in (errno.EPIPE, errno.ECONNRESET):
                errs.append(e)

    t = threading.Thread(target=writer)
    t.start()
    for i in range(n):
        expect_line(f, "command %d of %d" % (i + 1, n), b'{"ok":true}\n')
    expect_error(f, "command %d" % (n + 1),
                 "too many commands on one connection (at most %d)" % n)
    try:
        rest = f.read()
    except ConnectionResetError:
        rest = b""             # the server closed over unread commands
    if rest:
        fail("answers after the bound's error: %r" % rest[:200])
    t.join(TIMEOUT)
    if t.is_alive() or errs:
        fail("the writer: %r" % errs)
    s.close()


def clients(path, n):
    conns = []
    for i in range(n):
        s, f = connect(path)
        s.sendall(b"fault clear\n")   # a round trip: it is taken
        expect_line(f, "client %d" % (i + 1), b'{"ok":true}\n')
        conns.append((s, f))
    s, f = connect(path)
    expect_error(f, "client %d" % (n + 1),
                 "too many control clients (at most %d at once)" % n)
    if f.read() != b"":
        fail("client %d: more than the refusal" % (n + 1))
    s.close()
    # One leaves; a new one is served.
    conns.pop()[0].close()
    for i in range(50):
        s, f = connect(path)
        s.sendall(b"fault clear\n")
        j, line = answer(f, "a client after one left")
        s.close()
        if j["ok"]:
            break
        time.sleep(0.1)   # the server may not have seen the close yet
    else:
        fail("a client after one left: %r" % line)
    for s, _ in conns:
        s.close()


def one(path):
    try:
        s, f = connect(path)
    except OSError as e:
        print(errno.errorcode.get(e.errno, str(e.errno)))
        sys.exit(3)
    try:
        s.sendall(b"stats\n")
    except OSError:
        pass    # refused and closed already: the answer is still there
    j, line = answer(f, "stats")
    sys.stdout.write(line.decode())
    # A refusal closes the connection after its one line.
    if not j["ok"]:
        if f.read() != b"":
            fail("more than one line after a refusal")
        sys.exit(1)


def stale(path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(path)
    s.close()


def watch(path, secs):
    end = time.monotonic() + secs
    while time.monotonic() < end:
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            time.sleep(0.0005)
            continue
        print("%o" % stat.S_IMODE(st.st_mode))
        return
    fail("%s did not appear within %g s" % (path, secs))


def main():
    cmd, path = sys.argv[1], sys.argv[2]
    if cmd == "hostile":
        hostile(path)
    elif cmd == "many":
        many(path, int(sys.argv[3]))
    elif cmd == "clients":
        clients(path, int(sys.argv[3]))
    elif cmd == "one":
        one(path)
    elif cmd == "stale":
        stale(path)
    elif cmd == "watch":
        watch(path, float(sys.argv[3]))
    else:
        fail("unknown command")


if __name__ == "__main__":
    main()
