#!/usr/bin/python3
# nbd-libnbd.py: libnbd (Python bindings) checks of "rumpblk serve".
#
# usage: nbd-libnbd.py URI IMAGE CASE...
#
# URI is the export, IMAGE the file it serves (read directly to verify
# what reached it, and stat'ed for st_blocks), CASE one of the functions
# named case_* below.  Each case prints what it checked and raises on the
# first mismatch; the exit status is 0 only if every case passed.  It runs
# under the system python3, which has the libnbd module.
#
# libnbd's own checks (strict mode) would refuse some requests before they
# reach the server; cases that test the server's answer to such requests
# switch the relevant check off, so that the server is what is tested.

import errno
import os
import sys
import threading
import time

import nbd

MAX_PAYLOAD = 32 << 20


def check(cond, what):
    if not cond:
        raise AssertionError(what)


def connect(uri, request_block_size=True, strict=None, structured=True):
    h = nbd.NBD()
    h.set_request_block_size(request_block_size)
    h.set_request_structured_replies(structured)
    h.add_meta_context(nbd.CONTEXT_BASE_ALLOCATION)
    if strict is not None:
        h.set_strict_mode(strict)
    h.connect_uri(uri)
    return h


def file_read(image, off, n):
    with open(image, "rb") as f:
        f.seek(off)
        return f.read(n)


def expect_errno(fn, want, what):
    try:
        fn()
    except nbd.Error as e:
        # The bindings give the errno as a number or by name.
        got = e.errno
        if isinstance(got, int):
            got = errno.errorcode.get(got, str(got))
        check(got == errno.errorcode[want], "%s: errno %s (%s), expected %s"
              % (what, got, e.string, errno.errorcode[want]))
        print("%s: %s, ok" % (what, errno.errorcode[want]))
        return
    raise AssertionError("%s: succeeded, expected %s" %
                         (what, errno.errorcode[want]))


def extents(h, off, length):
    """base:allocation extents as [(start, length, flags)] covering
    [off, off + length), gathered over as many replies as needed."""
    out = []
    pos = off
    end = off + length
    for _ in range(10000):
        if pos >= end:
            break
        got = []

        def cb(metacontext, offset, entries, err):
            if metacontext == nbd.CONTEXT_BASE_ALLOCATION:
                got.extend(entries)
            return 0
        h.block_status(min(end - pos, 1 << 30), pos, cb)
        check(got, "block status at %d: no base:allocation extents" % pos)
        for i in range(0, len(got), 2):
            n, flags = got[i], got[i + 1]
            n = min(n, end - pos)
            if n <= 0:
                break
            out.append((pos, n, flags))
            pos += n
    check(pos >= end, "block status did not cover the range")
    return out


def state_at(h, off, length):
    """The set of flag values over [off, off + length)."""
    return {f for (_, _, f) in extents(h, off, length)}


HZ = nbd.STATE_HOLE | nbd.STATE_ZERO


# Cases -------------------------------------------------------------------

def case_structured(uri, image):
    h = connect(uri)
    check(h.get_structured_replies_negotiated(),
          "structured replies not negotiated")
    check(h.can_meta_context(nbd.CONTEXT_BASE_ALLOCATION),
          "base:allocation not negotiated")
    # Structured reads, big and small, compared with the file.
    for off, n in ((0, 4096), (12345 * 512, 1 << 20), (0, MAX_PAYLOAD)):
        n = min(n, h.get_size() - off)
        check(h.pread(n, off) == file_read(image, off, n),
              "structured read at %d+%d differs from the image" % (off, n))
    # pread_structured: every chunk is data (DESIGN.md section 6).
    chunks = []

    def chunk(buf, offset, status, err):
        chunks.append((offset, len(buf), status))
        return 0
    h.pread_structured(1 << 20, 0, chunk)
    check(chunks and all(c[2] == nbd.READ_DATA for c in chunks),
          "structured read chunks: %s" % chunks[:8])
    check(sum(c[1] for c in chunks) == 1 << 20, "chunks do not add up")
    h.shutdown()
    # And without structured replies: simple replies still work.
    h = connect(uri, structured=False)
    check(not h.get_structured_replies_negotiated(), "structured anyway")
    check(h.pread(65536, 4096) == file_read(image, 4096, 65536),
          "simple read differs")
    h.shutdown()
    print("structured replies: ok")


