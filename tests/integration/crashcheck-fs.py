#!/usr/bin/env python3
"""The workload and the verdict of test-crash-check-fs.

  crashcheck-fs.py files MNT MANIFEST N RUMPBLK CTL
      N files of seeded sizes and contents under MNT; each is written,
      fsynced (and its directory), then "RUMPBLK ctl CTL mark f-I" runs
      and a line "NAME MARK SHA256" goes to MANIFEST (outside the
      device).  Between them, a file that is never fsynced.
  crashcheck-fs.py verify-files MNT MANIFEST MARKS EPOCH_END
      MARKS is "rumpblk log info --json" of the run's log.  Every file of
      MANIFEST whose mark's entry is below EPOCH_END was durable in every
      state of the epoch (its fsync returned before the mark, so after
      the FLUSH that ends the epoch before, or an earlier one): it must
      be there, byte for byte.  Exit 0, or 1 with what is missing or
      wrong on standard output.

(SQLite: test-crash-check-sqlite uses powercut-sqlite.py, issue 11's
harness, with its POWERCUT_MARK and POWERCUT_MARKS.)
"""
import hashlib
import json
import os
import random
import subprocess
import sys


def mark(rumpblk, ctl, name):
    subprocess.run([rumpblk, "ctl", ctl, "mark", name], check=True,
                   stdout=subprocess.DEVNULL, timeout=60)


def fsync_dir(path):
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def payload(i):
    rnd = random.Random(1000 + i)
    return bytes(rnd.getrandbits(8) for _ in range(4096 + 1536 * (i % 7)))


def files(mnt, manifest, n, rumpblk, ctl):
    d = os.path.join(mnt, "f")
    os.makedirs(d, exist_ok=True)
    fsync_dir(mnt)
    with open(manifest, "w") as man:
        for i in range(n):
            data = payload(i)
            name = "file%02d" % i
            with open(os.path.join(d, name), "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            fsync_dir(d)
            mark(rumpblk, ctl, "f-%d" % i)
            man.write("%s f-%d %s\n" % (name, i,
                                        hashlib.sha256(data).hexdigest()))
            man.flush()
            with open(os.path.join(d, "loose%02d" % i), "wb") as f:
                f.write(data[::-1])
            # What a careless program would claim (never fsynced): the
            # test checks that crash-check finds these missing.
            with open(manifest + ".careless", "a") as car:
                car.write("loose%02d f-%d %s\n" % (
                    i, i, hashlib.sha256(data[::-1]).hexdigest()))


def required(manifest, marks, epoch_end):
    """The manifest's entries durable in every state of the epoch."""
    with open(marks) as f:
        at = {m["name"]: m["entry"] for m in json.load(f)["marks"]}
    need = []
    with open(manifest) as f:
        for line in f:
            name, m, digest = line.split()
            if m not in at:
                sys.exit("mark %s is not in the log" % m)
            if at[m] < epoch_end:
                need.append((name, m, digest))
    return need


def verify_files(mnt, manifest, marks, epoch_end):
    bad = []
    need = required(manifest, marks, epoch_end)
    for name, m, digest in need:
        p = os.path.join(mnt, "f", name)
        try:
            with open(p, "rb") as f:
                got = hashlib.sha256(f.read()).hexdigest()
        except OSError as e:
            bad.append("%s (fsynced before mark %s): %s" % (name, m, e))
            continue
        if got != digest:
            bad.append("%s (fsynced before mark %s): different bytes" %
                       (name, m))
    print("%d fsynced file(s) required, %d bad" % (len(need), len(bad)))
    for b in bad:
        print(b)
    return 1 if bad else 0


def main():
    cmd = sys.argv[1]
    if cmd == "files":
        mnt, manifest, n, rumpblk, ctl = sys.argv[2:7]
        files(mnt, manifest, int(n), rumpblk, ctl)
        return 0
    if cmd == "verify-files":
        mnt, manifest, marks, epoch_end = sys.argv[2:6]
        return verify_files(mnt, manifest, marks, int(epoch_end))
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
