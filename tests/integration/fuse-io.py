#!/usr/bin/python3
# fuse-io.py: what the FUSE export's file does, against a model of its
# bytes (issue 16).  Driven by test-fuse-io.sh, which starts
# "rumpblk serve --fuse DIR --socket SOCK --control CTL IMAGE" on a sparse
# image and ends it.
#
# usage: fuse-io.py FILE IMAGE SOCK CTL RUMPBLK
#
#  1. the file: its size, a truncate to it (no-op), to another size
#     (EPERM), O_TRUNC ignored (as for a block device)
#  2. writes and reads at odd offsets and lengths, checked against the
#     model; concurrent unaligned writes that share sectors (each
#     read-modify-write is atomic against the others: nothing is lost)
#  3. writes at and across the end (ENOSPC, a short write)
#  4. fallocate: punch hole and zero range, aligned and not (the range
#     reads as zeroes, its neighbours keep their bytes); a plain
#     allocation is refused (EOPNOTSUPP)
#  5. SEEK_DATA/SEEK_HOLE give what the image itself gives
#  6. fsync and fdatasync are FLUSHes ("flushes" in ctl stats)
#  7. the NBD export of the same unit sees the same bytes
# Every loop is bounded; nothing here waits on time.

import errno
import json
import os
import random
import subprocess
import sys
import threading

import nbd

path, image, sock, ctl, rumpblk = sys.argv[1:6]
rng = random.Random(16)


def check(cond, what):
    if not cond:
        sys.exit("FAIL: " + what)


def expect_errno(err, fn, what):
    try:
        fn()
    except OSError as e:
        check(e.errno == err, "%s: errno %s, expected %s" %
              (what, errno.errorcode.get(e.errno), errno.errorcode[err]))
        return
    sys.exit("FAIL: %s: no error, expected %s" % (what, errno.errorcode[err]))


def stats():
    out = subprocess.run([rumpblk, "ctl", ctl, "stats"], check=True,
                         capture_output=True, timeout=60).stdout
    return json.loads(out)["stats"]


size = os.stat(image).st_size
model = bytearray(size)          # the image is sparse: zeroes
check(os.stat(path).st_size == size, "size %d, expected %d" %
      (os.stat(path).st_size, size))

fd = os.open(path, os.O_RDWR)

