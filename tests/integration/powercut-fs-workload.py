#!/usr/bin/python3
"""powercut-fs-workload: the file workload of test-powercut-fs (issue 11).

  write DIR SEED MANIFEST READY STOP
      Write files DIR/f0, f1, ... with contents drawn from a generator
      seeded by (SEED, index), sizes 1 KiB to 256 KiB.  Some files are
      fsynced, then DIR itself, and only after both fsyncs returned is
      "INDEX SIZE SHA256" appended to MANIFEST (a file outside the device
      under test, flushed and fsynced at once): the even-numbered ones of
      the first 40 files.  The others are never fsynced: their pages are
      pushed to the device with posix_fadvise(DONTNEED), which starts
      writeback without a flush, so that the device's cache holds
      unflushed writes (every fsync flushes what came before it).  Once
      f47 is written, READY is created, the cue for the cut; unsynced
      files go on (so unflushed writes pile up and some are in flight at
      the cut, whenever it comes) until STOP exists, MAX_FILES files are
      written, TIME_LIMIT seconds pass, or an I/O error (expected once
      power is cut).
      Exit 0 when stopped without error, 3 on an I/O error, 2 on misuse.

  verify DIR SEED MANIFEST
      Every file of MANIFEST must exist in DIR with exactly its generated
      content.  Prints one line "verify: N fsynced files, N intact, ..."
      and the first problems; exit 0 if all are intact, 1 if not.
"""
import hashlib
import os
import random
import sys
import time

from powercut_util import durable_dir, fsync_path

FSYNCED = 40         # files 0..FSYNCED-1: every other one fsynced
READY_AFTER = 48     # files written when READY is created
MAX_FILES = 400
TIME_LIMIT = 60.0


def content(seed, i):
    rng = random.Random(f"powercut-fs/{seed}/{i}")
    size = rng.randrange(1024, 256 * 1024 + 1)
    return rng.randbytes(size)


def fsynced(i):
    return i < FSYNCED and i % 2 == 0


def write(d, seed, manifest, ready, stop):
    durable_dir(d)
    deadline = time.monotonic() + TIME_LIMIT
    written = 0
    with open(manifest, "a") as man:
        for i in range(MAX_FILES):
            if os.path.exists(stop) or time.monotonic() > deadline:
                break
            data = content(seed, i)
            path = os.path.join(d, f"f{i}")
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC,
                             0o644)
                try:
                    view = memoryview(data)
                    while view:
                        view = view[os.write(fd, view):]
                    if fsynced(i):
                        os.fsync(fd)
                    else:
                        os.posix_fadvise(fd, 0, 0,
                                         os.POSIX_FADV_DONTNEED)
                finally:
                    os.close(fd)
                if fsynced(i):
                    fsync_path(d)
            except OSError as e:
                print(f"workload: f{i}: {e} (after {written} files)",
                      file=sys.stderr)
                return 3
            if fsynced(i):
                man.write(f"{i} {len(data)} "
                          f"{hashlib.sha256(data).hexdigest()}\n")
                man.flush()
                os.fsync(man.fileno())
            written += 1
            if written == READY_AFTER:
                open(ready, "w").close()
    print(f"workload: stopped after {written} files", file=sys.stderr)
    return 0


def verify(d, seed, manifest):
    n = ok = 0
    bad = []
    with open(manifest) as man:
        for line in man:
            i, size, digest = line.split()
            i, size = int(i), int(size)
            n += 1
            want = content(seed, i)
            if len(want) != size or \
                    hashlib.sha256(want).hexdigest() != digest:
                bad.append(f"f{i}: the manifest does not match the "
                           f"generator")
                continue
            try:
                with open(os.path.join(d, f"f{i}"), "rb") as f:
                    got = f.read()
            except OSError as e:
                bad.append(f"f{i}: {e.strerror}")
                continue
            if got == want:
                ok += 1
            elif len(got) != len(want):
                bad.append(f"f{i}: {len(got)} bytes, not {len(want)}")
            else:
                first = next(k for k in range(len(got))
                             if got[k] != want[k])
                bad.append(f"f{i}: differs from byte {first}")
    print(f"verify: {n} fsynced files, {ok} intact, {len(bad)} not"
          + "".join(f"\n  {b}" for b in bad[:10]))
    return 0 if ok == n else 1


def main(argv):
    if len(argv) == 7 and argv[1] == "write":
        return write(argv[2], int(argv[3]), argv[4], argv[5], argv[6])
    if len(argv) == 5 and argv[1] == "verify":
        return verify(argv[2], int(argv[3]), argv[4])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