def case_block_status(uri, image):
    """IMAGE must start sparse (all hole)."""
    h = connect(uri)
    size = h.get_size()
    M = 1 << 20
    check(size >= 16 * M, "export too small for block-status case")
    check(state_at(h, 0, size) == {HZ},
          "a fresh sparse image is not all hole+zero: %s" %
          extents(h, 0, size)[:8])
    h.pwrite(b"\xA5" * (2 * M), 2 * M)
    h.flush()
    ext = extents(h, 0, size)
    check(state_at(h, 2 * M, 2 * M) == {0},
          "written data not reported as data: %s" % ext[:8])
    check(state_at(h, 0, 2 * M) == {HZ}, "hole before data: %s" % ext[:8])
    check(state_at(h, 4 * M, size - 4 * M) == {HZ},
          "hole after data: %s" % ext[:8])
    # Trim the middle megabyte: a hole that reads as zeroes.
    h.trim(M, 2 * M + M // 2)
    h.flush()
    ext = extents(h, 0, size)
    check(state_at(h, 2 * M + M // 2, M) == {HZ},
          "trimmed range not hole+zero: %s" % ext[:8])
    check(state_at(h, 2 * M, M // 2) == {0}, "data before the trim: %s" %
          ext[:8])
    check(state_at(h, 3 * M + M // 2, M // 2) == {0},
          "data after the trim: %s" % ext[:8])
    check(h.pread(M, 2 * M + M // 2) == bytes(M), "trimmed range not zero")
    check(file_read(image, 2 * M + M // 2, M) == bytes(M),
          "trim left data in the file")
    # REQ_ONE: a single extent.
    got = []
    h.block_status(size, 0, lambda m, o, e, err: got.extend(e) or 0,
                   nbd.CMD_FLAG_REQ_ONE)
    check(len(got) == 2, "REQ_ONE gave %d extents" % (len(got) // 2))
    h.shutdown()
    print("block status: ok", ext[:6])


def case_fua_flush(uri, image):
    h = connect(uri)
    check(h.can_fua() and h.can_flush(), "FUA or flush not advertised")
    data = os.urandom(65536)
    h.pwrite(data, 5 * 4096, nbd.CMD_FLAG_FUA)
    check(file_read(image, 5 * 4096, 65536) == data,
          "FUA write not in the file when acknowledged")
    h.pwrite(data[::-1], 1 << 20)
    h.flush()
    check(file_read(image, 1 << 20, 65536) == data[::-1],
          "flushed write not in the file")
    h.zero(4096, 1 << 20, nbd.CMD_FLAG_FUA)
    check(file_read(image, 1 << 20, 4096) == bytes(4096), "FUA zero")
    h.shutdown()
    print("FUA and flush: ok")


def case_zero(uri, image):
    h = connect(uri)
    M = 1 << 20
    check(h.can_zero(), "write-zeroes not advertised")
    # Allocate [8M, 12M) with data, then zero it with NO_HOLE: it reads
    # as zeroes and stays allocated.
    h.pwrite(os.urandom(4 * M), 8 * M)
    h.flush()
    before = os.stat(image).st_blocks
    h.zero(4 * M, 8 * M, nbd.CMD_FLAG_NO_HOLE)
    h.flush()
    check(h.pread(4 * M, 8 * M) == bytes(4 * M), "NO_HOLE zero: not zero")
    check(file_read(image, 8 * M, 4 * M) == bytes(4 * M),
          "NO_HOLE zero: file not zero")
    after = os.stat(image).st_blocks
    check(after >= before, "NO_HOLE zero freed blocks: st_blocks %d -> %d"
          % (before, after))
    if h.can_meta_context(nbd.CONTEXT_BASE_ALLOCATION):
        check(not any(f & nbd.STATE_HOLE for f in state_at(h, 8 * M, 4 * M)),
              "NO_HOLE zero reported as a hole")
    # NO_HOLE over a hole allocates it (librumpblk(3): ZERO with NOHOLE
    # leaves the range allocated).
    h.trim(2 * M, 13 * M)
    h.flush()
    b0 = os.stat(image).st_blocks
    h.zero(2 * M, 13 * M, nbd.CMD_FLAG_NO_HOLE)
    h.flush()
    b1 = os.stat(image).st_blocks
    check(b1 - b0 >= (2 * M) // 512,
          "NO_HOLE zero over a hole: st_blocks %d -> %d" % (b0, b1))
    # Without NO_HOLE: zeroes; the server may punch (blocks may go).
    h.pwrite(os.urandom(M), 4 * M)
    h.zero(M, 4 * M)
    h.flush()
    check(h.pread(M, 4 * M) == bytes(M), "zero without NO_HOLE: not zero")
    check(file_read(image, 4 * M, M) == bytes(M), "zero: file not zero")
    # Unaligned to 4 KiB but sector-aligned, inside data.
    h.pwrite(b"\xFF" * 8192, 6 * M)
    h.zero(1536, 6 * M + 512)
    want = b"\xFF" * 512 + bytes(1536) + b"\xFF" * (8192 - 2048)
    check(h.pread(8192, 6 * M) == want, "sector-aligned zero")
    h.shutdown()
    print("write-zeroes: ok, st_blocks %d -> %d (NO_HOLE data), "
          "%d -> %d (NO_HOLE hole)" % (before, after, b0, b1))


def case_aio(uri, image):
    """Pipelined commands on one connection, completed in any order."""
    h = connect(uri)
    M = 1 << 20
    order = []
    bufs = {}
    pattern = {}
    cookies = []

    def done(tag):
        def cb(err):
            order.append(tag)
            check(err.value == 0, "aio %s failed: %d" % (tag, err.value))
            return 1
        return cb
    # A big read first, then many small writes and reads behind it.
    big = nbd.Buffer(16 * M)
    cookies.append(h.aio_pread(big, 0, completion=done("big")))
    for i in range(64):
        data = bytes([i + 1]) * 4096
        pattern[i] = data
        cookies.append(h.aio_pwrite(data, 20 * M + i * 8192,
                                    completion=done("w%d" % i)))
    check(h.aio_in_flight() > 1 or len(order) > 0, "nothing in flight")
    for _ in range(100000):
        if h.aio_in_flight() == 0:
            break
        h.poll(-1)
    check(h.aio_in_flight() == 0, "aio commands did not complete")
    for i in range(64):
        b = nbd.Buffer(4096)
        bufs[i] = b
        h.aio_pread(b, 20 * M + i * 8192, completion=done("r%d" % i))
    h.aio_flush(completion=done("flush"))
    for _ in range(100000):
        if h.aio_in_flight() == 0:
            break
        h.poll(-1)
    for i in range(64):
        check(bufs[i].to_bytearray() == pattern[i], "aio read %d" % i)
    check(bytes(big.to_bytearray()) == file_read(image, 0, 16 * M),
          "big aio read")
    check(file_read(image, 20 * M, 8192) == pattern[0] + file_read(
        image, 20 * M + 4096, 4096), "aio write in the file")
    moved = order.index("big")
    print("aio: %d commands, completion order %s... (big read completed "
          "%s)" % (len(order), order[:6],
                   "out of order, #%d" % moved if moved else "first"))
    h.shutdown()


def case_multiconn(uri, image):
    """4 connections in parallel from threads; a flush on one makes the
    others' completed writes durable (CAN_MULTI_CONN)."""
    M = 1 << 20
    handles = [connect(uri) for _ in range(4)]
    check(all(h.can_multi_conn() for h in handles), "no CAN_MULTI_CONN")
    errors = []

    def worker(k):
        try:
            h = handles[k]
            for j in range(32):
                off = 32 * M + (k * 32 + j) * 65536
                h.pwrite(bytes([k * 32 + j + 1]) * 65536, off)
            for j in range(32):
                off = 32 * M + (k * 32 + j) * 65536
                check(h.pread(65536, off) == bytes([k * 32 + j + 1]) * 65536,
                      "thread %d read %d" % (k, j))
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)
    threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    check(not any(t.is_alive() for t in threads), "a thread hung")
    check(not errors, "thread errors: %s" % errors)
    handles[0].flush()
    # Every connection sees every other's writes.
    for k in range(4):
        for j in range(0, 128, 17):
            off = 32 * M + j * 65536
            check(handles[k].pread(512, off) == bytes([j + 1]) * 512,
                  "connection %d does not see write %d" % (k, j))
    check(file_read(image, 32 * M, 128 * 65536) ==
          b"".join(bytes([i + 1]) * 65536 for i in range(128)),
          "the file after a flush on another connection")
    for h in handles:
        h.shutdown()
    print("4 parallel connections: ok")


def case_readonly(uri, image):
    h = connect(uri, strict=0)
    check(h.is_read_only(), "READ_ONLY not advertised")
    before = file_read(image, 0, 1 << 20)
    expect_errno(lambda: h.pwrite(b"x" * 4096, 0), errno.EPERM, "write")
    expect_errno(lambda: h.pwrite(b"x" * 512, 4096, nbd.CMD_FLAG_FUA),
                 errno.EPERM, "FUA write")
    expect_errno(lambda: h.zero(65536, 0), errno.EPERM, "write-zeroes")
    expect_errno(lambda: h.trim(65536, 0), errno.EPERM, "trim")
    check(h.pread(4096, 0) == before[:4096], "read on a read-only export")
    check(file_read(image, 0, 1 << 20) == before, "read-only image changed")
    h.shutdown()
    print("read-only: ok")


def case_unaligned(uri, image):
    """A client that did not ask for block sizes: byte-granular requests
    are served (read-modify-write of the edge sectors)."""
    h = connect(uri, request_block_size=False, strict=0)
    size = h.get_size()
    ref = bytearray(file_read(image, 0, size))
    rnd = __import__("random").Random(5)
    for i in range(200):
        n = rnd.choice((1, 3, 511, 513, 1000, 4097, 70001))
        off = rnd.randrange(0, size - n)
        if i % 2:
            data = bytes([rnd.randrange(256)]) * n
            h.pwrite(data, off)
            ref[off:off + n] = data
        else:
            check(h.pread(n, off) == bytes(ref[off:off + n]),
                  "unaligned read %d+%d" % (off, n))
    # Payloads up to the 32 MiB maximum, unaligned.
    big = os.urandom(MAX_PAYLOAD)
    off = 777
    h.pwrite(big, off)
    ref[off:off + len(big)] = big
    check(h.pread(MAX_PAYLOAD, off) == big, "32 MiB unaligned read back")
    # One byte more than the maximum payload: refused, nothing written.
    if size > MAX_PAYLOAD + 4096:
        expect_errno(lambda: h.pwrite(b"\xEE" * (MAX_PAYLOAD + 1), 1),
                     errno.EINVAL, "unaligned write of 32 MiB + 1")
        expect_errno(lambda: h.pread(MAX_PAYLOAD + 1, 1), errno.EINVAL,
                     "unaligned read of 32 MiB + 1")
    # Zero and trim unaligned too.
    h.zero(1001, 3)
    ref[3:1004] = bytes(1001)
    h.flush()
    check(file_read(image, 0, size) == bytes(ref),
          "the file after unaligned requests differs from the reference")
    h.shutdown()
    print("unaligned requests without block-size negotiation: ok")


def case_atomic(uri, image):
    """Two connections write overlapping unaligned ranges concurrently;
    each request stays atomic: the overlap holds one writer's bytes."""
    hs = [connect(uri, request_block_size=False, strict=0)
          for _ in range(2)]
    rounds = 200
    stride = 16384
    base = 1 << 20
    barrier = threading.Barrier(2, timeout=60)
    errors = []
    # Writer A covers [p+100, p+1100), B [p+600, p+1600): the overlap
    # [p+600, p+1100) crosses a sector boundary; both touch sector p+1024.

    def writer(k):
        try:
            for r in range(rounds):
                p = base + r * stride
                off = p + (100 if k == 0 else 600)
                barrier.wait()
                hs[k].pwrite(bytes([0xA0 + k]) * 1000, off)
        except Exception as e:  # noqa: BLE001
            errors.append(e)
            barrier.abort()
    ts = [threading.Thread(target=writer, args=(k,)) for k in range(2)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(120)
    check(not errors, "writer errors: %s" % errors)
    hs[0].flush()
    data = hs[0].pread(rounds * stride, base)
    firsts = {0: 0, 1: 0}
    for r in range(rounds):
        q = r * stride
        a = data[q + 100:q + 600]
        b = data[q + 1100:q + 1600]
        mid = data[q + 600:q + 1100]
        check(a == b"\xA0" * 500, "round %d: A's own bytes lost" % r)
        check(b == b"\xA1" * 500, "round %d: B's own bytes lost (torn "
              "read-modify-write?)" % r)
        check(mid in (b"\xA0" * 500, b"\xA1" * 500),
              "round %d: overlap mixes both writers: %s" %
              (r, sorted(set(mid))))
        firsts[0 if mid[0] == 0xA1 else 1] += 1
    for h in hs:
        h.shutdown()
    print("atomic overlapping unaligned writes: ok (last writer A %d, B %d)"
          % (firsts[1], firsts[0]))


def case_negotiated(uri, image):
    """A client that negotiated block sizes gets EINVAL for unaligned
    requests, and nothing is written."""
    h = connect(uri, strict=nbd.STRICT_MASK & ~nbd.STRICT_ALIGN)
    mn = h.get_block_size(nbd.SIZE_MINIMUM)
    mx = h.get_block_size(nbd.SIZE_MAXIMUM)
    check(mn >= 512, "minimum block size %d" % mn)
    check(mx == MAX_PAYLOAD, "maximum block size %d" % mx)
    before = file_read(image, 0, 4 << 20)
    expect_errno(lambda: h.pwrite(b"\xEE" * 1000, 4096), errno.EINVAL,
                 "unaligned length write")
    expect_errno(lambda: h.pwrite(b"\xEE" * mn, 4096 + 1), errno.EINVAL,
                 "unaligned offset write")
    expect_errno(lambda: h.pread(100, 0), errno.EINVAL, "unaligned read")
    expect_errno(lambda: h.zero(mn, 3), errno.EINVAL, "unaligned zero")
    expect_errno(lambda: h.trim(mn, mn // 2), errno.EINVAL, "unaligned trim")
    if mn > 512:
        expect_errno(lambda: h.pwrite(b"\xEE" * 512, 0), errno.EINVAL,
                     "a 512-byte write under a %d-byte minimum" % mn)
    check(file_read(image, 0, 4 << 20) == before,
          "an unaligned request wrote something")
    check(h.pread(mn, 0) == before[:mn], "aligned read afterwards")
    h.shutdown()
    print("negotiated block sizes enforced: ok (min %d max %d)" % (mn, mx))


def case_export_name(uri, image):
    """The old EXPORT_NAME path (no GO): byte-granular service."""
    h = nbd.NBD()
    h.set_opt_mode(False)
    h.set_request_structured_replies(False)
    h.set_request_block_size(False)
    h.set_full_info(False)
    h.set_strict_mode(0)
    # Without the newstyle-fixed bit libnbd uses NBD_OPT_EXPORT_NAME.
    h.set_handshake_flags(nbd.HANDSHAKE_FLAG_NO_ZEROES)
    h.connect_uri(uri)
    check(h.get_protocol() == "newstyle", "protocol %s" % h.get_protocol())
    h.pwrite(b"\x42" * 7, 3)
    check(h.pread(13, 0) == file_read(image, 0, 13), "EXPORT_NAME read")
    check(file_read(image, 3, 7) == b"\x42" * 7, "EXPORT_NAME write")
    h.shutdown()
    print("EXPORT_NAME client, unaligned: ok")


def case_window(uri, image):
    """The export is a window of IMAGE (env WINDOW_OFFSET, bytes): writes,
    trims and zeroes at its edges land inside it and nowhere else."""
    woff = int(os.environ["WINDOW_OFFSET"])
    h = connect(uri)
    size = h.get_size()
    M = 1 << 20
    before = bytearray(file_read(image, 0, os.stat(image).st_size))
    want = bytearray(before)
    h.pwrite(b"\x11" * 4096, 0)
    want[woff:woff + 4096] = b"\x11" * 4096
    h.pwrite(b"\x22" * 4096, size - 4096, nbd.CMD_FLAG_FUA)
    want[woff + size - 4096:woff + size] = b"\x22" * 4096
    h.trim(M, size - M)
    want[woff + size - M:woff + size] = bytes(M)
    h.zero(M, 0, nbd.CMD_FLAG_NO_HOLE)
    want[woff:woff + M] = bytes(M)
    h.zero(M, 2 * M)
    want[woff + 2 * M:woff + 3 * M] = bytes(M)
    h.flush()
    check(h.pread(size, 0) == bytes(want[woff:woff + size]),
          "reads through the window")
    after = file_read(image, 0, len(before))
    check(after[:woff] == before[:woff], "bytes before the window changed")
    check(after[woff + size:] == before[woff + size:],
          "bytes after the window changed")
    check(after == bytes(want), "the window's bytes in the file")
    if h.can_meta_context(nbd.CONTEXT_BASE_ALLOCATION):
        ext = extents(h, 0, size)
        check(sum(n for (_, n, _) in ext) == size, "extents cover the window")
    h.shutdown()
    print("export window at %d: ok" % woff)


def case_seed_faults(uri, image):
    """Seed-mode faults (env FAIL_N, FAIL_SEED) over one connection: each
    sector-aligned read or write is exactly one strategy call, so the
    requests that fail with EIO are the ones the seed's LCG picks, in
    request order (DESIGN.md sections 4 and 6).  Flush, trim and zero
    never draw."""
    n = int(os.environ["FAIL_N"])
    state = int(os.environ["FAIL_SEED"]) & 0xFFFFFFFF
    h = connect(uri)
    got, want = [], []
    for i in range(300):
        state = (state * 1103515245 + 12345) & 0xFFFFFFFF
        want.append((state % 0x80000000) % 10000 < n)
        off = (i * 7919 % 1000) * 4096
        try:
            if i % 3 == 0:
                h.pwrite(bytes([i & 0xFF]) * 4096, off)
            else:
                h.pread(4096 * (1 + i % 4), off)
            got.append(False)
        except nbd.Error as e:
            check(e.errno in (errno.EIO, "EIO"), "request %d: %s" % (i, e))
            got.append(True)
        if i % 10 == 9:
            h.flush()
            h.zero(4096, 0)
            h.trim(4096, 8192)
    h.shutdown()
    check(any(want) and not all(want), "FAIL_N gives no mix of outcomes")
    bad = [i for i in range(len(want)) if got[i] != want[i]]
    check(not bad, "fault sequence differs from the seed's LCG at requests "
          "%s (got %s, want %s)" % (bad[:10], [got[i] for i in bad[:10]],
                                    [want[i] for i in bad[:10]]))
    print("seed-mode faults: %d of %d requests failed, exactly as the LCG "
          "says" % (sum(got), len(got)))


def case_counted(uri, image):
    """A known request sequence for test-nbd-nbdsh.sh to compare with the
    server's --stats counters: 10 reads of 4 KiB, 5 writes of 8 KiB (one
    with FUA), 2 flushes, 1 trim of 64 KiB, 1 write-zeroes of 64 KiB, 1
    block-status query."""
    h = connect(uri)
    for i in range(10):
        h.pread(4096, i * 65536)
    for i in range(5):
        h.pwrite(bytes([i + 1]) * 8192, (1 << 20) + i * 8192,
                 nbd.CMD_FLAG_FUA if i == 0 else 0)
    h.flush()
    h.trim(65536, 2 << 20)
    h.zero(65536, 3 << 20)
    h.flush()
    extents(h, 0, 1 << 20)
    h.shutdown()
    print("counted sequence: sent")


def main():
    if len(sys.argv) < 4:
        print("usage: nbd-libnbd.py URI IMAGE CASE...", file=sys.stderr)
        return 2
    uri, image = sys.argv[1], sys.argv[2]
    rc = 0
    for name in sys.argv[3:]:
        fn = globals().get("case_" + name.replace("-", "_"))
        if fn is None:
            print("unknown case %s" % name, file=sys.stderr)
            return 2
        t = time.monotonic()
        try:
            fn(uri, image)
        except (AssertionError, nbd.Error) as e:
            print("FAIL %s: %s" % (name, e))
            rc = 1
        print("  (%s: %.1f s)" % (name, time.monotonic() - t))
    return rc


if __name__ == "__main__":
    sys.exit(main())
