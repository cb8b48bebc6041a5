#!/usr/bin/python3
"""logwrites: an independent reader and replayer of write logs in the
on-disk format of Linux dm-log-writes (the kernel's
Documentation/admin-guide/device-mapper/log-writes.rst; xfstests
src/log-writes), written from that description alone so that it can
judge "rumpblk serve --write-log" without sharing its code.

The format: sectors of S bytes.  Sector 0 is the super
{le64 magic, le64 version, le64 nr_entries, le32 sectorsize}; the rest
of sector 0 is not read.  Then nr_entries times one entry sector
{le64 sector, le64 nr_sectors, le64 flags, le64 data_len, padding to S}
and, unless the entry is a DISCARD, nr_sectors * S bytes of data.  A
mark keeps its name (data_len bytes) right after the 32-byte header.
Sectors and counts are in S-byte units.

What it checks, and what it does not: every entry named by nr_entries
is read and validated (magic, version, sector size, known flags, the
padding of non-mark entries is zero and their data_len 0, a mark has a
printable name, no data and zeroes after the name, an empty entry is
refused, data lies within the file, ranges lie within the device when
its size is given).  Bytes after the last entry are allowed (a kernel
log device is larger than its log) and only counted.  The trade-off:
strictness over leniency, since this reader exists to catch a writer
that drifts from the kernel's layout.

Usable as a module (Log, replay) and from the command line:

  logwrites.py check LOG                    validate; print the count
  logwrites.py dump LOG                     one line per entry
  logwrites.py selftest DIR                 check this reader on logs it
                                            writes itself, good and broken
  logwrites.py replay LOG --base IMG --out OUT
          [--entries N | --flush N | --mark NAME] [--sha256]
      copy IMG to OUT, then apply the first N entries / the entries
      through the Nth FLUSH (1-based) / through the first mark NAME
      (all entries by default); discards replay as zeroes.

Exit status: 0 success, 1 an invalid log or failed replay, 2 usage.
"""

import argparse
import hashlib
import os
import shutil
import struct
import sys

MAGIC = 0x6a736677736872
VERSION = 1

FLUSH = 1 << 0
FUA = 1 << 1
DISCARD = 1 << 2
MARK = 1 << 3
METADATA = 1 << 4       # newer kernels: REQ_META; allowed, never required
KNOWN_FLAGS = FLUSH | FUA | DISCARD | MARK | METADATA

SUPER = struct.Struct("<QQQI")
ENTRY = struct.Struct("<QQQQ")

CHUNK = 1 << 20


class LogError(Exception):
    """An invalid log, or an entry that cannot be replayed."""


def flag_names(flags):
    names = [n for b, n in ((FLUSH, "FLUSH"), (FUA, "FUA"),
                            (DISCARD, "DISCARD"), (MARK, "MARK"),
                            (METADATA, "METADATA")) if flags & b]
    return "|".join(names) or "WRITE"


class Entry:
    """One decoded entry.  sector and nr_sectors are in S-byte units;
    offset and length in bytes.  data_off is the byte offset of the
    data in the log file (None for entries that carry none)."""

    def __init__(self, index, pos, sector, nr_sectors, flags, data_len,
                 mark, data_off, sectorsize):
        self.index = index
        self.pos = pos
        self.sector = sector
        self.nr_sectors = nr_sectors
        self.flags = flags
        self.data_len = data_len
        self.mark = mark
        self.data_off = data_off
        self.sectorsize = sectorsize

    @property
    def offset(self):
        return self.sector * self.sectorsize

    @property
    def length(self):
        return self.nr_sectors * self.sectorsize

    @property
    def is_flush(self):
        return bool(self.flags & FLUSH)

    @property
    def is_mark(self):
        return bool(self.flags & MARK)

    @property
    def is_discard(self):
        return bool(self.flags & DISCARD)

    def __repr__(self):
        s = "#%d %s sector %d nr_sectors %d" % (
            self.index, flag_names(self.flags), self.sector,
            self.nr_sectors)
        if self.mark is not None:
            s += " mark %r" % self.mark
        return s