# 1. Truncation.
os.truncate(path, size)
expect_errno(errno.EPERM, lambda: os.truncate(path, size // 2),
             "truncate to half")
expect_errno(errno.EPERM, lambda: os.ftruncate(fd, size + 4096),
             "ftruncate to more")
os.pwrite(fd, b"keep me", 12345)
model[12345:12352] = b"keep me"
os.close(os.open(path, os.O_WRONLY | os.O_TRUNC))
check(os.stat(path).st_size == size, "O_TRUNC changed the size")
check(os.pread(fd, 7, 12345) == b"keep me", "O_TRUNC lost data")


def verify(what):
    # Whole file, and random odd windows.
    got = bytearray()
    off = 0
    while off < size:
        chunk = os.pread(fd, min(1 << 20, size - off), off)
        check(len(chunk) > 0, "%s: short read at %d" % (what, off))
        got += chunk
        off += len(chunk)
    if got != model:
        bad = next(i for i in range(size) if got[i] != model[i])
        sys.exit("FAIL: %s: byte %d is %d, expected %d" %
                 (what, bad, got[bad], model[bad]))
    for _ in range(200):
        o = rng.randrange(size)
        n = rng.randrange(1, 70000)
        check(os.pread(fd, n, o) == bytes(model[o:o + n]),
              "%s: pread(%d, %d)" % (what, n, o))


# 2. Odd offsets and lengths.
for i in range(300):
    o = rng.randrange(size - 1)
    n = min(rng.choice([1, 2, 511, 513, 777, 4095, 4097, 65537,
                        rng.randrange(1, 300000)]), size - o)
    data = rng.randbytes(n)
    check(os.pwrite(fd, data, o) == n, "pwrite(%d, %d) short" % (n, o))
    model[o:o + n] = data
verify("odd writes")

# Concurrent unaligned writes sharing sectors: thread t owns bytes
# [k*512 + t*100, +100) of 64 sectors at BASE; every round each thread
# rewrites all of its pieces.  Without an atomic read-modify-write, one
# thread's write of a shared sector would undo another's.
BASE = 2 << 20
NT, ROUNDS = 4, 40
errors = []


def writer(t):
    try:
        tfd = os.open(path, os.O_RDWR)
        for r in range(ROUNDS):
            for k in range(64):
                o = BASE + k * 512 + t * 100
                os.pwrite(tfd, bytes([(t * 50 + r + k) % 256]) * 100, o)
        os.close(tfd)
    except OSError as e:
        errors.append(e)


threads = [threading.Thread(target=writer, args=(t,)) for t in range(NT)]
for th in threads:
    th.start()
for th in threads:
    th.join(300)
check(not any(th.is_alive() for th in threads), "writers hung")
check(not errors, "concurrent writers: %s" % errors)
for t in range(NT):
    for k in range(64):
        o = BASE + k * 512 + t * 100
        model[o:o + 100] = bytes([(t * 50 + ROUNDS - 1 + k) % 256]) * 100
verify("concurrent unaligned writes")

# 3. The end: nothing fits at it, a write across it is short.
expect_errno(errno.ENOSPC, lambda: os.pwrite(fd, b"x", size),
             "pwrite at the end")
n = os.pwrite(fd, b"y" * 1000, size - 300)
check(n == 300, "pwrite across the end wrote %d, expected 300" % n)
model[size - 300:] = b"y" * 300
check(os.pread(fd, 10, size) == b"", "read at the end is not EOF")


# 4. fallocate, through util-linux fallocate(1).
def falloc(opts, o, n):
    subprocess.run(["fallocate"] + opts + ["-o", str(o), "-l", str(n),
                   path], check=True, timeout=60)
    model[o:o + n] = bytes(n)


for i in range(30):
    o = rng.randrange(size - 1)
    n = min(rng.choice([1, 100, 4096, 65536, 300001]), size - o)
    if i % 3 == 0:
        o &= ~4095
        n = (n + 4095) & ~4095
        n = min(n, size - o)
    falloc(["--punch-hole"] if i % 2 else ["--zero-range",
                                           "--keep-size"], o, n)
verify("fallocate")
r = subprocess.run(["fallocate", "-o", "0", "-l", "4096", path],
                   capture_output=True, timeout=60)
check(r.returncode != 0 and b"not supported" in r.stderr,
      "plain fallocate: %d %s" % (r.returncode, r.stderr))

# 5. SEEK_DATA / SEEK_HOLE against the image's own answers: lay out
# data and holes on 1 MiB boundaries (whole file-system blocks).
MB = 1 << 20
falloc(["--punch-hole"], 0, size)
for start, n in ((1 * MB, 64 << 10), (3 * MB, MB), (6 * MB, 128 << 10)):
    data = rng.randbytes(n)
    os.pwrite(fd, data, start)
    model[start:start + n] = data
os.fsync(fd)
ifd = os.open(image, os.O_RDONLY)
checked = 0
for off in [0, 1, 4095, MB - 1, MB, MB + 5, MB + (64 << 10), 2 * MB,
            3 * MB + 12345, 4 * MB, 5 * MB, 6 * MB + 1, 7 * MB, size - 1]:
    if off >= size:
        continue
    for how in (os.SEEK_DATA, os.SEEK_HOLE):
        try:
            want = os.lseek(ifd, off, how)
        except OSError as e:
            want = -e.errno
        try:
            got = os.lseek(fd, off, how)
        except OSError as e:
            got = -e.errno
        check(got == want, "lseek(%d, %s): %d, the image says %d" %
              (off, "SEEK_DATA" if how == os.SEEK_DATA else "SEEK_HOLE",
               got, want))
        checked += 1
check(checked > 20, "too few lseek checks")
expect_errno(errno.ENXIO, lambda: os.lseek(fd, size, os.SEEK_DATA),
             "SEEK_DATA at the end")
os.close(ifd)
verify("after seeks")

# 6. fsync and fdatasync reach the unit as FLUSH.
f0 = stats()["flushes"]
os.pwrite(fd, b"flush me", 4096)
model[4096:4104] = b"flush me"
os.fsync(fd)
os.fdatasync(fd)
f1 = stats()["flushes"]
check(f1 >= f0 + 2, "flushes went from %d to %d over fsync + fdatasync" %
      (f0, f1))

# 7. The NBD export of the same unit, beside it.
h = nbd.NBD()
h.connect_unix(sock)
check(h.get_size() == size, "NBD size %d" % h.get_size())
for _ in range(50):
    # libnbd holds itself to the server's 512-byte minimum block size.
    o = rng.randrange(size - 1) & ~511
    n = min(rng.randrange(1, 200) * 512, size - o)
    check(h.pread(n, o) == bytes(model[o:o + n]),
          "NBD pread(%d, %d) differs from the FUSE file" % (n, o))
h.pwrite(b"from nbd" * 64, 1024)
h.flush()
model[1024:1536] = b"from nbd" * 64
h.shutdown()
verify("after NBD wrote")
os.close(fd)
print("fuse-io: all checks passed")