class Log:
    """A decoded log file.  Raises LogError on any violation of the
    format.  device_size (bytes), when given, bounds every range."""

    def __init__(self, path, device_size=None):
        self.path = path
        with open(path, "rb") as f:
            self.file_size = os.fstat(f.fileno()).st_size
            self._decode(f, device_size)

    def _err(self, what, entry=None, pos=None):
        where = self.path
        if entry is not None:
            where += ": entry %d" % entry
        if pos is not None:
            where += " at byte %d" % pos
        raise LogError("%s: %s" % (where, what))

    def _decode(self, f, device_size):
        head = f.read(SUPER.size)
        if len(head) < SUPER.size:
            self._err("%d bytes: too short for the super" % len(head))
        magic, version, nr, ss = SUPER.unpack(head)
        if magic != MAGIC:
            self._err("bad magic %#x (want %#x)" % (magic, MAGIC))
        if version != VERSION:
            self._err("version %d (want %d)" % (version, VERSION))
        if ss < 512 or ss > 65536 or ss & (ss - 1):
            self._err("sector size %d is not a power of 2 in 512..65536" %
                      ss)
        if self.file_size < ss:
            self._err("%d bytes: shorter than sector 0 (%d)" %
                      (self.file_size, ss))
        self.sectorsize = ss
        self.nr_entries = nr
        self.entries = []
        pos = ss
        for i in range(nr):
            if pos + ss > self.file_size:
                self._err("the entry sector is past the end of the file "
                          "(%d bytes; nr_entries %d)" %
                          (self.file_size, nr), i, pos)
            f.seek(pos)
            sec = f.read(ss)
            if len(sec) != ss:
                self._err("short read of the entry sector", i, pos)
            sector, nsec, flags, dlen = ENTRY.unpack_from(sec)
            rest = sec[ENTRY.size:]
            mark = None
            if flags & ~KNOWN_FLAGS:
                self._err("unknown flags %#x" % flags, i, pos)
            if flags & MARK:
                if flags != MARK:
                    self._err("a mark with other flags %#x" % flags, i,
                              pos)
                if nsec != 0:
                    self._err("a mark with nr_sectors %d" % nsec, i, pos)
                if dlen == 0 or dlen > ss - ENTRY.size:
                    self._err("a mark with data_len %d (1..%d)" %
                              (dlen, ss - ENTRY.size), i, pos)
                name = rest[:dlen]
                if b"\0" in name:
                    self._err("a NUL inside the mark name %r" % name, i,
                              pos)
                try:
                    mark = name.decode("utf-8")
                except UnicodeDecodeError:
                    self._err("mark name %r is not UTF-8" % name, i, pos)
                if any(rest[dlen:]):
                    self._err("non-zero bytes after the mark name", i,
                              pos)
            else:
                if dlen != 0:
                    self._err("data_len %d in a non-mark entry" % dlen, i,
                              pos)
                if any(rest):
                    nz = next(k for k, b in enumerate(rest) if b)
                    self._err("non-zero padding at byte %d of the entry "
                              "sector" % (ENTRY.size + nz), i, pos)
                if flags == 0 and nsec == 0:
                    self._err("an empty entry (no flags, no sectors)", i,
                              pos)
                if flags & DISCARD and nsec == 0:
                    self._err("a discard of no sectors", i, pos)
                if flags & DISCARD and flags & (FLUSH | FUA):
                    self._err("a discard with FLUSH or FUA (%s)" %
                              flag_names(flags), i, pos)
            if sector + nsec >= 1 << 64 or (sector + nsec) * ss >= 1 << 63:
                self._err("range overflows: sector %d nr_sectors %d" %
                          (sector, nsec), i, pos)
            if device_size is not None and nsec and \
                    (sector + nsec) * ss > device_size:
                self._err("sectors %d+%d are past the end of the device "
                          "(%d bytes)" % (sector, nsec, device_size), i,
                          pos)
            epos = pos
            pos += ss
            data_off = None
            if not flags & (DISCARD | MARK) and nsec:
                data_off = pos
                pos += nsec * ss
                if pos > self.file_size:
                    self._err("data of %d sectors runs past the end of "
                              "the file (%d bytes)" %
                              (nsec, self.file_size), i, epos)
            self.entries.append(Entry(i, epos, sector, nsec, flags, dlen,
                                      mark, data_off, ss))
        self.end = pos
        self.trailing = self.file_size - pos

    def data(self, entry):
        """The data of a write entry (bytes); zeroes of its length for a
        discard; b"" for entries without sectors."""
        if entry.data_off is None:
            return bytes(entry.length)
        with open(self.path, "rb") as f:
            f.seek(entry.data_off)
            b = f.read(entry.length)
        if len(b) != entry.length:
            raise LogError("%s: entry %d: short read of its data" %
                           (self.path, entry.index))
        return b

    def through_mark(self, name):
        """The number of entries up to and including the first mark
        NAME."""
        for e in self.entries:
            if e.mark == name:
                return e.index + 1
        raise LogError("%s: no mark %r" % (self.path, name))

    def through_flush(self, n):
        """The number of entries up to and including the Nth (1-based)
        FLUSH entry."""
        seen = 0
        for e in self.entries:
            if e.is_flush:
                seen += 1
                if seen == n:
                    return e.index + 1
        raise LogError("%s: %d flushes, not %d" % (self.path, seen, n))

    def replay(self, out, count=None):
        """Apply the first COUNT entries (all when None) to the existing
        file OUT, which must be as large as every range."""
        if count is None:
            count = len(self.entries)
        if count < 0 or count > len(self.entries):
            raise LogError("%s: %d entries, cannot replay %d" %
                           (self.path, len(self.entries), count))
        zero = bytes(CHUNK)
        with open(self.path, "rb") as src, open(out, "r+b") as dst:
            size = os.fstat(dst.fileno()).st_size
            for e in self.entries[:count]:
                if not e.nr_sectors or e.is_mark:
                    continue
                if e.offset + e.length > size:
                    raise LogError("%s: entry %d: bytes %d+%d are past "
                                   "the end of %s (%d bytes)" %
                                   (self.path, e.index, e.offset,
                                    e.length, out, size))
                dst.seek(e.offset)
                left = e.length
                if e.is_discard:
                    while left:
                        n = min(left, CHUNK)
                        dst.write(zero[:n])
                        left -= n
                    continue
                src.seek(e.data_off)
                while left:
                    b = src.read(min(left, CHUNK))
                    if not b:
                        raise LogError("%s: entry %d: short data" %
                                       (self.path, e.index))
                    dst.write(b)
                    left -= len(b)


def replay(log, base, out, count=None):
    """Copy BASE to OUT and apply the first COUNT entries of LOG (a Log
    or a path) to it.  Returns the Log."""
    if not isinstance(log, Log):
        log = Log(log, os.path.getsize(base))
    shutil.copyfile(base, out)
    log.replay(out, count)
    return log


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for b in iter(lambda: f.read(CHUNK), b""):
            h.update(b)
    return h.hexdigest()


def encode(path, entries, ss=512, nr_entries=None):
    """Write a log of ENTRIES, each (sector, nr_sectors, flags, payload):
    payload is the data of a write (nr_sectors * ss bytes) or the name of
    a mark (bytes).  For the self-test; rumpblk writes its own logs."""
    with open(path, "wb") as f:
        n = len(entries) if nr_entries is None else nr_entries
        f.write(SUPER.pack(MAGIC, VERSION, n, ss).ljust(ss, b"\0"))
        for sector, nsec, flags, payload in entries:
            dlen = len(payload) if flags & MARK else 0
            head = ENTRY.pack(sector, nsec, flags, dlen)
            if flags & MARK:
                head += payload
            f.write(head.ljust(ss, b"\0"))
            if not flags & (MARK | DISCARD):
                f.write(payload)


def selftest(tmp):
    """Encode small logs, good and broken, and check that the reader
    accepts the first and refuses each of the others: the validation is
    what makes this reader a judge."""
    log = os.path.join(tmp, "selftest.log")
    base = os.path.join(tmp, "selftest.base")
    out = os.path.join(tmp, "selftest.out")
    a, b = b"a" * 1024, b"b" * 512
    good = [(0, 2, 0, a), (1, 1, FUA, b), (0, 0, FLUSH, b""),
            (0, 0, MARK, b"m1"), (2, 1, DISCARD, b""), (3, 1, 0, b)]
    with open(base, "wb") as f:
        f.write(b"x" * 4096)
    encode(log, good)
    lg = Log(log, 4096)
    if [e.mark for e in lg.entries] != [None, None, None, "m1", None,
                                        None]:
        raise LogError("selftest: marks %r" % lg.entries)
    replay(lg, base, out, lg.through_mark("m1"))
    with open(out, "rb") as f:
        if f.read() != b"a" * 512 + b"b" * 512 + b"x" * 3072:
            raise LogError("selftest: replay through the mark")
    replay(lg, base, out)
    with open(out, "rb") as f:
        if f.read() != (b"a" * 512 + b"b" * 512 + bytes(512) + b"b" * 512
                        + b"x" * 2048):
            raise LogError("selftest: replay of the whole log")
    if lg.through_flush(1) != 3:
        raise LogError("selftest: through_flush")

    def patched(offset, data):
        encode(log, good)
        with open(log, "r+b") as f:
            f.seek(offset)
            f.write(data)

    # Entry 0's sector is at byte 512, the mark's (entry 3) at 3584.
    e0 = 512
    bad = {
        "magic": lambda: patched(0, b"\1"),
        "version": lambda: patched(8, struct.pack("<Q", 2)),
        "sector size": lambda: patched(24, struct.pack("<I", 1000)),
        "padding": lambda: patched(e0 + 100, b"\1"),
        "data_len": lambda: patched(e0 + 24, struct.pack("<Q", 3)),
        "flags": lambda: patched(e0 + 16, struct.pack("<Q", 64)),
        "empty": lambda: patched(e0 + 8, struct.pack("<Q", 0)),
        "nr_entries": lambda: encode(log, good, nr_entries=7),
        "truncated data": lambda: (encode(log, good[:1]),
                                   os.truncate(log, 512 + 512 + 1000)),
        "past the device": lambda: encode(log, [(8, 1, 0, b)]),
        "mark name": lambda: encode(log, [(0, 0, MARK, b"m\0x")]),
        "mark padding": lambda: patched(3584 + 40, b"\1"),
        "mark sectors": lambda: encode(log, [(0, 1, MARK, b"m")]),
    }
    for what, make in bad.items():
        make()
        try:
            Log(log, 4096)
        except LogError:
            continue
        raise LogError("selftest: a log with a bad %s was accepted" % what)
    for p in (log, base, out):
        os.unlink(p)


def main(argv):
    p = argparse.ArgumentParser(prog="logwrites.py",
                                description="read and replay "
                                "dm-log-writes logs")
    sub = p.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("check", help="validate a log")
    c.add_argument("log")
    t = sub.add_parser("selftest", help="check this reader on logs "
                       "it writes, good and broken, in DIR")
    t.add_argument("dir")
    d = sub.add_parser("dump", help="list the entries of a log")
    d.add_argument("log")
    r = sub.add_parser("replay", help="replay a log onto a copy of BASE")
    r.add_argument("log")
    r.add_argument("--base", required=True)
    r.add_argument("--out", required=True)
    r.add_argument("--sha256", action="store_true",
                   help="print the sha256 of OUT")
    g = r.add_mutually_exclusive_group()
    g.add_argument("--entries", type=int, metavar="N")
    g.add_argument("--flush", type=int, metavar="N")
    g.add_argument("--mark", metavar="NAME")
    a = p.parse_args(argv)
    try:
        if a.cmd == "replay":
            log = Log(a.log, os.path.getsize(a.base))
            if a.entries is not None:
                n = a.entries
            elif a.flush is not None:
                n = log.through_flush(a.flush)
            elif a.mark is not None:
                n = log.through_mark(a.mark)
            else:
                n = None
            replay(log, a.base, a.out, n)
            if a.sha256:
                print(sha256_file(a.out))
            return 0
        if a.cmd == "selftest":
            selftest(a.dir)
            print("logwrites: selftest passed")
            return 0
        log = Log(a.log)
        if a.cmd == "dump":
            print("sectorsize %d nr_entries %d trailing %d" %
                  (log.sectorsize, log.nr_entries, log.trailing))
            for e in log.entries:
                print(e)
        else:
            print("%s: %d entries, sector size %d" %
                  (a.log, log.nr_entries, log.sectorsize))
    except (LogError, OSError) as e:
        print("logwrites: %s" % e, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
